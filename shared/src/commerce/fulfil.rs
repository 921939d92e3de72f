//! Verified payment → paid (exactly once) → grants → fulfilled. The one path every payment
//! source goes through: v3 notifications, order queries, virtual payment delivery pushes.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::Commerce;
use super::error::CommerceError;
use super::model::{OrderDoc, collections as c, kind_name};
use super::orders::status_in;
use crate::domain::catalog::{Channel, ProductKind};
use crate::domain::money::Fen;
use crate::domain::order::{
    ExpectedPayment, ObservedPayment, OrderLine, OrderStatus, check_payment,
};
use crate::domain::subscription::{Applied, Plan, Subscription};
use crate::pay::v3::{TradeState, Transaction};
use crate::store::{Filter, StoreError, Update, UpdateOptions};

/// How many times an optimistic subscription write is retried under contention.
const SUBSCRIPTION_RETRIES: usize = 8;

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

/// A virtual payment delivery (`xpay_goods_deliver_notify`, after wxPush verified and
/// decrypted the push), in the fields fulfilment checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XpayDelivery {
    /// `OpenId`: the buyer.
    pub openid: String,
    /// `OutTradeNo`: our merchant number.
    pub out_trade_no: String,
    /// `Env`: 0 production, 1 sandbox.
    pub env: i64,
    /// `GoodsInfo.ProductId`.
    pub product_id: String,
    /// `GoodsInfo.Quantity`.
    pub quantity: i64,
    /// `GoodsInfo.ActualPrice`: what was paid for the order, fen.
    pub actual_price: i64,
    /// `WeChatPayInfo.TransactionId` (may be empty).
    pub transaction_id: String,
    /// `WeChatPayInfo.PaidTime` or the push's `CreateTime`, Unix seconds (0: unknown).
    pub paid_time: i64,
}

impl From<&crate::pay::xpay::GoodsDeliverNotify> for XpayDelivery {
    fn from(push: &crate::pay::xpay::GoodsDeliverNotify) -> Self {
        let goods = push.goods_info.as_ref();
        let pay = push.wechat_pay_info.as_ref();
        XpayDelivery {
            openid: push.openid.clone(),
            out_trade_no: push.out_trade_no.clone(),
            env: push.env,
            product_id: goods.map(|g| g.product_id.clone()).unwrap_or_default(),
            quantity: goods.map_or(0, |g| g.quantity),
            actual_price: goods.map_or(-1, |g| g.actual_price),
            transaction_id: pay.map(|p| p.transaction_id.clone()).unwrap_or_default(),
            paid_time: pay
                .map(|p| p.paid_time)
                .filter(|t| *t > 0)
                .unwrap_or(push.create_time),
        }
    }
}

/// A payment as observed by a verified source, normalised.
struct Observed {
    mchid: String,
    appid: String,
    total: Option<Fen>,
    currency: String,
    payer: String,
    transaction_id: Option<String>,
    paid_at: i64,
}

fn rfc3339_to_unix(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

pub(super) fn marker(order_id: &str) -> String {
    // Path segments cannot start with a digit; order ids can.
    format!("orders.o_{order_id}")
}

impl Commerce {
    /// Applies a verified WeChat Pay transaction (from a notification or a query) to its
    /// order. `event_id` is recorded in `payment_events` (unique).
    pub async fn apply_wxpay_transaction(
        &self,
        event_id: &str,
        source: &str,
        tx: &Transaction,
    ) -> Result<PaymentOutcome, CommerceError> {
        let amount = tx.amount.as_ref();
        let outcome = if tx.trade_state != TradeState::Success {
            PaymentOutcome::NotPaid
        } else {
            let observed = Observed {
                mchid: tx.mchid.clone(),
                appid: tx.appid.clone().unwrap_or_default(),
                total: amount.and_then(|a| a.total).and_then(|t| Fen::new(t).ok()),
                currency: amount
                    .and_then(|a| a.currency.clone())
                    .unwrap_or_else(|| "CNY".into()),
                payer: tx
                    .payer
                    .as_ref()
                    .map(|p| p.openid.clone())
                    .unwrap_or_default(),
                transaction_id: tx.transaction_id.clone(),
                paid_at: tx
                    .success_time
                    .as_deref()
                    .and_then(rfc3339_to_unix)
                    .unwrap_or_else(|| self.now()),
            };
            self.apply_observed(&tx.out_trade_no, Channel::Wxpay, &observed)
                .await?
        };
        self.record_event(event_id, source, &tx.out_trade_no, &outcome)
            .await?;
        Ok(outcome)
    }

    /// Fulfils a virtual payment delivery push: the entry wxPush calls for
    /// `xpay_goods_deliver_notify` (after verifying the push). Nothing is granted unless
    /// `query_order` says the order is paid ([`PaymentOutcome::NotPaid`] otherwise): a push
    /// is only a hint, whatever the push mode. Idempotent: the same push delivered again
    /// grants nothing twice. Answer WeChat "delivered" for every outcome but `NotPaid` and
    /// `Err` (a store or provider failure, worth a redelivery).
    pub async fn deliver_xpay(
        &self,
        delivery: &XpayDelivery,
    ) -> Result<DeliveryOutcome, CommerceError> {
        let order: Option<OrderDoc> = self
            .store
            .find_one_as(
                c::ORDERS,
                &Filter::eq("outTradeNo", delivery.out_trade_no.as_str()),
            )
            .await?;
        let outcome = match order {
            None => PaymentOutcome::UnknownOrder,
            Some(order) => {
                let goods_match = order.items.len() == 1
                    && order.items[0].sku == delivery.product_id
                    && i64::from(order.items[0].quantity) == delivery.quantity;
                let env_match = self
                    .xpay
                    .as_ref()
                    .is_none_or(|x| i64::from(x.env().as_i32()) == delivery.env);
                if !goods_match || order.channel != Channel::Xpay {
                    self.hold_for_review(&order, "delivery push names other goods")
                        .await?
                } else if !env_match {
                    // A sandbox payment is not money: it must never grant in production.
                    self.hold_for_review(&order, "delivery push from the other virtual payment environment (sandbox vs production)")
                        .await?
                } else if !self.xpay_confirms_paid(&order).await? {
                    PaymentOutcome::NotPaid
                } else {
                    let observed = Observed {
                        mchid: String::new(),
                        appid: order.appid.clone(),
                        total: Fen::new(delivery.actual_price).ok(),
                        currency: "CNY".into(),
                        payer: delivery.openid.clone(),
                        transaction_id: (!delivery.transaction_id.is_empty())
                            .then(|| delivery.transaction_id.clone()),
                        paid_at: if delivery.paid_time > 0 {
                            delivery.paid_time
                        } else {
                            self.now()
                        },
                    };
                    self.apply_observed(&delivery.out_trade_no, Channel::Xpay, &observed)
                        .await?
                }
            }
        };
        let event_id = format!("xpay:{}", delivery.out_trade_no);
        self.record_event(
            &event_id,
            "xpay_goods_deliver_notify",
            &delivery.out_trade_no,
            &outcome,
        )
        .await?;
        Ok(outcome)
    }

    /// Whether `query_order` says the buyer paid `order`.
    async fn xpay_confirms_paid(&self, order: &OrderDoc) -> Result<bool, CommerceError> {
        let xpay = self
            .xpay
            .as_ref()
            .ok_or(CommerceError::ChannelUnavailable("xpay"))?;
        let state = xpay
            .query(&order.owner, &order.out_trade_no)
            .await
            .map_err(|e| CommerceError::provider(&e, e.retryable))?;
        Ok(state.paid)
    }

    /// Applies a virtual payment `query_order` result that says paid.
    pub(crate) async fn apply_xpay_query(
        &self,
        order: &OrderDoc,
        state: &super::gateway::XpayOrderState,
    ) -> Result<PaymentOutcome, CommerceError> {
        let observed = Observed {
            mchid: String::new(),
            appid: order.appid.clone(),
            total: Fen::new(state.paid_fee).ok(),
            currency: "CNY".into(),
            payer: order.owner.clone(),
            transaction_id: (!state.transaction_id.is_empty())
                .then(|| state.transaction_id.clone()),
            paid_at: if state.paid_time > 0 {
                state.paid_time
            } else {
                self.now()
            },
        };
        let outcome = self
            .apply_observed(&order.out_trade_no, Channel::Xpay, &observed)
            .await?;
        self.record_event(
            &format!("xpay-query:{}", order.out_trade_no),
            "query_order",
            &order.out_trade_no,
            &outcome,
        )
        .await?;
        Ok(outcome)
    }

    async fn apply_observed(
        &self,
        out_trade_no: &str,
        channel: Channel,
        observed: &Observed,
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
        let mchid = match channel {
            Channel::Wxpay => Some(self.mchid().unwrap_or_default()),
            Channel::Xpay => None,
        };
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
        let seen = ObservedPayment {
            mchid: &observed.mchid,
            appid: &observed.appid,
            total,
            currency: &observed.currency,
            payer_openid: &observed.payer,
        };
        if let Err(mismatch) = check_payment(&expected, &seen) {
            tracing::warn!(order = %order.id, reason = %mismatch, "payment does not match order");
            return self.hold_for_review(&order, &mismatch.to_string()).await;
        }

        let mut update = Update::new()
            .set("status", OrderStatus::Paid.as_str())
            .set("paidAt", observed.paid_at);
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
    async fn hold_for_review(
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
        let now = self.now();
        // Only a payment is finished here: a refund in flight is not overwritten.
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str())
                    .and(Filter::eq("status", OrderStatus::Paid.as_str())),
                &Update::new()
                    .set("status", OrderStatus::Fulfilled.as_str())
                    .set("fulfilledAt", now),
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
            // Shipped by the merchant: being paid is what the shipping queue looks for.
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
    /// openid, or `tenant:<id>`), once per order (optimistic concurrency on `version`).
    /// Returns the new period end.
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
        for _ in 0..SUBSCRIPTION_RETRIES {
            let (mut sub, version) = match self.load_subscription(subject).await? {
                Some((sub, version)) => (sub, Some(version)),
                None => (Subscription::start(&plan, paid_at, false), None),
            };
            let plans = self.plans_for(&sub, &plan).await?;
            let lookup = |id: &str| plans.get(id).cloned();
            let mut changed = false;
            for i in 0..periods.max(1) {
                let key = if i == 0 {
                    order.id.clone()
                } else {
                    format!("{}#{}", order.id, i + 1)
                };
                if let Applied::Extended { .. } = sub.apply_renewal(&plan, &key, paid_at, &lookup) {
                    changed = true;
                }
            }
            let until = sub.period_end().unwrap_or(paid_at);
            if !changed {
                return Ok(until);
            }
            let written = self.save_subscription(subject, version, &sub).await?;
            if written {
                tracing::info!(subject, plan = %plan.id, until, order = %order.id, "subscription extended");
                return Ok(until);
            }
        }
        Err(CommerceError::Store(StoreError::Backend(format!(
            "subscription {subject} kept changing; giving up after {SUBSCRIPTION_RETRIES} tries"
        ))))
    }

    /// Writes a subscription: inserts it when `version` is `None`, else replaces its time
    /// and plan fields on condition that the stored `version` is still `version`. Returns
    /// whether it was written (false: someone else wrote first; read again and retry). The
    /// stored `plan` is the plan of the latest covered time.
    pub(super) async fn save_subscription(
        &self,
        subject: &str,
        version: Option<Value>,
        sub: &Subscription,
    ) -> Result<bool, CommerceError> {
        let plan = sub
            .segments
            .last()
            .map_or(sub.renew_plan.as_str(), |s| s.plan.as_str());
        let body =
            serde_json::to_value(sub).map_err(|e| StoreError::InvalidDocument(e.to_string()))?;
        let until = sub.period_end();
        let Some(version) = version else {
            let doc = super::model::new_subscription_doc(subject, sub, plan)
                .map_err(|e| StoreError::InvalidDocument(e.to_string()))?;
            return match self.store.insert(c::SUBSCRIPTIONS, doc).await {
                Ok(_) => Ok(true),
                Err(StoreError::DuplicateKey { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let mut update = Update::new()
            .set("segments", body["segments"].clone())
            .set("renewPlan", body["renewPlan"].clone())
            .set("appliedOrders", body["appliedOrders"].clone())
            .set("revokedOrders", json!(sub.revoked_orders))
            .set("plan", plan)
            .set("periodEndAt", json!(until))
            .inc("version", 1);
        update = match sub.canceled_at {
            Some(at) => update.set("canceledAt", at),
            None => update.unset("canceledAt"),
        };
        Ok(self
            .store
            .update_one(
                c::SUBSCRIPTIONS,
                &Filter::id(subject).and(Filter::eq("version", version)),
                &update,
                UpdateOptions::default(),
            )
            .await?
            .is_some())
    }

    pub(super) async fn plans_for(
        &self,
        sub: &Subscription,
        plan: &Plan,
    ) -> Result<HashMap<String, Plan>, CommerceError> {
        let mut plans = HashMap::new();
        plans.insert(plan.id.clone(), plan.clone());
        for segment in &sub.segments {
            if !plans.contains_key(&segment.plan)
                && let Some(p) = self.plan(&segment.plan).await?
            {
                plans.insert(p.id.clone(), p);
            }
        }
        Ok(plans)
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
