//! Building the order service from the environment, once per instance (function init).

use std::sync::Arc;

use super::Commerce;
use crate::config::{Config, ConfigError, StoreSettings, WechatPaySettings};
use crate::identity::DataKey;
use crate::pay::v3::{
    ApiV3Key, MerchantSigner, PayClient, PayClientConfig, PlatformCertificate, RsaSigningKey,
    Verifier, VerifyingKey,
};
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

/// The v3 client for the configured merchant (public key mode, a given certificate bundle,
/// or certificates downloaded on first use).
pub fn pay_client(settings: &WechatPaySettings, clock: SharedClock) -> Result<PayClient, BoxError> {
    let key = RsaSigningKey::from_pkcs8_der(settings.private_key_pkcs8_der.expose())?;
    let signer = Arc::new(MerchantSigner::new(
        settings.mchid.clone(),
        settings.merchant_serial.clone(),
        key,
    ));
    let verifier = Verifier::new();
    if let Some(pk) = &settings.public_key {
        verifier.add_public_key(&pk.id, VerifyingKey::from_der(&pk.spki_der)?);
    }
    for der in &settings.platform_certs_der {
        verifier.add_certificate(PlatformCertificate::from_der(der)?);
    }
    let apiv3 = std::str::from_utf8(settings.apiv3_key.expose())
        .map_err(|_| "WECHATPAY_APIV3_KEY must be 32 ASCII characters")?;
    let apiv3 = Arc::new(ApiV3Key::new(apiv3)?);
    let mut config = PayClientConfig::new(settings.notify_url.clone().unwrap_or_default());
    config.base_url = settings.api_base.clone();
    config.public_key_id = settings.public_key.as_ref().map(|k| k.id.clone());
    Ok(PayClient::new(config, signer, verifier, apiv3)?.with_clock(clock))
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
        let pay = Arc::new(pay_client(&settings, clock.clone())?);
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
        let env = match xpay.env {
            crate::config::XpayEnv::Production => crate::pay::xpay::Env::Production,
            crate::config::XpayEnv::Sandbox => crate::pay::xpay::Env::Sandbox,
        };
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
