//! Stage 3: the customer payment journal (or refund journal) of what stage 2 moved, posted once.
use crate::ledger::journals::{Posting, post_journal};
use crate::domain::money::Money;
use crate::domain::order::{accounts, JournalKind, JournalLine, Tender};
use crate::error::ServiceResult;
use crate::runtime::Services;
use super::context::{Ctx, StageEnd, currency};
use super::refund::{refunded_by};

/// Stage 3: post the customer payment journal for what stage 2 captured or refunded (once per process).
pub(super) async fn payment_journal(s: &Services, ctx: &mut Ctx) -> ServiceResult<StageEnd> {
    if ctx.is_credit() {
        return refund_journal(s, ctx).await;
    }
    let p = &ctx.p;
    if p.captured_minor == 0 {
        return Ok(StageEnd::Skipped("Nothing was captured, so there is no payment to post.".into()));
    }
    let invoice = &ctx.invoice;
    let amount = Money::from_minor(p.captured_minor, currency(&invoice.currency)?);
    let process_id = p.id;
    // An injected fault is drawn (and a use of it consumed) before the journal's transaction.
    let fault = s.journal_faults().fire().await?;
    if fault {
        return Ok(StageEnd::Failed("The payment journal could not be posted (injected fault). Resume posts it; the card is not captured again.".into()));
    }
    let txn = crate::db::begin_bookkeeping(&s.db).await?;
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok(StageEnd::LeaseLost);
    }
    let (posting, lines) = payment_posting(ctx)?;
    let posted = if ctx.fresh.is_some() {
        crate::ledger::journals::post_new_journal(&txn, s.now(), posting, lines).await.map(Some)?
    } else {
        post_journal(&txn, s.now(), posting, lines).await?
    };
    txn.commit().await?;
    ctx.marks.committed();
    Ok(match posted {
        Some(j) => StageEnd::Succeeded(journal_posted(&j, amount)),
        None => StageEnd::Succeeded("The payment journal had already been posted.".into()),
    })
}

/// The customer payment journal of what the process captured (debit card clearing, credit
/// receivable), posted once per process.
pub(super) fn payment_posting(ctx: &Ctx) -> ServiceResult<(Posting, Vec<JournalLine>)> {
    let (p, invoice, order) = (&ctx.p, &ctx.invoice, &ctx.order);
    let amount = Money::from_minor(p.captured_minor, currency(&invoice.currency)?);
    let posting = Posting {
        invoice_id: Some(p.invoice_id),
        tender: Some(Tender::Card),
        ..Posting::for_order(order, format!("payment:process:{}", p.id), JournalKind::CustomerPayment, format!("Card payment for {} ({})", invoice.number, order.number))
    };
    Ok((posting, vec![JournalLine::debit(accounts::CARD_CLEARING, amount), JournalLine::credit(accounts::ACCOUNTS_RECEIVABLE, amount)]))
}

pub(super) fn journal_posted(j: &crate::entity::journal::Model, amount: Money) -> String {
    format!("Posted payment journal {} for {amount}: debit {}, credit {}.", j.number, accounts::CARD_CLEARING, accounts::ACCOUNTS_RECEIVABLE)
}

/// How stage 4 ends for an order with nothing left to invoice.
pub(super) const FULLY_INVOICED: &str = "The order is fully invoiced; nothing remains to authorize.";

/// Stage 3 of a credit note: the refund payment journal (debit receivable, credit card clearing).
pub(super) async fn refund_journal(s: &Services, ctx: &mut Ctx) -> ServiceResult<StageEnd> {
    let p = &ctx.p;
    let refunded = refunded_by(&s.db, p.id).await?;
    if refunded == 0 {
        return Ok(StageEnd::Skipped("Nothing was refunded, so there is no refund to post.".into()));
    }
    let fault = s.journal_faults().fire().await?;
    if fault {
        return Ok(StageEnd::Failed("The refund journal could not be posted (injected fault). Resume posts it; the card is not refunded again.".into()));
    }
    let (invoice, order) = (&ctx.invoice, &ctx.order);
    let amount = Money::from_minor(refunded, currency(&invoice.currency)?);
    let process_id = p.id;
    let txn = crate::db::begin_bookkeeping(&s.db).await?;
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok(StageEnd::LeaseLost);
    }
    let posted = post_journal(
        &txn,
        s.now(),
        Posting {
            invoice_id: Some(p.invoice_id),
            tender: Some(Tender::Card),
            ..Posting::for_order(order, format!("payment:process:{}", p.id), JournalKind::RefundPayment, format!("Card refund for {} ({})", invoice.number, order.number))
        },
        vec![JournalLine::debit(accounts::ACCOUNTS_RECEIVABLE, amount), JournalLine::credit(accounts::CARD_CLEARING, amount)],
    )
    .await?;
    txn.commit().await?;
    ctx.marks.committed();
    Ok(match posted {
        Some(j) => StageEnd::Succeeded(format!("Posted refund journal {} for {amount}: debit {}, credit {}.", j.number, accounts::ACCOUNTS_RECEIVABLE, accounts::CARD_CLEARING)),
        None => StageEnd::Succeeded("The refund journal had already been posted.".into()),
    })
}
