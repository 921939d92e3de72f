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
/// Consumer complaints (WeChat Pay and virtual payment), `_id` = complaint id; owned by
/// `wemint::complaints`.
pub const COMPLAINTS: &str = "complaints";
/// Complaint notifications received, `_id` = notification id (`EV-…`, or `xpay:<push>`):
/// a redelivery is recognised and applied once.
pub const COMPLAINT_NOTICES: &str = "complaint_notices";

// Finance (issue 19), owned by `wemint::finance`.
/// One document per downloaded bill, `_id` = `<yyyy-MM-dd>:<kind>`: hash, size, chunk count.
pub const BILL_FILES: &str = "bill_files";
/// A stored bill's gzip bytes in pieces, `_id` = `<file>:<index>` (base64, at most 256 KiB).
pub const BILL_CHUNKS: &str = "bill_chunks";
/// What a day's reconciliation found, `_id` = `<yyyy-MM-dd>:<kind>:<reference>`.
pub const BILL_DISCREPANCIES: &str = "bill_discrepancies";
/// Revenue per day and channel, `_id` = `<yyyy-MM-dd>:<channel>`.
pub const REVENUE_REPORTS: &str = "revenue_reports";

// The Official Account funnel (`wemint::funnel`, issue 22).
/// One person across the Official Account and the Mini Program, `_id` = `u:<unionid>`
/// (`wemint::identity::people`).
pub const PEOPLE: &str = "people";
/// Scans, menu clicks and template-message opens, `_id` derived from the event.
pub const OA_TOUCHES: &str = "oa_touches";
/// Template messages to followers with their outcome, `_id` = the notice key.
pub const OA_MESSAGES: &str = "oa_messages";
/// Parametric QR codes made by `wemint-oa qrcode`, `_id` = scene.
pub const OA_QRCODES: &str = "oa_qrcodes";

// Content series (`wemint::funnel::series`, issue 22).
/// Who follows which content series, `_id` = `<series>:<openid>`.
pub const SERIES_FOLLOWS: &str = "series_follows";
/// One announcement of new content to its series' followers, `_id` = content id.
pub const SERIES_ANNOUNCEMENTS: &str = "series_announcements";

// Behaviour analytics (`wemint::analytics`, issue 20).
/// Raw `track` batches, one document per accepted call: `{openid, day, receivedAt, events}`;
/// dropped after `ANALYTICS_RETENTION_DAYS`.
pub const ANALYTICS_EVENTS: &str = "analytics_events";
/// Backend facts (paid, refunded, granted, shipped, subscription started/renewed/lapsed),
/// `_id` = `<kind>:<source id>`: copied once from the event stream and the owning collections.
pub const ANALYTICS_FACTS: &str = "analytics_facts";
/// Day aggregates, `_id` = `yyyy-MM-dd` (kept after the raw events are dropped).
pub const ANALYTICS_DAILY: &str = "analytics_daily";
/// Per-user-minute event counts (`rate:…`), dropped counts per day (`dropped:<day>`), each
/// person's first active day (`user:<openid>`) and the facts cursor.
pub const ANALYTICS_COUNTERS: &str = "analytics_counters";

// CRM export and WeChat analytics (issue 20), owned by `wemint::crm` (records, webhook)
// and `wemint::crm::datacube` (WeChat's analytics).
/// One record per customer, `_id` = openid (`wemint::crm`): the record, `version`, `dirty`.
pub const CRM_CUSTOMERS: &str = "crm_customers";
/// Webhook deliveries, `_id` = `<openid>:<version>` (the idempotency key), with their state.
pub const CRM_OUTBOX: &str = "crm_outbox";
/// The CRM fold's cursors, `_id` = `fold`.
pub const CRM_STATE: &str = "crm_state";
/// WeChat's own analytics per day (`datacube`), `_id` = `yyyy-MM-dd`.
pub const WECHAT_DATACUBE: &str = "wechat_datacube";

// The store's own bookkeeping, owned by `wemint::store` (bootstrap).
/// Which registry a store was last bootstrapped with, `_id` = `registry`: `{fingerprint, at}`.
/// A cold start that finds the current fingerprint declares nothing (one read, not one
/// request per collection and index).
pub const STORE_SCHEMA: &str = "store_schema";

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
                // Shipping: the queue and its deadlines, upload retries, platform pushes.
                IndexSpec::non_unique(["shipping.state", "shipping.deadlineAt"]),
                IndexSpec::non_unique(["shipping.upload.state", "shipping.upload.nextAt"]),
                IndexSpec::non_unique(["transactionId"]),
                // Analytics: the day's shipments (shipped facts).
                IndexSpec::non_unique(["shipping.shippedAt"]),
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
                // Bill reconciliation reads the day's settled refunds in time order.
                IndexSpec::non_unique(["status", "settledAt"]),
            ],
        ),
        (
            CONTENTS,
            vec![
                IndexSpec::non_unique(["kind", "publishedAt"]),
                IndexSpec::non_unique(["series", "publishedAt"]),
            ],
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
        (
            COMPLAINTS,
            vec![
                IndexSpec::non_unique(["state", "respondBy"]),
                IndexSpec::non_unique(["complaintTime"]),
            ],
        ),
        (
            COMPLAINT_NOTICES,
            vec![IndexSpec::non_unique(["complaintId"])],
        ),
        (BILL_FILES, vec![IndexSpec::non_unique(["date"])]),
        (BILL_CHUNKS, vec![IndexSpec::non_unique(["file", "index"])]),
        (
            BILL_DISCREPANCIES,
            vec![
                IndexSpec::non_unique(["date", "status"]),
                IndexSpec::non_unique(["status", "date"]),
            ],
        ),
        (REVENUE_REPORTS, vec![IndexSpec::non_unique(["date"])]),
        (PEOPLE, vec![IndexSpec::unique(["unionid"])]),
        (
            OA_TOUCHES,
            vec![
                IndexSpec::non_unique(["mpOpenid", "at"]),
                IndexSpec::non_unique(["oaOpenid", "at"]),
            ],
        ),
        (
            OA_MESSAGES,
            vec![IndexSpec::non_unique(["status", "nextAttemptAt"])],
        ),
        (OA_QRCODES, vec![]),
        (
            SERIES_FOLLOWS,
            vec![IndexSpec::unique(["series", "openid"])],
        ),
        (
            SERIES_ANNOUNCEMENTS,
            vec![IndexSpec::non_unique(["state", "createdAt"])],
        ),
        (
            ANALYTICS_EVENTS,
            vec![IndexSpec::non_unique(["day", "_id"])],
        ),
        (
            ANALYTICS_FACTS,
            vec![
                IndexSpec::non_unique(["day"]),
                IndexSpec::non_unique(["openid", "day"]),
            ],
        ),
        (ANALYTICS_DAILY, vec![IndexSpec::non_unique(["date"])]),
        (
            ANALYTICS_COUNTERS,
            vec![
                IndexSpec::non_unique(["firstDay"]),
                IndexSpec::non_unique(["expiresAt"]),
            ],
        ),
        (CRM_CUSTOMERS, vec![IndexSpec::non_unique(["dirty"])]),
        (
            CRM_OUTBOX,
            vec![
                IndexSpec::non_unique(["status", "nextAt"]),
                IndexSpec::non_unique(["status", "deliveredAt"]),
            ],
        ),
        (CRM_STATE, vec![]),
        (WECHAT_DATACUBE, vec![]),
        (STORE_SCHEMA, vec![]),
    ]
}

/// A fingerprint of [`all`] (names, fields, uniqueness, in order): it changes whenever a
/// collection or an index is added or altered, so bootstrap declares again after an upgrade.
pub fn fingerprint() -> String {
    let mut text = String::new();
    for (collection, indexes) in all() {
        text.push_str(collection);
        for index in indexes {
            text.push_str(if index.unique { "|u:" } else { "|i:" });
            text.push_str(&index.fields.join(","));
        }
        text.push('\n');
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    hex::encode(&digest.as_ref()[..12])
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
