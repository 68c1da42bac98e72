//! Reconciliation (R-LED-1, R-LED-2, issue #44): reads, for every order with money at stake, what
//! the processor moved as Paystage's records hold it (captures, refunds, requests whose outcome is
//! unknown), the card payment journals posted, the payment processes and the holds left on
//! cards, and hands each order to [`crate::domain::reconciliation::breaks`]. The Reconciliation
//! page, its CSV and `paystage reconcile` show the same report.
//!
//! Every order with a capture, a card payment journal, a process, an unresolved request or an
//! open authorization is checked; it is read whole (a few set-based queries over those tables),
//! which suits today's databases and is what the page benchmark will measure.
use super::journals::csv_field;
use super::Services;
use crate::domain::money::{Currency, Money};
use crate::domain::order::{accounts, AuthorizationStatus, Command, OrderStatus, RequestStatus};
use crate::domain::pipeline::ProcessStatus;
use crate::domain::reconciliation::{breaks, CaptureFact, HoldFact, OrderFacts, ProcessFact, ReconciliationReport, RequestFact};
use crate::entity::{authorization as au, capture as cap, invoice as inv, journal, journal_line as jl, payment_process as pp, processor_request as pr, refund, sales_order as so};
use crate::error::ServiceResult;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::{BTreeMap, BTreeSet};

/// How many ids one `IN (…)` list carries (SQLite takes at most 32,766 variables).
const IDS_PER_QUERY: usize = 500;

/// The facts of order `order_id`, empty until something of it is read.
fn at(facts: &mut BTreeMap<i32, OrderFacts>, order_id: i32) -> &mut OrderFacts {
    facts.entry(order_id).or_insert_with(|| OrderFacts {
        order_id,
        order_number: String::new(),
        status: OrderStatus::Open,
        currency: String::new(),
        captures: Vec::new(),
        refunded_minor: 0,
        journaled_minor: 0,
        last_journal_at: None,
        processes: Vec::new(),
        unresolved: Vec::new(),
        open_holds: Vec::new(),
        closed: false,
    })
}

/// The report as of now.
pub async fn report(s: &Services) -> ServiceResult<ReconciliationReport> {
    let db = &s.db;
    let now = s.now();
    let caps = cap::Entity::find().all(db).await?;
    let refunds = refund::Entity::find().all(db).await?;
    let clearing = jl::Entity::find().filter(jl::Column::Account.eq(accounts::CARD_CLEARING)).all(db).await?;
    let journals: BTreeMap<i32, journal::Model> = journal::Entity::find().filter(journal::Column::OrderId.is_not_null()).all(db).await?.into_iter().map(|j| (j.id, j)).collect();
    let open_processes = pp::Entity::find()
        .filter(pp::Column::Status.is_in([ProcessStatus::Running.code(), ProcessStatus::Incomplete.code(), ProcessStatus::Terminated.code()]))
        .all(db)
        .await?;
    let unresolved = pr::Entity::find().filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()])).all(db).await?;
    let holds = au::Entity::find().filter(au::Column::Status.eq(AuthorizationStatus::Open.code())).all(db).await?;

    let mut facts: BTreeMap<i32, OrderFacts> = BTreeMap::new();
    for c in &caps {
        at(&mut facts, c.order_id).captures.push(CaptureFact { id: c.id, invoice_id: c.invoice_id, moved_minor: c.moved_minor(), amount_minor: c.amount_minor, at: c.captured_at, failed_at: c.failed_at });
    }
    for r in &refunds {
        at(&mut facts, r.order_id).refunded_minor += r.moved_minor();
    }
    for l in &clearing {
        if let Some(j) = journals.get(&l.journal_id) {
            let f = at(&mut facts, j.order_id.unwrap_or_default());
            f.journaled_minor += l.debit_minor - l.credit_minor;
            f.last_journal_at = f.last_journal_at.max(Some(j.posted_at));
        }
    }
    let invoice_ids: Vec<i32> = open_processes.iter().map(|p| p.invoice_id).collect();
    let mut invoices = BTreeMap::new();
    for chunk in invoice_ids.chunks(IDS_PER_QUERY) {
        for i in inv::Entity::find().filter(inv::Column::Id.is_in(chunk.to_vec())).all(db).await? {
            invoices.insert(i.id, i);
        }
    }
    // A terminated payment is a break while its invoice's receivable is open; its settling entry
    // (service::settlement) closes it.
    let mut receivable_open: BTreeMap<i32, i64> = BTreeMap::new();
    let terminated: Vec<i32> = open_processes.iter().filter(|p| p.status == ProcessStatus::Terminated.code()).map(|p| p.invoice_id).collect();
    for chunk in terminated.chunks(IDS_PER_QUERY) {
        let of_invoice: BTreeMap<i32, i32> =
            journal::Entity::find().filter(journal::Column::InvoiceId.is_in(chunk.to_vec())).all(db).await?.into_iter().map(|j| (j.id, j.invoice_id.unwrap_or_default())).collect();
        let ids: Vec<i32> = of_invoice.keys().copied().collect();
        for l in jl::Entity::find().filter(jl::Column::JournalId.is_in(ids)).filter(jl::Column::Account.eq(accounts::ACCOUNTS_RECEIVABLE)).all(db).await? {
            *receivable_open.entry(of_invoice.get(&l.journal_id).copied().unwrap_or_default()).or_default() += l.debit_minor - l.credit_minor;
        }
    }
    for p in &open_processes {
        let invoice = invoices.get(&p.invoice_id);
        let is_terminated = p.status == ProcessStatus::Terminated.code();
        let open = receivable_open.get(&p.invoice_id).copied().unwrap_or_default();
        if is_terminated && open == 0 {
            continue;
        }
        at(&mut facts, p.order_id).processes.push(ProcessFact {
            id: p.id,
            invoice_number: invoice.map(|i| i.number.clone()).unwrap_or_else(|| format!("invoice {}", p.invoice_id)),
            invoice_amount_minor: if is_terminated { open } else { invoice.map(|i| i.amount_minor).unwrap_or_default() },
            status: ProcessStatus::from_code(&p.status).unwrap_or(ProcessStatus::Running),
            lease_until: p.lease_until,
            updated_at: p.updated_at,
            terminated_reason: p.terminated_reason.clone(),
        });
    }
    for q in &unresolved {
        at(&mut facts, q.order_id).unresolved.push(RequestFact {
            tracking_id: q.tracking_id.clone(),
            command: Command::from_code(&q.command).unwrap_or(Command::Capture),
            amount_minor: q.amount_minor,
            initiated_at: q.initiated_at,
        });
    }
    // A hold past its expiry keeps nothing on the card (the expiry job records it).
    for a in holds.iter().filter(|a| a.amount_minor > a.captured_minor && a.expires_at > now) {
        at(&mut facts, a.order_id).open_holds.push(HoldFact { authorization_id: a.id, left_minor: a.amount_minor - a.captured_minor, authorized_at: a.authorized_at });
    }
    // The orders themselves: number, currency and whether anything is left to pay.
    let ids: Vec<i32> = facts.keys().copied().collect();
    let mut known = BTreeSet::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        for o in so::Entity::find().filter(so::Column::Id.is_in(chunk.to_vec())).all(db).await? {
            known.insert(o.id);
            if let Some(f) = facts.get_mut(&o.id) {
                f.status = OrderStatus::from_code(&o.status).unwrap_or(OrderStatus::Open);
                f.closed = matches!(f.status, OrderStatus::Invoiced | OrderStatus::Cancelled);
                f.order_number = o.number;
                f.currency = o.currency;
            }
        }
    }
    let mut found = Vec::new();
    for f in facts.values() {
        let mut f = f.clone();
        if !known.contains(&f.order_id) {
            // Money recorded against an order that does not exist is a break of its own kind
            // of wrong: shown under the id it names.
            f.order_number = format!("order {}", f.order_id);
        }
        found.extend(breaks(&f, now, s.lease));
    }
    Ok(ReconciliationReport::new(now, facts.len() as u64, found))
}

/// The breaks as CSV, one row each, oldest first (spreadsheet formulas guarded).
pub fn csv(r: &ReconciliationReport) -> String {
    let mut out = String::from("cause,order,amount,currency,open_since,age_days,what_happened,action\n");
    for b in &r.breaks {
        // The number alone ("420.00"); the currency has its own column.
        let amount = Currency::from_code(&b.currency).map_or_else(|| b.amount_minor.to_string(), |c| Money::from_minor(b.amount_minor, c).to_decimal().to_string());
        let row = [
            csv_field(b.cause.label()),
            csv_field(&b.order_number),
            csv_field(&amount),
            csv_field(&b.currency),
            csv_field(&b.since.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            csv_field(&r.age_days(b).to_string()),
            csv_field(&b.detail),
            csv_field(&b.action),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}
