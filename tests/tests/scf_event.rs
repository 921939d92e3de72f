//! The `scf-event` mode end to end: the fixture binary under the SCF runtime API emulator.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use wemint_e2e::{Outcome, RuntimeApi, ScfInstance, StartOptions, fixture_options, scf};

const SECOND: Duration = Duration::from_secs(2);

fn fixture() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_e2e-fixture"))
}

async fn start() -> ScfInstance {
    ScfInstance::start(fixture(), fixture_options(RuntimeApi::Scf))
        .await
        .expect("fixture starts")
}

#[tokio::test]
async fn ready_handshake_sends_a_non_empty_body_once_init_is_done() {
    let f = start().await;
    let body = f.ready_body().expect("init/ready was called");
    assert!(!body.is_empty(), "ready body must not be empty");
    assert!(f.init_error().is_none());
    // Init ran before ready: the state it built is visible to the first request.
    let out = f.invoke_json(&json!({"action": "echo"})).await.unwrap();
    assert_eq!(
        out["data"]["secretLen"],
        json!(wemint_e2e::SESSION_SECRET.len())
    );
    assert!(
        f.wait_for_stdout_line(|l| l.contains("\"ready\""), SECOND)
            .await,
        "logs: {}",
        f.stdout()
    );
}

#[tokio::test]
async fn callable_event_round_trip_with_identity_inputs() {
    let f = start().await;
    let out = f
        .invoke_json(&json!({
            "action": "echo",
            "orderId": "o-1",
            "token": "session-token",
            "userInfo": {"appId": "wxapp", "openId": "oOPENID"},
        }))
        .await
        .unwrap();
    assert_eq!(out["ok"], json!(true));
    let data = &out["data"];
    assert_eq!(data["action"], "echo");
    assert_eq!(data["data"], json!({"orderId": "o-1"}));
    assert_eq!(data["token"], "session-token");
    assert_eq!(
        data["platform"],
        json!({"gateway": "CloudbaseEvent", "openid": "oOPENID", "appid": "wxapp", "unionid": null})
    );
    assert_eq!(data["mode"], "scf-event");
    assert_eq!(data["hasDeadline"], json!(true));
    assert_eq!(data["memoryLimitMb"], json!(128));
    assert!(data["requestId"].as_str().unwrap().starts_with("emu-"));
    // The request id is on the invocation's log lines.
    let rid = data["requestId"].as_str().unwrap();
    assert!(
        f.wait_for_stdout_line(|l| l.contains(rid) && l.contains("invocation done"), SECOND)
            .await,
        "logs: {}",
        f.stdout()
    );

    let out = f.invoke_json(&json!({"action": "limited"})).await.unwrap();
    assert_eq!(
        out,
        json!({"ok": false, "error": {"code": "RATE_LIMITED", "message": "slow down", "retryAfterSecs": 7}})
    );
    let out = f.invoke_json(&json!({"action": "health"})).await.unwrap();
    assert_eq!(
        out["data"],
        json!({"name": "e2eFixture", "version": "0.1.0", "mode": "scf-event"})
    );
}

#[tokio::test]
async fn http_access_event_with_base64_body_reaches_the_webhook_as_exact_bytes() {
    let f = start().await;
    let raw: Vec<u8> = (0u8..=255).rev().collect();
    let out = f
        .invoke_json(&json!({
            "httpMethod": "POST",
            "path": "/hook/wechatpay",
            "headers": {"wechatpay-signature": "c2ln", "content-type": "application/json"},
            "queryStringParameters": {"a": "1"},
            "requestContext": {"requestId": "gw-1", "envId": "env"},
            "body": BASE64.encode(&raw),
            "isBase64Encoded": true,
        }))
        .await
        .unwrap();
    assert_eq!(out["statusCode"], json!(201));
    assert_eq!(out["isBase64Encoded"], json!(true));
    assert_eq!(BASE64.decode(out["body"].as_str().unwrap()).unwrap(), raw);
    let info: Value = serde_json::from_str(out["headers"]["x-fixture"].as_str().unwrap()).unwrap();
    assert_eq!(
        info,
        json!({"method": "POST", "path": "/hook/wechatpay", "query": ["a=1"], "signature": "c2ln"})
    );

    // A callable over HTTP access: action from the path, bearer token, forged X-WX ignored.
    let out = f
        .invoke_json(&json!({
            "httpMethod": "POST",
            "path": "/e2eFixture/echo",
            "headers": {"authorization": "Bearer tok-h", "x-wx-openid": "forged"},
            "body": "{\"n\":1}",
            "isBase64Encoded": false,
        }))
        .await
        .unwrap();
    assert_eq!(out["statusCode"], json!(200));
    assert_eq!(out["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["token"], "tok-h");
    assert_eq!(body["data"]["platform"], Value::Null);
    assert_eq!(body["data"]["data"], json!({"n": 1}));
}

#[tokio::test]
async fn timer_event() {
    let f = start().await;
    let out = f
        .invoke_json(&json!({"Type": "Timer", "TriggerName": "renewals", "Time": "2026-11-23T00:00:00Z", "Message": "m"}))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"ok": true, "data": {"trigger": "renewals", "time": "2026-11-23T00:00:00Z", "message": "m"}})
    );
}

#[tokio::test]
async fn malformed_event_gets_an_error_reply_and_the_next_one_is_served() {
    let f = start().await;
    let Outcome::Error(message) = f.invoke("{not json").await.unwrap() else {
        panic!("expected /runtime/invocation/error");
    };
    assert!(String::from_utf8_lossy(&message).contains("malformed event"));
    assert!(matches!(
        f.invoke("[1,2,3]").await.unwrap(),
        Outcome::Error(_)
    ));
    let out = f
        .invoke_json(&json!({"action": "echo", "x": 2}))
        .await
        .unwrap();
    assert_eq!(out["data"]["data"], json!({"x": 2}));
    assert!(f.is_running());
}

#[tokio::test]
async fn handler_panic_answers_internal_and_the_next_invocation_is_served() {
    let f = start().await;
    for _ in 0..3 {
        let out = f.invoke_json(&json!({"action": "panic"})).await.unwrap();
        assert_eq!(
            out,
            json!({"ok": false, "error": {"code": "INTERNAL", "message": "internal error"}})
        );
        let out = f.invoke_json(&json!({"action": "echo"})).await.unwrap();
        assert_eq!(out["ok"], json!(true));
    }
    assert!(f.is_running());
    assert!(
        f.wait_for_stdout_line(|l| l.contains("fixture panic on request"), SECOND)
            .await,
        "panic is logged: {}",
        f.stdout()
    );
}

#[tokio::test]
async fn init_failure_is_reported_and_the_process_exits_non_zero() {
    let options = StartOptions::default();
    let (status, failure) = scf::run_to_exit(fixture(), options).await.unwrap();
    let status = status.expect("the process must exit, not become ready");
    assert!(!status.success());
    assert!(
        failure.stderr.contains("init failed") && failure.stderr.contains("WEMINT_SESSION_SECRET"),
        "stderr: {}",
        failure.stderr
    );
    let reported = failure.init_error.expect("init/error was attempted");
    assert!(reported.contains("WEMINT_SESSION_SECRET"));
}
