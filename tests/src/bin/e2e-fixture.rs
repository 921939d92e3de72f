//! Test-only function for the end-to-end tests: `echo` shows what a handler receives, `panic`
//! panics, `limited` fails with a retry hint, `/hook` echoes the raw request, plus a timer.
//! Its init needs `WEMINT_SESSION_SECRET`, so leaving it unset exercises init failure.

use std::process::ExitCode;

use http::{HeaderValue, StatusCode};
use serde_json::json;
use wemint::runtime::{ApiError, BoxError, Function, WebhookResponse};

struct State {
    secret_len: usize,
}

fn main() -> ExitCode {
    let function = Function::with_init(
        "e2eFixture",
        env!("CARGO_PKG_VERSION"),
        |config| async move {
            let secret = config.session_secret()?;
            Ok::<_, BoxError>(State {
                secret_len: secret.expose().len(),
            })
        },
    )
    .callable("echo", |state, req| async move {
        let platform = req.identity.platform.as_ref().map(|p| {
            json!({
                "gateway": format!("{:?}", p.gateway),
                "openid": p.openid,
                "appid": p.appid,
                "unionid": p.unionid,
            })
        });
        Ok::<_, ApiError>(json!({
            "action": req.action,
            "data": req.data,
            "platform": platform,
            "token": req.identity.token(),
            "requestId": req.invocation.request_id,
            "mode": req.invocation.mode.as_str(),
            "hasDeadline": req.invocation.deadline.is_some(),
            "memoryLimitMb": req.invocation.memory_limit_mb,
            "secretLen": state.secret_len,
        }))
    })
    .callable("panic", |_state, req| async move {
        if req.data.get("dontPanic").is_none() {
            panic!("fixture panic on request");
        }
        Ok::<_, ApiError>(json!("not panicking"))
    })
    .callable("limited", |_state, _req| async move {
        Err::<(), _>(ApiError::rate_limited("slow down", 7))
    })
    .webhook("/hook", |_state, req| async move {
        let mut resp = WebhookResponse::with_body(
            StatusCode::CREATED,
            "application/octet-stream",
            req.body.clone(),
        );
        let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let info = json!({
            "method": req.method.as_str(),
            "path": req.path,
            "query": query,
            "signature": req.header("wechatpay-signature"),
        });
        resp.headers.insert(
            "x-fixture",
            HeaderValue::from_str(&info.to_string()).map_err(ApiError::internal)?,
        );
        Ok(resp)
    })
    .timer(|_state, t| async move {
        Ok::<_, ApiError>(json!({"trigger": t.trigger_name, "time": t.time, "message": t.message}))
    });
    wemint::runtime::run(function)
}
