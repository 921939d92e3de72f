//! Function-level tests: the real `payNotify` function value, invoked in-process through
//! `wemint::runtime::testing` with HTTP requests as WeChat Pay sends them. Keys and merchant
//! come from the independent vectors in `testdata/vectors` (TEST-ONLY material).

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::commerce::model::OrderDoc;
use wemint::commerce::model::collections::ORDERS;
use wemint::pay::v3::server::{NotificationSpec, PlatformSigner, build_notification};
use wemint::pay::v3::{ApiV3Key, RsaSigningKey};
use wemint::runtime::WebhookResponse;
use wemint::runtime::testing::{Harness, TestStore};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vectors/");
const BUYER: &str = "o-buyer";
const OUT_TRADE_NO: &str = "WM20261124HARNESS0001";
const TOTAL_FEN: i64 = 2500;

fn vector(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{VECTORS}{name}"))
        .unwrap_or_else(|e| panic!("{VECTORS}{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn common(field: &str) -> String {
    vector("common.json")[field].as_str().unwrap().to_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// payNotify's configuration: the vectors' test merchant in public-key mode, outbound calls to
/// a closed port (a notification needs none).
fn config(ts: &TestStore) -> Vec<(&'static str, String)> {
    let closed = "http://127.0.0.1:9".to_owned();
    vec![
        ts.var(),
        ("WECHAT_APPID", common("appid")),
        ("WECHAT_APPSECRET", "harness-app-secret".into()),
        ("WECHAT_API_BASE", closed.clone()),
        ("WECHATPAY_MCHID", common("mchid")),
        ("WECHATPAY_MERCHANT_SERIAL", common("merchant_serial_no")),
        (
            "WECHATPAY_PRIVATE_KEY_FILE",
            format!("{VECTORS}keys/merchant_private_key.pem"),
        ),
        ("WECHATPAY_APIV3_KEY", common("apiv3_key")),
        (
            "WECHATPAY_PUBLIC_KEY_FILE",
            format!("{VECTORS}keys/wechatpay_public_key.pem"),
        ),
        ("WECHATPAY_PUBLIC_KEY_ID", common("public_key_id")),
        ("WECHATPAY_API_BASE", closed.clone()),
        ("WECHATPAY_NOTIFY_URL", format!("{closed}/payNotify")),
    ]
}

/// An unpaid WeChat Pay order for one mug, as createOrder stores it.
async fn seed_order(ts: &TestStore) {
    let t = now();
    let doc = json!({
        "_id": "order-1", "outTradeNo": OUT_TRADE_NO, "openid": BUYER, "appid": common("appid"),
        "clientRequestId": "req-1", "status": "created", "channel": "wxpay",
        "items": [{"sku": "mug", "title": "Mug", "quantity": 1, "unitPriceFen": TOTAL_FEN,
            "kind": {"type": "physical"}}],
        "totalFen": TOTAL_FEN, "createdAt": t, "expiresAt": t + 1800,
    });
    // The document must be one the order model reads, or the test proves nothing.
    serde_json::from_value::<OrderDoc>(doc.clone()).expect("a valid order document");
    ts.store().insert(ORDERS, doc).await.unwrap();
}

async fn order(ts: &TestStore) -> Value {
    ts.store().get(ORDERS, "order-1").await.unwrap().unwrap()
}

fn transaction() -> Value {
    json!({
        "appid": common("appid"), "mchid": common("mchid"), "out_trade_no": OUT_TRADE_NO,
        "transaction_id": "4200000000202611240001", "trade_type": "JSAPI",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
        "success_time": "2026-11-24T08:00:00+08:00", "payer": {"openid": BUYER},
        "amount": {"total": TOTAL_FEN, "payer_total": TOTAL_FEN, "currency": "CNY",
            "payer_currency": "CNY"},
    })
}

/// A payment notification signed now by `key` (a file in the vectors' `keys/`) announcing
/// itself with the WeChat Pay public key id: headers and exact body bytes.
fn notification(key: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let pem = std::fs::read_to_string(format!("{VECTORS}keys/{key}")).unwrap();
    let signer = PlatformSigner::new(
        common("public_key_id"),
        RsaSigningKey::from_pkcs8(&pem).unwrap(),
    );
    let signed = build_notification(
        &NotificationSpec {
            id: "EV-HARNESS-0001",
            create_time: "2026-11-24T08:00:01+08:00",
            event_type: "TRANSACTION.SUCCESS",
            summary: "支付成功",
            original_type: "transaction",
            resource_nonce: "n0n0n0n0n0n0",
            timestamp: now(),
            nonce: "harness-nonce-0123456789abcdefgh",
        },
        &transaction(),
        &ApiV3Key::new(&common("apiv3_key")).unwrap(),
        &signer,
    )
    .unwrap();
    (signed.headers.pairs().to_vec(), signed.body)
}

async fn post(
    f: &Harness,
    path: &str,
    headers: &[(impl AsRef<str>, String)],
    body: Vec<u8>,
) -> WebhookResponse {
    let mut req = http::Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(name.as_ref(), value.as_str());
    }
    f.http(req.body(body).unwrap()).await
}

fn json_body(resp: &WebhookResponse) -> Value {
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&resp.body)))
}

#[tokio::test]
async fn a_valid_notification_pays_the_order_once() {
    let ts = TestStore::new().await.unwrap();
    seed_order(&ts).await;
    let f = Harness::start(super::function(), config(&ts))
        .await
        .unwrap();
    let (headers, body) = notification("wechatpay_public_key_private.pem");

    let resp = post(&f, "/payNotify", &headers, body.clone()).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{:?}", resp.body);
    assert!(resp.body.is_empty());
    let paid = order(&ts).await;
    // A physical good: paid, waiting to ship (fulfilled when it ships).
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["shipping"]["state"], "awaiting", "{paid}");
    assert_eq!(paid["transactionId"], "4200000000202611240001");
    let paid_at = paid["paidAt"].clone();
    assert_eq!(
        paid_at,
        json!(1_795_478_400),
        "success_time 2026-11-24T08:00:00+08:00"
    );

    // WeChat Pay redelivers until it sees a 2xx; the same notification again changes nothing.
    let again = post(&f, "/payNotify", &headers, body).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    assert_eq!(order(&ts).await, paid);
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_changes_nothing() {
    let ts = TestStore::new().await.unwrap();
    seed_order(&ts).await;
    let f = Harness::start(super::function(), config(&ts))
        .await
        .unwrap();
    let unpaid = order(&ts).await;
    let refused = |resp: &WebhookResponse, what: &str| {
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            json_body(resp),
            json!({"code": "FAIL", "message": "signature check failed"}),
            "{what}"
        );
    };

    // Signed now, by a key that is not WeChat Pay's (the vectors' `forged_signature` case).
    let (headers, body) = notification("unrelated_private_key.pem");
    refused(&post(&f, "/payNotify", &headers, body).await, "forged");

    // Signed by WeChat Pay, then the body changed (the vectors' `tampered_body` case).
    let (headers, body) = notification("wechatpay_public_key_private.pem");
    let tampered = String::from_utf8(body)
        .unwrap()
        .replacen("EV-HARNESS-0001", "EV-HARNESS-0002", 1)
        .into_bytes();
    refused(
        &post(&f, "/payNotify", &headers, tampered).await,
        "tampered",
    );

    // A WeChat Pay signature probe: never valid, not even Base64.
    let mut probe = headers.clone();
    for (name, value) in &mut probe {
        if name.eq_ignore_ascii_case("wechatpay-signature") {
            *value = "WECHATPAY/SIGNTEST/aGFybmVzcw==".into();
        }
    }
    let (_, body) = notification("wechatpay_public_key_private.pem");
    refused(&post(&f, "/payNotify", &probe, body).await, "probe");

    // No signature headers at all.
    let (_, body) = notification("wechatpay_public_key_private.pem");
    let resp = post(&f, "/payNotify", &[] as &[(&str, String)], body).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(&resp)["code"], "FAIL");

    assert_eq!(
        order(&ts).await,
        unpaid,
        "a refused notification changed the order"
    );
}

#[tokio::test]
async fn every_invalid_vector_notification_is_refused() {
    let ts = TestStore::new().await.unwrap();
    let f = Harness::start(super::function(), config(&ts))
        .await
        .unwrap();
    let cases = vector("notifications.json")["cases"]
        .as_array()
        .unwrap()
        .clone();
    let mut refused = 0;
    for case in cases.iter().filter(|c| c["expect"] == "reject") {
        let name = case["case"].as_str().unwrap();
        let headers: Vec<(String, String)> = case["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let body = case["body"].as_str().unwrap().as_bytes().to_vec();
        let resp = post(&f, "/payNotify", &headers, body).await;
        assert!(
            matches!(
                resp.status,
                StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST
            ),
            "{name}: {}",
            resp.status
        );
        assert_eq!(json_body(&resp)["code"], "FAIL", "{name}");
        refused += 1;
    }
    assert_eq!(refused, 8, "the vectors hold eight invalid notifications");
}

#[tokio::test]
async fn only_post_is_accepted() {
    let ts = TestStore::new().await.unwrap();
    let f = Harness::start(super::function(), config(&ts))
        .await
        .unwrap();
    let req = http::Request::builder()
        .method(Method::GET)
        .uri("/payNotify")
        .body(Vec::new())
        .unwrap();
    let resp = f.http(req).await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        json_body(&resp),
        json!({"code": "FAIL", "message": "POST only"})
    );
}
