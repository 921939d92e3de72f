//! The `reconcile` function (timer-triggered, e.g. every minute): one pass of
//! `wemint::commerce::Commerce::reconcile`. Closes expired unpaid orders and releases their
//! stock, asks WeChat Pay / virtual payment about unpaid orders whose notification may have
//! been lost and fulfils the paid ones, finishes interrupted fulfilments, and re-sends refunds
//! still processing. Every change is a conditional update, so overlapping runs and concurrent
//! notifications are safe. A run makes at most `wemint::commerce::CALL_BUDGET` provider calls,
//! shared by the steps in turns, and reports each step's counters.
//!
//! Also callable as `run` by a project administrator (manual trigger from the console).
//!
//! Its `daily-bills` trigger (10:30 China time) reconciles the previous day against WeChat
//! Pay's bills (`wemint::finance`); administrators run it for any day of the last three
//! months (`billsRun`) and read the results (`revenueReport`, `discrepancies`,
//! `resolveDiscrepancy`, `financeExport`).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use wemint::commerce::Commerce;
use wemint::finance::{self, BillSource, Finance};
use wemint::identity::Authenticator;
use wemint::runtime::{ApiError, BoxError, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "reconcile";
/// The timer trigger that reconciles yesterday's bills (`cloudbaserc.json`).
pub const DAILY_BILLS_TRIGGER: &str = "daily-bills";

/// Built once per instance.
pub struct State {
    commerce: Arc<Commerce>,
    finance: Finance,
    auth: Authenticator,
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    let commerce = Arc::new(deps.commerce());
    let source = deps
        .wechat_pay
        .clone()
        .map(|pay| pay as Arc<dyn BillSource>);
    Ok(State {
        finance: Finance::new(Arc::clone(&commerce), source),
        commerce,
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DayInput {
    /// `yyyy-MM-dd`; default yesterday (China time).
    #[serde(default)]
    date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RangeInput {
    /// First day, default 29 days before `to`.
    #[serde(default)]
    from: Option<String>,
    /// Last day, default yesterday.
    #[serde(default)]
    to: Option<String>,
    /// `open`, `repaired`, `resolved` (discrepancies only).
    #[serde(default)]
    status: Option<String>,
    /// `revenue` or `discrepancies` (export only).
    #[serde(default)]
    what: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResolveInput {
    id: String,
    #[serde(default)]
    note: String,
}

fn range(state: &State, input: &RangeInput) -> Result<(String, String), ApiError> {
    let to = input
        .to
        .clone()
        .unwrap_or_else(|| state.finance.yesterday());
    let end = finance::china_day_start(&to)
        .ok_or_else(|| ApiError::bad_request("to must be yyyy-MM-dd"))?;
    let from = match &input.from {
        Some(f) => f.clone(),
        None => finance::china_date(end - 29 * 86_400),
    };
    let start = finance::china_day_start(&from)
        .ok_or_else(|| ApiError::bad_request("from must be yyyy-MM-dd"))?;
    if start > end || end - start > 366 * 86_400 {
        return Err(ApiError::bad_request(
            "from..to must be at most a year, in order",
        ));
    }
    Ok((from, to))
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .timer(|state: Arc<State>, timer| async move {
            tracing::info!(trigger = %timer.trigger_name, "reconcile triggered");
            if timer.trigger_name == DAILY_BILLS_TRIGGER {
                let day = state.finance.yesterday();
                let report = state
                    .finance
                    .reconcile_day(&day)
                    .await
                    .map_err(ApiError::from)?;
                return Ok::<_, ApiError>(finance::day_report_view(&report));
            }
            Ok::<_, ApiError>(json!(state.commerce.reconcile().await?))
        })
        .callable("run", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            Ok::<_, ApiError>(state.commerce.reconcile().await?)
        })
        .callable("billsRun", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            let input: DayInput = req.parse()?;
            let day = input.date.unwrap_or_else(|| state.finance.yesterday());
            let report = state.finance.reconcile_day(&day).await?;
            Ok::<_, ApiError>(finance::day_report_view(&report))
        })
        .callable("revenueReport", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            let input: RangeInput = req.parse()?;
            let (from, to) = range(&state, &input)?;
            let rows = finance::revenue(state.commerce.store().as_ref(), &from, &to).await?;
            Ok::<_, ApiError>(json!({"from": from, "to": to, "days": rows}))
        })
        .callable("discrepancies", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            let input: RangeInput = req.parse()?;
            let list = state
                .finance
                .discrepancies(
                    input.status.as_deref(),
                    input.from.as_deref(),
                    input.to.as_deref(),
                    500,
                )
                .await?;
            Ok::<_, ApiError>(json!({"discrepancies": list}))
        })
        .callable("resolveDiscrepancy", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            let input: ResolveInput = req.parse()?;
            let done = state
                .finance
                .resolve(&input.id, &caller.openid, &input.note)
                .await?;
            Ok::<_, ApiError>(json!({"discrepancy": done}))
        })
        .callable("financeExport", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            let input: RangeInput = req.parse()?;
            let (from, to) = range(&state, &input)?;
            let csv = match input.what.as_deref().unwrap_or("revenue") {
                "revenue" => finance::csv_revenue(
                    &finance::revenue(state.commerce.store().as_ref(), &from, &to).await?,
                ),
                "discrepancies" => finance::csv_discrepancies(
                    &state
                        .finance
                        .discrepancies(input.status.as_deref(), Some(&from), Some(&to), 1000)
                        .await?,
                ),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "what must be revenue or discrepancies, not {other:?}"
                    )));
                }
            };
            Ok::<_, ApiError>(json!({"from": from, "to": to, "filename":
                format!("wemint-{}-{from}-{to}.csv", input.what.as_deref().unwrap_or("revenue")),
                "csv": csv}))
        })
        .default_action("run")
}

#[cfg(test)]
mod tests;
