//! Property tests: no v2 XML, v3 notification or virtual payment delivery payload crashes its
//! parser (issue 17, item 2). v3 bodies are signed with a key made here, so the envelope and
//! resource parsers behind the signature check are reached too.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::v2;
use super::v3::server::{PlatformSigner, encrypt_resource};
use super::v3::verify::{SignatureHeaders, Verifier};
use super::v3::{ApiV3Key, RsaSigningKey, notify::parse_notification};
use crate::fuzzing::{JSON_PARTS, cases, glued, hostile_text, nested};

const KEY_ID: &str = "PUB_KEY_ID_0000000000000000000000000000000042";
const NOW: i64 = 1_700_000_000;

struct Platform {
    signer: PlatformSigner,
    verifier: Verifier,
    key: ApiV3Key,
}

fn platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let signing = RsaSigningKey::from_pkcs8_der(der.as_ref()).unwrap();
        let verifier = Verifier::new();
        verifier.add_public_key(KEY_ID, signing.verifying_key().unwrap());
        Platform {
            signer: PlatformSigner::new(KEY_ID, signing),
            verifier,
            key: ApiV3Key::new("0123456789abcdef0123456789abcdef").unwrap(),
        }
    })
}

fn signed(body: &[u8], timestamp: i64) -> SignatureHeaders {
    let headers = platform()
        .signer
        .sign(body, timestamp, "fuzz-nonce")
        .unwrap();
    let pairs = headers.pairs();
    SignatureHeaders::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap()
}

/// A v3 envelope around an encrypted hostile resource.
fn envelope() -> impl Strategy<Value = Vec<u8>> {
    let event = proptest::sample::select(
        &[
            "TRANSACTION.SUCCESS",
            "REFUND.SUCCESS",
            "REFUND.ABNORMAL",
            "OTHER.EVENT",
        ][..],
    );
    (event, hostile_text()).prop_map(|(event, resource)| {
        let enc = encrypt_resource(
            &platform().key,
            "transaction",
            "",
            "0123456789ab",
            &resource,
        )
        .unwrap();
        serde_json::json!({"id": "EV-1", "create_time": "2026-01-01T00:00:00+08:00",
            "resource_type": "encrypt-resource", "event_type": event, "summary": "",
            "resource": enc})
        .to_string()
        .into_bytes()
    })
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Flat v2 XML: hostile text, deep nesting, entity tricks.
    #[test]
    fn fuzz_v2_xml(text in hostile_text()) {
        let text = String::from_utf8_lossy(&text);
        let _ = v2::from_xml(&text);
        let key = v2::ApiV2Key::new("0123456789abcdef0123456789abcdef");
        prop_assert!(v2::parse_notify(&text, &key).is_err());
    }

    /// v3 notifications, signed (envelope and resource parsed) or not.
    #[test]
    fn fuzz_v3_notification(
        body in prop_oneof![hostile_text(), envelope()],
        sign in any::<bool>(),
        ts in prop_oneof![Just(NOW), any::<i64>()],
    ) {
        let p = platform();
        let headers = if sign {
            signed(&body, ts)
        } else {
            SignatureHeaders::from_pairs([
                ("Wechatpay-Timestamp", "1700000000"),
                ("Wechatpay-Nonce", "n"),
                ("Wechatpay-Signature", "AAAA"),
                ("Wechatpay-Serial", KEY_ID),
            ])
            .unwrap()
        };
        let parsed = parse_notification(&p.verifier, &p.key, &headers, &body, NOW);
        if !sign || ts.abs_diff(NOW) > 300 {
            prop_assert!(parsed.is_err());
        }
    }

    /// Virtual payment delivery payloads as wxPush hands them over (any JSON value).
    #[test]
    fn fuzz_xpay_delivery(text in prop_oneof![
        glued(JSON_PARTS),
        nested("{\"GoodsInfo\":", "}", glued(JSON_PARTS)),
    ]) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = super::xpay::parse_goods_deliver_notify(&value);
        }
    }
}
