//! WeChat Pay: API v3 (JSAPI, notifications, refunds, certificates / public key), virtual payment (xpay), API v2.
//!
//! - [`v3`]: request signing, response/notification verification, AEAD_AES_256_GCM, the HTTP
//!   client for prepay / query / close / refund, typed notifications, and the server-side
//!   primitives the local WeChat Pay stand-in uses ([`v3::server`]).
//! - [`xpay`]: Mini Program virtual payment signatures, server calls and delivery pushes.
//! - [`v2`]: the legacy XML API for merchants that have not moved to v3.
//!
//! Time and randomness come in through [`crate::clock::Clock`] and [`NonceSource`] so tests
//! are exact.
//! All crypto goes through aws-lc-rs (MD5 only for the legacy v2 sign).

pub mod v2;
pub mod v2_refund;
pub mod v3;
pub mod xpay;
pub mod xpay_after_sale;

use std::sync::Arc;

/// Produces the random `nonce_str` values of signed requests and payment parameters.
pub trait NonceSource: Send + Sync {
    /// A fresh nonce: 32 characters of `[0-9A-Za-z]`.
    fn nonce(&self) -> String;
}

/// Nonces from the aws-lc-rs CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomNonce;

const NONCE_ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl NonceSource for RandomNonce {
    fn nonce(&self) -> String {
        random_string(32)
    }
}

/// `len` characters of `[0-9A-Za-z]` from the system CSPRNG (rejection sampling, no bias).
pub fn random_string(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        // Without a working CSPRNG no nonce is safe to hand out; fail loudly rather than loop.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut buf).expect("system CSPRNG unavailable");
        for b in buf {
            // 248 = 4 * 62: values at or above it would bias the alphabet.
            if b < 248 && out.len() < len {
                out.push(char::from(NONCE_ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    out
}

/// A fixed sequence of nonces, cycling; for tests and vector checks.
#[derive(Debug)]
pub struct FixedNonces {
    values: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
}

impl FixedNonces {
    /// Nonces returned in order, starting over at the end. `values` must not be empty.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
        if values.is_empty() {
            values.push("0".repeat(32));
        }
        Self {
            values,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl NonceSource for FixedNonces {
    fn nonce(&self) -> String {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.values[i % self.values.len()].clone()
    }
}

/// Shared nonce source.
pub type SharedNonce = Arc<dyn NonceSource>;

/// True when `s` has a character outside the Basic Multilingual Plane (4 bytes in UTF-8):
/// WeChat Pay rejects those (no emoji in `description` / `attach`).
pub fn has_4byte_char(s: &str) -> bool {
    s.chars().any(|c| c.len_utf8() == 4)
}

#[cfg(test)]
mod after_sale_fuzz_tests;
#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_nonce_is_32_alnum_and_varies() {
        let a = RandomNonce.nonce();
        let b = RandomNonce.nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn fixed_nonces_cycle() {
        let n = FixedNonces::new(["a", "b"]);
        assert_eq!([n.nonce(), n.nonce(), n.nonce()], ["a", "b", "a"]);
    }

    #[test]
    fn four_byte_chars_detected() {
        assert!(has_4byte_char("会员 😀"));
        assert!(!has_4byte_char("会员月卡 Premium"));
    }
}
