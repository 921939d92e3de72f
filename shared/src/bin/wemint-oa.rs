//! `wemint-oa`: the Official Account operator's command (menu as configuration, parametric
//! QR codes). It is a small binary of the library rather than a `wemint-dev` subcommand
//! because it runs against production (`api.weixin.qq.com`) with the functions'
//! environment and needs nothing of the emulator; it shares the account's stable access
//! token with the functions through the store (`WEMINT_STORE`, collection `wechat_tokens`).
//!
//! Environment: `WEMINT_STORE`, `WX_OA_APPID`, `WX_OA_APPSECRET` (or `_FILE`),
//! `WECHAT_API_BASE` (optional). `wemint-oa help` lists the commands.

use std::process::ExitCode;

use serde_json::json;
use wemint::config::Config;
use wemint::domain::oa_menu::{Menu, diff};
use wemint::setup::Deps;
use wemint::store::collections::OA_QRCODES;
use wemint::store::{Filter, Update, UpdateOptions};
use wemint::wechat::WechatClient;
use wemint::wechat::oa::{MAX_QR_EXPIRE_SECS, QrKind};

const HELP: &str = "\
wemint-oa: the Official Account's menu and QR codes.

USAGE:
  wemint-oa menu check FILE      validate the menu file against the platform's limits (offline)
  wemint-oa menu diff FILE       show what publishing FILE would change in the live menu
  wemint-oa menu publish FILE    show the difference, publish, and check the live menu matches
  wemint-oa qrcode SCENE [--expire-secs N | --permanent]
                                 create a parametric QR code for SCENE (1-64 of [A-Za-z0-9_-]);
                                 temporary by default (30 days; N from 60 to 2592000)
  wemint-oa help

EXIT: 0 done, 1 failed (WeChat, store, settings), 2 invalid menu or arguments.
ENV:  WEMINT_STORE, WX_OA_APPID, WX_OA_APPSECRET, WECHAT_API_BASE (optional)
";

enum Failure {
    Invalid(String),
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Failed(e.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wemint-oa: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(m)) => {
            eprintln!("{m}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("wemint-oa: {m}");
            ExitCode::from(1)
        }
    }
}

fn read_menu(path: &str) -> Result<Menu, Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure::Failed(format!("{path}: {e}")))?;
    Menu::parse(&bytes).map_err(|e| Failure::Invalid(format!("MENU_INVALID [{}] {e}", e.rule())))
}

async fn account() -> Result<(Deps, WechatClient), Failure> {
    let config = Config::from_env();
    let deps = Deps::from_config(&config).await?;
    let oa = deps
        .oa
        .clone()
        .ok_or_else(|| Failure::Failed("WX_OA_APPID and WX_OA_APPSECRET are required".into()))?;
    Ok((deps, oa))
}

async fn live(oa: &WechatClient) -> Result<Option<Menu>, Failure> {
    Ok(Menu::from_live(&oa.oa_menu_current().await?))
}

async fn run(args: &[String]) -> Result<(), Failure> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["menu", "check", file] => {
            let menu = read_menu(file)?;
            println!("menu ok: {} buttons with an action", menu.leaves().len());
            Ok(())
        }
        ["menu", "diff", file] => {
            let menu = read_menu(file)?;
            let (_, oa) = account().await?;
            let lines = diff(&menu, live(&oa).await?.as_ref());
            if lines.is_empty() {
                println!("no difference: the live menu matches {file}");
            }
            for l in lines {
                println!("{l}");
            }
            Ok(())
        }
        ["menu", "publish", file] => {
            let menu = read_menu(file)?;
            let (_, oa) = account().await?;
            let lines = diff(&menu, live(&oa).await?.as_ref());
            if lines.is_empty() {
                println!("no difference: the live menu already matches {file}; nothing published");
                return Ok(());
            }
            for l in &lines {
                println!("{l}");
            }
            oa.oa_menu_create(&menu.to_create_body()).await?;
            let after = diff(&menu, live(&oa).await?.as_ref());
            if !after.is_empty() {
                return Err(Failure::Failed(format!(
                    "published, but the live menu still differs in {} buttons",
                    after.len()
                )));
            }
            println!("published: {} changes", lines.len());
            Ok(())
        }
        ["qrcode", scene, rest @ ..] => qrcode(scene, rest).await,
        ["help"] | ["--help"] | ["-h"] | [] => {
            print!("{HELP}");
            Ok(())
        }
        _ => Err(Failure::Invalid(format!("unknown command\n\n{HELP}"))),
    }
}

async fn qrcode(scene: &str, rest: &[&str]) -> Result<(), Failure> {
    if !wemint::wechat::oa::valid_scene(scene) {
        return Err(Failure::Invalid(
            "the scene must be 1-64 characters of [A-Za-z0-9_-]".into(),
        ));
    }
    let kind = match rest {
        [] => QrKind::Temporary {
            expire_seconds: MAX_QR_EXPIRE_SECS,
        },
        ["--permanent"] => QrKind::Permanent,
        ["--expire-secs", n] => match n.parse::<u32>() {
            Ok(secs) if (60..=MAX_QR_EXPIRE_SECS).contains(&secs) => QrKind::Temporary {
                expire_seconds: secs,
            },
            _ => {
                return Err(Failure::Invalid(
                    "--expire-secs: 60 to 2592000 seconds".into(),
                ));
            }
        },
        _ => {
            return Err(Failure::Invalid(format!(
                "qrcode: unknown options\n\n{HELP}"
            )));
        }
    };
    let (deps, oa) = account().await?;
    let ticket = oa.oa_qrcode_create(scene, &kind).await?;
    let now = deps.clock.now_unix();
    let image = format!(
        "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket={}",
        form_urlencoded::byte_serialize(ticket.ticket.as_bytes()).collect::<String>()
    );
    let permanent = kind == QrKind::Permanent;
    let expires_at = ticket.expire_seconds.map(|s| now + s);
    let mut update = Update::new()
        .set("ticket", ticket.ticket.as_str())
        .set("url", ticket.url.as_str())
        .set("permanent", permanent)
        .set("createdAt", now);
    if let Some(at) = expires_at {
        update = update.set("expiresAt", at);
    }
    deps.store
        .update_one(
            OA_QRCODES,
            &Filter::id(scene),
            &update,
            UpdateOptions::upsert(),
        )
        .await?;
    println!(
        "{}",
        json!({"scene": scene, "permanent": permanent, "ticket": ticket.ticket, "url": ticket.url,
               "image": image, "expiresAt": expires_at})
    );
    Ok(())
}
