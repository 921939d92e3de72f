//! The `wxPush` function: the Mini Program / Official Account message push endpoint
//! (`docs/api.md`, `docs/wechat.md`).
//!
//! - `GET`: URL verification (`signature` over token, timestamp, nonce; answer `echostr`).
//! - `POST`: the push, verified before anything is read: `msg_signature` over the ciphertext
//!   and our appid inside it in safe mode (`signature` in plaintext mode). With an
//!   EncodingAESKey configured, only safe mode is accepted (a plaintext `signature` covers no
//!   body). A `timestamp` more than 5 minutes from now is refused, so a logged push URL cannot
//!   be replayed. A push that fails any check is refused (`401`/`403`/`400`) and changes
//!   nothing.
//! - Retried pushes (WeChat retries 3 times when it gets no answer within 5 s) are recognised
//!   by `wemint::wechat::push::receipts` and answered `success` without handling them again;
//!   every handler is also idempotent on its own key.
//!
//! Routes: `wxa_media_check` → the post's moderation state (by trace id);
//! `subscribe_msg_popup_event` → subscribe-message grants; Official Account `subscribe` and
//! menu events → the funnel (the follower is stored in `followers`; the reply is a text with a
//! link into the Mini Program); `xpay_goods_deliver_notify` → [`Commerce::deliver_xpay`], the
//! same fulfilment payNotify uses, which grants only once `query_order` says the order is paid
//! (answered `{"ErrCode":0,"ErrMsg":"Success"}` once handled, a 5xx when the store or the
//! query fails or the payment is not confirmed yet, so WeChat redelivers);
//! `trade_manage_order_settlement` / `trade_manage_remind_shipping` → commerce's shipping
//! record (settlement confirmed with `get_order` first; a failed query is a 5xx);
//! `xpay_refund_notify` → the refund settles as `query_order` confirms it;
//! `xpay_complaint_notify` → `wemint::complaints` (see `after_sale`). Any other push is
//! logged with its type (`unhandled_push`) and changes nothing.

use std::sync::Arc;

use base64::Engine as _;
use http::{Method, StatusCode};
use wemint::clock::SharedClock;
use wemint::commerce::{Commerce, PaymentOutcome, XpayDelivery};
use wemint::complaints::Complaints;
use wemint::config::Config;
use wemint::funnel::notices;
use wemint::funnel::touches::{self, TouchKind, Toucher};
use wemint::identity::people::{self, Side};
use wemint::moderation::{Moderation, NoticeTemplate};
use wemint::runtime::{ApiError, BoxError, Function, WebhookRequest, WebhookResponse};
use wemint::setup::{Deps, required};
use wemint::store::{Filter, Store, StoreError, Update, UpdateOptions};
use wemint::wechat::push::receipts;
use wemint::wechat::shipping::TradeManagePush;
use wemint::wechat::{
    EnvVersion, Expiry, LinkRequest, OpenedPush, PushCrypto, PushError, PushKind, PushQuery, Reply,
    Stamp, WechatClient,
};

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "wxPush";

use wemint::store::collections::FOLLOWERS;

/// Where the funnel sends followers, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funnel {
    /// Mini Program page opened (`WEMINT_FUNNEL_PATH`, default `pages/index/index`).
    pub path: String,
    /// Text before the link (`WEMINT_FUNNEL_TEXT`).
    pub greeting: String,
    /// The Mini Program's appid (for the plaintext scheme fallback).
    pub mini_program_appid: String,
}

/// Makes the link into the Mini Program: a URL Link from WeChat, or the plaintext URL Scheme
/// (`weixin://dl/business/?appid=…&path=…&query=…`, needs the path declared in the Mini
/// Program console) when WeChat cannot make one now.
pub trait LinkMaker: Send + Sync {
    /// A URL Link for `req`.
    fn url_link<'a>(
        &'a self,
        req: &'a LinkRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;
}

impl LinkMaker for WechatClient {
    fn url_link<'a>(
        &'a self,
        req: &'a LinkRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move {
            match self.generate_url_link(req).await {
                Ok(link) => Some(link),
                Err(e) => {
                    tracing::warn!(error = %e, "URL Link failed; using the plaintext scheme");
                    None
                }
            }
        })
    }
}

/// Everything the handler shares, built once at init.
pub struct State {
    /// Mini Program pushes (our appid).
    crypto: PushCrypto,
    /// Official Account pushes, when `WX_OA_APPID` is set (same token and key).
    oa_crypto: Option<PushCrypto>,
    /// Whether an EncodingAESKey is configured (safe mode); without one, encrypted pushes
    /// are refused.
    safe_mode: bool,
    moderation: Moderation,
    commerce: Commerce,
    complaints: Complaints,
    links: Arc<dyn LinkMaker>,
    funnel: Funnel,
    clock: SharedClock,
    /// The Official Account's API client (`user/info` for the UnionID of new followers).
    oa: Option<WechatClient>,
}

impl State {
    /// State from its parts (tests; [`init`] builds it from the environment).
    pub fn new(
        crypto: PushCrypto,
        oa_crypto: Option<PushCrypto>,
        moderation: Moderation,
        links: Arc<dyn LinkMaker>,
        funnel: Funnel,
        clock: SharedClock,
    ) -> Self {
        let commerce = Commerce::new(
            moderation.store().clone(),
            crypto.appid().to_owned(),
            clock.clone(),
        );
        let complaints = Complaints::new(moderation.store().clone(), clock.clone());
        Self {
            crypto,
            oa_crypto,
            safe_mode: true,
            commerce,
            complaints,
            moderation,
            links,
            funnel,
            clock,
            oa: None,
        }
    }

    /// Looks new followers up with the Official Account's `user/info` (their UnionID links
    /// them to the Mini Program user of the same person).
    #[must_use]
    pub fn with_oa(mut self, oa: Option<WechatClient>) -> Self {
        self.oa = oa;
        self
    }

    /// The order service as the deployment wires it ([`Deps::commerce`]): with virtual
    /// payment configured, deliveries are confirmed with `query_order`, and one from the other
    /// environment (sandbox vs production) is held for review.
    #[must_use]
    pub fn with_commerce(mut self, commerce: Commerce) -> Self {
        self.commerce = commerce;
        self
    }

    /// The complaints service as the deployment wires it ([`Deps::complaints`]).
    #[must_use]
    pub fn with_complaints(mut self, complaints: Complaints) -> Self {
        self.complaints = complaints;
        self
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.moderation.store()
    }
}

/// Builds the state from the push settings and the deployment's dependencies.
///
/// # Errors
/// A missing or malformed setting, an unreachable store.
pub async fn init(config: Config) -> Result<State, BoxError> {
    let push = config.wx_push()?;
    let deps = Deps::from_config(&config).await?;
    let wechat = Arc::new(required(deps.wechat.clone(), "WECHAT_APPID")?);
    let appid = wechat.appid().to_owned();
    // PushCrypto takes the EncodingAESKey text: 43 base64 characters of the 32 bytes.
    let (eak, safe_mode) = match &push.aes_key {
        Some(key) => {
            let mut s = base64::engine::general_purpose::STANDARD.encode(key.expose());
            s.truncate(43);
            (s, true)
        }
        None => ("A".repeat(43), false),
    };
    let crypto = PushCrypto::new(push.token.expose(), &eak, &appid)?;
    let oa_crypto = match config.optional("WX_OA_APPID") {
        Some(oa_appid) => Some(PushCrypto::new(push.token.expose(), &eak, &oa_appid)?),
        None => None,
    };
    let moderation = deps
        .moderation()?
        .with_notice(NoticeTemplate::from_config(&config));
    let funnel = Funnel {
        path: config
            .optional("WEMINT_FUNNEL_PATH")
            .unwrap_or_else(|| "pages/index/index".to_owned()),
        greeting: config
            .optional("WEMINT_FUNNEL_TEXT")
            .unwrap_or_else(|| "欢迎关注！点这里进入小程序：".to_owned()),
        mini_program_appid: appid,
    };
    let commerce = deps.commerce();
    let complaints = deps.complaints();
    let oa = deps.oa.clone();
    let mut state = State::new(crypto, oa_crypto, moderation, wechat, funnel, deps.clock)
        .with_commerce(commerce)
        .with_complaints(complaints)
        .with_oa(oa);
    state.safe_mode = safe_mode;
    Ok(state)
}

/// The function value `main` runs: one webhook taking every path.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .webhook("/", |s: Arc<State>, req| async move {
            Ok(handle(&s, &req).await)
        })
        // Push receipts only need to outlive WeChat's retries; the timer drops older ones.
        .timer(|s: Arc<State>, _timer| async move {
            let now_ms = s.clock.now_unix().saturating_mul(1000);
            let purged = receipts::purge_expired(s.moderation.store().as_ref(), now_ms)
                .await
                .map_err(ApiError::internal)?;
            tracing::info!(purged, "push receipts purged");
            Ok::<_, ApiError>(serde_json::json!({ "receiptsPurged": purged }))
        })
}

fn refusal(err: &PushError) -> WebhookResponse {
    let status = match err {
        PushError::BadSignature
        | PushError::MissingParam(_)
        | PushError::PlaintextRefused
        | PushError::Timestamp => StatusCode::UNAUTHORIZED,
        PushError::AppidMismatch { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    tracing::warn!(error = %err, status = status.as_u16(), "push refused");
    WebhookResponse::text(status, "refused")
}

/// Serves one request to the push URL.
pub async fn handle(state: &State, req: &WebhookRequest) -> WebhookResponse {
    let query = PushQuery::from_pairs(req.query.iter().map(|(k, v)| (k.as_str(), v.clone())));
    match req.method {
        Method::GET => match state.crypto.verify_url(&query) {
            Ok(echo) => WebhookResponse::text(StatusCode::OK, echo.to_owned()),
            Err(e) => refusal(&e),
        },
        Method::POST => {
            if query.is_encrypted() && !state.safe_mode {
                return refusal(&PushError::InvalidAesKey);
            }
            if state.safe_mode && !query.is_encrypted() {
                return refusal(&PushError::PlaintextRefused);
            }
            if let Err(e) = query.check_fresh(state.clock.now_unix()) {
                return refusal(&e);
            }
            let opened = match open(state, &query, &req.body) {
                Ok(o) => o,
                Err(e) => return refusal(&e),
            };
            match dispatch(state, &opened).await {
                Ok(reply) => reply,
                Err(e) => {
                    // Not recorded: WeChat's retry gets another chance.
                    tracing::error!(error = %e, "push handling failed");
                    WebhookResponse::from_error(&e)
                }
            }
        }
        _ => WebhookResponse::text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
    }
}

/// Opens with the Mini Program's appid, then (if configured) the Official Account's.
fn open(state: &State, query: &PushQuery, body: &[u8]) -> Result<(OpenedPush, bool), PushError> {
    match state.crypto.open(query, body) {
        Err(PushError::AppidMismatch { found }) => match &state.oa_crypto {
            Some(oa) => oa.open(query, body).map(|o| (o, true)),
            None => Err(PushError::AppidMismatch { found }),
        },
        other => other.map(|o| (o, false)),
    }
}

fn internal(e: impl Into<wemint::runtime::BoxError>) -> ApiError {
    ApiError::internal(e.into())
}

async fn dispatch(
    state: &State,
    (opened, oa): &(OpenedPush, bool),
) -> Result<WebhookResponse, ApiError> {
    let message = &opened.message;
    let crypto = if *oa {
        state.oa_crypto.as_ref().unwrap_or(&state.crypto)
    } else {
        &state.crypto
    };
    let store = state.store().as_ref();
    if receipts::already_handled(store, message)
        .await
        .map_err(internal)?
    {
        tracing::info!(key = %message.dedupe_key(), "push already handled");
        if matches!(message.kind, PushKind::XpayGoodsDeliver(_)) || after_sale::is_xpay(message) {
            return Ok(WebhookResponse::json(
                StatusCode::OK,
                &wemint::pay::xpay::deliver_ack(),
            ));
        }
        return Ok(success());
    }
    let now = state.clock.now_unix();
    let reply = match &message.kind {
        PushKind::MediaCheck(result) => {
            let outcome = state
                .moderation
                .apply_media_result(&result.trace_id, result.verdict)
                .await?;
            tracing::info!(trace_id = %result.trace_id, ?outcome, "media check result");
            Reply::Success
        }
        PushKind::SubscribeMsgPopup(decisions) => {
            // Only the post-result template: gatedContent records its own templates
            // (`subscribeGrant`), so counting those here too would double their credits.
            let ours = state.moderation.notice_template_id();
            for d in decisions
                .iter()
                .filter(|d| d.status.starts_with("accept") && Some(d.template_id.as_str()) == ours)
            {
                state
                    .moderation
                    .grant(&message.from_user_name, &d.template_id)
                    .await?;
            }
            Reply::Success
        }
        PushKind::Subscribe { event_key, .. } => {
            follow(
                state,
                &message.from_user_name,
                &message.to_user_name,
                event_key.as_deref(),
                now,
            )
            .await
            .map_err(internal)?;
            oa_funnel::link_follower(
                state.store().as_ref(),
                state.oa.as_ref(),
                &message.from_user_name,
                now,
            )
            .await?;
            let scene = event_key
                .as_deref()
                .and_then(|k| k.strip_prefix("qrscene_"));
            if let Some(scene) = scene {
                oa_funnel::touch(state, message, TouchKind::Scan, scene).await?;
            }
            message.text_reply(funnel_text(state, scene).await, now)
        }
        PushKind::MenuClick { event_key } => {
            touch_follower(state, &message.from_user_name, event_key, now)
                .await
                .map_err(internal)?;
            oa_funnel::touch(state, message, TouchKind::Menu, event_key).await?;
            message.text_reply(funnel_text(state, None).await, now)
        }
        PushKind::MenuView { url, .. } => {
            oa_funnel::touch(state, message, TouchKind::Menu, url).await?;
            Reply::Success
        }
        PushKind::MenuMiniProgram { page_path, .. } => {
            oa_funnel::touch(state, message, TouchKind::Menu, page_path).await?;
            Reply::Success
        }
        PushKind::Other { event: Some(event) } if event.as_str() == "SCAN" => {
            // Already following: EventKey is the scene itself (no `qrscene_` prefix).
            let scene = message.raw["EventKey"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            oa_funnel::link_follower(
                state.store().as_ref(),
                state.oa.as_ref(),
                &message.from_user_name,
                now,
            )
            .await?;
            if !scene.is_empty() {
                oa_funnel::touch(state, message, TouchKind::Scan, &scene).await?;
            }
            message.text_reply(funnel_text(state, Some(&scene)).await, now)
        }
        PushKind::Other { event: Some(event) } if event.as_str() == "TEMPLATESENDJOBFINISH" => {
            let msgid = message.raw["MsgID"]
                .as_i64()
                .or_else(|| message.raw["MsgID"].as_str().and_then(|m| m.parse().ok()));
            if let Some(msgid) = msgid {
                let status = message.raw["Status"].as_str().unwrap_or_default();
                notices::record_delivery(state.store().as_ref(), msgid, status).await?;
            }
            Reply::Success
        }
        PushKind::Unsubscribe => {
            state
                .store()
                .update_one(
                    FOLLOWERS,
                    &Filter::id(&message.from_user_name),
                    &Update::new()
                        .set("subscribed", false)
                        .set("unsubscribedAt", now)
                        .set("updatedAt", now),
                    UpdateOptions::default(),
                )
                .await
                .map_err(internal)?;
            Reply::Success
        }
        PushKind::XpayGoodsDeliver(payload) => {
            return deliver_xpay(state, message, payload, now).await;
        }
        PushKind::Other { event: Some(event) } if event.starts_with("trade_manage_") => {
            trade_manage(state, &message.raw).await?;
            Reply::Success
        }
        PushKind::Other { event: Some(event) } if event == "xpay_refund_notify" => {
            return after_sale::refund(state, message, now).await;
        }
        PushKind::Other { event: Some(event) } if event == "xpay_complaint_notify" => {
            return after_sale::complaint(state, message, now).await;
        }
        PushKind::Other { .. } | PushKind::Text { .. } => {
            return Ok(after_sale::unrecognised(message));
        }
        _ => Reply::Success,
    };
    receipts::record_handled(store, message, now.saturating_mul(1000))
        .await
        .map_err(internal)?;
    let stamp = Stamp::generate(now).map_err(|_| internal("random source failed"))?;
    let body = crypto.reply_body(opened, &reply, &stamp);
    let content_type = if matches!(reply, Reply::Success) {
        "text/plain; charset=utf-8"
    } else {
        opened.format.content_type()
    };
    Ok(WebhookResponse::with_body(
        StatusCode::OK,
        content_type,
        body,
    ))
}

/// Virtual-payment delivery: verified above, parsed by `wemint::pay::xpay`, fulfilled by
/// commerce (idempotent per `OutTradeNo`). Every outcome but a failure is acknowledged; a
/// malformed payload is refused (400) and changes nothing.
async fn deliver_xpay(
    state: &State,
    message: &wemint::wechat::PushMessage,
    payload: &serde_json::Value,
    now: i64,
) -> Result<WebhookResponse, ApiError> {
    let push = match wemint::pay::xpay::parse_goods_deliver_notify(payload) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "xpay delivery push unreadable");
            return Ok(WebhookResponse::text(
                StatusCode::BAD_REQUEST,
                "unreadable delivery",
            ));
        }
    };
    let outcome = state
        .commerce
        .deliver_xpay(&XpayDelivery::from(&push))
        .await?;
    tracing::info!(out_trade_no = %push.out_trade_no, ?outcome, "xpay delivery");
    if outcome == PaymentOutcome::NotPaid {
        // `query_order` does not confirm the payment: not acknowledged and not recorded, so
        // WeChat's retry (or reconcile) delivers it once the payment shows.
        return Ok(WebhookResponse::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "payment not confirmed",
        ));
    }
    receipts::record_handled(state.store().as_ref(), message, now.saturating_mul(1000))
        .await
        .map_err(internal)?;
    Ok(WebhookResponse::json(
        StatusCode::OK,
        &wemint::pay::xpay::deliver_ack(),
    ))
}

/// Shipping pushes (`trade_manage_remind_shipping`, `trade_manage_order_settlement`):
/// commerce confirms settlement with `get_order` before recording it, and reminds admins of
/// unshipped orders. Other `trade_manage_*` events are logged only.
async fn trade_manage(state: &State, raw: &serde_json::Value) -> Result<(), ApiError> {
    match TradeManagePush::from_raw(raw) {
        Some(push) => {
            let outcome = state.commerce.apply_trade_manage(&push).await?;
            tracing::info!(?outcome, "trade_manage push");
        }
        None => tracing::info!(
            event = raw
                .get("Event")
                .and_then(|e| e.as_str())
                .unwrap_or_default(),
            "trade_manage push not handled"
        ),
    }
    Ok(())
}

fn success() -> WebhookResponse {
    WebhookResponse::text(StatusCode::OK, "success")
}

/// Stores (or re-activates) a follower.
async fn follow(
    state: &State,
    openid: &str,
    account: &str,
    event_key: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let mut update = Update::new()
        .set("subscribed", true)
        .set("account", account)
        .set("subscribedAt", now)
        .set("updatedAt", now)
        .set_on_insert("openid", openid)
        .set_on_insert("firstSubscribedAt", now);
    if let Some(k) = event_key {
        update = update.set("source", k);
    }
    upsert(state.store().as_ref(), openid, &update).await
}

async fn touch_follower(
    state: &State,
    openid: &str,
    menu_key: &str,
    now: i64,
) -> Result<(), StoreError> {
    let update = Update::new()
        .set("lastMenuKey", menu_key)
        .set("updatedAt", now)
        .set_on_insert("openid", openid)
        .set_on_insert("subscribed", true)
        .set_on_insert("firstSubscribedAt", now);
    upsert(state.store().as_ref(), openid, &update).await
}

async fn upsert(store: &dyn Store, openid: &str, update: &Update) -> Result<(), StoreError> {
    for attempt in 0..2 {
        match store
            .update_one(
                FOLLOWERS,
                &Filter::id(openid),
                update,
                UpdateOptions::upsert(),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::DuplicateKey { .. }) if attempt == 0 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The funnel text: greeting and a link into the Mini Program (`from=oa`, plus the QR scene).
async fn funnel_text(state: &State, scene: Option<&str>) -> String {
    let scene = scene.filter(|s| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    });
    let query = match scene {
        Some(s) => format!("from=oa&scene={s}"),
        None => "from=oa".to_owned(),
    };
    let req = LinkRequest {
        path: Some(state.funnel.path.clone()),
        query: Some(query.clone()),
        expiry: Expiry::InDays(30),
        env_version: Some(EnvVersion::Release),
    };
    let link = match state.links.url_link(&req).await {
        Some(link) => link,
        None => plaintext_scheme(&state.funnel.mini_program_appid, &state.funnel.path, &query),
    };
    format!("{}{link}", state.funnel.greeting)
}

/// WeChat's plaintext URL Scheme (no API call; the path must be declared in the console).
pub fn plaintext_scheme(appid: &str, path: &str, query: &str) -> String {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("weixin://dl/business/?appid={appid}&path={path}&query={encoded}")
}

/// The `followers` document for `openid` (tests and the emulator).
///
/// # Errors
/// Store failures.
pub async fn follower(
    store: &dyn Store,
    openid: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    store.get(FOLLOWERS, openid).await
}

mod after_sale;

/// The Official Account funnel's part of the push handling (`wemint::funnel`).
mod oa_funnel {
    use super::*;

    /// Links a follower to the person of its UnionID (`user/info`), once per follower. A
    /// failed lookup fails the push, so WeChat's retry tries again.
    pub(super) async fn link_follower(
        store: &dyn Store,
        oa: Option<&WechatClient>,
        openid: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        let Some(oa) = oa else {
            return Ok(());
        };
        let known = store
            .get(FOLLOWERS, openid)
            .await
            .map_err(internal)?
            .is_some_and(|f| f.get("unionidCheckedAt").is_some());
        if known {
            return Ok(());
        }
        let info = oa.oa_user_info(openid).await.map_err(|e| {
            tracing::warn!(error = %e, "user/info failed; WeChat will retry the push");
            ApiError::new(
                "WECHAT_BUSY",
                StatusCode::SERVICE_UNAVAILABLE,
                "user/info failed",
            )
        })?;
        let mut update = Update::new().set("unionidCheckedAt", now);
        if let Some(unionid) = info.unionid.as_deref().filter(|u| !u.is_empty()) {
            people::link(store, unionid, Side::Oa, openid, now)
                .await
                .map_err(internal)?;
            update = update.set("unionid", unionid);
        }
        store
            .update_one(
                FOLLOWERS,
                &Filter::id(openid),
                &update,
                UpdateOptions::default(),
            )
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Records the push as a touch of the follower (once per push: its dedupe key).
    pub(super) async fn touch(
        state: &State,
        message: &wemint::wechat::PushMessage,
        kind: TouchKind,
        key: &str,
    ) -> Result<(), ApiError> {
        touches::record(
            state.store().as_ref(),
            &message.dedupe_key(),
            Toucher::Follower(&message.from_user_name),
            kind,
            key,
            state.clock.now_millis(),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod harness_tests;
