//! Login-side cryptography: `encryptedData` decryption (AES-128-CBC) with the watermark
//! appid check, the legacy `rawData` SHA-1 signature, and the session-key HMAC.
//!
//! All inputs come from the client, so every length and encoding is checked before any
//! cipher is touched: a wrong-length key or IV is a typed error, never a panic. Nothing here
//! logs its inputs (session keys and ciphertexts are secrets).

use aws_lc_rs::cipher::{AES_128, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer};

/// Why decrypting `encryptedData` failed. Padding errors almost always mean a stale
/// session_key (the client called `wx.login` again after obtaining the data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenDataError {
    /// A field is not valid standard base64.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// The session_key is not 16 bytes.
    #[error("session_key must decode to 16 bytes")]
    KeyLength,
    /// The iv is not 16 bytes.
    #[error("iv must decode to 16 bytes")]
    IvLength,
    /// Decryption or PKCS#7 unpadding failed (wrong or stale session_key, or tampered data).
    #[error("encryptedData could not be decrypted (stale session_key?)")]
    Decrypt,
    /// The plaintext is not the expected JSON.
    #[error("decrypted data is not valid JSON: {0}")]
    Json(String),
    /// The plaintext carries no watermark.
    #[error("decrypted data has no watermark")]
    MissingWatermark,
    /// The watermark names another Mini Program: the data was not issued for us.
    #[error("watermark appid {found} is not ours")]
    WatermarkMismatch {
        /// The appid found in the watermark.
        found: String,
    },
}

/// The `watermark` every decrypted open-data payload carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Watermark {
    /// The Mini Program the data was issued to.
    pub appid: String,
    /// Unix seconds when WeChat produced the data.
    pub timestamp: i64,
}

/// Decrypted open data: the whole JSON object and its checked watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenData {
    /// The decrypted JSON object (phone number, user info, share info, …).
    pub value: serde_json::Value,
    /// The watermark, already checked against our appid.
    pub watermark: Watermark,
}

/// The phone number payload (from `encryptedData` or `getuserphonenumber`'s `phone_info`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhoneInfo {
    /// With country code, e.g. `+8613800138000`.
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    /// Without country code.
    #[serde(rename = "purePhoneNumber")]
    pub pure_phone_number: String,
    /// Country code; WeChat sends it as a string or a number.
    #[serde(rename = "countryCode", deserialize_with = "string_or_number")]
    pub country_code: String,
}

/// Accepts `"86"` or `86`.
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected string or number, got {other}"
        ))),
    }
}

impl OpenData {
    /// Reads the payload as a phone number.
    ///
    /// # Errors
    /// [`OpenDataError::Json`] if the fields are missing.
    pub fn phone_info(&self) -> Result<PhoneInfo, OpenDataError> {
        serde_json::from_value(self.value.clone()).map_err(|e| OpenDataError::Json(e.to_string()))
    }
}

fn b64(field: &'static str, value: &str) -> Result<Vec<u8>, OpenDataError> {
    STANDARD
        .decode(value.trim())
        .map_err(|_| OpenDataError::Base64(field))
}

/// Decrypts `encryptedData` (AES-128-CBC, PKCS#7; key and IV from base64) and checks that
/// `watermark.appid` equals `our_appid`.
///
/// # Errors
/// A typed [`OpenDataError`]; on any error nothing is returned.
pub fn decrypt_open_data(
    session_key: &str,
    iv: &str,
    encrypted_data: &str,
    our_appid: &str,
) -> Result<OpenData, OpenDataError> {
    let key = b64("session_key", session_key)?;
    let iv = b64("iv", iv)?;
    let mut data = b64("encryptedData", encrypted_data)?;
    if key.len() != 16 {
        return Err(OpenDataError::KeyLength);
    }
    let iv: [u8; 16] = iv
        .as_slice()
        .try_into()
        .map_err(|_| OpenDataError::IvLength)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(OpenDataError::Decrypt);
    }
    let key = UnboundCipherKey::new(&AES_128, &key).map_err(|_| OpenDataError::KeyLength)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| OpenDataError::Decrypt)?;
    let plain = key
        .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| OpenDataError::Decrypt)?;
    let value: serde_json::Value =
        serde_json::from_slice(plain).map_err(|e| OpenDataError::Json(e.to_string()))?;
    let watermark: Watermark = value
        .get("watermark")
        .cloned()
        .ok_or(OpenDataError::MissingWatermark)
        .and_then(|w| serde_json::from_value(w).map_err(|_| OpenDataError::MissingWatermark))?;
    if constant_time::verify_slices_are_equal(watermark.appid.as_bytes(), our_appid.as_bytes())
        .is_err()
    {
        return Err(OpenDataError::WatermarkMismatch {
            found: watermark.appid,
        });
    }
    Ok(OpenData { value, watermark })
}

/// Lowercase hex SHA-1 (legacy WeChat signatures only: rawData, message push).
pub fn sha1_hex(parts: &[&[u8]]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    for p in parts {
        ctx.update(p);
    }
    hex::encode(ctx.finish())
}

/// Compares a lowercase-hex signature received from outside with the expected one in
/// constant time (case-insensitive, as some clients send upper case).
pub(crate) fn signature_matches(expected_hex: &str, received: &str) -> bool {
    let received = received.trim().to_ascii_lowercase();
    constant_time::verify_slices_are_equal(expected_hex.as_bytes(), received.as_bytes()).is_ok()
}

/// The legacy user-info signature: `sha1(rawData + session_key)`, lowercase hex.
pub fn raw_data_signature(raw_data: &str, session_key: &str) -> String {
    sha1_hex(&[raw_data.as_bytes(), session_key.as_bytes()])
}

/// Checks the `signature` `wx.getUserInfo` returned against `rawData` and our session_key.
pub fn verify_raw_data_signature(raw_data: &str, session_key: &str, signature: &str) -> bool {
    signature_matches(&raw_data_signature(raw_data, session_key), signature)
}

/// `hmac_sha256(key = session_key as its base64 text, message)`, lowercase hex.
///
/// This is the user-state signature of `checksession` (message `""`) and of xpay's
/// `signature`; the key is the base64 **string's bytes**, not the decoded 16 bytes.
pub fn session_signature(session_key: &str, message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.as_bytes());
    hex::encode(hmac::sign(&key, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appendix A vector 5 (official signature page).
    #[test]
    fn official_raw_data_signature() {
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        let sig = raw_data_signature(raw, "HyVFkGl5F5OQWJZZaNzBBg==");
        assert_eq!(sig, "75e81ceda165f4ffa64f4068af58c64b8f54b88c");
        assert!(verify_raw_data_signature(
            raw,
            "HyVFkGl5F5OQWJZZaNzBBg==",
            "75E81CEDA165F4FFA64F4068AF58C64B8F54B88C"
        ));
        assert!(!verify_raw_data_signature(
            raw,
            "HyVFkGl5F5OQWJZZaNzBBg==",
            "00"
        ));
    }

    /// Appendix A vector 6 (session-signature page).
    #[test]
    fn official_session_signature() {
        assert_eq!(
            session_signature("o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
    }

    /// Appendix A vector 7 (official decryption demo).
    #[test]
    fn official_open_data_demo() {
        let data = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
        let out = decrypt_open_data(
            "tiihtNczf5v6AKRyjwEUhQ==",
            "r7BXXKkLb8qrSNn05n0qiA==",
            data,
            "wx4f4bc4dec97d474b",
        )
        .expect("official demo decrypts");
        assert_eq!(out.value["unionId"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
        assert_eq!(out.watermark.timestamp, 1477314187);
        let err = decrypt_open_data(
            "tiihtNczf5v6AKRyjwEUhQ==",
            "r7BXXKkLb8qrSNn05n0qiA==",
            data,
            "wx0000000000000000",
        )
        .unwrap_err();
        assert_eq!(
            err,
            OpenDataError::WatermarkMismatch {
                found: "wx4f4bc4dec97d474b".into()
            }
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors_not_panics() {
        let ok_key = "tiihtNczf5v6AKRyjwEUhQ==";
        let ok_iv = "r7BXXKkLb8qrSNn05n0qiA==";
        assert_eq!(
            decrypt_open_data("AAAA", ok_iv, "AAAAAAAAAAAAAAAAAAAAAA==", "wx"),
            Err(OpenDataError::KeyLength)
        );
        assert_eq!(
            decrypt_open_data(ok_key, "AAAA", "AAAAAAAAAAAAAAAAAAAAAA==", "wx"),
            Err(OpenDataError::IvLength)
        );
        assert_eq!(
            decrypt_open_data(ok_key, ok_iv, "not base64!", "wx"),
            Err(OpenDataError::Base64("encryptedData"))
        );
        assert_eq!(
            decrypt_open_data(ok_key, ok_iv, "AAAA", "wx"),
            Err(OpenDataError::Decrypt)
        );
        assert_eq!(
            decrypt_open_data(ok_key, ok_iv, "", "wx"),
            Err(OpenDataError::Decrypt)
        );
    }

    #[test]
    fn country_code_accepts_string_or_number() {
        let a: PhoneInfo = serde_json::from_str(
            r#"{"phoneNumber":"+86138","purePhoneNumber":"138","countryCode":86}"#,
        )
        .unwrap();
        let b: PhoneInfo = serde_json::from_str(
            r#"{"phoneNumber":"+86138","purePhoneNumber":"138","countryCode":"86"}"#,
        )
        .unwrap();
        assert_eq!(a, b);
    }
}
