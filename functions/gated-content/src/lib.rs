//! The `gatedContent` function: paywalled content and subscription lifecycle.
//!
//! - `get`: the full content when the caller is entitled (a purchase, their membership, or
//!   their tenant's plan), else the preview and a paywall of catalog offers; protected media
//!   only as short-lived URLs with their expiry.
//! - `list`: contents with the caller's access state.
//! - `entitlements`: what the caller owns and until when, their subscription and their
//!   tenant's.
//! - `startTrial`, `cancelSubscription`, `resumeSubscription`, `changePlan`: the subscription
//!   lifecycle, run by [`wemint::subscriptions::Subscriptions`].
//! - `subscribeGrant`: what the user accepted in `wx.requestSubscribeMessage`, by template key
//!   ([`wemint::wechat::subscribe_templates`]): one credit per accept for the renewal reminder
//!   and the shipping notice.
//! - The timer: renewal reminders as subscribe messages ([`wemint::subscriptions::reminders`])
//!   and the end of lapsed tenant plans.
//!
//! This crate parses requests and calls the library: `get`, `list` and `entitlements` are
//! [`wemint::content::Contents`]', the rest [`wemint::subscriptions`]'. Time comes from one
//! clock ([`wemint::setup::Deps::clock`]), which follows the emulator's dev clock, so expiry
//! happens at the right instant in development too.

pub mod error;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use wemint::clock::SharedClock;
use wemint::config::{Config, ReminderSettings};
use wemint::content::{Contents, GetInput, ListInput};
use wemint::identity::{Authenticator, Caller};
use wemint::runtime::{ApiError, BoxError, CallRequest, Function};
use wemint::setup::{Deps, required};
use wemint::store::Store;
use wemint::subscriptions::{Scope, Subscriptions, reminders};
use wemint::tenancy::Tenancy;
use wemint::wechat::WechatClient;
use wemint::wechat::subscribe_templates::{self, ConsentReport, Templates};

use error::GatedError;

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "gatedContent";

/// Everything built once at init.
pub struct State {
    store: Arc<dyn Store>,
    clock: SharedClock,
    auth: Authenticator,
    contents: Contents,
    subscriptions: Subscriptions,
    wechat: Option<WechatClient>,
    reminders: Option<ReminderSettings>,
    templates: Templates,
}

impl State {
    fn caller(&self, req: &CallRequest) -> Result<Caller, ApiError> {
        self.auth.caller(req)
    }
}

/// Builds the state from the configuration. Storage and WeChat are optional: without them
/// protected media and reminders are unavailable (and say so), everything else works.
pub async fn init(config: Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    let reminders = config.renewal_reminders()?;
    let templates = Templates::from_config(&config);
    if reminders.is_some() && deps.wechat.is_none() {
        return Err(
            "renewal reminders (WEMINT_RENEWAL_TEMPLATE_ID) need WECHAT_APPID and WECHAT_APPSECRET"
                .into(),
        );
    }
    let tenancy = Tenancy::new(deps.store.clone()).with_clock(deps.clock.clone());
    let (store, clock) = (deps.store, deps.clock);
    let contents = Contents::new(
        store.clone(),
        clock.clone(),
        tenancy.clone(),
        deps.cloud_files,
    );
    let subscriptions = Subscriptions::new(store.clone(), tenancy);
    let (auth, wechat) = (deps.auth, deps.wechat);
    Ok(State {
        store,
        clock,
        auth: required(auth, "WEMINT_SESSION_SECRET")?,
        contents,
        subscriptions,
        wechat,
        reminders,
        templates,
    })
}

/// `cancelSubscription` and `resumeSubscription`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScopeInput {
    #[serde(default)]
    scope: Option<String>,
}

/// `startTrial` and `changePlan`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlanInput {
    plan: String,
    #[serde(default)]
    scope: Option<String>,
}

/// `subscribeGrant`: exactly one of `results` (`{<key>: <wx result>}`) or `templateIds`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GrantInput {
    #[serde(default)]
    results: Option<BTreeMap<String, String>>,
    #[serde(default)]
    template_ids: Option<Vec<String>>,
}

impl GrantInput {
    fn report(self) -> Result<ConsentReport, ApiError> {
        match (self.results, self.template_ids) {
            (Some(results), None) => Ok(ConsentReport::Results(results)),
            (None, Some(ids)) => Ok(ConsentReport::TemplateIds(ids)),
            _ => Err(ApiError::bad_request(
                "subscribeGrant takes exactly one of results or templateIds",
            )),
        }
    }
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .callable("get", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: GetInput = req.parse()?;
            let reply = s.contents.get(&caller, &input.content_id).await;
            Ok::<_, ApiError>(reply.map_err(GatedError::from)?)
        })
        .callable("list", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: ListInput = req.parse()?;
            let reply = s.contents.list(&caller, input).await;
            Ok::<_, ApiError>(reply.map_err(GatedError::from)?)
        })
        .callable("entitlements", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let reply = s.contents.entitlements(&caller).await;
            Ok::<_, ApiError>(reply.map_err(GatedError::from)?)
        })
        .callable("startTrial", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: PlanInput = req.parse()?;
            let scope = Scope::parse(input.scope.as_deref()).map_err(GatedError::from)?;
            let now = s.clock.now_unix();
            let done = s
                .subscriptions
                .start_trial(&caller, scope, &input.plan, now);
            Ok::<_, ApiError>(done.await.map_err(GatedError::from)?)
        })
        .callable("cancelSubscription", |s: Arc<State>, req| {
            set_canceled(s, req, true)
        })
        .callable("resumeSubscription", |s: Arc<State>, req| {
            set_canceled(s, req, false)
        })
        .callable("changePlan", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let input: PlanInput = req.parse()?;
            let scope = Scope::parse(input.scope.as_deref()).map_err(GatedError::from)?;
            let now = s.clock.now_unix();
            let done = s
                .subscriptions
                .change_plan(&caller, scope, &input.plan, now);
            Ok::<_, ApiError>(done.await.map_err(GatedError::from)?)
        })
        .callable("subscribeGrant", |s: Arc<State>, req| async move {
            let caller = s.caller(&req)?;
            let report = req.parse::<GrantInput>()?.report()?;
            let now = s.clock.now_unix();
            let recorded = subscribe_templates::record_consent(
                &s.store,
                &s.templates,
                &caller.openid,
                &report,
                now,
            );
            Ok::<_, ApiError>(json!(recorded.await.map_err(GatedError::from)?))
        })
        .default_action("get")
        .timer(|s: Arc<State>, _timer| async move {
            let reminders = s.reminders.as_ref().zip(s.wechat.as_ref());
            let now = s.clock.now_unix();
            let ran = reminders::run_timer(&s.subscriptions, &s.store, reminders, now).await;
            Ok::<_, ApiError>(ran.map_err(GatedError::from)?)
        })
}

/// `cancelSubscription` (`cancel`) and `resumeSubscription` (`!cancel`).
async fn set_canceled(s: Arc<State>, req: CallRequest, cancel: bool) -> Result<Value, ApiError> {
    let caller = s.caller(&req)?;
    let input: ScopeInput = req.parse()?;
    let scope = Scope::parse(input.scope.as_deref()).map_err(GatedError::from)?;
    let now = s.clock.now_unix();
    let done = s.subscriptions.set_canceled(&caller, scope, cancel, now);
    Ok(done.await.map_err(GatedError::from)?)
}
