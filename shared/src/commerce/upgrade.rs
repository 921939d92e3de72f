//! Plan upgrades bought as orders.
//!
//! createOrder `create` with `upgrade: {plan, scope}` prices the move to a higher plan from the
//! stored subscription ([`Subscription::upgrade_quote`]: the prorated difference for the rest
//! of the paid time) and sells it through the plan's catalog product, so the payment channel
//! and the bill are the ones the plan already uses. The order records the quote's window; its
//! fulfilment moves exactly that window ([`Subscription::apply_upgrade`]), once per order,
//! however late or often the payment notification arrives.
//!
//! A paid upgrade that can no longer be applied (a second upgrade order paid after the first
//! already moved the time, or the subscription vanished) is refunded in full automatically:
//! the buyer never pays for nothing.

use serde::Deserialize;

use super::Commerce;
use super::error::CommerceError;
use super::model::{OrderDoc, SubscriptionScope, UpgradeTerms, collections as c};
use super::orders::Draft;
use super::refunds::RefundInput;
use crate::domain::catalog::Product;
use crate::domain::money::Fen;
use crate::domain::order::OrderLine;
use crate::domain::subscription::{Plan, SubscriptionError};
use crate::identity::{Caller, TenantRole};
use crate::store::{Filter, FindOptions, Update, UpdateOptions};
use crate::subscriptions;
use crate::tenancy::{Tenancy, TenancyError};

/// `create` data `upgrade`: the plan to move to and whose subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeRequest {
    /// Target plan id (a higher tier than the plan in force).
    pub plan: String,
    /// `user` (default) or `tenant` (the caller's active tenant; owner or admin only).
    #[serde(default)]
    pub scope: SubscriptionScope,
}

impl Commerce {
    /// Prices an upgrade from the stored subscription and picks the product that sells it.
    pub(super) async fn price_upgrade(
        &self,
        caller: &Caller,
        request: &UpgradeRequest,
    ) -> Result<Draft, CommerceError> {
        let (subscriber, tenant) = self.upgrade_subscriber(caller, request.scope).await?;
        let target = self
            .plan(&request.plan)
            .await?
            .ok_or_else(|| SubscriptionError::UnknownPlan(request.plan.clone()))?;
        if target.seats.is_some() != (request.scope == SubscriptionScope::Tenant) {
            return Err(CommerceError::PlanChangeInvalid(format!(
                "plan {} is not a {} plan",
                target.id,
                request.scope.name()
            )));
        }
        let sub = subscriptions::load(&self.store, &subscriber)
            .await?
            .ok_or(CommerceError::SubscriptionNotFound(request.scope.name()))?
            .sub;
        let plans = subscriptions::plans_for(&self.store, &sub, &target).await?;
        let quote = sub.upgrade_quote(&target, self.now(), &|id: &str| plans.get(id).cloned())?;
        if quote.amount == Fen::ZERO {
            return Err(CommerceError::PlanChangeInvalid(
                "only free trial time is left, so the upgrade costs nothing: change the plan with gatedContent changePlan".into(),
            ));
        }
        let product = self
            .upgrade_product(&target, request.scope, quote.amount)
            .await?;
        let line = OrderLine {
            sku: product.sku.clone(),
            title: format!("升级：{}", product.title),
            quantity: 1,
            unit_price_fen: quote.amount,
            kind: product.kind.clone(),
        };
        Ok(Draft {
            channel: product.channel(),
            lines: vec![line],
            total: quote.amount,
            reservations: Vec::new(),
            tenant,
            upgrade: Some(UpgradeTerms {
                plan: target.id,
                from_plan: quote.from_plan,
                scope: request.scope,
                subscriber,
                from: quote.from,
                until: quote.until,
                list_price_fen: product.price_fen,
            }),
        })
    }

    /// The `subscriptions` id the caller may upgrade in `scope`, and the tenant for tenant
    /// plans. Tenant plans are changed by the tenant's owner and admins, by their stored role.
    async fn upgrade_subscriber(
        &self,
        caller: &Caller,
        scope: SubscriptionScope,
    ) -> Result<(String, Option<String>), CommerceError> {
        match scope {
            SubscriptionScope::User => Ok((
                caller.openid.clone(),
                caller.tenant.as_ref().map(|t| t.id.clone()),
            )),
            SubscriptionScope::Tenant => {
                let tenant = match Tenancy::new(self.store.clone()).scope(caller).await {
                    Ok(t) => t,
                    Err(TenancyError::NoActiveTenant) => return Err(CommerceError::TenantRequired),
                    Err(TenancyError::Store(e)) => return Err(e.into()),
                    Err(e) => return Err(CommerceError::Forbidden(e.to_string())),
                };
                if tenant.role() < TenantRole::Admin {
                    return Err(CommerceError::Forbidden(
                        "only the tenant's owner or an admin can change its plan".into(),
                    ));
                }
                let id = tenant.tenant_id().to_owned();
                Ok((format!("tenant:{id}"), Some(id)))
            }
        }
    }

    /// The cheapest active product selling `plan` whose channel can charge `amount`
    /// ([`PaymentChannel::selling_range`](super::PaymentChannel::selling_range): any amount
    /// on WeChat Pay, 40–100% of the item price on virtual payment).
    async fn upgrade_product(
        &self,
        plan: &Plan,
        scope: SubscriptionScope,
        amount: Fen,
    ) -> Result<Product, CommerceError> {
        let kind = match scope {
            SubscriptionScope::User => "membership",
            SubscriptionScope::Tenant => "tenant_plan",
        };
        let products: Vec<Product> = self
            .store
            .find_as(
                c::PRODUCTS,
                &Filter::eq("active", true)
                    .and(Filter::eq("kind.type", kind))
                    .and(Filter::eq("kind.plan", plan.id.as_str())),
                &FindOptions::new().sort_asc("priceFen"),
            )
            .await?;
        let mut refused = None;
        for product in products {
            // A channel that is not configured is refused later, by `create`.
            let range = match self.channel(product.channel()) {
                Some(channel) => channel.selling_range(product.price_fen)?,
                None => None,
            };
            let Some((min, max)) = range else {
                return Ok(product);
            };
            if (min..=max).contains(&amount) {
                return Ok(product);
            }
            refused.get_or_insert(CommerceError::UpgradePriceUnsupported { amount, min, max });
        }
        Err(refused.unwrap_or_else(|| CommerceError::PlanNotForSale(plan.id.clone())))
    }

    /// Applies a paid upgrade order. Returns `Err(reason)` inside `Ok` when it cannot be
    /// applied (the caller refunds), `Ok(Ok(()))` when applied now or before.
    pub(super) async fn grant_upgrade(
        &self,
        order: &OrderDoc,
        terms: &UpgradeTerms,
        paid_at: i64,
    ) -> Result<Result<(), String>, CommerceError> {
        let Some(target) = self.plan(&terms.plan).await? else {
            return Ok(Err(format!(
                "plan {} is no longer in the catalog",
                terms.plan
            )));
        };
        // The subscription as it stands once the upgrade is in (now or before).
        let sub = match subscriptions::apply_upgrade(
            &self.store,
            &terms.subscriber,
            &target,
            &order.id,
            terms.from,
            terms.until,
        )
        .await?
        {
            Ok(sub) => sub,
            Err(reason) => return Ok(Err(reason)),
        };
        // The holdings that follow the plan, both idempotent.
        match terms.scope {
            SubscriptionScope::Tenant => {
                if let Some(tenant) = terms.subscriber.strip_prefix("tenant:") {
                    self.set_tenant_plan(tenant, &target).await?;
                }
            }
            SubscriptionScope::User => {
                if let Some(line) = order.items.first() {
                    let until = sub.period_end().unwrap_or(terms.until);
                    self.record_membership(order, line, &target.id, until, paid_at)
                        .await?;
                }
            }
        }
        Ok(Ok(()))
    }

    /// Refunds a paid order whose grant could not be applied, in full, with a refund number
    /// derived from the order (so a second attempt finds the first). Records why on the order.
    pub(super) async fn refund_unfulfilled(
        &self,
        order: &OrderDoc,
        reason: &str,
    ) -> Result<(), CommerceError> {
        tracing::error!(order = %order.id, reason, "paid upgrade cannot be applied; refunding it");
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()),
                &Update::new().set(
                    "reviewReason",
                    format!("upgrade not applied ({reason}); refunded automatically"),
                ),
                UpdateOptions::default(),
            )
            .await?;
        let input = RefundInput {
            order_id: order.id.clone(),
            refund_no: format!("AU{}", order.id),
            amount_fen: None,
            reason: Some("升级未能生效，已自动退款".into()),
        };
        match self.request_refund("system", input).await {
            Ok(refund) => {
                tracing::info!(order = %order.id, refund = %refund.refund_no,
                    status = ?refund.status, "automatic refund requested");
                Ok(())
            }
            Err(CommerceError::Store(e)) => Err(e.into()),
            Err(e) => {
                tracing::error!(order = %order.id, error = %e,
                    "automatic refund could not be requested; an administrator must refund");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upgrade_request_defaults_to_the_callers_own_subscription() {
        let r: UpgradeRequest = serde_json::from_value(json!({"plan": "pro"})).unwrap();
        assert_eq!(r.scope, SubscriptionScope::User);
        let r: UpgradeRequest =
            serde_json::from_value(json!({"plan": "team-pro", "scope": "tenant"})).unwrap();
        assert_eq!(r.scope, SubscriptionScope::Tenant);
        assert!(serde_json::from_value::<UpgradeRequest>(json!({"scope": "user"})).is_err());
    }
}
