//! Terminate with follow-through (seed 000, R-PIP-4, R-LED-1; issue #44): what terminating a
//! payment process would leave, shown before it is confirmed; the reason asked from a fixed list;
//! and the settling entry that closes the receivable a terminated payment left open
//! ([`crate::domain::settlement`]), posted once per process as a new balanced journal.
use super::{audit, for_update, Services};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{accounts, AuthorizationStatus, Command, JournalKind, JournalLine, RequestStatus};
use crate::domain::pipeline::ProcessStatus;
use crate::domain::settlement::{settling_lines, SettleHow, SettleRefusal, TerminatePreview, TerminateReason};
use crate::entity::{authorization as au, capture as cap, invoice as inv, journal, journal_line as jl, payment_process as pp, processor_request as pr, sales_order as so};
use crate::error::{ProcessError, ServiceError, ServiceResult};
use crate::ledger::journals::{post_journal, Posting};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};

/// The journal source of a process's settling entry: one per process.
fn source(process_id: i32) -> String {
    format!("settle-terminated:{process_id}")
}

/// What the invoice's journals leave open on its receivable (debits less credits), and each
/// journal with its lines.
async fn receivable(db: &impl ConnectionTrait, invoice_id: i32) -> ServiceResult<(i64, Vec<(journal::Model, Vec<jl::Model>)>)> {
    let journals = journal::Entity::find().filter(journal::Column::InvoiceId.eq(invoice_id)).order_by_asc(journal::Column::Id).all(db).await?;
    let ids: Vec<i32> = journals.iter().map(|j| j.id).collect();
    let lines = jl::Entity::find().filter(jl::Column::JournalId.is_in(ids)).order_by_asc(jl::Column::Id).all(db).await?;
    let open = lines.iter().filter(|l| l.account == accounts::ACCOUNTS_RECEIVABLE).map(|l| l.debit_minor - l.credit_minor).sum();
    Ok((open, journals.into_iter().map(|j| {
        let mine = lines.iter().filter(|l| l.journal_id == j.id).cloned().collect();
        (j, mine)
    }).collect()))
}

async fn process(db: &impl ConnectionTrait, process_id: i32) -> ServiceResult<(pp::Model, inv::Model, so::Model)> {
    let p = pp::Entity::find_by_id(process_id).one(db).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    let invoice = inv::Entity::find_by_id(p.invoice_id).one(db).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
    let order = so::Entity::find_by_id(p.order_id).one(db).await?.ok_or_else(|| ServiceError::NotFound("order".into()))?;
    Ok((p, invoice, order))
}

/// What the process moved at the processor, what the invoice's journals post and leave open,
/// and what terminating would leave undone.
pub async fn preview(s: &Services, process_id: i32) -> ServiceResult<TerminatePreview> {
    let db = &s.db;
    let (p, invoice, order) = process(db, process_id).await?;
    let cur = Currency::stored(&invoice.currency)?;
    let m = |v: i64| Money::from_minor(v, cur);
    let captured: i64 = cap::Entity::find().filter(cap::Column::InvoiceId.eq(invoice.id)).all(db).await?.iter().map(|c| c.moved_minor()).sum();
    let requests = pr::Entity::find().filter(pr::Column::ProcessId.eq(p.id)).all(db).await?;
    let refunded: i64 = requests.iter().filter(|r| r.command == Command::Refund.code() && r.status == RequestStatus::Succeeded.code()).map(|r| r.amount_minor).sum();
    let (open, journals) = receivable(db, invoice.id).await?;
    let clearing: i64 = journals.iter().flat_map(|(_, ls)| ls.iter()).filter(|l| l.account == accounts::CARD_CLEARING).map(|l| l.debit_minor - l.credit_minor).sum();
    let mut warnings = Vec::new();
    let moved = captured - refunded;
    if moved != clearing {
        warnings.push(format!(
            "The processor moved {} for this invoice and its card payment journals post {}: terminating leaves that difference without a journal. Resume posts the missing journal.",
            m(moved),
            m(clearing)
        ));
    }
    if let Some(r) = requests.iter().find(|r| r.status == RequestStatus::Pending.code() || r.status == RequestStatus::Unknown.code()) {
        warnings.push(format!("Request {} to the processor has no answer yet: money may have moved. Resume asks the processor first.", r.tracking_id));
    }
    let held: i64 = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .filter(au::Column::ExpiresAt.gt(s.now()))
        .all(db)
        .await?
        .iter()
        .map(|a| (a.amount_minor - a.captured_minor).max(0))
        .sum();
    if held > 0 {
        warnings.push(format!(
            "The order's authorizations still hold {} on the customer's card; once nothing more will be charged to it, Authorization exposure releases it.",
            m(held)
        ));
    }
    if open != 0 && p.status != ProcessStatus::Terminated.code() {
        warnings.push(format!("The invoice's receivable stays open for {} until it is settled: received by other means, written off, or the invoice reversed.", m(open)));
    }
    Ok(TerminatePreview {
        process_id: p.id,
        invoice_number: invoice.number,
        order_number: order.number,
        amount: m(invoice.amount_minor),
        captured: m(captured),
        refunded: m(refunded),
        journals: journals
            .iter()
            .map(|(j, ls)| {
                let ar: i64 = ls.iter().filter(|l| l.account == accounts::ACCOUNTS_RECEIVABLE).map(|l| l.debit_minor - l.credit_minor).sum();
                (j.number.clone(), JournalKind::from_code(&j.kind).map_or(j.kind.clone(), |k| k.label().to_string()), m(ar))
            })
            .collect(),
        open: m(open),
        warnings,
    })
}

/// What terminating says when it is done.
pub const TERMINATED: &str = "The card payment process was terminated.";

/// Terminates the process with a reason from the fixed list and the user's own words (R-PIP-4).
/// When the processor moved at least the AR parameter "Second approval to terminate from" for
/// the invoice, the termination is only requested: a second finance user approves it
/// ([`approve`]). Returns what happened, in words.
pub async fn terminate(s: &Services, actor: &str, process_id: i32, reason_code: &str, note: &str) -> ServiceResult<String> {
    let code = TerminateReason::from_code(reason_code.trim()).ok_or_else(|| ServiceError::field("reason_code", "Choose why the payment is terminated."))?;
    let note = note.trim();
    if code == TerminateReason::Other && note.is_empty() {
        return Err(ServiceError::field("reason", "Say why the payment is terminated."));
    }
    if note.chars().count() > 500 {
        return Err(ServiceError::field("reason", "At most 500 characters."));
    }
    let reason = if note.is_empty() { code.label().to_string() } else { format!("{}: {note}", code.label()) };
    let p = preview(s, process_id).await?;
    let moved = (p.captured.minor() - p.refunded.minor()).abs();
    let from_units = i64::from(super::parameters::load(&s.db).await?.terminate_approval_from());
    let from = from_units.saturating_mul(10i64.pow(p.captured.currency().minor_digits()));
    if moved == 0 || moved < from {
        crate::pipeline::terminate(s, actor, process_id, &reason).await?;
        return Ok(TERMINATED.to_string());
    }
    let now = s.now();
    let txn = s.db.begin().await?;
    let row = for_update(pp::Entity::find_by_id(process_id), &txn).one(&txn).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    if row.status != ProcessStatus::Incomplete.code() {
        let status = ProcessStatus::from_code(&row.status).map_or("unknown", |s| s.label());
        return Err(ProcessError::TerminateNotIncomplete { status: status.to_string() }.into());
    }
    if let Some(by) = row.termination_requested_by {
        return Err(ProcessError::TerminationPending { by }.into());
    }
    pp::Entity::update_many()
        .col_expr(pp::Column::TerminationRequestedBy, Expr::value(actor))
        .col_expr(pp::Column::TerminationRequestedAt, Expr::value(now))
        .col_expr(pp::Column::TerminationRequestReason, Expr::value(reason.as_str()))
        .filter(pp::Column::Id.eq(process_id))
        .exec(&txn)
        .await?;
    audit::record(&txn, now, actor, "payment_process.terminate_requested", &p.invoice_number, None, Some(serde_json::json!({ "reason": reason, "moved": Money::from_minor(moved, p.captured.currency()).to_string() })))
        .await?;
    txn.commit().await?;
    Ok(format!(
        "The processor moved {} for {}, so terminating needs a second finance user: they approve it on Incomplete cards payment.",
        Money::from_minor(moved, p.captured.currency()),
        p.invoice_number
    ))
}

/// A second finance user approves a requested termination: the process is terminated with the
/// requester's reason, and both names are kept.
pub async fn approve(s: &Services, actor: &str, process_id: i32) -> ServiceResult<String> {
    let row = pp::Entity::find_by_id(process_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    let (Some(by), Some(reason)) = (row.termination_requested_by, row.termination_request_reason) else {
        return Err(ProcessError::NoTerminationRequest.into());
    };
    if by == actor {
        return Err(ProcessError::SecondApproverNeeded.into());
    }
    crate::pipeline::terminate(s, actor, process_id, &format!("{reason} (asked by {by}, approved by {actor})")).await?;
    Ok(TERMINATED.to_string())
}

/// Posts the settling entry of terminated process `process_id` (once: a second is refused) and
/// audits it. Returns what was posted, in words.
pub async fn settle(s: &Services, actor: &str, process_id: i32, how: &str, note: &str) -> ServiceResult<String> {
    let how = SettleHow::from_code(how.trim()).ok_or_else(|| ServiceError::field("how", "Choose how the receivable was settled."))?;
    let note = note.trim();
    if note.chars().count() > 500 {
        return Err(ServiceError::field("note", "At most 500 characters."));
    }
    let now = s.now();
    let txn = s.db.begin().await?;
    // The process row is the lock: two users settling at once post one entry.
    let p = for_update(pp::Entity::find_by_id(process_id), &txn)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    if p.status != ProcessStatus::Terminated.code() {
        let status = ProcessStatus::from_code(&p.status).map_or("unknown", |s| s.label());
        return Err(ProcessError::SettleNotTerminated { status: status.to_string() }.into());
    }
    let (_, invoice, order) = process(&txn, process_id).await?;
    let cur = Currency::stored(&invoice.currency)?;
    let (open, journals) = receivable(&txn, invoice.id).await?;
    let own: Vec<JournalLine> = journals
        .iter()
        .filter(|(j, _)| j.kind == JournalKind::CustomerInvoice.code())
        .flat_map(|(_, ls)| ls.iter().map(|l| JournalLine { account: l.account.clone(), debit: l.debit_minor, credit: l.credit_minor }))
        .collect();
    let lines = settling_lines(how, open, cur, &own).map_err(|e| match e {
        SettleRefusal::NothingOpen => ProcessError::NothingToSettle { invoice: invoice.number.clone() }.into(),
        other => ServiceError::field("how", other.to_string()),
    })?;
    let description = if note.is_empty() { format!("{} · {}", how.label(), invoice.number) } else { format!("{} · {}: {note}", how.label(), invoice.number) };
    let mut posting = Posting::for_order(&order, source(process_id), JournalKind::TerminatedSettlement, description);
    posting.invoice_id = Some(invoice.id);
    let Some(j) = post_journal(&txn, now, posting, lines).await? else {
        return Err(ProcessError::NothingToSettle { invoice: invoice.number }.into());
    };
    let open = Money::from_minor(open, cur);
    audit::record(
        &txn,
        now,
        actor,
        "payment_process.settle",
        &invoice.number,
        Some(serde_json::json!({ "open": open.to_string(), "terminated": p.terminated_reason })),
        Some(serde_json::json!({ "how": how.code(), "journal": j.number, "note": note })),
    )
    .await?;
    txn.commit().await?;
    Ok(format!("{} settled: {} {} by journal {}.", invoice.number, open, how.label().to_lowercase(), j.number))
}
