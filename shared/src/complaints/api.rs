//! The complaint APIs behind one trait: WeChat Pay complaints 2.0 ([`WxpayComplaints`], v3
//! signed) and virtual payment complaints ([`XpayComplaints`], access token + `pay_sig`). A
//! trait so the service is tested without a network and the deployment picks what is
//! configured.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::complaint::{ComplaintChannel, RefundProgress};
use crate::pay::v3::PayClient;
use crate::pay::v3::complaints::{Complaint, NegotiationEntry, RefundProgressBody};
use crate::pay::xpay::XpayClient;
use crate::pay::xpay_after_sale::with_access_token;
use crate::wechat::WechatClient;

/// A complaint API call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    /// Description (never a secret).
    pub message: String,
    /// Worth retrying later.
    pub retryable: bool,
}

impl ApiFailure {
    fn from_pay(e: &crate::pay::v3::PayError) -> Self {
        Self {
            message: e.to_string(),
            retryable: e.is_retryable(),
        }
    }

    fn from_xpay(e: &crate::pay::xpay::XpayError) -> Self {
        Self {
            message: e.to_string(),
            retryable: e.is_retryable(),
        }
    }
}

/// The operations the complaints service needs from a channel.
#[async_trait]
pub trait ComplaintApi: Send + Sync {
    /// Which channel this is.
    fn channel(&self) -> ComplaintChannel;
    /// The complaint as the platform has it now.
    async fn detail(&self, complaint_id: &str) -> Result<Complaint, ApiFailure>;
    /// The negotiation history (first page, up to 100 entries).
    async fn history(&self, complaint_id: &str) -> Result<Vec<NegotiationEntry>, ApiFailure>;
    /// A reply to the user.
    async fn respond(&self, complaint_id: &str, content: &str) -> Result<(), ApiFailure>;
    /// Marks the complaint handled.
    async fn complete(&self, complaint_id: &str) -> Result<(), ApiFailure>;
    /// Answers a refund request (WeChat Pay only).
    async fn refund_progress(
        &self,
        complaint_id: &str,
        progress: &RefundProgress,
    ) -> Result<(), ApiFailure>;
    /// Complaints made between two dates (`yyyy-mm-dd`), first page: how a push that names no
    /// complaint is followed up.
    async fn between(&self, begin: &str, end: &str) -> Result<Vec<Complaint>, ApiFailure>;
}

/// WeChat Pay complaints 2.0 over the merchant's v3 client.
pub struct WxpayComplaints(pub Arc<PayClient>);

#[async_trait]
impl ComplaintApi for WxpayComplaints {
    fn channel(&self) -> ComplaintChannel {
        ComplaintChannel::Wxpay
    }

    async fn detail(&self, complaint_id: &str) -> Result<Complaint, ApiFailure> {
        self.0
            .complaint(complaint_id)
            .await
            .map_err(|e| ApiFailure::from_pay(&e))
    }

    async fn history(&self, complaint_id: &str) -> Result<Vec<NegotiationEntry>, ApiFailure> {
        self.0
            .complaint_history(complaint_id, 100, 0)
            .await
            .map(|page| page.data)
            .map_err(|e| ApiFailure::from_pay(&e))
    }

    async fn respond(&self, complaint_id: &str, content: &str) -> Result<(), ApiFailure> {
        self.0
            .respond_complaint(complaint_id, content)
            .await
            .map_err(|e| ApiFailure::from_pay(&e))
    }

    async fn complete(&self, complaint_id: &str) -> Result<(), ApiFailure> {
        self.0
            .complete_complaint(complaint_id)
            .await
            .map_err(|e| ApiFailure::from_pay(&e))
    }

    async fn refund_progress(
        &self,
        complaint_id: &str,
        progress: &RefundProgress,
    ) -> Result<(), ApiFailure> {
        let body = match progress {
            RefundProgress::Approve {
                launch_refund_day,
                remark,
            } => RefundProgressBody {
                action: "APPROVE",
                launch_refund_day: Some(*launch_refund_day),
                reject_reason: None,
                remark: remark.clone(),
            },
            RefundProgress::Reject { reason, remark } => RefundProgressBody {
                action: "REJECT",
                launch_refund_day: None,
                reject_reason: Some(reason.clone()),
                remark: remark.clone(),
            },
        };
        self.0
            .update_complaint_refund_progress(complaint_id, &body)
            .await
            .map_err(|e| ApiFailure::from_pay(&e))
    }

    async fn between(&self, _begin: &str, _end: &str) -> Result<Vec<Complaint>, ApiFailure> {
        // WeChat Pay notifications always name their complaint: no listing is needed.
        Ok(Vec::new())
    }
}

/// Virtual payment complaints over the xpay client and the shared access token.
pub struct XpayComplaints {
    client: XpayClient,
    wechat: Arc<WechatClient>,
}

impl XpayComplaints {
    /// Complaints of virtual payment `client`, with `wechat`'s access token.
    pub fn new(client: XpayClient, wechat: Arc<WechatClient>) -> Self {
        Self { client, wechat }
    }
}

#[async_trait]
impl ComplaintApi for XpayComplaints {
    fn channel(&self) -> ComplaintChannel {
        ComplaintChannel::Xpay
    }

    async fn detail(&self, complaint_id: &str) -> Result<Complaint, ApiFailure> {
        with_access_token(&self.wechat, |t| async move {
            self.client.complaint_detail(&t, complaint_id).await
        })
        .await
        .map_err(|e| ApiFailure::from_xpay(&e))
    }

    async fn history(&self, complaint_id: &str) -> Result<Vec<NegotiationEntry>, ApiFailure> {
        with_access_token(&self.wechat, |t| async move {
            self.client
                .complaint_history(&t, complaint_id, 0, 100)
                .await
        })
        .await
        .map_err(|e| ApiFailure::from_xpay(&e))
    }

    async fn respond(&self, complaint_id: &str, content: &str) -> Result<(), ApiFailure> {
        with_access_token(&self.wechat, |t| async move {
            self.client
                .respond_complaint(&t, complaint_id, content)
                .await
        })
        .await
        .map_err(|e| ApiFailure::from_xpay(&e))
    }

    async fn complete(&self, complaint_id: &str) -> Result<(), ApiFailure> {
        with_access_token(&self.wechat, |t| async move {
            self.client.complete_complaint(&t, complaint_id).await
        })
        .await
        .map_err(|e| ApiFailure::from_xpay(&e))
    }

    async fn refund_progress(
        &self,
        _complaint_id: &str,
        _progress: &RefundProgress,
    ) -> Result<(), ApiFailure> {
        Err(ApiFailure {
            message: "virtual payment has no refund progress API".into(),
            retryable: false,
        })
    }

    async fn between(&self, begin: &str, end: &str) -> Result<Vec<Complaint>, ApiFailure> {
        with_access_token(&self.wechat, |t| async move {
            self.client.complaint_list(&t, begin, end, 0, 50).await
        })
        .await
        .map(|list| list.complaints)
        .map_err(|e| ApiFailure::from_xpay(&e))
    }
}
