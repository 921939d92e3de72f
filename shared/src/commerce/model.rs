//! Stored documents of the commerce collections and the views the API returns.
//!
//! Field names are camelCase, like the API (`outTradeNo`, `clientRequestId`, `expiresAt`,
//! `totalFen`). Times are Unix seconds; money is integer fen.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::catalog::{Channel, Product, ProductKind};
use crate::domain::money::Fen;
use crate::domain::order::{OrderLine, OrderStatus};
use crate::domain::shipping::Shipping;

/// The collections commerce uses: the registry, re-exported for the functions and tests
/// that already name them through commerce.
pub use crate::store::collections;

/// A stock reservation held by an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The product.
    pub sku: String,
    /// Units taken from its stock.
    pub quantity: u32,
}

/// The WeChat Pay prepay of an order, reused while valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prepay {
    /// `prepay_id`.
    pub prepay_id: String,
    /// When it stops being usable (WeChat: 2 hours after creation).
    pub expires_at: i64,
}

/// An order as stored in `orders`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDoc {
    /// Order id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Merchant order number sent to WeChat Pay / xpay.
    pub out_trade_no: String,
    /// Buyer's openid.
    #[serde(rename = "openid")]
    pub owner: String,
    /// Mini Program appid the order was placed in.
    pub appid: String,
    /// The buyer's active tenant when bought (tenant plans are granted to it).
    #[serde(default, rename = "tenantId", skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The client's idempotency key.
    pub client_request_id: String,
    /// Lifecycle state.
    pub status: OrderStatus,
    /// Payment channel.
    pub channel: Channel,
    /// Priced lines.
    pub items: Vec<OrderLine>,
    /// Order total.
    pub total_fen: Fen,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Unpaid orders close at this time.
    pub expires_at: i64,
    /// When the payment was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<i64>,
    /// When the grants were applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilled_at: Option<i64>,
    /// When it was closed unpaid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
    /// Refunded so far.
    #[serde(default)]
    pub refunded_fen: Fen,
    /// Refunds in flight.
    #[serde(default)]
    pub refunding_fen: Fen,
    /// Shipping address (physical goods), as sent by `wx.chooseAddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Value>,
    /// Stock taken for this order.
    #[serde(default)]
    pub reservations: Vec<Reservation>,
    /// Whether the reservations were given back.
    #[serde(default)]
    pub stock_released: bool,
    /// WeChat Pay prepay (wxpay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepay: Option<Prepay>,
    /// The exact `signData` string handed to `wx.requestVirtualPayment` (xpay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_data: Option<String>,
    /// WeChat's transaction id once paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Why the order is held for review (or was refunded without being fulfilled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_reason: Option<String>,
    /// Whether the grants of this (fully refunded) order were taken back.
    #[serde(default)]
    pub grants_revoked: bool,
    /// Set when the order buys a plan upgrade rather than a period: what it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeTerms>,
    /// Physical goods (and virtual goods paid through WeChat Pay): where the goods are and the
    /// report to the platform (`commerce::shipping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Shipping>,
}

/// Whose subscription an upgrade is for (`subscriptions::Scope`, under commerce's name).
pub use crate::subscriptions::Scope as SubscriptionScope;

/// What an upgrade order buys: the time `[from, until)` of `subscriber`'s subscription moved
/// from `fromPlan` (or any lower tier) to `plan`, priced when the order was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeTerms {
    /// The plan moved to.
    pub plan: String,
    /// The plan in force when quoted.
    pub from_plan: String,
    /// User or tenant.
    pub scope: SubscriptionScope,
    /// The `subscriptions` id (openid or `tenant:<id>`).
    pub subscriber: String,
    /// Start of the upgraded time, Unix seconds (the quote time).
    pub from: i64,
    /// End of the upgraded time (the period end when quoted).
    pub until: i64,
    /// Catalog price of the plan's product: virtual payment's `goodsPrice`, with the
    /// prorated amount as the selling price.
    pub list_price_fen: Fen,
}

impl OrderDoc {
    /// The API view (`docs/api.md`, `order`).
    pub fn view(&self) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|l| {
                json!({
                    "sku": l.sku,
                    "title": l.title,
                    "quantity": l.quantity,
                    "unitPriceFen": l.unit_price_fen,
                })
            })
            .collect();
        let mut v = json!({
            "id": self.id,
            "outTradeNo": self.out_trade_no,
            "status": self.status,
            "channel": self.channel,
            "items": items,
            "totalFen": self.total_fen,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "refundedFen": self.refunded_fen,
        });
        if let Some(paid_at) = self.paid_at {
            v["paidAt"] = json!(paid_at);
        }
        if let Some(up) = &self.upgrade {
            v["upgrade"] = json!({
                "plan": up.plan,
                "fromPlan": up.from_plan,
                "scope": up.scope,
                "from": up.from,
                "until": up.until,
            });
        }
        if let Some(shipping) = &self.shipping {
            v["shipping"] = super::shipping::buyer_view(self, shipping);
        }
        v
    }

    /// The admin view: the buyer's view plus owner and review details.
    pub fn admin_view(&self) -> Value {
        let mut v = self.view();
        v["owner"] = json!(self.owner);
        v["refundingFen"] = json!(self.refunding_fen);
        if let Some(reason) = &self.review_reason {
            v["reviewReason"] = json!(reason);
        }
        if let Some(tx) = &self.transaction_id {
            v["transactionId"] = json!(tx);
        }
        if let Some(shipping) = &self.shipping {
            v["shipping"] = super::shipping::admin_view(self, shipping);
        }
        v
    }
}

/// State of a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Sent (or being sent) to the provider; not final.
    Processing,
    /// The money went back.
    Success,
    /// Closed without refunding.
    Closed,
    /// The provider could not refund (needs manual handling).
    Abnormal,
}

impl RefundState {
    /// Whether the refund is final.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Processing)
    }
}

/// A refund as stored in `refunds`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundDoc {
    /// The refund number (idempotency key, `out_refund_no`).
    #[serde(rename = "_id")]
    pub refund_no: String,
    /// The order.
    pub order_id: String,
    /// The order's merchant number.
    pub out_trade_no: String,
    /// The buyer.
    #[serde(rename = "openid")]
    pub owner: String,
    /// Channel of the order.
    pub channel: Channel,
    /// Amount.
    pub amount_fen: Fen,
    /// Reason shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// State.
    pub status: RefundState,
    /// Whether the amount is counted in the order's `refundingFen`.
    #[serde(default)]
    pub reserved: bool,
    /// The admin who asked for it.
    pub requested_by: String,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Last provider attempt, Unix seconds.
    #[serde(default)]
    pub attempted_at: i64,
    /// Final, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<i64>,
    /// The provider's refund id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_refund_id: Option<String>,
    /// Last provider error, for the admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether the order tracks this refund under `refundMarks.r_<hex refund number>`
    /// (`held` / `refunded` / `released`), which makes each order write for it happen once.
    /// Refunds recorded before the marks existed do not.
    #[serde(default)]
    pub marked: bool,
    /// False between the refund reaching a final state and its order's amounts following;
    /// reconciliation finishes what a crash left in between.
    #[serde(default = "yes")]
    pub order_applied: bool,
}

fn yes() -> bool {
    true
}

impl RefundDoc {
    /// The API view (`refund`).
    pub fn view(&self) -> Value {
        let mut v = json!({
            "refundNo": self.refund_no,
            "orderId": self.order_id,
            "amountFen": self.amount_fen,
            "status": self.status,
            "createdAt": self.created_at,
        });
        if let Some(at) = self.settled_at {
            v["settledAt"] = json!(at);
        }
        if let Some(reason) = &self.reason {
            v["reason"] = json!(reason);
        }
        v
    }
}

/// The wire name of a product kind (`physical`, `membership`, …).
pub fn kind_name(kind: &ProductKind) -> &'static str {
    match kind {
        ProductKind::Physical => "physical",
        ProductKind::Membership { .. } => "membership",
        ProductKind::ContentUnlock { .. } => "content_unlock",
        ProductKind::Coins { .. } => "coins",
        ProductKind::TenantPlan { .. } => "tenant_plan",
    }
}

/// The catalog view of a product (`docs/api.md`, `product`); `plan` is the plan document when
/// the product sells one.
pub fn product_view(product: &Product, plan: Option<&crate::domain::subscription::Plan>) -> Value {
    let mut v = json!({
        "sku": product.sku,
        "title": product.title,
        "priceFen": product.price_fen,
        "channel": product.channel(),
        "kind": kind_name(&product.kind),
        "active": product.active,
    });
    if let Some(stock) = product.stock {
        v["stock"] = json!(stock.max(0));
    }
    if let Some(d) = &product.description {
        v["description"] = json!(d);
    }
    match &product.kind {
        ProductKind::ContentUnlock { content } => v["content"] = json!(content),
        ProductKind::Coins { amount } => v["coins"] = json!(amount),
        ProductKind::Membership { plan: id } | ProductKind::TenantPlan { plan: id } => {
            v["plan"] = match plan {
                Some(p) => {
                    let mut pv = json!({
                        "id": p.id, "title": p.title, "tier": p.tier, "periodDays": p.period_days,
                    });
                    if let Some(seats) = p.seats {
                        pv["seats"] = json!(seats);
                    }
                    if p.trial_days > 0 {
                        pv["trialDays"] = json!(p.trial_days);
                    }
                    pv
                }
                None => json!({ "id": id }),
            };
        }
        ProductKind::Physical => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_round_trips_in_camel_case() {
        let doc = OrderDoc {
            id: "o1".into(),
            out_trade_no: "WM1700000000abcdefghijklmnop".into(),
            owner: "u1".into(),
            appid: "wxapp".into(),
            tenant: None,
            client_request_id: "c1".into(),
            status: OrderStatus::PartiallyRefunded,
            channel: Channel::Wxpay,
            items: vec![],
            total_fen: Fen::new(100).unwrap(),
            created_at: 1,
            expires_at: 2,
            paid_at: Some(3),
            fulfilled_at: None,
            closed_at: None,
            refunded_fen: Fen::new(10).unwrap(),
            refunding_fen: Fen::ZERO,
            address: None,
            reservations: vec![],
            stock_released: false,
            prepay: None,
            sign_data: None,
            transaction_id: None,
            review_reason: None,
            grants_revoked: false,
            upgrade: None,
            shipping: None,
        };
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["_id"], "o1");
        assert_eq!(v["outTradeNo"], doc.out_trade_no);
        assert_eq!(v["clientRequestId"], "c1");
        assert_eq!(v["status"], "partially_refunded");
        assert_eq!(v["totalFen"], 100);
        let back: OrderDoc = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
        let view = doc.view();
        assert_eq!(view["paidAt"], 3);
        assert!(view.get("owner").is_none(), "buyers do not see internals");
    }
}
