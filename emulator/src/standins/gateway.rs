//! The CloudBase gateway.
//!
//! - `POST /tcb/callFunction` with `{name, data}`: the event is `data` with `userInfo {appId,
//!   openId}` injected for the dev user (header `X-Wemint-Dev-User`, default `alice`), as
//!   `wx.cloud.callFunction` delivers it (a client-sent `userInfo` is replaced). A bearer
//!   session token (`Authorization: Bearer …`, what the Mini Program's dev mode sends) is
//!   moved into `data.token`, where event functions read it. The reply body is the
//!   function's envelope.
//! - `/payNotify…` and `/wxPush…` (any method): forwarded to payNotify / wxPush as CloudBase
//!   HTTP-access events (`path, httpMethod, headers, queryStringParameters, requestContext,
//!   body, isBase64Encoded`); the integrated response becomes the HTTP response.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::functions::InvokeError;
use crate::http::{Request, Response};
use crate::keys::{ALNUM, random_from};
use crate::router::dev_user;
use crate::scf::Outcome;
use crate::suite::Suite;

fn envelope_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    Response::json(
        status,
        &json!({"ok": false, "error": {"code": code, "message": message}}),
    )
    .with_header("x-request-id", request_id)
}

fn invoke_error(e: &InvokeError, request_id: &str) -> Response {
    let (status, code) = match e {
        InvokeError::Unknown(_) => (StatusCode::NOT_FOUND, "FUNCTION_NOT_FOUND"),
        InvokeError::NotBuilt { .. } | InvokeError::Start { .. } | InvokeError::Disabled => {
            (StatusCode::SERVICE_UNAVAILABLE, "FUNCTION_UNAVAILABLE")
        }
        InvokeError::Failed { .. } => (StatusCode::BAD_GATEWAY, "FUNCTION_FAILED"),
    };
    envelope_error(status, code, &e.to_string(), request_id)
}

/// Routes the gateway paths.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    if req.method == Method::POST && req.path == "/tcb/callFunction" {
        return Some(call_function(suite, req).await);
    }
    for (prefix, function) in [("/payNotify", "payNotify"), ("/wxPush", "wxPush")] {
        if req.path == prefix || req.path.starts_with(&format!("{prefix}/")) {
            return Some(http_access(suite, req, function).await);
        }
    }
    None
}

/// Calls a function as `openid`: `{name, data}` → the reply envelope (the console uses this
/// directly).
pub async fn call(
    suite: &Suite,
    openid: &str,
    name: &str,
    mut data: Value,
    token: Option<&str>,
) -> Result<Value, Response> {
    let request_id = random_from(ALNUM, 20);
    if !data.is_object() {
        if data.is_null() {
            data = json!({});
        } else {
            return Err(envelope_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "data must be an object",
                &request_id,
            ));
        }
    }
    if let (Some(token), Some(map)) = (token, data.as_object_mut()) {
        map.entry("token")
            .or_insert_with(|| Value::String(token.to_owned()));
    }
    data["userInfo"] = json!({"appId": suite.keys.appid, "openId": openid});
    match suite
        .functions
        .invoke(name, &data, suite.function_env())
        .await
    {
        Ok(Outcome::Response(body)) => serde_json::from_slice(&body).map_err(|_| {
            envelope_error(
                StatusCode::BAD_GATEWAY,
                "BAD_FUNCTION_REPLY",
                "the function replied with non-JSON",
                &request_id,
            )
        }),
        Ok(Outcome::Error(body)) => Err(envelope_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "FUNCTION_ERROR",
            &String::from_utf8_lossy(&body),
            &request_id,
        )),
        Err(e) => Err(invoke_error(&e, &request_id)),
    }
}

async fn call_function(suite: &Suite, req: &Request) -> Response {
    let Ok(body) = req.json::<Value>() else {
        return envelope_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "body must be {\"name\", \"data\"}",
            "-",
        );
    };
    let Some(name) = body["name"].as_str() else {
        return envelope_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "`name` is required",
            "-",
        );
    };
    let token = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let openid = match caller_openid(suite, req, token, &body["data"]).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    match call(suite, &openid, name, body["data"].clone(), token).await {
        Ok(envelope) => Response::json(StatusCode::OK, &envelope),
        Err(r) => r,
    }
}

/// Who the injected `userInfo` names, as CloudBase would know it from the WeChat client:
/// the `X-Wemint-Dev-User` header; else the session token's subject (the Mini Program's dev
/// mode sends only the token); else the dev user whose `wx.login` code is in `data.code`;
/// else the default dev user `alice`.
pub async fn caller_openid(
    suite: &Suite,
    req: &Request,
    token: Option<&str>,
    data: &Value,
) -> Result<String, Response> {
    if req.header("x-wemint-dev-user").is_some() {
        return Ok(suite.keys.openid_for(&dev_user(req)));
    }
    if let Some(token) = token {
        return crate::standins::cloud_storage::token_subject(suite, token).map_err(|_| {
            envelope_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "session token is not valid (log in again)",
                "-",
            )
        });
    }
    if let Some(code) = data["code"].as_str() {
        match suite
            .store
            .get(crate::standins::wechat_api::CODES, code)
            .await
        {
            Ok(Some(doc)) => {
                if let Some(openid) = doc["openid"].as_str() {
                    return Ok(openid.to_owned());
                }
            }
            Ok(None) => {}
            Err(e) => return Err(crate::suite::internal(e)),
        }
    }
    Ok(suite.keys.openid_for(&dev_user(req)))
}

async fn http_access(suite: &Suite, req: &Request, function: &str) -> Response {
    let request_id = random_from(ALNUM, 20);
    let mut headers = BTreeMap::new();
    for (name, value) in &req.headers {
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str().to_ascii_lowercase(), v.to_owned());
        }
    }
    let query: BTreeMap<String, String> = req.params().into_iter().collect();
    let (body, base64) = match std::str::from_utf8(&req.body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (B64.encode(&req.body), true),
    };
    let event = json!({
        "path": req.path, "httpMethod": req.method.as_str(), "headers": headers,
        "queryStringParameters": query,
        "requestContext": {"requestId": request_id, "envId": suite.keys.env_id, "appId": suite.keys.appid, "uin": "100000000001"},
        "body": body, "isBase64Encoded": base64
    });
    let outcome = match suite
        .functions
        .invoke(function, &event, suite.function_env())
        .await
    {
        Ok(o) => o,
        Err(e) => return invoke_error(&e, &request_id),
    };
    let reply = match outcome {
        Outcome::Response(bytes) => bytes,
        Outcome::Error(body) => {
            return envelope_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "FUNCTION_ERROR",
                &String::from_utf8_lossy(&body),
                &request_id,
            );
        }
    };
    integrated_response(&reply, &request_id)
}

/// Turns an integrated response `{statusCode, headers, body, isBase64Encoded}` (or any other
/// JSON value, which becomes a JSON body) into an HTTP response.
fn integrated_response(reply: &[u8], request_id: &str) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(reply) else {
        return Response::bytes(StatusCode::OK, "text/plain; charset=utf-8", reply.to_vec());
    };
    let Some(status) = value.get("statusCode").and_then(Value::as_u64) else {
        return Response::json(StatusCode::OK, &value).with_header("x-request-id", request_id);
    };
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = match &value["body"] {
        Value::String(s) if value["isBase64Encoded"].as_bool() == Some(true) => {
            B64.decode(s).unwrap_or_default()
        }
        Value::String(s) => s.clone().into_bytes(),
        Value::Null => Vec::new(),
        other => other.to_string().into_bytes(),
    };
    let mut response = Response::bytes(status, "application/json", body);
    response.headers.remove(http::header::CONTENT_TYPE);
    if let Some(map) = value["headers"].as_object() {
        for (k, v) in map {
            if let Some(v) = v.as_str() {
                response = response.with_header(k, v);
            }
        }
    }
    response.with_header("x-request-id", request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrated_responses() {
        let r = integrated_response(
            br#"{"statusCode":204,"headers":{"x-a":"1"},"body":""}"#,
            "r",
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(r.headers.get("x-a").unwrap(), "1");
        let r = integrated_response(
            br#"{"statusCode":400,"body":"eyJjb2RlIjoiRkFJTCJ9","isBase64Encoded":true}"#,
            "r",
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(&r.body[..], br#"{"code":"FAIL"}"#);
        let r = integrated_response(br#"{"ok":true}"#, "r");
        assert_eq!(r.status, StatusCode::OK);
    }
}
