//! The `reconcile` function (timer-triggered, e.g. every minute): one pass of
//! `wemint::commerce::Commerce::reconcile`. Closes expired unpaid orders and releases their
//! stock, asks WeChat Pay / virtual payment about unpaid orders whose notification may have
//! been lost and fulfils the paid ones, finishes interrupted fulfilments, and re-sends refunds
//! still processing. Every change is a conditional update, so overlapping runs and concurrent
//! notifications are safe. A run makes at most `wemint::commerce::CALL_BUDGET` provider calls,
//! shared by the steps in turns, and reports each step's counters.
//!
//! Also callable as `run` by a project administrator (manual trigger from the console).

use std::sync::Arc;

use serde_json::{Value, json};
use wemint::commerce::Commerce;
use wemint::funnel::{FunnelSettings, notices, touches};
use wemint::identity::Authenticator;
use wemint::runtime::{ApiError, BoxError, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "reconcile";

/// Template messages one run sends at most (the funnel step's budget of WeChat calls).
pub const FUNNEL_SEND_BUDGET: u32 = 50;
/// Paid orders one run attributes at most (store work only).
pub const FUNNEL_ATTRIBUTION_BUDGET: u64 = 100;

/// Built once per instance.
pub struct State {
    commerce: Commerce,
    auth: Authenticator,
    store: Arc<dyn wemint::store::Store>,
    clock: wemint::clock::SharedClock,
    /// The Official Account funnel, when `WX_OA_APPID`/`WX_OA_APPSECRET` are set.
    funnel: Option<(wemint::wechat::WechatClient, FunnelSettings)>,
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    Ok(State {
        commerce: deps.commerce(),
        funnel: deps.funnel(&config)?,
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
        store: deps.store,
        clock: deps.clock,
    })
}

/// One run: the commerce steps, then (when the Official Account is configured) the funnel:
/// paid orders still without attribution, and the template messages due.
async fn run(state: &State) -> Result<Value, ApiError> {
    let report = state.commerce.reconcile().await?;
    let mut out = serde_json::to_value(&report).map_err(ApiError::internal)?;
    if let Some((oa, settings)) = &state.funnel {
        let now = state.clock.now_unix();
        let attributed =
            touches::attribute_pending(state.store.as_ref(), now, FUNNEL_ATTRIBUTION_BUDGET)
                .await?;
        let messages =
            notices::send_due(&state.store, oa, settings, &state.clock, FUNNEL_SEND_BUDGET).await?;
        tracing::info!(attributed, ?messages, "funnel step");
        out["funnel"] = json!({"attributed": attributed, "messages": messages});
    }
    Ok(out)
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .timer(|state: Arc<State>, timer| async move {
            tracing::info!(trigger = %timer.trigger_name, "reconcile triggered");
            run(&state).await
        })
        .callable("run", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            run(&state).await
        })
        .default_action("run")
}

#[cfg(test)]
mod tests;
