//! Virtual payment after the sale: `xpay_refund_notify` settles a refund as `query_order`
//! confirms it, `xpay_complaint_notify` reads the complaint(s) back into `complaints`; and
//! pushes nobody handles are logged with their type and change nothing.

use http::StatusCode;
use wemint::commerce::XpayRefundOutcome;
use wemint::pay::xpay_after_sale::{parse_complaint_notify, parse_refund_notify};
use wemint::runtime::{ApiError, WebhookResponse};
use wemint::wechat::PushMessage;
use wemint::wechat::push::receipts;

use crate::State;

/// The JSON acknowledgement virtual payment pushes expect.
pub(crate) fn xpay_ack() -> WebhookResponse {
    WebhookResponse::json(StatusCode::OK, &wemint::pay::xpay::deliver_ack())
}

/// Whether the push is a virtual payment event (answered with [`xpay_ack`]).
pub(crate) fn is_xpay(message: &PushMessage) -> bool {
    message.event().is_some_and(|e| e.starts_with("xpay_"))
}

async fn handled(state: &State, message: &PushMessage, now: i64) -> Result<(), ApiError> {
    receipts::record_handled(state.store().as_ref(), message, now.saturating_mul(1000))
        .await
        .map(|_| ())
        .map_err(ApiError::internal)
}

/// `xpay_refund_notify`: the push names the refund; `query_order` on the refund number says
/// how it ended (success settles it, failure records it `abnormal` with the reason). Answered
/// once handled; a store or query failure is a 5xx so WeChat redelivers; an unreadable push
/// is refused (400) and changes nothing.
pub(crate) async fn refund(
    state: &State,
    message: &PushMessage,
    now: i64,
) -> Result<WebhookResponse, ApiError> {
    let push = match parse_refund_notify(&message.raw) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "xpay refund push unreadable");
            return Ok(WebhookResponse::text(
                StatusCode::BAD_REQUEST,
                "unreadable refund push",
            ));
        }
    };
    let outcome = state.commerce.apply_xpay_refund_push(&push).await?;
    tracing::info!(refund = %push.mch_refund_id, ret_code = push.ret_code, ?outcome,
        "xpay refund push handled");
    if outcome != XpayRefundOutcome::StillProcessing {
        handled(state, message, now).await?;
    }
    Ok(xpay_ack())
}

/// `xpay_complaint_notify`: a trigger; the complaints are read from the xpay complaint APIs
/// and stored. A failure is a 5xx (WeChat redelivers).
pub(crate) async fn complaint(
    state: &State,
    message: &PushMessage,
    now: i64,
) -> Result<WebhookResponse, ApiError> {
    let push = match parse_complaint_notify(&message.raw) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "xpay complaint push unreadable");
            return Ok(WebhookResponse::text(
                StatusCode::BAD_REQUEST,
                "unreadable complaint push",
            ));
        }
    };
    let stored = state.complaints.on_xpay_push(&push).await?;
    tracing::info!(openid = %push.openid, order = %push.mch_order_id, stored,
        "xpay complaint push handled");
    handled(state, message, now).await?;
    Ok(xpay_ack())
}

/// A push no handler knows: logged with its type, nothing stored, acknowledged (a retry
/// would not change the answer).
pub(crate) fn unrecognised(message: &PushMessage) -> WebhookResponse {
    let event = message.event().unwrap_or_default();
    tracing::warn!(
        unhandled_push = true,
        msg_type = %message.msg_type,
        event = %event,
        create_time = message.create_time,
        "push not handled: nothing changed"
    );
    if is_xpay(message) {
        xpay_ack()
    } else {
        WebhookResponse::text(StatusCode::OK, "success")
    }
}
