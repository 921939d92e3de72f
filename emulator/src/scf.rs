//! An SCF custom runtime API emulator: starts a real function binary with
//! `SCF_RUNTIME_API`/`SCF_RUNTIME_API_PORT` pointing at a local server that speaks the runtime
//! API, feeds it events and collects what it answers.
//!
//! It also speaks the AWS Lambda runtime API shape ([`RuntimeApi::Lambda`]) so the `lambda`
//! mode can be tested the same way. Used by the end-to-end tests, `scripts/bench.sh` and
//! `wemint-dev`.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// Which runtime API the emulator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeApi {
    /// Tencent SCF custom runtime: `/runtime/init/ready`, `/runtime/invocation/{next,response,error}`.
    Scf,
    /// AWS Lambda: `/2018-06-01/runtime/invocation/{next,<id>/response,<id>/error}`.
    Lambda,
}

/// How to start the function.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// The runtime API to speak.
    pub api: RuntimeApi,
    /// Extra environment for the function (the environment is otherwise empty but for `PATH`).
    pub env: Vec<(String, String)>,
    /// Announced as `memory_limit_in_mb`.
    pub memory_limit_mb: u32,
    /// Announced as `time_limit_in_ms`; also how long an invocation may take here.
    pub time_limit_ms: u64,
    /// How long to wait for `init/ready`.
    pub ready_timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            api: RuntimeApi::Scf,
            env: Vec::new(),
            memory_limit_mb: 128,
            time_limit_ms: 3000,
            ready_timeout: Duration::from_secs(10),
        }
    }
}

impl StartOptions {
    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// What the function answered to one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `POST …/response` with this body.
    Response(Bytes),
    /// `POST …/error` with this body.
    Error(Bytes),
}

impl Outcome {
    /// The response body as JSON, if this is a response and it parses.
    pub fn json(&self) -> Option<Value> {
        match self {
            Self::Response(body) => serde_json::from_slice(body).ok(),
            Self::Error(_) => None,
        }
    }

    /// The error message, if this is an error.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Self::Error(body) => Some(String::from_utf8_lossy(body).into_owned()),
            Self::Response(_) => None,
        }
    }
}

/// Why starting or invoking failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Local I/O (bind, spawn).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The function process exited.
    #[error("the function exited ({status}) before {during}; stderr: {stderr}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// What the emulator was waiting for.
        during: &'static str,
        /// What it wrote to stderr.
        stderr: String,
        /// The body of `POST /runtime/init/error`, if it sent one.
        init_error: Option<String>,
    },
    /// No `init/ready` in time.
    #[error("no init/ready within {0:?}")]
    ReadyTimeout(Duration),
    /// No reply in time.
    #[error("no reply within {0:?}")]
    InvokeTimeout(Duration),
}

struct Pending {
    request_id: String,
    event: Bytes,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// The invocation handed out by `next` and not answered yet.
    current: Option<Pending>,
    ready: Option<(Instant, Bytes)>,
    init_error: Option<Bytes>,
}

struct Shared {
    api: RuntimeApi,
    memory_limit_mb: u32,
    time_limit_ms: u64,
    state: Mutex<State>,
    queued: Notify,
    readied: Notify,
    counter: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running function process under the emulator. Dropping it kills the process.
pub struct ScfInstance {
    child: Mutex<Child>,
    pid: u32,
    shared: Arc<Shared>,
    spawned_at: Instant,
    ready_at: Instant,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    server: tokio::task::JoinHandle<()>,
}

fn capture(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

impl ScfInstance {
    /// Starts `binary` and waits for it to be ready (`init/ready`; for Lambda, its first
    /// `next`).
    ///
    /// # Errors
    /// Spawning fails, the process exits first (with its stderr and any init error report),
    /// or it is not ready within `ready_timeout`.
    pub async fn start(binary: &Path, options: StartOptions) -> Result<Self, EmulatorError> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|source| EmulatorError::Io {
                context: "bind the runtime API".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| EmulatorError::Io {
            context: "runtime API address".into(),
            source,
        })?;
        let shared = Arc::new(Shared {
            api: options.api,
            memory_limit_mb: options.memory_limit_mb,
            time_limit_ms: options.time_limit_ms,
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            readied: Notify::new(),
            counter: AtomicU64::new(0),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));

        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match options.api {
            RuntimeApi::Scf => {
                cmd.env("SCF_RUNTIME_API", "127.0.0.1")
                    .env("SCF_RUNTIME_API_PORT", addr.port().to_string());
            }
            RuntimeApi::Lambda => {
                let name = binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
                    .env("AWS_LAMBDA_FUNCTION_NAME", name)
                    .env(
                        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                        options.memory_limit_mb.to_string(),
                    )
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                    .env("AWS_LAMBDA_LOG_STREAM_NAME", "emulator")
                    .env("AWS_LAMBDA_LOG_GROUP_NAME", "emulator");
            }
        }
        cmd.envs(options.env.iter().map(|(k, v)| (k, v)));

        let spawned_at = Instant::now();
        let mut child = cmd.spawn().map_err(|source| EmulatorError::Io {
            context: format!("start {}", binary.display()),
            source,
        })?;
        let pid = child.id();
        let stdout = capture(child.stdout.take().expect("stdout is piped"));
        let stderr = capture(child.stderr.take().expect("stderr is piped"));
        let mut instance = Self {
            child: Mutex::new(child),
            pid,
            shared,
            spawned_at,
            ready_at: spawned_at,
            stdout,
            stderr,
            server,
        };
        instance.ready_at = instance.wait_ready(options.ready_timeout).await?;
        Ok(instance)
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<Instant, EmulatorError> {
        let give_up = Instant::now() + timeout;
        loop {
            let notified = self.shared.readied.notified();
            if let Some((at, _)) = &self.shared.state().ready {
                return Ok(*at);
            }
            self.check_alive("init/ready")?;
            if Instant::now() >= give_up {
                return Err(EmulatorError::ReadyTimeout(timeout));
            }
            // Wake on ready, or poll the process every few ms to notice an early exit.
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
        }
    }

    fn check_alive(&self, during: &'static str) -> Result<(), EmulatorError> {
        let status = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .ok()
            .flatten();
        match status {
            None => Ok(()),
            Some(status) => {
                // Give the reader threads a moment to drain what the process wrote last.
                std::thread::sleep(Duration::from_millis(20));
                Err(EmulatorError::Exited {
                    status,
                    during,
                    stderr: text(&self.stderr),
                    init_error: self.init_error(),
                })
            }
        }
    }

    /// Sends one event and waits for the function's answer.
    ///
    /// # Errors
    /// The process exits or does not answer within the time limit (+ 2 s).
    pub async fn invoke(&self, event: impl Into<Bytes>) -> Result<Outcome, EmulatorError> {
        let (reply, mut answer) = oneshot::channel();
        let request_id = format!(
            "emu-{}-{}",
            self.pid,
            self.shared.counter.fetch_add(1, Ordering::Relaxed)
        );
        self.shared.state().queue.push_back(Pending {
            request_id,
            event: event.into(),
            reply,
        });
        self.shared.queued.notify_one();
        let limit = Duration::from_millis(self.shared.time_limit_ms) + Duration::from_secs(2);
        let give_up = Instant::now() + limit;
        loop {
            match tokio::time::timeout(Duration::from_millis(10), &mut answer).await {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(_)) => return Err(EmulatorError::InvokeTimeout(limit)),
                Err(_) => {}
            }
            self.check_alive("a reply")?;
            if Instant::now() >= give_up {
                return Err(EmulatorError::InvokeTimeout(limit));
            }
        }
    }

    /// Sends a JSON event and returns the response as JSON.
    ///
    /// # Errors
    /// As [`Self::invoke`]; an `/error` answer or a non-JSON response is returned as `Err` text.
    pub async fn invoke_json(&self, event: &Value) -> Result<Value, String> {
        match self.invoke(event.to_string()).await {
            Ok(Outcome::Response(body)) => serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "response is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            }),
            Ok(Outcome::Error(body)) => {
                Err(format!("error reply: {}", String::from_utf8_lossy(&body)))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Process start to `init/ready`.
    pub fn ready_after(&self) -> Duration {
        self.ready_at.duration_since(self.spawned_at)
    }

    /// The body the function sent with `init/ready`.
    pub fn ready_body(&self) -> Option<Bytes> {
        self.shared.state().ready.as_ref().map(|(_, b)| b.clone())
    }

    /// The body of `POST /runtime/init/error`, if the function sent one.
    pub fn init_error(&self) -> Option<String> {
        self.shared
            .state()
            .init_error
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Peak resident memory so far (`VmHWM`), in KiB; Linux only.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid)
    }

    /// Everything the function wrote to stdout so far (its JSON log lines).
    pub fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// Waits until a line of stdout satisfies `pred` (output is read on another thread, so a
    /// line written just before a reply may arrive a moment after it).
    pub async fn wait_for_stdout_line(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> bool {
        let give_up = Instant::now() + timeout;
        loop {
            if self.stdout().lines().any(&pred) {
                return true;
            }
            if Instant::now() >= give_up {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Everything the function wrote to stderr so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.check_alive("").is_ok()
    }
}

impl Drop for ScfInstance {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        self.server.abort();
    }
}

/// Starts `binary` expecting its init to fail: its exit status (`None` if it became ready
/// instead) and what it left behind.
///
/// # Errors
/// Spawning fails, or it neither exits nor becomes ready in time.
pub async fn run_to_exit(
    binary: &Path,
    options: StartOptions,
) -> Result<(Option<ExitStatus>, ScfFailure), EmulatorError> {
    match ScfInstance::start(binary, options).await {
        Ok(instance) => Ok((
            None,
            ScfFailure {
                stderr: instance.stderr(),
                init_error: instance.init_error(),
            },
        )),
        Err(EmulatorError::Exited {
            status,
            stderr,
            init_error,
            ..
        }) => Ok((Some(status), ScfFailure { stderr, init_error })),
        Err(e) => Err(e),
    }
}

/// What a function that failed to start left behind.
#[derive(Clone, Debug)]
pub struct ScfFailure {
    /// Its stderr.
    pub stderr: String,
    /// The body of `POST /runtime/init/error`, if any.
    pub init_error: Option<String>,
}

/// The default location of the workspace's binaries for the current build profile: the
/// directory holding the running executable's `deps/` folder (`target/<profile>`).
pub fn binary_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEMINT_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    Some(if dir.ends_with("deps") {
        dir.parent()?.to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "unreadable body")),
    };
    let route = match shared.api {
        RuntimeApi::Scf => scf_route(&method, &path),
        RuntimeApi::Lambda => lambda_route(&method, &path),
    };
    Ok(match route {
        Route::Ready => {
            // The upstream rejects an empty ready body; so do we.
            if body.is_empty() {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    "init/ready needs a non-empty body",
                ));
            }
            shared.state().ready.get_or_insert((Instant::now(), body));
            shared.readied.notify_waiters();
            reply(StatusCode::OK, "")
        }
        Route::InitError => {
            shared.state().init_error = Some(body);
            reply(StatusCode::OK, "")
        }
        Route::Next => next(&shared).await,
        Route::Reply { id, error } => {
            let mut state = shared.state();
            let matches = state
                .current
                .as_ref()
                .is_some_and(|p| id.as_deref().is_none_or(|id| id == p.request_id));
            if !matches {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    "no such invocation in progress",
                ));
            }
            let pending = state.current.take().expect("checked above");
            let outcome = if error {
                Outcome::Error(body)
            } else {
                Outcome::Response(body)
            };
            let _ = pending.reply.send(outcome);
            reply(StatusCode::ACCEPTED, "")
        }
        Route::Unknown => reply(StatusCode::NOT_FOUND, "unknown runtime API path"),
    })
}

enum Route {
    Ready,
    InitError,
    Next,
    Reply { id: Option<String>, error: bool },
    Unknown,
}

fn scf_route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::POST, "/runtime/init/ready") => Route::Ready,
        (&Method::POST, "/runtime/init/error") => Route::InitError,
        (&Method::GET, "/runtime/invocation/next") => Route::Next,
        (&Method::POST, "/runtime/invocation/response") => Route::Reply {
            id: None,
            error: false,
        },
        (&Method::POST, "/runtime/invocation/error") => Route::Reply {
            id: None,
            error: true,
        },
        _ => Route::Unknown,
    }
}

fn lambda_route(method: &Method, path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Route::Unknown;
    };
    match (method, rest) {
        (&Method::POST, "init/error") => Route::InitError,
        (&Method::GET, "invocation/next") => Route::Next,
        (&Method::POST, rest) => match rest
            .strip_prefix("invocation/")
            .and_then(|r| r.rsplit_once('/'))
        {
            Some((id, "response")) => Route::Reply {
                id: Some(id.to_owned()),
                error: false,
            },
            Some((id, "error")) => Route::Reply {
                id: Some(id.to_owned()),
                error: true,
            },
            _ => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

/// Long-polls for the next event. Asking again during an invocation returns the same event.
async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    if shared.api == RuntimeApi::Lambda {
        // Lambda has no ready call: asking for work is being ready.
        shared
            .state()
            .ready
            .get_or_insert((Instant::now(), Bytes::new()));
        shared.readied.notify_waiters();
    }
    let (request_id, event) = loop {
        let notified = shared.queued.notified();
        {
            let mut state = shared.state();
            if state.current.is_none() {
                state.current = state.queue.pop_front();
            }
            if let Some(p) = &state.current {
                break (p.request_id.clone(), p.event.clone());
            }
        }
        notified.await;
    };
    let mut resp = reply(StatusCode::OK, event);
    let headers = resp.headers_mut();
    let value = |s: String| http::HeaderValue::from_str(&s).expect("ascii header value");
    match shared.api {
        RuntimeApi::Scf => {
            headers.insert("request_id", value(request_id));
            headers.insert(
                "memory_limit_in_mb",
                value(shared.memory_limit_mb.to_string()),
            );
            headers.insert("time_limit_in_ms", value(shared.time_limit_ms.to_string()));
        }
        RuntimeApi::Lambda => {
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                + Duration::from_millis(shared.time_limit_ms);
            headers.insert("lambda-runtime-aws-request-id", value(request_id));
            headers.insert(
                "lambda-runtime-deadline-ms",
                value(deadline.as_millis().to_string()),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                value("arn:aws:lambda:local:000000000000:function:emulated".into()),
            );
        }
    }
    headers.insert(http::header::CONTENT_TYPE, value("application/json".into()));
    resp
}

/// Peak resident memory so far (`VmHWM`) of process `pid`, in KiB; Linux only.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
