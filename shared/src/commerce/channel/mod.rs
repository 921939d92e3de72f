//! Payment channels as the order code sees them: one [`PaymentChannel`] per [`Channel`],
//! registered on [`Commerce`](super::Commerce) with
//! [`with_channel`](super::Commerce::with_channel). Checkout, fulfilment, reconciliation and
//! refunds call the trait and never ask which channel an order uses, so a new channel is
//! its `Channel` variant, an adapter file here (its provider client, its `PaymentChannel`
//! impl and the entry point for its payment push, if it has one), its `mod` line below and
//! its registration where the service is built from the configuration.
//!
//! - [`wxpay`]: WeChat Pay v3 JSAPI (`wx.requestPayment`), over
//!   [`WxpayGateway`](super::WxpayGateway).
//! - [`xpay`]: Mini Program virtual payment (`wx.requestVirtualPayment`), over
//!   [`XpayGateway`](super::XpayGateway).

pub mod wxpay;
pub mod xpay;

use async_trait::async_trait;
use serde_json::Value;

use super::error::CommerceError;
use super::model::{OrderDoc, RefundDoc, RefundState};
use crate::domain::catalog::Channel;
use crate::domain::money::Fen;
use crate::domain::order::OrderLine;
use crate::store::Update;

pub use wxpay::WxpayChannel;
pub use xpay::{XpayChannel, XpayDelivery, XpayRefundOutcome};

/// What a channel needs from the buyer's side to start a payment.
#[derive(Clone, Copy, Debug)]
pub struct Payer<'a> {
    /// The buyer's session_key, when [`PaymentChannel::needs_session_key`].
    pub session_key: Option<&'a str>,
    /// Now, Unix seconds.
    pub now: i64,
}

/// A started payment: the client's parameters, and what the order keeps so the next start
/// reuses it (a prepay, the signed data).
#[derive(Debug)]
pub struct Started {
    /// Fields to store on the order (already set on the `OrderDoc` passed in). Stored even
    /// when `params` failed: a prepay obtained before signing failed is reused next time.
    pub remember: Option<Update>,
    /// `params` of the `{channel, params}` reply.
    pub params: Result<Value, CommerceError>,
}

/// A payment as a verified source saw it (a notification, a push, a query), in the terms
/// fulfilment checks against the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPayment {
    /// The merchant account paid into; `None` for a channel without one (then nothing is
    /// checked), `Some` must be the registered channel's [`PaymentChannel::merchant`].
    pub mchid: Option<String>,
    /// The app the payment was made in.
    pub appid: String,
    /// What was paid (`None`: the source did not say; held for review).
    pub total: Option<Fen>,
    /// Currency code.
    pub currency: String,
    /// The payer's openid.
    pub payer: String,
    /// The provider's environment code, for channels with a sandbox (checked with
    /// [`PaymentChannel::foreign_env`]).
    pub env: Option<i64>,
    /// The provider's id of the payment.
    pub transaction_id: Option<String>,
    /// Payment time, Unix seconds (`None`: now).
    pub paid_at: Option<i64>,
}

/// One verified answer about an order's payment, recorded in `payment_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The event's unique id (a redelivery has the same one).
    pub event_id: String,
    /// Where it came from (`v3_notify`, `query`, `query_order`, ...).
    pub source: String,
    /// The order's merchant number.
    pub out_trade_no: String,
    /// The payment, or `None` when the provider says the order is not paid.
    pub payment: Option<ObservedPayment>,
}

/// What a provider said to a refund request.
#[derive(Debug)]
pub enum RefundAnswer {
    /// Accepted: the state when already final, and the provider's id of the refund.
    Answered {
        /// `Some` once the refund is final.
        state: Option<RefundState>,
        /// The provider's refund id.
        provider_refund_id: Option<String>,
    },
    /// Certainly not refunded (refused before sending, or a definite answer such as not
    /// enough balance): the refund ends abnormal with this note.
    Refused(String),
    /// Not done now, or the outcome is unknown (a reset after sending, an unverified or
    /// undecodable answer): left processing, and reconciliation re-sends the same refund
    /// number, which answers with the real state.
    Retry(CommerceError),
}

/// One way of being paid. Every method gets the stored order, so an adapter keeps no state
/// of its own beyond its provider client.
#[async_trait]
pub trait PaymentChannel: Send + Sync {
    /// Which channel this adapter serves (the key it is registered under).
    fn channel(&self) -> Channel;

    /// The merchant account payments must go to, for channels that have one.
    fn merchant(&self) -> Option<&str> {
        None
    }

    /// Why a payment made in the provider environment `env` must not grant here (a sandbox
    /// payment reaching production), or `None` when it may.
    fn foreign_env(&self, _env: i64) -> Option<&'static str> {
        None
    }

    /// Whether starting a payment needs the buyer's session_key.
    fn needs_session_key(&self) -> bool {
        false
    }

    /// Refuses a cart this channel cannot sell (checked before stock is taken).
    fn check_lines(&self, _lines: &[OrderLine]) -> Result<(), CommerceError> {
        Ok(())
    }

    /// Refuses a refund number this channel cannot use (checked before anything is written).
    fn check_refund_no(&self, _refund_no: &str) -> Result<(), CommerceError> {
        Ok(())
    }

    /// The amounts an item listed at `list_price` can be charged at (a prorated upgrade),
    /// or `None` when any amount can.
    fn selling_range(&self, _list_price: Fen) -> Result<Option<(Fen, Fen)>, CommerceError> {
        Ok(None)
    }

    /// Starts (or resumes, reusing what `order` remembers) a payment of a payable order.
    async fn start(&self, order: &mut OrderDoc, payer: Payer<'_>)
    -> Result<Started, CommerceError>;

    /// Asks the provider about an unpaid order; `None` when there is nothing to apply (never
    /// started, unknown to the provider, or unpaid and not worth an event).
    async fn query(&self, order: &OrderDoc, now: i64)
    -> Result<Option<Observation>, CommerceError>;

    /// Closes an unpaid order at the provider (nothing to close is not an error).
    async fn close(&self, order: &OrderDoc) -> Result<(), CommerceError>;

    /// Requests a refund, or re-queries it: the same refund number never refunds twice.
    /// `Err` leaves the refund untouched (nothing was asked).
    async fn refund(
        &self,
        order: &OrderDoc,
        refund: &RefundDoc,
    ) -> Result<RefundAnswer, CommerceError>;

    /// Tells the provider the goods were delivered, after a fulfilment it did not drive
    /// (reconciliation).
    async fn delivered(&self, _order: &OrderDoc) -> Result<(), CommerceError> {
        Ok(())
    }
}
