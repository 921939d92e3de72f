//! The CRM receiver stand-in (`CRM_WEBHOOK_URL` = `<suite>/crm/webhook`): what a merchant's
//! CRM does with wemint's customer pushes. It checks the signature over the raw body with
//! the dev secret ([`DEV_SECRET`], `wemint::crm::webhook::verify`), refuses a timestamp more
//! than five minutes from the dev clock, and records every delivery in [`DELIVERIES`] with
//! whether it was valid and whether its idempotency key was new. Fault hooks (`System::Crm`)
//! make it fail with any HTTP status, so tests see the pushes retried.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::crm::webhook::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use wemint::store::{Filter, FindOptions};

use crate::http::{Request, Response};
use crate::suite::{Suite, internal};

/// Deliveries received (valid or not), in arrival order.
pub const DELIVERIES: &str = "dev_crm_deliveries";
/// The webhook's path on the suite's port.
pub const PATH: &str = "/crm/webhook";
/// The shared secret the suite gives the functions (`CRM_WEBHOOK_SECRET`): dev only.
pub const DEV_SECRET: &str = "wemint-dev-crm-webhook-secret";
/// How far a signature's timestamp may be from the dev clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Answers `POST /crm/webhook`.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    if req.path != PATH {
        return None;
    }
    if req.method != Method::POST {
        return Some(Response::empty(StatusCode::METHOD_NOT_ALLOWED));
    }
    Some(receive(suite, req).await)
}

async fn receive(suite: &Suite, req: &Request) -> Response {
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let key = req
        .header(IDEMPOTENCY_HEADER)
        .unwrap_or_default()
        .to_owned();
    let timestamp = req
        .header(TIMESTAMP_HEADER)
        .and_then(|t| t.trim().parse::<i64>().ok());
    let signature = req.header(SIGNATURE_HEADER).unwrap_or_default();
    let now = suite.clock.now();
    let valid = timestamp.is_some_and(|ts| {
        (now - ts).abs() <= TOLERANCE_SECS && verify(DEV_SECRET.as_bytes(), ts, &body, signature)
    });
    let first = if valid {
        match suite
            .store
            .count(
                DELIVERIES,
                &Filter::eq("key", key.as_str()).and(Filter::eq("valid", true)),
            )
            .await
        {
            Ok(n) => n == 0,
            Err(e) => return internal(e),
        }
    } else {
        false
    };
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let record = json!({
        "key": key,
        "valid": valid,
        "first": first,
        "at": now,
        "openid": parsed["customer"]["openid"],
        "version": parsed["version"],
        "body": parsed,
    });
    if let Err(e) = suite.store.insert(DELIVERIES, record).await {
        return internal(e);
    }
    if valid {
        Response::json(
            StatusCode::OK,
            &json!({"received": true, "duplicate": !first}),
        )
    } else {
        Response::json(StatusCode::UNAUTHORIZED, &json!({"error": "bad signature"}))
    }
}

/// Every delivery received, in arrival order.
pub async fn deliveries(suite: &Suite) -> Vec<Value> {
    suite
        .store
        .find(
            DELIVERIES,
            &Filter::All,
            &FindOptions::new().sort_asc("_id"),
        )
        .await
        .unwrap_or_default()
}

/// `GET /dev/crm` (the deliveries received) and `POST /dev/datacube` (a day's datacube
/// figures, [`crate::standins::datacube::set_day`]).
pub async fn dev(suite: &Suite, req: &Request, body: &Value) -> Option<Response> {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/dev/crm") => Some(Response::json(
            StatusCode::OK,
            &json!({"deliveries": deliveries(suite).await}),
        )),
        (&Method::POST, "/dev/datacube") => Some(
            match crate::standins::datacube::set_day(suite, body).await {
                Ok(v) => Response::json(StatusCode::OK, &v),
                Err(e) => Response::json(StatusCode::BAD_REQUEST, &json!({"error": e})),
            },
        ),
        _ => None,
    }
}
