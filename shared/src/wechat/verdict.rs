//! Content-security verdicts shared by `msg_sec_check` (synchronous, text) and the
//! `wxa_media_check` push (asynchronous, images and audio).

use serde_json::Value;

/// WeChat's suggestion for a piece of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suggest {
    /// No problem found: publish.
    Pass,
    /// Uncertain: hold for human review.
    Review,
    /// Violating content: do not publish.
    Risky,
}

impl Suggest {
    /// Parses `pass` / `review` / `risky`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "pass" => Some(Suggest::Pass),
            "review" => Some(Suggest::Review),
            "risky" => Some(Suggest::Risky),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Suggest::Pass => "pass",
            Suggest::Review => "review",
            Suggest::Risky => "risky",
        }
    }
}

/// The overall verdict: suggestion plus the main label (100 normal, 10001 ads, 20001
/// politics, 20002 porn, 20003 abuse, 20006 illegal, 20008 fraud, 20012 vulgar,
/// 20013 copyright, 21000 other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// What to do with the content.
    pub suggest: Suggest,
    /// The main label.
    pub label: i64,
}

/// One strategy's finding (`detail[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDetail {
    /// `content_model`, `keyword`, …
    pub strategy: String,
    /// 0 when this strategy ran fine.
    pub errcode: Option<i64>,
    /// This strategy's suggestion.
    pub suggest: Option<Suggest>,
    /// This strategy's label.
    pub label: Option<i64>,
    /// Confidence 0–100.
    pub prob: Option<i64>,
    /// The matched custom keyword (keyword strategy only).
    pub keyword: Option<String>,
    /// Risk level where given.
    pub level: Option<i64>,
}

/// A string field that WeChat may send as a string or a number.
pub(crate) fn field_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field that WeChat may send as a number or a numeric string (XML, or
/// `"label":"100"` seen in real JSON pushes).
pub(crate) fn field_i64(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads `result{suggest,label}`.
pub(crate) fn parse_verdict(result: &Value) -> Result<Verdict, String> {
    let suggest = field_str(result, "suggest")
        .and_then(|s| Suggest::parse(&s))
        .ok_or("result.suggest missing or unknown")?;
    let label = field_i64(result, "label").ok_or("result.label missing")?;
    Ok(Verdict { suggest, label })
}

/// Reads `detail`, which is an array in JSON and one-or-many elements in XML.
pub(crate) fn parse_details(detail: Option<&Value>) -> Vec<CheckDetail> {
    let items: Vec<&Value> = match detail {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|d| CheckDetail {
            strategy: field_str(d, "strategy").unwrap_or_default(),
            errcode: field_i64(d, "errcode"),
            suggest: field_str(d, "suggest").and_then(|s| Suggest::parse(&s)),
            label: field_i64(d, "label"),
            prob: field_i64(d, "prob"),
            keyword: field_str(d, "keyword").filter(|k| !k.is_empty()),
            level: field_i64(d, "level"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_as_string_or_number() {
        let a = parse_verdict(&json!({"suggest":"pass","label":"100"})).unwrap();
        let b = parse_verdict(&json!({"suggest":"pass","label":100})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.suggest, Suggest::Pass);
        assert!(parse_verdict(&json!({"suggest":"maybe","label":100})).is_err());
        assert!(parse_verdict(&json!({"suggest":"pass"})).is_err());
    }

    #[test]
    fn details_one_or_many() {
        let one = parse_details(Some(
            &json!({"strategy":"keyword","keyword":"x","suggest":"risky"}),
        ));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].keyword.as_deref(), Some("x"));
        assert_eq!(parse_details(Some(&json!([{}, {}]))).len(), 2);
        assert!(parse_details(None).is_empty());
    }
}
