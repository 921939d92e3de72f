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
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::dispatch::{HttpRequest, parse_query};
use super::error::ApiError;
use super::function::{Function, Invocation, Service, WebhookResponse};
use super::{Mode, codes};
use crate::config::Config;

/// SCF's synchronous request limit.
const MAX_BODY: usize = 6 * 1024 * 1024;

/// Time a client has to send a request's headers, counted from when the server starts
/// waiting for them, so it is also the idle time allowed between requests on a kept-alive
/// connection. Behind the CloudBase / SCF gateway requests arrive whole in milliseconds; a
/// self-hosted instance faces the internet, where a client sending one header byte at a time
/// would otherwise hold its connection (and its slot under [`MAX_CONNECTIONS`]) forever.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send the whole body once the headers are in. Bodies are JSON or
/// notification payloads of a few KB (uploads go to cloud storage directly), so even a slow
/// mobile link sends one in well under this.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once. Beyond this the server stops accepting: further connections
/// wait in the kernel's accept queue (and are refused by the kernel when that is full) until
/// one ends, so a flood costs neither file descriptors nor memory. A gateway in front keeps
/// far fewer open (CloudBase sends one request at a time per instance by default).
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// Requests served on one kept-alive connection before it is closed (with `Connection: close`
/// on the last response), so no client holds one connection for ever.
pub(crate) const MAX_REQUESTS_PER_CONNECTION: u64 = 1000;

/// What one client may hold of the listener; [`Limits::DEFAULT`] in production, shorter in
/// tests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub(crate) header_read: Duration,
    /// See [`BODY_READ_TIMEOUT`].
    pub(crate) body_read: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub(crate) max_connections: usize,
    /// See [`MAX_REQUESTS_PER_CONNECTION`].
    pub(crate) max_requests_per_connection: u64,
}

impl Limits {
    pub(crate) const DEFAULT: Limits = Limits {
        header_read: HEADER_READ_TIMEOUT,
        body_read: BODY_READ_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
        max_requests_per_connection: MAX_REQUESTS_PER_CONNECTION,
    };
}

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
    serve(listener, service, Limits::DEFAULT).await
}

/// Accepts connections while fewer than `limits.max_connections` are open and serves each
/// under the time and request limits.
pub(crate) async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    limits: Limits,
) -> ExitCode {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // Waiting for a free slot before accepting leaves excess connections in the
        // kernel's queue instead of failing them.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            // The semaphore is never closed.
            return ExitCode::FAILURE;
        };
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
            let _slot = slot;
            serve_connection(stream, service, limits).await;
        });
    }
}

/// One connection: headers within `header_read` (hyper closes the connection otherwise, also
/// when idle between requests), at most `max_requests_per_connection` requests.
async fn serve_connection(stream: tokio::net::TcpStream, service: Arc<Service>, limits: Limits) {
    let served = Arc::new(AtomicU64::new(0));
    let handler = service_fn(move |req| {
        let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= limits.max_requests_per_connection;
        let service = service.clone();
        async move {
            let mut response = handle(service, req, limits.body_read).await?;
            if last {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    if let Err(e) = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(TokioIo::new(stream), handler)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The whole body within `timeout` and [`MAX_BODY`]; a client that stops sending gets 408
/// and its connection closed.
async fn read_body(body: Incoming, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            Err(if too_large {
                ApiError::new(
                    codes::PAYLOAD_TOO_LARGE,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body exceeds 6 MB",
                )
            } else {
                ApiError::bad_request("could not read the request body")
            })
        }
        Err(_) => Err(ApiError::new(
            codes::TIMEOUT,
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

async fn handle(
    service: Arc<Service>,
    req: Request<Incoming>,
    body_timeout: Duration,
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
    let mut body_failed = false;
    let reply = async {
        let body = match read_body(body, body_timeout).await {
            Ok(body) => body,
            Err(err) => {
                body_failed = true;
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
    if body_failed {
        // The rest of the body was not read: the connection cannot carry another request.
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
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
    use crate::runtime::BoxError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Short limits so each test takes about a second.
    const TEST_LIMITS: Limits = Limits {
        header_read: Duration::from_millis(400),
        body_read: Duration::from_millis(400),
        max_connections: 4,
        max_requests_per_connection: 3,
    };

    /// A server on a loopback port with an `echo` callable.
    async fn server(limits: Limits) -> SocketAddr {
        let service = Function::with_init("limits", "0.0.0", |_c| async {
            Ok::<_, BoxError>(Arc::new(()))
        })
        .callable("echo", |_s, req| async move {
            Ok::<_, ApiError>(req.data.clone())
        })
        .build(Mode::Http, Config::from_vars::<&str, &str>([]))
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(service), limits));
        addr
    }

    /// An `echo` call that keeps the connection open.
    const ECHO: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
    /// The same call asking for the connection to be closed after it.
    const ECHO_CLOSE: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 7\r\n\r\n{\"a\":1}";

    /// One request on a fresh connection: the status code.
    async fn status_of_one(addr: SocketAddr) -> u16 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(ECHO_CLOSE).await.unwrap();
        status(&until_closed(&mut conn).await.0)
    }

    fn status(response: &[u8]) -> u16 {
        let text = String::from_utf8_lossy(response);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Longest any test waits for the server: a server without limits fails instead of hanging.
    const GIVE_UP: Duration = Duration::from_secs(3);

    /// Reads until the server closes the connection (or [`GIVE_UP`]); the bytes and how long
    /// it took.
    async fn until_closed(conn: &mut TcpStream) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(GIVE_UP, async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        (out, started.elapsed())
    }

    #[tokio::test]
    async fn slow_clients_are_cut_off_while_others_are_served() {
        let addr = server(TEST_LIMITS).await;

        // Headers one byte every 50 ms, never finished.
        let slow_headers = tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            for byte in b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if conn.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (_, _) = until_closed(&mut conn).await;
            started.elapsed()
        });
        // Headers complete, but only 4 of the 100 announced body bytes.
        let stalled_body = tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"a\"")
                .await
                .unwrap();
            until_closed(&mut conn).await
        });

        // Meanwhile other clients are served at once.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..5 {
            let started = Instant::now();
            assert_eq!(status_of_one(addr).await, 200);
            assert!(started.elapsed() < Duration::from_millis(300));
        }

        let slow = slow_headers.await.unwrap();
        assert!(
            slow >= TEST_LIMITS.header_read && slow < Duration::from_secs(2),
            "a client dripping its headers is cut off after the header timeout, not served: {slow:?}"
        );
        let (reply, took) = stalled_body.await.unwrap();
        assert_eq!(status(&reply), 408, "{}", String::from_utf8_lossy(&reply));
        assert!(String::from_utf8_lossy(&reply).contains("\"TIMEOUT\""));
        assert!(
            took >= TEST_LIMITS.body_read && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(status_of_one(addr).await, 200);
    }

    #[tokio::test]
    async fn kept_alive_connections_end_after_the_request_cap_or_when_idle() {
        let addr = server(TEST_LIMITS).await;
        // Three requests on one connection: the third answer closes it.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(&ECHO.repeat(3)).await.unwrap();
        let (replies, took) = until_closed(&mut conn).await;
        let text = String::from_utf8_lossy(&replies);
        assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
        assert_eq!(text.matches("connection: close").count(), 1, "{text}");
        assert!(took < TEST_LIMITS.header_read, "closed at once: {took:?}");

        // An idle kept-alive connection is closed after the header timeout.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(ECHO).await.unwrap();
        let (replies, took) = until_closed(&mut conn).await;
        assert_eq!(status(&replies), 200);
        assert!(
            took >= TEST_LIMITS.header_read && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_slot_and_are_then_served() {
        let addr = server(TEST_LIMITS).await;
        // Every slot taken by a client that sends nothing.
        let mut idle = Vec::new();
        for _ in 0..TEST_LIMITS.max_connections {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One more: it waits (queued by the kernel, not refused), then gets its answer once the
        // idle ones are cut off.
        let started = Instant::now();
        assert_eq!(status_of_one(addr).await, 200);
        let waited = started.elapsed();
        assert!(
            waited >= TEST_LIMITS.header_read / 2 && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        for mut conn in idle {
            let (bytes, _) = until_closed(&mut conn).await;
            assert!(bytes.is_empty() || status(&bytes) == 408);
        }
    }

    #[test]
    fn port_parsing() {
        assert_eq!(listen_addr(None).unwrap().to_string(), "0.0.0.0:9000");
        assert_eq!(listen_addr(Some("8080")).unwrap().port(), 8080);
        assert!(listen_addr(Some("http")).unwrap_err().contains("PORT"));
    }
}
