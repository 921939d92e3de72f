//! Reconciliation, run by the `reconcile` timer: nothing here trusts a client, every change
//! comes from a provider query and goes through the same conditional updates as the
//! notifications, so it can run concurrently with them.
//!
//! A run is a list of [`Step`]s sharing one budget of provider calls ([`CALL_BUDGET`]). Each
//! step lists its due work oldest first; then the steps take turns, one item each (round
//! robin), and an item starts only while the budget still covers the most provider calls it
//! can make ([`Step::MAX_CALLS`]). A step with nothing left passes its turns on, so a backlog
//! in one step or a slow provider delays every step a little instead of starving the later
//! ones, and what a run leaves is first in line in the next (the timer runs again soon). The
//! channels are metered for the run ([`metered`]), so the budget holds even if a step's
//! estimate is wrong.
//!
//! A new step is a type implementing [`Step`] (its name, its worst case of provider calls per
//! item, the query for its due items oldest first, and the handling of one item, which counts
//! into the report) plus one line in the list in [`Commerce::reconcile_within`].

mod metered;
mod shipping_steps;

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use self::metered::Meter;
use super::Commerce;
use super::error::CommerceError;
use super::fulfil::PaymentOutcome;
use super::model::{OrderDoc, RefundDoc, collections as c};
use crate::domain::order::OrderStatus;
use crate::store::{Filter, FindOptions};

/// Orders younger than this are left to their notification.
const QUIET_SECS: i64 = 60;
/// A stock hold older than this (above a cloud function's longest run, 900 s) whose order is
/// not stored belongs to a create that stopped: its order can no longer be written.
const HOLD_SECS: i64 = 20 * 60;
/// Orders / refunds listed per run and step (the timer runs again soon).
const BATCH: u64 = 100;
/// Provider calls one run may make, over all steps: bounds a run's length when the provider
/// is slow, whatever the backlog.
pub const CALL_BUDGET: u32 = 100;

/// What one reconciliation run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Unpaid orders checked with the provider.
    pub checked: u32,
    /// Orders found paid at the provider and fulfilled.
    pub paid: u32,
    /// Expired orders closed (stock released).
    pub closed: u32,
    /// Paid orders whose interrupted fulfilment was finished.
    pub fulfilled: u32,
    /// Refunds re-sent / re-queried.
    pub refunds_retried: u32,
    /// Refunds that reached a final state.
    pub refunds_settled: u32,
    /// Fully refunded orders whose grants were taken back here (an interrupted revocation).
    pub revoked: u32,
    /// Half-done refunds finished (a request or a settlement a crash interrupted).
    pub refunds_recovered: u32,
    /// Shipment reports re-sent to WeChat (`upload_shipping_info`).
    pub shipping_uploads_retried: u32,
    /// Of those, accepted.
    pub shipping_uploads_done: u32,
    /// Orders whose admins were reminded of the shipping deadline.
    pub shipping_reminders: u32,
    /// Stock reservations of orders that were never stored, given back.
    pub holds_released: u32,
    /// Steps that failed (logged; retried next run).
    pub errors: u32,
    /// Provider calls this run made (at most the run's budget).
    pub provider_calls: u32,
    /// Each step's share of the run, in the order the steps take turns.
    pub steps: Vec<StepReport>,
}

/// One step's part of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The step's name.
    pub step: &'static str,
    /// Items listed as due (at most one batch).
    pub due: u32,
    /// Items handled (whatever the outcome).
    pub handled: u32,
    /// Items left for the next run because the budget ran out.
    pub deferred: u32,
    /// Provider calls made for this step.
    pub provider_calls: u32,
    /// Items whose handling failed (logged; retried next run).
    pub errors: u32,
}

/// One kind of reconciliation work.
#[async_trait]
trait Step: Send + Sync {
    /// An item of work.
    type Item: Send + Sync;
    /// The name in the report and the logs.
    const NAME: &'static str;
    /// The most provider calls handling one item can make.
    const MAX_CALLS: u32;

    /// The due items, oldest first, at most [`BATCH`].
    async fn due(&self, commerce: &Commerce, now: i64) -> Result<Vec<Self::Item>, CommerceError>;

    /// Handles one item, counting what it did into `report`.
    async fn handle(
        &self,
        commerce: &Commerce,
        item: &Self::Item,
        now: i64,
        report: &mut ReconcileReport,
    ) -> Result<(), CommerceError>;

    /// The item's id, for the log.
    fn id(item: &Self::Item) -> &str;
}

/// A step with its due items, taking turns with the others.
struct Queue<S: Step> {
    step: S,
    items: VecDeque<S::Item>,
    report: StepReport,
}

/// A [`Queue`] of any step, so the run can keep them in one list.
#[async_trait]
trait Turn: Send {
    /// The provider calls the next item may need, or `None` when nothing is left.
    fn next_cost(&self) -> Option<u32>;
    /// Handles the next item.
    async fn take(
        &mut self,
        commerce: &Commerce,
        meter: &Meter,
        now: i64,
        report: &mut ReconcileReport,
    );
    /// The step's counters, with what is left counted as deferred.
    fn finish(self: Box<Self>) -> StepReport;
}

impl<S: Step + 'static> Queue<S> {
    async fn load(step: S, commerce: &Commerce, now: i64) -> Result<Box<dyn Turn>, CommerceError> {
        let items: VecDeque<S::Item> = step.due(commerce, now).await?.into();
        let report = StepReport {
            step: S::NAME,
            due: u32::try_from(items.len()).unwrap_or(u32::MAX),
            ..StepReport::default()
        };
        Ok(Box::new(Queue {
            step,
            items,
            report,
        }))
    }
}

#[async_trait]
impl<S: Step> Turn for Queue<S> {
    fn next_cost(&self) -> Option<u32> {
        (!self.items.is_empty()).then_some(S::MAX_CALLS)
    }

    async fn take(
        &mut self,
        commerce: &Commerce,
        meter: &Meter,
        now: i64,
        report: &mut ReconcileReport,
    ) {
        let Some(item) = self.items.pop_front() else {
            return;
        };
        let before = meter.used();
        let outcome = self.step.handle(commerce, &item, now, report).await;
        self.report.provider_calls += meter.used() - before;
        self.report.handled += 1;
        if let Err(e) = outcome {
            self.report.errors += 1;
            report.errors += 1;
            tracing::warn!(step = S::NAME, item = S::id(&item), error = %e, "reconcile step failed");
        }
    }

    fn finish(self: Box<Self>) -> StepReport {
        StepReport {
            deferred: u32::try_from(self.items.len()).unwrap_or(u32::MAX),
            ..self.report
        }
    }
}

/// 1. Unpaid orders past their quiet time: paid without a notification, or expired.
struct UnpaidOrders;

#[async_trait]
impl Step for UnpaidOrders {
    type Item = OrderDoc;
    const NAME: &'static str = "unpaidOrders";
    /// The query; then a close, or an automatic refund of an upgrade that cannot apply and
    /// the delivery notice.
    const MAX_CALLS: u32 = 3;

    async fn due(&self, commerce: &Commerce, now: i64) -> Result<Vec<OrderDoc>, CommerceError> {
        Ok(commerce
            .store
            .find_as(
                c::ORDERS,
                &Filter::eq("status", OrderStatus::Created.as_str())
                    .and(Filter::lt("createdAt", now - QUIET_SECS)),
                &FindOptions::new().sort_asc("createdAt").limit(BATCH),
            )
            .await?)
    }

    async fn handle(
        &self,
        commerce: &Commerce,
        order: &OrderDoc,
        now: i64,
        report: &mut ReconcileReport,
    ) -> Result<(), CommerceError> {
        report.checked += 1;
        match commerce.check_unpaid(order, now).await? {
            Some(PaymentOutcome::Applied { .. } | PaymentOutcome::AlreadyPaid { .. }) => {
                report.paid += 1;
            }
            Some(PaymentOutcome::NotPaid) => report.closed += 1,
            _ => {}
        }
        Ok(())
    }

    fn id(order: &OrderDoc) -> &str {
        &order.id
    }
}

/// 2. Paid orders whose grants were interrupted.
struct InterruptedFulfilments;

#[async_trait]
impl Step for InterruptedFulfilments {
    type Item = OrderDoc;
    const NAME: &'static str = "interruptedFulfilments";
    /// An automatic refund of an upgrade that cannot apply and the delivery notice (a
    /// virtual shipment's upload is `shippingUploads`' own call).
    const MAX_CALLS: u32 = 2;

    async fn due(&self, commerce: &Commerce, now: i64) -> Result<Vec<OrderDoc>, CommerceError> {
        Ok(commerce
            .store
            .find_as(
                c::ORDERS,
                &Filter::eq("status", OrderStatus::Paid.as_str())
                    .and(Filter::lt("paidAt", now - QUIET_SECS))
                    // Physical goods waiting to ship are paid, not interrupted.
                    .and(Filter::exists("shipping", false)),
                &FindOptions::new().sort_asc("paidAt").limit(BATCH),
            )
            .await?)
    }

    async fn handle(
        &self,
        commerce: &Commerce,
        order: &OrderDoc,
        _now: i64,
        report: &mut ReconcileReport,
    ) -> Result<(), CommerceError> {
        commerce.fulfil(order).await?;
        report.fulfilled += 1;
        commerce.tell_delivered(order).await;
        Ok(())
    }

    fn id(order: &OrderDoc) -> &str {
        &order.id
    }
}

/// 3. Refunds still processing: re-sent with the same number (idempotent at WeChat Pay, and
///    the answer carries the current state).
struct RefundsInFlight;

#[async_trait]
impl Step for RefundsInFlight {
    type Item = RefundDoc;
    const NAME: &'static str = "refundsInFlight";
    const MAX_CALLS: u32 = 1;

    async fn due(&self, commerce: &Commerce, now: i64) -> Result<Vec<RefundDoc>, CommerceError> {
        Ok(commerce
            .store
            .find_as(
                c::REFUNDS,
                &Filter::eq("status", "processing")
                    .and(Filter::eq("reserved", true))
                    .and(Filter::lt("attemptedAt", now - QUIET_SECS)),
                &FindOptions::new().sort_asc("createdAt").limit(BATCH),
            )
            .await?)
    }

    async fn handle(
        &self,
        commerce: &Commerce,
        refund: &RefundDoc,
        _now: i64,
        report: &mut ReconcileReport,
    ) -> Result<(), CommerceError> {
        report.refunds_retried += 1;
        if commerce.submit_refund(refund).await?.status.is_final() {
            report.refunds_settled += 1;
        }
        Ok(())
    }

    fn id(refund: &RefundDoc) -> &str {
        &refund.refund_no
    }
}

/// 4. Fully refunded orders whose grants were not taken back (interrupted).
struct UnrevokedGrants;

#[async_trait]
impl Step for UnrevokedGrants {
    type Item = OrderDoc;
    const NAME: &'static str = "unrevokedGrants";
    /// Taking grants back is the store's work only.
    const MAX_CALLS: u32 = 0;

    async fn due(&self, commerce: &Commerce, _now: i64) -> Result<Vec<OrderDoc>, CommerceError> {
        Ok(commerce
            .store
            .find_as(
                c::ORDERS,
                &Filter::eq("status", OrderStatus::Refunded.as_str())
                    .and(Filter::ne("grantsRevoked", true)),
                &FindOptions::new().sort_asc("paidAt").limit(BATCH),
            )
            .await?)
    }

    async fn handle(
        &self,
        commerce: &Commerce,
        order: &OrderDoc,
        _now: i64,
        report: &mut ReconcileReport,
    ) -> Result<(), CommerceError> {
        commerce.revoke_grants(order).await?;
        report.revoked += 1;
        Ok(())
    }

    fn id(order: &OrderDoc) -> &str {
        &order.id
    }
}

impl Commerce {
    /// One reconciliation pass within [`CALL_BUDGET`] provider calls.
    pub async fn reconcile(&self) -> Result<ReconcileReport, CommerceError> {
        self.reconcile_within(CALL_BUDGET).await
    }

    /// One reconciliation pass making at most `budget` provider calls, shared fairly by the
    /// steps (see the module documentation).
    pub async fn reconcile_within(&self, budget: u32) -> Result<ReconcileReport, CommerceError> {
        let now = self.now();
        let meter = Arc::new(Meter::new(budget));
        let commerce = metered::metered(self, &meter);
        let mut report = ReconcileReport::default();
        // Writes a crash left half done come first: what they finish (a reserved refund to
        // send) joins the steps' work listed below.
        commerce.recover_refunds_step(now, &mut report).await;
        commerce.release_orphan_holds_step(now, &mut report).await;
        let mut steps = vec![
            Queue::load(UnpaidOrders, &commerce, now).await?,
            Queue::load(InterruptedFulfilments, &commerce, now).await?,
            Queue::load(RefundsInFlight, &commerce, now).await?,
            Queue::load(UnrevokedGrants, &commerce, now).await?,
            Queue::load(shipping_steps::ShippingUploads, &commerce, now).await?,
            Queue::load(shipping_steps::ShippingDeadlines, &commerce, now).await?,
        ];
        loop {
            let mut progressed = false;
            for step in &mut steps {
                if step.next_cost().is_some_and(|cost| cost <= meter.left()) {
                    step.take(&commerce, &meter, now, &mut report).await;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        report.provider_calls = meter.used();
        report.steps = steps.into_iter().map(|step| step.finish()).collect();
        tracing::info!(?report, "reconcile done");
        Ok(report)
    }

    /// Finishes refund requests and settlements a crash interrupted (see
    /// [`Commerce::recover_refunds`]).
    async fn recover_refunds_step(&self, now: i64, report: &mut ReconcileReport) {
        match self.recover_refunds(now - QUIET_SECS, BATCH).await {
            Ok((done, failed)) => {
                report.refunds_recovered += done;
                report.errors += failed;
            }
            Err(e) => {
                report.errors += 1;
                tracing::warn!(error = %e, "reconcile: half-done refunds");
            }
        }
    }

    /// Gives back stock held for orders that were never stored (see
    /// [`Commerce::release_orphan_holds`]).
    async fn release_orphan_holds_step(&self, now: i64, report: &mut ReconcileReport) {
        match self.release_orphan_holds(now - HOLD_SECS, BATCH).await {
            Ok(released) => report.holds_released += released,
            Err(e) => {
                report.errors += 1;
                tracing::warn!(error = %e, "reconcile: stock holds");
            }
        }
    }

    /// Asks the provider about an unpaid order: paid → apply; expired and unpaid → close.
    /// `Some(NotPaid)` means it was closed here.
    async fn check_unpaid(
        &self,
        order: &OrderDoc,
        now: i64,
    ) -> Result<Option<PaymentOutcome>, CommerceError> {
        let expired = order.expires_at <= now;
        if let Some(channel) = self.channel(order.channel)
            && let Some(observation) = channel.query(order, now).await?
        {
            let outcome = self.apply_observation(order.channel, &observation).await?;
            if matches!(outcome, PaymentOutcome::Applied { .. }) {
                self.tell_delivered(order).await;
            }
            if outcome != PaymentOutcome::NotPaid {
                return Ok(Some(outcome));
            }
        }
        if expired && self.close_order(order).await? {
            return Ok(Some(PaymentOutcome::NotPaid));
        }
        Ok(None)
    }

    /// Repairs a payment a provider's bill shows but the order here missed (a notification
    /// lost beyond its retries): the same path as the unpaid-orders step, so the provider is
    /// asked first (never the bill alone) and the grant applies once however often it runs.
    /// `None` when the order does not exist or its channel is not configured.
    pub async fn repair_missed_payment(
        &self,
        out_trade_no: &str,
    ) -> Result<Option<PaymentOutcome>, CommerceError> {
        let Some(order) = self
            .store
            .find_one_as::<OrderDoc>(c::ORDERS, &Filter::eq("outTradeNo", out_trade_no))
            .await?
        else {
            return Ok(None);
        };
        let Some(channel) = self.channel(order.channel) else {
            return Ok(None);
        };
        let Some(observation) = channel.query(&order, self.now()).await? else {
            return Ok(Some(PaymentOutcome::NotPaid));
        };
        let outcome = self.apply_observation(order.channel, &observation).await?;
        if matches!(outcome, PaymentOutcome::Applied { .. }) {
            self.tell_delivered(&order).await;
        }
        Ok(Some(outcome))
    }

    /// Tells the provider the goods of an order fulfilled here were delivered (best effort).
    async fn tell_delivered(&self, order: &OrderDoc) {
        if let Some(channel) = self.channel(order.channel)
            && let Err(e) = channel.delivered(order).await
        {
            tracing::warn!(order = %order.id, error = %e, "telling the provider the goods were delivered failed");
        }
    }
}
