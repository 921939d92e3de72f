//! Fault hooks: "the next N calls to this stand-in (optionally: this path) fail with HTTP
//! status X / WeChat errcode Y / WeChat Pay error code Z, or are delayed by D ms". The router
//! applies them before a stand-in answers, so the functions see the failure exactly as they
//! would from WeChat. Tests set them in process ([`Faults::inject`]) or over HTTP (`POST
//! /dev/faults`); they live in memory only, so a restart clears them.

use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{Request, Response};
use crate::suite::Suite;

/// The external system a fault is injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum System {
    /// The WeChat server API (`/sns/*`, `/cgi-bin/*`, `/wxa/*`, `/xpay/*`).
    WechatApi,
    /// WeChat Pay API v3 (`/v3/*`).
    WechatPay,
    /// The CRM receiver (`/crm/*`, [`crate::standins::crm`]).
    Crm,
}

impl System {
    /// The stand-in that serves `path`, when it is one with fault hooks.
    pub fn of_path(path: &str) -> Option<System> {
        if path.starts_with("/v3/") {
            Some(System::WechatPay)
        } else if path.starts_with("/crm/") {
            Some(System::Crm)
        } else if ["/sns/", "/cgi-bin/", "/wxa/", "/xpay/", "/datacube/"]
            .iter()
            .any(|p| path.starts_with(p))
            || path == "/tcb/batchdownloadfile"
        {
            Some(System::WechatApi)
        } else {
            None
        }
    }
}

/// One fault rule. With neither `status`, `errcode` nor `code` the calls are only delayed and
/// then answered normally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Which stand-in.
    pub system: System,
    /// Only calls whose path starts with this (e.g. `/sns/jscode2session`); empty: any.
    #[serde(default)]
    pub path: String,
    /// How many of the next matching calls it applies to.
    #[serde(default = "one")]
    pub count: u32,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer with this HTTP status (WeChat API default 200, WeChat Pay default 500).
    #[serde(default)]
    pub status: Option<u16>,
    /// WeChat API: answer `{"errcode": errcode, "errmsg": message}`.
    #[serde(default)]
    pub errcode: Option<i64>,
    /// WeChat Pay: answer the signed error `{"code": code, "message": message}`.
    #[serde(default)]
    pub code: Option<String>,
    /// The error message.
    #[serde(default)]
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// The next `count` calls to `system` fail as configured with the builder methods.
    pub fn next(system: System, count: u32) -> Self {
        Fault {
            system,
            path: String::new(),
            count,
            delay_ms: 0,
            status: None,
            errcode: None,
            code: None,
            message: None,
        }
    }

    /// Only calls whose path starts with `path`.
    pub fn on(mut self, path: &str) -> Self {
        path.clone_into(&mut self.path);
        self
    }

    /// Answered with HTTP `status`.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Answered with WeChat `errcode` (HTTP 200 unless [`Fault::status`] says otherwise).
    pub fn errcode(mut self, errcode: i64, errmsg: &str) -> Self {
        self.errcode = Some(errcode);
        self.message = Some(errmsg.to_owned());
        self
    }

    /// Answered with the WeChat Pay error `code` (HTTP 500 unless [`Fault::status`] says
    /// otherwise).
    pub fn code(mut self, code: &str, message: &str) -> Self {
        self.code = Some(code.to_owned());
        self.message = Some(message.to_owned());
        self
    }

    /// Delayed by `ms` before answering.
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }

    fn fails(&self) -> bool {
        self.status.is_some() || self.errcode.is_some() || self.code.is_some()
    }

    fn response(&self, suite: &Suite) -> Response {
        let message = self
            .message
            .clone()
            .unwrap_or_else(|| "fault injected by wemint-dev".to_owned());
        match self.system {
            System::WechatApi => {
                let status = self
                    .status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::OK);
                Response::json(
                    status,
                    &json!({"errcode": self.errcode.unwrap_or(-1), "errmsg": message}),
                )
            }
            System::WechatPay => {
                let status = self
                    .status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let code = self.code.as_deref().unwrap_or("SYSTEM_ERROR");
                crate::standins::wechat_pay::signed(
                    suite,
                    Response::json(status, &json!({"code": code, "message": message})),
                )
            }
            System::Crm => {
                let status = self
                    .status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Response::json(status, &json!({"error": message}))
            }
        }
    }
}

/// The pending fault rules, applied first come first served.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
}

impl Faults {
    /// Adds a rule.
    pub fn inject(&self, fault: Fault) {
        if fault.count > 0
            && let Ok(mut rules) = self.rules.lock()
        {
            rules.push(fault);
        }
    }

    /// Drops every rule.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    /// The rules still pending (with what is left of their counts).
    pub fn pending(&self) -> Vec<Fault> {
        self.rules.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Takes one use of the first rule matching the request; waits its delay; returns the
    /// failure to answer with, or `None` to answer normally.
    pub async fn apply(&self, suite: &Suite, system: System, req: &Request) -> Option<Response> {
        let fault = {
            let mut rules = self.rules.lock().ok()?;
            let i = rules
                .iter()
                .position(|f| f.system == system && req.path.starts_with(&f.path))?;
            let mut fault = rules[i].clone();
            rules[i].count -= 1;
            if rules[i].count == 0 {
                rules.remove(i);
            }
            fault.count = 1;
            fault
        };
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        fault.fails().then(|| fault.response(suite))
    }
}
