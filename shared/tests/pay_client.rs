//! The v3 client against a local stand-in for WeChat Pay (hyper on 127.0.0.1:0).
//!
//! The stand-in checks every request's signature with the merchant public key and answers
//! with signed responses, a forged one, an unsigned one, a 5xx before success, and an error
//! body whose fields must be kept.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use wemint::clock::{Clock, FixedClock};
use wemint::outbound::{Retry, Sleeper};
use wemint::pay::FixedNonces;
use wemint::pay::v3::server::{MerchantIdentity, PlatformSigner};
use wemint::pay::v3::{
    ApiV3Key, JsapiOrder, MerchantSigner, PayClient, PayClientConfig, PayError,
    PlatformCertificate, RefundOrder, RefundStatus, RefundTarget, RsaSigningKey, TradeState,
    Verifier, VerifyError, VerifyingKey,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors/");
const NOW: i64 = 1_767_300_000;

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{VECTORS}{name}")).unwrap()
}

fn common() -> Value {
    serde_json::from_str(&read("common.json")).unwrap()
}

fn key(name: &str) -> RsaSigningKey {
    RsaSigningKey::from_pkcs8(&read(name)).unwrap()
}

/// What the stand-in saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    auth: Result<(), String>,
    accept: Option<String>,
    content_type: Option<String>,
    user_agent: Option<String>,
    wechatpay_serial: Option<String>,
}

struct StandIn {
    merchant: MerchantIdentity,
    signer: PlatformSigner,
    forger: PlatformSigner,
    /// Signs with the real platform key but announces a serial the client has never seen.
    rotated: PlatformSigner,
    seen: Mutex<Vec<Seen>>,
    hits: Mutex<HashMap<String, usize>>,
    clock: Arc<FixedClock>,
}

fn header(req: &Request<hyper::body::Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl StandIn {
    fn signed(
        &self,
        signer: &PlatformSigner,
        status: StatusCode,
        body: Vec<u8>,
    ) -> Response<Full<Bytes>> {
        let headers = signer
            .sign(
                &body,
                self.clock.now_unix(),
                "stand-in-nonce-0123456789abcdef",
            )
            .unwrap();
        let mut resp = Response::builder()
            .status(status)
            .header("Request-ID", "req-ok-1");
        for (k, v) in headers.pairs() {
            resp = resp.header(k, v);
        }
        resp.body(Full::new(Bytes::from(body))).unwrap()
    }

    fn plain(status: StatusCode, body: Value, request_id: &str) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header("Request-ID", request_id)
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let method = req.method().as_str().to_owned();
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let mut seen = Seen {
            method: method.clone(),
            target: target.clone(),
            auth: Ok(()),
            accept: header(&req, "accept"),
            content_type: header(&req, "content-type"),
            user_agent: header(&req, "user-agent"),
            wechatpay_serial: header(&req, "wechatpay-serial"),
        };
        let authorization = header(&req, "authorization").unwrap_or_default();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        seen.auth = self
            .merchant
            .verify_request(
                &authorization,
                &method,
                &target,
                &body,
                self.clock.now_unix(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string());
        let authorized = seen.auth.is_ok();
        self.seen.lock().unwrap().push(seen);
        if !authorized {
            return Ok(Self::plain(
                StatusCode::UNAUTHORIZED,
                json!({"code":"SIGN_ERROR","message":"签名错误"}),
                "req-401",
            ));
        }
        let hit = {
            let mut hits = self.hits.lock().unwrap();
            let n = hits.entry(format!("{method} {target}")).or_default();
            *n += 1;
            *n
        };
        let mchid = self.merchant.mchid.clone();
        let transaction = |no: &str, state: &str| {
            serde_json::to_vec(&json!({
                "appid": "wx7fe13309749792e0", "mchid": mchid, "out_trade_no": no,
                "transaction_id": "4200000000000000000000000001", "trade_type": "JSAPI",
                "trade_state": state, "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                "success_time": "2026-01-02T10:20:30+08:00", "payer": {"openid": "openid1"},
                "amount": {"total": 1990, "payer_total": 1990, "currency": "CNY", "payer_currency": "CNY"}
            }))
            .unwrap()
        };
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let resp = match (method.as_str(), path.as_str()) {
            ("POST", "/v3/pay/transactions/jsapi") => {
                let order: Value = serde_json::from_slice(&body).unwrap();
                if order["out_trade_no"] == "ORD_ALWAYS_DOWN" {
                    Self::plain(StatusCode::SERVICE_UNAVAILABLE, json!({"code":"SYSTEM_ERROR","message":"系统繁忙"}), "req-503")
                } else if hit == 1 {
                    Self::plain(StatusCode::INTERNAL_SERVER_ERROR, json!({"code":"SYSTEM_ERROR","message":"系统错误"}), "req-500")
                } else {
                    self.signed(&self.signer, StatusCode::OK, br#"{"prepay_id":"wx2026prepay0001"}"#.to_vec())
                }
            }
            ("GET", "/v3/pay/transactions/out-trade-no/ORD123456") => {
                self.signed(&self.signer, StatusCode::OK, transaction("ORD123456", "SUCCESS"))
            }
            ("GET", "/v3/pay/transactions/out-trade-no/ORD_FORGED") => {
                self.signed(&self.forger, StatusCode::OK, transaction("ORD_FORGED", "SUCCESS"))
            }
            ("GET", "/v3/pay/transactions/out-trade-no/ORD_NEWSERIAL") => {
                self.signed(&self.rotated, StatusCode::OK, transaction("ORD_NEWSERIAL", "SUCCESS"))
            }
            ("GET", "/v3/pay/transactions/out-trade-no/ORD_UNSIGNED") => Response::builder()
                .status(200)
                .body(Full::new(Bytes::from(transaction("ORD_UNSIGNED", "SUCCESS"))))
                .unwrap(),
            ("GET", "/v3/pay/transactions/id/4200000000000000000000000001") => {
                self.signed(&self.signer, StatusCode::OK, transaction("ORD123456", "SUCCESS"))
            }
            ("POST", "/v3/pay/transactions/out-trade-no/ORD123456/close") => {
                assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"mchid": mchid}));
                self.signed(&self.signer, StatusCode::NO_CONTENT, Vec::new())
            }
            ("POST", "/v3/refund/domestic/refunds") => Self::plain(
                StatusCode::BAD_REQUEST,
                json!({"code":"PARAM_ERROR","message":"参数错误","detail":{"field":"/amount/refund","value":100,"issue":"too much","location":"body"}}),
                "req-param-1",
            ),
            ("GET", "/v3/refund/domestic/refunds/RF1") => self.signed(
                &self.signer,
                StatusCode::OK,
                serde_json::to_vec(&json!({
                    "refund_id": "50000000000000000000000000001", "out_refund_no": "RF1",
                    "transaction_id": "4200000000000000000000000001", "out_trade_no": "ORD123456",
                    "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
                    "create_time": "2026-01-02T10:20:30+08:00", "status": "PROCESSING",
                    "amount": {"total": 1990, "refund": 100, "payer_total": 1990, "payer_refund": 100, "currency": "CNY"}
                }))
                .unwrap(),
            ),
            ("GET", "/v3/certificates") => {
                let v: Value = serde_json::from_str(&read("certificates_response.json")).unwrap();
                self.signed(&self.signer, StatusCode::OK, serde_json::to_vec(&v["response"]).unwrap())
            }
            _ => Self::plain(StatusCode::NOT_FOUND, json!({"code":"RESOURCE_NOT_EXISTS","message":"no route"}), "req-404"),
        };
        Ok(resp)
    }
}

async fn serve(state: Arc<StandIn>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| state.clone().handle(req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[derive(Default)]
struct NoSleep(Mutex<Vec<Duration>>);

impl Sleeper for NoSleep {
    fn sleep(
        &self,
        d: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.0.lock().unwrap().push(d);
        Box::pin(std::future::ready(()))
    }
}

struct Setup {
    client: PayClient,
    base_url: String,
    stand_in: Arc<StandIn>,
    sleeps: Arc<NoSleep>,
    clock: Arc<FixedClock>,
}

/// `public_key_mode`: the stand-in signs with the WeChat Pay public key (PUB_KEY_ID_…) and the
/// client knows only that key; otherwise it signs with the platform certificate key and the
/// client starts with no key at all (so it must download `/v3/certificates`).
async fn setup(public_key_mode: bool) -> Setup {
    let c = common();
    let mchid = c["mchid"].as_str().unwrap();
    let merchant_serial = c["merchant_serial_no"].as_str().unwrap();
    let (signer, forger) = if public_key_mode {
        let id = c["public_key_id"].as_str().unwrap();
        (
            PlatformSigner::new(id, key("keys/wechatpay_public_key_private.pem")),
            PlatformSigner::new(id, key("keys/unrelated_private_key.pem")),
        )
    } else {
        let serial = c["platform_serial"].as_str().unwrap();
        (
            PlatformSigner::new(serial, key("keys/platform_private_key.pem")),
            PlatformSigner::new(serial, key("keys/unrelated_private_key.pem")),
        )
    };
    let clock = Arc::new(FixedClock::new(NOW));
    let stand_in = Arc::new(StandIn {
        merchant: MerchantIdentity::from_pem(
            mchid,
            merchant_serial,
            &read("keys/merchant_public_key.pem"),
        )
        .unwrap(),
        signer,
        forger,
        rotated: PlatformSigner::new(
            "0123456789ABCDEF0123456789ABCDEF",
            key("keys/platform_private_key.pem"),
        ),
        seen: Mutex::default(),
        hits: Mutex::default(),
        clock: clock.clone(),
    });
    let base_url = serve(stand_in.clone()).await;
    let verifier = Verifier::new();
    let mut config = PayClientConfig::new("https://example.com/pay/notify");
    config.base_url = base_url.clone();
    if public_key_mode {
        let id = c["public_key_id"].as_str().unwrap();
        verifier.add_public_key(
            id,
            VerifyingKey::from_pem(&read("keys/wechatpay_public_key.pem")).unwrap(),
        );
        config.public_key_id = Some(id.to_owned());
    }
    let signer = Arc::new(MerchantSigner::new(
        mchid,
        merchant_serial,
        key("keys/merchant_private_key.pem"),
    ));
    let apiv3 = Arc::new(ApiV3Key::new(c["apiv3_key"].as_str().unwrap()).unwrap());
    let sleeps = Arc::new(NoSleep::default());
    let client = PayClient::new(config, signer, verifier, apiv3)
        .unwrap()
        .with_clock(clock.clone())
        .with_nonce(Arc::new(FixedNonces::new([
            "N1N1N1N1N1N1N1N1N1N1N1N1N1N1N1N1",
            "N2N2N2N2N2N2N2N2N2N2N2N2N2N2N2N2",
        ])))
        .with_retry(
            Retry::new(3, Duration::from_millis(100), Duration::from_secs(1))
                .with_sleeper(sleeps.clone()),
        );
    Setup {
        client,
        base_url,
        stand_in,
        sleeps,
        clock,
    }
}

fn order(no: &str) -> JsapiOrder {
    JsapiOrder::new(
        "wx7fe13309749792e0",
        "会员月卡 Premium monthly",
        no,
        1990,
        "openid1",
    )
}

#[tokio::test]
async fn public_key_mode_operations_are_signed_verified_and_retried() {
    let Setup {
        client,
        stand_in,
        sleeps,
        ..
    } = setup(true).await;

    // 500 first, then a signed success: retried once with backoff.
    let prepay = client.jsapi_prepay(&order("ORD123456")).await.unwrap();
    assert_eq!(prepay.prepay_id, "wx2026prepay0001");
    assert_eq!(sleeps.0.lock().unwrap().len(), 1);

    let params = client
        .request_payment("wx7fe13309749792e0", &prepay.prepay_id)
        .unwrap();
    assert_eq!(params.package, "prepay_id=wx2026prepay0001");
    assert_eq!(params.time_stamp, NOW.to_string());

    let t = client.query_by_out_trade_no("ORD123456").await.unwrap();
    assert_eq!(
        (t.trade_state, t.amount.unwrap().total),
        (TradeState::Success, Some(1990))
    );
    let t = client
        .query_by_transaction_id("4200000000000000000000000001")
        .await
        .unwrap();
    assert_eq!(t.out_trade_no, "ORD123456");
    client.close("ORD123456").await.unwrap();
    let r = client.query_refund("RF1").await.unwrap();
    assert_eq!((r.status, r.amount.refund), (RefundStatus::Processing, 100));

    // Every request carried a valid merchant signature and the mandatory headers.
    let seen = stand_in.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    for s in &seen {
        assert_eq!(s.auth, Ok(()), "{} {}", s.method, s.target);
        assert_eq!(s.accept.as_deref(), Some("application/json"));
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
        assert!(
            s.user_agent
                .as_deref()
                .is_some_and(|ua| ua.starts_with("wemint/"))
        );
        assert_eq!(
            s.wechatpay_serial.as_deref(),
            common()["public_key_id"].as_str()
        );
    }
    assert!(
        seen.iter()
            .any(|s| s.target == "/v3/pay/transactions/out-trade-no/ORD123456?mchid=1959139582")
    );
    assert!(!seen.iter().any(|s| s.target == "/v3/certificates"));
}

#[tokio::test]
async fn forged_and_unsigned_responses_are_refused() {
    let Setup { client, .. } = setup(true).await;
    match client.query_by_out_trade_no("ORD_FORGED").await {
        Err(PayError::Unverified {
            status: 200,
            source: VerifyError::BadSignature,
            ..
        }) => {}
        other => panic!("forged response accepted or wrong error: {other:?}"),
    }
    match client.query_by_out_trade_no("ORD_UNSIGNED").await {
        Err(PayError::Unverified {
            source: VerifyError::MissingHeader(_),
            ..
        }) => {}
        other => panic!("unsigned response accepted or wrong error: {other:?}"),
    }
}

#[tokio::test]
async fn error_bodies_are_kept_and_only_transient_errors_are_retried() {
    let Setup {
        client,
        stand_in,
        sleeps,
        ..
    } = setup(true).await;
    let refund = RefundOrder {
        target: RefundTarget::OutTradeNo("ORD123456".into()),
        out_refund_no: "RF1".into(),
        refund_fen: 100,
        total_fen: 1990,
        reason: Some("用户申请".into()),
        notify_url: None,
    };
    let PayError::Api(api) = client.refund(&refund).await.unwrap_err() else {
        panic!("expected Api error")
    };
    assert_eq!(
        (api.status, api.code.as_str(), api.message.as_str()),
        (400, "PARAM_ERROR", "参数错误")
    );
    assert_eq!(api.detail.as_ref().unwrap()["field"], "/amount/refund");
    assert_eq!(api.request_id.as_deref(), Some("req-param-1"));
    assert!(
        sleeps.0.lock().unwrap().is_empty(),
        "a 400 must not be retried"
    );

    // A persistent 503 is retried up to the bound, then surfaced with its fields.
    let err = client
        .jsapi_prepay(&order("ORD_ALWAYS_DOWN"))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.code(), Some("SYSTEM_ERROR"));
    let PayError::Api(api) = err else { panic!() };
    assert_eq!(api.request_id.as_deref(), Some("req-503"));
    assert_eq!(sleeps.0.lock().unwrap().len(), 2);
    let jsapi_hits = stand_in
        .hits
        .lock()
        .unwrap()
        .get("POST /v3/pay/transactions/jsapi")
        .copied();
    assert_eq!(jsapi_hits, Some(3));
    let before = stand_in.seen.lock().unwrap().len();
    let bad = JsapiOrder {
        total_fen: 0,
        ..order("ORD999999")
    };
    assert!(matches!(
        client.jsapi_prepay(&bad).await,
        Err(PayError::Validation(_))
    ));
    assert_eq!(stand_in.seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn certificate_mode_downloads_and_refreshes_platform_certificates() {
    let Setup {
        client,
        stand_in,
        clock,
        ..
    } = setup(false).await;
    assert_eq!(client.verifier().certificate_count(), 0);
    let t = client.query_by_out_trade_no("ORD123456").await.unwrap();
    assert_eq!(t.out_trade_no, "ORD123456");
    assert_eq!(client.verifier().certificate_count(), 1);
    let on_file = PlatformCertificate::from_pem(&read("keys/platform_certificate.pem")).unwrap();
    assert!(client.verifier().knows(&on_file.serial_no));

    let cert_hits = || {
        stand_in
            .hits
            .lock()
            .unwrap()
            .get("GET /v3/certificates")
            .copied()
    };
    client.query_by_out_trade_no("ORD123456").await.unwrap();
    assert_eq!(cert_hits(), Some(1), "no refresh inside the interval");
    clock.advance(24 * 3600);
    client.query_by_out_trade_no("ORD123456").await.unwrap();
    assert_eq!(cert_hits(), Some(2), "refreshed once the interval passed");

    // A forged response in certificate mode is still refused.
    assert!(matches!(
        client.query_by_out_trade_no("ORD_FORGED").await,
        Err(PayError::Unverified {
            source: VerifyError::BadSignature,
            ..
        })
    ));

    // An unknown serial triggers one out-of-schedule download, then is refused; a second one
    // within the minute does not download again.
    clock.advance(120);
    for _ in 0..2 {
        assert!(matches!(
            client.query_by_out_trade_no("ORD_NEWSERIAL").await,
            Err(PayError::Unverified {
                source: VerifyError::UnknownSerial(_),
                ..
            })
        ));
    }
    assert_eq!(cert_hits(), Some(3));
    assert!(stand_in.seen.lock().unwrap().iter().all(|s| s.auth.is_ok()));
}

/// Two instances (two clients, each against its own stand-in) over one store: downloads
/// caused by unknown serials are limited to one a minute across both, not one per instance.
#[tokio::test]
async fn unknown_serial_downloads_are_throttled_across_instances_sharing_a_store() {
    use wemint::store::Store;
    use wemint::store::sqlite::SqliteStore;

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    wemint::store::bootstrap(store.as_ref()).await.unwrap();
    let a = setup(false).await;
    let b = setup(false).await;
    let (clock_a, clock_b) = (a.clock.clone(), b.clock.clone());
    let client_a = a.client.with_shared_download_throttle(store.clone());
    let client_b = b.client.with_shared_download_throttle(store.clone());
    let downloads = || {
        [&a.stand_in, &b.stand_in].map(|s| {
            s.hits
                .lock()
                .unwrap()
                .get("GET /v3/certificates")
                .copied()
                .unwrap_or(0)
        })
    };
    let advance = |secs| {
        clock_a.advance(secs);
        clock_b.advance(secs);
    };
    // Each instance's first call downloads on schedule (not throttled: once a day).
    client_a.query_by_out_trade_no("ORD123456").await.unwrap();
    client_b.query_by_out_trade_no("ORD123456").await.unwrap();
    assert_eq!(downloads(), [1, 1]);

    advance(120);
    let refused = |r: Result<_, PayError>| {
        matches!(
            r,
            Err(PayError::Unverified {
                source: VerifyError::UnknownSerial(_),
                ..
            })
        )
    };
    // Instance A takes the minute's download; B, within the same minute, does not download.
    assert!(refused(
        client_a.query_by_out_trade_no("ORD_NEWSERIAL").await
    ));
    assert_eq!(downloads(), [2, 1]);
    assert!(refused(
        client_b.query_by_out_trade_no("ORD_NEWSERIAL").await
    ));
    assert!(!client_b.download_for_unknown_serial().await.unwrap());
    assert_eq!(downloads(), [2, 1], "B is throttled by A's download");

    // A minute later the next download is allowed, to one instance only.
    advance(61);
    assert!(client_b.download_for_unknown_serial().await.unwrap());
    assert!(!client_a.download_for_unknown_serial().await.unwrap());
    assert!(refused(
        client_a.query_by_out_trade_no("ORD_NEWSERIAL").await
    ));
    assert_eq!(downloads(), [2, 2]);
}

#[tokio::test]
async fn stand_in_notifications_round_trip_through_the_client() {
    use wemint::pay::v3::Notification;
    use wemint::pay::v3::SignatureHeaders;
    use wemint::pay::v3::server::{NotificationSpec, build_notification};

    let Setup { client, .. } = setup(true).await;
    let c = common();
    let apiv3 = ApiV3Key::new(c["apiv3_key"].as_str().unwrap()).unwrap();
    let signer = PlatformSigner::new(
        c["public_key_id"].as_str().unwrap(),
        key("keys/wechatpay_public_key_private.pem"),
    );
    let transaction = json!({
        "appid": "wx7fe13309749792e0", "mchid": "1959139582", "out_trade_no": "ORD123456",
        "transaction_id": "4200000000000000000000000001", "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "amount": {"total": 1990, "payer_total": 1990, "currency": "CNY", "payer_currency": "CNY"}
    });
    let spec = NotificationSpec {
        id: "EV-1",
        create_time: "2026-01-02T10:20:31+08:00",
        event_type: "TRANSACTION.SUCCESS",
        summary: "支付成功",
        original_type: "transaction",
        resource_nonce: "abcdefghijkl",
        timestamp: NOW,
        nonce: "n0n0n0n0n0n0n0n0n0n0n0n0n0n0n0n0",
    };
    let signed = build_notification(&spec, &transaction, &apiv3, &signer).unwrap();
    let pairs: Vec<(&str, String)> = signed.headers.pairs().to_vec();
    let headers =
        SignatureHeaders::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
    match client.parse_notification(&headers, &signed.body).unwrap() {
        Notification::TransactionSuccess { id, transaction } => {
            assert_eq!(id, "EV-1");
            assert_eq!(transaction.out_trade_no, "ORD123456");
        }
        other => panic!("{other:?}"),
    }
    // One changed byte and it is refused.
    let mut tampered = signed.body.clone();
    tampered[10] ^= 1;
    assert!(client.parse_notification(&headers, &tampered).is_err());
}

#[tokio::test]
async fn client_from_typed_settings() {
    let Setup { base_url, .. } = setup(true).await;
    let c = common();
    let config = wemint::config::Config::from_vars([
        ("WECHATPAY_MCHID", c["mchid"].as_str().unwrap().to_owned()),
        (
            "WECHATPAY_MERCHANT_SERIAL",
            c["merchant_serial_no"].as_str().unwrap().to_owned(),
        ),
        (
            "WECHATPAY_PRIVATE_KEY",
            read("keys/merchant_private_key.pem"),
        ),
        (
            "WECHATPAY_APIV3_KEY",
            c["apiv3_key"].as_str().unwrap().to_owned(),
        ),
        (
            "WECHATPAY_PUBLIC_KEY",
            read("keys/wechatpay_public_key.pem"),
        ),
        (
            "WECHATPAY_PUBLIC_KEY_ID",
            c["public_key_id"].as_str().unwrap().to_owned(),
        ),
        (
            "WECHATPAY_PLATFORM_CERTS",
            read("keys/platform_certificate.pem"),
        ),
        ("WECHATPAY_API_BASE", base_url),
        (
            "WECHATPAY_NOTIFY_URL",
            "https://example.com/pay/notify".to_owned(),
        ),
    ]);
    let settings = config.wechat_pay().unwrap();
    let client = PayClient::from_settings(&settings)
        .unwrap()
        .with_clock(Arc::new(FixedClock::new(NOW)));
    assert!(client.verifier().has_public_key());
    assert_eq!(client.verifier().certificate_count(), 1);
    let t = client.query_by_out_trade_no("ORD123456").await.unwrap();
    assert_eq!(t.mchid, "1959139582");
}
