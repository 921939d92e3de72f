//! Invoking a function in-process, for tests: no process, no socket, no runtime API.
//!
//! A [`Harness`] runs a [`Function`]'s init with a [`Config`] built from a list of variables,
//! then feeds it the same events the platform would: a callable event (`callFunction`, with or
//! without a caller), an HTTP request for a webhook, a timer firing. Each goes through the
//! runtime's own event classification and routing, so a reply here is the reply the deployed
//! binary gives; only the transport is skipped.
//!
//! ```no_run
//! use serde_json::json;
//! use wemint::runtime::testing::{Caller, Harness};
//!
//! # async fn demo() -> Result<(), wemint::runtime::BoxError> {
//! # let function = wemint::runtime::Function::new("hello", "0");
//! let harness = Harness::start(function, [("WEMINT_SESSION_SECRET", "0123456789abcdef0123456789abcdef")]).await?;
//! let reply = harness.call(&Caller::Anonymous, "health", json!({})).await;
//! assert_eq!(reply["ok"], true);
//! # Ok(()) }
//! ```
//!
//! [`TestStore`] gives a test its own SQLite file to seed and inspect while the function under
//! test opens the same file through `WEMINT_STORE`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Mode;
use super::dispatch::{EventReply, HttpRequest, parse_query};
use super::function::{BoxError, Function, Invocation, Service, WebhookResponse};
use crate::config::Config;
use crate::store::{self, Store, StoreError};

/// Who makes a callable invocation.
#[derive(Clone, Debug)]
pub enum Caller {
    /// Nobody: no platform identity and no session token.
    Anonymous,
    /// A Mini Program user as CloudBase `callFunction` injects them (`userInfo` in the event).
    /// Trusted only when the configuration sets `WEMINT_TRUST_PLATFORM_IDENTITY=cloudbase-event`.
    Platform {
        /// The user's openid.
        openid: String,
        /// The Mini Program's appid.
        appid: String,
    },
    /// A session token issued by `login`, sent as the request's `token` field.
    Session(String),
}

impl Caller {
    /// A `callFunction` user.
    pub fn platform(openid: impl Into<String>, appid: impl Into<String>) -> Self {
        Self::Platform {
            openid: openid.into(),
            appid: appid.into(),
        }
    }
}

/// A function after its init, invoked directly.
pub struct Harness {
    service: Service,
    invocations: AtomicU64,
}

impl Harness {
    /// Runs `function`'s init with exactly `vars` as its configuration (the process environment
    /// is not read).
    ///
    /// # Errors
    /// What init returns: a missing or malformed variable, an unreachable store, a bad
    /// function definition.
    pub async fn start<S, K, V>(
        function: Function<S>,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, BoxError>
    where
        S: Send + Sync + 'static,
        K: Into<String>,
        V: Into<String>,
    {
        let service = function
            .build(Mode::ScfEvent, Config::from_vars(vars))
            .await?;
        Ok(Self {
            service,
            invocations: AtomicU64::new(0),
        })
    }

    fn invocation(&self) -> Invocation {
        let n = self.invocations.fetch_add(1, Ordering::Relaxed) + 1;
        Invocation {
            request_id: format!("harness-{n}"),
            mode: Mode::ScfEvent,
            received_at: Instant::now(),
            deadline: None,
            memory_limit_mb: None,
        }
    }

    /// Delivers a raw event, as the SCF runtime API or Lambda would, and returns the function's
    /// reply.
    ///
    /// # Errors
    /// The message the runtime reports as an invocation error when it cannot understand the
    /// event (not JSON, not an object, a malformed HTTP event).
    pub async fn event(&self, event: Value) -> Result<Value, String> {
        match self
            .service
            .handle_event_value(event, self.invocation())
            .await
        {
            EventReply::Response(reply) => Ok(reply),
            EventReply::Error(message) => Err(message),
        }
    }

    /// Calls the callable `action` with `data` (a JSON object, or `null` for none) as `caller`
    /// through a `callFunction` event; returns the reply envelope
    /// (`{"ok":true,"data":…}` or `{"ok":false,"error":{"code","message"}}`).
    ///
    /// # Panics
    /// When `data` is neither an object nor `null`.
    pub async fn call(&self, caller: &Caller, action: &str, data: Value) -> Value {
        let mut event = match data {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => panic!("callable data must be a JSON object, got {other}"),
        };
        event.insert("action".into(), json!(action));
        match caller {
            Caller::Anonymous => {}
            Caller::Platform { openid, appid } => {
                event.insert("userInfo".into(), json!({"openId": openid, "appId": appid}));
            }
            Caller::Session(token) => {
                event.insert("token".into(), json!(token));
            }
        }
        self.event(Value::Object(event))
            .await
            .unwrap_or_else(|e| panic!("a callable event was refused: {e}"))
    }

    /// Sends an HTTP request (as an HTTP access trigger delivers it: platform `X-WX-*` headers
    /// are not trusted) and returns the response. The URI's path picks the webhook (or the
    /// callable); its query string is decoded into the request's query parameters.
    pub async fn http<B: Into<Bytes>>(&self, request: http::Request<B>) -> WebhookResponse {
        let (parts, body) = request.into_parts();
        let body = body.into();
        let req = HttpRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(parse_query).unwrap_or_default(),
            headers: parts.headers,
            body,
        };
        self.service
            .handle_http(req, self.invocation(), false)
            .await
    }

    /// Fires the timer trigger `trigger_name` now; returns the reply envelope.
    pub async fn timer(&self, trigger_name: &str) -> Value {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let event =
            json!({"Type": "Timer", "TriggerName": trigger_name, "Time": time, "Message": ""});
        self.event(event)
            .await
            .unwrap_or_else(|e| panic!("a timer event was refused: {e}"))
    }
}

/// A SQLite store in a file of its own, removed when dropped: the test seeds and inspects it
/// through [`TestStore::store`] while the function under test opens it from
/// [`TestStore::var`].
pub struct TestStore {
    path: PathBuf,
    store: Arc<dyn Store>,
}

impl TestStore {
    /// Creates a fresh store file under the system temporary directory, with every collection
    /// and index declared.
    ///
    /// # Errors
    /// The file cannot be created or opened.
    pub async fn new() -> Result<Self, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "wemint-test-{}-{nanos}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let store = store::open(&format!("sqlite:{}", path.display())).await?;
        store::bootstrap(store.as_ref()).await?;
        Ok(Self { path, store })
    }

    /// The `WEMINT_STORE` variable naming this store.
    pub fn var(&self) -> (&'static str, String) {
        ("WEMINT_STORE", format!("sqlite:{}", self.path.display()))
    }

    /// The store, for seeding and checking.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};

    use super::*;
    use crate::runtime::{ApiError, WebhookResponse};

    const SECRET: &str = "harness-session-secret-0123456789";

    fn function() -> Function<String> {
        Function::with_init("probe", "0.1.0", |config: Config| async move {
            Ok::<_, BoxError>(config.optional("PROBE_GREETING").unwrap_or_default())
        })
        .callable("whoami", |state: Arc<String>, req| async move {
            let platform = req.identity.platform.as_ref().map(|p| p.openid.clone());
            Ok::<_, ApiError>(json!({
                "greeting": *state, "platform": platform, "token": req.identity.token(),
                "data": req.data,
            }))
        })
        .webhook("/hook", |_s, req| async move {
            Ok(WebhookResponse::text(
                StatusCode::OK,
                format!(
                    "{} {} q={} body={}",
                    req.method,
                    req.path,
                    req.query_param("q").unwrap_or("-"),
                    String::from_utf8_lossy(&req.body)
                ),
            ))
        })
        .timer(|_s, t| async move { Ok::<_, ApiError>(json!({"trigger": t.trigger_name})) })
    }

    #[tokio::test]
    async fn callables_see_config_caller_and_clean_data() {
        let h = Harness::start(function(), [("PROBE_GREETING", "hi")])
            .await
            .unwrap();
        let out = h
            .call(
                &Caller::platform("o-alice", "wxa"),
                "whoami",
                json!({"n": 1, "userInfo": {"openId": "forged"}}),
            )
            .await;
        assert_eq!(
            out,
            json!({"ok": true, "data": {"greeting": "hi", "platform": "o-alice", "token": null, "data": {"n": 1}}})
        );
        let out = h
            .call(&Caller::Session("tok".into()), "whoami", Value::Null)
            .await;
        assert_eq!(out["data"]["token"], "tok");
        assert_eq!(out["data"]["platform"], Value::Null);
        let out = h.call(&Caller::Anonymous, "nope", json!({})).await;
        assert_eq!(out["error"]["code"], "UNKNOWN_ACTION");
    }

    #[tokio::test]
    async fn webhooks_timers_and_raw_events() {
        let h = Harness::start(function(), [("WEMINT_SESSION_SECRET", SECRET)])
            .await
            .unwrap();
        let req = http::Request::builder()
            .method(Method::POST)
            .uri("/hook/x?q=a%20b")
            .body(&b"raw"[..])
            .unwrap();
        let resp = h.http(req).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(&resp.body[..], b"POST /hook/x q=a b body=raw");
        assert_eq!(
            h.timer("every-minute").await,
            json!({"ok": true, "data": {"trigger": "every-minute"}})
        );
        assert!(h.event(json!([1])).await.is_err());
    }

    #[tokio::test]
    async fn init_failures_are_returned() {
        let failing = Function::with_init("bad", "0", |config: Config| async move {
            config.store().map(|_| ())
        });
        let err = Harness::start(failing, [("WEMINT_STORE", "postgres://x")])
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("WEMINT_STORE"), "{err}");
    }

    #[tokio::test]
    async fn test_store_is_a_file_named_by_its_variable_and_removed_on_drop() {
        let ts = TestStore::new().await.unwrap();
        let (name, value) = ts.var();
        assert_eq!(name, "WEMINT_STORE");
        let path = PathBuf::from(value.strip_prefix("sqlite:").unwrap());
        assert!(path.is_file(), "{}", path.display());
        let config = Config::from_vars([ts.var()]);
        assert_eq!(config.store().unwrap().uri(), value);
        let again = store::open(&value).await.unwrap();
        drop(again);
        drop(ts);
        assert!(!path.exists());
    }
}
