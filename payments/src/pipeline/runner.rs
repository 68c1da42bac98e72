//! Running a payment process's stages 2–4 under its lease, to Completed or to Incomplete (R-PIP-2..6).
use crate::domain::order::{JournalKind, JournalLine, OrderStatus};
use crate::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use crate::entity::{
    invoice_line as il, journal, journal_line as jl, payment_process as pp, process_stage as ps, sales_order as so,
    sales_order_line as sol,
};
use crate::error::{InvoicingError, ServiceError, ServiceResult};
use crate::runtime::Services;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryTrait, TransactionTrait,
};
use crate::writes::Writes;
use crate::ledger::journals::{post_journal, Posting};
use crate::ledger::requests;
use super::context::StageEnd;

/// Runs the process's remaining stages while this server holds its lease. Returns where it stands.
/// The process, its stage rows, invoice and order are read once.
pub async fn run(s: &Services, process_id: i32) -> ServiceResult<ProcessStatus> {
    let p = pp::Entity::find_by_id(process_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("payment process".into()))?;
    let status = ProcessStatus::from_code(&p.status).unwrap_or(ProcessStatus::Running);
    if status != ProcessStatus::Running {
        return Ok(status);
    }
    let rows = ps::Entity::find().filter(ps::Column::ProcessId.eq(process_id)).all(&s.db).await?;
    let ctx = super::context::Ctx::load(s, p).await?;
    Ok(run_loaded(s, ctx, rows).await?.0)
}

/// [`run`] with the process, its stage rows, invoice and order already in hand (invoicing has
/// just written them). Returns the status and, unless completed, the process's last error.
///
/// Stage marks are written lazily ([`marks::Marks`]): a stage's start and end marks commit with
/// the stage's own first write, or with the next stage's, or with the process's completion; every
/// such commit renews the lease first, so a server that lost the lease writes nothing and stops.
pub(super) async fn run_loaded(s: &Services, ctx: super::context::Ctx, rows: Vec<ps::Model>) -> ServiceResult<(ProcessStatus, Option<String>)> {
    run_loaded_from(s, ctx, rows, None).await
}

/// Ends the run with the process Incomplete after `stage` failed (R-PIP-3): its marks, the error
/// and the released lease in one commit. Listed on Incomplete cards payment, monitored or not.
pub(super) async fn incomplete(
    s: &Services,
    ctx: &mut super::context::Ctx,
    stage: Stage,
    attempt: i32,
    now: DateTime<Utc>,
    msg: String,
    error: String,
) -> ServiceResult<(ProcessStatus, Option<String>)> {
    let process_id = ctx.p.id;
    ctx.marks.end(stage, StageStatus::Failed, attempt, now, Some(msg.clone()), format!("Failed: {msg}"));
    let txn = crate::db::begin_bookkeeping(&s.db).await?;
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok((ProcessStatus::Running, None));
    }
    pp::Entity::update_many()
        .col_expr(pp::Column::Status, Expr::value(ProcessStatus::Incomplete.code()))
        .col_expr(pp::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(pp::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(pp::Column::LastError, Expr::value(Some(error.clone())))
        .col_expr(pp::Column::UpdatedAt, Expr::value(now))
        .filter(pp::Column::Id.eq(process_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    ctx.marks.committed();
    Ok((ProcessStatus::Incomplete, Some(error)))
}

/// Whether the process's capture certainly charged nothing — no capture request, or the latest one
/// declined or not processed (an unknown outcome is not certain) — and, for a request, why.
pub(super) async fn nothing_charged(s: &Services, process_id: i32) -> ServiceResult<Option<Option<String>>> {
    use crate::domain::order::RequestStatus;
    let Some(r) = requests::latest_for_stage(&s.db, process_id, Stage::CaptureOrRefund).await? else {
        return Ok(Some(None));
    };
    let detail = r.message.clone().unwrap_or_default();
    Ok(match RequestStatus::from_code(&r.status) {
        Some(RequestStatus::Declined) => Some(Some(format!("the processor declined the capture: {detail}"))),
        Some(RequestStatus::Failed) => Some(Some(format!("the processor did not process the capture: {detail}"))),
        _ => None,
    })
}

/// Status monitoring off and the card not charged (issue #39 item 4, R-PIP-6): the invoicing is
/// taken back in one commit — a journal reversing the invoice's (a correction is a new entry,
/// R-LED-1), the invoiced quantities open again, the order's status as before, the process
/// Reversed with the reason. The user is told the invoicing was refused and may invoice again.
pub(super) async fn reverse_uncharged(s: &Services, ctx: &mut super::context::Ctx, error: String) -> ServiceResult<(ProcessStatus, Option<String>)> {
    let process_id = ctx.p.id;
    let (invoice, order) = (ctx.invoice.clone(), ctx.order.clone());
    let now = s.now();
    let txn = s.db.begin().await?;
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok((ProcessStatus::Running, None));
    }
    let posted = journal::Entity::find().filter(journal::Column::Source.eq(format!("invoice:{}", invoice.id))).one(&txn).await?;
    if let Some(j) = posted {
        let lines = jl::Entity::find().filter(jl::Column::JournalId.eq(j.id)).all(&txn).await?;
        let reversed = lines.iter().map(|l| JournalLine { account: l.account.clone(), debit: l.credit_minor, credit: l.debit_minor }).collect();
        let posting = Posting {
            invoice_id: Some(invoice.id),
            ..Posting::for_order(&order, format!("invoice:{}:reversal", invoice.id), JournalKind::CustomerInvoice, format!("Reversal of {} for {}: the card was not charged", invoice.number, order.number))
        };
        post_journal(&txn, now, posting, reversed).await?;
    }
    let lines = il::Entity::find().filter(il::Column::InvoiceId.eq(invoice.id)).all(&txn).await?;
    for l in &lines {
        let moved = sol::Entity::update_many()
            .col_expr(sol::Column::InvoicedQuantity, Expr::col(sol::Column::InvoicedQuantity).sub(l.quantity))
            .filter(sol::Column::Id.eq(l.order_line_id))
            .filter(sol::Column::InvoicedQuantity.gte(l.quantity))
            .exec(&txn)
            .await?;
        if moved.rows_affected != 1 {
            return Err(InvoicingError::NotTakenBack { invoice: invoice.number }.into());
        }
    }
    let any_invoiced = sol::Entity::find().filter(sol::Column::OrderId.eq(order.id)).filter(sol::Column::InvoicedQuantity.gt(0)).one(&txn).await?.is_some();
    so::Entity::update_many()
        .col_expr(so::Column::Status, Expr::value(if any_invoiced { OrderStatus::PartiallyInvoiced } else { OrderStatus::Open }.code()))
        .filter(so::Column::Id.eq(order.id))
        .filter(so::Column::Status.is_in([OrderStatus::PartiallyInvoiced.code(), OrderStatus::Invoiced.code()]))
        .exec(&txn)
        .await?;
    finish_process(s, &txn, process_id, ProcessStatus::Reversed, Some(error.clone())).await?;
    txn.commit().await?;
    ctx.marks.committed();
    Ok((ProcessStatus::Reversed, Some(error)))
}

/// A stage whose attempt was started and run elsewhere (by [`batch`]): its stage, attempt and how
/// it ended. Its start mark and log lines are in the run's marks or already written.
pub(super) struct Ended {
    pub stage: Stage,
    pub attempt: i32,
    pub end: StageEnd,
}

/// [`run_loaded`], first finishing the stage `ended` (the next one to run) as the stage itself would.
pub(super) async fn run_loaded_from(s: &Services, mut ctx: super::context::Ctx, mut rows: Vec<ps::Model>, mut ended: Option<Ended>) -> ServiceResult<(ProcessStatus, Option<String>)> {
    let process_id = ctx.p.id;
    loop {
        let next = Stage::ALL.into_iter().find(|st| {
            rows.iter()
                .find(|r| r.stage == st.code())
                .is_none_or(|r| !matches!(StageStatus::from_code(&r.status), Some(StageStatus::Succeeded | StageStatus::Skipped)))
        });
        let Some(stage) = next else {
            let txn = crate::db::begin_bookkeeping(&s.db).await?;
            if !ctx.marks.flush(s, &txn, process_id).await? {
                txn.rollback().await?;
                return Ok((ProcessStatus::Running, None));
            }
            finish_process(s, &txn, process_id, ProcessStatus::Completed, None).await?;
            txn.commit().await?;
            ctx.marks.committed();
            return Ok((ProcessStatus::Completed, None));
        };
        let (attempt, end) = match ended.take() {
            Some(e) if e.stage == stage => (e.attempt, e.end),
            Some(e) => return Err(ServiceError::internal(format!("payment process {process_id} was handed over at {:?}, but {stage:?} is next", e.stage))),
            None => {
                let row = rows.iter().find(|r| r.stage == stage.code()).cloned();
                let attempt = row.as_ref().map(|r| r.attempts).unwrap_or(0) + 1;
                let interrupted = row.as_ref().is_some_and(|r| r.status == StageStatus::Running.code());
                ctx.marks.start(stage, attempt, s.now(), start_message(attempt, interrupted));
                let end = match stage {
                    Stage::PostInvoice => Ok(StageEnd::Succeeded("The invoice was posted when it was created.".into())),
                    Stage::CaptureOrRefund => super::capture::capture(s, &mut ctx, attempt).await,
                    Stage::PostPaymentJournal => super::journal::payment_journal(s, &mut ctx).await,
                    Stage::AuthorizeRemaining => super::authorize::authorize_remaining(s, &mut ctx, attempt).await,
                };
                // Another runner recorded the outcome of this stage's request while this one
                // waited for the processor (issue #39): it has taken the process over; this run
                // wrote nothing and stops, as when its lease is lost.
                let end = match end {
                    Err(ServiceError::AlreadyRecorded(_)) => StageEnd::LeaseLost,
                    end => end?,
                };
                (attempt, end)
            }
        };
        let now = s.now();
        let (status, message) = match end {
            StageEnd::Succeeded(msg) => (StageStatus::Succeeded, msg),
            StageEnd::Skipped(msg) => (StageStatus::Skipped, msg),
            StageEnd::LeaseLost => return Ok((ProcessStatus::Running, None)),
            StageEnd::Failed(msg)
                if !ctx.p.monitored && stage == Stage::CaptureOrRefund && !ctx.is_credit() && ctx.p.captured_minor == 0 && ctx.invoice.prepaid_minor == 0 =>
            {
                // Status monitoring off (issue #39 item 4, R-PIP-6): invoicing is one step, so a
                // capture that certainly charged nothing takes the invoice back. (An invoice that
                // also applied a deposit or cash posted more than its own journal: it stays
                // Incomplete, listed, for a finance user.)
                if let Some(why) = nothing_charged(s, process_id).await? {
                    let error = why.unwrap_or_else(|| msg.trim_end_matches(", then resume.").trim_end_matches('.').to_string());
                    ctx.marks.end(stage, StageStatus::Failed, attempt, now, Some(msg.clone()), format!("Failed: {msg}"));
                    return reverse_uncharged(s, &mut ctx, error).await;
                }
                let error = format!("{}: {msg}", stage.label());
                return incomplete(s, &mut ctx, stage, attempt, now, msg, error).await;
            }
            StageEnd::Failed(msg) => {
                let error = format!("{}: {msg}", stage.label());
                return incomplete(s, &mut ctx, stage, attempt, now, msg, error).await;
            }
        };
        ended_in(&mut rows, process_id, stage, status, attempt)?;
        ctx.marks.end(stage, status, attempt, now, None, message);
    }
}

/// The log line that starts a stage's attempt.
pub(super) fn start_message(attempt: i32, interrupted: bool) -> String {
    if interrupted {
        format!("Attempt {attempt} started after an interruption of the previous attempt.")
    } else {
        format!("Attempt {attempt} started.")
    }
}

/// Records in a run's copy of the stage rows that `stage` ended with `status`.
pub(super) fn ended_in(rows: &mut [ps::Model], process_id: i32, stage: Stage, status: StageStatus, attempt: i32) -> ServiceResult<()> {
    match rows.iter_mut().find(|r| r.stage == stage.code()) {
        Some(r) => {
            r.status = status.code().to_string();
            r.attempts = attempt;
            Ok(())
        }
        None => Err(ServiceError::NotFound(format!("the {} stage of payment process {process_id}", stage.label()))),
    }
}

pub(super) async fn finish_process(s: &Services, db: &impl ConnectionTrait, process_id: i32, status: ProcessStatus, error: Option<String>) -> Result<(), DbErr> {
    finish_processes(s, db, &[process_id], status, error).await
}

/// Ends running processes with `status`, releasing their leases: one statement.
pub(super) async fn finish_processes(s: &Services, db: &impl ConnectionTrait, ids: &[i32], status: ProcessStatus, error: Option<String>) -> Result<(), DbErr> {
    let mut w = Writes::on(db);
    finish_processes_into(s, &mut w, ids, status, error);
    w.run(db).await.map(|_| ())
}

/// [`finish_processes`] added to `w`.
pub(super) fn finish_processes_into(s: &Services, w: &mut Writes, ids: &[i32], status: ProcessStatus, error: Option<String>) {
    let q = pp::Entity::update_many()
        .col_expr(pp::Column::Status, Expr::value(status.code()))
        .col_expr(pp::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(pp::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(pp::Column::LastError, Expr::value(error))
        .col_expr(pp::Column::UpdatedAt, Expr::value(s.now()))
        .filter(pp::Column::Id.is_in(ids.iter().copied()))
        .filter(pp::Column::Status.eq(ProcessStatus::Running.code()));
    w.push(q.into_query());
}
