//! The shipping steps of reconciliation: re-sending shipment reports the platform did not
//! take, and reminding admins before the shipping deadline.

use async_trait::async_trait;
use serde_json::Value;

use super::super::Commerce;
use super::super::error::CommerceError;
use super::super::model::{OrderDoc, collections as c};
use super::super::shipping::MAX_ADMINS_REMINDED;
use super::{BATCH, ReconcileReport, Step};
use crate::domain::shipping::UploadState;
use crate::store::{Filter, FindOptions};

/// 5. Shipments whose report failed (or was interrupted): sent again once their backoff
///    (`shipping.upload.nextAt`) is over.
pub(super) struct ShippingUploads;

#[async_trait]
impl Step for ShippingUploads {
    type Item = OrderDoc;
    const NAME: &'static str = "shippingUploads";
    const MAX_CALLS: u32 = 1;

    async fn due(&self, commerce: &Commerce, now: i64) -> Result<Vec<OrderDoc>, CommerceError> {
        Ok(commerce
            .store
            .find_as(
                c::ORDERS,
                &Filter::is_in(
                    "shipping.upload.state",
                    ["pending", "failed"].map(Value::from),
                )
                .and(Filter::lte("shipping.upload.nextAt", now)),
                &FindOptions::new()
                    .sort_asc("shipping.upload.nextAt")
                    .limit(BATCH),
            )
            .await?)
    }

    async fn handle(
        &self,
        commerce: &Commerce,
        order: &OrderDoc,
        _now: i64,
        report: &mut ReconcileReport,
    ) -> Result<(), CommerceError> {
        report.shipping_uploads_retried += 1;
        if commerce.upload_shipping(order).await? == UploadState::Done {
            report.shipping_uploads_done += 1;
        }
        Ok(())
    }

    fn id(order: &OrderDoc) -> &str {
        &order.id
    }
}

/// 6. Orders still to ship whose deadline is near (or passed) and whose admins were not
///    reminded yet: one reminder per order.
pub(super) struct ShippingDeadlines;

#[async_trait]
impl Step for ShippingDeadlines {
    type Item = OrderDoc;
    const NAME: &'static str = "shippingDeadlines";
    /// One subscribe message per admin reminded.
    const MAX_CALLS: u32 = MAX_ADMINS_REMINDED;

    async fn due(&self, commerce: &Commerce, now: i64) -> Result<Vec<OrderDoc>, CommerceError> {
        let horizon = now + commerce.shipping_settings.remind_before_secs;
        Ok(commerce
            .store
            .find_as(
                c::ORDERS,
                &Filter::eq("shipping.state", "awaiting")
                    .and(Filter::lte("shipping.deadlineAt", horizon))
                    .and(Filter::exists("shipping.remindedAt", false)),
                &FindOptions::new()
                    .sort_asc("shipping.deadlineAt")
                    .limit(BATCH),
            )
            .await?)
    }

    async fn handle(
        &self,
        commerce: &Commerce,
        order: &OrderDoc,
        now: i64,
        report: &mut ReconcileReport,
    ) -> Result<(), CommerceError> {
        if commerce.remind_deadline(order, now).await? {
            report.shipping_reminders += 1;
        }
        Ok(())
    }

    fn id(order: &OrderDoc) -> &str {
        &order.id
    }
}
