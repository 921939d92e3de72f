//! The `login` function: turns a `wx.login` code into a session, and manages the caller's
//! tenants (teams). Actions (`docs/api.md`): `login` (default), `me`, `createTenant`,
//! `invite`, `members`, `switchTenant`, `removeMember`, `notes`, `editNotes`.
//!
//! `login` needs no caller (the code is the credential): code → `code2Session` → the user is
//! upserted by openid with the session_key sealed under `WEMINT_DATA_KEY` → a session token
//! (openid, appid, unionid, active tenant and role, plan, admin flag) and the user profile.
//! It is rate limited per openid (after `code2Session`, [`LOGIN_LIMIT`]); the runtime does not
//! expose the client address, so there is no per-client limit here (put one in the gateway).
//! Every other action identifies the caller with [`wemint::identity::Authenticator`] first.

mod team;
mod wx;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use wemint::clock::SharedClock;
use wemint::config::Config;
use wemint::funnel::notices;
use wemint::funnel::touches::{self, TouchKind, Toucher};
use wemint::identity::people::{self, Side};
use wemint::identity::{
    Authenticator, Caller, DataKey, SessionClaims, TenantMembership, TenantRole, USERS, User,
    UserRole,
};
use wemint::notes::Notes;
use wemint::ratelimit::{Limit, RateLimiter};
use wemint::runtime::{ApiError, BoxError, CallRequest, Function};
use wemint::setup::{Deps, required};
use wemint::store::{Filter, Store, StoreError, Update, UpdateOptions};
use wemint::tenancy::{Member, Tenancy, Tenant};

use wx::CodeKind;
pub use wx::{CODE_USED, INVALID_CODE, WECHAT_BUSY, WECHAT_RISKY_USER, WechatLogin, WxSession};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "login";

/// Logins per openid: generous for people (one per session), tight for scripts.
pub const LOGIN_LIMIT: Limit = Limit::per_minute(10);
/// Tenants created per openid.
pub const CREATE_TENANT_LIMIT: Limit = Limit::per_hour(10);
/// Invitations sent per openid.
pub const INVITE_LIMIT: Limit = Limit::per_hour(60);

/// Longest code accepted from the client (WeChat's are 32 characters).
const MAX_CODE_LEN: usize = 128;

/// Everything the handlers share, built once at init.
pub struct State {
    store: Arc<dyn Store>,
    wechat: Arc<dyn WechatLogin>,
    auth: Authenticator,
    data_key: Arc<DataKey>,
    tenancy: Tenancy,
    notes: Notes,
    limits: RateLimiter,
    clock: SharedClock,
    admins: Vec<String>,
}

impl State {
    /// State from its parts (tests; [`init`] builds it from the environment). `clock` is used
    /// for everything: token lifetimes, document times and rate-limit windows.
    pub fn new(
        store: Arc<dyn Store>,
        wechat: Arc<dyn WechatLogin>,
        auth: Authenticator,
        data_key: impl Into<Arc<DataKey>>,
        clock: SharedClock,
    ) -> Self {
        Self {
            tenancy: Tenancy::new(store.clone()).with_clock(clock.clone()),
            notes: Notes::new(store.clone(), clock.clone()),
            limits: RateLimiter::new(store.clone()).with_clock(clock.clone()),
            auth: auth.with_clock(clock.clone()),
            store,
            wechat,
            data_key: data_key.into(),
            clock,
            admins: Vec::new(),
        }
    }

    /// Openids the operator makes administrators (`WEMINT_ADMIN_OPENIDS`): their login
    /// records `role: admin`. Others keep the role stored (set by the operator or seed).
    #[must_use]
    pub fn with_admins(mut self, admins: Vec<String>) -> Self {
        self.admins = admins;
        self
    }

    /// The store (tests look at the stored documents).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> i64 {
        self.clock.now_unix()
    }
}

/// Builds the state from the deployment's dependencies; login needs the WeChat API and
/// `WEMINT_DATA_KEY`.
///
/// # Errors
/// A missing or malformed setting, an unreachable store.
pub async fn init(config: Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    let data_key = required(deps.data_key, "WEMINT_DATA_KEY")?;
    let wechat = Arc::new(required(deps.wechat, "WECHAT_APPID")?);
    Ok(State::new(
        deps.store,
        wechat,
        required(deps.auth, "WEMINT_SESSION_SECRET")?,
        data_key,
        deps.clock,
    )
    .with_admins(config.admin_openids()))
}

/// The function value `main` runs.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .callable("login", |s: Arc<State>, req| async move {
            login(&s, &req.parse()?).await
        })
        .callable("me", |s: Arc<State>, req| async move { me(&s, &req).await })
        .callable("createTenant", |s: Arc<State>, req| async move {
            create_tenant(&s, &req).await
        })
        .callable("invite", |s: Arc<State>, req| async move {
            invite(&s, &req).await
        })
        .callable("members", |s: Arc<State>, req| async move {
            members(&s, &req).await
        })
        .callable("switchTenant", |s: Arc<State>, req| async move {
            switch_tenant(&s, &req).await
        })
        .callable("removeMember", |s: Arc<State>, req| async move {
            team::remove_member(&s, &req).await
        })
        .callable("notes", |s: Arc<State>, req| async move {
            team::notes(&s, &req).await
        })
        .callable("editNotes", |s: Arc<State>, req| async move {
            team::edit_notes(&s, &req).await
        })
        .callable("launch", |s: Arc<State>, req| async move {
            launch(&s, &req).await
        })
        .default_action("login")
}

/// `login` data. Unknown fields (a spoofed `openid`, `userInfo`…) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginInput {
    /// From `wx.login`.
    pub code: String,
    /// From the phone-number button, optional.
    #[serde(default)]
    pub phone_code: Option<String>,
}

fn check_code(code: &str, field: &str) -> Result<(), ApiError> {
    let code = code.trim();
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1 to {MAX_CODE_LEN} characters"
        )));
    }
    Ok(())
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::internal(e)
}

/// `login`: the code is the credential.
///
/// # Errors
/// `BAD_REQUEST`, `INVALID_CODE`, `CODE_USED`, `WECHAT_RISKY_USER`, `WECHAT_BUSY`,
/// `RATE_LIMITED`, `INTERNAL`.
pub async fn login(state: &State, input: &LoginInput) -> Result<Value, ApiError> {
    check_code(&input.code, "code")?;
    let phone_code = input
        .phone_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let Some(code) = phone_code {
        check_code(code, "phoneCode")?;
    }
    let session = state
        .wechat
        .code2session(input.code.trim())
        .await
        .map_err(|e| wx::api_error(e, CodeKind::Login))?;
    state
        .limits
        .check(&session.openid, "login", LOGIN_LIMIT)
        .await?;
    // The phone number before any write: a failed phone code leaves nothing half done.
    let phone = match phone_code {
        Some(code) => Some(
            state
                .wechat
                .phone_number(code, &session.openid)
                .await
                .map_err(|e| wx::api_error(e, CodeKind::Phone))?,
        ),
        None => None,
    };
    let user = upsert_user(state, &session, phone).await?;
    if let Some(unionid) = user.unionid.as_deref() {
        // The same person as a follower of the Official Account, whichever side came first.
        people::link(
            state.store.as_ref(),
            unionid,
            Side::Mp,
            &user.openid,
            state.now(),
        )
        .await
        .map_err(store_error)?;
    }
    let tenant = active_tenant(state, &user.openid, user.active_tenant.as_deref()).await?;
    let (token, expires_at) = issue(state, &user, tenant.as_ref());
    tracing::info!(new_user = user.created_at == user.last_login_at, "login");
    Ok(json!({
        "token": token,
        "expiresAt": expires_at,
        "user": user_view(&user, tenant.as_ref()),
    }))
}

/// Creates or refreshes the user's document: one per openid, whatever the number of logins.
async fn upsert_user(
    state: &State,
    session: &WxSession,
    phone: Option<String>,
) -> Result<User, ApiError> {
    let now = state.now();
    let openid = session.openid.as_str();
    let sealed = state
        .data_key
        .seal(openid, session.session_key.expose().as_bytes())?;
    let mut update = Update::new()
        .set("appid", state.wechat.appid())
        .set("sessionKey", sealed)
        .set("sessionKeyAt", now)
        .set("lastLoginAt", now)
        .set_on_insert("openid", openid)
        .set_on_insert("createdAt", now);
    update = if state.admins.iter().any(|a| a == openid) {
        update.set("role", "admin")
    } else {
        update.set_on_insert("role", "user")
    };
    if let Some(unionid) = &session.unionid {
        update = update.set("unionid", unionid.as_str());
    }
    if let Some(phone) = phone {
        update = update.set("phone", phone);
    }
    let filter = Filter::id(openid);
    let mut attempts = 0;
    loop {
        match state
            .store
            .update_one_as::<User>(USERS, &filter, &update, UpdateOptions::upsert())
            .await
        {
            Ok(Some(user)) => return Ok(user),
            Ok(None) => {
                return Err(ApiError::internal(StoreError::Backend(
                    "user upsert returned nothing".into(),
                )));
            }
            // Two first logins raced to insert: the loser updates the winner's document.
            Err(StoreError::DuplicateKey { .. }) if attempts == 0 => attempts += 1,
            Err(e) => return Err(store_error(e)),
        }
    }
}

/// The tenant `tenant_id` with `openid`'s membership, if both still exist.
async fn active_tenant(
    state: &State,
    openid: &str,
    tenant_id: Option<&str>,
) -> Result<Option<(Tenant, Member)>, ApiError> {
    let Some(id) = tenant_id else {
        return Ok(None);
    };
    let Some(member) = state.tenancy.membership(id, openid).await? else {
        return Ok(None);
    };
    Ok(state.tenancy.tenant(id).await?.map(|t| (t, member)))
}

fn issue(state: &State, user: &User, tenant: Option<&(Tenant, Member)>) -> (String, i64) {
    let mut claims = SessionClaims::new(&user.openid, &user.appid);
    claims.uid.clone_from(&user.unionid);
    claims.adm = user.role == UserRole::Admin;
    if let Some((t, m)) = tenant {
        claims.ten = Some(TenantMembership {
            id: t.id.clone(),
            role: m.role,
        });
        claims.plan.clone_from(&t.plan);
    }
    state.auth.issue(claims)
}

fn tenant_view(tenant: &Tenant, role: TenantRole) -> Value {
    json!({"id": tenant.id, "name": tenant.name, "role": role, "plan": tenant.plan})
}

/// `{openid, unionid?, phone?, role, tenant?, createdAt}`: never the session_key.
fn user_view(user: &User, tenant: Option<&(Tenant, Member)>) -> Value {
    let mut view = json!({
        "openid": user.openid,
        "role": user.role,
        "createdAt": user.created_at,
    });
    if let Some(u) = &user.unionid {
        view["unionid"] = json!(u);
    }
    if let Some(p) = &user.phone {
        view["phone"] = json!(p);
    }
    if let Some((t, m)) = tenant {
        view["tenant"] = tenant_view(t, m.role);
    }
    view
}

/// The caller and their user document; a caller who never logged in (possible with trusted
/// platform identity) is sent to `login`.
async fn caller_user(state: &State, req: &CallRequest) -> Result<(Caller, User), ApiError> {
    let caller = state.auth.caller(req)?;
    let user = state
        .store
        .get_as::<User>(USERS, &caller.openid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::unauthenticated("log in first"))?;
    Ok((caller, user))
}

/// `me`: the caller's profile, with the session's tenant as stored now.
///
/// # Errors
/// `UNAUTHENTICATED`, `INTERNAL`.
pub async fn me(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let (caller, user) = caller_user(state, req).await?;
    let tenant_id = caller.tenant.as_ref().map(|t| t.id.as_str());
    let tenant = active_tenant(state, &caller.openid, tenant_id).await?;
    Ok(json!({ "user": user_view(&user, tenant.as_ref()) }))
}

#[derive(Deserialize)]
struct CreateTenantInput {
    name: String,
}

/// `createTenant`: the caller owns the new tenant, which becomes active.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `RATE_LIMITED`, `INTERNAL`.
pub async fn create_tenant(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let (caller, user) = caller_user(state, req).await?;
    let input: CreateTenantInput = req.parse()?;
    state
        .limits
        .check(&caller.openid, "createTenant", CREATE_TENANT_LIMIT)
        .await?;
    let (tenant, _) = state.tenancy.create(&caller.openid, &input.name).await?;
    let active = state.tenancy.activate(&caller.openid, &tenant.id).await?;
    let (token, expires_at) = issue(state, &user, Some(&active));
    Ok(json!({
        "tenant": tenant_view(&active.0, active.1.role),
        "token": token,
        "expiresAt": expires_at,
        "user": user_view(&user, Some(&active)),
    }))
}

#[derive(Deserialize)]
struct InviteInput {
    openid: String,
    role: String,
}

/// `invite`: adds a member to the caller's active tenant.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `FORBIDDEN`, `NOT_FOUND`, `CONFLICT`,
/// `SEAT_LIMIT_REACHED`, `RATE_LIMITED`, `INTERNAL`.
pub async fn invite(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let input: InviteInput = req.parse()?;
    let role = match input.role.as_str() {
        "admin" => TenantRole::Admin,
        "member" => TenantRole::Member,
        _ => return Err(ApiError::bad_request("`role` must be `admin` or `member`")),
    };
    state
        .limits
        .check(&caller.openid, "invite", INVITE_LIMIT)
        .await?;
    let member = state.tenancy.invite(&caller, &input.openid, role).await?;
    Ok(json!({ "member": member.view() }))
}

/// `members`: the members of the caller's active tenant (any member may list them).
///
/// # Errors
/// `UNAUTHENTICATED`, `FORBIDDEN` (no active tenant, not a member), `INTERNAL`.
pub async fn members(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let members = state.tenancy.members(&caller).await?;
    let list: Vec<Value> = members.iter().map(Member::view).collect();
    Ok(json!({ "members": list }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SwitchInput {
    tenant_id: String,
}

/// `switchTenant`: a new token for another tenant the caller belongs to.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `FORBIDDEN` (not a member: also when the tenant does
/// not exist, so ids cannot be probed), `INTERNAL`.
pub async fn switch_tenant(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let (caller, user) = caller_user(state, req).await?;
    let input: SwitchInput = req.parse()?;
    if input.tenant_id.is_empty() || input.tenant_id.len() > 64 {
        return Err(ApiError::bad_request(
            "`tenantId` must be 1 to 64 characters",
        ));
    }
    let active = state
        .tenancy
        .activate(&caller.openid, &input.tenant_id)
        .await?;
    let (token, expires_at) = issue(state, &user, Some(&active));
    Ok(json!({
        "token": token,
        "expiresAt": expires_at,
        "user": user_view(&user, Some(&active)),
    }))
}

#[derive(Deserialize)]
struct LaunchInput {
    #[serde(default)]
    query: serde_json::Map<String, Value>,
}

/// `launch`: the Mini Program reports the query it was opened with. A template message's
/// page carries `from=oa_tpl&tpl=<kind>&m=<message id>`: when that message was sent to the
/// caller, the open is recorded as a touch (once per message). Anything else is ignored.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `INTERNAL`.
pub async fn launch(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let input: LaunchInput = req.parse()?;
    let text = |k: &str| {
        input
            .query
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if text("from") != "oa_tpl" {
        return Ok(json!({"touch": false}));
    }
    let id = text("m");
    let store = state.store.as_ref();
    let Some(message) = notices::sent_to(store, id, &caller.openid).await? else {
        return Ok(json!({"touch": false}));
    };
    let kind = message["kind"].as_str().unwrap_or_default();
    let new = touches::record(
        store,
        &format!("open:{id}"),
        Toucher::User(&caller.openid),
        TouchKind::Template,
        kind,
        state.clock.now_millis(),
    )
    .await?;
    Ok(json!({"touch": true, "new": new, "kind": kind}))
}

#[cfg(test)]
mod tests;
