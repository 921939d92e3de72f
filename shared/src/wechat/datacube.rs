//! WeChat's own analytics of the Mini Program (`datacube`): the daily visit trend, the daily
//! retention and the user portrait of one day, through the shared access token
//! ([`WechatClient::with_token`]). Facts and sources: `docs/wechat.md` ("Analytics
//! (datacube)").
//!
//! Every endpoint is `POST /datacube/<name>?access_token=…` with `{"begin_date", "end_date"}`
//! as `yyyymmdd`; one day at a time (`begin_date == end_date`), yesterday at the latest. The
//! parsers ([`parse_visit_trend`], [`parse_retention`], [`parse_portrait`]) take WeChat's reply
//! as decoded JSON and keep only bounded, well-typed values: counts are non-negative integers,
//! averages finite non-negative numbers, lists capped; anything else is a
//! [`WechatError::Decode`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api::WechatClient;
use super::client::Idempotent;
use super::error::WechatError;

/// The daily visit trend endpoint.
pub const VISIT_TREND_PATH: &str = "/datacube/getweanalysisappiddailyvisittrend";
/// The daily retention endpoint.
pub const RETENTION_PATH: &str = "/datacube/getweanalysisappiddailyretaininfo";
/// The user portrait endpoint.
pub const PORTRAIT_PATH: &str = "/datacube/getweanalysisappiduserportrait";
/// Entries kept per portrait attribute (the largest first).
pub const PORTRAIT_CAP: usize = 50;
/// Retention keys kept per list (WeChat documents 0–7, 14, 30).
const RETENTION_CAP: usize = 32;
/// The longest attribute name kept (characters).
const NAME_CAP: usize = 64;

/// One day of the visit trend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitTrend {
    /// Times the Mini Program was opened (`session_cnt`).
    pub sessions: i64,
    /// Visits (`visit_pv`).
    pub visits: i64,
    /// Visitors (`visit_uv`).
    pub visitors: i64,
    /// New visitors (`visit_uv_new`).
    pub new_visitors: i64,
    /// Seconds per visitor (`stay_time_uv`).
    pub stay_time_uv: f64,
    /// Seconds per session (`stay_time_session`).
    pub stay_time_session: f64,
    /// Pages per visit (`visit_depth`).
    pub visit_depth: f64,
}

/// One day's retention: for each day offset (`0` = the day itself), the users still visiting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// New users of the day, by offset.
    pub new_users: Vec<(u32, i64)>,
    /// Active users of the day, by offset.
    pub active_users: Vec<(u32, i64)>,
}

/// One attribute value of a portrait (`{id, name, value}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortraitEntry {
    /// WeChat's id of the value (0 when absent).
    pub id: i64,
    /// Its name (province, city, gender, platform, device, age range).
    pub name: String,
    /// Users.
    pub value: i64,
}

/// The portrait of one group of users, per attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortraitGroup {
    /// Provinces.
    pub province: Vec<PortraitEntry>,
    /// Cities.
    pub city: Vec<PortraitEntry>,
    /// Genders.
    pub genders: Vec<PortraitEntry>,
    /// Platforms (iPhone, Android, other).
    pub platforms: Vec<PortraitEntry>,
    /// Device models.
    pub devices: Vec<PortraitEntry>,
    /// Age ranges.
    pub ages: Vec<PortraitEntry>,
}

/// The user portrait of one day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Portrait {
    /// New users (`visit_uv_new`).
    pub new_users: PortraitGroup,
    /// Active users (`visit_uv`).
    pub active_users: PortraitGroup,
}

fn decode(what: &str) -> impl Fn(String) -> WechatError + '_ {
    move |why| WechatError::Decode(format!("datacube {what}: {why}"))
}

/// A count: a non-negative integer (a float with no fraction is accepted, as WeChat's
/// numbers are JSON numbers of either kind).
fn count(v: Option<&Value>) -> Result<i64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return if i >= 0 {
                    Ok(i)
                } else {
                    Err(format!("negative count {i}"))
                };
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => {
                    // Exact: an integer below 2^53.
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(f as i64)
                }
                _ => Err(format!("count {n} is not a non-negative integer")),
            }
        }
        Some(other) => Err(format!("count of type {}", kind(other))),
    }
}

/// An average: a finite non-negative number.
fn average(v: Option<&Value>) -> Result<f64, String> {
    match v {
        None | Some(Value::Null) => Ok(0.0),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
            _ => Err(format!("average {n} is not a finite non-negative number")),
        },
        Some(other) => Err(format!("average of type {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The reply's `ref_date` (or a list item's) must be the day asked for (`yyyymmdd`).
fn check_ref_date(v: &Value, day: &str) -> Result<(), String> {
    match v.get("ref_date") {
        None => Ok(()),
        Some(Value::String(s)) if s == day => Ok(()),
        Some(other) => Err(format!("ref_date {other} is not {day}")),
    }
}

/// The visit trend of `day` (`yyyymmdd`) from the reply `{list: [{ref_date, …}]}`; `None`
/// when WeChat has no row for the day (an empty list: no visits, or not computed yet).
///
/// # Errors
/// [`WechatError::Decode`] when the reply does not fit.
pub fn parse_visit_trend(reply: &Value, day: &str) -> Result<Option<VisitTrend>, WechatError> {
    let err = decode("visit trend");
    let list = match reply.get("list") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(err(format!("list of type {}", kind(other)))),
    };
    let Some(row) = list
        .iter()
        .find(|r| r.get("ref_date").and_then(Value::as_str) == Some(day))
        .or_else(|| (list.len() == 1).then(|| &list[0]))
    else {
        return Ok(None);
    };
    if !row.is_object() {
        return Err(err(format!("row of type {}", kind(row))));
    }
    check_ref_date(row, day).map_err(&err)?;
    Ok(Some(VisitTrend {
        sessions: count(row.get("session_cnt")).map_err(&err)?,
        visits: count(row.get("visit_pv")).map_err(&err)?,
        visitors: count(row.get("visit_uv")).map_err(&err)?,
        new_visitors: count(row.get("visit_uv_new")).map_err(&err)?,
        stay_time_uv: average(row.get("stay_time_uv")).map_err(&err)?,
        stay_time_session: average(row.get("stay_time_session")).map_err(&err)?,
        visit_depth: average(row.get("visit_depth")).map_err(&err)?,
    }))
}

fn retention_key(key: i64) -> Result<u32, String> {
    u32::try_from(key)
        .ok()
        .filter(|k| *k <= 366)
        .ok_or_else(|| format!("retention key {key} out of range"))
}

/// `[{key, value}]` as the documented example shows; the field tables call it an "Object",
/// so `{"<key>": value}` is accepted too (either way works; see docs/wechat.md).
fn retention_list(v: Option<&Value>) -> Result<Vec<(u32, i64)>, String> {
    let mut out = Vec::new();
    match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => {
            for item in items.iter().take(RETENTION_CAP) {
                let key = retention_key(count(item.get("key"))?)?;
                out.push((key, count(item.get("value"))?));
            }
        }
        Some(Value::Object(map)) => {
            for (k, value) in map.iter().take(RETENTION_CAP) {
                let key = k
                    .parse::<i64>()
                    .map_err(|_| format!("retention key {k:?} is not a number"))?;
                out.push((retention_key(key)?, count(Some(value))?));
            }
        }
        Some(other) => return Err(format!("retention list of type {}", kind(other))),
    }
    out.sort_unstable();
    out.dedup_by_key(|(k, _)| *k);
    Ok(out)
}

/// The retention of `day` (`yyyymmdd`) from the reply `{ref_date, visit_uv_new: [{key,
/// value}], visit_uv: [...]}`.
///
/// # Errors
/// [`WechatError::Decode`] when the reply does not fit.
pub fn parse_retention(reply: &Value, day: &str) -> Result<Retention, WechatError> {
    let err = decode("retention");
    if !reply.is_object() {
        return Err(err(format!("reply of type {}", kind(reply))));
    }
    check_ref_date(reply, day).map_err(&err)?;
    Ok(Retention {
        new_users: retention_list(reply.get("visit_uv_new")).map_err(&err)?,
        active_users: retention_list(reply.get("visit_uv")).map_err(&err)?,
    })
}

fn portrait_entries(v: Option<&Value>) -> Result<Vec<PortraitEntry>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("portrait list of type {}", kind(other))),
    };
    let mut out = Vec::with_capacity(items.len().min(PORTRAIT_CAP));
    for item in items {
        if !item.is_object() {
            return Err(format!("portrait entry of type {}", kind(item)));
        }
        let name = match item.get("name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.chars().take(NAME_CAP).collect(),
            Some(other) => return Err(format!("portrait name of type {}", kind(other))),
        };
        out.push(PortraitEntry {
            id: count(item.get("id"))?,
            name,
            value: count(item.get("value"))?,
        });
    }
    out.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.id.cmp(&b.id)));
    out.truncate(PORTRAIT_CAP);
    Ok(out)
}

fn portrait_group(v: Option<&Value>) -> Result<PortraitGroup, String> {
    let g = match v {
        None | Some(Value::Null) => return Ok(PortraitGroup::default()),
        Some(g @ Value::Object(_)) => g,
        Some(other) => return Err(format!("portrait group of type {}", kind(other))),
    };
    Ok(PortraitGroup {
        province: portrait_entries(g.get("province"))?,
        city: portrait_entries(g.get("city"))?,
        genders: portrait_entries(g.get("genders"))?,
        // Some pages spell it `platfomrs`: accept both.
        platforms: portrait_entries(g.get("platforms").or_else(|| g.get("platfomrs")))?,
        devices: portrait_entries(g.get("devices"))?,
        ages: portrait_entries(g.get("ages"))?,
    })
}

/// The portrait from the reply `{ref_date, visit_uv_new: {province: [{id, name, value}], …},
/// visit_uv: {…}}` (its `ref_date` may be a range: not checked).
///
/// # Errors
/// [`WechatError::Decode`] when the reply does not fit.
pub fn parse_portrait(reply: &Value) -> Result<Portrait, WechatError> {
    let err = decode("portrait");
    if !reply.is_object() {
        return Err(err(format!("reply of type {}", kind(reply))));
    }
    Ok(Portrait {
        new_users: portrait_group(reply.get("visit_uv_new")).map_err(&err)?,
        active_users: portrait_group(reply.get("visit_uv")).map_err(&err)?,
    })
}

/// `yyyy-MM-dd` as `yyyymmdd`, checked to be a real date.
///
/// # Errors
/// [`WechatError::InvalidRequest`] for anything else.
pub fn compact_date(date: &str) -> Result<String, WechatError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(date, &format)
        .map(|d| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()))
        .map_err(|_| WechatError::InvalidRequest(format!("date {date:?} is not yyyy-MM-dd")))
}

impl WechatClient {
    async fn datacube(&self, path: &str, day: &str) -> Result<Value, WechatError> {
        let body = json!({"begin_date": day, "end_date": day});
        self.post_with_token(path, &body, Idempotent::Yes).await
    }

    /// The visit trend of `date` (`yyyy-MM-dd`); `None` when WeChat has no row for it.
    ///
    /// # Errors
    /// [`WechatError`]: the call's, or `Decode` for a reply that does not fit.
    pub async fn daily_visit_trend(&self, date: &str) -> Result<Option<VisitTrend>, WechatError> {
        let day = compact_date(date)?;
        parse_visit_trend(&self.datacube(VISIT_TREND_PATH, &day).await?, &day)
    }

    /// The retention of the users of `date` (`yyyy-MM-dd`), as far as it is known.
    ///
    /// # Errors
    /// [`WechatError`]: the call's, or `Decode` for a reply that does not fit.
    pub async fn daily_retention(&self, date: &str) -> Result<Retention, WechatError> {
        let day = compact_date(date)?;
        parse_retention(&self.datacube(RETENTION_PATH, &day).await?, &day)
    }

    /// The portrait of the users of `date` (`yyyy-MM-dd`, one day).
    ///
    /// # Errors
    /// [`WechatError`]: the call's, or `Decode` for a reply that does not fit.
    pub async fn daily_portrait(&self, date: &str) -> Result<Portrait, WechatError> {
        let day = compact_date(date)?;
        parse_portrait(&self.datacube(PORTRAIT_PATH, &day).await?)
    }
}

#[cfg(test)]
mod tests;
