//! One process's side of the stream: a single tail of `events` shared by every connection of
//! the process, and the fan-out to the connections whose topics match.
//!
//! - **Tail.** One task reads `seq > cursor` (a page at a time) and fans the page out. It
//!   polls every [`HubConfig::poll_fast`] while the process is busy (an event or a subscribe
//!   within [`HubConfig::hot_for`]) and every [`HubConfig::poll_idle`] otherwise, so an idle
//!   connection costs a few reads a minute and a checkout that just subscribed hears its
//!   payment within one fast poll.
//! - **Fan-out.** Under one short lock, with no I/O: each connection gets the matching
//!   events of the page as one message on its bounded queue ([`HubConfig::queue`] messages).
//!   A full queue means a client that does not read: it is dropped (its queue closed), never
//!   buffered further. It reconnects and resumes from its last sequence.
//! - **Membership.** A `tenant.member_removed` naming a connection's user removes that tenant
//!   from the connection's topics in the same pass, so nothing after it reaches them.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::protocol::{MAX_TOPICS, Topic};
use crate::events::{Event, Events, kinds};
use crate::store::collections::ORDERS;
use crate::store::{Store, StoreError};
use crate::tenancy::Tenancy;

/// Tuning of a hub (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct HubConfig {
    /// Poll interval while busy.
    pub poll_fast: Duration,
    /// Poll interval while idle.
    pub poll_idle: Duration,
    /// How long an event or a subscribe keeps the hub busy.
    pub hot_for: Duration,
    /// Messages a connection's queue holds before the client counts as too slow.
    pub queue: usize,
    /// Events read per page.
    pub page: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            poll_fast: Duration::from_millis(100),
            poll_idle: Duration::from_secs(5),
            hot_for: Duration::from_secs(30),
            queue: 64,
            page: 500,
        }
    }
}

/// What the hub hands a connection.
#[derive(Clone, Debug)]
pub enum Item {
    /// An event the connection's topics match.
    Event(Arc<Event>),
    /// The user was removed from this tenant: its topic is gone.
    Revoked(String),
}

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The topic as asked.
    pub topic: String,
    /// `BAD_REQUEST`, `FORBIDDEN` or `TOO_MANY_TOPICS`.
    pub code: &'static str,
    /// For the client.
    pub message: String,
}

struct Conn {
    openid: String,
    topics: BTreeSet<Topic>,
    tx: mpsc::Sender<Vec<Item>>,
    opened_at: Instant,
}

#[derive(Default)]
struct Registry {
    next: u64,
    conns: HashMap<u64, Conn>,
}

/// Counters for the console and the benchmarks.
#[derive(Default, Debug)]
struct Counters {
    reads: AtomicU64,
    delivered: AtomicU64,
    dropped_slow: AtomicU64,
    opened: AtomicU64,
}

/// The process's hub. Build one with [`Hub::new`], start [`Hub::tail`] once.
pub struct Hub {
    events: Events,
    tenancy: Tenancy,
    store: Arc<dyn Store>,
    config: HubConfig,
    registry: Mutex<Registry>,
    cursor: AtomicI64,
    started: Instant,
    /// Milliseconds since `started` until which the hub polls fast.
    hot_until_ms: AtomicU64,
    wake: Notify,
    counters: Counters,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("cursor", &self.cursor())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// A registered connection: its id and the receiving end of its queue (closed when the hub
/// drops it as too slow).
#[derive(Debug)]
pub struct Registration {
    /// Connection id (for unsubscribe/unregister).
    pub id: u64,
    /// What the hub sends it.
    pub rx: mpsc::Receiver<Vec<Item>>,
}

impl Hub {
    /// A hub over the stream `events`, checking tenant membership with `tenancy`.
    pub fn new(events: Events, tenancy: Tenancy, config: HubConfig) -> Self {
        Self {
            store: events.store().clone(),
            events,
            tenancy,
            config,
            registry: Mutex::new(Registry::default()),
            cursor: AtomicI64::new(0),
            started: Instant::now(),
            hot_until_ms: AtomicU64::new(0),
            wake: Notify::new(),
            counters: Counters::default(),
        }
    }

    /// The stream.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The last sequence fanned out.
    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Store reads made by this hub (tail, subscribe checks, replays).
    pub fn reads(&self) -> u64 {
        self.counters.reads.load(Ordering::Relaxed)
    }

    pub(crate) fn count_read(&self) {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Nothing under the lock can panic half way through an update that matters.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Polls fast for the next [`HubConfig::hot_for`] and polls now.
    pub fn nudge(&self) {
        let until =
            self.now_ms() + u64::try_from(self.config.hot_for.as_millis()).unwrap_or(u64::MAX);
        self.hot_until_ms.fetch_max(until, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn is_hot(&self) -> bool {
        self.now_ms() < self.hot_until_ms.load(Ordering::Relaxed)
    }

    /// Adds a connection of `openid` with no topics.
    pub fn register(&self, openid: &str) -> Registration {
        let (tx, rx) = mpsc::channel(self.config.queue.max(1));
        let mut reg = self.lock();
        reg.next += 1;
        let id = reg.next;
        reg.conns.insert(
            id,
            Conn {
                openid: openid.to_owned(),
                topics: BTreeSet::new(),
                tx,
                opened_at: Instant::now(),
            },
        );
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        Registration { id, rx }
    }

    /// Removes a connection.
    pub fn unregister(&self, id: u64) {
        self.lock().conns.remove(&id);
    }

    /// The connection's topics (empty once it was dropped).
    pub fn topics(&self, id: u64) -> BTreeSet<Topic> {
        self.lock()
            .conns
            .get(&id)
            .map(|c| c.topics.clone())
            .unwrap_or_default()
    }

    /// Checks and adds topics for connection `id` of `openid`: the caller's own orders and
    /// posts, an order they own, a tenant they belong to. Returns the topics added and those
    /// refused.
    ///
    /// # Errors
    /// The store's (nothing added for the topic being checked).
    pub async fn subscribe(
        &self,
        id: u64,
        openid: &str,
        names: &[String],
    ) -> Result<(Vec<Topic>, Vec<Refusal>), StoreError> {
        let mut added = Vec::new();
        let mut refused = Vec::new();
        for name in names {
            let topic = match Topic::parse(name) {
                Ok(t) => t,
                Err(message) => {
                    refused.push(Refusal {
                        topic: name.clone(),
                        code: "BAD_REQUEST",
                        message,
                    });
                    continue;
                }
            };
            let held = self.topics(id);
            if held.contains(&topic) {
                added.push(topic);
                continue;
            }
            if held.len() >= MAX_TOPICS {
                refused.push(Refusal {
                    topic: name.clone(),
                    code: "TOO_MANY_TOPICS",
                    message: format!("at most {MAX_TOPICS} topics per connection"),
                });
                continue;
            }
            if !self.allowed(openid, &topic).await? {
                refused.push(forbidden(name));
                continue;
            }
            if let Some(conn) = self.lock().conns.get_mut(&id) {
                conn.topics.insert(topic.clone());
            }
            // Checked again once the topic is in place: a removal between the check and the
            // insert deleted the membership before publishing its event, so one of the two
            // sees it.
            if matches!(topic, Topic::Tenant(_)) && !self.allowed(openid, &topic).await? {
                if let Some(conn) = self.lock().conns.get_mut(&id) {
                    conn.topics.remove(&topic);
                }
                refused.push(forbidden(name));
                continue;
            }
            added.push(topic);
        }
        self.nudge();
        Ok((added, refused))
    }

    /// Removes topics from connection `id`.
    pub fn unsubscribe(&self, id: u64, names: &[String]) {
        if let Some(conn) = self.lock().conns.get_mut(&id) {
            for name in names {
                if let Ok(topic) = Topic::parse(name) {
                    conn.topics.remove(&topic);
                }
            }
        }
    }

    async fn allowed(&self, openid: &str, topic: &Topic) -> Result<bool, StoreError> {
        Ok(match topic {
            Topic::Orders | Topic::Posts => true,
            Topic::Order(order) => {
                self.count_read();
                let doc = self.store.get(ORDERS, order).await?;
                // The buyer is stored as `openid` (`commerce::model::OrderDoc::owner`).
                doc.as_ref()
                    .and_then(|d| d.get("openid"))
                    .and_then(Value::as_str)
                    == Some(openid)
            }
            Topic::Tenant(tenant) => {
                self.count_read();
                self.tenancy
                    .membership(tenant, openid)
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))?
                    .is_some()
            }
        })
    }

    /// Hands each connection the events of `page` its topics match, in order; drops the
    /// connections whose queue is full.
    pub fn fan_out(&self, page: &[Arc<Event>]) {
        let mut reg = self.lock();
        let mut slow = Vec::new();
        let mut delivered = 0u64;
        for (id, conn) in &mut reg.conns {
            if conn.topics.is_empty() {
                continue;
            }
            let mut items = Vec::new();
            for event in page {
                if conn.topics.iter().any(|t| t.matches(&conn.openid, event)) {
                    items.push(Item::Event(event.clone()));
                    if let Some(tenant) = removed_from(event, &conn.openid) {
                        let topic = Topic::Tenant(tenant.to_owned());
                        if conn.topics.remove(&topic) {
                            items.push(Item::Revoked(tenant.to_owned()));
                        }
                    }
                }
            }
            if items.is_empty() {
                continue;
            }
            delivered += items.len() as u64;
            match conn.tx.try_send(items) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                // The connection is closing.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for id in slow {
            // Dropping the sender closes the queue: the connection sees it and closes.
            reg.conns.remove(&id);
            self.counters.dropped_slow.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .delivered
            .fetch_add(delivered, Ordering::Relaxed);
    }

    /// Tails the stream for ever: start it once per process.
    pub async fn tail(self: Arc<Self>) {
        loop {
            self.count_read();
            match self.events.settle().await {
                Ok(head) => {
                    self.cursor.store(head, Ordering::Release);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "realtime: cannot read the stream head");
                    tokio::time::sleep(self.config.poll_idle).await;
                }
            }
        }
        loop {
            let cursor = self.cursor();
            self.count_read();
            match self.events.after(cursor, self.config.page).await {
                Ok(page) if !page.is_empty() => {
                    let full = page.len() as u64 >= self.config.page;
                    let page: Vec<Arc<Event>> = page.into_iter().map(Arc::new).collect();
                    if let Some(last) = page.last() {
                        self.fan_out(&page);
                        self.cursor.store(last.seq, Ordering::Release);
                    }
                    self.nudge();
                    if full {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "realtime: tail read failed"),
            }
            let wait = if self.is_hot() {
                self.config.poll_fast
            } else {
                self.config.poll_idle
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Counts and the open connections' topics (no openids), for the console.
    pub fn snapshot(&self) -> Value {
        let reg = self.lock();
        let mut list: Vec<(u64, Value)> = reg
            .conns
            .iter()
            .map(|(id, c)| {
                let topics: Vec<String> = c.topics.iter().map(Topic::name).collect();
                (
                    *id,
                    json!({
                        "id": id,
                        "topics": topics,
                        "openSecs": c.opened_at.elapsed().as_secs(),
                        "queued": c.tx.max_capacity() - c.tx.capacity(),
                    }),
                )
            })
            .collect();
        list.sort_by_key(|(id, _)| *id);
        json!({
            "connections": reg.conns.len(),
            "cursor": self.cursor(),
            "opened": self.counters.opened.load(Ordering::Relaxed),
            "delivered": self.counters.delivered.load(Ordering::Relaxed),
            "droppedSlow": self.counters.dropped_slow.load(Ordering::Relaxed),
            "reads": self.reads(),
            "open": list.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        })
    }
}

fn forbidden(name: &str) -> Refusal {
    Refusal {
        topic: name.to_owned(),
        code: "FORBIDDEN",
        message: "not yours: only your own orders and posts and your tenants' topics".into(),
    }
}

/// The tenant `openid` was removed from, if `event` says so.
fn removed_from<'a>(event: &'a Event, openid: &str) -> Option<&'a str> {
    if event.kind != kinds::MEMBER_REMOVED {
        return None;
    }
    let named = event.data.get("openid").and_then(Value::as_str) == Some(openid);
    if named { event.tenant.as_deref() } else { None }
}
