//! Card tokens by channel (seed 003, R-TOK-1..7): whether a card is tokenized, whether the token
//! is recurring (reusable, card on file) or nonrecurring (this order only), and which consent or
//! acknowledgement the user must confirm first. Pure rules; the order service asks them.
use super::views::ChannelKind;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// What the customer is buying: goods taken now, or an order fulfilled later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderKind {
    /// POS: the customer leaves with the goods; captured at the end, never tokenized (R-TOK-2).
    CashAndCarry,
    /// Shipped or picked up later; the card is authorized now and captured on invoicing.
    CustomerOrder,
}

impl OrderKind {
    pub const ALL: [OrderKind; 2] = [OrderKind::CashAndCarry, OrderKind::CustomerOrder];

    pub fn code(self) -> &'static str {
        match self {
            OrderKind::CashAndCarry => "cash_and_carry",
            OrderKind::CustomerOrder => "customer_order",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            OrderKind::CashAndCarry => "Cash and carry",
            OrderKind::CustomerOrder => "Customer order",
        }
    }
}

/// The token a payment line holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenKind {
    /// The card was not tokenized for later use (cash and carry: captured at once).
    None,
    /// Usable for this order's own authorization and captures only; never re-authorized (R-AUT-3).
    Nonrecurring,
    /// Reusable: card on file, future-order authorization, resubmission.
    Recurring,
}

impl TokenKind {
    pub const ALL: [TokenKind; 3] = [TokenKind::None, TokenKind::Nonrecurring, TokenKind::Recurring];

    pub fn code(self) -> &'static str {
        match self {
            TokenKind::None => "none",
            TokenKind::Nonrecurring => "nonrecurring",
            TokenKind::Recurring => "recurring",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn label(self) -> &'static str {
        match self {
            TokenKind::None => "Not tokenized",
            TokenKind::Nonrecurring => "Nonrecurring",
            TokenKind::Recurring => "Recurring",
        }
    }

    /// Whether a new authorization may be requested with this token after the first one.
    pub fn can_reauthorize(self) -> bool {
        self == TokenKind::Recurring
    }
}

/// What the user must confirm before the card is authorized, with the words shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Confirmation {
    /// R-TOK-3: the customer agrees that the card is saved for this order.
    Consent,
    /// R-TOK-4: future orders (and installments, unlinked refunds) need a recurring token.
    RecurringRequired,
    /// R-TOK-6: the customer agrees that the card is saved on their account.
    CardOnFile,
}

impl Confirmation {
    pub fn code(self) -> &'static str {
        match self {
            Confirmation::Consent => "consent_tokenize_balance",
            Confirmation::RecurringRequired => "recurring_token_required",
            Confirmation::CardOnFile => "card_on_file",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [Confirmation::Consent, Confirmation::RecurringRequired, Confirmation::CardOnFile].into_iter().find(|c| c.code() == code)
    }

    pub fn title(self) -> &'static str {
        match self {
            Confirmation::Consent => "Customer consent required",
            Confirmation::RecurringRequired => "A recurring card token is required",
            Confirmation::CardOnFile => "Save the card on file",
        }
    }

    /// The text shown to the user; stored with the consent as evidence.
    pub fn text(self) -> &'static str {
        match self {
            Confirmation::Consent => {
                "A line of this order ships later than the card can be held without saving it. The card will be saved \
                 (tokenized) for this order only, to authorize and capture the remaining balance. Follow your \
                 organization's compliance procedure and confirm that the customer agrees before you continue."
            }
            Confirmation::RecurringRequired => {
                "This is a future order: it is authorized closer to its ship date, which needs a recurring card token. \
                 A recurring token payment is required; proceed with tokenization only after you acknowledge this and \
                 in line with your company's policy for saving payment tokens."
            }
            Confirmation::CardOnFile => {
                "The card is saved on the customer's account as a card on file, for future orders. Save it only with \
                 the customer's agreement, as your business compliance processes define."
            }
        }
    }
}

/// What the token rules decide for a card payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDecision {
    pub kind: TokenKind,
    /// Must be confirmed (and is recorded) before the authorization.
    pub confirmation: Option<Confirmation>,
    /// The card is saved on the customer's account (R-TOK-6).
    pub save_on_file: bool,
}

/// Everything the token rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenContext {
    pub channel: ChannelKind,
    pub order_kind: OrderKind,
    /// Enable use of nonrecurring tokens in Commerce is on and not overridden by the unified POS
    /// experience (R-FEA-3).
    pub nonrecurring_in_effect: bool,
    /// The latest requested ship date of the order's lines, and today.
    pub latest_ship_date: NaiveDate,
    pub today: NaiveDate,
    /// Payments.MinOrderProcessingDaysForStoringCardToken (R-PAR-4).
    pub min_days_for_storing_token: u32,
    /// Payments.AlwaysStoreCardTokenOnOrderBalanceAuthorization (R-PAR-4).
    pub always_store_token: bool,
    /// The order is a call center future order (R-AUT-1, R-TOK-4).
    pub future_order: bool,
    /// Paid with a card already on file.
    pub saved_card: bool,
    /// "Save payment information" was ticked (only offered when [`card_on_file_offered`]).
    pub save_requested: bool,
}

/// R-TOK-6: "Save payment information" is shown only with Restrict Payment Token usage on and the
/// call center's Allow customer card on file set to Yes.
pub fn card_on_file_offered(restrict_token_usage: bool, allow_card_on_file: bool) -> bool {
    restrict_token_usage && allow_card_on_file
}

/// R-TOK-3: whether the remaining balance of a customer order must be tokenized.
pub fn balance_needs_token(latest_ship_date: NaiveDate, today: NaiveDate, min_days: u32, always_store: bool) -> bool {
    always_store || (latest_ship_date - today).num_days() > i64::from(min_days)
}

/// The token rules of seed 003, in one place.
pub fn decide(c: &TokenContext) -> TokenDecision {
    let plain = |kind| TokenDecision { kind, confirmation: None, save_on_file: false };
    if c.order_kind == OrderKind::CashAndCarry {
        return plain(TokenKind::None); // R-TOK-2
    }
    if c.saved_card {
        return plain(TokenKind::Recurring); // already on file, consent was given when it was saved
    }
    if c.save_requested && c.channel == ChannelKind::CallCenter {
        return TokenDecision { kind: TokenKind::Recurring, confirmation: Some(Confirmation::CardOnFile), save_on_file: true };
    }
    if c.future_order {
        // R-TOK-4: mandated even with nonrecurring tokens on; without the feature every token is
        // recurring anyway, but the user is still told the card is kept for later.
        return TokenDecision { kind: TokenKind::Recurring, confirmation: Some(Confirmation::RecurringRequired), save_on_file: false };
    }
    if !c.nonrecurring_in_effect {
        // Without the feature, payment processing saves recurring tokens, as before (seed 003).
        return plain(TokenKind::Recurring);
    }
    match c.channel {
        ChannelKind::PosStore if balance_needs_token(c.latest_ship_date, c.today, c.min_days_for_storing_token, c.always_store_token) => {
            TokenDecision { kind: TokenKind::Recurring, confirmation: Some(Confirmation::Consent), save_on_file: false }
        }
        // R-TOK-3 within the threshold, R-TOK-6 without saving, R-TOK-7 always.
        _ => plain(TokenKind::Nonrecurring),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    fn pos_order(ship_in_days: u32) -> TokenContext {
        TokenContext {
            channel: ChannelKind::PosStore,
            order_kind: OrderKind::CustomerOrder,
            nonrecurring_in_effect: true,
            latest_ship_date: day(1 + ship_in_days),
            today: day(1),
            min_days_for_storing_token: 7,
            always_store_token: false,
            future_order: false,
            saved_card: false,
            save_requested: false,
        }
    }

    #[test]
    fn pos_customer_order_needs_consent_only_beyond_the_threshold() {
        // R-TOK-3: 7 days is within the default threshold; 8 days is beyond it.
        assert_eq!(decide(&pos_order(3)), TokenDecision { kind: TokenKind::Nonrecurring, confirmation: None, save_on_file: false });
        assert_eq!(decide(&pos_order(7)).confirmation, None);
        let d = decide(&pos_order(10));
        assert_eq!((d.kind, d.confirmation), (TokenKind::Recurring, Some(Confirmation::Consent)));
        let mut c = pos_order(10);
        c.min_days_for_storing_token = 14;
        assert_eq!(decide(&c).confirmation, None, "a larger threshold takes the ship date inside it");
    }

    #[test]
    fn always_store_tokenizes_every_balance_with_consent() {
        // R-TOK-3 with AlwaysStoreCardTokenOnOrderBalanceAuthorization on.
        let mut c = pos_order(0);
        c.always_store_token = true;
        assert_eq!(decide(&c).confirmation, Some(Confirmation::Consent));
    }

    #[test]
    fn cash_and_carry_is_never_tokenized() {
        // R-TOK-2, whatever the dates and settings.
        let mut c = pos_order(30);
        c.order_kind = OrderKind::CashAndCarry;
        c.always_store_token = true;
        assert_eq!(decide(&c), TokenDecision { kind: TokenKind::None, confirmation: None, save_on_file: false });
    }

    #[test]
    fn without_the_feature_tokens_are_recurring_and_no_dialog_is_shown() {
        let mut c = pos_order(30);
        c.nonrecurring_in_effect = false;
        assert_eq!(decide(&c), TokenDecision { kind: TokenKind::Recurring, confirmation: None, save_on_file: false });
    }

    #[test]
    fn future_orders_require_a_recurring_token_with_acknowledgement() {
        // R-TOK-4.
        let mut c = pos_order(0);
        c.channel = ChannelKind::CallCenter;
        c.future_order = true;
        let d = decide(&c);
        assert_eq!((d.kind, d.confirmation), (TokenKind::Recurring, Some(Confirmation::RecurringRequired)));
    }

    #[test]
    fn call_center_saves_on_file_only_when_asked_and_online_never() {
        // R-TOK-6, R-TOK-7.
        let mut c = pos_order(30);
        c.channel = ChannelKind::CallCenter;
        assert_eq!(decide(&c).kind, TokenKind::Nonrecurring);
        c.save_requested = true;
        assert_eq!(decide(&c), TokenDecision { kind: TokenKind::Recurring, confirmation: Some(Confirmation::CardOnFile), save_on_file: true });
        c.channel = ChannelKind::OnlineStore;
        assert_eq!(decide(&c).kind, TokenKind::Nonrecurring, "the storefront saves nothing in Paystage");
        c.saved_card = true;
        c.channel = ChannelKind::CallCenter;
        assert_eq!(decide(&c), TokenDecision { kind: TokenKind::Recurring, confirmation: None, save_on_file: false });
    }

    #[test]
    fn the_checkbox_needs_both_settings() {
        assert!(card_on_file_offered(true, true));
        assert!(!card_on_file_offered(true, false));
        assert!(!card_on_file_offered(false, true));
    }

    #[test]
    fn only_recurring_tokens_are_reauthorized() {
        assert!(TokenKind::Recurring.can_reauthorize());
        assert!(!TokenKind::Nonrecurring.can_reauthorize());
        assert!(!TokenKind::None.can_reauthorize());
        for k in TokenKind::ALL {
            assert_eq!(TokenKind::from_code(k.code()), Some(k));
        }
    }
}
