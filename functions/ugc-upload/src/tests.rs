//! Handler tests over an in-memory store, a scripted content check and a fixed clock: the
//! limits, and the moderation races the end-to-end tests cannot time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wemint::clock::{Clock, FixedClock};
use wemint::identity::{SessionClaims, SessionSigner};
use wemint::moderation::{ContentCheck, MediaOutcome};
use wemint::runtime::{IdentityInputs, Invocation, Mode};
use wemint::secret::Secret;
use wemint::store::sqlite::SqliteStore;
use wemint::store::{self, Store, collections};
use wemint::wechat::{SubscribeMessage, Suggest, Verdict, WechatError};

use super::*;

const NOW: i64 = 1_700_000_000;
const SECRET: [u8; 32] = [7u8; 32];

/// Text verdicts by word (`violent` risky, `borderline` review); image trace ids `t-1`, `t-2`…;
/// `busy.jpg` fails like WeChat's -1; subscribe sends fail with `notify_errcode` when set.
#[derive(Default)]
struct Scripted {
    traces: AtomicU64,
    sends: Mutex<Vec<SubscribeMessage>>,
    notify_errcode: Option<i64>,
}

#[async_trait::async_trait]
impl ContentCheck for Scripted {
    async fn check_text(&self, _openid: &str, text: &str) -> Result<Verdict, WechatError> {
        let (suggest, label) = if text.contains("violent") {
            (Suggest::Risky, 20003)
        } else if text.contains("borderline") {
            (Suggest::Review, 21000)
        } else {
            (Suggest::Pass, 100)
        };
        Ok(Verdict { suggest, label })
    }

    async fn check_image(&self, _openid: &str, file_id: &str) -> Result<String, WechatError> {
        if file_id.ends_with("busy.jpg") {
            return Err(WechatError::api(-1, "system error"));
        }
        Ok(format!(
            "t-{}",
            self.traces.fetch_add(1, Ordering::SeqCst) + 1
        ))
    }

    async fn notify(&self, msg: &SubscribeMessage) -> Result<Option<i64>, WechatError> {
        if let Some(code) = self.notify_errcode {
            return Err(WechatError::api(code, "refused"));
        }
        self.sends.lock().unwrap().push(msg.clone());
        Ok(Some(1))
    }
}

struct World {
    state: State,
    clock: Arc<FixedClock>,
    checks: Arc<Scripted>,
}

async fn world(checks: Scripted) -> World {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    store::bootstrap(store.as_ref()).await.unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let checks = Arc::new(checks);
    let moderation =
        Moderation::new(store, checks.clone(), clock.clone()).with_notice(Some(NoticeTemplate {
            template_id: "TPL".into(),
            page: None,
        }));
    let auth = Authenticator::new(None, SessionSigner::new(&SECRET, 7200).unwrap());
    World {
        state: State::new(moderation, auth, clock.clone()),
        clock,
        checks,
    }
}

impl World {
    fn req(&self, openid: &str, admin: bool, data: Value) -> CallRequest {
        let mut claims = SessionClaims::new(openid, "wxapp");
        claims.adm = admin;
        let token = SessionSigner::new(&SECRET, 7200)
            .unwrap()
            .issue(claims, self.clock.now_unix());
        CallRequest {
            action: "x".into(),
            data,
            identity: IdentityInputs {
                platform: None,
                session_token: Some(Secret::new(token)),
            },
            invocation: Invocation {
                request_id: "t".into(),
                mode: Mode::Http,
                received_at: std::time::Instant::now(),
                deadline: None,
                memory_limit_mb: None,
            },
        }
    }

    async fn create(&self, openid: &str, data: Value) -> Result<Value, ApiError> {
        create(&self.state, &self.req(openid, false, data)).await
    }

    /// Records `openid`'s project role in `users`, as login or the operator do.
    async fn set_role(&self, openid: &str, role: &str) {
        self.state
            .moderation()
            .store()
            .update_one(
                wemint::store::collections::USERS,
                &store::Filter::id(openid),
                &store::Update::new().set("openid", openid).set("role", role),
                store::UpdateOptions::upsert(),
            )
            .await
            .unwrap();
    }

    async fn stored(&self, id: &str) -> Post {
        self.state.moderation().get(id).await.unwrap().unwrap()
    }
}

fn image(openid: &str, name: &str) -> Value {
    json!({"fileId": format!("cloud://env.b/ugc/{openid}/{name}"), "type": "image"})
}

fn id_of(reply: &Value) -> String {
    reply["post"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn per_minute_limit_then_daily_quota() {
    let w = world(Scripted::default()).await;
    for _ in 0..CREATE_LIMIT.max {
        w.create("o-a", json!({"text": "hi"})).await.unwrap();
    }
    let e = w.create("o-a", json!({"text": "hi"})).await.unwrap_err();
    assert_eq!(e.code(), "RATE_LIMITED");
    // Invalid input is refused before any counting.
    for _ in 0..10 {
        let e = w.create("o-a", json!({"text": ""})).await.unwrap_err();
        assert_eq!(e.code(), "BAD_REQUEST");
    }
    // One post a minute from here on: the day's quota ends it.
    let mut created = CREATE_LIMIT.max;
    loop {
        w.clock.advance(61);
        match w.create("o-a", json!({"text": "hi"})).await {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(e.code(), DAILY_QUOTA_EXCEEDED);
                assert!(e.retry_after_secs().unwrap() > 0);
                break;
            }
        }
        assert!(created <= DAILY_QUOTA.max, "quota not enforced");
    }
    // The attempt refused by the minute limit did not count against the day: exactly the
    // quota's posts exist.
    assert_eq!(created, DAILY_QUOTA.max);
    assert_eq!(
        w.state
            .moderation()
            .store()
            .count(collections::POSTS, &wemint::store::Filter::All)
            .await
            .unwrap(),
        u64::from(DAILY_QUOTA.max)
    );
    // Another author is not affected; the next UTC day starts afresh.
    w.create("o-b", json!({"text": "hi"})).await.unwrap();
    w.clock.set(NOW - NOW.rem_euclid(86_400) + 86_400 + 10);
    w.create("o-a", json!({"text": "hi"})).await.unwrap();
}

#[tokio::test]
async fn a_result_before_its_post_is_applied_when_the_post_is_stored() {
    let w = world(Scripted::default()).await;
    let m = w.state.moderation();
    // WeChat answered faster than we stored the post: t-1 is its first image's trace id.
    let early = m
        .apply_media_result(
            "t-1",
            Verdict {
                suggest: Suggest::Pass,
                label: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(early, MediaOutcome::Orphan);
    let reply = w
        .create(
            "o-a",
            json!({"text": "hi", "media": [image("o-a", "1.jpg"), image("o-a", "2.jpg")]}),
        )
        .await
        .unwrap();
    assert_eq!(reply["post"]["status"], "pending");
    assert_eq!(reply["post"]["media"][0]["state"], "pass");
    assert_eq!(reply["post"]["media"][1]["state"], "pending");
    // The orphan again (a retried push) changes nothing; t-2 completes the post.
    let again = m
        .apply_media_result(
            "t-1",
            Verdict {
                suggest: Suggest::Risky,
                label: 20002,
            },
        )
        .await
        .unwrap();
    assert_eq!(again, MediaOutcome::Duplicate);
    let done = m
        .apply_media_result(
            "t-2",
            Verdict {
                suggest: Suggest::Pass,
                label: 100,
            },
        )
        .await
        .unwrap();
    let id = id_of(&reply);
    assert_eq!(
        done,
        MediaOutcome::Applied {
            post_id: id.clone(),
            status: wemint::domain::moderation::PostStatus::Approved
        }
    );
    assert_eq!(w.stored(&id).await.status.as_str(), "approved");
}

#[tokio::test]
async fn failed_image_submission_stores_nothing() {
    let w = world(Scripted::default()).await;
    let e = w
        .create(
            "o-a",
            json!({"media": [image("o-a", "1.jpg"), image("o-a", "busy.jpg")]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "WECHAT_BUSY");
    let store = w.state.moderation().store();
    assert_eq!(
        store
            .count(collections::POSTS, &wemint::store::Filter::All)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn an_admin_decision_stands_against_late_results_and_notices_are_recorded() {
    let w = world(Scripted {
        notify_errcode: Some(43101),
        ..Scripted::default()
    })
    .await;
    let m = w.state.moderation();
    m.grant("o-a", "TPL").await.unwrap();
    let reply = w
        .create(
            "o-a",
            json!({"text": "nice", "media": [image("o-a", "1.jpg")]}),
        )
        .await
        .unwrap();
    let id = id_of(&reply);
    w.set_role("o-admin", "admin").await;
    let admin = w.req("o-admin", true, json!({"postId": id, "reason": "spam"}));
    let rejected = decide(&w.state, &admin, Decision::Reject).await.unwrap();
    assert_eq!(rejected["post"]["status"], "rejected");
    // The image passes later: recorded, the admin's decision stands.
    m.apply_media_result(
        "t-1",
        Verdict {
            suggest: Suggest::Pass,
            label: 100,
        },
    )
    .await
    .unwrap();
    let post = w.stored(&id).await;
    assert_eq!(post.status.as_str(), "rejected");
    assert_eq!(post.media[0].state.as_str(), "pass");
    assert_eq!(post.decided_by.as_deref(), Some("o-admin"));
    // The notice was tried once with the grant, and WeChat's refusal recorded.
    assert_eq!(post.notices.len(), 1);
    assert_eq!(post.notices[0].result, "failed");
    assert_eq!(post.notices[0].errcode, Some(43101));
    let grant = m
        .store()
        .get(collections::SUBSCRIBE_GRANTS, "o-a:TPL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant["credits"], 0);
    assert!(w.checks.sends.lock().unwrap().is_empty());
}

async fn page(w: &World, who: &str, data: Value) -> Result<Value, ApiError> {
    list(&w.state, &w.req(who, false, data)).await
}

#[tokio::test]
async fn list_pages_with_before_and_hides_others_unpublished_posts() {
    let w = world(Scripted::default()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        w.clock.advance(61);
        let text = if i == 2 { "borderline" } else { "fine" };
        ids.push(id_of(
            &w.create("o-a", json!({"text": text})).await.unwrap(),
        ));
    }
    let first = page(&w, "o-b", json!({"limit": 2})).await.unwrap();
    let got: Vec<&str> = first["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);
    let second = page(&w, "o-b", json!({"limit": 2, "before": ids[3]}))
        .await
        .unwrap();
    let got: Vec<&str> = second["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![ids[1].as_str(), ids[0].as_str()],
        "in_review post skipped for others"
    );
    let own = page(&w, "o-a", json!({"limit": 50})).await.unwrap();
    assert_eq!(own["posts"].as_array().unwrap().len(), 5);
    assert_eq!(
        page(&w, "o-b", json!({"limit": 0}))
            .await
            .unwrap_err()
            .code(),
        "BAD_REQUEST"
    );
    assert_eq!(
        page(&w, "o-b", json!({"before": "p-missing"}))
            .await
            .unwrap_err()
            .code(),
        "POST_NOT_FOUND"
    );
}

#[tokio::test]
async fn admin_rights_follow_the_stored_role_not_the_token() {
    let w = world(Scripted::default()).await;
    let reply = w
        .create("o-a", json!({"text": "a borderline joke"}))
        .await
        .unwrap();
    let queued = id_of(&reply);
    let reply = w.create("o-a", json!({"text": "hello"})).await.unwrap();
    let public = id_of(&reply);

    // An admin by role, with a token saying so, reviews.
    w.set_role("o-mod", "admin").await;
    let token_says_admin = |data: Value| w.req("o-mod", true, data);
    let posts = queue(&w.state, &token_says_admin(json!({}))).await.unwrap();
    assert_eq!(posts["posts"][0]["id"], queued.as_str());

    // Demoted: the same, still valid token no longer opens the queue or decides.
    w.set_role("o-mod", "user").await;
    let e = queue(&w.state, &token_says_admin(json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "FORBIDDEN");
    for decision in [Decision::Approve, Decision::Reject] {
        let e = decide(
            &w.state,
            &token_says_admin(json!({"postId": queued, "reason": "no"})),
            decision,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "FORBIDDEN");
    }
    let e = delete(&w.state, &token_says_admin(json!({"postId": public})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "FORBIDDEN");
    assert_eq!(w.stored(&queued).await.status.as_str(), "in_review");

    // The token's flag counts for nothing either way: only the stored role does.
    w.set_role("o-new", "admin").await;
    let approved = decide(
        &w.state,
        &w.req("o-new", false, json!({"postId": queued})),
        Decision::Approve,
    )
    .await
    .unwrap();
    assert_eq!(approved["post"]["status"], "approved");
    let e = queue(&w.state, &w.req("o-nobody", true, json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "FORBIDDEN");
}
