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
//! - `subscribeGrant` and the timer: renewal reminders as subscribe messages
//!   ([`wemint::subscriptions::reminders`]) and the end of lapsed tenant plans.
//!
//! This crate parses requests and wires the pieces; what a caller holds is loaded by
//! [`wemint::access`] and the access decisions are [`wemint::domain::content`]'s.
//!
//! Time comes from one clock ([`wemint::setup::Deps::clock`]), which follows the
//! emulator's dev clock, so expiry happens at the right instant in development too.

pub mod error;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use wemint::access::{self, Standing};
use wemint::clock::SharedClock;
use wemint::cloud_files::Storage;
use wemint::config::{Config, ReminderSettings};
use wemint::domain::content::{self, Content, ContentKind, MediaUrl};
use wemint::identity::{Authenticator, Caller};
use wemint::runtime::{ApiError, BoxError, CallRequest, Function};
use wemint::setup::{Deps, required};
use wemint::store::collections::CONTENTS;
use wemint::store::{Filter, FindOptions, Store};
use wemint::subscriptions::{Plans, Scope, Subscriptions, reminders};
use wemint::tenancy::Tenancy;
use wemint::wechat::WechatClient;

use error::GatedError;

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "gatedContent";

/// Default lifetime of a protected media URL: long enough to start playing, short enough
/// that a shared link dies quickly.
pub const DEFAULT_MEDIA_URL_TTL_SECS: i64 = 600;

/// Everything built once at init.
pub struct State {
    store: Arc<dyn Store>,
    clock: SharedClock,
    auth: Authenticator,
    tenancy: Tenancy,
    subscriptions: Subscriptions,
    storage: Option<Storage>,
    wechat: Option<WechatClient>,
    reminders: Option<ReminderSettings>,
    media_ttl_secs: i64,
}

impl State {
    fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    fn caller(&self, req: &CallRequest) -> Result<Caller, ApiError> {
        self.auth.caller(req)
    }
}

/// Builds the state from the configuration. Storage and WeChat are optional: without them
/// protected media and reminders are unavailable (and say so), everything else works.
pub async fn init(config: Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    let reminders = config.renewal_reminders()?;
    if reminders.is_some() && deps.wechat.is_none() {
        return Err(
            "renewal reminders (WEMINT_RENEWAL_TEMPLATE_ID) need WECHAT_APPID and WECHAT_APPSECRET"
                .into(),
        );
    }
    let tenancy = Tenancy::new(deps.store.clone()).with_clock(deps.clock.clone());
    let subscriptions = Subscriptions::new(deps.store.clone(), tenancy.clone());
    Ok(State {
        store: deps.store,
        clock: deps.clock,
        auth: required(deps.auth, "WEMINT_SESSION_SECRET")?,
        tenancy,
        subscriptions,
        storage: deps.cloud_files,
        wechat: deps.wechat,
        reminders,
        media_ttl_secs: DEFAULT_MEDIA_URL_TTL_SECS,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetInput {
    content_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListInput {
    #[serde(default)]
    kind: Option<ContentKind>,
    #[serde(default)]
    limit: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScopeInput {
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangePlanInput {
    plan: String,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GrantInput {
    template_ids: Vec<String>,
}

fn scope(name: Option<&str>) -> Result<Scope, GatedError> {
    match name {
        None | Some("user") => Ok(Scope::User),
        Some("tenant") => Ok(Scope::Tenant),
        Some(other) => Err(GatedError::BadRequest(format!(
            "scope must be `user` or `tenant`, not `{other}`"
        ))),
    }
}

async fn load_content(state: &State, id: &str) -> Result<Content, GatedError> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(GatedError::ContentNotFound(id.to_owned()));
    }
    state
        .store
        .get_as::<Content>(CONTENTS, id)
        .await?
        .ok_or_else(|| GatedError::ContentNotFound(id.to_owned()))
}

/// Temp URLs for the media a view shows, all with the same expiry.
async fn media_urls(
    state: &State,
    file_ids: &[String],
) -> Result<std::collections::HashMap<String, MediaUrl>, GatedError> {
    if file_ids.is_empty() {
        return Ok(Default::default());
    }
    let storage = state.storage.as_ref().ok_or(GatedError::NoStorage)?;
    let urls = storage
        .temp_urls(file_ids, state.media_ttl_secs, state.now())
        .await
        .map_err(GatedError::Media)?;
    Ok(urls
        .into_iter()
        .map(|u| {
            (
                u.file_id,
                MediaUrl {
                    url: u.url,
                    expires_at: u.expires_at,
                },
            )
        })
        .collect())
}

async fn get(state: Arc<State>, req: CallRequest) -> Result<Value, ApiError> {
    let caller = state.caller(&req)?;
    let input: GetInput = req.parse()?;
    let content = load_content(&state, &input.content_id).await?;
    let now = state.now();
    let plans = Plans::load(&state.store).await.map_err(GatedError::from)?;
    let standing = Standing::load(&state.store, &state.tenancy, &caller)
        .await
        .map_err(GatedError::from)?;
    let holdings = standing.holdings(now, &plans);
    match content::decide(&content, &holdings, &plans.lookup()) {
        Some(via) => {
            let view = content.full_view();
            let urls = media_urls(&state, &view.media_file_ids()).await?;
            Ok(json!({
                "content": view.into_json(&|id| urls.get(id).cloned()),
                "access": "granted",
                "via": via,
            }))
        }
        None => {
            let view = content.preview_view();
            let urls = media_urls(&state, &view.media_file_ids()).await?;
            let catalog = access::active_catalog(&state.store)
                .await
                .map_err(GatedError::from)?;
            let offers = content::offers(&content, &catalog, &plans.lookup());
            Ok(json!({
                "content": view.into_json(&|id| urls.get(id).cloned()),
                "access": "locked",
                "paywall": {"offers": offers},
            }))
        }
    }
}

const LIST_DEFAULT: u64 = 20;
const LIST_MAX: u64 = 50;

async fn list(state: Arc<State>, req: CallRequest) -> Result<Value, ApiError> {
    let caller = state.caller(&req)?;
    let input: ListInput = req.parse()?;
    let limit = input.limit.unwrap_or(LIST_DEFAULT);
    if !(1..=LIST_MAX).contains(&limit) {
        return Err(GatedError::BadRequest(format!("limit must be 1 to {LIST_MAX}")).into());
    }
    let filter = match input.kind {
        Some(kind) => Filter::eq("kind", kind.as_str()),
        None => Filter::All,
    };
    let contents: Vec<Content> = state
        .store
        .find_as(
            CONTENTS,
            &filter,
            &FindOptions::new().sort_desc("publishedAt").limit(limit),
        )
        .await
        .map_err(GatedError::from)?;
    let now = state.now();
    let plans = Plans::load(&state.store).await.map_err(GatedError::from)?;
    let holdings = Standing::load(&state.store, &state.tenancy, &caller)
        .await
        .map_err(GatedError::from)?
        .holdings(now, &plans);
    let items: Vec<Value> = contents
        .iter()
        .map(|content| {
            let via = content::decide(content, &holdings, &plans.lookup());
            let mut v = json!({
                "id": content.id,
                "title": content.title,
                "kind": content.kind.as_str(),
                "summary": content.summary,
                "access": if via.is_some() { "granted" } else { "locked" },
            });
            if let Some(via) = via {
                v["via"] = json!(via);
            }
            v
        })
        .collect();
    Ok(json!({ "contents": items }))
}

async fn entitlements(state: Arc<State>, req: CallRequest) -> Result<Value, ApiError> {
    let caller = state.caller(&req)?;
    let now = state.now();
    let plans = Plans::load(&state.store).await.map_err(GatedError::from)?;
    let standing = Standing::load(&state.store, &state.tenancy, &caller)
        .await
        .map_err(GatedError::from)?;
    Ok(access::entitlements_view(&standing, now, &plans))
}

/// `cancelSubscription` (`cancel`) and `resumeSubscription` (`!cancel`).
async fn set_canceled(
    state: Arc<State>,
    req: CallRequest,
    cancel: bool,
) -> Result<Value, ApiError> {
    let caller = state.caller(&req)?;
    let input: ScopeInput = req.parse()?;
    let scope = scope(input.scope.as_deref())?;
    Ok(state
        .subscriptions
        .set_canceled(&caller, scope, cancel, state.now())
        .await
        .map_err(GatedError::from)?)
}

/// The two actions that name a target plan.
#[derive(Clone, Copy)]
enum PlanAction {
    StartTrial,
    Change,
}

async fn plan_action(
    state: Arc<State>,
    req: CallRequest,
    action: PlanAction,
) -> Result<Value, ApiError> {
    let caller = state.caller(&req)?;
    let input: ChangePlanInput = req.parse()?;
    let scope = scope(input.scope.as_deref())?;
    let (subs, now) = (&state.subscriptions, state.now());
    let done = match action {
        PlanAction::StartTrial => subs.start_trial(&caller, scope, &input.plan, now).await,
        PlanAction::Change => subs.change_plan(&caller, scope, &input.plan, now).await,
    };
    Ok(done.map_err(GatedError::from)?)
}

async fn subscribe_grant(state: Arc<State>, req: CallRequest) -> Result<Value, ApiError> {
    let caller = state.caller(&req)?;
    let input: GrantInput = req.parse()?;
    let grants = reminders::record_grants(
        &state.store,
        &caller.openid,
        &input.template_ids,
        state.now(),
    )
    .await
    .map_err(GatedError::from)?;
    Ok(json!({ "grants": grants }))
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .callable("get", get)
        .callable("list", list)
        .callable("entitlements", entitlements)
        .callable("startTrial", |s: Arc<State>, req| {
            plan_action(s, req, PlanAction::StartTrial)
        })
        .callable("cancelSubscription", |s: Arc<State>, req| {
            set_canceled(s, req, true)
        })
        .callable("resumeSubscription", |s: Arc<State>, req| {
            set_canceled(s, req, false)
        })
        .callable("changePlan", |s: Arc<State>, req| {
            plan_action(s, req, PlanAction::Change)
        })
        .callable("subscribeGrant", subscribe_grant)
        .default_action("get")
        .timer(|state: Arc<State>, _timer| async move {
            let now = state.now();
            let tenant_plans_ended = state
                .subscriptions
                .expire_tenant_plans(now)
                .await
                .map_err(GatedError::from)?;
            let reminders = match (&state.reminders, &state.wechat) {
                (Some(settings), Some(wechat)) => {
                    let report = reminders::sweep(&state.store, wechat, settings, now)
                        .await
                        .map_err(GatedError::from)?;
                    tracing::info!(?report, "renewal reminders");
                    json!(report)
                }
                _ => json!("not configured"),
            };
            Ok::<_, ApiError>(json!({
                "reminders": reminders,
                "tenantPlansEnded": tenant_plans_ended,
            }))
        })
}
