//! Sales orders: taking an order with a card payment (authorized through the connector, intent
//! first), the order list with filters and paging, and the order detail finance users read.
use super::{audit, parameters, Services};
use crate::connector::{Authorized, Outcome};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{invoice_amounts, AuthorizationStatus, Command, InvoiceLineInput, OrderStatus, PaymentStatus, RequestStatus, Tender};
use crate::domain::parameters::FieldError;
use crate::domain::payment_views::*;
use crate::domain::pipeline::{ProcessStatus, Stage};
use crate::domain::views::ChannelKind;
use crate::entity::{
    authorization as au, capture as cap, channel, connector, customer, invoice as inv, journal, journal_line, payment_line as pl,
    payment_process as pp, pre_authorization_duration as pad, process_stage as ps, sales_order as so, sales_order_line as sol,
};
use crate::error::{ServiceError, ServiceResult};
use crate::pipeline::requests::{self, Purpose, Resolution};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use std::str::FromStr;

/// One order line as typed.
#[derive(Clone, Debug, Default)]
pub struct LineForm {
    pub item: String,
    pub quantity: String,
    pub unit_price: String,
    pub requested_ship_date: String,
}

/// The card the processor's acceptance page handed back (never the number, R-TOK-1).
#[derive(Clone, Debug, Default)]
pub struct CardForm {
    pub token: String,
    pub card_type: String,
    pub last_four: String,
    pub holder: String,
    pub expiry: String,
}

#[derive(Clone, Debug, Default)]
pub struct OrderForm {
    pub customer_id: String,
    pub channel_id: String,
    pub currency: String,
    pub tax_percent: String,
    pub charges: String,
    pub lines: Vec<LineForm>,
    pub card: CardForm,
}

/// A valid order, ready to store.
#[derive(Clone, Debug)]
pub struct NewOrder {
    pub customer_id: i32,
    pub channel_id: i32,
    pub currency: Currency,
    pub tax_percent: Decimal,
    pub charges: Money,
    pub lines: Vec<(String, i32, Money, NaiveDate)>,
    pub card: CardForm,
}

fn parse_amount(raw: &str, currency: Currency) -> Option<Money> {
    let d = Decimal::from_str(raw.trim()).ok()?;
    if d.is_sign_negative() || d.scale() > currency.minor_digits() {
        return None;
    }
    Money::from_decimal(d, currency).ok()
}

impl NewOrder {
    /// Parses the form; every problem is reported against its field and nothing is stored.
    pub fn parse(f: &OrderForm, today: NaiveDate) -> Result<NewOrder, Vec<FieldError>> {
        let mut errors = Vec::new();
        let customer_id = f.customer_id.trim().parse::<i32>().ok();
        if customer_id.is_none() {
            errors.push(FieldError::new("customer_id", "Choose a customer."));
        }
        let channel_id = f.channel_id.trim().parse::<i32>().ok();
        if channel_id.is_none() {
            errors.push(FieldError::new("channel_id", "Choose a channel."));
        }
        let currency = Currency::from_code(if f.currency.trim().is_empty() { "USD" } else { &f.currency });
        if currency.is_none() {
            errors.push(FieldError::new("currency", "Choose a currency from the list."));
        }
        let cur = currency.unwrap_or(Currency::Usd);
        let tax = Decimal::from_str(if f.tax_percent.trim().is_empty() { "0" } else { f.tax_percent.trim() })
            .ok()
            .filter(|t| *t >= Decimal::ZERO && *t <= Decimal::ONE_HUNDRED && t.scale() <= 4);
        if tax.is_none() {
            errors.push(FieldError::new("tax_percent", "Tax must be a percentage from 0 to 100."));
        }
        let charges = parse_amount(if f.charges.trim().is_empty() { "0" } else { &f.charges }, cur);
        if charges.is_none() {
            errors.push(FieldError::new("charges", format!("Charges must be an amount of at least 0 with at most {} decimals.", cur.minor_digits())));
        }
        let mut lines = Vec::new();
        for (i, l) in f.lines.iter().enumerate() {
            if l.item.trim().is_empty() && l.quantity.trim().is_empty() && l.unit_price.trim().is_empty() {
                continue;
            }
            let n = i + 1;
            let item = l.item.trim();
            if item.is_empty() || item.chars().count() > 80 {
                errors.push(FieldError::new(format!("line{n}_item"), format!("Line {n}: enter the item (at most 80 characters).")));
            }
            let qty = l.quantity.trim().parse::<i32>().ok().filter(|q| (1..=100_000).contains(q));
            if qty.is_none() {
                errors.push(FieldError::new(format!("line{n}_quantity"), format!("Line {n}: quantity must be a whole number from 1 to 100000.")));
            }
            let price = parse_amount(&l.unit_price, cur).filter(|p| p.minor() > 0);
            if price.is_none() {
                errors.push(FieldError::new(format!("line{n}_unit_price"), format!("Line {n}: unit price must be an amount above 0.")));
            }
            let date = NaiveDate::parse_from_str(l.requested_ship_date.trim(), "%Y-%m-%d").ok().filter(|d| *d >= today);
            if date.is_none() {
                errors.push(FieldError::new(format!("line{n}_ship_date"), format!("Line {n}: the requested ship date must be today or later (YYYY-MM-DD).")));
            }
            if let (Some(q), Some(p), Some(d)) = (qty, price, date) {
                lines.push((item.to_string(), q, p, d));
            }
        }
        if lines.is_empty() && errors.is_empty() {
            errors.push(FieldError::new("line1_item", "Add at least one line."));
        }
        let c = &f.card;
        let card_ok = c.token.trim().len() >= 8
            && c.last_four.len() == 4
            && c.last_four.chars().all(|ch| ch.is_ascii_digit())
            && !c.holder.trim().is_empty()
            && !c.card_type.trim().is_empty();
        if !card_ok {
            errors.push(FieldError::new("card", "Enter the card on the processor's payment page first."));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewOrder {
            customer_id: customer_id.unwrap_or_default(),
            channel_id: channel_id.unwrap_or_default(),
            currency: cur,
            tax_percent: tax.unwrap_or_default(),
            charges: charges.unwrap_or(Money::zero(cur)),
            lines,
            card: f.card.clone(),
        })
    }

    pub fn total(&self) -> Result<Money, ServiceError> {
        let inputs: Vec<InvoiceLineInput> =
            self.lines.iter().map(|(_, q, p, _)| InvoiceLineInput { quantity: i64::from(*q), unit_price: *p }).collect();
        invoice_amounts(&inputs, self.charges, self.tax_percent, self.currency)
            .map(|a| a.total)
            .map_err(|e| ServiceError::field("line1_quantity", format!("The order total cannot be computed: {e}.")))
    }
}

pub async fn default_connector(db: &impl ConnectionTrait) -> ServiceResult<connector::Model> {
    connector::Entity::find()
        .filter(connector::Column::IsDefault.eq(true))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::Conflict("No default payment connector is configured (Payment connectors page).".into()))
}

/// Places an order and authorizes its card payment for the order total.
pub async fn place(s: &Services, actor: &str, form: &OrderForm) -> ServiceResult<PlacedOrder> {
    let order = NewOrder::parse(form, s.now().date_naive()).map_err(ServiceError::Validation)?;
    let total = order.total()?;
    let txn = s.db.begin().await?;
    if customer::Entity::find_by_id(order.customer_id).one(&txn).await?.is_none() {
        return Err(ServiceError::field("customer_id", "Choose a customer."));
    }
    if channel::Entity::find_by_id(order.channel_id).one(&txn).await?.is_none() {
        return Err(ServiceError::field("channel_id", "Choose a channel."));
    }
    let conn = default_connector(&txn).await?;
    let now = s.now();
    let m = so::ActiveModel {
        number: Set(format!("new-{}", uuid::Uuid::new_v4().simple())),
        customer_id: Set(order.customer_id),
        channel_id: Set(order.channel_id),
        currency: Set(order.currency.code().to_string()),
        tax_percent: Set(order.tax_percent.normalize().to_string()),
        charges_minor: Set(order.charges.minor()),
        status: Set(OrderStatus::Open.code().to_string()),
        do_not_process: Set(false),
        created_at: Set(now),
        created_by: Set(actor.to_string()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let number = format!("SO-{:06}", m.id);
    let mut am: so::ActiveModel = m.clone().into();
    am.number = Set(number.clone());
    am.update(&txn).await?;
    for (i, (item, qty, price, date)) in order.lines.iter().enumerate() {
        sol::ActiveModel {
            order_id: Set(m.id),
            line_no: Set(i as i32 + 1),
            item: Set(item.clone()),
            quantity: Set(*qty),
            unit_price_minor: Set(price.minor()),
            requested_ship_date: Set(*date),
            invoiced_quantity: Set(0),
            credited_quantity: Set(0),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    let line = pl::ActiveModel {
        order_id: Set(m.id),
        tender: Set(Tender::Card.code().to_string()),
        amount_minor: Set(total.minor()),
        status: Set(PaymentStatus::PendingAuthorization.code().to_string()),
        connector_id: Set(Some(conn.id)),
        card_token: Set(Some(order.card.token.trim().to_string())),
        card_type: Set(Some(order.card.card_type.trim().to_string())),
        last_four: Set(Some(order.card.last_four.clone())),
        holder: Set(Some(order.card.holder.trim().to_string())),
        expiry: Set(Some(order.card.expiry.trim().to_string())),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    audit::record(&txn, now, actor, "order.place", &number, None, Some(serde_json::json!({ "total": total.to_string() }))).await?;
    txn.commit().await?;
    let (payment_status, message) = authorize_payment_line(s, &line, total, None).await?;
    Ok(PlacedOrder { order_id: m.id, number, payment_status, message })
}

/// Authorizes `amount` on a card payment line: intent, call, outcome. Returns the payment status
/// and, when not authorized, why.
pub async fn authorize_payment_line(
    s: &Services,
    line: &pl::Model,
    amount: Money,
    replaces: Option<i32>,
) -> ServiceResult<(PaymentStatus, Option<String>)> {
    let token = line.card_token.clone().ok_or_else(|| ServiceError::Conflict("The payment line has no card token.".into()))?;
    let connector_id = line.connector_id.ok_or_else(|| ServiceError::Conflict("The payment line has no connector.".into()))?;
    let req = requests::begin(s, connector_id, Command::Authorize, amount, Purpose { order_id: line.order_id, authorization_id: replaces, process: None, capture_id: None })
        .await
        .map_err(|e| ServiceError::Conflict(format!("The authorization could not be started: {e}")))?;
    let result = s.connector.authorize(&req.tracking_id, &token, amount).await;
    let resolution = requests::resolve(s, &req.tracking_id, result, Outcome::Authorized).await;
    record_authorization(s, &req, line, resolution, replaces).await
}

/// Records the outcome of an authorization request; shared by placement, the pipeline's fourth
/// stage and recovery.
pub async fn record_authorization(
    s: &Services,
    req: &crate::entity::processor_request::Model,
    line: &pl::Model,
    resolution: Resolution,
    replaces: Option<i32>,
) -> ServiceResult<(PaymentStatus, Option<String>)> {
    let now = s.now();
    let txn = s.db.begin().await?;
    let out = match resolution {
        Resolution::Done(Outcome::Authorized(a)) => {
            insert_authorization(&txn, s, req, line, &a, replaces).await?;
            requests::finish(&txn, req, RequestStatus::Succeeded, Some(a.reference.clone()), None, now).await?;
            set_payment_status(&txn, line.id, PaymentStatus::Authorized).await?;
            (PaymentStatus::Authorized, None)
        }
        Resolution::Done(Outcome::Declined { code, message }) => {
            requests::finish(&txn, req, RequestStatus::Declined, None, Some(format!("{code}: {message}")), now).await?;
            set_payment_status(&txn, line.id, PaymentStatus::Declined).await?;
            (PaymentStatus::Declined, Some(format!("The authorization was declined: {message}")))
        }
        Resolution::Done(other) => {
            requests::finish(&txn, req, RequestStatus::Failed, None, Some(format!("unexpected answer {other:?}")), now).await?;
            (PaymentStatus::PendingAuthorization, Some("The processor gave an unexpected answer.".into()))
        }
        Resolution::NotProcessed(m) => {
            requests::finish(&txn, req, RequestStatus::Failed, None, Some(m.clone()), now).await?;
            (PaymentStatus::PendingAuthorization, Some(format!("The authorization was not processed: {m}")))
        }
        Resolution::Unknown(m) => {
            requests::finish(&txn, req, RequestStatus::Unknown, None, Some(m.clone()), now).await?;
            (PaymentStatus::PendingAuthorization, Some(format!("The outcome is not known yet; it will be checked with the processor: {m}")))
        }
    };
    txn.commit().await?;
    Ok(out)
}

async fn set_payment_status(db: &impl ConnectionTrait, line_id: i32, status: PaymentStatus) -> Result<(), DbErr> {
    pl::Entity::update_many()
        .col_expr(pl::Column::Status, sea_orm::sea_query::Expr::value(status.code()))
        .filter(pl::Column::Id.eq(line_id))
        .exec(db)
        .await
        .map(|_| ())
}

async fn insert_authorization(
    db: &impl ConnectionTrait,
    s: &Services,
    req: &crate::entity::processor_request::Model,
    line: &pl::Model,
    a: &Authorized,
    replaces: Option<i32>,
) -> ServiceResult<au::Model> {
    let order = so::Entity::find_by_id(line.order_id).one(db).await?.ok_or_else(|| ServiceError::NotFound("order".into()))?;
    let now = s.now();
    let days = expiry_days(db, order.channel_id, &a.payment_method_variant).await?;
    Ok(au::ActiveModel {
        order_id: Set(line.order_id),
        payment_line_id: Set(line.id),
        connector_id: Set(req.connector_id),
        processor_reference: Set(a.reference.clone()),
        tracking_id: Set(req.tracking_id.clone()),
        currency: Set(a.amount.currency().code().to_string()),
        amount_minor: Set(a.amount.minor()),
        captured_minor: Set(0),
        supports_multiple_captures: Set(a.supports_multiple_captures),
        payment_method_variant: Set(a.payment_method_variant.clone()),
        card_type: Set(a.card_type.clone()),
        last_four: Set(a.last_four.clone()),
        authorized_at: Set(now),
        expires_at: Set(now + chrono::Duration::days(i64::from(days))),
        status: Set(AuthorizationStatus::Open.code().to_string()),
        replaces_id: Set(replaces),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// R-AUT-3: the store's pre-authorization duration for the payment type, else the AR number of days.
pub async fn expiry_days(db: &impl ConnectionTrait, channel_id: i32, variant: &str) -> Result<u32, DbErr> {
    if let Some(d) = pad::Entity::find_by_id((channel_id, variant.to_string())).one(db).await? {
        return Ok(d.days.max(1) as u32);
    }
    Ok(parameters::load(db).await?.days_before_expired())
}

/// What is left to invoice on an order: the lines not yet invoiced, the charges if no invoice took
/// them yet, and the tax on both, computed exactly as the next invoice would.
pub async fn balance(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<Money> {
    let currency = Currency::from_code(&order.currency).unwrap_or(Currency::Usd);
    let lines = sol::Entity::find().filter(sol::Column::OrderId.eq(order.id)).all(db).await?;
    let inputs: Vec<InvoiceLineInput> = lines
        .iter()
        .map(|l| InvoiceLineInput {
            quantity: i64::from(l.quantity - l.invoiced_quantity),
            unit_price: Money::from_minor(l.unit_price_minor, currency),
        })
        .collect();
    let invoiced_before = inv::Entity::find().filter(inv::Column::OrderId.eq(order.id)).count(db).await? > 0;
    let charges = Money::from_minor(if invoiced_before { 0 } else { order.charges_minor }, currency);
    let tax = Decimal::from_str(&order.tax_percent).unwrap_or_default();
    if inputs.iter().all(|i| i.quantity == 0) {
        return Ok(Money::zero(currency));
    }
    invoice_amounts(&inputs, charges, tax, currency)
        .map(|a| a.total)
        .map_err(|e| ServiceError::Conflict(format!("The order balance cannot be computed: {e}")))
}

pub const PAGE_SIZE: u64 = 25;

/// Orders, newest first, filtered by status, customer (account or name) and channel.
pub async fn list(db: &impl ConnectionTrait, filter: &OrderFilter, page: u64) -> ServiceResult<OrderPage> {
    let mut q = so::Entity::find().order_by_desc(so::Column::Id);
    if let Some(st) = filter.status.as_deref().filter(|v| !v.is_empty()) {
        if st == "do_not_process" {
            q = q.filter(so::Column::DoNotProcess.eq(true));
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
        rows.push(order_row(db, o).await?);
    }
    Ok(OrderPage { rows, page, pages, total })
}

async fn order_row(db: &impl ConnectionTrait, o: so::Model) -> ServiceResult<OrderRow> {
    let currency = Currency::from_code(&o.currency).unwrap_or(Currency::Usd);
    let cust = customer::Entity::find_by_id(o.customer_id).one(db).await?;
    let chan = channel::Entity::find_by_id(o.channel_id).one(db).await?;
    let payments = pl::Entity::find().filter(pl::Column::OrderId.eq(o.id)).all(db).await?;
    let invoices = inv::Entity::find().filter(inv::Column::OrderId.eq(o.id)).all(db).await?;
    let incomplete = pp::Entity::find()
        .filter(pp::Column::OrderId.eq(o.id))
        .filter(pp::Column::Status.eq(ProcessStatus::Incomplete.code()))
        .filter(pp::Column::Monitored.eq(true))
        .count(db)
        .await? as u32;
    Ok(OrderRow {
        id: o.id,
        number: o.number,
        customer_account: cust.as_ref().map(|c| c.account.clone()).unwrap_or_default(),
        customer_name: cust.map(|c| c.name).unwrap_or_default(),
        channel_name: chan.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        channel_kind: chan.and_then(|c| ChannelKind::from_code(&c.kind)).unwrap_or(ChannelKind::PosStore),
        status: OrderStatus::from_code(&o.status).unwrap_or(OrderStatus::Open),
        total: Money::from_minor(payments.first().map(|p| p.amount_minor).unwrap_or(0), currency),
        invoiced: Money::from_minor(invoices.iter().map(|i| i.amount_minor).sum(), currency),
        do_not_process: o.do_not_process,
        created_at: o.created_at,
        incomplete,
    })
}

pub async fn find(db: &impl ConnectionTrait, id: i32) -> ServiceResult<so::Model> {
    so::Entity::find_by_id(id).one(db).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no sales order with id {id}.")))
}

/// Everything the order page shows.
pub async fn detail(s: &Services, id: i32) -> ServiceResult<OrderDetail> {
    let db = &s.db;
    let o = find(db, id).await?;
    let currency = Currency::from_code(&o.currency).unwrap_or(Currency::Usd);
    let money = |m: i64| Money::from_minor(m, currency);
    let balance = balance(db, &o).await?;
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
            status: PaymentStatus::from_code(&p.status).unwrap_or(PaymentStatus::PendingAuthorization),
            card: p.last_four.as_ref().map(|l4| {
                format!(
                    "{} •••• {} · {} · {}",
                    p.card_type.clone().unwrap_or_default(),
                    l4,
                    p.holder.clone().unwrap_or_default(),
                    p.expiry.clone().unwrap_or_default()
                )
            }),
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
            status: AuthorizationStatus::from_code(&a.status).unwrap_or(AuthorizationStatus::Open),
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
            id: i.id,
            number: i.number,
            amount: money(i.amount_minor),
            posted_at: i.posted_at,
        })
        .collect();
    let journals = journals_of(db, id, currency).await?;
    Ok(OrderDetail {
        order: order_row(db, o.clone()).await?,
        tax_percent: o.tax_percent,
        charges: money(o.charges_minor),
        balance,
        lines,
        payments,
        authorizations,
        invoices,
        journals,
    })
}

async fn journals_of(db: &impl ConnectionTrait, order_id: i32, currency: Currency) -> ServiceResult<Vec<JournalView>> {
    let js = journal::Entity::find().filter(journal::Column::OrderId.eq(order_id)).order_by_asc(journal::Column::Id).all(db).await?;
    let lines = journal_line::Entity::find()
        .filter(journal_line::Column::JournalId.is_in(js.iter().map(|j| j.id).collect::<Vec<_>>()))
        .order_by_asc(journal_line::Column::Id)
        .all(db)
        .await?;
    Ok(js
        .into_iter()
        .map(|j| JournalView {
            lines: lines
                .iter()
                .filter(|l| l.journal_id == j.id)
                .map(|l| JournalLineView {
                    account: l.account.clone(),
                    debit: Money::from_minor(l.debit_minor, currency),
                    credit: Money::from_minor(l.credit_minor, currency),
                })
                .collect(),
            id: j.id,
            number: j.number,
            kind_label: crate::domain::order::JournalKind::from_code(&j.kind).map(|k| k.label()).unwrap_or("Journal").to_string(),
            description: j.description,
            posted_at: j.posted_at,
            prepayment: j.prepayment,
        })
        .collect())
}

/// The customers and channels an order can be placed for.
pub async fn choices(db: &impl ConnectionTrait) -> ServiceResult<(Vec<crate::domain::views::CustomerView>, Vec<crate::domain::views::ChannelView>)> {
    Ok((super::customers::list(db).await?, super::setup::channels(db).await?))
}
