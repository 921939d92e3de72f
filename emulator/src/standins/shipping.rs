//! The shipping-information service stand-in (`/wxa/sec/order/*`): `upload_shipping_info`,
//! `get_order` and `notify_confirm_receive` over the WeChat Pay stand-in's paid orders, with
//! the platform's checks and errcodes (`docs/wechat.md`, shipping), plus the platform's side
//! that the console drives: the buyer confirming receipt and the funds settling, each
//! followed by a `trade_manage_order_settlement` push to wxPush, and the
//! `trade_manage_remind_shipping` push. Fault hooks apply as for every WeChat API path
//! (`POST /dev/faults {"system": "wechatApi", "path": "/wxa/sec/order/upload_shipping_info",
//! "errcode": 10060012}`).

use http::StatusCode;
use serde_json::{Value, json};
use wemint::store::{Filter, Update, UpdateOptions, collections};

use crate::deliveries::{self, DeliveryKind};
use crate::http::{Request, Response};
use crate::standins::wechat_api::{ok, wx_error};
use crate::standins::wechat_pay::PAY_ORDERS;
use crate::suite::{Suite, internal};

/// The platform's shipping record per transaction.
pub const SHIPPING: &str = "dev_shipping";

/// Days the stand-in announces between receipt and settlement.
const SETTLE_AFTER_SECS: i64 = 86_400;

/// Routes `/wxa/sec/order/*` (the access token is already checked).
pub async fn handle(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    match req.path.as_str() {
        "/wxa/sec/order/upload_shipping_info" => upload(suite, &body).await,
        "/wxa/sec/order/get_order" => get_order(suite, &body).await,
        "/wxa/sec/order/notify_confirm_receive" => notify_confirm_receive(suite, &body).await,
        other => wx_error(-1, &format!("api {other} is not emulated by wemint-dev")),
    }
}

/// The paid order a key names: `transaction_id`, or `out_trade_no` (+ our mchid).
async fn payment(suite: &Suite, tx: Option<&str>, no: Option<&str>) -> Result<Value, Response> {
    let filter = match (tx, no) {
        (Some(tx), _) if !tx.is_empty() => Filter::eq("transactionId", tx),
        (_, Some(no)) if !no.is_empty() => Filter::id(no),
        _ => return Err(wx_error(268_485_195, "transaction_id is required")),
    };
    match suite
        .store
        .find_one(
            PAY_ORDERS,
            &filter.and(Filter::exists("transactionId", true)),
        )
        .await
    {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(wx_error(10_060_001, "payment order not found")),
        Err(e) => Err(internal(e)),
    }
}

/// The platform's record of a payment (state 1 until shipped).
async fn record(suite: &Suite, pay: &Value) -> Result<Value, Response> {
    let tx = pay["transactionId"].as_str().unwrap_or_default();
    match suite.store.get(SHIPPING, tx).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Ok(json!({"_id": tx, "state": 1, "finishShippingCount": 0})),
        Err(e) => Err(internal(e)),
    }
}

/// Fully refunded (a partial refund leaves the order shippable).
fn refunded(pay: &Value) -> bool {
    pay["refundedFen"].as_i64().unwrap_or(0) >= pay["total"].as_i64().unwrap_or(i64::MAX)
}

/// Checks an upload body the way the platform does; the first problem's errcode.
fn check_upload(body: &Value) -> Result<(), Response> {
    let kind = body["logistics_type"].as_i64().unwrap_or(0);
    if !(1..=4).contains(&kind) {
        return Err(wx_error(10_060_005, "invalid logistics_type"));
    }
    let mode = body["delivery_mode"].as_i64().unwrap_or(0);
    if !(1..=2).contains(&mode) {
        return Err(wx_error(268_485_224, "invalid delivery_mode"));
    }
    let Some(list) = body["shipping_list"].as_array() else {
        return Err(wx_error(47001, "data format error: shipping_list"));
    };
    if list.is_empty() || list.len() > 15 {
        return Err(wx_error(
            10_060_024,
            "shipping_list must have 1 to 15 entries",
        ));
    }
    if mode == 1 && list.len() != 1 {
        return Err(wx_error(268_485_228, "unified delivery takes one package"));
    }
    if mode == 2 && kind != 1 {
        return Err(wx_error(10_060_006, "split delivery only for express"));
    }
    for item in list {
        if kind == 1 {
            if item["tracking_no"].as_str().is_none_or(str::is_empty) {
                return Err(wx_error(268_485_226, "tracking_no is empty"));
            }
            if item["express_company"].as_str().is_none_or(str::is_empty) {
                return Err(wx_error(268_485_227, "express_company is empty"));
            }
        }
        let desc = item["item_desc"].as_str().unwrap_or_default();
        if desc.is_empty() {
            return Err(wx_error(10_060_008, "item_desc is empty"));
        }
        if desc.chars().count() > 120 {
            return Err(wx_error(10_060_009, "item_desc is too long"));
        }
    }
    let time_ok = body["upload_time"].as_str().is_some_and(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
    });
    if !time_ok {
        return Err(wx_error(268_485_216, "upload_time is not RFC 3339"));
    }
    Ok(())
}

async fn upload(suite: &Suite, body: &Value) -> Response {
    let key = &body["order_key"];
    let pay = match key["order_number_type"].as_i64() {
        Some(2) => payment(suite, key["transaction_id"].as_str(), None).await,
        Some(1) => {
            if key["mchid"].as_str() != Some(suite.keys.mchid.as_str()) {
                return wx_error(10_060_001, "payment order not found");
            }
            payment(suite, None, key["out_trade_no"].as_str()).await
        }
        _ => return wx_error(268_485_194, "invalid order_number_type"),
    };
    let pay = match pay {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = check_upload(body) {
        return r;
    }
    if body["payer"]["openid"].as_str() != pay["openid"].as_str() {
        return wx_error(10_060_031, "the order does not belong to payer.openid");
    }
    if refunded(&pay) {
        return wx_error(10_060_004, "the order cannot be shipped");
    }
    let current = match record(suite, &pay).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let shipping = json!({
        "logistics_type": body["logistics_type"], "delivery_mode": body["delivery_mode"],
        "shipping_list": body["shipping_list"],
    });
    let count = current["finishShippingCount"].as_i64().unwrap_or(0);
    let state = current["state"].as_i64().unwrap_or(1);
    let next_count = match state {
        1 => 1,
        2 if current["shipping"] == shipping => {
            return wx_error(10_060_023, "shipping info unchanged");
        }
        2 if count < 2 => 2,
        2 => return wx_error(10_060_003, "the re-ship chance is used"),
        _ => return wx_error(10_060_002, "the order is already complete"),
    };
    let now = suite.clock.now();
    let tx = pay["transactionId"].as_str().unwrap_or_default();
    let written = if count == 0 {
        let doc = json!({"_id": tx, "state": 2, "shipping": shipping, "finishShippingCount": 1,
            "shippedAt": now, "outTradeNo": pay["_id"], "openid": pay["openid"], "uploads": 1});
        suite.store.insert(SHIPPING, doc).await.map(|_| true)
    } else {
        let update = Update::new()
            .set("shipping", shipping)
            .set("finishShippingCount", next_count)
            .set("shippedAt", now)
            .inc("uploads", 1);
        suite
            .store
            .update_one(
                SHIPPING,
                &Filter::id(tx).and(Filter::eq("finishShippingCount", count)),
                &update,
                UpdateOptions::default(),
            )
            .await
            .map(|d| d.is_some())
    };
    match written {
        Ok(true) => ok(json!({})),
        Ok(false) | Err(wemint::store::StoreError::DuplicateKey { .. }) => {
            wx_error(-1, "system error: concurrent upload, retry")
        }
        Err(e) => internal(e),
    }
}

/// The `get_order` view.
fn order_view(pay: &Value, r: &Value) -> Value {
    let shipping = &r["shipping"];
    let list: Vec<Value> = shipping["shipping_list"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|p| {
                    json!({"tracking_no": p["tracking_no"], "express_company": p["express_company"],
                    "goods_desc": p["item_desc"], "upload_time": r["shippedAt"]})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "transaction_id": pay["transactionId"], "merchant_id": "", "merchant_trade_no": pay["_id"],
        "paid_amount": pay["total"], "openid": pay["openid"], "pay_time": pay["paidAt"],
        "order_state": if refunded(pay) { 5 } else { r["state"].as_i64().unwrap_or(1) },
        "in_complaint": false,
        "shipping": {"delivery_mode": shipping["delivery_mode"], "logistics_type": shipping["logistics_type"],
            "finish_shipping": r["state"].as_i64().unwrap_or(1) >= 2, "goods_desc": "",
            "finish_shipping_count": r["finishShippingCount"], "shipping_list": list},
    })
}

/// The payment and its record a `get_order` / `notify_confirm_receive` body names.
async fn named_order(suite: &Suite, body: &Value) -> Result<(Value, Value), Response> {
    let pay = payment(
        suite,
        body["transaction_id"].as_str(),
        body["merchant_trade_no"].as_str(),
    )
    .await?;
    let r = record(suite, &pay).await?;
    Ok((pay, r))
}

async fn get_order(suite: &Suite, body: &Value) -> Response {
    match named_order(suite, body).await {
        Ok((pay, r)) => ok(json!({ "order": order_view(&pay, &r) })),
        Err(r) => r,
    }
}

async fn notify_confirm_receive(suite: &Suite, body: &Value) -> Response {
    let (_, r) = match named_order(suite, body).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if r["shipping"]["logistics_type"].as_i64() != Some(1) {
        return wx_error(10_060_032, "only express orders");
    }
    if r["state"].as_i64() != Some(2) {
        return wx_error(10_060_028, "the order is not shipped");
    }
    if r.get("receiptReminderAt").is_some_and(|v| !v.is_null()) {
        return wx_error(10_060_030, "the reminder was used");
    }
    let received = body["received_time"].as_i64().unwrap_or(0);
    if received <= r["shippedAt"].as_i64().unwrap_or(0) {
        return wx_error(10_060_029, "invalid received_time");
    }
    match suite
        .store
        .update_one(
            SHIPPING,
            &Filter::id(r["_id"].as_str().unwrap_or_default())
                .and(Filter::exists("receiptReminderAt", false)),
            &Update::new()
                .set("receiptReminderAt", suite.clock.now())
                .set("receivedTime", received),
            UpdateOptions::default(),
        )
        .await
    {
        Ok(Some(_)) => ok(json!({})),
        Ok(None) => wx_error(10_060_030, "the reminder was used"),
        Err(e) => internal(e),
    }
}

fn dev_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::json(status, &json!({"code": code, "message": message}))
}

/// The payment a console request names: `outTradeNo`, `transactionId` or `orderId`.
async fn named_payment(suite: &Suite, body: &Value) -> Result<Value, Response> {
    let mut no = body["outTradeNo"].as_str().map(str::to_owned);
    if let Some(id) = body["orderId"].as_str() {
        match suite.store.get(collections::ORDERS, id).await {
            Ok(Some(o)) => no = o["outTradeNo"].as_str().map(str::to_owned),
            Ok(None) => {}
            Err(e) => return Err(internal(e)),
        }
    }
    payment(suite, body["transactionId"].as_str(), no.as_deref())
        .await
        .map_err(|_| {
            dev_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no paid order by that name",
            )
        })
}

async fn push(suite: &Suite, pay: &Value, event: Value) -> Result<String, Response> {
    deliveries::enqueue(
        suite,
        DeliveryKind::Push,
        pay["_id"].as_str().unwrap_or_default(),
        pay["openid"].as_str(),
        event,
        0,
    )
    .await
    .map_err(internal)
}

fn settlement_event(suite: &Suite, pay: &Value, r: &Value, now: i64) -> Value {
    json!({
        "ToUserName": suite.gh_id(), "FromUserName": pay["openid"], "CreateTime": now,
        "MsgType": "event", "Event": "trade_manage_order_settlement",
        "transaction_id": pay["transactionId"], "merchant_id": suite.keys.mchid, "sub_merchant_id": "",
        "merchant_trade_no": pay["_id"], "pay_time": pay["paidAt"], "shipped_time": r["shippedAt"],
        "estimated_settlement_time": r["estimatedSettlementTime"], "confirm_receive_method": r["confirmReceiveMethod"],
        "confirm_receive_time": r["confirmReceiveTime"], "settlement_time": r["settlementTime"].as_i64().unwrap_or(0),
    })
}

/// `POST /dev/shipping/confirm`: the buyer confirms receipt of a shipped order (state 2 →
/// 3), then the settlement push goes to wxPush.
pub async fn confirm_receipt(suite: &Suite, body: &Value) -> Response {
    move_to(suite, body, 3).await
}

/// `POST /dev/shipping/settle`: the funds settle (state 2, 3 or 6 → 4; receipt is confirmed
/// automatically if the buyer had not), then the settlement push goes to wxPush.
pub async fn settle(suite: &Suite, body: &Value) -> Response {
    move_to(suite, body, 4).await
}

async fn move_to(suite: &Suite, body: &Value, to: i64) -> Response {
    let pay = match named_payment(suite, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let r = match record(suite, &pay).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let from: &[i64] = if to == 3 { &[2] } else { &[2, 3, 6] };
    let state = r["state"].as_i64().unwrap_or(1);
    if !from.contains(&state) {
        return dev_error(
            StatusCode::CONFLICT,
            "NOT_ALLOWED",
            &format!("the order is in shipping state {state}"),
        );
    }
    let now = suite.clock.now();
    let mut update = Update::new().set("state", to);
    if r["confirmReceiveTime"].as_i64().is_none() {
        // 2 = by the buyer, 1 = automatic (the official reading; UNCONFIRMED).
        update = update
            .set("confirmReceiveTime", now)
            .set("confirmReceiveMethod", if to == 3 { 2 } else { 1 })
            .set("estimatedSettlementTime", now + SETTLE_AFTER_SECS);
    }
    if to == 4 {
        update = update.set("settlementTime", now);
    }
    let tx = pay["transactionId"].as_str().unwrap_or_default();
    let moved = match suite
        .store
        .update_one(
            SHIPPING,
            &Filter::id(tx).and(Filter::eq("state", state)),
            &update,
            UpdateOptions::default(),
        )
        .await
    {
        Ok(Some(m)) => m,
        Ok(None) => return dev_error(StatusCode::CONFLICT, "CONFLICT", "changed meanwhile"),
        Err(e) => return internal(e),
    };
    match push(suite, &pay, settlement_event(suite, &pay, &moved, now)).await {
        Ok(delivery) => Response::json(
            StatusCode::OK,
            &json!({"order": order_view(&pay, &moved), "delivery": delivery}),
        ),
        Err(r) => r,
    }
}

/// `POST /dev/shipping/remind`: the platform's "still not shipped" push for a paid order.
pub async fn remind_shipping(suite: &Suite, body: &Value) -> Response {
    let pay = match named_payment(suite, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = suite.clock.now();
    let event = json!({
        "ToUserName": suite.gh_id(), "FromUserName": pay["openid"], "CreateTime": now,
        "MsgType": "event", "Event": "trade_manage_remind_shipping",
        "transaction_id": pay["transactionId"], "merchant_id": suite.keys.mchid, "sub_merchant_id": "",
        "merchant_trade_no": pay["_id"], "pay_time": pay["paidAt"], "msg": "请尽快发货",
    });
    match push(suite, &pay, event).await {
        Ok(delivery) => Response::json(StatusCode::OK, &json!({ "delivery": delivery })),
        Err(r) => r,
    }
}

/// The platform's shipping record of an order (tests, console).
pub async fn platform_record(suite: &Suite, transaction_id: &str) -> Option<Value> {
    suite
        .store
        .get(SHIPPING, transaction_id)
        .await
        .ok()
        .flatten()
}
