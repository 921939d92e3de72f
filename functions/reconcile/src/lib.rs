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
//!
//! Its `daily-bills` trigger (10:30 China time) reconciles the previous day against WeChat
//! Pay's bills (`wemint::finance`); administrators run it for any day of the last three
//! months (`billsRun`) and read the results (`revenueReport`, `discrepancies`,
//! `resolveDiscrepancy`, `financeExport`).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use wemint::commerce::{CALL_BUDGET, Commerce};
use wemint::complaints::Complaints;
use wemint::finance::{self, BillSource, Finance};
use wemint::funnel::{FunnelSettings, notices, touches};
use wemint::identity::Authenticator;
use wemint::runtime::{ApiError, BoxError, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "reconcile";
/// The timer trigger that reconciles yesterday's bills (`cloudbaserc.json`).
pub const DAILY_BILLS_TRIGGER: &str = "daily-bills";

/// Template messages one run sends at most (the funnel step's budget of WeChat calls).
pub const FUNNEL_SEND_BUDGET: u32 = 50;
/// Paid orders one run attributes at most (store work only).
pub const FUNNEL_ATTRIBUTION_BUDGET: u64 = 100;

/// Built once per instance.
pub struct State {
    commerce: Arc<Commerce>,
    complaints: Complaints,
    finance: Finance,
    auth: Authenticator,
    store: Arc<dyn wemint::store::Store>,
    clock: wemint::clock::SharedClock,
    /// The Official Account funnel, when `WX_OA_APPID`/`WX_OA_APPSECRET` are set.
    funnel: Option<(wemint::wechat::WechatClient, FunnelSettings)>,
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    let commerce = Arc::new(deps.commerce());
    let source = deps
        .wechat_pay
        .clone()
        .map(|pay| pay as Arc<dyn BillSource>);
    Ok(State {
        complaints: deps.complaints(),
        finance: Finance::new(Arc::clone(&commerce), source),
        commerce,
        funnel: deps.funnel(&config)?,
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
        store: deps.store,
        clock: deps.clock,
    })
}

/// Provider calls a run may spend on complaint reminders (re-reading each complaint before
/// reminding): they come first, because a missed first reply costs the merchant.
pub const COMPLAINT_CALLS: u32 = 10;

/// One run: complaint reminders, then the order steps within what is left of the budget,
/// then (when the Official Account is configured) the funnel: paid orders still without
/// attribution, and the template messages due.
async fn run(state: &State) -> Result<Value, ApiError> {
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
            run(&state).await
        })
        .callable("run", |state: Arc<State>, req| async move {
            let caller = state.auth.caller(&req)?;
            state.commerce.require_admin(&caller).await?;
            run(&state).await
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
