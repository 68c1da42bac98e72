//! Posting an invoice or credit note with its payment process in one transaction (stage 1): the
//! quantities checked, the amounts planned (R-MON-3), the numbers taken, the process created.
use crate::domain::money::{Currency, Money};
use crate::domain::order::{accounts, DocumentKind, JournalKind, JournalLine, OrderStatus};
use crate::domain::payment_views::InvoiceOutcome;
use crate::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use crate::entity::{
    invoice as inv, invoice_line as il, payment_process as pp, process_stage as ps, sales_order as so,
    sales_order_line as sol,
};
use crate::error::{InvoicingError, ServiceError, ServiceResult};
use crate::db::for_update;
use crate::ledger::settings as features;
use crate::runtime::Services;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QueryTrait, Set, TransactionTrait,
};
use crate::writes::Writes;
use crate::ledger::journals::{post_new_journal, Posting};
use super::log::{log};

/// What stage 1 wrote: the invoice, its payment process and stage rows, and the order as it now
/// stands, so that the run that follows reads none of them again.
pub(super) struct Posted {
    pub(super) invoice: inv::Model,
    pub(super) process: pp::Model,
    pub(super) order: so::Model,
    pub(super) stages: Vec<ps::Model>,
    /// The features and parameters stage 1 read, which the rest of this run uses.
    pub(super) settings: (crate::domain::features::FeatureSet, crate::domain::parameters::Parameters),
}

pub(super) fn outcome_of(invoice: inv::Model, process_id: i32, status: ProcessStatus, error: Option<String>) -> ServiceResult<InvoiceOutcome> {
    Ok(InvoiceOutcome {
        kind: if invoice.is_credit_note() { DocumentKind::CreditNote } else { DocumentKind::Invoice },
        invoice_id: invoice.id,
        invoice_number: invoice.number,
        amount: Money::from_minor(invoice.amount_minor, Currency::stored(&invoice.currency)?),
        process_id,
        status,
        error,
    })
}

pub(super) async fn outcome(s: &Services, invoice: inv::Model, process_id: i32, status: ProcessStatus) -> ServiceResult<InvoiceOutcome> {
    let p = pp::Entity::find_by_id(process_id).one(&s.db).await?;
    let error = p.and_then(|p| p.last_error).filter(|_| status != ProcessStatus::Completed);
    outcome_of(invoice, process_id, status, error)
}

pub(super) fn quantity_error(message: impl Into<String>) -> ServiceError {
    ServiceError::field("quantities", message)
}

/// Stage 1: creates and posts the customer invoice and its journal, and creates the payment process
/// (leased to this server), all in one transaction. Nothing is written if anything is wrong.
pub async fn post_invoice(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)]) -> ServiceResult<(inv::Model, i32)> {
    post_document(s, actor, order_id, quantities, DocumentKind::Invoice, 0).await.map(|p| (p.invoice, p.process.id))
}

/// What stage 1 posts for chosen quantities of an order's lines, checked and computed the same way
/// by the one-at-a-time and the batched path ([`batch`]).
pub(super) struct Plan<'a> {
    pub(super) credit: bool,
    /// Each order line to invoice (or credit) with its quantity, in the order asked.
    pub(super) inputs: Vec<(&'a sol::Model, i32)>,
    pub(super) amounts: crate::domain::order::InvoiceAmounts,
    pub(super) currency: Currency,
    /// After this invoice, nothing of any line is left to invoice.
    pub(super) fully_invoiced: bool,
}

impl<'a> Plan<'a> {
    /// Checks `wanted` (order line id, quantity; none zero) against the order's `lines` as they
    /// stand, and computes the document's amounts.
    pub(super) fn new(order: &so::Model, lines: &'a [sol::Model], wanted: &[(i32, i32)], credit: bool) -> ServiceResult<Plan<'a>> {
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
        let states = crate::ledger::orders::line_states(lines, currency);
        let basis = crate::ledger::orders::basis(order, &states, currency)?;
        let amounts = if credit { basis.credit(&take) } else { basis.invoice(&take) }
            .map_err(|e| quantity_error(format!("The invoice cannot be computed: {e}.")))?;
        let fully_invoiced = lines
            .iter()
            .all(|l| l.invoiced_quantity + inputs.iter().find(|(x, _)| x.id == l.id).map(|(_, q)| *q).unwrap_or(0) >= l.quantity);
        Ok(Plan { credit, inputs, amounts, currency, fully_invoiced })
    }

    pub(super) fn sign(&self) -> i64 {
        if self.credit {
            -1
        } else {
            1
        }
    }

    /// The document's row, numbered provisionally until its id is known ([`Plan::number`]).
    pub(super) fn kind(&self) -> DocumentKind {
        if self.credit {
            DocumentKind::CreditNote
        } else {
            DocumentKind::Invoice
        }
    }

    pub(super) fn document(&self, order_id: i32, now: DateTime<Utc>, actor: &str) -> inv::ActiveModel {
        inv::ActiveModel {
            kind: Set(self.kind().code().to_string()),
            number: Set(format!("new-{}", uuid::Uuid::new_v4().simple())),
            order_id: Set(order_id),
            currency: Set(self.currency.code().to_string()),
            amount_minor: Set(self.sign() * self.amounts.total.minor()),
            posted_at: Set(now),
            posted_by: Set(actor.to_string()),
            ..Default::default()
        }
    }

    pub(super) fn number(&self, invoice_id: i32) -> String {
        format!("{}-{:06}", self.kind().number_prefix(), invoice_id)
    }

    pub(super) fn invoice_lines(&self, invoice_id: i32) -> impl Iterator<Item = il::ActiveModel> + '_ {
        self.inputs.iter().map(move |(line, qty)| il::ActiveModel {
            invoice_id: Set(invoice_id),
            order_line_id: Set(line.id),
            quantity: Set(if self.credit { -*qty } else { *qty }),
            amount_minor: Set(self.sign() * line.unit_price_minor * i64::from(*qty)),
            ..Default::default()
        })
    }

    /// The quantity column this document moves, and each line's (id, quantity before, after).
    pub(super) fn line_moves(&self) -> (sol::Column, Vec<(i32, i32, i32)>) {
        let moves = self.inputs.iter().map(|(line, qty)| {
            let before = if self.credit { line.credited_quantity } else { line.invoiced_quantity };
            (line.id, before, before + qty)
        });
        (if self.credit { sol::Column::CreditedQuantity } else { sol::Column::InvoicedQuantity }, moves.collect())
    }

    /// The order's status after an invoice (a credit note leaves it as it is).
    pub(super) fn order_status(&self) -> Option<OrderStatus> {
        (!self.credit).then_some(if self.fully_invoiced { OrderStatus::Invoiced } else { OrderStatus::PartiallyInvoiced })
    }

    /// The customer invoice journal; a credit note reverses revenue and tax (a correction is a
    /// new entry, R-LED-1).
    pub(super) fn journal(&self, order: &so::Model, invoice: &inv::Model) -> (Posting, Vec<JournalLine>) {
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
    pub(super) fn posted_message(&self, order: &so::Model, invoice: &inv::Model) -> String {
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
pub(super) fn new_process(s: &Services, now: DateTime<Utc>, invoice: &inv::Model, monitored: bool) -> pp::ActiveModel {
    pp::ActiveModel {
        invoice_id: Set(invoice.id),
        order_id: Set(invoice.order_id),
        monitored: Set(monitored),
        status: Set(ProcessStatus::Running.code().to_string()),
        capture_path: Set(None),
        capture_kind: Set(None),
        captured_minor: Set(0),
        last_error: Set(None),
        lease_owner: Set(Some(s.instance.clone())),
        lease_until: Set(Some(now + s.lease)),
        terminated_reason: Set(None),
        termination_requested_by: Set(None),
        termination_requested_at: Set(None),
        termination_request_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// A new process's stage rows: stage 1 succeeded at `now` (it is the invoice's own transaction),
/// the others pending.
pub(super) fn new_stage_rows(process_id: i32, now: DateTime<Utc>) -> Vec<ps::Model> {
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
pub(super) fn monitored(feats: &crate::domain::features::FeatureSet, params: &crate::domain::parameters::Parameters) -> bool {
    feats.is_enabled(crate::Feature::ImproveCardsPaymentFlow) && params.cards_payment_status_monitoring()
}

/// Gives rows their numbers, now that their ids are known: one UPDATE for all of them.
pub(super) async fn set_numbers<E: EntityTrait>(db: &impl ConnectionTrait, id: E::Column, number: E::Column, rows: &[(i32, String)]) -> Result<(), DbErr> {
    let mut w = Writes::on(db);
    numbers_into::<E>(&mut w, id, number, rows);
    w.run(db).await.map(|_| ())
}

/// [`set_numbers`] added to `w`.
pub(super) fn numbers_into<E: EntityTrait>(w: &mut Writes, id: E::Column, number: E::Column, rows: &[(i32, String)]) {
    if rows.is_empty() {
        return;
    }
    let case = rows.iter().fold(CaseStatement::new(), |c, (i, n)| c.case(id.eq(*i), Expr::value(n.clone())));
    w.push(E::update_many().col_expr(number, case.finally(Expr::col(number)).into()).filter(id.is_in(rows.iter().map(|(i, _)| *i))).into_query());
}

/// Stage 1 for an invoice or a credit note. A credit note carries negative quantities and amount.
pub(super) async fn post_document(
    s: &Services,
    actor: &str,
    order_id: i32,
    quantities: &[(i32, i32)],
    doc: DocumentKind,
    cash_minor: i64,
) -> ServiceResult<Posted> {
    let credit = doc == DocumentKind::CreditNote;
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
    let order = crate::ledger::expiry::settle(&txn, order).await?;
    if order.do_not_process {
        return Err(InvoicingError::OrderOnHold { order: order.number }.into());
    }
    if order.status == OrderStatus::Cancelled.code() {
        return Err(InvoicingError::OrderCancelled { order: order.number }.into());
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
        let (invoice, order) = (number, order.number);
        return Err(if p.status == ProcessStatus::Incomplete.code() {
            InvoicingError::PaymentIncomplete { invoice, order }
        } else {
            InvoicingError::PaymentRunning { invoice, order }
        }
        .into());
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
        -crate::ledger::deposits::refund_cash_part(&txn, now, &order, &invoice).await?
    } else if order.prepayment || cash_minor > 0 {
        crate::ledger::deposits::settle_invoice(&txn, now, &order, &invoice, cash_minor).await?
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
pub(super) fn unfinished() -> [&'static str; 2] {
    [ProcessStatus::Running.code(), ProcessStatus::Incomplete.code()]
}

/// The quantities asked for, without the zero ones.
pub(super) fn wanted(quantities: &[(i32, i32)]) -> Vec<(i32, i32)> {
    quantities.iter().copied().filter(|(_, q)| *q != 0).collect()
}

pub(super) fn concurrent_invoicing() -> ServiceError {
    InvoicingError::ConcurrentInvoicing.into()
}
