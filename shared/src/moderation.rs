//! User posts under content security: creation with the synchronous text check and the
//! asynchronous image checks, the `wxa_media_check` results, the admin review queue, and the
//! author's subscribe-message notice. `ugcUpload` and `wxPush` both build a [`Moderation`].
//!
//! Collections (`docs/collections.md`): `posts` (one document per post, with a `rev` counter
//! every write is conditional on, so concurrent results cannot overwrite each other),
//! `moderation_jobs` (one per image check, unique `traceId`), `subscribe_grants` (`credits`: how
//! many one-time subscribe-message sends a user granted per template).
//!
//! Race between an image check's result and the post being stored: if the push arrives before
//! the job exists, the result is kept as an orphan job (no `postId`); `create` then finds it
//! (duplicate `traceId`) and applies it. Every result is applied at most once: a media entry
//! that is no longer `pending` is not changed again.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::cloud_files::{Storage, StorageError};
use crate::domain::moderation::{
    self as rules, CheckState, Decision, MAX_MEDIA, MAX_REASON_CHARS, MAX_TEXT_CHARS, MediaError,
    PostStatus,
};
use crate::events::{Draft, Events, kinds};
use crate::runtime::ApiError;
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};
use crate::wechat::{
    MediaCheckRequest, MediaType, Scene, SubscribeMessage, Suggest, TextCheckRequest, Verdict,
    WechatClient, WechatError,
};

use crate::store::collections::{MODERATION_JOBS, POSTS};
use crate::wechat::subscribe_grants;

/// Public code: the text was judged violating (`msg_sec_check` risky).
pub const TEXT_RISKY: &str = "TEXT_RISKY";
/// Public code: the text is longer than [`MAX_TEXT_CHARS`].
pub const TEXT_TOO_LONG: &str = "TEXT_TOO_LONG";
/// Public code: more than [`MAX_MEDIA`] files.
pub const TOO_MANY_MEDIA: &str = "TOO_MANY_MEDIA";
/// Public code: a file is not under the caller's `ugc/<openid>/` folder.
pub const MEDIA_NOT_OWNED: &str = "MEDIA_NOT_OWNED";
/// Public code: a media type or file extension the checks cannot read.
pub const MEDIA_TYPE_UNSUPPORTED: &str = "MEDIA_TYPE_UNSUPPORTED";
/// Public code: the author's posts for today are used up.
pub const DAILY_QUOTA_EXCEEDED: &str = "DAILY_QUOTA_EXCEEDED";
/// Public code: no such post (or not visible to the caller).
pub const POST_NOT_FOUND: &str = "POST_NOT_FOUND";
/// Public code: WeChat's content security is busy or unreachable.
pub const WECHAT_BUSY: &str = "WECHAT_BUSY";

/// Attempts of a conditional post update before giving up (each loser re-reads).
const MAX_WRITE_ATTEMPTS: usize = 8;
/// Posts handled per sweep (the timer runs again soon).
const SWEEP_BATCH: u64 = 100;
/// How long a media result waits for the post it belongs to (the post is stored seconds
/// after the check is submitted; a day is generous).
const ORPHAN_TTL_SECS: i64 = 86_400;
pub use crate::config::DEFAULT_VERDICT_TIMEOUT_SECS;

/// What one maintenance sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Pending posts sent to the review queue.
    pub escalated: u32,
    /// Media results dropped because their post never appeared.
    pub orphans_dropped: u64,
}
/// How long a temporary download URL handed to `media_check_async` lives.
const MEDIA_URL_MAX_AGE_SECS: i64 = 7200;

/// One image of a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    /// The CloudBase file id.
    pub file_id: String,
    /// `image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// This image's check.
    pub state: CheckState,
    /// WeChat's trace id of the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The check's label (100 normal, 20002 porn, …) once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<i64>,
}

/// A notice attempt to the author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The status announced.
    pub status: PostStatus,
    /// `sent`, `no_grant`, `failed`.
    pub result: String,
    /// WeChat's errcode when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// Unix seconds.
    pub at: i64,
}

/// A stored post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    /// Post id.
    #[serde(rename = "_id")]
    pub id: String,
    /// The author's openid.
    pub author: String,
    /// The text (may be empty when there are images).
    pub text: String,
    /// The text's check (`pass` when there is no text).
    pub text_state: CheckState,
    /// The images.
    pub media: Vec<Media>,
    /// Where the post is.
    pub status: PostStatus,
    /// Why it was rejected (or what the machine found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The admin who decided, if one did (machine results no longer change the post).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Notices sent to the author.
    #[serde(default)]
    pub notices: Vec<Notice>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Write counter: every update is conditional on it.
    pub rev: i64,
}

impl Post {
    /// The public shape (`docs/api.md`): `{id, author, text, media: [{fileId, type, state}],
    /// status, reason?, createdAt}`.
    pub fn view(&self) -> Value {
        let media: Vec<Value> = self
            .media
            .iter()
            .map(|m| json!({"fileId": m.file_id, "type": m.kind, "state": m.state}))
            .collect();
        let mut v = json!({
            "id": self.id,
            "author": self.author,
            "text": self.text,
            "media": media,
            "status": self.status,
            "createdAt": self.created_at,
        });
        if let Some(r) = &self.reason {
            v["reason"] = json!(r);
        }
        v
    }

    fn machine_status(&self) -> PostStatus {
        rules::machine_status(
            std::iter::once(self.text_state).chain(self.media.iter().map(|m| m.state)),
        )
    }
}

/// What `create` receives for one file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaInput {
    /// The CloudBase file id `wx.cloud.uploadFile` returned.
    pub file_id: String,
    /// `image`.
    #[serde(rename = "type", default = "image")]
    pub kind: String,
}

fn image() -> String {
    "image".to_owned()
}

/// The content-security calls, behind a trait so handlers and tests need no network.
#[async_trait]
pub trait ContentCheck: Send + Sync {
    /// `msg_sec_check` of `text` by `openid` (forum scene).
    async fn check_text(&self, openid: &str, text: &str) -> Result<Verdict, WechatError>;
    /// Submits an image (a CloudBase file id) to `media_check_async`; returns the trace id.
    async fn check_image(&self, openid: &str, file_id: &str) -> Result<String, WechatError>;
    /// Sends a subscribe message.
    async fn notify(&self, msg: &SubscribeMessage) -> Result<Option<i64>, WechatError>;
}

/// [`ContentCheck`] through the real client. Images are handed to WeChat as a temporary
/// download URL from cloud storage ([`crate::cloud_files::Storage`]: CloudBase
/// `tcb/batchdownloadfile`, or the emulator's signed local URLs).
#[derive(Clone)]
pub struct WechatChecks {
    client: WechatClient,
    storage: Option<Storage>,
    clock: SharedClock,
}

impl std::fmt::Debug for WechatChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatChecks")
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl WechatChecks {
    /// Checks through `client`; `storage` makes the image URLs (without it, images are
    /// refused: a function that only sends notices needs none).
    pub fn new(client: WechatClient, storage: Option<Storage>, clock: SharedClock) -> Self {
        Self {
            client,
            storage,
            clock,
        }
    }

    /// A temporary URL for a `cloud://` file id.
    async fn download_url(&self, file_id: &str) -> Result<String, WechatError> {
        let storage = self
            .storage
            .as_ref()
            .ok_or_else(|| WechatError::InvalidRequest("no cloud storage configured".into()))?;
        let urls = storage
            .temp_urls(
                &[file_id.to_owned()],
                MEDIA_URL_MAX_AGE_SECS,
                self.clock.now_unix(),
            )
            .await
            .map_err(|e| match e {
                StorageError::Token(m) | StorageError::Transport(m) => WechatError::Transport(m),
                other => WechatError::InvalidRequest(other.to_string()),
            })?;
        urls.into_iter()
            .next()
            .map(|u| u.url)
            .ok_or_else(|| WechatError::Decode("storage returned no URL".into()))
    }
}

#[async_trait]
impl ContentCheck for WechatChecks {
    async fn check_text(&self, openid: &str, text: &str) -> Result<Verdict, WechatError> {
        let req = TextCheckRequest::new(text, Scene::Forum, openid);
        Ok(self.client.msg_sec_check(&req).await?.verdict)
    }

    async fn check_image(&self, openid: &str, file_id: &str) -> Result<String, WechatError> {
        let media_url = self.download_url(file_id).await?;
        self.client
            .media_check_async(&MediaCheckRequest {
                media_url,
                media_type: MediaType::Image,
                scene: Scene::Forum,
                openid: openid.to_owned(),
            })
            .await
    }

    async fn notify(&self, msg: &SubscribeMessage) -> Result<Option<i64>, WechatError> {
        self.client.send_subscribe_message(msg).await
    }
}

/// Where the result notice goes: the subscribe-message template (fields `thing1` = post
/// excerpt, `phrase2` = 已通过/未通过, `thing3` = reason) and the page it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeTemplate {
    /// The template id.
    pub template_id: String,
    /// The page opened from the message (`posting/pages/mine/mine`).
    pub page: Option<String>,
}

impl NoticeTemplate {
    /// From `WEMINT_POST_NOTICE_TEMPLATE` (unset: authors are not notified) and
    /// `WEMINT_POST_NOTICE_PAGE`.
    pub fn from_config(config: &crate::config::Config) -> Option<Self> {
        config
            .optional("WEMINT_POST_NOTICE_TEMPLATE")
            .map(|template_id| NoticeTemplate {
                template_id,
                page: config.optional("WEMINT_POST_NOTICE_PAGE"),
            })
    }
}

/// Failures of the moderation operations.
#[derive(Debug, thiserror::Error)]
pub enum ModerationError {
    /// Bad input (empty post, malformed reason).
    #[error("{0}")]
    Invalid(String),
    /// Text over the limit.
    #[error("text is longer than {MAX_TEXT_CHARS} characters")]
    TextTooLong,
    /// Too many files.
    #[error("at most {MAX_MEDIA} images per post")]
    TooManyMedia,
    /// A file refused.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The text is violating.
    #[error("the text was judged violating (label {label})")]
    TextRisky {
        /// WeChat's label.
        label: i64,
    },
    /// No such post for this caller.
    #[error("post not found")]
    NotFound,
    /// Not the author nor an admin.
    #[error("only the author or an admin may do this")]
    Forbidden,
    /// The decision does not apply now.
    #[error(transparent)]
    Transition(#[from] rules::TransitionError),
    /// Too many concurrent writers on one post.
    #[error("post {0} is being changed concurrently; try again")]
    Contended(String),
    /// WeChat failed.
    #[error(transparent)]
    Wechat(#[from] WechatError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ModerationError> for ApiError {
    fn from(e: ModerationError) -> Self {
        let msg = e.to_string();
        match e {
            ModerationError::Invalid(_) => ApiError::bad_request(msg),
            ModerationError::TextTooLong => {
                ApiError::new(TEXT_TOO_LONG, StatusCode::BAD_REQUEST, msg)
            }
            ModerationError::TooManyMedia => {
                ApiError::new(TOO_MANY_MEDIA, StatusCode::BAD_REQUEST, msg)
            }
            ModerationError::Media(MediaError::NotOwned(_)) => {
                ApiError::new(MEDIA_NOT_OWNED, StatusCode::FORBIDDEN, msg)
            }
            ModerationError::Media(MediaError::Unsupported(_)) => {
                ApiError::new(MEDIA_TYPE_UNSUPPORTED, StatusCode::BAD_REQUEST, msg)
            }
            ModerationError::TextRisky { .. } => {
                ApiError::new(TEXT_RISKY, StatusCode::UNPROCESSABLE_ENTITY, msg)
            }
            ModerationError::NotFound => ApiError::new(POST_NOT_FOUND, StatusCode::NOT_FOUND, msg),
            ModerationError::Forbidden => ApiError::forbidden(msg),
            ModerationError::Transition(_) | ModerationError::Contended(_) => {
                ApiError::conflict(msg)
            }
            ModerationError::Wechat(w) if w.is_retryable() => ApiError::new(
                WECHAT_BUSY,
                StatusCode::SERVICE_UNAVAILABLE,
                "WeChat content security is busy; try again shortly",
            )
            .with_source(w),
            ModerationError::Wechat(w) => ApiError::internal(w),
            ModerationError::Store(s) => ApiError::internal(s),
        }
    }
}

/// What a `wxa_media_check` result did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOutcome {
    /// Applied to the post, which is now in this status.
    Applied {
        /// The post.
        post_id: String,
        /// Its status after the result.
        status: PostStatus,
    },
    /// Already applied before (a retried push): nothing changed.
    Duplicate,
    /// No post (yet) for this trace id: kept until `create` claims it.
    Orphan,
}

/// The moderation service: one per function instance.
pub struct Moderation {
    store: Arc<dyn Store>,
    checks: Arc<dyn ContentCheck>,
    clock: SharedClock,
    notice: Option<NoticeTemplate>,
    events: Events,
}

impl std::fmt::Debug for Moderation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderation")
            .field("notice", &self.notice)
            .finish_non_exhaustive()
    }
}

fn post_id(now: i64) -> Result<String, ModerationError> {
    let mut r = [0u8; 8];
    aws_lc_rs::rand::fill(&mut r)
        .map_err(|_| ModerationError::Store(StoreError::Backend("random source failed".into())))?;
    Ok(format!("p{now:010}{}", hex::encode(r)))
}

impl Moderation {
    /// A service over `store`, checking through `checks`.
    pub fn new(store: Arc<dyn Store>, checks: Arc<dyn ContentCheck>, clock: SharedClock) -> Self {
        Self {
            events: Events::new(store.clone()).with_clock(clock.clone()),
            store,
            checks,
            clock,
            notice: None,
        }
    }

    /// Tells authors the outcome with this template (only when they granted it).
    #[must_use]
    pub fn with_notice(mut self, notice: Option<NoticeTemplate>) -> Self {
        self.notice = notice;
        self
    }

    /// The template of the result notice, if configured.
    pub fn notice_template_id(&self) -> Option<&str> {
        self.notice.as_ref().map(|n| n.template_id.as_str())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    /// Validates a new post without side effects.
    ///
    /// # Errors
    /// [`ModerationError::Invalid`], `TextTooLong`, `TooManyMedia`, `Media`.
    pub fn validate(openid: &str, text: &str, media: &[MediaInput]) -> Result<(), ModerationError> {
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(ModerationError::TextTooLong);
        }
        if text.trim().is_empty() && media.is_empty() {
            return Err(ModerationError::Invalid(
                "a post needs text or at least one image".into(),
            ));
        }
        if media.len() > MAX_MEDIA {
            return Err(ModerationError::TooManyMedia);
        }
        for (i, m) in media.iter().enumerate() {
            rules::check_media(&m.file_id, &m.kind, openid)?;
            if media[..i].iter().any(|o| o.file_id == m.file_id) {
                return Err(ModerationError::Invalid(format!(
                    "file {} is listed twice",
                    m.file_id
                )));
            }
        }
        Ok(())
    }

    /// Creates a post: the text is checked now (risky → [`ModerationError::TextRisky`],
    /// nothing stored), each image is submitted and stays `pending` until its result.
    ///
    /// # Errors
    /// Validation errors, `TextRisky`, `Wechat` (nothing stored), `Store`.
    pub async fn create(
        &self,
        openid: &str,
        text: &str,
        media: &[MediaInput],
    ) -> Result<Post, ModerationError> {
        let text = text.trim();
        Self::validate(openid, text, media)?;
        let text_state = if text.is_empty() {
            CheckState::Pass
        } else {
            let verdict = self.checks.check_text(openid, text).await?;
            if verdict.suggest == Suggest::Risky {
                tracing::info!(label = verdict.label, "post text risky");
                return Err(ModerationError::TextRisky {
                    label: verdict.label,
                });
            }
            CheckState::from(verdict.suggest)
        };
        // Submit every image before storing anything: a failed submission leaves no post.
        let mut items = Vec::with_capacity(media.len());
        for m in media {
            let trace = self.checks.check_image(openid, &m.file_id).await?;
            items.push(Media {
                file_id: m.file_id.clone(),
                kind: m.kind.clone(),
                state: CheckState::Pending,
                trace_id: Some(trace),
                label: None,
            });
        }
        let now = self.now();
        let mut post = Post {
            id: post_id(now)?,
            author: openid.to_owned(),
            text: text.to_owned(),
            text_state,
            media: items,
            status: PostStatus::Pending,
            reason: None,
            decided_by: None,
            notices: Vec::new(),
            created_at: now,
            updated_at: now,
            rev: 0,
        };
        post.status = post.machine_status();
        self.store.insert_as(POSTS, &post).await?;
        for m in &post.media {
            let trace = m.trace_id.clone().unwrap_or_default();
            let job = json!({
                "traceId": trace, "postId": post.id, "fileId": m.file_id,
                "status": "pending", "createdAt": now,
            });
            match self.store.insert(MODERATION_JOBS, job).await {
                Ok(_) => {}
                Err(StoreError::DuplicateKey { .. }) => self.claim_orphan(&trace, &post.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(post = %post.id, status = post.status.as_str(), images = post.media.len(), "post created");
        if post.status.is_final() {
            post = self.notify(post).await?;
        }
        self.get(&post.id).await?.ok_or(ModerationError::NotFound)
    }

    /// A result that arrived before its job: attach it to the post and apply it.
    async fn claim_orphan(&self, trace: &str, post_id: &str) -> Result<(), ModerationError> {
        let claimed = self
            .store
            .update_one(
                MODERATION_JOBS,
                &Filter::eq("traceId", trace).and(Filter::exists("postId", false)),
                &Update::new().set("postId", post_id),
                UpdateOptions::default(),
            )
            .await?;
        if let Some(job) = claimed
            && let Some(verdict) = job_verdict(&job)
        {
            self.apply_to_post(post_id, trace, verdict).await?;
        }
        Ok(())
    }

    /// A post by id.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get(&self, id: &str) -> Result<Option<Post>, ModerationError> {
        Ok(self.store.get_as::<Post>(POSTS, id).await?)
    }

    /// Applies a `wxa_media_check` result (idempotent; see [`MediaOutcome`]).
    ///
    /// # Errors
    /// Store failures (the push should then be retried by WeChat).
    pub async fn apply_media_result(
        &self,
        trace_id: &str,
        verdict: Verdict,
    ) -> Result<MediaOutcome, ModerationError> {
        let now = self.now();
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let job = self
                .store
                .find_one(MODERATION_JOBS, &Filter::eq("traceId", trace_id))
                .await?;
            let Some(job) = job else {
                let orphan = json!({
                    "traceId": trace_id, "status": CheckState::from(verdict.suggest).as_str(),
                    "label": verdict.label, "createdAt": now, "resolvedAt": now,
                });
                match self.store.insert(MODERATION_JOBS, orphan).await {
                    Ok(_) => {
                        tracing::info!(trace_id, "media result before its post: kept");
                        return Ok(MediaOutcome::Orphan);
                    }
                    // The job was stored meanwhile: read it again.
                    Err(StoreError::DuplicateKey { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let Some(post_id) = job.get("postId").and_then(Value::as_str) else {
                return Ok(MediaOutcome::Duplicate);
            };
            let outcome = self.apply_to_post(post_id, trace_id, verdict).await?;
            self.store
                .update_one(
                    MODERATION_JOBS,
                    &Filter::eq("traceId", trace_id).and(Filter::eq("status", "pending")),
                    &Update::new()
                        .set("status", CheckState::from(verdict.suggest).as_str())
                        .set("label", verdict.label)
                        .set("resolvedAt", now),
                    UpdateOptions::default(),
                )
                .await?;
            return Ok(outcome);
        }
        Err(ModerationError::Contended(trace_id.to_owned()))
    }

    /// Sets the media entry's state and recomputes the post's status (conditional on `rev`).
    async fn apply_to_post(
        &self,
        post_id: &str,
        trace_id: &str,
        verdict: Verdict,
    ) -> Result<MediaOutcome, ModerationError> {
        let state = CheckState::from(verdict.suggest);
        let changed = self
            .modify(post_id, |post| {
                let m = post
                    .media
                    .iter_mut()
                    .find(|m| m.trace_id.as_deref() == Some(trace_id))?;
                if m.state != CheckState::Pending {
                    return None;
                }
                m.state = state;
                m.label = Some(verdict.label);
                // An admin's decision stands; a machine verdict only moves an open post.
                if post.decided_by.is_none() && !post.status.is_final() {
                    post.status = post.machine_status();
                    match post.status {
                        PostStatus::Rejected => {
                            post.reason =
                                Some(format!("image judged violating (label {})", verdict.label));
                        }
                        // Whatever held it (an overdue verdict) no longer applies.
                        PostStatus::Approved => post.reason = None,
                        _ => {}
                    }
                }
                Some(())
            })
            .await?;
        match changed {
            None => Ok(MediaOutcome::Duplicate),
            Some((before, after)) => {
                let status = after.status;
                if before.status != status && status.is_final() {
                    self.publish_result(&after).await;
                    self.notify(after).await?;
                }
                tracing::info!(
                    post = post_id,
                    trace_id,
                    status = status.as_str(),
                    "media result applied"
                );
                Ok(MediaOutcome::Applied {
                    post_id: post_id.to_owned(),
                    status,
                })
            }
        }
    }

    /// Read, change, write back if nobody wrote in between (`rev`), else retry. `change`
    /// returns `None` to leave the post as it is. Returns the post before and after.
    async fn modify<F>(&self, id: &str, change: F) -> Result<Option<(Post, Post)>, ModerationError>
    where
        F: Fn(&mut Post) -> Option<()>,
    {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let Some(before) = self.get(id).await? else {
                return Err(ModerationError::NotFound);
            };
            let mut after = before.clone();
            if change(&mut after).is_none() {
                return Ok(None);
            }
            after.updated_at = self.now();
            let mut update = Update::new()
                .set(
                    "media",
                    serde_json::to_value(&after.media).map_err(store_json)?,
                )
                .set("status", after.status.as_str())
                .set("updatedAt", after.updated_at)
                .inc("rev", 1);
            update = match &after.reason {
                Some(r) => update.set("reason", r.as_str()),
                None => update.unset("reason"),
            };
            if let Some(d) = &after.decided_by {
                update = update.set("decidedBy", d.as_str());
            }
            let written = self
                .store
                .update_one_as::<Post>(
                    POSTS,
                    &Filter::id(id).and(Filter::eq("rev", before.rev)),
                    &update,
                    UpdateOptions::default(),
                )
                .await?;
            if let Some(after) = written {
                return Ok(Some((before, after)));
            }
        }
        Err(ModerationError::Contended(id.to_owned()))
    }

    /// Approved posts and the caller's own (any status), newest first; `before` is the id of
    /// the last post of the previous page.
    ///
    /// # Errors
    /// `NotFound` for an unknown `before`; store failures.
    pub async fn list(
        &self,
        openid: &str,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Post>, ModerationError> {
        let visible = Filter::any_of([
            Filter::eq("status", PostStatus::Approved.as_str()),
            Filter::eq("author", openid),
        ]);
        let filter = match before {
            None => visible,
            Some(id) => {
                let cursor = self.get(id).await?.ok_or(ModerationError::NotFound)?;
                visible.and(Filter::any_of([
                    Filter::lt("createdAt", cursor.created_at),
                    Filter::eq("createdAt", cursor.created_at).and(Filter::lt("_id", id)),
                ]))
            }
        };
        let opts = FindOptions::new()
            .sort_desc("createdAt")
            .sort_desc("_id")
            .limit(limit);
        Ok(self.store.find_as::<Post>(POSTS, &filter, &opts).await?)
    }

    /// The maintenance sweep (the ugcUpload timer): posts still waiting for WeChat's image
    /// verdict after `timeout_secs` go to the administrators' queue (`in_review`; a verdict
    /// that arrives later still applies), and media results that never found their post are
    /// dropped after a day.
    ///
    /// # Errors
    /// Store failures.
    pub async fn sweep(&self, timeout_secs: i64) -> Result<SweepReport, ModerationError> {
        let now = self.now();
        let mut report = SweepReport::default();
        let stale: Vec<Post> = self
            .store
            .find_as(
                POSTS,
                &Filter::eq("status", PostStatus::Pending.as_str())
                    .and(Filter::lt("createdAt", now - timeout_secs)),
                &FindOptions::new().sort_asc("createdAt").limit(SWEEP_BATCH),
            )
            .await?;
        let minutes = timeout_secs / 60;
        for post in stale {
            let moved = self
                .modify(&post.id, |p| {
                    if p.status != PostStatus::Pending || p.decided_by.is_some() {
                        return None;
                    }
                    p.status = PostStatus::InReview;
                    p.reason = Some(format!(
                        "no verdict from WeChat content security within {minutes} minutes: waiting for an administrator"
                    ));
                    Some(())
                })
                .await;
            match moved {
                Ok(Some(_)) => {
                    report.escalated += 1;
                    tracing::warn!(post = %post.id, "moderation verdict overdue: sent to review");
                }
                Ok(None) | Err(ModerationError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        report.orphans_dropped = self
            .store
            .delete_many(
                MODERATION_JOBS,
                &Filter::exists("postId", false)
                    .and(Filter::lt("createdAt", now - ORPHAN_TTL_SECS)),
            )
            .await?;
        Ok(report)
    }

    /// Posts waiting for a human, oldest first.
    ///
    /// # Errors
    /// Store failures.
    pub async fn queue(&self, limit: u64) -> Result<Vec<Post>, ModerationError> {
        let opts = FindOptions::new()
            .sort_asc("createdAt")
            .sort_asc("_id")
            .limit(limit);
        Ok(self
            .store
            .find_as::<Post>(
                POSTS,
                &Filter::eq("status", PostStatus::InReview.as_str()),
                &opts,
            )
            .await?)
    }

    /// Deletes a post (the author, or an admin) with its jobs.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, store failures.
    pub async fn delete(&self, openid: &str, admin: bool, id: &str) -> Result<(), ModerationError> {
        let post = self.get(id).await?.ok_or(ModerationError::NotFound)?;
        if post.author != openid && !admin {
            // Someone else's unpublished post is not even acknowledged.
            return Err(if post.status == PostStatus::Approved {
                ModerationError::Forbidden
            } else {
                ModerationError::NotFound
            });
        }
        if !self.store.delete_one(POSTS, &Filter::id(id)).await? {
            return Err(ModerationError::NotFound);
        }
        self.store
            .delete_many(MODERATION_JOBS, &Filter::eq("postId", id))
            .await?;
        tracing::info!(post = id, by_admin = post.author != openid, "post deleted");
        Ok(())
    }

    /// An admin's decision on a post; the author is told.
    ///
    /// # Errors
    /// `Invalid` (reason missing or too long when rejecting), `NotFound`, `Transition`,
    /// store failures.
    pub async fn decide(
        &self,
        admin: &str,
        id: &str,
        decision: Decision,
        reason: Option<&str>,
    ) -> Result<Post, ModerationError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if decision == Decision::Reject {
            match reason {
                None => {
                    return Err(ModerationError::Invalid(
                        "`reason` is required to reject".into(),
                    ));
                }
                Some(r) if r.chars().count() > MAX_REASON_CHARS => {
                    return Err(ModerationError::Invalid(format!(
                        "`reason` is longer than {MAX_REASON_CHARS} characters"
                    )));
                }
                Some(_) => {}
            }
        }
        let changed = self
            .modify(id, |post| {
                let next = rules::decide(post.status, decision).ok()?;
                post.status = next;
                post.reason = match decision {
                    Decision::Reject => reason.map(str::to_owned),
                    Decision::Approve => None,
                };
                post.decided_by = Some(admin.to_owned());
                Some(())
            })
            .await?;
        let Some((_, after)) = changed else {
            // Refused by the rules: say why, from the status as it is now.
            let post = self.get(id).await?.ok_or(ModerationError::NotFound)?;
            return Err(match rules::decide(post.status, decision) {
                Err(e) => e.into(),
                Ok(_) => ModerationError::Contended(id.to_owned()),
            });
        };
        tracing::info!(
            post = id,
            status = after.status.as_str(),
            "post decided by admin"
        );
        self.publish_result(&after).await;
        self.notify(after).await
    }

    /// Tells the author's open pages the post's final status (`post.approved` /
    /// `post.rejected`). Best effort: a lost event costs only liveness, the feed shows the
    /// stored status on its next load.
    async fn publish_result(&self, post: &Post) {
        let kind = match post.status {
            PostStatus::Approved => kinds::POST_APPROVED,
            PostStatus::Rejected => kinds::POST_REJECTED,
            _ => return,
        };
        let draft = Draft::new(kind, format!("{kind}:{}:{}", post.id, post.rev))
            .for_user(post.author.as_str())
            .data(json!({
                "postId": post.id,
                "status": post.status.as_str(),
                "reason": post.reason,
            }));
        self.events.publish_or_log(draft).await;
    }

    /// Records that `openid` accepted `template_id` in a subscribe popup (one send each).
    ///
    /// # Errors
    /// Store failures.
    pub async fn grant(&self, openid: &str, template_id: &str) -> Result<(), ModerationError> {
        subscribe_grants::add(&self.store, openid, template_id, self.now()).await?;
        Ok(())
    }

    /// Tells the author the post's final status, if a template is configured and the author
    /// has a grant left (one grant is used per send). The attempt is recorded on the post.
    async fn notify(&self, post: Post) -> Result<Post, ModerationError> {
        let Some(tpl) = &self.notice else {
            return Ok(post);
        };
        let now = self.now();
        let taken = subscribe_grants::take(&self.store, &post.author, &tpl.template_id).await?;
        let (result, errcode) = if taken {
            let passed = post.status == PostStatus::Approved;
            let excerpt = if post.text.is_empty() {
                "图片动态".to_owned()
            } else {
                rules::excerpt(&post.text, 20)
            };
            let reason = post.reason.as_deref().unwrap_or("内容符合社区规范");
            let data = BTreeMap::from([
                ("thing1".to_owned(), excerpt),
                (
                    "phrase2".to_owned(),
                    if passed { "已通过" } else { "未通过" }.to_owned(),
                ),
                ("thing3".to_owned(), rules::excerpt(reason, 20)),
            ]);
            let msg = SubscribeMessage {
                touser: post.author.clone(),
                template_id: tpl.template_id.clone(),
                page: tpl.page.clone(),
                data,
                miniprogram_state: None,
                lang: None,
            };
            match self.checks.notify(&msg).await {
                Ok(_) => ("sent", None),
                Err(e) => {
                    tracing::warn!(post = %post.id, error = %e, "subscribe message failed");
                    ("failed", e.errcode().map(|c| c.code()))
                }
            }
        } else {
            ("no_grant", None)
        };
        let notice = Notice {
            status: post.status,
            result: result.to_owned(),
            errcode,
            at: now,
        };
        let updated = self
            .store
            .update_one_as::<Post>(
                POSTS,
                &Filter::id(&post.id),
                &Update::new().push(
                    "notices",
                    serde_json::to_value(&notice).map_err(store_json)?,
                ),
                UpdateOptions::default(),
            )
            .await?;
        Ok(updated.unwrap_or(post))
    }
}

fn store_json(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("post serialization: {e}"))
}

fn job_verdict(job: &Value) -> Option<Verdict> {
    let suggest = Suggest::parse(job.get("status")?.as_str()?)?;
    let label = job.get("label").and_then(Value::as_i64).unwrap_or(0);
    Some(Verdict { suggest, label })
}
