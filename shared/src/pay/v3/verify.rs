//! Verification of WeChat Pay responses and notifications.
//!
//! The key is chosen by `Wechatpay-Serial` among the platform certificates and the WeChat Pay
//! public key (`PUB_KEY_ID_…`); both can be held at once during the migration from one to the
//! other. Checks run in this order (reference §10.4): headers present, signature type, serial
//! known, timestamp within 5 minutes, base64 decode, RSA verify. A `WECHATPAY/SIGNTEST/` probe
//! is not base64 and so simply fails like any bad signature: never special-cased.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::keys::{PlatformCertificate, VerifyingKey};
use super::sign::AUTH_SCHEME;

/// Allowed distance between `Wechatpay-Timestamp` and now (official guidance: 5 minutes).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// Header names (HTTP header lookups are case-insensitive).
pub mod headers {
    /// Signature time, Unix seconds.
    pub const TIMESTAMP: &str = "Wechatpay-Timestamp";
    /// Random string.
    pub const NONCE: &str = "Wechatpay-Nonce";
    /// Base64 signature.
    pub const SIGNATURE: &str = "Wechatpay-Signature";
    /// Platform certificate serial or `PUB_KEY_ID_…`.
    pub const SERIAL: &str = "Wechatpay-Serial";
    /// `WECHATPAY2-SHA256-RSA2048`.
    pub const SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";
    /// Request id to quote to WeChat support.
    pub const REQUEST_ID: &str = "Request-ID";
}

/// Why a response or notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A `Wechatpay-*` header is absent or empty.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `Wechatpay-Signature-Type` names an algorithm we do not accept.
    #[error("unsupported signature type {0:?}")]
    UnsupportedSignatureType(String),
    /// `Wechatpay-Serial` matches no platform certificate and no public key id.
    #[error("unknown Wechatpay-Serial {0:?}")]
    UnknownSerial(String),
    /// The platform certificate for that serial is outside its validity window.
    #[error("platform certificate {0} is not valid now")]
    CertificateExpired(String),
    /// `Wechatpay-Timestamp` is not an integer.
    #[error("malformed Wechatpay-Timestamp")]
    MalformedTimestamp,
    /// `Wechatpay-Timestamp` is more than 5 minutes from now (replay or clock skew).
    #[error("Wechatpay-Timestamp {timestamp} is too far from now ({now})")]
    TimestampOutOfWindow {
        /// Header value.
        timestamp: i64,
        /// Our clock.
        now: i64,
    },
    /// The signature is not base64 (this is what `WECHATPAY/SIGNTEST/` probes look like).
    #[error("signature is not valid base64")]
    SignatureEncoding,
    /// The signature does not verify over the exact bytes received.
    #[error("signature does not verify")]
    BadSignature,
}

/// The `Wechatpay-*` headers of a response or notification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureHeaders {
    /// `Wechatpay-Timestamp`.
    pub timestamp: String,
    /// `Wechatpay-Nonce`.
    pub nonce: String,
    /// `Wechatpay-Signature`.
    pub signature: String,
    /// `Wechatpay-Serial`.
    pub serial: String,
    /// `Wechatpay-Signature-Type`; absent means RSA (as the official Go SDK assumes).
    pub signature_type: Option<String>,
}

impl SignatureHeaders {
    /// Collect the headers through a case-insensitive lookup function (webhook events carry
    /// headers in whatever shape the gateway gives them).
    pub fn from_lookup<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Result<Self, VerifyError> {
        let req = |name: &'static str| -> Result<String, VerifyError> {
            match lookup(name).map(str::trim) {
                Some(v) if !v.is_empty() => Ok(v.to_owned()),
                _ => Err(VerifyError::MissingHeader(name)),
            }
        };
        Ok(Self {
            timestamp: req(headers::TIMESTAMP)?,
            nonce: req(headers::NONCE)?,
            signature: req(headers::SIGNATURE)?,
            serial: req(headers::SERIAL)?,
            signature_type: lookup(headers::SIGNATURE_TYPE).map(|v| v.trim().to_owned()),
        })
    }

    /// Collect the headers from an `http::HeaderMap` (reqwest responses, hyper requests).
    pub fn from_header_map(map: &http::HeaderMap) -> Result<Self, VerifyError> {
        Self::from_lookup(|name| map.get(name).and_then(|v| v.to_str().ok()))
    }

    /// Collect the headers from `(name, value)` pairs, matching names case-insensitively.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, VerifyError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        Self::from_lookup(|name| {
            pairs
                .clone()
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    }
}

/// The verification string: `TIMESTAMP\nNONCE\nBODY\n` over the raw body bytes.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(nonce.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(body);
    msg.push(b'\n');
    msg
}

#[derive(Debug, Clone)]
enum Entry {
    PublicKey(VerifyingKey),
    Certificate(PlatformCertificate),
}

/// The set of WeChat Pay keys we trust, keyed by the exact `Wechatpay-Serial` value.
///
/// Cheap to clone (shared); certificates can be replaced by a refresh while other tasks verify.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: Arc<RwLock<HashMap<String, Entry>>>,
}

impl Verifier {
    /// An empty key set (every signature is refused until a key is added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Build from configuration (`WECHATPAY_PUBLIC_KEY_ID` + `WECHATPAY_PUBLIC_KEY`,
    /// `WECHATPAY_PLATFORM_CERTS`); either, both (during migration) or neither (certificates
    /// are then downloaded by the client).
    pub fn from_config(
        public_key: Option<(&str, &str)>,
        platform_certs_pem: Option<&str>,
    ) -> Result<Self, super::keys::KeyError> {
        let verifier = Self::new();
        if let Some((id, pem)) = public_key {
            verifier.add_public_key(id, VerifyingKey::from_pem(pem)?);
        }
        if let Some(bundle) = platform_certs_pem {
            for cert in PlatformCertificate::bundle_from_pem(bundle)? {
                verifier.add_certificate(cert);
            }
        }
        Ok(verifier)
    }

    /// Trust the WeChat Pay public key `key` under its id (`PUB_KEY_ID_…`).
    pub fn add_public_key(&self, key_id: &str, key: VerifyingKey) {
        self.write()
            .insert(key_id.to_owned(), Entry::PublicKey(key));
    }

    /// Trust a platform certificate under its serial.
    pub fn add_certificate(&self, cert: PlatformCertificate) {
        self.write()
            .insert(cert.serial_no.clone(), Entry::Certificate(cert));
    }

    /// Replace all platform certificates (after a download) and keep the public keys.
    pub fn replace_certificates(&self, certs: Vec<PlatformCertificate>) {
        let mut keys = self.write();
        keys.retain(|_, e| matches!(e, Entry::PublicKey(_)));
        for cert in certs {
            keys.insert(cert.serial_no.clone(), Entry::Certificate(cert));
        }
    }

    /// True when a key is known for `serial`.
    pub fn knows(&self, serial: &str) -> bool {
        self.read().contains_key(serial)
    }

    /// True when at least one WeChat Pay public key is configured.
    pub fn has_public_key(&self) -> bool {
        self.read()
            .values()
            .any(|e| matches!(e, Entry::PublicKey(_)))
    }

    /// Number of platform certificates held.
    pub fn certificate_count(&self) -> usize {
        self.read()
            .values()
            .filter(|e| matches!(e, Entry::Certificate(_)))
            .count()
    }

    /// Verify `body` (the exact bytes received) against its headers as of `now_unix`.
    pub fn verify(
        &self,
        headers: &SignatureHeaders,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        if let Some(kind) = &headers.signature_type
            && kind != AUTH_SCHEME
        {
            return Err(VerifyError::UnsupportedSignatureType(kind.clone()));
        }
        let key = {
            let keys = self.read();
            match keys.get(&headers.serial) {
                None => return Err(VerifyError::UnknownSerial(headers.serial.clone())),
                Some(Entry::PublicKey(k)) => k.clone(),
                Some(Entry::Certificate(c)) => {
                    if !c.is_valid_at(now_unix) {
                        return Err(VerifyError::CertificateExpired(c.serial_no.clone()));
                    }
                    c.key.clone()
                }
            }
        };
        let timestamp: i64 = headers
            .timestamp
            .parse()
            .map_err(|_| VerifyError::MalformedTimestamp)?;
        if now_unix.abs_diff(timestamp) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
            return Err(VerifyError::TimestampOutOfWindow {
                timestamp,
                now: now_unix,
            });
        }
        // RSA-8192 at most: 1024 bytes; decoded on the stack, and the message
        // `TIMESTAMP\nNONCE\nBODY\n` is hashed in pieces: the body is never copied.
        let mut signature = [0u8; 1024];
        let len = STANDARD
            .decode_slice(headers.signature.as_bytes(), &mut signature)
            .map_err(|_| VerifyError::SignatureEncoding)?;
        let message: [&[u8]; 6] = [
            headers.timestamp.as_bytes(),
            b"\n",
            headers.nonce.as_bytes(),
            b"\n",
            body,
            b"\n",
        ];
        if key.verify_parts(&message, &signature[..len]) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        // A poisoned lock only means a writer panicked mid-insert; the map itself is still usable.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors/keys/");

    fn key_file(name: &str) -> String {
        std::fs::read_to_string(format!("{KEYS}{name}")).unwrap()
    }

    #[test]
    fn from_config_holds_both_kinds_of_key() {
        let pk = key_file("wechatpay_public_key.pem");
        let certs = key_file("platform_certificate.pem");
        let v = Verifier::from_config(Some(("PUB_KEY_ID_1", &pk)), Some(&certs)).unwrap();
        assert!(v.knows("PUB_KEY_ID_1") && v.knows("F642AC69E590FB94938D64B6329D6CB7"));
        assert!(v.has_public_key());
        assert_eq!(v.certificate_count(), 1);
        v.replace_certificates(Vec::new());
        assert_eq!(v.certificate_count(), 0);
        assert!(
            v.knows("PUB_KEY_ID_1"),
            "a certificate refresh keeps the public key"
        );
        assert!(Verifier::from_config(Some(("id", "not a key")), None).is_err());
    }

    #[test]
    fn headers_are_required_and_signature_type_checked() {
        let v = Verifier::new();
        assert_eq!(
            SignatureHeaders::from_pairs([("wechatpay-timestamp", "1")]).unwrap_err(),
            VerifyError::MissingHeader(headers::NONCE)
        );
        let h = SignatureHeaders {
            timestamp: "1".into(),
            nonce: "n".into(),
            signature: "AA==".into(),
            serial: "S".into(),
            signature_type: Some("WECHATPAY2-SM2-WITH-SM3".into()),
        };
        assert!(matches!(
            v.verify(&h, b"", 1),
            Err(VerifyError::UnsupportedSignatureType(_))
        ));
        let h = SignatureHeaders {
            signature_type: None,
            ..h
        };
        assert_eq!(
            v.verify(&h, b"", 1),
            Err(VerifyError::UnknownSerial("S".into()))
        );
    }
}
