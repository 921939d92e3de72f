//! The dev clock end to end, through the suite and the real function binaries (build them
//! first: `cargo build --workspace --bins`): advance the clock by 1 day, then by 31 days; after
//! each step a physical good (WeChat Pay) and a membership (virtual payment) are bought and
//! paid, and both end paid. Around them, everything that depends on time follows the dev
//! clock: reconcile (fired on the dev clock's minutes) closes an order left unpaid and
//! releases its stock; renewal reminders go out when the period end is within the window on
//! the dev clock, and none for a period that ended while the clock jumped; the membership
//! bought before the 31-day jump is past due after it, and the next purchase renews it from
//! its period end.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, collections};
use wemint_emulator::demo::Client;
use wemint_emulator::standins::wechat_api::MESSAGES;
use wemint_emulator::suite::{Suite, SuiteOptions};

const DAY: i64 = 86_400;
const TEMPLATE: &str = "tmpl-renewal-dev-clock";
const MUG: &str = "mug-ceramic-350";

/// Polls `check` every 150 ms until it gives a value, for at most 20 s.
async fn until<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn advance(client: &Client, secs: i64) -> Value {
    let (status, reply) = client
        .post("alice", "/dev/clock/advance", &json!({"secs": secs}), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    reply
}

async fn create(client: &Client, token: &str, items: Value) -> Value {
    let request = format!("dev-clock-{}", wemint::pay::random_string(12));
    client
        .call(
            "alice",
            Some(token),
            "createOrder",
            json!({"action": "create", "clientRequestId": request, "items": items,
                "address": {"name": "张三", "phone": "13800000000", "province": "广东省",
                    "city": "深圳市", "district": "南山区", "detail": "科技园 1 号"}}),
        )
        .await
        .unwrap_or_else(|e| panic!("createOrder.create: {e}"))
}

async fn order_status(client: &Client, token: &str, id: &str) -> String {
    let d = client
        .call(
            "alice",
            Some(token),
            "createOrder",
            json!({"action": "get", "orderId": id}),
        )
        .await
        .unwrap();
    d["order"]["status"].as_str().unwrap_or_default().to_owned()
}

async fn until_paid(client: &Client, token: &str, id: &str) {
    until(&format!("order {id} paid"), || async {
        let status = order_status(client, token, id).await;
        matches!(status.as_str(), "paid" | "fulfilled").then_some(Value::Null)
    })
    .await;
}

/// Buys `sku` and pays with what createOrder returned, as the Mini Program does.
async fn buy_and_pay(client: &Client, token: &str, sku: &str, channel: &str, path: &str) {
    let created = create(client, token, json!([{"sku": sku, "quantity": 1}])).await;
    assert_eq!(created["payment"]["channel"], channel, "{created}");
    let (status, reply) = client
        .post("alice", path, &created["payment"]["params"], None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{sku}: {reply}");
    until_paid(client, token, created["order"]["id"].as_str().unwrap()).await;
}

/// The step after each clock move: a mug (WeChat Pay) and a VIP month (virtual payment).
async fn buy_both(client: &Client, token: &str) {
    buy_and_pay(client, token, MUG, "wxpay", "/dev/requestPayment").await;
    buy_and_pay(
        client,
        token,
        "vip-monthly",
        "xpay",
        "/dev/requestVirtualPayment",
    )
    .await;
}

async fn stock(suite: &Suite) -> i64 {
    let product = suite
        .store
        .get(collections::PRODUCTS, MUG)
        .await
        .unwrap()
        .unwrap();
    product["stock"].as_i64().unwrap()
}

async fn reminders(suite: &Suite) -> Vec<Value> {
    suite
        .store
        .find(
            MESSAGES,
            &Filter::eq("templateId", TEMPLATE),
            &FindOptions::new().sort_asc("sentAt"),
        )
        .await
        .unwrap()
}

async fn membership(client: &Client, token: &str) -> Value {
    client
        .call(
            "alice",
            Some(token),
            "gatedContent",
            json!({"action": "entitlements"}),
        )
        .await
        .unwrap()
}

/// `YYYY-MM-DD HH:MM` in China Standard Time, as the reminder's `time` field shows it.
fn cst(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix + 8 * 3600).unwrap();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Alice accepts the reminder template once more (one credit).
async fn grant(client: &Client, token: &str) -> Value {
    client
        .call(
            "alice",
            Some(token),
            "gatedContent",
            json!({"action": "subscribeGrant", "templateIds": [TEMPLATE]}),
        )
        .await
        .unwrap()
}

async fn run_timers(client: &Client) -> Value {
    let (status, reply) = client
        .post("alice", "/dev/timers/run", &json!({}), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_day_then_31_days_later_both_purchases_are_paid_and_time_follows_the_dev_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    options.extra_env = [
        ("WEMINT_RENEWAL_TEMPLATE_ID", TEMPLATE),
        ("WEMINT_RENEWAL_REMIND_DAYS", "30"),
        (
            "WEMINT_RENEWAL_TEMPLATE_FIELDS",
            "thing1=plan,time2=periodEnd",
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    let suite = Suite::start(options).await.expect("suite starts");
    let client = Client::new(&suite.base_url()).unwrap();
    let (token, login) = client.login("alice").await.expect("login");
    let alice = login["user"]["openid"].as_str().unwrap().to_owned();

    // An order left unpaid holds its stock until it expires (30 minutes).
    let full = stock(&suite).await;
    let abandoned = create(&client, &token, json!([{"sku": MUG, "quantity": 1}])).await;
    let abandoned = abandoned["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(stock(&suite).await, full - 1);

    // --- +1 day ---------------------------------------------------------------------------
    let moved = advance(&client, DAY).await;
    assert_eq!(moved["offsetSecs"], DAY, "{moved}");
    // A day later the session has expired on the dev clock: the Mini Program logs in again.
    let (token, _) = client.login("alice").await.expect("login a day later");
    let bought_at = suite.clock.now();
    buy_both(&client, &token).await;
    // reconcile ran on the dev clock's minutes: the abandoned order expired a day ago, so it
    // is closed and its mug is back on sale (the mug bought since still counts).
    until("reconcile to close the expired order", || async {
        (order_status(&client, &token, &abandoned).await == "closed").then_some(Value::Null)
    })
    .await;
    assert_eq!(stock(&suite).await, full - 1, "only the paid mug is taken");
    let status = suite.functions.status().await;
    assert!(
        status["reconcile"]["invocations"].as_u64() >= Some(1),
        "{status}"
    );

    // The membership runs 30 days from the purchase on the dev clock.
    let m = membership(&client, &token).await;
    assert_eq!(m["subscription"]["plan"], "vip", "{m}");
    assert_eq!(m["subscription"]["state"], "active", "{m}");
    let first_end = m["subscription"]["periodEndAt"]
        .as_i64()
        .expect("period end");
    assert!(
        (first_end - (bought_at + 30 * DAY)).abs() < 120,
        "period end {first_end} is 30 days after the dev-clock purchase {bought_at}: {m}"
    );
    // Its end is within the 30-day window on the dev clock: the reminder goes out.
    let granted = grant(&client, &token).await;
    assert!(
        granted["grants"][0]["credits"].as_i64() >= Some(1),
        "{granted}"
    );
    let fired = run_timers(&client).await;
    assert_eq!(fired["gatedContent"]["ok"], true, "{fired}");
    let sent = until("the first renewal reminder", || async {
        let sent = reminders(&suite).await;
        (sent.len() == 1).then(|| Value::Array(sent))
    })
    .await;
    assert_eq!(sent[0]["touser"], alice.as_str());
    assert_eq!(sent[0]["data"]["time2"]["value"], cst(first_end).as_str());

    // --- +31 days -------------------------------------------------------------------------
    advance(&client, 31 * DAY).await;
    let (token, _) = client.login("alice").await.expect("login 31 days later");
    // The period ended a day ago on the dev clock: past due (3 days), no longer active, and
    // no reminder for a period that ended while the clock jumped.
    let m = membership(&client, &token).await;
    assert_eq!(m["subscription"]["state"], "past_due", "{m}");
    let vip = m["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "membership")
        .cloned()
        .unwrap_or_default();
    assert_eq!(vip["active"], false, "{m}");
    run_timers(&client).await;
    assert_eq!(reminders(&suite).await.len(), 1);

    buy_both(&client, &token).await;
    // Bought while past due: the new period starts at the old end, so no paid day is lost.
    let m = membership(&client, &token).await;
    assert_eq!(m["subscription"]["state"], "active", "{m}");
    let second_end = m["subscription"]["periodEndAt"].as_i64().unwrap();
    assert_eq!(second_end, first_end + 30 * DAY, "{m}");
    // 29 days left on the dev clock: the new period end is reminded once.
    grant(&client, &token).await;
    run_timers(&client).await;
    let sent = until("the second renewal reminder", || async {
        let sent = reminders(&suite).await;
        (sent.len() == 2).then(|| Value::Array(sent))
    })
    .await;
    assert_eq!(sent[1]["data"]["time2"]["value"], cst(second_end).as_str());
    suite.shutdown().await;
}
