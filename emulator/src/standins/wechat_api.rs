//! The WeChat server API stand-in (`WECHAT_API_BASE`): code2Session for dev codes,
//! stable_token, content security with deterministic verdicts, subscribe messages, URL
//! links and schemes, cloud-file download URLs (`tcb/batchdownloadfile`), and the xpay
//! (virtual payment) server APIs. Every endpoint but
//! code2Session and stable_token checks an access_token this stand-in issued (40001
//! otherwise), as WeChat does. State lives in `dev_*` collections of the suite's store.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::pay::xpay as xpay_sig;
use wemint::store::{Filter, FindOptions, Update, UpdateOptions};

use crate::deliveries::{self, DeliveryKind};
use crate::http::{Request, Response};
use crate::keys::{ALNUM, random_bytes, random_from};
use crate::suite::{Suite, internal};

/// Codes minted by `/dev/login`.
pub const CODES: &str = "dev_codes";
/// Latest session_key per openid.
pub const SESSIONS: &str = "dev_sessions";
/// Issued access tokens.
pub const TOKENS: &str = "dev_tokens";
/// Counters (`stable_token` fetches, …).
pub const COUNTERS: &str = "dev_counters";
/// Subscribe messages sent.
pub const MESSAGES: &str = "dev_messages";
/// URL links and schemes generated.
pub const LINKS: &str = "dev_links";
/// Content checks (text and media).
pub const CHECKS: &str = "dev_checks";
/// Virtual payment orders.
pub const XPAY_ORDERS: &str = "dev_xpay_orders";

/// A `wx.login` code lives five minutes.
const CODE_TTL_SECS: i64 = 300;
/// access_token lifetime.
const TOKEN_TTL_SECS: i64 = 7200;

/// A WeChat API failure: HTTP 200 with `{errcode, errmsg}`.
pub(crate) fn wx_error(errcode: i64, errmsg: &str) -> Response {
    Response::json(
        StatusCode::OK,
        &json!({"errcode": errcode, "errmsg": errmsg}),
    )
}

/// A WeChat API success: `extra` plus `errcode` 0.
pub(crate) fn ok(mut extra: Value) -> Response {
    if let Some(map) = extra.as_object_mut() {
        map.insert("errcode".into(), 0.into());
        map.insert("errmsg".into(), "ok".into());
    }
    Response::json(StatusCode::OK, &extra)
}

/// Routes `/sns/*`, `/cgi-bin/*`, `/wxa/*`, `/xpay/*` and `/tcb/batchdownloadfile`.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    let response = match (req.method.clone(), req.path.as_str()) {
        (Method::GET, "/sns/jscode2session") => code2session(suite, req).await,
        (Method::POST, "/cgi-bin/stable_token") => stable_token(suite, req).await,
        (Method::GET, "/wxa/checksession") => {
            if let Err(denied) = check_token(suite, req).await {
                return Some(denied);
            }
            check_session(suite, req).await
        }
        (Method::POST, path)
            if path.starts_with("/wxa/")
                || path.starts_with("/cgi-bin/")
                || path.starts_with("/xpay/")
                || path.starts_with("/datacube/")
                || path == "/tcb/batchdownloadfile" =>
        {
            if let Err(denied) = check_token(suite, req).await {
                return Some(denied);
            }
            match path {
                "/wxa/msg_sec_check" => msg_sec_check(suite, req).await,
                "/wxa/media_check_async" => media_check_async(suite, req).await,
                "/cgi-bin/message/subscribe/send" => subscribe_send(suite, req).await,
                "/wxa/generate_urllink" => generate_link(suite, req, "urllink").await,
                "/wxa/generatescheme" => generate_link(suite, req, "scheme").await,
                "/xpay/query_order" | "/xpay/refund_order" | "/xpay/notify_provide_goods" => {
                    xpay(suite, req).await
                }
                "/xpay/get_complaint_list"
                | "/xpay/get_complaint_detail"
                | "/xpay/get_negotiation_history"
                | "/xpay/response_complaint"
                | "/xpay/complete_complaint" => match check_pay_sig(suite, req) {
                    Ok(()) => crate::standins::complaints::xpay(suite, req).await,
                    Err(denied) => denied,
                },
                "/wxa/business/getuserphonenumber" => phone_number(suite, req).await,
                "/wxa/getwxacodeunlimit" => unlimited_code(req),
                "/tcb/batchdownloadfile" => batch_download_file(suite, req),
                p if p.starts_with("/wxa/sec/order/") => {
                    crate::standins::shipping::handle(suite, req).await
                }
                p if p.starts_with("/datacube/") => {
                    crate::standins::datacube::handle(suite, req).await
                }
                _ => wx_error(-1, &format!("api {path} is not emulated by wemint-dev")),
            }
        }
        _ => return None,
    };
    Some(response)
}

/// Mints a `wx.login` code for a dev user (`POST /dev/login {user}`).
pub async fn mint_code(suite: &Suite, user: &str) -> Result<Value, Response> {
    let user = user.trim();
    if user.is_empty() || user.len() > 64 {
        return Err(Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"code": "BAD_USER", "message": "user must be 1-64 characters"}),
        ));
    }
    let code = random_from(ALNUM, 32);
    let now = suite.clock.now();
    let openid = suite.keys.openid_for(user);
    suite
        .store
        .insert(
            CODES,
            json!({"_id": code, "user": user, "openid": openid, "createdAt": now, "expiresAt": now + CODE_TTL_SECS}),
        )
        .await
        .map_err(internal)?;
    Ok(json!({"code": code, "user": user, "openid": openid, "expiresAt": now + CODE_TTL_SECS}))
}

/// `checkSessionKey`: `signature` = hex HMAC-SHA256(session_key, "") of the user's current
/// session_key; 87009 otherwise.
async fn check_session(suite: &Suite, req: &Request) -> Response {
    if req.param("sig_method").as_deref() != Some("hmac_sha256") {
        return wx_error(87009, "invalid signature method");
    }
    let openid = req.param("openid").unwrap_or_default();
    let session = match suite.store.get(SESSIONS, &openid).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return wx_error(40003, "invalid openid"),
        Err(e) => return internal(e),
    };
    let expected = xpay_sig::user_signature(session["sessionKey"].as_str().unwrap_or_default(), "");
    if req
        .param("signature")
        .is_some_and(|s| sig_eq(&s, &expected))
    {
        ok(json!({}))
    } else {
        wx_error(87009, "invalid signature")
    }
}

/// Mints a phone-number button code for a dev user (`POST /dev/phoneCode {user, phone}`).
pub async fn mint_phone_code(suite: &Suite, user: &str, phone: &str) -> Result<Value, Response> {
    let digits = phone.trim_start_matches("+86").trim();
    if digits.len() != 11 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"code": "BAD_PHONE", "message": "phone must be 11 digits (mainland China)"}),
        ));
    }
    let code = random_from(ALNUM, 32);
    let now = suite.clock.now();
    let openid = suite.keys.openid_for(user);
    suite
        .store
        .insert(
            CODES,
            json!({"_id": code, "kind": "phone", "user": user, "openid": openid, "phone": digits,
                "createdAt": now, "expiresAt": now + CODE_TTL_SECS}),
        )
        .await
        .map_err(internal)?;
    Ok(json!({"code": code, "openid": openid, "expiresAt": now + CODE_TTL_SECS}))
}

async fn phone_number(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let Some(code) = body["code"].as_str() else {
        return wx_error(41008, "missing code");
    };
    let now = suite.clock.now();
    let spent = suite
        .store
        .update_one(
            CODES,
            &Filter::id(code)
                .and(Filter::eq("kind", "phone"))
                .and(Filter::exists("usedAt", false)),
            &Update::new().set("usedAt", now),
            UpdateOptions::default(),
        )
        .await;
    let doc = match spent {
        Ok(Some(doc)) if doc["expiresAt"].as_i64().unwrap_or(0) >= now => doc,
        Ok(_) => return wx_error(40029, "invalid code"),
        Err(e) => return internal(e),
    };
    if body["openid"]
        .as_str()
        .is_some_and(|o| Some(o) != doc["openid"].as_str())
    {
        return wx_error(40029, "invalid code (belongs to another user)");
    }
    let phone = doc["phone"].as_str().unwrap_or_default();
    ok(
        json!({"phone_info": {"phoneNumber": format!("+86{phone}"), "purePhoneNumber": phone, "countryCode": "86",
        "watermark": {"timestamp": now, "appid": suite.keys.appid}}}),
    )
}

/// `getwxacodeunlimit`: a PNG (the real one is a Mini Program code image; here a small
/// placeholder PNG whose text chunk carries the scene and page, so tests can read them back).
fn unlimited_code(req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let scene = body["scene"].as_str().unwrap_or_default();
    if scene.is_empty() || scene.len() > 32 {
        return wx_error(
            40169,
            "invalid length for scene, or the data is not json string",
        );
    }
    let page = body["page"].as_str().unwrap_or("");
    if page.starts_with('/') {
        return wx_error(41030, "invalid page rule: no leading /");
    }
    Response::bytes(
        StatusCode::OK,
        "image/png",
        crate::demo::png_with_text(&format!("scene={scene}&page={page}")),
    )
}

/// `tcb/batchdownloadfile`: download URLs for `{env, file_list: [{fileid, max_age}]}` of this
/// suite's environment. Each file gets `status` 0 and its URL, valid `max_age` seconds (at
/// most a day) on the dev clock; see [`crate::suite::SuiteOptions::download_url_base`].
fn batch_download_file(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    if body["env"].as_str() != Some(suite.keys.env_id.as_str()) {
        return wx_error(-501_001, "env not found");
    }
    let Some(files) = body["file_list"].as_array().filter(|l| !l.is_empty()) else {
        return wx_error(44002, "empty post data: file_list");
    };
    let list: Vec<Value> = files
        .iter()
        .map(|f| {
            let id = f["fileid"].as_str().unwrap_or_default();
            let max_age = f["max_age"].as_i64().unwrap_or(7200).clamp(1, 86_400);
            let Some(path) = crate::standins::cloud_storage::cloud_path(id) else {
                return json!({"fileid": id, "download_url": "", "status": -503_003, "errmsg": "invalid fileid"});
            };
            let url = match &suite.options.download_url_base {
                None => crate::standins::cloud_storage::temp_url(suite, id, max_age),
                Some(base) => {
                    let t = suite.clock.now() + max_age;
                    let sign = crate::standins::cloud_storage::sign(&suite.keys.storage_key, id, t);
                    format!("{}/{path}?sign={sign}&t={t}", base.trim_end_matches('/'))
                }
            };
            json!({"fileid": id, "download_url": url, "status": 0, "errmsg": "ok"})
        })
        .collect();
    ok(json!({"file_list": list}))
}

async fn code2session(suite: &Suite, req: &Request) -> Response {
    let keys = &suite.keys;
    if req.param("appid").as_deref() != Some(keys.appid.as_str()) {
        return wx_error(40013, "invalid appid");
    }
    if req.param("secret").as_deref() != Some(keys.appsecret.as_str()) {
        return wx_error(40125, "invalid appsecret");
    }
    if req.param("grant_type").as_deref() != Some("authorization_code") {
        return wx_error(40002, "invalid grant_type");
    }
    let Some(code) = req.param("js_code").filter(|c| !c.is_empty()) else {
        return wx_error(41008, "missing code");
    };
    let now = suite.clock.now();
    // The code is spent by a conditional update, so two concurrent logins cannot both win.
    let spent = suite
        .store
        .update_one(
            CODES,
            &Filter::id(&code).and(Filter::exists("usedAt", false)),
            &Update::new().set("usedAt", now),
            UpdateOptions::default(),
        )
        .await;
    let doc = match spent {
        Ok(Some(doc)) => doc,
        Ok(None) => {
            return match suite.store.get(CODES, &code).await {
                Ok(Some(_)) => wx_error(40163, "code been used"),
                Ok(None) => wx_error(40029, "invalid code"),
                Err(e) => internal(e),
            };
        }
        Err(e) => return internal(e),
    };
    if doc["expiresAt"].as_i64().is_some_and(|t| t < now) {
        return wx_error(40029, "invalid code (expired)");
    }
    let user = doc["user"].as_str().unwrap_or_default().to_owned();
    let openid = keys.openid_for(&user);
    let unionid = keys.unionid_for(&user);
    let session_key = B64.encode(random_bytes(16));
    if let Err(e) = suite
        .store
        .update_one(
            SESSIONS,
            &Filter::id(&openid),
            &Update::new()
                .set("user", user.clone())
                .set("sessionKey", session_key.clone())
                .push("issuedKeys", session_key.clone())
                .set("updatedAt", now),
            UpdateOptions::upsert(),
        )
        .await
    {
        return internal(e);
    }
    Response::json(
        StatusCode::OK,
        &json!({"openid": openid, "session_key": session_key, "unionid": unionid}),
    )
}

async fn stable_token(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    if body["grant_type"].as_str() != Some("client_credential") {
        return wx_error(40002, "invalid grant_type");
    }
    // Two apps: the Mini Program and the Official Account, each with its own tokens.
    let oa_appid = suite.keys.oa_appid();
    let (appid, secret) = if body["appid"].as_str() == Some(oa_appid.as_str()) {
        (oa_appid, suite.keys.oa_appsecret())
    } else {
        (suite.keys.appid.clone(), suite.keys.appsecret.clone())
    };
    if body["appid"].as_str() != Some(appid.as_str()) {
        return wx_error(40013, "invalid appid");
    }
    if body["secret"].as_str() != Some(secret.as_str()) {
        return wx_error(40125, "invalid appsecret");
    }
    let force = body["force_refresh"].as_bool().unwrap_or(false);
    let now = suite.clock.now();
    if let Err(e) = bump(suite, "stable_token").await {
        return internal(e);
    }
    // Normal mode returns the current token while it has more than five minutes left.
    if !force {
        let current = suite
            .store
            .find(
                TOKENS,
                &Filter::gt("expiresAt", now + 300).and(Filter::eq("appid", appid.as_str())),
                &FindOptions::new().sort_desc("expiresAt").limit(1),
            )
            .await;
        match current {
            Ok(mut docs) => {
                if let Some(doc) = docs.pop() {
                    let expires_in = doc["expiresAt"].as_i64().unwrap_or(now) - now;
                    return Response::json(
                        StatusCode::OK,
                        &json!({"access_token": doc["_id"], "expires_in": expires_in}),
                    );
                }
            }
            Err(e) => return internal(e),
        }
    }
    let token = format!("DEV_{}", random_from(ALNUM, 120));
    if let Err(e) = suite
        .store
        .insert(
            TOKENS,
            json!({"_id": token, "appid": appid, "createdAt": now, "expiresAt": now + TOKEN_TTL_SECS, "force": force}),
        )
        .await
    {
        return internal(e);
    }
    Response::json(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": TOKEN_TTL_SECS}),
    )
}

async fn check_token(suite: &Suite, req: &Request) -> Result<(), Response> {
    let denied = || {
        wx_error(
            40001,
            "invalid credential, access_token is invalid or not latest (wemint-dev)",
        )
    };
    let token = req
        .param("access_token")
        .ok_or_else(|| wx_error(41001, "access_token missing"))?;
    match suite.store.get(TOKENS, &token).await {
        Ok(Some(doc)) if doc["expiresAt"].as_i64().unwrap_or(0) > suite.clock.now() => Ok(()),
        Ok(_) => Err(denied()),
        Err(e) => Err(internal(e)),
    }
}

/// Increments a named counter.
pub async fn bump(suite: &Suite, name: &str) -> Result<(), wemint::store::StoreError> {
    suite
        .store
        .update_one(
            COUNTERS,
            &Filter::id(name),
            &Update::new().inc("count", 1),
            UpdateOptions::upsert(),
        )
        .await
        .map(|_| ())
}

/// A counter's value.
pub async fn counter(suite: &Suite, name: &str) -> i64 {
    match suite.store.get(COUNTERS, name).await {
        Ok(Some(doc)) => doc["count"].as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The verdict for a text or a media name under the configured lists.
fn verdict_for(suite: &Suite, text: &str, media: bool) -> (&'static str, i64, Option<String>) {
    let lists = suite.moderation();
    let lower = text.to_lowercase();
    let (risky, review) = if media {
        (&lists.risky_images, &lists.review_images)
    } else {
        (&lists.risky_words, &lists.review_words)
    };
    if let Some(word) = risky.iter().find(|w| lower.contains(&w.to_lowercase())) {
        return (
            "risky",
            if media { 20002 } else { 20006 },
            Some(word.clone()),
        );
    }
    if let Some(word) = review.iter().find(|w| lower.contains(&w.to_lowercase())) {
        return ("review", 21000, Some(word.clone()));
    }
    ("pass", 100, None)
}

fn trace_id() -> String {
    format!("{}-{}", hex::encode(random_bytes(8)), random_from(ALNUM, 8))
}

async fn known_openid(suite: &Suite, openid: &str) -> Result<bool, Response> {
    suite
        .store
        .get(SESSIONS, openid)
        .await
        .map(|d| d.is_some())
        .map_err(internal)
}

async fn msg_sec_check(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let Some(content) = body["content"].as_str() else {
        return wx_error(44002, "empty post data: content");
    };
    if content.chars().count() > 2500 {
        return wx_error(47001, "content longer than 2500 characters");
    }
    if body["version"].as_i64() != Some(2) {
        return wx_error(47001, "version must be 2");
    }
    let scene = body["scene"].as_i64().unwrap_or(0);
    if !(1..=4).contains(&scene) {
        return wx_error(40129, "invalid scene");
    }
    let openid = body["openid"].as_str().unwrap_or_default();
    match known_openid(suite, openid).await {
        Ok(true) => {}
        Ok(false) => return wx_error(40003, "invalid openid"),
        Err(r) => return r,
    }
    let (suggest, label, keyword) = verdict_for(suite, content, false);
    let trace = trace_id();
    let mut detail = json!({"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": if suggest == "pass" { 0 } else { 90 }});
    if let Some(k) = &keyword {
        detail["keyword"] = json!(k);
        detail["strategy"] = json!("keyword");
    }
    let record = json!({"_id": trace, "type": "text", "openid": openid, "content": content, "scene": scene,
        "suggest": suggest, "label": label, "keyword": keyword, "createdAt": suite.clock.now()});
    if let Err(e) = suite.store.insert(CHECKS, record).await {
        return internal(e);
    }
    ok(
        json!({"trace_id": trace, "result": {"suggest": suggest, "label": label}, "detail": [detail]}),
    )
}

async fn media_check_async(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let Some(url) = body["media_url"].as_str().filter(|u| !u.is_empty()) else {
        return wx_error(44002, "empty post data: media_url");
    };
    let media_type = body["media_type"].as_i64().unwrap_or(0);
    if media_type != 1 && media_type != 2 {
        return wx_error(47001, "media_type must be 1 (audio) or 2 (image)");
    }
    if body["version"].as_i64() != Some(2) {
        return wx_error(47001, "version must be 2");
    }
    let openid = body["openid"].as_str().unwrap_or_default().to_owned();
    match known_openid(suite, &openid).await {
        Ok(true) => {}
        Ok(false) => return wx_error(40003, "invalid openid"),
        Err(r) => return r,
    }
    // The verdict is decided by the file name: a temp URL's `fileId`, else the URL's last
    // path segment.
    let name = media_name(url);
    let (suggest, label, keyword) = verdict_for(suite, &name, true);
    let trace = trace_id();
    let now = suite.clock.now();
    let record = json!({"_id": trace, "type": if media_type == 2 { "image" } else { "audio" }, "openid": openid,
        "mediaUrl": url, "name": name, "suggest": suggest, "label": label, "keyword": keyword, "createdAt": now});
    if let Err(e) = suite.store.insert(CHECKS, record).await {
        return internal(e);
    }
    let event = json!({
        "ToUserName": suite.gh_id(), "FromUserName": openid, "CreateTime": now, "MsgType": "event",
        "Event": "wxa_media_check", "appid": suite.keys.appid, "trace_id": trace, "version": 2,
        "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": if suggest == "pass" { 0 } else { 90 }}],
        "errcode": 0, "errmsg": "ok", "result": {"suggest": suggest, "label": label}
    });
    let delay_ms = suite.options.media_check_delay_ms;
    if let Err(e) = deliveries::enqueue(
        suite,
        DeliveryKind::Push,
        &trace,
        Some(&openid),
        event,
        delay_ms,
    )
    .await
    {
        return internal(e);
    }
    ok(json!({"trace_id": trace}))
}

fn media_name(url: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let file = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "fileId")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_owned());
    file.rsplit('/').next().unwrap_or_default().to_owned()
}

async fn subscribe_send(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let touser = body["touser"].as_str().unwrap_or_default();
    if touser.is_empty() {
        return wx_error(40003, "invalid openid");
    }
    let template = body["template_id"].as_str().unwrap_or_default();
    if template.is_empty() {
        return wx_error(40037, "invalid template_id");
    }
    if !body["data"].is_object() {
        return wx_error(47003, "argument invalid! data is empty");
    }
    let msgid = i64::from_be_bytes(random_bytes(8).try_into().unwrap_or([0; 8])).unsigned_abs()
        % 10_000_000_000;
    let record = json!({"_id": msgid.to_string(), "touser": touser, "templateId": template, "page": body["page"],
        "data": body["data"], "state": body["miniprogram_state"], "sentAt": suite.clock.now()});
    if let Err(e) = suite.store.insert(MESSAGES, record).await {
        return internal(e);
    }
    ok(json!({"msgid": msgid}))
}

async fn generate_link(suite: &Suite, req: &Request, kind: &str) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return wx_error(47001, "data format error");
    };
    let (path, query) = if kind == "scheme" {
        (
            body["jump_wxa"]["path"].clone(),
            body["jump_wxa"]["query"].clone(),
        )
    } else {
        (body["path"].clone(), body["query"].clone())
    };
    if path.as_str().is_some_and(|p| p.contains('?')) {
        return wx_error(40165, "invalid weapp pagepath: no query in path");
    }
    let id = random_from(ALNUM, 12);
    let link = if kind == "scheme" {
        format!("weixin://dl/business/?t={id}")
    } else {
        format!("https://wxaurl.cn/{id}")
    };
    let record = json!({"_id": id, "kind": kind, "link": link, "path": path, "query": query,
        "request": body, "createdAt": suite.clock.now()});
    if let Err(e) = suite.store.insert(LINKS, record).await {
        return internal(e);
    }
    if kind == "scheme" {
        ok(json!({"openlink": link}))
    } else {
        ok(json!({"url_link": link}))
    }
}

/// `paySig` over `uri&body` with the AppKey (`wemint::pay::xpay`). A body that is not UTF-8
/// cannot have been signed by a client, so it gets a signature nobody matches.
fn pay_sig(appkey: &str, uri: &str, body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => xpay_sig::pay_sig(&xpay_sig::AppKey::new(appkey), uri, text),
        Err(_) => String::from("-"),
    }
}

fn sig_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Checks `pay_sig` as virtual payment does (268490003 when wrong).
pub(crate) fn check_pay_sig(suite: &Suite, req: &Request) -> Result<(), Response> {
    let expected = pay_sig(&suite.keys.xpay_appkey, &req.path, &req.body);
    if req.param("pay_sig").is_some_and(|s| sig_eq(&s, &expected)) {
        Ok(())
    } else {
        Err(wx_error(268_490_003, "pay_sig error"))
    }
}

async fn xpay(suite: &Suite, req: &Request) -> Response {
    if let Err(denied) = check_pay_sig(suite, req) {
        return denied;
    }
    let Ok(body) = req.json::<Value>() else {
        return wx_error(268_490_002, "param error: body is not JSON");
    };
    let order_id = body["order_id"].as_str().map(str::to_owned);
    let wx_order_id = body["wx_order_id"].as_str().map(str::to_owned);
    let filter = match (order_id, wx_order_id) {
        (Some(id), _) => Filter::id(id),
        (None, Some(wx)) => Filter::eq("wxOrderId", wx),
        (None, None) => {
            return wx_error(268_490_002, "param error: order_id or wx_order_id required");
        }
    };
    let order = match suite.store.find_one(XPAY_ORDERS, &filter).await {
        Ok(Some(o)) => o,
        Ok(None) => return wx_error(268_490_002, "param error: order not found"),
        Err(e) => return internal(e),
    };
    let now = suite.clock.now();
    match req.path.as_str() {
        "/xpay/query_order" => {
            if body["openid"]
                .as_str()
                .is_some_and(|o| o != order["openid"].as_str().unwrap_or(""))
            {
                return wx_error(268_490_001, "openid error");
            }
            ok(json!({"order": xpay_order_view(&order)}))
        }
        "/xpay/notify_provide_goods" => {
            let updated = suite
                .store
                .update_one(
                    XPAY_ORDERS,
                    &Filter::id(order["_id"].as_str().unwrap_or_default())
                        .and(Filter::is_in("status", [2, 3])),
                    &Update::new()
                        .set("status", 4)
                        .set("provideTime", now)
                        .set("updateTime", now),
                    UpdateOptions::default(),
                )
                .await;
            match updated {
                Ok(Some(_)) => ok(json!({})),
                Ok(None) => wx_error(
                    268_490_004,
                    "duplicate operation: already provided or not paid",
                ),
                Err(e) => internal(e),
            }
        }
        _ => xpay_refund(suite, &order, &body).await,
    }
}

async fn xpay_refund(suite: &Suite, order: &Value, body: &Value) -> Response {
    let Some(refund_id) = body["refund_order_id"].as_str().filter(|s| !s.is_empty()) else {
        return wx_error(268_490_002, "param error: refund_order_id required");
    };
    let Some(fee) = body["refund_fee"].as_i64().filter(|f| *f > 0) else {
        return wx_error(268_490_002, "param error: refund_fee must be positive");
    };
    let id = order["_id"].as_str().unwrap_or_default();
    let paid = order["paidFee"].as_i64().unwrap_or(0);
    let refunded = order["refundFee"].as_i64().unwrap_or(0);
    if order["refunds"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["refundOrderId"] == refund_id))
    {
        return wx_error(268_490_004, "duplicate operation: refund already made");
    }
    if !matches!(order["status"].as_i64(), Some(2..=4)) {
        return wx_error(
            268_490_005,
            "order is not refundable (not paid or already refunded)",
        );
    }
    if refunded + fee > paid {
        return wx_error(268_490_002, "param error: refund_fee exceeds what is left");
    }
    let now = suite.clock.now();
    let refund_wx = format!("R{}", random_from(crate::keys::DIGITS, 20));
    let left = paid - refunded - fee;
    let mut update = Update::new()
        .inc("refundFee", fee)
        .set("updateTime", now)
        .push("refunds", json!({"refundOrderId": refund_id, "refundWxOrderId": refund_wx, "fee": fee, "reason": body["refund_reason"], "at": now}));
    if left == 0 {
        update = update.set("status", 5);
    }
    // The refund task starts now and ends later: success, or failure when the console asked
    // for one (`POST /dev/xpay/failNextRefund`). Its refund order is queryable by its id, and
    // `xpay_refund_notify` reports the end to wxPush.
    let fails = crate::standins::complaints::take_refund_failure(suite)
        .await
        .unwrap_or(false);
    let refund_order = json!({
        "_id": refund_id, "openid": order["openid"], "orderType": 1, "status": if fails { 7 } else { 5 },
        "orderFee": fee, "paidFee": fee, "refundFee": fee, "env": order["env"], "payOrderId": id,
        "wxOrderId": refund_wx, "createTime": now, "updateTime": now, "paidTime": now, "refunds": []
    });
    if let Err(e) = suite.store.insert(XPAY_ORDERS, refund_order).await {
        return match e {
            wemint::store::StoreError::DuplicateKey { .. } => {
                wx_error(268_490_004, "duplicate operation: refund already made")
            }
            other => internal(other),
        };
    }
    if !fails {
        match suite
            .store
            .update_one(
                XPAY_ORDERS,
                &Filter::id(id).and(Filter::eq("refundFee", refunded)),
                &update,
                UpdateOptions::default(),
            )
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = suite
                    .store
                    .delete_one(XPAY_ORDERS, &Filter::id(refund_id))
                    .await;
                return wx_error(-1, "system error: concurrent refund, retry");
            }
            Err(e) => return internal(e),
        }
    }
    let openid = order["openid"].as_str().unwrap_or_default();
    let event = json!({
        "ToUserName": suite.gh_id(), "FromUserName": openid, "CreateTime": now, "MsgType": "event",
        "Event": "xpay_refund_notify", "OpenId": openid, "MchRefundId": refund_id, "WxRefundId": refund_wx,
        "MchOrderId": id, "WxOrderId": order["wxOrderId"], "RefundFee": fee,
        "RetCode": if fails { 268_490_014 } else { 0 }, "RetMsg": if fails { "退款失败" } else { "" },
        "RefundStartTimestamp": now, "RefundSuccTimestamp": if fails { 0 } else { now }, "RetryTimes": 0
    });
    if let Err(e) = deliveries::enqueue(
        suite,
        DeliveryKind::Push,
        refund_id,
        Some(openid),
        event,
        suite.options.refund_delay_ms,
    )
    .await
    {
        return internal(e);
    }
    ok(
        json!({"refund_order_id": refund_id, "refund_wx_order_id": refund_wx,
        "pay_order_id": id, "pay_wx_order_id": order["wxOrderId"]}),
    )
}

/// The `order` object of `query_order`.
pub fn xpay_order_view(order: &Value) -> Value {
    let paid = order["paidFee"].as_i64().unwrap_or(0);
    let refunded = order["refundFee"].as_i64().unwrap_or(0);
    json!({
        "order_id": order["_id"], "create_time": order["createTime"], "update_time": order["updateTime"],
        "status": order["status"], "biz_type": 0, "order_fee": order["orderFee"], "coupon_fee": 0,
        "paid_fee": paid, "order_type": order["orderType"].as_i64().unwrap_or(0), "refund_fee": refunded, "paid_time": order["paidTime"],
        "provide_time": order["provideTime"], "env_type": order["env"], "biz_meta": order["attach"],
        "left_fee": paid - refunded, "wx_order_id": order["wxOrderId"], "channel_order_id": order["channelOrderId"],
        "wxpay_order_id": order["wxpayOrderId"], "openid": order["openid"], "product_id": order["productId"],
        "buy_quantity": order["quantity"]
    })
}

/// The client half of `wx.requestVirtualPayment` (`POST /dev/requestVirtualPayment`): checks
/// `paySig` with the AppKey and `signature` with the user's current session_key exactly as
/// WeChat does, records a paid order and sends `xpay_goods_deliver_notify` to wxPush.
///
/// `openid` is the paying user when known; otherwise the user is the one whose current
/// session_key produced `signature` (WeChat knows the user from the client).
pub async fn request_virtual_payment(
    suite: &Suite,
    openid: Option<&str>,
    body: &Value,
) -> Response {
    let fail = |code: i64, msg: &str| {
        Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"errCode": code, "errMsg": format!("requestVirtualPayment:fail {msg}")}),
        )
    };
    let Some(sign_data) = body["signData"].as_str() else {
        return fail(-1, "signData must be a string");
    };
    let expected = pay_sig(
        &suite.keys.xpay_appkey,
        "requestVirtualPayment",
        sign_data.as_bytes(),
    );
    if !body["paySig"]
        .as_str()
        .is_some_and(|s| sig_eq(s, &expected))
    {
        return fail(-15001, "paySig error");
    }
    let sessions = match openid {
        Some(o) => suite
            .store
            .get(SESSIONS, o)
            .await
            .map(|d| d.into_iter().collect::<Vec<_>>()),
        None => {
            suite
                .store
                .find(SESSIONS, &Filter::all_of([]), &FindOptions::new())
                .await
        }
    };
    let sessions = match sessions {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    if sessions.is_empty() {
        return fail(
            -15002,
            "no session_key for this user: wx.login and login first",
        );
    }
    let signature = body["signature"].as_str().unwrap_or_default();
    let Some(session) = sessions.iter().find(|doc| {
        let key = doc["sessionKey"].as_str().unwrap_or_default();
        sig_eq(signature, &xpay_sig::user_signature(key, sign_data))
    }) else {
        return fail(268_490_003, "signature error (user session_key)");
    };
    let openid = session["_id"].as_str().unwrap_or_default().to_owned();
    let openid = openid.as_str();
    let Ok(data) = serde_json::from_str::<Value>(sign_data) else {
        return fail(-1, "signData is not JSON");
    };
    if data["offerId"].as_str() != Some(suite.keys.xpay_offer_id.as_str()) {
        return fail(-15003, "offerId does not match");
    }
    let mode = body["mode"].as_str().unwrap_or("short_series_goods");
    let Some(out_trade_no) = data["outTradeNo"]
        .as_str()
        .filter(|s| (8..=32).contains(&s.len()))
    else {
        return fail(-1, "outTradeNo must be 8-32 characters");
    };
    let quantity = data["buyQuantity"].as_i64().unwrap_or(1).max(1);
    let price = data["goodsPrice"].as_i64().unwrap_or(0);
    if mode == "short_series_goods" && price <= 0 {
        return fail(-1, "goodsPrice must be positive fen");
    }
    // A discounted sale charges activitySellingPrice: 40% to 100% of the item price.
    let selling = match data.get("activitySellingPrice").and_then(Value::as_i64) {
        Some(s) if s > price || s * 10 < price * 4 => {
            return fail(
                -15001,
                "activitySellingPrice must be 40% to 100% of goodsPrice",
            );
        }
        Some(s) => s,
        None => price,
    };
    let now = suite.clock.now();
    let wx_order_id = format!("X{}", random_from(crate::keys::DIGITS, 24));
    let wxpay_order_id = format!("4200{}", random_from(crate::keys::DIGITS, 24));
    let fee = selling * quantity;
    let order = json!({
        "_id": out_trade_no, "openid": openid, "mode": mode, "productId": data["productId"], "quantity": quantity,
        "orderFee": fee, "paidFee": fee, "refundFee": 0, "status": 2, "env": data["env"], "attach": data["attach"],
        "wxOrderId": wx_order_id, "wxpayOrderId": wxpay_order_id, "channelOrderId": wxpay_order_id,
        "createTime": now, "updateTime": now, "paidTime": now, "signData": sign_data, "refunds": []
    });
    match suite.store.insert(XPAY_ORDERS, order).await {
        Ok(_) => {}
        Err(wemint::store::StoreError::DuplicateKey { .. }) => {
            return fail(-1, "outTradeNo already paid");
        }
        Err(e) => return internal(e),
    }
    let event = json!({
        "ToUserName": suite.gh_id(), "FromUserName": openid, "CreateTime": now, "MsgType": "event",
        "Event": "xpay_goods_deliver_notify", "OpenId": openid, "OutTradeNo": out_trade_no, "Env": data["env"],
        "WeChatPayInfo": {"MchOrderNo": wxpay_order_id, "TransactionId": wxpay_order_id, "PaidTime": now},
        "GoodsInfo": {"ProductId": data["productId"], "Quantity": quantity, "OrigPrice": price * quantity, "ActualPrice": fee, "Attach": data["attach"]}
    });
    if let Err(e) = deliveries::enqueue(
        suite,
        DeliveryKind::Push,
        out_trade_no,
        Some(openid),
        event,
        0,
    )
    .await
    {
        return internal(e);
    }
    Response::json(
        StatusCode::OK,
        &json!({"errMsg": "requestVirtualPayment:ok", "outTradeNo": out_trade_no, "wxOrderId": wx_order_id}),
    )
}
