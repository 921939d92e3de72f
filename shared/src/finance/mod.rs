//! Finance: WeChat Pay bills, the daily reconciliation against them, and revenue reports.
//!
//! - [`Finance::reconcile_day`] takes one China-time day: it reads the day's trade bill
//!   (`ALL`) and fund-flow bill (`BASIC`) from the store, or downloads them, checks the
//!   announced SHA-1 and stores them ([`storage`]), then streams the trade bill's rows
//!   against `orders` and `refunds` in batches and records every difference in
//!   `bill_discrepancies` with its [`DiscrepancyKind`]. A payment the bill shows and the order
//!   here missed is repaired through [`Commerce::repair_missed_payment`] (the provider is
//!   asked, the grant applies once); everything else is listed for an administrator, never
//!   corrected here. "Not ready yet" and "no bill that day" are answers, not errors.
//! - The same run writes the day's revenue per channel to `revenue_reports` ([`report`]):
//!   WeChat Pay figures come from the bill (to the fen of its totals); virtual payment
//!   figures come from the orders here, because the xpay bill's file format is not
//!   documented (docs/pay.md) and is not parsed.
//! - Re-running a day reads the stored bill again; it replaces the day's open
//!   discrepancies and keeps the ones already repaired or resolved.

pub mod report;
pub mod storage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::commerce::{Commerce, CommerceError, OrderDoc, PaymentOutcome, RefundDoc, RefundState};
use crate::domain::catalog::Channel;
use crate::domain::order::OrderStatus;
use crate::pay::v3::bills::{
    self, BillAnswer, BillError, BillKind, BillLink, FundSummary, TradeRow, TradeSummary,
};
use crate::pay::v3::{PayClient, PayError};
use crate::runtime::ApiError;
use crate::store::{
    Filter, FindOptions, Store, StoreError, Update, UpdateOptions, collections as c,
};

pub use report::{RevenueRow, csv_discrepancies, csv_revenue, revenue};
pub use storage::StoredBill;

/// China is UTC+8 all year.
pub const CHINA_OFFSET_SECS: i64 = 8 * 3600;
/// Bills are kept by WeChat Pay for about three months: days further back are refused.
pub const MAX_DAYS_BACK: i64 = 92;
/// Bill rows matched against the store per query.
const BATCH: usize = 200;

/// Public error codes of the finance actions (docs/errors.md).
pub mod codes {
    /// The bill's SHA-1 does not match the announced hash: the file was refused.
    pub const BILL_HASH_MISMATCH: &str = "BILL_HASH_MISMATCH";
    /// The bill's gzip is truncated or corrupt, or over a size bound.
    pub const BILL_CORRUPT: &str = "BILL_CORRUPT";
    /// The bill is not in the documented CSV layout (or its summary disagrees with its rows).
    pub const BILL_FORMAT: &str = "BILL_FORMAT";
    /// The day is in the future, today, or more than three months back.
    pub const BILL_DATE_INVALID: &str = "BILL_DATE_INVALID";
    /// WeChat Pay is not configured for this function.
    pub const BILLS_UNAVAILABLE: &str = "BILLS_UNAVAILABLE";
    /// No such discrepancy.
    pub const DISCREPANCY_NOT_FOUND: &str = "DISCREPANCY_NOT_FOUND";
}

/// Why a finance operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FinanceError {
    /// Bad input.
    #[error("{0}")]
    BadRequest(String),
    /// The day cannot be reconciled.
    #[error("{0}")]
    BadDate(String),
    /// A bill was refused.
    #[error(transparent)]
    Bill(#[from] BillError),
    /// WeChat Pay failed.
    #[error(transparent)]
    Pay(#[from] PayError),
    /// No bill source.
    #[error("WeChat Pay is not configured: no bills to reconcile")]
    Unavailable,
    /// No such discrepancy.
    #[error("discrepancy {0} not found")]
    NotFound(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Commerce failure (a repair).
    #[error(transparent)]
    Commerce(#[from] CommerceError),
}

impl From<FinanceError> for ApiError {
    fn from(err: FinanceError) -> Self {
        use http::StatusCode;
        let message = err.to_string();
        match err {
            FinanceError::BadRequest(_) => ApiError::bad_request(message),
            FinanceError::BadDate(_) => {
                ApiError::new(codes::BILL_DATE_INVALID, StatusCode::BAD_REQUEST, message)
            }
            FinanceError::Bill(b) => {
                let code = match b.code() {
                    "BILL_HASH_MISMATCH" => codes::BILL_HASH_MISMATCH,
                    "BILL_CORRUPT" => codes::BILL_CORRUPT,
                    _ => codes::BILL_FORMAT,
                };
                ApiError::new(code, StatusCode::BAD_GATEWAY, message)
            }
            FinanceError::Pay(_) => ApiError::new(
                crate::commerce::codes::PAYMENT_PROVIDER_ERROR,
                StatusCode::BAD_GATEWAY,
                message,
            ),
            FinanceError::Unavailable => ApiError::new(
                codes::BILLS_UNAVAILABLE,
                StatusCode::SERVICE_UNAVAILABLE,
                message,
            ),
            FinanceError::NotFound(_) => {
                ApiError::new(codes::DISCREPANCY_NOT_FOUND, StatusCode::NOT_FOUND, message)
            }
            e @ FinanceError::Store(_) => ApiError::internal(e),
            FinanceError::Commerce(e) => e.into(),
        }
    }
}

/// Where bills come from: WeChat Pay ([`PayClient`]) or, in tests and benchmarks, anything
/// else that answers the same way.
#[async_trait]
pub trait BillSource: Send + Sync {
    /// Asks for a bill.
    async fn bill(&self, kind: BillKind, date: &str) -> Result<BillAnswer, PayError>;
    /// Downloads the file a [`BillAnswer::Ready`] points to (gzip bytes, unchecked).
    async fn download(&self, link: &BillLink) -> Result<Bytes, PayError>;
}

#[async_trait]
impl BillSource for PayClient {
    async fn bill(&self, kind: BillKind, date: &str) -> Result<BillAnswer, PayError> {
        PayClient::bill(self, kind, date).await
    }

    async fn download(&self, link: &BillLink) -> Result<Bytes, PayError> {
        self.download_bill(link).await
    }
}

/// What kind of difference a reconciliation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// The bill has a payment the order here did not record (repaired when the provider
    /// confirms it), or a payment for an order that does not exist here.
    PaidNotRecorded,
    /// An order here is paid through WeChat Pay that day, the bill has no payment for it.
    RecordedNotPaid,
    /// The bill's amount differs from the order's or the refund's.
    AmountMismatch,
    /// The bill has a refund that was not made through wemint (e.g. in the merchant console).
    RefundUnknown,
    /// A refund's state differs: succeeded at WeChat but not here, or the reverse.
    RefundStateMismatch,
    /// A fee that is not the stated rate of the amount.
    FeeMismatch,
}

impl DiscrepancyKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaidNotRecorded => "paid_not_recorded",
            Self::RecordedNotPaid => "recorded_not_paid",
            Self::AmountMismatch => "amount_mismatch",
            Self::RefundUnknown => "refund_unknown",
            Self::RefundStateMismatch => "refund_state_mismatch",
            Self::FeeMismatch => "fee_mismatch",
        }
    }

    /// What an administrator should do about it.
    pub fn action(self) -> &'static str {
        match self {
            Self::PaidNotRecorded => {
                "Look the order up in the merchant platform; if the payment is real and no order matches, refund it there"
            }
            Self::RecordedNotPaid => {
                "Query the order in the merchant platform; if WeChat has no payment, hold the goods and contact the buyer"
            }
            Self::AmountMismatch => {
                "Compare the order with the merchant platform's record; refund the difference or contact WeChat Pay support"
            }
            Self::RefundUnknown => {
                "A refund was made outside wemint (merchant console): check who made it, then record it or take the goods back"
            }
            Self::RefundStateMismatch => {
                "Query the refund in the merchant platform and settle it in wemint (admin refund) once its final state is known"
            }
            Self::FeeMismatch => {
                "Check the fee rate of the merchant contract; ask WeChat Pay support to correct a wrong fee"
            }
        }
    }
}

/// One difference between a bill and the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discrepancy {
    /// `<date>:<kind>:<reference>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The bill day, `yyyy-MM-dd`.
    pub date: String,
    /// The channel (`wxpay`).
    pub channel: String,
    /// What kind of difference.
    pub kind: DiscrepancyKind,
    /// `open` (for an administrator), `repaired` (fixed here), `resolved` (marked by one).
    pub status: String,
    /// The order's merchant number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// The refund number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<String>,
    /// WeChat's transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The bill's amount, fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_fen: Option<i64>,
    /// The store's amount, fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wemint_fen: Option<i64>,
    /// What was seen.
    pub detail: String,
    /// What to do about it.
    pub action: String,
    /// When first found.
    pub detected_at: i64,
    /// When last seen by a run.
    pub updated_at: i64,
    /// Who resolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// The resolver's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A finding before it is stored.
#[derive(Clone, Debug, Default)]
struct Finding {
    kind: Option<DiscrepancyKind>,
    reference: String,
    out_trade_no: Option<String>,
    out_refund_no: Option<String>,
    transaction_id: Option<String>,
    bill_fen: Option<i64>,
    wemint_fen: Option<i64>,
    detail: String,
    repaired: bool,
}

/// The state of a day's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DayStatus {
    /// Compared; discrepancies and revenue recorded.
    Reconciled,
    /// WeChat Pay is still generating the bill: try again later (after 10:00 China time).
    NotReady,
}

/// What [`Finance::reconcile_day`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayReport {
    /// The day.
    pub date: String,
    /// Reconciled or not ready.
    pub status: DayStatus,
    /// Whether WeChat Pay had a trade bill for the day (`false`: no transactions).
    pub trade_bill: bool,
    /// Whether the trade bill came from the store (a re-run) rather than a download.
    pub from_store: bool,
    /// Trade-bill detail rows read.
    pub rows: u64,
    /// The trade bill's summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trade_summary: Option<TradeSummary>,
    /// The fund-flow bill's summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fund_summary: Option<FundSummary>,
    /// Payments repaired by this run.
    pub repaired: u32,
    /// What this run found (repaired ones included).
    pub discrepancies: Vec<Discrepancy>,
    /// The day's revenue per channel.
    pub revenue: Vec<RevenueRow>,
}

/// The finance service, built once per instance.
pub struct Finance {
    commerce: Arc<Commerce>,
    source: Option<Arc<dyn BillSource>>,
}

impl std::fmt::Debug for Finance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finance")
            .field("bills", &self.source.is_some())
            .finish_non_exhaustive()
    }
}

/// The China-time day (`yyyy-MM-dd`) of a Unix time.
pub fn china_date(unix: i64) -> String {
    let day = (unix + CHINA_OFFSET_SECS).div_euclid(86_400);
    time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| {
            let d = t.date();
            format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
        })
        .unwrap_or_default()
}

/// The Unix time at which China-time day `date` (`yyyy-MM-dd`) starts.
pub fn china_day_start(date: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date, &format).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() - CHINA_OFFSET_SECS)
}

impl Finance {
    /// Finance over the order service, with bills from `source` when WeChat Pay is configured.
    pub fn new(commerce: Arc<Commerce>, source: Option<Arc<dyn BillSource>>) -> Self {
        Self { commerce, source }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.commerce.store()
    }

    /// The order service.
    pub fn commerce(&self) -> &Commerce {
        &self.commerce
    }

    /// Yesterday in China time: the day the daily timer reconciles.
    pub fn yesterday(&self) -> String {
        china_date(self.commerce.now() - 86_400)
    }

    /// Checks that `date` is a past day within the last three months.
    pub fn check_date(&self, date: &str) -> Result<i64, FinanceError> {
        let start = china_day_start(date)
            .ok_or_else(|| FinanceError::BadDate(format!("date {date:?} is not yyyy-MM-dd")))?;
        let today = china_day_start(&china_date(self.commerce.now())).unwrap_or(i64::MAX);
        if start >= today {
            return Err(FinanceError::BadDate(format!(
                "{date} is not over yet: bills cover past days"
            )));
        }
        if start < today - MAX_DAYS_BACK * 86_400 {
            return Err(FinanceError::BadDate(format!(
                "{date} is more than three months back: WeChat Pay no longer has its bills"
            )));
        }
        Ok(start)
    }

    /// Reconciles one day (see the module documentation).
    pub async fn reconcile_day(&self, date: &str) -> Result<DayReport, FinanceError> {
        let start = self.check_date(date)?;
        let end = start + 86_400;
        let trade = storage::fetch(
            self.store().as_ref(),
            self.source.as_deref(),
            BillKind::Trade,
            date,
            self.commerce.now(),
        )
        .await?;
        let (trade, from_store) = match trade {
            storage::Fetched::NotReady => {
                return Ok(DayReport {
                    date: date.to_owned(),
                    status: DayStatus::NotReady,
                    trade_bill: false,
                    from_store: false,
                    rows: 0,
                    trade_summary: None,
                    fund_summary: None,
                    repaired: 0,
                    discrepancies: vec![],
                    revenue: vec![],
                });
            }
            storage::Fetched::Stored(bill) => (bill, true),
            storage::Fetched::Downloaded(bill) => (bill, false),
        };
        let fund = match storage::fetch(
            self.store().as_ref(),
            self.source.as_deref(),
            BillKind::FundFlow,
            date,
            self.commerce.now(),
        )
        .await?
        {
            storage::Fetched::Stored(bill) | storage::Fetched::Downloaded(bill) => Some(bill),
            storage::Fetched::NotReady => None,
        };
        let fund_summary = match fund.as_ref().and_then(|b| b.gzip.as_deref()) {
            Some(gz) => Some(bills::read_fund_bill(gz, |_| Ok::<_, BillError>(()))?),
            None => None,
        };

        let mut run = DayRun::new(self, date, start, end);
        let trade_summary = match trade.gzip.as_deref() {
            Some(gz) => {
                // Streaming: rows are decompressed and parsed a batch at a time, and each
                // batch is matched against the store before the next is read.
                let mut reader = bills::trade_bill_reader(gz)?;
                loop {
                    let mut batch = Vec::with_capacity(BATCH);
                    while batch.len() < BATCH {
                        match reader.next_row()? {
                            Some(row) => batch.push(row),
                            None => break,
                        }
                    }
                    let last = batch.len() < BATCH;
                    run.match_rows(batch).await?;
                    if last {
                        break;
                    }
                }
                reader.summary().cloned()
            }
            None => None,
        };
        run.reverse_checks().await?;
        let revenue = vec![
            run.wxpay.row(date, Channel::Wxpay.as_str(), "bill"),
            run.xpay.row(date, Channel::Xpay.as_str(), "wemint"),
        ];
        report::store_revenue(self.store().as_ref(), &revenue, self.commerce.now()).await?;
        let discrepancies = run.store_findings().await?;
        Ok(DayReport {
            date: date.to_owned(),
            status: DayStatus::Reconciled,
            trade_bill: trade.gzip.is_some(),
            from_store,
            rows: run.rows,
            trade_summary,
            fund_summary,
            repaired: run.repaired,
            discrepancies,
            revenue,
        })
    }

    /// Discrepancies, newest day first: `status` (`open`, `repaired`, `resolved`; default all)
    /// and a day range.
    pub async fn discrepancies(
        &self,
        status: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Discrepancy>, FinanceError> {
        let mut filter = Filter::all_of([]);
        if let Some(s) = status {
            if !["open", "repaired", "resolved"].contains(&s) {
                return Err(FinanceError::BadRequest(format!("status {s:?}")));
            }
            filter = filter.and(Filter::eq("status", s));
        }
        if let Some(f) = from {
            filter = filter.and(Filter::gte("date", f));
        }
        if let Some(t) = to {
            filter = filter.and(Filter::lte("date", t));
        }
        Ok(self
            .store()
            .find_as(
                c::BILL_DISCREPANCIES,
                &filter,
                &FindOptions::new()
                    .sort_desc("date")
                    .limit(limit.clamp(1, 1000)),
            )
            .await?)
    }

    /// Marks an open discrepancy resolved by `admin`, with a note.
    pub async fn resolve(
        &self,
        id: &str,
        admin: &str,
        note: &str,
    ) -> Result<Discrepancy, FinanceError> {
        if note.chars().count() > 500 {
            return Err(FinanceError::BadRequest(
                "note: at most 500 characters".into(),
            ));
        }
        let done: Option<Discrepancy> = self
            .store()
            .update_one_as(
                c::BILL_DISCREPANCIES,
                &Filter::id(id).and(Filter::eq("status", "open")),
                &Update::new()
                    .set("status", "resolved")
                    .set("resolvedBy", admin)
                    .set("note", note)
                    .set("updatedAt", self.commerce.now()),
                UpdateOptions::default(),
            )
            .await?;
        match done {
            Some(d) => Ok(d),
            None => Err(FinanceError::NotFound(id.to_owned())),
        }
    }
}

/// One day's comparison in progress.
struct DayRun<'a> {
    finance: &'a Finance,
    date: &'a str,
    start: i64,
    end: i64,
    rows: u64,
    repaired: u32,
    /// WeChat Pay, from the bill.
    wxpay: report::Totals,
    /// Virtual payment, from the store.
    xpay: report::Totals,
    /// Orders with a payment row.
    paid_in_bill: HashSet<String>,
    /// Refunds with a refund row.
    refunds_in_bill: HashSet<String>,
    findings: Vec<Finding>,
}

const PAID_STATES: [OrderStatus; 5] = [
    OrderStatus::Paid,
    OrderStatus::Fulfilled,
    OrderStatus::Refunding,
    OrderStatus::Refunded,
    OrderStatus::PartiallyRefunded,
];

/// Documents one reverse-check page reads at most.
const PAGE: u64 = 1000;

/// Hands over the day's documents in one state page by page, ordered by (`at`, `_id`). Each
/// page starts after the last document of the previous one, with the lower bound of the time
/// range moved there, so an index on (state field, `at`) reads each document once.
async fn each_day_page<T: serde::de::DeserializeOwned + Send>(
    store: &Arc<dyn Store>,
    (collection, field, state): (&str, &str, &str),
    (at, (start, end)): (&str, (i64, i64)),
    key: impl Fn(&T) -> (i64, String),
    mut each: impl FnMut(Vec<T>),
) -> Result<(), FinanceError> {
    let mut after: Option<(i64, String)> = None;
    loop {
        let mut filter = Filter::eq(field, state)
            .and(Filter::gte(
                at,
                after.as_ref().map_or(start, |(last, _)| (*last).max(start)),
            ))
            .and(Filter::lt(at, end));
        if let Some((last, id)) = &after {
            filter = filter.and(
                Filter::gt(at, *last).or(Filter::eq(at, *last).and(Filter::gt("_id", id.as_str()))),
            );
        }
        let options = FindOptions::new().sort_asc(at).sort_asc("_id").limit(PAGE);
        let page: Vec<T> = store.find_as(collection, &filter, &options).await?;
        let full = page.len() as u64 == PAGE;
        let Some(last) = page.last() else { break };
        after = Some(key(last));
        each(page);
        if !full {
            break;
        }
    }
    Ok(())
}

fn status_names(states: &[OrderStatus]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

impl<'a> DayRun<'a> {
    fn new(finance: &'a Finance, date: &'a str, start: i64, end: i64) -> Self {
        Self {
            finance,
            date,
            start,
            end,
            rows: 0,
            repaired: 0,
            wxpay: report::Totals::default(),
            xpay: report::Totals::default(),
            paid_in_bill: HashSet::new(),
            refunds_in_bill: HashSet::new(),
            findings: Vec::new(),
        }
    }

    fn find(&mut self, kind: DiscrepancyKind, reference: &str, f: Finding) {
        self.findings.push(Finding {
            kind: Some(kind),
            reference: reference.to_owned(),
            ..f
        });
    }

    /// Matches one batch of rows against the orders and refunds they name.
    async fn match_rows(&mut self, rows: Vec<TradeRow>) -> Result<(), FinanceError> {
        let store = Arc::clone(self.finance.store());
        let trade_nos: Vec<&str> = rows
            .iter()
            .filter(|r| r.is_payment())
            .map(|r| r.out_trade_no.as_str())
            .collect();
        let orders: HashMap<String, OrderDoc> = if trade_nos.is_empty() {
            HashMap::new()
        } else {
            store
                .find_as::<OrderDoc>(
                    c::ORDERS,
                    &Filter::is_in("outTradeNo", trade_nos),
                    &FindOptions::new(),
                )
                .await?
                .into_iter()
                .map(|o| (o.out_trade_no.clone(), o))
                .collect()
        };
        let refund_nos: Vec<&str> = rows
            .iter()
            .filter(|r| r.is_refund())
            .map(|r| r.out_refund_no.as_str())
            .collect();
        let refunds: HashMap<String, RefundDoc> = if refund_nos.is_empty() {
            HashMap::new()
        } else {
            store
                .find_as::<RefundDoc>(
                    c::REFUNDS,
                    &Filter::is_in("_id", refund_nos),
                    &FindOptions::new(),
                )
                .await?
                .into_iter()
                .map(|r| (r.refund_no.clone(), r))
                .collect()
        };
        for row in rows {
            self.rows += 1;
            self.wxpay.fee_units += row.fee_units;
            self.check_fee(&row);
            if row.is_payment() {
                self.wxpay.orders += 1;
                self.wxpay.gross_fen += row.settlement_fen;
                self.paid_in_bill.insert(row.out_trade_no.clone());
                self.payment(&row, orders.get(&row.out_trade_no)).await?;
            } else if row.is_refund() {
                self.wxpay.refunds += 1;
                self.wxpay.refunds_fen += row.refund_fen;
                self.refunds_in_bill.insert(row.out_refund_no.clone());
                self.refund(&row, refunds.get(&row.out_refund_no));
            }
        }
        Ok(())
    }

    fn check_fee(&mut self, row: &TradeRow) {
        let Some(rate) = row.fee_rate_millionths() else {
            return;
        };
        let base = if row.is_refund() {
            -row.refund_fen
        } else {
            row.settlement_fen
        };
        // fee units (10^-5 yuan) = fen × 1000 × rate / 10^6.
        let expected = base * rate / 1_000;
        if (row.fee_units - expected).abs() >= bills::FEE_UNITS_PER_FEN {
            let reference = if row.is_refund() {
                &row.out_refund_no
            } else {
                &row.out_trade_no
            };
            self.find(
                DiscrepancyKind::FeeMismatch,
                reference,
                Finding {
                    out_trade_no: Some(row.out_trade_no.clone()),
                    transaction_id: Some(row.transaction_id.clone()),
                    bill_fen: Some(bills::fee_units_to_fen(row.fee_units)),
                    wemint_fen: Some(bills::fee_units_to_fen(expected)),
                    detail: format!(
                        "fee {} yuan where {} of {} yuan is {} yuan",
                        bills::format_yuan(row.fee_units, bills::FEE_DECIMALS),
                        row.fee_rate,
                        bills::format_yuan(base, 2),
                        bills::format_yuan(expected, bills::FEE_DECIMALS)
                    ),
                    ..Finding::default()
                },
            );
        }
    }

    async fn payment(
        &mut self,
        row: &TradeRow,
        order: Option<&OrderDoc>,
    ) -> Result<(), FinanceError> {
        let base = Finding {
            out_trade_no: Some(row.out_trade_no.clone()),
            transaction_id: Some(row.transaction_id.clone()),
            bill_fen: Some(row.total_fen),
            ..Finding::default()
        };
        let Some(order) = order else {
            self.find(
                DiscrepancyKind::PaidNotRecorded,
                &row.out_trade_no,
                Finding {
                    detail: "WeChat Pay has a payment for an order wemint does not have".into(),
                    ..base
                },
            );
            return Ok(());
        };
        let base = Finding {
            wemint_fen: Some(order.total_fen.get()),
            ..base
        };
        match order.status {
            OrderStatus::Created | OrderStatus::Closed => {
                let outcome = self
                    .finance
                    .commerce
                    .repair_missed_payment(&order.out_trade_no)
                    .await?;
                let (repaired, detail) = match &outcome {
                    Some(PaymentOutcome::Applied { .. }) => {
                        (true, "paid at WeChat, the notification was lost: confirmed by a query and fulfilled".to_owned())
                    }
                    Some(PaymentOutcome::AlreadyPaid { .. }) => {
                        (true, "paid at WeChat, the notification was lost: already paid by a concurrent run".to_owned())
                    }
                    Some(PaymentOutcome::Review { reason, .. }) => {
                        (false, format!("paid at WeChat; the payment does not match the order and is held for review: {reason}"))
                    }
                    Some(PaymentOutcome::NotPaid) => {
                        (false, "the bill shows a payment but a query says the order is not paid".to_owned())
                    }
                    Some(PaymentOutcome::UnknownOrder) | None => {
                        (false, "the bill shows a payment the channel cannot confirm".to_owned())
                    }
                };
                if repaired {
                    self.repaired += 1;
                }
                self.find(
                    DiscrepancyKind::PaidNotRecorded,
                    &row.out_trade_no,
                    Finding {
                        detail,
                        repaired,
                        ..base
                    },
                );
            }
            OrderStatus::Review => {
                self.find(
                    DiscrepancyKind::PaidNotRecorded,
                    &row.out_trade_no,
                    Finding {
                        detail: format!(
                            "paid at WeChat; the order is held for review: {}",
                            order
                                .review_reason
                                .as_deref()
                                .unwrap_or("no reason recorded")
                        ),
                        ..base
                    },
                );
            }
            _ => {
                if row.total_fen != order.total_fen.get() {
                    self.find(
                        DiscrepancyKind::AmountMismatch,
                        &row.out_trade_no,
                        Finding {
                            detail: format!(
                                "the bill says {} yuan, the order {} yuan",
                                bills::format_yuan(row.total_fen, 2),
                                bills::format_yuan(order.total_fen.get(), 2)
                            ),
                            ..base
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn refund(&mut self, row: &TradeRow, refund: Option<&RefundDoc>) {
        let base = Finding {
            out_trade_no: Some(row.out_trade_no.clone()),
            out_refund_no: Some(row.out_refund_no.clone()),
            transaction_id: Some(row.transaction_id.clone()),
            bill_fen: Some(row.refund_fen),
            ..Finding::default()
        };
        let Some(refund) = refund else {
            self.find(
                DiscrepancyKind::RefundUnknown,
                &row.out_refund_no,
                Finding {
                    detail: format!(
                        "WeChat Pay refunded {} yuan ({}) that wemint did not request",
                        bills::format_yuan(row.refund_fen, 2),
                        row.refund_status
                    ),
                    ..base
                },
            );
            return;
        };
        let base = Finding {
            wemint_fen: Some(refund.amount_fen.get()),
            ..base
        };
        let bill_success = row.refund_status.is_empty() || row.refund_status == "SUCCESS";
        if bill_success != (refund.status == RefundState::Success) {
            self.find(
                DiscrepancyKind::RefundStateMismatch,
                &row.out_refund_no,
                Finding {
                    detail: format!(
                        "WeChat Pay says {}, wemint says {:?}",
                        if row.refund_status.is_empty() {
                            "SUCCESS"
                        } else {
                            &row.refund_status
                        },
                        refund.status
                    ),
                    ..base
                },
            );
        } else if row.refund_fen != refund.amount_fen.get() {
            self.find(
                DiscrepancyKind::AmountMismatch,
                &row.out_refund_no,
                Finding {
                    detail: format!(
                        "the bill refunds {} yuan, wemint {} yuan",
                        bills::format_yuan(row.refund_fen, 2),
                        bills::format_yuan(refund.amount_fen.get(), 2)
                    ),
                    ..base
                },
            );
        }
    }

    /// One paid order of the day from the store: counted when virtual payment (the bill covers
    /// WeChat Pay only), listed when the bill has no payment for it.
    fn order_recorded(&mut self, order: OrderDoc) {
        if order.channel == Channel::Xpay {
            self.xpay.orders += 1;
            self.xpay.gross_fen += order.total_fen.get();
        }
        if order.channel == Channel::Wxpay && !self.paid_in_bill.contains(&order.out_trade_no) {
            self.find(
                DiscrepancyKind::RecordedNotPaid,
                &order.out_trade_no,
                Finding {
                    out_trade_no: Some(order.out_trade_no.clone()),
                    transaction_id: order.transaction_id.clone(),
                    wemint_fen: Some(order.total_fen.get()),
                    detail: "wemint recorded this WeChat Pay order as paid that day; the bill has no payment for it".into(),
                    ..Finding::default()
                },
            );
        }
    }

    /// What the store has for the day that the bill does not: paid WeChat Pay orders and
    /// succeeded refunds. Read page by page in time order, one state at a time: each page is a
    /// range on the (`status`, time) index that starts where the last page ended, so reading
    /// the day costs one pass over it (a page over several states at once, or one found by
    /// skipping, re-reads the day up to that point and made 100,000 rows quadratic).
    async fn reverse_checks(&mut self) -> Result<(), FinanceError> {
        let store = Arc::clone(self.finance.store());
        let span = (self.start, self.end);
        for status in status_names(&PAID_STATES) {
            each_day_page(
                &store,
                (c::ORDERS, "status", status),
                ("paidAt", span),
                |o: &OrderDoc| (o.paid_at.unwrap_or_default(), o.id.clone()),
                |page| page.into_iter().for_each(|o| self.order_recorded(o)),
            )
            .await?;
        }
        let mut refunds: Vec<RefundDoc> = Vec::new();
        each_day_page(
            &store,
            (c::REFUNDS, "status", "success"),
            ("settledAt", span),
            |r: &RefundDoc| (r.settled_at.unwrap_or_default(), r.refund_no.clone()),
            |page| refunds.extend(page),
        )
        .await?;
        for refund in refunds {
            if refund.channel == Channel::Xpay {
                self.xpay.refunds += 1;
                self.xpay.refunds_fen += refund.amount_fen.get();
                continue;
            }
            if refund.channel == Channel::Wxpay && !self.refunds_in_bill.contains(&refund.refund_no)
            {
                self.find(
                    DiscrepancyKind::RefundStateMismatch,
                    &refund.refund_no,
                    Finding {
                        out_trade_no: Some(refund.out_trade_no.clone()),
                        out_refund_no: Some(refund.refund_no.clone()),
                        wemint_fen: Some(refund.amount_fen.get()),
                        detail:
                            "wemint settled this refund that day; the bill has no refund for it"
                                .into(),
                        ..Finding::default()
                    },
                );
            }
        }
        Ok(())
    }

    /// Replaces the day's open discrepancies with what this run found; repaired and resolved
    /// ones stay. Returns this run's findings as stored.
    async fn store_findings(&mut self) -> Result<Vec<Discrepancy>, FinanceError> {
        let store = self.finance.store();
        let now = self.finance.commerce.now();
        store
            .delete_many(
                c::BILL_DISCREPANCIES,
                &Filter::eq("date", self.date).and(Filter::eq("status", "open")),
            )
            .await?;
        let mut out = Vec::with_capacity(self.findings.len());
        for f in std::mem::take(&mut self.findings) {
            let Some(kind) = f.kind else { continue };
            let id = format!("{}:{}:{}", self.date, kind.as_str(), f.reference);
            let mut update = Update::new()
                .set("date", self.date)
                .set("channel", Channel::Wxpay.as_str())
                .set("kind", kind.as_str())
                .set("detail", f.detail.as_str())
                .set("action", kind.action())
                .set("updatedAt", now)
                .set_on_insert("detectedAt", now);
            update = if f.repaired {
                update.set("status", "repaired")
            } else {
                update.set_on_insert("status", "open")
            };
            for (field, value) in [
                ("outTradeNo", &f.out_trade_no),
                ("outRefundNo", &f.out_refund_no),
                ("transactionId", &f.transaction_id),
            ] {
                if let Some(v) = value {
                    update = update.set(field, v.as_str());
                }
            }
            for (field, value) in [("billFen", f.bill_fen), ("wemintFen", f.wemint_fen)] {
                if let Some(v) = value {
                    update = update.set(field, v);
                }
            }
            let stored: Option<Discrepancy> = store
                .update_one_as(
                    c::BILL_DISCREPANCIES,
                    &Filter::id(id.as_str()),
                    &update,
                    UpdateOptions::upsert(),
                )
                .await?;
            if let Some(d) = stored {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// A report as JSON for the admin views.
pub fn day_report_view(report: &DayReport) -> Value {
    serde_json::to_value(report).unwrap_or_else(|_| json!({}))
}

#[cfg(test)]
mod tests;
