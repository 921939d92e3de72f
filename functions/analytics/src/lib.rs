//! The `analytics` function (issue 20, `docs/analytics.md`): the Mini Program's behaviour
//! events and the admin dashboard, in a function of its own so that the busiest callable
//! never competes with the money paths for instances, memory or rate limits, and so that its
//! timers keep `reconcile`'s environment untouched.
//!
//! - `track` (any signed-in user): a batch of events, validated against the schema and
//!   capped; bad input is dropped with counted reasons, never an error.
//! - `dashboard`, `aggregateRun` (project administrators).
//! - Timers: `every-minute` copies new backend facts from the event stream;
//!   `daily-analytics` (02:30 China time) aggregates yesterday and drops raw events past
//!   `ANALYTICS_RETENTION_DAYS`.
//! - CRM (`wemint::crm`, `docs/crm.md`): `crmExport` and `wechatPull` (project
//!   administrators); `every-minute` also folds changed customers into their records and
//!   pushes them to `CRM_WEBHOOK_URL`; `daily-analytics` also purges delivered pushes and
//!   pulls yesterday's WeChat datacube.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use wemint::analytics::Analytics;
use wemint::identity::{Authenticator, Caller};
use wemint::runtime::{ApiError, BoxError, CallRequest, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "analytics";
/// The timer trigger that copies backend facts (`cloudbaserc.json`).
pub const EVERY_MINUTE_TRIGGER: &str = "every-minute";
/// The timer trigger that aggregates yesterday and drops old raw events.
pub const DAILY_TRIGGER: &str = "daily-analytics";
/// Stream events one `every-minute` run copies at most.
pub const FACTS_PER_RUN: u64 = 500;

/// Built once per instance.
pub struct State {
    analytics: Analytics,
    auth: Authenticator,
    // crm: customer records, CRM webhook, WeChat datacube.
    crm: wemint::crm::Crm,
    datacube: wemint::crm::Datacube,
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    // crm: records and webhook (`CRM_WEBHOOK_*`), datacube through the shared token.
    let crm = deps.crm(&config)?;
    let datacube =
        wemint::crm::Datacube::new(deps.store.clone(), deps.clock.clone(), deps.wechat.clone());
    Ok(State {
        crm,
        datacube,
        analytics: deps.analytics(&config)?,
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
    })
}

/// The caller, who must be a project administrator.
async fn admin(state: &State, req: &CallRequest) -> Result<Caller, ApiError> {
    let caller = state.auth.caller(req)?;
    let store = state.analytics.store();
    if wemint::identity::is_stored_admin(store.as_ref(), &caller.openid)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(caller)
    } else {
        Err(ApiError::forbidden("administrators only"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DashboardInput {
    /// 1..=90, default 30.
    #[serde(default)]
    days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DayInput {
    /// `yyyy-MM-dd`; default yesterday (China time).
    #[serde(default)]
    date: Option<String>,
}

/// The daily run: aggregate yesterday (and today so far, so a dashboard read during the day
/// is fresh), then drop raw events past the retention.
async fn daily(state: &State) -> Result<Value, ApiError> {
    let analytics = &state.analytics;
    let facts = analytics
        .copy_facts(FACTS_PER_RUN)
        .await
        .map_err(ApiError::internal)?;
    let yesterday = analytics.aggregate(&analytics.yesterday()).await?;
    let purged = analytics.purge().await.map_err(ApiError::internal)?;
    let out = json!({"facts": facts, "aggregated": yesterday, "purged": purged});
    let out = crm_daily(state, out).await;
    Ok(out)
}

/// The every-minute run: copy new facts.
async fn every_minute(state: &State) -> Result<Value, ApiError> {
    let facts = state
        .analytics
        .copy_facts(FACTS_PER_RUN)
        .await
        .map_err(ApiError::internal)?;
    let out = json!({"facts": facts});
    let out = crm_every_minute(state, out).await;
    Ok(out)
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .timer(|state: Arc<State>, timer| async move {
            tracing::info!(trigger = %timer.trigger_name, "analytics triggered");
            if timer.trigger_name == DAILY_TRIGGER {
                return daily(&state).await;
            }
            every_minute(&state).await
        })
        .callable("track", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            let reply = state
                .analytics
                .track(&caller.openid, &req.data)
                .await
                .map_err(ApiError::internal)?;
            Ok::<_, ApiError>(serde_json::to_value(reply).unwrap_or_default())
        })
        .callable("dashboard", |state: Arc<State>, req| async move {
            admin(&state, &req).await?;
            let input: DashboardInput = req.parse()?;
            let view = state.analytics.dashboard(input.days.unwrap_or(30)).await?;
            Ok::<_, ApiError>(view)
        })
        .callable("aggregateRun", |state: Arc<State>, req| async move {
            admin(&state, &req).await?;
            let input: DayInput = req.parse()?;
            let day = input.date.unwrap_or_else(|| state.analytics.yesterday());
            state
                .analytics
                .copy_facts(FACTS_PER_RUN)
                .await
                .map_err(ApiError::internal)?;
            let report = state.analytics.aggregate(&day).await?;
            Ok::<_, ApiError>(serde_json::to_value(report).unwrap_or_default())
        })
        // crm: the customer export and the datacube pull (project administrators).
        .callable("crmExport", |state: Arc<State>, req| async move {
            admin(&state, &req).await?;
            let _: NoInput = req.parse()?;
            let export = state.crm.export().await.map_err(ApiError::internal)?;
            Ok::<_, ApiError>(export)
        })
        .callable("wechatPull", |state: Arc<State>, req| async move {
            admin(&state, &req).await?;
            let input: DayInput = req.parse()?;
            let day = input.date.unwrap_or_else(|| state.datacube.yesterday());
            Ok::<_, ApiError>(state.datacube.pull(&day).await?)
        })
}

// crm: the timer steps and inputs of the CRM records, webhook and datacube.

/// `crmExport` takes no fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoInput {}

/// Every minute: customers changed since the cursors recomputed (plus the next slice of the
/// rolling pass over every record), then pushed to the CRM webhook (when configured). A failure is logged and reported, not raised: the facts copy
/// above already happened, and the next minute goes on from the cursors.
async fn crm_every_minute(state: &State, mut out: Value) -> Value {
    out["crm"] = match state.crm.minute().await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error = %e, "crm step failed");
            json!({"error": e.to_string()})
        }
    };
    out
}

/// Daily: old delivered webhook entries purged, and yesterday's WeChat datacube pulled (with
/// the retention of earlier days refreshed).
async fn crm_daily(state: &State, mut out: Value) -> Value {
    out["crm"] = match state.crm.daily().await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error = %e, "crm daily step failed");
            json!({"error": e.to_string()})
        }
    };
    out["datacube"] = state.datacube.daily().await;
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod crm_tests;
