//! Customer records for a CRM (`crm_customers`), their CSV export and their push to a CRM
//! webhook ([`webhook`]).
//!
//! **Nothing is written on the paying path.** A record is computed
//! ([`crate::domain::crm::customer`]) from what the owning code already writes: paid orders
//! (`orders.paidAt`), settled refunds (`refunds`), the user (`users`: unionid, last login,
//! active tenant), memberships (`tenant_members`) and subscriptions (`subscriptions`). The
//! every-minute timer step [`Crm::fold`] finds the customers that changed since its cursors
//! (`crm_state`) and recomputes just those:
//!
//! - the event stream (`events`, by `seq`): paid orders, settled refunds, tenant joins and
//!   leaves (the member is in the event's data), numbered in commit order, so nothing
//!   committed late is skipped;
//! - the owning collections by time, with a keyset cursor `(time, _id)` each: `orders.paidAt`,
//!   `refunds.settledAt`, `users.lastLoginAt`, `tenant_members.joinedAt` and
//!   `subscriptions.periodEndAt` up to now (a plan lapsing writes nothing: time passing is the
//!   change; a tenant's subscription, or an order bought for a tenant, brings all its
//!   members). These also fill the records on the first run and cover an outage longer than
//!   the event stream's retention;
//! - a rolling pass ([`Crm::refold_step`], 50 records a minute) recomputes every record in
//!   turn, for the changes that leave no trace to follow (a trial started, a plan changed or
//!   canceled, a customer turning dormant).
//!
//! Recomputing is idempotent (a record is a function of the owning documents), so a fold
//! repeated after a crash changes nothing twice. A record is written only when it differs,
//! with `version + 1` (conditional on the version read) and `dirty: true`; the webhook step
//! turns dirty records into outbox entries, one per `(customer, version)`.

pub mod datacube;
pub mod webhook;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::domain::crm::{self, Customer, Inputs, PaidOrder, PlanPeriod};
use crate::events::Events;
use crate::store::collections::{
    CRM_CUSTOMERS, CRM_STATE, ORDERS, REFUNDS, SUBSCRIPTIONS, TENANT_MEMBERS, USERS,
};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

pub use datacube::{Datacube, wechat_entries};
pub use webhook::{Webhook, WebhookSettings};

/// `wechatPull`: the day is not `yyyy-MM-dd`, not over yet, or too far back.
pub const DATACUBE_DATE_INVALID: &str = "DATACUBE_DATE_INVALID";
/// `wechatPull`: WeChat is not configured, or every datacube call failed.
pub const DATACUBE_UNAVAILABLE: &str = "DATACUBE_UNAVAILABLE";
/// `wechatPull`: WeChat's reply does not fit the documented shape.
pub const DATACUBE_FORMAT: &str = "DATACUBE_FORMAT";

/// What the CRM and datacube callables can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// A bad `date`.
    #[error("date {0}")]
    DateInvalid(String),
    /// No WeChat client (`WECHAT_APPID`/`WECHAT_APPSECRET` unset).
    #[error("the WeChat API is not configured")]
    NotConfigured,
    /// A WeChat call failed.
    #[error("WeChat datacube: {0}")]
    Wechat(#[from] crate::wechat::WechatError),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CrmError> for crate::runtime::ApiError {
    fn from(err: CrmError) -> Self {
        use crate::runtime::ApiError;
        use http::StatusCode;
        let message = err.to_string();
        match err {
            CrmError::DateInvalid(_) => {
                ApiError::new(DATACUBE_DATE_INVALID, StatusCode::BAD_REQUEST, message)
            }
            CrmError::NotConfigured => ApiError::new(
                DATACUBE_UNAVAILABLE,
                StatusCode::SERVICE_UNAVAILABLE,
                message,
            ),
            CrmError::Wechat(crate::wechat::WechatError::Decode(_)) => {
                ApiError::new(DATACUBE_FORMAT, StatusCode::BAD_GATEWAY, message)
            }
            CrmError::Wechat(_) => ApiError::new(
                DATACUBE_UNAVAILABLE,
                StatusCode::SERVICE_UNAVAILABLE,
                message,
            ),
            CrmError::Store(e) => ApiError::internal(e),
        }
    }
}

/// Documents one source yields per fold at most (the next fold goes on from the cursor).
pub const SOURCE_PAGE: u64 = 50;
/// Events one fold reads at most.
pub const EVENT_PAGE: u64 = 200;
/// Time sources are read up to `now - LAG_SECS`, so a write stamped a moment before it
/// commits is still ahead of the cursor when it lands.
pub const LAG_SECS: i64 = 5;
/// Records the every-minute run recomputes in its rolling pass over all records
/// ([`Crm::refold_step`]).
pub const REFOLD_PER_MINUTE: u64 = 50;
/// Fold pages one every-minute run reads at most.
pub const MINUTE_FOLD_ROUNDS: u32 = 5;
/// Customers one every-minute run recomputes before it stops starting new fold pages (a
/// record costs about eight store round trips: this keeps a backlog run well inside the
/// function's time limit).
pub const MINUTE_FOLD_BUDGET: u64 = 150;
/// The rolling pass's cursor in the fold's state document.
const REFOLD_CURSOR: &str = "refoldAfter";
/// Webhook deliveries one every-minute run makes at most.
pub const MINUTE_PUSH_BUDGET: u64 = 100;
/// Paid orders one record reads at most.
const MAX_ORDERS: u64 = 10_000;
/// The order states that count as paid (money taken and confirmed).
const PAID_STATES: [&str; 5] = [
    "paid",
    "fulfilled",
    "refunding",
    "refunded",
    "partially_refunded",
];
/// The fold's state document.
const FOLD_STATE: &str = "fold";

/// A time-ordered owning collection the fold follows.
struct Source {
    /// Cursor name in `crm_state`.
    name: &'static str,
    collection: &'static str,
    /// The time field.
    field: &'static str,
    /// The field naming the customer (`subscriber` may name a tenant: `tenant:<id>`).
    who: &'static str,
    /// A field naming a tenant whose members all changed (a tenant plan bought).
    tenant: Option<&'static str>,
}

const SOURCES: [Source; 5] = [
    Source {
        name: "paid",
        collection: ORDERS,
        field: "paidAt",
        who: "openid",
        tenant: Some("tenantId"),
    },
    Source {
        name: "refunded",
        collection: REFUNDS,
        field: "settledAt",
        who: "openid",
        tenant: None,
    },
    Source {
        name: "logins",
        collection: USERS,
        field: "lastLoginAt",
        who: "openid",
        tenant: None,
    },
    Source {
        name: "joins",
        collection: TENANT_MEMBERS,
        field: "joinedAt",
        who: "openid",
        tenant: None,
    },
    Source {
        name: "periodEnds",
        collection: SUBSCRIPTIONS,
        field: "periodEndAt",
        who: "subscriber",
        tenant: None,
    },
];

/// What one fold did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoldReport {
    /// Customers recomputed.
    pub examined: u64,
    /// Records written (new or changed).
    pub changed: u64,
    /// A source or the stream had more than one page: the next fold goes on.
    pub more: bool,
}

/// The CRM side: records, export, webhook. Cheap to clone.
#[derive(Clone)]
pub struct Crm {
    store: Arc<dyn Store>,
    clock: SharedClock,
    webhook: Option<Webhook>,
}

impl std::fmt::Debug for Crm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crm")
            .field("store", &self.store.backend())
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

fn str_field(doc: &Value, field: &str) -> Option<String> {
    doc.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn plan_period(doc: Option<Value>) -> Option<PlanPeriod> {
    let doc = doc?;
    Some(PlanPeriod {
        plan: str_field(&doc, "plan")?,
        period_end_at: doc.get("periodEndAt").and_then(Value::as_i64)?,
    })
}

impl Crm {
    /// Records in `store` on `clock`; pushes only when `webhook` is given.
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, webhook: Option<Webhook>) -> Self {
        Self {
            store,
            clock,
            webhook,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The webhook, when configured.
    pub fn webhook(&self) -> Option<&Webhook> {
        self.webhook.as_ref()
    }

    /// The record of `openid` as the owning collections say now (`None`: no user, no order,
    /// no membership: not a customer).
    ///
    /// # Errors
    /// The store's.
    pub async fn compute(&self, openid: &str) -> Result<Option<Customer>, StoreError> {
        let store = self.store.as_ref();
        let user = store.get(USERS, openid).await?;
        let orders = store
            .find(
                ORDERS,
                &Filter::eq("openid", openid)
                    .and(Filter::is_in("status", PAID_STATES))
                    .and(Filter::exists("paidAt", true)),
                &FindOptions::new().limit(MAX_ORDERS),
            )
            .await?;
        let memberships: Vec<String> = store
            .find(
                TENANT_MEMBERS,
                &Filter::eq("openid", openid),
                &FindOptions::new().sort_asc("joinedAt").limit(100),
            )
            .await?
            .iter()
            .filter_map(|m| str_field(m, "tenant"))
            .collect();
        if user.is_none() && orders.is_empty() && memberships.is_empty() {
            return Ok(None);
        }
        let ids: Vec<String> = orders.iter().filter_map(|o| str_field(o, "_id")).collect();
        let refunds = if ids.is_empty() {
            Vec::new()
        } else {
            store
                .find(
                    REFUNDS,
                    &Filter::is_in("orderId", ids).and(Filter::eq("status", "success")),
                    &FindOptions::new().limit(MAX_ORDERS),
                )
                .await?
                .iter()
                .filter_map(|r| r.get("amountFen").and_then(Value::as_i64))
                .collect()
        };
        let user = user.unwrap_or(Value::Null);
        let active_tenant = str_field(&user, "activeTenant");
        let tenant = crm::chosen_tenant(active_tenant.as_deref(), &memberships);
        let tenant_plan = match &tenant {
            Some(t) => plan_period(store.get(SUBSCRIPTIONS, &format!("tenant:{t}")).await?),
            None => None,
        };
        let inputs = Inputs {
            openid: openid.to_owned(),
            unionid: str_field(&user, "unionid"),
            last_login_at: user.get("lastLoginAt").and_then(Value::as_i64),
            active_tenant,
            orders: orders
                .iter()
                .filter_map(|o| {
                    Some(PaidOrder {
                        paid_at: o.get("paidAt").and_then(Value::as_i64)?,
                        total_fen: o.get("totalFen").and_then(Value::as_i64)?,
                    })
                })
                .collect(),
            refunds,
            memberships,
            personal: plan_period(store.get(SUBSCRIPTIONS, openid).await?),
            tenant_plan,
        };
        Ok(Some(crm::customer(&inputs, self.clock.now_unix())))
    }

    /// Recomputes `openid` and stores the record when it is new or changed (`version + 1`,
    /// `dirty`). Returns whether it wrote.
    ///
    /// # Errors
    /// The store's.
    pub async fn refresh(&self, openid: &str) -> Result<bool, StoreError> {
        // Two tries: a concurrent fold that wrote between our read and our write recomputed
        // from the same or newer documents; the second try compares with its record.
        for _ in 0..2 {
            let Some(record) = self.compute(openid).await? else {
                return Ok(false);
            };
            let fields = serde_json::to_value(&record)
                .map_err(|e| StoreError::InvalidDocument(e.to_string()))?;
            let now = self.clock.now_unix();
            match self.store.get(CRM_CUSTOMERS, openid).await? {
                None => {
                    let mut doc = fields;
                    if let Value::Object(map) = &mut doc {
                        // Absent, as the update path unsets them.
                        map.retain(|_, v| !v.is_null());
                    }
                    doc["_id"] = json!(openid);
                    doc["version"] = json!(1);
                    doc["dirty"] = json!(true);
                    doc["updatedAt"] = json!(now);
                    match self.store.insert(CRM_CUSTOMERS, doc).await {
                        Ok(_) => return Ok(true),
                        Err(StoreError::DuplicateKey { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some(stored) => {
                    let same = serde_json::from_value::<Customer>(stored.clone())
                        .is_ok_and(|s| s == record);
                    if same {
                        return Ok(false);
                    }
                    let version = stored.get("version").and_then(Value::as_i64).unwrap_or(0);
                    let mut update = Update::new();
                    if let Value::Object(map) = fields {
                        for (k, v) in map {
                            update = if v.is_null() {
                                update.unset(k)
                            } else {
                                update.set(k, v)
                            };
                        }
                    }
                    let update = update
                        .set("version", version + 1)
                        .set("dirty", true)
                        .set("updatedAt", now);
                    let filter = Filter::id(openid).and(Filter::eq("version", version));
                    if self
                        .store
                        .update_one(CRM_CUSTOMERS, &filter, &update, UpdateOptions::default())
                        .await?
                        .is_some()
                    {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// One incremental fold: the customers changed since the cursors (see the module docs),
    /// recomputed; then the cursors move. A crash before the cursors move repeats the fold,
    /// which changes nothing twice.
    ///
    /// # Errors
    /// The store's.
    pub async fn fold(&self) -> Result<FoldReport, StoreError> {
        let state = self
            .store
            .get(CRM_STATE, FOLD_STATE)
            .await?
            .unwrap_or_else(|| json!({}));
        let now = self.clock.now_unix();
        let mut report = FoldReport::default();
        let mut openids = BTreeSet::new();
        let mut tenants = BTreeSet::new();
        let mut next = Update::new().set("at", now);

        let cursor = state.get("stream").and_then(Value::as_i64).unwrap_or(0);
        let events = Events::new(self.store.clone()).with_clock(self.clock.clone());
        let page = events.after(cursor, EVENT_PAGE).await?;
        report.more |= page.len() as u64 == EVENT_PAGE;
        if let Some(last) = page.last() {
            next = next.set("stream", last.seq);
        }
        for event in page {
            // Orders and refunds name their buyer; tenant joins and leaves name the member in
            // their data.
            let member = event.data.get("openid").and_then(Value::as_str);
            if let Some(o) = event.openid.as_deref().or(member) {
                openids.insert(o.to_owned());
            }
        }

        for source in &SOURCES {
            let at = state
                .pointer(&format!("/{}/at", source.name))
                .and_then(Value::as_i64)
                .unwrap_or(i64::MIN);
            let id = state
                .pointer(&format!("/{}/id", source.name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let after = Filter::gt(source.field, at)
                .or(Filter::eq(source.field, at).and(Filter::gt("_id", id)));
            let docs = self
                .store
                .find(
                    source.collection,
                    &after.and(Filter::lte(source.field, now - LAG_SECS)),
                    &FindOptions::new()
                        .sort_asc(source.field)
                        .sort_asc("_id")
                        .limit(SOURCE_PAGE),
                )
                .await?;
            report.more |= docs.len() as u64 == SOURCE_PAGE;
            if let Some(last) = docs.last() {
                next = next.set(
                    source.name,
                    json!({"at": last.get(source.field), "id": last.get("_id")}),
                );
            }
            for doc in docs {
                if let Some(t) = source.tenant.and_then(|f| str_field(&doc, f)) {
                    tenants.insert(t);
                }
                if let Some(who) = str_field(&doc, source.who) {
                    match who.strip_prefix("tenant:") {
                        Some(t) => {
                            tenants.insert(t.to_owned());
                        }
                        None => {
                            openids.insert(who);
                        }
                    }
                }
            }
        }

        for tenant in tenants {
            for m in self
                .store
                .find(
                    TENANT_MEMBERS,
                    &Filter::eq("tenant", tenant.as_str()),
                    &FindOptions::new().limit(10_000),
                )
                .await?
            {
                if let Some(o) = str_field(&m, "openid") {
                    openids.insert(o);
                }
            }
        }

        for openid in &openids {
            report.examined += 1;
            if self.refresh(openid).await? {
                report.changed += 1;
            }
        }
        self.store
            .update_one(
                CRM_STATE,
                &Filter::id(FOLD_STATE),
                &next,
                UpdateOptions::upsert(),
            )
            .await?;
        Ok(report)
    }

    /// Folds until caught up, `rounds` folds ran, or [`MINUTE_FOLD_BUDGET`] customers were
    /// recomputed (a first run over a large history goes on the next minute).
    ///
    /// # Errors
    /// The store's.
    pub async fn fold_rounds(&self, rounds: u32) -> Result<FoldReport, StoreError> {
        let mut total = FoldReport::default();
        for _ in 0..rounds.max(1) {
            let r = self.fold().await?;
            total.examined += r.examined;
            total.changed += r.changed;
            total.more = r.more;
            if !r.more || total.examined >= MINUTE_FOLD_BUDGET {
                break;
            }
        }
        Ok(total)
    }

    /// Recomputes up to `limit` stored records after `after` (an openid; `None` from the
    /// start). Returns the report and where to go on (`None`: the end was reached).
    ///
    /// # Errors
    /// The store's.
    pub async fn refold_page(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(FoldReport, Option<String>), StoreError> {
        let filter = match after {
            Some(id) => Filter::gt("_id", id),
            None => Filter::All,
        };
        let page = self
            .store
            .find(
                CRM_CUSTOMERS,
                &filter,
                &FindOptions::new().sort_asc("_id").limit(limit),
            )
            .await?;
        let mut report = FoldReport::default();
        for doc in &page {
            if let Some(id) = str_field(doc, "_id") {
                report.examined += 1;
                if self.refresh(&id).await? {
                    report.changed += 1;
                }
            }
        }
        let next = (page.len() as u64 == limit)
            .then(|| page.last().and_then(|d| str_field(d, "_id")))
            .flatten();
        report.more = next.is_some();
        Ok((report, next))
    }

    /// The webhook step: dirty records into the outbox, then up to `budget` deliveries
    /// (`None` when no webhook is configured: records stay dirty until one is).
    ///
    /// # Errors
    /// The store's.
    pub async fn push(&self, budget: u64) -> Result<Option<webhook::DeliveryReport>, StoreError> {
        match &self.webhook {
            Some(w) => Ok(Some(w.run(self.store.as_ref(), &self.clock, budget).await?)),
            None => Ok(None),
        }
    }

    /// The rolling pass over every record: the next `limit` records after the stored cursor
    /// are recomputed, and the cursor moves on (back to the start after the last record). It
    /// catches the changes that leave no trace to follow (a trial started, a plan changed or
    /// canceled, a customer turning dormant): a full pass takes `customers / limit` minutes.
    ///
    /// # Errors
    /// The store's.
    pub async fn refold_step(&self, limit: u64) -> Result<FoldReport, StoreError> {
        let state = self.store.get(CRM_STATE, FOLD_STATE).await?;
        let after = state.as_ref().and_then(|s| str_field(s, REFOLD_CURSOR));
        let (report, next) = self.refold_page(after.as_deref(), limit.max(1)).await?;
        let update = match next {
            Some(n) => Update::new().set(REFOLD_CURSOR, n),
            None => Update::new().unset(REFOLD_CURSOR),
        };
        self.store
            .update_one(
                CRM_STATE,
                &Filter::id(FOLD_STATE),
                &update,
                UpdateOptions::upsert(),
            )
            .await?;
        Ok(report)
    }

    /// The every-minute timer step: fold (up to [`MINUTE_FOLD_ROUNDS`] pages or
    /// [`MINUTE_FOLD_BUDGET`] customers), the rolling pass ([`REFOLD_PER_MINUTE`] records), and
    /// push (up to [`MINUTE_PUSH_BUDGET`] deliveries).
    ///
    /// # Errors
    /// The store's.
    pub async fn minute(&self) -> Result<Value, StoreError> {
        let fold = self.fold_rounds(MINUTE_FOLD_ROUNDS).await?;
        let refold = self.refold_step(REFOLD_PER_MINUTE).await?;
        let push = self.push(MINUTE_PUSH_BUDGET).await?;
        Ok(json!({"fold": fold, "refold": refold, "push": push}))
    }

    /// The daily timer step: delivered outbox entries older than a week deleted.
    ///
    /// # Errors
    /// The store's.
    pub async fn daily(&self) -> Result<Value, StoreError> {
        let purged = Webhook::purge(self.store.as_ref(), self.clock.now_unix()).await?;
        Ok(json!({"purged": purged}))
    }

    /// Every stored record, by openid.
    ///
    /// # Errors
    /// The store's.
    pub async fn records(&self) -> Result<Vec<Customer>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let filter = match &after {
                Some(id) => Filter::gt("_id", id.as_str()),
                None => Filter::All,
            };
            let page: Vec<Value> = self
                .store
                .find(
                    CRM_CUSTOMERS,
                    &filter,
                    &FindOptions::new().sort_asc("_id").limit(1000),
                )
                .await?;
            let full = page.len() == 1000;
            after = page.last().and_then(|d| str_field(d, "_id"));
            for doc in page {
                out.push(
                    serde_json::from_value(doc)
                        .map_err(|e| StoreError::InvalidDocument(e.to_string()))?,
                );
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// The `crmExport` answer: `{filename: "wemint-customers-<today>.csv", rows, csv}` with one
    /// row per record (today in China time), after a fold so that it is up to date.
    ///
    /// # Errors
    /// The store's.
    pub async fn export(&self) -> Result<Value, StoreError> {
        self.fold_rounds(MINUTE_FOLD_ROUNDS).await?;
        let date = crate::finance::china_date(self.clock.now_unix());
        let records = self.records().await?;
        Ok(json!({
            "filename": format!("wemint-customers-{date}.csv"),
            "rows": records.len(),
            "csv": crm::csv(&records),
        }))
    }
}

#[cfg(test)]
mod tests;
