//! API v2 refund notifications: the outer XML carries no signature, only `req_info`, the
//! refund encrypted with AES-256-ECB (PKCS#7) under the 32 ASCII characters of
//! `lowercase_hex(MD5(APIv2 key))`. Only a holder of the APIv2 key can make a `req_info` that
//! decrypts and parses, which is what makes the notification authentic (docs/pay.md).
//!
//! Sizes are bounded before anything is decoded: the body ([`MAX_NOTIFY_BYTES`]) and
//! `req_info` ([`MAX_REQ_INFO_CHARS`]).

use aws_lc_rs::cipher::{AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey};
use base64::Engine as _;
use md5::Digest as _;

use super::v2::{ApiV2Key, Params, V2Error, from_xml, from_xml_rooted};

/// Largest refund notification body accepted (a real one is under 2 KB).
pub const MAX_NOTIFY_BYTES: usize = 16 * 1024;
/// Largest `req_info` accepted, base64 characters.
pub const MAX_REQ_INFO_CHARS: usize = 8 * 1024;

/// `refund_status` of a v2 refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2RefundStatus {
    /// `SUCCESS`: refunded (final).
    Success,
    /// `CHANGE`: refund exception (e.g. the user's card was cancelled); handled by hand.
    Change,
    /// `REFUNDCLOSE`: closed.
    Closed,
    /// Any other value, kept as sent.
    Other(String),
}

/// A decrypted, checked v2 refund notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundNotify {
    /// Outer `appid`.
    pub appid: String,
    /// Outer `mch_id`.
    pub mch_id: String,
    /// Our refund number: the idempotency key.
    pub out_refund_no: String,
    /// Our order number.
    pub out_trade_no: String,
    /// WeChat's refund id.
    pub refund_id: String,
    /// WeChat's transaction id.
    pub transaction_id: String,
    /// Refund requested, fen.
    pub refund_fee: i64,
    /// Order total, fen.
    pub total_fee: i64,
    /// The outcome.
    pub refund_status: V2RefundStatus,
    /// `yyyy-MM-dd HH:mm:ss` China time, on success.
    pub success_time: Option<String>,
}

fn invalid(field: &'static str, problem: &str) -> V2Error {
    V2Error::Invalid {
        field,
        problem: problem.into(),
    }
}

/// Decrypts `req_info` with `key` to its XML text.
pub fn decrypt_req_info(req_info: &str, key: &ApiV2Key) -> Result<String, V2Error> {
    let req_info = req_info.trim();
    if req_info.is_empty() || req_info.len() > MAX_REQ_INFO_CHARS {
        return Err(invalid("req_info", "empty or too long"));
    }
    let mut data = base64::engine::general_purpose::STANDARD
        .decode(req_info)
        .map_err(|_| invalid("req_info", "not base64"))?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(invalid("req_info", "not whole AES blocks"));
    }
    let derived = hex::encode(md5::Md5::digest(key.expose()));
    let cipher = UnboundCipherKey::new(&AES_256, derived.as_bytes())
        .and_then(PaddedBlockDecryptingKey::ecb_pkcs7)
        .map_err(|_| V2Error::Config("AES-256-ECB unavailable".into()))?;
    let plain = cipher
        .decrypt(&mut data, DecryptionContext::None)
        .map_err(|_| invalid("req_info", "does not decrypt with this key"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| invalid("req_info", "not UTF-8"))
}

/// Whether a v2 notification body is a refund notification (it has `req_info`).
pub fn is_refund_notify(fields: &Params) -> bool {
    fields.contains_key("req_info")
}

/// Parses, decrypts and checks a v2 refund notification body.
pub fn parse_refund_notify(xml: &str, key: &ApiV2Key) -> Result<RefundNotify, V2Error> {
    if xml.len() > MAX_NOTIFY_BYTES {
        return Err(invalid("body", "too large"));
    }
    let outer = from_xml(xml)?;
    parse_refund_fields(&outer, key)
}

/// [`parse_refund_notify`] for an outer message already parsed.
pub fn parse_refund_fields(outer: &Params, key: &ApiV2Key) -> Result<RefundNotify, V2Error> {
    if outer.get("return_code").map(String::as_str) != Some("SUCCESS") {
        return Err(V2Error::Return(
            outer.get("return_msg").cloned().unwrap_or_default(),
        ));
    }
    let req_info = outer
        .get("req_info")
        .ok_or_else(|| invalid("req_info", "missing"))?;
    let inner = from_xml_rooted(&decrypt_req_info(req_info, key)?, "root")?;
    let outer_field = |k: &'static str| {
        outer
            .get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| invalid(k, "missing"))
    };
    let field = |k: &'static str| {
        inner
            .get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| invalid(k, "missing"))
    };
    let fen = |k: &'static str| -> Result<i64, V2Error> {
        field(k)?
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| invalid(k, "not a non-negative integer"))
    };
    let refund_status = match field("refund_status")?.as_str() {
        "SUCCESS" => V2RefundStatus::Success,
        "CHANGE" => V2RefundStatus::Change,
        "REFUNDCLOSE" => V2RefundStatus::Closed,
        other => V2RefundStatus::Other(other.to_owned()),
    };
    Ok(RefundNotify {
        appid: outer_field("appid")?,
        mch_id: outer_field("mch_id")?,
        out_refund_no: field("out_refund_no")?,
        out_trade_no: field("out_trade_no")?,
        refund_id: field("refund_id")?,
        transaction_id: field("transaction_id").unwrap_or_default(),
        refund_fee: fen("refund_fee")?,
        total_fee: fen("total_fee")?,
        refund_status,
        success_time: inner.get("success_time").filter(|v| !v.is_empty()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_and_malformed_req_info_is_refused_before_decryption() {
        let key = ApiV2Key::new("192006250b4c09247ec02edce69f6a2d");
        assert!(decrypt_req_info(&"A".repeat(MAX_REQ_INFO_CHARS + 4), &key).is_err());
        assert!(decrypt_req_info("not base64!", &key).is_err());
        assert!(
            decrypt_req_info("AAAA", &key).is_err(),
            "3 bytes: not a block"
        );
        let big = format!("<xml>{}</xml>", " ".repeat(MAX_NOTIFY_BYTES));
        assert!(parse_refund_notify(&big, &key).is_err());
    }
}
