//! Support for the `login` end-to-end tests: a minimal local stand-in for
//! `api.weixin.qq.com` (code2Session, stable_token, phone number) and the function's
//! environment over a SQLite file the tests can inspect.

#![allow(unreachable_pub, dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::StatusCode;
use serde_json::{Value, json};
use wemint_e2e::StandIn;
use wemint_emulator::http::{Request, Response};

pub const APPID: &str = "wxe2elogin0000001";
pub const APPSECRET: &str = "e2e-login-app-secret";
pub const SESSION_SECRET: &str = "e2e-login-session-secret-0123456789";
/// base64 of 32 bytes.
pub const DATA_KEY: &str = "bG9naW4tZTJlLWRhdGEta2V5LTAxMjM0NTY3ODlhYmM=";
pub const PHONE: &str = "+8613800138000";

#[derive(Default)]
struct Book {
    /// Issued codes: code → openid.
    codes: HashMap<String, String>,
    used: HashSet<String>,
    /// Every session_key handed out.
    session_keys: Vec<String>,
    phone_codes: HashSet<String>,
    calls: u64,
}

/// The WeChat stand-in: codes are minted by the test ([`WechatStandIn::code_for`]) and work
/// once, like real `wx.login` codes. `risky` answers 40226, `busy` answers -1, anything else
/// 40029.
#[derive(Clone)]
pub struct WechatStandIn {
    server: Arc<StandIn>,
    book: Arc<Mutex<Book>>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl WechatStandIn {
    /// Starts listening on a free local port (served on the current tokio runtime).
    pub async fn start() -> Self {
        let book = Arc::new(Mutex::new(Book::default()));
        let server = StandIn::serving(book.clone(), handle).await;
        Self {
            server: Arc::new(server),
            book,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        self.server.base()
    }

    /// A fresh single-use login code for `openid`.
    pub fn code_for(&self, openid: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let code = format!("code-{n}-{}", openid.len());
        self.book
            .lock()
            .unwrap()
            .codes
            .insert(code.clone(), openid.to_owned());
        code
    }

    /// A fresh single-use phone-number code.
    pub fn phone_code(&self) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let code = format!("phone-{n}");
        self.book.lock().unwrap().phone_codes.insert(code.clone());
        code
    }

    /// Every session_key handed out so far.
    pub fn session_keys(&self) -> Vec<String> {
        self.book.lock().unwrap().session_keys.clone()
    }

    /// Number of requests served.
    pub fn calls(&self) -> u64 {
        self.book.lock().unwrap().calls
    }
}

fn reply(value: &Value) -> Response {
    Response::json(StatusCode::OK, value)
}

fn err(code: i64, msg: &str) -> Response {
    reply(&json!({"errcode": code, "errmsg": format!("{msg} rid: 6565aa-e2e")}))
}

fn handle(book: &Mutex<Book>, req: &Request) -> Response {
    book.lock().unwrap().calls += 1;
    let path = req.path.clone();
    let q: HashMap<String, String> = req.params().into_iter().collect();
    let body: Value = req.json().unwrap_or(Value::Null);
    match path.as_str() {
        "/sns/jscode2session" => {
            if q.get("appid").map(String::as_str) != Some(APPID)
                || q.get("secret").map(String::as_str) != Some(APPSECRET)
                || q.get("grant_type").map(String::as_str) != Some("authorization_code")
            {
                return err(40125, "invalid appsecret");
            }
            let code = q.get("js_code").cloned().unwrap_or_default();
            match code.as_str() {
                "risky" => return err(40226, "high risk user"),
                "busy" => return err(-1, "system error"),
                _ => {}
            }
            let mut b = book.lock().unwrap();
            let Some(openid) = b.codes.get(&code).cloned() else {
                return err(40029, "invalid code");
            };
            if !b.used.insert(code.clone()) {
                return err(40163, "code been used");
            }
            let mut raw = [0u8; 16];
            for (i, byte) in raw.iter_mut().enumerate() {
                *byte =
                    u8::try_from((COUNTER.fetch_add(7, Ordering::SeqCst) + i as u64 * 31) % 251)
                        .unwrap_or(0);
            }
            let session_key = BASE64.encode(raw);
            b.session_keys.push(session_key.clone());
            reply(&json!({
                "openid": openid,
                "session_key": session_key,
                "unionid": format!("union-{openid}"),
            }))
        }
        "/cgi-bin/stable_token" => {
            if body["appid"] != json!(APPID) || body["secret"] != json!(APPSECRET) {
                return err(40125, "invalid appsecret");
            }
            reply(&json!({"access_token": "e2e-access-token", "expires_in": 7200}))
        }
        "/wxa/business/getuserphonenumber" => {
            if q.get("access_token").map(String::as_str) != Some("e2e-access-token") {
                return err(40001, "invalid credential");
            }
            let code = body["code"].as_str().unwrap_or_default().to_owned();
            if !book.lock().unwrap().phone_codes.remove(&code) {
                return err(40029, "invalid code");
            }
            reply(&json!({"errcode": 0, "errmsg": "ok", "phone_info": {
                "phoneNumber": PHONE, "purePhoneNumber": "13800138000", "countryCode": "86",
                "watermark": {"timestamp": 1_700_000_000, "appid": APPID}}}))
        }
        _ => Response::not_found(&path),
    }
}

/// A SQLite database file in a fresh temporary directory, removed on drop.
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

    pub fn db(&self) -> PathBuf {
        self.dir.join("wemint.db")
    }

    pub fn uri(&self) -> String {
        format!("sqlite:{}", self.db().display())
    }

    /// Every byte of the database and its WAL/SHM files.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).expect("read dir") {
            let path = entry.expect("entry").path();
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
        out
    }
}

impl Drop for DbDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The login function's environment: the stand-in, the database file, and the given trust.
pub fn env(wechat: &WechatStandIn, db: &DbDir, trust: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("WEMINT_STORE".to_owned(), db.uri()),
        (
            "WEMINT_SESSION_SECRET".to_owned(),
            SESSION_SECRET.to_owned(),
        ),
        ("WEMINT_DATA_KEY".to_owned(), DATA_KEY.to_owned()),
        ("WECHAT_APPID".to_owned(), APPID.to_owned()),
        ("WECHAT_APPSECRET".to_owned(), APPSECRET.to_owned()),
        ("WECHAT_API_BASE".to_owned(), wechat.base()),
        ("WEMINT_LOG".to_owned(), "warn".to_owned()),
    ];
    if let Some(t) = trust {
        env.push(("WEMINT_TRUST_PLATFORM_IDENTITY".to_owned(), t.to_owned()));
    }
    env
}

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The path of the `login` binary.
pub fn login_binary() -> PathBuf {
    wemint_e2e::function_binary("login")
}
