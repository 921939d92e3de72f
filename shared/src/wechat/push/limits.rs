//! Bounds on what a push body may cost before anything in it is trusted.
//!
//! A tree built from a hostile body (an XML element nested a million times, a JSON array
//! likewise) overflows the stack when it is dropped or cloned, so the shape is checked with a
//! linear scan before any `serde_json::Value` exists.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest push body read (WeChat's pushes are a few KiB; the limit leaves ample room).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Deepest nesting read, counting the root: a push needs four (the XML root,
/// `SubscribeMsgPopupEvent`, `List`, and the leaf `TemplateId`); anything deeper is refused.
pub const MAX_DEPTH: usize = 8;

/// How far a push's `timestamp` may be from now. WeChat's documentation does not say whether
/// a retry keeps the first delivery's timestamp; message pushes are retried three times within
/// about 15 s, well inside the window either way. A virtual payment delivery retried later
/// than this (if its timestamp is kept) is refused, and `reconcile` still delivers the order
/// through `query_order`, the fallback WeChat prescribes for lost delivery pushes.
pub const MAX_TIMESTAMP_SKEW_SECS: i64 = 5 * 60;

/// Whether JSON `text` nests objects and arrays deeper than `max` (string contents skipped).
/// Linear, no allocation; malformed text is left for the parser to refuse.
pub(crate) fn json_too_deep(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A JSON object body, its depth checked before it is parsed.
pub(crate) fn json_object(text: &str) -> Result<Map<String, Value>, String> {
    if json_too_deep(text.as_bytes(), MAX_DEPTH) {
        return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("JSON body is not an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The `Encrypt` string of a JSON envelope; other fields are skipped without being kept.
pub(crate) fn json_encrypt(text: &str) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "Encrypt", default)]
        encrypt: Option<String>,
    }
    if json_too_deep(text.as_bytes(), MAX_DEPTH) {
        return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
    }
    serde_json::from_str::<Envelope>(text)
        .map(|e| e.encrypt)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_skips_strings_and_counts_both_brackets() {
        assert!(!json_too_deep(br#"{"a":[{"b":1}]}"#, 3));
        assert!(json_too_deep(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!json_too_deep(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        let deep = "[".repeat(100_000);
        assert!(json_too_deep(deep.as_bytes(), MAX_DEPTH));
        assert!(json_object(&deep).is_err());
    }

    #[test]
    fn envelope_reads_only_encrypt() {
        assert_eq!(
            json_encrypt(r#"{"ToUserName":"gh","Encrypt":"abc","x":{"y":[1]}}"#),
            Ok(Some("abc".into()))
        );
        assert_eq!(json_encrypt(r#"{"ToUserName":"gh"}"#), Ok(None));
        assert!(json_encrypt(r#"{"Encrypt":1}"#).is_err());
        assert!(json_encrypt(&format!("{{\"a\":{}}}", "[".repeat(50))).is_err());
    }
}
