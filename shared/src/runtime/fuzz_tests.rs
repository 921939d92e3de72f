//! Property tests: no SCF event, HTTP access event or HTTP request crashes the runtime, and
//! none but the platform's own timer event reaches the timer handler (issue 17, items 2, 3).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dispatch::{EventReply, HttpRequest, parse_query};
use super::function::{Function, Invocation, Service, WebhookResponse};
use super::{ApiError, BoxError, Mode};
use crate::config::Config;
use crate::fuzzing::{JSON_PARTS, cases, glued, hostile_text, nested};

/// What the timer answers: seen in a reply only if the timer ran.
const TIMER_MARK: &str = "timer-ran-7f3a";

struct Fixture {
    rt: tokio::runtime::Runtime,
    service: Arc<Service>,
    listener: std::net::SocketAddr,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (service, listener) = rt.block_on(async {
            let service =
                Function::with_init("fuzz", "0", |_c| async { Ok::<_, BoxError>(Arc::new(())) })
                    .callable("echo", |_s, req| async move {
                        Ok::<_, ApiError>(json!({"data": req.data}))
                    })
                    .webhook("/hook", |_s, req| async move {
                        Ok(WebhookResponse::with_body(
                            http::StatusCode::OK,
                            "application/octet-stream",
                            req.body.clone(),
                        ))
                    })
                    .timer(|_s, _t| async move { Ok::<_, ApiError>(json!(TIMER_MARK)) })
                    .build(Mode::Http, Config::from_vars::<&str, &str>([]))
                    .await
                    .unwrap();
            let service = Arc::new(service);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(super::http::serve(
                listener,
                service.clone(),
                super::http::Limits::DEFAULT,
            ));
            (service, addr)
        });
        Fixture {
            rt,
            service,
            listener,
        }
    })
}

fn invocation() -> Invocation {
    Invocation {
        request_id: "fuzz".into(),
        mode: Mode::ScfEvent,
        received_at: Instant::now(),
        deadline: Some(Instant::now() + Duration::from_secs(5)),
        memory_limit_mb: None,
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        Just(json!("Timer")),
        Just(json!("POST")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An event shaped like the platform's: some of the keys the classifier looks at.
fn structured_event() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "Type",
        "TriggerName",
        "Time",
        "Message",
        "userInfo",
        "httpMethod",
        "path",
        "body",
        "isBase64Encoded",
        "headers",
        "queryStringParameters",
        "rawPath",
        "rawQueryString",
        "requestContext",
        "cookies",
        "action",
        "token",
    ];
    proptest::collection::vec((proptest::sample::select(KEYS), json_value()), 0..10).prop_map(
        |pairs| {
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k.to_owned(), v);
            }
            Value::Object(map)
        },
    )
}

fn reply_text(reply: &EventReply) -> String {
    match reply {
        EventReply::Response(v) => v.to_string(),
        EventReply::Error(e) => e.clone(),
    }
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Raw event bytes: anything at all, or deep nesting.
    #[test]
    fn fuzz_scf_event_bytes(event in hostile_text()) {
        let f = fixture();
        let reply = f.rt.block_on(f.service.handle_event(&event, invocation()));
        let is_timer = serde_json::from_slice::<Value>(&event)
            .is_ok_and(|v| v["Type"] == "Timer" && v.get("userInfo").is_none()
                && v.get("httpMethod").is_none() && v.get("rawPath").is_none());
        if !is_timer {
            prop_assert!(!reply_text(&reply).contains(TIMER_MARK));
        }
    }

    /// Platform-shaped events: an event with `userInfo` (a client's callFunction) or an HTTP
    /// access event never runs the timer.
    #[test]
    fn fuzz_scf_events(mut event in structured_event(), timer in any::<bool>(), user in any::<bool>()) {
        if timer {
            event["Type"] = json!("Timer");
        }
        if user {
            event["userInfo"] = json!({"openId": "oFuzz", "appId": "wxfuzz"});
        }
        let f = fixture();
        let reply = f.rt.block_on(f.service.handle_event(event.to_string().as_bytes(), invocation()));
        if event.get("userInfo").is_some() || event.get("httpMethod").is_some() {
            prop_assert!(!reply_text(&reply).contains(TIMER_MARK), "{event}");
        }
    }

    /// Requests as the `http` listener hands them over.
    #[test]
    fn fuzz_http_requests(
        method in prop_oneof![
            proptest::sample::select(&["GET", "POST", "PUT", "DELETE", "OPTIONS"][..]).prop_map(str::to_owned),
            "[A-Z]{1,8}",
        ],
        path in prop_oneof![Just("/".to_owned()), Just("/hook/x".to_owned()), "/[a-z/%.]{0,24}", "/.{0,24}"],
        query in ".{0,64}",
        headers in proptest::collection::vec(("[a-zA-Z-]{1,16}", ".{0,32}"), 0..6),
        body in prop_oneof![hostile_text(), nested("{\"a\":", "}", glued(JSON_PARTS)).prop_map(String::into_bytes)],
        platform in any::<bool>(),
    ) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                map.append(k, v);
            }
        }
        let req = HttpRequest {
            method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST),
            path,
            query: parse_query(&query),
            headers: map,
            body: Bytes::from(body),
        };
        let f = fixture();
        let resp = f.rt.block_on(f.service.handle_http(req, invocation(), platform));
        prop_assert!(!String::from_utf8_lossy(&resp.body).contains(TIMER_MARK));
    }
}

proptest! {
    #![proptest_config(cases(300))]

    /// Raw bytes on the `http` listener's socket; it keeps serving well-formed requests.
    #[test]
    fn fuzz_http_wire(
        head in prop_oneof![
            glued(&["GET ", "POST ", "/ ", "/hook ", "HTTP/1.1", "HTTP/1.0", "\r\n", "\n",
                "Content-Length: ", "Transfer-Encoding: chunked", "0", "5", "ffffffffffffffff",
                "Host: x", ": ", "\u{0}", "é", "Expect: 100-continue"]),
            ".{0,256}",
        ],
        body in hostile_text(),
    ) {
        let f = fixture();
        let ok = f.rt.block_on(async {
            let mut hostile = tokio::net::TcpStream::connect(f.listener).await.unwrap();
            let _ = hostile.write_all(head.as_bytes()).await;
            let _ = hostile.write_all(&body).await;
            let _ = hostile.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), hostile.read_to_end(&mut sink)).await;
            let mut good = tokio::net::TcpStream::connect(f.listener).await.unwrap();
            good.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), good.read_to_end(&mut answer)).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
        });
        prop_assert!(ok);
    }
}
