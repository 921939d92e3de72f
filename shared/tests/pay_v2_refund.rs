//! API v2 refund notifications against the independent vector (`testdata/vectors/
//! v2_refund_notify.json`).

use wemint::pay::v2::ApiV2Key;
use wemint::pay::v2_refund::{V2RefundStatus, decrypt_req_info, parse_refund_notify};

fn vector() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/vectors/v2_refund_notify.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

fn outer(req_info: &str) -> String {
    format!(
        "<xml><return_code>SUCCESS</return_code><appid><![CDATA[wx1234567890abcdef]]></appid>\
         <mch_id><![CDATA[1900000001]]></mch_id><nonce_str><![CDATA[TeqClE3i0mvn3DrK]]></nonce_str>\
         <req_info><![CDATA[{req_info}]]></req_info></xml>"
    )
}

#[test]
fn req_info_decrypts_to_the_vector_plaintext() {
    let v = vector();
    let key = ApiV2Key::new(s(&v, "apiv2_key"));
    assert_eq!(
        decrypt_req_info(s(&v, "req_info"), &key).unwrap(),
        s(&v, "plaintext")
    );
}

#[test]
fn the_refund_notification_parses_to_the_vector_fields() {
    let v = vector();
    let key = ApiV2Key::new(s(&v, "apiv2_key"));
    let n = parse_refund_notify(&outer(s(&v, "req_info")), &key).unwrap();
    let e = &v["expect"];
    assert_eq!(n.out_refund_no, s(e, "out_refund_no"));
    assert_eq!(n.out_trade_no, s(e, "out_trade_no"));
    assert_eq!(n.refund_id, s(e, "refund_id"));
    assert_eq!(n.transaction_id, s(e, "transaction_id"));
    assert_eq!(n.refund_fee, e["refund_fee"].as_i64().unwrap());
    assert_eq!(n.total_fee, e["total_fee"].as_i64().unwrap());
    assert_eq!(n.refund_status, V2RefundStatus::Success);
    assert_eq!(n.appid, "wx1234567890abcdef");
    assert_eq!(n.mch_id, "1900000001");
}

#[test]
fn tampered_req_info_and_another_key_are_refused() {
    let v = vector();
    let key = ApiV2Key::new(s(&v, "apiv2_key"));
    for case in v["reject"].as_array().unwrap() {
        let why = s(case, "why");
        let mut req_info = s(&v, "req_info").to_owned();
        let mut key = key.clone();
        if let Some(i) = case["flip_index"].as_u64() {
            let i = usize::try_from(i).unwrap();
            let c = req_info.as_bytes()[i];
            let flipped = if c == b'A' { 'B' } else { 'A' };
            req_info.replace_range(i..=i, &flipped.to_string());
        }
        if let Some(k) = case["apiv2_key"].as_str() {
            key = ApiV2Key::new(k);
        }
        assert!(
            parse_refund_notify(&outer(&req_info), &key).is_err(),
            "{why}"
        );
    }
}
