//! Renewal reminders as subscribe messages.
//!
//! WeChat lets a Mini Program send one subscribe message per grant: each time the user
//! accepts a template in `wx.requestSubscribeMessage`, one credit, counted by
//! [`crate::wechat::subscribe_grants`] and recorded by gatedContent's `subscribeGrant` action
//! ([`crate::wechat::subscribe_templates::record_consent`], key `renewal`). The timer finds subscriptions whose period ends within the
//! configured days and sends one reminder per subscription and period end
//! (`renewal_reminders`, `_id` = `<subscription>@<periodEnd>`), only while a credit is left.
//! A renewal moves the period end, so the next period gets its own reminder.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Plans, Subscriptions, SubscriptionsError, ending_between};
use crate::config::{ReminderField, ReminderSettings};
use crate::domain::subscription::SubscriptionState;
use crate::store::collections::{RENEWAL_REMINDERS, TENANTS};
use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};
use crate::wechat::{ErrCode, SubscribeMessage, WechatClient, subscribe_grants};

const DAY: i64 = 86_400;
/// `thing` template values are limited to 20 characters.
const THING_MAX_CHARS: usize = 20;

/// One run of gatedContent's timer at `now`: ends the tenant plans that have lapsed, then sends
/// the renewal reminders that are due when reminders are configured (`reminders`). The reply
/// reports both.
pub async fn run_timer(
    subscriptions: &Subscriptions,
    store: &Arc<dyn Store>,
    reminders: Option<(&ReminderSettings, &WechatClient)>,
    now: i64,
) -> Result<Value, SubscriptionsError> {
    let tenant_plans_ended = subscriptions.expire_tenant_plans(now).await?;
    let days = reminders.map_or(DEFAULT_NOTICE_DAYS, |(s, _)| s.days);
    let follower_notices = notify_renewals_due(store, days, now).await?;
    let reminders = match reminders {
        Some((settings, wechat)) => {
            let report = sweep(store, wechat, settings, now).await?;
            tracing::info!(?report, "renewal reminders");
            json!(report)
        }
        None => json!("not configured"),
    };
    Ok(json!({
        "reminders": reminders,
        "tenantPlansEnded": tenant_plans_ended,
        "renewalNotices": follower_notices,
    }))
}

/// Days before a period end that followers get a renewal-due notice when subscribe-message
/// reminders are not configured.
pub const DEFAULT_NOTICE_DAYS: u32 = 3;

/// Records a renewal-due notice (`wemint::funnel::notices`, an Official Account template
/// message for buyers who follow the account) for every active subscription ending within
/// `days`, once per subscription and period end. Returns how many were new.
///
/// # Errors
/// Store failures.
pub async fn notify_renewals_due(
    store: &Arc<dyn Store>,
    days: u32,
    now: i64,
) -> Result<u32, SubscriptionsError> {
    let horizon = now + i64::from(days) * DAY;
    let plans = Plans::load(store).await?;
    let mut new = 0;
    for (id, sub) in ending_between(store, now, horizon, 500).await? {
        let Some(period_end) = sub.period_end().filter(|e| *e > now && *e <= horizon) else {
            continue;
        };
        if !matches!(
            sub.state(now, &plans.lookup()),
            SubscriptionState::Active | SubscriptionState::Trial
        ) {
            continue;
        }
        let Some(openid) = recipient(store, &id).await? else {
            continue;
        };
        let plan = plans
            .get(&sub.renew_plan)
            .map_or_else(|| sub.renew_plan.clone(), |p| p.title.clone());
        let notice = crate::funnel::notices::Notice::renewal_due(&id, &openid, &plan, period_end);
        match crate::funnel::notices::notify(store.as_ref(), &notice, now).await {
            Ok(true) => new += 1,
            Ok(false) => {}
            Err(crate::funnel::FunnelError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(new)
}

/// Records that `openid` accepted each template once more (one credit each).
pub async fn record_grants(
    store: &Arc<dyn Store>,
    openid: &str,
    template_ids: &[String],
    now: i64,
) -> Result<Vec<Value>, SubscriptionsError> {
    if template_ids.is_empty() || template_ids.len() > 3 {
        return Err(SubscriptionsError::BadRequest(
            "templateIds: 1 to 3 accepted template ids (one wx.requestSubscribeMessage)".into(),
        ));
    }
    let ok = |t: &String| {
        (1..=128).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !template_ids.iter().all(ok) {
        return Err(SubscriptionsError::BadRequest(
            "templateIds must be WeChat template ids".into(),
        ));
    }
    let mut out = Vec::new();
    for template in template_ids {
        let credits = subscribe_grants::add(store, openid, template, now).await?;
        out.push(json!({"templateId": template, "credits": credits}));
    }
    Ok(out)
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendFailure {
    /// 43101: the user has no grant left at WeChat.
    Refused,
    /// Anything else (logged; the credit is kept for the next run).
    Other(String),
}

/// Sends subscribe messages; the WeChat client in production.
pub trait ReminderSender: Send + Sync {
    fn send<'a>(
        &'a self,
        message: &'a SubscribeMessage,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), SendFailure>> + Send + 'a>>;
}

impl ReminderSender for WechatClient {
    fn send<'a>(
        &'a self,
        message: &'a SubscribeMessage,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), SendFailure>> + Send + 'a>> {
        Box::pin(async move {
            match self.send_subscribe_message(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.errcode() == Some(ErrCode::UserRefused) => Err(SendFailure::Refused),
                Err(e) => Err(SendFailure::Other(e.to_string())),
            }
        })
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Subscriptions ending within the window.
    pub due: u32,
    /// Reminders sent now.
    pub sent: u32,
    /// Already reminded for this period.
    pub already_sent: u32,
    /// No grant (credit) to send with.
    pub no_grant: u32,
    /// WeChat said the user has no grant (credits reset).
    pub refused: u32,
    /// Sending failed; retried on the next run.
    pub failed: u32,
}

/// China Standard Time `YYYY-MM-DD HH:MM`, the format `time` template fields take.
fn cst(unix: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.to_offset(offset).format(&fmt).ok())
        .unwrap_or_default()
}

fn message_data(
    settings: &ReminderSettings,
    plan_title: &str,
    price_fen: i64,
    period_end: i64,
) -> BTreeMap<String, String> {
    settings
        .fields
        .iter()
        .map(|(key, field)| {
            let value = match field {
                ReminderField::Plan => plan_title.chars().take(THING_MAX_CHARS).collect(),
                ReminderField::PeriodEnd => cst(period_end),
                ReminderField::Price => format!("{}.{:02}元", price_fen / 100, price_fen % 100),
            };
            (key.clone(), value)
        })
        .collect()
}

/// Who is reminded: the member (the subscription id is their openid), or a tenant plan's
/// owner.
async fn recipient(store: &Arc<dyn Store>, id: &str) -> Result<Option<String>, StoreError> {
    match id.strip_prefix("tenant:") {
        Some(tenant) => Ok(store
            .get(TENANTS, tenant)
            .await?
            .and_then(|t| t["ownerOpenid"].as_str().map(str::to_owned))),
        None => Ok(Some(id.to_owned())),
    }
}

/// One timer run: reminds every subscription whose paid (or trial) time ends within
/// `settings.days` of `now` and that is not canceled, once per period end, when the
/// recipient has a grant.
pub async fn sweep(
    store: &Arc<dyn Store>,
    sender: &dyn ReminderSender,
    settings: &ReminderSettings,
    now: i64,
) -> Result<SweepReport, SubscriptionsError> {
    let horizon = now + i64::from(settings.days) * DAY;
    let plans = Plans::load(store).await?;
    let due = ending_between(store, now, horizon, 500).await?;
    let mut report = SweepReport::default();
    for (id, sub) in due {
        let Some(period_end) = sub.period_end().filter(|e| *e > now && *e <= horizon) else {
            continue;
        };
        if !matches!(
            sub.state(now, &plans.lookup()),
            SubscriptionState::Active | SubscriptionState::Trial
        ) {
            continue;
        }
        report.due += 1;
        let Some(openid) = recipient(store, &id).await? else {
            continue;
        };
        let reminder_id = format!("{id}@{period_end}");
        if store.get(RENEWAL_REMINDERS, &reminder_id).await?.is_some() {
            report.already_sent += 1;
            continue;
        }
        let template = settings.template_id.as_str();
        if !subscribe_grants::take(store, &openid, template).await? {
            report.no_grant += 1;
            continue;
        }
        let refund = || subscribe_grants::give_back(store, &openid, template);
        let record = json!({
            "_id": reminder_id, "subscription": id, "openid": openid,
            "periodEndAt": period_end, "templateId": settings.template_id,
            "status": "sending", "createdAt": now,
        });
        match store.insert(RENEWAL_REMINDERS, record).await {
            Ok(_) => {}
            Err(StoreError::DuplicateKey { .. }) => {
                refund().await?;
                report.already_sent += 1;
                continue;
            }
            Err(e) => {
                refund().await?;
                return Err(e.into());
            }
        }
        let renew = plans.get(&sub.renew_plan);
        let message = SubscribeMessage {
            touser: openid.clone(),
            template_id: settings.template_id.clone(),
            page: Some(settings.page.clone()),
            data: message_data(
                settings,
                renew
                    .as_ref()
                    .map_or(sub.renew_plan.as_str(), |p| p.title.as_str()),
                renew.as_ref().map_or(0, |p| p.price_fen.get()),
                period_end,
            ),
            miniprogram_state: None,
            lang: None,
        };
        match sender.send(&message).await {
            Ok(()) => {
                store
                    .update_one(
                        RENEWAL_REMINDERS,
                        &Filter::id(reminder_id.as_str()),
                        &Update::new().set("status", "sent").set("sentAt", now),
                        UpdateOptions::default(),
                    )
                    .await?;
                report.sent += 1;
            }
            Err(failure) => {
                // Not sent: forget the claim so a later run (or a new grant) can send it.
                store
                    .delete_one(RENEWAL_REMINDERS, &Filter::id(reminder_id.as_str()))
                    .await?;
                match failure {
                    SendFailure::Refused => {
                        subscribe_grants::reset(store, &openid, template).await?;
                        report.refused += 1;
                    }
                    SendFailure::Other(reason) => {
                        tracing::warn!(subscription = %id, %reason, "renewal reminder not sent");
                        refund().await?;
                        report.failed += 1;
                    }
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use crate::domain::money::Fen;
    use crate::domain::subscription::{Plan, Subscription};
    use crate::store::collections::{PLANS, SUBSCRIBE_GRANTS, SUBSCRIPTIONS};

    struct Recorder {
        sent: Mutex<Vec<SubscribeMessage>>,
        refuse: bool,
    }

    impl ReminderSender for Recorder {
        fn send<'a>(
            &'a self,
            message: &'a SubscribeMessage,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), SendFailure>> + Send + 'a>> {
            Box::pin(async move {
                if self.refuse {
                    return Err(SendFailure::Refused);
                }
                self.sent.lock().unwrap().push(message.clone());
                Ok(())
            })
        }
    }

    const T0: i64 = 1_800_000_000;

    fn settings() -> ReminderSettings {
        ReminderSettings {
            template_id: "tmpl".into(),
            days: 3,
            fields: vec![
                ("thing1".into(), ReminderField::Plan),
                ("time2".into(), ReminderField::PeriodEnd),
                ("amount3".into(), ReminderField::Price),
            ],
            page: "membership/pages/membership/membership".into(),
        }
    }

    async fn store_with_subscription(canceled: bool) -> Arc<dyn Store> {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let vip = Plan {
            id: "vip".into(),
            title: "VIP 会员 月卡 with a rather long name".into(),
            tier: 1,
            period_days: 30,
            price_fen: Fen::new(1800).unwrap(),
            trial_days: 0,
            past_due_days: 0,
            grace_days: 0,
            seats: None,
        };
        let mut doc = serde_json::to_value(&vip).unwrap();
        doc["_id"] = json!("vip");
        store.insert(PLANS, doc).await.unwrap();
        let mut sub = Subscription::start(&vip, T0, false);
        sub.apply_renewal(&vip, "o1", T0, &|_: &str| Some(vip.clone()));
        if canceled {
            sub.cancel(T0 + 1);
        }
        let mut doc = serde_json::to_value(&sub).unwrap();
        doc["_id"] = json!("o-alice");
        doc["periodEndAt"] = json!(sub.period_end());
        doc["version"] = json!(1);
        store.insert(SUBSCRIPTIONS, doc).await.unwrap();
        store
    }

    #[tokio::test]
    async fn reminds_once_per_period_and_only_with_a_grant() {
        let store = store_with_subscription(false).await;
        let sender = Recorder {
            sent: Mutex::new(Vec::new()),
            refuse: false,
        };
        let end = T0 + 30 * DAY;
        // Too early: outside the three-day window.
        let r = sweep(&store, &sender, &settings(), end - 4 * DAY)
            .await
            .unwrap();
        assert_eq!(r.due, 0);
        // In the window, but no grant yet.
        let r = sweep(&store, &sender, &settings(), end - 2 * DAY)
            .await
            .unwrap();
        assert_eq!((r.due, r.no_grant, r.sent), (1, 1, 0));
        record_grants(&store, "o-alice", &["tmpl".into()], T0)
            .await
            .unwrap();
        record_grants(&store, "o-alice", &["tmpl".into()], T0)
            .await
            .unwrap();
        let r = sweep(&store, &sender, &settings(), end - 2 * DAY)
            .await
            .unwrap();
        assert_eq!(r.sent, 1);
        let r = sweep(&store, &sender, &settings(), end - DAY)
            .await
            .unwrap();
        assert_eq!((r.sent, r.already_sent), (0, 1), "once per period");
        let sent = sender.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].touser, "o-alice");
        assert_eq!(sent[0].data["thing1"].chars().count(), 20);
        assert_eq!(sent[0].data["amount3"], "18.00元");
        assert_eq!(sent[0].data["time2"], cst(end));
        let grant = store
            .get(SUBSCRIBE_GRANTS, "o-alice:tmpl")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(grant["credits"], 1, "one credit used, one left");
    }

    #[tokio::test]
    async fn canceled_subscriptions_are_not_reminded_and_refusal_resets_credits() {
        let store = store_with_subscription(true).await;
        let sender = Recorder {
            sent: Mutex::new(Vec::new()),
            refuse: true,
        };
        record_grants(&store, "o-alice", &["tmpl".into()], T0)
            .await
            .unwrap();
        let end = T0 + 30 * DAY;
        let r = sweep(&store, &sender, &settings(), end - DAY)
            .await
            .unwrap();
        assert_eq!(r, SweepReport::default());

        let store = store_with_subscription(false).await;
        record_grants(&store, "o-alice", &["tmpl".into()], T0)
            .await
            .unwrap();
        let r = sweep(&store, &sender, &settings(), end - DAY)
            .await
            .unwrap();
        assert_eq!(r.refused, 1);
        assert_eq!(
            store
                .get(SUBSCRIBE_GRANTS, "o-alice:tmpl")
                .await
                .unwrap()
                .unwrap()["credits"],
            0
        );
        assert!(
            store
                .get(RENEWAL_REMINDERS, &format!("o-alice@{end}"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            record_grants(&store, "o-alice", &[], T0).await.is_err()
                && record_grants(&store, "o-alice", &["bad id".into()], T0)
                    .await
                    .is_err()
        );
    }
}
