//! `scf-event` mode: the SCF custom runtime loop on `http://$SCF_RUNTIME_API:$SCF_RUNTIME_API_PORT`.
//!
//! `POST /runtime/init/ready` (non-empty body) once init succeeded, then forever: long-poll
//! `GET /runtime/invocation/next`, serve the event, `POST /runtime/invocation/response` (or
//! `/runtime/invocation/error` when the event cannot be understood). There is no request id in
//! the paths and no deadline header: the deadline is receive time + `time_limit_in_ms`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::Instrument;

use super::Mode;
use super::dispatch::EventReply;
use super::function::{Function, Invocation};
use crate::config::Config;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A small client for the SCF runtime API; the base URL is injectable for tests.
struct RuntimeApi {
    client: HttpClient,
    base: String,
}

#[derive(Debug, thiserror::Error)]
enum ApiCallError {
    #[error("{0}")]
    Transport(String),
    #[error("runtime API answered {status} to {path}")]
    Status {
        path: &'static str,
        status: StatusCode,
    },
}

impl RuntimeApi {
    fn new(base: String) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &'static str,
        body: Bytes,
    ) -> Result<(HeaderMap, Bytes), ApiCallError> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| ApiCallError::Transport(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| ApiCallError::Transport(format!("{path}: {e}")))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ApiCallError::Transport(format!("{path}: {e}")))?
            .to_bytes();
        if !parts.status.is_success() {
            return Err(ApiCallError::Status {
                path,
                status: parts.status,
            });
        }
        Ok((parts.headers, body))
    }

    async fn post(&self, path: &'static str, body: impl Into<Bytes>) -> Result<(), ApiCallError> {
        self.send(Method::POST, path, body.into()).await.map(|_| ())
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The runtime API base URL from `SCF_RUNTIME_API` (a host, or host:port) and
/// `SCF_RUNTIME_API_PORT`.
pub(crate) fn endpoint(api: &str, port: Option<&str>) -> String {
    let api = api
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match port.map(str::trim).filter(|p| !p.is_empty()) {
        Some(port) => format!("http://{api}:{port}"),
        None if api.contains(':') => format!("http://{api}"),
        // The port other SCF runtimes fall back to.
        None => format!("http://{api}:9001"),
    }
}

/// How many times in a row `next` may fail before the instance gives up.
const NEXT_ATTEMPTS: u32 = 5;

pub(crate) async fn run<S: Send + Sync + 'static>(function: Function<S>, base: String) -> ExitCode {
    let api = RuntimeApi::new(base);
    let name = function.name();
    let service = match function.build(Mode::ScfEvent, Config::from_env()).await {
        Ok(service) => service,
        Err(err) => {
            let message = super::init_failed(name, err.as_ref());
            // Not confirmed to exist on SCF: try it, but never let it hide the real failure.
            let report = api.post("/runtime/init/error", message);
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), report).await {
                tracing::debug!(error = %e, "init/error not accepted");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = api.post("/runtime/init/ready", " ").await {
        eprintln!("wemint: {name}: runtime API refused init/ready: {e}");
        tracing::error!(error = %e, "init/ready failed");
        return ExitCode::FAILURE;
    }
    tracing::info!(function = name, mode = "scf-event", "ready");

    let mut failures = 0;
    loop {
        let (headers, event) = match api
            .send(Method::GET, "/runtime/invocation/next", Bytes::new())
            .await
        {
            Ok(next) => {
                failures = 0;
                next
            }
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, attempt = failures, "invocation/next failed");
                if failures >= NEXT_ATTEMPTS {
                    eprintln!("wemint: {name}: runtime API unreachable, giving up: {e}");
                    return ExitCode::FAILURE;
                }
                tokio::time::sleep(Duration::from_millis(50 << failures)).await;
                continue;
            }
        };
        let received_at = Instant::now();
        let request_id = headers
            .get("request_id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let invocation = Invocation {
            request_id: request_id.clone(),
            mode: Mode::ScfEvent,
            received_at,
            deadline: header_u64(&headers, "time_limit_in_ms")
                .map(|ms| received_at + Duration::from_millis(ms)),
            memory_limit_mb: header_u64(&headers, "memory_limit_in_mb")
                .and_then(|mb| u32::try_from(mb).ok()),
        };
        let span = tracing::info_span!(
            "invocation",
            request_id = %request_id,
            function = name,
            action = tracing::field::Empty
        );
        let reply = service
            .handle_event(&event, invocation)
            .instrument(span.clone())
            .await;
        let sent = match reply {
            EventReply::Response(value) => {
                api.post("/runtime/invocation/response", value.to_string())
                    .await
            }
            EventReply::Error(message) => api.post("/runtime/invocation/error", message).await,
        };
        if let Err(e) = sent {
            span.in_scope(|| tracing::error!(error = %e, "could not deliver the reply"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(endpoint("127.0.0.1", Some("9001")), "http://127.0.0.1:9001");
        assert_eq!(endpoint("10.0.0.1:1234", None), "http://10.0.0.1:1234");
        assert_eq!(endpoint("localhost", None), "http://localhost:9001");
        assert_eq!(endpoint("http://h/", Some(" 8 ")), "http://h:8");
    }
}
