//! The `users` collection: one document per openid, written by `login`.
//!
//! ```json
//! {"_id": "<openid>", "openid": "<openid>", "appid": "wx…", "unionid": "…"?, "phone": "+86…"?,
//!  "sessionKey": "gcm1:<base64 nonce‖ciphertext‖tag>", "sessionKeyAt": 1700000000,
//!  "role": "user" | "admin", "activeTenant": "<tenant id>"?,
//!  "createdAt": 1700000000, "lastLoginAt": 1700000000}
//! ```
//!
//! `sessionKey` is the latest WeChat session_key, sealed with [`DataKey`] (AES-256-GCM under
//! `WEMINT_DATA_KEY`, the openid as associated data); read it with [`session_key`], never
//! from the raw field. `role` is set by the operator (seed, console), never by the API.

use serde::{Deserialize, Serialize};

use super::{DataKey, IdentityError};
use crate::runtime::ApiError;
use crate::secret::Secret;
use crate::store::{Store, StoreError};

/// The users collection (the registry's constant, re-exported for login).
pub use crate::store::collections::USERS;

/// A user's project role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Everyone.
    #[default]
    User,
    /// Project administrator: review queue, refunds.
    Admin,
}

/// A `users` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The openid (also the document id).
    #[serde(rename = "_id")]
    pub id: String,
    /// The user's openid under `appid`.
    pub openid: String,
    /// The Mini Program the user logged in to.
    pub appid: String,
    /// The unionid, once WeChat has given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// The phone number (with country code), once the user has shared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The session_key sealed with [`DataKey`]; see [`session_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// When `sessionKey` was received, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key_at: Option<i64>,
    /// Project role.
    #[serde(default)]
    pub role: UserRole,
    /// The tenant the user last switched to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_tenant: Option<String>,
    /// First login, Unix seconds.
    pub created_at: i64,
    /// Latest login, Unix seconds.
    pub last_login_at: i64,
}

/// The session_key of a user, opened.
pub struct StoredSessionKey {
    /// The base64 session_key as WeChat gave it.
    pub key: Secret<String>,
    /// When it was received, Unix seconds (WeChat replaces it on a later `wx.login`).
    pub received_at: i64,
}

/// Why a stored session_key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    /// The store failed or the document does not fit.
    #[error("users store: {0}")]
    Store(#[from] StoreError),
    /// The sealed value did not open (other key, other owner, altered).
    #[error("stored session_key: {0}")]
    Sealed(#[from] IdentityError),
}

impl From<SessionKeyError> for ApiError {
    fn from(err: SessionKeyError) -> Self {
        ApiError::internal(err)
    }
}

/// Whether `openid` is a project administrator by its stored `role`.
///
/// The session token's `adm` flag only says what the role was at login, up to the token's
/// lifetime ago; admin-only actions ask the store instead, so a demoted admin loses them at
/// once (and a promoted one gains them without logging in again).
///
/// # Errors
/// Store failures.
pub async fn is_stored_admin(
    store: &(dyn Store + 'static),
    openid: &str,
) -> Result<bool, StoreError> {
    if openid.is_empty() {
        return Ok(false);
    }
    Ok(store
        .get(USERS, openid)
        .await?
        .is_some_and(|user| user["role"] == "admin"))
}

/// The latest session_key of `openid`, or `None` when the user never logged in (or has no
/// key stored): callers answer `SESSION_KEY_MISSING` and ask for a fresh `login`.
///
/// # Errors
/// [`SessionKeyError`].
pub async fn session_key(
    store: &(dyn Store + 'static),
    data_key: &DataKey,
    openid: &str,
) -> Result<Option<StoredSessionKey>, SessionKeyError> {
    let Some(user) = store.get_as::<User>(USERS, openid).await? else {
        return Ok(None);
    };
    let (Some(sealed), Some(received_at)) = (user.session_key, user.session_key_at) else {
        return Ok(None);
    };
    let plain = data_key.open(openid, &sealed)?;
    let key = String::from_utf8(plain).map_err(|_| IdentityError::Unseal)?;
    Ok(Some(StoredSessionKey {
        key: Secret::new(key),
        received_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use serde_json::json;

    #[tokio::test]
    async fn session_key_opens_only_for_its_owner() {
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let store = store.as_ref();
        let key = DataKey::from_bytes(&[3u8; 32]).unwrap();
        let sealed = key.seal("o-1", b"c2Vzc2lvbi1rZXk=").unwrap();
        let user = json!({"_id": "o-1", "openid": "o-1", "appid": "wx1", "sessionKey": sealed,
            "sessionKeyAt": 10, "role": "user", "createdAt": 1, "lastLoginAt": 10});
        store.insert(USERS, user.clone()).await.unwrap();
        let got = session_key(store, &key, "o-1").await.unwrap().unwrap();
        assert_eq!(got.key.expose(), "c2Vzc2lvbi1rZXk=");
        assert_eq!(got.received_at, 10);
        assert!(session_key(store, &key, "o-none").await.unwrap().is_none());
        // The same sealed value copied into another user's document does not open.
        let mut copy = user;
        copy["_id"] = json!("o-2");
        copy["openid"] = json!("o-2");
        store.insert(USERS, copy).await.unwrap();
        assert!(matches!(
            session_key(store, &key, "o-2").await,
            Err(SessionKeyError::Sealed(_))
        ));
        let parsed: User = store.get_as(USERS, "o-1").await.unwrap().unwrap();
        assert_eq!(parsed.role, UserRole::User);
        assert_eq!(parsed.session_key_at, Some(10));
    }
}
