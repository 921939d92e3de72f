//! The dev controls, `/dev/*`: the WeChat client's half (login and phone codes, payment
//! sheets), the operator's hand (pay an order, fail the next notification, move the clock, run
//! the timers, inject faults, act as the admin) and what the suite saw (`/dev/state`,
//! `/dev/stats`, `/dev/deliveries`). The console page, the demo and the tests all call these
//! same routes.
//!
//! Admin actions go through the functions themselves (createOrder `refund`, ugcUpload
//! `approve`/`reject`) as the dev user `admin`, so they follow the same rules as production.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, Update, UpdateOptions, collections};

use crate::deliveries;
use crate::http::{Request, Response};
use crate::keys::{ALNUM, random_from};
use crate::router::dev_user;
use crate::standins::faults::Fault;
use crate::suite::{Suite, internal};

/// The dev user the console acts as for admin actions.
pub const ADMIN_USER: &str = "admin";

/// Collections `/dev/state` shows, newest first: (collection, sort key).
const SHOWN: [(&str, &str); 18] = [
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
    (crate::standins::wechat_pay::PAY_ORDERS, "createdAt"),
    (crate::standins::wechat_pay::REFUNDS, "createdAt"),
    (crate::standins::wechat_api::XPAY_ORDERS, "createTime"),
    (crate::deliveries::DELIVERIES, "createdAt"),
    (crate::standins::wechat_api::CHECKS, "createdAt"),
    (crate::standins::wechat_api::MESSAGES, "sentAt"),
    (collections::COMPLAINTS, "respondBy"),
    // The realtime stream (negative `seq`: published, not yet numbered by a reader).
    (collections::EVENTS, "seq"),
];

fn bad_request(code: &str, message: &str) -> Response {
    Response::json(
        StatusCode::BAD_REQUEST,
        &json!({"code": code, "message": message}),
    )
}

/// Routes `/dev/*`.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    if !req.path.starts_with("/dev/") {
        return None;
    }
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match req.json() {
            Ok(v) => v,
            Err(e) => return Some(bad_request("BAD_JSON", &e.to_string())),
        }
    };
    if req.path.starts_with("/dev/oa/")
        && let Some(r) = crate::standins::official_account::dev(suite, req, &body).await
    {
        return Some(r);
    }
    // The CRM receiver's deliveries and the datacube figures (issue 20).
    if let Some(r) = crate::standins::crm::dev(suite, req, &body).await {
        return Some(r);
    }
    let response = match (&req.method, req.path.as_str()) {
        // The realtime function's socket URL and its open sockets (started on first use).
        (&Method::GET, "/dev/realtime") => {
            if suite.options.run_functions {
                let described = suite
                    .functions
                    .realtime
                    .describe(suite.function_env())
                    .await;
                Response::json(StatusCode::OK, &described)
            } else {
                bad_request(
                    "FUNCTIONS_DISABLED",
                    "functions are not started in this suite",
                )
            }
        }
        (&Method::POST, "/dev/login") => {
            // `openid` is accepted as the user name too (the Mini Program's e2e test sends it).
            let user = body["user"]
                .as_str()
                .or(body["openid"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| dev_user(req));
            match crate::standins::wechat_api::mint_code(suite, &user).await {
                Ok(v) => Response::json(StatusCode::OK, &v),
                Err(r) => r,
            }
        }
        (&Method::POST, "/dev/phoneCode") => {
            let user = body["user"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| dev_user(req));
            match crate::standins::wechat_api::mint_phone_code(
                suite,
                &user,
                body["phone"].as_str().unwrap_or("13800138000"),
            )
            .await
            {
                Ok(v) => Response::json(StatusCode::OK, &v),
                Err(r) => r,
            }
        }
        (&Method::POST, "/dev/requestPayment") => request_payment(suite, req, &body).await,
        (&Method::POST, "/dev/requestVirtualPayment") => {
            crate::standins::wechat_api::request_virtual_payment(
                suite,
                known_user(suite, req).as_deref(),
                &body,
            )
            .await
        }
        (&Method::POST, "/dev/pay") => {
            // `{channel, params}`: the payment createOrder returned, as the client submits it.
            let params = &body["params"];
            let reply = match body["channel"].as_str() {
                Some("wxpay") => request_payment(suite, req, params).await,
                Some("xpay") => {
                    crate::standins::wechat_api::request_virtual_payment(
                        suite,
                        known_user(suite, req).as_deref(),
                        params,
                    )
                    .await
                }
                _ => return Some(bad_request("BAD_CHANNEL", "channel must be wxpay or xpay")),
            };
            wrap_client_reply(reply)
        }
        (&Method::POST, path) if path.starts_with("/dev/pay/") => {
            let no = crate::http::decode_segment(&path["/dev/pay/".len()..]);
            pay_reply(crate::standins::wechat_pay::pay(suite, &no).await)
        }
        (&Method::POST, "/dev/clock/advance") => {
            let secs = body["secs"].as_i64().unwrap_or(0);
            if secs <= 0 {
                bad_request("BAD_SECS", "secs must be a positive number of seconds")
            } else {
                match suite.advance_clock(secs).await {
                    Ok(offset) => Response::json(
                        StatusCode::OK,
                        &json!({"offsetSecs": offset, "now": suite.clock.now()}),
                    ),
                    Err(e) => internal(e),
                }
            }
        }
        (&Method::POST, "/dev/timers/run") => {
            let only = body.get("trigger").and_then(Value::as_str);
            if only.is_some_and(|n| !crate::timers::TIMERS.iter().any(|t| t.trigger == n)) {
                return Some(bad_request(
                    "UNKNOWN_TRIGGER",
                    "no timer trigger has that name",
                ));
            }
            Response::json(
                StatusCode::OK,
                &crate::timers::fire_named(suite, only).await,
            )
        }
        (&Method::GET, "/dev/faults") => faults_reply(suite),
        (&Method::POST, "/dev/faults") => match serde_json::from_value::<Fault>(body) {
            Ok(fault) => {
                suite.faults.inject(fault);
                faults_reply(suite)
            }
            Err(e) => bad_request("BAD_FAULT", &e.to_string()),
        },
        (&Method::DELETE, "/dev/faults") => {
            suite.faults.clear();
            faults_reply(suite)
        }
        (&Method::GET, "/dev/state") => state(suite).await,
        (&Method::POST, "/dev/admin/promote") => match promote_admin(suite).await {
            Ok(true) => Response::json(
                StatusCode::OK,
                &json!({"ok": true, "data": {"openid": suite.keys.openid_for(ADMIN_USER)}}),
            ),
            Ok(false) => Response::json(
                StatusCode::NOT_FOUND,
                &json!({"ok": false, "error": {"code": "NOT_FOUND", "message": "the admin dev user has not logged in yet"}}),
            ),
            Err(e) => internal(e),
        },
        (&Method::POST, "/dev/admin/refund") => {
            let mut data = json!({"action": "refund", "orderId": body["orderId"],
                "refundNo": format!("RF{}", random_from(ALNUM, 16)), "reason": "console refund"});
            if let Some(fen) = body["amountFen"].as_i64() {
                data["amountFen"] = json!(fen);
            }
            as_admin(suite, "createOrder", data).await
        }
        (&Method::POST, "/dev/admin/approve") => {
            let data = json!({"action": "approve", "postId": body["postId"]});
            as_admin(suite, "ugcUpload", data).await
        }
        (&Method::POST, "/dev/admin/reject") => {
            let reason = body["reason"]
                .as_str()
                .unwrap_or("rejected in the dev console");
            let data = json!({"action": "reject", "postId": body["postId"], "reason": reason});
            as_admin(suite, "ugcUpload", data).await
        }
        (&Method::POST, "/dev/deliveries/failNext") => {
            let n = body["count"].as_i64().unwrap_or(1).clamp(1, 100);
            match deliveries::fail_next(suite, n).await {
                Ok(left) => Response::json(StatusCode::OK, &json!({"failNext": left})),
                Err(e) => internal(e),
            }
        }
        // Finance (issue 19): bill fault hooks, a merchant-console refund, admin finance calls.
        (&Method::POST, "/dev/bills/faults") => {
            match serde_json::from_value::<crate::standins::bills::BillFault>(body) {
                Ok(fault) => match crate::standins::bills::inject(suite, &fault).await {
                    Ok(()) => Response::json(StatusCode::OK, &json!({"ok": true})),
                    Err(e) => internal(e),
                },
                Err(e) => bad_request("BAD_FAULT", &e.to_string()),
            }
        }
        (&Method::POST, "/dev/bills/consoleRefund") => {
            let no = body["outTradeNo"].as_str().unwrap_or_default();
            let fen = body["amountFen"].as_i64().unwrap_or(0);
            match crate::standins::bills::console_refund(suite, no, fen).await {
                Ok(Some(r)) => Response::json(StatusCode::OK, &json!({"ok": true, "data": r})),
                Ok(None) => bad_request("NOT_REFUNDABLE", "no such paid order, or too much"),
                Err(e) => internal(e),
            }
        }
        (&Method::POST, "/dev/admin/finance") => as_admin(suite, "reconcile", body).await,
        (&Method::GET, "/dev/finance") => crate::standins::bills::console_state(suite).await,
        // Analytics (issue 20): the admin dashboard of the last 30 days (the `dashboard`
        // action's data, as the console reads it), and any admin action of `analytics`.
        (&Method::GET, "/dev/analytics") => analytics_dashboard(suite).await,
        (&Method::POST, "/dev/admin/analytics") => as_admin(suite, "analytics", body).await,
        // Demo shoppers' traffic into analytics, then today's aggregation (a fresh `up` gets a
        // dashboard with data from the console).
        (&Method::POST, "/dev/analytics/demo") => analytics_demo(suite).await,
        (&Method::GET, "/dev/env") => {
            let env: serde_json::Map<String, Value> = suite
                .function_env()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            Response::json(StatusCode::OK, &env)
        }
        (&Method::GET, "/dev/stats") => Response::json(
            StatusCode::OK,
            &json!({
                "stableTokenFetches": crate::standins::wechat_api::counter(suite, "stable_token").await,
                "clockOffsetSecs": suite.clock.offset(), "now": suite.clock.now(),
                "functions": suite.functions.status().await,
                "cloudbaseDb": suite.cloudbase_db.stats(),
            }),
        ),
        (&Method::GET, "/dev/deliveries") => {
            let filter = match req.param("ref") {
                Some(r) => Filter::eq("ref", r),
                None => Filter::all_of([]),
            };
            let options = wemint::store::FindOptions::new()
                .sort_desc("createdAt")
                .limit(50);
            match suite
                .store
                .find(deliveries::DELIVERIES, &filter, &options)
                .await
            {
                Ok(docs) => Response::json(StatusCode::OK, &docs),
                Err(e) => internal(e),
            }
        }
        (&Method::POST, "/dev/shipping/confirm") => {
            crate::standins::shipping::confirm_receipt(suite, &body).await
        }
        (&Method::POST, "/dev/shipping/settle") => {
            crate::standins::shipping::settle(suite, &body).await
        }
        (&Method::POST, "/dev/shipping/remind") => {
            crate::standins::shipping::remind_shipping(suite, &body).await
        }
        (&Method::POST, "/dev/admin/ship") => {
            let mut data = body;
            data["action"] = json!("ship");
            as_admin(suite, "createOrder", data).await
        }
        // Consumer complaints: raise one as a user; answer as the admin (createOrder).
        (&Method::POST, "/dev/complaints") => {
            match crate::standins::complaints::raise(suite, &body).await {
                Ok(c) => Response::json(StatusCode::OK, &json!({"ok": true, "data": c})),
                Err(r) => r,
            }
        }
        (&Method::POST, "/dev/admin/complaint") => {
            let known = [
                "complaintList",
                "complaintGet",
                "complaintRespond",
                "complaintComplete",
                "complaintRefundProgress",
            ];
            if !body["action"].as_str().is_some_and(|a| known.contains(&a)) {
                return Some(bad_request(
                    "BAD_REQUEST",
                    "action must be one of the complaint actions",
                ));
            }
            as_admin(suite, "createOrder", body.clone()).await
        }
        (&Method::POST, "/dev/xpay/failNextRefund") => {
            let n = body["count"].as_i64().unwrap_or(1).clamp(1, 100);
            match crate::standins::complaints::fail_next_refund(suite, n).await {
                Ok(left) => Response::json(StatusCode::OK, &json!({"failNext": left})),
                Err(e) => internal(e),
            }
        }
        (&Method::GET, "/dev/whoami") => {
            let user = dev_user(req);
            Response::json(
                StatusCode::OK,
                &json!({"user": user, "openid": suite.keys.openid_for(&user), "appid": suite.keys.appid}),
            )
        }
        _ => Response::not_found(&req.path),
    };
    Some(response)
}

/// The paying user when the client says who it is: `X-Wemint-Dev-User`, or a session token.
fn known_user(suite: &Suite, req: &Request) -> Option<String> {
    if req.header("x-wemint-dev-user").is_some() {
        return Some(suite.keys.openid_for(&dev_user(req)));
    }
    let token = req.header("authorization")?.strip_prefix("Bearer ")?;
    crate::standins::cloud_storage::token_subject(suite, token).ok()
}

/// A client-side payment reply as an envelope (`/dev/pay`).
fn wrap_client_reply(reply: Response) -> Response {
    let body = reply.body_json().unwrap_or(Value::Null);
    let envelope = if reply.status.is_success() {
        json!({"ok": true, "data": body})
    } else {
        json!({"ok": false, "error": {"code": "PAYMENT_FAILED", "message": body["errMsg"].as_str().unwrap_or("payment failed")}})
    };
    Response::json(reply.status, &envelope)
}

fn pay_reply(result: Result<Value, crate::standins::wechat_pay::PayError>) -> Response {
    use crate::standins::wechat_pay::PayError;
    match result {
        Ok(t) => Response::json(
            StatusCode::OK,
            &json!({"errMsg": "requestPayment:ok", "transaction": t}),
        ),
        Err(PayError::NotFound(m)) => Response::json(
            StatusCode::NOT_FOUND,
            &json!({"errMsg": format!("requestPayment:fail order {m} not found")}),
        ),
        Err(e @ PayError::NotPayable(..)) => Response::json(
            StatusCode::CONFLICT,
            &json!({"errMsg": format!("requestPayment:fail {e}")}),
        ),
        Err(PayError::Store(e)) => internal(e),
    }
}

/// The client half of `wx.requestPayment`: checks `paySign` with the merchant public key over
/// `appId\ntimeStamp\nnonceStr\npackage\n` as WeChat does, then pays the order.
async fn request_payment(suite: &Suite, req: &Request, params: &Value) -> Response {
    use base64::Engine;
    let s = |k: &str| params[k].as_str().unwrap_or_default().to_owned();
    if s("signType") != "RSA" {
        return Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"errMsg": "requestPayment:fail signType must be RSA"}),
        );
    }
    let message = wemint::pay::v3::sign::pay_sign_message(
        &suite.keys.appid,
        &s("timeStamp"),
        &s("nonceStr"),
        &s("package"),
    );
    let sig = base64::engine::general_purpose::STANDARD
        .decode(s("paySign"))
        .unwrap_or_default();
    if !suite.pay.merchant_key.verify(message.as_bytes(), &sig) {
        return Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"errMsg": "requestPayment:fail paySign error"}),
        );
    }
    let order = match crate::standins::wechat_pay::order_for_prepay(suite, &s("package")).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Response::json(
                StatusCode::NOT_FOUND,
                &json!({"errMsg": "requestPayment:fail prepay_id not found"}),
            );
        }
        Err(e) => return internal(e),
    };
    if known_user(suite, req)
        .is_some_and(|openid| order["openid"].as_str() != Some(openid.as_str()))
    {
        return Response::json(
            StatusCode::FORBIDDEN,
            &json!({"errMsg": "requestPayment:fail the order belongs to another user"}),
        );
    }
    if order["prepayAt"]
        .as_i64()
        .is_some_and(|t| t + 7200 < suite.clock.now())
    {
        return Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"errMsg": "requestPayment:fail prepay_id expired"}),
        );
    }
    pay_reply(
        crate::standins::wechat_pay::pay(suite, order["_id"].as_str().unwrap_or_default()).await,
    )
}

fn faults_reply(suite: &Suite) -> Response {
    Response::json(StatusCode::OK, &json!({"faults": suite.faults.pending()}))
}

/// Everything the console shows: the collections in [`SHOWN`] and the suite's own status.
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
            "stableTokenFetches": crate::standins::wechat_api::counter(suite, "stable_token").await,
            "failNext": suite.store.get(deliveries::STATE, "deliveries").await.ok().flatten().and_then(|d| d["failNext"].as_i64()).unwrap_or(0),
            "functions": suite.functions.status().await,
        }),
    );
    Response::json(StatusCode::OK, &Value::Object(out))
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
        let minted = crate::standins::wechat_api::mint_code(suite, ADMIN_USER).await?;
        let code = minted["code"].as_str().unwrap_or_default().to_owned();
        let reply = crate::standins::gateway::call(
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
    Err(Response::json(
        StatusCode::OK,
        &json!({"ok": false, "error": {"code": "NOT_ADMIN", "message": "login did not give the dev user `admin` the admin role"}}),
    ))
}

/// Calls `function` with `data` as the admin dev user; the reply is the function's envelope.
/// `POST /dev/analytics/demo`: `demo_analytics::traffic` against this suite; `{summary,
/// dashboard}`.
async fn analytics_demo(suite: &Suite) -> Response {
    let token = match admin_token(suite).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let client = match crate::demo::Client::new(&suite.base_url()) {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    match crate::demo_analytics::traffic(&client, &token).await {
        Ok((summary, dashboard)) => Response::json(
            StatusCode::OK,
            &json!({"summary": summary, "dashboard": dashboard}),
        ),
        Err(e) => Response::json(
            StatusCode::BAD_GATEWAY,
            &json!({"code": "ANALYTICS_DEMO_FAILED", "message": e}),
        ),
    }
}

/// `GET /dev/analytics`: the `analytics` function's `dashboard` (30 days) as the admin; its
/// data on success, the function's error envelope (status 502) otherwise.
async fn analytics_dashboard(suite: &Suite) -> Response {
    let token = match admin_token(suite).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let openid = suite.keys.openid_for(ADMIN_USER);
    let data = json!({"action": "dashboard", "days": 30});
    match crate::standins::gateway::call(suite, &openid, "analytics", data, Some(&token)).await {
        Ok(envelope) if envelope["ok"] == true => Response::json(StatusCode::OK, &envelope["data"]),
        Ok(envelope) => Response::json(StatusCode::BAD_GATEWAY, &envelope),
        Err(r) => r,
    }
}

async fn as_admin(suite: &Suite, function: &str, data: Value) -> Response {
    let token = match admin_token(suite).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let openid = suite.keys.openid_for(ADMIN_USER);
    match crate::standins::gateway::call(suite, &openid, function, data, Some(&token)).await {
        Ok(envelope) => Response::json(StatusCode::OK, &envelope),
        Err(r) => r,
    }
}
