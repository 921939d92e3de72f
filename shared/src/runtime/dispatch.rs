//! From platform input to entry point: event classification (callFunction, HTTP access /
//! API gateway, timer), HTTP routing, identity extraction and reply shapes.

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::function::{
    CallRequest, Invocation, Service, TimerRequest, WebhookRequest, WebhookResponse,
};
use super::identity::{IdentityInputs, PlatformClaims, TrustedGateway, bearer_token, claims};
use crate::secret::Secret;

/// The reply to one event-style invocation (SCF runtime API, Lambda).
#[derive(Debug)]
pub(crate) enum EventReply {
    /// A function result: `POST /runtime/invocation/response`.
    Response(Value),
    /// The event could not be understood: `POST /runtime/invocation/error`.
    Error(String),
}

/// A raw HTTP request, from a socket or from an HTTP access event.
#[derive(Debug)]
pub(crate) struct HttpRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

enum Event {
    Call(Map<String, Value>),
    Http(Result<HttpRequest, String>),
    Timer {
        trigger_name: String,
        time: String,
        message: String,
    },
}

fn classify(value: Value) -> Result<Event, String> {
    let Value::Object(obj) = value else {
        return Err("malformed event: expected a JSON object".to_owned());
    };
    if obj.contains_key("httpMethod") {
        return Ok(Event::Http(http_event_v1(&obj)));
    }
    if obj.contains_key("rawPath")
        && obj
            .get("requestContext")
            .and_then(|c| c.get("http"))
            .is_some()
    {
        return Ok(Event::Http(http_event_v2(&obj)));
    }
    // Only the platform fires timers. A `wx.cloud.callFunction` call always carries the
    // `userInfo` the platform adds, so `{Type:"Timer"}` sent by a client stays a call (and
    // meets the callables' own checks); HTTP requests never reach this point.
    if obj.get("Type").and_then(Value::as_str) == Some("Timer") && !obj.contains_key("userInfo") {
        let field = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        return Ok(Event::Timer {
            trigger_name: field("TriggerName"),
            time: field("Time"),
            message: field("Message"),
        });
    }
    Ok(Event::Call(obj))
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("HTTP event: `{key}` must be a string"))
}

fn event_body(obj: &Map<String, Value>) -> Result<Bytes, String> {
    let body = match obj.get("body") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("HTTP event: `body` must be a string".to_owned()),
    };
    if obj
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        BASE64
            .decode(body)
            .map(Bytes::from)
            .map_err(|_| "HTTP event: body is not valid base64".to_owned())
    } else {
        Ok(Bytes::copy_from_slice(body.as_bytes()))
    }
}

fn event_headers(value: Option<&Value>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(Value::Object(map)) = value else {
        return headers;
    };
    for (name, value) in map {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let values: Vec<&str> = match value {
            Value::String(s) => vec![s],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.append(name.clone(), v);
            }
        }
    }
    headers
}

fn method(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.to_ascii_uppercase().as_bytes())
        .map_err(|_| "HTTP event: invalid method".to_owned())
}

/// API gateway / CloudBase HTTP access event (`httpMethod`, `path`, `queryStringParameters`, …).
fn http_event_v1(obj: &Map<String, Value>) -> Result<HttpRequest, String> {
    let mut query = Vec::new();
    if let Some(Value::Object(params)) = obj.get("queryStringParameters") {
        for (k, v) in params {
            match v {
                Value::String(s) => query.push((k.clone(), s.clone())),
                Value::Array(items) => query.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|s| (k.clone(), s.to_owned())),
                ),
                _ => {}
            }
        }
    }
    Ok(HttpRequest {
        method: method(str_field(obj, "httpMethod")?)?,
        path: obj
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| p.starts_with('/'))
            .unwrap_or("/")
            .to_owned(),
        query,
        headers: event_headers(obj.get("headers")),
        body: event_body(obj)?,
    })
}

/// API gateway v2 / Lambda function URL event (`rawPath`, `rawQueryString`, `requestContext.http`).
fn http_event_v2(obj: &Map<String, Value>) -> Result<HttpRequest, String> {
    let m = obj
        .get("requestContext")
        .and_then(|c| c.get("http"))
        .and_then(|h| h.get("method"))
        .and_then(Value::as_str)
        .ok_or("HTTP event: `requestContext.http.method` must be a string")?;
    let mut headers = event_headers(obj.get("headers"));
    if let Some(Value::Array(cookies)) = obj.get("cookies") {
        let joined: Vec<&str> = cookies.iter().filter_map(Value::as_str).collect();
        if let Ok(v) = HeaderValue::from_str(&joined.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
    Ok(HttpRequest {
        method: method(m)?,
        path: str_field(obj, "rawPath")?.to_owned(),
        query: parse_query(
            obj.get("rawQueryString")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        headers,
        body: event_body(obj)?,
    })
}

/// Splits and percent-decodes a query string (`a=1&b=x%20y`, `+` is a space; invalid escapes
/// are kept literally).
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The API-gateway integration response for an HTTP reply.
fn integration_response(resp: &WebhookResponse) -> Value {
    let mut headers = Map::new();
    for (name, value) in &resp.headers {
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str().to_owned(), json!(v));
        }
    }
    let (body, b64) = match std::str::from_utf8(&resp.body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (BASE64.encode(&resp.body), true),
    };
    json!({
        "statusCode": resp.status.as_u16(),
        "headers": headers,
        "body": body,
        "isBase64Encoded": b64,
    })
}

fn non_empty_str(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Takes `token` out of the data; a header token (already in `identity`) wins.
fn take_data_token(
    data: &mut Map<String, Value>,
    identity: &mut IdentityInputs,
) -> Result<(), ApiError> {
    match data.remove("token") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) => {
            if identity.session_token.is_none() && !t.is_empty() {
                identity.session_token = Some(Secret::new(t));
            }
            Ok(())
        }
        Some(_) => Err(ApiError::bad_request("`token` must be a string")),
    }
}

/// Takes `userInfo` out of a callFunction event as a `cloudbase-event` claim.
fn take_user_info(data: &mut Map<String, Value>) -> Option<PlatformClaims> {
    let info = data.remove("userInfo")?;
    claims(
        TrustedGateway::CloudbaseEvent,
        non_empty_str(info.get("openId")),
        non_empty_str(info.get("appId")),
        non_empty_str(info.get("unionId")),
    )
}

/// `X-WX-*` headers as a `cloudbase-run` claim.
fn header_claims(headers: &HeaderMap) -> Option<PlatformClaims> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    claims(
        TrustedGateway::CloudbaseRun,
        get("x-wx-openid"),
        get("x-wx-appid"),
        get("x-wx-unionid"),
    )
}

fn header_token(headers: &HeaderMap) -> Option<Secret<String>> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(|t| Secret::new(t.to_owned()))
}

fn envelope_response(result: Result<Value, ApiError>) -> WebhookResponse {
    let (status, body, retry_after) = Service::envelope(result);
    let mut resp = WebhookResponse::json(status, &body);
    if let Some(secs) = retry_after {
        resp.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl Service {
    /// Serves one event (SCF runtime API body, Lambda payload).
    pub(crate) async fn handle_event(&self, event: &[u8], invocation: Invocation) -> EventReply {
        let value = match serde_json::from_slice::<Value>(event) {
            Ok(v) => v,
            Err(e) => return self.malformed(format!("malformed event: not JSON ({e})")),
        };
        self.handle_event_value(value, invocation).await
    }

    fn malformed(&self, message: String) -> EventReply {
        tracing::warn!(detail = %message, "malformed event");
        EventReply::Error(message)
    }

    pub(crate) async fn handle_event_value(
        &self,
        event: Value,
        invocation: Invocation,
    ) -> EventReply {
        let started = Instant::now();
        let reply = match classify(event) {
            Err(message) => return self.malformed(message),
            Ok(Event::Call(mut data)) => {
                let platform = take_user_info(&mut data);
                let identity = IdentityInputs {
                    platform,
                    session_token: None,
                };
                let (_, body, _) =
                    Service::envelope(self.callable(data, None, identity, invocation).await);
                tracing::info!(
                    kind = "callable",
                    ok = body["ok"] == json!(true),
                    us = elapsed_us(started),
                    "invocation done"
                );
                body
            }
            Ok(Event::Http(Err(message))) => {
                tracing::warn!(detail = %message, "malformed HTTP event");
                integration_response(&WebhookResponse::from_error(&ApiError::bad_request(
                    message,
                )))
            }
            Ok(Event::Http(Ok(req))) => {
                let resp = self.handle_http(req, invocation, false).await;
                integration_response(&resp)
            }
            Ok(Event::Timer {
                trigger_name,
                time,
                message,
            }) => {
                let result = self
                    .timer(TimerRequest {
                        trigger_name,
                        time,
                        message,
                        invocation,
                    })
                    .await;
                let (_, body, _) = Service::envelope(result);
                tracing::info!(
                    kind = "timer",
                    ok = body["ok"] == json!(true),
                    us = elapsed_us(started),
                    "invocation done"
                );
                body
            }
        };
        EventReply::Response(reply)
    }

    /// Routes an HTTP request: `…/health` (GET or POST) answers health even on a function whose
    /// webhook takes every path (wxPush at `/`), then a webhook by path prefix, else `GET /` for
    /// health, else `POST` as a callable (action from the path's last segment or the body).
    /// `platform_headers`: whether `X-WX-*` headers are collected as `cloudbase-run` claims
    /// (only when the request reached our own listener, never from an HTTP access event).
    pub(crate) async fn handle_http(
        &self,
        req: HttpRequest,
        invocation: Invocation,
        platform_headers: bool,
    ) -> WebhookResponse {
        // The method and path are kept for the log line only when it will be written.
        if !tracing::enabled!(tracing::Level::INFO) {
            return self.route_http(req, invocation, platform_headers).await;
        }
        let started = Instant::now();
        let method = req.method.clone();
        let path = req.path.clone();
        let resp = self.route_http(req, invocation, platform_headers).await;
        tracing::info!(kind = "http", %method, %path, status = resp.status.as_u16(), us = elapsed_us(started), "invocation done");
        resp
    }

    async fn route_http(
        &self,
        req: HttpRequest,
        invocation: Invocation,
        platform_headers: bool,
    ) -> WebhookResponse {
        let segment = req.path.rsplit('/').find(|s| !s.is_empty());
        let probe = matches!(req.method, Method::GET | Method::POST);
        if probe && segment == Some(super::function::HEALTH) {
            return envelope_response(Ok(self.health()));
        }
        if let Some(handler) = self.webhook_for(&req.path) {
            let req = WebhookRequest {
                method: req.method,
                path: req.path,
                headers: req.headers,
                query: req.query,
                body: req.body,
                invocation,
            };
            return self.webhook(handler, req).await;
        }
        if req.method == Method::GET && segment.is_none() {
            return envelope_response(Ok(self.health()));
        }
        if req.method != Method::POST {
            let err = ApiError::new(
                super::codes::METHOD_NOT_ALLOWED,
                StatusCode::METHOD_NOT_ALLOWED,
                "callables accept POST only",
            );
            let mut resp = WebhookResponse::from_error(&err);
            resp.headers
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return resp;
        }
        let data = if req.body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return envelope_response(Err(ApiError::bad_request(
                        "the body must be a JSON object",
                    )));
                }
                Err(e) => {
                    return envelope_response(Err(ApiError::bad_request(format!(
                        "the body is not JSON: {e}"
                    ))));
                }
            }
        };
        let identity = IdentityInputs {
            platform: platform_headers
                .then(|| header_claims(&req.headers))
                .flatten(),
            session_token: header_token(&req.headers),
        };
        envelope_response(self.callable(data, segment, identity, invocation).await)
    }

    async fn callable(
        &self,
        mut data: Map<String, Value>,
        segment: Option<&str>,
        mut identity: IdentityInputs,
        invocation: Invocation,
    ) -> Result<Value, ApiError> {
        take_data_token(&mut data, &mut identity)?;
        // Identity inside the data is never trusted: `userInfo` from a client is dropped here
        // (a real one from a callFunction event was already taken out by the caller).
        data.remove("userInfo");
        let action = self.resolve_action(segment, &mut data)?;
        tracing::Span::current().record("action", action.as_str());
        self.call(CallRequest {
            action,
            data: Value::Object(data),
            identity,
            invocation,
        })
        .await
    }
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("a=1&b=x%20y+z&c&d=%E4%BD%A0&e=%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("d".into(), "你".into()),
                ("e".into(), "%zz".into()),
            ]
        );
        assert_eq!(parse_query("x=%4"), vec![("x".into(), "%4".into())]);
    }

    #[test]
    fn http_event_with_base64_body_keeps_exact_bytes() {
        let raw = [0xffu8, 0x00, b'{', 0x80];
        let ev = json!({
            "httpMethod": "post", "path": "/pay/notify",
            "headers": {"wechatpay-serial": "ABC", "content-type": "application/json"},
            "queryStringParameters": {"a": "1"},
            "body": BASE64.encode(raw), "isBase64Encoded": true,
        });
        let Ok(Event::Http(Ok(req))) = classify(ev) else {
            panic!("not http")
        };
        assert_eq!(req.method, Method::POST);
        assert_eq!(&req.body[..], &raw);
        assert_eq!(req.headers.get("Wechatpay-Serial").unwrap(), "ABC");
        assert_eq!(req.query, vec![("a".into(), "1".into())]);
    }

    #[test]
    fn classification() {
        assert!(classify(json!([1])).is_err());
        assert!(matches!(classify(json!({"a": 1})), Ok(Event::Call(_))));
        let timer = json!({"Type":"Timer","TriggerName":"renew","Time":"2026-11-23T00:00:00Z","Message":"m"});
        assert!(
            matches!(classify(timer), Ok(Event::Timer { trigger_name, .. }) if trigger_name == "renew")
        );
        let bad = json!({"httpMethod": "POST", "body": "%%%", "isBase64Encoded": true});
        assert!(matches!(classify(bad), Ok(Event::Http(Err(_)))));
        let v2 = json!({"rawPath": "/x", "rawQueryString": "q=1", "requestContext": {"http": {"method": "GET"}}, "cookies": ["a=1", "b=2"]});
        let Ok(Event::Http(Ok(req))) = classify(v2) else {
            panic!("not http v2")
        };
        assert_eq!(req.path, "/x");
        assert_eq!(req.headers.get("cookie").unwrap(), "a=1; b=2");
    }

    #[test]
    fn user_info_and_token_are_taken_out() {
        let mut data = json!({"userInfo": {"appId": "wxa", "openId": "o1"}, "token": "t", "x": 1})
            .as_object()
            .unwrap()
            .clone();
        let claims = take_user_info(&mut data).unwrap();
        assert_eq!(claims.gateway, TrustedGateway::CloudbaseEvent);
        assert_eq!(claims.openid, "o1");
        let mut ids = IdentityInputs::default();
        take_data_token(&mut data, &mut ids).unwrap();
        assert_eq!(ids.session_token.unwrap().expose(), "t");
        assert_eq!(Value::Object(data), json!({"x": 1}));
    }

    #[test]
    fn integration_response_base64_for_binary() {
        let resp = WebhookResponse::with_body(
            StatusCode::OK,
            "application/octet-stream",
            vec![0xff, 0xfe],
        );
        let v = integration_response(&resp);
        assert_eq!(v["isBase64Encoded"], json!(true));
        assert_eq!(v["body"], json!(BASE64.encode([0xff, 0xfe])));
        let v = integration_response(&WebhookResponse::text(StatusCode::OK, "success"));
        assert_eq!(
            v,
            json!({"statusCode":200,"headers":{"content-type":"text/plain; charset=utf-8"},"body":"success","isBase64Encoded":false})
        );
    }
}

#[cfg(test)]
mod service_tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::Config;
    use crate::runtime::{Function, Mode};

    fn invocation(deadline: Option<Duration>) -> Invocation {
        let now = Instant::now();
        Invocation {
            request_id: "req-1".into(),
            mode: Mode::ScfEvent,
            received_at: now,
            deadline: deadline.map(|d| now + d),
            memory_limit_mb: Some(128),
        }
    }

    async fn service() -> Service {
        Function::with_init("demo", "1.2.3", |_c| async {
            Ok::<_, BoxErr>(Arc::new(41u32))
        })
        .callable("echo", |state, req| async move {
            let platform = req.identity.platform.as_ref().map(
                |p| json!({"channel": format!("{:?}", p.gateway), "openid": p.openid, "appid": p.appid}),
            );
            let token = req
                .identity
                .session_token
                .as_ref()
                .map(|t| t.expose().clone());
            Ok::<_, ApiError>(json!({
                "state": **state, "data": req.data, "platform": platform, "token": token,
                "action": req.action,
            }))
        })
        .callable("boom", |_s, _r| async move {
            if true {
                panic!("kaboom");
            }
            Ok::<_, ApiError>(())
        })
        .callable("slow", |_s, _r| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ApiError>(())
        })
        .callable("typed", |_s, req| async move {
            #[derive(serde::Deserialize)]
            struct In {
                n: u32,
            }
            let input: In = req.parse()?;
            Ok::<_, ApiError>(input.n * 2)
        })
        .webhook("/pay/notify", |_s, req| async move {
            Ok(WebhookResponse::with_body(
                StatusCode::OK,
                "application/octet-stream",
                req.body.clone(),
            ))
        })
        .timer(|_s, t| async move { Ok::<_, ApiError>(json!({"trigger": t.trigger_name})) })
        .build(Mode::ScfEvent, Config::from_vars::<&str, &str>([]))
        .await
        .unwrap()
    }

    type BoxErr = crate::runtime::BoxError;

    async fn event(svc: &Service, ev: Value) -> Value {
        match svc
            .handle_event(ev.to_string().as_bytes(), invocation(None))
            .await
        {
            EventReply::Response(v) => v,
            EventReply::Error(e) => panic!("unexpected error reply: {e}"),
        }
    }

    #[tokio::test]
    async fn callable_event_gets_identity_inputs_and_clean_data() {
        let svc = service().await;
        let out = event(
            &svc,
            json!({"action": "echo", "x": 1, "token": "tok", "userInfo": {"appId": "wxa", "openId": "o1"}}),
        )
        .await;
        assert_eq!(
            out,
            json!({"ok": true, "data": {
                "state": 41, "data": {"x": 1}, "token": "tok", "action": "echo",
                "platform": {"channel": "CloudbaseEvent", "openid": "o1", "appid": "wxa"},
            }})
        );
    }

    #[tokio::test]
    async fn health_unknown_action_panic_timeout_and_parse_errors() {
        let svc = service().await;
        assert_eq!(
            event(&svc, json!({"action": "health"})).await,
            json!({"ok": true, "data": {"name": "demo", "version": "1.2.3", "mode": "scf-event"}})
        );
        let out = event(&svc, json!({"action": "nope"})).await;
        assert_eq!(out["error"]["code"], "UNKNOWN_ACTION");
        let out = event(&svc, json!({"x": 1})).await;
        assert_eq!(out["error"]["code"], "UNKNOWN_ACTION");
        let out = event(&svc, json!({"action": "boom"})).await;
        assert_eq!(
            out,
            json!({"ok": false, "error": {"code": "INTERNAL", "message": "internal error"}})
        );
        let out = event(&svc, json!({"action": "typed", "n": "x"})).await;
        assert_eq!(out["error"]["code"], "BAD_REQUEST");
        assert_eq!(
            event(&svc, json!({"action": "typed", "n": 4})).await["data"],
            json!(8)
        );

        let reply = svc
            .handle_event(
                br#"{"action":"slow"}"#,
                invocation(Some(Duration::from_millis(120))),
            )
            .await;
        let EventReply::Response(out) = reply else {
            panic!("expected a response")
        };
        assert_eq!(out["error"]["code"], "TIMEOUT");

        assert!(matches!(
            svc.handle_event(b"not json", invocation(None)).await,
            EventReply::Error(_)
        ));
        assert!(matches!(
            svc.handle_event(b"[1,2]", invocation(None)).await,
            EventReply::Error(_)
        ));
    }

    #[tokio::test]
    async fn timer_and_http_access_events() {
        let svc = service().await;
        let out = event(
            &svc,
            json!({"Type": "Timer", "TriggerName": "daily", "Time": "t", "Message": ""}),
        )
        .await;
        assert_eq!(out, json!({"ok": true, "data": {"trigger": "daily"}}));

        let raw = [0u8, 0xff, 0x10];
        let out = event(
            &svc,
            json!({
                "httpMethod": "POST", "path": "/pay/notify/v3", "headers": {},
                "body": BASE64.encode(raw), "isBase64Encoded": true,
            }),
        )
        .await;
        assert_eq!(out["statusCode"], 200);
        assert_eq!(out["body"], json!(BASE64.encode(raw)));
        assert_eq!(out["isBase64Encoded"], true);

        // A callable over HTTP access: action from the path, bearer token from the header,
        // X-WX-* headers ignored (not our own listener).
        let out = event(
            &svc,
            json!({
                "httpMethod": "POST", "path": "/demo/echo",
                "headers": {"authorization": "Bearer abc", "x-wx-openid": "forged"},
                "body": "{\"y\":2}", "isBase64Encoded": false,
            }),
        )
        .await;
        assert_eq!(out["statusCode"], 200);
        let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["data"]["token"], "abc");
        assert_eq!(body["data"]["platform"], Value::Null);
        assert_eq!(body["data"]["data"], json!({"y": 2}));

        let out = event(&svc, json!({"httpMethod": "GET", "path": "/demo/echo"})).await;
        assert_eq!(out["statusCode"], 405);
        let out = event(
            &svc,
            json!({"httpMethod": "POST", "path": "/x", "body": "{", "isBase64Encoded": false}),
        )
        .await;
        assert_eq!(out["statusCode"], 400);
    }

    #[tokio::test]
    async fn http_listener_collects_platform_headers() {
        let svc = service().await;
        let mut headers = HeaderMap::new();
        headers.insert("x-wx-openid", HeaderValue::from_static("o9"));
        headers.insert("x-wx-appid", HeaderValue::from_static("wxb"));
        let req = HttpRequest {
            method: Method::POST,
            path: "/echo".into(),
            query: vec![],
            headers,
            body: Bytes::from_static(b"{\"token\":\"from-data\"}"),
        };
        let resp = svc.handle_http(req, invocation(None), true).await;
        let body: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body["data"]["platform"]["channel"], "CloudbaseRun");
        assert_eq!(body["data"]["platform"]["openid"], "o9");
        assert_eq!(body["data"]["token"], "from-data");
        assert_eq!(body["data"]["data"], json!({}));
    }

    #[tokio::test]
    async fn bad_definitions_fail_init() {
        let err = Function::new("bad", "0")
            .callable("a", |_s, _r| async { Ok::<_, ApiError>(()) })
            .callable("a", |_s, _r| async { Ok::<_, ApiError>(()) })
            .callable("health", |_s, _r| async { Ok::<_, ApiError>(()) })
            .default_action("zzz")
            .build(Mode::Http, Config::from_vars::<&str, &str>([]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("registered twice") && err.contains("reserved") && err.contains("zzz"),
            "{err}"
        );
    }
}
