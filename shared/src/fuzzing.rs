//! Shared pieces of the property tests over parsers of untrusted input (tests named `fuzz_*`):
//! the case count, and generators for hostile shapes. `scripts/fuzz.sh` runs the same tests
//! with `PROPTEST_CASES` raised.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// `default` cases (CI), or `PROPTEST_CASES` when set (longer runs).
pub(crate) fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A nesting depth: mostly small, sometimes far beyond any sane document.
pub(crate) fn depth() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..64, 1 => 1_000usize..40_000]
}

/// `open` repeated `depth` times around `inner`, closed fully or only partly.
pub(crate) fn nested(
    open: &'static str,
    close: &'static str,
    inner: impl Strategy<Value = String>,
) -> impl Strategy<Value = String> {
    (depth(), any::<bool>(), inner).prop_map(move |(depth, balanced, inner)| {
        let closes = if balanced { depth } else { depth / 2 };
        format!("{}{inner}{}", open.repeat(depth), close.repeat(closes))
    })
}

/// Text glued from grammar fragments, so most inputs get past the first bytes of a parser.
pub(crate) fn glued(parts: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(parts), 0..48).prop_map(|v| v.concat())
}

/// Fragments of JSON.
pub(crate) const JSON_PARTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\"a\"",
    "\"MsgType\"",
    "\"event\"",
    "\"Event\"",
    "\"Encrypt\"",
    "\"xpay_goods_deliver_notify\"",
    "\"OutTradeNo\"",
    "1",
    "-1",
    "1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "0.5",
    "true",
    "null",
    " ",
    "\n",
    "\u{0}",
    "é",
    "你",
];

/// Fragments of WeChat-style XML.
pub(crate) const XML_PARTS: &[&str] = &[
    "<xml>",
    "</xml>",
    "<a>",
    "</a>",
    "<Encrypt>",
    "</Encrypt>",
    "<MsgType>",
    "</MsgType>",
    "event",
    "<Event>",
    "</Event>",
    "<![CDATA[",
    "]]>",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x110000;",
    "&#65;",
    "&foo;",
    "<!DOCTYPE x [<!ENTITY a \"b\">]>",
    "<?xml version=\"1.0\"?>",
    "<!--",
    "-->",
    "<b/>",
    "<",
    ">",
    "/",
    "\"",
    "'",
    "=",
    " ",
    "x",
    "你",
    "<return_code>",
    "</return_code>",
    "SUCCESS",
    "<sign>",
    "</sign>",
];

/// Arbitrary bytes, text glued from either grammar, or deep nesting of either.
pub(crate) fn hostile_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        glued(JSON_PARTS).prop_map(String::into_bytes),
        glued(XML_PARTS).prop_map(String::into_bytes),
        nested("[", "]", glued(JSON_PARTS)).prop_map(String::into_bytes),
        nested("{\"a\":", "}", glued(JSON_PARTS)).prop_map(String::into_bytes),
        nested("<a>", "</a>", glued(XML_PARTS))
            .prop_map(|s| format!("<xml>{s}</xml>").into_bytes()),
    ]
}

/// Nesting depth of a JSON value, counted without recursion.
pub(crate) fn value_depth(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(d);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(map) => {
                max = max.max(d);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    max
}
