//! Test support for end-to-end tests: locating the function binaries, environments, a small
//! HTTP client and an HTTP-mode launcher. The SCF runtime emulator itself lives in
//! `wemint_emulator::scf`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use wemint_emulator::scf::{self, Outcome, RuntimeApi, ScfInstance, StartOptions};

/// The functions: (crate / binary name, deployed name).
pub const FUNCTIONS: [(&str, &str); 8] = [
    ("login", "login"),
    ("create-order", "createOrder"),
    ("pay-notify", "payNotify"),
    ("gated-content", "gatedContent"),
    ("ugc-upload", "ugcUpload"),
    ("wx-push", "wxPush"),
    ("reconcile", "reconcile"),
    ("analytics", "analytics"),
];

/// A 32-byte session secret for tests.
pub const SESSION_SECRET: &str = "e2e-session-secret-0123456789abcdef";

/// Path of a workspace binary built by `cargo build` (scripts/test.sh builds them first).
///
/// # Panics
/// When the binary is missing, with the command that builds it.
pub fn function_binary(name: &str) -> PathBuf {
    let dir = scf::binary_dir().expect("cannot locate the target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the function binaries first (`cargo build --workspace --bins`, \
         which scripts/test.sh does)",
        path.display()
    );
    path
}

/// The independent test vectors kept in the repository (`testdata/vectors`, see its README).
pub const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors");

/// A complete, self-contained configuration for the real functions: in-memory store, the
/// test-only merchant material from the test vectors, and every outbound base URL pointing at
/// a closed local port (init must not need the network).
///
/// # Panics
/// When the test vectors are missing.
pub fn function_env() -> Vec<(String, String)> {
    let common: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{VECTORS}/common.json"))
            .unwrap_or_else(|e| panic!("test vectors missing at {VECTORS}: {e}")),
    )
    .expect("common.json is JSON");
    let field = |k: &str| {
        common[k]
            .as_str()
            .unwrap_or_else(|| panic!("common.json: {k}"))
            .to_owned()
    };
    let closed = "http://127.0.0.1:9";
    [
        ("WEMINT_STORE", "sqlite::memory:".to_owned()),
        ("WEMINT_SESSION_SECRET", SESSION_SECRET.to_owned()),
        (
            "WEMINT_DATA_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
        ),
        (
            "WEMINT_TRUST_PLATFORM_IDENTITY",
            "cloudbase-event".to_owned(),
        ),
        ("WECHAT_APPID", field("appid")),
        ("WECHAT_APPSECRET", "e2e-app-secret".to_owned()),
        ("WECHAT_API_BASE", closed.to_owned()),
        ("WECHATPAY_MCHID", field("mchid")),
        ("WECHATPAY_MERCHANT_SERIAL", field("merchant_serial_no")),
        (
            "WECHATPAY_PRIVATE_KEY_FILE",
            format!("{VECTORS}/keys/merchant_private_key.pem"),
        ),
        ("WECHATPAY_APIV3_KEY", field("apiv3_key")),
        (
            "WECHATPAY_PUBLIC_KEY_FILE",
            format!("{VECTORS}/keys/wechatpay_public_key.pem"),
        ),
        ("WECHATPAY_PUBLIC_KEY_ID", field("public_key_id")),
        ("WECHATPAY_API_BASE", closed.to_owned()),
        ("WECHATPAY_NOTIFY_URL", format!("{closed}/payNotify")),
        ("XPAY_APPKEY", "e2e-xpay-appkey".to_owned()),
        ("XPAY_OFFER_ID", "1450000000".to_owned()),
        ("XPAY_ENV", "1".to_owned()),
        ("WX_PUSH_TOKEN", "e2e-push-token".to_owned()),
        (
            "WX_PUSH_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Start options with the fixture's required configuration.
pub fn fixture_options(api: RuntimeApi) -> StartOptions {
    StartOptions {
        api,
        ..StartOptions::default()
    }
    .env("WEMINT_SESSION_SECRET", SESSION_SECRET)
}

/// Starts the real function `binary` under the SCF runtime API with exactly `env`.
///
/// # Panics
/// When the function does not start.
pub async fn start_scf(
    binary: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> ScfInstance {
    let mut options = StartOptions {
        api: RuntimeApi::Scf,
        ..StartOptions::default()
    };
    for (k, v) in env {
        options = options.env(k, v);
    }
    ScfInstance::start(&function_binary(binary), options)
        .await
        .unwrap_or_else(|e| panic!("{binary} did not start: {e}"))
}

/// Fires the timer trigger `name` once and returns the reply's `data`.
///
/// # Panics
/// When the invocation fails or the reply is not `ok`.
pub async fn fire_timer(f: &ScfInstance, name: &str) -> serde_json::Value {
    let event = serde_json::json!({"Type": "Timer", "TriggerName": name,
        "Time": "2026-11-24T00:00:00Z", "Message": ""});
    let out = f.invoke_json(&event).await.expect("timer invocation");
    assert_eq!(out["ok"], true, "timer {name}: {out}");
    out["data"].clone()
}

/// A local stand-in server (WeChat, WeChat Pay) for one test: `handler` answers on a free
/// 127.0.0.1 port, through the emulator's HTTP layer, until the value is dropped.
pub struct StandIn {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    _stop: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl StandIn {
    /// Starts serving `handler` on the current tokio runtime.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start<H, Fut>(handler: H) -> Self
    where
        H: Fn(wemint_emulator::http::Request) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = wemint_emulator::http::Response> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(wemint_emulator::http::serve(listener, handler, stopped));
        Self {
            addr,
            _stop: std::sync::Arc::new(stop),
        }
    }

    /// Serves the synchronous `handler` over shared `state` (what the test inspects).
    pub async fn serving<S: Send + Sync + 'static>(
        state: std::sync::Arc<S>,
        handler: fn(&S, &wemint_emulator::http::Request) -> wemint_emulator::http::Response,
    ) -> Self {
        Self::start(move |req| {
            let state = state.clone();
            async move { handler(&state, &req) }
        })
        .await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
pub struct HttpReply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl HttpReply {
    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one HTTP/1 request.
///
/// # Panics
/// On transport errors.
pub async fn http(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> HttpReply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body.into())).expect("valid request"))
        .await
        .expect("HTTP request failed");
    let (parts, body) = resp.into_parts();
    HttpReply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("read body").to_bytes(),
    }
}

/// A function binary running in `http` mode on a free local port. Killed on drop.
pub struct HttpInstance {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl HttpInstance {
    /// Starts `binary` with `PORT` set and waits until it accepts connections.
    ///
    /// # Errors
    /// The process exits first (its exit code and stderr are returned) or never listens.
    pub fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut child = Command::new(binary)
            .env_clear()
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use std::io::Read as _;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!("exited with {status}: {stderr}"));
            }
            if TcpStream::connect(addr).is_ok() {
                return Ok(Self { child, addr });
            }
            if Instant::now() > give_up {
                let _ = child.kill();
                return Err("never started listening".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Peak resident memory of the process so far (`VmHWM`), in KiB; Linux only.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        wemint_emulator::scf::peak_rss_kib(self.child.id())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HttpInstance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
