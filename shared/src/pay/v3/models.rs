//! v3 request and response bodies, and the checks run before anything is sent.
//!
//! Amounts are integer fen (`i64`) exactly as on the wire. Lengths are checked in UTF-8 bytes
//! (the safe reading of WeChat's "string(N)", reference §3.1) and 4-byte characters are refused.

use serde::{Deserialize, Serialize};

use crate::pay::has_4byte_char;

/// A request field failed validation; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct ValidationError {
    /// Wire name of the field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        problem: problem.into(),
    }
}

/// Text field: `min..=max` UTF-8 bytes, no 4-byte characters.
pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    let len = value.len();
    if len < min || len > max {
        return Err(invalid(
            field,
            format!("must be {min}..={max} UTF-8 bytes, got {len}"),
        ));
    }
    if has_4byte_char(value) {
        return Err(invalid(
            field,
            "4-byte UTF-8 characters (e.g. emoji) are not accepted",
        ));
    }
    Ok(())
}

/// Identifier field: `min..=max` characters from `[0-9A-Za-z]` plus `extra`.
pub(crate) fn check_id(
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
    extra: &str,
) -> Result<(), ValidationError> {
    let len = value.len();
    if len < min || len > max {
        return Err(invalid(
            field,
            format!("must be {min}..={max} characters, got {len}"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))
    {
        return Err(invalid(
            field,
            format!("character {c:?} not allowed (only 0-9A-Za-z{extra})"),
        ));
    }
    Ok(())
}

/// A notify URL: https (http only for loopback, i.e. the local emulator), no query string.
pub(crate) fn check_notify_url(field: &'static str, url: &str) -> Result<(), ValidationError> {
    check_text(field, url, 1, 255)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(field, e.to_string()))?;
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err(invalid(field, "must be https"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(field, "must not carry a query string"));
    }
    Ok(())
}

/// Amount in fen: strictly positive.
pub(crate) fn check_fen(field: &'static str, fen: i64) -> Result<(), ValidationError> {
    if fen <= 0 {
        return Err(invalid(
            field,
            format!("must be a positive amount in fen, got {fen}"),
        ));
    }
    Ok(())
}

/// `time_expire` in the form WeChat documents: RFC 3339, seconds, offset +08:00.
pub fn format_time_expire(at: time::OffsetDateTime) -> Result<String, ValidationError> {
    let beijing =
        time::UtcOffset::from_hms(8, 0, 0).map_err(|e| invalid("time_expire", e.to_string()))?;
    let local = at.to_offset(beijing);
    let fmt =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+08:00");
    local
        .format(&fmt)
        .map_err(|e| invalid("time_expire", e.to_string()))
}

/// A JSAPI (Mini Program) order to place. `mchid` and the default `notify_url` come from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsapiOrder {
    /// Mini Program AppID bound to the merchant.
    pub appid: String,
    /// Shown on the user's bill; at most 127 bytes.
    pub description: String,
    /// 6–32 characters of `[0-9A-Za-z_-|*]`, unique per merchant; the idempotency key.
    pub out_trade_no: String,
    /// Amount in fen, > 0.
    pub total_fen: i64,
    /// Payer's openid under `appid`.
    pub payer_openid: String,
    /// Payment deadline; sent as RFC 3339 in +08:00.
    pub time_expire: Option<time::OffsetDateTime>,
    /// Echoed back in query and notification; at most 128 bytes.
    pub attach: Option<String>,
    /// Overrides the client's notify URL.
    pub notify_url: Option<String>,
    /// Coupon tag, at most 32 bytes.
    pub goods_tag: Option<String>,
    /// Payer's client IP (scene_info.payer_client_ip).
    pub payer_client_ip: Option<String>,
}

impl JsapiOrder {
    /// A minimal order; optional fields empty.
    pub fn new(
        appid: impl Into<String>,
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        total_fen: i64,
        payer_openid: impl Into<String>,
    ) -> Self {
        Self {
            appid: appid.into(),
            description: description.into(),
            out_trade_no: out_trade_no.into(),
            total_fen,
            payer_openid: payer_openid.into(),
            time_expire: None,
            attach: None,
            notify_url: None,
            goods_tag: None,
            payer_client_ip: None,
        }
    }

    /// Validate and build the wire body for merchant `mchid`.
    pub(crate) fn to_wire(
        &self,
        mchid: &str,
        default_notify_url: &str,
    ) -> Result<JsapiPrepayBody, ValidationError> {
        check_id("appid", &self.appid, 1, 32, "_")?;
        check_id("mchid", mchid, 1, 32, "")?;
        check_text("description", &self.description, 1, 127)?;
        check_id("out_trade_no", &self.out_trade_no, 6, 32, "_-|*")?;
        check_fen("amount.total", self.total_fen)?;
        check_text("payer.openid", &self.payer_openid, 1, 128)?;
        if let Some(attach) = &self.attach {
            check_text("attach", attach, 0, 128)?;
        }
        if let Some(tag) = &self.goods_tag {
            check_text("goods_tag", tag, 1, 32)?;
        }
        if let Some(ip) = &self.payer_client_ip {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| invalid("scene_info.payer_client_ip", "not an IP address"))?;
        }
        let notify_url = self.notify_url.as_deref().unwrap_or(default_notify_url);
        check_notify_url("notify_url", notify_url)?;
        let time_expire = self.time_expire.map(format_time_expire).transpose()?;
        Ok(JsapiPrepayBody {
            appid: self.appid.clone(),
            mchid: mchid.to_owned(),
            description: self.description.clone(),
            out_trade_no: self.out_trade_no.clone(),
            time_expire,
            attach: self.attach.clone(),
            notify_url: notify_url.to_owned(),
            goods_tag: self.goods_tag.clone(),
            amount: OrderAmount {
                total: self.total_fen,
                currency: "CNY".into(),
            },
            payer: Payer {
                openid: self.payer_openid.clone(),
            },
            scene_info: self
                .payer_client_ip
                .clone()
                .map(|payer_client_ip| SceneInfo { payer_client_ip }),
        })
    }
}

/// Wire body of `POST /v3/pay/transactions/jsapi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiPrepayBody {
    /// AppID.
    pub appid: String,
    /// Merchant id.
    pub mchid: String,
    /// Description.
    pub description: String,
    /// Merchant order number.
    pub out_trade_no: String,
    /// RFC 3339 +08:00.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time_expire: Option<String>,
    /// Attach.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub attach: Option<String>,
    /// Notify URL.
    pub notify_url: String,
    /// Goods tag.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub goods_tag: Option<String>,
    /// Amount.
    pub amount: OrderAmount,
    /// Payer.
    pub payer: Payer,
    /// Scene info.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scene_info: Option<SceneInfo>,
}

/// `amount` of an order request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAmount {
    /// Fen.
    pub total: i64,
    /// `CNY`.
    #[serde(default = "cny")]
    pub currency: String,
}

fn cny() -> String {
    "CNY".into()
}

/// `payer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    /// Payer openid.
    pub openid: String,
}

/// `scene_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneInfo {
    /// Payer client IP.
    pub payer_client_ip: String,
}

/// Response of a JSAPI prepay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayResponse {
    /// Valid for 2 hours.
    pub prepay_id: String,
}

/// `trade_state` of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TradeState {
    /// Paid.
    Success,
    /// Transferred to refund.
    Refund,
    /// Not paid yet.
    #[serde(rename = "NOTPAY")]
    NotPay,
    /// Closed.
    Closed,
    /// Revoked (barcode payments).
    Revoked,
    /// The user is paying.
    #[serde(rename = "USERPAYING")]
    UserPaying,
    /// Payment failed.
    #[serde(rename = "PAYERROR")]
    PayError,
    /// Accepted, awaiting deduction.
    Accept,
    /// A state this code does not know yet.
    #[serde(other)]
    Unknown,
}

/// A transaction, from a query or a `TRANSACTION.SUCCESS` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// AppID.
    #[serde(default)]
    pub appid: Option<String>,
    /// Merchant id.
    pub mchid: String,
    /// Merchant order number.
    pub out_trade_no: String,
    /// WeChat transaction id (absent before payment).
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// JSAPI, NATIVE, …
    #[serde(default)]
    pub trade_type: Option<String>,
    /// State.
    pub trade_state: TradeState,
    /// Human-readable state.
    #[serde(default)]
    pub trade_state_desc: Option<String>,
    /// Paying bank.
    #[serde(default)]
    pub bank_type: Option<String>,
    /// Echo of the order's attach.
    #[serde(default)]
    pub attach: Option<String>,
    /// RFC 3339 payment time.
    #[serde(default)]
    pub success_time: Option<String>,
    /// Payer.
    #[serde(default)]
    pub payer: Option<Payer>,
    /// Amounts.
    #[serde(default)]
    pub amount: Option<TransactionAmount>,
}

/// `amount` of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    /// Order total, fen.
    #[serde(default)]
    pub total: Option<i64>,
    /// What the user paid, fen.
    #[serde(default)]
    pub payer_total: Option<i64>,
    /// Currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Payer currency.
    #[serde(default)]
    pub payer_currency: Option<String>,
}

/// Which payment a refund applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundTarget {
    /// By merchant order number.
    OutTradeNo(String),
    /// By WeChat transaction id.
    TransactionId(String),
}

/// A refund to request. `out_refund_no` makes it idempotent: repeating it refunds once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrder {
    /// The payment.
    pub target: RefundTarget,
    /// 1–64 characters of `[0-9A-Za-z_-|*@]`.
    pub out_refund_no: String,
    /// Refund amount, fen, > 0 and ≤ `total_fen`.
    pub refund_fen: i64,
    /// Original order total, fen.
    pub total_fen: i64,
    /// Shown to the user; at most 80 bytes.
    pub reason: Option<String>,
    /// Overrides the platform's refund notify URL.
    pub notify_url: Option<String>,
}

impl RefundOrder {
    pub(crate) fn to_wire(&self) -> Result<RefundBody, ValidationError> {
        let (out_trade_no, transaction_id) = match &self.target {
            RefundTarget::OutTradeNo(no) => {
                check_id("out_trade_no", no, 6, 32, "_-|*")?;
                (Some(no.clone()), None)
            }
            RefundTarget::TransactionId(id) => {
                check_id("transaction_id", id, 1, 32, "")?;
                (None, Some(id.clone()))
            }
        };
        check_id("out_refund_no", &self.out_refund_no, 1, 64, "_-|*@")?;
        check_fen("amount.refund", self.refund_fen)?;
        check_fen("amount.total", self.total_fen)?;
        if self.refund_fen > self.total_fen {
            return Err(invalid("amount.refund", "exceeds the order total"));
        }
        if let Some(reason) = &self.reason {
            check_text("reason", reason, 1, 80)?;
        }
        if let Some(url) = &self.notify_url {
            check_notify_url("notify_url", url)?;
        }
        Ok(RefundBody {
            transaction_id,
            out_trade_no,
            out_refund_no: self.out_refund_no.clone(),
            reason: self.reason.clone(),
            notify_url: self.notify_url.clone(),
            amount: RefundRequestAmount {
                refund: self.refund_fen,
                total: self.total_fen,
                currency: "CNY".into(),
            },
        })
    }
}

/// Wire body of `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundBody {
    /// One of transaction_id / out_trade_no.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub transaction_id: Option<String>,
    /// One of transaction_id / out_trade_no.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub out_trade_no: Option<String>,
    /// Refund number.
    pub out_refund_no: String,
    /// Reason.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Notify URL.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notify_url: Option<String>,
    /// Amount.
    pub amount: RefundRequestAmount,
}

/// `amount` of a refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequestAmount {
    /// Fen.
    pub refund: i64,
    /// Fen.
    pub total: i64,
    /// `CNY`.
    pub currency: String,
}

/// Status of a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefundStatus {
    /// Refunded.
    Success,
    /// Closed.
    Closed,
    /// In progress.
    Processing,
    /// Abnormal: needs manual handling.
    Abnormal,
    /// A status this code does not know yet.
    #[serde(other)]
    Unknown,
}

/// A refund, from create or query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// WeChat refund id.
    pub refund_id: String,
    /// Merchant refund number.
    pub out_refund_no: String,
    /// WeChat transaction id.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Merchant order number.
    #[serde(default)]
    pub out_trade_no: Option<String>,
    /// ORIGINAL, BALANCE, …
    #[serde(default)]
    pub channel: Option<String>,
    /// Where the money went.
    #[serde(default)]
    pub user_received_account: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub success_time: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub create_time: Option<String>,
    /// Status.
    pub status: RefundStatus,
    /// Funds account.
    #[serde(default)]
    pub funds_account: Option<String>,
    /// Amounts.
    pub amount: RefundAmount,
}

/// `amount` of a refund or refund notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    /// Order total, fen.
    pub total: i64,
    /// Refunded, fen.
    pub refund: i64,
    /// Paid by the user, fen.
    #[serde(default)]
    pub payer_total: Option<i64>,
    /// Refunded to the user, fen.
    #[serde(default)]
    pub payer_refund: Option<i64>,
    /// Currency.
    #[serde(default)]
    pub currency: Option<String>,
}

/// The decrypted resource of a `REFUND.*` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNotification {
    /// Merchant id.
    pub mchid: String,
    /// Merchant order number.
    pub out_trade_no: String,
    /// WeChat transaction id.
    pub transaction_id: String,
    /// Merchant refund number.
    pub out_refund_no: String,
    /// WeChat refund id.
    pub refund_id: String,
    /// SUCCESS, CLOSED or ABNORMAL.
    pub refund_status: RefundStatus,
    /// RFC 3339.
    #[serde(default)]
    pub success_time: Option<String>,
    /// Where the money went.
    #[serde(default)]
    pub user_received_account: Option<String>,
    /// Amounts.
    pub amount: RefundAmount,
}

/// A WeChat Pay error body: `{"code","message","detail"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorBody {
    /// e.g. `PARAM_ERROR`.
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Field / issue details, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> JsapiOrder {
        JsapiOrder::new(
            "wx7fe13309749792e0",
            "会员月卡 Premium monthly",
            "ORD123456",
            1990,
            "openid1",
        )
    }

    #[test]
    fn valid_order_serialises_in_wire_order() {
        let wire = order()
            .to_wire("1959139582", "https://example.com/pay/notify")
            .unwrap();
        assert_eq!(
            serde_json::to_string(&wire).unwrap(),
            r#"{"appid":"wx7fe13309749792e0","mchid":"1959139582","description":"会员月卡 Premium monthly","out_trade_no":"ORD123456","notify_url":"https://example.com/pay/notify","amount":{"total":1990,"currency":"CNY"},"payer":{"openid":"openid1"}}"#
        );
    }

    #[test]
    fn invalid_orders_are_refused_before_sending() {
        let n = "https://example.com/n";
        let cases: Vec<(JsapiOrder, &str)> = vec![
            (
                JsapiOrder {
                    total_fen: 0,
                    ..order()
                },
                "amount.total",
            ),
            (
                JsapiOrder {
                    total_fen: -5,
                    ..order()
                },
                "amount.total",
            ),
            (
                JsapiOrder {
                    description: "会".repeat(43),
                    ..order()
                },
                "description",
            ),
            (
                JsapiOrder {
                    description: "coffee ☕ 😀".into(),
                    ..order()
                },
                "description",
            ),
            (
                JsapiOrder {
                    out_trade_no: "ORD1".into(),
                    ..order()
                },
                "out_trade_no",
            ),
            (
                JsapiOrder {
                    out_trade_no: "ORD 12345".into(),
                    ..order()
                },
                "out_trade_no",
            ),
            (
                JsapiOrder {
                    attach: Some("a".repeat(129)),
                    ..order()
                },
                "attach",
            ),
            (
                JsapiOrder {
                    notify_url: Some("http://example.com/n".into()),
                    ..order()
                },
                "notify_url",
            ),
            (
                JsapiOrder {
                    notify_url: Some("https://example.com/n?x=1".into()),
                    ..order()
                },
                "notify_url",
            ),
            (
                JsapiOrder {
                    payer_client_ip: Some("nope".into()),
                    ..order()
                },
                "scene_info.payer_client_ip",
            ),
        ];
        for (o, field) in cases {
            assert_eq!(
                o.to_wire("1959139582", n).unwrap_err().field,
                field,
                "{o:?}"
            );
        }
        // 42 CJK characters = 126 bytes: accepted.
        assert!(
            JsapiOrder {
                description: "会".repeat(42),
                ..order()
            }
            .to_wire("1", n)
            .is_ok()
        );
        assert!(
            JsapiOrder {
                notify_url: Some("http://127.0.0.1:9000/n".into()),
                ..order()
            }
            .to_wire("1", n)
            .is_ok()
        );
    }

    #[test]
    fn time_expire_is_rfc3339_in_beijing_time() {
        let at = time::macros::datetime!(2026-01-02 02:20:30 UTC);
        assert_eq!(format_time_expire(at).unwrap(), "2026-01-02T10:20:30+08:00");
        let wire = JsapiOrder {
            time_expire: Some(at),
            ..order()
        }
        .to_wire("1", "https://e.com/n")
        .unwrap();
        assert_eq!(
            wire.time_expire.as_deref(),
            Some("2026-01-02T10:20:30+08:00")
        );
    }

    #[test]
    fn refund_checks() {
        let r = RefundOrder {
            target: RefundTarget::OutTradeNo("ORD123456".into()),
            out_refund_no: "RF1".into(),
            refund_fen: 100,
            total_fen: 1990,
            reason: None,
            notify_url: None,
        };
        assert_eq!(
            serde_json::to_string(&r.to_wire().unwrap()).unwrap(),
            r#"{"out_trade_no":"ORD123456","out_refund_no":"RF1","amount":{"refund":100,"total":1990,"currency":"CNY"}}"#
        );
        assert_eq!(
            RefundOrder {
                refund_fen: 2000,
                ..r.clone()
            }
            .to_wire()
            .unwrap_err()
            .field,
            "amount.refund"
        );
        assert_eq!(
            RefundOrder {
                refund_fen: 0,
                ..r.clone()
            }
            .to_wire()
            .unwrap_err()
            .field,
            "amount.refund"
        );
        assert_eq!(
            RefundOrder {
                out_refund_no: "RF#1".into(),
                ..r.clone()
            }
            .to_wire()
            .unwrap_err()
            .field,
            "out_refund_no"
        );
        assert_eq!(
            RefundOrder {
                reason: Some("理由".repeat(14)),
                ..r
            }
            .to_wire()
            .unwrap_err()
            .field,
            "reason"
        );
    }
}
