//! Loading and saving `subscriptions` documents, and the paid-time operations commerce runs on
//! them. Every write goes through [`save`], so the stored fields are always the same list.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::domain::subscription::{Applied, Plan, Revoked, Subscription};
use crate::store::collections::{PLANS, SUBSCRIPTIONS};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

/// How many times an optimistic subscription write is retried under contention.
pub(super) const WRITE_RETRIES: usize = 8;

/// The `version` a subscription was read at; its writes are conditional on it. A document
/// written without one matches `version: null`.
#[derive(Clone, Debug, PartialEq)]
pub struct Version(Value);

/// A subscription as stored, with the version its conditional writes check.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The subscription.
    pub sub: Subscription,
    /// What a write of it is conditional on.
    pub version: Version,
}

/// The subscription `id` (an openid, or `tenant:<id>`).
///
/// # Errors
/// The store failed, or the document does not fit [`Subscription`].
pub async fn load(store: &Arc<dyn Store>, id: &str) -> Result<Option<Stored>, StoreError> {
    let Some(doc) = store.get(SUBSCRIPTIONS, id).await? else {
        return Ok(None);
    };
    let version = Version(doc.get("version").cloned().unwrap_or(Value::Null));
    let sub = serde_json::from_value(doc)
        .map_err(|e| StoreError::InvalidDocument(format!("subscription {id} does not fit: {e}")))?;
    Ok(Some(Stored { sub, version }))
}

/// The plan of the latest covered time: what the stored `plan` field says.
fn latest_plan(sub: &Subscription) -> &str {
    sub.segments
        .last()
        .map_or(sub.renew_plan.as_str(), |s| s.plan.as_str())
}

/// Writes subscription `id`: a new document (at version 1) when `base` is `None`, else its time
/// and plan fields on condition that the stored version is still `base`. Returns whether it was
/// written (false: someone else wrote first, or the document already exists; load again and
/// retry). Besides the serialized subscription, the document keeps `subscriber`, `plan` (the
/// plan of the latest covered time) and `periodEndAt` (what the reminder timer queries).
///
/// # Errors
/// The store failed.
pub async fn save(
    store: &Arc<dyn Store>,
    id: &str,
    base: Option<&Version>,
    sub: &Subscription,
) -> Result<bool, StoreError> {
    let body = serde_json::to_value(sub).map_err(|e| StoreError::InvalidDocument(e.to_string()))?;
    let Some(Version(version)) = base else {
        let mut doc = body;
        doc["_id"] = json!(id);
        doc["subscriber"] = json!(id);
        doc["plan"] = json!(latest_plan(sub));
        doc["periodEndAt"] = json!(sub.period_end());
        doc["version"] = json!(1);
        return match store.insert(SUBSCRIPTIONS, doc).await {
            Ok(_) => Ok(true),
            Err(StoreError::DuplicateKey { .. }) => Ok(false),
            Err(e) => Err(e),
        };
    };
    let mut update = Update::new()
        .set("segments", body["segments"].clone())
        .set("renewPlan", body["renewPlan"].clone())
        .set("appliedOrders", body["appliedOrders"].clone())
        .set("revokedOrders", json!(sub.revoked_orders))
        .set("plan", latest_plan(sub))
        .set("periodEndAt", json!(sub.period_end()))
        .inc("version", 1);
    update = match sub.canceled_at {
        Some(at) => update.set("canceledAt", at),
        None => update.unset("canceledAt"),
    };
    Ok(store
        .update_one(
            SUBSCRIPTIONS,
            &Filter::id(id).and(Filter::eq("version", version.clone())),
            &update,
            UpdateOptions::default(),
        )
        .await?
        .is_some())
}

pub(super) fn kept_changing(id: &str) -> StoreError {
    StoreError::Backend(format!(
        "subscription {id} kept changing; giving up after {WRITE_RETRIES} tries"
    ))
}

/// The plan `id` from `plans`.
///
/// # Errors
/// The store failed, or the document does not fit [`Plan`].
pub async fn plan(store: &Arc<dyn Store>, id: &str) -> Result<Option<Plan>, StoreError> {
    store.get_as::<Plan>(PLANS, id).await
}

/// `plan` and every plan `sub`'s covered time names, by id: what the rules look plans up in.
///
/// # Errors
/// The store failed.
pub async fn plans_for(
    store: &Arc<dyn Store>,
    sub: &Subscription,
    plan: &Plan,
) -> Result<HashMap<String, Plan>, StoreError> {
    let mut plans = HashMap::new();
    plans.insert(plan.id.clone(), plan.clone());
    for segment in &sub.segments {
        if !plans.contains_key(&segment.plan)
            && let Some(p) = self::plan(store, &segment.plan).await?
        {
            plans.insert(p.id.clone(), p);
        }
    }
    Ok(plans)
}

/// Every plan, by id (a small collection, read per request so price and tier edits apply at
/// once).
#[derive(Clone, Debug, Default)]
pub struct Plans(HashMap<String, Plan>);

impl Plans {
    /// Reads every plan.
    ///
    /// # Errors
    /// The store failed.
    pub async fn load(store: &Arc<dyn Store>) -> Result<Self, StoreError> {
        let plans: Vec<Plan> = store
            .find_as(PLANS, &Filter::All, &FindOptions::new().limit(1000))
            .await?;
        Ok(Plans(
            plans.into_iter().map(|p| (p.id.clone(), p)).collect(),
        ))
    }

    /// The plan `id`.
    pub fn get(&self, id: &str) -> Option<Plan> {
        self.0.get(id).cloned()
    }

    /// The lookup the rules in [`crate::domain::subscription`] take.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<Plan> + '_ {
        move |id| self.get(id)
    }
}

/// Adds `periods` paid periods of `plan` to the subscription of `subscriber` (starting one when
/// there is none), once per order: the keys are `order_id`, then `<order_id>#2`… for quantities
/// above one. Returns the period end afterwards.
///
/// # Errors
/// The store failed, or the subscription kept changing under the conditional write.
pub async fn renew(
    store: &Arc<dyn Store>,
    subscriber: &str,
    plan: &Plan,
    order_id: &str,
    periods: u32,
    paid_at: i64,
) -> Result<i64, StoreError> {
    for _ in 0..WRITE_RETRIES {
        let (mut sub, version) = match load(store, subscriber).await? {
            Some(Stored { sub, version }) => (sub, Some(version)),
            None => (Subscription::start(plan, paid_at, false), None),
        };
        let plans = plans_for(store, &sub, plan).await?;
        let lookup = |id: &str| plans.get(id).cloned();
        let mut changed = false;
        for i in 0..periods.max(1) {
            let key = if i == 0 {
                order_id.to_owned()
            } else {
                format!("{order_id}#{}", i + 1)
            };
            if let Applied::Extended { .. } = sub.apply_renewal(plan, &key, paid_at, &lookup) {
                changed = true;
            }
        }
        let until = sub.period_end().unwrap_or(paid_at);
        if !changed {
            return Ok(until);
        }
        if save(store, subscriber, version.as_ref(), &sub).await? {
            tracing::info!(subject = subscriber, plan = %plan.id, until, order = order_id, "subscription extended");
            return Ok(until);
        }
    }
    Err(kept_changing(subscriber))
}

/// Moves the time `[from, until)` of `subscriber`'s subscription to `target`, once per `key`
/// (an upgrade order's id). Returns the subscription with the upgrade in (applied now or
/// before), or, inside `Ok`, why it cannot be applied (no subscription any more, or the window
/// no longer fits).
///
/// # Errors
/// The store failed, or the subscription kept changing under the conditional write.
pub async fn apply_upgrade(
    store: &Arc<dyn Store>,
    subscriber: &str,
    target: &Plan,
    key: &str,
    from: i64,
    until: i64,
) -> Result<Result<Subscription, String>, StoreError> {
    for _ in 0..WRITE_RETRIES {
        let Some(Stored { mut sub, version }) = load(store, subscriber).await? else {
            return Ok(Err("the subscription no longer exists".into()));
        };
        let plans = plans_for(store, &sub, target).await?;
        let lookup = |id: &str| plans.get(id).cloned();
        match sub.apply_upgrade(target, key, from, until, &lookup) {
            Ok(Applied::AlreadyApplied) => return Ok(Ok(sub)),
            Ok(_) => {
                if save(store, subscriber, Some(&version), &sub).await? {
                    tracing::info!(subscriber, plan = %target.id, from, until, order = key, "subscription upgraded");
                    return Ok(Ok(sub));
                }
            }
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    Err(kept_changing(subscriber))
}

/// Applies `revoke` (taking a refunded order's time back) to `subscriber`'s subscription.
/// Returns the covered time's end afterwards (`None`: no subscription, or nothing left).
///
/// # Errors
/// The store failed, or the subscription kept changing under the conditional write.
pub async fn revoke(
    store: &Arc<dyn Store>,
    subscriber: &str,
    revoke: impl Fn(&mut Subscription) -> Revoked,
) -> Result<Option<i64>, StoreError> {
    for _ in 0..WRITE_RETRIES {
        let Some(Stored { mut sub, version }) = load(store, subscriber).await? else {
            return Ok(None);
        };
        match revoke(&mut sub) {
            Revoked::NotApplied | Revoked::AlreadyRevoked => return Ok(sub.period_end()),
            Revoked::Done { period_end } => {
                if save(store, subscriber, Some(&version), &sub).await? {
                    tracing::info!(subscriber, ?period_end, "refunded time taken back");
                    return Ok(period_end);
                }
            }
        }
    }
    Err(kept_changing(subscriber))
}

/// The subscriptions whose covered time ends in `(after, until]`, soonest first, at most
/// `limit`, with their ids. A document that does not fit is logged and skipped.
///
/// # Errors
/// The store failed.
pub async fn ending_between(
    store: &Arc<dyn Store>,
    after: i64,
    until: i64,
    limit: u64,
) -> Result<Vec<(String, Subscription)>, StoreError> {
    let docs = store
        .find(
            SUBSCRIPTIONS,
            &Filter::gt("periodEndAt", after).and(Filter::lte("periodEndAt", until)),
            &FindOptions::new().sort_asc("periodEndAt").limit(limit),
        )
        .await?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let id = doc["_id"].as_str().unwrap_or_default().to_owned();
        match serde_json::from_value::<Subscription>(doc) {
            Ok(sub) => out.push((id, sub)),
            Err(_) => {
                tracing::warn!(subscription = %id, "subscription document does not fit; skipped");
            }
        }
    }
    Ok(out)
}
