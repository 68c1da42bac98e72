//! Exact money (R-MON-1). Amounts are integers of the currency's minor unit; arithmetic is checked and
//! never mixes currencies. Conversion from a decimal amount rounds once, half away from zero, here.
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    Usd,
    Eur,
    Gbp,
    Cad,
    Jpy,
}

impl Currency {
    pub const ALL: [Currency; 5] = [Currency::Usd, Currency::Eur, Currency::Gbp, Currency::Cad, Currency::Jpy];

    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
            Currency::Cad => "CAD",
            Currency::Jpy => "JPY",
        }
    }

    pub fn from_code(code: &str) -> Option<Currency> {
        Currency::ALL.into_iter().find(|c| c.code().eq_ignore_ascii_case(code.trim()))
    }

    /// Digits after the decimal point of the minor unit (ISO 4217).
    pub fn minor_digits(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            _ => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MoneyError {
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(&'static str, &'static str),
    #[error("amount out of range")]
    Overflow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    /// Rounds `amount` to the currency's minor unit, half away from zero: the one rounding point.
    pub fn from_decimal(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let scaled = amount
            .round_dp_with_strategy(currency.minor_digits(), RoundingStrategy::MidpointAwayFromZero)
            .checked_mul(Decimal::from(10i64.pow(currency.minor_digits())))
            .ok_or(MoneyError::Overflow)?;
        let minor = i64::try_from(scaled.trunc()).map_err(|_| MoneyError::Overflow)?;
        Ok(Money { minor, currency })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.minor, self.currency.minor_digits())
    }

    fn same(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency.code(), other.currency.code()))
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same(other)?;
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, ..self })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same(other)?;
        let minor = self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, ..self })
    }

    /// `percent` % of this amount, rounded once to the minor unit.
    pub fn percentage(self, percent: Decimal) -> Result<Money, MoneyError> {
        let amount = self
            .to_decimal()
            .checked_mul(percent)
            .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
            .ok_or(MoneyError::Overflow)?;
        Money::from_decimal(amount, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn rounds_half_away_from_zero_once() {
        assert_eq!(Money::from_decimal(d("10.005"), Currency::Usd).unwrap().minor(), 1001);
        assert_eq!(Money::from_decimal(d("-10.005"), Currency::Usd).unwrap().minor(), -1001);
        assert_eq!(Money::from_decimal(d("10.004"), Currency::Usd).unwrap().minor(), 1000);
        assert_eq!(Money::from_decimal(d("150.5"), Currency::Jpy).unwrap().minor(), 151);
    }

    #[test]
    fn currencies_never_mix() {
        // R-MON-1
        let usd = Money::from_minor(100, Currency::Usd);
        let eur = Money::from_minor(100, Currency::Eur);
        assert_eq!(usd.checked_add(eur), Err(MoneyError::CurrencyMismatch("USD", "EUR")));
        assert_eq!(usd.checked_add(usd).unwrap().minor(), 200);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let max = Money::from_minor(i64::MAX, Currency::Usd);
        assert_eq!(max.checked_add(Money::from_minor(1, Currency::Usd)), Err(MoneyError::Overflow));
    }

    #[test]
    fn percentage_is_exact_to_the_minor_unit() {
        let total = Money::from_minor(33_333, Currency::Usd); // 333.33
        assert_eq!(total.percentage(d("10")).unwrap().minor(), 3_333); // 33.333 -> 33.33
        assert_eq!(total.percentage(d("30")).unwrap().minor(), 10_000); // 99.999 -> 100.00
        assert_eq!(total.to_decimal(), d("333.33"));
        assert_eq!(total.to_string(), "333.33 USD");
    }
}
