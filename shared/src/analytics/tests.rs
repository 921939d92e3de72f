//! Service tests on an in-memory SQLite store with a fixed clock: ingestion caps and counted
//! drops, facts from the event stream and from the owning collections, the daily aggregation,
//! retention cohorts and the raw-event retention.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Analytics;
use crate::clock::FixedClock;
use crate::events::{Draft, Events, kinds};
use crate::store::collections::{
    ANALYTICS_COUNTERS, ANALYTICS_DAILY, ANALYTICS_EVENTS, ANALYTICS_FACTS, ORDERS, REFUNDS,
};
use crate::store::sqlite::SqliteStore;
use crate::store::{Filter, Store};

/// 2026-12-04 12:00:00 China time.
const NOON: i64 = 1_796_356_800;
const DAY: &str = "2026-12-04";

async fn service(now: i64, retention_days: u32) -> (Analytics, Arc<FixedClock>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    crate::store::bootstrap(store.as_ref()).await.unwrap();
    let clock = Arc::new(FixedClock::new(now));
    (
        Analytics::new(store.clone(), clock.clone(), retention_days),
        clock,
        store,
    )
}

fn views(n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"name": "product_view", "props": {"sku": format!("s{}", i % 3)}}))
        .collect();
    json!({"events": events})
}

async fn count(store: &Arc<dyn Store>, collection: &str) -> u64 {
    store.count(collection, &Filter::All).await.unwrap()
}

#[tokio::test]
async fn the_day_is_china_time() {
    let (a, _, _) = service(NOON, 90).await;
    assert_eq!(a.today(), DAY);
    assert_eq!(a.yesterday(), "2026-12-03");
}

#[tokio::test]
async fn a_flood_is_cut_at_120_events_per_minute_and_counted() {
    let (a, clock, store) = service(NOON, 90).await;
    let mut accepted = Vec::new();
    for _ in 0..3 {
        let reply = a.track("o-1", &views(50)).await.unwrap();
        accepted.push(reply.accepted);
    }
    assert_eq!(accepted, [50, 50, 20]);
    let reply = a.track("o-1", &views(5)).await.unwrap();
    assert_eq!(
        serde_json::to_value(&reply).unwrap(),
        json!({"accepted": 0, "dropped": {"rate_limited": 5}})
    );
    // Another user has their own budget; the next minute starts afresh.
    assert_eq!(a.track("o-2", &views(10)).await.unwrap().accepted, 10);
    clock.advance(60);
    assert_eq!(a.track("o-1", &views(10)).await.unwrap().accepted, 10);
    // One raw document per call that kept events.
    assert_eq!(count(&store, ANALYTICS_EVENTS).await, 5);
    let dropped = store
        .get(ANALYTICS_COUNTERS, &format!("dropped:{DAY}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dropped["rate_limited"], 35);
}

#[tokio::test]
async fn bad_input_is_counted_per_day_and_stores_no_event() {
    let (a, _, store) = service(NOON, 90).await;
    let reply = a
        .track(
            "o-1",
            &json!({"events": [{"name": "x"}, {"name": "share", "props": {"page": 1}}]}),
        )
        .await
        .unwrap();
    assert_eq!(reply.accepted, 0);
    assert_eq!(count(&store, ANALYTICS_EVENTS).await, 0);
    // Nothing valid: the user's minute is not even counted.
    assert_eq!(
        store
            .count(ANALYTICS_COUNTERS, &Filter::eq("kind", "rate"))
            .await
            .unwrap(),
        0
    );
    let dashboard = a.dashboard(1).await.unwrap();
    assert_eq!(
        dashboard["days"][0]["dropped"],
        json!({"unknown_event": 1, "bad_type": 1})
    );
}

async fn paid_order(store: &Arc<dyn Store>, id: &str, openid: &str, paid_at: i64) {
    let order = json!({
        "_id": id, "outTradeNo": format!("T{id}"), "openid": openid, "appid": "wx1",
        "clientRequestId": format!("r-{id}"), "status": "fulfilled", "channel": "wxpay",
        "items": [{"sku": "tea-01", "title": "Tea", "quantity": 2, "unitPriceFen": 1500,
            "kind": {"type": "physical"}}],
        "totalFen": 3000, "createdAt": paid_at - 60, "expiresAt": paid_at + 900,
        "paidAt": paid_at,
    });
    store.insert(ORDERS, order).await.unwrap();
}

async fn settled_refund(store: &Arc<dyn Store>, no: &str, order: &str, at: i64) {
    let refund = json!({
        "_id": no, "orderId": order, "outTradeNo": format!("T{order}"), "openid": "o-1",
        "channel": "wxpay", "amountFen": 1000, "status": "success", "requestedBy": "o-admin",
        "createdAt": at - 10, "attemptedAt": at - 10, "settledAt": at,
    });
    store.insert(REFUNDS, refund).await.unwrap();
}

#[tokio::test]
async fn facts_are_copied_once_from_the_stream_and_a_refund_moves_the_revenue() {
    let (a, clock, store) = service(NOON, 90).await;
    let events = Events::new(store.clone()).with_clock(clock.clone());
    paid_order(&store, "ord-1", "o-1", NOON).await;
    events
        .publish(
            Draft::new(kinds::ORDER_PAID, "order.paid:ord-1")
                .for_user("o-1")
                .order("ord-1")
                .data(json!({"orderId": "ord-1", "paidAt": NOON})),
        )
        .await
        .unwrap();
    let first = a.copy_facts(100).await.unwrap();
    assert_eq!((first.read, first.stored, first.duplicates), (1, 1, 0));
    let again = a.copy_facts(100).await.unwrap();
    assert_eq!((again.read, again.stored), (0, 0));
    a.aggregate(DAY).await.unwrap();
    let day = a.dashboard(1).await.unwrap()["days"][0].clone();
    assert_eq!(day["paid"], 1);
    assert_eq!(day["revenue"], json!({"wxpay": 3000, "xpay": 0}));
    assert_eq!(day["newBuyers"], 1);

    settled_refund(&store, "R1", "ord-1", NOON + 600).await;
    events
        .publish(
            Draft::new(kinds::REFUND_SETTLED, "refund.settled:R1")
                .for_user("o-1")
                .order("ord-1")
                .data(json!({"orderId": "ord-1", "refundNo": "R1", "amountFen": 1000})),
        )
        .await
        .unwrap();
    assert_eq!(a.copy_facts(100).await.unwrap().stored, 1);
    let report = a.aggregate(DAY).await.unwrap();
    assert_eq!(report.facts, 2);
    let view = a.dashboard(1).await.unwrap();
    assert_eq!(
        view["days"][0]["revenue"],
        json!({"wxpay": 2000, "xpay": 0})
    );
    assert_eq!(
        view["days"][0]["refunds"],
        json!({"wxpay": 1000, "xpay": 0})
    );
    assert_eq!(
        view["topProducts"],
        json!([{"sku": "tea-01", "paid": 1, "revenue": 3000}])
    );
    assert_eq!(count(&store, ANALYTICS_FACTS).await, 2);
}

#[tokio::test]
async fn a_fact_without_its_event_is_derived_from_the_owning_collection() {
    let (a, _, store) = service(NOON, 90).await;
    // Paid yesterday and today: the event stream never saw them (swept, or never published).
    paid_order(&store, "ord-0", "o-1", NOON - 86_400).await;
    paid_order(&store, "ord-1", "o-1", NOON).await;
    a.aggregate("2026-12-03").await.unwrap();
    let report = a.aggregate(DAY).await.unwrap();
    assert_eq!(report.facts, 1);
    let day = a.dashboard(1).await.unwrap()["days"][0].clone();
    assert_eq!(day["paid"], 1);
    // o-1 had paid the day before: a returning buyer.
    assert_eq!(
        (day["newBuyers"].clone(), day["returningBuyers"].clone()),
        (json!(0), json!(1))
    );
    // Re-running the day replaces it: the same figures, no fact twice.
    a.aggregate(DAY).await.unwrap();
    assert_eq!(a.dashboard(1).await.unwrap()["days"][0], day);
    assert_eq!(count(&store, ANALYTICS_FACTS).await, 2);
}

#[tokio::test]
async fn cohorts_count_who_came_back_one_day_later() {
    let (a, clock, store) = service(NOON - 86_400, 90).await;
    for who in ["a", "b", "c"] {
        a.track(who, &views(1)).await.unwrap();
    }
    a.aggregate("2026-12-03").await.unwrap();
    clock.advance(86_400);
    for who in ["a", "d"] {
        a.track(who, &views(1)).await.unwrap();
    }
    a.aggregate(DAY).await.unwrap();
    let view = a.dashboard(2).await.unwrap();
    assert_eq!(
        view["retention"],
        json!([
            {"cohort": "2026-12-03", "size": 3, "d1": 1, "d7": null, "d30": null},
            {"cohort": DAY, "size": 1, "d1": null, "d7": null, "d30": null},
        ])
    );
    // Aggregating the earlier day again keeps its later retention figure.
    a.aggregate("2026-12-03").await.unwrap();
    assert_eq!(
        a.dashboard(2).await.unwrap()["retention"],
        view["retention"]
    );
    assert_eq!(count(&store, ANALYTICS_DAILY).await, 2);
}

#[tokio::test]
async fn a_day_of_several_pages_counts_every_batch_and_person_once() {
    // More raw batches than two pages, more people than one chunk of first-day writes.
    let (a, _, store) = service(NOON, 90).await;
    let people = 1_234;
    for i in 0..people {
        a.track(&format!("p{i:04}"), &views(2)).await.unwrap();
    }
    let report = a.aggregate(DAY).await.unwrap();
    assert_eq!(report.events, 2 * people);
    let day = store.get(ANALYTICS_DAILY, DAY).await.unwrap().unwrap();
    assert_eq!(day["visitors"], people);
    assert_eq!(day["productViews"], 2 * people);
    assert_eq!(day["cohort"]["size"], people);
    let firsts = store
        .count(ANALYTICS_COUNTERS, &Filter::eq("firstDay", DAY))
        .await
        .unwrap();
    assert_eq!(firsts, people);
    // Run again: the same figures, no second record for anyone.
    assert_eq!(a.aggregate(DAY).await.unwrap(), report);
    let again = store.get(ANALYTICS_DAILY, DAY).await.unwrap().unwrap();
    assert_eq!(again["cohort"], day["cohort"]);
    assert_eq!(again["funnel"], day["funnel"]);
}

#[tokio::test]
async fn raw_events_older_than_the_retention_are_dropped_and_aggregates_kept() {
    let (a, clock, store) = service(NOON, 2).await;
    a.track("o-1", &views(3)).await.unwrap();
    a.aggregate(DAY).await.unwrap();
    clock.advance(86_400);
    a.track("o-1", &views(3)).await.unwrap();
    let kept = a.purge().await.unwrap();
    assert_eq!(kept["rawDeleted"], 0);
    clock.advance(2 * 86_400);
    let purged = a.purge().await.unwrap();
    assert_eq!(purged["rawDeleted"], 1);
    assert_eq!(purged["keptFrom"], "2026-12-05");
    assert_eq!(count(&store, ANALYTICS_EVENTS).await, 1);
    // The rate windows are gone too; the aggregates stay.
    assert_eq!(
        store
            .count(ANALYTICS_COUNTERS, &Filter::eq("kind", "rate"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(count(&store, ANALYTICS_DAILY).await, 1);
}

#[tokio::test]
async fn admin_inputs_are_checked() {
    let (a, _, _) = service(NOON, 90).await;
    for days in [0, 91] {
        assert!(a.dashboard(days).await.is_err());
    }
    assert_eq!(
        a.dashboard(90).await.unwrap()["days"]
            .as_array()
            .unwrap()
            .len(),
        90
    );
    for date in ["2026-12-05", "yesterday", "2026-02-30"] {
        assert!(a.aggregate(date).await.is_err(), "{date}");
    }
}
