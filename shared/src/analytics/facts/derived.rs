//! Facts derived from the owning collections only, per day: what fulfilment, shipping and the
//! subscriptions already wrote once, read back (read-only). No event is published for them
//! and nothing is added to the paying path.
//!
//! - `granted:<orderId>:<sku>`: an `entitlements` document records the order
//!   (`orders.o_<orderId>`, the paid time) — read for the buyers of the day's paid orders.
//! - `subscription_renewed:<orderId>`: a paid order of the day whose plan period the
//!   subscription applied (`appliedOrders`) while it was still running (the period did not
//!   begin a new stretch of covered time).
//! - `shipped:<orderId>`: `shipping.shippedAt` in the day (goods handed to shipping; the
//!   automatic report of virtual goods is not a shipment).
//! - `subscription_started:<subscriber>@<start>` and `subscription_lapsed:<subscriber>@<end>`:
//!   the edges of each stretch of covered time (`domain::analytics::stretches`) in the day,
//!   read from the subscriptions whose `periodEndAt` is not before the day. A lapse writes
//!   nothing anywhere: the end passing is the fact, dated at the end, once it has passed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::analytics::Analytics;
use crate::commerce::OrderDoc;
use crate::domain::analytics::{Fact, FactKind, FactLine, stretches};
use crate::domain::catalog::ProductKind;
use crate::domain::order::OrderLine;
use crate::domain::subscription::Subscription;
use crate::finance::china_date;
use crate::store::collections::{ENTITLEMENTS, ORDERS, SUBSCRIPTIONS};
use crate::store::{Filter, FindOptions, StoreError};

/// Ids per `In` query.
const CHUNK: usize = 500;
/// The logistics type of the automatic shipment report of virtual goods.
const VIRTUAL: &str = "virtual";

/// A fact and its source id (the `_id` after `<kind>:`).
pub(super) type Sourced = (Fact, String);

fn line(l: &OrderLine) -> FactLine {
    FactLine {
        sku: l.sku.clone(),
        qty: l.quantity,
        fen: l.unit_price_fen.get().saturating_mul(i64::from(l.quantity)),
    }
}

/// A fact about `order` at `at`.
fn order_fact(kind: FactKind, order: &OrderDoc, at: i64, items: Vec<FactLine>) -> Fact {
    Fact {
        kind,
        day: china_date(at),
        at,
        openid: order.owner.clone(),
        order_id: order.id.clone(),
        channel: order.channel.as_str().to_owned(),
        amount_fen: 0,
        items,
    }
}

/// The subscription a plan line of `order` extends: the buyer's own, or their tenant's.
fn subscriber_of(order: &OrderDoc, l: &OrderLine) -> Option<String> {
    match &l.kind {
        ProductKind::Membership { .. } => Some(order.owner.clone()),
        ProductKind::TenantPlan { .. } => order.tenant.as_ref().map(|t| format!("tenant:{t}")),
        _ => None,
    }
}

/// Granted facts of `paid` (the day's paid orders) from the entitlements `docs` of their
/// buyers: one per entitlement that records the order, at the recorded time, in `[start, end)`.
pub(super) fn granted(paid: &[OrderDoc], docs: &[Value], start: i64, end: i64) -> Vec<Sourced> {
    let mut out = Vec::new();
    for doc in docs {
        let (Some(openid), Some(sku), Some(orders)) = (
            doc.get("openid").and_then(Value::as_str),
            doc.get("sku").and_then(Value::as_str),
            doc.get("orders").and_then(Value::as_object),
        ) else {
            continue;
        };
        for order in paid.iter().filter(|o| o.owner == openid) {
            let Some(at) = orders
                .get(&format!("o_{}", order.id))
                .and_then(Value::as_i64)
                .filter(|at| (start..end).contains(at))
            else {
                continue;
            };
            let qty = order
                .items
                .iter()
                .filter(|l| l.sku == sku)
                .map(|l| l.quantity)
                .sum::<u32>()
                .max(1);
            let item = FactLine {
                sku: sku.to_owned(),
                qty,
                fen: 0,
            };
            out.push((
                order_fact(FactKind::Granted, order, at, vec![item]),
                format!("{}:{sku}", order.id),
            ));
        }
    }
    out
}

/// Renewal facts of `paid` against the stored subscriptions `subs` (subscriber → document).
pub(super) fn renewed(paid: &[OrderDoc], subs: &BTreeMap<String, Subscription>) -> Vec<Sourced> {
    let mut out = Vec::new();
    for order in paid.iter().filter(|o| o.upgrade.is_none()) {
        let Some(at) = order.paid_at else {
            continue;
        };
        let lines: Vec<(&OrderLine, String)> = order
            .items
            .iter()
            .filter_map(|l| subscriber_of(order, l).map(|s| (l, s)))
            .collect();
        let Some((_, subscriber)) = lines.first() else {
            continue;
        };
        let Some(sub) = subs.get(subscriber) else {
            continue;
        };
        let applied = sub.applied_orders.contains(&order.id);
        let began = stretches(&sub.segments).iter().any(|s| s.start == at);
        if !applied || began {
            continue;
        }
        let items: Vec<FactLine> = lines.iter().map(|(l, _)| line(l)).collect();
        let mut fact = order_fact(FactKind::SubscriptionRenewed, order, at, items);
        fact.openid.clone_from(subscriber);
        fact.amount_fen = fact.items.iter().map(|l| l.fen).sum();
        out.push((fact, order.id.clone()));
    }
    out
}

/// The shipped fact of `order`, unless it is the automatic report of virtual goods.
pub(super) fn shipped(order: &OrderDoc) -> Option<Sourced> {
    let shipping = order.shipping.as_ref()?;
    let at = shipping.shipped_at?;
    if shipping.logistics_type.as_deref() == Some(VIRTUAL) {
        return None;
    }
    let items = order
        .items
        .iter()
        .filter(|l| l.kind == ProductKind::Physical)
        .map(line)
        .collect();
    Some((
        order_fact(FactKind::Shipped, order, at, items),
        order.id.clone(),
    ))
}

/// Starts and lapses of `subscriber`'s covered time in `[start, end)`; a lapse only once its
/// end is not after `now`.
pub(super) fn edges(
    subscriber: &str,
    sub: &Subscription,
    start: i64,
    end: i64,
    now: i64,
) -> Vec<Sourced> {
    let fact = |kind, at: i64, plan: &str| Fact {
        kind,
        day: china_date(at),
        at,
        openid: subscriber.to_owned(),
        order_id: String::new(),
        channel: String::new(),
        amount_fen: 0,
        items: vec![FactLine {
            sku: plan.to_owned(),
            qty: 1,
            fen: 0,
        }],
    };
    let mut out = Vec::new();
    for s in stretches(&sub.segments) {
        if (start..end).contains(&s.start) {
            out.push((
                fact(FactKind::SubscriptionStarted, s.start, s.plan),
                format!("{subscriber}@{}", s.start),
            ));
        }
        if (start..end).contains(&s.end) && s.end <= now {
            let last = sub
                .segments
                .iter()
                .rfind(|g| g.end == s.end)
                .map_or(s.plan, |g| g.plan.as_str());
            out.push((
                fact(FactKind::SubscriptionLapsed, s.end, last),
                format!("{subscriber}@{}", s.end),
            ));
        }
    }
    out
}

fn subscription_of(doc: Value) -> Option<(String, Subscription)> {
    let id = doc.get("_id").and_then(Value::as_str)?.to_owned();
    match serde_json::from_value::<Subscription>(doc) {
        Ok(sub) => Some((id, sub)),
        Err(e) => {
            tracing::warn!(subscriber = %id, error = %e, "analytics: unreadable subscription");
            None
        }
    }
}

impl Analytics {
    /// Grants, renewals, shipments and subscription starts and lapses of the day
    /// `[start, end)`; `paid` are the orders paid in it.
    pub(super) async fn derived_facts(
        &self,
        start: i64,
        end: i64,
        paid: &[OrderDoc],
    ) -> Result<Vec<Sourced>, StoreError> {
        let mut out = Vec::new();
        // Grants: the entitlements of the day's buyers (`openid_1_sku_1`).
        let buyers: Vec<&str> = paid
            .iter()
            .map(|o| o.owner.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in buyers.chunks(CHUNK) {
            let docs = self
                .store
                .find(
                    ENTITLEMENTS,
                    &Filter::is_in("openid", chunk.iter().copied()),
                    &FindOptions::new(),
                )
                .await?;
            out.extend(granted(paid, &docs, start, end));
        }
        // Renewals: the subscriptions the day's plan orders extended (by `_id`).
        let subscribers: Vec<String> = paid
            .iter()
            .flat_map(|o| o.items.iter().filter_map(|l| subscriber_of(o, l)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut subs = BTreeMap::new();
        for chunk in subscribers.chunks(CHUNK) {
            let docs = self
                .store
                .find(
                    SUBSCRIPTIONS,
                    &Filter::is_in("_id", chunk.iter().map(String::as_str)),
                    &FindOptions::new(),
                )
                .await?;
            subs.extend(docs.into_iter().filter_map(subscription_of));
        }
        out.extend(renewed(paid, &subs));
        // Shipments of the day (`shipping.shippedAt_1`).
        let window =
            Filter::gte("shipping.shippedAt", start).and(Filter::lt("shipping.shippedAt", end));
        let orders: Vec<OrderDoc> = self
            .store
            .find_as(ORDERS, &window, &FindOptions::new())
            .await?;
        out.extend(orders.iter().filter_map(shipped));
        // Starts and lapses: subscriptions still covered at the day's start or later
        // (`periodEndAt_1`; those that ended before cannot start or lapse in it).
        let now = self.clock.now_unix();
        let docs = self
            .store
            .find(
                SUBSCRIPTIONS,
                &Filter::gte("periodEndAt", start),
                &FindOptions::new(),
            )
            .await?;
        for (subscriber, sub) in docs.into_iter().filter_map(subscription_of) {
            out.extend(edges(&subscriber, &sub, start, end, now));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
