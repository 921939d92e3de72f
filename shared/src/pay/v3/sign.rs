//! Merchant-side v3 signatures: the request `Authorization` header and the `wx.requestPayment` paySign.

use serde::{Deserialize, Serialize};

use super::keys::{KeyError, RsaSigningKey};

/// The `Authorization` scheme of v3 requests.
pub const AUTH_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// The request signing string: `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`.
///
/// `canonical_url` is the path plus `?query` exactly as sent; `body` the exact bytes sent
/// (empty for GET).
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut msg = Vec::with_capacity(
        method.len() + canonical_url.len() + ts.len() + nonce.len() + body.len() + 5,
    );
    for part in [
        method.as_bytes(),
        canonical_url.as_bytes(),
        ts.as_bytes(),
        nonce.as_bytes(),
        body,
    ] {
        msg.extend_from_slice(part);
        msg.push(b'\n');
    }
    msg
}

/// The `wx.requestPayment` signing string: `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn pay_sign_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> String {
    format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n")
}

/// Signs v3 requests as one merchant: merchant id, merchant API certificate serial, API key.
#[derive(Debug)]
pub struct MerchantSigner {
    mchid: String,
    serial_no: String,
    key: RsaSigningKey,
}

/// Parameters for `wx.requestPayment`, serialised with the names the Mini Program expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPaymentParams {
    /// Unix seconds as a string.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    /// Random string, at most 32 characters.
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=<id>`.
    pub package: String,
    /// Always `RSA` for v3.
    #[serde(rename = "signType")]
    pub sign_type: String,
    /// Base64 RSA signature of [`pay_sign_message`].
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

impl MerchantSigner {
    /// A signer for merchant `mchid` whose API certificate serial is `serial_no`.
    pub fn new(mchid: impl Into<String>, serial_no: impl Into<String>, key: RsaSigningKey) -> Self {
        Self {
            mchid: mchid.into(),
            serial_no: serial_no.into().to_ascii_uppercase(),
            key,
        }
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The merchant certificate serial sent as `serial_no`.
    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    /// The underlying key (benches, emulator round trips).
    pub fn key(&self) -> &RsaSigningKey {
        &self.key
    }

    /// Base64 signature of a request.
    pub fn sign_request(
        &self,
        method: &str,
        canonical_url: &str,
        timestamp: i64,
        nonce: &str,
        body: &[u8],
    ) -> Result<String, KeyError> {
        self.key.sign_base64(&request_message(
            method,
            canonical_url,
            timestamp,
            nonce,
            body,
        ))
    }

    /// The full `Authorization` header value for a request.
    pub fn authorization(
        &self,
        method: &str,
        canonical_url: &str,
        timestamp: i64,
        nonce: &str,
        body: &[u8],
    ) -> Result<String, KeyError> {
        let signature = self.sign_request(method, canonical_url, timestamp, nonce, body)?;
        Ok(format!(
            "{AUTH_SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
            self.mchid, self.serial_no
        ))
    }

    /// `wx.requestPayment` parameters for `prepay_id`, signed with the merchant key.
    ///
    /// `app_id` must be the appid the order was placed with: WeChat checks it.
    pub fn request_payment(
        &self,
        app_id: &str,
        prepay_id: &str,
        timestamp: i64,
        nonce: &str,
    ) -> Result<RequestPaymentParams, KeyError> {
        let time_stamp = timestamp.to_string();
        let package = format!("prepay_id={prepay_id}");
        let message = pay_sign_message(app_id, &time_stamp, nonce, &package);
        let pay_sign = self.key.sign_base64(message.as_bytes())?;
        Ok(RequestPaymentParams {
            time_stamp,
            nonce_str: nonce.to_owned(),
            package,
            sign_type: "RSA".into(),
            pay_sign,
        })
    }
}
