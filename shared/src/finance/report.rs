//! Revenue per day and channel, and the CSV exports of reports and discrepancies.
//!
//! WeChat Pay (`wxpay`) figures come from the day's trade bill: gross = the payment rows'
//! settlement amounts, refunds = the refund rows' amounts, fees = the sum of every row's fee
//! (refund rows give fees back) rounded to the fen, net = gross − refunds − fees. They equal
//! the bill's summary totals. Virtual payment (`xpay`) figures come from the orders and
//! refunds here (paid or settled that day), with fees 0 and `source: "wemint"`: the xpay
//! bill's file format is not documented, so it is not parsed (docs/pay.md).

use serde::{Deserialize, Serialize};

use super::{Discrepancy, FinanceError};
use crate::pay::v3::bills;
use crate::store::{Filter, FindOptions, Store, Update, UpdateOptions, collections as c};

/// One day's revenue on one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevenueRow {
    /// The day, `yyyy-MM-dd` (China time).
    pub date: String,
    /// `wxpay` or `xpay`.
    pub channel: String,
    /// Payments, fen.
    pub gross_fen: i64,
    /// Refunds, fen.
    pub refunds_fen: i64,
    /// Fees, fen.
    pub fees_fen: i64,
    /// gross − refunds − fees, fen.
    pub net_fen: i64,
    /// Paid orders.
    pub orders: u64,
    /// Refunds.
    pub refunds: u64,
    /// `bill` (WeChat Pay's trade bill) or `wemint` (the orders here).
    pub source: String,
}

/// Sums of one channel's day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) orders: u64,
    pub(crate) gross_fen: i64,
    pub(crate) refunds: u64,
    pub(crate) refunds_fen: i64,
    pub(crate) fee_units: i64,
}

impl Totals {
    pub(crate) fn row(&self, date: &str, channel: &str, source: &str) -> RevenueRow {
        let fees_fen = bills::fee_units_to_fen(self.fee_units);
        RevenueRow {
            date: date.to_owned(),
            channel: channel.to_owned(),
            gross_fen: self.gross_fen,
            refunds_fen: self.refunds_fen,
            fees_fen,
            net_fen: self.gross_fen - self.refunds_fen - fees_fen,
            orders: self.orders,
            refunds: self.refunds,
            source: source.to_owned(),
        }
    }
}

/// Stores a day's rows (`<date>:<channel>`), replacing an earlier run's.
pub(crate) async fn store_revenue(
    store: &dyn Store,
    rows: &[RevenueRow],
    now: i64,
) -> Result<(), FinanceError> {
    for row in rows {
        let id = format!("{}:{}", row.date, row.channel);
        store
            .update_one(
                c::REVENUE_REPORTS,
                &Filter::id(id.as_str()),
                &Update::new()
                    .set("date", row.date.as_str())
                    .set("channel", row.channel.as_str())
                    .set("grossFen", row.gross_fen)
                    .set("refundsFen", row.refunds_fen)
                    .set("feesFen", row.fees_fen)
                    .set("netFen", row.net_fen)
                    .set("orders", row.orders)
                    .set("refunds", row.refunds)
                    .set("source", row.source.as_str())
                    .set("generatedAt", now),
                UpdateOptions::upsert(),
            )
            .await?;
    }
    Ok(())
}

/// The stored revenue rows of the days `from..=to`, oldest first.
pub async fn revenue(
    store: &(dyn Store + 'static),
    from: &str,
    to: &str,
) -> Result<Vec<RevenueRow>, FinanceError> {
    Ok(store
        .find_as(
            c::REVENUE_REPORTS,
            &Filter::gte("date", from).and(Filter::lte("date", to)),
            &FindOptions::new()
                .sort_asc("date")
                .sort_asc("channel")
                .limit(1000),
        )
        .await?)
}

fn yuan(fen: i64) -> String {
    bills::format_yuan(fen, 2)
}

fn write_csv(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut ok = w.write_record(header).is_ok();
    for row in rows {
        ok &= w.write_record(&row).is_ok();
    }
    debug_assert!(ok, "writing CSV to memory cannot fail");
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Revenue rows as CSV (amounts in yuan, 2 decimals).
pub fn csv_revenue(rows: &[RevenueRow]) -> String {
    write_csv(
        &[
            "date",
            "channel",
            "gross",
            "refunds",
            "fees",
            "net",
            "orders",
            "refundCount",
            "source",
        ],
        rows.iter().map(|r| {
            vec![
                r.date.clone(),
                r.channel.clone(),
                yuan(r.gross_fen),
                yuan(r.refunds_fen),
                yuan(r.fees_fen),
                yuan(r.net_fen),
                r.orders.to_string(),
                r.refunds.to_string(),
                r.source.clone(),
            ]
        }),
    )
}

/// Discrepancies as CSV (amounts in yuan, 2 decimals).
pub fn csv_discrepancies(list: &[Discrepancy]) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let amount = |v: Option<i64>| v.map(yuan).unwrap_or_default();
    write_csv(
        &[
            "date",
            "kind",
            "status",
            "outTradeNo",
            "outRefundNo",
            "transactionId",
            "bill",
            "wemint",
            "detail",
            "action",
        ],
        list.iter().map(|d| {
            vec![
                d.date.clone(),
                d.kind.as_str().to_owned(),
                d.status.clone(),
                opt(&d.out_trade_no),
                opt(&d.out_refund_no),
                opt(&d.transaction_id),
                amount(d.bill_fen),
                amount(d.wemint_fen),
                d.detail.clone(),
                d.action.clone(),
            ]
        }),
    )
}
