//! Security regressions of the deployed binaries (issue 17, items 1, 2, 3, 7 and 13): the real
//! `wxPush`, `reconcile` and `login` under the SCF runtime emulator, pushes sealed exactly as
//! WeChat seals them, a WeChat stand-in answering `query_order`, and one SQLite file shared
//! with the test.
//!
//! Built by `cargo build --workspace --bins` (scripts/test.sh) before running.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::store::{Store, collections};
use wemint::wechat::{PushCrypto, PushFormat, SealedPush, Stamp};
use wemint_e2e::{HttpInstance, SESSION_SECRET, ScfInstance, StandIn, function_binary, http};
use wemint_emulator::http::{Request, Response};

const APPID: &str = "wxe2esec000000001";
const TOKEN: &str = "e2e-sec-push-token";
const EAK: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const BUYER: &str = "oSecBuyer";

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// What `reconcile` and `login` need to start: a store, sessions, platform identity.
fn callable_env() -> Vec<(String, String)> {
    [
        ("WEMINT_STORE", "sqlite::memory:"),
        ("WEMINT_SESSION_SECRET", SESSION_SECRET),
        (
            "WEMINT_DATA_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("WEMINT_TRUST_PLATFORM_IDENTITY", "cloudbase-event"),
        ("WECHAT_APPID", APPID),
        ("WECHAT_APPSECRET", "e2e-sec-app-secret"),
        ("WECHAT_API_BASE", "http://127.0.0.1:9"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or_default())
        .unwrap_or_default()
}

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// WeChat as wxPush sees it: the access token and `query_order`, which says paid only for the
/// orders the test paid.
#[derive(Default)]
struct Wechat {
    paid: Mutex<HashSet<String>>,
    queries: AtomicU64,
}

fn wechat(state: &Wechat, req: &Request) -> Response {
    match req.path.as_str() {
        "/cgi-bin/stable_token" => Response::json(
            StatusCode::OK,
            &json!({"access_token": "e2e-sec-token", "expires_in": 7200}),
        ),
        "/xpay/query_order" => {
            state.queries.fetch_add(1, Ordering::SeqCst);
            let body: Value = req.json().unwrap_or(Value::Null);
            let id = body["order_id"].as_str().unwrap_or_default().to_owned();
            let paid = state.paid.lock().unwrap().contains(&id);
            let fee = if paid { 600 } else { 0 };
            Response::json(
                StatusCode::OK,
                &json!({"errcode": 0, "errmsg": "ok", "order": {
                    "order_id": id, "status": if paid { 2 } else { 0 }, "order_fee": 600,
                    "paid_fee": fee, "left_fee": fee, "paid_time": if paid { now() } else { 0 },
                    "wx_order_id": "X1", "wxpay_order_id": "4200000001", "order_type": 0}}),
            )
        }
        "/xpay/notify_provide_goods" => {
            Response::json(StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}))
        }
        other => Response::not_found(other),
    }
}

/// A temporary SQLite file shared by the function and the test; removed on drop.
struct Db(std::path::PathBuf);

impl Db {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wemint-e2e-sec-{tag}-{}-{}",
            std::process::id(),
            next()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn uri(&self) -> String {
        format!("sqlite:{}", self.0.join("wemint.db").display())
    }

    async fn store(&self) -> Arc<dyn Store> {
        wemint::store::open(&self.uri()).await.unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// wxPush under the SCF runtime API with a safe-mode key and production virtual payment.
struct Push {
    f: ScfInstance,
    db: Db,
    wechat: Arc<Wechat>,
    _server: StandIn,
}

impl Push {
    async fn start(tag: &str) -> Self {
        let wechat = Arc::new(Wechat::default());
        let server = StandIn::serving(wechat.clone(), self::wechat).await;
        let db = Db::new(tag);
        // The store exists (with its indexes) before the function and the test use it.
        wemint::store::bootstrap(db.store().await.as_ref())
            .await
            .unwrap();
        let env = [
            ("WEMINT_STORE", db.uri()),
            ("WECHAT_APPID", APPID.to_owned()),
            ("WECHAT_APPSECRET", "e2e-sec-app-secret".to_owned()),
            ("WECHAT_API_BASE", server.base()),
            ("WX_PUSH_TOKEN", TOKEN.to_owned()),
            ("WX_PUSH_AES_KEY", EAK.to_owned()),
            ("XPAY_APPKEY", "e2e-sec-xpay-appkey".to_owned()),
            ("XPAY_OFFER_ID", "1450000000".to_owned()),
            ("XPAY_ENV", "0".to_owned()),
        ];
        let f =
            wemint_e2e::start_scf("wx-push", env.into_iter().map(|(k, v)| (k.to_owned(), v))).await;
        Self {
            f,
            db,
            wechat,
            _server: server,
        }
    }

    /// Delivers a push as CloudBase's HTTP access does: (status, body).
    async fn post(&self, sealed: &SealedPush) -> (u16, String) {
        let query: serde_json::Map<String, Value> = sealed
            .query
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let event = json!({
            "httpMethod": "POST", "path": "/wxPush", "queryStringParameters": query,
            "headers": {"content-type": sealed.content_type},
            "body": String::from_utf8(sealed.body.clone()).unwrap(), "isBase64Encoded": false,
        });
        let out = self
            .f
            .invoke_json(&event)
            .await
            .unwrap_or_else(|e| panic!("wxPush did not answer: {e}"));
        (
            u16::try_from(out["statusCode"].as_u64().unwrap()).unwrap(),
            out["body"].as_str().unwrap_or_default().to_owned(),
        )
    }

    async fn order_status(&self, id: &str) -> Value {
        let doc = self
            .db
            .store()
            .await
            .get(collections::ORDERS, id)
            .await
            .unwrap();
        doc.map(|d| d["status"].clone()).unwrap_or(Value::Null)
    }

    async fn entitled(&self, sku: &str) -> bool {
        let doc = self.db.store().await;
        doc.get(collections::ENTITLEMENTS, &format!("{BUYER}:{sku}"))
            .await
            .unwrap()
            .is_some()
    }

    /// An unpaid virtual payment order for one content unlock, as createOrder stores it.
    async fn unpaid_order(&self, id: &str) -> String {
        let out_trade_no = format!("WM{}SEC{id}", now());
        let t = now();
        self.db
            .store()
            .await
            .insert(
                collections::ORDERS,
                json!({"_id": id, "outTradeNo": out_trade_no, "openid": BUYER, "appid": APPID,
                    "clientRequestId": id, "status": "created", "channel": "xpay",
                    "items": [{"sku": "article-1", "title": "Article", "quantity": 1,
                        "unitPriceFen": 600, "kind": {"type": "content_unlock", "content": "c1"}}],
                    "totalFen": 600, "createdAt": t, "expiresAt": t + 1800}),
            )
            .await
            .unwrap();
        out_trade_no
    }
}

fn crypto() -> PushCrypto {
    PushCrypto::new(TOKEN, EAK, APPID).unwrap()
}

fn stamp(timestamp: i64) -> Stamp {
    let n = next();
    Stamp {
        timestamp,
        nonce: format!("{}", 500_000 + n),
        random: [u8::try_from(n % 200).unwrap(); 16],
    }
}

fn seal(payload: &[u8], timestamp: i64) -> SealedPush {
    crypto().seal_push(
        payload,
        PushFormat::Json,
        "gh_e2e_sec",
        None,
        &stamp(timestamp),
    )
}

fn unsubscribe(openid: &str) -> Vec<u8> {
    json!({"ToUserName": "gh_e2e_sec", "FromUserName": openid, "CreateTime": now(),
        "MsgType": "event", "Event": "unsubscribe"})
    .to_string()
    .into_bytes()
}

fn delivery(out_trade_no: &str, env: i64) -> Vec<u8> {
    json!({"ToUserName": "gh_e2e_sec", "FromUserName": "oXpaySystem", "CreateTime": now(),
        "MsgType": "event", "Event": "xpay_goods_deliver_notify", "OpenId": BUYER,
        "OutTradeNo": out_trade_no, "Env": env,
        "WeChatPayInfo": {"MchOrderNo": "M1", "TransactionId": "T1", "PaidTime": now()},
        "GoodsInfo": {"ProductId": "article-1", "Quantity": 1, "OrigPrice": 600, "ActualPrice": 600, "Attach": ""}})
    .to_string()
    .into_bytes()
}

/// Item 1: with an EncodingAESKey set, a plaintext push (whose `signature` covers no body) and
/// a push stamped a day ago or ten minutes ahead are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_stale_pushes_are_refused_when_an_aes_key_is_set() {
    let p = Push::start("replay").await;
    p.db.store()
        .await
        .insert(
            collections::FOLLOWERS,
            json!({"_id": "oReplay", "openid": "oReplay", "subscribed": true}),
        )
        .await
        .unwrap();
    let subscribed = || async {
        let doc =
            p.db.store()
                .await
                .get(collections::FOLLOWERS, "oReplay")
                .await
                .unwrap();
        doc.unwrap()["subscribed"].clone()
    };

    let plain = crypto().sign_plain_push(&unsubscribe("oReplay"), now(), "4242");
    assert_eq!(p.post(&plain).await.0, 401, "plaintext push accepted");
    assert_eq!(subscribed().await, true);

    for skew in [-86_400, -301, 600] {
        let old = seal(&unsubscribe("oReplay"), now() + skew);
        assert_eq!(p.post(&old).await.0, 401, "push {skew} s away accepted");
        assert_eq!(subscribed().await, true);
    }

    // The same push stamped now is handled.
    let fresh = seal(&unsubscribe("oReplay"), now());
    assert_eq!(p.post(&fresh).await, (200, "success".to_owned()));
    assert_eq!(subscribed().await, false);
}

/// Item 1: a delivery push grants only once `query_order` says the order is paid; until then
/// it is not acknowledged (WeChat redelivers) and nothing is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_push_grants_only_what_query_order_confirms() {
    let p = Push::start("unpaid").await;
    let no = p.unpaid_order("o-unpaid").await;
    let push = seal(&delivery(&no, 0), now());

    let (status, _) = p.post(&push).await;
    assert_eq!(status, 503, "an unpaid order's delivery was acknowledged");
    assert!(!p.entitled("article-1").await, "granted without payment");
    assert_eq!(p.order_status("o-unpaid").await, "created");
    assert_eq!(p.wechat.queries.load(Ordering::SeqCst), 1);

    // The buyer pays; WeChat's retry of the same push now delivers.
    p.wechat.paid.lock().unwrap().insert(no.clone());
    let (status, body) = p.post(&push).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ErrCode"], 0);
    assert!(p.entitled("article-1").await);
    assert_eq!(p.order_status("o-unpaid").await, "fulfilled");
}

/// Item 7: the deployed wxPush knows `XPAY_ENV`: a sandbox delivery (`Env: 1`) for a
/// production order is held for review, never granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_delivery_is_held_for_review_in_production() {
    let p = Push::start("sandbox").await;
    let no = p.unpaid_order("o-sandbox").await;
    p.wechat.paid.lock().unwrap().insert(no.clone());

    let (status, _) = p.post(&seal(&delivery(&no, 1), now())).await;
    assert_eq!(status, 200);
    assert!(!p.entitled("article-1").await, "sandbox payment granted");
    assert_eq!(p.order_status("o-sandbox").await, "review");
}

/// Item 2: deeply nested bodies, before and after the signature check, are refused and the
/// instance keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_pushes_are_refused_and_the_instance_keeps_serving() {
    let p = Push::start("deep").await;
    let nest = |open: &str, close: &str, n: usize| {
        format!("<xml>{}{}</xml>", open.repeat(n), close.repeat(n))
    };
    let good = seal(&unsubscribe("oDeep"), now());
    let with_body = |body: Vec<u8>, content_type: &'static str| SealedPush {
        query: good.query.clone(),
        body,
        content_type,
    };
    // Unsigned envelopes: the Encrypt value is looked for before any signature check.
    for body in [
        nest("<a>", "</a>", 30_000),
        nest("<a>", "</a>", 100_000),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{{\"Encrypt\":{}}}", "{\"a\":".repeat(30_000)),
    ] {
        let (status, _) = p.post(&with_body(body.into_bytes(), "text/xml")).await;
        assert!((400..500).contains(&status), "{status}");
        assert!(p.f.is_running(), "wxPush died: {}", p.f.stderr());
    }
    // Correctly signed: the decrypted message itself is deeply nested.
    for inner in [
        nest("<a>", "</a>", 20_000),
        format!("{{\"MsgType\":{}}}", "[".repeat(20_000)),
    ] {
        let sealed = seal(inner.as_bytes(), now());
        let (status, _) = p.post(&sealed).await;
        assert_eq!(status, 400);
        assert!(p.f.is_running(), "wxPush died: {}", p.f.stderr());
    }
    assert_eq!(p.post(&good).await, (200, "success".to_owned()));
}

/// Item 3: a client's `wx.cloud.callFunction({name: "reconcile", data: {Type: "Timer"}})`
/// carries `userInfo` and does not run the timer; neither does any HTTP request. The platform's
/// own timer event still runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_timer_events_do_not_run_timers() {
    let f = wemint_e2e::start_scf("reconcile", callable_env()).await;
    let timer = json!({"Type": "Timer", "TriggerName": "reconcile", "Time": "2026-11-24T00:00:00Z",
        "Message": ""});
    let mut forged = timer.clone();
    forged["userInfo"] = json!({"appId": "wxapp", "openId": "oMallory"});
    let out = f.invoke_json(&forged).await.unwrap();
    assert_eq!(out["ok"], false, "a client ran the timer: {out}");
    assert_eq!(out["error"]["code"], "FORBIDDEN", "{out}");

    // Over HTTP access, with or without a user.
    let access = json!({"httpMethod": "POST", "path": "/reconcile", "headers": {},
        "body": timer.to_string(), "isBase64Encoded": false});
    let out = f.invoke_json(&access).await.unwrap();
    assert_eq!(out["statusCode"], 401, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["ok"], false);

    let out = f.invoke_json(&timer).await.unwrap();
    assert_eq!(out["ok"], true, "{out}");
    assert!(out["data"]["checked"].is_number(), "{out}");

    // The http mode listener: a timer-shaped body is a callable like any other.
    let env = callable_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let listener = HttpInstance::start(&function_binary("reconcile"), &env).unwrap();
    let r = http(Method::POST, &listener.url("/"), &[], timer.to_string()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json());
    assert_eq!(r.json()["ok"], false);
}

/// Item 13: trusting `X-WX-*` headers is announced at start, with the precondition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusting_cloudbase_run_headers_logs_a_warning_at_start() {
    let warned = |f: &ScfInstance| {
        f.stdout()
            .lines()
            .any(|l| l.contains("\"WARN\"") && l.contains("X-WX-OPENID") && l.contains("strip"))
    };
    let mut env = callable_env();
    let event = wemint_e2e::start_scf("login", env.clone()).await;
    assert!(!warned(&event), "{}", event.stdout());
    env.retain(|(k, _)| k != "WEMINT_TRUST_PLATFORM_IDENTITY");
    env.push((
        "WEMINT_TRUST_PLATFORM_IDENTITY".into(),
        "cloudbase-run".into(),
    ));
    let run = wemint_e2e::start_scf("login", env).await;
    assert!(
        run.wait_for_stdout_line(
            |l| l.contains("\"WARN\"") && l.contains("X-WX-OPENID") && l.contains("strip"),
            std::time::Duration::from_secs(2)
        )
        .await,
        "no warning: {}",
        run.stdout()
    );
}

/// Issue 18: a push no handler knows (a future event, an unknown `xpay_*` event) is answered, logged with
/// its type (`unhandled_push`, the event and message type) and changes nothing: no document is
/// written, not even a receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_push_is_logged_with_its_type_and_changes_nothing() {
    let p = Push::start("unknown").await;
    let store = p.db.store().await;
    let mut before = Vec::new();
    for (collection, _) in collections::all() {
        before.push(
            store
                .count(collection, &wemint::store::Filter::All)
                .await
                .unwrap(),
        );
    }
    let future =
        json!({"ToUserName": "gh_e2e_sec", "FromUserName": "oSomeone", "CreateTime": now(),
        "MsgType": "event", "Event": "wxa_future_event_42", "Payload": {"x": 1}})
        .to_string();
    assert_eq!(
        p.post(&seal(future.as_bytes(), now())).await,
        (200, "success".to_owned())
    );
    assert!(
        p.f.wait_for_stdout_line(
            |l| l.contains("unhandled_push") && l.contains("wxa_future_event_42"),
            std::time::Duration::from_secs(5),
        )
        .await,
        "the unknown event is logged with its type: {}",
        p.f.stdout()
    );
    let xpay_future = json!({"ToUserName": "gh_e2e_sec", "FromUserName": "oXpaySystem",
        "CreateTime": now(), "MsgType": "event", "Event": "xpay_future_notify"})
    .to_string();
    let (status, body) = p.post(&seal(xpay_future.as_bytes(), now())).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["ErrCode"],
        0,
        "virtual payment events are acknowledged in JSON: {body}"
    );
    let mut after = Vec::new();
    for (collection, _) in collections::all() {
        after.push(
            store
                .count(collection, &wemint::store::Filter::All)
                .await
                .unwrap(),
        );
    }
    assert_eq!(before, after, "nothing was written");
    assert_eq!(
        p.wechat.queries.load(Ordering::SeqCst),
        0,
        "nothing was asked"
    );
}
