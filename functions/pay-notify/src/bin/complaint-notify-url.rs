//! `complaint-notify-url`: shows or sets the merchant's WeChat Pay complaint notification URL
//! (one per merchant; WeChat Pay posts `COMPLAINT.*` notifications there). Part of the
//! payNotify crate because it needs exactly payNotify's settings (`WECHATPAY_*`) and points
//! WeChat Pay at payNotify's own `/payNotify/complaints` route.
//!
//! ```text
//! complaint-notify-url show
//! complaint-notify-url set https://<your HTTP access domain>/payNotify/complaints
//! ```
//!
//! `set` is idempotent: it reads the current URL first, creates it when none is set
//! (`POST`), replaces it when it differs (`PUT`) and changes nothing when it is the same, so
//! a deployment can run it every time. Exit status 0 on success, 1 on failure, 2 on usage.

use std::process::ExitCode;

use wemint::config::Config;
use wemint::pay::v3::PayClient;
use wemint::pay::v3::complaints::check_notification_url;

const USAGE: &str =
    "usage: complaint-notify-url show | set <https URL ending in /payNotify/complaints>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["show"] => runtime.block_on(show()),
        ["set", url] => {
            if let Err(e) = check_notification_url(url) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            runtime.block_on(set(url))
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn client() -> Result<PayClient, String> {
    let settings = Config::from_env()
        .wechat_pay()
        .map_err(|e| format!("WeChat Pay settings: {e}"))?;
    PayClient::from_settings(&settings).map_err(|e| format!("WeChat Pay client: {e}"))
}

async fn show() -> ExitCode {
    let result = match client() {
        Ok(pay) => pay
            .complaint_notification_url()
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match result {
        Ok(Some(current)) => {
            println!("{}", current.url);
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("(no complaint notification URL is set)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn set(url: &str) -> ExitCode {
    let pay = match client() {
        Ok(pay) => pay,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let current = match pay.complaint_notification_url().await {
        Ok(current) => current,
        Err(e) => {
            eprintln!("reading the current URL: {e}");
            return ExitCode::FAILURE;
        }
    };
    if current.as_ref().is_some_and(|c| c.url == url) {
        println!("unchanged: {url}");
        return ExitCode::SUCCESS;
    }
    match pay
        .put_complaint_notification_url(url, current.is_some())
        .await
    {
        Ok(set) => {
            println!(
                "{}: {} (merchant {})",
                if current.is_some() {
                    "updated"
                } else {
                    "created"
                },
                set.url,
                set.mchid
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
