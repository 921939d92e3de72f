//! The first-cut collections and their indexes, declared at init (idempotent).
//! `docs/collections.md` describes each collection's fields; keep the two in step.

use super::{IndexSpec, Store, StoreError};

/// Every collection wemint uses, with its indexes. Unique indexes are what make the
/// money-path idempotent (one order per `out_trade_no`, one grant per `(openid, sku)`).
pub fn collections() -> Vec<(&'static str, Vec<IndexSpec>)> {
    vec![
        (
            "users",
            vec![
                IndexSpec::unique(["openid"]),
                IndexSpec::non_unique(["unionid"]),
                IndexSpec::non_unique(["tenant"]),
            ],
        ),
        (
            "tenants",
            vec![
                IndexSpec::unique(["slug"]),
                IndexSpec::non_unique(["owner_openid"]),
            ],
        ),
        ("products", vec![IndexSpec::unique(["sku"])]),
        (
            "orders",
            vec![
                IndexSpec::unique(["out_trade_no"]),
                IndexSpec::unique(["owner", "client_request_id"]),
                IndexSpec::non_unique(["owner", "created_at"]),
                IndexSpec::non_unique(["status", "expires_at"]),
            ],
        ),
        (
            "payment_events",
            vec![
                IndexSpec::unique(["event_id"]),
                IndexSpec::non_unique(["out_trade_no"]),
            ],
        ),
        ("entitlements", vec![IndexSpec::unique(["openid", "sku"])]),
        (
            "subscriptions",
            vec![
                IndexSpec::unique(["owner", "plan"]),
                IndexSpec::non_unique(["status", "current_period_end"]),
            ],
        ),
        (
            "contents",
            vec![
                IndexSpec::unique(["slug"]),
                IndexSpec::non_unique(["status", "published_at"]),
            ],
        ),
        (
            "posts",
            vec![
                IndexSpec::unique(["trace_id"]),
                IndexSpec::non_unique(["author", "created_at"]),
            ],
        ),
        (
            "moderation_jobs",
            vec![
                IndexSpec::unique(["trace_id"]),
                IndexSpec::non_unique(["status", "created_at"]),
            ],
        ),
        ("wechat_tokens", vec![IndexSpec::unique(["appid", "kind"])]),
        (
            "rate_limits",
            vec![
                IndexSpec::unique(["key"]),
                IndexSpec::non_unique(["expires_at"]),
            ],
        ),
    ]
}

/// Declares every collection's indexes. Safe to run at every cold start and from several
/// instances at once.
pub async fn bootstrap(store: &dyn Store) -> Result<(), StoreError> {
    for (name, indexes) in collections() {
        store.ensure_indexes(name, &indexes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_valid_and_unique() {
        let mut names = std::collections::HashSet::new();
        for (collection, indexes) in collections() {
            assert!(super::super::check_collection(collection).is_ok());
            assert!(names.insert(collection), "{collection} declared twice");
            for index in indexes {
                index.validate().unwrap();
            }
        }
        assert_eq!(names.len(), 12);
    }
}
