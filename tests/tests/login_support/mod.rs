//! Support for the `login` end-to-end tests: the emulator's WeChat stand-in
//! (`wemint_emulator`, code2Session, stable_token, phone number, with its fault hooks) and the
//! function's environment over a SQLite file the tests can inspect.

#![allow(unreachable_pub, dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wemint::store::{Filter, FindOptions};
use wemint_emulator::standins::faults::{Fault, System};
use wemint_emulator::standins::wechat_api::{self, SESSIONS};
use wemint_emulator::suite::{Suite, SuiteOptions};

pub const SESSION_SECRET: &str = "e2e-login-session-secret-0123456789";
/// base64 of 32 bytes.
pub const DATA_KEY: &str = "bG9naW4tZTJlLWRhdGEta2V5LTAxMjM0NTY3ODlhYmM=";
pub const PHONE: &str = "+8613800138000";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The emulator's WeChat stand-in, alone (no functions). Codes are minted for dev users
/// ([`WechatStandIn::code_for`]) and work once, like real `wx.login` codes; a dev user's
/// openid is [`WechatStandIn::openid`]. Failures come from the fault hooks.
#[derive(Clone)]
pub struct WechatStandIn {
    suite: Arc<Suite>,
    _dir: Arc<DbDir>,
}

impl WechatStandIn {
    /// Starts the stand-ins on a free local port (served on the current tokio runtime).
    pub async fn start() -> Self {
        let dir = DbDir::new("wechat");
        let suite = Suite::start(SuiteOptions::standins_only(dir.dir.join(".wemint")))
            .await
            .expect("the WeChat stand-in starts");
        Self {
            suite,
            _dir: Arc::new(dir),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        self.suite.base_url()
    }

    /// The Mini Program's AppID the stand-in accepts.
    pub fn appid(&self) -> String {
        self.suite.keys.appid.clone()
    }

    /// The openid of dev user `user`.
    pub fn openid(&self, user: &str) -> String {
        self.suite.keys.openid_for(user)
    }

    /// The unionid of dev user `user`.
    pub fn unionid(&self, user: &str) -> String {
        self.suite.keys.unionid_for(user)
    }

    /// A fresh single-use login code for dev user `user`.
    pub async fn code_for(&self, user: &str) -> String {
        let minted = wechat_api::mint_code(&self.suite, user)
            .await
            .unwrap_or_else(|_| panic!("no code for {user}"));
        minted["code"].as_str().unwrap().to_owned()
    }

    /// A fresh single-use phone-number code for dev user `user` ([`PHONE`]).
    pub async fn phone_code(&self, user: &str) -> String {
        let minted = wechat_api::mint_phone_code(&self.suite, user, PHONE)
            .await
            .unwrap_or_else(|_| panic!("no phone code for {user}"));
        minted["code"].as_str().unwrap().to_owned()
    }

    /// The next `count` code2Session calls answer WeChat `errcode`.
    pub fn fail_logins(&self, count: u32, errcode: i64, errmsg: &str) {
        self.suite.faults.inject(
            Fault::next(System::WechatApi, count)
                .on("/sns/jscode2session")
                .errcode(errcode, errmsg),
        );
    }

    /// Drops the faults not used up.
    pub fn clear_faults(&self) {
        self.suite.faults.clear();
    }

    /// Every session_key handed out so far.
    pub async fn session_keys(&self) -> Vec<String> {
        let sessions = self
            .suite
            .store
            .find(SESSIONS, &Filter::All, &FindOptions::new())
            .await
            .expect("stand-in sessions");
        sessions
            .iter()
            .flat_map(|s| s["issuedKeys"].as_array().cloned().unwrap_or_default())
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
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
        ("WECHAT_APPID".to_owned(), wechat.appid()),
        (
            "WECHAT_APPSECRET".to_owned(),
            wechat.suite.keys.appsecret.clone(),
        ),
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
