//! Subscriptions: plans with a period and a price, renewals that extend from the current
//! period end, cancellation with access until the end, upgrades now with proration,
//! downgrades at the period end.
//!
//! The stored [`Subscription`] is a list of paid (or trial) segments of time, each with its
//! plan. Everything else — the state, whether there is access, which plan applies — is derived
//! from the segments and the current time, so access can never disagree with the state and an
//! expiry takes effect at exactly the right instant without a job having to run.

use serde::{Deserialize, Serialize};

use super::money::{Fen, MoneyError};

const DAY: i64 = 86_400;

/// A plan that can be subscribed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Plan id, referenced by products and contents.
    pub id: String,
    /// Name shown to users.
    pub title: String,
    /// Higher tiers include lower ones; a move to a higher tier is an upgrade.
    pub tier: u32,
    /// Length of one paid period in days.
    pub period_days: u32,
    /// Price of one period in fen.
    pub price_fen: Fen,
    /// Free days given on the first subscription (0 for none).
    #[serde(default)]
    pub trial_days: u32,
    /// Days after the period end during which the renewal is due and access continues.
    #[serde(default)]
    pub past_due_days: u32,
    /// Days after the past-due window during which access continues before expiry.
    #[serde(default)]
    pub grace_days: u32,
    /// Seats for a tenant plan (members allowed); `None` for personal plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
}

impl Plan {
    /// Length of one period in seconds.
    pub fn period_secs(&self) -> i64 {
        i64::from(self.period_days) * DAY
    }

    fn after_end_secs(&self) -> (i64, i64) {
        (
            i64::from(self.past_due_days) * DAY,
            i64::from(self.grace_days) * DAY,
        )
    }
}

/// Where a subscription is, derived from its segments and the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    /// In a free trial.
    Trial,
    /// Paid and running.
    Active,
    /// The period ended and the renewal is due; access continues.
    PastDue,
    /// Renewal overdue, last days of access.
    Grace,
    /// No access.
    Expired,
    /// Canceled by the user; access until the paid period ends.
    Canceled,
}

impl SubscriptionState {
    /// Whether the state grants access.
    pub fn has_access(self) -> bool {
        !matches!(self, SubscriptionState::Expired)
    }
}

/// A stretch of time covered by one plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// Plan covering the stretch.
    pub plan: String,
    /// Start, Unix seconds, inclusive.
    pub start: i64,
    /// End, Unix seconds, exclusive.
    pub end: i64,
    /// A free trial stretch (nothing paid for it).
    #[serde(default)]
    pub trial: bool,
}

/// One subscriber's subscription, as stored in `subscriptions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Covered time, in order, never overlapping.
    pub segments: Vec<Segment>,
    /// When the user canceled; access continues to the end of the paid time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_at: Option<i64>,
    /// The plan the next renewal buys (a downgrade takes effect at the period end this way).
    pub renew_plan: String,
    /// Orders already applied, so a duplicated notification changes nothing.
    #[serde(default)]
    pub applied_orders: Vec<String>,
    /// Applied orders refunded and taken back (each at most once; they stay in
    /// `applied_orders`, so a late duplicate notification cannot apply them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_orders: Vec<String>,
}

/// Why an operation on a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The referenced plan is not the one expected.
    #[error("plan {0} is not known")]
    UnknownPlan(String),
    /// An upgrade must go to a higher tier.
    #[error("plan change to {0} is not an upgrade")]
    NotAnUpgrade(String),
    /// A downgrade must go to a lower tier.
    #[error("plan change to {0} is not a downgrade")]
    NotADowngrade(String),
    /// Nothing is running to change.
    #[error("subscription has expired")]
    Expired,
    /// The paid time is over (past due or in grace): there is nothing left to upgrade.
    #[error("the paid period has ended; renew at the new plan instead")]
    PeriodEnded,
    /// Amount arithmetic failed.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// What applying a paid order did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The paid time now ends at `until`.
    Extended {
        /// Start of the newly paid stretch.
        from: i64,
        /// End of the paid time.
        until: i64,
    },
    /// The window `[from, until)` moved to a higher plan; the period end did not move.
    Upgraded {
        /// Start of the upgraded time.
        from: i64,
        /// End of the upgraded time.
        until: i64,
    },
    /// The order was applied before; nothing changed.
    AlreadyApplied,
}

/// What taking a refunded order back did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Taken back; the covered time now ends at `period_end` (`None`: nothing left).
    Done {
        /// End of the covered time after the change.
        period_end: Option<i64>,
    },
    /// The order never changed this subscription (nothing to take back).
    NotApplied,
    /// Taken back before; nothing changed.
    AlreadyRevoked,
}

/// The price of an upgrade and the window of time it buys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeQuote {
    /// The plan moved to.
    pub plan: String,
    /// The plan in force when quoted.
    pub from_plan: String,
    /// What to pay, fen: zero exactly when only trial time is left, at least 1 otherwise.
    pub amount: Fen,
    /// Start of the upgraded time (the quote time).
    pub from: i64,
    /// End of the upgraded time (the period end when quoted).
    pub until: i64,
}

impl Subscription {
    /// A new subscription starting at `now`: a trial when the plan offers one and
    /// `with_trial`, otherwise nothing is covered until the first paid order is applied.
    pub fn start(plan: &Plan, now: i64, with_trial: bool) -> Self {
        let segments = if with_trial && plan.trial_days > 0 {
            vec![Segment {
                plan: plan.id.clone(),
                start: now,
                end: now + i64::from(plan.trial_days) * DAY,
                trial: true,
            }]
        } else {
            Vec::new()
        };
        Subscription {
            segments,
            canceled_at: None,
            renew_plan: plan.id.clone(),
            applied_orders: Vec::new(),
            revoked_orders: Vec::new(),
        }
    }

    /// End of the covered time (the period end), or `None` before anything was covered.
    pub fn period_end(&self) -> Option<i64> {
        self.segments.last().map(|s| s.end)
    }

    /// The segment covering `at`, if any.
    pub fn segment_at(&self, at: i64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.start <= at && at < s.end)
    }

    /// The plan that applies at `at`: the covering segment's, or the last one's while past
    /// due or in grace.
    pub fn plan_at(&self, at: i64, plans: &impl Fn(&str) -> Option<Plan>) -> Option<String> {
        if !self.state(at, plans).has_access() {
            return None;
        }
        self.segment_at(at)
            .or(self.segments.last())
            .map(|s| s.plan.clone())
    }

    /// The state at `now`.
    pub fn state(&self, now: i64, plans: &impl Fn(&str) -> Option<Plan>) -> SubscriptionState {
        let Some(last) = self.segments.last() else {
            return SubscriptionState::Expired;
        };
        if let Some(segment) = self.segment_at(now) {
            return if self.canceled_at.is_some() {
                SubscriptionState::Canceled
            } else if segment.trial {
                SubscriptionState::Trial
            } else {
                SubscriptionState::Active
            };
        }
        if now < last.end {
            // Inside a gap left by an earlier expiry: that time was not paid for.
            return SubscriptionState::Expired;
        }
        if self.canceled_at.is_some() {
            return SubscriptionState::Expired;
        }
        let (past_due, grace) = plans(&last.plan)
            .map(|p| p.after_end_secs())
            .unwrap_or((0, 0));
        if now < last.end + past_due {
            SubscriptionState::PastDue
        } else if now < last.end + past_due + grace {
            SubscriptionState::Grace
        } else {
            SubscriptionState::Expired
        }
    }

    /// Applies a paid period of `plan` bought by `order_id` and paid at `paid_at`.
    ///
    /// While the subscription still has access at `paid_at` (including past due and grace),
    /// the new period starts at the current period end, so no paid day is lost; after expiry
    /// it starts at `paid_at`. A renewal also lifts a cancellation.
    pub fn apply_renewal(
        &mut self,
        plan: &Plan,
        order_id: &str,
        paid_at: i64,
        plans: &impl Fn(&str) -> Option<Plan>,
    ) -> Applied {
        if self.applied_orders.iter().any(|o| o == order_id) {
            return Applied::AlreadyApplied;
        }
        let state = self.state(paid_at, plans);
        let from = match self.period_end() {
            Some(end) if state.has_access() => end,
            _ => paid_at,
        };
        let until = from + plan.period_secs();
        self.push_segment(Segment {
            plan: plan.id.clone(),
            start: from,
            end: until,
            trial: false,
        });
        self.canceled_at = None;
        self.applied_orders.push(order_id.to_owned());
        Applied::Extended { from, until }
    }

    /// Cancels: no renewal is expected, access continues to the end of the paid time.
    pub fn cancel(&mut self, now: i64) {
        self.canceled_at.get_or_insert(now);
    }

    /// Takes a cancellation back while the paid time runs: renewals are expected again and
    /// past-due and grace days apply at the end. Refused once the canceled time has ended
    /// (there is nothing left to resume: buy a period instead).
    pub fn resume(
        &mut self,
        now: i64,
        plans: &impl Fn(&str) -> Option<Plan>,
    ) -> Result<(), SubscriptionError> {
        if !self.state(now, plans).has_access() {
            return Err(SubscriptionError::Expired);
        }
        self.canceled_at = None;
        Ok(())
    }

    /// What moving to the higher-tier plan `to` costs at `now`: for the rest of the covered
    /// time (`now` to the period end), each stretch on a lower tier costs the new plan's
    /// price for that time (rounded up) minus the unused value of what was paid for it
    /// (rounded down), never below 1 fen while any paid time is moved: only an upgrade of
    /// nothing but trial time costs nothing (trial time costs and credits nothing).
    ///
    /// The quote names its window; [`Subscription::apply_upgrade`] with the same window moves
    /// exactly the time that was paid for, however late the payment arrives.
    pub fn upgrade_quote(
        &self,
        to: &Plan,
        now: i64,
        plans: &impl Fn(&str) -> Option<Plan>,
    ) -> Result<UpgradeQuote, SubscriptionError> {
        let current = self.current_plan(now, plans)?;
        if to.tier <= current.tier {
            return Err(SubscriptionError::NotAnUpgrade(to.id.clone()));
        }
        let until = self.period_end().unwrap_or(now);
        if until <= now {
            return Err(SubscriptionError::PeriodEnded);
        }
        let mut cost = Fen::ZERO;
        let mut credit = Fen::ZERO;
        let mut paid_time = false;
        for (segment, old, start, end) in self.lower_tier_stretches(to, now, until, plans)? {
            if segment.trial {
                continue;
            }
            paid_time = true;
            let secs = end - start;
            credit = credit.checked_add(old.price_fen.mul_div_floor(secs, old.period_secs())?)?;
            cost = cost.checked_add(to.price_fen.mul_div_ceil(secs, to.period_secs())?)?;
        }
        let difference = cost.checked_sub(credit).unwrap_or(Fen::ZERO);
        // Paid time moves only through a paid order: when the credit covers the new plan (an
        // annual tier cheaper per second than a monthly one), the floor keeps the upgrade from
        // being free, so it cannot be applied without a payment.
        let amount = if paid_time {
            difference.max(Fen::new(1)?)
        } else {
            difference
        };
        Ok(UpgradeQuote {
            plan: to.id.clone(),
            from_plan: current.id,
            amount,
            from: now,
            until,
        })
    }

    /// Applies an upgrade to `to` bought by `order_id` for the window `[from, until)` (the
    /// quote's): every lower-tier stretch inside it moves to `to`; time outside it (a renewal
    /// paid since the quote, say) keeps its plan, and no day is added or removed. Future
    /// renewals buy `to`. Fails with [`SubscriptionError::NotAnUpgrade`] when nothing in the
    /// window is below `to` any more (another upgrade got there first).
    pub fn apply_upgrade(
        &mut self,
        to: &Plan,
        order_id: &str,
        from: i64,
        until: i64,
        plans: &impl Fn(&str) -> Option<Plan>,
    ) -> Result<Applied, SubscriptionError> {
        if self.applied_orders.iter().any(|o| o == order_id) {
            return Ok(Applied::AlreadyApplied);
        }
        if self
            .lower_tier_stretches(to, from, until, plans)?
            .is_empty()
        {
            return Err(SubscriptionError::NotAnUpgrade(to.id.clone()));
        }
        self.relabel(from, until, &to.id, |plan| {
            plans(plan).is_some_and(|p| p.tier < to.tier)
        });
        self.renew_plan = to.id.clone();
        self.applied_orders.push(order_id.to_owned());
        Ok(Applied::Upgraded { from, until })
    }

    /// The parts of segments inside `[from, until)` whose plan is below `to`'s tier, with
    /// that plan and the part's bounds.
    fn lower_tier_stretches(
        &self,
        to: &Plan,
        from: i64,
        until: i64,
        plans: &impl Fn(&str) -> Option<Plan>,
    ) -> Result<Vec<(&Segment, Plan, i64, i64)>, SubscriptionError> {
        let mut out = Vec::new();
        for segment in &self.segments {
            let (start, end) = (segment.start.max(from), segment.end.min(until));
            if start >= end {
                continue;
            }
            let plan = plans(&segment.plan)
                .ok_or_else(|| SubscriptionError::UnknownPlan(segment.plan.clone()))?;
            if plan.tier < to.tier {
                out.push((segment, plan, start, end));
            }
        }
        Ok(out)
    }

    /// Takes back the `secs` of paid time a refunded renewal order added, from the end of the
    /// covered time (the most recently bought days), never time before `now`: days already
    /// used stay used. Once per order, and only for an order that was applied.
    pub fn revoke_renewal(&mut self, order_id: &str, secs: i64, now: i64) -> Revoked {
        if let Some(done) = self.revocation_check(order_id) {
            return done;
        }
        let mut left = secs.max(0);
        while left > 0 {
            let Some(last) = self.segments.last_mut() else {
                break;
            };
            let cut = left.min(last.end - last.start.max(now));
            if cut <= 0 {
                break;
            }
            last.end -= cut;
            left -= cut;
            if last.end <= last.start {
                self.segments.pop();
            }
        }
        self.revoked_orders.push(order_id.to_owned());
        Revoked::Done {
            period_end: self.period_end(),
        }
    }

    /// Takes back a refunded upgrade: the part of its window `[from, until)` still to come
    /// (from `now`) that is on `to` goes back to `back_to`. Once per order, and only for an
    /// order that was applied (an upgrade refunded because it could not apply changes
    /// nothing).
    pub fn revoke_upgrade(
        &mut self,
        order_id: &str,
        to: &str,
        back_to: &str,
        window: (i64, i64),
        now: i64,
    ) -> Revoked {
        if let Some(done) = self.revocation_check(order_id) {
            return done;
        }
        self.relabel(window.0.max(now), window.1, back_to, |plan| plan == to);
        if self.renew_plan == to {
            self.renew_plan = back_to.to_owned();
        }
        self.revoked_orders.push(order_id.to_owned());
        Revoked::Done {
            period_end: self.period_end(),
        }
    }

    /// Puts the time inside `[from, until)` of every segment whose plan `matches` on
    /// `plan`, splitting segments at the window's edges; no second is added or removed.
    fn relabel(&mut self, from: i64, until: i64, plan: &str, matches: impl Fn(&str) -> bool) {
        let mut segments = Vec::with_capacity(self.segments.len() + 2);
        for segment in self.segments.drain(..) {
            let (start, end) = (segment.start.max(from), segment.end.min(until));
            if start >= end || !matches(&segment.plan) {
                segments.push(segment);
                continue;
            }
            segments.push(Segment {
                end: start,
                ..segment.clone()
            });
            segments.push(Segment {
                plan: plan.to_owned(),
                start,
                end,
                trial: segment.trial,
            });
            segments.push(Segment {
                start: end,
                ..segment
            });
        }
        for segment in segments {
            self.push_segment(segment);
        }
    }

    fn revocation_check(&self, order_id: &str) -> Option<Revoked> {
        if self.revoked_orders.iter().any(|o| o == order_id) {
            Some(Revoked::AlreadyRevoked)
        } else if !self.applied_orders.iter().any(|o| o == order_id) {
            Some(Revoked::NotApplied)
        } else {
            None
        }
    }

    /// Schedules a downgrade: paid time keeps its plan, the next renewal buys `to`.
    pub fn schedule_downgrade(
        &mut self,
        to: &Plan,
        now: i64,
        plans: &impl Fn(&str) -> Option<Plan>,
    ) -> Result<(), SubscriptionError> {
        let current = self.current_plan(now, plans)?;
        if to.tier >= current.tier {
            return Err(SubscriptionError::NotADowngrade(to.id.clone()));
        }
        self.renew_plan = to.id.clone();
        Ok(())
    }

    /// Paid (non-trial) seconds covered in all: the sum every applied renewal added.
    pub fn paid_secs(&self) -> i64 {
        self.segments
            .iter()
            .filter(|s| !s.trial)
            .map(|s| s.end - s.start)
            .sum()
    }

    fn current_plan(
        &self,
        now: i64,
        plans: &impl Fn(&str) -> Option<Plan>,
    ) -> Result<Plan, SubscriptionError> {
        let id = self.plan_at(now, plans).ok_or(SubscriptionError::Expired)?;
        plans(&id).ok_or(SubscriptionError::UnknownPlan(id))
    }

    /// Appends a segment, merging it with the previous one when they touch and match.
    fn push_segment(&mut self, segment: Segment) {
        if segment.end <= segment.start {
            return;
        }
        if let Some(last) = self.segments.last_mut()
            && last.end == segment.start
            && last.plan == segment.plan
            && last.trial == segment.trial
        {
            last.end = segment.end;
            return;
        }
        self.segments.push(segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(id: &str, tier: u32, price: i64) -> Plan {
        Plan {
            id: id.into(),
            title: id.into(),
            tier,
            period_days: 30,
            price_fen: Fen::new(price).unwrap(),
            trial_days: 7,
            past_due_days: 3,
            grace_days: 2,
            seats: None,
        }
    }

    fn plans(id: &str) -> Option<Plan> {
        match id {
            "basic" => Some(plan("basic", 1, 3000)),
            "pro" => Some(plan("pro", 2, 6000)),
            _ => None,
        }
    }

    const T0: i64 = 1_700_000_000;

    #[test]
    fn trial_then_renewal_keeps_the_trial_days() {
        let basic = plans("basic").unwrap();
        let mut sub = Subscription::start(&basic, T0, true);
        assert_eq!(sub.state(T0, &plans), SubscriptionState::Trial);
        let applied = sub.apply_renewal(&basic, "o1", T0 + DAY, &plans);
        assert_eq!(
            applied,
            Applied::Extended {
                from: T0 + 7 * DAY,
                until: T0 + 37 * DAY
            }
        );
        assert_eq!(sub.state(T0 + 8 * DAY, &plans), SubscriptionState::Active);
    }

    #[test]
    fn duplicate_notification_extends_once() {
        let basic = plans("basic").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        let before = sub.clone();
        assert_eq!(
            sub.apply_renewal(&basic, "o1", T0 + 5, &plans),
            Applied::AlreadyApplied
        );
        assert_eq!(sub, before);
    }

    #[test]
    fn expiry_walks_past_due_grace_expired_at_exact_instants() {
        let basic = plans("basic").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        assert_eq!(sub.state(T0, &plans), SubscriptionState::Expired);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        let end = T0 + 30 * DAY;
        assert_eq!(sub.state(end - 1, &plans), SubscriptionState::Active);
        assert_eq!(sub.state(end, &plans), SubscriptionState::PastDue);
        assert_eq!(sub.state(end + 3 * DAY, &plans), SubscriptionState::Grace);
        assert_eq!(
            sub.state(end + 5 * DAY - 1, &plans),
            SubscriptionState::Grace
        );
        assert_eq!(sub.state(end + 5 * DAY, &plans), SubscriptionState::Expired);
        // Renewal during grace extends from the old end: no lost days.
        let mut in_grace = sub.clone();
        assert_eq!(
            in_grace.apply_renewal(&basic, "o2", end + 4 * DAY, &plans),
            Applied::Extended {
                from: end,
                until: end + 30 * DAY
            }
        );
        // Renewal after expiry starts at payment time.
        assert_eq!(
            sub.apply_renewal(&basic, "o3", end + 10 * DAY, &plans),
            Applied::Extended {
                from: end + 10 * DAY,
                until: end + 40 * DAY
            }
        );
        assert_eq!(
            sub.state(end + 6 * DAY, &plans),
            SubscriptionState::Expired,
            "gap stays unpaid"
        );
    }

    #[test]
    fn canceled_keeps_access_until_period_end_then_expires_without_grace() {
        let basic = plans("basic").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        sub.cancel(T0 + DAY);
        assert_eq!(
            sub.state(T0 + 29 * DAY, &plans),
            SubscriptionState::Canceled
        );
        assert!(sub.state(T0 + 29 * DAY, &plans).has_access());
        assert_eq!(sub.state(T0 + 30 * DAY, &plans), SubscriptionState::Expired);
        // Taken back while running: active again, with past due and grace at the end.
        let mut resumed = sub.clone();
        resumed.resume(T0 + 2 * DAY, &plans).unwrap();
        assert_eq!(
            resumed.state(T0 + 2 * DAY, &plans),
            SubscriptionState::Active
        );
        assert_eq!(
            resumed.state(T0 + 30 * DAY, &plans),
            SubscriptionState::PastDue
        );
        // Too late once the canceled time ended.
        assert_eq!(
            sub.resume(T0 + 30 * DAY, &plans),
            Err(SubscriptionError::Expired)
        );
        assert!(sub.canceled_at.is_some());
    }

    #[test]
    fn upgrade_charges_the_prorated_difference() {
        let basic = plans("basic").unwrap();
        let pro = plans("pro").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        // Half the period left: pro costs 3000 for it, basic credits 1500.
        let half = T0 + 15 * DAY;
        let quote = sub.upgrade_quote(&pro, half, &plans).unwrap();
        assert_eq!(quote.amount.get(), 1500);
        assert_eq!((quote.from, quote.until), (half, T0 + 30 * DAY));
        assert_eq!(quote.from_plan, "basic");
        assert!(matches!(
            sub.upgrade_quote(&basic, half, &plans),
            Err(SubscriptionError::NotAnUpgrade(_))
        ));
        assert_eq!(
            sub.apply_upgrade(&pro, "up1", quote.from, quote.until, &plans),
            Ok(Applied::Upgraded {
                from: half,
                until: T0 + 30 * DAY
            })
        );
        assert_eq!(sub.plan_at(half - 1, &plans).as_deref(), Some("basic"));
        assert_eq!(sub.plan_at(half, &plans).as_deref(), Some("pro"));
        assert_eq!(sub.period_end(), Some(T0 + 30 * DAY));
        assert_eq!(sub.renew_plan, "pro");
        // The same order again changes nothing; another order finds nothing left to move.
        let before = sub.clone();
        assert_eq!(
            sub.apply_upgrade(&pro, "up1", quote.from, quote.until, &plans),
            Ok(Applied::AlreadyApplied)
        );
        assert_eq!(
            sub.apply_upgrade(&pro, "up2", quote.from, quote.until, &plans),
            Err(SubscriptionError::NotAnUpgrade("pro".into()))
        );
        assert_eq!(sub, before);
    }

    #[test]
    fn upgrade_paid_after_a_renewal_moves_only_the_quoted_window() {
        let basic = plans("basic").unwrap();
        let pro = plans("pro").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        let quote = sub.upgrade_quote(&pro, T0 + 10 * DAY, &plans).unwrap();
        // A renewal lands between the quote and the upgrade's payment.
        sub.apply_renewal(&basic, "o2", T0 + 11 * DAY, &plans);
        sub.apply_upgrade(&pro, "up", quote.from, quote.until, &plans)
            .unwrap();
        assert_eq!(sub.plan_at(T0 + 29 * DAY, &plans).as_deref(), Some("pro"));
        assert_eq!(sub.plan_at(T0 + 31 * DAY, &plans).as_deref(), Some("basic"));
        assert_eq!(sub.paid_secs(), 60 * DAY);
    }

    #[test]
    fn upgrade_during_trial_costs_nothing() {
        let basic = plans("basic").unwrap();
        let pro = plans("pro").unwrap();
        let mut sub = Subscription::start(&basic, T0, true);
        let quote = sub.upgrade_quote(&pro, T0 + DAY, &plans).unwrap();
        assert_eq!(quote.amount, Fen::ZERO);
        sub.apply_upgrade(&pro, "up", quote.from, quote.until, &plans)
            .unwrap();
        assert_eq!(sub.state(T0 + DAY, &plans), SubscriptionState::Trial);
        assert_eq!(sub.plan_at(T0 + DAY, &plans).as_deref(), Some("pro"));
        assert_eq!(sub.paid_secs(), 0);
    }

    #[test]
    fn upgrade_rounds_in_whole_fen_against_the_seller_never_the_buyer_twice() {
        let basic = plans("basic").unwrap();
        let pro = plans("pro").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        // 1 second left: pro 6000/2592000 → ceil 1 fen; basic credit floor 0.
        let quote = sub.upgrade_quote(&pro, T0 + 30 * DAY - 1, &plans).unwrap();
        assert_eq!(quote.amount.get(), 1);
    }

    #[test]
    fn moving_paid_time_to_a_tier_cheaper_per_second_still_costs_at_least_one_fen() {
        let basic = plans("basic").unwrap();
        // A higher tier sold by the year: 100 fen a day on basic, 83 on the annual plan.
        let annual = Plan {
            period_days: 360,
            price_fen: Fen::new(30_000).unwrap(),
            ..plan("pro-annual", 2, 0)
        };
        let lookup = |id: &str| match id {
            "pro-annual" => Some(annual.clone()),
            other => plans(other),
        };
        let mut paid = Subscription::start(&basic, T0, false);
        paid.apply_renewal(&basic, "o1", T0, &lookup);
        let quote = paid.upgrade_quote(&annual, T0 + 10 * DAY, &lookup).unwrap();
        assert_eq!(
            quote.amount.get(),
            1,
            "the credit covers the new plan, but paid time is never moved for free"
        );
        // Nothing but trial time left: free, as before.
        let trial = Subscription::start(&basic, T0, true);
        let quote = trial.upgrade_quote(&annual, T0 + DAY, &lookup).unwrap();
        assert_eq!(quote.amount, Fen::ZERO);
        // A trial with a paid period queued after it: the paid part is priced.
        let mut queued = trial.clone();
        queued.apply_renewal(&basic, "o2", T0 + DAY, &lookup);
        let quote = queued.upgrade_quote(&annual, T0 + DAY, &lookup).unwrap();
        assert!(quote.amount.get() >= 1, "{quote:?}");
    }

    #[test]
    fn a_refunded_renewal_gives_back_the_latest_days_but_never_used_ones() {
        let basic = plans("basic").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        sub.apply_renewal(&basic, "o2", T0 + DAY, &plans);
        assert_eq!(sub.period_end(), Some(T0 + 60 * DAY));
        assert_eq!(
            sub.revoke_renewal("o2", 30 * DAY, T0 + 2 * DAY),
            Revoked::Done {
                period_end: Some(T0 + 30 * DAY)
            }
        );
        assert_eq!(
            sub.revoke_renewal("o2", 30 * DAY, T0 + 2 * DAY),
            Revoked::AlreadyRevoked
        );
        assert_eq!(sub.revoke_renewal("o9", 30 * DAY, T0), Revoked::NotApplied);
        // Refunded on day 10: the ten used days stay, access ends now.
        sub.revoke_renewal("o1", 30 * DAY, T0 + 10 * DAY);
        assert_eq!(sub.period_end(), Some(T0 + 10 * DAY));
        assert_eq!(sub.state(T0 + 10 * DAY, &plans), SubscriptionState::PastDue);
        // A late duplicate of a refunded order's notification adds nothing.
        assert_eq!(
            sub.apply_renewal(&basic, "o2", T0 + 11 * DAY, &plans),
            Applied::AlreadyApplied
        );
    }

    #[test]
    fn a_refunded_upgrade_puts_the_rest_of_its_window_back() {
        let basic = plans("basic").unwrap();
        let pro = plans("pro").unwrap();
        let mut sub = Subscription::start(&basic, T0, false);
        sub.apply_renewal(&basic, "o1", T0, &plans);
        let q = sub.upgrade_quote(&pro, T0 + 5 * DAY, &plans).unwrap();
        sub.apply_upgrade(&pro, "up", q.from, q.until, &plans)
            .unwrap();
        assert_eq!(
            sub.revoke_upgrade("up-other", "pro", "basic", (q.from, q.until), T0 + 6 * DAY),
            Revoked::NotApplied,
            "an upgrade that never applied takes nothing back"
        );
        sub.revoke_upgrade("up", "pro", "basic", (q.from, q.until), T0 + 8 * DAY);
        assert_eq!(sub.plan_at(T0 + 7 * DAY, &plans).as_deref(), Some("pro"));
        assert_eq!(sub.plan_at(T0 + 8 * DAY, &plans).as_deref(), Some("basic"));
        assert_eq!(sub.period_end(), Some(T0 + 30 * DAY));
        assert_eq!(sub.renew_plan, "basic");
    }

    #[test]
    fn downgrade_applies_at_period_end() {
        let basic = plans("basic").unwrap();
        let pro = plans("pro").unwrap();
        let mut sub = Subscription::start(&pro, T0, false);
        sub.apply_renewal(&pro, "o1", T0, &plans);
        sub.schedule_downgrade(&basic, T0 + DAY, &plans).unwrap();
        assert_eq!(sub.plan_at(T0 + 29 * DAY, &plans).as_deref(), Some("pro"));
        let renew = plans(&sub.renew_plan).unwrap();
        sub.apply_renewal(&renew, "o2", T0 + 29 * DAY, &plans);
        assert_eq!(sub.plan_at(T0 + 30 * DAY, &plans).as_deref(), Some("basic"));
    }

    #[derive(Clone, Debug)]
    enum Event {
        Advance(i64),
        Renew { order: u8, pro: bool },
        Cancel,
        Resume,
        Upgrade { order: u8 },
        Refund { order: u8 },
    }

    /// Covered seconds from `now` on.
    fn covered_after(sub: &Subscription, now: i64) -> i64 {
        sub.segments
            .iter()
            .map(|s| (s.end - s.start.max(now)).max(0))
            .sum()
    }

    /// The segments clipped to before `now`: time already used.
    fn used_before(sub: &Subscription, now: i64) -> Vec<(String, i64, i64, bool)> {
        sub.segments
            .iter()
            .filter(|s| s.start < now)
            .map(|s| (s.plan.clone(), s.start, s.end.min(now), s.trial))
            .collect()
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (1i64..40 * DAY).prop_map(Event::Advance),
            (0u8..6, any::<bool>()).prop_map(|(order, pro)| Event::Renew { order, pro }),
            Just(Event::Cancel),
            Just(Event::Resume),
            (0u8..6).prop_map(|order| Event::Upgrade { order }),
            (0u8..6).prop_map(|order| Event::Refund { order }),
        ]
    }

    proptest! {
        /// Over any sequence of payments (duplicates included), cancellations, upgrades,
        /// refunds and time passing: every distinct paid order adds exactly one period,
        /// duplicates add nothing, a refund takes back at most its period and never time
        /// already used, segments never overlap, and access always follows the derived state.
        #[test]
        fn no_lost_or_doubled_days(trial in any::<bool>(), events in proptest::collection::vec(event(), 1..40)) {
            let basic = plans("basic").unwrap();
            let mut now = T0;
            let mut sub = Subscription::start(&basic, now, trial);
            let mut distinct = std::collections::BTreeSet::new();
            let mut refunded = std::collections::BTreeSet::new();
            let mut paid_taken_back = 0;
            for event in events {
                match event {
                    Event::Advance(secs) => now += secs,
                    Event::Renew { order, pro } => {
                        let plan = plans(if pro { "pro" } else { "basic" }).unwrap();
                        let id = format!("r{order}");
                        let before = sub.paid_secs();
                        let had_access = sub.state(now, &plans).has_access();
                        let end_before = sub.period_end();
                        let applied = sub.apply_renewal(&plan, &id, now, &plans);
                        if distinct.insert(id) {
                            prop_assert_eq!(sub.paid_secs() - before, 30 * DAY);
                            // Paid while covered: starts at the old end (no lost day);
                            // paid after expiry: starts now (no day paid for in the past).
                            let expected_from = if had_access { end_before.unwrap() } else { now };
                            prop_assert_eq!(applied, Applied::Extended { from: expected_from, until: expected_from + 30 * DAY });
                            prop_assert_eq!(sub.period_end(), Some(expected_from + 30 * DAY));
                            prop_assert!(sub.state(now, &plans).has_access());
                        } else {
                            prop_assert_eq!(applied, Applied::AlreadyApplied);
                            prop_assert_eq!(sub.paid_secs(), before);
                        }
                    }
                    Event::Cancel => sub.cancel(now),
                    Event::Refund { order } => {
                        let id = format!("r{order}");
                        let (paid, covered, used) =
                            (sub.paid_secs(), covered_after(&sub, now), used_before(&sub, now));
                        let done = sub.revoke_renewal(&id, 30 * DAY, now);
                        if !distinct.contains(&id) {
                            prop_assert_eq!(done, Revoked::NotApplied);
                        } else if !refunded.insert(id) {
                            prop_assert_eq!(done, Revoked::AlreadyRevoked);
                        } else {
                            let taken = matches!(done, Revoked::Done { .. });
                            prop_assert!(taken, "{:?}", done);
                            prop_assert_eq!(covered - covered_after(&sub, now), covered.min(30 * DAY));
                        }
                        prop_assert_eq!(used_before(&sub, now), used, "used time stays used");
                        prop_assert!(paid - sub.paid_secs() <= 30 * DAY);
                        paid_taken_back += paid - sub.paid_secs();
                    }
                    Event::Resume => {
                        let had_access = sub.state(now, &plans).has_access();
                        prop_assert_eq!(sub.resume(now, &plans).is_ok(), had_access);
                    }
                    Event::Upgrade { order } => {
                        let pro = plans("pro").unwrap();
                        let id = format!("u{order}");
                        let before = (sub.paid_secs(), sub.period_end());
                        let had_access = sub.state(now, &plans).has_access();
                        let paid_below = sub
                            .segments
                            .iter()
                            .any(|s| !s.trial && s.plan == "basic" && s.end > now);
                        match sub.upgrade_quote(&pro, now, &plans) {
                            Ok(quote) => {
                                prop_assert!(had_access);
                                // Free exactly when no paid time moves.
                                prop_assert_eq!(quote.amount == Fen::ZERO, !paid_below);
                                // Never more than the new plan's price for the window.
                                let window = quote.until - quote.from;
                                prop_assert!(quote.amount.get() <= pro.price_fen.mul_div_ceil(window, pro.period_secs()).unwrap().get());
                                let applied = sub.apply_upgrade(&pro, &id, quote.from, quote.until, &plans);
                                if distinct.insert(id) {
                                    prop_assert_eq!(applied, Ok(Applied::Upgraded { from: quote.from, until: quote.until }));
                                    let plan_now = sub.plan_at(now, &plans);
                                    prop_assert_eq!(plan_now.as_deref(), Some("pro"));
                                } else {
                                    prop_assert_eq!(applied, Ok(Applied::AlreadyApplied));
                                }
                            }
                            Err(_) => {
                                // Expired, past the paid time, or on pro already.
                                prop_assert!(!had_access
                                    || sub.period_end().is_some_and(|end| end <= now)
                                    || sub.plan_at(now, &plans).as_deref() == Some("pro"));
                            }
                        }
                        prop_assert_eq!((sub.paid_secs(), sub.period_end()), before, "upgrades move no days");
                    }
                }
                for pair in sub.segments.windows(2) {
                    prop_assert!(pair[0].end <= pair[1].start, "segments overlap");
                }
                let renewals = distinct.iter().filter(|id| id.starts_with('r')).count() as i64;
                prop_assert_eq!(sub.paid_secs(), renewals * 30 * DAY - paid_taken_back);
                let state = sub.state(now, &plans);
                prop_assert_eq!(state.has_access(), sub.plan_at(now, &plans).is_some());
                if sub.segment_at(now).is_some() {
                    prop_assert!(state.has_access());
                }
            }
        }
    }
}
