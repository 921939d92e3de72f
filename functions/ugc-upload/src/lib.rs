//! The `ugcUpload` function: user posts under content security (`docs/api.md`).
//!
//! Actions: `create` (default), `list`, `delete` (author or admin), and for admins the review
//! queue: `queue`, `approve`, `reject`. Its timer sends posts whose image verdict is overdue
//! (`WEMINT_MODERATION_TIMEOUT_SECS`) to that queue. The moderation itself (checks, states, results,
//! notices) is [`wemint::moderation`]; this crate adds the caller, the limits and the replies.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use wemint::clock::SharedClock;
use wemint::config::Config;
use wemint::domain::moderation::Decision;
use wemint::identity::{Authenticator, Caller, is_stored_admin};
use wemint::moderation::{DAILY_QUOTA_EXCEEDED, MediaInput, Moderation, NoticeTemplate, Post};
use wemint::ratelimit::{Limit, RateLimitError, RateLimiter};
use wemint::runtime::{ApiError, BoxError, CallRequest, Function};
use wemint::setup::{Deps, required};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "ugcUpload";

/// Posts per author per minute (bursts from a script, not from a person).
pub const CREATE_LIMIT: Limit = Limit::per_minute(5);
/// Posts per author per day (UTC day): [`DAILY_QUOTA_EXCEEDED`] beyond.
pub const DAILY_QUOTA: Limit = Limit::per_day(30);
/// Deletions per user per minute.
pub const DELETE_LIMIT: Limit = Limit::per_minute(30);
/// List pages per user per minute.
pub const LIST_LIMIT: Limit = Limit::per_minute(120);
/// Default and largest page of `list` and `queue`.
const DEFAULT_PAGE: u64 = 20;
const MAX_PAGE: u64 = 50;

/// Everything the handlers share, built once at init.
pub struct State {
    moderation: Moderation,
    auth: Authenticator,
    limits: RateLimiter,
    verdict_timeout_secs: i64,
}

impl State {
    /// State from its parts (tests; [`init`] builds it from the environment).
    pub fn new(moderation: Moderation, auth: Authenticator, clock: SharedClock) -> Self {
        Self {
            limits: RateLimiter::new(moderation.store().clone()).with_clock(clock.clone()),
            auth: auth.with_clock(clock),
            moderation,
            verdict_timeout_secs: wemint::moderation::DEFAULT_VERDICT_TIMEOUT_SECS,
        }
    }

    /// How long WeChat gets to deliver an image verdict before a person looks instead.
    #[must_use]
    pub fn with_verdict_timeout(mut self, secs: i64) -> Self {
        self.verdict_timeout_secs = secs;
        self
    }

    /// The moderation service (tests look at stored posts).
    pub fn moderation(&self) -> &Moderation {
        &self.moderation
    }
}

/// Builds the state from the deployment's dependencies. The clock follows the emulator's
/// dev clock, so overdue verdicts can be tried locally by moving time.
///
/// # Errors
/// A missing or malformed setting, an unreachable store.
pub async fn init(config: Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    let moderation = deps
        .moderation()?
        .with_notice(NoticeTemplate::from_config(&config));
    Ok(State::new(
        moderation,
        required(deps.auth, "WEMINT_SESSION_SECRET")?,
        deps.clock,
    )
    .with_verdict_timeout(config.moderation_timeout_secs()?))
}

/// The function value `main` runs.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .callable("create", |s: Arc<State>, req| async move {
            create(&s, &req).await
        })
        .callable(
            "list",
            |s: Arc<State>, req| async move { list(&s, &req).await },
        )
        .callable("delete", |s: Arc<State>, req| async move {
            delete(&s, &req).await
        })
        .callable("queue", |s: Arc<State>, req| async move {
            queue(&s, &req).await
        })
        .callable("approve", |s: Arc<State>, req| async move {
            decide(&s, &req, Decision::Approve).await
        })
        .callable("reject", |s: Arc<State>, req| async move {
            decide(&s, &req, Decision::Reject).await
        })
        .default_action("create")
        .timer(|s: Arc<State>, _timer| async move {
            let report = s
                .moderation
                .sweep(s.verdict_timeout_secs)
                .await
                .map_err(ApiError::from)?;
            // Ended rate-limit windows (of every function) are dropped here too.
            let windows = s.limits.purge_expired().await.map_err(ApiError::internal)?;
            tracing::info!(?report, windows, "moderation sweep");
            Ok::<_, ApiError>(json!({ "moderation": report, "rateLimitWindowsPurged": windows }))
        })
}

#[derive(Deserialize)]
struct CreateInput {
    #[serde(default)]
    text: String,
    #[serde(default)]
    media: Vec<MediaInput>,
}

/// `create`: validates, counts the author's limits, checks and stores the post.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `TEXT_TOO_LONG`, `TOO_MANY_MEDIA`, `MEDIA_NOT_OWNED`,
/// `MEDIA_TYPE_UNSUPPORTED`, `RATE_LIMITED`, `DAILY_QUOTA_EXCEEDED`, `TEXT_RISKY`,
/// `WECHAT_BUSY`, `INTERNAL`.
pub async fn create(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let input: CreateInput = req.parse()?;
    // Input errors first: they cost the author nothing.
    Moderation::validate(&caller.openid, input.text.trim(), &input.media)?;
    state
        .limits
        .check(&caller.openid, "ugcUpload.create", CREATE_LIMIT)
        .await?;
    match state
        .limits
        .hit(&caller.openid, "ugcUpload.daily", DAILY_QUOTA)
        .await
    {
        Ok(_) => {}
        Err(RateLimitError::Limited {
            retry_after_secs, ..
        }) => {
            return Err(ApiError::new(
                DAILY_QUOTA_EXCEEDED,
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {} posts a day", DAILY_QUOTA.max),
            )
            .with_retry_after(retry_after_secs));
        }
        Err(e) => return Err(e.into()),
    }
    let post = state
        .moderation
        .create(&caller.openid, &input.text, &input.media)
        .await?;
    Ok(json!({ "post": post.view() }))
}

#[derive(Deserialize)]
struct ListInput {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
}

fn page(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "`limit` must be 1 to {MAX_PAGE}"
        ))),
    }
}

fn views(posts: &[Post]) -> Value {
    json!({ "posts": posts.iter().map(Post::view).collect::<Vec<_>>() })
}

/// `list`: approved posts and the caller's own, newest first.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `POST_NOT_FOUND` (unknown `before`), `RATE_LIMITED`,
/// `INTERNAL`.
pub async fn list(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let input: ListInput = req.parse()?;
    let limit = page(input.limit)?;
    state
        .limits
        .check(&caller.openid, "ugcUpload.list", LIST_LIMIT)
        .await?;
    let posts = state
        .moderation
        .list(&caller.openid, input.before.as_deref(), limit)
        .await?;
    Ok(views(&posts))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostInput {
    post_id: String,
    #[serde(default)]
    reason: Option<String>,
}

fn post_input(req: &CallRequest) -> Result<PostInput, ApiError> {
    let input: PostInput = req.parse()?;
    if input.post_id.is_empty() || input.post_id.len() > 64 {
        return Err(ApiError::bad_request("`postId` must be 1 to 64 characters"));
    }
    Ok(input)
}

/// `delete`: the author or an admin.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `POST_NOT_FOUND`, `FORBIDDEN`, `RATE_LIMITED`, `INTERNAL`.
pub async fn delete(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let input = post_input(req)?;
    state
        .limits
        .check(&caller.openid, "ugcUpload.delete", DELETE_LIMIT)
        .await?;
    let admin = is_admin(state, &caller).await?;
    state
        .moderation
        .delete(&caller.openid, admin, &input.post_id)
        .await?;
    Ok(json!({ "deleted": true }))
}

/// Whether the caller is an administrator by the stored role, not the session's flag: a
/// demoted admin loses the review queue at once, not when the token expires.
async fn is_admin(state: &State, caller: &Caller) -> Result<bool, ApiError> {
    is_stored_admin(state.moderation.store().as_ref(), &caller.openid)
        .await
        .map_err(ApiError::internal)
}

/// `FORBIDDEN` unless [`is_admin`].
async fn require_admin(state: &State, caller: &Caller) -> Result<(), ApiError> {
    if is_admin(state, caller).await? {
        Ok(())
    } else {
        Err(ApiError::forbidden("administrators only"))
    }
}

/// `queue`: posts in `in_review`, oldest first (admins only).
///
/// # Errors
/// `UNAUTHENTICATED`, `FORBIDDEN`, `BAD_REQUEST`, `INTERNAL`.
pub async fn queue(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    require_admin(state, &caller).await?;
    let input: ListInput = req.parse()?;
    let posts = state.moderation.queue(page(input.limit)?).await?;
    Ok(views(&posts))
}

/// `approve` / `reject` (with `reason`): admins only; the author is told.
///
/// # Errors
/// `UNAUTHENTICATED`, `FORBIDDEN`, `BAD_REQUEST`, `POST_NOT_FOUND`, `CONFLICT` (the post is
/// not in a state the decision applies to), `INTERNAL`.
pub async fn decide(
    state: &State,
    req: &CallRequest,
    decision: Decision,
) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    require_admin(state, &caller).await?;
    let input = post_input(req)?;
    let post = state
        .moderation
        .decide(
            &caller.openid,
            &input.post_id,
            decision,
            input.reason.as_deref(),
        )
        .await?;
    Ok(json!({ "post": post.view() }))
}

#[cfg(test)]
mod tests;
