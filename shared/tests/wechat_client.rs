//! The WeChat client against a local HTTP stand-in (tokio + hyper on 127.0.0.1:0): the
//! shared access token, refresh on token errcodes, typed errcodes, retries, binary replies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use wemint::outbound::Retry;
use wemint::store::{self, Store};
use wemint::wechat::{
    ErrCode, Expiry, LinkRequest, MediaCheckRequest, MediaType, Scene, SessionKey,
    SubscribeMessage, Suggest, TextCheckRequest, TokenPolicy, UnlimitedCodeRequest, WechatClient,
    WechatConfig, WechatError, system_clock,
};

const APPID: &str = "wx7fe13309749792e0";
const SECRET: &str = "app-secret-never-logged";

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: HashMap<String, String>,
    body: Value,
}

/// What the stand-in answers.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    delay: Duration,
}

impl Answer {
    fn json(v: Value) -> Self {
        Answer {
            status: 200,
            content_type: "application/json; charset=UTF-8",
            body: v.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Answer + Send + Sync>;

/// A local WeChat stand-in: records every request; `handler` gets the request and how many
/// earlier requests hit the same path.
#[derive(Clone)]
struct StandIn {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    async fn start(handler: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static) -> Self {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let seen = seen.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let query = req
                                .uri()
                                .query()
                                .unwrap_or_default()
                                .split('&')
                                .filter(|p| !p.is_empty())
                                .map(|p| {
                                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                                    (k.to_owned(), v.to_owned())
                                })
                                .collect();
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let request = Seen { path, query, body };
                            let answer = {
                                let mut log = seen.lock().unwrap();
                                let earlier = log.iter().filter(|s| s.path == request.path).count();
                                log.push(request.clone());
                                handler(&request, earlier)
                            };
                            tokio::time::sleep(answer.delay).await;
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(answer.status)
                                    .header("content-type", answer.content_type)
                                    .body(Full::new(Bytes::from(answer.body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StandIn { base, seen }
    }

    fn calls(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

fn fast_retry() -> Retry {
    Retry::new(3, Duration::ZERO, Duration::ZERO)
}

fn policy() -> TokenPolicy {
    TokenPolicy {
        refresh_margin: Duration::from_secs(120),
        lease: Duration::from_secs(10),
        poll: Duration::from_millis(20),
        max_wait: Duration::from_secs(10),
    }
}

fn client(base: &str, store: Arc<dyn Store>) -> WechatClient {
    WechatClient::with_options(
        WechatConfig::new(APPID, SECRET, Some(base)),
        store,
        fast_retry(),
        system_clock(),
        policy(),
    )
    .unwrap()
}

async fn memory_store() -> Arc<dyn Store> {
    store::open("sqlite::memory:").await.unwrap()
}

fn pass_verdict() -> Answer {
    Answer::json(
        json!({"errcode":0,"errmsg":"ok","trace_id":"t1","result":{"suggest":"pass","label":100},"detail":[]}),
    )
}

const STABLE: &str = "/cgi-bin/stable_token";
const MSG_CHECK: &str = "/wxa/msg_sec_check";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_is_shared_across_store_clients_with_one_fetch_under_a_stampede() {
    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        // Slow enough that all 20 first requests arrive while the fetch is in flight.
        STABLE => Answer::json(json!({"access_token":"TOKEN-1","expires_in":7200}))
            .delayed(Duration::from_millis(300)),
        MSG_CHECK => pass_verdict(),
        _ => Answer::json(json!({"errcode":404,"errmsg":"unknown"})),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:{}", dir.path().join("wemint.db").display());
    let store_a = store::open(&uri).await.unwrap();
    let store_b = store::open(&uri).await.unwrap();
    let a = client(&stand_in.base, store_a);
    let b = client(&stand_in.base, store_b);

    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            c.msg_sec_check(&TextCheckRequest::new("hello", Scene::Comment, "openid-1"))
                .await
        }));
    }
    for t in tasks {
        let verdict = t.await.unwrap().expect("every first request succeeds");
        assert_eq!(verdict.verdict.suggest, Suggest::Pass);
    }
    assert_eq!(started.load(Ordering::SeqCst), 20);
    assert_eq!(
        stand_in.calls(STABLE).len(),
        1,
        "exactly one stable_token call"
    );
    let checks = stand_in.calls(MSG_CHECK);
    assert_eq!(checks.len(), 20);
    assert!(checks.iter().all(|c| c.query["access_token"] == "TOKEN-1"));
    let stable = &stand_in.calls(STABLE)[0];
    assert_eq!(stable.body["grant_type"], "client_credential");
    assert_eq!(stable.body["appid"], APPID);
    assert_eq!(stable.body["force_refresh"], false);
}

#[tokio::test]
async fn token_errcodes_trigger_exactly_one_refresh_and_one_retry() {
    for code in [40001, 40014, 42001] {
        let stand_in = StandIn::start(move |req, n| match req.path.as_str() {
            STABLE => Answer::json(json!({"access_token": format!("TOKEN-{}", n + 1), "expires_in": 7200})),
            MSG_CHECK if req.query["access_token"] == "TOKEN-1" => Answer::json(
                json!({"errcode": code, "errmsg": "access_token expired rid: 65f0a1b2-0c0d0e0f-1a2b3c4d"}),
            ),
            MSG_CHECK => pass_verdict(),
            _ => Answer::json(json!({"errcode":404,"errmsg":"unknown"})),
        })
        .await;
        let c = client(&stand_in.base, memory_store().await);
        let out = c
            .msg_sec_check(&TextCheckRequest::new("hello", Scene::Forum, "openid-1"))
            .await
            .expect("retried call succeeds");
        assert_eq!(out.verdict.suggest, Suggest::Pass);
        let stable = stand_in.calls(STABLE);
        assert_eq!(
            stable.len(),
            2,
            "one initial fetch and exactly one refresh for {code}"
        );
        assert_eq!(stable[1].body["force_refresh"], false);
        let checks = stand_in.calls(MSG_CHECK);
        assert_eq!(checks.len(), 2, "exactly one retry for {code}");
        assert_eq!(checks[1].query["access_token"], "TOKEN-2");
        // The refreshed token is now the shared one: a further call fetches nothing.
        c.msg_sec_check(&TextCheckRequest::new("again", Scene::Forum, "openid-1"))
            .await
            .unwrap();
        assert_eq!(stand_in.calls(STABLE).len(), 2);
    }
}

#[tokio::test]
async fn a_token_rejected_again_after_refresh_is_an_error_not_a_loop() {
    let stand_in = StandIn::start(|req, n| match req.path.as_str() {
        STABLE => {
            Answer::json(json!({"access_token": format!("TOKEN-{}", n + 1), "expires_in": 7200}))
        }
        _ => Answer::json(json!({"errcode": 40001, "errmsg": "invalid credential"})),
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    let err = c
        .msg_sec_check(&TextCheckRequest::new("hello", Scene::Forum, "openid-1"))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidCredential));
    assert_eq!(stand_in.calls(MSG_CHECK).len(), 2);
    assert_eq!(stand_in.calls(STABLE).len(), 2);
}

#[tokio::test]
async fn normal_mode_returning_the_failed_token_escalates_to_force_refresh() {
    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        STABLE if req.body["force_refresh"] == true => {
            Answer::json(json!({"access_token":"FORCED","expires_in":7200}))
        }
        STABLE => Answer::json(json!({"access_token":"STALE","expires_in":7200})),
        MSG_CHECK if req.query["access_token"] == "STALE" => {
            Answer::json(json!({"errcode": 40001, "errmsg": "invalid credential"}))
        }
        _ => pass_verdict(),
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    c.msg_sec_check(&TextCheckRequest::new("hello", Scene::Forum, "openid-1"))
        .await
        .unwrap();
    let modes: Vec<Value> = stand_in
        .calls(STABLE)
        .iter()
        .map(|s| s.body["force_refresh"].clone())
        .collect();
    assert_eq!(modes, vec![json!(false), json!(false), json!(true)]);
    assert_eq!(stand_in.calls(MSG_CHECK).len(), 2);
}

#[tokio::test]
async fn code2session_success_and_every_errcode_typed() {
    let stand_in = StandIn::start(|req, _| {
        assert_eq!(req.path, "/sns/jscode2session");
        assert_eq!(req.query["appid"], APPID);
        assert_eq!(req.query["grant_type"], "authorization_code");
        let code = req.query["js_code"].clone();
        match code.strip_prefix("err") {
            Some(n) => {
                Answer::json(json!({"errcode": n.parse::<i64>().unwrap(), "errmsg": "failed"}))
            }
            // Success replies carry no errcode at all.
            None => Answer::json(
                json!({"openid":"o-1","session_key":"sRLmM8quiQFFhIAL7FiEyQ==","unionid":"u-1"}),
            ),
        }
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    let s = c.code2session("good-code").await.unwrap();
    assert_eq!(s.openid, "o-1");
    assert_eq!(s.session_key.expose(), "sRLmM8quiQFFhIAL7FiEyQ==");
    assert_eq!(s.unionid.as_deref(), Some("u-1"));
    assert!(!format!("{s:?}").contains("sRLmM8"));

    for (code, typed) in [
        (40029, ErrCode::InvalidCode),
        (45011, ErrCode::RateLimited),
        (40226, ErrCode::RiskyUser),
        (40163, ErrCode::CodeUsed),
        (40125, ErrCode::InvalidAppSecret),
        (40013, ErrCode::InvalidAppid),
        (40243, ErrCode::AppSecretFrozen),
        (40164, ErrCode::IpNotAllowed),
    ] {
        let err = c.code2session(&format!("err{code}")).await.unwrap_err();
        assert_eq!(err.errcode(), Some(typed), "errcode {code}");
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains(SECRET));
    }
    // Non-retryable codes are asked once each.
    assert_eq!(stand_in.calls("/sns/jscode2session").len(), 9);
    assert!(matches!(
        c.code2session("  ").await,
        Err(WechatError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn busy_and_5xx_are_retried_within_the_bound() {
    let stand_in = StandIn::start(|req, n| match (req.query["js_code"].as_str(), n) {
        ("flaky", 0) => Answer::json(json!({"errcode": -1, "errmsg": "system error"})),
        ("flaky", 1) => Answer {
            status: 502,
            content_type: "text/html",
            body: b"bad gateway".to_vec(),
            delay: Duration::ZERO,
        },
        ("flaky", _) => Answer::json(json!({"openid":"o","session_key":"k"})),
        _ => Answer::json(json!({"errcode": -1, "errmsg": "system error"})),
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    assert_eq!(c.code2session("flaky").await.unwrap().openid, "o");
    assert_eq!(stand_in.calls("/sns/jscode2session").len(), 3);
    let err = c.code2session("busy").await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::SystemBusy));
    assert_eq!(
        stand_in.calls("/sns/jscode2session").len(),
        6,
        "3 attempts, no more"
    );
}

#[tokio::test]
async fn subscribe_message_errcodes_are_typed() {
    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        STABLE => Answer::json(json!({"access_token":"T","expires_in":7200})),
        _ => match req.body["touser"].as_str().unwrap() {
            "ok" => Answer::json(json!({"errcode":0,"errmsg":"ok","msgid":294402298110051942_i64})),
            other => Answer::json(json!({"errcode": other.parse::<i64>().unwrap(), "errmsg": "argument invalid! data.thing1.value"})),
        },
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    let mut msg = SubscribeMessage {
        touser: "ok".into(),
        template_id: "TPL".into(),
        page: Some("pages/order/detail?id=1".into()),
        data: [("thing1".to_owned(), "Paid".to_owned())]
            .into_iter()
            .collect(),
        miniprogram_state: None,
        lang: None,
    };
    assert_eq!(
        c.send_subscribe_message(&msg).await.unwrap(),
        Some(294402298110051942)
    );
    let sent = &stand_in.calls("/cgi-bin/message/subscribe/send")[0];
    assert_eq!(sent.body["data"]["thing1"]["value"], "Paid");
    assert_eq!(sent.query["access_token"], "T");
    for (code, typed) in [
        (43101, ErrCode::UserRefused),
        (40003, ErrCode::InvalidOpenid),
        (47003, ErrCode::InvalidArgument),
        (40037, ErrCode::InvalidTemplateId),
        (41030, ErrCode::InvalidPage),
    ] {
        msg.touser = code.to_string();
        let err = c.send_subscribe_message(&msg).await.unwrap_err();
        assert_eq!(err.errcode(), Some(typed), "errcode {code}");
    }
    assert_eq!(stand_in.calls(STABLE).len(), 1);
}

#[tokio::test]
async fn deep_links_and_unlimited_code() {
    let png = b"\x89PNG\r\n\x1a\nfake-image".to_vec();
    let png2 = png.clone();
    let stand_in = StandIn::start(move |req, _| match req.path.as_str() {
        STABLE => Answer::json(json!({"access_token":"T","expires_in":7200})),
        "/wxa/generate_urllink" => {
            Answer::json(json!({"errcode":0,"errmsg":"ok","url_link":"https://wxaurl.cn/abc"}))
        }
        "/wxa/generatescheme" if req.body["jump_wxa"]["path"] == "pages/none" => {
            Answer::json(json!({"errcode":85079,"errmsg":"miniprogram has no online release"}))
        }
        "/wxa/generatescheme" => Answer::json(
            json!({"errcode":0,"errmsg":"ok","openlink":"weixin://dl/business/?t=XYZ"}),
        ),
        "/wxa/getwxacodeunlimit" if req.body["page"] == "pages/missing" => {
            Answer::json(json!({"errcode":41030,"errmsg":"invalid page"}))
        }
        "/wxa/getwxacodeunlimit" => Answer {
            status: 200,
            content_type: "image/png",
            body: png2.clone(),
            delay: Duration::ZERO,
        },
        _ => Answer::json(json!({"errcode":404,"errmsg":"unknown"})),
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    let link = LinkRequest {
        path: Some("pages/shop/index".into()),
        query: Some("from=oa&id=42".into()),
        expiry: Expiry::InDays(7),
        env_version: None,
    };
    assert_eq!(
        c.generate_url_link(&link).await.unwrap(),
        "https://wxaurl.cn/abc"
    );
    let sent = &stand_in.calls("/wxa/generate_urllink")[0];
    assert_eq!(sent.body["expire_type"], 1);
    assert_eq!(sent.body["expire_interval"], 7);
    assert_eq!(sent.body["query"], "from=oa&id=42");
    assert_eq!(
        c.generate_scheme(&link).await.unwrap(),
        "weixin://dl/business/?t=XYZ"
    );
    assert_eq!(
        stand_in.calls("/wxa/generatescheme")[0].body["is_expire"],
        true
    );
    let mut unpublished = link.clone();
    unpublished.path = Some("pages/none".into());
    assert_eq!(
        c.generate_scheme(&unpublished).await.unwrap_err().errcode(),
        Some(ErrCode::NotPublished)
    );

    let code = c
        .get_unlimited_code(&UnlimitedCodeRequest::new(
            "id=42",
            Some("pages/shop/index"),
        ))
        .await
        .unwrap();
    assert_eq!(code.content_type, "image/png");
    assert_eq!(code.bytes, png);
    let err = c
        .get_unlimited_code(&UnlimitedCodeRequest::new("id=42", Some("pages/missing")))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidPage));
    let too_long = UnlimitedCodeRequest::new("x".repeat(33), None);
    assert!(matches!(
        c.get_unlimited_code(&too_long).await,
        Err(WechatError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn content_security_verdicts_and_media_trace_id() {
    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        STABLE => Answer::json(json!({"access_token":"T","expires_in":7200})),
        MSG_CHECK => Answer::json(json!({
            "errcode":0,"errmsg":"ok","trace_id":"60ae2e9d",
            "result":{"suggest":"risky","label":20001},
            "detail":[{"strategy":"content_model","errcode":0,"suggest":"risky","label":20001,"prob":90},
                      {"strategy":"keyword","errcode":0,"suggest":"pass","label":100,"level":0,"keyword":""}]
        })),
        "/wxa/media_check_async" => Answer::json(json!({"errcode":0,"errmsg":"ok","trace_id":"967e945cd8a3e458f3c74dcb886068e9"})),
        _ => Answer::json(json!({"errcode":404,"errmsg":"unknown"})),
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    let check = c
        .msg_sec_check(&TextCheckRequest::new(
            "bad words",
            Scene::Comment,
            "openid-1",
        ))
        .await
        .unwrap();
    assert_eq!(check.verdict.suggest, Suggest::Risky);
    assert_eq!(check.verdict.label, 20001);
    assert_eq!(check.detail.len(), 2);
    assert_eq!(check.trace_id.as_deref(), Some("60ae2e9d"));
    let sent = &stand_in.calls(MSG_CHECK)[0];
    assert_eq!(sent.body["version"], 2);
    assert_eq!(sent.body["scene"], 2);
    assert_eq!(sent.body["openid"], "openid-1");

    let trace = c
        .media_check_async(&MediaCheckRequest {
            media_url: "https://cdn.example.com/a.png".into(),
            media_type: MediaType::Image,
            scene: Scene::Forum,
            openid: "openid-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(trace, "967e945cd8a3e458f3c74dcb886068e9");
    let sent = &stand_in.calls("/wxa/media_check_async")[0];
    assert_eq!(sent.body["media_type"], 2);
    assert_eq!(sent.body["version"], 2);
}

#[tokio::test]
async fn msg_sec_check_errcodes_and_session_check() {
    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        STABLE => Answer::json(json!({"access_token":"T","expires_in":7200})),
        "/wxa/checksession" if req.query["openid"] == "current" => {
            // hmac_sha256(key = "sRLmM8quiQFFhIAL7FiEyQ==" as text, ""), computed independently.
            assert_eq!(req.query["sig_method"], "hmac_sha256");
            assert_eq!(
                req.query["signature"],
                "7bef8816d5d788b47ec5e8fbb0cc968737d3c95a68152060dae4c92174eea3ab"
            );
            Answer::json(json!({"errcode":0,"errmsg":"ok"}))
        }
        "/wxa/checksession" => Answer::json(json!({"errcode":87009,"errmsg":"invalid signature"})),
        _ => {
            let code: i64 = req.body["openid"].as_str().unwrap().parse().unwrap();
            Answer::json(json!({"errcode": code, "errmsg": "failed"}))
        }
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    for (code, typed) in [
        (40003, ErrCode::InvalidOpenid),
        (40129, ErrCode::InvalidScene),
        (43104, ErrCode::AppidOpenidMismatch),
        (44002, ErrCode::EmptyPostData),
        (47001, ErrCode::BadFormat),
        (61010, ErrCode::Other(61010)),
    ] {
        let err = c
            .msg_sec_check(&TextCheckRequest::new(
                "x",
                Scene::Profile,
                code.to_string(),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), Some(typed), "errcode {code}");
    }
    let key = SessionKey::new("sRLmM8quiQFFhIAL7FiEyQ==");
    assert!(c.check_session_key("current", &key).await.unwrap());
    assert!(!c.check_session_key("stale", &key).await.unwrap());
}

#[tokio::test]
async fn phone_number_checks_watermark() {
    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        STABLE => Answer::json(json!({"access_token":"T","expires_in":7200})),
        _ => {
            let appid = if req.body["code"] == "foreign" {
                "wx0000000000000000"
            } else {
                APPID
            };
            Answer::json(json!({"errcode":0,"errmsg":"ok","phone_info":{
                "phoneNumber":"+8613800138000","purePhoneNumber":"13800138000","countryCode":86,
                "watermark":{"timestamp":1767225600,"appid":appid}}}))
        }
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    let phone = c.phone_number("good", Some("openid-1")).await.unwrap();
    assert_eq!(phone.pure_phone_number, "13800138000");
    assert_eq!(phone.country_code, "86");
    assert_eq!(
        stand_in.calls("/wxa/business/getuserphonenumber")[0].body["openid"],
        "openid-1"
    );
    assert!(matches!(
        c.phone_number("foreign", None).await,
        Err(WechatError::Decode(_))
    ));
}

#[tokio::test]
async fn stable_token_errors_are_typed_and_nothing_is_cached() {
    let stand_in = StandIn::start(|req, n| match (req.path.as_str(), n) {
        (STABLE, 0) => {
            Answer::json(json!({"errcode":40164,"errmsg":"invalid ip 1.2.3.4, not in whitelist"}))
        }
        (STABLE, _) => Answer::json(json!({"access_token":"T","expires_in":7200})),
        _ => pass_verdict(),
    })
    .await;
    let c = client(&stand_in.base, memory_store().await);
    let req = TextCheckRequest::new("hello", Scene::Forum, "openid-1");
    let err = c.msg_sec_check(&req).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::IpNotAllowed));
    assert!(stand_in.calls(MSG_CHECK).is_empty());
    // The failed fetch released the lease: the next call fetches at once.
    c.msg_sec_check(&req).await.unwrap();
    assert_eq!(stand_in.calls(STABLE).len(), 2);
    assert!(!format!("{c:?}").contains(SECRET));
}

/// 2026-12-05T10:00:00 China time (02:00 UTC): yesterday is 2026-12-04.
const DEC_5_10AM: i64 = 1_796_436_000;

#[tokio::test]
async fn datacube_day_is_pulled_with_the_shared_token_and_stored_per_day() {
    use wemint::clock::FixedClock;
    use wemint::crm::{Datacube, wechat_entries};

    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        STABLE => Answer::json(json!({"access_token":"T","expires_in":7200})),
        "/datacube/getweanalysisappiddailyvisittrend" => Answer::json(json!({"list": [
            {"ref_date": "20261204", "session_cnt": 120, "visit_pv": 100, "visit_uv": 60,
             "visit_uv_new": 10, "stay_time_uv": 35.2, "stay_time_session": 20.5,
             "visit_depth": 2.5}]})),
        "/datacube/getweanalysisappiddailyretaininfo" => Answer::json(json!({
            "ref_date": req.body["begin_date"],
            "visit_uv_new": [{"key": 0, "value": 10}, {"key": 1, "value": 2}],
            "visit_uv": [{"key": 0, "value": 60}]})),
        "/datacube/getweanalysisappiduserportrait" => {
            Answer::json(json!({"errcode": 61500, "errmsg": "date format error"}))
        }
        other => panic!("unexpected {other}"),
    })
    .await;
    let store = memory_store().await;
    store::bootstrap(store.as_ref()).await.unwrap();
    let datacube = Datacube::new(
        store.clone(),
        Arc::new(FixedClock::new(DEC_5_10AM)),
        Some(client(&stand_in.base, store.clone())),
    );
    assert_eq!(datacube.yesterday(), "2026-12-04");
    let report = datacube.pull("2026-12-04").await.unwrap();
    assert_eq!(report["trend"], "ok");
    assert_eq!(report["retention"], "ok");
    assert!(
        report["portrait"].as_str().unwrap().contains("61500"),
        "{report}"
    );
    for path in [
        "/datacube/getweanalysisappiddailyvisittrend",
        "/datacube/getweanalysisappiddailyretaininfo",
        "/datacube/getweanalysisappiduserportrait",
    ] {
        let calls = stand_in.calls(path);
        assert_eq!(calls.len(), 1, "{path}");
        assert_eq!(calls[0].query["access_token"], "T");
        assert_eq!(
            calls[0].body,
            json!({"begin_date": "20261204", "end_date": "20261204"})
        );
    }
    // The contract's example day, read back for the dashboard.
    let entries = wechat_entries(store.as_ref(), "2026-11-05", "2026-12-04")
        .await
        .unwrap();
    assert_eq!(
        entries,
        [
            json!({"date": "2026-12-04", "visits": 100, "visitors": 60, "newVisitors": 10,
                "stayTimeUv": 35.2, "retention": {"d1": 0.2}})
        ]
    );
    assert!(
        wechat_entries(store.as_ref(), "2026-12-05", "2026-12-31")
            .await
            .unwrap()
            .is_empty()
    );

    // Today is not over; a malformed day is refused before any call.
    for bad in ["2026-12-05", "2026-13-01", "yesterday", "2025-01-01"] {
        let e = wemint::runtime::ApiError::from(datacube.pull(bad).await.unwrap_err());
        assert_eq!(e.code(), "DATACUBE_DATE_INVALID", "{bad}");
    }
    // Without WeChat configured.
    let none = Datacube::new(store.clone(), Arc::new(FixedClock::new(DEC_5_10AM)), None);
    let e = wemint::runtime::ApiError::from(none.pull("2026-12-04").await.unwrap_err());
    assert_eq!(e.code(), "DATACUBE_UNAVAILABLE");
    assert_eq!(
        stand_in
            .calls("/datacube/getweanalysisappiddailyvisittrend")
            .len(),
        1
    );
}

#[tokio::test]
async fn datacube_daily_step_refreshes_retention_of_earlier_days() {
    use wemint::clock::FixedClock;
    use wemint::crm::Datacube;

    let stand_in = StandIn::start(|req, _| match req.path.as_str() {
        STABLE => Answer::json(json!({"access_token":"T","expires_in":7200})),
        "/datacube/getweanalysisappiddailyretaininfo" => Answer::json(json!({
            "ref_date": req.body["begin_date"], "visit_uv_new": [{"key": 0, "value": 4}]})),
        _ => Answer::json(json!({"errcode": -1, "errmsg": "system error"})),
    })
    .await;
    let store = memory_store().await;
    store::bootstrap(store.as_ref()).await.unwrap();
    let datacube = Datacube::new(
        store.clone(),
        Arc::new(FixedClock::new(DEC_5_10AM)),
        Some(client(&stand_in.base, store.clone())),
    );
    let report = datacube.daily().await;
    assert_eq!(report["pulled"]["retention"], "ok", "{report}");
    assert_eq!(
        report["retentionRefreshed"],
        json!({"2026-12-03": "ok", "2026-11-27": "ok", "2026-11-04": "ok"})
    );
    let days: Vec<String> = stand_in
        .calls("/datacube/getweanalysisappiddailyretaininfo")
        .iter()
        .map(|c| c.body["begin_date"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(days, ["20261204", "20261203", "20261127", "20261104"]);
}
