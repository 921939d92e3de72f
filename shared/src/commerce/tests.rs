//! Unit tests of the order service over an in-memory store with fake providers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::*;
use crate::clock::FixedClock;
use crate::domain::order::{CartLine, OrderStatus};
use crate::domain::shipping::ShippingState;
use crate::identity::{CallerSource, TenantMembership, TenantRole};
use crate::pay::v3::models::{Payer, RefundAmount, TransactionAmount};
use crate::pay::v3::{
    ApiError as PayApiError, JsapiOrder, PayError, Refund, RefundOrder, RefundStatus,
    RequestPaymentParams, TradeState, Transaction,
};
use crate::store::{Filter, Store, StoreError, sqlite::SqliteStore};

const NOW: i64 = 1_750_000_000;
const MCHID: &str = "1900000001";
const APPID: &str = "wxapp0001";

#[derive(Default)]
struct FakeWxpay {
    prepays: AtomicU32,
    closes: Mutex<Vec<String>>,
    refunds: Mutex<Vec<RefundOrder>>,
    /// Transactions the query answers with; absent → NOTPAY.
    paid: Mutex<HashMap<String, Transaction>>,
    refund_status: Mutex<Option<RefundStatus>>,
    /// Errors the next refund calls answer with (first first), after the request was sent.
    refund_errors: Mutex<Vec<PayError>>,
}

#[async_trait]
impl WxpayGateway for FakeWxpay {
    fn mchid(&self) -> &str {
        MCHID
    }
    async fn prepay(&self, order: &JsapiOrder) -> Result<String, PayError> {
        assert!(order.time_expire.is_some(), "time_expire is always sent");
        self.prepays.fetch_add(1, Ordering::SeqCst);
        Ok(format!("wx_prepay_{}", order.out_trade_no))
    }
    fn request_payment(
        &self,
        appid: &str,
        prepay_id: &str,
    ) -> Result<RequestPaymentParams, PayError> {
        Ok(RequestPaymentParams {
            time_stamp: NOW.to_string(),
            nonce_str: "n".into(),
            package: format!("prepay_id={prepay_id}"),
            sign_type: "RSA".into(),
            pay_sign: format!("sig-{appid}"),
        })
    }
    async fn query(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        Ok(self
            .paid
            .lock()
            .unwrap()
            .get(out_trade_no)
            .cloned()
            .unwrap_or_else(|| Transaction {
                trade_state: TradeState::NotPay,
                ..transaction(out_trade_no, 0, "nobody")
            }))
    }
    async fn close(&self, out_trade_no: &str) -> Result<(), PayError> {
        self.closes.lock().unwrap().push(out_trade_no.into());
        Ok(())
    }
    async fn refund(&self, refund: &RefundOrder) -> Result<Refund, PayError> {
        self.refunds.lock().unwrap().push(refund.clone());
        {
            let mut errors = self.refund_errors.lock().unwrap();
            if !errors.is_empty() {
                return Err(errors.remove(0));
            }
        }
        let status = self
            .refund_status
            .lock()
            .unwrap()
            .unwrap_or(RefundStatus::Processing);
        if status == RefundStatus::Unknown {
            return Err(PayError::Api(Box::new(PayApiError {
                status: 503,
                code: "SYSTEM_ERROR".into(),
                message: "busy".into(),
                detail: None,
                request_id: None,
            })));
        }
        Ok(Refund {
            refund_id: format!("R{}", refund.out_refund_no),
            out_refund_no: refund.out_refund_no.clone(),
            transaction_id: None,
            out_trade_no: None,
            channel: None,
            user_received_account: None,
            success_time: None,
            create_time: None,
            status,
            funds_account: None,
            amount: RefundAmount {
                total: refund.total_fen,
                refund: refund.refund_fen,
                payer_total: None,
                payer_refund: None,
                currency: None,
            },
        })
    }
}

#[derive(Default)]
struct FakeXpay {
    paid: Mutex<HashMap<String, i64>>,
    provided: Mutex<Vec<String>>,
    /// What `query_order` says of each requested refund number (a refund is final only
    /// when the query says so).
    refund_states: Mutex<HashMap<String, crate::pay::xpay_after_sale::RefundOrderState>>,
}

#[async_trait]
impl XpayGateway for FakeXpay {
    fn payment_params(
        &self,
        purchase: &XpayPurchase<'_>,
        session_key: &str,
    ) -> Result<Value, XpayFailure> {
        let sign_data = json!({
            "productId": purchase.product_id, "buyQuantity": purchase.quantity,
            "goodsPrice": purchase.unit_price_fen, "activitySellingPrice": purchase.selling_price_fen,
            "outTradeNo": purchase.out_trade_no,
        })
        .to_string();
        Ok(self.resign(&sign_data, session_key))
    }
    fn resign(&self, sign_data: &str, session_key: &str) -> Value {
        json!({"mode": "short_series_goods", "signData": sign_data, "paySig": "p",
            "signature": format!("sk:{session_key}")})
    }
    async fn query(&self, _openid: &str, no: &str) -> Result<XpayOrderState, XpayFailure> {
        let paid = self.paid.lock().unwrap().get(no).copied();
        Ok(XpayOrderState {
            paid: paid.is_some(),
            closed: false,
            paid_fee: paid.unwrap_or(0),
            left_fee: paid.unwrap_or(0),
            paid_time: NOW,
            transaction_id: String::new(),
        })
    }
    async fn refund(
        &self,
        _: &str,
        _: &str,
        refund_no: &str,
        _: i64,
        _: i64,
    ) -> Result<(), XpayFailure> {
        self.refund_states.lock().unwrap().insert(
            refund_no.into(),
            crate::pay::xpay_after_sale::RefundOrderState::Pending,
        );
        Ok(())
    }
    async fn refund_state(
        &self,
        _openid: &str,
        refund_no: &str,
    ) -> Result<Option<crate::pay::xpay_after_sale::RefundOrderState>, XpayFailure> {
        Ok(self.refund_states.lock().unwrap().get(refund_no).copied())
    }
    async fn provided(&self, no: &str) -> Result<(), XpayFailure> {
        self.provided.lock().unwrap().push(no.into());
        Ok(())
    }
}

struct World {
    commerce: Arc<Commerce>,
    store: Arc<dyn Store>,
    wxpay: Arc<FakeWxpay>,
    xpay: Arc<FakeXpay>,
    clock: Arc<FixedClock>,
    data_key: Arc<DataKey>,
}

impl World {
    /// A delivery push after the buyer paid: `query_order` (the fake) says paid with the
    /// pushed amount, as WeChat does once it sends the push.
    async fn deliver_xpay(&self, push: &XpayDelivery) -> Result<PaymentOutcome, CommerceError> {
        self.xpay
            .paid
            .lock()
            .unwrap()
            .insert(push.out_trade_no.clone(), push.actual_price);
        self.commerce.deliver_xpay(push).await
    }
}

fn caller(openid: &str) -> Caller {
    Caller {
        openid: openid.into(),
        appid: APPID.into(),
        unionid: None,
        tenant: None,
        plan: None,
        admin: false,
        source: CallerSource::Session,
    }
}

fn transaction(no: &str, total: i64, payer: &str) -> Transaction {
    Transaction {
        appid: Some(APPID.into()),
        mchid: MCHID.into(),
        out_trade_no: no.into(),
        transaction_id: Some(format!("42000{no}")),
        trade_type: Some("JSAPI".into()),
        trade_state: TradeState::Success,
        trade_state_desc: None,
        bank_type: None,
        attach: None,
        success_time: Some("2025-06-15T23:06:40+08:00".into()),
        payer: Some(Payer {
            openid: payer.into(),
        }),
        amount: Some(TransactionAmount {
            total: Some(total),
            payer_total: Some(total),
            currency: Some("CNY".into()),
            payer_currency: None,
        }),
    }
}

async fn world() -> World {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    crate::store::bootstrap(store.as_ref()).await.unwrap();
    for doc in [
        json!({"_id":"mug","sku":"mug","title":"Mug","priceFen":2500,"kind":{"type":"physical"},"stock":5,"active":true}),
        json!({"_id":"tee","sku":"tee","title":"Tee","priceFen":9900,"kind":{"type":"physical"},"active":true}),
        json!({"_id":"old","sku":"old","title":"Old","priceFen":100,"kind":{"type":"physical"},"active":false}),
        json!({"_id":"article-1","sku":"article-1","title":"Article","priceFen":600,"kind":{"type":"content_unlock","content":"c1"},"active":true}),
        json!({"_id":"coins-100","sku":"coins-100","title":"100 coins","priceFen":1000,"kind":{"type":"coins","amount":100},"active":true}),
        json!({"_id":"vip-month","sku":"vip-month","title":"VIP","priceFen":1800,"kind":{"type":"membership","plan":"vip"},"active":true}),
        json!({"_id":"vip-wx","sku":"vip-wx","title":"VIP (WeChat Pay)","priceFen":1800,"kind":{"type":"membership","plan":"vip"},"channel":"wxpay","active":true}),
        json!({"_id":"team","sku":"team","title":"Team","priceFen":9900,"kind":{"type":"tenant_plan","plan":"team"},"active":true}),
    ] {
        store.insert(collections::PRODUCTS, doc).await.unwrap();
    }
    for plan in [
        json!({"_id":"vip","id":"vip","title":"VIP","tier":1,"periodDays":30,"priceFen":1800}),
        json!({"_id":"team","id":"team","title":"Team","tier":2,"periodDays":30,"priceFen":9900,"seats":5}),
    ] {
        store.insert(collections::PLANS, plan).await.unwrap();
    }
    let data_key = Arc::new(DataKey::from_bytes(&[9u8; 32]).unwrap());
    store
        .insert(
            collections::USERS,
            json!({"_id":"alice","openid":"alice","appid":APPID,"role":"user",
                "sessionKey": data_key.seal("alice", b"alice-session-key").unwrap(),
                "sessionKeyAt": NOW, "createdAt": NOW, "lastLoginAt": NOW}),
        )
        .await
        .unwrap();
    store
        .insert(
            collections::USERS,
            json!({"_id":"admin","openid":"admin","appid":APPID,"role":"admin",
                "createdAt": NOW, "lastLoginAt": NOW}),
        )
        .await
        .unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let wxpay = Arc::new(FakeWxpay::default());
    let xpay = Arc::new(FakeXpay::default());
    let counter = Arc::new(AtomicU64::new(0));
    let commerce = Commerce::new(store.clone(), APPID, clock.clone())
        .with_wxpay(wxpay.clone())
        .with_xpay(xpay.clone())
        .with_data_key(data_key.clone())
        .with_random(Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&n.to_be_bytes());
            b
        }));
    World {
        commerce: Arc::new(commerce),
        store,
        wxpay,
        xpay,
        clock,
        data_key,
    }
}

fn cart(request: &str, items: &[(&str, u32)]) -> CreateInput {
    CreateInput {
        client_request_id: request.into(),
        items: items
            .iter()
            .map(|(sku, quantity)| CartLine {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect(),
        address: None,
        upgrade: None,
    }
}

async fn stock(w: &World, sku: &str) -> i64 {
    w.store
        .get(collections::PRODUCTS, sku)
        .await
        .unwrap()
        .unwrap()["stock"]
        .as_i64()
        .unwrap()
}

async fn order(w: &World, id: &str) -> OrderDoc {
    w.store
        .get_as(collections::ORDERS, id)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn prices_on_the_server_and_replays_the_same_request() {
    let w = world().await;
    // A price sent by the client is not even part of the input type: it is dropped.
    let input: CreateInput = serde_json::from_value(json!({
        "clientRequestId": "c-1",
        "items": [{"sku": "mug", "quantity": 2, "priceFen": 1}],
        "totalFen": 1,
    }))
    .unwrap();
    let created = w
        .commerce
        .create_order(&caller("bob"), input)
        .await
        .unwrap();
    assert_eq!(created.order.total_fen.get(), 5000);
    assert_eq!(created.order.status, OrderStatus::Created);
    assert_eq!(created.order.expires_at, NOW + DEFAULT_ORDER_TTL_SECS);
    assert_eq!(stock(&w, "mug").await, 3);
    let payment = created.payment.clone().unwrap();
    assert_eq!(payment["channel"], "wxpay");
    assert_eq!(payment["params"]["signType"], "RSA");

    let again = w
        .commerce
        .create_order(&caller("bob"), cart("c-1", &[("mug", 2)]))
        .await
        .unwrap();
    assert_eq!(again.order.id, created.order.id);
    assert_eq!(
        again.payment.unwrap()["params"]["package"],
        payment["params"]["package"]
    );
    assert_eq!(
        w.wxpay.prepays.load(Ordering::SeqCst),
        1,
        "no second prepay"
    );
    assert_eq!(stock(&w, "mug").await, 3, "stock taken once");

    let err = w
        .commerce
        .create_order(&caller("bob"), cart("c-1", &[("mug", 1)]))
        .await
        .unwrap_err();
    assert!(matches!(err, CommerceError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn refuses_bad_carts_before_taking_stock() {
    let w = world().await;
    let bob = caller("bob");
    for (items, code) in [
        (vec![("nope", 1)], codes::PRODUCT_NOT_FOUND),
        (vec![("old", 1)], codes::PRODUCT_INACTIVE),
        (vec![("mug", 0)], codes::INVALID_QUANTITY),
        (vec![("mug", 1), ("article-1", 1)], codes::MIXED_CHANNELS),
        (vec![("mug", 6)], codes::OUT_OF_STOCK),
        (
            vec![("article-1", 1), ("coins-100", 1)],
            codes::ORDER_SINGLE_PRODUCT,
        ),
        (vec![("team", 1)], codes::TENANT_REQUIRED),
        (vec![("article-1", 1)], codes::SESSION_KEY_MISSING),
    ] {
        let err = w
            .commerce
            .create_order(&bob, cart("r", &items))
            .await
            .unwrap_err();
        assert_eq!(
            crate::runtime::ApiError::from(err).code(),
            code,
            "{items:?}"
        );
    }
    assert_eq!(stock(&w, "mug").await, 5);
    assert_eq!(
        w.store
            .count(collections::ORDERS, &Filter::All)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn stock_never_goes_negative_under_concurrent_orders() {
    let w = world().await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let commerce = w.commerce.clone();
        tasks.push(tokio::spawn(async move {
            commerce
                .create_order(&caller(&format!("u{i}")), cart("c", &[("mug", 1)]))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CommerceError::OutOfStock(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(stock(&w, "mug").await, 0);
}

#[tokio::test]
async fn notification_pays_and_fulfils_once_even_when_duplicated() {
    let w = world().await;
    let alice = caller("alice");
    let created = w
        .commerce
        .create_order(&alice, cart("c", &[("vip-wx", 1)]))
        .await
        .unwrap();
    let tx = transaction(&created.order.out_trade_no, 1800, "alice");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let commerce = w.commerce.clone();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            commerce
                .apply_wxpay_transaction("EV-1", "v3_notify", &tx)
                .await
                .unwrap()
        }));
    }
    let mut applied = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), PaymentOutcome::Applied { .. }) {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    let o = order(&w, &created.order.id).await;
    assert_eq!(o.status, OrderStatus::Fulfilled);
    assert_eq!(
        o.transaction_id.as_deref(),
        Some(&*format!("42000{}", o.out_trade_no))
    );
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sub["segments"].as_array().unwrap().len(),
        1,
        "one period granted"
    );
    assert_eq!(sub["appliedOrders"], json!([o.id]));
    let event = w
        .store
        .get(collections::PAYMENT_EVENTS, "EV-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event["result"], "applied");
    assert_eq!(event["deliveries"], 49);
}

#[tokio::test]
async fn mismatched_payments_change_nothing_but_flag_review() {
    let w = world().await;
    let bob = caller("bob");
    let created = w
        .commerce
        .create_order(&bob, cart("c", &[("mug", 1)]))
        .await
        .unwrap();
    let no = created.order.out_trade_no.clone();
    let mut other_mch = transaction(&no, 2500, "bob");
    other_mch.mchid = "1".into();
    let mut other_payer = transaction(&no, 2500, "bob");
    other_payer.payer = Some(Payer {
        openid: "mallory".into(),
    });
    for (i, tx) in [other_mch, other_payer, transaction(&no, 1, "bob")]
        .iter()
        .enumerate()
    {
        let outcome = w
            .commerce
            .apply_wxpay_transaction(&format!("EV-{i}"), "v3_notify", tx)
            .await
            .unwrap();
        assert!(
            matches!(outcome, PaymentOutcome::Review { .. }),
            "{outcome:?}"
        );
    }
    let o = order(&w, &created.order.id).await;
    assert_eq!(o.status, OrderStatus::Review);
    assert!(o.paid_at.is_none());
    // A correct notification afterwards does not pay an order under review.
    let outcome = w
        .commerce
        .apply_wxpay_transaction("EV-ok", "v3_notify", &transaction(&no, 2500, "bob"))
        .await
        .unwrap();
    assert!(matches!(outcome, PaymentOutcome::AlreadyPaid { .. }));
    assert_eq!(
        order(&w, &created.order.id).await.status,
        OrderStatus::Review
    );
    let unknown = w
        .commerce
        .apply_wxpay_transaction(
            "EV-x",
            "v3_notify",
            &transaction("WM0000000000unknown", 1, "bob"),
        )
        .await
        .unwrap();
    assert_eq!(unknown, PaymentOutcome::UnknownOrder);
}

#[tokio::test]
async fn an_unknown_order_is_recorded_once_and_its_redeliveries_write_nothing() {
    let w = world().await;
    let tx = transaction("WM0000000000unknown", 100, "bob");
    for _ in 0..3 {
        let outcome = w
            .commerce
            .apply_wxpay_transaction("EV-unknown", "v3_notify", &tx)
            .await
            .unwrap();
        assert_eq!(outcome, PaymentOutcome::UnknownOrder);
    }
    let events = w
        .store
        .find(
            collections::PAYMENT_EVENTS,
            &Filter::All,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["result"], "unknown_order");
    assert_eq!(events[0]["outTradeNo"], "WM0000000000unknown");
    assert!(events[0].get("deliveries").is_none(), "{:?}", events[0]);
    assert_eq!(
        w.store
            .count(collections::ORDERS, &Filter::All)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn owners_only_and_cancel_releases_stock() {
    let w = world().await;
    let bob = caller("bob");
    let created = w
        .commerce
        .create_order(&bob, cart("c", &[("mug", 2)]))
        .await
        .unwrap();
    let id = created.order.id.clone();
    assert!(matches!(
        w.commerce.get_order(&caller("eve"), &id).await,
        Err(CommerceError::OrderNotFound)
    ));
    assert!(matches!(
        w.commerce.cancel_order(&caller("eve"), &id).await,
        Err(CommerceError::OrderNotFound)
    ));
    let listed = w
        .commerce
        .list_orders(&caller("eve"), ListInput::default())
        .await
        .unwrap();
    assert_eq!(listed["orders"], json!([]));
    let closed = w.commerce.cancel_order(&bob, &id).await.unwrap();
    assert_eq!(closed.status, OrderStatus::Closed);
    assert_eq!(stock(&w, "mug").await, 5);
    assert_eq!(
        *w.wxpay.closes.lock().unwrap(),
        vec![created.order.out_trade_no.clone()]
    );
    assert!(matches!(
        w.commerce.cancel_order(&bob, &id).await,
        Err(CommerceError::NotCancelable(_))
    ));
    assert_eq!(stock(&w, "mug").await, 5, "released once");
    // Paid after closing (the payment was already under way): taken, stock taken again.
    let outcome = w
        .commerce
        .apply_wxpay_transaction(
            "EV-late",
            "v3_notify",
            &transaction(&closed.out_trade_no, 5000, "bob"),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, PaymentOutcome::Applied { .. }));
    // Physical goods stay paid, waiting to ship (issue #18).
    assert_awaits_shipping(&order(&w, &id).await);
    assert_eq!(stock(&w, "mug").await, 3);
}

#[tokio::test]
async fn refunds_are_admin_only_idempotent_and_bounded() {
    let w = world().await;
    let bob = caller("bob");
    let admin = caller("admin");
    let created = w
        .commerce
        .create_order(&bob, cart("c", &[("tee", 1)]))
        .await
        .unwrap();
    let id = created.order.id.clone();
    w.commerce
        .apply_wxpay_transaction(
            "EV",
            "v3_notify",
            &transaction(&created.order.out_trade_no, 9900, "bob"),
        )
        .await
        .unwrap();
    let input = |no: &str, amount: Option<i64>| RefundInput {
        order_id: id.clone(),
        refund_no: no.into(),
        amount_fen: amount.map(|a| crate::domain::money::Fen::new(a).unwrap()),
        reason: None,
    };
    assert!(matches!(
        w.commerce.refund(&bob, input("R1", Some(100))).await,
        Err(CommerceError::Forbidden(_))
    ));
    let r1 = w
        .commerce
        .refund(&admin, input("R1", Some(4000)))
        .await
        .unwrap();
    assert_eq!(r1.status, RefundState::Processing);
    let again = w
        .commerce
        .refund(&admin, input("R1", Some(4000)))
        .await
        .unwrap();
    assert_eq!(again.refund_no, "R1");
    assert_eq!(w.wxpay.refunds.lock().unwrap().len(), 1, "one refund call");
    assert!(matches!(
        w.commerce.refund(&admin, input("R1", Some(10))).await,
        Err(CommerceError::Conflict(_))
    ));
    assert!(matches!(
        w.commerce.refund(&admin, input("R2", Some(6000))).await,
        Err(CommerceError::Refund(_))
    ));
    assert!(
        w.store
            .get(collections::REFUNDS, "R2")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(order(&w, &id).await.status, OrderStatus::Refunding);

    assert!(
        w.commerce
            .settle_refund("R1", RefundState::Success, Some("X"))
            .await
            .unwrap()
    );
    assert!(
        !w.commerce
            .settle_refund("R1", RefundState::Success, Some("X"))
            .await
            .unwrap()
    );
    let o = order(&w, &id).await;
    assert_eq!(
        (o.status, o.refunded_fen.get(), o.refunding_fen.get()),
        (OrderStatus::PartiallyRefunded, 4000, 0)
    );

    *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Success);
    let rest = w.commerce.refund(&admin, input("R3", None)).await.unwrap();
    assert_eq!(
        (rest.status, rest.amount_fen.get()),
        (RefundState::Success, 5900)
    );
    let o = order(&w, &id).await;
    assert_eq!(
        (o.status, o.refunded_fen.get()),
        (OrderStatus::Refunded, 9900)
    );
    assert!(matches!(
        w.commerce.refund(&admin, input("R4", Some(1))).await,
        Err(CommerceError::Refund(_))
    ));
}

/// A paid order of physical goods: not fulfilled at payment, it stays `paid` waiting to
/// ship, its shipping deadline counted from the payment.
fn assert_awaits_shipping(o: &OrderDoc) {
    assert_eq!(o.status, OrderStatus::Paid, "{}", o.id);
    assert!(o.fulfilled_at.is_none(), "{}", o.id);
    let shipping = o.shipping.as_ref().expect("waits for shipping");
    assert_eq!(shipping.state, ShippingState::Awaiting, "{}", o.id);
    assert!(shipping.deadline_at > o.paid_at.expect("paid"), "{}", o.id);
}

#[tokio::test]
async fn reconciliation_fulfils_lost_notifications_closes_expired_and_retries_refunds() {
    let w = world().await;
    let bob = caller("bob");
    let lost = w
        .commerce
        .create_order(&bob, cart("a", &[("mug", 1)]))
        .await
        .unwrap();
    let expired = w
        .commerce
        .create_order(&bob, cart("b", &[("mug", 2)]))
        .await
        .unwrap();
    w.wxpay.paid.lock().unwrap().insert(
        lost.order.out_trade_no.clone(),
        transaction(&lost.order.out_trade_no, 2500, "bob"),
    );
    w.clock.advance(120);
    let report = w.commerce.reconcile().await.unwrap();
    assert_eq!((report.checked, report.paid, report.closed), (2, 1, 0));
    // Physical goods stay paid, waiting to ship (issue #18).
    assert_awaits_shipping(&order(&w, &lost.order.id).await);
    assert_eq!(
        order(&w, &expired.order.id).await.status,
        OrderStatus::Created
    );

    w.clock.advance(DEFAULT_ORDER_TTL_SECS);
    let report = w.commerce.reconcile().await.unwrap();
    assert_eq!(report.closed, 1);
    assert_eq!(
        order(&w, &expired.order.id).await.status,
        OrderStatus::Closed
    );
    assert_eq!(stock(&w, "mug").await, 4);

    // A refund that failed to reach WeChat Pay is re-sent with the same number.
    *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Unknown);
    let refund = w
        .commerce
        .refund(
            &caller("admin"),
            RefundInput {
                order_id: lost.order.id.clone(),
                refund_no: "RF1".into(),
                amount_fen: None,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(refund.status, RefundState::Processing);
    *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Success);
    w.clock.advance(120);
    let report = w.commerce.reconcile().await.unwrap();
    assert_eq!((report.refunds_retried, report.refunds_settled), (1, 1));
    let refunds = w.wxpay.refunds.lock().unwrap().clone();
    assert_eq!(refunds.len(), 2);
    assert!(refunds.iter().all(|r| r.out_refund_no == "RF1"));
    assert_eq!(
        order(&w, &lost.order.id).await.status,
        OrderStatus::Refunded
    );
}

#[tokio::test]
async fn virtual_goods_use_xpay_and_deliveries_grant_once() {
    let w = world().await;
    let alice = caller("alice");
    let created = w
        .commerce
        .create_order(&alice, cart("v", &[("coins-100", 2)]))
        .await
        .unwrap();
    let payment = created.payment.unwrap();
    assert_eq!(payment["channel"], "xpay");
    assert_eq!(payment["params"]["signature"], "sk:alice-session-key");
    let sign_data = payment["params"]["signData"].as_str().unwrap().to_owned();
    let again = w
        .commerce
        .create_order(&alice, cart("v", &[("coins-100", 2)]))
        .await
        .unwrap();
    assert_eq!(
        again.payment.unwrap()["params"]["signData"],
        sign_data.as_str()
    );

    let delivery = XpayDelivery {
        openid: "alice".into(),
        out_trade_no: created.order.out_trade_no.clone(),
        env: 0,
        product_id: "coins-100".into(),
        quantity: 2,
        actual_price: 2000,
        transaction_id: String::new(),
        paid_time: NOW + 5,
    };
    let first = w.deliver_xpay(&delivery).await.unwrap();
    assert!(matches!(first, PaymentOutcome::Applied { .. }));
    let second = w.deliver_xpay(&delivery).await.unwrap();
    assert!(matches!(second, PaymentOutcome::AlreadyPaid { .. }));
    let wallet = w
        .store
        .get(collections::ENTITLEMENTS, "alice:coins")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wallet["balance"], 200);

    // Content unlock paid by query_order when the push was lost.
    let unlock = w
        .commerce
        .create_order(&alice, cart("u", &[("article-1", 1)]))
        .await
        .unwrap();
    w.xpay
        .paid
        .lock()
        .unwrap()
        .insert(unlock.order.out_trade_no.clone(), 600);
    w.clock.advance(120);
    let report = w.commerce.reconcile().await.unwrap();
    assert_eq!(report.paid, 1);
    let ent = w
        .store
        .get(collections::ENTITLEMENTS, "alice:article-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ent["kind"].as_str(), ent["content"].as_str()),
        (Some("content_unlock"), Some("c1"))
    );
    assert_eq!(
        *w.xpay.provided.lock().unwrap(),
        vec![unlock.order.out_trade_no.clone()]
    );

    // A push naming other goods or another price holds the order.
    let odd = w
        .commerce
        .create_order(&alice, cart("m", &[("vip-month", 1)]))
        .await
        .unwrap();
    let outcome = w
        .deliver_xpay(&XpayDelivery {
            out_trade_no: odd.order.out_trade_no.clone(),
            product_id: "vip-month".into(),
            quantity: 1,
            actual_price: 1,
            ..delivery.clone()
        })
        .await
        .unwrap();
    assert!(matches!(outcome, PaymentOutcome::Review { .. }));
    assert!(
        w.store
            .get(collections::SUBSCRIPTIONS, "alice")
            .await
            .unwrap()
            .is_none()
    );
    // A sandbox (Env 1) delivery for a production deployment grants nothing.
    let sandbox = w
        .commerce
        .create_order(&alice, cart("s", &[("article-1", 1)]))
        .await
        .unwrap();
    let outcome = w
        .deliver_xpay(&XpayDelivery {
            out_trade_no: sandbox.order.out_trade_no.clone(),
            product_id: "article-1".into(),
            quantity: 1,
            actual_price: 600,
            env: 1,
            ..delivery
        })
        .await
        .unwrap();
    assert!(
        matches!(&outcome, PaymentOutcome::Review { reason, .. } if reason.contains("sandbox")),
        "{outcome:?}"
    );
    assert_eq!(
        order(&w, &sandbox.order.id).await.status,
        OrderStatus::Review
    );
    let _ = &w.data_key;
}

#[tokio::test]
async fn tenant_plans_extend_the_tenant_subscription() {
    let w = world().await;
    let mut owner = caller("alice");
    owner.tenant = Some(TenantMembership {
        id: "t1".into(),
        role: TenantRole::Owner,
    });
    let created = w
        .commerce
        .create_order(&owner, cart("t", &[("team", 2)]))
        .await
        .unwrap();
    let delivery = XpayDelivery {
        openid: "alice".into(),
        out_trade_no: created.order.out_trade_no.clone(),
        env: 0,
        product_id: "team".into(),
        quantity: 2,
        actual_price: 19800,
        transaction_id: "T".into(),
        paid_time: NOW,
    };
    w.deliver_xpay(&delivery).await.unwrap();
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "tenant:t1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub["subscriber"], "tenant:t1");
    assert_eq!(sub["periodEndAt"], NOW + 60 * 86_400);
    assert_eq!(sub["appliedOrders"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn refund_and_v2_notifications_apply_once() {
    use crate::pay::v3::models::RefundNotification;
    let w = world().await;
    let bob = caller("bob");
    let created = w
        .commerce
        .create_order(&bob, cart("c", &[("tee", 1)]))
        .await
        .unwrap();
    let no = created.order.out_trade_no.clone();
    // API v2 notification (merchant still on v2): same checks, same single transition.
    let mut fields = crate::pay::v2::Params::new();
    fields.insert("fee_type".into(), "CNY".into());
    let notify = crate::pay::v2::PaymentNotify {
        appid: APPID.into(),
        mch_id: MCHID.into(),
        out_trade_no: no.clone(),
        transaction_id: "4200000001".into(),
        total_fee: 9900,
        openid: "bob".into(),
        time_end: "20250615230640".into(),
        attach: None,
        fields,
    };
    let first = w.commerce.apply_v2_notification(&notify).await.unwrap();
    assert!(matches!(first, PaymentOutcome::Applied { .. }));
    let again = w.commerce.apply_v2_notification(&notify).await.unwrap();
    assert!(matches!(again, PaymentOutcome::AlreadyPaid { .. }));
    let o = order(&w, &created.order.id).await;
    // Physical goods stay paid, waiting to ship (issue #18).
    assert_eq!(
        (o.status, o.paid_at),
        (OrderStatus::Paid, Some(1_750_000_000))
    );
    assert_awaits_shipping(&o);

    w.commerce
        .refund(
            &caller("admin"),
            RefundInput {
                order_id: o.id.clone(),
                refund_no: "R9".into(),
                amount_fen: None,
                reason: None,
            },
        )
        .await
        .unwrap();
    let refund = |mchid: &str, status: RefundStatus| RefundNotification {
        mchid: mchid.into(),
        out_trade_no: no.clone(),
        transaction_id: "4200000001".into(),
        out_refund_no: "R9".into(),
        refund_id: "5030R9".into(),
        refund_status: status,
        success_time: None,
        user_received_account: None,
        amount: RefundAmount {
            total: 9900,
            refund: 9900,
            payer_total: None,
            payer_refund: None,
            currency: None,
        },
    };
    // Another merchant's notification changes nothing.
    assert!(
        !w.commerce
            .apply_refund_notification("EV-R0", &refund("1", RefundStatus::Success))
            .await
            .unwrap()
    );
    assert_eq!(order(&w, &o.id).await.status, OrderStatus::Refunding);
    assert!(
        w.commerce
            .apply_refund_notification("EV-R1", &refund(MCHID, RefundStatus::Success))
            .await
            .unwrap()
    );
    assert!(
        !w.commerce
            .apply_refund_notification("EV-R1", &refund(MCHID, RefundStatus::Success))
            .await
            .unwrap()
    );
    let o = order(&w, &o.id).await;
    assert_eq!(
        (o.status, o.refunded_fen.get()),
        (OrderStatus::Refunded, 9900)
    );
}

#[tokio::test]
async fn a_failed_refund_returns_the_order_to_fulfilled() {
    let w = world().await;
    let bob = caller("bob");
    let created = w
        .commerce
        .create_order(&bob, cart("c", &[("tee", 1)]))
        .await
        .unwrap();
    w.commerce
        .apply_wxpay_transaction(
            "EV",
            "v3_notify",
            &transaction(&created.order.out_trade_no, 9900, "bob"),
        )
        .await
        .unwrap();
    w.commerce
        .refund(
            &caller("admin"),
            RefundInput {
                order_id: created.order.id.clone(),
                refund_no: "RX".into(),
                amount_fen: Some(crate::domain::money::Fen::new(100).unwrap()),
                reason: None,
            },
        )
        .await
        .unwrap();
    assert!(
        w.commerce
            .settle_refund("RX", RefundState::Closed, None)
            .await
            .unwrap()
    );
    let o = order(&w, &created.order.id).await;
    assert_eq!(
        (o.status, o.refunded_fen.get(), o.refunding_fen.get()),
        (OrderStatus::Fulfilled, 0, 0)
    );
}

/// Adds the `vip-pro` plan (tier 2 above `vip`) and its products.
/// A virtual payment delivery push for one unit of `sku` of `order`, `price` fen, paid `at`.
fn xpay_push(order: &OrderDoc, sku: &str, price: i64, at: i64) -> XpayDelivery {
    XpayDelivery {
        openid: order.owner.clone(),
        out_trade_no: order.out_trade_no.clone(),
        env: 0,
        product_id: sku.into(),
        quantity: 1,
        actual_price: price,
        transaction_id: String::new(),
        paid_time: at,
    }
}

/// Adds `vip-pro` (one tier above `vip`, twice the price) sold as the virtual payment item
/// `pro-month`; Alice has been on `vip` since `NOW`, paid through `channel` (`vip-month` by
/// virtual payment, `vip-wx` by WeChat Pay). Returns her vip order.
async fn alice_on_vip(w: &World, channel: crate::domain::catalog::Channel) -> Created {
    use crate::domain::catalog::Channel;
    w.store
        .insert(
            collections::PLANS,
            json!({"_id":"vip-pro","id":"vip-pro","title":"VIP Pro","tier":2,"periodDays":30,"priceFen":3600}),
        )
        .await
        .unwrap();
    w.store
        .insert(
            collections::PRODUCTS,
            json!({"_id":"pro-month","sku":"pro-month","title":"VIP Pro","priceFen":3600,"kind":{"type":"membership","plan":"vip-pro"},"active":true}),
        )
        .await
        .unwrap();
    let sku = match channel {
        Channel::Xpay => "vip-month",
        _ => "vip-wx",
    };
    let vip = w
        .commerce
        .create_order(&caller("alice"), cart("m", &[(sku, 1)]))
        .await
        .unwrap();
    match channel {
        Channel::Xpay => {
            w.deliver_xpay(&xpay_push(&vip.order, sku, 1800, NOW))
                .await
                .unwrap();
        }
        _ => {
            w.commerce
                .apply_wxpay_transaction(
                    "e1",
                    "v3_notify",
                    &transaction(&vip.order.out_trade_no, 1800, "alice"),
                )
                .await
                .unwrap();
        }
    }
    vip
}

fn upgrade_to(request: &str, plan: &str) -> CreateInput {
    serde_json::from_value(json!({"clientRequestId": request, "upgrade": {"plan": plan}})).unwrap()
}

const DAY: i64 = 86_400;

#[tokio::test]
async fn an_xpay_upgrade_sells_the_plan_item_at_the_prorated_price_and_applies_once() {
    let w = world().await;
    let alice = caller("alice");
    alice_on_vip(&w, crate::domain::catalog::Channel::Xpay).await;

    // 27 days left: pro for them is 3240, the unused vip days are worth 1620.
    w.clock.set(NOW + 3 * DAY);
    let up = w
        .commerce
        .create_order(&alice, upgrade_to("up-1", "vip-pro"))
        .await
        .unwrap();
    assert_eq!(up.order.total_fen.get(), 1620);
    assert_eq!(up.order.items[0].sku, "pro-month");
    let view = up.order.view();
    assert_eq!(view["upgrade"]["fromPlan"], "vip");
    assert_eq!(
        (
            view["upgrade"]["from"].as_i64(),
            view["upgrade"]["until"].as_i64()
        ),
        (Some(NOW + 3 * DAY), Some(NOW + 30 * DAY))
    );
    let sign_data: Value = serde_json::from_str(
        up.payment.as_ref().unwrap()["params"]["signData"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&sign_data["goodsPrice"], &sign_data["activitySellingPrice"]),
        (&json!(3600), &json!(1620)),
        "the item at its registered price, sold at the prorated amount"
    );
    // The same request is the same order; the same key for a cart is a conflict.
    let again = w
        .commerce
        .create_order(&alice, upgrade_to("up-1", "vip-pro"))
        .await
        .unwrap();
    assert_eq!(again.order.id, up.order.id);
    assert!(matches!(
        w.commerce
            .create_order(&alice, cart("up-1", &[("pro-month", 1)]))
            .await,
        Err(CommerceError::Conflict(_))
    ));

    let paid = xpay_push(&up.order, "pro-month", 1620, NOW + 3 * DAY + 60);
    for expected_first in [true, false] {
        let outcome = w.deliver_xpay(&paid).await.unwrap();
        assert_eq!(
            matches!(outcome, PaymentOutcome::Applied { .. }),
            expected_first,
            "{outcome:?}"
        );
    }
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub["periodEndAt"], NOW + 30 * DAY, "no day added or lost");
    assert_eq!(sub["renewPlan"], "vip-pro");
    let segments = sub["segments"].as_array().unwrap();
    assert_eq!(
        segments
            .iter()
            .map(|s| (s["plan"].as_str().unwrap(), s["start"].as_i64().unwrap()))
            .collect::<Vec<_>>(),
        vec![("vip", NOW), ("vip-pro", NOW + 3 * DAY)],
        "the quoted window moved, from the quote time"
    );
    assert_eq!(sub["appliedOrders"].as_array().unwrap().len(), 2);
    let ent = w
        .store
        .get(collections::ENTITLEMENTS, "alice:pro-month")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ent["plan"].as_str(), ent["expiresAt"].as_i64()),
        (Some("vip-pro"), Some(NOW + 30 * DAY))
    );
    assert_eq!(order(&w, &up.order.id).await.status, OrderStatus::Fulfilled);
    // On the higher plan now: another upgrade to it is refused and stores nothing.
    let refused = w
        .commerce
        .create_order(&alice, upgrade_to("up-2", "vip-pro"))
        .await
        .unwrap_err();
    assert_eq!(
        crate::runtime::ApiError::from(refused).code(),
        codes::PLAN_CHANGE_INVALID
    );

    // Refunded in full on day 5: from then on the time is back on vip.
    w.clock.set(NOW + 5 * DAY);
    let refund = w
        .commerce
        .refund(
            &caller("admin"),
            RefundInput {
                order_id: up.order.id.clone(),
                refund_no: "RFND-UP-1".into(),
                amount_fen: None,
                reason: None,
            },
        )
        .await
        .unwrap();
    // Virtual payment: final only when the platform reports it (reconcile's query).
    assert_eq!(refund.status, RefundState::Processing);
    w.xpay.refund_states.lock().unwrap().insert(
        "RFND-UP-1".into(),
        crate::pay::xpay_after_sale::RefundOrderState::Succeeded,
    );
    // Taken back when the refund is final: reconcile's run two minutes later.
    let refunded_at = NOW + 5 * DAY + 120;
    w.clock.set(refunded_at);
    w.commerce.reconcile().await.unwrap();
    assert_eq!(
        refund_doc(&w, "RFND-UP-1").await.unwrap().status,
        RefundState::Success
    );
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "alice")
        .await
        .unwrap()
        .unwrap();
    let segments: Vec<(&str, i64)> = sub["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["plan"].as_str().unwrap(), s["start"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        segments,
        vec![
            ("vip", NOW),
            ("vip-pro", NOW + 3 * DAY),
            ("vip", refunded_at)
        ]
    );
    assert_eq!(sub["renewPlan"], "vip");
    assert_eq!(sub["periodEndAt"], NOW + 30 * DAY);
}

#[tokio::test]
async fn xpay_cannot_charge_a_tiny_upgrade_but_wechat_pay_can() {
    let w = world().await;
    let alice = caller("alice");
    alice_on_vip(&w, crate::domain::catalog::Channel::Wxpay).await;
    // One day left: 120 - 60 = 60 fen, under 40% of the 3600 item.
    w.clock.set(NOW + 29 * DAY);
    let err = w
        .commerce
        .create_order(&alice, upgrade_to("u", "vip-pro"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommerceError::UpgradePriceUnsupported { amount, min, max }
            if (amount.get(), min.get(), max.get()) == (60, 1440, 3600)),
        "{err:?}"
    );
    assert_eq!(
        w.store
            .count(collections::ORDERS, &Filter::eq("openid", "alice"))
            .await
            .unwrap(),
        1,
        "a refused upgrade stores no order"
    );
    w.store
        .insert(
            collections::PRODUCTS,
            json!({"_id":"pro-wx","sku":"pro-wx","title":"VIP Pro","priceFen":3600,"kind":{"type":"membership","plan":"vip-pro"},"channel":"wxpay","active":true}),
        )
        .await
        .unwrap();
    let up = w
        .commerce
        .create_order(&alice, upgrade_to("u", "vip-pro"))
        .await
        .unwrap();
    assert_eq!(
        (up.order.channel, up.order.total_fen.get()),
        (crate::domain::catalog::Channel::Wxpay, 60)
    );

    // Bad requests: unknown plan, a lower plan, nothing to upgrade, both items and upgrade.
    for (input, code) in [
        (upgrade_to("x1", "gold"), codes::PLAN_NOT_FOUND),
        (upgrade_to("x2", "vip"), codes::PLAN_CHANGE_INVALID),
        (upgrade_to("x3", "team"), codes::PLAN_CHANGE_INVALID),
    ] {
        let err = w.commerce.create_order(&alice, input).await.unwrap_err();
        assert_eq!(crate::runtime::ApiError::from(err).code(), code);
    }
    let err = w
        .commerce
        .create_order(&caller("bob"), upgrade_to("x4", "vip-pro"))
        .await
        .unwrap_err();
    assert_eq!(
        crate::runtime::ApiError::from(err).code(),
        codes::SUBSCRIPTION_NOT_FOUND
    );
    let mut both = upgrade_to("x5", "vip-pro");
    both.items = vec![CartLine {
        sku: "mug".into(),
        quantity: 1,
    }];
    assert!(matches!(
        w.commerce.create_order(&alice, both).await,
        Err(CommerceError::BadRequest(_))
    ));
}

#[tokio::test]
async fn a_second_paid_upgrade_of_the_same_time_is_refunded_in_full() {
    let w = world().await;
    let alice = caller("alice");
    let vip = alice_on_vip(&w, crate::domain::catalog::Channel::Wxpay).await;
    w.store
        .insert(
            collections::PRODUCTS,
            json!({"_id":"pro-wx","sku":"pro-wx","title":"VIP Pro","priceFen":3600,"kind":{"type":"membership","plan":"vip-pro"},"channel":"wxpay","active":true}),
        )
        .await
        .unwrap();
    w.clock.set(NOW + 10 * DAY);
    // Two checkouts opened (two devices); both get paid.
    let first = w
        .commerce
        .create_order(&alice, upgrade_to("a", "vip-pro"))
        .await
        .unwrap();
    let second = w
        .commerce
        .create_order(&alice, upgrade_to("b", "vip-pro"))
        .await
        .unwrap();
    assert_eq!(first.order.total_fen, second.order.total_fen);
    let total = first.order.total_fen.get();
    for (event, o) in [("e2", &first), ("e3", &second)] {
        w.commerce
            .apply_wxpay_transaction(
                event,
                "v3_notify",
                &transaction(&o.order.out_trade_no, total, "alice"),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        order(&w, &first.order.id).await.status,
        OrderStatus::Fulfilled
    );
    let refunded = order(&w, &second.order.id).await;
    assert_eq!(refunded.status, OrderStatus::Refunding);
    assert_eq!(refunded.refunding_fen.get(), total);
    assert!(
        refunded
            .review_reason
            .as_deref()
            .is_some_and(|r| r.contains("upgrade not applied")),
        "{:?}",
        refunded.review_reason
    );
    let sent = w.wxpay.refunds.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].out_refund_no, format!("AU{}", second.order.id));
    assert_eq!(sent[0].refund_fen, total);
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "alice")
        .await
        .unwrap()
        .unwrap();
    let applied: Vec<&str> = sub["appliedOrders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        applied,
        vec![vip.order.id.as_str(), first.order.id.as_str()]
    );
    // The automatic refund settles: the upgrade that did apply stays.
    w.commerce
        .settle_refund(&sent[0].out_refund_no, RefundState::Success, None)
        .await
        .unwrap();
    assert_eq!(
        order(&w, &second.order.id).await.status,
        OrderStatus::Refunded
    );
    let after = w
        .store
        .get(collections::SUBSCRIPTIONS, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after["segments"], sub["segments"], "nothing to take back");
    // Redelivered, the second payment starts no second refund.
    w.commerce
        .apply_wxpay_transaction(
            "e3",
            "v3_notify",
            &transaction(&second.order.out_trade_no, total, "alice"),
        )
        .await
        .unwrap();
    assert_eq!(w.wxpay.refunds.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_tenant_plan_upgrade_is_bought_by_an_admin_and_raises_the_seats() {
    let w = world().await;
    w.store
        .insert(
            collections::PLANS,
            json!({"_id":"team-pro","id":"team-pro","title":"Team Pro","tier":3,"periodDays":30,"priceFen":19800,"seats":20}),
        )
        .await
        .unwrap();
    w.store
        .insert(
            collections::PRODUCTS,
            json!({"_id":"team-pro","sku":"team-pro","title":"Team Pro","priceFen":19800,"kind":{"type":"tenant_plan","plan":"team-pro"},"active":true}),
        )
        .await
        .unwrap();
    let tenancy = crate::tenancy::Tenancy::new(w.store.clone());
    let (tenant, _) = tenancy.create("alice", "Acme").await.unwrap();
    let mut owner = caller("alice");
    owner.tenant = Some(TenantMembership {
        id: tenant.id.clone(),
        role: TenantRole::Owner,
    });
    let team = w
        .commerce
        .create_order(&owner, cart("t", &[("team", 1)]))
        .await
        .unwrap();
    w.deliver_xpay(&XpayDelivery {
        openid: "alice".into(),
        out_trade_no: team.order.out_trade_no.clone(),
        env: 0,
        product_id: "team".into(),
        quantity: 1,
        actual_price: 9900,
        transaction_id: "T".into(),
        paid_time: NOW,
    })
    .await
    .unwrap();
    w.clock.set(NOW + 3 * DAY);
    // Someone who is not a member (or only a member) cannot buy it for the tenant.
    let mut outsider = caller("bob");
    outsider.tenant = owner.tenant.clone();
    let input: CreateInput = serde_json::from_value(
        json!({"clientRequestId": "tu", "upgrade": {"plan": "team-pro", "scope": "tenant"}}),
    )
    .unwrap();
    assert!(matches!(
        w.commerce.create_order(&outsider, input.clone()).await,
        Err(CommerceError::Forbidden(_))
    ));
    assert!(matches!(
        w.commerce
            .create_order(&caller("alice"), input.clone())
            .await,
        Err(CommerceError::TenantRequired)
    ));
    let up = w.commerce.create_order(&owner, input).await.unwrap();
    // 27 of 30 days: 17820 - 8910 = 8910, within 40–100% of the 19800 item.
    assert_eq!(up.order.total_fen.get(), 8910);
    w.deliver_xpay(&XpayDelivery {
        openid: "alice".into(),
        out_trade_no: up.order.out_trade_no.clone(),
        env: 0,
        product_id: "team-pro".into(),
        quantity: 1,
        actual_price: 8910,
        transaction_id: "T2".into(),
        paid_time: NOW + 3 * DAY,
    })
    .await
    .unwrap();
    let tenant = tenancy.tenant(&tenant.id).await.unwrap().unwrap();
    let tenant = serde_json::to_value(&tenant).unwrap();
    assert_eq!(
        (tenant["plan"].as_str(), tenant["seats"].as_u64()),
        (Some("team-pro"), Some(20))
    );
    let sub = w
        .store
        .get(
            collections::SUBSCRIPTIONS,
            &format!("tenant:{}", tenant["_id"].as_str().unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub["renewPlan"], "team-pro");
    assert_eq!(sub["periodEndAt"], NOW + 30 * DAY);
}

#[tokio::test]
async fn a_full_refund_takes_back_what_the_order_granted() {
    let w = world().await;
    let alice = caller("alice");
    let admin = caller("admin");
    let mut n = 0;
    // Buys `sku` x `quantity` through virtual payment at the current clock.
    let mut buy = async |sku: &str, quantity: u32, price: i64| {
        n += 1;
        let created = w
            .commerce
            .create_order(&alice, cart(&format!("r{n}"), &[(sku, quantity)]))
            .await
            .unwrap();
        let delivery = XpayDelivery {
            openid: "alice".into(),
            out_trade_no: created.order.out_trade_no.clone(),
            env: 0,
            product_id: sku.into(),
            quantity: i64::from(quantity),
            actual_price: price * i64::from(quantity),
            transaction_id: String::new(),
            paid_time: crate::clock::Clock::now_unix(w.clock.as_ref()),
        };
        w.deliver_xpay(&delivery).await.unwrap();
        (created.order.id, delivery)
    };
    let (article, _) = buy("article-1", 1, 600).await;
    let (coins, coins_push) = buy("coins-100", 2, 1000).await;
    let (month1, _) = buy("vip-month", 1, 1800).await;
    w.clock.set(NOW + DAY);
    let (month2, _) = buy("vip-month", 1, 1800).await;
    assert_eq!(
        w.store
            .get(collections::SUBSCRIPTIONS, "alice")
            .await
            .unwrap()
            .unwrap()["periodEndAt"],
        NOW + 60 * DAY
    );
    // Alice spends 150 of her 200 coins.
    w.store
        .update_one(
            collections::ENTITLEMENTS,
            &Filter::id("alice:coins"),
            &crate::store::Update::new().set("balance", 50),
            crate::store::UpdateOptions::default(),
        )
        .await
        .unwrap();

    w.clock.set(NOW + 2 * DAY);
    for (i, id) in [&article, &coins, &month2].into_iter().enumerate() {
        let refund = w
            .commerce
            .refund(
                &admin,
                RefundInput {
                    order_id: id.clone(),
                    refund_no: format!("RFND-000{i}"),
                    amount_fen: None,
                    reason: None,
                },
            )
            .await
            .unwrap();
        // Virtual payment: requested, final only when the platform says so.
        assert_eq!(refund.status, RefundState::Processing);
        w.xpay.refund_states.lock().unwrap().insert(
            refund.refund_no.clone(),
            crate::pay::xpay_after_sale::RefundOrderState::Succeeded,
        );
        w.clock.advance(120);
        w.commerce.reconcile().await.unwrap();
        let done = refund_doc(&w, &refund.refund_no).await.unwrap();
        assert_eq!(done.status, RefundState::Success);
        let o = order(&w, id).await;
        assert_eq!((o.status, o.grants_revoked), (OrderStatus::Refunded, true));
    }
    let entitlement = |id: &'static str| {
        let store = w.store.clone();
        async move {
            store
                .get(collections::ENTITLEMENTS, id)
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert!(entitlement("alice:article-1").await["revokedAt"].is_i64());
    let wallet = entitlement("alice:coins").await;
    assert_eq!(
        (
            wallet["balance"].as_i64(),
            wallet["coinsShortfall"].as_i64()
        ),
        (Some(0), Some(150)),
        "never below zero; the spent part is recorded"
    );
    // The refunded month comes off the end; the first month stays.
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub["periodEndAt"], NOW + 30 * DAY);
    assert_eq!(sub["revokedOrders"], json!([month2]));
    let membership = entitlement("alice:vip-month").await;
    assert_eq!(membership["expiresAt"], NOW + 30 * DAY);
    assert!(
        membership["revokedAt"].is_null(),
        "still granted by {month1}"
    );

    // A late duplicate of a refunded payment grants nothing again.
    let again = w.deliver_xpay(&coins_push).await.unwrap();
    assert!(
        matches!(again, PaymentOutcome::AlreadyPaid { .. }),
        "{again:?}"
    );
    assert_eq!(entitlement("alice:coins").await["balance"], 0);
    // Bought again, the content opens again.
    buy("article-1", 1, 600).await;
    assert!(entitlement("alice:article-1").await["revokedAt"].is_null());
}

#[tokio::test]
async fn a_buyer_holds_at_most_ten_open_orders() {
    let w = world().await;
    let bob = caller("bob");
    let mut first = None;
    for i in 0..MAX_OPEN_ORDERS {
        let created = w
            .commerce
            .create_order(&bob, cart(&format!("o{i}"), &[("tee", 1)]))
            .await
            .unwrap();
        first.get_or_insert(created.order.id);
    }
    let err = w
        .commerce
        .create_order(&bob, cart("one-more", &[("tee", 1)]))
        .await
        .unwrap_err();
    assert_eq!(
        crate::runtime::ApiError::from(err).code(),
        codes::TOO_MANY_OPEN_ORDERS
    );
    // A retry of an open checkout still answers; other buyers are not affected.
    assert!(
        w.commerce
            .create_order(&bob, cart("o0", &[("tee", 1)]))
            .await
            .is_ok()
    );
    assert!(
        w.commerce
            .create_order(&caller("carol"), cart("c", &[("tee", 1)]))
            .await
            .is_ok()
    );
    // Canceling one frees a slot; so does time (expired orders hold nothing).
    w.commerce
        .cancel_order(&bob, first.as_deref().unwrap())
        .await
        .unwrap();
    w.commerce
        .create_order(&bob, cart("one-more", &[("tee", 1)]))
        .await
        .unwrap();
    w.clock.advance(DEFAULT_ORDER_TTL_SECS);
    w.commerce
        .create_order(&bob, cart("later", &[("tee", 1)]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_delivered_16_times_at_once_applies_once() {
    let w = world().await;
    let alice = caller("alice");
    let vip = alice_on_vip(&w, crate::domain::catalog::Channel::Xpay).await;
    w.clock.set(NOW + DAY);
    let up = w
        .commerce
        .create_order(&alice, upgrade_to("up", "vip-pro"))
        .await
        .unwrap();
    let paid = xpay_push(&up.order, "pro-month", up.order.total_fen.get(), NOW + DAY);
    w.xpay
        .paid
        .lock()
        .unwrap()
        .insert(paid.out_trade_no.clone(), paid.actual_price);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (commerce, paid) = (w.commerce.clone(), paid.clone());
            tokio::spawn(async move { commerce.deliver_xpay(&paid).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), PaymentOutcome::Applied { .. }) {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    let sub = w
        .store
        .get(collections::SUBSCRIPTIONS, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub["appliedOrders"], json!([vip.order.id, up.order.id]));
    assert_eq!(sub["segments"].as_array().unwrap().len(), 2, "{sub}");
    assert_eq!(sub["periodEndAt"], NOW + 30 * DAY);
    assert_eq!(order(&w, &up.order.id).await.status, OrderStatus::Fulfilled);
    assert!(
        w.wxpay.refunds.lock().unwrap().is_empty(),
        "nothing refunded"
    );
}

/// A channel written straight on [`PaymentChannel`], as a new provider would be: it records
/// what the order code asks of it and answers from a script.
#[derive(Default)]
struct ScriptedChannel {
    calls: Mutex<Vec<String>>,
    /// Paid amount the query answers with; `None`: not paid.
    paid: Mutex<Option<i64>>,
}

impl ScriptedChannel {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl PaymentChannel for ScriptedChannel {
    fn channel(&self) -> Channel {
        Channel::Wxpay
    }
    async fn start(
        &self,
        order: &mut OrderDoc,
        payer: channel::Payer<'_>,
    ) -> Result<Started, CommerceError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("start {}", order.out_trade_no));
        assert_eq!(payer.session_key, None, "no session_key was asked for");
        Ok(Started {
            remember: None,
            params: Ok(json!({ "token": order.out_trade_no })),
        })
    }
    async fn query(
        &self,
        order: &OrderDoc,
        _now: i64,
    ) -> Result<Option<Observation>, CommerceError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("query {}", order.out_trade_no));
        let paid = *self.paid.lock().unwrap();
        Ok(paid.map(|total| Observation {
            event_id: format!("scripted:{}", order.out_trade_no),
            source: "query".into(),
            out_trade_no: order.out_trade_no.clone(),
            payment: Some(ObservedPayment {
                mchid: None,
                appid: order.appid.clone(),
                total: crate::domain::money::Fen::new(total).ok(),
                currency: "CNY".into(),
                payer: order.owner.clone(),
                env: None,
                transaction_id: None,
                paid_at: None,
            }),
        }))
    }
    async fn close(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("close {}", order.out_trade_no));
        Ok(())
    }
    async fn refund(
        &self,
        _order: &OrderDoc,
        refund: &RefundDoc,
    ) -> Result<RefundAnswer, CommerceError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("refund {}", refund.refund_no));
        Ok(RefundAnswer::Answered {
            state: Some(RefundState::Success),
            provider_refund_id: Some(format!("S{}", refund.refund_no)),
        })
    }
}

#[tokio::test]
async fn checkout_reconciliation_and_refunds_reach_a_channel_only_through_its_trait() {
    let w = world().await;
    let channel = Arc::new(ScriptedChannel::default());
    let counter = Arc::new(AtomicU64::new(100));
    let commerce = Commerce::new(w.store.clone(), APPID, w.clock.clone())
        .with_channel(channel.clone())
        .with_random(Arc::new(move || {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&counter.fetch_add(1, Ordering::SeqCst).to_be_bytes());
            b
        }));

    let created = commerce
        .create_order(&caller("alice"), cart("s-1", &[("mug", 1)]))
        .await
        .unwrap();
    let no = created.order.out_trade_no.clone();
    assert_eq!(
        created.payment,
        Some(json!({ "channel": "wxpay", "params": { "token": no } }))
    );

    // Unpaid at the first look; paid (the order's total) at the second.
    w.clock.set(NOW + 120);
    assert_eq!(commerce.reconcile().await.unwrap().paid, 0);
    *channel.paid.lock().unwrap() = Some(2500);
    assert_eq!(commerce.reconcile().await.unwrap().paid, 1);
    // Physical goods stay paid, waiting to ship (issue #18).
    assert_awaits_shipping(&order(&w, &created.order.id).await);

    let refund = commerce
        .refund(
            &caller("admin"),
            RefundInput {
                order_id: created.order.id.clone(),
                refund_no: "refund-s-1".into(),
                amount_fen: None,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(refund.status, RefundState::Success);
    assert_eq!(refund.provider_refund_id.as_deref(), Some("Srefund-s-1"));
    assert_eq!(
        order(&w, &created.order.id).await.status,
        OrderStatus::Refunded
    );

    let second = commerce
        .create_order(&caller("alice"), cart("s-2", &[("tee", 1)]))
        .await
        .unwrap();
    let closed = commerce
        .cancel_order(&caller("alice"), &second.order.id)
        .await
        .unwrap();
    assert_eq!(closed.status, OrderStatus::Closed);
    let other = second.order.out_trade_no;
    assert_eq!(
        channel.calls(),
        vec![
            format!("start {no}"),
            format!("query {no}"),
            format!("query {no}"),
            "refund refund-s-1".to_owned(),
            format!("start {other}"),
            format!("close {other}"),
        ]
    );
}

/// Counts the reads of `products` going through to the store underneath.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn Store>,
    product_reads: AtomicU64,
}

impl CountingStore {
    fn count(&self, collection: &str) {
        if collection == collections::PRODUCTS {
            self.product_reads.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Store for CountingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn insert(&self, collection: &str, doc: Value) -> Result<String, StoreError> {
        self.inner.insert(collection, doc).await
    }
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.count(collection);
        self.inner.get(collection, id).await
    }
    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &crate::store::FindOptions,
    ) -> Result<Vec<Value>, StoreError> {
        self.count(collection);
        self.inner.find(collection, filter, options).await
    }
    async fn update_one(
        &self,
        collection: &str,
        filter: &Filter,
        update: &crate::store::Update,
        options: crate::store::UpdateOptions,
    ) -> Result<Option<Value>, StoreError> {
        self.inner
            .update_one(collection, filter, update, options)
            .await
    }
    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<bool, StoreError> {
        self.inner.delete_one(collection, filter).await
    }
    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.inner.delete_many(collection, filter).await
    }
    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.count(collection);
        self.inner.count(collection, filter).await
    }
    async fn ensure_indexes(
        &self,
        collection: &str,
        indexes: &[crate::store::IndexSpec],
    ) -> Result<(), StoreError> {
        self.inner.ensure_indexes(collection, indexes).await
    }
}

#[tokio::test]
async fn a_cart_is_sized_before_any_product_read_and_each_sku_is_read_once() {
    let w = world().await;
    let counting = Arc::new(CountingStore {
        inner: w.store.clone(),
        product_reads: AtomicU64::new(0),
    });
    let commerce =
        Commerce::new(counting.clone(), APPID, w.clock.clone()).with_wxpay(w.wxpay.clone());
    let reads = || counting.product_reads.swap(0, Ordering::SeqCst);
    let bob = caller("bob");

    // 1000 lines (of a sku that does not even exist): refused without reading the catalog.
    let huge: Vec<(&str, u32)> = vec![("nope", 1); 1000];
    let err = commerce
        .create_order(&bob, cart("huge", &huge))
        .await
        .unwrap_err();
    assert_eq!(
        crate::runtime::ApiError::from(err).code(),
        codes::INVALID_QUANTITY
    );
    assert_eq!(reads(), 0, "no product read for an oversized cart");

    // 20 lines naming one missing sku: one read, not twenty.
    let err = commerce
        .create_order(&bob, cart("missing", &[("nope", 1); 20]))
        .await
        .unwrap_err();
    assert_eq!(
        crate::runtime::ApiError::from(err).code(),
        codes::PRODUCT_NOT_FOUND
    );
    assert_eq!(reads(), 1);

    // Repeated skus in a good cart: one read for the whole catalog lookup.
    let created = commerce
        .create_order(&bob, cart("ok", &[("mug", 1), ("tee", 1), ("mug", 1)]))
        .await
        .unwrap();
    assert_eq!(created.order.total_fen.get(), 2 * 2500 + 9900);
    // The stock reservation of `mug` writes `products`, but pricing read it once.
    assert_eq!(reads(), 1);
}

#[tokio::test]
async fn a_session_admin_flag_without_the_stored_role_refunds_nothing() {
    let w = world().await;
    // Alice's stored role is `user`: a token minted while she was an admin no longer counts.
    let demoted = Caller {
        admin: true,
        ..caller("alice")
    };
    let input = RefundInput {
        order_id: "any".into(),
        refund_no: "R-demoted".into(),
        amount_fen: None,
        reason: None,
    };
    assert!(matches!(
        w.commerce.refund(&demoted, input).await,
        Err(CommerceError::Forbidden(_))
    ));
    assert!(!w.commerce.is_admin(&demoted).await.unwrap());
    assert!(w.commerce.is_admin(&caller("admin")).await.unwrap());
}

/// A paid WeChat Pay order of `sku` (price `fen`) for `buyer`.
async fn paid_wxpay_order(w: &World, buyer: &str, sku: &str, fen: i64) -> OrderDoc {
    let created = w
        .commerce
        .create_order(&caller(buyer), cart(&format!("p-{sku}"), &[(sku, 1)]))
        .await
        .unwrap();
    w.commerce
        .apply_wxpay_transaction(
            &format!("EV-{}", created.order.id),
            "v3_notify",
            &transaction(&created.order.out_trade_no, fen, buyer),
        )
        .await
        .unwrap();
    order(w, &created.order.id).await
}

fn full_refund(order: &OrderDoc, no: &str) -> RefundInput {
    RefundInput {
        order_id: order.id.clone(),
        refund_no: no.into(),
        amount_fen: None,
        reason: None,
    }
}

fn refund_notice(
    order: &OrderDoc,
    no: &str,
    status: RefundStatus,
    fen: i64,
) -> crate::pay::v3::models::RefundNotification {
    crate::pay::v3::models::RefundNotification {
        mchid: MCHID.into(),
        out_trade_no: order.out_trade_no.clone(),
        transaction_id: format!("42000{}", order.out_trade_no),
        out_refund_no: no.into(),
        refund_id: format!("5030{no}"),
        refund_status: status,
        success_time: None,
        user_received_account: None,
        amount: RefundAmount {
            total: order.total_fen.get(),
            refund: fen,
            payer_total: None,
            payer_refund: None,
            currency: None,
        },
    }
}

async fn refund_doc(w: &World, no: &str) -> Option<RefundDoc> {
    w.store.get_as(collections::REFUNDS, no).await.unwrap()
}

#[tokio::test]
async fn a_refund_whose_outcome_is_unknown_stays_processing_until_the_provider_answers() {
    let w = world().await;
    let paid = paid_wxpay_order(&w, "bob", "tee", 9900).await;
    // The request reached WeChat Pay, but the answer was lost: an undecodable body, then a
    // reset connection on the first re-send. Neither says the refund failed.
    w.wxpay.refund_errors.lock().unwrap().extend([
        PayError::Decode {
            status: 200,
            message: "truncated".into(),
        },
        PayError::Transport {
            message: "connection reset by peer".into(),
            transient: false,
        },
    ]);
    *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Success);
    let refund = w
        .commerce
        .refund(&caller("admin"), full_refund(&paid, "RU1"))
        .await
        .unwrap();
    assert_eq!(refund.status, RefundState::Processing);
    let o = order(&w, &paid.id).await;
    assert_eq!(
        (o.status, o.refunding_fen.get(), o.refunded_fen.get()),
        (OrderStatus::Refunding, 9900, 0),
        "the amount stays reserved while the outcome is unknown"
    );
    // A second refund cannot use the money that may already be gone.
    assert!(
        w.commerce
            .refund(&caller("admin"), full_refund(&paid, "RU2"))
            .await
            .is_err()
    );
    w.clock.advance(120);
    w.commerce.reconcile().await.unwrap();
    assert_eq!(
        refund_doc(&w, "RU1").await.unwrap().status,
        RefundState::Processing
    );
    w.clock.advance(120);
    let report = w.commerce.reconcile().await.unwrap();
    assert_eq!(report.refunds_settled, 1);
    assert_eq!(
        refund_doc(&w, "RU1").await.unwrap().status,
        RefundState::Success
    );
    let sent: Vec<String> = w
        .wxpay
        .refunds
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.out_refund_no.clone())
        .collect();
    assert_eq!(sent, ["RU1", "RU1", "RU1"], "re-sent with the same number");
    let o = order(&w, &paid.id).await;
    assert_eq!(
        (o.status, o.refunding_fen.get(), o.refunded_fen.get()),
        (OrderStatus::Refunded, 0, 9900)
    );
}

#[tokio::test]
async fn a_verified_success_settles_an_abnormal_refund_and_takes_the_grants_back() {
    let w = world().await;
    let paid = paid_wxpay_order(&w, "bob", "vip-wx", 1800).await;
    assert!(!paid.grants_revoked);
    *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Abnormal);
    let refund = w
        .commerce
        .refund(&caller("admin"), full_refund(&paid, "RA1"))
        .await
        .unwrap();
    assert_eq!(refund.status, RefundState::Abnormal);
    assert_eq!(order(&w, &paid.id).await.status, OrderStatus::Fulfilled);
    // WeChat Pay retried the abnormal refund (or the merchant did) and it went through.
    let notice = refund_notice(&paid, "RA1", RefundStatus::Success, 1800);
    assert!(
        w.commerce
            .apply_refund_notification("EV-RA1", &notice)
            .await
            .unwrap()
    );
    assert!(
        !w.commerce
            .apply_refund_notification("EV-RA1b", &notice)
            .await
            .unwrap(),
        "a redelivery changes nothing"
    );
    assert_eq!(
        refund_doc(&w, "RA1").await.unwrap().status,
        RefundState::Success
    );
    let o = order(&w, &paid.id).await;
    assert_eq!(
        (
            o.status,
            o.refunding_fen.get(),
            o.refunded_fen.get(),
            o.grants_revoked
        ),
        (OrderStatus::Refunded, 0, 1800, true)
    );
}

#[tokio::test]
async fn a_refund_made_in_the_merchant_console_is_recorded_and_takes_the_grants_back() {
    let w = world().await;
    let paid = paid_wxpay_order(&w, "bob", "vip-wx", 1800).await;
    let notice = refund_notice(&paid, "CONSOLE-1", RefundStatus::Success, 1800);
    assert!(
        w.commerce
            .apply_refund_notification("EV-C1", &notice)
            .await
            .unwrap()
    );
    assert!(
        !w.commerce
            .apply_refund_notification("EV-C1", &notice)
            .await
            .unwrap()
    );
    let recorded = refund_doc(&w, "CONSOLE-1").await.unwrap();
    assert_eq!(
        (
            recorded.status,
            recorded.amount_fen.get(),
            recorded.order_id.as_str()
        ),
        (RefundState::Success, 1800, paid.id.as_str())
    );
    assert_eq!(recorded.requested_by, "merchant_console");
    let o = order(&w, &paid.id).await;
    assert_eq!(
        (
            o.status,
            o.refunding_fen.get(),
            o.refunded_fen.get(),
            o.grants_revoked
        ),
        (OrderStatus::Refunded, 0, 1800, true)
    );
    let entitlement = w
        .store
        .get(collections::ENTITLEMENTS, "bob:vip-wx")
        .await
        .unwrap()
        .unwrap();
    assert!(entitlement.get("revokedAt").is_some(), "{entitlement}");
    // Nothing is left to refund.
    assert!(
        w.commerce
            .refund(&caller("admin"), full_refund(&paid, "R-after"))
            .await
            .is_err()
    );
}

/// Write failures injected into a store, as a function or a backend would meet them.
#[derive(Debug)]
enum WriteFault {
    /// The `fail_at`-th write (1-based) and every later one fail without being applied, as if
    /// the function had stopped there.
    CrashAt { writes: AtomicU64, fail_at: u64 },
    /// Inserts into `collection` fail while `down` is set (e.g. the events stream unreachable).
    InsertsDown {
        collection: &'static str,
        down: std::sync::atomic::AtomicBool,
    },
}

/// A store whose writes go through a [`WriteFault`] first.
#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn Store>,
    fault: WriteFault,
}

impl FaultyStore {
    /// A write of `collection`; `insert` says whether it is an insert.
    fn write_to(&self, collection: &str, insert: bool) -> Result<(), StoreError> {
        match &self.fault {
            WriteFault::CrashAt { writes, fail_at } => {
                if writes.fetch_add(1, Ordering::SeqCst) + 1 >= *fail_at {
                    return Err(StoreError::Backend("injected crash".into()));
                }
            }
            WriteFault::InsertsDown {
                collection: c,
                down,
            } => {
                if insert && collection == *c && down.load(Ordering::SeqCst) {
                    return Err(StoreError::Backend(format!("{c} unreachable")));
                }
            }
        }
        Ok(())
    }

    fn write(&self, collection: &str) -> Result<(), StoreError> {
        self.write_to(collection, false)
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn insert(&self, collection: &str, doc: Value) -> Result<String, StoreError> {
        self.write_to(collection, true)?;
        self.inner.insert(collection, doc).await
    }
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get(collection, id).await
    }
    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &crate::store::FindOptions,
    ) -> Result<Vec<Value>, StoreError> {
        self.inner.find(collection, filter, options).await
    }
    async fn update_one(
        &self,
        collection: &str,
        filter: &Filter,
        update: &crate::store::Update,
        options: crate::store::UpdateOptions,
    ) -> Result<Option<Value>, StoreError> {
        self.write(collection)?;
        self.inner
            .update_one(collection, filter, update, options)
            .await
    }
    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<bool, StoreError> {
        self.write(collection)?;
        self.inner.delete_one(collection, filter).await
    }
    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.write(collection)?;
        self.inner.delete_many(collection, filter).await
    }
    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.inner.count(collection, filter).await
    }
    async fn ensure_indexes(
        &self,
        collection: &str,
        indexes: &[crate::store::IndexSpec],
    ) -> Result<(), StoreError> {
        self.inner.ensure_indexes(collection, indexes).await
    }
}

/// The service of `w` over a store that crashes at its `fail_at`-th write.
fn crashing_at(w: &World, fail_at: u64) -> Commerce {
    let store = Arc::new(FaultyStore {
        inner: w.store.clone(),
        fault: WriteFault::CrashAt {
            writes: AtomicU64::new(0),
            fail_at,
        },
    });
    let counter = Arc::new(AtomicU64::new(1 << 32));
    Commerce::new(store, APPID, w.clock.clone())
        .with_wxpay(w.wxpay.clone())
        .with_xpay(w.xpay.clone())
        .with_data_key(w.data_key.clone())
        .with_random(Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&n.to_be_bytes());
            b
        }))
}

#[tokio::test]
async fn a_refund_request_stopped_at_any_write_is_finished_by_reconciliation() {
    // Stop after each write of the request (and of its settlement), then let reconciliation
    // run: the refund ends refunded exactly once, or never existed, and nothing stays held.
    for fail_at in 1..=14 {
        let w = world().await;
        let paid = paid_wxpay_order(&w, "bob", "vip-wx", 1800).await;
        *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Success);
        let crashing = crashing_at(&w, fail_at);
        let outcome = crashing
            .refund(&caller("admin"), full_refund(&paid, "RC1"))
            .await;
        w.clock.advance(120);
        w.commerce.reconcile().await.unwrap();
        w.clock.advance(120);
        w.commerce.reconcile().await.unwrap();
        let o = order(&w, &paid.id).await;
        let doc = refund_doc(&w, "RC1").await;
        let state = (o.status, o.refunding_fen.get(), o.refunded_fen.get());
        match &doc {
            Some(r) => {
                assert_eq!(r.status, RefundState::Success, "stop at write {fail_at}");
                assert!(r.order_applied, "stop at write {fail_at}");
                assert_eq!(
                    state,
                    (OrderStatus::Refunded, 0, 1800),
                    "stop at write {fail_at}"
                );
                assert!(o.grants_revoked, "stop at write {fail_at}");
            }
            None => {
                assert!(outcome.is_err(), "stop at write {fail_at}");
                assert_eq!(
                    state,
                    (OrderStatus::Fulfilled, 0, 0),
                    "stop at write {fail_at}"
                );
            }
        }
        // Asking again with the same number answers with the (finished) refund.
        let again = w
            .commerce
            .refund(&caller("admin"), full_refund(&paid, "RC1"))
            .await
            .unwrap();
        assert_eq!(
            again.status,
            RefundState::Success,
            "stop at write {fail_at}"
        );
        let o = order(&w, &paid.id).await;
        assert_eq!(
            (o.status, o.refunding_fen.get(), o.refunded_fen.get()),
            (OrderStatus::Refunded, 0, 1800),
            "stop at write {fail_at}"
        );
    }
}

#[tokio::test]
async fn the_same_refund_number_finishes_a_request_that_stopped_after_reserving() {
    let w = world().await;
    let paid = paid_wxpay_order(&w, "bob", "tee", 9900).await;
    *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Success);
    // Write 1 records the refund, write 2 reserves on the order; stop before `reserved`.
    assert!(
        crashing_at(&w, 3)
            .refund(&caller("admin"), full_refund(&paid, "RS1"))
            .await
            .is_err()
    );
    let again = w
        .commerce
        .refund(&caller("admin"), full_refund(&paid, "RS1"))
        .await
        .unwrap();
    assert_eq!(again.status, RefundState::Success);
    let o = order(&w, &paid.id).await;
    assert_eq!(
        (o.status, o.refunding_fen.get(), o.refunded_fen.get()),
        (OrderStatus::Refunded, 0, 9900)
    );
}

#[tokio::test]
async fn stock_taken_by_a_create_stopped_at_any_write_is_given_back() {
    for fail_at in 1..=6 {
        let w = world().await;
        let crashing = crashing_at(&w, fail_at);
        let _ = crashing
            .create_order(&caller("bob"), cart("s", &[("mug", 2)]))
            .await;
        // Past the longest a function runs: a hold without its order is an orphan.
        w.clock.advance(21 * 60);
        w.commerce.reconcile().await.unwrap();
        let held: i64 = w
            .store
            .find_as::<OrderDoc>(
                collections::ORDERS,
                &Filter::eq("stockReleased", false),
                &crate::store::FindOptions::new(),
            )
            .await
            .unwrap()
            .iter()
            .flat_map(|o| o.reservations.iter())
            .map(|r| i64::from(r.quantity))
            .sum();
        assert_eq!(stock(&w, "mug").await + held, 5, "stop at write {fail_at}");
        let product = w
            .store
            .get(collections::PRODUCTS, "mug")
            .await
            .unwrap()
            .unwrap();
        let holds = product.get("holds").and_then(Value::as_object);
        assert!(
            holds.is_none_or(|h| h.is_empty()),
            "stop at write {fail_at}: {product}"
        );
    }
}

/// A provider on a bad day: every call is slow and then fails. Records what was asked.
#[derive(Default)]
struct SlowFailingChannel {
    calls: Mutex<Vec<String>>,
}

impl SlowFailingChannel {
    async fn call(&self, what: String) -> Result<(), CommerceError> {
        self.calls.lock().unwrap().push(what);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        Err(CommerceError::provider("timed out", true))
    }
}

#[async_trait]
impl PaymentChannel for SlowFailingChannel {
    fn channel(&self) -> crate::domain::catalog::Channel {
        crate::domain::catalog::Channel::Wxpay
    }
    async fn start(
        &self,
        order: &mut OrderDoc,
        _: channel::Payer<'_>,
    ) -> Result<Started, CommerceError> {
        self.call(format!("start {}", order.out_trade_no)).await?;
        unreachable!("the slow provider always fails")
    }
    async fn query(&self, order: &OrderDoc, _: i64) -> Result<Option<Observation>, CommerceError> {
        self.call(format!("query {}", order.out_trade_no)).await?;
        Ok(None)
    }
    async fn close(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        self.call(format!("close {}", order.out_trade_no)).await
    }
    async fn refund(
        &self,
        _: &OrderDoc,
        refund: &RefundDoc,
    ) -> Result<RefundAnswer, CommerceError> {
        self.call(format!("refund {}", refund.refund_no)).await?;
        Ok(RefundAnswer::Retry(CommerceError::provider(
            "timed out",
            true,
        )))
    }
    async fn delivered(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        self.call(format!("delivered {}", order.out_trade_no)).await
    }
}

/// Regression: the first step used to make up to 100 provider calls before the others
/// started. With work queued in every step and a slow, failing provider, one run stays within
/// the budget, every step makes progress, and each step takes its oldest work first.
#[tokio::test]
async fn a_slow_provider_and_a_backlog_starve_no_reconcile_step() {
    let w = world().await;
    let mut unpaid = Vec::new();
    for i in 0..110 {
        let created = w
            .commerce
            .create_order(&caller(&format!("u{i}")), cart("c", &[("tee", 1)]))
            .await
            .unwrap();
        unpaid.push(created.order.out_trade_no);
        w.clock.advance(1);
    }
    let mut stuck = Vec::new();
    let mut unrevoked = Vec::new();
    for (i, status) in ["paid", "paid", "paid", "refunded", "refunded", "refunded"]
        .into_iter()
        .enumerate()
    {
        let created = w
            .commerce
            .create_order(&caller(&format!("s{i}")), cart("c", &[("tee", 1)]))
            .await
            .unwrap();
        w.store
            .update_one(
                collections::ORDERS,
                &Filter::id(created.order.id.as_str()),
                &crate::store::Update::new()
                    .set("status", status)
                    .set("paidAt", NOW + i as i64),
                crate::store::UpdateOptions::default(),
            )
            .await
            .unwrap();
        if status == "paid" {
            &mut stuck
        } else {
            &mut unrevoked
        }
        .push(created.order.id);
    }
    *w.wxpay.refund_status.lock().unwrap() = Some(RefundStatus::Unknown);
    let mut in_flight = Vec::new();
    for i in 0..3 {
        let buyer = format!("r{i}");
        let created = w
            .commerce
            .create_order(&caller(&buyer), cart("c", &[("tee", 1)]))
            .await
            .unwrap();
        let no = created.order.out_trade_no.clone();
        w.commerce
            .apply_wxpay_transaction(
                &format!("EV-r{i}"),
                "v3_notify",
                &transaction(&no, 9900, &buyer),
            )
            .await
            .unwrap();
        let refund = w
            .commerce
            .refund(
                &caller("admin"),
                RefundInput {
                    order_id: created.order.id.clone(),
                    refund_no: format!("RF{i}"),
                    amount_fen: None,
                    reason: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(refund.status, RefundState::Processing);
        in_flight.push(refund.refund_no);
        w.clock.advance(1);
    }
    w.clock.advance(120);

    let provider = Arc::new(SlowFailingChannel::default());
    let bad_day =
        Commerce::new(w.store.clone(), APPID, w.clock.clone()).with_channel(provider.clone());
    let report = bad_day.reconcile().await.unwrap();
    let calls = provider.calls.lock().unwrap().clone();
    assert!(
        calls.len() <= 100,
        "{} provider calls in one run",
        calls.len()
    );
    // Every step progressed, oldest first.
    let queried: Vec<&str> = calls
        .iter()
        .filter_map(|c| c.strip_prefix("query "))
        .collect();
    assert!(!queried.is_empty());
    assert_eq!(
        queried,
        unpaid[..queried.len()],
        "oldest unpaid orders first"
    );
    let refunded: Vec<&str> = calls
        .iter()
        .filter_map(|c| c.strip_prefix("refund "))
        .collect();
    assert_eq!(refunded, in_flight, "every refund in flight was re-sent");
    // The interrupted fulfilments were finished: physical goods now wait to ship (issue #18).
    for id in &stuck {
        assert_awaits_shipping(&order(&w, id).await);
    }
    for id in &unrevoked {
        assert!(order(&w, id).await.grants_revoked);
    }

    // The run's counters, per step and in all.
    assert_eq!(report.provider_calls as usize, calls.len());
    assert!(report.provider_calls <= CALL_BUDGET);
    let steps: Vec<_> = report
        .steps
        .iter()
        .map(|s| (s.step, s.due, s.handled))
        .collect();
    let handled_unpaid = queried.len() as u32;
    assert_eq!(
        steps,
        [
            ("unpaidOrders", 100, handled_unpaid),
            ("interruptedFulfilments", 3, 3),
            ("refundsInFlight", 3, 3),
            ("unrevokedGrants", 3, 3),
            // The shipping steps (issue #18): nothing shipped, no deadline passed yet.
            ("shippingUploads", 0, 0),
            ("shippingDeadlines", 0, 0),
        ]
    );
    assert_eq!(report.steps[0].deferred, 100 - handled_unpaid);
    assert!(
        report.steps[0].deferred > 0,
        "the backlog waits for the next run"
    );
    assert_eq!(
        report.steps.iter().map(|s| s.provider_calls).sum::<u32>(),
        report.provider_calls
    );
    assert_eq!(
        (
            report.checked,
            report.fulfilled,
            report.refunds_retried,
            report.revoked
        ),
        (handled_unpaid, 3, 3, 3)
    );
    assert_eq!(report.steps[0].errors, handled_unpaid, "every query failed");
}

async fn stream_events(w: &World, kind: &str) -> Vec<crate::events::Event> {
    crate::events::Events::new(w.store.clone())
        .after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

#[tokio::test]
async fn a_paid_order_publishes_order_paid_once_and_a_lost_event_is_published_by_reconcile() {
    let w = world().await;
    // The same payment delivered again (notification retries): still one event.
    let paid = paid_wxpay_order(&w, "alice", "vip-wx", 1800).await;
    for _ in 0..3 {
        w.commerce
            .apply_wxpay_transaction(
                "EV-again",
                "v3_notify",
                &transaction(&paid.out_trade_no, 1800, "alice"),
            )
            .await
            .unwrap();
    }
    let events = stream_events(&w, crate::events::kinds::ORDER_PAID).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].order_id.as_deref(), Some(paid.id.as_str()));
    assert_eq!(events[0].openid.as_deref(), Some("alice"));
    assert_eq!(events[0].data["totalFen"], 1800);

    // The stream is down while a payment arrives (a virtual good: physical ones wait for their
    // shipment): the payment is applied and acknowledged,
    // the order stays `paid` (grants done), and no event exists yet.
    let store = Arc::new(FaultyStore {
        inner: w.store.clone(),
        fault: WriteFault::InsertsDown {
            collection: collections::EVENTS,
            down: std::sync::atomic::AtomicBool::new(true),
        },
    });
    let commerce = Commerce::new(store.clone(), APPID, w.clock.clone()).with_wxpay(w.wxpay.clone());
    let created = w
        .commerce
        .create_order(&caller("alice"), cart("down", &[("vip-wx", 1)]))
        .await
        .unwrap();
    let outcome = commerce
        .apply_wxpay_transaction(
            "EV-down",
            "v3_notify",
            &transaction(&created.order.out_trade_no, 1800, "alice"),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, PaymentOutcome::Applied { .. }));
    assert_eq!(order(&w, &created.order.id).await.status, OrderStatus::Paid);
    assert_eq!(
        stream_events(&w, crate::events::kinds::ORDER_PAID)
            .await
            .len(),
        1
    );

    // Reconcile, once the stream is back, publishes it (once) and finishes the order.
    if let WriteFault::InsertsDown { down, .. } = &store.fault {
        down.store(false, Ordering::SeqCst);
    }
    w.clock.advance(600);
    commerce.reconcile().await.unwrap();
    commerce.reconcile().await.unwrap();
    assert_eq!(
        order(&w, &created.order.id).await.status,
        OrderStatus::Fulfilled
    );
    let events = stream_events(&w, crate::events::kinds::ORDER_PAID).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].order_id.as_deref(),
        Some(created.order.id.as_str())
    );
}

mod shipping;
