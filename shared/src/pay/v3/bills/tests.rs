//! Bill parsing against files written by hand from the documented layout (docs/pay.md,
//! "Bills"), the hash check, corrupt gzip, and a `fuzz_*` property test over the parsers.

use std::io::Write;

use proptest::prelude::*;

use super::*;
use crate::fuzzing::{cases, glued};

/// The illustrative ALL file of the format page, plus a refund row and an item name with
/// commas (WeChat does not quote).
const TRADE: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n\
`2024-05-01 13:51:31,`wx1234567890abcdef,`1900000001,`0,`,`4200002024050112345678901234,`WM20240501000123,`oAbCd_user_openid_example,`JSAPI,`SUCCESS,`OTHERS,`CNY,`199.00,`0.00,`0,`0,`0.00,`0.00,`,`,`wemint hoodie,`,`1.19400,`0.60%,`199.00,`0.00,`\r\n\
`2024-05-01 14:00:00,`wx1234567890abcdef,`1900000001,`0,`,`4200002024050112345678909999,`WM20240501000124,`oAbCd_user_openid_example,`JSAPI,`SUCCESS,`OTHERS,`CNY,`12.50,`0.00,`0,`0,`0.00,`0.00,`,`,`socks, red, pair,`,`0.07500,`0.60%,`12.50,`0.00,`\r\n\
`2024-05-01 18:30:00,`wx1234567890abcdef,`1900000001,`0,`,`4200002024050112345678901234,`WM20240501000123,`oAbCd_user_openid_example,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300000000000000001,`RF-1,`20.00,`0.00,`ORIGINAL,`SUCCESS,`wemint hoodie,`,`-0.12000,`0.60%,`199.00,`20.00,`\r\n\
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n\
`3,`211.50,`20.00,`0.00,`1.14900,`211.50,`20.00\r\n";

/// The official fund-flow sample row, and an income row.
const FUND: &str = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),资金变更提交申请人,备注,业务凭证号\n\
`2024-05-02 04:20:00,`4200002024050112345678901234,`1900000001202405025884650000,`交易,`交易,`收入,`0.19,`0.19,`system,`,`\n\
`2024-05-02 04:21:23,`50000305742024050203387128253,`1900000001202405025884652186,`退款,`退款,`支出,`0.02,`0.17,`system,`缺货,`REF4200002024050112345678901234\n\
资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\n\
`2,`1,`0.19,`1,`0.02\n";

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

fn link(hash: &str) -> BillLink {
    BillLink {
        hash_type: "SHA1".into(),
        hash_value: hash.into(),
        download_url: "https://api.mch.weixin.qq.com/v3/billdownload/file?token=t".into(),
    }
}

fn trade_rows(text: &str) -> Result<(Vec<TradeRow>, TradeSummary), BillError> {
    let mut rows = Vec::new();
    let summary = read_trade_bill(&gzip(text), |r| {
        rows.push(r);
        Ok::<_, BillError>(())
    })?;
    Ok((rows, summary))
}

#[test]
fn amounts_are_decimal_not_float() {
    assert_eq!(parse_yuan("199.00", 2), Some(19_900));
    assert_eq!(parse_yuan("0.1", 2), Some(10));
    assert_eq!(parse_yuan("7", 2), Some(700));
    assert_eq!(parse_yuan("1.19400", 5), Some(119_400));
    assert_eq!(parse_yuan("-0.12000", 5), Some(-12_000));
    assert_eq!(parse_yuan("0.60", 4), Some(6_000));
    for bad in [
        "",
        "1.",
        ".5",
        "1.234",
        "1,00",
        "１.00",
        "--1",
        "1e3",
        "99999999999999",
    ] {
        assert_eq!(parse_yuan(bad, 2), None, "{bad}");
    }
    assert_eq!(format_yuan(19_900, 2), "199.00");
    assert_eq!(format_yuan(-12_000, 5), "-0.12000");
    assert_eq!(fee_units_to_fen(1_149), 1);
    assert_eq!(fee_units_to_fen(1_500), 2);
    assert_eq!(fee_units_to_fen(-1_500), -2);
}

#[test]
fn a_trade_bill_parses_by_header_name() {
    let (rows, summary) = trade_rows(TRADE).unwrap();
    assert_eq!(rows.len(), 3);
    let hoodie = &rows[0];
    assert_eq!(hoodie.trade_time, "2024-05-01 13:51:31");
    assert_eq!(hoodie.transaction_id, "4200002024050112345678901234");
    assert_eq!(hoodie.out_trade_no, "WM20240501000123");
    assert!(hoodie.is_payment());
    assert_eq!((hoodie.settlement_fen, hoodie.total_fen), (19_900, 19_900));
    assert_eq!(hoodie.fee_units, 119_400);
    assert_eq!(hoodie.fee_rate_millionths(), Some(6_000));
    // Commas in the item name are joined back.
    assert_eq!(rows[1].description, "socks, red, pair");
    assert_eq!(rows[1].fee_units, 7_500);
    let refund = &rows[2];
    assert!(refund.is_refund());
    assert_eq!(
        (
            refund.out_refund_no.as_str(),
            refund.refund_fen,
            refund.refund_status.as_str()
        ),
        ("RF-1", 2_000, "SUCCESS")
    );
    assert_eq!(
        summary,
        TradeSummary {
            rows: 3,
            settlement_fen: 21_150,
            refund_fen: 2_000,
            fee_units: 114_900,
            total_fen: Some(21_150),
        }
    );
}

#[test]
fn a_fund_flow_bill_parses() {
    let mut rows = Vec::new();
    let summary = read_fund_bill(&gzip(FUND), |r| {
        rows.push(r);
        Ok::<_, BillError>(())
    })
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].income);
    assert_eq!(rows[1].name, "退款");
    assert!(!rows[1].income);
    assert_eq!((rows[1].amount_fen, rows[1].balance_fen), (2, 17));
    assert_eq!(rows[1].voucher, "REF4200002024050112345678901234");
    assert_eq!(
        (summary.income_fen, summary.expense_fen, summary.rows),
        (19, 2, 2)
    );
}

#[test]
fn the_hash_is_of_the_uncompressed_file() {
    // SHA-1 of the bytes "abc" (FIPS 180 example).
    assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    let gz = gzip("abc");
    check_gzip(&gz, &link("A9993E364706816ABA3E25717850C26C9CD0D89D")).unwrap();
    let err = check_gzip(&gz, &link("0000000000000000000000000000000000000000")).unwrap_err();
    assert_eq!(err.code(), "BILL_HASH_MISMATCH");
    let mut md5 = link("a9993e364706816aba3e25717850c26c9cd0d89d");
    md5.hash_type = "MD5".into();
    assert_eq!(
        check_gzip(&gz, &md5).unwrap_err().code(),
        "BILL_HASH_MISMATCH"
    );
}

#[test]
fn a_truncated_gzip_is_refused() {
    let gz = gzip(TRADE);
    let cut = &gz[..gz.len() - 12];
    let err = check_gzip(cut, &link(&sha1_hex(TRADE.as_bytes()))).unwrap_err();
    assert_eq!(err.code(), "BILL_CORRUPT", "{err}");
    let err = trade_rows_from(cut).unwrap_err();
    assert!(
        matches!(err, BillError::Gzip(_) | BillError::Format { .. }),
        "{err}"
    );
}

fn trade_rows_from(gz: &[u8]) -> Result<TradeSummary, BillError> {
    read_trade_bill(gz, |_| Ok::<_, BillError>(()))
}

#[test]
fn a_summary_that_disagrees_with_the_rows_is_refused() {
    let wrong_total = TRADE.replace("`3,`211.50,`20.00", "`3,`211.51,`20.00");
    assert!(matches!(
        trade_rows(&wrong_total),
        Err(BillError::Format { .. })
    ));
    let wrong_fee = TRADE.replace("`1.14900", "`1.15000");
    assert!(matches!(
        trade_rows(&wrong_fee),
        Err(BillError::Format { .. })
    ));
    // A file cut after a detail row has no summary.
    let cut: String = TRADE.lines().take(3).map(|l| format!("{l}\n")).collect();
    assert!(matches!(trade_rows(&cut), Err(BillError::Format { .. })));
    // Rows after the summary.
    let extra = format!("{TRADE}`oops\r\n");
    assert!(matches!(trade_rows(&extra), Err(BillError::Format { .. })));
    // Missing required column.
    let no_state = TRADE.replacen("交易状态", "状态", 1);
    assert!(matches!(
        trade_rows(&no_state),
        Err(BillError::Format { .. })
    ));
}

#[test]
fn an_empty_day_has_only_the_summary() {
    let text = format!(
        "{}\n{}\n`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00\n",
        TRADE_HEADER.join(","),
        TRADE_SUMMARY_HEADER.join(",")
    );
    let (rows, summary) = trade_rows(&text).unwrap();
    assert!(rows.is_empty());
    assert_eq!(summary.rows, 0);
}

#[test]
fn a_line_without_end_is_bounded() {
    let long = format!(
        "{}\n`{}",
        TRADE_HEADER.join(","),
        "x".repeat(MAX_LINE_BYTES + 10)
    );
    assert_eq!(trade_rows(&long).unwrap_err().code(), "BILL_CORRUPT");
}

const BILL_PARTS: &[&str] = &[
    "`",
    ",",
    "\r\n",
    "\n",
    "交易时间",
    "交易状态",
    "商户订单号",
    "微信订单号",
    "应结订单金额",
    "手续费",
    "总交易单数",
    "应结订单总金额",
    "SUCCESS",
    "REFUND",
    "199.00",
    "-0.12000",
    "0",
    "1.",
    "\"",
    "\u{feff}",
    "记账时间",
    "收支类型",
    "收支金额(元)",
    "收入",
    "支出",
    "资金流水总笔数",
];

proptest! {
    #![proptest_config(cases(2000))]

    /// No input crashes either bill parser or the hash check, compressed or not.
    #[test]
    fn fuzz_bill_parsers(text in prop_oneof![glued(BILL_PARTS), ".{0,400}"], cut in 0usize..64) {
        let header = format!("{}\n", TRADE_HEADER.join(","));
        for input in [text.clone(), format!("{header}{text}"), format!("{}\n{text}", FUND_HEADER.join(","))] {
            let _ = read_trade_bill_from(input.as_bytes(), |_| Ok::<_, BillError>(()));
            let _ = read_fund_bill_from(input.as_bytes(), |_| Ok::<_, BillError>(()));
            let gz = gzip(&input);
            let gz = &gz[..gz.len().saturating_sub(cut)];
            let _ = check_gzip(gz, &link(&sha1_hex(input.as_bytes())));
            let _ = read_trade_bill(gz, |_| Ok::<_, BillError>(()));
        }
        let _ = read_trade_bill(text.as_bytes(), |_| Ok::<_, BillError>(()));
    }

    /// A well-formed bill of any amounts round-trips through the writer's line format.
    #[test]
    fn fuzz_trade_rows_round_trip(amounts in proptest::collection::vec((1i64..10_000_000, 0i64..100_000), 0..20)) {
        let mut text = format!("{}\r\n", TRADE_HEADER.join(","));
        let (mut total, mut fees) = (0, 0);
        for (i, (fen, fee)) in amounts.iter().enumerate() {
            let mut v = vec![String::new(); 27];
            v[0] = "2024-05-01 10:00:00".into();
            v[5] = format!("42{i:026}");
            v[6] = format!("WM{i:010}");
            v[9] = "SUCCESS".into();
            v[12] = format_yuan(*fen, 2);
            v[22] = format_yuan(*fee, 5);
            v[24] = format_yuan(*fen, 2);
            text.push_str(&bill_line(&v));
            total += fen;
            fees += fee;
        }
        text.push_str(&format!("{}\r\n", TRADE_SUMMARY_HEADER.join(",")));
        text.push_str(&bill_line(&[amounts.len().to_string(), format_yuan(total, 2), "0.00".into(),
            "0.00".into(), format_yuan(fees, 5), format_yuan(total, 2), "0.00".into()]));
        let (rows, summary) = trade_rows(&text).unwrap();
        prop_assert_eq!(rows.len(), amounts.len());
        prop_assert_eq!(summary.settlement_fen, total);
        prop_assert_eq!(summary.fee_units, fees);
    }
}
