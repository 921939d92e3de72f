//! Typed updates (`$set`, `$unset`, `$inc`, `$push`, `$setOnInsert`) and their application to
//! a JSON document, with MongoDB's rules, for backends that update documents themselves.

use serde_json::{Map, Value};

use super::StoreError;
use super::document::check_value;
use super::filter::{Filter, check_path, kind, set_path};

/// One update operator on one path.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOp {
    Set(String, Value),
    Unset(String),
    /// Adds an integer; integers stay exact (`i64`, overflow is an error).
    Inc(String, i64),
    Push(String, Value),
    /// Applied only when an upsert inserts.
    SetOnInsert(String, Value),
}

impl UpdateOp {
    pub fn path(&self) -> &str {
        match self {
            Self::Set(p, _)
            | Self::Unset(p)
            | Self::Inc(p, _)
            | Self::Push(p, _)
            | Self::SetOnInsert(p, _) => p,
        }
    }
}

/// An update: a list of operators, built with chained calls:
/// `Update::new().set("status", "paid").inc("version", 1)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    ops: Vec<UpdateOp>,
}

impl Update {
    pub fn new() -> Self {
        Self::default()
    }

    /// `$set`: sets a field, creating intermediate objects.
    pub fn set(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.ops.push(UpdateOp::Set(path.into(), value.into()));
        self
    }

    /// `$unset`: removes a field (no-op when missing).
    pub fn unset(mut self, path: impl Into<String>) -> Self {
        self.ops.push(UpdateOp::Unset(path.into()));
        self
    }

    /// `$inc`: adds `by` to an integer field (a missing field counts as 0).
    pub fn inc(mut self, path: impl Into<String>, by: i64) -> Self {
        self.ops.push(UpdateOp::Inc(path.into(), by));
        self
    }

    /// `$push`: appends to an array field (a missing field becomes `[value]`).
    pub fn push(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.ops.push(UpdateOp::Push(path.into(), value.into()));
        self
    }

    /// `$setOnInsert`: sets a field only when an upsert inserts a new document.
    pub fn set_on_insert(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.ops
            .push(UpdateOp::SetOnInsert(path.into(), value.into()));
        self
    }

    pub fn ops(&self) -> &[UpdateOp] {
        &self.ops
    }

    /// Rejects empty updates, bad paths and values, `_id` changes, and two operators on the
    /// same or overlapping paths (`a` and `a.b`), as MongoDB does.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.ops.is_empty() {
            return Err(StoreError::InvalidUpdate(
                "an update needs at least one operator".into(),
            ));
        }
        for (i, op) in self.ops.iter().enumerate() {
            let path = op.path();
            check_path(path).map_err(|e| StoreError::InvalidUpdate(e.to_string()))?;
            let is_id = path == "_id" || path.starts_with("_id.");
            match op {
                UpdateOp::SetOnInsert(_, Value::String(id)) if path == "_id" => {
                    super::document::check_id(id)
                        .map_err(|e| StoreError::InvalidUpdate(e.to_string()))?;
                }
                UpdateOp::SetOnInsert(..) if is_id => {
                    return Err(StoreError::InvalidUpdate(
                        "`$setOnInsert` of `_id` takes a string".into(),
                    ));
                }
                _ if is_id => {
                    return Err(StoreError::InvalidUpdate("`_id` cannot be changed".into()));
                }
                UpdateOp::Set(_, v) | UpdateOp::Push(_, v) | UpdateOp::SetOnInsert(_, v) => {
                    check_value(v, 2).map_err(|e| {
                        StoreError::InvalidUpdate(format!("bad value for `{path}`: {e}"))
                    })?;
                }
                UpdateOp::Unset(_) | UpdateOp::Inc(..) => {}
            }
            for other in &self.ops[..i] {
                if overlaps(path, other.path()) {
                    return Err(StoreError::InvalidUpdate(format!(
                        "conflicting update operators on `{}` and `{path}`",
                        other.path()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Applies the update to an existing document (`$setOnInsert` is skipped). On error the
    /// document may be partly changed; callers apply to a copy.
    pub(crate) fn apply(&self, doc: &mut Map<String, Value>) -> Result<(), StoreError> {
        for op in &self.ops {
            match op {
                UpdateOp::Set(path, value) => set_path(doc, path, value.clone())?,
                UpdateOp::Unset(path) => unset_path(doc, path),
                UpdateOp::Inc(path, by) => inc_path(doc, path, *by)?,
                UpdateOp::Push(path, value) => push_path(doc, path, value.clone())?,
                UpdateOp::SetOnInsert(..) => {}
            }
        }
        Ok(())
    }

    /// The document an upsert inserts: the filter's equalities, then the update (with
    /// `$setOnInsert`), then a generated `_id` if none was given.
    pub(crate) fn upsert_document(
        &self,
        filter: &Filter,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut doc = Map::new();
        for (path, value) in filter.equalities() {
            set_path(&mut doc, path, value.clone())?;
        }
        self.apply(&mut doc)?;
        for op in &self.ops {
            if let UpdateOp::SetOnInsert(path, value) = op {
                set_path(&mut doc, path, value.clone())?;
            }
        }
        let id = match doc.shift_remove("_id") {
            Some(Value::String(id)) => id,
            Some(_) => return Err(StoreError::InvalidDocument("`_id` must be a string".into())),
            None => super::new_id(),
        };
        let mut with_id = Map::with_capacity(doc.len() + 1);
        with_id.insert("_id".into(), Value::String(id));
        with_id.extend(doc);
        Ok(with_id)
    }
}

/// Whether one path equals the other or is a prefix of it at a segment boundary.
fn overlaps(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short || (long.starts_with(short) && long.as_bytes()[short.len()] == b'.')
}

/// The parent object of `path`'s last segment, if every step is an object.
fn parent_mut<'a>(
    doc: &'a mut Map<String, Value>,
    path: &'a str,
) -> Option<(&'a mut Map<String, Value>, &'a str)> {
    let (parents, last) = match path.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, path),
    };
    let mut current = doc;
    for segment in parents.into_iter().flat_map(|p| p.split('.')) {
        current = current.get_mut(segment)?.as_object_mut()?;
    }
    Some((current, last))
}

fn unset_path(doc: &mut Map<String, Value>, path: &str) {
    if let Some((parent, last)) = parent_mut(doc, path) {
        parent.shift_remove(last);
    }
}

fn get_path<'a>(doc: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let mut current = doc.get(segments.next()?)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

fn inc_path(doc: &mut Map<String, Value>, path: &str, by: i64) -> Result<(), StoreError> {
    let new_value = match get_path(doc, path) {
        None => Value::from(by),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                let sum = i.checked_add(by).ok_or_else(|| {
                    StoreError::InvalidUpdate(format!(
                        "`$inc` on `{path}` overflows a 64-bit integer"
                    ))
                })?;
                Value::from(sum)
            } else {
                // A float field stays a float, as in MongoDB (double + long = double).
                let f = n.as_f64().unwrap_or(f64::NAN) + by as f64;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        StoreError::InvalidUpdate(format!("`$inc` on `{path}` is not finite"))
                    })?
            }
        }
        Some(other) => {
            return Err(StoreError::InvalidUpdate(format!(
                "cannot apply `$inc` to `{path}`: it holds {}, not a number",
                kind(other)
            )));
        }
    };
    set_path(doc, path, new_value)
}

fn push_path(doc: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), StoreError> {
    match parent_mut(doc, path).and_then(|(parent, last)| parent.get_mut(last)) {
        Some(Value::Array(items)) => {
            items.push(value);
            Ok(())
        }
        Some(other) => Err(StoreError::InvalidUpdate(format!(
            "cannot apply `$push` to `{path}`: it holds {}, not an array",
            kind(other)
        ))),
        None => set_path(doc, path, Value::Array(vec![value])),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn applies_operators() {
        let mut doc =
            obj(json!({"_id": "x", "a": 1, "f": 1.5, "tags": ["t"], "gone": true, "n": {"k": 1}}));
        Update::new()
            .set("n.m.o", "deep")
            .inc("a", 41)
            .inc("f", 1)
            .inc("new", -3)
            .push("tags", "u")
            .push("list", json!({"x": 1}))
            .unset("gone")
            .unset("missing.path")
            .set_on_insert("ignored", 1)
            .apply(&mut doc)
            .unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({"_id": "x", "a": 42, "f": 2.5, "tags": ["t", "u"], "n": {"k": 1, "m": {"o": "deep"}}, "new": -3, "list": [{"x": 1}]})
        );
    }

    #[test]
    fn inc_is_exact_on_large_integers() {
        let mut doc = obj(json!({"a": 9_007_199_254_740_993_i64}));
        Update::new().inc("a", 2).apply(&mut doc).unwrap();
        assert_eq!(doc["a"].as_i64(), Some(9_007_199_254_740_995));
        let mut doc = obj(json!({"a": i64::MAX}));
        assert!(matches!(
            Update::new().inc("a", 1).apply(&mut doc),
            Err(StoreError::InvalidUpdate(_))
        ));
    }

    #[test]
    fn rejects_wrong_types() {
        let doc = obj(json!({"s": "x", "n": 5, "o": {"a": 1}}));
        for update in [
            Update::new().inc("s", 1),
            Update::new().push("n", 1),
            Update::new().set("n.x", 1),
            Update::new().inc("o", 1),
        ] {
            let mut copy = doc.clone();
            assert!(
                matches!(update.apply(&mut copy), Err(StoreError::InvalidUpdate(_))),
                "{update:?}"
            );
        }
    }

    #[test]
    fn validates_shape() {
        assert!(Update::new().validate().is_err());
        assert!(Update::new().set("a", 1).inc("a", 1).validate().is_err());
        assert!(Update::new().set("a", 1).set("a.b", 1).validate().is_err());
        assert!(Update::new().set("a.b", 1).set("a.c", 1).validate().is_ok());
        assert!(Update::new().set("ab", 1).set("a", 1).validate().is_ok());
        assert!(Update::new().set("_id", "x").validate().is_err());
        assert!(Update::new().set_on_insert("_id", "x").validate().is_ok());
        assert!(Update::new().set_on_insert("_id", 5).validate().is_err());
        assert!(
            Update::new()
                .set("a", json!({"$bad": 1}))
                .validate()
                .is_err()
        );
        assert!(Update::new().set("bad path", 1).validate().is_err());
    }

    #[test]
    fn builds_upsert_documents() {
        let filter = Filter::eq("key", "k")
            .and(Filter::eq("scope.tenant", "t"))
            .and(Filter::gt("n", 1));
        let doc = Update::new()
            .inc("count", 1)
            .set_on_insert("created_at", 7)
            .upsert_document(&filter)
            .unwrap();
        assert_eq!(doc.keys().next().unwrap(), "_id");
        assert_eq!(doc["_id"].as_str().unwrap().len(), 26);
        let mut rest = doc.clone();
        rest.shift_remove("_id");
        assert_eq!(
            Value::Object(rest),
            json!({"key": "k", "scope": {"tenant": "t"}, "count": 1, "created_at": 7})
        );
        let doc = Update::new()
            .set("a", 1)
            .upsert_document(&Filter::id("given"))
            .unwrap();
        assert_eq!(Value::Object(doc), json!({"_id": "given", "a": 1}));
    }
}
