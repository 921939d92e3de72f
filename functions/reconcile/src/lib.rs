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

use wemint::commerce::Commerce;
use wemint::identity::Authenticator;
use wemint::runtime::{ApiError, BoxError, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "reconcile";

/// Built once per instance.
pub struct State {
    commerce: Commerce,
    auth: Authenticator,
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    Ok(State {
        commerce: deps.commerce(),
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
    })
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .timer(|state: Arc<State>, timer| async move {
            tracing::info!(trigger = %timer.trigger_name, "reconcile triggered");
            Ok::<_, ApiError>(state.commerce.reconcile().await?)
        })
        .callable("run", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            Ok::<_, ApiError>(state.commerce.reconcile().await?)
        })
        .default_action("run")
}

#[cfg(test)]
mod tests;
