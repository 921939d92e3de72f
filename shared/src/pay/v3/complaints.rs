//! Consumer complaints 2.0 (`/v3/merchant-service/complaints-v2`, `…/complaint-notifications`):
//! the complaint and its negotiation history, the merchant's reply, completion, the answer to
//! a refund request, and the notification URL. Signed and verified like every v3 call.
//!
//! The complaint notification itself is an ordinary v3 notification (`COMPLAINT.CREATE`,
//! `COMPLAINT.STATE_CHANGE`): [`super::parse_notification`] verifies and decrypts it, and
//! [`ComplaintNotice::from_notification`] reads the complaint id out of it. It carries no
//! complaint content: the complaint is always read back with [`PayClient::complaint`].

use http::Method;
use serde::{Deserialize, Serialize};

use super::client::{PayClient, PayError};
use super::models::{ValidationError, check_id};
use super::notify::{Notification, NotifyError};

/// One order a complaint is about (`complaint_order_info[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ComplaintOrder {
    /// WeChat Pay transaction id.
    #[serde(default)]
    pub transaction_id: String,
    /// Merchant order number (for virtual payment: its channel order id, not ours).
    #[serde(default)]
    pub out_trade_no: String,
    /// Order amount, fen.
    #[serde(default)]
    pub amount: i64,
    /// Virtual payment only: our order number, as passed to `wx.requestVirtualPayment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wxa_out_trade_no: Option<String>,
}

/// A complaint as the detail and list APIs return it (the fields wemint keeps; the payer's
/// phone number is never read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Complaint {
    /// The complaint id.
    pub complaint_id: String,
    /// RFC 3339.
    #[serde(default)]
    pub complaint_time: String,
    /// The user's text.
    #[serde(default)]
    pub complaint_detail: String,
    /// `PENDING`, `PROCESSING`, `PROCESSED`.
    #[serde(default)]
    pub complaint_state: String,
    /// The merchant complained about.
    #[serde(default)]
    pub complainted_mchid: Option<String>,
    /// The complaining user.
    #[serde(default)]
    pub payer_openid: Option<String>,
    /// The orders.
    #[serde(default)]
    pub complaint_order_info: Vec<ComplaintOrder>,
    /// `REFUND`, `SERVICE_NOT_WORK`, `OTHERS`.
    #[serde(default)]
    pub problem_type: Option<String>,
    /// Short description of the problem.
    #[serde(default)]
    pub problem_description: Option<String>,
    /// Refund asked for, fen (with `problem_type = REFUND`).
    #[serde(default)]
    pub apply_refund_amount: Option<i64>,
    /// A user message waits for a reply.
    #[serde(default)]
    pub incoming_user_response: bool,
    /// Must be served at once.
    #[serde(default)]
    pub need_immediate_service: bool,
    /// WeChat customer service is mediating.
    #[serde(default)]
    pub in_platform_service: bool,
    /// Fully refunded already.
    #[serde(default)]
    pub complaint_full_refunded: bool,
}

/// One entry of the negotiation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NegotiationEntry {
    /// Entry id.
    #[serde(default)]
    pub log_id: String,
    /// Who acted.
    #[serde(default)]
    pub operator: String,
    /// RFC 3339.
    #[serde(default)]
    pub operate_time: String,
    /// `USER_CREATE_COMPLAINT`, `MERCHANT_RESPONSE`, … (an open set, kept as sent).
    #[serde(default)]
    pub operate_type: String,
    /// The text.
    #[serde(default)]
    pub operate_details: String,
}

/// A page of negotiation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NegotiationPage {
    /// The entries.
    #[serde(default)]
    pub data: Vec<NegotiationEntry>,
    /// Total entries (sent with `offset = 0`).
    #[serde(default)]
    pub total_count: Option<i64>,
}

/// The merchant's answer to a refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundProgressBody {
    /// `APPROVE` or `REJECT`.
    pub action: &'static str,
    /// Working days until the refund starts (APPROVE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_refund_day: Option<i64>,
    /// Why (REJECT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// Remark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

/// The merchant's complaint notification URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintNotificationUrl {
    /// The merchant.
    #[serde(default)]
    pub mchid: String,
    /// The URL.
    pub url: String,
}

/// The decrypted resource of a `COMPLAINT.*` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintNotice {
    /// The notification id (the de-duplication key).
    #[serde(skip)]
    pub id: String,
    /// `COMPLAINT.CREATE` or `COMPLAINT.STATE_CHANGE`.
    #[serde(skip)]
    pub event_type: String,
    /// The complaint.
    pub complaint_id: String,
    /// `CREATE_COMPLAINT`, `USER_RESPONSE`, … (an open set).
    #[serde(default)]
    pub action_type: String,
}

impl ComplaintNotice {
    /// The complaint notice in a verified notification: `None` for other event types, an
    /// error when a `COMPLAINT.*` resource does not name a valid complaint id.
    pub fn from_notification(n: &Notification) -> Option<Result<Self, NotifyError>> {
        let Notification::Other {
            id,
            event_type,
            resource,
        } = n
        else {
            return None;
        };
        if !event_type.starts_with("COMPLAINT.") {
            return None;
        }
        let parsed = serde_json::from_value::<ComplaintNotice>(resource.clone())
            .map_err(|e| e.to_string())
            .and_then(|notice| {
                check_complaint_id(&notice.complaint_id)
                    .map(|()| notice)
                    .map_err(|e| e.to_string())
            })
            .map(|notice| ComplaintNotice {
                id: id.clone(),
                event_type: event_type.clone(),
                ..notice
            })
            .map_err(|problem| NotifyError::Resource {
                kind: "complaint",
                problem,
            });
        Some(parsed)
    }
}

/// A complaint id: 1–64 characters of `[0-9A-Za-z]` (it goes into a URL path).
pub fn check_complaint_id(id: &str) -> Result<(), ValidationError> {
    check_id("complaint_id", id, 1, 64, "")
}

fn to_body(value: &impl Serialize) -> Result<Vec<u8>, PayError> {
    serde_json::to_vec(value).map_err(|e| PayError::Config(e.to_string()))
}

const BASE: &str = "/v3/merchant-service/complaints-v2";
const NOTIFICATIONS: &str = "/v3/merchant-service/complaint-notifications";

impl PayClient {
    /// `GET /v3/merchant-service/complaints-v2/{complaint_id}`.
    pub async fn complaint(&self, complaint_id: &str) -> Result<Complaint, PayError> {
        check_complaint_id(complaint_id)?;
        self.call_json(Method::GET, &format!("{BASE}/{complaint_id}"), None)
            .await
    }

    /// One page of the negotiation history (`limit` 1–300, from `offset`).
    pub async fn complaint_history(
        &self,
        complaint_id: &str,
        limit: u32,
        offset: u32,
    ) -> Result<NegotiationPage, PayError> {
        check_complaint_id(complaint_id)?;
        let limit = limit.clamp(1, 300);
        self.call_json(
            Method::GET,
            &format!("{BASE}/{complaint_id}/negotiation-historys?limit={limit}&offset={offset}"),
            None,
        )
        .await
    }

    /// Replies to the user (204). Not idempotent: every call posts a message.
    pub async fn respond_complaint(
        &self,
        complaint_id: &str,
        content: &str,
    ) -> Result<(), PayError> {
        check_complaint_id(complaint_id)?;
        let body = to_body(&serde_json::json!({
            "complainted_mchid": self.mchid(),
            "response_content": content,
        }))?;
        self.call(
            Method::POST,
            &format!("{BASE}/{complaint_id}/response"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Marks the complaint handled (204).
    pub async fn complete_complaint(&self, complaint_id: &str) -> Result<(), PayError> {
        check_complaint_id(complaint_id)?;
        let body = to_body(&serde_json::json!({ "complainted_mchid": self.mchid() }))?;
        self.call(
            Method::POST,
            &format!("{BASE}/{complaint_id}/complete"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Answers a refund request (204). An APPROVE moves no money.
    pub async fn update_complaint_refund_progress(
        &self,
        complaint_id: &str,
        progress: &RefundProgressBody,
    ) -> Result<(), PayError> {
        check_complaint_id(complaint_id)?;
        self.call(
            Method::POST,
            &format!("{BASE}/{complaint_id}/update-refund-progress"),
            Some(to_body(progress)?),
        )
        .await
        .map(|_| ())
    }

    /// The complaint notification URL, or `None` when none is set (404).
    pub async fn complaint_notification_url(
        &self,
    ) -> Result<Option<ComplaintNotificationUrl>, PayError> {
        match self.call_json(Method::GET, NOTIFICATIONS, None).await {
            Ok(url) => Ok(Some(url)),
            Err(PayError::Api(e)) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates (`POST`, when `exists` is false) or updates (`PUT`) the notification URL.
    pub async fn put_complaint_notification_url(
        &self,
        url: &str,
        exists: bool,
    ) -> Result<ComplaintNotificationUrl, PayError> {
        check_notification_url(url)?;
        let method = if exists { Method::PUT } else { Method::POST };
        let body = to_body(&serde_json::json!({ "url": url }))?;
        self.call_json(method, NOTIFICATIONS, Some(body)).await
    }
}

/// The platform's rules for the URL: `https://`, at most 255 characters, no query string.
pub fn check_notification_url(url: &str) -> Result<(), ValidationError> {
    let problem = if url.len() > 255 {
        Some("must be at most 255 characters")
    } else if !url.starts_with("https://") || url.len() <= "https://".len() {
        Some("must be an https:// URL")
    } else if url.contains('?') || url.contains('#') {
        Some("must not have a query string or fragment")
    } else if !url.is_ascii() {
        Some("must be ASCII (no internationalised domain)")
    } else {
        None
    };
    match problem {
        Some(p) => Err(ValidationError {
            field: "url",
            problem: p.into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_urls_follow_the_platform_rules() {
        assert!(check_notification_url("https://api.example.com/payNotify/complaints").is_ok());
        assert!(check_notification_url("http://api.example.com/x").is_err());
        assert!(check_notification_url("https://api.example.com/x?a=1").is_err());
        assert!(check_notification_url(&format!("https://{}", "a".repeat(250))).is_err());
        assert!(check_notification_url("https://例子.com/x").is_err());
    }

    #[test]
    fn a_complaint_notice_is_read_from_a_complaint_event_only() {
        let n = Notification::Other {
            id: "EV-1".into(),
            event_type: "COMPLAINT.CREATE".into(),
            resource: serde_json::json!({"complaint_id": "200201820200101080076610000",
                "action_type": "CREATE_COMPLAINT", "out_trade_no": "legacy"}),
        };
        let notice = ComplaintNotice::from_notification(&n).unwrap().unwrap();
        assert_eq!(notice.id, "EV-1");
        assert_eq!(notice.complaint_id, "200201820200101080076610000");
        let bad = Notification::Other {
            id: "EV-2".into(),
            event_type: "COMPLAINT.STATE_CHANGE".into(),
            resource: serde_json::json!({"complaint_id": "../../refund"}),
        };
        assert!(ComplaintNotice::from_notification(&bad).unwrap().is_err());
        let other = Notification::Other {
            id: "EV-3".into(),
            event_type: "PROFITSHARING.SUCCESS".into(),
            resource: serde_json::json!({}),
        };
        assert!(ComplaintNotice::from_notification(&other).is_none());
    }
}
