//! Refunds: admin request (idempotent by refund number), provider call, final state from the
//! notification, a query or the reconciliation retry.

use serde::Deserialize;

use super::Commerce;
use super::channel::RefundAnswer;
use super::error::CommerceError;
use super::model::{OrderDoc, RefundDoc, RefundState, collections as c};
use crate::domain::money::Fen;
use crate::domain::order::{OrderStatus, plan_refund, status_after_refund_settled};
use crate::identity::Caller;
use crate::store::{Filter, StoreError, Update, UpdateOptions};

/// How many times an optimistic order update is retried under contention.
const ORDER_RETRIES: usize = 8;

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
            return self.same_refund(existing, &input);
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
        if let Err(e) = self
            .reserve_refund(&order.id, amount, input.amount_fen)
            .await
        {
            // Not reserved: the refund never existed.
            self.store
                .delete_one(
                    c::REFUNDS,
                    &Filter::id(input.refund_no.as_str()).and(Filter::eq("reserved", false)),
                )
                .await?;
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
        tracing::info!(order = %order.id, refund = %refund.refund_no, amount = amount.get(), "refund requested");
        self.submit_refund(&refund).await
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
    async fn reserve_refund(
        &self,
        order_id: &str,
        amount: Fen,
        requested: Option<Fen>,
    ) -> Result<(), CommerceError> {
        for _ in 0..ORDER_RETRIES {
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
                .and(Filter::eq("refundingFen", order.refunding_fen.get()));
            let update = Update::new()
                .set("status", OrderStatus::Refunding.as_str())
                .inc("refundingFen", amount.get());
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
    /// Returns false when the refund was already final (or unknown).
    pub async fn settle_refund(
        &self,
        refund_no: &str,
        state: RefundState,
        provider_refund_id: Option<&str>,
    ) -> Result<bool, CommerceError> {
        if !state.is_final() {
            return Ok(false);
        }
        let now = self.now();
        let mut update = Update::new()
            .set("status", serde_json::to_value(state).unwrap_or_default())
            .set("settledAt", now);
        if let Some(id) = provider_refund_id {
            update = update.set("providerRefundId", id);
        }
        let Some(refund): Option<RefundDoc> = self
            .store
            .update_one_as(
                c::REFUNDS,
                &Filter::id(refund_no).and(Filter::eq("status", "processing")),
                &update,
                UpdateOptions::default(),
            )
            .await?
        else {
            return Ok(false);
        };
        let amount = refund.amount_fen.get();
        let mut money = Update::new().inc("refundingFen", -amount);
        if state == RefundState::Success {
            money = money.inc("refundedFen", amount);
        }
        let order: Option<OrderDoc> = self
            .store
            .update_one_as(
                c::ORDERS,
                &Filter::id(refund.order_id.as_str()),
                &money,
                UpdateOptions::default(),
            )
            .await?;
        tracing::info!(refund = %refund_no, state = ?state, "refund settled");
        if let Some(order) = order {
            self.settle_order_status(order).await?;
        }
        Ok(true)
    }

    /// Sets the status the order's refund amounts call for (conditional on those amounts).
    async fn settle_order_status(&self, mut order: OrderDoc) -> Result<(), CommerceError> {
        for _ in 0..ORDER_RETRIES {
            if order.status != OrderStatus::Refunding {
                return Ok(());
            }
            let target = status_after_refund_settled(
                order.total_fen,
                order.refunded_fen,
                order.refunding_fen,
            );
            if target == OrderStatus::Refunding {
                return Ok(());
            }
            let filter = Filter::id(order.id.as_str())
                .and(Filter::eq("status", OrderStatus::Refunding.as_str()))
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
