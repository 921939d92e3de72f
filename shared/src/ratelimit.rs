//! Rate limits per subject (usually an openid) and action, kept in the store so every instance
//! of every function counts against the same budget.
//!
//! Fixed windows: the window containing `now` is `[now - now % window, … + window)`. Each
//! request is one atomic `$inc` with upsert on the document `_id = "<action>:<window>:<start>:<subject>"`
//! in `rate_limits`, so two instances racing on the same window never lose a count. Over
//! the limit the caller gets `RATE_LIMITED` with `retryAfterSecs` = seconds to the end of the
//! window. Counting continues past the limit (a refused request still counts), which keeps
//! the check to one write.
//!
//! A handler calls it in one line:
//!
//! ```ignore
//! state.limits.check(&caller.openid, "ugcUpload.create", Limit::per_minute(10)).await?;
//! ```
//!
//! `rate_limits` documents: `{_id, action, subject, windowStart, count, expiresAt}`; `expiresAt`
//! (end of the window) lets [`RateLimiter::purge_expired`] or a TTL index drop old windows.

use std::fmt;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::clock::{SharedClock, SystemClock};
use crate::runtime::ApiError;
use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};

use crate::store::collections::RATE_LIMITS;

/// A budget: at most `max` requests per `window_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed in one window (at least 1).
    pub max: u32,
    /// Window length in seconds (at least 1).
    pub window_secs: u32,
}

impl Limit {
    /// `max` requests per `window_secs` seconds (both at least 1).
    pub const fn new(max: u32, window_secs: u32) -> Self {
        Self {
            max: if max == 0 { 1 } else { max },
            window_secs: if window_secs == 0 { 1 } else { window_secs },
        }
    }

    /// `max` requests per minute.
    pub const fn per_minute(max: u32) -> Self {
        Self::new(max, 60)
    }

    /// `max` requests per hour.
    pub const fn per_hour(max: u32) -> Self {
        Self::new(max, 3600)
    }

    /// `max` requests per day (UTC days).
    pub const fn per_day(max: u32) -> Self {
        Self::new(max, 86_400)
    }
}

/// Why a request was not allowed.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// Over the limit; retry after `retry_after_secs`.
    #[error("too many requests for {action}; retry in {retry_after_secs} s")]
    Limited {
        /// The limited action.
        action: String,
        /// Seconds until the window ends.
        retry_after_secs: u64,
    },
    /// The subject or action is empty or too long to be a key.
    #[error("invalid rate limit key: {0}")]
    InvalidKey(&'static str),
    /// The store failed; the request is neither allowed nor refused.
    #[error("rate limit store: {0}")]
    Store(#[from] StoreError),
}

impl From<RateLimitError> for ApiError {
    fn from(err: RateLimitError) -> Self {
        match err {
            RateLimitError::Limited {
                retry_after_secs, ..
            } => ApiError::rate_limited(err.to_string(), retry_after_secs),
            other => ApiError::internal(other),
        }
    }
}

/// What the counter said for an allowed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// When the window ends, Unix seconds.
    pub resets_at: i64,
}

/// Counts requests in the store. Cheap to clone; build one per function at init.
#[derive(Clone)]
pub struct RateLimiter {
    store: Arc<dyn Store>,
    clock: SharedClock,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

/// Longest subject or action accepted (ids stay well below the store's `_id` limit).
const MAX_PART: usize = 200;

impl RateLimiter {
    /// A limiter over `store` using the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the clock (tests, the emulator's dev clock).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Counts one request of `subject` for `action`.
    ///
    /// # Errors
    /// `RATE_LIMITED` with `retryAfterSecs` when over `limit`; `INTERNAL` when the store fails
    /// (failing closed: an unreachable store refuses rather than lets everything through).
    pub async fn check(&self, subject: &str, action: &str, limit: Limit) -> Result<(), ApiError> {
        self.hit(subject, action, limit).await?;
        Ok(())
    }

    /// [`RateLimiter::check`] with the typed error and what is left of the window.
    ///
    /// # Errors
    /// [`RateLimitError`].
    pub async fn hit(
        &self,
        subject: &str,
        action: &str,
        limit: Limit,
    ) -> Result<Allowance, RateLimitError> {
        for (part, what) in [(subject, "subject"), (action, "action")] {
            if part.is_empty() || part.len() > MAX_PART {
                return Err(RateLimitError::InvalidKey(what));
            }
        }
        let limit = Limit::new(limit.max, limit.window_secs);
        let window = i64::from(limit.window_secs);
        let now = self.clock.now_unix();
        let start = now - now.rem_euclid(window);
        let resets_at = start + window;
        let id = format!("{action}:{window}:{start}:{subject}");
        let update = Update::new()
            .inc("count", 1)
            .set_on_insert("action", action)
            .set_on_insert("subject", subject)
            .set_on_insert("windowStart", start)
            .set_on_insert("expiresAt", resets_at);
        let doc = self.increment(&id, &update).await?;
        let count = doc.get("count").and_then(Value::as_i64).unwrap_or(i64::MAX);
        let max = i64::from(limit.max);
        if count > max {
            let retry_after_secs = u64::try_from((resets_at - now).max(1)).unwrap_or(1);
            tracing::info!(action, count, retry_after_secs, "rate limited");
            return Err(RateLimitError::Limited {
                action: action.to_owned(),
                retry_after_secs,
            });
        }
        Ok(Allowance {
            remaining: u32::try_from(max - count).unwrap_or(0),
            resets_at,
        })
    }

    /// The upsert; two first requests racing may both try to insert, and the loser of that
    /// race (duplicate key) simply increments the winner's document.
    async fn increment(&self, id: &str, update: &Update) -> Result<Value, RateLimitError> {
        let filter = Filter::id(id);
        let mut attempt = 0;
        loop {
            match self
                .store
                .update_one(RATE_LIMITS, &filter, update, UpdateOptions::upsert())
                .await
            {
                Ok(Some(doc)) => return Ok(doc),
                Ok(None) => {
                    return Err(StoreError::Backend("upsert returned no document".into()).into());
                }
                Err(StoreError::DuplicateKey { .. }) if attempt < 2 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes windows that ended before now; returns how many. Run from a timer.
    ///
    /// # Errors
    /// The store's.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = self.clock.now_unix();
        self.store
            .delete_many(RATE_LIMITS, &Filter::lte("expiresAt", json!(now)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::runtime::codes;
    use crate::store::sqlite::SqliteStore;

    async fn limiter(now: i64) -> (RateLimiter, Arc<FixedClock>, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let clock = Arc::new(FixedClock::new(now));
        (
            RateLimiter::new(store.clone()).with_clock(clock.clone()),
            clock,
            store,
        )
    }

    #[tokio::test]
    async fn allows_up_to_the_limit_then_refuses_until_the_window_ends() {
        // 1_000_040 is 20 s into the one-minute window [1_000_020, 1_000_080).
        let (limits, clock, _) = limiter(1_000_040).await;
        let limit = Limit::per_minute(3);
        for left in [2, 1, 0] {
            let a = limits.hit("o-1", "login", limit).await.unwrap();
            assert_eq!(a.remaining, left);
            assert_eq!(a.resets_at, 1_000_080);
        }
        let err = limits.check("o-1", "login", limit).await.unwrap_err();
        assert_eq!(err.code(), codes::RATE_LIMITED);
        assert_eq!(err.retry_after_secs(), Some(40));
        // Other subjects and actions have their own budgets.
        limits.check("o-2", "login", limit).await.unwrap();
        limits.check("o-1", "ugcUpload", limit).await.unwrap();
        // The next window starts fresh.
        clock.advance(39);
        assert!(limits.check("o-1", "login", limit).await.is_err());
        clock.advance(1);
        limits.check("o-1", "login", limit).await.unwrap();
    }

    #[tokio::test]
    async fn counts_are_shared_through_the_store_and_purged_after_expiry() {
        let (a, clock, store) = limiter(5_000).await;
        let b = RateLimiter::new(store.clone()).with_clock(clock.clone());
        let limit = Limit::new(2, 100);
        a.check("o-1", "x", limit).await.unwrap();
        b.check("o-1", "x", limit).await.unwrap();
        assert!(a.check("o-1", "x", limit).await.is_err());
        assert!(b.check("o-1", "x", limit).await.is_err());
        let doc = store
            .get(RATE_LIMITS, "x:100:5000:o-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(doc["count"], json!(4));
        assert_eq!(doc["subject"], json!("o-1"));
        assert_eq!(doc["expiresAt"], json!(5_100));
        assert_eq!(a.purge_expired().await.unwrap(), 0);
        clock.set(5_100);
        assert_eq!(a.purge_expired().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_never_lose_a_count() {
        let (limits, _, store) = limiter(7_000).await;
        let limit = Limit::new(1_000, 60);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let l = limits.clone();
            tasks.push(tokio::spawn(
                async move { l.check("o-1", "y", limit).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let start = 7_000 - 7_000 % 60;
        let doc = store
            .get(RATE_LIMITS, &format!("y:60:{start}:o-1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(doc["count"], json!(20));
    }

    #[tokio::test]
    async fn bad_keys_are_refused() {
        let (limits, _, _) = limiter(0).await;
        assert!(matches!(
            limits.hit("", "x", Limit::per_minute(1)).await,
            Err(RateLimitError::InvalidKey("subject"))
        ));
        let long = "a".repeat(201);
        assert!(matches!(
            limits.hit("o", &long, Limit::per_minute(1)).await,
            Err(RateLimitError::InvalidKey("action"))
        ));
        assert_eq!(Limit::new(0, 0), Limit::new(1, 1));
    }
}
