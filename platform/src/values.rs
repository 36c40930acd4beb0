//! Value types shared by the reference domain's services: money amounts in minor
//! units and ISO 4217 currency codes. Each validates on construction, so a domain
//! never holds a negative amount or a malformed currency.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The conversions of a validated newtype `$name($inner)` that serde reads and writes
/// it through (`#[serde(try_from = "<inner>", into = "<inner>")]`): `TryFrom<$inner>`
/// by `$name::new` (refused with `$error`), `From<$name>` for `$inner`, and a
/// `Display` that shows the inner value.
macro_rules! validated_newtype {
    ($name:ident($inner:ty), $error:ty) => {
        impl TryFrom<$inner> for $name {
            type Error = $error;
            fn try_from(value: $inner) -> Result<Self, Self::Error> {
                $name::new(value)
            }
        }

        impl From<$name> for $inner {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}
pub(crate) use validated_newtype;

/// A rejected value, naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not three capital letters.
    #[error("currency `{0}` must be an ISO 4217 code of three capital letters, e.g. `EUR`")]
    Currency(String),
    /// An amount below zero.
    #[error("amount {0} must not be negative (amounts are in minor units, e.g. cents)")]
    NegativeAmount(i64),
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn new(code: &str) -> Result<Self, ValueError> {
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(ValueError::Currency(code.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Constructed from ASCII uppercase letters only.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::new(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount of money in minor units (cents for EUR).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn new(minor: i64) -> Result<Self, ValueError> {
        if minor < 0 {
            return Err(ValueError::NegativeAmount(minor));
        }
        Ok(Amount(minor))
    }

    pub fn minor(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_mul(self, factor: i64) -> Option<Amount> {
        self.0.checked_mul(factor).filter(|v| *v >= 0).map(Amount)
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount((self.0 - other.0).max(0))
    }
}

validated_newtype!(Amount(i64), ValueError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_capital_letters() {
        assert_eq!(Currency::new("EUR").unwrap().as_str(), "EUR");
        for bad in ["eur", "EURO", "", "E1R"] {
            assert!(Currency::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_never_negative() {
        assert!(Amount::new(-1).is_err());
        assert_eq!(
            Amount::new(5)
                .unwrap()
                .saturating_sub(Amount::new(7).unwrap()),
            Amount::ZERO
        );
        assert!(Amount::new(i64::MAX).unwrap().checked_mul(2).is_none());
    }
}
