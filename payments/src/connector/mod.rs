//! The payment connector: what Paystage asks of a payment service provider, shaped like the seeds'
//! payments SDK. Every money-moving request carries a PaymentTrackingId obtained from the connector
//! beforehand ([`Connector::payment_reference`]); a retry reuses it, and an unknown outcome is
//! resolved with [`Connector::query`] rather than by asking again (R-CAP-5).
pub mod adyen;
pub mod configured;
pub mod faults;
pub mod simulator;
pub mod timed;
pub mod unconfigured;

use crate::domain::money::Money;
use crate::domain::order::Command;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// PaymentTransactionReferenceData: the tracking id for one command and amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReference {
    pub tracking_id: String,
    pub command: Command,
    pub amount: Money,
    pub initiated_at: DateTime<Utc>,
}

/// Paystage's name for a payment method variant (Adyen's brand codes: `visa`, `mc`, …).
pub fn card_type(variant: &str) -> &'static str {
    match variant {
        "visa" => "Visa",
        "mc" => "Mastercard",
        "amex" => "American Express",
        "discover" => "Discover",
        "interac" => "Interac",
        "maestro" => "Maestro",
        _ => "Card",
    }
}

/// What the processor's acceptance page hands back: never the card number (R-TOK-1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardToken {
    pub token: String,
    pub payment_method_variant: String,
    pub card_type: String,
    pub last_four: String,
    pub holder: String,
    /// MM/YY
    pub expiry: String,
}

/// Card details as typed on the processor's acceptance page (only the simulator sees these). Its
/// `Debug` never shows the card number (issue #40, R-TOK-1): a stray `{:?}` in a log line cannot
/// leak it.
#[derive(Clone)]
pub struct CardEntry {
    pub number: String,
    pub expiry: String,
    pub holder: String,
}

impl std::fmt::Debug for CardEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.number.chars().filter(char::is_ascii_digit).count();
        f.debug_struct("CardEntry").field("number", &format_args!("<{digits} digits, withheld>")).field("expiry", &self.expiry).field("holder", &self.holder).finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_card_entry_never_shows_its_number() {
        let e = super::CardEntry { number: "4111 1111 1111 1111".into(), expiry: "12/30".into(), holder: "Jamie Rivera".into() };
        let shown = format!("{e:?} {e:#?}");
        assert!(!shown.contains("4111") && !shown.contains("1111"), "{shown}");
        assert!(shown.contains("16 digits, withheld"));
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorized {
    pub reference: String,
    pub amount: Money,
    /// AuthorizationResponseProperties.SupportsMultipleCaptures.
    pub supports_multiple_captures: bool,
    pub payment_method_variant: String,
    pub card_type: String,
    pub last_four: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    pub reference: String,
    pub amount: Money,
    /// The authorization is closed after this capture (fully captured, or no further captures allowed).
    pub authorization_closed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refunded {
    pub reference: String,
    pub amount: Money,
}

/// What the processor knows of a tracking id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Authorized(Authorized),
    Captured(Captured),
    Refunded(Refunded),
    Voided { reference: String },
    Adjusted(Authorized),
    Declined { code: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ConnectorError {
    /// A definitive refusal; nothing moved. Retrying with the same tracking id returns the same.
    #[error("declined by the processor ({code}): {message}")]
    Declined { code: String, message: String },
    /// The request was not processed (the processor said so before doing anything).
    #[error("the processor is unavailable: {0}")]
    Unavailable(String),
    /// No answer in time: the request may or may not have been processed. Ask with `query`.
    #[error("the processor did not answer in time; the outcome is unknown")]
    Timeout,
    #[error("the request is not valid: {0}")]
    Invalid(String),
}

impl ConnectorError {
    pub fn declined(code: &str, message: impl Into<String>) -> Self {
        ConnectorError::Declined { code: code.into(), message: message.into() }
    }
}

pub type ConnectorResult<T> = Result<T, ConnectorError>;

/// One payment service provider, as Paystage uses it.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// GetPaymentReferenceData: a tracking id for `command` and `amount`, obtained before the request.
    async fn payment_reference(&self, command: Command, amount: Money) -> ConnectorResult<PaymentReference>;
    /// The acceptance page's back end: turns card details into a token.
    async fn tokenize(&self, card: CardEntry) -> ConnectorResult<CardToken>;
    /// What the processor holds for `token` (card type, last four, holder, expiry), or None when
    /// it does not know the token. Paystage takes the card's details from here, never from the
    /// browser (issue #40).
    async fn describe_token(&self, token: &str) -> ConnectorResult<Option<CardToken>>;
    /// Authorizes `amount` on `token`, asked as `ask` says (who initiates it, with what kind of
    /// token: the processor's card-on-file rules).
    async fn authorize(&self, tracking_id: &str, token: &str, amount: Money, ask: AuthorizeAsk) -> ConnectorResult<Authorized>;
    /// Captures against an authorization. A `final_capture` releases whatever is left of it (the
    /// legacy path); otherwise the authorization stays open for further captures when it allows them.
    async fn capture(&self, tracking_id: &str, authorization: &str, amount: Money, final_capture: bool) -> ConnectorResult<Captured>;
    async fn refund(&self, tracking_id: &str, capture: &str, amount: Money) -> ConnectorResult<Refunded>;
    async fn void(&self, tracking_id: &str, authorization: &str) -> ConnectorResult<()>;
    /// Asks the processor for a new total on an existing authorization.
    async fn adjust_authorization(&self, tracking_id: &str, authorization: &str, new_amount: Money) -> ConnectorResult<Authorized>;
    /// What happened to the request with this tracking id, if it reached the processor at all.
    async fn query(&self, tracking_id: &str) -> ConnectorResult<Option<Outcome>>;
    /// The processor's own record of what it holds ([`ProcessorLedger`]), when it offers one.
    async fn ledger(&self) -> ConnectorResult<Option<ProcessorLedger>> {
        Ok(None)
    }

    /// The processor's hosted card page for `shopper_reference`, sending the browser back to
    /// `return_url` with the stored card's id; None when this connector has none (then no card
    /// can be taken: Paystage has no card form of its own, R-TOK-1).
    fn card_page(&self, _shopper_reference: &str, _return_url: &str) -> Option<String> {
        None
    }
}

/// What a processor reports holding, by its references: a settlement report, or the simulator's
/// ledger. Paystage's records are checked against it (R-LED-2, `pipeline::invariants`).
/// Who asks for an authorization (R-TOK-1, R-AUT-3): the shopper, when an order is placed or a
/// new payment is taken (the card was just entered on the processor's page, or picked from the
/// cards on file); or the merchant on its own later (the legacy path's authorization of the
/// remainder, a resubmission before expiry), which only a recurring token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    Shopper,
    Merchant,
}

/// How an authorization is asked for: by whom, on what kind of token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthorizeAsk {
    pub initiator: Initiator,
    pub token_kind: crate::domain::tokens::TokenKind,
}

impl AuthorizeAsk {
    /// The ask for payment line `line`'s token, initiated by `initiator` (a line whose token kind
    /// is not known is taken as not recurring).
    pub fn for_line(line: &crate::entity::payment_line::Model, initiator: Initiator) -> AuthorizeAsk {
        let token_kind = crate::domain::tokens::TokenKind::from_code(&line.token_kind).unwrap_or(crate::domain::tokens::TokenKind::Nonrecurring);
        AuthorizeAsk { initiator, token_kind }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessorLedger {
    /// Authorization reference → captured total (minor units).
    pub authorizations: std::collections::BTreeMap<String, i64>,
    /// Capture reference → (amount, refunded).
    pub captures: std::collections::BTreeMap<String, (i64, i64)>,
    /// Refund reference → amount.
    pub refunds: std::collections::BTreeMap<String, i64>,
}


