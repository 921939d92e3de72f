//! Tenants (teams) for the SaaS shape: creating one, inviting members, listing them, and the
//! one place every tenant-scoped read and write goes through ([`TenantScope`]).
//!
//! Stored documents:
//!
//! - `tenants`: `{_id, name, ownerOpenid, plan?, seats?, memberCount, createdAt}`. `plan` and
//!   `seats` come from the tenant's plan (set by the commerce fulfilment through
//!   [`Tenancy::set_plan`]); without `seats` the tenant takes any number of members.
//!   `memberCount` counts memberships and is what the seat check is conditional on.
//! - `tenant_members`: `{_id: "<tenant>:<openid>", tenant, openid, role, joinedAt, invitedBy?}`,
//!   unique on `(tenant, openid)`; `role` ∈ `owner`, `admin`, `member`.
//!
//! Rules: the creator is `owner`; owners invite admins and members, admins invite members;
//! invitees must have logged in once (a `users` document); a full plan answers
//! `SEAT_LIMIT_REACHED`. Every tenant-scoped collection stores the tenant id in a top-level
//! `tenant` field, and handlers reach those collections only through a [`TenantScope`], which
//! adds `tenant == <id>` to every filter and sets it on every insert, so a handler cannot forget.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::{SharedClock, SystemClock};
use crate::events::{Draft, Events, kinds};
use crate::identity::{Caller, TenantMembership, TenantRole, USERS};
use crate::runtime::ApiError;
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions, new_id};

use crate::store::collections::{TENANT_MEMBERS, TENANTS};
/// The field every tenant-scoped document carries.
pub const TENANT_FIELD: &str = "tenant";
/// Public code: the tenant's plan has no free seat.
pub const SEAT_LIMIT_REACHED: &str = "SEAT_LIMIT_REACHED";

/// Longest tenant name, in characters.
const MAX_NAME_CHARS: usize = 64;

/// A `tenants` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Tenant id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Who created it.
    pub owner_openid: String,
    /// The plan in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Seats the plan includes; `None` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// Current number of members (owner included).
    pub member_count: u32,
    /// Unix seconds.
    pub created_at: i64,
}

/// A `tenant_members` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// `<tenant>:<openid>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Member's openid.
    pub openid: String,
    /// Role in the tenant.
    pub role: TenantRole,
    /// Unix seconds.
    pub joined_at: i64,
    /// Who invited them (absent for the owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
}

impl Member {
    /// The API view: `{openid, role, joinedAt}`.
    pub fn view(&self) -> Value {
        json!({"openid": self.openid, "role": self.role, "joinedAt": self.joined_at})
    }
}

fn member_id(tenant: &str, openid: &str) -> String {
    format!("{tenant}:{openid}")
}

/// What can go wrong with tenants; each maps to a public code.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The caller has no active tenant (`FORBIDDEN`).
    #[error("no active tenant: create one or switch to one first")]
    NoActiveTenant,
    /// The caller is not a member of the tenant (`FORBIDDEN`).
    #[error("not a member of this tenant")]
    NotMember,
    /// The caller's role does not allow this (`FORBIDDEN`).
    #[error("{0}")]
    NotAllowed(&'static str),
    /// The tenant's plan has no free seat (`SEAT_LIMIT_REACHED`).
    #[error("the tenant's plan includes {seats} seats and all are taken")]
    SeatLimit {
        /// Seats of the plan.
        seats: u32,
    },
    /// No such tenant (`NOT_FOUND`).
    #[error("tenant not found")]
    TenantNotFound,
    /// The invitee never logged in (`NOT_FOUND`).
    #[error("no user with this openid: they must open the Mini Program once")]
    UserNotFound,
    /// Already a member with another role (`CONFLICT`).
    #[error("already a member of this tenant as {0:?}")]
    AlreadyMember(TenantRole),
    /// Bad input (`BAD_REQUEST`).
    #[error("{0}")]
    Invalid(&'static str),
    /// A scoped write tried to name or move to another tenant (`INTERNAL`: a bug, refused).
    #[error("tenant-scoped write must not set `tenant`")]
    CrossTenantWrite,
    /// The store failed (`INTERNAL`).
    #[error("tenancy store: {0}")]
    Store(#[from] StoreError),
}

impl From<TenancyError> for ApiError {
    fn from(err: TenancyError) -> Self {
        let message = err.to_string();
        match err {
            TenancyError::NoActiveTenant
            | TenancyError::NotMember
            | TenancyError::NotAllowed(_) => ApiError::forbidden(message),
            TenancyError::SeatLimit { .. } => {
                ApiError::new(SEAT_LIMIT_REACHED, StatusCode::FORBIDDEN, message)
            }
            TenancyError::TenantNotFound | TenancyError::UserNotFound => {
                ApiError::not_found(message)
            }
            TenancyError::AlreadyMember(_) => ApiError::conflict(message),
            TenancyError::Invalid(_) => ApiError::bad_request(message),
            TenancyError::CrossTenantWrite | TenancyError::Store(_) => ApiError::internal(err),
        }
    }
}

type Result<T, E = TenancyError> = std::result::Result<T, E>;

/// Tenant operations over the store. Cheap to clone; build one at init.
#[derive(Clone)]
pub struct Tenancy {
    store: Arc<dyn Store>,
    clock: SharedClock,
    events: Events,
}

impl fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenancy")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// Tenants in `store`, system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            events: Events::new(store.clone()),
            store,
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.events = self.events.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// The tenant `id`, if it exists.
    ///
    /// # Errors
    /// The store's.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        Ok(self.store.get_as(TENANTS, id).await?)
    }

    /// `openid`'s membership of `tenant`, if any.
    ///
    /// # Errors
    /// The store's.
    pub async fn membership(&self, tenant: &str, openid: &str) -> Result<Option<Member>> {
        Ok(self
            .store
            .get_as(TENANT_MEMBERS, &member_id(tenant, openid))
            .await?)
    }

    /// Creates a tenant owned by `owner` (who becomes its first member, as `owner`).
    ///
    /// # Errors
    /// `Invalid` for an empty or over-long name; the store's.
    pub async fn create(&self, owner: &str, name: &str) -> Result<(Tenant, Member)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(TenancyError::Invalid("name must be 1 to 64 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(TenancyError::Invalid(
                "name must not contain control characters",
            ));
        }
        let now = self.clock.now_unix();
        let tenant = Tenant {
            id: new_id(),
            name: name.to_owned(),
            owner_openid: owner.to_owned(),
            plan: None,
            seats: None,
            member_count: 1,
            created_at: now,
        };
        self.store.insert_as(TENANTS, &tenant).await?;
        let member = Member {
            id: member_id(&tenant.id, owner),
            tenant: tenant.id.clone(),
            openid: owner.to_owned(),
            role: TenantRole::Owner,
            joined_at: now,
            invited_by: None,
        };
        if let Err(e) = self.store.insert_as(TENANT_MEMBERS, &member).await {
            // Do not leave an ownerless tenant behind.
            let _ = self
                .store
                .delete_one(TENANTS, &Filter::id(&tenant.id))
                .await;
            return Err(e.into());
        }
        Ok((tenant, member))
    }

    /// The scope of the caller's active tenant, after checking the caller still is a member
    /// (a token outlives a removal by at most its lifetime; this closes that gap).
    ///
    /// # Errors
    /// `NoActiveTenant`, `NotMember`, the store's.
    pub async fn scope(&self, caller: &Caller) -> Result<TenantScope> {
        let active = caller.tenant.as_ref().ok_or(TenancyError::NoActiveTenant)?;
        self.scope_for(&active.id, &caller.openid).await
    }

    /// The scope of `tenant` for `openid`, who must be a member.
    ///
    /// # Errors
    /// `NotMember`, the store's.
    pub async fn scope_for(&self, tenant: &str, openid: &str) -> Result<TenantScope> {
        let member = self
            .membership(tenant, openid)
            .await?
            .ok_or(TenancyError::NotMember)?;
        Ok(TenantScope {
            store: self.store.clone(),
            tenant: member.tenant,
            openid: member.openid,
            role: member.role,
        })
    }

    /// Makes `tenant` the active tenant of `openid` (who must be a member); returns the tenant
    /// and the membership, for a new session token.
    ///
    /// # Errors
    /// `NotMember`, `TenantNotFound`, the store's.
    pub async fn activate(&self, openid: &str, tenant: &str) -> Result<(Tenant, Member)> {
        let member = self
            .membership(tenant, openid)
            .await?
            .ok_or(TenancyError::NotMember)?;
        let found = self
            .tenant(tenant)
            .await?
            .ok_or(TenancyError::TenantNotFound)?;
        self.store
            .update_one(
                USERS,
                &Filter::id(openid),
                &Update::new().set("activeTenant", tenant),
                UpdateOptions::default(),
            )
            .await?;
        Ok((found, member))
    }

    /// Adds `openid` to the caller's active tenant with `role` (`admin` or `member`). Inviting
    /// someone who already has that role returns their membership unchanged.
    ///
    /// # Errors
    /// `NoActiveTenant`/`NotMember`/`NotAllowed` for the caller, `Invalid` role or openid,
    /// `UserNotFound`, `AlreadyMember` (other role), `SeatLimit`, the store's.
    pub async fn invite(&self, by: &Caller, openid: &str, role: TenantRole) -> Result<Member> {
        let scope = self.scope(by).await?;
        match (scope.role, role) {
            (_, TenantRole::Owner) => {
                return Err(TenancyError::Invalid("role must be admin or member"));
            }
            (TenantRole::Member, _) => {
                return Err(TenancyError::NotAllowed(
                    "only owners and admins can invite",
                ));
            }
            (TenantRole::Admin, TenantRole::Admin) => {
                return Err(TenancyError::NotAllowed("only the owner can invite admins"));
            }
            _ => {}
        }
        let openid = openid.trim();
        if openid.is_empty() || openid.len() > 128 {
            return Err(TenancyError::Invalid("openid must be 1 to 128 characters"));
        }
        if self.store.get(USERS, openid).await?.is_none() {
            return Err(TenancyError::UserNotFound);
        }
        let tenant_id = scope.tenant_id().to_owned();
        if let Some(existing) = self.membership(&tenant_id, openid).await? {
            return same_role(existing, role);
        }
        self.reserve_seat(&tenant_id).await?;
        let member = Member {
            id: member_id(&tenant_id, openid),
            tenant: tenant_id.clone(),
            openid: openid.to_owned(),
            role,
            joined_at: self.clock.now_unix(),
            invited_by: Some(by.openid.clone()),
        };
        match self.store.insert_as(TENANT_MEMBERS, &member).await {
            Ok(_) => {
                self.publish_membership(kinds::MEMBER_ADDED, &member).await;
                Ok(member)
            }
            Err(e) => {
                self.release_seat(&tenant_id).await;
                match e {
                    // A concurrent invite of the same person won.
                    StoreError::DuplicateKey { .. } => {
                        match self.membership(&tenant_id, openid).await? {
                            Some(existing) => same_role(existing, role),
                            None => Err(e.into()),
                        }
                    }
                    other => Err(other.into()),
                }
            }
        }
    }

    /// Takes one seat: conditional on the seat count read, so concurrent invites cannot
    /// overfill a plan.
    async fn reserve_seat(&self, tenant_id: &str) -> Result<()> {
        for _ in 0..5 {
            let tenant = self
                .tenant(tenant_id)
                .await?
                .ok_or(TenancyError::TenantNotFound)?;
            let filter = match tenant.seats {
                Some(seats) => {
                    if tenant.member_count >= seats {
                        return Err(TenancyError::SeatLimit { seats });
                    }
                    Filter::id(tenant_id)
                        .and(Filter::eq("seats", seats))
                        .and(Filter::lt("memberCount", seats))
                }
                None => Filter::id(tenant_id).and(Filter::exists("seats", false)),
            };
            let updated = self
                .store
                .update_one(
                    TENANTS,
                    &filter,
                    &Update::new().inc("memberCount", 1),
                    UpdateOptions::default(),
                )
                .await?;
            if updated.is_some() {
                return Ok(());
            }
            // The plan changed or the last seat went meanwhile: read again.
        }
        Err(StoreError::Backend("tenant seat count kept changing".into()).into())
    }

    async fn release_seat(&self, tenant_id: &str) {
        let released = self
            .store
            .update_one(
                TENANTS,
                &Filter::id(tenant_id),
                &Update::new().inc("memberCount", -1),
                UpdateOptions::default(),
            )
            .await;
        if let Err(e) = released {
            tracing::error!(error = %e, "could not release a tenant seat");
        }
    }

    /// The members of the caller's active tenant, oldest first.
    ///
    /// # Errors
    /// `NoActiveTenant`, `NotMember`, the store's.
    pub async fn members(&self, caller: &Caller) -> Result<Vec<Member>> {
        let scope = self.scope(caller).await?;
        let docs = scope
            .find(
                TENANT_MEMBERS,
                &Filter::All,
                &FindOptions::new().sort_asc("joinedAt").limit(1000),
            )
            .await?;
        docs.into_iter()
            .map(|d| {
                serde_json::from_value(d)
                    .map_err(|e| StoreError::InvalidDocument(format!("tenant_members: {e}")).into())
            })
            .collect()
    }

    /// Removes `openid` from the caller's active tenant (or the caller leaves, when `openid`
    /// is their own). Owners remove anyone but themselves; admins remove members; anyone
    /// leaves. Removing someone who is not a member is a no-op (`false`). The member's open
    /// sockets lose the tenant's topics when the `tenant.member_removed` event reaches them.
    ///
    /// # Errors
    /// `NoActiveTenant`/`NotMember`/`NotAllowed` for the caller, `Invalid` openid, the store's.
    pub async fn remove(&self, by: &Caller, openid: &str) -> Result<bool> {
        let scope = self.scope(by).await?;
        let openid = openid.trim();
        if openid.is_empty() || openid.len() > 128 {
            return Err(TenancyError::Invalid("openid must be 1 to 128 characters"));
        }
        let tenant_id = scope.tenant_id().to_owned();
        let Some(target) = self.membership(&tenant_id, openid).await? else {
            return Ok(false);
        };
        let leaving = openid == by.openid;
        match (scope.role, target.role) {
            (_, TenantRole::Owner) => {
                return Err(TenancyError::NotAllowed("the owner cannot be removed"));
            }
            _ if leaving => {}
            (TenantRole::Owner, _) | (TenantRole::Admin, TenantRole::Member) => {}
            _ => {
                return Err(TenancyError::NotAllowed(
                    "owners remove anyone, admins remove members",
                ));
            }
        }
        let removed = self
            .store
            .delete_one(
                TENANT_MEMBERS,
                &Filter::id(&target.id).and(Filter::eq("joinedAt", target.joined_at)),
            )
            .await?;
        if removed {
            self.release_seat(&tenant_id).await;
            self.publish_membership(kinds::MEMBER_REMOVED, &target)
                .await;
        }
        Ok(removed)
    }

    /// Tells the tenant's open pages (and the member's own sockets) about a membership change.
    /// Best effort: membership is checked again from the store whenever a socket subscribes.
    async fn publish_membership(&self, kind: &'static str, member: &Member) {
        let draft = Draft::new(kind, format!("{kind}:{}:{}", member.id, member.joined_at))
            .for_tenant(member.tenant.as_str())
            .data(json!({"openid": member.openid, "role": member.role}));
        self.events.publish_or_log(draft).await;
    }

    /// Sets the tenant's plan and seats (commerce fulfilment of a `tenant_plan` product, or the
    /// operator). Lowering seats below the member count keeps the members but blocks invites.
    ///
    /// # Errors
    /// `TenantNotFound`, the store's.
    pub async fn set_plan(
        &self,
        tenant_id: &str,
        plan: Option<&str>,
        seats: Option<u32>,
    ) -> Result<Tenant> {
        let mut update = Update::new();
        update = match plan {
            Some(p) => update.set("plan", p),
            None => update.unset("plan"),
        };
        update = match seats {
            Some(s) => update.set("seats", s),
            None => update.unset("seats"),
        };
        let doc = self
            .store
            .update_one_as::<Tenant>(
                TENANTS,
                &Filter::id(tenant_id),
                &update,
                UpdateOptions::default(),
            )
            .await?;
        doc.ok_or(TenancyError::TenantNotFound)
    }
}

fn same_role(existing: Member, role: TenantRole) -> Result<Member> {
    if existing.role == role {
        Ok(existing)
    } else {
        Err(TenancyError::AlreadyMember(existing.role))
    }
}

/// Access to tenant-scoped collections for one tenant: every filter gets `tenant == <id>`,
/// every insert gets `tenant = <id>`, and no update may change `tenant`. Obtain it from
/// [`Tenancy::scope`] (checks membership) in handlers.
#[derive(Clone)]
pub struct TenantScope {
    store: Arc<dyn Store>,
    tenant: String,
    openid: String,
    role: TenantRole,
}

impl fmt::Debug for TenantScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantScope")
            .field("tenant", &self.tenant)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl TenantScope {
    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.tenant
    }

    /// The member the scope was opened for.
    pub fn openid(&self) -> &str {
        &self.openid
    }

    /// Their role, as stored now (not as in the token).
    pub fn role(&self) -> TenantRole {
        self.role
    }

    /// The membership as the session carries it.
    pub fn membership(&self) -> TenantMembership {
        TenantMembership {
            id: self.tenant.clone(),
            role: self.role,
        }
    }

    /// `FORBIDDEN` unless the member is at least `role`.
    ///
    /// # Errors
    /// `NotAllowed`.
    pub fn require(&self, role: TenantRole) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(TenancyError::NotAllowed(
                "your role in this tenant does not allow this",
            ))
        }
    }

    fn constrain(&self, filter: &Filter) -> Filter {
        Filter::eq(TENANT_FIELD, self.tenant.as_str()).and(filter.clone())
    }

    /// Inserts `doc` with `tenant` set; a `tenant` naming another tenant is refused.
    ///
    /// # Errors
    /// `CrossTenantWrite`, `Invalid` for a non-object, the store's.
    pub async fn insert(&self, collection: &str, mut doc: Value) -> Result<String> {
        let map = doc
            .as_object_mut()
            .ok_or(TenancyError::Invalid("a document must be a JSON object"))?;
        match map.get(TENANT_FIELD) {
            None => {}
            Some(Value::String(t)) if *t == self.tenant => {}
            Some(_) => return Err(TenancyError::CrossTenantWrite),
        }
        map.insert(TENANT_FIELD.into(), Value::String(self.tenant.clone()));
        Ok(self.store.insert(collection, doc).await?)
    }

    /// The document `id` if it belongs to this tenant.
    ///
    /// # Errors
    /// The store's.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        self.find_one(collection, &Filter::id(id)).await
    }

    /// Matching documents of this tenant.
    ///
    /// # Errors
    /// The store's.
    pub async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Value>> {
        Ok(self
            .store
            .find(collection, &self.constrain(filter), options)
            .await?)
    }

    /// The first matching document of this tenant.
    ///
    /// # Errors
    /// The store's.
    pub async fn find_one(&self, collection: &str, filter: &Filter) -> Result<Option<Value>> {
        Ok(self
            .find(collection, filter, &FindOptions::new().limit(1))
            .await?
            .pop())
    }

    /// Number of matching documents of this tenant.
    ///
    /// # Errors
    /// The store's.
    pub async fn count(&self, collection: &str, filter: &Filter) -> Result<u64> {
        Ok(self
            .store
            .count(collection, &self.constrain(filter))
            .await?)
    }

    /// Updates one matching document of this tenant; an upsert inserts it with `tenant` set
    /// (the tenant condition is part of the filter). Updates touching `tenant` are refused.
    ///
    /// # Errors
    /// `CrossTenantWrite`, the store's.
    pub async fn update_one(
        &self,
        collection: &str,
        filter: &Filter,
        update: &Update,
        options: UpdateOptions,
    ) -> Result<Option<Value>> {
        let touches_tenant = update.ops().iter().any(|op| {
            let path = op.path();
            path == TENANT_FIELD || path.starts_with("tenant.")
        });
        if touches_tenant {
            return Err(TenancyError::CrossTenantWrite);
        }
        Ok(self
            .store
            .update_one(collection, &self.constrain(filter), update, options)
            .await?)
    }

    /// Deletes one matching document of this tenant.
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<bool> {
        Ok(self
            .store
            .delete_one(collection, &self.constrain(filter))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::identity::CallerSource;
    use crate::store::sqlite::SqliteStore;

    async fn setup() -> (Tenancy, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        crate::store::bootstrap(store.as_ref()).await.unwrap();
        for openid in ["o-alice", "o-bob", "o-carol", "o-dave"] {
            store
                .insert(USERS, json!({"_id": openid, "openid": openid}))
                .await
                .unwrap();
        }
        let tenancy = Tenancy::new(store.clone()).with_clock(Arc::new(FixedClock::new(1_000)));
        (tenancy, store)
    }

    fn caller(openid: &str, tenant: Option<(&str, TenantRole)>) -> Caller {
        Caller {
            openid: openid.into(),
            appid: "wx1".into(),
            unionid: None,
            tenant: tenant.map(|(id, role)| TenantMembership {
                id: id.into(),
                role,
            }),
            plan: None,
            admin: false,
            source: CallerSource::Session,
        }
    }

    #[tokio::test]
    async fn create_invite_and_list() {
        let (t, store) = setup().await;
        let (tenant, owner) = t.create("o-alice", "  Acme  ").await.unwrap();
        assert_eq!(tenant.name, "Acme");
        assert_eq!(owner.role, TenantRole::Owner);
        let alice = caller("o-alice", Some((&tenant.id, TenantRole::Owner)));
        let bob = t.invite(&alice, "o-bob", TenantRole::Admin).await.unwrap();
        assert_eq!(bob.invited_by.as_deref(), Some("o-alice"));
        // Idempotent for the same role, conflict for another.
        assert_eq!(
            t.invite(&alice, "o-bob", TenantRole::Admin).await.unwrap(),
            bob
        );
        assert!(matches!(
            t.invite(&alice, "o-bob", TenantRole::Member).await,
            Err(TenancyError::AlreadyMember(TenantRole::Admin))
        ));
        // Admins invite members, not admins; members invite nobody; owner is not invitable.
        let bob_c = caller("o-bob", Some((&tenant.id, TenantRole::Admin)));
        assert!(matches!(
            t.invite(&bob_c, "o-carol", TenantRole::Admin).await,
            Err(TenancyError::NotAllowed(_))
        ));
        t.invite(&bob_c, "o-carol", TenantRole::Member)
            .await
            .unwrap();
        let carol = caller("o-carol", Some((&tenant.id, TenantRole::Member)));
        assert!(matches!(
            t.invite(&carol, "o-dave", TenantRole::Member).await,
            Err(TenancyError::NotAllowed(_))
        ));
        assert!(matches!(
            t.invite(&alice, "o-dave", TenantRole::Owner).await,
            Err(TenancyError::Invalid(_))
        ));
        assert!(matches!(
            t.invite(&alice, "o-nobody", TenantRole::Member).await,
            Err(TenancyError::UserNotFound)
        ));
        let members = t.members(&carol).await.unwrap();
        let ids: Vec<_> = members.iter().map(|m| m.openid.as_str()).collect();
        assert_eq!(ids, ["o-alice", "o-bob", "o-carol"]);
        let stored: Tenant = store.get_as(TENANTS, &tenant.id).await.unwrap().unwrap();
        assert_eq!(stored.member_count, 3);
        // A role claimed in a token does not override the stored one.
        let carol_claims_owner = caller("o-carol", Some((&tenant.id, TenantRole::Owner)));
        assert!(matches!(
            t.invite(&carol_claims_owner, "o-dave", TenantRole::Member)
                .await,
            Err(TenancyError::NotAllowed(_))
        ));
        assert_eq!(
            ApiError::from(TenancyError::NoActiveTenant).code(),
            crate::runtime::codes::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn seat_limit_is_enforced() {
        let (t, store) = setup().await;
        let (tenant, _) = t.create("o-alice", "Small").await.unwrap();
        let updated = t.set_plan(&tenant.id, Some("team"), Some(2)).await.unwrap();
        assert_eq!(updated.seats, Some(2));
        let alice = caller("o-alice", Some((&tenant.id, TenantRole::Owner)));
        t.invite(&alice, "o-bob", TenantRole::Member).await.unwrap();
        let err = t
            .invite(&alice, "o-carol", TenantRole::Member)
            .await
            .unwrap_err();
        assert!(matches!(err, TenancyError::SeatLimit { seats: 2 }));
        assert_eq!(ApiError::from(err).code(), SEAT_LIMIT_REACHED);
        assert!(t.membership(&tenant.id, "o-carol").await.unwrap().is_none());
        // More seats: the invite goes through.
        t.set_plan(&tenant.id, Some("team"), Some(3)).await.unwrap();
        t.invite(&alice, "o-carol", TenantRole::Member)
            .await
            .unwrap();
        let stored: Tenant = store.get_as(TENANTS, &tenant.id).await.unwrap().unwrap();
        assert_eq!(stored.member_count, 3);
        assert!(matches!(
            t.set_plan("nope", None, None).await,
            Err(TenancyError::TenantNotFound)
        ));
    }

    #[tokio::test]
    async fn scope_keeps_tenants_apart() {
        let (t, store) = setup().await;
        let (acme, _) = t.create("o-alice", "Acme").await.unwrap();
        let (globex, _) = t.create("o-bob", "Globex").await.unwrap();
        let alice = t
            .scope(&caller("o-alice", Some((&acme.id, TenantRole::Owner))))
            .await
            .unwrap();
        let bob = t
            .scope(&caller("o-bob", Some((&globex.id, TenantRole::Owner))))
            .await
            .unwrap();
        let id = alice
            .insert("projects", json!({"_id": "p1", "title": "secret plan"}))
            .await
            .unwrap();
        assert_eq!(
            store.get("projects", &id).await.unwrap().unwrap()["tenant"],
            json!(acme.id)
        );
        // Bob's scope sees nothing of Acme's, whatever filter he passes.
        assert!(bob.get("projects", "p1").await.unwrap().is_none());
        assert!(
            bob.find(
                "projects",
                &Filter::eq("tenant", acme.id.as_str()),
                &FindOptions::new()
            )
            .await
            .unwrap()
            .is_empty()
        );
        assert_eq!(bob.count("projects", &Filter::All).await.unwrap(), 0);
        let changed = bob
            .update_one(
                "projects",
                &Filter::id("p1"),
                &Update::new().set("title", "stolen"),
                UpdateOptions::default(),
            )
            .await
            .unwrap();
        assert!(changed.is_none());
        assert!(!bob.delete_one("projects", &Filter::id("p1")).await.unwrap());
        // Writes naming another tenant, or moving a document, are refused.
        assert!(matches!(
            bob.insert("projects", json!({"tenant": acme.id, "title": "x"}))
                .await,
            Err(TenancyError::CrossTenantWrite)
        ));
        assert!(matches!(
            alice
                .update_one(
                    "projects",
                    &Filter::id("p1"),
                    &Update::new().set("tenant", globex.id.as_str()),
                    UpdateOptions::default()
                )
                .await,
            Err(TenancyError::CrossTenantWrite)
        ));
        assert_eq!(
            alice.get("projects", "p1").await.unwrap().unwrap()["title"],
            json!("secret plan")
        );
        // A token naming a tenant the caller is not (or no longer) a member of is refused.
        assert!(matches!(
            t.scope(&caller("o-bob", Some((&acme.id, TenantRole::Owner))))
                .await,
            Err(TenancyError::NotMember)
        ));
        assert!(matches!(
            t.scope(&caller("o-bob", None)).await,
            Err(TenancyError::NoActiveTenant)
        ));
        // Upserts land in the scope's tenant.
        let doc = bob
            .update_one(
                "projects",
                &Filter::id("p2"),
                &Update::new().set("title", "new"),
                UpdateOptions::upsert(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(doc["tenant"], json!(globex.id));
    }

    #[tokio::test]
    async fn activate_checks_membership_and_records_the_choice() {
        let (t, store) = setup().await;
        let (acme, _) = t.create("o-alice", "Acme").await.unwrap();
        assert!(matches!(
            t.activate("o-bob", &acme.id).await,
            Err(TenancyError::NotMember)
        ));
        let (tenant, member) = t.activate("o-alice", &acme.id).await.unwrap();
        assert_eq!(
            (tenant.id.as_str(), member.role),
            (acme.id.as_str(), TenantRole::Owner)
        );
        assert_eq!(
            store.get(USERS, "o-alice").await.unwrap().unwrap()["activeTenant"],
            json!(acme.id)
        );
        assert!(matches!(
            t.create("o-alice", " ").await,
            Err(TenancyError::Invalid(_))
        ));
        assert!(matches!(
            t.create("o-alice", &"x".repeat(65)).await,
            Err(TenancyError::Invalid(_))
        ));
    }
}
