//! Building the order service from the environment, once per instance (function init).

use std::sync::Arc;

use super::Commerce;
use crate::config::{Config, ConfigError, StoreSettings};
use crate::identity::DataKey;
use crate::pay::v3::PayClient;
use crate::pay::{SharedClock, SystemClock};
use crate::runtime::BoxError;
use crate::store::{self, Store};

/// A missing variable means "this deployment does not use that section"; anything else is
/// an error.
fn optional<T>(section: Result<T, ConfigError>) -> Result<Option<T>, ConfigError> {
    match section {
        Ok(v) => Ok(Some(v)),
        Err(ConfigError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the store named by `WEMINT_STORE` and declares the collections' indexes.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, BoxError> {
    let uri = match config.store()? {
        StoreSettings::Sqlite { path } => format!("sqlite:{}", path.display()),
        StoreSettings::SqliteMemory => "sqlite::memory:".to_owned(),
        StoreSettings::Mongodb { uri } => uri.expose().clone(),
    };
    let store = store::open(&uri).await?;
    store::bootstrap(store.as_ref()).await?;
    Ok(store)
}

/// The order service as the environment configures it: `WEMINT_STORE`, `WECHAT_APPID`, WeChat
/// Pay when `WECHATPAY_MCHID` is set, virtual payment when `XPAY_APPKEY` is set,
/// `WEMINT_DATA_KEY` for session_keys. (`WECHAT_APPSECRET` is required too: virtual payment
/// server calls need the access token.) Returns the service and, when configured, the v3
/// client (payNotify verifies notifications with it).
pub async fn from_config(config: &Config) -> Result<(Commerce, Option<Arc<PayClient>>), BoxError> {
    let clock: SharedClock = Arc::new(SystemClock);
    let store = open_store(config).await?;
    // payNotify and reconcile of a WeChat Pay-only deployment need no Mini Program secret.
    let wechat = optional(config.wechat())?;
    let appid = wechat.as_ref().map(|w| w.appid.clone()).unwrap_or_default();
    let mut commerce = Commerce::new(store.clone(), appid, clock.clone());
    let mut client = None;
    if let Some(settings) = optional(config.wechat_pay())? {
        let pay = Arc::new(
            PayClient::from_settings(&settings)?
                .with_clock(clock.clone())
                .with_shared_download_throttle(store.clone()),
        );
        commerce = commerce.with_wxpay(pay.clone());
        client = Some(pay);
    }
    if let Some(xpay) = optional(config.xpay())? {
        let wechat = wechat.ok_or(ConfigError::Missing {
            var: "WECHAT_APPID / WECHAT_APPSECRET (virtual payment server calls)".into(),
        })?;
        let client = crate::wechat::WechatClient::new(
            crate::wechat::WechatConfig::new(
                wechat.appid.clone(),
                wechat.appsecret.expose().clone(),
                Some(&wechat.api_base),
            ),
            store,
        )?;
        let env = crate::pay::xpay::Env::from(xpay.env);
        let provider = super::gateway::XpayProvider::new(
            &wechat.api_base,
            xpay.appkey.expose(),
            xpay.offer_id.clone(),
            env,
            Arc::new(client),
        )?;
        commerce = commerce.with_xpay(Arc::new(provider));
    }
    if let Some(key) = optional(config.data_key())? {
        commerce = commerce.with_data_key(Arc::new(DataKey::from_bytes(key.expose())?));
    }
    Ok((commerce, client))
}
