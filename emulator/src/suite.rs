//! The suite's state: options, keys, store, dev clock, fault hooks and function pool, and its
//! life cycle (start, environment, clock moves, shutdown). Requests are dispatched by
//! [`crate::router`]; the stand-ins are in [`crate::standins`], the dev controls in
//! [`crate::dev`], the timers in [`crate::timers`], the CloudBase document-database stand-in
//! in [`crate::standins::cloudbase_db`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use wemint::pay::v3::server::{MerchantIdentity, PlatformSigner};
use wemint::pay::v3::{ApiV3Key, RsaSigningKey, VerifyingKey};
use wemint::store::{Filter, Store, StoreError, Update, UpdateOptions};

use crate::clock::{CLOCK_OFFSET_VAR, Clock};
use crate::deliveries;
use crate::functions::Functions;
use crate::http::Response;
use crate::keys::{DevKeys, KeysError};
use crate::seed::{DEMO_SEED, SeedError, SeedFile};
use crate::standins::faults::Faults;

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
    /// Fire the functions' timers on the dev clock ([`crate::timers`]).
    pub run_timers: bool,
    /// Extra variables for the functions (added after the suite's own, so they win).
    pub extra_env: Vec<(String, String)>,
    /// Where `tcb/batchdownloadfile` points its download URLs. `None`: the suite's own signed
    /// temp URLs, which it serves. `Some("https://…")`: CloudBase-shaped URLs on that host
    /// (`{base}/{cloud path}?sign=…&t=…`), as real WeChat answers, for tests that check what a
    /// function hands on (nothing serves them).
    pub download_url_base: Option<String>,
    /// Run the functions on the `cloudbase://` backend against the suite's CloudBase
    /// document-database stand-in (`--store cloudbase`), as deployed; the suite itself keeps
    /// using [`SuiteOptions::store_uri`], the store the stand-in serves.
    pub cloudbase_functions: bool,
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
            run_timers: true,
            extra_env: Vec::new(),
            download_url_base: None,
            cloudbase_functions: false,
        }
    }

    /// Only the stand-ins, for tests that run the functions themselves: any free port, no
    /// functions, no timers, no demo catalog.
    pub fn standins_only(root: impl Into<PathBuf>) -> Self {
        SuiteOptions {
            port: 0,
            seed_demo: false,
            run_functions: false,
            run_timers: false,
            ..SuiteOptions::new(root)
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
    /// Fault hooks of the stand-ins.
    pub faults: Faults,
    /// Wakes the timer loop (the dev clock moved).
    pub timers_wake: Notify,
    /// The CloudBase document-database stand-in over [`Suite::store`].
    pub cloudbase_db: crate::standins::cloudbase_db::CloudbaseDb,
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
        crate::standins::cloudbase_db::mark_provisioned(store.as_ref()).await?;
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
        let cloudbase_db = crate::standins::cloudbase_db::CloudbaseDb::dev(Arc::clone(&store));
        let suite = Arc::new(Suite {
            options,
            keys,
            store,
            cloudbase_db,
            clock: Clock::with_offset(offset),
            pay,
            deliveries_wake: Notify::new(),
            functions,
            faults: Faults::default(),
            timers_wake: Notify::new(),
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
                async move { crate::router::route(&suite, req).await }
            },
            suite.shutdown_signal(),
        ));
        tokio::spawn(deliveries::run(Arc::clone(&suite)));
        if suite.options.run_timers && suite.options.run_functions {
            tokio::spawn(crate::timers::run(Arc::clone(&suite)));
        }
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
        crate::standins::cloud_storage::write_demo_media(self).map_err(SuiteError::Io)?;
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

    /// The Official Account's original id (`ToUserName` of its pushes).
    pub fn oa_gh_id(&self) -> String {
        format!("gh_{}", &self.keys.oa_appid()[2..14])
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

    /// The environment the functions get (the variables of docs/runtime.md, pointed at this suite).
    pub fn function_env(&self) -> Vec<(String, String)> {
        let k = &self.keys;
        let base = self.base_url();
        let admin = [self.keys.openid_for("admin")].join(",");
        let store: Vec<(&str, String)> = if self.options.cloudbase_functions {
            vec![
                ("WEMINT_STORE", format!("cloudbase://{}", k.env_id)),
                ("WEMINT_CLOUDBASE_ENDPOINT", base.clone()),
                (
                    "WEMINT_CLOUDBASE_API_KEY",
                    crate::standins::cloudbase_db::DEV_API_KEY.to_owned(),
                ),
            ]
        } else {
            vec![("WEMINT_STORE", self.options.store_uri())]
        };
        store
            .into_iter()
            .chain([
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
                // The Official Account (issue 22): its own appid and secret, and templates.
                ("WX_OA_APPID", k.oa_appid()),
                ("WX_OA_APPSECRET", k.oa_appsecret()),
                (
                    "WX_OA_TEMPLATES",
                    crate::standins::official_account::DEV_TEMPLATES.to_owned(),
                ),
                // The CRM webhook (issue 20): the suite's CRM receiver.
                (
                    "CRM_WEBHOOK_URL",
                    format!("{base}{}", crate::standins::crm::PATH),
                ),
                (
                    "CRM_WEBHOOK_SECRET",
                    crate::standins::crm::DEV_SECRET.to_owned(),
                ),
            ])
            .map(|(k, v)| (k.to_owned(), v))
            .chain(self.options.extra_env.iter().cloned())
            .collect()
    }

    /// Moves the dev clock forward, persists it, restarts the functions so they pick it up,
    /// and wakes the timers (the minutes that passed fire them).
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
        self.timers_wake.notify_one();
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
