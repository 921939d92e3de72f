//! The payment providers as the order code sees them: WeChat Pay v3 ([`WxpayGateway`],
//! implemented by [`PayClient`]) and virtual payment ([`XpayGateway`]). Traits so the order
//! logic is tested without a network and the deployment picks what is configured.

use async_trait::async_trait;
use serde_json::Value;

use crate::pay::v3::{
    JsapiOrder, PayClient, PayError, Refund, RefundOrder, RequestPaymentParams, Transaction,
};

/// WeChat Pay v3 operations used by orders.
#[async_trait]
pub trait WxpayGateway: Send + Sync {
    /// The merchant id payments must go to.
    fn mchid(&self) -> &str;
    /// JSAPI prepay; returns the `prepay_id`.
    async fn prepay(&self, order: &JsapiOrder) -> Result<String, PayError>;
    /// Signed `wx.requestPayment` parameters.
    fn request_payment(
        &self,
        appid: &str,
        prepay_id: &str,
    ) -> Result<RequestPaymentParams, PayError>;
    /// Query by merchant order number.
    async fn query(&self, out_trade_no: &str) -> Result<Transaction, PayError>;
    /// Close an unpaid order.
    async fn close(&self, out_trade_no: &str) -> Result<(), PayError>;
    /// Request (or, with the same number, re-query) a refund.
    async fn refund(&self, refund: &RefundOrder) -> Result<Refund, PayError>;
}

#[async_trait]
impl WxpayGateway for PayClient {
    fn mchid(&self) -> &str {
        PayClient::mchid(self)
    }

    async fn prepay(&self, order: &JsapiOrder) -> Result<String, PayError> {
        Ok(self.jsapi_prepay(order).await?.prepay_id)
    }

    fn request_payment(
        &self,
        appid: &str,
        prepay_id: &str,
    ) -> Result<RequestPaymentParams, PayError> {
        PayClient::request_payment(self, appid, prepay_id)
    }

    async fn query(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        self.query_by_out_trade_no(out_trade_no).await
    }

    async fn close(&self, out_trade_no: &str) -> Result<(), PayError> {
        PayClient::close(self, out_trade_no).await
    }

    async fn refund(&self, refund: &RefundOrder) -> Result<Refund, PayError> {
        PayClient::refund(self, refund).await
    }
}

/// What virtual payment says about an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XpayOrderState {
    /// Paid (awaiting delivery, delivering or delivered).
    pub paid: bool,
    /// Closed unpaid, or refunded.
    pub closed: bool,
    /// Paid amount, fen.
    pub paid_fee: i64,
    /// Still refundable, fen.
    pub left_fee: i64,
    /// Payment time, Unix seconds (0 when unknown).
    pub paid_time: i64,
    /// WeChat's id of the payment.
    pub transaction_id: String,
}

/// A virtual payment failure.
#[derive(Debug, thiserror::Error)]
#[error("virtual payment: {message}")]
pub struct XpayFailure {
    /// Description (never a secret).
    pub message: String,
    /// Worth retrying later.
    pub retryable: bool,
}

/// The goods a virtual payment buys: one product, `quantity` units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XpayPurchase<'a> {
    /// Item id registered with virtual payment: the product sku.
    pub product_id: &'a str,
    /// Units.
    pub quantity: u32,
    /// Unit price, fen.
    pub unit_price_fen: i64,
    /// The order's merchant number.
    pub out_trade_no: &'a str,
    /// Echoed in the delivery push (the order id).
    pub attach: &'a str,
}

/// Virtual payment operations used by orders.
#[async_trait]
pub trait XpayGateway: Send + Sync {
    /// `wx.requestVirtualPayment` parameters (`mode`, `signData`, `paySig`, `signature`) for a
    /// purchase, signed with the AppKey and the buyer's session_key.
    fn payment_params(
        &self,
        purchase: &XpayPurchase<'_>,
        session_key: &str,
    ) -> Result<Value, XpayFailure>;
    /// The same parameters for an already serialised `signData` (idempotent replays).
    fn resign(&self, sign_data: &str, session_key: &str) -> Value;
    /// `query_order`.
    async fn query(&self, openid: &str, out_trade_no: &str) -> Result<XpayOrderState, XpayFailure>;
    /// `refund_order`; `left_fee` is what is still refundable.
    async fn refund(
        &self,
        openid: &str,
        out_trade_no: &str,
        refund_no: &str,
        amount_fen: i64,
        left_fee: i64,
    ) -> Result<(), XpayFailure>;
    /// `notify_provide_goods`: tells WeChat the goods were delivered (after a fulfilment that
    /// did not come from the delivery push).
    async fn provided(&self, out_trade_no: &str) -> Result<(), XpayFailure>;
}
