//! The CloudBase backend: the environment's own document database, spoken to through the
//! document-database REST API of the CloudBase HTTP API gateway
//! (`https://{envId}.api.tcloudbasegateway.com/v1/database/instances/{instance}/databases/{database}/…`).
//!
//! `WEMINT_STORE=cloudbase://<envId>[?instance=…&database=…]` (both default to `(default)`),
//! `WEMINT_CLOUDBASE_API_KEY` (sent as `Authorization: Bearer`), optional
//! `WEMINT_CLOUDBASE_ENDPOINT` (default `https://{envId}.api.tcloudbasegateway.com`; the
//! emulator and tests point it at their stand-in).
//!
//! **Auth.** Only the API key. It is the credential the gateway documents as "administrator",
//! which `/commands` (atomic updates, indexes) and collection creation need. The server token
//! from `TENCENTCLOUD_SECRETID/SECRETKEY/SESSIONTOKEN` (`/auth/v1/token/clientCredential`) is
//! not used: inside SCF those are temporary credentials, and whether the Basic form accepts
//! them, and which database rights the resulting token carries, are both unconfirmed; a token
//! without admin rights would silently lose `/commands` and collection creation. Until a live
//! probe settles that, a missing API key is a clear configuration error.
//!
//! **Atomic, conditional `update_one`.** Never a read followed by a computed write; the
//! database applies the filter and the update in one operation:
//! - Preferred: `/commands` `findAndModify` with `sort: {_id: 1}`, `new: true`: one round
//!   trip, exactly MongoDB's semantics. The reference marks its availability UNCONFIRMED, so
//!   the first use probes it: a 400/401/403 refusal switches the store (for its lifetime) to:
//! - Fallback: the conditional `PATCH /documents` (filter route, `multi: false`) pinned to
//!   the first matching `_id` (looked up first, so "first in `_id` order" holds; if the
//!   document stops matching in between, `matched == 0` and the lookup repeats), then a read
//!   back by `_id`. The write stamps a fresh token in [`ejson::REV_FIELD`]; the read back
//!   returns our after-image when the token is ours, otherwise the newest state (a later
//!   writer already changed it). Three round trips (two when the filter is an `_id`).
//!
//! Round trips per call otherwise: `insert`, `get`, `count`, `delete_many` one each; `find`
//! one per page; `delete_one` one by `_id`, else two (lookup, then a remove pinned to it);
//! `ensure_indexes` three (create collection, readiness probe, `createIndexes`).
//!
//! Every write stamps the token, so a write whose outcome is unknown (transport timeout,
//! `504`) is resolved by reading back: found means applied; not found means it did not apply
//! or was overwritten, which is reported as an error (never repeated: an `$inc` must not run
//! twice). Inserts always carry a client-chosen `_id`, so their resolution is exact.
//!
//! **Faults.** `422 EXCEED_*` and `503` are retried with bounded exponential backoff
//! (they are refusals, nothing was applied); reads are also retried on timeouts and `504`.
//! Anything else is a [`StoreError`] naming the operation and collection, never the key.
//!
//! **Paging.** `find` pages with `offset`/`limit` up to [`MAX_PAGE`] per request, trusting
//! the `limit` the gateway echoes (so a smaller server cap still pages correctly), until the
//! asked limit is reached or a page comes back short.
//!
//! **Collections.** The gateway does not create a collection on insert: a write that meets
//! `DATABASE_COLLECTION_NOT_EXIST` creates it and retries (waiting out the documented
//! propagation delay); reads of a missing collection read as empty, as on SQLite.

pub mod ejson;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::document::{self, to_json};
use super::filter::Filter;
use super::{
    FindOptions, IndexSpec, Store, StoreError, Update, UpdateOptions, check_collection, new_id,
};
use crate::outbound;
use ejson::REV_FIELD;

/// Largest page asked for in one request (the legacy server cap; the gateway's own maximum
/// is unconfirmed, and a smaller echoed `limit` is honoured).
pub const MAX_PAGE: u64 = 1000;
/// Attempts for a request refused with `422 EXCEED_*` / `503` (or a read that timed out).
const ATTEMPTS: u32 = 6;
/// How long a write waits for a just-created collection to become usable.
const COLLECTION_READY: Duration = Duration::from_secs(10);
/// How often the pinned fallback update or delete re-resolves its target.
const RACE_RETRIES: usize = 8;
/// How often an upsert that lost an insert race on a unique index is tried again (it then
/// updates the winner's document; a conflict on another unique index persists).
const UPSERT_RETRIES: usize = 3;

const API_KEY_VAR: &str = "WEMINT_CLOUDBASE_API_KEY";
const ENDPOINT_VAR: &str = "WEMINT_CLOUDBASE_ENDPOINT";
const DEFAULT: &str = "(default)";

/// Where and how to reach one CloudBase document database.
#[derive(Clone)]
pub struct CloudbaseConfig {
    /// The environment id (`envId`).
    pub env_id: String,
    /// Database instance (`(default)` for the environment's own).
    pub instance: String,
    /// Database name (`(default)`).
    pub database: String,
    /// Gateway base URL, without a trailing `/`.
    pub endpoint: String,
    /// The API key (administrator).
    pub api_key: String,
    /// Time allowed for one request; past it a write's outcome is unknown.
    pub request_timeout: Duration,
    /// First backoff after a refusal (doubles, capped at 2 s, jittered).
    pub backoff: Duration,
}

impl fmt::Debug for CloudbaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudbaseConfig")
            .field("env_id", &self.env_id)
            .field("instance", &self.instance)
            .field("database", &self.database)
            .field("endpoint", &self.endpoint)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl CloudbaseConfig {
    /// Parses `cloudbase://<envId>[?instance=…&database=…]`, with the key and endpoint taken
    /// from `var` (the process environment in [`super::open`]).
    pub fn from_uri(uri: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let rest = uri.strip_prefix("cloudbase://").ok_or_else(|| {
            StoreError::InvalidQuery("a CloudBase store URI starts with `cloudbase://`".into())
        })?;
        let (env_id, query) = rest.split_once('?').unwrap_or((rest, ""));
        let env_id = env_id.trim_end_matches('/');
        if env_id.is_empty()
            || !env_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(StoreError::InvalidQuery(format!(
                "`{uri}`: the environment id after `cloudbase://` must be letters, digits, `-` and `_`"
            )));
        }
        let (mut instance, mut database) = (DEFAULT.to_owned(), DEFAULT.to_owned());
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*key {
                "instance" => &mut instance,
                "database" => &mut database,
                other => {
                    return Err(StoreError::InvalidQuery(format!(
                        "unknown `cloudbase://` option `{other}`: only `instance` and `database`"
                    )));
                }
            };
            if value.is_empty() {
                return Err(StoreError::InvalidQuery(format!(
                    "`cloudbase://` option `{key}` is empty"
                )));
            }
            *slot = value.into_owned();
        }
        let api_key = var(API_KEY_VAR).filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            StoreError::InvalidQuery(format!(
                "`cloudbase://` needs {API_KEY_VAR} (a CloudBase API key, created under ApiKey management)"
            ))
        })?;
        let endpoint = var(ENDPOINT_VAR)
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| format!("https://{env_id}.api.tcloudbasegateway.com"));
        Ok(Self {
            env_id: env_id.to_owned(),
            instance,
            database,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            api_key: api_key.trim().to_owned(),
            request_timeout: outbound::REQUEST_TIMEOUT,
            backoff: Duration::from_millis(50),
        })
    }
}

/// How `update_one` is made atomic (see the module docs).
const MODE_UNKNOWN: u8 = 0;
const MODE_COMMANDS: u8 = 1;
const MODE_PATCH: u8 = 2;

/// A document store in one CloudBase document database.
#[derive(Clone)]
pub struct CloudbaseStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: CloudbaseConfig,
    client: reqwest::Client,
    /// `{endpoint}/v1/database/instances/{instance}/databases/{database}`.
    base: String,
    mode: AtomicU8,
    retry: outbound::Retry,
}

impl fmt::Debug for CloudbaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudbaseStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One HTTP answer that was not retried away.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
            && self.body.get("code").is_none_or(|c| c.is_null() || c == "")
    }

    fn code(&self) -> &str {
        self.body.get("code").and_then(Value::as_str).unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn count(&self, field: &str) -> u64 {
        self.body
            .get(field)
            .and_then(|v| ejson::decode(v.clone()).as_u64())
            .unwrap_or(0)
    }

    fn missing_collection(&self) -> bool {
        self.status == 404 && self.code() == "DATABASE_COLLECTION_NOT_EXIST"
    }
}

/// Why a call produced no usable answer.
enum Failure {
    /// A write was sent but its outcome is unknown (timeout, 504).
    Unknown(String),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Whether a request may have changed data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// What an operation is, for error messages and routing.
#[derive(Clone, Copy)]
struct Op<'a> {
    name: &'static str,
    collection: &'a str,
}

impl CloudbaseStore {
    /// Builds the store from `cloudbase://…` and the process environment.
    pub async fn open(uri: &str) -> Result<Self, StoreError> {
        Self::connect(CloudbaseConfig::from_uri(uri, |k| std::env::var(k).ok())?).await
    }

    /// Builds the store on the shared pooled client and warms its TLS connection.
    pub async fn connect(config: CloudbaseConfig) -> Result<Self, StoreError> {
        let client = outbound::client().map_err(|e| StoreError::Backend(e.to_string()))?;
        let base = format!(
            "{}/v1/database/instances/{}/databases/{}",
            config.endpoint,
            segment(&config.instance),
            segment(&config.database)
        );
        let retry = outbound::Retry::new(ATTEMPTS, config.backoff, Duration::from_secs(2));
        let store = Self {
            inner: Arc::new(Inner {
                config,
                client,
                base,
                mode: AtomicU8::new(MODE_UNKNOWN),
                retry,
            }),
        };
        store.warm().await;
        Ok(store)
    }

    /// Opens the pooled keep-alive connection (TCP + TLS) now, during init, so the first
    /// invocation does not pay for it. Any answer will do; failures surface on first use.
    async fn warm(&self) {
        let url = format!("{}/", self.inner.config.endpoint);
        let sent = self
            .inner
            .client
            .head(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "CloudBase gateway warm-up failed");
        }
    }

    /// `findAndModify` (true), the pinned PATCH (false), or not yet known (None).
    fn uses_commands(&self) -> Option<bool> {
        match self.inner.mode.load(AtomicOrdering::Relaxed) {
            MODE_COMMANDS => Some(true),
            MODE_PATCH => Some(false),
            _ => None,
        }
    }

    fn collection_url(&self, collection: &str, tail: &str) -> String {
        format!(
            "{}/collections/{}{}",
            self.inner.base,
            segment(collection),
            tail
        )
    }

    /// Sends one request, retrying refusals (`422 EXCEED_*`, `503`) with backoff, and reads
    /// also on timeouts and `504`. A write that timed out is [`Failure::Unknown`].
    async fn call(
        &self,
        op: Op<'_>,
        kind: Kind,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| StoreError::InvalidDocument(e.to_string()))?
            .map(bytes::Bytes::from);
        let mut attempt = 1;
        loop {
            let mut request = self
                .inner
                .client
                .request(method.clone(), url)
                .timeout(self.inner.config.request_timeout)
                .bearer_auth(&self.inner.config.api_key);
            if let Some(bytes) = &bytes {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            let retryable = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = match response.text().await {
                        Ok(text) => text,
                        Err(e) if kind == Kind::Write => {
                            return Err(Failure::Unknown(self.scrub(&e.to_string())));
                        }
                        Err(e) => {
                            if attempt >= ATTEMPTS {
                                return Err(self
                                    .backend(op, &format!("reading the answer failed: {e}"))
                                    .into());
                            }
                            attempt += 1;
                            continue;
                        }
                    };
                    let body = if text.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&text).unwrap_or_else(|_| json!({"message": text}))
                    };
                    let reply = Reply { status, body };
                    let refused =
                        status == 503 || (status == 422 && reply.code().starts_with("EXCEED"));
                    if status == 504 && kind == Kind::Write {
                        return Err(Failure::Unknown(format!("HTTP 504 {}", reply.code())));
                    }
                    if !(refused || status == 504) {
                        return Ok(reply);
                    }
                    format!("HTTP {status} {}", reply.code())
                }
                // Never sent: nothing can have been applied.
                Err(e) if e.is_connect() => self.scrub(&e.to_string()),
                Err(e) if kind == Kind::Write => {
                    return Err(Failure::Unknown(self.scrub(&e.to_string())));
                }
                Err(e) => self.scrub(&e.to_string()),
            };
            if attempt >= ATTEMPTS {
                return Err(self
                    .backend(
                        op,
                        &format!("still failing after {ATTEMPTS} attempts: {retryable}"),
                    )
                    .into());
            }
            tokio::time::sleep(self.inner.retry.delay_for(attempt)).await;
            attempt += 1;
        }
    }

    /// [`Self::call`] for reads: an unknown outcome cannot happen.
    async fn read(&self, op: Op<'_>, url: &str) -> Result<Reply, StoreError> {
        match self.call(op, Kind::Read, Method::GET, url, None).await {
            Ok(reply) => Ok(reply),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Unknown(why)) => Err(self.backend(op, &why)),
        }
    }

    /// Removes the API key from text that may echo a request (defence in depth).
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.inner.config.api_key, "***")
    }

    fn backend(&self, op: Op<'_>, what: &str) -> StoreError {
        StoreError::Backend(self.scrub(&format!(
            "CloudBase {} on `{}`: {what}",
            op.name, op.collection
        )))
    }

    /// Maps a failed answer to the store's errors (see the reference's error table).
    fn error(&self, op: Op<'_>, reply: &Reply) -> StoreError {
        let (code, message) = (reply.code(), reply.message());
        if code == "DATABASE_DUPLICATE_WRITE" || message.contains("E11000") {
            return StoreError::DuplicateKey {
                collection: op.collection.to_owned(),
                index: duplicate_index(message),
            };
        }
        let detail = || {
            let id = reply
                .body
                .get("request_id")
                .or_else(|| reply.body.get("requestId"))
                .and_then(Value::as_str)
                .unwrap_or("-");
            self.scrub(&format!(
                "CloudBase {} on `{}`: HTTP {} {code}: {message} (request {id})",
                op.name, op.collection, reply.status
            ))
        };
        const UPDATE_FAILURES: [&str; 8] = [
            "Cannot apply",
            "Cannot create field",
            "Cannot increment",
            "Failed to apply",
            "non-numeric",
            "must be an array",
            "would create a conflict",
            "immutable field",
        ];
        const INDEX_CONFLICTS: [&str; 4] = [
            "IndexOptionsConflict",
            "IndexKeySpecsConflict",
            "already exists with different",
            "already exists with a different",
        ];
        match reply.status {
            401 | 403 if code != "DATABASE_INVALID_OPERRATOR" => StoreError::Backend(format!(
                "{}; check that {API_KEY_VAR} is a valid API key of this environment (creating collections and /commands need administrator rights)",
                detail()
            )),
            400 | 403 | 500 if UPDATE_FAILURES.iter().any(|p| message.contains(p)) => {
                StoreError::InvalidUpdate(detail())
            }
            400 | 500 if INDEX_CONFLICTS.iter().any(|p| message.contains(p)) => {
                StoreError::InvalidQuery(detail())
            }
            400 | 403 => match op.name {
                "insert" => StoreError::InvalidDocument(detail()),
                "update_one" => StoreError::InvalidUpdate(detail()),
                _ => StoreError::InvalidQuery(detail()),
            },
            _ => StoreError::Backend(detail()),
        }
    }

    /// Creates a collection (201 and "already exists" are both fine) and waits until the
    /// gateway serves it (creation propagates with a delay).
    async fn create_collection(&self, collection: &str) -> Result<(), StoreError> {
        let op = Op {
            name: "create collection",
            collection,
        };
        let url = format!("{}/collections", self.inner.base);
        let body = json!({ "collectionName": collection });
        let reply = match self
            .call(op, Kind::Write, Method::POST, &url, Some(&body))
            .await
        {
            Ok(reply) => Some(reply),
            // Idempotent: the wait below sees whether it exists.
            Err(Failure::Unknown(_)) => None,
            Err(Failure::Store(e)) => return Err(e),
        };
        if let Some(reply) = &reply
            && !reply.ok()
            && reply.status != 409
        {
            return Err(self.error(op, reply));
        }
        let probe = format!("{}?limit=1", self.collection_url(collection, "/documents"));
        let deadline = Instant::now() + COLLECTION_READY;
        loop {
            let reply = self.read(op, &probe).await?;
            if !reply.missing_collection() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.backend(op, "the collection was created but is still not served"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The `_id` of the first document (in `_id` order) matching `query`.
    async fn first_id(&self, op: Op<'_>, query: &Value) -> Result<Option<String>, StoreError> {
        let url = format!(
            "{}?query={}&order={}&limit=1&projection={}",
            self.collection_url(op.collection, "/documents"),
            component(&query.to_string()),
            component(r#"[{"field":"_id","direction":"asc"}]"#),
            component(r#"{"_id":1}"#),
        );
        let reply = self.read(op, &url).await?;
        if reply.missing_collection() {
            return Ok(None);
        }
        if !reply.ok() {
            return Err(self.error(op, &reply));
        }
        Ok(list(&reply)
            .first()
            .and_then(|d| d.get("_id").and_then(Value::as_str).map(str::to_owned)))
    }

    /// The document carrying this write token, if any (resolves unknown outcomes).
    async fn find_token(&self, op: Op<'_>, token: &str) -> Result<Option<Value>, StoreError> {
        let url = format!(
            "{}?query={}&limit=1",
            self.collection_url(op.collection, "/documents"),
            component(&json!({ REV_FIELD: token }).to_string())
        );
        let reply = self.read(op, &url).await?;
        if reply.missing_collection() {
            return Ok(None);
        }
        if !reply.ok() {
            return Err(self.error(op, &reply));
        }
        Ok(list(&reply).into_iter().next().map(ejson::decode_document))
    }

    async fn get_raw(&self, op: Op<'_>, id: &str) -> Result<Option<Value>, StoreError> {
        let reply = self
            .read(
                op,
                &self.collection_url(op.collection, &format!("/documents/{}", segment(id))),
            )
            .await?;
        if reply.status == 404 {
            return Ok(None);
        }
        if !reply.ok() {
            return Err(self.error(op, &reply));
        }
        Ok(Some(reply.body))
    }

    /// A write whose outcome is unknown: found by its token means applied, otherwise an
    /// error (it may have applied and been overwritten, so it is never repeated).
    async fn resolve_update(
        &self,
        op: Op<'_>,
        token: &str,
        why: &str,
    ) -> Result<Option<Value>, StoreError> {
        tokio::time::sleep(self.inner.retry.delay_for(1)).await;
        match self.find_token(op, token).await? {
            Some(doc) => Ok(Some(doc)),
            None => Err(self.backend(
                op,
                &format!(
                    "outcome unknown ({why}) and the write is not visible; it was not repeated"
                ),
            )),
        }
    }

    /// `findAndModify`: `Ok(None)` from the outer result means the environment refused the
    /// command (fall back); the inner option is the document after the update.
    async fn find_and_modify(
        &self,
        op: Op<'_>,
        query: &Value,
        update: &Value,
        upsert: bool,
        token: &str,
    ) -> Result<Option<Option<Value>>, StoreError> {
        let body = json!({ "commands": [{
            "findAndModify": op.collection,
            "query": query,
            "sort": { "_id": 1 },
            "update": update,
            "new": true,
            "upsert": upsert,
        }]});
        let url = format!("{}/commands", self.inner.base);
        let mut created = false;
        let reply = loop {
            let reply = match self
                .call(op, Kind::Write, Method::POST, &url, Some(&body))
                .await
            {
                Ok(reply) => reply,
                Err(Failure::Unknown(why)) => {
                    return self.resolve_update(op, token, &why).await.map(Some);
                }
                Err(Failure::Store(e)) => return Err(e),
            };
            // MongoDB creates the collection on upsert; should the gateway not, create it.
            if reply.missing_collection() && upsert && !created {
                self.create_collection(op.collection).await?;
                created = true;
                continue;
            }
            break reply;
        };
        if reply.missing_collection() {
            return Ok(Some(None));
        }
        if !reply.ok() {
            if self.uses_commands().is_none() && matches!(reply.status, 400 | 401 | 403) {
                tracing::warn!(
                    status = reply.status,
                    code = reply.code(),
                    "CloudBase refused /commands findAndModify; using conditional PATCH updates"
                );
                self.inner.mode.store(MODE_PATCH, AtomicOrdering::Relaxed);
                return Ok(None);
            }
            return Err(self.error(op, &reply));
        }
        self.inner
            .mode
            .store(MODE_COMMANDS, AtomicOrdering::Relaxed);
        // `{list: [result]}`; a result may itself be wrapped in an array.
        let mut result = reply
            .body
            .get("list")
            .and_then(|l| l.get(0))
            .cloned()
            .unwrap_or(Value::Null);
        if let Value::Array(items) = result {
            result = items.into_iter().next().unwrap_or(Value::Null);
        }
        let Some(value) = result.get("value") else {
            return Err(self.backend(op, "findAndModify answered without `value`"));
        };
        Ok(Some(match value {
            Value::Object(_) => Some(ejson::decode_document(value.clone())),
            _ => None,
        }))
    }

    /// The fallback: a conditional PATCH pinned to the first matching `_id`, then a read back.
    async fn patch_update(
        &self,
        op: Op<'_>,
        filter: &Filter,
        query: &Value,
        update: &Update,
        upsert: bool,
        token: &str,
    ) -> Result<Option<Value>, StoreError> {
        let url = self.collection_url(op.collection, "/documents");
        let rev = [(REV_FIELD, Value::String(token.to_owned()))];
        // A filter that is exactly an `_id` pins the document already.
        let pinned = only_id(filter).map(str::to_owned);
        for _ in 0..RACE_RETRIES {
            let target = match &pinned {
                Some(id) => Some(id.clone()),
                None => self.first_id(op, query).await?,
            };
            let body = match &target {
                Some(_) if pinned.is_some() => json!({
                    "query": query,
                    "data": ejson::update_document(update, &rev, None),
                    "multi": false, "upsert": upsert,
                }),
                Some(id) => json!({
                    "query": { "$and": [query, { "_id": id }] },
                    "data": ejson::update_document(update, &rev, None),
                    "multi": false, "upsert": false,
                }),
                None if !upsert => return Ok(None),
                None => json!({
                    "query": query,
                    "data": ejson::update_document(update, &rev, upsert_id(filter, update).as_deref()),
                    "multi": false, "upsert": true,
                }),
            };
            let reply = match self
                .call(op, Kind::Write, Method::PATCH, &url, Some(&body))
                .await
            {
                Ok(reply) => reply,
                Err(Failure::Unknown(why)) => return self.resolve_update(op, token, &why).await,
                Err(Failure::Store(e)) => return Err(e),
            };
            if reply.missing_collection() {
                self.create_collection(op.collection).await?;
                continue;
            }
            if !reply.ok() {
                return Err(self.error(op, &reply));
            }
            let upserted = reply
                .body
                .get("upsert_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            if reply.count("matched") == 0 && upserted.is_none() {
                if pinned.is_some() {
                    return Ok(None);
                }
                // The document stopped matching between the lookup and the write.
                continue;
            }
            let id = match (upserted, &target) {
                (Some(id), _) => id.to_owned(),
                (None, Some(id)) => id.clone(),
                // An upsert that found a document after all (inserted since our lookup).
                (None, None) => match self.find_token(op, token).await? {
                    Some(doc) => return Ok(Some(doc)),
                    // A later writer already replaced our token: read the newest state.
                    None => match self.first_id(op, query).await? {
                        Some(id) => id,
                        None => return Err(self.backend(op, "updated, but the document is gone")),
                    },
                },
            };
            return match self.get_raw(op, &id).await? {
                Some(doc) => Ok(Some(ejson::decode_document(doc))),
                None => self.find_token(op, token).await,
            };
        }
        Err(self.backend(op, "the matching document kept changing; gave up"))
    }

    async fn insert_once(&self, op: Op<'_>, body: &Value) -> Result<Reply, Failure> {
        let url = self.collection_url(op.collection, "/documents");
        let mut created = false;
        loop {
            let reply = self
                .call(op, Kind::Write, Method::POST, &url, Some(body))
                .await?;
            if reply.missing_collection() && !created {
                self.create_collection(op.collection).await?;
                created = true;
                continue;
            }
            return Ok(reply);
        }
    }
}

/// The `_id` an upsert inserts with, unless the filter or `$setOnInsert` gives one.
fn upsert_id(filter: &Filter, update: &Update) -> Option<String> {
    let given = filter.equalities().iter().any(|(p, _)| *p == "_id")
        || update
            .ops()
            .iter()
            .any(|op| matches!(op, super::update::UpdateOp::SetOnInsert(p, _) if p == "_id"));
    (!given).then(new_id)
}

/// The `list` of a query answer.
fn list(reply: &Reply) -> Vec<Value> {
    reply
        .body
        .get("list")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
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

/// The `_id` of a filter that is exactly one `_id` equality.
fn only_id(filter: &Filter) -> Option<&str> {
    match filter {
        Filter::Eq(path, Value::String(id)) if path == "_id" => Some(id),
        _ => None,
    }
}

/// Percent-encodes a query-string component (everything but RFC 3986 unreserved characters).
fn component(text: &str) -> String {
    encode_with(text, |_| false)
}

/// Percent-encodes a path segment; `(` and `)` stay literal, as in `(default)`.
fn segment(text: &str) -> String {
    encode_with(text, |b| b == b'(' || b == b')')
}

fn encode_with(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query that matches every document: the remove route refuses an empty one.
fn non_empty(query: Value) -> Value {
    if query.as_object().is_some_and(|m| m.is_empty()) {
        json!({ "_id": { "$exists": true } })
    } else {
        query
    }
}

#[async_trait]
impl Store for CloudbaseStore {
    fn backend(&self) -> &'static str {
        "cloudbase"
    }

    async fn insert(&self, collection: &str, mut doc: Value) -> Result<String, StoreError> {
        check_collection(collection)?;
        let op = Op {
            name: "insert",
            collection,
        };
        let id = document::prepare_insert(&mut doc)?;
        to_json(&doc)?;
        // The token tells our own earlier attempt apart from someone else's document.
        let token = new_id();
        if let Value::Object(map) = &mut doc {
            map.insert(REV_FIELD.into(), Value::String(token.clone()));
        }
        let body = json!({ "data": [ejson::encode(&doc)] });
        let ours = |found: &Value| found.get(REV_FIELD).and_then(Value::as_str) == Some(&token);
        let mut uncertain = false;
        // At most two sends: the second only after a read back proved the first absent.
        for _ in 0..2 {
            match self.insert_once(op, &body).await {
                Ok(reply) if reply.ok() => return Ok(id),
                Ok(reply) => {
                    let err = self.error(op, &reply);
                    if uncertain
                        && matches!(&err, StoreError::DuplicateKey { .. })
                        && self
                            .get_raw(op, &id)
                            .await?
                            .is_some_and(|found| ours(&found))
                    {
                        // The first attempt landed after all.
                        return Ok(id);
                    }
                    return Err(err);
                }
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Unknown(why)) => {
                    tokio::time::sleep(self.inner.retry.delay_for(1)).await;
                    match self.get_raw(op, &id).await? {
                        Some(found) if ours(&found) => return Ok(id),
                        Some(_) => {
                            return Err(StoreError::DuplicateKey {
                                collection: collection.to_owned(),
                                index: "_id_".into(),
                            });
                        }
                        None => {
                            tracing::warn!(
                                collection,
                                why,
                                "insert outcome unknown and not visible; sending it again"
                            );
                            uncertain = true;
                        }
                    }
                }
            }
        }
        Err(self.backend(op, "outcome unknown twice; not retried further"))
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>, StoreError> {
        check_collection(collection)?;
        let op = Op {
            name: "get",
            collection,
        };
        Ok(self.get_raw(op, id).await?.map(ejson::decode_document))
    }

    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Value>, StoreError> {
        check_collection(collection)?;
        filter.validate()?;
        for (path, _) in &options.sort {
            super::filter::check_path(path)?;
        }
        let op = Op {
            name: "find",
            collection,
        };
        let prefix = format!(
            "{}?query={}&order={}",
            self.collection_url(collection, "/documents"),
            component(&ejson::filter_query(filter).to_string()),
            component(&ejson::order(options).to_string()),
        );
        let mut out = Vec::new();
        let mut offset = options.skip;
        let mut remaining = options.limit;
        while remaining != Some(0) {
            let want = remaining.unwrap_or(MAX_PAGE).min(MAX_PAGE);
            let reply = self
                .read(op, &format!("{prefix}&offset={offset}&limit={want}"))
                .await?;
            if reply.missing_collection() {
                break;
            }
            if !reply.ok() {
                return Err(self.error(op, &reply));
            }
            let page = list(&reply);
            let n = page.len() as u64;
            let echoed = reply.body.get("limit").map(|l| ejson::decode(l.clone()));
            let page_size = echoed.and_then(|l| l.as_u64()).unwrap_or(want).min(want);
            out.extend(page.into_iter().map(ejson::decode_document));
            offset += n;
            remaining = remaining.map(|r| r.saturating_sub(n));
            if n == 0 || n < page_size {
                break;
            }
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
        check_collection(collection)?;
        filter.validate()?;
        update.validate()?;
        if options.upsert {
            // Catch what the server would only report after the fact, as the MongoDB backend does.
            document::validate(&Value::Object(update.upsert_document(filter)?))?;
        }
        let op = Op {
            name: "update_one",
            collection,
        };
        let query = ejson::filter_query(filter);
        let mut races = 0;
        loop {
            let token = new_id();
            let result = if self.uses_commands() == Some(false) {
                self.patch_update(op, filter, &query, update, options.upsert, &token)
                    .await
            } else {
                let insert_id = if options.upsert {
                    upsert_id(filter, update)
                } else {
                    None
                };
                let data = ejson::update_document(
                    update,
                    &[(REV_FIELD, Value::String(token.clone()))],
                    insert_id.as_deref(),
                );
                match self
                    .find_and_modify(op, &query, &data, options.upsert, &token)
                    .await
                {
                    Ok(Some(found)) => Ok(found),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                }
            };
            match result {
                // Two upserts raced to insert: the loser retries and now updates the winner's.
                Err(StoreError::DuplicateKey { .. })
                    if options.upsert && races < UPSERT_RETRIES =>
                {
                    races += 1
                }
                other => return other,
            }
        }
    }

    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<bool, StoreError> {
        check_collection(collection)?;
        filter.validate()?;
        let op = Op {
            name: "delete_one",
            collection,
        };
        let query = ejson::filter_query(filter);
        for _ in 0..RACE_RETRIES {
            let id = match only_id(filter) {
                Some(id) => id.to_owned(),
                None => match self.first_id(op, &query).await? {
                    Some(id) => id,
                    None => return Ok(false),
                },
            };
            let url = self.collection_url(collection, "/documents/remove");
            let body = json!({ "query": { "$and": [query, { "_id": id }] }, "multi": false });
            let reply = match self
                .call(op, Kind::Write, Method::POST, &url, Some(&body))
                .await
            {
                Ok(reply) => reply,
                // Deleting by `_id` and condition is idempotent: read back to settle it.
                Err(Failure::Unknown(_)) => match self.get_raw(op, &id).await? {
                    None => return Ok(true),
                    Some(_) => continue,
                },
                Err(Failure::Store(e)) => return Err(e),
            };
            if reply.missing_collection() {
                return Ok(false);
            }
            if !reply.ok() {
                return Err(self.error(op, &reply));
            }
            if reply.count("deleted") > 0 {
                return Ok(true);
            }
            if only_id(filter).is_some() {
                return Ok(false);
            }
        }
        Err(self.backend(op, "the matching document kept changing; gave up"))
    }

    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        check_collection(collection)?;
        filter.validate()?;
        let op = Op {
            name: "delete_many",
            collection,
        };
        let url = self.collection_url(collection, "/documents/remove");
        let body = json!({ "query": non_empty(ejson::filter_query(filter)), "multi": true });
        let mut deleted = 0;
        // A filtered delete is idempotent: after an unknown outcome it runs again and the
        // count adds up what the second run still found.
        for _ in 0..2 {
            match self
                .call(op, Kind::Write, Method::POST, &url, Some(&body))
                .await
            {
                Ok(reply) if reply.missing_collection() => return Ok(deleted),
                Ok(reply) if reply.ok() => return Ok(deleted + reply.count("deleted")),
                Ok(reply) => return Err(self.error(op, &reply)),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Unknown(_)) => deleted = 0,
            }
        }
        Err(self.backend(op, "outcome unknown twice"))
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        check_collection(collection)?;
        filter.validate()?;
        let op = Op {
            name: "count",
            collection,
        };
        let url = format!(
            "{}?query={}&count=true",
            self.collection_url(collection, "/documents"),
            component(&ejson::filter_query(filter).to_string())
        );
        let reply = self.read(op, &url).await?;
        if reply.missing_collection() {
            return Ok(0);
        }
        if !reply.ok() {
            return Err(self.error(op, &reply));
        }
        Ok(reply.count("total"))
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
        self.create_collection(collection).await?;
        if indexes.is_empty() {
            return Ok(());
        }
        let op = Op {
            name: "ensure_indexes",
            collection,
        };
        let models: Vec<Value> = indexes.iter().map(index_model).collect();
        let body = json!({ "commands": [{ "createIndexes": collection, "indexes": models }] });
        let url = format!("{}/commands", self.inner.base);
        // Creating the same indexes again is a no-op, so an unknown outcome is simply retried.
        for _ in 0..2 {
            match self
                .call(op, Kind::Write, Method::POST, &url, Some(&body))
                .await
            {
                Ok(reply) if reply.ok() => return Ok(()),
                Ok(reply) => {
                    let err = self.error(op, &reply);
                    return Err(match (reply.status, err) {
                        (401 | 403, StoreError::Backend(msg)) => StoreError::Backend(format!(
                            "{msg}; creating indexes needs /commands (an API key with administrator rights)"
                        )),
                        (_, err) => err,
                    });
                }
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Unknown(_)) => {}
            }
        }
        Err(self.backend(op, "outcome unknown twice"))
    }
}

/// A `createIndexes` entry. Unique indexes are partial on `$exists` for every field, so
/// documents missing a field are not indexed (as in SQLite and the MongoDB backend).
/// Public for `wemint-dev provision`, which creates the same indexes ahead of deploy.
pub fn index_model(spec: &IndexSpec) -> Value {
    let key: serde_json::Map<String, Value> =
        spec.fields.iter().map(|f| (f.clone(), json!(1))).collect();
    let mut model = json!({ "key": key, "name": spec.name, "unique": spec.unique });
    if spec.unique && spec.fields.iter().any(|f| f != "_id") {
        let partial: serde_json::Map<String, Value> = spec
            .fields
            .iter()
            .map(|f| (f.clone(), json!({ "$exists": true })))
            .collect();
        model["partialFilterExpression"] = Value::Object(partial);
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: Option<&str>) -> impl Fn(&str) -> Option<String> {
        let key = key.map(str::to_owned);
        move |name| match name {
            API_KEY_VAR => key.clone(),
            _ => None,
        }
    }

    #[test]
    fn uris_parse() {
        let c = CloudbaseConfig::from_uri("cloudbase://env-1a2b", env(Some("k"))).unwrap();
        assert_eq!(
            (c.instance.as_str(), c.database.as_str()),
            (DEFAULT, DEFAULT)
        );
        assert_eq!(c.endpoint, "https://env-1a2b.api.tcloudbasegateway.com");
        let c = CloudbaseConfig::from_uri("cloudbase://e?instance=i1&database=db", env(Some("k")))
            .unwrap();
        assert_eq!((c.instance.as_str(), c.database.as_str()), ("i1", "db"));
        assert!(CloudbaseConfig::from_uri("cloudbase://", env(Some("k"))).is_err());
        assert!(CloudbaseConfig::from_uri("cloudbase://e?x=1", env(Some("k"))).is_err());
        let err = CloudbaseConfig::from_uri("cloudbase://e", env(None)).unwrap_err();
        assert!(err.to_string().contains(API_KEY_VAR), "{err}");
        let debug = format!(
            "{:?}",
            CloudbaseConfig::from_uri("cloudbase://e", env(Some("sekrit"))).unwrap()
        );
        assert!(!debug.contains("sekrit"), "{debug}");
    }

    #[tokio::test]
    async fn open_dispatches_cloudbase_uris_and_needs_the_key() {
        if std::env::var_os(API_KEY_VAR).is_some() {
            return;
        }
        let err = crate::store::open("cloudbase://env-1a2b")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidQuery(_)), "{err:?}");
        assert!(err.to_string().contains(API_KEY_VAR), "{err}");
    }

    #[test]
    fn encodes_urls() {
        assert_eq!(segment("(default)"), "(default)");
        assert_eq!(segment("用户 1/x"), "%E7%94%A8%E6%88%B7%201%2Fx");
        assert_eq!(
            component(r#"{"a":"b c+"}"#),
            "%7B%22a%22%3A%22b%20c%2B%22%7D"
        );
    }

    #[test]
    fn duplicate_key_index_is_parsed_without_values() {
        let message = "E11000 duplicate key error collection: db.orders index: outTradeNo_1 dup key: { outTradeNo: \"secret\" }";
        assert_eq!(duplicate_index(message), "outTradeNo_1");
        assert_eq!(duplicate_index("duplicate"), "unknown");
    }
}
