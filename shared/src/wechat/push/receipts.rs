//! Receipts of handled pushes, so a push WeChat retries (3 times when we do not answer
//! within 5 s) is not handled twice.
//!
//! One document per handled push in `wechat_push_receipts`, `_id` = SHA-256 of the push's
//! [`PushMessage::dedupe_key`] (so `_id` uniqueness does the work and no index is needed).
//! Business state changes must still be idempotent on their own keys (an xpay delivery on
//! `OutTradeNo`, a moderation result on `trace_id`): receipts only spare repeated work for
//! pushes that have no such key (Official Account menu clicks, text messages).

use aws_lc_rs::digest;
use serde_json::json;

use super::PushMessage;
use crate::store::{Filter, Store, StoreError};

use crate::store::collections::WECHAT_PUSH_RECEIPTS;

/// How long a receipt is kept: far beyond WeChat's retry window (3 retries within seconds).
pub const RECEIPT_TTL_MS: i64 = 24 * 3600 * 1000;

fn receipt_id(message: &PushMessage) -> String {
    hex::encode(digest::digest(
        &digest::SHA256,
        message.dedupe_key().as_bytes(),
    ))
}

/// True if this push was already recorded as handled.
///
/// # Errors
/// Store failures.
pub async fn already_handled(store: &dyn Store, message: &PushMessage) -> Result<bool, StoreError> {
    Ok(store
        .get(WECHAT_PUSH_RECEIPTS, &receipt_id(message))
        .await?
        .is_some())
}

/// Records the push as handled; `false` if it already was (another delivery won the race).
/// Call it after the push was handled successfully, so a failure lets WeChat's retry through.
///
/// # Errors
/// Store failures other than the duplicate.
pub async fn record_handled(
    store: &dyn Store,
    message: &PushMessage,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let doc = json!({
        "_id": receipt_id(message),
        "msgType": message.msg_type,
        "event": message.event(),
        "createdAt": now_ms,
        "expiresAt": now_ms.saturating_add(RECEIPT_TTL_MS),
    });
    match store.insert(WECHAT_PUSH_RECEIPTS, doc).await {
        Ok(_) => Ok(true),
        Err(StoreError::DuplicateKey { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes receipts past their TTL; returns how many.
///
/// # Errors
/// Store failures.
pub async fn purge_expired(store: &dyn Store, now_ms: i64) -> Result<u64, StoreError> {
    store
        .delete_many(WECHAT_PUSH_RECEIPTS, &Filter::lt("expiresAt", now_ms))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::push::PushFormat;

    #[tokio::test]
    async fn retried_push_is_recognised_and_receipts_expire() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let body = br#"{"ToUserName":"gh","FromUserName":"o","CreateTime":7,"MsgType":"event","Event":"CLICK","EventKey":"K"}"#;
        let first = PushMessage::parse(body, PushFormat::Json).unwrap();
        let retry = PushMessage::parse(body, PushFormat::Json).unwrap();
        let other_body = br#"{"ToUserName":"gh","FromUserName":"o","CreateTime":7,"MsgType":"event","Event":"CLICK","EventKey":"L"}"#;
        let other = PushMessage::parse(other_body, PushFormat::Json).unwrap();
        assert!(!already_handled(store.as_ref(), &first).await.unwrap());
        assert!(record_handled(store.as_ref(), &first, 1_000).await.unwrap());
        assert!(already_handled(store.as_ref(), &retry).await.unwrap());
        assert!(!record_handled(store.as_ref(), &retry, 2_000).await.unwrap());
        assert!(!already_handled(store.as_ref(), &other).await.unwrap());
        assert_eq!(
            purge_expired(store.as_ref(), 1_000 + RECEIPT_TTL_MS)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            purge_expired(store.as_ref(), 1_001 + RECEIPT_TTL_MS)
                .await
                .unwrap(),
            1
        );
        assert!(!already_handled(store.as_ref(), &first).await.unwrap());
    }
}
