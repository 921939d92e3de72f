//! The function value: entry points registered on a builder, state built once in init.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::Mode;
use super::error::{ApiError, ok_envelope};
use super::identity::IdentityInputs;
use crate::config::Config;

/// Any error an init step may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Facts about the invocation being served.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The platform's request id (SCF `request_id`, Lambda request id, `X-Request-Id` or a
    /// generated one over HTTP).
    pub request_id: String,
    /// How the binary is being run.
    pub mode: Mode,
    /// When the invocation arrived.
    pub received_at: Instant,
    /// When the platform will stop waiting (receive time + time limit), if it says.
    pub deadline: Option<Instant>,
    /// The memory limit the platform announced, if any.
    pub memory_limit_mb: Option<u32>,
}

impl Invocation {
    /// Time left before the deadline (`None` when there is no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// A callable request: the selected action, the user data and the raw identity inputs.
#[derive(Clone, Debug)]
pub struct CallRequest {
    /// The operation selected by `action` (or the URL path, or the default action).
    pub action: String,
    /// The request data as a JSON object, without `action`, `token` and `userInfo`.
    pub data: Value,
    /// Platform claims and session token as received; see `docs/runtime.md`.
    pub identity: IdentityInputs,
    /// The invocation this request belongs to.
    pub invocation: Invocation,
}

impl CallRequest {
    /// Deserializes the data into `T`.
    ///
    /// # Errors
    /// `BAD_REQUEST` naming the problem when the data does not fit `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        T::deserialize(&self.data).map_err(|e| ApiError::bad_request(format!("invalid data: {e}")))
    }
}

/// A raw HTTP request for a webhook. The body is the exact bytes received (base64 already
/// decoded), so signatures can be checked over it.
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    /// The HTTP method.
    pub method: Method,
    /// The request path, without the query string.
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// Query parameters in order, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The body bytes exactly as received.
    pub body: Bytes,
    /// The invocation this request belongs to.
    pub invocation: Invocation,
}

impl WebhookRequest {
    /// The first value of a header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The HTTP response a webhook answers with.
#[derive(Clone, Debug)]
pub struct WebhookResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Bytes,
}

impl WebhookResponse {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// A response with a body and its content type.
    pub fn with_body(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<Bytes>,
    ) -> Self {
        let mut r = Self::new(status);
        r.headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r.body = body.into();
        r
    }

    /// A JSON response.
    pub fn json(status: StatusCode, value: &Value) -> Self {
        Self::with_body(status, "application/json", value.to_string())
    }

    /// A plain text response (`text/plain; charset=utf-8`).
    pub fn text(status: StatusCode, text: impl Into<String>) -> Self {
        Self::with_body(status, "text/plain; charset=utf-8", text.into())
    }

    /// The error envelope with the error's status (and `Retry-After` when set).
    pub fn from_error(err: &ApiError) -> Self {
        let mut r = Self::json(err.status(), &err.to_envelope());
        if let Some(secs) = err.retry_after_secs() {
            r.headers
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// A timer trigger firing.
#[derive(Clone, Debug)]
pub struct TimerRequest {
    /// `TriggerName` as configured in `cloudbaserc.json`.
    pub trigger_name: String,
    /// `Time` as sent by the platform (ISO 8601).
    pub time: String,
    /// `Message`, the trigger's configured message (often empty).
    pub message: String,
    /// The invocation this request belongs to.
    pub invocation: Invocation,
}

type CallableFn = Arc<dyn Fn(CallRequest) -> BoxFuture<Result<Value, ApiError>> + Send + Sync>;
type WebhookFn =
    Arc<dyn Fn(WebhookRequest) -> BoxFuture<Result<WebhookResponse, ApiError>> + Send + Sync>;
type TimerFn = Arc<dyn Fn(TimerRequest) -> BoxFuture<Result<Value, ApiError>> + Send + Sync>;
type Erase<S, F> = Box<dyn FnOnce(Arc<S>) -> F>;
type InitFn<S> = Box<dyn FnOnce(Config) -> Pin<Box<dyn Future<Output = Result<S, BoxError>>>>>;

/// One serverless function: a name, an init step building shared state `S`, and its entry
/// points. Hand it to [`super::run`] from `main`.
///
/// ```no_run
/// use wemint::runtime::{ApiError, Function};
///
/// struct State { greeting: String }
///
/// fn function() -> Function<State> {
///     Function::with_init("hello", env!("CARGO_PKG_VERSION"), |_config| async {
///         Ok::<_, std::io::Error>(State { greeting: "hi".into() })
///     })
///     .callable("greet", |state, _req| async move {
///         Ok::<_, ApiError>(serde_json::json!({ "text": state.greeting }))
///     })
/// }
/// ```
pub struct Function<S> {
    name: &'static str,
    version: &'static str,
    init: InitFn<S>,
    callables: Vec<(String, Erase<S, CallableFn>)>,
    default_action: Option<String>,
    webhooks: Vec<(String, Erase<S, WebhookFn>)>,
    timer: Option<Erase<S, TimerFn>>,
    problems: Vec<String>,
}

impl Function<()> {
    /// A function without state.
    pub fn new(name: &'static str, version: &'static str) -> Self {
        Self::with_init(name, version, |_config| async { Ok::<_, BoxError>(()) })
    }
}

impl<S: Send + Sync + 'static> Function<S> {
    /// A function whose state is built once by `init`, before the platform is told it is ready.
    /// An init error is reported and the process exits non-zero.
    pub fn with_init<F, Fut, E>(name: &'static str, version: &'static str, init: F) -> Self
    where
        F: FnOnce(Config) -> Fut + 'static,
        Fut: Future<Output = Result<S, E>> + 'static,
        E: Into<BoxError>,
    {
        Self {
            name,
            version,
            init: Box::new(move |config| {
                Box::pin(async move { init(config).await.map_err(Into::into) })
            }),
            callables: Vec::new(),
            default_action: None,
            webhooks: Vec::new(),
            timer: None,
            problems: Vec::new(),
        }
    }

    /// The deployed name (`createOrder`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Registers the callable operation `action`. The handler returns any serializable value,
    /// sent as `{"ok":true,"data":…}`, or an [`ApiError`], sent as the error envelope.
    pub fn callable<F, Fut, T>(mut self, action: &str, handler: F) -> Self
    where
        F: Fn(Arc<S>, CallRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Serialize,
    {
        if action.is_empty() || action == HEALTH || !is_action_name(action) {
            self.problems.push(format!(
                "callable name `{action}` is reserved or not [A-Za-z0-9_-]+"
            ));
        } else if self.callables.iter().any(|(a, _)| a == action) {
            self.problems
                .push(format!("callable `{action}` registered twice"));
        }
        let handler = Arc::new(handler);
        self.callables.push((
            action.to_owned(),
            Box::new(move |state: Arc<S>| -> CallableFn {
                Arc::new(move |req| {
                    let fut = handler(state.clone(), req);
                    Box::pin(async move {
                        let out = fut.await?;
                        serde_json::to_value(out).map_err(ApiError::internal)
                    })
                })
            }),
        ));
        self
    }

    /// The action to run when a request names none (e.g. `login`, called with just a code).
    pub fn default_action(mut self, action: &str) -> Self {
        self.default_action = Some(action.to_owned());
        self
    }

    /// Registers a webhook for every path under `path_prefix` (`"/"` takes all paths). The
    /// longest matching prefix wins; webhooks take precedence over callables on HTTP.
    pub fn webhook<F, Fut>(mut self, path_prefix: &str, handler: F) -> Self
    where
        F: Fn(Arc<S>, WebhookRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<WebhookResponse, ApiError>> + Send + 'static,
    {
        let prefix = normalize_prefix(path_prefix);
        if !path_prefix.starts_with('/') {
            self.problems
                .push(format!("webhook path `{path_prefix}` must start with `/`"));
        } else if self.webhooks.iter().any(|(p, _)| *p == prefix) {
            self.problems
                .push(format!("webhook `{prefix}` registered twice"));
        }
        let handler = Arc::new(handler);
        self.webhooks.push((
            prefix,
            Box::new(move |state: Arc<S>| -> WebhookFn {
                Arc::new(move |req| Box::pin(handler(state.clone(), req)))
            }),
        ));
        self
    }

    /// Registers the timer handler (one per function; the trigger name tells triggers apart).
    pub fn timer<F, Fut, T>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<S>, TimerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Serialize,
    {
        if self.timer.is_some() {
            self.problems.push("timer registered twice".to_owned());
        }
        let handler = Arc::new(handler);
        self.timer = Some(Box::new(move |state: Arc<S>| -> TimerFn {
            Arc::new(move |req| {
                let fut = handler(state.clone(), req);
                Box::pin(async move {
                    let out = fut.await?;
                    serde_json::to_value(out).map_err(ApiError::internal)
                })
            })
        }));
        self
    }

    /// Runs init and binds the handlers to the state.
    pub(crate) async fn build(self, mode: Mode, config: Config) -> Result<Service, BoxError> {
        let mut problems = self.problems;
        if let Some(default) = &self.default_action
            && !self.callables.iter().any(|(a, _)| a == default)
        {
            problems.push(format!("default action `{default}` is not registered"));
        }
        if !problems.is_empty() {
            return Err(format!("function definition: {}", problems.join("; ")).into());
        }
        let state = Arc::new((self.init)(config).await?);
        let mut webhooks: Vec<(String, WebhookFn)> = self
            .webhooks
            .into_iter()
            .map(|(p, h)| (p, h(state.clone())))
            .collect();
        webhooks.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(Service {
            name: self.name,
            version: self.version,
            mode,
            callables: self
                .callables
                .into_iter()
                .map(|(a, h)| (a, h(state.clone())))
                .collect(),
            default_action: self.default_action,
            webhooks,
            timer: self.timer.map(|h| h(state.clone())),
        })
    }
}

/// The built-in action every function answers.
pub(crate) const HEALTH: &str = "health";

fn is_action_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn normalize_prefix(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A function after init: the handlers bound to the state, ready to dispatch.
pub(crate) struct Service {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) mode: Mode,
    callables: BTreeMap<String, CallableFn>,
    default_action: Option<String>,
    webhooks: Vec<(String, WebhookFn)>,
    timer: Option<TimerFn>,
}

impl Service {
    pub(crate) fn health(&self) -> Value {
        json!({ "name": self.name, "version": self.version, "mode": self.mode.as_str() })
    }

    /// The webhook serving `path`, longest prefix first.
    pub(crate) fn webhook_for(&self, path: &str) -> Option<WebhookFn> {
        self.webhooks
            .iter()
            .find(|(prefix, _)| {
                prefix == "/"
                    || path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|(_, h)| h.clone())
    }

    /// Picks the action: a known action named by the last path segment, else the `action`
    /// field, else the default action. Removes `action` from the data.
    pub(crate) fn resolve_action(
        &self,
        path_segment: Option<&str>,
        data: &mut Map<String, Value>,
    ) -> Result<String, ApiError> {
        let field = match data.remove("action") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ApiError::bad_request("`action` must be a string")),
        };
        let known = |a: &str| a == HEALTH || self.callables.contains_key(a);
        if let Some(seg) = path_segment.filter(|s| known(s)) {
            return Ok(seg.to_owned());
        }
        match field.or_else(|| self.default_action.clone()) {
            Some(a) if known(&a) => Ok(a),
            Some(a) => Err(ApiError::unknown_action(format!(
                "unknown action `{a}`; known: {}",
                self.action_list()
            ))),
            None => Err(ApiError::unknown_action(format!(
                "no `action` given; known: {}",
                self.action_list()
            ))),
        }
    }

    fn action_list(&self) -> String {
        std::iter::once(HEALTH)
            .chain(self.callables.keys().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Runs a callable, catching panics and enforcing the deadline.
    pub(crate) async fn call(&self, req: CallRequest) -> Result<Value, ApiError> {
        if req.action == HEALTH {
            return Ok(self.health());
        }
        let Some(handler) = self.callables.get(&req.action).cloned() else {
            return Err(ApiError::unknown_action(format!(
                "unknown action `{}`",
                req.action
            )));
        };
        let invocation = req.invocation.clone();
        guarded(&invocation, async move { handler(req).await }).await
    }

    /// Runs a webhook handler; errors become the envelope with the error's status.
    pub(crate) async fn webhook(&self, handler: WebhookFn, req: WebhookRequest) -> WebhookResponse {
        let invocation = req.invocation.clone();
        match guarded(&invocation, async move { handler(req).await }).await {
            Ok(resp) => resp,
            Err(err) => {
                log_error(&err);
                WebhookResponse::from_error(&err)
            }
        }
    }

    /// Runs the timer handler.
    pub(crate) async fn timer(&self, req: TimerRequest) -> Result<Value, ApiError> {
        let Some(handler) = self.timer.clone() else {
            return Err(ApiError::not_found("this function has no timer handler"));
        };
        let invocation = req.invocation.clone();
        guarded(&invocation, async move { handler(req).await }).await
    }

    /// A callable result as the reply envelope, logging failures.
    pub(crate) fn envelope(result: Result<Value, ApiError>) -> (StatusCode, Value, Option<u64>) {
        match result {
            Ok(data) => (StatusCode::OK, ok_envelope(data), None),
            Err(err) => {
                log_error(&err);
                (err.status(), err.to_envelope(), err.retry_after_secs())
            }
        }
    }
}

/// Logs an error reply: server-side failures at `error` with their cause, the rest at `info`.
pub(crate) fn log_error(err: &ApiError) {
    if err.status().is_server_error() {
        tracing::error!(
            code = err.code(),
            detail = err.message(),
            cause = err.cause_chain(),
            "request failed"
        );
    } else {
        tracing::info!(
            code = err.code(),
            detail = err.message(),
            "request rejected"
        );
    }
}

/// How long before the platform deadline we stop waiting, so a reply still gets out.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {0}")]
struct Panicked(String);

/// Runs a handler future: a panic becomes `INTERNAL`, running past the deadline `TIMEOUT`.
async fn guarded<T>(
    invocation: &Invocation,
    fut: impl Future<Output = Result<T, ApiError>> + Send,
) -> Result<T, ApiError> {
    let caught = super::panic::CatchUnwind::new(fut);
    let outcome = match invocation.deadline {
        Some(deadline) => {
            let stop = deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline);
            match tokio::time::timeout_at(tokio::time::Instant::from_std(stop), caught).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(ApiError::timeout("the request ran out of time"));
                }
            }
        }
        None => caught.await,
    };
    outcome.unwrap_or_else(|panic| Err(ApiError::internal(Panicked(panic))))
}
