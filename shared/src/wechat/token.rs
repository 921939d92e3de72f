//! The access token, shared by every function instance through the store.
//!
//! Why: each serverless instance fetching its own token is the №1 failure of WeChat SDKs
//! (`/cgi-bin/token` invalidates the previous token). We only use `POST /cgi-bin/stable_token`
//! and keep one document per appid in `wechat_tokens`:
//!
//! ```text
//! { _id: "<appid>:access_token", appid, kind: "access_token",
//!   token, expiresAt, refreshAt, leaseOwner, leaseUntil }          (times in unix ms)
//! ```
//!
//! - A token is used until `refreshAt` (a margin before `expiresAt`).
//! - Refreshing needs the **lease**: a conditional update that only matches when no
//!   unexpired lease exists. The winner fetches and stores; everyone else polls the document
//!   briefly and reads what the winner stored. A cold-start stampede makes one call.
//! - A lease expires on its own, so a crashed instance cannot block refreshes for long.
//! - When a call fails with 40001/40014/42001, the stored token is cleared **only if it is
//!   the one that failed** (a conditional update), so a late failure cannot throw away a
//!   token another instance just fetched; then the token is re-fetched once.
//! - Re-fetching uses stable_token's normal mode (idempotent, 10k/min). `force_refresh` is
//!   used only when normal mode hands back the very token that just failed: force mode is
//!   limited to 20 calls a day, 30 s apart, and invalidates the token other instances use.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};
use crate::wechat::client::{AccessToken, Clock, Http, Idempotent};
use crate::wechat::error::WechatError;

use crate::store::collections::WECHAT_TOKENS;

/// `kind` of the access-token document (the collection may hold other WeChat tickets).
const TOKEN_KIND: &str = "access_token";

/// Timing of the shared cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Refresh this long before the token expires.
    pub refresh_margin: Duration,
    /// How long a refresh lease is held at most (covers the stable_token call with retries).
    pub lease: Duration,
    /// How often a waiting instance re-reads the document.
    pub poll: Duration,
    /// How long a waiting instance waits for another's refresh before giving up.
    pub max_wait: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            refresh_margin: Duration::from_secs(120),
            lease: Duration::from_secs(15),
            poll: Duration::from_millis(100),
            max_wait: Duration::from_secs(8),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Deserialize)]
struct StableToken {
    access_token: String,
    expires_in: i64,
}

/// A token cached in this process until its `refresh_at`.
#[derive(Clone)]
struct Local {
    token: AccessToken,
    refresh_at: i64,
}

/// The store-backed, lease-guarded access token cache.
#[derive(Clone)]
pub struct TokenCache {
    http: Http,
    store: Arc<dyn Store>,
    clock: Clock,
    policy: TokenPolicy,
    local: Arc<Mutex<Option<Local>>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("appid", &self.http.config.appid)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn store_err(e: StoreError) -> WechatError {
    WechatError::Store(e.to_string())
}

/// The stored token if it is usable at `now` and is not `failed`.
fn usable(doc: &Value, now: i64, failed: Option<&AccessToken>) -> Option<Local> {
    let token = doc.get("token")?.as_str()?;
    let refresh_at = doc.get("refreshAt")?.as_i64()?;
    if token.is_empty() || refresh_at <= now || failed.is_some_and(|f| f.expose() == token) {
        return None;
    }
    Some(Local {
        token: AccessToken::new(token.to_owned()),
        refresh_at,
    })
}

fn lease_owner_id() -> String {
    let mut b = [0u8; 12];
    // Randomness failure only weakens the owner id's uniqueness; the time part still differs.
    let _ = aws_lc_rs::rand::fill(&mut b);
    hex::encode(b)
}

impl TokenCache {
    pub(crate) fn new(
        http: Http,
        store: Arc<dyn Store>,
        clock: Clock,
        policy: TokenPolicy,
    ) -> Self {
        TokenCache {
            http,
            store,
            clock,
            policy,
            local: Arc::new(Mutex::new(None)),
        }
    }

    fn appid(&self) -> &str {
        &self.http.config.appid
    }

    /// The token document's `_id` (unique with `appid` + `kind`, see `store::bootstrap`).
    fn doc_id(&self) -> String {
        format!("{}:{TOKEN_KIND}", self.appid())
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn local_get(&self, now: i64) -> Option<AccessToken> {
        let guard = self.local.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|l| l.refresh_at > now)
            .map(|l| l.token.clone())
    }

    fn local_set(&self, value: Option<Local>) {
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// A valid access token: from this process, else from the store, else fetched by
    /// whichever instance wins the refresh lease.
    ///
    /// # Errors
    /// Store failures, stable_token errors, or [`WechatError::TokenLeaseTimeout`].
    pub async fn token(&self) -> Result<AccessToken, WechatError> {
        if let Some(t) = self.local_get(self.now()) {
            return Ok(t);
        }
        self.load_or_refresh(None).await
    }

    /// Called after a WeChat API rejected `failed` as invalid or expired: clears it from
    /// the store if it is still the stored one, then obtains a different token.
    ///
    /// # Errors
    /// As [`TokenCache::token`].
    pub async fn refresh_after_failure(
        &self,
        failed: &AccessToken,
    ) -> Result<AccessToken, WechatError> {
        {
            let mut guard = self.local.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_some_and(|l| &l.token == failed) {
                *guard = None;
            }
        }
        let filter = Filter::id(self.doc_id()).and(Filter::eq("token", failed.expose()));
        let clear = Update::new()
            .set("token", Value::Null)
            .set("refreshAt", 0)
            .set("expiresAt", 0);
        self.store
            .update_one(WECHAT_TOKENS, &filter, &clear, UpdateOptions::default())
            .await
            .map_err(store_err)?;
        self.load_or_refresh(Some(failed)).await
    }

    async fn load_or_refresh(
        &self,
        failed: Option<&AccessToken>,
    ) -> Result<AccessToken, WechatError> {
        // Waiting is measured on the monotonic clock: the injected clock may be frozen.
        let deadline = tokio::time::Instant::now() + self.policy.max_wait;
        let owner = lease_owner_id();
        loop {
            let now = self.now();
            let doc = self
                .store
                .get(WECHAT_TOKENS, &self.doc_id())
                .await
                .map_err(store_err)?;
            if let Some(local) = doc.as_ref().and_then(|d| usable(d, now, failed)) {
                self.local_set(Some(local.clone()));
                return Ok(local.token);
            }
            if doc.is_none() {
                self.create_document().await?;
            }
            if let Some(leased) = self.acquire_lease(&owner, now).await? {
                // Someone may have stored a fresh token between our read and our lease.
                if let Some(local) = usable(&leased, now, failed) {
                    self.release_lease(&owner).await?;
                    self.local_set(Some(local.clone()));
                    return Ok(local.token);
                }
                return self.fetch_and_store(&owner, failed).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WechatError::TokenLeaseTimeout);
            }
            tokio::time::sleep(self.policy.poll).await;
        }
    }

    /// Creates the appid's document; losing the race to another instance is fine.
    async fn create_document(&self) -> Result<(), WechatError> {
        let doc = json!({
            "_id": self.doc_id(),
            "appid": self.appid(),
            "kind": TOKEN_KIND,
            "leaseUntil": 0,
            "refreshAt": 0,
            "expiresAt": 0,
        });
        match self.store.insert(WECHAT_TOKENS, doc).await {
            Ok(_) | Err(StoreError::DuplicateKey { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Takes the lease if nobody holds an unexpired one; returns the document when won.
    async fn acquire_lease(&self, owner: &str, now: i64) -> Result<Option<Value>, WechatError> {
        let free = Filter::any_of([
            Filter::lte("leaseUntil", now),
            Filter::exists("leaseUntil", false),
        ]);
        let filter = Filter::id(self.doc_id()).and(free);
        let take = Update::new()
            .set("leaseOwner", owner)
            .set("leaseUntil", now.saturating_add(ms(self.policy.lease)));
        self.store
            .update_one(WECHAT_TOKENS, &filter, &take, UpdateOptions::default())
            .await
            .map_err(store_err)
    }

    async fn release_lease(&self, owner: &str) -> Result<(), WechatError> {
        let filter = Filter::id(self.doc_id()).and(Filter::eq("leaseOwner", owner));
        let release = Update::new()
            .set("leaseOwner", Value::Null)
            .set("leaseUntil", 0);
        self.store
            .update_one(WECHAT_TOKENS, &filter, &release, UpdateOptions::default())
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn fetch_and_store(
        &self,
        owner: &str,
        failed: Option<&AccessToken>,
    ) -> Result<AccessToken, WechatError> {
        let fetched = match self.fetch(false).await {
            Ok(t) if failed.is_some_and(|f| f.expose() == t.access_token) => self.fetch(true).await,
            other => other,
        };
        let fetched = match fetched {
            Ok(t) => t,
            Err(e) => {
                // Let another instance (or the next call) try; keep the original error.
                let _ = self.release_lease(owner).await;
                return Err(e);
            }
        };
        let now = self.now();
        let lifetime = fetched.expires_in.max(1).saturating_mul(1000);
        let expires_at = now.saturating_add(lifetime);
        let refresh_at =
            now.saturating_add((lifetime - ms(self.policy.refresh_margin)).max(lifetime / 2));
        let filter = Filter::id(self.doc_id()).and(Filter::eq("leaseOwner", owner));
        let store = Update::new()
            .set("token", fetched.access_token.clone())
            .set("expiresAt", expires_at)
            .set("refreshAt", refresh_at)
            .set("leaseOwner", Value::Null)
            .set("leaseUntil", 0);
        // If our lease expired and another instance took over, its write wins; the token we
        // fetched is still valid (stable_token normal mode hands out the same token).
        self.store
            .update_one(WECHAT_TOKENS, &filter, &store, UpdateOptions::default())
            .await
            .map_err(store_err)?;
        let token = AccessToken::new(fetched.access_token);
        self.local_set(Some(Local {
            token: token.clone(),
            refresh_at,
        }));
        tracing::info!(appid = %self.appid(), expires_in = fetched.expires_in, "access token refreshed");
        Ok(token)
    }

    async fn fetch(&self, force_refresh: bool) -> Result<StableToken, WechatError> {
        let body = json!({
            "grant_type": "client_credential",
            "appid": self.appid(),
            "secret": self.http.config.secret(),
            "force_refresh": force_refresh,
        });
        // Force mode invalidates the previous token: never repeat it blindly after a timeout.
        let idempotent = if force_refresh {
            Idempotent::No
        } else {
            Idempotent::Yes
        };
        let token: StableToken = self
            .http
            .post_json("/cgi-bin/stable_token", &[], &body, idempotent)
            .await?;
        if token.access_token.is_empty() || token.expires_in <= 0 {
            return Err(WechatError::Decode(
                "stable_token reply without a token".into(),
            ));
        }
        Ok(token)
    }
}
