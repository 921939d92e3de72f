//! The running suite: keys, store, clock and the stand-ins behind one 127.0.0.1 listener.
//!
//! Routes (one port):
//! - WeChat API stand-in: `/sns/*`, `/cgi-bin/*`, `/wxa/*`, `/xpay/*` ([`crate::wechat_api`])
//! - WeChat Pay stand-in: `/v3/*` ([`crate::wechat_pay`])
//! - CloudBase gateway: `/tcb/callFunction`, `/payNotify`, `/wxPush` ([`crate::gateway`])
//! - storage: `/tcb/uploadFile`, `/storage/*` ([`crate::storage`])
//! - CloudBase document database: `/v1/database/*` ([`crate::cloudbase_db`])
//! - dev controls: `/dev/*` (login codes, client-side payments, clock, failures)
//! - console: `/` and `/console/api/*` ([`crate::console`])

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use wemint::pay::v3::server::{MerchantIdentity, PlatformSigner};
use wemint::pay::v3::{ApiV3Key, RsaSigningKey, VerifyingKey};
use wemint::store::{Filter, Store, StoreError, Update, UpdateOptions};

use crate::clock::{CLOCK_OFFSET_VAR, Clock};
use crate::deliveries;
use crate::functions::Functions;
use crate::http::{Request, Response};
use crate::keys::{DevKeys, KeysError};
use crate::seed::{DEMO_SEED, SeedError, SeedFile};

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// State directory (`.wemint`): keys, database, storage, moderation lists.
    pub root: PathBuf,
    /// Store URI; `None` means `sqlite:<root>/dev.db`.
    pub store_uri: Option<String>,
    /// Port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Multiplies WeChat's retry delays (1/1000 in dev: 15 s becomes 15 ms).
    pub retry_factor: f64,
    /// Delay before a media check verdict is pushed.
    pub media_check_delay_ms: u64,
    /// Delay before a refund succeeds and is notified.
    pub refund_delay_ms: u64,
    /// Seed the demo catalog when the store has no products.
    pub seed_demo: bool,
    /// Directory holding the function binaries; `None` means the running binary's target dir.
    pub bin_dir: Option<PathBuf>,
    /// Start the functions (off for stand-in-only tests).
    pub run_functions: bool,
}

impl SuiteOptions {
    /// Defaults for a state directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SuiteOptions {
            root: root.into(),
            store_uri: None,
            port: 8787,
            retry_factor: 0.001,
            media_check_delay_ms: 300,
            refund_delay_ms: 200,
            seed_demo: true,
            bin_dir: None,
            run_functions: true,
        }
    }

    /// The store URI in use.
    pub fn store_uri(&self) -> String {
        self.store_uri
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.root.join("dev.db").display()))
    }
}

/// Deterministic verdict lists for content security (`<root>/moderation.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Moderation {
    /// Text containing one of these is `risky`.
    pub risky_words: Vec<String>,
    /// Text containing one of these is `review`.
    pub review_words: Vec<String>,
    /// Media whose file name contains one of these is `risky`.
    pub risky_images: Vec<String>,
    /// Media whose file name contains one of these is `review`.
    pub review_images: Vec<String>,
}

impl Default for Moderation {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
        Moderation {
            risky_words: v(&["赌博", "博彩", "诈骗", "gambling", "casino", "scam"]),
            review_words: v(&["加微信", "私聊", "contact me", "discount code"]),
            risky_images: v(&["risky", "nsfw", "violence"]),
            review_images: v(&["review", "borderline"]),
        }
    }
}

/// The stand-in WeChat Pay's keys, parsed once.
#[derive(Debug)]
pub struct PayKeys {
    /// Signs responses and notifications (public-key mode, `PUB_KEY_ID_…`).
    pub signer: PlatformSigner,
    /// Checks merchant requests.
    pub merchant: MerchantIdentity,
    /// The merchant public key (checks `wx.requestPayment` paySign).
    pub merchant_key: VerifyingKey,
    /// Encrypts notification resources.
    pub apiv3: ApiV3Key,
}

/// Why the suite could not start.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// Keys.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// Store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Seed.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// Local I/O.
    #[error("{0}")]
    Io(String),
}

/// A running suite.
pub struct Suite {
    /// Options it was started with.
    pub options: SuiteOptions,
    /// Its credentials.
    pub keys: DevKeys,
    /// Its store (shared with the functions through `WEMINT_STORE`).
    pub store: Arc<dyn Store>,
    /// The dev clock.
    pub clock: Clock,
    /// Parsed WeChat Pay keys.
    pub pay: PayKeys,
    /// Wakes the delivery loop.
    pub deliveries_wake: Notify,
    /// The function instances.
    pub functions: Functions,
    /// The CloudBase document-database stand-in over [`Suite::store`].
    pub cloudbase_db: crate::cloudbase_db::CloudbaseDb,
    moderation: RwLock<Moderation>,
    addr: OnceLock<SocketAddr>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("options", &self.options)
            .field("keys", &self.keys)
            .field("addr", &self.addr.get())
            .finish_non_exhaustive()
    }
}

/// Internal failure as a 500 with a JSON body.
pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "wemint-dev internal error");
    Response::json(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"errcode": -1, "errmsg": "system error (wemint-dev)", "code": "SYSTEM_ERROR", "message": e.to_string()}),
    )
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> SuiteError {
    SuiteError::Io(format!("{what} {}: {e}", path.display()))
}

impl Suite {
    /// Prepares the state directory, keys, store and seed, binds the port and starts serving
    /// (stand-ins, gateway, deliveries, functions).
    pub async fn start(mut options: SuiteOptions) -> Result<Arc<Suite>, SuiteError> {
        // Absolute, so the functions (and `wemint-dev env` output) find the store from anywhere.
        options.root = std::path::absolute(&options.root)
            .map_err(|e| io_err("cannot resolve", &options.root, e))?;
        std::fs::create_dir_all(options.root.join("storage"))
            .map_err(|e| io_err("cannot create", &options.root, e))?;
        let (keys, _created) = DevKeys::load_or_create(&options.root.join("keys.json"))?;
        let store = wemint::store::open(&options.store_uri()).await?;
        wemint::store::bootstrap(store.as_ref()).await?;
        let pay = pay_keys(&keys).map_err(SuiteError::Io)?;
        let moderation = load_moderation(&options.root)?;
        let offset = match store.get(deliveries::STATE, "clock").await? {
            Some(doc) => doc["offsetSecs"].as_i64().unwrap_or(0),
            None => 0,
        };
        let listener = TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|e| {
                SuiteError::Io(format!("cannot listen on 127.0.0.1:{}: {e}", options.port))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| SuiteError::Io(e.to_string()))?;
        let (shutdown, _) = watch::channel(false);
        let functions = Functions::new(options.bin_dir.clone(), options.run_functions);
        let cloudbase_db = crate::cloudbase_db::CloudbaseDb::dev(Arc::clone(&store));
        let suite = Arc::new(Suite {
            options,
            keys,
            store,
            cloudbase_db,
            clock: Clock::with_offset(offset),
            pay,
            deliveries_wake: Notify::new(),
            functions,
            moderation: RwLock::new(moderation),
            addr: OnceLock::new(),
            shutdown,
        });
        let _ = suite.addr.set(addr);
        if suite.options.seed_demo {
            suite.seed_demo_if_empty().await?;
        }
        let router = Arc::clone(&suite);
        tokio::spawn(crate::http::serve(
            listener,
            move |req| {
                let suite = Arc::clone(&router);
                async move { route(&suite, req).await }
            },
            suite.shutdown_signal(),
        ));
        tokio::spawn(deliveries::run(Arc::clone(&suite)));
        Ok(suite)
    }

    /// Seeds the demo catalog and media when the store has no products yet.
    async fn seed_demo_if_empty(&self) -> Result<(), SuiteError> {
        if self
            .store
            .count(crate::seed::PRODUCTS, &Filter::all_of([]))
            .await?
            > 0
        {
            return Ok(());
        }
        let seed = SeedFile::parse(DEMO_SEED.as_bytes())?;
        seed.import(&self.store).await?;
        crate::storage::write_demo_media(self).map_err(SuiteError::Io)?;
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        match self.addr.get() {
            Some(addr) => format!("http://{addr}"),
            None => format!("http://127.0.0.1:{}", self.options.port),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.get().copied()
    }

    /// The Mini Program's original id (`gh_…`), the `ToUserName` of pushes.
    pub fn gh_id(&self) -> String {
        format!("gh_{}", &self.keys.appid[2..14])
    }

    /// The current verdict lists.
    pub fn moderation(&self) -> Moderation {
        self.moderation
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// A receiver that changes when the suite shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops serving and stops the functions.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.functions.stop_all().await;
    }

    /// The environment the functions get (DESIGN.md's variables, pointed at this suite).
    pub fn function_env(&self) -> Vec<(String, String)> {
        let k = &self.keys;
        let base = self.base_url();
        let admin = [self.keys.openid_for("admin")].join(",");
        [
            ("WEMINT_STORE", self.options.store_uri()),
            ("WEMINT_SESSION_SECRET", k.session_secret.clone()),
            ("WEMINT_DATA_KEY", k.data_key.clone()),
            ("WEMINT_TRUST_PLATFORM_IDENTITY", "cloudbase-event".into()),
            ("WEMINT_ADMIN_OPENIDS", admin),
            ("WECHAT_APPID", k.appid.clone()),
            ("WECHAT_APPSECRET", k.appsecret.clone()),
            ("WECHAT_API_BASE", base.clone()),
            ("WECHATPAY_MCHID", k.mchid.clone()),
            ("WECHATPAY_MERCHANT_SERIAL", k.merchant_serial.clone()),
            ("WECHATPAY_PRIVATE_KEY", k.merchant_private_key.clone()),
            ("WECHATPAY_APIV3_KEY", k.apiv3_key.clone()),
            ("WECHATPAY_PUBLIC_KEY", k.platform_public_key.clone()),
            ("WECHATPAY_PUBLIC_KEY_ID", k.platform_key_id.clone()),
            ("WECHATPAY_API_BASE", base.clone()),
            ("WECHATPAY_NOTIFY_URL", format!("{base}/payNotify")),
            ("XPAY_APPKEY", k.xpay_appkey.clone()),
            ("XPAY_OFFER_ID", k.xpay_offer_id.clone()),
            ("XPAY_ENV", "0".into()),
            ("WX_PUSH_TOKEN", k.push_token.clone()),
            ("WX_PUSH_AES_KEY", k.push_aes_key.clone()),
            ("WEMINT_STORAGE_URL", format!("{base}/storage")),
            ("WEMINT_STORAGE_SIGNING_KEY", k.storage_key.clone()),
            ("WEMINT_ENV_ID", k.env_id.clone()),
            (CLOCK_OFFSET_VAR, self.clock.offset().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Moves the dev clock forward, persists it, and restarts the functions so they pick it up.
    pub async fn advance_clock(&self, secs: i64) -> Result<i64, StoreError> {
        let offset = self.clock.advance(secs);
        self.store
            .update_one(
                deliveries::STATE,
                &Filter::id("clock"),
                &Update::new().set("offsetSecs", offset),
                UpdateOptions::upsert(),
            )
            .await?;
        self.functions.stop_all().await;
        Ok(offset)
    }
}

fn pay_keys(keys: &DevKeys) -> Result<PayKeys, String> {
    let signing = RsaSigningKey::from_pkcs8_der(&keys.platform_private_der())
        .map_err(|e| format!("platform key: {e}"))?;
    let merchant_key = VerifyingKey::from_der(&keys.merchant_public_der())
        .map_err(|e| format!("merchant public key: {e}"))?;
    Ok(PayKeys {
        signer: PlatformSigner::new(keys.platform_key_id.clone(), signing),
        merchant: MerchantIdentity {
            mchid: keys.mchid.clone(),
            serial_no: keys.merchant_serial.clone(),
            public_key: merchant_key.clone(),
        },
        merchant_key,
        apiv3: ApiV3Key::new(&keys.apiv3_key).map_err(|e| format!("APIv3 key: {e}"))?,
    })
}

fn load_moderation(root: &Path) -> Result<Moderation, SuiteError> {
    let path = root.join("moderation.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io_err("invalid", &path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let m = Moderation::default();
            let json =
                serde_json::to_vec_pretty(&m).map_err(|e| io_err("cannot write", &path, e))?;
            std::fs::write(&path, json).map_err(|e| io_err("cannot write", &path, e))?;
            Ok(m)
        }
        Err(e) => Err(io_err("cannot read", &path, e)),
    }
}

/// The dev user a request acts for: `X-Wemint-Dev-User`, default `alice`.
pub fn dev_user(req: &Request) -> String {
    req.header("x-wemint-dev-user")
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or("alice")
        .to_owned()
}

/// Dispatches a request.
pub async fn route(suite: &Suite, req: Request) -> Response {
    if let Some(r) = crate::wechat_api::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::wechat_pay::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::gateway::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::storage::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = suite.cloudbase_db.handle(&req).await {
        return r;
    }
    if let Some(r) = dev(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::console::handle(suite, &req).await {
        return r;
    }
    Response::not_found(&req.path)
}

fn bad_request(code: &str, message: &str) -> Response {
    Response::json(
        StatusCode::BAD_REQUEST,
        &json!({"code": code, "message": message}),
    )
}

async fn dev(suite: &Suite, req: &Request) -> Option<Response> {
    if !req.path.starts_with("/dev/") {
        return None;
    }
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match req.json() {
            Ok(v) => v,
            Err(e) => return Some(bad_request("BAD_JSON", &e.to_string())),
        }
    };
    let response = match (&req.method, req.path.as_str()) {
        (&Method::POST, "/dev/login") => {
            // `openid` is accepted as the user name too (the Mini Program's e2e test sends it).
            let user = body["user"]
                .as_str()
                .or(body["openid"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| dev_user(req));
            match crate::wechat_api::mint_code(suite, &user).await {
                Ok(v) => Response::json(StatusCode::OK, &v),
                Err(r) => r,
            }
        }
        (&Method::POST, "/dev/phoneCode") => {
            let user = body["user"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| dev_user(req));
            match crate::wechat_api::mint_phone_code(
                suite,
                &user,
                body["phone"].as_str().unwrap_or("13800138000"),
            )
            .await
            {
                Ok(v) => Response::json(StatusCode::OK, &v),
                Err(r) => r,
            }
        }
        (&Method::POST, "/dev/requestPayment") => request_payment(suite, req, &body).await,
        (&Method::POST, "/dev/requestVirtualPayment") => {
            crate::wechat_api::request_virtual_payment(
                suite,
                known_user(suite, req).as_deref(),
                &body,
            )
            .await
        }
        (&Method::POST, "/dev/pay") => {
            // `{channel, params}`: the payment createOrder returned, as the client submits it.
            let params = &body["params"];
            let reply = match body["channel"].as_str() {
                Some("wxpay") => request_payment(suite, req, params).await,
                Some("xpay") => {
                    crate::wechat_api::request_virtual_payment(
                        suite,
                        known_user(suite, req).as_deref(),
                        params,
                    )
                    .await
                }
                _ => return Some(bad_request("BAD_CHANNEL", "channel must be wxpay or xpay")),
            };
            wrap_client_reply(reply)
        }
        (&Method::POST, path) if path.starts_with("/dev/pay/") => {
            let no = crate::http::decode_segment(&path["/dev/pay/".len()..]);
            pay_reply(crate::wechat_pay::pay(suite, &no).await)
        }
        (&Method::POST, "/dev/clock/advance") => {
            let secs = body["secs"].as_i64().unwrap_or(0);
            if secs <= 0 {
                bad_request("BAD_SECS", "secs must be a positive number of seconds")
            } else {
                match suite.advance_clock(secs).await {
                    Ok(offset) => Response::json(
                        StatusCode::OK,
                        &json!({"offsetSecs": offset, "now": suite.clock.now()}),
                    ),
                    Err(e) => internal(e),
                }
            }
        }
        (&Method::POST, "/dev/deliveries/failNext") => {
            let n = body["count"].as_i64().unwrap_or(1).clamp(1, 100);
            match deliveries::fail_next(suite, n).await {
                Ok(left) => Response::json(StatusCode::OK, &json!({"failNext": left})),
                Err(e) => internal(e),
            }
        }
        (&Method::GET, "/dev/env") => {
            let env: serde_json::Map<String, Value> = suite
                .function_env()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            Response::json(StatusCode::OK, &env)
        }
        (&Method::GET, "/dev/stats") => Response::json(
            StatusCode::OK,
            &json!({
                "stableTokenFetches": crate::wechat_api::counter(suite, "stable_token").await,
                "clockOffsetSecs": suite.clock.offset(), "now": suite.clock.now(),
                "functions": suite.functions.status().await,
                "cloudbaseDb": suite.cloudbase_db.stats(),
            }),
        ),
        (&Method::GET, "/dev/deliveries") => {
            let filter = match req.param("ref") {
                Some(r) => Filter::eq("ref", r),
                None => Filter::all_of([]),
            };
            let options = wemint::store::FindOptions::new()
                .sort_desc("createdAt")
                .limit(50);
            match suite
                .store
                .find(deliveries::DELIVERIES, &filter, &options)
                .await
            {
                Ok(docs) => Response::json(StatusCode::OK, &docs),
                Err(e) => internal(e),
            }
        }
        (&Method::GET, "/dev/whoami") => {
            let user = dev_user(req);
            Response::json(
                StatusCode::OK,
                &json!({"user": user, "openid": suite.keys.openid_for(&user), "appid": suite.keys.appid}),
            )
        }
        _ => Response::not_found(&req.path),
    };
    Some(response)
}

/// The paying user when the client says who it is: `X-Wemint-Dev-User`, or a session token.
fn known_user(suite: &Suite, req: &Request) -> Option<String> {
    if req.header("x-wemint-dev-user").is_some() {
        return Some(suite.keys.openid_for(&dev_user(req)));
    }
    let token = req.header("authorization")?.strip_prefix("Bearer ")?;
    crate::storage::token_subject(suite, token).ok()
}

/// A client-side payment reply as an envelope (`/dev/pay`).
fn wrap_client_reply(reply: Response) -> Response {
    let body = reply.body_json().unwrap_or(Value::Null);
    let envelope = if reply.status.is_success() {
        json!({"ok": true, "data": body})
    } else {
        json!({"ok": false, "error": {"code": "PAYMENT_FAILED", "message": body["errMsg"].as_str().unwrap_or("payment failed")}})
    };
    Response::json(reply.status, &envelope)
}

fn pay_reply(result: Result<Value, crate::wechat_pay::PayError>) -> Response {
    use crate::wechat_pay::PayError;
    match result {
        Ok(t) => Response::json(
            StatusCode::OK,
            &json!({"errMsg": "requestPayment:ok", "transaction": t}),
        ),
        Err(PayError::NotFound(m)) => Response::json(
            StatusCode::NOT_FOUND,
            &json!({"errMsg": format!("requestPayment:fail order {m} not found")}),
        ),
        Err(e @ PayError::NotPayable(..)) => Response::json(
            StatusCode::CONFLICT,
            &json!({"errMsg": format!("requestPayment:fail {e}")}),
        ),
        Err(PayError::Store(e)) => internal(e),
    }
}

/// The client half of `wx.requestPayment`: checks `paySign` with the merchant public key over
/// `appId\ntimeStamp\nnonceStr\npackage\n` as WeChat does, then pays the order.
async fn request_payment(suite: &Suite, req: &Request, params: &Value) -> Response {
    use base64::Engine;
    let s = |k: &str| params[k].as_str().unwrap_or_default().to_owned();
    if s("signType") != "RSA" {
        return Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"errMsg": "requestPayment:fail signType must be RSA"}),
        );
    }
    let message = wemint::pay::v3::sign::pay_sign_message(
        &suite.keys.appid,
        &s("timeStamp"),
        &s("nonceStr"),
        &s("package"),
    );
    let sig = base64::engine::general_purpose::STANDARD
        .decode(s("paySign"))
        .unwrap_or_default();
    if !suite.pay.merchant_key.verify(message.as_bytes(), &sig) {
        return Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"errMsg": "requestPayment:fail paySign error"}),
        );
    }
    let order = match crate::wechat_pay::order_for_prepay(suite, &s("package")).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Response::json(
                StatusCode::NOT_FOUND,
                &json!({"errMsg": "requestPayment:fail prepay_id not found"}),
            );
        }
        Err(e) => return internal(e),
    };
    if known_user(suite, req)
        .is_some_and(|openid| order["openid"].as_str() != Some(openid.as_str()))
    {
        return Response::json(
            StatusCode::FORBIDDEN,
            &json!({"errMsg": "requestPayment:fail the order belongs to another user"}),
        );
    }
    if order["prepayAt"]
        .as_i64()
        .is_some_and(|t| t + 7200 < suite.clock.now())
    {
        return Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"errMsg": "requestPayment:fail prepay_id expired"}),
        );
    }
    pay_reply(crate::wechat_pay::pay(suite, order["_id"].as_str().unwrap_or_default()).await)
}
