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
    pub channel_name: String,
    pub channel_kind: ChannelKind,
    pub status: OrderStatus,
    pub total: Money,
    pub invoiced: Money,
    pub do_not_process: bool,
    pub created_at: DateTime<Utc>,
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
    pub prepayment: bool,
    pub lines: Vec<JournalLineView>,
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
    pub terminated_reason: Option<String>,
    pub stages: Vec<StageHistory>,
}

/// What invoicing did, for the page that asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceOutcome {
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
    pub channel_name: String,
    pub amount: Money,
    pub payment_status: PaymentStatus,
    pub token_kind: TokenKind,
    /// "Visa •••• 1111".
    pub card: String,
    /// The line's latest authorization, if it was ever authorized.
    pub authorization: Option<AuthorizationResponseView>,
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
