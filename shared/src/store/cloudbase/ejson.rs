//! Extended JSON (v2) for the CloudBase document database, and the MongoDB query language
//! our typed filters and updates compile to.
//!
//! Requests carry canonical EJSON for every number (`{"$numberLong": "…"}`,
//! `{"$numberDouble": "…"}`), so an integer is stored as `Int64` and stays an exact integer
//! whatever the gateway's JSON parser does with large literals. Responses are strict EJSON and
//! are decoded back to plain JSON. Our documents can never hold a `$`-prefixed field name
//! (see `document.rs`), so any object whose single key is an EJSON type marker is a wrapper,
//! never data.
//!
//! The query shapes are the ones the MongoDB backend sends (`mongo.rs`), so a document
//! database gives filters the same meaning as SQLite: comparisons carry
//! `$not: {$type: "array"}` (arrays compare whole), `ne` is `$nor` of the equality (matches a
//! missing field), `contains` is `$elemMatch: {$eq}`. [`parse_filter`] and [`parse_update`]
//! read these shapes back; the emulator's stand-in uses them.

use serde_json::{Map, Value, json};

use crate::store::filter::Filter;
use crate::store::update::{Update, UpdateOp};
use crate::store::{FindOptions, Order, StoreError};

/// The field every write through the CloudBase backend stamps with a fresh token, so a write
/// whose outcome is unknown can be found again (see the backend's module docs). It is removed
/// from every document read back.
pub const REV_FIELD: &str = "_wemintRev";

/// Plain JSON to canonical EJSON: integers as `$numberLong`, floats as `$numberDouble`.
pub fn encode(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!({ "$numberLong": i.to_string() }),
            None => json!({ "$numberDouble": format!("{:?}", n.as_f64().unwrap_or(f64::NAN)) }),
        },
        Value::Array(items) => Value::Array(items.iter().map(encode).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), encode(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// EJSON (canonical or relaxed) to plain JSON. `$numberInt`/`$numberLong` become integers,
/// `$numberDouble` a float (non-finite values become null: JSON cannot hold them), `$oid`
/// its hex string (as the MongoDB backend reads it); other type wrappers are kept as they are.
pub fn decode(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(decode).collect()),
        Value::Object(map) => {
            if map.len() == 1
                && let Some((key, inner)) = map.iter().next()
                && let Some(plain) = unwrap_type(key, inner)
            {
                return plain;
            }
            Value::Object(map.into_iter().map(|(k, v)| (k, decode(v))).collect())
        }
        other => other,
    }
}

fn unwrap_type(key: &str, inner: &Value) -> Option<Value> {
    let text = inner.as_str();
    match key {
        "$numberInt" | "$numberLong" => text?.parse::<i64>().ok().map(Value::from),
        "$numberDouble" => {
            let f: f64 = text?.parse().ok()?;
            Some(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
        }
        "$oid" => text.map(|s| Value::String(s.to_owned())),
        _ => None,
    }
}

/// A stored document as read back: decoded, without the write token.
pub fn decode_document(value: Value) -> Value {
    let mut doc = decode(value);
    if let Value::Object(map) = &mut doc {
        map.shift_remove(REV_FIELD);
    }
    doc
}

/// The MongoDB query for a validated filter, operands in EJSON.
pub fn filter_query(filter: &Filter) -> Value {
    match filter {
        Filter::All => json!({}),
        Filter::Eq(path, value) => eq(path, value),
        Filter::Ne(path, value) => json!({ "$nor": [eq(path, value)] }),
        Filter::In(_, values) if values.is_empty() => nothing(),
        Filter::In(path, values) => {
            json!({ "$or": values.iter().map(|v| eq(path, v)).collect::<Vec<_>>() })
        }
        Filter::Gt(path, value) => scalar_op(path, "$gt", value),
        Filter::Gte(path, value) => scalar_op(path, "$gte", value),
        Filter::Lt(path, value) => scalar_op(path, "$lt", value),
        Filter::Lte(path, value) => scalar_op(path, "$lte", value),
        Filter::Exists(path, exists) => single(path, json!({ "$exists": exists })),
        Filter::Contains(path, value) => {
            single(path, json!({ "$elemMatch": { "$eq": encode(value) } }))
        }
        Filter::And(list) if list.is_empty() => json!({}),
        Filter::And(list) => json!({ "$and": list.iter().map(filter_query).collect::<Vec<_>>() }),
        Filter::Or(list) if list.is_empty() => nothing(),
        Filter::Or(list) => json!({ "$or": list.iter().map(filter_query).collect::<Vec<_>>() }),
    }
}

/// Matches no document (every document has an `_id`).
fn nothing() -> Value {
    json!({ "_id": { "$in": [] } })
}

fn single(path: &str, condition: Value) -> Value {
    let mut map = Map::new();
    map.insert(path.to_owned(), condition);
    Value::Object(map)
}

/// A comparison that ignores array-valued fields, so arrays compare as whole values.
fn scalar_op(path: &str, op: &str, value: &Value) -> Value {
    let mut condition = Map::new();
    condition.insert(op.to_owned(), encode(value));
    if path != "_id" {
        condition.insert("$not".into(), json!({ "$type": "array" }));
    }
    single(path, Value::Object(condition))
}

fn eq(path: &str, value: &Value) -> Value {
    match value {
        Value::Array(_) => single(path, json!({ "$eq": encode(value), "$type": "array" })),
        _ => scalar_op(path, "$eq", value),
    }
}

/// The MongoDB update document for a validated update, values in EJSON. `extra_set` adds
/// fields to `$set` (the write token); `insert_id` becomes `$setOnInsert._id` (upserts).
pub fn update_document(
    update: &Update,
    extra_set: &[(&str, Value)],
    insert_id: Option<&str>,
) -> Value {
    let mut groups: [(&str, Map<String, Value>); 5] = [
        ("$set", Map::new()),
        ("$unset", Map::new()),
        ("$inc", Map::new()),
        ("$push", Map::new()),
        ("$setOnInsert", Map::new()),
    ];
    for op in update.ops() {
        let (slot, path, value) = match op {
            UpdateOp::Set(p, v) => (0, p, encode(v)),
            UpdateOp::Unset(p) => (1, p, json!("")),
            UpdateOp::Inc(p, by) => (2, p, encode(&Value::from(*by))),
            UpdateOp::Push(p, v) => (3, p, encode(v)),
            UpdateOp::SetOnInsert(p, v) => (4, p, encode(v)),
        };
        groups[slot].1.insert(path.clone(), value);
    }
    for (field, value) in extra_set {
        groups[0].1.insert((*field).to_owned(), encode(value));
    }
    if let Some(id) = insert_id {
        groups[4].1.insert("_id".into(), json!(id));
    }
    Value::Object(
        groups
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(op, m)| (op.to_owned(), Value::Object(m)))
            .collect(),
    )
}

/// The gateway's `order` parameter: the sort keys in order, then `_id` (results are always
/// ordered by `_id` after the given keys).
pub fn order(options: &FindOptions) -> Value {
    let mut keys: Vec<Value> = options
        .sort
        .iter()
        .map(|(path, o)| json!({ "field": path, "direction": direction(*o) }))
        .collect();
    if !options.sort.iter().any(|(p, _)| p == "_id") {
        keys.push(json!({ "field": "_id", "direction": "asc" }));
    }
    Value::Array(keys)
}

fn direction(order: Order) -> &'static str {
    match order {
        Order::Asc => "asc",
        Order::Desc => "desc",
    }
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::InvalidQuery(message.into())
}

/// Reads a decoded MongoDB query back into a [`Filter`]: the shapes [`filter_query`] writes,
/// plus plain equality and the common comparison operators. Anything else is refused.
pub fn parse_filter(query: &Value) -> Result<Filter, StoreError> {
    let Value::Object(map) = query else {
        return Err(bad("a query must be an object"));
    };
    let mut parts = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = value else {
                    return Err(bad(format!("`{key}` takes an array")));
                };
                let list = items
                    .iter()
                    .map(parse_filter)
                    .collect::<Result<Vec<_>, _>>()?;
                parts.push(if key == "$and" {
                    Filter::And(list)
                } else {
                    Filter::Or(list)
                });
            }
            "$nor" => {
                let Some([only]) = value.as_array().map(Vec::as_slice) else {
                    return Err(bad("`$nor` is supported with one equality only"));
                };
                match parse_filter(only)? {
                    Filter::Eq(path, v) => parts.push(Filter::Ne(path, v)),
                    _ => return Err(bad("`$nor` is supported with one equality only")),
                }
            }
            op if op.starts_with('$') => return Err(bad(format!("unsupported operator `{op}`"))),
            path => parts.extend(field_filter(path, value)?),
        }
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Filter::And(parts)
    })
}

fn field_filter(path: &str, value: &Value) -> Result<Vec<Filter>, StoreError> {
    let ops = match value {
        Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => m,
        plain => return Ok(vec![Filter::Eq(path.into(), plain.clone())]),
    };
    let mut out = Vec::new();
    for (op, operand) in ops {
        let p = path.to_owned();
        match op.as_str() {
            // The array guards written by `filter_query`: our semantics already compare
            // arrays whole, so they add nothing once checked.
            "$not" if operand == &json!({ "$type": "array" }) => {}
            "$type" if operand == "array" && ops.get("$eq").is_some_and(Value::is_array) => {}
            "$eq" => out.push(Filter::Eq(p, operand.clone())),
            "$ne" => out.push(Filter::Ne(p, operand.clone())),
            "$gt" => out.push(Filter::Gt(p, operand.clone())),
            "$gte" => out.push(Filter::Gte(p, operand.clone())),
            "$lt" => out.push(Filter::Lt(p, operand.clone())),
            "$lte" => out.push(Filter::Lte(p, operand.clone())),
            "$in" => match operand {
                Value::Array(items) => out.push(Filter::In(p, items.clone())),
                _ => return Err(bad(format!("`$in` on `{path}` takes an array"))),
            },
            "$exists" => match operand {
                Value::Bool(b) => out.push(Filter::Exists(p, *b)),
                _ => return Err(bad(format!("`$exists` on `{path}` takes a boolean"))),
            },
            "$elemMatch" => match operand.as_object() {
                Some(m) if m.len() == 1 && m.contains_key("$eq") => {
                    out.push(Filter::Contains(p, m["$eq"].clone()))
                }
                _ => return Err(bad("`$elemMatch` is supported as `{$eq: value}` only")),
            },
            other => return Err(bad(format!("unsupported operator `{other}` on `{path}`"))),
        }
    }
    if out.is_empty() {
        return Err(bad(format!("no condition on `{path}`")));
    }
    Ok(out)
}

/// Reads a decoded MongoDB update document back into an [`Update`]. A document without
/// operators is a `$set` of its fields (the gateway's documented merge behaviour).
pub fn parse_update(data: &Value) -> Result<Update, StoreError> {
    let Value::Object(map) = data else {
        return Err(StoreError::InvalidUpdate(
            "an update must be an object".into(),
        ));
    };
    if !map.keys().any(|k| k.starts_with('$')) {
        return Ok(map
            .iter()
            .fold(Update::new(), |u, (k, v)| u.set(k, v.clone())));
    }
    let mut update = Update::new();
    for (op, fields) in map {
        let Value::Object(fields) = fields else {
            return Err(StoreError::InvalidUpdate(format!("`{op}` takes an object")));
        };
        for (path, value) in fields {
            update = match op.as_str() {
                "$set" => update.set(path, value.clone()),
                "$unset" => update.unset(path),
                "$inc" => match value.as_i64() {
                    Some(by) => update.inc(path, by),
                    None => {
                        return Err(StoreError::InvalidUpdate(format!(
                            "Cannot increment with non-integer argument on `{path}`"
                        )));
                    }
                },
                "$push" => update.push(path, value.clone()),
                "$setOnInsert" => update.set_on_insert(path, value.clone()),
                other => {
                    return Err(StoreError::InvalidUpdate(format!(
                        "unsupported update operator `{other}`"
                    )));
                }
            };
        }
    }
    Ok(update)
}

/// Reads an `order` parameter back into sort keys.
pub fn parse_order(order: &Value) -> Result<Vec<(String, Order)>, StoreError> {
    let Value::Array(keys) = order else {
        return Err(bad("`order` must be an array"));
    };
    keys.iter()
        .map(|key| {
            let field = key["field"]
                .as_str()
                .ok_or_else(|| bad("`order` entry needs `field`"))?;
            let direction = match key["direction"].as_str() {
                Some("asc") | None => Order::Asc,
                Some("desc") => Order::Desc,
                Some(other) => return Err(bad(format!("bad direction `{other}`"))),
            };
            Ok((field.to_owned(), direction))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_exactly() {
        let big = 9_007_199_254_740_993_i64;
        let value =
            json!({"a": 1, "b": big, "c": 2.0, "d": [1.5, "s", null, true], "e": {"f": -2}});
        let wire = encode(&value);
        assert_eq!(wire["b"], json!({"$numberLong": "9007199254740993"}));
        assert_eq!(wire["c"], json!({"$numberDouble": "2.0"}));
        let back = decode(wire);
        assert_eq!(back, value);
        assert!(back["c"].is_f64(), "a float stays a float");
        assert_eq!(
            decode(json!({"n": {"$numberInt": "7"}, "o": {"$oid": "507f1f77bcf86cd799439011"}})),
            json!({"n": 7, "o": "507f1f77bcf86cd799439011"})
        );
        assert_eq!(decode(json!({"$numberDouble": "Infinity"})), Value::Null);
        let date = json!({"$date": {"$numberLong": "1736929200000"}});
        assert_eq!(decode(date), json!({"$date": 1_736_929_200_000_i64}));
    }

    #[test]
    fn filters_survive_the_wire() {
        let filters = [
            Filter::eq("status", "created")
                .and(Filter::gte("n", 2))
                .and(Filter::ne("x", 1.5)),
            Filter::eq("t", json!([1, {"a": 2}])),
            Filter::eq("n", 1).or(Filter::contains("tags", "x")),
            Filter::exists("a.b", false),
            Filter::id("i").and(Filter::lt("s", "b")),
            Filter::eq("nul", Value::Null),
        ];
        for filter in filters {
            let wire = filter_query(&filter);
            let parsed = parse_filter(&decode(wire)).unwrap();
            assert_eq!(parsed, filter);
        }
        // `in` travels as an `or` of equalities (arrays compare whole there too).
        assert_eq!(
            parse_filter(&decode(filter_query(&Filter::is_in("n", [1, 3])))).unwrap(),
            Filter::eq("n", 1).or(Filter::eq("n", 3))
        );
        assert_eq!(
            parse_filter(&filter_query(&Filter::Or(vec![]))).unwrap(),
            Filter::In("_id".into(), vec![])
        );
        assert!(parse_filter(&json!({"a": {"$regex": "x"}})).is_err());
        assert!(parse_filter(&json!({"$where": "1"})).is_err());
    }

    #[test]
    fn updates_survive_the_wire() {
        let update = Update::new()
            .set("s", "paid")
            .inc("v", 1)
            .unset("u")
            .push("log", json!({"n": 2}))
            .set_on_insert("c", 1);
        let wire = update_document(&update, &[(REV_FIELD, json!("tok"))], Some("id1"));
        assert_eq!(wire["$inc"]["v"], json!({"$numberLong": "1"}));
        assert_eq!(wire["$setOnInsert"]["_id"], "id1");
        let parsed = parse_update(&decode(wire)).unwrap();
        let expected = update.set(REV_FIELD, "tok").set_on_insert("_id", "id1");
        let mut got = parsed.ops().to_vec();
        let mut want = expected.ops().to_vec();
        got.sort_by(|a, b| a.path().cmp(b.path()));
        want.sort_by(|a, b| a.path().cmp(b.path()));
        assert_eq!(got, want);
        assert_eq!(
            parse_update(&json!({"a": 1})).unwrap(),
            Update::new().set("a", 1)
        );
    }

    #[test]
    fn order_appends_id() {
        let o = order(&FindOptions::new().sort_desc("n"));
        assert_eq!(
            o,
            json!([{"field": "n", "direction": "desc"}, {"field": "_id", "direction": "asc"}])
        );
        assert_eq!(
            parse_order(&o).unwrap(),
            vec![("n".into(), Order::Desc), ("_id".into(), Order::Asc)]
        );
    }
}
