//! The store conformance suite on SQLite (in memory and on a WAL file), plus the cases only a
//! file can show: separate connections and separate OS processes racing on one database.

#![cfg(feature = "sqlite")]

mod store_conformance;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wemint::store::sqlite::SqliteStore;
use wemint::store::{
    Filter, FindOptions, IndexSpec, Store, StoreError, Update, UpdateOptions, bootstrap,
    collections, open,
};

#[tokio::test(flavor = "current_thread")]
async fn conformance_in_memory() {
    let store = open("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    store_conformance::run_all(store, "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_wal_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&format!("sqlite:{}", path.display())).await.unwrap();
    store_conformance::run_all(store, "file").await;
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// 16 stores (16 connections) on one file: the database lock, not an in-process mutex,
/// decides the race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_connections_race_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..16 {
        stores.push(Arc::new(SqliteStore::open(&path).await.unwrap()));
    }
    stores[0]
        .insert(
            collections::ORDERS,
            json!({"_id": "o", "status": "created"}),
        )
        .await
        .unwrap();
    stores[0]
        .insert("counters", json!({"_id": "c", "n": 0}))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let won = store
                .update_one(
                    collections::ORDERS,
                    &Filter::id("o").and(Filter::eq("status", "created")),
                    &Update::new().set("status", "paid").set("by", i as i64),
                    UpdateOptions::default(),
                )
                .await
                .unwrap()
                .is_some();
            for _ in 0..20 {
                store
                    .update_one(
                        "counters",
                        &Filter::id("c"),
                        &Update::new().inc("n", 1),
                        UpdateOptions::default(),
                    )
                    .await
                    .unwrap();
            }
            won
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(
        stores[3].get("counters", "c").await.unwrap().unwrap()["n"],
        16 * 20
    );
}

const CHILD_ENV: &str = "WEMINT_STORE_TEST_CHILD_DB";
const ORDERS: usize = 40;
const INCS_PER_CHILD: i64 = 150;

/// Runs only inside a child process started by `two_processes_race_on_one_file`.
#[tokio::test(flavor = "current_thread")]
async fn cross_process_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let me: i64 = std::env::var("WEMINT_STORE_TEST_CHILD_ID")
        .unwrap()
        .parse()
        .unwrap();
    let store = open(&format!("sqlite:{db}")).await.unwrap();
    std::fs::write(format!("{db}.ready{me}"), b"ready").unwrap();
    let go = format!("{db}.go");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::path::Path::new(&go).exists() {
        assert!(Instant::now() < deadline, "parent never said go");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut wins = 0;
    for round in 0..ORDERS {
        // Interleave transitions and increments so both processes contend on both.
        let won = store
            .update_one(
                collections::ORDERS,
                &Filter::id(format!("o{round}")).and(Filter::eq("status", "created")),
                &Update::new()
                    .set("status", "paid")
                    .set("paid_by", me)
                    .inc("transitions", 1),
                UpdateOptions::default(),
            )
            .await
            .unwrap();
        wins += usize::from(won.is_some());
        for _ in 0..INCS_PER_CHILD / ORDERS as i64 {
            store
                .update_one(
                    "counters",
                    &Filter::id("c"),
                    &Update::new().inc("n", 1),
                    UpdateOptions::default(),
                )
                .await
                .unwrap();
        }
    }
    for _ in 0..INCS_PER_CHILD % ORDERS as i64 {
        store
            .update_one(
                "counters",
                &Filter::id("c"),
                &Update::new().inc("n", 1),
                UpdateOptions::default(),
            )
            .await
            .unwrap();
    }
    println!("CHILD_RESULT id={me} wins={wins}");
}

/// Two OS processes share one SQLite file and race conditional updates and `$inc`: every
/// order is paid exactly once and no increment is lost.
#[tokio::test(flavor = "current_thread")]
async fn two_processes_race_on_one_file() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db").display().to_string();
    let store = open(&format!("sqlite:{db}")).await.unwrap();
    for round in 0..ORDERS {
        store
            .insert(
                collections::ORDERS,
                json!({"_id": format!("o{round}"), "status": "created", "transitions": 0}),
            )
            .await
            .unwrap();
    }
    store
        .insert("counters", json!({"_id": "c", "n": 0}))
        .await
        .unwrap();

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (1..=2)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "cross_process_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &db)
                .env("WEMINT_STORE_TEST_CHILD_ID", id.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Say go only when both children are open and waiting, so they really overlap.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(1..=2).all(|id| std::path::Path::new(&format!("{db}.ready{id}")).exists()) {
        assert!(Instant::now() < deadline, "children never got ready");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    std::fs::write(format!("{db}.go"), b"go").unwrap();
    let mut total_wins = 0;
    let mut winners_by_child = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find(|l| l.contains("CHILD_RESULT"))
            .unwrap_or_else(|| panic!("no result in:\n{stdout}"));
        let wins: usize = line.rsplit("wins=").next().unwrap().parse().unwrap();
        winners_by_child.push(wins);
        total_wins += wins;
    }
    assert_eq!(
        total_wins, ORDERS,
        "each order won exactly once across processes ({winners_by_child:?})"
    );
    let orders = store
        .find(collections::ORDERS, &Filter::All, &FindOptions::new())
        .await
        .unwrap();
    assert!(
        orders
            .iter()
            .all(|o| o["status"] == "paid" && o["transitions"] == 1),
        "{orders:?}"
    );
    for (i, wins) in winners_by_child.iter().enumerate() {
        let paid_by_child = store
            .count(collections::ORDERS, &Filter::eq("paid_by", i as i64 + 1))
            .await
            .unwrap();
        assert_eq!(paid_by_child, *wins as u64);
    }
    assert_eq!(
        store.get("counters", "c").await.unwrap().unwrap()["n"],
        2 * INCS_PER_CHILD
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unique_index_holds_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    a.ensure_indexes(collections::USERS, &[IndexSpec::unique(["openid"])])
        .await
        .unwrap();
    a.insert(collections::USERS, json!({"openid": "o1"}))
        .await
        .unwrap();
    let err = b
        .insert(collections::USERS, json!({"openid": "o1"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateKey { index, .. } if index == "openid_1"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn update_past_max_depth_is_refused_and_changes_nothing() {
    let store = open("sqlite::memory:").await.unwrap();
    let mut deep = json!("bottom");
    for _ in 0..wemint::store::MAX_DEPTH - 1 {
        deep = json!({ "d": deep });
    }
    let doc = json!({"_id": "deep", "d": deep});
    store.insert("c", doc.clone()).await.unwrap();
    let path = vec!["d"; wemint::store::MAX_DEPTH].join(".");
    let err = store
        .update_one(
            "c",
            &Filter::id("deep"),
            &Update::new().set(&*path, json!({"x": 1})),
            UpdateOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidDocument(_)), "{err:?}");
    assert_eq!(store.get("c", "deep").await.unwrap().unwrap(), doc);
}

#[tokio::test(flavor = "current_thread")]
async fn bootstrap_is_idempotent_and_enforces_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:{}", dir.path().join("boot.db").display());
    let store = open(&uri).await.unwrap();
    bootstrap(store.as_ref()).await.unwrap();
    bootstrap(store.as_ref()).await.unwrap();
    let again = open(&uri).await.unwrap();
    bootstrap(again.as_ref()).await.unwrap();
    // Every declared index exists, under its collection-qualified name.
    let db = rusqlite::Connection::open(dir.path().join("boot.db")).unwrap();
    for (collection, indexes) in collections::all() {
        for index in indexes {
            let name = format!("{collection}:{}", index.name);
            let found: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?",
                    [&name],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(found, 1, "{name}");
        }
    }
    store
        .insert(
            collections::ORDERS,
            json!({"outTradeNo": "T1", "openid": "o", "clientRequestId": "r"}),
        )
        .await
        .unwrap();
    let err = again
        .insert(
            collections::ORDERS,
            json!({"outTradeNo": "T2", "openid": "o", "clientRequestId": "r"}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateKey { index, .. } if index == "openid_1_clientRequestId_1"),
        "{err:?}"
    );
    let err = again
        .insert(collections::ORDERS, json!({"outTradeNo": "T1"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DuplicateKey { index, .. } if index == "outTradeNo_1"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn open_selects_backend_by_uri() {
    assert!(matches!(
        open("sqlite:").await,
        Err(StoreError::InvalidQuery(_))
    ));
    assert!(matches!(
        open("redis://x").await,
        Err(StoreError::InvalidQuery(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let fast = open(&format!(
        "sqlite:{}?synchronous=normal",
        dir.path().join("n.db").display()
    ))
    .await
    .unwrap();
    fast.insert("c", json!({"_id": "x"})).await.unwrap();
    assert!(
        dir.path().join("n.db").exists(),
        "the query is not part of the file name"
    );
    assert!(matches!(
        open("sqlite:/tmp/x.db?mode=ro").await,
        Err(StoreError::InvalidQuery(_))
    ));
    let err = open("sqlite:/nonexistent-dir/x/y.db").await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    #[cfg(feature = "mongodb")]
    {
        let store = open("mongodb://127.0.0.1:1/wemint_unused?serverSelectionTimeoutMS=100")
            .await
            .unwrap();
        assert_eq!(store.backend(), "mongodb");
        let err = open("mongodb://[bad").await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidQuery(_)), "{err:?}");
    }
}
