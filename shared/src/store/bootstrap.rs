//! Declares the registry's collections and indexes at init (idempotent), once per registry
//! version: a marker in [`collections::STORE_SCHEMA`] holds the [`collections::fingerprint`]
//! of the registry last declared, so a cold start on a store that is up to date costs one
//! read. (On the CloudBase backend a full declaration is a few requests per collection.)
//! An index dropped by hand is not noticed: `wemint-dev provision` declares everything again.

use serde_json::json;

use super::{Store, StoreError, Update, UpdateOptions, collections};

/// The marker document's id.
const MARKER: &str = "registry";

/// Declares every collection's indexes ([`collections::all`]) unless the store already has
/// this registry's fingerprint. Safe to run at every cold start and from several instances at
/// once (declaring is idempotent; the marker is written after everything is declared).
pub async fn bootstrap(store: &dyn Store) -> Result<(), StoreError> {
    let fingerprint = collections::fingerprint();
    let marker = store.get(collections::STORE_SCHEMA, MARKER).await?;
    if marker.is_some_and(|m| m["fingerprint"] == json!(fingerprint)) {
        return Ok(());
    }
    declare(store).await?;
    store
        .update_one(
            collections::STORE_SCHEMA,
            &super::Filter::id(MARKER),
            &Update::new().set("fingerprint", fingerprint),
            UpdateOptions::upsert(),
        )
        .await?;
    Ok(())
}

/// Declares every collection's indexes, whatever the marker says.
async fn declare(store: &dyn Store) -> Result<(), StoreError> {
    for (name, indexes) in collections::all() {
        if indexes.is_empty() {
            // Nothing to declare: the collection appears with its first document.
            continue;
        }
        store.ensure_indexes(name, &indexes).await?;
    }
    Ok(())
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn assert_current(store: &SqliteStore) {
        let marker = store
            .get(collections::STORE_SCHEMA, MARKER)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(marker["fingerprint"], json!(collections::fingerprint()));
    }

    #[tokio::test]
    async fn a_store_up_to_date_is_not_declared_again() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        bootstrap(&store).await.unwrap();
        assert_current(&store).await;
        // A marker from another registry version: declared again and brought up to date.
        store
            .update_one(
                collections::STORE_SCHEMA,
                &crate::store::Filter::id(MARKER),
                &Update::new().set("fingerprint", "old"),
                UpdateOptions::default(),
            )
            .await
            .unwrap();
        bootstrap(&store).await.unwrap();
        assert_current(&store).await;
    }

    #[test]
    fn the_fingerprint_is_stable_and_short() {
        assert_eq!(collections::fingerprint(), collections::fingerprint());
        assert_eq!(collections::fingerprint().len(), 24);
    }
}
