//! The embedded SQLite backend: one table per collection (`_id TEXT PRIMARY KEY, doc TEXT`),
//! JSON documents, WAL, and indexes on `json_extract(doc, '$."path"')` expressions so the
//! database itself enforces uniqueness, across processes too.
//!
//! Concurrency: writes run on the store's writer thread and its connection, so a long lock wait
//! or an fsync never stalls the async runtime. Reads (`get`, `find`, `count`) run on the
//! calling task when a connection is free (a WAL read sees the last commit, waits for no writer
//! and takes microseconds, less than the hop to another thread): the writer's while it is idle,
//! and, from the first read that would have waited for it, two read-only connections of a file
//! store, so reads never wait for the writer's batch and its fsync. Every write runs in a
//! `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock before reading:
//! a conditional update reads, checks and writes with no other writer in between, whether
//! the other writer is a task, a thread or another process on the same file. Writes that queue
//! up while one commit reaches the disk share the next commit (`group_commit`): one fsync for
//! many writes, each still atomic on its own and acknowledged only once durable.
//!
//! Values are always bound parameters. Paths of comparisons are put into SQL text (an expression
//! index is only used when the query spells the same expression), which is safe because
//! `filter::check_path` admits only letters, digits, `_` and `-`; the path of an exists test is
//! bound, since per-call paths would make a new statement each time.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::config::DbConfig;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params, params_from_iter};
use serde_json::Value;

use super::document::{self, to_json};
use super::filter::Filter;
use super::{
    FindOptions, IndexSpec, Order, Store, StoreError, Update, UpdateOptions, check_collection,
};

/// How long a writer waits for another writer (any process) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

mod group_commit;

use group_commit::Atomic;

/// A document store in one SQLite file (or in memory).
#[derive(Clone)]
pub struct SqliteStore {
    /// The writer's connection (and, in memory, the only one).
    inner: Arc<Mutex<Conn>>,
    /// Every write goes through here (group commit).
    writer: group_commit::Writer,
    /// Read-only connections of a file store, opened the first time a read would wait for the
    /// writer (so a start-up opens one connection): in WAL mode a read on them does not wait
    /// for the writer's batch and its fsync (it sees the last commit). `None` in memory, where
    /// reads share the writer's connection.
    readers: Option<Arc<Readers>>,
    /// The reader a read waits for when every reader is busy (round robin).
    next_reader: Arc<AtomicUsize>,
    location: Arc<str>,
}

/// Read connections of a file store.
const READERS: usize = 2;

/// Where a file store's read connections come from, and once opened, the connections (empty
/// when they could not be opened: reads then share the writer's connection, as in memory).
struct Readers {
    path: PathBuf,
    synchronous: Synchronous,
    pool: OnceLock<Vec<Arc<Mutex<Conn>>>>,
}

impl Readers {
    /// The connections, opened on first use.
    fn pool(&self) -> &[Arc<Mutex<Conn>>] {
        self.pool.get_or_init(|| match self.open() {
            Ok(pool) => pool,
            Err(e) => {
                tracing::warn!(error = %e, "sqlite: no read connections; reads share the writer's");
                Vec::new()
            }
        })
    }

    fn open(&self) -> Result<Vec<Arc<Mutex<Conn>>>, StoreError> {
        (0..READERS)
            .map(|_| {
                let reader = Connection::open(&self.path).map_err(backend)?;
                configure(&reader, true, self.synchronous)?;
                reader
                    .execute_batch("PRAGMA query_only=1")
                    .map_err(backend)?;
                Ok(Conn::shared(reader))
            })
            .collect()
    }
}

struct Conn {
    db: Connection,
    /// Collections whose table is known to exist.
    tables: HashSet<String>,
}

impl Conn {
    fn shared(db: Connection) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            db,
            tables: HashSet::new(),
        }))
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged write survives power loss. The default, because
    /// an order marked paid must stay paid.
    #[default]
    Full,
    /// fsync only at checkpoints: survives a process crash, may lose the last commits on power
    /// loss. Tens of times faster on slow disks; for the emulator and tests
    /// (`sqlite:PATH?synchronous=normal`).
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, in WAL mode, with
    /// [`Synchronous::Full`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Synchronous::Full).await
    }

    /// [`SqliteStore::open`] with a chosen durability.
    pub async fn open_with(
        path: impl AsRef<Path>,
        synchronous: Synchronous,
    ) -> Result<Self, StoreError> {
        let path: PathBuf = path.as_ref().to_owned();
        let location: Arc<str> = path.display().to_string().into();
        let readers = Readers {
            path: path.clone(),
            synchronous,
            pool: OnceLock::new(),
        };
        let db = blocking(move || {
            let db = Connection::open(&path).map_err(backend)?;
            configure(&db, true, synchronous)?;
            Ok(db)
        })
        .await?;
        Self::from_connection(db, Some(Arc::new(readers)), location)
    }

    /// A private in-memory database (gone when the store is dropped).
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let db = Connection::open_in_memory().map_err(backend)?;
        configure(&db, false, Synchronous::Full)?;
        Self::from_connection(db, None, ":memory:".into())
    }

    fn from_connection(
        db: Connection,
        readers: Option<Arc<Readers>>,
        location: Arc<str>,
    ) -> Result<Self, StoreError> {
        let inner = Conn::shared(db);
        Ok(Self {
            writer: group_commit::Writer::start(Arc::clone(&inner))?,
            inner,
            readers,
            next_reader: Arc::new(AtomicUsize::new(0)),
            location,
        })
    }
}

impl SqliteStore {
    /// Runs a read here when a connection is free: a read connection once they are open, else
    /// the writer's while it is idle. Otherwise in the blocking pool, on a read connection in
    /// turn (opening them the first time), or in memory on the writer's.
    async fn read_conn<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let opened = self
            .readers
            .as_ref()
            .and_then(|r| r.pool.get())
            .filter(|pool| !pool.is_empty());
        let free_here = opened.map_or(std::slice::from_ref(&self.inner), Vec::as_slice);
        // The guard is dropped before any await (it is not `Send`).
        for conn in free_here {
            match conn.try_lock() {
                Ok(mut conn) => return work(&mut conn),
                Err(TryLockError::Poisoned(poisoned)) => return work(&mut poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let (readers, inner) = (self.readers.clone(), Arc::clone(&self.inner));
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed);
        blocking(move || {
            let pool = readers.as_deref().map_or(&[][..], Readers::pool);
            let conn = pool.get(turn % pool.len().max(1)).unwrap_or(&inner);
            work(&mut lock(conn))
        })
        .await
    }
}

fn lock(inner: &Mutex<Conn>) -> MutexGuard<'_, Conn> {
    // A panic while holding the lock left no transaction open (rusqlite rolls back on drop),
    // so the connection is still usable.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite worker failed: {e}")))?
}

fn configure(db: &Connection, file: bool, synchronous: Synchronous) -> Result<(), StoreError> {
    db.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    // A dozen collections times a few statement shapes each.
    db.set_prepared_statement_cache_capacity(128);
    // Plans that do not depend on bound values: without this SQLite marks `LIMIT ?` (and
    // other parameters it looks at while planning) so that binding a new value (or 1 again,
    // as every `find_one` does) re-parses and re-plans the cached statement at its next step.
    // We never run ANALYZE, so a value-specific plan would gain nothing.
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(backend)?;
    if file {
        let mode: String = db
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "could not switch SQLite to WAL (journal_mode={mode})"
            )));
        }
    }
    db.execute_batch(&format!("PRAGMA synchronous={};", synchronous.pragma()))
        .map_err(backend)?;
    Ok(())
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Maps SQLite errors, turning UNIQUE violations into [`StoreError::DuplicateKey`] with the
/// logical index name.
fn map_err(collection: &str, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &e
        && failure.code == ErrorCode::ConstraintViolation
    {
        let prefix = format!("{collection}:");
        let index = if let Some(rest) = message.strip_prefix("UNIQUE constraint failed: index '") {
            let name = rest.trim_end_matches('\'');
            Some(name.strip_prefix(&prefix).unwrap_or(name).to_owned())
        } else if message.starts_with("UNIQUE constraint failed: ") && message.ends_with("._id") {
            Some("_id_".to_owned())
        } else {
            None
        };
        if let Some(index) = index {
            return StoreError::DuplicateKey {
                collection: collection.to_owned(),
                index,
            };
        }
    }
    backend(e)
}

/// `'$."a"."b"'`: the SQL literal for a checked dotted path.
fn json_path(path: &str) -> String {
    format!("'{}'", json_path_value(path))
}

/// `$."a"."b"`: the JSON path of a checked dotted path, as a value to bind.
fn json_path_value(path: &str) -> String {
    debug_assert!(super::filter::check_path(path).is_ok());
    let mut out = String::with_capacity(path.len() + 8);
    out.push('$');
    for segment in path.split('.') {
        out.push_str(".\"");
        out.push_str(segment);
        out.push('"');
    }
    out
}

fn extract(path: &str) -> String {
    format!("json_extract(doc, {})", json_path(path))
}

fn type_of(path: &str) -> String {
    format!("json_type(doc, {})", json_path(path))
}

/// A filter compiled to a SQL condition with its bound parameters.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    params: Vec<SqlValue>,
}

impl Sql {
    fn compile(filter: &Filter) -> Result<Self, StoreError> {
        filter.validate()?;
        let mut sql = Self::default();
        sql.filter(filter);
        Ok(sql)
    }

    fn bind(&mut self, value: SqlValue) {
        self.params.push(value);
    }

    fn filter(&mut self, filter: &Filter) {
        match filter {
            Filter::All => self.text.push('1'),
            Filter::Eq(path, value) => self.eq(path, value),
            Filter::Ne(path, value) => {
                // NOT of a NULL is NULL: a missing field must count as "not equal".
                self.text.push_str("NOT IFNULL(");
                self.eq(path, value);
                self.text.push_str(", 0)");
            }
            Filter::In(_, values) if values.is_empty() => self.text.push('0'),
            Filter::In(path, values) if values.iter().all(Value::is_string) => {
                self.in_strings(path, values);
            }
            Filter::In(path, values) => self.join(" OR ", values, |sql, value| sql.eq(path, value)),
            Filter::Gt(path, value) => self.compare(path, ">", value),
            Filter::Gte(path, value) => self.compare(path, ">=", value),
            Filter::Lt(path, value) => self.compare(path, "<", value),
            Filter::Lte(path, value) => self.compare(path, "<=", value),
            Filter::Exists(path, exists) => {
                // The path is bound, not written into the SQL: paths such as `orders.<order id>`
                // differ at every call, and a new SQL text is a new parse and plan (and evicts a
                // statement from the cache). No index is on `json_type`, so nothing is lost.
                let op = if *exists { "IS NOT NULL" } else { "IS NULL" };
                self.text.push_str(&format!("json_type(doc, ?) {op}"));
                self.bind(SqlValue::Text(json_path_value(path)));
            }
            Filter::Contains(path, value) => self.contains(path, value),
            Filter::And(list) if list.is_empty() => self.text.push('1'),
            Filter::And(list) => self.join(" AND ", list, Self::filter),
            Filter::Or(list) if list.is_empty() => self.text.push('0'),
            Filter::Or(list) => self.join(" OR ", list, Self::filter),
        }
    }

    fn join<T>(&mut self, sep: &str, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.text.push('(');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.text.push_str(sep);
            }
            each(self, item);
        }
        self.text.push(')');
    }

    /// Equality with MongoDB's type rules: numbers compare numerically across integer/float,
    /// everything else only equals the same kind. The `json_extract(..) = ?` term comes first
    /// so an expression index on the path serves it.
    fn eq(&mut self, path: &str, value: &Value) {
        if path == "_id" {
            if let Value::String(id) = value {
                self.text.push_str("_id = ?");
                self.bind(SqlValue::Text(id.clone()));
            } else {
                // Ids are always strings, so a non-string id never matches (but null does not exist either).
                self.text.push('0');
            }
            return;
        }
        let (x, t) = (extract(path), type_of(path));
        match value {
            Value::Null => self.text.push_str(&format!("IFNULL({t}, 'null') = 'null'")),
            Value::Bool(true) => self.text.push_str(&format!("{t} = 'true'")),
            Value::Bool(false) => self.text.push_str(&format!("{t} = 'false'")),
            Value::Number(n) => {
                self.text
                    .push_str(&format!("({x} = ? AND {t} IN ('integer', 'real'))"));
                self.bind(number(n));
            }
            Value::String(s) => {
                self.text.push_str(&format!("({x} = ? AND {t} = 'text')"));
                self.bind(SqlValue::Text(s.clone()));
            }
            Value::Array(_) | Value::Object(_) => {
                let kind = if value.is_array() { "array" } else { "object" };
                // Both sides minified by SQLite's own JSON writer, so equal values compare equal.
                self.text
                    .push_str(&format!("({x} = json(?) AND {t} = '{kind}')"));
                self.bind(SqlValue::Text(value.to_string()));
            }
        }
    }

    /// `In` over strings only (ids, order numbers: the common case) as one SQL `IN` list, which
    /// an expression index on the path (or the `_id` key) serves with one lookup per value; the
    /// general `OR` of `eq` terms makes SQLite scan the table. Same meaning as that `OR`.
    fn in_strings(&mut self, path: &str, values: &[Value]) {
        let marks = vec!["?"; values.len()].join(", ");
        if path == "_id" {
            self.text.push_str(&format!("_id IN ({marks})"));
        } else {
            let (x, t) = (extract(path), type_of(path));
            self.text
                .push_str(&format!("({x} IN ({marks}) AND {t} = 'text')"));
        }
        for v in values {
            self.bind(SqlValue::Text(v.as_str().unwrap_or_default().to_owned()));
        }
    }

    /// Array membership, with the same type rules as `eq` applied to each element.
    fn contains(&mut self, path: &str, value: &Value) {
        let p = json_path(path);
        self.text.push_str(&format!(
            "(json_type(doc, {p}) = 'array' AND EXISTS (SELECT 1 FROM json_each(doc, {p}) AS e WHERE "
        ));
        match value {
            Value::Null => self.text.push_str("e.type = 'null'"),
            Value::Bool(true) => self.text.push_str("e.type = 'true'"),
            Value::Bool(false) => self.text.push_str("e.type = 'false'"),
            Value::Number(n) => {
                self.text
                    .push_str("e.value = ? AND e.type IN ('integer', 'real')");
                self.bind(number(n));
            }
            Value::String(s) => {
                self.text.push_str("e.value = ? AND e.type = 'text'");
                self.bind(SqlValue::Text(s.clone()));
            }
            Value::Array(_) | Value::Object(_) => {
                let kind = if value.is_array() { "array" } else { "object" };
                self.text
                    .push_str(&format!("e.value = json(?) AND e.type = '{kind}'"));
                self.bind(SqlValue::Text(value.to_string()));
            }
        }
        self.text.push_str("))");
    }

    /// Range comparison; `Filter::validate` admits only numbers and strings here.
    fn compare(&mut self, path: &str, op: &str, value: &Value) {
        if path == "_id" {
            if let Value::String(id) = value {
                self.text.push_str(&format!("_id {op} ?"));
                self.bind(SqlValue::Text(id.clone()));
            } else {
                self.text.push('0');
            }
            return;
        }
        let (x, t) = (extract(path), type_of(path));
        match value {
            Value::Number(n) => {
                self.text
                    .push_str(&format!("({x} {op} ? AND {t} IN ('integer', 'real'))"));
                self.bind(number(n));
            }
            Value::String(s) => {
                self.text
                    .push_str(&format!("({x} {op} ? AND {t} = 'text')"));
                self.bind(SqlValue::Text(s.clone()));
            }
            _ => self.text.push('0'),
        }
    }
}

fn number(n: &serde_json::Number) -> SqlValue {
    match n.as_i64() {
        Some(i) => SqlValue::Integer(i),
        None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
    }
}

fn order_by(options: &FindOptions) -> Result<String, StoreError> {
    let mut keys = Vec::with_capacity(options.sort.len() + 1);
    for (path, order) in &options.sort {
        super::filter::check_path(path)?;
        let dir = match order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        keys.push(if path == "_id" {
            format!("_id {dir}")
        } else {
            format!("{} {dir}", extract(path))
        });
    }
    if !options.sort.iter().any(|(path, _)| path == "_id") {
        keys.push("_id ASC".into());
    }
    Ok(keys.join(", "))
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Conn {
    /// Whether the collection's table exists (reads never create tables).
    fn has_table(&mut self, collection: &str) -> Result<bool, StoreError> {
        if self.tables.contains(collection) {
            return Ok(true);
        }
        let exists = self
            .db
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                [collection],
                |_| Ok(()),
            )
            .optional()
            .map_err(backend)?
            .is_some();
        if exists {
            self.tables.insert(collection.to_owned());
        }
        Ok(exists)
    }

    fn ensure_table(&mut self, collection: &str) -> Result<(), StoreError> {
        if self.tables.contains(collection) {
            return Ok(());
        }
        self.db
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{collection}\" (_id TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL) STRICT"
            ))
            .map_err(backend)?;
        self.tables.insert(collection.to_owned());
        Ok(())
    }
}

fn parse_doc(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("stored document is not valid JSON: {e}")))
}

/// The conditional read-modify-write of `update_one`. Runs as one write of the group commit,
/// inside the batch's IMMEDIATE transaction, so no other writer comes in between; its one
/// modifying statement (the UPDATE, or the upsert's INSERT) is atomic on its own.
fn update_in_tx(
    conn: &mut Conn,
    collection: &str,
    condition: &Sql,
    filter: &Filter,
    update: &Update,
    upsert: bool,
) -> Result<Option<Value>, StoreError> {
    conn.ensure_table(collection)?;
    let tx = &conn.db;
    let found: Option<(String, String)> = tx
        .prepare_cached(&format!(
            "SELECT _id, doc FROM \"{collection}\" WHERE {} ORDER BY _id LIMIT 1",
            condition.text
        ))
        .and_then(|mut stmt| {
            stmt.query_row(params_from_iter(condition.params.iter()), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
        })
        .map_err(|e| map_err(collection, e))?;
    let result = match found {
        Some((id, text)) => {
            let before = parse_doc(&text)?;
            let mut map = match before {
                Value::Object(map) => map,
                _ => {
                    return Err(StoreError::Backend(format!(
                        "stored document `{id}` is not an object"
                    )));
                }
            };
            update.apply(&mut map)?;
            let after = Value::Object(map);
            document::validate(&after)?;
            let new_text = to_json(&after)?;
            if new_text != text {
                tx.prepare_cached(&format!(
                    "UPDATE \"{collection}\" SET doc = ? WHERE _id = ?"
                ))
                .and_then(|mut stmt| stmt.execute(params![new_text, id]))
                .map_err(|e| map_err(collection, e))?;
            }
            Some(after)
        }
        None if upsert => {
            let doc = Value::Object(update.upsert_document(filter)?);
            document::validate(&doc)?;
            let id = doc["_id"].as_str().unwrap_or_default().to_owned();
            let text = to_json(&doc)?;
            tx.prepare_cached(&format!(
                "INSERT INTO \"{collection}\" (_id, doc) VALUES (?, ?)"
            ))
            .and_then(|mut stmt| stmt.execute(params![id, text]))
            .map_err(|e| map_err(collection, e))?;
            Some(doc)
        }
        None => None,
    };
    Ok(result)
}

/// The SQL for one declared index.
fn index_sql(collection: &str, spec: &IndexSpec) -> String {
    let unique = if spec.unique { "UNIQUE " } else { "" };
    let columns: Vec<String> = spec
        .fields
        .iter()
        .map(|f| {
            if f == "_id" {
                "_id".to_owned()
            } else {
                extract(f)
            }
        })
        .collect();
    format!(
        "CREATE {unique}INDEX \"{collection}:{}\" ON \"{collection}\" ({})",
        spec.name,
        columns.join(", ")
    )
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, collection: &str, mut doc: Value) -> Result<String, StoreError> {
        check_collection(collection)?;
        let id = document::prepare_insert(&mut doc)?;
        let text = to_json(&doc)?;
        let collection = collection.to_owned();
        self.writer
            .write(Atomic::Statement, move |conn| {
                conn.ensure_table(&collection)?;
                conn.db
                    .prepare_cached(&format!(
                        "INSERT INTO \"{collection}\" (_id, doc) VALUES (?, ?)"
                    ))
                    .and_then(|mut stmt| stmt.execute(params![id, text]))
                    .map_err(|e| map_err(&collection, e))?;
                Ok(id)
            })
            .await
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>, StoreError> {
        check_collection(collection)?;
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.read_conn(move |conn| {
            if !conn.has_table(&collection)? {
                return Ok(None);
            }
            let text: Option<String> = conn
                .db
                .prepare_cached(&format!("SELECT doc FROM \"{collection}\" WHERE _id = ?"))
                .and_then(|mut stmt| stmt.query_row([id], |row| row.get(0)).optional())
                .map_err(backend)?;
            text.as_deref().map(parse_doc).transpose()
        })
        .await
    }

    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Value>, StoreError> {
        check_collection(collection)?;
        let mut sql = Sql::compile(filter)?;
        let order = order_by(options)?;
        sql.bind(SqlValue::Integer(options.limit.map_or(-1, clamp)));
        sql.bind(SqlValue::Integer(clamp(options.skip)));
        let collection = collection.to_owned();
        self.read_conn(move |conn| {
            if !conn.has_table(&collection)? {
                return Ok(Vec::new());
            }
            let query = format!(
                "SELECT doc FROM \"{collection}\" WHERE {} ORDER BY {order} LIMIT ? OFFSET ?",
                sql.text
            );
            let mut stmt = conn.db.prepare_cached(&query).map_err(backend)?;
            let rows = stmt
                .query_map(params_from_iter(sql.params.iter()), |row| {
                    row.get::<_, String>(0)
                })
                .map_err(backend)?;
            rows.map(|text| parse_doc(&text.map_err(backend)?))
                .collect()
        })
        .await
    }

    async fn update_one(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
        options: UpdateOptions,
    ) -> Result<Option<Value>, StoreError> {
        check_collection(collection)?;
        update.validate()?;
        let condition = Sql::compile(filter)?;
        let (collection, filter, update) = (collection.to_owned(), filter.clone(), update.clone());
        self.writer
            .write(Atomic::Statement, move |conn| {
                update_in_tx(
                    conn,
                    &collection,
                    &condition,
                    &filter,
                    &update,
                    options.upsert,
                )
            })
            .await
    }

    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<bool, StoreError> {
        check_collection(collection)?;
        let sql = Sql::compile(filter)?;
        let collection = collection.to_owned();
        self.writer.write(Atomic::Statement, move |conn| {
            if !conn.has_table(&collection)? {
                return Ok(false);
            }
            let query = format!(
                "DELETE FROM \"{collection}\" WHERE _id = (SELECT _id FROM \"{collection}\" WHERE {} ORDER BY _id LIMIT 1)",
                sql.text
            );
            let n = conn.db.execute(&query, params_from_iter(sql.params.iter())).map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        check_collection(collection)?;
        let sql = Sql::compile(filter)?;
        let collection = collection.to_owned();
        self.writer
            .write(Atomic::Statement, move |conn| {
                if !conn.has_table(&collection)? {
                    return Ok(0);
                }
                let query = format!("DELETE FROM \"{collection}\" WHERE {}", sql.text);
                let n = conn
                    .db
                    .execute(&query, params_from_iter(sql.params.iter()))
                    .map_err(backend)?;
                Ok(n as u64)
            })
            .await
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        check_collection(collection)?;
        let sql = Sql::compile(filter)?;
        let collection = collection.to_owned();
        self.read_conn(move |conn| {
            if !conn.has_table(&collection)? {
                return Ok(0);
            }
            let query = format!("SELECT COUNT(*) FROM \"{collection}\" WHERE {}", sql.text);
            let n: i64 = conn
                .db
                .query_row(&query, params_from_iter(sql.params.iter()), |row| {
                    row.get(0)
                })
                .map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn ensure_indexes(
        &self,
        collection: &str,
        indexes: &[IndexSpec],
    ) -> Result<(), StoreError> {
        check_collection(collection)?;
        for spec in indexes {
            spec.validate()?;
        }
        let (collection, indexes) = (collection.to_owned(), indexes.to_vec());
        self.writer.write(Atomic::Savepoint, move |conn| {
            conn.ensure_table(&collection)?;
            // Atomic as one write (in its own savepoint).
            let tx = &conn.db;
            for spec in &indexes {
                let wanted = index_sql(&collection, spec);
                let name = format!("{collection}:{}", spec.name);
                let existing: Option<String> = tx
                    .query_row("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", [&name], |row| row.get(0))
                    .optional()
                    .map_err(backend)?;
                match existing {
                    Some(sql) if sql == wanted => {}
                    Some(_) => {
                        return Err(StoreError::InvalidQuery(format!(
                            "index `{}` on `{collection}` already exists with a different definition",
                            spec.name
                        )));
                    }
                    None => {
                        tx.execute_batch(&wanted).map_err(|e| map_err(&collection, e))?;
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A read of a file store does not wait for the writer's connection, which is held for a
    /// whole batch and its fsync; it sees the last commit, and the store's own connections
    /// stay writable only through the writer.
    #[tokio::test]
    async fn reads_of_a_file_store_do_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("r.db")).await.unwrap();
        store
            .insert("docs", json!({"_id": "a", "n": 1}))
            .await
            .unwrap();
        // The writer's connection held elsewhere, as during a batch and its fsync.
        let (held, release) = (
            std::sync::mpsc::channel::<()>(),
            std::sync::mpsc::channel::<()>(),
        );
        let inner = Arc::clone(&store.inner);
        let holder = std::thread::spawn(move || {
            let _writer = lock(&inner);
            held.0.send(()).unwrap();
            release.1.recv().ok();
        });
        held.1.recv().unwrap();
        let read = tokio::time::timeout(Duration::from_secs(20), store.get("docs", "a")).await;
        release.0.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(read.unwrap().unwrap(), Some(json!({"_id": "a", "n": 1})));
        // A committed write is seen by the next read.
        store
            .insert("docs", json!({"_id": "b", "n": 2}))
            .await
            .unwrap();
        assert_eq!(store.count("docs", &Filter::All).await.unwrap(), 2);
        let refused = store
            .read_conn(|conn| conn.db.execute_batch("DELETE FROM docs").map_err(backend))
            .await;
        assert!(refused.is_err(), "read connections are query-only");
    }

    /// A field that exists or not under a per-call path (`orders.<order id>`, as a grant checks)
    /// gives one SQL text for every id, so one cached statement; and still means the field.
    #[tokio::test]
    async fn exists_binds_its_path_so_per_call_paths_share_one_statement() {
        let filter =
            |order: &str| Filter::id("e").and(Filter::exists(format!("orders.{order}"), false));
        let (one, two) = (
            Sql::compile(&filter("o-1")).unwrap(),
            Sql::compile(&filter("o-2")).unwrap(),
        );
        assert_eq!(one.text, two.text);
        assert_ne!(one.params, two.params);
        let store = SqliteStore::open_in_memory().await.unwrap();
        store
            .insert("ents", json!({"_id": "e", "orders": {"o-1": 1}}))
            .await
            .unwrap();
        let found = |f: Filter| {
            let store = store.clone();
            async move { store.count("ents", &f).await.unwrap() }
        };
        assert_eq!(found(filter("o-1")).await, 0);
        assert_eq!(found(filter("o-2")).await, 1);
        assert_eq!(found(Filter::exists("orders.o-1", true)).await, 1);
    }

    /// A cached statement runs again with new values without being parsed and planned again
    /// (it was, at every `find_one`: SQLite re-prepares on a rebind of `LIMIT ?` to 1).
    #[test]
    fn cached_statements_are_not_prepared_again_for_new_values() {
        let db = Connection::open_in_memory().unwrap();
        configure(&db, false, Synchronous::Full).unwrap();
        db.execute_batch(
            "CREATE TABLE t (_id TEXT PRIMARY KEY, doc TEXT);
             CREATE INDEX t_a ON t (json_extract(doc, '$.\"a\"'));
             INSERT INTO t VALUES ('1', '{\"a\":\"x\"}'), ('2', '{\"a\":\"y\"}');",
        )
        .unwrap();
        let query = "SELECT doc FROM t WHERE json_extract(doc, '$.\"a\"') = ? ORDER BY _id LIMIT ? OFFSET ?";
        for (value, limit) in [("x", 1), ("y", 1), ("x", 2), ("y", 1)] {
            let mut stmt = db.prepare_cached(query).unwrap();
            let rows: Vec<String> = stmt
                .query_map(params![value, limit, 0], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "re-prepared for {value}/{limit}"
            );
        }
    }

    #[test]
    fn paths_become_quoted_json_paths() {
        assert_eq!(json_path("a"), "'$.\"a\"'");
        assert_eq!(json_path("buyer.openid"), "'$.\"buyer\".\"openid\"'");
    }

    #[test]
    fn values_are_bound_never_inlined() {
        let sql = Sql::compile(
            &Filter::eq("a", "x' OR 1=1 --")
                .and(Filter::gt("n", 5))
                .and(Filter::id("i")),
        )
        .unwrap();
        assert!(!sql.text.contains("OR 1=1"));
        assert_eq!(
            sql.params,
            vec![
                SqlValue::Text("x' OR 1=1 --".into()),
                SqlValue::Integer(5),
                SqlValue::Text("i".into())
            ]
        );
    }

    #[test]
    fn index_sql_uses_the_filter_expression() {
        let spec = IndexSpec::unique(["owner", "client_request_id"]);
        assert_eq!(
            index_sql(crate::store::collections::ORDERS, &spec),
            "CREATE UNIQUE INDEX \"orders:owner_1_client_request_id_1\" ON \"orders\" (json_extract(doc, '$.\"owner\"'), json_extract(doc, '$.\"client_request_id\"'))"
        );
    }

    #[tokio::test]
    async fn lookups_by_indexed_path_use_the_index() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        store
            .ensure_indexes(
                crate::store::collections::USERS,
                &[IndexSpec::unique(["openid"])],
            )
            .await
            .unwrap();
        // An equality, and an `In` over strings (one lookup per value, not a table scan).
        for filter in [
            Filter::eq("openid", "o"),
            Filter::is_in("openid", ["a", "b", "c"].map(Value::from)),
        ] {
            let sql = Sql::compile(&filter).unwrap();
            let plan = store
                .read_conn(move |conn| {
                    let query = format!(
                        "EXPLAIN QUERY PLAN SELECT doc FROM users WHERE {}",
                        sql.text
                    );
                    let mut stmt = conn.db.prepare(&query).map_err(backend)?;
                    let rows = stmt
                        .query_map(params_from_iter(sql.params.iter()), |row| {
                            row.get::<_, String>(3)
                        })
                        .map_err(backend)?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
                })
                .await
                .unwrap();
            assert!(
                plan.iter()
                    .any(|line| line.contains("USING INDEX users:openid_1")),
                "{filter:?}: {plan:?}"
            );
        }
        let _ = json!(null);
    }
}
