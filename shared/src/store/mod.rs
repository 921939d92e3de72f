//! The document store: one Mongo-shaped [`Store`] trait, SQLite (embedded default) and MongoDB backends.
//!
//! Every piece of business data goes through this trait, so that the same function code runs
//! on a developer's laptop (one SQLite file), in the emulator, and in production against
//! TencentDB for MongoDB. Filters and updates are typed values ([`Filter`], [`Update`]), never
//! query strings, and both backends give them the same meaning; `docs/collections.md` lists
//! the collections and indexes, and the conformance suite in `shared/tests` pins the behaviour.
//!
//! Semantics shared by both backends (the parts where MongoDB alone would differ are noted):
//! - Documents are JSON objects. `_id` is a string: given by the caller or generated
//!   ([`new_id`]). Field names must not start with `$` or contain `.`; numbers are `i64` or
//!   finite `f64`, and integers stay exact integers (stored as MongoDB `Int64`).
//! - Paths are dotted field names (`"buyer.openid"`) that traverse nested objects. They do not
//!   traverse arrays; a comparison on a field holding an array compares the array as a whole
//!   (MongoDB's element-wise matching is switched off so both backends agree).
//! - Comparisons only match values of the same kind: numbers with numbers (integers and floats
//!   compare numerically), strings with strings (byte order). `eq(path, null)` matches a null
//!   or missing field; `ne` matches a missing field.
//! - Unique indexes only cover documents in which every indexed field is present.

mod bootstrap;
pub mod cloudbase;
pub mod collections;
mod document;
mod filter;
#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod update;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use bootstrap::bootstrap;
pub use document::{MAX_DEPTH, MAX_DOCUMENT_BYTES, id_from_parts, new_id};
pub use filter::Filter;
pub use update::Update;

/// Everything that can go wrong in the store, the same for every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write would break a unique index (MongoDB error 11000, SQLite UNIQUE constraint).
    /// `index` is the logical index name (`_id_` for the primary key).
    #[error("duplicate key in collection `{collection}` (unique index `{index}`)")]
    DuplicateKey { collection: String, index: String },
    /// A filter, path, collection name, index declaration or option is not acceptable.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// An update cannot be applied (wrong operand type, conflicting paths, non-numeric `$inc`).
    /// Nothing was changed.
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    /// A document is not acceptable (not an object, bad `_id`, `$` field names, too large or
    /// too deep, a number outside `i64`/`f64`), or a stored document does not fit the type
    /// asked for. Nothing was changed.
    #[error("invalid document: {0}")]
    InvalidDocument(String),
    /// The backend failed (I/O, connection, lock timeout). The operation may be retried.
    #[error("store backend error: {0}")]
    Backend(String),
}

/// Sort direction for [`FindOptions::sort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// Sort, limit and skip for [`Store::find`]. Results are always ordered by `_id` after the
/// given keys, so paging with `skip` is stable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindOptions {
    pub sort: Vec<(String, Order)>,
    pub limit: Option<u64>,
    pub skip: u64,
}

impl FindOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an ascending sort key (a dotted path). Missing fields sort first.
    pub fn sort_asc(mut self, path: impl Into<String>) -> Self {
        self.sort.push((path.into(), Order::Asc));
        self
    }

    /// Adds a descending sort key (a dotted path). Missing fields sort last.
    pub fn sort_desc(mut self, path: impl Into<String>) -> Self {
        self.sort.push((path.into(), Order::Desc));
        self
    }

    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn skip(mut self, skip: u64) -> Self {
        self.skip = skip;
        self
    }
}

/// Options for [`Store::update_one`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// When nothing matches, insert a document built from the filter's equality conditions,
    /// the update's `$set`/`$inc`/`$push` and its `$setOnInsert` values.
    pub upsert: bool,
}

impl UpdateOptions {
    pub fn upsert() -> Self {
        Self { upsert: true }
    }
}

/// A declared index on one or more dotted paths. Declaring is idempotent; declaring a
/// different index under an existing name is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub fields: Vec<String>,
    pub unique: bool,
}

impl IndexSpec {
    /// A unique index; the name follows MongoDB's default (`owner_1_client_request_id_1`).
    pub fn unique<S: Into<String>>(fields: impl IntoIterator<Item = S>) -> Self {
        let mut spec = Self::non_unique(fields);
        spec.unique = true;
        spec
    }

    /// A plain (non-unique) index, for lookups and sorting.
    pub fn non_unique<S: Into<String>>(fields: impl IntoIterator<Item = S>) -> Self {
        let fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        let name = fields
            .iter()
            .map(|f| format!("{f}_1"))
            .collect::<Vec<_>>()
            .join("_");
        Self {
            name,
            fields,
            unique: false,
        }
    }

    /// Overrides the generated name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.fields.is_empty() {
            return Err(StoreError::InvalidQuery(format!(
                "index `{}` has no fields",
                self.name
            )));
        }
        if self.name.is_empty()
            || self.name.len() > 120
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(StoreError::InvalidQuery(format!(
                "index name `{}` must be 1-120 characters of [A-Za-z0-9_.-]",
                self.name
            )));
        }
        for field in &self.fields {
            filter::check_path(field)?;
        }
        Ok(())
    }
}

/// The Mongo-shaped document store. Object safe: functions hold an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// `"sqlite"` or `"mongodb"`, for logs and diagnostics.
    fn backend(&self) -> &'static str;

    /// Inserts a document and returns its `_id` (the given one, or a generated [`new_id`]).
    async fn insert(&self, collection: &str, doc: Value) -> Result<String, StoreError>;

    /// The document with this `_id`, if any.
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>, StoreError>;

    /// Documents matching `filter`, sorted/limited/skipped as asked.
    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Value>, StoreError>;

    /// Applies `update` to the first document (in `_id` order) matching `filter`, atomically (the filter is the
    /// condition: `status == created` then `status = paid` can win only once). Returns the
    /// document after the update, or `None` when nothing matched and `upsert` is off.
    async fn update_one(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
        options: UpdateOptions,
    ) -> Result<Option<Value>, StoreError>;

    /// Deletes the first matching document (in `_id` order); `true` when one was deleted.
    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<bool, StoreError>;

    /// Deletes every matching document; returns how many.
    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError>;

    /// Number of matching documents.
    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError>;

    /// Creates the declared indexes if missing (idempotent). Creating a unique index over
    /// existing duplicates fails with [`StoreError::DuplicateKey`].
    async fn ensure_indexes(
        &self,
        collection: &str,
        indexes: &[IndexSpec],
    ) -> Result<(), StoreError>;
}

/// Typed helpers over the JSON surface.
impl dyn Store {
    /// Inserts any `Serialize` value (it must serialize to an object).
    pub async fn insert_as<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        value: &T,
    ) -> Result<String, StoreError> {
        self.insert(collection, to_document(value)?).await
    }

    /// The document with this `_id`, deserialized.
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get(collection, id)
            .await?
            .map(from_document)
            .transpose()
    }

    /// Matching documents, deserialized.
    pub async fn find_as<T: DeserializeOwned>(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<T>, StoreError> {
        self.find(collection, filter, options)
            .await?
            .into_iter()
            .map(from_document)
            .collect()
    }

    /// The first matching document (in `_id` order).
    pub async fn find_one(
        &self,
        collection: &str,
        filter: &Filter,
    ) -> Result<Option<Value>, StoreError> {
        Ok(self
            .find(collection, filter, &FindOptions::new().limit(1))
            .await?
            .pop())
    }

    /// The first matching document (in `_id` order), deserialized.
    pub async fn find_one_as<T: DeserializeOwned>(
        &self,
        collection: &str,
        filter: &Filter,
    ) -> Result<Option<T>, StoreError> {
        self.find_one(collection, filter)
            .await?
            .map(from_document)
            .transpose()
    }

    /// [`Store::update_one`], with the resulting document deserialized.
    pub async fn update_one_as<T: DeserializeOwned>(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
        options: UpdateOptions,
    ) -> Result<Option<T>, StoreError> {
        self.update_one(collection, filter, update, options)
            .await?
            .map(from_document)
            .transpose()
    }
}

/// Collection names: a letter or `_`, then letters, digits or `_`, at most 64 characters (they
/// become SQLite table names and MongoDB collection names), never `sqlite_…` or `system…`.
pub(crate) fn check_collection(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.to_ascii_lowercase().starts_with("sqlite_")
        && !name.starts_with("system");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidQuery(format!(
            "bad collection name `{name}`: use up to 64 ASCII letters, digits and `_`, starting with a letter or `_`"
        )))
    }
}

fn to_document<T: Serialize + ?Sized>(value: &T) -> Result<Value, StoreError> {
    serde_json::to_value(value)
        .map_err(|e| StoreError::InvalidDocument(format!("cannot serialize: {e}")))
}

fn from_document<T: DeserializeOwned>(doc: Value) -> Result<T, StoreError> {
    serde_json::from_value(doc)
        .map_err(|e| StoreError::InvalidDocument(format!("stored document does not fit: {e}")))
}

/// Opens the store named by a `WEMINT_STORE` URI: `sqlite:PATH`, `sqlite::memory:`, a
/// `mongodb://` / `mongodb+srv://` URI (database from the URI path, default `wemint`), or
/// `cloudbase://ENV_ID[?instance=…&database=…]` (key and endpoint from the environment, see
/// [`cloudbase`]).
pub async fn open(uri: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(rest) = uri.strip_prefix("sqlite:") {
        return open_sqlite(rest).await;
    }
    if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") {
        return open_mongodb(uri).await;
    }
    if uri.starts_with("cloudbase://") {
        return Ok(Arc::new(cloudbase::CloudbaseStore::open(uri).await?));
    }
    Err(StoreError::InvalidQuery(format!(
        "unsupported store URI scheme in `{}`: expected `sqlite:PATH`, `sqlite::memory:`, `mongodb://…`, `mongodb+srv://…` or `cloudbase://ENV_ID`",
        redact_uri(uri)
    )))
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(rest: &str) -> Result<Arc<dyn Store>, StoreError> {
    let store = if rest == ":memory:" {
        sqlite::SqliteStore::open_in_memory().await?
    } else {
        let (path, synchronous) = sqlite_location(rest)?;
        sqlite::SqliteStore::open_with(path, synchronous).await?
    };
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_rest: &str) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::InvalidQuery(
        "`sqlite:` needs the SQLite backend, but wemint was built without the `sqlite` cargo \
         feature (the CloudBase deploy build leaves it out): use `cloudbase://ENV_ID`, or build \
         with `scripts/build.sh --features sqlite` to self-host"
            .into(),
    ))
}

/// `PATH` or `PATH?synchronous=full|normal` (the only option), after `sqlite:`.
#[cfg(feature = "sqlite")]
fn sqlite_location(rest: &str) -> Result<(&str, sqlite::Synchronous), StoreError> {
    let (path, query) = match rest.rsplit_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err(StoreError::InvalidQuery(
            "`sqlite:` URI needs a file path or `:memory:`".into(),
        ));
    }
    let synchronous = match query.map(str::to_ascii_lowercase).as_deref() {
        None | Some("synchronous=full") => sqlite::Synchronous::Full,
        Some("synchronous=normal") => sqlite::Synchronous::Normal,
        Some(other) => {
            return Err(StoreError::InvalidQuery(format!(
                "unknown `sqlite:` option `{other}`: only `synchronous=full` or `synchronous=normal`"
            )));
        }
    };
    Ok((path, synchronous))
}

#[cfg(feature = "mongodb")]
async fn open_mongodb(uri: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(mongo::MongoStore::connect(uri, None).await?))
}

#[cfg(not(feature = "mongodb"))]
async fn open_mongodb(uri: &str) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::InvalidQuery(format!(
        "`{}` needs the MongoDB backend, but wemint was built without the `mongodb` cargo feature \
         (build with `scripts/build.sh --features mongodb`)",
        redact_uri(uri)
    )))
}

/// The URI with any `user:password@` removed, safe for error messages and logs.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &uri[..scheme_end], &uri[at + 1..])
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_uris_parse() {
        use sqlite::Synchronous::{Full, Normal};
        assert_eq!(sqlite_location("/tmp/a.db").unwrap(), ("/tmp/a.db", Full));
        assert_eq!(sqlite_location("///tmp/a.db").unwrap(), ("/tmp/a.db", Full));
        assert_eq!(
            sqlite_location("data/a.db?synchronous=normal").unwrap(),
            ("data/a.db", Normal)
        );
        assert_eq!(
            sqlite_location("a.db?synchronous=FULL").unwrap(),
            ("a.db", Full)
        );
        assert!(sqlite_location("a.db?cache=shared").is_err());
        assert!(sqlite_location("?synchronous=normal").is_err());
        assert!(sqlite_location("").is_err());
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_uri("mongodb://u:p@h:27017/db"),
            "mongodb://***@h:27017/db"
        );
        assert_eq!(redact_uri("mongodb+srv://h/db"), "mongodb+srv://h/db");
        assert_eq!(redact_uri("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
    }

    #[test]
    fn index_names_follow_mongodb_defaults() {
        let spec = IndexSpec::unique(["owner", "client_request_id"]);
        assert_eq!(spec.name, "owner_1_client_request_id_1");
        assert!(spec.unique);
        assert!(spec.validate().is_ok());
        assert!(IndexSpec::unique(Vec::<String>::new()).validate().is_err());
        assert!(
            IndexSpec::unique(["a"])
                .named("bad name")
                .validate()
                .is_err()
        );
        assert!(IndexSpec::unique(["$a"]).validate().is_err());
    }

    #[cfg(not(feature = "mongodb"))]
    #[tokio::test]
    async fn mongodb_uri_needs_the_feature() {
        let err = open("mongodb://user:secret@db.internal/wemint")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`mongodb` cargo feature"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[cfg(not(feature = "sqlite"))]
    #[tokio::test]
    async fn sqlite_uri_needs_the_feature() {
        let err = open("sqlite:/tmp/wemint.db").await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`sqlite` cargo feature"), "{msg}");
        assert!(msg.contains("cloudbase://"), "{msg}");
    }

    #[tokio::test]
    async fn open_rejects_unknown_schemes() {
        let err = open("postgres://u:secret@h/db").await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unsupported store URI"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
        assert!(matches!(
            open("sqlite:").await,
            Err(StoreError::InvalidQuery(_))
        ));
    }
}
