//! Sales orders: taking an order with a card payment (authorized through the connector, intent
//! first), the order list with filters and paging, and the order detail finance users read.
use super::{audit, Services};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{invoice_amounts, InvoiceLineInput, OrderStatus, PaymentStatus};
use crate::domain::parameters::FieldError;
use crate::domain::payment_views::*;
use crate::domain::views::ChannelKind;
use crate::entity::{
    channel, customer, payment_line as pl, sales_order as so, sales_order_line as sol,
};
use crate::error::{ServiceError, ServiceResult};
pub use super::card_payments::{authorize_payment_line, default_connector, CardForm};
pub use super::order_views::{choices, detail, list, order_total, PAGE_SIZE};
pub use crate::ledger::orders::{balance, basis, expiry_days, find, line_states, open_ship_dates, record_authorization};
use super::card_payments::{chosen_card, insert_card_line, record_confirmation};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait,
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

/// Places an order and authorizes its card payment for the order total, under the token rules of
/// its channel (R-TOK-2..7): cash and carry is captured at once and never tokenized; a POS
/// customer order shipping beyond the threshold needs the customer's consent; a call center future
/// order needs a recurring token and, with Delay authorization, is authorized later by the
/// resubmit job (R-AUT-1). When a confirmation is needed and was not given, nothing is written and
/// [`ServiceError::ConfirmationRequired`] says what to confirm.
pub async fn place(s: &Services, actor: &str, form: &OrderForm) -> ServiceResult<PlacedOrder> {
    // The fields first (no processor call for a form that is refused anyway); then a new card is
    // taken as the processor describes its token, before anything is written.
    let parsed = NewOrder::parse(form, s.now().date_naive()).map_err(ServiceError::Validation)?;
    parsed.total()?;
    // Boxed: the placing future is large, and callers' stacks (a test thread's 2 MiB in a debug
    // build) must not hold it twice over.
    if !form.saved_card_id.trim().is_empty() {
        return Box::pin(place_verified(s, actor, form)).await;
    }
    // Asked of the processor the channel pays through (an unknown channel is refused below).
    let conn = match channel::Entity::find_by_id(parsed.channel_id).one(&s.db).await? {
        Some(chan) if !form.card.token.trim().is_empty() => Some(super::card_payments::connector_for_channel(&s.db, &chan).await?.id),
        _ => None,
    };
    let card = super::cards::verified(s, conn, &form.card).await?;
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
    match customer::Entity::find_by_id(order.customer_id).one(&txn).await? {
        None => return Err(ServiceError::field("customer_id", "Choose a customer.")),
        Some(c) if c.deactivated_at.is_some() => {
            return Err(ServiceError::field("customer_id", format!("{} ({}) is deactivated: they take no new orders. Activate the customer on the Customers page first.", c.name, c.account)));
        }
        Some(_) => {}
    }
    let Some(chan) = channel::Entity::find_by_id(order.channel_id).one(&txn).await? else {
        return Err(ServiceError::field("channel_id", "Choose a channel."));
    };
    if chan.closed_at.is_some() {
        return Err(ServiceError::field("channel_id", format!("{} is closed: it takes no new orders. Its orders stay as they are; choose another channel.", chan.name)));
    }
    let channel_kind = ChannelKind::from_code(&chan.kind).unwrap_or(ChannelKind::PosStore);
    if kind == OrderKind::CashAndCarry && channel_kind != ChannelKind::PosStore {
        return Err(ServiceError::field("order_kind", "Cash and carry is for POS store sales; choose customer order."));
    }
    let conn = super::card_payments::connector_for_channel(&txn, &chan).await?;
    let chosen = chosen_card(&txn, &form.saved_card_id, &form.card, order.customer_id, &conn).await?;
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
