//! Function-level tests: the real `gatedContent` function value, invoked in-process through
//! `wemint::runtime::testing`, for `subscribeGrant` (subscribe consent by template key).

use serde_json::{Value, json};
use wemint::runtime::testing::{Caller, Harness, TestStore};
use wemint::store::collections::SUBSCRIBE_GRANTS;

const APPID: &str = "wx-harness-app";

/// `gatedContent` with the shipping and post-result templates configured (no renewal reminders,
/// so no WeChat client is needed).
async fn gated(ts: &TestStore) -> Harness {
    let vars = vec![
        ts.var(),
        (
            "WEMINT_SESSION_SECRET",
            "harness-session-secret-0123456789abcdef".to_owned(),
        ),
        (
            "WEMINT_TRUST_PLATFORM_IDENTITY",
            "cloudbase-event".to_owned(),
        ),
        ("WEMINT_SHIPPING_TEMPLATE_ID", "TPL_SHIP".to_owned()),
        ("WEMINT_POST_NOTICE_TEMPLATE", "TPL_POST".to_owned()),
    ];
    Harness::start(super::function(), vars).await.unwrap()
}

async fn credits(ts: &TestStore, id: &str) -> Option<i64> {
    ts.store()
        .get(SUBSCRIBE_GRANTS, id)
        .await
        .unwrap()
        .and_then(|d| d["credits"].as_i64())
}

fn grant(results: Value) -> Value {
    json!({ "results": results })
}

#[tokio::test]
async fn accepted_keys_are_counted_for_the_caller() {
    let ts = TestStore::new().await.unwrap();
    let f = gated(&ts).await;
    let alice = Caller::platform("o-alice", APPID);
    let reply = f
        .call(
            &alice,
            "subscribeGrant",
            grant(
                json!({"shipping": "acceptWithAlert", "postNotice": "accept", "renewal": "accept"}),
            ),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["data"],
        json!({
            "grants": [{"key": "shipping", "templateId": "TPL_SHIP", "credits": 1}],
            "skipped": [
                {"key": "postNotice", "reason": "countedFromPush"},
                {"key": "renewal", "reason": "notConfigured"},
            ],
        })
    );
    assert_eq!(credits(&ts, "o-alice:TPL_SHIP").await, Some(1));
    // The post result is counted from WeChat's push only, never from the client.
    assert_eq!(credits(&ts, "o-alice:TPL_POST").await, None);
    let doc = ts
        .store()
        .get(SUBSCRIBE_GRANTS, "o-alice:TPL_SHIP")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc["openid"], "o-alice");

    // A rejection counts nothing; a second accept adds one.
    let rejected = f
        .call(
            &alice,
            "subscribeGrant",
            grant(json!({"shipping": "reject"})),
        )
        .await;
    assert_eq!(rejected["data"]["grants"], json!([]), "{rejected}");
    f.call(
        &alice,
        "subscribeGrant",
        grant(json!({"shipping": "accept"})),
    )
    .await;
    assert_eq!(credits(&ts, "o-alice:TPL_SHIP").await, Some(2));
}

#[tokio::test]
async fn the_identity_comes_from_the_caller_never_from_the_data() {
    let ts = TestStore::new().await.unwrap();
    let f = gated(&ts).await;
    let anonymous = f
        .call(
            &Caller::Anonymous,
            "subscribeGrant",
            grant(json!({"shipping": "accept"})),
        )
        .await;
    assert_eq!(anonymous["error"]["code"], "UNAUTHENTICATED", "{anonymous}");
    let spoof = f
        .call(
            &Caller::platform("o-mallory", APPID),
            "subscribeGrant",
            json!({"results": {"shipping": "accept"}, "openid": "o-alice"}),
        )
        .await;
    assert_eq!(spoof["error"]["code"], "BAD_REQUEST", "{spoof}");
    assert_eq!(credits(&ts, "o-alice:TPL_SHIP").await, None);
    assert_eq!(credits(&ts, "o-mallory:TPL_SHIP").await, None);
}

#[tokio::test]
async fn unknown_keys_and_bad_input_are_refused_and_change_nothing() {
    let ts = TestStore::new().await.unwrap();
    let f = gated(&ts).await;
    let alice = Caller::platform("o-alice", APPID);
    for (data, code) in [
        (
            grant(json!({"shipping": "accept", "coupon": "accept"})),
            "SUBSCRIBE_TEMPLATE_UNKNOWN",
        ),
        (
            json!({"templateIds": ["TPL_SOMEONE_ELSES"]}),
            "SUBSCRIBE_TEMPLATE_UNKNOWN",
        ),
        (grant(json!({})), "BAD_REQUEST"),
        (grant(json!({"shipping": "accept!"})), "BAD_REQUEST"),
        (grant(json!({"shipping": 1})), "BAD_REQUEST"),
        (
            json!({"results": {"shipping": "accept"}, "templateIds": ["TPL_SHIP"]}),
            "BAD_REQUEST",
        ),
        (json!({}), "BAD_REQUEST"),
        (
            grant(
                json!({"a": "accept", "b": "accept", "c": "accept", "d": "accept", "e": "accept", "f": "accept"}),
            ),
            "BAD_REQUEST",
        ),
    ] {
        let reply = f.call(&alice, "subscribeGrant", data.clone()).await;
        assert_eq!(reply["error"]["code"], code, "{data}: {reply}");
    }
    assert_eq!(credits(&ts, "o-alice:TPL_SHIP").await, None);
}

#[tokio::test]
async fn template_ids_of_known_keys_still_count_and_credits_are_capped() {
    let ts = TestStore::new().await.unwrap();
    let f = gated(&ts).await;
    let alice = Caller::platform("o-alice", APPID);
    let by_id = f
        .call(
            &alice,
            "subscribeGrant",
            json!({"templateIds": ["TPL_SHIP"]}),
        )
        .await;
    assert_eq!(by_id["data"]["grants"][0]["credits"], 1, "{by_id}");
    for _ in 0..30 {
        let reply = f
            .call(
                &alice,
                "subscribeGrant",
                grant(json!({"shipping": "accept"})),
            )
            .await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    assert_eq!(
        credits(&ts, "o-alice:TPL_SHIP").await,
        Some(wemint::wechat::subscribe_grants::CLIENT_CREDIT_CAP)
    );
}
