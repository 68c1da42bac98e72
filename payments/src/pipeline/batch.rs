//! Stage 1 for many invoicings at once (issue #3). Invoicings that arrive while this server is
//! posting others wait their turn; the next turn posts everything waiting in one transaction with
//! one statement per kind of row (orders locked, lines moved, invoices, lines, journals, processes,
//! stage rows and log lines), instead of some twenty statements per invoice. Each invoice is
//! checked and computed exactly as on its own ([`super::Plan`]); an invoicing with anything
//! unusual (an order on hold, cancelled, with a deposit, with an authorization expiry has not
//! stored yet, an unfinished process, a quantity that is refused, the same order twice) is left
//! to the one-at-a-time path, which reports it or posts it as before. A database error before the
//! commit undoes the whole turn and leaves every invoicing of it to that path: nothing of the turn
//! was written.
use super::{log_lines_of, monitored, new_process, new_stage_rows, post_new_journals, set_numbers, unfinished, wanted, LogLine, Plan, Posted};
use crate::domain::order::OrderStatus;
use crate::domain::pipeline::Stage;
use crate::entity::{invoice as inv, invoice_line as il, payment_process as pp, process_stage as ps, sales_order as so, sales_order_line as sol};
use crate::error::{ServiceError, ServiceResult};
use crate::service::{features, for_update, parameters, Services};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// This server's invoicings waiting to be posted, and whose turn it is to post them.
#[derive(Debug)]
pub struct InvoiceBatches {
    enabled: bool,
    waiting: std::sync::Mutex<Vec<Job>>,
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Turns that posted at least one invoice, and the invoices they posted.
    turns: AtomicU64,
    posted: AtomicU64,
}

impl InvoiceBatches {
    pub fn new(enabled: bool) -> Self {
        InvoiceBatches { enabled, waiting: Default::default(), turn: Default::default(), turns: AtomicU64::new(0), posted: AtomicU64::new(0) }
    }

    /// Takes the turn and keeps it until the guard is dropped: invoicings wait, then the next turn
    /// posts all of them together (how tests gather a batch).
    pub async fn hold(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.turn.clone().lock_owned().await
    }

    /// How many invoicings are waiting for a turn.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// (turns that posted invoices, invoices they posted) since these services started.
    pub fn counts(&self) -> (u64, u64) {
        (self.turns.load(Ordering::Relaxed), self.posted.load(Ordering::Relaxed))
    }
}

/// An invoicing waiting for a turn. It carries its own services: a clone may name another server
/// instance or clock (the database is the same).
struct Job {
    s: Services,
    actor: String,
    order_id: i32,
    wanted: Vec<(i32, i32)>,
    reply: oneshot::Sender<ServiceResult<Option<Posted>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("order_id", &self.order_id).field("wanted", &self.wanted).finish()
    }
}

/// Posts the invoice of `quantities` of an order together with the others waiting. `None`: this
/// invoicing is left to the one-at-a-time path (nothing of it was written).
pub(super) async fn post(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)]) -> ServiceResult<Option<Posted>> {
    let wanted = wanted(quantities);
    if !s.invoicing.enabled || wanted.is_empty() {
        return Ok(None);
    }
    let (reply, mut answer) = oneshot::channel();
    let job = Job { s: s.clone(), actor: actor.to_string(), order_id, wanted, reply };
    s.invoicing.waiting.lock().unwrap_or_else(|e| e.into_inner()).push(job);
    let turn = s.invoicing.turn.clone().lock_owned().await;
    // The turn before this one may have posted this invoicing already.
    if let Ok(done) = answer.try_recv() {
        return done;
    }
    let jobs = std::mem::take(&mut *s.invoicing.waiting.lock().unwrap_or_else(|e| e.into_inner()));
    if jobs.is_empty() {
        // Taken by a turn whose caller went away while it ran; it answers when it is done.
        drop(turn);
    } else {
        // The turn runs to its end even if this caller goes away, and keeps the turn until then:
        // every invoicing it took gets its answer.
        let batches = s.invoicing.clone();
        tokio::spawn(async move {
            let posted = post_all(jobs).await;
            if posted > 0 {
                batches.turns.fetch_add(1, Ordering::Relaxed);
                batches.posted.fetch_add(posted, Ordering::Relaxed);
            }
            drop(turn);
        });
    }
    answer.await.map_err(|_| ServiceError::Conflict("Invoicing stopped unexpectedly; look for the invoice on the order before invoicing again.".into()))?
}

/// Posts every job it can in one transaction and answers each; returns how many it posted.
async fn post_all(jobs: Vec<Job>) -> u64 {
    let mut taken = Vec::new();
    let mut left = Vec::new();
    match post_many(&jobs).await {
        Ok(posted) => {
            for (job, p) in jobs.into_iter().zip(posted) {
                match p {
                    Some(p) => taken.push((job, p)),
                    None => left.push(job),
                }
            }
        }
        Err(Failure::BeforeCommit(e)) => {
            // Nothing of the turn was written; each invoicing goes its own way and meets the
            // cause there if it is still there.
            eprintln!("paystage: posting {} invoices together failed ({e}); posting each on its own", jobs.len());
            left = jobs;
        }
        Err(Failure::Commit(e)) => {
            // Whether the commit took effect is unknown: no invoicing of the turn is posted again
            // here; each caller is told, and the order shows what was posted.
            let text = e.to_string();
            for job in jobs {
                let _ = job.reply.send(Err(ServiceError::Conflict(format!("Posting the invoice failed ({text}); look for it on the order before invoicing again."))));
            }
            return 0;
        }
    }
    let n = taken.len() as u64;
    for (job, p) in taken {
        let _ = job.reply.send(Ok(Some(p)));
    }
    for job in left {
        let _ = job.reply.send(Ok(None));
    }
    n
}

enum Failure {
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

/// One transaction for all of `jobs`; for each, what was posted, or `None` for one left out.
async fn post_many(jobs: &[Job]) -> Result<Vec<Option<Posted>>, Failure> {
    let db = &jobs[0].s.db;
    let ids: Vec<i32> = jobs.iter().map(|j| j.order_id).collect::<HashSet<_>>().into_iter().collect();
    let txn = db.begin().await?;
    // Locked in id order, so that two turns on two servers never wait for each other in a cycle.
    let orders: HashMap<i32, so::Model> = for_update(so::Entity::find().filter(so::Column::Id.is_in(ids.clone())).order_by_asc(so::Column::Id), &txn)
        .all(&txn)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    let expiry_due: HashSet<i32> = crate::service::expiry::due_orders(&txn, ids.clone()).await?.into_iter().collect();
    let busy: HashSet<i32> = pp::Entity::find()
        .select_only()
        .column(pp::Column::OrderId)
        .filter(pp::Column::OrderId.is_in(ids.clone()))
        .filter(pp::Column::Status.is_in(unfinished()))
        .into_tuple::<i32>()
        .all(&txn)
        .await?
        .into_iter()
        .collect();
    let mut lines: HashMap<i32, Vec<sol::Model>> = HashMap::new();
    for l in sol::Entity::find().filter(sol::Column::OrderId.is_in(ids)).order_by_asc(sol::Column::Id).all(&txn).await? {
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

    // The invoices, then their numbers once their ids are known.
    let rows: Vec<inv::ActiveModel> = chosen.iter().map(|(j, o, p)| p.document(o.id, j.s.now(), &j.actor)).collect();
    let provisional: Vec<String> = rows.iter().map(|r| r.number.clone().unwrap()).collect();
    let inserted = inv::Entity::insert_many(rows).exec_with_returning(&txn).await?;
    let mut invoices = Vec::with_capacity(chosen.len());
    for ((_, _, plan), number) in chosen.iter().zip(&provisional) {
        let i = inserted.iter().find(|i| &i.number == number).cloned().ok_or(sea_orm::DbErr::RecordNotInserted)?;
        invoices.push(inv::Model { number: plan.number(i.id), ..i });
    }
    let numbers: Vec<(i32, String)> = invoices.iter().map(|i| (i.id, i.number.clone())).collect();
    set_numbers::<inv::Entity>(&txn, inv::Column::Id, inv::Column::Number, &numbers).await?;
    il::Entity::insert_many(chosen.iter().zip(&invoices).flat_map(|((_, _, p), i)| p.invoice_lines(i.id)))
        .exec_without_returning(&txn)
        .await?;

    // Every line moved in one statement, each conditional on the quantity read above: if any was
    // changed meanwhile, the whole turn is undone and each invoicing goes its own way.
    let moves: Vec<(i32, i32, i32)> = chosen.iter().flat_map(|(_, _, p)| p.line_moves().1).collect();
    let case = moves.iter().fold(CaseStatement::new(), |c, (id, _, after)| c.case(sol::Column::Id.eq(*id), Expr::value(*after)));
    let guard = moves.iter().fold(Condition::any(), |c, (id, before, _)| c.add(sol::Column::Id.eq(*id).and(sol::Column::InvoicedQuantity.eq(*before))));
    let moved = sol::Entity::update_many()
        .col_expr(sol::Column::InvoicedQuantity, case.finally(Expr::col(sol::Column::InvoicedQuantity)).into())
        .filter(guard)
        .exec(&txn)
        .await?;
    if moved.rows_affected != moves.len() as u64 {
        txn.rollback().await?;
        return Err(Failure::BeforeCommit(super::concurrent_invoicing()));
    }
    let mut orders_after: Vec<so::Model> = Vec::with_capacity(chosen.len());
    let mut status_case = CaseStatement::new();
    for (_, o, plan) in &chosen {
        let status = plan.order_status().unwrap_or(OrderStatus::PartiallyInvoiced);
        status_case = status_case.case(so::Column::Id.eq(o.id), Expr::value(status.code()));
        orders_after.push(so::Model { status: status.code().to_string(), ..(*o).clone() });
    }
    so::Entity::update_many()
        .col_expr(so::Column::Status, status_case.finally(Expr::col(so::Column::Status)).into())
        .filter(so::Column::Id.is_in(orders_after.iter().map(|o| o.id)))
        .exec(&txn)
        .await?;
    let journals = chosen
        .iter()
        .zip(&orders_after)
        .zip(&invoices)
        .map(|(((j, _, plan), order), invoice)| {
            let (posting, lines) = plan.journal(order, invoice);
            (j.s.now(), posting, lines)
        })
        .collect();
    post_new_journals(&txn, journals).await?;

    // The payment processes, leased to their servers, with their stage rows and first log line.
    let feats = features::load(&txn).await?;
    let params = parameters::load(&txn).await?;
    let monitored = monitored(&feats, &params);
    let processes = pp::Entity::insert_many(chosen.iter().zip(&invoices).map(|((j, _, _), i)| new_process(&j.s, i.posted_at, i, monitored)))
        .exec_with_returning(&txn)
        .await?;
    let mut posted_processes = Vec::with_capacity(invoices.len());
    for i in &invoices {
        posted_processes.push(processes.iter().find(|p| p.invoice_id == i.id).cloned().ok_or(sea_orm::DbErr::RecordNotInserted)?);
    }
    let stages: Vec<Vec<ps::Model>> = posted_processes.iter().map(|p| new_stage_rows(p.id, p.created_at)).collect();
    ps::Entity::insert_many(stages.iter().flatten().cloned().map(ps::ActiveModel::from)).exec_without_returning(&txn).await?;
    let logs = chosen.iter().zip(&orders_after).zip(&invoices).zip(&posted_processes).map(|((((_, _, plan), order), invoice), p)| {
        (p.id, LogLine { at: p.created_at, stage: Stage::PostInvoice, attempt: 1, message: plan.posted_message(order, invoice) })
    });
    log_lines_of(&txn, logs).await?;
    txn.commit().await.map_err(Failure::Commit)?;

    let mut posted = invoices.into_iter().zip(posted_processes).zip(orders_after).zip(stages).map(|(((invoice, process), order), stages)| Posted {
        invoice,
        process,
        order,
        stages,
        settings: (feats.clone(), params.clone()),
    });
    Ok(plans.iter().map(|p| p.as_ref().and_then(|_| posted.next())).collect())
}
