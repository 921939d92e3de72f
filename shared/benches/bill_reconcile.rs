//! Reconciling a 100,000-row WeChat Pay trade bill against the store (SQLite file, WAL).
//!
//! `cargo bench -p wemint --bench bill_reconcile` (`-- --rows N` for another size). The store
//! holds the day's orders and refunds; the bill (97% payments, 3% refunds, every 10,000th
//! amount different) is served gzip with its SHA-1 as WeChat Pay would, then
//! `Finance::reconcile_day` checks the hash, stores the file, streams the rows against the
//! store and writes discrepancies and revenue. Printed: the time of that call and the peak
//! resident memory of the process during it (VmHWM after resetting it through
//! `/proc/self/clear_refs`), next to the budget (10 s, 100 MB).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use aws_lc_rs::digest;
use bytes::Bytes;
use serde_json::json;
use wemint::clock::{FixedClock, SharedClock};
use wemint::commerce::Commerce;
use wemint::finance::{BillSource, Finance};
use wemint::pay::v3::PayError;
use wemint::pay::v3::bills::{
    BillAnswer, BillKind, BillLink, TRADE_HEADER, TRADE_SUMMARY_HEADER, bill_line, format_yuan,
};
use wemint::store::{Store, collections};

/// 2024-05-02 12:00 China time.
const NOW: i64 = 1_714_622_400;
/// 2024-05-01 00:00 China time.
const DAY: i64 = 1_714_492_800;

struct Served {
    gzip: Bytes,
    hash: String,
}

#[async_trait]
impl BillSource for Served {
    async fn bill(&self, kind: BillKind, _date: &str) -> Result<BillAnswer, PayError> {
        Ok(match kind {
            BillKind::Trade => BillAnswer::Ready(BillLink {
                hash_type: "SHA1".into(),
                hash_value: self.hash.clone(),
                download_url: "https://api.mch.weixin.qq.com/v3/billdownload/file?token=b".into(),
            }),
            BillKind::FundFlow => BillAnswer::NoBill,
        })
    }

    async fn download(&self, _link: &BillLink) -> Result<Bytes, PayError> {
        Ok(self.gzip.clone())
    }
}

/// Writes the bill through gzip and SHA-1 at once (never the whole text in memory).
fn build_bill(payments: usize, refunds: usize) -> Served {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut sha = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    let mut put = |line: &str| {
        sha.update(line.as_bytes());
        gz.write_all(line.as_bytes()).unwrap();
    };
    put(&format!("{}\r\n", TRADE_HEADER.join(",")));
    let (mut settled, mut refunded, mut fees) = (0i64, 0i64, 0i64);
    for i in 0..payments {
        let mut fen = 100 + (i as i64 % 50_000);
        if i % 10_000 == 7 {
            fen += 1;
        }
        settled += fen;
        fees += fen * 6;
        let mut v = vec![String::new(); 27];
        v[0] = format!(
            "2024-05-01 {:02}:{:02}:{:02}",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60
        );
        v[1] = "wxbenchapp".into();
        v[2] = "1900000001".into();
        v[3] = "0".into();
        v[5] = format!("42{i:026}");
        v[6] = format!("WMB{i:012}");
        v[7] = "o-bench".into();
        v[8] = "JSAPI".into();
        v[9] = "SUCCESS".into();
        v[10] = "OTHERS".into();
        v[11] = "CNY".into();
        v[12] = format_yuan(fen, 2);
        v[13] = "0.00".into();
        v[14] = "0".into();
        v[15] = "0".into();
        v[16] = "0.00".into();
        v[17] = "0.00".into();
        v[20] = "bench goods".into();
        v[22] = format_yuan(fen * 6, 5);
        v[23] = "0.60%".into();
        v[24] = format_yuan(fen, 2);
        v[25] = "0.00".into();
        put(&bill_line(&v));
    }
    for i in 0..refunds {
        let fen = 50;
        refunded += fen;
        fees -= fen * 6;
        let mut v = vec![String::new(); 27];
        v[0] = "2024-05-01 23:00:00".into();
        v[5] = format!("42{i:026}");
        v[6] = format!("WMB{i:012}");
        v[9] = "REFUND".into();
        v[12] = "0.00".into();
        v[14] = format!("50{i:026}");
        v[15] = format!("RB{i:010}");
        v[16] = format_yuan(fen, 2);
        v[19] = "SUCCESS".into();
        v[22] = format_yuan(-fen * 6, 5);
        v[23] = "0.60%".into();
        v[24] = "0.00".into();
        put(&bill_line(&v));
    }
    put(&format!("{}\r\n", TRADE_SUMMARY_HEADER.join(",")));
    put(&bill_line(&[
        (payments + refunds).to_string(),
        format_yuan(settled, 2),
        format_yuan(refunded, 2),
        "0.00".into(),
        format_yuan(fees, 5),
        format_yuan(settled, 2),
        format_yuan(refunded, 2),
    ]));
    Served {
        gzip: Bytes::from(gz.finish().unwrap()),
        hash: hex::encode(sha.finish().as_ref()),
    }
}

async fn fill(store: &dyn Store, payments: usize, refunds: usize) {
    for i in 0..payments {
        let fen = 100 + (i as i64 % 50_000);
        let status = if i < refunds {
            "partially_refunded"
        } else {
            "fulfilled"
        };
        store
            .insert(
                collections::ORDERS,
                json!({"_id": format!("B{i}"), "outTradeNo": format!("WMB{i:012}"),
                    "openid": "o-bench", "appid": "wxbenchapp", "clientRequestId": format!("b{i}"),
                    "status": status, "channel": "wxpay", "items": [], "totalFen": fen,
                    "createdAt": DAY + (i as i64 % 80_000), "expiresAt": DAY + 90_000,
                    "paidAt": DAY + (i as i64 % 80_000), "transactionId": format!("42{i:026}")}),
            )
            .await
            .unwrap();
    }
    for i in 0..refunds {
        store
            .insert(
                collections::REFUNDS,
                json!({"_id": format!("RB{i:010}"), "orderId": format!("B{i}"),
                    "outTradeNo": format!("WMB{i:012}"), "openid": "o-bench", "channel": "wxpay",
                    "amountFen": 50, "status": "success", "requestedBy": "admin",
                    "createdAt": DAY + 82_000, "settledAt": DAY + 82_800}),
            )
            .await
            .unwrap();
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let refunds = rows * 3 / 100;
    let payments = rows - refunds;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite:{}?synchronous=normal", dir.path().join("bench.db").display());
        let store = wemint::store::open(&uri).await.unwrap();
        wemint::store::bootstrap(store.as_ref()).await.unwrap();
        let t = Instant::now();
        fill(store.as_ref(), payments, refunds).await;
        let served = build_bill(payments, refunds);
        println!(
            "setup: {payments} orders + {refunds} refunds stored, bill {} KiB gzip ({:.1} s)",
            served.gzip.len() / 1024,
            t.elapsed().as_secs_f64()
        );
        let clock: SharedClock = Arc::new(FixedClock::new(NOW));
        let commerce = Arc::new(Commerce::new(store, "wxbenchapp", clock));
        let finance = Finance::new(commerce, Some(Arc::new(served)));
        // Reset the high-water mark so it measures the reconciliation alone.
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let t = Instant::now();
        let report = finance.reconcile_day("2024-05-01").await.unwrap();
        let elapsed = t.elapsed();
        let peak = peak_rss_kib();
        assert_eq!(report.rows as usize, rows);
        let mismatches = report
            .discrepancies
            .iter()
            .filter(|d| d.kind.as_str() == "amount_mismatch")
            .count();
        assert_eq!(mismatches, (0..payments).filter(|i| i % 10_000 == 7).count());
        println!(
            "bill reconciliation: {rows} rows in {:.2} s (budget 10 s), peak RSS {} MiB{} (budget 100 MB); {} discrepancies, revenue {} fen",
            elapsed.as_secs_f64(),
            peak.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            if reset { "" } else { " (process peak, incl. setup)" },
            report.discrepancies.len(),
            report.revenue[0].net_fen
        );
    });
}
