//! The Official Account funnel end to end (issue 22): the real function binaries run by the
//! emulator suite, the real `wemint-oa` command, and the suite's Official Account stand-in
//! (its API behind its own token, and follower actions that become sealed XML pushes to
//! wxPush). Build the binaries first: `cargo build --workspace --bins`.
//!
//! Expected numbers are written by hand from the seed catalog (`emulator/demo/seed.json`):
//! a ceramic mug is 4900 fen, an A5 notebook 2900 fen, a T-shirt 9900 fen.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use wemint::store::collections::{FOLLOWERS, OA_MESSAGES, OA_TOUCHES, ORDERS, PEOPLE, USERS};
use wemint::store::{Filter, FindOptions, Store};
use wemint::wechat::{PushCrypto, PushFormat, Stamp};
use wemint_emulator::demo::Client;
use wemint_emulator::standins::official_account::TEMPLATE_MESSAGES;
use wemint_emulator::suite::{Suite, SuiteOptions};

const MUG: (&str, i64) = ("mug-ceramic-350", 4900);
const NOTEBOOK: (&str, i64) = ("notebook-a5-dot", 2900);
const TEE: (&str, i64) = ("tee-classic-white-l", 9900);

async fn suite(name: &str, run_functions: bool) -> (tempfile::TempDir, std::sync::Arc<Suite>) {
    let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    options.retry_factor = 0.001;
    options.refund_delay_ms = 50;
    options.run_functions = run_functions;
    options.run_timers = false;
    let suite = Suite::start(options).await.expect("suite starts");
    (dir, suite)
}

fn oa_command(suite: &Suite, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(wemint_e2e::function_binary("wemint-oa"));
    cmd.args(args)
        .env_clear()
        .env("WEMINT_STORE", suite.options.store_uri())
        .env("WX_OA_APPID", suite.keys.oa_appid())
        .env("WX_OA_APPSECRET", suite.keys.oa_appsecret())
        .env("WECHAT_API_BASE", suite.base_url());
    cmd.output().expect("wemint-oa runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn menu(appid: &str) -> Value {
    json!({"button": [
        {"type": "miniprogram", "name": "进入商城", "appid": appid,
         "pagepath": "pages/index/index", "url": "https://example.com/open"},
        {"type": "click", "name": "今日推荐", "key": "TODAY"},
        {"name": "更多", "sub_button": [
            {"type": "view", "name": "帮助中心", "url": "https://example.com/help"},
            {"type": "click", "name": "联系客服", "key": "CONTACT"}
        ]}
    ]})
}

fn write(dir: &Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, v.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

async fn dev(suite: &Suite, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", suite.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn dev_get(suite: &Suite, path: &str) -> Value {
    reqwest::get(format!("{}{path}", suite.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `check` (a bounded wait for asynchronous deliveries, not a timing assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

async fn count(store: &dyn Store, collection: &str, filter: Filter) -> u64 {
    store.count(collection, &filter).await.unwrap()
}

/// Waits until the follower of `user` is stored and linked (subscribe push handled).
async fn followed(suite: &Suite, user: &str) {
    let oa = suite.keys.oa_openid_for(user);
    let store = suite.store.clone();
    eventually(&format!("{user} follows"), || {
        let store = store.clone();
        let oa = oa.clone();
        async move {
            store
                .get(FOLLOWERS, &oa)
                .await
                .unwrap()
                .is_some_and(|f| f["subscribed"] == true && f.get("unionidCheckedAt").is_some())
        }
    })
    .await;
}

async fn touches_of(suite: &Suite, user: &str) -> u64 {
    count(
        suite.store.as_ref(),
        OA_TOUCHES,
        Filter::eq("oaOpenid", suite.keys.oa_openid_for(user)),
    )
    .await
}

/// Waits until `user`'s follower has `n` touches (the push handler records them last).
async fn touched(suite: &Suite, user: &str, n: u64) {
    eventually(&format!("{user} has {n} touches"), || async move {
        touches_of(suite, user).await == n
    })
    .await;
}

/// Buys `qty` × `sku` as `user` through WeChat Pay and waits until the order is paid.
async fn buy(
    suite: &Suite,
    client: &Client,
    user: &str,
    token: &str,
    sku: &str,
    qty: u32,
) -> String {
    let created = client
        .call(user, Some(token), "createOrder", json!({
            "action": "create", "clientRequestId": format!("oa-{user}-{sku}-{qty}"),
            "items": [{"sku": sku, "quantity": qty}],
            "address": {"name": "王五", "phone": "13700000000", "province": "上海市", "city": "上海市",
                        "district": "浦东新区", "detail": "世纪大道 1 号"}
        }))
        .await
        .expect("order created");
    let id = created["order"]["id"].as_str().unwrap().to_owned();
    let (status, reply) = client
        .post(
            user,
            "/dev/requestPayment",
            &created["payment"]["params"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    let store = suite.store.clone();
    let order_id = id.clone();
    eventually("order paid", || {
        let store = store.clone();
        let id = order_id.clone();
        async move {
            store
                .get(ORDERS, &id)
                .await
                .unwrap()
                .is_some_and(|o| o.get("paidAt").is_some())
        }
    })
    .await;
    // Attribution is reconcile's (every minute), not the payment's.
    assert!(order(suite, &id).await.get("attribution").is_none());
    let run = dev(suite, "/dev/timers/run", json!({"trigger": "every-minute"})).await;
    assert!(
        order(suite, &id).await.get("attribution").is_some(),
        "{run}"
    );
    id
}

async fn order(suite: &Suite, id: &str) -> Value {
    suite.store.get(ORDERS, id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_menu_publishes_with_its_difference_and_invalid_menus_name_their_rule() {
    let (dir, suite) = suite("oa-menu", false).await;
    let good = write(dir.path(), "menu.json", &menu(&suite.keys.appid));

    let out = oa_command(&suite, &["menu", "publish", &good]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("+ 进入商城"), "{printed}");
    assert!(printed.contains("+ 更多 / 联系客服"), "{printed}");
    assert!(printed.contains("published: 5 changes"), "{printed}");
    let live = dev_get(&suite, "/dev/oa/menu").await;
    assert_eq!(live["is_menu_open"], 1);
    assert_eq!(
        live["selfmenu_info"]["button"][2]["sub_button"]["list"][1]["key"],
        "CONTACT"
    );

    // Publishing the same file again changes nothing.
    let out = oa_command(&suite, &["menu", "publish", &good]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("nothing published"));

    // One button changed: the difference shows exactly it.
    let mut changed = menu(&suite.keys.appid);
    changed["button"][1]["key"] = json!("TODAY_V2");
    let changed_path = write(dir.path(), "changed.json", &changed);
    let out = oa_command(&suite, &["menu", "diff", &changed_path]);
    let printed = text(&out.stdout);
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(printed.starts_with("~ 今日推荐"), "{printed}");

    // Invalid menus: refused before any call, with the rule they break; the live menu stays.
    let mut cases = Vec::new();
    let mut four = menu(&suite.keys.appid);
    four["button"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "click", "name": "第四", "key": "FOURTH"}));
    cases.push((four, "top_level_count"));
    let mut long = menu(&suite.keys.appid);
    long["button"][1]["name"] = json!("今日特别推荐"); // 18 bytes
    cases.push((long, "top_level_name_bytes"));
    let mut six = menu(&suite.keys.appid);
    for i in 0..4 {
        six["button"][2]["sub_button"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "click", "name": format!("子{i}"), "key": format!("S{i}")}));
    }
    cases.push((six, "sub_button_count"));
    let mut no_fallback = menu(&suite.keys.appid);
    no_fallback["button"][0]
        .as_object_mut()
        .unwrap()
        .remove("url");
    cases.push((no_fallback, "missing_field"));
    for (i, (bad, rule)) in cases.into_iter().enumerate() {
        let path = write(dir.path(), &format!("bad{i}.json"), &bad);
        let out = oa_command(&suite, &["menu", "publish", &path]);
        assert_eq!(out.status.code(), Some(2), "{rule}");
        let err = text(&out.stderr);
        assert!(
            err.contains("MENU_INVALID") && err.contains(&format!("[{rule}]")),
            "{err}"
        );
    }
    assert_eq!(dev_get(&suite, "/dev/oa/menu").await, live);

    // Parametric QR codes: temporary and permanent; a bad scene is refused.
    let out = oa_command(&suite, &["qrcode", "spring-2026", "--expire-secs", "600"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let temp: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(temp["permanent"], false);
    assert!(
        temp["image"]
            .as_str()
            .unwrap()
            .starts_with("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=")
    );
    let out = oa_command(&suite, &["qrcode", "poster-a", "--permanent"]);
    let perm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (perm["permanent"].as_bool(), perm["expiresAt"].is_null()),
        (Some(true), true)
    );
    assert_eq!(
        oa_command(&suite, &["qrcode", "空格 scene"]).status.code(),
        Some(2)
    );
    suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_scan_buy_is_attributed_and_template_messages_reach_followers_only() {
    let (_dir, suite) = suite("oa-funnel", true).await;
    let client = Client::new(&suite.base_url()).unwrap();
    let store = suite.store.clone();
    let out = oa_command(&suite, &["qrcode", "spring", "--expire-secs", "3600"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ticket = serde_json::from_slice::<Value>(&out.stdout).unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob scans the campaign code (a new follower: subscribe with qrscene_spring).
    dev(
        &suite,
        "/dev/oa/scan",
        json!({"user": "bob", "ticket": ticket}),
    )
    .await;
    followed(&suite, "bob").await;
    touched(&suite, "bob", 1).await;
    // Before logging in, bob is a follower only; then the same person in the Mini Program.
    let unionid = suite.keys.unionid_for("bob");
    let person = store
        .get(PEOPLE, &format!("u:{unionid}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(person["oaOpenid"], json!(suite.keys.oa_openid_for("bob")));
    assert!(person.get("mpOpenid").is_none());
    let (bob, _) = client.login("bob").await.expect("bob logs in");
    let person = store
        .get(PEOPLE, &format!("u:{unionid}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(person["mpOpenid"], json!(suite.keys.openid_for("bob")));
    assert_eq!(person["firstSide"], "oa");
    assert_eq!(
        count(
            store.as_ref(),
            PEOPLE,
            Filter::eq("unionid", unionid.as_str())
        )
        .await,
        1
    );

    // Bob buys: the order carries the scene.
    let bob_order = buy(&suite, &client, "bob", &bob, MUG.0, 1).await;
    let attribution = order(&suite, &bob_order).await["attribution"].clone();
    assert_eq!(attribution["touches"], 1, "{attribution}");
    assert_eq!(
        (
            attribution["first"]["kind"].as_str(),
            attribution["first"]["key"].as_str()
        ),
        (Some("scan"), Some("spring"))
    );
    assert_eq!(attribution["last"], attribution["first"]);

    // Carol follows, logs in, buys, then unfollows.
    dev(&suite, "/dev/oa/follow", json!({"user": "carol"})).await;
    followed(&suite, "carol").await;
    let (carol, _) = client.login("carol").await.unwrap();
    let carol_order = buy(&suite, &client, "carol", &carol, NOTEBOOK.0, 1).await;
    assert_eq!(
        order(&suite, &carol_order).await["attribution"]["touches"],
        0
    );
    dev(&suite, "/dev/oa/unfollow", json!({"user": "carol"})).await;
    let carol_oa = suite.keys.oa_openid_for("carol");
    eventually("carol unfollowed", || {
        let store = store.clone();
        let oa = carol_oa.clone();
        async move {
            store
                .get(FOLLOWERS, &oa)
                .await
                .unwrap()
                .is_some_and(|f| f["subscribed"] == false)
        }
    })
    .await;

    // Both orders are refunded: each refund settles into a notice; reconcile sends them.
    for id in [&bob_order, &carol_order] {
        let reply = dev(&suite, "/dev/admin/refund", json!({"orderId": id})).await;
        assert_eq!(reply["ok"], true, "{reply}");
    }
    eventually("both refund notices recorded", || {
        let store = store.clone();
        async move {
            count(
                store.as_ref(),
                OA_MESSAGES,
                Filter::eq("kind", "refund_settled"),
            )
            .await
                == 2
        }
    })
    .await;
    let timers = dev(&suite, "/dev/timers/run", json!({})).await;
    let funnel = &timers["reconcile"]["data"]["funnel"];
    assert_eq!(
        (
            funnel["messages"]["sent"].as_i64(),
            funnel["messages"]["skipped"].as_i64()
        ),
        (Some(1), Some(1)),
        "{timers}"
    );
    let received = dev_get(&suite, "/dev/oa/messages?user=bob").await["messages"].clone();
    assert_eq!(received.as_array().unwrap().len(), 1, "{received}");
    assert_eq!(received[0]["templateId"], "DEV_TPL_REFUND");
    assert_eq!(received[0]["data"]["amount2"]["value"], "¥49.00");
    assert_eq!(
        received[0]["data"]["character_string1"]["value"],
        json!(bob_order)
    );
    let carol_got = dev_get(&suite, "/dev/oa/messages?user=carol").await["messages"].clone();
    assert_eq!(
        carol_got,
        json!([]),
        "an unsubscribed follower is never messaged"
    );
    let carol_notice = store
        .find(
            OA_MESSAGES,
            &Filter::eq("mpOpenid", suite.keys.openid_for("carol")),
            &FindOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            carol_notice[0]["status"].as_str(),
            carol_notice[0]["reason"].as_str()
        ),
        (Some("skipped"), Some("not_following"))
    );
    // Running again sends nothing more; WeChat's job-finish push is recorded.
    let again = dev(&suite, "/dev/timers/run", json!({})).await;
    assert_eq!(again["reconcile"]["data"]["funnel"]["messages"]["sent"], 0);
    let msgid = received[0]["msgid"].as_i64().unwrap();
    eventually("TEMPLATESENDJOBFINISH recorded", || {
        let store = store.clone();
        async move {
            store
                .find(
                    OA_MESSAGES,
                    &Filter::eq("msgid", msgid),
                    &FindOptions::new(),
                )
                .await
                .unwrap()
                .first()
                .is_some_and(|m| m["delivery"] == "success")
        }
    })
    .await;

    // Bob opens it: the Mini Program reports the page's query at launch; a touch, once.
    let page = received[0]["pagepath"].as_str().unwrap();
    let query: serde_json::Map<String, Value> = form_pairs(page.split_once('?').unwrap().1);
    assert_eq!(query["from"], "oa_tpl");
    for new in [true, false] {
        let launched = client
            .call(
                "bob",
                Some(&bob),
                "login",
                json!({"action": "launch", "query": query}),
            )
            .await
            .unwrap();
        assert_eq!(
            (launched["touch"].as_bool(), launched["new"].as_bool()),
            (Some(true), Some(new)),
            "{launched}"
        );
    }
    // Carol cannot claim bob's message.
    let stolen = client
        .call(
            "carol",
            Some(&carol),
            "login",
            json!({"action": "launch", "query": query}),
        )
        .await
        .unwrap();
    assert_eq!(stolen["touch"], false);

    // Bob buys again after opening the message: attributed to the template.
    let second = buy(&suite, &client, "bob", &bob, TEE.0, 1).await;
    let a = order(&suite, &second).await["attribution"].clone();
    assert_eq!(
        (a["touches"].as_i64(), a["first"]["key"].as_str()),
        (Some(1), Some("refund_settled")),
        "{a}"
    );
    suite.shutdown().await;
}

fn form_pairs(q: &str) -> serde_json::Map<String, Value> {
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_who_log_in_at_the_same_moment_are_one_person_each() {
    let (_dir, suite) = suite("oa-race", true).await;
    let users: Vec<String> = (0..6).map(|i| format!("racer{i}")).collect();
    // Every first sighting on both sides at once: the follow push and the login.
    let mut tasks = Vec::new();
    for u in &users {
        let base = suite.base_url();
        let user = u.clone();
        tasks.push(tokio::spawn(async move {
            let follow = async {
                reqwest::Client::new()
                    .post(format!("{base}/dev/oa/follow"))
                    .json(&json!({"user": user}))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            let client = Client::new(&base).unwrap();
            let (followed, logged_in) = tokio::join!(follow, client.login(&user));
            followed.and(logged_in.map(|_| ()))
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("follow and login");
    }
    for u in &users {
        followed(&suite, u).await;
        let unionid = suite.keys.unionid_for(u);
        let people = suite
            .store
            .find(
                PEOPLE,
                &Filter::eq("unionid", unionid.as_str()),
                &FindOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(people.len(), 1, "{u}");
        assert_eq!(people[0]["mpOpenid"], json!(suite.keys.openid_for(u)));
        assert_eq!(people[0]["oaOpenid"], json!(suite.keys.oa_openid_for(u)));
        let user = suite
            .store
            .get(USERS, &suite.keys.openid_for(u))
            .await
            .unwrap()
            .unwrap();
        let follower = suite
            .store
            .get(FOLLOWERS, &suite.keys.oa_openid_for(u))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user["unionid"], follower["unionid"]);
    }
    suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_official_account_pushes_are_refused_and_change_nothing() {
    let (_dir, suite) = suite("oa-forged", true).await;
    let base = suite.base_url();
    let oa_appid = suite.keys.oa_appid();
    let victim = suite.keys.oa_openid_for("victim");
    let now = suite.clock.now();
    let event = |key: &str| {
        format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{victim}]]></FromUserName>\
             <CreateTime>{now}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>\
             <EventKey><![CDATA[qrscene_{key}]]></EventKey></xml>",
            suite.oa_gh_id()
        )
    };
    let wrong_key = "B".repeat(43);
    let forgeries = [
        // Sealed with the right appid but another EncodingAESKey (and so another signature).
        PushCrypto::new(&suite.keys.push_token, &wrong_key, &oa_appid).unwrap(),
        // Signed with another token.
        PushCrypto::new("not-the-token", &suite.keys.push_aes_key, &oa_appid).unwrap(),
        // Right token and key, but a foreign account's appid inside.
        PushCrypto::new(
            &suite.keys.push_token,
            &suite.keys.push_aes_key,
            "wxforeign00000000",
        )
        .unwrap(),
    ];
    let http = reqwest::Client::new();
    for (i, crypto) in forgeries.iter().enumerate() {
        let sealed = crypto.seal_push(
            event(&format!("forged{i}")).as_bytes(),
            PushFormat::Xml,
            &suite.oa_gh_id(),
            Some(&victim),
            &Stamp::generate(now).unwrap(),
        );
        let res = http
            .post(format!("{base}/wxPush?{}", sealed.query_string()))
            .header("content-type", sealed.content_type)
            .body(sealed.body)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(res.status().as_u16(), 400 | 401 | 403),
            "forgery {i}: {}",
            res.status()
        );
    }
    // A plaintext push signed with the real token is refused too (safe mode only).
    let res = http
        .post(format!("{base}/wxPush?signature=x&timestamp={now}&nonce=n"))
        .body(event("plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let store = suite.store.as_ref();
    assert_eq!(count(store, FOLLOWERS, Filter::All).await, 0);
    assert_eq!(count(store, OA_TOUCHES, Filter::All).await, 0);
    assert_eq!(count(store, PEOPLE, Filter::All).await, 0);
    // The genuine push (the stand-in's) is accepted.
    dev(
        &suite,
        "/dev/oa/scan",
        json!({"user": "victim", "scene": "real"}),
    )
    .await;
    followed(&suite, "victim").await;
    touched(&suite, "victim", 1).await;
    assert_eq!(count(store, OA_TOUCHES, Filter::All).await, 1);
    assert_eq!(count(store, TEMPLATE_MESSAGES, Filter::All).await, 0);
    suite.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_campaign_reports_exact_conversions_and_revenue() {
    let (_dir, suite) = suite("oa-campaign", true).await;
    let client = Client::new(&suite.base_url()).unwrap();
    // The script: (user, what they do on the account, what they buy).
    //   u1: scans spring, clicks TODAY, buys 2 mugs      → first scan:spring, last menu:TODAY, 9800
    //   u2: scans spring, buys 1 notebook                → scan:spring / scan:spring, 2900
    //   u3: scans autumn, buys 1 tee                     → scan:autumn / scan:autumn, 9900
    //   u4: follows (no scene), clicks TODAY, buys 1 mug → menu:TODAY / menu:TODAY, 4900
    //   u5: follows (no scene), buys 1 notebook          → not attributed
    //   u6: never follows, buys 1 tee                    → not attributed
    let step = |user: &str, path: &str, body: Value| {
        let mut body = body;
        body["user"] = json!(user);
        (path.to_owned(), body)
    };
    let script = [
        step("u1", "/dev/oa/scan", json!({"scene": "spring"})),
        step("u2", "/dev/oa/scan", json!({"scene": "spring"})),
        step("u3", "/dev/oa/scan", json!({"scene": "autumn"})),
        step("u4", "/dev/oa/follow", json!({})),
        step("u5", "/dev/oa/follow", json!({})),
    ];
    for (path, body) in script {
        dev(&suite, &path, body).await;
    }
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        followed(&suite, u).await;
    }
    for u in ["u1", "u2", "u3"] {
        touched(&suite, u, 1).await;
    }
    for u in ["u1", "u4"] {
        dev(&suite, "/dev/oa/click", json!({"user": u, "key": "TODAY"})).await;
        let want = if u == "u1" { 2 } else { 1 };
        let s = &suite;
        eventually("click recorded", || async move {
            touches_of(s, u).await == want
        })
        .await;
    }
    for (u, (sku, _), qty) in [
        ("u1", MUG, 2),
        ("u2", NOTEBOOK, 1),
        ("u3", TEE, 1),
        ("u4", MUG, 1),
        ("u5", NOTEBOOK, 1),
        ("u6", TEE, 1),
    ] {
        let (token, _) = client.login(u).await.unwrap();
        buy(&suite, &client, u, &token, sku, qty).await;
    }
    let (admin, _) = client.login("admin").await.unwrap();
    let report = client
        .call(
            "admin",
            Some(&admin),
            "createOrder",
            json!({"action": "attribution"}),
        )
        .await
        .unwrap();
    let mug2 = 2 * MUG.1;
    assert_eq!(
        report["total"],
        json!({"conversions": 4, "revenueFen": mug2 + NOTEBOOK.1 + TEE.1 + MUG.1, "refundedFen": 0}),
        "{report}"
    );
    assert_eq!(
        report["byFirstTouch"],
        json!([
            {"kind": "menu", "key": "TODAY", "conversions": 1, "revenueFen": MUG.1, "refundedFen": 0},
            {"kind": "scan", "key": "autumn", "conversions": 1, "revenueFen": TEE.1, "refundedFen": 0},
            {"kind": "scan", "key": "spring", "conversions": 2, "revenueFen": mug2 + NOTEBOOK.1, "refundedFen": 0},
        ]),
        "{report}"
    );
    assert_eq!(
        report["byLastTouch"],
        json!([
            {"kind": "menu", "key": "TODAY", "conversions": 2, "revenueFen": mug2 + MUG.1, "refundedFen": 0},
            {"kind": "scan", "key": "autumn", "conversions": 1, "revenueFen": TEE.1, "refundedFen": 0},
            {"kind": "scan", "key": "spring", "conversions": 1, "revenueFen": NOTEBOOK.1, "refundedFen": 0},
        ]),
        "{report}"
    );
    // Not for buyers.
    let (u1, _) = client.login("u1").await.unwrap();
    let refused = client
        .call(
            "u1",
            Some(&u1),
            "createOrder",
            json!({"action": "attribution"}),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    suite.shutdown().await;
}
