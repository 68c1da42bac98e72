//! Journals (R-LED-1): balanced, posted once per source, numbered from their ids.
use crate::domain::order::{balanced, JournalKind, JournalLine};
use crate::entity::{journal, journal_line as jl, sales_order as so};
use crate::error::{ServiceError, ServiceResult};
use crate::writes::Writes;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityName, EntityTrait, QueryFilter, Set, TryIntoModel};

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

    /// A prepayment journal voucher (R-PRE): money moved on a deposit, by `tender` if one did.
    pub fn voucher(self, tender: Option<crate::domain::order::Tender>) -> Posting {
        Posting { tender, prepayment: true, ..self }
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
    posted.pop().ok_or_else(|| ServiceError::internal("the journal was not posted"))
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
        all_lines.push(balanced(lines)?);
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

