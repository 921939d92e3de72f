//! WeChat Pay API v2 for merchants still on it: `unifiedorder` XML, MD5 / HMAC-SHA256 signs,
//! payment notification parsing and verification, and the XML reply.
//!
//! Sign: every non-empty parameter except `sign`, sorted by name (ASCII), joined `k=v&…`, then
//! `&key=<APIv2 key>`; MD5 or HMAC-SHA256 (keyed with the APIv2 key) in upper-case hex.
//! XML is parsed flat (children of `<xml>`), DOCTYPE refused (no entity expansion, no XXE).

use std::collections::BTreeMap;

use aws_lc_rs::hmac;
use md5::Digest as _;
use quick_xml::events::{BytesCData, BytesEnd, BytesStart, BytesText, Event};

use crate::clock::SharedClock;
use crate::outbound::{self, Retry};
use crate::pay::SharedNonce;

/// Default API host.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";

/// Parameters of a v2 message (name → value).
pub type Params = BTreeMap<String, String>;

/// v2 failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V2Error {
    /// A field failed validation; nothing was sent.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// Field.
        field: &'static str,
        /// Problem.
        problem: String,
    },
    /// The XML is malformed, nested, or carries a DOCTYPE.
    #[error("v2 XML: {0}")]
    Xml(String),
    /// No `sign` field.
    #[error("v2 message has no sign")]
    MissingSign,
    /// `sign` does not match.
    #[error("v2 sign does not verify")]
    BadSign,
    /// `sign_type` is neither MD5 nor HMAC-SHA256.
    #[error("unsupported v2 sign_type {0:?}")]
    SignType(String),
    /// `return_code` FAIL: communication-level error.
    #[error("v2 return_code FAIL: {0}")]
    Return(String),
    /// `result_code` FAIL: business error, with `err_code` / `err_code_des`.
    #[error("v2 result FAIL {err_code}: {err_code_des}")]
    Business {
        /// e.g. `ORDERPAID`, `SYSTEMERROR`.
        err_code: String,
        /// Description.
        err_code_des: String,
    },
    /// HTTP status other than 200.
    #[error("v2 HTTP {0}")]
    Status(u16),
    /// Network failure.
    #[error("v2 transport error: {message}")]
    Transport {
        /// Description.
        message: String,
        /// Worth retrying.
        transient: bool,
    },
    /// Client misconfiguration.
    #[error("v2 client configuration: {0}")]
    Config(String),
}

impl V2Error {
    /// Transient: network, 429/5xx, `SYSTEMERROR`.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { transient, .. } => *transient,
            Self::Status(s) => {
                http::StatusCode::from_u16(*s).is_ok_and(outbound::is_transient_status)
            }
            Self::Business { err_code, .. } => err_code == "SYSTEMERROR",
            _ => false,
        }
    }
}

/// The v2 sign algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignType {
    /// `MD5` (default when `sign_type` is absent).
    Md5,
    /// `HMAC-SHA256`.
    HmacSha256,
}

impl SignType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// From a `sign_type` value; absent means MD5.
    pub fn parse(value: Option<&str>) -> Result<Self, V2Error> {
        match value {
            None | Some("MD5") => Ok(Self::Md5),
            Some("HMAC-SHA256") => Ok(Self::HmacSha256),
            Some(other) => Err(V2Error::SignType(other.to_owned())),
        }
    }
}

/// The APIv2 key. Never printed.
#[derive(Clone)]
pub struct ApiV2Key(String);

impl ApiV2Key {
    /// Wrap the 32-character APIv2 key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key's bytes (for the refund notification key derivation; never logged).
    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for ApiV2Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV2Key(<redacted>)")
    }
}

/// `stringSignTemp`: sorted non-empty parameters except `sign`, then `&key=…`.
pub fn string_sign_temp(params: &Params, key: &ApiV2Key) -> String {
    let mut out = String::new();
    for (k, v) in params
        .iter()
        .filter(|(k, v)| !v.is_empty() && k.as_str() != "sign")
    {
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('&');
    }
    out.push_str("key=");
    out.push_str(&key.0);
    out
}

/// The upper-case hex sign of `params`.
pub fn sign(params: &Params, key: &ApiV2Key, sign_type: SignType) -> String {
    let temp = string_sign_temp(params, key);
    match sign_type {
        SignType::Md5 => hex::encode_upper(md5::Md5::digest(temp.as_bytes())),
        SignType::HmacSha256 => {
            let k = hmac::Key::new(hmac::HMAC_SHA256, key.0.as_bytes());
            hex::encode_upper(hmac::sign(&k, temp.as_bytes()).as_ref())
        }
    }
}

/// Check the `sign` of a received message (algorithm from its `sign_type`, MD5 if absent).
pub fn verify(params: &Params, key: &ApiV2Key) -> Result<(), V2Error> {
    let given = params
        .get("sign")
        .filter(|s| !s.is_empty())
        .ok_or(V2Error::MissingSign)?;
    let sign_type = SignType::parse(params.get("sign_type").map(String::as_str))?;
    let expected = sign(params, key, sign_type);
    // Constant-time comparison of the two hex strings.
    let (a, b) = (expected.as_bytes(), given.to_ascii_uppercase().into_bytes());
    let diff = a.len() ^ b.len()
        | a.iter()
            .zip(&b)
            .fold(0usize, |acc, (x, y)| acc | usize::from(x ^ y));
    if diff == 0 {
        Ok(())
    } else {
        Err(V2Error::BadSign)
    }
}

/// Serialise parameters as `<xml><k><![CDATA[v]]></k>…</xml>`.
pub fn to_xml(params: &Params) -> String {
    let mut writer = quick_xml::Writer::new(Vec::new());
    let mut write = |event: Event<'_>| {
        // Writing into a Vec cannot fail.
        let _ = writer.write_event(event);
    };
    write(Event::Start(BytesStart::new("xml")));
    for (k, v) in params {
        write(Event::Start(BytesStart::new(k.as_str())));
        if v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            write(Event::Text(BytesText::new(v)));
        } else {
            // `]]>` cannot appear inside CDATA: split it across two sections.
            for (i, part) in v.split("]]>").enumerate() {
                if i > 0 {
                    write(Event::CData(BytesCData::new("]]")));
                    write(Event::CData(BytesCData::new(">")));
                }
                write(Event::CData(BytesCData::new(part)));
            }
        }
        write(Event::End(BytesEnd::new(k.as_str())));
    }
    write(Event::End(BytesEnd::new("xml")));
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

/// Parse a flat v2 XML message. DOCTYPE, nesting and duplicate fields are refused.
pub fn from_xml(xml: &str) -> Result<Params, V2Error> {
    from_xml_rooted(xml, "xml")
}

/// [`from_xml`] for a message whose root element is `root` (the decrypted `req_info` of a
/// refund notification is a `<root>`).
pub fn from_xml_rooted(xml: &str, root: &str) -> Result<Params, V2Error> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut params = Params::new();
    let mut depth = 0usize;
    let mut current: Option<String> = None;
    let mut value = String::new();
    let mut saw_root = false;
    loop {
        match reader
            .read_event()
            .map_err(|e| V2Error::Xml(e.to_string()))?
        {
            Event::DocType(_) => return Err(V2Error::Xml("DOCTYPE not allowed".into())),
            Event::Start(e) => {
                depth += 1;
                let name = AsRef::<str>::as_ref(&e.name()).to_owned();
                match depth {
                    1 if name == root && !saw_root => saw_root = true,
                    1 => return Err(V2Error::Xml(format!("unexpected root <{name}>"))),
                    2 => {
                        current = Some(name);
                        value.clear();
                    }
                    _ => return Err(V2Error::Xml("nested elements not allowed".into())),
                }
            }
            Event::Empty(e) if depth == 1 => {
                let name = AsRef::<str>::as_ref(&e.name()).to_owned();
                if params.insert(name.clone(), String::new()).is_some() {
                    return Err(V2Error::Xml(format!("duplicate <{name}>")));
                }
            }
            Event::Empty(_) => return Err(V2Error::Xml("unexpected empty element".into())),
            Event::Text(t) if depth == 2 => {
                // Entity references arrive as separate `GeneralRef` events.
                value.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if depth == 2 => {
                let name: &str = &r;
                let resolved = match name {
                    "lt" => "<".to_owned(),
                    "gt" => ">".to_owned(),
                    "amp" => "&".to_owned(),
                    "apos" => "'".to_owned(),
                    "quot" => "\"".to_owned(),
                    other => match r
                        .resolve_char_ref()
                        .map_err(|e| V2Error::Xml(e.to_string()))?
                    {
                        Some(c) => c.to_string(),
                        None => return Err(V2Error::Xml(format!("unknown entity &{other};"))),
                    },
                };
                value.push_str(&resolved);
            }
            Event::CData(c) if depth == 2 => {
                value.push_str(&c);
            }
            Event::End(_) => {
                if depth == 2
                    && let Some(name) = current.take()
                    && params
                        .insert(name.clone(), std::mem::take(&mut value))
                        .is_some()
                {
                    return Err(V2Error::Xml(format!("duplicate <{name}>")));
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(V2Error::Xml(format!("no <{root}> root")));
    }
    Ok(params)
}

/// The success reply to a v2 notification.
pub const REPLY_SUCCESS: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// A failure reply (WeChat redelivers).
pub fn reply_fail(message: &str) -> String {
    let mut p = Params::new();
    p.insert("return_code".into(), "FAIL".into());
    p.insert("return_msg".into(), message.into());
    to_xml(&p)
}

/// A verified v2 payment notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentNotify {
    /// AppID.
    pub appid: String,
    /// Merchant id.
    pub mch_id: String,
    /// Merchant order number.
    pub out_trade_no: String,
    /// WeChat transaction id.
    pub transaction_id: String,
    /// Amount, fen.
    pub total_fee: i64,
    /// Payer openid.
    pub openid: String,
    /// `yyyyMMddHHmmss`.
    pub time_end: String,
    /// Attach, if any.
    pub attach: Option<String>,
    /// Every field as received (unknown new fields included).
    pub fields: Params,
}

/// Parse and verify a v2 payment notification: sign first (missing or bad → refused), then
/// `return_code` and `result_code` must both be SUCCESS.
pub fn parse_notify(xml: &str, key: &ApiV2Key) -> Result<PaymentNotify, V2Error> {
    let fields = from_xml(xml)?;
    if fields.get("return_code").map(String::as_str) != Some("SUCCESS") {
        return Err(V2Error::Return(
            fields.get("return_msg").cloned().unwrap_or_default(),
        ));
    }
    verify(&fields, key)?;
    check_result(&fields)?;
    let get = |k: &'static str| {
        fields
            .get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(V2Error::Invalid {
                field: k,
                problem: "missing".into(),
            })
    };
    let total_fee = get("total_fee")?.parse().map_err(|_| V2Error::Invalid {
        field: "total_fee",
        problem: "not an integer".into(),
    })?;
    Ok(PaymentNotify {
        appid: get("appid")?,
        mch_id: get("mch_id")?,
        out_trade_no: get("out_trade_no")?,
        transaction_id: get("transaction_id")?,
        total_fee,
        openid: get("openid")?,
        time_end: get("time_end")?,
        attach: fields.get("attach").filter(|v| !v.is_empty()).cloned(),
        fields,
    })
}

fn check_result(fields: &Params) -> Result<(), V2Error> {
    if fields.get("result_code").map(String::as_str) == Some("SUCCESS") {
        return Ok(());
    }
    Err(V2Error::Business {
        err_code: fields.get("err_code").cloned().unwrap_or_default(),
        err_code_des: fields.get("err_code_des").cloned().unwrap_or_default(),
    })
}

/// A v2 JSAPI `unifiedorder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedOrder {
    /// AppID.
    pub appid: String,
    /// Description (≤ 128 bytes).
    pub body: String,
    /// 1–32 of `[0-9A-Za-z_-|*]`.
    pub out_trade_no: String,
    /// Fen, > 0.
    pub total_fee: i64,
    /// Client IP.
    pub spbill_create_ip: String,
    /// Notify URL (no query string).
    pub notify_url: String,
    /// Payer openid (required for JSAPI).
    pub openid: String,
    /// Attach (≤ 127 bytes).
    pub attach: Option<String>,
    /// `yyyyMMddHHmmss`, Beijing time.
    pub time_expire: Option<String>,
}

impl UnifiedOrder {
    /// The unsigned request parameters (without `nonce_str`, `sign_type`, `sign`).
    pub fn params(&self, mch_id: &str) -> Result<Params, V2Error> {
        use crate::pay::v3::models::{check_id, check_notify_url, check_text};
        let v = |e: crate::pay::v3::ValidationError| V2Error::Invalid {
            field: e.field,
            problem: e.problem,
        };
        check_id("appid", &self.appid, 1, 32, "_").map_err(v)?;
        check_id("mch_id", mch_id, 1, 32, "").map_err(v)?;
        check_text("body", &self.body, 1, 128).map_err(v)?;
        check_id("out_trade_no", &self.out_trade_no, 1, 32, "_-|*").map_err(v)?;
        if self.total_fee <= 0 {
            return Err(V2Error::Invalid {
                field: "total_fee",
                problem: "must be positive fen".into(),
            });
        }
        self.spbill_create_ip
            .parse::<std::net::IpAddr>()
            .map_err(|_| V2Error::Invalid {
                field: "spbill_create_ip",
                problem: "not an IP".into(),
            })?;
        check_notify_url("notify_url", &self.notify_url).map_err(v)?;
        check_text("openid", &self.openid, 1, 128).map_err(v)?;
        if let Some(a) = &self.attach {
            check_text("attach", a, 0, 127).map_err(v)?;
        }
        if let Some(t) = &self.time_expire
            && (t.len() != 14 || !t.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(V2Error::Invalid {
                field: "time_expire",
                problem: "must be yyyyMMddHHmmss".into(),
            });
        }
        let mut p = Params::new();
        for (k, val) in [
            ("appid", Some(&self.appid)),
            ("mch_id", Some(&mch_id.to_owned())),
            ("body", Some(&self.body)),
            ("out_trade_no", Some(&self.out_trade_no)),
            ("total_fee", Some(&self.total_fee.to_string())),
            ("spbill_create_ip", Some(&self.spbill_create_ip)),
            ("notify_url", Some(&self.notify_url)),
            ("trade_type", Some(&"JSAPI".to_owned())),
            ("openid", Some(&self.openid)),
            ("attach", self.attach.as_ref()),
            ("time_expire", self.time_expire.as_ref()),
        ] {
            if let Some(val) = val {
                p.insert(k.to_owned(), val.clone());
            }
        }
        Ok(p)
    }
}

/// A successful `unifiedorder` answer (sign verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedOrderResponse {
    /// Valid 2 hours.
    pub prepay_id: String,
    /// `JSAPI`.
    pub trade_type: String,
    /// All fields.
    pub fields: Params,
}

/// v2 `wx.requestPayment` parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestPaymentParams {
    /// Unix seconds.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    /// Random string.
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// `MD5` or `HMAC-SHA256` (must match the order's).
    #[serde(rename = "signType")]
    pub sign_type: String,
    /// Sign over appId, nonceStr, package, signType, timeStamp.
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// v2 JSAPI paySign parameters.
pub fn request_payment(
    appid: &str,
    prepay_id: &str,
    timestamp: i64,
    nonce: &str,
    sign_type: SignType,
    key: &ApiV2Key,
) -> RequestPaymentParams {
    let mut p = Params::new();
    p.insert("appId".into(), appid.into());
    p.insert("timeStamp".into(), timestamp.to_string());
    p.insert("nonceStr".into(), nonce.into());
    p.insert("package".into(), format!("prepay_id={prepay_id}"));
    p.insert("signType".into(), sign_type.as_str().into());
    let pay_sign = sign(&p, key, sign_type);
    RequestPaymentParams {
        time_stamp: timestamp.to_string(),
        nonce_str: nonce.into(),
        package: format!("prepay_id={prepay_id}"),
        sign_type: sign_type.as_str().into(),
        pay_sign,
    }
}

/// v2 client for one merchant.
#[derive(Clone)]
pub struct V2Client {
    http: reqwest::Client,
    base_url: String,
    mch_id: String,
    key: ApiV2Key,
    sign_type: SignType,
    nonce: SharedNonce,
    clock: SharedClock,
    retry: Retry,
}

impl std::fmt::Debug for V2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Client")
            .field("base_url", &self.base_url)
            .field("mch_id", &self.mch_id)
            .finish_non_exhaustive()
    }
}

impl V2Client {
    /// A client for `base_url` signing with `sign_type`.
    pub fn new(
        base_url: &str,
        mch_id: &str,
        key: ApiV2Key,
        sign_type: SignType,
    ) -> Result<Self, V2Error> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url).map_err(|e| V2Error::Config(format!("base URL: {e}")))?;
        Ok(Self {
            http: outbound::client().map_err(|e| V2Error::Config(e.to_string()))?,
            base_url,
            mch_id: mch_id.to_owned(),
            key,
            sign_type,
            nonce: std::sync::Arc::new(crate::pay::RandomNonce),
            clock: std::sync::Arc::new(crate::clock::SystemClock),
            retry: Retry::default(),
        })
    }

    /// Use another nonce source (tests).
    pub fn with_nonce(mut self, nonce: SharedNonce) -> Self {
        self.nonce = nonce;
        self
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Use another retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The signed XML body of a request (exposed so tests and the emulator see the exact bytes).
    pub fn signed_xml(&self, mut params: Params) -> String {
        params.insert("nonce_str".into(), self.nonce.nonce());
        params.insert("sign_type".into(), self.sign_type.as_str().into());
        let s = sign(&params, &self.key, self.sign_type);
        params.insert("sign".into(), s);
        to_xml(&params)
    }

    /// Place a JSAPI order; the answer's sign is verified.
    pub async fn unifiedorder(
        &self,
        order: &UnifiedOrder,
    ) -> Result<UnifiedOrderResponse, V2Error> {
        let xml = self.signed_xml(order.params(&self.mch_id)?);
        let url = format!("{}/pay/unifiedorder", self.base_url);
        let body = bytes::Bytes::from(xml);
        let fields = self
            .retry
            .run(
                |_| self.send_once(&url, body.clone()),
                V2Error::is_retryable,
            )
            .await?;
        let prepay_id = fields
            .get("prepay_id")
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(V2Error::Invalid {
                field: "prepay_id",
                problem: "missing in answer".into(),
            })?;
        Ok(UnifiedOrderResponse {
            prepay_id,
            trade_type: fields.get("trade_type").cloned().unwrap_or_default(),
            fields,
        })
    }

    /// `wx.requestPayment` parameters for a v2 prepay id, signed now.
    pub fn request_payment(&self, appid: &str, prepay_id: &str) -> RequestPaymentParams {
        request_payment(
            appid,
            prepay_id,
            self.clock.now_unix(),
            &self.nonce.nonce(),
            self.sign_type,
            &self.key,
        )
    }

    /// Parse and verify a notification with this merchant's key.
    pub fn parse_notify(&self, xml: &str) -> Result<PaymentNotify, V2Error> {
        parse_notify(xml, &self.key)
    }

    async fn send_once(&self, url: &str, body: bytes::Bytes) -> Result<Params, V2Error> {
        let transport = |e: reqwest::Error| V2Error::Transport {
            transient: outbound::is_transient_transport(&e),
            message: e.without_url().to_string(),
        };
        let response = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header(http::header::USER_AGENT, outbound::USER_AGENT)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(V2Error::Status(status.as_u16()));
        }
        let text = response.text().await.map_err(transport)?;
        let fields = from_xml(&text)?;
        if fields.get("return_code").map(String::as_str) != Some("SUCCESS") {
            return Err(V2Error::Return(
                fields.get("return_msg").cloned().unwrap_or_default(),
            ));
        }
        verify(&fields, &self.key)?;
        check_result(&fields)?;
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // Official v2 signing example (reference §7, V6).
    #[test]
    fn official_sign_example() {
        let p = params(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ]);
        let key = ApiV2Key::new("192006250b4c09247ec02edce69f6a2d");
        assert_eq!(
            sign(&p, &key, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(&p, &key, SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    // Official v2 Mini Program paySign example (reference §7, V7).
    #[test]
    fn official_pay_sign_example() {
        let key = ApiV2Key::new("qazwsxedcrfvtgbyhnujmikolp111111");
        let params = request_payment(
            "wxd678efh567hg6787",
            "wx2017033010242291fcfe0db70013231072",
            1_490_840_662,
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            SignType::Md5,
            &key,
        );
        assert_eq!(params.pay_sign, "22D9B4E54AB1950F51E0649E8810ACD6");
    }

    #[test]
    fn xml_round_trip_and_safety() {
        let p = params(&[("a", "1"), ("b", "会员 <x> & ]]> y"), ("c", "")]);
        assert_eq!(from_xml(&to_xml(&p)).unwrap(), p);
        assert!(
            from_xml(
                "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><a>&e;</a></xml>"
            )
            .is_err()
        );
        assert!(from_xml("<xml><a><b>1</b></a></xml>").is_err());
        assert!(from_xml("<xml><a>1</a><a>2</a></xml>").is_err());
        assert!(from_xml("<root><a>1</a></root>").is_err());
        assert_eq!(
            from_xml("<xml><a>x &amp; y</a></xml>").unwrap()["a"],
            "x & y"
        );
    }

    #[test]
    fn notify_is_verified_before_use() {
        let key = ApiV2Key::new("2VLE9paw1ghzJztbA7UjKautEUCTdhr0");
        let mut p = params(&[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("appid", "wx7fe13309749792e0"),
            ("mch_id", "1959139582"),
            ("out_trade_no", "ORD1"),
            ("transaction_id", "4200000001"),
            ("total_fee", "1990"),
            ("openid", "o1"),
            ("time_end", "20260102102030"),
            ("sign_type", "HMAC-SHA256"),
            ("new_field_from_wechat", "kept"),
        ]);
        let s = sign(&p, &key, SignType::HmacSha256);
        p.insert("sign".into(), s);
        let n = parse_notify(&to_xml(&p), &key).unwrap();
        assert_eq!((n.total_fee, n.out_trade_no.as_str()), (1990, "ORD1"));
        let mut tampered = p.clone();
        tampered.insert("total_fee".into(), "1".into());
        assert_eq!(
            parse_notify(&to_xml(&tampered), &key),
            Err(V2Error::BadSign)
        );
        let mut unsigned = p.clone();
        unsigned.remove("sign");
        assert_eq!(
            parse_notify(&to_xml(&unsigned), &key),
            Err(V2Error::MissingSign)
        );
        assert_eq!(
            parse_notify(&to_xml(&p), &ApiV2Key::new("wrong")),
            Err(V2Error::BadSign)
        );
        assert!(reply_fail("签名错误").contains("<return_code>FAIL</return_code>"));
    }
}
