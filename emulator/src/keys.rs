//! The suite's own credentials, generated on first start and kept under `.wemint/keys.json`
//! (mode 0600, gitignored): the Mini Program's AppID/AppSecret, the merchant's RSA key pair,
//! the stand-in WeChat Pay's public-key-mode key pair (`PUB_KEY_ID_…`), the APIv3 key, the
//! xpay AppKey, the message push token and EncodingAESKey, and the functions' own secrets.
//!
//! They are never the test vectors' keys (`testdata/vectors`): a developer's local suite is a private
//! world, and a leaked test vector must never validate anything in it.

use std::fmt;
use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde::{Deserialize, Serialize};

/// Why the keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file is not valid.
    #[error("key file {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Key generation failed in aws-lc.
    #[error("key generation failed")]
    Generate,
}

/// Every secret and identifier of the local suite. `Debug` shows identifiers only.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DevKeys {
    /// Mini Program AppID (`wx` + 16 hex).
    pub appid: String,
    /// Mini Program AppSecret (32 hex).
    pub appsecret: String,
    /// CloudBase environment id.
    pub env_id: String,
    /// Merchant number (10 digits).
    pub mchid: String,
    /// Merchant API certificate serial (40 upper-case hex).
    pub merchant_serial: String,
    /// Merchant private key, PKCS#8 DER, base64.
    pub merchant_private_key: String,
    /// Merchant public key, SPKI DER, base64 (what WeChat Pay keeps to verify requests).
    pub merchant_public_key: String,
    /// WeChat Pay public key id (`PUB_KEY_ID_` + 32 digits).
    pub platform_key_id: String,
    /// WeChat Pay's private key, PKCS#8 DER, base64 (signs responses and notifications).
    pub platform_private_key: String,
    /// WeChat Pay's public key, SPKI DER, base64 (`WECHATPAY_PUBLIC_KEY`).
    pub platform_public_key: String,
    /// APIv3 key (32 ASCII letters and digits).
    pub apiv3_key: String,
    /// xpay AppKey.
    pub xpay_appkey: String,
    /// xpay offer id.
    pub xpay_offer_id: String,
    /// Message push token.
    pub push_token: String,
    /// Message push EncodingAESKey (43 characters of `[A-Za-z0-9]`).
    pub push_aes_key: String,
    /// `WEMINT_SESSION_SECRET`.
    pub session_secret: String,
    /// `WEMINT_DATA_KEY` (base64 of 32 bytes).
    pub data_key: String,
    /// Signs local storage temp URLs (hex of 32 bytes).
    pub storage_key: String,
    /// Derives deterministic dev openids from user names (hex of 16 bytes).
    pub openid_salt: String,
}

impl fmt::Debug for DevKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevKeys")
            .field("appid", &self.appid)
            .field("env_id", &self.env_id)
            .field("mchid", &self.mchid)
            .field("merchant_serial", &self.merchant_serial)
            .field("platform_key_id", &self.platform_key_id)
            .field("xpay_offer_id", &self.xpay_offer_id)
            .finish_non_exhaustive()
    }
}

/// `len` random bytes from the system generator.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    // The OS random source failing is not recoverable.
    aws_lc_rs::rand::fill(&mut out).expect("operating system random source");
    out
}

/// A random string over `alphabet` (rejection sampling, so every symbol is equally likely).
pub fn random_from(alphabet: &[u8], len: usize) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2) {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// Letters and digits.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Decimal digits.
pub const DIGITS: &[u8] = b"0123456789";

fn rsa_pair() -> Result<(String, String), KeysError> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeysError::Generate)?;
    let private = pair.as_der().map_err(|_| KeysError::Generate)?;
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
        .as_der()
        .map_err(|_| KeysError::Generate)?;
    Ok((B64.encode(private.as_ref()), B64.encode(public.as_ref())))
}

/// An EncodingAESKey: 32 random bytes whose base64 has no `+` or `/` (WeChat's alphabet).
fn encoding_aes_key() -> String {
    loop {
        let encoded = B64.encode(random_bytes(32));
        let key = encoded.trim_end_matches('=');
        if key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return key.to_owned();
        }
    }
}

impl DevKeys {
    /// Fresh keys for a new suite.
    pub fn generate() -> Result<Self, KeysError> {
        let (merchant_private_key, merchant_public_key) = rsa_pair()?;
        let (platform_private_key, platform_public_key) = rsa_pair()?;
        Ok(DevKeys {
            appid: format!("wx{}", hex::encode(random_bytes(8))),
            appsecret: hex::encode(random_bytes(16)),
            env_id: format!("wemint-dev-{}", hex::encode(random_bytes(3))),
            mchid: format!("19{}", random_from(DIGITS, 8)),
            merchant_serial: hex::encode_upper(random_bytes(20)),
            merchant_private_key,
            merchant_public_key,
            platform_key_id: format!("PUB_KEY_ID_{}", random_from(DIGITS, 32)),
            platform_private_key,
            platform_public_key,
            apiv3_key: random_from(ALNUM, 32),
            xpay_appkey: random_from(ALNUM, 32),
            xpay_offer_id: format!("1{}", random_from(DIGITS, 9)),
            push_token: random_from(ALNUM, 32),
            push_aes_key: encoding_aes_key(),
            session_secret: B64URL.encode(random_bytes(32)),
            data_key: B64.encode(random_bytes(32)),
            storage_key: hex::encode(random_bytes(32)),
            openid_salt: hex::encode(random_bytes(16)),
        })
    }

    /// Loads `path`, or generates keys and writes them there (mode 0600) when it is missing.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeysError> {
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let keys: DevKeys =
                    serde_json::from_slice(&bytes).map_err(|e| KeysError::Invalid {
                        path: name.clone(),
                        reason: e.to_string(),
                    })?;
                keys.check()
                    .map_err(|reason| KeysError::Invalid { path: name, reason })?;
                Ok((keys, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::generate()?;
                let json = serde_json::to_vec_pretty(&keys).map_err(|e| KeysError::Invalid {
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
                write_private(path, &json)
                    .map_err(|source| KeysError::Io { path: name, source })?;
                Ok((keys, true))
            }
            Err(source) => Err(KeysError::Io { path: name, source }),
        }
    }

    fn check(&self) -> Result<(), String> {
        for (what, der) in [
            ("merchantPrivateKey", &self.merchant_private_key),
            ("platformPrivateKey", &self.platform_private_key),
        ] {
            let der = B64
                .decode(der)
                .map_err(|_| format!("{what} is not base64"))?;
            KeyPair::from_pkcs8(&der).map_err(|_| format!("{what} is not an RSA PKCS#8 key"))?;
        }
        if self.apiv3_key.len() != 32 || self.push_aes_key.len() != 43 {
            return Err("apiv3Key must have 32 and pushAesKey 43 characters".into());
        }
        Ok(())
    }

    /// The merchant private key, PKCS#8 DER.
    pub fn merchant_private_der(&self) -> Vec<u8> {
        B64.decode(&self.merchant_private_key).unwrap_or_default()
    }

    /// The merchant public key, SPKI DER.
    pub fn merchant_public_der(&self) -> Vec<u8> {
        B64.decode(&self.merchant_public_key).unwrap_or_default()
    }

    /// The stand-in platform's private key, PKCS#8 DER.
    pub fn platform_private_der(&self) -> Vec<u8> {
        B64.decode(&self.platform_private_key).unwrap_or_default()
    }

    /// The stand-in platform's public key, SPKI DER.
    pub fn platform_public_der(&self) -> Vec<u8> {
        B64.decode(&self.platform_public_key).unwrap_or_default()
    }

    /// The deterministic openid of a dev user: the same name always gives the same openid
    /// in one suite (28 characters starting with `o`, like WeChat's).
    pub fn openid_for(&self, user: &str) -> String {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.openid_salt.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, format!("openid:{user}").as_bytes());
        let text = B64URL.encode(tag.as_ref());
        format!("o{}", &text[..27])
    }

    /// The Official Account's appid (derived: the keys file stays as it was).
    pub fn oa_appid(&self) -> String {
        format!("wx{}", &self.derived("oa-appid")[..16])
    }

    /// The Official Account's secret.
    pub fn oa_appsecret(&self) -> String {
        self.derived("oa-appsecret")[..32].to_owned()
    }

    /// The openid of a dev user as a follower of the Official Account (another openid than
    /// the Mini Program's, the same unionid).
    pub fn oa_openid_for(&self, user: &str) -> String {
        format!("oOA{}", &self.derived(&format!("oa-openid:{user}"))[..25])
    }

    fn derived(&self, label: &str) -> String {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.openid_salt.as_bytes());
        hex::encode(aws_lc_rs::hmac::sign(&key, label.as_bytes()).as_ref())
    }

    /// The deterministic unionid of a dev user.
    pub fn unionid_for(&self, user: &str) -> String {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.openid_salt.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, format!("unionid:{user}").as_bytes());
        let text = B64URL.encode(tag.as_ref());
        format!("o{}", &text[..27])
    }
}

/// Writes a file readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_are_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (keys, created) = DevKeys::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = DevKeys::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(keys, again);
        assert!(keys.appid.starts_with("wx") && keys.appid.len() == 18);
        assert!(
            keys.platform_key_id.starts_with("PUB_KEY_ID_") && keys.platform_key_id.len() == 43
        );
        assert!(keys.push_aes_key.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(keys.apiv3_key.len(), 32);
        assert_eq!(keys.openid_for("alice"), keys.openid_for("alice"));
        assert_ne!(keys.openid_for("alice"), keys.openid_for("bob"));
        assert_eq!(keys.openid_for("alice").len(), 28);
        let debug = format!("{keys:?}");
        assert!(!debug.contains(&keys.apiv3_key) && !debug.contains(&keys.appsecret));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, b"{}").unwrap();
        assert!(matches!(
            DevKeys::load_or_create(&path),
            Err(KeysError::Invalid { .. })
        ));
    }
}
