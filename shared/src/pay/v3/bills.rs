//! WeChat Pay v3 bills (对账单): the trade bill (`GET /v3/bill/tradebill`, `bill_type=ALL`) and
//! the fund-flow bill (`GET /v3/bill/fundflowbill`, `account_type=BASIC`), both asked for as
//! gzip (`tar_type=GZIP`).
//!
//! The request answers `{hash_type, hash_value, download_url}` (signed, verified as usual);
//! the download itself is **not** signed, so the file is trusted only when the SHA-1 of the
//! uncompressed bytes equals the announced `hash_value` ([`check_gzip`]). Both passes over a
//! file stream: the gzip is decompressed through `flate2` and the CSV read record by record
//! through `csv` without ever holding the uncompressed text, and every line is bounded
//! ([`MAX_LINE_BYTES`]) so a hostile file cannot make a record grow without limit.
//!
//! Layout (docs/pay.md, "Bills"): a header row of Chinese column names, one row per
//! transaction with every value prefixed by a backtick, then a summary header row and one
//! summary values row. Columns are mapped by header name, never by position; WeChat does not
//! quote fields, so a row with more fields than the header has commas in its item name
//! (`商品名称`), and the surplus is joined back into that field. Amounts are yuan with 2
//! decimals (fees 5) and are converted to integers with decimal arithmetic, never floats.

use std::io::Read;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// The most compressed bytes a bill download may have.
pub const MAX_DOWNLOAD_BYTES: usize = 64 << 20;
/// The most uncompressed bytes a bill may have.
pub const MAX_BILL_BYTES: u64 = 2 << 30;
/// The longest line a bill may have.
pub const MAX_LINE_BYTES: usize = 16 << 10;
/// The most columns a bill row may have.
pub const MAX_COLUMNS: usize = 64;

/// Which bill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BillKind {
    /// `tradebill`, `bill_type=ALL`: every payment and refund of the day.
    Trade,
    /// `fundflowbill`, `account_type=BASIC`: the basic account's money movements.
    FundFlow,
}

impl BillKind {
    /// Stable name (`trade`, `fundFlow`), used in stored ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trade => "trade",
            Self::FundFlow => "fundFlow",
        }
    }

    /// The request path and query for `date` (`yyyy-MM-dd`, China time).
    pub fn request_path(self, date: &str) -> String {
        match self {
            Self::Trade => {
                format!("/v3/bill/tradebill?bill_date={date}&bill_type=ALL&tar_type=GZIP")
            }
            Self::FundFlow => {
                format!("/v3/bill/fundflowbill?bill_date={date}&account_type=BASIC&tar_type=GZIP")
            }
        }
    }
}

/// The answer to a bill request when the bill exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillLink {
    /// Always `SHA1`.
    pub hash_type: String,
    /// Lowercase hex SHA-1 of the uncompressed file.
    pub hash_value: String,
    /// Short-lived download URL (download right away).
    pub download_url: String,
}

/// What a bill request answered. "Not ready" and "no bill" are normal answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillAnswer {
    /// The bill exists: download it now.
    Ready(BillLink),
    /// `STATEMENT_CREATING`: still being generated (bills appear from about 09:00 the next day).
    NotReady,
    /// `NO_STATEMENT_EXIST`: nothing happened that day (or the day is too old).
    NoBill,
}

impl BillAnswer {
    /// Maps WeChat's error codes for "not yet" and "nothing" to answers; `None` for others.
    pub fn from_error_code(code: &str) -> Option<Self> {
        match code {
            "STATEMENT_CREATING" => Some(Self::NotReady),
            "NO_STATEMENT_EXIST" => Some(Self::NoBill),
            _ => None,
        }
    }
}

/// A bill file is refused or could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// The announced hash is not a SHA-1.
    #[error("bill hash type {0:?} is not SHA1")]
    HashType(String),
    /// The uncompressed bytes do not hash to the announced value.
    #[error("bill hash mismatch: announced {expected}, file hashes to {actual}")]
    HashMismatch {
        /// Announced.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The gzip stream is broken or truncated.
    #[error("bill gzip: {0}")]
    Gzip(String),
    /// Over a size bound.
    #[error("bill too large: {0}")]
    TooLarge(&'static str),
    /// Not the documented layout.
    #[error("bill format, line {line}: {message}")]
    Format {
        /// 1-based line number (0: the file as a whole).
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl BillError {
    fn format(line: u64, message: impl Into<String>) -> Self {
        Self::Format {
            line,
            message: message.into(),
        }
    }

    /// Stable error code (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            Self::HashType(_) | Self::HashMismatch { .. } => "BILL_HASH_MISMATCH",
            Self::Gzip(_) | Self::TooLarge(_) => "BILL_CORRUPT",
            Self::Format { .. } => "BILL_FORMAT",
        }
    }
}

/// Fails a read once a line is longer than [`MAX_LINE_BYTES`] or the whole is longer than
/// [`MAX_BILL_BYTES`].
struct Bounded<R> {
    inner: R,
    line: usize,
    total: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line = 0;
            } else {
                self.line += 1;
                if self.line > MAX_LINE_BYTES {
                    return Err(std::io::Error::other("line too long"));
                }
            }
        }
        self.total += n as u64;
        if self.total > MAX_BILL_BYTES {
            return Err(std::io::Error::other("file too large"));
        }
        Ok(n)
    }
}

fn gunzip(gz: &[u8]) -> Bounded<flate2::read::GzDecoder<&[u8]>> {
    Bounded {
        inner: flate2::read::GzDecoder::new(gz),
        line: 0,
        total: 0,
    }
}

fn io_error(e: &std::io::Error) -> BillError {
    match e.to_string().as_str() {
        "line too long" => BillError::TooLarge("a line is longer than 16 KiB"),
        "file too large" => BillError::TooLarge("over 2 GiB uncompressed"),
        other => BillError::Gzip(other.to_owned()),
    }
}

/// Decompresses `gz` (streaming) and checks that the uncompressed bytes hash to `link`'s SHA-1.
/// A truncated or corrupt gzip and a hash mismatch refuse the file.
pub fn check_gzip(gz: &[u8], link: &BillLink) -> Result<(), BillError> {
    if !link.hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(BillError::HashType(link.hash_type.clone()));
    }
    if gz.len() > MAX_DOWNLOAD_BYTES {
        return Err(BillError::TooLarge("download over 64 MiB"));
    }
    let mut reader = flate2::read::GzDecoder::new(gz);
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    let mut buf = vec![0u8; 64 << 10];
    let mut total: u64 = 0;
    loop {
        let n = reader.read(&mut buf).map_err(|e| io_error(&e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_BILL_BYTES {
            return Err(BillError::TooLarge("over 2 GiB uncompressed"));
        }
        ctx.update(&buf[..n]);
    }
    let actual = hex::encode(ctx.finish().as_ref());
    if actual.eq_ignore_ascii_case(link.hash_value.trim()) {
        Ok(())
    } else {
        Err(BillError::HashMismatch {
            expected: link.hash_value.clone(),
            actual,
        })
    }
}

/// SHA-1 (lowercase hex) of `bytes`: what a bill announces for its uncompressed file.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bytes).as_ref())
}

/// Parses a decimal amount in yuan into integer units of 10^-`decimals` yuan (fen for 2, the
/// fee unit for 5): optional `-`, digits, optionally `.` and at most `decimals` digits.
pub fn parse_yuan(s: &str, decimals: u32) -> Option<i64> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || whole.len() > 12
        || frac.len() > decimals as usize
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (s.contains('.') && frac.is_empty())
    {
        return None;
    }
    let scale = 10i64.pow(decimals);
    let mut value = whole.parse::<i64>().ok()?.checked_mul(scale)?;
    let mut unit = scale;
    for b in frac.bytes() {
        unit /= 10;
        value = value.checked_add(i64::from(b - b'0') * unit)?;
    }
    Some(if negative { -value } else { value })
}

/// Formats integer units of 10^-`decimals` yuan as the bill writes them (`199.00`, `1.19400`).
pub fn format_yuan(units: i64, decimals: u32) -> String {
    let scale = 10i64.pow(decimals);
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

/// Fee amounts are in units of 10^-5 yuan (1/1000 fen), as the bill's fee column.
pub const FEE_DECIMALS: u32 = 5;
/// Fee units per fen.
pub const FEE_UNITS_PER_FEN: i64 = 1000;

/// Fee units rounded half away from zero to whole fen.
pub fn fee_units_to_fen(units: i64) -> i64 {
    let half = FEE_UNITS_PER_FEN / 2;
    if units >= 0 {
        (units + half) / FEE_UNITS_PER_FEN
    } else {
        -((-units + half) / FEE_UNITS_PER_FEN)
    }
}

/// One row of a trade bill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TradeRow {
    /// 交易时间, `yyyy-MM-dd HH:mm:ss` China time.
    pub trade_time: String,
    /// 微信订单号.
    pub transaction_id: String,
    /// 商户订单号.
    pub out_trade_no: String,
    /// 交易状态: `SUCCESS` (payment), `REFUND` (refund), `REVOKED`.
    pub trade_state: String,
    /// 应结订单金额 (old format: 订单金额), fen.
    pub settlement_fen: i64,
    /// 订单金额, fen (the settlement amount when the column is missing).
    pub total_fen: i64,
    /// 代金券金额, fen.
    pub coupon_fen: i64,
    /// 微信退款单号 (`0` on payments).
    pub refund_id: String,
    /// 商户退款单号 (`0` on payments).
    pub out_refund_no: String,
    /// 退款金额, fen.
    pub refund_fen: i64,
    /// 退款状态 (refund rows).
    pub refund_status: String,
    /// 商品名称.
    pub description: String,
    /// 手续费, in 10^-5 yuan ([`FEE_DECIMALS`]); negative when a refund gives a fee back.
    pub fee_units: i64,
    /// 费率, as written (e.g. `0.60%`).
    pub fee_rate: String,
}

impl TradeRow {
    /// A payment row.
    pub fn is_payment(&self) -> bool {
        self.trade_state == "SUCCESS"
    }

    /// A refund row.
    pub fn is_refund(&self) -> bool {
        self.trade_state == "REFUND"
    }

    /// The stated fee rate in units of 0.0001% (`0.60%` → 6000); `None` when unreadable.
    pub fn fee_rate_millionths(&self) -> Option<i64> {
        parse_yuan(self.fee_rate.trim().strip_suffix('%')?, 4)
    }
}

/// The summary row of a trade bill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TradeSummary {
    /// 总交易单数.
    pub rows: u64,
    /// 应结订单总金额, fen.
    pub settlement_fen: i64,
    /// 退款总金额, fen.
    pub refund_fen: i64,
    /// 手续费总金额, fee units.
    pub fee_units: i64,
    /// 订单总金额, fen (when present).
    pub total_fen: Option<i64>,
}

/// One row of a fund-flow bill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FundRow {
    /// 记账时间.
    pub time: String,
    /// 微信支付业务单号.
    pub business_no: String,
    /// 资金流水单号.
    pub flow_no: String,
    /// 业务名称 (交易, 退款, 扣除交易手续费, …).
    pub name: String,
    /// 业务类型.
    pub business_type: String,
    /// 收支类型: true for 收入 (income), false for 支出 (expense).
    pub income: bool,
    /// 收支金额(元), fen.
    pub amount_fen: i64,
    /// 账户结余(元), fen.
    pub balance_fen: i64,
    /// 业务凭证号.
    pub voucher: String,
}

/// The summary row of a fund-flow bill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FundSummary {
    /// 资金流水总笔数.
    pub rows: u64,
    /// 收入笔数.
    pub income_rows: u64,
    /// 收入金额, fen.
    pub income_fen: i64,
    /// 支出笔数.
    pub expense_rows: u64,
    /// 支出金额, fen.
    pub expense_fen: i64,
}

/// A bill's records as raw fields (one backtick stripped), streaming.
struct Records<R: Read> {
    reader: csv::Reader<R>,
    record: csv::StringRecord,
    line: u64,
}

impl<R: Read> Records<R> {
    fn new(reader: R) -> Self {
        Self {
            reader: csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .quoting(false)
                .from_reader(reader),
            record: csv::StringRecord::new(),
            line: 0,
        }
    }

    /// The next non-empty record's fields, or `None` at the end.
    fn next(&mut self) -> Result<Option<Vec<String>>, BillError> {
        loop {
            let more = self
                .reader
                .read_record(&mut self.record)
                .map_err(|e| match e.kind() {
                    csv::ErrorKind::Io(io) => io_error(io),
                    csv::ErrorKind::Utf8 { .. } => BillError::format(self.line + 1, "not UTF-8"),
                    _ => BillError::format(self.line + 1, e.to_string()),
                })?;
            if !more {
                return Ok(None);
            }
            self.line = self.record.position().map_or(self.line + 1, |p| p.line());
            if self.record.len() > MAX_COLUMNS {
                return Err(BillError::format(self.line, "too many columns"));
            }
            if self.record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let fields = self
                .record
                .iter()
                .map(|f| {
                    let f = f.trim_matches(['\r', '\u{feff}']);
                    f.strip_prefix('`').unwrap_or(f).to_owned()
                })
                .collect();
            return Ok(Some(fields));
        }
    }
}

/// A header row: column name → index.
struct Columns {
    names: Vec<String>,
}

impl Columns {
    fn new(names: Vec<String>) -> Self {
        Self {
            names: names.into_iter().map(|n| n.trim().to_owned()).collect(),
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn require(&self, name: &str) -> Result<usize, BillError> {
        self.find(name)
            .ok_or_else(|| BillError::format(1, format!("no {name} column")))
    }
}

/// Fits a row to the header: surplus fields (commas in the item name) are joined into
/// `joinable`; a short row is refused.
fn fit(
    mut fields: Vec<String>,
    width: usize,
    joinable: Option<usize>,
    line: u64,
) -> Result<Vec<String>, BillError> {
    if fields.len() == width {
        return Ok(fields);
    }
    match joinable {
        Some(at) if fields.len() > width => {
            let surplus = fields.len() - width;
            let joined: Vec<String> = fields.drain(at..=at + surplus).collect();
            fields.insert(at, joined.join(","));
            Ok(fields)
        }
        _ => Err(BillError::format(
            line,
            format!("{} fields where the header has {width}", fields.len()),
        )),
    }
}

fn amount(
    fields: &[String],
    at: Option<usize>,
    decimals: u32,
    line: u64,
) -> Result<i64, BillError> {
    let Some(at) = at else { return Ok(0) };
    let raw = fields[at].trim();
    if raw.is_empty() {
        return Ok(0);
    }
    parse_yuan(raw, decimals).ok_or_else(|| BillError::format(line, format!("amount {raw:?}")))
}

fn text(fields: &[String], at: Option<usize>) -> String {
    at.map(|i| fields[i].trim().to_owned()).unwrap_or_default()
}

fn count(raw: &str, line: u64) -> Result<u64, BillError> {
    raw.trim()
        .parse()
        .map_err(|_| BillError::format(line, format!("count {raw:?}")))
}

/// Reads the summary (header + values) that follows the detail rows; nothing may follow it.
fn summary<R: Read>(
    records: &mut Records<R>,
    header: Vec<String>,
) -> Result<(Columns, Vec<String>, u64), BillError> {
    let columns = Columns::new(header);
    let values = records
        .next()?
        .ok_or_else(|| BillError::format(records.line, "summary values missing"))?;
    let line = records.line;
    if values.len() != columns.names.len() {
        return Err(BillError::format(line, "summary values do not fit"));
    }
    if records.next()?.is_some() {
        return Err(BillError::format(records.line, "rows after the summary"));
    }
    Ok((columns, values, line))
}

/// Streams the rows of a gzip trade bill to `on_row`, then returns the summary after checking
/// it against the rows (count and totals): a file whose summary disagrees with its rows is
/// refused. Check the hash first ([`check_gzip`]).
pub fn read_trade_bill<E: From<BillError>>(
    gz: &[u8],
    on_row: impl FnMut(TradeRow) -> Result<(), E>,
) -> Result<TradeSummary, E> {
    read_trade_bill_from(gunzip(gz), on_row)
}

/// [`read_trade_bill`] over uncompressed text.
pub fn read_trade_bill_from<E: From<BillError>>(
    reader: impl Read,
    mut on_row: impl FnMut(TradeRow) -> Result<(), E>,
) -> Result<TradeSummary, E> {
    let mut bill = TradeBillReader::new(reader)?;
    while let Some(row) = bill.next_row()? {
        on_row(row)?;
    }
    Ok(bill.summary().cloned().unwrap_or_default())
}

/// A gzip trade bill read row by row ([`TradeBillReader::next_row`]), for callers that do
/// asynchronous work between rows. Check the hash first ([`check_gzip`]).
pub fn trade_bill_reader(gz: &[u8]) -> Result<TradeBillReader<impl Read + Send + '_>, BillError> {
    TradeBillReader::new(gunzip(gz))
}

/// Reads a trade bill one row at a time; after the last row the summary is read and checked
/// against the rows (count and totals), and a file whose summary disagrees is refused.
pub struct TradeBillReader<R: Read> {
    records: Records<R>,
    width: usize,
    time: usize,
    tx: usize,
    out: usize,
    state: usize,
    settlement: usize,
    total: Option<usize>,
    coupon: Option<usize>,
    refund_id: Option<usize>,
    out_refund: Option<usize>,
    refund: Option<usize>,
    refund_status: Option<usize>,
    name: Option<usize>,
    fee: Option<usize>,
    rate: Option<usize>,
    rows: u64,
    payments: u64,
    settled_all: i64,
    settled_paid: i64,
    refunded: i64,
    fees: i64,
    summary: Option<TradeSummary>,
}

impl<R: Read> TradeBillReader<R> {
    /// Reads the header row.
    pub fn new(reader: R) -> Result<Self, BillError> {
        let mut records = Records::new(reader);
        let header = records
            .next()?
            .ok_or_else(|| BillError::format(0, "empty file"))?;
        let cols = Columns::new(header);
        let Some(settlement) = cols.find("应结订单金额").or_else(|| cols.find("订单金额"))
        else {
            return Err(BillError::format(1, "no 应结订单金额 or 订单金额 column"));
        };
        Ok(Self {
            width: cols.names.len(),
            time: cols.require("交易时间")?,
            tx: cols.require("微信订单号")?,
            out: cols.require("商户订单号")?,
            state: cols.require("交易状态")?,
            settlement,
            total: cols.find("订单金额"),
            coupon: cols.find("代金券金额"),
            refund_id: cols.find("微信退款单号"),
            out_refund: cols.find("商户退款单号"),
            refund: cols.find("退款金额"),
            refund_status: cols.find("退款状态"),
            name: cols.find("商品名称"),
            fee: cols.find("手续费"),
            rate: cols.find("费率"),
            records,
            rows: 0,
            payments: 0,
            settled_all: 0,
            settled_paid: 0,
            refunded: 0,
            fees: 0,
            summary: None,
        })
    }

    /// The summary, once [`TradeBillReader::next_row`] has returned `None`.
    pub fn summary(&self) -> Option<&TradeSummary> {
        self.summary.as_ref()
    }

    /// The next detail row, or `None` after the (checked) summary.
    pub fn next_row(&mut self) -> Result<Option<TradeRow>, BillError> {
        if self.summary.is_some() {
            return Ok(None);
        }
        let Some(fields) = self.records.next()? else {
            return Err(BillError::format(self.records.line, "no summary rows"));
        };
        if fields.first().is_some_and(|f| f.trim() == "总交易单数") {
            self.summary = Some(self.read_summary(fields)?);
            return Ok(None);
        }
        let line = self.records.line;
        let fields = fit(fields, self.width, self.name, line)?;
        let settlement_fen = amount(&fields, Some(self.settlement), 2, line)?;
        let row = TradeRow {
            trade_time: text(&fields, Some(self.time)),
            transaction_id: text(&fields, Some(self.tx)),
            out_trade_no: text(&fields, Some(self.out)),
            trade_state: text(&fields, Some(self.state)),
            settlement_fen,
            total_fen: match self.total {
                Some(_) => amount(&fields, self.total, 2, line)?,
                None => settlement_fen,
            },
            coupon_fen: amount(&fields, self.coupon, 2, line)?,
            refund_id: text(&fields, self.refund_id),
            out_refund_no: text(&fields, self.out_refund),
            refund_fen: amount(&fields, self.refund, 2, line)?,
            refund_status: text(&fields, self.refund_status),
            description: text(&fields, self.name),
            fee_units: amount(&fields, self.fee, FEE_DECIMALS, line)?,
            fee_rate: text(&fields, self.rate),
        };
        self.rows += 1;
        self.settled_all = self.settled_all.saturating_add(row.settlement_fen);
        if row.is_payment() {
            self.payments += 1;
            self.settled_paid = self.settled_paid.saturating_add(row.settlement_fen);
        }
        if row.is_refund() {
            self.refunded = self.refunded.saturating_add(row.refund_fen);
        }
        self.fees = self.fees.saturating_add(row.fee_units);
        Ok(Some(row))
    }

    fn read_summary(&mut self, header: Vec<String>) -> Result<TradeSummary, BillError> {
        let (sc, values, line) = summary(&mut self.records, header)?;
        let field = |name: &str| sc.find(name).map(|i| values[i].trim().to_owned());
        let fen = |name: &str| -> Result<i64, BillError> {
            match field(name) {
                Some(raw) => parse_yuan(&raw, 2)
                    .ok_or_else(|| BillError::format(line, format!("{name} {raw:?}"))),
                None => Ok(0),
            }
        };
        let s = TradeSummary {
            rows: count(&field("总交易单数").unwrap_or_default(), line)?,
            settlement_fen: fen("应结订单总金额")?,
            refund_fen: fen("退款总金额")?,
            fee_units: match field("手续费总金额") {
                Some(raw) => parse_yuan(&raw, FEE_DECIMALS)
                    .ok_or_else(|| BillError::format(line, format!("手续费总金额 {raw:?}")))?,
                None => 0,
            },
            total_fen: match field("订单总金额") {
                Some(_) => Some(fen("订单总金额")?),
                None => None,
            },
        };
        // Whether the count and the settlement total cover refund rows is not documented:
        // either reading is accepted; anything else means a cut file or a misread column.
        if s.rows != self.rows && s.rows != self.payments {
            return Err(BillError::format(
                line,
                format!("summary counts {} rows, the file has {}", s.rows, self.rows),
            ));
        }
        if s.settlement_fen != self.settled_paid && s.settlement_fen != self.settled_all {
            return Err(BillError::format(
                line,
                "summary settlement total disagrees with the rows",
            ));
        }
        if s.refund_fen != self.refunded || s.fee_units != self.fees {
            return Err(BillError::format(
                line,
                "summary refund or fee total disagrees with the rows",
            ));
        }
        Ok(s)
    }
}

/// Streams the rows of a gzip fund-flow bill to `on_row`, then returns its summary after
/// checking it against the rows. Check the hash first ([`check_gzip`]).
pub fn read_fund_bill<E: From<BillError>>(
    gz: &[u8],
    on_row: impl FnMut(FundRow) -> Result<(), E>,
) -> Result<FundSummary, E> {
    read_fund_bill_from(gunzip(gz), on_row)
}

/// [`read_fund_bill`] over uncompressed text.
pub fn read_fund_bill_from<E: From<BillError>>(
    reader: impl Read,
    mut on_row: impl FnMut(FundRow) -> Result<(), E>,
) -> Result<FundSummary, E> {
    let mut records = Records::new(reader);
    let header = records
        .next()?
        .ok_or_else(|| BillError::format(0, "empty file"))?;
    let cols = Columns::new(header);
    let width = cols.names.len();
    let time = cols.require("记账时间")?;
    let business = cols.find("微信支付业务单号");
    let flow = cols.find("资金流水单号");
    let name = cols.find("业务名称");
    let kind = cols.find("业务类型");
    let direction = cols.require("收支类型")?;
    let amount_at = cols.require("收支金额(元)")?;
    let balance = cols.find("账户结余(元)");
    let remark = cols.find("备注");
    let voucher = cols.find("业务凭证号");
    let (mut rows, mut income_rows, mut expense_rows) = (0u64, 0u64, 0u64);
    let (mut income_fen, mut expense_fen) = (0i64, 0i64);
    let summary_header = loop {
        let Some(fields) = records.next()? else {
            return Err(BillError::format(records.line, "no summary rows").into());
        };
        if fields.first().is_some_and(|f| f.trim() == "资金流水总笔数") {
            break fields;
        }
        let line = records.line;
        let fields = fit(fields, width, remark, line)?;
        let income = match fields[direction].trim() {
            "收入" => true,
            "支出" => false,
            other => {
                return Err(BillError::format(line, format!("收支类型 {other:?}")).into());
            }
        };
        let row = FundRow {
            time: text(&fields, Some(time)),
            business_no: text(&fields, business),
            flow_no: text(&fields, flow),
            name: text(&fields, name),
            business_type: text(&fields, kind),
            income,
            amount_fen: amount(&fields, Some(amount_at), 2, line)?,
            balance_fen: amount(&fields, balance, 2, line)?,
            voucher: text(&fields, voucher),
        };
        rows += 1;
        if income {
            income_rows += 1;
            income_fen = income_fen.saturating_add(row.amount_fen);
        } else {
            expense_rows += 1;
            expense_fen = expense_fen.saturating_add(row.amount_fen);
        }
        on_row(row)?;
    };
    let (sc, values, line) = summary(&mut records, summary_header)?;
    let field = |name: &str| {
        sc.find(name)
            .map(|i| values[i].trim().to_owned())
            .ok_or_else(|| BillError::format(line, format!("no {name} in the summary")))
    };
    let fen = |name: &str| -> Result<i64, BillError> {
        let raw = field(name)?;
        parse_yuan(&raw, 2).ok_or_else(|| BillError::format(line, format!("{name} {raw:?}")))
    };
    let s = FundSummary {
        rows: count(&field("资金流水总笔数")?, line)?,
        income_rows: count(&field("收入笔数")?, line)?,
        income_fen: fen("收入金额")?,
        expense_rows: count(&field("支出笔数")?, line)?,
        expense_fen: fen("支出金额")?,
    };
    if (
        s.rows,
        s.income_rows,
        s.expense_rows,
        s.income_fen,
        s.expense_fen,
    ) != (rows, income_rows, expense_rows, income_fen, expense_fen)
    {
        return Err(BillError::format(line, "summary disagrees with the rows").into());
    }
    Ok(s)
}

/// The trade bill's header (`bill_type=ALL`, 27 columns), for writers of bills (the stand-in).
pub const TRADE_HEADER: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

/// The trade bill's summary header.
pub const TRADE_SUMMARY_HEADER: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// The fund-flow bill's header (11 columns).
pub const FUND_HEADER: [&str; 11] = [
    "记账时间",
    "微信支付业务单号",
    "资金流水单号",
    "业务名称",
    "业务类型",
    "收支类型",
    "收支金额(元)",
    "账户结余(元)",
    "资金变更提交申请人",
    "备注",
    "业务凭证号",
];

/// The fund-flow bill's summary header.
pub const FUND_SUMMARY_HEADER: [&str; 5] = [
    "资金流水总笔数",
    "收入笔数",
    "收入金额",
    "支出笔数",
    "支出金额",
];

/// One bill line: every value prefixed with a backtick, CRLF.
pub fn bill_line<S: AsRef<str>>(values: &[S]) -> String {
    let mut line = values
        .iter()
        .map(|v| format!("`{}", v.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests;
