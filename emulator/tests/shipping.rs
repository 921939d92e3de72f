//! Shipping end to end, through the suite and the real function binaries (build them first:
//! `cargo build --workspace --bins`): physical orders wait to ship after payment, the admin
//! ships them (express with several waybills, self-pickup, several orders per call), the
//! shipment reaches the platform's `upload_shipping_info` stand-in, a failed upload is kept on
//! the order and re-sent by reconcile, virtual goods paid through WeChat Pay get their virtual
//! shipment, and the platform's settlement pushes are recorded once, only when `get_order`
//! agrees.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions};
use wemint_emulator::demo::Client;
use wemint_emulator::standins::faults::{Fault, System};
use wemint_emulator::standins::shipping::platform_record;
use wemint_emulator::standins::wechat_api::MESSAGES;
use wemint_emulator::suite::{Suite, SuiteOptions};

const NOTICE_TEMPLATE: &str = "tmpl-shipped-e2e";
const ADDRESS: &str = r#"{"name": "张三", "phone": "13800006789", "province": "广东省", "city": "深圳市", "district": "南山区", "detail": "科技园 1 号"}"#;

struct World {
    suite: std::sync::Arc<Suite>,
    client: Client,
    alice: String,
    admin: String,
    _dir: tempfile::TempDir,
}

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

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SuiteOptions::new(dir.path().join(".wemint"));
        options.port = 0;
        options.retry_factor = 0.01;
        // Reconcile runs when a test fires it, so its effect is the test's to see.
        options.run_timers = false;
        options.extra_env = vec![(
            "WEMINT_SHIPPING_TEMPLATE_ID".to_owned(),
            NOTICE_TEMPLATE.to_owned(),
        )];
        let suite = Suite::start(options).await.expect("suite starts");
        let client = Client::new(&suite.base_url()).unwrap();
        let (alice, _) = client.login("alice").await.expect("alice logs in");
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
            alice,
            admin,
            _dir: dir,
        }
    }

    /// Logs both users in again: a session does not outlive a clock moved by days.
    async fn relogin(&mut self) {
        self.alice = self.client.login("alice").await.expect("alice logs in").0;
        self.admin = self.client.login("admin").await.expect("admin logs in").0;
    }

    async fn call(&self, as_admin: bool, data: Value) -> Result<Value, String> {
        let (user, token) = if as_admin {
            ("admin", &self.admin)
        } else {
            ("alice", &self.alice)
        };
        self.client
            .call(user, Some(token), "createOrder", data)
            .await
    }

    /// Buys and pays `sku`; returns the paid order.
    async fn buy(&self, sku: &str) -> Value {
        let created = self
            .call(
                false,
                json!({"action": "create",
                "clientRequestId": format!("ship-{}", wemint::pay::random_string(12)),
                "items": [{"sku": sku, "quantity": 1}],
                "address": serde_json::from_str::<Value>(ADDRESS).unwrap()}),
            )
            .await
            .unwrap_or_else(|e| panic!("create {sku}: {e}"));
        let (status, reply) = self
            .client
            .post(
                "alice",
                "/dev/requestPayment",
                &created["payment"]["params"],
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{reply}");
        let id = created["order"]["id"].as_str().unwrap().to_owned();
        until("the order to be paid", || {
            let id = id.clone();
            async move {
                let o = self.order(&id).await;
                // Paid, and past the write that gives it a shipping record (the payment marks
                // the order paid first; a reader in between sees `paid` without `shipping`).
                (o["paidAt"].is_i64() && o["status"] != "created" && o["shipping"].is_object())
                    .then_some(o)
            }
        })
        .await
    }

    async fn order(&self, id: &str) -> Value {
        self.call(false, json!({"action": "get", "orderId": id}))
            .await
            .unwrap()["order"]
            .clone()
    }

    async fn ship(&self, shipments: Value) -> Value {
        self.call(true, json!({"action": "ship", "shipments": shipments}))
            .await
            .unwrap()
    }

    async fn dev(&self, path: &str, body: Value) -> (u16, Value) {
        self.client.post("admin", path, &body, None).await.unwrap()
    }

    async fn messages_to_alice(&self) -> Vec<Value> {
        let openid = self.suite.keys.openid_for("alice");
        self.suite
            .store
            .find(
                MESSAGES,
                &Filter::eq("touser", openid.as_str()),
                &FindOptions::new(),
            )
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_shipping_is_reported_and_the_buyer_told_once() {
    let w = World::start().await;
    // The buyer accepted the shipping notice at checkout (recorded through gatedContent).
    w.client
        .call(
            "alice",
            Some(&w.alice),
            "gatedContent",
            json!({"action": "subscribeGrant", "templateIds": [NOTICE_TEMPLATE]}),
        )
        .await
        .unwrap();
    let order = w.buy("mug-ceramic-350").await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        order["status"], "paid",
        "physical goods are not fulfilled at payment"
    );
    assert_eq!(order["shipping"]["state"], "awaiting");
    assert!(order["shipping"]["deadlineAt"].as_i64().unwrap() > order["paidAt"].as_i64().unwrap());

    let listed = w
        .call(true, json!({"action": "shipments", "state": "awaiting"}))
        .await
        .unwrap();
    assert!(
        listed["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == id),
        "{listed}"
    );

    let reply = w
        .ship(
            json!([{"orderId": id, "logisticsType": "express", "packages": [
            {"expressCompany": "SF", "trackingNo": "SF1400000000001"},
            {"expressCompany": "zto", "trackingNo": "ZT7700000000002"}]}]),
        )
        .await;
    assert_eq!(reply["shipped"], 1, "{reply}");
    let shipped = &reply["results"][0]["order"];
    assert_eq!(shipped["status"], "fulfilled");
    assert_eq!(shipped["shipping"]["state"], "shipped");
    assert_eq!(shipped["shipping"]["logisticsType"], "express");
    assert_eq!(shipped["shipping"]["upload"]["state"], "done", "{shipped}");
    assert_eq!(shipped["shipping"]["packages"][1]["expressCompany"], "ZTO");
    assert_eq!(shipped["shipping"]["notice"], "sent");

    // What the platform holds: split express delivery, both waybills, masked contact.
    let tx = shipped["transactionId"].as_str().unwrap();
    let record = platform_record(&w.suite, tx).await.expect("uploaded");
    assert_eq!(record["state"], 2);
    assert_eq!(record["shipping"]["logistics_type"], 1);
    assert_eq!(record["shipping"]["delivery_mode"], 2);
    let list = record["shipping"]["shipping_list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["contact"]["receiver_contact"], "138****6789");
    assert_eq!(record["uploads"], 1);

    // The buyer's notice went out once, with the waybill, opening the order page.
    let messages = w.messages_to_alice().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let msg = &messages[0];
    assert_eq!(msg["templateId"], NOTICE_TEMPLATE, "{msg}");
    assert_eq!(
        msg["data"]["thing3"]["value"], "SF SF1400000000001",
        "{msg}"
    );
    assert_eq!(msg["data"]["phrase4"]["value"], "已发货");
    assert_eq!(msg["page"], format!("shop/pages/order/order?id={id}"));

    // Shipping again is refused and reaches neither the platform nor the buyer.
    let again = w
        .ship(json!([{"orderId": id, "logisticsType": "self_pickup"}]))
        .await;
    assert_eq!(again["shipped"], 0);
    assert_eq!(
        again["results"][0]["error"]["code"],
        "ORDER_ALREADY_SHIPPED"
    );
    assert_eq!(platform_record(&w.suite, tx).await.unwrap()["uploads"], 1);
    assert_eq!(w.messages_to_alice().await.len(), 1);

    // The buyer sees the tracking.
    let seen = w.order(id).await;
    assert_eq!(
        seen["shipping"]["packages"][0]["trackingNo"],
        "SF1400000000001"
    );
    assert!(
        seen["shipping"].get("upload").is_none(),
        "buyers do not see internals"
    );
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_pickup_ships_several_orders_in_one_call_and_refuses_bad_entries() {
    let w = World::start().await;
    let a = w.buy("notebook-a5-dot").await;
    let b = w.buy("tee-classic-white-l").await;
    let reply = w
        .ship(json!([
            {"orderId": a["id"], "logisticsType": "self_pickup"},
            {"orderId": b["id"], "logisticsType": "same_city"},
            {"orderId": "no-such-order", "logisticsType": "self_pickup"},
            {"orderId": a["id"], "logisticsType": "express"},
            {"orderId": b["id"], "logisticsType": "by_pigeon"},
        ]))
        .await;
    assert_eq!(reply["shipped"], 2, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(
        results[0]["order"]["shipping"]["logisticsType"],
        "self_pickup"
    );
    assert_eq!(
        results[1]["order"]["shipping"]["logisticsType"],
        "same_city"
    );
    assert_eq!(results[2]["error"]["code"], "ORDER_NOT_FOUND");
    assert_eq!(results[3]["error"]["code"], "INVALID_SHIPMENT");
    assert_eq!(results[4]["error"]["code"], "INVALID_SHIPMENT");
    let tx = results[0]["order"]["transactionId"].as_str().unwrap();
    let record = platform_record(&w.suite, tx).await.unwrap();
    assert_eq!(record["shipping"]["logistics_type"], 4);
    assert!(
        record["shipping"]["shipping_list"][0]
            .get("tracking_no")
            .is_none()
    );
    let tx_b = results[1]["order"]["transactionId"].as_str().unwrap();
    assert_eq!(
        platform_record(&w.suite, tx_b).await.unwrap()["shipping"]["logistics_type"],
        2
    );
    // Not configured for shipping notices' grants: alice never accepted, nothing sent.
    assert_eq!(results[0]["order"]["shipping"]["notice"], "no_grant");
    assert!(w.messages_to_alice().await.is_empty());
    // A buyer cannot ship.
    let err = w
        .call(false, json!({"action": "ship", "shipments": [{"orderId": a["id"], "logisticsType": "self_pickup"}]}))
        .await
        .unwrap_err();
    assert!(err.contains("FORBIDDEN"), "{err}");
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_goods_paid_by_wechat_pay_get_a_virtual_shipment() {
    let w = World::start().await;
    let order = w.buy("pricing-playbook-ebook").await;
    let id = order["id"].as_str().unwrap().to_owned();
    let order = until("the virtual shipment to be reported", || {
        let id = id.clone();
        let w = &w;
        async move {
            let o = w.order(&id).await;
            (o["shipping"]["state"] == "shipped").then_some(o)
        }
    })
    .await;
    assert_eq!(order["status"], "fulfilled");
    assert_eq!(order["shipping"]["logisticsType"], "virtual");
    let tx = order["shipping"]["transactionId"].as_str().unwrap();
    // Recorded by the payment, reported by reconcile (the notification calls no WeChat API).
    assert!(platform_record(&w.suite, tx).await.is_none());
    w.dev("/dev/timers/run", json!({"trigger": "every-minute"}))
        .await;
    let record = until("the platform to hold the upload", || {
        let w = &w;
        async move { platform_record(&w.suite, tx).await }
    })
    .await;
    assert_eq!(record["shipping"]["logistics_type"], 3);
    assert_eq!(record["state"], 2);
    // A membership through virtual payment (xpay) is not part of this flow.
    let admin_view = w
        .call(
            true,
            json!({"action": "search", "outTradeNo": order["outTradeNo"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        admin_view["orders"][0]["shipping"]["upload"]["state"], "done",
        "{admin_view}"
    );
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_is_kept_and_reconcile_sends_it_again() {
    let w = World::start().await;
    let order = w.buy("mug-ceramic-350").await;
    let id = order["id"].as_str().unwrap().to_owned();
    // The platform answers "system error" once.
    w.suite.faults.inject(
        Fault::next(System::WechatApi, 1)
            .on("/wxa/sec/order/upload_shipping_info")
            .errcode(10_060_012, "system error"),
    );
    let reply = w
        .ship(json!([{"orderId": id, "logisticsType": "express",
            "packages": [{"expressCompany": "YTO", "trackingNo": "YT100"}]}]))
        .await;
    let shipped = &reply["results"][0]["order"];
    assert_eq!(shipped["shipping"]["state"], "shipped", "{reply}");
    assert_eq!(shipped["shipping"]["upload"]["state"], "failed");
    assert_eq!(shipped["shipping"]["upload"]["errcode"], 10_060_012);
    let tx = shipped["transactionId"].as_str().unwrap().to_owned();
    assert!(platform_record(&w.suite, &tx).await.is_none());
    let failed = w
        .call(
            true,
            json!({"action": "shipments", "state": "upload_failed"}),
        )
        .await
        .unwrap();
    assert_eq!(failed["orders"][0]["id"], id.as_str(), "{failed}");

    // Before the backoff is over, reconcile leaves it; after it, reconcile re-sends it.
    let (_, fired) = w.dev("/dev/timers/run", json!({})).await;
    assert!(platform_record(&w.suite, &tx).await.is_none(), "{fired}");
    let (status, _) = w.dev("/dev/clock/advance", json!({"secs": 180})).await;
    assert_eq!(status, 200);
    let (_, fired) = w.dev("/dev/timers/run", json!({})).await;
    let record = platform_record(&w.suite, &tx)
        .await
        .unwrap_or_else(|| panic!("reconcile did not re-send: {fired}"));
    assert_eq!(record["uploads"], 1);
    assert_eq!(
        record["shipping"]["shipping_list"][0]["tracking_no"],
        "YT100"
    );
    let after = w
        .call(
            true,
            json!({"action": "search", "outTradeNo": order["outTradeNo"]}),
        )
        .await
        .unwrap();
    let upload = &after["orders"][0]["shipping"]["upload"];
    assert_eq!(upload["state"], "done", "{after}");
    assert_eq!(upload["attempts"], 2);
    assert!(upload["errcode"].is_null());
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_pushes_are_confirmed_with_the_platform_and_recorded_once() {
    let w = World::start().await;
    let a = w.buy("mug-ceramic-350").await;
    let b = w.buy("notebook-a5-dot").await;
    let id = a["id"].as_str().unwrap().to_owned();
    let reply = w
        .ship(json!([
            {"orderId": id, "logisticsType": "express", "packages": [{"expressCompany": "SF", "trackingNo": "SF9"}]},
            {"orderId": b["id"], "logisticsType": "express", "packages": [{"expressCompany": "SF", "trackingNo": "SF8"}]},
        ]))
        .await;
    assert_eq!(reply["shipped"], 2, "{reply}");
    let tx_b = reply["results"][1]["order"]["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();

    // The buyer confirms receipt on the platform: the push arrives, get_order agrees.
    let (status, confirmed) = w.dev("/dev/shipping/confirm", json!({"orderId": id})).await;
    assert_eq!(status, 200, "{confirmed}");
    let received = until("received", || {
        let id = id.clone();
        let w = &w;
        async move {
            let o = w.order(&id).await;
            (o["shipping"]["state"] == "received").then_some(o)
        }
    })
    .await;
    let received_at = received["shipping"]["receivedAt"].clone();
    assert!(received_at.is_i64());
    assert!(received["shipping"]["estimatedSettlementAt"].is_i64());

    let (status, _) = w.dev("/dev/shipping/settle", json!({"orderId": id})).await;
    assert_eq!(status, 200);
    let settled = until("settled", || {
        let id = id.clone();
        let w = &w;
        async move {
            let o = w.order(&id).await;
            (o["shipping"]["state"] == "settled").then_some(o)
        }
    })
    .await;
    assert_eq!(settled["shipping"]["receivedAt"], received_at);
    let settled_at = settled["shipping"]["settledAt"].clone();
    assert!(settled_at.is_i64());

    // A duplicate of the settlement push (a new delivery of the same content) changes nothing.
    let deliveries: Vec<Value> = w
        .suite
        .store
        .find(
            wemint_emulator::deliveries::DELIVERIES,
            &Filter::eq("event", "trade_manage_order_settlement"),
            &FindOptions::new().sort_asc("createdAt"),
        )
        .await
        .unwrap();
    let last = deliveries.last().unwrap().clone();
    let mut copy = last["payload"].clone();
    copy["settlement_time"] = json!(settled_at.as_i64().unwrap() + 5000);
    let dup = wemint_emulator::deliveries::enqueue(
        &w.suite,
        wemint_emulator::deliveries::DeliveryKind::Push,
        last["ref"].as_str().unwrap(),
        None,
        copy,
        0,
    )
    .await
    .unwrap();
    until("the duplicate to be delivered", || {
        let dup = dup.clone();
        let w = &w;
        async move {
            let d = w
                .suite
                .store
                .get(wemint_emulator::deliveries::DELIVERIES, &dup)
                .await
                .unwrap()?;
            (d["state"] == "delivered").then_some(d)
        }
    })
    .await;
    let again = w.order(&id).await;
    assert_eq!(again["shipping"], settled["shipping"]);

    // A signed push claiming that order b settled, which the platform does not confirm
    // (b is only shipped there), changes nothing.
    let mut claim = last["payload"].clone();
    claim["transaction_id"] = json!(tx_b);
    claim["merchant_trade_no"] = b["outTradeNo"].clone();
    claim["CreateTime"] = json!(claim["CreateTime"].as_i64().unwrap() + 1);
    let forged = wemint_emulator::deliveries::enqueue(
        &w.suite,
        wemint_emulator::deliveries::DeliveryKind::Push,
        b["outTradeNo"].as_str().unwrap(),
        None,
        claim,
        0,
    )
    .await
    .unwrap();
    until("the unconfirmed claim to be answered", || {
        let forged = forged.clone();
        let w = &w;
        async move {
            let d = w
                .suite
                .store
                .get(wemint_emulator::deliveries::DELIVERIES, &forged)
                .await
                .unwrap()?;
            (d["state"] == "delivered").then_some(d)
        }
    })
    .await;
    let b_now = w.order(b["id"].as_str().unwrap()).await;
    assert_eq!(b_now["shipping"]["state"], "shipped", "{b_now}");
    assert!(b_now["shipping"].get("settledAt").is_none());

    // An unsigned push is refused before anything is read.
    let res = reqwest::Client::new()
        .post(format!(
            "{}/wxPush?timestamp=1&nonce=1&signature=x",
            w.suite.base_url()
        ))
        .body(r#"{"MsgType":"event","Event":"trade_manage_order_settlement"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    w.suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_orders_are_listed_and_admins_reminded_once() {
    let mut w = World::start().await;
    let order = w.buy("mug-ceramic-350").await;
    let id = order["id"].as_str().unwrap();
    let none = w
        .call(true, json!({"action": "shipments", "state": "overdue"}))
        .await
        .unwrap();
    assert!(none["orders"].as_array().unwrap().is_empty(), "{none}");
    // 40 hours later the 48-hour deadline is 8 hours away: inside the 12-hour reminder window.
    w.dev("/dev/clock/advance", json!({"secs": 40 * 3600}))
        .await;
    w.relogin().await;
    w.dev("/dev/timers/run", json!({})).await;
    let listed = w
        .call(true, json!({"action": "shipments", "state": "awaiting"}))
        .await
        .unwrap();
    let first = &listed["orders"][0];
    assert_eq!(first["id"], id);
    let reminded_at = first["shipping"]["remindedAt"].clone();
    assert!(reminded_at.is_i64(), "{first}");
    assert_eq!(first["overdue"], false);
    w.dev("/dev/clock/advance", json!({"secs": 9 * 3600})).await;
    w.relogin().await;
    w.dev("/dev/timers/run", json!({})).await;
    let overdue = w
        .call(true, json!({"action": "shipments", "state": "overdue"}))
        .await
        .unwrap();
    assert_eq!(overdue["orders"][0]["id"], id, "{overdue}");
    assert_eq!(overdue["orders"][0]["overdue"], true);
    assert_eq!(
        overdue["orders"][0]["shipping"]["remindedAt"], reminded_at,
        "reminded once"
    );
    w.suite.shutdown().await;
}
