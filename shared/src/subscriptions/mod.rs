//! Subscriptions: the one owner of the `subscriptions` documents (and of the team trial claims).
//!
//! The rules (covered time, renewals, upgrades, refunded time taken back, the state derived at
//! an instant) are pure and live in [`crate::domain::subscription`]. This module loads and saves
//! the documents ([`load`], [`save`]: one field list, every write conditional on the `version`
//! read, so a cancel racing a paid renewal never loses either) and runs every operation on them:
//! - paid time, for commerce's fulfilment and refunds: [`renew`], [`apply_upgrade`] (the
//!   window an upgrade order bought) and [`revoke`];
//! - the subscriber's own changes, for gatedContent: [`Subscriptions::start_trial`],
//!   [`Subscriptions::set_canceled`] (cancel and resume) and [`Subscriptions::change_plan`];
//! - the timers: [`Subscriptions::expire_tenant_plans`] and the renewal [`reminders`].

mod lifecycle;
pub mod reminders;
mod stored;
mod view;

use serde::{Deserialize, Serialize};

pub use lifecycle::Subscriptions;
pub use stored::{
    Plans, Stored, Version, apply_upgrade, ending_between, load, plan, plans_for, renew, revoke,
    save,
};
pub use view::view;

use crate::store::StoreError;

/// Whose subscription: a member's own, or the plan of a tenant (managed by its owner and
/// admins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The caller's own membership.
    #[default]
    User,
    /// The plan of the caller's active tenant.
    Tenant,
}

impl Scope {
    /// The wire name (`user`, `tenant`).
    pub fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Tenant => "tenant",
        }
    }

    /// The scope a request names: `user` (also when none is named) or `tenant`.
    ///
    /// # Errors
    /// [`SubscriptionsError::BadRequest`] for any other name.
    pub fn parse(name: Option<&str>) -> Result<Scope, SubscriptionsError> {
        match name {
            None | Some("user") => Ok(Scope::User),
            Some("tenant") => Ok(Scope::Tenant),
            Some(other) => Err(SubscriptionsError::BadRequest(format!(
                "scope must be `user` or `tenant`, not `{other}`"
            ))),
        }
    }

    /// The `subscriptions` id of a subscriber in this scope: the openid for a membership,
    /// `tenant:<id>` for a tenant plan.
    pub fn subject(self, id: &str) -> String {
        match self {
            Scope::User => id.to_owned(),
            Scope::Tenant => format!("tenant:{id}"),
        }
    }
}

/// Why a subscriber's change was refused (gatedContent maps these to its public codes).
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionsError {
    /// The caller has no subscription of that scope (the scope's name).
    #[error("no {0} subscription")]
    NotFound(&'static str),
    /// The subscription has run out: buy the plan again instead.
    #[error("the subscription has expired; buy the plan to start a new one")]
    Expired,
    /// No plan with that id.
    #[error("plan {0} does not exist")]
    PlanNotFound(String),
    /// Not a change this subscription can make (same tier, other kind of plan).
    #[error("{0}")]
    PlanChangeInvalid(String),
    /// No free trial: the plan has none, or the subscriber has subscribed before.
    #[error("{0}")]
    TrialUnavailable(String),
    /// The caller's tenant role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The request data is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed, or kept changing under a conditional write.
    #[error(transparent)]
    Store(#[from] StoreError),
}
