//! Team actions beyond membership: removing a member and the shared notes
//! (`wemint::notes`, optimistic concurrency). Each identifies the caller first; the library
//! checks membership from the store, not from the token.

use serde::Deserialize;
use serde_json::{Value, json};
use wemint::notes::Edit;
use wemint::runtime::{ApiError, CallRequest};

use super::State;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveInput {
    openid: String,
}

/// `removeMember`: owners remove anyone but themselves, admins remove members, anyone leaves
/// (their own openid). `{removed: bool}`.
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `FORBIDDEN`, `INTERNAL`.
pub(crate) async fn remove_member(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let input: RemoveInput = req.parse()?;
    let removed = state.tenancy.remove(&caller, &input.openid).await?;
    Ok(json!({ "removed": removed }))
}

/// `notes`: the shared notes of the caller's active tenant, `{notes: {text, version, …}}`.
///
/// # Errors
/// `UNAUTHENTICATED`, `FORBIDDEN` (no active tenant, not a member), `INTERNAL`.
pub(crate) async fn notes(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let doc = state.notes.get(&caller).await?;
    Ok(json!({ "notes": doc.view() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditInput {
    version: i64,
    text: String,
}

/// `editNotes`: `{version, text}` where `version` is the one the edit was based on.
/// `{saved: true, notes}` or, when someone saved first, `{saved: false, conflict: true,
/// notes}` with the current notes to merge (nothing written).
///
/// # Errors
/// `UNAUTHENTICATED`, `BAD_REQUEST`, `FORBIDDEN`, `INTERNAL`.
pub(crate) async fn edit_notes(state: &State, req: &CallRequest) -> Result<Value, ApiError> {
    let caller = state.auth.caller(req)?;
    let input: EditInput = req.parse()?;
    Ok(
        match state
            .notes
            .edit(&caller, input.version, &input.text)
            .await?
        {
            Edit::Saved(doc) => json!({ "saved": true, "notes": doc.view() }),
            Edit::Conflict(doc) => json!({ "saved": false, "conflict": true, "notes": doc.view() }),
        },
    )
}
