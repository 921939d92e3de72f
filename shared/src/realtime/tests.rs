//! The realtime server over real sockets on loopback, against an in-memory store: what a
//! Mini Program sees. Waits are bounded (a missing event fails the test instead of hanging);
//! nothing here asserts on time.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

use super::*;
use crate::clock::{FixedClock, SharedClock};
use crate::events::{Draft, Events, kinds};
use crate::identity::{
    Authenticator, Caller, CallerSource, SessionClaims, SessionSigner, TenantMembership, TenantRole,
};
use crate::notes::{Edit, Notes};
use crate::store::collections::ORDERS;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, collections};
use crate::tenancy::Tenancy;

const NOW: i64 = 1_800_000_000;
/// Longest any wait for a frame lasts: a missing frame fails instead of hanging.
const GIVE_UP: Duration = Duration::from_secs(5);

struct World {
    store: Arc<dyn Store>,
    events: Events,
    auth: Authenticator,
    addr: std::net::SocketAddr,
    server: Arc<Server>,
    clock: SharedClock,
}

fn fast() -> HubConfig {
    HubConfig {
        poll_fast: Duration::from_millis(10),
        poll_idle: Duration::from_millis(50),
        ..HubConfig::default()
    }
}

async fn world_with(config: HubConfig) -> World {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    crate::store::bootstrap(store.as_ref()).await.unwrap();
    let clock: SharedClock = Arc::new(FixedClock::new(NOW));
    for user in ["ann", "bob", "eve"] {
        store
            .insert(collections::USERS, json!({"_id": user, "openid": user}))
            .await
            .unwrap();
    }
    let auth = Authenticator::new(None, SessionSigner::new(&[7u8; 32], 3600).unwrap())
        .with_clock(clock.clone());
    let events = Events::new(store.clone()).with_clock(clock.clone());
    let hub = Arc::new(Hub::new(
        events.clone(),
        Tenancy::new(store.clone()).with_clock(clock.clone()),
        config,
    ));
    tokio::spawn(hub.clone().tail());
    let server = Arc::new(Server::new(hub, auth.clone(), ConnLimits::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, server.clone()));
    World {
        store,
        events,
        auth,
        addr,
        server,
        clock,
    }
}

async fn world() -> World {
    world_with(fast()).await
}

type Socket = WebSocketStream<TcpStream>;

impl World {
    fn token(&self, openid: &str) -> String {
        self.auth.issue(SessionClaims::new(openid, "wxapp")).0
    }

    async fn try_connect(&self, token: Option<&str>) -> Result<Socket, u16> {
        let mut request = format!("ws://{}/", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        match client_async(request, tcp).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("handshake: {e}"),
        }
    }

    /// A socket of `openid`, past its welcome.
    async fn connect(&self, openid: &str) -> Socket {
        let mut socket = self.try_connect(Some(&self.token(openid))).await.unwrap();
        assert_eq!(next(&mut socket).await["type"], "welcome");
        socket
    }

    fn caller(&self, openid: &str, tenant: &str, role: TenantRole) -> Caller {
        Caller {
            openid: openid.into(),
            appid: "wxapp".into(),
            unionid: None,
            tenant: Some(TenantMembership {
                id: tenant.into(),
                role,
            }),
            plan: None,
            admin: false,
            source: CallerSource::Session,
        }
    }

    fn tenancy(&self) -> Tenancy {
        Tenancy::new(self.store.clone()).with_clock(self.clock.clone())
    }

    async fn paid(&self, order: &str, owner: &str) {
        self.events
            .publish(
                Draft::new(kinds::ORDER_PAID, format!("order.paid:{order}"))
                    .for_user(owner)
                    .order(order)
                    .data(json!({"orderId": order, "status": "paid"})),
            )
            .await
            .unwrap();
    }
}

/// The next text frame (pings skipped), as JSON.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(GIVE_UP, socket.next())
            .await
            .expect("a frame within the wait")
            .expect("socket open")
            .expect("frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

async fn subscribe(socket: &mut Socket, topics: &[&str], after: Option<i64>) -> Value {
    let mut msg = json!({"op": "subscribe", "topics": topics});
    if let Some(after) = after {
        msg["after"] = json!(after);
    }
    send(socket, msg).await;
    let reply = next(socket).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply
}

/// Events received until a `pong` answers a ping sent now: everything the server had queued
/// for this socket before the ping.
async fn drain(socket: &mut Socket) -> Vec<Value> {
    send(socket, json!({"op": "ping"})).await;
    let mut out = Vec::new();
    loop {
        let frame = next(socket).await;
        match frame["type"].as_str() {
            Some("pong") => return out,
            Some("events") => out.extend(frame["events"].as_array().unwrap().iter().cloned()),
            _ => out.push(frame),
        }
    }
}

/// Frames until one holds an event of `kind`; every event seen, in order.
async fn until(socket: &mut Socket, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let frame = next(socket).await;
        if frame["type"] == "events" {
            let events = frame["events"].as_array().unwrap();
            seen.extend(events.iter().cloned());
            if events.iter().any(|e| e["type"] == kind) {
                return seen;
            }
        } else {
            seen.push(frame);
        }
    }
}

/// Reads until the server's close frame: its code (`None` if the socket ends without one).
async fn close_code(socket: &mut Socket) -> Option<u16> {
    tokio::time::timeout(GIVE_UP, async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Close(Some(frame)) = frame {
                return Some(u16::from(frame.code));
            }
        }
        None
    })
    .await
    .expect("the server closes within the wait")
}

/// Waits until the hub has fanned out everything stored (so a later `drain` sees all of it).
async fn settled(w: &World) {
    // Every event published so far numbered (the hub may not have numbered the last ones
    // yet: `head` alone would return early and leave them undelivered), then delivered.
    let head = w.events.settle().await.unwrap();
    tokio::time::timeout(GIVE_UP, async {
        while w.server.hub().cursor() < head {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the tail catches up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_session_no_socket() {
    let w = world().await;
    assert_eq!(w.try_connect(None).await.err(), Some(401));
    assert_eq!(
        w.try_connect(Some("v1.forged.token")).await.err(),
        Some(401)
    );
    let expired = w.token("ann");
    let later = Authenticator::new(None, SessionSigner::new(&[7u8; 32], 3600).unwrap())
        .with_clock(Arc::new(FixedClock::new(NOW + 7200)));
    let late = Server::new(w.server.hub().clone(), later, ConnLimits::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, Arc::new(late)));
    let other = World { addr, ..w };
    assert_eq!(other.try_connect(Some(&expired)).await.err(), Some(401));
    // Plain HTTP is told to upgrade.
    let mut tcp = TcpStream::connect(other.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut tcp,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut reply = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut reply)
        .await
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 426"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_socket_receives_order_paid_once() {
    let w = world().await;
    w.store
        .insert(
            ORDERS,
            json!({"_id": "o1", "openid": "ann", "status": "created"}),
        )
        .await
        .unwrap();
    let mut checkout = w.connect("ann").await;
    let reply = subscribe(
        &mut checkout,
        &["order:o1"],
        Some(w.events.head().await.unwrap()),
    )
    .await;
    assert_eq!(reply["topics"], json!(["order:o1"]));
    // The notification and its retries (and reconcile) publish the same fact.
    for _ in 0..3 {
        w.paid("o1", "ann").await;
    }
    w.paid("o2", "ann").await;
    let seen = until(&mut checkout, kinds::ORDER_PAID).await;
    settled(&w).await;
    let mut all = seen;
    all.extend(drain(&mut checkout).await);
    let paid: Vec<_> = all.iter().filter(|e| e["type"] == "order.paid").collect();
    assert_eq!(paid.len(), 1, "{all:?}");
    assert_eq!(paid[0]["orderId"], "o1");
    assert_eq!(paid[0]["data"]["status"], "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_subscription_to_another_users_order_is_refused() {
    let w = world().await;
    w.store
        .insert(
            ORDERS,
            json!({"_id": "o1", "openid": "ann", "status": "created"}),
        )
        .await
        .unwrap();
    let mut eve = w.connect("eve").await;
    let reply = subscribe(
        &mut eve,
        &["order:o1", "order:nope", "orders", "bad topic"],
        None,
    )
    .await;
    assert_eq!(reply["topics"], json!(["orders"]));
    let refused: Vec<(&str, &str)> = reply["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["topic"].as_str().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            ("order:o1", "FORBIDDEN"),
            ("order:nope", "FORBIDDEN"),
            ("bad topic", "BAD_REQUEST")
        ]
    );
    // Ann's payment reaches neither eve's `orders` nor anything else of hers.
    w.paid("o1", "ann").await;
    settled(&w).await;
    assert!(drain(&mut eve).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_drop_the_missed_events_arrive_once_in_order() {
    let w = world().await;
    let mut socket = w.connect("ann").await;
    subscribe(&mut socket, &["orders"], Some(0)).await;
    for i in 1..=3 {
        w.paid(&format!("o{i}"), "ann").await;
    }
    let seen = until(&mut socket, kinds::ORDER_PAID).await;
    settled(&w).await;
    let mut before: Vec<Value> = seen;
    before.extend(drain(&mut socket).await);
    assert_eq!(before.len(), 3);
    let last = before.last().unwrap()["seq"].as_i64().unwrap();
    // The socket drops; meanwhile more happens (some of it not for ann).
    drop(socket);
    for i in 4..=6 {
        w.paid(&format!("o{i}"), "ann").await;
        w.paid(&format!("x{i}"), "bob").await;
    }
    let mut socket = w.connect("ann").await;
    subscribe(&mut socket, &["orders"], Some(last)).await;
    w.paid("o7", "ann").await;
    let mut after = until(&mut socket, kinds::ORDER_PAID).await;
    settled(&w).await;
    after.extend(drain(&mut socket).await);
    while !after.iter().any(|e| e["orderId"] == "o7") {
        after.extend(until(&mut socket, kinds::ORDER_PAID).await);
    }
    let orders: Vec<&str> = after
        .iter()
        .map(|e| e["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(orders, ["o4", "o5", "o6", "o7"], "{after:?}");
    let seqs: Vec<i64> = after.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]) && seqs[0] > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_receiving_the_tenants_events() {
    let w = world().await;
    let tenancy = w.tenancy();
    let (tenant, _) = tenancy.create("ann", "Team").await.unwrap();
    let ann = w.caller("ann", &tenant.id, TenantRole::Owner);
    tenancy
        .invite(&ann, "bob", TenantRole::Member)
        .await
        .unwrap();
    let bob = w.caller("bob", &tenant.id, TenantRole::Member);
    let topic = format!("tenant:{}", tenant.id);
    let mut bob_socket = w.connect("bob").await;
    let mut ann_socket = w.connect("ann").await;
    subscribe(&mut bob_socket, &[&topic], None).await;
    subscribe(&mut ann_socket, &[&topic], None).await;
    // Eve is no member: refused.
    let mut eve = w.connect("eve").await;
    let reply = subscribe(&mut eve, &[&topic], None).await;
    assert_eq!(reply["refused"][0]["code"], "FORBIDDEN");

    let notes = Notes::new(w.store.clone(), w.clock.clone());
    assert!(matches!(
        notes.edit(&ann, 0, "v1").await.unwrap(),
        Edit::Saved(_)
    ));
    let seen = until(&mut bob_socket, kinds::NOTES_CHANGED).await;
    assert_eq!(seen.last().unwrap()["data"]["text"], "v1");

    assert!(tenancy.remove(&ann, "bob").await.unwrap());
    let seen = until(&mut bob_socket, kinds::MEMBER_REMOVED).await;
    assert_eq!(seen.last().unwrap()["data"]["openid"], "bob");
    let revoked = next(&mut bob_socket).await;
    assert_eq!(
        revoked,
        json!({"type": "revoked", "topic": topic, "code": "FORBIDDEN"})
    );
    // Bob's token still names the tenant; the store says otherwise.
    assert!(notes.edit(&bob, 1, "bob's").await.is_err());
    assert!(matches!(
        notes.edit(&ann, 1, "v2").await.unwrap(),
        Edit::Saved(_)
    ));
    // Ann's page hears v1 (not read yet) and then v2.
    let mut ann_seen = until(&mut ann_socket, kinds::NOTES_CHANGED).await;
    if ann_seen.last().unwrap()["data"]["text"] == "v1" {
        ann_seen = until(&mut ann_socket, kinds::NOTES_CHANGED).await;
    }
    assert_eq!(ann_seen.last().unwrap()["data"]["text"], "v2");
    settled(&w).await;
    assert!(
        drain(&mut bob_socket).await.is_empty(),
        "nothing after the removal"
    );
    // And he cannot subscribe again.
    let reply = subscribe(&mut bob_socket, &[&topic], None).await;
    assert_eq!(reply["refused"][0]["code"], "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_edit_the_same_note_and_every_open_page_sees_the_winner() {
    let w = world().await;
    let tenancy = w.tenancy();
    let (tenant, _) = tenancy.create("ann", "Team").await.unwrap();
    let ann = w.caller("ann", &tenant.id, TenantRole::Owner);
    tenancy
        .invite(&ann, "bob", TenantRole::Member)
        .await
        .unwrap();
    let bob = w.caller("bob", &tenant.id, TenantRole::Member);
    let topic = format!("tenant:{}", tenant.id);
    let mut pages = Vec::new();
    for who in ["ann", "bob"] {
        let mut s = w.connect(who).await;
        subscribe(&mut s, &[&topic], None).await;
        pages.push(s);
    }
    let notes = Notes::new(w.store.clone(), w.clock.clone());
    let (a, b) = tokio::join!(notes.edit(&ann, 0, "ann's"), notes.edit(&bob, 0, "bob's"));
    let (winner, loser) = match (a.unwrap(), b.unwrap()) {
        (Edit::Saved(won), Edit::Conflict(current))
        | (Edit::Conflict(current), Edit::Saved(won)) => (won, current),
        other => panic!("exactly one wins: {other:?}"),
    };
    assert_eq!(loser, winner, "the conflict returns the current version");
    for page in &mut pages {
        let seen = until(page, kinds::NOTES_CHANGED).await;
        assert_eq!(seen.last().unwrap()["data"]["text"], winner.text);
        assert_eq!(seen.last().unwrap()["data"]["version"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_not_buffered() {
    let w = world_with(HubConfig {
        queue: 2,
        page: 1,
        ..fast()
    })
    .await;
    let mut socket = w.connect("ann").await;
    subscribe(&mut socket, &["orders"], None).await;
    let hub = w.server.hub().clone();
    assert_eq!(hub.connections(), 1);
    // Fan out directly (no socket reads): the queue holds 2 messages, the third drops it.
    let event = |seq| {
        Arc::new(crate::events::Event {
            seq,
            kind: kinds::ORDER_PAID.into(),
            openid: Some("ann".into()),
            tenant: None,
            order_id: Some(format!("o{seq}")),
            // Large enough that the loopback socket's buffers fill and the writes stall.
            data: json!({"pad": "x".repeat(16 * 1024)}),
            at: NOW,
        })
    };
    // A burst far larger than the queue, faster than any socket drains it.
    for seq in 1_000..1_400 {
        hub.fan_out(&[event(seq)]);
    }
    assert_eq!(hub.snapshot()["droppedSlow"], 1);
    assert_eq!(hub.connections(), 0);
    // The client sees what was queued, then a close asking it to come back.
    assert_eq!(close_code(&mut socket).await, Some(1013));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_topics_and_message_rate() {
    let w = world().await;
    let mut socket = w.connect("ann").await;
    let many: Vec<String> = (0..MAX_TOPICS + 2).map(|i| format!("order:x{i}")).collect();
    for name in &many {
        w.store
            .insert(
                ORDERS,
                json!({"_id": name.trim_start_matches("order:"), "openid": "ann"}),
            )
            .await
            .unwrap();
    }
    let refs: Vec<&str> = many.iter().map(String::as_str).take(MAX_TOPICS).collect();
    let reply = subscribe(&mut socket, &refs, None).await;
    assert_eq!(reply["topics"].as_array().unwrap().len(), MAX_TOPICS);
    let reply = subscribe(&mut socket, &[&many[MAX_TOPICS]], None).await;
    assert_eq!(reply["refused"][0]["code"], "TOO_MANY_TOPICS");
    // A flood of messages closes the socket with 1008.
    for _ in 0..40 {
        if socket
            .send(Message::text(r#"{"op":"ping"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut socket).await, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_older_than_the_retention_asks_for_a_resync() {
    let w = world().await;
    for i in 1..=3 {
        w.paid(&format!("o{i}"), "ann").await;
    }
    // Numbered (as the tail does), then the first two expire.
    assert_eq!(w.events.settle().await.unwrap(), 3);
    w.store
        .delete_many(collections::EVENTS, &crate::store::Filter::lt("seq", 3))
        .await
        .unwrap();
    let mut socket = w.connect("ann").await;
    subscribe(&mut socket, &["orders"], Some(0)).await;
    let resync = next(&mut socket).await;
    assert_eq!(resync, json!({"type": "resync", "oldest": 3}));
    let events = next(&mut socket).await;
    assert_eq!(events["events"][0]["orderId"], "o3");
}
