//! Sales orders: taking an order with a card payment (authorized through the connector, intent
//! first), the order list with filters and paging, and the order detail finance users read.
use super::{audit, parameters, Services};
use crate::connector::{Authorized, Outcome};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{invoice_amounts, AuthorizationStatus, LineState, OrderBasis, Command, InvoiceLineInput, OrderStatus, PaymentStatus, RequestStatus, Tender};
use crate::domain::parameters::FieldError;
use crate::domain::payment_views::*;
use crate::domain::pipeline::{ProcessStatus, Stage};
use crate::domain::views::ChannelKind;
use crate::entity::{
    authorization as au, capture as cap, channel, connector, customer, invoice as inv, journal, payment_line as pl,
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
    /// `cash_and_carry` or `customer_order` (the default); cash and carry is for POS stores only.
    pub order_kind: String,
    /// A card on file of the customer, used instead of `card` (R-TOK-6).
    pub saved_card_id: String,
    /// "Save payment information" (R-TOK-6).
    pub save_card: bool,
    /// The code of the confirmation the user accepted (consent, acknowledgement), if any.
    pub confirmed: String,
    /// Paid in advance: a customer order with deposit (POS) or a call center order with the
    /// prepayment attribute (R-PRE-2/3).
    pub prepayment: bool,
    pub deposit: super::prepayments::DepositForm,
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

fn parse_amount(raw: &str, currency: Currency) -> Result<Money, crate::domain::money::AmountError> {
    Money::parse(raw, currency)
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
        let cur = currency.unwrap_or(Currency::USD);
        let tax = Decimal::from_str(if f.tax_percent.trim().is_empty() { "0" } else { f.tax_percent.trim() })
            .ok()
            .filter(|t| *t >= Decimal::ZERO && *t <= Decimal::ONE_HUNDRED && t.scale() <= 4);
        if tax.is_none() {
            errors.push(FieldError::new("tax_percent", "Tax must be a percentage from 0 to 100."));
        }
        let charges = parse_amount(if f.charges.trim().is_empty() { "0" } else { &f.charges }, cur)
            .map_err(|e| errors.push(FieldError::new("charges", format!("Charges must be an amount of at least 0: {e}."))))
            .ok();
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
            let price = match parse_amount(&l.unit_price, cur) {
                Ok(p) if p.minor() > 0 => Some(p),
                Ok(_) => {
                    errors.push(FieldError::new(format!("line{n}_unit_price"), format!("Line {n}: unit price must be an amount above 0.")));
                    None
                }
                Err(e) => {
                    errors.push(FieldError::new(format!("line{n}_unit_price"), format!("Line {n}: unit price must be an amount above 0: {e}.")));
                    None
                }
            };
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
        // A prepayment order paid without a card (cash, customer account) needs none. The card's
        // details are the processor's (`cards::verified`), not these fields.
        let no_card = f.saved_card_id.trim().is_empty() && f.card.token.trim().is_empty();
        let card_ok = (f.prepayment && no_card) || !f.saved_card_id.trim().is_empty() || !f.card.token.trim().is_empty();
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
            .and_then(|a| a.total.within_ceiling())
            .map_err(|_| ServiceError::field("line1_quantity", format!("The order total would be above the largest amount Paystage takes ({}).", self.currency.ceiling())))
    }
}

pub async fn default_connector(db: &impl ConnectionTrait) -> ServiceResult<connector::Model> {
    connector::Entity::find()
        .filter(connector::Column::IsDefault.eq(true))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::Conflict("No default payment connector is configured (Payment connectors page).".into()))
}

/// The card an order is paid with, after the token rules were applied.
pub(crate) struct ChosenCard {
    pub(crate) card: CardForm,
    pub(crate) saved: Option<crate::entity::customer_card::Model>,
}

pub(crate) async fn chosen_card(db: &impl ConnectionTrait, form: &OrderForm, customer_id: i32) -> ServiceResult<ChosenCard> {
    let raw = form.saved_card_id.trim();
    if raw.is_empty() {
        return Ok(ChosenCard { card: form.card.clone(), saved: None });
    }
    let card = raw
        .parse::<i32>()
        .ok()
        .and_then(|id| if id > 0 { Some(id) } else { None });
    let found = match card {
        Some(id) => crate::entity::customer_card::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    match found {
        Some(c) if c.customer_id == customer_id && c.deleted_at.is_none() => Ok(ChosenCard {
            card: CardForm {
                token: c.token.clone(),
                card_type: c.card_type.clone(),
                last_four: c.last_four.clone(),
                holder: c.holder.clone(),
                expiry: c.expiry.clone(),
            },
            saved: Some(c),
        }),
        _ => Err(ServiceError::field("saved_card_id", "Choose one of the customer's saved cards, or enter a new card.")),
    }
}

/// Places an order and authorizes its card payment for the order total, under the token rules of
/// its channel (R-TOK-2..7): cash and carry is captured at once and never tokenized; a POS
/// customer order shipping beyond the threshold needs the customer's consent; a call center future
/// order needs a recurring token and, with Delay authorization, is authorized later by the
/// resubmit job (R-AUT-1). When a confirmation is needed and was not given, nothing is written and
/// [`ServiceError::ConfirmationRequired`] says what to confirm.
pub async fn place(s: &Services, actor: &str, form: &OrderForm) -> ServiceResult<PlacedOrder> {
    // The fields first (no processor call for a form that is refused anyway); then a new card is
    // taken as the processor describes its token, before anything is written.
    NewOrder::parse(form, s.now().date_naive()).map_err(ServiceError::Validation)?.total()?;
    // Boxed: the placing future is large, and callers' stacks (a test thread's 2 MiB in a debug
    // build) must not hold it twice over.
    if !form.saved_card_id.trim().is_empty() {
        return Box::pin(place_verified(s, actor, form)).await;
    }
    let card = super::cards::verified(s, &form.card).await?;
    Box::pin(place_verified(s, actor, &OrderForm { card, ..form.clone() })).await
}

/// [`place`] for a form whose new card (if any) already came from `cards::verified`.
pub(crate) async fn place_verified(s: &Services, actor: &str, form: &OrderForm) -> ServiceResult<PlacedOrder> {
    use crate::domain::tokens::{self, OrderKind, TokenContext};
    let today = s.now().date_naive();
    let order = NewOrder::parse(form, today).map_err(ServiceError::Validation)?;
    let total = order.total()?;
    let kind = match form.order_kind.trim() {
        "" => OrderKind::CustomerOrder,
        k => OrderKind::from_code(k).ok_or_else(|| ServiceError::field("order_kind", "Choose cash and carry or customer order."))?,
    };
    let txn = s.db.begin().await?;
    if customer::Entity::find_by_id(order.customer_id).one(&txn).await?.is_none() {
        return Err(ServiceError::field("customer_id", "Choose a customer."));
    }
    let Some(chan) = channel::Entity::find_by_id(order.channel_id).one(&txn).await? else {
        return Err(ServiceError::field("channel_id", "Choose a channel."));
    };
    let channel_kind = ChannelKind::from_code(&chan.kind).unwrap_or(ChannelKind::PosStore);
    if kind == OrderKind::CashAndCarry && channel_kind != ChannelKind::PosStore {
        return Err(ServiceError::field("order_kind", "Cash and carry is for POS store sales; choose customer order."));
    }
    let conn = default_connector(&txn).await?;
    let chosen = chosen_card(&txn, form, order.customer_id).await?;
    let (features, params) = super::features::load_with_parameters(&txn).await?;
    let has_card = !chosen.card.token.trim().is_empty();
    let split = if form.prepayment {
        if kind == OrderKind::CashAndCarry {
            return Err(ServiceError::field("prepayment", "Cash and carry is paid in full at once; a deposit is for customer orders."));
        }
        if !matches!(channel_kind, ChannelKind::PosStore | ChannelKind::CallCenter) {
            return Err(ServiceError::field("prepayment", "Deposits are taken at POS stores and by the call center."));
        }
        let split = super::prepayments::split_deposit(&form.deposit, total, params.default_deposit_percent(), channel_kind)?;
        if split.card.minor() > 0 && !has_card {
            return Err(ServiceError::field("card", format!("The card part of the deposit is {}: enter the card on the processor's payment page first.", split.card)));
        }
        Some(split)
    } else {
        None
    };
    // A prepayment order's card is authorized for its part of the deposit and for what is left to
    // pay at pickup; the deposit part is captured right away (R-PRE-2).
    let card_amount = match &split {
        Some(sp) => Money::from_minor(sp.card.minor() + total.minor() - sp.deposit.minor(), total.currency()),
        None => total,
    };
    if form.save_card {
        if !tokens::card_on_file_offered(features.is_enabled(crate::Feature::RestrictPaymentTokenUsage), params.allow_customer_card_on_file()) {
            return Err(ServiceError::field(
                "save_card",
                "Saving payment information is not offered: it needs the feature Restrict Payment Token usage to Order context and Allow customer card on file = Yes (Call center parameters).",
            ));
        }
        if channel_kind != ChannelKind::CallCenter || chosen.saved.is_some() {
            return Err(ServiceError::field("save_card", "Payment information is saved on file for new cards on call center orders only."));
        }
    }
    let latest_ship = order.lines.iter().map(|l| l.3).max().unwrap_or(today);
    let earliest_ship = order.lines.iter().map(|l| l.3).min().unwrap_or(today);
    let future_order = channel_kind == ChannelKind::CallCenter
        && kind == OrderKind::CustomerOrder
        && params.future_orders()
        && (earliest_ship - today).num_days() > i64::from(params.future_order_days());
    let decision = tokens::decide(&TokenContext {
        channel: channel_kind,
        order_kind: kind,
        nonrecurring_in_effect: features.nonrecurring_tokens_in_effect(),
        latest_ship_date: latest_ship,
        today,
        min_days_for_storing_token: params.min_order_processing_days_for_storing_card_token(),
        always_store_token: params.always_store_card_token_on_order_balance_authorization(),
        future_order,
        saved_card: chosen.saved.is_some(),
        save_requested: form.save_card,
    });
    if let Some(c) = decision.confirmation.filter(|_| has_card) {
        if form.confirmed.trim() != c.code() {
            return Err(ServiceError::ConfirmationRequired(c));
        }
    }
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
        order_kind: Set(kind.code().to_string()),
        prepayment: Set(split.is_some()),
        deposit_minor: Set(split.map(|sp| sp.deposit.minor()).unwrap_or(0)),
        cancellation_charge_minor: Set(0),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let number = format!("SO-{:06}", m.id);
    let mut am: so::ActiveModel = m.clone().into();
    am.number = Set(number.clone());
    let m = am.update(&txn).await?;
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
    let saved = match (&chosen.saved, decision.save_on_file) {
        (Some(c), _) => Some(c.id),
        (None, true) => Some(super::cards::insert(&txn, now, actor, order.customer_id, conn.id, &chosen.card).await?.id),
        (None, false) => None,
    };
    if let Some(sp) = &split {
        super::prepayments::post_deposit_lines(&txn, now, &m, sp).await?;
    }
    let line = if has_card && card_amount.minor() > 0 {
        let line = insert_card_line(&txn, m.id, card_amount, conn.id, &chosen.card, decision.kind, saved, now).await?;
        if split.is_some() {
            pl::Entity::update_many()
                .col_expr(pl::Column::Prepayment, sea_orm::sea_query::Expr::value(true))
                .filter(pl::Column::Id.eq(line.id))
                .exec(&txn)
                .await?;
        }
        if let Some(c) = decision.confirmation {
            record_confirmation(&txn, now, actor, m.id, Some(line.id), c).await?;
        }
        Some(line)
    } else {
        None
    };
    audit::record(
        &txn,
        now,
        actor,
        "order.place",
        &number,
        None,
        Some(serde_json::json!({
            "total": total.to_string(),
            "kind": kind.code(),
            "token": decision.kind.code(),
            "card_on_file": saved,
            "deposit": split.map(|sp| serde_json::json!({ "amount": sp.deposit.to_string(), "card": sp.card.to_string(), "cash": sp.cash.to_string(), "customer_account": sp.customer_account.to_string() })),
        })),
    )
    .await?;
    txn.commit().await?;
    let Some(line) = line else {
        return Ok(PlacedOrder {
            order_id: m.id,
            number,
            payment_status: PaymentStatus::Paid,
            message: split.map(|sp| format!("Deposit of {} taken; {} is due at pickup.", sp.deposit, Money::from_minor(total.minor() - sp.deposit.minor(), total.currency()))),
        });
    };
    if future_order && params.delay_authorization() && split.is_none() {
        let from = earliest_ship - chrono::Duration::days(i64::from(params.future_order_days()));
        return Ok(PlacedOrder {
            order_id: m.id,
            number,
            payment_status: PaymentStatus::PendingAuthorization,
            message: Some(format!(
                "Future order: the authorization resubmit job authorizes the card from {from} (Future order days before the ship date, R-AUT-1)."
            )),
        });
    }
    let (payment_status, mut message) = authorize_payment_line(s, &line, card_amount, None).await?;
    if let (Some(sp), PaymentStatus::Authorized) = (&split, payment_status) {
        let problem = super::prepayments::capture_deposit(s, m.id).await?;
        let due = Money::from_minor(total.minor() - sp.deposit.minor(), total.currency());
        message = Some(match problem {
            None => format!("Deposit of {} taken (card {}, cash {}, customer account {}); {due} is due at pickup.", sp.deposit, sp.card, sp.cash, sp.customer_account),
            Some(p) => format!("The order is placed but the card deposit was not captured: {p}"),
        });
    }
    if kind == OrderKind::CashAndCarry && payment_status == PaymentStatus::Authorized {
        // R-TOK-2: the customer leaves with the goods; the whole order is invoiced and captured now.
        let lines = sol::Entity::find().filter(sol::Column::OrderId.eq(m.id)).all(&s.db).await?;
        let q: Vec<(i32, i32)> = lines.iter().map(|l| (l.id, l.quantity)).collect();
        let outcome = crate::pipeline::invoice(s, actor, m.id, &q).await?;
        message = Some(format!("Cash and carry: invoice {} posted and the card captured ({}).", outcome.invoice_number, outcome.status.label()));
    }
    Ok(PlacedOrder { order_id: m.id, number, payment_status, message })
}

/// A card payment line for `amount`, waiting for its authorization.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_card_line(
    db: &impl ConnectionTrait,
    order_id: i32,
    amount: Money,
    connector_id: i32,
    card: &CardForm,
    token_kind: crate::domain::tokens::TokenKind,
    customer_card_id: Option<i32>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<pl::Model, DbErr> {
    pl::ActiveModel {
        order_id: Set(order_id),
        tender: Set(Tender::Card.code().to_string()),
        amount_minor: Set(amount.minor()),
        status: Set(PaymentStatus::PendingAuthorization.code().to_string()),
        connector_id: Set(Some(connector_id)),
        card_token: Set(Some(card.token.trim().to_string())),
        card_type: Set(Some(card.card_type.trim().to_string())),
        last_four: Set(Some(card.last_four.trim().to_string())),
        holder: Set(Some(card.holder.trim().to_string())),
        expiry: Set(Some(card.expiry.trim().to_string())),
        created_at: Set(now),
        token_kind: Set(token_kind.code().to_string()),
        customer_card_id: Set(customer_card_id),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Keeps the evidence of a consent or acknowledgement: who, when, the words shown, the order.
pub(crate) async fn record_confirmation(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    actor: &str,
    order_id: i32,
    payment_line_id: Option<i32>,
    c: crate::domain::tokens::Confirmation,
) -> Result<(), DbErr> {
    crate::entity::token_consent::ActiveModel {
        order_id: Set(order_id),
        payment_line_id: Set(payment_line_id),
        kind: Set(c.code().to_string()),
        text_shown: Set(c.text().to_string()),
        given_by: Set(actor.to_string()),
        given_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
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
/// stage and recovery. When another runner recorded it first (recovery took over a call that
/// outlasted its lease), nothing is written and the payment line's status as recorded is returned.
pub async fn record_authorization(
    s: &Services,
    req: &crate::entity::processor_request::Model,
    line: &pl::Model,
    resolution: Resolution,
    replaces: Option<i32>,
) -> ServiceResult<(PaymentStatus, Option<String>)> {
    match record_authorization_once(s, req, line, resolution, replaces).await {
        Err(ServiceError::AlreadyRecorded(tracking_id)) => {
            let now = pl::Entity::find_by_id(line.id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("payment line".into()))?;
            let status = PaymentStatus::from_code(&now.status).ok_or_else(|| ServiceError::StoredData(format!("payment line {} has status {:?}", now.id, now.status)))?;
            Ok((status, Some(format!("The outcome of tracking id {tracking_id} was recorded meanwhile by recovery; the payment is {}.", status.label()))))
        }
        other => other,
    }
}

async fn record_authorization_once(
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
            // The outcome first: the authorization row is inserted only by the runner whose write
            // changed the request (a unique tracking id backs this up, issue #39).
            requests::finish(&txn, req, RequestStatus::Succeeded, Some(a.reference.clone()), None, now).await?;
            insert_authorization(&txn, s, req, line, &a, replaces).await?;
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

/// The requested ship dates of the order's lines that still have something to invoice.
pub async fn open_ship_dates(db: &impl ConnectionTrait, order_id: i32) -> Result<Vec<NaiveDate>, DbErr> {
    Ok(sol::Entity::find()
        .filter(sol::Column::OrderId.eq(order_id))
        .all(db)
        .await?
        .into_iter()
        .filter(|l| l.invoiced_quantity < l.quantity)
        .map(|l| l.requested_ship_date)
        .collect())
}

/// The order's lines as the invoice arithmetic sees them.
pub fn line_states(lines: &[sol::Model], currency: Currency) -> Vec<LineState> {
    lines
        .iter()
        .map(|l| LineState {
            quantity: i64::from(l.quantity),
            invoiced: i64::from(l.invoiced_quantity),
            credited: i64::from(l.credited_quantity),
            unit_price: Money::from_minor(l.unit_price_minor, currency),
        })
        .collect()
}

/// What the order's invoices and credit notes are computed from (`domain::order::OrderBasis`).
pub fn basis<'a>(order: &so::Model, lines: &'a [LineState], currency: Currency) -> ServiceResult<OrderBasis<'a>> {
    let tax_percent = Decimal::from_str(&order.tax_percent)
        .map_err(|_| ServiceError::Conflict(format!("Order {} has a stored tax rate that is not a number: {:?}.", order.number, order.tax_percent)))?;
    Ok(OrderBasis { lines, charges: Money::from_minor(order.charges_minor, currency), tax_percent, currency })
}

/// What is left to invoice on an order: the lines not yet invoiced, the charges if no invoice took
/// them yet, and their tax, computed exactly as the next invoice would (so the last invoice makes
/// the order total, R-MON-3).
pub async fn balance(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<Money> {
    let currency = Currency::stored(&order.currency)?;
    let lines = sol::Entity::find().filter(sol::Column::OrderId.eq(order.id)).all(db).await?;
    let states = line_states(&lines, currency);
    basis(order, &states, currency)?
        .remaining()
        .map(|a| a.total)
        .map_err(|e| ServiceError::Conflict(format!("The order balance cannot be computed: {e}")))
}

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
async fn order_row(db: &impl ConnectionTrait, o: so::Model, held: bool) -> ServiceResult<OrderRow> {
    let currency = Currency::stored(&o.currency)?;
    let cust = customer::Entity::find_by_id(o.customer_id).one(db).await?;
    let chan = channel::Entity::find_by_id(o.channel_id).one(db).await?;
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
        channel_name: chan.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        channel_kind: chan.and_then(|c| ChannelKind::from_code(&c.kind)).unwrap_or(ChannelKind::PosStore),
        status: OrderStatus::from_code(&o.status).unwrap_or(OrderStatus::Open),
        total,
        invoiced: Money::from_minor(invoices.iter().map(|i| i.amount_minor).sum(), currency),
        do_not_process: held,
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
        .map_err(|e| ServiceError::Conflict(format!("The order total cannot be computed: {e}")))
}

pub async fn find(db: &impl ConnectionTrait, id: i32) -> ServiceResult<so::Model> {
    so::Entity::find_by_id(id).one(db).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no sales order with id {id}.")))
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
    let journals = journals_of(db, id).await?;
    let prepayment = super::prepayments::view(db, &o).await?;
    let cancel_refusal = super::prepayments::cancel_refusal(db, &o).await?;
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

async fn journals_of(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<Vec<JournalView>> {
    let js = journal::Entity::find().filter(journal::Column::OrderId.eq(order_id)).order_by_asc(journal::Column::Id).all(db).await?;
    super::journals::views(db, js).await
}

/// The customers and channels an order can be placed for.
pub async fn choices(db: &impl ConnectionTrait) -> ServiceResult<(Vec<crate::domain::views::CustomerView>, Vec<crate::domain::views::ChannelView>)> {
    Ok((super::customers::list(db).await?, super::setup::channels(db).await?))
}
