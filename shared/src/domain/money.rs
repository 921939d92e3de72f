//! Money as integer fen (1/100 CNY). Never a float: every price, total and refund is a `Fen`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in fen. Non-negative by construction; arithmetic is checked so an
/// overflow or a negative result is an error instead of a wrong number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Fen(i64);

/// Arithmetic that would leave the valid range of [`Fen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The amount would be negative.
    #[error("amount must not be negative")]
    Negative,
    /// The amount would not fit in 64 bits.
    #[error("amount overflows")]
    Overflow,
}

impl Fen {
    /// Zero fen.
    pub const ZERO: Fen = Fen(0);

    /// Wraps a fen amount, refusing negatives.
    pub fn new(fen: i64) -> Result<Self, MoneyError> {
        if fen < 0 {
            Err(MoneyError::Negative)
        } else {
            Ok(Fen(fen))
        }
    }

    /// The amount in fen.
    pub fn get(self) -> i64 {
        self.0
    }

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Fen) -> Result<Fen, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Fen)
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`, or an error when the result would be negative.
    pub fn checked_sub(self, other: Fen) -> Result<Fen, MoneyError> {
        Fen::new(self.0 - other.0)
    }

    /// `self * quantity`, or an error on overflow.
    pub fn checked_mul(self, quantity: u32) -> Result<Fen, MoneyError> {
        self.0
            .checked_mul(i64::from(quantity))
            .map(Fen)
            .ok_or(MoneyError::Overflow)
    }

    /// `self * numerator / denominator` rounded down (credit owed to a customer).
    pub fn mul_div_floor(self, numerator: i64, denominator: i64) -> Result<Fen, MoneyError> {
        mul_div(self.0, numerator, denominator, false)
    }

    /// `self * numerator / denominator` rounded up (an amount charged).
    pub fn mul_div_ceil(self, numerator: i64, denominator: i64) -> Result<Fen, MoneyError> {
        mul_div(self.0, numerator, denominator, true)
    }
}

fn mul_div(
    value: i64,
    numerator: i64,
    denominator: i64,
    round_up: bool,
) -> Result<Fen, MoneyError> {
    if numerator < 0 || denominator <= 0 {
        return Err(MoneyError::Negative);
    }
    let product = i128::from(value) * i128::from(numerator);
    let denominator = i128::from(denominator);
    let mut quotient = product / denominator;
    if round_up && product % denominator != 0 {
        quotient += 1;
    }
    i64::try_from(quotient)
        .map(Fen)
        .map_err(|_| MoneyError::Overflow)
}

impl TryFrom<i64> for Fen {
    type Error = MoneyError;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Fen::new(value)
    }
}

impl From<Fen> for i64 {
    fn from(value: Fen) -> Self {
        value.0
    }
}

/// Yuan with two decimals, e.g. `¥12.05`, for messages and logs.
impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_negative_amounts() {
        assert_eq!(Fen::new(-1), Err(MoneyError::Negative));
        assert!(serde_json::from_str::<Fen>("-5").is_err());
        assert_eq!(serde_json::from_str::<Fen>("1999").unwrap(), Fen(1999));
    }

    #[test]
    fn checked_arithmetic() {
        let a = Fen::new(150).unwrap();
        assert_eq!(a.checked_mul(3).unwrap().get(), 450);
        assert_eq!(
            a.checked_sub(Fen::new(151).unwrap()),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            Fen::new(i64::MAX).unwrap().checked_add(a),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Fen::new(i64::MAX).unwrap().checked_mul(2),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn proportional_amounts_round_in_the_stated_direction() {
        let price = Fen::new(1000).unwrap();
        assert_eq!(price.mul_div_floor(1, 3).unwrap().get(), 333);
        assert_eq!(price.mul_div_ceil(1, 3).unwrap().get(), 334);
        assert_eq!(price.mul_div_ceil(3, 3).unwrap().get(), 1000);
        assert!(price.mul_div_floor(1, 0).is_err());
    }

    #[test]
    fn displays_as_yuan() {
        assert_eq!(Fen::new(1205).unwrap().to_string(), "¥12.05");
        assert_eq!(Fen::new(7).unwrap().to_string(), "¥0.07");
    }
}
