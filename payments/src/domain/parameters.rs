//! Parameters (R-PAR-1..7). Scalar parameters are described once in [`PARAMETERS`]: their page,
//! label, help, kind and default. Every value is parsed into a normalized form before it is stored;
//! a submission with any invalid field is refused whole, with a message per field (R-PAR-7).
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The settings page a parameter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ParameterGroup {
    AccountsReceivable,
    CallCenter,
    Commerce,
    PaymentProperties,
}

impl ParameterGroup {
    pub const ALL: [ParameterGroup; 4] = [
        ParameterGroup::AccountsReceivable,
        ParameterGroup::CallCenter,
        ParameterGroup::Commerce,
        ParameterGroup::PaymentProperties,
    ];

    pub fn key(self) -> &'static str {
        match self {
            ParameterGroup::AccountsReceivable => "accounts-receivable",
            ParameterGroup::CallCenter => "call-center",
            ParameterGroup::Commerce => "commerce",
            ParameterGroup::PaymentProperties => "payment-properties",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.key() == key)
    }

    pub fn title(self) -> &'static str {
        match self {
            ParameterGroup::AccountsReceivable => "Accounts receivable parameters",
            ParameterGroup::CallCenter => "Call center parameters",
            ParameterGroup::Commerce => "Commerce parameters",
            ParameterGroup::PaymentProperties => "Payment properties",
        }
    }

    pub fn intro(self) -> &'static str {
        match self {
            ParameterGroup::AccountsReceivable => "Credit card setup for invoicing: authorization, status monitoring of card payments, and when authorizations expire.",
            ParameterGroup::CallCenter => "How the call center handles future orders and saved customer cards.",
            ParameterGroup::Commerce => "Customer order deposits and cancellation charges.",
            ParameterGroup::PaymentProperties => "When the remaining balance of a customer order is authorized with a stored card token.",
        }
    }

    pub fn definitions(self) -> impl Iterator<Item = &'static ParameterDef> {
        PARAMETERS.iter().filter(move |d| d.group == self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterKind {
    /// Stored as "yes" / "no".
    YesNo,
    /// A whole number of days within the range.
    Days { min: u32, max: u32 },
    /// A percentage from 0 to 100 with at most two decimals.
    Percent,
    /// A whole amount of the currency's main unit (dollars, euros) within the range.
    Units { min: u32, max: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterDef {
    pub key: &'static str,
    pub group: ParameterGroup,
    pub label: &'static str,
    pub help: &'static str,
    pub kind: ParameterKind,
    pub default: &'static str,
}

pub mod keys {
    pub const CREDIT_CARD_AUTHORIZATION: &str = "ar_credit_card_authorization";
    pub const CARDS_PAYMENT_STATUS_MONITORING: &str = "ar_cards_payment_status_monitoring";
    pub const DAYS_BEFORE_EXPIRED: &str = "ar_days_before_expired";
    pub const RENEW_DAYS_BEFORE_EXPIRY: &str = "ar_renew_days_before_expiry";
    pub const TERMINATE_APPROVAL_FROM: &str = "ar_terminate_approval_from";
    pub const FUTURE_ORDERS: &str = "call_center_future_orders";
    pub const DELAY_AUTHORIZATION: &str = "call_center_delay_authorization";
    pub const FUTURE_ORDER_DAYS: &str = "call_center_future_order_days";
    pub const ALLOW_CUSTOMER_CARD_ON_FILE: &str = "call_center_allow_customer_card_on_file";
    pub const DEFAULT_DEPOSIT_PERCENT: &str = "commerce_default_deposit_percent";
    pub const CANCELLATION_CHARGE_PERCENT: &str = "commerce_cancellation_charge_percent";
    pub const MIN_ORDER_PROCESSING_DAYS_FOR_TOKEN: &str = "payments_min_order_processing_days_for_storing_card_token";
    pub const ALWAYS_STORE_TOKEN_ON_BALANCE_AUTH: &str = "payments_always_store_card_token_on_order_balance_authorization";
}

use ParameterGroup::*;
use ParameterKind::*;

pub const PARAMETERS: &[ParameterDef] = &[
    ParameterDef {
        key: keys::CREDIT_CARD_AUTHORIZATION,
        group: AccountsReceivable,
        label: "Credit card authorization",
        help: "Authorize card payments when orders are taken. Must be Yes for incremental capture.",
        kind: YesNo,
        default: "yes",
    },
    ParameterDef {
        key: keys::CARDS_PAYMENT_STATUS_MONITORING,
        group: AccountsReceivable,
        label: "Cards payment status monitoring",
        help: "Yes: log each stage of invoicing card-paid orders; a failed stage is resumed from the Incomplete cards payment page. No: invoicing is one step; a card that is not charged takes the invoice back, and a failure after the charge still shows on Incomplete cards payment.",
        kind: YesNo,
        default: "no",
    },
    ParameterDef {
        key: keys::DAYS_BEFORE_EXPIRED,
        group: AccountsReceivable,
        label: "Number of days before expired",
        help: "Days an authorization stays valid when its store and payment type set no pre-authorization duration.",
        kind: Days { min: 1, max: 365 },
        default: "7",
    },
    ParameterDef {
        key: keys::RENEW_DAYS_BEFORE_EXPIRY,
        group: AccountsReceivable,
        label: "Renew authorizations days before expiry",
        help: "An authorization paid with a recurring token is renewed this many days before it expires, for what its order still needs; the old one is voided once the new one is in place. Nonrecurring tokens are never renewed. 0: never.",
        kind: Days { min: 0, max: 30 },
        default: "0",
    },
    ParameterDef {
        key: keys::TERMINATE_APPROVAL_FROM,
        group: AccountsReceivable,
        label: "Second approval to terminate from",
        help: "Terminating a card payment after the processor moved at least this much money for its invoice (in the invoice's currency, whole units) needs a second finance user to approve. 0: whenever any money moved.",
        kind: Units { min: 0, max: 1_000_000_000 },
        default: "0",
    },
    ParameterDef {
        key: keys::FUTURE_ORDERS,
        group: CallCenter,
        label: "Future orders",
        help: "Authorize orders with a ship date far ahead only when the ship date comes near.",
        kind: YesNo,
        default: "no",
    },
    ParameterDef {
        key: keys::DELAY_AUTHORIZATION,
        group: CallCenter,
        label: "Delay authorization",
        help: "Do not authorize future orders when they are taken; the authorization resubmit job does it later.",
        kind: YesNo,
        default: "no",
    },
    ParameterDef {
        key: keys::FUTURE_ORDER_DAYS,
        group: CallCenter,
        label: "Future order days",
        help: "How many days before the ship date a future order is authorized.",
        kind: Days { min: 0, max: 365 },
        default: "7",
    },
    ParameterDef {
        key: keys::ALLOW_CUSTOMER_CARD_ON_FILE,
        group: CallCenter,
        label: "Allow customer card on file",
        help: "Let call center agents save a customer's card (with the customer's agreement) for later orders.",
        kind: YesNo,
        default: "no",
    },
    ParameterDef {
        key: keys::DEFAULT_DEPOSIT_PERCENT,
        group: Commerce,
        label: "Default deposit percentage",
        help: "Deposit proposed for customer orders, as a percentage of the order total.",
        kind: Percent,
        default: "10",
    },
    ParameterDef {
        key: keys::CANCELLATION_CHARGE_PERCENT,
        group: Commerce,
        label: "Cancellation charge percentage",
        help: "Part of the order total kept as a charge when a customer order with a deposit is cancelled (never more than the deposit paid).",
        kind: Percent,
        default: "0",
    },
    ParameterDef {
        key: keys::MIN_ORDER_PROCESSING_DAYS_FOR_TOKEN,
        group: PaymentProperties,
        label: "MinOrderProcessingDaysForStoringCardToken",
        help: "A customer order's remaining balance is authorized with a stored card token when any line ships more than this many days out.",
        kind: Days { min: 0, max: 365 },
        default: "7",
    },
    ParameterDef {
        key: keys::ALWAYS_STORE_TOKEN_ON_BALANCE_AUTH,
        group: PaymentProperties,
        label: "AlwaysStoreCardTokenOnOrderBalanceAuthorization",
        help: "Always store a card token when authorizing a customer order's remaining balance, whatever the ship dates.",
        kind: YesNo,
        default: "no",
    },
];

pub fn definition(key: &str) -> Option<&'static ParameterDef> {
    PARAMETERS.iter().find(|d| d.key == key)
}

/// A field that failed validation, with a message for the person who typed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }

    /// The value of a parsed field, or its message added to `errors` (so that a form reports
    /// every invalid field at once).
    pub fn collect<T>(errors: &mut Vec<FieldError>, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed.map_err(|m| errors.push(FieldError::new(field, m))).ok()
    }
}

/// Parses a Yes/No field. Accepts yes/no, true/false, on/off in any case.
pub fn parse_yes_no(label: &str, raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        "" => Err(format!("{label} must be Yes or No.")),
        other => Err(format!("{label} must be Yes or No, not \"{other}\".")),
    }
}

pub fn parse_days(label: &str, raw: &str, min: u32, max: u32) -> Result<u32, String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(format!("{label} is required: enter a whole number of days from {min} to {max}."));
    }
    match t.parse::<i64>() {
        Ok(n) if n >= i64::from(min) && n <= i64::from(max) => Ok(n as u32),
        Ok(n) => Err(format!("{label} must be from {min} to {max} days; {n} is out of range.")),
        Err(_) => Err(format!("{label} must be a whole number of days from {min} to {max}, not \"{t}\".")),
    }
}

pub fn parse_units(label: &str, raw: &str, min: u32, max: u32) -> Result<u32, String> {
    let t = raw.trim();
    match t.parse::<i64>() {
        Ok(n) if n >= i64::from(min) && n <= i64::from(max) => Ok(n as u32),
        Ok(n) => Err(format!("{label} must be from {min} to {max}; {n} is out of range.")),
        Err(_) if t.is_empty() => Err(format!("{label} is required: enter a whole amount from {min} to {max}.")),
        Err(_) => Err(format!("{label} must be a whole amount from {min} to {max}, without cents, not \"{t}\".")),
    }
}

pub fn parse_percent(label: &str, raw: &str) -> Result<Decimal, String> {
    let t = raw.trim().trim_end_matches('%').trim();
    if t.is_empty() {
        return Err(format!("{label} is required: enter a percentage from 0 to 100."));
    }
    let value = Decimal::from_str(t).map_err(|_| format!("{label} must be a number from 0 to 100, not \"{t}\"."))?;
    if value < Decimal::ZERO || value > Decimal::ONE_HUNDRED {
        return Err(format!("{label} must be from 0 to 100; {value} is out of range."));
    }
    if value.normalize().scale() > 2 {
        return Err(format!("{label} may have at most two decimals."));
    }
    Ok(value.normalize())
}

/// Parses a raw value for `def` into the normalized string that is stored.
pub fn normalize(def: &ParameterDef, raw: &str) -> Result<String, String> {
    match def.kind {
        YesNo => parse_yes_no(def.label, raw).map(|b| if b { "yes" } else { "no" }.to_string()),
        Days { min, max } => parse_days(def.label, raw, min, max).map(|n| n.to_string()),
        Units { min, max } => parse_units(def.label, raw, min, max).map(|n| n.to_string()),
        Percent => parse_percent(def.label, raw).map(|d| d.to_string()),
    }
}

/// Validates a whole page submission. Every field of the group must be present and valid, and no
/// unknown field may be sent; otherwise nothing is stored and each problem is reported.
pub fn validate_group(
    group: ParameterGroup,
    input: &BTreeMap<String, String>,
) -> Result<Vec<(&'static str, String)>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for def in group.definitions() {
        match input.get(def.key) {
            None => errors.push(FieldError::new(def.key, format!("{} is missing from the submission.", def.label))),
            Some(raw) => match normalize(def, raw) {
                Ok(v) => out.push((def.key, v)),
                Err(m) => errors.push(FieldError::new(def.key, m)),
            },
        }
    }
    for key in input.keys() {
        if !group.definitions().any(|d| d.key == key) {
            errors.push(FieldError::new(key.clone(), format!("\"{key}\" is not a parameter of this page.")));
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Every scalar parameter's current value, defaults filled in, with typed accessors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    values: BTreeMap<String, String>,
}

impl Parameters {
    /// Builds from stored rows; unknown or unparseable stored values fall back to the default.
    pub fn from_stored(stored: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut values: BTreeMap<String, String> =
            PARAMETERS.iter().map(|d| (d.key.to_string(), d.default.to_string())).collect();
        for (k, v) in stored {
            if let Some(def) = definition(&k) {
                if let Ok(n) = normalize(def, &v) {
                    values.insert(k, n);
                }
            }
        }
        Parameters { values }
    }

    pub fn raw(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or_default()
    }

    fn yes(&self, key: &str) -> bool {
        self.raw(key) == "yes"
    }

    fn days(&self, key: &str) -> u32 {
        self.raw(key).parse().unwrap_or_default()
    }

    fn percent(&self, key: &str) -> Decimal {
        Decimal::from_str(self.raw(key)).unwrap_or_default()
    }

    pub fn credit_card_authorization(&self) -> bool {
        self.yes(keys::CREDIT_CARD_AUTHORIZATION)
    }
    pub fn cards_payment_status_monitoring(&self) -> bool {
        self.yes(keys::CARDS_PAYMENT_STATUS_MONITORING)
    }
    pub fn days_before_expired(&self) -> u32 {
        self.days(keys::DAYS_BEFORE_EXPIRED)
    }
    /// R-AUT-6: how many days before expiry a recurring authorization is renewed (0: never).
    pub fn renew_days_before_expiry(&self) -> u32 {
        self.days(keys::RENEW_DAYS_BEFORE_EXPIRY)
    }
    /// Issue #44: money moved (whole units) from which terminating needs a second approval.
    pub fn terminate_approval_from(&self) -> u32 {
        self.days(keys::TERMINATE_APPROVAL_FROM)
    }
    pub fn future_orders(&self) -> bool {
        self.yes(keys::FUTURE_ORDERS)
    }
    pub fn delay_authorization(&self) -> bool {
        self.yes(keys::DELAY_AUTHORIZATION)
    }
    pub fn future_order_days(&self) -> u32 {
        self.days(keys::FUTURE_ORDER_DAYS)
    }
    pub fn allow_customer_card_on_file(&self) -> bool {
        self.yes(keys::ALLOW_CUSTOMER_CARD_ON_FILE)
    }
    pub fn default_deposit_percent(&self) -> Decimal {
        self.percent(keys::DEFAULT_DEPOSIT_PERCENT)
    }
    pub fn cancellation_charge_percent(&self) -> Decimal {
        self.percent(keys::CANCELLATION_CHARGE_PERCENT)
    }
    pub fn min_order_processing_days_for_storing_card_token(&self) -> u32 {
        self.days(keys::MIN_ORDER_PROCESSING_DAYS_FOR_TOKEN)
    }
    pub fn always_store_card_token_on_order_balance_authorization(&self) -> bool {
        self.yes(keys::ALWAYS_STORE_TOKEN_ON_BALANCE_AUTH)
    }
}

/// Card payment method variants, as processors name them in authorization responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PaymentMethodVariant {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Interac,
}

impl PaymentMethodVariant {
    pub const ALL: [PaymentMethodVariant; 5] = [
        PaymentMethodVariant::Visa,
        PaymentMethodVariant::Mastercard,
        PaymentMethodVariant::Amex,
        PaymentMethodVariant::Discover,
        PaymentMethodVariant::Interac,
    ];

    pub fn code(self) -> &'static str {
        match self {
            PaymentMethodVariant::Visa => "visa",
            PaymentMethodVariant::Mastercard => "mc",
            PaymentMethodVariant::Amex => "amex",
            PaymentMethodVariant::Discover => "discover",
            PaymentMethodVariant::Interac => "interac",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            PaymentMethodVariant::Visa => "Visa",
            PaymentMethodVariant::Mastercard => "Mastercard",
            PaymentMethodVariant::Amex => "American Express",
            PaymentMethodVariant::Discover => "Discover",
            PaymentMethodVariant::Interac => "Interac",
        }
    }
}

/// Parses the Non incremental capture payment methods field (R-PAR-5): payment method variant
/// strings separated by semicolons. Stored lower-case, trimmed, without duplicates or empty entries.
pub fn parse_payment_method_list(label: &str, raw: &str) -> Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    for part in raw.split(';') {
        let p = part.trim().to_ascii_lowercase();
        if p.is_empty() {
            continue;
        }
        if !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!(
                "{label}: \"{}\" is not a payment method variant; use names like interac, separated by semicolons.",
                part.trim()
            ));
        }
        if p.len() > 40 {
            return Err(format!("{label}: \"{p}\" is too long for a payment method variant."));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out.join(";"))
}

/// Pre-authorization duration in days for a store and payment type (R-PAR-6).
pub const PRE_AUTHORIZATION_DAYS: (u32, u32) = (1, 60);

pub fn parse_pre_authorization_days(raw: &str) -> Result<u32, String> {
    parse_days("Pre-authorization duration", raw, PRE_AUTHORIZATION_DAYS.0, PRE_AUTHORIZATION_DAYS.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_the_seeds_defaults() {
        // R-PAR-4: MinOrderProcessingDaysForStoringCardToken defaults to 7, Always... to off.
        let p = Parameters::from_stored([]);
        assert_eq!(p.min_order_processing_days_for_storing_card_token(), 7);
        assert!(!p.always_store_card_token_on_order_balance_authorization());
        assert!(p.credit_card_authorization());
        assert!(!p.cards_payment_status_monitoring());
    }

    #[test]
    fn every_default_is_valid_for_its_kind() {
        for def in PARAMETERS {
            assert_eq!(normalize(def, def.default).as_deref(), Ok(def.default), "{}", def.key);
        }
    }

    #[test]
    fn a_valid_group_normalizes_every_field() {
        let out = validate_group(
            ParameterGroup::Commerce,
            &form(&[(keys::DEFAULT_DEPOSIT_PERCENT, " 30.50 % "), (keys::CANCELLATION_CHARGE_PERCENT, "10")]),
        )
        .unwrap();
        assert_eq!(out, vec![(keys::DEFAULT_DEPOSIT_PERCENT, "30.5".into()), (keys::CANCELLATION_CHARGE_PERCENT, "10".into())]);
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        // R-PAR-7
        let errs = validate_group(
            ParameterGroup::AccountsReceivable,
            &form(&[
                (keys::CREDIT_CARD_AUTHORIZATION, "maybe"),
                (keys::CARDS_PAYMENT_STATUS_MONITORING, "yes"),
                (keys::DAYS_BEFORE_EXPIRED, "0"),
                (keys::RENEW_DAYS_BEFORE_EXPIRY, "31"),
                (keys::TERMINATE_APPROVAL_FROM, "12.50"),
            ]),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4);
        assert_eq!(errs[0].field, keys::CREDIT_CARD_AUTHORIZATION);
        assert!(errs[0].message.contains("Yes or No"));
        assert_eq!(errs[1].field, keys::DAYS_BEFORE_EXPIRED);
        assert!(errs[1].message.contains("from 1 to 365"), "{}", errs[1].message);
        assert_eq!(errs[2].field, keys::RENEW_DAYS_BEFORE_EXPIRY);
        assert!(errs[2].message.contains("from 0 to 30"), "{}", errs[2].message);
        assert_eq!(errs[3].field, keys::TERMINATE_APPROVAL_FROM);
        assert!(errs[3].message.contains("without cents"), "{}", errs[3].message);
    }

    #[test]
    fn missing_and_foreign_fields_are_refused() {
        let errs = validate_group(
            ParameterGroup::Commerce,
            &form(&[(keys::DEFAULT_DEPOSIT_PERCENT, "10"), (keys::DAYS_BEFORE_EXPIRED, "3")]),
        )
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec![keys::CANCELLATION_CHARGE_PERCENT, keys::DAYS_BEFORE_EXPIRED]);
    }

    #[test]
    fn percent_bounds_and_precision() {
        assert!(parse_percent("P", "100").is_ok());
        assert!(parse_percent("P", "0").is_ok());
        assert!(parse_percent("P", "100.01").unwrap_err().contains("out of range"));
        assert!(parse_percent("P", "-1").unwrap_err().contains("out of range"));
        assert!(parse_percent("P", "12.345").unwrap_err().contains("two decimals"));
        assert!(parse_percent("P", "ten").unwrap_err().contains("not \"ten\""));
        assert_eq!(parse_percent("P", "12.50").unwrap().to_string(), "12.5");
    }

    #[test]
    fn days_reject_fractions_and_text() {
        assert!(parse_days("D", "2.5", 0, 10).is_err());
        assert!(parse_days("D", "", 0, 10).unwrap_err().contains("required"));
        assert_eq!(parse_days("D", " 10 ", 0, 10), Ok(10));
    }

    #[test]
    fn stored_garbage_falls_back_to_the_default() {
        let p = Parameters::from_stored([(keys::DAYS_BEFORE_EXPIRED.to_string(), "many".to_string())]);
        assert_eq!(p.days_before_expired(), 7);
    }

    #[test]
    fn payment_method_list_is_normalized() {
        // R-PAR-5
        assert_eq!(parse_payment_method_list("L", " Interac ; visa;;interac; ").unwrap(), "interac;visa");
        assert_eq!(parse_payment_method_list("L", "").unwrap(), "");
        assert!(parse_payment_method_list("L", "inter ac").unwrap_err().contains("not a payment method variant"));
    }
}
