//! The independent vectors in `testdata/vectors` (miniprogram_crypto.json, message_push.json),
//! used as they are.

use serde_json::Value;
use wemint::wechat::{
    OpenDataError, PushCrypto, PushError, PushFormat, PushKind, PushQuery, Suggest,
    decrypt_open_data, verify_raw_data_signature,
};

fn vector(name: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors/");
    let text = std::fs::read_to_string(format!("{dir}{name}")).expect("vector file readable");
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string"))
}

#[test]
fn encrypted_data_accept_and_watermark_reject() {
    let v = vector("miniprogram_crypto.json");
    let appid = s(&v, "appid");
    let cases = v["encrypted_data"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for case in cases {
        let out = decrypt_open_data(
            s(case, "session_key"),
            s(case, "iv"),
            s(case, "encryptedData"),
            appid,
        );
        match s(case, "expect") {
            "accept" => {
                let data = out.expect("accepted vector decrypts");
                assert_eq!(data.value, case["decrypted"]);
                assert_eq!(data.watermark.appid, appid);
                let phone = data.phone_info().unwrap();
                assert_eq!(
                    phone.pure_phone_number,
                    case["decrypted"]["purePhoneNumber"]
                );
                assert_eq!(phone.country_code, "86");
            }
            "reject" => {
                let found = case["decrypted"]["watermark"]["appid"].as_str().unwrap();
                assert_eq!(
                    out.unwrap_err(),
                    OpenDataError::WatermarkMismatch {
                        found: found.to_owned()
                    }
                );
            }
            other => panic!("unknown expectation {other}"),
        }
    }
}

#[test]
fn raw_data_signature_vector() {
    let v = vector("miniprogram_crypto.json");
    let r = &v["raw_data_signature"];
    assert!(verify_raw_data_signature(
        s(r, "rawData"),
        s(r, "session_key"),
        s(r, "signature")
    ));
    assert!(!verify_raw_data_signature(
        &format!("{} ", s(r, "rawData")),
        s(r, "session_key"),
        s(r, "signature")
    ));
}

#[test]
fn url_verification_vector() {
    let v = vector("message_push.json");
    let sm = &v["safe_mode"];
    let crypto =
        PushCrypto::new(s(&v, "token"), s(sm, "encoding_aes_key"), s(sm, "appid")).unwrap();
    let query = PushQuery::from_pairs([
        ("signature", s(&v, "signature")),
        ("timestamp", s(&v, "timestamp")),
        ("nonce", s(&v, "nonce")),
        ("echostr", s(&v, "echostr")),
    ]);
    assert_eq!(crypto.verify_url(&query), Ok(s(&v, "echostr")));
    let mut wrong = query.clone();
    wrong.timestamp = Some("1767225601".into());
    assert_eq!(crypto.verify_url(&wrong), Err(PushError::BadSignature));
}

fn safe_mode_query(v: &Value, msg_signature: &str) -> PushQuery {
    PushQuery::from_pairs([
        ("signature", s(v, "signature")),
        ("timestamp", s(v, "timestamp")),
        ("nonce", s(v, "nonce")),
        ("encrypt_type", "aes"),
        ("msg_signature", msg_signature),
    ])
}

#[test]
fn safe_mode_vector_opens_to_typed_media_check() {
    let v = vector("message_push.json");
    let sm = &v["safe_mode"];
    let crypto =
        PushCrypto::new(s(&v, "token"), s(sm, "encoding_aes_key"), s(sm, "appid")).unwrap();
    assert_eq!(
        crypto.msg_signature(s(&v, "timestamp"), s(&v, "nonce"), s(sm, "Encrypt")),
        s(sm, "msg_signature")
    );
    assert_eq!(
        crypto.decrypt(s(sm, "Encrypt")).unwrap(),
        s(sm, "decrypted").as_bytes()
    );

    let json_body =
        serde_json::json!({"ToUserName": "gh_d5f030905faf", "Encrypt": s(sm, "Encrypt")})
            .to_string();
    let xml_body = format!(
        "<xml><ToUserName><![CDATA[gh_d5f030905faf]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        s(sm, "Encrypt")
    );
    let query = safe_mode_query(&v, s(sm, "msg_signature"));
    let opened = crypto.open(&query, json_body.as_bytes()).unwrap();
    assert!(opened.encrypted);
    assert_eq!(opened.format, PushFormat::Json);
    assert_eq!(opened.plaintext, s(sm, "decrypted").as_bytes());
    let PushKind::MediaCheck(result) = &opened.message.kind else {
        panic!(
            "expected a wxa_media_check event, got {:?}",
            opened.message.kind
        )
    };
    assert_eq!(result.trace_id, "nfhVRGKSnhteXdouv5xY5Ql3");
    assert_eq!(result.verdict.suggest, Suggest::Risky);
    assert_eq!(result.verdict.label, 20002);
    assert_eq!(result.detail[0].prob, Some(90));
    assert_eq!(result.appid.as_deref(), Some(s(sm, "appid")));

    // The same ciphertext in an XML envelope opens to the same message; replies use XML.
    let via_xml = crypto.open(&query, xml_body.as_bytes()).unwrap();
    assert_eq!(via_xml.format, PushFormat::Xml);
    assert_eq!(via_xml.message, opened.message);
}

#[test]
fn safe_mode_vector_rejects_bad_msg_signature_and_foreign_appid() {
    let v = vector("message_push.json");
    let sm = &v["safe_mode"];
    let crypto =
        PushCrypto::new(s(&v, "token"), s(sm, "encoding_aes_key"), s(sm, "appid")).unwrap();
    let body = serde_json::json!({"ToUserName": "gh_d5f030905faf", "Encrypt": s(sm, "Encrypt")})
        .to_string();

    // A valid plain `signature` is not enough in safe mode: msg_signature is what counts.
    let bad = safe_mode_query(&v, s(&v, "signature"));
    assert_eq!(
        crypto.open(&bad, body.as_bytes()),
        Err(PushError::BadSignature)
    );
    let mut flipped = s(sm, "msg_signature").to_owned();
    flipped.replace_range(0..1, "6");
    assert_eq!(
        crypto.open(&safe_mode_query(&v, &flipped), body.as_bytes()),
        Err(PushError::BadSignature)
    );

    let foreign = PushCrypto::new(
        s(&v, "token"),
        s(sm, "encoding_aes_key"),
        "wx0000000000000000",
    )
    .unwrap();
    assert_eq!(
        foreign.open(
            &safe_mode_query(&v, s(sm, "msg_signature")),
            body.as_bytes()
        ),
        Err(PushError::AppidMismatch {
            found: s(sm, "appid").to_owned()
        })
    );
}
