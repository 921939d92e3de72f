//! The payment providers' APIs as the channel adapters ([`super::channel`]) call them: WeChat
//! Pay v3 ([`WxpayGateway`], implemented by [`PayClient`]) and virtual payment
//! ([`XpayGateway`], implemented by [`XpayProvider`]). Traits so the order logic is tested
//! without a network and the deployment picks what is configured.

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
    /// Unit price, fen: the item's registered price (`goodsPrice`).
    pub unit_price_fen: i64,
    /// What is actually charged per unit when lower (`activitySellingPrice`, at least 40% of
    /// the price): prorated upgrades.
    pub selling_price_fen: Option<i64>,
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
    /// The environment orders are placed in (`XPAY_ENV`): a delivery push from the other one
    /// (a sandbox payment reaching production) moves no goods.
    fn env(&self) -> crate::pay::xpay::Env {
        crate::pay::xpay::Env::Production
    }
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
    /// What `query_order` says about refund `refund_no` of `openid`'s payment: `None` when
    /// virtual payment does not know it (never requested, or not recorded yet).
    async fn refund_state(
        &self,
        openid: &str,
        refund_no: &str,
    ) -> Result<Option<crate::pay::xpay_after_sale::RefundOrderState>, XpayFailure>;
}

/// [`XpayGateway`] over the real virtual payment APIs: `pay::xpay` for signatures and server
/// calls, the shared access token of [`crate::wechat::WechatClient`] (refreshed once when
/// WeChat rejects it).
pub struct XpayProvider {
    client: crate::pay::xpay::XpayClient,
    wechat: std::sync::Arc<crate::wechat::WechatClient>,
    app_key: crate::pay::xpay::AppKey,
    offer_id: String,
    env: crate::pay::xpay::Env,
}

impl std::fmt::Debug for XpayProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XpayProvider")
            .field("offer_id", &self.offer_id)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

fn xpay_failure(err: &crate::pay::xpay::XpayError) -> XpayFailure {
    XpayFailure {
        message: err.to_string(),
        retryable: err.is_retryable(),
    }
}

impl XpayProvider {
    /// A provider for `offer_id` in `env`, calling `api_base` (`WECHAT_API_BASE`).
    pub fn new(
        api_base: &str,
        app_key: &str,
        offer_id: impl Into<String>,
        env: crate::pay::xpay::Env,
        wechat: std::sync::Arc<crate::wechat::WechatClient>,
    ) -> Result<Self, XpayFailure> {
        use crate::pay::xpay::{AppKey, XpayClient};
        let client =
            XpayClient::new(api_base, AppKey::new(app_key), env).map_err(|e| xpay_failure(&e))?;
        Ok(Self {
            client,
            wechat,
            app_key: AppKey::new(app_key),
            offer_id: offer_id.into(),
            env,
        })
    }

    /// The virtual payment client (its other APIs: complaints).
    pub fn client(&self) -> &crate::pay::xpay::XpayClient {
        &self.client
    }

    /// The WeChat client whose access token the calls use.
    pub fn wechat(&self) -> &std::sync::Arc<crate::wechat::WechatClient> {
        &self.wechat
    }

    /// Runs a server call with the access token, refreshing the token once if rejected.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, XpayFailure>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::pay::xpay::XpayError>>,
    {
        crate::pay::xpay_after_sale::with_access_token(&self.wechat, call)
            .await
            .map_err(|e| xpay_failure(&e))
    }
}

#[async_trait]
impl XpayGateway for XpayProvider {
    fn payment_params(
        &self,
        purchase: &XpayPurchase<'_>,
        session_key: &str,
    ) -> Result<Value, XpayFailure> {
        use crate::pay::xpay::{Mode, SignData, virtual_payment};
        let sign_data = SignData {
            offer_id: self.offer_id.clone(),
            buy_quantity: purchase.quantity,
            env: self.env,
            currency_type: "CNY".into(),
            product_id: Some(purchase.product_id.to_owned()),
            goods_price: Some(purchase.unit_price_fen),
            activity_selling_price: purchase.selling_price_fen,
            out_trade_no: purchase.out_trade_no.to_owned(),
            attach: purchase.attach.to_owned(),
        };
        let params = virtual_payment(&sign_data, Mode::Goods, &self.app_key, session_key)
            .map_err(|e| xpay_failure(&e))?;
        serde_json::to_value(params).map_err(|e| XpayFailure {
            message: e.to_string(),
            retryable: false,
        })
    }

    fn env(&self) -> crate::pay::xpay::Env {
        self.env
    }

    fn resign(&self, sign_data: &str, session_key: &str) -> Value {
        use crate::pay::xpay::{Mode, signed_params};
        let params = signed_params(
            sign_data.to_owned(),
            Mode::Goods,
            &self.app_key,
            session_key,
        );
        serde_json::to_value(params).unwrap_or_default()
    }

    async fn query(&self, openid: &str, out_trade_no: &str) -> Result<XpayOrderState, XpayFailure> {
        use crate::pay::xpay::{OrderRef, OrderStatus};
        let order_ref = OrderRef::OrderId(out_trade_no.to_owned());
        let order = self
            .with_token(|t| {
                let order_ref = order_ref.clone();
                async move { self.client.query_order(&t, openid, &order_ref).await }
            })
            .await?;
        let status = order.status();
        Ok(XpayOrderState {
            paid: status.is_paid(),
            closed: matches!(status, OrderStatus::Closed | OrderStatus::Refunded),
            paid_fee: order.paid_fee,
            left_fee: order.left_fee,
            paid_time: order.paid_time,
            transaction_id: if order.wxpay_order_id.is_empty() {
                order.wx_order_id
            } else {
                order.wxpay_order_id
            },
        })
    }

    async fn refund(
        &self,
        openid: &str,
        out_trade_no: &str,
        refund_no: &str,
        amount_fen: i64,
        left_fee: i64,
    ) -> Result<(), XpayFailure> {
        use crate::pay::xpay::{ErrCode, OrderRef, RefundRequest, XpayError};
        let request = RefundRequest {
            openid: openid.to_owned(),
            order: OrderRef::OrderId(out_trade_no.to_owned()),
            refund_order_id: refund_no.to_owned(),
            left_fee,
            refund_fee: amount_fen,
            biz_meta: String::new(),
            refund_reason: "0".into(),
            req_from: "1".into(),
        };
        self.with_token(|t| {
            let request = request.clone();
            async move {
                match self.client.refund_order(&t, &request).await {
                    // The same refund number was accepted before.
                    Err(XpayError::Api {
                        errcode: ErrCode::Duplicate | ErrCode::AlreadyRefunded,
                        ..
                    }) => Ok(()),
                    // Only a definite refusal (an errcode, or nothing sent) ends the refund;
                    // an unknown outcome (transport, HTTP status, undecodable answer) may
                    // have refunded, so it is retried with the same refund number.
                    Err(e @ (XpayError::Invalid { .. } | XpayError::Api { .. })) => Err(e),
                    Err(e) => Err(XpayError::Transport {
                        message: format!("refund outcome unknown: {e}"),
                        transient: true,
                    }),
                    Ok(_) => Ok(()),
                }
            }
        })
        .await
    }

    async fn refund_state(
        &self,
        openid: &str,
        refund_no: &str,
    ) -> Result<Option<crate::pay::xpay_after_sale::RefundOrderState>, XpayFailure> {
        self.with_token(
            |t| async move { self.client.refund_order_state(&t, openid, refund_no).await },
        )
        .await
    }

    async fn provided(&self, out_trade_no: &str) -> Result<(), XpayFailure> {
        use crate::pay::xpay::{ErrCode, OrderRef, XpayError};
        let order_ref = OrderRef::OrderId(out_trade_no.to_owned());
        self.with_token(|t| {
            let order_ref = order_ref.clone();
            async move {
                match self.client.notify_provide_goods(&t, &order_ref).await {
                    Err(XpayError::Api {
                        errcode: ErrCode::Duplicate,
                        ..
                    }) => Ok(()),
                    other => other,
                }
            }
        })
        .await
    }
}
