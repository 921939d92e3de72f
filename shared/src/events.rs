//! The event stream: one durable, ordered log of what happened (`events` collection), written
//! by the services that make things happen and tailed by every `realtime` instance.
//!
//! - **Order.** Every event gets a `seq` from 1, without gaps or reuse, on every store
//!   backend, in two steps so that a publisher pays **one write**:
//!   1. [`Events::publish`] inserts the event *pending*, with a negative placeholder `seq`
//!      that increases with the publish time (readers paging with `seq > cursor` never see
//!      it as a number);
//!   2. the first reader that sees it ([`Events::after`], which reads pending events in the
//!      same query) numbers it: it reads the highest `seq` and sets `seq + 1` on the event by
//!      a conditional update (only while the placeholder is still there), under the unique
//!      index on `seq`. A concurrent reader that chose the same number gets `DuplicateKey`
//!      and tries the next one; one that finds the event already numbered moves on.
//!
//!   A number is chosen only after every lower number is stored (it is read first), so the
//!   numbers are monotonic in commit order: a reader that pages with `seq > cursor` never
//!   skips an event that is numbered later with a lower number, even when two publishers or
//!   two readers race. A pending event is never lost: whoever reads next numbers it above
//!   every cursor handed out so far.
//! - **Once.** A publish names a `key` (unique index): publishing the same fact again (a
//!   retried notification, reconcile finishing an interrupted fulfilment) is a no-op.
//! - **Retention.** `expiresAt` is `at + retention` ([`DEFAULT_RETENTION_SECS`]); [`Events::sweep`]
//!   deletes expired events but always keeps the newest one, so numbering never restarts.
//!
//! Publishing never breaks the path that called it: services log a failed publish and leave
//! their own state where their recovery (reconcile) finishes it, which publishes again.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::{SharedClock, SystemClock};
use crate::store::collections::EVENTS;
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

/// How long events are kept for resuming: a client that was away longer resynchronises.
pub const DEFAULT_RETENTION_SECS: i64 = 24 * 3600;
/// Attempts at allocating a sequence number before giving up (each loses only to another
/// publisher that succeeded).
const MAX_ALLOCATION_ATTEMPTS: usize = 32;
/// The unique index on `key` (see `store::collections`).
const KEY_INDEX: &str = "key_1";

/// Publishes in this process so far: the low bits of a placeholder, so that one process's
/// events keep their order within a millisecond.
static PUBLISHED: AtomicI64 = AtomicI64::new(0);
/// Bits of a placeholder below the milliseconds.
const PLACEHOLDER_BITS: u32 = 20;

/// The negative `seq` of a pending event: increasing with the publish time (then with this
/// process's publish count), below every real number until the 23rd century.
fn placeholder(millis: i64, count: i64) -> i64 {
    let millis = millis.clamp(0, (i64::MAX >> PLACEHOLDER_BITS) - 1);
    i64::MIN + 1 + (millis << PLACEHOLDER_BITS) + (count & ((1 << PLACEHOLDER_BITS) - 1))
}

fn parse_event(doc: Value) -> Result<Event, StoreError> {
    serde_json::from_value(doc)
        .map_err(|e| StoreError::InvalidDocument(format!("stored event does not fit: {e}")))
}

/// Event types (the `type` field; `docs/api.md` lists their `data`).
pub mod kinds {
    /// An order moved to paid (its grants applied).
    pub const ORDER_PAID: &str = "order.paid";
    /// A refund of an order settled (money returned).
    pub const REFUND_SETTLED: &str = "refund.settled";
    /// A post was approved (by the machine check or an admin).
    pub const POST_APPROVED: &str = "post.approved";
    /// A post was rejected.
    pub const POST_REJECTED: &str = "post.rejected";
    /// Someone joined a tenant.
    pub const MEMBER_ADDED: &str = "tenant.member_added";
    /// Someone left or was removed from a tenant.
    pub const MEMBER_REMOVED: &str = "tenant.member_removed";
    /// A tenant's shared notes changed.
    pub const NOTES_CHANGED: &str = "tenant.notes_changed";
}

/// One stored event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the stream, from 1, without gaps.
    pub seq: i64,
    /// See [`kinds`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The user it concerns (orders, posts): only they may see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// The tenant it concerns: its members may see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The order it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Event-specific fields.
    #[serde(default)]
    pub data: Value,
    /// Unix seconds.
    pub at: i64,
}

impl Event {
    /// What a client receives: `{seq, type, at, data, orderId?, tenant?}` (no audience openid).
    pub fn view(&self) -> Value {
        let mut v = json!({"seq": self.seq, "type": self.kind, "at": self.at, "data": self.data});
        if let Some(o) = &self.order_id {
            v["orderId"] = json!(o);
        }
        if let Some(t) = &self.tenant {
            v["tenant"] = json!(t);
        }
        v
    }
}

/// An event to publish: its type, the idempotency key, its audience and data.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    kind: &'static str,
    key: String,
    openid: Option<String>,
    tenant: Option<String>,
    order_id: Option<String>,
    data: Value,
}

impl Draft {
    /// An event of `kind` identified by `key`: publishing the same key twice stores one event.
    pub fn new(kind: &'static str, key: impl Into<String>) -> Self {
        Self {
            kind,
            key: key.into(),
            openid: None,
            tenant: None,
            order_id: None,
            data: Value::Object(Default::default()),
        }
    }

    /// Visible to `openid` only (with [`Draft::for_tenant`]: also to the tenant's members).
    #[must_use]
    pub fn for_user(mut self, openid: impl Into<String>) -> Self {
        self.openid = Some(openid.into());
        self
    }

    /// Visible to the members of `tenant`.
    #[must_use]
    pub fn for_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// About the order `id`.
    #[must_use]
    pub fn order(mut self, id: impl Into<String>) -> Self {
        self.order_id = Some(id.into());
        self
    }

    /// The event's data (an object).
    #[must_use]
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Stored, pending its sequence number (given by the first reader).
    Stored,
    /// An event with the same key was already stored.
    Duplicate,
}

/// Publishes to and reads the stream. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    store: Arc<dyn Store>,
    clock: SharedClock,
    retention_secs: i64,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("store", &self.store.backend())
            .field("retention_secs", &self.retention_secs)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// The stream in `store`, system clock, default retention.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            retention_secs: DEFAULT_RETENTION_SECS,
        }
    }

    /// Replaces the clock.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps events `secs` (at least a minute).
    #[must_use]
    pub fn with_retention(mut self, secs: i64) -> Self {
        self.retention_secs = secs.max(60);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores `draft` once per key, in **one store write**: the event goes in *pending*, with a
    /// negative placeholder `seq` that orders it by publish time, and the first reader that
    /// sees it ([`Events::after`]) gives it its number. The paying path therefore pays one
    /// insert for its event, whatever the backend.
    ///
    /// # Errors
    /// The store's (the caller decides whether that matters: see the module docs).
    pub async fn publish(&self, draft: Draft) -> Result<Published, StoreError> {
        let at = self.clock.now_unix();
        let millis = self.clock.now_millis();
        for _ in 0..MAX_ALLOCATION_ATTEMPTS {
            let seq = placeholder(millis, PUBLISHED.fetch_add(1, Ordering::Relaxed));
            let mut doc = json!({
                "seq": seq,
                "type": draft.kind,
                "key": draft.key,
                "data": draft.data,
                "at": at,
                "expiresAt": at + self.retention_secs,
            });
            for (field, value) in [
                ("openid", &draft.openid),
                ("tenant", &draft.tenant),
                ("orderId", &draft.order_id),
            ] {
                if let Some(v) = value {
                    doc[field] = json!(v);
                }
            }
            match self.store.insert(EVENTS, doc).await {
                Ok(_) => {
                    tracing::debug!(kind = draft.kind, "event published (pending)");
                    return Ok(Published::Stored);
                }
                Err(StoreError::DuplicateKey { index, .. }) if index == KEY_INDEX => {
                    return Ok(Published::Duplicate);
                }
                Err(StoreError::DuplicateKey { .. }) => {
                    // Either another process took the same placeholder in the same
                    // millisecond, or (on a backend that does not name the index) the key
                    // exists: tell which.
                    if self
                        .store
                        .find_one(EVENTS, &Filter::eq("key", draft.key.as_str()))
                        .await?
                        .is_some()
                    {
                        return Ok(Published::Duplicate);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Backend(
            "could not store an event: too much contention".into(),
        ))
    }

    /// Gives the pending events in `pending` (oldest placeholder first) their numbers: each
    /// takes the next number after the highest stored, by a conditional update (`seq` still
    /// its placeholder) under the unique index on `seq`. A number is therefore chosen only
    /// after every lower number is stored, whichever of several readers does it, and an
    /// event is numbered once.
    async fn number(&self, pending: &[Value]) -> Result<(), StoreError> {
        let mut next = self.head().await? + 1;
        for doc in pending {
            let (Some(id), Some(placeholder)) = (
                doc.get("_id").and_then(Value::as_str),
                doc.get("seq").and_then(Value::as_i64),
            ) else {
                continue;
            };
            let mut attempts = 0;
            loop {
                let numbered = self
                    .store
                    .update_one(
                        EVENTS,
                        &Filter::id(id).and(Filter::eq("seq", placeholder)),
                        &Update::new().set("seq", next),
                        UpdateOptions::default(),
                    )
                    .await;
                match numbered {
                    Ok(Some(_)) => {
                        next += 1;
                        break;
                    }
                    // Another reader numbered it first.
                    Ok(None) => break,
                    Err(StoreError::DuplicateKey { .. }) if attempts < MAX_ALLOCATION_ATTEMPTS => {
                        attempts += 1;
                        next = (self.head().await? + 1).max(next + 1);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The highest sequence number given (0 when none is).
    ///
    /// # Errors
    /// The store's.
    pub async fn head(&self) -> Result<i64, StoreError> {
        let newest = self
            .store
            .find(
                EVENTS,
                // Pending events (negative placeholders) are not numbered yet.
                &Filter::gt("seq", 0),
                &FindOptions::new().sort_desc("seq").limit(1),
            )
            .await?;
        Ok(newest
            .first()
            .and_then(|d| d.get("seq"))
            .and_then(Value::as_i64)
            .unwrap_or(0))
    }

    /// Numbers every pending event and returns the highest sequence number: where a reader
    /// that starts now begins (events published before it are not "live").
    ///
    /// # Errors
    /// The store's.
    pub async fn settle(&self) -> Result<i64, StoreError> {
        // Bounded: each round numbers up to 500 (or finds them numbered by another reader).
        for _ in 0..1000 {
            let pending = self
                .store
                .find(
                    EVENTS,
                    &Filter::lt("seq", 0),
                    &FindOptions::new().sort_asc("seq").limit(500),
                )
                .await?;
            if pending.is_empty() {
                return self.head().await;
            }
            self.number(&pending).await?;
        }
        self.head().await
    }

    /// The lowest sequence number still stored, if any.
    ///
    /// # Errors
    /// The store's.
    pub async fn oldest(&self) -> Result<Option<i64>, StoreError> {
        let oldest = self
            .store
            .find(
                EVENTS,
                &Filter::gt("seq", 0),
                &FindOptions::new().sort_asc("seq").limit(1),
            )
            .await?;
        Ok(oldest
            .first()
            .and_then(|d| d.get("seq"))
            .and_then(Value::as_i64))
    }

    /// Up to `limit` events after `cursor`, oldest first. Pending events (published but
    /// not yet numbered) come back in the same read; when there are some, they are numbered
    /// first (see the module docs) and the page is read again.
    ///
    /// # Errors
    /// The store's, or a stored event that does not parse.
    pub async fn after(&self, cursor: i64, limit: u64) -> Result<Vec<Event>, StoreError> {
        let page = FindOptions::new().sort_asc("seq").limit(limit);
        let docs = self
            .store
            .find(
                EVENTS,
                &Filter::gt("seq", cursor).or(Filter::lt("seq", 0)),
                &page,
            )
            .await?;
        let pending = docs
            .iter()
            .take_while(|d| d.get("seq").and_then(Value::as_i64).unwrap_or(0) < 0)
            .count();
        if pending == 0 {
            return docs.into_iter().map(parse_event).collect();
        }
        self.number(&docs[..pending]).await?;
        self.store
            .find_as(EVENTS, &Filter::gt("seq", cursor), &page)
            .await
    }

    /// Deletes events past their retention, keeping the newest (so numbering goes on).
    /// Returns how many were deleted.
    ///
    /// # Errors
    /// The store's.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let head = self.head().await?;
        self.store
            .delete_many(
                EVENTS,
                &Filter::lt("expiresAt", self.clock.now_unix()).and(Filter::lt("seq", head)),
            )
            .await
    }

    /// Publishes and logs a failure instead of returning it: for paths that must go on
    /// whatever happens to the stream and that have no recovery of their own for the event.
    pub async fn publish_or_log(&self, draft: Draft) {
        let kind = draft.kind;
        if let Err(e) = self.publish(draft).await {
            tracing::warn!(kind, error = %e, "event not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::store::sqlite::SqliteStore;

    async fn events() -> (Events, Arc<FixedClock>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        crate::store::bootstrap(store.as_ref()).await.unwrap();
        let clock = Arc::new(FixedClock::new(1_000_000));
        (Events::new(store).with_clock(clock.clone()), clock)
    }

    #[tokio::test]
    async fn sequence_is_gapless_and_keys_publish_once() {
        let (ev, _) = events().await;
        assert_eq!(ev.head().await.unwrap(), 0);
        let a = Draft::new(kinds::ORDER_PAID, "order.paid:o1")
            .for_user("u1")
            .order("o1");
        assert_eq!(ev.publish(a.clone()).await.unwrap(), Published::Stored);
        assert_eq!(ev.publish(a).await.unwrap(), Published::Duplicate);
        let b = Draft::new(kinds::NOTES_CHANGED, "notes:t1:2").for_tenant("t1");
        assert_eq!(ev.publish(b).await.unwrap(), Published::Stored);
        // Pending until read: no number yet.
        assert_eq!(ev.head().await.unwrap(), 0);
        let all = ev.after(0, 10).await.unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(all[0].order_id.as_deref(), Some("o1"));
        assert_eq!(all[0].view()["type"], "order.paid");
        assert!(all[0].view().get("openid").is_none());
        assert_eq!(ev.after(1, 10).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_publishers_get_distinct_consecutive_numbers() {
        let (ev, _) = events().await;
        let mut tasks = Vec::new();
        for i in 0..40 {
            let ev = ev.clone();
            tasks.push(tokio::spawn(async move {
                ev.publish(Draft::new(kinds::NOTES_CHANGED, format!("k{i}")).for_tenant("t"))
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Published::Stored, "distinct keys");
        }
        // Several readers number them at once: each event gets one number, without gaps.
        let mut readers = Vec::new();
        for _ in 0..4 {
            let ev = ev.clone();
            readers.push(tokio::spawn(async move { ev.after(0, 100).await.unwrap() }));
        }
        for r in readers {
            r.await.unwrap();
        }
        let seqs: Vec<i64> = ev
            .after(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn sweep_deletes_expired_events_but_keeps_the_newest() {
        let (ev, clock) = events().await;
        let ev = ev.with_retention(60);
        for i in 0..3 {
            ev.publish(Draft::new(kinds::NOTES_CHANGED, format!("k{i}")))
                .await
                .unwrap();
        }
        assert_eq!(ev.after(0, 10).await.unwrap().len(), 3);
        clock.advance(61);
        assert_eq!(ev.sweep().await.unwrap(), 2);
        assert_eq!(ev.oldest().await.unwrap(), Some(3));
        assert_eq!(
            ev.publish(Draft::new(kinds::NOTES_CHANGED, "k9"))
                .await
                .unwrap(),
            Published::Stored
        );
        let next = ev.after(3, 10).await.unwrap();
        assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4]);
        assert_eq!(next[0].kind, kinds::NOTES_CHANGED);
    }

    #[tokio::test]
    async fn one_process_keeps_its_publish_order_and_a_cursor_past_the_head_misses_nothing() {
        let (ev, _) = events().await;
        // The fixed clock gives every event the same millisecond: the process's count orders
        // them.
        for i in 0..5 {
            ev.publish(Draft::new(kinds::NOTES_CHANGED, format!("k{i}")))
                .await
                .unwrap();
        }
        let first = ev.after(0, 3).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // A reader at 3 sees 4, 5 and then an event published after it read: numbered above.
        let cursor = first[2].seq;
        ev.publish(Draft::new(kinds::ORDER_PAID, "late"))
            .await
            .unwrap();
        let rest = ev.after(cursor, 10).await.unwrap();
        assert_eq!(
            rest.iter()
                .map(|e| (e.seq, e.kind.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (4, kinds::NOTES_CHANGED),
                (5, kinds::NOTES_CHANGED),
                (6, kinds::ORDER_PAID)
            ]
        );
        let keys: Vec<String> = ev
            .store()
            .find(EVENTS, &Filter::All, &FindOptions::new().sort_asc("seq"))
            .await
            .unwrap()
            .iter()
            .map(|d| d["key"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4", "late"]);
    }

    #[test]
    fn placeholders_are_negative_and_follow_time_then_count() {
        let now = 1_800_000_000_000;
        assert!(placeholder(now * 4, 0) < 0);
        assert!(placeholder(i64::MAX, i64::MAX) < 0);
        assert!(placeholder(now, 5) < placeholder(now, 6));
        assert!(placeholder(now, (1 << PLACEHOLDER_BITS) - 1) < placeholder(now + 1, 0));
    }
}
