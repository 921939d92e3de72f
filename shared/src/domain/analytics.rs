//! Behaviour analytics rules (pure): the schema of the events the Mini Program reports to
//! `track`, their validation and caps, and the day aggregation over raw events and backend
//! facts. No I/O: `crate::analytics` loads and stores, these functions decide.
//!
//! The schema (`docs/analytics.md`): each event is `{name, at?, props?}`. A known name with
//! props of the right types is kept (unknown props are dropped silently); an unknown name is
//! dropped as `unknown_event`, a missing or mistyped prop as `bad_type`, props over
//! [`MAX_PROPS_BYTES`] serialized as `too_large`, events past [`MAX_BATCH`] as `batch_cap`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::subscription::Segment;

/// Events accepted per `track` call; the rest are dropped as `batch_cap`.
pub const MAX_BATCH: usize = 50;
/// Serialized size of one event's props.
pub const MAX_PROPS_BYTES: usize = 1024;
/// Events accepted per user per minute; the rest are dropped as `rate_limited`.
pub const MAX_EVENTS_PER_MINUTE: u32 = 120;
/// Serialized size of a whole `track` request's data: over it, every event is `too_large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why an event was dropped (the keys of `dropped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The name is not in the schema.
    UnknownEvent,
    /// Not an object, a missing required prop, or a prop of the wrong type or range.
    BadType,
    /// Props over [`MAX_PROPS_BYTES`], or the whole request over [`MAX_BODY_BYTES`].
    TooLarge,
    /// Past the first [`MAX_BATCH`] events of the call.
    BatchCap,
    /// Past [`MAX_EVENTS_PER_MINUTE`] for the caller.
    RateLimited,
}

impl DropReason {
    /// Every reason, in the order the dashboard lists them.
    pub const ALL: [DropReason; 5] = [
        DropReason::UnknownEvent,
        DropReason::BadType,
        DropReason::TooLarge,
        DropReason::BatchCap,
        DropReason::RateLimited,
    ];

    /// The reason's key in replies and stored counters.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownEvent => "unknown_event",
            DropReason::BadType => "bad_type",
            DropReason::TooLarge => "too_large",
            DropReason::BatchCap => "batch_cap",
            DropReason::RateLimited => "rate_limited",
        }
    }
}

/// Counts per drop reason.
pub type Dropped = BTreeMap<DropReason, u32>;

/// The `dropped` object of a reply: only the reasons that occurred.
pub fn dropped_view(dropped: &Dropped) -> Value {
    let map: Map<String, Value> = dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (r.as_str().to_owned(), json!(n)))
        .collect();
    Value::Object(map)
}

/// The kind of a prop value.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A string of at most this many characters.
    Str(usize),
    /// An integer in the range.
    Int(i64, i64),
    /// `true` / `false`.
    Bool,
    /// At most `.0` strings of at most `.1` characters each.
    Strs(usize, usize),
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// Payment channels a client may name.
const CHANNELS: &[&str] = &["wxpay", "xpay"];

/// One prop of an event: its key, kind and whether it must be there.
type Prop = (&'static str, Kind, bool);

/// The schema: event names and their props.
const SCHEMA: &[(&str, &[Prop])] = &[
    (
        "page_view",
        &[
            ("page", Kind::Str(128), true),
            ("durationMs", Kind::Int(0, i64::MAX), false),
        ],
    ),
    ("product_view", &[("sku", Kind::Str(64), true)]),
    (
        "add_to_cart",
        &[
            ("sku", Kind::Str(64), true),
            ("qty", Kind::Int(1, 999), true),
        ],
    ),
    (
        "checkout_start",
        &[
            ("skus", Kind::Strs(50, 64), true),
            ("channel", Kind::OneOf(CHANNELS), true),
        ],
    ),
    (
        "payment_result",
        &[
            ("orderId", Kind::Str(64), true),
            ("ok", Kind::Bool, true),
            ("channel", Kind::OneOf(CHANNELS), true),
        ],
    ),
    ("share", &[("page", Kind::Str(128), true)]),
    ("paywall_view", &[("contentId", Kind::Str(64), true)]),
    ("paywall_unlock", &[("contentId", Kind::Str(64), true)]),
    ("post_publish", &[("postId", Kind::Str(64), false)]),
];

/// The event names of the schema.
pub fn event_names() -> impl Iterator<Item = &'static str> {
    SCHEMA.iter().map(|(name, _)| *name)
}

fn fits(kind: Kind, value: &Value) -> bool {
    match kind {
        Kind::Str(max) => value.as_str().is_some_and(|s| s.chars().count() <= max),
        Kind::Int(min, max) => value.as_i64().is_some_and(|n| (min..=max).contains(&n)),
        Kind::Bool => value.is_boolean(),
        Kind::Strs(len, max) => value.as_array().is_some_and(|items| {
            items.len() <= len && items.iter().all(|i| fits(Kind::Str(max), i))
        }),
        Kind::OneOf(allowed) => value.as_str().is_some_and(|s| allowed.contains(&s)),
    }
}

/// A valid event as stored: `{name, at?, props}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    /// A name of the schema.
    pub name: String,
    /// The client's clock, ms (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// The schema's props only.
    #[serde(default)]
    pub props: Map<String, Value>,
}

/// Bytes of `value` as JSON, counted without keeping them.
fn serialized_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// One event checked against the schema.
///
/// # Errors
/// The reason it is dropped.
pub fn check_event(event: &Value) -> Result<Tracked, DropReason> {
    let Some(obj) = event.as_object() else {
        return Err(DropReason::BadType);
    };
    let Some(name) = obj.get("name").and_then(Value::as_str) else {
        return Err(DropReason::BadType);
    };
    let Some((name, props)) = SCHEMA.iter().find(|(n, _)| *n == name) else {
        return Err(DropReason::UnknownEvent);
    };
    let at = match obj.get("at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or(DropReason::BadType)?),
    };
    let empty = Map::new();
    let given = match obj.get("props") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err(DropReason::BadType),
    };
    if serialized_len(given) > MAX_PROPS_BYTES {
        return Err(DropReason::TooLarge);
    }
    let mut kept = Map::new();
    for (key, kind, required) in props.iter().copied() {
        match given.get(key) {
            None | Some(Value::Null) if !required => {}
            Some(v) if fits(kind, v) => {
                kept.insert(key.to_owned(), v.clone());
            }
            _ => return Err(DropReason::BadType),
        }
    }
    Ok(Tracked {
        name: (*name).to_owned(),
        at,
        props: kept,
    })
}

/// What a `track` call's data holds: the valid events (at most [`MAX_BATCH`]) and the
/// counts of the dropped ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Valid events, in the order sent.
    pub events: Vec<Tracked>,
    /// Dropped events per reason.
    pub dropped: Dropped,
}

/// Parses a `track` call's data `{events: [...]}`. Never fails: whatever is not a valid event
/// is counted in `dropped` (data that is not `{events: [..]}` counts as one `bad_type`).
/// The size of the whole data is checked first ([`MAX_BODY_BYTES`]).
pub fn parse_batch(data: &Value) -> Batch {
    let mut batch = Batch::default();
    let list = data.get("events").and_then(Value::as_array);
    let count = list.map_or(1, Vec::len);
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    if serialized_len(data) > MAX_BODY_BYTES {
        batch.dropped.insert(DropReason::TooLarge, count);
        return batch;
    }
    let Some(list) = list else {
        batch.dropped.insert(DropReason::BadType, 1);
        return batch;
    };
    for (i, event) in list.iter().enumerate() {
        if i >= MAX_BATCH {
            *batch.dropped.entry(DropReason::BatchCap).or_default() += 1;
            continue;
        }
        match check_event(event) {
            Ok(e) => batch.events.push(e),
            Err(reason) => *batch.dropped.entry(reason).or_default() += 1,
        }
    }
    batch
}

/// How many of `n` new events fit when the caller's minute already counts `before`.
pub fn within_minute(before: i64, n: usize) -> usize {
    let left = i64::from(MAX_EVENTS_PER_MINUTE).saturating_sub(before.max(0));
    usize::try_from(left.max(0)).unwrap_or(0).min(n)
}

/// One line of a paid order, as kept in a fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FactLine {
    /// Product.
    pub sku: String,
    /// Units.
    pub qty: u32,
    /// Line total, fen.
    pub fen: i64,
}

/// What a backend fact is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    /// An order was paid (amount: its total).
    Paid,
    /// A refund settled (amount: the money returned).
    Refunded,
    /// Fulfilment granted an entitlement for an order (items: the entitlement's sku).
    Granted,
    /// An order's goods were handed to shipping (physical goods; not the automatic
    /// shipment report of virtual goods).
    Shipped,
    /// A subscription's covered time began: the first period (paid or trial), or the first
    /// after a lapse (items: the plan).
    SubscriptionStarted,
    /// A paid period was added to a subscription that was still running (amount: the line).
    SubscriptionRenewed,
    /// A subscription's covered time ended without a period after it (dated at the end).
    SubscriptionLapsed,
}

/// A backend fact as stored in `analytics_facts` (`_id` = `<kind>:<source id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fact {
    /// What it is about.
    pub kind: FactKind,
    /// China day of `at`, `yyyy-MM-dd`.
    pub day: String,
    /// When it happened, Unix seconds.
    pub at: i64,
    /// The buyer (subscription facts: the subscriber, an openid or `tenant:<id>`).
    pub openid: String,
    /// The order (empty for subscription starts and lapses).
    pub order_id: String,
    /// `wxpay` or `xpay` (empty for subscription starts and lapses).
    pub channel: String,
    /// Money moved, fen (positive).
    pub amount_fen: i64,
    /// The order's lines (paid facts).
    #[serde(default)]
    pub items: Vec<FactLine>,
}

/// The raw events of one `track` call as the aggregation reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawBatch {
    /// Who sent them.
    pub openid: String,
    /// The valid events.
    pub events: Vec<Tracked>,
}

/// Per channel, fen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerChannel {
    /// WeChat Pay.
    pub wxpay: i64,
    /// Virtual payment.
    pub xpay: i64,
}

impl PerChannel {
    fn add(&mut self, channel: &str, fen: i64) {
        match channel {
            "xpay" => self.xpay += fen,
            _ => self.wxpay += fen,
        }
    }
}

/// One funnel row of a day: distinct people per step, per product and checkout channel
/// (`channel` null: people who viewed or carted but did not start a checkout of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelRow {
    /// Product.
    pub sku: String,
    /// Channel of their checkout, if any.
    pub channel: Option<String>,
    /// People who viewed it.
    pub views: u64,
    /// People who added it to the cart.
    pub carts: u64,
    /// People who started a checkout with it.
    pub checkouts: u64,
    /// People who paid an order with it (backend facts).
    pub paid: u64,
}

/// Paid orders and revenue of one product on a day (facts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRow {
    /// Product.
    pub sku: String,
    /// Paid orders with it.
    pub paid: u64,
    /// Its line totals, fen.
    pub revenue: i64,
}

/// Paywall views and unlocks of one content item on a day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentRow {
    /// Content id.
    pub content_id: String,
    /// `paywall_view` events.
    pub views: u64,
    /// `paywall_unlock` events.
    pub unlocks: u64,
}

/// A day's aggregates (`analytics_daily`), the contract's `days[]` row plus the lists the
/// range views sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayAggregate {
    /// `yyyy-MM-dd`.
    pub date: String,
    /// Raw events read.
    pub events: u64,
    /// Facts read.
    pub facts: u64,
    /// Distinct people who sent any event.
    pub visitors: u64,
    /// `page_view` events.
    pub page_views: u64,
    /// `product_view` events.
    pub product_views: u64,
    /// `add_to_cart` events.
    pub carts: u64,
    /// `checkout_start` events.
    pub checkouts: u64,
    /// Paid orders (facts).
    pub paid: u64,
    /// Net revenue per channel: paid minus refunded that day, fen.
    pub revenue: PerChannel,
    /// Refunded that day per channel, fen.
    pub refunds: PerChannel,
    /// Buyers whose first paid order is this day.
    pub new_buyers: u64,
    /// Buyers who had paid before.
    pub returning_buyers: u64,
    /// `paywall_view` events.
    pub paywall_views: u64,
    /// `paywall_unlock` events.
    pub paywall_unlocks: u64,
    /// Entitlements granted (facts).
    #[serde(default)]
    pub granted: u64,
    /// Orders shipped (facts).
    #[serde(default)]
    pub shipped: u64,
    /// Subscriptions started, or started again after a lapse (facts).
    #[serde(default)]
    pub subscriptions_started: u64,
    /// Paid periods added to running subscriptions (facts).
    #[serde(default)]
    pub subscriptions_renewed: u64,
    /// Subscriptions whose covered time ended that day without a period after it (facts).
    #[serde(default)]
    pub subscriptions_lapsed: u64,
    /// Funnel rows, sorted by sku then channel.
    pub funnel: Vec<FunnelRow>,
    /// Products paid, sorted by sku.
    pub products: Vec<ProductRow>,
    /// Paywalled content seen, sorted by id.
    pub content: Vec<ContentRow>,
}

fn prop_str<'a>(e: &'a Tracked, key: &str) -> Option<&'a str> {
    e.props.get(key).and_then(Value::as_str)
}

/// Aggregates one day: `raw` are the day's accepted batches, `facts` the day's backend
/// facts, `returning` the buyers who had a paid fact before the day. Also returns the
/// day's distinct active people (for the retention cohorts).
pub fn aggregate_day<'a>(
    date: &str,
    raw: impl IntoIterator<Item = &'a RawBatch>,
    facts: &[Fact],
    returning: &HashSet<String>,
) -> (DayAggregate, BTreeSet<String>) {
    let mut fold = EventFold::default();
    for batch in raw {
        fold.add(batch);
    }
    fold.finish(date, facts, returning)
}

/// Names numbered in order of first sight, so that the fold keeps each openid and sku once
/// however many events mention it.
#[derive(Debug, Default)]
struct Names {
    numbers: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn number(&mut self, name: &str) -> u32 {
        if let Some(&n) = self.numbers.get(name) {
            return n;
        }
        let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.numbers.insert(name.to_owned(), n);
        self.names.push(name.to_owned());
        n
    }

    fn name(&self, n: u32) -> &str {
        self.names.get(n as usize).map_or("", String::as_str)
    }
}

/// A day's raw events folded one batch at a time: the aggregation reads a day page by page,
/// and what it keeps grows with the day's distinct people and products, not with its events.
#[derive(Debug, Default)]
pub struct EventFold {
    counts: DayAggregate,
    people: Names,
    skus: Names,
    channels: Names,
    /// People who sent at least one valid event.
    active: HashSet<u32>,
    /// (sku, person) per funnel step.
    viewed: HashSet<(u32, u32)>,
    carted: HashSet<(u32, u32)>,
    /// (sku, person) → channel of their last checkout of it.
    checkout_of: HashMap<(u32, u32), u32>,
    content: BTreeMap<String, ContentRow>,
}

impl EventFold {
    /// Adds one batch.
    pub fn add(&mut self, batch: &RawBatch) {
        if batch.events.is_empty() {
            return;
        }
        let who = self.people.number(&batch.openid);
        self.active.insert(who);
        let day = &mut self.counts;
        for e in &batch.events {
            day.events += 1;
            match e.name.as_str() {
                "page_view" => day.page_views += 1,
                "product_view" => {
                    day.product_views += 1;
                    if let Some(sku) = prop_str(e, "sku") {
                        self.viewed.insert((self.skus.number(sku), who));
                    }
                }
                "add_to_cart" => {
                    day.carts += 1;
                    if let Some(sku) = prop_str(e, "sku") {
                        self.carted.insert((self.skus.number(sku), who));
                    }
                }
                "checkout_start" => {
                    day.checkouts += 1;
                    let channel = self
                        .channels
                        .number(prop_str(e, "channel").unwrap_or("wxpay"));
                    let skus = e.props.get("skus").and_then(Value::as_array);
                    for sku in skus.into_iter().flatten().filter_map(Value::as_str) {
                        self.checkout_of
                            .insert((self.skus.number(sku), who), channel);
                    }
                }
                "paywall_view" | "paywall_unlock" => {
                    let unlock = e.name == "paywall_unlock";
                    if unlock {
                        day.paywall_unlocks += 1;
                    } else {
                        day.paywall_views += 1;
                    }
                    if let Some(id) = prop_str(e, "contentId") {
                        let row = self
                            .content
                            .entry(id.to_owned())
                            .or_insert_with(|| ContentRow {
                                content_id: id.to_owned(),
                                ..ContentRow::default()
                            });
                        if unlock {
                            row.unlocks += 1;
                        } else {
                            row.views += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The day of `date` from the events folded so far and the day's `facts`; `returning`
    /// are the buyers who had a paid fact before the day. Also returns the day's distinct
    /// active people (for the retention cohorts).
    pub fn finish(
        mut self,
        date: &str,
        facts: &[Fact],
        returning: &HashSet<String>,
    ) -> (DayAggregate, BTreeSet<String>) {
        let mut day = DayAggregate {
            date: date.to_owned(),
            facts: facts.len() as u64,
            ..std::mem::take(&mut self.counts)
        };
        let active: BTreeSet<String> = self
            .active
            .iter()
            .map(|&n| self.people.name(n).to_owned())
            .collect();
        day.visitors = active.len() as u64;

        // Facts: revenue, refunds, buyers, products.
        let mut buyers: BTreeSet<&str> = BTreeSet::new();
        let mut payers: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
        let mut products: BTreeMap<&str, ProductRow> = BTreeMap::new();
        for fact in facts {
            match fact.kind {
                FactKind::Paid => {
                    day.paid += 1;
                    day.revenue.add(&fact.channel, fact.amount_fen);
                    buyers.insert(&fact.openid);
                    let mut seen = HashSet::new();
                    for line in &fact.items {
                        payers
                            .entry((line.sku.as_str(), fact.channel.as_str()))
                            .or_default()
                            .insert(&fact.openid);
                        let row = products.entry(&line.sku).or_insert_with(|| ProductRow {
                            sku: line.sku.clone(),
                            ..ProductRow::default()
                        });
                        if seen.insert(line.sku.as_str()) {
                            row.paid += 1;
                        }
                        row.revenue += line.fen;
                    }
                }
                FactKind::Refunded => {
                    day.refunds.add(&fact.channel, fact.amount_fen);
                    day.revenue.add(&fact.channel, -fact.amount_fen);
                }
                FactKind::Granted => day.granted += 1,
                FactKind::Shipped => day.shipped += 1,
                FactKind::SubscriptionStarted => day.subscriptions_started += 1,
                FactKind::SubscriptionRenewed => day.subscriptions_renewed += 1,
                FactKind::SubscriptionLapsed => day.subscriptions_lapsed += 1,
            }
        }
        for b in &buyers {
            if returning.contains(*b) {
                day.returning_buyers += 1;
            } else {
                day.new_buyers += 1;
            }
        }

        day.funnel = self.funnel_rows(&payers);
        day.products = products.into_values().collect();
        day.content = std::mem::take(&mut self.content).into_values().collect();
        (day, active)
    }

    /// Funnel rows: views and carts go to the channel of the person's checkout of the sku.
    fn funnel_rows<'a>(
        &'a self,
        payers: &HashMap<(&'a str, &'a str), HashSet<&str>>,
    ) -> Vec<FunnelRow> {
        let mut rows = BTreeMap::new();
        let channel_of =
            |pair: &(u32, u32)| self.checkout_of.get(pair).map(|&c| self.channels.name(c));
        for pair in &self.viewed {
            funnel_step(&mut rows, self.skus.name(pair.0), channel_of(pair), |r| {
                r.views += 1
            });
        }
        for pair in &self.carted {
            funnel_step(&mut rows, self.skus.name(pair.0), channel_of(pair), |r| {
                r.carts += 1
            });
        }
        for (&(sku, _who), &channel) in &self.checkout_of {
            let channel = Some(self.channels.name(channel));
            funnel_step(&mut rows, self.skus.name(sku), channel, |r| {
                r.checkouts += 1
            });
        }
        for (&(sku, channel), people) in payers {
            for _ in people {
                funnel_step(&mut rows, sku, Some(channel), |r| r.paid += 1);
            }
        }
        rows.into_values().collect()
    }
}

/// Applies `f` to the funnel row of (`sku`, `channel`), created empty on first use.
fn funnel_step<'a>(
    rows: &mut BTreeMap<(&'a str, Option<&'a str>), FunnelRow>,
    sku: &'a str,
    channel: Option<&'a str>,
    f: fn(&mut FunnelRow),
) {
    let row = rows.entry((sku, channel)).or_insert_with(|| FunnelRow {
        sku: sku.to_owned(),
        channel: channel.map(str::to_owned),
        ..FunnelRow::default()
    });
    f(row);
}

/// A run of a subscription's segments, each beginning where the one before ended (a renewal,
/// an upgrade or a trial paid for in time continues it): its start, end and first plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stretch<'a> {
    /// Start of the first segment, Unix seconds.
    pub start: i64,
    /// End of the last segment, Unix seconds (exclusive).
    pub end: i64,
    /// The plan the stretch began with.
    pub plan: &'a str,
}

/// The stretches of covered time of `segments` (in order, never overlapping, as
/// [`crate::domain::subscription::Subscription`] keeps them). A stretch's start is a
/// subscription start and its end, once passed, a lapse: a renewal never shows as either.
pub fn stretches(segments: &[Segment]) -> Vec<Stretch<'_>> {
    let mut out: Vec<Stretch<'_>> = Vec::new();
    for s in segments {
        match out.last_mut() {
            Some(last) if last.end == s.start => last.end = s.end,
            _ => out.push(Stretch {
                start: s.start,
                end: s.end,
                plan: s.plan.as_str(),
            }),
        }
    }
    out
}

/// The China date `days` after `date` (`yyyy-MM-dd`), or `None` for a malformed date.
pub fn add_days(date: &str, days: i64) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date, &format).ok()?;
    let d = d.checked_add(time::Duration::days(days))?;
    d.format(&format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(name: &str, props: Value) -> Value {
        json!({"name": name, "at": 1_733_370_000_000_i64, "props": props})
    }

    #[test]
    fn every_schema_event_is_accepted_with_its_props_and_unknown_props_go() {
        let good = [
            ev(
                "page_view",
                json!({"page": "pages/index/index", "durationMs": 0}),
            ),
            ev("page_view", json!({"page": "p"})),
            ev("product_view", json!({"sku": "tea-01", "colour": "green"})),
            ev("add_to_cart", json!({"sku": "tea-01", "qty": 999})),
            ev(
                "checkout_start",
                json!({"skus": ["a", "b"], "channel": "xpay"}),
            ),
            ev(
                "payment_result",
                json!({"orderId": "o1", "ok": false, "channel": "wxpay"}),
            ),
            ev("share", json!({"page": "p"})),
            ev("paywall_view", json!({"contentId": "c1"})),
            ev("paywall_unlock", json!({"contentId": "c1"})),
            ev("post_publish", json!({})),
            json!({"name": "post_publish"}),
        ];
        for e in &good {
            let t = check_event(e).unwrap_or_else(|r| panic!("{e}: {r:?}"));
            assert!(!t.props.contains_key("colour"));
        }
        assert_eq!(good.len(), 11);
        assert_eq!(event_names().count(), 9);
    }

    #[test]
    fn wrong_types_ranges_and_sizes_are_dropped_with_their_reason() {
        let cases = [
            (ev("nope", json!({})), DropReason::UnknownEvent),
            (json!({"name": 3}), DropReason::BadType),
            (json!([1]), DropReason::BadType),
            (
                json!({"name": "share", "at": "now", "props": {"page": "p"}}),
                DropReason::BadType,
            ),
            (
                json!({"name": "share", "props": "page"}),
                DropReason::BadType,
            ),
            (ev("share", json!({})), DropReason::BadType),
            (
                ev("page_view", json!({"page": "x".repeat(129)})),
                DropReason::BadType,
            ),
            (
                ev("page_view", json!({"page": "p", "durationMs": -1})),
                DropReason::BadType,
            ),
            (
                ev("page_view", json!({"page": "p", "durationMs": 1.5})),
                DropReason::BadType,
            ),
            (
                ev("add_to_cart", json!({"sku": "s", "qty": 1000})),
                DropReason::BadType,
            ),
            (
                ev("checkout_start", json!({"skus": ["a"], "channel": "cash"})),
                DropReason::BadType,
            ),
            (
                ev(
                    "checkout_start",
                    json!({"skus": vec!["a"; 51], "channel": "wxpay"}),
                ),
                DropReason::BadType,
            ),
            (
                ev(
                    "payment_result",
                    json!({"orderId": "o", "ok": "yes", "channel": "wxpay"}),
                ),
                DropReason::BadType,
            ),
            (
                ev("product_view", json!({"sku": "s", "pad": "x".repeat(1100)})),
                DropReason::TooLarge,
            ),
        ];
        for (e, reason) in cases {
            assert_eq!(check_event(&e), Err(reason), "{e}");
        }
    }

    #[test]
    fn a_batch_keeps_fifty_events_and_counts_the_rest() {
        let events: Vec<Value> = (0..53)
            .map(|i| ev("product_view", json!({"sku": format!("s{i}")})))
            .collect();
        let batch = parse_batch(&json!({"events": events}));
        assert_eq!(batch.events.len(), 50);
        assert_eq!(batch.dropped, Dropped::from([(DropReason::BatchCap, 3)]));
        // Over 64 KB: every event is too large, nothing is kept.
        let big: Vec<Value> = (0..40)
            .map(|_| ev("product_view", json!({"sku": "s", "pad": "x".repeat(1000)})))
            .collect();
        let batch = parse_batch(&json!({"events": big, "pad": "y".repeat(30_000)}));
        assert!(batch.events.is_empty());
        assert_eq!(batch.dropped, Dropped::from([(DropReason::TooLarge, 40)]));
        // No list at all.
        assert_eq!(
            parse_batch(&json!("x")).dropped,
            Dropped::from([(DropReason::BadType, 1)])
        );
        assert_eq!(
            dropped_view(&Dropped::from([(DropReason::BatchCap, 3)])),
            json!({"batch_cap": 3})
        );
    }

    #[test]
    fn the_minute_budget_allows_what_is_left() {
        assert_eq!(within_minute(0, 50), 50);
        assert_eq!(within_minute(100, 50), 20);
        assert_eq!(within_minute(120, 5), 0);
        assert_eq!(within_minute(500, 5), 0);
    }

    #[test]
    fn stretches_join_segments_that_continue_and_split_at_gaps() {
        let seg = |plan: &str, start, end, trial| Segment {
            plan: plan.into(),
            start,
            end,
            trial,
        };
        // A trial paid for in time, an upgrade inside the paid time, then a gap and a
        // restart.
        let segments = [
            seg("pro", 0, 10, true),
            seg("pro", 10, 40, false),
            seg("max", 40, 50, false),
            seg("pro", 70, 100, false),
        ];
        let s = stretches(&segments);
        let edges: Vec<(i64, i64, &str)> = s.iter().map(|s| (s.start, s.end, s.plan)).collect();
        assert_eq!(edges, [(0, 50, "pro"), (70, 100, "pro")]);
        assert!(stretches(&[]).is_empty());
    }

    #[test]
    fn every_fact_kind_is_counted_on_its_day_row() {
        let mut facts = Vec::new();
        for (kind, n) in [
            (FactKind::Granted, 3),
            (FactKind::Shipped, 2),
            (FactKind::SubscriptionStarted, 1),
            (FactKind::SubscriptionRenewed, 4),
            (FactKind::SubscriptionLapsed, 5),
        ] {
            for i in 0..n {
                let mut f = paid("a", &format!("o{i}"), "wxpay", &[]);
                f.kind = kind;
                facts.push(f);
            }
        }
        let (day, _) = aggregate_day("2026-12-04", &[], &facts, &HashSet::new());
        assert_eq!(
            (
                day.granted,
                day.shipped,
                day.subscriptions_started,
                day.subscriptions_renewed,
                day.subscriptions_lapsed
            ),
            (3, 2, 1, 4, 5)
        );
        // None of them is money or a buyer.
        assert_eq!((day.paid, day.new_buyers), (0, 0));
        assert_eq!(day.revenue, PerChannel::default());
        assert_eq!(day.facts, 15);
        // Stored before these figures existed: they read as zero.
        let old: DayAggregate = serde_json::from_value(json!({"date": "2026-12-01",
            "events": 0, "facts": 0, "visitors": 0, "pageViews": 0, "productViews": 0,
            "carts": 0, "checkouts": 0, "paid": 0, "revenue": {"wxpay": 0, "xpay": 0},
            "refunds": {"wxpay": 0, "xpay": 0}, "newBuyers": 0, "returningBuyers": 0,
            "paywallViews": 0, "paywallUnlocks": 0, "funnel": [], "products": [],
            "content": []}))
        .unwrap();
        assert_eq!((old.granted, old.subscriptions_lapsed), (0, 0));
    }

    #[test]
    fn days_are_added_across_months_and_years() {
        assert_eq!(add_days("2026-12-31", 1).as_deref(), Some("2027-01-01"));
        assert_eq!(add_days("2026-03-01", -1).as_deref(), Some("2026-02-28"));
        assert_eq!(add_days("2026-13-01", 1), None);
    }

    fn batch(openid: &str, events: &[Value]) -> RawBatch {
        RawBatch {
            openid: openid.into(),
            events: events.iter().map(|e| check_event(e).unwrap()).collect(),
        }
    }

    fn paid(openid: &str, order: &str, channel: &str, lines: &[(&str, u32, i64)]) -> Fact {
        let items: Vec<FactLine> = lines
            .iter()
            .map(|(sku, qty, fen)| FactLine {
                sku: (*sku).into(),
                qty: *qty,
                fen: *fen,
            })
            .collect();
        Fact {
            kind: FactKind::Paid,
            day: "2026-12-04".into(),
            at: 0,
            openid: openid.into(),
            order_id: order.into(),
            channel: channel.into(),
            amount_fen: items.iter().map(|l| l.fen).sum(),
            items,
        }
    }

    #[test]
    fn a_day_aggregates_people_per_funnel_step_and_money_from_facts_only() {
        let view = |sku: &str| ev("product_view", json!({"sku": sku}));
        let cart = |sku: &str| ev("add_to_cart", json!({"sku": sku, "qty": 1}));
        let checkout =
            |sku: &str, ch: &str| ev("checkout_start", json!({"skus": [sku], "channel": ch}));
        let raw = [
            // a: views twice, carts, checks out with wxpay, pays.
            batch(
                "a",
                &[
                    view("tea"),
                    view("tea"),
                    cart("tea"),
                    checkout("tea", "wxpay"),
                ],
            ),
            // b: views, carts, abandons.
            batch("b", &[view("tea"), cart("tea")]),
            // c: views the paywall, unlocks, checks out with xpay and claims it paid (ignored).
            batch(
                "c",
                &[
                    ev("paywall_view", json!({"contentId": "c1"})),
                    ev("paywall_unlock", json!({"contentId": "c1"})),
                    checkout("coin", "xpay"),
                    ev(
                        "payment_result",
                        json!({"orderId": "x", "ok": true, "channel": "xpay"}),
                    ),
                ],
            ),
            batch("d", &[]),
        ];
        let mut refund = paid("a", "o-a", "wxpay", &[]);
        refund.kind = FactKind::Refunded;
        refund.amount_fen = 300;
        let facts = [
            paid("a", "o-a", "wxpay", &[("tea", 2, 1000)]),
            paid("e", "o-e", "xpay", &[("coin", 1, 600), ("tea", 1, 500)]),
            refund,
        ];
        let returning = HashSet::from(["e".to_owned()]);
        let (day, active) = aggregate_day("2026-12-04", &raw, &facts, &returning);
        assert_eq!(active, BTreeSet::from(["a".into(), "b".into(), "c".into()]));
        assert_eq!(day.visitors, 3);
        assert_eq!(day.events, 10);
        assert_eq!(day.product_views, 3);
        assert_eq!(day.carts, 2);
        assert_eq!(day.checkouts, 2);
        assert_eq!(day.paid, 2);
        assert_eq!(
            day.revenue,
            PerChannel {
                wxpay: 700,
                xpay: 1100
            }
        );
        assert_eq!(
            day.refunds,
            PerChannel {
                wxpay: 300,
                xpay: 0
            }
        );
        assert_eq!((day.new_buyers, day.returning_buyers), (1, 1));
        assert_eq!((day.paywall_views, day.paywall_unlocks), (1, 1));
        let row = |sku: &str, ch: Option<&str>, v, c, k, p| FunnelRow {
            sku: sku.into(),
            channel: ch.map(Into::into),
            views: v,
            carts: c,
            checkouts: k,
            paid: p,
        };
        assert_eq!(
            day.funnel,
            vec![
                row("coin", Some("xpay"), 0, 0, 1, 1),
                row("tea", None, 1, 1, 0, 0),
                row("tea", Some("wxpay"), 1, 1, 1, 1),
                row("tea", Some("xpay"), 0, 0, 0, 1),
            ]
        );
        assert_eq!(
            day.products,
            vec![
                ProductRow {
                    sku: "coin".into(),
                    paid: 1,
                    revenue: 600
                },
                ProductRow {
                    sku: "tea".into(),
                    paid: 2,
                    revenue: 1500
                },
            ]
        );
        assert_eq!(
            day.content,
            vec![ContentRow {
                content_id: "c1".into(),
                views: 1,
                unlocks: 1
            }]
        );
    }

    /// Hostile `track` data: any JSON shape, deep nesting, huge strings, many events.
    fn hostile() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::String),
            (0usize..3000).prop_map(|n| json!("x".repeat(n))),
            proptest::sample::select(event_names().collect::<Vec<_>>()).prop_map(|n| json!(n)),
        ];
        let value = leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(
                    proptest::sample::select(vec![
                        "name",
                        "at",
                        "props",
                        "page",
                        "sku",
                        "qty",
                        "skus",
                        "channel",
                        "orderId",
                        "ok",
                        "contentId",
                        "postId",
                        "durationMs",
                        "x",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![
            value.clone(),
            proptest::collection::vec(value.clone(), 0..80)
                .prop_map(|events| json!({"events": events})),
            (proptest::collection::vec(value, 0..4), 0usize..70_000)
                .prop_map(|(events, pad)| json!({"events": events, "pad": "p".repeat(pad)})),
        ]
    }

    proptest! {
        #![proptest_config(crate::fuzzing::cases(500))]

        /// Any data: no panic, every event is either kept (and valid) or counted once, at most
        /// fifty are kept, and a kept event's props fit the size cap.
        #[test]
        fn fuzz_track_batch(data in hostile()) {
            let batch = parse_batch(&data);
            let dropped: u32 = batch.dropped.values().sum();
            let sent = data.get("events").and_then(Value::as_array).map(Vec::len);
            match sent {
                Some(n) => prop_assert_eq!(batch.events.len() + dropped as usize, n),
                None => prop_assert_eq!((batch.events.len(), dropped), (0, 1)),
            }
            prop_assert!(batch.events.len() <= MAX_BATCH);
            for e in &batch.events {
                prop_assert!(serialized_len(&e.props) <= MAX_PROPS_BYTES);
                let again = check_event(&serde_json::to_value(e).unwrap());
                prop_assert_eq!(again.as_ref(), Ok(e));
            }
        }

        /// Raw text through the JSON parser (which bounds depth) and then the batch parser.
        #[test]
        fn fuzz_track_batch_text(text in crate::fuzzing::glued(crate::fuzzing::JSON_PARTS)) {
            if let Ok(data) = serde_json::from_str::<Value>(&text) {
                let _ = parse_batch(&json!({"events": [data]}));
            }
        }
    }
}
