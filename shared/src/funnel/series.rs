//! Content series: who follows which series (`series_follows`), and the announcement of new
//! content in a series to its followers (`series_announcements`), one `new_content` notice
//! per follower ([`super::notices`]).
//!
//! A content item may carry a `series` id (`domain::content::Content::series`). A user
//! follows or unfollows a series (gatedContent `followSeries`, identity from the session):
//!
//! ```json
//! {"_id": "<series>:<openid>", "series": "…", "openid": "…", "followedAt": 1700000000}
//! ```
//!
//! When an admin publishes content in a series (gatedContent `publishContent`), [`announce`]
//! records one announcement per content id:
//!
//! ```json
//! {"_id": "<content id>", "series": "…", "title": "…", "state": "pending" | "done",
//!  "after": "<last follower openid handled>", "notices": 12, "createdAt": 1700000000,
//!  "doneAt": 1700000000?}
//! ```
//!
//! [`fan_out`] pages through the series' followers in openid order after `after`, records a
//! notice for each (keyed `content:<content id>:<openid>`, so a follower is told about one
//! content once, whatever re-publishes or re-runs happen) and moves `after` with a
//! conditional update. Publishing fans out a first batch at once; reconcile's funnel step
//! ([`announce_due`]) finishes larger series within its budget. A crash anywhere leaves the
//! announcement `pending` with `after` at or before the last follower told, and the next run
//! repeats at most one page, whose notices already exist. Re-publishing content already
//! announced to its series announces nothing; moving it to another series announces it
//! to that series' followers (those who follow both still hear once).
//!
//! Delivery is the budgeted sender's ([`super::notices::send_due`]): only to people who follow
//! the Official Account now, never to unsubscribed ones.

use serde::Serialize;
use serde_json::{Value, json};

use super::FunnelError;
use super::notices::{self, Notice};
use crate::store::collections::{SERIES_ANNOUNCEMENTS, SERIES_FOLLOWS};
use crate::store::{Filter, FindOptions, Store, StoreError, Update, UpdateOptions};

/// Followers one page of a fan-out reads.
pub const PAGE: u64 = 100;

/// Whether `id` can be a series id: 1 to 64 characters of `[A-Za-z0-9_.-]` (the rule of
/// content ids).
pub fn valid_series(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn follow_id(series: &str, openid: &str) -> String {
    format!("{series}:{openid}")
}

/// `openid` follows `series`. Returns `false` when it already did.
///
/// # Errors
/// Store failures.
pub async fn follow(
    store: &dyn Store,
    series: &str,
    openid: &str,
    now: i64,
) -> Result<bool, FunnelError> {
    let doc = json!({
        "_id": follow_id(series, openid),
        "series": series,
        "openid": openid,
        "followedAt": now,
    });
    match store.insert(SERIES_FOLLOWS, doc).await {
        Ok(_) => Ok(true),
        Err(StoreError::DuplicateKey { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `openid` stops following `series`. Returns `false` when it did not follow it.
///
/// # Errors
/// Store failures.
pub async fn unfollow(store: &dyn Store, series: &str, openid: &str) -> Result<bool, FunnelError> {
    Ok(store
        .delete_one(SERIES_FOLLOWS, &Filter::id(follow_id(series, openid)))
        .await?)
}

/// Whether `openid` follows `series`.
///
/// # Errors
/// Store failures.
pub async fn is_following(
    store: &dyn Store,
    series: &str,
    openid: &str,
) -> Result<bool, FunnelError> {
    Ok(store
        .get(SERIES_FOLLOWS, &follow_id(series, openid))
        .await?
        .is_some())
}

/// Records the announcement of content `content_id` (titled `title`) to the followers of
/// `series`. Returns `false` when it was already announced to that series (nothing to do).
///
/// # Errors
/// Store failures.
pub async fn announce(
    store: &dyn Store,
    content_id: &str,
    series: &str,
    title: &str,
    now: i64,
) -> Result<bool, FunnelError> {
    let doc = json!({
        "_id": content_id,
        "series": series,
        "title": title,
        "state": "pending",
        "after": "",
        "notices": 0,
        "createdAt": now,
    });
    match store.insert(SERIES_ANNOUNCEMENTS, doc).await {
        Ok(_) => Ok(true),
        Err(StoreError::DuplicateKey { .. }) => {
            // Moved to another series: announce it there, from its first follower.
            let moved = store
                .update_one(
                    SERIES_ANNOUNCEMENTS,
                    &Filter::id(content_id).and(Filter::ne("series", series)),
                    &Update::new()
                        .set("series", series)
                        .set("title", title)
                        .set("state", "pending")
                        .set("after", "")
                        .unset("doneAt"),
                    UpdateOptions::default(),
                )
                .await?;
            Ok(moved.is_some())
        }
        Err(e) => Err(e.into()),
    }
}

/// What a fan-out did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FanOut {
    /// Notices newly recorded.
    pub notices: u32,
    /// Announcements finished (every follower told).
    pub done: u32,
    /// Announcements left pending (budget spent, or another run moved them meanwhile).
    pub pending: u32,
}

impl FanOut {
    fn add(&mut self, other: FanOut) {
        self.notices += other.notices;
        self.done += other.done;
        self.pending += other.pending;
    }
}

/// Tells the followers of the pending announcement of `content_id`, at most `budget` of
/// them (each one insert). Does nothing when there is none pending.
///
/// # Errors
/// Store failures (the announcement stays pending; a re-run repeats at most one page).
pub async fn fan_out(
    store: &dyn Store,
    content_id: &str,
    budget: u64,
    now: i64,
) -> Result<FanOut, FunnelError> {
    let mut budget = budget;
    match store.get(SERIES_ANNOUNCEMENTS, content_id).await? {
        Some(doc) if doc["state"] == "pending" => fan_out_doc(store, doc, &mut budget, now).await,
        _ => Ok(FanOut::default()),
    }
}

/// One announcement's fan-out; `budget` (followers still allowed) goes down as they are told.
async fn fan_out_doc(
    store: &dyn Store,
    mut doc: Value,
    budget: &mut u64,
    now: i64,
) -> Result<FanOut, FunnelError> {
    let mut out = FanOut::default();
    let id = doc["_id"].as_str().unwrap_or_default().to_owned();
    let series = doc["series"].as_str().unwrap_or_default().to_owned();
    let title = doc["title"].as_str().unwrap_or_default().to_owned();
    loop {
        let after = doc["after"].as_str().unwrap_or_default().to_owned();
        if *budget == 0 {
            out.pending += 1;
            return Ok(out);
        }
        let limit = (*budget).min(PAGE);
        let page = store
            .find(
                SERIES_FOLLOWS,
                &Filter::eq("series", series.as_str()).and(Filter::gt("openid", after.as_str())),
                &FindOptions::new().sort_asc("openid").limit(limit),
            )
            .await?;
        let mut told = 0u32;
        for follower in &page {
            let openid = follower["openid"].as_str().unwrap_or_default();
            if notices::notify(store, &Notice::new_content(&id, openid, &title), now).await? {
                told += 1;
            }
        }
        out.notices += told;
        *budget = budget.saturating_sub(page.len() as u64);
        let last = page
            .last()
            .and_then(|f| f["openid"].as_str())
            .unwrap_or(after.as_str())
            .to_owned();
        let finished = (page.len() as u64) < limit;
        let mut update = Update::new()
            .set("after", last.as_str())
            .inc("notices", i64::from(told));
        if finished {
            update = update.set("state", "done").set("doneAt", now);
        }
        // Only the run that read `after` moves it (another run may hold the same page).
        let moved = store
            .update_one(
                SERIES_ANNOUNCEMENTS,
                &Filter::id(id.as_str())
                    .and(Filter::eq("state", "pending"))
                    .and(Filter::eq("series", series.as_str()))
                    .and(Filter::eq("after", after.as_str())),
                &update,
                UpdateOptions::default(),
            )
            .await?;
        match moved {
            Some(_) if finished => {
                tracing::info!(content = %id, series = %series, "new content announced");
                out.done += 1;
                return Ok(out);
            }
            Some(next) => doc = next,
            None => {
                out.pending += 1;
                return Ok(out);
            }
        }
    }
}

/// Continues pending announcements, oldest first, telling at most `budget` followers in all
/// (a reconcile step).
///
/// # Errors
/// Store failures.
pub async fn announce_due(store: &dyn Store, now: i64, budget: u64) -> Result<FanOut, FunnelError> {
    let mut out = FanOut::default();
    if budget == 0 {
        return Ok(out);
    }
    let pending = store
        .find(
            SERIES_ANNOUNCEMENTS,
            &Filter::eq("state", "pending"),
            &FindOptions::new().sort_asc("createdAt").limit(20),
        )
        .await?;
    let mut left = budget;
    for doc in pending {
        if left == 0 {
            out.pending += 1;
            continue;
        }
        out.add(fan_out_doc(store, doc, &mut left, now).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::collections::OA_MESSAGES;
    use crate::store::sqlite::SqliteStore;

    async fn store() -> SqliteStore {
        let store = SqliteStore::open_in_memory().await.unwrap();
        crate::store::bootstrap(&store).await.unwrap();
        store
    }

    async fn notices_for(store: &dyn Store, content: &str) -> Vec<String> {
        let mut to: Vec<String> = store
            .find(
                OA_MESSAGES,
                &Filter::eq("kind", "new_content"),
                &FindOptions::new(),
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|n| {
                n["event"]
                    .as_str()
                    .is_some_and(|e| e.starts_with(&format!("content:{content}:")))
            })
            .map(|n| n["mpOpenid"].as_str().unwrap().to_owned())
            .collect();
        to.sort();
        to
    }

    #[test]
    fn series_ids() {
        assert!(valid_series("rust-weekly_2.0"));
        assert!(!valid_series(""));
        assert!(!valid_series("a:b"));
        assert!(!valid_series(&"s".repeat(65)));
    }

    #[tokio::test]
    async fn follow_and_unfollow_are_idempotent() {
        let st = store().await;
        assert!(follow(&st, "weekly", "o1", 1).await.unwrap());
        assert!(!follow(&st, "weekly", "o1", 2).await.unwrap());
        assert!(is_following(&st, "weekly", "o1").await.unwrap());
        assert!(!is_following(&st, "other", "o1").await.unwrap());
        assert!(unfollow(&st, "weekly", "o1").await.unwrap());
        assert!(!unfollow(&st, "weekly", "o1").await.unwrap());
        assert!(!is_following(&st, "weekly", "o1").await.unwrap());
    }

    #[tokio::test]
    async fn each_follower_is_told_once_across_pages_republishes_and_moves() {
        let st = store().await;
        for i in 0..5 {
            follow(&st, "weekly", &format!("o{i}"), 1).await.unwrap();
        }
        follow(&st, "daily", "o0", 1).await.unwrap();
        follow(&st, "daily", "o9", 1).await.unwrap();
        assert!(announce(&st, "c1", "weekly", "Issue 1", 10).await.unwrap());
        // A budget of 2: two followers now, the rest later.
        let first = fan_out(&st, "c1", 2, 10).await.unwrap();
        assert_eq!(
            first,
            FanOut {
                notices: 2,
                done: 0,
                pending: 1
            }
        );
        // Publishing again changes nothing; the next run finishes.
        assert!(!announce(&st, "c1", "weekly", "Issue 1", 11).await.unwrap());
        let rest = announce_due(&st, 12, 100).await.unwrap();
        assert_eq!((rest.notices, rest.done, rest.pending), (3, 1, 0));
        assert_eq!(notices_for(&st, "c1").await, ["o0", "o1", "o2", "o3", "o4"]);
        let doc = st.get(SERIES_ANNOUNCEMENTS, "c1").await.unwrap().unwrap();
        assert_eq!(
            (doc["state"].as_str(), doc["notices"].as_i64()),
            (Some("done"), Some(5))
        );
        // Nothing left.
        assert_eq!(announce_due(&st, 13, 100).await.unwrap(), FanOut::default());
        assert_eq!(
            fan_out(&st, "c1", 100, 13).await.unwrap(),
            FanOut::default()
        );
        // Moved to another series: its followers hear, o0 (in both) does not hear twice.
        assert!(announce(&st, "c1", "daily", "Issue 1", 14).await.unwrap());
        let moved = fan_out(&st, "c1", 100, 14).await.unwrap();
        assert_eq!((moved.notices, moved.done), (1, 1));
        assert_eq!(
            notices_for(&st, "c1").await,
            ["o0", "o1", "o2", "o3", "o4", "o9"]
        );
        // A series nobody follows is done at once.
        assert!(announce(&st, "c2", "empty", "Alone", 15).await.unwrap());
        let none = fan_out(&st, "c2", 100, 15).await.unwrap();
        assert_eq!((none.notices, none.done), (0, 1));
    }

    #[tokio::test]
    async fn a_run_that_lost_the_page_to_another_leaves_it_and_nobody_hears_twice() {
        let st = store().await;
        for i in 0..3 {
            follow(&st, "weekly", &format!("o{i}"), 1).await.unwrap();
        }
        announce(&st, "c1", "weekly", "Issue 1", 10).await.unwrap();
        let stale = st.get(SERIES_ANNOUNCEMENTS, "c1").await.unwrap().unwrap();
        // Another run finishes first; the stale run repeats the page and moves nothing.
        fan_out(&st, "c1", 100, 10).await.unwrap();
        let late = fan_out_doc(&st, stale, &mut 100, 10).await.unwrap();
        assert_eq!(
            late,
            FanOut {
                notices: 0,
                done: 0,
                pending: 1
            }
        );
        assert_eq!(notices_for(&st, "c1").await, ["o0", "o1", "o2"]);
        let doc = st.get(SERIES_ANNOUNCEMENTS, "c1").await.unwrap().unwrap();
        assert_eq!(
            (doc["state"].as_str(), doc["notices"].as_i64()),
            (Some("done"), Some(3))
        );
    }
}
