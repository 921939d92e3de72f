//! Refunds: admin request (idempotent by refund number), provider call, final state from the
//! notification, a query or the reconciliation retry.

use serde::Deserialize;
use serde_json::json;

use super::Commerce;
use super::channel::RefundAnswer;
use super::error::CommerceError;
use super::model::{OrderDoc, RefundDoc, RefundState, collections as c};
use crate::domain::money::Fen;
use crate::domain::order::{OrderStatus, plan_refund, status_after_refund_settled};
use crate::events::{Draft, kinds};
use crate::identity::Caller;
use crate::store::{Filter, FindOptions, StoreError, Update, UpdateOptions};

/// How many times an optimistic order update is retried under contention.
const ORDER_RETRIES: usize = 8;

/// The order's mark of a refund whose amount is counted in `refundingFen`.
const HELD: &str = "held";
/// The order's mark of a refund counted in `refundedFen`.
const REFUNDED: &str = "refunded";
/// The order's mark of a refund that ended without refunding (nothing counted).
const RELEASED: &str = "released";
/// `requestedBy` of a refund made outside wemint (merchant console).
const OUTSIDE: &str = "merchant_console";

/// Where an order marks what it counted of a refund (hex, so any refund number is a key).
fn refund_mark(refund_no: &str) -> String {
    format!("refundMarks.r_{}", hex::encode(refund_no))
}

/// `refund` data.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundInput {
    /// The order.
    pub order_id: String,
    /// Idempotency key, sent as `out_refund_no`.
    pub refund_no: String,
    /// Amount; default: everything still refundable.
    #[serde(default)]
    pub amount_fen: Option<Fen>,
    /// Shown to the buyer.
    #[serde(default)]
    pub reason: Option<String>,
}

fn valid_refund_no(no: &str) -> bool {
    (1..=64).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
}

impl Commerce {
    /// `refund` (admin): reserves the amount on the order, records the refund and asks the
    /// provider. Repeating a refund number returns that refund (never refunds twice).
    pub async fn refund(
        &self,
        caller: &Caller,
        input: RefundInput,
    ) -> Result<RefundDoc, CommerceError> {
        self.require_admin(caller).await?;
        self.request_refund(&caller.openid, input).await
    }

    /// Starts a refund asked for by `requested_by` (an admin's openid, or `system` for
    /// automatic refunds), after the same checks.
    pub(crate) async fn request_refund(
        &self,
        requested_by: &str,
        input: RefundInput,
    ) -> Result<RefundDoc, CommerceError> {
        if !valid_refund_no(&input.refund_no) {
            return Err(CommerceError::BadRequest(
                "refundNo must be 1-64 characters of [0-9A-Za-z_-|*@]".into(),
            ));
        }
        if let Some(reason) = &input.reason
            && (reason.is_empty() || reason.len() > 80 || crate::pay::has_4byte_char(reason))
        {
            return Err(CommerceError::BadRequest(
                "reason must be 1-80 bytes without emoji".into(),
            ));
        }
        if let Some(existing) = self
            .store
            .get_as::<RefundDoc>(c::REFUNDS, &input.refund_no)
            .await?
        {
            let existing = self.same_refund(existing, &input)?;
            if existing.status == RefundState::Processing && !existing.reserved && existing.marked {
                // A request that stopped between its writes: finish it now.
                return self.finish_reservation(existing).await;
            }
            return Ok(existing);
        }
        let order: OrderDoc = self
            .store
            .get_as(c::ORDERS, &input.order_id)
            .await?
            .ok_or(CommerceError::OrderNotFound)?;
        if let Some(channel) = self.channel(order.channel) {
            channel.check_refund_no(&input.refund_no)?;
        }
        // Validate against the current amounts before anything is written.
        let amount = plan_refund(
            order.status,
            order.total_fen,
            order.refunded_fen.checked_add(order.refunding_fen)?,
            input.amount_fen,
        )?;
        let now = self.now();
        let refund = RefundDoc {
            refund_no: input.refund_no.clone(),
            order_id: order.id.clone(),
            out_trade_no: order.out_trade_no.clone(),
            owner: order.owner.clone(),
            channel: order.channel,
            amount_fen: amount,
            reason: input.reason.clone(),
            status: RefundState::Processing,
            reserved: false,
            requested_by: requested_by.to_owned(),
            created_at: now,
            attempted_at: 0,
            settled_at: None,
            provider_refund_id: None,
            last_error: None,
            marked: true,
            order_applied: true,
        };
        match self.store.insert_as(c::REFUNDS, &refund).await {
            Ok(_) => {}
            Err(StoreError::DuplicateKey { .. }) => {
                let existing = self
                    .store
                    .get_as::<RefundDoc>(c::REFUNDS, &input.refund_no)
                    .await?
                    .ok_or(CommerceError::OrderNotFound)?;
                return self.same_refund(existing, &input);
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(order = %order.id, refund = %refund.refund_no, amount = amount.get(), "refund requested");
        self.finish_reservation(refund).await
    }

    /// The writes of a refund request after its document: reserve the amount on the order
    /// (once, by the order's mark), record `reserved`, ask the provider. Each step can be
    /// repeated, so a request that stopped anywhere is finished by repeating the refund number
    /// or by reconciliation. A refund whose amount can no longer be reserved never existed.
    async fn finish_reservation(&self, refund: RefundDoc) -> Result<RefundDoc, CommerceError> {
        if let Err(e) = self
            .reserve_refund(
                &refund.order_id,
                &refund.refund_no,
                refund.amount_fen,
                Some(refund.amount_fen),
            )
            .await
        {
            if matches!(e, CommerceError::Refund(_) | CommerceError::OrderNotFound) {
                // Not reserved (no mark on the order): the refund never existed.
                self.store
                    .delete_one(
                        c::REFUNDS,
                        &Filter::id(refund.refund_no.as_str()).and(Filter::eq("reserved", false)),
                    )
                    .await?;
            }
            return Err(e);
        }
        self.store
            .update_one(
                c::REFUNDS,
                &Filter::id(refund.refund_no.as_str()),
                &Update::new().set("reserved", true),
                UpdateOptions::default(),
            )
            .await?;
        self.submit_refund(&refund).await
    }

    /// Reconciliation: finishes refund requests that stopped before `reserved` was recorded,
    /// and final refunds whose order did not follow yet, older than `before`. Returns how
    /// many were finished and how many failed.
    pub(crate) async fn recover_refunds(
        &self,
        before: i64,
        limit: u64,
    ) -> Result<(u32, u32), CommerceError> {
        let (mut done, mut failed) = (0, 0);
        let half_requested: Vec<RefundDoc> = self
            .store
            .find_as(
                c::REFUNDS,
                &Filter::eq("status", "processing")
                    .and(Filter::eq("reserved", false))
                    .and(Filter::eq("marked", true))
                    .and(Filter::lt("createdAt", before)),
                &FindOptions::new().sort_asc("createdAt").limit(limit),
            )
            .await?;
        for refund in half_requested {
            let no = refund.refund_no.clone();
            match self.finish_reservation(refund).await {
                Ok(_) => done += 1,
                Err(e) => {
                    failed += 1;
                    tracing::warn!(refund = %no, error = %e, "reconcile: half-done refund");
                }
            }
        }
        let half_settled: Vec<RefundDoc> = self
            .store
            .find_as(
                c::REFUNDS,
                &Filter::eq("orderApplied", false).and(Filter::lt("settledAt", before)),
                &FindOptions::new().sort_asc("settledAt").limit(limit),
            )
            .await?;
        for refund in half_settled {
            match self.apply_refund_to_order(&refund).await {
                Ok(()) => done += 1,
                Err(e) => {
                    failed += 1;
                    tracing::warn!(refund = %refund.refund_no, error = %e, "reconcile: settled refund");
                }
            }
        }
        Ok((done, failed))
    }

    fn same_refund(
        &self,
        existing: RefundDoc,
        input: &RefundInput,
    ) -> Result<RefundDoc, CommerceError> {
        let same_amount = input.amount_fen.is_none_or(|a| a == existing.amount_fen);
        if existing.order_id == input.order_id && same_amount {
            Ok(existing)
        } else {
            Err(CommerceError::Conflict(
                "refundNo was already used for another refund".into(),
            ))
        }
    }

    /// Adds `amount` to the order's refunds in flight and moves it to `refunding`, with the
    /// amounts read as the condition (so two refunds cannot together exceed the total).
    /// The order's mark of `refund_no` is set in the same write, and a marked refund is
    /// never reserved again (the mark says it already was).
    async fn reserve_refund(
        &self,
        order_id: &str,
        refund_no: &str,
        amount: Fen,
        requested: Option<Fen>,
    ) -> Result<(), CommerceError> {
        let mark = refund_mark(refund_no);
        for _ in 0..ORDER_RETRIES {
            if self
                .store
                .find_one(
                    c::ORDERS,
                    &Filter::id(order_id).and(Filter::exists(mark.as_str(), true)),
                )
                .await?
                .is_some()
            {
                return Ok(());
            }
            let order: OrderDoc = self
                .store
                .get_as(c::ORDERS, order_id)
                .await?
                .ok_or(CommerceError::OrderNotFound)?;
            let committed = order.refunded_fen.checked_add(order.refunding_fen)?;
            plan_refund(
                order.status,
                order.total_fen,
                committed,
                Some(requested.unwrap_or(amount)),
            )?;
            let mut from: Vec<&str> = OrderStatus::Refunding
                .allowed_from()
                .iter()
                .map(|s| s.as_str())
                .collect();
            from.push(OrderStatus::Refunding.as_str());
            let filter = Filter::id(order_id)
                .and(Filter::is_in("status", from))
                .and(Filter::eq("refundedFen", order.refunded_fen.get()))
                .and(Filter::eq("refundingFen", order.refunding_fen.get()))
                .and(Filter::exists(mark.as_str(), false));
            let update = Update::new()
                .set("status", OrderStatus::Refunding.as_str())
                .inc("refundingFen", amount.get())
                .set(mark.as_str(), HELD);
            if self
                .store
                .update_one(c::ORDERS, &filter, &update, UpdateOptions::default())
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(CommerceError::Conflict(
            "the order is changing; try the refund again".into(),
        ))
    }

    /// Sends (or re-sends: the refund number makes it idempotent) a refund to its provider and
    /// records what it says.
    pub(crate) async fn submit_refund(
        &self,
        refund: &RefundDoc,
    ) -> Result<RefundDoc, CommerceError> {
        let now = self.now();
        let order: OrderDoc = self
            .store
            .get_as(c::ORDERS, &refund.order_id)
            .await?
            .ok_or(CommerceError::OrderNotFound)?;
        let answer = self
            .require_channel(refund.channel)?
            .refund(&order, refund)
            .await?;
        let result: Result<(Option<RefundState>, Option<String>), CommerceError> = match answer {
            RefundAnswer::Answered {
                state,
                provider_refund_id,
            } => Ok((state, provider_refund_id)),
            RefundAnswer::Retry(e) => Err(e),
            RefundAnswer::Refused(message) => {
                self.note_refund_error(&refund.refund_no, &message).await?;
                Ok((Some(RefundState::Abnormal), None))
            }
        };
        self.store
            .update_one(
                c::REFUNDS,
                &Filter::id(refund.refund_no.as_str()),
                &Update::new().set("attemptedAt", now),
                UpdateOptions::default(),
            )
            .await?;
        match result {
            Ok((Some(state), provider_id)) if state.is_final() => {
                self.settle_refund(&refund.refund_no, state, provider_id.as_deref())
                    .await?;
            }
            Ok((_, Some(id))) => {
                self.store
                    .update_one(
                        c::REFUNDS,
                        &Filter::id(refund.refund_no.as_str()),
                        &Update::new().set("providerRefundId", id),
                        UpdateOptions::default(),
                    )
                    .await?;
            }
            Ok(_) => {}
            // Left processing: reconciliation retries it with the same number.
            Err(e) => {
                tracing::warn!(refund = %refund.refund_no, error = %e, "refund not submitted yet");
                self.note_refund_error(&refund.refund_no, &e.to_string())
                    .await?;
            }
        }
        Ok(self
            .store
            .get_as::<RefundDoc>(c::REFUNDS, &refund.refund_no)
            .await?
            .unwrap_or_else(|| refund.clone()))
    }

    async fn note_refund_error(&self, refund_no: &str, message: &str) -> Result<(), CommerceError> {
        self.store
            .update_one(
                c::REFUNDS,
                &Filter::id(refund_no),
                &Update::new().set("lastError", message),
                UpdateOptions::default(),
            )
            .await?;
        Ok(())
    }

    /// Moves a refund to its final state once and updates the order's amounts and status.
    /// A refund that ended `abnormal` may still become `success` or `closed` (WeChat Pay
    /// retries an abnormal refund, and a verified later answer is the truth). Returns false
    /// when the refund was already in that state, final otherwise, or unknown.
    pub async fn settle_refund(
        &self,
        refund_no: &str,
        state: RefundState,
        provider_refund_id: Option<&str>,
    ) -> Result<bool, CommerceError> {
        if !state.is_final() {
            return Ok(false);
        }
        let Some(current) = self
            .store
            .get_as::<RefundDoc>(c::REFUNDS, refund_no)
            .await?
        else {
            return Ok(false);
        };
        let movable = match current.status {
            RefundState::Processing => true,
            // Refunds from before the order marks freed their amount without a trace of it.
            RefundState::Abnormal => state != RefundState::Abnormal && current.marked,
            RefundState::Success | RefundState::Closed => false,
        };
        if !movable {
            return Ok(false);
        }
        let now = self.now();
        let mut update = Update::new()
            .set("status", serde_json::to_value(state).unwrap_or_default())
            .set("settledAt", now)
            .set("orderApplied", false);
        if let Some(id) = provider_refund_id {
            update = update.set("providerRefundId", id);
        }
        let from = serde_json::to_value(current.status).unwrap_or_default();
        let Some(refund): Option<RefundDoc> = self
            .store
            .update_one_as(
                c::REFUNDS,
                &Filter::id(refund_no).and(Filter::eq("status", from)),
                &update,
                UpdateOptions::default(),
            )
            .await?
        else {
            return Ok(false);
        };
        tracing::info!(refund = %refund_no, from = ?current.status, state = ?state, "refund settled");
        self.apply_refund_to_order(&refund).await?;
        if state == RefundState::Success {
            // The buyer hears about it through the Official Account when they follow it.
            let notice = crate::funnel::notices::Notice::refund_settled(
                refund_no,
                &refund.order_id,
                &refund.owner,
                refund.amount_fen.get(),
            );
            if let Err(e) = crate::funnel::notices::notify(self.store.as_ref(), &notice, now).await
            {
                tracing::warn!(refund = %refund_no, error = %e, "refund notice not recorded");
            }
        }
        Ok(true)
    }

    /// Makes the order's amounts follow a final refund, once (the order's mark moves
    /// `held` → `refunded`/`released`, `released` → `refunded`, or absent → final for a refund
    /// never reserved: made in the merchant console, or a request that stopped before
    /// reserving), then its status, then records `orderApplied`.
    async fn apply_refund_to_order(&self, refund: &RefundDoc) -> Result<(), CommerceError> {
        let amount = refund.amount_fen.get();
        let success = refund.status == RefundState::Success;
        let order: Option<OrderDoc> = if refund.marked {
            let mark = refund_mark(&refund.refund_no);
            let target = if success { REFUNDED } else { RELEASED };
            let held = Update::new()
                .inc("refundingFen", -amount)
                .set(mark.as_str(), target);
            let refunded = |u: Update| {
                if success {
                    u.inc("refundedFen", amount)
                } else {
                    u
                }
            };
            let mut steps = vec![
                (Filter::eq(mark.as_str(), HELD), refunded(held)),
                (
                    Filter::exists(mark.as_str(), false),
                    refunded(Update::new().set(mark.as_str(), target)),
                ),
            ];
            if success {
                steps.push((
                    Filter::eq(mark.as_str(), RELEASED),
                    Update::new()
                        .inc("refundedFen", amount)
                        .set(mark.as_str(), REFUNDED),
                ));
            }
            let mut moved = None;
            for (when, update) in steps {
                let filter = Filter::id(refund.order_id.as_str()).and(when);
                moved = self
                    .store
                    .update_one_as(c::ORDERS, &filter, &update, UpdateOptions::default())
                    .await?;
                if moved.is_some() {
                    break;
                }
            }
            match moved {
                Some(order) => Some(order),
                // Already applied (a repeat after a crash): only the status may be left.
                None => self.store.get_as(c::ORDERS, &refund.order_id).await?,
            }
        } else {
            // Refunds recorded before the marks: settled once by the refund's own transition.
            let mut money = Update::new().inc("refundingFen", -amount);
            if success {
                money = money.inc("refundedFen", amount);
            }
            self.store
                .update_one_as(
                    c::ORDERS,
                    &Filter::id(refund.order_id.as_str()),
                    &money,
                    UpdateOptions::default(),
                )
                .await?
        };
        if let Some(order) = order {
            self.settle_order_status(order).await?;
        }
        // As for `order.paid`: `orderApplied` is recorded only once the event is stored, so
        // reconcile (which finishes refunds not yet applied) publishes a lost one again.
        let event = Draft::new(
            kinds::REFUND_SETTLED,
            format!("{}:{}", kinds::REFUND_SETTLED, refund.refund_no),
        )
        .for_user(refund.owner.as_str())
        .order(refund.order_id.as_str())
        .data(json!({
            "orderId": refund.order_id,
            "refundNo": refund.refund_no,
            "amountFen": amount,
            "status": refund.status,
        }));
        if let Err(e) = self.events.publish(event).await {
            tracing::warn!(refund = %refund.refund_no, error = %e, "refund.settled not published; reconcile retries");
            return Ok(());
        }
        self.store
            .update_one(
                c::REFUNDS,
                &Filter::id(refund.refund_no.as_str()),
                &Update::new().set("orderApplied", true),
                UpdateOptions::default(),
            )
            .await?;
        Ok(())
    }

    /// Records a verified successful refund wemint did not ask for (made in the merchant
    /// console) against its order, so its money counts and a full refund takes the grants
    /// back. Returns false when no order has that merchant number.
    pub(crate) async fn record_outside_refund(
        &self,
        out_trade_no: &str,
        refund_no: &str,
        amount: Fen,
        provider_refund_id: Option<&str>,
    ) -> Result<bool, CommerceError> {
        let Some(order): Option<OrderDoc> = self
            .store
            .find_one_as(c::ORDERS, &Filter::eq("outTradeNo", out_trade_no))
            .await?
        else {
            tracing::error!(refund = %refund_no, out_trade_no, "refund of an unknown order");
            return Ok(false);
        };
        let refund = RefundDoc {
            refund_no: refund_no.to_owned(),
            order_id: order.id.clone(),
            out_trade_no: order.out_trade_no.clone(),
            owner: order.owner.clone(),
            channel: order.channel,
            amount_fen: amount,
            reason: None,
            status: RefundState::Processing,
            reserved: false,
            requested_by: OUTSIDE.to_owned(),
            created_at: self.now(),
            attempted_at: self.now(),
            settled_at: None,
            provider_refund_id: provider_refund_id.map(str::to_owned),
            last_error: None,
            marked: true,
            order_applied: true,
        };
        match self.store.insert_as(c::REFUNDS, &refund).await {
            Ok(_) | Err(StoreError::DuplicateKey { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::warn!(order = %order.id, refund = %refund_no, amount = amount.get(),
            "refund made outside wemint recorded");
        self.settle_refund(refund_no, RefundState::Success, provider_refund_id)
            .await
    }

    /// Sets the status the order's refund amounts call for (conditional on those amounts).
    /// Besides `refunding`, a paid order with no refund in flight moves too: a late success
    /// of an abnormal refund, or a refund made outside wemint, lands there.
    async fn settle_order_status(&self, mut order: OrderDoc) -> Result<(), CommerceError> {
        use OrderStatus::*;
        for _ in 0..ORDER_RETRIES {
            if !matches!(
                order.status,
                Refunding | Paid | Fulfilled | PartiallyRefunded
            ) {
                return Ok(());
            }
            let target = status_after_refund_settled(
                order.total_fen,
                order.refunded_fen,
                order.refunding_fen,
            );
            let settles = match order.status {
                Refunding => target != Refunding,
                // Nothing refunded: a paid order stays as it is.
                _ => target != order.status && matches!(target, Refunded | PartiallyRefunded),
            };
            if !settles {
                return Ok(());
            }
            let filter = Filter::id(order.id.as_str())
                .and(Filter::eq("status", order.status.as_str()))
                .and(Filter::eq("refundedFen", order.refunded_fen.get()))
                .and(Filter::eq("refundingFen", order.refunding_fen.get()));
            if let Some(settled) = self
                .store
                .update_one_as::<OrderDoc>(
                    c::ORDERS,
                    &filter,
                    &Update::new().set("status", target.as_str()),
                    UpdateOptions::default(),
                )
                .await?
            {
                if target == OrderStatus::Refunded
                    && let Err(e) = self.revoke_grants(&settled).await
                {
                    // The reconciliation timer finishes it (`grantsRevoked` is still false).
                    tracing::warn!(order = %settled.id, error = %e, "taking back grants failed");
                }
                return Ok(());
            }
            match self.store.get_as::<OrderDoc>(c::ORDERS, &order.id).await? {
                Some(o) => order = o,
                None => return Ok(()),
            }
        }
        Ok(())
    }
}
