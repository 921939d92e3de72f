//! Loading what a caller holds (purchases, their membership, their tenant's plan) and the
//! catalog. The decisions themselves are in `wemint::domain::content` and
//! `wemint::domain::subscription`; the subscriptions are read through `wemint::subscriptions`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use wemint::domain::catalog::Product;
use wemint::domain::content::{HeldPlan, Holdings, PlanSource};
use wemint::identity::Caller;
use wemint::store::collections::{ENTITLEMENTS, PRODUCTS};
use wemint::store::{Filter, FindOptions, Store, StoreError};
use wemint::subscriptions::{self, Plans, Scope, Stored};
use wemint::tenancy::{Tenancy, TenancyError};

/// What the caller holds, as loaded once per request.
#[derive(Debug, Default)]
pub(crate) struct Standing {
    /// Entitlement documents of the caller (not revoked).
    pub(crate) entitlements: Vec<Value>,
    /// The caller's membership.
    pub(crate) user: Option<Stored>,
    /// The active tenant's id and plan subscription.
    pub(crate) tenant: Option<(String, Option<Stored>)>,
}

impl Standing {
    /// Loads the caller's entitlements and subscriptions. The tenant plan counts only while
    /// the store still has the caller as a member of the session's tenant (a removed member's
    /// token does not keep access).
    pub(crate) async fn load(
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
    pub(crate) fn holdings(&self, now: i64, plans: &Plans) -> Holdings {
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
pub(crate) async fn active_catalog(store: &Arc<dyn Store>) -> Result<Vec<Product>, StoreError> {
    store
        .find_as(
            PRODUCTS,
            &Filter::ne("active", false),
            &FindOptions::new().limit(1000),
        )
        .await
}
