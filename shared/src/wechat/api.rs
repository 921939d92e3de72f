//! The WeChat server APIs wemint calls: login, phone number, content security v2, deep
//! links, Mini Program codes and subscribe messages.
//!
//! Every call that needs an access token goes through [`WechatClient::with_token`]: the
//! shared token from the store, and on 40001/40014/42001 one refresh and one retry.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::outbound::Retry;
use crate::store::Store;
use crate::wechat::client::{
    AccessToken, Binary, Clock, Http, Idempotent, WechatConfig, system_clock,
};
use crate::wechat::crypto::{PhoneInfo, Watermark, session_signature};
use crate::wechat::error::WechatError;
use crate::wechat::token::{TokenCache, TokenPolicy};
use crate::wechat::verdict::{CheckDetail, Verdict, parse_details, parse_verdict};

/// A user's session_key. Never sent to the client, never logged (`Debug` is redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(String);

impl SessionKey {
    /// Wraps a session_key read back from storage (e.g. unsealed by `identity`).
    pub fn new(key: impl Into<String>) -> Self {
        SessionKey(key.into())
    }

    /// The base64 text, for decrypting open data or sealing it for storage.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// What `code2Session` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's openid under our appid.
    pub openid: String,
    /// The current session_key (one valid at a time; a new `wx.login` may replace it).
    pub session_key: SessionKey,
    /// Present when the Mini Program is bound to an Open Platform account.
    pub unionid: Option<String>,
}

#[derive(Deserialize)]
struct SessionReply {
    openid: String,
    session_key: String,
    #[serde(default)]
    unionid: Option<String>,
}

/// Content-security scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scene {
    /// 1: profile (nickname, bio).
    Profile = 1,
    /// 2: comment.
    Comment = 2,
    /// 3: forum post.
    Forum = 3,
    /// 4: social log.
    SocialLog = 4,
}

/// `msg_sec_check` v2 input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCheckRequest {
    /// The text (at most 2500 characters).
    pub content: String,
    /// Where it will be shown.
    pub scene: Scene,
    /// The author, who must have opened the Mini Program within the last 2 hours.
    pub openid: String,
    /// Optional title.
    pub title: Option<String>,
    /// Optional nickname.
    pub nickname: Option<String>,
    /// Optional personal signature (scene 1 only).
    pub signature: Option<String>,
}

impl TextCheckRequest {
    /// A request with no title, nickname or signature.
    pub fn new(content: impl Into<String>, scene: Scene, openid: impl Into<String>) -> Self {
        TextCheckRequest {
            content: content.into(),
            scene,
            openid: openid.into(),
            title: None,
            nickname: None,
            signature: None,
        }
    }
}

/// `msg_sec_check` v2 result.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCheck {
    /// WeChat's trace id.
    pub trace_id: Option<String>,
    /// Overall verdict.
    pub verdict: Verdict,
    /// Per-strategy findings.
    pub detail: Vec<CheckDetail>,
}

/// Media kind for `media_check_async`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// 1: audio (mp3, aac, ac3, wma, flac, vorbis, opus, wav).
    Audio = 1,
    /// 2: image (jpg, jpeg, png, bmp, gif first frame).
    Image = 2,
}

/// `media_check_async` v2 input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCheckRequest {
    /// Public https URL WeChat downloads (at most 10 MB).
    pub media_url: String,
    /// Audio or image.
    pub media_type: MediaType,
    /// Where it will be shown.
    pub scene: Scene,
    /// The author (opened the Mini Program within 2 hours).
    pub openid: String,
}

/// Mini Program version a link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvVersion {
    /// Published version.
    Release,
    /// Trial version.
    Trial,
    /// Developer version.
    Develop,
}

impl EnvVersion {
    fn as_str(self) -> &'static str {
        match self {
            EnvVersion::Release => "release",
            EnvVersion::Trial => "trial",
            EnvVersion::Develop => "develop",
        }
    }
}

/// When a URL Link / URL Scheme stops working (at most 30 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// At this unix time (seconds).
    At(i64),
    /// After this many days (1–30).
    InDays(u32),
}

/// URL Link / URL Scheme target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    /// A published page without query; `None` opens the home page.
    pub path: Option<String>,
    /// Query string (at most 1024 characters of `[0-9A-Za-z!#$&'()*+,/:;=?@-._~%]`).
    pub query: Option<String>,
    /// Expiry.
    pub expiry: Expiry,
    /// Version to open.
    pub env_version: Option<EnvVersion>,
}

/// `getwxacodeunlimit` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlimitedCodeRequest {
    /// At most 32 visible characters of `[0-9A-Za-z!#$&'()*+,/:;=?@-._~]`.
    pub scene: String,
    /// Page without leading `/` and without query; `None` opens the home page.
    pub page: Option<String>,
    /// `false` allows unpublished pages.
    pub check_path: Option<bool>,
    /// Version to open.
    pub env_version: Option<EnvVersion>,
    /// 280–1280 px (default 430).
    pub width: Option<u32>,
    /// Automatic line colour.
    pub auto_color: Option<bool>,
    /// Line colour `(r, g, b)` when not automatic.
    pub line_color: Option<(u8, u8, u8)>,
    /// Transparent background.
    pub is_hyaline: Option<bool>,
}

impl UnlimitedCodeRequest {
    /// A code for `scene` opening `page`, defaults elsewhere.
    pub fn new(scene: impl Into<String>, page: Option<&str>) -> Self {
        UnlimitedCodeRequest {
            scene: scene.into(),
            page: page.map(str::to_owned),
            check_path: None,
            env_version: None,
            width: None,
            auto_color: None,
            line_color: None,
            is_hyaline: None,
        }
    }
}

/// Which Mini Program version a subscribe message opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiniprogramState {
    /// Developer version.
    Developer,
    /// Trial version.
    Trial,
    /// Published version (default).
    Formal,
}

/// `subscribeMessage.send` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeMessage {
    /// Recipient openid.
    pub touser: String,
    /// Template id.
    pub template_id: String,
    /// Page (with query) opened from the message; none means no jump.
    pub page: Option<String>,
    /// Template fields: `thing1` → value.
    pub data: BTreeMap<String, String>,
    /// Version opened.
    pub miniprogram_state: Option<MiniprogramState>,
    /// `zh_CN` (default), `en_US`, `zh_HK`, `zh_TW`.
    pub lang: Option<String>,
}

fn invalid(msg: impl Into<String>) -> WechatError {
    WechatError::InvalidRequest(msg.into())
}

const LINK_QUERY_EXTRA: &str = "!#$&'()*+,/:;=?@-._~%";

fn check_link(req: &LinkRequest) -> Result<(), WechatError> {
    if let Some(q) = &req.query {
        if q.chars().count() > 1024 {
            return Err(invalid("query longer than 1024 characters"));
        }
        if !q
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LINK_QUERY_EXTRA.contains(c))
        {
            return Err(invalid(
                "query has characters outside WeChat's allowed set; url-encode them",
            ));
        }
    }
    if req.path.as_deref().is_some_and(|p| p.contains('?')) {
        return Err(invalid("path must not contain a query; use `query`"));
    }
    if let Expiry::InDays(d) = req.expiry
        && !(1..=30).contains(&d)
    {
        return Err(invalid("expiry must be 1 to 30 days"));
    }
    Ok(())
}

fn expiry_fields(m: &mut Map<String, Value>, expiry: Expiry) {
    match expiry {
        Expiry::At(t) => {
            m.insert("expire_type".into(), 0.into());
            m.insert("expire_time".into(), t.into());
        }
        Expiry::InDays(d) => {
            m.insert("expire_type".into(), 1.into());
            m.insert("expire_interval".into(), d.into());
        }
    }
}

fn check_openid(openid: &str) -> Result<(), WechatError> {
    if openid.trim().is_empty() {
        return Err(invalid("openid is required"));
    }
    Ok(())
}

/// The WeChat client: one per function instance, cheap to clone.
#[derive(Clone, Debug)]
pub struct WechatClient {
    http: Http,
    tokens: TokenCache,
}

impl WechatClient {
    /// A client using the shared outbound client, the default retry policy and the system clock.
    ///
    /// # Errors
    /// If the outbound HTTP client cannot be built.
    pub fn new(config: WechatConfig, store: Arc<dyn Store>) -> Result<Self, WechatError> {
        Self::with_options(
            config,
            store,
            Retry::default(),
            system_clock(),
            TokenPolicy::default(),
        )
    }

    /// A client with explicit retry policy, clock and token timing (tests, emulator).
    ///
    /// # Errors
    /// If the outbound HTTP client cannot be built.
    pub fn with_options(
        config: WechatConfig,
        store: Arc<dyn Store>,
        retry: Retry,
        clock: Clock,
        policy: TokenPolicy,
    ) -> Result<Self, WechatError> {
        let http = Http::new(config, retry)?;
        let tokens = TokenCache::new(http.clone(), store, clock, policy);
        Ok(WechatClient { http, tokens })
    }

    /// A client for the app `config.wechat()` describes (appid, secret, API base), sharing
    /// `store`'s token cache.
    ///
    /// # Errors
    /// If the outbound HTTP client cannot be built.
    pub fn from_settings(
        settings: &crate::config::WechatSettings,
        store: Arc<dyn Store>,
    ) -> Result<Self, WechatError> {
        let config = WechatConfig::new(
            settings.appid.clone(),
            settings.appsecret.expose().clone(),
            Some(&settings.api_base),
        );
        Self::new(config, store)
    }

    /// Our appid.
    pub fn appid(&self) -> &str {
        &self.http.config.appid
    }

    /// The shared token cache.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// Runs `call` with the shared access token; if WeChat rejects the token
    /// (40001/40014/42001), refreshes it once and runs `call` once more.
    ///
    /// # Errors
    /// Whatever `call` or the token cache returns.
    pub async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, WechatError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, WechatError>>,
    {
        let token = self.tokens.token().await?;
        match call(token.clone()).await {
            Err(e) if e.is_token_invalid() => {
                tracing::warn!(errcode = ?e.errcode(), "access token rejected; refreshing once");
                let fresh = self.tokens.refresh_after_failure(&token).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    pub(crate) async fn get_with_token<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, WechatError> {
        self.with_token(|t| async move {
            let mut q = vec![("access_token", t.expose())];
            q.extend_from_slice(query);
            self.http.get_json(path, &q).await
        })
        .await
    }

    pub(crate) async fn post_with_token<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        idempotent: Idempotent,
    ) -> Result<T, WechatError> {
        self.with_token(|t| async move {
            self.http
                .post_json(path, &[("access_token", t.expose())], body, idempotent)
                .await
        })
        .await
    }

    /// `code2Session`: exchanges a `wx.login` code for openid, session_key and unionid.
    ///
    /// Typed failures: 40029 `InvalidCode` (expired, used, or another appid's code), 40163
    /// `CodeUsed`, 45011 `RateLimited`, 40226 `RiskyUser`, 40125 `InvalidAppSecret`; -1 is
    /// retried.
    ///
    /// # Errors
    /// [`WechatError`] as above.
    pub async fn code2session(&self, js_code: &str) -> Result<Session, WechatError> {
        let js_code = js_code.trim();
        if js_code.is_empty() || js_code.len() > 128 {
            return Err(invalid("js_code must be 1 to 128 characters"));
        }
        let reply: SessionReply = self
            .http
            .get_json(
                "/sns/jscode2session",
                &[
                    ("appid", &self.http.config.appid),
                    ("secret", self.http.config.secret()),
                    ("js_code", js_code),
                    ("grant_type", "authorization_code"),
                ],
            )
            .await?;
        if reply.openid.is_empty() || reply.session_key.is_empty() {
            return Err(WechatError::Decode(
                "code2Session reply without openid or session_key".into(),
            ));
        }
        Ok(Session {
            openid: reply.openid,
            session_key: SessionKey(reply.session_key),
            unionid: reply.unionid.filter(|u| !u.is_empty()),
        })
    }

    /// `checkSessionKey`: asks WeChat whether `session_key` is still the user's current one
    /// (`signature = hmac_sha256(session_key, "")`). `Ok(false)` on 87009 (not current).
    ///
    /// # Errors
    /// [`WechatError`] other than 87009.
    pub async fn check_session_key(
        &self,
        openid: &str,
        session_key: &SessionKey,
    ) -> Result<bool, WechatError> {
        check_openid(openid)?;
        let signature = session_signature(session_key.expose(), b"");
        let outcome: Result<Value, WechatError> = self
            .with_token(|t| {
                let signature = &signature;
                async move {
                    self.http
                        .get_json(
                            "/wxa/checksession",
                            &[
                                ("access_token", t.expose()),
                                ("openid", openid),
                                ("signature", signature),
                                ("sig_method", "hmac_sha256"),
                            ],
                        )
                        .await
                }
            })
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if e.errcode() == Some(crate::wechat::ErrCode::InvalidSignature) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Phone number from a `getPhoneNumber` button code; with `openid`, WeChat also checks
    /// the code belongs to that user. The watermark appid must be ours.
    ///
    /// # Errors
    /// [`WechatError`]; 40029 `InvalidCode` for an expired or used code.
    pub async fn phone_number(
        &self,
        code: &str,
        openid: Option<&str>,
    ) -> Result<PhoneInfo, WechatError> {
        if code.trim().is_empty() {
            return Err(invalid("code is required"));
        }
        let mut body = json!({"code": code.trim()});
        if let Some(o) = openid {
            body["openid"] = o.into();
        }
        #[derive(Deserialize)]
        struct Reply {
            phone_info: Value,
        }
        let reply: Reply = self
            .post_with_token("/wxa/business/getuserphonenumber", &body, Idempotent::Yes)
            .await?;
        let watermark: Watermark = serde_json::from_value(reply.phone_info["watermark"].clone())
            .map_err(|e| WechatError::Decode(format!("phone_info.watermark: {e}")))?;
        if watermark.appid != self.http.config.appid {
            return Err(WechatError::Decode(format!(
                "phone_info watermark appid {} is not ours",
                watermark.appid
            )));
        }
        serde_json::from_value(reply.phone_info)
            .map_err(|e| WechatError::Decode(format!("phone_info: {e}")))
    }

    /// `msg_sec_check` v2 (text, synchronous).
    ///
    /// # Errors
    /// [`WechatError`]; 40003 `InvalidOpenid`, 40129 `InvalidScene`, 43104 `AppidOpenidMismatch`.
    pub async fn msg_sec_check(&self, req: &TextCheckRequest) -> Result<TextCheck, WechatError> {
        if req.content.is_empty() || req.content.chars().count() > 2500 {
            return Err(invalid("content must be 1 to 2500 characters"));
        }
        check_openid(&req.openid)?;
        let mut body = json!({
            "content": req.content,
            "version": 2,
            "scene": req.scene as i64,
            "openid": req.openid,
        });
        for (key, value) in [
            ("title", &req.title),
            ("nickname", &req.nickname),
            ("signature", &req.signature),
        ] {
            if let Some(v) = value {
                body[key] = v.clone().into();
            }
        }
        let reply: Value = self
            .post_with_token("/wxa/msg_sec_check", &body, Idempotent::Yes)
            .await?;
        let result = reply
            .get("result")
            .ok_or_else(|| WechatError::Decode("msg_sec_check reply without result".into()))?;
        Ok(TextCheck {
            trace_id: reply
                .get("trace_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            verdict: parse_verdict(result).map_err(WechatError::Decode)?,
            detail: parse_details(reply.get("detail")),
        })
    }

    /// `media_check_async` v2: returns the `trace_id`; the verdict arrives later as the
    /// `wxa_media_check` push ([`crate::wechat::PushKind::MediaCheck`]).
    ///
    /// # Errors
    /// [`WechatError`].
    pub async fn media_check_async(&self, req: &MediaCheckRequest) -> Result<String, WechatError> {
        if !req.media_url.starts_with("https://") && !req.media_url.starts_with("http://") {
            return Err(invalid("media_url must be a public http(s) URL"));
        }
        check_openid(&req.openid)?;
        let body = json!({
            "media_url": req.media_url,
            "media_type": req.media_type as i64,
            "version": 2,
            "scene": req.scene as i64,
            "openid": req.openid,
        });
        #[derive(Deserialize)]
        struct Reply {
            trace_id: String,
        }
        let reply: Reply = self
            .post_with_token("/wxa/media_check_async", &body, Idempotent::No)
            .await?;
        Ok(reply.trace_id)
    }

    /// URL Link (`https://wxaurl.cn/…`) opening the Mini Program from outside WeChat.
    ///
    /// # Errors
    /// [`WechatError`]; 85079 `NotPublished`, 40165 `InvalidPath`.
    pub async fn generate_url_link(&self, req: &LinkRequest) -> Result<String, WechatError> {
        check_link(req)?;
        let mut m = Map::new();
        m.insert("path".into(), req.path.clone().unwrap_or_default().into());
        m.insert("query".into(), req.query.clone().unwrap_or_default().into());
        expiry_fields(&mut m, req.expiry);
        if let Some(env) = req.env_version {
            m.insert("env_version".into(), env.as_str().into());
        }
        #[derive(Deserialize)]
        struct Reply {
            url_link: String,
        }
        let reply: Reply = self
            .post_with_token("/wxa/generate_urllink", &Value::Object(m), Idempotent::Yes)
            .await?;
        Ok(reply.url_link)
    }

    /// URL Scheme (`weixin://dl/business/?t=…`); always expiring (at most 30 days).
    ///
    /// # Errors
    /// [`WechatError`]; 40002 (no permission), 85079 `NotPublished`, 40165 `InvalidPath`,
    /// 85400 `LongTermQuota`.
    pub async fn generate_scheme(&self, req: &LinkRequest) -> Result<String, WechatError> {
        check_link(req)?;
        let mut jump = Map::new();
        jump.insert("path".into(), req.path.clone().unwrap_or_default().into());
        jump.insert("query".into(), req.query.clone().unwrap_or_default().into());
        if let Some(env) = req.env_version {
            jump.insert("env_version".into(), env.as_str().into());
        }
        let mut m = Map::new();
        m.insert("jump_wxa".into(), Value::Object(jump));
        m.insert("is_expire".into(), true.into());
        expiry_fields(&mut m, req.expiry);
        #[derive(Deserialize)]
        struct Reply {
            openlink: String,
        }
        let reply: Reply = self
            .post_with_token("/wxa/generatescheme", &Value::Object(m), Idempotent::Yes)
            .await?;
        Ok(reply.openlink)
    }

    /// Unlimited Mini Program code (poster QR): image bytes on success; a JSON reply is an
    /// error (the content type decides).
    ///
    /// # Errors
    /// [`WechatError`]; 41030 `InvalidPage`, 45009 `QuotaReached`.
    pub async fn get_unlimited_code(
        &self,
        req: &UnlimitedCodeRequest,
    ) -> Result<Binary, WechatError> {
        let scene_ok = !req.scene.is_empty()
            && req.scene.chars().count() <= 32
            && req
                .scene
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&'()*+,/:;=?@-._~".contains(c));
        if !scene_ok {
            return Err(invalid(
                "scene must be 1 to 32 characters of [0-9A-Za-z!#$&'()*+,/:;=?@-._~]",
            ));
        }
        if req
            .page
            .as_deref()
            .is_some_and(|p| p.starts_with('/') || p.contains('?'))
        {
            return Err(invalid("page must not start with `/` or carry a query"));
        }
        if req.width.is_some_and(|w| !(280..=1280).contains(&w)) {
            return Err(invalid("width must be 280 to 1280"));
        }
        let mut m = Map::new();
        m.insert("scene".into(), req.scene.clone().into());
        if let Some(p) = &req.page {
            m.insert("page".into(), p.clone().into());
        }
        if let Some(v) = req.check_path {
            m.insert("check_path".into(), v.into());
        }
        if let Some(env) = req.env_version {
            m.insert("env_version".into(), env.as_str().into());
        }
        if let Some(w) = req.width {
            m.insert("width".into(), w.into());
        }
        if let Some(v) = req.auto_color {
            m.insert("auto_color".into(), v.into());
        }
        if let Some((r, g, b)) = req.line_color {
            m.insert("line_color".into(), json!({"r": r, "g": g, "b": b}));
        }
        if let Some(v) = req.is_hyaline {
            m.insert("is_hyaline".into(), v.into());
        }
        let body = Value::Object(m);
        self.with_token(|t| {
            let body = &body;
            async move {
                self.http
                    .post_binary(
                        "/wxa/getwxacodeunlimit",
                        &[("access_token", t.expose())],
                        body,
                    )
                    .await
            }
        })
        .await
    }

    /// Sends a subscribe message; returns WeChat's `msgid` when given.
    ///
    /// Typed failures: 43101 `UserRefused` (no grant left), 40003 `InvalidOpenid`, 40037
    /// `InvalidTemplateId`, 47003 `InvalidArgument` (errmsg names the field), 41030 `InvalidPage`.
    /// Not retried after a timeout (the message may have been sent).
    ///
    /// # Errors
    /// [`WechatError`] as above.
    pub async fn send_subscribe_message(
        &self,
        msg: &SubscribeMessage,
    ) -> Result<Option<i64>, WechatError> {
        check_openid(&msg.touser)?;
        if msg.template_id.trim().is_empty() {
            return Err(invalid("template_id is required"));
        }
        let data: Map<String, Value> = msg
            .data
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "value": v })))
            .collect();
        let mut m = Map::new();
        m.insert("touser".into(), msg.touser.clone().into());
        m.insert("template_id".into(), msg.template_id.clone().into());
        if let Some(p) = &msg.page {
            m.insert("page".into(), p.clone().into());
        }
        m.insert("data".into(), Value::Object(data));
        if let Some(state) = msg.miniprogram_state {
            let s = match state {
                MiniprogramState::Developer => "developer",
                MiniprogramState::Trial => "trial",
                MiniprogramState::Formal => "formal",
            };
            m.insert("miniprogram_state".into(), s.into());
        }
        if let Some(lang) = &msg.lang {
            m.insert("lang".into(), lang.clone().into());
        }
        let reply: Value = self
            .post_with_token(
                "/cgi-bin/message/subscribe/send",
                &Value::Object(m),
                Idempotent::No,
            )
            .await?;
        Ok(reply.get("msgid").and_then(Value::as_i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_validation() {
        let ok = LinkRequest {
            path: Some("pages/index/index".into()),
            query: Some("a=1&b=%E4".into()),
            expiry: Expiry::InDays(30),
            env_version: None,
        };
        assert!(check_link(&ok).is_ok());
        let mut bad = ok.clone();
        bad.query = Some("a=中".into());
        assert!(check_link(&bad).is_err());
        let mut bad = ok.clone();
        bad.expiry = Expiry::InDays(31);
        assert!(check_link(&bad).is_err());
        let mut bad = ok;
        bad.path = Some("pages/a?x=1".into());
        assert!(check_link(&bad).is_err());
    }

    #[test]
    fn session_key_is_redacted() {
        let s = SessionKey("c2Vzc2lvbi1rZXk=".into());
        assert!(!format!("{s:?}").contains("c2Vzc2lvbi1rZXk"));
    }
}
