//! AEAD_AES_256_GCM with the APIv3 key: notification resources and downloaded certificates.
//!
//! Key = the 32 ASCII characters of the APIv3 key used as raw bytes; nonce = the 12 bytes of
//! the `nonce` string; AAD = the bytes of `associated_data` (may be empty); ciphertext =
//! base64 of `ct || tag` (16-byte tag at the end).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The only algorithm name WeChat Pay uses for RSA merchants.
pub const AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";

/// Decryption (or encryption) of a resource failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// The APIv3 key is not exactly 32 bytes.
    #[error("APIv3 key must be 32 bytes, got {0}")]
    KeyLength(usize),
    /// The nonce is not exactly 12 bytes.
    #[error("AEAD nonce must be 12 bytes, got {0}")]
    NonceLength(usize),
    /// `algorithm` is not `AEAD_AES_256_GCM`.
    #[error("unsupported resource algorithm {0:?}")]
    Algorithm(String),
    /// The ciphertext is not base64 or shorter than a tag.
    #[error("ciphertext is not valid base64 of ct||tag")]
    Ciphertext,
    /// Tag check failed: wrong APIv3 key, tampered ciphertext, or wrong associated data.
    #[error("AEAD authentication failed (wrong APIv3 key or tampered resource)")]
    Authentication,
    /// The plaintext is not UTF-8.
    #[error("decrypted resource is not UTF-8")]
    Utf8,
}

/// The APIv3 key, with its AES key schedule prepared once. Never printed.
pub struct ApiV3Key {
    key: LessSafeKey,
}

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(<redacted>)")
    }
}

impl ApiV3Key {
    /// Build from the 32-character key string set in the merchant platform.
    pub fn new(key: &str) -> Result<Self, AeadError> {
        let bytes = key.as_bytes();
        if bytes.len() != 32 {
            return Err(AeadError::KeyLength(bytes.len()));
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| AeadError::KeyLength(bytes.len()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Build from the raw 32 key bytes (as `config::WechatPaySettings::apiv3_key` holds them).
    pub fn from_bytes(key: &[u8; 32]) -> Result<Self, AeadError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| AeadError::KeyLength(32))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Decrypt a resource to bytes.
    pub fn decrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_b64: &str,
    ) -> Result<Vec<u8>, AeadError> {
        let nonce = nonce_of(nonce)?;
        let mut data = STANDARD
            .decode(ciphertext_b64.as_bytes())
            .map_err(|_| AeadError::Ciphertext)?;
        if data.len() < AES_256_GCM.tag_len() {
            return Err(AeadError::Ciphertext);
        }
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut data)
            .map_err(|_| AeadError::Authentication)?
            .len();
        data.truncate(plain_len);
        Ok(data)
    }

    /// Decrypt a resource to a UTF-8 string.
    pub fn decrypt_to_string(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_b64: &str,
    ) -> Result<String, AeadError> {
        String::from_utf8(self.decrypt(nonce, associated_data, ciphertext_b64)?)
            .map_err(|_| AeadError::Utf8)
    }

    /// Encrypt `plaintext` to base64 `ct || tag` (what WeChat Pay does; the emulator and tests
    /// use it to build notifications).
    pub fn encrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        plaintext: &[u8],
    ) -> Result<String, AeadError> {
        let nonce = nonce_of(nonce)?;
        let mut data = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(associated_data.as_bytes()), &mut data)
            .map_err(|_| AeadError::Authentication)?;
        Ok(STANDARD.encode(data))
    }
}

fn nonce_of(nonce: &str) -> Result<Nonce, AeadError> {
    let bytes: [u8; NONCE_LEN] = nonce
        .as_bytes()
        .try_into()
        .map_err(|_| AeadError::NonceLength(nonce.len()))?;
    Ok(Nonce::assume_unique_for_key(bytes))
}

/// Check the `algorithm` field of an encrypted resource.
pub fn check_algorithm(algorithm: &str) -> Result<(), AeadError> {
    if algorithm == AEAD_AES_256_GCM {
        Ok(())
    } else {
        Err(AeadError::Algorithm(algorithm.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // wechatpay-java AeadAesCipherTest (reference §7, V2): the best published AEAD_AES_256_GCM vector.
    const V2_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";

    #[test]
    fn java_vector_v2_both_ways() {
        let key = ApiV3Key::new(V2_KEY).unwrap();
        assert_eq!(
            key.decrypt_to_string(
                "uluk4a9R25RW",
                "associatedData",
                "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
            )
            .unwrap(),
            "message"
        );
        assert_eq!(
            key.encrypt("uluk4a9R25RW", "associatedData", b"message")
                .unwrap(),
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        );
        assert_eq!(
            key.decrypt("uluk4a9R25RW", "bad", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="),
            Err(AeadError::Authentication)
        );
        assert_eq!(
            key.decrypt(
                "uluk4a9R25RX",
                "associatedData",
                "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
            ),
            Err(AeadError::Authentication)
        );
    }

    #[test]
    fn go_vector_v1_key_is_rejected_as_aes128() {
        // wechatpay-go uses a 16-byte key here (AES-128); AEAD_AES_256_GCM must refuse it.
        assert_eq!(
            ApiV3Key::new("testAPIv3Key0000").err(),
            Some(AeadError::KeyLength(16))
        );
    }

    #[test]
    fn rejects_malformed_inputs() {
        let key = ApiV3Key::new(V2_KEY).unwrap();
        assert_eq!(
            key.decrypt("short", "", "AAAA").err(),
            Some(AeadError::NonceLength(5))
        );
        assert_eq!(
            key.decrypt("uluk4a9R25RW", "", "!!!").err(),
            Some(AeadError::Ciphertext)
        );
        assert_eq!(
            key.decrypt("uluk4a9R25RW", "", "AAAA").err(),
            Some(AeadError::Ciphertext)
        );
        assert!(check_algorithm("AEAD_SM4_GCM").is_err());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
