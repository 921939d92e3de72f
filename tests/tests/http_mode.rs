//! The `http` mode end to end: the fixture binary as an HTTP server.

use std::path::Path;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint_e2e::{HttpInstance, SESSION_SECRET, http};

fn start() -> HttpInstance {
    HttpInstance::start(
        Path::new(env!("CARGO_BIN_EXE_e2e-fixture")),
        &[("WEMINT_SESSION_SECRET", SESSION_SECRET)],
    )
    .expect("fixture listens")
}

#[tokio::test]
async fn callables_at_root_and_action_path() {
    let f = start();
    let r = http(
        Method::POST,
        &f.url("/"),
        &[],
        r#"{"action":"echo","a":1,"token":"t-data"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    let out = r.json();
    assert_eq!(out["data"]["data"], json!({"a": 1}));
    assert_eq!(out["data"]["token"], "t-data");
    assert_eq!(out["data"]["mode"], "http");

    let r = http(
        Method::POST,
        &f.url("/echo"),
        &[
            ("authorization", "Bearer t-header"),
            ("x-wx-openid", "oRUN"),
            ("x-wx-appid", "wxrun"),
            ("x-wx-unionid", "uRUN"),
            ("x-request-id", "rid-42"),
        ],
        r#"{"b":2}"#,
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "rid-42");
    let out = r.json();
    assert_eq!(out["data"]["action"], "echo");
    assert_eq!(out["data"]["token"], "t-header");
    assert_eq!(out["data"]["requestId"], "rid-42");
    assert_eq!(
        out["data"]["platform"],
        json!({"gateway": "CloudbaseRun", "openid": "oRUN", "appid": "wxrun", "unionid": "uRUN"})
    );

    let r = http(Method::POST, &f.url("/limited"), &[], "").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "7");
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");

    let r = http(Method::POST, &f.url("/nope"), &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "UNKNOWN_ACTION");

    let r = http(Method::POST, &f.url("/"), &[], "not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = http(Method::GET, &f.url("/health"), &[], "").await;
    assert_eq!(
        r.json()["data"],
        json!({"name": "e2eFixture", "version": "0.1.0", "mode": "http"})
    );
}

#[tokio::test]
async fn webhook_gets_exact_bytes_and_query() {
    let f = start();
    let raw: Vec<u8> = vec![0, 159, 146, 150, b'\n', 255];
    let r = http(
        Method::POST,
        &f.url("/hook/v3?x=a%20b&y=2"),
        &[("Wechatpay-Signature", "sig")],
        raw.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(&r.body[..], &raw[..]);
    let info: Value = serde_json::from_str(r.headers["x-fixture"].to_str().unwrap()).unwrap();
    assert_eq!(
        info,
        json!({"method": "POST", "path": "/hook/v3", "query": ["x=a b", "y=2"], "signature": "sig"})
    );
}

#[tokio::test]
async fn panic_gives_500_and_the_server_keeps_serving() {
    let mut f = start();
    for _ in 0..3 {
        let r = http(Method::POST, &f.url("/panic"), &[], "{}").await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.json()["error"]["code"], "INTERNAL");
        let r = http(Method::POST, &f.url("/echo"), &[], "{}").await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert!(f.is_running());
}

#[test]
fn init_failure_exits_non_zero_naming_the_variable() {
    let err = HttpInstance::start(Path::new(env!("CARGO_BIN_EXE_e2e-fixture")), &[])
        .err()
        .expect("init must fail");
    assert!(err.contains("WEMINT_SESSION_SECRET"), "{err}");
    assert!(!err.contains("exit status: 0"), "{err}");
}
