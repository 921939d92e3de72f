//! Taking back what a fully refunded order granted.
//!
//! When an order's refunds settle at its full amount (status `refunded`), its grants are
//! undone: a content unlock stops opening the content (unless another order bought it too),
//! coins are debited (never below zero; what was already spent is recorded as a shortfall), a
//! renewal's days come off the end of the paid time (days already used stay used), and an
//! upgrade's remaining window goes back to the plan it came from. Every step is idempotent per
//! order and the order records `grantsRevoked`, so the reconciliation timer finishes a
//! revocation a crash interrupted. Physical goods are the merchant's returns process.

use serde_json::Value;

use super::Commerce;
use super::error::CommerceError;
use super::fulfil::marker;
use super::model::{OrderDoc, SubscriptionScope, collections as c};
use crate::domain::catalog::ProductKind;
use crate::domain::subscription::{Revoked, Subscription};
use crate::store::{Filter, StoreError, Update, UpdateOptions};
use crate::subscriptions;

const RETRIES: usize = 8;

/// The marker recording that `order_id` was taken back from a grant document.
fn revoked_marker(order_id: &str) -> String {
    format!("revoked.o_{order_id}")
}

impl Commerce {
    /// Takes back the grants of a fully refunded order, once.
    pub(crate) async fn revoke_grants(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        if order.grants_revoked {
            return Ok(());
        }
        let now = self.now();
        if let Some(terms) = &order.upgrade {
            let end = self
                .revoke_in_subscription(&terms.subscriber, |sub| {
                    sub.revoke_upgrade(
                        &order.id,
                        &terms.plan,
                        &terms.from_plan,
                        (terms.from, terms.until),
                        now,
                    )
                })
                .await?;
            match terms.scope {
                SubscriptionScope::Tenant => {
                    if let Some(tenant) = terms.subscriber.strip_prefix("tenant:")
                        && let Some(plan) = self.plan(&terms.from_plan).await?
                    {
                        self.set_tenant_plan(tenant, &plan).await?;
                    }
                }
                SubscriptionScope::User => {
                    for line in &order.items {
                        self.revoke_entitlement(
                            &order.owner,
                            &line.sku,
                            &order.id,
                            Some(end.unwrap_or(now)),
                        )
                        .await?;
                    }
                }
            }
        } else {
            for line in &order.items {
                match &line.kind {
                    ProductKind::Physical => {}
                    ProductKind::ContentUnlock { .. } => {
                        self.revoke_entitlement(&order.owner, &line.sku, &order.id, None)
                            .await?;
                    }
                    ProductKind::Coins { amount } => {
                        let coins = amount.saturating_mul(i64::from(line.quantity));
                        self.revoke_coins(&order.owner, &order.id, coins).await?;
                    }
                    ProductKind::Membership { plan } | ProductKind::TenantPlan { plan } => {
                        let subscriber = match (&line.kind, &order.tenant) {
                            (ProductKind::TenantPlan { .. }, Some(t)) => format!("tenant:{t}"),
                            (ProductKind::TenantPlan { .. }, None) => continue,
                            _ => order.owner.clone(),
                        };
                        let secs = match self.plan(plan).await? {
                            Some(p) => p.period_secs() * i64::from(line.quantity.max(1)),
                            None => continue,
                        };
                        let end = self
                            .revoke_in_subscription(&subscriber, |sub| {
                                sub.revoke_renewal(&order.id, secs, now)
                            })
                            .await?;
                        if matches!(line.kind, ProductKind::Membership { .. }) {
                            self.revoke_entitlement(
                                &order.owner,
                                &line.sku,
                                &order.id,
                                Some(end.unwrap_or(now)),
                            )
                            .await?;
                        }
                    }
                }
            }
        }
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()),
                &Update::new()
                    .set("grantsRevoked", true)
                    .set("grantsRevokedAt", now),
                UpdateOptions::default(),
            )
            .await?;
        tracing::info!(order = %order.id, "grants of a refunded order taken back");
        Ok(())
    }

    /// Applies `revoke` to a stored subscription (see [`subscriptions::revoke`]).
    async fn revoke_in_subscription(
        &self,
        subscriber: &str,
        revoke: impl Fn(&mut Subscription) -> Revoked,
    ) -> Result<Option<i64>, CommerceError> {
        Ok(subscriptions::revoke(&self.store, subscriber, revoke).await?)
    }

    /// Marks `order_id` taken back on the entitlement `<owner>:<sku>`. The entitlement stops
    /// granting (`revokedAt`) once every order that granted it is taken back; `expires_at`
    /// (memberships) moves its end to where the subscription now ends.
    async fn revoke_entitlement(
        &self,
        owner: &str,
        sku: &str,
        order_id: &str,
        expires_at: Option<i64>,
    ) -> Result<(), CommerceError> {
        let id = format!("{owner}:{sku}");
        let now = self.now();
        let mut update = Update::new().set(revoked_marker(order_id), now);
        if let Some(end) = expires_at {
            update = update.set("expiresAt", end);
        }
        let Some(doc) = self
            .store
            .update_one(
                c::ENTITLEMENTS,
                &Filter::id(id.as_str()).and(Filter::exists(marker(order_id), true)),
                &update,
                UpdateOptions::default(),
            )
            .await?
        else {
            return Ok(());
        };
        let granted = object_keys(&doc, "orders");
        let revoked = object_keys(&doc, "revoked");
        if granted.iter().all(|k| revoked.contains(k)) {
            self.store
                .update_one(
                    c::ENTITLEMENTS,
                    &Filter::id(id.as_str()),
                    &Update::new().set("revokedAt", now),
                    UpdateOptions::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Debits the coins an order credited, once; a balance already spent below that goes to
    /// zero and the missing part is recorded as `coinsShortfall`.
    async fn revoke_coins(
        &self,
        owner: &str,
        order_id: &str,
        coins: i64,
    ) -> Result<(), CommerceError> {
        let id = format!("{owner}:coins");
        let now = self.now();
        for _ in 0..RETRIES {
            let Some(doc) = self.store.get(c::ENTITLEMENTS, &id).await? else {
                return Ok(());
            };
            let applied = doc
                .get("orders")
                .and_then(|o| o.get(format!("o_{order_id}")))
                .is_some();
            let done = doc
                .get("revoked")
                .and_then(|o| o.get(format!("o_{order_id}")))
                .is_some();
            if !applied || done {
                return Ok(());
            }
            let balance = doc.get("balance").and_then(Value::as_i64).unwrap_or(0);
            let debit = coins.min(balance.max(0));
            let mut update = Update::new()
                .inc("balance", -debit)
                .set(revoked_marker(order_id), now);
            if debit < coins {
                update = update.inc("coinsShortfall", coins - debit);
            }
            let won = self
                .store
                .update_one(
                    c::ENTITLEMENTS,
                    &Filter::id(id.as_str())
                        .and(Filter::eq("balance", balance))
                        .and(Filter::exists(revoked_marker(order_id), false)),
                    &update,
                    UpdateOptions::default(),
                )
                .await?;
            if won.is_some() {
                if debit < coins {
                    tracing::warn!(
                        owner,
                        order = order_id,
                        shortfall = coins - debit,
                        "refunded coins were already spent"
                    );
                }
                return Ok(());
            }
        }
        Err(CommerceError::Store(StoreError::Backend(format!(
            "coin balance {id} kept changing; giving up after {RETRIES} tries"
        ))))
    }
}

fn object_keys(doc: &Value, field: &str) -> Vec<String> {
    doc.get(field)
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}
