//! The suite with the real function binaries (build them first: `cargo build -p login
//! -p create-order -p pay-notify -p gated-content -p ugc-upload -p wx-push -p reconcile`; they are found
//! next to the test binary's target directory, or in `WEMINT_BIN_DIR`).
//!
//! Killing payNotify in the middle of a delivery: WeChat Pay's retry reaches a restarted
//! instance, and the order ends paid exactly once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, collections};
use wemint_emulator::deliveries::DELIVERIES;
use wemint_emulator::demo::Client;
use wemint_emulator::suite::{Suite, SuiteOptions};

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid} failed");
}

async fn delivery(suite: &Suite, out_trade_no: &str) -> Option<Value> {
    suite
        .store
        .find(
            DELIVERIES,
            &Filter::eq("ref", out_trade_no).and(Filter::eq("kind", "payment")),
            &FindOptions::new(),
        )
        .await
        .unwrap()
        .pop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_pay_notify_mid_delivery_retries_and_the_order_is_paid_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    options.retry_factor = 0.01; // 15 s → 150 ms
    let suite = Suite::start(options).await.expect("suite starts");
    let client = Client::new(&suite.base_url()).unwrap();

    let (token, _) = client.login("alice").await.expect("login");
    let created = client
        .call("alice", Some(&token), "createOrder", json!({
            "action": "create", "clientRequestId": "kill-test-1",
            "items": [{"sku": "notebook-a5-dot", "quantity": 1}],
            "address": {"name": "李四", "phone": "13900000000", "province": "北京市", "city": "北京市", "district": "海淀区", "detail": "中关村 2 号"}
        }))
        .await
        .expect("order created");
    let order_id = created["order"]["id"].as_str().unwrap().to_owned();
    let out_trade_no = created["order"]["outTradeNo"].as_str().unwrap().to_owned();

    // Start payNotify's instance (any HTTP-access request does), then freeze it.
    reqwest::get(format!("{}/payNotify", suite.base_url()))
        .await
        .unwrap();
    let pid = suite
        .functions
        .pid("payNotify")
        .await
        .expect("payNotify is running");
    signal(pid, "-STOP");

    // Pay: the notification goes out and reaches the frozen instance; kill it mid-delivery.
    let (status, reply) = {
        let res = reqwest::Client::new()
            .post(format!("{}/dev/requestPayment", suite.base_url()))
            .header("x-wemint-dev-user", "alice")
            .json(&created["payment"]["params"])
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(status, 200, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivery(&suite, &out_trade_no)
        .await
        .is_none_or(|d| d["state"] != "sending")
    {
        assert!(Instant::now() < deadline, "the delivery never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(pid, "-KILL");

    // The stand-in retries; a new instance handles it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let d = delivery(&suite, &out_trade_no).await.unwrap();
        if d["state"] == "delivered" {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after the kill: {d}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts = done["attempts"].as_array().unwrap();
    assert!(
        attempts.len() >= 2,
        "the killed attempt must have failed: {attempts:?}"
    );
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(attempts.last().unwrap()["ok"], true);
    assert_ne!(
        suite.functions.pid("payNotify").await,
        Some(pid),
        "a new instance served the retry"
    );

    // Paid exactly once.
    let get_order = || async {
        client
            .call(
                "alice",
                Some(&token),
                "createOrder",
                json!({"action": "get", "orderId": order_id}),
            )
            .await
            .unwrap()
    };
    let order = get_order().await;
    assert!(
        matches!(
            order["order"]["status"].as_str(),
            Some("paid" | "fulfilled")
        ),
        "{order}"
    );
    let paid_at = order["order"]["paidAt"].clone();
    let events = suite
        .store
        .count(
            collections::PAYMENT_EVENTS,
            &Filter::eq("outTradeNo", out_trade_no.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(events, 1, "one payment event for the order");
    // A duplicate delivery (WeChat may send one) changes nothing.
    let duplicate = wemint_emulator::deliveries::enqueue(
        &suite,
        wemint_emulator::deliveries::DeliveryKind::Payment,
        &out_trade_no,
        None,
        json!({"url": format!("{}/payNotify", suite.base_url()), "eventType": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "originalType": "transaction",
            "resource": wemint_emulator::standins::wechat_pay::transaction(&suite.store.get(wemint_emulator::standins::wechat_pay::PAY_ORDERS, &out_trade_no).await.unwrap().unwrap())}),
        0,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = suite
            .store
            .get(DELIVERIES, &duplicate)
            .await
            .unwrap()
            .unwrap();
        if d["state"] == "delivered" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the duplicate was not acknowledged: {d}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = get_order().await;
    assert_eq!(again["order"]["paidAt"], paid_at);
    suite.shutdown().await;
}
