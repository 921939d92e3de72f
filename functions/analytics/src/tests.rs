//! Function-level tests: the real `analytics` function value, invoked in-process through
//! `wemint::runtime::testing`: `track` with good and bad input, the admin actions and the
//! timers.

use serde_json::json;
use wemint::identity::USERS;
use wemint::runtime::testing::{Caller, Harness, TestStore};

const APPID: &str = "wx-harness-app";

async fn analytics(ts: &TestStore) -> Harness {
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

/// An administrator as `is_stored_admin` reads it (the stored role).
async fn with_admin(ts: &TestStore) {
    let admin = json!({"_id": "o-admin", "openid": "o-admin", "appid": APPID, "role": "admin"});
    ts.store().insert(USERS, admin).await.unwrap();
}

fn user(openid: &str) -> Caller {
    Caller::platform(openid, APPID)
}

#[tokio::test]
async fn track_needs_a_signed_in_caller() {
    let ts = TestStore::new().await.unwrap();
    let f = analytics(&ts).await;
    let reply = f
        .call(&Caller::Anonymous, "track", json!({"events": []}))
        .await;
    assert_eq!(reply["error"]["code"], "UNAUTHENTICATED", "{reply}");
}

#[tokio::test]
async fn track_accepts_valid_events_and_counts_the_rest_without_an_error() {
    let ts = TestStore::new().await.unwrap();
    let f = analytics(&ts).await;
    let events = json!({"events": [
        {"name": "page_view", "at": 1, "props": {"page": "pages/index/index", "durationMs": 1200}},
        {"name": "product_view", "props": {"sku": "tea-01", "extra": "dropped silently"}},
        {"name": "teleport", "props": {}},
        {"name": "add_to_cart", "props": {"sku": "tea-01", "qty": 0}},
        {"name": "add_to_cart", "props": {"sku": "tea-01", "qty": "2"}},
        "not an object",
    ]});
    let reply = f.call(&user("o-1"), "track", events).await;
    assert_eq!(
        reply,
        json!({"ok": true, "data": {"accepted": 2,
            "dropped": {"unknown_event": 1, "bad_type": 3}}})
    );
    // Not even an events list: one bad_type, still a normal reply.
    let reply = f.call(&user("o-1"), "track", json!({"events": 7})).await;
    assert_eq!(
        reply,
        json!({"ok": true, "data": {"accepted": 0, "dropped": {"bad_type": 1}}})
    );
}

#[tokio::test]
async fn admin_actions_are_for_administrators_and_check_their_input() {
    let ts = TestStore::new().await.unwrap();
    with_admin(&ts).await;
    let f = analytics(&ts).await;
    for action in ["dashboard", "aggregateRun"] {
        let reply = f.call(&user("o-user"), action, json!({})).await;
        assert_eq!(reply["error"]["code"], "FORBIDDEN", "{action}: {reply}");
    }
    let admin = user("o-admin");
    let bad = f.call(&admin, "dashboard", json!({"days": 91})).await;
    assert_eq!(bad["error"]["code"], "ANALYTICS_INPUT_INVALID", "{bad}");
    let bad = f
        .call(&admin, "aggregateRun", json!({"date": "2026-13-01"}))
        .await;
    assert_eq!(bad["error"]["code"], "ANALYTICS_INPUT_INVALID", "{bad}");
    let bad = f.call(&admin, "aggregateRun", json!({"day": "x"})).await;
    assert_eq!(bad["error"]["code"], "BAD_REQUEST", "{bad}");
}

#[tokio::test]
async fn tracked_events_show_in_the_dashboard_after_aggregation() {
    let ts = TestStore::new().await.unwrap();
    with_admin(&ts).await;
    let f = analytics(&ts).await;
    for who in ["o-1", "o-2"] {
        let events = json!({"events": [
            {"name": "product_view", "props": {"sku": "tea-01"}},
            {"name": "paywall_view", "props": {"contentId": "c1"}},
        ]});
        let reply = f.call(&user(who), "track", events).await;
        assert_eq!(reply["data"]["accepted"], 2, "{reply}");
    }
    let admin = user("o-admin");
    let dashboard = f.call(&admin, "dashboard", json!({"days": 1})).await;
    let today = dashboard["data"]["to"].as_str().unwrap().to_owned();
    // Not aggregated yet: a zero row.
    assert_eq!(
        dashboard["data"]["days"][0]["productViews"], 0,
        "{dashboard}"
    );
    let run = f.call(&admin, "aggregateRun", json!({"date": today})).await;
    assert_eq!(
        run,
        json!({"ok": true, "data": {"date": today, "events": 4, "facts": 0}})
    );
    let dashboard = f.call(&admin, "dashboard", json!({"days": 1})).await;
    let data = &dashboard["data"];
    assert_eq!(data["days"][0]["visitors"], 2, "{dashboard}");
    assert_eq!(data["days"][0]["productViews"], 2);
    assert_eq!(data["days"][0]["paywallViews"], 2);
    assert_eq!(
        data["funnel"],
        json!([{"sku": "tea-01", "channel": null, "views": 2, "carts": 0, "checkouts": 0,
            "paid": 0}])
    );
    assert_eq!(
        data["topContent"],
        json!([{"contentId": "c1", "views": 2, "unlocks": 0}])
    );
    assert_eq!(
        data["retention"],
        json!([{"cohort": today, "size": 2, "d1": null, "d7": null, "d30": null}])
    );
    assert_eq!(data["wechat"], json!([]));
}

#[tokio::test]
async fn timers_run_on_an_empty_store() {
    let ts = TestStore::new().await.unwrap();
    let f = analytics(&ts).await;
    let minute = f.timer("every-minute").await;
    assert_eq!(
        minute,
        json!({"ok": true, "data": {"facts":
            {"read": 0, "stored": 0, "duplicates": 0, "cursor": 0},
            "crm": {"fold": {"examined": 0, "changed": 0, "more": false},
                    "refold": {"examined": 0, "changed": 0, "more": false}, "push": null}}})
    );
    let daily = f.timer("daily-analytics").await;
    assert_eq!(daily["ok"], true, "{daily}");
    assert_eq!(daily["data"]["aggregated"]["events"], 0);
    assert_eq!(daily["data"]["purged"]["rawDeleted"], 0);
}

#[tokio::test]
async fn the_retention_setting_must_be_a_number_of_days() {
    let ts = TestStore::new().await.unwrap();
    for bad in ["0", "ninety", "3651"] {
        let started = Harness::start(
            super::function(),
            [
                ts.var(),
                (
                    "WEMINT_SESSION_SECRET",
                    "harness-session-secret-0123456789abcdef".to_owned(),
                ),
                ("ANALYTICS_RETENTION_DAYS", bad.to_owned()),
            ],
        )
        .await;
        assert!(started.is_err(), "{bad} accepted");
    }
}
