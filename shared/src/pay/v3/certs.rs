//! Platform certificates from `GET /v3/certificates`, and when to download them again.
//!
//! Only merchants without a WeChat Pay public key need this (new merchants get no platform
//! certificate at all, reference §2.6). Certificates last 5 years but rotate, so the client
//! refreshes them on an interval (the official Go SDK: 24 h) and when an unknown serial shows up.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};

use super::aead::{AeadError, ApiV3Key};
use super::keys::{KeyError, PlatformCertificate};
use super::notify::EncryptedResource;

/// Default refresh interval (the official Go SDK's).
pub const DEFAULT_REFRESH_SECS: i64 = 24 * 3600;

/// The certificate list could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The response JSON is malformed.
    #[error("certificates response is malformed: {0}")]
    Malformed(String),
    /// A certificate could not be decrypted.
    #[error("certificate decryption: {0}")]
    Decrypt(#[from] AeadError),
    /// A decrypted certificate is not valid X.509.
    #[error("certificate: {0}")]
    Key(#[from] KeyError),
    /// The decrypted certificate's serial differs from the listed `serial_no`.
    #[error("listed serial {listed} does not match certificate serial {actual}")]
    SerialMismatch {
        /// From the list.
        listed: String,
        /// From the certificate.
        actual: String,
    },
}

/// Body of `GET /v3/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatesResponse {
    /// One entry per platform certificate.
    pub data: Vec<CertificateEntry>,
}

/// One listed certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateEntry {
    /// Upper-case hex serial.
    pub serial_no: String,
    /// RFC 3339.
    #[serde(default)]
    pub effective_time: String,
    /// RFC 3339.
    #[serde(default)]
    pub expire_time: String,
    /// The PEM, encrypted with the APIv3 key (AAD `certificate`).
    pub encrypt_certificate: EncryptedResource,
}

/// Decrypt one listed certificate to its PEM text.
pub fn decrypt_certificate_pem(
    key: &ApiV3Key,
    entry: &CertificateEntry,
) -> Result<String, CertificateError> {
    Ok(super::notify::decrypt_resource(
        key,
        &entry.encrypt_certificate,
    )?)
}

/// Decrypt and parse every certificate of a `/v3/certificates` body; each must carry the serial
/// it is listed under.
pub fn decrypt_certificates(
    key: &ApiV3Key,
    body: &[u8],
) -> Result<Vec<PlatformCertificate>, CertificateError> {
    let response: CertificatesResponse =
        serde_json::from_slice(body).map_err(|e| CertificateError::Malformed(e.to_string()))?;
    response
        .data
        .iter()
        .map(|entry| {
            let cert = PlatformCertificate::from_pem(&decrypt_certificate_pem(key, entry)?)?;
            if !cert.serial_no.eq_ignore_ascii_case(&entry.serial_no) {
                return Err(CertificateError::SerialMismatch {
                    listed: entry.serial_no.clone(),
                    actual: cert.serial_no,
                });
            }
            Ok(cert)
        })
        .collect()
}

/// Decides when certificates are due for download; the time comes from the caller's clock.
#[derive(Debug)]
pub struct RefreshSchedule {
    interval_secs: i64,
    last_success: Mutex<Option<i64>>,
}

impl RefreshSchedule {
    /// Refresh every `interval_secs` seconds (at least 60).
    pub fn new(interval_secs: i64) -> Self {
        Self {
            interval_secs: interval_secs.max(60),
            last_success: Mutex::new(None),
        }
    }

    /// True when never refreshed or the interval has passed at `now_unix`.
    pub fn is_due(&self, now_unix: i64) -> bool {
        match *self
            .last_success
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => true,
            Some(last) => now_unix - last >= self.interval_secs,
        }
    }

    /// True when an out-of-schedule refresh (unknown serial seen) is allowed: at most one a minute,
    /// so a stream of unknown serials cannot turn every call into a download.
    pub fn may_force(&self, now_unix: i64) -> bool {
        match *self
            .last_success
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => true,
            Some(last) => now_unix - last >= 60,
        }
    }

    /// Record a successful refresh at `now_unix`.
    pub fn mark_refreshed(&self, now_unix: i64) {
        *self
            .last_success
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now_unix);
    }
}

impl Default for RefreshSchedule {
    fn default() -> Self {
        Self::new(DEFAULT_REFRESH_SECS)
    }
}

/// Least time between two certificate downloads triggered by an unknown `Wechatpay-Serial`,
/// across every instance sharing a store. Anyone can send a notification with a made-up
/// serial; without this, each one would cost a signed call to WeChat Pay.
pub const FORCED_DOWNLOAD_INTERVAL_SECS: i64 = 60;

/// Allows at most one out-of-schedule certificate download per interval.
///
/// Per instance it is an atomic timestamp; with a store ([`DownloadThrottle::shared`]) the
/// same limit holds across instances: the right to download is taken with a conditional
/// update (`lastAt <= now - interval` → `lastAt = now`) on one document per merchant, which
/// only one instance can win per interval. Scale-out therefore does not multiply the calls
/// forged serials can cause.
pub struct DownloadThrottle {
    interval_secs: i64,
    local_last: AtomicI64,
    shared: Option<(Arc<dyn Store>, String)>,
}

impl std::fmt::Debug for DownloadThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadThrottle")
            .field("interval_secs", &self.interval_secs)
            .field("shared", &self.shared.as_ref().map(|(_, key)| key))
            .finish_non_exhaustive()
    }
}

impl DownloadThrottle {
    /// A throttle for this instance only.
    pub fn local(interval_secs: i64) -> Self {
        Self {
            interval_secs: interval_secs.max(1),
            local_last: AtomicI64::new(i64::MIN / 2),
            shared: None,
        }
    }

    /// A throttle shared through `store` by every instance using the same `key` (the mchid).
    pub fn shared(store: Arc<dyn Store>, key: impl Into<String>, interval_secs: i64) -> Self {
        Self {
            shared: Some((store, key.into())),
            ..Self::local(interval_secs)
        }
    }

    /// Takes the right to download at `now_unix`; `false` when a download (here or, when
    /// shared, in another instance) was allowed less than the interval ago. A failing store
    /// refuses: an outage must not turn into unthrottled downloads.
    pub async fn try_acquire(&self, now_unix: i64) -> bool {
        // This instance's own gate first: repeated forgeries here cost no store write.
        let last = self.local_last.load(Ordering::SeqCst);
        if now_unix - last < self.interval_secs
            || self
                .local_last
                .compare_exchange(last, now_unix, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return false;
        }
        let Some((store, key)) = &self.shared else {
            return true;
        };
        match acquire_shared(store.as_ref(), key, now_unix, self.interval_secs).await {
            Ok(won) => won,
            Err(err) => {
                tracing::warn!(error = %err, "certificate download throttle unavailable; not downloading");
                false
            }
        }
    }
}

/// One conditional update moves `lastAt` forward only when the interval has passed; the very
/// first download inserts the document, and a concurrent first insert loses on the `_id`.
async fn acquire_shared(
    store: &dyn Store,
    key: &str,
    now_unix: i64,
    interval_secs: i64,
) -> Result<bool, StoreError> {
    let moved = store
        .update_one(
            crate::store::collections::PAY_CERTIFICATE_DOWNLOADS,
            &Filter::id(key).and(Filter::lte("lastAt", now_unix - interval_secs)),
            &Update::new().set("lastAt", now_unix),
            UpdateOptions::default(),
        )
        .await?;
    if moved.is_some() {
        return Ok(true);
    }
    match store
        .insert(
            crate::store::collections::PAY_CERTIFICATE_DOWNLOADS,
            serde_json::json!({ "_id": key, "lastAt": now_unix }),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::DuplicateKey { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_due_first_then_after_interval() {
        let s = RefreshSchedule::new(3600);
        assert!(s.is_due(1000));
        s.mark_refreshed(1000);
        assert!(!s.is_due(1000 + 3599));
        assert!(s.is_due(1000 + 3600));
        assert!(!s.may_force(1000 + 59));
        assert!(s.may_force(1000 + 60));
    }
}
