//! Declares the registry's collections and indexes at init (idempotent).

use super::{Store, StoreError, collections};

/// Declares every collection's indexes ([`collections::all`]). Safe to run at every cold start
/// and from several instances at once.
pub async fn bootstrap(store: &dyn Store) -> Result<(), StoreError> {
    for (name, indexes) in collections::all() {
        if indexes.is_empty() {
            // Nothing to declare: the collection appears with its first document.
            continue;
        }
        store.ensure_indexes(name, &indexes).await?;
    }
    Ok(())
}
