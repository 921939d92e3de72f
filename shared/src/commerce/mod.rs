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
//! - [`Commerce::reconcile`] closes expired orders, finds payments whose notification was
//!   lost, finishes interrupted fulfilments and retries refunds.

mod error;
mod fulfil;
pub mod gateway;
pub mod model;
mod orders;
mod reconcile;
mod refunds;
mod revoke;
mod setup;
mod upgrade;

use std::sync::Arc;

pub use error::{CommerceError, codes};
pub use fulfil::{DeliveryOutcome, PaymentOutcome, XpayDelivery};
pub use gateway::{
    WxpayGateway, XpayFailure, XpayGateway, XpayOrderState, XpayProvider, XpayPurchase,
};
pub use model::{OrderDoc, RefundDoc, RefundState, SubscriptionScope, UpgradeTerms, collections};
pub use orders::{CreateInput, Created, ListInput, MAX_OPEN_ORDERS, SearchInput};
pub use reconcile::ReconcileReport;
pub use refunds::RefundInput;
pub use setup::{from_config, open_store};
pub use upgrade::UpgradeRequest;

use crate::identity::{Caller, DataKey};
use crate::pay::SharedClock;
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
    wxpay: Option<Arc<dyn WxpayGateway>>,
    xpay: Option<Arc<dyn XpayGateway>>,
    data_key: Option<Arc<DataKey>>,
    clock: SharedClock,
    random: RandomBytes,
    order_ttl_secs: i64,
}

impl std::fmt::Debug for Commerce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commerce")
            .field("store", &self.store.backend())
            .field("appid", &self.appid)
            .field("wxpay", &self.wxpay.is_some())
            .field("xpay", &self.xpay.is_some())
            .finish_non_exhaustive()
    }
}

impl Commerce {
    /// A service for the Mini Program `appid` over `store`, without payment providers.
    pub fn new(store: Arc<dyn Store>, appid: impl Into<String>, clock: SharedClock) -> Self {
        Self {
            store,
            appid: appid.into(),
            wxpay: None,
            xpay: None,
            data_key: None,
            clock,
            random: system_random(),
            order_ttl_secs: DEFAULT_ORDER_TTL_SECS,
        }
    }

    /// Sells through WeChat Pay v3.
    #[must_use]
    pub fn with_wxpay(mut self, gateway: Arc<dyn WxpayGateway>) -> Self {
        self.wxpay = Some(gateway);
        self
    }

    /// Sells through virtual payment.
    #[must_use]
    pub fn with_xpay(mut self, gateway: Arc<dyn XpayGateway>) -> Self {
        self.xpay = Some(gateway);
        self
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

    /// The WeChat Pay merchant id, when WeChat Pay is configured.
    pub fn mchid(&self) -> Option<&str> {
        self.wxpay.as_deref().map(|g| g.mchid())
    }

    /// Whether the caller is a project administrator: the session says so, or the user's
    /// stored `role` is `admin` (the stored role is authoritative for platform callers).
    pub async fn is_admin(&self, caller: &Caller) -> Result<bool, CommerceError> {
        if caller.admin {
            return Ok(true);
        }
        let user: Option<crate::identity::User> = self
            .store
            .get_as(crate::identity::USERS, &caller.openid)
            .await?;
        Ok(user.is_some_and(|u| u.role == crate::identity::UserRole::Admin))
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
