//! RSA keys and platform certificates, parsed once at start.
//!
//! Parsing a PKCS#8 key costs far more than a signature, so [`RsaSigningKey`] and
//! [`VerifyingKey`] hold the parsed aws-lc-rs key and are shared by reference for the life of
//! the process.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::pem::{self, PemError};

/// A key or certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The PEM / base64 text could not be decoded.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// aws-lc-rs rejected the private key (not PKCS#8 RSA, or too small).
    #[error("private key rejected: {0}")]
    PrivateKey(String),
    /// aws-lc-rs rejected the public key.
    #[error("public key rejected: {0}")]
    PublicKey(String),
    /// The certificate is not valid X.509.
    #[error("certificate rejected: {0}")]
    Certificate(String),
    /// Signing failed inside the crypto provider.
    #[error("RSA signing failed")]
    Sign,
}

/// An RSA private key for PKCS#1 v1.5 SHA-256 signatures (the merchant API key, or, in the
/// emulator, the platform key). Never printed.
pub struct RsaSigningKey {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigningKey(<redacted>)")
    }
}

impl RsaSigningKey {
    /// Parse a PKCS#8 RSA key given as a `PRIVATE KEY` PEM block or as base64 DER.
    pub fn from_pkcs8(text: &str) -> Result<Self, KeyError> {
        let der = pem::decode_one(text, "PRIVATE KEY")?;
        Self::from_pkcs8_der(&der)
    }

    /// Parse a PKCS#8 RSA key from DER bytes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = RsaKeyPair::from_pkcs8(der).map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// Raw PKCS#1 v1.5 SHA-256 signature of `message`.
    pub fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
            .map_err(|_| KeyError::Sign)?;
        Ok(sig)
    }

    /// Base64 (standard, padded) PKCS#1 v1.5 SHA-256 signature of `message`: the form every
    /// WeChat Pay v3 signature takes.
    pub fn sign_base64(&self, message: &[u8]) -> Result<String, KeyError> {
        Ok(STANDARD.encode(self.sign_raw(message)?))
    }

    /// The matching public key (used by tests and the emulator to verify what this key signs).
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_der(self.key.public_key().as_ref())
    }
}

/// An RSA public key for PKCS#1 v1.5 SHA-256 verification (2048–8192 bits), parsed once.
#[derive(Clone)]
pub struct VerifyingKey {
    key: std::sync::Arc<ParsedPublicKey>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyingKey(RSA)")
    }
}

impl VerifyingKey {
    /// Parse a `PUBLIC KEY` (SPKI) PEM block, or base64 DER of SPKI / PKCS#1 `RSAPublicKey`.
    /// This is the form of the WeChat Pay public key (`pub_key.pem`).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let der = pem::decode_one(text, "PUBLIC KEY")?;
        Self::from_der(&der)
    }

    /// Parse DER (SPKI or PKCS#1 `RSAPublicKey`).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der)
            .map_err(|e| KeyError::PublicKey(e.to_string()))?;
        Ok(Self {
            key: std::sync::Arc::new(key),
        })
    }

    /// True when `signature` is a valid PKCS#1 v1.5 SHA-256 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }

    /// [`VerifyingKey::verify`] over the concatenation of `parts`, hashed piece by piece, so a
    /// message made of a request body and a few framing fields is checked without first being
    /// copied into one buffer.
    pub fn verify_parts(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in parts {
            hash.update(part);
        }
        self.key
            .verify_digest_sig(&hash.finish(), signature)
            .is_ok()
    }
}

/// A WeChat Pay platform certificate: its serial (upper-case hex, as `Wechatpay-Serial`
/// carries it), validity window and public key.
#[derive(Debug, Clone)]
pub struct PlatformCertificate {
    /// Upper-case hex serial without leading zero bytes, as `openssl x509 -serial` prints it.
    pub serial_no: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The certificate's public key.
    pub key: VerifyingKey,
}

impl PlatformCertificate {
    /// Parse one `CERTIFICATE` PEM block (or base64 DER).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let der = pem::decode_one(text, "CERTIFICATE")?;
        Self::from_der(&der)
    }

    /// Parse every certificate of a PEM bundle (`WECHATPAY_PLATFORM_CERTS`).
    pub fn bundle_from_pem(text: &str) -> Result<Vec<Self>, KeyError> {
        pem::decode_all(text, "CERTIFICATE")?
            .iter()
            .map(|der| Self::from_der(der))
            .collect()
    }

    /// Parse DER.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| KeyError::Certificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::Certificate(
                "trailing bytes after certificate".into(),
            ));
        }
        let raw = cert.raw_serial();
        let first = raw
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(raw.len().saturating_sub(1));
        let serial_no = hex::encode_upper(&raw[first..]);
        let validity = cert.validity();
        let key = VerifyingKey::from_der(cert.public_key().raw)?;
        Ok(Self {
            serial_no,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            key,
        })
    }

    /// True when `now_unix` is inside the validity window.
    pub fn is_valid_at(&self, now_unix: i64) -> bool {
        self.not_before <= now_unix && now_unix <= self.not_after
    }
}
