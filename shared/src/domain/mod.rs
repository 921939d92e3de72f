//! Pure business logic with no I/O: money, ids, orders, entitlements, subscriptions, moderation.
