use std::sync::Mutex;

use super::webhook::{self, PostResult, Transport};
use super::*;
use crate::clock::{Clock, FixedClock};
use crate::events::{Draft, kinds};
use crate::store::collections::CRM_OUTBOX;
use crate::store::sqlite::SqliteStore;

const T0: i64 = 1_800_000_000;
const SECRET: &str = "0123456789abcdef-crm";

async fn setup() -> (Arc<dyn Store>, Arc<FixedClock>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    crate::store::bootstrap(store.as_ref()).await.unwrap();
    (store, Arc::new(FixedClock::new(T0)))
}

async fn user(store: &dyn Store, openid: &str, unionid: Option<&str>, login: i64) {
    let mut doc = json!({"_id": openid, "openid": openid, "appid": "wxapp", "role": "user",
        "createdAt": login, "lastLoginAt": login});
    if let Some(u) = unionid {
        doc["unionid"] = json!(u);
    }
    store.insert(USERS, doc).await.unwrap();
}

async fn paid_order(store: &dyn Store, id: &str, openid: &str, total: i64, paid_at: i64) {
    store
        .insert(
            ORDERS,
            json!({"_id": id, "outTradeNo": format!("WM{id}"), "openid": openid,
                "clientRequestId": id, "status": "fulfilled", "channel": "wxpay",
                "totalFen": total, "refundedFen": 0, "createdAt": paid_at - 60,
                "paidAt": paid_at}),
        )
        .await
        .unwrap();
}

async fn refund(store: &dyn Store, id: &str, order: &str, openid: &str, amount: i64, at: i64) {
    store
        .insert(
            REFUNDS,
            json!({"_id": id, "orderId": order, "openid": openid, "amountFen": amount,
                "status": "success", "createdAt": at - 10, "attemptedAt": at - 10,
                "settledAt": at}),
        )
        .await
        .unwrap();
}

fn crm(store: &Arc<dyn Store>, clock: &Arc<FixedClock>, webhook: Option<Webhook>) -> Crm {
    Crm::new(store.clone(), clock.clone(), webhook)
}

async fn record(store: &dyn Store, openid: &str) -> Value {
    store.get(CRM_CUSTOMERS, openid).await.unwrap().unwrap()
}

#[tokio::test]
async fn fold_builds_records_from_the_owning_collections_and_repeats_without_change() {
    let (store, clock) = setup().await;
    user(store.as_ref(), "alice", Some("u-alice"), T0 - 500).await;
    user(store.as_ref(), "bob", None, T0 - 400).await;
    paid_order(store.as_ref(), "o1", "alice", 4900, T0 - 300).await;
    paid_order(store.as_ref(), "o2", "alice", 2900, T0 - 200).await;
    refund(store.as_ref(), "r1", "o1", "alice", 4900, T0 - 100).await;
    // Unpaid and closed orders do not count.
    store
        .insert(
            ORDERS,
            json!({"_id": "o3", "outTradeNo": "WMo3", "openid": "bob", "clientRequestId": "o3",
                "status": "closed", "channel": "wxpay", "totalFen": 9900, "createdAt": T0 - 300}),
        )
        .await
        .unwrap();
    let crm = crm(&store, &clock, None);
    let report = crm.fold().await.unwrap();
    assert_eq!(report.changed, 2);
    assert!(!report.more);

    let a = record(store.as_ref(), "alice").await;
    assert_eq!(a["unionid"], "u-alice");
    assert_eq!(a["orderCount"], 2);
    assert_eq!(a["lifetimeValueFen"], 7800);
    assert_eq!(a["refundsFen"], 4900);
    assert_eq!(a["firstOrderAt"], T0 - 300);
    assert_eq!(a["lastOrderAt"], T0 - 200);
    assert_eq!(a["lastSeenAt"], T0 - 200);
    assert_eq!(a["version"], 1);
    assert_eq!(a["dirty"], true);
    assert_eq!(a["tags"], json!(["buyer", "refunded", "repeat_buyer"]));
    let b = record(store.as_ref(), "bob").await;
    assert_eq!(b["orderCount"], 0);
    assert!(b.get("unionid").is_none());

    // Nothing changed: nothing written.
    clock.advance(60);
    assert_eq!(crm.fold().await.unwrap().changed, 0);
    let refold = crm.refold_step(1).await.unwrap();
    assert_eq!((refold.examined, refold.changed, refold.more), (1, 0, true));
    let refold = crm.refold_step(5).await.unwrap();
    assert_eq!(
        (refold.examined, refold.changed, refold.more),
        (1, 0, false)
    );
    assert_eq!(record(store.as_ref(), "alice").await["version"], 1);
}

#[tokio::test]
async fn a_paid_order_seen_through_the_event_stream_or_by_time_moves_the_version_once() {
    let (store, clock) = setup().await;
    user(store.as_ref(), "alice", None, T0 - 500).await;
    let crm = crm(&store, &clock, None);
    crm.fold().await.unwrap();
    assert_eq!(record(store.as_ref(), "alice").await["version"], 1);

    // A paid order and its event: found by both the stream and the time cursor, applied once.
    clock.advance(30);
    paid_order(store.as_ref(), "o1", "alice", 9900, clock.now_unix()).await;
    Events::new(store.clone())
        .with_clock(clock.clone())
        .publish(
            Draft::new(kinds::ORDER_PAID, "order.paid:o1")
                .for_user("alice")
                .order("o1"),
        )
        .await
        .unwrap();
    let r = crm.fold().await.unwrap();
    assert_eq!(r.changed, 1, "the stream sees it at once");
    let a = record(store.as_ref(), "alice").await;
    assert_eq!(
        (a["version"].as_i64(), a["orderCount"].as_i64()),
        (Some(2), Some(1))
    );
    clock.advance(LAG_SECS + 1);
    assert_eq!(
        crm.fold().await.unwrap().changed,
        0,
        "the time cursor: no change"
    );
    assert_eq!(record(store.as_ref(), "alice").await["version"], 2);
}

#[tokio::test]
async fn a_plan_lapsing_and_a_tenant_left_change_the_records() {
    let (store, clock) = setup().await;
    user(store.as_ref(), "alice", None, T0 - 500).await;
    user(store.as_ref(), "carol", None, T0 - 500).await;
    store
        .insert(
            SUBSCRIPTIONS,
            json!({"_id": "alice", "subscriber": "alice", "plan": "pro",
                "periodEndAt": T0 + 3600, "version": 1}),
        )
        .await
        .unwrap();
    store
        .insert(
            SUBSCRIPTIONS,
            json!({"_id": "tenant:t1", "subscriber": "tenant:t1", "plan": "team",
                "periodEndAt": T0 + 7200, "version": 1}),
        )
        .await
        .unwrap();
    store
        .insert(
            TENANT_MEMBERS,
            json!({"_id": "t1:carol", "tenant": "t1", "openid": "carol", "role": "member",
                "joinedAt": T0 - 450}),
        )
        .await
        .unwrap();
    let crm = crm(&store, &clock, None);
    crm.fold().await.unwrap();
    let a = record(store.as_ref(), "alice").await;
    assert_eq!(a["plan"], "pro");
    assert_eq!(a["tags"], json!(["subscriber"]));
    let c = record(store.as_ref(), "carol").await;
    assert_eq!(
        (c["plan"].as_str(), c["tenant"].as_str()),
        (Some("team"), Some("t1"))
    );

    // Alice's period ends: no write anywhere, time passing is the change.
    clock.advance(3600 + LAG_SECS);
    assert_eq!(crm.fold().await.unwrap().changed, 1);
    let a = record(store.as_ref(), "alice").await;
    assert!(a.get("plan").is_none(), "{a}");
    assert_eq!(a["tags"], json!(["lapsed"]));
    assert_eq!(a["version"], 2);

    // The tenant's period ends: its members' records follow.
    clock.advance(3600);
    crm.fold().await.unwrap();
    let c = record(store.as_ref(), "carol").await;
    assert!(c.get("plan").is_none());
    assert_eq!(c["tags"], json!(["lapsed", "team"]));

    // Carol leaves the tenant: the stream's member_removed event brings her record up to date.
    store
        .delete_one(TENANT_MEMBERS, &Filter::id("t1:carol"))
        .await
        .unwrap();
    Events::new(store.clone())
        .with_clock(clock.clone())
        .publish(
            Draft::new(kinds::MEMBER_REMOVED, "left:t1:carol")
                .for_tenant("t1")
                .data(json!({"openid": "carol", "role": "member"})),
        )
        .await
        .unwrap();
    crm.fold().await.unwrap();
    let c = record(store.as_ref(), "carol").await;
    assert!(c.get("tenant").is_none());
    assert_eq!(c["tags"], json!([]));
}

#[tokio::test]
async fn the_fold_pages_through_a_large_history_without_missing_equal_times() {
    let (store, clock) = setup().await;
    // 450 users who all logged in at the same second: the keyset cursor (time, _id) pages.
    for i in 0..450 {
        user(store.as_ref(), &format!("u{i:03}"), None, T0 - 100).await;
    }
    let crm = crm(&store, &clock, None);
    let r = crm.fold().await.unwrap();
    assert_eq!((r.changed, r.more), (SOURCE_PAGE, true));
    // A minute's rounds stop at the budget; the next minutes go on from the cursors.
    let r = crm.fold_rounds(MINUTE_FOLD_ROUNDS).await.unwrap();
    assert_eq!((r.changed, r.more), (MINUTE_FOLD_BUDGET, true));
    let mut total = SOURCE_PAGE + MINUTE_FOLD_BUDGET;
    for _ in 0..10 {
        let r = crm.fold_rounds(MINUTE_FOLD_ROUNDS).await.unwrap();
        total += r.changed;
        if !r.more {
            break;
        }
    }
    assert_eq!(total, 450);
    assert_eq!(store.count(CRM_CUSTOMERS, &Filter::All).await.unwrap(), 450);
}

#[tokio::test]
async fn export_is_one_row_per_customer_matching_orders_and_refunds() {
    let (store, clock) = setup().await;
    user(
        store.as_ref(),
        "alice",
        Some("=cmd|' /C calc'!A0"),
        T0 - 500,
    )
    .await;
    paid_order(store.as_ref(), "o1", "alice", 4900, T0 - 300).await;
    refund(store.as_ref(), "r1", "o1", "alice", 1000, T0 - 100).await;
    user(store.as_ref(), "bob", None, T0 - 400).await;
    let crm = crm(&store, &clock, None);
    let out = crm.export().await.unwrap();
    assert_eq!(out["filename"], "wemint-customers-2027-01-15.csv");
    assert_eq!(out["rows"], 2);
    let csv = out["csv"].as_str().unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    // T0 = 1800000000 = 2027-01-15T08:00:00Z = 16:00:00 in China: T0 - 300 is 15:55:00,
    // T0 - 400 is 15:53:20.
    assert_eq!(
        lines[1],
        "alice,'=cmd|' /C calc'!A0,2027-01-15T15:55:00+08:00,2027-01-15T15:55:00+08:00,1,4900,1000,,,2027-01-15T15:55:00+08:00,buyer;refunded"
    );
    assert_eq!(lines[2], "bob,,,,0,0,0,,,2027-01-15T15:53:20+08:00,");
}

/// One POST as sent: URL, headers, body.
type Sent = (String, Vec<(String, String)>, String);

/// Records what it is sent; answers with the next scripted status (200 when none is left).
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Sent>>,
    script: Mutex<Vec<PostResult>>,
}

#[async_trait::async_trait]
impl Transport for Recorder {
    async fn post(&self, url: &str, headers: &[(&str, String)], body: &str) -> PostResult {
        self.sent.lock().unwrap().push((
            url.to_owned(),
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            body.to_owned(),
        ));
        let mut script = self.script.lock().unwrap();
        if script.is_empty() {
            Ok(200)
        } else {
            script.remove(0)
        }
    }
}

fn hook(recorder: &Arc<Recorder>) -> Webhook {
    Webhook::new(
        WebhookSettings {
            url: "https://crm.example/hook".into(),
            secret: crate::secret::Secret::new(SECRET.into()),
        },
        recorder.clone(),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

#[test]
fn signature_matches_an_independent_hmac() {
    // Python: hmac.new(b"0123456789abcdef-crm", b'1800000000.{"a":1}', hashlib.sha256)
    let expected = "v1=29120292c2861ea39e5256071ad605c4931f49c88e775e84601477027b7ef151";
    assert_eq!(
        webhook::signature(SECRET.as_bytes(), 1_800_000_000, "{\"a\":1}"),
        expected
    );
    assert!(webhook::verify(
        SECRET.as_bytes(),
        1_800_000_000,
        "{\"a\":1}",
        expected
    ));
    assert!(!webhook::verify(
        SECRET.as_bytes(),
        1_800_000_001,
        "{\"a\":1}",
        expected
    ));
    assert!(!webhook::verify(
        b"other",
        1_800_000_000,
        "{\"a\":1}",
        expected
    ));
    assert!(!webhook::verify(
        SECRET.as_bytes(),
        1_800_000_000,
        "{\"a\":1}",
        "v1=zz"
    ));
}

#[test]
fn backoff_doubles_from_30_seconds_up_to_an_hour() {
    let delays: Vec<i64> = (1..=9).map(webhook::backoff_secs).collect();
    assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(webhook::backoff_secs(i64::MAX), 3600);
    assert_eq!(webhook::backoff_secs(0), 30);
}

#[tokio::test]
async fn each_change_is_pushed_once_signed_and_again_after_a_failure() {
    let (store, clock) = setup().await;
    let recorder = Arc::new(Recorder::default());
    let crm = crm(&store, &clock, Some(hook(&recorder)));
    user(store.as_ref(), "alice", None, T0 - 500).await;
    user(store.as_ref(), "bob", None, T0 - 500).await;
    crm.fold().await.unwrap();
    // Bob's first push fails (HTTP 500), Alice's goes through.
    recorder.script.lock().unwrap().extend([Ok(200), Ok(500)]);
    let r = crm.push(100).await.unwrap().unwrap();
    assert_eq!((r.enqueued, r.delivered, r.failed), (2, 1, 1));
    {
        let sent = recorder.sent.lock().unwrap();
        for (url, headers, body) in sent.iter() {
            assert_eq!(url, "https://crm.example/hook");
            let ts: i64 = header(headers, "x-wemint-timestamp").parse().unwrap();
            assert!(webhook::verify(
                SECRET.as_bytes(),
                ts,
                body,
                header(headers, "x-wemint-signature")
            ));
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["idempotencyKey"], header(headers, "idempotency-key"));
            assert_eq!(v["version"], 1);
            assert!(!body.contains(SECRET));
        }
        let keys: Vec<&str> = sent
            .iter()
            .map(|(_, h, _)| header(h, "idempotency-key"))
            .collect();
        assert_eq!(keys, ["alice:1", "bob:1"]);
    }
    let bob = store.get(CRM_OUTBOX, "bob:1").await.unwrap().unwrap();
    assert_eq!(bob["status"], "pending");
    assert_eq!(bob["attempts"], 1);
    assert_eq!(bob["lastError"], "http 500");
    assert_eq!(bob["nextAt"], T0 + 30);

    // Not yet due: nothing sent. Nothing dirty either: nothing enqueued again.
    clock.advance(29);
    let r = crm.push(100).await.unwrap().unwrap();
    assert_eq!((r.enqueued, r.delivered, r.failed), (0, 0, 0));
    clock.advance(1);
    let r = crm.push(100).await.unwrap().unwrap();
    assert_eq!((r.delivered, r.failed), (1, 0));
    let sent = recorder.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    assert_eq!(header(&sent[2].1, "idempotency-key"), "bob:1");
    assert_eq!(sent[2].2, sent[1].2, "the retry sends the same body");
    let bob = store.get(CRM_OUTBOX, "bob:1").await.unwrap().unwrap();
    assert_eq!(
        (bob["status"].as_str(), bob["attempts"].as_i64()),
        (Some("delivered"), Some(2))
    );
    assert!(bob.get("lastError").is_none());

    // A change to Alice: version 2, pushed once.
    paid_order(store.as_ref(), "o1", "alice", 4900, clock.now_unix()).await;
    clock.advance(LAG_SECS + 1);
    crm.minute().await.unwrap();
    crm.minute().await.unwrap();
    let sent = recorder.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 4);
    assert_eq!(header(&sent[3].1, "idempotency-key"), "alice:2");
    let v: Value = serde_json::from_str(&sent[3].2).unwrap();
    assert_eq!(v["customer"]["lifetimeValueFen"], 4900);

    // A week later the delivered entries are purged.
    clock.advance(webhook::KEEP_DELIVERED_SECS + 1);
    assert_eq!(crm.daily().await.unwrap()["purged"], 3);
}

#[tokio::test]
async fn a_crash_between_the_outbox_insert_and_the_dirty_flag_queues_the_version_once() {
    let (store, clock) = setup().await;
    let recorder = Arc::new(Recorder::default());
    let crm = crm(&store, &clock, Some(hook(&recorder)));
    user(store.as_ref(), "alice", None, T0 - 500).await;
    crm.fold().await.unwrap();
    let w = crm.webhook().unwrap();
    assert_eq!(w.enqueue(store.as_ref(), T0).await.unwrap(), 1);
    // The crash: the entry is stored, the record still dirty.
    store
        .update_one(
            CRM_CUSTOMERS,
            &Filter::id("alice"),
            &Update::new().set("dirty", true),
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(w.enqueue(store.as_ref(), T0).await.unwrap(), 0);
    assert_eq!(record(store.as_ref(), "alice").await["dirty"], false);
    assert_eq!(store.count(CRM_OUTBOX, &Filter::All).await.unwrap(), 1);
    // A transport failure is rescheduled like an HTTP one, and the error names no URL.
    recorder
        .script
        .lock()
        .unwrap()
        .push(Err("connection refused".into()));
    let r = crm.push(100).await.unwrap().unwrap();
    assert_eq!(r.failed, 1);
    let e = store.get(CRM_OUTBOX, "alice:1").await.unwrap().unwrap();
    assert_eq!(e["lastError"], "transport: connection refused");
}

#[tokio::test]
async fn without_a_webhook_records_stay_dirty_until_one_is_configured() {
    let (store, clock) = setup().await;
    user(store.as_ref(), "alice", None, T0 - 500).await;
    let plain = crm(&store, &clock, None);
    plain.fold().await.unwrap();
    assert_eq!(plain.push(10).await.unwrap(), None);
    assert_eq!(store.count(CRM_OUTBOX, &Filter::All).await.unwrap(), 0);
    let recorder = Arc::new(Recorder::default());
    let pushing = crm(&store, &clock, Some(hook(&recorder)));
    let r = pushing.push(10).await.unwrap().unwrap();
    assert_eq!((r.enqueued, r.delivered), (1, 1));
}

#[tokio::test]
async fn a_tenant_plan_bought_by_the_owner_reaches_every_member() {
    let (store, clock) = setup().await;
    for (who, role) in [("dan", "owner"), ("eve", "member")] {
        user(store.as_ref(), who, None, T0 - 500).await;
        store
            .insert(
                TENANT_MEMBERS,
                json!({"_id": format!("t2:{who}"), "tenant": "t2", "openid": who, "role": role,
                    "joinedAt": T0 - 450}),
            )
            .await
            .unwrap();
    }
    let crm = crm(&store, &clock, None);
    crm.fold().await.unwrap();
    assert!(record(store.as_ref(), "eve").await.get("plan").is_none());
    // Dan buys the team plan for t2: his order names the tenant; the subscription is t2's.
    clock.advance(60);
    store
        .insert(
            SUBSCRIPTIONS,
            json!({"_id": "tenant:t2", "subscriber": "tenant:t2", "plan": "team",
                "periodEndAt": T0 + 30 * 86_400, "version": 1}),
        )
        .await
        .unwrap();
    store
        .insert(
            ORDERS,
            json!({"_id": "o9", "outTradeNo": "WMo9", "openid": "dan", "clientRequestId": "o9",
                "tenantId": "t2", "status": "fulfilled", "channel": "wxpay", "totalFen": 29_900,
                "createdAt": clock.now_unix() - 30, "paidAt": clock.now_unix() - 20}),
        )
        .await
        .unwrap();
    let r = crm.fold().await.unwrap();
    assert_eq!(r.changed, 2, "{r:?}");
    let eve = record(store.as_ref(), "eve").await;
    assert_eq!(
        (eve["plan"].as_str(), eve["version"].as_i64()),
        (Some("team"), Some(2))
    );
    assert_eq!(eve["tags"], json!(["subscriber", "team"]));
    assert_eq!(
        record(store.as_ref(), "dan").await["lifetimeValueFen"],
        29_900
    );
}

#[test]
fn webhook_settings_need_a_url_and_a_long_enough_secret_and_never_show_it() {
    use crate::config::Config;
    let none = Config::from_vars([("WEMINT_STORE", "sqlite::memory:")]);
    assert!(none.crm_webhook().unwrap().is_none());
    let missing = Config::from_vars([("CRM_WEBHOOK_URL", "https://crm.example/hook")]);
    assert!(
        missing
            .crm_webhook()
            .unwrap_err()
            .to_string()
            .contains("CRM_WEBHOOK_SECRET")
    );
    let short = Config::from_vars([
        ("CRM_WEBHOOK_URL", "https://crm.example/hook"),
        ("CRM_WEBHOOK_SECRET", "short"),
    ]);
    let e = short.crm_webhook().unwrap_err().to_string();
    assert!(e.contains("16 bytes") && !e.contains("short\""), "{e}");
    let ftp = Config::from_vars([
        ("CRM_WEBHOOK_URL", "ftp://crm.example"),
        ("CRM_WEBHOOK_SECRET", SECRET),
    ]);
    assert!(ftp.crm_webhook().is_err());
    let good = Config::from_vars([
        ("CRM_WEBHOOK_URL", "https://crm.example/hook/"),
        ("CRM_WEBHOOK_SECRET", SECRET),
    ]);
    let settings = good.crm_webhook().unwrap().unwrap();
    assert_eq!(settings.url, "https://crm.example/hook");
    assert_eq!(settings.secret.expose(), SECRET);
    assert!(!format!("{settings:?}").contains(SECRET));
}
