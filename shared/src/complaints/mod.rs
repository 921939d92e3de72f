//! Consumer complaints: WeChat Pay complaints 2.0 and virtual payment complaints, stored in
//! `complaints` with their first-reply deadline, answered by administrators.
//!
//! - A notification (payNotify `/payNotify/complaints`, verified and decrypted like a payment
//!   notification) or a push (wxPush `xpay_complaint_notify`) only names a complaint: the
//!   stored state is always what the complaint detail API returns ([`Complaints::refresh`]).
//!   A notification id is recorded in `complaint_notices`, so a redelivery is applied once.
//! - Admin actions (createOrder `complaintList`, `complaintGet`, `complaintRespond`,
//!   `complaintComplete`, `complaintRefundProgress`; docs/api.md) check the stored role,
//!   check the rules of [`crate::domain::complaint`], call the platform, then refresh.
//! - [`Complaints::remind_due`] (the reconcile timer) re-reads every pending complaint whose
//!   first reply is due within 4 hours and reminds the administrators once.

pub mod api;

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use self::api::{ApiFailure, ComplaintApi, WxpayComplaints, XpayComplaints};
use crate::clock::SharedClock;
use crate::domain::complaint::{
    self as rules, ComplaintChannel, ComplaintRuleError, ComplaintState, REMIND_BEFORE_SECS,
};
use crate::identity::Caller;
use crate::pay::v3::complaints::{Complaint, ComplaintNotice, check_complaint_id};
use crate::runtime::ApiError;
use crate::store::collections::{COMPLAINT_NOTICES, COMPLAINTS};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

/// Public error codes of the complaint actions (`docs/errors.md`).
pub mod codes {
    /// No stored complaint has that id.
    pub const COMPLAINT_NOT_FOUND: &str = "COMPLAINT_NOT_FOUND";
    /// The complaint is processed: nothing more can be sent.
    pub const COMPLAINT_CLOSED: &str = "COMPLAINT_CLOSED";
    /// The operation does not exist for this complaint's channel.
    pub const COMPLAINT_ACTION_UNSUPPORTED: &str = "COMPLAINT_ACTION_UNSUPPORTED";
    /// The complaint API refused or failed, or its channel is not configured.
    pub const COMPLAINT_PROVIDER_ERROR: &str = "COMPLAINT_PROVIDER_ERROR";
}

/// Why a complaint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ComplaintsError {
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// Not an administrator.
    #[error("administrators only")]
    Forbidden,
    /// No such complaint stored.
    #[error("no such complaint")]
    NotFound,
    /// A rule refused the action.
    #[error(transparent)]
    Rule(#[from] ComplaintRuleError),
    /// The channel is not configured here.
    #[error("{0} complaints are not configured")]
    Unconfigured(&'static str),
    /// The platform refused or failed.
    #[error("complaint API: {0}")]
    Provider(#[from] ApiFailure),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ComplaintsError> for ApiError {
    fn from(err: ComplaintsError) -> Self {
        use ComplaintsError as E;
        let message = err.to_string();
        match err {
            E::BadRequest(_) | E::Rule(ComplaintRuleError::Invalid(_)) => {
                ApiError::bad_request(message)
            }
            E::Forbidden => ApiError::forbidden(message),
            E::NotFound => {
                ApiError::new(codes::COMPLAINT_NOT_FOUND, StatusCode::NOT_FOUND, message)
            }
            E::Rule(ComplaintRuleError::Closed) => {
                ApiError::new(codes::COMPLAINT_CLOSED, StatusCode::CONFLICT, message)
            }
            E::Rule(ComplaintRuleError::Unsupported(_)) => ApiError::new(
                codes::COMPLAINT_ACTION_UNSUPPORTED,
                StatusCode::BAD_REQUEST,
                message,
            ),
            E::Unconfigured(_) => ApiError::new(
                codes::COMPLAINT_PROVIDER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE,
                message,
            ),
            E::Provider(f) => ApiError::new(
                codes::COMPLAINT_PROVIDER_ERROR,
                if f.retryable {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_GATEWAY
                },
                message,
            ),
            E::Store(e) => ApiError::internal(e),
        }
    }
}

/// One order a stored complaint is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplaintOrderRef {
    /// WeChat Pay transaction id.
    pub transaction_id: String,
    /// Our order number (`outTradeNo`): for virtual payment, `wxa_out_trade_no`.
    pub out_trade_no: String,
    /// Amount, fen.
    pub amount_fen: i64,
}

/// A complaint as stored in `complaints`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComplaintDoc {
    /// The complaint id.
    #[serde(rename = "_id")]
    pub id: String,
    /// WeChat Pay or virtual payment.
    pub channel: ComplaintChannel,
    /// `PENDING`, `PROCESSING`, `PROCESSED` (as the platform last said).
    pub state: String,
    /// When the user complained, Unix seconds.
    pub complaint_time: i64,
    /// The first-reply deadline, Unix seconds.
    pub respond_by: i64,
    /// The user's text.
    #[serde(default)]
    pub detail: String,
    /// `REFUND`, `SERVICE_NOT_WORK`, `OTHERS`.
    #[serde(default)]
    pub problem_type: Option<String>,
    /// Short description.
    #[serde(default)]
    pub problem_description: Option<String>,
    /// Refund asked for, fen.
    #[serde(default)]
    pub apply_refund_amount_fen: Option<i64>,
    /// The complaining user.
    #[serde(default)]
    pub payer_openid: Option<String>,
    /// The orders.
    #[serde(default)]
    pub order_refs: Vec<ComplaintOrderRef>,
    /// A user message waits for a reply.
    #[serde(default)]
    pub incoming_user_response: bool,
    /// Must be served at once.
    #[serde(default)]
    pub need_immediate_service: bool,
    /// WeChat customer service is mediating.
    #[serde(default)]
    pub in_platform_service: bool,
    /// Fully refunded.
    #[serde(default)]
    pub full_refunded: bool,
    /// The last notification's `action_type`.
    #[serde(default)]
    pub last_action: Option<String>,
    /// First reply sent from wemint.
    #[serde(default)]
    pub responded_at: Option<i64>,
    /// Who sent the last reply (an admin's openid).
    #[serde(default)]
    pub responded_by: Option<String>,
    /// Marked complete from wemint.
    #[serde(default)]
    pub completed_at: Option<i64>,
    /// The admin who completed it.
    #[serde(default)]
    pub completed_by: Option<String>,
    /// The answer given to a refund request (`APPROVE` / `REJECT`).
    #[serde(default)]
    pub refund_progress: Option<String>,
    /// When administrators were reminded of the deadline.
    #[serde(default)]
    pub reminded_at: Option<i64>,
    /// First stored.
    pub created_at: i64,
    /// Last read from the platform.
    pub refreshed_at: i64,
}

impl ComplaintDoc {
    /// The typed state.
    pub fn state(&self) -> ComplaintState {
        ComplaintState::parse(&self.state)
    }

    /// What the admin actions return: the document plus `overdue` / `dueInSecs` for an
    /// unanswered complaint.
    pub fn view(&self, now: i64) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(map) = &mut v {
            map.remove("_id");
            map.insert("complaintId".into(), json!(self.id));
            let waiting = self.state() == ComplaintState::Pending && self.responded_at.is_none();
            map.insert("awaitingReply".into(), json!(waiting));
            map.insert("overdue".into(), json!(waiting && now > self.respond_by));
            map.insert(
                "dueInSecs".into(),
                json!(waiting.then(|| self.respond_by - now)),
            );
        }
        v
    }
}

/// What a complaint notification did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// The complaint was read from the platform and stored.
    Applied {
        /// Its state now.
        state: String,
        /// Whether it was new here.
        new: bool,
    },
    /// The same notification was applied before: nothing done.
    Duplicate,
}

/// What one reminder pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReminderReport {
    /// Complaints whose first reply is due within 4 hours and not reminded yet.
    pub due: u32,
    /// Reminders sent.
    pub reminded: u32,
    /// Complaints found answered or processed on re-reading (no reminder needed).
    pub answered: u32,
    /// Left for the next run (call budget spent).
    pub deferred: u32,
    /// Complaint API calls made.
    pub provider_calls: u32,
    /// Failures (logged; retried next run).
    pub errors: u32,
}

/// `complaintList` input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListInput {
    /// Only this state (`PENDING`, `PROCESSING`, `PROCESSED`).
    #[serde(default)]
    pub state: Option<String>,
    /// At most this many (1–50, default 20).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `complaintRespond` input.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RespondInput {
    /// The complaint.
    pub complaint_id: String,
    /// The reply (1–200 characters).
    pub content: String,
}

/// `complaintRefundProgress` input.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundProgressInput {
    /// The complaint.
    pub complaint_id: String,
    /// `APPROVE` or `REJECT` (not `action`: that names the callable action).
    pub decision: String,
    /// APPROVE: working days until the refund starts (0–30, default 0).
    #[serde(default)]
    pub launch_refund_day: Option<i64>,
    /// REJECT: the reason (1–200 characters).
    #[serde(default)]
    pub reject_reason: Option<String>,
    /// Optional remark (1–200 characters).
    #[serde(default)]
    pub remark: Option<String>,
}

/// Complaints pending a reminder listed per pass.
const REMIND_BATCH: u64 = 50;

/// The complaints service.
#[derive(Clone)]
pub struct Complaints {
    store: Arc<dyn Store>,
    clock: SharedClock,
    apis: HashMap<ComplaintChannel, Arc<dyn ComplaintApi>>,
}

impl std::fmt::Debug for Complaints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Complaints")
            .field("channels", &self.apis.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Unix seconds of an RFC 3339 time.
fn unix_of(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// `yyyy-mm-dd` in China time.
fn china_date(unix: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let date = time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset)
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

impl Complaints {
    /// A service over `store` with no channel configured.
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            apis: HashMap::new(),
        }
    }

    /// Answers the complaints of `api`'s channel through it.
    #[must_use]
    pub fn with_api(mut self, api: Arc<dyn ComplaintApi>) -> Self {
        self.apis.insert(api.channel(), api);
        self
    }

    fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    fn api(&self, channel: ComplaintChannel) -> Result<&Arc<dyn ComplaintApi>, ComplaintsError> {
        self.apis.get(&channel).ok_or(match channel {
            ComplaintChannel::Wxpay => ComplaintsError::Unconfigured("WeChat Pay"),
            ComplaintChannel::Xpay => ComplaintsError::Unconfigured("virtual payment"),
        })
    }

    async fn require_admin(&self, caller: &Caller) -> Result<(), ComplaintsError> {
        if crate::identity::is_stored_admin(self.store.as_ref(), &caller.openid).await? {
            Ok(())
        } else {
            Err(ComplaintsError::Forbidden)
        }
    }

    /// The stored complaint.
    pub async fn get(&self, complaint_id: &str) -> Result<Option<ComplaintDoc>, ComplaintsError> {
        Ok(self.store.get_as(COMPLAINTS, complaint_id).await?)
    }

    async fn stored(&self, complaint_id: &str) -> Result<ComplaintDoc, ComplaintsError> {
        if check_complaint_id(complaint_id).is_err() {
            return Err(ComplaintsError::BadRequest(
                "complaintId must be 1-64 characters of [0-9A-Za-z]".into(),
            ));
        }
        self.get(complaint_id)
            .await?
            .ok_or(ComplaintsError::NotFound)
    }

    /// Reads the complaint from `channel`'s API and stores what it says (created on first
    /// sight, with its first-reply deadline). Returns the stored document and whether it was
    /// new.
    pub async fn refresh(
        &self,
        channel: ComplaintChannel,
        complaint_id: &str,
        action: Option<&str>,
    ) -> Result<(ComplaintDoc, bool), ComplaintsError> {
        let complaint = self.api(channel)?.detail(complaint_id).await?;
        if complaint.complaint_id != complaint_id {
            return Err(ComplaintsError::Provider(ApiFailure {
                message: "the detail API answered for another complaint".into(),
                retryable: false,
            }));
        }
        self.store_snapshot(channel, &complaint, action).await
    }

    async fn store_snapshot(
        &self,
        channel: ComplaintChannel,
        c: &Complaint,
        action: Option<&str>,
    ) -> Result<(ComplaintDoc, bool), ComplaintsError> {
        let now = self.now();
        let complaint_time = unix_of(&c.complaint_time).unwrap_or(now);
        let orders: Vec<Value> = c
            .complaint_order_info
            .iter()
            .map(|o| {
                json!({"transactionId": o.transaction_id,
                    "outTradeNo": o.wxa_out_trade_no.clone().unwrap_or_else(|| o.out_trade_no.clone()),
                    "amountFen": o.amount})
            })
            .collect();
        let mut update = Update::new()
            .set("state", c.complaint_state.as_str())
            .set("complaintTime", complaint_time)
            .set("respondBy", rules::first_reply_due(complaint_time))
            .set("detail", c.complaint_detail.as_str())
            .set("problemType", json!(c.problem_type))
            .set("problemDescription", json!(c.problem_description))
            .set("applyRefundAmountFen", json!(c.apply_refund_amount))
            .set("payerOpenid", json!(c.payer_openid))
            .set("orderRefs", Value::Array(orders))
            .set("incomingUserResponse", c.incoming_user_response)
            .set("needImmediateService", c.need_immediate_service)
            .set("inPlatformService", c.in_platform_service)
            .set("fullRefunded", c.complaint_full_refunded)
            .set("refreshedAt", now)
            .set_on_insert("channel", channel.as_str())
            .set_on_insert("createdAt", now);
        if let Some(a) = action {
            update = update.set("lastAction", a);
        }
        let filter = Filter::id(c.complaint_id.as_str());
        let existed = self.store.get(COMPLAINTS, &c.complaint_id).await?.is_some();
        let written = match self
            .store
            .update_one_as::<ComplaintDoc>(COMPLAINTS, &filter, &update, UpdateOptions::upsert())
            .await
        {
            // Two first sights raced and this insert lost: the document exists now.
            Err(StoreError::DuplicateKey { .. }) => {
                self.store
                    .update_one_as::<ComplaintDoc>(
                        COMPLAINTS,
                        &filter,
                        &update,
                        UpdateOptions::default(),
                    )
                    .await?
            }
            other => other?,
        };
        let doc = written.ok_or(ComplaintsError::NotFound)?;
        if !existed {
            // An alert a log rule can page on: a new complaint needs a human within 24 h.
            tracing::error!(alert = "complaint_received", complaint = %doc.id,
                channel = channel.as_str(), respond_by = doc.respond_by, "new consumer complaint");
        }
        Ok((doc, !existed))
    }

    /// Applies a verified WeChat Pay complaint notification: records its id (a redelivery is
    /// [`NoticeOutcome::Duplicate`]), reads the complaint back and stores it.
    pub async fn on_wxpay_notice(
        &self,
        notice: &ComplaintNotice,
    ) -> Result<NoticeOutcome, ComplaintsError> {
        let record = json!({"_id": notice.id, "complaintId": notice.complaint_id,
            "eventType": notice.event_type, "actionType": notice.action_type,
            "channel": ComplaintChannel::Wxpay.as_str(), "applied": false,
            "receivedAt": self.now()});
        match self.store.insert(COMPLAINT_NOTICES, record).await {
            Ok(_) => {}
            Err(StoreError::DuplicateKey { .. }) => {
                let applied = self
                    .store
                    .get(COMPLAINT_NOTICES, &notice.id)
                    .await?
                    .is_some_and(|d| d["applied"] == true);
                if applied {
                    return Ok(NoticeOutcome::Duplicate);
                }
                // Recorded but not applied (a failure or crash in between): apply it now.
            }
            Err(e) => return Err(e.into()),
        }
        let (doc, new) = self
            .refresh(
                ComplaintChannel::Wxpay,
                &notice.complaint_id,
                Some(&notice.action_type),
            )
            .await?;
        self.store
            .update_one(
                COMPLAINT_NOTICES,
                &Filter::id(notice.id.as_str()),
                &Update::new().set("applied", true),
                UpdateOptions::default(),
            )
            .await?;
        Ok(NoticeOutcome::Applied {
            state: doc.state,
            new,
        })
    }

    /// Follows up a verified `xpay_complaint_notify`: the named complaint, or (the push's
    /// fields are unconfirmed) every unprocessed complaint listed from the day before the
    /// complaint to today. Returns how many complaints were stored.
    pub async fn on_xpay_push(
        &self,
        push: &crate::pay::xpay_after_sale::ComplaintNotify,
    ) -> Result<u32, ComplaintsError> {
        let api = self.api(ComplaintChannel::Xpay)?.clone();
        let action = Some("XPAY_COMPLAINT_NOTIFY");
        if let Some(id) = &push.complaint_id {
            self.refresh(ComplaintChannel::Xpay, id, action).await?;
            return Ok(1);
        }
        let now = self.now();
        let from = if push.complaint_time > 0 && push.complaint_time <= now {
            push.complaint_time
        } else {
            now
        };
        let listed = api
            .between(&china_date(from - 86_400), &china_date(now))
            .await?;
        let mut stored = 0;
        for c in listed.iter().filter(|c| {
            !ComplaintState::parse(&c.complaint_state).is_closed()
                && check_complaint_id(&c.complaint_id).is_ok()
        }) {
            // The list entry only says which complaints to read: each one is read back.
            self.refresh(ComplaintChannel::Xpay, &c.complaint_id, action)
                .await?;
            stored += 1;
        }
        Ok(stored)
    }

    /// `complaintList` (admin): stored complaints, those whose first reply is due soonest first.
    pub async fn list(&self, caller: &Caller, input: ListInput) -> Result<Value, ComplaintsError> {
        self.require_admin(caller).await?;
        let limit = input.limit.unwrap_or(20).clamp(1, 50);
        let filter = match &input.state {
            Some(s) if ["PENDING", "PROCESSING", "PROCESSED"].contains(&s.as_str()) => {
                Filter::eq("state", s.as_str())
            }
            Some(_) => {
                return Err(ComplaintsError::BadRequest(
                    "state must be PENDING, PROCESSING or PROCESSED".into(),
                ));
            }
            None => Filter::All,
        };
        let docs: Vec<ComplaintDoc> = self
            .store
            .find_as(
                COMPLAINTS,
                &filter,
                &FindOptions::new().sort_asc("respondBy").limit(limit),
            )
            .await?;
        let now = self.now();
        Ok(json!({ "complaints": docs.iter().map(|d| d.view(now)).collect::<Vec<_>>() }))
    }

    /// `complaintGet` (admin): the complaint read again from the platform, with its negotiation
    /// history.
    pub async fn detail(
        &self,
        caller: &Caller,
        complaint_id: &str,
    ) -> Result<Value, ComplaintsError> {
        self.require_admin(caller).await?;
        let stored = self.stored(complaint_id).await?;
        let (doc, _) = self.refresh(stored.channel, complaint_id, None).await?;
        let history = self.api(doc.channel)?.history(complaint_id).await?;
        Ok(json!({ "complaint": doc.view(self.now()), "history": history }))
    }

    /// `complaintRespond` (admin): a reply to the user. The first one moves the complaint
    /// to `PROCESSING`. Not idempotent at the platform: every call posts a message.
    pub async fn respond(
        &self,
        caller: &Caller,
        input: RespondInput,
    ) -> Result<Value, ComplaintsError> {
        self.require_admin(caller).await?;
        let stored = self.stored(&input.complaint_id).await?;
        rules::check_response(&stored.state(), &input.content)?;
        self.api(stored.channel)?
            .respond(&stored.id, &input.content)
            .await?;
        let now = self.now();
        let by = caller.openid.as_str();
        let last = Update::new()
            .set("respondedBy", by)
            .set("lastRespondedAt", now);
        self.note(&stored.id, None, last).await?;
        let first = Update::new().set("respondedAt", now);
        self.note(&stored.id, Some("respondedAt"), first).await?;
        tracing::info!(complaint = %stored.id, admin = %caller.openid, "complaint answered");
        self.after_action(&stored).await
    }

    /// `complaintComplete` (admin): marks the complaint handled. A complaint the platform
    /// already shows processed counts as done.
    pub async fn complete(
        &self,
        caller: &Caller,
        complaint_id: &str,
    ) -> Result<Value, ComplaintsError> {
        self.require_admin(caller).await?;
        let stored = self.stored(complaint_id).await?;
        rules::check_complete(&stored.state())?;
        if let Err(failure) = self.api(stored.channel)?.complete(&stored.id).await {
            // Repeating `complete` is refused; the platform's state tells whether it is done.
            let (now_doc, _) = self.refresh(stored.channel, &stored.id, None).await?;
            if !now_doc.state().is_closed() {
                return Err(failure.into());
            }
        }
        let done = Update::new()
            .set("completedAt", self.now())
            .set("completedBy", caller.openid.as_str());
        self.note(&stored.id, Some("completedAt"), done).await?;
        tracing::info!(complaint = %stored.id, admin = %caller.openid, "complaint completed");
        self.after_action(&stored).await
    }

    /// `complaintRefundProgress` (admin, WeChat Pay): approve or reject the user's refund
    /// request. An approval moves no money: refund the order with createOrder `refund`.
    pub async fn refund_progress(
        &self,
        caller: &Caller,
        input: RefundProgressInput,
    ) -> Result<Value, ComplaintsError> {
        self.require_admin(caller).await?;
        let stored = self.stored(&input.complaint_id).await?;
        let progress = rules::refund_progress(
            &stored.state(),
            stored.channel,
            &input.decision,
            input.launch_refund_day,
            input.reject_reason.as_deref(),
            input.remark.as_deref(),
        )?;
        self.api(stored.channel)?
            .refund_progress(&stored.id, &progress)
            .await?;
        let answered = Update::new().set("refundProgress", input.decision.as_str());
        self.note(&stored.id, None, answered).await?;
        self.after_action(&stored).await
    }

    /// Records what wemint did on a complaint (`unless_set`: only the first time).
    async fn note(
        &self,
        complaint_id: &str,
        unless_set: Option<&str>,
        update: Update,
    ) -> Result<(), ComplaintsError> {
        let mut filter = Filter::id(complaint_id);
        if let Some(field) = unless_set {
            filter = filter.and(Filter::exists(field, false));
        }
        self.store
            .update_one(COMPLAINTS, &filter, &update, UpdateOptions::default())
            .await?;
        Ok(())
    }

    /// The complaint as the platform shows it after an action (the action is done even if
    /// this read fails: the stored copy is returned then).
    async fn after_action(&self, stored: &ComplaintDoc) -> Result<Value, ComplaintsError> {
        let doc = match self.refresh(stored.channel, &stored.id, None).await {
            Ok((doc, _)) => doc,
            Err(e) => {
                tracing::warn!(complaint = %stored.id, error = %e, "complaint re-read failed");
                self.stored(&stored.id).await?
            }
        };
        Ok(json!({ "complaint": doc.view(self.now()) }))
    }

    /// Reminds administrators of complaints whose first reply is due within 4 hours (or
    /// overdue), once each, making at most `budget` complaint API calls: each candidate is
    /// read again first (it may have been answered in the merchant console). The reminder is
    /// an `alert = "complaint_reply_due"` error log (what an alarm rule on the function's
    /// logs pages on) and `remindedAt` on the complaint, which the admin list shows.
    pub async fn remind_due(&self, budget: u32) -> Result<ReminderReport, ComplaintsError> {
        let now = self.now();
        let mut report = ReminderReport::default();
        let due: Vec<ComplaintDoc> = self
            .store
            .find_as(
                COMPLAINTS,
                &Filter::eq("state", "PENDING")
                    .and(Filter::exists("respondedAt", false))
                    .and(Filter::exists("remindedAt", false))
                    .and(Filter::lte("respondBy", now + REMIND_BEFORE_SECS)),
                &FindOptions::new().sort_asc("respondBy").limit(REMIND_BATCH),
            )
            .await?;
        report.due = u32::try_from(due.len()).unwrap_or(u32::MAX);
        for stored in due {
            if report.provider_calls >= budget {
                report.deferred += 1;
                continue;
            }
            report.provider_calls += 1;
            let doc = match self.refresh(stored.channel, &stored.id, None).await {
                Ok((doc, _)) => doc,
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(complaint = %stored.id, error = %e, "complaint re-read failed");
                    continue;
                }
            };
            if !rules::reminder_due(
                &doc.state(),
                doc.responded_at.is_some(),
                doc.reminded_at.is_some(),
                doc.respond_by,
                now,
            ) {
                report.answered += 1;
                continue;
            }
            let marked = self
                .store
                .update_one(
                    COMPLAINTS,
                    &Filter::id(doc.id.as_str()).and(Filter::exists("remindedAt", false)),
                    &Update::new().set("remindedAt", now),
                    UpdateOptions::default(),
                )
                .await?;
            if marked.is_some() {
                report.reminded += 1;
                tracing::error!(alert = "complaint_reply_due", complaint = %doc.id,
                    channel = doc.channel.as_str(), respond_by = doc.respond_by,
                    overdue = now > doc.respond_by,
                    "a consumer complaint still has no reply: answer it before its deadline");
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
