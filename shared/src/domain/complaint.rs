//! Consumer complaints (WeChat Pay complaints 2.0 and virtual payment complaints): the states,
//! the first-reply deadline, when admins are reminded, and what an admin may send. Pure rules;
//! `crate::complaints` loads, asks and saves.
//!
//! Platform facts (docs/pay.md, "Consumer complaints"): a complaint is `PENDING` until the
//! merchant's first reply moves it to `PROCESSING`, and `PROCESSED` once completed, refunded
//! or the refund was rejected. The first reply is due within about 24 hours of the complaint
//! (the exact rule is unconfirmed; wemint assumes 24 h from `complaint_time`).

use serde::{Deserialize, Serialize};

/// Seconds from the complaint to the first-reply deadline (24 h).
pub const FIRST_REPLY_SECS: i64 = 24 * 3600;
/// Admins are reminded this long before the first-reply deadline (4 h), once.
pub const REMIND_BEFORE_SECS: i64 = 4 * 3600;
/// Longest reply text, in characters (the merchant API's documented limit).
pub const MAX_RESPONSE_CHARS: usize = 200;
/// Longest refund rejection reason or remark, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// Longest `launch_refund_day` accepted (working days until the refund starts).
pub const MAX_LAUNCH_REFUND_DAYS: i64 = 30;

/// Where a complaint lives and which API answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComplaintChannel {
    /// WeChat Pay consumer complaints 2.0 (`/v3/merchant-service/complaints-v2`).
    Wxpay,
    /// Mini Program virtual payment complaints (`/xpay/*complaint*`).
    Xpay,
}

impl ComplaintChannel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wxpay => "wxpay",
            Self::Xpay => "xpay",
        }
    }
}

/// `complaint_state`. An unknown state is kept as [`ComplaintState::Other`] and treated as
/// still open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComplaintState {
    /// Awaiting the merchant.
    Pending,
    /// The merchant replied; in progress.
    Processing,
    /// Done (completed, refunded, or the refund rejected).
    Processed,
    /// A state this code does not know (kept as sent).
    Other(String),
}

impl ComplaintState {
    /// Parses the platform's string.
    pub fn parse(s: &str) -> Self {
        match s {
            "PENDING" => Self::Pending,
            "PROCESSING" => Self::Processing,
            "PROCESSED" => Self::Processed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The platform's string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Processing => "PROCESSING",
            Self::Processed => "PROCESSED",
            Self::Other(s) => s,
        }
    }

    /// Whether nothing more can be sent.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Processed)
    }
}

/// The first-reply deadline of a complaint made at `complaint_time` (Unix seconds).
pub fn first_reply_due(complaint_time: i64) -> i64 {
    complaint_time.saturating_add(FIRST_REPLY_SECS)
}

/// Whether admins should be reminded now: the complaint still waits for its first reply
/// (`PENDING`, never answered from wemint), the deadline is less than
/// [`REMIND_BEFORE_SECS`] away (or passed), and no reminder was sent yet.
pub fn reminder_due(
    state: &ComplaintState,
    responded: bool,
    reminded: bool,
    respond_by: i64,
    now: i64,
) -> bool {
    *state == ComplaintState::Pending
        && !responded
        && !reminded
        && now >= respond_by.saturating_sub(REMIND_BEFORE_SECS)
}

/// A refused admin action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ComplaintRuleError {
    /// The input breaks a documented limit.
    #[error("{0}")]
    Invalid(String),
    /// The complaint is closed (`PROCESSED`): nothing can be sent any more.
    #[error("the complaint is already processed")]
    Closed,
    /// The channel has no such operation (virtual payment has no refund progress).
    #[error("{0}")]
    Unsupported(String),
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Checks a reply text: 1–200 characters, not only whitespace.
pub fn check_response(state: &ComplaintState, content: &str) -> Result<(), ComplaintRuleError> {
    if state.is_closed() {
        return Err(ComplaintRuleError::Closed);
    }
    if content.trim().is_empty() || chars(content) > MAX_RESPONSE_CHARS {
        return Err(ComplaintRuleError::Invalid(format!(
            "content must be 1-{MAX_RESPONSE_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks that a complaint may be marked complete (not already processed).
pub fn check_complete(state: &ComplaintState) -> Result<(), ComplaintRuleError> {
    if state.is_closed() {
        Err(ComplaintRuleError::Closed)
    } else {
        Ok(())
    }
}

/// An admin's answer to a refund request (`update-refund-progress`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundProgress {
    /// Agree: the refund starts within `launch_refund_day` working days (0 = today). This
    /// moves no money: the refund itself is a separate `refund`.
    Approve {
        /// Working days until the refund is started.
        launch_refund_day: i64,
        /// Optional remark.
        remark: Option<String>,
    },
    /// Refuse, with a reason shown to the user.
    Reject {
        /// Why.
        reason: String,
        /// Optional remark.
        remark: Option<String>,
    },
}

/// Builds and checks a refund-progress answer from an admin's input.
pub fn refund_progress(
    state: &ComplaintState,
    channel: ComplaintChannel,
    action: &str,
    launch_refund_day: Option<i64>,
    reason: Option<&str>,
    remark: Option<&str>,
) -> Result<RefundProgress, ComplaintRuleError> {
    if channel == ComplaintChannel::Xpay {
        return Err(ComplaintRuleError::Unsupported(
            "virtual payment complaints have no refund progress: refund the order, then respond"
                .into(),
        ));
    }
    if state.is_closed() {
        return Err(ComplaintRuleError::Closed);
    }
    let remark = match remark {
        Some(r) if r.trim().is_empty() || chars(r) > MAX_REASON_CHARS => {
            return Err(ComplaintRuleError::Invalid(format!(
                "remark must be 1-{MAX_REASON_CHARS} characters"
            )));
        }
        other => other.map(str::to_owned),
    };
    match action {
        "APPROVE" => {
            let days = launch_refund_day.unwrap_or(0);
            if !(0..=MAX_LAUNCH_REFUND_DAYS).contains(&days) {
                return Err(ComplaintRuleError::Invalid(format!(
                    "launchRefundDay must be 0-{MAX_LAUNCH_REFUND_DAYS}"
                )));
            }
            Ok(RefundProgress::Approve {
                launch_refund_day: days,
                remark,
            })
        }
        "REJECT" => match reason {
            Some(r) if !r.trim().is_empty() && chars(r) <= MAX_REASON_CHARS => {
                Ok(RefundProgress::Reject {
                    reason: r.to_owned(),
                    remark,
                })
            }
            _ => Err(ComplaintRuleError::Invalid(format!(
                "a REJECT needs a reason of 1-{MAX_REASON_CHARS} characters"
            ))),
        },
        _ => Err(ComplaintRuleError::Invalid(
            "decision must be APPROVE or REJECT".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_unknown_ones_stay_open() {
        assert_eq!(ComplaintState::parse("PENDING"), ComplaintState::Pending);
        assert_eq!(
            ComplaintState::parse("PROCESSED"),
            ComplaintState::Processed
        );
        let other = ComplaintState::parse("FROZEN");
        assert_eq!(other.as_str(), "FROZEN");
        assert!(!other.is_closed());
        assert!(ComplaintState::Processed.is_closed());
    }

    #[test]
    fn the_first_reply_is_due_24_hours_after_the_complaint() {
        assert_eq!(first_reply_due(1_000), 1_000 + 86_400);
        assert_eq!(first_reply_due(i64::MAX), i64::MAX);
    }

    #[test]
    fn admins_are_reminded_once_in_the_last_four_hours_of_a_pending_complaint() {
        let due = 100_000;
        let pending = ComplaintState::Pending;
        assert!(!reminder_due(
            &pending,
            false,
            false,
            due,
            due - 4 * 3600 - 1
        ));
        assert!(reminder_due(&pending, false, false, due, due - 4 * 3600));
        assert!(
            reminder_due(&pending, false, false, due, due + 10),
            "overdue"
        );
        assert!(!reminder_due(&pending, false, true, due, due), "once");
        assert!(!reminder_due(&pending, true, false, due, due), "answered");
        assert!(!reminder_due(
            &ComplaintState::Processing,
            false,
            false,
            due,
            due
        ));
    }

    #[test]
    fn replies_are_1_to_200_characters_on_an_open_complaint() {
        let open = ComplaintState::Pending;
        assert!(check_response(&open, "您好，已为您安排退款").is_ok());
        assert!(
            check_response(&open, &"退".repeat(200)).is_ok(),
            "characters, not bytes"
        );
        assert!(matches!(
            check_response(&open, &"退".repeat(201)),
            Err(ComplaintRuleError::Invalid(_))
        ));
        assert!(matches!(
            check_response(&open, "  "),
            Err(ComplaintRuleError::Invalid(_))
        ));
        assert_eq!(
            check_response(&ComplaintState::Processed, "hi"),
            Err(ComplaintRuleError::Closed)
        );
        assert_eq!(
            check_complete(&ComplaintState::Processed),
            Err(ComplaintRuleError::Closed)
        );
        assert!(check_complete(&ComplaintState::Processing).is_ok());
    }

    #[test]
    fn refund_progress_rules() {
        let open = ComplaintState::Pending;
        let wx = ComplaintChannel::Wxpay;
        assert_eq!(
            refund_progress(&open, wx, "APPROVE", None, None, None),
            Ok(RefundProgress::Approve {
                launch_refund_day: 0,
                remark: None
            })
        );
        assert!(refund_progress(&open, wx, "APPROVE", Some(-1), None, None).is_err());
        assert!(refund_progress(&open, wx, "APPROVE", Some(31), None, None).is_err());
        assert!(refund_progress(&open, wx, "REJECT", None, None, None).is_err());
        assert_eq!(
            refund_progress(&open, wx, "REJECT", None, Some("已发货"), Some("备注")),
            Ok(RefundProgress::Reject {
                reason: "已发货".into(),
                remark: Some("备注".into())
            })
        );
        assert!(refund_progress(&open, wx, "MAYBE", None, None, None).is_err());
        assert!(refund_progress(&open, wx, "APPROVE", None, None, Some(" ")).is_err());
        assert_eq!(
            refund_progress(&ComplaintState::Processed, wx, "APPROVE", None, None, None),
            Err(ComplaintRuleError::Closed)
        );
        assert!(matches!(
            refund_progress(&open, ComplaintChannel::Xpay, "APPROVE", None, None, None),
            Err(ComplaintRuleError::Unsupported(_))
        ));
    }
}
