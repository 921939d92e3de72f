//! Typed settings read from the environment; secrets redacted in `Debug`.
//!
//! Settings are read per section ([`Config::wechat_pay`], [`Config::xpay`], …) so a function only
//! requires the variables of the sections it uses, and it reads them once in its init. Errors
//! name the variable that is missing or malformed and never echo its value. Every secret
//! variable also accepts a `<NAME>_FILE` variant holding a path to read the value from (SCF
//! allows only 4 KB of environment per function, so keys are better shipped as files).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::pem;
use crate::secret::Secret;

/// Default time WeChat gets to deliver an image verdict before a person looks instead
/// (`WEMINT_MODERATION_TIMEOUT_SECS`).
pub const DEFAULT_VERDICT_TIMEOUT_SECS: i64 = 1800;

/// The gateway whose injected identity is trusted (`WEMINT_TRUST_PLATFORM_IDENTITY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustedGateway {
    /// CloudBase `callFunction`: `userInfo {appId, openId}` in the event.
    CloudbaseEvent,
    /// CloudBase Run / `callContainer`: `X-WX-OPENID`, `X-WX-APPID`, `X-WX-UNIONID` headers.
    CloudbaseRun,
}

impl TrustedGateway {
    /// Parses the configuration value; `None` for unset or empty.
    ///
    /// # Errors
    /// A value naming no known gateway (the value is returned: it is not secret).
    pub fn from_setting(value: Option<&str>) -> Result<Option<Self>, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some("cloudbase-event") => Ok(Some(TrustedGateway::CloudbaseEvent)),
            Some("cloudbase-run") => Ok(Some(TrustedGateway::CloudbaseRun)),
            Some(other) => Err(other.to_owned()),
        }
    }
}

/// A missing or malformed setting. The message names the variable, never its value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {var} is not set")]
    Missing {
        /// The variable name.
        var: String,
    },
    /// A variable is set but its value is not acceptable.
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid {
        /// The variable name.
        var: String,
        /// What is wrong, without the value.
        reason: String,
    },
    /// Both `NAME` and `NAME_FILE` are set.
    #[error("set either {var} or {var}_FILE, not both")]
    Ambiguous {
        /// The variable name (without `_FILE`).
        var: String,
    },
    /// `NAME_FILE` points at a file that cannot be read.
    #[error("environment variable {var}_FILE: cannot read {path}: {source}")]
    File {
        /// The variable name (without `_FILE`).
        var: String,
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn invalid(var: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.to_owned(),
        reason: reason.into(),
    }
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Where the store lives (`WEMINT_STORE`).
#[derive(Clone, Debug)]
pub enum StoreSettings {
    /// `sqlite:PATH`: one SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// `sqlite::memory:`: an in-memory SQLite database (tests, local runs).
    SqliteMemory,
    /// `mongodb://…` or `mongodb+srv://…`; the URI may carry a password, hence secret.
    Mongodb {
        /// The connection string.
        uri: Secret<String>,
    },
    /// `cloudbase://<envId>[?instance=…&database=…]`: the environment's own document database
    /// (`wemint::store::cloudbase`; the API key comes from `WEMINT_CLOUDBASE_API_KEY`).
    Cloudbase {
        /// The store URI (no credential in it).
        uri: String,
    },
}

impl StoreSettings {
    /// The URI `wemint::store::open` takes (contains the password for MongoDB: never log it).
    pub fn uri(&self) -> String {
        match self {
            StoreSettings::Sqlite { path } => format!("sqlite:{}", path.display()),
            StoreSettings::SqliteMemory => "sqlite::memory:".to_owned(),
            StoreSettings::Mongodb { uri } => uri.expose().clone(),
            StoreSettings::Cloudbase { uri } => uri.clone(),
        }
    }
}

/// Mini Program credentials (`WECHAT_*`).
#[derive(Clone, Debug)]
pub struct WechatSettings {
    /// `WECHAT_APPID`.
    pub appid: String,
    /// `WECHAT_APPSECRET`.
    pub appsecret: Secret<String>,
    /// `WECHAT_API_BASE`, default `https://api.weixin.qq.com`, without a trailing slash.
    pub api_base: String,
}

/// The WeChat Pay public key (public key mode, `PUB_KEY_ID_…`).
#[derive(Clone, Debug)]
pub struct WechatPayPublicKey {
    /// `WECHATPAY_PUBLIC_KEY_ID`.
    pub id: String,
    /// `WECHATPAY_PUBLIC_KEY` as SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
}

/// WeChat Pay merchant settings (`WECHATPAY_*`).
#[derive(Clone, Debug)]
pub struct WechatPaySettings {
    /// `WECHATPAY_MCHID`: the merchant id (digits).
    pub mchid: String,
    /// `WECHATPAY_MERCHANT_SERIAL`: serial number of the merchant API certificate.
    pub merchant_serial: String,
    /// `WECHATPAY_PRIVATE_KEY`: the merchant private key as PKCS#8 DER.
    pub private_key_pkcs8_der: Secret<Vec<u8>>,
    /// `WECHATPAY_APIV3_KEY`: the 32-byte APIv3 key (AES-256-GCM key for notifications).
    pub apiv3_key: Secret<[u8; 32]>,
    /// `WECHATPAY_PUBLIC_KEY` + `WECHATPAY_PUBLIC_KEY_ID`, when the merchant uses public key mode.
    pub public_key: Option<WechatPayPublicKey>,
    /// `WECHATPAY_PLATFORM_CERTS`: DER of each certificate in the PEM bundle; empty means
    /// "download and refresh them".
    pub platform_certs_der: Vec<Vec<u8>>,
    /// `WECHATPAY_API_BASE`, default `https://api.mch.weixin.qq.com`, without a trailing slash.
    pub api_base: String,
    /// `WECHATPAY_NOTIFY_URL`: where WeChat Pay sends notifications (needed to create orders).
    pub notify_url: Option<String>,
}

/// Which virtual payment environment (`XPAY_ENV`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XpayEnv {
    /// `0`: real money.
    Production,
    /// `1`: the sandbox.
    Sandbox,
}

impl XpayEnv {
    /// The number the xpay APIs use (`env` field).
    pub fn as_number(self) -> u8 {
        match self {
            Self::Production => 0,
            Self::Sandbox => 1,
        }
    }
}

/// Mini Program virtual payment settings (`XPAY_*`).
#[derive(Clone, Debug)]
pub struct XpaySettings {
    /// `XPAY_APPKEY`: the AppKey of the chosen environment (signs `paySig`).
    pub appkey: Secret<String>,
    /// `XPAY_OFFER_ID`.
    pub offer_id: String,
    /// `XPAY_ENV`: `0` production (default) or `1` sandbox.
    pub env: XpayEnv,
}

/// Message push settings (`WX_PUSH_*`).
#[derive(Clone, Debug)]
pub struct WxPushSettings {
    /// `WX_PUSH_TOKEN`: the token configured in the Mini Program console.
    pub token: Secret<String>,
    /// `WX_PUSH_AES_KEY`: the 43-character EncodingAESKey, decoded to its 32 bytes; absent in
    /// plaintext mode.
    pub aes_key: Option<Secret<[u8; 32]>>,
}

enum Vars {
    Process,
    Map(HashMap<String, String>),
}

/// Access to settings. Cheap to create; each section reads and validates its variables when
/// asked, so call the sections a function needs once during init.
pub struct Config {
    vars: Vars,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Config { .. }")
    }
}

impl Config {
    /// Reads from the process environment.
    pub fn from_env() -> Self {
        Self {
            vars: Vars::Process,
        }
    }

    /// Reads from the given pairs only (tests, the emulator).
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: Vars::Map(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// A variable's value; unset and empty (after trimming) are the same thing.
    fn get(&self, name: &str) -> Option<String> {
        let value = match &self.vars {
            Vars::Process => std::env::var(name).ok(),
            Vars::Map(map) => map.get(name).cloned(),
        }?;
        (!value.trim().is_empty()).then_some(value)
    }

    /// An optional plain (non-secret) setting a single function reads, trimmed; unset and
    /// blank are `None`. Sections above are for settings shared by several functions.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.trim().to_owned())
    }

    fn required(&self, name: &str) -> Result<String> {
        self.get(name)
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| ConfigError::Missing {
                var: name.to_owned(),
            })
    }

    /// A secret from `NAME` or from the file named by `NAME_FILE`.
    fn secret(&self, name: &str) -> Result<Option<Secret<String>>> {
        let file_var = format!("{name}_FILE");
        match (self.get(name), self.get(&file_var)) {
            (Some(_), Some(_)) => Err(ConfigError::Ambiguous {
                var: name.to_owned(),
            }),
            (Some(v), None) => Ok(Some(Secret::new(v.trim().to_owned()))),
            (None, Some(path)) => {
                let path = PathBuf::from(path.trim());
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::File {
                    var: name.to_owned(),
                    path: path.clone(),
                    source,
                })?;
                if text.trim().is_empty() {
                    return Err(invalid(&file_var, "the file is empty"));
                }
                Ok(Some(Secret::new(text.trim().to_owned())))
            }
            (None, None) => Ok(None),
        }
    }

    fn required_secret(&self, name: &str) -> Result<Secret<String>> {
        self.secret(name)?.ok_or_else(|| ConfigError::Missing {
            var: name.to_owned(),
        })
    }

    fn base_url(&self, name: &str, default: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(default.to_owned()),
            Some(v) => parse_url(name, v.trim()),
        }
    }

    /// `WEMINT_STORE`.
    ///
    /// # Errors
    /// Missing, or not `sqlite:PATH`, `sqlite::memory:`, `mongodb://…`, `mongodb+srv://…`,
    /// `cloudbase://…`.
    pub fn store(&self) -> Result<StoreSettings> {
        const VAR: &str = "WEMINT_STORE";
        let value = self.required_secret(VAR)?;
        let value = value.expose();
        if value == "sqlite::memory:" {
            Ok(StoreSettings::SqliteMemory)
        } else if let Some(path) = value.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(invalid(VAR, "`sqlite:` needs a file path"));
            }
            Ok(StoreSettings::Sqlite {
                path: PathBuf::from(path),
            })
        } else if value.starts_with("mongodb://") || value.starts_with("mongodb+srv://") {
            Ok(StoreSettings::Mongodb {
                uri: Secret::new(value.clone()),
            })
        } else if value.starts_with("cloudbase://") {
            Ok(StoreSettings::Cloudbase { uri: value.clone() })
        } else {
            Err(invalid(
                VAR,
                "expected `sqlite:PATH`, `sqlite::memory:`, `mongodb://…`, `mongodb+srv://…` or `cloudbase://<envId>`",
            ))
        }
    }

    /// `WEMINT_SESSION_SECRET`: the key that signs session tokens, at least 32 bytes.
    ///
    /// # Errors
    /// Missing or shorter than 32 bytes.
    pub fn session_secret(&self) -> Result<Secret<Vec<u8>>> {
        const VAR: &str = "WEMINT_SESSION_SECRET";
        let value = self.required_secret(VAR)?;
        if value.expose().len() < 32 {
            return Err(invalid(VAR, "must be at least 32 bytes long"));
        }
        Ok(Secret::new(value.expose().as_bytes().to_vec()))
    }

    /// `WEMINT_DATA_KEY`: the 32-byte key (base64) that encrypts stored session keys.
    ///
    /// # Errors
    /// Missing, not base64, or not 32 bytes.
    pub fn data_key(&self) -> Result<Secret<[u8; 32]>> {
        const VAR: &str = "WEMINT_DATA_KEY";
        let value = self.required_secret(VAR)?;
        let bytes = BASE64
            .decode(value.expose())
            .map_err(|_| invalid(VAR, "not valid base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid(VAR, "must decode to exactly 32 bytes"))?;
        Ok(Secret::new(key))
    }

    /// `WEMINT_TRUST_PLATFORM_IDENTITY`: which gateway's identity claims to trust, if any.
    ///
    /// # Errors
    /// Set to something other than `cloudbase-event` or `cloudbase-run`.
    pub fn trust_platform_identity(&self) -> Result<Option<TrustedGateway>> {
        const VAR: &str = "WEMINT_TRUST_PLATFORM_IDENTITY";
        TrustedGateway::from_setting(self.get(VAR).as_deref())
            .map_err(|_| invalid(VAR, "expected `cloudbase-event`, `cloudbase-run` or unset"))
    }

    /// `WEMINT_ADMIN_OPENIDS`: comma-separated openids the operator makes project
    /// administrators (`login` records them as `role: admin`). Empty when unset.
    pub fn admin_openids(&self) -> Vec<String> {
        self.get("WEMINT_ADMIN_OPENIDS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `WEMINT_DEV_CLOCK_OFFSET_SECS`: seconds wemint-dev adds to the system time (its movable
    /// dev clock); 0 when unset. Never set in production.
    ///
    /// # Errors
    /// Not an integer.
    pub fn dev_clock_offset_secs(&self) -> Result<i64> {
        const VAR: &str = "WEMINT_DEV_CLOCK_OFFSET_SECS";
        match self.get(VAR) {
            None => Ok(0),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| invalid(VAR, "must be an integer number of seconds")),
        }
    }

    /// The Mini Program credentials.
    ///
    /// # Errors
    /// `WECHAT_APPID` or `WECHAT_APPSECRET` missing, or `WECHAT_API_BASE` not an http(s) URL.
    pub fn wechat(&self) -> Result<WechatSettings> {
        Ok(WechatSettings {
            appid: self.required("WECHAT_APPID")?,
            appsecret: self.required_secret("WECHAT_APPSECRET")?,
            api_base: self.base_url("WECHAT_API_BASE", "https://api.weixin.qq.com")?,
        })
    }

    /// The Official Account's credentials (`WX_OA_APPID`, `WX_OA_APPSECRET`; the API base
    /// is `WECHAT_API_BASE`, shared with the Mini Program).
    ///
    /// # Errors
    /// `WX_OA_APPID` or `WX_OA_APPSECRET` missing, or `WECHAT_API_BASE` malformed.
    pub fn oa_wechat(&self) -> Result<WechatSettings> {
        Ok(WechatSettings {
            appid: self.required("WX_OA_APPID")?,
            appsecret: self.required_secret("WX_OA_APPSECRET")?,
            api_base: self.base_url("WECHAT_API_BASE", "https://api.weixin.qq.com")?,
        })
    }

    /// The WeChat Pay merchant settings.
    ///
    /// # Errors
    /// A required variable missing, or any variable malformed (see `docs/runtime.md`).
    pub fn wechat_pay(&self) -> Result<WechatPaySettings> {
        let mchid = self.required("WECHATPAY_MCHID")?;
        if !mchid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("WECHATPAY_MCHID", "must be digits only"));
        }
        let merchant_serial = self.required("WECHATPAY_MERCHANT_SERIAL")?;
        if !merchant_serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("WECHATPAY_MERCHANT_SERIAL", "must be hexadecimal"));
        }
        let key_text = self.required_secret("WECHATPAY_PRIVATE_KEY")?;
        let private_key = private_key_der("WECHATPAY_PRIVATE_KEY", key_text.expose())?;

        let apiv3 = self.required_secret("WECHATPAY_APIV3_KEY")?;
        let apiv3_key: [u8; 32] = apiv3
            .expose()
            .as_bytes()
            .try_into()
            .map_err(|_| invalid("WECHATPAY_APIV3_KEY", "must be exactly 32 characters"))?;

        let public_key = match (
            self.secret("WECHATPAY_PUBLIC_KEY")?,
            self.get("WECHATPAY_PUBLIC_KEY_ID"),
        ) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: "WECHATPAY_PUBLIC_KEY_ID".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: "WECHATPAY_PUBLIC_KEY".into(),
                });
            }
            (Some(key), Some(id)) => {
                let id = id.trim().to_owned();
                if !id.starts_with("PUB_KEY_ID_") {
                    return Err(invalid(
                        "WECHATPAY_PUBLIC_KEY_ID",
                        "must start with PUB_KEY_ID_",
                    ));
                }
                Some(WechatPayPublicKey {
                    id,
                    spki_der: public_key_der("WECHATPAY_PUBLIC_KEY", key.expose())?,
                })
            }
        };

        let platform_certs_der = match self.secret("WECHATPAY_PLATFORM_CERTS")? {
            None => Vec::new(),
            Some(bundle) => certificates_der("WECHATPAY_PLATFORM_CERTS", bundle.expose())?,
        };

        let notify_url = match self.get("WECHATPAY_NOTIFY_URL") {
            None => None,
            Some(v) => Some(parse_url("WECHATPAY_NOTIFY_URL", v.trim())?),
        };

        Ok(WechatPaySettings {
            mchid,
            merchant_serial: merchant_serial.to_ascii_uppercase(),
            private_key_pkcs8_der: Secret::new(private_key),
            apiv3_key: Secret::new(apiv3_key),
            public_key,
            platform_certs_der,
            api_base: self.base_url("WECHATPAY_API_BASE", "https://api.mch.weixin.qq.com")?,
            notify_url,
        })
    }

    /// The virtual payment settings.
    ///
    /// # Errors
    /// `XPAY_APPKEY` or `XPAY_OFFER_ID` missing, or `XPAY_ENV` not `0`/`1`.
    pub fn xpay(&self) -> Result<XpaySettings> {
        let env = match self.get("XPAY_ENV").as_deref().map(str::trim) {
            None | Some("0") => XpayEnv::Production,
            Some("1") => XpayEnv::Sandbox,
            Some(_) => {
                return Err(invalid("XPAY_ENV", "must be 0 (production) or 1 (sandbox)"));
            }
        };
        Ok(XpaySettings {
            appkey: self.required_secret("XPAY_APPKEY")?,
            offer_id: self.required("XPAY_OFFER_ID")?,
            env,
        })
    }

    /// `WECHATPAY_APIV2_KEY`: the APIv2 key of a merchant still receiving v2 (XML)
    /// notifications; `None` when unset (v2 not used).
    ///
    /// # Errors
    /// Set but not 32 characters.
    pub fn wechat_pay_v2_key(&self) -> Result<Option<Secret<String>>> {
        const VAR: &str = "WECHATPAY_APIV2_KEY";
        match self.secret(VAR)? {
            Some(key) if key.expose().len() != 32 => Err(invalid(VAR, "must be 32 characters")),
            other => Ok(other),
        }
    }

    /// The message push settings.
    ///
    /// # Errors
    /// `WX_PUSH_TOKEN` missing, or `WX_PUSH_AES_KEY` not a 43-character EncodingAESKey.
    pub fn wx_push(&self) -> Result<WxPushSettings> {
        const AES: &str = "WX_PUSH_AES_KEY";
        let aes_key = match self.secret(AES)? {
            None => None,
            Some(k) => {
                let k = k.expose();
                if k.len() != 43 {
                    return Err(invalid(AES, "must be the 43-character EncodingAESKey"));
                }
                // WeChat generates these keys without caring for the last symbol's spare bits,
                // so decode leniently like its reference SDKs do.
                let lenient = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_allow_trailing_bits(true)
                        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
                );
                let bytes = lenient
                    .decode(k)
                    .map_err(|_| invalid(AES, "not valid base64"))?;
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| invalid(AES, "must decode to 32 bytes"))?;
                Some(Secret::new(key))
            }
        };
        Ok(WxPushSettings {
            token: self.required_secret("WX_PUSH_TOKEN")?,
            aes_key,
        })
    }

    /// Where protected files are served from: the emulator's local storage when
    /// `WEMINT_STORAGE_SIGNING_KEY` is set (with `WEMINT_STORAGE_URL`), else CloudBase storage
    /// of the environment `WEMINT_ENV_ID` through the WeChat API (`WECHAT_*`).
    ///
    /// # Errors
    /// The variables of the chosen mode missing or malformed.
    pub fn cloud_files(&self) -> Result<CloudFilesSettings> {
        match self.secret("WEMINT_STORAGE_SIGNING_KEY")? {
            Some(signing_key) => Ok(CloudFilesSettings::Local {
                url: parse_url("WEMINT_STORAGE_URL", &self.required("WEMINT_STORAGE_URL")?)?
                    .trim_end_matches('/')
                    .to_owned(),
                signing_key,
            }),
            None => Ok(CloudFilesSettings::Cloudbase {
                env_id: self.required("WEMINT_ENV_ID")?,
            }),
        }
    }

    /// `WEMINT_MODERATION_TIMEOUT_SECS`: how long WeChat gets to deliver an image verdict
    /// before the post goes to the administrators' queue (60 s to 7 days; default 1800).
    ///
    /// # Errors
    /// A value that is not a whole number of seconds in range.
    pub fn moderation_timeout_secs(&self) -> Result<i64> {
        const VAR: &str = "WEMINT_MODERATION_TIMEOUT_SECS";
        match self.get(VAR) {
            None => Ok(DEFAULT_VERDICT_TIMEOUT_SECS),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|s| (60..=7 * 86_400).contains(s))
                .ok_or_else(|| invalid(VAR, "must be whole seconds from 60 to 604800")),
        }
    }

    /// Renewal reminders (subscribe messages), or `None` when `WEMINT_RENEWAL_TEMPLATE_ID`
    /// is unset: `WEMINT_RENEWAL_REMIND_DAYS` (days before the period end, default 3, 1–30),
    /// `WEMINT_RENEWAL_TEMPLATE_FIELDS` (template keys to values: `thing1=plan,time2=periodEnd`
    /// by default; values are `plan`, `periodEnd`, `price`) and `WEMINT_RENEWAL_PAGE` (the
    /// page the message opens, default `membership/pages/membership/membership`).
    ///
    /// # Errors
    /// A malformed day count or field list.
    pub fn renewal_reminders(&self) -> Result<Option<ReminderSettings>> {
        let Some(template_id) = self.get("WEMINT_RENEWAL_TEMPLATE_ID") else {
            return Ok(None);
        };
        const DAYS: &str = "WEMINT_RENEWAL_REMIND_DAYS";
        let days = match self.get(DAYS) {
            None => 3,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=30).contains(d))
                .ok_or_else(|| invalid(DAYS, "must be a whole number of days from 1 to 30"))?,
        };
        const FIELDS: &str = "WEMINT_RENEWAL_TEMPLATE_FIELDS";
        let spec = self
            .get(FIELDS)
            .unwrap_or_else(|| "thing1=plan,time2=periodEnd".to_owned());
        let mut fields = Vec::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(FIELDS, "expected key=value pairs"))?;
            let value = match value.trim() {
                "plan" => ReminderField::Plan,
                "periodEnd" => ReminderField::PeriodEnd,
                "price" => ReminderField::Price,
                _ => return Err(invalid(FIELDS, "values must be plan, periodEnd or price")),
            };
            fields.push((key.trim().to_owned(), value));
        }
        if fields.is_empty() {
            return Err(invalid(FIELDS, "names no field"));
        }
        Ok(Some(ReminderSettings {
            template_id: template_id.trim().to_owned(),
            days,
            fields,
            page: self
                .get("WEMINT_RENEWAL_PAGE")
                .map(|p| p.trim().to_owned())
                .unwrap_or_else(|| "membership/pages/membership/membership".to_owned()),
        }))
    }
}

/// Renewal reminder settings, see [`Config::renewal_reminders`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderSettings {
    /// The subscribe message template.
    pub template_id: String,
    /// Days before the period end a reminder goes out.
    pub days: u32,
    /// Template keys and what fills them.
    pub fields: Vec<(String, ReminderField)>,
    /// Mini Program page the message opens.
    pub page: String,
}

/// A value a renewal reminder can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderField {
    /// The plan title.
    Plan,
    /// The period end (China time, `YYYY-MM-DD HH:MM`).
    PeriodEnd,
    /// The renewal price (`18.00元`).
    Price,
}

/// Cloud file settings, see [`Config::cloud_files`].
#[derive(Debug)]
pub enum CloudFilesSettings {
    /// The emulator's local storage: temp URLs are signed here with the shared key.
    Local {
        /// `WEMINT_STORAGE_URL` without a trailing `/`.
        url: String,
        /// `WEMINT_STORAGE_SIGNING_KEY` (used as given, as bytes).
        signing_key: Secret<String>,
    },
    /// CloudBase cloud storage (temp URLs from `tcb/batchdownloadfile`).
    Cloudbase {
        /// `WEMINT_ENV_ID`: the CloudBase environment id.
        env_id: String,
    },
}

fn parse_url(var: &str, value: &str) -> Result<String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| invalid(var, "must be an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || value.chars().any(char::is_whitespace) {
        return Err(invalid(
            var,
            "must be an http:// or https:// URL with a host",
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// PEM blocks in `text`, errors naming `var`.
fn pem_blocks(var: &str, text: &str) -> Result<Vec<pem::Block>> {
    pem::blocks(text).map_err(|e| invalid(var, e.to_string()))
}

/// A DER value given either as PEM with `label` or as bare base64.
fn der_from_pem_or_base64(var: &str, text: &str, label: &str) -> Result<Vec<u8>> {
    let der = if pem::is_pem(text) {
        let mut blocks = pem_blocks(var, text)?;
        if blocks.len() != 1 {
            return Err(invalid(var, "expected exactly one PEM block"));
        }
        let pem::Block { label: found, der } = blocks.remove(0);
        if found == "RSA PRIVATE KEY" {
            return Err(invalid(
                var,
                "PKCS#1 key; convert it to PKCS#8 (`openssl pkcs8 -topk8 -nocrypt`)",
            ));
        }
        if found != label {
            return Err(invalid(
                var,
                format!("expected a `{label}` PEM block, found `{found}`"),
            ));
        }
        der
    } else {
        pem::decode_base64(text)
            .map_err(|_| invalid(var, format!("neither a `{label}` PEM block nor base64 DER")))?
    };
    // Every DER structure here is a SEQUENCE; catch pasting the wrong thing early.
    if der.first() != Some(&0x30) || der.len() < 32 {
        return Err(invalid(
            var,
            "does not look like DER (expected an ASN.1 SEQUENCE)",
        ));
    }
    Ok(der)
}

fn private_key_der(var: &str, text: &str) -> Result<Vec<u8>> {
    der_from_pem_or_base64(var, text, "PRIVATE KEY")
}

fn public_key_der(var: &str, text: &str) -> Result<Vec<u8>> {
    der_from_pem_or_base64(var, text, "PUBLIC KEY")
}

fn certificates_der(var: &str, text: &str) -> Result<Vec<Vec<u8>>> {
    let blocks = pem_blocks(var, text)?;
    if blocks.is_empty() {
        return Err(invalid(var, "no `CERTIFICATE` PEM block found"));
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.label == "CERTIFICATE" {
                Ok(block.der)
            } else {
                Err(invalid(
                    var,
                    format!("unexpected PEM block `{}`", block.label),
                ))
            }
        })
        .collect()
}

/// Tuning of the `realtime` function (all optional).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealtimeSettings {
    /// `WEMINT_REALTIME_POLL_MS` (default 100): stream poll interval while busy.
    pub poll_fast_ms: u64,
    /// `WEMINT_REALTIME_IDLE_POLL_MS` (default 5000): poll interval while idle.
    pub poll_idle_ms: u64,
}

impl Config {
    /// The `realtime` function's tuning.
    ///
    /// # Errors
    /// A value that is not a whole number of milliseconds from 10 to 60000.
    pub fn realtime(&self) -> Result<RealtimeSettings> {
        let ms = |var: &'static str, default: u64| match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (10..=60_000).contains(n))
                .ok_or_else(|| invalid(var, "must be milliseconds from 10 to 60000")),
        };
        Ok(RealtimeSettings {
            poll_fast_ms: ms("WEMINT_REALTIME_POLL_MS", 100)?,
            poll_idle_ms: ms("WEMINT_REALTIME_IDLE_POLL_MS", 5000)?,
        })
    }
}

/// The CRM webhook (`wemint::crm::webhook`).
#[derive(Clone, Debug)]
pub struct CrmWebhookSettings {
    /// Where customer changes are POSTed (`CRM_WEBHOOK_URL`).
    pub url: String,
    /// The HMAC-SHA256 key (`CRM_WEBHOOK_SECRET`).
    pub secret: Secret<String>,
}

impl Config {
    /// The CRM webhook (`CRM_WEBHOOK_URL` and `CRM_WEBHOOK_SECRET`, or `CRM_WEBHOOK_SECRET_FILE`);
    /// `None` when the URL is unset.
    ///
    /// # Errors
    /// A URL that is not http(s), or a URL without a secret (or a secret under 16 bytes).
    pub fn crm_webhook(&self) -> Result<Option<CrmWebhookSettings>> {
        let Some(url) = self.get("CRM_WEBHOOK_URL") else {
            return Ok(None);
        };
        let url = parse_url("CRM_WEBHOOK_URL", url.trim())?;
        let secret = self.required_secret("CRM_WEBHOOK_SECRET")?;
        if secret.expose().len() < 16 {
            return Err(invalid("CRM_WEBHOOK_SECRET", "must be at least 16 bytes"));
        }
        Ok(Some(CrmWebhookSettings { url, secret }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 64 bytes of a fake DER SEQUENCE: enough for the shape checks, never used as a key.
    fn fake_der() -> Vec<u8> {
        let mut der = vec![0x30, 0x3e];
        der.extend(std::iter::repeat_n(7u8, 62));
        der
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = BASE64.encode(der);
        let body: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            body.join("\n")
        )
    }

    fn pay_vars() -> Vec<(&'static str, String)> {
        vec![
            ("WECHATPAY_MCHID", "1900000109".into()),
            (
                "WECHATPAY_MERCHANT_SERIAL",
                "5157f09efdc096de15ebe81a47057a72".into(),
            ),
            ("WECHATPAY_PRIVATE_KEY", pem("PRIVATE KEY", &fake_der())),
            (
                "WECHATPAY_APIV3_KEY",
                "0123456789abcdef0123456789abcdef".into(),
            ),
        ]
    }

    #[test]
    fn secrets_are_redacted() {
        let cfg = Config::from_vars(pay_vars());
        let pay = cfg.wechat_pay().unwrap();
        let dbg = format!("{pay:?}");
        assert!(dbg.contains("[redacted]"));
        assert!(!dbg.contains("0123456789abcdef"));
        assert_eq!(pay.merchant_serial, "5157F09EFDC096DE15EBE81A47057A72");
        assert_eq!(pay.private_key_pkcs8_der.expose(), &fake_der());
        assert_eq!(pay.api_base, "https://api.mch.weixin.qq.com");
        assert!(pay.public_key.is_none() && pay.platform_certs_der.is_empty());
    }

    #[test]
    fn missing_variable_is_named() {
        let mut vars = pay_vars();
        vars.retain(|(k, _)| *k != "WECHATPAY_APIV3_KEY");
        let err = Config::from_vars(vars).wechat_pay().unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable WECHATPAY_APIV3_KEY is not set"
        );
    }

    #[test]
    fn malformed_values_are_named_without_their_value() {
        let mut vars = pay_vars();
        vars.push(("WECHATPAY_APIV3_KEY", "short-secret".into()));
        vars.remove(3);
        let err = Config::from_vars(vars)
            .wechat_pay()
            .unwrap_err()
            .to_string();
        assert!(err.contains("WECHATPAY_APIV3_KEY"), "{err}");
        assert!(!err.contains("short-secret"), "{err}");
    }

    #[test]
    fn private_key_as_base64_der_or_file_and_pkcs1_rejected() {
        let mut vars = pay_vars();
        vars[2].1 = BASE64.encode(fake_der());
        assert_eq!(
            Config::from_vars(vars.clone())
                .wechat_pay()
                .unwrap()
                .private_key_pkcs8_der
                .expose(),
            &fake_der()
        );

        vars[2].1 = pem("RSA PRIVATE KEY", &fake_der());
        let err = Config::from_vars(vars.clone())
            .wechat_pay()
            .unwrap_err()
            .to_string();
        assert!(err.contains("PKCS#8"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apiclient_key.pem");
        std::fs::write(&path, pem("PRIVATE KEY", &fake_der())).unwrap();
        vars.remove(2);
        vars.push(("WECHATPAY_PRIVATE_KEY_FILE", path.display().to_string()));
        let pay = Config::from_vars(vars.clone()).wechat_pay().unwrap();
        assert_eq!(pay.private_key_pkcs8_der.expose(), &fake_der());

        vars.push(("WECHATPAY_PRIVATE_KEY", BASE64.encode(fake_der())));
        assert!(matches!(
            Config::from_vars(vars).wechat_pay(),
            Err(ConfigError::Ambiguous { .. })
        ));
    }

    #[test]
    fn missing_key_file_names_variable_and_path() {
        let mut vars = pay_vars();
        vars.remove(2);
        vars.push(("WECHATPAY_PRIVATE_KEY_FILE", "/nonexistent/key.pem".into()));
        let err = Config::from_vars(vars)
            .wechat_pay()
            .unwrap_err()
            .to_string();
        assert!(err.contains("WECHATPAY_PRIVATE_KEY_FILE") && err.contains("/nonexistent/key.pem"));
    }

    #[test]
    fn public_key_mode_needs_both_variables() {
        let mut vars = pay_vars();
        vars.push(("WECHATPAY_PUBLIC_KEY", pem("PUBLIC KEY", &fake_der())));
        let err = Config::from_vars(vars.clone())
            .wechat_pay()
            .unwrap_err()
            .to_string();
        assert!(err.contains("WECHATPAY_PUBLIC_KEY_ID"), "{err}");
        vars.push((
            "WECHATPAY_PUBLIC_KEY_ID",
            "PUB_KEY_ID_0114232134912410000000000000".into(),
        ));
        let pk = Config::from_vars(vars)
            .wechat_pay()
            .unwrap()
            .public_key
            .unwrap();
        assert_eq!(pk.spki_der, fake_der());
    }

    #[test]
    fn platform_certificate_bundle() {
        let mut vars = pay_vars();
        let bundle = format!(
            "{}{}",
            pem("CERTIFICATE", &fake_der()),
            pem("CERTIFICATE", &[0x30; 40])
        );
        vars.push(("WECHATPAY_PLATFORM_CERTS", bundle));
        let certs = Config::from_vars(vars)
            .wechat_pay()
            .unwrap()
            .platform_certs_der;
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1], vec![0x30; 40]);
    }

    #[test]
    fn store_forms() {
        let store = |v: &str| Config::from_vars([("WEMINT_STORE", v)]).store();
        assert!(matches!(
            store("sqlite::memory:"),
            Ok(StoreSettings::SqliteMemory)
        ));
        assert!(
            matches!(store("sqlite:/tmp/w.db"), Ok(StoreSettings::Sqlite { path }) if path.as_os_str() == "/tmp/w.db")
        );
        let mongo = store("mongodb://u:pw@host/db").unwrap();
        assert!(!format!("{mongo:?}").contains("pw"));
        assert!(
            matches!(store("cloudbase://env-1a2b"), Ok(StoreSettings::Cloudbase { uri }) if uri == "cloudbase://env-1a2b")
        );
        assert!(store("postgres://x").is_err());
        assert!(matches!(
            Config::from_vars([("X", "y")]).store(),
            Err(ConfigError::Missing { var }) if var == "WEMINT_STORE"
        ));
    }

    #[test]
    fn session_keys_and_trust() {
        let cfg = Config::from_vars([
            ("WEMINT_SESSION_SECRET", "s".repeat(32)),
            ("WEMINT_DATA_KEY", BASE64.encode([9u8; 32])),
            ("WEMINT_TRUST_PLATFORM_IDENTITY", "cloudbase-run".into()),
        ]);
        assert_eq!(cfg.session_secret().unwrap().expose().len(), 32);
        assert_eq!(cfg.data_key().unwrap().expose(), &[9u8; 32]);
        assert_eq!(
            cfg.trust_platform_identity().unwrap(),
            Some(TrustedGateway::CloudbaseRun)
        );
        let bad = Config::from_vars([
            ("WEMINT_SESSION_SECRET", "short"),
            ("WEMINT_DATA_KEY", "AAAA"),
            ("WEMINT_TRUST_PLATFORM_IDENTITY", "everyone"),
        ]);
        assert!(bad.session_secret().is_err());
        assert!(bad.data_key().unwrap_err().to_string().contains("32 bytes"));
        assert!(bad.trust_platform_identity().is_err());
        assert_eq!(
            Config::from_vars([("A", "b")])
                .trust_platform_identity()
                .unwrap(),
            None
        );
    }

    #[test]
    fn trusted_gateway_setting_parses() {
        assert_eq!(TrustedGateway::from_setting(None), Ok(None));
        assert_eq!(
            TrustedGateway::from_setting(Some("cloudbase-run")),
            Ok(Some(TrustedGateway::CloudbaseRun))
        );
        assert!(TrustedGateway::from_setting(Some("anything")).is_err());
    }

    #[test]
    fn wechat_xpay_push() {
        let cfg = Config::from_vars([
            ("WECHAT_APPID", "wx1234567890abcdef"),
            ("WECHAT_APPSECRET", "appsecret-value"),
            ("WECHAT_API_BASE", "http://127.0.0.1:7000/"),
            ("XPAY_APPKEY", "appkey"),
            ("XPAY_OFFER_ID", "1450000000"),
            ("XPAY_ENV", "1"),
            ("WX_PUSH_TOKEN", "tok"),
            (
                "WX_PUSH_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            ),
        ]);
        let wx = cfg.wechat().unwrap();
        assert_eq!(wx.api_base, "http://127.0.0.1:7000");
        assert!(!format!("{wx:?}").contains("appsecret-value"));
        assert_eq!(cfg.xpay().unwrap().env, XpayEnv::Sandbox);
        assert!(cfg.wx_push().unwrap().aes_key.is_some());
        let bad = Config::from_vars([
            ("WECHAT_APPID", "wx1"),
            ("WECHAT_APPSECRET", "s"),
            ("WECHAT_API_BASE", "ftp://x"),
        ]);
        assert!(
            bad.wechat()
                .unwrap_err()
                .to_string()
                .contains("WECHAT_API_BASE")
        );
        let bad = Config::from_vars([("WX_PUSH_TOKEN", "t"), ("WX_PUSH_AES_KEY", "short")]);
        assert!(bad.wx_push().is_err());
        let bad = Config::from_vars([
            ("XPAY_APPKEY", "k"),
            ("XPAY_OFFER_ID", "1"),
            ("XPAY_ENV", "2"),
        ]);
        assert!(bad.xpay().unwrap_err().to_string().contains("XPAY_ENV"));
    }

    #[test]
    fn dev_clock_offset_and_cloud_file_modes() {
        use crate::clock::Clock as _;
        let clock = |cfg: &Config| cfg.dev_clock_offset_secs().map(crate::clock::from_offset);
        let real = crate::clock::SystemClock.now_unix();
        let cfg = Config::from_vars([("WEMINT_DEV_CLOCK_OFFSET_SECS", "86400")]);
        let now = clock(&cfg).unwrap().now_unix();
        assert!((real + 86_400..real + 86_400 + 5).contains(&now));
        let none = Config::from_vars(Vec::<(String, String)>::new());
        assert!(clock(&none).unwrap().now_unix() - real < 5);
        let bad = Config::from_vars([("WEMINT_DEV_CLOCK_OFFSET_SECS", "1d")]);
        assert!(clock(&bad).is_err());

        let local = Config::from_vars([
            ("WEMINT_STORAGE_SIGNING_KEY", "key-value-1"),
            ("WEMINT_STORAGE_URL", "http://127.0.0.1:9/storage/"),
        ]);
        let settings = local.cloud_files().unwrap();
        assert!(!format!("{settings:?}").contains("key-value-1"));
        match settings {
            CloudFilesSettings::Local { url, signing_key } => {
                assert_eq!(url, "http://127.0.0.1:9/storage");
                assert_eq!(signing_key.expose(), "key-value-1");
            }
            other => panic!("{other:?}"),
        }
        let missing_url = Config::from_vars([("WEMINT_STORAGE_SIGNING_KEY", "k")]);
        assert!(
            missing_url
                .cloud_files()
                .unwrap_err()
                .to_string()
                .contains("WEMINT_STORAGE_URL")
        );
        let cloud = Config::from_vars([("WEMINT_ENV_ID", "prod-1a2b")]);
        assert!(matches!(
            cloud.cloud_files().unwrap(),
            CloudFilesSettings::Cloudbase { env_id } if env_id == "prod-1a2b"
        ));
        assert!(none.cloud_files().is_err());
    }

    #[test]
    fn renewal_reminder_settings() {
        assert_eq!(
            Config::from_vars(Vec::<(String, String)>::new())
                .renewal_reminders()
                .unwrap(),
            None
        );
        let cfg = Config::from_vars([
            ("WEMINT_RENEWAL_TEMPLATE_ID", "tmpl-1"),
            (
                "WEMINT_RENEWAL_TEMPLATE_FIELDS",
                "thing2=plan, amount3=price",
            ),
        ]);
        let r = cfg.renewal_reminders().unwrap().unwrap();
        assert_eq!(r.days, 3);
        assert_eq!(
            r.fields,
            vec![
                ("thing2".to_owned(), ReminderField::Plan),
                ("amount3".to_owned(), ReminderField::Price)
            ]
        );
        for (var, value) in [
            ("WEMINT_RENEWAL_REMIND_DAYS", "0"),
            ("WEMINT_RENEWAL_REMIND_DAYS", "x"),
            ("WEMINT_RENEWAL_TEMPLATE_FIELDS", "thing1=nickname"),
            ("WEMINT_RENEWAL_TEMPLATE_FIELDS", "thing1"),
        ] {
            let cfg = Config::from_vars([("WEMINT_RENEWAL_TEMPLATE_ID", "t"), (var, value)]);
            assert!(
                cfg.renewal_reminders()
                    .unwrap_err()
                    .to_string()
                    .contains(var),
                "{var}={value}"
            );
        }
    }
}
