//! One place builds a function's dependencies from its configuration.
//!
//! [`Deps::from_config`] opens the store named by `WEMINT_STORE` (and declares its indexes),
//! builds the deployment's one clock (the dev clock offset included), the authenticator, and
//! whichever optional clients the configuration names. Every function's `init` starts here,
//! so the clock, the store and the clients are wired the same way everywhere.
//!
//! An optional part is "not used" exactly when its key variable is unset (`WECHAT_APPID`,
//! `WECHATPAY_MCHID`, `XPAY_APPKEY`, `WEMINT_ENV_ID` / `WEMINT_STORAGE_SIGNING_KEY`,
//! `WEMINT_DATA_KEY`); a part that is set but incomplete or malformed is an error. A function
//! that cannot work without a part asks for it with [`required`].
//!
//! This module is the top of the crate's layers: it imports the services, nothing imports it.

use std::sync::Arc;

use crate::clock::{self, SharedClock};
use crate::cloud_files::{Storage, TokenSource};
use crate::commerce::{Commerce, ShippingPlatform, ShippingSettings, XpayProvider};
use crate::config::{CloudFilesSettings, Config, ConfigError, StoreSettings};
use crate::identity::{Authenticator, DataKey};
use crate::moderation::{Moderation, WechatChecks};
use crate::pay::v3::PayClient;
use crate::runtime::BoxError;
use crate::store::{self, Store};
use crate::wechat::WechatClient;

/// What a function's handlers are built from.
#[derive(Clone)]
pub struct Deps {
    /// The store, opened and bootstrapped.
    pub store: Arc<dyn Store>,
    /// The deployment's clock: system time plus `WEMINT_DEV_CLOCK_OFFSET_SECS`.
    pub clock: SharedClock,
    /// Identifies callers (`WEMINT_SESSION_SECRET`, `WEMINT_TRUST_PLATFORM_IDENTITY`); absent
    /// when no session secret is set, as for the webhook-only payNotify and wxPush, which
    /// verify platform signatures instead of sessions.
    pub auth: Option<Authenticator>,
    /// The Mini Program's WeChat API client (`WECHAT_*`), sharing the store's token cache.
    pub wechat: Option<WechatClient>,
    /// WeChat Pay v3 (`WECHATPAY_*`), on the deployment's clock.
    pub wechat_pay: Option<Arc<PayClient>>,
    /// Virtual payment (`XPAY_*`; needs `WECHAT_*` for its server calls).
    pub xpay: Option<Arc<XpayProvider>>,
    /// Short-lived URLs for protected files (CloudBase, or the emulator's local storage).
    pub cloud_files: Option<Storage>,
    /// Seals stored session_keys (`WEMINT_DATA_KEY`).
    pub data_key: Option<Arc<DataKey>>,
    /// Shipping deadlines and message templates (`WEMINT_SHIP_*`, `WEMINT_SHIPPING_*`).
    pub shipping: ShippingSettings,
    /// The Official Account's API client (`WX_OA_APPID` + `WX_OA_APPSECRET`), a second app
    /// with its own stable token in the same token cache.
    pub oa: Option<WechatClient>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("store", &self.store.backend())
            .field("auth", &self.auth)
            .field("wechat", &self.wechat.is_some())
            .field("wechat_pay", &self.wechat_pay.is_some())
            .field("xpay", &self.xpay.is_some())
            .field("cloud_files", &self.cloud_files)
            .field("data_key", &self.data_key.is_some())
            .finish_non_exhaustive()
    }
}

impl Deps {
    /// Builds everything `config` names.
    ///
    /// # Errors
    /// A required setting missing, any setting malformed, an optional part set but
    /// incomplete, or the store not opening.
    pub async fn from_config(config: &Config) -> Result<Deps, BoxError> {
        let clock = clock::from_offset(config.dev_clock_offset_secs()?);
        let auth = optional(
            Authenticator::from_config(config, clock.clone()),
            "WEMINT_SESSION_SECRET",
        )?;
        let store = open_store(&config.store()?).await?;
        let wechat_settings = optional(config.wechat(), "WECHAT_APPID")?;
        let wechat = match &wechat_settings {
            Some(settings) => Some(WechatClient::from_settings(settings, store.clone())?),
            None => None,
        };
        let wechat_pay = match optional(config.wechat_pay(), "WECHATPAY_MCHID")? {
            Some(settings) => Some(Arc::new(
                PayClient::from_settings(&settings)?
                    .with_clock(clock.clone())
                    .with_shared_download_throttle(store.clone()),
            )),
            None => None,
        };
        let xpay = match optional(config.xpay(), "XPAY_APPKEY")? {
            Some(xpay) => {
                let (Some(settings), Some(client)) = (&wechat_settings, &wechat) else {
                    return Err(missing("WECHAT_APPID (virtual payment server calls)").into());
                };
                Some(Arc::new(XpayProvider::new(
                    &settings.api_base,
                    xpay.appkey.expose(),
                    xpay.offer_id.clone(),
                    crate::pay::xpay::Env::from(xpay.env),
                    Arc::new(client.clone()),
                )?))
            }
            None => None,
        };
        let cloud_files = match optional(config.cloud_files(), "WEMINT_ENV_ID")? {
            Some(settings) => Some(cloud_files(settings, wechat_settings.as_ref(), &wechat)?),
            None => None,
        };
        let data_key = match optional(config.data_key(), "WEMINT_DATA_KEY")? {
            Some(key) => Some(Arc::new(DataKey::from_bytes(key.expose())?)),
            None => None,
        };
        let shipping = ShippingSettings::from_config(config)?;
        let oa = match (
            config.optional("WX_OA_APPID"),
            config.optional("WX_OA_APPSECRET"),
        ) {
            (Some(_), Some(_)) => Some(WechatClient::from_settings(
                &config.oa_wechat()?,
                store.clone(),
            )?),
            _ => None,
        };
        Ok(Deps {
            store,
            clock,
            auth,
            wechat,
            wechat_pay,
            xpay,
            cloud_files,
            data_key,
            shipping,
            oa,
        })
    }

    /// The order service over these dependencies: WeChat Pay and virtual payment when
    /// configured, stored session_keys opened with the data key.
    pub fn commerce(&self) -> Commerce {
        let appid = self
            .wechat
            .as_ref()
            .map(|w| w.appid().to_owned())
            .unwrap_or_default();
        let mut commerce = Commerce::new(self.store.clone(), appid, self.clock.clone());
        if let Some(pay) = &self.wechat_pay {
            commerce = commerce.with_wxpay(pay.clone());
        }
        if let Some(xpay) = &self.xpay {
            commerce = commerce.with_xpay(xpay.clone());
        }
        if let Some(key) = &self.data_key {
            commerce = commerce.with_data_key(key.clone());
        }
        let platform = self
            .wechat
            .clone()
            .map(|w| Arc::new(w) as Arc<dyn ShippingPlatform>);
        commerce.with_shipping(platform, self.shipping.clone())
    }

    /// The analytics service (issue 20), keeping raw events `ANALYTICS_RETENTION_DAYS`
    /// (default 90).
    ///
    /// # Errors
    /// A retention that is not a number of days 1..=3650.
    pub fn analytics(&self, config: &Config) -> Result<crate::analytics::Analytics, BoxError> {
        let days = match config.optional("ANALYTICS_RETENTION_DAYS") {
            None => crate::analytics::DEFAULT_RETENTION_DAYS,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or("ANALYTICS_RETENTION_DAYS must be a number of days, 1..=3650")?,
        };
        Ok(crate::analytics::Analytics::new(
            self.store.clone(),
            self.clock.clone(),
            days,
        ))
    }

    /// The complaints service: WeChat Pay complaints when WeChat Pay is configured, virtual
    /// payment complaints when virtual payment is.
    pub fn complaints(&self) -> crate::complaints::Complaints {
        use crate::complaints::{Complaints, WxpayComplaints, XpayComplaints};
        let mut complaints = Complaints::new(self.store.clone(), self.clock.clone());
        if let Some(pay) = &self.wechat_pay {
            complaints = complaints.with_api(Arc::new(WxpayComplaints(pay.clone())));
        }
        if let Some(xpay) = &self.xpay {
            complaints = complaints.with_api(Arc::new(XpayComplaints::new(
                xpay.client().clone(),
                xpay.wechat().clone(),
            )));
        }
        complaints
    }

    /// The funnel's sending side: the Official Account's client and its template settings
    /// (`WX_OA_TEMPLATES`, `WX_OA_SEND_PER_MINUTE`, `WX_OA_SEND_PER_FOLLOWER_DAY`), when the
    /// account and the Mini Program are both configured.
    ///
    /// # Errors
    /// A malformed `WX_OA_*` setting.
    pub fn funnel(
        &self,
        config: &Config,
    ) -> Result<Option<(WechatClient, crate::funnel::FunnelSettings)>, BoxError> {
        let (Some(oa), Some(mp)) = (&self.oa, &self.wechat) else {
            return Ok(None);
        };
        let number = |name: &str| -> Result<Option<u32>, BoxError> {
            config
                .optional(name)
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| format!("{name} must be a number").into())
                })
                .transpose()
        };
        let settings = crate::funnel::FunnelSettings::parse(
            mp.appid(),
            config.optional("WX_OA_TEMPLATES").as_deref(),
            number("WX_OA_SEND_PER_MINUTE")?,
            number("WX_OA_SEND_PER_FOLLOWER_DAY")?,
        )?;
        Ok(Some((oa.clone(), settings)))
    }

    /// Content moderation through the WeChat API (images reach WeChat as cloud file URLs).
    ///
    /// # Errors
    /// `WECHAT_APPID` missing: moderation cannot work without the WeChat API.
    pub fn moderation(&self) -> Result<Moderation, ConfigError> {
        let wechat = required(self.wechat.clone(), "WECHAT_APPID")?;
        let checks = WechatChecks::new(wechat, self.cloud_files.clone(), self.clock.clone());
        Ok(Moderation::new(
            self.store.clone(),
            Arc::new(checks),
            self.clock.clone(),
        ))
    }
}

// The CRM records and webhook (issue 20).
impl Deps {
    /// The CRM side: records over the store and clock, pushing to `CRM_WEBHOOK_URL` (signed
    /// with `CRM_WEBHOOK_SECRET`) through the shared outbound client when it is set.
    ///
    /// # Errors
    /// A malformed `CRM_WEBHOOK_*` setting.
    pub fn crm(&self, config: &Config) -> Result<crate::crm::Crm, ConfigError> {
        let webhook = config.crm_webhook()?.map(|settings| {
            crate::crm::Webhook::new(settings, Arc::new(crate::crm::webhook::HttpTransport))
        });
        Ok(crate::crm::Crm::new(
            self.store.clone(),
            self.clock.clone(),
            webhook,
        ))
    }
}

/// Opens the store `settings` name and declares the collections' indexes.
///
/// # Errors
/// The store does not open or its indexes cannot be declared.
pub async fn open_store(settings: &StoreSettings) -> Result<Arc<dyn Store>, BoxError> {
    let store = store::open(&settings.uri()).await?;
    store::bootstrap(store.as_ref()).await?;
    Ok(store)
}

/// A part a function cannot work without.
///
/// # Errors
/// `ConfigError::Missing` naming `var` (the part's key variable) when the part is absent.
pub fn required<T>(part: Option<T>, var: &str) -> Result<T, ConfigError> {
    part.ok_or_else(|| missing(var))
}

fn missing(var: &str) -> ConfigError {
    ConfigError::Missing {
        var: var.to_owned(),
    }
}

/// A section whose key variable `key` is unset is "not used"; any other problem is an error.
fn optional<T>(section: Result<T, ConfigError>, key: &str) -> Result<Option<T>, ConfigError> {
    match section {
        Ok(v) => Ok(Some(v)),
        Err(ConfigError::Missing { var }) if var == key => Ok(None),
        Err(e) => Err(e),
    }
}

/// Cloud files: the emulator's local storage signs offline; CloudBase needs the WeChat API.
fn cloud_files(
    settings: CloudFilesSettings,
    wechat_settings: Option<&crate::config::WechatSettings>,
    wechat: &Option<WechatClient>,
) -> Result<Storage, BoxError> {
    let tokens = wechat
        .clone()
        .map(|client| Arc::new(client) as Arc<dyn TokenSource>);
    if matches!(settings, CloudFilesSettings::Cloudbase { .. }) && tokens.is_none() {
        return Err(
            "CloudBase storage (WEMINT_ENV_ID) needs WECHAT_APPID and WECHAT_APPSECRET".into(),
        );
    }
    let api_base = wechat_settings.map(|w| w.api_base.as_str()).unwrap_or("");
    Ok(Storage::from_settings(
        settings,
        api_base,
        tokens,
        crate::outbound::client()?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock as _;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            ("WEMINT_STORE", "sqlite::memory:"),
            ("WEMINT_SESSION_SECRET", SECRET),
        ];
        vars.extend_from_slice(extra);
        Config::from_vars(vars)
    }

    async fn error(extra: &[(&str, &str)]) -> String {
        Deps::from_config(&config(extra))
            .await
            .unwrap_err()
            .to_string()
    }

    #[tokio::test]
    async fn every_part_runs_on_the_configured_clock() {
        let real = clock::SystemClock.now_unix();
        let deps = Deps::from_config(&config(&[("WEMINT_DEV_CLOCK_OFFSET_SECS", "86400")]))
            .await
            .unwrap();
        let shifted = |now: i64| (real + 86_400..real + 86_405).contains(&now);
        assert!(shifted(deps.clock.now_unix()));
        assert!(shifted(deps.auth.as_ref().unwrap().now()));
        assert!(shifted(deps.commerce().now()));
        assert!(deps.wechat.is_none() && deps.wechat_pay.is_none() && deps.xpay.is_none());
        assert!(deps.cloud_files.is_none() && deps.data_key.is_none());
        assert!(
            error(&[("WEMINT_DEV_CLOCK_OFFSET_SECS", "1d")])
                .await
                .contains("WEMINT_DEV_CLOCK_OFFSET_SECS")
        );
    }

    #[tokio::test]
    async fn optional_parts_are_absent_only_when_their_key_is_unset() {
        let wechat = [
            ("WECHAT_APPID", "wx1234567890abcdef"),
            ("WECHAT_APPSECRET", "appsecret"),
        ];
        let deps = Deps::from_config(&config(&wechat)).await.unwrap();
        assert_eq!(deps.wechat.as_ref().unwrap().appid(), "wx1234567890abcdef");
        // Half a section is an error, not "not used".
        assert!(
            error(&[("WECHAT_APPID", "wx1")])
                .await
                .contains("WECHAT_APPSECRET")
        );
        assert!(
            error(&[("XPAY_APPKEY", "k"), ("XPAY_OFFER_ID", "1")])
                .await
                .contains("WECHAT_APPID")
        );
        assert!(
            error(&[("XPAY_APPKEY", "k")])
                .await
                .contains("XPAY_OFFER_ID")
        );
        assert!(
            error(&[("WEMINT_ENV_ID", "env-1")])
                .await
                .contains("WECHAT_APPID")
        );
        let local = Deps::from_config(&config(&[
            ("WEMINT_STORAGE_SIGNING_KEY", "key"),
            ("WEMINT_STORAGE_URL", "http://127.0.0.1:9/storage"),
        ]))
        .await
        .unwrap();
        assert!(matches!(local.cloud_files, Some(Storage::Local { .. })));
        let mut with_cloudbase = wechat.to_vec();
        with_cloudbase.push(("WEMINT_ENV_ID", "env-1"));
        let cloud = Deps::from_config(&config(&with_cloudbase)).await.unwrap();
        assert!(matches!(cloud.cloud_files, Some(Storage::Cloudbase { .. })));
        assert!(cloud.moderation().is_ok());
        assert_eq!(
            local.moderation().unwrap_err().to_string(),
            "environment variable WECHAT_APPID is not set"
        );
    }

    #[tokio::test]
    async fn the_store_is_required_and_the_authenticator_only_where_sessions_are_used() {
        let no_store = Config::from_vars([("WEMINT_SESSION_SECRET", SECRET)]);
        let err = Deps::from_config(&no_store).await.unwrap_err().to_string();
        assert!(err.contains("WEMINT_STORE"), "{err}");
        // Webhook-only functions (payNotify, wxPush) run without a session secret; the
        // callables ask for it with `required`.
        let no_secret = Config::from_vars([("WEMINT_STORE", "sqlite::memory:")]);
        let deps = Deps::from_config(&no_secret).await.unwrap();
        let err = required(deps.auth, "WEMINT_SESSION_SECRET")
            .unwrap_err()
            .to_string();
        assert!(err.contains("WEMINT_SESSION_SECRET"), "{err}");
        // A secret that is set but unusable is an error, never "not used".
        let short = Config::from_vars([
            ("WEMINT_STORE", "sqlite::memory:"),
            ("WEMINT_SESSION_SECRET", "too short"),
        ]);
        let err = Deps::from_config(&short).await.unwrap_err().to_string();
        assert!(err.contains("WEMINT_SESSION_SECRET"), "{err}");
    }
}
