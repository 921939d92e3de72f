//! The `reconcile` function (timer-triggered, e.g. every minute): one pass of
//! `wemint::commerce::Commerce::reconcile`. Closes expired unpaid orders and releases their
//! stock, asks WeChat Pay / virtual payment about unpaid orders whose notification may have
//! been lost and fulfils the paid ones, finishes interrupted fulfilments, and re-sends refunds
//! still processing. Every change is a conditional update, so overlapping runs and concurrent
//! notifications are safe. A run makes at most `wemint::commerce::CALL_BUDGET` provider calls,
//! shared by the steps in turns, and reports each step's counters.
//!
//! Each run first reminds administrators of consumer complaints whose first reply is due within
//! 4 hours (`wemint::complaints::Complaints::remind_due`, at most
//! [`COMPLAINT_CALLS`] of the run's provider calls, reported as `complaints`); the order
//! steps share the rest of the budget.
//!
//! Also callable as `run` by a project administrator (manual trigger from the console).

use std::sync::Arc;

use wemint::commerce::{CALL_BUDGET, Commerce};
use wemint::complaints::Complaints;
use wemint::identity::Authenticator;
use wemint::runtime::{ApiError, BoxError, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "reconcile";

/// Built once per instance.
pub struct State {
    commerce: Commerce,
    complaints: Complaints,
    auth: Authenticator,
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    Ok(State {
        commerce: deps.commerce(),
        complaints: deps.complaints(),
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
    })
}

/// Provider calls a run may spend on complaint reminders (re-reading each complaint before
/// reminding): they come first, because a missed first reply costs the merchant.
pub const COMPLAINT_CALLS: u32 = 10;

/// One run: complaint reminders, then the order steps within what is left of the budget.
async fn run(state: &State) -> Result<serde_json::Value, ApiError> {
    let reminders = match state.complaints.remind_due(COMPLAINT_CALLS).await {
        Ok(report) => serde_json::to_value(report).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "reconcile: complaint reminders");
            serde_json::json!({ "error": e.to_string() })
        }
    };
    let used = reminders["providerCalls"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let report = state
        .commerce
        .reconcile_within(CALL_BUDGET.saturating_sub(used))
        .await?;
    let mut out = serde_json::to_value(report).unwrap_or_default();
    out["complaints"] = reminders;
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
