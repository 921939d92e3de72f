//! The CRM webhook: every changed customer record pushed to a configured URL, signed, at
//! least once, through an outbox (`crm_outbox`).
//!
//! - **Outbox.** [`Webhook::enqueue`] turns each `dirty` record into one outbox entry keyed
//!   `<openid>:<version>` (the idempotency key), with the exact body to send, and only then
//!   clears `dirty` (conditional on the version). A crash between the two writes leaves the
//!   record dirty: the next run inserts the same key again (a duplicate, ignored) and clears
//!   it. Nothing is lost, nothing is queued twice.
//! - **Delivery.** [`Webhook::deliver_due`] sends entries whose `nextAt` has come, oldest
//!   first. Each is claimed by a conditional update (attempts unchanged) that also moves
//!   `nextAt` a lease ahead, so two overlapping runs do not send the same entry at the same
//!   time, and a run that dies mid-send leaves it to be sent again after the lease. A 2xx
//!   answer marks it `delivered`; anything else schedules the next attempt with exponential
//!   backoff ([`backoff_secs`]: 30 s doubling, at most an hour), without giving up.
//! - **Signature.** `X-Wemint-Timestamp: <unix seconds>` and `X-Wemint-Signature:
//!   v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, plus `Idempotency-Key:
//!   <openid>:<version>`. The receiver checks the signature over the raw body, refuses old
//!   timestamps, and applies each key once. The secret is a [`crate::secret::Secret`], never
//!   logged.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::domain::crm::Customer;
use crate::store::collections::{CRM_CUSTOMERS, CRM_OUTBOX};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

/// Header carrying the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-wemint-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-wemint-signature";
/// Header carrying `<openid>:<version>`.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// First retry delay.
pub const BACKOFF_BASE_SECS: i64 = 30;
/// Longest retry delay.
pub const BACKOFF_MAX_SECS: i64 = 3600;
/// How long a claimed entry is left to its sender before another run may send it.
pub const LEASE_SECS: i64 = 60;
/// Delivered entries are kept this long (then [`Webhook::purge`] deletes them).
pub const KEEP_DELIVERED_SECS: i64 = 7 * 86_400;
/// Dirty records one enqueue turns into entries at most.
pub const ENQUEUE_PAGE: u64 = 500;

/// The delay before attempt `attempts + 1`, after `attempts` failures (from 1).
pub fn backoff_secs(attempts: i64) -> i64 {
    let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    BACKOFF_BASE_SECS
        .saturating_mul(1i64 << shift)
        .min(BACKOFF_MAX_SECS)
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Checks a signature header in constant time (what a receiver does; the emulator's CRM
/// stand-in uses it).
pub fn verify(secret: &[u8], timestamp: i64, body: &str, header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut msg = timestamp.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body.as_bytes());
    aws_lc_rs::hmac::verify(&key, &msg, &sig).is_ok()
}

/// The webhook's settings (`CRM_WEBHOOK_URL`, `CRM_WEBHOOK_SECRET`).
pub use crate::config::CrmWebhookSettings as WebhookSettings;

/// One POST's outcome: the HTTP status, or a transport failure (without the URL).
pub type PostResult = Result<u16, String>;

/// Sends one request (the real one goes through [`crate::outbound::client`]).
#[async_trait]
pub trait Transport: Send + Sync {
    /// POSTs `body` as JSON to `url` with `headers`.
    async fn post(&self, url: &str, headers: &[(&str, String)], body: &str) -> PostResult;
}

/// The shared outbound client.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpTransport;

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, url: &str, headers: &[(&str, String)], body: &str) -> PostResult {
        let client = crate::outbound::client().map_err(|e| e.to_string())?;
        let mut req = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        match req.send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) => Err(e.without_url().to_string()),
        }
    }
}

/// What one delivery run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReport {
    /// Outbox entries created from dirty records.
    pub enqueued: u64,
    /// Entries delivered (2xx).
    pub delivered: u64,
    /// Entries that failed and were rescheduled.
    pub failed: u64,
}

/// The push side. Cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    settings: WebhookSettings,
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.settings.url)
            .finish_non_exhaustive()
    }
}

/// The body pushed for one record version.
pub fn body(record: &Customer, version: i64, at: i64) -> String {
    json!({
        "type": "customer.changed",
        "idempotencyKey": format!("{}:{version}", record.openid),
        "version": version,
        "at": at,
        "customer": record,
    })
    .to_string()
}

impl Webhook {
    /// Pushes to `settings.url` through `transport`.
    pub fn new(settings: WebhookSettings, transport: Arc<dyn Transport>) -> Self {
        Self {
            settings,
            transport,
        }
    }

    /// Turns dirty records into outbox entries (see the module docs). Returns how many
    /// entries were created.
    ///
    /// # Errors
    /// The store's.
    pub async fn enqueue(&self, store: &dyn Store, now: i64) -> Result<u64, StoreError> {
        let dirty = store
            .find(
                CRM_CUSTOMERS,
                &Filter::eq("dirty", true),
                &FindOptions::new().limit(ENQUEUE_PAGE),
            )
            .await?;
        let mut created = 0;
        for doc in dirty {
            let Some(version) = doc.get("version").and_then(Value::as_i64) else {
                continue;
            };
            let Ok(record) = serde_json::from_value::<Customer>(doc.clone()) else {
                tracing::warn!("crm: a stored customer record does not parse; skipped");
                continue;
            };
            let key = format!("{}:{version}", record.openid);
            let entry = json!({
                "_id": key,
                "openid": record.openid,
                "version": version,
                "body": body(&record, version, now),
                "status": "pending",
                "attempts": 0,
                "nextAt": now,
                "createdAt": now,
            });
            match store.insert(CRM_OUTBOX, entry).await {
                Ok(_) => created += 1,
                Err(StoreError::DuplicateKey { .. }) => {}
                Err(e) => return Err(e),
            }
            store
                .update_one(
                    CRM_CUSTOMERS,
                    &Filter::id(record.openid.as_str())
                        .and(Filter::eq("version", version))
                        .and(Filter::eq("dirty", true)),
                    &Update::new().set("dirty", false),
                    UpdateOptions::default(),
                )
                .await?;
        }
        Ok(created)
    }

    /// Sends up to `budget` due entries (see the module docs).
    ///
    /// # Errors
    /// The store's (a failed POST is not an error: it is rescheduled).
    pub async fn deliver_due(
        &self,
        store: &dyn Store,
        clock: &SharedClock,
        budget: u64,
    ) -> Result<DeliveryReport, StoreError> {
        let now = clock.now_unix();
        let due = store
            .find(
                CRM_OUTBOX,
                &Filter::eq("status", "pending").and(Filter::lte("nextAt", now)),
                &FindOptions::new().sort_asc("nextAt").limit(budget),
            )
            .await?;
        let mut report = DeliveryReport::default();
        for entry in due {
            let (Some(id), Some(body)) = (
                entry.get("_id").and_then(Value::as_str),
                entry.get("body").and_then(Value::as_str),
            ) else {
                continue;
            };
            let attempts = entry.get("attempts").and_then(Value::as_i64).unwrap_or(0);
            let claim = Filter::id(id)
                .and(Filter::eq("status", "pending"))
                .and(Filter::eq("attempts", attempts));
            let claimed = store
                .update_one(
                    CRM_OUTBOX,
                    &claim,
                    &Update::new().set("nextAt", now + LEASE_SECS),
                    UpdateOptions::default(),
                )
                .await?;
            if claimed.is_none() {
                continue;
            }
            let timestamp = clock.now_unix();
            let headers = [
                (TIMESTAMP_HEADER, timestamp.to_string()),
                (
                    SIGNATURE_HEADER,
                    signature(self.settings.secret.expose().as_bytes(), timestamp, body),
                ),
                (IDEMPOTENCY_HEADER, id.to_owned()),
            ];
            let outcome = self
                .transport
                .post(&self.settings.url, &headers, body)
                .await;
            let done = clock.now_unix();
            let update = match outcome {
                Ok(status) if (200..300).contains(&status) => {
                    report.delivered += 1;
                    Update::new()
                        .set("status", "delivered")
                        .set("deliveredAt", done)
                        .set("attempts", attempts + 1)
                        .unset("lastError")
                }
                failure => {
                    report.failed += 1;
                    let error = match failure {
                        Ok(status) => format!("http {status}"),
                        Err(e) => format!("transport: {e}"),
                    };
                    tracing::warn!(key = id, attempts = attempts + 1, %error, "crm webhook failed");
                    Update::new()
                        .set("attempts", attempts + 1)
                        .set("nextAt", done + backoff_secs(attempts + 1))
                        .set("lastError", error)
                }
            };
            store
                .update_one(
                    CRM_OUTBOX,
                    &Filter::id(id).and(Filter::eq("attempts", attempts)),
                    &update,
                    UpdateOptions::default(),
                )
                .await?;
        }
        Ok(report)
    }

    /// One timer run: enqueue dirty records, then deliver up to `budget` due entries.
    ///
    /// # Errors
    /// The store's.
    pub async fn run(
        &self,
        store: &dyn Store,
        clock: &SharedClock,
        budget: u64,
    ) -> Result<DeliveryReport, StoreError> {
        let enqueued = self.enqueue(store, clock.now_unix()).await?;
        let mut report = self.deliver_due(store, clock, budget).await?;
        report.enqueued = enqueued;
        Ok(report)
    }

    /// Deletes entries delivered more than [`KEEP_DELIVERED_SECS`] ago.
    ///
    /// # Errors
    /// The store's.
    pub async fn purge(store: &dyn Store, now: i64) -> Result<u64, StoreError> {
        store
            .delete_many(
                CRM_OUTBOX,
                &Filter::eq("status", "delivered")
                    .and(Filter::lt("deliveredAt", now - KEEP_DELIVERED_SECS)),
            )
            .await
    }
}
