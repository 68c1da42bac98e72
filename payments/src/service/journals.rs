//! The Journals page (R-LED-1, R-PRE): payment, cash, refund, settlement and cancellation charge
//! journals with their lines and the Prepayment journal voucher flag, filtered by order, customer,
//! type and posting date, and exported as CSV. Journals are never changed; corrections are new ones.
use crate::domain::money::{Currency, Money};
use crate::domain::order::{JournalKind, Tender};
use crate::domain::payment_views::{JournalFilter, JournalLineView, JournalPage, JournalView};
use crate::entity::{customer, journal, journal_line as jl, sales_order as so};
use crate::error::{ServiceError, ServiceResult};
use chrono::{NaiveDate, TimeZone, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

pub const PAGE_SIZE: u64 = 25;

/// Journals with their lines, order number and customer, in the order given.
pub async fn views(db: &impl ConnectionTrait, js: Vec<journal::Model>) -> ServiceResult<Vec<JournalView>> {
    let ids: Vec<i32> = js.iter().map(|j| j.id).collect();
    let lines = jl::Entity::find().filter(jl::Column::JournalId.is_in(ids)).order_by_asc(jl::Column::Id).all(db).await?;
    let order_ids: Vec<i32> = js.iter().filter_map(|j| j.order_id).collect();
    let orders = so::Entity::find().filter(so::Column::Id.is_in(order_ids)).all(db).await?;
    let customer_ids: Vec<i32> = js.iter().filter_map(|j| j.customer_id).collect();
    let customers = customer::Entity::find().filter(customer::Column::Id.is_in(customer_ids)).all(db).await?;
    js.into_iter()
        .map(|j| {
            let cur = Currency::stored(&j.currency)?;
            Ok(JournalView {
                lines: lines
                    .iter()
                    .filter(|l| l.journal_id == j.id)
                    .map(|l| JournalLineView {
                        account: l.account.clone(),
                        debit: Money::from_minor(l.debit_minor, cur),
                        credit: Money::from_minor(l.credit_minor, cur),
                    })
                    .collect(),
                id: j.id,
                number: j.number,
                kind_label: JournalKind::from_code(&j.kind).map(|k| k.label()).unwrap_or("Journal").to_string(),
                description: j.description,
                posted_at: j.posted_at,
                prepayment: j.prepayment,
                order_id: j.order_id,
                order_number: j.order_id.and_then(|id| orders.iter().find(|o| o.id == id)).map(|o| o.number.clone()),
                customer: j.customer_id.and_then(|id| customers.iter().find(|c| c.id == id)).map(|c| format!("{} {}", c.account, c.name)),
                tender: j.tender.as_deref().and_then(Tender::from_code),
            })
        })
        .collect()
}

fn date(field: &str, raw: &Option<String>) -> ServiceResult<Option<NaiveDate>> {
    match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => NaiveDate::parse_from_str(r, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| ServiceError::field(field, format!("“{r}” is not a date; use YYYY-MM-DD."))),
    }
}

/// The condition for a filter; a bad date or type is a field error.
async fn condition(db: &impl ConnectionTrait, f: &JournalFilter) -> ServiceResult<Condition> {
    let mut c = Condition::all();
    if let Some(kind) = f.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
        let k = JournalKind::from_code(kind).ok_or_else(|| ServiceError::field("kind", "Choose a journal type from the list."))?;
        c = c.add(journal::Column::Kind.eq(k.code()));
    }
    if let Some(order) = f.order.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
        let digits: String = order.chars().filter(|ch| ch.is_ascii_digit()).collect();
        let number = if order.to_uppercase().starts_with("SO-") || digits.is_empty() {
            order.to_uppercase()
        } else {
            format!("SO-{:06}", digits.parse::<u64>().unwrap_or(0))
        };
        let ids: Vec<i32> = so::Entity::find().filter(so::Column::Number.eq(number)).all(db).await?.iter().map(|o| o.id).collect();
        c = c.add(journal::Column::OrderId.is_in(ids));
    }
    if let Some(who) = f.customer.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        let ids: Vec<i32> = customer::Entity::find()
            .filter(Condition::any().add(customer::Column::Account.contains(who)).add(customer::Column::Name.contains(who)))
            .all(db)
            .await?
            .iter()
            .map(|c| c.id)
            .collect();
        c = c.add(journal::Column::CustomerId.is_in(ids));
    }
    let from = date("from", &f.from)?;
    let to = date("to", &f.to)?;
    if let (Some(a), Some(b)) = (from, to) {
        if a > b {
            return Err(ServiceError::field("to", "The end date is before the start date."));
        }
    }
    if let Some(d) = from {
        c = c.add(journal::Column::PostedAt.gte(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())));
    }
    if let Some(d) = to {
        let next = d.succ_opt().unwrap_or(d);
        c = c.add(journal::Column::PostedAt.lt(Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0).unwrap_or_default())));
    }
    Ok(c)
}

/// A page of journals, newest first.
pub async fn list(db: &impl ConnectionTrait, f: &JournalFilter, page: u64) -> ServiceResult<JournalPage> {
    let c = condition(db, f).await?;
    let paginator = journal::Entity::find().filter(c).order_by_desc(journal::Column::Id).paginate(db, PAGE_SIZE);
    let total = paginator.num_items().await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let js = paginator.fetch_page(page - 1).await?;
    Ok(JournalPage { rows: views(db, js).await?, page, pages, total })
}

pub(crate) fn csv_field(s: &str) -> String {
    // Quoted always; a leading =, +, - or @ is prefixed so spreadsheets do not run it as a formula.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Every journal line matching the filter, oldest first, as CSV (one row per journal line).
pub async fn csv(db: &impl ConnectionTrait, f: &JournalFilter) -> ServiceResult<String> {
    let c = condition(db, f).await?;
    let js = journal::Entity::find().filter(c).order_by_asc(journal::Column::Id).all(db).await?;
    let mut out = String::from("journal,posted_at,type,prepayment_journal_voucher,order,customer,tender,description,account,debit,credit,currency\n");
    for chunk in js.chunks(500) {
        for j in views(db, chunk.to_vec()).await? {
            for l in &j.lines {
                let row = [
                    csv_field(&j.number),
                    csv_field(&j.posted_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    csv_field(&j.kind_label),
                    csv_field(if j.prepayment { "yes" } else { "no" }),
                    csv_field(j.order_number.as_deref().unwrap_or("")),
                    csv_field(j.customer.as_deref().unwrap_or("")),
                    csv_field(j.tender.map(|t| t.label()).unwrap_or("")),
                    csv_field(&j.description),
                    csv_field(&l.account),
                    l.debit.to_decimal().to_string(),
                    l.credit.to_decimal().to_string(),
                    l.debit.currency().code().to_string(),
                ];
                out.push_str(&row.join(","));
                out.push('\n');
            }
        }
    }
    Ok(out)
}
