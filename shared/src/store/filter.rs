//! Typed filters: built with constructors (`Filter::eq("status", "created")`), never parsed
//! from strings. A raw MongoDB-style JSON filter can be checked and converted with
//! [`Filter::from_json`], which rejects unknown operators.

use serde_json::{Map, Value};

use super::StoreError;
use super::document::{check_number, check_value};

/// Longest accepted dotted path.
const MAX_PATH_BYTES: usize = 256;

/// A condition on documents. Paths are dotted field names (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Matches every document.
    All,
    Eq(String, Value),
    Ne(String, Value),
    In(String, Vec<Value>),
    Gt(String, Value),
    Gte(String, Value),
    Lt(String, Value),
    Lte(String, Value),
    Exists(String, bool),
    /// The field is an array with an element equal to the value (MongoDB `$elemMatch: {$eq}`).
    Contains(String, Value),
    /// Every filter matches (an empty list matches everything).
    And(Vec<Filter>),
    /// At least one filter matches (an empty list matches nothing).
    Or(Vec<Filter>),
}

impl Filter {
    /// Field equals `value`. `eq(path, Value::Null)` matches null or missing.
    pub fn eq(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Eq(path.into(), value.into())
    }

    /// Document `_id` equals `id`.
    pub fn id(id: impl Into<String>) -> Self {
        Self::Eq("_id".into(), Value::String(id.into()))
    }

    /// Field differs from `value` or is missing.
    pub fn ne(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Ne(path.into(), value.into())
    }

    /// Field equals one of `values` (none matches an empty list).
    pub fn is_in<V: Into<Value>>(
        path: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self::In(path.into(), values.into_iter().map(Into::into).collect())
    }

    pub fn gt(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Gt(path.into(), value.into())
    }

    pub fn gte(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Gte(path.into(), value.into())
    }

    pub fn lt(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Lt(path.into(), value.into())
    }

    pub fn lte(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Lte(path.into(), value.into())
    }

    /// Field is present (even if null) when `exists`, absent otherwise.
    pub fn exists(path: impl Into<String>, exists: bool) -> Self {
        Self::Exists(path.into(), exists)
    }

    /// Field is an array holding an element equal to `value` (e.g. a tag).
    pub fn contains(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Contains(path.into(), value.into())
    }

    /// All of `filters`.
    pub fn all_of(filters: impl IntoIterator<Item = Filter>) -> Self {
        Self::And(filters.into_iter().collect())
    }

    /// Any of `filters`.
    pub fn any_of(filters: impl IntoIterator<Item = Filter>) -> Self {
        Self::Or(filters.into_iter().collect())
    }

    /// `self` and `other` (flattens nested ands).
    pub fn and(self, other: Filter) -> Self {
        match self {
            Self::All => other,
            Self::And(mut list) => {
                list.push(other);
                Self::And(list)
            }
            first => Self::And(vec![first, other]),
        }
    }

    /// `self` or `other` (flattens nested ors).
    pub fn or(self, other: Filter) -> Self {
        match self {
            Self::Or(mut list) => {
                list.push(other);
                Self::Or(list)
            }
            first => Self::Or(vec![first, other]),
        }
    }

    /// Converts a MongoDB-style JSON filter (`{"status": "created", "amount": {"$gte": 100},
    /// "$or": [...]}`). Accepts `$eq $ne $in $gt $gte $lt $lte $exists $and $or`; anything
    /// else is an [`StoreError::InvalidQuery`].
    pub fn from_json(json: &Value) -> Result<Self, StoreError> {
        let Value::Object(map) = json else {
            return Err(StoreError::InvalidQuery(
                "a filter must be a JSON object".into(),
            ));
        };
        let mut parts = Vec::new();
        for (key, value) in map {
            match key.as_str() {
                "$and" | "$or" => {
                    let Value::Array(items) = value else {
                        return Err(StoreError::InvalidQuery(format!(
                            "`{key}` takes an array of filters"
                        )));
                    };
                    let list = items
                        .iter()
                        .map(Self::from_json)
                        .collect::<Result<Vec<_>, _>>()?;
                    parts.push(if key == "$and" {
                        Self::And(list)
                    } else {
                        Self::Or(list)
                    });
                }
                op if op.starts_with('$') => {
                    return Err(StoreError::InvalidQuery(format!(
                        "unknown top-level operator `{op}`"
                    )));
                }
                path => parts.extend(field_conditions(path, value)?),
            }
        }
        let filter = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Self::And(parts)
        };
        filter.validate()?;
        Ok(filter)
    }

    /// Checks paths and operand kinds, so a bad filter fails the same way on every backend.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        match self {
            Self::All => Ok(()),
            Self::Eq(path, value) | Self::Ne(path, value) | Self::Contains(path, value) => {
                check_path(path)?;
                check_operand(value)
            }
            Self::In(path, values) => {
                check_path(path)?;
                values.iter().try_for_each(check_operand)
            }
            Self::Gt(path, value)
            | Self::Gte(path, value)
            | Self::Lt(path, value)
            | Self::Lte(path, value) => {
                check_path(path)?;
                match value {
                    Value::Number(n) => {
                        check_number(n).map_err(|e| StoreError::InvalidQuery(e.to_string()))
                    }
                    Value::String(_) => Ok(()),
                    other => Err(StoreError::InvalidQuery(format!(
                        "range comparison on `{path}` needs a number or a string, got {other}"
                    ))),
                }
            }
            Self::Exists(path, _) => check_path(path),
            Self::And(list) | Self::Or(list) => list.iter().try_for_each(Self::validate),
        }
    }

    /// Equality conditions that an upsert copies into the new document: top-level `Eq`s and
    /// those inside top-level `And`s (MongoDB's rule).
    pub(crate) fn equalities(&self) -> Vec<(&str, &Value)> {
        let mut out = Vec::new();
        self.collect_equalities(&mut out);
        out
    }

    fn collect_equalities<'a>(&'a self, out: &mut Vec<(&'a str, &'a Value)>) {
        match self {
            Self::Eq(path, value) => out.push((path, value)),
            Self::And(list) => list.iter().for_each(|f| f.collect_equalities(out)),
            _ => {}
        }
    }
}

/// Conditions on one field of a JSON filter: a plain value (equality) or an operator object.
fn field_conditions(path: &str, value: &Value) -> Result<Vec<Filter>, StoreError> {
    let operators = match value {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => map,
        plain => return Ok(vec![Filter::Eq(path.into(), plain.clone())]),
    };
    if operators.keys().any(|k| !k.starts_with('$')) {
        return Err(StoreError::InvalidQuery(format!(
            "`{path}` mixes operators and field names"
        )));
    }
    operators
        .iter()
        .map(|(op, operand)| field_operator(path, op, operand))
        .collect()
}

fn field_operator(path: &str, op: &str, operand: &Value) -> Result<Filter, StoreError> {
    let p = path.to_owned();
    Ok(match op {
        "$eq" => Filter::Eq(p, operand.clone()),
        "$ne" => Filter::Ne(p, operand.clone()),
        "$gt" => Filter::Gt(p, operand.clone()),
        "$gte" => Filter::Gte(p, operand.clone()),
        "$lt" => Filter::Lt(p, operand.clone()),
        "$lte" => Filter::Lte(p, operand.clone()),
        "$in" => match operand {
            Value::Array(items) => Filter::In(p, items.clone()),
            _ => {
                return Err(StoreError::InvalidQuery(format!(
                    "`$in` on `{path}` takes an array"
                )));
            }
        },
        "$exists" => match operand {
            Value::Bool(b) => Filter::Exists(p, *b),
            _ => {
                return Err(StoreError::InvalidQuery(format!(
                    "`$exists` on `{path}` takes true or false"
                )));
            }
        },
        other => {
            return Err(StoreError::InvalidQuery(format!(
                "unknown operator `{other}` on `{path}`"
            )));
        }
    })
}

/// A value compared for equality must itself be a valid document value (no `$` keys, numbers
/// in range), so a filter can never smuggle an operator in as data.
fn check_operand(value: &Value) -> Result<(), StoreError> {
    check_value(value, 2).map_err(|e| match e {
        StoreError::InvalidDocument(msg) => {
            StoreError::InvalidQuery(format!("bad comparison value: {msg}"))
        }
        other => other,
    })
}

/// A dotted path: segments of letters (any script), digits, `_` or `-`, not starting with a
/// digit or `-`. Positional segments (`items.0`) are not supported. The character set is what
/// lets the SQLite backend put paths in SQL text (needed for expression indexes) safely.
pub(crate) fn check_path(path: &str) -> Result<(), StoreError> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH_BYTES
        && path.split('.').all(|seg| {
            let mut chars = seg.chars();
            chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidQuery(format!(
            "bad field path `{path}`: use dotted names of letters, digits, `_` and `-`, each starting with a letter or `_`"
        )))
    }
}

/// Appends `segment` to an object path, creating objects on the way; used by upsert seeding.
pub(crate) fn set_path(
    doc: &mut Map<String, Value>,
    path: &str,
    value: Value,
) -> Result<(), StoreError> {
    let mut segments = path.split('.').peekable();
    let mut current = doc;
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            current.insert(segment.to_owned(), value);
            return Ok(());
        }
        let next = current
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        current = match next {
            Value::Object(map) => map,
            other => {
                return Err(StoreError::InvalidUpdate(format!(
                    "cannot create field `{path}`: `{segment}` holds {}",
                    kind(other)
                )));
            }
        };
    }
    Ok(())
}

/// A short description of a value's kind, for error messages (never the value itself).
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builders_compose() {
        let f = Filter::eq("status", "created")
            .and(Filter::lt("expires_at", 10))
            .and(Filter::exists("x", true));
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::Eq("status".into(), json!("created")),
                Filter::Lt("expires_at".into(), json!(10)),
                Filter::Exists("x".into(), true),
            ])
        );
        assert_eq!(Filter::All.and(Filter::id("a")), Filter::id("a"));
        assert_eq!(
            Filter::id("a").or(Filter::id("b")).or(Filter::id("c")),
            Filter::any_of([Filter::id("a"), Filter::id("b"), Filter::id("c")])
        );
    }

    #[test]
    fn parses_json_filters() {
        let f = Filter::from_json(&json!({"status": "created", "amount": {"$gte": 1, "$lt": 5}, "$or": [{"a.b": null}, {"c": {"$in": [1, 2]}}]})).unwrap();
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::eq("status", "created"),
                Filter::gte("amount", 1),
                Filter::lt("amount", 5),
                Filter::Or(vec![
                    Filter::eq("a.b", Value::Null),
                    Filter::is_in("c", [1, 2])
                ]),
            ])
        );
        assert_eq!(
            Filter::from_json(&json!({"a": {"b": 1}})).unwrap(),
            Filter::eq("a", json!({"b": 1}))
        );
    }

    #[test]
    fn rejects_bad_json_filters() {
        for bad in [
            json!({"a": {"$regex": "x"}}),
            json!({"$where": "1"}),
            json!({"a": {"$in": 3}}),
            json!({"a": {"$exists": 1}}),
            json!({"a": {"$gt": 1, "b": 2}}),
            json!({"a": {"$gt": true}}),
            json!({"$or": {}}),
            json!({"bad path!": 1}),
            json!({"a": {"$eq": {"$x": 1}}}),
            json!([]),
        ] {
            assert!(
                matches!(Filter::from_json(&bad), Err(StoreError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_are_checked() {
        for good in ["a", "_id", "buyer.openid", "名字.子", "a-b_c9"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a..b", ".a", "a.", "items.0", "a'b", "a\"b", "$a", "a b", "-a",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn collects_upsert_equalities() {
        let f = Filter::eq("a", 1)
            .and(Filter::gt("b", 2))
            .and(Filter::eq("c.d", "x").or(Filter::eq("e", 1)));
        assert_eq!(f.equalities(), vec![("a", &json!(1))]);
    }
}
