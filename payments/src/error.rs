//! Errors of the services, with stable codes and messages a finance user understands.
//!
//! Each use case has its own refusal type ([`InvoicingError`], [`ProcessError`], [`ProcessorError`],
//! [`AuthorizationError`], [`CancellationError`], [`PrepaymentError`], [`SetupError`]); the service
//! error wraps them. Every variant has a code (`PS_…`) that clients and logs may match on: codes are
//! never reused for another meaning and never change, while the wording may improve.
use crate::domain::features::FeatureToggleError;
use crate::domain::money::MoneyError;
use crate::domain::order::JournalError;
use crate::domain::parameters::FieldError;
use sea_orm::DbErr;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// One or more fields of a submission are invalid; nothing was changed.
    #[error("{}", summary(.0))]
    Validation(Vec<FieldError>),
    #[error(transparent)]
    Feature(#[from] FeatureToggleError),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Invoicing(#[from] InvoicingError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Authorization(#[from] AuthorizationError),
    #[error(transparent)]
    Cancellation(#[from] CancellationError),
    #[error(transparent)]
    Prepayment(#[from] PrepaymentError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// An amount left the range Paystage computes in (R-MON-4); nothing was written.
    #[error("{what} cannot be computed: {source}.")]
    Amount { what: &'static str, source: MoneyError },
    /// A journal that would not balance was refused (R-LED-1); nothing was posted.
    #[error("The journal was not posted: {0}.")]
    Journal(#[from] JournalError),
    /// The user must confirm this (consent, acknowledgement) before the request can go ahead;
    /// nothing was written.
    #[error("{}: {}", .0.title(), .0.text())]
    ConfirmationRequired(crate::domain::tokens::Confirmation),
    #[error("The database could not complete the request: {0}")]
    Database(#[from] DbErr),
    /// Another runner (recovery, another server) recorded this processor request's outcome while
    /// this one waited for the processor: this answer was not applied, and nothing was changed by it.
    #[error("The outcome of processor request {0} was already recorded by another runner; nothing was changed twice. Reload to see where it stands.")]
    AlreadyRecorded(String),
    /// A stored value Paystage cannot read (an unknown currency code, a tax rate that is not a
    /// number): nothing was done with it, and it needs an administrator.
    #[error("Stored data cannot be read: {0}")]
    StoredData(String),
    /// A step Paystage itself runs broke an expectation (a worker stopped, a statement returned
    /// no row). What was committed stays committed; recovery finishes what was started.
    #[error("An internal step failed: {0}")]
    Internal(String),
}

impl From<crate::domain::money::UnknownCurrency> for ServiceError {
    fn from(e: crate::domain::money::UnknownCurrency) -> Self {
        ServiceError::StoredData(e.to_string())
    }
}

fn summary(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.message.clone(),
        many => format!("{} fields are not valid; nothing was saved.", many.len()),
    }
}

impl ServiceError {
    /// Stable code, safe to match on in clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Validation(_) => "PS_VALIDATION",
            ServiceError::Feature(FeatureToggleError::MissingPrerequisites { .. }) => "PS_FEATURE_PREREQUISITES",
            ServiceError::Feature(FeatureToggleError::RequiredBy { .. }) => "PS_FEATURE_REQUIRED_BY",
            ServiceError::NotFound(_) => "PS_NOT_FOUND",
            ServiceError::Invoicing(e) => e.code(),
            ServiceError::Process(e) => e.code(),
            ServiceError::Processor(e) => e.code(),
            ServiceError::Authorization(e) => e.code(),
            ServiceError::Cancellation(e) => e.code(),
            ServiceError::Prepayment(e) => e.code(),
            ServiceError::Setup(e) => e.code(),
            ServiceError::Amount { .. } => "PS_AMOUNT_RANGE",
            ServiceError::Journal(_) => "PS_JOURNAL_UNBALANCED",
            ServiceError::ConfirmationRequired(_) => "PS_CONFIRMATION_REQUIRED",
            ServiceError::Database(_) => "PS_DATABASE",
            ServiceError::StoredData(_) => "PS_STORED_DATA",
            ServiceError::AlreadyRecorded(_) => "PS_ALREADY_RECORDED",
            ServiceError::Internal(_) => "PS_INTERNAL",
        }
    }

    /// A business rule refused the request and nothing changed: the user can act on the message.
    /// (The other errors are invalid input, missing records, or failures of Paystage itself.)
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ServiceError::Feature(_)
                | ServiceError::Invoicing(_)
                | ServiceError::Process(_)
                | ServiceError::Processor(_)
                | ServiceError::Authorization(_)
                | ServiceError::Cancellation(_)
                | ServiceError::Prepayment(_)
                | ServiceError::Setup(_)
                | ServiceError::Amount { .. }
                | ServiceError::Journal(_)
                | ServiceError::AlreadyRecorded(_)
        )
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(what: impl fmt::Display) -> Self {
        ServiceError::Internal(what.to_string())
    }

    /// A unique index refusing an insert (two saves of the same code at once, the later one
    /// refused by the database after both checked) as a message on `field`; any other error as is.
    pub fn unique_as_field(e: DbErr, field: &str, message: impl Into<String>) -> Self {
        match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => ServiceError::field(field, message),
            _ => e.into(),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Invoicing or crediting an order: stage 1 of the payment process (R-INV-*, R-PIP-1, R-PIP-6).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvoicingError {
    #[error("{order} is on hold (Do not process); take a new payment first.")]
    OrderOnHold { order: String },
    #[error("{order} was cancelled; nothing can be invoiced or credited.")]
    OrderCancelled { order: String },
    #[error("The card payment of {invoice} is incomplete: resume or terminate it on Incomplete cards payment before invoicing {order} again.")]
    PaymentIncomplete { invoice: String, order: String },
    #[error("The card payment of {invoice} is still being processed; invoice {order} again in a moment.")]
    PaymentRunning { invoice: String, order: String },
    #[error("The order was invoiced by someone else at the same time; reload and try again.")]
    ConcurrentInvoicing,
    /// Monitoring is off and the card certainly was not charged: the invoicing was taken back.
    #[error("The card was not charged ({reason}). Nothing is invoiced: {invoice} was reversed. Invoice again once the payment is sorted out.")]
    NotCharged { reason: String, invoice: String },
    #[error("{invoice} could not be taken back: its lines changed meanwhile.")]
    NotTakenBack { invoice: String },
    #[error("Invoicing stopped unexpectedly; look for the invoice on the order before invoicing again.")]
    Stopped,
    #[error("Invoicing stopped unexpectedly; the payment process is finished by recovery.")]
    StoppedAfterPosting,
    #[error("Posting the invoice failed ({reason}); look for it on the order before invoicing again.")]
    PostingFailed { reason: String },
}

impl InvoicingError {
    pub fn code(&self) -> &'static str {
        match self {
            InvoicingError::OrderOnHold { .. } => "PS_ORDER_ON_HOLD",
            InvoicingError::OrderCancelled { .. } => "PS_ORDER_CANCELLED",
            InvoicingError::PaymentIncomplete { .. } => "PS_PAYMENT_INCOMPLETE",
            InvoicingError::PaymentRunning { .. } => "PS_PAYMENT_RUNNING",
            InvoicingError::ConcurrentInvoicing => "PS_CONCURRENT_INVOICING",
            InvoicingError::NotCharged { .. } => "PS_CARD_NOT_CHARGED",
            InvoicingError::NotTakenBack { .. } => "PS_INVOICE_NOT_TAKEN_BACK",
            InvoicingError::Stopped => "PS_INVOICING_STOPPED",
            InvoicingError::StoppedAfterPosting => "PS_INVOICING_STOPPED_AFTER_POSTING",
            InvoicingError::PostingFailed { .. } => "PS_POSTING_FAILED",
        }
    }
}

/// Resuming or terminating a payment process by hand (R-PIP-4, R-PIP-5).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("Only an incomplete payment can be resumed; this one is {status}.")]
    ResumeNotIncomplete { status: String },
    #[error("Only an incomplete payment can be terminated; this one is {status}.")]
    TerminateNotIncomplete { status: String },
    #[error("Only a terminated payment's receivable is settled by hand; this one is {status}.")]
    SettleNotTerminated { status: String },
    #[error("Nothing is open on the receivable of {invoice}: it is settled.")]
    NothingToSettle { invoice: String },
    #[error("{by} has asked to terminate this payment; another finance user approves it.")]
    TerminationPending { by: String },
    #[error("You asked to terminate this payment; a second finance user must approve it.")]
    SecondApproverNeeded,
    #[error("No termination of this payment waits for approval.")]
    NoTerminationRequest,
}

impl ProcessError {
    pub fn code(&self) -> &'static str {
        match self {
            ProcessError::ResumeNotIncomplete { .. } | ProcessError::TerminateNotIncomplete { .. } => "PS_PROCESS_NOT_INCOMPLETE",
            ProcessError::SettleNotTerminated { .. } => "PS_PROCESS_NOT_TERMINATED",
            ProcessError::NothingToSettle { .. } => "PS_NOTHING_TO_SETTLE",
            ProcessError::TerminationPending { .. } => "PS_TERMINATION_PENDING",
            ProcessError::SecondApproverNeeded => "PS_SECOND_APPROVER_NEEDED",
            ProcessError::NoTerminationRequest => "PS_NO_TERMINATION_REQUEST",
        }
    }
}

/// A request Paystage sends to the payment processor outside the invoicing pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessorAction {
    CardCheck,
    Authorization,
    Void,
    Adjustment,
    DepositCapture,
    DepositRefund,
}

impl ProcessorAction {
    fn noun(self) -> &'static str {
        match self {
            ProcessorAction::CardCheck => "card check",
            ProcessorAction::Authorization => "authorization",
            ProcessorAction::Void => "void",
            ProcessorAction::Adjustment => "adjustment",
            ProcessorAction::DepositCapture => "deposit capture",
            ProcessorAction::DepositRefund => "deposit refund",
        }
    }

    /// What the request would have done, for "nothing was …".
    fn done(self) -> &'static str {
        match self {
            ProcessorAction::CardCheck => "saved",
            ProcessorAction::Authorization => "authorized",
            ProcessorAction::Void => "voided",
            ProcessorAction::Adjustment => "adjusted",
            ProcessorAction::DepositCapture => "captured",
            ProcessorAction::DepositRefund => "refunded",
        }
    }
}

impl fmt::Display for ProcessorAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// What the processor answered, or failed to answer, to a request sent by a use case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessorError {
    /// The request was never sent (no tracking id, or its intent could not be recorded).
    #[error("The {action} could not be started: {reason}")]
    NotStarted { action: ProcessorAction, reason: String },
    /// A definitive refusal, recorded with the processor's reason.
    #[error("The processor refused the {action}: {message}")]
    Refused { action: ProcessorAction, message: String },
    #[error("The processor gave an unexpected answer; nothing was {}.", .action.done())]
    UnexpectedAnswer { action: ProcessorAction },
    /// The processor said it did not process the request; sending it again is safe.
    #[error("The {action} did not go through: {message}. Try again.")]
    NotProcessed { action: ProcessorAction, message: String },
    /// No answer: the processor may have done it. Recovery asks it; never send it again blindly.
    #[error("The outcome of the {action} is not known yet ({message}); Paystage asks the processor again, so look again before trying again.")]
    OutcomeUnknown { action: ProcessorAction, message: String },
    #[error("The payment processor could not confirm the card right now ({reason}); nothing was saved. Try again in a moment.")]
    CardNotConfirmed { reason: String },
}

impl ProcessorError {
    pub fn code(&self) -> &'static str {
        match self {
            ProcessorError::NotStarted { .. } => "PS_PROCESSOR_NOT_STARTED",
            ProcessorError::Refused { .. } => "PS_PROCESSOR_REFUSED",
            ProcessorError::UnexpectedAnswer { .. } => "PS_PROCESSOR_UNEXPECTED_ANSWER",
            ProcessorError::NotProcessed { .. } => "PS_PROCESSOR_NOT_PROCESSED",
            ProcessorError::OutcomeUnknown { .. } => "PS_PROCESSOR_OUTCOME_UNKNOWN",
            ProcessorError::CardNotConfirmed { .. } => "PS_CARD_NOT_CONFIRMED",
        }
    }

    /// The processor gave its final word on the request, and it was recorded.
    pub fn is_final_answer(&self) -> bool {
        matches!(self, ProcessorError::Refused { .. } | ProcessorError::UnexpectedAnswer { .. } | ProcessorError::NotProcessed { .. })
    }
}

/// Taking, adjusting and voiding card authorizations (R-AUT-*).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("{order} needs no new payment: open authorizations cover everything left to invoice.")]
    NothingToCover { order: String },
    /// Why this authorization may not be voided by hand (R-AUT-5), as the page shows it.
    #[error("{0}")]
    VoidNotAllowed(String),
    #[error("Only an authorized payment line with an open, unexpired authorization can be adjusted; take a new payment instead.")]
    NotAdjustable,
    /// Authorization exposure: the order's holds do not exceed what it still has to charge.
    #[error("The authorizations of {order} hold no more than it still has to charge; there is nothing to release.")]
    NoExcess { order: String },
    /// Authorization exposure: a payment of the order is under way, so what it needs is not known.
    #[error("Nothing of {order} is released while its payment is not settled: {why}")]
    ExposureWaiting { order: String, why: String },
    /// Authorization exposure: a hold changed between the page and the release.
    #[error("The authorizations of {order} changed meanwhile; look at the page again.")]
    ExposureChanged { order: String },
    /// Authorization exposure: a release step was refused after others were done.
    #[error("{done}. Then: {error}")]
    ReleasedPartly { done: String, error: String },
}

impl AuthorizationError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthorizationError::NothingToCover { .. } => "PS_NO_PAYMENT_NEEDED",
            AuthorizationError::VoidNotAllowed(_) => "PS_VOID_NOT_ALLOWED",
            AuthorizationError::NotAdjustable => "PS_NOT_ADJUSTABLE",
            AuthorizationError::NoExcess { .. } => "PS_NO_EXCESS_HELD",
            AuthorizationError::ExposureWaiting { .. } => "PS_PAYMENT_NOT_SETTLED",
            AuthorizationError::ReleasedPartly { .. } => "PS_RELEASED_PARTLY",
            AuthorizationError::ExposureChanged { .. } => "PS_EXPOSURE_CHANGED",
        }
    }
}

/// Cancelling an order (R-PRE-4).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CancellationError {
    /// Why this order may not be cancelled, as the page shows it.
    #[error("{0}")]
    NotAllowed(String),
    #[error("The cancellation charge is now {charge} (the Commerce parameters changed); look at the preview again.")]
    ChargeChanged { charge: String },
}

impl CancellationError {
    pub fn code(&self) -> &'static str {
        match self {
            CancellationError::NotAllowed(_) => "PS_CANCEL_NOT_ALLOWED",
            CancellationError::ChargeChanged { .. } => "PS_CANCEL_CHARGE_CHANGED",
        }
    }
}

/// Prepayment orders: deposits and pickup (R-PRE-*).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrepaymentError {
    #[error("{order} is not a prepayment order; invoice it instead.")]
    NotPrepayment { order: String },
    #[error("{order} was cancelled.")]
    OrderCancelled { order: String },
    #[error("{order} has nothing left to pick up.")]
    NothingToPickUp { order: String },
    #[error("The deposit's journal was already posted.")]
    DepositAlreadyPosted,
}

impl PrepaymentError {
    pub fn code(&self) -> &'static str {
        match self {
            PrepaymentError::NotPrepayment { .. } => "PS_NOT_PREPAYMENT",
            PrepaymentError::OrderCancelled { .. } => "PS_ORDER_CANCELLED",
            PrepaymentError::NothingToPickUp { .. } => "PS_NOTHING_TO_PICK_UP",
            PrepaymentError::DepositAlreadyPosted => "PS_DEPOSIT_ALREADY_POSTED",
        }
    }
}

/// What an administrator has to set up first, or may not do to their own account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("No default payment connector is configured (Payment connectors page).")]
    NoDefaultConnector,
    #[error("The web shop is closed: no online store channel is open.")]
    WebShopClosed,
    #[error("You cannot disable your own account.")]
    DisableOwnAccount,
    #[error("This process does not read the processor sandbox's books: only a caller that started the sandbox itself does (the tests, paystage chaos).")]
    NoSimulator,
}

impl SetupError {
    pub fn code(&self) -> &'static str {
        match self {
            SetupError::NoDefaultConnector => "PS_NO_DEFAULT_CONNECTOR",
            SetupError::WebShopClosed => "PS_WEB_SHOP_CLOSED",
            SetupError::DisableOwnAccount => "PS_OWN_ACCOUNT",
            SetupError::NoSimulator => "PS_NO_SIMULATOR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every refusal, so a new variant without a code of its own shows up here.
    fn every_refusal() -> Vec<ServiceError> {
        let s = || String::from("x");
        let a = ProcessorAction::Void;
        let mut all: Vec<ServiceError> = vec![
            InvoicingError::OrderOnHold { order: s() }.into(),
            InvoicingError::OrderCancelled { order: s() }.into(),
            InvoicingError::PaymentIncomplete { invoice: s(), order: s() }.into(),
            InvoicingError::PaymentRunning { invoice: s(), order: s() }.into(),
            InvoicingError::ConcurrentInvoicing.into(),
            InvoicingError::NotCharged { reason: s(), invoice: s() }.into(),
            InvoicingError::NotTakenBack { invoice: s() }.into(),
            InvoicingError::Stopped.into(),
            InvoicingError::StoppedAfterPosting.into(),
            InvoicingError::PostingFailed { reason: s() }.into(),
            ProcessError::ResumeNotIncomplete { status: s() }.into(),
            ProcessError::TerminateNotIncomplete { status: s() }.into(),
            ProcessError::SettleNotTerminated { status: s() }.into(),
            ProcessError::NothingToSettle { invoice: s() }.into(),
            ProcessError::TerminationPending { by: s() }.into(),
            ProcessError::SecondApproverNeeded.into(),
            ProcessError::NoTerminationRequest.into(),
            ProcessorError::NotStarted { action: a, reason: s() }.into(),
            ProcessorError::Refused { action: a, message: s() }.into(),
            ProcessorError::UnexpectedAnswer { action: a }.into(),
            ProcessorError::NotProcessed { action: a, message: s() }.into(),
            ProcessorError::OutcomeUnknown { action: a, message: s() }.into(),
            ProcessorError::CardNotConfirmed { reason: s() }.into(),
            AuthorizationError::NothingToCover { order: s() }.into(),
            AuthorizationError::VoidNotAllowed(s()).into(),
            AuthorizationError::NotAdjustable.into(),
            AuthorizationError::NoExcess { order: s() }.into(),
            AuthorizationError::ExposureWaiting { order: s(), why: s() }.into(),
            AuthorizationError::ReleasedPartly { done: s(), error: s() }.into(),
            AuthorizationError::ExposureChanged { order: s() }.into(),
            CancellationError::NotAllowed(s()).into(),
            CancellationError::ChargeChanged { charge: s() }.into(),
            PrepaymentError::NotPrepayment { order: s() }.into(),
            PrepaymentError::OrderCancelled { order: s() }.into(),
            PrepaymentError::NothingToPickUp { order: s() }.into(),
            PrepaymentError::DepositAlreadyPosted.into(),
            SetupError::NoDefaultConnector.into(),
            SetupError::WebShopClosed.into(),
            SetupError::DisableOwnAccount.into(),
            SetupError::NoSimulator.into(),
            ServiceError::Amount { what: "The order total", source: MoneyError::Overflow },
            ServiceError::Journal(JournalError::TooFewLines),
        ];
        all.push(ServiceError::AlreadyRecorded(s()));
        all
    }

    #[test]
    fn refusals_have_codes_of_their_own() {
        // Codes shared on purpose: the same fact refused by two use cases.
        let shared = ["PS_ORDER_CANCELLED", "PS_PROCESS_NOT_INCOMPLETE"];
        let mut seen = std::collections::HashMap::new();
        for e in every_refusal() {
            let code = e.code();
            assert!(e.is_refusal(), "{code} is a refusal");
            assert!(code.starts_with("PS_") && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{code}");
            assert!(!e.to_string().is_empty() && !e.to_string().contains("{"), "{code}: {e}");
            let count = seen.entry(code).or_insert(0);
            *count += 1;
            assert!(*count == 1 || shared.contains(&code), "{code} names two different refusals");
        }
        for failure in [ServiceError::Internal("x".into()), ServiceError::StoredData("x".into()), ServiceError::NotFound("x".into())] {
            assert!(!failure.is_refusal(), "{failure}");
        }
    }

    #[test]
    fn processor_messages_name_the_action() {
        let e = ProcessorError::UnexpectedAnswer { action: ProcessorAction::Adjustment };
        assert_eq!(e.to_string(), "The processor gave an unexpected answer; nothing was adjusted.");
        let e = ProcessorError::NotProcessed { action: ProcessorAction::Void, message: "busy".into() };
        assert_eq!(e.to_string(), "The void did not go through: busy. Try again.");
    }
}
