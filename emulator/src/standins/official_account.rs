//! The Official Account stand-in: the account's server APIs (`menu/create`,
//! `get_current_selfmenu_info`, `message/template/send`, `user/info`, `qrcode/create`) behind
//! its own access token (`stable_token` with the account's appid and secret), and the
//! follower's half (`/dev/oa/*`: follow, scan a QR code, click a menu button, unfollow), which
//! queues the pushes WeChat would send: XML, sealed in safe mode with the account's appid and
//! delivered to `/wxPush` with WeChat's retries, exactly like the Mini Program's pushes.
//!
//! State lives in `dev_oa_*` collections of the suite's store. A template message to someone
//! who does not follow the account is refused with 43004, as WeChat does; a delivered one is
//! followed by a `TEMPLATESENDJOBFINISH` push.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, Update, UpdateOptions};

use crate::deliveries::{self, DeliveryKind};
use crate::http::{Request, Response};
use crate::keys::{ALNUM, random_from};
use crate::suite::{Suite, internal};

/// Followers: `_id` = the follower's openid under the account.
pub const FOLLOWERS: &str = "dev_oa_followers";
/// The live menu (`_id` = `current`).
pub const MENU: &str = "dev_oa_menu";
/// Template messages sent.
pub const TEMPLATE_MESSAGES: &str = "dev_oa_template_messages";
/// QR codes made, `_id` = ticket.
pub const QRCODES: &str = "dev_oa_qrcodes";

/// The templates the suite's functions are configured with (`WX_OA_TEMPLATES`).
pub const DEV_TEMPLATES: &str = r#"{"order_shipped":{"id":"DEV_TPL_SHIPPED"},"refund_settled":{"id":"DEV_TPL_REFUND","fields":{"character_string1":"orderId","amount2":"amount"}},"renewal_due":{"id":"DEV_TPL_RENEWAL"},"new_content":{"id":"DEV_TPL_CONTENT"}}"#;

fn wx_error(errcode: i64, errmsg: &str) -> Response {
    Response::json(
        StatusCode::OK,
        &json!({"errcode": errcode, "errmsg": errmsg}),
    )
}

fn ok(mut extra: Value) -> Response {
    if let Some(map) = extra.as_object_mut() {
        map.insert("errcode".into(), 0.into());
        map.insert("errmsg".into(), "ok".into());
    }
    Response::json(StatusCode::OK, &extra)
}

/// Renders a push payload as WeChat's XML (strings in CDATA, numbers bare).
pub fn to_xml(payload: &Value) -> String {
    let mut out = String::from("<xml>");
    if let Some(map) = payload.as_object() {
        for (k, v) in map {
            match v {
                Value::Number(n) => out.push_str(&format!("<{k}>{n}</{k}>")),
                Value::String(s) => {
                    out.push_str(&format!("<{k}><![CDATA[{}]]></{k}>", s.replace("]]>", "")));
                }
                _ => {}
            }
        }
    }
    out.push_str("</xml>");
    out
}

/// Routes the account's APIs; `None` for every other path.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    let route = match (req.method.clone(), req.path.as_str()) {
        (Method::POST, "/cgi-bin/menu/create") => 0,
        (Method::GET, "/cgi-bin/get_current_selfmenu_info") => 1,
        (Method::POST, "/cgi-bin/message/template/send") => 2,
        (Method::GET, "/cgi-bin/user/info") => 3,
        (Method::POST, "/cgi-bin/qrcode/create") => 4,
        _ => return None,
    };
    if let Err(denied) = check_token(suite, req).await {
        return Some(denied);
    }
    Some(match route {
        0 => menu_create(suite, req).await,
        1 => menu_current(suite).await,
        2 => template_send(suite, req).await,
        3 => user_info(suite, req).await,
        _ => qrcode_create(suite, req).await,
    })
}

/// The account's APIs take only a token issued to the account's appid.
async fn check_token(suite: &Suite, req: &Request) -> Result<(), Response> {
    let token = req
        .param("access_token")
        .ok_or_else(|| wx_error(41001, "access_token missing"))?;
    match suite
        .store
        .get(crate::standins::wechat_api::TOKENS, &token)
        .await
    {
        Ok(Some(doc))
            if doc["appid"].as_str() == Some(suite.keys.oa_appid().as_str())
                && doc["expiresAt"].as_i64().unwrap_or(0) > suite.clock.now() =>
        {
            Ok(())
        }
        Ok(_) => Err(wx_error(
            40001,
            "invalid credential, access_token is invalid or not latest (wemint-dev)",
        )),
        Err(e) => Err(internal(e)),
    }
}

fn name_bytes(b: &Value) -> usize {
    b["name"].as_str().map_or(0, str::len)
}

async fn menu_create(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    // The platform's own checks (errcodes as WeChat answers them).
    let Some(buttons) = body["button"].as_array().filter(|b| !b.is_empty()) else {
        return wx_error(40017, "invalid button type");
    };
    if buttons.len() > 3 {
        return wx_error(40016, "invalid button size");
    }
    for b in buttons {
        if name_bytes(b) == 0 || name_bytes(b) > 16 {
            return wx_error(40018, "invalid button name size");
        }
        let subs = b["sub_button"].as_array().cloned().unwrap_or_default();
        if subs.len() > 5 {
            return wx_error(40023, "invalid sub button size");
        }
        for s in &subs {
            if name_bytes(s) == 0 || name_bytes(s) > 60 {
                return wx_error(40025, "invalid sub button name size");
            }
        }
    }
    let doc = json!({"_id": "current", "menu": body, "updatedAt": suite.clock.now()});
    match suite
        .store
        .update_one(
            MENU,
            &Filter::id("current"),
            &Update::new()
                .set("menu", doc["menu"].clone())
                .set("updatedAt", suite.clock.now()),
            UpdateOptions::upsert(),
        )
        .await
    {
        Ok(_) => ok(json!({})),
        Err(e) => internal(e),
    }
}

/// `get_current_selfmenu_info`'s shape: sub-buttons under `sub_button.list`.
async fn menu_current(suite: &Suite) -> Response {
    let menu = match suite.store.get(MENU, "current").await {
        Ok(Some(doc)) => doc["menu"].clone(),
        Ok(None) => return ok(json!({"is_menu_open": 0})),
        Err(e) => return internal(e),
    };
    let buttons: Vec<Value> = menu["button"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut b| {
            if let Some(subs) = b.get("sub_button").cloned().filter(Value::is_array) {
                b["sub_button"] = json!({"list": subs});
            }
            b
        })
        .collect();
    ok(json!({"is_menu_open": 1, "selfmenu_info": {"button": buttons}}))
}

async fn template_send(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let touser = body["touser"].as_str().unwrap_or_default().to_owned();
    if body["template_id"].as_str().unwrap_or_default().is_empty() {
        return wx_error(40037, "invalid template_id");
    }
    let follower = match suite.store.get(FOLLOWERS, &touser).await {
        Ok(Some(f)) => f,
        Ok(None) => return wx_error(40003, "invalid openid"),
        Err(e) => return internal(e),
    };
    if follower["subscribed"] != true {
        return wx_error(43004, "require subscribe");
    }
    let mini = &body["miniprogram"];
    if mini["appid"].as_str() != Some(suite.keys.appid.as_str())
        || mini["pagepath"].as_str().unwrap_or_default().is_empty()
    {
        return wx_error(40165, "invalid weapp pagepath");
    }
    let now = suite.clock.now();
    let msgid = 1_000_000
        + i64::try_from(random_from(b"0123456789", 9).parse::<u64>().unwrap_or(0)).unwrap_or(0);
    let record = json!({"_id": msgid.to_string(), "msgid": msgid, "touser": touser, "user": follower["user"],
        "templateId": body["template_id"], "pagepath": mini["pagepath"], "data": body["data"],
        "clientMsgId": body["client_msg_id"], "sentAt": now});
    if let Err(e) = suite.store.insert(TEMPLATE_MESSAGES, record).await {
        return internal(e);
    }
    let finish = json!({"ToUserName": suite.oa_gh_id(), "FromUserName": touser, "CreateTime": now,
        "MsgType": "event", "Event": "TEMPLATESENDJOBFINISH", "MsgID": msgid, "Status": "success"});
    if let Err(e) = deliveries::enqueue(
        suite,
        DeliveryKind::Push,
        &msgid.to_string(),
        Some(&touser),
        finish,
        50,
    )
    .await
    {
        return internal(e);
    }
    ok(json!({"msgid": msgid}))
}

async fn user_info(suite: &Suite, req: &Request) -> Response {
    let openid = req.param("openid").unwrap_or_default();
    match suite.store.get(FOLLOWERS, &openid).await {
        Ok(Some(f)) if f["subscribed"] == true => ok(json!({
            "subscribe": 1, "openid": openid, "unionid": f["unionid"],
            "subscribe_time": f["subscribedAt"], "subscribe_scene": f["subscribeScene"],
            "qr_scene_str": f["scene"].as_str().unwrap_or_default(),
        })),
        Ok(Some(_)) => ok(json!({"subscribe": 0, "openid": openid, "unionid": Value::Null})),
        Ok(None) => wx_error(40003, "invalid openid"),
        Err(e) => internal(e),
    }
}

async fn qrcode_create(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let action = body["action_name"].as_str().unwrap_or_default();
    let scene = &body["action_info"]["scene"];
    let scene = match (scene["scene_str"].as_str(), scene["scene_id"].as_i64()) {
        (Some(s), _) if (1..=64).contains(&s.len()) => s.to_owned(),
        (None, Some(id)) if id > 0 => id.to_string(),
        _ => return wx_error(40053, "invalid action info"),
    };
    let now = suite.clock.now();
    let (permanent, expire) = match action {
        "QR_SCENE" | "QR_STR_SCENE" => {
            let secs = body["expire_seconds"]
                .as_i64()
                .unwrap_or(30)
                .clamp(1, 2_592_000);
            (false, Some(secs))
        }
        "QR_LIMIT_SCENE" | "QR_LIMIT_STR_SCENE" => (true, None),
        _ => return wx_error(40054, "invalid action name"),
    };
    let ticket = format!("gQ{}", random_from(ALNUM, 40));
    let url = format!("http://weixin.qq.com/q/{}", random_from(ALNUM, 22));
    let doc = json!({"_id": ticket, "scene": scene, "permanent": permanent, "url": url,
        "expiresAt": expire.map(|s| now + s), "createdAt": now});
    if let Err(e) = suite.store.insert(QRCODES, doc).await {
        return internal(e);
    }
    let mut reply = json!({"ticket": ticket, "url": url});
    if let Some(s) = expire {
        reply["expire_seconds"] = json!(s);
    }
    Response::json(StatusCode::OK, &reply)
}

fn bad(code: &str, message: &str) -> Response {
    Response::json(
        StatusCode::BAD_REQUEST,
        &json!({"code": code, "message": message}),
    )
}

async fn push(suite: &Suite, openid: &str, event: &str, extra: Value) -> Result<String, Response> {
    let mut payload = json!({"ToUserName": suite.oa_gh_id(), "FromUserName": openid,
        "CreateTime": suite.clock.now(), "MsgType": "event", "Event": event});
    if let (Some(m), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    deliveries::enqueue(suite, DeliveryKind::Push, event, Some(openid), payload, 0)
        .await
        .map_err(internal)
}

async fn set_following(
    suite: &Suite,
    user: &str,
    following: bool,
    scene: Option<&str>,
) -> Result<(), Response> {
    let openid = suite.keys.oa_openid_for(user);
    let mut update = Update::new()
        .set("subscribed", following)
        .set("user", user)
        .set("unionid", suite.keys.unionid_for(user))
        .set("updatedAt", suite.clock.now());
    if following {
        update = update.set("subscribedAt", suite.clock.now()).set(
            "subscribeScene",
            if scene.is_some() {
                "ADD_SCENE_QR_CODE"
            } else {
                "ADD_SCENE_SEARCH"
            },
        );
        if let Some(s) = scene {
            update = update.set("scene", s);
        }
    }
    suite
        .store
        .update_one(
            FOLLOWERS,
            &Filter::id(&openid),
            &update,
            UpdateOptions::upsert(),
        )
        .await
        .map(|_| ())
        .map_err(internal)
}

async fn follows(suite: &Suite, user: &str) -> Result<bool, Response> {
    Ok(suite
        .store
        .get(FOLLOWERS, &suite.keys.oa_openid_for(user))
        .await
        .map_err(internal)?
        .is_some_and(|f| f["subscribed"] == true))
}

/// The follower's half, `/dev/oa/*` (`user` = the dev user's name):
/// - `POST /dev/oa/follow {user}`: follows (a `subscribe` push without a scene);
/// - `POST /dev/oa/scan {user, ticket | scene}`: scans a parametric code: `subscribe` with
///   `qrscene_<scene>` for a new follower, `SCAN` with the scene for a follower;
/// - `POST /dev/oa/click {user, key}` / `{user, url}` / `{user, pagepath}`: a menu button;
/// - `POST /dev/oa/unfollow {user}`: `unsubscribe`;
/// - `GET /dev/oa/messages?user=`: the template messages the user received;
/// - `GET /dev/oa/menu`: the live menu.
pub async fn dev(suite: &Suite, req: &Request, body: &Value) -> Option<Response> {
    let user = body["user"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| req.param("user"));
    let user = user.filter(|u| !u.is_empty() && u.len() <= 64);
    let reply = match (req.method.clone(), req.path.as_str()) {
        (Method::GET, "/dev/oa/menu") => return Some(menu_current(suite).await),
        (Method::GET, "/dev/oa/messages") => {
            let filter = match &user {
                Some(u) => Filter::eq("user", u.as_str()),
                None => Filter::All,
            };
            let list = suite
                .store
                .find(
                    TEMPLATE_MESSAGES,
                    &filter,
                    &FindOptions::new().sort_asc("sentAt"),
                )
                .await;
            return Some(match list {
                Ok(l) => Response::json(StatusCode::OK, &json!({"messages": l})),
                Err(e) => internal(e),
            });
        }
        (Method::POST, path) if path.starts_with("/dev/oa/") => {
            let Some(user) = user else {
                return Some(bad("BAD_USER", "user must be 1-64 characters"));
            };
            oa_action(suite, &path["/dev/oa/".len()..], &user, body).await
        }
        _ => return None,
    };
    Some(match reply {
        Ok(v) => Response::json(StatusCode::OK, &v),
        Err(r) => r,
    })
}

async fn oa_action(
    suite: &Suite,
    action: &str,
    user: &str,
    body: &Value,
) -> Result<Value, Response> {
    let openid = suite.keys.oa_openid_for(user);
    let pushed = match action {
        "follow" => {
            set_following(suite, user, true, None).await?;
            push(suite, &openid, "subscribe", json!({})).await?
        }
        "scan" => {
            let scene = match (body["ticket"].as_str(), body["scene"].as_str()) {
                (Some(t), _) => match suite.store.get(QRCODES, t).await.map_err(internal)? {
                    Some(q)
                        if q["expiresAt"]
                            .as_i64()
                            .is_none_or(|e| e > suite.clock.now()) =>
                    {
                        q["scene"].as_str().unwrap_or_default().to_owned()
                    }
                    Some(_) => return Err(bad("EXPIRED", "the QR code has expired")),
                    None => return Err(bad("UNKNOWN_TICKET", "no QR code with this ticket")),
                },
                (None, Some(s)) if !s.is_empty() => s.to_owned(),
                _ => return Err(bad("BAD_SCENE", "give a ticket or a scene")),
            };
            if follows(suite, user).await? {
                push(
                    suite,
                    &openid,
                    "SCAN",
                    json!({"EventKey": scene, "Ticket": body["ticket"].as_str().unwrap_or("")}),
                )
                .await?
            } else {
                set_following(suite, user, true, Some(&scene)).await?;
                push(
                    suite,
                    &openid,
                    "subscribe",
                    json!({"EventKey": format!("qrscene_{scene}"),
                    "Ticket": body["ticket"].as_str().unwrap_or("")}),
                )
                .await?
            }
        }
        "click" => {
            let (event, key) = match (
                body["key"].as_str(),
                body["url"].as_str(),
                body["pagepath"].as_str(),
            ) {
                (Some(k), _, _) => ("CLICK", k),
                (None, Some(u), _) => ("VIEW", u),
                (None, None, Some(p)) => ("view_miniprogram", p),
                _ => return Err(bad("BAD_BUTTON", "give key, url or pagepath")),
            };
            push(suite, &openid, event, json!({"EventKey": key})).await?
        }
        "unfollow" => {
            set_following(suite, user, false, None).await?;
            push(suite, &openid, "unsubscribe", json!({})).await?
        }
        _ => return Err(bad("UNKNOWN", "follow, scan, click or unfollow")),
    };
    Ok(json!({"user": user, "openid": openid, "delivery": pushed}))
}
