//! The `createOrder` function: the catalog, checkout and the buyer's orders; refunds, order
//! search, shipping and consumer complaints (`wemint::complaints`) for administrators.
//! Contract: `docs/api.md` (createOrder); the logic lives in
//! `wemint::commerce` so payNotify, reconcile and wxPush share it.

use std::sync::Arc;

use serde::Deserialize;
use wemint::commerce::{
    Commerce, CreateInput, ListInput, RefundInput, RemindReceiptInput, SearchInput, ShipInput,
    ShipmentsInput,
};
use wemint::complaints::{self, Complaints};
use wemint::identity::{Authenticator, Caller};
use wemint::ratelimit::{Limit, RateLimiter};
use wemint::runtime::{ApiError, BoxError, CallRequest, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "createOrder";

/// Checkouts per buyer per minute: a person retries a few times, a script hundreds (each
/// checkout writes an order and may call WeChat Pay).
pub const CREATE_LIMIT: Limit = Limit::per_minute(20);

/// Shipping-state refreshes per caller per minute (each asks WeChat's `get_order`).
pub const SYNC_SHIPPING_LIMIT: Limit = Limit::per_minute(10);

/// Built once per instance.
pub struct State {
    commerce: Commerce,
    complaints: Complaints,
    auth: Authenticator,
    limits: RateLimiter,
}

impl State {
    fn caller(&self, req: &CallRequest) -> Result<Caller, ApiError> {
        self.auth.caller(req)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderRef {
    order_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComplaintRef {
    complaint_id: String,
}

#[derive(Deserialize, Default)]
struct CatalogInput {
    #[serde(default)]
    kind: Option<String>,
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    Ok(State {
        commerce: deps.commerce(),
        complaints: deps.complaints(),
        limits: RateLimiter::new(deps.store).with_clock(deps.clock),
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
    })
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .callable("create", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: CreateInput = req.parse()?;
            s.limits
                .check(&caller.openid, "createOrder.create", CREATE_LIMIT)
                .await?;
            let created = s.commerce.create_order(&caller, input).await?;
            Ok::<_, ApiError>(created.view())
        })
        .callable("list", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: ListInput = req.parse()?;
            Ok::<_, ApiError>(s.commerce.list_orders(&caller, input).await?)
        })
        .callable("get", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: OrderRef = req.parse()?;
            let order = s.commerce.get_order(&caller, &input.order_id).await?;
            Ok::<_, ApiError>(serde_json::json!({ "order": order.view() }))
        })
        .callable("cancel", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: OrderRef = req.parse()?;
            let order = s.commerce.cancel_order(&caller, &input.order_id).await?;
            Ok::<_, ApiError>(serde_json::json!({ "order": order.view() }))
        })
        .callable("refund", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: RefundInput = req.parse()?;
            let refund = s.commerce.refund(&caller, input).await?;
            Ok::<_, ApiError>(serde_json::json!({ "refund": refund.view() }))
        })
        .callable("search", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: SearchInput = req.parse()?;
            Ok::<_, ApiError>(s.commerce.search_orders(&caller, input).await?)
        })
        .callable("ship", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: ShipInput = req.parse()?;
            Ok::<_, ApiError>(s.commerce.ship(&caller, input).await?)
        })
        .callable("shipments", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: ShipmentsInput = req.parse()?;
            Ok::<_, ApiError>(s.commerce.shipments(&caller, input).await?)
        })
        .callable("remindReceipt", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: RemindReceiptInput = req.parse()?;
            let order = s.commerce.remind_receipt(&caller, input).await?;
            Ok::<_, ApiError>(serde_json::json!({ "order": order.admin_view() }))
        })
        .callable("syncShipping", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: OrderRef = req.parse()?;
            s.limits
                .check(
                    &caller.openid,
                    "createOrder.syncShipping",
                    SYNC_SHIPPING_LIMIT,
                )
                .await?;
            let order = s.commerce.sync_shipping(&caller, &input.order_id).await?;
            Ok::<_, ApiError>(serde_json::json!({ "order": order.view() }))
        })
        .callable("catalog", |s: Arc<State>, req| async move {
            s.caller(&req)?;
            let input: CatalogInput = req.parse()?;
            Ok::<_, ApiError>(s.commerce.catalog(input.kind.as_deref()).await?)
        })
        // Consumer complaints (admin only; docs/api.md).
        .callable("complaintList", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: complaints::ListInput = req.parse()?;
            Ok::<_, ApiError>(s.complaints.list(&caller, input).await?)
        })
        .callable("complaintGet", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: ComplaintRef = req.parse()?;
            Ok::<_, ApiError>(s.complaints.detail(&caller, &input.complaint_id).await?)
        })
        .callable("complaintRespond", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: complaints::RespondInput = req.parse()?;
            Ok::<_, ApiError>(s.complaints.respond(&caller, input).await?)
        })
        .callable("complaintComplete", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: ComplaintRef = req.parse()?;
            Ok::<_, ApiError>(s.complaints.complete(&caller, &input.complaint_id).await?)
        })
        .callable("complaintRefundProgress", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: complaints::RefundProgressInput = req.parse()?;
            Ok::<_, ApiError>(s.complaints.refund_progress(&caller, input).await?)
        })
        .callable("attribution", |s: Arc<State>, req| async move {
            attribution(&s, &req).await
        })
        .default_action("create")
}

#[derive(Deserialize, Default)]
struct AttributionInput {
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
}

/// `attribution` (administrators): conversions and revenue of orders paid in
/// `[since, until)` per QR scene, menu item and template message, by first and last touch
/// (`wemint::funnel::touches::report`).
async fn attribution(s: &State, req: &CallRequest) -> Result<serde_json::Value, ApiError> {
    let caller = s.caller(req)?;
    s.commerce.require_admin(&caller).await?;
    let input: AttributionInput = req.parse()?;
    let now = s.commerce.now();
    let since = input.since.unwrap_or(0);
    let until = input.until.unwrap_or(now + 1);
    if since < 0 || until <= since || until > now + 366 * 86_400 {
        return Err(ApiError::bad_request(
            "`since` and `until` are Unix seconds with since < until",
        ));
    }
    Ok(wemint::funnel::touches::report(s.commerce.store().as_ref(), since, until).await?)
}

#[cfg(test)]
mod tests;
