//! The one outbound HTTP client every module shares, and a bounded retry helper.
//!
//! Why one client: a `reqwest::Client` owns the connection pool and the TLS configuration
//! (rustls on aws-lc-rs), and a serverless instance serves many invocations, so it is built
//! once and cloned (a clone is a cheap handle on the same pool). Every call gets timeouts, so
//! a stuck peer cannot eat the function's whole execution budget.
//!
//! Why compiled-in roots: the peers are fixed public hosts (WeChat, WeChat Pay, CloudBase),
//! all under roots in Mozilla's program, which `webpki-roots` carries. reqwest's default
//! verifier reads the system's certificate files instead, a few milliseconds of file reads on
//! every cold start (a third of the start-up budget) for no gain here.
//!
//! Why a retry helper with a caller-supplied decision: only the caller knows whether a
//! failure is safe to repeat (a WeChat Pay prepay is idempotent by `out_trade_no`, a message
//! send is not). The helper only bounds attempts and spaces them with exponential backoff
//! and jitter; sleeping and randomness are injectable so tests are exact and instant.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// `User-Agent` sent on every outbound request (WeChat Pay rejects requests without one).
pub const USER_AGENT: &str = concat!("wemint/", env!("CARGO_PKG_VERSION"), " (rust; reqwest)");

/// Time allowed to establish a TCP + TLS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request, response body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections are dropped after this long.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared client could not be built (TLS provider or root store failure).
#[derive(Debug, Clone, thiserror::Error)]
#[error("outbound HTTP client could not be built: {0}")]
pub struct ClientBuildError(String);

static CLIENT: OnceLock<Result<reqwest::Client, ClientBuildError>> = OnceLock::new();

/// The process-wide HTTP client, built on first use and reused afterwards.
///
/// Call it during function init to pay the TLS setup cost before the first invocation.
pub fn client() -> Result<reqwest::Client, ClientBuildError> {
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .use_preconfigured_tls(tls_config()?)
                .user_agent(USER_AGENT)
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| ClientBuildError(e.to_string()))
        })
        .clone()
}

/// TLS 1.2 and 1.3 on aws-lc-rs, verifying servers against the compiled-in Mozilla roots.
fn tls_config() -> Result<rustls::ClientConfig, ClientBuildError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientBuildError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest speaks HTTP/1.1 only here (no `http2` feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// True for HTTP statuses worth retrying: 429 (rate limited) and any 5xx.
pub fn is_transient_status(status: http::StatusCode) -> bool {
    status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// True for transport failures worth retrying: timeouts and connection errors.
///
/// A timeout after the request was sent may still have been processed by the peer, so only
/// retry it when the operation is idempotent.
pub fn is_transient_transport(err: &reqwest::Error) -> bool {
    err.is_timeout() || err.is_connect()
}

/// Waits between attempts; injectable so tests do not sleep.
pub trait Sleeper: Send + Sync {
    /// Sleep for `duration`.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Sleeps on the tokio timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Picks a random number in `0..=upper`; injectable so backoff delays are exact in tests.
pub type JitterSource = Arc<dyn Fn(u64) -> u64 + Send + Sync>;

/// Uniform jitter from the system CSPRNG (aws-lc-rs).
pub fn system_jitter() -> JitterSource {
    Arc::new(|upper: u64| {
        if upper == 0 {
            return 0;
        }
        let mut buf = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut buf).is_err() {
            // Without randomness, fall back to the upper bound: still bounded, just not jittered.
            return upper;
        }
        u64::from_le_bytes(buf) % (upper + 1)
    })
}

/// Bounded retries with exponential backoff and "equal jitter".
///
/// The delay before retry `n` (1-based) is `d/2 + rand(0..=d/2)` with
/// `d = min(max_delay, base_delay * 2^(n-1))`: always some wait, never a thundering herd.
#[derive(Clone)]
pub struct Retry {
    /// Total attempts including the first one (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter).
    pub base_delay: Duration,
    /// Cap on a single backoff.
    pub max_delay: Duration,
    sleeper: Arc<dyn Sleeper>,
    jitter: JitterSource,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .finish_non_exhaustive()
    }
}

impl Default for Retry {
    /// 3 attempts, 200 ms then 400 ms (± jitter), capped at 2 s: fits a serverless budget.
    fn default() -> Self {
        Self::new(3, Duration::from_millis(200), Duration::from_secs(2))
    }
}

impl Retry {
    /// A policy sleeping on tokio with system jitter.
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            base_delay,
            max_delay,
            sleeper: Arc::new(TokioSleeper),
            jitter: system_jitter(),
        }
    }

    /// A single attempt, no retry.
    pub fn none() -> Self {
        Self::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// Replace the sleeper (tests, or a runtime with its own timer).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Replace the jitter source (tests).
    pub fn with_jitter(mut self, jitter: JitterSource) -> Self {
        self.jitter = jitter;
        self
    }

    /// The backoff before retry number `retry` (1 = the first retry).
    pub fn delay_for(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        let base = u64::try_from(self.base_delay.as_millis()).unwrap_or(u64::MAX);
        let cap = u64::try_from(self.max_delay.as_millis()).unwrap_or(u64::MAX);
        let full = base.saturating_mul(1u64 << exp).min(cap);
        let half = full / 2;
        let extra = (self.jitter)(full - half).min(full - half);
        Duration::from_millis(half + extra)
    }

    /// Run `op` until it succeeds, fails with an error `retryable` rejects, or attempts run out.
    ///
    /// `op` receives the 1-based attempt number. The last error is returned unchanged.
    pub async fn run<T, E, F, Fut, R>(&self, mut op: F, retryable: R) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn(&E) -> bool,
    {
        let mut attempt = 1;
        loop {
            match op(attempt).await {
                Ok(value) => return Ok(value),
                Err(err) if attempt < self.max_attempts && retryable(&err) => {
                    let delay = self.delay_for(attempt);
                    tracing::debug!(
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "retrying outbound call"
                    );
                    self.sleeper.sleep(delay).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct RecordingSleeper(Mutex<Vec<Duration>>);

    impl Sleeper for RecordingSleeper {
        fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.0.lock().unwrap().push(duration);
            Box::pin(std::future::ready(()))
        }
    }

    fn policy(attempts: u32, sleeper: Arc<RecordingSleeper>, jitter: u64) -> Retry {
        Retry::new(
            attempts,
            Duration::from_millis(100),
            Duration::from_millis(300),
        )
        .with_sleeper(sleeper)
        .with_jitter(Arc::new(move |upper| jitter.min(upper)))
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn delays_grow_exponentially_are_capped_and_jittered() {
        let r = policy(5, Arc::default(), 0);
        assert_eq!(r.delay_for(1), Duration::from_millis(50));
        assert_eq!(r.delay_for(2), Duration::from_millis(100));
        assert_eq!(r.delay_for(3), Duration::from_millis(150));
        assert_eq!(r.delay_for(10), Duration::from_millis(150));
        let r = policy(5, Arc::default(), u64::MAX);
        assert_eq!(r.delay_for(1), Duration::from_millis(100));
        assert_eq!(r.delay_for(3), Duration::from_millis(300));
    }

    #[test]
    fn retries_until_success_with_backoff() {
        let sleeper = Arc::new(RecordingSleeper::default());
        let r = policy(4, sleeper.clone(), 7);
        let out: Result<u32, &str> = block_on(r.run(
            |attempt| async move {
                if attempt < 3 {
                    Err("busy")
                } else {
                    Ok(attempt)
                }
            },
            |_| true,
        ));
        assert_eq!(out, Ok(3));
        assert_eq!(
            *sleeper.0.lock().unwrap(),
            vec![Duration::from_millis(57), Duration::from_millis(107)]
        );
    }

    #[test]
    fn stops_at_max_attempts_and_returns_last_error() {
        let sleeper = Arc::new(RecordingSleeper::default());
        let r = policy(3, sleeper.clone(), 0);
        let mut calls = 0;
        let out: Result<(), u32> = block_on(r.run(
            |attempt| {
                calls += 1;
                async move { Err(attempt) }
            },
            |_| true,
        ));
        assert_eq!(out, Err(3));
        assert_eq!(calls, 3);
        assert_eq!(sleeper.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn non_retryable_error_is_returned_at_once() {
        let sleeper = Arc::new(RecordingSleeper::default());
        let r = policy(5, sleeper.clone(), 0);
        let out: Result<(), &str> =
            block_on(r.run(|_| async { Err("bad request") }, |e| *e != "bad request"));
        assert_eq!(out, Err("bad request"));
        assert!(sleeper.0.lock().unwrap().is_empty());
    }

    #[test]
    fn transient_statuses() {
        assert!(is_transient_status(http::StatusCode::TOO_MANY_REQUESTS));
        assert!(is_transient_status(http::StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient_status(http::StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!is_transient_status(http::StatusCode::BAD_REQUEST));
        assert!(!is_transient_status(http::StatusCode::OK));
    }

    #[test]
    fn client_is_built_once_and_shared() {
        client().expect("client builds");
        assert!(CLIENT.get().is_some_and(Result::is_ok));
        client().expect("second call reuses the built client");
        assert!(USER_AGENT.starts_with("wemint/"));
    }

    #[test]
    fn servers_are_verified_against_the_compiled_in_roots() {
        let config = tls_config().expect("TLS config builds");
        // Speaks what reqwest speaks here.
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Mozilla's program: well over a hundred roots, the ones WeChat's hosts chain to among them.
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
        let names: Vec<String> = webpki_roots::TLS_SERVER_ROOTS
            .iter()
            .map(|a| String::from_utf8_lossy(a.subject.as_ref()).into_owned())
            .collect();
        for issuer in ["DigiCert Global Root", "GlobalSign"] {
            assert!(names.iter().any(|n| n.contains(issuer)), "{issuer} missing");
        }
    }
}
