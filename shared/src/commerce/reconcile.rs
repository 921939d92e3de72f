//! Reconciliation, run by the `reconcile` timer: nothing here trusts a client, every change
//! comes from a provider query and goes through the same conditional updates as the
//! notifications, so it can run concurrently with them.

use serde::Serialize;

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
/// Orders / refunds handled per run and step (the timer runs again soon).
const BATCH: u64 = 100;

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
    /// Stock reservations of orders that were never stored, given back.
    pub holds_released: u32,
    /// Steps that failed (logged; retried next run).
    pub errors: u32,
}

impl Commerce {
    /// One reconciliation pass.
    pub async fn reconcile(&self) -> Result<ReconcileReport, CommerceError> {
        let mut report = ReconcileReport::default();
        let now = self.now();

        // 1. Unpaid orders past their quiet time: paid without a notification, or expired.
        let unpaid: Vec<OrderDoc> = self
            .store
            .find_as(
                c::ORDERS,
                &Filter::eq("status", OrderStatus::Created.as_str())
                    .and(Filter::lt("createdAt", now - QUIET_SECS)),
                &FindOptions::new().sort_asc("createdAt").limit(BATCH),
            )
            .await?;
        for order in unpaid {
            report.checked += 1;
            match self.check_unpaid(&order, now).await {
                Ok(Some(PaymentOutcome::Applied { .. } | PaymentOutcome::AlreadyPaid { .. })) => {
                    report.paid += 1;
                }
                Ok(Some(PaymentOutcome::NotPaid)) => report.closed += 1,
                Ok(_) => {}
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(order = %order.id, error = %e, "reconcile: unpaid order");
                }
            }
        }

        // 2. Paid orders whose grants were interrupted.
        let stuck: Vec<OrderDoc> = self
            .store
            .find_as(
                c::ORDERS,
                &Filter::eq("status", OrderStatus::Paid.as_str())
                    .and(Filter::lt("paidAt", now - QUIET_SECS)),
                &FindOptions::new().sort_asc("paidAt").limit(BATCH),
            )
            .await?;
        for order in stuck {
            match self.fulfil(&order).await {
                Ok(()) => {
                    report.fulfilled += 1;
                    self.tell_delivered(&order).await;
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(order = %order.id, error = %e, "reconcile: fulfilment");
                }
            }
        }

        // 3. Refunds still processing: re-send with the same number (idempotent at WeChat Pay,
        //    and the answer carries the current state).
        let refunds: Vec<RefundDoc> = self
            .store
            .find_as(
                c::REFUNDS,
                &Filter::eq("status", "processing")
                    .and(Filter::eq("reserved", true))
                    .and(Filter::lt("attemptedAt", now - QUIET_SECS)),
                &FindOptions::new().sort_asc("createdAt").limit(BATCH),
            )
            .await?;
        for refund in refunds {
            report.refunds_retried += 1;
            match self.submit_refund(&refund).await {
                Ok(after) if after.status.is_final() => report.refunds_settled += 1,
                Ok(_) => {}
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(refund = %refund.refund_no, error = %e, "reconcile: refund");
                }
            }
        }
        // 3b. Refunds a crash left between two writes.
        self.recover_refunds_step(now, &mut report).await;
        // 3c. Stock taken for orders a crash kept from being stored.
        self.release_orphan_holds_step(now, &mut report).await;
        // 4. Fully refunded orders whose grants were not taken back (interrupted).
        let refunded: Vec<OrderDoc> = self
            .store
            .find_as(
                c::ORDERS,
                &Filter::eq("status", OrderStatus::Refunded.as_str())
                    .and(Filter::ne("grantsRevoked", true)),
                &FindOptions::new().limit(BATCH),
            )
            .await?;
        for order in refunded {
            match self.revoke_grants(&order).await {
                Ok(()) => report.revoked += 1,
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(order = %order.id, error = %e, "reconcile: taking back grants");
                }
            }
        }
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

    /// Tells the provider the goods of an order fulfilled here were delivered (best effort).
    async fn tell_delivered(&self, order: &OrderDoc) {
        if let Some(channel) = self.channel(order.channel)
            && let Err(e) = channel.delivered(order).await
        {
            tracing::warn!(order = %order.id, error = %e, "telling the provider the goods were delivered failed");
        }
    }
}
