//! Open customer invoices (Accounts receivable, seed 000's entry point, issue #44): every invoice
//! or credit note whose receivable is not settled, newest first, with what is open and where its
//! card payment stands. What is open comes from the ledger alone: the debits less credits to
//! Accounts receivable of the journals posted for the document (its invoice journal, and the
//! payment, deposit, cash and reversal journals that settle it), summed by the database.
use super::Services;
use crate::domain::money::{Currency, Money};
use crate::domain::order::{accounts, DocumentKind};
use crate::domain::payment_views::{OpenInvoicePage, OpenInvoiceRow};
use crate::domain::pipeline::ProcessStatus;
use crate::entity::{customer, invoice as inv, payment_line as pl, payment_process as pp, sales_order as so};
use crate::error::ServiceResult;
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, Statement};
use std::collections::{BTreeMap, BTreeSet};

pub const PAGE_SIZE: u64 = 25;

#[derive(FromQueryResult)]
struct Open {
    invoice_id: i32,
    open_minor: i64,
}

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

/// The documents with a receivable left open, grouped in the database (no user input reaches the
/// statement: the account is a constant and the page a number).
fn open_query() -> String {
    format!(
        "SELECT j.invoice_id AS invoice_id, CAST(SUM(l.debit_minor - l.credit_minor) AS BIGINT) AS open_minor \
         FROM journal_lines l JOIN journals j ON j.id = l.journal_id \
         WHERE l.account = '{}' AND j.invoice_id IS NOT NULL \
         GROUP BY j.invoice_id HAVING SUM(l.debit_minor - l.credit_minor) <> 0",
        accounts::ACCOUNTS_RECEIVABLE.replace('\'', "''")
    )
}

/// Page `page` (from 1) of the open documents, newest first.
pub async fn list(s: &Services, page: u64) -> ServiceResult<OpenInvoicePage> {
    let db = &s.db;
    let backend = db.get_database_backend();
    let total = Count::find_by_statement(Statement::from_string(backend, format!("SELECT COUNT(*) AS n FROM ({}) AS open_documents", open_query())))
        .one(db)
        .await?
        .map_or(0, |c| c.n.max(0) as u64);
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let sql = format!("{} ORDER BY j.invoice_id DESC LIMIT {PAGE_SIZE} OFFSET {}", open_query(), (page - 1) * PAGE_SIZE);
    let open = Open::find_by_statement(Statement::from_string(backend, sql)).all(db).await?;
    let ids: Vec<i32> = open.iter().map(|o| o.invoice_id).collect();
    let invoices: BTreeMap<i32, inv::Model> = inv::Entity::find().filter(inv::Column::Id.is_in(ids.clone())).all(db).await?.into_iter().map(|i| (i.id, i)).collect();
    let order_ids: Vec<i32> = invoices.values().map(|i| i.order_id).collect::<BTreeSet<_>>().into_iter().collect();
    let orders: BTreeMap<i32, so::Model> = so::Entity::find().filter(so::Column::Id.is_in(order_ids.clone())).all(db).await?.into_iter().map(|o| (o.id, o)).collect();
    let customer_ids: Vec<i32> = orders.values().map(|o| o.customer_id).collect();
    let customers: BTreeMap<i32, customer::Model> = customer::Entity::find().filter(customer::Column::Id.is_in(customer_ids)).all(db).await?.into_iter().map(|c| (c.id, c)).collect();
    let processes: BTreeMap<i32, pp::Model> = pp::Entity::find().filter(pp::Column::InvoiceId.is_in(ids)).all(db).await?.into_iter().map(|p| (p.invoice_id, p)).collect();
    let card_orders: BTreeSet<i32> = pl::Entity::find()
        .filter(pl::Column::OrderId.is_in(order_ids))
        .filter(pl::Column::Tender.eq(crate::domain::order::Tender::Card.code()))
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.order_id)
        .collect();
    let mut rows = Vec::with_capacity(open.len());
    for o in open {
        let Some(i) = invoices.get(&o.invoice_id) else { continue };
        let currency = Currency::stored(&i.currency)?;
        let order = orders.get(&i.order_id);
        let cust = order.and_then(|o| customers.get(&o.customer_id));
        rows.push(OpenInvoiceRow {
            invoice_id: i.id,
            number: i.number.clone(),
            kind: DocumentKind::from_code(&i.kind).unwrap_or(DocumentKind::Invoice),
            order_id: i.order_id,
            order_number: order.map(|o| o.number.clone()).unwrap_or_default(),
            customer_account: cust.map(|c| c.account.clone()).unwrap_or_default(),
            customer_name: cust.map(|c| c.name.clone()).unwrap_or_default(),
            posted_at: i.posted_at,
            amount: Money::from_minor(i.amount_minor, currency),
            open: Money::from_minor(o.open_minor, currency),
            card_status: processes.get(&i.id).and_then(|p| ProcessStatus::from_code(&p.status)),
            process_id: processes.get(&i.id).map(|p| p.id),
            card_related: card_orders.contains(&i.order_id),
        });
    }
    Ok(OpenInvoicePage { rows, page, pages, total })
}
