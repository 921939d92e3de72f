//! The CRM customer record: what one customer is worth and where they are, computed from
//! what the owning collections hold (paid orders, settled refunds, the user, memberships,
//! subscriptions). Pure: `wemint::crm` loads the inputs, calls [`customer`], and stores the
//! result only when it differs from the stored record.
//!
//! Also the CSV rows of the export ([`csv()`]): every text cell that a spreadsheet would read
//! as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) is prefixed with `'`.

use serde::{Deserialize, Serialize};

/// Paid net of refunds from which a customer is tagged `high_value` (fen).
pub const HIGH_VALUE_FEN: i64 = 50_000;
/// Days without a login or an order after which a customer is tagged `dormant`.
pub const DORMANT_DAYS: i64 = 30;

/// One customer, as stored in `crm_customers` (without its bookkeeping) and pushed to the CRM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// The Mini Program openid.
    pub openid: String,
    /// The UnionID, once WeChat gave one.
    #[serde(default)]
    pub unionid: Option<String>,
    /// Unix seconds of the first paid order.
    #[serde(default)]
    pub first_order_at: Option<i64>,
    /// Unix seconds of the latest paid order.
    #[serde(default)]
    pub last_order_at: Option<i64>,
    /// Paid orders (refunded ones included: they were paid).
    #[serde(default)]
    pub order_count: i64,
    /// What the paid orders were worth, before refunds (fen).
    #[serde(default)]
    pub lifetime_value_fen: i64,
    /// Refunds settled (fen).
    #[serde(default)]
    pub refunds_fen: i64,
    /// The plan in force now (personal, else the tenant's).
    #[serde(default)]
    pub plan: Option<String>,
    /// The tenant the customer works in (their active tenant while a member, else their
    /// oldest membership).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Unix seconds of the latest login or paid order.
    #[serde(default)]
    pub last_seen_at: Option<i64>,
    /// Derived tags ([`tags`]), sorted.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A paid order, as far as the record needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaidOrder {
    /// When it was paid.
    pub paid_at: i64,
    /// Its total (fen).
    pub total_fen: i64,
}

/// A subscription's plan and the end of its covered time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanPeriod {
    /// The plan id.
    pub plan: String,
    /// End of the covered time (Unix seconds).
    pub period_end_at: i64,
}

/// Everything a record is computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The openid.
    pub openid: String,
    /// From the user document.
    pub unionid: Option<String>,
    /// From the user document.
    pub last_login_at: Option<i64>,
    /// From the user document.
    pub active_tenant: Option<String>,
    /// Paid orders.
    pub orders: Vec<PaidOrder>,
    /// Amounts of the settled refunds of those orders (fen).
    pub refunds: Vec<i64>,
    /// Tenants the customer is a member of, oldest membership first.
    pub memberships: Vec<String>,
    /// The personal subscription, if any.
    pub personal: Option<PlanPeriod>,
    /// The subscription of the chosen tenant ([`chosen_tenant`]), if any.
    pub tenant_plan: Option<PlanPeriod>,
}

/// The tenant a record names: the active tenant while still a member, else the oldest
/// membership.
pub fn chosen_tenant(active: Option<&str>, memberships: &[String]) -> Option<String> {
    active
        .filter(|a| memberships.iter().any(|m| m == a))
        .map(str::to_owned)
        .or_else(|| memberships.first().cloned())
}

/// The record at `now`. Sums saturate (a corrupt amount cannot wrap).
pub fn customer(inputs: &Inputs, now: i64) -> Customer {
    let first_order_at = inputs.orders.iter().map(|o| o.paid_at).min();
    let last_order_at = inputs.orders.iter().map(|o| o.paid_at).max();
    let lifetime_value_fen = inputs
        .orders
        .iter()
        .fold(0i64, |sum, o| sum.saturating_add(o.total_fen.max(0)));
    let refunds_fen = inputs
        .refunds
        .iter()
        .fold(0i64, |sum, r| sum.saturating_add((*r).max(0)));
    let active = |p: &Option<PlanPeriod>| {
        p.as_ref()
            .filter(|p| p.period_end_at > now)
            .map(|p| p.plan.clone())
    };
    let plan = active(&inputs.personal).or_else(|| active(&inputs.tenant_plan));
    let lapsed = plan.is_none() && (inputs.personal.is_some() || inputs.tenant_plan.is_some());
    let last_seen_at = match (inputs.last_login_at, last_order_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let mut record = Customer {
        openid: inputs.openid.clone(),
        unionid: inputs.unionid.clone().filter(|u| !u.is_empty()),
        first_order_at,
        last_order_at,
        order_count: i64::try_from(inputs.orders.len()).unwrap_or(i64::MAX),
        lifetime_value_fen,
        refunds_fen,
        plan,
        tenant: chosen_tenant(inputs.active_tenant.as_deref(), &inputs.memberships),
        last_seen_at,
        tags: Vec::new(),
    };
    record.tags = tags(&record, lapsed, now);
    record
}

/// The tags of a record, sorted: `buyer` (one paid order or more), `repeat_buyer` (two or
/// more), `high_value` (paid net of refunds at least [`HIGH_VALUE_FEN`]), `refunded` (any
/// refund settled), `subscriber` (a plan in force), `lapsed` (a subscription that ended),
/// `team` (a tenant member), `dormant` (not seen for [`DORMANT_DAYS`]).
pub fn tags(record: &Customer, lapsed: bool, now: i64) -> Vec<String> {
    let mut tags = Vec::new();
    if record.order_count >= 1 {
        tags.push("buyer");
    }
    if record.order_count >= 2 {
        tags.push("repeat_buyer");
    }
    if record.lifetime_value_fen.saturating_sub(record.refunds_fen) >= HIGH_VALUE_FEN {
        tags.push("high_value");
    }
    if record.refunds_fen > 0 {
        tags.push("refunded");
    }
    if record.plan.is_some() {
        tags.push("subscriber");
    }
    if lapsed {
        tags.push("lapsed");
    }
    if record.tenant.is_some() {
        tags.push("team");
    }
    if record
        .last_seen_at
        .is_some_and(|seen| now.saturating_sub(seen) >= DORMANT_DAYS * 86_400)
    {
        tags.push("dormant");
    }
    let mut tags: Vec<String> = tags.into_iter().map(str::to_owned).collect();
    tags.sort();
    tags
}

/// The CSV header of the export (the contract's column names).
pub const CSV_HEADER: [&str; 11] = [
    "openid",
    "unionid",
    "firstOrderAt",
    "lastOrderAt",
    "orderCount",
    "lifetimeValueFen",
    "refundsFen",
    "plan",
    "tenant",
    "lastSeenAt",
    "tags",
];

/// A text cell made safe for spreadsheets: a leading `=`, `+`, `-`, `@`, tab or carriage
/// return would start a formula, so such cells get a leading `'`.
pub fn safe_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A Unix time as `yyyy-MM-ddTHH:mm:ss+08:00` (China time); empty for none.
pub fn china_time(unix: Option<i64>) -> String {
    let Some(unix) = unix else {
        return String::new();
    };
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            let t = t.to_offset(offset);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+08:00",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default()
}

/// The CSV row of a record (times in China time, amounts in fen, tags joined with `;`).
pub fn csv_row(c: &Customer) -> Vec<String> {
    let text = |v: &Option<String>| safe_cell(v.as_deref().unwrap_or_default());
    vec![
        safe_cell(&c.openid),
        text(&c.unionid),
        china_time(c.first_order_at),
        china_time(c.last_order_at),
        c.order_count.to_string(),
        c.lifetime_value_fen.to_string(),
        c.refunds_fen.to_string(),
        text(&c.plan),
        text(&c.tenant),
        china_time(c.last_seen_at),
        safe_cell(&c.tags.join(";")),
    ]
}

/// The export: the header and one row per record, RFC 4180 quoting (`csv` crate).
pub fn csv(records: &[Customer]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut ok = w.write_record(CSV_HEADER).is_ok();
    for r in records {
        ok &= w.write_record(csv_row(r)).is_ok();
    }
    debug_assert!(ok, "writing CSV to memory cannot fail");
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn inputs() -> Inputs {
        Inputs {
            openid: "o1".into(),
            unionid: Some("u1".into()),
            last_login_at: Some(NOW - 100),
            active_tenant: Some("t2".into()),
            orders: vec![
                PaidOrder {
                    paid_at: NOW - 5000,
                    total_fen: 4900,
                },
                PaidOrder {
                    paid_at: NOW - 50,
                    total_fen: 49_900,
                },
            ],
            refunds: vec![4900],
            memberships: vec!["t1".into(), "t2".into()],
            personal: Some(PlanPeriod {
                plan: "pro".into(),
                period_end_at: NOW - 1,
            }),
            tenant_plan: Some(PlanPeriod {
                plan: "team".into(),
                period_end_at: NOW + 86_400,
            }),
        }
    }

    #[test]
    fn a_record_sums_orders_and_refunds_and_picks_the_plan_in_force() {
        let c = customer(&inputs(), NOW);
        assert_eq!(c.first_order_at, Some(NOW - 5000));
        assert_eq!(c.last_order_at, Some(NOW - 50));
        assert_eq!(c.order_count, 2);
        assert_eq!(c.lifetime_value_fen, 54_800);
        assert_eq!(c.refunds_fen, 4900);
        // The personal plan ended a second ago: the tenant's is in force.
        assert_eq!(c.plan.as_deref(), Some("team"));
        assert_eq!(c.tenant.as_deref(), Some("t2"));
        assert_eq!(c.last_seen_at, Some(NOW - 50));
        // 54800 - 4900 = 49900 < 50000: not high value.
        assert_eq!(
            c.tags,
            ["buyer", "refunded", "repeat_buyer", "subscriber", "team"]
        );
    }

    #[test]
    fn lapsed_dormant_and_a_tenant_left() {
        let mut i = inputs();
        i.tenant_plan = None;
        i.orders.truncate(1);
        i.refunds.clear();
        i.last_login_at = Some(NOW - 40 * 86_400);
        i.orders[0].paid_at = NOW - 31 * 86_400;
        i.active_tenant = Some("gone".into());
        let c = customer(&i, NOW);
        assert_eq!(c.plan, None);
        assert_eq!(c.tenant.as_deref(), Some("t1"));
        assert_eq!(c.tags, ["buyer", "dormant", "lapsed", "team"]);
        let nobody = customer(
            &Inputs {
                openid: "o2".into(),
                unionid: Some(String::new()),
                ..Inputs::default()
            },
            NOW,
        );
        assert_eq!(nobody.unionid, None);
        assert!(nobody.tags.is_empty());
        assert_eq!(nobody.last_seen_at, None);
    }

    #[test]
    fn high_value_counts_net_of_refunds() {
        let mut i = inputs();
        i.refunds = vec![4800];
        assert!(customer(&i, NOW).tags.contains(&"high_value".to_owned()));
    }

    #[test]
    fn cells_that_start_a_formula_are_defused() {
        for bad in ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(safe_cell(bad), format!("'{bad}"));
        }
        assert_eq!(safe_cell("o_abc"), "o_abc");
        assert_eq!(safe_cell(""), "");
    }

    #[test]
    fn csv_quotes_and_defuses() {
        let c = Customer {
            openid: "o,1".into(),
            unionid: Some("=HYPERLINK(\"x\")".into()),
            first_order_at: Some(1_733_300_000),
            order_count: 1,
            lifetime_value_fen: 4900,
            tags: vec!["buyer".into(), "team".into()],
            ..Customer::default()
        };
        let text = csv(&[c]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "openid,unionid,firstOrderAt,lastOrderAt,orderCount,lifetimeValueFen,refundsFen,plan,tenant,lastSeenAt,tags"
            )
        );
        // 1733300000 = 2024-12-04T08:13:20Z = 16:13:20 in China.
        assert_eq!(
            lines.next(),
            Some(
                "\"o,1\",\"'=HYPERLINK(\"\"x\"\")\",2024-12-04T16:13:20+08:00,,1,4900,0,,,,buyer;team"
            )
        );
        assert_eq!(lines.next(), None);
    }
}
