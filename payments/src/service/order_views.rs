//! What finance users read of orders: the order list with filters and paging, and the order page.
use super::Services;
use crate::domain::money::{Currency, Money};
use crate::domain::order::{OrderStatus, Tender};
use crate::domain::payment_views::*;
use crate::domain::pipeline::{ProcessStatus, Stage};
use crate::domain::views::ChannelKind;
use crate::entity::{
    authorization as au, capture as cap, channel, customer, invoice as inv, journal, payment_line as pl,
    payment_process as pp, process_stage as ps, sales_order as so, sales_order_line as sol,
};
use crate::error::{ServiceError, ServiceResult};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use crate::ledger::orders::{balance, basis, find, line_states};


pub const PAGE_SIZE: u64 = 25;

/// Orders, newest first, filtered by status, customer (account or name) and channel.
pub async fn list(db: &impl ConnectionTrait, filter: &OrderFilter, page: u64) -> ServiceResult<OrderPage> {
    let wm = super::expiry::watermark(db).await?;
    let mut q = so::Entity::find().order_by_desc(so::Column::Id);
    if let Some(st) = filter.status.as_deref().filter(|v| !v.is_empty()) {
        if st == "do_not_process" {
            q = q.filter(super::expiry::order_held(db.get_database_backend(), wm));
        } else {
            q = q.filter(so::Column::Status.eq(st));
        }
    }
    if let Some(c) = filter.channel.as_deref().and_then(|v| v.parse::<i32>().ok()) {
        q = q.filter(so::Column::ChannelId.eq(c));
    }
    if let Some(text) = filter.customer.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        let ids: Vec<i32> = customer::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(customer::Column::Account.contains(text))
                    .add(customer::Column::Name.contains(text)),
            )
            .all(db)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        q = q.filter(so::Column::CustomerId.is_in(ids));
    }
    let paginator = q.paginate(db, PAGE_SIZE);
    let total = paginator.num_items().await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let orders = paginator.fetch_page(page - 1).await?;
    let mut rows = Vec::with_capacity(orders.len());
    for o in orders {
        let held = super::expiry::overlay_at(db, &o, wm).await?.do_not_process(&o);
        rows.push(order_row(db, o, held).await?);
    }
    Ok(OrderPage { rows, page, pages, total })
}

/// One order's row; `held` is Do not process with expiry applied (`service::expiry`).
pub(crate) async fn order_row(db: &impl ConnectionTrait, o: so::Model, held: bool) -> ServiceResult<OrderRow> {
    let currency = Currency::stored(&o.currency)?;
    let cust = customer::Entity::find_by_id(o.customer_id).one(db).await?;
    let chan = channel::Entity::find_by_id(o.channel_id).one(db).await?;
    let chan_zone = chan.as_ref().map(|c| c.time_zone.clone());
    let invoices = inv::Entity::find().filter(inv::Column::OrderId.eq(o.id)).all(db).await?;
    let total = order_total(db, &o).await?;
    let processes = pp::Entity::find().filter(pp::Column::OrderId.eq(o.id)).all(db).await?;
    let incomplete = processes.iter().filter(|p| p.status == ProcessStatus::Incomplete.code()).count() as u32;
    // An invoice taken back because its card was not charged (monitoring off) is not invoiced.
    let reversed: Vec<i32> = processes.iter().filter(|p| p.status == ProcessStatus::Reversed.code()).map(|p| p.invoice_id).collect();
    let invoices: Vec<inv::Model> = invoices.into_iter().filter(|i| !reversed.contains(&i.id)).collect();
    Ok(OrderRow {
        id: o.id,
        number: o.number,
        customer_account: cust.as_ref().map(|c| c.account.clone()).unwrap_or_default(),
        customer_name: cust.map(|c| c.name).unwrap_or_default(),
        channel_id: o.channel_id,
        channel_name: chan.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        channel_kind: chan.as_ref().and_then(|c| ChannelKind::from_code(&c.kind)).unwrap_or(ChannelKind::PosStore),
        status: OrderStatus::from_code(&o.status).unwrap_or(OrderStatus::Open),
        total,
        invoiced: Money::from_minor(invoices.iter().map(|i| i.amount_minor).sum(), currency),
        do_not_process: held,
        taken_local: super::setup::local_time(o.created_at, chan_zone.as_deref()),
        created_at: o.created_at,
        incomplete,
    })
}

/// The order's total: every line at its full quantity, the charges, and tax on both, rounded once;
/// its invoices add up to it whatever the split (R-MON-3).
pub async fn order_total(db: &impl ConnectionTrait, o: &so::Model) -> ServiceResult<Money> {
    let currency = Currency::stored(&o.currency)?;
    let lines = sol::Entity::find().filter(sol::Column::OrderId.eq(o.id)).all(db).await?;
    let states = line_states(&lines, currency);
    basis(o, &states, currency)?
        .total()
        .map(|a| a.total)
        .map_err(|source| ServiceError::Amount { what: "The order total", source })
}

/// Everything the order page shows.
pub async fn detail(s: &Services, id: i32) -> ServiceResult<OrderDetail> {
    let db = &s.db;
    let o = find(db, id).await?;
    let currency = Currency::stored(&o.currency)?;
    let money = |m: i64| Money::from_minor(m, currency);
    let balance = balance(db, &o).await?;
    // Expiry not yet stored on this order's rows (`service::expiry`).
    let wm = super::expiry::watermark(db).await?;
    let expiry = super::expiry::overlay_at(db, &o, wm).await?;
    let lines = sol::Entity::find()
        .filter(sol::Column::OrderId.eq(id))
        .order_by_asc(sol::Column::LineNo)
        .all(db)
        .await?
        .into_iter()
        .map(|l| OrderLineView {
            id: l.id,
            line_no: l.line_no,
            item: l.item,
            quantity: l.quantity,
            invoiced_quantity: l.invoiced_quantity,
            credited_quantity: l.credited_quantity,
            unit_price: money(l.unit_price_minor),
            requested_ship_date: l.requested_ship_date,
        })
        .collect();
    let payments = pl::Entity::find()
        .filter(pl::Column::OrderId.eq(id))
        .order_by_asc(pl::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|p| PaymentLineView {
            id: p.id,
            tender: Tender::from_code(&p.tender).unwrap_or(Tender::Card),
            amount: money(p.amount_minor),
            status: expiry.payment_status(&p),
            card: p.last_four.as_ref().map(|l4| {
                format!(
                    "{} •••• {} · {} · {}",
                    p.card_type.clone().unwrap_or_default(),
                    l4,
                    p.holder.clone().unwrap_or_default(),
                    p.expiry.clone().unwrap_or_default()
                )
            }),
            token_kind: crate::domain::tokens::TokenKind::from_code(&p.token_kind).unwrap_or(crate::domain::tokens::TokenKind::Recurring),
            prepayment: p.prepayment,
            refunded: money(p.refunded_minor),
        })
        .collect();
    let invoices = inv::Entity::find().filter(inv::Column::OrderId.eq(id)).order_by_asc(inv::Column::Id).all(db).await?;
    let captures = cap::Entity::find().filter(cap::Column::OrderId.eq(id)).order_by_asc(cap::Column::Id).all(db).await?;
    let now = s.now();
    let authorizations = au::Entity::find()
        .filter(au::Column::OrderId.eq(id))
        .order_by_asc(au::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|a| AuthorizationView {
            id: a.id,
            amount: money(a.amount_minor),
            captured: money(a.captured_minor),
            status: expiry.authorization_status(&a),
            supports_multiple_captures: a.supports_multiple_captures,
            payment_method_variant: a.payment_method_variant,
            card_type: a.card_type,
            last_four: a.last_four,
            authorized_at: a.authorized_at,
            expires_at: a.expires_at,
            expired: a.expires_at <= now,
            processor_reference: a.processor_reference,
            replaces: a.replaces_id,
            captures: captures
                .iter()
                .filter(|c| c.authorization_id == a.id)
                .map(|c| CaptureView {
                    id: c.id,
                    amount: money(c.amount_minor),
                    refunded: money(c.refunded_minor),
                    invoice_number: invoices.iter().find(|i| Some(i.id) == c.invoice_id).map(|i| i.number.clone()),
                    captured_at: c.captured_at,
                    processor_reference: c.processor_reference.clone(),
                    tracking_id: c.tracking_id.clone(),
                    failed: c.failed_at.map(|_| c.failure_reason.clone().unwrap_or_else(|| "no reason given".into())),
                })
                .collect(),
        })
        .collect();
    let processes = pp::Entity::find().filter(pp::Column::OrderId.eq(id)).all(db).await?;
    let stages = ps::Entity::find()
        .filter(ps::Column::ProcessId.is_in(processes.iter().map(|p| p.id).collect::<Vec<_>>()))
        .filter(ps::Column::Status.eq("failed"))
        .all(db)
        .await?;
    let invoices = invoices
        .into_iter()
        .map(|i| InvoiceView {
            process: processes.iter().find(|p| p.invoice_id == i.id).map(|p| ProcessSummary {
                id: p.id,
                status: ProcessStatus::from_code(&p.status).unwrap_or(ProcessStatus::Running),
                monitored: p.monitored,
                failed_stage: stages.iter().find(|st| st.process_id == p.id).and_then(|st| Stage::from_code(&st.stage)),
                last_error: p.last_error.clone(),
                capture_path: p.capture_path.clone(),
            }),
            capture_failed: captures.iter().any(|c| c.invoice_id == Some(i.id) && c.failed_at.is_some()),
            id: i.id,
            number: i.number,
            amount: money(i.amount_minor),
            posted_at: i.posted_at,
        })
        .collect();
    let journals = journals_of(db, id).await?;
    let prepayment = super::prepayments::view(db, &o).await?;
    let cancel_refusal = super::cancellation::cancel_refusal(db, &o).await?;
    Ok(OrderDetail {
        order: order_row(db, o.clone(), expiry.do_not_process(&o)).await?,
        tax_percent: o.tax_percent,
        charges: money(o.charges_minor),
        balance,
        lines,
        payments,
        authorizations,
        invoices,
        journals,
        prepayment,
        cancel_refusal,
    })
}

pub(crate) async fn journals_of(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<Vec<JournalView>> {
    let js = journal::Entity::find().filter(journal::Column::OrderId.eq(order_id)).order_by_asc(journal::Column::Id).all(db).await?;
    super::journals::views(db, js).await
}

/// The customers and channels an order can be placed for.
pub async fn choices(db: &impl ConnectionTrait) -> ServiceResult<(Vec<crate::domain::views::CustomerView>, Vec<crate::domain::views::ChannelView>)> {
    // A closed channel takes no new orders (issue #43): it is not offered.
    let open = super::setup::channels(db).await?.into_iter().filter(|c| !c.closed).collect();
    Ok((super::customers::list(db).await?, open))
}
