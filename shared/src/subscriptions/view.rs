//! The API's `subscription` shape (`docs/api.md`), derived at an instant.

use serde_json::{Value, json};

use super::Plans;
use crate::domain::subscription::Subscription;

/// The API `subscription` shape of `sub` at `now`.
pub fn view(sub: &Subscription, now: i64, plans: &Plans) -> Value {
    let lookup = plans.lookup();
    let state = sub.state(now, &lookup);
    let plan = sub
        .plan_at(now, &lookup)
        .or_else(|| sub.segments.last().map(|s| s.plan.clone()))
        .unwrap_or_else(|| sub.renew_plan.clone());
    let period_end = sub.period_end();
    // Without a renewal, access ends at the period end when canceled, else after the
    // plan's past-due and grace days.
    let access_ends = period_end.map(|end| {
        if sub.canceled_at.is_some() {
            end
        } else {
            let extra = sub
                .segments
                .last()
                .and_then(|s| plans.get(&s.plan))
                .map_or(0, |p| i64::from(p.past_due_days + p.grace_days) * 86_400);
            end + extra
        }
    });
    let mut v = json!({
        "plan": plan,
        "state": state,
        "periodEndAt": period_end,
        "accessEndsAt": access_ends,
        "renewPlan": sub.renew_plan,
    });
    if let Some(at) = sub.canceled_at {
        v["canceledAt"] = json!(at);
    }
    if let Some(p) = plans.get(&plan) {
        v["planTitle"] = json!(p.title);
        v["tier"] = json!(p.tier);
        if let Some(seats) = p.seats {
            v["seats"] = json!(seats);
        }
    }
    v
}
