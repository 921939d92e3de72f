//! Conditional-update throughput on the SQLite backend (file, WAL, synchronous=FULL).
//!
//! `cargo bench -p wemint --bench store_update` (add `-- --quick` for a short run). Measures:
//! - single writer: one store, a loop of `update_one(status == created -> paid)` + re-arm;
//! - single writer `$inc` on one counter;
//! - contention: N stores (N connections, as N processes would have) on one file, all
//!   incrementing the same counter and racing the same state transitions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wemint::store::sqlite::{SqliteStore, Synchronous};
use wemint::store::{Filter, Store, Update, UpdateOptions, collections};

fn report(label: &str, ops: u64, elapsed: Duration) {
    let per_sec = ops as f64 / elapsed.as_secs_f64();
    let micros = elapsed.as_secs_f64() * 1e6 / ops as f64;
    println!("{label:<58} {ops:>7} ops  {per_sec:>9.0} ops/s  {micros:>8.1} µs/op");
}

async fn single_writer_transition(store: &dyn Store, ops: u64) -> Duration {
    store
        .insert(
            collections::ORDERS,
            json!({"_id": "o", "status": "created", "version": 0}),
        )
        .await
        .unwrap();
    let start = Instant::now();
    for i in 0..ops {
        let (from, to) = if i % 2 == 0 {
            ("created", "paid")
        } else {
            ("paid", "created")
        };
        let won = store
            .update_one(
                collections::ORDERS,
                &Filter::id("o").and(Filter::eq("status", from)),
                &Update::new().set("status", to).inc("version", 1),
                UpdateOptions::default(),
            )
            .await
            .unwrap();
        assert!(won.is_some());
    }
    start.elapsed()
}

async fn single_writer_inc(store: &dyn Store, ops: u64) -> Duration {
    store
        .insert("counters", json!({"_id": "c", "n": 0}))
        .await
        .unwrap();
    let start = Instant::now();
    for _ in 0..ops {
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
    start.elapsed()
}

async fn contended(path: &std::path::Path, writers: usize, ops_per_writer: u64) -> (Duration, u64) {
    let mut stores = Vec::new();
    for _ in 0..writers {
        stores.push(Arc::new(SqliteStore::open(path).await.unwrap()));
    }
    stores[0]
        .insert("counters", json!({"_id": "hot", "n": 0}))
        .await
        .unwrap();
    for i in 0..ops_per_writer {
        stores[0]
            .insert(
                collections::ORDERS,
                json!({"_id": format!("r{i}"), "status": "created"}),
            )
            .await
            .unwrap();
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for store in &stores {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut wins = 0u64;
            for i in 0..ops_per_writer {
                let filter = Filter::id(format!("r{i}")).and(Filter::eq("status", "created"));
                let won = store
                    .update_one(
                        collections::ORDERS,
                        &filter,
                        &Update::new().set("status", "paid"),
                        UpdateOptions::default(),
                    )
                    .await
                    .unwrap();
                wins += u64::from(won.is_some());
                store
                    .update_one(
                        "counters",
                        &Filter::id("hot"),
                        &Update::new().inc("n", 1),
                        UpdateOptions::default(),
                    )
                    .await
                    .unwrap();
            }
            wins
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += task.await.unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(wins, ops_per_writer, "each transition won exactly once");
    let n = stores[0].get("counters", "hot").await.unwrap().unwrap()["n"]
        .as_u64()
        .unwrap();
    assert_eq!(n, writers as u64 * ops_per_writer, "no lost increments");
    (elapsed, 2 * writers as u64 * ops_per_writer)
}

/// The cost of getting blocking work off the async runtime and back, per call: tokio's
/// `spawn_blocking` (what the SQLite backend's contended reads use) against a dedicated worker
/// thread fed by a channel (what its writes use: the group-commit writer), on the current-thread
/// runtime the event mode runs on.
async fn dispatch_overhead(calls: u64) {
    let start = Instant::now();
    for i in 0..calls {
        let v = tokio::task::spawn_blocking(move || i + 1).await.unwrap();
        assert_eq!(v, i + 1);
    }
    report(
        "dispatch: tokio spawn_blocking round trip",
        calls,
        start.elapsed(),
    );

    let (tx, rx) = std::sync::mpsc::channel::<(u64, tokio::sync::oneshot::Sender<u64>)>();
    let worker = std::thread::spawn(move || {
        while let Ok((i, reply)) = rx.recv() {
            let _ = reply.send(i + 1);
        }
    });
    let start = Instant::now();
    for i in 0..calls {
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send((i, reply)).unwrap();
        assert_eq!(answer.await.unwrap(), i + 1);
    }
    report(
        "dispatch: dedicated thread + channel round trip",
        calls,
        start.elapsed(),
    );
    drop(tx);
    worker.join().unwrap();
}

/// The same conditional transition written directly against rusqlite on the calling thread:
/// what the Store adds (JSON handling, dispatch) is the difference.
fn raw_rusqlite_transition(path: &std::path::Path, synchronous: &str, ops: u64) -> Duration {
    let mut db = rusqlite::Connection::open(path).unwrap();
    db.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    db.execute_batch(
        &format!(
            "PRAGMA synchronous={synchronous}; CREATE TABLE orders (_id TEXT PRIMARY KEY, doc TEXT NOT NULL);"
        ),
    )
    .unwrap();
    db.execute(
        "INSERT INTO orders VALUES ('o', ?)",
        [json!({"_id": "o", "status": "created", "version": 0}).to_string()],
    )
    .unwrap();
    let start = Instant::now();
    for i in 0..ops {
        let (from, to) = if i % 2 == 0 {
            ("created", "paid")
        } else {
            ("paid", "created")
        };
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let doc: String = tx
            .query_row(
                "SELECT doc FROM orders WHERE _id = 'o' AND json_extract(doc, '$.status') = ?",
                [from],
                |row| row.get(0),
            )
            .unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&doc).unwrap();
        value["status"] = json!(to);
        value["version"] = json!(value["version"].as_i64().unwrap() + 1);
        tx.execute(
            "UPDATE orders SET doc = ? WHERE _id = 'o'",
            [value.to_string()],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    start.elapsed()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let ops: u64 = if quick { 300 } else { 3_000 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("single.db"))
            .await
            .unwrap();
        report(
            "sqlite file, 1 writer, conditional transition",
            ops,
            single_writer_transition(&store, ops).await,
        );
        report(
            "sqlite file, 1 writer, $inc",
            ops,
            single_writer_inc(&store, ops).await,
        );
        let normal = SqliteStore::open_with(dir.path().join("normal.db"), Synchronous::Normal)
            .await
            .unwrap();
        report(
            "sqlite file synchronous=normal, 1 writer, transition",
            ops,
            single_writer_transition(&normal, ops).await,
        );
        report(
            "raw rusqlite on the caller's thread, same transition",
            ops,
            raw_rusqlite_transition(&dir.path().join("raw.db"), "FULL", ops),
        );
        // What the per-commit fsync costs (the store keeps FULL: see docs/collections.md).
        report(
            "raw rusqlite, same, synchronous=NORMAL (no fsync/commit)",
            ops,
            raw_rusqlite_transition(&dir.path().join("raw-normal.db"), "NORMAL", ops),
        );
        let memory = SqliteStore::open_in_memory().await.unwrap();
        report(
            "sqlite memory, 1 writer, conditional transition",
            ops,
            single_writer_transition(&memory, ops).await,
        );
        dispatch_overhead(ops * 10).await;
    });
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(async {
        for writers in [4, 16] {
            let dir = tempfile::tempdir().unwrap();
            let (elapsed, total) = contended(
                &dir.path().join("contended.db"),
                writers,
                ops / writers as u64,
            )
            .await;
            report(
                &format!("sqlite file, {writers} connections, transition + $inc"),
                total,
                elapsed,
            );
        }
    });
}
