//! Every WeChat Pay vector in `testdata/vectors`, read as it is (made by an independent
//! implementation and cross-checked with a third-party SDK).

use serde_json::Value;
use wemint::pay::v3::certs::{CertificatesResponse, decrypt_certificate_pem};
use wemint::pay::v3::server::MerchantIdentity;
use wemint::pay::v3::sign::{pay_sign_message, request_message};
use wemint::pay::v3::{
    ApiV3Key, MerchantSigner, Notification, NotifyError, PlatformCertificate, RefundEvent,
    RefundStatus, RsaSigningKey, SignatureHeaders, TradeState, Verifier, VerifyError, VerifyingKey,
    decrypt_certificates, parse_notification,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{VECTORS}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&read(name)).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string {k}"))
}

fn merchant_signer() -> MerchantSigner {
    let common = json("common.json");
    let key = RsaSigningKey::from_pkcs8(&read("keys/merchant_private_key.pem")).unwrap();
    MerchantSigner::new(s(&common, "mchid"), s(&common, "merchant_serial_no"), key)
}

#[test]
fn request_signing_vectors() {
    let v = json("request_signing.json");
    let common = json("common.json");
    let signer = merchant_signer();
    let merchant = MerchantIdentity::from_pem(
        s(&common, "mchid"),
        s(&common, "merchant_serial_no"),
        &read("keys/merchant_public_key.pem"),
    )
    .unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let ts: i64 = s(case, "timestamp").parse().unwrap();
        let (method, url, nonce, body) = (
            s(case, "method"),
            s(case, "url"),
            s(case, "nonce_str"),
            s(case, "body"),
        );
        assert_eq!(
            request_message(method, url, ts, nonce, body.as_bytes()),
            s(case, "message").as_bytes()
        );
        assert_eq!(
            signer
                .sign_request(method, url, ts, nonce, body.as_bytes())
                .unwrap(),
            s(case, "signature")
        );
        let auth = signer
            .authorization(method, url, ts, nonce, body.as_bytes())
            .unwrap();
        assert_eq!(auth, s(case, "authorization"));
        // The server side accepts it with the merchant public key, and refuses a changed body.
        merchant
            .verify_request(&auth, method, url, body.as_bytes(), ts + 10)
            .unwrap();
        assert!(
            merchant
                .verify_request(&auth, method, url, b"{}", ts)
                .is_err()
        );
        assert!(
            merchant
                .verify_request(&auth, method, url, body.as_bytes(), ts + 301)
                .is_err()
        );
    }
}

#[test]
fn pay_sign_vectors() {
    let v = json("pay_sign.json");
    let signer = merchant_signer();
    for case in v["cases"].as_array().unwrap() {
        let (app_id, ts, nonce, package) = (
            s(case, "appId"),
            s(case, "timeStamp"),
            s(case, "nonceStr"),
            s(case, "package"),
        );
        assert_eq!(
            pay_sign_message(app_id, ts, nonce, package),
            s(case, "message")
        );
        let prepay_id = package.strip_prefix("prepay_id=").unwrap();
        let params = signer
            .request_payment(app_id, prepay_id, ts.parse().unwrap(), nonce)
            .unwrap();
        assert_eq!(params.pay_sign, s(case, "paySign"));
        assert_eq!(params.package, package);
        assert_eq!(params.sign_type, s(case, "signType"));
        assert_eq!(params.time_stamp, ts);
        let js = serde_json::to_value(&params).unwrap();
        assert_eq!(js["paySign"], case["paySign"]);
        assert_eq!(js["timeStamp"], case["timeStamp"]);
        assert_eq!(js["nonceStr"], case["nonceStr"]);
    }
}

fn notification_verifier(v: &Value) -> Verifier {
    let verifier = Verifier::new();
    let cert = PlatformCertificate::from_pem(&read(s(v, "platform_certificate"))).unwrap();
    assert_eq!(cert.serial_no, s(v, "platform_serial"));
    verifier.add_certificate(cert);
    verifier.add_public_key(
        s(v, "public_key_id"),
        VerifyingKey::from_pem(&read(s(v, "public_key"))).unwrap(),
    );
    verifier
}

fn headers_of(case: &Value) -> SignatureHeaders {
    let pairs: Vec<(String, String)> = case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    SignatureHeaders::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap()
}

#[test]
fn notification_vectors() {
    let v = json("notifications.json");
    assert_eq!(v["timestamp_tolerance_s"], 300);
    let verifier = notification_verifier(&v);
    let key = ApiV3Key::new(s(&v, "apiv3_key")).unwrap();
    let mut accepted = 0;
    let mut rejected = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = s(case, "case");
        let headers = headers_of(case);
        let now = case["verify_at_unix"].as_i64().unwrap();
        let result = parse_notification(&verifier, &key, &headers, s(case, "body").as_bytes(), now);
        match s(case, "expect") {
            "accept" => {
                accepted += 1;
                let n = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let expected = &case["decrypted"];
                match &n {
                    Notification::TransactionSuccess { transaction, .. } => {
                        assert_eq!(
                            serde_json::to_value(transaction).unwrap(),
                            *expected,
                            "{name}"
                        );
                        assert_eq!(transaction.trade_state, TradeState::Success);
                        assert_eq!(transaction.amount.as_ref().unwrap().total, Some(1990));
                    }
                    Notification::Refund { event, refund, .. } => {
                        assert_eq!(*event, RefundEvent::Success);
                        assert_eq!(refund.refund_status, RefundStatus::Success);
                        assert_eq!(refund.out_refund_no, s(expected, "out_refund_no"));
                        assert_eq!(
                            refund.amount.refund,
                            expected["amount"]["refund"].as_i64().unwrap()
                        );
                        assert_eq!(
                            refund.user_received_account.as_deref(),
                            expected["user_received_account"].as_str()
                        );
                    }
                    Notification::Other { .. } => panic!("{name}: untyped"),
                }
                let body: Value = serde_json::from_str(s(case, "body")).unwrap();
                assert_eq!(n.id(), s(&body, "id"));
            }
            "reject" => {
                rejected += 1;
                let err = result.expect_err(name);
                let ok = match name {
                    "forged_signature" | "tampered_body" => {
                        matches!(err, NotifyError::Verify(VerifyError::BadSignature))
                    }
                    "tampered_ciphertext" | "wrong_associated_data" => {
                        matches!(err, NotifyError::Decrypt(_))
                    }
                    "stale_timestamp" | "future_timestamp" => {
                        matches!(
                            err,
                            NotifyError::Verify(VerifyError::TimestampOutOfWindow { .. })
                        )
                    }
                    "unknown_serial" => {
                        matches!(err, NotifyError::Verify(VerifyError::UnknownSerial(_)))
                    }
                    "probe_signature" => {
                        matches!(err, NotifyError::Verify(VerifyError::SignatureEncoding))
                    }
                    _ => true,
                };
                assert!(ok, "{name}: unexpected error {err:?}");
            }
            other => panic!("unknown expectation {other}"),
        }
    }
    assert_eq!((accepted, rejected), (3, 8));
}

#[test]
fn notification_accept_cases_fail_outside_the_window() {
    let v = json("notifications.json");
    let verifier = notification_verifier(&v);
    let key = ApiV3Key::new(s(&v, "apiv3_key")).unwrap();
    let case = &v["cases"][0];
    let headers = headers_of(case);
    let at = case["verify_at_unix"].as_i64().unwrap();
    let body = s(case, "body").as_bytes();
    assert!(parse_notification(&verifier, &key, &headers, body, at + 300).is_ok());
    assert!(parse_notification(&verifier, &key, &headers, body, at + 301).is_err());
    // Without the certificate the same notification is refused.
    let only_pubkey = Verifier::new();
    only_pubkey.add_public_key(
        s(&v, "public_key_id"),
        VerifyingKey::from_pem(&read(s(&v, "public_key"))).unwrap(),
    );
    assert!(matches!(
        parse_notification(&only_pubkey, &key, &headers, body, at),
        Err(NotifyError::Verify(VerifyError::UnknownSerial(_)))
    ));
    // A wrong APIv3 key fails at decryption, after the signature passed.
    let wrong = ApiV3Key::new("0123456789abcdef0123456789abcdef").unwrap();
    assert!(matches!(
        parse_notification(&verifier, &wrong, &headers, body, at),
        Err(NotifyError::Decrypt(_))
    ));
}

#[test]
fn certificates_response_vector() {
    let v = json("certificates_response.json");
    let key = ApiV3Key::new(s(&v, "apiv3_key")).unwrap();
    let response: CertificatesResponse = serde_json::from_value(v["response"].clone()).unwrap();
    assert_eq!(
        decrypt_certificate_pem(&key, &response.data[0]).unwrap(),
        s(&v, "expected_certificate_pem")
    );
    let body = serde_json::to_vec(&v["response"]).unwrap();
    let certs = decrypt_certificates(&key, &body).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].serial_no, "F642AC69E590FB94938D64B6329D6CB7");
    // The validity window is the listed effective_time .. expire_time.
    let rfc3339 = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    let entry = &v["response"]["data"][0];
    assert_eq!(certs[0].not_before, rfc3339(s(entry, "effective_time")));
    assert_eq!(certs[0].not_after, rfc3339(s(entry, "expire_time")));
    assert!(!certs[0].is_valid_at(certs[0].not_before - 1));
    assert!(!certs[0].is_valid_at(certs[0].not_after + 1));
    // The decrypted certificate is the one on file.
    let on_file = PlatformCertificate::from_pem(&read("keys/platform_certificate.pem")).unwrap();
    assert_eq!(on_file.serial_no, certs[0].serial_no);
    let wrong = ApiV3Key::new("0123456789abcdef0123456789abcdef").unwrap();
    assert!(decrypt_certificates(&wrong, &body).is_err());
}
