//! The stand-ins against the real clients of `wemint`: WeChat Pay requests signed by
//! `PayClient` are accepted and its verification of our signed responses passes; a bad
//! merchant signature gets 401 SIGN_ERROR; notifications are retried on WeChat's schedule
//! (compressed) and each attempt verifies and decrypts; WeChat codes are single-use; the seed
//! import is idempotent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wemint::pay::v3::{
    ApiV3Key, JsapiOrder, MerchantSigner, Notification, PayClient, PayClientConfig, PayError,
    RsaSigningKey, SignatureHeaders, TradeState, Verifier, VerifyingKey,
};
use wemint::store::{Filter, FindOptions, collections};
use wemint_emulator::deliveries::{DELIVERIES, WECHATPAY_SCHEDULE};
use wemint_emulator::http::{Request, Response};
use wemint_emulator::seed::{DEMO_SEED, SeedFile};
use wemint_emulator::suite::{Suite, SuiteOptions};

async fn suite(dir: &tempfile::TempDir, retry_factor: f64) -> Arc<Suite> {
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    options.retry_factor = retry_factor;
    options.run_functions = false;
    options.seed_demo = false;
    Suite::start(options).await.expect("suite starts")
}

fn verifier(suite: &Suite) -> Verifier {
    let v = Verifier::new();
    v.add_public_key(
        &suite.keys.platform_key_id,
        VerifyingKey::from_der(&suite.keys.platform_public_der()).unwrap(),
    );
    v
}

fn pay_client(suite: &Suite, merchant_key_der: &[u8], notify_url: &str) -> PayClient {
    let signer = MerchantSigner::new(
        &suite.keys.mchid,
        &suite.keys.merchant_serial,
        RsaSigningKey::from_pkcs8_der(merchant_key_der).unwrap(),
    );
    let mut config = PayClientConfig::new(notify_url);
    config.base_url = suite.base_url();
    config.public_key_id = Some(suite.keys.platform_key_id.clone());
    PayClient::new(
        config,
        Arc::new(signer),
        verifier(suite),
        Arc::new(ApiV3Key::new(&suite.keys.apiv3_key).unwrap()),
    )
    .unwrap()
    .with_retry(wemint::outbound::Retry::none())
}

/// A merchant client with the suite's keys and a mug order `no` for dev user `user`.
fn mug_order(suite: &Suite, no: &str, user: &str) -> (PayClient, JsapiOrder) {
    let client = pay_client(
        suite,
        &suite.keys.merchant_private_der(),
        "https://example.com/payNotify",
    );
    let order = JsapiOrder::new(
        &suite.keys.appid,
        "陶瓷马克杯",
        no,
        9800,
        suite.keys.openid_for(user),
    );
    (client, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_client_round_trip_and_bad_signatures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(&dir, 0.001).await;
    let (client, order) = mug_order(&suite, "WM20261123A0001", "alice");
    // The client verifies our response signature (public-key mode) or fails.
    let prepay = client
        .jsapi_prepay(&order)
        .await
        .expect("prepay accepted and response verified");
    assert!(prepay.prepay_id.starts_with("wx"));
    let t = client
        .query_by_out_trade_no("WM20261123A0001")
        .await
        .unwrap();
    assert_eq!(t.trade_state, TradeState::NotPay);

    // Another merchant key: WeChat answers 401 SIGN_ERROR.
    let other = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let forged = pay_client(
        &suite,
        other.as_der().unwrap().as_ref(),
        "https://example.com/payNotify",
    );
    match forged.query_by_out_trade_no("WM20261123A0001").await {
        Err(PayError::Api(e)) => {
            assert_eq!(e.status, 401);
            assert_eq!(e.code, "SIGN_ERROR");
        }
        other => panic!("expected SIGN_ERROR, got {other:?}"),
    }

    // A tampered body under a valid header is refused too.
    let signer = MerchantSigner::new(
        &suite.keys.mchid,
        &suite.keys.merchant_serial,
        RsaSigningKey::from_pkcs8_der(&suite.keys.merchant_private_der()).unwrap(),
    );
    let now = suite.clock.now();
    let auth = signer
        .authorization(
            "POST",
            "/v3/pay/transactions/out-trade-no/WM20261123A0001/close",
            now,
            "NONCE123",
            br#"{"mchid":"1"}"#,
        )
        .unwrap();
    let res = reqwest::Client::new()
        .post(format!(
            "{}/v3/pay/transactions/out-trade-no/WM20261123A0001/close",
            suite.base_url()
        ))
        .header("authorization", auth)
        .header("user-agent", "test")
        .header("content-type", "application/json")
        .body(format!(r#"{{"mchid":"{}"}}"#, suite.keys.mchid))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The close itself, properly signed, answers 204 and the order is CLOSED.
    client.close("WM20261123A0001").await.expect("close");
    assert_eq!(
        client
            .query_by_out_trade_no("WM20261123A0001")
            .await
            .unwrap()
            .trade_state,
        TradeState::Closed
    );
    suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_retry_on_the_compressed_schedule_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let factor = 0.01; // 15 s → 150 ms
    let suite = suite(&dir, factor).await;

    // A notify endpoint that fails three times, then accepts; it checks every delivery.
    let received: Arc<Mutex<Vec<(Instant, String, String)>>> = Arc::default();
    let verifier = verifier(&suite);
    let apiv3 = Arc::new(ApiV3Key::new(&suite.keys.apiv3_key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/payNotify", listener.local_addr().unwrap());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    {
        let received = Arc::clone(&received);
        tokio::spawn(wemint_emulator::http::serve(
            listener,
            move |req: Request| {
                let (received, verifier, apiv3) =
                    (Arc::clone(&received), verifier.clone(), Arc::clone(&apiv3));
                async move {
                    let headers =
                        SignatureHeaders::from_header_map(&req.headers).expect("signature headers");
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    let parsed = wemint::pay::v3::parse_notification(
                        &verifier, &apiv3, &headers, &req.body, now,
                    )
                    .expect("verifies and decrypts");
                    let Notification::TransactionSuccess { id, transaction } = parsed else {
                        panic!("not a transaction: {parsed:?}")
                    };
                    assert_eq!(transaction.trade_state, TradeState::Success);
                    let mut r = received.lock().unwrap();
                    r.push((
                        Instant::now(),
                        id,
                        req.header("wechatpay-nonce").unwrap_or_default().to_owned(),
                    ));
                    if r.len() <= 3 {
                        Response::json(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &json!({"code": "FAIL", "message": "失败"}),
                        )
                    } else {
                        Response::empty(StatusCode::NO_CONTENT)
                    }
                }
            },
            stop_rx,
        ));
    }

    let client = pay_client(&suite, &suite.keys.merchant_private_der(), &notify_url);
    let order = JsapiOrder::new(
        &suite.keys.appid,
        "VIP",
        "WM20261123B0001",
        1800,
        suite.keys.openid_for("bob"),
    );
    client.jsapi_prepay(&order).await.unwrap();
    wemint_emulator::standins::wechat_pay::pay(&suite, "WM20261123B0001")
        .await
        .expect("pays once");
    assert!(
        wemint_emulator::standins::wechat_pay::pay(&suite, "WM20261123B0001")
            .await
            .is_err(),
        "a paid order cannot be paid again"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let docs = suite
            .store
            .find(
                DELIVERIES,
                &Filter::eq("ref", "WM20261123B0001"),
                &FindOptions::new(),
            )
            .await
            .unwrap();
        if docs.len() == 1 && docs[0]["state"] == "delivered" {
            break docs[0].clone();
        }
        assert!(Instant::now() < deadline, "not delivered in time: {docs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["ok"] == json!(true))
            .collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert_eq!(attempts[0]["status"], 500);

    let r = received.lock().unwrap().clone();
    assert_eq!(r.len(), 4);
    // Same notification id, fresh signature nonce per attempt.
    assert!(r.iter().all(|(_, id, _)| *id == r[0].1));
    let nonces: std::collections::HashSet<_> = r.iter().map(|(_, _, n)| n.clone()).collect();
    assert_eq!(nonces.len(), 4);
    // Gaps follow 15s/15s/30s × factor (never early).
    for (i, secs) in WECHATPAY_SCHEDULE.iter().take(3).enumerate() {
        let gap = r[i + 1].0 - r[i].0;
        let expected = Duration::from_secs_f64(*secs as f64 * factor);
        assert!(
            gap >= expected,
            "retry {} came after {gap:?}, expected at least {expected:?}",
            i + 1
        );
        assert!(
            gap < expected + Duration::from_millis(800),
            "retry {} too late: {gap:?}",
            i + 1
        );
    }

    // The paid transaction is visible to a query.
    let t = client
        .query_by_out_trade_no("WM20261123B0001")
        .await
        .unwrap();
    assert_eq!(t.trade_state, TradeState::Success);
    assert!(t.transaction_id.is_some());
    suite.shutdown().await;
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn post(url: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_codes_tokens_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(&dir, 0.001).await;
    let base = suite.base_url();
    let k = &suite.keys;
    let minted = post(&format!("{base}/dev/login"), json!({"user": "carol"})).await;
    let code = minted["code"].as_str().unwrap();
    let url = |code: &str, secret: &str| {
        format!(
            "{base}/sns/jscode2session?appid={}&secret={secret}&js_code={code}&grant_type=authorization_code",
            k.appid
        )
    };
    assert_eq!(get(&url(code, "wrong")).await["errcode"], 40125);
    let session = get(&url(code, &k.appsecret)).await;
    assert_eq!(session["openid"], json!(k.openid_for("carol")));
    assert!(
        session.get("errcode").is_none(),
        "success carries no errcode: {session}"
    );
    assert_eq!(session["session_key"].as_str().unwrap().len(), 24);
    assert_eq!(
        get(&url(code, &k.appsecret)).await["errcode"],
        40163,
        "a code works once"
    );
    assert_eq!(get(&url("nope", &k.appsecret)).await["errcode"], 40029);

    let token_req =
        json!({"grant_type": "client_credential", "appid": k.appid, "secret": k.appsecret});
    let t1 = post(&format!("{base}/cgi-bin/stable_token"), token_req.clone()).await;
    let t2 = post(&format!("{base}/cgi-bin/stable_token"), token_req).await;
    assert_eq!(
        t1["access_token"], t2["access_token"],
        "normal mode returns the same token"
    );
    assert!(t1["expires_in"].as_i64().unwrap() > 7000);
    assert_eq!(
        wemint_emulator::standins::wechat_api::counter(&suite, "stable_token").await,
        2
    );
    let token = t1["access_token"].as_str().unwrap();

    let check = |content: &str| json!({"content": content, "version": 2, "scene": 3, "openid": k.openid_for("carol")});
    let bad = post(
        &format!("{base}/wxa/msg_sec_check?access_token=forged"),
        check("hello"),
    )
    .await;
    assert_eq!(bad["errcode"], 40001);
    let pass = post(
        &format!("{base}/wxa/msg_sec_check?access_token={token}"),
        check("hello"),
    )
    .await;
    assert_eq!(pass["result"]["suggest"], "pass");
    let risky = post(
        &format!("{base}/wxa/msg_sec_check?access_token={token}"),
        check("best casino in town"),
    )
    .await;
    assert_eq!(risky["result"]["suggest"], "risky");
    assert_eq!(risky["errcode"], 0);
    let unknown_user = post(
        &format!("{base}/wxa/msg_sec_check?access_token={token}"),
        json!({"content": "x", "version": 2, "scene": 1, "openid": "oNobody"}),
    )
    .await;
    assert_eq!(unknown_user["errcode"], 40003);

    // xpay: pay_sig over uri&body with the AppKey; a wrong one is refused.
    let body =
        json!({"openid": k.openid_for("carol"), "env": 0, "order_id": "nope0001"}).to_string();
    let sig = wemint::wechat::session_signature(
        &k.xpay_appkey,
        format!("/xpay/query_order&{body}").as_bytes(),
    );
    let r = reqwest::Client::new()
        .post(format!(
            "{base}/xpay/query_order?access_token={token}&pay_sig=bad"
        ))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["errcode"], 268_490_003);
    let r = reqwest::Client::new()
        .post(format!(
            "{base}/xpay/query_order?access_token={token}&pay_sig={sig}"
        ))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["errcode"],
        268_490_002,
        "signature fine, order unknown"
    );
    suite.shutdown().await;
}

#[tokio::test]
async fn seed_import_is_idempotent_and_all_or_nothing() {
    let store = wemint::store::open("sqlite::memory:").await.unwrap();
    let seed = SeedFile::parse(DEMO_SEED.as_bytes()).unwrap();
    let first = seed.import(&store).await.unwrap();
    let snapshot = |store: Arc<dyn wemint::store::Store>| async move {
        let mut all = Vec::new();
        for c in [
            collections::PRODUCTS,
            collections::PLANS,
            collections::CONTENTS,
        ] {
            all.push(
                store
                    .find(c, &Filter::all_of([]), &FindOptions::new().sort_asc("_id"))
                    .await
                    .unwrap(),
            );
        }
        all
    };
    let before = snapshot(Arc::clone(&store)).await;
    let second = seed.import(&store).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        before,
        snapshot(Arc::clone(&store)).await,
        "a second import changes nothing"
    );
    assert_eq!(before[0].len(), seed.products.len());
    assert_eq!(
        before[0]
            .iter()
            .find(|p| p["_id"] == "mug-ceramic-350")
            .unwrap()["stock"],
        40
    );

    // A bad file writes nothing.
    let empty = wemint::store::open("sqlite::memory:").await.unwrap();
    let mut bad = seed.clone();
    bad.products[0].price_fen = wemint::domain::money::Fen::ZERO;
    assert!(bad.import(&empty).await.is_err());
    assert_eq!(
        empty
            .count(collections::PRODUCTS, &Filter::all_of([]))
            .await
            .unwrap(),
        0
    );

    // A changed definition replaces the old one (optional fields removed).
    let mut changed = seed.clone();
    changed.products[0].description = None;
    changed.import(&store).await.unwrap();
    let p = store
        .get(collections::PRODUCTS, &changed.products[0].sku)
        .await
        .unwrap()
        .unwrap();
    assert!(p.get("description").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wechat_client_works_against_the_stand_in() {
    use wemint::wechat::{
        Expiry, LinkRequest, MediaCheckRequest, MediaType, Scene, SubscribeMessage, Suggest,
        TextCheckRequest, UnlimitedCodeRequest, WechatClient, WechatConfig, WechatError,
    };
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(&dir, 0.001).await;
    let base = suite.base_url();
    let k = &suite.keys;
    let client = WechatClient::new(
        WechatConfig::new(&k.appid, &k.appsecret, Some(&base)),
        Arc::clone(&suite.store),
    )
    .unwrap();

    let code = post(&format!("{base}/dev/login"), json!({"user": "dave"})).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = client.code2session(&code).await.unwrap();
    assert_eq!(session.openid, k.openid_for("dave"));
    assert!(
        client
            .check_session_key(&session.openid, &session.session_key)
            .await
            .unwrap()
    );
    assert!(matches!(
        client.code2session(&code).await,
        Err(WechatError::Api { .. }) | Err(_)
    ));

    let text = client
        .msg_sec_check(&TextCheckRequest::new(
            "hello there",
            Scene::Forum,
            &session.openid,
        ))
        .await
        .unwrap();
    assert_eq!(text.verdict.suggest, Suggest::Pass);
    let risky = client
        .msg_sec_check(&TextCheckRequest::new(
            "赌博 网站",
            Scene::Forum,
            &session.openid,
        ))
        .await
        .unwrap();
    assert_eq!(risky.verdict.suggest, Suggest::Risky);
    let trace = client
        .media_check_async(&MediaCheckRequest {
            media_url: format!("{base}/storage/temp?fileId=x/risky-photo.png"),
            media_type: MediaType::Image,
            scene: Scene::Forum,
            openid: session.openid.clone(),
        })
        .await
        .unwrap();
    assert!(!trace.is_empty());
    let link = client
        .generate_url_link(&LinkRequest {
            path: Some("pages/shop/index".into()),
            query: Some("from=oa".into()),
            expiry: Expiry::InDays(30),
            env_version: None,
        })
        .await
        .unwrap();
    assert!(link.starts_with("https://wxaurl.cn/"));
    let scheme = client
        .generate_scheme(&LinkRequest {
            path: Some("pages/shop/index".into()),
            query: None,
            expiry: Expiry::InDays(30),
            env_version: None,
        })
        .await
        .unwrap();
    assert!(scheme.starts_with("weixin://dl/business/?t="));
    let image = client
        .get_unlimited_code(&UnlimitedCodeRequest::new(
            "ref=abc",
            Some("pages/shop/index"),
        ))
        .await
        .unwrap();
    assert_eq!(image.content_type, "image/png");
    assert!(image.bytes.starts_with(b"\x89PNG"));
    let msg = SubscribeMessage {
        touser: session.openid.clone(),
        template_id: "TPL_ORDER_PAID".into(),
        page: Some("pages/orders/index".into()),
        data: [("thing1".to_owned(), "陶瓷马克杯".to_owned())]
            .into_iter()
            .collect(),
        miniprogram_state: None,
        lang: None,
    };
    client.send_subscribe_message(&msg).await.unwrap();

    let phone_code = post(
        &format!("{base}/dev/phoneCode"),
        json!({"user": "dave", "phone": "13912345678"}),
    )
    .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let phone = client
        .phone_number(&phone_code, Some(&session.openid))
        .await
        .unwrap();
    assert_eq!(phone.pure_phone_number, "13912345678");
    // One stable_token fetch served every call: the client caches it in the store.
    assert_eq!(
        wemint_emulator::standins::wechat_api::counter(&suite, "stable_token").await,
        1
    );

    // The media verdict is pushed to /wxPush (no function here, so it is retried and recorded).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let docs = suite
            .store
            .find(
                DELIVERIES,
                &Filter::eq("ref", trace.as_str()),
                &FindOptions::new(),
            )
            .await
            .unwrap();
        if docs
            .first()
            .is_some_and(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()))
        {
            assert_eq!(docs[0]["event"], "wxa_media_check");
            assert_eq!(docs[0]["payload"]["result"]["suggest"], "risky");
            break;
        }
        assert!(Instant::now() < deadline, "no push attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_payment_and_the_xpay_client() {
    use wemint::pay::xpay::{
        AppKey, Env, Mode, OrderRef, OrderStatus, RefundRequest, SignData, XpayClient,
        virtual_payment,
    };
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(&dir, 0.001).await;
    let base = suite.base_url();
    let k = &suite.keys;
    // The user logs in (the stand-in remembers the session_key xpay's signature uses).
    let code = post(&format!("{base}/dev/login"), json!({"user": "erin"})).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = get(&format!(
        "{base}/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
        k.appid, k.appsecret
    ))
    .await;
    let session_key = session["session_key"].as_str().unwrap();
    let sign_data = SignData {
        offer_id: k.xpay_offer_id.clone(),
        buy_quantity: 1,
        env: Env::Production,
        currency_type: "CNY".into(),
        product_id: Some("vip-monthly".into()),
        goods_price: Some(1800),
        activity_selling_price: None,
        out_trade_no: "XP20261123000001".into(),
        attach: "order:1".into(),
    };
    let app_key = AppKey::new(k.xpay_appkey.clone());
    let params = virtual_payment(&sign_data, Mode::Goods, &app_key, session_key).unwrap();
    let params = serde_json::to_value(&params).unwrap();

    // A wrong user signature is refused; the right one pays (no user named: found by signature).
    let mut forged = params.clone();
    forged["signature"] = json!("00".repeat(32));
    let r = reqwest::Client::new()
        .post(format!("{base}/dev/pay"))
        .json(&json!({"channel": "xpay", "params": forged}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let paid = post(
        &format!("{base}/dev/pay"),
        json!({"channel": "xpay", "params": params}),
    )
    .await;
    assert_eq!(paid["ok"], true, "{paid}");

    let token = post(
        &format!("{base}/cgi-bin/stable_token"),
        json!({"grant_type": "client_credential", "appid": k.appid, "secret": k.appsecret}),
    )
    .await;
    let token = token["access_token"].as_str().unwrap();
    let client = XpayClient::new(&base, app_key, Env::Production)
        .unwrap()
        .with_retry(wemint::outbound::Retry::none());
    let order_ref = OrderRef::OrderId("XP20261123000001".into());
    let order = client
        .query_order(token, &k.openid_for("erin"), &order_ref)
        .await
        .unwrap();
    assert!(order.status().is_paid());
    assert_eq!((order.paid_fee, order.left_fee), (1800, 1800));
    client
        .notify_provide_goods(token, &order_ref)
        .await
        .unwrap();
    assert_eq!(
        client
            .query_order(token, &k.openid_for("erin"), &order_ref)
            .await
            .unwrap()
            .status(),
        OrderStatus::Delivered
    );
    let refund = RefundRequest {
        openid: k.openid_for("erin"),
        order: order_ref.clone(),
        refund_order_id: "XPR2026112301".into(),
        left_fee: 1800,
        refund_fee: 1800,
        biz_meta: String::new(),
        refund_reason: "0".into(),
        req_from: "1".into(),
    };
    let result = client.refund_order(token, &refund).await.unwrap();
    assert_eq!(result.pay_order_id, "XP20261123000001");
    assert!(
        client.refund_order(token, &refund).await.is_err(),
        "the same refund id refunds once"
    );
    let after = client
        .query_order(token, &k.openid_for("erin"), &order_ref)
        .await
        .unwrap();
    assert_eq!(after.status(), OrderStatus::Refunded);
    assert_eq!(after.left_fee, 0);
    suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_hooks_fail_or_delay_the_next_calls_then_the_stand_ins_answer_again() {
    use wemint::wechat::{ErrCode, WechatClient, WechatConfig};
    use wemint_emulator::standins::faults::{Fault, System};
    let dir = tempfile::tempdir().unwrap();
    let suite = suite(&dir, 0.001).await;
    let base = suite.base_url();
    let k = &suite.keys;
    let wechat = WechatClient::new(
        WechatConfig::new(&k.appid, &k.appsecret, Some(&base)),
        Arc::clone(&suite.store),
    )
    .unwrap();
    let code = || async {
        post(&format!("{base}/dev/login"), json!({"user": "erin"})).await["code"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // WeChat API: the next two code2Session calls answer errcode 40226, set over HTTP.
    let set = post(
        &format!("{base}/dev/faults"),
        json!({"system": "wechatApi", "path": "/sns/jscode2session", "count": 2,
            "errcode": 40226, "message": "high risk user"}),
    )
    .await;
    assert_eq!(set["faults"][0]["count"], 2, "{set}");
    for _ in 0..2 {
        let err = wechat.code2session(&code().await).await.unwrap_err();
        assert_eq!(err.errcode().map(ErrCode::code), Some(40226), "{err}");
    }
    let session = wechat.code2session(&code().await).await.unwrap();
    assert_eq!(session.openid, k.openid_for("erin"));
    assert!(
        get(&format!("{base}/dev/faults")).await["faults"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // WeChat Pay: one signed 500 SYSTEM_ERROR (the client verifies it), then a delayed answer.
    let (pay, order) = mug_order(&suite, "WM20261123F0001", "erin");
    suite.faults.inject(
        Fault::next(System::WechatPay, 1)
            .on("/v3/pay/transactions/jsapi")
            .code("SYSTEM_ERROR", "系统错误"),
    );
    match pay.jsapi_prepay(&order).await {
        Err(PayError::Api(e)) => assert_eq!((e.status, e.code.as_str()), (500, "SYSTEM_ERROR")),
        other => panic!("expected SYSTEM_ERROR, got {other:?}"),
    }
    suite
        .faults
        .inject(Fault::next(System::WechatPay, 1).delay_ms(300));
    let started = Instant::now();
    let prepay = pay
        .jsapi_prepay(&order)
        .await
        .expect("answered after the delay");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(prepay.prepay_id.starts_with("wx"));

    // Cleared faults no longer apply.
    suite
        .faults
        .inject(Fault::next(System::WechatApi, 5).errcode(-1, "system error"));
    let cleared = reqwest::Client::new()
        .delete(format!("{base}/dev/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert!(wechat.code2session(&code().await).await.is_ok());
    suite.shutdown().await;
}

/// `tcb/batchdownloadfile` as `wemint::cloud_files` calls it in production: the suite's own
/// temp URLs by default (they serve the file), CloudBase-shaped `https://` URLs when
/// `download_url_base` says so; another env or no token is refused as WeChat does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_download_file_answers_temp_urls_of_the_suite_env() {
    for base in [None, Some("https://dev-env.tcb.qcloud.la")] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SuiteOptions::standins_only(dir.path().join(".wemint"));
        options.download_url_base = base.map(str::to_owned);
        let suite = Suite::start(options).await.expect("suite starts");
        let url = suite.base_url();
        let k = &suite.keys;
        let token = post(
            &format!("{url}/cgi-bin/stable_token"),
            json!({"grant_type": "client_credential", "appid": k.appid, "secret": k.appsecret}),
        )
        .await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let file = format!("cloud://{}.bucket/ugc/o1/cat.jpg", k.env_id);
        let call = |env: String, token: String| {
            let body = json!({"env": env, "file_list": [{"fileid": file, "max_age": 600}]});
            let endpoint = format!("{url}/tcb/batchdownloadfile?access_token={token}");
            async move { post(&endpoint, body).await }
        };
        let reply = call(k.env_id.clone(), token.clone()).await;
        assert_eq!(reply["errcode"], 0, "{reply}");
        let entry = &reply["file_list"][0];
        assert_eq!(entry["fileid"], json!(file));
        assert_eq!(entry["status"], 0);
        let download = entry["download_url"].as_str().unwrap();
        match base {
            None => assert!(
                download.starts_with(&format!("{url}/storage/temp?")),
                "{download}"
            ),
            Some(b) => assert!(
                download.starts_with(&format!("{b}/ugc/o1/cat.jpg?sign=")),
                "{download}"
            ),
        }
        assert_eq!(call("other-env".into(), token).await["errcode"], -501_001);
        assert_eq!(
            call(k.env_id.clone(), "nope".into()).await["errcode"],
            40001
        );
        suite.shutdown().await;
    }
}
