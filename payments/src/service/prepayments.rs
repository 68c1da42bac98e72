//! Prepayments and deposits (R-PRE-1..5, R-LED-1).
//!
//! - A customer account deposit at POS (R-PRE-1) posts a cash journal marked Prepayment journal
//!   voucher: debit Cash, credit Customer prepayments.
//! - A customer order with deposit (R-PRE-2/3) keeps its deposit lines on the order: cash and
//!   customer account lines post their journal when the order is taken; a card line is authorized
//!   for its part of the deposit plus what is left to pay at pickup, and its deposit part is
//!   captured right after the authorization. Every deposit journal is a prepayment journal voucher.
//! - On pickup or delivery the deposit is applied to the invoice (a settlement journal: debit
//!   Customer prepayments, credit Accounts receivable) in the invoice's own transaction; cash taken
//!   at pickup posts a cash journal there too; the invoice pipeline captures the rest on the card.
//! - Cancel (R-PRE-4) keeps the cancellation charge and gives back the rest by each deposit line's
//!   tender; a card refund goes through the processor with its intent written first.
//!
//! Every processor call here has its durable intent before and its outcome after, like the
//! pipeline's; [`recover`] finishes what a crash interrupted without moving money twice.
use super::{audit, for_update, Services};
use crate::connector::Outcome;
use crate::domain::money::{AmountError, Currency, Money};
use crate::domain::order::{accounts, AuthorizationStatus, Command, JournalKind, JournalLine, OrderStatus, PaymentStatus, RequestStatus, Tender};
use crate::domain::payment_views::PrepaymentView;
use crate::domain::prepayment::{self};
use crate::domain::views::ChannelKind;
use crate::entity::{
    account_deposit, authorization as au, channel, customer, journal, journal_line as jl, payment_line as pl,
    processor_request as pr, sales_order as so,
};
use crate::error::{PrepaymentError, ProcessorAction, ProcessorError, ServiceError, ServiceResult};
use crate::ledger::requests::{self, Purpose, Resolution};
use crate::ledger::journals::{post_journal, Posting};
pub use crate::ledger::deposits::{deposits_paid, unapplied_deposit};
use crate::ledger::deposits::{applied, deposit_captures};
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait};

pub(crate) fn currency(code: &str) -> ServiceResult<Currency> {
    Ok(Currency::stored(code)?)
}

/// Parses an amount typed by a user: blank is `None`; otherwise [`Money::parse`] (no negative, the
/// currency's decimals, the business ceiling), each refusal a field error naming `label`.
pub fn parse_amount(field: &str, label: &str, raw: &str, cur: Currency) -> ServiceResult<Option<Money>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    Money::parse(raw, cur).map(Some).map_err(|e| match e {
        AmountError::Negative => ServiceError::field(field, format!("{label} cannot be negative; nothing was recorded.")),
        e => ServiceError::field(field, format!("{label}: {e}.")),
    })
}

// ---------------------------------------------------------------------------------------------
// R-PRE-1: customer account deposit at POS

/// Takes a customer account deposit in cash at a POS store and posts its cash journal, marked
/// Prepayment journal voucher, in one transaction. Zero or negative amounts write nothing.
pub async fn account_deposit(s: &Services, actor: &str, customer_id: i32, channel_id: i32, currency_code: &str, raw_amount: &str) -> ServiceResult<String> {
    let txn = s.db.begin().await?;
    let cust = customer::Entity::find_by_id(customer_id)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::field("customer_id", "Choose a customer."))?;
    let chan = channel::Entity::find_by_id(channel_id).one(&txn).await?.ok_or_else(|| ServiceError::field("channel_id", "Choose a store."))?;
    if ChannelKind::from_code(&chan.kind) != Some(ChannelKind::PosStore) {
        return Err(ServiceError::field("channel_id", "Customer account deposits are taken at a POS store; choose a store."));
    }
    if cust.deactivated_at.is_some() {
        return Err(ServiceError::field("customer_id", format!("{} ({}) is deactivated: they take no deposits. Activate the customer on the Customers page first.", cust.name, cust.account)));
    }
    if chan.closed_at.is_some() {
        return Err(ServiceError::field("channel_id", format!("{} is closed: it takes no deposits. Choose another store.", chan.name)));
    }
    let cur = Currency::from_code(if currency_code.trim().is_empty() { "USD" } else { currency_code.trim() })
        .ok_or_else(|| ServiceError::field("currency", "Choose a currency from the list."))?;
    let amount = parse_amount("amount", "The deposit", raw_amount, cur)?.ok_or_else(|| ServiceError::field("amount", "Enter the amount of the deposit."))?;
    if amount.minor() == 0 {
        return Err(ServiceError::field("amount", "A deposit must be more than zero; nothing was recorded."));
    }
    let now = s.now();
    let dep = account_deposit::ActiveModel {
        number: Set(format!("new-{}", uuid::Uuid::new_v4().simple())),
        customer_id: Set(cust.id),
        channel_id: Set(chan.id),
        tender: Set(Tender::Cash.code().to_string()),
        currency: Set(cur.code().to_string()),
        amount_minor: Set(amount.minor()),
        journal_id: Set(None),
        created_at: Set(now),
        created_by: Set(actor.to_string()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let number = format!("DEP-{:06}", dep.id);
    let j = post_journal(
        &txn,
        now,
        Posting {
            source: format!("account_deposit:{}", dep.id),
            kind: JournalKind::Cash,
            order_id: None,
            customer_id: Some(cust.id),
            invoice_id: None,
            tender: Some(Tender::Cash),
            prepayment: true,
            currency: cur.code().to_string(),
            description: format!("Customer account deposit {number} from {} at {}", cust.account, chan.name),
        },
        vec![JournalLine::debit(accounts::CASH, amount), JournalLine::credit(accounts::CUSTOMER_PREPAYMENTS, amount)],
    )
    .await?
    .ok_or(PrepaymentError::DepositAlreadyPosted)?;
    let mut am: account_deposit::ActiveModel = dep.into();
    am.number = Set(number.clone());
    am.journal_id = Set(Some(j.id));
    am.update(&txn).await?;
    audit::record(&txn, now, actor, "deposit.account", &number, None, Some(serde_json::json!({ "customer": cust.account, "amount": amount.to_string(), "journal": j.number })))
        .await?;
    txn.commit().await?;
    Ok(format!("Deposit {number} of {amount} taken for {}; prepayment journal {} posted.", cust.account, j.number))
}

/// What a customer has deposited on account and not yet used (R-PRE-1).
pub async fn account_balance(db: &impl ConnectionTrait, customer_id: i32) -> ServiceResult<i64> {
    let js = journal::Entity::find()
        .filter(journal::Column::CustomerId.eq(customer_id))
        .filter(journal::Column::OrderId.is_null())
        .filter(journal::Column::Prepayment.eq(true))
        .all(db)
        .await?;
    let lines = jl::Entity::find()
        .filter(jl::Column::JournalId.is_in(js.iter().map(|j| j.id).collect::<Vec<_>>()))
        .filter(jl::Column::Account.eq(accounts::CUSTOMER_PREPAYMENTS))
        .all(db)
        .await?;
    Ok(lines.iter().map(|l| l.credit_minor - l.debit_minor).sum())
}

// ---------------------------------------------------------------------------------------------
// R-PRE-2/3: the deposit of an order

/// The deposit part of an order, as typed on New sales order.
#[derive(Clone, Debug, Default)]
pub struct DepositForm {
    /// Blank: the Commerce parameters' default percentage (POS) or the whole order (call center).
    pub deposit: String,
    pub cash: String,
    pub customer_account: String,
}

/// A valid deposit split over its tenders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepositSplit {
    pub deposit: Money,
    pub cash: Money,
    pub customer_account: Money,
    /// The deposit's card part: deposit − cash − customer account.
    pub card: Money,
}

/// Checks the deposit against the order total and splits it; every problem is a field error.
pub fn split_deposit(form: &DepositForm, total: Money, default_percent: Decimal, channel: ChannelKind) -> ServiceResult<DepositSplit> {
    let cur = total.currency();
    let deposit = match parse_amount("deposit", "The deposit", &form.deposit, cur)? {
        Some(d) => d,
        None if channel == ChannelKind::CallCenter => total,
        None => prepayment::default_deposit(total, default_percent).map_err(|e| ServiceError::field("deposit", format!("The deposit: {e}.")))?,
    };
    prepayment::check_deposit(deposit, total).map_err(|e| ServiceError::field("deposit", e.to_string()))?;
    let cash = parse_amount("deposit_cash", "The cash part of the deposit", &form.cash, cur)?.unwrap_or(Money::zero(cur));
    let account = parse_amount("deposit_account", "The customer account part of the deposit", &form.customer_account, cur)?.unwrap_or(Money::zero(cur));
    let too_much = || ServiceError::field("deposit_cash", format!("Cash ({cash}) and customer account ({account}) add up to more than the deposit ({deposit})."));
    // Checked (R-MON-4): parts near the largest amounts refuse, never wrap to a small card part.
    let card = deposit.checked_sub(cash).and_then(|d| d.checked_sub(account)).map_err(|_| too_much())?;
    if card.minor() < 0 {
        return Err(too_much());
    }
    Ok(DepositSplit { deposit, cash, customer_account: account, card })
}

/// Inserts the cash and customer account deposit lines of a new order and posts their prepayment
/// journals (inside the order's transaction).
pub(crate) async fn post_deposit_lines(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    order: &so::Model,
    split: &DepositSplit,
) -> ServiceResult<()> {
    for (tender, amount) in [(Tender::Cash, split.cash), (Tender::CustomerAccount, split.customer_account)] {
        if amount.minor() == 0 {
            continue;
        }
        let line = pl::ActiveModel {
            order_id: Set(order.id),
            tender: Set(tender.code().to_string()),
            amount_minor: Set(amount.minor()),
            status: Set(PaymentStatus::Paid.code().to_string()),
            created_at: Set(now),
            token_kind: Set("none".to_string()),
            prepayment: Set(true),
            refunded_minor: Set(0),
            ..Default::default()
        }
        .insert(db)
        .await?;
        let (kind, debit) = match tender {
            Tender::Cash => (JournalKind::Cash, accounts::CASH),
            _ => (JournalKind::CustomerPayment, accounts::ACCOUNTS_RECEIVABLE),
        };
        post_journal(
            db,
            now,
            Posting::for_order(order, format!("deposit:line:{}", line.id), kind, format!("Deposit for {} by {}", order.number, tender.label().to_lowercase())).voucher(Some(tender)),
            vec![JournalLine::debit(debit, amount), JournalLine::credit(accounts::CUSTOMER_PREPAYMENTS, amount)],
        )
        .await?;
    }
    Ok(())
}

/// The card part of an order's deposit: the deposit less its cash and customer account lines.
pub(crate) async fn card_deposit_due(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<i64> {
    let others: i64 = pl::Entity::find()
        .filter(pl::Column::OrderId.eq(order.id))
        .filter(pl::Column::Prepayment.eq(true))
        .filter(pl::Column::Tender.ne(Tender::Card.code()))
        .all(db)
        .await?
        .iter()
        .map(|l| l.amount_minor)
        .sum();
    Ok((order.deposit_minor - others).max(0))
}

/// Captures the card part of the deposit right after the authorization (R-PRE-2): intent, call,
/// then the capture and its prepayment journal in one transaction. Returns a message for the user.
pub async fn capture_deposit(s: &Services, order_id: i32) -> ServiceResult<Option<String>> {
    let order = crate::ledger::orders::find(&s.db, order_id).await?;
    if !order.prepayment || order.status == OrderStatus::Cancelled.code() {
        return Ok(None);
    }
    let due = card_deposit_due(&s.db, &order).await?;
    let captured: i64 = deposit_captures(&s.db, order.id).await?.iter().map(|c| c.amount_minor).sum();
    if due - captured <= 0 {
        return Ok(None);
    }
    let in_flight = requests::in_flight(&s.db, order.id, Command::Capture).await?;
    if let Some(req) = in_flight {
        return resolve_capture(s, &req).await;
    }
    let Some(auth) = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .order_by_desc(au::Column::Id)
        .one(&s.db)
        .await?
    else {
        return Ok(Some(format!("The card part of the deposit ({}) is not authorized; take a new payment.", Money::from_minor(due - captured, currency(&order.currency)?))));
    };
    let amount = Money::from_minor((due - captured).min(auth.amount_minor - auth.captured_minor), currency(&order.currency)?);
    let reference = s.processor(auth.connector_id).payment_reference(Command::Capture, amount).await.map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::DepositCapture, reason: e.to_string() })?;
    // The claim (issue #39 item 2): under the order's lock, no deposit capture in flight and the
    // same amount still due, and the intent recorded in the same transaction. A second runner
    // (another server's recovery, `paystage recover`) waits for the lock, then finds the intent
    // and asks about it instead of capturing again.
    let txn = s.db.begin().await?;
    for_update(so::Entity::find_by_id(order.id), &txn).one(&txn).await?;
    let in_flight = requests::in_flight(&txn, order.id, Command::Capture).await?;
    let captured_now: i64 = deposit_captures(&txn, order.id).await?.iter().map(|c| c.amount_minor).sum();
    let auth_now = au::Entity::find_by_id(auth.id).one(&txn).await?;
    if in_flight.is_some() || captured_now != captured || auth_now.as_ref().map(|a| (a.captured_minor, a.status.as_str())) != Some((auth.captured_minor, auth.status.as_str())) {
        txn.rollback().await?;
        return Ok(in_flight.map(|r| format!("Another runner is capturing the deposit (tracking id {}); it finishes it.", r.tracking_id)));
    }
    let purpose = Purpose { order_id: order.id, authorization_id: Some(auth.id), process: None, capture_id: None };
    let req = requests::record_intent(&txn, auth.connector_id, Command::Capture, amount, purpose, reference).await?;
    txn.commit().await?;
    crate::crashpoint::hit("deposit:intent");
    let last = amount.minor() == auth.amount_minor - auth.captured_minor;
    let result = s.processor(req.connector_id).capture(&req.tracking_id, &auth.processor_reference, amount, last).await;
    crate::crashpoint::hit("deposit:sent");
    let resolution = requests::resolve(s, &req, result, Outcome::Captured).await;
    record_deposit_capture(s, &req, resolution).await
}

pub(crate) async fn resolve_capture(s: &Services, req: &pr::Model) -> ServiceResult<Option<String>> {
    match requests::ask(s, &req).await {
        Resolution::NotProcessed(why) => {
            let auth = au::Entity::find_by_id(req.authorization_id.unwrap_or_default()).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
            let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
            let _ = why; // nothing moved at the processor: the same tracking id is sent again
            let result = s.processor(req.connector_id).capture(&req.tracking_id, &auth.processor_reference, amount, amount.minor() == auth.amount_minor - auth.captured_minor).await;
            let resolution = requests::resolve(s, &req, result, Outcome::Captured).await;
            record_deposit_capture(s, req, resolution).await
        }
        other => record_deposit_capture(s, req, other).await,
    }
}

pub(crate) async fn record_deposit_capture(s: &Services, req: &pr::Model, resolution: Resolution) -> ServiceResult<Option<String>> {
    let now = s.now();
    let txn = s.db.begin().await?;
    let msg = match resolution {
        Resolution::Done(Outcome::Captured(c)) => {
            // The outcome first: its effects follow only if this runner's write changed the request.
            requests::finish(&txn, req, RequestStatus::Succeeded, Some(c.reference.clone()), None, now).await?;
            let a = for_update(au::Entity::find_by_id(req.authorization_id.unwrap_or_default()), &txn)
                .one(&txn)
                .await?
                .ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
            let order = for_update(so::Entity::find_by_id(a.order_id), &txn).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("order".into()))?;
            crate::pipeline::apply_capture(&txn, &a, None, &c, req, now).await?;
            post_journal(
                &txn,
                now,
                Posting::for_order(&order, format!("deposit:{}", req.tracking_id), JournalKind::CustomerPayment, format!("Card deposit for {}", order.number)).voucher(Some(Tender::Card)),
                vec![JournalLine::debit(accounts::CARD_CLEARING, c.amount), JournalLine::credit(accounts::CUSTOMER_PREPAYMENTS, c.amount)],
            )
            .await?;
            None
        }
        other => Some(requests::finish_unsuccessful(&txn, req, other, "deposit capture", "recovery", now).await?),
    };
    txn.commit().await?;
    Ok(msg)
}

// ---------------------------------------------------------------------------------------------
// What an order has paid in advance

/// The order page's view of a prepayment order.
pub async fn view(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<Option<PrepaymentView>> {
    if !order.prepayment {
        return Ok(None);
    }
    let cur = currency(&order.currency)?;
    let paid = deposits_paid(db, order).await?;
    let paid_total: i64 = paid.iter().map(|d| d.paid.minor()).sum();
    let applied = applied(db, order.id).await?;
    let unapplied = unapplied_deposit(db, order).await?;
    let balance = crate::ledger::orders::balance(db, order).await?;
    let card_authorized: i64 = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .all(db)
        .await?
        .iter()
        .map(|a| a.amount_minor - a.captured_minor)
        .sum();
    let cancelled = order.status == OrderStatus::Cancelled.code();
    Ok(Some(PrepaymentView {
        deposit: Money::from_minor(order.deposit_minor, cur),
        paid,
        paid_total: Money::from_minor(paid_total, cur),
        applied: Money::from_minor(applied, cur),
        unapplied: Money::from_minor(unapplied, cur),
        due_at_pickup: Money::from_minor(if cancelled { 0 } else { (balance.minor() - unapplied).max(0) }, cur),
        card_authorized: Money::from_minor(card_authorized, cur),
        cancellation_charge: cancelled.then(|| Money::from_minor(order.cancellation_charge_minor, cur)),
        cancelled_at: order.cancelled_at,
    }))
}

// ---------------------------------------------------------------------------------------------
// Pickup (R-PRE-2)

/// Picks up (or delivers) a prepayment order: invoices everything still open through the invoice
/// pipeline, applying the deposit and the cash taken now; the card capture takes the rest. When
/// the order is fully invoiced, what is left on its card authorizations is released.
pub async fn pick_up(s: &Services, actor: &str, order_id: i32, raw_cash: &str) -> ServiceResult<String> {
    let order = crate::ledger::orders::find(&s.db, order_id).await?;
    let cur = currency(&order.currency)?;
    if !order.prepayment {
        return Err(PrepaymentError::NotPrepayment { order: order.number }.into());
    }
    if order.status == OrderStatus::Cancelled.code() {
        return Err(PrepaymentError::OrderCancelled { order: order.number }.into());
    }
    let cash = parse_amount("cash", "Cash", raw_cash, cur)?.unwrap_or(Money::zero(cur));
    let balance = crate::ledger::orders::balance(&s.db, &order).await?;
    if balance.minor() == 0 {
        return Err(PrepaymentError::NothingToPickUp { order: order.number }.into());
    }
    let unapplied = unapplied_deposit(&s.db, &order).await?;
    let due = (balance.minor() - unapplied).max(0);
    if cash.minor() > due {
        return Err(ServiceError::field("cash", format!("Cash ({cash}) is more than is due ({}).", Money::from_minor(due, cur))));
    }
    let card = due - cash.minor();
    if card > 0 {
        let open: i64 = au::Entity::find()
            .filter(au::Column::OrderId.eq(order.id))
            .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
            .filter(au::Column::ExpiresAt.gt(s.now()))
            .all(&s.db)
            .await?
            .iter()
            .map(|a| a.amount_minor - a.captured_minor)
            .sum();
        if open < card {
            return Err(ServiceError::field(
                "cash",
                format!(
                    "{} is due and the card authorization covers {}: take {} in cash, or take a new payment on the order first.",
                    Money::from_minor(due, cur),
                    Money::from_minor(open, cur),
                    Money::from_minor(due - open, cur)
                ),
            ));
        }
    }
    let lines = crate::entity::sales_order_line::Entity::find().filter(crate::entity::sales_order_line::Column::OrderId.eq(order.id)).all(&s.db).await?;
    let q: Vec<(i32, i32)> = lines.iter().filter(|l| l.quantity > l.invoiced_quantity).map(|l| (l.id, l.quantity - l.invoiced_quantity)).collect();
    let outcome = crate::pipeline::invoice_settled(s, actor, order.id, &q, cash.minor()).await?;
    let mut msg = format!(
        "{} picked up: invoice {} for {} issued; deposit applied {}, cash {}, card {} ({}).",
        order.number,
        outcome.invoice_number,
        outcome.amount,
        Money::from_minor(unapplied.min(outcome.amount.minor()), cur),
        cash,
        Money::from_minor(card, cur),
        outcome.status.label()
    );
    if let Some(e) = outcome.error {
        msg.push_str(&format!(" {e}"));
    } else {
        let released = release_open(s, &order).await?;
        if released.minor() > 0 {
            msg.push_str(&format!(" {released} left on the card authorization was released."));
        }
    }
    Ok(msg)
}

/// Voids what is left on the order's open authorizations once nothing remains to invoice.
pub(crate) async fn release_open(s: &Services, order: &so::Model) -> ServiceResult<Money> {
    let cur = currency(&order.currency)?;
    let order = crate::ledger::orders::find(&s.db, order.id).await?;
    if crate::ledger::orders::balance(&s.db, &order).await?.minor() > 0 {
        return Ok(Money::zero(cur));
    }
    let mut released = 0;
    for a in au::Entity::find().filter(au::Column::OrderId.eq(order.id)).filter(au::Column::Status.eq(AuthorizationStatus::Open.code())).all(&s.db).await? {
        let left = a.amount_minor - a.captured_minor;
        super::authorizations::release(s, &a, if a.captured_minor > 0 { PaymentStatus::Paid } else { PaymentStatus::Voided }, None).await?;
        released += left;
    }
    Ok(Money::from_minor(released, cur))
}

