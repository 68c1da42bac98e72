//! Captures and refunds the processor reports failed after it answered them (issue #42; Adyen's
//! CAPTURE_FAILED and REFUND_FAILED). Their money did not move: the capture or refund is marked
//! failed with the processor's reason (it no longer counts as captured or refunded, and nothing
//! more is refunded from a failed capture), its authorization's or capture's total comes back
//! down, and a reversing journal is posted beside the one that recorded it (R-LED-1: corrections
//! are new entries; the original stays). All in one transaction, once: a second report of the
//! same failure, or a second server working the same notification, changes nothing.
use crate::db::for_update;
use crate::domain::money::Money;
use crate::domain::order::{accounts, Command, JournalKind, JournalLine, Tender};
use crate::entity::{authorization as au, capture as cap, processor_request as pr, refund, sales_order as so};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::journals::{post_journal, Posting};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};

/// What reversing a reported failure did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reversal {
    /// Marked failed, totals brought back, and the reversing journal posted.
    Reversed { journal: String, amount: Money, order: String, invoice: Option<String> },
    /// Reversed before (the same failure reported again, or worked by another server).
    AlreadyReversed,
    /// Paystage has no record of it (yet: its outcome may still be unresolved).
    NotFound,
    /// Reversing it alone would not be right (a failed capture that was partly refunded): left
    /// for finance as it is, with why.
    Refused(String),
}

/// Reverses the capture the processor knows as `psp` (or whose tracking id is `tracking_id`),
/// reported failed with `reason`.
pub(crate) async fn reverse_capture(db: &DatabaseConnection, now: DateTime<Utc>, psp: &str, tracking_id: &str, reason: &str) -> ServiceResult<Reversal> {
    let txn = db.begin().await?;
    let found = for_update(cap::Entity::find().filter(cap::Column::ProcessorReference.eq(psp).or(cap::Column::TrackingId.eq(tracking_id))), &txn).one(&txn).await?;
    let Some(c) = found else {
        return Ok(Reversal::NotFound);
    };
    if c.failed_at.is_some() {
        return Ok(Reversal::AlreadyReversed);
    }
    if c.refunded_minor > 0 {
        return Ok(Reversal::Refused(format!("capture {} was partly refunded already ({} minor units), so it is not reversed on its own", c.processor_reference, c.refunded_minor)));
    }
    let order = so::Entity::find_by_id(c.order_id).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("order of the capture".into()))?;
    let amount = Money::from_minor(c.amount_minor, crate::domain::money::Currency::stored(&order.currency)?);
    cap::Entity::update_many()
        .col_expr(cap::Column::FailedAt, Expr::value(Some(now)))
        .col_expr(cap::Column::FailureReason, Expr::value(Some(reason.to_string())))
        .filter(cap::Column::Id.eq(c.id))
        .exec(&txn)
        .await?;
    au::Entity::update_many()
        .col_expr(au::Column::CapturedMinor, Expr::col(au::Column::CapturedMinor).sub(c.amount_minor))
        .filter(au::Column::Id.eq(c.authorization_id))
        .exec(&txn)
        .await?;
    let invoice = match c.invoice_id {
        Some(id) => crate::entity::invoice::Entity::find_by_id(id).one(&txn).await?.map(|i| i.number),
        None => None,
    };
    // An invoice's capture settled its receivable; a deposit's (no invoice) the prepayment.
    let counter = if c.invoice_id.is_some() { accounts::ACCOUNTS_RECEIVABLE } else { accounts::CUSTOMER_PREPAYMENTS };
    let what = invoice.as_deref().map_or_else(|| format!("the deposit of {}", order.number), |i| format!("{i} ({})", order.number));
    let posting = Posting {
        invoice_id: c.invoice_id,
        tender: Some(Tender::Card),
        prepayment: c.invoice_id.is_none(),
        ..Posting::for_order(&order, format!("reversal:capture:{}", c.id), JournalKind::ProcessorReversal, format!("Capture {} for {what} failed at the processor: {reason}", c.processor_reference))
    };
    let j = post_journal(&txn, now, posting, vec![JournalLine::debit(counter, amount), JournalLine::credit(accounts::CARD_CLEARING, amount)]).await?;
    txn.commit().await?;
    Ok(match j {
        Some(j) => Reversal::Reversed { journal: j.number, amount, order: order.number, invoice },
        None => Reversal::AlreadyReversed,
    })
}

/// Reverses the refund the processor knows as `psp` (or whose tracking id is `tracking_id`),
/// reported failed with `reason`: the customer is owed it again.
pub(crate) async fn reverse_refund(db: &DatabaseConnection, now: DateTime<Utc>, psp: &str, tracking_id: &str, reason: &str) -> ServiceResult<Reversal> {
    let txn = db.begin().await?;
    let found = for_update(refund::Entity::find().filter(refund::Column::ProcessorReference.eq(psp).or(refund::Column::TrackingId.eq(tracking_id))), &txn).one(&txn).await?;
    let Some(r) = found else {
        return Ok(Reversal::NotFound);
    };
    if r.failed_at.is_some() {
        return Ok(Reversal::AlreadyReversed);
    }
    let order = so::Entity::find_by_id(r.order_id).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("order of the refund".into()))?;
    let amount = Money::from_minor(r.amount_minor, crate::domain::money::Currency::stored(&order.currency)?);
    refund::Entity::update_many()
        .col_expr(refund::Column::FailedAt, Expr::value(Some(now)))
        .col_expr(refund::Column::FailureReason, Expr::value(Some(reason.to_string())))
        .filter(refund::Column::Id.eq(r.id))
        .exec(&txn)
        .await?;
    cap::Entity::update_many()
        .col_expr(cap::Column::RefundedMinor, Expr::col(cap::Column::RefundedMinor).sub(r.amount_minor))
        .filter(cap::Column::Id.eq(r.capture_id))
        .exec(&txn)
        .await?;
    // A credit note's refund (made by its payment process) gave back a receivable; a cancelled
    // deposit's, the prepayment.
    let request = pr::Entity::find().filter(pr::Column::TrackingId.eq(r.tracking_id.as_str())).filter(pr::Column::Command.eq(Command::Refund.code())).one(&txn).await?;
    let process = request.as_ref().and_then(|q| q.process_id);
    let invoice_id = match process {
        Some(p) => crate::entity::payment_process::Entity::find_by_id(p).one(&txn).await?.map(|p| p.invoice_id),
        None => None,
    };
    let invoice = match invoice_id {
        Some(id) => crate::entity::invoice::Entity::find_by_id(id).one(&txn).await?.map(|i| i.number),
        None => None,
    };
    let counter = if process.is_some() { accounts::ACCOUNTS_RECEIVABLE } else { accounts::CUSTOMER_PREPAYMENTS };
    let what = invoice.as_deref().map_or_else(|| format!("the cancelled deposit of {}", order.number), |i| format!("{i} ({})", order.number));
    let posting = Posting {
        invoice_id,
        tender: Some(Tender::Card),
        prepayment: process.is_none(),
        ..Posting::for_order(&order, format!("reversal:refund:{}", r.id), JournalKind::ProcessorReversal, format!("Refund {} for {what} failed at the processor: {reason}", r.processor_reference))
    };
    let j = post_journal(&txn, now, posting, vec![JournalLine::debit(accounts::CARD_CLEARING, amount), JournalLine::credit(counter, amount)]).await?;
    txn.commit().await?;
    Ok(match j {
        Some(j) => Reversal::Reversed { journal: j.number, amount, order: order.number, invoice },
        None => Reversal::AlreadyReversed,
    })
}
