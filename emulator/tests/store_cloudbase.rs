//! The store conformance suite on the `cloudbase://` backend, against the emulator's stand-in
//! for the CloudBase document-database API (on a loopback port, over an in-memory SQLite
//! store): once with `/commands` `findAndModify`, once with the conditional-PATCH fallback and
//! a tiny server page size. Then faults: under injected 503, 422, 504 and timeouts, writes
//! apply exactly once or fail with an error, never twice.
//!
//! The suite is the same file `shared/tests/store_sqlite.rs` runs (included by path: this
//! test needs the stand-in, which lives in the emulator crate).

#[path = "../../shared/tests/store_conformance/mod.rs"]
mod store_conformance;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wemint::store::cloudbase::{CloudbaseConfig, CloudbaseStore};
use wemint::store::collections::ORDERS;
use wemint::store::{Filter, IndexSpec, Store, StoreError, Update, UpdateOptions};
use wemint_emulator::standins::cloudbase_db::{Fault, ServedAlone, StandInOptions};

const KEY: &str = "test-admin-api-key-0123456789";

async fn stand_in(options: StandInOptions) -> ServedAlone {
    ServedAlone::start(options).await
}

fn config(endpoint: &str, key: &str, timeout: Duration) -> CloudbaseConfig {
    let var = |name: &str| match name {
        "WEMINT_CLOUDBASE_API_KEY" => Some(key.to_owned()),
        "WEMINT_CLOUDBASE_ENDPOINT" => Some(endpoint.to_owned()),
        _ => None,
    };
    let mut config = CloudbaseConfig::from_uri("cloudbase://wemint-test-1a2b", var).unwrap();
    config.request_timeout = timeout;
    config.backoff = Duration::from_millis(5);
    config
}

async fn client(s: &ServedAlone, timeout: Duration) -> Arc<dyn Store> {
    Arc::new(
        CloudbaseStore::connect(config(&s.endpoint, KEY, timeout))
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_with_find_and_modify() {
    let s = stand_in(StandInOptions::new(KEY)).await;
    let store = client(&s, Duration::from_secs(10)).await;
    assert_eq!(store.backend(), "cloudbase");
    store_conformance::run_all(store, "cb").await;
    let stats = s.db.stats();
    assert!(stats["commands:findAndModify"] > 0, "{stats:?}");
    assert!(!stats.contains_key("update"), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_with_conditional_patch_and_small_pages() {
    let mut options = StandInOptions::new(KEY);
    options.find_and_modify = false;
    options.max_page = 7;
    let s = stand_in(options).await;
    let store = client(&s, Duration::from_secs(10)).await;
    store_conformance::run_all(store, "cbp").await;
    let stats = s.db.stats();
    assert_eq!(stats["commands:findAndModify"], 1, "probed once: {stats:?}");
    assert!(stats["update"] > 0, "{stats:?}");
}

async fn order(store: &Arc<dyn Store>, c: &str, id: &str) {
    store
        .insert(
            c,
            json!({"_id": id, "status": "created", "version": 0, "n": 0}),
        )
        .await
        .unwrap();
}

fn pay(id: &str) -> (Filter, Update) {
    (
        Filter::id(id).and(Filter::eq("status", "created")),
        Update::new().set("status", "paid").inc("version", 1),
    )
}

async fn version(store: &Arc<dyn Store>, c: &str, id: &str) -> i64 {
    store.get(c, id).await.unwrap().unwrap()["version"]
        .as_i64()
        .unwrap()
}

/// 503 and 422 are refusals: retried with backoff, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_retried_and_apply_once() {
    for find_and_modify in [true, false] {
        let mut options = StandInOptions::new(KEY);
        options.find_and_modify = find_and_modify;
        let s = stand_in(options).await;
        let store = client(&s, Duration::from_secs(5)).await;
        order(&store, ORDERS, "o1").await;
        let write = if find_and_modify {
            "commands:findAndModify"
        } else {
            "update"
        };
        if !find_and_modify {
            // Settle the probe first, so the faults hit the PATCH.
            store
                .update_one(
                    ORDERS,
                    &Filter::id("none"),
                    &Update::new().set("x", 1),
                    UpdateOptions::default(),
                )
                .await
                .unwrap();
        }
        s.db.inject(Fault::Unavailable, 2, Some(write));
        s.db.inject(Fault::RateLimited, 2, Some(write));
        let (filter, update) = pay("o1");
        let paid = store
            .update_one(ORDERS, &filter, &update, UpdateOptions::default())
            .await
            .unwrap()
            .expect("applied");
        assert_eq!(paid["version"], 1);
        // The fallback's settling update was one PATCH (its filter is an `_id`).
        assert_eq!(s.db.stats()[write], 5 + u64::from(!find_and_modify));
        // Inserts and reads too.
        s.db.inject(Fault::Unavailable, 1, Some("insert"));
        s.db.inject(Fault::RateLimited, 1, Some("getById"));
        order(&store, ORDERS, "o2").await;
        assert_eq!(version(&store, ORDERS, "o2").await, 0);
        assert_eq!(version(&store, ORDERS, "o1").await, 1);
    }
}

/// A write that landed but whose answer was lost (timeout, 504) is found by reading back and
/// reported as done: never applied a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_are_resolved_by_reading_back() {
    for find_and_modify in [true, false] {
        let mut options = StandInOptions::new(KEY);
        options.find_and_modify = find_and_modify;
        options.hang = Duration::from_millis(900);
        let s = stand_in(options).await;
        let store = client(&s, Duration::from_millis(300)).await;
        let write = if find_and_modify {
            "commands:findAndModify"
        } else {
            "update"
        };
        order(&store, ORDERS, "o1").await;
        order(&store, ORDERS, "o2").await;
        store
            .update_one(
                ORDERS,
                &Filter::id("none"),
                &Update::new().set("x", 1),
                UpdateOptions::default(),
            )
            .await
            .unwrap();

        s.db.inject(Fault::Hang { applied: true }, 1, Some(write));
        let (filter, update) = pay("o1");
        let paid = store
            .update_one(ORDERS, &filter, &update, UpdateOptions::default())
            .await
            .unwrap()
            .expect("resolved as applied");
        assert_eq!(paid["status"], "paid");
        assert_eq!(version(&store, ORDERS, "o1").await, 1);

        // An increment is not idempotent: it must not run twice.
        s.db.inject(Fault::GatewayTimeout, 1, Some(write));
        let counted = store
            .update_one(
                ORDERS,
                &Filter::id("o2"),
                &Update::new().inc("n", 1),
                UpdateOptions::default(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counted["n"], 1);
        assert_eq!(store.get(ORDERS, "o2").await.unwrap().unwrap()["n"], 1);

        // Inserts carry their own `_id`: the read back settles them.
        s.db.inject(Fault::Hang { applied: true }, 1, Some("insert"));
        order(&store, ORDERS, "o3").await;
        s.db.inject(Fault::GatewayTimeout, 1, Some("insert"));
        order(&store, ORDERS, "o4").await;
        assert_eq!(store.count(ORDERS, &Filter::All).await.unwrap(), 4);
    }
}

/// A write that did not land and whose answer timed out is an error, not repeated blindly;
/// the data is unchanged and a later try applies it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unapplied_timeouts_fail_cleanly() {
    let mut options = StandInOptions::new(KEY);
    options.hang = Duration::from_millis(900);
    let s = stand_in(options).await;
    let store = client(&s, Duration::from_millis(300)).await;
    order(&store, ORDERS, "o1").await;
    s.db.inject(
        Fault::Hang { applied: false },
        1,
        Some("commands:findAndModify"),
    );
    let err = store
        .update_one(
            ORDERS,
            &Filter::id("o1"),
            &Update::new().inc("n", 1),
            UpdateOptions::default(),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(
        msg.contains("update_one") && msg.contains("`orders`"),
        "{msg}"
    );
    assert!(!msg.contains(KEY), "{msg}");
    assert_eq!(store.get(ORDERS, "o1").await.unwrap().unwrap()["n"], 0);
    let again = store
        .update_one(
            ORDERS,
            &Filter::id("o1"),
            &Update::new().inc("n", 1),
            UpdateOptions::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again["n"], 1);

    // An insert whose first send was lost is sent again once, after a read back.
    s.db.inject(Fault::Hang { applied: false }, 1, Some("insert"));
    order(&store, ORDERS, "o2").await;
    assert_eq!(version(&store, ORDERS, "o2").await, 0);
}

/// Endless refusals end in an error that names the operation and collection, never the key;
/// a wrong key says which variable to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_never_contain_the_key() {
    let s = stand_in(StandInOptions::new(KEY)).await;
    let store = client(&s, Duration::from_secs(5)).await;
    order(&store, ORDERS, "o1").await;
    s.db.inject(Fault::Unavailable, 6, None);
    let err = store
        .update_one(
            ORDERS,
            &Filter::id("o1"),
            &Update::new().set("a", 1),
            UpdateOptions::default(),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("update_one") && msg.contains("`orders`") && msg.contains("503"),
        "{msg}"
    );
    assert!(!msg.contains(KEY), "{msg}");
    assert_eq!(version(&store, ORDERS, "o1").await, 0, "the faults ran out");

    let wrong = CloudbaseStore::connect(config(&s.endpoint, "not-the-key", Duration::from_secs(5)))
        .await
        .unwrap();
    let err = wrong.get(ORDERS, "o1").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("WEMINT_CLOUDBASE_API_KEY") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-key"), "{msg}");
}

/// `/commands` is for administrators: a non-admin token falls back to the conditional PATCH
/// for updates and cannot create indexes (a clear error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_admin_only() {
    let mut options = StandInOptions::new(KEY);
    options.user_key = Some("publishable".into());
    let s = stand_in(options).await;
    let admin = client(&s, Duration::from_secs(5)).await;
    order(&admin, ORDERS, "o1").await;
    let user = CloudbaseStore::connect(config(&s.endpoint, "publishable", Duration::from_secs(5)))
        .await
        .unwrap();
    let (filter, update) = pay("o1");
    let paid = user
        .update_one(ORDERS, &filter, &update, UpdateOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid["version"], 1);
    let err = user
        .ensure_indexes(ORDERS, &[IndexSpec::unique(["outTradeNo"])])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("administrator"), "{err}");
}

/// 16 writers race one state transition and one counter while the stand-in answers some
/// requests with 503, 422, 504 or a hang: the transition happens exactly once, and the
/// counter moves at least once per success and at most once per attempt (never twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_under_faults_never_apply_twice() {
    for find_and_modify in [true, false] {
        let mut options = StandInOptions::new(KEY);
        options.find_and_modify = find_and_modify;
        options.hang = Duration::from_millis(700);
        let s = stand_in(options).await;
        let store = client(&s, Duration::from_millis(250)).await;
        order(&store, ORDERS, "o1").await;
        store
            .update_one(
                ORDERS,
                &Filter::id("none"),
                &Update::new().set("x", 1),
                UpdateOptions::default(),
            )
            .await
            .unwrap();
        let write = if find_and_modify {
            "commands:findAndModify"
        } else {
            "update"
        };
        s.db.inject(Fault::Unavailable, 3, Some(write));
        s.db.inject(Fault::GatewayTimeout, 2, Some(write));
        s.db.inject(Fault::RateLimited, 3, Some(write));
        s.db.inject(Fault::Hang { applied: true }, 2, Some(write));
        s.db.inject(Fault::Hang { applied: false }, 2, Some(write));
        let mut tasks = Vec::new();
        for writer in 0..16_i64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let (filter, update) = pay("o1");
                let paid = store
                    .update_one(
                        ORDERS,
                        &filter,
                        &update.set("paid_by", writer),
                        UpdateOptions::default(),
                    )
                    .await;
                let counted = store
                    .update_one(
                        ORDERS,
                        &Filter::id("o1"),
                        &Update::new().inc("n", 1),
                        UpdateOptions::default(),
                    )
                    .await;
                (paid, counted.is_ok())
            }));
        }
        let (mut winners, mut counted_ok) = (Vec::new(), 0);
        for task in tasks {
            let (paid, counted) = task.await.unwrap();
            if let Ok(Some(doc)) = paid {
                winners.push(doc);
            }
            counted_ok += i64::from(counted);
        }
        let stored = store.get(ORDERS, "o1").await.unwrap().unwrap();
        assert_eq!(stored["status"], "paid");
        assert_eq!(stored["version"], 1, "the transition applied exactly once");
        assert!(winners.len() <= 1, "{winners:?}");
        if let Some(winner) = winners.first() {
            assert_eq!(winner["paid_by"], stored["paid_by"]);
        }
        let n = stored["n"].as_i64().unwrap();
        assert!(
            (counted_ok..=16).contains(&n),
            "n = {n}, {counted_ok} reported done"
        );
    }
}

/// The wire format the client relies on, straight from the stand-in: strict EJSON out and
/// the documented codes and statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_speaks_the_documented_wire_format() {
    let mut options = StandInOptions::new(KEY);
    options.user_key = Some("publishable".into());
    let s = stand_in(options).await;
    let http = reqwest::Client::new();
    let db = format!(
        "{}/v1/database/instances/(default)/databases/(default)",
        s.endpoint
    );
    let call = |method: reqwest::Method,
                url: String,
                key: &'static str,
                body: Option<serde_json::Value>| {
        let mut request = http.request(method, url).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let docs = format!("{db}/collections/orders/documents");
    let (status, body) = call(
        reqwest::Method::POST,
        docs.clone(),
        KEY,
        Some(json!({"data": [{"_id": "a"}]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_COLLECTION_NOT_EXIST"))
    );
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{db}/collections"),
        "publishable",
        Some(json!({"collectionName": ORDERS})),
    )
    .await;
    assert_eq!(status, 401, "creating collections is admin only");
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{db}/collections"),
        KEY,
        Some(json!({"collectionName": ORDERS})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{db}/collections"),
        KEY,
        Some(json!({"collectionName": ORDERS})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("DATABASE_COLLECTION_ALREADY_EXIST"))
    );
    let doc = json!({"_id": "a", "n": 5, "f": 1.5, "big": {"$numberLong": "9007199254740993"}});
    let (status, body) = call(
        reqwest::Method::POST,
        docs.clone(),
        "publishable",
        Some(json!({"data": [doc]})),
    )
    .await;
    assert_eq!((status, body), (201, json!({"insertedIds": ["a"]})));
    let (status, body) = call(
        reqwest::Method::POST,
        docs.clone(),
        KEY,
        Some(json!({"data": [{"_id": "a"}]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("DATABASE_DUPLICATE_WRITE"))
    );
    assert!(
        body["message"].as_str().unwrap().contains("index: _id_"),
        "{body}"
    );
    let (status, body) = call(reqwest::Method::GET, format!("{docs}/a"), KEY, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"_id": "a", "n": {"$numberLong": "5"}, "f": {"$numberDouble": "1.5"}, "big": {"$numberLong": "9007199254740993"}})
    );
    let (status, body) = call(reqwest::Method::GET, format!("{docs}/zz"), KEY, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DOCUMENT_NOT_FOUND"))
    );
    let (status, body) = call(
        reqwest::Method::GET,
        format!("{docs}?count=true"),
        KEY,
        None,
    )
    .await;
    assert_eq!((status, body), (200, json!({"total": 1})));
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{docs}/remove"),
        KEY,
        Some(json!({"query": {}, "multi": true})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_PARAM"))
    );
    let command = json!({"commands": [{"findAndModify": ORDERS, "query": {"_id": "a"}, "update": {"$inc": {"n": 1}}, "new": true}]});
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{db}/commands"),
        "publishable",
        Some(command.clone()),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("DATABASE_PERMISSION_DENIED"))
    );
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{db}/commands"),
        KEY,
        Some(command),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["list"][0]["value"]["n"], json!({"$numberLong": "6"}));
    let stats = s.db.stats();
    assert_eq!(stats["insert"], 3);
    assert_eq!(stats["count"], 1);
    assert_eq!(stats["commands:findAndModify"], 2);
}
