//! Shipping over the in-memory store with a fake platform: the queue after payment, `ship`,
//! upload failures and their retry, virtual shipments, deadline reminders and the
//! platform's settlement.

use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::commerce::shipping::{ShipInput, ShipmentInput, Template};
use crate::domain::shipping::{ShippedPackage, ShippingState, UploadState};
use crate::wechat::shipping::{PlatformOrder, PlatformOrderState, ShippingUpload, TradeManagePush};
use crate::wechat::{SubscribeMessage, WechatError};

/// The platform: records what it is sent, answers with queued errors first.
#[derive(Default)]
struct FakePlatform {
    uploads: Mutex<Vec<ShippingUpload>>,
    upload_errors: Mutex<Vec<WechatError>>,
    sent: Mutex<Vec<SubscribeMessage>>,
    reminders: Mutex<Vec<(String, i64)>>,
    /// transaction id → state `get_order` answers with (absent: shipped).
    states: Mutex<HashMap<String, PlatformOrderState>>,
    /// Payer `get_order` reports (absent: alice).
    payer: Mutex<Option<String>>,
}

#[async_trait]
impl ShippingPlatform for FakePlatform {
    async fn upload(&self, upload: &ShippingUpload) -> Result<(), WechatError> {
        upload.body()?;
        let mut errors = self.upload_errors.lock().unwrap();
        if !errors.is_empty() {
            return Err(errors.remove(0));
        }
        self.uploads.lock().unwrap().push(upload.clone());
        Ok(())
    }
    async fn remind_receipt(&self, tx: &str, received: i64) -> Result<(), WechatError> {
        self.reminders.lock().unwrap().push((tx.into(), received));
        Ok(())
    }
    async fn order(&self, tx: &str) -> Result<PlatformOrder, WechatError> {
        let state = self
            .states
            .lock()
            .unwrap()
            .get(tx)
            .copied()
            .unwrap_or(PlatformOrderState::Shipped);
        Ok(PlatformOrder {
            transaction_id: tx.into(),
            openid: self
                .payer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| "alice".into()),
            state,
            paid_amount: 0,
        })
    }
    async fn send(&self, message: &SubscribeMessage) -> Result<(), WechatError> {
        self.sent.lock().unwrap().push(message.clone());
        Ok(())
    }
}

const NOTICE: &str = "tpl-shipped";
const REMINDER: &str = "tpl-ship-by";

struct Ship {
    w: World,
    commerce: Commerce,
    platform: Arc<FakePlatform>,
}

async fn ship_world() -> Ship {
    let w = world().await;
    let platform = Arc::new(FakePlatform::default());
    let settings = ShippingSettings {
        notice: Some(Template {
            template_id: NOTICE.into(),
            page: "shop/pages/order/order".into(),
        }),
        reminder: Some(Template {
            template_id: REMINDER.into(),
            page: "admin/pages/shipping/shipping".into(),
        }),
        ..ShippingSettings::default()
    };
    let commerce = Commerce::new(w.store.clone(), APPID, w.clock.clone())
        .with_wxpay(w.wxpay.clone())
        // Virtual goods are sold through virtual payment, as in production.
        .with_xpay(w.xpay.clone())
        .with_data_key(w.data_key.clone())
        .with_shipping(
            Some(platform.clone() as Arc<dyn ShippingPlatform>),
            settings,
        );
    Ship {
        w,
        commerce,
        platform,
    }
}

impl Ship {
    /// Alice buys `sku` through WeChat Pay and the payment is applied.
    async fn paid(&self, request: &str, sku: &str) -> OrderDoc {
        let mut input = cart(request, &[(sku, 1)]);
        input.address = Some(json!({"name": "张三", "phone": "13800006789"}));
        let created = self
            .commerce
            .create_order(&caller("alice"), input)
            .await
            .unwrap();
        let no = created.order.out_trade_no.clone();
        let total = created.order.total_fen.get();
        self.commerce
            .apply_wxpay_transaction(
                &format!("EV-{no}"),
                "v3_notify",
                &transaction(&no, total, "alice"),
            )
            .await
            .unwrap();
        order(&self.w, &created.order.id).await
    }

    async fn ship(&self, shipments: Vec<ShipmentInput>) -> Value {
        self.commerce
            .ship(&caller("admin"), ShipInput { shipments })
            .await
            .unwrap()
    }
}

fn express(order: &OrderDoc, waybills: &[&str]) -> ShipmentInput {
    ShipmentInput {
        order_id: order.id.clone(),
        logistics_type: "express".into(),
        packages: waybills
            .iter()
            .map(|t| ShippedPackage {
                express_company: Some("SF".into()),
                tracking_no: Some((*t).into()),
            })
            .collect(),
    }
}

fn grant(s: &Ship, openid: &str, template: &str) -> impl std::future::Future<Output = ()> {
    let store = s.w.store.clone();
    let (openid, template) = (openid.to_owned(), template.to_owned());
    async move {
        crate::wechat::subscribe_grants::add(&store, &openid, &template, NOW)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn physical_orders_wait_for_shipping_and_ship_once() {
    let s = ship_world().await;
    let paid = s.paid("c-ship-1", "mug").await;
    assert_eq!(paid.status, OrderStatus::Paid, "not fulfilled at payment");
    let shipping = paid.shipping.clone().unwrap();
    assert_eq!(shipping.state, ShippingState::Awaiting);
    assert_eq!(shipping.deadline_at, paid.paid_at.unwrap() + 48 * 3600);
    // Reconcile does not take a paid order waiting to ship for an interrupted fulfilment.
    let report = s.commerce.reconcile().await.unwrap();
    assert_eq!(report.fulfilled, 0);

    grant(&s, "alice", NOTICE).await;
    let reply = s.ship(vec![express(&paid, &["SF1", "SF2"])]).await;
    assert_eq!(reply["shipped"], 1, "{reply}");
    let shipped = order(&s.w, &paid.id).await;
    assert_eq!(shipped.status, OrderStatus::Fulfilled);
    let sh = shipped.shipping.clone().unwrap();
    assert_eq!(sh.state, ShippingState::Shipped);
    assert_eq!(sh.upload.as_ref().unwrap().state, UploadState::Done);
    assert_eq!(sh.notice.as_deref(), Some("sent"));
    let uploads = s.platform.uploads.lock().unwrap().clone();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].packages.len(), 2);
    assert_eq!(
        uploads[0].packages[0].receiver_contact.as_deref(),
        Some("138****6789")
    );
    assert_eq!(uploads[0].payer_openid, "alice");
    let sent = s.platform.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].data["thing3"], "SF SF1");
    assert_eq!(
        sent[0].page.as_deref(),
        Some(format!("shop/pages/order/order?id={}", paid.id).as_str())
    );

    // Again: refused, nothing sent anywhere.
    let again = s.ship(vec![express(&paid, &["SF3"])]).await;
    assert_eq!(
        again["results"][0]["error"]["code"],
        "ORDER_ALREADY_SHIPPED"
    );
    assert_eq!(s.platform.uploads.lock().unwrap().len(), 1);
    assert_eq!(s.platform.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn admins_only_and_bad_entries_are_refused_one_by_one() {
    let s = ship_world().await;
    let paid = s.paid("c-ship-2", "tee").await;
    let err = s
        .commerce
        .ship(
            &caller("alice"),
            ShipInput {
                shipments: vec![express(&paid, &["X"])],
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CommerceError::Forbidden(_)), "{err:?}");
    let empty = s
        .commerce
        .ship(&caller("admin"), ShipInput { shipments: vec![] })
        .await
        .unwrap_err();
    assert!(matches!(empty, CommerceError::BadRequest(_)));
    // A virtual order (nothing to ship) and a bad entry fail; the good one ships.
    let created = s
        .commerce
        .create_order(&caller("alice"), cart("c-ship-3", &[("coins-100", 1)]))
        .await
        .unwrap();
    let reply = s
        .ship(vec![
            ShipmentInput {
                order_id: created.order.id.clone(),
                logistics_type: "self_pickup".into(),
                packages: vec![],
            },
            express(&paid, &[]),
            ShipmentInput {
                order_id: paid.id.clone(),
                logistics_type: "self_pickup".into(),
                packages: vec![],
            },
        ])
        .await;
    let codes: Vec<&str> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(codes, ["ORDER_NOT_SHIPPABLE", "INVALID_SHIPMENT", "ok"]);
    let up = s.platform.uploads.lock().unwrap()[0].clone();
    assert_eq!(up.logistics_type.code(), 4);
    // Nobody accepted the notice: none sent.
    assert_eq!(
        order(&s.w, &paid.id)
            .await
            .shipping
            .unwrap()
            .notice
            .as_deref(),
        Some("no_grant")
    );
}

#[tokio::test]
async fn a_failed_upload_is_retried_by_reconcile_after_its_backoff() {
    let s = ship_world().await;
    let paid = s.paid("c-ship-4", "mug").await;
    s.platform
        .upload_errors
        .lock()
        .unwrap()
        .push(WechatError::api(10_060_001, "payment not found"));
    s.ship(vec![express(&paid, &["SF9"])]).await;
    let failed = order(&s.w, &paid.id).await.shipping.unwrap();
    let upload = failed.upload.unwrap();
    assert_eq!(upload.state, UploadState::Failed);
    assert_eq!(upload.errcode, Some(10_060_001));
    assert_eq!(upload.next_at, NOW + 120);
    // Too early: left alone.
    let report = s.commerce.reconcile().await.unwrap();
    assert_eq!(report.shipping_uploads_retried, 0);
    s.w.clock.set(NOW + 121);
    let report = s.commerce.reconcile().await.unwrap();
    assert_eq!(
        (
            report.shipping_uploads_retried,
            report.shipping_uploads_done
        ),
        (1, 1)
    );
    let done = order(&s.w, &paid.id)
        .await
        .shipping
        .unwrap()
        .upload
        .unwrap();
    assert_eq!(
        (done.state, done.attempts, done.errcode),
        (UploadState::Done, 2, None)
    );
    // A refusal for good is not retried.
    let other = s.paid("c-ship-5", "mug").await;
    s.platform
        .upload_errors
        .lock()
        .unwrap()
        .push(WechatError::api(10_060_003, "re-ship used"));
    s.ship(vec![express(&other, &["SF10"])]).await;
    s.w.clock.set(NOW + 10_000);
    s.commerce.reconcile().await.unwrap();
    let rejected = order(&s.w, &other.id)
        .await
        .shipping
        .unwrap()
        .upload
        .unwrap();
    assert_eq!(rejected.state, UploadState::Rejected);
    assert_eq!(rejected.attempts, 1);
}

#[tokio::test]
async fn virtual_goods_paid_by_wechat_pay_are_shipped_virtually_once() {
    let s = ship_world().await;
    let paid = s.paid("c-ship-6", "vip-wx").await;
    assert_eq!(paid.status, OrderStatus::Fulfilled);
    let sh = paid.shipping.unwrap();
    assert_eq!(sh.state, ShippingState::Shipped);
    assert_eq!(sh.logistics_type.as_deref(), Some("virtual"));
    // Recorded by the payment, reported by reconcile: the notification calls no WeChat API.
    let upload = sh.upload.unwrap();
    assert_eq!(upload.state, UploadState::Pending);
    assert_eq!(upload.next_at, NOW);
    assert!(s.platform.uploads.lock().unwrap().is_empty());
    let report = s.commerce.reconcile().await.unwrap();
    assert_eq!(report.shipping_uploads_done, 1, "{report:?}");
    let uploads = s.platform.uploads.lock().unwrap().clone();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].logistics_type.code(), 3);
    let stored = order(&s.w, &paid.id).await;
    assert_eq!(
        stored.shipping.unwrap().upload.unwrap().state,
        UploadState::Done
    );
    // A duplicate notification and another run ship and report nothing again.
    let no = paid.out_trade_no.clone();
    s.commerce
        .apply_wxpay_transaction("EV-dup", "v3_notify", &transaction(&no, 1800, "alice"))
        .await
        .unwrap();
    let report = s.commerce.reconcile().await.unwrap();
    assert_eq!(report.shipping_uploads_retried, 0, "{report:?}");
    assert_eq!(s.platform.uploads.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn admins_are_reminded_once_before_the_deadline() {
    let s = ship_world().await;
    let paid = s.paid("c-ship-7", "mug").await;
    grant(&s, "admin", REMINDER).await;
    s.commerce.reconcile().await.unwrap();
    assert!(s.platform.sent.lock().unwrap().is_empty(), "too early");
    s.w.clock.set(NOW + 37 * 3600);
    let report = s.commerce.reconcile().await.unwrap();
    assert_eq!(report.shipping_reminders, 1);
    let sent = s.platform.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].touser, "admin");
    assert_eq!(sent[0].data["character_string1"], paid.out_trade_no);
    s.w.clock.set(NOW + 50 * 3600);
    let report = s.commerce.reconcile().await.unwrap();
    assert_eq!(report.shipping_reminders, 0, "once per order");
    let listed = s
        .commerce
        .shipments(
            &caller("admin"),
            ShipmentsInput {
                state: Some("overdue".into()),
                limit: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed["orders"][0]["id"], paid.id.as_str());
    assert_eq!(listed["orders"][0]["overdue"], true);
    assert_eq!(listed["orders"][0]["shipping"]["remindersSent"], 1);
}

#[tokio::test]
async fn settlement_is_recorded_only_as_the_platform_confirms_it() {
    let s = ship_world().await;
    let paid = s.paid("c-ship-8", "mug").await;
    s.ship(vec![express(&paid, &["SF11"])]).await;
    let tx = paid.transaction_id.clone().unwrap();
    let push = TradeManagePush::Settlement {
        transaction_id: Some(tx.clone()),
        merchant_trade_no: None,
        confirm_receive_time: Some(NOW + 100),
        confirm_receive_method: Some(2),
        estimated_settlement_time: Some(NOW + 900),
        settlement_time: Some(NOW + 800),
    };
    // The platform still says shipped: the push claims too much, nothing changes.
    let outcome = s.commerce.apply_trade_manage(&push).await.unwrap();
    assert!(matches!(outcome, TradeManageOutcome::Unchanged { .. }));
    assert_eq!(
        order(&s.w, &paid.id).await.shipping.unwrap().state,
        ShippingState::Shipped
    );
    // Another payer per the platform: ignored too.
    s.platform
        .states
        .lock()
        .unwrap()
        .insert(tx.clone(), PlatformOrderState::Complete);
    *s.platform.payer.lock().unwrap() = Some("mallory".into());
    s.commerce.apply_trade_manage(&push).await.unwrap();
    assert_eq!(
        order(&s.w, &paid.id).await.shipping.unwrap().state,
        ShippingState::Shipped
    );
    *s.platform.payer.lock().unwrap() = None;
    s.platform
        .states
        .lock()
        .unwrap()
        .insert(tx.clone(), PlatformOrderState::ReceiptConfirmed);
    let outcome = s.commerce.apply_trade_manage(&push).await.unwrap();
    assert!(matches!(outcome, TradeManageOutcome::Recorded { .. }));
    let received = order(&s.w, &paid.id).await.shipping.unwrap();
    assert_eq!(received.state, ShippingState::Received);
    assert_eq!(received.received_at, Some(NOW + 100));
    assert_eq!(received.estimated_settlement_at, Some(NOW + 900));
    // Duplicate: unchanged.
    let outcome = s.commerce.apply_trade_manage(&push).await.unwrap();
    assert!(matches!(outcome, TradeManageOutcome::Unchanged { .. }));
    s.platform
        .states
        .lock()
        .unwrap()
        .insert(tx.clone(), PlatformOrderState::Complete);
    let synced = s
        .commerce
        .sync_shipping(&caller("alice"), &paid.id)
        .await
        .unwrap();
    let settled = synced.shipping.unwrap();
    assert_eq!(settled.state, ShippingState::Settled);
    assert_eq!(settled.received_at, Some(NOW + 100), "kept");
    assert_eq!(settled.settled_at, Some(NOW));
    // Someone else's order is not theirs to sync.
    assert!(matches!(
        s.commerce.sync_shipping(&caller("bob"), &paid.id).await,
        Err(CommerceError::OrderNotFound)
    ));
    // An unknown order.
    let unknown = TradeManagePush::RemindShipping {
        transaction_id: Some("nope".into()),
        merchant_trade_no: None,
        msg: None,
    };
    assert_eq!(
        s.commerce.apply_trade_manage(&unknown).await.unwrap(),
        TradeManageOutcome::UnknownOrder
    );
}

#[tokio::test]
async fn the_receipt_reminder_follows_the_platform_rules() {
    let s = ship_world().await;
    let paid = s.paid("c-ship-9", "mug").await;
    let input = |at| RemindReceiptInput {
        order_id: paid.id.clone(),
        received_at: at,
    };
    let early = s
        .commerce
        .remind_receipt(&caller("admin"), input(NOW))
        .await;
    assert!(
        matches!(early, Err(CommerceError::ReceiptReminder(_))),
        "not shipped"
    );
    s.ship(vec![express(&paid, &["SF12"])]).await;
    s.w.clock.set(NOW + 500);
    let future = s
        .commerce
        .remind_receipt(&caller("admin"), input(NOW + 900))
        .await;
    assert!(matches!(future, Err(CommerceError::ReceiptReminder(_))));
    let ok = s
        .commerce
        .remind_receipt(&caller("admin"), input(NOW + 400))
        .await
        .unwrap();
    assert!(ok.shipping.unwrap().receipt_reminder_at.is_some());
    assert_eq!(s.platform.reminders.lock().unwrap().len(), 1);
    let twice = s
        .commerce
        .remind_receipt(&caller("admin"), input(NOW + 400))
        .await;
    assert!(matches!(twice, Err(CommerceError::ReceiptReminder(_))));
    assert_eq!(s.platform.reminders.lock().unwrap().len(), 1);
}
