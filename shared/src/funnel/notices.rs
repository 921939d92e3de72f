//! Template messages to followers (`oa_messages`): the hook and the sender.
//!
//! Other code calls [`notify`] when something happens that a buyer who follows the account
//! should hear about. It only records the notice (one document per event key, so a repeated
//! event is one notice) and never calls WeChat, so it is cheap and safe inside any flow:
//!
//! ```json
//! {"_id": "n_<24 hex>", "event": "refund:RF1", "kind": "refund_settled", "mpOpenid": "…",
//!  "page": "pages/orders/detail?id=…", "fields": {"orderId": "…", "amount": "¥9.90"},
//!  "status": "pending" | "sent" | "skipped" | "failed", "attempts": 0, "nextAttemptAt": 1700000000,
//!  "createdAt": 1700000000, "oaOpenid": "…"?, "msgid": 123?, "errcode": 43004?, "reason": "…"?,
//!  "sentAt": 1700000000?, "delivery": "success"?}
//! ```
//!
//! [`send_due`] (a reconcile step, within its budget) sends what is due: it takes a lease on
//! each notice (a conditional update on `nextAttemptAt`, so two runs never send one notice
//! twice), resolves the follower through the buyer's UnionID, and sends only to a person who
//! follows the account now (`followers.subscribed`, kept by the subscribe/unsubscribe
//! pushes). Outcomes: `sent` (with msgid), `skipped` (`no_template`, `no_unionid`,
//! `not_following`), `failed` (a non-retryable errcode, or retries exhausted); retryable
//! failures (busy, transport, 5xx, quota 45009) stay `pending` with exponential backoff.
//! The page opened carries `from=oa_tpl&tpl=<kind>&m=<notice id>`: the Mini Program reports
//! it at launch (login `launch`) and the open becomes a touch.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{FunnelError, FunnelSettings, derived_id};
use crate::clock::SharedClock;
use crate::identity::people;
use crate::ratelimit::{Limit, RateLimitError, RateLimiter};
use crate::store::collections::{FOLLOWERS, OA_MESSAGES, USERS};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};
use crate::wechat::WechatError;
use crate::wechat::oa::TemplateMessage;

/// Attempts before a retryable failure is given up.
pub const MAX_ATTEMPTS: i64 = 5;
/// How long a sender holds a notice it is sending.
pub const LEASE_SECS: i64 = 120;
/// First retry delay; doubled each attempt.
pub const RETRY_BASE_SECS: i64 = 60;

/// What a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A physical order left the warehouse.
    OrderShipped,
    /// A refund reached the buyer.
    RefundSettled,
    /// A subscription period ends soon.
    RenewalDue,
    /// New content in a series the person follows.
    NewContent,
}

impl NoticeKind {
    /// The stored and configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::OrderShipped => "order_shipped",
            NoticeKind::RefundSettled => "refund_settled",
            NoticeKind::RenewalDue => "renewal_due",
            NoticeKind::NewContent => "new_content",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            NoticeKind::OrderShipped,
            NoticeKind::RefundSettled,
            NoticeKind::RenewalDue,
            NoticeKind::NewContent,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Something a buyer should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// The event's own key (`refund:<refundNo>`, `ship:<orderId>`…): one notice per key.
    pub event: String,
    /// The buyer's Mini Program openid.
    pub mp_openid: String,
    /// The Mini Program page it opens (no leading `/`, may carry a query).
    pub page: String,
    /// Field values by notice field name (mapped to template fields by `WX_OA_TEMPLATES`).
    pub fields: Vec<(String, String)>,
}

impl Notice {
    /// Order shipped (the hook for the shipping flow: call [`notify`] with it when the
    /// order leaves the warehouse).
    pub fn order_shipped(
        order_id: &str,
        mp_openid: &str,
        carrier: &str,
        tracking_no: &str,
    ) -> Self {
        Self {
            kind: NoticeKind::OrderShipped,
            event: format!("ship:{order_id}"),
            mp_openid: mp_openid.to_owned(),
            page: format!("shop/pages/order/order?id={order_id}"),
            fields: vec![
                ("orderId".into(), order_id.into()),
                ("carrier".into(), carrier.into()),
                ("trackingNo".into(), tracking_no.into()),
            ],
        }
    }

    /// A refund reached the buyer.
    pub fn refund_settled(
        refund_no: &str,
        order_id: &str,
        mp_openid: &str,
        amount_fen: i64,
    ) -> Self {
        Self {
            kind: NoticeKind::RefundSettled,
            event: format!("refund:{refund_no}"),
            mp_openid: mp_openid.to_owned(),
            page: format!("shop/pages/order/order?id={order_id}"),
            fields: vec![
                ("orderId".into(), order_id.into()),
                ("amount".into(), yuan(amount_fen)),
            ],
        }
    }

    /// A subscription period ends at `period_end` (Unix seconds).
    pub fn renewal_due(
        subscription: &str,
        mp_openid: &str,
        plan_name: &str,
        period_end: i64,
    ) -> Self {
        Self {
            kind: NoticeKind::RenewalDue,
            event: format!("renewal:{subscription}@{period_end}"),
            mp_openid: mp_openid.to_owned(),
            page: "membership/pages/membership/membership".into(),
            fields: vec![
                ("plan".into(), plan_name.into()),
                ("endsOn".into(), date(period_end)),
            ],
        }
    }

    /// New content `content_id` in a series the person follows.
    pub fn new_content(content_id: &str, mp_openid: &str, title: &str) -> Self {
        Self {
            kind: NoticeKind::NewContent,
            event: format!("content:{content_id}:{mp_openid}"),
            mp_openid: mp_openid.to_owned(),
            page: format!("content/pages/reader/reader?id={content_id}"),
            fields: vec![("title".into(), title.chars().take(20).collect())],
        }
    }
}

fn yuan(fen: i64) -> String {
    format!("¥{}.{:02}", fen / 100, (fen % 100).abs())
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            let t = t.to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC));
            format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
        })
        .unwrap_or_default()
}

/// The notice id of an event key (also the `m` query parameter of the page).
pub fn notice_id(event: &str) -> String {
    derived_id("n_", event)
}

/// Records a notice (the hook). Returns `false` when the event already has one.
///
/// # Errors
/// Store failures.
pub async fn notify(store: &dyn Store, notice: &Notice, now: i64) -> Result<bool, FunnelError> {
    let fields: Map<String, Value> = notice
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let doc = json!({
        "_id": notice_id(&notice.event),
        "event": notice.event,
        "kind": notice.kind.as_str(),
        "mpOpenid": notice.mp_openid,
        "page": notice.page,
        "fields": fields,
        "status": "pending",
        "attempts": 0,
        "nextAttemptAt": now,
        "createdAt": now,
    });
    match store.insert(OA_MESSAGES, doc).await {
        Ok(_) => Ok(true),
        Err(StoreError::DuplicateKey { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends template messages (the Official Account's client; a fake in tests).
pub trait TemplateSender: Send + Sync {
    /// Sends one message; the msgid.
    fn send<'a>(
        &'a self,
        msg: &'a TemplateMessage,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<i64, WechatError>> + Send + 'a>>;
}

impl TemplateSender for crate::wechat::WechatClient {
    fn send<'a>(
        &'a self,
        msg: &'a TemplateMessage,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<i64, WechatError>> + Send + 'a>> {
        Box::pin(self.oa_send_template(msg))
    }
}

/// What one [`send_due`] run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendReport {
    /// Sent.
    pub sent: u32,
    /// Not sent, for good (`skipped`: no template, no UnionID, not following).
    pub skipped: u32,
    /// Left pending for a retry.
    pub retrying: u32,
    /// Given up (`failed`).
    pub failed: u32,
    /// Left pending by the rate limits.
    pub rate_limited: u32,
}

/// The page a notice opens, with what the Mini Program reports at launch.
pub fn page_with_touch(page: &str, kind: &str, id: &str) -> String {
    let sep = if page.contains('?') { '&' } else { '?' };
    format!("{page}{sep}from=oa_tpl&tpl={kind}&m={id}")
}

enum Target {
    Follower(String),
    Skip(&'static str),
}

async fn follower_of(store: &dyn Store, mp_openid: &str) -> Result<Target, StoreError> {
    let Some(unionid) = store
        .get(USERS, mp_openid)
        .await?
        .and_then(|u| u["unionid"].as_str().map(str::to_owned))
    else {
        return Ok(Target::Skip("no_unionid"));
    };
    let Some(oa) = people::by_unionid(store, &unionid)
        .await?
        .and_then(|p| p.oa_openid)
    else {
        return Ok(Target::Skip("not_following"));
    };
    let follows = store
        .get(FOLLOWERS, &oa)
        .await?
        .is_some_and(|f| f["subscribed"] == true);
    Ok(if follows {
        Target::Follower(oa)
    } else {
        Target::Skip("not_following")
    })
}

async fn finish(store: &dyn Store, id: &str, update: Update) -> Result<(), StoreError> {
    store
        .update_one(
            OA_MESSAGES,
            &Filter::id(id),
            &update,
            UpdateOptions::default(),
        )
        .await?;
    Ok(())
}

/// Sends up to `budget` due notices (see the module docs).
///
/// # Errors
/// Store failures (a notice being sent keeps its lease and is retried after it).
pub async fn send_due(
    store: &Arc<dyn Store>,
    sender: &dyn TemplateSender,
    settings: &FunnelSettings,
    clock: &SharedClock,
    budget: u32,
) -> Result<SendReport, FunnelError> {
    let mut report = SendReport::default();
    if budget == 0 {
        return Ok(report);
    }
    let now = clock.now_unix();
    let due = store
        .find(
            OA_MESSAGES,
            &Filter::eq("status", "pending").and(Filter::lte("nextAttemptAt", now)),
            &FindOptions::new()
                .sort_asc("nextAttemptAt")
                .limit(u64::from(budget)),
        )
        .await?;
    let limits = RateLimiter::new(store.clone()).with_clock(clock.clone());
    let st = store.as_ref();
    for doc in due {
        let id = doc["_id"].as_str().unwrap_or_default().to_owned();
        // The lease: only one run moves `nextAttemptAt` from the value it read.
        let leased = st
            .update_one(
                OA_MESSAGES,
                &Filter::id(&id)
                    .and(Filter::eq("status", "pending"))
                    .and(Filter::eq("nextAttemptAt", doc["nextAttemptAt"].clone())),
                &Update::new().set("nextAttemptAt", now + LEASE_SECS),
                UpdateOptions::default(),
            )
            .await?;
        if leased.is_none() {
            continue;
        }
        let kind = doc["kind"].as_str().unwrap_or_default();
        let Some(spec) = settings.templates.get(kind) else {
            finish(
                st,
                &id,
                Update::new()
                    .set("status", "skipped")
                    .set("reason", "no_template"),
            )
            .await?;
            report.skipped += 1;
            continue;
        };
        let mp = doc["mpOpenid"].as_str().unwrap_or_default();
        let oa = match follower_of(st, mp).await? {
            Target::Follower(oa) => oa,
            Target::Skip(reason) => {
                finish(
                    st,
                    &id,
                    Update::new().set("status", "skipped").set("reason", reason),
                )
                .await?;
                report.skipped += 1;
                continue;
            }
        };
        // The account's pace, then the follower's daily allowance.
        let mut limited = false;
        for (subject, action, limit) in [
            (
                "account",
                "oaTemplate",
                Limit::per_minute(settings.per_minute),
            ),
            (
                oa.as_str(),
                "oaTemplate.follower",
                Limit::per_day(settings.per_follower_day),
            ),
        ] {
            match limits.hit(subject, action, limit).await {
                Ok(_) => {}
                Err(RateLimitError::Limited {
                    retry_after_secs, ..
                }) => {
                    let at = now + i64::try_from(retry_after_secs).unwrap_or(60).max(1);
                    finish(st, &id, Update::new().set("nextAttemptAt", at)).await?;
                    report.rate_limited += 1;
                    limited = true;
                    break;
                }
                Err(RateLimitError::Store(e)) => return Err(e.into()),
                Err(RateLimitError::InvalidKey(_)) => {}
            }
        }
        if limited {
            continue;
        }
        let fields = &doc["fields"];
        let data: Vec<(String, String)> = match &spec.fields {
            Some(map) => map
                .iter()
                .map(|(tpl, ours)| {
                    (
                        tpl.clone(),
                        fields[ours].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            None => fields
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let msg = TemplateMessage {
            touser: oa.clone(),
            template_id: spec.id.clone(),
            miniprogram_appid: settings.mini_program_appid.clone(),
            pagepath: page_with_touch(
                doc["page"].as_str().unwrap_or("pages/index/index"),
                kind,
                &id,
            ),
            data,
            client_msg_id: Some(id.clone()),
        };
        let attempts = doc["attempts"].as_i64().unwrap_or(0) + 1;
        match sender.send(&msg).await {
            Ok(msgid) => {
                finish(
                    st,
                    &id,
                    Update::new()
                        .set("status", "sent")
                        .set("msgid", msgid)
                        .set("oaOpenid", oa.as_str())
                        .set("attempts", attempts)
                        .set("sentAt", now),
                )
                .await?;
                report.sent += 1;
            }
            Err(e) => {
                let code = e.errcode().map(|c| c.code());
                let retryable = e.is_retryable() || code == Some(45009);
                let mut update = Update::new()
                    .set("attempts", attempts)
                    .set("lastError", e.to_string());
                if let Some(c) = code {
                    update = update.set("errcode", c);
                }
                if code == Some(43004) {
                    // WeChat says the person does not follow (an unsubscribe push not seen yet).
                    update = update
                        .set("status", "skipped")
                        .set("reason", "not_following");
                    report.skipped += 1;
                } else if retryable && attempts < MAX_ATTEMPTS {
                    let delay = RETRY_BASE_SECS << (attempts - 1).clamp(0, 10);
                    update = update.set("nextAttemptAt", now + delay);
                    report.retrying += 1;
                } else {
                    update = update.set("status", "failed");
                    tracing::warn!(notice = %id, error = %e, "template message failed");
                    report.failed += 1;
                }
                finish(st, &id, update).await?;
            }
        }
    }
    Ok(report)
}

/// Records WeChat's `TEMPLATESENDJOBFINISH` outcome (`success`, `failed:user block`,
/// `failed: system failed`) on the message with that msgid. Returns whether one matched.
///
/// # Errors
/// Store failures.
pub async fn record_delivery(
    store: &dyn Store,
    msgid: i64,
    status: &str,
) -> Result<bool, FunnelError> {
    let status: String = status.chars().take(64).collect();
    Ok(store
        .update_one(
            OA_MESSAGES,
            &Filter::eq("msgid", msgid),
            &Update::new().set("delivery", status),
            UpdateOptions::default(),
        )
        .await?
        .is_some())
}

/// The notice `id` if it was sent to `mp_openid` (a template open reported at launch).
///
/// # Errors
/// Store failures.
pub async fn sent_to(
    store: &dyn Store,
    id: &str,
    mp_openid: &str,
) -> Result<Option<Value>, FunnelError> {
    if !id.starts_with("n_") || id.len() > 40 {
        return Ok(None);
    }
    Ok(store
        .get(OA_MESSAGES, id)
        .await?
        .filter(|m| m["mpOpenid"] == mp_openid && m["status"] == "sent"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::store::sqlite::SqliteStore;
    use std::sync::Mutex;

    struct Fake {
        sent: Mutex<Vec<TemplateMessage>>,
        fail: Mutex<Vec<WechatError>>,
    }

    impl TemplateSender for Fake {
        fn send<'a>(
            &'a self,
            msg: &'a TemplateMessage,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<i64, WechatError>> + Send + 'a>> {
            Box::pin(async move {
                if let Some(e) = self.fail.lock().unwrap().pop() {
                    return Err(e);
                }
                let mut sent = self.sent.lock().unwrap();
                sent.push(msg.clone());
                Ok(sent.len() as i64)
            })
        }
    }

    fn settings() -> FunnelSettings {
        FunnelSettings::parse(
            "wxmp",
            Some(r#"{"refund_settled": {"id": "T1", "fields": {"amount2": "amount"}}}"#),
            None,
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn sends_to_followers_only_and_retries_retryable_failures() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        crate::store::bootstrap(store.as_ref()).await.unwrap();
        let st = store.as_ref();
        for (mp, oa, follows) in [("mp1", "oa1", true), ("mp2", "oa2", false)] {
            st.insert(
                USERS,
                json!({"_id": mp, "openid": mp, "unionid": format!("U-{mp}")}),
            )
            .await
            .unwrap();
            people::link(st, &format!("U-{mp}"), people::Side::Oa, oa, 1)
                .await
                .unwrap();
            st.insert(
                FOLLOWERS,
                json!({"_id": oa, "openid": oa, "subscribed": follows}),
            )
            .await
            .unwrap();
        }
        st.insert(USERS, json!({"_id": "mp3", "openid": "mp3"}))
            .await
            .unwrap();
        let clock: SharedClock = Arc::new(FixedClock::new(1_000));
        for (no, mp) in [("R1", "mp1"), ("R2", "mp2"), ("R3", "mp3")] {
            assert!(
                notify(st, &Notice::refund_settled(no, "O", mp, 990), 1_000)
                    .await
                    .unwrap()
            );
            assert!(
                !notify(st, &Notice::refund_settled(no, "O", mp, 990), 1_000)
                    .await
                    .unwrap()
            );
        }
        notify(st, &Notice::renewal_due("s", "mp1", "VIP", 2_000), 1_000)
            .await
            .unwrap();
        let fake = Fake {
            sent: Mutex::new(vec![]),
            fail: Mutex::new(vec![WechatError::Status(503)]),
        };
        let r = send_due(&store, &fake, &settings(), &clock, 10)
            .await
            .unwrap();
        // R1 hit the 503 (retrying), R2 unsubscribed, R3 no unionid, renewal has no template.
        assert_eq!(
            r,
            SendReport {
                sent: 0,
                skipped: 3,
                retrying: 1,
                failed: 0,
                rate_limited: 0
            }
        );
        let clock: SharedClock = Arc::new(FixedClock::new(1_000 + RETRY_BASE_SECS));
        let r = send_due(&store, &fake, &settings(), &clock, 10)
            .await
            .unwrap();
        assert_eq!(r.sent, 1);
        let sent = fake.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].touser, "oa1");
        assert_eq!(
            sent[0].data,
            vec![("amount2".to_owned(), "¥9.90".to_owned())]
        );
        let id = notice_id("refund:R1");
        assert!(
            sent[0]
                .pagepath
                .ends_with(&format!("from=oa_tpl&tpl=refund_settled&m={id}"))
        );
        let doc = st.get(OA_MESSAGES, &id).await.unwrap().unwrap();
        assert_eq!(doc["status"], "sent");
        assert_eq!(doc["attempts"], 2);
        assert!(sent_to(st, &id, "mp1").await.unwrap().is_some());
        assert!(sent_to(st, &id, "mp2").await.unwrap().is_none());
        assert!(record_delivery(st, 1, "success").await.unwrap());
        let r2 = st
            .get(OA_MESSAGES, &notice_id("refund:R2"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r2["reason"], "not_following");
        // Nothing left to send.
        assert_eq!(
            send_due(&store, &fake, &settings(), &clock, 10)
                .await
                .unwrap(),
            SendReport::default()
        );
    }

    #[test]
    fn money_and_dates() {
        assert_eq!(yuan(990), "¥9.90");
        assert_eq!(yuan(100_005), "¥1000.05");
        assert_eq!(date(0), "1970-01-01");
    }
}
