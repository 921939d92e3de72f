//! Mini Program virtual payment behind [`PaymentChannel`]: `wx.requestVirtualPayment`
//! parameters, `query_order`, `refund_order`, `notify_provide_goods`, and the entry point of
//! wxPush's delivery push, all over [`XpayGateway`].

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Observation, ObservedPayment, Payer, PaymentChannel, RefundAnswer, Started};
use crate::commerce::Commerce;
use crate::commerce::error::CommerceError;
use crate::commerce::fulfil::{DeliveryOutcome, PaymentOutcome};
use crate::commerce::gateway::{XpayGateway, XpayPurchase};
use crate::commerce::model::{OrderDoc, RefundDoc, RefundState, collections as c};
use crate::domain::catalog::Channel;
use crate::domain::money::Fen;
use crate::domain::order::OrderLine;
use crate::store::{Filter, Update};

/// Virtual payment as a payment channel.
pub struct XpayChannel {
    gateway: Arc<dyn XpayGateway>,
}

impl std::fmt::Debug for XpayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XpayChannel")
            .field("env", &self.gateway.env())
            .finish()
    }
}

impl XpayChannel {
    /// The channel over a virtual payment provider (or a test fake).
    pub fn new(gateway: Arc<dyn XpayGateway>) -> Self {
        Self { gateway }
    }
}

/// Virtual payment sells an item at no less than 40% of its registered price
/// (`activitySellingPrice`), and never above it.
fn xpay_price_range(list_price: Fen) -> Result<(Fen, Fen), CommerceError> {
    Ok((list_price.mul_div_ceil(4, 10)?, list_price))
}

fn failure(err: &crate::commerce::XpayFailure) -> CommerceError {
    CommerceError::provider(err, err.retryable)
}

/// `0` for a time virtual payment did not give.
fn known_time(at: i64) -> Option<i64> {
    (at > 0).then_some(at)
}

/// A virtual payment delivery (`xpay_goods_deliver_notify`, after wxPush verified and
/// decrypted the push), in the fields fulfilment checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XpayDelivery {
    /// `OpenId`: the buyer.
    pub openid: String,
    /// `OutTradeNo`: our merchant number.
    pub out_trade_no: String,
    /// `Env`: 0 production, 1 sandbox.
    pub env: i64,
    /// `GoodsInfo.ProductId`.
    pub product_id: String,
    /// `GoodsInfo.Quantity`.
    pub quantity: i64,
    /// `GoodsInfo.ActualPrice`: what was paid for the order, fen.
    pub actual_price: i64,
    /// `WeChatPayInfo.TransactionId` (may be empty).
    pub transaction_id: String,
    /// `WeChatPayInfo.PaidTime` or the push's `CreateTime`, Unix seconds (0: unknown).
    pub paid_time: i64,
}

impl From<&crate::pay::xpay::GoodsDeliverNotify> for XpayDelivery {
    fn from(push: &crate::pay::xpay::GoodsDeliverNotify) -> Self {
        let goods = push.goods_info.as_ref();
        let pay = push.wechat_pay_info.as_ref();
        XpayDelivery {
            openid: push.openid.clone(),
            out_trade_no: push.out_trade_no.clone(),
            env: push.env,
            product_id: goods.map(|g| g.product_id.clone()).unwrap_or_default(),
            quantity: goods.map_or(0, |g| g.quantity),
            actual_price: goods.map_or(-1, |g| g.actual_price),
            transaction_id: pay.map(|p| p.transaction_id.clone()).unwrap_or_default(),
            paid_time: pay
                .map(|p| p.paid_time)
                .filter(|t| *t > 0)
                .unwrap_or(push.create_time),
        }
    }
}

impl XpayDelivery {
    /// The push as a payment of `order` (virtual payment names no app and no merchant).
    fn observed(&self, order: &OrderDoc) -> ObservedPayment {
        ObservedPayment {
            mchid: None,
            appid: order.appid.clone(),
            total: Fen::new(self.actual_price).ok(),
            currency: "CNY".into(),
            payer: self.openid.clone(),
            env: Some(self.env),
            transaction_id: (!self.transaction_id.is_empty()).then(|| self.transaction_id.clone()),
            paid_at: known_time(self.paid_time),
        }
    }

    /// Whether the push names the order's goods: its one product and quantity.
    fn names_goods_of(&self, order: &OrderDoc) -> bool {
        order.items.len() == 1
            && order.items[0].sku == self.product_id
            && i64::from(order.items[0].quantity) == self.quantity
    }
}

#[async_trait]
impl PaymentChannel for XpayChannel {
    fn channel(&self) -> Channel {
        Channel::Xpay
    }

    fn foreign_env(&self, env: i64) -> Option<&'static str> {
        // A sandbox payment is not money: it must never grant in production.
        (i64::from(self.gateway.env().as_i32()) != env).then_some(
            "delivery push from the other virtual payment environment (sandbox vs production)",
        )
    }

    fn needs_session_key(&self) -> bool {
        true
    }

    fn check_lines(&self, lines: &[OrderLine]) -> Result<(), CommerceError> {
        if lines.len() == 1 {
            Ok(())
        } else {
            Err(CommerceError::SingleProduct)
        }
    }

    fn check_refund_no(&self, refund_no: &str) -> Result<(), CommerceError> {
        let valid = (8..=32).contains(&refund_no.len())
            && refund_no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(CommerceError::BadRequest(
                "virtual payment refunds need an 8-32 character refundNo of [0-9A-Za-z_-]".into(),
            ))
        }
    }

    fn selling_range(&self, list_price: Fen) -> Result<Option<(Fen, Fen)>, CommerceError> {
        xpay_price_range(list_price).map(Some)
    }

    async fn start(
        &self,
        order: &mut OrderDoc,
        payer: Payer<'_>,
    ) -> Result<Started, CommerceError> {
        let session_key = payer.session_key.ok_or(CommerceError::SessionKeyMissing)?;
        if let Some(sign_data) = &order.sign_data {
            return Ok(Started {
                remember: None,
                params: Ok(self.gateway.resign(sign_data, session_key)),
            });
        }
        let line = order.items.first().ok_or(CommerceError::SingleProduct)?;
        // An upgrade sells the plan's item at the prorated amount.
        let (unit_price, selling_price) = match &order.upgrade {
            Some(terms) => (terms.list_price_fen.get(), Some(line.unit_price_fen.get())),
            None => (line.unit_price_fen.get(), None),
        };
        let params = self
            .gateway
            .payment_params(
                &XpayPurchase {
                    product_id: &line.sku,
                    quantity: line.quantity,
                    unit_price_fen: unit_price,
                    selling_price_fen: selling_price,
                    out_trade_no: &order.out_trade_no,
                    attach: &order.id,
                },
                session_key,
            )
            .map_err(|e| failure(&e))?;
        let mut remember = None;
        if let Some(sign_data) = params.get("signData").and_then(Value::as_str) {
            remember = Some(Update::new().set("signData", sign_data));
            order.sign_data = Some(sign_data.to_owned());
        }
        Ok(Started {
            remember,
            params: Ok(params),
        })
    }

    async fn query(
        &self,
        order: &OrderDoc,
        now: i64,
    ) -> Result<Option<Observation>, CommerceError> {
        let state = self
            .gateway
            .query(&order.owner, &order.out_trade_no)
            .await
            .map_err(|e| failure(&e));
        match state {
            Ok(state) if state.paid => Ok(Some(Observation {
                event_id: format!("xpay-query:{}", order.out_trade_no),
                source: "query_order".into(),
                out_trade_no: order.out_trade_no.clone(),
                payment: Some(ObservedPayment {
                    mchid: None,
                    appid: order.appid.clone(),
                    total: Fen::new(state.paid_fee).ok(),
                    currency: "CNY".into(),
                    payer: order.owner.clone(),
                    env: None,
                    transaction_id: (!state.transaction_id.is_empty())
                        .then_some(state.transaction_id),
                    paid_at: known_time(state.paid_time),
                }),
            })),
            Ok(_) => Ok(None),
            // An order the user never started paying is unknown to xpay.
            Err(e) if order.expires_at > now => Err(e),
            Err(e) => {
                tracing::info!(order = %order.id, error = %e,
                    "reconcile: xpay query failed for an expired order; closing");
                Ok(None)
            }
        }
    }

    async fn close(&self, _order: &OrderDoc) -> Result<(), CommerceError> {
        // An unpaid virtual payment simply lapses; there is no close call.
        Ok(())
    }

    /// A refund is final only when `query_order` on the refund number says so: the answer of
    /// `refund_order` only means the refund task started. So the refund order is queried
    /// first (refunded → success, failed → abnormal, anything else → still processing); only
    /// a refund virtual payment does not know yet is requested.
    async fn refund(
        &self,
        order: &OrderDoc,
        refund: &RefundDoc,
    ) -> Result<RefundAnswer, CommerceError> {
        use crate::pay::xpay_after_sale::RefundOrderState;
        let known = match self
            .gateway
            .refund_state(&order.owner, &refund.refund_no)
            .await
        {
            Ok(known) => known,
            Err(e) => return Ok(RefundAnswer::Retry(failure(&e))),
        };
        let state = match known {
            Some(RefundOrderState::Succeeded) => Some(RefundState::Success),
            Some(RefundOrderState::Failed) => {
                return Ok(RefundAnswer::Refused(
                    "virtual payment reports the refund failed (refund order status 7)".into(),
                ));
            }
            Some(RefundOrderState::Pending) => None,
            None => {
                let payment = self
                    .gateway
                    .query(&order.owner, &order.out_trade_no)
                    .await
                    .map_err(|e| failure(&e))?;
                match self
                    .gateway
                    .refund(
                        &order.owner,
                        &order.out_trade_no,
                        &refund.refund_no,
                        refund.amount_fen.get(),
                        payment.left_fee,
                    )
                    .await
                {
                    // Accepted: the refund task started; its result comes from
                    // `xpay_refund_notify` or a later query (reconcile).
                    Ok(()) => None,
                    Err(e) if e.retryable => {
                        return Ok(RefundAnswer::Retry(CommerceError::provider(&e, true)));
                    }
                    Err(e) => return Ok(RefundAnswer::Refused(e.message)),
                }
            }
        };
        Ok(RefundAnswer::Answered {
            state,
            provider_refund_id: None,
        })
    }

    async fn delivered(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        self.gateway
            .provided(&order.out_trade_no)
            .await
            .map_err(|e| failure(&e))
    }
}

impl Commerce {
    /// Sells through virtual payment over `gateway`.
    #[must_use]
    pub fn with_xpay(self, gateway: Arc<dyn XpayGateway>) -> Self {
        self.with_channel(Arc::new(XpayChannel::new(gateway)))
    }

    /// Fulfils a virtual payment delivery push: the entry wxPush calls for
    /// `xpay_goods_deliver_notify` (after verifying the push). Nothing is granted unless
    /// `query_order` says the order is paid ([`PaymentOutcome::NotPaid`] otherwise). Idempotent:
    /// the same push delivered again grants nothing twice. Answer WeChat "delivered" for every
    /// outcome but `NotPaid` and `Err` (a store or provider failure, worth a redelivery).
    pub async fn deliver_xpay(
        &self,
        delivery: &XpayDelivery,
    ) -> Result<DeliveryOutcome, CommerceError> {
        let order: Option<OrderDoc> = self
            .store
            .find_one_as(
                c::ORDERS,
                &Filter::eq("outTradeNo", delivery.out_trade_no.as_str()),
            )
            .await?;
        let outcome = match order {
            None => PaymentOutcome::UnknownOrder,
            Some(order) if !delivery.names_goods_of(&order) || order.channel != Channel::Xpay => {
                self.hold_for_review(&order, "delivery push names other goods")
                    .await?
            }
            Some(order) => {
                let channel = self.require_channel(Channel::Xpay)?;
                if let Some(reason) = channel.foreign_env(delivery.env) {
                    self.hold_for_review(&order, reason).await?
                } else if channel.query(&order, self.now()).await?.is_none() {
                    // A push is only a hint, whatever the push mode: nothing is granted until
                    // `query_order` says the buyer paid.
                    PaymentOutcome::NotPaid
                } else {
                    self.apply_observed(
                        &delivery.out_trade_no,
                        Channel::Xpay,
                        &delivery.observed(&order),
                    )
                    .await?
                }
            }
        };
        let event_id = format!("xpay:{}", delivery.out_trade_no);
        self.record_event(
            &event_id,
            "xpay_goods_deliver_notify",
            &delivery.out_trade_no,
            &outcome,
        )
        .await?;
        Ok(outcome)
    }
}

/// What an `xpay_refund_notify` push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XpayRefundOutcome {
    /// The refund reached this final state (confirmed by `query_order`).
    Settled(RefundState),
    /// `query_order` does not show a final refund yet: left processing (reconcile asks again).
    StillProcessing,
    /// The refund was final already: nothing changed.
    AlreadyFinal(RefundState),
    /// No refund of ours has that number: nothing changed.
    UnknownRefund,
    /// The push names another order or channel than the stored refund: nothing changed.
    Mismatch,
}

impl Commerce {
    /// Handles a verified `xpay_refund_notify` (wxPush). The push is a hint: the refund is
    /// settled only as `query_order` on the refund number reports it (success, or failure
    /// recorded as `abnormal` with the reason), through the same conditional transitions as
    /// every other refund answer, so a repeated push changes nothing.
    pub async fn apply_xpay_refund_push(
        &self,
        push: &crate::pay::xpay_after_sale::RefundNotify,
    ) -> Result<XpayRefundOutcome, CommerceError> {
        let Some(refund) = self
            .store
            .get_as::<RefundDoc>(c::REFUNDS, &push.mch_refund_id)
            .await?
        else {
            tracing::error!(refund = %push.mch_refund_id, order = %push.mch_order_id,
                "xpay refund push for an unknown refund");
            return Ok(XpayRefundOutcome::UnknownRefund);
        };
        if refund.channel != Channel::Xpay
            || (!push.mch_order_id.is_empty() && push.mch_order_id != refund.out_trade_no)
        {
            tracing::error!(refund = %refund.refund_no, pushed_order = %push.mch_order_id,
                order = %refund.out_trade_no, "xpay refund push does not match the refund");
            return Ok(XpayRefundOutcome::Mismatch);
        }
        if matches!(refund.status, RefundState::Success | RefundState::Closed) {
            return Ok(XpayRefundOutcome::AlreadyFinal(refund.status));
        }
        let after = self.submit_refund(&refund).await?;
        let pushed_success = push.ret_code == 0;
        tracing::info!(refund = %refund.refund_no, ret_code = push.ret_code,
            ret_msg = push.ret_msg.as_deref().unwrap_or_default(), status = ?after.status,
            "xpay refund push");
        Ok(match after.status {
            RefundState::Processing => {
                if !pushed_success {
                    tracing::warn!(refund = %refund.refund_no,
                        "the push reports a failed refund that query_order does not confirm yet");
                }
                XpayRefundOutcome::StillProcessing
            }
            state if state == refund.status => XpayRefundOutcome::AlreadyFinal(state),
            state => XpayRefundOutcome::Settled(state),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xpay_sells_between_forty_percent_and_the_item_price() {
        let (min, max) = xpay_price_range(Fen::new(1800).unwrap()).unwrap();
        assert_eq!((min.get(), max.get()), (720, 1800));
        let (min, _) = xpay_price_range(Fen::new(999).unwrap()).unwrap();
        assert_eq!(min.get(), 400, "40% of 999 is 399.6: rounded up");
    }
}
