//! Analytics end to end (issue 20), through the suite and the real function binaries (build
//! them first: `cargo build --workspace --bins`): three shoppers' scripted sessions give the
//! exact funnel and revenue, paid through WeChat Pay's stand-in and counted from backend facts
//! (never from the client's `payment_result`); a refund moves the day's revenue; bad input
//! (unknown events, an oversized batch, wrong types, a flood) is dropped with counted reasons,
//! changes nothing else and is never an error for a signed-in caller; `/dev/analytics` serves
//! the dashboard.

use std::time::Duration;

use serde_json::{Value, json};
use wemint::store::Filter;
use wemint::store::collections::{ANALYTICS_EVENTS, ORDERS};
use wemint_emulator::demo::Client;
use wemint_emulator::demo_analytics::{buy, events, refund, track};
use wemint_emulator::suite::{Suite, SuiteOptions};

struct World {
    suite: std::sync::Arc<Suite>,
    client: Client,
    admin: String,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SuiteOptions::new(dir.path().join(".wemint"));
        options.port = 0;
        options.retry_factor = 0.01;
        options.run_timers = false;
        let suite = Suite::start(options).await.expect("suite starts");
        let client = Client::new(&suite.base_url()).unwrap();
        client.login("admin").await.expect("admin logs in");
        let (_, promoted) = client
            .post("admin", "/dev/admin/promote", &json!({}), None)
            .await
            .unwrap();
        assert_eq!(promoted["ok"], true, "{promoted}");
        let (admin, _) = client.login("admin").await.unwrap();
        World {
            suite,
            client,
            admin,
            _dir: dir,
        }
    }

    async fn admin(&self, data: Value) -> Value {
        self.client
            .call("admin", Some(&self.admin), "analytics", data)
            .await
            .unwrap_or_else(|e| panic!("analytics as admin: {e}"))
    }

    /// Aggregates today and returns today's dashboard row and the whole dashboard.
    async fn today(&self) -> (Value, Value) {
        let board = self.admin(json!({"action": "dashboard", "days": 1})).await;
        let today = board["to"].clone();
        let run = self
            .admin(json!({"action": "aggregateRun", "date": today}))
            .await;
        assert_eq!(run["date"], today, "{run}");
        let board = self.admin(json!({"action": "dashboard", "days": 1})).await;
        (board["days"][0].clone(), board)
    }

    async fn count(&self, collection: &str) -> u64 {
        self.suite
            .store
            .count(collection, &Filter::all_of([]))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shoppers_give_the_exact_funnel_and_a_refund_moves_the_revenue() {
    let w = World::start().await;
    let c = &w.client;
    let mut tokens = Vec::new();
    for who in ["alice", "bob", "carol"] {
        tokens.push(c.login(who).await.unwrap().0);
    }
    let view = |sku: &str| ("product_view", json!({"sku": sku}));
    let cart = |sku: &str| ("add_to_cart", json!({"sku": sku, "qty": 1}));
    let checkout = |sku: &str| ("checkout_start", json!({"skus": [sku], "channel": "wxpay"}));
    // alice: views the mug, adds it, checks out, pays.
    let a = track(
        c,
        "alice",
        &tokens[0],
        events(&[
            (
                "page_view",
                json!({"page": "pages/index/index", "durationMs": 3000}),
            ),
            view("mug-ceramic-350"),
            cart("mug-ceramic-350"),
            checkout("mug-ceramic-350"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(a, json!({"accepted": 4, "dropped": {}}));
    // bob: looks at both, carts the notebook, leaves.
    let b = track(
        c,
        "bob",
        &tokens[1],
        events(&[
            view("mug-ceramic-350"),
            view("notebook-a5-dot"),
            cart("notebook-a5-dot"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(b["accepted"], 3);
    // carol: the notebook to the end, a paywall on the way; she claims a payment that never
    // happened (the client's payment_result is behaviour only).
    let cl = track(
        c,
        "carol",
        &tokens[2],
        events(&[
            view("notebook-a5-dot"),
            cart("notebook-a5-dot"),
            checkout("notebook-a5-dot"),
            ("paywall_view", json!({"contentId": "pricing-playbook"})),
            (
                "payment_result",
                json!({"orderId": "fake", "ok": true, "channel": "xpay"}),
            ),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(cl["accepted"], 5);
    let mug = buy(c, "alice", &tokens[0], "mug-ceramic-350", 1)
        .await
        .unwrap();
    let notebooks = buy(c, "carol", &tokens[2], "notebook-a5-dot", 2)
        .await
        .unwrap();
    assert_eq!(mug["totalFen"], 4900);
    assert_eq!(notebooks["totalFen"], 5800);

    // The minute timer copies the facts from the event stream.
    let (status, fired) = c
        .post(
            "admin",
            "/dev/timers/run",
            &json!({"trigger": "every-minute"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{fired}");
    assert_eq!(fired["analytics"]["ok"], true, "{fired}");
    assert_eq!(fired["analytics"]["data"]["facts"]["stored"], 2, "{fired}");

    let (day, board) = w.today().await;
    assert_eq!(
        day,
        json!({"date": board["to"], "visitors": 3, "pageViews": 1, "productViews": 4,
            "carts": 3, "checkouts": 2, "paid": 2, "revenue": {"wxpay": 10_700, "xpay": 0},
            "refunds": {"wxpay": 0, "xpay": 0}, "newBuyers": 2, "returningBuyers": 0,
            "paywallViews": 1, "paywallUnlocks": 0, "granted": 0, "shipped": 0,
            "subscriptionsStarted": 0, "subscriptionsRenewed": 0, "subscriptionsLapsed": 0,
            "dropped": {}})
    );
    let row = |sku: &str, ch: Value, v: u64, k: u64, co: u64, p: u64| json!({"sku": sku, "channel": ch, "views": v, "carts": k, "checkouts": co, "paid": p});
    assert_eq!(
        board["funnel"],
        json!([
            row("mug-ceramic-350", Value::Null, 1, 0, 0, 0),
            row("mug-ceramic-350", json!("wxpay"), 1, 1, 1, 1),
            row("notebook-a5-dot", Value::Null, 1, 1, 0, 0),
            row("notebook-a5-dot", json!("wxpay"), 1, 1, 1, 1),
        ])
    );
    assert_eq!(
        board["topProducts"],
        json!([
            {"sku": "notebook-a5-dot", "paid": 1, "revenue": 5800},
            {"sku": "mug-ceramic-350", "paid": 1, "revenue": 4900},
        ])
    );
    assert_eq!(
        board["retention"],
        json!([{"cohort": board["to"], "size": 3, "d1": null, "d7": null, "d30": null}])
    );

    // A refund of ¥10 on carol's order moves today's revenue once aggregated again.
    let buyer = ("carol", tokens[2].as_str());
    refund(c, &w.admin, buyer, notebooks["id"].as_str().unwrap(), 1000)
        .await
        .unwrap();
    let (day, _) = w.today().await;
    assert_eq!(day["revenue"], json!({"wxpay": 9700, "xpay": 0}));
    assert_eq!(day["refunds"], json!({"wxpay": 1000, "xpay": 0}));
    assert_eq!(day["paid"], 2);

    // The console's view is the same dashboard, 30 days.
    let res = reqwest::get(format!("{}/dev/analytics", w.suite.base_url()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let console: Value = res.json().await.unwrap();
    assert_eq!(console["days"].as_array().map(Vec::len), Some(30));
    assert_eq!(console["days"][29], day);
    assert_eq!(console["wechat"], json!([]));
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dropped_with_counted_reasons_and_changes_nothing_else() {
    let w = World::start().await;
    let c = &w.client;
    let (dave, _) = c.login("dave").await.unwrap();
    let raw_before = w.count(ANALYTICS_EVENTS).await;
    let orders_before = w.count(ORDERS).await;

    // Unknown events and wrong types: an answer, not an error; nothing stored.
    let reply = track(
        c,
        "dave",
        &dave,
        json!([
            {"name": "teleport", "props": {}},
            {"name": "add_to_cart", "props": {"sku": "mug-ceramic-350", "qty": "two"}},
            {"name": "checkout_start", "props": {"skus": "mug", "channel": "wxpay"}},
            {"name": "payment_result", "props": {"orderId": "o", "ok": true, "channel": "cash"}},
            42,
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        reply,
        json!({"accepted": 0, "dropped": {"unknown_event": 1, "bad_type": 4}})
    );
    // A body over 64 KB: every event too large.
    let pad = "x".repeat(900);
    let big: Vec<Value> = (0..80)
        .map(|_| json!({"name": "share", "props": {"page": "p", "pad": pad}}))
        .collect();
    let reply = track(c, "dave", &dave, Value::Array(big)).await.unwrap();
    assert_eq!(reply, json!({"accepted": 0, "dropped": {"too_large": 80}}));
    // Props over 1 KB in one event of an otherwise good batch.
    let reply = track(
        c,
        "dave",
        &dave,
        json!([{"name": "share", "props": {"page": "p", "pad": "y".repeat(1100)}}]),
    )
    .await
    .unwrap();
    assert_eq!(reply, json!({"accepted": 0, "dropped": {"too_large": 1}}));
    // A batch of 60: fifty kept, ten over the cap. Wait for a fresh minute first so that the
    // flood below stays within one rate window.
    let into_minute = w.suite.clock.now().rem_euclid(60);
    if into_minute > 40 {
        tokio::time::sleep(Duration::from_secs((61 - into_minute) as u64)).await;
    }
    let share: Vec<Value> = (0..60)
        .map(|i| json!({"name": "share", "props": {"page": format!("p{i}")}}))
        .collect();
    let reply = track(c, "dave", &dave, Value::Array(share.clone()))
        .await
        .unwrap();
    assert_eq!(reply, json!({"accepted": 50, "dropped": {"batch_cap": 10}}));
    // The flood: 120 events per user-minute, the rest dropped.
    let mut accepted = 50;
    let mut limited = 0;
    for _ in 0..3 {
        let reply = track(c, "dave", &dave, Value::Array(share[..50].to_vec()))
            .await
            .unwrap();
        accepted += reply["accepted"].as_u64().unwrap();
        limited += reply["dropped"]["rate_limited"].as_u64().unwrap_or(0);
    }
    assert_eq!((accepted, limited), (120, 80));

    // Only the calls that kept events were stored (three documents), nothing else moved.
    assert_eq!(w.count(ANALYTICS_EVENTS).await, raw_before + 3);
    assert_eq!(w.count(ORDERS).await, orders_before);
    // The day's dropped counts reach the dashboard.
    let (day, _) = w.today().await;
    assert_eq!(
        day["dropped"],
        json!({"unknown_event": 1, "bad_type": 4, "too_large": 81, "batch_cap": 10,
            "rate_limited": 80})
    );
    assert_eq!(day["visitors"], 1);
    assert_eq!(day["paid"], 0);
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_traffic_fills_the_console_dashboard() {
    let w = World::start().await;
    let (status, reply) = w
        .client
        .post("admin", "/dev/analytics/demo", &json!({}), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    let res = reqwest::get(format!("{}/dev/analytics", w.suite.base_url()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let board: Value = res.json().await.unwrap();
    let today = &board["days"][29];
    // Five shoppers, three orders (a mug ¥49, a notebook ¥29, two notebooks ¥58), half of
    // the mug refunded; one malformed event.
    assert_eq!(today["visitors"], 5, "{today}");
    assert_eq!(today["paid"], 3);
    assert_eq!(today["revenue"], json!({"wxpay": 11_150, "xpay": 0}));
    assert_eq!(today["refunds"], json!({"wxpay": 2450, "xpay": 0}));
    assert_eq!(
        (today["carts"].clone(), today["checkouts"].clone()),
        (json!(4), json!(3))
    );
    assert_eq!(today["dropped"], json!({"unknown_event": 1}));
    assert_eq!(
        board["topContent"],
        json!([{"contentId": "pricing-playbook", "views": 1, "unlocks": 1}])
    );
    w.suite.shutdown().await;
}
