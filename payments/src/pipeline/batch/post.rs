//! Stage 1 for a whole group in one transaction: the orders locked, the invoices, processes and
//! journals' ids, and each capture decided (`domain::capture::decide_capture`) with its intent.
use crate::ledger::journals::{post_new_journals_with};
use crate::writes::Writes;
use crate::domain::order::{AuthorizationStatus, Command, OrderStatus};
use crate::ledger::requests::Purpose;
use crate::domain::capture::{decide_capture, CaptureDecision, CapturePath};
use crate::domain::money::{Currency, Money};
use crate::domain::pipeline::{Stage, StageStatus};
use crate::entity::{
    authorization as au, connector, connector_merchant_property as cmp, invoice as inv, journal,
    payment_process as pp, process_stage as ps, processor_request as pr, sales_order as so, sales_order_line as sol,
};
use crate::error::ServiceError;
use crate::db::for_update;
use crate::ledger::settings as features;
use crate::runtime::Services;
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, IntoCondition};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityName, EntityTrait, FromQueryResult, IdenStatic, Iterable, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait, TryIntoModel};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use super::super::document::{Plan, Posted, monitored, new_process, new_stage_rows, unfinished};
use super::super::log::{LogLine, log_lines_into};
use super::*;

pub(super) enum Failure {
    BeforeCommit(ServiceError),
    Commit(sea_orm::DbErr),
}

impl From<sea_orm::DbErr> for Failure {
    fn from(e: sea_orm::DbErr) -> Self {
        Failure::BeforeCommit(e.into())
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Failure::BeforeCommit(e)
    }
}

/// Whether two invoicings' services may run a step together: same server instance, lease, clock
/// and connector (clones of one `Services` are; tests make others).
pub(super) fn alike(a: &Services, b: &Services) -> bool {
    a.instance == b.instance && a.lease == b.lease && Arc::ptr_eq(&a.clock, &b.clock) && Arc::ptr_eq(&a.connector, &b.connector)
}

/// One transaction for all of `jobs`; for each, what was posted with the capture requested for it
/// (stage 2 up to the processor) and, on PostgreSQL, the id its payment journal will take, or
/// `None` for one left out.
pub(super) async fn post_many(jobs: &[Job]) -> Result<Vec<Option<(Posted, Option<Requested>, Option<i32>)>>, Failure> {
    let db = &jobs[0].s.db;
    let ids: Vec<i32> = jobs.iter().map(|j| j.order_id).collect::<HashSet<_>>().into_iter().collect();
    let txn = crate::observe::timed("post begin", db.begin()).await?;
    // Locked in id order, so that two turns on two servers never wait for each other in a cycle.
    let orders: HashMap<i32, so::Model> = for_update(so::Entity::find().filter(so::Column::Id.is_in(ids.clone())).order_by_asc(so::Column::Id), &txn)
        .all(&txn)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    // The orders' lines, each with whether its order has an authorization the expiry job has
    // passed and not yet stored, or an unfinished payment process: one statement, read after the
    // orders are locked (on PostgreSQL each statement sees what committed before it began, and
    // the lock may have waited for another invoicing of the same order). An order with no lines
    // has nothing to invoice here.
    let order_id = || Expr::col((sol::Entity, sol::Column::OrderId));
    let busy = pp::Entity::find().select_only().expr(Expr::val(1)).filter(Expr::col((pp::Entity, pp::Column::OrderId)).eq(order_id())).filter(pp::Column::Status.is_in(unfinished()));
    let flag = |e: Expr| Expr::case(e, 1).finally(0);
    let read = sol::Entity::find()
        .filter(sol::Column::OrderId.is_in(ids))
        .order_by_asc(sol::Column::Id)
        .expr_as(flag(crate::ledger::expiry::due_for(order_id())), "expiry_due")
        .expr_as(flag(Expr::exists(busy.into_query())), "busy");
    let (mut expiry_due, mut busy, mut lines) = (HashSet::new(), HashSet::new(), HashMap::<i32, Vec<sol::Model>>::new());
    for row in txn.query_all(&read.into_query()).await? {
        let l = sol::Model::from_query_result(&row, "")?;
        if row.try_get::<i32>("", "expiry_due")? == 1 {
            expiry_due.insert(l.order_id);
        }
        if row.try_get::<i32>("", "busy")? == 1 {
            busy.insert(l.order_id);
        }
        lines.entry(l.order_id).or_default().push(l);
    }
    // Which jobs this turn posts, each with its plan.
    let mut seen = HashSet::new();
    let mut plans: Vec<Option<(&so::Model, Plan<'_>)>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let plan = orders.get(&job.order_id).filter(|o| {
            !o.do_not_process
                && !o.prepayment
                && o.status != OrderStatus::Cancelled.code()
                && !expiry_due.contains(&o.id)
                && !busy.contains(&o.id)
                && seen.insert(o.id)
                && job.wanted.iter().map(|(l, _)| l).collect::<HashSet<_>>().len() == job.wanted.len()
        });
        let plan = plan.and_then(|o| Plan::new(o, lines.get(&o.id).map(Vec::as_slice).unwrap_or_default(), &job.wanted, false).ok().map(|p| (o, p)));
        plans.push(plan);
    }
    if plans.iter().all(Option::is_none) {
        txn.rollback().await?;
        return Ok(jobs.iter().map(|_| None).collect());
    }
    let chosen: Vec<(&Job, &so::Model, &Plan<'_>)> = jobs.iter().zip(&plans).filter_map(|(j, p)| p.as_ref().map(|(o, p)| (j, *o, p))).collect();
    // The writes nothing later reads, sent together before the commit.
    let mut w = Writes::on(&txn);

    // The ids of every row the rows after it refer to, in one statement (`crate::ids`): each
    // invoice's, its invoice journal's, its process's and its capture intent's (unused where no
    // capture is requested). On PostgreSQL, whose ids come from sequences and are never given
    // twice, also the id of the customer payment journal the settle step posts (a round trip
    // fewer there); on SQLite ids follow what is stored, so the settle step takes its own.
    let n = chosen.len();
    let later = if db.get_database_backend() == sea_orm::DbBackend::Postgres { n } else { 0 };
    let tables = [(inv::Entity.table_name(), n), (journal::Entity.table_name(), n + later), (pp::Entity.table_name(), n), (pr::Entity.table_name(), n)];
    let [invoice_ids, mut journal_ids, process_ids, request_ids]: [Vec<i32>; 4] =
        crate::ids::take(&txn, &tables).await?.try_into().map_err(|_| sea_orm::DbErr::Custom("ids were taken for other tables".into()))?;
    let payment_journal_ids: Vec<Option<i32>> = if later > 0 { journal_ids.split_off(n).into_iter().map(Some).collect() } else { vec![None; n] };

    // The invoices, numbered from their ids.
    let mut invoices = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for ((j, o, plan), id) in chosen.iter().zip(invoice_ids) {
        let mut row = plan.document(o.id, crate::ids::as_stored(j.s.now()), &j.actor);
        row.id = sea_orm::Set(id);
        row.number = sea_orm::Set(plan.number(id));
        row.prepaid_minor = sea_orm::Set(0);
        invoices.push(row.clone().try_into_model()?);
        rows.push(row);
    }
    w.push_rows(rows);
    w.push_rows(chosen.iter().zip(&invoices).flat_map(|((_, _, p), i)| p.invoice_lines(i.id)));

    // Every line moved in one statement, each conditional on the quantity read above, sent with
    // the other writes and counted with them: if any was changed meanwhile (its order is locked,
    // so none should be), fewer rows are written than counted, and the whole turn is undone and
    // each invoicing goes its own way.
    let moves: Vec<(i32, i32, i32)> = chosen.iter().flat_map(|(_, _, p)| p.line_moves().1).collect();
    let case = moves.iter().fold(CaseStatement::new(), |c, (id, _, after)| c.case(sol::Column::Id.eq(*id), Expr::value(*after)));
    let guard = moves.iter().fold(Condition::any(), |c, (id, before, _)| c.add(sol::Column::Id.eq(*id).and(sol::Column::InvoicedQuantity.eq(*before))));
    w.push_counted(
        sol::Entity::update_many().col_expr(sol::Column::InvoicedQuantity, case.finally(Expr::col(sol::Column::InvoicedQuantity)).into()).filter(guard).into_query(),
        moves.len() as u64,
    );
    let mut orders_after: Vec<so::Model> = Vec::with_capacity(chosen.len());
    let mut status_case = CaseStatement::new();
    for (_, o, plan) in &chosen {
        let status = plan.order_status().unwrap_or(OrderStatus::PartiallyInvoiced);
        status_case = status_case.case(so::Column::Id.eq(o.id), Expr::value(status.code()));
        orders_after.push(so::Model { status: status.code().to_string(), ..(*o).clone() });
    }
    w.push_counted(
        so::Entity::update_many()
            .col_expr(so::Column::Status, status_case.finally(Expr::col(so::Column::Status)).into())
            .filter(so::Column::Id.is_in(orders_after.iter().map(|o| o.id)))
            .into_query(),
        orders_after.len() as u64,
    );
    let journals = chosen
        .iter()
        .zip(&orders_after)
        .zip(&invoices)
        .map(|(((j, _, plan), order), invoice)| {
            let (posting, lines) = plan.journal(order, invoice);
            (j.s.now(), posting, lines)
        })
        .collect();
    post_new_journals_with(&txn, &mut w, journals, Some(journal_ids)).await?;

    // Stage 2 up to the processor for the invoicings that run on together: each order's open
    // authorization, the capture path (R-CAP-2) and the intent with its tracking id (R-CAP-5),
    // committed with the invoice, so that the processor is called as soon as it is posted.
    let (feats, params) = features::load_with_parameters(&txn).await?;
    let lead = &chosen[0].0.s;
    let mut captures = plan_captures(&txn, lead, &chosen, &invoices, &feats, &params).await?;

    // The payment processes, leased to their servers, with their stage rows and log lines.
    let monitored = monitored(&feats, &params);
    let mut rows = Vec::with_capacity(n);
    let mut posted_processes = Vec::with_capacity(n);
    for (((j, _, _), i), (c, id)) in chosen.iter().zip(&invoices).zip(captures.iter().zip(process_ids)) {
        let mut p = new_process(&j.s, i.posted_at, i, monitored);
        p.id = sea_orm::Set(id);
        p.capture_path = sea_orm::Set(c.as_ref().map(|c| c.path.explanation()));
        p.capture_kind = sea_orm::Set(c.as_ref().map(|c| c.path.kind().code().to_string()));
        posted_processes.push(p.clone().try_into_model()?);
        rows.push(p);
    }
    w.push_rows(rows);
    let stage = Stage::CaptureOrRefund;
    let now = lead.now();
    let mut intents = Vec::new();
    let mut requested = Vec::with_capacity(n);
    for ((c, i), (p, id)) in captures.iter_mut().zip(&invoices).zip(posted_processes.iter().zip(request_ids)) {
        let Some(c) = c.as_mut() else {
            requested.push(None);
            continue;
        };
        let mut reference = c.reference.take().ok_or(sea_orm::DbErr::RecordNotInserted)?;
        reference.initiated_at = crate::ids::as_stored(reference.initiated_at);
        let purpose = Purpose { order_id: i.order_id, authorization_id: Some(c.auth.id), process: Some((p.id, stage)), capture_id: None };
        let mut intent = crate::ledger::requests::intent(c.auth.connector_id, Command::Capture, c.money, purpose, reference);
        intent.id = sea_orm::Set(id);
        requested.push(Some((c.auth.clone(), intent.clone().try_into_model()?, matches!(c.path, CapturePath::Legacy(_)))));
        intents.push(intent);
    }
    w.push_rows(intents);
    let mut stages: Vec<Vec<ps::Model>> = posted_processes.iter().map(|p| new_stage_rows(p.id, p.created_at)).collect();
    for (rows, r) in stages.iter_mut().zip(&requested) {
        if r.is_some() {
            let row = rows.iter_mut().find(|r| r.stage == stage.code()).ok_or(sea_orm::DbErr::RecordNotInserted)?;
            row.status = StageStatus::Running.code().to_string();
            row.attempts = 1;
            row.started_at = Some(now);
        }
    }
    w.push_rows(stages.iter().flatten().cloned().map(ps::ActiveModel::from));
    let mut logs = Vec::new();
    for (((((_, _, plan), order), invoice), p), (c, r)) in chosen.iter().zip(&orders_after).zip(&invoices).zip(&posted_processes).zip(captures.iter_mut().zip(&requested)) {
        logs.push((p.id, LogLine { at: p.created_at, stage: Stage::PostInvoice, attempt: 1, message: plan.posted_message(order, invoice) }));
        if let (Some(c), Some((auth, req, _))) = (c, r) {
            logs.push((p.id, LogLine { at: now, stage, attempt: 1, message: super::super::runner::start_message(1, false) }));
            logs.push((p.id, LogLine { at: now, stage, attempt: 1, message: std::mem::take(&mut c.message) }));
            logs.push((p.id, LogLine { at: now, stage, attempt: 1, message: super::super::capture::capture_requested(req, auth)? }));
        }
    }
    log_lines_into(&mut w, logs);
    let counted = w.counted();
    let written = crate::observe::timed("post writes", w.run(&txn)).await?;
    if counted != Some(written) {
        txn.rollback().await?;
        return Err(Failure::BeforeCommit(super::super::document::concurrent_invoicing()));
    }
    crate::observe::timed("post commit", txn.commit()).await.map_err(Failure::Commit)?;

    let mut posted = invoices.into_iter().zip(posted_processes).zip(orders_after).zip(stages).zip(requested).zip(payment_journal_ids).map(
        |(((((invoice, process), order), stages), requested), journal_id)| {
            (Posted { invoice, process, order, stages, settings: (feats.clone(), params.clone()) }, requested, journal_id)
        },
    );
    Ok(plans.iter().map(|p| p.as_ref().and_then(|_| posted.next())).collect())
}

/// The capture stage 1 requested for a batched invoicing: the authorization, the intent
/// (R-CAP-5) and whether it is the final capture (the legacy path, R-CAP-3).
pub(super) type Requested = (au::Model, pr::Model, bool);

/// A capture chosen for a batched invoicing in stage 1's transaction: the order's open
/// authorization, the path, the amount, the tracking id obtained from the connector and the
/// stage's first log line.
pub(super) struct PlannedCapture {
    pub(super) auth: au::Model,
    pub(super) path: CapturePath,
    pub(super) money: Money,
    pub(super) reference: Option<crate::connector::PaymentReference>,
    pub(super) message: String,
}

/// For each invoicing of `chosen` that runs on with `lead` (the same services), the capture to
/// request, as the one-at-a-time stage 2 chooses it; `None` where stage 2 is left to that path
/// (no open authorization, one that has expired, nothing left on it, no tracking id).
pub(super) async fn plan_captures(
    txn: &sea_orm::DatabaseTransaction,
    lead: &Services,
    chosen: &[(&Job, &so::Model, &Plan<'_>)],
    invoices: &[inv::Model],
    feats: &crate::domain::features::FeatureSet,
    params: &crate::domain::parameters::Parameters,
) -> Result<Vec<Option<PlannedCapture>>, sea_orm::DbErr> {
    let now = lead.now();
    let orders: Vec<i32> = chosen.iter().filter(|(j, ..)| alike(&j.s, lead)).map(|(_, o, _)| o.id).collect();
    let open = open_authorizations(txn, &orders).await?;
    let mut out = Vec::with_capacity(chosen.len());
    for ((_, order, _), invoice) in chosen.iter().zip(invoices) {
        let due = invoice.amount_minor - invoice.prepaid_minor;
        let found = orders.contains(&order.id).then(|| open.iter().find(|(a, ..)| a.order_id == order.id)).flatten();
        let conditions = found.map(|(auth, conn, props)| super::super::capture::conditions_of(auth, feats, params, props.as_ref(), conn.as_ref(), now));
        // The decision the one-at-a-time stage takes; anything but a capture is left to that path.
        let decision = decide_capture(due, found.zip(conditions.as_ref()).map(|((a, ..), c)| (super::super::capture::open_authorization(a), c)), now);
        let (Some((auth, ..)), CaptureDecision::Capture { path, amount_minor: amount, .. }) = (found, decision) else {
            out.push(None);
            continue;
        };
        // An unreadable currency leaves this invoicing to the one-at-a-time path, which reports it.
        let Ok(currency) = Currency::stored(&invoice.currency) else {
            out.push(None);
            continue;
        };
        let money = Money::from_minor(amount, currency);
        // The connector's payment reference data (a tracking id made up where the SDK runs, no
        // call to the processor).
        let Ok(reference) = lead.processor(auth.connector_id).payment_reference(Command::Capture, money).await else {
            out.push(None);
            continue;
        };
        let Ok(message) = super::super::capture::capture_message(&path, invoice, due, amount) else {
            out.push(None);
            continue;
        };
        out.push(Some(PlannedCapture { auth: auth.clone(), path, money, reference: Some(reference), message }));
    }
    Ok(out)
}

/// The open authorizations of `orders`, newest first, each with its connector and that
/// connector's merchant properties on its order's channel (R-CAP-2's conditions), in one
/// statement (issue #3: it was two, each a round trip on stage 1's path on PostgreSQL and a
/// hand-off to sqlx's worker thread on SQLite). Read after the orders are locked, as the
/// one-at-a-time stage 2 reads them.
pub(super) async fn open_authorizations(txn: &impl sea_orm::ConnectionTrait, orders: &[i32]) -> Result<Vec<(au::Model, Option<connector::Model>, Option<cmp::Model>)>, sea_orm::DbErr> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let mut read = au::Entity::find()
        .filter(au::Column::OrderId.is_in(orders.iter().copied()))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .order_by_desc(au::Column::Id)
        .join(JoinType::LeftJoin, au::Entity::belongs_to(connector::Entity).from(au::Column::ConnectorId).to(connector::Column::Id).into())
        .join(JoinType::InnerJoin, au::Entity::belongs_to(so::Entity).from(au::Column::OrderId).to(so::Column::Id).into())
        .join(
            JoinType::LeftJoin,
            au::Entity::belongs_to(cmp::Entity)
                .from(au::Column::ConnectorId)
                .to(cmp::Column::ConnectorId)
                .on_condition(|_, _| Expr::col((cmp::Entity, cmp::Column::ChannelId)).equals((so::Entity, so::Column::ChannelId)).into_condition())
                .into(),
        );
    for c in <connector::Column as Iterable>::iter() {
        read = read.column_as(c.select_as(Expr::col((connector::Entity, c))), format!("c_{}", c.as_str()));
    }
    for c in <cmp::Column as Iterable>::iter() {
        read = read.column_as(c.select_as(Expr::col((cmp::Entity, c))), format!("p_{}", c.as_str()));
    }
    let mut open = Vec::new();
    for row in txn.query_all(&read.into_query()).await? {
        open.push((au::Model::from_query_result(&row, "")?, connector::Model::from_query_result_optional(&row, "c_")?, cmp::Model::from_query_result_optional(&row, "p_")?));
    }
    Ok(open)
}
