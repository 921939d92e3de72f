//! Touches (`oa_touches`) and the attribution of paid orders.
//!
//! ```json
//! {"_id": "t_<24 hex>", "kind": "scan" | "menu" | "template", "key": "<scene | menu key | template kind>",
//!  "oaOpenid": "…"?, "mpOpenid": "…"?, "at": 1700000000, "orderId": "…"?}
//! ```
//!
//! The `_id` is derived from the event (the push's dedupe key, the message id of a template
//! open), so a repeated event is one touch. Reconcile's funnel step runs [`attribute_pending`]
//! every minute, oldest payment first, so the payment path itself does no attribution work
//! and the first order paid after a touch is the one that claims it: it claims the
//! buyer's unclaimed touches up to the payment time, one conditional update each (a touch
//! attributes at most one order, whatever runs at once), then writes `attribution` on the
//! order once. Re-running it after a crash finds the touches already claimed for that order.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::{FunnelError, derived_id};
use crate::identity::people;
use crate::store::collections::{OA_TOUCHES, ORDERS, USERS};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

/// Most touches one order claims (older ones beyond it stay unclaimed).
pub const MAX_TOUCHES_PER_ORDER: u64 = 200;
/// Most attributed orders one report reads.
pub const MAX_REPORT_ORDERS: u64 = 10_000;

/// What brought the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TouchKind {
    /// A parametric QR code (`key` = scene).
    Scan,
    /// A menu button (`key` = the click key, or the page / url of the button).
    Menu,
    /// A template message opened in the Mini Program (`key` = notice kind).
    Template,
}

impl TouchKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TouchKind::Scan => "scan",
            TouchKind::Menu => "menu",
            TouchKind::Template => "template",
        }
    }
}

/// Whose touch it is.
#[derive(Clone, Copy, Debug)]
pub enum Toucher<'a> {
    /// A follower (Official Account openid).
    Follower(&'a str),
    /// A Mini Program user (Mini Program openid).
    User(&'a str),
}

/// Records a touch once per `event` (a stable description of the event). Returns whether it
/// is new. Keys longer than 256 bytes are cut (at a character boundary).
///
/// # Errors
/// Store failures.
pub async fn record(
    store: &dyn Store,
    event: &str,
    who: Toucher<'_>,
    kind: TouchKind,
    key: &str,
    at_ms: i64,
) -> Result<bool, FunnelError> {
    let at = at_ms.div_euclid(1000);
    let mut key = key.to_owned();
    if key.len() > 256 {
        let mut cut = 256;
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        key.truncate(cut);
    }
    let mut doc = json!({"_id": derived_id("t_", event), "kind": kind.as_str(), "key": key, "at": at,
            "atMs": at_ms});
    match who {
        Toucher::Follower(o) => doc["oaOpenid"] = json!(o),
        Toucher::User(o) => doc["mpOpenid"] = json!(o),
    }
    match store.insert(OA_TOUCHES, doc).await {
        Ok(_) => Ok(true),
        Err(StoreError::DuplicateKey { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The first and last touch of an attribution.
fn touch_view(t: &Value) -> Value {
    json!({"kind": t["kind"], "key": t["key"], "at": t["at"]})
}

/// Attributes a paid order to its buyer's unclaimed touches (idempotent; see the module
/// docs). Returns the order's `attribution`, or `None` when the order is not paid.
///
/// # Errors
/// Store failures.
pub async fn attribute_order(
    store: &dyn Store,
    order_id: &str,
    now: i64,
) -> Result<Option<Value>, FunnelError> {
    match store.get(ORDERS, order_id).await? {
        Some(order) => attribute(store, &order, now).await,
        None => Ok(None),
    }
}

/// [`attribute_order`] for an order document already read.
async fn attribute(
    store: &dyn Store,
    order: &Value,
    now: i64,
) -> Result<Option<Value>, FunnelError> {
    let Some(order_id) = order["_id"].as_str() else {
        return Ok(None);
    };
    let Some(paid_at) = order["paidAt"].as_i64() else {
        return Ok(None);
    };
    if order.get("attribution").is_some_and(|a| !a.is_null()) {
        return Ok(Some(order["attribution"].clone()));
    }
    let buyer = order["openid"].as_str().unwrap_or_default().to_owned();
    let mut whose = vec![Filter::eq("mpOpenid", buyer.as_str())];
    if let Some(unionid) = store
        .get(USERS, &buyer)
        .await?
        .and_then(|u| u["unionid"].as_str().map(str::to_owned))
        && let Some(person) = people::by_unionid(store, &unionid).await?
        && let Some(oa) = person.oa_openid
    {
        whose.push(Filter::eq("oaOpenid", oa));
    }
    let candidates = store
        .find(
            OA_TOUCHES,
            &Filter::any_of(whose)
                .and(Filter::lte("at", paid_at))
                .and(Filter::exists("orderId", false).or(Filter::eq("orderId", order_id))),
            &FindOptions::new()
                .sort_asc("at")
                .sort_asc("atMs")
                .limit(MAX_TOUCHES_PER_ORDER),
        )
        .await?;
    let mut claimed = Vec::new();
    for touch in candidates {
        let id = touch["_id"].as_str().unwrap_or_default();
        if touch["orderId"].as_str() == Some(order_id) {
            claimed.push(touch);
            continue;
        }
        let won = store
            .update_one(
                OA_TOUCHES,
                &Filter::id(id).and(Filter::exists("orderId", false)),
                &Update::new().set("orderId", order_id),
                UpdateOptions::default(),
            )
            .await?;
        if won.is_some() {
            claimed.push(touch);
        }
    }
    let attribution = match (claimed.first(), claimed.last()) {
        (Some(first), Some(last)) => json!({
            "touches": claimed.len(),
            "first": touch_view(first),
            "last": touch_view(last),
            "at": now,
        }),
        _ => json!({"touches": 0, "at": now}),
    };
    let written = store
        .update_one(
            ORDERS,
            &Filter::id(order_id).and(Filter::exists("attribution", false)),
            &Update::new().set("attribution", attribution.clone()),
            UpdateOptions::default(),
        )
        .await?;
    if written.is_none() {
        // Another run wrote it first: theirs stands.
        return Ok(store
            .get(ORDERS, order_id)
            .await?
            .map(|o| o["attribution"].clone()));
    }
    if claimed.is_empty() {
        tracing::debug!(order = %order_id, "paid order without touches");
    } else {
        tracing::info!(order = %order_id, touches = claimed.len(), "order attributed");
    }
    Ok(Some(attribution))
}

/// Paid orders not yet looked at (a crash between payment and attribution, or orders paid
/// before the funnel existed), oldest payment first, at most `limit`; attributes each.
/// Returns how many were attributed.
///
/// # Errors
/// Store failures.
pub async fn attribute_pending(
    store: &dyn Store,
    now: i64,
    limit: u64,
) -> Result<u64, FunnelError> {
    let pending = store
        .find(
            ORDERS,
            &Filter::exists("paidAt", true).and(Filter::exists("attribution", false)),
            &FindOptions::new().sort_asc("paidAt").limit(limit),
        )
        .await?;
    let mut done = 0;
    for order in pending {
        if attribute(store, &order, now).await?.is_some() {
            done += 1;
        }
    }
    Ok(done)
}

#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    conversions: u64,
    revenue_fen: i64,
    refunded_fen: i64,
}

/// Conversions and revenue per scene, menu item and template, by first and by last touch, of
/// orders paid in `[since, until)` (Unix seconds). Revenue is what was paid (`totalFen`);
/// `refundedFen` what went back since.
///
/// # Errors
/// Store failures.
pub async fn report(store: &dyn Store, since: i64, until: i64) -> Result<Value, FunnelError> {
    let orders = store
        .find(
            ORDERS,
            &Filter::gt("attribution.touches", 0)
                .and(Filter::gte("paidAt", since))
                .and(Filter::lt("paidAt", until)),
            &FindOptions::new()
                .sort_asc("paidAt")
                .limit(MAX_REPORT_ORDERS),
        )
        .await?;
    let mut by_first: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut by_last: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut total = Row::default();
    for o in &orders {
        let paid = o["totalFen"].as_i64().unwrap_or(0);
        let refunded = o["refundedFen"].as_i64().unwrap_or(0);
        for (map, which) in [(&mut by_first, "first"), (&mut by_last, "last")] {
            let t = &o["attribution"][which];
            let key = (
                t["kind"].as_str().unwrap_or_default().to_owned(),
                t["key"].as_str().unwrap_or_default().to_owned(),
            );
            let row = map.entry(key).or_default();
            row.conversions += 1;
            row.revenue_fen += paid;
            row.refunded_fen += refunded;
        }
        total.conversions += 1;
        total.revenue_fen += paid;
        total.refunded_fen += refunded;
    }
    let rows = |map: BTreeMap<(String, String), Row>| -> Vec<Value> {
        map.into_iter()
            .map(|((kind, key), row)| {
                let mut v = json!({"kind": kind, "key": key});
                if let (Some(m), Value::Object(r)) = (
                    v.as_object_mut(),
                    serde_json::to_value(row).unwrap_or_default(),
                ) {
                    m.extend(r);
                }
                v
            })
            .collect()
    };
    Ok(json!({
        "since": since,
        "until": until,
        "total": total,
        "byFirstTouch": rows(by_first),
        "byLastTouch": rows(by_last),
        "truncated": orders.len() as u64 == MAX_REPORT_ORDERS,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn store() -> SqliteStore {
        let s = SqliteStore::open_in_memory().await.unwrap();
        crate::store::bootstrap(&s).await.unwrap();
        s
    }

    async fn paid_order(s: &SqliteStore, id: &str, openid: &str, fen: i64, paid_at: i64) {
        s.insert(
            ORDERS,
            json!({"_id": id, "openid": openid, "outTradeNo": id, "clientRequestId": id,
                   "status": "paid", "totalFen": fen, "refundedFen": 0, "createdAt": paid_at - 10, "paidAt": paid_at}),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn follower_touches_attribute_the_linked_buyers_first_paid_order() {
        let s = store().await;
        s.insert(
            USERS,
            json!({"_id": "mp1", "openid": "mp1", "unionid": "U"}),
        )
        .await
        .unwrap();
        people::link(&s, "U", people::Side::Oa, "oa1", 1)
            .await
            .unwrap();
        people::link(&s, "U", people::Side::Mp, "mp1", 2)
            .await
            .unwrap();
        assert!(
            record(
                &s,
                "e1",
                Toucher::Follower("oa1"),
                TouchKind::Scan,
                "spring",
                10_000
            )
            .await
            .unwrap()
        );
        assert!(
            !record(
                &s,
                "e1",
                Toucher::Follower("oa1"),
                TouchKind::Scan,
                "spring",
                10_000
            )
            .await
            .unwrap()
        );
        record(
            &s,
            "e2",
            Toucher::Follower("oa1"),
            TouchKind::Menu,
            "TODAY",
            20_000,
        )
        .await
        .unwrap();
        // After the payment: not this order's.
        record(
            &s,
            "e3",
            Toucher::User("mp1"),
            TouchKind::Template,
            "renewal_due",
            200_000,
        )
        .await
        .unwrap();
        paid_order(&s, "o1", "mp1", 990, 100).await;
        let a = attribute_order(&s, "o1", 101).await.unwrap().unwrap();
        assert_eq!(a["touches"], 2);
        assert_eq!(a["first"]["key"], "spring");
        assert_eq!(a["last"]["key"], "TODAY");
        // Idempotent.
        assert_eq!(attribute_order(&s, "o1", 102).await.unwrap().unwrap(), a);
        // The next order gets only the later touch.
        paid_order(&s, "o2", "mp1", 500, 300).await;
        let b = attribute_order(&s, "o2", 301).await.unwrap().unwrap();
        assert_eq!(b["touches"], 1);
        assert_eq!(b["first"]["kind"], "template");
        paid_order(&s, "o3", "mp1", 100, 400).await;
        assert_eq!(attribute_pending(&s, 401, 10).await.unwrap(), 1);
        let r = report(&s, 0, 1000).await.unwrap();
        assert_eq!(r["total"]["conversions"], 2);
        assert_eq!(r["total"]["revenueFen"], 1490);
        assert_eq!(r["byFirstTouch"][0]["key"], "spring");
        assert_eq!(r["byLastTouch"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn no_unionid_stays_separate() {
        let s = store().await;
        s.insert(USERS, json!({"_id": "mp2", "openid": "mp2"}))
            .await
            .unwrap();
        record(
            &s,
            "x",
            Toucher::Follower("oa2"),
            TouchKind::Scan,
            "s",
            1_000,
        )
        .await
        .unwrap();
        paid_order(&s, "o", "mp2", 100, 5).await;
        let a = attribute_order(&s, "o", 6).await.unwrap().unwrap();
        assert_eq!(a["touches"], 0);
    }
}
