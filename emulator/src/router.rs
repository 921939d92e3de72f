//! One port, one dispatch: every request goes to the first part of the suite that claims its
//! path. Fault hooks ([`crate::standins::faults`]) are applied before a stand-in answers.
//!
//! - WeChat API stand-in: `/sns/*`, `/cgi-bin/*`, `/wxa/*`, `/xpay/*`, `/tcb/batchdownloadfile`
//!   ([`crate::standins::wechat_api`])
//! - WeChat Pay stand-in: `/v3/*` ([`crate::standins::wechat_pay`])
//! - CloudBase gateway: `/tcb/callFunction`, `/payNotify`, `/wxPush`
//!   ([`crate::standins::gateway`])
//! - cloud storage: `/tcb/uploadFile`, `/storage/*` ([`crate::standins::cloud_storage`])
//! - CloudBase document database: `/v1/database/*` ([`crate::standins::cloudbase_db`])
//! - CRM receiver: `/crm/webhook` ([`crate::standins::crm`])
//! - dev controls: `/dev/*` ([`crate::dev`]), what the console and every test call
//! - console page: `/` ([`crate::console`])

use crate::http::{Request, Response};
use crate::standins::faults::System;
use crate::suite::Suite;

/// The dev user a request acts for: `X-Wemint-Dev-User`, default `alice`.
pub fn dev_user(req: &Request) -> String {
    req.header("x-wemint-dev-user")
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or("alice")
        .to_owned()
}

/// Dispatches a request.
pub async fn route(suite: &Suite, req: Request) -> Response {
    if let Some(system) = System::of_path(&req.path)
        && let Some(r) = suite.faults.apply(suite, system, &req).await
    {
        return r;
    }
    // Before the Mini Program's API: both answer under `/cgi-bin/`.
    if let Some(r) = crate::standins::official_account::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::standins::wechat_api::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::standins::wechat_pay::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::standins::crm::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::standins::gateway::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::standins::cloud_storage::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = suite.cloudbase_db.handle(&req).await {
        return r;
    }
    if let Some(r) = crate::dev::handle(suite, &req).await {
        return r;
    }
    if let Some(r) = crate::console::handle(&req) {
        return r;
    }
    Response::not_found(&req.path)
}
