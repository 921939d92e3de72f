//! Handler tests over an in-memory store and a scripted WeChat.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::json;
use wemint::clock::FixedClock;
use wemint::identity::{SessionSigner, session_key};
use wemint::runtime::{IdentityInputs, Invocation, Mode, codes};
use wemint::secret::Secret;
use wemint::store::{self, sqlite::SqliteStore};
use wemint::wechat::WechatError;

use super::*;

const NOW: i64 = 1_700_000_000;
const APPID: &str = "wxtestapp";

/// Codes map to users; each code works once, like WeChat's.
#[derive(Default)]
struct ScriptedWechat {
    users: HashMap<String, (String, Option<String>)>,
    used: Mutex<HashSet<String>>,
}

impl ScriptedWechat {
    fn with_user(mut self, code: &str, openid: &str, unionid: Option<&str>) -> Self {
        self.users
            .insert(code.into(), (openid.into(), unionid.map(Into::into)));
        self
    }
}

#[async_trait::async_trait]
impl WechatLogin for ScriptedWechat {
    fn appid(&self) -> &str {
        APPID
    }

    async fn code2session(&self, code: &str) -> Result<WxSession, WechatError> {
        match code {
            "risky" => return Err(WechatError::api(40226, "risky user")),
            "busy" => return Err(WechatError::api(-1, "system error")),
            _ => {}
        }
        let Some((openid, unionid)) = self.users.get(code) else {
            return Err(WechatError::api(40029, "invalid code"));
        };
        if !self.used.lock().unwrap().insert(code.to_owned()) {
            return Err(WechatError::api(40163, "code been used"));
        }
        Ok(WxSession {
            openid: openid.clone(),
            session_key: Secret::new(format!("SK-{code}-plain")),
            unionid: unionid.clone(),
        })
    }

    async fn phone_number(&self, code: &str, _openid: &str) -> Result<String, WechatError> {
        match code {
            "phone-ok" => Ok("+8613800138000".into()),
            _ => Err(WechatError::api(40029, "invalid code")),
        }
    }
}

async fn state(wechat: ScriptedWechat) -> (State, Arc<FixedClock>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    store::bootstrap(store.as_ref()).await.unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let signer = SessionSigner::new(&[5u8; 32], 7200).unwrap();
    let state = State::new(
        store,
        Arc::new(wechat),
        Authenticator::new(None, signer),
        DataKey::from_bytes(&[6u8; 32]).unwrap(),
        clock.clone(),
    );
    (state, clock)
}

fn input(code: &str) -> LoginInput {
    LoginInput {
        code: code.into(),
        phone_code: None,
    }
}

fn request(token: Option<&str>, data: Value) -> CallRequest {
    CallRequest {
        action: "x".into(),
        data,
        identity: IdentityInputs {
            platform: None,
            session_token: token.map(|t| Secret::new(t.to_owned())),
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

fn token_of(reply: &Value) -> String {
    reply["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn new_then_returning_user_keeps_one_document() {
    let wechat = ScriptedWechat::default()
        .with_user("c1", "o-alice", Some("u-alice"))
        .with_user("c2", "o-alice", Some("u-alice"));
    let (s, clock) = state(wechat).await;
    let first = login(&s, &input("c1")).await.unwrap();
    assert_eq!(first["expiresAt"], json!(NOW + 7200));
    assert_eq!(
        first["user"],
        json!({"openid": "o-alice", "unionid": "u-alice", "role": "user", "createdAt": NOW})
    );
    assert!(!first.to_string().contains("SK-"), "session_key leaked");
    let me_reply = me(&s, &request(Some(&token_of(&first)), json!({})))
        .await
        .unwrap();
    assert_eq!(me_reply["user"]["openid"], json!("o-alice"));

    clock.advance(100);
    let second = login(&s, &input("c2")).await.unwrap();
    assert_eq!(second["user"]["createdAt"], json!(NOW));
    assert_eq!(s.store().count(USERS, &Filter::All).await.unwrap(), 1);
    let doc = s.store().get(USERS, "o-alice").await.unwrap().unwrap();
    assert_eq!(doc["lastLoginAt"], json!(NOW + 100));
    assert_eq!(doc["appid"], json!(APPID));
    let sealed = doc["sessionKey"].as_str().unwrap();
    assert!(sealed.starts_with("gcm1:") && !sealed.contains("SK-"));
    let key = session_key(s.store().as_ref(), &s.data_key, "o-alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.key.expose(), "SK-c2-plain");
    assert_eq!(key.received_at, NOW + 100);
}

#[tokio::test]
async fn wechat_failures_have_stable_codes_and_write_nothing() {
    let wechat = ScriptedWechat::default().with_user("c1", "o-bob", None);
    let (s, _) = state(wechat).await;
    login(&s, &input("c1")).await.unwrap();
    let code_of = |r: Result<Value, ApiError>| r.unwrap_err().code();
    assert_eq!(code_of(login(&s, &input("c1")).await), CODE_USED);
    assert_eq!(code_of(login(&s, &input("nope")).await), INVALID_CODE);
    assert_eq!(code_of(login(&s, &input("risky")).await), WECHAT_RISKY_USER);
    assert_eq!(code_of(login(&s, &input("busy")).await), WECHAT_BUSY);
    assert_eq!(code_of(login(&s, &input("  ")).await), codes::BAD_REQUEST);
    assert_eq!(s.store().count(USERS, &Filter::All).await.unwrap(), 1);
}

#[tokio::test]
async fn phone_code_sets_the_phone_and_a_bad_one_changes_nothing() {
    let wechat = ScriptedWechat::default()
        .with_user("c1", "o-carol", None)
        .with_user("c2", "o-carol", None);
    let (s, _) = state(wechat).await;
    let bad = LoginInput {
        code: "c1".into(),
        phone_code: Some("phone-bad".into()),
    };
    let err = login(&s, &bad).await.unwrap_err();
    assert_eq!(err.code(), INVALID_CODE);
    assert!(err.message().contains("phone"));
    assert!(s.store().get(USERS, "o-carol").await.unwrap().is_none());
    let good = LoginInput {
        code: "c2".into(),
        phone_code: Some("phone-ok".into()),
    };
    let reply = login(&s, &good).await.unwrap();
    assert_eq!(reply["user"]["phone"], json!("+8613800138000"));
}

#[tokio::test]
async fn logins_are_rate_limited_per_openid() {
    let mut wechat = ScriptedWechat::default()
        .with_user("other", "o-other", None)
        .with_user("later", "o-dave", None);
    for i in 0..=LOGIN_LIMIT.max {
        wechat = wechat.with_user(&format!("c{i}"), "o-dave", None);
    }
    let (s, clock) = state(wechat).await;
    for i in 0..LOGIN_LIMIT.max {
        login(&s, &input(&format!("c{i}"))).await.unwrap();
    }
    let err = login(&s, &input(&format!("c{}", LOGIN_LIMIT.max)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::RATE_LIMITED);
    let window = i64::from(LOGIN_LIMIT.window_secs);
    let expected = u64::try_from(window - NOW.rem_euclid(window)).unwrap();
    assert_eq!(err.retry_after_secs(), Some(expected));
    login(&s, &input("other")).await.unwrap();
    clock.advance(i64::try_from(expected).unwrap());
    // The next window admits the user again.
    login(&s, &input("later")).await.unwrap();
}

#[tokio::test]
async fn admin_role_is_kept_and_carried_in_the_token() {
    let wechat = ScriptedWechat::default()
        .with_user("c1", "o-admin", None)
        .with_user("c2", "o-admin", None);
    let (s, _) = state(wechat).await;
    login(&s, &input("c1")).await.unwrap();
    s.store()
        .update_one(
            USERS,
            &Filter::id("o-admin"),
            &Update::new().set("role", "admin"),
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    let reply = login(&s, &input("c2")).await.unwrap();
    assert_eq!(reply["user"]["role"], json!("admin"));
    let caller = s
        .auth
        .caller(&request(Some(&token_of(&reply)), json!({})))
        .unwrap();
    assert!(caller.admin);
}

#[tokio::test]
async fn operator_listed_admins_become_admins_at_login() {
    let wechat = ScriptedWechat::default()
        .with_user("c1", "o-ops", None)
        .with_user("c2", "o-user", None);
    let (s, _) = state(wechat).await;
    let s = s.with_admins(vec!["o-ops".into()]);
    let ops = login(&s, &input("c1")).await.unwrap();
    assert_eq!(ops["user"]["role"], json!("admin"));
    let user = login(&s, &input("c2")).await.unwrap();
    assert_eq!(user["user"]["role"], json!("user"));
}

#[tokio::test]
async fn tenant_lifecycle_and_isolation() {
    let wechat = ScriptedWechat::default()
        .with_user("a", "o-alice", None)
        .with_user("b", "o-bob", None)
        .with_user("c", "o-carol", None)
        .with_user("a2", "o-alice", None);
    let (s, _) = state(wechat).await;
    let alice = token_of(&login(&s, &input("a")).await.unwrap());
    let bob = token_of(&login(&s, &input("b")).await.unwrap());
    let carol = token_of(&login(&s, &input("c")).await.unwrap());

    // No tenant yet.
    let err = members(&s, &request(Some(&alice), json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::FORBIDDEN);

    let created = create_tenant(&s, &request(Some(&alice), json!({"name": "Acme"})))
        .await
        .unwrap();
    let acme = created["tenant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["tenant"]["role"], json!("owner"));
    let alice = token_of(&created);
    let bob_tenant = create_tenant(&s, &request(Some(&bob), json!({"name": "Globex"})))
        .await
        .unwrap();
    let bob = token_of(&bob_tenant);

    let invited = invite(
        &s,
        &request(Some(&alice), json!({"openid": "o-carol", "role": "member"})),
    )
    .await
    .unwrap();
    assert_eq!(invited["member"]["role"], json!("member"));
    let listed = members(&s, &request(Some(&alice), json!({})))
        .await
        .unwrap();
    assert_eq!(listed["members"].as_array().unwrap().len(), 2);

    // Bob cannot read or join Acme: data naming it is ignored, switching is refused.
    let bobs = members(
        &s,
        &request(Some(&bob), json!({"tenantId": acme, "tenant": acme})),
    )
    .await
    .unwrap();
    let openids: Vec<_> = bobs["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["openid"].clone())
        .collect();
    assert_eq!(openids, [json!("o-bob")]);
    let err = switch_tenant(&s, &request(Some(&bob), json!({"tenantId": acme})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::FORBIDDEN);

    // A later login carries the active tenant.
    let again = login(&s, &input("a2")).await.unwrap();
    assert_eq!(again["user"]["tenant"]["id"], json!(acme));

    // Seat limit from the plan.
    s.tenancy
        .set_plan(&acme, Some("team"), Some(2))
        .await
        .unwrap();
    let err = invite(
        &s,
        &request(Some(&alice), json!({"openid": "o-bob", "role": "member"})),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), wemint::tenancy::SEAT_LIMIT_REACHED);

    // Carol switches to Acme and her new token carries it, with the plan and her role.
    let switched = switch_tenant(&s, &request(Some(&carol), json!({"tenantId": acme})))
        .await
        .unwrap();
    assert_eq!(
        switched["user"]["tenant"],
        json!({"id": acme, "name": "Acme", "role": "member", "plan": "team"})
    );
    let caller = s
        .auth
        .caller(&request(Some(&token_of(&switched)), json!({})))
        .unwrap();
    assert_eq!(caller.plan.as_deref(), Some("team"));
    assert_eq!(caller.tenant.unwrap().role, TenantRole::Member);
    // Members cannot invite.
    let err = invite(
        &s,
        &request(
            Some(&token_of(&switched)),
            json!({"openid": "o-bob", "role": "member"}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), codes::FORBIDDEN);
}

#[tokio::test]
async fn spoofed_identity_in_data_is_ignored() {
    let wechat = ScriptedWechat::default().with_user("c1", "o-real", None);
    let (s, _) = state(wechat).await;
    let token = token_of(&login(&s, &input("c1")).await.unwrap());
    let reply = me(
        &s,
        &request(
            Some(&token),
            json!({"openid": "o-victim", "userInfo": {"openId": "o-victim"}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply["user"]["openid"], json!("o-real"));
    let err = me(&s, &request(None, json!({"openid": "o-real"})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::UNAUTHENTICATED);
}
