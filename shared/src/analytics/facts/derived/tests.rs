//! Grants, shipments and subscription starts, renewals and lapses derived per day from the
//! documents fulfilment, shipping and the subscriptions wrote (in the shapes
//! `docs/collections.md` gives), on an in-memory SQLite store with a fixed clock.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::analytics::Analytics;
use crate::clock::FixedClock;
use crate::store::collections::{ANALYTICS_FACTS, ENTITLEMENTS, ORDERS, PLANS, SUBSCRIPTIONS};
use crate::store::sqlite::SqliteStore;
use crate::store::{Filter, FindOptions, Store};

/// 2026-12-04 12:00:00 China time.
const NOON: i64 = 1_796_356_800;
const DAY: &str = "2026-12-04";
const YESTERDAY: &str = "2026-12-03";
const H: i64 = 3600;
const D: i64 = 86_400;

async fn service() -> (Analytics, Arc<FixedClock>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    crate::store::bootstrap(store.as_ref()).await.unwrap();
    let clock = Arc::new(FixedClock::new(NOON));
    (
        Analytics::new(store.clone(), clock.clone(), 90),
        clock,
        store,
    )
}

fn order(id: &str, openid: &str, paid_at: i64, kind: Value, extra: Value) -> Value {
    let mut doc = json!({
        "_id": id, "outTradeNo": format!("T{id}"), "openid": openid, "appid": "wx1",
        "clientRequestId": format!("r-{id}"), "status": "fulfilled", "channel": "wxpay",
        "items": [{"sku": "sku-1", "title": "Thing", "quantity": 1, "unitPriceFen": 990,
            "kind": kind}],
        "totalFen": 990, "createdAt": paid_at - 60, "expiresAt": paid_at + 900,
        "paidAt": paid_at,
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

fn shipping(shipped_at: i64, logistics: &str) -> Value {
    json!({"shipping": {"state": "shipped", "deadlineAt": shipped_at + D,
        "logisticsType": logistics, "shippedAt": shipped_at, "shippedBy": "o-admin",
        "remindersSent": 0}})
}

fn subscription(subscriber: &str, segments: Value, applied: &[&str]) -> Value {
    let end = segments.as_array().unwrap().last().unwrap()["end"].clone();
    json!({"_id": subscriber, "subscriber": subscriber, "segments": segments,
        "renewPlan": "pro", "appliedOrders": applied, "plan": "pro", "periodEndAt": end,
        "version": 1})
}

fn seg(start: i64, end: i64) -> Value {
    json!({"plan": "pro", "start": start, "end": end, "trial": false})
}

/// `(_id, day)` of every stored fact of `kind`, sorted.
async fn facts(store: &Arc<dyn Store>, kind: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = store
        .find(
            ANALYTICS_FACTS,
            &Filter::eq("kind", kind),
            &FindOptions::new(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            (
                d["_id"].as_str().unwrap().to_owned(),
                d["day"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn ids(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn grants_come_once_on_the_day_of_the_order_that_granted_them() {
    let (a, _, store) = service().await;
    let unlock = json!({"type": "content_unlock", "content": "c1"});
    let coins = json!({"type": "coins", "amount": 100});
    for doc in [
        order("ord-1", "o-1", NOON, unlock, json!({})),
        order("ord-0", "o-1", NOON - D, coins.clone(), json!({})),
        order("ord-2", "o-1", NOON + H, coins, json!({})),
        // Paid, but fulfilment has not granted it yet: no fact.
        order(
            "ord-3",
            "o-2",
            NOON,
            json!({"type": "coins", "amount": 5}),
            json!({}),
        ),
    ] {
        store.insert(ORDERS, doc).await.unwrap();
    }
    // The wallet records two orders of different days; the unlock one order.
    let grants = [
        json!({"_id": "o-1:sku-1", "openid": "o-1", "sku": "sku-1", "kind": "content_unlock",
            "content": "c1", "grantedAt": NOON, "orders": {"o_ord-1": NOON}}),
        json!({"_id": "o-1:coins", "openid": "o-1", "sku": "coins", "kind": "coins",
            "grantedAt": NOON - D, "balance": 200,
            "orders": {"o_ord-0": NOON - D, "o_ord-2": NOON + H}}),
    ];
    for doc in grants {
        store.insert(ENTITLEMENTS, doc).await.unwrap();
    }
    a.backfill_facts(DAY).await.unwrap();
    assert_eq!(
        facts(&store, "granted").await,
        ids(&[("granted:ord-1:sku-1", DAY), ("granted:ord-2:coins", DAY)])
    );
    // A second backfill stores nothing; the other day gets its own grant.
    assert_eq!(a.backfill_facts(DAY).await.unwrap(), 0);
    a.backfill_facts(YESTERDAY).await.unwrap();
    assert_eq!(
        facts(&store, "granted").await,
        ids(&[
            ("granted:ord-0:coins", YESTERDAY),
            ("granted:ord-1:sku-1", DAY),
            ("granted:ord-2:coins", DAY)
        ])
    );
}

#[tokio::test]
async fn a_shipment_counts_on_the_day_it_shipped_and_a_virtual_report_does_not() {
    let (a, _, store) = service().await;
    let physical = json!({"type": "physical"});
    for doc in [
        // Paid yesterday evening, shipped this morning.
        order(
            "ord-1",
            "o-1",
            NOON - 20 * H,
            physical.clone(),
            shipping(NOON - 2 * H, "express"),
        ),
        // Shipped tomorrow.
        order(
            "ord-2",
            "o-1",
            NOON,
            physical.clone(),
            shipping(NOON + D, "self_pickup"),
        ),
        // Still waiting.
        order("ord-3", "o-1", NOON, physical, json!({})),
        // The automatic report of virtual goods.
        order(
            "ord-4",
            "o-1",
            NOON,
            json!({"type": "coins", "amount": 1}),
            shipping(NOON, "virtual"),
        ),
    ] {
        store.insert(ORDERS, doc).await.unwrap();
    }
    a.backfill_facts(YESTERDAY).await.unwrap();
    assert!(facts(&store, "shipped").await.is_empty());
    a.backfill_facts(DAY).await.unwrap();
    assert_eq!(
        facts(&store, "shipped").await,
        ids(&[("shipped:ord-1", DAY)])
    );
    assert_eq!(a.backfill_facts(DAY).await.unwrap(), 0);
    let fact = store
        .get(ANALYTICS_FACTS, "shipped:ord-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fact["at"], NOON - 2 * H);
    assert_eq!(
        fact["items"],
        json!([{"sku": "sku-1", "qty": 1, "fen": 990}])
    );
}

#[tokio::test]
async fn subscriptions_start_renew_and_lapse_once_and_a_renewal_is_no_lapse() {
    let (a, clock, store) = service().await;
    let member = json!({"type": "membership", "plan": "pro"});
    let month = 30 * D;
    // Ends this morning: renewed three hours before the end, so its time goes on.
    let ends = NOON - H;
    // "renewed": first bought a month ago, renewed today.
    // "lapsed": bought a month ago, ended this morning, not renewed.
    // "late": ends this evening (not passed yet at noon), not renewed.
    // "new": first bought today.
    // "back": lapsed a week ago, bought again today (a new start, not a renewal).
    for doc in [
        order("ord-r0", "renewed", ends - month, member.clone(), json!({})),
        order("ord-r1", "renewed", ends - 3 * H, member.clone(), json!({})),
        order("ord-l0", "lapsed", ends - month, member.clone(), json!({})),
        order("ord-n", "new", NOON, member.clone(), json!({})),
        order("ord-b1", "back", NOON - 2 * H, member.clone(), json!({})),
    ] {
        store.insert(ORDERS, doc).await.unwrap();
    }
    let back_start = NOON - 2 * H;
    for doc in [
        subscription(
            "renewed",
            json!([seg(ends - month, ends + month)]),
            &["ord-r0", "ord-r1"],
        ),
        subscription("lapsed", json!([seg(ends - month, ends)]), &["ord-l0"]),
        subscription(
            "late",
            json!([seg(NOON + 8 * H - month, NOON + 8 * H)]),
            &[],
        ),
        subscription("new", json!([seg(NOON, NOON + month)]), &["ord-n"]),
        subscription(
            "back",
            json!([
                seg(NOON - 7 * D - month, NOON - 7 * D),
                seg(back_start, back_start + month)
            ]),
            &["ord-b0", "ord-b1"],
        ),
        // Ended long ago: not even read (periodEndAt before the day).
        subscription("gone", json!([seg(NOON - 90 * D, NOON - 60 * D)]), &[]),
    ] {
        store.insert(SUBSCRIPTIONS, doc).await.unwrap();
    }
    a.backfill_facts(DAY).await.unwrap();
    let back = format!("subscription_started:back@{back_start}");
    let new = format!("subscription_started:new@{NOON}");
    assert_eq!(
        facts(&store, "subscription_started").await,
        ids(&[(back.as_str(), DAY), (new.as_str(), DAY)])
    );
    assert_eq!(
        facts(&store, "subscription_renewed").await,
        ids(&[("subscription_renewed:ord-r1", DAY)])
    );
    let lapsed = format!("subscription_lapsed:lapsed@{ends}");
    assert_eq!(
        facts(&store, "subscription_lapsed").await,
        ids(&[(lapsed.as_str(), DAY)])
    );
    let renewal = store
        .get(ANALYTICS_FACTS, "subscription_renewed:ord-r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (renewal["openid"].clone(), renewal["amountFen"].clone()),
        (json!("renewed"), json!(990))
    );
    // Nothing twice.
    assert_eq!(a.backfill_facts(DAY).await.unwrap(), 0);
    // Tonight "late" ends unrenewed: re-running the day once it has passed adds that lapse,
    // dated at its end, and nothing else.
    clock.advance(D);
    assert_eq!(a.backfill_facts(DAY).await.unwrap(), 1);
    let late = format!("subscription_lapsed:late@{}", NOON + 8 * H);
    assert_eq!(
        facts(&store, "subscription_lapsed").await,
        ids(&[(lapsed.as_str(), DAY), (late.as_str(), DAY)])
    );
    // The lapse of "back" a week ago is that day's, once it is derived.
    a.backfill_facts("2026-11-27").await.unwrap();
    let week_ago = format!("subscription_lapsed:back@{}", NOON - 7 * D);
    assert_eq!(
        facts(&store, "subscription_lapsed").await,
        ids(&[
            (week_ago.as_str(), "2026-11-27"),
            (lapsed.as_str(), DAY),
            (late.as_str(), DAY)
        ])
    );
}

#[tokio::test]
async fn the_dashboard_row_counts_the_new_facts() {
    let (a, _, store) = service().await;
    let physical = json!({"type": "physical"});
    store
        .insert(
            ORDERS,
            order(
                "ord-1",
                "o-1",
                NOON - H,
                physical,
                shipping(NOON, "express"),
            ),
        )
        .await
        .unwrap();
    store
        .insert(
            ORDERS,
            order(
                "ord-2",
                "o-2",
                NOON,
                json!({"type": "membership", "plan": "pro"}),
                json!({}),
            ),
        )
        .await
        .unwrap();
    store
        .insert(
            ENTITLEMENTS,
            json!({"_id": "o-2:sku-1", "openid": "o-2", "sku": "sku-1", "kind": "membership",
                "plan": "pro", "grantedAt": NOON, "expiresAt": NOON + 30 * D,
                "orders": {"o_ord-2": NOON}}),
        )
        .await
        .unwrap();
    store
        .insert(
            SUBSCRIPTIONS,
            subscription("o-2", json!([seg(NOON, NOON + 30 * D)]), &["ord-2"]),
        )
        .await
        .unwrap();
    a.aggregate(DAY).await.unwrap();
    let row = a.dashboard(1).await.unwrap()["days"][0].clone();
    let figures: Vec<Value> = [
        "paid",
        "granted",
        "shipped",
        "subscriptionsStarted",
        "subscriptionsRenewed",
        "subscriptionsLapsed",
    ]
    .iter()
    .map(|k| row[*k].clone())
    .collect();
    assert_eq!(
        figures,
        [json!(2), json!(1), json!(1), json!(1), json!(0), json!(0)]
    );
    // The money figures are the paid orders' only.
    assert_eq!(row["revenue"], json!({"wxpay": 1980, "xpay": 0}));
}

/// The documents come from the real fulfilment (`Commerce::fulfil`), not written by hand: the
/// derivation reads what the granting and subscription code actually stores.
#[tokio::test]
async fn facts_follow_what_fulfilment_really_wrote() {
    let (a, clock, store) = service().await;
    store
        .insert(
            PLANS,
            json!({"_id": "vip", "id": "vip", "title": "VIP", "tier": 1, "periodDays": 30,
                "priceFen": 1800}),
        )
        .await
        .unwrap();
    let commerce = crate::commerce::Commerce::new(store.clone(), "wx1", clock.clone());
    let paid = |id: &str, paid_at: i64, items: Value| {
        json!({
            "_id": id, "outTradeNo": format!("T{id}"), "openid": "o-1", "appid": "wx1",
            "clientRequestId": format!("r-{id}"), "status": "paid", "channel": "wxpay",
            "items": items, "totalFen": 2790, "createdAt": paid_at - 60,
            "expiresAt": paid_at + 900, "paidAt": paid_at,
        })
    };
    let vip = json!({"sku": "vip-wx", "title": "VIP", "quantity": 1, "unitPriceFen": 1800,
        "kind": {"type": "membership", "plan": "vip"}});
    let article = json!({"sku": "article-1", "title": "Article", "quantity": 1,
        "unitPriceFen": 990, "kind": {"type": "content_unlock", "content": "c1"}});
    for (id, at, items) in [
        ("ord-1", NOON - 2 * H, json!([vip.clone(), article])),
        ("ord-2", NOON - H, json!([vip])),
    ] {
        let doc = paid(id, at, items);
        store.insert(ORDERS, doc.clone()).await.unwrap();
        let order: crate::commerce::OrderDoc = serde_json::from_value(doc).unwrap();
        commerce.fulfil(&order).await.unwrap();
    }
    assert_eq!(a.backfill_facts(DAY).await.unwrap(), 7);
    let all: Vec<String> = store
        .find(ANALYTICS_FACTS, &Filter::All, &FindOptions::new())
        .await
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let started = format!("subscription_started:o-1@{}", NOON - 2 * H);
    assert_eq!(
        all,
        [
            "granted:ord-1:article-1",
            "granted:ord-1:vip-wx",
            "granted:ord-2:vip-wx",
            "paid:ord-1",
            "paid:ord-2",
            "subscription_renewed:ord-2",
            started.as_str(),
        ]
    );
    // Both orders carry fulfilment's automatic virtual shipment report: not a shipment.
    let order = store.get(ORDERS, "ord-1").await.unwrap().unwrap();
    assert_eq!(order["shipping"]["logisticsType"], "virtual");
    // The second order continued the first one's time: no lapse, no second start.
    assert_eq!(a.backfill_facts(DAY).await.unwrap(), 0);
}

/// A tenant plan renews the tenant's subscription (`tenant:<id>`), a trial paid for in time is
/// a renewal, and an upgrade order is neither.
#[test]
fn tenant_plans_trials_and_upgrades_renew_as_their_subscription_says() {
    use crate::domain::subscription::Subscription;
    let tenant = json!({"type": "tenant_plan", "plan": "team"});
    let doc = |id: &str, extra: Value| {
        let mut d = order(
            id,
            "o-owner",
            NOON,
            tenant.clone(),
            json!({"tenantId": "t1"}),
        );
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        serde_json::from_value::<crate::commerce::OrderDoc>(d).unwrap()
    };
    let paid = [
        doc("ord-t", json!({})),
        doc(
            "ord-u",
            json!({"upgrade": {"plan": "team", "fromPlan": "pro", "scope": "tenant",
                "subscriber": "tenant:t1", "from": NOON, "until": NOON + D,
                "listPriceFen": 990}}),
        ),
    ];
    // A trial of a week, then the paid month from the trial's end.
    let sub: Subscription = serde_json::from_value(json!({
        "segments": [
            {"plan": "team", "start": NOON - 7 * D + H, "end": NOON + H, "trial": true},
            {"plan": "team", "start": NOON + H, "end": NOON + H + 30 * D, "trial": false}
        ],
        "renewPlan": "team", "appliedOrders": ["ord-t", "ord-u"]}))
    .unwrap();
    let subs = std::collections::BTreeMap::from([("tenant:t1".to_owned(), sub)]);
    let facts = super::renewed(&paid, &subs);
    assert_eq!(facts.len(), 1);
    let (fact, source) = &facts[0];
    assert_eq!(source, "ord-t");
    assert_eq!(
        (fact.openid.as_str(), fact.amount_fen, fact.day.as_str()),
        ("tenant:t1", 990, DAY)
    );
    // Someone else's subscription of the same id is not there: nothing.
    assert!(super::renewed(&paid, &std::collections::BTreeMap::new()).is_empty());
}
