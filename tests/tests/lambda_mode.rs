//! The `lambda` mode end to end: the fixture (built with feature `lambda`) under the emulator
//! speaking the AWS Lambda runtime API.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use wemint_e2e::{RuntimeApi, ScfInstance, fixture_options};

async fn start() -> ScfInstance {
    ScfInstance::start(
        Path::new(env!("CARGO_BIN_EXE_e2e-fixture")),
        fixture_options(RuntimeApi::Lambda),
    )
    .await
    .expect("fixture starts in lambda mode")
}

#[tokio::test]
async fn callable_and_http_event_round_trip() {
    let f = start().await;
    let out = f
        .invoke_json(
            &json!({"action": "echo", "k": "v", "userInfo": {"openId": "o", "appId": "a"}}),
        )
        .await
        .unwrap();
    assert_eq!(out["data"]["mode"], "lambda");
    assert_eq!(out["data"]["data"], json!({"k": "v"}));
    assert_eq!(out["data"]["hasDeadline"], json!(true));
    assert_eq!(out["data"]["platform"]["gateway"], "CloudbaseEvent");

    let out = f
        .invoke_json(&json!({
            "httpMethod": "POST", "path": "/hook", "headers": {},
            "body": BASE64.encode(b"\xffraw"), "isBase64Encoded": true,
        }))
        .await
        .unwrap();
    assert_eq!(out["statusCode"], json!(201));
    assert_eq!(out["body"], Value::String(BASE64.encode(b"\xffraw")));
}

#[tokio::test]
async fn panic_and_malformed_event_leave_it_serving() {
    let f = start().await;
    let out = f.invoke_json(&json!({"action": "panic"})).await.unwrap();
    assert_eq!(out["error"]["code"], "INTERNAL");
    assert!(f.invoke("[1]").await.unwrap().error_text().is_some());
    let out = f.invoke_json(&json!({"action": "health"})).await.unwrap();
    assert_eq!(out["data"]["mode"], "lambda");
}
