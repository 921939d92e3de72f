//! The WeChat Pay side of the v3 protocol.
//!
//! Used by the local WeChat Pay stand-in (`wemint-emulator`) and by tests that play WeChat Pay
//! against the real client: check a merchant request's `Authorization` header with the
//! merchant public key, sign responses and notifications with a platform key (certificate or
//! WeChat Pay public key) producing the `Wechatpay-*` headers, encrypt resources, and build a
//! complete signed notification. Production functions never need this module.

use serde::Serialize;

use super::aead::{AEAD_AES_256_GCM, AeadError, ApiV3Key};
use super::keys::{KeyError, RsaSigningKey, VerifyingKey};
use super::notify::{EncryptedResource, NotificationEnvelope};
use super::sign::{AUTH_SCHEME, request_message};
use super::verify::{TIMESTAMP_TOLERANCE_SECS, headers, response_message};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A merchant request was refused (WeChat answers 401 `SIGN_ERROR`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not `WECHATPAY2-SHA256-RSA2048 k="v",…`.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    /// `mchid` is not the expected merchant.
    #[error("unexpected mchid {0:?}")]
    WrongMerchant(String),
    /// `serial_no` is not the merchant certificate serial on file.
    #[error("unexpected merchant serial {0:?}")]
    WrongSerial(String),
    /// The timestamp is more than 5 minutes from now.
    #[error("timestamp {0} outside the 5-minute window")]
    Timestamp(i64),
    /// Signature not base64 or not valid.
    #[error("signature does not verify")]
    BadSignature,
}

/// The parsed fields of a v3 `Authorization` header (any order; the docs allow it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Merchant id.
    pub mchid: String,
    /// Request nonce.
    pub nonce_str: String,
    /// Base64 signature.
    pub signature: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// Merchant certificate serial.
    pub serial_no: String,
}

/// Parse `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"`.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let rest = value
        .trim()
        .strip_prefix(AUTH_SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(AuthError::Malformed("scheme"))?;
    let (mut mchid, mut nonce, mut sig, mut ts, mut serial) = (None, None, None, None, None);
    for pair in rest.split(',') {
        let (k, v) = pair
            .trim()
            .split_once('=')
            .ok_or(AuthError::Malformed("pair"))?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or(AuthError::Malformed("quotes"))?;
        let slot = match k {
            "mchid" => &mut mchid,
            "nonce_str" => &mut nonce,
            "signature" => &mut sig,
            "timestamp" => &mut ts,
            "serial_no" => &mut serial,
            _ => return Err(AuthError::Malformed("unknown key")),
        };
        if slot.replace(v.to_owned()).is_some() {
            return Err(AuthError::Malformed("duplicate key"));
        }
    }
    Ok(Authorization {
        mchid: mchid.ok_or(AuthError::Malformed("mchid"))?,
        nonce_str: nonce.ok_or(AuthError::Malformed("nonce_str"))?,
        signature: sig.ok_or(AuthError::Malformed("signature"))?,
        timestamp: ts
            .ok_or(AuthError::Malformed("timestamp"))?
            .parse()
            .map_err(|_| AuthError::Malformed("timestamp"))?,
        serial_no: serial.ok_or(AuthError::Malformed("serial_no"))?,
    })
}

/// What the stand-in knows about the merchant whose requests it checks.
#[derive(Debug, Clone)]
pub struct MerchantIdentity {
    /// Merchant id.
    pub mchid: String,
    /// Merchant API certificate serial.
    pub serial_no: String,
    /// Merchant public key (SPKI), from `apiclient_cert.pem` / `merchant_public_key.pem`.
    pub public_key: VerifyingKey,
}

impl MerchantIdentity {
    /// Build from an SPKI PEM public key.
    pub fn from_pem(mchid: &str, serial_no: &str, public_key_pem: &str) -> Result<Self, KeyError> {
        Ok(Self {
            mchid: mchid.into(),
            serial_no: serial_no.into(),
            public_key: VerifyingKey::from_pem(public_key_pem)?,
        })
    }

    /// Check a request: header syntax, merchant, serial, 5-minute window, then the signature over
    /// `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n` with the exact body bytes.
    pub fn verify_request(
        &self,
        authorization: &str,
        method: &str,
        canonical_url: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Authorization, AuthError> {
        let auth = parse_authorization(authorization)?;
        if auth.mchid != self.mchid {
            return Err(AuthError::WrongMerchant(auth.mchid));
        }
        if !auth.serial_no.eq_ignore_ascii_case(&self.serial_no) {
            return Err(AuthError::WrongSerial(auth.serial_no));
        }
        if now_unix.abs_diff(auth.timestamp) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
            return Err(AuthError::Timestamp(auth.timestamp));
        }
        let sig = STANDARD
            .decode(auth.signature.as_bytes())
            .map_err(|_| AuthError::BadSignature)?;
        let msg = request_message(method, canonical_url, auth.timestamp, &auth.nonce_str, body);
        if self.public_key.verify(&msg, &sig) {
            Ok(auth)
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

/// The `Wechatpay-*` headers of a signed response or notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatpayHeaders {
    /// `Wechatpay-Timestamp`.
    pub timestamp: String,
    /// `Wechatpay-Nonce`.
    pub nonce: String,
    /// `Wechatpay-Signature`.
    pub signature: String,
    /// `Wechatpay-Serial`.
    pub serial: String,
}

impl WechatpayHeaders {
    /// `(name, value)` pairs, with `Wechatpay-Signature-Type`, ready to put on a response.
    pub fn pairs(&self) -> [(&'static str, String); 5] {
        [
            (headers::TIMESTAMP, self.timestamp.clone()),
            (headers::NONCE, self.nonce.clone()),
            (headers::SIGNATURE, self.signature.clone()),
            (headers::SERIAL, self.serial.clone()),
            (headers::SIGNATURE_TYPE, AUTH_SCHEME.to_owned()),
        ]
    }
}

/// Signs as WeChat Pay: a platform certificate key (serial = certificate serial) or the WeChat
/// Pay public key's private half (serial = `PUB_KEY_ID_…`).
#[derive(Debug)]
pub struct PlatformSigner {
    serial: String,
    key: RsaSigningKey,
}

impl PlatformSigner {
    /// A signer announcing itself as `serial`.
    pub fn new(serial: impl Into<String>, key: RsaSigningKey) -> Self {
        Self {
            serial: serial.into(),
            key,
        }
    }

    /// The serial put in `Wechatpay-Serial`.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Sign `body` as of `timestamp` with `nonce`.
    pub fn sign(
        &self,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> Result<WechatpayHeaders, KeyError> {
        let ts = timestamp.to_string();
        let signature = self.key.sign_base64(&response_message(&ts, nonce, body))?;
        Ok(WechatpayHeaders {
            timestamp: ts,
            nonce: nonce.to_owned(),
            signature,
            serial: self.serial.clone(),
        })
    }
}

/// Encrypt a resource the way WeChat Pay does (AAD `associated_data`, 12-character nonce).
pub fn encrypt_resource(
    key: &ApiV3Key,
    original_type: &str,
    associated_data: &str,
    nonce: &str,
    plaintext: &[u8],
) -> Result<EncryptedResource, AeadError> {
    Ok(EncryptedResource {
        original_type: original_type.to_owned(),
        algorithm: AEAD_AES_256_GCM.to_owned(),
        ciphertext: key.encrypt(nonce, associated_data, plaintext)?,
        associated_data: Some(associated_data.to_owned()),
        nonce: nonce.to_owned(),
    })
}

/// Building a notification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Encryption failed.
    #[error(transparent)]
    Aead(#[from] AeadError),
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The resource could not be serialised.
    #[error("resource serialisation: {0}")]
    Json(String),
}

/// What goes into a notification.
#[derive(Debug, Clone)]
pub struct NotificationSpec<'a> {
    /// `EV-…` id.
    pub id: &'a str,
    /// RFC 3339 creation time.
    pub create_time: &'a str,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, …
    pub event_type: &'a str,
    /// e.g. `支付成功`.
    pub summary: &'a str,
    /// `transaction` or `refund` (also used as associated data).
    pub original_type: &'a str,
    /// 12-character AEAD nonce.
    pub resource_nonce: &'a str,
    /// Signature time.
    pub timestamp: i64,
    /// Signature nonce.
    pub nonce: &'a str,
}

/// A ready-to-post notification: exact body bytes and the headers that sign them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNotification {
    /// JSON body bytes.
    pub body: Vec<u8>,
    /// Signature headers.
    pub headers: WechatpayHeaders,
}

/// Encrypt `resource` (any serialisable value: a `Transaction`, a `RefundNotification`, …),
/// wrap it in an envelope and sign it.
pub fn build_notification<T: Serialize>(
    spec: &NotificationSpec<'_>,
    resource: &T,
    apiv3_key: &ApiV3Key,
    signer: &PlatformSigner,
) -> Result<SignedNotification, BuildError> {
    let plaintext = serde_json::to_vec(resource).map_err(|e| BuildError::Json(e.to_string()))?;
    let envelope = NotificationEnvelope {
        id: spec.id.to_owned(),
        create_time: spec.create_time.to_owned(),
        resource_type: "encrypt-resource".into(),
        event_type: spec.event_type.to_owned(),
        summary: spec.summary.to_owned(),
        resource: encrypt_resource(
            apiv3_key,
            spec.original_type,
            spec.original_type,
            spec.resource_nonce,
            &plaintext,
        )?,
    };
    let body = serde_json::to_vec(&envelope).map_err(|e| BuildError::Json(e.to_string()))?;
    let headers = signer.sign(&body, spec.timestamp, spec.nonce)?;
    Ok(SignedNotification { body, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_pairs_in_any_order() {
        let a = parse_authorization(
            r#"WECHATPAY2-SHA256-RSA2048 serial_no="S",timestamp="1554208460",signature="c2ln",nonce_str="N",mchid="1900000109""#,
        )
        .unwrap();
        assert_eq!(
            (a.mchid.as_str(), a.timestamp, a.serial_no.as_str()),
            ("1900000109", 1_554_208_460, "S")
        );
    }

    #[test]
    fn malformed_authorization_is_refused() {
        for bad in [
            "",
            r#"Bearer mchid="1""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",signature="s",timestamp="x",serial_no="S""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",signature="s",timestamp="1""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2",nonce_str="N",signature="s",timestamp="1",serial_no="S""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="N",signature="s",timestamp="1",serial_no="S""#,
        ] {
            assert!(
                matches!(parse_authorization(bad), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
