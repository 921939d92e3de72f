//! The real `login` binary under the SCF emulator against the emulator suite's own WeChat
//! stand-in (`wemint-dev`): its dev codes, its environment (admins, dev clock), its store.

mod login_support;

use serde_json::{Value, json};
use wemint_e2e::{RuntimeApi, ScfInstance, StartOptions};
use wemint_emulator::standins::wechat_api::mint_code;
use wemint_emulator::suite::{Suite, SuiteOptions};

async fn code(suite: &Suite, user: &str) -> (String, String) {
    let Ok(minted) = mint_code(suite, user).await else {
        panic!("the stand-in refused to mint a code for {user}");
    };
    (
        minted["code"].as_str().unwrap().to_owned(),
        minted["openid"].as_str().unwrap().to_owned(),
    )
}

async fn start_login(suite: &Suite) -> ScfInstance {
    let mut options = StartOptions {
        api: RuntimeApi::Scf,
        ..StartOptions::default()
    };
    for (k, v) in suite.function_env() {
        options = options.env(k, v);
    }
    ScfInstance::start(&login_support::login_binary(), options)
        .await
        .expect("login starts with the suite's environment")
}

async fn call(f: &ScfInstance, event: Value) -> Value {
    f.invoke_json(&event).await.expect("an envelope")
}

#[tokio::test]
async fn login_with_dev_codes_admins_and_the_dev_clock() {
    let dir = login_support::DbDir::new("login-emu");
    let mut options = SuiteOptions::new(dir.dir.join(".wemint"));
    options.port = 0;
    options.run_functions = false;
    options.seed_demo = false;
    let suite = Suite::start(options).await.expect("suite starts");

    let f = start_login(&suite).await;
    let (alice_code, alice_openid) = code(&suite, "alice").await;
    let reply = call(&f, json!({"action": "login", "code": alice_code})).await;
    assert_eq!(
        reply["data"]["user"]["openid"],
        json!(alice_openid),
        "{reply}"
    );
    assert_eq!(reply["data"]["user"]["role"], "user");
    let reused = call(&f, json!({"action": "login", "code": alice_code})).await;
    assert_eq!(reused["error"]["code"], "CODE_USED");

    // The suite makes its dev user `admin` an administrator through WEMINT_ADMIN_OPENIDS.
    let (admin_code, _) = code(&suite, "admin").await;
    let admin = call(&f, json!({"code": admin_code})).await;
    assert_eq!(admin["data"]["user"]["role"], "admin", "{admin}");

    // The suite trusts the CloudBase event gateway: userInfo is the caller.
    let me = call(
        &f,
        json!({"action": "me", "userInfo": {"openId": alice_openid, "appId": suite.keys.appid}}),
    )
    .await;
    assert_eq!(me["data"]["user"]["openid"], json!(alice_openid), "{me}");
    drop(f);

    // A day later on the dev clock, the function issues tokens on that clock.
    suite.advance_clock(86_400).await.unwrap();
    let f = start_login(&suite).await;
    let (code2, _) = code(&suite, "alice").await;
    let reply = call(&f, json!({"code": code2})).await;
    let expires_at = reply["data"]["expiresAt"].as_i64().unwrap();
    let dev_now = suite.clock.now();
    assert!(
        (dev_now + 7_000..=dev_now + 7_300).contains(&expires_at),
        "{expires_at} vs dev clock {dev_now}"
    );
    suite.shutdown().await;
}
