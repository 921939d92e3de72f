//! The daily aggregation and the dashboard over a range of days.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Analytics, AnalyticsError, upsert};
use crate::domain::analytics::{
    self as rules, ContentRow, DayAggregate, EventFold, Fact, FactKind, FunnelRow, ProductRow,
    RawBatch,
};
use crate::finance::china_day_start;
use crate::store::collections::{
    ANALYTICS_COUNTERS, ANALYTICS_DAILY, ANALYTICS_EVENTS, ANALYTICS_FACTS,
};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

/// The longest dashboard range, days.
pub const MAX_DASHBOARD_DAYS: u32 = 90;
/// Raw documents read per page while aggregating.
const PAGE: u64 = 500;
/// Ids per `In` query while aggregating.
const CHUNK: usize = 500;
/// First-active-day writes in flight at once: a day of 10,000 new people is not 10,000 round
/// trips one after the other (SQLite commits the concurrent ones together).
const CONCURRENT_WRITES: usize = 16;
/// Retention offsets, days.
const RETENTION_OFFSETS: [i64; 3] = [1, 7, 30];
/// Rows of `topProducts` and `topContent`.
const TOP: usize = 10;

/// What `aggregateRun` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AggregateReport {
    /// The day aggregated.
    pub date: String,
    /// Raw events read.
    pub events: u64,
    /// Facts read.
    pub facts: u64,
}

fn invalid_day(date: &str) -> AnalyticsError {
    AnalyticsError::Invalid(format!("date must be a day yyyy-MM-dd, not {date:?}"))
}

impl Analytics {
    /// Every raw batch of `day` folded, read in pages by `_id` (one page in memory at a time).
    async fn fold_raw(&self, day: &str) -> Result<EventFold, StoreError> {
        let mut fold = EventFold::default();
        let mut last: Option<String> = None;
        loop {
            let mut filter = Filter::eq("day", day);
            if let Some(id) = &last {
                filter = filter.and(Filter::gt("_id", id.as_str()));
            }
            let docs = self
                .store
                .find(
                    ANALYTICS_EVENTS,
                    &filter,
                    &FindOptions::new().sort_asc("_id").limit(PAGE),
                )
                .await?;
            let n = docs.len() as u64;
            for doc in docs {
                last = doc.get("_id").and_then(Value::as_str).map(str::to_owned);
                match serde_json::from_value::<RawBatch>(doc) {
                    Ok(batch) => fold.add(&batch),
                    Err(e) => tracing::warn!(error = %e, "analytics: unreadable raw batch"),
                }
            }
            if n < PAGE {
                return Ok(fold);
            }
        }
    }

    /// Aggregates `date` (`yyyy-MM-dd`, China): derives the day's facts from the owning
    /// collections, reads its raw events and facts, and replaces the day's aggregates. Also
    /// records each active person's first active day and fills the retention of the cohorts
    /// 1, 7 and 30 days before. Re-running a day gives the same result.
    ///
    /// # Errors
    /// `Invalid` for a malformed date or one in the future; the store's.
    pub async fn aggregate(&self, date: &str) -> Result<AggregateReport, AnalyticsError> {
        china_day_start(date).ok_or_else(|| invalid_day(date))?;
        if date > self.today().as_str() {
            return Err(AnalyticsError::Invalid(format!("{date} has not come yet")));
        }
        self.backfill_facts(date).await?;
        let events = self.fold_raw(date).await?;
        let facts: Vec<Fact> = self
            .store
            .find_as(
                ANALYTICS_FACTS,
                &Filter::eq("day", date),
                &FindOptions::new(),
            )
            .await?;
        let buyers: Vec<&str> = facts
            .iter()
            .filter(|f| f.kind == FactKind::Paid)
            .map(|f| f.openid.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut returning = HashSet::new();
        for chunk in buyers.chunks(CHUNK) {
            let before = Filter::is_in("openid", chunk.iter().copied())
                .and(Filter::lt("day", date))
                .and(Filter::eq("kind", "paid"));
            let earlier: Vec<Fact> = self
                .store
                .find_as(ANALYTICS_FACTS, &before, &FindOptions::new())
                .await?;
            returning.extend(earlier.into_iter().map(|f| f.openid));
        }
        let (day, active) = events.finish(date, &facts, &returning);
        self.save_day(&day).await?;
        self.cohorts(date, &active).await?;
        Ok(AggregateReport {
            date: date.to_owned(),
            events: day.events,
            facts: day.facts,
        })
    }

    /// Replaces the day's fields (the cohort's later retention figures are kept).
    async fn save_day(&self, day: &DayAggregate) -> Result<(), StoreError> {
        let Value::Object(fields) = serde_json::to_value(day)
            .map_err(|e| StoreError::InvalidDocument(format!("day: {e}")))?
        else {
            return Err(StoreError::InvalidDocument("day is not an object".into()));
        };
        let mut update = Update::new().set("aggregatedAt", self.clock.now_unix());
        for (key, value) in fields {
            update = update.set(key, value);
        }
        upsert(self.store.as_ref(), ANALYTICS_DAILY, &day.date, &update).await?;
        Ok(())
    }

    /// First active days of `active`, the size of `date`'s cohort, and the retention of the
    /// cohorts [`RETENTION_OFFSETS`] days before.
    async fn cohorts(&self, date: &str, active: &BTreeSet<String>) -> Result<(), StoreError> {
        // Known people in chunks (one read each); a write only for someone new, or whose
        // recorded first day is later than this one (a day aggregated out of order).
        let people: Vec<&String> = active.iter().collect();
        for chunk in people.chunks(CHUNK) {
            let ids = chunk.iter().map(|o| format!("user:{o}"));
            let known: HashMap<String, String> = self
                .store
                .find(
                    ANALYTICS_COUNTERS,
                    &Filter::is_in("_id", ids),
                    &FindOptions::new(),
                )
                .await?
                .into_iter()
                .filter_map(|d| {
                    Some((
                        d.get("openid")?.as_str()?.to_owned(),
                        d.get("firstDay")?.as_str()?.to_owned(),
                    ))
                })
                .collect();
            // Owned inputs: the futures run concurrently inside `Send` callers.
            let pending: Vec<_> = chunk
                .iter()
                .filter_map(|openid| match known.get(openid.as_str()) {
                    Some(first) if first.as_str() <= date => None,
                    first => Some(record_first_day(
                        Arc::clone(&self.store),
                        (*openid).clone(),
                        first.is_some(),
                        date.to_owned(),
                    )),
                })
                .collect();
            stream::iter(pending)
                .buffer_unordered(CONCURRENT_WRITES)
                .try_for_each(|()| async { Ok(()) })
                .await?;
        }
        let size = self
            .store
            .count(ANALYTICS_COUNTERS, &Filter::eq("firstDay", date))
            .await?;
        self.store
            .update_one(
                ANALYTICS_DAILY,
                &Filter::id(date),
                &Update::new().set("cohort.size", size),
                UpdateOptions::default(),
            )
            .await?;
        for k in RETENTION_OFFSETS {
            let Some(cohort) = rules::add_days(date, -k) else {
                continue;
            };
            let members = self
                .store
                .find(
                    ANALYTICS_COUNTERS,
                    &Filter::eq("firstDay", cohort.as_str()),
                    &FindOptions::new(),
                )
                .await?;
            let back = members
                .iter()
                .filter_map(|m| m.get("openid").and_then(Value::as_str))
                .filter(|o| active.contains(*o))
                .count();
            self.store
                .update_one(
                    ANALYTICS_DAILY,
                    &Filter::id(cohort.as_str()),
                    &Update::new().set(format!("cohort.d{k}"), back as u64),
                    UpdateOptions::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// The dashboard of the `days` days up to today (1..=[`MAX_DASHBOARD_DAYS`]): one row per
    /// day (zeros for a day not aggregated), the funnel, top products and content summed over
    /// the range, the retention cohorts, and WeChat's own daily figures where the datacube pull
    /// stored them (`crm::wechat_entries`; empty when it never ran).
    ///
    /// # Errors
    /// `Invalid` for `days` out of range; the store's.
    pub async fn dashboard(&self, days: u32) -> Result<Value, AnalyticsError> {
        if !(1..=MAX_DASHBOARD_DAYS).contains(&days) {
            return Err(AnalyticsError::Invalid(format!(
                "days must be 1..={MAX_DASHBOARD_DAYS}"
            )));
        }
        let to = self.today();
        let from = rules::add_days(&to, -(i64::from(days) - 1)).ok_or_else(|| invalid_day(&to))?;
        let dates: Vec<String> = (0..i64::from(days))
            .filter_map(|i| rules::add_days(&from, i))
            .collect();
        let docs = self
            .store
            .find(
                ANALYTICS_DAILY,
                &Filter::gte("date", from.as_str()).and(Filter::lte("date", to.as_str())),
                &FindOptions::new().sort_asc("date"),
            )
            .await?;
        let mut stored: BTreeMap<String, Value> = BTreeMap::new();
        for doc in docs {
            if let Some(d) = doc.get("date").and_then(Value::as_str) {
                stored.insert(d.to_owned(), doc);
            }
        }
        let dropped = self.dropped_of(&dates).await?;
        let mut rows = Vec::new();
        let mut funnel: BTreeMap<(String, Option<String>), FunnelRow> = BTreeMap::new();
        let mut products: BTreeMap<String, ProductRow> = BTreeMap::new();
        let mut content: BTreeMap<String, ContentRow> = BTreeMap::new();
        let mut retention = Vec::new();
        for date in &dates {
            let doc = stored.get(date);
            let day: DayAggregate = doc
                .and_then(|d| serde_json::from_value(d.clone()).ok())
                .unwrap_or_else(|| DayAggregate {
                    date: date.clone(),
                    ..DayAggregate::default()
                });
            for r in &day.funnel {
                let row = funnel
                    .entry((r.sku.clone(), r.channel.clone()))
                    .or_insert_with(|| FunnelRow {
                        sku: r.sku.clone(),
                        channel: r.channel.clone(),
                        ..FunnelRow::default()
                    });
                row.views += r.views;
                row.carts += r.carts;
                row.checkouts += r.checkouts;
                row.paid += r.paid;
            }
            for p in &day.products {
                let row = products.entry(p.sku.clone()).or_insert_with(|| ProductRow {
                    sku: p.sku.clone(),
                    ..ProductRow::default()
                });
                row.paid += p.paid;
                row.revenue += p.revenue;
            }
            for c in &day.content {
                let row = content
                    .entry(c.content_id.clone())
                    .or_insert_with(|| ContentRow {
                        content_id: c.content_id.clone(),
                        ..ContentRow::default()
                    });
                row.views += c.views;
                row.unlocks += c.unlocks;
            }
            if let Some(cohort) = doc.and_then(|d| d.get("cohort"))
                && cohort.get("size").and_then(Value::as_u64).unwrap_or(0) > 0
            {
                let mut r = json!({"cohort": date, "size": cohort["size"]});
                for k in RETENTION_OFFSETS {
                    let key = format!("d{k}");
                    r[key.as_str()] = cohort.get(&key).cloned().unwrap_or(Value::Null);
                }
                retention.push(r);
            }
            rows.push(day_row(&day, dropped.get(date)));
        }
        let mut top_products: Vec<ProductRow> = products.into_values().collect();
        top_products.sort_by(|a, b| b.revenue.cmp(&a.revenue).then(a.sku.cmp(&b.sku)));
        top_products.truncate(TOP);
        let mut top_content: Vec<ContentRow> = content.into_values().collect();
        top_content.sort_by(|a, b| b.views.cmp(&a.views).then(a.content_id.cmp(&b.content_id)));
        top_content.truncate(TOP);
        let wechat = crate::crm::wechat_entries(self.store.as_ref(), &from, &to).await?;
        Ok(json!({
            "from": from,
            "to": to,
            "days": rows,
            "funnel": funnel.into_values().collect::<Vec<_>>(),
            "retention": retention,
            "topProducts": top_products,
            "topContent": top_content,
            "wechat": wechat,
        }))
    }
}

/// The contract's `days[]` row of one day.
fn day_row(day: &DayAggregate, dropped: Option<&Value>) -> Value {
    json!({
        "date": day.date,
        "visitors": day.visitors,
        "pageViews": day.page_views,
        "productViews": day.product_views,
        "carts": day.carts,
        "checkouts": day.checkouts,
        "paid": day.paid,
        "revenue": day.revenue,
        "refunds": day.refunds,
        "newBuyers": day.new_buyers,
        "returningBuyers": day.returning_buyers,
        "paywallViews": day.paywall_views,
        "paywallUnlocks": day.paywall_unlocks,
        "granted": day.granted,
        "shipped": day.shipped,
        "subscriptionsStarted": day.subscriptions_started,
        "subscriptionsRenewed": day.subscriptions_renewed,
        "subscriptionsLapsed": day.subscriptions_lapsed,
        "dropped": dropped.cloned().unwrap_or_else(|| Value::Object(Map::new())),
    })
}

/// Records `date` as the first active day of `openid`: a new record, or an earlier day than
/// the one `known` (a day aggregated out of order). A record written meanwhile by a concurrent
/// run is kept.
async fn record_first_day(
    store: Arc<dyn Store>,
    openid: String,
    known: bool,
    date: String,
) -> Result<(), StoreError> {
    let id = format!("user:{openid}");
    if known {
        store
            .update_one(
                ANALYTICS_COUNTERS,
                &Filter::id(id.as_str()).and(Filter::gt("firstDay", date.as_str())),
                &Update::new().set("firstDay", date),
                UpdateOptions::default(),
            )
            .await?;
        return Ok(());
    }
    let doc = json!({"_id": id, "kind": "user", "openid": openid, "firstDay": date});
    match store.insert(ANALYTICS_COUNTERS, doc).await {
        Ok(_) | Err(StoreError::DuplicateKey { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
