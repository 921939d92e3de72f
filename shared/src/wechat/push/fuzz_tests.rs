//! Property tests: no push body, plaintext or sealed, JSON or XML, crashes the parser or
//! yields an unbounded tree (issue 17, item 2).

use proptest::prelude::*;

use super::xml::{xml_root_field, xml_to_json};
use super::*;
use crate::fuzzing::{cases, hostile_text, value_depth};

/// Deepest tree a bounded read may yield: [`MAX_DEPTH`] elements, each possibly wrapped in
/// an array when its name repeats.
const TREE_BOUND: usize = 2 * MAX_DEPTH;

const EAK: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn crypto() -> PushCrypto {
    PushCrypto::new("fuzz-token", EAK, "wxfuzz").unwrap()
}

fn stamp() -> Stamp {
    Stamp {
        timestamp: 1_700_000_000,
        nonce: "42".into(),
        random: [7; 16],
    }
}

fn check(opened: &Result<OpenedPush, PushError>) {
    if let Ok(o) = opened {
        assert!(value_depth(&o.message.raw) <= TREE_BOUND);
    }
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Plaintext mode, correctly signed: the body itself is parsed.
    #[test]
    fn fuzz_plaintext_push(body in hostile_text()) {
        let c = crypto();
        let sealed = c.sign_plain_push(&body, 1_700_000_000, "42");
        let opened = c.open(&PushQuery::parse(&sealed.query_string()), &body);
        check(&opened);
        if body.len() > MAX_BODY_BYTES {
            prop_assert!(opened.is_err());
        }
    }

    /// Safe mode with an unchecked envelope: the `Encrypt` lookup runs on raw hostile bytes.
    #[test]
    fn fuzz_safe_mode_envelope(body in hostile_text()) {
        let c = crypto();
        let sealed = c.seal_push(b"{}", PushFormat::Json, "gh", None, &stamp());
        let opened = c.open(&PushQuery::parse(&sealed.query_string()), &body);
        check(&opened);
    }

    /// Safe mode, correctly sealed: the decrypted message is hostile.
    #[test]
    fn fuzz_sealed_push(inner in hostile_text(), xml in any::<bool>()) {
        let c = crypto();
        let format = if xml { PushFormat::Xml } else { PushFormat::Json };
        let sealed = c.seal_push(&inner, format, "gh", Some("o"), &stamp());
        let opened = c.open(&PushQuery::parse(&sealed.query_string()), &sealed.body);
        check(&opened);
    }

    /// The tree builders and the streaming field reader, directly.
    #[test]
    fn fuzz_xml_and_json_readers(text in hostile_text()) {
        let text = String::from_utf8_lossy(&text);
        if let Ok(map) = xml_to_json(&text) {
            prop_assert!(value_depth(&Value::Object(map)) <= TREE_BOUND);
        }
        let _ = xml_root_field(&text, "Encrypt");
        if let Ok(map) = limits::json_object(&text) {
            prop_assert!(value_depth(&Value::Object(map)) <= MAX_DEPTH);
        }
        let _ = limits::json_encrypt(&text);
        for format in [PushFormat::Json, PushFormat::Xml] {
            if let Ok(m) = PushMessage::parse(text.as_bytes(), format) {
                prop_assert!(value_depth(&m.raw) <= TREE_BOUND);
                let _ = m.dedupe_key();
            }
        }
    }

    /// Query strings and timestamps never panic; only a timestamp within the window passes.
    #[test]
    fn fuzz_push_query(raw in ".{0,200}", ts in any::<i64>(), now in any::<i64>()) {
        let _ = PushQuery::parse(&raw);
        let q = PushQuery { timestamp: Some(ts.to_string()), ..PushQuery::default() };
        let fresh = q.check_fresh(now).is_ok();
        prop_assert_eq!(fresh, ts.abs_diff(now) <= 300);
    }
}
