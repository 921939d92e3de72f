//! Paywalled content as a service: `get` (the full content or the preview and a paywall),
//! `list` (contents with the caller's access state) and `entitlements`, with protected media
//! handed out only as short-lived URLs; `publishContent` (admins) and `followSeries` (content
//! series and the Official Account notices of new content in them, [`crate::funnel::series`]).
//! gatedContent parses requests and calls this.
//!
//! What the caller holds is loaded by [`crate::access`]; the access decisions and views are
//! the pure rules of [`crate::domain::content`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{self, Standing};
use crate::clock::SharedClock;
use crate::cloud_files::{Storage, StorageError};
use crate::domain::content::{self, Content, ContentKind, MediaUrl};
use crate::funnel::{FunnelError, series};
use crate::identity::Caller;
use crate::store::collections::{CONTENTS, PRODUCTS};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};
use crate::subscriptions::Plans;
use crate::tenancy::Tenancy;

/// Default lifetime of a protected media URL: long enough to start playing, short enough
/// that a shared link dies quickly.
pub const DEFAULT_MEDIA_URL_TTL_SECS: i64 = 600;

/// `list` returns this many contents unless asked otherwise.
pub const LIST_DEFAULT: u64 = 20;
/// The most contents one `list` returns.
pub const LIST_MAX: u64 = 50;
/// The largest content `publishContent` takes, in bytes of JSON.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;
/// Series followers told at once when content is published; reconcile tells the rest.
pub const PUBLISH_FAN_OUT: u64 = 200;

/// `publishContent`'s request data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishInput {
    /// The content, as `domain::content::Content` serializes (`publishedAt` is set here).
    pub content: Value,
}

/// `followSeries`'s request data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowInput {
    /// The series id.
    pub series: String,
    /// Follow (`true`, the default) or stop following (`false`).
    #[serde(default)]
    pub follow: Option<bool>,
}

/// `get`'s request data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetInput {
    /// The content's id.
    pub content_id: String,
}

/// `list`'s request data.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListInput {
    /// Only contents of this kind.
    #[serde(default)]
    pub kind: Option<ContentKind>,
    /// At most this many ([`LIST_DEFAULT`] when absent, at most [`LIST_MAX`]).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// Why a content request failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// No content with that id (or an id that cannot be one).
    #[error("content {0} does not exist")]
    NotFound(String),
    /// The request data is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Cloud storage could not give temp URLs right now.
    #[error("media is unavailable: {0}")]
    Media(#[source] StorageError),
    /// Protected media exists but no storage is configured.
    #[error("no storage is configured for protected media")]
    NoStorage,
    /// Only administrators may do this.
    #[error("{0}")]
    Forbidden(String),
    /// Content that cannot be published as written (shape, rules, unknown sku or plan).
    #[error("{0}")]
    Invalid(String),
    /// No published content belongs to that series.
    #[error("series {0} has no content")]
    SeriesNotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FunnelError> for ContentError {
    fn from(e: FunnelError) -> Self {
        match e {
            FunnelError::Store(e) => ContentError::Store(e),
        }
    }
}

/// The content service, built once per function instance.
#[derive(Clone)]
pub struct Contents {
    store: Arc<dyn Store>,
    clock: SharedClock,
    tenancy: Tenancy,
    storage: Option<Storage>,
    media_ttl_secs: i64,
}

impl Contents {
    /// A service over `store`; without `storage` content with protected media cannot be
    /// shown (and says so), everything else works.
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        tenancy: Tenancy,
        storage: Option<Storage>,
    ) -> Self {
        Self {
            store,
            clock,
            tenancy,
            storage,
            media_ttl_secs: DEFAULT_MEDIA_URL_TTL_SECS,
        }
    }

    /// The `get` reply: the full content and how access was granted, or the preview and a
    /// paywall of catalog offers.
    pub async fn get(&self, caller: &Caller, content_id: &str) -> Result<Value, ContentError> {
        let content = self.load(content_id).await?;
        let now = self.clock.now_unix();
        let plans = Plans::load(&self.store).await?;
        let standing = Standing::load(&self.store, &self.tenancy, caller).await?;
        let holdings = standing.holdings(now, &plans);
        let mut reply = match content::decide(&content, &holdings, &plans.lookup()) {
            Some(via) => {
                let view = content.full_view();
                let urls = self.media_urls(&view.media_file_ids()).await?;
                json!({
                    "content": view.into_json(&|id| urls.get(id).cloned()),
                    "access": "granted",
                    "via": via,
                })
            }
            None => {
                let view = content.preview_view();
                let urls = self.media_urls(&view.media_file_ids()).await?;
                let catalog = access::active_catalog(&self.store).await?;
                let offers = content::offers(&content, &catalog, &plans.lookup());
                json!({
                    "content": view.into_json(&|id| urls.get(id).cloned()),
                    "access": "locked",
                    "paywall": {"offers": offers},
                })
            }
        };
        // Content in a series: whether the caller follows it (one read, only then).
        if let Some(id) = &content.series {
            let following = series::is_following(self.store.as_ref(), id, &caller.openid).await?;
            reply["series"] = json!({"id": id, "following": following});
        }
        Ok(reply)
    }

    /// `publishContent` (administrators): validates `content` (its rules, and that the skus
    /// and plans unlocking it exist), writes it (`publishedAt`: the first publication's time,
    /// kept by re-publishing) and, for content in a series, announces it to the series'
    /// followers: one `new_content` notice each, the first [`PUBLISH_FAN_OUT`] at once, the
    /// rest by reconcile. Re-publishing never tells anyone twice, and completes a call that
    /// failed after writing the content (its announcement is recorded then).
    pub async fn publish(
        &self,
        caller: &Caller,
        input: PublishInput,
    ) -> Result<Value, ContentError> {
        if !crate::identity::is_stored_admin(self.store.as_ref(), &caller.openid).await? {
            return Err(ContentError::Forbidden("administrators only".into()));
        }
        if input.content.to_string().len() > MAX_CONTENT_BYTES {
            return Err(ContentError::Invalid(format!(
                "content above {MAX_CONTENT_BYTES} bytes"
            )));
        }
        let mut content: Content = serde_json::from_value(input.content)
            .map_err(|e| ContentError::Invalid(format!("content: {e}")))?;
        content
            .validate()
            .map_err(|e| ContentError::Invalid(e.to_string()))?;
        self.check_references(&content).await?;
        let now = self.clock.now_unix();
        let existing = self.store.get(CONTENTS, &content.id).await?;
        content.published_at = existing
            .as_ref()
            .and_then(|d| d["publishedAt"].as_i64())
            .or(Some(now));
        let doc =
            serde_json::to_value(&content).map_err(|e| ContentError::Invalid(e.to_string()))?;
        let mut update = Update::new();
        if let Some(fields) = doc.as_object() {
            for (k, v) in fields {
                update = update.set(k.as_str(), v.clone());
            }
            // A re-publication replaces the content: optional parts it leaves out go.
            for optional in ["lessons", "mediaFileId", "series"] {
                if !fields.contains_key(optional)
                    && existing.as_ref().is_some_and(|d| d.get(optional).is_some())
                {
                    update = update.unset(optional);
                }
            }
        }
        self.store
            .update_one(
                CONTENTS,
                &Filter::id(content.id.as_str()),
                &update,
                UpdateOptions::upsert(),
            )
            .await?;
        tracing::info!(content = %content.id, series = ?content.series, "content published");
        let mut reply = json!({
            "content": {"id": content.id, "kind": content.kind.as_str(), "title": content.title,
                        "publishedAt": content.published_at},
            "created": existing.is_none(),
        });
        if let Some(id) = &content.series {
            reply["content"]["series"] = json!(id);
            let st = self.store.as_ref();
            let announced = series::announce(st, &content.id, id, &content.title, now).await?;
            let told = series::fan_out(st, &content.id, PUBLISH_FAN_OUT, now).await?;
            reply["announcement"] = json!({
                "series": id,
                "new": announced,
                "notices": told.notices,
                "done": told.pending == 0,
            });
        }
        Ok(reply)
    }

    /// The skus and plans that unlock `content` must exist.
    async fn check_references(&self, content: &Content) -> Result<(), ContentError> {
        let skus = &content.unlocked_by.skus;
        if !skus.is_empty() {
            let found = self
                .store
                .find(
                    PRODUCTS,
                    &Filter::is_in("sku", skus.iter().map(|s| Value::from(s.as_str()))),
                    &FindOptions::new().limit(skus.len() as u64),
                )
                .await?;
            if let Some(missing) = skus
                .iter()
                .find(|s| !found.iter().any(|p| p["sku"] == s.as_str()))
            {
                return Err(ContentError::Invalid(format!(
                    "content {} is unlocked by unknown sku {missing}",
                    content.id
                )));
            }
        }
        if !content.unlocked_by.plans.is_empty() {
            let plans = Plans::load(&self.store).await?;
            if let Some(missing) = content
                .unlocked_by
                .plans
                .iter()
                .find(|p| plans.get(p).is_none())
            {
                return Err(ContentError::Invalid(format!(
                    "content {} is unlocked by unknown plan {missing}",
                    content.id
                )));
            }
        }
        Ok(())
    }

    /// `followSeries`: the caller follows (or, with `follow: false`, stops following) a
    /// series. Only a series with published content can be followed; stopping is always
    /// accepted. Reply: `{series, following, changed}`.
    pub async fn follow_series(
        &self,
        caller: &Caller,
        input: FollowInput,
    ) -> Result<Value, ContentError> {
        if !series::valid_series(&input.series) {
            return Err(ContentError::BadRequest(
                "series must be 1-64 characters of [A-Za-z0-9_-.]".into(),
            ));
        }
        let st = self.store.as_ref();
        let follow = input.follow.unwrap_or(true);
        let changed = if follow {
            let exists = !self
                .store
                .find(
                    CONTENTS,
                    &Filter::eq("series", input.series.as_str()),
                    &FindOptions::new().limit(1),
                )
                .await?
                .is_empty();
            if !exists {
                return Err(ContentError::SeriesNotFound(input.series));
            }
            series::follow(st, &input.series, &caller.openid, self.clock.now_unix()).await?
        } else {
            series::unfollow(st, &input.series, &caller.openid).await?
        };
        Ok(json!({"series": input.series, "following": follow, "changed": changed}))
    }

    /// The `list` reply: the newest contents (of the input's kind, if given), each with the
    /// caller's access state.
    pub async fn list(&self, caller: &Caller, input: ListInput) -> Result<Value, ContentError> {
        let ListInput { kind, limit } = input;
        let limit = limit.unwrap_or(LIST_DEFAULT);
        if !(1..=LIST_MAX).contains(&limit) {
            return Err(ContentError::BadRequest(format!(
                "limit must be 1 to {LIST_MAX}"
            )));
        }
        let filter = match kind {
            Some(kind) => Filter::eq("kind", kind.as_str()),
            None => Filter::All,
        };
        let contents: Vec<Content> = self
            .store
            .find_as(
                CONTENTS,
                &filter,
                &FindOptions::new().sort_desc("publishedAt").limit(limit),
            )
            .await?;
        let now = self.clock.now_unix();
        let plans = Plans::load(&self.store).await?;
        let holdings = Standing::load(&self.store, &self.tenancy, caller)
            .await?
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
                if let Some(series) = &content.series {
                    v["series"] = json!(series);
                }
                if let Some(via) = via {
                    v["via"] = json!(via);
                }
                v
            })
            .collect();
        Ok(json!({ "contents": items }))
    }

    /// The `entitlements` reply: what the caller owns and until when, their subscription and
    /// their tenant's.
    pub async fn entitlements(&self, caller: &Caller) -> Result<Value, ContentError> {
        let now = self.clock.now_unix();
        let plans = Plans::load(&self.store).await?;
        let standing = Standing::load(&self.store, &self.tenancy, caller).await?;
        Ok(access::entitlements_view(&standing, now, &plans))
    }

    /// The content `id`; ids that cannot be document ids are not looked up.
    async fn load(&self, id: &str) -> Result<Content, ContentError> {
        if !valid_id(id) {
            return Err(ContentError::NotFound(id.to_owned()));
        }
        self.store
            .get_as::<Content>(CONTENTS, id)
            .await?
            .ok_or_else(|| ContentError::NotFound(id.to_owned()))
    }

    /// Temp URLs for the media a view shows, all with the same expiry.
    async fn media_urls(
        &self,
        file_ids: &[String],
    ) -> Result<HashMap<String, MediaUrl>, ContentError> {
        if file_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let storage = self.storage.as_ref().ok_or(ContentError::NoStorage)?;
        let urls = storage
            .temp_urls(file_ids, self.media_ttl_secs, self.clock.now_unix())
            .await
            .map_err(ContentError::Media)?;
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
}

/// 1 to 64 characters of `[A-Za-z0-9_.-]`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;

    async fn service() -> Contents {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let clock: SharedClock = Arc::new(FixedClock::new(1_800_000_000));
        let tenancy = Tenancy::new(store.clone()).with_clock(clock.clone());
        Contents::new(store, clock, tenancy, None)
    }

    fn reader() -> Caller {
        Caller {
            openid: "o-reader".into(),
            appid: "wx-test".into(),
            unionid: None,
            tenant: None,
            plan: None,
            admin: false,
            source: crate::identity::CallerSource::Session,
        }
    }

    #[test]
    fn ids_that_cannot_be_document_ids_are_refused() {
        assert!(valid_id("post-1_a.b"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("$where"));
    }

    #[tokio::test]
    async fn an_unknown_or_malformed_id_is_not_found() {
        let svc = service().await;
        let caller = reader();
        for id in ["missing", "../etc"] {
            let err = svc.get(&caller, id).await.unwrap_err();
            assert!(
                matches!(&err, ContentError::NotFound(x) if x == id),
                "{err}"
            );
            assert_eq!(err.to_string(), format!("content {id} does not exist"));
        }
    }

    fn admin() -> Caller {
        Caller {
            openid: "o-admin".into(),
            ..reader()
        }
    }

    fn article(id: &str, series: Option<&str>) -> Value {
        let mut c = json!({"id": id, "kind": "article", "title": format!("Issue {id}"),
                           "summary": "free part", "body": "paid part"});
        if let Some(s) = series {
            c["series"] = json!(s);
        }
        c
    }

    async fn publish(svc: &Contents, content: Value) -> Result<Value, ContentError> {
        svc.publish(&admin(), PublishInput { content }).await
    }

    async fn follow(svc: &Contents, series: &str, follow: bool) -> Result<Value, ContentError> {
        let input = FollowInput {
            series: series.into(),
            follow: Some(follow),
        };
        svc.follow_series(&reader(), input).await
    }

    #[tokio::test]
    async fn admins_publish_valid_content_and_followers_of_its_series_are_told_once() {
        let svc = service().await;
        svc.store
            .insert(
                crate::store::collections::USERS,
                json!({"_id": "o-admin", "openid": "o-admin", "role": "admin"}),
            )
            .await
            .unwrap();
        let refused = svc
            .publish(
                &reader(),
                PublishInput {
                    content: article("c0", None),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(refused, ContentError::Forbidden(_)), "{refused}");
        for (bad, says) in [
            (article("c0", Some("no spaces")), "series must be"),
            (
                json!({"id": "c0", "kind": "podcast", "title": "x", "summary": ""}),
                "content:",
            ),
            (
                {
                    let mut c = article("c0", None);
                    c["unlockedBy"] = json!({"skus": ["nope"]});
                    c
                },
                "unknown sku nope",
            ),
            (
                {
                    let mut c = article("c0", None);
                    c["unlockedBy"] = json!({"plans": ["gold"]});
                    c
                },
                "unknown plan gold",
            ),
        ] {
            let err = publish(&svc, bad).await.unwrap_err();
            assert!(
                matches!(&err, ContentError::Invalid(m) if m.contains(says)),
                "{err}"
            );
        }
        assert!(svc.store.get(CONTENTS, "c0").await.unwrap().is_none());
        // A series exists once content is published in it.
        let err = follow(&svc, "weekly", true).await.unwrap_err();
        assert!(matches!(err, ContentError::SeriesNotFound(_)), "{err}");
        let first = publish(&svc, article("c1", Some("weekly"))).await.unwrap();
        assert_eq!(first["created"], true);
        assert_eq!(
            first["announcement"],
            json!({"series": "weekly", "new": true, "notices": 0, "done": true})
        );
        let followed = follow(&svc, "weekly", true).await.unwrap();
        assert_eq!(
            followed,
            json!({"series": "weekly", "following": true, "changed": true})
        );
        assert_eq!(
            follow(&svc, "weekly", true).await.unwrap()["changed"],
            false
        );
        let got = svc.get(&reader(), "c1").await.unwrap();
        assert_eq!(got["series"], json!({"id": "weekly", "following": true}));
        let listed = svc.list(&reader(), ListInput::default()).await.unwrap();
        assert_eq!(listed["contents"][0]["series"], "weekly");
        // New content in the series: the follower is told; publishing again tells nobody.
        let second = publish(&svc, article("c2", Some("weekly"))).await.unwrap();
        assert_eq!(second["announcement"]["notices"], 1);
        let again = publish(&svc, article("c2", Some("weekly"))).await.unwrap();
        assert_eq!(again["created"], false);
        assert_eq!(
            again["announcement"],
            json!({"series": "weekly", "new": false, "notices": 0, "done": true})
        );
        let notices = svc
            .store
            .find(
                crate::store::collections::OA_MESSAGES,
                &Filter::All,
                &FindOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0]["event"], "content:c2:o-reader");
        assert_eq!(notices[0]["kind"], "new_content");
        // Leaving the series out of a re-publication takes it out of the series.
        publish(&svc, article("c2", None)).await.unwrap();
        let stored = svc.store.get(CONTENTS, "c2").await.unwrap().unwrap();
        assert!(stored.get("series").is_none(), "{stored}");
        let unfollowed = follow(&svc, "weekly", false).await.unwrap();
        assert_eq!(
            unfollowed,
            json!({"series": "weekly", "following": false, "changed": true})
        );
        let got = svc.get(&reader(), "c1").await.unwrap();
        assert_eq!(got["series"]["following"], false);
        let bad = follow(&svc, "a:b", true).await.unwrap_err();
        assert!(matches!(bad, ContentError::BadRequest(_)));
    }

    #[tokio::test]
    async fn list_limits_are_checked() {
        let svc = service().await;
        let caller = reader();
        for limit in [0, LIST_MAX + 1] {
            let err = svc
                .list(
                    &caller,
                    ListInput {
                        kind: None,
                        limit: Some(limit),
                    },
                )
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), "limit must be 1 to 50");
        }
        let empty = svc.list(&caller, ListInput::default()).await.unwrap();
        assert_eq!(empty, json!({"contents": []}));
    }
}
