//! The store conformance suite: every backend runs exactly these checks through
//! `Arc<dyn Store>`. Each case uses its own collections under `prefix`, so a shared database
//! (MongoDB) can run it without clean-up between runs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wemint::store::{
    Filter, FindOptions, IndexSpec, MAX_DEPTH, Store, StoreError, Update, UpdateOptions,
};

/// Runs every case against `store`.
pub(crate) async fn run_all(store: Arc<dyn Store>, prefix: &str) {
    crud(&store, &format!("{prefix}_crud")).await;
    filters(&store, &format!("{prefix}_filters")).await;
    differential_filters(&store, &format!("{prefix}_differential")).await;
    sort_limit_skip(&store, &format!("{prefix}_sort")).await;
    updates(&store, &format!("{prefix}_updates")).await;
    upserts(&store, &format!("{prefix}_upserts")).await;
    bad_input_changes_nothing(&store, &format!("{prefix}_bad")).await;
    unique_indexes(&store, &format!("{prefix}_unique")).await;
    concurrent_state_transition(&store, &format!("{prefix}_race")).await;
    concurrent_increments(&store, &format!("{prefix}_incs")).await;
    upsert_race(&store, &format!("{prefix}_upsert_race")).await;
    large_and_deep_documents(&store, &format!("{prefix}_large")).await;
    unicode(&store, &format!("{prefix}_unicode")).await;
    typed_helpers(&store, &format!("{prefix}_typed")).await;
}

fn ids(docs: &[Value]) -> Vec<&str> {
    docs.iter()
        .map(|d| d["_id"].as_str().expect("string _id"))
        .collect()
}

async fn find_ids(store: &Arc<dyn Store>, c: &str, filter: Filter) -> Vec<String> {
    let docs = store
        .find(c, &filter, &FindOptions::new())
        .await
        .unwrap_or_else(|e| panic!("{filter:?}: {e}"));
    ids(&docs).into_iter().map(str::to_owned).collect()
}

pub(crate) async fn crud(store: &Arc<dyn Store>, c: &str) {
    assert_eq!(
        store.get(c, "nope").await.unwrap(),
        None,
        "missing collection reads as empty"
    );
    assert_eq!(store.count(c, &Filter::All).await.unwrap(), 0);
    assert!(
        store
            .find(c, &Filter::All, &FindOptions::new())
            .await
            .unwrap()
            .is_empty()
    );

    let generated = store
        .insert(c, json!({"name": "first", "n": 1}))
        .await
        .unwrap();
    assert_eq!(generated.len(), 26);
    assert!(
        generated.bytes().all(|b| b.is_ascii_alphanumeric()),
        "URL-safe: {generated}"
    );
    let later = store.insert(c, json!({"name": "second"})).await.unwrap();
    assert!(
        later >= generated,
        "ids sort by creation time: {generated} then {later}"
    );
    let given = store
        .insert(c, json!({"_id": "given", "name": "third", "n": 3}))
        .await
        .unwrap();
    assert_eq!(given, "given");

    let doc = store.get(c, &generated).await.unwrap().unwrap();
    assert_eq!(doc, json!({"_id": generated, "name": "first", "n": 1}));
    assert_eq!(
        store.get(c, "given").await.unwrap().unwrap()["name"],
        "third"
    );

    let dup = store.insert(c, json!({"_id": "given"})).await.unwrap_err();
    match dup {
        StoreError::DuplicateKey { collection, index } => {
            assert_eq!(collection, c);
            assert_eq!(index, "_id_");
        }
        other => panic!("expected DuplicateKey, got {other:?}"),
    }

    assert_eq!(store.count(c, &Filter::All).await.unwrap(), 3);
    assert_eq!(store.count(c, &Filter::exists("n", true)).await.unwrap(), 2);
    assert!(store.delete_one(c, &Filter::id("given")).await.unwrap());
    assert!(!store.delete_one(c, &Filter::id("given")).await.unwrap());
    assert_eq!(store.get(c, "given").await.unwrap(), None);
    assert_eq!(store.delete_many(c, &Filter::All).await.unwrap(), 2);
    assert_eq!(store.count(c, &Filter::All).await.unwrap(), 0);

    // With several matches, update_one and delete_one take the first in `_id` order.
    for id in ["m3", "m1", "m2"] {
        store.insert(c, json!({"_id": id, "k": 1})).await.unwrap();
    }
    let updated = store
        .update_one(
            c,
            &Filter::eq("k", 1),
            &Update::new().set("hit", true),
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(updated.unwrap()["_id"], "m1");
    assert!(store.delete_one(c, &Filter::eq("k", 1)).await.unwrap());
    assert_eq!(find_ids(store, c, Filter::All).await, ["m2", "m3"]);
    assert_eq!(
        store
            .find_one(c, &Filter::eq("k", 1))
            .await
            .unwrap()
            .unwrap()["_id"],
        "m2"
    );
}

pub(crate) async fn filters(store: &Arc<dyn Store>, c: &str) {
    let big = 9_007_199_254_740_993_i64; // 2^53 + 1: not representable as f64
    for doc in [
        json!({"_id": "a", "n": 1, "s": "apple", "tags": ["x", "y"], "nested": {"k": "v", "deep": {"z": 1}}, "flag": true, "nul": null}),
        json!({"_id": "b", "n": 2, "s": "banana", "nested": {"k": "w"}, "flag": false, "items": [{"sku": "p1", "q": 1}, 2, null, true, "x"]}),
        json!({"_id": "c", "n": 3, "s": "cherry", "big": big}),
        json!({"_id": "d", "n": "3", "s": "2"}),
        json!({"_id": "e", "n": 2.5}),
    ] {
        store.insert(c, doc).await.unwrap();
    }
    let cases: Vec<(Filter, Vec<&str>)> = vec![
        (Filter::All, vec!["a", "b", "c", "d", "e"]),
        (Filter::eq("n", 2), vec!["b"]),
        (Filter::eq("n", 2.0), vec!["b"]),
        (Filter::eq("n", "3"), vec!["d"]),
        (Filter::eq("n", 3), vec!["c"]),
        (Filter::eq("flag", true), vec!["a"]),
        (Filter::eq("flag", 1), vec![]),
        (Filter::eq("nested.k", "v"), vec!["a"]),
        (Filter::eq("nested.deep.z", 1), vec!["a"]),
        (Filter::eq("nested", json!({"k": "w"})), vec!["b"]),
        (Filter::eq("tags", json!(["x", "y"])), vec!["a"]),
        (Filter::eq("tags", "x"), vec![]),
        (Filter::eq("nul", Value::Null), vec!["a", "b", "c", "d", "e"]),
        (Filter::eq("flag", Value::Null), vec!["c", "d", "e"]),
        (Filter::eq("big", big), vec!["c"]),
        (Filter::eq("big", big - 1), vec![]),
        (Filter::gt("big", big - 1), vec!["c"]),
        (Filter::lt("big", big), vec![]),
        (Filter::id("c"), vec!["c"]),
        (Filter::ne("n", 2), vec!["a", "c", "d", "e"]),
        (Filter::ne("flag", true), vec!["b", "c", "d", "e"]),
        (Filter::ne("nested.k", "v"), vec!["b", "c", "d", "e"]),
        (Filter::is_in("n", [1, 3]), vec!["a", "c"]),
        (Filter::is_in("s", ["apple", "2"]), vec!["a", "d"]),
        (Filter::is_in("_id", ["b", "e", "zz"]), vec!["b", "e"]),
        (Filter::is_in("n", Vec::<i64>::new()), vec![]),
        (Filter::gt("n", 1), vec!["b", "c", "e"]),
        (Filter::gte("n", 2), vec!["b", "c", "e"]),
        (Filter::lt("n", 2.5), vec!["a", "b"]),
        (Filter::lte("n", 2.5), vec!["a", "b", "e"]),
        (Filter::gt("s", "b"), vec!["b", "c"]),
        (Filter::lt("s", "b"), vec!["a", "d"]),
        (Filter::gte("_id", "d"), vec!["d", "e"]),
        (Filter::exists("nested", true), vec!["a", "b"]),
        (Filter::contains("tags", "x"), vec!["a"]),
        (Filter::contains("tags", "z"), vec![]),
        (Filter::contains("s", "a"), vec![]),
        (Filter::contains("nested", "v"), vec![]),
        (Filter::contains("items", json!({"sku": "p1", "q": 1})), vec!["b"]),
        (Filter::contains("items", json!({"q": 1, "sku": "p1"})), vec![]),
        (Filter::contains("items", 2.0), vec!["b"]),
        (Filter::contains("items", Value::Null), vec!["b"]),
        (Filter::contains("items", true), vec!["b"]),
        (Filter::contains("items", 1), vec![]),
        (Filter::contains("items", "x").and(Filter::contains("tags", "x")), vec![]),
        (Filter::exists("nul", true), vec!["a"]),
        (Filter::exists("big", false), vec!["a", "b", "d", "e"]),
        (Filter::exists("nested.deep.z", true), vec!["a"]),
        (Filter::eq("s", "apple").or(Filter::eq("n", 3)), vec!["a", "c"]),
        (Filter::all_of([Filter::gt("n", 1), Filter::lt("n", 3)]), vec!["b", "e"]),
        (Filter::gt("n", 1).and(Filter::ne("s", "banana")).or(Filter::id("a")), vec!["a", "c", "e"]),
        (Filter::any_of([]), vec![]),
        (Filter::all_of([]), vec!["a", "b", "c", "d", "e"]),
        (
            Filter::from_json(&json!({"n": {"$gte": 2}, "s": {"$ne": "banana"}, "$or": [{"_id": "c"}, {"_id": "e"}]})).unwrap(),
            vec!["c", "e"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            find_ids(store, c, filter.clone()).await,
            expected,
            "{filter:?}"
        );
        assert_eq!(
            store.count(c, &filter).await.unwrap(),
            expected.len() as u64,
            "count {filter:?}"
        );
    }
    // Integers come back as exact integers.
    assert_eq!(
        store.get(c, "c").await.unwrap().unwrap()["big"].as_i64(),
        Some(big)
    );
}

pub(crate) async fn sort_limit_skip(store: &Arc<dyn Store>, c: &str) {
    for doc in [
        json!({"_id": "1", "g": "x", "n": 3}),
        json!({"_id": "2", "g": "y", "n": 1}),
        json!({"_id": "3", "g": "x", "n": 2}),
        json!({"_id": "4", "g": "y", "n": 2, "m": {"k": 9}}),
        json!({"_id": "5", "g": "x", "m": {"k": 1}}),
    ] {
        store.insert(c, doc).await.unwrap();
    }
    let run = |options: FindOptions| {
        let store = Arc::clone(store);
        let c = c.to_owned();
        async move {
            let docs = store.find(&c, &Filter::All, &options).await.unwrap();
            ids(&docs)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        run(FindOptions::new().sort_asc("n")).await,
        ["5", "2", "3", "4", "1"]
    );
    assert_eq!(
        run(FindOptions::new().sort_desc("n")).await,
        ["1", "3", "4", "2", "5"]
    );
    assert_eq!(
        run(FindOptions::new().sort_asc("g").sort_desc("n")).await,
        ["1", "3", "5", "4", "2"]
    );
    assert_eq!(
        run(FindOptions::new().sort_desc("m.k")).await,
        ["4", "5", "1", "2", "3"]
    );
    assert_eq!(
        run(FindOptions::new().sort_desc("_id")).await,
        ["5", "4", "3", "2", "1"]
    );
    assert_eq!(
        run(FindOptions::new().sort_asc("n").skip(1).limit(2)).await,
        ["2", "3"]
    );
    assert_eq!(run(FindOptions::new().skip(4)).await, ["5"]);
    assert!(run(FindOptions::new().skip(10)).await.is_empty());
    assert!(run(FindOptions::new().limit(0)).await.is_empty());
    let filtered = store
        .find(
            c,
            &Filter::eq("g", "y"),
            &FindOptions::new().sort_desc("n").limit(1),
        )
        .await
        .unwrap();
    assert_eq!(ids(&filtered), ["4"]);
}

pub(crate) async fn updates(store: &Arc<dyn Store>, c: &str) {
    let big = 9_007_199_254_740_993_i64;
    store
        .insert(c, json!({"_id": "o", "status": "created", "amount": big, "rate": 1.5, "log": ["new"], "meta": {"a": 1}, "drop": 1}))
        .await
        .unwrap();
    let none = store
        .update_one(
            c,
            &Filter::id("o").and(Filter::eq("status", "paid")),
            &Update::new().set("x", 1),
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(none, None, "condition not met: nothing matched");
    assert!(
        store
            .update_one(
                &format!("{c}_missing"),
                &Filter::All,
                &Update::new().set("x", 1),
                UpdateOptions::default()
            )
            .await
            .unwrap()
            .is_none()
    );

    let after = store
        .update_one(
            c,
            &Filter::id("o").and(Filter::eq("status", "created")),
            &Update::new()
                .set("status", "paid")
                .set("meta.b.c", "deep")
                .inc("amount", 2)
                .inc("rate", 1)
                .inc("version", 1)
                .push("log", json!({"event": "paid"}))
                .push("fresh", 1)
                .unset("drop")
                .unset("never.there")
                .set_on_insert("only_on_insert", true),
            UpdateOptions::default(),
        )
        .await
        .unwrap()
        .expect("matched");
    let expected = json!({
        "_id": "o", "status": "paid", "amount": big + 2, "rate": 2.5, "log": ["new", {"event": "paid"}],
        "meta": {"a": 1, "b": {"c": "deep"}}, "version": 1, "fresh": [1]
    });
    assert_eq!(after, expected);
    assert_eq!(
        after["amount"].as_i64(),
        Some(9_007_199_254_740_995),
        "integer $inc stays exact"
    );
    assert_eq!(
        store.get(c, "o").await.unwrap().unwrap(),
        expected,
        "returned document is the stored one"
    );

    let negative = store
        .update_one(
            c,
            &Filter::id("o"),
            &Update::new().inc("amount", -big),
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(negative.unwrap()["amount"], json!(2));
}

pub(crate) async fn upserts(store: &Arc<dyn Store>, c: &str) {
    let filter = Filter::eq("key", "k").and(Filter::eq("scope.tenant", "t1"));
    let update = Update::new()
        .inc("count", 1)
        .set("last", "x")
        .set_on_insert("created_at", 5);
    let first = store
        .update_one(c, &filter, &update, UpdateOptions::upsert())
        .await
        .unwrap()
        .unwrap();
    let id = first["_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 26, "generated string id, never an ObjectId");
    assert_eq!(
        first,
        json!({"_id": id, "key": "k", "scope": {"tenant": "t1"}, "count": 1, "last": "x", "created_at": 5})
    );
    let update2 = Update::new()
        .inc("count", 1)
        .set("last", "y")
        .set_on_insert("created_at", 6);
    let second = store
        .update_one(c, &filter, &update2, UpdateOptions::upsert())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        second,
        json!({"_id": id, "key": "k", "scope": {"tenant": "t1"}, "count": 2, "last": "y", "created_at": 5})
    );
    assert_eq!(store.count(c, &Filter::All).await.unwrap(), 1);

    let by_id = store
        .update_one(
            c,
            &Filter::id("fixed"),
            &Update::new().push("items", "a"),
            UpdateOptions::upsert(),
        )
        .await
        .unwrap();
    assert_eq!(by_id.unwrap(), json!({"_id": "fixed", "items": ["a"]}));
    let given = store
        .update_one(
            c,
            &Filter::eq("key", "z"),
            &Update::new().set_on_insert("_id", "chosen").set("v", 1),
            UpdateOptions::upsert(),
        )
        .await
        .unwrap();
    assert_eq!(given.unwrap(), json!({"_id": "chosen", "key": "z", "v": 1}));
    assert_eq!(store.count(c, &Filter::All).await.unwrap(), 3);
}

/// Each bad request fails with the right error and leaves the stored document as it was.
pub(crate) async fn bad_input_changes_nothing(store: &Arc<dyn Store>, c: &str) {
    let original = json!({"_id": "d", "s": "text", "n": i64::MAX, "list": [1], "obj": {"a": 1}});
    store.insert(c, original.clone()).await.unwrap();
    let target = Filter::id("d");
    let bad_updates = [
        Update::new().inc("s", 1),
        Update::new().inc("obj", 1),
        Update::new().inc("n", 1),
        Update::new().push("s", 1),
        Update::new().set("s.inner", 1),
        Update::new(),
        Update::new().set("a", 1).inc("a", 1),
        Update::new().set("obj", 1).set("obj.a", 2),
        Update::new().set("_id", "other"),
        Update::new().set("x", json!({"$where": 1})),
        Update::new().set("bad path", 1),
        Update::new().set("ok", 1).inc("s", 1),
    ];
    for update in bad_updates {
        let err = store
            .update_one(c, &target, &update, UpdateOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidUpdate(_)),
            "{update:?}: {err:?}"
        );
        assert!(!err.to_string().is_empty());
        assert_eq!(
            store.get(c, "d").await.unwrap().unwrap(),
            original,
            "{update:?} changed the document"
        );
    }
    let upsert_err = store
        .update_one(
            c,
            &Filter::id("new"),
            &Update::new().set("k", json!({"$x": 1})),
            UpdateOptions::upsert(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(upsert_err, StoreError::InvalidUpdate(_)),
        "{upsert_err:?}"
    );

    for doc in [
        json!("not an object"),
        json!([{"a": 1}]),
        json!({"_id": 5}),
        json!({"_id": ""}),
        json!({"$set": {"a": 1}}),
        json!({"a.b": 1}),
        json!({"big": u64::MAX}),
    ] {
        let err = store.insert(c, doc.clone()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidDocument(_)),
            "{doc}: {err:?}"
        );
    }
    for filter in [
        Filter::eq("bad path", 1),
        Filter::eq("items.0", 1),
        Filter::gt("n", true),
        Filter::gt("n", json!({"a": 1})),
        Filter::eq("a", json!({"$gt": 1})),
    ] {
        let err = store
            .find(c, &filter, &FindOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidQuery(_)),
            "{filter:?}: {err:?}"
        );
        let err = store.delete_many(c, &filter).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidQuery(_)),
            "{filter:?}: {err:?}"
        );
    }
    let err = Filter::from_json(&json!({"s": {"$regex": "^t"}})).unwrap_err();
    assert!(err.to_string().contains("$regex"), "{err}");
    let err = store
        .find(c, &Filter::All, &FindOptions::new().sort_asc("no good"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidQuery(_)), "{err:?}");
    for name in [
        "",
        "has space",
        "has.dot",
        "sqlite_master",
        "x'; DROP TABLE y; --",
    ] {
        let err = store.insert(name, json!({})).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidQuery(_)),
            "{name}: {err:?}"
        );
    }
    assert_eq!(store.count(c, &Filter::All).await.unwrap(), 1);
    assert_eq!(store.get(c, "d").await.unwrap().unwrap(), original);
}

pub(crate) async fn unique_indexes(store: &Arc<dyn Store>, c: &str) {
    let indexes = [
        IndexSpec::unique(["email"]),
        IndexSpec::unique(["owner", "req"]),
        IndexSpec::non_unique(["created_at"]),
    ];
    store.ensure_indexes(c, &indexes).await.unwrap();
    store.ensure_indexes(c, &indexes).await.unwrap();

    store
        .insert(
            c,
            json!({"_id": "1", "email": "a@x", "owner": "o1", "req": "r1"}),
        )
        .await
        .unwrap();
    let expect_dup = |result: Result<String, StoreError>, index: &str| match result {
        Err(StoreError::DuplicateKey {
            collection,
            index: got,
        }) => {
            assert_eq!(collection, c);
            assert_eq!(got, index);
        }
        other => panic!("expected DuplicateKey on {index}, got {other:?}"),
    };
    expect_dup(store.insert(c, json!({"email": "a@x"})).await, "email_1");
    expect_dup(
        store.insert(c, json!({"owner": "o1", "req": "r1"})).await,
        "owner_1_req_1",
    );
    store
        .insert(c, json!({"_id": "2", "owner": "o1", "req": "r2"}))
        .await
        .unwrap();
    store
        .insert(c, json!({"_id": "3", "owner": "o2", "req": "r1"}))
        .await
        .unwrap();
    // Documents without the indexed fields are not indexed.
    store.insert(c, json!({"_id": "4"})).await.unwrap();
    store
        .insert(c, json!({"_id": "5", "owner": "o1"}))
        .await
        .unwrap();

    // An update that would collide fails and changes nothing.
    let err = store
        .update_one(
            c,
            &Filter::id("2"),
            &Update::new().set("req", "r1"),
            UpdateOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateKey { index, .. } if index == "owner_1_req_1"),
        "{err:?}"
    );
    assert_eq!(store.get(c, "2").await.unwrap().unwrap()["req"], "r2");
    let err = store
        .update_one(
            c,
            &Filter::id("new"),
            &Update::new().set("email", "a@x"),
            UpdateOptions::upsert(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateKey { index, .. } if index == "email_1"),
        "{err:?}"
    );
    assert_eq!(store.get(c, "new").await.unwrap(), None);
    assert_eq!(store.count(c, &Filter::All).await.unwrap(), 5);

    // Redeclaring a name with another definition is refused.
    let err = store
        .ensure_indexes(c, &[IndexSpec::unique(["other"]).named("email_1")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidQuery(_)), "{err:?}");
    // A unique index cannot be created over existing duplicates.
    let dups = format!("{c}_dups");
    store.insert(&dups, json!({"k": 1})).await.unwrap();
    store.insert(&dups, json!({"k": 1})).await.unwrap();
    let err = store
        .ensure_indexes(&dups, &[IndexSpec::unique(["k"])])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err:?}");
}

const WRITERS: usize = 16;

/// 16 writers try the same state transition; exactly one wins.
pub(crate) async fn concurrent_state_transition(store: &Arc<dyn Store>, c: &str) {
    for round in 0..5 {
        let id = format!("order{round}");
        store
            .insert(c, json!({"_id": id, "status": "created", "version": 0}))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let (store, c, id) = (Arc::clone(store), c.to_owned(), id.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .update_one(
                        &c,
                        &Filter::id(id).and(Filter::eq("status", "created")),
                        &Update::new()
                            .set("status", "paid")
                            .set("paid_by", writer as i64)
                            .inc("version", 1),
                        UpdateOptions::default(),
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(doc) = task.await.unwrap() {
                winners.push(doc);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one writer wins round {round}");
        let stored = store.get(c, &id).await.unwrap().unwrap();
        assert_eq!(stored["version"], 1);
        assert_eq!(stored["paid_by"], winners[0]["paid_by"]);
    }
}

/// 16 writers increment one counter; no increment is lost.
pub(crate) async fn concurrent_increments(store: &Arc<dyn Store>, c: &str) {
    store
        .insert(c, json!({"_id": "counter", "n": 0}))
        .await
        .unwrap();
    let per_writer = 25;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, c) = (Arc::clone(store), c.to_owned());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                store
                    .update_one(
                        &c,
                        &Filter::id("counter"),
                        &Update::new().inc("n", 1),
                        UpdateOptions::default(),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let doc = store.get(c, "counter").await.unwrap().unwrap();
    assert_eq!(doc["n"].as_i64(), Some((WRITERS * per_writer) as i64));
}

/// 16 writers upsert the same key (declared unique, as upserted keys must be): one document,
/// every increment counted.
pub(crate) async fn upsert_race(store: &Arc<dyn Store>, c: &str) {
    store
        .ensure_indexes(c, &[IndexSpec::unique(["key"])])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, c) = (Arc::clone(store), c.to_owned());
        tasks.push(tokio::spawn(async move {
            store
                .update_one(
                    &c,
                    &Filter::eq("key", "k"),
                    &Update::new().inc("hits", 1).set_on_insert("first", true),
                    UpdateOptions::upsert(),
                )
                .await
                .unwrap()
                .unwrap()
        }));
    }
    let mut seen_ids = std::collections::HashSet::new();
    for task in tasks {
        seen_ids.insert(task.await.unwrap()["_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen_ids.len(), 1, "every upsert saw the same document");
    let docs = store
        .find(c, &Filter::All, &FindOptions::new())
        .await
        .unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["hits"].as_i64(), Some(WRITERS as i64));
    assert_eq!(docs[0]["first"], true);
}

pub(crate) async fn large_and_deep_documents(store: &Arc<dyn Store>, c: &str) {
    let blob: String = (0..1_000_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let items: Vec<Value> = (0..2_000)
        .map(|i| json!({"i": i, "name": format!("item {i}")}))
        .collect();
    let large = json!({"_id": "large", "blob": blob, "items": items});
    store.insert(c, large.clone()).await.unwrap();
    assert_eq!(store.get(c, "large").await.unwrap().unwrap(), large);
    let updated = store
        .update_one(
            c,
            &Filter::id("large"),
            &Update::new().push("items", json!({"i": 2000})),
            UpdateOptions::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated["items"].as_array().unwrap().len(), 2_001);
    assert_eq!(updated["blob"].as_str().unwrap().len(), 1_000_000);

    // MAX_DEPTH levels of objects in total (the document itself is level 1).
    let mut deep = json!("bottom");
    for _ in 0..MAX_DEPTH - 1 {
        deep = json!({ "d": deep });
    }
    let doc = json!({"_id": "deep", "d": deep});
    store.insert(c, doc.clone()).await.unwrap();
    assert_eq!(store.get(c, "deep").await.unwrap().unwrap(), doc);
    let path = vec!["d"; MAX_DEPTH].join(".");
    assert_eq!(
        find_ids(store, c, Filter::eq(&*path, "bottom")).await,
        ["deep"]
    );
    let too_deep = json!({"_id": "too_deep", "d": {"d": deep}});
    assert!(matches!(
        store.insert(c, too_deep).await,
        Err(StoreError::InvalidDocument(_))
    ));
}

pub(crate) async fn unicode(store: &Arc<dyn Store>, c: &str) {
    let tricky = "引号\"反斜杠\\换行\n制表\t控制\u{1}\u{1f}斜杠/ \u{2028} 😀 é Ａ";
    let doc = json!({"_id": "用户-1", "名字": "张三", "tricky": tricky, "emoji": "😀", "嵌套": {"键": "值"}});
    store.insert(c, doc.clone()).await.unwrap();
    assert_eq!(store.get(c, "用户-1").await.unwrap().unwrap(), doc);
    assert_eq!(
        find_ids(store, c, Filter::eq("tricky", tricky)).await,
        ["用户-1"]
    );
    assert_eq!(
        find_ids(store, c, Filter::eq("名字", "张三")).await,
        ["用户-1"]
    );
    assert_eq!(
        find_ids(store, c, Filter::eq("嵌套.键", "值")).await,
        ["用户-1"]
    );
    for (id, word) in [
        ("w1", "z"),
        ("w2", "é"),
        ("w3", "中"),
        ("w4", "Ａ"),
        ("w5", "😀"),
        ("w6", "a"),
    ] {
        store
            .insert(c, json!({"_id": id, "w": word}))
            .await
            .unwrap();
    }
    // Strings order by UTF-8 bytes (code points) in every backend.
    let sorted = store
        .find(
            c,
            &Filter::exists("w", true),
            &FindOptions::new().sort_asc("w"),
        )
        .await
        .unwrap();
    assert_eq!(ids(&sorted), ["w6", "w1", "w2", "w3", "w4", "w5"]);
    let updated = store
        .update_one(
            c,
            &Filter::eq("名字", "张三"),
            &Update::new().set("名字", "李四").push("标签", "✓"),
            UpdateOptions::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated["名字"], "李四");
    assert_eq!(updated["标签"], json!(["✓"]));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    #[serde(rename = "_id")]
    id: String,
    status: String,
    amount_fen: i64,
    owner: String,
}

pub(crate) async fn typed_helpers(store: &Arc<dyn Store>, c: &str) {
    let order = Order {
        id: "t1".into(),
        status: "created".into(),
        amount_fen: 1999,
        owner: "o".into(),
    };
    assert_eq!(store.insert_as(c, &order).await.unwrap(), "t1");
    assert_eq!(
        store.get_as::<Order>(c, "t1").await.unwrap(),
        Some(order.clone())
    );
    let paid: Option<Order> = store
        .update_one_as(
            c,
            &Filter::id("t1").and(Filter::eq("status", "created")),
            &Update::new().set("status", "paid"),
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(paid.unwrap().status, "paid");
    let found: Vec<Order> = store
        .find_as(c, &Filter::eq("owner", "o"), &FindOptions::new())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        store
            .find_one_as::<Order>(c, &Filter::eq("owner", "nobody"))
            .await
            .unwrap(),
        None
    );
    store
        .insert(c, json!({"_id": "t2", "status": 5}))
        .await
        .unwrap();
    let err = store.get_as::<Order>(c, "t2").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidDocument(_)), "{err:?}");
    assert!(matches!(
        store.insert_as(c, &vec![1, 2]).await,
        Err(StoreError::InvalidDocument(_))
    ));
}

/// A small deterministic generator (xorshift64*), so every backend sees the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize].clone()
    }
}

fn field_values() -> Vec<Option<Value>> {
    vec![
        None,
        Some(Value::Null),
        Some(json!(true)),
        Some(json!(false)),
        Some(json!(0)),
        Some(json!(1)),
        Some(json!(2)),
        Some(json!(-1)),
        Some(json!(1.5)),
        Some(json!(2.0)),
        Some(json!("")),
        Some(json!("a")),
        Some(json!("b")),
        Some(json!("ab")),
        Some(json!("中")),
        Some(json!([1, 2])),
        Some(json!(["a"])),
        Some(json!([])),
        Some(json!({"x": 1})),
        Some(json!({"x": "a"})),
        Some(json!([{"x": 1}])),
        Some(json!([null, "a", true, 2])),
    ]
}

fn operands() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(2),
        json!(-1),
        json!(1.5),
        json!(2.0),
        json!(""),
        json!("a"),
        json!("b"),
        json!("中"),
        json!([1, 2]),
        json!(["a"]),
        json!([]),
        json!({"x": 1}),
    ]
}

const PATHS: [&str; 6] = ["a", "b", "o", "o.x", "o.y", "missing"];

fn random_filter(rng: &mut Rng, depth: u32) -> Filter {
    let path = rng.pick(&PATHS);
    let operand = rng.pick(&operands());
    let ordered = || operand.is_number() || operand.is_string();
    match rng.next() % if depth < 2 { 12 } else { 10 } {
        0 => Filter::eq(path, operand),
        1 => Filter::ne(path, operand),
        2 => {
            let values: Vec<Value> = (0..rng.next() % 3).map(|_| rng.pick(&operands())).collect();
            Filter::In(path.into(), values)
        }
        3 if ordered() => Filter::gt(path, operand),
        4 if ordered() => Filter::gte(path, operand),
        5 if ordered() => Filter::lt(path, operand),
        6 if ordered() => Filter::lte(path, operand),
        3..=6 => Filter::eq(path, operand),
        7 => Filter::exists(path, rng.next().is_multiple_of(2)),
        8 | 9 => Filter::contains(path, operand),
        10 => Filter::And(
            (0..rng.next() % 3 + 1)
                .map(|_| random_filter(rng, depth + 1))
                .collect(),
        ),
        _ => Filter::Or(
            (0..rng.next() % 3 + 1)
                .map(|_| random_filter(rng, depth + 1))
                .collect(),
        ),
    }
}

/// The documented semantics, in plain Rust.
mod reference {
    use std::cmp::Ordering;

    use serde_json::Value;
    use wemint::store::Filter;

    fn at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
        path.split('.')
            .try_fold(doc, |v, segment| v.as_object()?.get(segment))
    }

    fn numbers(a: &Value, b: &Value) -> Option<Ordering> {
        match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }

    /// Equality of a present value with an operand: numbers numerically, containers by
    /// their exact JSON text (key order matters), everything else same kind and equal.
    fn equal(v: &Value, x: &Value) -> bool {
        match (v, x) {
            (Value::Number(_), Value::Number(_)) => numbers(v, x) == Some(Ordering::Equal),
            (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
                // Not `v == x`: serde_json's map equality ignores key order, stores do not.
                json_text(v) == json_text(x)
            }
            _ => v == x,
        }
    }

    fn json_text(v: &Value) -> String {
        v.to_string()
    }

    fn eq(v: Option<&Value>, x: &Value) -> bool {
        match (v, x) {
            (None, Value::Null) => true,
            (None, _) => false,
            (Some(v), x) => equal(v, x),
        }
    }

    fn compare(v: Option<&Value>, x: &Value) -> Option<Ordering> {
        match (v?, x) {
            (v @ Value::Number(_), Value::Number(_)) => numbers(v, x),
            (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => None,
        }
    }

    pub(super) fn matches(doc: &Value, filter: &Filter) -> bool {
        match filter {
            Filter::All => true,
            Filter::Eq(p, x) => eq(at(doc, p), x),
            Filter::Ne(p, x) => !eq(at(doc, p), x),
            Filter::In(p, xs) => xs.iter().any(|x| eq(at(doc, p), x)),
            Filter::Gt(p, x) => compare(at(doc, p), x) == Some(Ordering::Greater),
            Filter::Gte(p, x) => matches!(
                compare(at(doc, p), x),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Filter::Lt(p, x) => compare(at(doc, p), x) == Some(Ordering::Less),
            Filter::Lte(p, x) => matches!(
                compare(at(doc, p), x),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Filter::Exists(p, flag) => at(doc, p).is_some() == *flag,
            Filter::Contains(p, x) => at(doc, p)
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|item| equal(item, x))),
            Filter::And(list) => list.iter().all(|f| matches(doc, f)),
            Filter::Or(list) => list.iter().any(|f| matches(doc, f)),
        }
    }
}

/// Random documents and filters (fixed seed), checked against the reference semantics above:
/// every operator on every kind of value, missing fields, nesting, and/or combinations.
pub(crate) async fn differential_filters(store: &Arc<dyn Store>, c: &str) {
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let values = field_values();
    let mut docs = Vec::new();
    for i in 0..80 {
        let mut doc = serde_json::Map::new();
        doc.insert("_id".into(), json!(format!("d{i:03}")));
        for field in ["a", "b"] {
            if let Some(v) = rng.pick(&values) {
                doc.insert(field.into(), v);
            }
        }
        // `o` is an object with x/y, a scalar, or missing (never an array: paths do not
        // traverse arrays, and MongoDB alone would).
        match rng.next() % 3 {
            0 => {
                let mut o = serde_json::Map::new();
                for key in ["x", "y"] {
                    if let Some(v) = rng.pick(&values) {
                        o.insert(key.into(), v);
                    }
                }
                doc.insert("o".into(), Value::Object(o));
            }
            1 => {
                if let Some(
                    v @ (Value::Number(_) | Value::String(_) | Value::Bool(_) | Value::Null),
                ) = rng.pick(&values)
                {
                    doc.insert("o".into(), v);
                }
            }
            _ => {}
        }
        let doc = Value::Object(doc);
        store.insert(c, doc.clone()).await.unwrap();
        docs.push(doc);
    }
    for _ in 0..400 {
        let filter = random_filter(&mut rng, 0);
        let expected: Vec<String> = docs
            .iter()
            .filter(|d| reference::matches(d, &filter))
            .map(|d| d["_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            find_ids(store, c, filter.clone()).await,
            expected,
            "{filter:?}"
        );
    }
}
