//! Stand-in for the CloudBase document-database REST API (the HTTP API gateway's
//! `/v1/database/instances/{instance}/databases/{database}/…`) over the embedded store, so
//! the `cloudbase://` backend runs against something local.
//!
//! What it keeps from the real service (as documented: endpoints, EJSON, error table):
//! - the same paths and bodies; strict EJSON out (`$numberLong` for every integer);
//! - the documented codes and statuses: `DATABASE_COLLECTION_NOT_EXIST` (404; a collection
//!   exists once created, or once it holds documents written by the emulator itself),
//!   `DOCUMENT_NOT_FOUND` (404, single-document routes), `DATABASE_DUPLICATE_WRITE` (409, with
//!   MongoDB's `E11000 … index: NAME` text; inside `/commands` it is the 500
//!   `DATABASE_REQUEST_FAILED` form), `INVALID_PARAM` (400), `DATABASE_PERMISSION_DENIED` (401);
//! - `/commands` (`findAndModify`, `createIndexes`, `listIndexes`, `drop`, `ping`) and
//!   collection creation are for the administrator key only;
//! - list queries return at most [`StandInOptions::max_page`] documents and echo that `limit`.
//!
//! What it adds for tests and `/dev/stats`: a request counter per operation, and fault
//! injection (the next N requests, optionally of one operation, answer 503, 422, 504 after
//! applying, or hang past the client's timeout with or without applying).
//!
//! The instance and database path segments are accepted and ignored: there is one database,
//! the emulator's own store, so the functions and `/dev` see the same documents.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::store::cloudbase::ejson;
use wemint::store::{
    Filter, FindOptions, IndexSpec, Store, StoreError, Update, UpdateOptions, new_id,
};

use crate::http::{Request, Response, decode_segment};

/// Path prefix of the document-database API.
pub const PREFIX: &str = "/v1/database/instances/";
/// The API key the suite's stand-in accepts (local only; `WEMINT_CLOUDBASE_API_KEY`).
pub const DEV_API_KEY: &str = "wemint-dev-cloudbase-api-key";
/// Where the stand-in remembers which collections were created.
const REGISTRY: &str = "_cloudbase_collections";

/// Records every registry collection as created, as `wemint-dev provision` leaves a real
/// environment. The suite calls it after bootstrapping the store directly: that bootstrap
/// stands for provisioning, and its marker tells the functions' cold starts that the
/// collections exist.
///
/// # Errors
/// Store failures.
pub async fn mark_provisioned(store: &dyn wemint::store::Store) -> Result<(), StoreError> {
    for (collection, _) in wemint::store::collections::all() {
        match store.insert(REGISTRY, json!({"_id": collection})).await {
            Ok(_) | Err(StoreError::DuplicateKey { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct StandInOptions {
    /// The administrator API key (`Authorization: Bearer …`).
    pub admin_key: String,
    /// A non-administrator token (a publishable key): document routes only.
    pub user_key: Option<String>,
    /// Largest page a list query returns.
    pub max_page: u64,
    /// Whether `/commands` accepts `findAndModify` (unconfirmed on the real service).
    pub find_and_modify: bool,
    /// How long a [`Fault::Hang`] holds the answer back.
    pub hang: Duration,
}

impl StandInOptions {
    /// Defaults for an administrator key: pages of 1000, `findAndModify` on, 30 s hangs.
    pub fn new(admin_key: impl Into<String>) -> Self {
        StandInOptions {
            admin_key: admin_key.into(),
            user_key: None,
            max_page: 1000,
            find_and_modify: true,
            hang: Duration::from_secs(30),
        }
    }
}

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `503` before doing anything.
    Unavailable,
    /// `422 EXCEED_CONCURRENT_REQUEST_LIMIT` before doing anything.
    RateLimited,
    /// Applies the request, then answers `504 DATABASE_TIMEOUT`.
    GatewayTimeout,
    /// Holds the answer for [`StandInOptions::hang`]; `applied` says whether the request
    /// takes effect first.
    Hang { applied: bool },
}

#[derive(Debug)]
struct Pending {
    fault: Fault,
    remaining: u32,
    only: Option<String>,
}

/// The stand-in: a store, its options, counters and pending faults.
#[derive(Debug)]
pub struct CloudbaseDb {
    store: Arc<dyn Store>,
    options: StandInOptions,
    counters: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<VecDeque<Pending>>,
    known: Mutex<HashSet<String>>,
    /// Index models created through `createIndexes`, per collection, for `listIndexes` and
    /// MongoDB's `numIndexesBefore/After` (remembered for the stand-in's lifetime).
    indexes: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
}

/// A handler's failure: the HTTP answer.
type Answer = Result<Response, Response>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"code": code, "message": message, "request_id": new_id()}),
    )
}

fn invalid(message: impl std::fmt::Display) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAM",
        &message.to_string(),
    )
}

fn duplicate(collection: &str, index: &str) -> String {
    format!(
        "E11000 duplicate key error collection: (default).{collection} index: {index} dup key: {{ ... }}"
    )
}

/// A store error as the gateway reports it; `in_command` selects the `/commands` forms.
fn store_error(e: StoreError, in_command: bool) -> Response {
    match e {
        StoreError::DuplicateKey { collection, index } if in_command => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DATABASE_REQUEST_FAILED",
            &format!("write command error: {}", duplicate(&collection, &index)),
        ),
        StoreError::DuplicateKey { collection, index } => error(
            StatusCode::CONFLICT,
            "DATABASE_DUPLICATE_WRITE",
            &duplicate(&collection, &index),
        ),
        StoreError::InvalidUpdate(m) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DATABASE_REQUEST_FAILED",
            &format!("Cannot apply update: {m}"),
        ),
        StoreError::InvalidQuery(m) if in_command => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DATABASE_REQUEST_FAILED",
            &m,
        ),
        StoreError::InvalidQuery(m) | StoreError::InvalidDocument(m) => invalid(m),
        StoreError::Backend(m) => error(StatusCode::INTERNAL_SERVER_ERROR, "SYS_ERR", &m),
    }
}

/// The routes, after the instance/database prefix.
enum Route {
    CreateCollection,
    Documents(String),
    Remove(String),
    Document(String, String),
    Commands,
}

/// A stand-in serving alone on a free loopback port, for tests that need the CloudBase
/// document-database API without the rest of the suite. It stops when dropped.
pub struct ServedAlone {
    /// The stand-in (faults, counters).
    pub db: Arc<CloudbaseDb>,
    /// Its base URL, for `WEMINT_CLOUDBASE_ENDPOINT`.
    pub endpoint: String,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl ServedAlone {
    /// Serves a stand-in with `options` over a fresh in-memory store.
    ///
    /// # Panics
    /// When the store cannot open or no loopback port can be bound (test setup).
    pub async fn start(options: StandInOptions) -> ServedAlone {
        let store = wemint::store::open("sqlite::memory:")
            .await
            .expect("in-memory store");
        let db = Arc::new(CloudbaseDb::new(store, options));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound address"));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let handler_db = Arc::clone(&db);
        tokio::spawn(crate::http::serve(
            listener,
            move |req| {
                let db = Arc::clone(&handler_db);
                async move {
                    db.handle(&req)
                        .await
                        .unwrap_or_else(|| Response::not_found(&req.path))
                }
            },
            stopped,
        ));
        ServedAlone {
            db,
            endpoint,
            _stop: stop,
        }
    }
}

impl CloudbaseDb {
    /// A stand-in over `store`.
    pub fn new(store: Arc<dyn Store>, options: StandInOptions) -> Self {
        CloudbaseDb {
            store,
            options,
            counters: Mutex::default(),
            faults: Mutex::default(),
            known: Mutex::default(),
            indexes: Mutex::default(),
        }
    }

    /// The suite's stand-in: [`DEV_API_KEY`] and the defaults of [`StandInOptions::new`].
    pub fn dev(store: Arc<dyn Store>) -> Self {
        Self::new(store, StandInOptions::new(DEV_API_KEY))
    }

    /// Makes the next `count` requests (of operation `only`, e.g. `"update"` or
    /// `"commands:findAndModify"`, when given) fail with `fault`. Queued after earlier ones.
    pub fn inject(&self, fault: Fault, count: u32, only: Option<&str>) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.push_back(Pending {
                fault,
                remaining: count,
                only: only.map(str::to_owned),
            });
        }
    }

    /// Requests served per operation (`insert`, `query`, `count`, `getById`, `update`,
    /// `updateById`, `deleteById`, `remove`, `createCollection`, `commands:<name>`).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Total requests served.
    pub fn total(&self) -> u64 {
        self.stats().values().sum()
    }

    /// Forgets the counters (benchmarks measure one operation at a time).
    pub fn reset_stats(&self) {
        if let Ok(mut c) = self.counters.lock() {
            c.clear();
        }
    }

    fn take_fault(&self, operation: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().ok()?;
        let index = faults
            .iter()
            .position(|p| p.only.as_deref().is_none_or(|o| o == operation))?;
        let pending = &mut faults[index];
        let fault = pending.fault;
        pending.remaining -= 1;
        if pending.remaining == 0 {
            faults.remove(index);
        }
        Some(fault)
    }

    /// Serves a request under [`PREFIX`]; `None` for any other path.
    pub async fn handle(&self, req: &Request) -> Option<Response> {
        let rest = req.path.strip_prefix(PREFIX)?;
        // `{instance}/databases/{database}/…`
        let mut parts = rest.splitn(4, '/');
        let (_instance, databases, _database) = (parts.next()?, parts.next()?, parts.next()?);
        if databases != "databases" {
            return None;
        }
        let tail = parts.next().unwrap_or("");
        let segments: Vec<String> = tail.split('/').map(decode_segment).collect();
        let route = match (&req.method, segments.as_slice()) {
            (&Method::POST, [c]) if c == "collections" => Route::CreateCollection,
            (&Method::POST, [c]) if c == "commands" => Route::Commands,
            (_, [c, name, d]) if c == "collections" && d == "documents" => {
                Route::Documents(name.clone())
            }
            (&Method::POST, [c, name, d, r])
                if c == "collections" && d == "documents" && r == "remove" =>
            {
                Route::Remove(name.clone())
            }
            (_, [c, name, d, id]) if c == "collections" && d == "documents" => {
                Route::Document(name.clone(), id.clone())
            }
            _ => return Some(Response::not_found(&req.path)),
        };
        let admin = match req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
        {
            Some(token) if token == self.options.admin_key => true,
            Some(token) if self.options.user_key.as_deref() == Some(token) => false,
            _ => {
                return Some(error(
                    StatusCode::UNAUTHORIZED,
                    "INVALID_ACCESS_TOKEN",
                    "missing or unknown access token",
                ));
            }
        };
        let body: Value = if req.body.is_empty() {
            json!({})
        } else {
            match req.json() {
                Ok(v) => v,
                Err(e) => return Some(invalid(format!("body is not JSON: {e}"))),
            }
        };
        let operation = operation_name(req, &route, &body);
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(operation.clone()).or_default() += 1;
        }
        let fault = self.take_fault(&operation);
        match fault {
            Some(Fault::Unavailable) => {
                return Some(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    "injected: service unavailable",
                ));
            }
            Some(Fault::RateLimited) => {
                return Some(error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "EXCEED_CONCURRENT_REQUEST_LIMIT",
                    "injected: too many concurrent requests",
                ));
            }
            Some(Fault::Hang { applied: false }) => {
                tokio::time::sleep(self.options.hang).await;
                return Some(error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "DATABASE_TIMEOUT",
                    "injected: timed out",
                ));
            }
            _ => {}
        }
        let answer = match route {
            Route::CreateCollection if !admin => Err(denied("creating collections")),
            Route::Commands if !admin => Err(denied("running commands")),
            Route::CreateCollection => self.create_collection(&body).await,
            Route::Commands => self.commands(&body).await,
            Route::Documents(c) => self.documents(req, &c, &body).await,
            Route::Remove(c) => self.remove(&c, &body).await,
            Route::Document(c, id) => self.document(&req.method, &c, &id, &body).await,
        };
        let response = answer.unwrap_or_else(|e| e);
        match fault {
            Some(Fault::GatewayTimeout) => Some(error(
                StatusCode::GATEWAY_TIMEOUT,
                "DATABASE_TIMEOUT",
                "injected: the database operation timed out",
            )),
            Some(Fault::Hang { applied: true }) => {
                tokio::time::sleep(self.options.hang).await;
                Some(response)
            }
            _ => Some(response),
        }
    }

    async fn exists(&self, collection: &str) -> Result<bool, Response> {
        if self.known.lock().is_ok_and(|k| k.contains(collection)) {
            return Ok(true);
        }
        let registered = self
            .store
            .get(REGISTRY, collection)
            .await
            .map_err(|e| store_error(e, false))?
            .is_some();
        let found = registered
            || self
                .store
                .count(collection, &Filter::All)
                .await
                .map_err(|e| store_error(e, false))?
                > 0;
        if found && let Ok(mut k) = self.known.lock() {
            k.insert(collection.to_owned());
        }
        Ok(found)
    }

    async fn register(&self, collection: &str) -> Result<bool, Response> {
        // Checks the name the way every store does.
        self.store
            .count(collection, &Filter::All)
            .await
            .map_err(|e| store_error(e, false))?;
        let created = match self
            .store
            .insert(REGISTRY, json!({"_id": collection}))
            .await
        {
            Ok(_) => true,
            Err(StoreError::DuplicateKey { .. }) => false,
            Err(e) => return Err(store_error(e, false)),
        };
        if let Ok(mut k) = self.known.lock() {
            k.insert(collection.to_owned());
        }
        Ok(created)
    }

    async fn require(&self, collection: &str) -> Result<(), Response> {
        if self.exists(collection).await? {
            Ok(())
        } else {
            Err(missing())
        }
    }

    async fn create_collection(&self, body: &Value) -> Answer {
        let Some(name) = body["collectionName"].as_str().filter(|n| !n.is_empty()) else {
            return Err(invalid("Collection name is required"));
        };
        if self.exists(name).await? {
            return Err(error(
                StatusCode::CONFLICT,
                "DATABASE_COLLECTION_ALREADY_EXIST",
                "collection already exists",
            ));
        }
        self.register(name).await?;
        Ok(Response::json(StatusCode::CREATED, &json!({})))
    }

    async fn documents(&self, req: &Request, c: &str, body: &Value) -> Answer {
        match req.method {
            Method::GET => self.query(req, c).await,
            Method::POST => {
                self.require(c).await?;
                let Some(docs) = body["data"].as_array() else {
                    return Err(invalid("param.data must be an array"));
                };
                let mut ids = Vec::new();
                for doc in docs {
                    let id = self
                        .store
                        .insert(c, ejson::decode(doc.clone()))
                        .await
                        .map_err(|e| store_error(e, false))?;
                    ids.push(id);
                }
                Ok(Response::json(
                    StatusCode::CREATED,
                    &json!({"insertedIds": ids}),
                ))
            }
            Method::PATCH => {
                self.require(c).await?;
                let filter = parse_query(&body["query"])?;
                let update = parse_data(&body["data"])?;
                if body["replaceMode"] == true {
                    return Err(invalid("replaceMode is not supported by wemint-dev"));
                }
                let upsert = body["upsert"] == true;
                if body["multi"] == true {
                    let matched = self.update_all(c, &filter, &update).await?;
                    return Ok(counts(matched, ""));
                }
                let (doc, inserted) = self.update(c, &filter, &update, upsert, false).await?;
                Ok(match doc {
                    None => counts(0, ""),
                    Some(doc) if inserted => counts(0, doc["_id"].as_str().unwrap_or("")),
                    Some(_) => counts(1, ""),
                })
            }
            _ => Err(Response::not_found(&req.path)),
        }
    }

    /// Updates the first match; with `upsert`, inserts when nothing matched. Returns the
    /// document after the update and whether it was inserted.
    async fn update(
        &self,
        c: &str,
        filter: &Filter,
        update: &Update,
        upsert: bool,
        in_command: bool,
    ) -> Result<(Option<Value>, bool), Response> {
        let updated = self
            .store
            .update_one(c, filter, update, UpdateOptions::default())
            .await
            .map_err(|e| store_error(e, in_command))?;
        if updated.is_some() || !upsert {
            return Ok((updated, false));
        }
        let inserted = self
            .store
            .update_one(c, filter, update, UpdateOptions::upsert())
            .await
            .map_err(|e| store_error(e, in_command))?;
        Ok((inserted, true))
    }

    /// `multi: true`: every match, one at a time (the stand-in's store has no update-many).
    async fn update_all(&self, c: &str, filter: &Filter, update: &Update) -> Result<u64, Response> {
        let ids: Vec<String> = self
            .store
            .find(c, filter, &FindOptions::new())
            .await
            .map_err(|e| store_error(e, false))?
            .iter()
            .filter_map(|d| d["_id"].as_str().map(str::to_owned))
            .collect();
        let mut matched = 0;
        for id in ids {
            let one = Filter::id(id).and(filter.clone());
            if self
                .store
                .update_one(c, &one, update, UpdateOptions::default())
                .await
                .map_err(|e| store_error(e, false))?
                .is_some()
            {
                matched += 1;
            }
        }
        Ok(matched)
    }

    async fn query(&self, req: &Request, c: &str) -> Answer {
        self.require(c).await?;
        let filter = match req.param("query") {
            Some(q) if !q.is_empty() => parse_query(&parse_json(&q)?)?,
            _ => Filter::All,
        };
        if req.param("count").as_deref() == Some("true") {
            let total = self
                .store
                .count(c, &filter)
                .await
                .map_err(|e| store_error(e, false))?;
            return Ok(Response::json(StatusCode::OK, &json!({"total": total})));
        }
        let number = |name: &str, default: u64| match req.param(name) {
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| invalid(format!("{name} must be a number"))),
            None => Ok(default),
        };
        let offset = number("offset", 0)?;
        let limit = number("limit", 20)?.min(self.options.max_page);
        let mut options = FindOptions::new().skip(offset).limit(limit);
        if let Some(order) = req.param("order").filter(|o| !o.is_empty()) {
            options.sort = ejson::parse_order(&parse_json(&order)?).map_err(invalid)?;
        }
        let projection = match req.param("projection").filter(|p| !p.is_empty()) {
            Some(p) => Some(parse_json(&p)?),
            None => None,
        };
        let docs = self
            .store
            .find(c, &filter, &options)
            .await
            .map_err(|e| store_error(e, false))?;
        let list: Vec<Value> = docs
            .into_iter()
            .map(|d| ejson::encode(&project(d, projection.as_ref())))
            .collect();
        Ok(Response::json(
            StatusCode::OK,
            &json!({"offset": offset, "limit": limit, "list": list}),
        ))
    }

    async fn document(&self, method: &Method, c: &str, id: &str, body: &Value) -> Answer {
        self.require(c).await?;
        let by_id = Filter::id(id);
        match *method {
            Method::GET => match self
                .store
                .get(c, id)
                .await
                .map_err(|e| store_error(e, false))?
            {
                Some(doc) => Ok(Response::json(StatusCode::OK, &ejson::encode(&doc))),
                None => Err(not_found()),
            },
            Method::PATCH => {
                if body["replaceMode"] == true {
                    return Err(invalid("replaceMode is not supported by wemint-dev"));
                }
                let update = parse_data(&body["data"])?;
                let (doc, inserted) = self
                    .update(c, &by_id, &update, body["upsert"] == true, false)
                    .await?;
                let Some(doc) = doc else {
                    return Err(not_found());
                };
                let mut out = json!({"updated": 1, "matched": u8::from(!inserted), "upsert_id": if inserted { id } else { "" }});
                if body["returnDoc"] == true {
                    out["doc"] = ejson::encode(&doc);
                }
                Ok(Response::json(StatusCode::OK, &out))
            }
            Method::DELETE => {
                if self
                    .store
                    .delete_one(c, &by_id)
                    .await
                    .map_err(|e| store_error(e, false))?
                {
                    Ok(Response::json(StatusCode::OK, &json!({"deleted": 1})))
                } else {
                    Err(not_found())
                }
            }
            _ => Err(Response::not_found(id)),
        }
    }

    async fn remove(&self, c: &str, body: &Value) -> Answer {
        if body["query"].as_object().is_none_or(|q| q.is_empty()) {
            return Err(invalid("param.query can't be empty"));
        }
        self.require(c).await?;
        let filter = parse_query(&body["query"])?;
        let deleted = if body["multi"] == true {
            self.store.delete_many(c, &filter).await
        } else {
            self.store.delete_one(c, &filter).await.map(u64::from)
        }
        .map_err(|e| store_error(e, false))?;
        Ok(Response::json(StatusCode::OK, &json!({"deleted": deleted})))
    }

    async fn commands(&self, body: &Value) -> Answer {
        let Some(commands) = body["commands"].as_array() else {
            return Err(invalid("param.commands must be an array"));
        };
        let mut results = Vec::new();
        for command in commands {
            let command = ejson::decode(command.clone());
            let name = command
                .as_object()
                .and_then(|m| m.keys().next())
                .map(String::as_str)
                .unwrap_or("");
            let result = match name {
                "findAndModify" if self.options.find_and_modify => {
                    self.find_and_modify(&command).await?
                }
                "createIndexes" => self.create_indexes(&command).await?,
                "listIndexes" => self.list_indexes(&command).await?,
                "drop" => self.drop(&command).await?,
                "ping" => json!({"ok": 1}),
                other => {
                    return Err(error(
                        StatusCode::FORBIDDEN,
                        "DATABASE_INVALID_OPERRATOR",
                        &format!("command `{other}` is not supported"),
                    ));
                }
            };
            results.push(result);
        }
        Ok(Response::json(StatusCode::OK, &json!({"list": results})))
    }

    async fn find_and_modify(&self, command: &Value) -> Result<Value, Response> {
        let c = command["findAndModify"].as_str().unwrap_or("");
        if command["new"] != true || command["remove"] == true {
            return Err(invalid(
                "wemint-dev supports findAndModify with new: true only",
            ));
        }
        if !command["sort"].is_null() && command["sort"] != json!({"_id": 1}) {
            return Err(invalid(
                "wemint-dev supports findAndModify with sort {_id: 1} only",
            ));
        }
        let filter = parse_query(&command["query"])?;
        let update = parse_data(&command["update"])?;
        let upsert = command["upsert"] == true;
        if !self.exists(c).await? {
            if !upsert {
                return Ok(
                    json!({"value": null, "lastErrorObject": {"n": 0, "updatedExisting": false}, "ok": 1}),
                );
            }
            // MongoDB creates the collection on upsert.
            self.register(c).await?;
        }
        let (doc, inserted) = self.update(c, &filter, &update, upsert, true).await?;
        let n = u8::from(doc.is_some());
        Ok(json!({
            "value": doc.map(|d| ejson::encode(&d)),
            "lastErrorObject": {"n": n, "updatedExisting": n == 1 && !inserted},
            "ok": 1,
        }))
    }

    async fn create_indexes(&self, command: &Value) -> Result<Value, Response> {
        let c = command["createIndexes"].as_str().unwrap_or("");
        let Some(models) = command["indexes"].as_array() else {
            return Err(invalid("createIndexes needs `indexes`"));
        };
        let mut specs = Vec::new();
        for model in models {
            let (Some(key), Some(name)) = (model["key"].as_object(), model["name"].as_str()) else {
                return Err(invalid("an index needs `key` and `name`"));
            };
            let fields: Vec<String> = key.keys().cloned().collect();
            if let Some(partial) = model.get("partialFilterExpression") {
                let expected: serde_json::Map<String, Value> = fields
                    .iter()
                    .map(|f| (f.clone(), json!({"$exists": true})))
                    .collect();
                if partial != &Value::Object(expected) {
                    return Err(invalid(
                        "wemint-dev supports partial indexes on `$exists: true` of every field only",
                    ));
                }
            }
            let mut spec = IndexSpec::non_unique(fields).named(name);
            spec.unique = model["unique"] == true;
            specs.push(spec);
        }
        self.register(c).await?;
        self.store
            .ensure_indexes(c, &specs)
            .await
            .map_err(|e| store_error(e, true))?;
        let (before, after) = match self.indexes.lock() {
            Ok(mut all) => {
                let known = all.entry(c.to_owned()).or_default();
                let before = known.len() + 1;
                for model in models {
                    if let Some(name) = model["name"].as_str() {
                        known.insert(name.to_owned(), model.clone());
                    }
                }
                (before, known.len() + 1)
            }
            Err(_) => (1, 1),
        };
        // MongoDB's answer; the `+ 1` is the implicit `_id_` index.
        Ok(json!({"numIndexesBefore": before, "numIndexesAfter": after, "ok": 1}))
    }

    /// `drop`: the collection's documents, its registration and its remembered indexes go
    /// (the documents' indexes stay in the embedded store, where they are harmless).
    async fn drop(&self, command: &Value) -> Result<Value, Response> {
        let c = command["drop"].as_str().unwrap_or("");
        if !self.exists(c).await? {
            return Err(missing());
        }
        self.store
            .delete_many(c, &Filter::All)
            .await
            .map_err(|e| store_error(e, true))?;
        self.store
            .delete_one(REGISTRY, &Filter::id(c))
            .await
            .map_err(|e| store_error(e, true))?;
        if let Ok(mut k) = self.known.lock() {
            k.remove(c);
        }
        if let Ok(mut all) = self.indexes.lock() {
            all.remove(c);
        }
        Ok(json!({"ns": c, "ok": 1}))
    }

    /// `listIndexes`: `_id_` plus the indexes created here, as an array of index documents
    /// (the shape observed for `/commands` reads).
    async fn list_indexes(&self, command: &Value) -> Result<Value, Response> {
        let c = command["listIndexes"].as_str().unwrap_or("");
        if !self.exists(c).await? {
            return Err(missing());
        }
        let mut list = vec![json!({"v": 2, "key": {"_id": 1}, "name": "_id_"})];
        if let Ok(all) = self.indexes.lock()
            && let Some(known) = all.get(c)
        {
            list.extend(known.values().cloned());
        }
        Ok(Value::Array(list))
    }
}

fn denied(what: &str) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "DATABASE_PERMISSION_DENIED",
        &format!("{what} needs administrator rights (an API key)"),
    )
}

fn missing() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "DATABASE_COLLECTION_NOT_EXIST",
        "Db or Table not exist",
    )
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "DOCUMENT_NOT_FOUND",
        "Document not found",
    )
}

fn counts(matched: u64, upsert_id: &str) -> Response {
    let updated = matched + u64::from(!upsert_id.is_empty());
    Response::json(
        StatusCode::OK,
        &json!({"updated": updated, "matched": matched, "upsert_id": upsert_id}),
    )
}

fn parse_json(text: &str) -> Result<Value, Response> {
    serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))
}

fn parse_query(query: &Value) -> Result<Filter, Response> {
    if query.is_null() {
        return Err(invalid("param.query is required"));
    }
    ejson::parse_filter(&ejson::decode(query.clone())).map_err(invalid)
}

fn parse_data(data: &Value) -> Result<Update, Response> {
    ejson::parse_update(&ejson::decode(data.clone())).map_err(invalid)
}

/// Top-level inclusion (`{a: 1}`, `_id` always kept) or exclusion (`{a: 0}`) projection.
fn project(doc: Value, projection: Option<&Value>) -> Value {
    let (Some(Value::Object(spec)), Value::Object(mut map)) = (projection, doc.clone()) else {
        return doc;
    };
    let include = spec.values().any(|v| v == 1 || v == true);
    if include {
        map.retain(|k, _| k == "_id" || spec.get(k).is_some_and(|v| v == 1 || v == true));
    } else {
        map.retain(|k, _| !spec.contains_key(k));
    }
    Value::Object(map)
}

fn operation_name(req: &Request, route: &Route, body: &Value) -> String {
    match (route, &req.method) {
        (Route::CreateCollection, _) => "createCollection".into(),
        (Route::Commands, _) => {
            let first = body["commands"][0]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
                .unwrap_or_default();
            format!("commands:{first}")
        }
        (Route::Documents(_), &Method::GET) if req.param("count").as_deref() == Some("true") => {
            "count".into()
        }
        (Route::Documents(_), &Method::GET) => "query".into(),
        (Route::Documents(_), &Method::POST) => "insert".into(),
        (Route::Documents(_), _) => "update".into(),
        (Route::Remove(_), _) => "remove".into(),
        (Route::Document(..), &Method::GET) => "getById".into(),
        (Route::Document(..), &Method::PATCH) => "updateById".into(),
        (Route::Document(..), _) => "deleteById".into(),
    }
}
