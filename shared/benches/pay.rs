//! WeChat Pay crypto throughput: RSA-2048 PKCS#1 v1.5 SHA-256 sign (requests, paySign),
//! verify (responses), and a full notification verify + AES-256-GCM decrypt + typed parse.
//!
//! `cargo bench -p wemint --bench pay` (add `-- --quick` for 1 s per case instead of 3 s).
//! Compare with `openssl speed -seconds 3 rsa2048` on the same machine (docs/pay.md).
//! Inputs are the test vectors in `testdata/vectors`, so the measured work is exactly production's.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::Value;
use wemint::pay::v3::sign::request_message;
use wemint::pay::v3::verify::response_message;
use wemint::pay::v3::{
    ApiV3Key, PlatformCertificate, RsaSigningKey, SignatureHeaders, Verifier, VerifyingKey,
    parse_notification,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{VECTORS}{name}")).expect("vector file")
}

/// Run `op` repeatedly for `budget`, report operations per second and µs per operation.
fn measure(label: &str, budget: Duration, mut op: impl FnMut()) -> f64 {
    for _ in 0..20 {
        op();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            op();
        }
        n += 16;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    println!(
        "{label:<52} {n:>8} ops in {secs:>5.2}s  {rate:>10.1} ops/s  {:>8.1} µs/op",
        1e6 / rate
    );
    rate
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_secs(if quick { 1 } else { 3 });

    let merchant =
        RsaSigningKey::from_pkcs8(&read("keys/merchant_private_key.pem")).expect("merchant key");
    let signing: Value = serde_json::from_str(&read("request_signing.json")).expect("json");
    let case = &signing["cases"][0];
    let message = request_message(
        case["method"].as_str().unwrap_or_default(),
        case["url"].as_str().unwrap_or_default(),
        case["timestamp"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or_default(),
        case["nonce_str"].as_str().unwrap_or_default(),
        case["body"].as_str().unwrap_or_default().as_bytes(),
    );
    println!(
        "wemint pay bench (aws-lc-rs), message {} bytes",
        message.len()
    );
    measure("rsa2048 sign (request Authorization)", budget, || {
        black_box(merchant.sign_base64(black_box(&message)).expect("sign"));
    });

    let notes: Value = serde_json::from_str(&read("notifications.json")).expect("json");
    let cert = PlatformCertificate::from_pem(&read("keys/platform_certificate.pem")).expect("cert");
    let accept = &notes["cases"][0];
    let h = &accept["headers"];
    let body = accept["body"]
        .as_str()
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    let sig = base64_decode(h["Wechatpay-Signature"].as_str().unwrap_or_default());
    let verify_msg = response_message(
        h["Wechatpay-Timestamp"].as_str().unwrap_or_default(),
        h["Wechatpay-Nonce"].as_str().unwrap_or_default(),
        &body,
    );
    let key: VerifyingKey = cert.key.clone();
    assert!(key.verify(&verify_msg, &sig), "vector must verify");
    measure("rsa2048 verify (raw, notification message)", budget, || {
        black_box(key.verify(black_box(&verify_msg), black_box(&sig)));
    });

    let verifier = Verifier::new();
    verifier.add_certificate(cert);
    verifier.add_public_key(
        notes["public_key_id"].as_str().unwrap_or_default(),
        VerifyingKey::from_pem(&read("keys/wechatpay_public_key.pem")).expect("public key"),
    );
    let apiv3 = ApiV3Key::new(notes["apiv3_key"].as_str().unwrap_or_default()).expect("apiv3 key");
    let pairs: Vec<(String, String)> = h
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let at = accept["verify_at_unix"].as_i64().unwrap_or_default();
    measure("notification headers+verify+decrypt+parse", budget, || {
        let headers =
            SignatureHeaders::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .expect("headers");
        black_box(
            parse_notification(&verifier, &apiv3, &headers, black_box(&body), at).expect("accept"),
        );
    });

    let resource: Value = serde_json::from_slice(&body).expect("envelope");
    let r = &resource["resource"];
    let (nonce, aad, ct) = (
        r["nonce"].as_str().unwrap_or_default().to_owned(),
        r["associated_data"].as_str().unwrap_or_default().to_owned(),
        r["ciphertext"].as_str().unwrap_or_default().to_owned(),
    );
    measure("AES-256-GCM resource decrypt only", budget, || {
        black_box(
            apiv3
                .decrypt(&nonce, &aad, black_box(&ct))
                .expect("decrypt"),
        );
    });
    measure(
        "merchant key parse (PKCS#8 PEM, once per process)",
        budget / 3,
        || {
            black_box(
                RsaSigningKey::from_pkcs8(&read("keys/merchant_private_key.pem")).expect("key"),
            );
        },
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}
