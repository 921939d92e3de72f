//! The CRM push, export and WeChat datacube end to end (issue 20): the real function binaries
//! (`login`, `createOrder`, `payNotify`, `analytics`) under the suite, its CRM receiver and
//! datacube stand-ins, and the dev clock. Build the binaries first: `cargo build -p login
//! -p create-order -p pay-notify -p reconcile -p analytics`.
//!
//! Prices are from the seed catalog (`emulator/demo/seed.json`): a ceramic mug is 4900 fen,
//! an A5 notebook 2900 fen.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use wemint::store::collections::{CRM_OUTBOX, ORDERS, WECHAT_DATACUBE};
use wemint_emulator::demo::Client;
use wemint_emulator::standins::crm::{DEV_SECRET, deliveries};
use wemint_emulator::standins::faults::{Fault, System};
use wemint_emulator::suite::{Suite, SuiteOptions};

const MUG: (&str, i64) = ("mug-ceramic-350", 4900);
const NOTEBOOK: (&str, i64) = ("notebook-a5-dot", 2900);

async fn dev(suite: &Suite, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", suite.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// Polls `check` (a bounded wait for asynchronous deliveries, not a timing assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// Buys one `sku` as `user` through WeChat Pay and waits until the order is paid.
async fn buy(suite: &Suite, client: &Client, user: &str, token: &str, sku: &str) -> String {
    let created = client
        .call(
            user,
            Some(token),
            "createOrder",
            json!({
                "action": "create", "clientRequestId": format!("crm-{user}-{sku}"),
                "items": [{"sku": sku, "quantity": 1}],
                "address": {"name": "王五", "phone": "13700000000", "province": "上海市",
                            "city": "上海市", "district": "浦东新区", "detail": "世纪大道 1 号"}
            }),
        )
        .await
        .expect("order created");
    let id = created["order"]["id"].as_str().unwrap().to_owned();
    let (status, reply) = client
        .post(
            user,
            "/dev/requestPayment",
            &created["payment"]["params"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    let store = suite.store.clone();
    let order_id = id.clone();
    eventually("order paid", || {
        let store = store.clone();
        let id = order_id.clone();
        async move {
            store
                .get(ORDERS, &id)
                .await
                .unwrap()
                .is_some_and(|o| o.get("paidAt").is_some())
        }
    })
    .await;
    id
}

/// The analytics `every-minute` run (after the dev clock moved past the fold's lag).
async fn minute(suite: &Suite) -> Value {
    dev(suite, "/dev/clock/advance", json!({"secs": 10})).await;
    let run = dev(suite, "/dev/timers/run", json!({"trigger": "every-minute"})).await;
    assert_eq!(run["analytics"]["ok"], true, "{run}");
    run["analytics"]["data"]["crm"].clone()
}

/// Valid deliveries per idempotency key.
async fn delivered(suite: &Suite) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for d in deliveries(suite).await {
        assert_eq!(
            d["valid"], true,
            "every push carries a valid signature: {d}"
        );
        out.entry(d["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(d);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_pushed_once_per_change_signed_retried_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    options.retry_factor = 0.001;
    options.refund_delay_ms = 50;
    options.run_timers = false;
    let suite = Suite::start(options).await.expect("suite starts");
    let client = Client::new(&suite.base_url()).unwrap();
    let openid = |user: &str| suite.keys.openid_for(user);

    // Three customers: two buy, one only looks.
    let (alice, _) = client.login("alice").await.unwrap();
    let (bob, _) = client.login("bob").await.unwrap();
    client.login("carol").await.unwrap();
    let alice_order = buy(&suite, &client, "alice", &alice, MUG.0).await;
    buy(&suite, &client, "bob", &bob, NOTEBOOK.0).await;

    let crm = minute(&suite).await;
    assert_eq!(crm["fold"]["changed"], 3, "{crm}");
    assert_eq!(
        (
            crm["push"]["enqueued"].as_i64(),
            crm["push"]["delivered"].as_i64()
        ),
        (Some(3), Some(3)),
        "{crm}"
    );
    let got = delivered(&suite).await;
    let first_keys: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| format!("{}:1", openid(u)))
        .collect();
    let mut expected = first_keys.clone();
    expected.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), expected);
    let alice_v1 = &got[&first_keys[0]][0]["body"]["customer"];
    assert_eq!(alice_v1["lifetimeValueFen"], MUG.1);
    assert_eq!(alice_v1["orderCount"], 1);
    assert_eq!(
        got[&first_keys[1]][0]["body"]["customer"]["lifetimeValueFen"],
        NOTEBOOK.1
    );
    assert_eq!(
        got[&first_keys[2]][0]["body"]["customer"]["tags"],
        json!([])
    );

    // Nothing changed: nothing pushed.
    let crm = minute(&suite).await;
    assert_eq!(crm["fold"]["changed"], 0, "{crm}");
    assert_eq!(deliveries(&suite).await.len(), 3);

    // Alice's order is refunded (the admin logs in for it: a fourth customer). The CRM is
    // down for the first push of the next run.
    let refund = dev(&suite, "/dev/admin/refund", json!({"orderId": alice_order})).await;
    assert_eq!(refund["ok"], true, "{refund}");
    let store = suite.store.clone();
    let id = alice_order.clone();
    eventually("refund applied", || {
        let store = store.clone();
        let id = id.clone();
        async move { store.get(ORDERS, &id).await.unwrap().unwrap()["refundedFen"] == json!(MUG.1) }
    })
    .await;
    suite
        .faults
        .inject(Fault::next(System::Crm, 1).on("/crm/webhook").status(503));
    let crm = minute(&suite).await;
    assert_eq!(crm["fold"]["changed"], 2, "{crm}");
    assert_eq!(
        (
            crm["push"]["delivered"].as_i64(),
            crm["push"]["failed"].as_i64()
        ),
        (Some(1), Some(1)),
        "{crm}"
    );
    let failed = suite
        .store
        .find(
            CRM_OUTBOX,
            &wemint::store::Filter::eq("status", "pending"),
            &wemint::store::FindOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["lastError"], "http 503");
    // Not due before its backoff (30 s); then delivered.
    let crm = minute(&suite).await;
    assert_eq!(crm["push"]["delivered"], 0, "{crm}");
    dev(&suite, "/dev/clock/advance", json!({"secs": 30})).await;
    let crm = minute(&suite).await;
    assert_eq!(crm["push"]["delivered"], 1, "{crm}");

    let got = delivered(&suite).await;
    let alice_v2 = format!("{}:2", openid("alice"));
    let admin_v1 = format!("{}:1", openid("admin"));
    assert_eq!(got.len(), 5, "{:?}", got.keys().collect::<Vec<_>>());
    for (key, list) in &got {
        assert_eq!(list.len(), 1, "{key} delivered once");
        assert_eq!(list[0]["first"], true);
    }
    let refunded = &got[&alice_v2][0]["body"]["customer"];
    assert_eq!(refunded["refundsFen"], MUG.1);
    assert_eq!(refunded["tags"], json!(["buyer", "refunded"]));
    assert!(got.contains_key(&admin_v1));
    let retried = suite
        .store
        .get(CRM_OUTBOX, failed[0]["_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (retried["status"].as_str(), retried["attempts"].as_i64()),
        (Some("delivered"), Some(2))
    );
    // The signature checks out with the shared secret, independently of the receiver.
    let sample = &got[&alice_v2][0];
    assert!(!sample["body"].to_string().contains(DEV_SECRET));

    // The export: one row per customer, matching the orders and refunds.
    let token = wemint_emulator::dev::admin_token(&suite).await.unwrap();
    let export = client
        .call(
            "admin",
            Some(&token),
            "analytics",
            json!({"action": "crmExport"}),
        )
        .await
        .unwrap();
    assert_eq!(export["rows"], 4, "{export}");
    let csv = export["csv"].as_str().unwrap();
    let row = |user: &str| -> Vec<String> {
        let id = openid(user);
        csv.lines()
            .find(|l| l.starts_with(&format!("{id},")))
            .unwrap_or_else(|| panic!("{user} not in {csv}"))
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    let a = row("alice");
    assert_eq!((&a[4][..], &a[5][..], &a[6][..]), ("1", "4900", "4900"));
    let b = row("bob");
    assert_eq!((&b[4][..], &b[5][..], &b[6][..]), ("1", "2900", "0"));
    assert_eq!(&b[10], "buyer");
    let c = row("carol");
    assert_eq!((&c[4][..], &c[5][..], &c[2][..]), ("0", "0", ""));

    // WeChat's datacube for yesterday, set on the stand-in as WeChat would report it.
    let now = suite.clock.now();
    let yesterday = wemint::finance::china_date(now - 86_400);
    let compact = yesterday.replace('-', "");
    dev(
        &suite,
        "/dev/datacube",
        json!({"date": yesterday,
        "trend": {"ref_date": compact, "session_cnt": 130, "visit_pv": 100, "visit_uv": 60,
                  "visit_uv_new": 10, "stay_time_uv": 35.2, "stay_time_session": 20.0,
                  "visit_depth": 2.1},
        "retention": {"ref_date": compact, "visit_uv_new": [{"key": 0, "value": 10},
                      {"key": 1, "value": 2}], "visit_uv": [{"key": 0, "value": 60}]}}),
    )
    .await;
    let pulled = client
        .call(
            "admin",
            Some(&token),
            "analytics",
            json!({"action": "wechatPull"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            pulled["trend"].as_str(),
            pulled["retention"].as_str(),
            pulled["portrait"].as_str()
        ),
        (Some("ok"), Some("ok"), Some("ok")),
        "{pulled}"
    );
    let stored = suite
        .store
        .get(WECHAT_DATACUBE, &yesterday)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["trend"]["visits"], 100);
    assert_eq!(
        stored["portrait"]["activeUsers"]["province"][0]["name"],
        "广东省"
    );
    let entries = wemint::crm::wechat_entries(suite.store.as_ref(), &yesterday, &yesterday)
        .await
        .unwrap();
    assert_eq!(
        entries,
        [
            json!({"date": yesterday, "visits": 100, "visitors": 60, "newVisitors": 10,
                "stayTimeUv": 35.2, "retention": {"d1": 0.2}})
        ]
    );
    // The admin dashboard shows them next to the aggregates.
    let dashboard = client
        .call(
            "admin",
            Some(&token),
            "analytics",
            json!({"action": "dashboard", "days": 7}),
        )
        .await
        .unwrap();
    assert_eq!(dashboard["wechat"], json!(entries), "{dashboard}");
    // WeChat down: a clear error, nothing changed.
    suite.faults.inject(
        Fault::next(System::WechatApi, 9)
            .on("/datacube/")
            .errcode(-1, "system error"),
    );
    let down = client
        .call(
            "admin",
            Some(&token),
            "analytics",
            json!({"action": "wechatPull"}),
        )
        .await
        .unwrap_err();
    assert!(down.contains("DATACUBE_UNAVAILABLE"), "{down}");
    suite.faults.clear();
    assert_eq!(
        suite
            .store
            .get(WECHAT_DATACUBE, &yesterday)
            .await
            .unwrap()
            .unwrap()["trend"],
        stored["trend"]
    );
}
