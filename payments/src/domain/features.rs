//! Feature management (R-FEA-1..3): every feature, its description, its prerequisites and its
//! conflicts, and the rules that decide whether a toggle is allowed. This is the one place the
//! prerequisite graph lives; the service and the page only ask it.
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Feature {
    ImproveCardsPaymentFlow,
    UnifiedPaymentPostingJournalDefaults,
    OmniChannelPayments,
    DuplicatePaymentProtection,
    RefundsOverMultipleCaptures,
    ManualVoidOfExpiredLines,
    OmniChannelCommerceOrderPayments,
    IncrementalCapture,
    NonrecurringTokens,
    RestrictPaymentTokenUsage,
    UnifiedPaymentsExperienceInPos,
}

/// The six features seed 002 lists as prerequisites of incremental capture, in its order.
const COMMERCE_PAYMENT_BASE: [Feature; 5] = [
    Feature::UnifiedPaymentPostingJournalDefaults,
    Feature::OmniChannelPayments,
    Feature::DuplicatePaymentProtection,
    Feature::RefundsOverMultipleCaptures,
    Feature::ManualVoidOfExpiredLines,
];

impl Feature {
    pub const ALL: [Feature; 11] = [
        Feature::ImproveCardsPaymentFlow,
        Feature::UnifiedPaymentPostingJournalDefaults,
        Feature::OmniChannelPayments,
        Feature::DuplicatePaymentProtection,
        Feature::RefundsOverMultipleCaptures,
        Feature::ManualVoidOfExpiredLines,
        Feature::OmniChannelCommerceOrderPayments,
        Feature::IncrementalCapture,
        Feature::RestrictPaymentTokenUsage,
        Feature::NonrecurringTokens,
        Feature::UnifiedPaymentsExperienceInPos,
    ];

    /// Stable key stored in the database and used in forms and URLs.
    pub fn key(self) -> &'static str {
        match self {
            Feature::ImproveCardsPaymentFlow => "improve_cards_payment_flow",
            Feature::UnifiedPaymentPostingJournalDefaults => "unified_payment_posting_journal_defaults",
            Feature::OmniChannelPayments => "omni_channel_payments",
            Feature::DuplicatePaymentProtection => "duplicate_payment_protection",
            Feature::RefundsOverMultipleCaptures => "refunds_over_multiple_captures",
            Feature::ManualVoidOfExpiredLines => "manual_void_of_expired_lines",
            Feature::OmniChannelCommerceOrderPayments => "omni_channel_commerce_order_payments",
            Feature::IncrementalCapture => "incremental_capture",
            Feature::NonrecurringTokens => "nonrecurring_tokens",
            Feature::RestrictPaymentTokenUsage => "restrict_payment_token_usage",
            Feature::UnifiedPaymentsExperienceInPos => "unified_payments_experience_in_pos",
        }
    }

    pub fn from_key(key: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The name users see, as the seeds spell it.
    pub fn name(self) -> &'static str {
        match self {
            Feature::ImproveCardsPaymentFlow => "Improve cards payment processing flow in customer payment",
            Feature::UnifiedPaymentPostingJournalDefaults => "Unified payment posting journal defaults for Commerce",
            Feature::OmniChannelPayments => "Omni-channel payments",
            Feature::DuplicatePaymentProtection => "Duplicate payment protection on invoicing",
            Feature::RefundsOverMultipleCaptures => "Enable refunds over multiple captures",
            Feature::ManualVoidOfExpiredLines => {
                "Enable manual void of expired credit card payment lines when authorizations are expired"
            }
            Feature::OmniChannelCommerceOrderPayments => "Omni-channel Commerce order payments",
            Feature::IncrementalCapture => "Extensibility to support incremental credit card capture",
            Feature::NonrecurringTokens => "Enable use of nonrecurring tokens in Commerce",
            Feature::RestrictPaymentTokenUsage => "Restrict Payment Token usage to Order context",
            Feature::UnifiedPaymentsExperienceInPos => "Enable unified payments experience in POS",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Feature::ImproveCardsPaymentFlow => {
                "Splits invoicing of card-paid orders into four logged stages (post invoice, capture or refund, \
                 post payment journal, authorize the remaining amount) that can be resumed from the Incomplete \
                 cards payment page."
            }
            Feature::UnifiedPaymentPostingJournalDefaults => {
                "Changes how customer payment and refund payment journals are created for orders from the call \
                 center, POS and online store."
            }
            Feature::OmniChannelPayments => {
                "Enables omni-channel payment scenarios such as buy online, pick up in store."
            }
            Feature::DuplicatePaymentProtection => {
                "Enables duplicate payment protection for invoicing: every processor request carries a tracking \
                 id so a retried request is recognised instead of charged again."
            }
            Feature::RefundsOverMultipleCaptures => {
                "Allows one refund to span several captures of an order, never exceeding what was captured."
            }
            Feature::ManualVoidOfExpiredLines => {
                "Allows finance users to void card payment lines whose authorization expired and cannot be refreshed."
            }
            Feature::OmniChannelCommerceOrderPayments => {
                "Rationalizes payments across channels and allows editing storefront and POS order payments in the \
                 call center. Enable it last: the five features above are its prerequisites."
            }
            Feature::IncrementalCapture => {
                "Captures each invoice against the original authorization, which is kept until fully captured, \
                 instead of capturing and re-authorizing the balance."
            }
            Feature::NonrecurringTokens => {
                "Uses single-order card tokens instead of reusable ones, except where a recurring token is required \
                 (future orders, installments, unlinked refunds, long lead times)."
            }
            Feature::RestrictPaymentTokenUsage => {
                "Associates a card token with the current sales order only, unless it is explicitly saved as card on \
                 file with the customer's agreement."
            }
            Feature::UnifiedPaymentsExperienceInPos => {
                "The unified payments experience in the point of sale. While it is on, nonrecurring tokens do not \
                 take effect."
            }
        }
    }

    /// Features that must be on before this one may be turned on (R-FEA-2).
    pub fn prerequisites(self) -> Vec<Feature> {
        match self {
            Feature::OmniChannelCommerceOrderPayments => COMMERCE_PAYMENT_BASE.to_vec(),
            Feature::IncrementalCapture => {
                let mut v = COMMERCE_PAYMENT_BASE.to_vec();
                v.push(Feature::OmniChannelCommerceOrderPayments);
                v
            }
            Feature::NonrecurringTokens => vec![Feature::IncrementalCapture, Feature::RestrictPaymentTokenUsage],
            _ => Vec::new(),
        }
    }

    /// Features that, while on together with this one, stop it from behaving as documented (R-FEA-3).
    pub fn conflicts(self) -> &'static [Feature] {
        match self {
            Feature::NonrecurringTokens => &[Feature::UnifiedPaymentsExperienceInPos],
            Feature::UnifiedPaymentsExperienceInPos => &[Feature::NonrecurringTokens],
            _ => &[],
        }
    }
}

/// Why a toggle was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FeatureToggleError {
    #[error("{} cannot be enabled until these features are enabled: {}.", .feature.name(), names(.missing))]
    MissingPrerequisites { feature: Feature, missing: Vec<Feature> },
    #[error("{} cannot be disabled while these features that depend on it are enabled: {}.", .feature.name(), names(.dependents))]
    RequiredBy { feature: Feature, dependents: Vec<Feature> },
}

fn names(features: &[Feature]) -> String {
    features.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// The set of features that are on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSet(BTreeSet<Feature>);

impl FeatureSet {
    pub fn new(enabled: impl IntoIterator<Item = Feature>) -> Self {
        FeatureSet(enabled.into_iter().collect())
    }

    pub fn is_enabled(&self, feature: Feature) -> bool {
        self.0.contains(&feature)
    }

    pub fn enabled(&self) -> impl Iterator<Item = Feature> + '_ {
        self.0.iter().copied()
    }

    /// Prerequisites of `feature` that are still off, in the order the seed lists them.
    pub fn missing_prerequisites(&self, feature: Feature) -> Vec<Feature> {
        feature.prerequisites().into_iter().filter(|p| !self.is_enabled(*p)).collect()
    }

    /// Enabled features that list `feature` as a prerequisite.
    pub fn enabled_dependents(&self, feature: Feature) -> Vec<Feature> {
        Feature::ALL
            .into_iter()
            .filter(|f| self.is_enabled(*f) && f.prerequisites().contains(&feature))
            .collect()
    }

    /// Applies a toggle if the prerequisite rules allow it; otherwise returns why not and leaves the
    /// set unchanged. Toggling to the current state is allowed and changes nothing.
    pub fn set(&mut self, feature: Feature, enable: bool) -> Result<(), FeatureToggleError> {
        if enable {
            let missing = self.missing_prerequisites(feature);
            if !missing.is_empty() {
                return Err(FeatureToggleError::MissingPrerequisites { feature, missing });
            }
            self.0.insert(feature);
        } else {
            let dependents = self.enabled_dependents(feature);
            if !dependents.is_empty() {
                return Err(FeatureToggleError::RequiredBy { feature, dependents });
            }
            self.0.remove(&feature);
        }
        Ok(())
    }

    /// Warnings for conflicting features that are on together (R-FEA-3).
    pub fn conflict_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.is_enabled(Feature::NonrecurringTokens) && self.is_enabled(Feature::UnifiedPaymentsExperienceInPos) {
            out.push(format!(
                "{} is on, so {} does not take effect: card payments keep using recurring tokens.",
                Feature::UnifiedPaymentsExperienceInPos.name(),
                Feature::NonrecurringTokens.name()
            ));
        }
        out
    }

    /// Whether nonrecurring tokens are actually in effect (on, and not overridden per R-FEA-3).
    pub fn nonrecurring_tokens_in_effect(&self) -> bool {
        self.is_enabled(Feature::NonrecurringTokens) && !self.is_enabled(Feature::UnifiedPaymentsExperienceInPos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_is_off_by_default() {
        // R-FEA-1
        let set = FeatureSet::default();
        assert!(Feature::ALL.iter().all(|f| !set.is_enabled(*f)));
        assert_eq!(Feature::ALL.len(), 11);
    }

    #[test]
    fn keys_round_trip_and_are_unique() {
        let keys: BTreeSet<_> = Feature::ALL.iter().map(|f| f.key()).collect();
        assert_eq!(keys.len(), Feature::ALL.len());
        for f in Feature::ALL {
            assert_eq!(Feature::from_key(f.key()), Some(f));
        }
    }

    #[test]
    fn omni_channel_commerce_order_payments_needs_the_five_and_names_them() {
        // R-FEA-2
        let mut set = FeatureSet::default();
        let err = set.set(Feature::OmniChannelCommerceOrderPayments, true).unwrap_err();
        assert_eq!(
            err,
            FeatureToggleError::MissingPrerequisites {
                feature: Feature::OmniChannelCommerceOrderPayments,
                missing: COMMERCE_PAYMENT_BASE.to_vec()
            }
        );
        let msg = err.to_string();
        for f in COMMERCE_PAYMENT_BASE {
            assert!(msg.contains(f.name()), "{msg} should name {}", f.name());
        }
        assert!(!set.is_enabled(Feature::OmniChannelCommerceOrderPayments));
        for f in COMMERCE_PAYMENT_BASE {
            set.set(f, true).unwrap();
        }
        set.set(Feature::OmniChannelCommerceOrderPayments, true).unwrap();
        assert!(set.is_enabled(Feature::OmniChannelCommerceOrderPayments));
    }

    #[test]
    fn enabling_with_some_prerequisites_names_only_the_missing_ones() {
        let mut set = FeatureSet::new(COMMERCE_PAYMENT_BASE[..4].iter().copied());
        let err = set.set(Feature::OmniChannelCommerceOrderPayments, true).unwrap_err();
        assert_eq!(
            err,
            FeatureToggleError::MissingPrerequisites {
                feature: Feature::OmniChannelCommerceOrderPayments,
                missing: vec![Feature::ManualVoidOfExpiredLines]
            }
        );
    }

    #[test]
    fn incremental_capture_needs_all_six_of_seed_002() {
        let prereqs = Feature::IncrementalCapture.prerequisites();
        assert_eq!(prereqs.len(), 6);
        assert!(prereqs.contains(&Feature::OmniChannelCommerceOrderPayments));
        let mut set = FeatureSet::new(COMMERCE_PAYMENT_BASE);
        assert!(set.set(Feature::IncrementalCapture, true).is_err());
        set.set(Feature::OmniChannelCommerceOrderPayments, true).unwrap();
        set.set(Feature::IncrementalCapture, true).unwrap();
    }

    #[test]
    fn nonrecurring_tokens_need_incremental_capture_and_restricted_tokens() {
        let mut set = FeatureSet::new(Feature::IncrementalCapture.prerequisites());
        set.set(Feature::IncrementalCapture, true).unwrap();
        let err = set.set(Feature::NonrecurringTokens, true).unwrap_err();
        assert_eq!(
            err,
            FeatureToggleError::MissingPrerequisites {
                feature: Feature::NonrecurringTokens,
                missing: vec![Feature::RestrictPaymentTokenUsage]
            }
        );
        set.set(Feature::RestrictPaymentTokenUsage, true).unwrap();
        set.set(Feature::NonrecurringTokens, true).unwrap();
    }

    #[test]
    fn disabling_a_prerequisite_of_an_enabled_feature_is_refused() {
        let mut set = FeatureSet::new(COMMERCE_PAYMENT_BASE);
        set.set(Feature::OmniChannelCommerceOrderPayments, true).unwrap();
        let err = set.set(Feature::OmniChannelPayments, false).unwrap_err();
        assert_eq!(
            err,
            FeatureToggleError::RequiredBy {
                feature: Feature::OmniChannelPayments,
                dependents: vec![Feature::OmniChannelCommerceOrderPayments]
            }
        );
        assert!(err.to_string().contains("Omni-channel Commerce order payments"));
        assert!(set.is_enabled(Feature::OmniChannelPayments));
        set.set(Feature::OmniChannelCommerceOrderPayments, false).unwrap();
        set.set(Feature::OmniChannelPayments, false).unwrap();
        assert!(!set.is_enabled(Feature::OmniChannelPayments));
    }

    #[test]
    fn unified_pos_experience_overrides_nonrecurring_tokens_with_a_warning() {
        // R-FEA-3
        let mut set = FeatureSet::new(Feature::IncrementalCapture.prerequisites());
        for f in [Feature::IncrementalCapture, Feature::RestrictPaymentTokenUsage, Feature::NonrecurringTokens] {
            set.set(f, true).unwrap();
        }
        assert!(set.nonrecurring_tokens_in_effect());
        assert!(set.conflict_warnings().is_empty());
        set.set(Feature::UnifiedPaymentsExperienceInPos, true).unwrap();
        assert!(!set.nonrecurring_tokens_in_effect());
        let warnings = set.conflict_warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("does not take effect"));
    }

    #[test]
    fn prerequisite_graph_is_acyclic() {
        fn visit(f: Feature, path: &mut Vec<Feature>) {
            assert!(!path.contains(&f), "cycle through {path:?}");
            path.push(f);
            for p in f.prerequisites() {
                visit(p, path);
            }
            path.pop();
        }
        for f in Feature::ALL {
            visit(f, &mut Vec::new());
        }
    }
}
