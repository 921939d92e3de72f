//! Loading what a caller holds (purchases, their membership, their tenant's plan) and the
//! catalog, and turning stored subscriptions into the API's `subscription` shape. The
//! decisions themselves are in `wemint::domain::content` and `wemint::domain::subscription`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use wemint::domain::catalog::Product;
use wemint::domain::content::{HeldPlan, Holdings, PlanSource};
use wemint::domain::subscription::{Plan, Subscription};
use wemint::identity::Caller;
use wemint::store::{Filter, FindOptions, Store, StoreError};
use wemint::tenancy::{Tenancy, TenancyError};

/// Collections read here (written by commerce and `wemint-dev seed`).
pub(crate) mod collections {
    pub(crate) const CONTENTS: &str = "contents";
    pub(crate) const PRODUCTS: &str = "products";
    pub(crate) const PLANS: &str = "plans";
    pub(crate) const ENTITLEMENTS: &str = "entitlements";
    pub(crate) const SUBSCRIPTIONS: &str = "subscriptions";
    pub(crate) const TENANTS: &str = "tenants";
    /// Team trials claimed, `_id` = `owner:<openid>`: one per person, whatever the tenant.
    pub(crate) const TRIAL_CLAIMS: &str = "trial_claims";
}
use collections as c;

/// Whose subscription: the caller's own membership or their active tenant's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    User,
    Tenant,
}

impl Scope {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Tenant => "tenant",
        }
    }
}

/// The `subscriptions` document id of a subscriber, as commerce's fulfilment writes it: the
/// openid for a membership, `tenant:<id>` for a tenant plan.
pub(crate) fn subject(scope: Scope, id: &str) -> String {
    match scope {
        Scope::User => id.to_owned(),
        Scope::Tenant => format!("tenant:{id}"),
    }
}

/// Every plan, by id (a small collection, read per request so price and tier edits apply
/// at once).
#[derive(Clone, Debug, Default)]
pub(crate) struct Plans(HashMap<String, Plan>);

impl Plans {
    pub(crate) async fn load(store: &Arc<dyn Store>) -> Result<Self, StoreError> {
        let plans: Vec<Plan> = store
            .find_as(c::PLANS, &Filter::All, &FindOptions::new().limit(1000))
            .await?;
        Ok(Plans(
            plans.into_iter().map(|p| (p.id.clone(), p)).collect(),
        ))
    }

    pub(crate) fn get(&self, id: &str) -> Option<Plan> {
        self.0.get(id).cloned()
    }

    pub(crate) fn lookup(&self) -> impl Fn(&str) -> Option<Plan> + '_ {
        move |id| self.get(id)
    }
}

/// A subscription as stored, with the version its conditional writes check.
#[derive(Clone, Debug)]
pub(crate) struct StoredSubscription {
    pub(crate) sub: Subscription,
    pub(crate) version: Option<i64>,
}

pub(crate) async fn load_subscription(
    store: &Arc<dyn Store>,
    id: &str,
) -> Result<Option<StoredSubscription>, StoreError> {
    let Some(doc) = store.get(c::SUBSCRIPTIONS, id).await? else {
        return Ok(None);
    };
    let version = doc.get("version").and_then(Value::as_i64);
    let sub = serde_json::from_value(doc)
        .map_err(|e| StoreError::InvalidDocument(format!("subscription {id} does not fit: {e}")))?;
    Ok(Some(StoredSubscription { sub, version }))
}

/// What the caller holds, as loaded once per request.
#[derive(Debug, Default)]
pub(crate) struct Standing {
    /// Entitlement documents of the caller (not revoked).
    pub(crate) entitlements: Vec<Value>,
    /// The caller's membership.
    pub(crate) user: Option<StoredSubscription>,
    /// The active tenant's id and plan subscription.
    pub(crate) tenant: Option<(String, Option<StoredSubscription>)>,
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
                c::ENTITLEMENTS,
                &Filter::eq("openid", caller.openid.as_str()),
                &FindOptions::new().sort_asc("grantedAt").limit(1000),
            )
            .await?
            .into_iter()
            .filter(|e| e.get("revokedAt").is_none_or(Value::is_null))
            .collect();
        let user = load_subscription(store, &subject(Scope::User, &caller.openid)).await?;
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
                load_subscription(store, &subject(Scope::Tenant, &t.id)).await?,
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

/// The API `subscription` shape (`docs/api.md`), derived at `now`.
pub(crate) fn subscription_view(sub: &Subscription, now: i64, plans: &Plans) -> Value {
    let lookup = plans.lookup();
    let state = sub.state(now, &lookup);
    let plan = sub
        .plan_at(now, &lookup)
        .or_else(|| sub.segments.last().map(|s| s.plan.clone()))
        .unwrap_or_else(|| sub.renew_plan.clone());
    let period_end = sub.period_end();
    // Without a renewal, access ends at the period end when canceled, else after the
    // plan's past-due and grace days.
    let access_ends = period_end.map(|end| {
        if sub.canceled_at.is_some() {
            end
        } else {
            let extra = sub
                .segments
                .last()
                .and_then(|s| plans.get(&s.plan))
                .map_or(0, |p| i64::from(p.past_due_days + p.grace_days) * 86_400);
            end + extra
        }
    });
    let mut v = json!({
        "plan": plan,
        "state": state,
        "periodEndAt": period_end,
        "accessEndsAt": access_ends,
        "renewPlan": sub.renew_plan,
    });
    if let Some(at) = sub.canceled_at {
        v["canceledAt"] = json!(at);
    }
    if let Some(p) = plans.get(&plan) {
        v["planTitle"] = json!(p.title);
        v["tier"] = json!(p.tier);
        if let Some(seats) = p.seats {
            v["seats"] = json!(seats);
        }
    }
    v
}

/// The active catalog (paywall offers are built from it).
pub(crate) async fn active_catalog(store: &Arc<dyn Store>) -> Result<Vec<Product>, StoreError> {
    store
        .find_as(
            c::PRODUCTS,
            &Filter::ne("active", false),
            &FindOptions::new().limit(1000),
        )
        .await
}
