//! WeChat Pay bills at the stand-in: `GET /v3/bill/tradebill`, `GET /v3/bill/fundflowbill`
//! and the download `GET /v3/billdownload/file?token=…` (signed request, unsigned response).
//!
//! A day's bills are built from the stand-in's own orders (`dev_pay_orders`, paid that China
//! day) and refunds (`dev_refunds`, succeeded that day), in the documented layout: header
//! row, backtick-prefixed rows, summary header and summary row, gzip, with the SHA-1 of the
//! uncompressed file announced. Fees are 0.60% of each amount (refunds give theirs back).
//! Like WeChat Pay, a day's bill exists from 09:00 the next day (`STATEMENT_CREATING` before),
//! and a day without payments or refunds has none (`NO_STATEMENT_EXIST`).
//!
//! Fault hooks make a bill disagree with what the functions recorded (`dev_bill_faults`):
//! an order's amount or fee written differently, the next downloads announcing a wrong hash
//! or cut short (a truncated gzip), and [`console_refund`] (a refund made in the merchant
//! console: no notification, wemint never hears of it). A lost payment notification is the
//! deliveries' `failNext` over every retry.

use std::io::Write;

use base64::Engine;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wemint::finance::{china_date, china_day_start};
use wemint::pay::v3::bills::{
    FUND_HEADER, FUND_SUMMARY_HEADER, TRADE_HEADER, TRADE_SUMMARY_HEADER, bill_line, format_yuan,
    sha1_hex,
};
use wemint::store::{Filter, FindOptions, StoreError, Update, UpdateOptions};

use super::wechat_pay::{PAY_ORDERS, REFUNDS};
use crate::clock::Clock;
use crate::http::{Request, Response};
use crate::keys::{ALNUM, DIGITS, random_from};
use crate::suite::Suite;

/// Bill fault rules.
pub const BILL_FAULTS: &str = "dev_bill_faults";
/// Files handed out for download, by token.
pub const BILL_DOWNLOADS: &str = "dev_bill_downloads";
/// The stand-in's fee rate, in fee units (10^-5 yuan) per fen: 0.60%.
const FEE_UNITS_PER_FEN: i64 = 6;

/// A way to make the bills disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "kind"
)]
pub enum BillFault {
    /// The trade bill writes this order's amount as `fen`.
    Amount {
        /// The order.
        out_trade_no: String,
        /// The amount written, fen.
        fen: i64,
    },
    /// The trade bill writes this order's fee as `fee_units` (10^-5 yuan).
    Fee {
        /// The order.
        out_trade_no: String,
        /// The fee written.
        fee_units: i64,
    },
    /// The next `count` bill answers announce a wrong hash.
    WrongHash {
        /// How many.
        #[serde(default = "one")]
        count: i64,
    },
    /// The next `count` downloads are cut short (a truncated gzip).
    Truncate {
        /// How many.
        #[serde(default = "one")]
        count: i64,
    },
}

fn one() -> i64 {
    1
}

/// Adds a fault rule.
pub async fn inject(suite: &Suite, fault: &BillFault) -> Result<(), StoreError> {
    let (id, doc) = match fault {
        BillFault::Amount { out_trade_no, fen } => (
            format!("amount:{out_trade_no}"),
            json!({"fen": fen, "outTradeNo": out_trade_no}),
        ),
        BillFault::Fee {
            out_trade_no,
            fee_units,
        } => (
            format!("fee:{out_trade_no}"),
            json!({"feeUnits": fee_units, "outTradeNo": out_trade_no}),
        ),
        BillFault::WrongHash { count } => ("wrongHash".into(), json!({"count": count})),
        BillFault::Truncate { count } => ("truncate".into(), json!({"count": count})),
    };
    let mut update = Update::new();
    if let Some(map) = doc.as_object() {
        for (k, v) in map {
            update = update.set(k.as_str(), v.clone());
        }
    }
    suite
        .store
        .update_one(
            BILL_FAULTS,
            &Filter::id(id.as_str()),
            &update,
            UpdateOptions::upsert(),
        )
        .await?;
    Ok(())
}

async fn take(suite: &Suite, id: &str) -> Result<bool, StoreError> {
    Ok(suite
        .store
        .update_one(
            BILL_FAULTS,
            &Filter::id(id).and(Filter::gt("count", 0)),
            &Update::new().inc("count", -1),
            UpdateOptions::default(),
        )
        .await?
        .is_some())
}

/// A refund made in the merchant console: it succeeds at once and no notification is sent,
/// so wemint never hears of it. Returns the refund record.
pub async fn console_refund(
    suite: &Suite,
    out_trade_no: &str,
    fen: i64,
) -> Result<Option<Value>, StoreError> {
    let Some(order) = suite.store.get(PAY_ORDERS, out_trade_no).await? else {
        return Ok(None);
    };
    let total = order["total"].as_i64().unwrap_or(0);
    let refunded = order["refundedFen"].as_i64().unwrap_or(0);
    if order["transactionId"].is_null() || fen <= 0 || refunded + fen > total {
        return Ok(None);
    }
    suite
        .store
        .update_one(
            PAY_ORDERS,
            &Filter::id(out_trade_no),
            &Update::new()
                .inc("refundedFen", fen)
                .set("tradeState", "REFUND"),
            UpdateOptions::default(),
        )
        .await?;
    let now = suite.clock.now();
    let record = json!({
        "_id": format!("CONSOLE{}", random_from(DIGITS, 12)),
        "refundId": format!("5030{}", random_from(DIGITS, 25)), "outTradeNo": out_trade_no,
        "transactionId": order["transactionId"], "refund": fen, "total": total,
        "reason": "merchant console", "notifyUrl": "", "status": "SUCCESS", "createdAt": now,
        "successAt": now, "openid": order["openid"], "console": true
    });
    suite.store.insert(REFUNDS, record.clone()).await?;
    Ok(Some(record))
}

/// Why a bill cannot be answered: nothing happened that day.
enum Unavailable {
    None,
}

fn trade_time(unix: i64) -> String {
    // `yyyy-MM-dd HH:mm:ss` in China time, from the RFC 3339 form.
    let rfc = Clock::rfc3339_cst(unix);
    rfc.get(..19).unwrap_or_default().replace('T', " ")
}

async fn faults_by_order(suite: &Suite, kind: &str) -> Result<Vec<Value>, StoreError> {
    suite
        .store
        .find(
            BILL_FAULTS,
            &Filter::exists("outTradeNo", true).and(Filter::exists(kind, true)),
            &FindOptions::new().limit(10_000),
        )
        .await
}

/// The trade bill (`ALL`) of `date`, uncompressed.
async fn trade_bill(suite: &Suite, start: i64) -> Result<Result<String, Unavailable>, StoreError> {
    let end = start + 86_400;
    let mut orders = suite
        .store
        .find(
            PAY_ORDERS,
            &Filter::gte("paidAt", start).and(Filter::lt("paidAt", end)),
            &FindOptions::new().sort_asc("paidAt").limit(1_000_000),
        )
        .await?;
    orders.retain(|o| o["transactionId"].is_string());
    let refunds = suite
        .store
        .find(
            REFUNDS,
            &Filter::eq("status", "SUCCESS")
                .and(Filter::gte("successAt", start))
                .and(Filter::lt("successAt", end)),
            &FindOptions::new().sort_asc("successAt").limit(1_000_000),
        )
        .await?;
    if orders.is_empty() && refunds.is_empty() {
        return Ok(Err(Unavailable::None));
    }
    let amounts: std::collections::HashMap<String, i64> = faults_by_order(suite, "fen")
        .await?
        .into_iter()
        .filter_map(|f| Some((f["outTradeNo"].as_str()?.to_owned(), f["fen"].as_i64()?)))
        .collect();
    let fees: std::collections::HashMap<String, i64> = faults_by_order(suite, "feeUnits")
        .await?
        .into_iter()
        .filter_map(|f| {
            Some((
                f["outTradeNo"].as_str()?.to_owned(),
                f["feeUnits"].as_i64()?,
            ))
        })
        .collect();
    let k = &suite.keys;
    let mut text = format!("{}\r\n", TRADE_HEADER.join(","));
    let (mut settled, mut refunded, mut fee_total, mut order_total, mut requested) =
        (0i64, 0i64, 0i64, 0i64, 0i64);
    for o in &orders {
        let no = o["_id"].as_str().unwrap_or_default();
        let fen = amounts
            .get(no)
            .copied()
            .unwrap_or_else(|| o["total"].as_i64().unwrap_or(0));
        let fee = fees.get(no).copied().unwrap_or(fen * FEE_UNITS_PER_FEN);
        settled += fen;
        order_total += fen;
        fee_total += fee;
        text += &bill_line(&[
            trade_time(o["paidAt"].as_i64().unwrap_or(0)),
            k.appid.clone(),
            k.mchid.clone(),
            "0".into(),
            String::new(),
            o["transactionId"].as_str().unwrap_or_default().to_owned(),
            no.to_owned(),
            o["openid"].as_str().unwrap_or_default().to_owned(),
            "JSAPI".into(),
            "SUCCESS".into(),
            "OTHERS".into(),
            "CNY".into(),
            format_yuan(fen, 2),
            "0.00".into(),
            "0".into(),
            "0".into(),
            "0.00".into(),
            "0.00".into(),
            String::new(),
            String::new(),
            o["description"].as_str().unwrap_or_default().to_owned(),
            o["attach"].as_str().unwrap_or_default().to_owned(),
            format_yuan(fee, 5),
            "0.60%".into(),
            format_yuan(fen, 2),
            "0.00".into(),
            String::new(),
        ]);
    }
    for r in &refunds {
        let fen = r["refund"].as_i64().unwrap_or(0);
        let fee = -fen * FEE_UNITS_PER_FEN;
        refunded += fen;
        requested += fen;
        fee_total += fee;
        text += &bill_line(&[
            trade_time(r["successAt"].as_i64().unwrap_or(0)),
            k.appid.clone(),
            k.mchid.clone(),
            "0".into(),
            String::new(),
            r["transactionId"].as_str().unwrap_or_default().to_owned(),
            r["outTradeNo"].as_str().unwrap_or_default().to_owned(),
            r["openid"].as_str().unwrap_or_default().to_owned(),
            "JSAPI".into(),
            "REFUND".into(),
            "OTHERS".into(),
            "CNY".into(),
            "0.00".into(),
            "0.00".into(),
            r["refundId"].as_str().unwrap_or_default().to_owned(),
            r["_id"].as_str().unwrap_or_default().to_owned(),
            format_yuan(fen, 2),
            "0.00".into(),
            "ORIGINAL".into(),
            "SUCCESS".into(),
            String::new(),
            String::new(),
            format_yuan(fee, 5),
            "0.60%".into(),
            format_yuan(r["total"].as_i64().unwrap_or(0), 2),
            format_yuan(fen, 2),
            String::new(),
        ]);
    }
    text += &format!("{}\r\n", TRADE_SUMMARY_HEADER.join(","));
    text += &bill_line(&[
        (orders.len() + refunds.len()).to_string(),
        format_yuan(settled, 2),
        format_yuan(refunded, 2),
        "0.00".into(),
        format_yuan(fee_total, 5),
        format_yuan(order_total, 2),
        format_yuan(requested, 2),
    ]);
    Ok(Ok(text))
}

/// The fund-flow bill (`BASIC`) of `date`, uncompressed: a payment's income, its fee, and
/// refunds, with the running balance of the day.
async fn fund_bill(suite: &Suite, start: i64) -> Result<Result<String, Unavailable>, StoreError> {
    let Ok(trade) = trade_bill(suite, start).await? else {
        return Ok(Err(Unavailable::None));
    };
    let mut text = format!("{}\r\n", FUND_HEADER.join(","));
    let (mut balance, mut income, mut income_n, mut expense, mut expense_n) = (0i64, 0, 0, 0, 0);
    let mut flow = 0u64;
    let mut entry = |text: &mut String,
                     time: &str,
                     no: &str,
                     name: &str,
                     income_row: bool,
                     fen: i64,
                     voucher: &str| {
        flow += 1;
        if income_row {
            balance += fen;
            income += fen;
            income_n += 1;
        } else {
            balance -= fen;
            expense += fen;
            expense_n += 1;
        }
        *text += &bill_line(&[
            time.to_owned(),
            no.to_owned(),
            format!("{}{flow:010}", suite.keys.mchid),
            name.to_owned(),
            name.to_owned(),
            if income_row { "收入" } else { "支出" }.to_owned(),
            format_yuan(fen, 2),
            format_yuan(balance, 2),
            "system".into(),
            String::new(),
            voucher.to_owned(),
        ]);
    };
    // Rows of the trade bill, read back from its own lines (the amounts as written).
    for line in trade.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_start_matches('`')).collect();
        if fields.len() != TRADE_HEADER.len() {
            break;
        }
        let parse = |s: &str, d| wemint::pay::v3::bills::parse_yuan(s, d).unwrap_or(0);
        let fee_fen = wemint::pay::v3::bills::fee_units_to_fen(parse(fields[22], 5));
        if fields[9] == "SUCCESS" {
            entry(
                &mut text,
                fields[0],
                fields[5],
                "交易",
                true,
                parse(fields[12], 2),
                "",
            );
            if fee_fen > 0 {
                entry(
                    &mut text,
                    fields[0],
                    fields[5],
                    "扣除交易手续费",
                    false,
                    fee_fen,
                    "",
                );
            }
        } else {
            entry(
                &mut text,
                fields[0],
                fields[14],
                "退款",
                false,
                parse(fields[16], 2),
                &format!("REF{}", fields[5]),
            );
        }
    }
    text += &format!("{}\r\n", FUND_SUMMARY_HEADER.join(","));
    text += &bill_line(&[
        (income_n + expense_n).to_string(),
        income_n.to_string(),
        format_yuan(income, 2),
        expense_n.to_string(),
        format_yuan(expense, 2),
    ]);
    Ok(Ok(text))
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(text.as_bytes());
    enc.finish().unwrap_or_default()
}

/// Answers a bill request (`trade` or `fundFlow`).
pub async fn request(suite: &Suite, req: &Request, kind: &str) -> Result<Response, Response> {
    let error = |status, code: &str, message: &str| {
        super::wechat_pay::signed(
            suite,
            Response::json(status, &json!({"code": code, "message": message})),
        )
    };
    let date = req.param("bill_date").unwrap_or_default();
    let Some(start) = china_day_start(&date) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "bill_date 格式错误",
        ));
    };
    let (param, expected) = if kind == "trade" {
        ("bill_type", "ALL")
    } else {
        ("account_type", "BASIC")
    };
    if req.param(param).as_deref().unwrap_or(expected) != expected {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            &format!("wemint-dev serves {param}={expected} only"),
        ));
    }
    let now = suite.clock.now();
    if now < start + 86_400 + 9 * 3600 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "STATEMENT_CREATING",
            "账单生成中",
        ));
    }
    let today = china_day_start(&china_date(now)).unwrap_or(0);
    if start < today - 92 * 86_400 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "NO_STATEMENT_EXIST",
            "账单不存在",
        ));
    }
    let built = if kind == "trade" {
        trade_bill(suite, start).await
    } else {
        fund_bill(suite, start).await
    };
    let text = match built {
        Err(e) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                &e.to_string(),
            ));
        }
        Ok(Err(Unavailable::None)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "NO_STATEMENT_EXIST",
                "账单不存在",
            ));
        }
        Ok(Ok(text)) => text,
    };
    let mut hash = sha1_hex(text.as_bytes());
    let store_err = |e: StoreError| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYSTEM_ERROR",
            &e.to_string(),
        )
    };
    if take(suite, "wrongHash").await.map_err(store_err)? {
        hash = sha1_hex(format!("{text}tampered").as_bytes());
    }
    let mut gz = gzip(&text);
    if take(suite, "truncate").await.map_err(store_err)? {
        gz.truncate(gz.len() / 2);
    }
    let token = random_from(ALNUM, 48);
    suite
        .store
        .insert(
            BILL_DOWNLOADS,
            json!({"_id": token, "data": base64::engine::general_purpose::STANDARD.encode(&gz),
                "expiresAt": now + 300}),
        )
        .await
        .map_err(store_err)?;
    let url = format!(
        "{}/v3/billdownload/file?token={token}&tartype=gzip",
        suite.base_url()
    );
    Ok(super::wechat_pay::signed(
        suite,
        Response::json(
            StatusCode::OK,
            &json!({"hash_type": "SHA1", "hash_value": hash, "download_url": url}),
        ),
    ))
}

/// Serves a file handed out by [`request`] (not signed, like WeChat Pay's download).
pub async fn download(suite: &Suite, req: &Request) -> Response {
    let token = req.param("token").unwrap_or_default();
    let doc = match suite.store.get(BILL_DOWNLOADS, &token).await {
        Ok(doc) => doc,
        Err(e) => return crate::suite::internal(e),
    };
    match doc {
        Some(doc) if doc["expiresAt"].as_i64().unwrap_or(0) >= suite.clock.now() => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(doc["data"].as_str().unwrap_or_default())
                .unwrap_or_default();
            Response::bytes(StatusCode::OK, "application/octet-stream", bytes)
        }
        _ => Response::json(
            StatusCode::BAD_REQUEST,
            &json!({"code": "INVALID_REQUEST", "message": "下载链接已过期"}),
        ),
    }
}

/// What the console shows (`GET /dev/finance`): the stored revenue rows and discrepancies,
/// newest day first.
pub async fn console_state(suite: &Suite) -> Response {
    use wemint::store::collections as c;
    let newest = FindOptions::new().sort_desc("date").limit(100);
    let revenue = suite
        .store
        .find(c::REVENUE_REPORTS, &Filter::all_of([]), &newest)
        .await;
    let discrepancies = suite
        .store
        .find(c::BILL_DISCREPANCIES, &Filter::all_of([]), &newest)
        .await;
    match (revenue, discrepancies) {
        (Ok(revenue), Ok(discrepancies)) => Response::json(
            StatusCode::OK,
            &json!({"revenue": revenue, "discrepancies": discrepancies}),
        ),
        (Err(e), _) | (_, Err(e)) => crate::suite::internal(e),
    }
}
