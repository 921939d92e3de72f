//! Behaviour analytics (issue 20, `docs/analytics.md`): the `analytics` function's service.
//!
//! - [`Analytics::track`]: a signed-in user's batch of events, checked against the schema
//!   (`domain::analytics`), capped per call and per user-minute, stored as **one** raw
//!   document per call (`analytics_events`); dropped events are counted per day and reason.
//! - [`Analytics::copy_facts`] (every minute): paid orders and settled refunds copied from the
//!   event stream (`events`) into `analytics_facts`, keyed by their source id, so nothing new
//!   is written on the paying path. [`Analytics::aggregate`] also derives the day's facts
//!   from the owning collections (`orders.paidAt`, `refunds.settledAt`), so a fact whose
//!   event was swept before the copy is not lost.
//! - [`Analytics::aggregate`] (daily, re-runnable): one day's aggregates in `analytics_daily`
//!   (replacing the day), first-active days and retention cohorts.
//! - [`Analytics::purge`]: raw events older than the retention, finished rate windows.
//! - [`Analytics::dashboard`]: the admin view over a range of days.

mod aggregate;
mod facts;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::domain::analytics::{self as rules, DropReason, Dropped};
use crate::finance::china_date;
use crate::store::collections::{ANALYTICS_COUNTERS, ANALYTICS_EVENTS};
use crate::store::{Filter, Store, StoreError, Update, UpdateOptions, new_id};

pub use aggregate::{AggregateReport, MAX_DASHBOARD_DAYS};
pub use facts::FactsReport;

/// Days raw events are kept by default (`ANALYTICS_RETENTION_DAYS`).
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// What `track` answers: `{accepted, dropped: {reason: n}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrackReply {
    /// Events stored.
    pub accepted: u64,
    /// Events dropped, per reason.
    #[serde(serialize_with = "dropped_ser")]
    pub dropped: Dropped,
}

fn dropped_ser<S: serde::Serializer>(d: &Dropped, s: S) -> Result<S::Ok, S::Error> {
    rules::dropped_view(d).serialize(s)
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// A malformed or out-of-range input.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AnalyticsError> for crate::runtime::ApiError {
    fn from(e: AnalyticsError) -> Self {
        match e {
            AnalyticsError::Invalid(m) => crate::runtime::ApiError::new(
                codes::ANALYTICS_INPUT_INVALID,
                http::StatusCode::BAD_REQUEST,
                m,
            ),
            AnalyticsError::Store(s) => crate::runtime::ApiError::internal(s),
        }
    }
}

/// Error codes of the admin actions (`docs/errors.md`).
pub mod codes {
    /// `days` or `date` out of range or malformed.
    pub const ANALYTICS_INPUT_INVALID: &str = "ANALYTICS_INPUT_INVALID";
}

/// The analytics service. Cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    store: Arc<dyn Store>,
    clock: SharedClock,
    retention_days: u32,
}

impl fmt::Debug for Analytics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analytics")
            .field("store", &self.store.backend())
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

impl Analytics {
    /// A service over `store` and `clock`, keeping raw events `retention_days` (at least 1).
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, retention_days: u32) -> Self {
        Self {
            store,
            clock,
            retention_days: retention_days.max(1),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Today in China, `yyyy-MM-dd`.
    pub fn today(&self) -> String {
        china_date(self.clock.now_unix())
    }

    /// Yesterday in China, `yyyy-MM-dd`.
    pub fn yesterday(&self) -> String {
        china_date(self.clock.now_unix() - 86_400)
    }

    /// Ingests one `track` call of `openid`. Bad input is never an error: it is dropped and
    /// counted. Writes: one upsert of the caller's minute (when any event is valid), one
    /// insert of the accepted events, one upsert of the day's dropped counts (when any).
    ///
    /// # Errors
    /// The store's.
    pub async fn track(&self, openid: &str, data: &Value) -> Result<TrackReply, StoreError> {
        let rules::Batch {
            mut events,
            mut dropped,
        } = rules::parse_batch(data);
        let now = self.clock.now_unix();
        let day = china_date(now);
        if !events.is_empty() {
            let start = now - now.rem_euclid(60);
            let n = events.len();
            let update = Update::new()
                .inc("count", i64::try_from(n).unwrap_or(i64::MAX))
                .set_on_insert("kind", "rate")
                .set_on_insert("expiresAt", start + 60);
            let doc = upsert(
                self.store.as_ref(),
                ANALYTICS_COUNTERS,
                &format!("rate:{start}:{openid}"),
                &update,
            )
            .await?;
            let count = doc.get("count").and_then(Value::as_i64).unwrap_or(i64::MAX);
            let allowed = rules::within_minute(count.saturating_sub(n as i64), n);
            if allowed < n {
                let over = u32::try_from(n - allowed).unwrap_or(u32::MAX);
                *dropped.entry(DropReason::RateLimited).or_default() += over;
                events.truncate(allowed);
            }
        }
        let accepted = events.len() as u64;
        if !events.is_empty() {
            let doc = json!({
                "_id": new_id(),
                "openid": openid,
                "day": day,
                "receivedAt": now,
                "events": events,
            });
            self.store.insert(ANALYTICS_EVENTS, doc).await?;
        }
        if dropped.values().any(|n| *n > 0) {
            let mut update = Update::new()
                .set_on_insert("kind", "dropped")
                .set_on_insert("day", day.as_str());
            for (reason, n) in &dropped {
                update = update.inc(reason.as_str(), i64::from(*n));
            }
            upsert(
                self.store.as_ref(),
                ANALYTICS_COUNTERS,
                &format!("dropped:{day}"),
                &update,
            )
            .await?;
            tracing::info!(openid, ?dropped, "analytics: events dropped");
        }
        Ok(TrackReply { accepted, dropped })
    }

    /// Drops raw events older than the retention and finished rate windows; returns
    /// `{rawDeleted, windowsDeleted, keptFrom}`.
    ///
    /// # Errors
    /// The store's.
    pub async fn purge(&self) -> Result<Value, StoreError> {
        let now = self.clock.now_unix();
        let kept_from = china_date(now - i64::from(self.retention_days) * 86_400);
        let raw = self
            .store
            .delete_many(ANALYTICS_EVENTS, &Filter::lt("day", kept_from.as_str()))
            .await?;
        let windows = self
            .store
            .delete_many(ANALYTICS_COUNTERS, &Filter::lte("expiresAt", now))
            .await?;
        Ok(json!({"rawDeleted": raw, "windowsDeleted": windows, "keptFrom": kept_from}))
    }

    /// The dropped counts of `days` (missing days: none), from the live counters.
    async fn dropped_of(&self, days: &[String]) -> Result<BTreeMap<String, Value>, StoreError> {
        let ids: Vec<Value> = days.iter().map(|d| json!(format!("dropped:{d}"))).collect();
        let docs = self
            .store
            .find(
                ANALYTICS_COUNTERS,
                &Filter::is_in("_id", ids),
                &crate::store::FindOptions::new(),
            )
            .await?;
        let mut out = BTreeMap::new();
        for doc in docs {
            let Some(day) = doc.get("day").and_then(Value::as_str) else {
                continue;
            };
            let mut counts = serde_json::Map::new();
            for reason in DropReason::ALL {
                if let Some(n) = doc.get(reason.as_str()).and_then(Value::as_i64) {
                    counts.insert(reason.as_str().to_owned(), json!(n));
                }
            }
            out.insert(day.to_owned(), Value::Object(counts));
        }
        Ok(out)
    }
}

/// An upsert by `_id` that retries the lost race of two first writers (duplicate key).
async fn upsert(
    store: &dyn Store,
    collection: &str,
    id: &str,
    update: &Update,
) -> Result<Value, StoreError> {
    let filter = Filter::id(id);
    let mut attempt = 0;
    loop {
        match store
            .update_one(collection, &filter, update, UpdateOptions::upsert())
            .await
        {
            Ok(Some(doc)) => return Ok(doc),
            Ok(None) => return Err(StoreError::Backend("upsert returned no document".into())),
            Err(StoreError::DuplicateKey { .. }) if attempt < 2 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
