//! The real `login` binary end to end, under the SCF runtime API emulator (`scf-event`) and in
//! `http` mode, against the emulator's stand-in for `api.weixin.qq.com` (`login_support`), with
//! a SQLite file as the store.

mod login_support;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::identity::{SessionClaims, SessionSigner};
use wemint::store::collections;
use wemint::tenancy::Tenancy;
use wemint_e2e::{HttpInstance, RuntimeApi, ScfInstance, StartOptions, http};

use login_support::{DbDir, PHONE, SESSION_SECRET, WechatStandIn, contains, env};

async fn scf(wechat: &WechatStandIn, db: &DbDir, trust: Option<&str>) -> ScfInstance {
    let mut options = StartOptions {
        api: RuntimeApi::Scf,
        ..StartOptions::default()
    };
    for (k, v) in env(wechat, db, trust) {
        options = options.env(k, v);
    }
    ScfInstance::start(&login_support::login_binary(), options)
        .await
        .expect("login starts under the SCF emulator")
}

fn http_instance(wechat: &WechatStandIn, db: &DbDir, trust: Option<&str>) -> HttpInstance {
    let env = env(wechat, db, trust);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    HttpInstance::start(&login_support::login_binary(), &env).expect("login listens")
}

async fn call(f: &ScfInstance, event: Value) -> Value {
    f.invoke_json(&event).await.expect("an envelope")
}

fn code_of(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("<ok>")
}

fn token_of(reply: &Value) -> String {
    reply["data"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {reply}"))
        .to_owned()
}

#[tokio::test]
async fn scf_new_and_returning_user_bad_codes_and_no_plain_session_key_on_disk() {
    let wx = WechatStandIn::start().await;
    let db = DbDir::new("login-scf");
    let f = scf(&wx, &db, None).await;
    let (alice, bob) = (wx.openid("alice"), wx.openid("bob"));

    // New user, with the phone number.
    let first = call(
        &f,
        json!({"action": "login", "code": wx.code_for("alice").await, "phoneCode": wx.phone_code("alice").await}),
    )
    .await;
    assert_eq!(first["ok"], json!(true), "{first}");
    let user = &first["data"]["user"];
    assert_eq!(user["openid"], alice.as_str());
    assert_eq!(user["unionid"], wx.unionid("alice").as_str());
    assert_eq!(user["phone"], PHONE);
    assert_eq!(user["role"], "user");
    let created_at = user["createdAt"].as_i64().unwrap();
    assert!(first["data"]["expiresAt"].as_i64().unwrap() > created_at);
    for key in wx.session_keys().await {
        assert!(
            !first.to_string().contains(&key),
            "session_key in the reply"
        );
    }

    // Returning user: the default action is login; same user, one document.
    let second = call(&f, json!({"code": wx.code_for("alice").await})).await;
    assert_eq!(second["data"]["user"]["createdAt"], json!(created_at));
    assert_eq!(second["data"]["user"]["phone"], PHONE, "phone kept");
    let me = call(&f, json!({"action": "me", "token": token_of(&second)})).await;
    assert_eq!(me["data"]["user"]["openid"], alice.as_str());

    // Bad codes have stable codes.
    let used = wx.code_for("bob").await;
    assert_eq!(call(&f, json!({"code": used})).await["ok"], json!(true));
    assert_eq!(code_of(&call(&f, json!({"code": used})).await), "CODE_USED");
    assert_eq!(
        code_of(&call(&f, json!({"code": "never-issued"})).await),
        "INVALID_CODE"
    );
    wx.fail_logins(1, 40226, "high risk user");
    assert_eq!(
        code_of(&call(&f, json!({"code": "risky"})).await),
        "WECHAT_RISKY_USER"
    );
    // -1 is retried by the client (3 attempts): every attempt is busy.
    wx.fail_logins(3, -1, "system error");
    assert_eq!(
        code_of(&call(&f, json!({"code": "busy"})).await),
        "WECHAT_BUSY"
    );
    wx.clear_faults();
    assert_eq!(code_of(&call(&f, json!({})).await), "BAD_REQUEST");
    let bad_phone = call(
        &f,
        json!({"code": wx.code_for("carol").await, "phoneCode": "phone-never-issued"}),
    )
    .await;
    assert_eq!(code_of(&bad_phone), "INVALID_CODE");

    // One user document per openid; carol's failed login wrote nothing.
    let store = wemint::store::open(&db.uri()).await.unwrap();
    let users = store
        .find(
            collections::USERS,
            &wemint::store::Filter::All,
            &wemint::store::FindOptions::new(),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = users.iter().filter_map(|u| u["_id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&alice.as_str()) && ids.contains(&bob.as_str()));
    let alice_doc = users.iter().find(|u| u["_id"] == alice.as_str()).unwrap();
    assert!(
        alice_doc["sessionKey"]
            .as_str()
            .unwrap()
            .starts_with("gcm1:")
    );
    drop(store);

    // The session keys are nowhere in the database files, neither as text nor as bytes.
    let bytes = db.all_bytes();
    assert!(
        contains(&bytes, alice.as_bytes()),
        "the test reads the right files"
    );
    let keys = wx.session_keys().await;
    assert!(keys.len() >= 3);
    for key in keys {
        assert!(
            !contains(&bytes, key.as_bytes()),
            "plain session_key {key} on disk"
        );
        let raw = BASE64.decode(&key).unwrap();
        assert!(!contains(&bytes, &raw), "raw session_key bytes on disk");
    }
}

#[tokio::test]
async fn scf_spoofed_identity_in_data_is_ignored_unless_the_gateway_is_trusted() {
    let wx = WechatStandIn::start().await;
    let db = DbDir::new("login-spoof");
    let untrusted = scf(&wx, &db, None).await;
    let (appid, alice_id, victim) = (wx.appid(), wx.openid("alice"), wx.openid("victim"));
    let alice = token_of(&call(&untrusted, json!({"code": wx.code_for("alice").await})).await);
    call(&untrusted, json!({"code": wx.code_for("victim").await})).await;

    // Not trusted: userInfo and data fields identify nobody.
    let spoof = json!({"action": "me", "openid": victim,
        "userInfo": {"openId": victim, "appId": appid}});
    assert_eq!(
        code_of(&call(&untrusted, spoof.clone()).await),
        "UNAUTHENTICATED"
    );
    // With a token, the token decides; the spoofed fields change nothing.
    let mut with_token = spoof.clone();
    with_token["token"] = json!(alice);
    assert_eq!(
        call(&untrusted, with_token).await["data"]["user"]["openid"],
        alice_id.as_str()
    );
    drop(untrusted);

    // cloudbase-event trusted: the injected userInfo is the caller.
    let trusted = scf(&wx, &db, Some("cloudbase-event")).await;
    let reply = call(&trusted, spoof).await;
    assert_eq!(reply["data"]["user"]["openid"], victim.as_str(), "{reply}");
    // A token for someone else next to the platform identity is refused.
    let mixed = json!({"action": "me", "token": alice,
        "userInfo": {"openId": victim, "appId": appid}});
    assert_eq!(code_of(&call(&trusted, mixed).await), "UNAUTHENTICATED");
    // X-WX headers in an HTTP access event are not the CloudBase event gateway: ignored.
    let access = json!({"httpMethod": "POST", "path": "/login/me",
        "headers": {"x-wx-openid": victim, "x-wx-appid": appid}, "body": "{}"});
    let out = call(&trusted, access).await;
    assert_eq!(out["statusCode"], json!(401), "{out}");
}

#[tokio::test]
async fn scf_tampered_and_expired_tokens_are_refused() {
    let wx = WechatStandIn::start().await;
    let db = DbDir::new("login-tamper");
    let f = scf(&wx, &db, None).await;
    let (appid, alice, admin) = (wx.appid(), wx.openid("alice"), wx.openid("admin"));
    let token = token_of(&call(&f, json!({"code": wx.code_for("alice").await})).await);
    assert_eq!(
        call(&f, json!({"action": "me", "token": token})).await["ok"],
        json!(true)
    );

    // Claims rewritten to another user, MAC kept.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.replace(&alice, &admin));
    let forged = parts.join(".");
    // A flipped MAC character.
    let mut flipped = token.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    // Signed with another secret.
    let foreign = SessionSigner::new(b"another-secret-another-secret-0123", 3600)
        .unwrap()
        .issue(SessionClaims::new(&alice, &appid), now());
    // Our secret, but expired.
    let expired = SessionSigner::new(SESSION_SECRET.as_bytes(), 60)
        .unwrap()
        .issue(SessionClaims::new(&alice, &appid), now() - 120);
    for bad in [forged, flipped, foreign, expired, "garbage".to_owned()] {
        let reply = call(&f, json!({"action": "me", "token": bad})).await;
        assert_eq!(code_of(&reply), "UNAUTHENTICATED", "{bad}: {reply}");
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn scf_tenants_are_isolated_and_seats_are_limited() {
    let wx = WechatStandIn::start().await;
    let db = DbDir::new("login-tenants");
    let f = scf(&wx, &db, None).await;
    let [o_alice, o_bob, o_carol, o_dave] = ["alice", "bob", "carol", "dave"].map(|u| wx.openid(u));
    let alice = token_of(&call(&f, json!({"code": wx.code_for("alice").await})).await);
    let bob = token_of(&call(&f, json!({"code": wx.code_for("bob").await})).await);
    let carol = token_of(&call(&f, json!({"code": wx.code_for("carol").await})).await);
    call(&f, json!({"code": wx.code_for("dave").await})).await;

    let acme = call(
        &f,
        json!({"action": "createTenant", "name": "Acme", "token": alice}),
    )
    .await;
    assert_eq!(acme["data"]["tenant"]["role"], "owner", "{acme}");
    let acme_id = acme["data"]["tenant"]["id"].as_str().unwrap().to_owned();
    let alice = token_of(&acme);
    let globex = call(
        &f,
        json!({"action": "createTenant", "name": "Globex", "token": bob}),
    )
    .await;
    let bob = token_of(&globex);

    // Members are listed oldest first (`joinedAt`, seconds): carol joins a second after alice,
    // so the order does not hang on how the store breaks a tie between two openids.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let invited = call(
        &f,
        json!({"action": "invite", "openid": o_carol, "role": "member", "token": alice}),
    )
    .await;
    assert_eq!(
        invited["data"]["member"]["openid"],
        o_carol.as_str(),
        "{invited}"
    );

    // Cross-tenant read refused: bob names Acme in the data (ignored) or switches to it (refused).
    let bobs = call(
        &f,
        json!({"action": "members", "tenantId": acme_id, "tenant": acme_id, "token": bob}),
    )
    .await;
    assert_eq!(
        bobs["data"]["members"],
        json!([{"openid": o_bob, "role": "owner",
        "joinedAt": bobs["data"]["members"][0]["joinedAt"]}])
    );
    let switch = call(
        &f,
        json!({"action": "switchTenant", "tenantId": acme_id, "token": bob}),
    )
    .await;
    assert_eq!(code_of(&switch), "FORBIDDEN");
    let invite_into_acme = call(
        &f,
        json!({"action": "invite", "openid": o_dave, "role": "member", "token": bob, "tenantId": acme_id}),
    )
    .await;
    assert_eq!(
        invite_into_acme["data"]["member"]["openid"],
        o_dave.as_str()
    );
    let alices = call(&f, json!({"action": "members", "token": alice})).await;
    let openids: Vec<&str> = alices["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["openid"].as_str())
        .collect();
    assert_eq!(
        openids,
        [o_alice.as_str(), o_carol.as_str()],
        "dave went to Globex, not Acme"
    );

    // Carol switches to Acme; a member cannot invite.
    let carol_acme = call(
        &f,
        json!({"action": "switchTenant", "tenantId": acme_id, "token": carol}),
    )
    .await;
    assert_eq!(
        carol_acme["data"]["user"]["tenant"]["role"], "member",
        "{carol_acme}"
    );
    let carol = token_of(&carol_acme);
    let refused = call(
        &f,
        json!({"action": "invite", "openid": o_dave, "role": "member", "token": carol}),
    )
    .await;
    assert_eq!(code_of(&refused), "FORBIDDEN");

    // The plan (set by commerce fulfilment) has 2 seats, both taken.
    let store = wemint::store::open(&db.uri()).await.unwrap();
    Tenancy::new(Arc::clone(&store))
        .set_plan(&acme_id, Some("team"), Some(2))
        .await
        .unwrap();
    let full = call(
        &f,
        json!({"action": "invite", "openid": o_dave, "role": "member", "token": alice}),
    )
    .await;
    assert_eq!(code_of(&full), "SEAT_LIMIT_REACHED", "{full}");
    // Alice's next login carries the tenant and its plan.
    let again = call(&f, json!({"code": wx.code_for("alice").await})).await;
    assert_eq!(
        again["data"]["user"]["tenant"],
        json!({"id": acme_id, "name": "Acme", "role": "owner", "plan": "team"})
    );
}

#[tokio::test]
async fn http_mode_login_bearer_rate_limit_and_trusted_headers() {
    let wx = WechatStandIn::start().await;
    let db = DbDir::new("login-http");
    let f = http_instance(&wx, &db, None);
    let (appid, erin) = (wx.appid(), wx.openid("erin"));

    let r = http(
        Method::POST,
        &f.url("/login"),
        &[("content-type", "application/json")],
        json!({"code": wx.code_for("erin").await}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = token_of(&r.json());
    let bearer = format!("Bearer {token}");
    let r = http(
        Method::POST,
        &f.url("/me"),
        &[("authorization", &bearer)],
        "{}",
    )
    .await;
    assert_eq!(r.json()["data"]["user"]["openid"], erin.as_str());
    // X-WX headers are not trusted unless cloudbase-run is configured.
    let r = http(
        Method::POST,
        &f.url("/me"),
        &[
            ("x-wx-openid", erin.as_str()),
            ("x-wx-appid", appid.as_str()),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = http(
        Method::POST,
        &f.url("/me"),
        &[("authorization", "Bearer x.y.z")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "UNAUTHENTICATED");

    // The 10-a-minute budget per openid (one login already spent). The window may roll over
    // once during the loop, so allow one extra round.
    let mut limited = None;
    for _ in 0..25 {
        let r = http(
            Method::POST,
            &f.url("/"),
            &[],
            json!({"action": "login", "code": wx.code_for("erin").await}).to_string(),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = limited.expect("the login rate limit was hit");
    let body = r.json();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let after = body["error"]["retryAfterSecs"].as_u64().unwrap();
    assert!((1..=60).contains(&after), "{after}");
    assert_eq!(
        r.headers["retry-after"].to_str().unwrap(),
        after.to_string()
    );
    // Another user is not affected.
    let r = http(
        Method::POST,
        &f.url("/login"),
        &[],
        json!({"code": wx.code_for("frank").await}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    drop(f);

    // Behind CloudBase Run (trusted), the headers are the caller.
    let run = http_instance(&wx, &db, Some("cloudbase-run"));
    let r = http(
        Method::POST,
        &run.url("/me"),
        &[
            ("x-wx-openid", erin.as_str()),
            ("x-wx-appid", appid.as_str()),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["data"]["user"]["openid"], erin.as_str());
}
