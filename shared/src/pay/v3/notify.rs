//! Payment and refund notifications: verify → decrypt → parse, in that order.
//!
//! The body must be the exact bytes received (decode an API-gateway base64 body first, never
//! re-serialise JSON). Any failure means "answer 4xx/5xx so WeChat redelivers".

use serde::{Deserialize, Serialize};

use super::aead::{AeadError, ApiV3Key, check_algorithm};
use super::models::{RefundNotification, Transaction};
use super::verify::{SignatureHeaders, Verifier, VerifyError};

/// A notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The signature check failed (includes missing headers and stale timestamps).
    #[error("notification signature: {0}")]
    Verify(#[from] VerifyError),
    /// The envelope is not the expected JSON.
    #[error("notification envelope is malformed: {0}")]
    Envelope(String),
    /// The resource could not be decrypted.
    #[error("notification resource: {0}")]
    Decrypt(#[from] AeadError),
    /// The decrypted resource does not match its event type.
    #[error("notification resource does not parse as {kind}: {problem}")]
    Resource {
        /// Expected type.
        kind: &'static str,
        /// Parser message.
        problem: String,
    },
}

/// The notification envelope (the plain JSON WeChat posts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationEnvelope {
    /// Notification id (`EV-…`), stable across redeliveries.
    pub id: String,
    /// RFC 3339.
    pub create_time: String,
    /// `encrypt-resource`.
    #[serde(default)]
    pub resource_type: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, …
    pub event_type: String,
    /// Short text.
    #[serde(default)]
    pub summary: String,
    /// The encrypted payload.
    pub resource: EncryptedResource,
}

/// An AEAD-encrypted resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    /// `transaction`, `refund`, …
    #[serde(default)]
    pub original_type: String,
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// base64 `ct || tag`.
    pub ciphertext: String,
    /// Associated data (may be empty or absent).
    #[serde(default)]
    pub associated_data: Option<String>,
    /// 12-character nonce.
    pub nonce: String,
}

/// Kind of a `REFUND.*` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundEvent {
    /// `REFUND.SUCCESS`.
    Success,
    /// `REFUND.ABNORMAL`.
    Abnormal,
    /// `REFUND.CLOSED`.
    Closed,
}

/// A verified, decrypted notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `TRANSACTION.SUCCESS`: the order is paid (still check mchid, appid, amount, state).
    TransactionSuccess {
        /// Envelope id, for dedup and logs.
        id: String,
        /// The paid transaction.
        transaction: Transaction,
    },
    /// `REFUND.SUCCESS` / `REFUND.ABNORMAL` / `REFUND.CLOSED`.
    Refund {
        /// Envelope id.
        id: String,
        /// Which event.
        event: RefundEvent,
        /// The refund.
        refund: RefundNotification,
    },
    /// Another event type, verified and decrypted but not typed here.
    Other {
        /// Envelope id.
        id: String,
        /// The event type.
        event_type: String,
        /// Decrypted JSON.
        resource: serde_json::Value,
    },
}

impl Notification {
    /// The envelope id.
    pub fn id(&self) -> &str {
        match self {
            Self::TransactionSuccess { id, .. }
            | Self::Refund { id, .. }
            | Self::Other { id, .. } => id,
        }
    }
}

/// Decrypt an envelope's resource to its plaintext JSON string (no signature check: callers
/// must have verified the body first; [`parse_notification`] does both).
pub fn decrypt_resource(key: &ApiV3Key, resource: &EncryptedResource) -> Result<String, AeadError> {
    check_algorithm(&resource.algorithm)?;
    key.decrypt_to_string(
        &resource.nonce,
        resource.associated_data.as_deref().unwrap_or(""),
        &resource.ciphertext,
    )
}

fn typed<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    plaintext: &str,
) -> Result<T, NotifyError> {
    serde_json::from_str(plaintext).map_err(|e| NotifyError::Resource {
        kind,
        problem: e.to_string(),
    })
}

/// Verify `body` against `headers` as of `now_unix`, then decrypt and parse it.
pub fn parse_notification(
    verifier: &Verifier,
    key: &ApiV3Key,
    headers: &SignatureHeaders,
    body: &[u8],
    now_unix: i64,
) -> Result<Notification, NotifyError> {
    verifier.verify(headers, body, now_unix)?;
    let envelope: NotificationEnvelope =
        serde_json::from_slice(body).map_err(|e| NotifyError::Envelope(e.to_string()))?;
    let plaintext = decrypt_resource(key, &envelope.resource)?;
    let id = envelope.id;
    Ok(match envelope.event_type.as_str() {
        "TRANSACTION.SUCCESS" => Notification::TransactionSuccess {
            id,
            transaction: typed("transaction", &plaintext)?,
        },
        "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED" => {
            let event = match envelope.event_type.as_str() {
                "REFUND.SUCCESS" => RefundEvent::Success,
                "REFUND.ABNORMAL" => RefundEvent::Abnormal,
                _ => RefundEvent::Closed,
            };
            Notification::Refund {
                id,
                event,
                refund: typed("refund", &plaintext)?,
            }
        }
        _ => Notification::Other {
            id,
            event_type: envelope.event_type,
            resource: typed("JSON", &plaintext)?,
        },
    })
}

/// The body to answer a notification with when it is refused (HTTP 4xx/5xx makes WeChat
/// redeliver); success is an empty 200/204.
pub fn failure_reply(message: &str) -> String {
    serde_json::json!({ "code": "FAIL", "message": message }).to_string()
}
