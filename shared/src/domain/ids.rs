//! Identifiers handed to payment providers. Randomness is passed in, so ids are exact in tests.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A merchant order number as WeChat Pay and virtual payment accept it: 8–32 characters of
/// `[0-9A-Za-z_-|*]`, not starting with `_` (the stricter of the v3 and xpay rules).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OutTradeNo(String);

/// A string that is not a valid [`OutTradeNo`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("out_trade_no must be 8-32 characters of [0-9A-Za-z_-|*] and not start with '_'")]
pub struct InvalidOutTradeNo;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl OutTradeNo {
    /// A fresh number: `WM`, the creation time in seconds (sortable when scanning a bill), and
    /// 16 random alphanumerics, 28 characters in all.
    pub fn generate(now_unix: i64, random: [u8; 16]) -> Self {
        let mut id = format!("WM{:010}", now_unix.clamp(0, 9_999_999_999));
        id.extend(
            random
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])),
        );
        OutTradeNo(id)
    }

    /// Accepts a number received from outside (a notification, a query) after checking its form.
    pub fn parse(value: &str) -> Result<Self, InvalidOutTradeNo> {
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'));
        if (8..=32).contains(&value.len()) && valid_chars && !value.starts_with('_') {
            Ok(OutTradeNo(value.to_owned()))
        } else {
            Err(InvalidOutTradeNo)
        }
    }

    /// The number as sent to the provider.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OutTradeNo {
    type Error = InvalidOutTradeNo;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        OutTradeNo::parse(&value)
    }
}

impl From<OutTradeNo> for String {
    fn from(value: OutTradeNo) -> Self {
        value.0
    }
}

impl fmt::Display for OutTradeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_numbers_are_valid_and_differ_by_randomness() {
        let a = OutTradeNo::generate(1_700_000_000, [7; 16]);
        let b = OutTradeNo::generate(1_700_000_000, [8; 16]);
        assert_eq!(a.as_str().len(), 28);
        assert!(a.as_str().starts_with("WM1700000000"));
        assert_ne!(a, b);
        assert_eq!(OutTradeNo::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn rejects_malformed_numbers() {
        for bad in [
            "short",
            "_leading_underscore",
            "has space 12345",
            "中文订单号订单号订单号",
            &"x".repeat(33),
        ] {
            assert_eq!(OutTradeNo::parse(bad), Err(InvalidOutTradeNo), "{bad}");
        }
        assert!(OutTradeNo::parse("a-b_c|d*e1").is_ok());
    }
}
