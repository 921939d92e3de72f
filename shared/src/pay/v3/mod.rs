//! WeChat Pay API v3.
//!
//! Start-up parses keys once ([`RsaSigningKey`], [`VerifyingKey`], [`ApiV3Key`]); requests are
//! signed by [`MerchantSigner`]; responses and notifications are checked by [`Verifier`], which
//! holds platform certificates and the WeChat Pay public key side by side; [`PayClient`] runs
//! the operations against a configurable base URL.

pub mod aead;
pub mod bills;
pub mod certs;
pub mod client;
pub mod complaints;
pub mod keys;
pub mod models;
pub mod notify;
pub mod server;
pub mod sign;
pub mod verify;

pub use aead::{AeadError, ApiV3Key};
pub use certs::{CertificateError, DownloadThrottle, RefreshSchedule, decrypt_certificates};
pub use client::{ApiError, PayClient, PayClientConfig, PayError};
pub use keys::{KeyError, PlatformCertificate, RsaSigningKey, VerifyingKey};
pub use models::{
    ErrorBody, JsapiOrder, PrepayResponse, Refund, RefundNotification, RefundOrder, RefundStatus,
    RefundTarget, TradeState, Transaction, ValidationError,
};
pub use notify::{Notification, NotifyError, RefundEvent, parse_notification};
pub use sign::{MerchantSigner, RequestPaymentParams};
pub use verify::{SignatureHeaders, Verifier, VerifyError};

/// Default API host.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
