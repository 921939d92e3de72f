//! A tenant's shared notes: one text document per tenant (`tenant_notes`, `_id` = tenant id),
//! edited by its members with optimistic concurrency.
//!
//! An edit names the `version` it was based on. It is written only if the stored version is
//! still that one (a conditional update; version 0 is "no notes yet", written by an insert
//! that a concurrent first edit makes fail), so of two concurrent edits of the same version
//! exactly one wins; the other gets [`Edit::Conflict`] with the current document to merge.
//! Every saved edit publishes `tenant.notes_changed` (with the text) to the tenant's topic.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::events::{Draft, Events, kinds};
use crate::identity::Caller;
use crate::store::collections::TENANT_NOTES;
use crate::store::{Filter, Store, StoreError, Update, UpdateOptions};
use crate::tenancy::{Tenancy, TenancyError};

/// Longest notes text, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;

/// A `tenant_notes` document (version 0 with empty text when none is stored yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotesDoc {
    /// The tenant id.
    #[serde(rename = "_id")]
    pub tenant: String,
    /// The text.
    pub text: String,
    /// Bumped by every saved edit, from 1.
    pub version: i64,
    /// Who saved this version.
    #[serde(default)]
    pub updated_by: String,
    /// Unix seconds.
    #[serde(default)]
    pub updated_at: i64,
}

impl NotesDoc {
    /// The API view: `{text, version, updatedBy, updatedAt}`.
    pub fn view(&self) -> Value {
        json!({
            "text": self.text,
            "version": self.version,
            "updatedBy": self.updated_by,
            "updatedAt": self.updated_at,
        })
    }

    fn empty(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            text: String::new(),
            version: 0,
            updated_by: String::new(),
            updated_at: 0,
        }
    }
}

/// What an edit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Saved as this document.
    Saved(NotesDoc),
    /// The edit was based on an older version: nothing written; this is the current one.
    Conflict(NotesDoc),
}

/// Why a notes call failed.
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    /// Not a member, no active tenant, or the store (see [`TenancyError`]).
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// Bad input (`BAD_REQUEST`).
    #[error("{0}")]
    Invalid(String),
}

impl From<StoreError> for NotesError {
    fn from(e: StoreError) -> Self {
        Self::Tenancy(TenancyError::Store(e))
    }
}

impl From<NotesError> for crate::runtime::ApiError {
    fn from(err: NotesError) -> Self {
        match err {
            NotesError::Tenancy(e) => e.into(),
            NotesError::Invalid(m) => Self::bad_request(m),
        }
    }
}

/// The notes service. Cheap to clone.
#[derive(Clone)]
pub struct Notes {
    store: Arc<dyn Store>,
    tenancy: Tenancy,
    events: Events,
    clock: SharedClock,
}

impl std::fmt::Debug for Notes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notes")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl Notes {
    /// Notes in `store`.
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        Self {
            tenancy: Tenancy::new(store.clone()).with_clock(clock.clone()),
            events: Events::new(store.clone()).with_clock(clock.clone()),
            store,
            clock,
        }
    }

    /// The notes of the caller's active tenant (checked membership).
    ///
    /// # Errors
    /// `NoActiveTenant`, `NotMember`, the store's.
    pub async fn get(&self, caller: &Caller) -> Result<NotesDoc, NotesError> {
        let scope = self.tenancy.scope(caller).await?;
        self.current(scope.tenant_id()).await
    }

    async fn current(&self, tenant: &str) -> Result<NotesDoc, NotesError> {
        Ok(self
            .store
            .get_as::<NotesDoc>(TENANT_NOTES, tenant)
            .await?
            .unwrap_or_else(|| NotesDoc::empty(tenant)))
    }

    /// Replaces the notes of the caller's active tenant with `text`, if they are still at
    /// `base_version`.
    ///
    /// # Errors
    /// `Invalid` (negative version, text too long or with control characters other than
    /// newlines and tabs), `NoActiveTenant`, `NotMember`, the store's.
    pub async fn edit(
        &self,
        caller: &Caller,
        base_version: i64,
        text: &str,
    ) -> Result<Edit, NotesError> {
        if base_version < 0 {
            return Err(NotesError::Invalid("`version` must be 0 or more".into()));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(NotesError::Invalid(format!(
                "`text` is longer than {MAX_TEXT_CHARS} characters"
            )));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err(NotesError::Invalid(
                "`text` must not contain control characters".into(),
            ));
        }
        let scope = self.tenancy.scope(caller).await?;
        let tenant = scope.tenant_id().to_owned();
        let now = self.clock.now_unix();
        let next = NotesDoc {
            tenant: tenant.clone(),
            text: text.to_owned(),
            version: base_version + 1,
            updated_by: caller.openid.clone(),
            updated_at: now,
        };
        let saved = if base_version == 0 {
            match self.store.insert_as(TENANT_NOTES, &next).await {
                Ok(_) => true,
                Err(StoreError::DuplicateKey { .. }) => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            self.store
                .update_one(
                    TENANT_NOTES,
                    &Filter::id(tenant.as_str()).and(Filter::eq("version", base_version)),
                    &Update::new()
                        .set("text", text)
                        .set("version", next.version)
                        .set("updatedBy", caller.openid.as_str())
                        .set("updatedAt", now),
                    UpdateOptions::default(),
                )
                .await?
                .is_some()
        };
        if !saved {
            return Ok(Edit::Conflict(self.current(&tenant).await?));
        }
        // Best effort: a lost event costs liveness only (the next edit carries the whole text,
        // and a page that opens reads the stored document).
        let draft = Draft::new(
            kinds::NOTES_CHANGED,
            format!("{}:{tenant}:{}", kinds::NOTES_CHANGED, next.version),
        )
        .for_tenant(tenant.as_str())
        .data(next.view());
        self.events.publish_or_log(draft).await;
        Ok(Edit::Saved(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::identity::{CallerSource, TenantMembership, TenantRole};
    use crate::store::sqlite::SqliteStore;

    fn caller(openid: &str, tenant: &str) -> Caller {
        Caller {
            openid: openid.into(),
            appid: "wxapp".into(),
            unionid: None,
            tenant: Some(TenantMembership {
                id: tenant.into(),
                role: TenantRole::Member,
            }),
            plan: None,
            admin: false,
            source: CallerSource::Session,
        }
    }

    #[tokio::test]
    async fn one_of_two_edits_of_the_same_version_wins_and_the_other_gets_the_current_one() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        crate::store::bootstrap(store.as_ref()).await.unwrap();
        let clock: SharedClock = Arc::new(FixedClock::new(1_000));
        store
            .insert(
                crate::identity::USERS,
                json!({"_id": "bob", "openid": "bob"}),
            )
            .await
            .unwrap();
        let tenancy = Tenancy::new(store.clone()).with_clock(clock.clone());
        let (tenant, owner) = tenancy.create("ann", "Team").await.unwrap();
        let ann = Caller {
            tenant: Some(TenantMembership {
                id: tenant.id.clone(),
                role: owner.role,
            }),
            ..caller("ann", &tenant.id)
        };
        tenancy
            .invite(&ann, "bob", TenantRole::Member)
            .await
            .unwrap();
        let bob = caller("bob", &tenant.id);
        let notes = Notes::new(store.clone(), clock);

        assert_eq!(notes.get(&bob).await.unwrap().version, 0);
        let Edit::Saved(v1) = notes.edit(&ann, 0, "first").await.unwrap() else {
            panic!("first edit saves");
        };
        assert_eq!(v1.version, 1);
        // Both saw version 1.
        let (a, b) = tokio::join!(notes.edit(&ann, 1, "ann's"), notes.edit(&bob, 1, "bob's"));
        let outcomes = [a.unwrap(), b.unwrap()];
        let saved: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                Edit::Saved(d) => Some(d.clone()),
                Edit::Conflict(_) => None,
            })
            .collect();
        assert_eq!(saved.len(), 1, "{outcomes:?}");
        let conflict = outcomes
            .iter()
            .find_map(|o| match o {
                Edit::Conflict(d) => Some(d.clone()),
                Edit::Saved(_) => None,
            })
            .unwrap();
        assert_eq!(conflict, saved[0]);
        assert_eq!(conflict.version, 2);
        // A first edit racing another first edit conflicts too.
        let stranger = caller("eve", &tenant.id);
        assert!(matches!(
            notes.edit(&stranger, 2, "x").await,
            Err(NotesError::Tenancy(TenancyError::NotMember))
        ));
        assert!(matches!(
            notes.edit(&bob, 2, "bad\u{7}").await,
            Err(NotesError::Invalid(_))
        ));
        let events = Events::new(store).after(0, 10).await.unwrap();
        let kinds_seen: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds_seen,
            [
                kinds::MEMBER_ADDED,
                kinds::NOTES_CHANGED,
                kinds::NOTES_CHANGED
            ]
        );
    }
}
