//! The invoice payment pipeline (R-PIP-1..6, R-CAP-1..6). Invoicing posts the invoice and creates
//! its payment process in one transaction; the process then runs stages 2–4, each recorded with
//! status, attempts, times, error and an execution log. A process is run only by the server that
//! holds its lease (a conditional UPDATE, so two servers on one PostgreSQL never both run it);
//! recovery takes over processes whose lease ran out and finishes them.
mod batch;
pub mod invariants;
mod marks;
pub mod queries;
pub mod requests;
mod stages;
pub(crate) use stages::{capture_row, record_refund_row, status_after_capture};
pub use batch::InvoiceBatches;

use crate::domain::money::{Currency, Money};
use crate::domain::order::{accounts, balanced, JournalKind, JournalLine, OrderStatus};
use crate::domain::payment_views::InvoiceOutcome;
use crate::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use crate::entity::{
    invoice as inv, invoice_line as il, journal, journal_line as jl, payment_process as pp, process_stage as ps, sales_order as so,
    sales_order_line as sol, stage_log,
};
use crate::error::{ServiceError, ServiceResult};
use crate::service::{audit, features, for_update, Services};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Set, TransactionTrait, TryIntoModel, EntityName,
};
use crate::writes::Writes;

/// How a stage ended.
#[derive(Debug)]
pub(crate) enum StageEnd {
    Succeeded(String),
    Skipped(String),
    Failed(String),
    /// Another server took the process over: this run wrote nothing and stops.
    LeaseLost,
}

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
        if let Some(outcome) = batch::invoice(s, actor, order_id, quantities).await? {
            return refused_if_reversed(outcome);
        }
    }
    let posted = post_document(s, actor, order_id, quantities, Document::Invoice, cash_minor).await?;
    crate::crashpoint::hit("after:post_invoice");
    refused_if_reversed(run_posted(s, posted).await?)
}

/// An invoicing taken back because the card was not charged (monitoring off) is a refusal with
/// its reason: nothing is left invoiced, and the user may simply invoice again.
fn refused_if_reversed(outcome: InvoiceOutcome) -> ServiceResult<InvoiceOutcome> {
    if outcome.status != ProcessStatus::Reversed {
        return Ok(outcome);
    }
    let reason = outcome.error.unwrap_or_default();
    Err(ServiceError::Conflict(format!(
        "The card was not charged ({reason}). Nothing is invoiced: {} was reversed. Invoice again once the payment is sorted out.",
        outcome.invoice_number
    )))
}

/// Credits (returns) `quantities` (order line id, quantity) of invoiced lines: posts a credit note,
/// then the payment process refunds the card against the order's captures (stage 2), posts the
/// refund payment journal (stage 3); a credit leaves nothing to authorize (stage 4).
pub async fn credit(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)]) -> ServiceResult<InvoiceOutcome> {
    let posted = post_document(s, actor, order_id, quantities, Document::CreditNote, 0).await?;
    crate::crashpoint::hit("after:post_invoice");
    run_posted(s, posted).await
}

/// What stage 1 wrote: the invoice, its payment process and stage rows, and the order as it now
/// stands, so that the run that follows reads none of them again.
struct Posted {
    invoice: inv::Model,
    process: pp::Model,
    order: so::Model,
    stages: Vec<ps::Model>,
    /// The features and parameters stage 1 read, which the rest of this run uses.
    settings: (crate::domain::features::FeatureSet, crate::domain::parameters::Parameters),
}

async fn run_posted(s: &Services, posted: Posted) -> ServiceResult<InvoiceOutcome> {
    let Posted { invoice, process, order, stages, settings } = posted;
    let process_id = process.id;
    let ctx = stages::Ctx { p: process, invoice: invoice.clone(), order, marks: Default::default(), fresh: Some(settings) };
    let (status, error) = run_loaded(s, ctx, stages).await?;
    outcome_of(invoice, process_id, status, error)
}

fn outcome_of(invoice: inv::Model, process_id: i32, status: ProcessStatus, error: Option<String>) -> ServiceResult<InvoiceOutcome> {
    Ok(InvoiceOutcome {
        invoice_id: invoice.id,
        invoice_number: invoice.number,
        amount: Money::from_minor(invoice.amount_minor, Currency::stored(&invoice.currency)?),
        process_id,
        status,
        error,
    })
}

/// What stage 1 posts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Document {
    Invoice,
    CreditNote,
}

async fn outcome(s: &Services, invoice: inv::Model, process_id: i32, status: ProcessStatus) -> ServiceResult<InvoiceOutcome> {
    let p = pp::Entity::find_by_id(process_id).one(&s.db).await?;
    let error = p.and_then(|p| p.last_error).filter(|_| status != ProcessStatus::Completed);
    outcome_of(invoice, process_id, status, error)
}

fn quantity_error(message: impl Into<String>) -> ServiceError {
    ServiceError::field("quantities", message)
}

/// Stage 1: creates and posts the customer invoice and its journal, and creates the payment process
/// (leased to this server), all in one transaction. Nothing is written if anything is wrong.
pub async fn post_invoice(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)]) -> ServiceResult<(inv::Model, i32)> {
    post_document(s, actor, order_id, quantities, Document::Invoice, 0).await.map(|p| (p.invoice, p.process.id))
}

/// What stage 1 posts for chosen quantities of an order's lines, checked and computed the same way
/// by the one-at-a-time and the batched path ([`batch`]).
struct Plan<'a> {
    credit: bool,
    /// Each order line to invoice (or credit) with its quantity, in the order asked.
    inputs: Vec<(&'a sol::Model, i32)>,
    amounts: crate::domain::order::InvoiceAmounts,
    currency: Currency,
    /// After this invoice, nothing of any line is left to invoice.
    fully_invoiced: bool,
}

impl<'a> Plan<'a> {
    /// Checks `wanted` (order line id, quantity; none zero) against the order's `lines` as they
    /// stand, and computes the document's amounts.
    fn new(order: &so::Model, lines: &'a [sol::Model], wanted: &[(i32, i32)], credit: bool) -> ServiceResult<Plan<'a>> {
        let currency = Currency::stored(&order.currency)?;
        let mut inputs = Vec::new();
        for (line_id, qty) in wanted {
            let line = lines.iter().find(|l| l.id == *line_id).ok_or_else(|| quantity_error("A line does not belong to this order."))?;
            let (open, verb) = if credit {
                (line.invoiced_quantity - line.credited_quantity, "credited")
            } else {
                (line.quantity - line.invoiced_quantity, "invoiced")
            };
            if *qty < 0 || *qty > open {
                return Err(quantity_error(format!("Line {} ({}): {} can be {verb}, not {}.", line.line_no, line.item, open, qty)));
            }
            inputs.push((line, *qty));
        }
        if inputs.iter().enumerate().any(|(i, (l, _))| inputs[..i].iter().any(|(x, _)| x.id == l.id)) {
            return Err(quantity_error("A line is listed twice."));
        }
        let take: Vec<i64> =
            lines.iter().map(|l| inputs.iter().find(|(x, _)| x.id == l.id).map(|(_, q)| i64::from(*q)).unwrap_or(0)).collect();
        let states = crate::service::orders::line_states(lines, currency);
        let basis = crate::service::orders::basis(order, &states, currency)?;
        let amounts = if credit { basis.credit(&take) } else { basis.invoice(&take) }
            .map_err(|e| quantity_error(format!("The invoice cannot be computed: {e}.")))?;
        let fully_invoiced = lines
            .iter()
            .all(|l| l.invoiced_quantity + inputs.iter().find(|(x, _)| x.id == l.id).map(|(_, q)| *q).unwrap_or(0) >= l.quantity);
        Ok(Plan { credit, inputs, amounts, currency, fully_invoiced })
    }

    fn sign(&self) -> i64 {
        if self.credit {
            -1
        } else {
            1
        }
    }

    /// The document's row, numbered provisionally until its id is known ([`Plan::number`]).
    fn document(&self, order_id: i32, now: DateTime<Utc>, actor: &str) -> inv::ActiveModel {
        inv::ActiveModel {
            number: Set(format!("new-{}", uuid::Uuid::new_v4().simple())),
            order_id: Set(order_id),
            currency: Set(self.currency.code().to_string()),
            amount_minor: Set(self.sign() * self.amounts.total.minor()),
            posted_at: Set(now),
            posted_by: Set(actor.to_string()),
            ..Default::default()
        }
    }

    fn number(&self, invoice_id: i32) -> String {
        format!("{}-{:06}", if self.credit { "CRN" } else { "INV" }, invoice_id)
    }

    fn invoice_lines(&self, invoice_id: i32) -> impl Iterator<Item = il::ActiveModel> + '_ {
        self.inputs.iter().map(move |(line, qty)| il::ActiveModel {
            invoice_id: Set(invoice_id),
            order_line_id: Set(line.id),
            quantity: Set(if self.credit { -*qty } else { *qty }),
            amount_minor: Set(self.sign() * line.unit_price_minor * i64::from(*qty)),
            ..Default::default()
        })
    }

    /// The quantity column this document moves, and each line's (id, quantity before, after).
    fn line_moves(&self) -> (sol::Column, Vec<(i32, i32, i32)>) {
        let moves = self.inputs.iter().map(|(line, qty)| {
            let before = if self.credit { line.credited_quantity } else { line.invoiced_quantity };
            (line.id, before, before + qty)
        });
        (if self.credit { sol::Column::CreditedQuantity } else { sol::Column::InvoicedQuantity }, moves.collect())
    }

    /// The order's status after an invoice (a credit note leaves it as it is).
    fn order_status(&self) -> Option<OrderStatus> {
        (!self.credit).then_some(if self.fully_invoiced { OrderStatus::Invoiced } else { OrderStatus::PartiallyInvoiced })
    }

    /// The customer invoice journal; a credit note reverses revenue and tax (a correction is a
    /// new entry, R-LED-1).
    fn journal(&self, order: &so::Model, invoice: &inv::Model) -> (Posting, Vec<JournalLine>) {
        let a = &self.amounts;
        let lines = if self.credit {
            vec![
                JournalLine::debit(accounts::SALES_REVENUE, a.lines),
                JournalLine::debit(accounts::SALES_TAX, a.tax),
                JournalLine::credit(accounts::ACCOUNTS_RECEIVABLE, a.total),
            ]
        } else {
            vec![
                JournalLine::debit(accounts::ACCOUNTS_RECEIVABLE, a.total),
                JournalLine::credit(accounts::SALES_REVENUE, a.lines),
                JournalLine::credit(accounts::CHARGES_REVENUE, a.charges),
                JournalLine::credit(accounts::SALES_TAX, a.tax),
            ]
        };
        let what = if self.credit { "Credit note" } else { "Customer invoice" };
        let posting = Posting {
            invoice_id: Some(invoice.id),
            ..Posting::for_order(order, format!("invoice:{}", invoice.id), JournalKind::CustomerInvoice, format!("{what} {} for {}", invoice.number, order.number))
        };
        (posting, lines)
    }

    /// Stage 1's line in the execution log.
    fn posted_message(&self, order: &so::Model, invoice: &inv::Model) -> String {
        let a = &self.amounts;
        if self.credit {
            format!("Posted credit note {} for {}: lines {}, tax {} ({}%), total {} to refund.", invoice.number, order.number, a.lines, a.tax, order.tax_percent, a.total)
        } else {
            format!(
                "Posted {} for {}: lines {}, charges {}, tax {} ({}%), total {}.",
                invoice.number, order.number, a.lines, a.charges, a.tax, order.tax_percent, a.total
            )
        }
    }
}

/// A new payment process for `invoice`, leased to this server.
fn new_process(s: &Services, now: DateTime<Utc>, invoice: &inv::Model, monitored: bool) -> pp::ActiveModel {
    pp::ActiveModel {
        invoice_id: Set(invoice.id),
        order_id: Set(invoice.order_id),
        monitored: Set(monitored),
        status: Set(ProcessStatus::Running.code().to_string()),
        capture_path: Set(None),
        captured_minor: Set(0),
        last_error: Set(None),
        lease_owner: Set(Some(s.instance.clone())),
        lease_until: Set(Some(now + s.lease)),
        terminated_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// A new process's stage rows: stage 1 succeeded at `now` (it is the invoice's own transaction),
/// the others pending.
fn new_stage_rows(process_id: i32, now: DateTime<Utc>) -> Vec<ps::Model> {
    Stage::ALL
        .into_iter()
        .map(|stage| {
            let done = stage == Stage::PostInvoice;
            ps::Model {
                process_id,
                stage: stage.code().to_string(),
                status: if done { StageStatus::Succeeded } else { StageStatus::Pending }.code().to_string(),
                attempts: i32::from(done),
                started_at: done.then_some(now),
                finished_at: done.then_some(now),
                error: None,
            }
        })
        .collect()
}

/// Whether new processes are monitored stage by stage (R-PIP-6).
fn monitored(feats: &crate::domain::features::FeatureSet, params: &crate::domain::parameters::Parameters) -> bool {
    feats.is_enabled(crate::Feature::ImproveCardsPaymentFlow) && params.cards_payment_status_monitoring()
}

/// Gives rows their numbers, now that their ids are known: one UPDATE for all of them.
async fn set_numbers<E: EntityTrait>(db: &impl ConnectionTrait, id: E::Column, number: E::Column, rows: &[(i32, String)]) -> Result<(), DbErr> {
    let mut w = Writes::on(db);
    numbers_into::<E>(&mut w, id, number, rows);
    w.run(db).await.map(|_| ())
}

/// [`set_numbers`] added to `w`.
fn numbers_into<E: EntityTrait>(w: &mut Writes, id: E::Column, number: E::Column, rows: &[(i32, String)]) {
    if rows.is_empty() {
        return;
    }
    let case = rows.iter().fold(CaseStatement::new(), |c, (i, n)| c.case(id.eq(*i), Expr::value(n.clone())));
    w.push(E::update_many().col_expr(number, case.finally(Expr::col(number)).into()).filter(id.is_in(rows.iter().map(|(i, _)| *i))).into_query());
}

/// Stage 1 for an invoice or a credit note. A credit note carries negative quantities and amount.
async fn post_document(
    s: &Services,
    actor: &str,
    order_id: i32,
    quantities: &[(i32, i32)],
    doc: Document,
    cash_minor: i64,
) -> ServiceResult<Posted> {
    let credit = doc == Document::CreditNote;
    let wanted = wanted(quantities);
    if wanted.is_empty() {
        return Err(quantity_error(if credit {
            "Enter a quantity to credit on at least one line."
        } else {
            "Enter a quantity to invoice on at least one line."
        }));
    }
    let now = s.now();
    let txn = s.db.begin().await?;
    let order = for_update(so::Entity::find_by_id(order_id), &txn)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no sales order with id {order_id}.")))?;
    // Expiry is stored on the order first (R-AUT-4): an order it holds is refused below.
    let order = crate::service::expiry::settle(&txn, order).await?;
    if order.do_not_process {
        return Err(ServiceError::Conflict(format!("{} is on hold (Do not process); take a new payment first.", order.number)));
    }
    if order.status == OrderStatus::Cancelled.code() {
        return Err(ServiceError::Conflict(format!("{} was cancelled; nothing can be invoiced or credited.", order.number)));
    }
    // One payment process at a time per order: the next invoice's capture and the balance to
    // authorize depend on how the previous one ended (R-CAP-1, R-CAP-3).
    let unfinished = pp::Entity::find()
        .filter(pp::Column::OrderId.eq(order_id))
        .filter(pp::Column::Status.is_in(unfinished()))
        .order_by_asc(pp::Column::Id)
        .one(&txn)
        .await?;
    if let Some(p) = unfinished {
        let number = inv::Entity::find_by_id(p.invoice_id).one(&txn).await?.map(|i| i.number).unwrap_or_default();
        return Err(ServiceError::Conflict(if p.status == ProcessStatus::Incomplete.code() {
            format!("The card payment of {number} is incomplete: resume or terminate it on Incomplete cards payment before invoicing {} again.", order.number)
        } else {
            format!("The card payment of {number} is still being processed; invoice {} again in a moment.", order.number)
        }));
    }
    let lines = sol::Entity::find().filter(sol::Column::OrderId.eq(order_id)).all(&txn).await?;
    let plan = Plan::new(&order, &lines, &wanted, credit)?;
    let invoice = plan.document(order_id, now, actor).insert(&txn).await?;
    let number = plan.number(invoice.id);
    set_numbers::<inv::Entity>(&txn, inv::Column::Id, inv::Column::Number, &[(invoice.id, number.clone())]).await?;
    let invoice = inv::Model { number, ..invoice };
    il::Entity::insert_many(plan.invoice_lines(invoice.id)).exec_without_returning(&txn).await?;
    // Conditional on the quantity read above: a concurrent invoicing of the same line loses.
    let (column, moves) = plan.line_moves();
    for (line_id, before, after) in moves {
        let updated = sol::Entity::update_many()
            .col_expr(column, Expr::value(after))
            .filter(sol::Column::Id.eq(line_id))
            .filter(column.eq(before))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(concurrent_invoicing());
        }
    }
    let mut order = order;
    if let Some(status) = plan.order_status() {
        so::Entity::update_many()
            .col_expr(so::Column::Status, Expr::value(status.code()))
            .filter(so::Column::Id.eq(order_id))
            .exec(&txn)
            .await?;
        order.status = status.code().to_string();
    }
    let (posting, journal_lines) = plan.journal(&order, &invoice);
    post_new_journal(&txn, now, posting, journal_lines).await?;
    // Deposits applied and cash at pickup (R-PRE-2), or the cash part of a return (R-PRE-5), are
    // settled here, in the invoice's transaction; the card capture or refund takes the rest.
    let prepaid = if credit {
        -crate::service::prepayments::refund_cash_part(&txn, now, &order, &invoice).await?
    } else if order.prepayment || cash_minor > 0 {
        crate::service::prepayments::settle_invoice(&txn, now, &order, &invoice, cash_minor).await?
    } else {
        0
    };
    let invoice = if prepaid != 0 {
        let mut am: inv::ActiveModel = invoice.into();
        am.prepaid_minor = Set(prepaid);
        am.update(&txn).await?
    } else {
        invoice
    };
    let (feats, params) = features::load_with_parameters(&txn).await?;
    let process = new_process(s, now, &invoice, monitored(&feats, &params)).insert(&txn).await?;
    let stages = new_stage_rows(process.id, now);
    ps::Entity::insert_many(stages.iter().cloned().map(ps::ActiveModel::from)).exec_without_returning(&txn).await?;
    log(&txn, now, process.id, Stage::PostInvoice, 1, plan.posted_message(&order, &invoice)).await?;
    txn.commit().await?;
    Ok(Posted { invoice, process, order, stages, settings: (feats, params) })
}

/// The statuses of a process that still has work to do (or waits for a user to resume it).
fn unfinished() -> [&'static str; 2] {
    [ProcessStatus::Running.code(), ProcessStatus::Incomplete.code()]
}

/// The quantities asked for, without the zero ones.
fn wanted(quantities: &[(i32, i32)]) -> Vec<(i32, i32)> {
    quantities.iter().copied().filter(|(_, q)| *q != 0).collect()
}

fn concurrent_invoicing() -> ServiceError {
    ServiceError::Conflict("The order was invoiced by someone else at the same time; reload and try again.".into())
}

/// What a journal is about: its source (unique, so posting twice is a no-op), kind, order or
/// customer, invoice, the method money moved by, and whether it is a prepayment journal voucher.
#[derive(Clone, Debug)]
pub(crate) struct Posting {
    pub source: String,
    pub kind: JournalKind,
    pub order_id: Option<i32>,
    pub customer_id: Option<i32>,
    pub invoice_id: Option<i32>,
    pub tender: Option<crate::domain::order::Tender>,
    pub prepayment: bool,
    /// The currency's ISO code, as stored on the order (checked when the order was placed).
    pub currency: String,
    pub description: String,
}

impl Posting {
    pub fn for_order(order: &so::Model, source: String, kind: JournalKind, description: String) -> Posting {
        Posting {
            source,
            kind,
            order_id: Some(order.id),
            customer_id: Some(order.customer_id),
            invoice_id: None,
            tender: None,
            prepayment: false,
            currency: order.currency.clone(),
            description,
        }
    }
}

/// Posts a balanced journal once per `source` (R-LED-1); a second post of the same source is a no-op.
pub(crate) async fn post_journal(db: &impl ConnectionTrait, now: DateTime<Utc>, p: Posting, lines: Vec<JournalLine>) -> ServiceResult<Option<journal::Model>> {
    if journal::Entity::find().filter(journal::Column::Source.eq(p.source.as_str())).one(db).await?.is_some() {
        return Ok(None);
    }
    post_new_journal(db, now, p, lines).await.map(Some)
}

/// [`post_journal`] for a source that cannot have been posted yet (it names a row this
/// transaction or this run created); the unique source still refuses a second post.
pub(crate) async fn post_new_journal(db: &impl ConnectionTrait, now: DateTime<Utc>, p: Posting, lines: Vec<JournalLine>) -> ServiceResult<journal::Model> {
    let mut posted = post_new_journals(db, vec![(now, p, lines)]).await?;
    posted.pop().ok_or_else(|| ServiceError::Conflict("The journal was not posted.".into()))
}

/// [`post_new_journal`] for many journals in two round trips (the journals, then their numbers
/// and lines together); returned in the order given. Nothing is posted if one of them does not
/// balance.
pub(crate) async fn post_new_journals(db: &impl ConnectionTrait, journals: Vec<(DateTime<Utc>, Posting, Vec<JournalLine>)>) -> ServiceResult<Vec<journal::Model>> {
    let mut w = Writes::on(db);
    let posted = post_new_journals_with(db, &mut w, journals, None).await?;
    w.run(db).await?;
    Ok(posted)
}

/// [`post_new_journals`] with the journals' numbers and lines added to `w`, for the caller to run
/// in the same transaction (the journals themselves are inserted at once, for their ids).
pub(crate) async fn post_new_journals_with(
    db: &impl ConnectionTrait,
    w: &mut Writes,
    journals: Vec<(DateTime<Utc>, Posting, Vec<JournalLine>)>,
    ids: Option<Vec<i32>>,
) -> ServiceResult<Vec<journal::Model>> {
    let mut rows = Vec::with_capacity(journals.len());
    let mut all_lines = Vec::with_capacity(journals.len());
    for (now, p, lines) in journals {
        all_lines.push(balanced(lines).map_err(|e| ServiceError::Conflict(format!("The journal was not posted: {e}.")))?);
        rows.push(journal::ActiveModel {
            source: Set(p.source),
            kind: Set(p.kind.code().to_string()),
            order_id: Set(p.order_id),
            invoice_id: Set(p.invoice_id),
            currency: Set(p.currency),
            prepayment: Set(p.prepayment),
            description: Set(p.description),
            posted_at: Set(crate::ids::as_stored(now)),
            customer_id: Set(p.customer_id),
            tender: Set(p.tender.map(|t| t.code().to_string())),
            ..Default::default()
        });
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Each journal's id, and so its number, before it is inserted: the journals go with the
    // other writes (`ids`).
    let ids = match ids {
        Some(ids) => ids,
        None => crate::ids::take(db, &[(journal::Entity.table_name(), rows.len())]).await?.remove(0),
    };
    if ids.len() != rows.len() {
        return Err(DbErr::Custom(format!("{} journals and {} ids", rows.len(), ids.len())).into());
    }
    let mut posted = Vec::with_capacity(rows.len());
    for (row, id) in rows.iter_mut().zip(ids) {
        row.id = Set(id);
        row.number = Set(format!("JNL-{id:06}"));
        posted.push(row.clone().try_into_model()?);
    }
    w.push_rows(rows);
    let line_rows = posted.iter().zip(all_lines).flat_map(|(j, lines)| {
        lines.into_iter().map(move |l| jl::ActiveModel {
            journal_id: Set(j.id),
            account: Set(l.account),
            debit_minor: Set(l.debit),
            credit_minor: Set(l.credit),
            ..Default::default()
        })
    });
    w.push_rows(line_rows);
    Ok(posted)
}

/// One line of a stage's execution log.
#[derive(Debug)]
pub(crate) struct LogLine {
    pub at: DateTime<Utc>,
    pub stage: Stage,
    pub attempt: i32,
    pub message: String,
}

/// Appends lines to a process's execution log in one statement.
pub(crate) async fn log_lines(db: &impl ConnectionTrait, process_id: i32, lines: Vec<LogLine>) -> Result<(), DbErr> {
    log_lines_of(db, lines.into_iter().map(|l| (process_id, l))).await
}

/// Appends lines to the execution logs of several processes, (process, line), in one round trip.
pub(crate) async fn log_lines_of(db: &impl ConnectionTrait, lines: impl IntoIterator<Item = (i32, LogLine)>) -> Result<(), DbErr> {
    let mut w = Writes::on(db);
    log_lines_into(&mut w, lines);
    w.run(db).await.map(|_| ())
}

/// [`log_lines_of`] added to `w`.
pub(crate) fn log_lines_into(w: &mut Writes, lines: impl IntoIterator<Item = (i32, LogLine)>) {
    let rows: Vec<stage_log::ActiveModel> = lines
        .into_iter()
        .map(|(process_id, l)| stage_log::ActiveModel {
            process_id: Set(process_id),
            stage: Set(l.stage.code().to_string()),
            attempt: Set(l.attempt),
            at: Set(l.at),
            message: Set(l.message),
            ..Default::default()
        })
        .collect();
    // In parts small enough to be sent at once (see `Writes::push_rows`).
    w.push_rows(rows);
}

pub(crate) async fn log(db: &impl ConnectionTrait, at: DateTime<Utc>, process_id: i32, stage: Stage, attempt: i32, message: String) -> Result<(), DbErr> {
    log_lines(db, process_id, vec![LogLine { at, stage, attempt, message }]).await
}

/// Appends a line to a stage's execution log in a bookkeeping transaction (see
/// [`crate::service::begin_bookkeeping`]).
pub(crate) async fn log_relaxed(s: &Services, process_id: i32, stage: Stage, attempt: i32, message: String) -> Result<(), DbErr> {
    let txn = crate::service::begin_bookkeeping(&s.db).await?;
    log(&txn, s.now(), process_id, stage, attempt, message).await?;
    txn.commit().await
}

/// Runs the process's remaining stages while this server holds its lease. Returns where it stands.
/// The process, its stage rows, invoice and order are read once.
pub async fn run(s: &Services, process_id: i32) -> ServiceResult<ProcessStatus> {
    let p = pp::Entity::find_by_id(process_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("payment process".into()))?;
    let status = ProcessStatus::from_code(&p.status).unwrap_or(ProcessStatus::Running);
    if status != ProcessStatus::Running {
        return Ok(status);
    }
    let rows = ps::Entity::find().filter(ps::Column::ProcessId.eq(process_id)).all(&s.db).await?;
    let ctx = stages::Ctx::load(s, p).await?;
    Ok(run_loaded(s, ctx, rows).await?.0)
}

/// [`run`] with the process, its stage rows, invoice and order already in hand (invoicing has
/// just written them). Returns the status and, unless completed, the process's last error.
///
/// Stage marks are written lazily ([`marks::Marks`]): a stage's start and end marks commit with
/// the stage's own first write, or with the next stage's, or with the process's completion; every
/// such commit renews the lease first, so a server that lost the lease writes nothing and stops.
async fn run_loaded(s: &Services, ctx: stages::Ctx, rows: Vec<ps::Model>) -> ServiceResult<(ProcessStatus, Option<String>)> {
    run_loaded_from(s, ctx, rows, None).await
}

/// Ends the run with the process Incomplete after `stage` failed (R-PIP-3): its marks, the error
/// and the released lease in one commit. Listed on Incomplete cards payment, monitored or not.
async fn incomplete(
    s: &Services,
    ctx: &mut stages::Ctx,
    stage: Stage,
    attempt: i32,
    now: DateTime<Utc>,
    msg: String,
    error: String,
) -> ServiceResult<(ProcessStatus, Option<String>)> {
    let process_id = ctx.p.id;
    ctx.marks.end(stage, StageStatus::Failed, attempt, now, Some(msg.clone()), format!("Failed: {msg}"));
    let txn = crate::service::begin_bookkeeping(&s.db).await?;
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
async fn nothing_charged(s: &Services, process_id: i32) -> ServiceResult<Option<Option<String>>> {
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
async fn reverse_uncharged(s: &Services, ctx: &mut stages::Ctx, error: String) -> ServiceResult<(ProcessStatus, Option<String>)> {
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
            return Err(ServiceError::Conflict(format!("{} could not be taken back: its lines changed meanwhile.", invoice.number)));
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
async fn run_loaded_from(s: &Services, mut ctx: stages::Ctx, mut rows: Vec<ps::Model>, mut ended: Option<Ended>) -> ServiceResult<(ProcessStatus, Option<String>)> {
    let process_id = ctx.p.id;
    loop {
        let next = Stage::ALL.into_iter().find(|st| {
            rows.iter()
                .find(|r| r.stage == st.code())
                .is_none_or(|r| !matches!(StageStatus::from_code(&r.status), Some(StageStatus::Succeeded | StageStatus::Skipped)))
        });
        let Some(stage) = next else {
            let txn = crate::service::begin_bookkeeping(&s.db).await?;
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
            Some(e) => return Err(ServiceError::Conflict(format!("payment process {process_id} was handed over at {:?}, but {stage:?} is next", e.stage))),
            None => {
                let row = rows.iter().find(|r| r.stage == stage.code()).cloned();
                let attempt = row.as_ref().map(|r| r.attempts).unwrap_or(0) + 1;
                let interrupted = row.as_ref().is_some_and(|r| r.status == StageStatus::Running.code());
                ctx.marks.start(stage, attempt, s.now(), start_message(attempt, interrupted));
                let end = match stage {
                    Stage::PostInvoice => Ok(StageEnd::Succeeded("The invoice was posted when it was created.".into())),
                    Stage::CaptureOrRefund => stages::capture(s, &mut ctx, attempt).await,
                    Stage::PostPaymentJournal => stages::payment_journal(s, &mut ctx).await,
                    Stage::AuthorizeRemaining => stages::authorize_remaining(s, &mut ctx, attempt).await,
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
fn start_message(attempt: i32, interrupted: bool) -> String {
    if interrupted {
        format!("Attempt {attempt} started after an interruption of the previous attempt.")
    } else {
        format!("Attempt {attempt} started.")
    }
}

/// Records in a run's copy of the stage rows that `stage` ended with `status`.
fn ended_in(rows: &mut [ps::Model], process_id: i32, stage: Stage, status: StageStatus, attempt: i32) -> ServiceResult<()> {
    match rows.iter_mut().find(|r| r.stage == stage.code()) {
        Some(r) => {
            r.status = status.code().to_string();
            r.attempts = attempt;
            Ok(())
        }
        None => Err(ServiceError::NotFound(format!("the {} stage of payment process {process_id}", stage.label()))),
    }
}

async fn finish_process(s: &Services, db: &impl ConnectionTrait, process_id: i32, status: ProcessStatus, error: Option<String>) -> Result<(), DbErr> {
    finish_processes(s, db, &[process_id], status, error).await
}

/// Ends running processes with `status`, releasing their leases: one statement.
async fn finish_processes(s: &Services, db: &impl ConnectionTrait, ids: &[i32], status: ProcessStatus, error: Option<String>) -> Result<(), DbErr> {
    let mut w = Writes::on(db);
    finish_processes_into(s, &mut w, ids, status, error);
    w.run(db).await.map(|_| ())
}

/// [`finish_processes`] added to `w`.
fn finish_processes_into(s: &Services, w: &mut Writes, ids: &[i32], status: ProcessStatus, error: Option<String>) {
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

/// Resume (R-PIP-4): restarts an incomplete process from its failed stage. Exactly one of two
/// concurrent resumes wins; the other is told the process is no longer incomplete.
pub async fn resume(s: &Services, actor: &str, process_id: i32) -> ServiceResult<InvoiceOutcome> {
    let now = s.now();
    let txn = s.db.begin().await?;
    let claimed = pp::Entity::update_many()
        .col_expr(pp::Column::Status, Expr::value(ProcessStatus::Running.code()))
        .col_expr(pp::Column::LeaseOwner, Expr::value(s.instance.clone()))
        .col_expr(pp::Column::LeaseUntil, Expr::value(now + s.lease))
        .col_expr(pp::Column::UpdatedAt, Expr::value(now))
        .filter(pp::Column::Id.eq(process_id))
        .filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code()))
        .exec(&txn)
        .await?;
    let p = pp::Entity::find_by_id(process_id).one(&txn).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    if claimed.rows_affected != 1 {
        let status = ProcessStatus::from_code(&p.status).map(|s| s.label()).unwrap_or("unknown");
        return Err(ServiceError::Conflict(format!("Only an incomplete payment can be resumed; this one is {status}.")));
    }
    let invoice = inv::Entity::find_by_id(p.invoice_id).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
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
    let done = pp::Entity::update_many()
        .col_expr(pp::Column::Status, Expr::value(ProcessStatus::Terminated.code()))
        .col_expr(pp::Column::TerminatedReason, Expr::value(reason))
        .col_expr(pp::Column::UpdatedAt, Expr::value(now))
        .filter(pp::Column::Id.eq(process_id))
        .filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code()))
        .exec(&txn)
        .await?;
    let p = pp::Entity::find_by_id(process_id).one(&txn).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no payment process {process_id}.")))?;
    if done.rows_affected != 1 {
        let status = ProcessStatus::from_code(&p.status).map(|s| s.label()).unwrap_or("unknown");
        return Err(ServiceError::Conflict(format!("Only an incomplete payment can be terminated; this one is {status}.")));
    }
    let invoice = inv::Entity::find_by_id(p.invoice_id).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
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
/// them to completion or to Incomplete; then resolves order authorizations left pending.
pub async fn recover(s: &Services, batch: u64) -> ServiceResult<RecoveryReport> {
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
        if !marks::renew_lease(s, &s.db, p.id).await? {
            continue;
        }
        report.taken_over += 1;
        match run(s, p.id).await? {
            ProcessStatus::Completed => report.completed += 1,
            ProcessStatus::Incomplete => report.incomplete += 1,
            _ => {}
        }
    }
    report.requests_resolved = stages::resolve_placement_requests(s, batch).await?;
    report.requests_resolved += crate::service::authorizations::resolve_lost_answers(s, batch).await?;
    report.prepayments = crate::service::prepayments::recover(s, batch).await?;
    Ok(report)
}
