//! Paywalled content as a service: `get` (the full content or the preview and a paywall),
//! `list` (contents with the caller's access state) and `entitlements`, with protected media
//! handed out only as short-lived URLs. gatedContent parses requests and calls this.
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
use crate::identity::Caller;
use crate::store::collections::CONTENTS;
use crate::store::{Filter, FindOptions, Store, StoreError};
use crate::subscriptions::Plans;
use crate::tenancy::Tenancy;

/// Default lifetime of a protected media URL: long enough to start playing, short enough
/// that a shared link dies quickly.
pub const DEFAULT_MEDIA_URL_TTL_SECS: i64 = 600;

/// `list` returns this many contents unless asked otherwise.
pub const LIST_DEFAULT: u64 = 20;
/// The most contents one `list` returns.
pub const LIST_MAX: u64 = 50;

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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
        match content::decide(&content, &holdings, &plans.lookup()) {
            Some(via) => {
                let view = content.full_view();
                let urls = self.media_urls(&view.media_file_ids()).await?;
                Ok(json!({
                    "content": view.into_json(&|id| urls.get(id).cloned()),
                    "access": "granted",
                    "via": via,
                }))
            }
            None => {
                let view = content.preview_view();
                let urls = self.media_urls(&view.media_file_ids()).await?;
                let catalog = access::active_catalog(&self.store).await?;
                let offers = content::offers(&content, &catalog, &plans.lookup());
                Ok(json!({
                    "content": view.into_json(&|id| urls.get(id).cloned()),
                    "access": "locked",
                    "paywall": {"offers": offers},
                }))
            }
        }
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
