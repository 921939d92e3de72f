//! Bills and the daily reconciliation end to end: the real functions run by the emulator
//! suite (createOrder, payNotify, wxPush, reconcile), its WeChat Pay stand-in serving gzip
//! bills built from its own orders, and its fault hooks making the bills disagree.
//!
//! One day of mixed traffic: 20 orders over WeChat Pay and virtual payment, one payment
//! notification lost beyond every retry, one refund through wemint, one refund made "in the
//! merchant console", one amount written differently in the bill. The reconciliation must
//! report exactly those differences, repair only the lost payment (once, also when run again),
//! and its WeChat Pay revenue must match the bill's totals to the fen. Corrupt bills (wrong
//! hash, truncated gzip) are refused first.

use std::time::Duration;

use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, collections};
use wemint_emulator::demo::Client;
use wemint_emulator::suite::{Suite, SuiteOptions};
use wemint_emulator::timers::{TIMERS, fire};

mod login_support;

const DAY: i64 = 86_400;
/// China is UTC+8.
const CST: i64 = 8 * 3600;

/// wxpay goods bought in turn (sku, fen) and the xpay item.
const WXPAY: [(&str, i64); 4] = [
    ("notebook-a5-dot", 2900),
    ("mug-ceramic-350", 4900),
    ("tee-classic-white-l", 9900),
    ("pricing-playbook-ebook", 990),
];
const COINS: (&str, i64) = ("coins-60", 600);

async fn poll<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    for _ in 0..300 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Shop {
    client: Client,
    tokens: Vec<(String, String)>,
}

impl Shop {
    async fn order(&self, buyer: usize, sku: &str, n: usize) -> Value {
        let (user, token) = &self.tokens[buyer % self.tokens.len()];
        self.client
            .call(
                user,
                Some(token),
                "createOrder",
                json!({"action": "create", "clientRequestId": format!("fin-{n}"),
                    "items": [{"sku": sku, "quantity": 1}],
                    "address": {"name": "张三", "phone": "13800000000", "province": "广东省",
                        "city": "深圳市", "district": "南山区", "detail": "科技园 1 号"}}),
            )
            .await
            .unwrap_or_else(|e| panic!("create {sku}: {e}"))
    }

    /// Logs every buyer in again: a session does not outlive a clock moved by hours.
    async fn relogin(&mut self) {
        for (user, token) in &mut self.tokens {
            *token = self.client.login(user).await.expect("logs in again").0;
        }
    }

    async fn get(&self, buyer: usize, order_id: &str) -> Value {
        let (user, token) = &self.tokens[buyer % self.tokens.len()];
        let d = self
            .client
            .call(
                user,
                Some(token),
                "createOrder",
                json!({"action": "get", "orderId": order_id}),
            )
            .await
            .unwrap();
        d["order"].clone()
    }

    async fn status(&self, buyer: usize, order_id: &str) -> String {
        let order = self.get(buyer, order_id).await;
        order["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn pay(&self, buyer: usize, created: &Value) {
        let (user, _) = &self.tokens[buyer % self.tokens.len()];
        let path = match created["payment"]["channel"].as_str() {
            Some("wxpay") => "/dev/requestPayment",
            _ => "/dev/requestVirtualPayment",
        };
        let (status, reply) = self
            .client
            .post(user, path, &created["payment"]["params"], None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{reply}");
    }

    async fn admin(&self, data: Value) -> Value {
        let (_, reply) = self
            .client
            .post("admin", "/dev/admin/finance", &data, None)
            .await
            .unwrap();
        reply
    }

    async fn dev(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.client.post("admin", path, &body, None).await.unwrap();
        assert_eq!(status, 200, "{path}: {reply}");
        reply
    }
}

fn kinds(list: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_day_of_mixed_traffic_reconciles_against_the_bills() {
    let dir = login_support::DbDir::new("finance");
    let mut options = SuiteOptions::new(dir.dir.join(".wemint"));
    options.port = 0;
    options.run_timers = false;
    // WeChat Pay's 15 notification retries take under a second.
    options.retry_factor = 0.000_01;
    options.refund_delay_ms = 20;
    let suite = Suite::start(options).await.expect("suite starts");
    // Trade at noon China time, so the whole day's traffic is on one bill day.
    let now = suite.clock.now();
    let noon = (now + CST).div_euclid(DAY) * DAY + DAY - CST + 12 * 3600;
    suite.advance_clock(noon - now).await.unwrap();
    let bill_date = wemint::finance::china_date(suite.clock.now());

    let client = Client::new(&suite.base_url()).unwrap();
    let mut tokens = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let (token, _) = client.login(user).await.unwrap();
        tokens.push((user.to_owned(), token));
    }
    client.login("admin").await.unwrap();
    let mut shop = Shop { client, tokens };
    shop.dev("/dev/admin/promote", json!({})).await;

    // 14 WeChat Pay orders and 6 virtual payment orders, paid one after the other.
    let mut wx_orders: Vec<(Value, i64)> = Vec::new();
    let mut lost: Option<Value> = None;
    for n in 0..20 {
        let (sku, fen) = if n % 10 >= 7 {
            COINS
        } else {
            WXPAY[n % WXPAY.len()]
        };
        let created = shop.order(n, sku, n).await;
        let id = created["order"]["id"].as_str().unwrap().to_owned();
        let no = created["order"]["outTradeNo"].as_str().unwrap().to_owned();
        assert_eq!(created["order"]["totalFen"], fen, "{created}");
        if n == 4 {
            // Every attempt of this payment's notification fails: lost beyond retries.
            shop.dev("/dev/deliveries/failNext", json!({"count": 16}))
                .await;
            shop.pay(n, &created).await;
            let base = suite.base_url();
            poll("the lost notification to give up", || {
                let url = format!("{base}/dev/deliveries?ref={no}");
                async move {
                    let docs: Vec<Value> = reqwest::get(url).await.ok()?.json().await.ok()?;
                    docs.iter()
                        .any(|d| d["state"] == "failed")
                        .then(|| json!(true))
                }
            })
            .await;
            assert_eq!(shop.status(n, &id).await, "created");
            lost = Some(created.clone());
            wx_orders.push((created, fen));
            continue;
        }
        shop.pay(n, &created).await;
        poll("the order to be paid", || {
            let id = id.clone();
            let shop = &shop;
            async move {
                let s = shop.status(n, &id).await;
                matches!(s.as_str(), "paid" | "fulfilled").then(|| json!(s))
            }
        })
        .await;
        if sku != COINS.0 {
            wx_orders.push((created, fen));
        }
    }
    assert_eq!(wx_orders.len(), 14);
    let lost = lost.unwrap();
    let lost_no = lost["order"]["outTradeNo"].as_str().unwrap().to_owned();

    // A refund through wemint (settled and notified), one in the merchant console (wemint
    // never hears of it), and one amount the bill writes differently.
    let refunded = &wx_orders[2].0;
    let reply = shop
        .dev(
            "/dev/admin/refund",
            json!({"orderId": refunded["order"]["id"], "amountFen": 1_000}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    poll("the refund to settle", || {
        let store = suite.store.clone();
        async move {
            let done = store
                .find(
                    collections::REFUNDS,
                    &Filter::eq("status", "success"),
                    &FindOptions::new(),
                )
                .await
                .ok()?;
            (!done.is_empty()).then(|| json!(true))
        }
    })
    .await;
    let console_no = wx_orders[5].0["order"]["outTradeNo"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.dev(
        "/dev/bills/consoleRefund",
        json!({"outTradeNo": console_no, "amountFen": 500}),
    )
    .await;
    let odd_no = wx_orders[8].0["order"]["outTradeNo"]
        .as_str()
        .unwrap()
        .to_owned();
    let odd_fen = wx_orders[8].1 + 100;
    shop.dev(
        "/dev/bills/faults",
        json!({"kind": "amount", "outTradeNo": odd_no, "fen": odd_fen}),
    )
    .await;

    // The next day, before 09:00 the bill is not ready; a wrong hash and a truncated gzip
    // are refused and nothing is stored.
    suite
        .advance_clock(DAY - 12 * 3600 + 8 * 3600)
        .await
        .unwrap();
    let early = shop
        .admin(json!({"action": "billsRun", "date": bill_date}))
        .await;
    assert_eq!(early["data"]["status"], "notReady", "{early}");
    suite.advance_clock(2 * 3600 + 1800).await.unwrap();
    shop.dev("/dev/bills/faults", json!({"kind": "wrongHash"}))
        .await;
    let refused = shop
        .admin(json!({"action": "billsRun", "date": bill_date}))
        .await;
    assert_eq!(refused["error"]["code"], "BILL_HASH_MISMATCH", "{refused}");
    shop.dev("/dev/bills/faults", json!({"kind": "truncate"}))
        .await;
    let refused = shop
        .admin(json!({"action": "billsRun", "date": bill_date}))
        .await;
    assert_eq!(refused["error"]["code"], "BILL_CORRUPT", "{refused}");
    let stored = suite
        .store
        .count(collections::BILL_FILES, &Filter::all_of([]))
        .await
        .unwrap();
    assert_eq!(stored, 0, "a refused bill is not stored");
    let none = shop.admin(json!({"action": "discrepancies"})).await;
    assert_eq!(none["data"]["discrepancies"], json!([]), "{none}");

    // 10:30: the daily timer reconciles yesterday.
    let timer = TIMERS
        .iter()
        .find(|t| t.trigger == "daily-bills")
        .expect("the daily-bills timer is declared");
    let reply = fire(&suite, timer).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let report = &reply["data"];
    assert_eq!(report["date"], bill_date.as_str());
    assert_eq!(report["status"], "reconciled");
    assert_eq!(report["repaired"], 1, "{report}");
    assert_eq!(
        kinds(&report["discrepancies"]),
        vec![
            ("amount_mismatch".to_owned(), "open".to_owned()),
            ("paid_not_recorded".to_owned(), "repaired".to_owned()),
            ("refund_unknown".to_owned(), "open".to_owned()),
        ],
        "{report}"
    );
    let by_kind = |kind: &str| {
        report["discrepancies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_kind("paid_not_recorded")["outTradeNo"], lost_no.as_str());
    assert_eq!(by_kind("amount_mismatch")["outTradeNo"], odd_no.as_str());
    assert_eq!(by_kind("amount_mismatch")["billFen"], odd_fen);
    assert_eq!(by_kind("refund_unknown")["outTradeNo"], console_no.as_str());
    assert_eq!(by_kind("refund_unknown")["billFen"], 500);
    // The lost payment is applied: the (physical) order is paid and waits to be shipped.
    shop.relogin().await;
    let lost_id = lost["order"]["id"].as_str().unwrap();
    let repaired = shop.get(4, lost_id).await;
    assert_eq!(repaired["status"], "paid", "{repaired}");
    assert_eq!(repaired["shipping"]["state"], "awaiting", "{repaired}");
    assert_eq!(repaired["outTradeNo"], lost_no.as_str(), "{repaired}");

    // Revenue, from what the test knows was sold: every WeChat Pay order (the lost one too,
    // the odd one at the bill's amount), two refunds, 0.60% fees on both.
    let gross: i64 = wx_orders.iter().map(|(_, fen)| fen).sum::<i64>() + 100;
    let refunds = 1_000 + 500;
    let fee_units = 6 * (gross - refunds);
    let fees = (fee_units + 500) / 1000;
    let wx = &report["revenue"][0];
    assert_eq!(wx["channel"], "wxpay");
    assert_eq!(
        (
            wx["grossFen"].as_i64(),
            wx["refundsFen"].as_i64(),
            wx["feesFen"].as_i64(),
            wx["netFen"].as_i64(),
            wx["orders"].as_i64(),
            wx["refunds"].as_i64()
        ),
        (
            Some(gross),
            Some(refunds),
            Some(fees),
            Some(gross - refunds - fees),
            Some(14),
            Some(2)
        ),
        "{wx}"
    );
    // The bill's own summary row says the same.
    let summary = &report["tradeSummary"];
    assert_eq!(summary["settlementFen"], gross);
    assert_eq!(summary["refundFen"], refunds);
    assert_eq!(summary["feeUnits"], fee_units);
    let xp = &report["revenue"][1];
    assert_eq!(
        (
            xp["channel"].as_str(),
            xp["grossFen"].as_i64(),
            xp["orders"].as_i64()
        ),
        (Some("xpay"), Some(6 * COINS.1), Some(6))
    );

    // Run again (admin): the stored bill is read, nothing is repaired twice.
    let again = shop
        .admin(json!({"action": "billsRun", "date": bill_date}))
        .await;
    assert_eq!(again["data"]["fromStore"], true, "{again}");
    assert_eq!(again["data"]["repaired"], 0, "{again}");
    let events = suite
        .store
        .count(
            collections::PAYMENT_EVENTS,
            &Filter::eq("outTradeNo", lost_no.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(events, 1, "the lost payment was applied once");
    let all = shop.admin(json!({"action": "discrepancies"})).await;
    assert_eq!(
        kinds(&all["data"]["discrepancies"]),
        vec![
            ("amount_mismatch".to_owned(), "open".to_owned()),
            ("paid_not_recorded".to_owned(), "repaired".to_owned()),
            ("refund_unknown".to_owned(), "open".to_owned()),
        ]
    );

    // Reports and the CSV export.
    let revenue = shop
        .admin(json!({"action": "revenueReport", "from": bill_date, "to": bill_date}))
        .await;
    assert_eq!(revenue["data"]["days"][0]["grossFen"], gross, "{revenue}");
    let export = shop
        .admin(
            json!({"action": "financeExport", "what": "discrepancies", "from": bill_date,
            "to": bill_date}),
        )
        .await;
    let csv = export["data"]["csv"].as_str().unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.contains(&odd_no), "{csv}");
    suite.shutdown().await;
}
