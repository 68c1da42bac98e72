//! Invoicing and credit notes (R-PIP-1, R-CAP-1): the document posted with its payment process,
//! batched with other invoicings where it can be (`batch`), then run through stages 2–4.
use crate::domain::payment_views::InvoiceOutcome;
use crate::domain::pipeline::ProcessStatus;
use crate::error::{InvoicingError, ServiceResult};
use crate::runtime::Services;
use super::document::{Posted, outcome_of, post_document};
use crate::domain::order::DocumentKind;
use super::runner::{run_loaded};

/// Invoices `quantities` (order line id, quantity) of an order, then runs the payment process.
pub async fn invoice(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)]) -> ServiceResult<InvoiceOutcome> {
    invoice_settled(s, actor, order_id, quantities, 0).await
}

/// [`invoice`] with cash taken at pickup (R-PRE-2): stage 1 applies the order's deposit and the
/// cash in the invoice's own transaction, and the card capture takes only the rest.
pub async fn invoice_settled(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)], cash_minor: i64) -> ServiceResult<InvoiceOutcome> {
    // Invoicings without cash are run together with whatever others this server is invoicing at
    // the same moment; one the batch does not take is posted and run on its own, as here.
    if cash_minor == 0 {
        if let Some(outcome) = super::batch::invoice(s, actor, order_id, quantities).await? {
            return refused_if_reversed(outcome);
        }
    }
    let posted = post_document(s, actor, order_id, quantities, DocumentKind::Invoice, cash_minor).await?;
    crate::crashpoint::hit("after:post_invoice");
    refused_if_reversed(run_posted(s, posted).await?)
}

/// An invoicing taken back because the card was not charged (monitoring off) is a refusal with
/// its reason: nothing is left invoiced, and the user may simply invoice again.
pub(super) fn refused_if_reversed(outcome: InvoiceOutcome) -> ServiceResult<InvoiceOutcome> {
    if outcome.status != ProcessStatus::Reversed {
        return Ok(outcome);
    }
    let reason = outcome.error.unwrap_or_default();
    Err(InvoicingError::NotCharged { reason, invoice: outcome.invoice_number }.into())
}

/// Credits (returns) `quantities` (order line id, quantity) of invoiced lines: posts a credit note,
/// then the payment process refunds the card against the order's captures (stage 2), posts the
/// refund payment journal (stage 3); a credit leaves nothing to authorize (stage 4).
pub async fn credit(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)]) -> ServiceResult<InvoiceOutcome> {
    let posted = post_document(s, actor, order_id, quantities, DocumentKind::CreditNote, 0).await?;
    crate::crashpoint::hit("after:post_invoice");
    run_posted(s, posted).await
}

pub(super) async fn run_posted(s: &Services, posted: Posted) -> ServiceResult<InvoiceOutcome> {
    let Posted { invoice, process, order, stages, settings } = posted;
    let process_id = process.id;
    let ctx = super::context::Ctx { p: process, invoice: invoice.clone(), order, marks: Default::default(), fresh: Some(settings) };
    let (status, error) = run_loaded(s, ctx, stages).await?;
    outcome_of(invoice, process_id, status, error)
}
