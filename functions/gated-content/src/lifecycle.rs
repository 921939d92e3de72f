//! Subscription lifecycle actions: cancel (access until the period end) and plan changes
//! (a downgrade is scheduled for the period end; an upgrade is quoted with proration and
//! bought through createOrder, whose fulfilment applies it).
//!
//! Writes are conditional on the document's `version`, the same optimistic concurrency
//! commerce's renewals use, so a cancel racing a paid renewal never loses either.

use std::sync::Arc;

use serde_json::{Value, json};
use wemint::domain::money::Fen;
use wemint::domain::subscription::{Plan, Subscription, SubscriptionError};
use wemint::identity::{Caller, TenantRole};
use wemint::store::{Filter, Store, StoreError, Update, UpdateOptions};
use wemint::tenancy::{Tenancy, TenancyError};

use crate::access::{
    Plans, Scope, StoredSubscription, collections as c, load_subscription, subject,
};
use crate::error::GatedError;

const WRITE_RETRIES: usize = 5;

/// The subscription id the caller may manage in `scope`. Tenant plans are managed by the
/// tenant's owner and admins, by their role in the store (not the token's).
pub(crate) async fn managed_subject(
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
) -> Result<String, GatedError> {
    match scope {
        Scope::User => Ok(subject(Scope::User, &caller.openid)),
        Scope::Tenant => {
            let tenant = match tenancy.scope(caller).await {
                Ok(t) => t,
                Err(TenancyError::NoActiveTenant) => {
                    return Err(GatedError::SubscriptionNotFound("tenant"));
                }
                Err(TenancyError::Store(e)) => return Err(e.into()),
                Err(e) => return Err(GatedError::Forbidden(e.to_string())),
            };
            if tenant.role() < TenantRole::Admin {
                return Err(GatedError::Forbidden(
                    "only the tenant's owner or an admin can change its plan".into(),
                ));
            }
            Ok(subject(Scope::Tenant, tenant.tenant_id()))
        }
    }
}

/// What a change did, for the reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
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
    apply: impl Fn(&mut Subscription) -> Result<T, GatedError>,
) -> Result<(Subscription, T, Change), GatedError> {
    for _ in 0..WRITE_RETRIES {
        let StoredSubscription { sub, version, .. } = load_subscription(store, id)
            .await?
            .ok_or(GatedError::SubscriptionNotFound(scope.name()))?;
        if !sub.state(now, &plans.lookup()).has_access() {
            return Err(GatedError::SubscriptionExpired);
        }
        let mut changed = sub.clone();
        let out = apply(&mut changed)?;
        if changed == sub {
            return Ok((changed, out, Change::Unchanged));
        }
        let mut update = Update::new()
            .set("segments", to_json(&changed.segments)?)
            .set("appliedOrders", to_json(&changed.applied_orders)?)
            .set("renewPlan", changed.renew_plan.as_str())
            .set(
                "plan",
                changed
                    .segments
                    .last()
                    .map_or(changed.renew_plan.as_str(), |s| s.plan.as_str()),
            )
            .inc("version", 1);
        update = match changed.canceled_at {
            Some(at) => update.set("canceledAt", at),
            None => update.unset("canceledAt"),
        };
        let filter = Filter::id(id).and(Filter::eq(
            "version",
            version.map_or(Value::Null, Value::from),
        ));
        if store
            .update_one(c::SUBSCRIPTIONS, &filter, &update, UpdateOptions::default())
            .await?
            .is_some()
        {
            return Ok((changed, out, Change::Written));
        }
    }
    Err(GatedError::Store(StoreError::Backend(format!(
        "subscription {id} kept changing; giving up after {WRITE_RETRIES} tries"
    ))))
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, GatedError> {
    serde_json::to_value(value)
        .map_err(|e| GatedError::Store(StoreError::InvalidDocument(e.to_string())))
}

/// `cancelSubscription` (`cancel`) or `resumeSubscription` (`!cancel`).
///
/// Canceling: no renewal expected; access continues to the period end, and canceling twice
/// keeps the first cancellation time. Resuming takes a cancellation back while the paid time
/// runs (renewal reminders and the past-due and grace days apply again); a subscription that
/// is not canceled stays as it is, one whose canceled time ended is `SUBSCRIPTION_EXPIRED`.
pub(crate) async fn set_canceled(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
    cancel: bool,
    now: i64,
) -> Result<Value, GatedError> {
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
    Ok(json!({ "subscription": crate::access::subscription_view(&sub, now, &plans) }))
}

/// `startTrial`: the plan's free trial, once per subscriber and only before any
/// subscription (paid or trial) exists. Asking again for the trial just started returns it.
/// A tenant trial gives the tenant the plan's seats, like a paid tenant plan.
pub(crate) async fn start_trial(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
    plan_id: &str,
    now: i64,
) -> Result<Value, GatedError> {
    let id = managed_subject(tenancy, caller, scope).await?;
    let plans = Plans::load(store).await?;
    let plan = plan_for(&plans, plan_id, scope)?;
    if plan.trial_days == 0 {
        return Err(GatedError::TrialUnavailable(format!(
            "plan {plan_id} has no free trial"
        )));
    }
    if scope == Scope::Tenant && load_subscription(store, &id).await?.is_none() {
        claim_team_trial(store, &caller.openid, &id, &plan.id, now).await?;
    }
    let trial = Subscription::start(&plan, now, true);
    let doc = wemint::commerce::new_subscription_doc(&id, &trial, &plan.id)
        .map_err(|e| GatedError::Store(StoreError::InvalidDocument(e.to_string())))?;
    let sub = match store.insert(c::SUBSCRIPTIONS, doc).await {
        Ok(_) => {
            tracing::info!(subscription = %id, plan = plan_id, "free trial started");
            trial
        }
        Err(StoreError::DuplicateKey { .. }) => {
            let existing = load_subscription(store, &id)
                .await?
                .ok_or(GatedError::SubscriptionNotFound(scope.name()))?
                .sub;
            // The same request again (a retry): the trial it started, unchanged.
            let only_this_trial = existing.applied_orders.is_empty()
                && matches!(existing.segments.as_slice(), [s] if s.trial && s.plan == plan.id);
            if !only_this_trial {
                return Err(GatedError::TrialUnavailable(
                    "the free trial is only for a first subscription".into(),
                ));
            }
            existing
        }
        Err(e) => return Err(e.into()),
    };
    set_tenant_plan(tenancy, &id, &plan).await?;
    Ok(json!({ "subscription": crate::access::subscription_view(&sub, now, &plans) }))
}

/// The daily sweep's second half: a tenant whose plan subscription no longer gives access
/// (expired, or never existed) loses the plan and its seat cap, so the tenant shows no plan
/// and is back to the no-plan rules, as before its first purchase. Access never depended on
/// this (it is derived from the subscription); what it fixes is what the tenant displays
/// and what invitations are checked against.
pub(crate) async fn expire_tenant_plans(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    now: i64,
) -> Result<u32, GatedError> {
    let with_plan = store
        .find(
            c::TENANTS,
            &Filter::exists("plan", true),
            &wemint::store::FindOptions::new().limit(500),
        )
        .await?;
    let plans = Plans::load(store).await?;
    let mut expired = 0;
    for tenant in with_plan {
        let Some(id) = tenant.get("_id").and_then(Value::as_str) else {
            continue;
        };
        let running = load_subscription(store, &subject(Scope::Tenant, id))
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
) -> Result<(), GatedError> {
    let claim = json!({"_id": format!("owner:{openid}"), "openid": openid,
        "subscriber": subject, "plan": plan, "claimedAt": now});
    match store.insert(c::TRIAL_CLAIMS, claim).await {
        Ok(_) => Ok(()),
        Err(StoreError::DuplicateKey { .. }) => {
            let existing = store
                .get(c::TRIAL_CLAIMS, &format!("owner:{openid}"))
                .await?;
            if existing.is_some_and(|d| d["subscriber"] == json!(subject)) {
                Ok(())
            } else {
                Err(GatedError::TrialUnavailable(
                    "one team trial per person: this account already started one for another team"
                        .into(),
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The plan `id`, which must be of the scope's kind (tenant plans have seats).
fn plan_for(plans: &Plans, id: &str, scope: Scope) -> Result<Plan, GatedError> {
    let plan = plans
        .get(id)
        .ok_or_else(|| GatedError::PlanNotFound(id.to_owned()))?;
    if plan.seats.is_some() != (scope == Scope::Tenant) {
        return Err(GatedError::PlanChangeInvalid(format!(
            "plan {id} is not a {} plan",
            scope.name()
        )));
    }
    Ok(plan)
}

/// For a tenant subscription (`tenant:<id>`), gives the tenant `plan` and its seats (what
/// inviting members is checked against), as a paid tenant plan does.
async fn set_tenant_plan(tenancy: &Tenancy, subject: &str, plan: &Plan) -> Result<(), GatedError> {
    let Some(tenant) = subject.strip_prefix("tenant:") else {
        return Ok(());
    };
    tenancy
        .set_plan(tenant, Some(plan.id.as_str()), plan.seats)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            TenancyError::Store(e) => GatedError::Store(e),
            other => GatedError::Forbidden(other.to_string()),
        })
}

fn plan_change_error(e: SubscriptionError) -> GatedError {
    match e {
        SubscriptionError::Expired => GatedError::SubscriptionExpired,
        SubscriptionError::UnknownPlan(p) => GatedError::PlanNotFound(p),
        other => GatedError::PlanChangeInvalid(other.to_string()),
    }
}

/// `changePlan`: a lower tier is scheduled for the period end (`renewPlan`); a higher tier
/// is quoted (the prorated difference in fen for the rest of the paid time) and bought
/// through createOrder; the current plan again undoes a scheduled downgrade.
pub(crate) async fn change_plan(
    store: &Arc<dyn Store>,
    tenancy: &Tenancy,
    caller: &Caller,
    scope: Scope,
    to: &str,
    now: i64,
) -> Result<Value, GatedError> {
    let id = managed_subject(tenancy, caller, scope).await?;
    let plans = Plans::load(store).await?;
    let target = plan_for(&plans, to, scope)?;
    let stored = load_subscription(store, &id)
        .await?
        .ok_or(GatedError::SubscriptionNotFound(scope.name()))?;
    let lookup = plans.lookup();
    let current_id = stored
        .sub
        .plan_at(now, &lookup)
        .ok_or(GatedError::SubscriptionExpired)?;
    let current = plans
        .get(&current_id)
        .ok_or_else(|| GatedError::PlanNotFound(current_id.clone()))?;
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
                "subscription": crate::access::subscription_view(&sub, now, &plans),
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
            "subscription": crate::access::subscription_view(&stored.sub, now, &plans),
        }));
    }
    let (sub, change, _) = modify(store, &id, scope, now, &plans, |sub| {
        if target.id == current_id {
            if sub.renew_plan == target.id {
                return Err(GatedError::PlanChangeInvalid(format!(
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
        "subscription": crate::access::subscription_view(&sub, now, &plans),
    }))
}
