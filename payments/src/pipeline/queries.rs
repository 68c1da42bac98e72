//! What the Incomplete cards payment page reads (R-PIP-5) and View history (R-PIP-4).
use crate::domain::money::{Currency, Money};
use crate::domain::payment_views::{IncompleteRow, LogEntry, ProcessHistory, StageHistory};
use crate::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use crate::entity::{customer, invoice as inv, payment_line as pl, payment_process as pp, process_stage as ps, sales_order as so, stage_log};
use crate::error::{ServiceError, ServiceResult};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

/// Whether an invoice is related to a card payment (the page is offered only for those).
pub async fn invoice_is_card_related(db: &impl ConnectionTrait, invoice_id: i32) -> ServiceResult<bool> {
    let Some(i) = inv::Entity::find_by_id(invoice_id).one(db).await? else {
        return Err(ServiceError::NotFound(format!("There is no invoice with id {invoice_id}.")));
    };
    Ok(pl::Entity::find().filter(pl::Column::OrderId.eq(i.order_id)).filter(pl::Column::Tender.eq("card")).count(db).await? > 0)
}

/// Incomplete processes: of one invoice, or all of them (oldest first). Those invoiced with status
/// monitoring off are listed too (issue #39 item 4): a failure after the card was charged must never
/// be silent, and the Overview counts the same set.
pub async fn incomplete(db: &impl ConnectionTrait, invoice_id: Option<i32>) -> ServiceResult<Vec<IncompleteRow>> {
    let mut q = pp::Entity::find().filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code())).order_by_asc(pp::Column::Id);
    if let Some(id) = invoice_id {
        q = q.filter(pp::Column::InvoiceId.eq(id));
    }
    let processes = q.all(db).await?;
    let mut rows = Vec::with_capacity(processes.len());
    for p in processes {
        let invoice = inv::Entity::find_by_id(p.invoice_id).one(db).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
        let order = so::Entity::find_by_id(p.order_id).one(db).await?.ok_or_else(|| ServiceError::NotFound("order".into()))?;
        let cust = customer::Entity::find_by_id(order.customer_id).one(db).await?;
        let stages = ps::Entity::find().filter(ps::Column::ProcessId.eq(p.id)).all(db).await?;
        let failed = stages.iter().find(|s| s.status == StageStatus::Failed.code());
        rows.push(IncompleteRow {
            process_id: p.id,
            invoice_id: invoice.id,
            invoice_number: invoice.number,
            order_id: order.id,
            order_number: order.number,
            customer: cust.map(|c| format!("{} · {}", c.account, c.name)).unwrap_or_default(),
            amount: Money::from_minor(invoice.amount_minor, Currency::stored(&invoice.currency)?),
            failed_stage: failed.and_then(|s| Stage::from_code(&s.stage)),
            reason: failed.and_then(|s| s.error.clone()).or(p.last_error),
            attempts: failed.map(|s| s.attempts).unwrap_or(0),
            last_attempt: failed.and_then(|s| s.finished_at.or(s.started_at)),
            monitored: p.monitored,
            termination_requested_by: p.termination_requested_by.clone(),
            termination_request_reason: p.termination_request_reason.clone(),
            preview: None,
        });
    }
    Ok(rows)
}

/// Every stage of a process with its status, times and execution log.
pub async fn history(db: &impl ConnectionTrait, process_id: i32) -> ServiceResult<ProcessHistory> {
    let p = pp::Entity::find_by_id(process_id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    let invoice = inv::Entity::find_by_id(p.invoice_id).one(db).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
    let order = so::Entity::find_by_id(p.order_id).one(db).await?.ok_or_else(|| ServiceError::NotFound("order".into()))?;
    let rows = ps::Entity::find().filter(ps::Column::ProcessId.eq(process_id)).all(db).await?;
    let logs = stage_log::Entity::find().filter(stage_log::Column::ProcessId.eq(process_id)).order_by_asc(stage_log::Column::Id).all(db).await?;
    let stages = Stage::ALL
        .into_iter()
        .filter_map(|stage| {
            let r = rows.iter().find(|r| r.stage == stage.code())?;
            Some(StageHistory {
                stage,
                status: StageStatus::from_code(&r.status).unwrap_or(StageStatus::Pending),
                attempts: r.attempts,
                started_at: r.started_at,
                finished_at: r.finished_at,
                error: r.error.clone(),
                log: logs
                    .iter()
                    .filter(|l| l.stage == stage.code())
                    .map(|l| LogEntry { at: l.at, attempt: l.attempt, message: l.message.clone() })
                    .collect(),
            })
        })
        .collect();
    Ok(ProcessHistory {
        process_id,
        invoice_number: invoice.number,
        order_id: order.id,
        order_number: order.number,
        status: ProcessStatus::from_code(&p.status).unwrap_or(ProcessStatus::Running),
        capture_kind: p.capture_kind.as_deref().and_then(crate::domain::capture::CaptureKind::from_code),
        capture_path: p.capture_path,
        terminated_reason: p.terminated_reason,
        stages,
    })
}
