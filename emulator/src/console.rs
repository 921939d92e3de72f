//! The web console: one static page (`console.html`, plain HTML/JS) and a small JSON API
//! over the store. It shows what the functions wrote (users, orders, entitlements,
//! subscriptions, posts) next to what the stand-ins saw (payments, notifications and their
//! attempts, content checks, subscribe messages), and acts as the operator would: pay an
//! order, fail the next notification, refund, approve or reject a post, move the clock.
//!
//! Admin actions go through the functions themselves (createOrder `refund`, ugcUpload
//! `approve`/`reject`) as the dev user `admin`, so they follow the same rules as production.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, Update, UpdateOptions, collections};

use crate::http::{Request, Response};
use crate::keys::{ALNUM, random_from};
use crate::suite::{Suite, internal};

const PAGE: &str = include_str!("console.html");

/// The dev user the console acts as for admin actions.
pub const ADMIN_USER: &str = "admin";

/// Collections shown, newest first: (collection, sort key).
const SHOWN: [(&str, &str); 16] = [
    (collections::USERS, "_id"),
    (collections::ORDERS, "_id"),
    (collections::ENTITLEMENTS, "_id"),
    (collections::SUBSCRIPTIONS, "_id"),
    (collections::POSTS, "_id"),
    (collections::MODERATION_JOBS, "_id"),
    (collections::PAYMENT_EVENTS, "_id"),
    (collections::PRODUCTS, "_id"),
    (collections::CONTENTS, "_id"),
    (collections::PLANS, "_id"),
    (crate::wechat_pay::PAY_ORDERS, "createdAt"),
    (crate::wechat_pay::REFUNDS, "createdAt"),
    (crate::wechat_api::XPAY_ORDERS, "createTime"),
    (crate::deliveries::DELIVERIES, "createdAt"),
    (crate::wechat_api::CHECKS, "createdAt"),
    (crate::wechat_api::MESSAGES, "sentAt"),
];

/// Routes `/`, `/console` and `/console/api/*`.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    let response = match (&req.method, req.path.as_str()) {
        (&Method::GET, "/" | "/console" | "/console/") => {
            Response::bytes(StatusCode::OK, "text/html; charset=utf-8", PAGE)
        }
        (&Method::GET, "/console/api/state") => state(suite).await,
        (&Method::POST, "/console/api/action") => match req.json::<Value>() {
            Ok(body) => action(suite, &body).await,
            Err(e) => Response::json(
                StatusCode::BAD_REQUEST,
                &json!({"ok": false, "error": {"code": "BAD_JSON", "message": e.to_string()}}),
            ),
        },
        _ => return None,
    };
    Some(response)
}

async fn state(suite: &Suite) -> Response {
    let mut out = serde_json::Map::new();
    for (collection, sort) in SHOWN {
        let docs = suite
            .store
            .find(
                collection,
                &Filter::all_of([]),
                &FindOptions::new().sort_desc(sort).limit(100),
            )
            .await;
        match docs {
            Ok(d) => {
                out.insert(collection.to_owned(), Value::Array(d));
            }
            Err(e) => return internal(e),
        }
    }
    out.insert(
        "suite".into(),
        json!({
            "now": suite.clock.now(), "clockOffsetSecs": suite.clock.offset(), "baseUrl": suite.base_url(),
            "appid": suite.keys.appid, "mchid": suite.keys.mchid, "adminOpenid": suite.keys.openid_for(ADMIN_USER),
            "stableTokenFetches": crate::wechat_api::counter(suite, "stable_token").await,
            "failNext": suite.store.get(crate::deliveries::STATE, "deliveries").await.ok().flatten().and_then(|d| d["failNext"].as_i64()).unwrap_or(0),
            "functions": suite.functions.status().await,
        }),
    );
    Response::json(StatusCode::OK, &Value::Object(out))
}

fn done(data: Value) -> Response {
    Response::json(StatusCode::OK, &json!({"ok": true, "data": data}))
}

fn refused(code: &str, message: &str) -> Response {
    Response::json(
        StatusCode::OK,
        &json!({"ok": false, "error": {"code": code, "message": message}}),
    )
}

/// Marks the admin dev user as a project admin in `users` (when it has logged in).
pub async fn promote_admin(suite: &Suite) -> Result<bool, wemint::store::StoreError> {
    let openid = suite.keys.openid_for(ADMIN_USER);
    let updated = suite
        .store
        .update_one(
            collections::USERS,
            &Filter::eq("openid", openid),
            &Update::new().set("role", "admin"),
            UpdateOptions::default(),
        )
        .await?;
    Ok(updated.is_some())
}

/// A session token for the dev user `admin` with the admin role: logs in through the real
/// `login` function (a dev `wx.login` code), marking the user admin in `users` if needed.
/// Admin rights come only from the session (`identity::Caller::admin`), as in production.
pub async fn admin_token(suite: &Suite) -> Result<String, Response> {
    let openid = suite.keys.openid_for(ADMIN_USER);
    for attempt in 0..2 {
        let minted = crate::wechat_api::mint_code(suite, ADMIN_USER).await?;
        let code = minted["code"].as_str().unwrap_or_default().to_owned();
        let reply = crate::gateway::call(
            suite,
            &openid,
            "login",
            json!({"action": "login", "code": code}),
            None,
        )
        .await?;
        if reply["ok"] != json!(true) {
            return Err(Response::json(StatusCode::OK, &reply));
        }
        if reply["data"]["user"]["role"] == json!("admin")
            && let Some(token) = reply["data"]["token"].as_str()
        {
            return Ok(token.to_owned());
        }
        if attempt == 0 {
            promote_admin(suite).await.map_err(internal)?;
        }
    }
    Err(refused(
        "NOT_ADMIN",
        "login did not give the dev user `admin` the admin role",
    ))
}

async fn as_admin(suite: &Suite, function: &str, data: Value) -> Response {
    let token = match admin_token(suite).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let openid = suite.keys.openid_for(ADMIN_USER);
    match crate::gateway::call(suite, &openid, function, data, Some(&token)).await {
        Ok(envelope) => Response::json(StatusCode::OK, &envelope),
        Err(r) => r,
    }
}

async fn action(suite: &Suite, body: &Value) -> Response {
    let s = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    match s("action").as_str() {
        "pay" => match crate::wechat_pay::pay(suite, &s("outTradeNo")).await {
            Ok(t) => done(t),
            Err(e) => refused("PAY_REFUSED", &e.to_string()),
        },
        "failNext" => match crate::deliveries::fail_next(
            suite,
            body["count"].as_i64().unwrap_or(1).clamp(1, 100),
        )
        .await
        {
            Ok(n) => done(json!({"failNext": n})),
            Err(e) => internal(e),
        },
        "advanceClock" => {
            let secs = body["secs"].as_i64().unwrap_or(0);
            if secs <= 0 {
                return refused("BAD_SECS", "secs must be positive");
            }
            match suite.advance_clock(secs).await {
                Ok(offset) => done(json!({"offsetSecs": offset})),
                Err(e) => internal(e),
            }
        }
        "promoteAdmin" => match promote_admin(suite).await {
            Ok(true) => done(json!({"openid": suite.keys.openid_for(ADMIN_USER)})),
            Ok(false) => refused("NOT_FOUND", "the admin dev user has not logged in yet"),
            Err(e) => internal(e),
        },
        "refund" => {
            let mut data = json!({"action": "refund", "orderId": s("orderId"),
                "refundNo": format!("RF{}", random_from(ALNUM, 16)), "reason": "console refund"});
            if let Some(fen) = body["amountFen"].as_i64() {
                data["amountFen"] = json!(fen);
            }
            as_admin(suite, "createOrder", data).await
        }
        "approve" => {
            as_admin(
                suite,
                "ugcUpload",
                json!({"action": "approve", "postId": s("postId")}),
            )
            .await
        }
        "reject" => {
            let reason = body["reason"]
                .as_str()
                .unwrap_or("rejected in the dev console");
            as_admin(
                suite,
                "ugcUpload",
                json!({"action": "reject", "postId": s("postId"), "reason": reason}),
            )
            .await
        }
        other => refused(
            "UNKNOWN_ACTION",
            &format!("unknown console action `{other}`"),
        ),
    }
}
