//! WeChat's own analytics stored per day (`wechat_datacube`, `_id` = `yyyy-MM-dd`) next to
//! the aggregates, and read back in the dashboard's `wechat` shape ([`wechat_entries`]).
//!
//! A pull ([`Datacube::pull`]) makes three calls for one day (visit trend, retention,
//! portrait: [`crate::wechat::datacube`]) and stores each part that answered; a part that
//! failed is reported and can be pulled again (a pull replaces the day's parts). Retention of
//! a day grows as days pass (day 1 is known the day after, day 7 a week later), so the daily
//! step ([`Datacube::daily`]) pulls yesterday and refreshes the retention of the days whose
//! day-1, day-7 and day-30 figures just became known.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::CrmError;
use crate::clock::SharedClock;
use crate::finance::{china_date, china_day_start};
use crate::store::collections::WECHAT_DATACUBE;
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};
use crate::wechat::WechatClient;
use crate::wechat::datacube::Retention;

/// How far back a day may be pulled (WeChat's own limit is not documented: assumed a year).
pub const MAX_DAYS_BACK: i64 = 365;
/// Retention offsets refreshed by the daily step: the day whose day-N figure became known.
pub const RETENTION_REFRESH: [i64; 3] = [1, 7, 30];

/// Pulls and stores datacube days. Cheap to clone.
#[derive(Clone)]
pub struct Datacube {
    store: Arc<dyn Store>,
    clock: SharedClock,
    client: Option<WechatClient>,
}

impl std::fmt::Debug for Datacube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datacube")
            .field("store", &self.store.backend())
            .field("client", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

fn part_error(e: &crate::wechat::WechatError) -> String {
    e.to_string()
}

/// Retention counts as rates of day 0 (`{"d1": 0.25, "d7": 0.1}`), four decimals; empty when
/// day 0 is unknown or zero.
pub fn retention_rates(counts: &[(u32, i64)]) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(base) = counts
        .iter()
        .find(|(k, _)| *k == 0)
        .map(|(_, v)| *v)
        .filter(|b| *b > 0)
    else {
        return out;
    };
    for (k, v) in counts.iter().filter(|(k, _)| *k > 0) {
        #[allow(clippy::cast_precision_loss)]
        let rate = (*v as f64 / base as f64 * 10_000.0).round() / 10_000.0;
        out.insert(format!("d{k}"), json!(rate));
    }
    out
}

/// The dashboard's `wechat` entries for `from..=to` (`yyyy-MM-dd`), oldest first: one per
/// stored day with a visit trend, `{date, visits, visitors, newVisitors, stayTimeUv,
/// retention: {d1, …}}` (retention as rates of the day's new users).
///
/// # Errors
/// The store's.
pub async fn wechat_entries(
    store: &dyn Store,
    from: &str,
    to: &str,
) -> Result<Vec<Value>, StoreError> {
    let days = store
        .find(
            WECHAT_DATACUBE,
            &Filter::gte("_id", from).and(Filter::lte("_id", to)),
            &FindOptions::new().sort_asc("_id").limit(400),
        )
        .await?;
    Ok(days
        .iter()
        .filter_map(|d| {
            let t = d.get("trend").filter(|t| t.is_object())?;
            let retention: Retention = d
                .get("retention")
                .and_then(|r| serde_json::from_value(r.clone()).ok())
                .unwrap_or_default();
            Some(json!({
                "date": d.get("_id"),
                "visits": t.get("visits").and_then(Value::as_i64).unwrap_or(0),
                "visitors": t.get("visitors").and_then(Value::as_i64).unwrap_or(0),
                "newVisitors": t.get("newVisitors").and_then(Value::as_i64).unwrap_or(0),
                "stayTimeUv": t.get("stayTimeUv").and_then(Value::as_f64).unwrap_or(0.0),
                "retention": retention_rates(&retention.new_users),
            }))
        })
        .collect())
}

impl Datacube {
    /// Days stored in `store`; pulls only with a WeChat client.
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, client: Option<WechatClient>) -> Self {
        Self {
            store,
            clock,
            client,
        }
    }

    /// Yesterday in China time.
    pub fn yesterday(&self) -> String {
        china_date(self.clock.now_unix() - 86_400)
    }

    /// `date` if it is a `yyyy-MM-dd` day that is over (yesterday at the latest) and at most
    /// [`MAX_DAYS_BACK`] days back.
    ///
    /// # Errors
    /// [`CrmError::DateInvalid`].
    pub fn check_date(&self, date: &str) -> Result<String, CrmError> {
        let start = china_day_start(date)
            .filter(|s| china_date(*s) == date)
            .ok_or_else(|| CrmError::DateInvalid(format!("{date:?} is not yyyy-MM-dd")))?;
        let today = china_day_start(&china_date(self.clock.now_unix())).unwrap_or(0);
        if start >= today {
            return Err(CrmError::DateInvalid(format!(
                "{date} is not over yet (WeChat has yesterday at the latest)"
            )));
        }
        if today - start > MAX_DAYS_BACK * 86_400 {
            return Err(CrmError::DateInvalid(format!(
                "{date} is more than {MAX_DAYS_BACK} days back"
            )));
        }
        Ok(date.to_owned())
    }

    fn client(&self) -> Result<&WechatClient, CrmError> {
        self.client.as_ref().ok_or(CrmError::NotConfigured)
    }

    async fn store_part(&self, date: &str, field: &str, value: Value) -> Result<(), StoreError> {
        let now = self.clock.now_unix();
        self.store
            .update_one(
                WECHAT_DATACUBE,
                &Filter::id(date),
                &Update::new()
                    .set(field, value)
                    .set(format!("{field}PulledAt"), now)
                    .set("date", date),
                UpdateOptions::upsert(),
            )
            .await
            .map(|_| ())
    }

    /// Pulls the visit trend, retention and portrait of `date` and stores what answered.
    /// Returns `{date, trend, retention, portrait}`, each `"ok"`, `"none"` (no row yet) or
    /// the error.
    ///
    /// # Errors
    /// [`CrmError::DateInvalid`], [`CrmError::NotConfigured`], the store's, or the first
    /// WeChat error when all three calls failed.
    pub async fn pull(&self, date: &str) -> Result<Value, CrmError> {
        let date = self.check_date(date)?;
        let client = self.client()?;
        let mut report = json!({"date": date});
        let as_value = |v: Result<Value, serde_json::Error>| v.unwrap_or_default();
        // The three calls one after the other, then each answer stored on its own.
        let parts = [
            (
                "trend",
                client
                    .daily_visit_trend(&date)
                    .await
                    .map(|t| t.map(|t| as_value(serde_json::to_value(t)))),
            ),
            (
                "retention",
                client
                    .daily_retention(&date)
                    .await
                    .map(|r| Some(as_value(serde_json::to_value(r)))),
            ),
            (
                "portrait",
                client
                    .daily_portrait(&date)
                    .await
                    .map(|p| Some(as_value(serde_json::to_value(p)))),
            ),
        ];
        let mut first_error = None;
        let mut failures = 0;
        for (part, answer) in parts {
            match answer {
                Ok(Some(value)) => {
                    self.store_part(&date, part, value).await?;
                    report[part] = json!("ok");
                }
                Ok(None) => report[part] = json!("none"),
                Err(e) => {
                    failures += 1;
                    report[part] = json!(part_error(&e));
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if failures == 3 => Err(CrmError::Wechat(e)),
            _ => Ok(report),
        }
    }

    /// Pulls the retention of `date` again (its later days are known now).
    ///
    /// # Errors
    /// As [`Datacube::pull`].
    pub async fn refresh_retention(&self, date: &str) -> Result<(), CrmError> {
        let date = self.check_date(date)?;
        let r = self.client()?.daily_retention(&date).await?;
        self.store_part(
            &date,
            "retention",
            serde_json::to_value(r).unwrap_or_default(),
        )
        .await?;
        Ok(())
    }

    /// The daily step: yesterday pulled, and the retention of the days [`RETENTION_REFRESH`]
    /// days before it refreshed. Failures are reported, not raised (the next day or an admin
    /// `wechatPull` tries again).
    pub async fn daily(&self) -> Value {
        let yesterday = self.yesterday();
        let pulled = match self.pull(&yesterday).await {
            Ok(r) => r,
            Err(e) => json!({"date": yesterday, "error": e.to_string()}),
        };
        let base = china_day_start(&yesterday).unwrap_or(0);
        let mut refreshed = Map::new();
        for back in RETENTION_REFRESH {
            let day = china_date(base - back * 86_400);
            let outcome = match self.refresh_retention(&day).await {
                Ok(()) => json!("ok"),
                Err(e) => json!(e.to_string()),
            };
            refreshed.insert(day, outcome);
        }
        json!({"pulled": pulled, "retentionRefreshed": refreshed})
    }
}
