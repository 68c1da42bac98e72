//! The expiry forecast and renewal (seed 003; R-AUT-3, R-AUT-6; issue #44): what the orders would
//! lose, day by day, if the authorizations holding their money expired, split by what can be done
//! about it. A recurring token's authorization is renewed before it expires (a new authorization
//! for what the order still needs of it, the old one voided once the new one is in place); a
//! nonrecurring one never is (R-AUT-3), so its customer has to be contacted for a new payment.
//!
//! What is at risk on a hold is what it keeps for its order ([`super::exposure::Assessment::kept`]):
//! a hold held beyond need puts nothing more at risk by expiring.
use chrono::{DateTime, NaiveDate, Utc};
use super::money::Money;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many days ahead the forecast looks.
pub const HORIZON_DAYS: u32 = 30;

/// A live hold and what its expiry would put at risk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtRisk {
    pub currency: String,
    pub expires_at: DateTime<Utc>,
    pub at_risk_minor: i64,
    /// Whether its token can be re-authorized (R-AUT-6).
    pub recurring: bool,
}

/// One day of the forecast.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForecastDay {
    pub date: NaiveDate,
    pub recurring_minor: i64,
    pub nonrecurring_minor: i64,
    pub authorizations: u32,
}

impl ForecastDay {
    pub fn total_minor(&self) -> i64 {
        self.recurring_minor.saturating_add(self.nonrecurring_minor)
    }
}

/// The forecast of one currency: every day of the horizon, in order, empty days included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyForecast {
    pub currency: String,
    pub days: Vec<ForecastDay>,
    pub recurring_minor: i64,
    pub nonrecurring_minor: i64,
}

impl CurrencyForecast {
    /// The largest day's total (the chart's scale).
    pub fn peak_minor(&self) -> i64 {
        self.days.iter().map(ForecastDay::total_minor).max().unwrap_or(0)
    }
}

/// The day `at` falls on (UTC).
pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// The forecast of `items` over the `horizon` days from `today` (a hold expiring on one of them
/// counts on that day; one expiring later, or already expired, does not), one per currency.
pub fn forecast(items: &[AtRisk], today: NaiveDate, horizon: u32) -> Vec<CurrencyForecast> {
    let mut per: BTreeMap<&str, CurrencyForecast> = BTreeMap::new();
    for i in items.iter().filter(|i| i.at_risk_minor > 0) {
        let offset = (day_of(i.expires_at) - today).num_days();
        if offset < 0 || offset >= i64::from(horizon) {
            continue;
        }
        let f = per.entry(i.currency.as_str()).or_insert_with(|| CurrencyForecast {
            currency: i.currency.clone(),
            days: (0..horizon).map(|d| ForecastDay { date: today + chrono::Duration::days(i64::from(d)), ..Default::default() }).collect(),
            recurring_minor: 0,
            nonrecurring_minor: 0,
        });
        let day = &mut f.days[offset as usize];
        day.authorizations += 1;
        if i.recurring {
            day.recurring_minor = day.recurring_minor.saturating_add(i.at_risk_minor);
            f.recurring_minor = f.recurring_minor.saturating_add(i.at_risk_minor);
        } else {
            day.nonrecurring_minor = day.nonrecurring_minor.saturating_add(i.at_risk_minor);
            f.nonrecurring_minor = f.nonrecurring_minor.saturating_add(i.at_risk_minor);
        }
    }
    per.into_values().collect()
}

/// R-AUT-6: whether a live hold expiring at `expires_at` is due for renewal at `now`, renewals
/// being made `days_before` days before expiry (0: never).
pub fn renewal_due(expires_at: DateTime<Utc>, now: DateTime<Utc>, days_before: u32) -> bool {
    days_before > 0 && expires_at > now && expires_at - now <= chrono::Duration::days(i64::from(days_before))
}

// The Expiry forecast page's rows (`service::forecast::page`).

/// A nonrecurring hold expiring within the horizon: whom to call for a new payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRow {
    pub order_id: i32,
    pub order_number: String,
    pub channel_id: i32,
    pub channel_name: String,
    pub customer_account: String,
    pub customer_name: String,
    pub email: String,
    pub phone: String,
    pub card: String,
    pub at_risk: Money,
    pub expires_at: DateTime<Utc>,
}

/// A recurring hold expiring within the horizon, and when it is renewed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalRow {
    pub order_id: i32,
    pub order_number: String,
    pub customer_account: String,
    pub at_risk: Money,
    pub expires_at: DateTime<Utc>,
    /// When the renewal job takes it (None: renewal is off).
    pub renews_from: Option<DateTime<Utc>>,
    /// Already within its renewal window.
    pub due: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForecastPage {
    pub as_of: DateTime<Utc>,
    pub horizon_days: u32,
    /// The AR parameter (0: renewal off).
    pub renew_days_before: u32,
    pub currencies: Vec<CurrencyForecast>,
    /// Soonest expiry first.
    pub contacts: Vec<ContactRow>,
    /// Soonest expiry first.
    pub renewals: Vec<RenewalRow>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 8, 15, 0, 0).single().unwrap()
    }

    fn item(hours: i64, minor: i64, recurring: bool) -> AtRisk {
        AtRisk { currency: "USD".into(), expires_at: now() + chrono::Duration::hours(hours), at_risk_minor: minor, recurring }
    }

    #[test]
    fn each_hold_counts_on_the_day_it_expires_split_by_token_kind() {
        let today = now().date_naive();
        let f = forecast(&[item(2, 100, true), item(5, 250, false), item(30, 1_000, true), item(24 * 29 + 8, 7, false)], today, HORIZON_DAYS);
        assert_eq!(f.len(), 1);
        let usd = &f[0];
        assert_eq!(usd.days.len(), 30);
        assert_eq!((usd.days[0].recurring_minor, usd.days[0].nonrecurring_minor, usd.days[0].authorizations), (100, 250, 2), "15:00 + 2 h and + 5 h are today");
        assert_eq!(usd.days[1].recurring_minor, 1_000, "+30 h is 2026-12-09 21:00: tomorrow");
        assert_eq!(usd.days[29].nonrecurring_minor, 7, "the 30th day is the last one counted");
        assert_eq!(usd.days[1].date, today + chrono::Duration::days(1));
        assert_eq!(usd.days.iter().map(|d| d.total_minor()).sum::<i64>(), 100 + 250 + 1_000 + 7);
        assert_eq!((usd.recurring_minor, usd.nonrecurring_minor, usd.peak_minor()), (1_100, 257, 1_000));
    }

    #[test]
    fn beyond_the_horizon_already_expired_and_nothing_at_risk_are_left_out() {
        let today = now().date_naive();
        let f = forecast(&[item(24 * 31, 100, true), item(-16, 100, true), item(3, 0, false)], today, HORIZON_DAYS);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn currencies_are_forecast_apart() {
        let mut eur = item(3, 500, true);
        eur.currency = "EUR".into();
        let f = forecast(&[item(3, 100, true), eur], now().date_naive(), HORIZON_DAYS);
        assert_eq!(f.iter().map(|c| (c.currency.as_str(), c.recurring_minor)).collect::<Vec<_>>(), vec![("EUR", 500), ("USD", 100)]);
    }

    #[test]
    fn a_renewal_is_due_within_its_days_before_expiry_and_never_with_zero() {
        let at = now() + chrono::Duration::days(2);
        assert!(renewal_due(at, now(), 2));
        assert!(!renewal_due(at + chrono::Duration::seconds(1), now(), 2));
        assert!(!renewal_due(at, now(), 0), "0 turns renewal off");
        assert!(!renewal_due(now(), now(), 5), "an expired hold is not renewed: a new payment is needed (R-AUT-4)");
    }
}
