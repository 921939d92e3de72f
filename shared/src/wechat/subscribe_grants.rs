//! Subscribe-message grants: the one owner of the `subscribe_grants` counter.
//!
//! WeChat lets a Mini Program send one subscribe message per grant: each time the user accepts
//! a template in `wx.requestSubscribeMessage` (or in a `subscribe_msg_popup_event` push), one
//! credit. The document `<openid>:<templateId>` counts the credits left; a send takes one
//! first ([`take`]), a send that did not happen gives it back ([`give_back`]), and WeChat's
//! 43101 ("the user has no grant") sets the count to zero ([`reset`]). gatedContent's renewal
//! reminders and moderation's post-result notices both go through here.

use std::sync::Arc;

use serde_json::Value;

use crate::store::collections::SUBSCRIBE_GRANTS;
use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};

fn grant_id(openid: &str, template_id: &str) -> String {
    format!("{openid}:{template_id}")
}

/// Records that `openid` accepted `template_id` once more (one credit). Returns the credits
/// now held.
///
/// # Errors
/// The store failed.
pub async fn add(
    store: &Arc<dyn Store>,
    openid: &str,
    template_id: &str,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let filter = Filter::id(grant_id(openid, template_id));
    let update = Update::new()
        .inc("credits", 1)
        .set("lastGrantedAt", now)
        .set_on_insert("openid", openid)
        .set_on_insert("templateId", template_id);
    let doc = match store
        .update_one(SUBSCRIBE_GRANTS, &filter, &update, UpdateOptions::upsert())
        .await
    {
        // Two first grants raced and this insert lost: the document exists now.
        Err(StoreError::DuplicateKey { .. }) => {
            store
                .update_one(SUBSCRIBE_GRANTS, &filter, &update, UpdateOptions::upsert())
                .await?
        }
        other => other?,
    };
    Ok(doc.and_then(|d| d.get("credits").and_then(Value::as_i64)))
}

/// The most credits a user can hold for one template through client reports
/// ([`add_capped`]). Each send takes one, so a real user stays far below it; a client
/// reporting accepts it never had cannot pile up more.
pub const CLIENT_CREDIT_CAP: i64 = 20;

/// [`add`], then brought down to `cap` if it went above. Returns the credits now held (at most
/// `cap` once both writes are done).
///
/// # Errors
/// The store failed.
pub async fn add_capped(
    store: &Arc<dyn Store>,
    openid: &str,
    template_id: &str,
    now: i64,
    cap: i64,
) -> Result<Option<i64>, StoreError> {
    let credits = add(store, openid, template_id, now).await?;
    if credits.is_some_and(|c| c > cap) {
        store
            .update_one(
                SUBSCRIBE_GRANTS,
                &Filter::id(grant_id(openid, template_id)).and(Filter::gt("credits", cap)),
                &Update::new().set("credits", cap),
                UpdateOptions::default(),
            )
            .await?;
        return Ok(Some(cap));
    }
    Ok(credits)
}

/// Takes one credit for a send, if one is left. Returns whether it was taken.
///
/// # Errors
/// The store failed.
pub async fn take(
    store: &Arc<dyn Store>,
    openid: &str,
    template_id: &str,
) -> Result<bool, StoreError> {
    Ok(store
        .update_one(
            SUBSCRIBE_GRANTS,
            &Filter::id(grant_id(openid, template_id)).and(Filter::gt("credits", 0)),
            &Update::new().inc("credits", -1),
            UpdateOptions::default(),
        )
        .await?
        .is_some())
}

/// Gives back a credit [`take`] took for a send that did not happen.
///
/// # Errors
/// The store failed.
pub async fn give_back(
    store: &Arc<dyn Store>,
    openid: &str,
    template_id: &str,
) -> Result<(), StoreError> {
    change(store, openid, template_id, Update::new().inc("credits", 1)).await
}

/// WeChat said the user has no grant left (43101): the count goes to zero.
///
/// # Errors
/// The store failed.
pub async fn reset(
    store: &Arc<dyn Store>,
    openid: &str,
    template_id: &str,
) -> Result<(), StoreError> {
    change(store, openid, template_id, Update::new().set("credits", 0)).await
}

async fn change(
    store: &Arc<dyn Store>,
    openid: &str,
    template_id: &str,
    update: Update,
) -> Result<(), StoreError> {
    store
        .update_one(
            SUBSCRIBE_GRANTS,
            &Filter::id(grant_id(openid, template_id)),
            &update,
            UpdateOptions::default(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credits_are_added_taken_given_back_and_reset() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let store = &store;
        assert!(!take(store, "o1", "T").await.unwrap(), "no grant yet");
        assert_eq!(add(store, "o1", "T", 1).await.unwrap(), Some(1));
        assert_eq!(add(store, "o1", "T", 2).await.unwrap(), Some(2));
        assert!(take(store, "o1", "T").await.unwrap());
        give_back(store, "o1", "T").await.unwrap();
        let doc = store.get(SUBSCRIBE_GRANTS, "o1:T").await.unwrap().unwrap();
        assert_eq!(
            (doc["credits"].as_i64(), doc["lastGrantedAt"].as_i64()),
            (Some(2), Some(2))
        );
        reset(store, "o1", "T").await.unwrap();
        assert!(!take(store, "o1", "T").await.unwrap(), "reset to zero");
    }

    #[tokio::test]
    async fn capped_adds_stop_at_the_cap() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let store = &store;
        for expected in [1, 2, 3, 3, 3] {
            assert_eq!(
                add_capped(store, "o1", "T", 1, 3).await.unwrap(),
                Some(expected)
            );
        }
        let doc = store.get(SUBSCRIBE_GRANTS, "o1:T").await.unwrap().unwrap();
        assert_eq!(doc["credits"].as_i64(), Some(3));
        // A send takes one; the next accept brings it back to the cap, not above.
        assert!(take(store, "o1", "T").await.unwrap());
        assert_eq!(add_capped(store, "o1", "T", 2, 3).await.unwrap(), Some(3));
    }
}
