//! Document rules shared by every backend: what a document may contain, and `_id` generation.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::StoreError;

/// Maximum nesting depth of a document (MongoDB's BSON limit is 100 levels).
pub const MAX_DEPTH: usize = 100;
/// Maximum size of one document as compact JSON (MongoDB's BSON limit is 16 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Maximum length of an `_id`.
const MAX_ID_BYTES: usize = 512;

/// Crockford base32: URL-safe, no ambiguous letters, and sorts in the same order as the
/// values it encodes.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new document id: 26 characters (ULID layout), 48 bits of milliseconds since the epoch
/// then 80 random bits, so ids sort roughly by creation time and never collide in practice.
pub fn new_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 10];
    // aws-lc's system RNG only fails if the OS has no entropy source, which is not recoverable.
    aws_lc_rs::rand::fill(&mut random).expect("operating system random source");
    id_from_parts(millis, random)
}

/// The id for a given time and random part; [`new_id`] with time and randomness injected.
pub fn id_from_parts(millis: u64, random: [u8; 10]) -> String {
    let mut value: u128 = u128::from(millis & 0xFFFF_FFFF_FFFF) << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (72 - 8 * i);
    }
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// Checks a caller-supplied `_id`.
pub(crate) fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.contains('\0') {
        return Err(StoreError::InvalidDocument(format!(
            "`_id` must be a non-empty string of at most {MAX_ID_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

/// Validates a document for writing and makes sure it carries an `_id`. Returns the `_id`.
pub(crate) fn prepare_insert(doc: &mut Value) -> Result<String, StoreError> {
    let map = doc
        .as_object_mut()
        .ok_or_else(|| StoreError::InvalidDocument("a document must be a JSON object".into()))?;
    let id = match map.get("_id") {
        None => {
            let id = new_id();
            // `_id` first, as MongoDB stores it.
            let mut with_id = Map::with_capacity(map.len() + 1);
            with_id.insert("_id".into(), Value::String(id.clone()));
            with_id.extend(std::mem::take(map));
            *map = with_id;
            id
        }
        Some(Value::String(id)) => id.clone(),
        Some(_) => return Err(StoreError::InvalidDocument("`_id` must be a string".into())),
    };
    check_id(&id)?;
    validate(doc)?;
    Ok(id)
}

/// Validates a whole document: an object, acceptable field names, numbers and nesting, and
/// a compact JSON size within [`MAX_DOCUMENT_BYTES`]. Returns the compact JSON.
pub(crate) fn validate(doc: &Value) -> Result<(), StoreError> {
    let Value::Object(map) = doc else {
        return Err(StoreError::InvalidDocument(
            "a document must be a JSON object".into(),
        ));
    };
    match map.get("_id") {
        Some(Value::String(id)) => check_id(id)?,
        Some(_) => return Err(StoreError::InvalidDocument("`_id` must be a string".into())),
        None => {}
    }
    check_value(doc, 1)
}

/// Serializes a validated document, enforcing the size limit.
pub(crate) fn to_json(doc: &Value) -> Result<String, StoreError> {
    let text =
        serde_json::to_string(doc).map_err(|e| StoreError::InvalidDocument(e.to_string()))?;
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(StoreError::InvalidDocument(format!(
            "document is {} bytes, the limit is {MAX_DOCUMENT_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

/// Checks one value at nesting level `depth` (the top-level document is level 1).
pub(crate) fn check_value(value: &Value, depth: usize) -> Result<(), StoreError> {
    match value {
        Value::Object(map) => {
            check_depth(depth)?;
            for (key, child) in map {
                check_field_name(key)?;
                check_value(child, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            check_depth(depth)?;
            items
                .iter()
                .try_for_each(|child| check_value(child, depth + 1))
        }
        Value::Number(n) => check_number(n),
        Value::String(s) if s.contains('\0') => Err(StoreError::InvalidDocument(
            "strings must not contain NUL".into(),
        )),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

fn check_depth(depth: usize) -> Result<(), StoreError> {
    if depth > MAX_DEPTH {
        return Err(StoreError::InvalidDocument(format!(
            "document nests deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(())
}

/// Integers must fit `i64` (MongoDB `Int64`); `u64` values above `i64::MAX` are refused
/// rather than silently turned into floats.
pub(crate) fn check_number(n: &serde_json::Number) -> Result<(), StoreError> {
    if n.is_i64() || n.is_f64() {
        Ok(())
    } else {
        Err(StoreError::InvalidDocument(format!(
            "number {n} is outside the signed 64-bit integer range"
        )))
    }
}

fn check_field_name(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.starts_with('$') || key.contains('.') || key.contains('\0') {
        return Err(StoreError::InvalidDocument(format!(
            "field name `{key}` is not allowed (empty, starts with `$`, or contains `.` or NUL)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_are_ulid_shaped_and_sort_by_time() {
        assert_eq!(id_from_parts(0, [0; 10]), "00000000000000000000000000");
        assert_eq!(
            id_from_parts(0xFFFF_FFFF_FFFF, [0xFF; 10]),
            "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
        );
        // Known ULID example: 1469918176385 ms -> "01ARYZ6S41".
        assert!(id_from_parts(1_469_918_176_385, [0; 10]).starts_with("01ARYZ6S41"));
        let a = id_from_parts(1000, [0xFF; 10]);
        let b = id_from_parts(1001, [0; 10]);
        assert!(a < b);
        let fresh = new_id();
        assert_eq!(fresh.len(), 26);
        assert_ne!(fresh, new_id());
    }

    #[test]
    fn insert_generates_id_first() {
        let mut doc = json!({"a": 1});
        let id = prepare_insert(&mut doc).unwrap();
        assert_eq!(doc.as_object().unwrap().keys().next().unwrap(), "_id");
        assert_eq!(doc["_id"], json!(id));
    }

    #[test]
    fn rejects_bad_documents() {
        for bad in [
            json!([1]),
            json!({"_id": 5}),
            json!({"_id": ""}),
            json!({"$set": 1}),
            json!({"a.b": 1}),
            json!({"a": {"": 1}}),
            json!({"a": u64::MAX}),
            json!({"a": "x\u{0}y"}),
        ] {
            let mut doc = bad.clone();
            assert!(
                matches!(
                    prepare_insert(&mut doc),
                    Err(StoreError::InvalidDocument(_))
                ),
                "{bad}"
            );
        }
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({ "d": deep });
        }
        assert!(validate(&deep).is_ok());
        assert!(validate(&json!({ "d": deep })).is_err());
    }
}
