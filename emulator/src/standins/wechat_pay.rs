//! The WeChat Pay API v3 stand-in (`WECHATPAY_API_BASE`): JSAPI prepay, query by
//! out_trade_no / transaction_id, close, refunds and their query.
//!
//! Like WeChat Pay it checks every request's merchant `Authorization` (401 `SIGN_ERROR` when
//! wrong), signs every response with its own key in public-key mode (`Wechatpay-Serial:
//! PUB_KEY_ID_…`), keeps orders in `dev_pay_orders`, and on "pay" marks an order paid and
//! sends the signed, AES-GCM-encrypted TRANSACTION.SUCCESS notification to the order's
//! notify_url through [`crate::deliveries`] (retried on WeChat's schedule). Refunds succeed
//! shortly after they are made and send REFUND.SUCCESS the same way. All protocol crypto is
//! `wemint::pay::v3::server`.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::pay::v3::models::JsapiPrepayBody;
use wemint::pay::v3::server::{NotificationSpec, SignedNotification, build_notification};
use wemint::store::{Filter, StoreError, Update, UpdateOptions};

use crate::clock::Clock;
use crate::deliveries::{self, DeliveryKind};
use crate::http::{Request, Response, decode_segment};
use crate::keys::{ALNUM, DIGITS, random_from};
use crate::suite::Suite;

/// Orders placed at the stand-in.
pub const PAY_ORDERS: &str = "dev_pay_orders";
/// Refunds.
pub const REFUNDS: &str = "dev_refunds";

/// A WeChat Pay error response (`{"code","message"}`), signed like any response.
fn pay_error(suite: &Suite, status: StatusCode, code: &str, message: &str) -> Response {
    signed(
        suite,
        Response::json(status, &json!({"code": code, "message": message})),
    )
}

/// Adds the `Wechatpay-*` signature headers over the exact body, and a `Request-ID`.
pub fn signed(suite: &Suite, mut response: Response) -> Response {
    let nonce = random_from(ALNUM, 32);
    match suite
        .pay
        .signer
        .sign(&response.body, suite.clock.now(), &nonce)
    {
        Ok(headers) => {
            for (name, value) in headers.pairs() {
                response = response.with_header(name, &value);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot sign a WeChat Pay response"),
    }
    response.with_header("Request-ID", &format!("dev-{}", random_from(ALNUM, 24)))
}

/// Routes `/v3/*`.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    if !req.path.starts_with("/v3/") {
        return None;
    }
    if req.header("user-agent").is_none_or(str::is_empty) {
        return Some(pay_error(
            suite,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "Http头缺少Accept或User-Agent",
        ));
    }
    let Some(authorization) = req.header("authorization") else {
        return Some(pay_error(
            suite,
            StatusCode::UNAUTHORIZED,
            "SIGN_ERROR",
            "Http头Authorization值格式错误",
        ));
    };
    if let Err(e) = suite.pay.merchant.verify_request(
        authorization,
        req.method.as_str(),
        &req.path_and_query(),
        &req.body,
        suite.clock.now(),
    ) {
        return Some(pay_error(
            suite,
            StatusCode::UNAUTHORIZED,
            "SIGN_ERROR",
            &format!("签名错误: {e}"),
        ));
    }
    let segments: Vec<String> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .map(decode_segment)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = match (&req.method, segments.as_slice()) {
        (&Method::POST, ["v3", "pay", "transactions", "jsapi"]) => jsapi(suite, req).await,
        (&Method::GET, ["v3", "pay", "transactions", "out-trade-no", no]) => {
            query(suite, req, Filter::id(*no)).await
        }
        (&Method::GET, ["v3", "pay", "transactions", "id", id]) => {
            query(suite, req, Filter::eq("transactionId", *id)).await
        }
        (&Method::POST, ["v3", "pay", "transactions", "out-trade-no", no, "close"]) => {
            close(suite, req, no).await
        }
        (&Method::POST, ["v3", "refund", "domestic", "refunds"]) => refund(suite, req).await,
        (&Method::GET, ["v3", "refund", "domestic", "refunds", no]) => {
            query_refund(suite, no).await
        }
        (_, ["v3", "merchant-service", ..]) => {
            Ok(crate::standins::complaints::v3(suite, req, &segments).await)
        }
        (&Method::GET, ["v3", "bill", "tradebill"]) => {
            super::bills::request(suite, req, "trade").await
        }
        (&Method::GET, ["v3", "bill", "fundflowbill"]) => {
            super::bills::request(suite, req, "fundFlow").await
        }
        (&Method::GET, ["v3", "billdownload", "file"]) => {
            Ok(super::bills::download(suite, req).await)
        }
        _ => Err(pay_error(
            suite,
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_EXISTS",
            &format!("{} {} is not emulated by wemint-dev", req.method, req.path),
        )),
    };
    Some(response.unwrap_or_else(|r| r))
}

fn param_error(suite: &Suite, message: &str) -> Response {
    pay_error(suite, StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
}

fn store_error(suite: &Suite, e: StoreError) -> Response {
    tracing::error!(error = %e, "store failure in the WeChat Pay stand-in");
    pay_error(
        suite,
        StatusCode::INTERNAL_SERVER_ERROR,
        "SYSTEM_ERROR",
        "系统错误",
    )
}

fn valid_no(no: &str, min: usize, max: usize, extra: &str) -> bool {
    (min..=max).contains(&no.len())
        && no
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

async fn jsapi(suite: &Suite, req: &Request) -> Result<Response, Response> {
    let body: JsapiPrepayBody = req
        .json()
        .map_err(|e| param_error(suite, &format!("body: {e}")))?;
    let keys = &suite.keys;
    if body.mchid != keys.mchid {
        return Err(pay_error(
            suite,
            StatusCode::BAD_REQUEST,
            "MCH_NOT_EXISTS",
            "商户号不存在",
        ));
    }
    if body.appid != keys.appid {
        return Err(pay_error(
            suite,
            StatusCode::BAD_REQUEST,
            "APPID_MCHID_NOT_MATCH",
            "appid和mch_id不匹配",
        ));
    }
    if body.description.is_empty() || body.description.len() > 127 {
        return Err(param_error(suite, "description must be 1-127 bytes"));
    }
    if !valid_no(&body.out_trade_no, 6, 32, "_-|*") {
        return Err(param_error(
            suite,
            "out_trade_no must be 6-32 characters of [0-9A-Za-z_-|*]",
        ));
    }
    if body.amount.total <= 0 || body.amount.currency != "CNY" {
        return Err(param_error(
            suite,
            "amount.total must be positive fen in CNY",
        ));
    }
    if body.payer.openid.is_empty() {
        return Err(param_error(suite, "payer.openid is required"));
    }
    if !(body.notify_url.starts_with("http://") || body.notify_url.starts_with("https://"))
        || body.notify_url.contains('?')
    {
        return Err(param_error(
            suite,
            "notify_url must be an http(s) URL without a query",
        ));
    }
    let now = suite.clock.now();
    let fingerprint = json!({"description": body.description, "total": body.amount.total, "openid": body.payer.openid,
        "notifyUrl": body.notify_url, "attach": body.attach});
    if let Some(existing) = suite
        .store
        .get(PAY_ORDERS, &body.out_trade_no)
        .await
        .map_err(|e| store_error(suite, e))?
    {
        if existing["fingerprint"] != fingerprint {
            return Err(pay_error(
                suite,
                StatusCode::FORBIDDEN,
                "OUT_TRADE_NO_USED",
                "商户订单号重复",
            ));
        }
        match existing["tradeState"].as_str() {
            Some("SUCCESS") | Some("REFUND") => {
                return Err(pay_error(
                    suite,
                    StatusCode::BAD_REQUEST,
                    "ORDERPAID",
                    "该订单已支付",
                ));
            }
            Some("CLOSED") => {
                return Err(pay_error(
                    suite,
                    StatusCode::BAD_REQUEST,
                    "ORDER_CLOSED",
                    "订单已关闭",
                ));
            }
            _ => {}
        }
        // Same parameters again: a fresh prepay_id for the same order.
        let prepay_id = new_prepay_id();
        suite
            .store
            .update_one(
                PAY_ORDERS,
                &Filter::id(&body.out_trade_no),
                &Update::new()
                    .set("prepayId", prepay_id.clone())
                    .set("prepayAt", now),
                UpdateOptions::default(),
            )
            .await
            .map_err(|e| store_error(suite, e))?;
        return Ok(signed(
            suite,
            Response::json(StatusCode::OK, &json!({"prepay_id": prepay_id})),
        ));
    }
    let prepay_id = new_prepay_id();
    let expires_at = body
        .time_expire
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(now + 7 * 86_400, |t| {
            t.unix_timestamp().clamp(now + 60, now + 90 * 86_400)
        });
    let order = json!({
        "_id": body.out_trade_no, "appid": body.appid, "mchid": body.mchid, "description": body.description,
        "attach": body.attach, "notifyUrl": body.notify_url, "total": body.amount.total, "openid": body.payer.openid,
        "fingerprint": fingerprint, "prepayId": prepay_id, "prepayAt": now, "tradeState": "NOTPAY",
        "createdAt": now, "expiresAt": expires_at, "refundedFen": 0
    });
    match suite.store.insert(PAY_ORDERS, order).await {
        Ok(_) => Ok(signed(
            suite,
            Response::json(StatusCode::OK, &json!({"prepay_id": prepay_id})),
        )),
        Err(StoreError::DuplicateKey { .. }) => Err(pay_error(
            suite,
            StatusCode::TOO_MANY_REQUESTS,
            "FREQUENCY_LIMITED",
            "频率超限, 请重试",
        )),
        Err(e) => Err(store_error(suite, e)),
    }
}

fn new_prepay_id() -> String {
    format!("wx{}", random_from(ALNUM, 34))
}

/// The `Transaction` JSON of an order (query response and notification resource).
pub fn transaction(order: &Value) -> Value {
    let state = order["tradeState"].as_str().unwrap_or("NOTPAY");
    let desc = match state {
        "SUCCESS" => "支付成功",
        "REFUND" => "转入退款",
        "CLOSED" => "已关闭",
        _ => "订单未支付",
    };
    let mut t = json!({
        "appid": order["appid"], "mchid": order["mchid"], "out_trade_no": order["_id"],
        "trade_state": state, "trade_state_desc": desc, "attach": order["attach"].as_str().unwrap_or(""),
        "payer": {"openid": order["openid"]},
        "amount": {"total": order["total"], "currency": "CNY"}
    });
    if let Some(id) = order["transactionId"].as_str() {
        t["transaction_id"] = json!(id);
        t["trade_type"] = json!("JSAPI");
        t["bank_type"] = json!("OTHERS");
        t["success_time"] = json!(Clock::rfc3339_cst(order["paidAt"].as_i64().unwrap_or(0)));
        t["amount"]["payer_total"] = order["total"].clone();
        t["amount"]["payer_currency"] = json!("CNY");
    }
    t
}

async fn query(suite: &Suite, req: &Request, filter: Filter) -> Result<Response, Response> {
    if req.param("mchid").as_deref() != Some(suite.keys.mchid.as_str()) {
        return Err(param_error(suite, "mchid is required and must be yours"));
    }
    let order = suite
        .store
        .find_one(PAY_ORDERS, &filter)
        .await
        .map_err(|e| store_error(suite, e))?;
    let Some(order) = order else {
        return Err(pay_error(
            suite,
            StatusCode::NOT_FOUND,
            "ORDER_NOT_EXIST",
            "订单不存在",
        ));
    };
    Ok(signed(
        suite,
        Response::json(StatusCode::OK, &transaction(&order)),
    ))
}

async fn close(suite: &Suite, req: &Request, no: &str) -> Result<Response, Response> {
    let body: Value = req
        .json()
        .map_err(|e| param_error(suite, &format!("body: {e}")))?;
    if body["mchid"].as_str() != Some(suite.keys.mchid.as_str()) {
        return Err(param_error(suite, "mchid is required and must be yours"));
    }
    let closed = suite
        .store
        .update_one(
            PAY_ORDERS,
            &Filter::id(no).and(Filter::is_in("tradeState", ["NOTPAY", "CLOSED"])),
            &Update::new()
                .set("tradeState", "CLOSED")
                .set("closedAt", suite.clock.now()),
            UpdateOptions::default(),
        )
        .await
        .map_err(|e| store_error(suite, e))?;
    if closed.is_some() {
        return Ok(signed(suite, Response::empty(StatusCode::NO_CONTENT)));
    }
    match suite
        .store
        .get(PAY_ORDERS, no)
        .await
        .map_err(|e| store_error(suite, e))?
    {
        None => Err(pay_error(
            suite,
            StatusCode::NOT_FOUND,
            "ORDER_NOT_EXIST",
            "订单不存在",
        )),
        Some(_) => Err(pay_error(
            suite,
            StatusCode::BAD_REQUEST,
            "ORDERPAID",
            "该订单已支付, 不能关闭",
        )),
    }
}

/// Why "pay" refused.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// No such order.
    #[error("order {0} does not exist at the WeChat Pay stand-in")]
    NotFound(String),
    /// Not payable (paid, closed or expired).
    #[error("order {0} cannot be paid: it is {1}")]
    NotPayable(String, String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pays an order (the user completed `wx.requestPayment`, or the console's "pay" button):
/// NOTPAY → SUCCESS exactly once, then the TRANSACTION.SUCCESS notification is queued.
pub async fn pay(suite: &Suite, out_trade_no: &str) -> Result<Value, PayError> {
    let now = suite.clock.now();
    let transaction_id = format!("4200{}", random_from(DIGITS, 24));
    let paid = suite
        .store
        .update_one(
            PAY_ORDERS,
            &Filter::id(out_trade_no)
                .and(Filter::eq("tradeState", "NOTPAY"))
                .and(Filter::gt("expiresAt", now)),
            &Update::new()
                .set("tradeState", "SUCCESS")
                .set("transactionId", transaction_id)
                .set("paidAt", now),
            UpdateOptions::default(),
        )
        .await?;
    let Some(order) = paid else {
        return match suite.store.get(PAY_ORDERS, out_trade_no).await? {
            None => Err(PayError::NotFound(out_trade_no.into())),
            Some(o) => {
                let state = o["tradeState"].as_str().unwrap_or("unknown").to_owned();
                let state = if state == "NOTPAY" {
                    "expired".into()
                } else {
                    state
                };
                Err(PayError::NotPayable(out_trade_no.into(), state))
            }
        };
    };
    let payload = json!({
        "url": order["notifyUrl"], "eventType": "TRANSACTION.SUCCESS", "summary": "支付成功",
        "originalType": "transaction", "resource": transaction(&order)
    });
    deliveries::enqueue(
        suite,
        DeliveryKind::Payment,
        out_trade_no,
        order["openid"].as_str(),
        payload,
        0,
    )
    .await?;
    Ok(transaction(&order))
}

/// Finds the order a `wx.requestPayment` `package` (`prepay_id=…`) belongs to.
pub async fn order_for_prepay(suite: &Suite, package: &str) -> Result<Option<Value>, StoreError> {
    let Some(prepay_id) = package.strip_prefix("prepay_id=") else {
        return Ok(None);
    };
    suite
        .store
        .find_one(PAY_ORDERS, &Filter::eq("prepayId", prepay_id))
        .await
}

async fn refund(suite: &Suite, req: &Request) -> Result<Response, Response> {
    let body: Value = req
        .json()
        .map_err(|e| param_error(suite, &format!("body: {e}")))?;
    let Some(out_refund_no) = body["out_refund_no"]
        .as_str()
        .filter(|n| valid_no(n, 1, 64, "_-|*@"))
    else {
        return Err(param_error(
            suite,
            "out_refund_no must be 1-64 characters of [0-9A-Za-z_-|*@]",
        ));
    };
    let filter = match (
        body["out_trade_no"].as_str(),
        body["transaction_id"].as_str(),
    ) {
        (Some(no), _) => Filter::id(no),
        (None, Some(id)) => Filter::eq("transactionId", id),
        _ => {
            return Err(param_error(
                suite,
                "out_trade_no or transaction_id is required",
            ));
        }
    };
    let refund_fen = body["amount"]["refund"].as_i64().unwrap_or(0);
    let total_fen = body["amount"]["total"].as_i64().unwrap_or(0);
    if refund_fen <= 0 {
        return Err(param_error(suite, "amount.refund must be positive fen"));
    }
    if let Some(existing) = suite
        .store
        .get(REFUNDS, out_refund_no)
        .await
        .map_err(|e| store_error(suite, e))?
    {
        // The same refund number refunds once: answer with the refund as it is.
        return Ok(signed(
            suite,
            Response::json(StatusCode::OK, &refund_view(&existing)),
        ));
    }
    let Some(order) = suite
        .store
        .find_one(PAY_ORDERS, &filter)
        .await
        .map_err(|e| store_error(suite, e))?
    else {
        return Err(pay_error(
            suite,
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_EXISTS",
            "订单不存在",
        ));
    };
    if !matches!(order["tradeState"].as_str(), Some("SUCCESS" | "REFUND")) {
        return Err(pay_error(
            suite,
            StatusCode::FORBIDDEN,
            "NOT_ENOUGH",
            "订单未支付",
        ));
    }
    let total = order["total"].as_i64().unwrap_or(0);
    if total_fen != total {
        return Err(param_error(
            suite,
            "amount.total must equal the order total",
        ));
    }
    let refunded = order["refundedFen"].as_i64().unwrap_or(0);
    if refunded + refund_fen > total {
        return Err(pay_error(
            suite,
            StatusCode::FORBIDDEN,
            "NOT_ENOUGH",
            "退款金额超过可退金额",
        ));
    }
    let no = order["_id"].as_str().unwrap_or_default().to_owned();
    // Reserve the amount with a condition on what was refunded so far (no double spend).
    let reserved = suite
        .store
        .update_one(
            PAY_ORDERS,
            &Filter::id(&no).and(Filter::eq("refundedFen", refunded)),
            &Update::new()
                .inc("refundedFen", refund_fen)
                .set("tradeState", "REFUND"),
            UpdateOptions::default(),
        )
        .await
        .map_err(|e| store_error(suite, e))?;
    if reserved.is_none() {
        return Err(pay_error(
            suite,
            StatusCode::TOO_MANY_REQUESTS,
            "FREQUENCY_LIMITED",
            "并发退款, 请重试",
        ));
    }
    let now = suite.clock.now();
    let notify_url = body["notify_url"]
        .as_str()
        .or(order["notifyUrl"].as_str())
        .unwrap_or_default()
        .to_owned();
    let record = json!({
        "_id": out_refund_no, "refundId": format!("5030{}", random_from(DIGITS, 25)), "outTradeNo": no,
        "transactionId": order["transactionId"], "refund": refund_fen, "total": total, "reason": body["reason"],
        "notifyUrl": notify_url, "status": "PROCESSING", "createdAt": now, "openid": order["openid"]
    });
    match suite.store.insert(REFUNDS, record.clone()).await {
        Ok(_) => {}
        Err(e) => {
            // Give the reserved amount back: the refund was not recorded.
            let _ = suite
                .store
                .update_one(
                    PAY_ORDERS,
                    &Filter::id(&no),
                    &Update::new().inc("refundedFen", -refund_fen),
                    UpdateOptions::default(),
                )
                .await;
            return Err(store_error(suite, e));
        }
    }
    let delay = suite.options.refund_delay_ms;
    let payload = json!({"url": notify_url, "eventType": "REFUND.SUCCESS", "summary": "退款成功",
        "originalType": "refund", "refundNo": out_refund_no});
    deliveries::enqueue(
        suite,
        DeliveryKind::Refund,
        out_refund_no,
        order["openid"].as_str(),
        payload,
        delay,
    )
    .await
    .map_err(|e| store_error(suite, e))?;
    Ok(signed(
        suite,
        Response::json(StatusCode::OK, &refund_view(&record)),
    ))
}

/// Completes a PROCESSING refund (called when its notification is first built).
pub async fn settle_refund(suite: &Suite, out_refund_no: &str) -> Result<Value, StoreError> {
    let now = suite.clock.now();
    let settled = suite
        .store
        .update_one(
            REFUNDS,
            &Filter::id(out_refund_no).and(Filter::eq("status", "PROCESSING")),
            &Update::new().set("status", "SUCCESS").set("successAt", now),
            UpdateOptions::default(),
        )
        .await?;
    match settled {
        Some(doc) => Ok(doc),
        None => suite
            .store
            .get(REFUNDS, out_refund_no)
            .await?
            .ok_or_else(|| StoreError::InvalidQuery(format!("refund {out_refund_no} vanished"))),
    }
}

/// The `Refund` JSON (create and query responses).
pub fn refund_view(r: &Value) -> Value {
    let mut v = json!({
        "refund_id": r["refundId"], "out_refund_no": r["_id"], "transaction_id": r["transactionId"],
        "out_trade_no": r["outTradeNo"], "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
        "create_time": Clock::rfc3339_cst(r["createdAt"].as_i64().unwrap_or(0)), "status": r["status"],
        "funds_account": "AVAILABLE",
        "amount": {"total": r["total"], "refund": r["refund"], "payer_total": r["total"], "payer_refund": r["refund"],
            "settlement_total": r["total"], "settlement_refund": r["refund"], "discount_refund": 0, "currency": "CNY", "from": []}
    });
    if let Some(at) = r["successAt"].as_i64() {
        v["success_time"] = json!(Clock::rfc3339_cst(at));
    }
    v
}

/// The decrypted resource of a REFUND.* notification.
pub fn refund_notification(suite: &Suite, r: &Value) -> Value {
    json!({
        "mchid": suite.keys.mchid, "out_trade_no": r["outTradeNo"], "transaction_id": r["transactionId"],
        "out_refund_no": r["_id"], "refund_id": r["refundId"], "refund_status": r["status"],
        "success_time": Clock::rfc3339_cst(r["successAt"].as_i64().unwrap_or(0)),
        "user_received_account": "支付用户零钱",
        "amount": {"total": r["total"], "refund": r["refund"], "payer_total": r["total"], "payer_refund": r["refund"]}
    })
}

async fn query_refund(suite: &Suite, no: &str) -> Result<Response, Response> {
    match suite
        .store
        .get(REFUNDS, no)
        .await
        .map_err(|e| store_error(suite, e))?
    {
        Some(r) => Ok(signed(
            suite,
            Response::json(StatusCode::OK, &refund_view(&r)),
        )),
        None => Err(pay_error(
            suite,
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_EXISTS",
            "退款单不存在",
        )),
    }
}

/// Builds the signed notification for one delivery attempt: the resource encrypted with the
/// APIv3 key, fresh signature time and nonce, the delivery's stable notification id.
pub async fn notification(
    suite: &Suite,
    notify_id: &str,
    payload: &Value,
    created_at: i64,
) -> Result<SignedNotification, String> {
    let resource = if payload["originalType"] == "refund" {
        let no = payload["refundNo"].as_str().unwrap_or_default();
        let refund = settle_refund(suite, no).await.map_err(|e| e.to_string())?;
        refund_notification(suite, &refund)
    } else {
        payload["resource"].clone()
    };
    let create_time = Clock::rfc3339_cst(created_at);
    let resource_nonce = random_from(ALNUM, 12);
    let nonce = random_from(ALNUM, 32);
    let spec = NotificationSpec {
        id: notify_id,
        create_time: &create_time,
        event_type: payload["eventType"].as_str().unwrap_or_default(),
        summary: payload["summary"].as_str().unwrap_or_default(),
        original_type: payload["originalType"].as_str().unwrap_or("transaction"),
        resource_nonce: &resource_nonce,
        timestamp: suite.clock.now(),
        nonce: &nonce,
    };
    build_notification(&spec, &resource, &suite.pay.apiv3, &suite.pay.signer)
        .map_err(|e| e.to_string())
}
