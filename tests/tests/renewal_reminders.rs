//! Renewal reminders end to end: the real `gatedContent` binary's timer under the SCF runtime
//! emulator, sending subscribe messages through the emulator suite's WeChat stand-in
//! (`stable_token`, then `/cgi-bin/message/subscribe/send`, recorded in `dev_messages`).

mod login_support;

use serde_json::{Value, json};
use wemint::store::{Filter, FindOptions, Store, collections};
use wemint_e2e::{ScfInstance, fire_timer, start_scf};
use wemint_emulator::standins::wechat_api::MESSAGES;
use wemint_emulator::suite::{Suite, SuiteOptions};

const DAY: i64 = 86_400;
const TEMPLATE: &str = "tmpl-renewal-e2e";

async fn start_gated(suite: &Suite) -> ScfInstance {
    let mut env = suite.function_env();
    env.extend(
        [
            ("WEMINT_RENEWAL_TEMPLATE_ID", TEMPLATE),
            ("WEMINT_RENEWAL_REMIND_DAYS", "3"),
            (
                "WEMINT_RENEWAL_TEMPLATE_FIELDS",
                "thing1=plan,time2=periodEnd,amount3=price",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    start_scf("gated-content", env).await
}

/// A `vip` subscription of `openid` ending at `end`, canceled or not.
async fn subscription(store: &dyn Store, openid: &str, end: i64, canceled: bool) {
    let mut doc = json!({"_id": openid, "subscriber": openid, "plan": "vip",
        "segments": [{"plan": "vip", "start": end - 30 * DAY, "end": end}],
        "renewPlan": "vip", "appliedOrders": [format!("seed-{openid}")], "periodEndAt": end,
        "version": 1});
    if canceled {
        doc["canceledAt"] = json!(end - 20 * DAY);
    }
    store.insert(collections::SUBSCRIPTIONS, doc).await.unwrap();
}

async fn sweep(f: &ScfInstance) -> Value {
    fire_timer(f, "renewal-reminders").await["reminders"].clone()
}

async fn messages(store: &dyn Store) -> Vec<Value> {
    store
        .find(MESSAGES, &Filter::All, &FindOptions::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_timer_reminds_each_granting_subscriber_once_per_period() {
    let dir = login_support::DbDir::new("reminders");
    let mut options = SuiteOptions::new(dir.dir.join(".wemint"));
    options.port = 0;
    options.run_functions = false;
    let suite = Suite::start(options).await.expect("suite starts");
    let store = suite.store.clone();
    let now = suite.clock.now();
    // Alice's and Carol's periods end in two days; Carol canceled; Dan's ends in ten days.
    subscription(store.as_ref(), "o-alice", now + 2 * DAY, false).await;
    subscription(store.as_ref(), "o-carol", now + 2 * DAY, true).await;
    subscription(store.as_ref(), "o-dan", now + 10 * DAY, false).await;
    let f = start_gated(&suite).await;

    // Due, but nobody accepted the template yet: nothing is sent.
    let report = sweep(&f).await;
    assert_eq!(
        (report["due"].as_i64(), report["noGrant"].as_i64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert!(messages(store.as_ref()).await.is_empty());

    // Alice accepts it in wx.requestSubscribeMessage; the client records the grant.
    let granted = f
        .invoke_json(
            &json!({"action": "subscribeGrant", "templateIds": [TEMPLATE],
            "userInfo": {"openId": "o-alice", "appId": suite.keys.appid}}),
        )
        .await
        .unwrap();
    assert_eq!(granted["data"]["grants"][0]["credits"], 1, "{granted}");

    let report = sweep(&f).await;
    assert_eq!(report["sent"], 1, "{report}");
    let sent = messages(store.as_ref()).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0]["touser"].as_str(), sent[0]["templateId"].as_str()),
        (Some("o-alice"), Some(TEMPLATE))
    );
    assert_eq!(sent[0]["page"], "membership/pages/membership/membership");
    assert_eq!(
        sent[0]["data"]["thing1"]["value"], "VIP 会员",
        "{}",
        sent[0]
    );
    assert_eq!(sent[0]["data"]["amount3"]["value"], "18.00元");

    // The next runs in the same period send nothing more, even with a fresh grant.
    f.invoke_json(
        &json!({"action": "subscribeGrant", "templateIds": [TEMPLATE],
        "userInfo": {"openId": "o-alice", "appId": suite.keys.appid}}),
    )
    .await
    .unwrap();
    let report = sweep(&f).await;
    assert_eq!(
        (report["sent"].as_i64(), report["alreadySent"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(messages(store.as_ref()).await.len(), 1);
    suite.shutdown().await;
}
