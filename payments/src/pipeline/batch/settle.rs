//! Stages 2–4 recorded for a whole group in one transaction after each member's capture call.
use super::super::marks;
use crate::ledger::journals::{post_new_journals_with};
use crate::writes::Writes;
use crate::domain::order::{AuthorizationStatus, OrderStatus, PaymentStatus, RequestStatus};
use crate::domain::money::{Currency, Money};
use crate::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use crate::entity::{
    authorization as au, payment_line as pl,
    payment_process as pp, processor_request as pr,
};
use crate::error::{ServiceError, ServiceResult};
use crate::db::for_update;
use crate::runtime::Services;
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait};
use super::*;

/// Stage 2 after the processor, stage 3 and, for orders now fully invoiced, stage 4, in one
/// transaction: the captures taken (each invoicing made its own call) recorded with their
/// effects, the customer payment journals, stage 4 skipped (nothing to authorize) and the
/// process completed, with the marks of the three stages. An order with a balance goes its own
/// way after the commit, to authorize it (R-CAP-3). With a fault injected at the journal (drawn
/// where each goes its own way), or this server's lease lost, the captures are recorded in a
/// transaction of their own first.
pub(super) async fn settle(s: &Services, gs: &mut Vec<Going>, out: &mut Vec<Step>) -> ServiceResult<()> {
    if gs.is_empty() {
        return Ok(());
    }
    // Bookkeeping (`service::begin_bookkeeping`), said in the writes sent together.
    let txn = crate::observe::timed("settle begin", s.db.begin()).await?;
    let ids: Vec<i32> = gs.iter().map(|g| g.ctx.p.id).collect();
    // The writes nothing later reads, sent together before the commit.
    let mut w = Writes::bookkeeping(&txn);
    let (messages, journal_fault, renewed) = record_captures(s, &txn, &mut w, gs, Some(&ids)).await?;
    let elsewhere = messages.iter().any(Option::is_none);
    if journal_fault || !renewed || elsewhere {
        txn.rollback().await?;
        let txn = crate::db::begin_bookkeeping(&s.db).await?;
        let mut w = Writes::on(&txn);
        let (messages, ..) = record_captures(s, &txn, &mut w, gs, None).await?;
        w.run(&txn).await?;
        txn.commit().await?;
        // Captures whose outcome another runner recorded meanwhile (it took the process over):
        // this run wrote nothing for them and leaves them to it.
        let mut mine = Vec::with_capacity(gs.len());
        let mut recorded = Vec::with_capacity(gs.len());
        let mut theirs = Vec::new();
        for (g, m) in std::mem::take(gs).into_iter().zip(messages) {
            match m {
                Some(m) => {
                    mine.push(g);
                    recorded.push(m);
                }
                None => theirs.push(g),
            }
        }
        lease_lost(&mut theirs, out);
        *gs = mine;
        captures_recorded(s, gs, recorded)?;
        if journal_fault || renewed {
            out.extend(std::mem::take(gs).into_iter().map(|g| Step::HandOver(g, None)));
        } else {
            lease_lost(gs, out);
        }
        return Ok(());
    }
    captures_recorded(s, gs, messages.into_iter().flatten().collect())?;

    // Stage 3.
    let stage = Stage::PostPaymentJournal;
    let now = s.now();
    let journals = gs
        .iter_mut()
        .map(|g| {
            g.ctx.marks.start(stage, 1, now, super::super::runner::start_message(1, false));
            let (posting, lines) = super::super::journal::payment_posting(&g.ctx)?;
            Ok((now, posting, lines))
        })
        .collect::<ServiceResult<Vec<_>>>()?;
    // Their ids, where stage 1 took them (PostgreSQL): one round trip fewer.
    let ids: Option<Vec<i32>> = gs.iter().map(|g| g.journal_id).collect();
    let journals = post_new_journals_with(&txn, &mut w, journals, ids).await?;
    for (g, j) in gs.iter_mut().zip(journals) {
        let amount = Money::from_minor(g.ctx.p.captured_minor, Currency::stored(&g.ctx.invoice.currency)?);
        super::super::runner::ended_in(&mut g.rows, g.ctx.p.id, stage, StageStatus::Succeeded, 1)?;
        g.ctx.marks.end(stage, StageStatus::Succeeded, 1, now, None, super::super::journal::journal_posted(&j, amount));
    }

    // Stage 4 for orders now fully invoiced; the others authorize their balance on their own.
    let stage = Stage::AuthorizeRemaining;
    let mut completed = Vec::new();
    for g in gs.iter_mut() {
        if g.ctx.order.status == OrderStatus::Invoiced.code() {
            g.ctx.marks.start(stage, 1, now, super::super::runner::start_message(1, false));
            super::super::runner::ended_in(&mut g.rows, g.ctx.p.id, stage, StageStatus::Skipped, 1)?;
            g.ctx.marks.end(stage, StageStatus::Skipped, 1, now, None, super::super::journal::FULLY_INVOICED.to_string());
            completed.push(g.ctx.p.id);
        }
    }
    let mut runs: Vec<(i32, &mut marks::Marks)> = gs.iter_mut().map(|g| (g.ctx.p.id, &mut g.ctx.marks)).collect();
    marks::flush_leased(&mut w, &mut runs);
    if !completed.is_empty() {
        super::super::runner::finish_processes_into(s, &mut w, &completed, ProcessStatus::Completed, None);
    }
    crate::observe::timed("settle writes", w.run(&txn)).await?;
    crate::observe::timed("settle commit", txn.commit()).await?;
    for mut g in std::mem::take(gs) {
        g.ctx.marks.committed();
        if completed.contains(&g.ctx.p.id) {
            out.push(Step::Done(g, ProcessStatus::Completed));
        } else {
            out.push(Step::HandOver(g, None));
        }
    }
    Ok(())
}

/// The captures taken recorded with their effects (captures, authorizations' totals and
/// statuses, processes' captured amounts, requests' outcomes, payment lines paid): the
/// authorizations are locked in `txn` at once, the writes added to `w` for the caller to run in
/// it. With `renew`, the leases of those processes are renewed too: on PostgreSQL by the statement
/// that locks the authorizations, on SQLite by a statement sent first ([`marks::renew_leases`]).
/// Returns each invoicing's stage-2 result message, for [`captures_recorded`], whether a fault is
/// set at the journal (Paystage's own, [`crate::connector::faults::JournalHook::armed`]; see
/// [`settle`]) and whether every lease asked for was renewed (true when none was). A capture
/// whose request another runner recorded meanwhile (issue #39) is not written: its message is `None`.
pub(super) async fn record_captures(s: &Services, txn: &sea_orm::DatabaseTransaction, w: &mut Writes, gs: &[Going], renew: Option<&[i32]>) -> ServiceResult<(Vec<Option<String>>, bool, bool)> {
    let now = s.now();
    let mut captured = Vec::new();
    for g in gs {
        let c = g.captured.clone().ok_or_else(|| ServiceError::internal("no capture was taken"))?;
        captured.push((g, c));
    }
    let auth_ids: Vec<i32> = captured.iter().filter_map(|(g, _)| Some(g.capture.as_ref()?.0.id)).collect();
    let journal_fault = s.journal_faults().armed(txn).await?;
    let read = for_update(au::Entity::find().filter(au::Column::Id.is_in(auth_ids)).order_by_asc(au::Column::Id), txn);
    let (rows, renewed) = match renew {
        None => (txn.query_all(&read.into_query()).await?, true),
        // On PostgreSQL the renewal goes in the same statement, a round trip fewer on every
        // batched invoicing's path (issue #3): a data-modifying CTE, which runs whether or not
        // the select reads it, counted by the select. The two touch other tables; the
        // authorizations are still locked in id order.
        Some(ids) if txn.get_database_backend() == sea_orm::DbBackend::Postgres => {
            use sea_orm::sea_query::{Alias, CommonTableExpression, WithClause};
            let mut renewal = marks::lease_renewal(s, ids, &[]);
            renewal.returning_col(pp::Column::Id);
            let renewals = Alias::new("renewed_leases");
            let cte = CommonTableExpression::new().query(renewal).table_name(renewals).to_owned();
            let read = read.expr_as(Expr::cust("(SELECT count(*) FROM renewed_leases)"), "renewed").into_query();
            let rows = txn.query_all(&WithClause::new().cte(cte).to_owned().query(read)).await?;
            // No authorization read: the capture's below is reported missing.
            let renewed = match rows.first() {
                Some(row) => row.try_get::<i64>("", "renewed")? == ids.len() as i64,
                None => true,
            };
            (rows, renewed)
        }
        Some(ids) => {
            let renewed = marks::renew_leases(s, txn, ids, &[]).await?;
            (txn.query_all(&read.into_query()).await?, renewed)
        }
    };
    let mut locked = Vec::new();
    for row in rows {
        locked.push(au::Model::from_query_result(&row, "")?);
    }
    // The requests still open, locked (on PostgreSQL) against a runner recording them meanwhile.
    let asked: Vec<i32> = captured.iter().filter_map(|(g, _)| Some(g.capture.as_ref()?.1.id)).collect();
    let open_requests: Vec<i32> = for_update(pr::Entity::find().filter(pr::Column::Id.is_in(asked)).filter(pr::Column::Status.is_in(crate::ledger::requests::OPEN_STATUSES.map(|st| st.code()))), txn)
        .all(txn)
        .await?
        .iter()
        .map(|r| r.id)
        .collect();
    let (mut auth_total, mut auth_status, mut process_total, mut reference) = (CaseStatement::new(), CaseStatement::new(), CaseStatement::new(), CaseStatement::new());
    let (mut rows, mut paid, mut messages, mut requests) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (g, c) in &captured {
        let (auth, req, _) = g.capture.as_ref().expect("requested above");
        if !open_requests.contains(&req.id) {
            messages.push(None);
            continue;
        }
        let a = locked.iter().find(|a| a.id == auth.id).ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
        let total = a.captured_minor + c.amount.minor();
        let status = super::super::capture::status_after_capture(a, total, c.authorization_closed);
        rows.push(super::super::capture::capture_row(a, Some(g.ctx.p.invoice_id), c, req, now));
        auth_total = auth_total.case(au::Column::Id.eq(a.id), Expr::value(total));
        auth_status = auth_status.case(au::Column::Id.eq(a.id), Expr::value(status.code()));
        process_total = process_total.case(pp::Column::Id.eq(g.ctx.p.id), Expr::value(c.amount.minor()));
        reference = reference.case(pr::Column::Id.eq(req.id), Expr::value(c.reference.clone()));
        requests.push(req.id);
        if status == AuthorizationStatus::FullyCaptured {
            paid.push(a.payment_line_id);
        }
        messages.push(Some(super::super::capture::captured_message(c, req, a, total, status)?));
    }
    if rows.is_empty() {
        return Ok((messages, journal_fault, renewed));
    }
    w.push_rows(rows);
    w.push(
        au::Entity::update_many()
            .col_expr(au::Column::CapturedMinor, auth_total.finally(Expr::col(au::Column::CapturedMinor)).into())
            .col_expr(au::Column::Status, auth_status.finally(Expr::col(au::Column::Status)).into())
            .filter(au::Column::Id.is_in(locked.iter().map(|a| a.id)))
            .into_query(),
    );
    w.push(
        pp::Entity::update_many()
            .col_expr(pp::Column::CapturedMinor, Expr::col(pp::Column::CapturedMinor).add(Into::<Expr>::into(process_total.finally(Expr::value(0i64)))))
            .filter(pp::Column::Id.is_in(captured.iter().map(|(g, _)| g.ctx.p.id)))
            .into_query(),
    );
    w.push(
        pr::Entity::update_many()
            .col_expr(pr::Column::Status, Expr::value(RequestStatus::Succeeded.code()))
            .col_expr(pr::Column::ProcessorReference, reference.finally(Expr::col(pr::Column::ProcessorReference)).into())
            .col_expr(pr::Column::Message, Expr::value(Option::<String>::None))
            .col_expr(pr::Column::CompletedAt, Expr::value(Some(now)))
            .filter(pr::Column::Id.is_in(requests))
            .filter(pr::Column::Status.is_in(crate::ledger::requests::OPEN_STATUSES.map(|st| st.code())))
            .into_query(),
    );
    if !paid.is_empty() {
        w.push(pl::Entity::update_many().col_expr(pl::Column::Status, Expr::value(PaymentStatus::Paid.code())).filter(pl::Column::Id.is_in(paid)).into_query());
    }
    Ok((messages, journal_fault, renewed))
}

/// After [`record_captures`]: each invoicing's run holds its capture and stage 2's end.
pub(super) fn captures_recorded(s: &Services, gs: &mut [Going], messages: Vec<String>) -> ServiceResult<()> {
    let stage = Stage::CaptureOrRefund;
    let now = s.now();
    for (g, message) in gs.iter_mut().zip(messages) {
        let amount = g.captured.as_ref().map(|c| c.amount.minor()).unwrap_or_default();
        g.ctx.p.captured_minor += amount;
        super::super::runner::ended_in(&mut g.rows, g.ctx.p.id, stage, StageStatus::Succeeded, 1)?;
        g.ctx.marks.end(stage, StageStatus::Succeeded, 1, now, None, message);
    }
    Ok(())
}

/// Another server took one of these processes over (this one stalled past its lease): as on the
/// one-at-a-time path, this run writes nothing more and reports them running. The others stay
/// under this server's lease until it runs out; then recovery finishes them.
pub(super) fn lease_lost(gs: &mut Vec<Going>, out: &mut Vec<Step>) {
    out.extend(std::mem::take(gs).into_iter().map(|g| Step::Done(g, ProcessStatus::Running)));
}
