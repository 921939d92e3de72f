//! Group commit: every write of a [`super::SqliteStore`] runs on one writer thread, and the
//! writes that queue up while a commit is reaching the disk are committed together.
//!
//! With `synchronous=FULL` each commit waits for an fsync (a few milliseconds on a virtual
//! disk), so one transaction per write caps a store at the disk's fsync rate, however many
//! requests are in flight. The writer takes every write waiting in its queue (up to
//! [`MAX_BATCH`]), runs each inside its own `SAVEPOINT` of one `BEGIN IMMEDIATE` transaction,
//! commits once, and only then answers each of them. So:
//!
//! - each write is still atomic on its own: a failing one answers its error and leaves nothing,
//!   the others in the batch are unaffected. A write of one modifying statement gets that from
//!   SQLite, which applies a statement whole or not at all ([`Atomic::Statement`]: no savepoint,
//!   so no sub-journal copy of every page it touches); a write of several runs in its own
//!   `SAVEPOINT` ([`Atomic::Savepoint`]);
//! - each write sees the ones queued before it (same transaction, in order), so conditional
//!   updates keep their meaning;
//! - nothing is acknowledged before it is durable: a failed `COMMIT` fails every write of the
//!   batch, and nothing of the batch stays;
//! - other processes on the same file are excluded for the batch, as before for one write.
//!
//! At low load a batch holds one write, as before: the only added cost is the hop to the writer
//! thread, which replaces the hop to tokio's blocking pool.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use super::{Conn, backend, lock};
use crate::store::StoreError;
use crate::telemetry::panic_message;

/// Most writes committed together.
pub(super) const MAX_BATCH: usize = 256;

/// Answers one write once the fate of its batch is known: `Ok` when the batch committed.
type Deliver = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
/// One queued write: run with the connection (inside its savepoint) and return how to answer;
/// or, when the batch could not start (`None`), only return how to answer.
type Job = Box<dyn FnOnce(Option<&mut Conn>) -> Deliver + Send>;

/// How one write stays atomic inside the batch's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Atomic {
    /// The write runs at most one statement that changes rows (plus, at most, the creation of
    /// its table, which may stay): SQLite applies that statement whole or not at all.
    Statement,
    /// The write may run several: they run in a savepoint, rolled back if it fails.
    Savepoint,
}

/// The queue to the writer thread. The thread ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Writer {
    queue: Sender<Job>,
}

impl Writer {
    /// Starts the writer thread for `conn`.
    pub(super) fn start(conn: Arc<Mutex<Conn>>) -> Result<Self, StoreError> {
        let (queue, jobs) = channel::<Job>();
        std::thread::Builder::new()
            .name("wemint-sqlite-writer".into())
            .spawn(move || run(&conn, &jobs))
            .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { queue })
    }

    /// Runs `work` as one atomic write and answers once it is committed.
    pub(super) async fn write<T, F>(&self, atomic: Atomic, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn: Option<&mut Conn>| {
            let result = conn.map(|conn| match atomic {
                Atomic::Statement => caught(conn, work),
                Atomic::Savepoint => in_savepoint(conn, work),
            });
            let deliver: Deliver = Box::new(move |batch: Result<(), &StoreError>| {
                let outcome = match (batch, result) {
                    (Ok(()), Some(result)) => result,
                    (Err(e), _) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                    (Ok(()), None) => Err(StoreError::Backend("write was not run".into())),
                };
                // The caller may have gone (request cancelled); the write stands regardless.
                let _ = answer.send(outcome);
            });
            deliver
        });
        self.queue
            .send(job)
            .map_err(|_| StoreError::Backend("the SQLite writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Backend("the SQLite writer has stopped".into()))?
    }
}

/// `work` inside `SAVEPOINT w`: released on success, rolled back on error or panic.
fn in_savepoint<T>(
    conn: &mut Conn,
    work: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_cached(conn, "SAVEPOINT w")?;
    let result = caught(conn, work);
    if result.is_err() {
        // The table cache may name a table created by the rolled-back write.
        conn.tables.clear();
        run_cached(conn, "ROLLBACK TO w")?;
    }
    run_cached(conn, "RELEASE w")?;
    result
}

/// `work`, a panic in it turned into an error (the writer thread keeps serving).
fn caught<T>(
    conn: &mut Conn,
    work: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(|| work(&mut *conn))).unwrap_or_else(
        |payload: Box<dyn Any + Send>| {
            Err(StoreError::Backend(format!(
                "sqlite write panicked: {}",
                panic_message(payload.as_ref())
            )))
        },
    )
}

/// Runs one statement from the connection's statement cache: the batch's `BEGIN`, `COMMIT`
/// and each write's savepoint are parsed once per connection, not once per write.
fn run_cached(conn: &Conn, sql: &str) -> Result<(), StoreError> {
    conn.db
        .prepare_cached(sql)
        .and_then(|mut stmt| stmt.raw_execute())
        .map(|_| ())
        .map_err(backend)
}

fn run(conn: &Mutex<Conn>, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut conn = lock(conn);
        match run_cached(&conn, "BEGIN IMMEDIATE") {
            Err(e) => {
                for job in batch {
                    job(None)(Err(&e));
                }
            }
            Ok(()) => {
                let answers: Vec<Deliver> =
                    batch.into_iter().map(|job| job(Some(&mut *conn))).collect();
                let committed = run_cached(&conn, "COMMIT");
                if committed.is_err() {
                    conn.tables.clear();
                    let _ = conn.db.execute_batch("ROLLBACK");
                }
                drop(conn);
                // One line per commit when `wemint::store::sqlite` is at debug (scripts/bench.sh
                // counts store writes per payment from it); free when the level is off.
                tracing::debug!(
                    writes = answers.len(),
                    committed = committed.is_ok(),
                    "sqlite commit"
                );
                for answer in answers {
                    answer(committed.as_ref().map(|_| ()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::store::sqlite::SqliteStore;
    use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};

    /// A file store in a fresh directory (kept alive by the returned guard).
    async fn file_store() -> (Arc<SqliteStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("g.db")).await.unwrap();
        (Arc::new(store), dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_each_stand_or_fail_alone() {
        let (store, dir) = file_store().await;
        // 120 inserts at once, every third one a duplicate of an earlier id.
        let mut tasks = Vec::new();
        for i in 0..120 {
            let store = Arc::clone(&store);
            let id = if i % 3 == 2 {
                format!("d{}", i - 1)
            } else {
                format!("d{i}")
            };
            tasks.push(tokio::spawn(async move {
                store.insert("docs", json!({"_id": id, "n": i})).await
            }));
        }
        let mut ok = 0;
        let mut duplicates = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::DuplicateKey { .. }) => duplicates += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, duplicates), (80, 40));
        assert_eq!(store.count("docs", &Filter::All).await.unwrap(), 80);
        // Acknowledged means committed: a second connection sees every one of them.
        drop(store);
        let again = SqliteStore::open(dir.path().join("g.db")).await.unwrap();
        assert_eq!(again.count("docs", &Filter::All).await.unwrap(), 80);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_conditional_transition_wins_once_among_concurrent_writers() {
        let (store, _dir) = file_store().await;
        store
            .insert(
                "things",
                json!({"_id": "o1", "status": "created", "hits": 0}),
            )
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                // Half move the order (once), half count themselves (every time).
                if i % 2 == 0 {
                    store
                        .update_one(
                            "things",
                            &Filter::id("o1").and(Filter::eq("status", "created")),
                            &Update::new().set("status", "paid").set("by", i),
                            UpdateOptions::default(),
                        )
                        .await
                        .unwrap()
                        .is_some()
                } else {
                    store
                        .update_one(
                            "things",
                            &Filter::id("o1"),
                            &Update::new().inc("hits", 1),
                            UpdateOptions::default(),
                        )
                        .await
                        .unwrap();
                    false
                }
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
        let order = store.get("things", "o1").await.unwrap().unwrap();
        assert_eq!(order["status"], "paid");
        assert_eq!(order["hits"], 32);
    }

    /// A one-statement write (no savepoint) that breaks a unique index among concurrent writes
    /// of the same batches: it fails alone, its document and every index entry of it unchanged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_refused_update_among_a_batch_leaves_its_document_and_indexes_whole() {
        let (store, _dir) = file_store().await;
        store
            .ensure_indexes(
                "docs",
                &[
                    crate::store::IndexSpec::unique(["k"]),
                    crate::store::IndexSpec::non_unique(["m"]),
                ],
            )
            .await
            .unwrap();
        for i in 0..40 {
            store
                .insert("docs", json!({"_id": format!("d{i:02}"), "k": i, "m": 0}))
                .await
                .unwrap();
        }
        // Odd documents try to take their even neighbour's unique `k` (refused); even ones move
        // their `m` (applied); all at once.
        let mut tasks = Vec::new();
        for i in 0..40_i64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let update = if i % 2 == 1 {
                    Update::new().set("k", i - 1).set("m", 9)
                } else {
                    Update::new().set("m", 1)
                };
                let id = format!("d{i:02}");
                store
                    .update_one(
                        "docs",
                        &Filter::id(id.as_str()),
                        &update,
                        UpdateOptions::default(),
                    )
                    .await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            if i % 2 == 1 {
                assert!(
                    matches!(result, Err(StoreError::DuplicateKey { .. })),
                    "{result:?}"
                );
            } else {
                assert!(result.unwrap().is_some());
            }
        }
        for i in 0..40_i64 {
            let by_k = store
                .find(
                    "docs",
                    &Filter::eq("k", i),
                    &crate::store::FindOptions::new(),
                )
                .await
                .unwrap();
            let m = if i % 2 == 1 { 0 } else { 1 };
            assert_eq!(
                by_k,
                vec![json!({"_id": format!("d{i:02}"), "k": i, "m": m})]
            );
        }
        assert_eq!(store.count("docs", &Filter::eq("m", 9)).await.unwrap(), 0);
        assert_eq!(store.count("docs", &Filter::eq("m", 0)).await.unwrap(), 20);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_and_the_store_keeps_working() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let doc = json!({"_id": "a", "n": 1, "t": "x"});
        store.insert("docs", doc.clone()).await.unwrap();
        // `$inc` of a string: refused when applied in the writer, nothing changed.
        let err = store
            .update_one(
                "docs",
                &Filter::id("a"),
                &Update::new().set("m", 2).inc("t", 1),
                UpdateOptions::default(),
            )
            .await;
        assert!(err.is_err());
        assert_eq!(store.get("docs", "a").await.unwrap().unwrap(), doc);
        // The next writes work, and a unique index holds.
        store
            .ensure_indexes("fresh", &[crate::store::IndexSpec::unique(["k"])])
            .await
            .unwrap();
        store
            .insert("fresh", json!({"_id": "1", "k": 1}))
            .await
            .unwrap();
        assert!(
            store
                .insert("fresh", json!({"_id": "2", "k": 1}))
                .await
                .is_err()
        );
        assert_eq!(store.count("fresh", &Filter::All).await.unwrap(), 1);
    }
}
