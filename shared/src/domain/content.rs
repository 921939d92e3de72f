//! Paywalled content: what a piece of content is, which part is free, what unlocks the rest,
//! and the access decision for one caller.
//!
//! A [`Content`] is stored in `contents` (`_id` = its id) exactly as it serializes, and is
//! written the same way in `wemint-dev seed` files. Deciding access is pure: the function
//! loads what the caller holds ([`Holdings`]: owned skus, plans with access right now) and
//! asks [`decide`]; the paywall is built from the catalog by [`offers`]. Protected media never
//! leaves as a file id: views carry media slots that the function fills with short-lived URLs.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::catalog::{Channel, Product, ProductKind};
use super::money::Fen;
use super::subscription::Plan;

/// What kind of content it is; decides how the Mini Program renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    /// Text.
    Article,
    /// A series of lessons.
    Course,
    /// An audio file with notes.
    Audio,
    /// A video file with notes.
    Video,
}

impl ContentKind {
    /// The wire name (`article`, `course`, `audio`, `video`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Article => "article",
            ContentKind::Course => "course",
            ContentKind::Audio => "audio",
            ContentKind::Video => "video",
        }
    }
}

/// One piece of gated content, as stored in `contents` and written in seed files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// Stable id, unique (also the document `_id`).
    pub id: String,
    /// What it is.
    pub kind: ContentKind,
    /// Title shown in lists and on the paywall.
    pub title: String,
    /// The free preview: shown to everyone.
    pub summary: String,
    /// The protected body (markdown); only for entitled callers.
    #[serde(default)]
    pub body: String,
    /// Course lessons, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lessons: Option<Vec<Lesson>>,
    /// Storage file id of the protected media (audio/video), served through a temp URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_file_id: Option<String>,
    /// What unlocks it. Empty means free for everyone.
    #[serde(default)]
    pub unlocked_by: UnlockedBy,
    /// Publication time (Unix seconds): lists show the newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<i64>,
    /// The series it belongs to (same rule as ids); its followers hear about new content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
}

/// One lesson of a course.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lesson {
    /// Lesson title (always shown).
    pub title: String,
    /// Lesson body (markdown).
    #[serde(default)]
    pub body: String,
    /// Storage file id of the lesson media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_file_id: Option<String>,
    /// A free lesson: part of the preview, shown in full to everyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preview: bool,
}

/// What opens a content: owning any of `skus` (one-off purchases), or an active subscription
/// to any of `plans` (memberships and tenant plans) or a higher tier of the same kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlockedBy {
    /// Skus whose purchase unlocks it.
    #[serde(default)]
    pub skus: Vec<String>,
    /// Plans whose active subscription unlocks it.
    #[serde(default)]
    pub plans: Vec<String>,
}

impl UnlockedBy {
    /// Nothing unlocks it because nothing is needed.
    pub fn is_free(&self) -> bool {
        self.skus.is_empty() && self.plans.is_empty()
    }
}

/// A content definition that cannot be published as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The id is empty, too long or has characters outside `[A-Za-z0-9_-.]`.
    #[error("content id `{0}` must be 1-64 characters of [A-Za-z0-9_-.]")]
    BadId(String),
    /// The title is empty or too long.
    #[error("content {0}: title must be 1-200 characters")]
    BadTitle(String),
    /// Lessons on something that is not a course, or a course without lessons.
    #[error("content {0}: a course has lessons, other kinds have none")]
    Lessons(String),
    /// A media file id that is not a storage file id.
    #[error("content {0}: media file ids must be `cloud://` file ids")]
    BadMedia(String),
    /// A series id that breaks the id rule.
    #[error("content {0}: series must be 1-64 characters of [A-Za-z0-9_-.]")]
    BadSeries(String),
}

fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn valid_media(id: Option<&String>) -> bool {
    id.is_none_or(|id| id.starts_with("cloud://") && id.len() > "cloud://".len())
}

impl Content {
    /// Checks the rules an import must enforce (references to skus and plans are checked by
    /// the importer, which knows the catalog).
    pub fn validate(&self) -> Result<(), ContentError> {
        if !valid_key(&self.id) {
            return Err(ContentError::BadId(self.id.clone()));
        }
        let title_len = self.title.chars().count();
        if title_len == 0 || title_len > 200 {
            return Err(ContentError::BadTitle(self.id.clone()));
        }
        let is_course = self.kind == ContentKind::Course;
        if is_course != self.lessons.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(ContentError::Lessons(self.id.clone()));
        }
        let lesson_media = self
            .lessons
            .iter()
            .flatten()
            .map(|l| l.media_file_id.as_ref());
        if !valid_media(self.media_file_id.as_ref()) || !lesson_media.clone().all(valid_media) {
            return Err(ContentError::BadMedia(self.id.clone()));
        }
        if self.lessons.iter().flatten().any(|l| l.title.is_empty()) {
            return Err(ContentError::BadTitle(self.id.clone()));
        }
        if self.series.as_deref().is_some_and(|s| !valid_key(s)) {
            return Err(ContentError::BadSeries(self.id.clone()));
        }
        Ok(())
    }

    /// The view for a caller with access: everything, with media slots to fill.
    pub fn full_view(&self) -> ContentView {
        ContentView {
            id: self.id.clone(),
            kind: self.kind,
            title: self.title.clone(),
            summary: self.summary.clone(),
            body: Some(self.body.clone()),
            media: self.media_file_id.clone(),
            lessons: self.lessons.as_ref().map(|lessons| {
                lessons
                    .iter()
                    .map(|l| LessonView {
                        title: l.title.clone(),
                        preview: l.preview,
                        locked: false,
                        body: Some(l.body.clone()),
                        media: l.media_file_id.clone(),
                    })
                    .collect()
            }),
        }
    }

    /// The preview for a caller without access: title, summary, lesson titles, and the free
    /// lessons in full. No protected body, no protected media.
    pub fn preview_view(&self) -> ContentView {
        ContentView {
            id: self.id.clone(),
            kind: self.kind,
            title: self.title.clone(),
            summary: self.summary.clone(),
            body: None,
            media: None,
            lessons: self.lessons.as_ref().map(|lessons| {
                lessons
                    .iter()
                    .map(|l| LessonView {
                        title: l.title.clone(),
                        preview: l.preview,
                        locked: !l.preview,
                        body: l.preview.then(|| l.body.clone()),
                        media: l.media_file_id.clone().filter(|_| l.preview),
                    })
                    .collect()
            }),
        }
    }
}

/// What a caller sees of a content. `media` holds storage file ids until the function swaps
/// them for short-lived URLs ([`ContentView::into_json`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentView {
    /// Content id.
    pub id: String,
    /// Kind.
    pub kind: ContentKind,
    /// Title.
    pub title: String,
    /// Free preview text.
    pub summary: String,
    /// Protected body, when shown.
    pub body: Option<String>,
    /// Protected media file id, when shown.
    pub media: Option<String>,
    /// Lessons (courses).
    pub lessons: Option<Vec<LessonView>>,
}

/// What a caller sees of a lesson.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LessonView {
    /// Title.
    pub title: String,
    /// A free lesson.
    pub preview: bool,
    /// Locked for this caller (body and media withheld).
    pub locked: bool,
    /// Body, when shown.
    pub body: Option<String>,
    /// Media file id, when shown.
    pub media: Option<String>,
}

/// A short-lived URL standing in for a storage file id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaUrl {
    /// The URL.
    pub url: String,
    /// When it stops working, Unix seconds.
    pub expires_at: i64,
}

impl ContentView {
    /// Every media file id the view shows, so the caller can sign them in one batch.
    pub fn media_file_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.media.iter().cloned().collect();
        for lesson in self.lessons.iter().flatten() {
            ids.extend(lesson.media.iter().cloned());
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// The API shape (`docs/api.md`, `content`), each media file id replaced by its URL
    /// from `urls`. A media file without a URL is left out rather than exposed.
    pub fn into_json(self, urls: &impl Fn(&str) -> Option<MediaUrl>) -> Value {
        let mut v = json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "title": self.title,
            "summary": self.summary,
        });
        if let Some(body) = self.body {
            v["body"] = json!(body);
        }
        if let Some(media) = self.media.as_deref().and_then(urls) {
            v["media"] = json!(media);
        }
        if let Some(lessons) = self.lessons {
            let lessons: Vec<Value> = lessons
                .into_iter()
                .map(|l| {
                    let mut lv =
                        json!({"title": l.title, "preview": l.preview, "locked": l.locked});
                    if let Some(body) = l.body {
                        lv["body"] = json!(body);
                    }
                    if let Some(media) = l.media.as_deref().and_then(urls) {
                        lv["media"] = json!(media);
                    }
                    lv
                })
                .collect();
            v["lessons"] = json!(lessons);
        }
        v
    }
}

/// Where a subscription comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// The caller's own membership.
    Membership,
    /// The caller's active tenant's plan.
    Tenant,
}

/// A plan the caller has access through right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPlan {
    /// The plan in force.
    pub plan: Plan,
    /// Whose subscription it is.
    pub source: PlanSource,
}

/// Everything a caller holds that can open content, at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Skus owned through one-off purchases (not revoked).
    pub skus: BTreeSet<String>,
    /// Plans with access right now (state derived from time: trial, active, past due,
    /// grace, canceled before its end).
    pub plans: Vec<HeldPlan>,
}

/// Why a caller may see the full content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Via {
    /// Nothing is needed.
    Free,
    /// A one-off purchase.
    Purchase {
        /// The sku owned.
        sku: String,
    },
    /// The caller's membership.
    Membership {
        /// The plan in force.
        plan: String,
    },
    /// The caller's tenant's plan.
    TenantPlan {
        /// The plan in force.
        plan: String,
    },
}

/// Whether `held` opens content that asks for `required`: the same plan, or a higher tier of
/// the same kind (personal plans have no seats, tenant plans have seats), since a higher tier
/// includes the lower ones and an upgrade must not lose access.
fn plan_covers(held: &Plan, required: &str, plans: &impl Fn(&str) -> Option<Plan>) -> bool {
    if held.id == required {
        return true;
    }
    plans(required).is_some_and(|r| held.tier > r.tier && held.seats.is_some() == r.seats.is_some())
}

/// The access decision: `Some(via)` when the caller may see everything, else `None`
/// (preview and paywall). A purchase wins over a plan (it does not run out), a membership
/// over a tenant plan (it is the caller's own).
pub fn decide(
    content: &Content,
    holdings: &Holdings,
    plans: &impl Fn(&str) -> Option<Plan>,
) -> Option<Via> {
    if content.unlocked_by.is_free() {
        return Some(Via::Free);
    }
    if let Some(sku) = content
        .unlocked_by
        .skus
        .iter()
        .find(|s| holdings.skus.contains(*s))
    {
        return Some(Via::Purchase { sku: sku.clone() });
    }
    for source in [PlanSource::Membership, PlanSource::Tenant] {
        let covering = holdings
            .plans
            .iter()
            .filter(|h| h.source == source)
            .find(|h| {
                content
                    .unlocked_by
                    .plans
                    .iter()
                    .any(|r| plan_covers(&h.plan, r, plans))
            });
        if let Some(held) = covering {
            let plan = held.plan.id.clone();
            return Some(match source {
                PlanSource::Membership => Via::Membership { plan },
                PlanSource::Tenant => Via::TenantPlan { plan },
            });
        }
    }
    None
}

/// One way to unlock a content, for the paywall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    /// The product to buy through createOrder.
    pub sku: String,
    /// Product title.
    pub title: String,
    /// Price in fen.
    pub price_fen: Fen,
    /// Payment channel the order will use.
    pub channel: Channel,
    /// `content_unlock`, `membership` or `tenant_plan`.
    pub kind: &'static str,
    /// The plan sold (memberships and tenant plans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Days one purchase of the plan covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_days: Option<u32>,
}

/// The paywall offers for `content` from the active `catalog`: its one-off unlocks first,
/// then memberships, then tenant plans, each group cheapest first. A content unlock counts
/// when it names the content or its sku is listed in `unlockedBy.skus`.
pub fn offers(
    content: &Content,
    catalog: &[Product],
    plans: &impl Fn(&str) -> Option<Plan>,
) -> Vec<Offer> {
    let mut out: Vec<(u8, Offer)> = catalog
        .iter()
        .filter(|p| p.active)
        .filter_map(|p| {
            let (rank, kind, plan) = match &p.kind {
                ProductKind::ContentUnlock { content: id }
                    if *id == content.id || content.unlocked_by.skus.contains(&p.sku) =>
                {
                    (0, "content_unlock", None)
                }
                ProductKind::Membership { plan } if content.unlocked_by.plans.contains(plan) => {
                    (1, "membership", Some(plan.clone()))
                }
                ProductKind::TenantPlan { plan } if content.unlocked_by.plans.contains(plan) => {
                    (2, "tenant_plan", Some(plan.clone()))
                }
                _ => return None,
            };
            let period_days = plan.as_deref().and_then(plans).map(|p| p.period_days);
            Some((
                rank,
                Offer {
                    sku: p.sku.clone(),
                    title: p.title.clone(),
                    price_fen: p.price_fen,
                    channel: p.channel(),
                    kind,
                    plan,
                    period_days,
                },
            ))
        })
        .collect();
    out.sort_by(|(ra, a), (rb, b)| (ra, a.price_fen, &a.sku).cmp(&(rb, b.price_fen, &b.sku)));
    out.into_iter().map(|(_, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(id: &str, tier: u32, seats: Option<u32>) -> Plan {
        Plan {
            id: id.into(),
            title: id.into(),
            tier,
            period_days: 30,
            price_fen: Fen::new(1800).unwrap(),
            trial_days: 0,
            past_due_days: 0,
            grace_days: 0,
            seats,
        }
    }

    fn plans(id: &str) -> Option<Plan> {
        match id {
            "vip" => Some(plan("vip", 1, None)),
            "vip-pro" => Some(plan("vip-pro", 2, None)),
            "team" => Some(plan("team", 1, Some(5))),
            "team-pro" => Some(plan("team-pro", 3, Some(10))),
            _ => None,
        }
    }

    fn course() -> Content {
        serde_json::from_value(json!({
            "id": "rust-101", "kind": "course", "title": "Rust 101", "summary": "Learn Rust",
            "body": "full notes",
            "lessons": [
                {"title": "Intro", "body": "hello", "preview": true,
                 "mediaFileId": "cloud://env.bucket/intro.mp4"},
                {"title": "Ownership", "body": "secret", "mediaFileId": "cloud://env.bucket/own.mp4"}
            ],
            "unlockedBy": {"skus": ["rust-101-unlock"], "plans": ["vip", "team"]}
        }))
        .unwrap()
    }

    fn held(id: &str, source: PlanSource) -> HeldPlan {
        HeldPlan {
            plan: plans(id).unwrap(),
            source,
        }
    }

    #[test]
    fn seed_shape_round_trips_and_validates() {
        let c = course();
        c.validate().unwrap();
        let back: Content = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        // Stored documents carry `_id` as well; that must not break reading them.
        let mut doc = serde_json::to_value(&c).unwrap();
        doc["_id"] = json!("rust-101");
        assert_eq!(serde_json::from_value::<Content>(doc).unwrap(), c);
        let mut article = c.clone();
        article.kind = ContentKind::Article;
        assert_eq!(
            article.validate(),
            Err(ContentError::Lessons("rust-101".into()))
        );
        let mut bad_media = c.clone();
        bad_media.media_file_id = Some("https://cdn.example/x.mp4".into());
        assert!(matches!(
            bad_media.validate(),
            Err(ContentError::BadMedia(_))
        ));
        let mut in_series = c.clone();
        in_series.series = Some("rust-weekly".into());
        in_series.validate().unwrap();
        let stored = serde_json::to_value(&in_series).unwrap();
        assert_eq!(stored["series"], "rust-weekly");
        in_series.series = Some("rust weekly".into());
        assert!(matches!(
            in_series.validate(),
            Err(ContentError::BadSeries(_))
        ));
        let mut bad_id = c;
        bad_id.id = "a b".into();
        assert!(matches!(bad_id.validate(), Err(ContentError::BadId(_))));
    }

    #[test]
    fn nothing_held_is_locked_and_free_content_is_open() {
        let c = course();
        assert_eq!(decide(&c, &Holdings::default(), &plans), None);
        let mut free = c;
        free.unlocked_by = UnlockedBy::default();
        assert_eq!(decide(&free, &Holdings::default(), &plans), Some(Via::Free));
    }

    #[test]
    fn purchase_membership_and_tenant_plan_each_unlock() {
        let c = course();
        let mut h = Holdings::default();
        h.skus.insert("other-sku".into());
        assert_eq!(decide(&c, &h, &plans), None);
        h.plans.push(held("team", PlanSource::Tenant));
        assert_eq!(
            decide(&c, &h, &plans),
            Some(Via::TenantPlan {
                plan: "team".into()
            })
        );
        h.plans.push(held("vip", PlanSource::Membership));
        assert_eq!(
            decide(&c, &h, &plans),
            Some(Via::Membership { plan: "vip".into() })
        );
        h.skus.insert("rust-101-unlock".into());
        assert_eq!(
            decide(&c, &h, &plans),
            Some(Via::Purchase {
                sku: "rust-101-unlock".into()
            })
        );
    }

    #[test]
    fn higher_tier_of_the_same_kind_covers_lower_but_not_across_kinds() {
        let mut c = course();
        c.unlocked_by.skus.clear();
        c.unlocked_by.plans = vec!["vip".into()];
        let pro = Holdings {
            plans: vec![held("vip-pro", PlanSource::Membership)],
            ..Holdings::default()
        };
        assert_eq!(
            decide(&c, &pro, &plans),
            Some(Via::Membership {
                plan: "vip-pro".into()
            })
        );
        // A tenant plan of a higher tier is not a personal membership.
        let team = Holdings {
            plans: vec![held("team-pro", PlanSource::Tenant)],
            ..Holdings::default()
        };
        assert_eq!(decide(&c, &team, &plans), None);
        // Unknown required plans never match by tier.
        c.unlocked_by.plans = vec!["gone".into()];
        assert_eq!(decide(&c, &pro, &plans), None);
    }

    #[test]
    fn preview_withholds_protected_parts_and_full_view_shows_them() {
        let c = course();
        let preview = c.preview_view();
        assert_eq!(preview.body, None);
        assert_eq!(
            preview.media_file_ids(),
            vec!["cloud://env.bucket/intro.mp4"]
        );
        let lessons = preview.lessons.clone().unwrap();
        assert_eq!(lessons[0].body.as_deref(), Some("hello"));
        assert!(lessons[1].locked && lessons[1].body.is_none() && lessons[1].media.is_none());
        let full = c.full_view();
        assert_eq!(full.body.as_deref(), Some("full notes"));
        assert_eq!(full.media_file_ids().len(), 2);
        let url = |id: &str| {
            Some(MediaUrl {
                url: format!("https://t/{}", id.len()),
                expires_at: 99,
            })
        };
        let v = full.into_json(&url);
        assert_eq!(v["lessons"][1]["body"], "secret");
        assert_eq!(v["lessons"][1]["media"]["expiresAt"], 99);
        assert!(!v.to_string().contains("cloud://"), "file ids never leave");
        let v = preview.into_json(&|_| None);
        assert!(v.get("body").is_none());
        assert!(v["lessons"][0].get("media").is_none());
    }

    #[test]
    fn offers_come_from_the_active_catalog_in_order() {
        let product = |sku: &str, price: i64, kind: ProductKind, active: bool| Product {
            sku: sku.into(),
            title: sku.into(),
            price_fen: Fen::new(price).unwrap(),
            kind,
            channel: None,
            stock: None,
            active,
            description: None,
        };
        let catalog = vec![
            product(
                "team-m",
                19900,
                ProductKind::TenantPlan {
                    plan: "team".into(),
                },
                true,
            ),
            product(
                "vip-y",
                16800,
                ProductKind::Membership { plan: "vip".into() },
                true,
            ),
            product(
                "vip-m",
                1800,
                ProductKind::Membership { plan: "vip".into() },
                true,
            ),
            product(
                "old",
                100,
                ProductKind::Membership { plan: "vip".into() },
                false,
            ),
            product(
                "rust-101-unlock",
                4900,
                ProductKind::ContentUnlock {
                    content: "rust-101".into(),
                },
                true,
            ),
            product(
                "other-unlock",
                900,
                ProductKind::ContentUnlock {
                    content: "other".into(),
                },
                true,
            ),
            product("tee", 9900, ProductKind::Physical, true),
        ];
        let got = offers(&course(), &catalog, &plans);
        let skus: Vec<&str> = got.iter().map(|o| o.sku.as_str()).collect();
        assert_eq!(skus, ["rust-101-unlock", "vip-m", "vip-y", "team-m"]);
        assert_eq!(got[1].period_days, Some(30));
        assert_eq!(got[0].channel, Channel::Xpay);
        let v = serde_json::to_value(&got[3]).unwrap();
        assert_eq!(
            v,
            json!({"sku": "team-m", "title": "team-m", "priceFen": 19900, "channel": "xpay",
                   "kind": "tenant_plan", "plan": "team", "periodDays": 30})
        );
    }
}
