//! `wemint-dev provision` and `wemint-dev probe`: the two commands a merchant runs against a
//! CloudBase environment before deploying (`cloudbase://<envId>`, the API key from
//! `WEMINT_CLOUDBASE_API_KEY`, the gateway from `WEMINT_CLOUDBASE_ENDPOINT` when set, exactly as
//! the functions resolve them).
//!
//! They speak the document-database REST API directly instead of going through
//! [`wemint::store::cloudbase::CloudbaseStore`], because they report what the store hides:
//! whether a collection or index was created or already there, and the raw status, `code` and
//! body shape of each answer (the facts the store's design depends on and the public docs
//! leave unconfirmed).
//!
//! - [`provision`] creates every collection and index of [`wemint::store::collections::all`]
//!   (`POST /collections`, then `/commands` `createIndexes` with the store's own index models,
//!   so the store's later `ensure_indexes` is a no-op). It is idempotent: `409` means found;
//!   `listIndexes` (when the environment accepts it) or the `numIndexesBefore/After` of the
//!   `createIndexes` answer tell created from found.
//! - [`probe`] runs the first-contact checks: reachability and key rights, collection creation
//!   answers, the `$numberLong` round trip, the duplicate-key error shapes, the page size cap,
//!   `findAndModify` and the other `/commands`, the remove guard and transactions. It reads
//!   the registry's collections only through a `limit=1` query; every write goes to a scratch
//!   collection that it empties and, where the environment allows `drop`, removes.

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wemint::store::cloudbase::{CloudbaseConfig, index_model};
use wemint::store::collections;

/// Time allowed for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a just-created collection may take to be served (the documented propagation delay).
const COLLECTION_READY: Duration = Duration::from_secs(10);

/// A thin client for the admin routes of one document database.
pub struct Gateway {
    client: reqwest::Client,
    /// `{endpoint}/v1/database/instances/{instance}/databases/{database}`.
    base: String,
    key: String,
    env_id: String,
}

/// One answer: the status and the JSON body (`{}` when empty, `{"message": text}` when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// A 2xx answer without an error `code` (a 2xx carrying `code` is an error, see the store).
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
            && self.body.get("code").is_none_or(|c| c.is_null() || c == "")
    }

    pub fn code(&self) -> &str {
        self.body.get("code").and_then(Value::as_str).unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The first entry of a `/commands` answer's `list`.
    pub fn first(&self) -> Option<&Value> {
        self.body.get("list")?.as_array()?.first()
    }

    /// `HTTP 409 DATABASE_DUPLICATE_WRITE: E11000 …` (message cut to 140 characters).
    pub fn describe(&self) -> String {
        let message: String = self.message().chars().take(140).collect();
        match (self.code(), message.is_empty()) {
            ("", true) => format!("HTTP {}", self.status),
            ("", false) => format!("HTTP {}: {message}", self.status),
            (code, true) => format!("HTTP {} {code}", self.status),
            (code, false) => format!("HTTP {} {code}: {message}", self.status),
        }
    }

    fn missing_collection(&self) -> bool {
        self.status == 404 && self.code() == "DATABASE_COLLECTION_NOT_EXIST"
    }

    fn refused_key(&self) -> bool {
        matches!(self.status, 401 | 403) && self.code() != "DATABASE_INVALID_OPERRATOR"
    }
}

/// Percent-encodes one path segment; `(default)` stays literal, as the vendor's clients send it.
fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"()-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Gateway {
    /// From `cloudbase://<envId>[?instance=…&database=…]` and the process environment.
    pub fn from_env(store_uri: &str) -> Result<Self, String> {
        let config = CloudbaseConfig::from_uri(store_uri, |k| std::env::var(k).ok())
            .map_err(|e| e.to_string())?;
        Self::new(&config)
    }

    pub fn new(config: &CloudbaseConfig) -> Result<Self, String> {
        let client = wemint::outbound::client().map_err(|e| e.to_string())?;
        Ok(Gateway {
            client,
            base: format!(
                "{}/v1/database/instances/{}/databases/{}",
                config.endpoint,
                segment(&config.instance),
                segment(&config.database)
            ),
            key: config.api_key.clone(),
            env_id: config.env_id.clone(),
        })
    }

    /// `METHOD {base}{tail}`. Transport failures are errors that never contain the key.
    pub async fn send(
        &self,
        method: Method,
        tail: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{tail}", self.base))
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let scrub = |e: &dyn std::fmt::Display| e.to_string().replace(&self.key, "***");
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {tail}: {}", scrub(&e)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{method} {tail}: {}", scrub(&e)))?;
        let body = if text.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": text }))
        };
        Ok(Answer { status, body })
    }

    /// `POST /commands` with one command.
    pub async fn command(&self, command: Value) -> Result<Answer, String> {
        self.send(
            Method::POST,
            "/commands",
            Some(&json!({ "commands": [command] })),
        )
        .await
    }

    fn documents(collection: &str) -> String {
        format!("/collections/{}/documents", segment(collection))
    }

    /// Polls a `limit=1` query until the collection is served.
    async fn wait_served(&self, collection: &str) -> Result<(), String> {
        let deadline = Instant::now() + COLLECTION_READY;
        loop {
            let tail = format!("{}?limit=1", Self::documents(collection));
            let answer = self.send(Method::GET, &tail, None).await?;
            if !answer.missing_collection() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "collection `{collection}` was created but is still not served after {}s",
                    COLLECTION_READY.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Created or already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Created,
    Found,
    /// `createIndexes` succeeded but the environment neither lists indexes nor counts them.
    Ensured,
}

impl Found {
    fn word(self) -> &'static str {
        match self {
            Found::Created => "created",
            Found::Found => "found",
            Found::Ensured => "ensured (the environment does not say whether it existed)",
        }
    }
}

/// What [`provision`] did, item by item.
#[derive(Debug, Default)]
pub struct Provisioned {
    /// `(collection, outcome)`.
    pub collections: Vec<(String, Found)>,
    /// `(collection, index name, unique, outcome)`.
    pub indexes: Vec<(String, String, bool, Found)>,
}

impl Provisioned {
    pub fn count(&self, what: Found) -> usize {
        self.collections.iter().filter(|c| c.1 == what).count()
            + self.indexes.iter().filter(|i| i.3 == what).count()
    }
}

/// Index names `listIndexes` reports, or `None` when the environment refuses the command.
async fn list_indexes(gw: &Gateway, collection: &str) -> Result<Option<Vec<String>>, String> {
    let answer = gw.command(json!({ "listIndexes": collection })).await?;
    if !answer.ok() {
        return Ok(None);
    }
    let Some(first) = answer.first() else {
        return Ok(None);
    };
    // The shapes seen for `/commands` reads: an array of documents, or a cursor.
    let docs = first.as_array().or_else(|| {
        first
            .pointer("/cursor/firstBatch")
            .and_then(Value::as_array)
    });
    Ok(docs.map(|docs| {
        docs.iter()
            .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }))
}

/// Creates every registry collection and index; prints one line per item to `out`.
pub async fn provision(gw: &Gateway, out: &mut dyn Write) -> Result<Provisioned, String> {
    let mut done = Provisioned::default();
    let io = |e: std::io::Error| e.to_string();
    writeln!(
        out,
        "provisioning cloudbase://{} ({} collections from the registry)",
        gw.env_id,
        collections::all().len()
    )
    .map_err(io)?;
    for (collection, specs) in collections::all() {
        let created = gw
            .send(
                Method::POST,
                "/collections",
                Some(&json!({ "collectionName": collection })),
            )
            .await?;
        let outcome = if created.ok() {
            Found::Created
        } else if created.status == 409 {
            Found::Found
        } else {
            let hint = if created.refused_key() {
                "; WEMINT_CLOUDBASE_API_KEY must be an API key (administrator) of this environment"
            } else {
                ""
            };
            return Err(format!(
                "creating collection `{collection}`: {}{hint}",
                created.describe()
            ));
        };
        if outcome == Found::Created {
            gw.wait_served(collection).await?;
        }
        writeln!(out, "  collection {collection:<26} {}", outcome.word()).map_err(io)?;
        done.collections.push((collection.to_owned(), outcome));
        if specs.is_empty() {
            continue;
        }
        let listed = list_indexes(gw, collection).await?;
        for spec in &specs {
            let outcome = if listed.as_ref().is_some_and(|l| l.contains(&spec.name)) {
                Found::Found
            } else {
                let answer = gw
                    .command(json!({ "createIndexes": collection, "indexes": [index_model(spec)] }))
                    .await?;
                if !answer.ok() {
                    return Err(format!(
                        "creating index `{}` on `{collection}`: {}{}",
                        spec.name,
                        answer.describe(),
                        if answer.status == 403 || answer.refused_key() {
                            "; this environment refuses /commands createIndexes: create the index in the console (数据库 → 集合 → 索引管理) with the fields and uniqueness listed by `wemint-dev provision`'s source, docs/collections.md"
                        } else {
                            ""
                        }
                    ));
                }
                let count = |k: &str| {
                    answer
                        .first()
                        .and_then(|f| f.get(k))
                        .map(|v| wemint::store::cloudbase::ejson::decode(v.clone()))
                        .and_then(|v| v.as_u64())
                };
                match (count("numIndexesBefore"), count("numIndexesAfter")) {
                    (Some(before), Some(after)) if after > before => Found::Created,
                    (Some(_), Some(_)) => Found::Found,
                    _ if listed.is_some() => Found::Created,
                    _ => Found::Ensured,
                }
            };
            let label = format!(
                "{} ({}{})",
                spec.name,
                spec.fields.join(", "),
                if spec.unique { "; unique" } else { "" }
            );
            writeln!(out, "    index {label:<40} {}", outcome.word()).map_err(io)?;
            done.indexes.push((
                collection.to_owned(),
                spec.name.clone(),
                spec.unique,
                outcome,
            ));
        }
    }
    writeln!(
        out,
        "done: {} collections and {} indexes; {} created, {} found, {} ensured",
        done.collections.len(),
        done.indexes.len(),
        done.count(Found::Created),
        done.count(Found::Found),
        done.count(Found::Ensured)
    )
    .map_err(io)?;
    Ok(done)
}

/// The answer to one first-contact question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    Unknown,
}

/// What [`probe`] learned.
#[derive(Debug, Default)]
pub struct Probed {
    /// `/commands` `findAndModify` works (the store's one-round-trip `update_one`).
    pub find_and_modify: Option<Verdict>,
    /// `/commands` `createIndexes` works (provisioning needs it).
    pub create_indexes: Option<Verdict>,
    /// Largest page a list query returned or echoed, when the server says.
    pub page_limit: Option<u64>,
    /// A duplicate `_id` insert comes back in a shape the store maps to `DuplicateKey`.
    pub duplicate_recognised: Option<Verdict>,
    /// Integers beyond 2^53 survive a write and a read as `$numberLong`.
    pub long_round_trip: Option<Verdict>,
    /// Every check with its verdict and detail, in order.
    pub checks: Vec<(String, Verdict, String)>,
}

impl Probed {
    fn record(&mut self, out: &mut dyn Write, name: &str, verdict: Verdict, detail: String) {
        let mark = match verdict {
            Verdict::Yes => "yes",
            Verdict::No => "no ",
            Verdict::Unknown => "?  ",
        };
        let _ = writeln!(out, "  [{mark}] {name:<38} {detail}");
        self.checks.push((name.to_owned(), verdict, detail));
    }

    /// The verdict of a check by name.
    pub fn verdict(&self, name: &str) -> Option<Verdict> {
        self.checks.iter().find(|c| c.0 == name).map(|c| c.1)
    }
}

/// A duplicate-key answer as the store recognises it (`shared/src/store/cloudbase.rs`).
fn is_duplicate(answer: &Answer) -> bool {
    answer.code() == "DATABASE_DUPLICATE_WRITE" || answer.message().contains("E11000")
}

/// Short JSON text of a value (for reporting shapes).
fn shape(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

/// Runs the first-contact checks; prints each to `out` with a summary of what wemint will do.
/// Fails early only when the environment cannot be reached or the key is refused.
pub async fn probe(gw: &Gateway, out: &mut dyn Write) -> Result<Probed, String> {
    let mut p = Probed::default();
    let _ = writeln!(
        out,
        "probing cloudbase://{} (gateway {})",
        gw.env_id, gw.base
    );

    // 1. Reachability and the key, read-only: one `limit=1` query on a registry collection.
    let users = collections::USERS;
    let reach = gw
        .send(
            Method::GET,
            &format!("{}?limit=1", Gateway::documents(users)),
            None,
        )
        .await?;
    if reach.refused_key() {
        return Err(format!(
            "the gateway refused the key: {}; set WEMINT_CLOUDBASE_API_KEY to an API key (administrator) of environment {} (console: 环境 → API Key)",
            reach.describe(),
            gw.env_id
        ));
    }
    let detail = if reach.missing_collection() {
        format!("key accepted; `{users}` does not exist yet: run `wemint-dev provision`")
    } else if reach.ok() {
        format!("key accepted; `{users}` exists")
    } else {
        reach.describe()
    };
    let reachable = if reach.ok() || reach.missing_collection() {
        Verdict::Yes
    } else {
        Verdict::Unknown
    };
    p.record(out, "gateway reachable, key accepted", reachable, detail);
    if let Some(field) = ["request_id", "requestId"]
        .iter()
        .find(|f| reach.body.get(**f).is_some())
    {
        p.record(out, "request id field", Verdict::Yes, (*field).to_owned());
    }

    // 2. A scratch collection for every write below.
    let suffix: String = wemint::store::new_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    let scratch = format!(
        "wemint_probe_{}",
        &suffix[suffix.len().saturating_sub(10)..]
    );
    let created = gw
        .send(
            Method::POST,
            "/collections",
            Some(&json!({ "collectionName": scratch })),
        )
        .await?;
    if !created.ok() {
        p.record(
            out,
            "create collection",
            Verdict::No,
            format!(
                "{}: provisioning cannot create collections with this key",
                created.describe()
            ),
        );
        return finish(p, out);
    }
    p.record(
        out,
        "create collection",
        Verdict::Yes,
        format!("HTTP {} body {}", created.status, shape(&created.body)),
    );
    gw.wait_served(&scratch).await?;
    let again = gw
        .send(
            Method::POST,
            "/collections",
            Some(&json!({ "collectionName": scratch })),
        )
        .await?;
    p.record(
        out,
        "create existing collection → 409",
        if again.status == 409 {
            Verdict::Yes
        } else {
            Verdict::No
        },
        again.describe(),
    );

    let result = scratch_checks(gw, &scratch, &mut p, out).await;
    cleanup(gw, &scratch, &mut p, out).await;
    result?;
    finish(p, out)
}

/// The checks that write, all inside `scratch`.
async fn scratch_checks(
    gw: &Gateway,
    scratch: &str,
    p: &mut Probed,
    out: &mut dyn Write,
) -> Result<(), String> {
    let docs = Gateway::documents(scratch);

    // `$numberLong` round trip: 2^53 + 1 is not representable as a double.
    let long = json!({ "$numberLong": "9007199254740993" });
    let doc = json!({ "_id": "probe-long", "n": long, "small": 7 });
    let inserted = gw
        .send(Method::POST, &docs, Some(&json!({ "data": [doc] })))
        .await?;
    if !inserted.ok() {
        p.record(out, "insert", Verdict::No, inserted.describe());
        return Ok(());
    }
    let read = gw
        .send(Method::GET, &format!("{docs}/probe-long"), None)
        .await?;
    let n = read.body.get("n").cloned().unwrap_or(Value::Null);
    let exact = n == long || n == json!(9_007_199_254_740_993_u64);
    p.long_round_trip = Some(if exact { Verdict::Yes } else { Verdict::No });
    p.record(
        out,
        "$numberLong round trip",
        if exact { Verdict::Yes } else { Verdict::No },
        format!(
            "wrote 9007199254740993, read {}; a small integer reads as {}",
            shape(&n),
            shape(read.body.get("small").unwrap_or(&Value::Null))
        ),
    );

    // Duplicate `_id` through POST documents.
    let dup = gw
        .send(
            Method::POST,
            &docs,
            Some(&json!({ "data": [{ "_id": "probe-long" }] })),
        )
        .await?;
    let recognised = !dup.ok() && is_duplicate(&dup);
    p.duplicate_recognised = Some(if recognised {
        Verdict::Yes
    } else {
        Verdict::No
    });
    p.record(
        out,
        "duplicate _id → DuplicateKey",
        if recognised {
            Verdict::Yes
        } else {
            Verdict::No
        },
        dup.describe(),
    );
    if let Some(field) = ["request_id", "requestId"]
        .iter()
        .find(|f| dup.body.get(**f).is_some())
    {
        p.record(
            out,
            "error request id field",
            Verdict::Yes,
            (*field).to_owned(),
        );
    }

    // The type of a server-chosen `_id` (wemint always chooses its own).
    let auto = gw
        .send(
            Method::POST,
            &docs,
            Some(&json!({ "data": [{ "probe": true }] })),
        )
        .await?;
    let id = auto
        .body
        .pointer("/insertedIds/0")
        .cloned()
        .unwrap_or(Value::Null);
    p.record(
        out,
        "server-chosen _id",
        Verdict::Yes,
        if id.is_string() {
            format!("a string ({})", shape(&id))
        } else {
            format!("{} (wemint always sets its own _id)", shape(&id))
        },
    );

    // Page size cap: what the server does with limit 1000 and 1001.
    let mut cap = None;
    for limit in [1000_u64, 1001] {
        let page = gw
            .send(Method::GET, &format!("{docs}?limit={limit}"), None)
            .await?;
        let echoed = page
            .body
            .get("limit")
            .map(|v| wemint::store::cloudbase::ejson::decode(v.clone()))
            .and_then(|v| v.as_u64());
        let detail = match (page.ok(), echoed) {
            (true, Some(e)) => {
                cap = Some(cap.map_or(e, |c: u64| c.max(e)));
                format!("accepted, the server echoes limit {e}")
            }
            (true, None) => "accepted (no limit echoed)".to_owned(),
            (false, _) => {
                if cap.is_none() && limit == 1001 {
                    cap = Some(1000);
                }
                format!("refused: {}", page.describe())
            }
        };
        p.record(
            out,
            &format!("list query limit={limit}"),
            if page.ok() { Verdict::Yes } else { Verdict::No },
            detail,
        );
    }
    p.page_limit = cap;

    // findAndModify, the reference's exact probe (§12 item 4), inside the scratch collection.
    let fam = gw
        .command(json!({
            "findAndModify": scratch,
            "query": { "_id": "x" },
            "update": { "$set": { "a": 1 } },
            "new": true,
            "upsert": true
        }))
        .await?;
    let fam_ok = fam.ok() && fam.first().is_some_and(|f| f.get("value").is_some());
    p.find_and_modify = Some(if fam_ok { Verdict::Yes } else { Verdict::No });
    p.record(
        out,
        "findAndModify via /commands",
        if fam_ok { Verdict::Yes } else { Verdict::No },
        if fam_ok {
            format!("result {}", shape(fam.first().unwrap_or(&Value::Null)))
        } else {
            fam.describe()
        },
    );

    // createIndexes, then a unique-index violation through PATCH (§12 item 6b).
    let index = gw
        .command(json!({
            "createIndexes": scratch,
            "indexes": [{ "key": { "k": 1 }, "name": "k_1", "unique": true }]
        }))
        .await?;
    p.create_indexes = Some(if index.ok() {
        Verdict::Yes
    } else {
        Verdict::No
    });
    p.record(
        out,
        "createIndexes via /commands",
        if index.ok() {
            Verdict::Yes
        } else {
            Verdict::No
        },
        if index.ok() {
            format!("result {}", shape(index.first().unwrap_or(&Value::Null)))
        } else {
            index.describe()
        },
    );
    if index.ok() {
        gw.send(
            Method::POST,
            &docs,
            Some(&json!({ "data": [{ "_id": "ka", "k": 1 }, { "_id": "kb", "k": 2 }] })),
        )
        .await?;
        let clash = gw
            .send(
                Method::PATCH,
                &docs,
                Some(&json!({
                    "query": { "_id": "kb" },
                    "data": { "$set": { "k": 1 } },
                    "multi": false,
                    "upsert": false
                })),
            )
            .await?;
        p.record(
            out,
            "unique index violation via PATCH",
            if !clash.ok() && is_duplicate(&clash) {
                Verdict::Yes
            } else {
                Verdict::No
            },
            clash.describe(),
        );
    }

    // Duplicate through `/commands` insert (§12 item 6c).
    let cmd_dup = gw
        .command(json!({ "insert": scratch, "documents": [{ "_id": "probe-long" }] }))
        .await?;
    let detail = cmd_dup.describe();
    p.record(
        out,
        "duplicate via /commands insert",
        if is_duplicate(&cmd_dup) {
            Verdict::Yes
        } else if cmd_dup.ok() {
            Verdict::No
        } else {
            Verdict::Unknown
        },
        detail,
    );

    // Other commands the store could use.
    for (name, command) in [
        ("ping", json!({ "ping": 1 })),
        ("count", json!({ "count": scratch, "query": {} })),
        ("listIndexes", json!({ "listIndexes": scratch })),
        (
            "listCollections",
            json!({ "listCollections": 1, "nameOnly": true }),
        ),
    ] {
        let answer = gw.command(command).await?;
        p.record(
            out,
            &format!("/commands {name}"),
            if answer.ok() {
                Verdict::Yes
            } else {
                Verdict::No
            },
            if answer.ok() {
                format!("result {}", shape(answer.first().unwrap_or(&answer.body)))
            } else {
                answer.describe()
            },
        );
    }

    // The remove guard (§12 item 8): an empty filter is refused; a tautology passes.
    let empty = gw
        .send(
            Method::POST,
            &format!("{docs}/remove"),
            Some(&json!({ "query": {}, "multi": true })),
        )
        .await?;
    p.record(
        out,
        "remove with an empty filter refused",
        if empty.ok() {
            Verdict::No
        } else {
            Verdict::Yes
        },
        empty.describe(),
    );

    // Transactions: start, then roll back (§12 item 1).
    let started = gw.send(Method::POST, "/transactions", None).await?;
    match started.body.get("transactionId").and_then(Value::as_str) {
        Some(tx) if started.ok() => {
            let rolled = gw
                .send(
                    Method::POST,
                    &format!("/transactions/{}/rollback", segment(tx)),
                    None,
                )
                .await?;
            p.record(
                out,
                "transactions",
                Verdict::Yes,
                format!(
                    "start HTTP {}; rollback HTTP {} body {}",
                    started.status,
                    rolled.status,
                    shape(&rolled.body)
                ),
            );
        }
        _ => p.record(out, "transactions", Verdict::No, started.describe()),
    }
    Ok(())
}

/// Empties the scratch collection and drops it where `/commands drop` is accepted.
async fn cleanup(gw: &Gateway, scratch: &str, p: &mut Probed, out: &mut dyn Write) {
    let removed = gw
        .send(
            Method::POST,
            &format!("{}/remove", Gateway::documents(scratch)),
            Some(&json!({ "query": { "_id": { "$exists": true } }, "multi": true })),
        )
        .await;
    let removed = match removed {
        Ok(a) if a.ok() => format!(
            "{} scratch documents removed",
            a.body.get("deleted").map_or("?".into(), shape)
        ),
        Ok(a) => format!("removing scratch documents failed: {}", a.describe()),
        Err(e) => format!("removing scratch documents failed: {e}"),
    };
    match gw.command(json!({ "drop": scratch })).await {
        Ok(a) if a.ok() => p.record(
            out,
            "cleanup (/commands drop)",
            Verdict::Yes,
            format!("{removed}; `{scratch}` dropped"),
        ),
        Ok(a) => p.record(
            out,
            "cleanup (/commands drop)",
            Verdict::No,
            format!(
                "{removed}; drop refused ({}): delete the empty collection `{scratch}` in the console",
                a.describe()
            ),
        ),
        Err(e) => p.record(
            out,
            "cleanup (/commands drop)",
            Verdict::Unknown,
            format!("{removed}; drop failed ({e}): delete `{scratch}` in the console"),
        ),
    }
}

/// Prints what the `cloudbase://` store will do with what was found.
fn finish(p: Probed, out: &mut dyn Write) -> Result<Probed, String> {
    let _ = writeln!(out, "what wemint does on this environment:");
    let update = match p.find_and_modify {
        Some(Verdict::Yes) => "update_one uses /commands findAndModify (one round trip)",
        Some(_) => {
            "update_one falls back to the conditional PATCH and a read back (two or three round trips)"
        }
        None => "update_one: unknown (the probe stopped early)",
    };
    let _ = writeln!(out, "  {update}");
    let indexes = match p.create_indexes {
        Some(Verdict::Yes) => {
            "`wemint-dev provision` creates the indexes with /commands createIndexes"
        }
        Some(_) => {
            "/commands createIndexes is refused: create the indexes of docs/collections.md in the console before deploying"
        }
        None => "indexes: unknown (the probe stopped early)",
    };
    let _ = writeln!(out, "  {indexes}");
    if let Some(limit) = p.page_limit {
        let _ = writeln!(out, "  find pages with limit {limit}");
    }
    match p.duplicate_recognised {
        Some(Verdict::Yes) => {
            let _ = writeln!(
                out,
                "  duplicate keys map to DuplicateKey (idempotent payments)"
            );
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "  WARNING: the duplicate-key answer is not one the store recognises; do not go live, report the line above"
            );
        }
        None => {}
    }
    if p.long_round_trip == Some(Verdict::No) {
        let _ = writeln!(
            out,
            "  WARNING: integers do not round-trip as $numberLong; amounts could change type"
        );
    }
    Ok(p)
}
