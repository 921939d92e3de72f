//! The first-cut collections and their indexes, declared at init (idempotent).
//! `docs/collections.md` describes each collection's fields; keep the two in step.

use super::{IndexSpec, Store, StoreError};

/// Every collection wemint uses, with its indexes. Unique indexes are what make the
/// money-path idempotent (one order per `out_trade_no`, one grant per `(openid, sku)`).
pub fn collections() -> Vec<(&'static str, Vec<IndexSpec>)> {
    // Field names are camelCase, like the domain types (`domain::catalog::Product`) that are
    // stored as they serialize.
    vec![
        (
            "users",
            vec![
                IndexSpec::unique(["openid"]),
                IndexSpec::non_unique(["unionid"]),
            ],
        ),
        ("tenants", vec![IndexSpec::non_unique(["ownerOpenid"])]),
        (
            "tenant_members",
            vec![
                IndexSpec::unique(["tenant", "openid"]),
                IndexSpec::non_unique(["openid"]),
            ],
        ),
        ("products", vec![IndexSpec::unique(["sku"])]),
        (
            "orders",
            vec![
                IndexSpec::unique(["outTradeNo"]),
                IndexSpec::unique(["openid", "clientRequestId"]),
                IndexSpec::non_unique(["openid", "createdAt"]),
                IndexSpec::non_unique(["status", "expiresAt"]),
                IndexSpec::non_unique(["status", "createdAt"]),
                IndexSpec::non_unique(["status", "paidAt"]),
            ],
        ),
        (
            "payment_events",
            vec![
                IndexSpec::unique(["eventId"]),
                IndexSpec::non_unique(["outTradeNo"]),
            ],
        ),
        ("entitlements", vec![IndexSpec::unique(["openid", "sku"])]),
        (
            "subscriptions",
            vec![
                IndexSpec::unique(["subscriber"]),
                // The renewal reminder timer looks for periods ending soon.
                IndexSpec::non_unique(["periodEndAt"]),
            ],
        ),
        (
            "refunds",
            vec![
                IndexSpec::non_unique(["orderId"]),
                IndexSpec::non_unique(["status", "attemptedAt"]),
            ],
        ),
        (
            "contents",
            vec![IndexSpec::non_unique(["kind", "publishedAt"])],
        ),
        // Subscribe-message grants (`_id` = `<openid>:<templateId>`, `credits`).
        ("subscribe_grants", vec![IndexSpec::non_unique(["openid"])]),
        // One renewal reminder per subscription and period end (`_id` = `<subscription>@<end>`).
        (
            "renewal_reminders",
            vec![IndexSpec::non_unique(["subscription"])],
        ),
        (
            "posts",
            vec![
                IndexSpec::non_unique(["author", "createdAt"]),
                IndexSpec::non_unique(["status", "createdAt"]),
            ],
        ),
        (
            "moderation_jobs",
            vec![
                IndexSpec::unique(["traceId"]),
                IndexSpec::non_unique(["postId"]),
            ],
        ),
        // `_id` is the openid: one document per Official Account follower.
        (
            "followers",
            vec![IndexSpec::non_unique(["subscribed", "updatedAt"])],
        ),
        ("wechat_tokens", vec![IndexSpec::unique(["appid", "kind"])]),
        (
            "wechat_push_receipts",
            vec![IndexSpec::non_unique(["expiresAt"])],
        ),
        ("rate_limits", vec![IndexSpec::non_unique(["expiresAt"])]),
        // One document per merchant (`_id` = mchid, `lastAt`): the shared throttle of
        // certificate downloads caused by unknown serials.
        ("pay_certificate_downloads", vec![]),
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
        // The first cut of DESIGN.md ("Data"); later issues add more.
        for first_cut in [
            "users",
            "tenants",
            "products",
            "orders",
            "payment_events",
            "entitlements",
            "subscriptions",
            "contents",
            "posts",
            "moderation_jobs",
            "wechat_tokens",
            "rate_limits",
        ] {
            assert!(names.contains(first_cut), "{first_cut} missing");
        }
    }
}
