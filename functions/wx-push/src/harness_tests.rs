//! Function-level tests: the real `wxPush` function value, invoked in-process through
//! `wemint::runtime::testing` with the independent message push vector
//! (`testdata/vectors/message_push.json`, TEST-ONLY token and key).

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::runtime::WebhookResponse;
use wemint::runtime::testing::Harness;

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/vectors/message_push.json"
);

fn vector() -> Value {
    serde_json::from_str(&std::fs::read_to_string(VECTOR).unwrap()).unwrap()
}

fn field<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("message_push.json: {path}"))
}

/// wxPush configured with the vector's token, EncodingAESKey and appid, its clock set to the
/// vector's time (the pushes were signed then).
async fn wx_push() -> Harness {
    let v = vector();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed_at: i64 = field(&v, "/timestamp").parse().unwrap();
    Harness::start(
        super::function(),
        [
            ("WEMINT_STORE", "sqlite::memory:".to_owned()),
            ("WX_PUSH_TOKEN", field(&v, "/token").to_owned()),
            (
                "WX_PUSH_AES_KEY",
                field(&v, "/safe_mode/encoding_aes_key").to_owned(),
            ),
            ("WECHAT_APPID", field(&v, "/safe_mode/appid").to_owned()),
            ("WECHAT_APPSECRET", "harness-app-secret".to_owned()),
            ("WECHAT_API_BASE", "http://127.0.0.1:9".to_owned()),
            (
                "WEMINT_DEV_CLOCK_OFFSET_SECS",
                (signed_at - now).to_string(),
            ),
        ],
    )
    .await
    .unwrap()
}

async fn send(f: &Harness, method: Method, query: &[(&str, &str)], body: &str) -> WebhookResponse {
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let req = http::Request::builder()
        .method(method)
        .uri(format!("/wxPush?{query}"))
        .body(body.to_owned())
        .unwrap();
    f.http(req).await
}

fn text(resp: &WebhookResponse) -> &str {
    std::str::from_utf8(&resp.body).unwrap()
}

#[tokio::test]
async fn url_verification_echoes_echostr_when_the_signature_matches() {
    let v = vector();
    let f = wx_push().await;
    let query = |signature| {
        [
            ("signature", signature),
            ("timestamp", field(&v, "/timestamp")),
            ("nonce", field(&v, "/nonce")),
            ("echostr", field(&v, "/echostr")),
        ]
    };

    let resp = send(&f, Method::GET, &query(field(&v, "/signature")), "").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(text(&resp), "6152980315503231579");
    assert_eq!(
        resp.headers.get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );

    // One character off: refused, and nothing is echoed.
    let mut forged = field(&v, "/signature").to_owned();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(forged.len() - 1.., last);
    let resp = send(&f, Method::GET, &query(&forged), "").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(text(&resp), "refused");
}

#[tokio::test]
async fn a_safe_mode_push_is_opened_and_acknowledged_only_with_its_msg_signature() {
    let v = vector();
    let f = wx_push().await;
    let body = json!({"ToUserName": "gh_d5f030905faf", "Encrypt": field(&v, "/safe_mode/Encrypt")})
        .to_string();
    let encrypt_query = |msg_signature| {
        [
            ("timestamp", field(&v, "/timestamp")),
            ("nonce", field(&v, "/nonce")),
            ("encrypt_type", "aes"),
            ("msg_signature", msg_signature),
        ]
    };

    let forged = "0".repeat(40);
    let resp = send(&f, Method::POST, &encrypt_query(&forged), &body).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    let signed = field(&v, "/safe_mode/msg_signature");
    let resp = send(&f, Method::POST, &encrypt_query(signed), &body).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", text(&resp));
    assert_eq!(text(&resp), "success");
}
