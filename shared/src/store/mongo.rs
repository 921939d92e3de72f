//! The MongoDB backend (TencentDB for MongoDB in the CloudBase VPC, or any deployment).
//!
//! Filters and updates are translated to BSON with the shared semantics of the module docs:
//! comparisons carry `$not: {$type: "array"}` so a field holding an array is compared as a
//! whole (as in SQLite), integers are written as `Int64`, and generated `_id`s are the same
//! string ids as SQLite's (never `ObjectId`). Unique indexes are partial on
//! `$exists: true` for every field, so documents missing a field are not indexed (as in
//! SQLite, where a missing value is NULL).

use std::fmt;

use async_trait::async_trait;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, FindOneAndUpdateOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use serde_json::{Map, Value};

use super::document::{self, to_json};
use super::filter::Filter;
use super::update::UpdateOp;
use super::{
    FindOptions, IndexSpec, Order, Store, StoreError, Update, UpdateOptions, check_collection,
    redact_uri,
};

/// Database used when the URI names none.
const DEFAULT_DATABASE: &str = "wemint";
/// How often an upsert is retried after losing an insert race on a unique index.
const UPSERT_RETRIES: usize = 3;

/// A document store in one MongoDB database.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects lazily (the driver connects on first use). `database` overrides the URI's.
    pub async fn connect(uri: &str, database: Option<&str>) -> Result<Self, StoreError> {
        let options = ClientOptions::parse(uri).await.map_err(|e| {
            StoreError::InvalidQuery(format!("bad MongoDB URI `{}`: {}", redact_uri(uri), e.kind))
        })?;
        let name = database
            .map(str::to_owned)
            .or_else(|| options.default_database.clone());
        let name = name.unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let client =
            Client::with_options(options).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self {
            db: client.database(&name),
        })
    }

    /// Drops the whole database (test clean-up).
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        self.db.drop().await.map_err(|e| map_err("", e))
    }

    fn collection(&self, name: &str) -> Result<Collection<Document>, StoreError> {
        check_collection(name)?;
        Ok(self.db.collection(name))
    }
}

/// JSON to BSON, integers as `Int64`.
fn to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect()),
        Value::Object(map) => Bson::Document(to_document(map)),
    }
}

fn to_document(map: &Map<String, Value>) -> Document {
    map.iter().map(|(k, v)| (k.clone(), to_bson(v))).collect()
}

/// BSON to JSON. Types our writes never produce (written by other tools) map to their
/// relaxed extended JSON, except `ObjectId`, which becomes its hex string.
fn from_bson(value: Bson) -> Value {
    match value {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Bson::String(s) => Value::String(s),
        Bson::Array(items) => Value::Array(items.into_iter().map(from_bson).collect()),
        Bson::Document(doc) => from_document(doc),
        Bson::ObjectId(oid) => Value::String(oid.to_hex()),
        other => other.into_relaxed_extjson(),
    }
}

fn from_document(doc: Document) -> Value {
    Value::Object(doc.into_iter().map(|(k, v)| (k, from_bson(v))).collect())
}

/// Matches no document (every document has an `_id`).
fn nothing() -> Document {
    doc! { "_id": { "$in": [] } }
}

/// A comparison that ignores array-valued fields, so arrays compare as whole values.
fn scalar_op(path: &str, op: &str, value: &Value) -> Document {
    if path == "_id" {
        return doc! { path: { op: to_bson(value) } };
    }
    doc! { path: { op: to_bson(value), "$not": { "$type": "array" } } }
}

fn eq(path: &str, value: &Value) -> Document {
    match value {
        // An array operand already restricts the field to arrays (or arrays containing it).
        Value::Array(_) => doc! { path: { "$eq": to_bson(value), "$type": "array" } },
        _ => scalar_op(path, "$eq", value),
    }
}

pub(crate) fn filter_to_bson(filter: &Filter) -> Result<Document, StoreError> {
    filter.validate()?;
    Ok(compile(filter))
}

fn compile(filter: &Filter) -> Document {
    match filter {
        Filter::All => Document::new(),
        Filter::Eq(path, value) => eq(path, value),
        Filter::Ne(path, value) => doc! { "$nor": [eq(path, value)] },
        Filter::In(_, values) if values.is_empty() => nothing(),
        Filter::In(path, values) => {
            doc! { "$or": values.iter().map(|v| Bson::Document(eq(path, v))).collect::<Vec<_>>() }
        }
        Filter::Gt(path, value) => scalar_op(path, "$gt", value),
        Filter::Gte(path, value) => scalar_op(path, "$gte", value),
        Filter::Lt(path, value) => scalar_op(path, "$lt", value),
        Filter::Lte(path, value) => scalar_op(path, "$lte", value),
        Filter::Exists(path, exists) => doc! { path: { "$exists": *exists } },
        Filter::Contains(path, value) => doc! { path: { "$elemMatch": { "$eq": to_bson(value) } } },
        Filter::And(list) if list.is_empty() => Document::new(),
        Filter::And(list) => {
            doc! { "$and": list.iter().map(|f| Bson::Document(compile(f))).collect::<Vec<_>>() }
        }
        Filter::Or(list) if list.is_empty() => nothing(),
        Filter::Or(list) => {
            doc! { "$or": list.iter().map(|f| Bson::Document(compile(f))).collect::<Vec<_>>() }
        }
    }
}

/// The BSON update document; for upserts, a generated string `_id` unless the filter or
/// `$setOnInsert` gives one.
pub(crate) fn update_to_bson(
    update: &Update,
    filter: &Filter,
    upsert: bool,
) -> Result<Document, StoreError> {
    update.validate()?;
    let mut groups: [(&str, Document); 5] = [
        ("$set", Document::new()),
        ("$unset", Document::new()),
        ("$inc", Document::new()),
        ("$push", Document::new()),
        ("$setOnInsert", Document::new()),
    ];
    for op in update.ops() {
        let (slot, path, value) = match op {
            UpdateOp::Set(p, v) => (0, p, to_bson(v)),
            UpdateOp::Unset(p) => (1, p, Bson::String(String::new())),
            UpdateOp::Inc(p, by) => (2, p, Bson::Int64(*by)),
            UpdateOp::Push(p, v) => (3, p, to_bson(v)),
            UpdateOp::SetOnInsert(p, v) => (4, p, to_bson(v)),
        };
        groups[slot].1.insert(path.clone(), value);
    }
    let id_given = filter.equalities().iter().any(|(path, _)| *path == "_id")
        || update
            .ops()
            .iter()
            .any(|op| matches!(op, UpdateOp::SetOnInsert(p, _) if p == "_id"));
    if upsert && !id_given {
        groups[4].1.insert("_id", Bson::String(super::new_id()));
    }
    Ok(groups
        .into_iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(op, d)| (op.to_owned(), Bson::Document(d)))
        .collect())
}

fn sort_to_bson(options: &FindOptions) -> Result<Document, StoreError> {
    let mut sort = Document::new();
    for (path, order) in &options.sort {
        super::filter::check_path(path)?;
        sort.insert(path.clone(), if *order == Order::Asc { 1 } else { -1 });
    }
    if !sort.contains_key("_id") {
        sort.insert("_id", 1);
    }
    Ok(sort)
}

/// Maps driver errors to the store's: 11000 to `DuplicateKey`, update/validation failures
/// to `InvalidUpdate`/`InvalidDocument`, index conflicts to `InvalidQuery`.
fn map_err(collection: &str, e: mongodb::error::Error) -> StoreError {
    let (code, message) = match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(we)) => (we.code, we.message.clone()),
        ErrorKind::Command(ce) => (ce.code, ce.message.clone()),
        ErrorKind::InsertMany(ime) => match ime.write_errors.as_ref().and_then(|w| w.first()) {
            Some(we) => (we.code, we.message.clone()),
            None => return StoreError::Backend(e.to_string()),
        },
        _ => return StoreError::Backend(e.to_string()),
    };
    match code {
        11000 | 11001 => StoreError::DuplicateKey {
            collection: collection.to_owned(),
            index: duplicate_index(&message),
        },
        2 | 9 | 14 | 28 | 40 | 52 | 54 | 56 | 57 | 66 => StoreError::InvalidUpdate(message),
        10334 | 17419 | 17420 => StoreError::InvalidDocument(message),
        85 | 86 | 67 => StoreError::InvalidQuery(message),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// The index name in an E11000 message, without the key values (they can be personal data).
fn duplicate_index(message: &str) -> String {
    message
        .split(" index: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("unknown")
        .to_owned()
}

fn index_model(spec: &IndexSpec) -> IndexModel {
    let keys: Document = spec
        .fields
        .iter()
        .map(|f| (f.clone(), Bson::Int32(1)))
        .collect();
    let mut options = IndexOptions::builder()
        .name(spec.name.clone())
        .unique(spec.unique)
        .build();
    if spec.unique && spec.fields.iter().any(|f| f != "_id") {
        let partial: Document = spec
            .fields
            .iter()
            .map(|f| (f.clone(), Bson::Document(doc! { "$exists": true })))
            .collect();
        options.partial_filter_expression = Some(partial);
    }
    IndexModel::builder().keys(keys).options(options).build()
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn insert(&self, collection: &str, mut doc: Value) -> Result<String, StoreError> {
        let coll = self.collection(collection)?;
        let id = document::prepare_insert(&mut doc)?;
        to_json(&doc)?;
        let Value::Object(map) = &doc else {
            unreachable!("prepare_insert checked the object")
        };
        coll.insert_one(to_document(map))
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(id)
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let coll = self.collection(collection)?;
        let found = coll
            .find_one(doc! { "_id": id })
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(found.map(from_document))
    }

    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Value>, StoreError> {
        let coll = self.collection(collection)?;
        let query = filter_to_bson(filter)?;
        let mut action = coll
            .find(query)
            .sort(sort_to_bson(options)?)
            .skip(options.skip);
        if let Some(limit) = options.limit {
            if limit == 0 {
                return Ok(Vec::new());
            }
            action = action.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let mut cursor = action.await.map_err(|e| map_err(collection, e))?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(|e| map_err(collection, e))? {
            let raw = cursor
                .deserialize_current()
                .map_err(|e| map_err(collection, e))?;
            out.push(from_document(raw));
        }
        Ok(out)
    }

    async fn update_one(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
        options: UpdateOptions,
    ) -> Result<Option<Value>, StoreError> {
        let coll = self.collection(collection)?;
        let query = filter_to_bson(filter)?;
        if options.upsert {
            // Catch what the server would only report after the fact, the same way SQLite does.
            document::validate(&Value::Object(update.upsert_document(filter)?))?;
        }
        let find_options = FindOneAndUpdateOptions::builder()
            .upsert(options.upsert)
            .return_document(ReturnDocument::After)
            .sort(doc! { "_id": 1 })
            .build();
        let mut attempt = 0;
        loop {
            let changes = update_to_bson(update, filter, options.upsert)?;
            let result = coll
                .find_one_and_update(query.clone(), changes)
                .with_options(find_options.clone())
                .await;
            match result {
                Ok(found) => return Ok(found.map(from_document)),
                // Two upserts raced to insert: the loser retries and now updates the winner's
                // document (unless the conflict is on another unique index, which persists).
                Err(e) => match map_err(collection, e) {
                    StoreError::DuplicateKey { .. }
                        if options.upsert && attempt < UPSERT_RETRIES =>
                    {
                        attempt += 1
                    }
                    other => return Err(other),
                },
            }
        }
    }

    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<bool, StoreError> {
        let coll = self.collection(collection)?;
        // The first match in `_id` order, as in SQLite (plain delete_one takes natural order).
        let deleted = coll
            .find_one_and_delete(filter_to_bson(filter)?)
            .sort(doc! { "_id": 1 })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(deleted.is_some())
    }

    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        let coll = self.collection(collection)?;
        let result = coll
            .delete_many(filter_to_bson(filter)?)
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(result.deleted_count)
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        let coll = self.collection(collection)?;
        coll.count_documents(filter_to_bson(filter)?)
            .await
            .map_err(|e| map_err(collection, e))
    }

    async fn ensure_indexes(
        &self,
        collection: &str,
        indexes: &[IndexSpec],
    ) -> Result<(), StoreError> {
        let coll = self.collection(collection)?;
        for spec in indexes {
            spec.validate()?;
        }
        if indexes.is_empty() {
            return Ok(());
        }
        coll.create_indexes(indexes.iter().map(index_model))
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integers_become_int64_and_back() {
        let value =
            json!({"a": 1, "b": i64::MAX, "c": 1.5, "d": [true, null, "s"], "e": {"f": -2}});
        let bson = to_bson(&value);
        let doc = bson.as_document().unwrap();
        assert_eq!(doc.get("a"), Some(&Bson::Int64(1)));
        assert_eq!(doc.get("b"), Some(&Bson::Int64(i64::MAX)));
        assert_eq!(doc.get("c"), Some(&Bson::Double(1.5)));
        assert_eq!(from_bson(bson), value);
        assert_eq!(from_bson(Bson::Int32(7)), json!(7));
    }

    #[test]
    fn filters_compare_arrays_whole() {
        let f = Filter::eq("status", "created")
            .and(Filter::gte("n", 2))
            .and(Filter::ne("x", 1));
        assert_eq!(
            filter_to_bson(&f).unwrap(),
            doc! { "$and": [
                { "status": { "$eq": "created", "$not": { "$type": "array" } } },
                { "n": { "$gte": 2_i64, "$not": { "$type": "array" } } },
                { "$nor": [ { "x": { "$eq": 1_i64, "$not": { "$type": "array" } } } ] },
            ] }
        );
        assert_eq!(filter_to_bson(&Filter::Or(vec![])).unwrap(), nothing());
        assert_eq!(
            filter_to_bson(&Filter::id("i")).unwrap(),
            doc! { "_id": { "$eq": "i" } }
        );
        assert!(filter_to_bson(&Filter::gt("a", true)).is_err());
        assert_eq!(
            filter_to_bson(&Filter::contains("tags", "x")).unwrap(),
            doc! { "tags": { "$elemMatch": { "$eq": "x" } } }
        );
        assert_eq!(
            filter_to_bson(&Filter::eq("t", serde_json::json!([1]))).unwrap(),
            doc! { "t": { "$eq": [1_i64], "$type": "array" } }
        );
    }

    #[test]
    fn updates_group_by_operator() {
        let u = Update::new()
            .set("s", "paid")
            .inc("v", 1)
            .unset("u")
            .push("log", "x")
            .set_on_insert("c", 1);
        let bson = update_to_bson(&u, &Filter::All, false).unwrap();
        assert_eq!(
            bson,
            doc! { "$set": { "s": "paid" }, "$unset": { "u": "" }, "$inc": { "v": 1_i64 }, "$push": { "log": "x" }, "$setOnInsert": { "c": 1_i64 } }
        );
        let upsert =
            update_to_bson(&Update::new().inc("n", 1), &Filter::eq("k", "x"), true).unwrap();
        let id = upsert
            .get_document("$setOnInsert")
            .unwrap()
            .get_str("_id")
            .unwrap();
        assert_eq!(id.len(), 26);
        let upsert =
            update_to_bson(&Update::new().inc("n", 1), &Filter::id("given"), true).unwrap();
        assert!(!upsert.contains_key("$setOnInsert"));
    }

    #[test]
    fn duplicate_key_index_name_is_parsed_without_key_values() {
        let message = "E11000 duplicate key error collection: t.orders index: out_trade_no_1 dup key: { out_trade_no: \"secret\" }";
        assert_eq!(duplicate_index(message), "out_trade_no_1");
        assert_eq!(duplicate_index("E11000 duplicate key error"), "unknown");
    }
}
