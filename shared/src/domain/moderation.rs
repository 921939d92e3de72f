//! User posts under moderation: the state of a post from its checks, the admin's decisions,
//! and what a post may contain. Pure: the `moderation` module loads, asks, and writes back.
//!
//! A post is `approved` only when its text and every image passed; any `risky` finding rejects
//! it; otherwise a `review` finding sends it to the human queue (`in_review`); while an image
//! check is outstanding it stays `pending`.

use serde::{Deserialize, Serialize};

use crate::wechat::Suggest;

/// Longest post text, in characters (the Mini Program's limit; `msg_sec_check` takes 2500).
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most images in one post (`wx.chooseMedia` picks at most 9).
pub const MAX_MEDIA: usize = 9;
/// Longest file id accepted.
pub const MAX_FILE_ID_LEN: usize = 512;
/// Longest rejection reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// Image extensions `media_check_async` reads (jpg, jpeg, png, bmp, gif: first frame).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "gif"];

/// Where a post is in moderation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostStatus {
    /// Machine checks outstanding.
    Pending,
    /// Public.
    Approved,
    /// Not shown to anyone but its author.
    Rejected,
    /// Waiting for a human.
    InReview,
}

impl PostStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PostStatus::Pending => "pending",
            PostStatus::Approved => "approved",
            PostStatus::Rejected => "rejected",
            PostStatus::InReview => "in_review",
        }
    }

    /// Approved and rejected are final for the machine (only an admin changes them).
    pub fn is_final(self) -> bool {
        matches!(self, PostStatus::Approved | PostStatus::Rejected)
    }
}

/// The state of one check (the text's or one image's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// Submitted, no verdict yet.
    Pending,
    /// Passed.
    Pass,
    /// Needs a human.
    Review,
    /// Violating.
    Risky,
}

impl From<Suggest> for CheckState {
    fn from(s: Suggest) -> Self {
        match s {
            Suggest::Pass => CheckState::Pass,
            Suggest::Review => CheckState::Review,
            Suggest::Risky => CheckState::Risky,
        }
    }
}

impl CheckState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Pass => "pass",
            CheckState::Review => "review",
            CheckState::Risky => "risky",
        }
    }
}

/// The status the checks give: any risky → rejected; any pending → pending; any review →
/// in review; all passed → approved.
pub fn machine_status(checks: impl IntoIterator<Item = CheckState>) -> PostStatus {
    let (mut pending, mut review) = (false, false);
    for c in checks {
        match c {
            CheckState::Risky => return PostStatus::Rejected,
            CheckState::Pending => pending = true,
            CheckState::Review => review = true,
            CheckState::Pass => {}
        }
    }
    if pending {
        PostStatus::Pending
    } else if review {
        PostStatus::InReview
    } else {
        PostStatus::Approved
    }
}

/// What an admin decides in the review queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Publish.
    Approve,
    /// Refuse (with a reason kept on the post).
    Reject,
}

/// An admin decision that does not apply to the post's current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a post that is {} cannot be {}", .from.as_str(), match .decision { Decision::Approve => "approved", Decision::Reject => "rejected" })]
pub struct TransitionError {
    /// The post's status.
    pub from: PostStatus,
    /// What was asked.
    pub decision: Decision,
}

/// The status after an admin decision. Approving needs a post in the queue (a pending post
/// has unchecked images; an approved one needs nothing); rejecting works on anything not
/// already rejected (taking down a published post included).
///
/// # Errors
/// [`TransitionError`] otherwise.
pub fn decide(from: PostStatus, decision: Decision) -> Result<PostStatus, TransitionError> {
    match (from, decision) {
        (PostStatus::InReview, Decision::Approve) => Ok(PostStatus::Approved),
        (PostStatus::Rejected, Decision::Reject) | (_, Decision::Approve) => {
            Err(TransitionError { from, decision })
        }
        (_, Decision::Reject) => Ok(PostStatus::Rejected),
    }
}

/// Why a media entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Not a CloudBase file id under `ugc/<openid>/`.
    #[error("file {0} is not under the caller's upload folder ugc/<openid>/")]
    NotOwned(String),
    /// Not an image type the checks read.
    #[error("{0}")]
    Unsupported(String),
}

/// A CloudBase storage file id: `cloud://<env>.<bucket>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef<'a> {
    /// The environment id (before the first `.` of the host part).
    pub env: &'a str,
    /// The path inside the bucket, without a leading `/`.
    pub path: &'a str,
}

/// Parses a `cloud://` file id; `None` for anything else.
pub fn parse_file_id(file_id: &str) -> Option<FileRef<'_>> {
    let rest = file_id.strip_prefix("cloud://")?;
    let (host, path) = rest.split_once('/')?;
    let env = host.split('.').next().filter(|e| !e.is_empty())?;
    Some(FileRef { env, path })
}

/// Checks that `file_id` is an image uploaded by `openid`: a `cloud://` id whose path is
/// `ugc/<openid>/<name>.<image extension>`, with no `..`, empty segments or sub-folders.
///
/// # Errors
/// [`MediaError::NotOwned`] or [`MediaError::Unsupported`].
pub fn check_media(file_id: &str, media_type: &str, openid: &str) -> Result<(), MediaError> {
    if media_type != "image" {
        return Err(MediaError::Unsupported(format!(
            "media type `{media_type}` is not supported; only `image`"
        )));
    }
    let not_owned = || MediaError::NotOwned(file_id.to_owned());
    if file_id.len() > MAX_FILE_ID_LEN || openid.is_empty() {
        return Err(not_owned());
    }
    let file = parse_file_id(file_id).ok_or_else(not_owned)?;
    let name = file
        .path
        .strip_prefix("ugc/")
        .and_then(|p| p.strip_prefix(openid))
        .and_then(|p| p.strip_prefix('/'))
        .ok_or_else(not_owned)?;
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.contains("..") || name.starts_with('.') || !name.chars().all(safe) {
        return Err(not_owned());
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        return Err(MediaError::Unsupported(format!(
            "file type `.{ext}` is not supported; use {}",
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    Ok(())
}

/// The first `max` characters of `text`, with `…` when cut (subscribe-message `thing` fields
/// take 20 characters).
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckState::{Pass, Pending, Review, Risky};

    #[test]
    fn status_from_checks() {
        assert_eq!(machine_status([Pass]), PostStatus::Approved);
        assert_eq!(machine_status([]), PostStatus::Approved);
        assert_eq!(machine_status([Pass, Pending]), PostStatus::Pending);
        assert_eq!(machine_status([Review, Pending]), PostStatus::Pending);
        assert_eq!(machine_status([Review, Pass]), PostStatus::InReview);
        assert_eq!(machine_status([Pass, Pending, Risky]), PostStatus::Rejected);
        assert_eq!(machine_status([Risky, Review]), PostStatus::Rejected);
    }

    #[test]
    fn admin_decisions() {
        use Decision::{Approve, Reject};
        use PostStatus::{Approved, InReview, Pending, Rejected};
        assert_eq!(decide(InReview, Approve), Ok(Approved));
        assert_eq!(decide(InReview, Reject), Ok(Rejected));
        assert_eq!(decide(Approved, Reject), Ok(Rejected));
        assert_eq!(decide(Pending, Reject), Ok(Rejected));
        for from in [Pending, Approved, Rejected] {
            assert!(decide(from, Approve).is_err(), "{from:?}");
        }
        let e = decide(Rejected, Reject).unwrap_err();
        assert_eq!(e.to_string(), "a post that is rejected cannot be rejected");
    }

    #[test]
    fn media_must_be_own_images() {
        let ok = "cloud://prod-1a2b.7072-prod-1a2b-1300000000/ugc/oUser1/1700000000000-0.jpg";
        assert_eq!(check_media(ok, "image", "oUser1"), Ok(()));
        assert_eq!(
            parse_file_id(ok),
            Some(FileRef {
                env: "prod-1a2b",
                path: "ugc/oUser1/1700000000000-0.jpg"
            })
        );
        assert!(check_media("cloud://env/ugc/o/1.PNG", "image", "o").is_ok());
        let not_owned = [
            "cloud://env/ugc/oOther/1.jpg",
            "cloud://env/ugc/oUser10/1.jpg",
            "cloud://env/ugc/oUser1/../oOther/1.jpg",
            "cloud://env/ugc/oUser1/sub/1.jpg",
            "cloud://env/ugc/oUser1/",
            "cloud://env/other/oUser1/1.jpg",
            "https://evil.example/ugc/oUser1/1.jpg",
            "ugc/oUser1/1.jpg",
            "cloud:///ugc/oUser1/1.jpg",
        ];
        for id in not_owned {
            assert!(
                matches!(
                    check_media(id, "image", "oUser1"),
                    Err(MediaError::NotOwned(_))
                ),
                "{id}"
            );
        }
        let long = format!("cloud://env/ugc/o/{}.jpg", "a".repeat(MAX_FILE_ID_LEN));
        assert!(matches!(
            check_media(&long, "image", "o"),
            Err(MediaError::NotOwned(_))
        ));
        for (id, ty) in [
            ("cloud://env/ugc/o/1.mp4", "image"),
            ("cloud://env/ugc/o/1", "image"),
            ("cloud://env/ugc/o/1.jpg", "video"),
        ] {
            assert!(
                matches!(check_media(id, ty, "o"), Err(MediaError::Unsupported(_))),
                "{id} {ty}"
            );
        }
    }

    #[test]
    fn excerpts() {
        assert_eq!(excerpt("  short ", 20), "short");
        assert_eq!(excerpt("一二三四五六", 4), "一二三…");
    }
}
