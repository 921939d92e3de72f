//! `ugcUpload` and `wxPush` end to end: the real binaries in HTTP mode over one SQLite file,
//! a local WeChat API stand-in, and pushes sealed exactly as WeChat seals them.

mod ugc_support;

use serde_json::{Value, json};
use ugc_support::{
    APPID, DbDir, PUSH_TOKEN, Service, TEMPLATE, URL_LINK, WechatStandIn, call, crypto, deliver,
    env, file_id, media_result, own_post, seal, with_param,
};
use wemint::store::{Filter, Store, Update, UpdateOptions, collections};

struct Suite {
    wechat: WechatStandIn,
    db: DbDir,
    ugc: Service,
    push: Service,
}

impl Suite {
    async fn start(tag: &str) -> Self {
        let wechat = WechatStandIn::start().await;
        let db = DbDir::new(tag);
        let vars = env(&wechat, &db);
        let ugc = Service::start("ugc-upload", &vars).await;
        let push = Service::start("wx-push", &vars).await;
        Self {
            wechat,
            db,
            ugc,
            push,
        }
    }

    async fn store(&self) -> std::sync::Arc<dyn Store> {
        wemint::store::open(&self.db.uri())
            .await
            .expect("open store")
    }

    /// Records `openid` as a project administrator in `users`: ugcUpload reads the stored
    /// role, not the token's flag.
    async fn make_admin(&self, openid: &str) {
        self.store()
            .await
            .update_one(
                collections::USERS,
                &Filter::id(openid),
                &Update::new().set("openid", openid).set("role", "admin"),
                UpdateOptions::upsert(),
            )
            .await
            .expect("admin user");
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn ids(v: &Value) -> Vec<String> {
    v["data"]["posts"]
        .as_array()
        .expect("a posts array")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_posts_clean_approved_risky_rejected_review_goes_to_admins() {
    let s = Suite::start("ugc-text").await;
    let (alice, bob, admin) = ("oAlice", "oBob", "oAdmin");
    s.make_admin(admin).await;

    // Clean text: approved at once, visible to others.
    let (st, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"text": "hello world"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let clean = v["data"]["post"].clone();
    assert_eq!(clean["status"], "approved");
    assert_eq!(clean["author"], alice);
    let clean_id = clean["id"].as_str().unwrap().to_owned();
    let (_, v) = call(&s.ugc, bob, false, "list", json!({})).await;
    assert_eq!(ids(&v), vec![clean_id.clone()]);

    // Risky text: refused with TEXT_RISKY, nothing stored.
    let (st, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"text": "violent threat"}),
    )
    .await;
    assert_eq!((st, code(&v)), (422, "TEXT_RISKY"), "{v}");
    let store = s.store().await;
    assert_eq!(
        store.count(collections::POSTS, &Filter::All).await.unwrap(),
        1
    );

    // Review: in the queue, visible only to its author.
    let (_, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"text": "a borderline joke"}),
    )
    .await;
    let queued = v["data"]["post"].clone();
    assert_eq!(queued["status"], "in_review", "{v}");
    let queued_id = queued["id"].as_str().unwrap().to_owned();
    let (_, v) = call(&s.ugc, bob, false, "list", json!({})).await;
    assert_eq!(ids(&v), vec![clean_id.clone()]);
    assert_eq!(
        own_post(&s.ugc, alice, &queued_id).await["status"],
        "in_review"
    );

    // Only admins see and decide the queue.
    for action in ["queue", "approve", "reject"] {
        let (st, v) = call(
            &s.ugc,
            bob,
            false,
            action,
            json!({"postId": queued_id, "reason": "no"}),
        )
        .await;
        assert_eq!((st, code(&v)), (403, "FORBIDDEN"), "{action}: {v}");
    }
    assert_eq!(
        own_post(&s.ugc, alice, &queued_id).await["status"],
        "in_review"
    );
    let (_, v) = call(&s.ugc, admin, true, "queue", json!({})).await;
    assert_eq!(ids(&v), vec![queued_id.clone()]);
    let (st, v) = call(&s.ugc, admin, true, "approve", json!({"postId": queued_id})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["post"]["status"], "approved");
    let (_, v) = call(&s.ugc, bob, false, "list", json!({})).await;
    assert_eq!(ids(&v).len(), 2);
    let (_, v) = call(&s.ugc, admin, true, "queue", json!({})).await;
    assert!(ids(&v).is_empty());

    // Reject needs a reason; a rejected post cannot be approved.
    let (_, v) = call(
        &s.ugc,
        bob,
        false,
        "create",
        json!({"text": "borderline again"}),
    )
    .await;
    let second = v["data"]["post"]["id"].as_str().unwrap().to_owned();
    let (st, v) = call(&s.ugc, admin, true, "reject", json!({"postId": second})).await;
    assert_eq!((st, code(&v)), (400, "BAD_REQUEST"), "{v}");
    let (st, v) = call(
        &s.ugc,
        admin,
        true,
        "reject",
        json!({"postId": second, "reason": "off topic"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["post"]["status"], "rejected");
    assert_eq!(v["data"]["post"]["reason"], "off topic");
    let (st, v) = call(&s.ugc, admin, true, "approve", json!({"postId": second})).await;
    assert_eq!((st, code(&v)), (409, "CONFLICT"), "{v}");
    let (st, v) = call(&s.ugc, admin, true, "approve", json!({"postId": "p-none"})).await;
    assert_eq!((st, code(&v)), (404, "POST_NOT_FOUND"), "{v}");

    // Validation: nothing stored for refused input.
    let before = store.count(collections::POSTS, &Filter::All).await.unwrap();
    let ten: Vec<Value> = (0..10)
        .map(|i| json!({"fileId": file_id(alice, &format!("{i}.jpg")), "type": "image"}))
        .collect();
    let cases = [
        (json!({"text": "x".repeat(2001)}), 400, "TEXT_TOO_LONG"),
        (json!({"text": "hi", "media": ten}), 400, "TOO_MANY_MEDIA"),
        (
            json!({"media": [{"fileId": file_id(bob, "1.jpg"), "type": "image"}]}),
            403,
            "MEDIA_NOT_OWNED",
        ),
        (
            json!({"media": [{"fileId": file_id(alice, "1.mp4"), "type": "image"}]}),
            400,
            "MEDIA_TYPE_UNSUPPORTED",
        ),
        (
            json!({"media": [{"fileId": file_id(alice, "1.jpg"), "type": "video"}]}),
            400,
            "MEDIA_TYPE_UNSUPPORTED",
        ),
        (json!({"text": "   "}), 400, "BAD_REQUEST"),
    ];
    for (data, status, expected) in cases {
        let (st, v) = call(&s.ugc, alice, false, "create", data).await;
        assert_eq!((st, code(&v)), (status, expected), "{v}");
    }
    assert_eq!(
        store.count(collections::POSTS, &Filter::All).await.unwrap(),
        before
    );
    // No image of a refused post reached WeChat.
    assert!(s.wechat.media_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_posts_wait_for_the_signed_encrypted_push() {
    let s = Suite::start("ugc-image").await;
    let alice = "oAliceImg";
    let ours = crypto(APPID, PUSH_TOKEN);

    // The author accepted our template in the subscribe popup (one send).
    let popup = json!({"ToUserName": "gh_e2e_ugc", "FromUserName": alice, "CreateTime": 1_700_000_001,
        "MsgType": "event", "Event": "subscribe_msg_popup_event",
        "List": {"TemplateId": TEMPLATE, "SubscribeStatusString": "accept", "PopupScene": "0"}});
    let (st, body) = deliver(&s.push, &seal(&ours, &popup, None)).await;
    assert_eq!((st, body.as_slice()), (200, b"success".as_slice()));

    let media = json!([
        {"fileId": file_id(alice, "1700000000000-0.jpg"), "type": "image"},
        {"fileId": file_id(alice, "1700000000000-1.png"), "type": "image"},
    ]);
    let (st, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"text": "sunset", "media": media}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let post = v["data"]["post"].clone();
    let id = post["id"].as_str().unwrap().to_owned();
    assert_eq!(post["status"], "pending");
    assert_eq!(post["media"][0]["state"], "pending");
    let calls = s.wechat.media_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.openid == alice));
    assert!(
        calls[0].media_url.starts_with("https://")
            && calls[0]
                .media_url
                .contains(&format!("ugc/{alice}/1700000000000-0.jpg")),
        "{}",
        calls[0].media_url
    );
    // Pending posts are not shown to others.
    let (_, v) = call(&s.ugc, "oBobImg", false, "list", json!({})).await;
    assert!(ids(&v).is_empty());

    // Forged pushes are refused and change nothing.
    let pass0 = seal(&ours, &media_result(&calls[0].trace_id, "pass", 100), None);
    let forged_sig = with_param(&pass0, "msg_signature", &"0".repeat(40));
    assert_eq!(deliver(&s.push, &forged_sig).await.0, 401);
    let other_app = crypto("wxSomeoneElse0001", PUSH_TOKEN);
    let wrong_appid = seal(
        &other_app,
        &media_result(&calls[0].trace_id, "pass", 100),
        None,
    );
    assert_eq!(deliver(&s.push, &wrong_appid).await.0, 403);
    let wrong_token = seal(
        &crypto(APPID, "not-our-token"),
        &media_result(&calls[0].trace_id, "pass", 100),
        None,
    );
    assert_eq!(deliver(&s.push, &wrong_token).await.0, 401);
    let mut unsigned = pass0.clone();
    unsigned.query.retain(|(k, _)| k != "msg_signature");
    assert_eq!(deliver(&s.push, &unsigned).await.0, 401);
    let p = own_post(&s.ugc, alice, &id).await;
    assert_eq!(p["status"], "pending");
    assert_eq!(p["media"][0]["state"], "pending");

    // First image passes: still pending (the second is outstanding); a retried delivery of
    // the same push is answered but applied once.
    for _ in 0..2 {
        let (st, body) = deliver(&s.push, &pass0).await;
        assert_eq!((st, body.as_slice()), (200, b"success".as_slice()));
    }
    let p = own_post(&s.ugc, alice, &id).await;
    assert_eq!(
        (p["status"].as_str(), p["media"][0]["state"].as_str()),
        (Some("pending"), Some("pass"))
    );
    // The same result sealed again (new nonce, same event) is also applied once.
    assert_eq!(
        deliver(
            &s.push,
            &seal(
                &ours,
                &media_result(&calls[0].trace_id, "risky", 20002),
                None
            )
        )
        .await
        .0,
        200
    );
    assert_eq!(
        own_post(&s.ugc, alice, &id).await["media"][0]["state"],
        "pass"
    );

    // Second image passes: approved, the author is told once.
    let pass1 = seal(&ours, &media_result(&calls[1].trace_id, "pass", 100), None);
    assert_eq!(deliver(&s.push, &pass1).await.0, 200);
    assert_eq!(deliver(&s.push, &pass1).await.0, 200);
    let p = own_post(&s.ugc, alice, &id).await;
    assert_eq!(p["status"], "approved", "{p}");
    let (_, v) = call(&s.ugc, "oBobImg", false, "list", json!({})).await;
    assert_eq!(ids(&v), vec![id.clone()]);
    let sends = s.wechat.subscribe_sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["touser"], alice);
    assert_eq!(sends[0]["template_id"], TEMPLATE);
    assert_eq!(sends[0]["data"]["phrase2"]["value"], "已通过");

    // A risky image rejects its post; the grant was used, so no second message.
    let (_, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"media": [{"fileId": file_id(alice, "2.jpg"), "type": "image"}]}),
    )
    .await;
    let second = v["data"]["post"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["data"]["post"]["status"], "pending");
    let trace = s.wechat.media_calls()[2].trace_id.clone();
    assert_eq!(
        deliver(
            &s.push,
            &seal(&ours, &media_result(&trace, "risky", 20002), None)
        )
        .await
        .0,
        200
    );
    let p = own_post(&s.ugc, alice, &second).await;
    assert_eq!(p["status"], "rejected", "{p}");
    assert_eq!(p["media"][0]["state"], "risky");
    assert_eq!(s.wechat.subscribe_sends().len(), 1);
    let store = s.store().await;
    let doc = store
        .get(collections::POSTS, &second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc["notices"][0]["result"], "no_grant", "{doc}");

    // A review verdict sends the post to the human queue.
    let (_, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"text": "beach", "media": [{"fileId": file_id(alice, "3.jpg"), "type": "image"}]}),
    )
    .await;
    let third = v["data"]["post"]["id"].as_str().unwrap().to_owned();
    let trace = s.wechat.media_calls()[3].trace_id.clone();
    assert_eq!(
        deliver(
            &s.push,
            &seal(&ours, &media_result(&trace, "review", 21000), None)
        )
        .await
        .0,
        200
    );
    s.make_admin("oAdminImg").await;
    let (_, v) = call(&s.ugc, "oAdminImg", true, "queue", json!({})).await;
    assert_eq!(ids(&v), vec![third]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_author_or_an_admin_deletes() {
    let s = Suite::start("ugc-delete").await;
    let (alice, bob, admin) = ("oAliceDel", "oBobDel", "oAdminDel");
    s.make_admin(admin).await;
    let (_, v) = call(&s.ugc, alice, false, "create", json!({"text": "first"})).await;
    let public = v["data"]["post"]["id"].as_str().unwrap().to_owned();
    let (_, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"text": "borderline second"}),
    )
    .await;
    let hidden = v["data"]["post"]["id"].as_str().unwrap().to_owned();

    let (st, v) = call(&s.ugc, bob, false, "delete", json!({"postId": public})).await;
    assert_eq!((st, code(&v)), (403, "FORBIDDEN"), "{v}");
    // Someone else's unpublished post is not even acknowledged.
    let (st, v) = call(&s.ugc, bob, false, "delete", json!({"postId": hidden})).await;
    assert_eq!((st, code(&v)), (404, "POST_NOT_FOUND"), "{v}");
    let (_, v) = call(&s.ugc, alice, false, "list", json!({})).await;
    assert_eq!(ids(&v).len(), 2);

    let (st, v) = call(&s.ugc, alice, false, "delete", json!({"postId": hidden})).await;
    assert_eq!(
        (st, v["data"]["deleted"].clone()),
        (200, json!(true)),
        "{v}"
    );
    let (st, v) = call(&s.ugc, admin, true, "delete", json!({"postId": public})).await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = call(&s.ugc, alice, false, "list", json!({})).await;
    assert!(ids(&v).is_empty());
    let (st, v) = call(&s.ugc, alice, false, "delete", json!({"postId": public})).await;
    assert_eq!((st, code(&v)), (404, "POST_NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_verification_and_official_account_funnel() {
    let s = Suite::start("ugc-funnel").await;
    let ours = crypto(APPID, PUSH_TOKEN);
    let client = reqwest::Client::new();
    let query = |q: Vec<(String, String)>| {
        q.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    };

    let good = query(ours.url_verification_query(1_700_000_000, "4242", "echo-123"));
    let r = client
        .get(format!("{}/wxPush?{good}", s.push.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "echo-123");
    let bad =
        query(crypto(APPID, "other").url_verification_query(1_700_000_000, "4242", "echo-123"));
    let r = client
        .get(format!("{}/wxPush?{bad}", s.push.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // A follow through a parametric QR code: stored, answered with an encrypted text reply
    // carrying the URL Link into the Mini Program.
    let follow = json!({"ToUserName": "gh_e2e_ugc", "FromUserName": "oFollower1", "CreateTime": 1_700_000_500,
        "MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_poster7", "Ticket": "T"});
    let sealed = seal(&ours, &follow, Some("oFollower1"));
    let (st, body) = deliver(&s.push, &sealed).await;
    assert_eq!(st, 200);
    let plain = ours.open_reply(&body).expect("encrypted, signed reply");
    let reply: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(reply["ToUserName"], "oFollower1");
    assert_eq!(reply["MsgType"], "text");
    assert!(
        reply["Content"].as_str().unwrap().contains(URL_LINK),
        "{reply}"
    );
    let links = s.wechat.link_requests();
    assert_eq!(links[0]["path"], "pages/index/index");
    assert_eq!(links[0]["query"], "from=oa&scene=poster7");
    let store = s.store().await;
    let f = store
        .get(collections::FOLLOWERS, "oFollower1")
        .await
        .unwrap()
        .expect("follower");
    assert_eq!(f["subscribed"], true);
    assert_eq!(f["source"], "qrscene_poster7");

    // Retried delivery: answered, not handled again (no second link request).
    assert_eq!(deliver(&s.push, &sealed).await.0, 200);
    assert_eq!(s.wechat.link_requests().len(), 1);

    // Menu click: the link again; unsubscribe: marked.
    let click = json!({"ToUserName": "gh_e2e_ugc", "FromUserName": "oFollower1", "CreateTime": 1_700_000_600,
        "MsgType": "event", "Event": "CLICK", "EventKey": "OPEN_APP"});
    let (st, body) = deliver(&s.push, &seal(&ours, &click, Some("oFollower1"))).await;
    assert_eq!(st, 200);
    let reply: Value = serde_json::from_slice(&ours.open_reply(&body).unwrap()).unwrap();
    assert!(reply["Content"].as_str().unwrap().contains(URL_LINK));
    let unsub = json!({"ToUserName": "gh_e2e_ugc", "FromUserName": "oFollower1", "CreateTime": 1_700_000_700,
        "MsgType": "event", "Event": "unsubscribe"});
    let (st, body) = deliver(&s.push, &seal(&ours, &unsub, Some("oFollower1"))).await;
    assert_eq!((st, body.as_slice()), (200, b"success".as_slice()));
    let f = store
        .get(collections::FOLLOWERS, "oFollower1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f["subscribed"], false);
    assert_eq!(f["lastMenuKey"], "OPEN_APP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xpay_delivery_push_reaches_commerce_fulfilment() {
    let s = Suite::start("ugc-xpay").await;
    let ours = crypto(APPID, PUSH_TOKEN);
    let push = json!({"ToUserName": "gh_e2e_ugc", "FromUserName": "oXpaySystem", "CreateTime": 1_700_000_900,
        "MsgType": "event", "Event": "xpay_goods_deliver_notify", "OpenId": "oBuyer",
        "OutTradeNo": "WM1700000000UNKNOWN000001", "Env": 1,
        "WeChatPayInfo": {"MchOrderNo": "M1", "TransactionId": "T1", "PaidTime": 1_700_000_890},
        "GoodsInfo": {"ProductId": "coins-100", "Quantity": 1, "OrigPrice": 1000, "ActualPrice": 1000, "Attach": ""}});
    let store = s.store().await;

    // Forged (another app's key frame): refused, commerce never sees it.
    let forged = seal(&crypto("wxSomeoneElse0001", PUSH_TOKEN), &push, None);
    assert_eq!(deliver(&s.push, &forged).await.0, 403);
    assert_eq!(
        store
            .count(collections::PAYMENT_EVENTS, &Filter::All)
            .await
            .unwrap(),
        0
    );

    // Verified: handed to commerce (an order it does not know is recorded as such, nothing
    // granted) and acknowledged in the JSON WeChat expects; a retry is acknowledged again and
    // recorded once.
    let sealed = seal(&ours, &push, None);
    for _ in 0..2 {
        let (st, body) = deliver(&s.push, &sealed).await;
        assert_eq!(st, 200);
        let ack: Value = serde_json::from_slice(&body).expect("JSON ack");
        assert_eq!(ack["ErrCode"], 0, "{ack}");
    }
    let events = store
        .find(
            collections::PAYMENT_EVENTS,
            &Filter::All,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["eventId"], "xpay:WM1700000000UNKNOWN000001");
    assert_eq!(events[0]["result"], "unknown_order");
    assert_eq!(
        store
            .count(collections::ENTITLEMENTS, &Filter::All)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_image_verdicts_go_to_the_review_queue_and_a_late_verdict_still_applies() {
    let s = Suite::start("ugc-overdue").await;
    let alice = "oAliceLate";
    let (_, v) = call(
        &s.ugc,
        alice,
        false,
        "create",
        json!({"media": [{"fileId": file_id(alice, "late.jpg"), "type": "image"}]}),
    )
    .await;
    let id = v["data"]["post"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["data"]["post"]["status"], "pending");

    // The ugcUpload timer (SCF timer event) with a ten-minute allowance.
    let mut vars = env(&s.wechat, &s.db);
    vars.push(("WEMINT_MODERATION_TIMEOUT_SECS".into(), "600".into()));
    let timer = wemint_e2e::start_scf("ugc-upload", vars).await;
    let sweep =
        || async { wemint_e2e::fire_timer(&timer, "moderation-sweep").await["moderation"].clone() };
    assert_eq!(sweep().await["escalated"], 0, "not overdue yet");

    // Twenty minutes later there is still no verdict: an administrator takes over.
    let store = s.store().await;
    store
        .update_one(
            collections::POSTS,
            &Filter::id(id.as_str()),
            &wemint::store::Update::new().inc("createdAt", -1200),
            wemint::store::UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(sweep().await["escalated"], 1);
    assert_eq!(sweep().await["escalated"], 0, "moved once");
    s.make_admin("oAdminLate").await;
    let (_, v) = call(&s.ugc, "oAdminLate", true, "queue", json!({})).await;
    assert_eq!(ids(&v), vec![id.clone()]);
    let p = own_post(&s.ugc, alice, &id).await;
    assert_eq!(p["status"], "in_review");
    assert!(p["reason"].as_str().unwrap().contains("10 minutes"), "{p}");

    // WeChat's verdict arrives after all: it still decides the post.
    let trace = s.wechat.media_calls()[0].trace_id.clone();
    let ours = crypto(APPID, PUSH_TOKEN);
    assert_eq!(
        deliver(
            &s.push,
            &seal(&ours, &media_result(&trace, "pass", 100), None)
        )
        .await
        .0,
        200
    );
    let p = own_post(&s.ugc, alice, &id).await;
    assert_eq!(p["status"], "approved");
    assert!(p.get("reason").is_none(), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wx_push_timer_drops_receipts_past_their_ttl_only() {
    use wemint::store::collections::WECHAT_PUSH_RECEIPTS;
    use wemint::wechat::push::receipts::RECEIPT_TTL_MS;
    let s = Suite::start("push-receipts").await;
    let store = s.store().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (id, created) in [
        ("old", now_ms - RECEIPT_TTL_MS - 60_000),
        ("new", now_ms - 60_000),
    ] {
        store
            .insert(
                WECHAT_PUSH_RECEIPTS,
                json!({"_id": id, "createdAt": created, "expiresAt": created + RECEIPT_TTL_MS}),
            )
            .await
            .unwrap();
    }
    let push = wemint_e2e::start_scf("wx-push", env(&s.wechat, &s.db)).await;
    let out = wemint_e2e::fire_timer(&push, "receipts-purge").await;
    assert_eq!(out["receiptsPurged"], 1, "{out}");
    assert!(
        store
            .get(WECHAT_PUSH_RECEIPTS, "old")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(WECHAT_PUSH_RECEIPTS, "new")
            .await
            .unwrap()
            .is_some()
    );
}
