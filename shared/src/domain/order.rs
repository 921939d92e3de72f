//! Orders: pricing a cart on the server, the order state machine, payment checks and refund
//! arithmetic. Pure: the functions call these and then apply the result with a conditional
//! store update whose filter names the states a transition may start from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::{Channel, Product, ProductKind};
use super::money::{Fen, MoneyError};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created, waiting for payment.
    Created,
    /// Payment verified; grants not yet applied.
    Paid,
    /// Paid and what was bought has been granted (or handed to shipping).
    Fulfilled,
    /// Closed unpaid (canceled or expired).
    Closed,
    /// A refund is in flight.
    Refunding,
    /// Fully refunded.
    Refunded,
    /// Part of the amount refunded; more may follow.
    PartiallyRefunded,
    /// Held for a person to look at: a payment did not match the order.
    Review,
}

impl OrderStatus {
    /// The states an order may be in for a move to `self` to be allowed. Functions use this as
    /// the `status ∈ …` condition of the update, so duplicates and races cannot apply twice.
    pub fn allowed_from(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Created => &[],
            // A payment that lands after the order closed still happened: take it, so the
            // buyer gets the goods or a refund instead of losing money.
            Paid => &[Created, Closed],
            // A refund that failed with nothing refunded returns the order to fulfilled.
            Fulfilled => &[Paid, Refunding],
            Closed => &[Created],
            Refunding => &[Paid, Fulfilled, PartiallyRefunded],
            Refunded | PartiallyRefunded => &[Refunding],
            Review => &[Created, Closed],
        }
    }

    /// Whether the machine allows `self → to`.
    pub fn can_become(self, to: OrderStatus) -> bool {
        to.allowed_from().contains(&self)
    }

    /// Whether money was received for an order in this state.
    pub fn is_paid(self) -> bool {
        use OrderStatus::*;
        matches!(
            self,
            Paid | Fulfilled | Refunding | Refunded | PartiallyRefunded
        )
    }

    /// The stored name (`"partially_refunded"`, …).
    pub fn as_str(self) -> &'static str {
        use OrderStatus::*;
        match self {
            Created => "created",
            Paid => "paid",
            Fulfilled => "fulfilled",
            Closed => "closed",
            Refunding => "refunding",
            Refunded => "refunded",
            PartiallyRefunded => "partially_refunded",
            Review => "review",
        }
    }
}

/// One line of a cart as the client sends it: only what and how many; prices are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CartLine {
    /// The product.
    pub sku: String,
    /// How many units.
    pub quantity: u32,
}

/// A priced line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The product.
    pub sku: String,
    /// Product title at the time of purchase.
    pub title: String,
    /// Units bought.
    pub quantity: u32,
    /// Catalog price per unit at the time of purchase.
    pub unit_price_fen: Fen,
    /// What the line grants once paid.
    pub kind: ProductKind,
}

/// A cart priced from the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedCart {
    /// The channel every line shares.
    pub channel: Channel,
    /// Lines in sku order, duplicates merged.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines.
    pub total: Fen,
}

/// Largest quantity of one product in one order.
pub const MAX_QUANTITY: u32 = 99;
/// Largest number of distinct products in one order.
pub const MAX_LINES: usize = 20;

/// Why a cart cannot become an order. Each maps to a public error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// The cart has no lines, or too many.
    #[error("a cart needs 1 to {MAX_LINES} products")]
    BadCartSize,
    /// A quantity is zero or above [`MAX_QUANTITY`].
    #[error("quantity of {0} must be 1 to {MAX_QUANTITY}")]
    InvalidQuantity(String),
    /// No such product.
    #[error("product {0} does not exist")]
    ProductNotFound(String),
    /// The product is not for sale.
    #[error("product {0} is not for sale")]
    ProductInactive(String),
    /// Physical and virtual goods in one order (they are paid through different channels).
    #[error("an order cannot mix goods paid through different channels")]
    MixedChannels,
    /// The total does not fit.
    #[error("order total is out of range")]
    Amount(#[from] MoneyError),
}

/// Prices a cart from the catalog. The client's own prices never get here.
pub fn price_cart<'a>(
    cart: &[CartLine],
    lookup: impl Fn(&str) -> Option<&'a Product>,
) -> Result<PricedCart, PricingError> {
    if cart.is_empty() || cart.len() > MAX_LINES {
        return Err(PricingError::BadCartSize);
    }
    let mut quantities: BTreeMap<&str, u32> = BTreeMap::new();
    for line in cart {
        let quantity = quantities.entry(line.sku.as_str()).or_default();
        *quantity = quantity.saturating_add(line.quantity);
        if line.quantity == 0 || *quantity > MAX_QUANTITY {
            return Err(PricingError::InvalidQuantity(line.sku.clone()));
        }
    }
    let mut channel = None;
    let mut total = Fen::ZERO;
    let mut lines = Vec::with_capacity(quantities.len());
    for (sku, quantity) in quantities {
        let product = lookup(sku).ok_or_else(|| PricingError::ProductNotFound(sku.to_owned()))?;
        if !product.active {
            return Err(PricingError::ProductInactive(sku.to_owned()));
        }
        if *channel.get_or_insert(product.channel()) != product.channel() {
            return Err(PricingError::MixedChannels);
        }
        total = total.checked_add(product.price_fen.checked_mul(quantity)?)?;
        lines.push(OrderLine {
            sku: sku.to_owned(),
            title: product.title.clone(),
            quantity,
            unit_price_fen: product.price_fen,
            kind: product.kind.clone(),
        });
    }
    let channel = channel.ok_or(PricingError::BadCartSize)?;
    Ok(PricedCart {
        channel,
        lines,
        total,
    })
}

/// What a verified payment notification or query says was paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPayment<'a> {
    /// Merchant id the payment went to (empty for xpay, which has none).
    pub mchid: &'a str,
    /// App id the payment was made in.
    pub appid: &'a str,
    /// Total paid, in fen.
    pub total: Fen,
    /// Currency code.
    pub currency: &'a str,
    /// The payer's openid.
    pub payer_openid: &'a str,
}

/// What the order expects to be paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedPayment<'a> {
    /// Our merchant id (`None` for xpay).
    pub mchid: Option<&'a str>,
    /// Our app id.
    pub appid: &'a str,
    /// The order total.
    pub total: Fen,
    /// The order's owner.
    pub owner_openid: &'a str,
}

/// A payment that does not belong to the order it names. The order goes to review, nothing
/// is granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentMismatch {
    /// Paid to another merchant.
    #[error("merchant id does not match")]
    Merchant,
    /// Paid in another app.
    #[error("app id does not match")]
    App,
    /// Paid amount differs from the order total.
    #[error("paid {paid} but the order total is {expected}")]
    Amount {
        /// What was paid.
        paid: Fen,
        /// The order total.
        expected: Fen,
    },
    /// Not CNY.
    #[error("currency {0} is not CNY")]
    Currency(String),
    /// Paid by someone other than the order's owner.
    #[error("payer is not the order owner")]
    Payer,
}

/// Checks a verified payment against its order before anything is granted.
pub fn check_payment(
    expected: &ExpectedPayment<'_>,
    observed: &ObservedPayment<'_>,
) -> Result<(), PaymentMismatch> {
    if let Some(mchid) = expected.mchid
        && mchid != observed.mchid
    {
        return Err(PaymentMismatch::Merchant);
    }
    if expected.appid != observed.appid {
        return Err(PaymentMismatch::App);
    }
    if observed.currency != "CNY" {
        return Err(PaymentMismatch::Currency(observed.currency.to_owned()));
    }
    if expected.total != observed.total {
        return Err(PaymentMismatch::Amount {
            paid: observed.total,
            expected: expected.total,
        });
    }
    if expected.owner_openid != observed.payer_openid {
        return Err(PaymentMismatch::Payer);
    }
    Ok(())
}

/// A refund that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    /// The order was never paid.
    #[error("order is not paid")]
    NotPaid,
    /// Zero refund requested.
    #[error("refund amount must be at least 1 fen")]
    Zero,
    /// More than what is left to refund.
    #[error("refund of {requested} exceeds the {refundable} still refundable")]
    ExceedsPaid {
        /// Requested amount.
        requested: Fen,
        /// What is left.
        refundable: Fen,
    },
}

/// How much a new refund may be: the requested amount, or everything still refundable when
/// none is given. `committed` counts refunds succeeded or still in flight.
pub fn plan_refund(
    status: OrderStatus,
    total: Fen,
    committed: Fen,
    requested: Option<Fen>,
) -> Result<Fen, RefundError> {
    if !status.is_paid() {
        return Err(RefundError::NotPaid);
    }
    let refundable = total.checked_sub(committed).unwrap_or(Fen::ZERO);
    let amount = requested.unwrap_or(refundable);
    if amount == Fen::ZERO {
        return Err(RefundError::Zero);
    }
    if amount > refundable {
        return Err(RefundError::ExceedsPaid {
            requested: amount,
            refundable,
        });
    }
    Ok(amount)
}

/// The state an order is in once one of its refunds reached a final state: still
/// `Refunding` while others are in flight (`in_flight`, fen), else what was refunded decides;
/// nothing refunded at all (every refund failed) returns it to `Fulfilled`.
pub fn status_after_refund_settled(total: Fen, refunded: Fen, in_flight: Fen) -> OrderStatus {
    if in_flight > Fen::ZERO {
        OrderStatus::Refunding
    } else if refunded == Fen::ZERO {
        OrderStatus::Fulfilled
    } else {
        status_after_refunds(total, refunded)
    }
}

/// The state an order settles in once its refunds are final.
pub fn status_after_refunds(total: Fen, refunded: Fen) -> OrderStatus {
    if refunded >= total {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fen(v: i64) -> Fen {
        Fen::new(v).unwrap()
    }

    fn catalog() -> Vec<Product> {
        let p = |sku: &str, price, kind, active| Product {
            sku: sku.into(),
            title: sku.to_uppercase(),
            price_fen: fen(price),
            kind,
            channel: None,
            stock: None,
            active,
            description: None,
        };
        vec![
            p("mug", 2500, ProductKind::Physical, true),
            p("tee", 9900, ProductKind::Physical, true),
            p("old", 100, ProductKind::Physical, false),
            p(
                "vip",
                1800,
                ProductKind::Membership { plan: "vip".into() },
                true,
            ),
        ]
    }

    fn price(cart: &[(&str, u32)]) -> Result<PricedCart, PricingError> {
        let catalog = catalog();
        let cart: Vec<CartLine> = cart
            .iter()
            .map(|(sku, quantity)| CartLine {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect();
        price_cart(&cart, |sku| catalog.iter().find(|p| p.sku == sku))
    }

    #[test]
    fn prices_from_the_catalog_and_merges_lines() {
        let priced = price(&[("tee", 1), ("mug", 2), ("mug", 1)]).unwrap();
        assert_eq!(priced.total, fen(3 * 2500 + 9900));
        assert_eq!(priced.channel, Channel::Wxpay);
        assert_eq!(priced.lines.len(), 2);
        assert_eq!(priced.lines[0].sku, "mug");
        assert_eq!(priced.lines[0].quantity, 3);
    }

    #[test]
    fn rejects_bad_carts() {
        assert_eq!(price(&[]), Err(PricingError::BadCartSize));
        assert_eq!(
            price(&[("mug", 0)]),
            Err(PricingError::InvalidQuantity("mug".into()))
        );
        assert_eq!(
            price(&[("mug", 60), ("mug", 40)]),
            Err(PricingError::InvalidQuantity("mug".into()))
        );
        assert_eq!(
            price(&[("nope", 1)]),
            Err(PricingError::ProductNotFound("nope".into()))
        );
        assert_eq!(
            price(&[("old", 1)]),
            Err(PricingError::ProductInactive("old".into()))
        );
        assert_eq!(
            price(&[("mug", 1), ("vip", 1)]),
            Err(PricingError::MixedChannels)
        );
    }

    #[test]
    fn state_machine_allows_only_documented_moves() {
        use OrderStatus::*;
        assert!(Created.can_become(Paid));
        assert!(Paid.can_become(Fulfilled));
        assert!(Created.can_become(Closed));
        assert!(Fulfilled.can_become(Refunding));
        assert!(Refunding.can_become(PartiallyRefunded));
        assert!(PartiallyRefunded.can_become(Refunding));
        assert!(!Paid.can_become(Paid), "a second payment must not apply");
        assert!(!Fulfilled.can_become(Paid));
        assert!(!Paid.can_become(Closed));
        assert!(!Refunded.can_become(Refunding));
        assert!(!Created.can_become(Refunding));
    }

    #[test]
    fn payment_checks() {
        let expected = ExpectedPayment {
            mchid: Some("1900000001"),
            appid: "wxapp",
            total: fen(2500),
            owner_openid: "o-1",
        };
        let good = ObservedPayment {
            mchid: "1900000001",
            appid: "wxapp",
            total: fen(2500),
            currency: "CNY",
            payer_openid: "o-1",
        };
        assert_eq!(check_payment(&expected, &good), Ok(()));
        let short = ObservedPayment {
            total: fen(1),
            ..good.clone()
        };
        assert!(matches!(
            check_payment(&expected, &short),
            Err(PaymentMismatch::Amount { .. })
        ));
        let other_mch = ObservedPayment {
            mchid: "1",
            ..good.clone()
        };
        assert_eq!(
            check_payment(&expected, &other_mch),
            Err(PaymentMismatch::Merchant)
        );
        let usd = ObservedPayment {
            currency: "USD",
            ..good.clone()
        };
        assert!(matches!(
            check_payment(&expected, &usd),
            Err(PaymentMismatch::Currency(_))
        ));
        let stranger = ObservedPayment {
            payer_openid: "o-2",
            ..good
        };
        assert_eq!(
            check_payment(&expected, &stranger),
            Err(PaymentMismatch::Payer)
        );
    }

    #[test]
    fn refund_arithmetic() {
        use OrderStatus::*;
        assert_eq!(plan_refund(Paid, fen(1000), Fen::ZERO, None), Ok(fen(1000)));
        assert_eq!(
            plan_refund(Fulfilled, fen(1000), fen(300), Some(fen(700))),
            Ok(fen(700))
        );
        assert!(matches!(
            plan_refund(PartiallyRefunded, fen(1000), fen(300), Some(fen(701))),
            Err(RefundError::ExceedsPaid { .. })
        ));
        assert_eq!(
            plan_refund(Refunded, fen(1000), fen(1000), None),
            Err(RefundError::Zero)
        );
        assert_eq!(
            plan_refund(Created, fen(1000), Fen::ZERO, None),
            Err(RefundError::NotPaid)
        );
        assert_eq!(status_after_refunds(fen(1000), fen(300)), PartiallyRefunded);
        assert_eq!(status_after_refunds(fen(1000), fen(1000)), Refunded);
        assert_eq!(
            status_after_refund_settled(fen(1000), fen(300), fen(200)),
            Refunding
        );
        assert_eq!(
            status_after_refund_settled(fen(1000), Fen::ZERO, Fen::ZERO),
            Fulfilled
        );
        assert_eq!(
            status_after_refund_settled(fen(1000), fen(300), Fen::ZERO),
            PartiallyRefunded
        );
        assert!(Refunding.can_become(Fulfilled));
        assert!(
            !Refunding.can_become(Paid),
            "a failed refund never re-opens payment"
        );
    }
}
