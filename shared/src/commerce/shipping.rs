//! Shipping: physical orders wait in `shipping.state = awaiting` after payment (their money
//! `status` stays `paid`, not `fulfilled`), an admin ships them (`ship`: express, same-city
//! or self-pickup, several orders per call), and the shipment is reported to WeChat
//! (`upload_shipping_info`). Virtual goods paid through WeChat Pay get a virtual shipment,
//! recorded by the write that fulfils them and reported by reconcile. The platform then tells us when receipt is confirmed and
//! when the order settles (`trade_manage_order_settlement`, confirmed with `get_order` before
//! anything is recorded).
//!
//! Every move is a conditional update on `shipping.state` (or `shipping.upload.state`), so a
//! duplicated push, a concurrent `ship` and the reconcile timer apply once. An upload that
//! fails is kept on the order (`shipping.upload`) and re-sent by reconcile; one the platform
//! refuses for good is left `rejected` for a person. Admins are reminded before the shipping
//! deadline by subscribe message (when they granted the reminder template) and see overdue
//! orders in `shipments`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Commerce;
use super::error::CommerceError;
use super::model::{OrderDoc, collections as c};
use crate::domain::catalog::{Channel, ProductKind};
use crate::domain::order::OrderStatus;
use crate::domain::shipping::{
    MAX_BATCH, Method, ShippedPackage, Shipping, ShippingState, UploadState, UploadStatus,
    check_shipment, item_desc, mask_phone, upload_backoff_secs,
};
use crate::identity::Caller;
use crate::runtime::ApiError;
use crate::store::{Filter, FindOptions, Update, UpdateOptions};
use crate::wechat::shipping::{
    LogisticsType, Package, PlatformOrder, PlatformOrderState, ShippingUpload, TradeManagePush,
    upload_retryable,
};
use crate::wechat::{ErrCode, SubscribeMessage, WechatClient, WechatError, subscribe_grants};

/// The platform side of shipping: the `/wxa/sec/order/*` calls and subscribe messages.
/// [`WechatClient`] is the real one; reconcile meters it.
#[async_trait]
pub trait ShippingPlatform: Send + Sync {
    /// `upload_shipping_info`.
    async fn upload(&self, upload: &ShippingUpload) -> Result<(), WechatError>;
    /// `notify_confirm_receive`.
    async fn remind_receipt(&self, transaction_id: &str, received: i64) -> Result<(), WechatError>;
    /// `get_order`.
    async fn order(&self, transaction_id: &str) -> Result<PlatformOrder, WechatError>;
    /// `subscribeMessage.send`.
    async fn send(&self, message: &SubscribeMessage) -> Result<(), WechatError>;
}

#[async_trait]
impl ShippingPlatform for WechatClient {
    async fn upload(&self, upload: &ShippingUpload) -> Result<(), WechatError> {
        self.upload_shipping_info(upload).await
    }

    async fn remind_receipt(&self, transaction_id: &str, received: i64) -> Result<(), WechatError> {
        self.notify_confirm_receive(transaction_id, received).await
    }

    async fn order(&self, transaction_id: &str) -> Result<PlatformOrder, WechatError> {
        self.shipping_order(transaction_id).await
    }

    async fn send(&self, message: &SubscribeMessage) -> Result<(), WechatError> {
        self.send_subscribe_message(message).await.map(|_| ())
    }
}

/// A subscribe-message template and the page it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The template id.
    pub template_id: String,
    /// The page opened from the message.
    pub page: String,
}

/// Shipping settings (`docs/api.md`, createOrder shipping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShippingSettings {
    /// Ship within this long after payment (`WEMINT_SHIP_DEADLINE_HOURS`, default 48).
    pub deadline_secs: i64,
    /// Remind admins this long before the deadline (`WEMINT_SHIP_REMIND_BEFORE_HOURS`,
    /// default 12).
    pub remind_before_secs: i64,
    /// The buyer's shipping notice (`WEMINT_SHIPPING_TEMPLATE_ID`, the template whose
    /// consent gatedContent `subscribeGrant` records; `WEMINT_SHIPPING_NOTICE_PAGE`, default `shop/pages/order/order`).
    pub notice: Option<Template>,
    /// The admins' deadline reminder (`WEMINT_SHIP_REMINDER_TEMPLATE`,
    /// `WEMINT_SHIP_REMINDER_PAGE`, default `admin/pages/shipping/shipping`).
    pub reminder: Option<Template>,
}

impl Default for ShippingSettings {
    fn default() -> Self {
        ShippingSettings {
            deadline_secs: 48 * 3600,
            remind_before_secs: 12 * 3600,
            notice: None,
            reminder: None,
        }
    }
}

/// Admins reminded per order (each reminder is one subscribe message).
pub const MAX_ADMINS_REMINDED: u32 = 3;

impl ShippingSettings {
    /// From the configuration (unset: the defaults; templates unset: no message sent).
    ///
    /// # Errors
    /// An hours setting that is not a positive whole number.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, crate::config::ConfigError> {
        let hours = |name: &str, default: i64| -> Result<i64, crate::config::ConfigError> {
            match config.optional(name) {
                None => Ok(default * 3600),
                Some(v) => match v.trim().parse::<i64>() {
                    Ok(h) if (1..=24 * 365).contains(&h) => Ok(h * 3600),
                    _ => Err(crate::config::ConfigError::Invalid {
                        var: name.to_owned(),
                        reason: "a whole number of hours, 1 or more".to_owned(),
                    }),
                },
            }
        };
        let template = |id: &str, page: &str, default_page: &str| {
            config.optional(id).map(|template_id| Template {
                template_id,
                page: config
                    .optional(page)
                    .unwrap_or_else(|| default_page.to_owned()),
            })
        };
        Ok(ShippingSettings {
            deadline_secs: hours("WEMINT_SHIP_DEADLINE_HOURS", 48)?,
            remind_before_secs: hours("WEMINT_SHIP_REMIND_BEFORE_HOURS", 12)?,
            notice: template(
                crate::wechat::subscribe_templates::TemplateKey::Shipping.var(),
                "WEMINT_SHIPPING_NOTICE_PAGE",
                "shop/pages/order/order",
            ),
            reminder: template(
                "WEMINT_SHIP_REMINDER_TEMPLATE",
                "WEMINT_SHIP_REMINDER_PAGE",
                "admin/pages/shipping/shipping",
            ),
        })
    }
}

/// `ship` input: one entry per order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipInput {
    /// The shipments (1 to 20).
    pub shipments: Vec<ShipmentInput>,
}

/// One order's shipment as the admin entered it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentInput {
    /// The order.
    pub order_id: String,
    /// `express`, `same_city` or `self_pickup`.
    pub logistics_type: String,
    /// Express packages: `[{expressCompany, trackingNo}]`.
    #[serde(default)]
    pub packages: Vec<ShippedPackage>,
}

/// `shipments` input.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentsInput {
    /// `awaiting` (default), `overdue`, `shipped`, `received`, `settled`, `upload_failed`.
    #[serde(default)]
    pub state: Option<String>,
    /// At most 50 (default 20).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `remindReceipt` input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemindReceiptInput {
    /// The order.
    pub order_id: String,
    /// When the parcel was signed for (Unix seconds; after shipping, not in the future).
    pub received_at: i64,
}

/// What a `trade_manage_*` push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TradeManageOutcome {
    /// The order's shipping record changed.
    Recorded {
        /// The order.
        order_id: String,
    },
    /// Nothing new (a duplicate, or the platform does not confirm what the push says).
    Unchanged {
        /// The order.
        order_id: String,
    },
    /// No order matches the push.
    UnknownOrder,
}

fn has_physical(order: &OrderDoc) -> bool {
    order
        .items
        .iter()
        .any(|l| matches!(l.kind, ProductKind::Physical))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, CommerceError> {
    serde_json::to_value(v)
        .map_err(|e| CommerceError::Store(crate::store::StoreError::InvalidDocument(e.to_string())))
}

fn state_in(to: ShippingState) -> Filter {
    Filter::is_in(
        "shipping.state",
        to.allowed_from().iter().map(|s| Value::from(s.as_str())),
    )
}

/// `YYYY年M月D日 HH:MM` in China time (subscribe-message `time` values).
fn cst_time(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC));
    format!(
        "{}年{}月{}日 {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn cut(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// The buyer's view of the shipping record (`order.shipping`).
pub(super) fn buyer_view(order: &OrderDoc, s: &Shipping) -> Value {
    let mut v = json!({
        "state": s.state,
        "deadlineAt": s.deadline_at,
        "packages": s.packages,
    });
    for (key, value) in [
        ("shippedAt", s.shipped_at),
        ("receivedAt", s.received_at),
        ("estimatedSettlementAt", s.estimated_settlement_at),
        ("settledAt", s.settled_at),
    ] {
        if let Some(t) = value {
            v[key] = json!(t);
        }
    }
    if let Some(t) = &s.logistics_type {
        v["logisticsType"] = json!(t);
    }
    // The confirm-receipt component takes the WeChat Pay transaction id.
    if let Some(tx) = &order.transaction_id {
        v["transactionId"] = json!(tx);
    }
    v
}

/// The admin's view: the buyer's plus the upload, reminders and whether it is overdue.
pub(super) fn admin_view(order: &OrderDoc, s: &Shipping) -> Value {
    let mut v = buyer_view(order, s);
    if let Some(u) = &s.upload {
        v["upload"] = json!({
            "state": u.state, "attempts": u.attempts, "errcode": u.errcode,
            "lastError": u.last_error, "uploadedAt": u.uploaded_at,
        });
    }
    for (key, value) in [
        ("remindedAt", s.reminded_at),
        ("platformRemindedAt", s.platform_reminded_at),
        ("receiptReminderAt", s.receipt_reminder_at),
    ] {
        if let Some(t) = value {
            v[key] = json!(t);
        }
    }
    if let Some(n) = &s.notice {
        v["notice"] = json!(n);
    }
    v["remindersSent"] = json!(s.reminders_sent);
    if let Some(by) = &s.shipped_by {
        v["shippedBy"] = json!(by);
    }
    v
}

impl Commerce {
    /// Uses `platform` for the shipping reports and messages, with `settings`.
    #[must_use]
    pub fn with_shipping(
        mut self,
        platform: Option<Arc<dyn ShippingPlatform>>,
        settings: ShippingSettings,
    ) -> Self {
        self.shipping = platform;
        self.shipping_settings = Arc::new(settings);
        self
    }

    /// After the grants of a paid order: an order with physical goods waits for shipping
    /// (it stays `paid`). Returns whether it does.
    pub(super) async fn await_shipment(
        &self,
        order: &OrderDoc,
        paid_at: i64,
    ) -> Result<bool, CommerceError> {
        if !has_physical(order) {
            return Ok(false);
        }
        let shipping = Shipping::awaiting(paid_at + self.shipping_settings.deadline_secs);
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str())
                    .and(Filter::eq("status", OrderStatus::Paid.as_str()))
                    .and(Filter::exists("shipping", false)),
                &Update::new().set("shipping", to_value(&shipping)?),
                UpdateOptions::default(),
            )
            .await?;
        Ok(true)
    }

    /// The virtual shipment of an order of virtual goods paid through WeChat Pay, written by
    /// the fulfilling update itself (no write of its own on the payment path). Its report
    /// to the platform is left pending, due at once: reconcile's `shippingUploads` step
    /// sends it within a minute, so a payment notification makes no WeChat call and needs no
    /// access token. `None` for anything else (physical goods ship through `ship`; orders
    /// paid through virtual payment are not part of the platform's shipping flow).
    pub(super) fn virtual_shipment(
        &self,
        order: &OrderDoc,
        now: i64,
    ) -> Result<Option<Value>, CommerceError> {
        if order.channel != Channel::Wxpay || has_physical(order) || order.shipping.is_some() {
            return Ok(None);
        }
        let mut shipping = Shipping::awaiting(now);
        shipping.state = ShippingState::Shipped;
        shipping.logistics_type = Some(LogisticsType::Virtual.as_str().to_owned());
        shipping.item_desc = Some(item_desc(&order.items));
        shipping.shipped_at = Some(now);
        shipping.shipped_by = Some("system".to_owned());
        shipping.upload = Some(UploadStatus::pending(now));
        Ok(Some(to_value(&shipping)?))
    }

    /// `ship` (admin): ships each listed order; one order's refusal does not stop the others.
    /// Reply: `{results: [{orderId, ok, order? | error?}], shipped}`.
    pub async fn ship(&self, caller: &Caller, input: ShipInput) -> Result<Value, CommerceError> {
        self.require_admin(caller).await?;
        if input.shipments.is_empty() || input.shipments.len() > MAX_BATCH {
            return Err(CommerceError::BadRequest(format!(
                "shipments must list 1 to {MAX_BATCH} orders"
            )));
        }
        let mut results = Vec::with_capacity(input.shipments.len());
        let mut shipped = 0;
        for s in &input.shipments {
            match self.ship_one(caller, s).await {
                Ok(order) => {
                    shipped += 1;
                    results.push(
                        json!({"orderId": s.order_id, "ok": true, "order": order.admin_view()}),
                    );
                }
                Err(e @ CommerceError::Store(_)) => return Err(e),
                Err(e) => {
                    let e = ApiError::from(e);
                    results.push(json!({"orderId": s.order_id, "ok": false,
                        "error": {"code": e.code(), "message": e.message()}}));
                }
            }
        }
        Ok(json!({ "results": results, "shipped": shipped }))
    }

    async fn ship_one(
        &self,
        caller: &Caller,
        input: &ShipmentInput,
    ) -> Result<OrderDoc, CommerceError> {
        let shipment = check_shipment(&input.logistics_type, &input.packages)?;
        let order: OrderDoc = self
            .store
            .get_as(c::ORDERS, &input.order_id)
            .await?
            .ok_or(CommerceError::OrderNotFound)?;
        let Some(current) = &order.shipping else {
            return Err(CommerceError::NotShippable(
                "the order has no goods waiting to ship".into(),
            ));
        };
        if current.state != ShippingState::Awaiting {
            return Err(CommerceError::AlreadyShipped);
        }
        if !matches!(
            order.status,
            OrderStatus::Paid | OrderStatus::PartiallyRefunded
        ) {
            return Err(CommerceError::NotShippable(format!(
                "the order is {}",
                order.status.as_str()
            )));
        }
        let now = self.now();
        let mut shipping = current.clone();
        shipping.state = ShippingState::Shipped;
        shipping.logistics_type = Some(shipment.method.as_str().to_owned());
        shipping.packages = shipment.packages;
        shipping.item_desc = Some(item_desc(&order.items));
        shipping.shipped_at = Some(now);
        shipping.shipped_by = Some(caller.openid.clone());
        shipping.upload = Some(UploadStatus::pending(now + 60));
        let mut update = Update::new().set("shipping", to_value(&shipping)?);
        if order.status == OrderStatus::Paid {
            // Handed to shipping is what fulfils physical goods.
            update = update
                .set("status", OrderStatus::Fulfilled.as_str())
                .set("fulfilledAt", now);
        }
        let won: Option<OrderDoc> = self
            .store
            .update_one_as(
                c::ORDERS,
                &Filter::id(order.id.as_str())
                    .and(Filter::eq("status", order.status.as_str()))
                    .and(state_in(ShippingState::Shipped)),
                &update,
                UpdateOptions::default(),
            )
            .await?;
        let Some(shipped) = won else {
            // Shipped, refunded or changed by someone else meanwhile.
            return match self.store.get_as::<OrderDoc>(c::ORDERS, &order.id).await? {
                Some(o)
                    if o.shipping.as_ref().map(|s| s.state) != Some(ShippingState::Awaiting) =>
                {
                    Err(CommerceError::AlreadyShipped)
                }
                _ => Err(CommerceError::Conflict(
                    "the order is changing; try again".into(),
                )),
            };
        };
        tracing::info!(order = %shipped.id, method = shipment.method.as_str(), "order shipped");
        self.upload_shipping(&shipped).await?;
        let notice = self.notify_buyer(&shipped).await?;
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(shipped.id.as_str()),
                &Update::new().set("shipping.notice", notice),
                UpdateOptions::default(),
            )
            .await?;
        Ok(self
            .store
            .get_as(c::ORDERS, &shipped.id)
            .await?
            .unwrap_or(shipped))
    }

    /// The upload of an order's shipment, built from what is stored.
    fn upload_request(&self, order: &OrderDoc, s: &Shipping) -> Result<ShippingUpload, String> {
        let tx = order
            .transaction_id
            .clone()
            .ok_or("the order has no WeChat Pay transaction id")?;
        let kind = s
            .logistics_type
            .as_deref()
            .and_then(LogisticsType::parse)
            .ok_or("the order is not shipped")?;
        let desc = s
            .item_desc
            .clone()
            .unwrap_or_else(|| item_desc(&order.items));
        let contact = order
            .address
            .as_ref()
            .and_then(|a| a.get("phone"))
            .and_then(Value::as_str)
            .and_then(mask_phone);
        let packages = if kind == LogisticsType::Express {
            s.packages
                .iter()
                .map(|p| Package {
                    tracking_no: p.tracking_no.clone(),
                    express_company: p.express_company.clone(),
                    item_desc: desc.clone(),
                    receiver_contact: contact.clone(),
                })
                .collect()
        } else {
            vec![Package {
                item_desc: desc,
                ..Package::default()
            }]
        };
        Ok(ShippingUpload {
            transaction_id: tx,
            logistics_type: kind,
            packages,
            payer_openid: order.owner.clone(),
            upload_time: self.now(),
        })
    }

    /// Reports an order's shipment (`upload_shipping_info`) and records the result in
    /// `shipping.upload`: `done`, `failed` (re-sent by reconcile after a backoff) or
    /// `rejected` (needs a person). Returns the new upload state.
    pub(super) async fn upload_shipping(
        &self,
        order: &OrderDoc,
    ) -> Result<UploadState, CommerceError> {
        let Some(s) = &order.shipping else {
            return Ok(UploadState::Pending);
        };
        let Some(upload) = &s.upload else {
            return Ok(UploadState::Pending);
        };
        if matches!(upload.state, UploadState::Done | UploadState::Rejected) {
            return Ok(upload.state);
        }
        let attempts = upload.attempts + 1;
        let result: Result<(), (String, Option<i64>, bool)> =
            match (self.upload_request(order, s), &self.shipping) {
                (Err(reason), _) => Err((reason, None, false)),
                (Ok(_), None) => Err((
                    "the WeChat client is not configured (WECHAT_APPID)".to_owned(),
                    None,
                    true,
                )),
                (Ok(req), Some(platform)) => platform.upload(&req).await.map_err(|e| {
                    (
                        e.to_string(),
                        e.errcode().map(ErrCode::code),
                        upload_retryable(&e),
                    )
                }),
            };
        let now = self.now();
        let (state, update) = match result {
            Ok(()) => (
                UploadState::Done,
                Update::new()
                    .set("shipping.upload.state", "done")
                    .set("shipping.upload.uploadedAt", now)
                    .unset("shipping.upload.lastError")
                    .unset("shipping.upload.errcode"),
            ),
            Err((message, errcode, retryable)) => {
                tracing::warn!(order = %order.id, error = %message, retryable, "shipping upload failed");
                let state = if retryable {
                    UploadState::Failed
                } else {
                    UploadState::Rejected
                };
                let mut u = Update::new()
                    .set("shipping.upload.state", to_value(&state)?)
                    .set(
                        "shipping.upload.nextAt",
                        now + upload_backoff_secs(attempts),
                    )
                    .set("shipping.upload.lastError", cut(&message, 300));
                u = match errcode {
                    Some(code) => u.set("shipping.upload.errcode", code),
                    None => u.unset("shipping.upload.errcode"),
                };
                (state, u)
            }
        };
        self.store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()).and(Filter::is_in(
                    "shipping.upload.state",
                    ["pending", "failed"].map(Value::from),
                )),
                &update.set("shipping.upload.attempts", i64::from(attempts)),
                UpdateOptions::default(),
            )
            .await?;
        Ok(state)
    }

    /// Sends the buyer the shipping notice when they granted the template; returns what
    /// happened (`sent`, `no_grant`, `failed:<errcode>`, `not_configured`).
    async fn notify_buyer(&self, order: &OrderDoc) -> Result<String, CommerceError> {
        let (Some(template), Some(platform)) = (&self.shipping_settings.notice, &self.shipping)
        else {
            return Ok("not_configured".to_owned());
        };
        let Some(s) = &order.shipping else {
            return Ok("not_configured".to_owned());
        };
        let how = match s.logistics_type.as_deref() {
            // The first waybill (20 characters fit); the order page lists them all.
            Some("express") => s
                .packages
                .first()
                .map(|p| {
                    format!(
                        "{} {}",
                        p.express_company.as_deref().unwrap_or_default(),
                        p.tracking_no.as_deref().unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            Some("self_pickup") => "到店自提".to_owned(),
            Some("same_city") => "同城配送".to_owned(),
            _ => "已发货".to_owned(),
        };
        let message = SubscribeMessage {
            touser: order.owner.clone(),
            template_id: template.template_id.clone(),
            page: Some(format!("{}?id={}", template.page, order.id)),
            data: [
                ("character_string1", cut(&order.out_trade_no, 32)),
                ("thing2", cut(s.item_desc.as_deref().unwrap_or("商品"), 20)),
                ("thing3", cut(&how, 20)),
                ("phrase4", "已发货".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            miniprogram_state: None,
            lang: None,
        };
        self.send_granted(platform.as_ref(), &message).await
    }

    /// Takes a grant of `message`'s template from its recipient, then sends it.
    async fn send_granted(
        &self,
        platform: &dyn ShippingPlatform,
        message: &SubscribeMessage,
    ) -> Result<String, CommerceError> {
        let (who, template) = (&message.touser, &message.template_id);
        if !subscribe_grants::take(&self.store, who, template).await? {
            return Ok("no_grant".to_owned());
        }
        match platform.send(message).await {
            Ok(()) => Ok("sent".to_owned()),
            Err(e) => {
                tracing::warn!(to = %who, error = %e, "shipping subscribe message failed");
                if e.errcode() == Some(ErrCode::UserRefused) {
                    subscribe_grants::reset(&self.store, who, template).await?;
                } else {
                    subscribe_grants::give_back(&self.store, who, template).await?;
                }
                Ok(format!(
                    "failed:{}",
                    e.errcode().map(ErrCode::code).unwrap_or_default()
                ))
            }
        }
    }

    /// Reminds admins that `order` must ship by its deadline: a subscribe message to each
    /// of up to [`MAX_ADMINS_REMINDED`] admins who granted the reminder template. Returns
    /// how many were sent.
    pub(super) async fn remind_admins(
        &self,
        order: &OrderDoc,
        why: &str,
    ) -> Result<u32, CommerceError> {
        let (Some(template), Some(platform), Some(s)) = (
            &self.shipping_settings.reminder,
            &self.shipping,
            &order.shipping,
        ) else {
            return Ok(0);
        };
        let admins = self
            .store
            .find(
                crate::store::collections::USERS,
                &Filter::eq("role", "admin"),
                &FindOptions::new().sort_asc("openid").limit(50),
            )
            .await?;
        let mut sent = 0;
        for admin in admins.iter().filter_map(|a| a.get("openid")?.as_str()) {
            if sent >= MAX_ADMINS_REMINDED {
                break;
            }
            let message = SubscribeMessage {
                touser: admin.to_owned(),
                template_id: template.template_id.clone(),
                page: Some(template.page.clone()),
                data: [
                    ("character_string1", cut(&order.out_trade_no, 32)),
                    ("thing2", cut(&item_desc(&order.items), 20)),
                    ("time3", cst_time(s.deadline_at)),
                    ("thing4", cut(why, 20)),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
                miniprogram_state: None,
                lang: None,
            };
            if self.send_granted(platform.as_ref(), &message).await? == "sent" {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// The deadline reminder of one awaiting order, once: claimed with a conditional write
    /// of `shipping.remindedAt`, then sent.
    pub(super) async fn remind_deadline(
        &self,
        order: &OrderDoc,
        now: i64,
    ) -> Result<bool, CommerceError> {
        let claimed: Option<OrderDoc> = self
            .store
            .update_one_as(
                c::ORDERS,
                &Filter::id(order.id.as_str())
                    .and(Filter::eq("shipping.state", "awaiting"))
                    .and(Filter::exists("shipping.remindedAt", false)),
                &Update::new().set("shipping.remindedAt", now),
                UpdateOptions::default(),
            )
            .await?;
        let Some(order) = claimed else {
            return Ok(false);
        };
        let why = if order.shipping.as_ref().is_some_and(|s| s.overdue(now)) {
            "发货已超时"
        } else {
            "即将超过发货时限"
        };
        let sent = self.remind_admins(&order, why).await?;
        self.record_reminders(&order.id, sent).await?;
        Ok(true)
    }

    async fn record_reminders(&self, order_id: &str, sent: u32) -> Result<(), CommerceError> {
        if sent > 0 {
            self.store
                .update_one(
                    c::ORDERS,
                    &Filter::id(order_id),
                    &Update::new().inc("shipping.remindersSent", i64::from(sent)),
                    UpdateOptions::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// `shipments` (admin): orders by shipping state, deadline first for the ones to ship.
    pub async fn shipments(
        &self,
        caller: &Caller,
        input: ShipmentsInput,
    ) -> Result<Value, CommerceError> {
        self.require_admin(caller).await?;
        let limit = input.limit.unwrap_or(20).clamp(1, 50);
        let now = self.now();
        let state = input.state.as_deref().unwrap_or("awaiting");
        let (filter, sort) = match state {
            "awaiting" => (
                Filter::eq("shipping.state", "awaiting"),
                "shipping.deadlineAt",
            ),
            "overdue" => (
                Filter::eq("shipping.state", "awaiting")
                    .and(Filter::lte("shipping.deadlineAt", now)),
                "shipping.deadlineAt",
            ),
            "upload_failed" => (
                Filter::is_in(
                    "shipping.upload.state",
                    ["failed", "rejected"].map(Value::from),
                ),
                "shipping.shippedAt",
            ),
            "shipped" | "received" | "settled" => {
                (Filter::eq("shipping.state", state), "shipping.shippedAt")
            }
            other => {
                return Err(CommerceError::BadRequest(format!(
                    "state {other} is not one of awaiting, overdue, upload_failed, shipped, received, settled"
                )));
            }
        };
        let orders: Vec<OrderDoc> = self
            .store
            .find_as(
                c::ORDERS,
                &filter,
                &FindOptions::new().sort_asc(sort).limit(limit),
            )
            .await?;
        let views: Vec<Value> = orders
            .iter()
            .map(|o| {
                let mut v = o.admin_view();
                v["overdue"] = json!(o.shipping.as_ref().is_some_and(|s| s.overdue(now)));
                if let Some(a) = &o.address {
                    v["address"] = a.clone();
                }
                v
            })
            .collect();
        Ok(json!({ "orders": views, "now": now }))
    }

    /// `remindReceipt` (admin): asks the buyer of a shipped express order to confirm receipt
    /// (`notify_confirm_receive`, once per order).
    pub async fn remind_receipt(
        &self,
        caller: &Caller,
        input: RemindReceiptInput,
    ) -> Result<OrderDoc, CommerceError> {
        self.require_admin(caller).await?;
        let order: OrderDoc = self
            .store
            .get_as(c::ORDERS, &input.order_id)
            .await?
            .ok_or(CommerceError::OrderNotFound)?;
        let s = order
            .shipping
            .as_ref()
            .ok_or_else(|| CommerceError::ReceiptReminder("the order has no shipment".into()))?;
        let refuse = |why: &str| Err(CommerceError::ReceiptReminder(why.to_owned()));
        if s.state != ShippingState::Shipped {
            return refuse("only a shipped order awaiting receipt");
        }
        if s.logistics_type.as_deref() != Some(Method::Express.as_str()) {
            return refuse("only express orders");
        }
        if s.receipt_reminder_at.is_some() {
            return refuse("the buyer was already reminded (once per order)");
        }
        let now = self.now();
        if input.received_at <= s.shipped_at.unwrap_or(0) || input.received_at > now {
            return refuse("receivedAt must be after shipping and not in the future");
        }
        let (Some(platform), Some(tx)) = (&self.shipping, &order.transaction_id) else {
            return Err(CommerceError::Platform(
                "the WeChat client is not configured".into(),
            ));
        };
        let claimed = self
            .store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str())
                    .and(Filter::eq("shipping.state", "shipped"))
                    .and(Filter::exists("shipping.receiptReminderAt", false)),
                &Update::new().set("shipping.receiptReminderAt", now),
                UpdateOptions::default(),
            )
            .await?;
        if claimed.is_none() {
            return refuse("the buyer was already reminded (once per order)");
        }
        match platform.remind_receipt(tx, input.received_at).await {
            // 10060030: used before (by another path): the reminder stands.
            Ok(()) => {}
            Err(e) if e.errcode().map(ErrCode::code) == Some(10_060_030) => {}
            Err(e) => {
                self.store
                    .update_one(
                        c::ORDERS,
                        &Filter::id(order.id.as_str()),
                        &Update::new().unset("shipping.receiptReminderAt"),
                        UpdateOptions::default(),
                    )
                    .await?;
                return Err(CommerceError::Platform(e.to_string()));
            }
        }
        Ok(self
            .store
            .get_as(c::ORDERS, &order.id)
            .await?
            .unwrap_or(order))
    }

    /// `syncShipping` (the buyer or an admin): asks the platform where the order is
    /// (`get_order`) and records receipt / settlement. The Mini Program calls it when the
    /// buyer comes back from the confirm-receipt page, whose own result is never trusted.
    pub async fn sync_shipping(
        &self,
        caller: &Caller,
        order_id: &str,
    ) -> Result<OrderDoc, CommerceError> {
        let order: OrderDoc = match self.store.get_as::<OrderDoc>(c::ORDERS, order_id).await? {
            Some(o) if o.owner == caller.openid || self.is_admin(caller).await? => o,
            _ => return Err(CommerceError::OrderNotFound),
        };
        if order.shipping.is_some() && order.transaction_id.is_some() {
            self.record_platform_state(&order, None, None).await?;
        }
        Ok(self
            .store
            .get_as(c::ORDERS, order_id)
            .await?
            .unwrap_or(order))
    }

    /// Confirms with `get_order` and records what the platform says: receipt confirmed →
    /// `received`, transaction complete → `settled`. The push's times are used when the
    /// platform agrees. Returns whether the order changed.
    async fn record_platform_state(
        &self,
        order: &OrderDoc,
        received_at: Option<i64>,
        settlement: Option<(Option<i64>, Option<i64>)>,
    ) -> Result<bool, CommerceError> {
        let (Some(platform), Some(tx)) = (&self.shipping, &order.transaction_id) else {
            return Err(CommerceError::Platform(
                "the WeChat client is not configured".into(),
            ));
        };
        let seen = platform
            .order(tx)
            .await
            .map_err(|e| CommerceError::Platform(e.to_string()))?;
        if seen.transaction_id != *tx || seen.openid != order.owner {
            tracing::warn!(order = %order.id, "get_order answered for another order or payer");
            return Ok(false);
        }
        let now = self.now();
        let (estimated, settled_at) = settlement.unwrap_or((None, None));
        let (to, mut update) = match seen.state {
            PlatformOrderState::Complete => (
                ShippingState::Settled,
                Update::new()
                    .set("shipping.state", "settled")
                    .set("shipping.settledAt", settled_at.unwrap_or(now)),
            ),
            state if state.received() => (
                ShippingState::Received,
                Update::new().set("shipping.state", "received"),
            ),
            _ => return Ok(false),
        };
        let was_received = order
            .shipping
            .as_ref()
            .and_then(|s| s.received_at)
            .is_some();
        if !was_received {
            update = update.set("shipping.receivedAt", received_at.unwrap_or(now));
        }
        if let Some(t) = estimated {
            update = update.set("shipping.estimatedSettlementAt", t);
        }
        let changed = self
            .store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()).and(state_in(to)),
                &update,
                UpdateOptions::default(),
            )
            .await?
            .is_some();
        if changed {
            tracing::info!(order = %order.id, state = to.as_str(), "shipping state from the platform");
        }
        Ok(changed)
    }

    async fn order_for_push(
        &self,
        push: &TradeManagePush,
    ) -> Result<Option<OrderDoc>, CommerceError> {
        let (tx, no) = push.order_key();
        let filter = match (tx, no) {
            (Some(tx), _) => Filter::eq("transactionId", tx),
            (None, Some(no)) => Filter::eq("outTradeNo", no),
            (None, None) => return Ok(None),
        };
        Ok(self.store.find_one_as(c::ORDERS, &filter).await?)
    }

    /// Handles a verified `trade_manage_*` push. Settlement: confirmed with `get_order`,
    /// then receipt / settlement recorded once. Shipping reminder: recorded, and admins
    /// reminded (at most once every 6 hours per order).
    pub async fn apply_trade_manage(
        &self,
        push: &TradeManagePush,
    ) -> Result<TradeManageOutcome, CommerceError> {
        let Some(order) = self.order_for_push(push).await? else {
            tracing::warn!(?push, "trade_manage push for an unknown order");
            return Ok(TradeManageOutcome::UnknownOrder);
        };
        if order.shipping.is_none() {
            return Ok(TradeManageOutcome::Unchanged { order_id: order.id });
        }
        let changed = match push {
            TradeManagePush::Settlement {
                confirm_receive_time,
                estimated_settlement_time,
                settlement_time,
                ..
            } => {
                self.record_platform_state(
                    &order,
                    *confirm_receive_time,
                    Some((*estimated_settlement_time, *settlement_time)),
                )
                .await?
            }
            TradeManagePush::RemindShipping { .. } => {
                let now = self.now();
                let claimed: Option<OrderDoc> = self
                    .store
                    .update_one_as(
                        c::ORDERS,
                        &Filter::id(order.id.as_str())
                            .and(Filter::eq("shipping.state", "awaiting"))
                            .and(
                                Filter::exists("shipping.platformRemindedAt", false)
                                    .or(Filter::lt("shipping.platformRemindedAt", now - 6 * 3600)),
                            ),
                        &Update::new().set("shipping.platformRemindedAt", now),
                        UpdateOptions::default(),
                    )
                    .await?;
                match claimed {
                    Some(o) => {
                        let sent = self.remind_admins(&o, "平台提醒尽快发货").await?;
                        self.record_reminders(&o.id, sent).await?;
                        true
                    }
                    None => false,
                }
            }
        };
        Ok(if changed {
            TradeManageOutcome::Recorded { order_id: order.id }
        } else {
            TradeManageOutcome::Unchanged { order_id: order.id }
        })
    }
}
