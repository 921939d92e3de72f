//! A small HTTP/1.1 server layer over hyper: the whole suite is one listener on 127.0.0.1
//! with path routing, so every stand-in sees the exact bytes a client sent (signatures are
//! checked on them) and answers with exact bytes (signatures are computed over them).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest request body accepted (uploads included).
pub const MAX_BODY_BYTES: usize = 12 * 1024 * 1024;

/// A fully read request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, percent-encoded as received.
    pub path: String,
    /// The raw query string (without `?`), empty when absent.
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The exact body bytes.
    pub body: Bytes,
}

impl Request {
    /// Builds a request (tests, in-process forwarding).
    pub fn new(method: Method, path_and_query: &str, headers: HeaderMap, body: Bytes) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (path_and_query.to_owned(), String::new()),
        };
        Request {
            method,
            path,
            query,
            headers,
            body,
        }
    }

    /// Path plus `?query` exactly as sent: the canonical URL WeChat Pay signs.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// All decoded query parameters.
    pub fn params(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Response {
    /// A response with a body and content type.
    pub fn bytes(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Self {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(content_type) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        Response {
            status,
            headers,
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::bytes(status, "application/json", body),
            Err(e) => Self::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot serialize: {e}"),
            ),
        }
    }

    /// A plain-text response.
    pub fn text(status: StatusCode, text: &str) -> Self {
        Self::bytes(status, "text/plain; charset=utf-8", text.to_owned())
    }

    /// An empty response.
    pub fn empty(status: StatusCode) -> Self {
        Response {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// 404 with a JSON body naming the path.
    pub fn not_found(path: &str) -> Self {
        Self::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"code": "NOT_FOUND", "message": format!("no route for {path}")}),
        )
    }

    /// Adds a header (ignored when the name or value is not valid HTTP).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.insert(n, v);
        }
        self
    }

    /// The body as JSON (tests and the demo client).
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Serves `handler` on `listener` until `shutdown` turns true.
pub async fn serve<H, Fut>(listener: TcpListener, handler: H, mut shutdown: watch::Receiver<bool>)
where
    H: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let handler = Arc::clone(&handler);
                async move {
                    let (parts, body) = req.into_parts();
                    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => {
                            return Ok::<_, Infallible>(into_hyper(Response::text(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "request body too large or unreadable",
                            )));
                        }
                    };
                    let request = Request {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        query: parts.uri.query().unwrap_or("").to_owned(),
                        headers: parts.headers,
                        body,
                    };
                    Ok(into_hyper(handler(request).await))
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

fn into_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(response.body));
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out
}

/// Percent-decodes one path segment.
pub fn decode_segment(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_and_query_and_keeps_them_exact() {
        let r = Request::new(
            Method::GET,
            "/v3/pay/transactions/id/42?mchid=1900&x=a%20b",
            HeaderMap::new(),
            Bytes::new(),
        );
        assert_eq!(r.path, "/v3/pay/transactions/id/42");
        assert_eq!(
            r.path_and_query(),
            "/v3/pay/transactions/id/42?mchid=1900&x=a%20b"
        );
        assert_eq!(r.param("x").as_deref(), Some("a b"));
        assert_eq!(r.param("y"), None);
        assert_eq!(decode_segment("a%2Fb+c"), "a/b+c");
    }
}
