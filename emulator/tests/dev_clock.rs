//! The dev clock reaches every component: after "Clock +1 day", createOrder's WeChat Pay
//! client signs on the same clock the WeChat Pay stand-in checks, so buying still works and
//! the order is paid (it used to fail with `PAYMENT_PROVIDER_ERROR`). Needs the function
//! binaries (`cargo build --workspace --bins`).

use std::time::{Duration, Instant};

use serde_json::json;
use wemint_emulator::demo::Client;
use wemint_emulator::suite::{Suite, SuiteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_physical_good_is_bought_and_paid_after_the_dev_clock_moves_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    let suite = Suite::start(options).await.expect("suite starts");
    suite.advance_clock(86_400).await.expect("clock moves");
    let client = Client::new(&suite.base_url()).unwrap();

    let (token, _) = client.login("alice").await.expect("login");
    let created = client
        .call("alice", Some(&token), "createOrder", json!({
            "action": "create", "clientRequestId": "dev-clock-1",
            "items": [{"sku": "mug-ceramic-350", "quantity": 1}],
            "address": {"name": "张三", "phone": "13800000000", "province": "广东省", "city": "深圳市", "district": "南山区", "detail": "科技园 1 号"}
        }))
        .await
        .expect("createOrder succeeds on the moved clock");
    assert_eq!(created["payment"]["channel"], "wxpay", "{created}");
    let order_id = created["order"]["id"].as_str().unwrap().to_owned();

    let res = reqwest::Client::new()
        .post(format!("{}/dev/requestPayment", suite.base_url()))
        .header("x-wemint-dev-user", "alice")
        .json(&created["payment"]["params"])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = client
            .call(
                "alice",
                Some(&token),
                "createOrder",
                json!({"action": "get", "orderId": order_id}),
            )
            .await
            .unwrap();
        let status = got["order"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if matches!(status.as_str(), "paid" | "fulfilled") {
            // Paid on the dev clock, a day ahead of the system time.
            let paid_at = got["order"]["paidAt"].as_i64().unwrap();
            let real = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!(paid_at > real + 86_000, "{got}");
            break;
        }
        assert!(Instant::now() < deadline, "not paid: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    suite.shutdown().await;
}
