//! Mini Program virtual payment (xpay, 小程序虚拟支付): the signatures of
//! `wx.requestVirtualPayment`, the server APIs `query_order`, `refund_order`,
//! `notify_provide_goods`, and the `xpay_goods_deliver_notify` push.
//!
//! - `paySig = hex(HMAC-SHA256(AppKey, uri + "&" + body))`, uri `requestVirtualPayment` for the
//!   client call, `/xpay/<api>` for server calls.
//! - `signature = hex(HMAC-SHA256(session_key, body))`, the session_key string as the key.
//! - Lower-case hex; the signed string is byte-identical to the one sent, so bodies are
//!   serialised once and those bytes are both signed and sent.
//!
//! The access token comes from the caller (the WeChat client module owns token fetching).

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::outbound::{self, Retry};

/// Default API host.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

/// The `uri` signed for the client call.
pub const CLIENT_URI: &str = "requestVirtualPayment";

/// `hex(HMAC-SHA256(key = app_key, msg = uri & body))`, lower-case.
pub fn pay_sig(app_key: &AppKey, uri: &str, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_key.0.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(uri.as_bytes());
    ctx.update(b"&");
    ctx.update(body.as_bytes());
    hex::encode(ctx.sign().as_ref())
}

/// `hex(HMAC-SHA256(key = session_key, msg = body))`, lower-case (the user-state signature).
pub fn user_signature(session_key: &str, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.as_bytes());
    hex::encode(hmac::sign(&key, body.as_bytes()).as_ref())
}

/// The virtual payment AppKey (现网 or 沙箱). Never printed.
#[derive(Clone)]
pub struct AppKey(String);

impl AppKey {
    /// Wrap the AppKey from the Mini Program admin page.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

/// Virtual payment failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XpayError {
    /// A field failed validation; nothing was sent.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// WeChat answered with a non-zero errcode.
    #[error("xpay {api} errcode {errcode:?}: {errmsg}")]
    Api {
        /// API name.
        api: &'static str,
        /// Typed errcode.
        errcode: ErrCode,
        /// WeChat's message.
        errmsg: String,
    },
    /// HTTP status other than 200.
    #[error("xpay {api} HTTP {status}")]
    Status {
        /// API name.
        api: &'static str,
        /// HTTP status.
        status: u16,
    },
    /// Network failure. The message never contains the URL (it carries the access token).
    #[error("xpay transport error: {message}")]
    Transport {
        /// Description.
        message: String,
        /// Worth retrying.
        transient: bool,
    },
    /// The response or push is not the documented JSON.
    #[error("xpay payload: {0}")]
    Decode(String),
    /// Client misconfiguration.
    #[error("xpay client configuration: {0}")]
    Config(String),
}

impl XpayError {
    /// True for transient failures: 5xx, 429, transport errors, errcode -1 (system busy).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { transient, .. } => *transient,
            Self::Status { status, .. } => {
                http::StatusCode::from_u16(*status).is_ok_and(outbound::is_transient_status)
            }
            Self::Api { errcode, .. } => *errcode == ErrCode::SystemBusy,
            _ => false,
        }
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> XpayError {
    XpayError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// xpay errcodes (reference §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    /// -1: system busy, retry.
    SystemBusy,
    /// 40001: access token invalid (refresh it).
    InvalidAccessToken,
    /// 42001: access token expired (refresh it).
    AccessTokenExpired,
    /// 268490001: openid invalid.
    InvalidOpenid,
    /// 268490002: parameter error.
    InvalidParam,
    /// 268490003: signature error (check AppKey / session_key / lower-case hex).
    BadSignature,
    /// 268490004: duplicate operation, the earlier one succeeded.
    Duplicate,
    /// 268490005: already refunded.
    AlreadyRefunded,
    /// 268490006: insufficient balance.
    Insufficient,
    /// 268490007: sensitive content.
    SensitiveContent,
    /// 268490008: token (item) not published.
    NotPublished,
    /// 268490009: session_key expired, the user must log in again.
    SessionKeyExpired,
    /// 268490011: bill still being generated.
    BillGenerating,
    /// Any other code.
    Other(i64),
}

impl ErrCode {
    /// Type a raw errcode.
    pub fn from_code(code: i64) -> Self {
        match code {
            -1 => Self::SystemBusy,
            40001 => Self::InvalidAccessToken,
            42001 => Self::AccessTokenExpired,
            268_490_001 => Self::InvalidOpenid,
            268_490_002 => Self::InvalidParam,
            268_490_003 => Self::BadSignature,
            268_490_004 => Self::Duplicate,
            268_490_005 => Self::AlreadyRefunded,
            268_490_006 => Self::Insufficient,
            268_490_007 => Self::SensitiveContent,
            268_490_008 => Self::NotPublished,
            268_490_009 => Self::SessionKeyExpired,
            268_490_011 => Self::BillGenerating,
            other => Self::Other(other),
        }
    }

    /// The raw errcode.
    pub fn code(self) -> i64 {
        match self {
            Self::SystemBusy => -1,
            Self::InvalidAccessToken => 40001,
            Self::AccessTokenExpired => 42001,
            Self::InvalidOpenid => 268_490_001,
            Self::InvalidParam => 268_490_002,
            Self::BadSignature => 268_490_003,
            Self::Duplicate => 268_490_004,
            Self::AlreadyRefunded => 268_490_005,
            Self::Insufficient => 268_490_006,
            Self::SensitiveContent => 268_490_007,
            Self::NotPublished => 268_490_008,
            Self::SessionKeyExpired => 268_490_009,
            Self::BillGenerating => 268_490_011,
            Self::Other(c) => c,
        }
    }
}

/// 0 = production, 1 = sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// 现网.
    Production,
    /// 沙箱.
    Sandbox,
}

impl Env {
    /// The wire number.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Production => 0,
            Self::Sandbox => 1,
        }
    }

    /// From `XPAY_ENV` (`0`/`1`).
    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            0 => Some(Self::Production),
            1 => Some(Self::Sandbox),
            _ => None,
        }
    }
}

impl From<crate::config::XpayEnv> for Env {
    fn from(env: crate::config::XpayEnv) -> Self {
        match env {
            crate::config::XpayEnv::Production => Self::Production,
            crate::config::XpayEnv::Sandbox => Self::Sandbox,
        }
    }
}

impl Serialize for Env {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.as_i32())
    }
}

/// `mode` of `wx.requestVirtualPayment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `short_series_goods`: buy an item directly.
    Goods,
    /// `short_series_coin`: top up tokens.
    Coin,
}

impl Mode {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Goods => "short_series_goods",
            Self::Coin => "short_series_coin",
        }
    }
}

/// The `signData` object (field order as WeChat documents it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignData {
    /// OfferID from the admin page (`XPAY_OFFER_ID`).
    pub offer_id: String,
    /// Quantity, ≥ 1.
    pub buy_quantity: u32,
    /// Environment.
    pub env: Env,
    /// `CNY`.
    pub currency_type: String,
    /// Item id (goods mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// Unit price in fen (goods mode only); WeChat checks it against the item's price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_price: Option<i64>,
    /// Lower price actually charged (goods mode, with `goodsPrice`): 40% to 100% of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_selling_price: Option<i64>,
    /// 8–32 characters of `[0-9A-Za-z_-|*@]`, not starting with `_`; single use.
    pub out_trade_no: String,
    /// Echoed in the delivery push.
    pub attach: String,
}

impl SignData {
    /// Check the fields for `mode`.
    pub fn validate(&self, mode: Mode) -> Result<(), XpayError> {
        if self.offer_id.is_empty() {
            return Err(invalid("offerId", "empty"));
        }
        if self.buy_quantity == 0 {
            return Err(invalid("buyQuantity", "must be at least 1"));
        }
        let no = &self.out_trade_no;
        if !(8..=32).contains(&no.len())
            || no.starts_with('_')
            || !no
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-|*@".contains(c))
        {
            return Err(invalid(
                "outTradeNo",
                "must be 8-32 of [0-9A-Za-z_-|*@], not starting with _",
            ));
        }
        match mode {
            Mode::Goods => {
                if self.product_id.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid("productId", "required in goods mode"));
                }
                let Some(price) = self.goods_price.filter(|p| *p > 0) else {
                    return Err(invalid(
                        "goodsPrice",
                        "required in goods mode, positive fen",
                    ));
                };
                // WeChat: the selling price is at least 40% of the item price.
                if let Some(selling) = self.activity_selling_price
                    && (selling > price || selling.saturating_mul(10) < price.saturating_mul(4))
                {
                    return Err(invalid(
                        "activitySellingPrice",
                        "must be 40% to 100% of goodsPrice",
                    ));
                }
            }
            Mode::Coin => {
                if self.product_id.is_some()
                    || self.goods_price.is_some()
                    || self.activity_selling_price.is_some()
                {
                    return Err(invalid("productId", "not allowed in coin mode"));
                }
            }
        }
        if self.attach.len() > 1024 {
            return Err(invalid("attach", "too long"));
        }
        Ok(())
    }
}

/// Parameters for `wx.requestVirtualPayment`, serialised with the names the client expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualPaymentParams {
    /// The exact JSON string that was signed.
    #[serde(rename = "signData")]
    pub sign_data: String,
    /// `short_series_goods` / `short_series_coin`.
    pub mode: String,
    /// HMAC with the AppKey.
    #[serde(rename = "paySig")]
    pub pay_sig: String,
    /// HMAC with the user's session_key.
    pub signature: String,
}

/// Build and sign `wx.requestVirtualPayment` parameters: `signData` is serialised once and the
/// same string is signed and returned.
pub fn virtual_payment(
    sign_data: &SignData,
    mode: Mode,
    app_key: &AppKey,
    session_key: &str,
) -> Result<VirtualPaymentParams, XpayError> {
    sign_data.validate(mode)?;
    if session_key.is_empty() {
        return Err(invalid("session_key", "empty: the user must log in first"));
    }
    let json = serde_json::to_string(sign_data).map_err(|e| XpayError::Decode(e.to_string()))?;
    Ok(signed_params(json, mode, app_key, session_key))
}

/// Sign an already serialised `signData` string as it is.
pub fn signed_params(
    sign_data: String,
    mode: Mode,
    app_key: &AppKey,
    session_key: &str,
) -> VirtualPaymentParams {
    VirtualPaymentParams {
        pay_sig: pay_sig(app_key, CLIENT_URI, &sign_data),
        signature: user_signature(session_key, &sign_data),
        mode: mode.as_str().to_owned(),
        sign_data,
    }
}

/// Which order a server call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    /// Our `outTradeNo` (`order_id` on the wire).
    OrderId(String),
    /// WeChat's internal id (`wx_order_id`).
    WxOrderId(String),
}

/// Order status of `query_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// 0: initialising, not payable.
    Init,
    /// 1: created.
    Created,
    /// 2: paid, awaiting delivery.
    Paid,
    /// 3: delivering.
    Delivering,
    /// 4: delivered.
    Delivered,
    /// 5: refunded.
    Refunded,
    /// 6: closed.
    Closed,
    /// 7: refund failed.
    RefundFailed,
    /// Unknown value.
    Other(i64),
}

impl OrderStatus {
    fn from_code(v: i64) -> Self {
        match v {
            0 => Self::Init,
            1 => Self::Created,
            2 => Self::Paid,
            3 => Self::Delivering,
            4 => Self::Delivered,
            5 => Self::Refunded,
            6 => Self::Closed,
            7 => Self::RefundFailed,
            o => Self::Other(o),
        }
    }

    /// Paid (awaiting or after delivery): grant the goods.
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Paid | Self::Delivering | Self::Delivered)
    }
}

/// An order from `query_order`. A field sent as `null` reads as absent (refund orders carry
/// no WeChat Pay transaction id, unpaid orders no payment time).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct XpayOrder {
    /// Our order id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub order_id: String,
    /// Raw status (see [`XpayOrder::status`]).
    #[serde(rename = "status")]
    pub status_code: i64,
    /// Order amount, fen.
    #[serde(default, deserialize_with = "null_as_default")]
    pub order_fee: i64,
    /// User paid, fen.
    #[serde(default, deserialize_with = "null_as_default")]
    pub paid_fee: i64,
    /// Remaining refundable amount, fen.
    #[serde(default, deserialize_with = "null_as_default")]
    pub left_fee: i64,
    /// Payment time, Unix seconds.
    #[serde(default, deserialize_with = "null_as_default")]
    pub paid_time: i64,
    /// WeChat's internal id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub wx_order_id: String,
    /// WeChat Pay transaction id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub wxpay_order_id: String,
    /// 0 pay order, 1 refund order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub order_type: i64,
}

/// A JSON `null` as the type's default, like an absent field.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl XpayOrder {
    /// Typed status.
    pub fn status(&self) -> OrderStatus {
        OrderStatus::from_code(self.status_code)
    }
}

/// A refund to request with `refund_order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The user.
    pub openid: String,
    /// The paid order.
    pub order: OrderRef,
    /// 8–32 characters of `[0-9A-Za-z_-]`; the idempotency key.
    pub refund_order_id: String,
    /// Current refundable amount (from `query_order`), fen.
    pub left_fee: i64,
    /// Amount to refund, in (0, left_fee], fen.
    pub refund_fee: i64,
    /// Free data echoed by `query_order` (≤ 1024 bytes).
    pub biz_meta: String,
    /// Reason code `0`..`5`.
    pub refund_reason: String,
    /// Source `1` customer service, `2` user, `3` other.
    pub req_from: String,
}

/// `refund_order` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundResult {
    /// Our refund id.
    #[serde(default)]
    pub refund_order_id: String,
    /// WeChat's refund id.
    #[serde(default)]
    pub refund_wx_order_id: String,
    /// The paid order id.
    #[serde(default)]
    pub pay_order_id: String,
    /// WeChat's id of the paid order.
    #[serde(default)]
    pub pay_wx_order_id: String,
}

/// Client for the xpay server APIs.
#[derive(Debug, Clone)]
pub struct XpayClient {
    http: reqwest::Client,
    base_url: String,
    app_key: AppKey,
    env: Env,
    retry: Retry,
}

impl XpayClient {
    /// A client for `base_url` (`WECHAT_API_BASE`) with the AppKey of `env`.
    pub fn new(base_url: &str, app_key: AppKey, env: Env) -> Result<Self, XpayError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url).map_err(|e| XpayError::Config(format!("base URL: {e}")))?;
        let http = outbound::client().map_err(|e| XpayError::Config(e.to_string()))?;
        Ok(Self {
            http,
            base_url,
            app_key,
            env,
            retry: Retry::default(),
        })
    }

    /// A client from the typed `XPAY_*` settings and the WeChat API base (`WECHAT_API_BASE`).
    pub fn from_settings(
        settings: &crate::config::XpaySettings,
        api_base: &str,
    ) -> Result<Self, XpayError> {
        Self::new(
            api_base,
            AppKey::new(settings.appkey.expose().clone()),
            Env::from(settings.env),
        )
    }

    /// Use another retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The environment this client signs for.
    pub fn env(&self) -> Env {
        self.env
    }

    /// `query_order`: the state of a cash order (fallback when a delivery push is lost).
    pub async fn query_order(
        &self,
        access_token: &str,
        openid: &str,
        order: &OrderRef,
    ) -> Result<XpayOrder, XpayError> {
        let mut body = serde_json::json!({ "openid": openid, "env": self.env.as_i32() });
        put_order_ref(&mut body, order);
        #[derive(Deserialize)]
        struct Answer {
            order: Option<XpayOrder>,
        }
        let answer: Answer = self.call("query_order", access_token, &body).await?;
        answer
            .order
            .ok_or_else(|| XpayError::Decode("query_order answer without order".into()))
    }

    /// `refund_order`: refund (part of) a paid order; repeating `refund_order_id` is safe.
    pub async fn refund_order(
        &self,
        access_token: &str,
        req: &RefundRequest,
    ) -> Result<RefundResult, XpayError> {
        let id = &req.refund_order_id;
        if !(8..=32).contains(&id.len())
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid("refund_order_id", "must be 8-32 of [0-9A-Za-z_-]"));
        }
        if req.refund_fee <= 0 || req.refund_fee > req.left_fee {
            return Err(invalid("refund_fee", "must be in (0, left_fee]"));
        }
        if req.biz_meta.len() > 1024 {
            return Err(invalid("biz_meta", "longer than 1024 bytes"));
        }
        let mut body = serde_json::json!({
            "openid": req.openid,
            "env": self.env.as_i32(),
            "refund_order_id": req.refund_order_id,
            "left_fee": req.left_fee,
            "refund_fee": req.refund_fee,
            "biz_meta": req.biz_meta,
            "refund_reason": req.refund_reason,
            "req_from": req.req_from,
        });
        put_order_ref(&mut body, &req.order);
        self.call("refund_order", access_token, &body).await
    }

    /// `notify_provide_goods`: mark a cash order delivered when the push could not be answered.
    pub async fn notify_provide_goods(
        &self,
        access_token: &str,
        order: &OrderRef,
    ) -> Result<(), XpayError> {
        let mut body = serde_json::json!({ "env": self.env.as_i32() });
        put_order_ref(&mut body, order);
        let _: serde_json::Value = self
            .call("notify_provide_goods", access_token, &body)
            .await?;
        Ok(())
    }

    pub(crate) async fn call<T: serde::de::DeserializeOwned>(
        &self,
        api: &'static str,
        access_token: &str,
        body: &serde_json::Value,
    ) -> Result<T, XpayError> {
        let body = serde_json::to_string(body).map_err(|e| XpayError::Decode(e.to_string()))?;
        let uri = format!("/xpay/{api}");
        let sig = pay_sig(&self.app_key, &uri, &body);
        let mut url = reqwest::Url::parse(&format!("{}{uri}", self.base_url))
            .map_err(|e| XpayError::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("access_token", access_token)
            .append_pair("pay_sig", &sig);
        let bytes = bytes::Bytes::from(body);
        let value: serde_json::Value = self
            .retry
            .run(
                |_| self.send_once(api, &url, bytes.clone()),
                XpayError::is_retryable,
            )
            .await?;
        serde_json::from_value(value).map_err(|e| XpayError::Decode(format!("{api}: {e}")))
    }

    async fn send_once(
        &self,
        api: &'static str,
        url: &reqwest::Url,
        body: bytes::Bytes,
    ) -> Result<serde_json::Value, XpayError> {
        let transport = |e: reqwest::Error| XpayError::Transport {
            transient: outbound::is_transient_transport(&e),
            message: e.without_url().to_string(),
        };
        let response = self
            .http
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(XpayError::Status {
                api,
                status: status.as_u16(),
            });
        }
        let bytes = response.bytes().await.map_err(transport)?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| XpayError::Decode(format!("{api}: {e}")))?;
        let errcode = value
            .get("errcode")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        if errcode != 0 {
            let errmsg = value
                .get("errmsg")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            return Err(XpayError::Api {
                api,
                errcode: ErrCode::from_code(errcode),
                errmsg,
            });
        }
        Ok(value)
    }
}

fn put_order_ref(body: &mut serde_json::Value, order: &OrderRef) {
    let (k, v) = match order {
        OrderRef::OrderId(id) => ("order_id", id),
        OrderRef::WxOrderId(id) => ("wx_order_id", id),
    };
    body[k] = serde_json::Value::String(v.clone());
}

/// The `xpay_goods_deliver_notify` push (after message-push decryption and signature check).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GoodsDeliverNotify {
    /// Mini Program original id.
    #[serde(rename = "ToUserName", default)]
    pub to_user_name: String,
    /// Sender (a WeChat official openid for this event).
    #[serde(rename = "FromUserName", default)]
    pub from_user_name: String,
    /// Unix seconds.
    #[serde(rename = "CreateTime", default)]
    pub create_time: i64,
    /// `xpay_goods_deliver_notify`.
    #[serde(rename = "Event")]
    pub event: String,
    /// The buyer.
    #[serde(rename = "OpenId", alias = "openid", alias = "Openid")]
    pub openid: String,
    /// Our order number (`outTradeNo` of signData): the dedup key.
    #[serde(rename = "OutTradeNo")]
    pub out_trade_no: String,
    /// 0 production, 1 sandbox.
    #[serde(rename = "Env", alias = "env", default)]
    pub env: i64,
    /// WeChat Pay details (absent for other channels).
    #[serde(rename = "WeChatPayInfo", alias = "WechatPayInfo", default)]
    pub wechat_pay_info: Option<WeChatPayInfo>,
    /// The item.
    #[serde(rename = "GoodsInfo", default)]
    pub goods_info: Option<GoodsInfo>,
}

/// `WeChatPayInfo` of a delivery push.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WeChatPayInfo {
    /// Merchant order number at WeChat Pay.
    #[serde(rename = "MchOrderNo", default)]
    pub mch_order_no: String,
    /// WeChat Pay transaction id.
    #[serde(rename = "TransactionId", default)]
    pub transaction_id: String,
    /// Payment time, Unix seconds.
    #[serde(rename = "PaidTime", default)]
    pub paid_time: i64,
}

/// `GoodsInfo` of a delivery push.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GoodsInfo {
    /// Item id.
    #[serde(rename = "ProductId")]
    pub product_id: String,
    /// Quantity.
    #[serde(rename = "Quantity")]
    pub quantity: i64,
    /// List price, fen.
    #[serde(rename = "OrigPrice", default)]
    pub orig_price: i64,
    /// Paid price, fen.
    #[serde(rename = "ActualPrice")]
    pub actual_price: i64,
    /// signData `attach`.
    #[serde(rename = "Attach", default)]
    pub attach: String,
}

/// Parse a decrypted push JSON as `xpay_goods_deliver_notify`; other events are refused.
pub fn parse_goods_deliver_notify(
    json: &serde_json::Value,
) -> Result<GoodsDeliverNotify, XpayError> {
    let event = json
        .get("Event")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if event != "xpay_goods_deliver_notify" {
        return Err(XpayError::Decode(format!(
            "not a goods delivery push: Event {event:?}"
        )));
    }
    let parsed: GoodsDeliverNotify =
        serde_json::from_value(json.clone()).map_err(|e| XpayError::Decode(e.to_string()))?;
    if parsed.out_trade_no.is_empty() || parsed.openid.is_empty() {
        return Err(XpayError::Decode(
            "delivery push without OutTradeNo or OpenId".into(),
        ));
    }
    Ok(parsed)
}

/// Acknowledgement body for a handled delivery push. The exact reply format is UNCONFIRMED
/// (reference §7.3); peer SDKs answer this JSON, and `notify_provide_goods` is the fallback.
pub fn deliver_ack() -> serde_json::Value {
    serde_json::json!({ "ErrCode": 0, "ErrMsg": "Success" })
}
