//! The collections registry: every collection wemint stores, one constant per collection, and
//! the indexes [`super::bootstrap()`] declares for it. Nothing else in the workspace spells a
//! collection name (`scripts/check-collections.sh` fails CI on a collection-name string literal
//! anywhere else); `docs/collections.md` describes each collection's fields and is kept in step
//! with this file.
//!
//! It lives in `store` (not at the top of the crate) because bootstrap reads it and it is built
//! from [`IndexSpec`]: a top-level module would import `store` and be imported back by it.
//!
//! Unique indexes are what make the money path idempotent (one order per `outTradeNo`, one
//! grant per `(openid, sku)`). Field names are camelCase, like the domain types
//! (`domain::catalog::Product`) that are stored as they serialize.

use super::IndexSpec;

/// Mini Program users, `_id` = openid (owned by login, `wemint::identity::User`).
pub const USERS: &str = "users";
/// SaaS tenants (teams), `wemint::tenancy::Tenant`.
pub const TENANTS: &str = "tenants";
/// Tenant memberships, `_id` = `<tenant>:<openid>`.
pub const TENANT_MEMBERS: &str = "tenant_members";
/// The catalog, `_id` = sku.
pub const PRODUCTS: &str = "products";
/// Subscription plans, `_id` = plan id (imported with the catalog).
pub const PLANS: &str = "plans";
/// Orders, `_id` = order id.
pub const ORDERS: &str = "orders";
/// Every verified payment notification, delivery push or query result, `_id` = event id.
pub const PAYMENT_EVENTS: &str = "payment_events";
/// What users own, `_id` = `<openid>:<sku>` (coins: `<openid>:coins`).
pub const ENTITLEMENTS: &str = "entitlements";
/// Subscriptions, `_id` = subscriber (the openid, or `tenant:<tenantId>`); owned by
/// `wemint::subscriptions`.
pub const SUBSCRIPTIONS: &str = "subscriptions";
/// Team trials claimed, `_id` = `owner:<openid>`: one per person, whatever the tenant.
pub const TRIAL_CLAIMS: &str = "trial_claims";
/// Refunds, `_id` = refund number.
pub const REFUNDS: &str = "refunds";
/// Paywalled content, `_id` = content id.
pub const CONTENTS: &str = "contents";
/// Subscribe-message grants, `_id` = `<openid>:<templateId>`; owned by
/// `wemint::wechat::subscribe_grants`.
pub const SUBSCRIBE_GRANTS: &str = "subscribe_grants";
/// One renewal reminder per subscription and period end, `_id` = `<subscription>@<end>`.
pub const RENEWAL_REMINDERS: &str = "renewal_reminders";
/// User posts (ugcUpload).
pub const POSTS: &str = "posts";
/// Asynchronous media checks waiting for their push result.
pub const MODERATION_JOBS: &str = "moderation_jobs";
/// Official Account followers, `_id` = openid (wxPush).
pub const FOLLOWERS: &str = "followers";
/// Shared access-token cache and refresh lease, `_id` = `<appid>:<kind>`.
pub const WECHAT_TOKENS: &str = "wechat_tokens";
/// Pushes already handled, `_id` = SHA-256 of the push's dedupe key.
pub const WECHAT_PUSH_RECEIPTS: &str = "wechat_push_receipts";
/// Fixed-window rate-limit counters (`wemint::ratelimit`).
pub const RATE_LIMITS: &str = "rate_limits";
/// One document per merchant (`_id` = mchid, `lastAt`): the throttle, shared by every
/// instance, of certificate downloads caused by unknown `Wechatpay-Serial`s.
pub const PAY_CERTIFICATE_DOWNLOADS: &str = "pay_certificate_downloads";
/// The ordered event stream tailed by `realtime` (`wemint::events`): `seq` numbers it
/// without gaps, `key` publishes each fact once.
pub const EVENTS: &str = "events";
/// One shared notes document per tenant, `_id` = tenant id (`wemint::notes`).
pub const TENANT_NOTES: &str = "tenant_notes";

/// Every collection with its indexes, in the order bootstrap declares them. Collections with
/// no index of their own (`plans`, `trial_claims`, `pay_certificate_downloads`) are listed too, so this is the whole list.
pub fn all() -> Vec<(&'static str, Vec<IndexSpec>)> {
    vec![
        (
            USERS,
            vec![
                IndexSpec::unique(["openid"]),
                IndexSpec::non_unique(["unionid"]),
            ],
        ),
        (TENANTS, vec![IndexSpec::non_unique(["ownerOpenid"])]),
        (
            TENANT_MEMBERS,
            vec![
                IndexSpec::unique(["tenant", "openid"]),
                IndexSpec::non_unique(["openid"]),
            ],
        ),
        (PRODUCTS, vec![IndexSpec::unique(["sku"])]),
        (PLANS, vec![]),
        (
            ORDERS,
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
            PAYMENT_EVENTS,
            vec![
                IndexSpec::unique(["eventId"]),
                IndexSpec::non_unique(["outTradeNo"]),
            ],
        ),
        (ENTITLEMENTS, vec![IndexSpec::unique(["openid", "sku"])]),
        (
            SUBSCRIPTIONS,
            vec![
                IndexSpec::unique(["subscriber"]),
                // The renewal reminder timer looks for periods ending soon.
                IndexSpec::non_unique(["periodEndAt"]),
            ],
        ),
        (TRIAL_CLAIMS, vec![]),
        (
            REFUNDS,
            vec![
                IndexSpec::non_unique(["orderId"]),
                IndexSpec::non_unique(["status", "attemptedAt"]),
            ],
        ),
        (
            CONTENTS,
            vec![IndexSpec::non_unique(["kind", "publishedAt"])],
        ),
        (SUBSCRIBE_GRANTS, vec![IndexSpec::non_unique(["openid"])]),
        (
            RENEWAL_REMINDERS,
            vec![IndexSpec::non_unique(["subscription"])],
        ),
        (
            POSTS,
            vec![
                IndexSpec::non_unique(["author", "createdAt"]),
                IndexSpec::non_unique(["status", "createdAt"]),
            ],
        ),
        (
            MODERATION_JOBS,
            vec![
                IndexSpec::unique(["traceId"]),
                IndexSpec::non_unique(["postId"]),
            ],
        ),
        (
            FOLLOWERS,
            vec![IndexSpec::non_unique(["subscribed", "updatedAt"])],
        ),
        (WECHAT_TOKENS, vec![IndexSpec::unique(["appid", "kind"])]),
        (
            WECHAT_PUSH_RECEIPTS,
            vec![IndexSpec::non_unique(["expiresAt"])],
        ),
        (RATE_LIMITS, vec![IndexSpec::non_unique(["expiresAt"])]),
        (PAY_CERTIFICATE_DOWNLOADS, vec![]),
        (
            EVENTS,
            vec![
                IndexSpec::unique(["seq"]),
                IndexSpec::unique(["key"]),
                IndexSpec::non_unique(["expiresAt"]),
            ],
        ),
        (TENANT_NOTES, vec![]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_valid_and_unique() {
        let mut names = std::collections::HashSet::new();
        for (collection, indexes) in all() {
            assert!(super::super::check_collection(collection).is_ok());
            assert!(names.insert(collection), "{collection} declared twice");
            for index in indexes {
                index.validate().unwrap();
            }
        }
        // The first cut of the design ("Data"); later issues add more.
        for first_cut in [
            USERS,
            TENANTS,
            PRODUCTS,
            ORDERS,
            PAYMENT_EVENTS,
            ENTITLEMENTS,
            SUBSCRIPTIONS,
            CONTENTS,
            POSTS,
            MODERATION_JOBS,
            WECHAT_TOKENS,
            RATE_LIMITS,
        ] {
            assert!(names.contains(first_cut), "{first_cut} missing");
        }
    }
}
