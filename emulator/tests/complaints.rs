//! After the sale, end to end with the real function binaries under the suite (build them
//! first: `cargo build --workspace --bins`): consumer complaints (notification → stored →
//! respond → complete before the deadline; a forged notification refused), a virtual payment
//! refund that fails recorded as a failure, and an API v2 refund notification (the
//! independent `req_info` vector in `testdata/vectors/v2_refund_notify.json`) settling its
//! refund.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wemint::store::{Filter, collections};
use wemint_emulator::demo::Client;
use wemint_emulator::suite::{Suite, SuiteOptions};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors");

struct World {
    suite: std::sync::Arc<Suite>,
    client: Client,
    alice: String,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn world(configure: impl FnOnce(&mut SuiteOptions)) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    options.retry_factor = 0.01;
    configure(&mut options);
    let suite = Suite::start(options).await.expect("suite starts");
    let client = Client::new(&suite.base_url()).unwrap();
    let (alice, _) = client.login("alice").await.expect("alice logs in");
    client.login("admin").await.expect("admin logs in");
    let (_, promoted) = client
        .post("admin", "/dev/admin/promote", &json!({}), None)
        .await
        .unwrap();
    assert_eq!(promoted["ok"], true, "{promoted}");
    let (admin, data) = client.login("admin").await.unwrap();
    assert_eq!(data["user"]["role"], "admin");
    World {
        suite,
        client,
        alice,
        admin,
        _dir: dir,
    }
}

async fn poll<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl World {
    async fn as_admin(&self, data: Value) -> Result<Value, String> {
        self.client
            .call("admin", Some(&self.admin), "createOrder", data)
            .await
    }

    async fn order(&self, id: &str) -> Value {
        self.client
            .call(
                "alice",
                Some(&self.alice),
                "createOrder",
                json!({"action": "get", "orderId": id}),
            )
            .await
            .unwrap()["order"]
            .clone()
    }

    /// Buys and pays `items`; returns (order id, out_trade_no) once the order is paid.
    async fn buy(&self, items: Value) -> (String, String) {
        let created = self
            .client
            .call("alice", Some(&self.alice), "createOrder", json!({
                "action": "create", "clientRequestId": format!("after-sale-{}", wemint::pay::random_string(8)),
                "items": items,
                "address": {"name": "张三", "phone": "13800000000", "province": "广东省", "city": "深圳市", "district": "南山区", "detail": "科技园 1 号"}
            }))
            .await
            .expect("order created");
        let id = created["order"]["id"].as_str().unwrap().to_owned();
        let no = created["order"]["outTradeNo"].as_str().unwrap().to_owned();
        let path = if created["payment"]["channel"] == "xpay" {
            "/dev/requestVirtualPayment"
        } else {
            "/dev/requestPayment"
        };
        let (status, reply) = self
            .client
            .post("alice", path, &created["payment"]["params"], None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{reply}");
        poll("the order to be paid", || async {
            let o = self.order(&id).await;
            matches!(o["status"].as_str(), Some("paid" | "fulfilled")).then_some(o)
        })
        .await;
        (id, no)
    }

    /// The buyer complains about order `no` (`channel` wxpay / xpay); returns the complaint id
    /// and the complaint once wemint stored it (from its notification or push).
    async fn complain(&self, channel: &str, no: &str, detail: &str) -> (String, Value) {
        let (status, raised) = self
            .client
            .post(
                "alice",
                "/dev/complaints",
                &json!({"channel": channel, "outTradeNo": no, "detail": detail}),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{raised}");
        let id = raised["data"]["complaint_id"].as_str().unwrap().to_owned();
        let stored = poll("the complaint to be stored", || async {
            let l = self
                .as_admin(json!({"action": "complaintList"}))
                .await
                .ok()?;
            l["complaints"]
                .as_array()?
                .iter()
                .find(|c| c["complaintId"] == json!(id))
                .cloned()
        })
        .await;
        (id, stored)
    }

    async fn refund_doc(&self, refund_no: &str) -> Value {
        self.suite
            .store
            .get(collections::REFUNDS, refund_no)
            .await
            .unwrap()
            .unwrap_or(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_is_stored_from_its_notification_answered_and_completed_before_its_deadline() {
    let w = world(|_| {}).await;
    let (_, no) = w
        .buy(json!([{"sku": "mug-ceramic-350", "quantity": 1}]))
        .await;

    // The buyer complains; WeChat Pay notifies payNotify (signed, encrypted COMPLAINT.CREATE);
    // the complaint is stored from the detail API, its first reply due 24 h after it.
    let (id, listed) = w.complain("wxpay", &no, "杯子有裂纹").await;
    assert_eq!(listed["state"], "PENDING");
    assert_eq!(listed["detail"], "杯子有裂纹");
    assert_eq!(listed["orderRefs"][0]["outTradeNo"], json!(no));
    assert_eq!(
        listed["respondBy"].as_i64().unwrap() - listed["complaintTime"].as_i64().unwrap(),
        24 * 3600
    );
    assert_eq!(listed["awaitingReply"], true);
    assert_eq!(listed["overdue"], false);
    assert!(listed["dueInSecs"].as_i64().unwrap() > 23 * 3600);

    // Not for buyers.
    let refused = w
        .client
        .call(
            "alice",
            Some(&w.alice),
            "createOrder",
            json!({"action": "complaintList"}),
        )
        .await
        .unwrap_err();
    assert!(refused.contains("FORBIDDEN"), "{refused}");

    // Detail with the negotiation history; respond; complete.
    let detail = w
        .as_admin(json!({"action": "complaintGet", "complaintId": id}))
        .await
        .unwrap();
    assert_eq!(
        detail["history"][0]["operate_type"],
        "USER_CREATE_COMPLAINT"
    );
    let answered = w
        .as_admin(json!({"action": "complaintRespond", "complaintId": id,
            "content": "您好，已为您安排换货，请留意物流信息。"}))
        .await
        .unwrap();
    assert_eq!(answered["complaint"]["state"], "PROCESSING");
    assert_eq!(answered["complaint"]["awaitingReply"], false);
    let done = w
        .as_admin(json!({"action": "complaintComplete", "complaintId": id}))
        .await
        .unwrap();
    assert_eq!(done["complaint"]["state"], "PROCESSED");
    assert!(
        done["complaint"]["completedAt"].as_i64().unwrap()
            < done["complaint"]["respondBy"].as_i64().unwrap(),
        "completed before the deadline"
    );
    let history = w
        .as_admin(json!({"action": "complaintGet", "complaintId": id}))
        .await
        .unwrap()["history"]
        .clone();
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["operate_type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "USER_CREATE_COMPLAINT",
            "MERCHANT_RESPONSE",
            "MERCHANT_CONFIRM_COMPLETE"
        ]
    );
    // Processed: nothing more is sent.
    let again = w
        .as_admin(json!({"action": "complaintComplete", "complaintId": id}))
        .await
        .unwrap_err();
    assert!(again.contains("COMPLAINT_CLOSED"), "{again}");
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_complaint_notification_is_refused_and_stores_nothing() {
    use wemint::pay::v3::server::{NotificationSpec, build_notification};
    let w = world(|_| {}).await;
    let now = w.suite.clock.now();
    let resource =
        json!({"complaint_id": "200200000000000000000000001", "action_type": "CREATE_COMPLAINT"});
    let spec = |id: &'static str| NotificationSpec {
        id,
        create_time: "2026-12-04T08:00:00+08:00",
        event_type: "COMPLAINT.CREATE",
        summary: "产生新投诉",
        original_type: "complaint",
        resource_nonce: "0123456789ab",
        timestamp: now,
        nonce: "forged-nonce-0001",
    };
    // Signed by WeChat Pay's key, then tampered with; and signed by a key that is not
    // WeChat Pay's (the merchant's own key pair stands in for an attacker's).
    let genuine = build_notification(
        &spec("EV-forged-1"),
        &resource,
        &w.suite.pay.apiv3,
        &w.suite.pay.signer,
    )
    .unwrap();
    let mut tampered = genuine.body.clone();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let http = reqwest::Client::new();
    let url = format!("{}/payNotify/complaints", w.suite.base_url());
    let post = |body: Vec<u8>, headers: Vec<(String, String)>| {
        let mut req = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let headers: Vec<(String, String)> = genuine
        .headers
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let res = post(tampered, headers.clone()).await.unwrap();
    assert_eq!(res.status().as_u16(), 401, "tampered body");
    let unsigned = post(genuine.body.clone(), Vec::new()).await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401, "no signature");
    let mut wrong_serial = headers.clone();
    for (k, v) in &mut wrong_serial {
        if k.eq_ignore_ascii_case("wechatpay-signature") {
            *v = "c2lnbmF0dXJlIGJ5IHNvbWVib2R5IGVsc2U=".into();
        }
    }
    let forged = post(genuine.body.clone(), wrong_serial).await.unwrap();
    assert_eq!(forged.status().as_u16(), 401, "another signature");
    let stored = w
        .suite
        .store
        .count(collections::COMPLAINTS, &Filter::All)
        .await
        .unwrap();
    let notices = w
        .suite
        .store
        .count(collections::COMPLAINT_NOTICES, &Filter::All)
        .await
        .unwrap();
    assert_eq!((stored, notices), (0, 0), "nothing stored");
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_virtual_payment_refund_is_recorded_as_a_failure_and_a_later_one_succeeds() {
    let w = world(|o| o.refund_delay_ms = 300).await;
    let (id, _) = w.buy(json!([{"sku": "vip-monthly", "quantity": 1}])).await;
    let paid_status = w.order(&id).await["status"].clone();

    let (_, set) = w
        .client
        .post(
            "admin",
            "/dev/xpay/failNextRefund",
            &json!({"count": 1}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(set["failNext"], 1);
    let requested = w
        .as_admin(json!({"action": "refund", "orderId": id, "refundNo": "RFxpayfail01"}))
        .await
        .unwrap();
    // Accepted by virtual payment is not refunded: it waits for the result.
    assert_eq!(requested["refund"]["status"], "processing", "{requested}");
    let failed = poll("the refund to fail", || async {
        let r = w.refund_doc("RFxpayfail01").await;
        (r["status"] == "abnormal").then_some(r)
    })
    .await;
    assert!(
        failed["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("failed")),
        "the failure is recorded: {failed}"
    );
    let order = w.order(&id).await;
    assert_eq!(order["status"], paid_status, "nothing was refunded");
    assert_eq!(order["refundedFen"], 0);

    // A new refund number refunds it; the push settles it once query_order confirms.
    w.as_admin(json!({"action": "refund", "orderId": id, "refundNo": "RFxpayok0001"}))
        .await
        .unwrap();
    poll("the second refund to succeed", || async {
        let r = w.refund_doc("RFxpayok0001").await;
        (r["status"] == "success").then_some(r)
    })
    .await;
    let order = poll("the order to be refunded", || async {
        let o = w.order(&id).await;
        (o["status"] == "refunded").then_some(o)
    })
    .await;
    assert_eq!(order["refundedFen"], order["totalFen"]);
    assert_eq!(w.refund_doc("RFxpayfail01").await["status"], "abnormal");
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_refund_notification_settles_its_refund_once() {
    let vector: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{VECTORS}/v2_refund_notify.json")).unwrap(),
    )
    .unwrap();
    let key = vector["apiv2_key"].as_str().unwrap().to_owned();
    // WeChat Pay's own REFUND.SUCCESS is held back: only the v2 notification can settle it.
    let w = world(|o| {
        o.refund_delay_ms = 3_600_000;
        o.extra_env.push(("WECHATPAY_APIV2_KEY".into(), key));
    })
    .await;
    let (id, _) = w
        .buy(json!([{"sku": "mug-ceramic-350", "quantity": 1}]))
        .await;
    let refund_no = vector["expect"]["out_refund_no"].as_str().unwrap();
    let fee = vector["expect"]["refund_fee"].as_i64().unwrap();
    let requested = w
        .as_admin(
            json!({"action": "refund", "orderId": id, "refundNo": refund_no, "amountFen": fee}),
        )
        .await
        .unwrap();
    assert_eq!(requested["refund"]["status"], "processing");

    let env = w.suite.function_env();
    let var = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let xml = format!(
        "<xml><return_code>SUCCESS</return_code><appid><![CDATA[{}]]></appid>\
         <mch_id><![CDATA[{}]]></mch_id><nonce_str><![CDATA[TeqClE3i0mvn3DrK]]></nonce_str>\
         <req_info><![CDATA[{}]]></req_info></xml>",
        var("WECHAT_APPID"),
        var("WECHATPAY_MCHID"),
        vector["req_info"].as_str().unwrap()
    );
    let url = format!("{}/payNotify/v2", w.suite.base_url());
    for _ in 0..2 {
        let res = reqwest::Client::new()
            .post(&url)
            .header("content-type", "text/xml")
            .body(xml.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert!(res.text().await.unwrap().contains("SUCCESS"));
    }
    let refund = w.refund_doc(refund_no).await;
    assert_eq!(refund["status"], "success", "{refund}");
    let order = w.order(&id).await;
    assert_eq!(order["refundedFen"], fee, "settled once: {order}");
    assert_eq!(order["status"], "partially_refunded");

    // A req_info that does not decrypt with the key is refused and changes nothing.
    let forged = xml.replace(
        &vector["req_info"].as_str().unwrap()[100..140],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let res = reqwest::Client::new()
        .post(&url)
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(w.order(&id).await["refundedFen"], fee);
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_payment_complaint_push_is_followed_up_through_the_xpay_apis() {
    let w = world(|_| {}).await;
    let (_, no) = w.buy(json!([{"sku": "vip-monthly", "quantity": 1}])).await;
    // The push names no complaint (its fields are unconfirmed): wxPush lists them.
    let (id, stored) = w.complain("xpay", &no, "会员没有生效").await;
    assert_eq!(stored["channel"], "xpay");
    assert_eq!(
        stored["orderRefs"][0]["outTradeNo"],
        json!(no),
        "our order number, not xpay's"
    );
    // Virtual payment has no refund progress API: refund the order, then respond.
    let unsupported = w
        .as_admin(
            json!({"action": "complaintRefundProgress", "complaintId": id, "decision": "APPROVE"}),
        )
        .await
        .unwrap_err();
    assert!(
        unsupported.contains("COMPLAINT_ACTION_UNSUPPORTED"),
        "{unsupported}"
    );
    w.as_admin(
        json!({"action": "complaintRespond", "complaintId": id, "content": "已为您补发会员"}),
    )
    .await
    .unwrap();
    let done = w
        .as_admin(json!({"action": "complaintComplete", "complaintId": id}))
        .await
        .unwrap();
    assert_eq!(done["complaint"]["state"], "PROCESSED");
    w.suite.shutdown().await;
}
