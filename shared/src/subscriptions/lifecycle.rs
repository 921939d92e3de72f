//! The subscriber's own changes: a free trial, cancel and resume (access until the period end),
//! plan changes (a downgrade is scheduled for the period end; an upgrade is quoted with
//! proration and bought through createOrder, whose fulfilment applies it), and the daily end
//! of tenant plans.
//!
//! Writes go through [`super::save`], conditional on the document's `version`, the same
//! optimistic concurrency commerce's renewals use, so a cancel racing a paid renewal never
//! loses either.

use std::sync::Arc;

use serde_json::{Value, json};

use super::stored::{WRITE_RETRIES, kept_changing};
use super::{Plans, Scope, Stored, SubscriptionsError, load, save, view};
use crate::domain::money::Fen;
use crate::domain::subscription::{Plan, Subscription, SubscriptionError};
use crate::identity::{Caller, TenantRole};
use crate::store::collections::{TENANTS, TRIAL_CLAIMS};
use crate::store::{Filter, FindOptions, Store, StoreError};
use crate::tenancy::{Tenancy, TenancyError};

/// The subscription service gatedContent's actions and timer call. Cheap to clone; build one
/// at init.
#[derive(Clone)]
pub struct Subscriptions {
    store: Arc<dyn Store>,
    tenancy: Tenancy,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

/// The subscription id the caller may manage in `scope`. Tenant plans are managed by the
/// tenant's owner and admins, by their role in the store (not the token's).
async fn managed_subject(
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
) -> Result<String, SubscriptionsError> {
    match scope {
        Scope::User => Ok(Scope::User.subject(&caller.openid)),
        Scope::Tenant => {
            let tenant = match tenancy.scope(caller).await {
                Ok(t) => t,
                Err(TenancyError::NoActiveTenant) => {
                    return Err(SubscriptionsError::NotFound("tenant"));
                }
                Err(TenancyError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(SubscriptionsError::Forbidden(e.to_string())),
            };
            if tenant.role() < TenantRole::Admin {
                return Err(SubscriptionsError::Forbidden(
                    "only the tenant's owner or an admin can change its plan".into(),
                ));
            }
            Ok(Scope::Tenant.subject(tenant.tenant_id()))
        }
    }
}

/// What a change did, for the log.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// Nothing needed writing (already in that state).
    Unchanged,
    /// Written.
    Written,
}

/// Loads the subscription, lets `apply` change it, and writes the change if there is one,
/// retrying when a concurrent write moved the version.
async fn modify<T>(
    store: &Arc<dyn Store>,
    id: &str,
    scope: Scope,
    now: i64,
    plans: &Plans,
    apply: impl Fn(&mut Subscription) -> Result<T, SubscriptionsError>,
) -> Result<(Subscription, T, Change), SubscriptionsError> {
    for _ in 0..WRITE_RETRIES {
        let Stored { sub, version } = load(store, id)
            .await?
            .ok_or(SubscriptionsError::NotFound(scope.name()))?;
        if !sub.state(now, &plans.lookup()).has_access() {
            return Err(SubscriptionsError::Expired);
        }
        let mut changed = sub.clone();
        let out = apply(&mut changed)?;
        if changed == sub {
            return Ok((changed, out, Change::Unchanged));
        }
        if save(store, id, Some(&version), &changed).await? {
            return Ok((changed, out, Change::Written));
        }
    }
    Err(kept_changing(id).into())
}

/// `cancelSubscription` (`cancel`) or `resumeSubscription` (`!cancel`).
///
/// Canceling: no renewal expected; access continues to the period end, and canceling twice
/// keeps the first cancellation time. Resuming takes a cancellation back while the paid time
/// runs (renewal reminders and the past-due and grace days apply again); a subscription that
/// is not canceled stays as it is, one whose canceled time ended is `SUBSCRIPTION_EXPIRED`.
async fn set_canceled(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
    cancel: bool,
    now: i64,
) -> Result<Value, SubscriptionsError> {
    let id = managed_subject(tenancy, caller, scope).await?;
    let plans = Plans::load(store).await?;
    let lookup = plans.lookup();
    let (sub, (), change) = modify(store, &id, scope, now, &plans, |sub| {
        if cancel {
            sub.cancel(now);
            Ok(())
        } else {
            sub.resume(now, &lookup).map_err(plan_change_error)
        }
    })
    .await?;
    if change == Change::Written {
        tracing::info!(subscription = %id, canceled = cancel, "subscription cancellation changed");
    }
    Ok(json!({ "subscription": view(&sub, now, &plans) }))
}

/// `startTrial`: the plan's free trial, once per subscriber and only before any
/// subscription (paid or trial) exists. Asking again for the trial just started returns it.
/// A tenant trial gives the tenant the plan's seats, like a paid tenant plan.
async fn start_trial(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
    plan_id: &str,
    now: i64,
) -> Result<Value, SubscriptionsError> {
    let id = managed_subject(tenancy, caller, scope).await?;
    let plans = Plans::load(store).await?;
    let plan = plan_for(&plans, plan_id, scope)?;
    if plan.trial_days == 0 {
        return Err(SubscriptionsError::TrialUnavailable(format!(
            "plan {plan_id} has no free trial"
        )));
    }
    if scope == Scope::Tenant && load(store, &id).await?.is_none() {
        claim_team_trial(store, &caller.openid, &id, &plan.id, now).await?;
    }
    let trial = Subscription::start(&plan, now, true);
    let sub = if save(store, &id, None, &trial).await? {
        tracing::info!(subscription = %id, plan = plan_id, "free trial started");
        trial
    } else {
        let existing = load(store, &id)
            .await?
            .ok_or(SubscriptionsError::NotFound(scope.name()))?
            .sub;
        // The same request again (a retry): the trial it started, unchanged.
        let only_this_trial = existing.applied_orders.is_empty()
            && matches!(existing.segments.as_slice(), [s] if s.trial && s.plan == plan.id);
        if !only_this_trial {
            return Err(SubscriptionsError::TrialUnavailable(
                "the free trial is only for a first subscription".into(),
            ));
        }
        existing
    };
    set_tenant_plan(tenancy, &id, &plan).await?;
    Ok(json!({ "subscription": view(&sub, now, &plans) }))
}

/// The daily sweep's second half: a tenant whose plan subscription no longer gives access
/// (expired, or never existed) loses the plan and its seat cap, so the tenant shows no plan
/// and is back to the no-plan rules, as before its first purchase. Access never depended on
/// this (it is derived from the subscription); what it fixes is what the tenant displays
/// and what invitations are checked against.
async fn expire_tenant_plans(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    now: i64,
) -> Result<u32, SubscriptionsError> {
    let with_plan = store
        .find(
            TENANTS,
            &Filter::exists("plan", true),
            &FindOptions::new().limit(500),
        )
        .await?;
    let plans = Plans::load(store).await?;
    let mut expired = 0;
    for tenant in with_plan {
        let Some(id) = tenant.get("_id").and_then(Value::as_str) else {
            continue;
        };
        let running = load(store, &Scope::Tenant.subject(id))
            .await?
            .is_some_and(|s| s.sub.state(now, &plans.lookup()).has_access());
        if running {
            continue;
        }
        match tenancy.set_plan(id, None, None).await {
            Ok(_) => {
                expired += 1;
                tracing::info!(tenant = id, "tenant plan ended");
            }
            Err(TenancyError::Store(e)) => return Err(e.into()),
            Err(e) => tracing::warn!(tenant = id, error = %e, "tenant plan not cleared"),
        }
    }
    Ok(expired)
}

/// One team trial per person: otherwise creating tenants would give endless free trials. A
/// retry for the same tenant finds its own claim.
async fn claim_team_trial(
    store: &Arc<dyn Store>,
    openid: &str,
    subject: &str,
    plan: &str,
    now: i64,
) -> Result<(), SubscriptionsError> {
    let claim = json!({"_id": format!("owner:{openid}"), "openid": openid,
        "subscriber": subject, "plan": plan, "claimedAt": now});
    match store.insert(TRIAL_CLAIMS, claim).await {
        Ok(_) => Ok(()),
        Err(StoreError::DuplicateKey { .. }) => {
            let existing = store.get(TRIAL_CLAIMS, &format!("owner:{openid}")).await?;
            if existing.is_some_and(|d| d["subscriber"] == json!(subject)) {
                Ok(())
            } else {
                Err(SubscriptionsError::TrialUnavailable(
                    "one team trial per person: this account already started one for another team"
                        .into(),
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The plan `id`, which must be of the scope's kind (tenant plans have seats).
fn plan_for(plans: &Plans, id: &str, scope: Scope) -> Result<Plan, SubscriptionsError> {
    let plan = plans
        .get(id)
        .ok_or_else(|| SubscriptionsError::PlanNotFound(id.to_owned()))?;
    if plan.seats.is_some() != (scope == Scope::Tenant) {
        return Err(SubscriptionsError::PlanChangeInvalid(format!(
            "plan {id} is not a {} plan",
            scope.name()
        )));
    }
    Ok(plan)
}

/// For a tenant subscription (`tenant:<id>`), gives the tenant `plan` and its seats (what
/// inviting members is checked against), as a paid tenant plan does.
async fn set_tenant_plan(
    tenancy: &Tenancy,
    subject: &str,
    plan: &Plan,
) -> Result<(), SubscriptionsError> {
    let Some(tenant) = subject.strip_prefix("tenant:") else {
        return Ok(());
    };
    tenancy
        .set_plan(tenant, Some(plan.id.as_str()), plan.seats)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            TenancyError::Store(e) => SubscriptionsError::Store(e),
            other => SubscriptionsError::Forbidden(other.to_string()),
        })
}

fn plan_change_error(e: SubscriptionError) -> SubscriptionsError {
    match e {
        SubscriptionError::Expired => SubscriptionsError::Expired,
        SubscriptionError::UnknownPlan(p) => SubscriptionsError::PlanNotFound(p),
        other => SubscriptionsError::PlanChangeInvalid(other.to_string()),
    }
}

/// `changePlan`: a lower tier is scheduled for the period end (`renewPlan`); a higher tier
/// is quoted (the prorated difference in fen for the rest of the paid time) and bought
/// through createOrder; the current plan again undoes a scheduled downgrade.
async fn change_plan(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
    to: &str,
    now: i64,
) -> Result<Value, SubscriptionsError> {
    let id = managed_subject(tenancy, caller, scope).await?;
    let plans = Plans::load(store).await?;
    let target = plan_for(&plans, to, scope)?;
    let stored = load(store, &id)
        .await?
        .ok_or(SubscriptionsError::NotFound(scope.name()))?;
    let lookup = plans.lookup();
    let current_id = stored
        .sub
        .plan_at(now, &lookup)
        .ok_or(SubscriptionsError::Expired)?;
    let current = plans
        .get(&current_id)
        .ok_or_else(|| SubscriptionsError::PlanNotFound(current_id.clone()))?;
    if target.tier > current.tier {
        let quote = stored
            .sub
            .upgrade_quote(&target, now, &lookup)
            .map_err(plan_change_error)?;
        if quote.amount == Fen::ZERO {
            // Only free trial time is left: nothing to buy, the trial moves to the plan now.
            let key = format!("trial-upgrade:{}:{now}", target.id);
            let (sub, _, _) = modify(store, &id, scope, now, &plans, |sub| {
                sub.apply_upgrade(&target, &key, quote.from, quote.until, &lookup)
                    .map_err(plan_change_error)
            })
            .await?;
            set_tenant_plan(tenancy, &id, &target).await?;
            tracing::info!(subscription = %id, to, "trial upgraded");
            return Ok(json!({
                "change": "upgrade",
                "applied": true,
                "subscription": view(&sub, now, &plans),
            }));
        }
        return Ok(json!({
            "change": "upgrade",
            "applied": false,
            "quote": {
                "plan": target.id,
                "fromPlan": quote.from_plan,
                "amountFen": quote.amount,
                "quotedAt": now,
                "periodEndAt": quote.until,
            },
            // Pay for it with createOrder `create` and this data (plus a clientRequestId).
            "checkout": { "upgrade": { "plan": target.id, "scope": scope.name() } },
            "subscription": view(&stored.sub, now, &plans),
        }));
    }
    let (sub, change, _) = modify(store, &id, scope, now, &plans, |sub| {
        if target.id == current_id {
            if sub.renew_plan == target.id {
                return Err(SubscriptionsError::PlanChangeInvalid(format!(
                    "already on plan {to}"
                )));
            }
            sub.renew_plan = target.id.clone();
            return Ok("kept");
        }
        sub.schedule_downgrade(&target, now, &lookup)
            .map_err(plan_change_error)?;
        Ok("downgrade")
    })
    .await?;
    tracing::info!(subscription = %id, change, to, "plan change");
    Ok(json!({
        "change": change,
        "effectiveAt": sub.period_end(),
        "subscription": view(&sub, now, &plans),
    }))
}

impl Subscriptions {
    /// The service over `store`; `tenancy` answers who may manage a tenant's plan and takes
    /// the plan's seats.
    pub fn new(store: Arc<dyn Store>, tenancy: Tenancy) -> Self {
        Subscriptions { store, tenancy }
    }

    /// The subscription `id` (an openid, or `tenant:<id>`), with its version.
    ///
    /// # Errors
    /// The store failed, or the document does not fit.
    pub async fn load(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        load(&self.store, id).await
    }

    /// `cancelSubscription` (`cancel`) or `resumeSubscription` (`!cancel`) of the caller's
    /// subscription in `scope`; returns `{subscription}`.
    ///
    /// Canceling: no renewal expected; access continues to the period end, and canceling twice
    /// keeps the first cancellation time. Resuming takes a cancellation back while the paid
    /// time runs; a subscription that is not canceled stays as it is, one whose canceled time
    /// ended is [`SubscriptionsError::Expired`].
    ///
    /// # Errors
    /// See [`SubscriptionsError`].
    pub async fn set_canceled(
        &self,
        caller: &Caller,
        scope: Scope,
        cancel: bool,
        now: i64,
    ) -> Result<Value, SubscriptionsError> {
        set_canceled(&self.store, &self.tenancy, caller, scope, cancel, now).await
    }

    /// `startTrial`: the plan's free trial, once per subscriber and only before any
    /// subscription exists; returns `{subscription}`.
    ///
    /// # Errors
    /// See [`SubscriptionsError`].
    pub async fn start_trial(
        &self,
        caller: &Caller,
        scope: Scope,
        plan: &str,
        now: i64,
    ) -> Result<Value, SubscriptionsError> {
        start_trial(&self.store, &self.tenancy, caller, scope, plan, now).await
    }

    /// `changePlan`: schedules a downgrade, quotes an upgrade (or applies it at once when only
    /// free trial time is left), or undoes a scheduled downgrade.
    ///
    /// # Errors
    /// See [`SubscriptionsError`].
    pub async fn change_plan(
        &self,
        caller: &Caller,
        scope: Scope,
        to: &str,
        now: i64,
    ) -> Result<Value, SubscriptionsError> {
        change_plan(&self.store, &self.tenancy, caller, scope, to, now).await
    }

    /// The daily sweep's tenant half: tenants whose plan subscription no longer gives access
    /// lose the plan and its seat cap. Returns how many.
    ///
    /// # Errors
    /// The store failed.
    pub async fn expire_tenant_plans(&self, now: i64) -> Result<u32, SubscriptionsError> {
        expire_tenant_plans(&self.store, &self.tenancy, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::Segment;
    use crate::identity::{CallerSource, TenantMembership};
    use crate::store::collections::PLANS;

    const T0: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn team_plan(id: &str, tier: u32, period_days: u32, price: i64, seats: u32) -> Plan {
        Plan {
            id: id.into(),
            title: id.into(),
            tier,
            period_days,
            price_fen: Fen::new(price).unwrap(),
            trial_days: 0,
            past_due_days: 0,
            grace_days: 0,
            seats: Some(seats),
        }
    }

    /// A tenant paid for a month of `team` (2 seats), ten days ago; `team-annual` is the
    /// higher tier (10 seats) and costs less per day (545 fen against 663).
    #[tokio::test]
    async fn a_paid_tenant_plan_is_not_upgraded_for_free_to_a_tier_cheaper_per_day() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let monthly = team_plan("team", 1, 30, 19_900, 2);
        let annual = team_plan("team-annual", 2, 365, 199_000, 10);
        for plan in [&monthly, &annual] {
            let mut doc = serde_json::to_value(plan).unwrap();
            doc["_id"] = json!(plan.id);
            store.insert(PLANS, doc).await.unwrap();
        }
        let tenancy = Tenancy::new(store.clone());
        let (tenant, _) = tenancy.create("o-owner", "Team").await.unwrap();
        tenancy
            .set_plan(&tenant.id, Some("team"), Some(2))
            .await
            .unwrap();
        let subject = Scope::Tenant.subject(&tenant.id);
        let mut sub = Subscription::start(&monthly, T0, false);
        sub.apply_renewal(&monthly, "o1", T0, &|_: &str| Some(monthly.clone()));
        assert!(save(&store, &subject, None, &sub).await.unwrap());
        let owner = Caller {
            openid: "o-owner".into(),
            appid: "wx-app".into(),
            unionid: None,
            tenant: Some(TenantMembership {
                id: tenant.id.clone(),
                role: TenantRole::Owner,
            }),
            plan: None,
            admin: false,
            source: CallerSource::Session,
        };

        let subs = Subscriptions::new(store.clone(), tenancy.clone());
        let out = subs
            .change_plan(&owner, Scope::Tenant, "team-annual", T0 + 10 * DAY)
            .await
            .unwrap();
        assert_eq!(out["change"], "upgrade");
        assert_eq!(out["applied"], false, "paid time needs a payment: {out}");
        assert_eq!(out["quote"]["amountFen"], 1, "{out}");
        assert_eq!(out["checkout"]["upgrade"]["plan"], "team-annual");
        // Nothing moved before the payment: neither the paid time nor the seats.
        let stored = load(&store, &subject).await.unwrap().unwrap().sub;
        assert_eq!(
            stored.segments,
            vec![Segment {
                plan: "team".into(),
                start: T0,
                end: T0 + 30 * DAY,
                trial: false,
            }]
        );
        assert_eq!(stored.renew_plan, "team");
        let tenant = tenancy.tenant(&tenant.id).await.unwrap().unwrap();
        assert_eq!(
            (tenant.plan.as_deref(), tenant.seats),
            (Some("team"), Some(2))
        );
    }
}
