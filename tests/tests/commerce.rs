//! Commerce end to end: the real `createOrder`, `payNotify` and `reconcile` binaries under the
//! SCF runtime emulator (plus `http` mode where concurrency is the point), one SQLite store file
//! shared by every process, and a local WeChat Pay stand-in that refuses any request whose
//! merchant signature does not verify and signs its answers and notifications with the WeChat
//! Pay public key material of the test vectors (`testdata/vectors`).
//!
//! Built by `cargo build --workspace --bins` (scripts/test.sh) before running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::identity::{DataKey, SessionClaims, SessionSigner};
use wemint::pay::v3::server::{
    MerchantIdentity, NotificationSpec, PlatformSigner, SignedNotification, build_notification,
};
use wemint::pay::v3::{ApiV3Key, RsaSigningKey, VerifyingKey, sign::pay_sign_message};
use wemint::store::{Filter, Store, Update, UpdateOptions, collections};
use wemint_e2e::{
    HttpInstance, RuntimeApi, SESSION_SECRET, ScfInstance, StandIn, StartOptions, VECTORS,
    fire_timer, function_binary, function_env, http,
};
use wemint_emulator::http::{Request, Response};

const DATA_KEY: [u8; 32] = *b"0123456789abcdef0123456789abcdef";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn vector(name: &str) -> String {
    std::fs::read_to_string(format!("{VECTORS}/{name}")).unwrap()
}

fn common() -> Value {
    serde_json::from_str(&vector("common.json")).unwrap()
}

fn field(name: &str) -> String {
    common()[name].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// The WeChat Pay stand-in.

struct PayStandIn {
    merchant: MerchantIdentity,
    signer: PlatformSigner,
    /// out_trade_no → the prepay request body.
    orders: Mutex<HashMap<String, Value>>,
    /// out_trade_no → paid amount (set by the test: "the user paid").
    paid: Mutex<HashMap<String, i64>>,
    prepays: AtomicU32,
    closes: Mutex<Vec<String>>,
    refunds: Mutex<Vec<Value>>,
    /// Requests refused because the merchant signature did not verify.
    bad_signatures: AtomicU32,
}

impl PayStandIn {
    fn signed(&self, status: StatusCode, body: Vec<u8>) -> Response {
        let headers = self
            .signer
            .sign(&body, now(), &wemint::pay::random_string(32))
            .unwrap();
        let mut resp = Response::bytes(status, "application/json", body)
            .with_header("Request-ID", "standin-1");
        for (k, v) in headers.pairs() {
            resp = resp.with_header(k, &v);
        }
        resp
    }

    fn json(&self, status: StatusCode, body: &Value) -> Response {
        self.signed(status, serde_json::to_vec(body).unwrap())
    }

    fn transaction(&self, no: &str) -> Option<Value> {
        let orders = self.orders.lock().unwrap();
        let order = orders.get(no)?;
        let paid = self.paid.lock().unwrap().get(no).copied();
        let mut tx = json!({
            "appid": order["appid"], "mchid": order["mchid"], "out_trade_no": no,
            "trade_type": "JSAPI", "trade_state": "NOTPAY", "trade_state_desc": "not paid",
        });
        if let Some(total) = paid {
            tx["trade_state"] = json!("SUCCESS");
            tx["transaction_id"] = json!(format!("4200{}", &no[2..]));
            tx["success_time"] = json!("2026-11-24T08:00:00+08:00");
            tx["payer"] = order["payer"].clone();
            tx["amount"] = json!({"total": total, "payer_total": total, "currency": "CNY",
                "payer_currency": "CNY"});
        }
        Some(tx)
    }

    fn handle(&self, req: &Request) -> Response {
        let method = req.method.clone();
        let target = req.path_and_query();
        let auth = req.header("authorization").unwrap_or_default().to_owned();
        let body = &req.body;
        if let Err(e) = self
            .merchant
            .verify_request(&auth, method.as_str(), &target, body, now())
        {
            self.bad_signatures.fetch_add(1, Ordering::SeqCst);
            return self.json(
                StatusCode::UNAUTHORIZED,
                &json!({"code": "SIGN_ERROR", "message": e.to_string()}),
            );
        }
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if method == Method::POST && path == "/v3/pay/transactions/jsapi" {
            let no = body["out_trade_no"].as_str().unwrap().to_owned();
            self.prepays.fetch_add(1, Ordering::SeqCst);
            self.orders.lock().unwrap().insert(no.clone(), body);
            self.json(StatusCode::OK, &json!({"prepay_id": format!("wx{no}")}))
        } else if let Some(rest) = path.strip_prefix("/v3/pay/transactions/out-trade-no/") {
            if let Some(no) = rest.strip_suffix("/close") {
                self.closes.lock().unwrap().push(no.to_owned());
                self.signed(StatusCode::NO_CONTENT, Vec::new())
            } else {
                match self.transaction(rest) {
                    Some(tx) => self.json(StatusCode::OK, &tx),
                    None => self.json(
                        StatusCode::NOT_FOUND,
                        &json!({"code": "ORDER_NOT_EXIST", "message": "no such order"}),
                    ),
                }
            }
        } else if method == Method::POST && path == "/v3/refund/domestic/refunds" {
            self.refunds.lock().unwrap().push(body.clone());
            self.json(
                StatusCode::OK,
                &json!({
                    "refund_id": format!("5030{}", body["out_refund_no"].as_str().unwrap()),
                    "out_refund_no": body["out_refund_no"], "out_trade_no": body["out_trade_no"],
                    "status": "PROCESSING",
                    "amount": {"total": body["amount"]["total"], "refund": body["amount"]["refund"]},
                }),
            )
        } else {
            self.json(
                StatusCode::NOT_FOUND,
                &json!({"code": "NOT_FOUND", "message": target}),
            )
        }
    }

    /// A notification signed with the WeChat Pay public key's private half, `age` seconds old.
    fn notification(
        &self,
        event: &str,
        kind: &str,
        resource: &Value,
        age: i64,
    ) -> SignedNotification {
        let key = ApiV3Key::new(&field("apiv3_key")).unwrap();
        let id = format!("EV-{}", wemint::pay::random_string(20));
        build_notification(
            &NotificationSpec {
                id: &id,
                create_time: "2026-11-24T08:00:00+08:00",
                event_type: event,
                summary: "ok",
                original_type: kind,
                resource_nonce: &wemint::pay::random_string(12),
                timestamp: now() - age,
                nonce: &wemint::pay::random_string(32),
            },
            resource,
            &key,
            &self.signer,
        )
        .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The world: store file, stand-in, functions.

struct World {
    store: Arc<dyn Store>,
    pay: Arc<PayStandIn>,
    _server: StandIn,
    env: Vec<(String, String)>,
    create: ScfInstance,
    notify: ScfInstance,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(name: &str) -> RsaSigningKey {
    RsaSigningKey::from_pkcs8(&vector(name)).unwrap()
}

fn token(openid: &str) -> String {
    let signer = SessionSigner::new(SESSION_SECRET.as_bytes(), 3600).unwrap();
    signer.issue(SessionClaims::new(openid, field("appid")), now())
}

async fn start(binary: &str, env: &[(String, String)]) -> ScfInstance {
    let options = StartOptions {
        api: RuntimeApi::Scf,
        env: env.to_vec(),
        time_limit_ms: 10_000,
        ..StartOptions::default()
    };
    ScfInstance::start(&function_binary(binary), options)
        .await
        .unwrap_or_else(|e| panic!("{binary}: {e}"))
}

async fn world(mug_stock: i64) -> World {
    let dir = std::env::temp_dir().join(format!(
        "wemint-commerce-e2e-{}-{}",
        std::process::id(),
        wemint::pay::random_string(8)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("store.db");
    let store_uri = format!("sqlite:{}", db.display());
    let store = wemint::store::open(&store_uri).await.unwrap();
    wemint::store::bootstrap(store.as_ref()).await.unwrap();
    for doc in [
        json!({"_id":"mug","sku":"mug","title":"Enamel mug","priceFen":2500,"kind":{"type":"physical"},"stock":mug_stock,"active":true}),
        json!({"_id":"guide","sku":"guide","title":"Brewing guide","priceFen":990,"kind":{"type":"content_unlock","content":"brew-guide"},"channel":"wxpay","active":true}),
        json!({"_id":"coins-100","sku":"coins-100","title":"100 coins","priceFen":1000,"kind":{"type":"coins","amount":100},"active":true}),
    ] {
        store.insert(collections::PRODUCTS, doc).await.unwrap();
    }
    let data_key = DataKey::from_bytes(&DATA_KEY).unwrap();
    for (openid, role) in [("o-alice", "user"), ("o-bob", "user"), ("o-admin", "admin")] {
        store
            .insert(
                collections::USERS,
                json!({"_id": openid, "openid": openid, "appid": field("appid"), "role": role,
                    "sessionKey": data_key.seal(openid, format!("sk-{openid}").as_bytes()).unwrap(),
                    "sessionKeyAt": now(), "createdAt": now(), "lastLoginAt": now()}),
            )
            .await
            .unwrap();
    }

    let pay = Arc::new(PayStandIn {
        merchant: MerchantIdentity::from_pem(
            &field("mchid"),
            &field("merchant_serial_no"),
            &vector("keys/merchant_public_key.pem"),
        )
        .unwrap(),
        signer: PlatformSigner::new(
            field("public_key_id"),
            key("keys/wechatpay_public_key_private.pem"),
        ),
        orders: Mutex::default(),
        paid: Mutex::default(),
        prepays: AtomicU32::new(0),
        closes: Mutex::default(),
        refunds: Mutex::default(),
        bad_signatures: AtomicU32::new(0),
    });
    let server = StandIn::serving(pay.clone(), PayStandIn::handle).await;
    let base = server.base();
    let mut env: Vec<(String, String)> = function_env()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "WEMINT_STORE" | "WECHATPAY_API_BASE" | "WECHATPAY_NOTIFY_URL" | "WEMINT_DATA_KEY"
            )
        })
        .collect();
    env.push(("WEMINT_STORE".into(), store_uri));
    env.push(("WECHATPAY_API_BASE".into(), base));
    env.push((
        "WECHATPAY_NOTIFY_URL".into(),
        "https://pay.example.com/payNotify".into(),
    ));
    env.push(("WEMINT_DATA_KEY".into(), base64_encode(&DATA_KEY)));
    let create = start("create-order", &env).await;
    let notify = start("pay-notify", &env).await;
    World {
        store,
        pay,
        _server: server,
        env,
        create,
        notify,
        _dir: TempDir(dir),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl World {
    async fn call(&self, openid: &str, action: &str, data: Value) -> Value {
        let mut event = data;
        event["action"] = json!(action);
        event["token"] = json!(token(openid));
        self.create.invoke_json(&event).await.unwrap()
    }

    async fn buy(&self, openid: &str, request: &str, items: Value) -> Value {
        let out = self
            .call(
                openid,
                "create",
                json!({"clientRequestId": request, "items": items}),
            )
            .await;
        assert_eq!(out["ok"], true, "{out}");
        out["data"].clone()
    }

    /// Delivers a notification to payNotify as a CloudBase HTTP access event.
    async fn deliver(&self, n: &SignedNotification) -> Value {
        deliver_to(&self.notify, &n.body, &headers_of(n)).await
    }

    async fn order(&self, id: &str) -> Value {
        self.store
            .get(collections::ORDERS, id)
            .await
            .unwrap()
            .unwrap()
    }

    /// The user pays `total` for order `no` and WeChat Pay notifies payNotify; returns the
    /// paid transaction and payNotify's reply.
    async fn pay(&self, no: &str, total: i64, payer: &str) -> (Value, Value) {
        let resource = self.paid_resource(no, total, payer);
        let n = self
            .pay
            .notification("TRANSACTION.SUCCESS", "transaction", &resource, 0);
        let reply = self.deliver(&n).await;
        (resource, reply)
    }

    fn paid_resource(&self, no: &str, total: i64, payer: &str) -> Value {
        self.pay.paid.lock().unwrap().insert(no.to_owned(), total);
        let mut tx = self.pay.transaction(no).unwrap();
        tx["amount"]["total"] = json!(total);
        tx["payer"] = json!({"openid": payer});
        tx
    }
}

/// The JSON body of an HTTP access reply (base64 or not).
fn body_json(reply: &Value) -> Value {
    let body = reply["body"].as_str().unwrap_or_default();
    let bytes = if reply["isBase64Encoded"] == true {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    } else {
        body.as_bytes().to_vec()
    };
    serde_json::from_slice(&bytes).unwrap()
}

fn headers_of(n: &SignedNotification) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = n
        .headers
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    h.push(("Content-Type".into(), "application/json".into()));
    h
}

async fn deliver_to(f: &ScfInstance, body: &[u8], headers: &[(String, String)]) -> Value {
    let headers: serde_json::Map<String, Value> =
        headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let event = json!({
        "httpMethod": "POST", "path": "/payNotify", "headers": headers,
        "body": String::from_utf8(body.to_vec()).unwrap(), "isBase64Encoded": false,
    });
    f.invoke_json(&event).await.unwrap()
}

async fn entitlements(store: &Arc<dyn Store>, openid: &str) -> Vec<Value> {
    store
        .find(
            collections::ENTITLEMENTS,
            &Filter::eq("openid", openid),
            &wemint::store::FindOptions::new(),
        )
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn physical_and_virtual_purchases_are_granted_by_the_verified_notification_only() {
    let w = world(10).await;
    // Physical: the client's prices are ignored, the server prices from the catalog.
    let data = w
        .buy(
            "o-alice",
            "checkout-1",
            json!([{"sku": "mug", "quantity": 2, "priceFen": 1, "unitPriceFen": 1}]),
        )
        .await;
    let order = &data["order"];
    let no = order["outTradeNo"].as_str().unwrap().to_owned();
    assert_eq!(order["totalFen"], 5000);
    assert_eq!(order["status"], "created");
    assert_eq!(w.pay.orders.lock().unwrap()[&no]["amount"]["total"], 5000);
    assert!(w.pay.orders.lock().unwrap()[&no]["time_expire"].is_string());
    // wx.requestPayment parameters, RSA-signed with the merchant key.
    let params = &data["payment"]["params"];
    assert_eq!(params["package"], format!("prepay_id=wx{no}"));
    let message = pay_sign_message(
        &field("appid"),
        params["timeStamp"].as_str().unwrap(),
        params["nonceStr"].as_str().unwrap(),
        params["package"].as_str().unwrap(),
    );
    let sig = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(params["paySign"].as_str().unwrap())
            .unwrap()
    };
    let merchant = VerifyingKey::from_pem(&vector("keys/merchant_public_key.pem")).unwrap();
    assert!(merchant.verify(message.as_bytes(), &sig));
    // The same checkout again: same order, no second prepay.
    let again = w
        .buy(
            "o-alice",
            "checkout-1",
            json!([{"sku": "mug", "quantity": 2}]),
        )
        .await;
    assert_eq!(again["order"]["id"], order["id"]);
    assert_eq!(w.pay.prepays.load(Ordering::SeqCst), 1);

    let resource = w.paid_resource(&no, 5000, "o-alice");
    let n = w
        .pay
        .notification("TRANSACTION.SUCCESS", "transaction", &resource, 0);
    let reply = w.deliver(&n).await;
    assert_eq!(reply["statusCode"], 204, "{reply}");
    let got = w
        .call("o-alice", "get", json!({"orderId": order["id"]}))
        .await;
    // Paid and waiting to ship: physical goods are fulfilled when they ship.
    assert_eq!(got["data"]["order"]["status"], "paid", "{got}");
    assert_eq!(
        got["data"]["order"]["shipping"]["state"], "awaiting",
        "{got}"
    );
    assert_eq!(
        w.store
            .get(collections::PRODUCTS, "mug")
            .await
            .unwrap()
            .unwrap()["stock"],
        8
    );

    // Virtual goods sold through WeChat Pay (per-product override): notification → entitlement.
    let data = w
        .buy(
            "o-alice",
            "checkout-2",
            json!([{"sku": "guide", "quantity": 1}]),
        )
        .await;
    assert_eq!(data["order"]["channel"], "wxpay");
    assert!(
        entitlements(&w.store, "o-alice").await.is_empty(),
        "nothing before payment"
    );
    let no = data["order"]["outTradeNo"].as_str().unwrap().to_owned();
    let (_, reply) = w.pay(&no, 990, "o-alice").await;
    assert_eq!(reply["statusCode"], 204, "{reply}");
    let ents = entitlements(&w.store, "o-alice").await;
    assert_eq!(ents.len(), 1);
    assert_eq!(
        (ents[0]["sku"].as_str(), ents[0]["content"].as_str()),
        (Some("guide"), Some("brew-guide"))
    );

    // Virtual goods by default: virtual payment parameters signed with the AppKey and the
    // buyer's session_key; nothing is granted until the delivery push / query says paid.
    let data = w
        .buy(
            "o-alice",
            "checkout-3",
            json!([{"sku": "coins-100", "quantity": 3}]),
        )
        .await;
    let params = &data["payment"]["params"];
    assert_eq!(data["payment"]["channel"], "xpay");
    assert_eq!(params["mode"], "short_series_goods");
    let sign_data = params["signData"].as_str().unwrap();
    let sd: Value = serde_json::from_str(sign_data).unwrap();
    assert_eq!(
        (
            sd["productId"].as_str(),
            sd["buyQuantity"].as_i64(),
            sd["goodsPrice"].as_i64()
        ),
        (Some("coins-100"), Some(3), Some(1000))
    );
    assert_eq!(sd["outTradeNo"], data["order"]["outTradeNo"]);
    assert_eq!(
        params["signature"],
        wemint::pay::xpay::user_signature("sk-o-alice", sign_data)
    );
    let app_key = wemint::pay::xpay::AppKey::new("e2e-xpay-appkey");
    assert_eq!(
        params["paySig"],
        wemint::pay::xpay::pay_sig(&app_key, "requestVirtualPayment", sign_data)
    );
    assert_eq!(entitlements(&w.store, "o-alice").await.len(), 1);
    assert_eq!(w.pay.bad_signatures.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_same_notification_delivered_50_times_concurrently_grants_once() {
    let w = world(10).await;
    let data = w
        .buy("o-bob", "c", json!([{"sku": "guide", "quantity": 1}]))
        .await;
    let no = data["order"]["outTradeNo"].as_str().unwrap().to_owned();
    let resource = w.paid_resource(&no, 990, "o-bob");
    let n = w
        .pay
        .notification("TRANSACTION.SUCCESS", "transaction", &resource, 0);
    // Two more SCF instances and one HTTP-mode instance (which serves requests concurrently)
    // share the store with the first.
    let extra = [
        start("pay-notify", &w.env).await,
        start("pay-notify", &w.env).await,
    ];
    let env: Vec<(&str, &str)> = w
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let http_fn = HttpInstance::start(&function_binary("pay-notify"), &env).unwrap();
    let headers = headers_of(&n);
    let url = http_fn.url("/payNotify");
    let mut scf_calls = Vec::new();
    let mut http_calls = Vec::new();
    for i in 0..50 {
        let body = n.body.clone();
        let headers = headers.clone();
        match i % 5 {
            0 => scf_calls.push((0, body, headers)),
            1 => scf_calls.push((1, body, headers)),
            2 => scf_calls.push((2, body, headers)),
            _ => http_calls.push((body, headers)),
        }
    }
    let instances = [&w.notify, &extra[0], &extra[1]];
    let scf = futures_join(scf_calls.iter().map(|(i, body, headers)| {
        let f = instances[*i];
        async move {
            deliver_to(f, body, headers).await["statusCode"]
                .as_i64()
                .unwrap()
        }
    }));
    let via_http = futures_join(http_calls.iter().map(|(body, headers)| {
        let url = url.clone();
        async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            http(Method::POST, &url, &h, Bytes::from(body.clone()))
                .await
                .status
                .as_u16() as i64
        }
    }));
    let (a, b) = tokio::join!(scf, via_http);
    assert_eq!(a.len() + b.len(), 50);
    assert!(a.iter().chain(b.iter()).all(|s| *s == 204), "{a:?} {b:?}");
    let order = w.order(data["order"]["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "fulfilled");
    let ents = entitlements(&w.store, "o-bob").await;
    assert_eq!(ents.len(), 1);
    let grants = ents[0]["orders"].as_object().unwrap();
    assert_eq!(grants.len(), 1, "granted once");
    let events = w
        .store
        .count(collections::PAYMENT_EVENTS, &Filter::All)
        .await
        .unwrap();
    assert_eq!(events, 1, "one event, redeliveries counted on it");
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    join_all(futures.map(Box::pin).collect()).await
}

async fn join_all<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futures.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    Poll::Ready(v) => outputs[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.unwrap()).collect()
}

#[tokio::test]
async fn forged_stale_tampered_and_mismatched_notifications_change_nothing() {
    let w = world(10).await;
    let data = w
        .buy("o-bob", "c", json!([{"sku": "guide", "quantity": 1}]))
        .await;
    let id = data["order"]["id"].as_str().unwrap().to_owned();
    let no = data["order"]["outTradeNo"].as_str().unwrap().to_owned();
    let resource = w.paid_resource(&no, 990, "o-bob");

    // Forged: signed with a key that is not WeChat Pay's, under WeChat Pay's key id.
    let forger = PayStandIn {
        signer: PlatformSigner::new(
            field("public_key_id"),
            key("keys/unrelated_private_key.pem"),
        ),
        merchant: w.pay.merchant.clone(),
        orders: Mutex::default(),
        paid: Mutex::default(),
        prepays: AtomicU32::new(0),
        closes: Mutex::default(),
        refunds: Mutex::default(),
        bad_signatures: AtomicU32::new(0),
    };
    let forged = forger.notification("TRANSACTION.SUCCESS", "transaction", &resource, 0);
    let reply = w.deliver(&forged).await;
    assert_eq!(reply["statusCode"], 401, "{reply}");
    assert_eq!(body_json(&reply)["code"], "FAIL");

    // Stale: genuine signature, 10 minutes old (replay).
    let stale = w
        .pay
        .notification("TRANSACTION.SUCCESS", "transaction", &resource, 600);
    assert_eq!(w.deliver(&stale).await["statusCode"], 401);

    // Tampered: one byte of the signed body changed.
    let mut tampered = w
        .pay
        .notification("TRANSACTION.SUCCESS", "transaction", &resource, 0);
    let text = String::from_utf8(tampered.body.clone())
        .unwrap()
        .replace("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESs");
    tampered.body = text.into_bytes();
    assert_eq!(w.deliver(&tampered).await["statusCode"], 401);

    let order = w.order(&id).await;
    assert_eq!(order["status"], "created");
    assert!(entitlements(&w.store, "o-bob").await.is_empty());
    assert_eq!(
        w.store
            .count(collections::PAYMENT_EVENTS, &Filter::All)
            .await
            .unwrap(),
        0
    );

    // Genuine but for less than the order total: held for review, nothing granted.
    let mut short = resource.clone();
    short["amount"]["total"] = json!(1);
    short["amount"]["payer_total"] = json!(1);
    let reply = w
        .deliver(
            &w.pay
                .notification("TRANSACTION.SUCCESS", "transaction", &short, 0),
        )
        .await;
    assert_eq!(reply["statusCode"], 204);
    let order = w.order(&id).await;
    assert_eq!(order["status"], "review");
    assert!(order["reviewReason"].as_str().unwrap().contains("paid"));
    assert!(entitlements(&w.store, "o-bob").await.is_empty());
}

#[tokio::test]
async fn another_users_order_is_not_readable_and_admin_actions_are_refused() {
    let w = world(10).await;
    let data = w
        .buy("o-alice", "c", json!([{"sku": "mug", "quantity": 1}]))
        .await;
    let id = data["order"]["id"].clone();
    for action in ["get", "cancel"] {
        let out = w.call("o-bob", action, json!({"orderId": id})).await;
        assert_eq!(out["error"]["code"], "ORDER_NOT_FOUND", "{action}: {out}");
    }
    let out = w.call("o-bob", "list", json!({})).await;
    assert_eq!(out["data"]["orders"], json!([]));
    let out = w
        .call("o-bob", "refund", json!({"orderId": id, "refundNo": "R1"}))
        .await;
    assert_eq!(out["error"]["code"], "FORBIDDEN");
    let out = w.call("o-bob", "search", json!({})).await;
    assert_eq!(out["error"]["code"], "FORBIDDEN");
    // Without a session at all.
    let out = w
        .create
        .invoke_json(&json!({"action": "get", "orderId": id}))
        .await
        .unwrap();
    assert_eq!(out["error"]["code"], "UNAUTHENTICATED");
    // The owner cancels: closed at WeChat Pay, stock back.
    let out = w.call("o-alice", "cancel", json!({"orderId": id})).await;
    assert_eq!(out["data"]["order"]["status"], "closed", "{out}");
    assert_eq!(
        w.store
            .get(collections::PRODUCTS, "mug")
            .await
            .unwrap()
            .unwrap()["stock"],
        10
    );
    assert_eq!(w.pay.closes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn refund_round_trip() {
    let w = world(10).await;
    let data = w
        .buy("o-alice", "c", json!([{"sku": "mug", "quantity": 2}]))
        .await;
    let id = data["order"]["id"].as_str().unwrap().to_owned();
    let no = data["order"]["outTradeNo"].as_str().unwrap().to_owned();
    w.pay(&no, 5000, "o-alice").await;

    let out = w
        .call(
            "o-admin",
            "refund",
            json!({"orderId": id, "refundNo": "RF-1", "amountFen": 2000, "reason": "damaged"}),
        )
        .await;
    assert_eq!(out["data"]["refund"]["status"], "processing", "{out}");
    let again = w
        .call(
            "o-admin",
            "refund",
            json!({"orderId": id, "refundNo": "RF-1", "amountFen": 2000}),
        )
        .await;
    assert_eq!(again["data"]["refund"]["refundNo"], "RF-1");
    assert_eq!(w.pay.refunds.lock().unwrap().len(), 1, "one refund request");
    let sent = w.pay.refunds.lock().unwrap()[0].clone();
    assert_eq!(
        (
            sent["amount"]["refund"].as_i64(),
            sent["amount"]["total"].as_i64()
        ),
        (Some(2000), Some(5000))
    );
    let out = w
        .call(
            "o-admin",
            "refund",
            json!({"orderId": id, "refundNo": "RF-2", "amountFen": 3001}),
        )
        .await;
    assert_eq!(out["error"]["code"], "REFUND_EXCEEDS_PAID");
    assert_eq!(w.order(&id).await["status"], "refunding");

    let refund = json!({
        "mchid": field("mchid"), "out_trade_no": no, "transaction_id": format!("4200{}", &no[2..]),
        "out_refund_no": "RF-1", "refund_id": "5030RF-1", "refund_status": "SUCCESS",
        "success_time": "2026-11-24T08:05:00+08:00", "user_received_account": "balance",
        "amount": {"total": 5000, "refund": 2000, "payer_total": 5000, "payer_refund": 2000},
    });
    let n = w.pay.notification("REFUND.SUCCESS", "refund", &refund, 0);
    assert_eq!(w.deliver(&n).await["statusCode"], 204);
    assert_eq!(
        w.deliver(&n).await["statusCode"],
        204,
        "redelivery acknowledged"
    );
    let order = w.order(&id).await;
    assert_eq!(
        (
            order["status"].as_str(),
            order["refundedFen"].as_i64(),
            order["refundingFen"].as_i64()
        ),
        (Some("partially_refunded"), Some(2000), Some(0))
    );
    let got = w.call("o-alice", "get", json!({"orderId": id})).await;
    assert_eq!(got["data"]["order"]["refundedFen"], 2000);
}

#[tokio::test]
async fn a_paid_order_whose_notification_was_lost_is_fulfilled_by_reconciliation() {
    let w = world(10).await;
    let paid = w
        .buy("o-alice", "a", json!([{"sku": "guide", "quantity": 1}]))
        .await;
    let unpaid = w
        .buy("o-bob", "b", json!([{"sku": "mug", "quantity": 3}]))
        .await;
    let paid_no = paid["order"]["outTradeNo"].as_str().unwrap().to_owned();
    w.pay.paid.lock().unwrap().insert(paid_no, 990); // paid at WeChat Pay, no notification
    // Time passes: both orders are past the quiet period, the unpaid one past its expiry.
    for (doc, age) in [(&paid, 120), (&unpaid, 3600)] {
        let id = doc["order"]["id"].as_str().unwrap();
        w.store
            .update_one(
                collections::ORDERS,
                &Filter::id(id),
                &Update::new()
                    .set("createdAt", now() - age)
                    .set("expiresAt", now() - age + 1800),
                UpdateOptions::default(),
            )
            .await
            .unwrap();
    }
    let reconcile = start("reconcile", &w.env).await;
    let out = fire_timer(&reconcile, "every-minute").await;
    assert_eq!(
        (out["paid"].as_i64(), out["closed"].as_i64()),
        (Some(1), Some(1)),
        "{out}"
    );
    assert_eq!(
        w.order(paid["order"]["id"].as_str().unwrap()).await["status"],
        "fulfilled"
    );
    assert_eq!(entitlements(&w.store, "o-alice").await.len(), 1);
    assert_eq!(
        w.order(unpaid["order"]["id"].as_str().unwrap()).await["status"],
        "closed"
    );
    assert_eq!(
        w.store
            .get(collections::PRODUCTS, "mug")
            .await
            .unwrap()
            .unwrap()["stock"],
        10
    );
    // A second run finds nothing to do.
    let out = fire_timer(&reconcile, "every-minute").await;
    assert_eq!(
        (out["paid"].as_i64(), out["closed"].as_i64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn stock_never_goes_negative_under_32_concurrent_orders_for_the_last_items() {
    let w = world(3).await;
    let env: Vec<(&str, &str)> = w
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let a = HttpInstance::start(&function_binary("create-order"), &env).unwrap();
    let b = HttpInstance::start(&function_binary("create-order"), &env).unwrap();
    let calls = (0..32).map(|i| {
        let url = if i % 2 == 0 {
            a.url("/create")
        } else {
            b.url("/create")
        };
        let auth = format!("Bearer {}", token(&format!("o-buyer-{i}")));
        async move {
            let body =
                json!({"clientRequestId": "last-items", "items": [{"sku": "mug", "quantity": 1}]});
            http(
                Method::POST,
                &url,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            )
            .await
            .json()
        }
    });
    let replies = futures_join(calls).await;
    let ok = replies.iter().filter(|r| r["ok"] == true).count();
    let out = replies
        .iter()
        .filter(|r| r["error"]["code"] == "OUT_OF_STOCK")
        .count();
    assert_eq!((ok, out), (3, 29), "{replies:?}");
    assert_eq!(
        w.store
            .get(collections::PRODUCTS, "mug")
            .await
            .unwrap()
            .unwrap()["stock"],
        0
    );
}

const DAY: i64 = 86_400;

/// Seeds `vip` and `vip-pro` (one tier up, twice the price), both sold through WeChat Pay, and
/// Alice's `vip` subscription started `days_in` days ago.
async fn seed_plans(w: &World, days_in: i64) -> i64 {
    let t = now();
    for (id, tier, price) in [("vip", 1, 1800), ("vip-pro", 2, 3600)] {
        w.store
            .insert(
                collections::PLANS,
                json!({"_id": id, "id": id, "title": id, "tier": tier, "periodDays": 30,
                    "priceFen": price}),
            )
            .await
            .unwrap();
        w.store
            .insert(
                collections::PRODUCTS,
                json!({"_id": format!("{id}-wx"), "sku": format!("{id}-wx"), "title": format!("{id} month"),
                    "priceFen": price, "kind": {"type": "membership", "plan": id},
                    "channel": "wxpay", "active": true}),
            )
            .await
            .unwrap();
    }
    let (start, end) = (t - days_in * DAY, t - days_in * DAY + 30 * DAY);
    w.store
        .insert(
            collections::SUBSCRIPTIONS,
            json!({"_id": "o-alice", "subscriber": "o-alice", "plan": "vip",
                "segments": [{"plan": "vip", "start": start, "end": end}],
                "renewPlan": "vip", "appliedOrders": ["seed"], "periodEndAt": end, "version": 1}),
        )
        .await
        .unwrap();
    end
}

#[tokio::test]
async fn an_upgrade_is_quoted_bought_and_applied_once_through_the_real_functions() {
    let w = world(10).await;
    let end = seed_plans(&w, 6).await;
    let gated = start("gated-content", &w.env).await;
    let ask = |action: &str, data: Value| {
        let mut event = data;
        event["action"] = json!(action);
        event["token"] = json!(token("o-alice"));
        event
    };

    // gatedContent quotes: 24 of 30 days left, 2880 for vip-pro minus 1440 unused vip.
    let out = gated
        .invoke_json(&ask("changePlan", json!({"plan": "vip-pro"})))
        .await
        .unwrap();
    assert_eq!(out["ok"], true, "{out}");
    let quote = &out["data"]["quote"];
    assert_eq!(
        (
            out["data"]["change"].as_str(),
            out["data"]["applied"].as_bool()
        ),
        (Some("upgrade"), Some(false))
    );
    let amount = quote["amountFen"].as_i64().unwrap();
    assert!((1439..=1441).contains(&amount), "prorated: {amount}");
    assert_eq!(quote["periodEndAt"], end);
    let checkout = out["data"]["checkout"]["upgrade"].clone();
    assert_eq!(checkout, json!({"plan": "vip-pro", "scope": "user"}));

    // createOrder sells it through the plan's product at the prorated amount.
    let created = w
        .call(
            "o-alice",
            "create",
            json!({"clientRequestId": "up-1", "upgrade": checkout}),
        )
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let order = created["data"]["order"].clone();
    let id = order["id"].as_str().unwrap().to_owned();
    let no = order["outTradeNo"].as_str().unwrap().to_owned();
    let total = order["totalFen"].as_i64().unwrap();
    assert!(
        (amount - 1..=amount).contains(&total),
        "{total} vs {amount}"
    );
    assert_eq!(order["upgrade"]["plan"], "vip-pro");
    assert_eq!(order["upgrade"]["until"], end);
    assert_eq!(created["data"]["payment"]["channel"], "wxpay");
    let prepaid = w.pay.orders.lock().unwrap()[&no].clone();
    assert_eq!(
        prepaid["amount"]["total"], total,
        "WeChat Pay asked for the amount"
    );
    assert!(prepaid["description"].as_str().unwrap().contains("vip-pro"));
    let replay = w
        .call(
            "o-alice",
            "create",
            json!({"clientRequestId": "up-1", "upgrade": {"plan": "vip-pro"}}),
        )
        .await;
    assert_eq!(replay["data"]["order"]["id"], id.as_str());

    // Nothing changes before the payment; the verified notification, delivered three times,
    // moves the rest of the period once.
    assert_eq!(
        w.store
            .get(collections::SUBSCRIPTIONS, "o-alice")
            .await
            .unwrap()
            .unwrap()["version"],
        1
    );
    let resource = w.paid_resource(&no, total, "o-alice");
    let n = w
        .pay
        .notification("TRANSACTION.SUCCESS", "transaction", &resource, 0);
    for _ in 0..3 {
        assert_eq!(w.deliver(&n).await["statusCode"], 204);
    }
    assert_eq!(w.order(&id).await["status"], "fulfilled");
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "o-alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub["periodEndAt"], end, "no day added or lost");
    assert_eq!(sub["appliedOrders"], json!(["seed", id]));
    let segments = sub["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2, "{sub}");
    assert_eq!(
        (segments[0]["plan"].as_str(), segments[1]["plan"].as_str()),
        (Some("vip"), Some("vip-pro"))
    );
    assert_eq!(segments[0]["end"], segments[1]["start"]);
    assert_eq!(segments[1]["end"], end);

    let ent = gated
        .invoke_json(&ask("entitlements", json!({})))
        .await
        .unwrap();
    assert_eq!(ent["data"]["subscription"]["plan"], "vip-pro", "{ent}");
    assert_eq!(ent["data"]["subscription"]["renewPlan"], "vip-pro");

    // On vip-pro now: a second upgrade is refused before any order is stored.
    let again = w
        .call(
            "o-alice",
            "create",
            json!({"clientRequestId": "up-2", "upgrade": {"plan": "vip-pro"}}),
        )
        .await;
    assert_eq!(again["error"]["code"], "PLAN_CHANGE_INVALID", "{again}");
    let bob = w
        .call(
            "o-bob",
            "create",
            json!({"clientRequestId": "up-3", "upgrade": {"plan": "vip-pro"}}),
        )
        .await;
    assert_eq!(bob["error"]["code"], "SUBSCRIPTION_NOT_FOUND", "{bob}");
}

#[tokio::test]
async fn a_full_refund_notification_takes_the_content_back() {
    let w = world(10).await;
    let data = w
        .buy("o-alice", "g", json!([{"sku": "guide", "quantity": 1}]))
        .await;
    let id = data["order"]["id"].as_str().unwrap().to_owned();
    let no = data["order"]["outTradeNo"].as_str().unwrap().to_owned();
    let (resource, _) = w.pay(&no, 990, "o-alice").await;
    let granted = entitlements(&w.store, "o-alice").await;
    assert_eq!(granted.len(), 1);
    assert!(granted[0]["revokedAt"].is_null());

    let out = w
        .call(
            "o-admin",
            "refund",
            json!({"orderId": id, "refundNo": "RF-GUIDE", "reason": "not as described"}),
        )
        .await;
    assert_eq!(out["data"]["refund"]["amountFen"], 990, "{out}");
    assert!(
        entitlements(&w.store, "o-alice").await[0]["revokedAt"].is_null(),
        "nothing is taken back before the money is"
    );
    let refund = json!({
        "mchid": field("mchid"), "out_trade_no": no, "transaction_id": format!("4200{}", &no[2..]),
        "out_refund_no": "RF-GUIDE", "refund_id": "5030RF-GUIDE", "refund_status": "SUCCESS",
        "success_time": "2026-11-24T08:05:00+08:00", "user_received_account": "balance",
        "amount": {"total": 990, "refund": 990, "payer_total": 990, "payer_refund": 990},
    });
    let n = w.pay.notification("REFUND.SUCCESS", "refund", &refund, 0);
    for _ in 0..2 {
        assert_eq!(w.deliver(&n).await["statusCode"], 204);
    }
    let order = w.order(&id).await;
    assert_eq!(
        (order["status"].as_str(), order["grantsRevoked"].as_bool()),
        (Some("refunded"), Some(true))
    );
    let ent = &entitlements(&w.store, "o-alice").await[0];
    assert!(ent["revokedAt"].is_i64(), "{ent}");
    // The payment notification delivered again grants nothing back.
    w.deliver(
        &w.pay
            .notification("TRANSACTION.SUCCESS", "transaction", &resource, 0),
    )
    .await;
    assert!(entitlements(&w.store, "o-alice").await[0]["revokedAt"].is_i64());
}

#[tokio::test]
async fn checkouts_are_rate_limited_per_buyer() {
    let w = world(10).await;
    let cart = json!({"clientRequestId": "same", "items": [{"sku": "guide", "quantity": 1}]});
    for _ in 0..20 {
        let out = w.call("o-bob", "create", cart.clone()).await;
        assert_eq!(out["ok"], true, "{out}");
    }
    let limited = w.call("o-bob", "create", cart.clone()).await;
    assert_eq!(limited["error"]["code"], "RATE_LIMITED", "{limited}");
    assert!(limited["error"]["retryAfterSecs"].as_i64().unwrap() > 0);
    let other = w.call("o-alice", "create", cart).await;
    assert_eq!(other["ok"], true, "another buyer is not limited: {other}");
    assert_eq!(
        w.pay.prepays.load(Ordering::SeqCst),
        2,
        "one prepay per order"
    );
}

#[tokio::test]
async fn a_refund_made_in_the_merchant_console_is_recorded_from_its_notification() {
    let w = world(10).await;
    let data = w
        .buy("o-alice", "c", json!([{"sku": "mug", "quantity": 2}]))
        .await;
    let id = data["order"]["id"].as_str().unwrap().to_owned();
    let no = data["order"]["outTradeNo"].as_str().unwrap().to_owned();
    w.pay(&no, 5000, "o-alice").await;
    // wemint never asked for this refund number: the merchant refunded in the console.
    let refund = json!({
        "mchid": field("mchid"), "out_trade_no": no, "transaction_id": format!("4200{}", &no[2..]),
        "out_refund_no": "CONSOLE-1", "refund_id": "5030CONSOLE-1", "refund_status": "SUCCESS",
        "success_time": "2026-11-24T08:05:00+08:00", "user_received_account": "balance",
        "amount": {"total": 5000, "refund": 5000, "payer_total": 5000, "payer_refund": 5000},
    });
    let n = w.pay.notification("REFUND.SUCCESS", "refund", &refund, 0);
    assert_eq!(w.deliver(&n).await["statusCode"], 204);
    let order = w.order(&id).await;
    assert_eq!(
        (
            order["status"].as_str(),
            order["refundedFen"].as_i64(),
            order["refundingFen"].as_i64()
        ),
        (Some("refunded"), Some(5000), Some(0)),
        "{order}"
    );
    let out = w
        .call(
            "o-admin",
            "refund",
            json!({"orderId": id, "refundNo": "RF-9"}),
        )
        .await;
    assert!(
        out["error"]["code"].is_string(),
        "nothing left to refund: {out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real time: the real `realtime` binary (HTTP mode) on the same store as the money path.

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A socket of `openid` to the realtime instance, past its `welcome`.
async fn socket(rt: &HttpInstance, openid: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{}/", rt.addr).into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(openid)).parse().unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(rt.addr).await.unwrap();
    let (mut s, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(frame(&mut s).await["type"], "welcome");
    s
}

/// The next text frame as JSON (a missing one fails after 10 s instead of hanging).
async fn frame(s: &mut Socket) -> Value {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), s.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = next {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn send(s: &mut Socket, v: Value) {
    use futures_util::SinkExt as _;
    s.send(tokio_tungstenite::tungstenite::Message::text(v.to_string()))
        .await
        .unwrap();
}

/// Every event received until the `pong` answering a ping sent now.
async fn until_pong(s: &mut Socket) -> Vec<Value> {
    send(s, json!({"op": "ping"})).await;
    let mut out = Vec::new();
    loop {
        let f = frame(s).await;
        match f["type"].as_str() {
            Some("pong") => return out,
            Some("events") => out.extend(f["events"].as_array().unwrap().iter().cloned()),
            _ => out.push(f),
        }
    }
}

#[tokio::test]
async fn the_checkout_socket_hears_order_paid_once_and_a_stranger_is_refused() {
    let w = world(10).await;
    let rt = realtime(&w);
    // Without a session: no socket.
    let plain = http(
        Method::GET,
        &format!("http://{}/", rt.addr),
        &[("connection", "upgrade"), ("upgrade", "websocket")],
        Bytes::new(),
    )
    .await;
    assert_eq!(plain.status, StatusCode::UPGRADE_REQUIRED);

    let data = w
        .buy("o-bob", "rt", json!([{"sku": "guide", "quantity": 1}]))
        .await;
    let id = data["order"]["id"].as_str().unwrap().to_owned();
    let no = data["order"]["outTradeNo"].as_str().unwrap().to_owned();
    let topic = format!("order:{id}");

    // Alice may not follow Bob's order.
    let mut alice = socket(&rt, "o-alice").await;
    send(
        &mut alice,
        json!({"op": "subscribe", "topics": [topic, "orders"]}),
    )
    .await;
    let reply = frame(&mut alice).await;
    assert_eq!(reply["topics"], json!(["orders"]), "{reply}");
    assert_eq!(reply["refused"][0]["code"], "FORBIDDEN");

    // Bob's checkout follows it, then pays; WeChat Pay notifies three times.
    let mut checkout = socket(&rt, "o-bob").await;
    send(&mut checkout, json!({"op": "subscribe", "topics": [topic]})).await;
    assert_eq!(frame(&mut checkout).await["topics"], json!([topic]));
    let resource = w.paid_resource(&no, 990, "o-bob");
    let n = w
        .pay
        .notification("TRANSACTION.SUCCESS", "transaction", &resource, 0);
    for _ in 0..3 {
        assert_eq!(w.deliver(&n).await["statusCode"], 204);
    }
    let first = frame(&mut checkout).await;
    assert_eq!(first["type"], "events", "{first}");
    let mut events: Vec<Value> = first["events"].as_array().unwrap().clone();
    events.extend(until_pong(&mut checkout).await);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "order.paid");
    assert_eq!(events[0]["orderId"], json!(id));
    assert_eq!(w.order(&id).await["status"], "fulfilled");
    // Nothing of Bob's reached Alice.
    assert!(until_pong(&mut alice).await.is_empty());
}

/// The realtime instance on the world's store, polling fast.
fn realtime(w: &World) -> HttpInstance {
    let mut env: Vec<(&str, &str)> = w
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("WEMINT_REALTIME_POLL_MS", "20"));
    HttpInstance::start(&function_binary("realtime"), &env).unwrap()
}

/// `openid` buys a mug and WeChat Pay notifies its payment; returns the order id.
async fn paid_mug(w: &World, openid: &str, request: &str) -> String {
    let data = w
        .buy(openid, request, json!([{"sku": "mug", "quantity": 1}]))
        .await;
    let no = data["order"]["outTradeNo"].as_str().unwrap();
    let (_, reply) = w.pay(no, 2500, openid).await;
    assert_eq!(reply["statusCode"], 204, "{reply}");
    data["order"]["id"].as_str().unwrap().to_owned()
}

/// Events of `socket` until one is about `order` (the ones before it included).
async fn until_order(socket: &mut Socket, order: &str) -> Vec<Value> {
    let mut out = Vec::new();
    while !out.iter().any(|e: &Value| e["orderId"] == order) {
        let f = frame(socket).await;
        if f["type"] == "events" {
            out.extend(f["events"].as_array().unwrap().iter().cloned());
        }
    }
    out
}

fn order_ids(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["orderId"].as_str().unwrap_or("-"))
        .collect()
}

#[tokio::test]
async fn after_a_drop_the_socket_resumes_and_the_missed_payments_arrive_once_in_order() {
    let w = world(10).await;
    let rt = realtime(&w);
    let mut socket = super_socket(&rt, "o-bob", json!({"topics": ["orders"]})).await;
    let first = paid_mug(&w, "o-bob", "d1").await;
    let seen = until_order(&mut socket, &first).await;
    assert_eq!(order_ids(&seen), [first.as_str()]);
    let last = seen[0]["seq"].as_i64().unwrap();
    // The socket drops (the phone locks); meanwhile two more payments, and one of Alice's.
    drop(socket);
    let second = paid_mug(&w, "o-bob", "d2").await;
    paid_mug(&w, "o-alice", "d3").await;
    let third = paid_mug(&w, "o-bob", "d4").await;
    // Reconnected from the last seq handled: the missed ones, once, in order, then live ones.
    let mut socket = super_socket(&rt, "o-bob", json!({"topics": ["orders"], "after": last})).await;
    let fourth = paid_mug(&w, "o-bob", "d5").await;
    let mut after = until_order(&mut socket, &fourth).await;
    after.extend(until_pong(&mut socket).await);
    assert_eq!(
        order_ids(&after),
        [second.as_str(), third.as_str(), fourth.as_str()],
        "{after:?}"
    );
    let seqs: Vec<i64> = after.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs[0] > last && seqs.windows(2).all(|p| p[0] < p[1]),
        "{seqs:?}"
    );
    assert!(after.iter().all(|e| e["type"] == "order.paid"));
}

/// A socket of `openid` subscribed with `subscribe` (topics, after), past the reply.
async fn super_socket(rt: &HttpInstance, openid: &str, subscribe: Value) -> Socket {
    super_socket_with(rt, &token(openid), subscribe).await
}

async fn super_socket_with(rt: &HttpInstance, token: &str, subscribe: Value) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{}/", rt.addr).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(rt.addr).await.unwrap();
    let (mut s, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(frame(&mut s).await["type"], "welcome");
    let mut message = subscribe.clone();
    message["op"] = json!("subscribe");
    send(&mut s, message).await;
    let reply = frame(&mut s).await;
    assert_eq!(reply["topics"], subscribe["topics"], "{reply}");
    s
}

/// The real `login` function (team actions) on the world's store.
async fn login(w: &World) -> ScfInstance {
    start("login", &w.env).await
}

async fn team_call(f: &ScfInstance, token: &str, action: &str, data: Value) -> Value {
    let mut event = data;
    event["action"] = json!(action);
    event["token"] = json!(token);
    let out = f.invoke_json(&event).await.unwrap();
    assert_eq!(out["ok"], true, "{action}: {out}");
    out["data"].clone()
}

/// An `editNotes` based on `version`.
async fn edit_notes(f: &ScfInstance, token: &str, version: i64, text: &str) -> Value {
    team_call(
        f,
        token,
        "editNotes",
        json!({"version": version, "text": text}),
    )
    .await
}

/// Alice's tenant with Bob in it: (tenant id, Alice's token, Bob's token), both active in it.
async fn team(login: &ScfInstance) -> (String, String, String) {
    let created = team_call(
        login,
        &token("o-alice"),
        "createTenant",
        json!({"name": "Tea shop"}),
    )
    .await;
    let tenant = created["tenant"]["id"].as_str().unwrap().to_owned();
    let alice = created["token"].as_str().unwrap().to_owned();
    team_call(
        login,
        &alice,
        "invite",
        json!({"openid": "o-bob", "role": "member"}),
    )
    .await;
    let switched = team_call(
        login,
        &token("o-bob"),
        "switchTenant",
        json!({"tenantId": tenant}),
    )
    .await;
    let bob = switched["token"].as_str().unwrap().to_owned();
    (tenant, alice, bob)
}

/// Events of `socket` until one of `kind` (the ones before it included).
async fn until_kind(socket: &mut Socket, kind: &str) -> Vec<Value> {
    let mut out = Vec::new();
    while !out.iter().any(|e: &Value| e["type"] == kind) {
        let f = frame(socket).await;
        match f["type"].as_str() {
            Some("events") => out.extend(f["events"].as_array().unwrap().iter().cloned()),
            _ => out.push(f),
        }
    }
    out
}

#[tokio::test]
async fn a_removed_member_stops_receiving_the_tenants_events() {
    let w = world(10).await;
    let rt = realtime(&w);
    let login = login(&w).await;
    let (tenant, alice, bob) = team(&login).await;
    let topic = format!("tenant:{tenant}");
    let mut alice_page = super_socket_with(&rt, &alice, json!({"topics": [topic]})).await;
    let mut bob_page = super_socket_with(&rt, &bob, json!({"topics": [topic]})).await;

    edit_notes(&login, &alice, 0, "v1").await;
    let seen = until_kind(&mut bob_page, "tenant.notes_changed").await;
    assert_eq!(seen.last().unwrap()["data"]["text"], "v1");

    let removed = team_call(&login, &alice, "removeMember", json!({"openid": "o-bob"})).await;
    assert_eq!(removed["removed"], true);
    let seen = until_kind(&mut bob_page, "tenant.member_removed").await;
    assert_eq!(seen.last().unwrap()["data"]["openid"], "o-bob");
    assert_eq!(
        frame(&mut bob_page).await,
        json!({"type": "revoked", "topic": topic, "code": "FORBIDDEN"})
    );
    // Bob's token still names the tenant; the store says otherwise.
    let mut event = json!({"action": "editNotes", "version": 1, "text": "bob's"});
    event["token"] = json!(bob);
    let refused = login.invoke_json(&event).await.unwrap();
    assert_eq!(refused["error"]["code"], "FORBIDDEN", "{refused}");
    edit_notes(&login, &alice, 1, "v2").await;
    // Alice's page hears the removal and v2; Bob's hears nothing more.
    let mut alice_seen = until_kind(&mut alice_page, "tenant.member_removed").await;
    while !alice_seen.iter().any(|e| e["data"]["text"] == "v2") {
        alice_seen.extend(until_kind(&mut alice_page, "tenant.notes_changed").await);
    }
    assert!(
        until_pong(&mut bob_page).await.is_empty(),
        "nothing after the removal"
    );
    // And he cannot subscribe again.
    send(&mut bob_page, json!({"op": "subscribe", "topics": [topic]})).await;
    let reply = frame(&mut bob_page).await;
    assert_eq!(reply["refused"][0]["code"], "FORBIDDEN", "{reply}");
}

#[tokio::test]
async fn two_members_edit_the_same_note_at_once_and_exactly_one_wins() {
    let w = world(10).await;
    let rt = realtime(&w);
    let login_a = login(&w).await;
    let login_b = login(&w).await;
    let (tenant, alice, bob) = team(&login_a).await;
    let topic = format!("tenant:{tenant}");
    let mut pages = vec![
        super_socket_with(&rt, &alice, json!({"topics": [topic]})).await,
        super_socket_with(&rt, &bob, json!({"topics": [topic]})).await,
    ];
    // Both opened version 0 and save at once, each through its own instance.
    let (a, b) = tokio::join!(
        edit_notes(&login_a, &alice, 0, "alice's"),
        edit_notes(&login_b, &bob, 0, "bob's"),
    );
    let (winner, loser) = match (a["saved"].as_bool(), b["saved"].as_bool()) {
        (Some(true), Some(false)) => (a, b),
        (Some(false), Some(true)) => (b, a),
        other => panic!("exactly one wins: {other:?} {a} {b}"),
    };
    assert_eq!(loser["conflict"], true);
    assert_eq!(
        loser["notes"], winner["notes"],
        "the conflict returns the current notes"
    );
    assert_eq!(winner["notes"]["version"], 1);
    for page in &mut pages {
        let seen = until_kind(page, "tenant.notes_changed").await;
        let last = seen.last().unwrap();
        assert_eq!(last["data"]["text"], winner["notes"]["text"]);
        assert_eq!(last["data"]["version"], 1);
        // One change only: the loser wrote nothing.
        assert!(until_pong(page).await.is_empty());
    }
}
