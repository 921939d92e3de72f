//! Commerce: the catalog, orders, payments, fulfilment, refunds and reconciliation shared by
//! `createOrder`, `payNotify`, `reconcile` and wxPush's virtual payment deliveries.
//!
//! Every state change that matters is a conditional store update whose filter names the
//! states the move may start from ([`crate::domain::order::OrderStatus::allowed_from`]), so a
//! duplicated notification, a concurrent delivery push and the reconciliation timer can all
//! race on the same order and the payment still applies once. Grants are idempotent per order
//! (each grant document records the orders applied to it), so a crash between "paid" and
//! "fulfilled" is finished by whoever sees the order next.
//!
//! - [`Commerce::create_order`] prices the cart from the catalog (or a plan upgrade from the
//!   subscription, see the `upgrade` module), reserves stock with a conditional `$inc`, stores the
//!   order and returns the payment parameters.
//! - [`Commerce::apply_wxpay_transaction`] / [`Commerce::deliver_xpay`] take a verified payment
//!   to paid and fulfilled.
//! - Payment channels are [`PaymentChannel`] adapters (the `channel` module), registered by
//!   [`Commerce::with_channel`]; the order code never matches on [`Channel`].
//! - [`Commerce::reconcile`] closes expired orders, finds payments whose notification was
//!   lost, finishes interrupted fulfilments and retries refunds.

pub mod channel;
mod error;
mod fulfil;
pub mod gateway;
pub mod model;
mod orders;
mod reconcile;
mod refunds;
mod revoke;
pub mod shipping;
mod upgrade;

use std::collections::HashMap;
use std::sync::Arc;

pub use channel::{
    Observation, ObservedPayment, Payer, PaymentChannel, RefundAnswer, Started, WxpayChannel,
    XpayChannel, XpayDelivery, XpayRefundOutcome,
};
pub use error::{CommerceError, codes};
pub use fulfil::{DeliveryOutcome, PaymentOutcome};
pub use gateway::{
    WxpayGateway, XpayFailure, XpayGateway, XpayOrderState, XpayProvider, XpayPurchase,
};
pub use model::{OrderDoc, RefundDoc, RefundState, SubscriptionScope, UpgradeTerms, collections};
pub use orders::{CreateInput, Created, ListInput, MAX_OPEN_ORDERS, SearchInput};
pub use reconcile::{CALL_BUDGET, ReconcileReport, StepReport};
pub use refunds::RefundInput;
pub use shipping::{
    RemindReceiptInput, ShipInput, ShipmentsInput, ShippingPlatform, ShippingSettings,
    TradeManageOutcome,
};
pub use upgrade::UpgradeRequest;

use crate::clock::SharedClock;
use crate::domain::catalog::Channel;
use crate::events::Events;
use crate::identity::{Caller, DataKey};
use crate::store::Store;

/// How long an unpaid order stays payable by default (`time_expire`).
pub const DEFAULT_ORDER_TTL_SECS: i64 = 30 * 60;

/// Source of the 16 random bytes of an order number; injectable so tests are exact.
pub type RandomBytes = Arc<dyn Fn() -> [u8; 16] + Send + Sync>;

/// Random bytes from the system CSPRNG.
pub fn system_random() -> RandomBytes {
    Arc::new(|| {
        let mut b = [0u8; 16];
        // Without a CSPRNG no order number is safe to hand out.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut b).expect("system CSPRNG unavailable");
        b
    })
}

/// The order service: store, payment providers and settings, built once per instance.
pub struct Commerce {
    store: Arc<dyn Store>,
    appid: String,
    /// The configured payment channels, by the channel they serve.
    channels: HashMap<Channel, Arc<dyn PaymentChannel>>,
    data_key: Option<Arc<DataKey>>,
    clock: SharedClock,
    random: RandomBytes,
    order_ttl_secs: i64,
    /// Where `order.paid` and `refund.settled` go (`wemint::events`).
    events: Events,
    /// Where shipments are reported and shipping messages sent (the WeChat client).
    shipping: Option<Arc<dyn ShippingPlatform>>,
    shipping_settings: Arc<ShippingSettings>,
}

impl std::fmt::Debug for Commerce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commerce")
            .field("store", &self.store.backend())
            .field("appid", &self.appid)
            .field("channels", &self.channel_names())
            .finish_non_exhaustive()
    }
}

impl Commerce {
    /// A service for the Mini Program `appid` over `store`, without payment channels.
    pub fn new(store: Arc<dyn Store>, appid: impl Into<String>, clock: SharedClock) -> Self {
        Self {
            events: Events::new(store.clone()).with_clock(clock.clone()),
            store,
            appid: appid.into(),
            channels: HashMap::new(),
            data_key: None,
            clock,
            random: system_random(),
            order_ttl_secs: DEFAULT_ORDER_TTL_SECS,
            shipping: None,
            shipping_settings: Arc::new(ShippingSettings::default()),
        }
    }

    /// Sells through `channel`, replacing any adapter registered for the same [`Channel`].
    #[must_use]
    pub fn with_channel(mut self, channel: Arc<dyn PaymentChannel>) -> Self {
        self.channels.insert(channel.channel(), channel);
        self
    }

    /// The adapter of `channel`, when it is configured.
    pub(crate) fn channel(&self, channel: Channel) -> Option<&dyn PaymentChannel> {
        self.channels.get(&channel).map(|c| c.as_ref())
    }

    /// The adapter of `channel`, or `CHANNEL_UNAVAILABLE`.
    pub(crate) fn require_channel(
        &self,
        channel: Channel,
    ) -> Result<&dyn PaymentChannel, CommerceError> {
        self.channel(channel)
            .ok_or(CommerceError::ChannelUnavailable(channel.as_str()))
    }

    /// The configured channels' names, sorted.
    fn channel_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.channels.keys().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// Opens stored session_keys (needed for virtual payment).
    #[must_use]
    pub fn with_data_key(mut self, key: Arc<DataKey>) -> Self {
        self.data_key = Some(key);
        self
    }

    /// Replaces the order number randomness (tests).
    #[must_use]
    pub fn with_random(mut self, random: RandomBytes) -> Self {
        self.random = random;
        self
    }

    /// How long unpaid orders stay payable.
    #[must_use]
    pub fn with_order_ttl(mut self, secs: i64) -> Self {
        self.order_ttl_secs = secs.max(60);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Now, Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    /// Whether the caller is a project administrator by the user's stored `role`. The
    /// session's flag is not enough: it may predate a demotion.
    pub async fn is_admin(&self, caller: &Caller) -> Result<bool, CommerceError> {
        Ok(crate::identity::is_stored_admin(self.store.as_ref(), &caller.openid).await?)
    }

    /// `FORBIDDEN` unless [`Commerce::is_admin`].
    pub async fn require_admin(&self, caller: &Caller) -> Result<(), CommerceError> {
        if self.is_admin(caller).await? {
            Ok(())
        } else {
            Err(CommerceError::Forbidden("administrators only".into()))
        }
    }
}

#[cfg(test)]
mod tests;
