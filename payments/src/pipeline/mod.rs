//! The invoice payment pipeline (R-PIP-1..6, R-CAP-1..6). Invoicing posts the invoice and creates
//! its payment process in one transaction; the process then runs stages 2–4, each recorded with
//! status, attempts, times, error and an execution log. A process is run only by the server that
//! holds its lease (a conditional UPDATE, so two servers on one PostgreSQL never both run it);
//! recovery takes over processes whose lease ran out and finishes them.
mod authorize;
mod batch;
mod capture;
mod context;
mod document;
pub mod invariants;
mod invoicing;
mod journal;
mod log;
mod marks;
pub mod queries;
mod recovery;
mod refund;
mod runner;
pub(crate) use capture::apply_capture;
pub(crate) use refund::record_refund_row;
pub use batch::{batches, InvoiceBatches};
pub use document::post_invoice;
pub use invoicing::{credit, invoice, invoice_settled};
pub use recovery::{recover_processes, resume, terminate, RecoveryReport};
pub use runner::run;
pub use crate::ledger::requests;
