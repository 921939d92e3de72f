//! Refunds: admin request (idempotent by refund number), provider call, final state from the
//! notification, a query or the reconciliation retry.

use serde::Deserialize;

use super::Commerce;
use super::error::CommerceError;
use super::model::{OrderDoc, RefundDoc, RefundState, collections as c};
use super::orders::provider;
use crate::domain::catalog::Channel;
use crate::domain::money::Fen;
use crate::domain::order::{OrderStatus, plan_refund, status_after_refund_settled};
use crate::identity::Caller;
use crate::pay::v3::{RefundOrder, RefundStatus, RefundTarget};
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
        if order.channel == Channel::Xpay
            && !((8..=32).contains(&input.refund_no.len())
                && input
                    .refund_no
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(CommerceError::BadRequest(
                "virtual payment refunds need an 8-32 character refundNo of [0-9A-Za-z_-]".into(),
            ));
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
        let result: Result<(Option<RefundState>, Option<String>), CommerceError> = match refund
            .channel
        {
            Channel::Wxpay => {
                let pay = self
                    .wxpay
                    .as_ref()
                    .ok_or(CommerceError::ChannelUnavailable("wxpay"))?;
                let request = RefundOrder {
                    target: RefundTarget::OutTradeNo(order.out_trade_no.clone()),
                    out_refund_no: refund.refund_no.clone(),
                    refund_fen: refund.amount_fen.get(),
                    total_fen: order.total_fen.get(),
                    reason: refund.reason.clone(),
                    notify_url: None,
                };
                match pay.refund(&request).await {
                    Ok(r) => Ok((refund_state(r.status), Some(r.refund_id))),
                    Err(e) if e.is_retryable() => Err(provider(e)),
                    Err(e) => {
                        // WeChat refused it for good (e.g. not enough balance, bad params).
                        tracing::error!(refund = %refund.refund_no, error = %e, "refund refused");
                        self.note_refund_error(&refund.refund_no, &e.to_string())
                            .await?;
                        Ok((Some(RefundState::Abnormal), None))
                    }
                }
            }
            Channel::Xpay => {
                let xpay = self
                    .xpay
                    .as_ref()
                    .ok_or(CommerceError::ChannelUnavailable("xpay"))?;
                let state = xpay
                    .query(&order.owner, &order.out_trade_no)
                    .await
                    .map_err(|e| CommerceError::provider(&e, e.retryable))?;
                match xpay
                    .refund(
                        &order.owner,
                        &order.out_trade_no,
                        &refund.refund_no,
                        refund.amount_fen.get(),
                        state.left_fee,
                    )
                    .await
                {
                    // xpay refunds have no notification here: accepted means done.
                    Ok(()) => Ok((Some(RefundState::Success), None)),
                    Err(e) if e.retryable => Err(CommerceError::provider(&e, true)),
                    Err(e) => {
                        self.note_refund_error(&refund.refund_no, &e.message)
                            .await?;
                        Ok((Some(RefundState::Abnormal), None))
                    }
                }
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

/// The refund state a v3 status means (`None`: not final yet or unknown).
pub(crate) fn refund_state(status: RefundStatus) -> Option<RefundState> {
    match status {
        RefundStatus::Success => Some(RefundState::Success),
        RefundStatus::Closed => Some(RefundState::Closed),
        RefundStatus::Abnormal => Some(RefundState::Abnormal),
        RefundStatus::Processing | RefundStatus::Unknown => None,
    }
}

impl Commerce {
    /// Applies a verified v3 `REFUND.*` notification: the refund reaches its final state once,
    /// the order's amounts and status follow. Returns whether this call settled it.
    pub async fn apply_refund_notification(
        &self,
        event_id: &str,
        notification: &crate::pay::v3::RefundNotification,
    ) -> Result<bool, CommerceError> {
        let ours = self.mchid() == Some(notification.mchid.as_str());
        let settled = match refund_state(notification.refund_status) {
            Some(state) if ours => {
                self.settle_refund(
                    &notification.out_refund_no,
                    state,
                    Some(&notification.refund_id),
                )
                .await?
            }
            _ => false,
        };
        if !ours {
            tracing::warn!(refund = %notification.out_refund_no, "refund notification for another merchant");
        }
        let doc = serde_json::json!({
            "_id": event_id,
            "eventId": event_id,
            "source": "v3_notify",
            "kind": "refund",
            "outTradeNo": notification.out_trade_no,
            "refundNo": notification.out_refund_no,
            "amountFen": notification.amount.refund,
            "result": if settled { "applied" } else if ours { "duplicate" } else { "foreign_merchant" },
            "receivedAt": self.now(),
        });
        match self.store.insert(c::PAYMENT_EVENTS, doc).await {
            Ok(_) | Err(StoreError::DuplicateKey { .. }) => Ok(settled),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies a verified API v2 payment notification (merchants still on v2).
    pub async fn apply_v2_notification(
        &self,
        notify: &crate::pay::v2::PaymentNotify,
    ) -> Result<super::PaymentOutcome, CommerceError> {
        let tx = crate::pay::v3::Transaction {
            appid: Some(notify.appid.clone()),
            mchid: notify.mch_id.clone(),
            out_trade_no: notify.out_trade_no.clone(),
            transaction_id: Some(notify.transaction_id.clone()),
            trade_type: notify.fields.get("trade_type").cloned(),
            trade_state: crate::pay::v3::TradeState::Success,
            trade_state_desc: None,
            bank_type: notify.fields.get("bank_type").cloned(),
            attach: notify.attach.clone(),
            success_time: v2_time(&notify.time_end),
            payer: Some(crate::pay::v3::models::Payer {
                openid: notify.openid.clone(),
            }),
            amount: Some(crate::pay::v3::models::TransactionAmount {
                total: Some(notify.total_fee),
                payer_total: None,
                currency: Some(
                    notify
                        .fields
                        .get("fee_type")
                        .cloned()
                        .unwrap_or_else(|| "CNY".into()),
                ),
                payer_currency: None,
            }),
        };
        let event_id = format!("v2:{}", notify.transaction_id);
        self.apply_wxpay_transaction(&event_id, "v2_notify", &tx)
            .await
    }
}

/// v2 `time_end` (`yyyyMMddHHmmss`, Beijing time) as RFC 3339.
fn v2_time(time_end: &str) -> Option<String> {
    let d = time_end.as_bytes();
    if d.len() != 14 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let t = time_end;
    Some(format!(
        "{}-{}-{}T{}:{}:{}+08:00",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[8..10],
        &t[10..12],
        &t[12..14]
    ))
}
