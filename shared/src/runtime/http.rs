//! `http` mode: an HTTP/1 server on `0.0.0.0:$PORT` (default 9000) for CloudBase HTTP functions
//! (`scf_bootstrap`), CloudBase Run and self-hosting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::dispatch::{HttpRequest, parse_query};
use super::error::ApiError;
use super::function::{Function, Invocation, Service, WebhookResponse};
use super::{Mode, codes};
use crate::config::Config;

/// SCF's synchronous request limit.
const MAX_BODY: usize = 6 * 1024 * 1024;

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) async fn run<S: Send + Sync + 'static>(
    function: Function<S>,
    addr: SocketAddr,
) -> ExitCode {
    let name = function.name();
    let service = match function.build(Mode::Http, Config::from_env()).await {
        Ok(service) => Arc::new(service),
        Err(err) => {
            super::init_failed(name, err.as_ref());
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wemint: {name}: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(function = name, mode = "http", %addr, "ready");
    serve(listener, service).await
}

pub(crate) async fn serve(listener: TcpListener, service: Arc<Service>) -> ExitCode {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req| handle(service.clone(), req));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(
    service: Arc<Service>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let received_at = Instant::now();
    let (parts, body) = req.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "http-{}-{}",
                std::process::id(),
                REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed)
            )
        });
    let span = tracing::info_span!(
        "invocation",
        request_id = %request_id,
        function = service.name,
        action = tracing::field::Empty
    );
    let reply = async {
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                let err = if too_large {
                    ApiError::new(
                        codes::PAYLOAD_TOO_LARGE,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the body exceeds 6 MB",
                    )
                } else {
                    ApiError::bad_request("could not read the request body")
                };
                return WebhookResponse::from_error(&err);
            }
        };
        let request = HttpRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parse_query(parts.uri.query().unwrap_or("")),
            headers: parts.headers,
            body,
        };
        let invocation = Invocation {
            request_id: request_id.clone(),
            mode: Mode::Http,
            received_at,
            deadline: None,
            memory_limit_mb: None,
        };
        service.handle_http(request, invocation, true).await
    }
    .instrument(span)
    .await;

    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    Ok(response)
}

/// The listen address: `0.0.0.0:$PORT`, port 9000 by default.
pub(crate) fn listen_addr(port: Option<&str>) -> Result<SocketAddr, String> {
    let port = match port.map(str::trim).filter(|p| !p.is_empty()) {
        None => 9000,
        Some(p) => p.parse::<u16>().map_err(|_| {
            "environment variable PORT is invalid: expected a port number".to_owned()
        })?,
    };
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_parsing() {
        assert_eq!(listen_addr(None).unwrap().to_string(), "0.0.0.0:9000");
        assert_eq!(listen_addr(Some("8080")).unwrap().port(), 8080);
        assert!(listen_addr(Some("http")).unwrap_err().contains("PORT"));
    }
}
