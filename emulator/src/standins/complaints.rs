//! Consumer complaints as WeChat Pay and virtual payment keep them: the complaints 2.0 APIs
//! (`/v3/merchant-service/complaints-v2/*`, the notification URL at
//! `/v3/merchant-service/complaint-notifications`), the xpay complaint APIs
//! (`/xpay/get_complaint_list`, …), and a way to raise one ([`raise`], `POST /dev/complaints`):
//! a WeChat Pay complaint sends the signed, AES-GCM-encrypted `COMPLAINT.CREATE` notification
//! to the merchant's complaint URL (payNotify's `/payNotify/complaints` until one is set); a
//! virtual payment complaint sends `xpay_complaint_notify` to wxPush. Only user-side events
//! notify, as on the platform: replies and completions do not.
//!
//! Also the switch that makes the next virtual payment refund fail
//! (`POST /dev/xpay/failNextRefund`), so a failed refund can be shown end to end.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, StoreError, Update, UpdateOptions};

use super::wechat_api::XPAY_ORDERS;
use super::wechat_pay::{PAY_ORDERS, signed};
use crate::clock::Clock;
use crate::deliveries::{self, DeliveryKind, STATE};
use crate::http::{Request, Response};
use crate::keys::{DIGITS, random_from};
use crate::suite::Suite;

/// Complaints made at the stand-ins.
pub const COMPLAINTS: &str = "dev_complaints";

/// The longest reply the merchant API takes, in characters.
const MAX_REPLY_CHARS: usize = 200;

fn pay_error(suite: &Suite, status: StatusCode, code: &str, message: &str) -> Response {
    signed(
        suite,
        Response::json(status, &json!({"code": code, "message": message})),
    )
}

fn no_such_complaint(suite: &Suite) -> Response {
    pay_error(
        suite,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_EXISTS",
        "投诉单不存在",
    )
}

fn wx_error(errcode: i64, errmsg: &str) -> Response {
    Response::json(
        StatusCode::OK,
        &json!({"errcode": errcode, "errmsg": errmsg}),
    )
}

fn wx_ok(mut extra: Value) -> Response {
    if let Some(map) = extra.as_object_mut() {
        map.insert("errcode".into(), 0.into());
        map.insert("errmsg".into(), "ok".into());
    }
    Response::json(StatusCode::OK, &extra)
}

fn store_failed(e: &StoreError) -> Response {
    Response::text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

/// The complaint object both APIs answer with.
fn view(c: &Value) -> Value {
    let mut order = json!({"transaction_id": c["transactionId"], "out_trade_no": c["outTradeNo"],
        "amount": c["amount"]});
    if c["channel"] == "xpay" {
        // xpay's `out_trade_no` is its channel order id; ours is `wxa_out_trade_no`.
        order["out_trade_no"] = c["channelOrderId"].clone();
        order["wxa_out_trade_no"] = c["outTradeNo"].clone();
        order["wx_order_id"] = c["wxOrderId"].clone();
    }
    json!({
        "complaint_id": c["_id"],
        "complaint_time": Clock::rfc3339_cst(c["complaintTime"].as_i64().unwrap_or(0)),
        "complaint_detail": c["detail"], "complaint_state": c["state"],
        "complainted_mchid": c["mchid"], "payer_openid": c["openid"],
        "complaint_order_info": [order],
        "problem_type": c["problemType"], "problem_description": c["problemDescription"],
        "apply_refund_amount": c["applyRefundAmount"],
        "incoming_user_response": false, "need_immediate_service": false,
        "in_platform_service": false, "complaint_full_refunded": false,
        "user_complaint_times": 1, "complaint_media_list": [], "user_tag_list": []
    })
}

fn history_entry(operator: &str, operate_type: &str, details: &str, now: i64) -> Value {
    json!({"log_id": random_from(DIGITS, 16), "operator": operator,
        "operate_time": Clock::rfc3339_cst(now), "operate_type": operate_type,
        "operate_details": details, "complaint_media_list": []})
}

async fn load(suite: &Suite, id: &str, channel: &str) -> Result<Option<Value>, StoreError> {
    Ok(suite
        .store
        .get(COMPLAINTS, id)
        .await?
        .filter(|c| c["channel"] == channel))
}

/// What a merchant's action does to a complaint: the reply (first one moves it to
/// `PROCESSING`), completion, a refund answer. `Err` carries the refusal message.
async fn act(suite: &Suite, c: &Value, action: &str, body: &Value) -> Result<(), String> {
    let now = suite.clock.now();
    let id = c["_id"].as_str().unwrap_or_default();
    let state = c["state"].as_str().unwrap_or_default();
    if state == "PROCESSED" {
        return Err("当前投诉单状态不支持此操作".into());
    }
    let update = match action {
        "response" => {
            let content = body["response_content"].as_str().unwrap_or_default();
            if content.trim().is_empty() || content.chars().count() > MAX_REPLY_CHARS {
                return Err("response_content 长度不合法".into());
            }
            let mut u = Update::new().push(
                "history",
                history_entry("商家", "MERCHANT_RESPONSE", content, now),
            );
            if state == "PENDING" {
                u = u.set("state", "PROCESSING");
            }
            u
        }
        "complete" => Update::new().set("state", "PROCESSED").push(
            "history",
            history_entry("商家", "MERCHANT_CONFIRM_COMPLETE", "商家已处理完成", now),
        ),
        _ => match body["action"].as_str() {
            Some("APPROVE") => Update::new().set("refundProgress", "APPROVE").push(
                "history",
                history_entry("商家", "MERCHANT_APPROVE_REFUND", "同意退款", now),
            ),
            Some("REJECT")
                if body["reject_reason"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty()) =>
            {
                Update::new()
                    .set("refundProgress", "REJECT")
                    .set("state", "PROCESSED")
                    .push(
                        "history",
                        history_entry(
                            "商家",
                            "MERCHANT_REFUSE_RERUND",
                            body["reject_reason"].as_str().unwrap_or_default(),
                            now,
                        ),
                    )
            }
            _ => return Err("action 必须为 APPROVE，REJECT 需要 reject_reason".into()),
        },
    };
    suite
        .store
        .update_one(
            COMPLAINTS,
            &Filter::id(id).and(Filter::eq("state", state)),
            &update,
            UpdateOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .ok_or_else(|| "投诉单状态已变化，请重试".to_owned())
}

/// WeChat Pay complaints 2.0, after the merchant signature was checked
/// (`segments` = the decoded path).
pub async fn v3(suite: &Suite, req: &Request, segments: &[&str]) -> Response {
    let rest = &segments[2..];
    match (&req.method, rest) {
        (method, ["complaint-notifications"]) => notification_url(suite, req, method).await,
        (&Method::GET, ["complaints-v2", id]) => match load(suite, id, "wxpay").await {
            Ok(Some(c)) => signed(suite, Response::json(StatusCode::OK, &view(&c))),
            Ok(None) => no_such_complaint(suite),
            Err(e) => store_failed(&e),
        },
        (&Method::GET, ["complaints-v2", id, "negotiation-historys"]) => {
            match load(suite, id, "wxpay").await {
                Ok(Some(c)) => {
                    let data = c["history"].clone();
                    let total = data.as_array().map_or(0, Vec::len);
                    signed(
                        suite,
                        Response::json(
                            StatusCode::OK,
                            &json!({"data": data, "limit": 100, "offset": 0, "total_count": total}),
                        ),
                    )
                }
                Ok(None) => no_such_complaint(suite),
                Err(e) => store_failed(&e),
            }
        }
        (
            &Method::POST,
            [
                "complaints-v2",
                id,
                action @ ("response" | "complete" | "update-refund-progress"),
            ],
        ) => {
            let body: Value = req.json().unwrap_or(Value::Null);
            if *action != "update-refund-progress"
                && body["complainted_mchid"].as_str() != Some(suite.keys.mchid.as_str())
            {
                return pay_error(
                    suite,
                    StatusCode::FORBIDDEN,
                    "NO_AUTH",
                    "您暂无权限处理该投诉单",
                );
            }
            match load(suite, id, "wxpay").await {
                Ok(Some(c)) => match act(suite, &c, action, &body).await {
                    Ok(()) => signed(suite, Response::empty(StatusCode::NO_CONTENT)),
                    Err(message) => {
                        pay_error(suite, StatusCode::BAD_REQUEST, "INVALID_REQUEST", &message)
                    }
                },
                Ok(None) => no_such_complaint(suite),
                Err(e) => store_failed(&e),
            }
        }
        _ => pay_error(
            suite,
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_EXISTS",
            &format!("{} {} is not emulated by wemint-dev", req.method, req.path),
        ),
    }
}

/// The merchant's complaint notification URL (one per merchant). Creating one that exists is
/// refused here (the platform's behaviour is unconfirmed), so a deployment reads it first.
async fn notification_url(suite: &Suite, req: &Request, method: &Method) -> Response {
    let current = match suite.store.get(STATE, "complaintNotify").await {
        Ok(doc) => doc.and_then(|d| d["url"].as_str().map(str::to_owned)),
        Err(e) => return store_failed(&e),
    };
    let answer = |url: &str| {
        signed(
            suite,
            Response::json(
                StatusCode::OK,
                &json!({"mchid": suite.keys.mchid, "url": url}),
            ),
        )
    };
    let missing = || {
        pay_error(
            suite,
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_EXISTS",
            "未设置投诉通知回调地址",
        )
    };
    match *method {
        Method::GET => current.as_deref().map_or_else(missing, answer),
        Method::DELETE => {
            if let Err(e) = suite
                .store
                .delete_one(STATE, &Filter::id("complaintNotify"))
                .await
            {
                return store_failed(&e);
            }
            signed(suite, Response::empty(StatusCode::NO_CONTENT))
        }
        Method::POST | Method::PUT => {
            if *method == Method::POST && current.is_some() {
                return pay_error(
                    suite,
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "投诉通知回调地址已存在，请使用更新接口",
                );
            }
            if *method == Method::PUT && current.is_none() {
                return missing();
            }
            let body: Value = req.json().unwrap_or(Value::Null);
            let Some(url) = body["url"]
                .as_str()
                .filter(|u| u.len() <= 255 && u.starts_with("http") && !u.contains('?'))
            else {
                return pay_error(suite, StatusCode::BAD_REQUEST, "PARAM_ERROR", "url 不合法");
            };
            if let Err(e) = suite
                .store
                .update_one(
                    STATE,
                    &Filter::id("complaintNotify"),
                    &Update::new().set("url", url),
                    UpdateOptions::upsert(),
                )
                .await
            {
                return store_failed(&e);
            }
            answer(url)
        }
        _ => missing(),
    }
}

/// The xpay complaint APIs, after the access token and `pay_sig` were checked.
pub async fn xpay(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(268_490_002, "param error: body is not JSON");
    };
    if req.path == "/xpay/get_complaint_list" {
        let (Some(begin), Some(end)) = (body["begin_date"].as_str(), body["end_date"].as_str())
        else {
            return wx_error(268_490_002, "param error: begin_date and end_date required");
        };
        let listed = suite
            .store
            .find(
                COMPLAINTS,
                &Filter::eq("channel", "xpay"),
                &FindOptions::new().sort_desc("complaintTime").limit(200),
            )
            .await;
        return match listed {
            Ok(all) => {
                let within: Vec<Value> = all
                    .iter()
                    .filter(|c| {
                        let day =
                            &Clock::rfc3339_cst(c["complaintTime"].as_i64().unwrap_or(0))[..10];
                        day >= begin && day <= end
                    })
                    .map(view)
                    .collect();
                let offset = body["offset"].as_u64().unwrap_or(0) as usize;
                let limit = body["limit"].as_u64().unwrap_or(10).clamp(1, 50) as usize;
                let page: Vec<Value> = within.iter().skip(offset).take(limit).cloned().collect();
                wx_ok(json!({"total": within.len(), "complaints": page}))
            }
            Err(e) => store_failed(&e),
        };
    }
    let Some(id) = body["complaint_id"].as_str() else {
        return wx_error(268_490_002, "param error: complaint_id required");
    };
    let c = match load(suite, id, "xpay").await {
        Ok(Some(c)) => c,
        Ok(None) => return wx_error(268_490_002, "数据不存在"),
        Err(e) => return store_failed(&e),
    };
    match req.path.as_str() {
        "/xpay/get_complaint_detail" => wx_ok(json!({"complaint": view(&c)})),
        "/xpay/get_negotiation_history" => {
            let history = c["history"].clone();
            let total = history.as_array().map_or(0, Vec::len);
            wx_ok(json!({"total": total, "history": history}))
        }
        path => {
            let action = if path == "/xpay/response_complaint" {
                "response"
            } else {
                "complete"
            };
            match act(suite, &c, action, &body).await {
                Ok(()) => wx_ok(json!({})),
                Err(message) => wx_error(268_490_002, &message),
            }
        }
    }
}

/// The order a raised complaint is about: the named one, or the latest paid order of the
/// channel. `(openid, outTradeNo, transactionId, amount, channelOrderId, wxOrderId)`.
async fn complained_order(
    suite: &Suite,
    channel: &str,
    out_trade_no: Option<&str>,
) -> Result<Option<Value>, StoreError> {
    let (collection, paid, newest) = if channel == "xpay" {
        (
            XPAY_ORDERS,
            Filter::is_in("status", [2, 3, 4]).and(Filter::ne("orderType", 1)),
            "createTime",
        )
    } else {
        (
            PAY_ORDERS,
            Filter::is_in("tradeState", ["SUCCESS", "REFUND"]),
            "createdAt",
        )
    };
    let filter = match out_trade_no {
        Some(no) => Filter::id(no).and(paid),
        None => paid,
    };
    let found = suite
        .store
        .find(
            collection,
            &filter,
            &FindOptions::new().sort_desc(newest).limit(1),
        )
        .await?;
    Ok(found.into_iter().next().map(|o| {
        if channel == "xpay" {
            json!({"openid": o["openid"], "outTradeNo": o["_id"], "transactionId": o["wxpayOrderId"],
                "amount": o["paidFee"], "channelOrderId": o["channelOrderId"], "wxOrderId": o["wxOrderId"]})
        } else {
            json!({"openid": o["openid"], "outTradeNo": o["_id"], "transactionId": o["transactionId"],
                "amount": o["total"]})
        }
    }))
}

/// Raises a complaint as a user would (`POST /dev/complaints {channel?, outTradeNo?, detail?,
/// problemType?}`): stored here, and its notification (WeChat Pay) or push (virtual payment)
/// queued. Returns the complaint.
pub async fn raise(suite: &Suite, input: &Value) -> Result<Value, Response> {
    let channel = match input["channel"].as_str().unwrap_or("wxpay") {
        c @ ("wxpay" | "xpay") => c,
        _ => {
            return Err(Response::json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "channel must be wxpay or xpay"}),
            ));
        }
    };
    let order = complained_order(suite, channel, input["outTradeNo"].as_str())
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| {
            Response::json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("no paid {channel} order to complain about")}),
            )
        })?;
    let now = suite.clock.now();
    let id = format!("2002{}", random_from(DIGITS, 23));
    let detail = input["detail"]
        .as_str()
        .unwrap_or("商品与描述不符，要求退款");
    let problem_type = input["problemType"].as_str().unwrap_or("REFUND");
    let complaint = json!({
        "_id": id, "channel": channel, "state": "PENDING", "complaintTime": now,
        "detail": detail, "problemType": problem_type, "problemDescription": "商品问题",
        "applyRefundAmount": if problem_type == "REFUND" { order["amount"].clone() } else { Value::Null },
        "mchid": suite.keys.mchid, "openid": order["openid"], "outTradeNo": order["outTradeNo"],
        "transactionId": order["transactionId"], "amount": order["amount"],
        "channelOrderId": order["channelOrderId"], "wxOrderId": order["wxOrderId"],
        "history": [history_entry("用户", "USER_CREATE_COMPLAINT", detail, now)]
    });
    suite
        .store
        .insert(COMPLAINTS, complaint.clone())
        .await
        .map_err(|e| store_failed(&e))?;
    let openid = order["openid"].as_str();
    let queued = if channel == "wxpay" {
        let url = match suite.store.get(STATE, "complaintNotify").await {
            Ok(Some(doc)) => doc["url"].as_str().map(str::to_owned),
            Ok(None) => None,
            Err(e) => return Err(store_failed(&e)),
        }
        .unwrap_or_else(|| format!("{}/payNotify/complaints", suite.base_url()));
        let payload = json!({"url": url, "eventType": "COMPLAINT.CREATE", "summary": "产生新投诉",
            "originalType": "complaint",
            "resource": {"complaint_id": id, "action_type": "CREATE_COMPLAINT"}});
        deliveries::enqueue(suite, DeliveryKind::Complaint, &id, openid, payload, 0).await
    } else {
        // The push's fields are unconfirmed: no complaint id, so wxPush lists complaints.
        let push = json!({"ToUserName": suite.gh_id(), "FromUserName": openid, "CreateTime": now,
            "MsgType": "event", "Event": "xpay_complaint_notify", "OpenId": openid,
            "MchOrderId": order["outTradeNo"], "WxOrderId": order["wxOrderId"],
            "ComplaintTime": now, "RetryTimes": 0, "RequestId": random_from(DIGITS, 16)});
        deliveries::enqueue(suite, DeliveryKind::Push, &id, openid, push, 0).await
    };
    queued.map_err(|e| store_failed(&e))?;
    Ok(view(&complaint))
}

/// The next `n` virtual payment refunds fail (`POST /dev/xpay/failNextRefund {n}`).
pub async fn fail_next_refund(suite: &Suite, n: i64) -> Result<i64, StoreError> {
    let doc = suite
        .store
        .update_one(
            STATE,
            &Filter::id("xpayRefunds"),
            &Update::new().inc("failNext", n),
            UpdateOptions::upsert(),
        )
        .await?;
    Ok(doc.and_then(|d| d["failNext"].as_i64()).unwrap_or(0))
}

/// Whether this refund fails (takes one of [`fail_next_refund`]'s).
pub async fn take_refund_failure(suite: &Suite) -> Result<bool, StoreError> {
    Ok(suite
        .store
        .update_one(
            STATE,
            &Filter::id("xpayRefunds").and(Filter::gt("failNext", 0)),
            &Update::new().inc("failNext", -1),
            UpdateOptions::default(),
        )
        .await?
        .is_some())
}
