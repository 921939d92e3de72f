//! Day reconciliation over an in-memory store and a bill source that serves files written by
//! hand in the documented layout. Repairs through a real channel are covered end to end
//! (tests/tests/finance.rs); here no channel is configured, so a missed payment is listed.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;

use super::*;
use crate::clock::FixedClock;
use crate::pay::v3::bills::{TRADE_HEADER, TRADE_SUMMARY_HEADER, bill_line, sha1_hex};

/// 2024-05-02 12:00 China time.
const NOW: i64 = 1_714_622_400;
/// 2024-05-01 00:00 China time.
const DAY: i64 = 1_714_492_800;

struct Source {
    text: Mutex<Option<String>>,
    hash: Mutex<Option<String>>,
    gzip: Mutex<Option<Vec<u8>>>,
    answer: Mutex<Option<BillAnswer>>,
    downloads: AtomicU32,
}

impl Source {
    fn serving(text: &str) -> Arc<Self> {
        Arc::new(Self {
            text: Mutex::new(Some(text.to_owned())),
            hash: Mutex::new(None),
            gzip: Mutex::new(None),
            answer: Mutex::new(None),
            downloads: AtomicU32::new(0),
        })
    }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

#[async_trait]
impl BillSource for Source {
    async fn bill(&self, kind: BillKind, _date: &str) -> Result<BillAnswer, PayError> {
        if kind == BillKind::FundFlow {
            return Ok(BillAnswer::NoBill);
        }
        if let Some(answer) = self.answer.lock().unwrap().clone() {
            return Ok(answer);
        }
        let text = self.text.lock().unwrap().clone().unwrap_or_default();
        let hash = self
            .hash
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| sha1_hex(text.as_bytes()));
        Ok(BillAnswer::Ready(BillLink {
            hash_type: "SHA1".into(),
            hash_value: hash,
            download_url: "https://api.mch.weixin.qq.com/v3/billdownload/file?token=x".into(),
        }))
    }

    async fn download(&self, _link: &BillLink) -> Result<Bytes, PayError> {
        self.downloads.fetch_add(1, Ordering::SeqCst);
        if let Some(gz) = self.gzip.lock().unwrap().clone() {
            return Ok(Bytes::from(gz));
        }
        let text = self.text.lock().unwrap().clone().unwrap_or_default();
        Ok(Bytes::from(gzip(&text)))
    }
}

fn row(
    time: &str,
    tx: &str,
    no: &str,
    state: &str,
    fen: &str,
    refund: (&str, &str, &str),
    fee: &str,
) -> String {
    let mut v = vec![String::new(); 27];
    v[0] = format!("2024-05-01 {time}");
    v[1] = "wxapp".into();
    v[2] = "1900000001".into();
    v[3] = "0".into();
    v[5] = tx.into();
    v[6] = no.into();
    v[7] = "o-buyer".into();
    v[8] = "JSAPI".into();
    v[9] = state.into();
    v[10] = "OTHERS".into();
    v[11] = "CNY".into();
    v[12] = fen.into();
    v[13] = "0.00".into();
    v[14] = if refund.0.is_empty() {
        "0".into()
    } else {
        format!("5030{}", refund.0)
    };
    v[15] = if refund.0.is_empty() {
        "0".into()
    } else {
        refund.0.into()
    };
    v[16] = if refund.1.is_empty() {
        "0.00".into()
    } else {
        refund.1.into()
    };
    v[17] = "0.00".into();
    v[19] = refund.2.into();
    v[20] = "goods".into();
    v[22] = fee.into();
    v[23] = "0.60%".into();
    v[24] = fen.into();
    v[25] = "0.00".into();
    bill_line(&v)
}

/// Three payments (O2's amount differs from the order, WMX has no order and a wrong fee) and
/// two refunds (R1 known, RX made elsewhere). Totals written by hand.
fn bill() -> String {
    let mut text = format!("{}\r\n", TRADE_HEADER.join(","));
    text += &row(
        "10:00:00",
        "4200000001",
        "WMO1",
        "SUCCESS",
        "100.00",
        ("", "", ""),
        "0.60000",
    );
    text += &row(
        "11:00:00",
        "4200000002",
        "WMO2",
        "SUCCESS",
        "60.00",
        ("", "", ""),
        "0.36000",
    );
    text += &row(
        "12:00:00",
        "4200000009",
        "WMX",
        "SUCCESS",
        "20.00",
        ("", "", ""),
        "0.50000",
    );
    text += &row(
        "13:00:00",
        "4200000001",
        "WMO1",
        "REFUND",
        "0.00",
        ("R1", "10.00", "SUCCESS"),
        "-0.06000",
    );
    text += &row(
        "14:00:00",
        "4200000002",
        "WMO2",
        "REFUND",
        "0.00",
        ("RX", "5.00", "SUCCESS"),
        "-0.03000",
    );
    text += &format!("{}\r\n", TRADE_SUMMARY_HEADER.join(","));
    text += &bill_line(&["5", "180.00", "15.00", "0.00", "1.37000", "180.00", "15.00"]);
    text
}

fn order(id: &str, channel: &str, status: &str, fen: i64, paid_at: Option<i64>) -> Value {
    let mut o = json!({
        "_id": id, "outTradeNo": format!("WM{id}"), "openid": "o-buyer", "appid": "wxapp",
        "clientRequestId": id, "status": status, "channel": channel, "items": [],
        "totalFen": fen, "createdAt": DAY, "expiresAt": DAY + 1800,
    });
    if let Some(at) = paid_at {
        o["paidAt"] = json!(at);
    }
    o
}

async fn setup(source: Arc<Source>) -> Finance {
    let store = crate::store::open("sqlite::memory:").await.unwrap();
    crate::store::bootstrap(store.as_ref()).await.unwrap();
    for doc in [
        order(
            "O1",
            "wxpay",
            "partially_refunded",
            10_000,
            Some(DAY + 36_000),
        ),
        order("O2", "wxpay", "fulfilled", 5_000, Some(DAY + 39_600)),
        order("O3", "wxpay", "fulfilled", 3_000, Some(DAY + 40_000)),
        order("O4", "xpay", "fulfilled", 600, Some(DAY + 41_000)),
        // Paid the day before: not this day's business.
        order("O5", "wxpay", "fulfilled", 900, Some(DAY - 10)),
    ] {
        store.insert(c::ORDERS, doc).await.unwrap();
    }
    store
        .insert(
            c::REFUNDS,
            json!({"_id": "R1", "orderId": "O1", "outTradeNo": "WMO1", "openid": "o-buyer",
                "channel": "wxpay", "amountFen": 1_000, "status": "success", "requestedBy": "admin",
                "createdAt": DAY + 46_000, "settledAt": DAY + 46_800}),
        )
        .await
        .unwrap();
    let clock: crate::clock::SharedClock = Arc::new(FixedClock::new(NOW));
    let commerce = Commerce::new(store, "wxapp", clock);
    Finance::new(Arc::new(commerce), Some(source))
}

fn kinds(report: &DayReport) -> Vec<(String, String)> {
    let mut v: Vec<_> = report
        .discrepancies
        .iter()
        .map(|d| {
            (
                d.kind.as_str().to_owned(),
                d.id.rsplit(':').next().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_day_lists_every_kind_of_difference_and_its_revenue() {
    let source = Source::serving(&bill());
    let finance = setup(source.clone()).await;
    let report = finance.reconcile_day("2024-05-01").await.unwrap();
    assert_eq!(report.status, DayStatus::Reconciled);
    assert_eq!(report.rows, 5);
    assert!(!report.from_store);
    assert_eq!(
        kinds(&report),
        vec![
            ("amount_mismatch".into(), "WMO2".into()),
            ("fee_mismatch".into(), "WMX".into()),
            ("paid_not_recorded".into(), "WMX".into()),
            ("recorded_not_paid".into(), "WMO3".into()),
            ("refund_unknown".into(), "RX".into()),
        ]
    );
    assert!(report.discrepancies.iter().all(|d| d.status == "open"));
    let amount = report
        .discrepancies
        .iter()
        .find(|d| d.kind == DiscrepancyKind::AmountMismatch)
        .unwrap();
    assert_eq!(
        (amount.bill_fen, amount.wemint_fen),
        (Some(6_000), Some(5_000))
    );
    assert!(!amount.action.is_empty());

    let wx = &report.revenue[0];
    assert_eq!(
        (
            wx.channel.as_str(),
            wx.gross_fen,
            wx.refunds_fen,
            wx.fees_fen,
            wx.net_fen,
            wx.orders,
            wx.refunds
        ),
        ("wxpay", 18_000, 1_500, 137, 16_363, 3, 2)
    );
    let xp = &report.revenue[1];
    assert_eq!(
        (
            xp.channel.as_str(),
            xp.gross_fen,
            xp.orders,
            xp.source.as_str()
        ),
        ("xpay", 600, 1, "wemint")
    );
    let stored = revenue(finance.store().as_ref(), "2024-05-01", "2024-05-01")
        .await
        .unwrap();
    assert_eq!(stored, report.revenue);

    // A re-run reads the stored copy and finds the same, without duplicates.
    let again = finance.reconcile_day("2024-05-01").await.unwrap();
    assert!(again.from_store);
    assert_eq!(source.downloads.load(Ordering::SeqCst), 1);
    assert_eq!(kinds(&again), kinds(&report));
    let open = finance
        .discrepancies(Some("open"), None, None, 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 5);

    // An administrator resolves one; a re-run keeps it resolved.
    let id = "2024-05-01:refund_unknown:RX".to_owned();
    let resolved = finance
        .resolve(&id, "o-admin", "console refund by the shop owner")
        .await
        .unwrap();
    assert_eq!(resolved.status, "resolved");
    finance.reconcile_day("2024-05-01").await.unwrap();
    let open = finance
        .discrepancies(Some("open"), None, None, 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 4);
    assert!(matches!(
        finance.resolve(&id, "o-admin", "again").await,
        Err(FinanceError::NotFound(_))
    ));

    let csv = csv_discrepancies(&open);
    assert!(csv.starts_with("date,kind,status,outTradeNo"), "{csv}");
    assert!(
        csv.contains("2024-05-01,amount_mismatch,open,WMO2,,4200000002,60.00,50.00,"),
        "{csv}"
    );
    let csv = csv_revenue(&stored);
    assert!(
        csv.contains("2024-05-01,wxpay,180.00,15.00,1.37,163.63,3,2,bill"),
        "{csv}"
    );
}

#[tokio::test]
async fn a_wrong_hash_or_a_cut_gzip_is_refused_and_nothing_is_stored() {
    let source = Source::serving(&bill());
    *source.hash.lock().unwrap() = Some("0".repeat(40));
    let finance = setup(source.clone()).await;
    let err = finance.reconcile_day("2024-05-01").await.unwrap_err();
    assert_eq!(ApiError::from(err).code(), codes::BILL_HASH_MISMATCH);
    assert!(
        storage::load(finance.store().as_ref(), BillKind::Trade, "2024-05-01")
            .await
            .unwrap()
            .is_none()
    );

    *source.hash.lock().unwrap() = None;
    let gz = gzip(&bill());
    *source.gzip.lock().unwrap() = Some(gz[..gz.len() / 2].to_vec());
    let err = finance.reconcile_day("2024-05-01").await.unwrap_err();
    assert_eq!(ApiError::from(err).code(), codes::BILL_CORRUPT);
    let none = finance.discrepancies(None, None, None, 100).await.unwrap();
    assert!(none.is_empty());

    // The good file then goes through.
    *source.gzip.lock().unwrap() = None;
    assert_eq!(finance.reconcile_day("2024-05-01").await.unwrap().rows, 5);
}

#[tokio::test]
async fn not_ready_and_no_bill_are_answers() {
    let source = Source::serving("");
    *source.answer.lock().unwrap() = Some(BillAnswer::NotReady);
    let finance = setup(source.clone()).await;
    let report = finance.reconcile_day("2024-05-01").await.unwrap();
    assert_eq!(report.status, DayStatus::NotReady);
    assert!(
        finance
            .discrepancies(None, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    *source.answer.lock().unwrap() = Some(BillAnswer::NoBill);
    let report = finance.reconcile_day("2024-05-01").await.unwrap();
    assert_eq!(report.status, DayStatus::Reconciled);
    assert!(!report.trade_bill);
    // With no bill, every WeChat Pay order paid that day is listed.
    let mut listed: Vec<_> = report
        .discrepancies
        .iter()
        .map(|d| d.kind.as_str())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "recorded_not_paid",
            "recorded_not_paid",
            "recorded_not_paid",
            "refund_state_mismatch"
        ]
    );
    // The empty day is stored: the next run does not ask again.
    *source.answer.lock().unwrap() = Some(BillAnswer::NotReady);
    assert!(
        finance
            .reconcile_day("2024-05-01")
            .await
            .unwrap()
            .from_store
    );
}

#[tokio::test]
async fn only_past_days_of_the_last_three_months() {
    let finance = setup(Source::serving("")).await;
    assert_eq!(finance.yesterday(), "2024-05-01");
    for bad in [
        "2024-05-02",
        "2024-06-01",
        "2024-01-15",
        "2024-5-1",
        "yesterday",
        "",
    ] {
        let err = finance.reconcile_day(bad).await.unwrap_err();
        assert_eq!(
            ApiError::from(err).code(),
            codes::BILL_DATE_INVALID,
            "{bad}"
        );
    }
    assert!(finance.check_date("2024-02-01").is_ok());
    assert_eq!(china_date(DAY), "2024-05-01");
    assert_eq!(china_date(DAY - 1), "2024-04-30");
    assert_eq!(china_day_start("2024-05-01"), Some(DAY));
}

/// The reverse check reads the day's orders and refunds in pages; with more than a page, in
/// several states and with many documents sharing a second, each is counted exactly once.
#[tokio::test]
async fn pages_over_a_busy_day_count_every_order_and_refund_once() {
    let finance = setup(Source::serving(&bill())).await;
    let store = Arc::clone(finance.store());
    let (orders, refunds) = (2_345_i64, 1_203_i64);
    for i in 0..orders {
        let status = if i % 3 == 0 { "refunded" } else { "fulfilled" };
        let doc = order(
            &format!("X{i:05}"),
            "xpay",
            status,
            100 + i,
            Some(DAY + i / 7),
        );
        store.insert(c::ORDERS, doc).await.unwrap();
    }
    for i in 0..refunds {
        store
            .insert(
                c::REFUNDS,
                json!({"_id": format!("XR{i:05}"), "orderId": format!("X{i:05}"),
                    "outTradeNo": format!("WMX{i:05}"), "openid": "o-buyer", "channel": "xpay",
                    "amountFen": 10, "status": "success", "requestedBy": "admin",
                    "createdAt": DAY, "settledAt": DAY + 50_000 + i / 11}),
            )
            .await
            .unwrap();
    }
    let report = finance.reconcile_day("2024-05-01").await.unwrap();
    let xpay = report.revenue.iter().find(|r| r.channel == "xpay").unwrap();
    // O4 (600 fen) from `setup`, plus the day's orders.
    assert_eq!(xpay.orders, orders as u64 + 1);
    assert_eq!(
        xpay.gross_fen,
        600 + (0..orders).map(|i| 100 + i).sum::<i64>()
    );
    assert_eq!(xpay.refunds, refunds as u64);
    assert_eq!(xpay.refunds_fen, refunds * 10);
    // The WeChat Pay side is unchanged by the extra pages.
    assert!(kinds(&report).contains(&("recorded_not_paid".into(), "WMO3".into())));
}
