//! `gatedContent` end to end: the real binary under the SCF runtime emulator, on a SQLite file
//! shared with the test, which seeds the catalog and plays the payment side.
//!
//! Time passes by restarting the function with `WEMINT_DEV_CLOCK_OFFSET_SECS` (what the
//! `wemint-dev` dev clock does), so expiry is checked at real instants of the function's clock.
//! Purchases go through commerce itself, in the test process on the same store: the order is
//! created by `Commerce::create_order` (WeChat Pay prepay answered by a fake gateway), and the
//! payment notification is applied by `Commerce::apply_wxpay_transaction`, the fulfilment
//! payNotify runs after verifying WeChat Pay's signature.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use serde_json::{Value, json};
use wemint::clock::FixedClock;
use wemint::commerce::{Commerce, CreateInput, PaymentOutcome, WxpayGateway};
use wemint::domain::content::Content;
use wemint::domain::order::CartLine;
use wemint::domain::subscription::Plan;
use wemint::identity::{
    Caller, CallerSource, SessionClaims, SessionSigner, TenantMembership, TenantRole,
};
use wemint::pay::v3::models::{Payer, TransactionAmount};
use wemint::pay::v3::{
    JsapiOrder, PayError, Refund, RefundOrder, RequestPaymentParams, TradeState, Transaction,
};
use wemint::store::{Store, collections};
use wemint::tenancy::{Tenancy, TenancyError};
use wemint_e2e::{RuntimeApi, SESSION_SECRET, ScfInstance, StartOptions, function_binary};

const DAY: i64 = 86_400;
const STORAGE_KEY: &str = "e2e-storage-signing-key";
const STORAGE_URL: &str = "http://127.0.0.1:9/storage";

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A scratch SQLite database seeded with plans, products and contents.
struct World {
    dir: PathBuf,
    store: Arc<dyn Store>,
    /// Real time at the start: offsets are relative to it.
    t0: i64,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn plan(id: &str, tier: u32, price: i64, seats: Option<u32>) -> Value {
    json!({"id": id, "title": id, "tier": tier, "periodDays": 30, "priceFen": price,
           "pastDueDays": 3, "graceDays": 2, "seats": seats})
}

impl World {
    async fn new() -> World {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wemint-gated-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = wemint::store::open(&format!("sqlite:{}", dir.join("db.sqlite").display()))
            .await
            .unwrap();
        wemint::store::bootstrap(store.as_ref()).await.unwrap();
        let world = World {
            dir,
            store,
            t0: real_now(),
        };
        for mut p in [
            plan("vip", 1, 1800, None),
            plan("vip-pro", 2, 3600, None),
            plan("team", 1, 19900, Some(2)),
        ] {
            if p["seats"].is_null() {
                p.as_object_mut().unwrap().remove("seats");
            }
            let plan: Plan = serde_json::from_value(p.clone()).unwrap();
            p["_id"] = json!(plan.id);
            world.store.insert(collections::PLANS, p).await.unwrap();
        }
        for (sku, price, kind) in [
            (
                "vip-monthly",
                1800,
                json!({"type": "membership", "plan": "vip"}),
            ),
            (
                "vip-pro-monthly",
                3600,
                json!({"type": "membership", "plan": "vip-pro"}),
            ),
            (
                "team-monthly",
                19900,
                json!({"type": "tenant_plan", "plan": "team"}),
            ),
            (
                "playbook-unlock",
                990,
                json!({"type": "content_unlock", "content": "playbook"}),
            ),
        ] {
            world
                .store
                .insert(
                    collections::PRODUCTS,
                    json!({"_id": sku, "sku": sku, "title": sku, "priceFen": price, "kind": kind,
                           "channel": "wxpay", "active": true}),
                )
                .await
                .unwrap();
        }
        for content in [
            json!({"id": "playbook", "kind": "article", "title": "Pricing playbook",
                   "summary": "How to price", "body": "PAID: the playbook",
                   "unlockedBy": {"skus": ["playbook-unlock"], "plans": ["vip"]}, "publishedAt": 2}),
            json!({"id": "rust-basics", "kind": "course", "title": "Rust basics",
                   "summary": "Learn Rust", "body": "PAID: course notes",
                   "lessons": [
                       {"title": "Intro", "body": "free intro", "preview": true},
                       {"title": "Ownership", "body": "PAID: ownership",
                        "mediaFileId": "cloud://dev.wemint-dev/media/ownership.mp4"}],
                   "unlockedBy": {"plans": ["vip", "team"]}, "publishedAt": 1}),
            json!({"id": "podcast-1", "kind": "audio", "title": "Episode 1", "summary": "Show notes",
                   "body": "PAID: transcript", "mediaFileId": "cloud://dev.wemint-dev/media/ep1.mp3",
                   "unlockedBy": {"plans": ["vip"]}, "publishedAt": 3}),
        ] {
            let c: Content = serde_json::from_value(content).unwrap();
            c.validate().unwrap();
            let mut doc = serde_json::to_value(&c).unwrap();
            doc["_id"] = json!(c.id);
            world
                .store
                .insert(collections::CONTENTS, doc)
                .await
                .unwrap();
        }
        world
    }

    fn store_uri(&self) -> String {
        format!("sqlite:{}", self.dir.join("db.sqlite").display())
    }

    /// The function, with its clock `offset` seconds after the start of the test.
    async fn function(&self, offset: i64) -> Running {
        // The dev clock offset is relative to real time; keep the test's t0 as the origin.
        let offset = offset + self.t0 - real_now();
        let f = ScfInstance::start(
            &function_binary("gated-content"),
            StartOptions {
                api: RuntimeApi::Scf,
                ..StartOptions::default()
            }
            .env("WEMINT_STORE", self.store_uri())
            .env("WEMINT_SESSION_SECRET", SESSION_SECRET)
            .env("WEMINT_STORAGE_SIGNING_KEY", STORAGE_KEY)
            .env("WEMINT_STORAGE_URL", STORAGE_URL)
            .env("WEMINT_DEV_CLOCK_OFFSET_SECS", offset.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("gated-content did not start: {e}"));
        Running {
            f,
            now: real_now() + offset,
        }
    }

    /// Commerce on the same store, paying through WeChat Pay (a fake prepay gateway).
    fn shop(&self) -> Shop {
        let clock = Arc::new(FixedClock::new(self.t0));
        let commerce =
            Commerce::new(self.store.clone(), APPID, clock.clone()).with_wxpay(Arc::new(FakeWxpay));
        Shop { commerce, clock }
    }
}

const APPID: &str = "wx-e2e";
const MCHID: &str = "1900000001";

/// WeChat Pay as far as creating an order needs it (prepay and the payment parameters).
struct FakeWxpay;

#[async_trait]
impl WxpayGateway for FakeWxpay {
    fn mchid(&self) -> &str {
        MCHID
    }
    async fn prepay(&self, order: &JsapiOrder) -> Result<String, PayError> {
        Ok(format!("wx_prepay_{}", order.out_trade_no))
    }
    fn request_payment(&self, _: &str, prepay_id: &str) -> Result<RequestPaymentParams, PayError> {
        Ok(RequestPaymentParams {
            time_stamp: "0".into(),
            nonce_str: "n".into(),
            package: format!("prepay_id={prepay_id}"),
            sign_type: "RSA".into(),
            pay_sign: "sig".into(),
        })
    }
    async fn query(&self, _: &str) -> Result<Transaction, PayError> {
        panic!("these tests deliver notifications; nothing queries")
    }
    async fn close(&self, _: &str) -> Result<(), PayError> {
        panic!("these tests close no order")
    }
    async fn refund(&self, _: &RefundOrder) -> Result<Refund, PayError> {
        panic!("these tests refund nothing")
    }
}

struct Shop {
    commerce: Commerce,
    clock: Arc<FixedClock>,
}

/// An order waiting for its payment notification.
struct Pending {
    out_trade_no: String,
    total: i64,
    payer: String,
}

impl Shop {
    /// createOrder `create` for one `sku` at `at`.
    async fn order(&self, openid: &str, tenant: Option<&str>, sku: &str, at: i64) -> Pending {
        self.clock.set(at);
        let caller = Caller {
            openid: openid.into(),
            appid: APPID.into(),
            unionid: None,
            tenant: tenant.map(|id| TenantMembership {
                id: id.into(),
                role: TenantRole::Owner,
            }),
            plan: None,
            admin: false,
            source: CallerSource::Session,
        };
        let created = self
            .commerce
            .create_order(
                &caller,
                CreateInput {
                    client_request_id: format!("{openid}-{sku}-{at}"),
                    items: vec![CartLine {
                        sku: sku.into(),
                        quantity: 1,
                    }],
                    address: None,
                    upgrade: None,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("create {sku}: {e}"));
        assert_eq!(created.order.view()["status"], "created");
        Pending {
            out_trade_no: created.order.out_trade_no.clone(),
            total: created.order.view()["totalFen"].as_i64().unwrap(),
            payer: openid.into(),
        }
    }

    /// The verified `TRANSACTION.SUCCESS` notification for `order`, delivered at `at`.
    async fn notify(&self, event_id: &str, order: &Pending, at: i64) -> PaymentOutcome {
        self.clock.set(at);
        let tx = Transaction {
            appid: Some(APPID.into()),
            mchid: MCHID.into(),
            out_trade_no: order.out_trade_no.clone(),
            transaction_id: Some(format!("4200{}", order.out_trade_no)),
            trade_type: Some("JSAPI".into()),
            trade_state: TradeState::Success,
            trade_state_desc: None,
            bank_type: None,
            attach: None,
            success_time: None,
            payer: Some(Payer {
                openid: order.payer.clone(),
            }),
            amount: Some(TransactionAmount {
                total: Some(order.total),
                payer_total: Some(order.total),
                currency: Some("CNY".into()),
                payer_currency: None,
            }),
        };
        self.commerce
            .apply_wxpay_transaction(event_id, "v3_notify", &tx)
            .await
            .unwrap()
    }

    /// Buys and pays `sku` at `at` (order, then its notification).
    async fn buy(&self, openid: &str, tenant: Option<&str>, sku: &str, at: i64) {
        let order = self.order(openid, tenant, sku, at).await;
        let outcome = self
            .notify(&format!("EV-{}", order.out_trade_no), &order, at)
            .await;
        assert!(
            matches!(outcome, PaymentOutcome::Applied { .. }),
            "{outcome:?}"
        );
    }
}

/// A running function and the time on its clock when it started.
struct Running {
    f: ScfInstance,
    now: i64,
}

impl Running {
    fn token(&self, openid: &str, tenant: Option<(&str, TenantRole)>) -> String {
        let signer = SessionSigner::new(SESSION_SECRET.as_bytes(), 7200).unwrap();
        signer.issue(
            SessionClaims {
                sub: openid.into(),
                app: "wx-e2e".into(),
                uid: None,
                ten: tenant.map(|(id, role)| TenantMembership {
                    id: id.into(),
                    role,
                }),
                plan: None,
                adm: false,
                iat: 0,
                exp: 0,
            },
            self.now,
        )
    }

    async fn call(&self, token: &str, action: &str, mut data: Value) -> Value {
        data["action"] = json!(action);
        data["token"] = json!(token);
        self.f.invoke_json(&data).await.unwrap()
    }

    async fn ok(&self, token: &str, action: &str, data: Value) -> Value {
        let out = self.call(token, action, data).await;
        assert_eq!(out["ok"], true, "{action}: {out}");
        out["data"].clone()
    }

    async fn get(&self, token: &str, id: &str) -> Value {
        self.ok(token, "get", json!({"contentId": id})).await
    }
}

#[tokio::test]
async fn not_entitled_sees_the_preview_and_offers_then_a_purchase_unlocks() {
    let w = World::new().await;
    let f = w.function(0).await;
    let alice = f.token("o-alice", None);

    let locked = f.get(&alice, "playbook").await;
    assert_eq!(locked["access"], "locked");
    assert_eq!(locked["content"]["summary"], "How to price");
    assert!(
        !locked.to_string().contains("PAID"),
        "no protected text: {locked}"
    );
    let offers = locked["paywall"]["offers"].as_array().unwrap();
    let skus: Vec<&str> = offers.iter().map(|o| o["sku"].as_str().unwrap()).collect();
    assert_eq!(skus, ["playbook-unlock", "vip-monthly"]);
    assert_eq!(offers[0]["priceFen"], 990);
    assert_eq!(offers[0]["channel"], "wxpay");
    assert_eq!(offers[1]["kind"], "membership");
    assert_eq!(offers[1]["periodDays"], 30);

    // A course preview shows the free lesson and withholds the rest.
    let course = f.get(&alice, "rust-basics").await;
    assert_eq!(course["content"]["lessons"][0]["body"], "free intro");
    assert_eq!(course["content"]["lessons"][1]["locked"], true);
    assert!(course["content"]["lessons"][1].get("media").is_none());

    // Unknown content and a missing session are refused.
    let out = f.call(&alice, "get", json!({"contentId": "nope"})).await;
    assert_eq!(out["error"]["code"], "CONTENT_NOT_FOUND");
    let out =
        f.f.invoke_json(&json!({"action": "get", "contentId": "playbook"}))
            .await
            .unwrap();
    assert_eq!(out["error"]["code"], "UNAUTHENTICATED");

    w.shop()
        .buy("o-alice", None, "playbook-unlock", f.now)
        .await;
    let open = f.get(&alice, "playbook").await;
    assert_eq!(open["access"], "granted");
    assert_eq!(
        open["via"],
        json!({"type": "purchase", "sku": "playbook-unlock"})
    );
    assert_eq!(open["content"]["body"], "PAID: the playbook");

    let list = f.ok(&alice, "list", json!({})).await;
    let access: Vec<(String, String)> = list["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().into(),
                c["access"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        access,
        [
            ("podcast-1".to_owned(), "locked".to_owned()),
            ("playbook".to_owned(), "granted".to_owned()),
            ("rust-basics".to_owned(), "locked".to_owned())
        ]
    );
    let ents = f.ok(&alice, "entitlements", json!({})).await;
    assert_eq!(ents["entitlements"][0]["sku"], "playbook-unlock");
    assert_eq!(ents["entitlements"][0]["active"], true);
    assert!(ents.get("subscription").is_none());
}

#[tokio::test]
async fn membership_access_ends_when_the_subscription_runs_out() {
    let w = World::new().await;
    let f = w.function(0).await;
    let paid_at = f.now;
    w.shop().buy("o-alice", None, "vip-monthly", paid_at).await;
    let end = paid_at + 30 * DAY;
    let open = f.get(&f.token("o-alice", None), "podcast-1").await;
    assert_eq!(open["access"], "granted");
    assert_eq!(open["via"], json!({"type": "membership", "plan": "vip"}));
    let ents = f
        .ok(&f.token("o-alice", None), "entitlements", json!({}))
        .await;
    assert_eq!(ents["subscription"]["state"], "active");
    assert_eq!(ents["subscription"]["periodEndAt"], end);
    assert_eq!(ents["subscription"]["accessEndsAt"], end + 5 * DAY);
    drop(f);

    // Past due, then grace: still open (the plan gives 3 + 2 days).
    let f = w.function(end - w.t0 + DAY).await;
    let ents = f
        .ok(&f.token("o-alice", None), "entitlements", json!({}))
        .await;
    assert_eq!(ents["subscription"]["state"], "past_due");
    assert_eq!(
        f.get(&f.token("o-alice", None), "podcast-1").await["access"],
        "granted"
    );
    drop(f);
    let f = w.function(end - w.t0 + 4 * DAY).await;
    let ents = f
        .ok(&f.token("o-alice", None), "entitlements", json!({}))
        .await;
    assert_eq!(ents["subscription"]["state"], "grace");
    drop(f);

    // A minute after the grace days: expired, back to the paywall.
    let f = w.function(end - w.t0 + 5 * DAY + 60).await;
    let alice = f.token("o-alice", None);
    let locked = f.get(&alice, "podcast-1").await;
    assert_eq!(locked["access"], "locked");
    assert!(locked["content"].get("media").is_none());
    assert_eq!(locked["paywall"]["offers"][0]["sku"], "vip-monthly");
    let ents = f.ok(&alice, "entitlements", json!({})).await;
    assert_eq!(ents["subscription"]["state"], "expired");
    let out = f.call(&alice, "cancelSubscription", json!({})).await;
    assert_eq!(out["error"]["code"], "SUBSCRIPTION_EXPIRED");
}

#[tokio::test]
async fn duplicated_renewal_notification_extends_once() {
    let w = World::new().await;
    let f = w.function(0).await;
    let paid_at = f.now;
    let shop = w.shop();
    shop.buy("o-alice", None, "vip-monthly", paid_at).await;
    // Renewal paid ten days in: starts at the current period end, no day lost.
    let renewal = shop
        .order("o-alice", None, "vip-monthly", paid_at + 10 * DAY)
        .await;
    let first = shop.notify("EV-renew", &renewal, paid_at + 10 * DAY).await;
    assert!(matches!(first, PaymentOutcome::Applied { .. }), "{first:?}");
    // WeChat Pay delivers the same notification again (it retries until it sees a 2xx).
    let again = shop
        .notify("EV-renew", &renewal, paid_at + 10 * DAY + 5)
        .await;
    assert!(
        matches!(again, PaymentOutcome::AlreadyPaid { .. }),
        "{again:?}"
    );
    let ents = f
        .ok(&f.token("o-alice", None), "entitlements", json!({}))
        .await;
    assert_eq!(ents["subscription"]["periodEndAt"], paid_at + 60 * DAY);
    drop(f);
    let f = w.function(paid_at - w.t0 + 60 * DAY - 60).await;
    let ents = f
        .ok(&f.token("o-alice", None), "entitlements", json!({}))
        .await;
    assert_eq!(ents["subscription"]["state"], "active");
    drop(f);
    let f = w.function(paid_at - w.t0 + 60 * DAY + 60).await;
    let ents = f
        .ok(&f.token("o-alice", None), "entitlements", json!({}))
        .await;
    assert_eq!(
        ents["subscription"]["state"], "past_due",
        "not extended a third time"
    );
}

#[tokio::test]
async fn canceled_keeps_access_until_the_period_end_then_ends_without_grace() {
    let w = World::new().await;
    let f = w.function(0).await;
    let paid_at = f.now;
    w.shop().buy("o-alice", None, "vip-monthly", paid_at).await;
    let alice = f.token("o-alice", None);
    let out = f.ok(&alice, "cancelSubscription", json!({})).await;
    assert_eq!(out["subscription"]["state"], "canceled");
    let canceled_at = out["subscription"]["canceledAt"].as_i64().unwrap();
    assert_eq!(out["subscription"]["accessEndsAt"], paid_at + 30 * DAY);
    // Canceling again keeps the first time.
    let again = f.ok(&alice, "cancelSubscription", json!({})).await;
    assert_eq!(again["subscription"]["canceledAt"], canceled_at);
    assert_eq!(f.get(&alice, "podcast-1").await["access"], "granted");
    drop(f);

    let end = paid_at + 30 * DAY;
    let f = w.function(end - w.t0 - 60).await;
    assert_eq!(
        f.get(&f.token("o-alice", None), "podcast-1").await["access"],
        "granted"
    );
    drop(f);
    let f = w.function(end - w.t0 + 60).await;
    let alice = f.token("o-alice", None);
    assert_eq!(f.get(&alice, "podcast-1").await["access"], "locked");
    let ents = f.ok(&alice, "entitlements", json!({})).await;
    assert_eq!(ents["subscription"]["state"], "expired");
    // Too late to take the cancellation back.
    let late = f.call(&alice, "resumeSubscription", json!({})).await;
    assert_eq!(late["error"]["code"], "SUBSCRIPTION_EXPIRED", "{late}");
}

#[tokio::test]
async fn a_cancellation_taken_back_in_time_restores_the_grace_days() {
    let w = World::new().await;
    let f = w.function(0).await;
    let paid_at = f.now;
    w.shop().buy("o-alice", None, "vip-monthly", paid_at).await;
    let alice = f.token("o-alice", None);
    f.ok(&alice, "cancelSubscription", json!({})).await;
    let out = f.ok(&alice, "resumeSubscription", json!({})).await;
    assert_eq!(out["subscription"]["state"], "active", "{out}");
    assert!(out["subscription"].get("canceledAt").is_none());
    // Past due (3 days) and grace (2 days) apply at the end again.
    assert_eq!(out["subscription"]["accessEndsAt"], paid_at + 35 * DAY);
    let again = f.ok(&alice, "resumeSubscription", json!({})).await;
    assert_eq!(
        again["subscription"], out["subscription"],
        "resuming twice changes nothing"
    );
    drop(f);
    let f = w.function(paid_at + 31 * DAY - w.t0).await;
    let alice = f.token("o-alice", None);
    assert_eq!(f.get(&alice, "podcast-1").await["access"], "granted");
    let ents = f.ok(&alice, "entitlements", json!({})).await;
    assert_eq!(ents["subscription"]["state"], "past_due");
    // Nobody else's: a user without a subscription gets SUBSCRIPTION_NOT_FOUND.
    let bob = f
        .call(&f.token("o-bob", None), "resumeSubscription", json!({}))
        .await;
    assert_eq!(bob["error"]["code"], "SUBSCRIPTION_NOT_FOUND", "{bob}");
}

#[tokio::test]
async fn tenant_members_get_access_through_the_tenant_plan_and_others_do_not() {
    let w = World::new().await;
    let f = w.function(0).await;
    let tenancy = Tenancy::new(w.store.clone());
    let (acme, _) = tenancy.create("o-olivia", "Acme").await.unwrap();
    let owner_caller = Caller {
        openid: "o-olivia".into(),
        appid: "wx-e2e".into(),
        unionid: None,
        tenant: Some(TenantMembership {
            id: acme.id.clone(),
            role: TenantRole::Owner,
        }),
        plan: None,
        admin: false,
        source: CallerSource::Session,
    };
    for openid in ["o-bob", "o-carol"] {
        w.store
            .insert(collections::USERS, json!({"_id": openid, "openid": openid}))
            .await
            .unwrap();
    }
    // The owner buys the team plan for the tenant: commerce extends the tenant's subscription
    // and sets its plan and seats (2: the owner and one member).
    w.shop()
        .buy("o-olivia", Some(&acme.id), "team-monthly", f.now)
        .await;
    let tenant = tenancy.tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!(
        (tenant.plan.as_deref(), tenant.seats),
        (Some("team"), Some(2))
    );
    tenancy
        .invite(&owner_caller, "o-bob", TenantRole::Member)
        .await
        .unwrap();
    assert!(
        matches!(
            tenancy
                .invite(&owner_caller, "o-carol", TenantRole::Member)
                .await,
            Err(TenancyError::SeatLimit { .. })
        ),
        "seat limit enforced when members are added"
    );

    let bob = f.token("o-bob", Some((&acme.id, TenantRole::Member)));
    let open = f.get(&bob, "rust-basics").await;
    assert_eq!(open["access"], "granted");
    assert_eq!(open["via"], json!({"type": "tenant_plan", "plan": "team"}));
    assert_eq!(open["content"]["lessons"][1]["body"], "PAID: ownership");
    // The tenant plan does not include the personal-membership-only podcast.
    assert_eq!(f.get(&bob, "podcast-1").await["access"], "locked");
    let ents = f.ok(&bob, "entitlements", json!({})).await;
    assert_eq!(ents["tenantSubscription"]["tenant"], acme.id.as_str());
    assert_eq!(ents["tenantSubscription"]["seats"], 2);

    // Not a member: no tenant, a token naming the tenant without a membership, another tenant.
    let carol = f.token("o-carol", None);
    let locked = f.get(&carol, "rust-basics").await;
    assert_eq!(locked["access"], "locked");
    let kinds: Vec<&str> = locked["paywall"]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["membership", "tenant_plan"]);
    let forged = f.token("o-carol", Some((&acme.id, TenantRole::Member)));
    assert_eq!(f.get(&forged, "rust-basics").await["access"], "locked");
    let dave = f.token("o-dave", Some(("t-other", TenantRole::Owner)));
    assert_eq!(f.get(&dave, "rust-basics").await["access"], "locked");

    // Members cannot cancel the tenant's plan (even with a token claiming more); the owner can.
    let out = f
        .call(&bob, "cancelSubscription", json!({"scope": "tenant"}))
        .await;
    assert_eq!(out["error"]["code"], "FORBIDDEN");
    let bob_as_admin = f.token("o-bob", Some((&acme.id, TenantRole::Admin)));
    let out = f
        .call(
            &bob_as_admin,
            "cancelSubscription",
            json!({"scope": "tenant"}),
        )
        .await;
    assert_eq!(out["error"]["code"], "FORBIDDEN");
    let owner = f.token("o-olivia", Some((&acme.id, TenantRole::Owner)));
    let out = f
        .ok(&owner, "cancelSubscription", json!({"scope": "tenant"}))
        .await;
    assert_eq!(out["subscription"]["state"], "canceled");
    assert_eq!(f.get(&bob, "rust-basics").await["access"], "granted");
    // The daily timer leaves a running plan alone.
    let swept = wemint_e2e::fire_timer(&f.f, "renewal-reminders").await;
    assert_eq!(swept["tenantPlansEnded"], 0, "{swept}");
    drop(f);

    // Past the period end the canceled tenant plan gives no access; the timer then clears
    // the tenant's plan and seat cap.
    let f = w.function(30 * DAY + 60).await;
    let bob = f.token("o-bob", Some((&acme.id, TenantRole::Member)));
    assert_eq!(f.get(&bob, "rust-basics").await["access"], "locked");
    let swept = wemint_e2e::fire_timer(&f.f, "renewal-reminders").await;
    assert_eq!(swept["tenantPlansEnded"], 1, "{swept}");
    let tenant = tenancy.tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!((tenant.plan, tenant.seats), (None, None));
}

#[tokio::test]
async fn media_urls_are_short_lived_and_their_expiry_is_honoured() {
    let w = World::new().await;
    let f = w.function(0).await;
    w.shop().buy("o-alice", None, "vip-monthly", f.now).await;
    let open = f.get(&f.token("o-alice", None), "podcast-1").await;
    let media = &open["content"]["media"];
    let expires_at = media["expiresAt"].as_i64().unwrap();
    assert!(
        (f.now + 590..=f.now + 615).contains(&expires_at),
        "ten minutes from the function's clock: {expires_at} vs {}",
        f.now
    );
    let url = split_url(media["url"].as_str().unwrap());
    assert!(url.0.starts_with(&format!("{STORAGE_URL}/temp?")));
    assert_eq!(url.1["fileId"], "cloud://dev.wemint-dev/media/ep1.mp3");
    assert_eq!(url.1["expires"], expires_at.to_string());
    assert!(
        !open.to_string().contains("\"cloud://"),
        "no permanent file id"
    );
    // The emulator's storage check: good until the expiry, refused from then on, and a
    // moved expiry breaks the signature.
    let check = |expires: i64, now: i64| {
        wemint::cloud_files::verify_local(
            STORAGE_KEY.as_bytes(),
            &url.1["fileId"],
            expires,
            &url.1["sign"],
            now,
        )
    };
    assert_eq!(check(expires_at, expires_at - 1), Ok(()));
    assert_eq!(
        check(expires_at, expires_at),
        Err(wemint::cloud_files::LocalUrlError::Expired)
    );
    assert_eq!(
        check(expires_at + 3600, expires_at),
        Err(wemint::cloud_files::LocalUrlError::BadSignature)
    );
    drop(f);
    // Asking again later gives a fresh URL.
    let f = w.function(3600).await;
    let again = f.get(&f.token("o-alice", None), "podcast-1").await;
    assert!(again["content"]["media"]["expiresAt"].as_i64().unwrap() >= expires_at + 3600 - 5);
}

#[tokio::test]
async fn plan_changes_downgrade_at_the_period_end_and_quote_upgrades() {
    let w = World::new().await;
    let f = w.function(0).await;
    let paid_at = f.now;
    w.shop()
        .buy("o-alice", None, "vip-pro-monthly", paid_at)
        .await;
    let alice = f.token("o-alice", None);
    let out = f.ok(&alice, "changePlan", json!({"plan": "vip"})).await;
    assert_eq!(out["change"], "downgrade");
    assert_eq!(out["effectiveAt"], paid_at + 30 * DAY);
    assert_eq!(
        out["subscription"]["plan"], "vip-pro",
        "paid time keeps its plan"
    );
    assert_eq!(out["subscription"]["renewPlan"], "vip");
    let out = f.ok(&alice, "changePlan", json!({"plan": "vip-pro"})).await;
    assert_eq!(out["change"], "kept");
    assert_eq!(out["subscription"]["renewPlan"], "vip-pro");
    let out = f.call(&alice, "changePlan", json!({"plan": "team"})).await;
    assert_eq!(out["error"]["code"], "PLAN_CHANGE_INVALID");
    let out = f.call(&alice, "changePlan", json!({"plan": "gold"})).await;
    assert_eq!(out["error"]["code"], "PLAN_NOT_FOUND");
    drop(f);

    // Bob on vip, half way through: the upgrade costs 3600/2 - 1800/2 = 900 fen.
    let w2 = World::new().await;
    let f = w2.function(0).await;
    w2.shop()
        .buy("o-bob", None, "vip-monthly", f.now - 15 * DAY)
        .await;
    let out = f
        .ok(
            &f.token("o-bob", None),
            "changePlan",
            json!({"plan": "vip-pro"}),
        )
        .await;
    assert_eq!(out["change"], "upgrade");
    let amount = out["quote"]["amountFen"].as_i64().unwrap();
    assert!((899..=901).contains(&amount), "prorated: {amount}");
    assert_eq!(
        out["subscription"]["plan"], "vip",
        "nothing changes before payment"
    );
}

/// Splits a URL into its base and query parameters.
fn split_url(url: &str) -> (String, std::collections::HashMap<String, String>) {
    let (base, query) = url.split_once('?').unwrap();
    let params = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    (format!("{base}?"), params)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn an_upgrade_during_the_free_trial_applies_at_once_without_an_order() {
    let w = World::new().await;
    let f = w.function(0).await;
    let (start, end) = (f.now - DAY, f.now + 6 * DAY);
    w.store
        .insert(
            collections::SUBSCRIPTIONS,
            json!({"_id": "o-carol", "subscriber": "o-carol", "plan": "vip",
                "segments": [{"plan": "vip", "start": start, "end": end, "trial": true}],
                "renewPlan": "vip", "appliedOrders": [], "periodEndAt": end, "version": 1}),
        )
        .await
        .unwrap();
    let carol = f.token("o-carol", None);
    let out = f.ok(&carol, "changePlan", json!({"plan": "vip-pro"})).await;
    assert_eq!(
        (out["change"].as_str(), out["applied"].as_bool()),
        (Some("upgrade"), Some(true)),
        "{out}"
    );
    assert_eq!(out["subscription"]["plan"], "vip-pro");
    assert_eq!(out["subscription"]["state"], "trial");
    assert_eq!(
        out["subscription"]["periodEndAt"], end,
        "the trial keeps its end"
    );
    assert_eq!(
        w.store
            .count(
                collections::ORDERS,
                &wemint::store::Filter::eq("openid", "o-carol")
            )
            .await
            .unwrap(),
        0
    );
    let again = f
        .call(&carol, "changePlan", json!({"plan": "vip-pro"}))
        .await;
    assert_eq!(again["error"]["code"], "PLAN_CHANGE_INVALID", "{again}");
}

#[tokio::test]
async fn a_free_trial_once_before_any_subscription_and_a_purchase_starts_at_its_end() {
    let w = World::new().await;
    for (plan, days) in [("vip", 7), ("team", 14)] {
        w.store
            .update_one(
                collections::PLANS,
                &wemint::store::Filter::id(plan),
                &wemint::store::Update::new().set("trialDays", days),
                wemint::store::UpdateOptions::default(),
            )
            .await
            .unwrap();
    }
    let f = w.function(0).await;
    let carol = f.token("o-carol", None);
    let out = f.ok(&carol, "startTrial", json!({"plan": "vip"})).await;
    assert_eq!(out["subscription"]["state"], "trial", "{out}");
    let trial_end = out["subscription"]["periodEndAt"].as_i64().unwrap();
    assert_eq!(trial_end, f.now + 7 * DAY);
    assert_eq!(f.get(&carol, "podcast-1").await["access"], "granted");
    // A retry is the same trial; a second trial, or one on a plan without trials, is refused.
    let again = f.ok(&carol, "startTrial", json!({"plan": "vip"})).await;
    assert_eq!(again["subscription"], out["subscription"]);
    let dave = f.token("o-dave", None);
    for (token, plan, code) in [
        (&carol, "vip-pro", "TRIAL_UNAVAILABLE"),
        (&dave, "vip-pro", "TRIAL_UNAVAILABLE"),
        (&dave, "team", "PLAN_CHANGE_INVALID"),
    ] {
        let out = f.call(token, "startTrial", json!({"plan": plan})).await;
        assert_eq!(out["error"]["code"], code, "{plan}: {out}");
    }

    // Paying during the trial adds the month after the trial's last day.
    w.shop()
        .buy("o-carol", None, "vip-monthly", f.now + DAY)
        .await;
    let ents = f.ok(&carol, "entitlements", json!({})).await;
    assert_eq!(ents["subscription"]["periodEndAt"], trial_end + 30 * DAY);
    assert_eq!(
        ents["subscription"]["state"], "trial",
        "still in the trial days"
    );
    drop(f);
    let f = w.function(8 * DAY).await;
    let carol = f.token("o-carol", None);
    let ents = f.ok(&carol, "entitlements", json!({})).await;
    assert_eq!(ents["subscription"]["state"], "active");
    let late = f.call(&carol, "startTrial", json!({"plan": "vip"})).await;
    assert_eq!(
        late["error"]["code"], "TRIAL_UNAVAILABLE",
        "subscribed before: {late}"
    );

    // A tenant's owner starts the team trial: the tenant gets the plan's seats.
    let tenancy = Tenancy::new(w.store.clone());
    let (acme, _) = tenancy.create("o-olivia", "Acme").await.unwrap();
    let owner = f.token("o-olivia", Some((&acme.id, TenantRole::Owner)));
    let out = f
        .ok(
            &owner,
            "startTrial",
            json!({"plan": "team", "scope": "tenant"}),
        )
        .await;
    assert_eq!(out["subscription"]["state"], "trial", "{out}");
    let tenant = tenancy.tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!(
        (tenant.plan.as_deref(), tenant.seats),
        (Some("team"), Some(2))
    );
    // A second team of the same owner gets no second free trial.
    let (beta, _) = tenancy.create("o-olivia", "Beta").await.unwrap();
    let owner = f.token("o-olivia", Some((&beta.id, TenantRole::Owner)));
    let again = f
        .call(
            &owner,
            "startTrial",
            json!({"plan": "team", "scope": "tenant"}),
        )
        .await;
    assert_eq!(again["error"]["code"], "TRIAL_UNAVAILABLE", "{again}");
    assert!(
        w.store
            .get(collections::SUBSCRIPTIONS, &format!("tenant:{}", beta.id))
            .await
            .unwrap()
            .is_none()
    );
}
