//! The run's provider-call budget, enforced where the calls are made: every channel of the
//! run's [`Commerce`] is wrapped so each provider call takes one unit, and a call past the
//! budget is refused (an error, retried next run) instead of made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use super::super::Commerce;
use super::super::channel::{Observation, Payer, PaymentChannel, RefundAnswer, Started};
use super::super::error::CommerceError;
use super::super::model::{OrderDoc, RefundDoc};
use super::super::shipping::ShippingPlatform;
use crate::domain::catalog::Channel;
use crate::domain::money::Fen;
use crate::domain::order::OrderLine;
use crate::wechat::shipping::{PlatformOrder, ShippingUpload};
use crate::wechat::{SubscribeMessage, WechatError};

/// Provider calls allowed and made in one run.
#[derive(Debug)]
pub(super) struct Meter {
    budget: u32,
    used: AtomicU32,
}

impl Meter {
    pub(super) fn new(budget: u32) -> Self {
        Meter {
            budget,
            used: AtomicU32::new(0),
        }
    }

    /// Calls made so far.
    pub(super) fn used(&self) -> u32 {
        self.used.load(Ordering::SeqCst)
    }

    /// Calls still allowed.
    pub(super) fn left(&self) -> u32 {
        self.budget.saturating_sub(self.used())
    }

    /// Takes one call from the budget, or refuses when it is spent.
    fn take(&self) -> Result<(), CommerceError> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < self.budget).then_some(used + 1)
            })
            .map(|_| ())
            .map_err(|_| {
                CommerceError::provider("this run's budget of provider calls is spent", true)
            })
    }
}

/// `commerce` with every channel counted against `meter`.
pub(super) fn metered(commerce: &Commerce, meter: &Arc<Meter>) -> Commerce {
    Commerce {
        store: commerce.store.clone(),
        appid: commerce.appid.clone(),
        channels: commerce
            .channels
            .iter()
            .map(|(kind, inner)| {
                let channel: Arc<dyn PaymentChannel> = Arc::new(Metered {
                    inner: inner.clone(),
                    meter: meter.clone(),
                });
                (*kind, channel)
            })
            .collect(),
        data_key: commerce.data_key.clone(),
        clock: commerce.clock.clone(),
        random: commerce.random.clone(),
        order_ttl_secs: commerce.order_ttl_secs,
        events: commerce.events.clone(),
        shipping: commerce.shipping.clone().map(|inner| {
            let platform: Arc<dyn ShippingPlatform> = Arc::new(MeteredShipping {
                inner,
                meter: meter.clone(),
            });
            platform
        }),
        shipping_settings: commerce.shipping_settings.clone(),
    }
}

/// The shipping platform, each call taking one unit of the run's budget.
struct MeteredShipping {
    inner: Arc<dyn ShippingPlatform>,
    meter: Arc<Meter>,
}

impl MeteredShipping {
    fn take(&self) -> Result<(), WechatError> {
        self.meter
            .take()
            .map_err(|e| WechatError::Transport(e.to_string()))
    }
}

#[async_trait]
impl ShippingPlatform for MeteredShipping {
    async fn upload(&self, upload: &ShippingUpload) -> Result<(), WechatError> {
        self.take()?;
        self.inner.upload(upload).await
    }

    async fn remind_receipt(&self, transaction_id: &str, received: i64) -> Result<(), WechatError> {
        self.take()?;
        self.inner.remind_receipt(transaction_id, received).await
    }

    async fn order(&self, transaction_id: &str) -> Result<PlatformOrder, WechatError> {
        self.take()?;
        self.inner.order(transaction_id).await
    }

    async fn send(&self, message: &SubscribeMessage) -> Result<(), WechatError> {
        self.take()?;
        self.inner.send(message).await
    }
}

/// A channel whose provider calls take from the run's budget; everything else passes through.
struct Metered {
    inner: Arc<dyn PaymentChannel>,
    meter: Arc<Meter>,
}

#[async_trait]
impl PaymentChannel for Metered {
    fn channel(&self) -> Channel {
        self.inner.channel()
    }

    fn merchant(&self) -> Option<&str> {
        self.inner.merchant()
    }

    fn foreign_env(&self, env: i64) -> Option<&'static str> {
        self.inner.foreign_env(env)
    }

    fn needs_session_key(&self) -> bool {
        self.inner.needs_session_key()
    }

    fn check_lines(&self, lines: &[OrderLine]) -> Result<(), CommerceError> {
        self.inner.check_lines(lines)
    }

    fn check_refund_no(&self, refund_no: &str) -> Result<(), CommerceError> {
        self.inner.check_refund_no(refund_no)
    }

    fn selling_range(&self, list_price: Fen) -> Result<Option<(Fen, Fen)>, CommerceError> {
        self.inner.selling_range(list_price)
    }

    async fn start(
        &self,
        order: &mut OrderDoc,
        payer: Payer<'_>,
    ) -> Result<Started, CommerceError> {
        self.meter.take()?;
        self.inner.start(order, payer).await
    }

    async fn query(
        &self,
        order: &OrderDoc,
        now: i64,
    ) -> Result<Option<Observation>, CommerceError> {
        self.meter.take()?;
        self.inner.query(order, now).await
    }

    async fn close(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        self.meter.take()?;
        self.inner.close(order).await
    }

    async fn refund(
        &self,
        order: &OrderDoc,
        refund: &RefundDoc,
    ) -> Result<RefundAnswer, CommerceError> {
        self.meter.take()?;
        self.inner.refund(order, refund).await
    }

    async fn delivered(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        self.meter.take()?;
        self.inner.delivered(order).await
    }
}
