//! Function-level tests of the CRM part of `analytics`: `crmExport`, `wechatPull` and the CRM
//! steps of the timers, in process through `wemint::runtime::testing`.

use serde_json::{Value, json};
use wemint::runtime::testing::{Caller, Harness, TestStore};
use wemint::store::Filter;
use wemint::store::collections::{CRM_CUSTOMERS, CRM_OUTBOX, ORDERS, REFUNDS, USERS};

const APPID: &str = "wx-harness-app";
const SECRET: &str = "crm-webhook-secret-0123456789";

async fn start(ts: &TestStore, extra: &[(&str, &str)]) -> Harness {
    let mut env = vec![
        ts.var(),
        (
            "WEMINT_SESSION_SECRET",
            "harness-session-secret-0123456789abcdef".to_owned(),
        ),
        (
            "WEMINT_TRUST_PLATFORM_IDENTITY",
            "cloudbase-event".to_owned(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Harness::start(super::function(), env).await.unwrap()
}

fn admin() -> Caller {
    Caller::platform("o-admin", APPID)
}

/// An administrator, two buyers (one refunded in part) and a visitor who never bought.
async fn seed(ts: &TestStore) {
    let s = ts.store();
    let now = wemint::clock::SystemClock.now_unix();
    s.insert(
        USERS,
        json!({"_id": "o-admin", "openid": "o-admin", "appid": APPID,
        "role": "admin", "createdAt": now - 900, "lastLoginAt": now - 900}),
    )
    .await
    .unwrap();
    for (openid, unionid) in [("o-ann", Some("u-ann")), ("o-ben", None), ("o-cy", None)] {
        let mut u = json!({"_id": openid, "openid": openid, "appid": APPID, "role": "user",
            "createdAt": now - 800, "lastLoginAt": now - 800});
        if let Some(x) = unionid {
            u["unionid"] = json!(x);
        }
        s.insert(USERS, u).await.unwrap();
    }
    for (id, openid, total, status) in [
        ("ord-1", "o-ann", 4900, "fulfilled"),
        ("ord-2", "o-ann", 9900, "partially_refunded"),
        ("ord-3", "o-ben", 2900, "fulfilled"),
        ("ord-4", "o-cy", 2900, "created"),
    ] {
        let mut o = json!({"_id": id, "outTradeNo": format!("WM-{id}"), "openid": openid,
            "clientRequestId": id, "status": status, "channel": "wxpay", "totalFen": total,
            "createdAt": now - 700});
        if status != "created" {
            o["paidAt"] = json!(now - 600);
        }
        s.insert(ORDERS, o).await.unwrap();
    }
    s.insert(
        REFUNDS,
        json!({"_id": "rf-1", "orderId": "ord-2", "openid": "o-ann",
        "amountFen": 3000, "status": "success", "createdAt": now - 500,
        "attemptedAt": now - 500, "settledAt": now - 400}),
    )
    .await
    .unwrap();
    // A refund still in flight does not count.
    s.insert(
        REFUNDS,
        json!({"_id": "rf-2", "orderId": "ord-3", "openid": "o-ben",
        "amountFen": 2900, "status": "processing", "createdAt": now - 300,
        "attemptedAt": now - 300}),
    )
    .await
    .unwrap();
}

use wemint::clock::Clock;

fn rows(reply: &Value) -> Vec<Vec<String>> {
    let csv = reply["data"]["csv"].as_str().unwrap();
    csv.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn crm_export_is_for_administrators_and_matches_orders_and_refunds() {
    let ts = TestStore::new().await.unwrap();
    seed(&ts).await;
    let f = start(&ts, &[]).await;
    let denied = f
        .call(&Caller::platform("o-ann", APPID), "crmExport", json!({}))
        .await;
    assert_eq!(denied["error"]["code"], "FORBIDDEN", "{denied}");
    let bad = f.call(&admin(), "crmExport", json!({"what": 1})).await;
    assert_eq!(bad["error"]["code"], "BAD_REQUEST", "{bad}");

    let reply = f.call(&admin(), "crmExport", json!({})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let filename = reply["data"]["filename"].as_str().unwrap();
    assert!(
        filename.starts_with("wemint-customers-") && filename.ends_with(".csv"),
        "{filename}"
    );
    assert_eq!(reply["data"]["rows"], 4);
    let rows = rows(&reply);
    assert_eq!(
        rows[0],
        [
            "openid",
            "unionid",
            "firstOrderAt",
            "lastOrderAt",
            "orderCount",
            "lifetimeValueFen",
            "refundsFen",
            "plan",
            "tenant",
            "lastSeenAt",
            "tags"
        ]
    );
    let by_openid = |o: &str| rows.iter().find(|r| r[0] == o).unwrap().clone();
    let ann = by_openid("o-ann");
    assert_eq!((ann[1].as_str(), ann[4].as_str()), ("u-ann", "2"));
    assert_eq!((ann[5].as_str(), ann[6].as_str()), ("14800", "3000"));
    assert_eq!(ann[10], "buyer;refunded;repeat_buyer");
    let ben = by_openid("o-ben");
    assert_eq!(
        (ben[4].as_str(), ben[5].as_str(), ben[6].as_str()),
        ("1", "2900", "0")
    );
    let cy = by_openid("o-cy");
    assert_eq!(
        (cy[4].as_str(), cy[5].as_str(), cy[2].as_str()),
        ("0", "0", "")
    );
}

#[tokio::test]
async fn wechat_pull_checks_the_day_and_needs_wechat() {
    let ts = TestStore::new().await.unwrap();
    seed(&ts).await;
    let f = start(&ts, &[]).await;
    let denied = f
        .call(&Caller::platform("o-ann", APPID), "wechatPull", json!({}))
        .await;
    assert_eq!(denied["error"]["code"], "FORBIDDEN");
    let bad = f
        .call(&admin(), "wechatPull", json!({"date": "2026-02-30"}))
        .await;
    assert_eq!(bad["error"]["code"], "DATACUBE_DATE_INVALID", "{bad}");
    let unconfigured = f.call(&admin(), "wechatPull", json!({})).await;
    assert_eq!(
        unconfigured["error"]["code"], "DATACUBE_UNAVAILABLE",
        "{unconfigured}"
    );
}

#[tokio::test]
async fn the_minute_timer_folds_and_queues_pushes_that_a_failure_reschedules() {
    let ts = TestStore::new().await.unwrap();
    seed(&ts).await;
    // Nothing listens on the discard port: every push fails at the transport.
    let f = start(
        &ts,
        &[
            ("CRM_WEBHOOK_URL", "http://127.0.0.1:9/crm"),
            ("CRM_WEBHOOK_SECRET", SECRET),
        ],
    )
    .await;
    let minute = f.timer("every-minute").await;
    assert_eq!(minute["ok"], true, "{minute}");
    let crm = &minute["data"]["crm"];
    assert_eq!(crm["fold"]["changed"], 4, "{crm}");
    assert_eq!(crm["push"]["enqueued"], 4);
    assert_eq!(crm["push"]["failed"], 4);
    assert!(!minute.to_string().contains(SECRET));
    let store = ts.store();
    assert_eq!(store.count(CRM_CUSTOMERS, &Filter::All).await.unwrap(), 4);
    let pending = store
        .count(
            CRM_OUTBOX,
            &Filter::eq("status", "pending").and(Filter::eq("attempts", 1)),
        )
        .await
        .unwrap();
    assert_eq!(pending, 4);
    let entry = store.get(CRM_OUTBOX, "o-ann:1").await.unwrap().unwrap();
    let error = entry["lastError"].as_str().unwrap();
    assert!(
        error.starts_with("transport:") && !error.contains(SECRET),
        "{error}"
    );
    assert_eq!(crm["refold"]["examined"], 4, "the rolling pass: {crm}");
    assert_eq!(crm["refold"]["changed"], 0);
    // The next minute: nothing changed, nothing due yet (backoff 30 s).
    let again = f.timer("every-minute").await;
    assert_eq!(again["data"]["crm"]["fold"]["changed"], 0);
    assert_eq!(
        again["data"]["crm"]["push"],
        json!({"enqueued": 0, "delivered": 0, "failed": 0})
    );
    // A bad setting stops the function at start, naming the variable only.
    let broken = Harness::start(
        super::function(),
        [
            ts.var(),
            (
                "WEMINT_SESSION_SECRET",
                "harness-session-secret-0123456789abcdef".to_owned(),
            ),
            ("CRM_WEBHOOK_URL", "ftp://crm".to_owned()),
        ],
    )
    .await;
    let error = broken.err().unwrap().to_string();
    assert!(error.contains("CRM_WEBHOOK_URL"), "{error}");
}

#[tokio::test]
async fn the_daily_timer_reports_the_crm_and_datacube_steps() {
    let ts = TestStore::new().await.unwrap();
    seed(&ts).await;
    let f = start(&ts, &[]).await;
    let daily = f.timer("daily-analytics").await;
    assert_eq!(daily["ok"], true, "{daily}");
    assert_eq!(daily["data"]["crm"]["purged"], 0, "{daily}");
    assert!(
        daily["data"]["datacube"]["pulled"]["error"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{daily}"
    );
}
