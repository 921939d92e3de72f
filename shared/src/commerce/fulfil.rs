//! Verified payment → paid (exactly once) → grants → fulfilled. The one path every payment
//! source goes through: each channel adapter turns its notifications, pushes and query
//! answers into an [`ObservedPayment`], checked here against the order.

use serde_json::json;

use super::Commerce;
use super::channel::{Observation, ObservedPayment};
use super::error::CommerceError;
use super::model::{OrderDoc, collections as c, kind_name};
use super::orders::status_in;
use crate::domain::catalog::{Channel, ProductKind};
use crate::domain::order::{
    ExpectedPayment, ObservedPayment as SeenPayment, OrderLine, OrderStatus, check_payment,
};
use crate::domain::subscription::Plan;
use crate::events::{Draft, kinds};
use crate::store::{Filter, StoreError, Update, UpdateOptions};
use crate::subscriptions;

/// What a verified payment did to its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// This call moved the order to paid; grants applied.
    Applied {
        /// The order id.
        order_id: String,
    },
    /// The order was already paid; grants were (re)checked, nothing applied twice.
    AlreadyPaid {
        /// The order id.
        order_id: String,
    },
    /// The payment does not match the order: held for review, nothing granted.
    Review {
        /// The order id.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// The provider says the order is not paid (nothing to do).
    NotPaid,
    /// No order has this merchant number.
    UnknownOrder,
}

/// What happened to a virtual payment delivery push.
pub type DeliveryOutcome = PaymentOutcome;

pub(super) fn marker(order_id: &str) -> String {
    // Path segments cannot start with a digit; order ids can.
    format!("orders.o_{order_id}")
}

impl Commerce {
    /// Applies what a channel observed about an order's payment (paid or not) and records
    /// the event in `payment_events` (unique id).
    pub(crate) async fn apply_observation(
        &self,
        channel: Channel,
        observation: &Observation,
    ) -> Result<PaymentOutcome, CommerceError> {
        let outcome = match &observation.payment {
            None => PaymentOutcome::NotPaid,
            Some(payment) => {
                self.apply_observed(&observation.out_trade_no, channel, payment)
                    .await?
            }
        };
        // A redelivery for an order we do not have changes nothing: once its event is
        // recorded, it is answered from reads alone (no write, so it costs no commit).
        if outcome == PaymentOutcome::UnknownOrder
            && self
                .store
                .get(c::PAYMENT_EVENTS, &observation.event_id)
                .await?
                .is_some()
        {
            return Ok(outcome);
        }
        self.record_event(
            &observation.event_id,
            &observation.source,
            &observation.out_trade_no,
            &outcome,
        )
        .await?;
        Ok(outcome)
    }

    /// Checks a verified payment against its order; a match moves the order to paid (once)
    /// and fulfils it, anything else holds it for review.
    pub(super) async fn apply_observed(
        &self,
        out_trade_no: &str,
        channel: Channel,
        observed: &ObservedPayment,
    ) -> Result<PaymentOutcome, CommerceError> {
        let Some(order) = self
            .store
            .find_one_as::<OrderDoc>(c::ORDERS, &Filter::eq("outTradeNo", out_trade_no))
            .await?
        else {
            return Ok(PaymentOutcome::UnknownOrder);
        };
        if order.channel != channel {
            return self
                .hold_for_review(&order, "paid through another channel")
                .await;
        }
        let adapter = self.channel(channel);
        if let Some(env) = observed.env
            && let Some(reason) = adapter.and_then(|a| a.foreign_env(env))
        {
            return self.hold_for_review(&order, reason).await;
        }
        // A payment naming a merchant account must name the configured one.
        let mchid = observed
            .mchid
            .as_ref()
            .map(|_| adapter.and_then(|a| a.merchant()).unwrap_or_default());
        let Some(total) = observed.total else {
            return self
                .hold_for_review(&order, "payment without an amount")
                .await;
        };
        let expected = ExpectedPayment {
            mchid,
            appid: &order.appid,
            total: order.total_fen,
            owner_openid: &order.owner,
        };
        let seen = SeenPayment {
            mchid: observed.mchid.as_deref().unwrap_or_default(),
            appid: &observed.appid,
            total,
            currency: &observed.currency,
            payer_openid: &observed.payer,
        };
        if let Err(mismatch) = check_payment(&expected, &seen) {
            tracing::warn!(order = %order.id, reason = %mismatch, "payment does not match order");
            return self.hold_for_review(&order, &mismatch.to_string()).await;
        }

        let paid_at = observed.paid_at.unwrap_or_else(|| self.now());
        let mut update = Update::new()
            .set("status", OrderStatus::Paid.as_str())
            .set("paidAt", paid_at);
        if let Some(tx) = &observed.transaction_id {
            update = update.set("transactionId", tx.as_str());
        }
        let won: Option<OrderDoc> = self
            .store
            .update_one_as(
                c::ORDERS,
                &Filter::id(order.id.as_str()).and(status_in(OrderStatus::Paid)),
                &update,
                UpdateOptions::default(),
            )
            .await?;
        match won {
            Some(paid) => {
                tracing::info!(order = %paid.id, total = paid.total_fen.get(), "order paid");
                if paid.stock_released {
                    self.retake_stock(&paid).await?;
                }
                self.fulfil(&paid).await?;
                Ok(PaymentOutcome::Applied { order_id: paid.id })
            }
            None => {
                // Someone else moved it first. If it is still `paid`, that one may have
                // stopped before granting: finishing is safe because grants are idempotent.
                let current: Option<OrderDoc> = self.store.get_as(c::ORDERS, &order.id).await?;
                if let Some(current) = current
                    && current.status == OrderStatus::Paid
                {
                    self.fulfil(&current).await?;
                }
                Ok(PaymentOutcome::AlreadyPaid { order_id: order.id })
            }
        }
    }

    /// Moves an unpaid order to `review` (nothing granted). A paid order is left alone: the
    /// odd payment is only recorded.
    pub(super) async fn hold_for_review(
        &self,
        order: &OrderDoc,
        reason: &str,
    ) -> Result<PaymentOutcome, CommerceError> {
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()).and(status_in(OrderStatus::Review)),
                &Update::new()
                    .set("status", OrderStatus::Review.as_str())
                    .set("reviewReason", reason),
                UpdateOptions::default(),
            )
            .await?;
        Ok(PaymentOutcome::Review {
            order_id: order.id.clone(),
            reason: reason.to_owned(),
        })
    }

    /// Applies the grants of a paid order, then moves it to fulfilled. Safe to call any number
    /// of times, concurrently.
    pub(crate) async fn fulfil(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        let paid_at = order.paid_at.unwrap_or_else(|| self.now());
        if let Some(terms) = &order.upgrade {
            if let Err(reason) = self.grant_upgrade(order, terms, paid_at).await? {
                // Paid for something that can no longer be given: the money goes back.
                return self.refund_unfulfilled(order, &reason).await;
            }
        } else {
            for line in &order.items {
                self.grant(order, line, paid_at).await?;
            }
        }
        // The event before `fulfilled`: an order is fulfilled only once its `order.paid` is in
        // the stream. When the stream cannot be written the money path goes on (the payment
        // is applied and acknowledged) and the order stays `paid`, where reconcile finishes
        // it, publishing again (once: the event's key is the order).
        let event = Draft::new(
            kinds::ORDER_PAID,
            format!("{}:{}", kinds::ORDER_PAID, order.id),
        )
        .for_user(order.owner.as_str())
        .order(order.id.as_str())
        .data(json!({
            "orderId": order.id,
            "status": OrderStatus::Paid.as_str(),
            "totalFen": order.total_fen.get(),
            "paidAt": paid_at,
        }));
        if let Err(e) = self.events.publish(event).await {
            tracing::warn!(order = %order.id, error = %e, "order.paid not published; reconcile finishes the order");
            return Ok(());
        }
        // Physical goods are fulfilled when they ship, not when they are paid.
        if self.await_shipment(order, paid_at).await? {
            return Ok(());
        }
        let now = self.now();
        let mut update = Update::new()
            .set("status", OrderStatus::Fulfilled.as_str())
            .set("fulfilledAt", now);
        if let Some(shipment) = self.virtual_shipment(order, now)? {
            // Recorded by the one write that fulfils the order (the status filter below).
            update = update.set("shipping", shipment);
        }
        // Only a payment is finished here: a refund in flight is not overwritten.
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str())
                    .and(Filter::eq("status", OrderStatus::Paid.as_str())),
                &update,
                UpdateOptions::default(),
            )
            .await?;
        Ok(())
    }

    async fn grant(
        &self,
        order: &OrderDoc,
        line: &OrderLine,
        paid_at: i64,
    ) -> Result<(), CommerceError> {
        match &line.kind {
            // Shipped by the merchant: `shipping.state = awaiting` puts it in the queue.
            ProductKind::Physical => Ok(()),
            ProductKind::ContentUnlock { content } => {
                let update = Update::new()
                    .set_on_insert("openid", order.owner.as_str())
                    .set_on_insert("sku", line.sku.as_str())
                    .set_on_insert("kind", kind_name(&line.kind))
                    .set_on_insert("content", content.as_str())
                    .set_on_insert("grantedAt", paid_at)
                    .set(marker(&order.id), paid_at)
                    .unset("revokedAt");
                self.upsert_once(&format!("{}:{}", order.owner, line.sku), &order.id, update)
                    .await
            }
            ProductKind::Coins { amount } => {
                let coins = amount.saturating_mul(i64::from(line.quantity));
                let update = Update::new()
                    .set_on_insert("openid", order.owner.as_str())
                    .set_on_insert("sku", "coins")
                    .set_on_insert("kind", "coins")
                    .set_on_insert("grantedAt", paid_at)
                    .inc("balance", coins)
                    .set(marker(&order.id), paid_at);
                self.upsert_once(&format!("{}:coins", order.owner), &order.id, update)
                    .await
            }
            ProductKind::Membership { plan } => {
                let until = self
                    .renew(&order.owner, plan, order, line.quantity, paid_at)
                    .await?;
                self.record_membership(order, line, plan, until, paid_at)
                    .await
            }
            ProductKind::TenantPlan { plan } => {
                let tenant = order
                    .tenant
                    .as_deref()
                    .ok_or(CommerceError::TenantRequired)?;
                let subscriber = format!("tenant:{tenant}");
                self.renew(&subscriber, plan, order, line.quantity, paid_at)
                    .await?;
                match self.plan(plan).await? {
                    Some(plan) => self.set_tenant_plan(tenant, &plan).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// Records the membership entitlement `<openid>:<sku>` with the paid time's end, once
    /// per order.
    pub(super) async fn record_membership(
        &self,
        order: &OrderDoc,
        line: &OrderLine,
        plan: &str,
        until: i64,
        paid_at: i64,
    ) -> Result<(), CommerceError> {
        let update = Update::new()
            .set_on_insert("openid", order.owner.as_str())
            .set_on_insert("sku", line.sku.as_str())
            .set_on_insert("kind", kind_name(&line.kind))
            .set_on_insert("plan", plan)
            .set_on_insert("grantedAt", paid_at)
            .set(marker(&order.id), paid_at)
            .set("expiresAt", until)
            .unset("revokedAt");
        self.upsert_once(&format!("{}:{}", order.owner, line.sku), &order.id, update)
            .await
    }

    /// Gives the tenant the plan and its seats (what inviting members is checked against).
    pub(super) async fn set_tenant_plan(
        &self,
        tenant: &str,
        plan: &Plan,
    ) -> Result<(), CommerceError> {
        match crate::tenancy::Tenancy::new(self.store.clone())
            .set_plan(tenant, Some(plan.id.as_str()), plan.seats)
            .await
        {
            Ok(_) => Ok(()),
            Err(crate::tenancy::TenancyError::Store(e)) => Err(e.into()),
            Err(e) => {
                tracing::warn!(tenant, error = %e, "tenant plan paid for an unknown tenant");
                Ok(())
            }
        }
    }

    /// Upserts an entitlement document unless it already records `order_id`.
    async fn upsert_once(
        &self,
        id: &str,
        order_id: &str,
        update: Update,
    ) -> Result<(), CommerceError> {
        let filter = Filter::id(id).and(Filter::exists(marker(order_id), false));
        match self
            .store
            .update_one(c::ENTITLEMENTS, &filter, &update, UpdateOptions::upsert())
            .await
        {
            // No match and the insert collides: the document exists and already has the
            // order, i.e. this grant was applied before.
            Ok(_) | Err(StoreError::DuplicateKey { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds `periods` paid periods of `plan_id` to the subscription of `subscriber` (an
    /// openid, or `tenant:<id>`), once per order. Returns the new period end.
    async fn renew(
        &self,
        subject: &str,
        plan_id: &str,
        order: &OrderDoc,
        periods: u32,
        paid_at: i64,
    ) -> Result<i64, CommerceError> {
        let plan = self.plan(plan_id).await?.ok_or_else(|| {
            CommerceError::Store(StoreError::InvalidDocument(format!(
                "plan {plan_id} of order {} is not in the catalog",
                order.id
            )))
        })?;
        Ok(subscriptions::renew(&self.store, subject, &plan, &order.id, periods, paid_at).await?)
    }

    /// Records a verified payment event (unique id; a redelivery keeps the first record).
    pub(crate) async fn record_event(
        &self,
        event_id: &str,
        source: &str,
        out_trade_no: &str,
        outcome: &PaymentOutcome,
    ) -> Result<(), CommerceError> {
        let (result, order_id, reason) = match outcome {
            PaymentOutcome::Applied { order_id } => ("applied", Some(order_id), None),
            PaymentOutcome::AlreadyPaid { order_id } => ("duplicate", Some(order_id), None),
            PaymentOutcome::Review { order_id, reason } => ("review", Some(order_id), Some(reason)),
            PaymentOutcome::NotPaid => ("not_paid", None, None),
            PaymentOutcome::UnknownOrder => ("unknown_order", None, None),
        };
        let doc = json!({
            "_id": event_id,
            "eventId": event_id,
            "source": source,
            "outTradeNo": out_trade_no,
            "orderId": order_id,
            "result": result,
            "reason": reason,
            "receivedAt": self.now(),
        });
        match self.store.insert(c::PAYMENT_EVENTS, doc).await {
            Ok(_) => Ok(()),
            Err(StoreError::DuplicateKey { .. }) => {
                // A redelivery (or a concurrent copy): count it; the copy that applied the
                // payment writes its result, whichever copy was recorded first.
                let mut update = Update::new().inc("deliveries", 1);
                if matches!(
                    outcome,
                    PaymentOutcome::Applied { .. } | PaymentOutcome::Review { .. }
                ) {
                    update = update
                        .set("result", result)
                        .set("orderId", json!(order_id))
                        .set("reason", json!(reason));
                }
                self.store
                    .update_one(
                        c::PAYMENT_EVENTS,
                        &Filter::id(event_id),
                        &update,
                        UpdateOptions::default(),
                    )
                    .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
