//! Resume and terminate of an incomplete process (R-PIP-5), and taking over processes whose
//! server stopped.
use crate::domain::payment_views::InvoiceOutcome;
use crate::domain::pipeline::ProcessStatus;
use crate::entity::{invoice as inv, payment_process as pp};
use crate::error::{ProcessError, ServiceError, ServiceResult};
use crate::ledger::audit;
use crate::runtime::Services;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, UpdateMany};
use super::document::outcome;
use super::runner::run;

/// Resume (R-PIP-4): restarts an incomplete process from its failed stage. Exactly one of two
/// concurrent resumes wins; the other is told the process is no longer incomplete.
pub async fn resume(s: &Services, actor: &str, process_id: i32) -> ServiceResult<InvoiceOutcome> {
    let now = s.now();
    let txn = s.db.begin().await?;
    let claim = pp::Entity::update_many()
        .col_expr(pp::Column::Status, Expr::value(ProcessStatus::Running.code()))
        .col_expr(pp::Column::LeaseOwner, Expr::value(s.instance.clone()))
        .col_expr(pp::Column::LeaseUntil, Expr::value(now + s.lease))
        .col_expr(pp::Column::UpdatedAt, Expr::value(now));
    let (_, invoice) = claim_incomplete(&txn, process_id, claim, |status| ProcessError::ResumeNotIncomplete { status }).await?;
    audit::record(&txn, now, actor, "payment_process.resume", &invoice.number, None, None).await?;
    txn.commit().await?;
    let status = run(s, process_id).await?;
    outcome(s, invoice, process_id, status).await
}

/// Terminate (R-PIP-4): ends an incomplete process, with the reason, audited.
pub async fn terminate(s: &Services, actor: &str, process_id: i32, reason: &str) -> ServiceResult<()> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ServiceError::field("reason", "Give the reason for terminating (at most 500 characters)."));
    }
    let now = s.now();
    let txn = s.db.begin().await?;
    let end = pp::Entity::update_many()
        .col_expr(pp::Column::Status, Expr::value(ProcessStatus::Terminated.code()))
        .col_expr(pp::Column::TerminatedReason, Expr::value(reason))
        .col_expr(pp::Column::UpdatedAt, Expr::value(now));
    let (p, invoice) = claim_incomplete(&txn, process_id, end, |status| ProcessError::TerminateNotIncomplete { status }).await?;
    audit::record(
        &txn,
        now,
        actor,
        "payment_process.terminate",
        &invoice.number,
        Some(serde_json::json!({ "status": "incomplete", "error": p.last_error })),
        Some(serde_json::json!({ "status": "terminated", "reason": reason })),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Applies `change` to the process if it is still incomplete (so that of two users resuming or
/// terminating it at once, one does and the other is refused with `refused`), and returns it as
/// it was read after the change, with its invoice.
async fn claim_incomplete(
    txn: &DatabaseTransaction,
    process_id: i32,
    change: UpdateMany<pp::Entity>,
    refused: fn(String) -> ProcessError,
) -> ServiceResult<(pp::Model, inv::Model)> {
    let claimed = change
        .filter(pp::Column::Id.eq(process_id))
        .filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code()))
        .exec(txn)
        .await?;
    let p = pp::Entity::find_by_id(process_id).one(txn).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    if claimed.rows_affected != 1 {
        let status = ProcessStatus::from_code(&p.status).map(|s| s.label()).unwrap_or("unknown");
        return Err(refused(status.to_string()).into());
    }
    let invoice = inv::Entity::find_by_id(p.invoice_id).one(txn).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
    Ok((p, invoice))
}

/// What one recovery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    pub taken_over: u32,
    pub completed: u32,
    pub incomplete: u32,
    pub requests_resolved: u32,
    /// Deposits captured and cancellations finished after an interruption (R-PRE).
    pub prepayments: u32,
}

/// Takes over up to `batch` running processes whose lease ran out (their server stopped) and runs
/// them to completion or to Incomplete; then resolves the authorization requests placement left
/// pending. The recovery job (`service::jobs::recover`) adds what the use cases left.
pub async fn recover_processes(s: &Services, batch: u64) -> ServiceResult<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let now = s.now();
    let stale = pp::Entity::find()
        .filter(pp::Column::Status.eq(ProcessStatus::Running.code()))
        .filter(Condition::any().add(pp::Column::LeaseUntil.is_null()).add(pp::Column::LeaseUntil.lt(now)))
        .order_by_asc(pp::Column::Id)
        .limit(batch)
        .all(&s.db)
        .await?;
    for p in stale {
        if !super::marks::renew_lease(s, &s.db, p.id).await? {
            continue;
        }
        report.taken_over += 1;
        match run(s, p.id).await? {
            ProcessStatus::Completed => report.completed += 1,
            ProcessStatus::Incomplete => report.incomplete += 1,
            _ => {}
        }
    }
    report.requests_resolved = super::authorize::resolve_placement_requests(s, batch).await?;
    Ok(report)
}
