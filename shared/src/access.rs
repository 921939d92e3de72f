//! What a caller holds (purchases, their membership, their tenant's plan), loaded once per
//! request, and the active catalog: what gatedContent decides access and paywalls from. The
//! decisions themselves are pure, in [`crate::domain::content`] and
//! [`crate::domain::subscription`]; subscriptions are read through [`crate::subscriptions`].

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::domain::catalog::Product;
use crate::domain::content::{HeldPlan, Holdings, PlanSource};
use crate::identity::Caller;
use crate::store::collections::{ENTITLEMENTS, PRODUCTS};
use crate::store::{Filter, FindOptions, Store, StoreError};
use crate::subscriptions::{self, Plans, Scope, Stored};
use crate::tenancy::{Tenancy, TenancyError};
use serde_json::{Value, json};

/// What the caller holds, as loaded once per request.
#[derive(Debug, Default)]
pub struct Standing {
    /// Entitlement documents of the caller (not revoked).
    pub entitlements: Vec<Value>,
    /// The caller's membership.
    pub user: Option<Stored>,
    /// The active tenant's id and plan subscription.
    pub tenant: Option<(String, Option<Stored>)>,
}

impl Standing {
    /// Loads the caller's entitlements and subscriptions. The tenant plan counts only while
    /// the store still has the caller as a member of the session's tenant (a removed member's
    /// token does not keep access).
    pub async fn load(
        store: &Arc<dyn Store>,
        tenancy: &Tenancy,
        caller: &Caller,
    ) -> Result<Self, StoreError> {
        let entitlements = store
            .find(
                ENTITLEMENTS,
                &Filter::eq("openid", caller.openid.as_str()),
                &FindOptions::new().sort_asc("grantedAt").limit(1000),
            )
            .await?
            .into_iter()
            .filter(|e| e.get("revokedAt").is_none_or(Value::is_null))
            .collect();
        let user = subscriptions::load(store, &Scope::User.subject(&caller.openid)).await?;
        let member = match &caller.tenant {
            Some(t) => match tenancy.membership(&t.id, &caller.openid).await {
                Ok(m) => m,
                Err(TenancyError::Store(e)) => return Err(e),
                Err(e) => return Err(StoreError::Backend(e.to_string())),
            },
            None => None,
        };
        let tenant = match member.as_ref().and(caller.tenant.as_ref()) {
            Some(t) => Some((
                t.id.clone(),
                subscriptions::load(store, &Scope::Tenant.subject(&t.id)).await?,
            )),
            None => None,
        };
        Ok(Standing {
            entitlements,
            user,
            tenant,
        })
    }

    /// What opens content at `now`: owned skus that have not run out, and the plans of
    /// subscriptions whose derived state has access.
    pub fn holdings(&self, now: i64, plans: &Plans) -> Holdings {
        let skus: BTreeSet<String> = self
            .entitlements
            .iter()
            .filter(|e| e["expiresAt"].as_i64().is_none_or(|t| now < t))
            .filter_map(|e| e["sku"].as_str().map(str::to_owned))
            .collect();
        let mut held = Vec::new();
        let tenant_sub = self.tenant.as_ref().and_then(|(_, s)| s.as_ref());
        for (stored, source) in [
            (self.user.as_ref(), PlanSource::Membership),
            (tenant_sub, PlanSource::Tenant),
        ] {
            if let Some(plan) = stored
                .and_then(|s| s.sub.plan_at(now, &plans.lookup()))
                .and_then(|id| plans.get(&id))
            {
                held.push(HeldPlan { plan, source });
            }
        }
        Holdings { skus, plans: held }
    }
}

/// The active catalog (paywall offers are built from it).
pub async fn active_catalog(store: &Arc<dyn Store>) -> Result<Vec<Product>, StoreError> {
    store
        .find_as(
            PRODUCTS,
            &Filter::ne("active", false),
            &FindOptions::new().limit(1000),
        )
        .await
}

/// The `entitlements` action's reply at `now`: the caller's purchases (a membership lasts as
/// long as the subscription, so its period end is the truth), their subscription and their
/// tenant's.
pub fn entitlements_view(standing: &Standing, now: i64, plans: &Plans) -> Value {
    let user_sub = standing.user.as_ref().map(|s| &s.sub);
    let items: Vec<Value> = standing
        .entitlements
        .iter()
        .map(|e| {
            let kind = e["kind"].as_str().unwrap_or_default();
            let mut v = json!({"sku": e["sku"], "kind": kind, "grantedAt": e["grantedAt"]});
            let expires = match (kind, user_sub) {
                ("membership", Some(sub)) => sub.period_end(),
                _ => e["expiresAt"].as_i64(),
            };
            if let Some(at) = expires {
                v["expiresAt"] = json!(at);
                v["active"] = json!(now < at);
            } else {
                v["active"] = json!(true);
            }
            for field in ["content", "plan", "balance"] {
                if let Some(x) = e.get(field).filter(|x| !x.is_null()) {
                    v[field] = x.clone();
                }
            }
            v
        })
        .collect();
    let mut out = json!({ "entitlements": items });
    if let Some(sub) = user_sub {
        out["subscription"] = subscriptions::view(sub, now, plans);
    }
    if let Some((tenant, Some(stored))) = &standing.tenant {
        let mut v = subscriptions::view(&stored.sub, now, plans);
        v["tenant"] = json!(tenant);
        out["tenantSubscription"] = v;
    }
    out
}
