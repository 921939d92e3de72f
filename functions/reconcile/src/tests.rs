//! Function-level tests: the real `reconcile` function value, invoked in-process through
//! `wemint::runtime::testing` with its timer and its `run` action.

use serde_json::{Value, json};
use wemint::identity::{USERS, User, UserRole};
use wemint::runtime::testing::{Caller, Harness, TestStore};

const APPID: &str = "wx-harness-app";

/// The counters of a run that found nothing to do.
fn idle_report() -> Value {
    let step = |name: &str| {
        json!({"step": name, "due": 0, "handled": 0, "deferred": 0, "providerCalls": 0,
            "errors": 0})
    };
    json!({"checked": 0, "paid": 0, "closed": 0, "fulfilled": 0, "refundsRetried": 0,
        "refundsSettled": 0, "refundsRecovered": 0, "holdsReleased": 0, "revoked": 0,
        "shippingUploadsRetried": 0, "shippingUploadsDone": 0, "shippingReminders": 0,
        "errors": 0, "providerCalls": 0,
        "steps": [step("unpaidOrders"), step("interruptedFulfilments"),
            step("refundsInFlight"), step("unrevokedGrants"), step("shippingUploads"),
            step("shippingDeadlines")],
        "complaints": {"due": 0, "reminded": 0, "answered": 0, "deferred": 0,
            "providerCalls": 0, "errors": 0}})
}

async fn reconcile(ts: &TestStore) -> Harness {
    Harness::start(
        super::function(),
        [
            ts.var(),
            (
                "WEMINT_SESSION_SECRET",
                "harness-session-secret-0123456789abcdef".to_owned(),
            ),
            (
                "WEMINT_TRUST_PLATFORM_IDENTITY",
                "cloudbase-event".to_owned(),
            ),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_timer_on_an_empty_store_reports_zero_counters() {
    let ts = TestStore::new().await.unwrap();
    let f = reconcile(&ts).await;
    let reply = f.timer("every-minute").await;
    assert_eq!(reply, json!({"ok": true, "data": idle_report()}));
}

#[tokio::test]
async fn run_is_for_administrators_only() {
    let ts = TestStore::new().await.unwrap();
    with_admin(&ts).await;
    let f = reconcile(&ts).await;

    let anonymous = f.call(&Caller::Anonymous, "run", Value::Null).await;
    assert_eq!(anonymous["error"]["code"], "UNAUTHENTICATED", "{anonymous}");
    let user = f
        .call(&Caller::platform("o-user", APPID), "run", Value::Null)
        .await;
    assert_eq!(user["error"]["code"], "FORBIDDEN", "{user}");
    let by_admin = f
        .call(&Caller::platform("o-admin", APPID), "run", Value::Null)
        .await;
    assert_eq!(by_admin, json!({"ok": true, "data": idle_report()}));
}

async fn with_admin(ts: &TestStore) {
    let admin = User {
        id: "o-admin".into(),
        openid: "o-admin".into(),
        appid: APPID.into(),
        unionid: None,
        phone: None,
        session_key: None,
        session_key_at: None,
        role: UserRole::Admin,
        active_tenant: None,
        created_at: 1_700_000_000,
        last_login_at: 1_700_000_000,
    };
    ts.store()
        .insert(USERS, serde_json::to_value(&admin).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn finance_actions_are_for_administrators_and_check_their_input() {
    let ts = TestStore::new().await.unwrap();
    with_admin(&ts).await;
    let f = reconcile(&ts).await;
    let admin = Caller::platform("o-admin", APPID);
    for action in [
        "billsRun",
        "revenueReport",
        "discrepancies",
        "resolveDiscrepancy",
        "financeExport",
    ] {
        let user = f
            .call(&Caller::platform("o-user", APPID), action, json!({}))
            .await;
        assert_eq!(user["error"]["code"], "FORBIDDEN", "{action}: {user}");
    }
    // No WeChat Pay configured and nothing stored: no bills to read.
    let run = f.call(&admin, "billsRun", json!({})).await;
    assert_eq!(run["error"]["code"], "BILLS_UNAVAILABLE", "{run}");
    let bad = f
        .call(&admin, "billsRun", json!({"date": "2020-01-01"}))
        .await;
    assert_eq!(bad["error"]["code"], "BILL_DATE_INVALID", "{bad}");
    let unknown = f
        .call(&admin, "billsRun", json!({"date": "x", "extra": 1}))
        .await;
    assert_eq!(unknown["error"]["code"], "BAD_REQUEST", "{unknown}");

    let report = f.call(&admin, "revenueReport", json!({})).await;
    assert_eq!(report["data"]["days"], json!([]), "{report}");
    let export = f
        .call(&admin, "financeExport", json!({"what": "revenue"}))
        .await;
    assert_eq!(
        export["data"]["csv"], "date,channel,gross,refunds,fees,net,orders,refundCount,source\n",
        "{export}"
    );
    let wrong = f
        .call(&admin, "financeExport", json!({"what": "everything"}))
        .await;
    assert_eq!(wrong["error"]["code"], "BAD_REQUEST", "{wrong}");
    let missing = f
        .call(
            &admin,
            "resolveDiscrepancy",
            json!({"id": "2024-05-01:refund_unknown:X"}),
        )
        .await;
    assert_eq!(
        missing["error"]["code"], "DISCREPANCY_NOT_FOUND",
        "{missing}"
    );
}
