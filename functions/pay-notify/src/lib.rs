//! The `payNotify` function: WeChat Pay notifications (HTTP-triggered webhook).
//!
//! `POST /payNotify`: API v3 JSON. Verify (headers, serial, timestamp window, RSA over the exact
//! bytes) → decrypt (AES-256-GCM, APIv3 key) → parse → apply through `wemint::commerce`, which
//! checks mchid/appid/amount/currency/payer and moves the order to paid exactly once.
//! `POST /payNotify/v2`: API v2 XML, when `WECHATPAY_APIV2_KEY` is set: payment
//! notifications (signed) and refund notifications (`req_info`, decrypted with the key).
//! `POST /payNotify/complaints`: WeChat Pay complaint notifications (`COMPLAINT.*`), verified
//! and decrypted exactly like payment notifications, then read back from the complaint API
//! and stored by `wemint::complaints` (a redelivered notification is applied once).
//!
//! Success is `204` (v3) / the v2 SUCCESS XML; anything else is `4xx`/`5xx` with
//! `{"code":"FAIL","message":…}` so WeChat Pay redelivers. A verified payment that does not
//! match its order is held for review and acknowledged (redelivery would not change it).

use std::sync::Arc;

use http::StatusCode;
use wemint::commerce::{Commerce, CommerceError, PaymentOutcome};
use wemint::complaints::{Complaints, ComplaintsError, NoticeOutcome};
use wemint::pay::v2::{self, ApiV2Key};
use wemint::pay::v2_refund;
use wemint::pay::v3::complaints::ComplaintNotice;
use wemint::pay::v3::{
    Notification, NotifyError, PayClient, SignatureHeaders, VerifyError, notify::failure_reply,
};
use wemint::runtime::{ApiError, BoxError, Function, WebhookRequest, WebhookResponse};
use wemint::setup::Deps;

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "payNotify";

/// Built once per instance.
pub struct State {
    commerce: Commerce,
    complaints: Complaints,
    pay: Arc<PayClient>,
    v2_key: Option<ApiV2Key>,
}

fn fail(status: StatusCode, message: &str) -> WebhookResponse {
    WebhookResponse::with_body(status, "application/json", failure_reply(message))
}

fn store_failure(err: &CommerceError) -> WebhookResponse {
    tracing::error!(error = %err, "notification not applied");
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily unable to process",
    )
}

async fn init(config: wemint::config::Config) -> Result<State, BoxError> {
    let deps = Deps::from_config(&config).await?;
    let pay = deps.wechat_pay.clone();
    Ok(State {
        commerce: deps.commerce(),
        complaints: deps.complaints(),
        pay: pay.ok_or("payNotify needs WeChat Pay: set WECHATPAY_MCHID and its keys")?,
        v2_key: config
            .wechat_pay_v2_key()?
            .map(|k| ApiV2Key::new(k.expose().clone())),
    })
}

/// Verifies and decrypts; with platform certificates, an unknown serial triggers one
/// certificate download (WeChat rotated them) and a second try. Those downloads are throttled
/// across instances through the store (`PayClient::download_for_unknown_serial`), so forged
/// serials cannot make us hammer WeChat Pay.
async fn verified(state: &State, req: &WebhookRequest) -> Result<Notification, WebhookResponse> {
    let headers = SignatureHeaders::from_header_map(&req.headers)
        .map_err(|e| fail(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    let mut result = state.pay.parse_notification(&headers, &req.body);
    if matches!(
        result,
        Err(NotifyError::Verify(VerifyError::UnknownSerial(_)))
    ) {
        match state.pay.download_for_unknown_serial().await {
            Ok(true) => result = state.pay.parse_notification(&headers, &req.body),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "platform certificate download failed");
                return Err(fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "platform certificates unavailable",
                ));
            }
        }
    }
    result.map_err(|e| {
        tracing::warn!(error = %e, "notification refused");
        match e {
            NotifyError::Verify(_) => fail(StatusCode::UNAUTHORIZED, "signature check failed"),
            _ => fail(StatusCode::BAD_REQUEST, "malformed notification"),
        }
    })
}

async fn handle_v3(state: Arc<State>, req: WebhookRequest) -> WebhookResponse {
    let notification = match verified(&state, &req).await {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    match notification {
        Notification::TransactionSuccess { id, transaction } => {
            match state
                .commerce
                .apply_wxpay_transaction(&id, "v3_notify", &transaction)
                .await
            {
                Ok(PaymentOutcome::UnknownOrder) => {
                    tracing::error!(out_trade_no = %transaction.out_trade_no,
                        "verified payment for an unknown order");
                    fail(StatusCode::NOT_FOUND, "unknown order")
                }
                Ok(outcome) => {
                    tracing::info!(event = %id, outcome = ?outcome, "payment notification");
                    WebhookResponse::new(StatusCode::NO_CONTENT)
                }
                Err(e) => store_failure(&e),
            }
        }
        Notification::Refund { id, refund, .. } => {
            match state.commerce.apply_refund_notification(&id, &refund).await {
                Ok(settled) => {
                    tracing::info!(event = %id, refund = %refund.out_refund_no, settled, "refund notification");
                    WebhookResponse::new(StatusCode::NO_CONTENT)
                }
                Err(e) => store_failure(&e),
            }
        }
        Notification::Other { id, event_type, .. } => {
            tracing::info!(event = %id, event_type = %event_type, "notification ignored");
            WebhookResponse::new(StatusCode::NO_CONTENT)
        }
    }
}

/// A verified complaint notification: read the complaint back and store it. Answered 204 once
/// stored (or already applied); 5xx when the complaint API or the store fails, so WeChat Pay
/// redelivers.
async fn handle_complaint(state: Arc<State>, req: WebhookRequest) -> WebhookResponse {
    let notification = match verified(&state, &req).await {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let notice = match ComplaintNotice::from_notification(&notification) {
        Some(Ok(notice)) => notice,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "complaint notification refused");
            return fail(StatusCode::BAD_REQUEST, "malformed complaint notification");
        }
        None => {
            tracing::warn!(event = %notification.id(), "not a complaint notification");
            return fail(StatusCode::BAD_REQUEST, "not a complaint notification");
        }
    };
    match state.complaints.on_wxpay_notice(&notice).await {
        Ok(outcome) => {
            let duplicate = outcome == NoticeOutcome::Duplicate;
            tracing::info!(event = %notice.id, complaint = %notice.complaint_id,
                action = %notice.action_type, duplicate, "complaint notification");
            WebhookResponse::new(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            tracing::error!(event = %notice.id, complaint = %notice.complaint_id, error = %e,
                "complaint notification not applied");
            let status = match e {
                ComplaintsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            fail(status, "temporarily unable to process")
        }
    }
}

fn xml(status: StatusCode, body: String) -> WebhookResponse {
    WebhookResponse::with_body(status, "application/xml", body)
}

async fn handle_v2(state: Arc<State>, req: WebhookRequest) -> WebhookResponse {
    let Some(key) = &state.v2_key else {
        return xml(
            StatusCode::NOT_FOUND,
            v2::reply_fail("API v2 is not configured"),
        );
    };
    let Ok(text) = std::str::from_utf8(&req.body) else {
        return xml(StatusCode::BAD_REQUEST, v2::reply_fail("not UTF-8"));
    };
    if text.len() > v2_refund::MAX_NOTIFY_BYTES {
        return xml(StatusCode::PAYLOAD_TOO_LARGE, v2::reply_fail("too large"));
    }
    if let Ok(fields) = v2::from_xml(text)
        && v2_refund::is_refund_notify(&fields)
    {
        return handle_v2_refund(&state, &fields, key).await;
    }
    let notify = match v2::parse_notify(text, key) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "v2 notification refused");
            return xml(
                StatusCode::UNAUTHORIZED,
                v2::reply_fail("verification failed"),
            );
        }
    };
    match state.commerce.apply_v2_notification(&notify).await {
        Ok(PaymentOutcome::UnknownOrder) => {
            xml(StatusCode::NOT_FOUND, v2::reply_fail("unknown order"))
        }
        Ok(_) => xml(StatusCode::OK, v2::REPLY_SUCCESS.to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "v2 notification not applied");
            xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                v2::reply_fail("temporarily unable to process"),
            )
        }
    }
}

/// A v2 refund notification: no signature, authentic only if `req_info` decrypts with our
/// APIv2 key and names our merchant and app; then the refund settles once.
async fn handle_v2_refund(state: &State, fields: &v2::Params, key: &ApiV2Key) -> WebhookResponse {
    let notify = match v2_refund::parse_refund_fields(fields, key) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "v2 refund notification refused");
            return xml(
                StatusCode::UNAUTHORIZED,
                v2::reply_fail("verification failed"),
            );
        }
    };
    match state.commerce.apply_v2_refund_notification(&notify).await {
        Ok(settled) => {
            tracing::info!(refund = %notify.out_refund_no, status = ?notify.refund_status,
                settled, "v2 refund notification");
            xml(StatusCode::OK, v2::REPLY_SUCCESS.to_owned())
        }
        Err(e) => {
            tracing::error!(error = %e, "v2 refund notification not applied");
            xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                v2::reply_fail("temporarily unable to process"),
            )
        }
    }
}

fn post_only(req: &WebhookRequest) -> Option<WebhookResponse> {
    (req.method != http::Method::POST).then(|| fail(StatusCode::METHOD_NOT_ALLOWED, "POST only"))
}

/// The function value `main` runs; tests build it the same way.
pub fn function() -> Function<State> {
    Function::with_init(NAME, env!("CARGO_PKG_VERSION"), init)
        .webhook("/payNotify/v2", |state: Arc<State>, req| async move {
            if let Some(reply) = post_only(&req) {
                return Ok::<_, ApiError>(reply);
            }
            Ok(handle_v2(state, req).await)
        })
        .webhook(
            "/payNotify/complaints",
            |state: Arc<State>, req| async move {
                if let Some(reply) = post_only(&req) {
                    return Ok::<_, ApiError>(reply);
                }
                Ok(handle_complaint(state, req).await)
            },
        )
        .webhook("/payNotify", |state: Arc<State>, req| async move {
            if let Some(reply) = post_only(&req) {
                return Ok::<_, ApiError>(reply);
            }
            Ok(handle_v3(state, req).await)
        })
}

#[cfg(test)]
mod tests;
