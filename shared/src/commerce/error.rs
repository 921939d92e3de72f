//! The commerce error type and its public codes (`docs/errors.md`).

use http::StatusCode;

use crate::domain::money::{Fen, MoneyError};
use crate::domain::order::{PricingError, RefundError};
use crate::domain::shipping::ShipmentError;
use crate::domain::subscription::SubscriptionError;
use crate::runtime::ApiError;
use crate::store::StoreError;

/// Public error codes of createOrder, payNotify and reconcile.
pub mod codes {
    /// No such product.
    pub const PRODUCT_NOT_FOUND: &str = "PRODUCT_NOT_FOUND";
    /// The product is not for sale.
    pub const PRODUCT_INACTIVE: &str = "PRODUCT_INACTIVE";
    /// Not enough stock left.
    pub const OUT_OF_STOCK: &str = "OUT_OF_STOCK";
    /// Physical and virtual goods in one order.
    pub const MIXED_CHANNELS: &str = "MIXED_CHANNELS";
    /// A quantity is 0 or above the limit, or the cart is empty / too big.
    pub const INVALID_QUANTITY: &str = "INVALID_QUANTITY";
    /// No such order for this caller.
    pub const ORDER_NOT_FOUND: &str = "ORDER_NOT_FOUND";
    /// Only unpaid (`created`) orders can be canceled.
    pub const ORDER_NOT_CANCELABLE: &str = "ORDER_NOT_CANCELABLE";
    /// The order was never paid, so nothing can be refunded.
    pub const ORDER_NOT_PAID: &str = "ORDER_NOT_PAID";
    /// More than what is left to refund.
    pub const REFUND_EXCEEDS_PAID: &str = "REFUND_EXCEEDS_PAID";
    /// Virtual goods need the user's session_key: call `login` again.
    pub const SESSION_KEY_MISSING: &str = "SESSION_KEY_MISSING";
    /// WeChat Pay / virtual payment failed or is not configured.
    pub const PAYMENT_PROVIDER_ERROR: &str = "PAYMENT_PROVIDER_ERROR";
    /// Virtual payment buys one product per order.
    pub const ORDER_SINGLE_PRODUCT: &str = "ORDER_SINGLE_PRODUCT";
    /// A tenant plan is bought for the active tenant: create or switch to one first.
    pub const TENANT_REQUIRED: &str = "TENANT_REQUIRED";
    /// Too many unpaid orders are open: pay or cancel some first.
    pub const TOO_MANY_OPEN_ORDERS: &str = "TOO_MANY_OPEN_ORDERS";
    /// No subscription to upgrade.
    pub const SUBSCRIPTION_NOT_FOUND: &str = "SUBSCRIPTION_NOT_FOUND";
    /// The subscription has no access any more: buy a period instead.
    pub const SUBSCRIPTION_EXPIRED: &str = "SUBSCRIPTION_EXPIRED";
    /// No such plan.
    pub const PLAN_NOT_FOUND: &str = "PLAN_NOT_FOUND";
    /// Not a higher tier, the wrong kind of plan, nothing to pay, or the paid time is over.
    pub const PLAN_CHANGE_INVALID: &str = "PLAN_CHANGE_INVALID";
    /// No active product sells the plan.
    pub const PLAN_NOT_FOR_SALE: &str = "PLAN_NOT_FOR_SALE";
    /// Virtual payment cannot charge the prorated amount (outside 40–100% of the item price).
    pub const UPGRADE_PRICE_UNSUPPORTED: &str = "UPGRADE_PRICE_UNSUPPORTED";
    /// A shipment's logistics type or packages are not acceptable.
    pub const INVALID_SHIPMENT: &str = "INVALID_SHIPMENT";
    /// The order has nothing waiting to ship, or its state does not allow shipping.
    pub const ORDER_NOT_SHIPPABLE: &str = "ORDER_NOT_SHIPPABLE";
    /// The order was shipped already (the platform allows one re-ship, done in MP admin).
    pub const ORDER_ALREADY_SHIPPED: &str = "ORDER_ALREADY_SHIPPED";
    /// The confirm-receipt reminder is not allowed for this order (or was used).
    pub const RECEIPT_REMINDER_NOT_ALLOWED: &str = "RECEIPT_REMINDER_NOT_ALLOWED";
    /// WeChat's shipping service failed or is not configured.
    pub const SHIPPING_PLATFORM_ERROR: &str = "SHIPPING_PLATFORM_ERROR";
}

/// Why a commerce operation failed. Each variant maps to one public code.
#[derive(Debug, thiserror::Error)]
pub enum CommerceError {
    /// The request data is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The cart cannot be priced.
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// A product has not enough stock left.
    #[error("product {0} is out of stock")]
    OutOfStock(String),
    /// No such order (or not the caller's).
    #[error("order not found")]
    OrderNotFound,
    /// The order is not in a state that allows this.
    #[error("only an unpaid order can be canceled (it is {0})")]
    NotCancelable(&'static str),
    /// The refund cannot be made.
    #[error(transparent)]
    Refund(#[from] RefundError),
    /// Amount arithmetic failed.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// The same idempotency key was used for something else.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No usable session_key is stored for the caller.
    #[error("virtual payment needs a fresh login (no session key on record)")]
    SessionKeyMissing,
    /// Virtual payment takes one product per order.
    #[error("virtual payment buys one product per order")]
    SingleProduct,
    /// A tenant plan needs an active tenant.
    #[error("a tenant plan is bought for the active tenant: create or switch to a tenant first")]
    TenantRequired,
    /// The buyer has this many unpaid orders open already.
    #[error("{0} unpaid orders are open: pay or cancel one before starting another checkout")]
    TooManyOpenOrders(u64),
    /// The caller has no subscription of that scope.
    #[error("no {0} subscription to upgrade")]
    SubscriptionNotFound(&'static str),
    /// The plan change cannot be made.
    #[error(transparent)]
    PlanChange(#[from] SubscriptionError),
    /// The plan change does not make sense as asked.
    #[error("{0}")]
    PlanChangeInvalid(String),
    /// No active product sells the plan.
    #[error("plan {0} is not on sale")]
    PlanNotForSale(String),
    /// The prorated amount cannot go through virtual payment.
    #[error(
        "the upgrade costs {amount}; virtual payment can charge {min} to {max} for this plan's item: switch at renewal instead"
    )]
    UpgradePriceUnsupported {
        /// The prorated amount.
        amount: Fen,
        /// 40% of the item price, rounded up.
        min: Fen,
        /// The item price.
        max: Fen,
    },
    /// The payment channel the goods need is not configured on this deployment.
    #[error("payment channel {0} is not configured")]
    ChannelUnavailable(&'static str),
    /// WeChat Pay or virtual payment failed.
    #[error("payment provider: {message}")]
    Provider {
        /// What failed (kept for logs; the caller sees a generic message).
        message: String,
        /// Worth retrying later.
        retryable: bool,
    },
    /// The shipment is malformed.
    #[error(transparent)]
    Shipment(#[from] ShipmentError),
    /// The order cannot ship now.
    #[error("the order cannot ship: {0}")]
    NotShippable(String),
    /// The order shipped already.
    #[error("the order has already shipped")]
    AlreadyShipped,
    /// `notify_confirm_receive` is not allowed.
    #[error("confirm-receipt reminder not allowed: {0}")]
    ReceiptReminder(String),
    /// The shipping service failed.
    #[error("WeChat shipping service: {0}")]
    Platform(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommerceError {
    pub(crate) fn provider(err: impl std::fmt::Display, retryable: bool) -> Self {
        Self::Provider {
            message: err.to_string(),
            retryable,
        }
    }
}

impl From<CommerceError> for ApiError {
    fn from(err: CommerceError) -> Self {
        use CommerceError as E;
        let message = err.to_string();
        match err {
            E::BadRequest(_) => ApiError::bad_request(message),
            E::Pricing(p) => match p {
                PricingError::InvalidQuantity(_) | PricingError::BadCartSize => {
                    ApiError::new(codes::INVALID_QUANTITY, StatusCode::BAD_REQUEST, message)
                }
                PricingError::ProductNotFound(_) => {
                    ApiError::new(codes::PRODUCT_NOT_FOUND, StatusCode::NOT_FOUND, message)
                }
                PricingError::ProductInactive(_) => {
                    ApiError::new(codes::PRODUCT_INACTIVE, StatusCode::CONFLICT, message)
                }
                PricingError::MixedChannels => {
                    ApiError::new(codes::MIXED_CHANNELS, StatusCode::BAD_REQUEST, message)
                }
                PricingError::Amount(_) => ApiError::bad_request(message),
            },
            E::OutOfStock(_) => ApiError::new(codes::OUT_OF_STOCK, StatusCode::CONFLICT, message),
            E::OrderNotFound => {
                ApiError::new(codes::ORDER_NOT_FOUND, StatusCode::NOT_FOUND, message)
            }
            E::NotCancelable(_) => {
                ApiError::new(codes::ORDER_NOT_CANCELABLE, StatusCode::CONFLICT, message)
            }
            E::Refund(RefundError::NotPaid) => {
                ApiError::new(codes::ORDER_NOT_PAID, StatusCode::CONFLICT, message)
            }
            E::Refund(_) => {
                ApiError::new(codes::REFUND_EXCEEDS_PAID, StatusCode::CONFLICT, message)
            }
            E::Money(_) => ApiError::bad_request(message),
            E::Conflict(_) => ApiError::conflict(message),
            E::Forbidden(_) => ApiError::forbidden(message),
            E::SessionKeyMissing => ApiError::new(
                codes::SESSION_KEY_MISSING,
                StatusCode::UNAUTHORIZED,
                message,
            ),
            E::SingleProduct => ApiError::new(
                codes::ORDER_SINGLE_PRODUCT,
                StatusCode::BAD_REQUEST,
                message,
            ),
            E::TooManyOpenOrders(_) => {
                ApiError::new(codes::TOO_MANY_OPEN_ORDERS, StatusCode::CONFLICT, message)
            }
            E::TenantRequired => {
                ApiError::new(codes::TENANT_REQUIRED, StatusCode::CONFLICT, message)
            }
            E::SubscriptionNotFound(_) => ApiError::new(
                codes::SUBSCRIPTION_NOT_FOUND,
                StatusCode::NOT_FOUND,
                message,
            ),
            E::PlanChange(SubscriptionError::Expired) => {
                ApiError::new(codes::SUBSCRIPTION_EXPIRED, StatusCode::CONFLICT, message)
            }
            E::PlanChange(SubscriptionError::UnknownPlan(_)) => {
                ApiError::new(codes::PLAN_NOT_FOUND, StatusCode::NOT_FOUND, message)
            }
            E::PlanChange(_) | E::PlanChangeInvalid(_) => {
                ApiError::new(codes::PLAN_CHANGE_INVALID, StatusCode::CONFLICT, message)
            }
            E::PlanNotForSale(_) => {
                ApiError::new(codes::PLAN_NOT_FOR_SALE, StatusCode::CONFLICT, message)
            }
            E::UpgradePriceUnsupported { .. } => ApiError::new(
                codes::UPGRADE_PRICE_UNSUPPORTED,
                StatusCode::CONFLICT,
                message,
            ),
            E::ChannelUnavailable(_) => ApiError::new(
                codes::PAYMENT_PROVIDER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE,
                message,
            ),
            e @ E::Provider { .. } => ApiError::new(
                codes::PAYMENT_PROVIDER_ERROR,
                StatusCode::BAD_GATEWAY,
                "the payment provider did not accept the request; try again later",
            )
            .with_source(e),
            E::Shipment(_) => {
                ApiError::new(codes::INVALID_SHIPMENT, StatusCode::BAD_REQUEST, message)
            }
            E::NotShippable(_) => {
                ApiError::new(codes::ORDER_NOT_SHIPPABLE, StatusCode::CONFLICT, message)
            }
            E::AlreadyShipped => {
                ApiError::new(codes::ORDER_ALREADY_SHIPPED, StatusCode::CONFLICT, message)
            }
            E::ReceiptReminder(_) => ApiError::new(
                codes::RECEIPT_REMINDER_NOT_ALLOWED,
                StatusCode::CONFLICT,
                message,
            ),
            e @ E::Platform(_) => ApiError::new(
                codes::SHIPPING_PLATFORM_ERROR,
                StatusCode::BAD_GATEWAY,
                "WeChat's shipping service did not answer; try again later",
            )
            .with_source(e),
            e @ E::Store(_) => ApiError::internal(e),
        }
    }
}
