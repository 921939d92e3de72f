//! The catalog: what can be bought, for how much, and through which payment channel.

use serde::{Deserialize, Serialize};

use super::money::Fen;

/// How a product is paid for.
///
/// WeChat requires Mini Program virtual payment (xpay) for virtual goods (memberships, content,
/// coins), so that is their default; a merchant not eligible for xpay, or selling outside a
/// Mini Program, sets `channel: "wxpay"` on the product. Physical goods always use WeChat Pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// WeChat Pay API v3 JSAPI (`wx.requestPayment`).
    Wxpay,
    /// Mini Program virtual payment (`wx.requestVirtualPayment`).
    Xpay,
}

impl Channel {
    /// The channel's name in stored documents and in the `payment.channel` of a reply.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Wxpay => "wxpay",
            Channel::Xpay => "xpay",
        }
    }
}

/// What a product is, and so what paying for it grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProductKind {
    /// Shipped goods; stock is counted.
    Physical,
    /// One period of a membership plan (renewals extend it).
    Membership {
        /// The plan id.
        plan: String,
    },
    /// Permanent access to one piece of content.
    ContentUnlock {
        /// The content id.
        content: String,
    },
    /// A pack of coins credited to the buyer's balance.
    Coins {
        /// Coins credited per unit bought.
        amount: i64,
    },
    /// One period of a plan for the buyer's active tenant (team).
    TenantPlan {
        /// The plan id.
        plan: String,
    },
}

/// A catalog entry, as stored in the `products` collection and in seed files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Stable product code, unique in the catalog.
    pub sku: String,
    /// Title shown to buyers and on the WeChat Pay bill.
    pub title: String,
    /// Unit price in fen.
    pub price_fen: Fen,
    /// What buying it grants.
    pub kind: ProductKind,
    /// Payment channel override; `None` means the default for the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Units left, for physical goods; `None` means not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<i64>,
    /// Inactive products cannot be bought.
    #[serde(default = "default_active")]
    pub active: bool,
    /// Optional longer text for the product page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_active() -> bool {
    true
}

/// A product definition that cannot be sold as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// The sku is empty or too long.
    #[error("sku must be 1-64 characters of [A-Za-z0-9_-.]")]
    BadSku,
    /// The price is zero.
    #[error("product {0}: price must be at least 1 fen")]
    ZeroPrice(String),
    /// Physical goods cannot go through virtual payment.
    #[error("product {0}: physical goods cannot use virtual payment (xpay)")]
    PhysicalOnXpay(String),
    /// Stock given for a non-physical product, or negative stock.
    #[error("product {0}: stock applies to physical goods and must not be negative")]
    BadStock(String),
    /// The title is empty or longer than WeChat Pay's 127-byte description.
    #[error("product {0}: title must be 1-127 bytes")]
    BadTitle(String),
}

impl Product {
    /// The channel this product is paid through: its override, or the default for its kind.
    pub fn channel(&self) -> Channel {
        self.channel.unwrap_or(match self.kind {
            ProductKind::Physical => Channel::Wxpay,
            _ => Channel::Xpay,
        })
    }

    /// Checks the rules a catalog import must enforce.
    pub fn validate(&self) -> Result<(), ProductError> {
        let sku_ok = (1..=64).contains(&self.sku.len())
            && self
                .sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !sku_ok {
            return Err(ProductError::BadSku);
        }
        if self.title.is_empty() || self.title.len() > 127 {
            return Err(ProductError::BadTitle(self.sku.clone()));
        }
        if self.price_fen == Fen::ZERO {
            return Err(ProductError::ZeroPrice(self.sku.clone()));
        }
        let physical = self.kind == ProductKind::Physical;
        if physical && self.channel() == Channel::Xpay {
            return Err(ProductError::PhysicalOnXpay(self.sku.clone()));
        }
        match self.stock {
            Some(stock) if stock < 0 || !physical => Err(ProductError::BadStock(self.sku.clone())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(kind: ProductKind, channel: Option<Channel>) -> Product {
        Product {
            sku: "sku-1".into(),
            title: "Thing".into(),
            price_fen: Fen::new(990).unwrap(),
            kind,
            channel,
            stock: None,
            active: true,
            description: None,
        }
    }

    #[test]
    fn virtual_goods_default_to_xpay_and_can_opt_out() {
        let vip = ProductKind::Membership { plan: "vip".into() };
        assert_eq!(product(vip.clone(), None).channel(), Channel::Xpay);
        assert_eq!(product(vip, Some(Channel::Wxpay)).channel(), Channel::Wxpay);
        assert_eq!(
            product(ProductKind::Physical, None).channel(),
            Channel::Wxpay
        );
    }

    #[test]
    fn a_channel_name_is_its_stored_name() {
        for channel in [Channel::Wxpay, Channel::Xpay] {
            assert_eq!(serde_json::json!(channel), channel.as_str());
        }
    }

    #[test]
    fn validation_rules() {
        assert_eq!(
            product(ProductKind::Physical, Some(Channel::Xpay)).validate(),
            Err(ProductError::PhysicalOnXpay("sku-1".into()))
        );
        let mut coins = product(ProductKind::Coins { amount: 100 }, None);
        coins.stock = Some(3);
        assert!(matches!(coins.validate(), Err(ProductError::BadStock(_))));
        let mut free = product(ProductKind::Physical, None);
        free.price_fen = Fen::ZERO;
        assert!(matches!(free.validate(), Err(ProductError::ZeroPrice(_))));
        assert!(product(ProductKind::Physical, None).validate().is_ok());
    }

    #[test]
    fn seed_format_round_trips() {
        let json = r#"{"sku":"vip-month","title":"VIP","priceFen":1800,
            "kind":{"type":"membership","plan":"vip"}}"#;
        let p: Product = serde_json::from_str(json).unwrap();
        assert!(p.active);
        assert_eq!(p.kind, ProductKind::Membership { plan: "vip".into() });
        assert!(
            serde_json::from_str::<Product>(
                r#"{"sku":"x","title":"t","priceFen":-1,"kind":{"type":"physical"}}"#
            )
            .is_err()
        );
    }
}
