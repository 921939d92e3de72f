//! Mini Program shipping-information management (`/wxa/sec/order/*`): reporting how a
//! WeChat Pay order was delivered, asking the buyer to confirm receipt, and reading the
//! platform's view of an order. The settlement and reminder pushes (`trade_manage_*`) are
//! parsed here too. Facts and sources: `docs/wechat.md` (shipping).
//!
//! Every call goes through [`WechatClient::with_token`] (the shared access token, refreshed
//! once on 40001/40014/42001). Requests are checked before sending against the documented
//! limits, so a bad request never spends the order's single re-ship.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::WechatClient;
use super::client::Idempotent;
use super::error::WechatError;

/// Most packages one upload may list.
pub const MAX_PACKAGES: usize = 15;
/// Longest `item_desc`, in characters.
pub const MAX_ITEM_DESC_CHARS: usize = 120;
/// Longest `tracking_no` / `express_company`, in bytes.
pub const MAX_CODE_BYTES: usize = 128;

/// `logistics_type`: how the goods reach the buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogisticsType {
    /// 1: express delivery with a waybill.
    Express,
    /// 2: same-city delivery.
    SameCity,
    /// 3: virtual goods, nothing physical delivered.
    Virtual,
    /// 4: the buyer picks the goods up.
    SelfPickup,
}

impl LogisticsType {
    /// The platform's number.
    pub fn code(self) -> i64 {
        match self {
            Self::Express => 1,
            Self::SameCity => 2,
            Self::Virtual => 3,
            Self::SelfPickup => 4,
        }
    }

    /// The stored / API name (`express`, `same_city`, `virtual`, `self_pickup`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Express => "express",
            Self::SameCity => "same_city",
            Self::Virtual => "virtual",
            Self::SelfPickup => "self_pickup",
        }
    }

    /// From [`LogisticsType::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Express,
            Self::SameCity,
            Self::Virtual,
            Self::SelfPickup,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }
}

/// One package of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Package {
    /// Waybill number (express only).
    pub tracking_no: Option<String>,
    /// `delivery_id` of the carrier from `get_delivery_list` (express only), e.g. `SF`.
    pub express_company: Option<String>,
    /// Goods description (at most 120 characters; longer text is cut).
    pub item_desc: String,
    /// Masked receiver phone (`138****6789`); SF needs a contact.
    pub receiver_contact: Option<String>,
}

/// An `upload_shipping_info` request, keyed by WeChat Pay `transaction_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippingUpload {
    /// The WeChat Pay transaction id.
    pub transaction_id: String,
    /// How the goods travel.
    pub logistics_type: LogisticsType,
    /// The packages (one unless split express delivery).
    pub packages: Vec<Package>,
    /// The payer's openid under this appid.
    pub payer_openid: String,
    /// Upload time, Unix seconds (sent as RFC 3339, +08:00).
    pub upload_time: i64,
}

fn invalid(msg: impl Into<String>) -> WechatError {
    WechatError::InvalidRequest(msg.into())
}

/// `item_desc` cut to the platform's 120 characters.
pub fn item_desc(text: &str) -> String {
    text.chars().take(MAX_ITEM_DESC_CHARS).collect()
}

/// RFC 3339 in China time (`2024-05-01T10:00:00+08:00`), as `upload_time` wants.
pub fn rfc3339_cst(unix: i64) -> Result<String, WechatError> {
    let offset = time::UtcOffset::from_hms(8, 0, 0).map_err(|e| invalid(e.to_string()))?;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| invalid(e.to_string()))?
        .to_offset(offset)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| invalid(e.to_string()))
}

impl ShippingUpload {
    /// The request body, after checking the documented limits: 1–15 packages, several only
    /// for express; express packages need a waybill and a carrier; sizes.
    ///
    /// # Errors
    /// [`WechatError::InvalidRequest`] naming the first problem.
    pub fn body(&self) -> Result<Value, WechatError> {
        let n = self.packages.len();
        if n == 0 || n > MAX_PACKAGES {
            return Err(invalid(format!("1 to {MAX_PACKAGES} packages")));
        }
        let express = self.logistics_type == LogisticsType::Express;
        if n > 1 && !express {
            return Err(invalid("several packages only for express delivery"));
        }
        if self.transaction_id.trim().is_empty() {
            return Err(invalid("transaction_id is required"));
        }
        if self.payer_openid.trim().is_empty() || self.payer_openid.len() > 128 {
            return Err(invalid("payer openid must be 1 to 128 bytes"));
        }
        let mut list = Vec::with_capacity(n);
        for p in &self.packages {
            let mut m = Map::new();
            if express {
                for (name, value) in [
                    ("tracking_no", &p.tracking_no),
                    ("express_company", &p.express_company),
                ] {
                    let v = value.as_deref().unwrap_or_default();
                    if v.is_empty() || v.len() > MAX_CODE_BYTES {
                        return Err(invalid(format!("{name} must be 1 to 128 bytes")));
                    }
                    m.insert(name.into(), v.into());
                }
            }
            let desc = item_desc(&p.item_desc);
            if desc.trim().is_empty() {
                return Err(invalid("item_desc is required"));
            }
            m.insert("item_desc".into(), desc.into());
            if let Some(contact) = &p.receiver_contact {
                m.insert("contact".into(), json!({ "receiver_contact": contact }));
            }
            list.push(Value::Object(m));
        }
        Ok(json!({
            "order_key": {"order_number_type": 2, "transaction_id": self.transaction_id},
            "logistics_type": self.logistics_type.code(),
            "delivery_mode": if n > 1 { 2 } else { 1 },
            "is_all_delivered": true,
            "shipping_list": list,
            "upload_time": rfc3339_cst(self.upload_time)?,
            "payer": {"openid": self.payer_openid},
        }))
    }
}

/// `get_order` → `order.order_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformOrderState {
    /// 1: awaiting shipment.
    AwaitingShipment,
    /// 2: shipped.
    Shipped,
    /// 3: receipt confirmed.
    ReceiptConfirmed,
    /// 4: transaction complete (settled).
    Complete,
    /// 5: refunded.
    Refunded,
    /// 6: receipt confirmed, funds awaiting settlement.
    AwaitingSettlement,
    /// Any other number.
    Other(i64),
}

impl PlatformOrderState {
    /// From the platform's number.
    pub fn from_code(code: i64) -> Self {
        match code {
            1 => Self::AwaitingShipment,
            2 => Self::Shipped,
            3 => Self::ReceiptConfirmed,
            4 => Self::Complete,
            5 => Self::Refunded,
            6 => Self::AwaitingSettlement,
            n => Self::Other(n),
        }
    }

    /// Whether the buyer (or the platform, automatically) has confirmed receipt.
    pub fn received(self) -> bool {
        matches!(
            self,
            Self::ReceiptConfirmed | Self::Complete | Self::AwaitingSettlement
        )
    }
}

/// The platform's view of one order (`get_order`), the fields wemint uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformOrder {
    /// The transaction.
    pub transaction_id: String,
    /// The payer.
    pub openid: String,
    /// Where the order is.
    pub state: PlatformOrderState,
    /// Amount paid, fen.
    pub paid_amount: i64,
}

#[derive(Deserialize)]
struct GetOrderReply {
    order: GetOrderInner,
}

#[derive(Deserialize)]
struct GetOrderInner {
    #[serde(default)]
    transaction_id: String,
    #[serde(default)]
    openid: String,
    order_state: i64,
    #[serde(default)]
    paid_amount: i64,
}

impl WechatClient {
    /// `upload_shipping_info`. `10060023` (the same information again) counts as success.
    /// Not retried after a timeout: a repeat could count as the order's one re-ship.
    ///
    /// # Errors
    /// [`WechatError`]: the request checks, or WeChat's errcode (see `docs/wechat.md`).
    pub async fn upload_shipping_info(&self, upload: &ShippingUpload) -> Result<(), WechatError> {
        let body = upload.body()?;
        match self
            .post_with_token::<Value>("/wxa/sec/order/upload_shipping_info", &body, Idempotent::No)
            .await
        {
            Err(e) if e.errcode().map(|c| c.code()) == Some(UNCHANGED) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `notify_confirm_receive`: asks the buyer to confirm receipt of an express order
    /// signed for at `received_time` (Unix seconds, after shipping). Allowed once per order.
    ///
    /// # Errors
    /// [`WechatError`]; `10060030` when the reminder was already used.
    pub async fn notify_confirm_receive(
        &self,
        transaction_id: &str,
        received_time: i64,
    ) -> Result<(), WechatError> {
        if transaction_id.trim().is_empty() {
            return Err(invalid("transaction_id is required"));
        }
        self.post_with_token::<Value>(
            "/wxa/sec/order/notify_confirm_receive",
            &json!({"transaction_id": transaction_id, "received_time": received_time}),
            Idempotent::No,
        )
        .await
        .map(|_| ())
    }

    /// `get_order`: the platform's shipping state of one order.
    ///
    /// # Errors
    /// [`WechatError`]; `10060001` when the platform does not know the payment.
    pub async fn shipping_order(&self, transaction_id: &str) -> Result<PlatformOrder, WechatError> {
        if transaction_id.trim().is_empty() {
            return Err(invalid("transaction_id is required"));
        }
        let reply: GetOrderReply = self
            .post_with_token(
                "/wxa/sec/order/get_order",
                &json!({ "transaction_id": transaction_id }),
                Idempotent::Yes,
            )
            .await?;
        Ok(PlatformOrder {
            transaction_id: reply.order.transaction_id,
            openid: reply.order.openid,
            state: PlatformOrderState::from_code(reply.order.order_state),
            paid_amount: reply.order.paid_amount,
        })
    }
}

/// `10060023`: the shipping information is unchanged (an identical repeat).
pub const UNCHANGED: i64 = 10_060_023;

/// Whether an upload failure may succeed when sent again later (busy, system errors, an
/// unindexed payment, transport); the others need a person (`docs/wechat.md`).
pub fn upload_retryable(err: &WechatError) -> bool {
    match err.errcode().map(|c| c.code()) {
        Some(-1 | 10_060_001 | 10_060_012 | 10_060_019) => true,
        Some(c) => super::error::ErrCode::from_code(c).is_token_invalid(),
        None => !matches!(err, WechatError::InvalidRequest(_)),
    }
}

/// A `trade_manage_*` push, the fields wemint reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeManagePush {
    /// `trade_manage_remind_shipping`: an order is still unshipped.
    RemindShipping {
        /// WeChat Pay transaction id.
        transaction_id: Option<String>,
        /// Our merchant order number.
        merchant_trade_no: Option<String>,
        /// The platform's message.
        msg: Option<String>,
    },
    /// `trade_manage_order_settlement`: receipt confirmed and / or the order settled.
    Settlement {
        /// WeChat Pay transaction id.
        transaction_id: Option<String>,
        /// Our merchant order number.
        merchant_trade_no: Option<String>,
        /// When receipt was confirmed (0 / absent: not yet).
        confirm_receive_time: Option<i64>,
        /// 1 or 2 (meaning UNCONFIRMED: never used for decisions).
        confirm_receive_method: Option<i64>,
        /// When settlement is expected.
        estimated_settlement_time: Option<i64>,
        /// When it settled (0 / absent: not yet).
        settlement_time: Option<i64>,
    },
}

fn text(raw: &Value, key: &str) -> Option<String> {
    match raw.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.chars().take(128).collect()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A positive Unix time (JSON number, or a numeric string in XML mode).
fn time_field(raw: &Value, key: &str) -> Option<i64> {
    let n = match raw.get(key)? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (n > 0).then_some(n)
}

impl TradeManagePush {
    /// Reads a decrypted push whose `Event` is one of the two; `None` for other events.
    pub fn from_raw(raw: &Value) -> Option<Self> {
        let event = raw.get("Event").and_then(Value::as_str)?;
        let transaction_id = text(raw, "transaction_id");
        let merchant_trade_no = text(raw, "merchant_trade_no");
        match event {
            "trade_manage_remind_shipping" => Some(Self::RemindShipping {
                transaction_id,
                merchant_trade_no,
                msg: text(raw, "msg"),
            }),
            "trade_manage_order_settlement" => Some(Self::Settlement {
                transaction_id,
                merchant_trade_no,
                confirm_receive_time: time_field(raw, "confirm_receive_time"),
                confirm_receive_method: time_field(raw, "confirm_receive_method"),
                estimated_settlement_time: time_field(raw, "estimated_settlement_time"),
                settlement_time: time_field(raw, "settlement_time"),
            }),
            _ => None,
        }
    }

    /// The order it names: transaction id, then merchant order number.
    pub fn order_key(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::RemindShipping {
                transaction_id,
                merchant_trade_no,
                ..
            }
            | Self::Settlement {
                transaction_id,
                merchant_trade_no,
                ..
            } => (transaction_id.as_deref(), merchant_trade_no.as_deref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(kind: LogisticsType, packages: Vec<Package>) -> ShippingUpload {
        ShippingUpload {
            transaction_id: "4200002024050112345678901234".into(),
            logistics_type: kind,
            packages,
            payer_openid: "oBuyer".into(),
            upload_time: 1_714_528_800,
        }
    }

    fn express(no: &str) -> Package {
        Package {
            tracking_no: Some(no.into()),
            express_company: Some("SF".into()),
            item_desc: "wemint hoodie x1".into(),
            receiver_contact: Some("138****6789".into()),
        }
    }

    #[test]
    fn express_body_matches_the_documented_shape() {
        let body = upload(LogisticsType::Express, vec![express("SF1400000000001")])
            .body()
            .unwrap();
        assert_eq!(body["order_key"]["order_number_type"], 2);
        assert_eq!(body["logistics_type"], 1);
        assert_eq!(body["delivery_mode"], 1);
        assert!(body["shipping_list"].is_array());
        assert_eq!(body["shipping_list"][0]["express_company"], "SF");
        assert_eq!(
            body["shipping_list"][0]["contact"]["receiver_contact"],
            "138****6789"
        );
        // 2024-05-01T02:00:00Z is 10:00 in China.
        assert_eq!(body["upload_time"], "2024-05-01T10:00:00+08:00");
        assert_eq!(body["payer"]["openid"], "oBuyer");
        let split = upload(LogisticsType::Express, vec![express("A1"), express("A2")])
            .body()
            .unwrap();
        assert_eq!(split["delivery_mode"], 2);
        assert_eq!(split["is_all_delivered"], true);
    }

    #[test]
    fn pickup_and_virtual_carry_no_waybill() {
        let p = Package {
            item_desc: "x".repeat(200),
            ..Package::default()
        };
        let body = upload(LogisticsType::SelfPickup, vec![p.clone()])
            .body()
            .unwrap();
        assert_eq!(body["logistics_type"], 4);
        assert!(body["shipping_list"][0].get("tracking_no").is_none());
        assert_eq!(
            body["shipping_list"][0]["item_desc"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            120
        );
        assert_eq!(
            upload(LogisticsType::Virtual, vec![p]).body().unwrap()["logistics_type"],
            3
        );
    }

    #[test]
    fn bad_uploads_are_refused_before_sending() {
        assert!(upload(LogisticsType::Express, vec![]).body().is_err());
        assert!(
            upload(LogisticsType::Express, vec![express("A"); 16])
                .body()
                .is_err()
        );
        let pickup = Package {
            item_desc: "x".into(),
            ..Package::default()
        };
        assert!(
            upload(LogisticsType::SelfPickup, vec![pickup.clone(), pickup])
                .body()
                .is_err()
        );
        let mut no_waybill = express("A");
        no_waybill.tracking_no = None;
        assert!(
            upload(LogisticsType::Express, vec![no_waybill])
                .body()
                .is_err()
        );
        let mut long = express(&"9".repeat(129));
        long.item_desc = "ok".into();
        assert!(upload(LogisticsType::Express, vec![long]).body().is_err());
    }

    #[test]
    fn retryable_failures() {
        assert!(upload_retryable(&WechatError::api(10_060_001, "not found")));
        assert!(upload_retryable(&WechatError::api(-1, "busy")));
        assert!(upload_retryable(&WechatError::Transport("reset".into())));
        assert!(!upload_retryable(&WechatError::api(
            10_060_003,
            "re-ship used"
        )));
        assert!(!upload_retryable(&WechatError::InvalidRequest("x".into())));
    }

    #[test]
    fn settlement_push_fields_from_json_and_xml() {
        let json_push = json!({"Event": "trade_manage_order_settlement",
            "transaction_id": "4200001", "merchant_trade_no": "WM1", "confirm_receive_time": 1714800000,
            "confirm_receive_method": 2, "estimated_settlement_time": 1715400000, "settlement_time": 0});
        let p = TradeManagePush::from_raw(&json_push).unwrap();
        assert_eq!(
            p,
            TradeManagePush::Settlement {
                transaction_id: Some("4200001".into()),
                merchant_trade_no: Some("WM1".into()),
                confirm_receive_time: Some(1_714_800_000),
                confirm_receive_method: Some(2),
                estimated_settlement_time: Some(1_715_400_000),
                settlement_time: None,
            }
        );
        let xml_push = json!({"Event": "trade_manage_remind_shipping", "transaction_id": "4200002",
            "merchant_trade_no": "", "msg": "请尽快发货"});
        assert_eq!(
            TradeManagePush::from_raw(&xml_push).unwrap().order_key(),
            (Some("4200002"), None)
        );
        assert!(TradeManagePush::from_raw(&json!({"Event": "subscribe"})).is_none());
    }

    mod fuzz {
        use super::super::TradeManagePush;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,40}".prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            /// Any field values under either event name parse or are refused, never panic;
            /// times are kept only when positive.
            #[test]
            fn fuzz_trade_manage_push(
                event in prop_oneof![Just("trade_manage_order_settlement".to_owned()), Just("trade_manage_remind_shipping".to_owned()), ".{0,30}"],
                fields in proptest::collection::btree_map(
                    prop_oneof![Just("transaction_id".to_owned()), Just("merchant_trade_no".to_owned()),
                        Just("settlement_time".to_owned()), Just("confirm_receive_time".to_owned()),
                        Just("estimated_settlement_time".to_owned()), Just("msg".to_owned()), "[a-z_]{1,12}"],
                    leaf(), 0..8),
            ) {
                let mut raw = serde_json::Map::new();
                raw.insert("Event".into(), event.into());
                for (k, v) in fields {
                    raw.insert(k, v);
                }
                if let Some(TradeManagePush::Settlement { settlement_time, confirm_receive_time, .. }) =
                    TradeManagePush::from_raw(&serde_json::Value::Object(raw))
                {
                    prop_assert!(settlement_time.is_none_or(|t| t > 0));
                    prop_assert!(confirm_receive_time.is_none_or(|t| t > 0));
                }
            }
        }
    }
}
