//! The WeChat datacube stand-in (`/datacube/*` on the WeChat API stand-in): the daily visit
//! trend, retention and user portrait of a day, in WeChat's reply shapes. A day's figures
//! come from what the suite saw that day (users who logged in or were created, orders
//! created), unless a test or the console set them (`POST /dev/datacube`, stored in
//! [`OVERRIDES`]). Like every WeChat endpoint it needs an access token the stand-in issued,
//! and the fault hooks (`System::WechatApi`, path `/datacube/`) apply.

use serde_json::{Value, json};
use wemint::store::collections::{ORDERS, USERS};
use wemint::store::{Filter, Update, UpdateOptions};

use crate::http::Request;
use crate::http::Response;
use crate::standins::wechat_api::{ok, wx_error};
use crate::suite::{Suite, internal};

/// Figures set for a day (`_id` = `yyyymmdd`): `{trend?, retention?, portrait?}` in WeChat's
/// reply shapes.
pub const OVERRIDES: &str = "dev_datacube";

/// China-time day start of `yyyymmdd`.
fn day_start(day: &str) -> Option<i64> {
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..]);
    wemint::finance::china_day_start(&date).filter(|s| wemint::finance::china_date(*s) == date)
}

async fn count(suite: &Suite, collection: &str, field: &str, from: i64, to: i64) -> i64 {
    let n = suite
        .store
        .count(
            collection,
            &Filter::gte(field, from).and(Filter::lt(field, to)),
        )
        .await
        .unwrap_or(0);
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Answers `POST /datacube/<api>` (token already checked).
pub async fn handle(suite: &Suite, req: &Request) -> Response {
    let body: Value = req.json().unwrap_or(Value::Null);
    let (Some(begin), Some(end)) = (body["begin_date"].as_str(), body["end_date"].as_str()) else {
        return wx_error(
            47001,
            "data format error: begin_date and end_date are required",
        );
    };
    let Some(start) = day_start(begin) else {
        return wx_error(61500, "date format error");
    };
    if begin != end {
        return wx_error(61501, "date range error: one day at a time");
    }
    if start + 86_400 > suite.clock.now() {
        return wx_error(61501, "date range error: at most yesterday");
    }
    let stored = match suite.store.get(OVERRIDES, begin).await {
        Ok(v) => v.unwrap_or(Value::Null),
        Err(e) => return internal(e),
    };
    let end_at = start + 86_400;
    let new_users = count(suite, USERS, "createdAt", start, end_at).await;
    let active = count(suite, USERS, "lastLoginAt", start, end_at)
        .await
        .max(new_users);
    match req.path.as_str() {
        "/datacube/getweanalysisappiddailyvisittrend" => {
            if let Some(t) = stored.get("trend") {
                return ok(json!({"list": [t]}));
            }
            let orders = count(suite, ORDERS, "createdAt", start, end_at).await;
            if active == 0 && orders == 0 {
                return ok(json!({"list": []}));
            }
            ok(json!({"list": [{
                "ref_date": begin,
                "session_cnt": active + orders,
                "visit_pv": active * 3 + orders * 2,
                "visit_uv": active,
                "visit_uv_new": new_users,
                "stay_time_uv": 42.5,
                "stay_time_session": 30.0,
                "visit_depth": 2.5,
            }]}))
        }
        "/datacube/getweanalysisappiddailyretaininfo" => {
            if let Some(r) = stored.get("retention") {
                return ok(r.clone());
            }
            // Day k of the day's new users: those seen again k days later or after.
            let mut list = vec![json!({"key": 0, "value": new_users})];
            for k in [1i64, 2, 3, 4, 5, 6, 7, 14, 30] {
                if start + (k + 1) * 86_400 > suite.clock.now() {
                    break;
                }
                let back = suite
                    .store
                    .count(
                        USERS,
                        &Filter::gte("createdAt", start)
                            .and(Filter::lt("createdAt", end_at))
                            .and(Filter::gte("lastLoginAt", start + k * 86_400)),
                    )
                    .await
                    .unwrap_or(0);
                list.push(json!({"key": k, "value": back}));
            }
            ok(json!({"ref_date": begin, "visit_uv_new": list,
                "visit_uv": [{"key": 0, "value": active}]}))
        }
        "/datacube/getweanalysisappiduserportrait" => {
            if let Some(p) = stored.get("portrait") {
                return ok(p.clone());
            }
            let iphone = active / 2;
            let group = |n: i64| {
                json!({
                    "province": [{"id": 31, "name": "广东省", "value": n}],
                    "city": [{"id": 3102, "name": "广州", "value": n}],
                    "genders": [{"id": 0, "name": "未知", "value": n}],
                    "platforms": [{"id": 1, "name": "iPhone", "value": iphone.min(n)},
                                  {"id": 2, "name": "Android", "value": n - iphone.min(n)}],
                    "devices": [],
                    "ages": [{"id": 0, "name": "未知", "value": n}],
                })
            };
            ok(json!({"ref_date": begin, "visit_uv_new": group(new_users),
                "visit_uv": group(active)}))
        }
        other => wx_error(-1, &format!("api {other} is not emulated by wemint-dev")),
    }
}

/// Sets a day's figures (`POST /dev/datacube {date: "yyyy-MM-dd", trend?, retention?,
/// portrait?}`, each in WeChat's reply shape).
pub async fn set_day(suite: &Suite, input: &Value) -> Result<Value, String> {
    let date = input["date"].as_str().ok_or("date is required")?;
    let day = date.replace('-', "");
    day_start(&day).ok_or("date must be yyyy-MM-dd")?;
    let mut update = Update::new().set("date", date);
    for part in ["trend", "retention", "portrait"] {
        if let Some(v) = input.get(part) {
            update = update.set(part, v.clone());
        }
    }
    suite
        .store
        .update_one(
            OVERRIDES,
            &Filter::id(day.as_str()),
            &update,
            UpdateOptions::upsert(),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({"date": date}))
}
