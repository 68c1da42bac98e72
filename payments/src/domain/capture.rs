//! Capture eligibility (R-CAP-2, R-CAP-3): whether an invoice may capture against the original
//! authorization (incremental capture) or must take the legacy path (capture the invoiced amount,
//! then authorize the balance anew). Every condition is per authorization, and each one is named so
//! a finance user can read why an order took the legacy path.
use serde::{Deserialize, Serialize};

/// Everything R-CAP-2 looks at, gathered for one authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureConditions {
    /// The authorization response said SupportsMultipleCaptures.
    pub supports_multiple_captures: bool,
    /// Feature "Extensibility to support incremental credit card capture" is on.
    pub incremental_capture_feature: bool,
    /// Accounts receivable: Credit card authorization = Yes.
    pub credit_card_authorization: bool,
    /// The authorization has expired (by the store's pre-authorization duration or the AR days).
    pub expired: bool,
    /// Connector merchant property Enable Request Protection, for the order's channel.
    pub request_protection: bool,
    /// The authorization's payment method variant, exactly as the processor named it (`visa`,
    /// `maestro`, `visa_debit`, …): not narrowed to a list Paystage knows.
    pub payment_method_variant: String,
    /// Connector merchant property Non incremental capture payment methods (normalized list).
    pub non_incremental_capture_methods: String,
    /// The processor merchant account's allowMultiplePartialCapture flag.
    pub merchant_allows_multiple_partial_captures: bool,
}

/// Why an authorization cannot be captured incrementally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LegacyReason {
    AuthorizationDoesNotSupportMultipleCaptures,
    IncrementalCaptureFeatureOff,
    CreditCardAuthorizationOff,
    AuthorizationExpired,
    RequestProtectionOff,
    PaymentMethodExcluded,
    MerchantAccountDisallowsMultiplePartialCaptures,
}

impl LegacyReason {
    pub fn message(self) -> &'static str {
        match self {
            LegacyReason::AuthorizationDoesNotSupportMultipleCaptures => {
                "the authorization response did not say SupportsMultipleCaptures"
            }
            LegacyReason::IncrementalCaptureFeatureOff => {
                "the feature Extensibility to support incremental credit card capture is off"
            }
            LegacyReason::CreditCardAuthorizationOff => "Accounts receivable Credit card authorization is No",
            LegacyReason::AuthorizationExpired => "the authorization has expired",
            LegacyReason::RequestProtectionOff => "Enable Request Protection is off for this connector and channel",
            LegacyReason::PaymentMethodExcluded => "the payment method is listed in Non incremental capture payment methods",
            LegacyReason::MerchantAccountDisallowsMultiplePartialCaptures => {
                "the merchant account does not allow multiple partial captures"
            }
        }
    }
}

/// The capture path an invoice takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapturePath {
    /// Capture against the original authorization, which is kept until fully captured (R-CAP-1).
    Incremental,
    /// Capture the invoiced amount, then obtain a new authorization for the balance (R-CAP-3).
    Legacy(Vec<LegacyReason>),
}

impl CapturePath {
    pub fn kind(&self) -> CaptureKind {
        match self {
            CapturePath::Incremental => CaptureKind::Incremental,
            CapturePath::Legacy(_) => CaptureKind::Legacy,
        }
    }

    /// The path and why, as the payment's history shows it.
    pub fn explanation(&self) -> String {
        match self {
            CapturePath::Incremental => "Incremental capture against the original authorization".into(),
            CapturePath::Legacy(reasons) => format!(
                "Legacy capture, then a new authorization for the balance, because {}",
                reasons.iter().map(|r| r.message()).collect::<Vec<_>>().join("; ")
            ),
        }
    }
}

/// Which capture path a payment process took, as stored (`payment_processes.capture_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptureKind {
    Incremental,
    Legacy,
}

impl CaptureKind {
    pub fn code(self) -> &'static str {
        match self {
            CaptureKind::Incremental => "incremental",
            CaptureKind::Legacy => "legacy",
        }
    }

    pub fn from_code(code: &str) -> Option<CaptureKind> {
        [CaptureKind::Incremental, CaptureKind::Legacy].into_iter().find(|k| k.code() == code)
    }
}

/// Decides the path; lists every failing condition, not just the first.
pub fn capture_path(c: &CaptureConditions) -> CapturePath {
    let mut reasons = Vec::new();
    if !c.supports_multiple_captures {
        reasons.push(LegacyReason::AuthorizationDoesNotSupportMultipleCaptures);
    }
    if !c.incremental_capture_feature {
        reasons.push(LegacyReason::IncrementalCaptureFeatureOff);
    }
    if !c.credit_card_authorization {
        reasons.push(LegacyReason::CreditCardAuthorizationOff);
    }
    if c.expired {
        reasons.push(LegacyReason::AuthorizationExpired);
    }
    if !c.request_protection {
        reasons.push(LegacyReason::RequestProtectionOff);
    }
    // R-PAR-5: any variant the processor names can be listed; matched whole, in any case.
    let variant = c.payment_method_variant.trim();
    let excluded = !variant.is_empty() && c.non_incremental_capture_methods.split(';').any(|m| m.trim().eq_ignore_ascii_case(variant));
    if excluded {
        reasons.push(LegacyReason::PaymentMethodExcluded);
    }
    if !c.merchant_allows_multiple_partial_captures {
        reasons.push(LegacyReason::MerchantAccountDisallowsMultiplePartialCaptures);
    }
    if reasons.is_empty() { CapturePath::Incremental } else { CapturePath::Legacy(reasons) }
}

/// What stage 2 knows of an open authorization when it decides (R-CAP-1..4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenAuthorization {
    pub amount_minor: i64,
    pub captured_minor: i64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Stage 2's decision for an invoice: whether to capture, on which path and how much. The
/// one-at-a-time stage and the batched path both take it from [`decide_capture`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureDecision {
    /// The deposit and cash taken settle the invoice (R-PRE-2).
    NothingDue,
    /// The order has no open authorization (newest first is the one captured against).
    NoOpenAuthorization,
    /// The open authorization expired before the capture (R-AUT-3).
    Expired(chrono::DateTime<chrono::Utc>),
    /// Nothing is left on the authorization.
    NothingLeft,
    /// Capture `amount_minor` on `path`; `short` when the authorization covers less than is due
    /// (the rest stays due, R-CAP-4).
    Capture { path: CapturePath, amount_minor: i64, due_minor: i64, short: bool },
}

/// Stage 2's decision: `due_minor` is what the card pays of the invoice (its amount less the
/// deposit and cash applied), `authorization` the order's newest open one with R-CAP-2's
/// conditions read for it (see [`capture_path`]).
pub fn decide_capture(due_minor: i64, authorization: Option<(OpenAuthorization, &CaptureConditions)>, now: chrono::DateTime<chrono::Utc>) -> CaptureDecision {
    if due_minor <= 0 {
        return CaptureDecision::NothingDue;
    }
    let Some((auth, conditions)) = authorization else {
        return CaptureDecision::NoOpenAuthorization;
    };
    if auth.expires_at <= now {
        return CaptureDecision::Expired(auth.expires_at);
    }
    let amount = std::cmp::min(due_minor, auth.amount_minor - auth.captured_minor);
    if amount <= 0 {
        return CaptureDecision::NothingLeft;
    }
    CaptureDecision::Capture { path: capture_path(conditions), amount_minor: amount, due_minor, short: amount < due_minor }
}

/// How a refund of `amount` is taken from the captures (R-CAP-4, R-PRE-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundPlan {
    /// (index into the captures given, amount from it), newest capture first.
    Take(Vec<(usize, i64)>),
    /// No single capture has `amount` left, and refunds over multiple captures are off.
    NoSingleCapture,
}

/// Plans a refund of `amount` (at most what is left on the captures) over `left`, what each capture
/// has left to refund, newest first: over several captures only when `over_multiple` is on,
/// otherwise from the newest capture that can take all of it. Never more than a capture has left.
pub fn plan_refund(left: &[i64], amount: i64, over_multiple: bool) -> RefundPlan {
    if over_multiple {
        let mut wanted = amount;
        let mut takes = Vec::new();
        for (i, &l) in left.iter().enumerate() {
            if wanted == 0 {
                break;
            }
            let take = Ord::min(wanted, l.max(0));
            if take > 0 {
                takes.push((i, take));
                wanted -= take;
            }
        }
        return RefundPlan::Take(takes);
    }
    match left.iter().position(|&l| l >= amount) {
        Some(i) => RefundPlan::Take(vec![(i, amount)]),
        None => RefundPlan::NoSingleCapture,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capture_decision_takes_what_is_due_up_to_what_is_left() {
        let now = chrono::Utc::now();
        let ok = eligible();
        let auth = |amount, captured, days| OpenAuthorization { amount_minor: amount, captured_minor: captured, expires_at: now + chrono::Duration::days(days) };
        assert_eq!(decide_capture(0, Some((auth(100, 0, 1), &ok)), now), CaptureDecision::NothingDue);
        assert_eq!(decide_capture(-5, None, now), CaptureDecision::NothingDue);
        assert_eq!(decide_capture(50, None, now), CaptureDecision::NoOpenAuthorization);
        assert_eq!(decide_capture(50, Some((auth(100, 0, 0), &ok)), now), CaptureDecision::Expired(now));
        assert_eq!(decide_capture(50, Some((auth(100, 100, 1), &ok)), now), CaptureDecision::NothingLeft);
        assert_eq!(decide_capture(50, Some((auth(100, 20, 1), &ok)), now), CaptureDecision::Capture { path: CapturePath::Incremental, amount_minor: 50, due_minor: 50, short: false });
        // R-CAP-4: the authorization covers less than is due.
        assert_eq!(decide_capture(90, Some((auth(100, 20, 1), &ok)), now), CaptureDecision::Capture { path: CapturePath::Incremental, amount_minor: 80, due_minor: 90, short: true });
        let legacy = CaptureConditions { request_protection: false, ..eligible() };
        assert_eq!(decide_capture(10, Some((auth(100, 0, 1), &legacy)), now), CaptureDecision::Capture { path: CapturePath::Legacy(vec![LegacyReason::RequestProtectionOff]), amount_minor: 10, due_minor: 10, short: false });
    }

    fn eligible() -> CaptureConditions {
        CaptureConditions {
            supports_multiple_captures: true,
            incremental_capture_feature: true,
            credit_card_authorization: true,
            expired: false,
            request_protection: true,
            payment_method_variant: "visa".into(),
            non_incremental_capture_methods: "interac".into(),
            merchant_allows_multiple_partial_captures: true,
        }
    }

    #[test]
    fn all_conditions_met_is_incremental() {
        assert_eq!(capture_path(&eligible()), CapturePath::Incremental);
    }

    #[test]
    fn each_condition_flipped_alone_takes_the_legacy_path_with_its_reason() {
        // R-CAP-2: every condition matters on its own; R-CAP-3: the fallback is legacy.
        let cases: Vec<(Box<dyn Fn(&mut CaptureConditions)>, LegacyReason)> = vec![
            (Box::new(|c| c.supports_multiple_captures = false), LegacyReason::AuthorizationDoesNotSupportMultipleCaptures),
            (Box::new(|c| c.incremental_capture_feature = false), LegacyReason::IncrementalCaptureFeatureOff),
            (Box::new(|c| c.credit_card_authorization = false), LegacyReason::CreditCardAuthorizationOff),
            (Box::new(|c| c.expired = true), LegacyReason::AuthorizationExpired),
            (Box::new(|c| c.request_protection = false), LegacyReason::RequestProtectionOff),
            (Box::new(|c| c.payment_method_variant = "interac".into()), LegacyReason::PaymentMethodExcluded),
            (
                Box::new(|c| c.merchant_allows_multiple_partial_captures = false),
                LegacyReason::MerchantAccountDisallowsMultiplePartialCaptures,
            ),
        ];
        for (flip, reason) in cases {
            let mut c = eligible();
            flip(&mut c);
            assert_eq!(capture_path(&c), CapturePath::Legacy(vec![reason]), "{}", reason.message());
        }
    }

    #[test]
    fn any_variant_the_processor_names_can_be_excluded_in_any_case() {
        // R-PAR-5, R-CAP-2, issue #39 item 5: `maestro` and `visa_debit` were never matched, the
        // variant being read through a five-value enum.
        for (variant, list) in [("maestro", "interac;maestro"), ("visa_debit", "VISA_DEBIT"), ("MAESTRO", "maestro"), ("Maestro", " maestro ")] {
            let mut c = eligible();
            c.payment_method_variant = variant.into();
            c.non_incremental_capture_methods = list.into();
            assert_eq!(capture_path(&c), CapturePath::Legacy(vec![LegacyReason::PaymentMethodExcluded]), "{variant} in {list}");
        }
        let mut c = eligible();
        c.payment_method_variant = String::new();
        c.non_incremental_capture_methods = ";".into();
        assert_eq!(capture_path(&c), CapturePath::Incremental, "an empty variant matches no empty entry");
    }

    #[test]
    fn excluded_methods_match_exactly_not_by_prefix() {
        let mut c = eligible();
        c.non_incremental_capture_methods = "visa_debit;interac".into();
        assert_eq!(capture_path(&c), CapturePath::Incremental);
        c.non_incremental_capture_methods = "amex;visa".into();
        assert_eq!(capture_path(&c), CapturePath::Legacy(vec![LegacyReason::PaymentMethodExcluded]));
    }

    #[test]
    fn every_failing_condition_is_reported() {
        let mut c = eligible();
        c.expired = true;
        c.incremental_capture_feature = false;
        assert_eq!(
            capture_path(&c),
            CapturePath::Legacy(vec![LegacyReason::IncrementalCaptureFeatureOff, LegacyReason::AuthorizationExpired])
        );
    }

    #[test]
    fn refunds_never_take_more_than_a_capture_has_left() {
        // R-CAP-4: newest first; over several captures only with the feature on.
        assert_eq!(plan_refund(&[30, 50], 70, true), RefundPlan::Take(vec![(0, 30), (1, 40)]));
        assert_eq!(plan_refund(&[30, 50], 70, false), RefundPlan::NoSingleCapture);
        assert_eq!(plan_refund(&[30, 50], 40, false), RefundPlan::Take(vec![(1, 40)]), "the newest that can take it all");
        assert_eq!(plan_refund(&[0, 50], 20, true), RefundPlan::Take(vec![(1, 20)]), "an exhausted capture is skipped");
        // Any split, any amount up to what is left: the plan sums to the amount, each take within its capture.
        for seed in 0u64..500 {
            let left: Vec<i64> = (0..(seed % 5 + 1)).map(|i| ((seed * 7919 + i * 104_729) % 10_000) as i64).collect();
            let total: i64 = left.iter().sum();
            let amount = if total == 0 { 0 } else { (seed as i64 * 31) % total + 1 };
            let RefundPlan::Take(takes) = plan_refund(&left, amount, true) else { panic!("over multiple captures always plans") };
            assert_eq!(takes.iter().map(|t| t.1).sum::<i64>(), amount, "{left:?} {amount}");
            assert!(takes.iter().all(|&(i, t)| t > 0 && t <= left[i]), "{left:?} {amount} {takes:?}");
        }
    }
}
