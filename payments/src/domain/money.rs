//! Exact money (R-MON-1). Amounts are integers of the currency's minor unit; arithmetic is checked and
//! never mixes currencies. Conversion from a decimal amount rounds once, half away from zero, here.
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217 currency that has a minor unit, from the `iso_currency` crate's table (R-MON-1).
/// Stored and sent as its three-letter code; an unknown code is an error, never a default.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub const USD: Currency = Currency(iso_currency::Currency::USD);
    pub const EUR: Currency = Currency(iso_currency::Currency::EUR);
    pub const GBP: Currency = Currency(iso_currency::Currency::GBP);
    pub const CAD: Currency = Currency(iso_currency::Currency::CAD);
    pub const JPY: Currency = Currency(iso_currency::Currency::JPY);
    pub const CHF: Currency = Currency(iso_currency::Currency::CHF);
    pub const AUD: Currency = Currency(iso_currency::Currency::AUD);
    /// Three minor digits.
    pub const KWD: Currency = Currency(iso_currency::Currency::KWD);

    /// The currencies the order form offers first; any other ISO 4217 code with a minor unit is
    /// accepted too.
    pub const COMMON: [Currency; 6] = [Currency::USD, Currency::EUR, Currency::GBP, Currency::CAD, Currency::AUD, Currency::JPY];

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// The currency of an ISO 4217 code (any case, surrounding spaces ignored), if it is one that
    /// has a minor unit (not gold, fund or testing codes).
    pub fn from_code(code: &str) -> Option<Currency> {
        let c = iso_currency::Currency::from_code(&code.trim().to_ascii_uppercase())?;
        (c.exponent().is_some() && !c.is_fund() && c.is_superseded().is_none()).then_some(Currency(c))
    }

    /// The currency of a code read back from the database or a processor: an unknown code is an
    /// error that names it (R-MON-1), never a silent default.
    pub fn stored(code: &str) -> Result<Currency, UnknownCurrency> {
        Currency::from_code(code).ok_or_else(|| UnknownCurrency(code.chars().take(16).collect()))
    }

    /// Digits after the decimal point of the minor unit (ISO 4217).
    pub fn minor_digits(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }

    /// The business ceiling on one amount in this currency (R-MON-4): 999,999,999,999 major
    /// units plus the largest minor part, e.g. 999,999,999,999.99 USD or 999,999,999,999 JPY.
    pub fn ceiling(self) -> Money {
        let scale = 10i64.pow(self.minor_digits());
        Money::from_minor(MAX_MAJOR_UNITS * scale + (scale - 1), self)
    }
}

/// The business ceiling's whole units (R-MON-4); see [`Currency::ceiling`].
pub const MAX_MAJOR_UNITS: i64 = 999_999_999_999;

/// A stored or received currency code that is not an ISO 4217 currency with a minor unit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a known ISO 4217 currency")]
pub struct UnknownCurrency(pub String);

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::stored(&code).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MoneyError {
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(&'static str, &'static str),
    #[error("amount out of range")]
    Overflow,
}

/// Why a typed amount was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("enter an amount such as 25.00")]
    NotANumber,
    #[error("cannot be negative")]
    Negative,
    #[error("at most {0} decimals")]
    TooPrecise(u32),
    #[error("at most {0}")]
    AboveCeiling(Money),
}

impl Money {
    /// Parses an amount a user or a connector supplies: a plain decimal number, not negative, with
    /// at most the currency's minor digits and at most its business ceiling (R-MON-4). This is the
    /// one gate every typed amount goes through.
    pub fn parse(raw: &str, currency: Currency) -> Result<Money, AmountError> {
        let raw = raw.trim();
        // Plain digits with one optional point: no exponent, no sign but a leading minus (refused below).
        let body = raw.strip_prefix('-').unwrap_or(raw);
        if body.is_empty() || body.len() > 40 || !body.chars().all(|c| c.is_ascii_digit() || c == '.') || body.matches('.').count() > 1 {
            return Err(AmountError::NotANumber);
        }
        let d = Decimal::from_str_exact(raw).map_err(|_| AmountError::NotANumber)?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(AmountError::Negative);
        }
        if d.normalize().scale() > currency.minor_digits() {
            return Err(AmountError::TooPrecise(currency.minor_digits()));
        }
        let ceiling = currency.ceiling();
        if d > ceiling.to_decimal() {
            return Err(AmountError::AboveCeiling(ceiling));
        }
        Money::from_decimal(d, currency).map_err(|_| AmountError::AboveCeiling(ceiling))
    }

    /// Refuses an amount above the currency's business ceiling or below its negative (R-MON-4).
    pub fn within_ceiling(self) -> Result<Money, MoneyError> {
        if self.minor.checked_abs().is_some_and(|m| m <= self.currency.ceiling().minor) {
            Ok(self)
        } else {
            Err(MoneyError::Overflow)
        }
    }
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
        assert_eq!(Money::from_decimal(d("10.005"), Currency::USD).unwrap().minor(), 1001);
        assert_eq!(Money::from_decimal(d("-10.005"), Currency::USD).unwrap().minor(), -1001);
        assert_eq!(Money::from_decimal(d("10.004"), Currency::USD).unwrap().minor(), 1000);
        assert_eq!(Money::from_decimal(d("150.5"), Currency::JPY).unwrap().minor(), 151);
    }

    #[test]
    fn currencies_come_from_the_iso_table() {
        // R-MON-1, issue #39 item 8: no hand-written table, no silent USD.
        assert_eq!(Currency::from_code(" chf ").unwrap().code(), "CHF");
        assert_eq!(Currency::from_code("KWD").unwrap().minor_digits(), 3);
        assert_eq!(Currency::from_code("JPY").unwrap().minor_digits(), 0);
        assert_eq!(Currency::from_code("XAU"), None, "gold has no minor unit");
        assert_eq!(Currency::from_code("ABC"), None);
        assert_eq!(Currency::stored("ZZZ"), Err(UnknownCurrency("ZZZ".into())));
        assert_eq!(Money::from_decimal(d("1.2345"), Currency::KWD).unwrap().minor(), 1_235);
        let json = serde_json::to_string(&Money::from_minor(5, Currency::EUR)).unwrap();
        assert!(json.contains("\"EUR\""), "{json}");
        assert!(serde_json::from_str::<Currency>("\"QQQ\"").is_err());
    }

    #[test]
    fn typed_amounts_are_parsed_once_with_their_limits() {
        // R-MON-4, R-PAR-7, issue #39 item 6
        assert_eq!(Money::parse(" 25.5 ", Currency::USD).unwrap().minor(), 2_550);
        assert_eq!(Money::parse("25.50000", Currency::USD).unwrap().minor(), 2_550, "trailing zeros are not precision");
        assert_eq!(Money::parse("999999999999.99", Currency::USD).unwrap(), Currency::USD.ceiling());
        assert_eq!(Money::parse("1000000000000", Currency::USD), Err(AmountError::AboveCeiling(Currency::USD.ceiling())));
        assert_eq!(Money::parse("92233720368547758.07", Currency::USD), Err(AmountError::AboveCeiling(Currency::USD.ceiling())));
        assert_eq!(Money::parse("-1", Currency::USD), Err(AmountError::Negative));
        assert_eq!(Money::parse("1.005", Currency::USD), Err(AmountError::TooPrecise(2)));
        assert_eq!(Money::parse("1.5", Currency::JPY), Err(AmountError::TooPrecise(0)));
        for bad in ["", "1e3", "1,5", "NaN", "0x10", "+1", "1.2.3", "١٢", "1\u{202e}2", &"9".repeat(60), "0.000000000000000000000000000001"] {
            assert!(Money::parse(bad, Currency::USD).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn amounts_have_a_ceiling() {
        // R-MON-4
        assert_eq!(Currency::USD.ceiling().to_decimal(), d("999999999999.99"));
        assert_eq!(Currency::JPY.ceiling().minor(), 999_999_999_999);
        assert!(Currency::USD.ceiling().within_ceiling().is_ok());
        let over = Money::from_minor(Currency::USD.ceiling().minor() + 1, Currency::USD);
        assert_eq!(over.within_ceiling(), Err(MoneyError::Overflow));
        assert_eq!(Money::from_minor(i64::MIN, Currency::USD).within_ceiling(), Err(MoneyError::Overflow));
    }

    #[test]
    fn currencies_never_mix() {
        // R-MON-1
        let usd = Money::from_minor(100, Currency::USD);
        let eur = Money::from_minor(100, Currency::EUR);
        assert_eq!(usd.checked_add(eur), Err(MoneyError::CurrencyMismatch("USD", "EUR")));
        assert_eq!(usd.checked_add(usd).unwrap().minor(), 200);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let max = Money::from_minor(i64::MAX, Currency::USD);
        assert_eq!(max.checked_add(Money::from_minor(1, Currency::USD)), Err(MoneyError::Overflow));
    }

    #[test]
    fn percentage_is_exact_to_the_minor_unit() {
        let total = Money::from_minor(33_333, Currency::USD); // 333.33
        assert_eq!(total.percentage(d("10")).unwrap().minor(), 3_333); // 33.333 -> 33.33
        assert_eq!(total.percentage(d("30")).unwrap().minor(), 10_000); // 99.999 -> 100.00
        assert_eq!(total.to_decimal(), d("333.33"));
        assert_eq!(total.to_string(), "333.33 USD");
    }
}
