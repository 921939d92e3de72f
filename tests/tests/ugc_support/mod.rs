//! Support for the `ugcUpload` / `wxPush` end-to-end tests: a local stand-in for the WeChat
//! APIs they call (stable_token, msg_sec_check, tcb/batchdownloadfile, media_check_async,
//! subscribe send, generate_urllink), the two real binaries in HTTP mode over one SQLite
//! file, and the push sealing WeChat does (through `wemint::wechat::PushCrypto`).

#![allow(unreachable_pub, dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use wemint::identity::{SessionClaims, SessionSigner};
use wemint::wechat::{PushCrypto, PushFormat, SealedPush, Stamp};
use wemint_e2e::StandIn;
use wemint_emulator::http::{Request, Response};

pub const APPID: &str = "wxe2eugc000000001";
pub const APPSECRET: &str = "e2e-ugc-app-secret";
pub const SESSION_SECRET: &str = "e2e-ugc-session-secret-0123456789abc";
pub const PUSH_TOKEN: &str = "e2e-ugc-push-token";
pub const PUSH_EAK: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const ACCESS_TOKEN: &str = "e2e-ugc-access-token";
pub const TEMPLATE: &str = "TPL-moderation-result";
pub const ENV_ID: &str = "e2e-env-1a2b";
pub const URL_LINK: &str = "https://wxaurl.cn/e2eUgcLink";

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// One `media_check_async` call the stand-in received.
#[derive(Debug, Clone)]
pub struct MediaCall {
    pub trace_id: String,
    pub media_url: String,
    pub openid: String,
}

#[derive(Default)]
struct Book {
    media: Vec<MediaCall>,
    subscribe_sends: Vec<Value>,
    text_checks: u64,
    link_requests: Vec<Value>,
}

/// The WeChat stand-in. Text verdicts come from words: `violent` → risky (label 20003),
/// `borderline` → review (21000), anything else → pass. Images are only submitted: the test
/// decides each verdict and delivers it as a sealed push, like WeChat does later.
#[derive(Clone)]
pub struct WechatStandIn {
    server: Arc<StandIn>,
    book: Arc<Mutex<Book>>,
}

impl WechatStandIn {
    pub async fn start() -> Self {
        let book = Arc::new(Mutex::new(Book::default()));
        let server = StandIn::serving(book.clone(), handle).await;
        Self {
            server: Arc::new(server),
            book,
        }
    }

    pub fn base(&self) -> String {
        self.server.base()
    }

    pub fn media_calls(&self) -> Vec<MediaCall> {
        self.book.lock().unwrap().media.clone()
    }

    pub fn subscribe_sends(&self) -> Vec<Value> {
        self.book.lock().unwrap().subscribe_sends.clone()
    }

    pub fn link_requests(&self) -> Vec<Value> {
        self.book.lock().unwrap().link_requests.clone()
    }
}

fn reply(value: &Value) -> Response {
    Response::json(StatusCode::OK, value)
}

fn err(code: i64, msg: &str) -> Response {
    reply(&json!({"errcode": code, "errmsg": msg}))
}

fn handle(book: &Mutex<Book>, req: &Request) -> Response {
    let path = req.path.clone();
    let token_ok = req.param("access_token").as_deref() == Some(ACCESS_TOKEN);
    let body: Value = req.json().unwrap_or(Value::Null);
    if path == "/cgi-bin/stable_token" {
        if body["appid"] != json!(APPID) || body["secret"] != json!(APPSECRET) {
            return err(40125, "invalid appsecret");
        }
        return reply(&json!({"access_token": ACCESS_TOKEN, "expires_in": 7200}));
    }
    if !token_ok {
        return err(40001, "invalid credential");
    }
    match path.as_str() {
        "/wxa/msg_sec_check" => {
            book.lock().unwrap().text_checks += 1;
            let text = body["content"].as_str().unwrap_or_default();
            let (suggest, label) = if text.contains("violent") {
                ("risky", 20003)
            } else if text.contains("borderline") {
                ("review", 21000)
            } else {
                ("pass", 100)
            };
            reply(
                &json!({"errcode": 0, "errmsg": "ok", "trace_id": "text-trace",
                "result": {"suggest": suggest, "label": label},
                "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}]}),
            )
        }
        "/tcb/batchdownloadfile" => {
            if body["env"] != json!(ENV_ID) {
                return err(-501_001, "env not found");
            }
            let list: Vec<Value> = body["file_list"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    let id = f["fileid"].as_str().unwrap_or_default();
                    let path = id.splitn(4, '/').nth(3).unwrap_or_default();
                    json!({"fileid": id, "download_url": format!("https://{ENV_ID}.tcb.qcloud.la/{path}?sign=tmp"), "status": 0, "errmsg": "ok"})
                })
                .collect();
            reply(&json!({"errcode": 0, "errmsg": "ok", "file_list": list}))
        }
        "/wxa/media_check_async" => {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let trace_id = format!("trace-{n:06}");
            book.lock().unwrap().media.push(MediaCall {
                trace_id: trace_id.clone(),
                media_url: body["media_url"].as_str().unwrap_or_default().to_owned(),
                openid: body["openid"].as_str().unwrap_or_default().to_owned(),
            });
            reply(&json!({"errcode": 0, "errmsg": "ok", "trace_id": trace_id}))
        }
        "/cgi-bin/message/subscribe/send" => {
            book.lock().unwrap().subscribe_sends.push(body);
            reply(&json!({"errcode": 0, "errmsg": "ok", "msgid": 42}))
        }
        "/wxa/generate_urllink" => {
            book.lock().unwrap().link_requests.push(body);
            reply(&json!({"errcode": 0, "errmsg": "ok", "url_link": URL_LINK}))
        }
        _ => Response::not_found(&path),
    }
}

/// A temporary directory with the SQLite file both functions share; removed on drop.
pub struct DbDir {
    pub dir: PathBuf,
}

impl DbDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("wemint-e2e-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self { dir }
    }

    pub fn uri(&self) -> String {
        format!("sqlite:{}", self.dir.join("wemint.db").display())
    }
}

impl Drop for DbDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Path of a workspace binary (built by `cargo build -p ugc-upload -p wx-push` first, which
/// scripts/test.sh does with `--workspace --bins`).
pub fn binary(name: &str) -> PathBuf {
    // Where another location is needed (a shared target directory that other checkouts
    // build into), `WEMINT_E2E_BIN_DIR` names it.
    if let Some(dir) = std::env::var_os("WEMINT_E2E_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(path.is_file(), "{} is missing", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> → target/debug/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p ugc-upload -p wx-push` first",
        path.display()
    );
    path
}

/// A function binary serving HTTP on a free local port; killed on drop.
pub struct Service {
    child: Child,
    pub base: String,
}

impl Service {
    pub async fn start(name: &str, env: &[(String, String)]) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(binary(name))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn function");
        let svc = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            // Any answer means it listens (wxPush's webhook takes every path, `/health` too).
            if client
                .get(format!("{}/health", svc.base))
                .send()
                .await
                .is_ok()
            {
                return svc;
            }
            assert!(Instant::now() < deadline, "{name} did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both functions' environment.
pub fn env(wechat: &WechatStandIn, db: &DbDir) -> Vec<(String, String)> {
    [
        ("WEMINT_STORE", db.uri()),
        ("WEMINT_SESSION_SECRET", SESSION_SECRET.to_owned()),
        ("WECHAT_APPID", APPID.to_owned()),
        ("WECHAT_APPSECRET", APPSECRET.to_owned()),
        ("WECHAT_API_BASE", wechat.base()),
        ("WEMINT_ENV_ID", ENV_ID.to_owned()),
        ("WX_PUSH_TOKEN", PUSH_TOKEN.to_owned()),
        ("WX_PUSH_AES_KEY", PUSH_EAK.to_owned()),
        ("WEMINT_POST_NOTICE_TEMPLATE", TEMPLATE.to_owned()),
        (
            "WEMINT_POST_NOTICE_PAGE",
            "posting/pages/mine/mine".to_owned(),
        ),
        ("WEMINT_FUNNEL_PATH", "pages/index/index".to_owned()),
        ("WEMINT_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A session token as `login` issues it.
pub fn token(openid: &str, admin: bool) -> String {
    let signer = SessionSigner::new(SESSION_SECRET.as_bytes(), 7200).expect("signer");
    let mut claims = SessionClaims::new(openid, APPID);
    claims.adm = admin;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    signer.issue(claims, i64::try_from(now).expect("time"))
}

/// Calls a `ugcUpload` action as `openid`: (HTTP status, envelope).
pub async fn call(
    svc: &Service,
    openid: &str,
    admin: bool,
    action: &str,
    data: Value,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/{action}", svc.base))
        .bearer_auth(token(openid, admin))
        .json(&data)
        .send()
        .await
        .expect("call");
    let status = r.status().as_u16();
    (status, r.json().await.expect("envelope"))
}

/// A file id as `wx.cloud.uploadFile` returns it for `ugc/<openid>/<name>`.
pub fn file_id(openid: &str, name: &str) -> String {
    format!("cloud://{ENV_ID}.7072-{ENV_ID}-1300000000/ugc/{openid}/{name}")
}

/// The crypto WeChat uses for our endpoint (or, with another appid, for someone else's).
pub fn crypto(appid: &str, token: &str) -> PushCrypto {
    PushCrypto::new(token, PUSH_EAK, appid).expect("push crypto")
}

/// Seals a JSON push in safe mode, as WeChat delivers it.
pub fn seal(crypto: &PushCrypto, payload: &Value, openid: Option<&str>) -> SealedPush {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    // wxPush refuses timestamps more than 5 minutes from now: stamp as WeChat does, at send.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let stamp = Stamp {
        timestamp: i64::try_from(now).expect("time"),
        nonce: format!("{}", 100_000 + n),
        random: [u8::try_from(n % 200).expect("byte"); 16],
    };
    crypto.seal_push(
        payload.to_string().as_bytes(),
        PushFormat::Json,
        "gh_e2e_ugc",
        openid,
        &stamp,
    )
}

/// The `wxa_media_check` push for a trace id.
pub fn media_result(trace_id: &str, suggest: &str, label: i64) -> Value {
    json!({
        "ToUserName": "gh_e2e_ugc", "FromUserName": "oSystemWxaSecurity",
        "CreateTime": 1_700_000_100, "MsgType": "event", "Event": "wxa_media_check",
        "appid": APPID, "trace_id": trace_id, "version": 2,
        "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}],
        "errcode": 0, "errmsg": "ok",
        "result": {"suggest": suggest, "label": label}
    })
}

/// POSTs a sealed push to wxPush: (status, body).
pub async fn deliver(push_svc: &Service, sealed: &SealedPush) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/wxPush?{}",
            push_svc.base,
            sealed.query_string()
        ))
        .header("content-type", sealed.content_type)
        .body(sealed.body.clone())
        .send()
        .await
        .expect("push");
    (r.status().as_u16(), r.bytes().await.expect("body").to_vec())
}

/// Replaces one query parameter of a sealed push.
pub fn with_param(sealed: &SealedPush, key: &str, value: &str) -> SealedPush {
    let mut s = sealed.clone();
    for (k, v) in &mut s.query {
        if k == key {
            *v = value.to_owned();
        }
    }
    s
}

/// Looks up a post through `list` as its author.
pub async fn own_post(svc: &Service, openid: &str, id: &str) -> Value {
    let (_, v) = call(svc, openid, false, "list", json!({"limit": 50})).await;
    v["data"]["posts"]
        .as_array()
        .expect("a posts array")
        .iter()
        .find(|p| p["id"] == json!(id))
        .cloned()
        .unwrap_or(Value::Null)
}
