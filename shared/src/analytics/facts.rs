//! Backend facts, copied into `analytics_facts` once per source id: paid orders and settled
//! refunds (`paid:<orderId>`, `refund:<refundNo>`) from the event stream (every minute, behind
//! a cursor) and the owning collections (per day, when a day is aggregated); grants, shipments
//! and subscription starts, renewals and lapses from the owning collections only (per day:
//! `granted:<orderId>:<sku>`, `shipped:<orderId>`, `subscription_started:<subscriber>@<start>`,
//! `subscription_renewed:<orderId>`, `subscription_lapsed:<subscriber>@<end>`). Every copy is
//! idempotent: the fact's `_id` is its source. Nothing here is written by the paying code.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Analytics, upsert};
use crate::commerce::{OrderDoc, RefundDoc, RefundState};
use crate::domain::analytics::{Fact, FactKind, FactLine};
use crate::events::{Events, kinds};
use crate::finance::{china_date, china_day_start};
use crate::store::collections::{ANALYTICS_COUNTERS, ANALYTICS_FACTS, ORDERS, REFUNDS};

mod derived;
use crate::store::{Filter, FindOptions, StoreError, Update};

/// The counters document holding the last event copied.
const CURSOR_ID: &str = "factsCursor";

/// What one copy from the event stream did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FactsReport {
    /// Events read.
    pub read: u64,
    /// Facts stored for the first time.
    pub stored: u64,
    /// Facts already there.
    pub duplicates: u64,
    /// The cursor after the copy.
    pub cursor: i64,
}

fn paid_fact(order: &OrderDoc) -> Option<Fact> {
    let at = order.paid_at?;
    Some(Fact {
        kind: FactKind::Paid,
        day: china_date(at),
        at,
        openid: order.owner.clone(),
        order_id: order.id.clone(),
        channel: order.channel.as_str().to_owned(),
        amount_fen: order.total_fen.get(),
        items: order
            .items
            .iter()
            .map(|l| FactLine {
                sku: l.sku.clone(),
                qty: l.quantity,
                fen: l.unit_price_fen.get().saturating_mul(i64::from(l.quantity)),
            })
            .collect(),
    })
}

fn refund_fact(refund: &RefundDoc) -> Option<Fact> {
    if refund.status != RefundState::Success {
        return None;
    }
    let at = refund.settled_at?;
    Some(Fact {
        kind: FactKind::Refunded,
        day: china_date(at),
        at,
        openid: refund.owner.clone(),
        order_id: refund.order_id.clone(),
        channel: refund.channel.as_str().to_owned(),
        amount_fen: refund.amount_fen.get(),
        items: Vec::new(),
    })
}

fn fact_id(fact: &Fact, source: &str) -> String {
    let kind = match fact.kind {
        FactKind::Paid => "paid",
        FactKind::Refunded => "refund",
        FactKind::Granted => "granted",
        FactKind::Shipped => "shipped",
        FactKind::SubscriptionStarted => "subscription_started",
        FactKind::SubscriptionRenewed => "subscription_renewed",
        FactKind::SubscriptionLapsed => "subscription_lapsed",
    };
    format!("{kind}:{source}")
}

impl Analytics {
    /// Stores `fact` under its source id; `Ok(false)` when it was already there.
    async fn store_fact(&self, fact: &Fact, source: &str) -> Result<bool, StoreError> {
        let mut doc = serde_json::to_value(fact)
            .map_err(|e| StoreError::InvalidDocument(format!("fact: {e}")))?;
        doc["_id"] = json!(fact_id(fact, source));
        match self.store.insert(ANALYTICS_FACTS, doc).await {
            Ok(_) => Ok(true),
            Err(StoreError::DuplicateKey { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Copies up to `limit` events of the stream after the stored cursor: each `order.paid`
    /// and `refund.settled` becomes a fact (read from the order or refund it names), then
    /// the cursor moves past them. A crash before the cursor moves copies the same events
    /// again, which stores nothing twice.
    ///
    /// # Errors
    /// The store's.
    pub async fn copy_facts(&self, limit: u64) -> Result<FactsReport, StoreError> {
        let cursor = self
            .store
            .get(ANALYTICS_COUNTERS, CURSOR_ID)
            .await?
            .and_then(|d| d.get("seq").and_then(Value::as_i64))
            .unwrap_or(0);
        let events = Events::new(self.store.clone())
            .with_clock(self.clock.clone())
            .after(cursor, limit)
            .await?;
        let mut report = FactsReport {
            cursor,
            ..FactsReport::default()
        };
        for event in &events {
            report.read += 1;
            report.cursor = report.cursor.max(event.seq);
            let fact = match event.kind.as_str() {
                kinds::ORDER_PAID => {
                    let Some(id) = event.order_id.as_deref() else {
                        continue;
                    };
                    let order: Option<OrderDoc> = self.store.get_as(ORDERS, id).await?;
                    order
                        .as_ref()
                        .and_then(paid_fact)
                        .map(|f| (f, id.to_owned()))
                }
                kinds::REFUND_SETTLED => {
                    let Some(no) = event.data.get("refundNo").and_then(Value::as_str) else {
                        continue;
                    };
                    let refund: Option<RefundDoc> = self.store.get_as(REFUNDS, no).await?;
                    refund
                        .as_ref()
                        .and_then(refund_fact)
                        .map(|f| (f, no.to_owned()))
                }
                _ => None,
            };
            if let Some((fact, source)) = fact {
                if self.store_fact(&fact, &source).await? {
                    report.stored += 1;
                } else {
                    report.duplicates += 1;
                }
            }
        }
        if report.cursor != cursor {
            upsert(
                self.store.as_ref(),
                ANALYTICS_COUNTERS,
                CURSOR_ID,
                &Update::new().set("seq", report.cursor),
            )
            .await?;
        }
        Ok(report)
    }

    /// Derives the facts of `day` from the owning collections: orders paid that day (with
    /// their grants and subscription renewals), refunds settled that day, orders shipped that
    /// day and the subscriptions that started or lapsed that day. Returns how many were new.
    ///
    /// # Errors
    /// The store's; `InvalidQuery` for a malformed day.
    pub async fn backfill_facts(&self, day: &str) -> Result<u64, StoreError> {
        let start = china_day_start(day)
            .ok_or_else(|| StoreError::InvalidQuery(format!("not a day: {day}")))?;
        let end = start + 86_400;
        let window = |field: &str| Filter::gte(field, start).and(Filter::lt(field, end));
        let orders: Vec<OrderDoc> = self
            .store
            .find_as(ORDERS, &window("paidAt"), &FindOptions::new())
            .await?;
        let refunds: Vec<RefundDoc> = self
            .store
            .find_as(REFUNDS, &window("settledAt"), &FindOptions::new())
            .await?;
        let mut facts: Vec<(Fact, String)> = orders
            .iter()
            .filter_map(|o| paid_fact(o).map(|f| (f, o.id.clone())))
            .collect();
        facts.extend(
            refunds
                .iter()
                .filter_map(|r| refund_fact(r).map(|f| (f, r.refund_no.clone()))),
        );
        facts.extend(self.derived_facts(start, end, &orders).await?);
        let mut stored = 0;
        for (fact, source) in &facts {
            if self.store_fact(fact, source).await? {
                stored += 1;
            }
        }
        Ok(stored)
    }
}
