//! One person across the Official Account and the Mini Program (`people`).
//!
//! When both apps are bound to one Open Platform account, WeChat gives the same UnionID to a
//! person's follower openid (OA `user/info`) and Mini Program openid (`code2Session`). The
//! first side seen creates the person; the other side, whenever it appears, is merged into it:
//!
//! ```json
//! {"_id": "u:<unionid>", "unionid": "…", "mpOpenid": "…"?, "oaOpenid": "…"?,
//!  "firstSide": "mp" | "oa", "firstSeenAt": 1700000000, "updatedAt": 1700000000}
//! ```
//!
//! [`link`] is one upsert on the deterministic `_id`, with a unique index on `unionid`
//! behind it: two first sightings at once (a follow and a login in the same instant) both
//! land in one document, the loser of the insert race retrying as an update; repeating a
//! sighting changes nothing but `updatedAt`. Users without a UnionID have no person and stay
//! separate (an openid of one side is never matched to the other by anything else).

use serde::{Deserialize, Serialize};

use crate::store::collections::PEOPLE;
use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};

/// Which app an openid belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The Mini Program (`users`).
    Mp,
    /// The Official Account (`followers`).
    Oa,
}

impl Side {
    fn field(self) -> &'static str {
        match self {
            Side::Mp => "mpOpenid",
            Side::Oa => "oaOpenid",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Side::Mp => "mp",
            Side::Oa => "oa",
        }
    }
}

/// A `people` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// `u:<unionid>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The UnionID.
    pub unionid: String,
    /// The Mini Program openid, once seen.
    #[serde(default)]
    pub mp_openid: Option<String>,
    /// The Official Account openid, once seen.
    #[serde(default)]
    pub oa_openid: Option<String>,
    /// The side seen first.
    pub first_side: Side,
    /// When the person was first seen, Unix seconds.
    pub first_seen_at: i64,
}

/// The person id of a UnionID.
pub fn person_id(unionid: &str) -> String {
    format!("u:{unionid}")
}

/// Records that `openid` on `side` belongs to `unionid`, creating or merging the person.
/// Idempotent and safe under concurrency (see the module docs).
///
/// # Errors
/// Store failures; `InvalidQuery` for an empty or oversized unionid.
pub async fn link(
    store: &dyn Store,
    unionid: &str,
    side: Side,
    openid: &str,
    now: i64,
) -> Result<Person, StoreError> {
    if unionid.is_empty() || unionid.len() > 128 || openid.is_empty() {
        return Err(StoreError::InvalidQuery(
            "unionid and openid must be 1-128 characters".into(),
        ));
    }
    let id = person_id(unionid);
    let update = Update::new()
        .set(side.field(), openid)
        .set("updatedAt", now)
        .set_on_insert("unionid", unionid)
        .set_on_insert("firstSide", side.as_str())
        .set_on_insert("firstSeenAt", now);
    let mut attempts = 0;
    loop {
        match store
            .update_one(PEOPLE, &Filter::id(&id), &update, UpdateOptions::upsert())
            .await
        {
            Ok(Some(doc)) => {
                return serde_json::from_value(doc)
                    .map_err(|e| StoreError::Backend(format!("people document: {e}")));
            }
            Ok(None) => return Err(StoreError::Backend("people upsert returned nothing".into())),
            // Two first sightings raced to insert: the loser updates the winner's document.
            Err(StoreError::DuplicateKey { .. }) if attempts < 2 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The person a UnionID belongs to, if seen.
///
/// # Errors
/// Store failures.
pub async fn by_unionid(store: &dyn Store, unionid: &str) -> Result<Option<Person>, StoreError> {
    let Some(doc) = store.get(PEOPLE, &person_id(unionid)).await? else {
        return Ok(None);
    };
    serde_json::from_value(doc)
        .map(Some)
        .map_err(|e| StoreError::Backend(format!("people document: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn either_side_first_then_merged_once() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        crate::store::bootstrap(&store).await.unwrap();
        let p = link(&store, "U1", Side::Oa, "oa-1", 10).await.unwrap();
        assert_eq!(p.first_side, Side::Oa);
        assert!(p.mp_openid.is_none());
        let p = link(&store, "U1", Side::Mp, "mp-1", 20).await.unwrap();
        assert_eq!(p.oa_openid.as_deref(), Some("oa-1"));
        assert_eq!(p.mp_openid.as_deref(), Some("mp-1"));
        assert_eq!(p.first_seen_at, 10);
        // Repeating changes nothing that matters.
        let again = link(&store, "U1", Side::Mp, "mp-1", 30).await.unwrap();
        assert_eq!(again, p);
        assert_eq!(store.count(PEOPLE, &Filter::All).await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_sightings_make_one_person() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        crate::store::bootstrap(a.as_ref()).await.unwrap();
        let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        for round in 0..20 {
            let u = format!("U{round}");
            let (x, y) = tokio::join!(
                link(a.as_ref(), &u, Side::Oa, "oa", round),
                link(b.as_ref(), &u, Side::Mp, "mp", round)
            );
            x.unwrap();
            y.unwrap();
            let p = by_unionid(a.as_ref(), &u).await.unwrap().unwrap();
            assert_eq!(p.oa_openid.as_deref(), Some("oa"));
            assert_eq!(p.mp_openid.as_deref(), Some("mp"));
        }
        assert_eq!(a.count(PEOPLE, &Filter::All).await.unwrap(), 20);
    }
}
