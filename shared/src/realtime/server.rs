//! The WebSocket server: an HTTP/1 listener (hyper, as in `runtime`'s http mode) that
//! authenticates the session token and only then upgrades, and one task per connection.
//!
//! A connection: `welcome` → the client subscribes (optionally resuming `after` a sequence:
//! the stored events after it that match are replayed, then live ones follow, each sequence
//! at most once) → `events` batches as the hub hands them over. Heartbeats both ways (a ping
//! frame every [`ConnLimits::heartbeat`]; the client's `{"op":"ping"}` is answered with
//! `pong`); a connection silent for three heartbeats is closed. A client that sends more than
//! [`ConnLimits::messages_per_sec`] (burst [`ConnLimits::burst`]) is closed with 1008; one
//! that does not read fast enough loses its queue in the hub and is closed with 1013.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::hub::{Hub, Item};
use super::protocol::{
    ClientMessage, MAX_CLIENT_FRAME, MAX_TOPICS, error_frame, events_frame, parse_client,
};
use crate::events::Event;
use crate::identity::Authenticator;
use crate::runtime::{ApiError, codes};

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Ping interval; three without any answer close the connection.
    pub heartbeat: Duration,
    /// Sustained client messages per second.
    pub messages_per_sec: u32,
    /// Client messages allowed in a burst.
    pub burst: u32,
    /// Longest a write may block before the client counts as gone.
    pub write_timeout: Duration,
    /// Sockets served at once by the process.
    pub max_sockets: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            messages_per_sec: 5,
            burst: 10,
            write_timeout: Duration::from_secs(10),
            max_sockets: 10_000,
        }
    }
}

/// Events per `events` frame (the platform allows 10 frames/s per connection, so a backlog
/// goes out in few large frames; one frame stays far below its 256 KB limit for small events).
const EVENTS_PER_FRAME: usize = 100;
/// Bytes of event JSON after which a frame is closed even if it holds fewer events.
const FRAME_BYTES: usize = 128 * 1024;
/// Events read per page while replaying.
const REPLAY_PAGE: u64 = 200;

/// The realtime server: the hub, how to authenticate and the limits.
#[derive(Debug)]
pub struct Server {
    hub: Arc<Hub>,
    auth: Authenticator,
    limits: ConnLimits,
}

impl Server {
    /// A server over `hub`, accepting session tokens checked by `auth`.
    pub fn new(hub: Arc<Hub>, auth: Authenticator, limits: ConnLimits) -> Self {
        Self { hub, auth, limits }
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

/// Serves `listener` for ever (start [`Hub::tail`] next to it).
pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    let slots = Arc::new(Semaphore::new(server.limits.max_sockets.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "realtime: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(handle(server, req)) }
            });
            if let Err(e) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "realtime: connection ended with an error");
            }
        });
    }
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn refuse(err: &ApiError) -> Response<Full<Bytes>> {
    reply(err.status(), &err.to_envelope())
}

fn header_has(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    })
}

/// The caller's openid from `Authorization: Bearer <session token>`.
fn authenticate(server: &Server, req: &Request<Incoming>) -> Result<String, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 4096)
        .ok_or_else(|| {
            ApiError::unauthenticated("send the session token as `Authorization: Bearer <token>`")
        })?;
    let claims = server
        .auth
        .signer()
        .verify(token, server.auth.now())
        .map_err(|_| ApiError::unauthenticated("the session token is invalid or expired"))?;
    Ok(claims.sub)
}

fn handle(server: Arc<Server>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/stats" {
        return reply(StatusCode::OK, &server.hub.snapshot());
    }
    let upgrade = header_has(&req, header::CONNECTION, "upgrade")
        && header_has(&req, header::UPGRADE, "websocket")
        && req.method() == http::Method::GET;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (true, Some(accept)) = (upgrade, key) else {
        return refuse(&ApiError::new(
            codes::BAD_REQUEST,
            StatusCode::UPGRADE_REQUIRED,
            "realtime speaks WebSocket only: open it with wx.connectSocket",
        ));
    };
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return refuse(&ApiError::bad_request("Sec-WebSocket-Version must be 13"));
    }
    // Before the upgrade: a request without a valid session never becomes a socket.
    let openid = match authenticate(&server, &req) {
        Ok(openid) => openid,
        Err(err) => return refuse(&err),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0)
                    .max_message_size(Some(MAX_CLIENT_FRAME))
                    .max_frame_size(Some(MAX_CLIENT_FRAME));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run_connection(ws, &server, &openid).await;
            }
            Err(e) => tracing::debug!(error = %e, "realtime: upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// Why a connection ends.
enum End {
    /// The client closed or went away.
    Gone,
    /// Closed by us with this code and reason.
    Close(CloseCode, &'static str),
}

/// A token bucket over client messages.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Connection<'a, S> {
    server: &'a Server,
    openid: &'a str,
    id: u64,
    sink: S,
    /// The highest sequence sent or replayed past: nothing at or below it is sent again.
    last_sent: i64,
    resumed: bool,
}

impl<S> Connection<'_, S>
where
    S: futures_util::Sink<Message> + Unpin,
{
    async fn send(&mut self, text: String) -> Result<(), End> {
        match tokio::time::timeout(
            self.server.limits.write_timeout,
            self.sink.send(Message::text(text)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Sends events above `last_sent`, in frames of bounded size.
    async fn send_events(&mut self, events: &[&Event]) -> Result<(), End> {
        let fresh: Vec<&Event> = events
            .iter()
            .copied()
            .filter(|e| e.seq > self.last_sent)
            .collect();
        let mut start = 0;
        while start < fresh.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < fresh.len() && end - start < EVENTS_PER_FRAME && bytes < FRAME_BYTES {
                bytes += fresh[end].data.to_string().len() + 128;
                end += 1;
            }
            self.send(events_frame(&fresh[start..end])).await?;
            start = end;
        }
        if let Some(last) = fresh.last() {
            self.last_sent = self.last_sent.max(last.seq);
        }
        Ok(())
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let message = match parse_client(text) {
            Ok(m) => m,
            Err(message) => return self.send(error_frame(codes::BAD_REQUEST, &message)).await,
        };
        match message {
            ClientMessage::Ping => self.send(json!({"type": "pong"}).to_string()).await,
            ClientMessage::Unsubscribe { topics } => {
                self.server.hub.unsubscribe(self.id, &topics);
                let now: Vec<String> = self
                    .server
                    .hub
                    .topics(self.id)
                    .iter()
                    .map(super::Topic::name)
                    .collect();
                self.send(json!({"type": "subscribed", "topics": now, "refused": []}).to_string())
                    .await
            }
            ClientMessage::Subscribe { topics, after } => {
                let hub = &self.server.hub;
                let (_, refused) = match hub.subscribe(self.id, self.openid, &topics).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "realtime: subscribe check failed");
                        return self
                            .send(error_frame(codes::INTERNAL, "could not check the topics"))
                            .await;
                    }
                };
                let held: Vec<String> =
                    hub.topics(self.id).iter().map(super::Topic::name).collect();
                let refused: Vec<_> = refused
                    .iter()
                    .map(|r| json!({"topic": r.topic, "code": r.code, "message": r.message}))
                    .collect();
                self.send(
                    json!({"type": "subscribed", "topics": held, "refused": refused, "head": hub.cursor()})
                        .to_string(),
                )
                .await?;
                match after {
                    Some(after) if !self.resumed => {
                        self.resumed = true;
                        self.replay(after).await
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Sends the stored events after `after` that the connection's topics match; live events
    /// queued meanwhile are then sent only above what the replay covered.
    async fn replay(&mut self, after: i64) -> Result<(), End> {
        let hub = self.server.hub.clone();
        let events = hub.events().clone();
        hub.count_read();
        let oldest = events.oldest().await.ok().flatten();
        if let Some(oldest) = oldest
            && after + 1 < oldest
        {
            // Some events the client missed are gone: it must reload what it shows.
            self.send(json!({"type": "resync", "oldest": oldest}).to_string())
                .await?;
        }
        let mut cursor = after;
        loop {
            hub.count_read();
            let page = match events.after(cursor, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "realtime: replay read failed");
                    return self
                        .send(error_frame(codes::INTERNAL, "could not replay; reconnect"))
                        .await
                        .and(Err(End::Close(CloseCode::Error, "replay failed")));
                }
            };
            let topics = hub.topics(self.id);
            let matching: Vec<&Event> = page
                .iter()
                .filter(|e| topics.iter().any(|t| t.matches(self.openid, e)))
                .collect();
            self.send_events(&matching).await?;
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            self.last_sent = self.last_sent.max(cursor);
            if (page.len() as u64) < REPLAY_PAGE {
                break;
            }
        }
        Ok(())
    }

    async fn on_items(&mut self, items: Vec<Item>) -> Result<(), End> {
        let mut batch: Vec<Arc<Event>> = Vec::new();
        for item in items {
            match item {
                Item::Event(e) => batch.push(e),
                Item::Revoked(tenant) => {
                    let refs: Vec<&Event> = batch.iter().map(AsRef::as_ref).collect();
                    self.send_events(&refs).await?;
                    batch.clear();
                    self.send(
                        json!({"type": "revoked", "topic": format!("tenant:{tenant}"), "code": codes::FORBIDDEN})
                            .to_string(),
                    )
                    .await?;
                }
            }
        }
        let refs: Vec<&Event> = batch.iter().map(AsRef::as_ref).collect();
        self.send_events(&refs).await
    }
}

/// Serves one upgraded socket until it ends.
async fn run_connection<T>(ws: WebSocketStream<T>, server: &Server, openid: &str)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let hub = server.hub.clone();
    let registration = hub.register(openid);
    let id = registration.id;
    let mut rx = registration.rx;
    let (sink, mut stream) = ws.split();
    let mut conn = Connection {
        server,
        openid,
        id,
        sink,
        last_sent: 0,
        resumed: false,
    };
    let limits = server.limits;
    let mut bucket = Bucket::new(limits.messages_per_sec, limits.burst);
    let mut heartbeat = tokio::time::interval(limits.heartbeat);
    heartbeat.tick().await;
    let mut heard = Instant::now();
    let welcome = json!({
        "type": "welcome",
        "heartbeatSecs": limits.heartbeat.as_secs(),
        "maxTopics": MAX_TOPICS,
        "head": hub.cursor(),
    });
    let mut end = conn.send(welcome.to_string()).await.err();
    while end.is_none() {
        let step = tokio::select! {
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) => Err(End::Gone),
                Some(Ok(message)) => {
                    heard = Instant::now();
                    match message {
                        Message::Text(text) => {
                            if bucket.take() {
                                conn.on_text(text.as_str()).await
                            } else {
                                Err(End::Close(CloseCode::Policy, "too many messages"))
                            }
                        }
                        Message::Binary(_) => Err(End::Close(CloseCode::Unsupported, "text frames only")),
                        Message::Close(_) => Err(End::Gone),
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
                    }
                }
            },
            items = rx.recv() => match items {
                Some(items) => conn.on_items(items).await,
                None => Err(End::Close(CloseCode::Again, "too slow: reconnect and resume")),
            },
            _ = heartbeat.tick() => {
                if heard.elapsed() > limits.heartbeat * 3 {
                    Err(End::Close(CloseCode::Away, "no heartbeat"))
                } else {
                    match tokio::time::timeout(limits.write_timeout, conn.sink.send(Message::Ping(Bytes::new()))).await {
                        Ok(Ok(())) => Ok(()),
                        _ => Err(End::Gone),
                    }
                }
            }
        };
        end = step.err();
    }
    hub.unregister(id);
    if let Some(End::Close(code, reason)) = end {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            limits.write_timeout,
            conn.sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
}
