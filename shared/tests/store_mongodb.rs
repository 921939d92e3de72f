//! The store conformance suite on MongoDB. Runs when `MONGODB_URI` is set (any deployment the
//! driver reaches; each run uses and then drops its own database); otherwise it reports that
//! it was skipped and why.

#![cfg(feature = "mongodb")]

mod store_conformance;

use std::sync::Arc;

use wemint::store::mongo::MongoStore;
use wemint::store::{Store, bootstrap, new_id};

fn mongodb_uri() -> Option<String> {
    match std::env::var("MONGODB_URI") {
        Ok(uri) if !uri.trim().is_empty() => Some(uri),
        _ => {
            eprintln!("skipped: MONGODB_URI not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_mongodb() {
    let Some(uri) = mongodb_uri() else { return };
    let database = format!("wemint_conformance_{}", new_id().to_ascii_lowercase());
    let store = MongoStore::connect(&uri, Some(&database)).await.unwrap();
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    assert_eq!(shared.backend(), "mongodb");
    store_conformance::run_all(Arc::clone(&shared), "mongo").await;
    bootstrap(shared.as_ref()).await.unwrap();
    bootstrap(shared.as_ref()).await.unwrap();
    store.drop_database().await.unwrap();
}
