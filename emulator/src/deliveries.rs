//! Outgoing notifications: WeChat Pay's TRANSACTION.SUCCESS / REFUND.SUCCESS to payNotify
//! and WeChat's message pushes (media check results, xpay deliveries) to wxPush.
//!
//! Every delivery is a document in `dev_deliveries` with its attempts, so the console can
//! show the history and a restart resumes pending retries. Failed attempts are retried on
//! WeChat's schedule (WeChat Pay: 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h;
//! pushes: three retries), each delay multiplied by the suite's compression factor. A pay
//! notification is rebuilt for every attempt (new timestamp, nonce and signature, same
//! notification id), as WeChat does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, StoreError, Update, UpdateOptions};
use wemint::wechat::{PushCrypto, PushFormat, Stamp};

use crate::keys::{ALNUM, random_from};
use crate::suite::Suite;

/// Deliveries and their attempts.
pub const DELIVERIES: &str = "dev_deliveries";
/// Small emulator state documents (`failNext`, clock).
pub const STATE: &str = "dev_state";

/// WeChat Pay's notification retry delays, in seconds, after the first attempt.
pub const WECHATPAY_SCHEDULE: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];
/// Message push: WeChat retries three times.
pub const PUSH_SCHEDULE: [u64; 3] = [5, 5, 5];
/// WeChat gives up on an attempt after five seconds.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What is being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// TRANSACTION.SUCCESS to the order's notify_url.
    Payment,
    /// REFUND.SUCCESS to the refund's notify_url.
    Refund,
    /// A safe-mode message push to wxPush.
    Push,
    /// COMPLAINT.* to the merchant's complaint notification URL.
    Complaint,
}

impl DeliveryKind {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Payment => "payment",
            DeliveryKind::Refund => "refund",
            DeliveryKind::Push => "push",
            DeliveryKind::Complaint => "complaint",
        }
    }

    fn schedule(self) -> &'static [u64] {
        match self {
            DeliveryKind::Push => &PUSH_SCHEDULE,
            _ => &WECHATPAY_SCHEDULE,
        }
    }
}

/// Delay before retry number `retry` (1-based) under `factor`; `None` when the schedule is
/// exhausted.
pub fn retry_delay(kind_schedule: &[u64], retry: usize, factor: f64) -> Option<Duration> {
    let secs = *kind_schedule.get(retry.checked_sub(1)?)?;
    Some(Duration::from_secs_f64(secs as f64 * factor))
}

/// Queues a delivery. `payload` is the plaintext: for pay kinds `{url, eventType, summary,
/// originalType, resource}`, for pushes the event JSON.
pub async fn enqueue(
    suite: &Suite,
    kind: DeliveryKind,
    reference: &str,
    openid: Option<&str>,
    payload: Value,
    delay_ms: u64,
) -> Result<String, StoreError> {
    let id = format!("{}-{}", kind.as_str(), random_from(ALNUM, 12));
    let now_ms = real_millis();
    let event_name = match kind {
        DeliveryKind::Push => payload["Event"].as_str().unwrap_or("push").to_owned(),
        _ => payload["eventType"].as_str().unwrap_or_default().to_owned(),
    };
    suite
        .store
        .insert(
            DELIVERIES,
            json!({
                "_id": id, "kind": kind.as_str(), "ref": reference, "openid": openid, "event": event_name,
                "notifyId": format!("EV-{}", random_from(ALNUM, 20)), "payload": payload,
                "state": "pending", "attempts": [], "nextAt": now_ms + delay_ms as i64,
                "createdAt": suite.clock.now()
            }),
        )
        .await?;
    suite.deliveries_wake.notify_one();
    Ok(id)
}

fn real_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Makes the next `n` attempts fail without being sent (console button).
pub async fn fail_next(suite: &Suite, n: i64) -> Result<i64, StoreError> {
    let doc = suite
        .store
        .update_one(
            STATE,
            &Filter::id("deliveries"),
            &Update::new().inc("failNext", n),
            UpdateOptions::upsert(),
        )
        .await?;
    Ok(doc.and_then(|d| d["failNext"].as_i64()).unwrap_or(0))
}

async fn take_fail_next(suite: &Suite) -> Result<bool, StoreError> {
    let taken = suite
        .store
        .update_one(
            STATE,
            &Filter::id("deliveries").and(Filter::gt("failNext", 0)),
            &Update::new().inc("failNext", -1),
            UpdateOptions::default(),
        )
        .await?;
    Ok(taken.is_some())
}

/// Runs the delivery loop until the suite shuts down.
pub async fn run(suite: Arc<Suite>) {
    // Attempts cut short by a crash or a stop are retried.
    match suite
        .store
        .find(
            DELIVERIES,
            &Filter::eq("state", "sending"),
            &FindOptions::new(),
        )
        .await
    {
        Ok(docs) => {
            for doc in docs {
                let Some(id) = doc["_id"].as_str() else {
                    continue;
                };
                if let Err(e) = suite
                    .store
                    .update_one(
                        DELIVERIES,
                        &Filter::id(id),
                        &Update::new()
                            .set("state", "pending")
                            .set("nextAt", real_millis()),
                        UpdateOptions::default(),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "cannot resume a delivery");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot scan deliveries"),
    }
    let mut shutdown = suite.shutdown_signal();
    loop {
        let due = suite
            .store
            .find(
                DELIVERIES,
                &Filter::eq("state", "pending").and(Filter::lte("nextAt", real_millis())),
                &FindOptions::new().sort_asc("nextAt").limit(32),
            )
            .await
            .unwrap_or_default();
        for doc in due {
            let Some(id) = doc["_id"].as_str().map(str::to_owned) else {
                continue;
            };
            let claimed = suite
                .store
                .update_one(
                    DELIVERIES,
                    &Filter::id(&id).and(Filter::eq("state", "pending")),
                    &Update::new().set("state", "sending"),
                    UpdateOptions::default(),
                )
                .await;
            if let Ok(Some(doc)) = claimed {
                let suite = Arc::clone(&suite);
                tokio::spawn(async move { attempt(&suite, doc).await });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = suite.deliveries_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What one attempt got back.
struct Outcome {
    status: Option<u16>,
    ok: bool,
    error: Option<String>,
    reply: String,
}

async fn attempt(suite: &Suite, doc: Value) {
    let id = doc["_id"].as_str().unwrap_or_default().to_owned();
    let kind = match doc["kind"].as_str() {
        Some("payment") => DeliveryKind::Payment,
        Some("refund") => DeliveryKind::Refund,
        Some("complaint") => DeliveryKind::Complaint,
        _ => DeliveryKind::Push,
    };
    let number = doc["attempts"].as_array().map_or(0, Vec::len) + 1;
    let started = Instant::now();
    let outcome = match take_fail_next(suite).await {
        Ok(true) => Outcome {
            status: None,
            ok: false,
            error: Some("dropped by the dev console (fail next notification)".into()),
            reply: String::new(),
        },
        _ => send(suite, kind, &doc).await,
    };
    let elapsed_ms = started.elapsed().as_millis() as i64;
    let record = json!({"n": number, "at": suite.clock.now(), "status": outcome.status, "ok": outcome.ok,
        "error": outcome.error, "reply": outcome.reply, "ms": elapsed_ms});
    let mut update = Update::new().push("attempts", record);
    if outcome.ok {
        update = update
            .set("state", "delivered")
            .set("deliveredAt", suite.clock.now());
    } else if let Some(delay) = retry_delay(kind.schedule(), number, suite.options.retry_factor) {
        update = update
            .set("state", "pending")
            .set("nextAt", real_millis() + delay.as_millis() as i64);
    } else {
        update = update.set("state", "failed");
    }
    if let Err(e) = suite
        .store
        .update_one(
            DELIVERIES,
            &Filter::id(&id),
            &update,
            UpdateOptions::default(),
        )
        .await
    {
        tracing::error!(error = %e, delivery = %id, "cannot record a delivery attempt");
    }
    if outcome.ok && doc["event"] == "xpay_goods_deliver_notify" {
        // WeChat marks the virtual order delivered once the merchant acknowledged the push.
        let now = suite.clock.now();
        let _ = suite
            .store
            .update_one(
                crate::standins::wechat_api::XPAY_ORDERS,
                &Filter::id(doc["ref"].as_str().unwrap_or_default()).and(Filter::eq("status", 2)),
                &Update::new()
                    .set("status", 4)
                    .set("provideTime", now)
                    .set("updateTime", now),
                UpdateOptions::default(),
            )
            .await;
    }
}

async fn send(suite: &Suite, kind: DeliveryKind, doc: &Value) -> Outcome {
    let failed = |error: String| Outcome {
        status: None,
        ok: false,
        error: Some(error),
        reply: String::new(),
    };
    let client = match wemint::outbound::client() {
        Ok(c) => c,
        Err(e) => return failed(e.to_string()),
    };
    let request = match kind {
        DeliveryKind::Push => {
            // Official Account pushes (`"app": "oa"` in the payload's envelope) are sealed
            // with the account's appid and addressed from its own gh_ id, as WeChat does.
            let oa = doc["payload"]["ToUserName"].as_str() == Some(suite.oa_gh_id().as_str());
            let appid = if oa {
                suite.keys.oa_appid()
            } else {
                suite.keys.appid.clone()
            };
            let crypto =
                match PushCrypto::new(&suite.keys.push_token, &suite.keys.push_aes_key, &appid) {
                    Ok(c) => c,
                    Err(e) => return failed(format!("push crypto: {e}")),
                };
            let stamp = match Stamp::generate(suite.clock.now()) {
                Ok(s) => s,
                Err(_) => return failed("no randomness".into()),
            };
            let plaintext = doc["payload"].to_string();
            let openid = doc["openid"].as_str();
            let (format, to_user) = if oa {
                (PushFormat::Xml, suite.oa_gh_id())
            } else {
                (PushFormat::Json, suite.gh_id())
            };
            let plaintext = if oa {
                crate::standins::official_account::to_xml(&doc["payload"])
            } else {
                plaintext
            };
            let sealed = crypto.seal_push(plaintext.as_bytes(), format, &to_user, openid, &stamp);
            client
                .post(format!(
                    "{}/wxPush?{}",
                    suite.base_url(),
                    sealed.query_string()
                ))
                .header("content-type", sealed.content_type)
                .body(sealed.body)
        }
        DeliveryKind::Payment | DeliveryKind::Refund | DeliveryKind::Complaint => {
            let payload = &doc["payload"];
            let url = payload["url"].as_str().unwrap_or_default().to_owned();
            let notify_id = doc["notifyId"].as_str().unwrap_or_default();
            let created_at = doc["createdAt"]
                .as_i64()
                .unwrap_or_else(|| suite.clock.now());
            let signed = match crate::standins::wechat_pay::notification(
                suite, notify_id, payload, created_at,
            )
            .await
            {
                Ok(n) => n,
                Err(e) => return failed(format!("cannot build the notification: {e}")),
            };
            let mut builder = client.post(url).header("content-type", "application/json");
            for (name, value) in signed.headers.pairs() {
                builder = builder.header(name, value);
            }
            builder.body(signed.body)
        }
    };
    match request.timeout(ATTEMPT_TIMEOUT).send().await {
        Ok(response) => {
            let status = response.status();
            let reply = response.text().await.unwrap_or_default();
            let ok = status.is_success()
                && match kind {
                    DeliveryKind::Push => push_acknowledged(&reply),
                    _ => true,
                };
            Outcome {
                status: Some(status.as_u16()),
                ok,
                error: (!ok).then(|| format!("HTTP {status}")),
                reply: reply.chars().take(500).collect(),
            }
        }
        Err(e) => failed(if e.is_timeout() {
            "no answer within 5 s".into()
        } else {
            format!("connection failed: {e}")
        }),
    }
}

/// A push is acknowledged by `success`, an empty body, or an `ErrCode: 0` reply (plain or
/// encrypted; an encrypted reply is accepted as is).
fn push_acknowledged(reply: &str) -> bool {
    let trimmed = reply.trim();
    if trimmed.is_empty() || trimmed == "success" {
        return true;
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v) if v.get("Encrypt").is_some() => true,
        Ok(v) => v["ErrCode"].as_i64().or_else(|| v["errcode"].as_i64()) == Some(0),
        Err(_) => trimmed.starts_with("<xml>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_wechats_compressed() {
        let total: u64 = WECHATPAY_SCHEDULE.iter().sum();
        assert_eq!(total, 24 * 3600 + 4 * 60, "WeChat Pay retries span 24h4m");
        assert_eq!(
            retry_delay(&WECHATPAY_SCHEDULE, 1, 1.0),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            retry_delay(&WECHATPAY_SCHEDULE, 4, 0.001),
            Some(Duration::from_millis(180))
        );
        assert_eq!(
            retry_delay(&WECHATPAY_SCHEDULE, 15, 1.0),
            Some(Duration::from_secs(21600))
        );
        assert_eq!(retry_delay(&WECHATPAY_SCHEDULE, 16, 1.0), None);
        assert_eq!(retry_delay(&WECHATPAY_SCHEDULE, 0, 1.0), None);
    }

    #[test]
    fn push_acknowledgements() {
        assert!(push_acknowledged("success"));
        assert!(push_acknowledged(""));
        assert!(push_acknowledged(r#"{"ErrCode":0,"ErrMsg":"success"}"#));
        assert!(!push_acknowledged(r#"{"ErrCode":1,"ErrMsg":"no"}"#));
        assert!(!push_acknowledged("fail"));
    }
}
