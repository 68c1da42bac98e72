//! Read models of the order and payment pages: plain data, serializable, compiled into the wasm too.
use super::money::Money;
use super::order::{AuthorizationStatus, OrderStatus, PaymentStatus, Tender};

use super::pipeline::{ProcessStatus, Stage, StageStatus};
use super::tokens::TokenKind;
use super::views::ChannelKind;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRow {
    pub id: i32,
    pub number: String,
    pub customer_account: String,
    pub customer_name: String,
    pub channel_id: i32,
    pub channel_name: String,
    pub channel_kind: ChannelKind,
    pub status: OrderStatus,
    pub total: Money,
    pub invoiced: Money,
    pub do_not_process: bool,
    pub created_at: DateTime<Utc>,
    /// When it was taken, in its channel's time zone (`2026-12-07 13:58 CST`).
    pub taken_local: String,
    /// Invoices of this order whose payment process is incomplete.
    pub incomplete: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFilter {
    pub status: Option<String>,
    pub customer: Option<String>,
    pub channel: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPage {
    pub rows: Vec<OrderRow>,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineView {
    pub id: i32,
    pub line_no: i32,
    pub item: String,
    pub quantity: i32,
    pub invoiced_quantity: i32,
    /// Of the invoiced quantity, how much credit notes have credited (returned).
    pub credited_quantity: i32,
    pub unit_price: Money,
    pub requested_ship_date: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLineView {
    pub id: i32,
    pub tender: Tender,
    pub amount: Money,
    pub status: PaymentStatus,
    /// "Visa •••• 1111 · J. Doe · 12/28" for cards.
    pub card: Option<String>,
    pub token_kind: TokenKind,
    /// A deposit line (R-PRE-2).
    pub prepayment: bool,
    /// Given back of a cash or customer-account line.
    pub refunded: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureView {
    pub id: i32,
    pub amount: Money,
    pub refunded: Money,
    pub invoice_number: Option<String>,
    pub captured_at: DateTime<Utc>,
    pub processor_reference: String,
    pub tracking_id: String,
    /// The processor's reason, once it reported after answering that the capture failed
    /// (CAPTURE_FAILED): its money did not move and a reversing journal was posted.
    pub failed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationView {
    pub id: i32,
    pub amount: Money,
    pub captured: Money,
    pub status: AuthorizationStatus,
    pub supports_multiple_captures: bool,
    pub payment_method_variant: String,
    pub card_type: String,
    pub last_four: String,
    pub authorized_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub expired: bool,
    pub processor_reference: String,
    pub replaces: Option<i32>,
    /// One authorization with many captures for incremental orders (R-CAP-6).
    pub captures: Vec<CaptureView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSummary {
    pub id: i32,
    pub status: ProcessStatus,
    pub monitored: bool,
    pub failed_stage: Option<Stage>,
    pub last_error: Option<String>,
    pub capture_path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceView {
    pub id: i32,
    pub number: String,
    pub amount: Money,
    pub posted_at: DateTime<Utc>,
    pub process: Option<ProcessSummary>,
    /// The processor reported its card capture failed after accepting it (issue #42): the
    /// payment was reversed and the invoice is open again.
    pub capture_failed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLineView {
    pub account: String,
    pub debit: Money,
    pub credit: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalView {
    pub id: i32,
    pub number: String,
    pub kind_label: String,
    pub description: String,
    pub posted_at: DateTime<Utc>,
    /// The Prepayment journal voucher flag (R-PRE-1/2).
    pub prepayment: bool,
    pub order_id: Option<i32>,
    pub order_number: Option<String>,
    /// Account and name of the customer.
    pub customer: Option<String>,
    pub tender: Option<Tender>,
    pub lines: Vec<JournalLineView>,
}

/// Filters of the Journals page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalFilter {
    /// Sales order number (exact, or its digits).
    pub order: Option<String>,
    /// Customer account or name (contains).
    pub customer: Option<String>,
    /// A journal kind code.
    pub kind: Option<String>,
    /// Posted on or after (YYYY-MM-DD).
    pub from: Option<String>,
    /// Posted on or before (YYYY-MM-DD).
    pub to: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPage {
    pub rows: Vec<JournalView>,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

/// One invoice with a receivable left open (Open customer invoices, seed 000's entry point).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInvoiceRow {
    pub invoice_id: i32,
    pub number: String,
    pub kind: super::order::DocumentKind,
    pub order_id: i32,
    pub order_number: String,
    pub customer_account: String,
    pub customer_name: String,
    pub posted_at: DateTime<Utc>,
    pub amount: Money,
    /// What its receivable still holds: debits less credits to Accounts receivable of the
    /// journals posted for it (negative: owed to the customer).
    pub open: Money,
    /// Its card payment process's status; None when it has none.
    pub card_status: Option<ProcessStatus>,
    /// That process, whose page shows its stages and, once terminated, settles the receivable.
    pub process_id: Option<i32>,
    /// Paid by card (its order has a card payment line): "Incomplete cards payment" is offered.
    pub card_related: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInvoicePage {
    pub rows: Vec<OpenInvoiceRow>,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

/// A deposit line and what it paid (R-PRE-2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositPaid {
    pub payment_line_id: i32,
    pub tender: Tender,
    pub paid: Money,
    pub refunded: Money,
}

/// The prepayment of an order as the order page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepaymentView {
    pub deposit: Money,
    pub paid: Vec<DepositPaid>,
    pub paid_total: Money,
    /// Applied to invoices (settlement journals).
    pub applied: Money,
    pub unapplied: Money,
    /// Still to pay on pickup or delivery: what is left to invoice less the unapplied deposit.
    pub due_at_pickup: Money,
    /// What the order's open card authorizations can still capture.
    pub card_authorized: Money,
    pub cancellation_charge: Option<Money>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// What cancelling an order will do, shown before the user confirms (R-PRE-4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationPreview {
    pub order_id: i32,
    pub order_number: String,
    pub customer: String,
    pub percent: String,
    pub paid: Money,
    pub charge: Money,
    pub refund_total: Money,
    /// Per deposit line: tender and the amount given back.
    pub refunds: Vec<(Tender, Money)>,
    /// Left on open card authorizations, released (voided) on cancel.
    pub release: Money,
    /// The journals the cancellation posts: kind label, lines.
    pub journals: Vec<(String, Vec<JournalLineView>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetail {
    pub order: OrderRow,
    pub tax_percent: String,
    pub charges: Money,
    /// What is left to invoice (lines not yet invoiced, charges if not yet invoiced, their tax).
    pub balance: Money,
    pub lines: Vec<OrderLineView>,
    pub payments: Vec<PaymentLineView>,
    pub authorizations: Vec<AuthorizationView>,
    pub invoices: Vec<InvoiceView>,
    pub journals: Vec<JournalView>,
    /// For an order paid in advance (R-PRE-2/3).
    pub prepayment: Option<PrepaymentView>,
    /// Why the order cannot be cancelled now, if it cannot.
    pub cancel_refusal: Option<String>,
}

/// One line of the Incomplete cards payment page (R-PIP-5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteRow {
    pub process_id: i32,
    pub invoice_id: i32,
    pub invoice_number: String,
    pub order_id: i32,
    pub order_number: String,
    pub customer: String,
    pub amount: Money,
    pub failed_stage: Option<Stage>,
    pub reason: Option<String>,
    pub attempts: i32,
    pub last_attempt: Option<DateTime<Utc>>,
    /// False when it was invoiced with status monitoring off (one step).
    pub monitored: bool,
    /// A termination waiting for a second finance user: who asked, and why.
    pub termination_requested_by: Option<String>,
    pub termination_request_reason: Option<String>,
    /// What terminating it would leave (filled by the page's server function).
    pub preview: Option<crate::domain::settlement::TerminatePreview>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: DateTime<Utc>,
    pub attempt: i32,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageHistory {
    pub stage: Stage,
    pub status: StageStatus,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub log: Vec<LogEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHistory {
    pub process_id: i32,
    pub invoice_number: String,
    pub order_id: i32,
    pub order_number: String,
    pub status: ProcessStatus,
    pub capture_path: Option<String>,
    pub capture_kind: Option<super::capture::CaptureKind>,
    pub terminated_reason: Option<String>,
    pub stages: Vec<StageHistory>,
}

/// What invoicing did, for the page that asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceOutcome {
    pub kind: super::order::DocumentKind,
    pub invoice_id: i32,
    pub invoice_number: String,
    pub amount: Money,
    pub process_id: i32,
    pub status: ProcessStatus,
    pub error: Option<String>,
}

/// What placing an order did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub order_id: i32,
    pub number: String,
    pub payment_status: PaymentStatus,
    /// Why the payment is not authorized, when it is not.
    pub message: Option<String>,
}

/// The authorization behind a payment line, as Authorization management shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationResponseView {
    pub id: i32,
    pub status: AuthorizationStatus,
    pub amount: Money,
    pub captured: Money,
    pub processor_reference: String,
    pub tracking_id: String,
    pub supports_multiple_captures: bool,
    pub payment_method_variant: String,
    pub authorized_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Expired by status or by date (R-AUT-3).
    pub expired: bool,
}

/// One payment line on the Authorization management page (R-AUT-5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRow {
    pub payment_line_id: i32,
    pub order_id: i32,
    pub order_number: String,
    pub order_status: OrderStatus,
    pub do_not_process: bool,
    pub customer_account: String,
    pub customer_name: String,
    pub channel_id: i32,
    pub channel_name: String,
    pub amount: Money,
    pub payment_status: PaymentStatus,
    pub token_kind: TokenKind,
    /// "Visa •••• 1111".
    pub card: String,
    /// The line's latest authorization, if it was ever authorized.
    pub authorization: Option<AuthorizationResponseView>,
}

/// The processor's card page for a new payment of order `order_id`, taken on the connector its
/// channel `channel_id` pays through.
pub fn new_payment_link(order_id: i32, channel_id: i32) -> String {
    format!("/processor/acceptance?return=/orders/{order_id}/payment&channel={channel_id}")
}

impl AuthorizationRow {
    pub fn expired(&self) -> bool {
        self.authorization.as_ref().is_some_and(|a| a.expired)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationPage {
    pub rows: Vec<AuthorizationRow>,
    pub page: u64,
    pub pages: u64,
    pub total: u64,
}

/// A recorded consent or acknowledgement (R-TOK-3/4/6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    pub kind: String,
    pub text_shown: String,
    pub given_by: String,
    pub given_at: DateTime<Utc>,
}

/// The detail of one payment line on Authorization management (R-AUT-5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationDetail {
    pub row: AuthorizationRow,
    pub holder: String,
    pub expiry: String,
    /// Every authorization of the line, newest first.
    pub responses: Vec<AuthorizationResponseView>,
    /// Pre-authorization duration of the store for this payment type, and the AR fallback (R-AUT-3).
    pub pre_authorization_days: Option<u32>,
    pub ar_days_before_expired: u32,
    pub consents: Vec<ConsentView>,
    /// What is left to invoice on the order.
    pub balance: Money,
    /// Why the expired line cannot be voided by hand, or None when it can (R-AUT-5).
    pub void_refusal: Option<String>,
}

/// Where card payments stand, counted for the overview (finance users): each figure is a queue
/// someone has to work, and links to the page that works it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentStanding {
    /// Invoice payment processes waiting on Incomplete cards payment (R-PIP-5).
    pub incomplete_processes: u64,
    /// Card payment lines in Pending Authorization (R-AUT-4): a new payment is needed.
    pub pending_authorization: u64,
    /// Orders on hold (Do not process).
    pub orders_on_hold: u64,
    /// Open authorizations that expire within [`PaymentStanding::EXPIRING_DAYS`] days.
    pub expiring_soon: u64,
}

impl PaymentStanding {
    pub const EXPIRING_DAYS: i64 = 7;
}
