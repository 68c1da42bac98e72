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
use super::{audit, for_update, parameters, Services};
use crate::connector::Outcome;
use crate::domain::money::{AmountError, Currency, Money};
use crate::domain::order::{accounts, AuthorizationStatus, Command, JournalKind, JournalLine, OrderStatus, PaymentStatus, RequestStatus, Tender};
use crate::domain::payment_views::{CancellationPreview, DepositPaid, JournalLineView, PrepaymentView};
use crate::domain::prepayment::{self, CancellationPlan};
use crate::domain::views::ChannelKind;
use crate::entity::{
    account_deposit, authorization as au, capture as cap, channel, customer, invoice as inv, journal, journal_line as jl, payment_line as pl,
    processor_request as pr, refund, sales_order as so,
};
use crate::error::{ServiceError, ServiceResult};
use crate::pipeline::requests::{self, Purpose, Resolution};
use crate::pipeline::{post_journal, Posting};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait};
use std::str::FromStr;

fn currency(code: &str) -> ServiceResult<Currency> {
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
    .ok_or_else(|| ServiceError::Conflict("The deposit's journal was already posted.".into()))?;
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
            Posting {
                tender: Some(tender),
                prepayment: true,
                ..Posting::for_order(order, format!("deposit:line:{}", line.id), kind, format!("Deposit for {} by {}", order.number, tender.label().to_lowercase()))
            },
            vec![JournalLine::debit(debit, amount), JournalLine::credit(accounts::CUSTOMER_PREPAYMENTS, amount)],
        )
        .await?;
    }
    Ok(())
}

/// The card part of an order's deposit: the deposit less its cash and customer account lines.
async fn card_deposit_due(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<i64> {
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

/// Deposit captures of an order: captures made before any invoice.
async fn deposit_captures(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<Vec<cap::Model>> {
    Ok(cap::Entity::find()
        .filter(cap::Column::OrderId.eq(order_id))
        .filter(cap::Column::InvoiceId.is_null())
        .order_by_asc(cap::Column::Id)
        .all(db)
        .await?)
}

/// Captures the card part of the deposit right after the authorization (R-PRE-2): intent, call,
/// then the capture and its prepayment journal in one transaction. Returns a message for the user.
pub async fn capture_deposit(s: &Services, order_id: i32) -> ServiceResult<Option<String>> {
    let order = super::orders::find(&s.db, order_id).await?;
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
    let reference = s.connector.payment_reference(Command::Capture, amount).await.map_err(|e| ServiceError::Conflict(format!("The deposit could not be captured: {e}")))?;
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
    let result = s.connector.capture(&req.tracking_id, &auth.processor_reference, amount, last).await;
    crate::crashpoint::hit("deposit:sent");
    let resolution = requests::resolve(s, &req.tracking_id, result, Outcome::Captured).await;
    record_deposit_capture(s, &req, resolution).await
}

async fn resolve_capture(s: &Services, req: &pr::Model) -> ServiceResult<Option<String>> {
    match requests::ask(s, &req.tracking_id).await {
        Resolution::NotProcessed(why) => {
            let auth = au::Entity::find_by_id(req.authorization_id.unwrap_or_default()).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
            let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
            let _ = why; // nothing moved at the processor: the same tracking id is sent again
            let result = s.connector.capture(&req.tracking_id, &auth.processor_reference, amount, amount.minor() == auth.amount_minor - auth.captured_minor).await;
            let resolution = requests::resolve(s, &req.tracking_id, result, Outcome::Captured).await;
            record_deposit_capture(s, req, resolution).await
        }
        other => record_deposit_capture(s, req, other).await,
    }
}

async fn record_deposit_capture(s: &Services, req: &pr::Model, resolution: Resolution) -> ServiceResult<Option<String>> {
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
            let captured = a.captured_minor + c.amount.minor();
            let status = crate::pipeline::status_after_capture(&a, captured, c.authorization_closed);
            crate::pipeline::capture_row(&a, None, &c, &req, now).insert(&txn).await?;
            au::Entity::update_many()
                .col_expr(au::Column::CapturedMinor, Expr::value(captured))
                .col_expr(au::Column::Status, Expr::value(status.code()))
                .filter(au::Column::Id.eq(a.id))
                .exec(&txn)
                .await?;
            if status == AuthorizationStatus::FullyCaptured {
                pl::Entity::update_many()
                    .col_expr(pl::Column::Status, Expr::value(PaymentStatus::Paid.code()))
                    .filter(pl::Column::Id.eq(a.payment_line_id))
                    .exec(&txn)
                    .await?;
            }
            post_journal(
                &txn,
                now,
                Posting {
                    tender: Some(Tender::Card),
                    prepayment: true,
                    ..Posting::for_order(&order, format!("deposit:{}", req.tracking_id), JournalKind::CustomerPayment, format!("Card deposit for {}", order.number))
                },
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

/// Each deposit line of an order with what it paid and what was given back.
pub async fn deposits_paid(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<Vec<DepositPaid>> {
    let cur = currency(&order.currency)?;
    let lines = pl::Entity::find()
        .filter(pl::Column::OrderId.eq(order.id))
        .filter(pl::Column::Prepayment.eq(true))
        .order_by_asc(pl::Column::Id)
        .all(db)
        .await?;
    let caps = deposit_captures(db, order.id).await?;
    let auths = au::Entity::find().filter(au::Column::OrderId.eq(order.id)).all(db).await?;
    // Deposits given back are the refunds made outside any invoice process (cancellations); a
    // return's card refund may draw on a deposit capture but gives back an invoice, not a deposit.
    let given_back: Vec<(i32, i64)> = {
        let refunds = refund::Entity::find().filter(refund::Column::CaptureId.is_in(caps.iter().map(|c| c.id).collect::<Vec<_>>())).all(db).await?;
        let outside: Vec<String> = pr::Entity::find()
            .filter(pr::Column::TrackingId.is_in(refunds.iter().map(|r| r.tracking_id.clone()).collect::<Vec<_>>()))
            .filter(pr::Column::ProcessId.is_null())
            .all(db)
            .await?
            .into_iter()
            .map(|q| q.tracking_id)
            .collect();
        refunds.into_iter().filter(|r| outside.contains(&r.tracking_id)).map(|r| (r.capture_id, r.amount_minor)).collect()
    };
    let mut out = Vec::new();
    for l in lines {
        let tender = Tender::from_code(&l.tender).unwrap_or(Tender::Card);
        let (paid, refunded) = if tender == Tender::Card {
            let mine: Vec<&cap::Model> =
                caps.iter().filter(|c| auths.iter().any(|a| a.id == c.authorization_id && a.payment_line_id == l.id)).collect();
            let back: i64 = given_back.iter().filter(|(cid, _)| mine.iter().any(|c| c.id == *cid)).map(|(_, a)| a).sum();
            (mine.iter().map(|c| c.amount_minor).sum(), back)
        } else if l.status == PaymentStatus::Paid.code() {
            (l.amount_minor, l.refunded_minor)
        } else {
            (0, 0)
        };
        out.push(DepositPaid { payment_line_id: l.id, tender, paid: Money::from_minor(paid, cur), refunded: Money::from_minor(refunded, cur) });
    }
    Ok(out)
}

/// Deposits applied to invoices so far (settlement journals).
async fn applied(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<i64> {
    let js: Vec<i32> = journal::Entity::find()
        .filter(journal::Column::OrderId.eq(order_id))
        .filter(journal::Column::Kind.eq(JournalKind::PrepaymentSettlement.code()))
        .all(db)
        .await?
        .into_iter()
        .map(|j| j.id)
        .collect();
    if js.is_empty() {
        return Ok(0);
    }
    Ok(jl::Entity::find()
        .filter(jl::Column::JournalId.is_in(js))
        .filter(jl::Column::Account.eq(accounts::CUSTOMER_PREPAYMENTS))
        .all(db)
        .await?
        .iter()
        .map(|l| l.debit_minor - l.credit_minor)
        .sum())
}

/// What has been paid in advance on an order and not yet applied to an invoice.
pub async fn unapplied_deposit(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<i64> {
    if !order.prepayment {
        return Ok(0);
    }
    let paid: i64 = deposits_paid(db, order).await?.iter().map(|d| d.paid.minor() - d.refunded.minor()).sum();
    Ok((paid - applied(db, order.id).await?).max(0))
}

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
    let balance = super::orders::balance(db, order).await?;
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

/// What stage 1 settles of an invoice of a prepayment order, inside the invoice's transaction:
/// the deposit applied (settlement journal) and cash taken at pickup (cash journal). Returns the
/// amount settled, which the card capture leaves out.
pub(crate) async fn settle_invoice(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    order: &so::Model,
    invoice: &inv::Model,
    cash_at_pickup: i64,
) -> ServiceResult<i64> {
    let cur = currency(&order.currency)?;
    let unapplied = unapplied_deposit(db, order).await?;
    let apply = unapplied.min(invoice.amount_minor);
    if cash_at_pickup > invoice.amount_minor - apply {
        return Err(ServiceError::field(
            "cash",
            format!(
                "Cash ({}) is more than is due on the invoice after the deposit ({}).",
                Money::from_minor(cash_at_pickup, cur),
                Money::from_minor(invoice.amount_minor - apply, cur)
            ),
        ));
    }
    if apply > 0 {
        let amount = Money::from_minor(apply, cur);
        post_journal(
            db,
            now,
            Posting {
                invoice_id: Some(invoice.id),
                prepayment: true,
                ..Posting::for_order(order, format!("settlement:{}", invoice.id), JournalKind::PrepaymentSettlement, format!("Deposit of {} applied to {}", order.number, invoice.number))
            },
            vec![JournalLine::debit(accounts::CUSTOMER_PREPAYMENTS, amount), JournalLine::credit(accounts::ACCOUNTS_RECEIVABLE, amount)],
        )
        .await?;
    }
    if cash_at_pickup > 0 {
        let amount = Money::from_minor(cash_at_pickup, cur);
        pl::ActiveModel {
            order_id: Set(order.id),
            tender: Set(Tender::Cash.code().to_string()),
            amount_minor: Set(cash_at_pickup),
            status: Set(PaymentStatus::Paid.code().to_string()),
            created_at: Set(now),
            token_kind: Set("none".to_string()),
            prepayment: Set(false),
            refunded_minor: Set(0),
            ..Default::default()
        }
        .insert(db)
        .await?;
        post_journal(
            db,
            now,
            Posting {
                invoice_id: Some(invoice.id),
                tender: Some(Tender::Cash),
                ..Posting::for_order(order, format!("pickup:cash:{}", invoice.id), JournalKind::Cash, format!("Cash at pickup for {} ({})", invoice.number, order.number))
            },
            vec![JournalLine::debit(accounts::CASH, amount), JournalLine::credit(accounts::ACCOUNTS_RECEIVABLE, amount)],
        )
        .await?;
    }
    Ok(apply + cash_at_pickup)
}

/// What a credit note (return) gives back in cash: the part the card cannot take back (R-PRE-5).
/// Posts the cash refund journal and marks the cash lines, inside the credit note's transaction.
pub(crate) async fn refund_cash_part(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    order: &so::Model,
    credit_note: &inv::Model,
) -> ServiceResult<i64> {
    let cur = currency(&order.currency)?;
    let amount = -credit_note.amount_minor;
    let caps = cap::Entity::find().filter(cap::Column::OrderId.eq(order.id)).all(db).await?;
    let card_refundable: i64 = caps.iter().map(|c| c.amount_minor - c.refunded_minor).sum();
    // Card refunds of earlier credit notes still in flight are counted as given back already.
    let pending_card: i64 = inv::Entity::find()
        .filter(inv::Column::OrderId.eq(order.id))
        .filter(inv::Column::AmountMinor.lt(0))
        .filter(inv::Column::Id.ne(credit_note.id))
        .all(db)
        .await?
        .iter()
        .map(|i| -(i.amount_minor - i.prepaid_minor))
        .sum::<i64>()
        - refund::Entity::find().filter(refund::Column::OrderId.eq(order.id)).all(db).await?.iter().map(|r| r.amount_minor).sum::<i64>()
        + deposit_refunds(db, order.id).await?;
    let cash_lines: Vec<pl::Model> = pl::Entity::find()
        .filter(pl::Column::OrderId.eq(order.id))
        .filter(pl::Column::Tender.eq(Tender::Cash.code()))
        .filter(pl::Column::Status.eq(PaymentStatus::Paid.code()))
        .order_by_asc(pl::Column::Id)
        .all(db)
        .await?;
    let cash_refundable: i64 = cash_lines.iter().map(|l| l.amount_minor - l.refunded_minor).sum();
    let (_, cash) = prepayment::refund_split(amount, card_refundable - pending_card.max(0), cash_refundable);
    if cash == 0 {
        return Ok(0);
    }
    let mut left = cash;
    for l in cash_lines {
        if left == 0 {
            break;
        }
        let take = left.min(l.amount_minor - l.refunded_minor);
        if take <= 0 {
            continue;
        }
        pl::Entity::update_many()
            .col_expr(pl::Column::RefundedMinor, Expr::value(l.refunded_minor + take))
            .filter(pl::Column::Id.eq(l.id))
            .filter(pl::Column::RefundedMinor.eq(l.refunded_minor))
            .exec(db)
            .await?;
        left -= take;
    }
    let money = Money::from_minor(cash, cur);
    post_journal(
        db,
        now,
        Posting {
            invoice_id: Some(credit_note.id),
            tender: Some(Tender::Cash),
            ..Posting::for_order(order, format!("return:cash:{}", credit_note.id), JournalKind::RefundPayment, format!("Cash refund for {} ({})", credit_note.number, order.number))
        },
        vec![JournalLine::debit(accounts::ACCOUNTS_RECEIVABLE, money), JournalLine::credit(accounts::CASH, money)],
    )
    .await?;
    Ok(cash)
}

/// Card refunds of deposits (cancellations): they are not refunds of a credit note.
async fn deposit_refunds(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<i64> {
    let ids: Vec<i32> = deposit_captures(db, order_id).await?.iter().map(|c| c.id).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(refund::Entity::find().filter(refund::Column::CaptureId.is_in(ids)).all(db).await?.iter().map(|r| r.amount_minor).sum())
}

// ---------------------------------------------------------------------------------------------
// Pickup (R-PRE-2)

/// Picks up (or delivers) a prepayment order: invoices everything still open through the invoice
/// pipeline, applying the deposit and the cash taken now; the card capture takes the rest. When
/// the order is fully invoiced, what is left on its card authorizations is released.
pub async fn pick_up(s: &Services, actor: &str, order_id: i32, raw_cash: &str) -> ServiceResult<String> {
    let order = super::orders::find(&s.db, order_id).await?;
    let cur = currency(&order.currency)?;
    if !order.prepayment {
        return Err(ServiceError::Conflict(format!("{} is not a prepayment order; invoice it instead.", order.number)));
    }
    if order.status == OrderStatus::Cancelled.code() {
        return Err(ServiceError::Conflict(format!("{} was cancelled.", order.number)));
    }
    let cash = parse_amount("cash", "Cash", raw_cash, cur)?.unwrap_or(Money::zero(cur));
    let balance = super::orders::balance(&s.db, &order).await?;
    if balance.minor() == 0 {
        return Err(ServiceError::Conflict(format!("{} has nothing left to pick up.", order.number)));
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
async fn release_open(s: &Services, order: &so::Model) -> ServiceResult<Money> {
    let cur = currency(&order.currency)?;
    let order = super::orders::find(&s.db, order.id).await?;
    if super::orders::balance(&s.db, &order).await?.minor() > 0 {
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

// ---------------------------------------------------------------------------------------------
// Cancel (R-PRE-4)

async fn plan_for(db: &impl ConnectionTrait, order: &so::Model, charge: Option<i64>, percent: Decimal) -> ServiceResult<(Vec<DepositPaid>, CancellationPlan)> {
    let paid = deposits_paid(db, order).await?;
    let lines: Vec<(Tender, Money)> = paid.iter().map(|d| (d.tender, d.paid)).collect();
    let base = if order.status == OrderStatus::Cancelled.code() { Money::zero(currency(&order.currency)?) } else { super::orders::balance(db, order).await? };
    let mut plan = prepayment::cancellation_plan(&lines, base, percent).map_err(|e| ServiceError::Conflict(format!("The cancellation cannot be computed: {e}.")))?;
    if let Some(charge) = charge {
        // A cancellation already decided keeps the charge it was decided with.
        plan = prepayment::allocate_charge(&lines, charge);
    }
    Ok((paid, plan))
}

/// Why an order cannot be cancelled, if it cannot.
pub async fn cancel_refusal(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<Option<String>> {
    if order.status == OrderStatus::Cancelled.code() {
        return Ok(Some(format!("{} is already cancelled.", order.number)));
    }
    if inv::Entity::find().filter(inv::Column::OrderId.eq(order.id)).one(db).await?.is_some() {
        return Ok(Some(format!("{} has invoices: return the goods (credit note) instead of cancelling.", order.number)));
    }
    if pr::Entity::find()
        .filter(pr::Column::OrderId.eq(order.id))
        .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
        .one(db)
        .await?
        .is_some()
    {
        return Ok(Some(format!("A processor request of {} has no outcome yet; try again once recovery has resolved it.", order.number)));
    }
    Ok(None)
}

/// What cancelling would do: the charge kept, what goes back by each tender, what is released,
/// and the journals that will be posted (R-PRE-4). Writes nothing.
pub async fn cancel_preview(s: &Services, order_id: i32) -> ServiceResult<CancellationPreview> {
    let order = super::orders::find(&s.db, order_id).await?;
    if let Some(why) = cancel_refusal(&s.db, &order).await? {
        return Err(ServiceError::Conflict(why));
    }
    let percent = parameters::load(&s.db).await?.cancellation_charge_percent();
    let percent = if order.prepayment { percent } else { Decimal::ZERO };
    let (_, plan) = plan_for(&s.db, &order, None, percent).await?;
    let cur = currency(&order.currency)?;
    let release: i64 = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .all(&s.db)
        .await?
        .iter()
        .map(|a| a.amount_minor - a.captured_minor)
        .sum();
    let m = |minor: i64| Money::from_minor(minor, cur);
    let line = |account: &str, debit: i64, credit: i64| JournalLineView { account: account.to_string(), debit: m(debit), credit: m(credit) };
    let mut journals = Vec::new();
    if plan.charge > 0 {
        journals.push((
            JournalKind::CancellationCharge.label().to_string(),
            vec![line(accounts::CUSTOMER_PREPAYMENTS, plan.charge, 0), line(accounts::CANCELLATION_CHARGES, 0, plan.charge)],
        ));
    }
    for (tender, amount) in plan.refunds.iter().filter(|r| r.1 > 0) {
        journals.push((
            format!("{} ({})", JournalKind::RefundPayment.label(), tender.label().to_lowercase()),
            vec![line(accounts::CUSTOMER_PREPAYMENTS, *amount, 0), line(refund_account(*tender), 0, *amount)],
        ));
    }
    let cust = customer::Entity::find_by_id(order.customer_id).one(&s.db).await?;
    Ok(CancellationPreview {
        order_id: order.id,
        order_number: order.number.clone(),
        customer: cust.map(|c| format!("{} {}", c.account, c.name)).unwrap_or_default(),
        percent: percent.normalize().to_string(),
        paid: m(plan.paid),
        charge: m(plan.charge),
        refund_total: m(plan.refund_total()),
        refunds: plan.refunds.iter().map(|r| (r.0, m(r.1))).collect(),
        release: m(release),
        journals,
    })
}

fn refund_account(tender: Tender) -> &'static str {
    match tender {
        Tender::Card => accounts::CARD_CLEARING,
        Tender::Cash => accounts::CASH,
        Tender::CustomerAccount => accounts::ACCOUNTS_RECEIVABLE,
    }
}

/// Cancels an order (R-PRE-4). One transaction marks it cancelled with its charge, posts the
/// cancellation charge journal and the cash and customer account refund journals; then each card
/// refund goes to the processor (intent first) and posts its refund journal with its outcome, and
/// what is left on the card authorizations is released. [`recover`] finishes what a crash left.
pub async fn cancel(s: &Services, actor: &str, order_id: i32, expected_charge: Option<&str>) -> ServiceResult<String> {
    let now = s.now();
    let percent = parameters::load(&s.db).await?.cancellation_charge_percent();
    let txn = s.db.begin().await?;
    let order = for_update(so::Entity::find_by_id(order_id), &txn)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no sales order with id {order_id}.")))?;
    // Expiry is stored on the order first (R-AUT-4): expired authorizations are not voided below.
    let order = super::expiry::settle(&txn, order).await?;
    if let Some(why) = cancel_refusal(&txn, &order).await? {
        return Err(ServiceError::Conflict(why));
    }
    let percent = if order.prepayment { percent } else { Decimal::ZERO };
    let (paid, plan) = plan_for(&txn, &order, None, percent).await?;
    let cur = currency(&order.currency)?;
    if let Some(expected) = expected_charge.map(str::trim).filter(|e| !e.is_empty()) {
        // The user confirmed what the preview showed; if the parameters changed since, say so.
        if Decimal::from_str(expected).ok() != Some(Money::from_minor(plan.charge, cur).to_decimal()) {
            return Err(ServiceError::Conflict(format!(
                "The cancellation charge is now {} (the Commerce parameters changed); look at the preview again.",
                Money::from_minor(plan.charge, cur)
            )));
        }
    }
    so::Entity::update_many()
        .col_expr(so::Column::Status, Expr::value(OrderStatus::Cancelled.code()))
        .col_expr(so::Column::CancellationChargeMinor, Expr::value(plan.charge))
        .col_expr(so::Column::CancelledAt, Expr::value(now))
        .filter(so::Column::Id.eq(order.id))
        .exec(&txn)
        .await?;
    if plan.charge > 0 {
        let charge = Money::from_minor(plan.charge, cur);
        post_journal(
            &txn,
            now,
            Posting {
                prepayment: true,
                ..Posting::for_order(
                    &order,
                    format!("cancel:charge:{}", order.id),
                    JournalKind::CancellationCharge,
                    format!("Cancellation charge on {} ({} % of the order total)", order.number, percent.normalize()),
                )
            },
            vec![JournalLine::debit(accounts::CUSTOMER_PREPAYMENTS, charge), JournalLine::credit(accounts::CANCELLATION_CHARGES, charge)],
        )
        .await?;
    }
    for (d, (tender, amount)) in paid.iter().zip(plan.refunds.iter()) {
        if *tender == Tender::Card || *amount == 0 {
            continue;
        }
        let money = Money::from_minor(*amount, cur);
        pl::Entity::update_many()
            .col_expr(pl::Column::RefundedMinor, Expr::value(*amount))
            .filter(pl::Column::Id.eq(d.payment_line_id))
            .exec(&txn)
            .await?;
        post_journal(
            &txn,
            now,
            Posting {
                tender: Some(*tender),
                prepayment: true,
                ..Posting::for_order(
                    &order,
                    format!("cancel:refund:line:{}", d.payment_line_id),
                    JournalKind::RefundPayment,
                    format!("Deposit of {} refunded by {}", order.number, tender.label().to_lowercase()),
                )
            },
            vec![JournalLine::debit(accounts::CUSTOMER_PREPAYMENTS, money), JournalLine::credit(refund_account(*tender), money)],
        )
        .await?;
    }
    audit::record(
        &txn,
        now,
        actor,
        "order.cancel",
        &order.number,
        Some(serde_json::json!({ "status": order.status, "paid": Money::from_minor(plan.paid, cur).to_string() })),
        Some(serde_json::json!({
            "status": OrderStatus::Cancelled.code(),
            "charge": Money::from_minor(plan.charge, cur).to_string(),
            "percent": percent.normalize().to_string(),
            "refund": Money::from_minor(plan.refund_total(), cur).to_string(),
        })),
    )
    .await?;
    txn.commit().await?;
    crate::crashpoint::hit("cancel:committed");
    let problems = finish_cancellation(s, order.id).await?;
    let mut msg = format!(
        "{} cancelled: {} kept as cancellation charge, {} refunded.",
        order.number,
        Money::from_minor(plan.charge, cur),
        Money::from_minor(plan.refund_total(), cur)
    );
    if let Some(p) = problems {
        msg.push_str(&format!(" {p}"));
    }
    Ok(msg)
}

/// Card refunds and releases of a cancelled order that are still to do. Returns what went wrong.
async fn finish_cancellation(s: &Services, order_id: i32) -> ServiceResult<Option<String>> {
    let order = super::orders::find(&s.db, order_id).await?;
    let cur = currency(&order.currency)?;
    let mut problems = Vec::new();
    // Requests left without an outcome are asked about first, never sent as new ones.
    for req in pr::Entity::find()
        .filter(pr::Column::OrderId.eq(order.id))
        .filter(pr::Column::ProcessId.is_null())
        .filter(pr::Column::Command.eq(Command::Refund.code()))
        .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
        .all(&s.db)
        .await?
    {
        let resolution = match requests::ask(s, &req.tracking_id).await {
            Resolution::NotProcessed(_) => send_deposit_refund(s, &req).await?,
            other => other,
        };
        if let Some(p) = record_deposit_refund(s, &req, resolution).await? {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        return Ok(Some(problems.join(" ")));
    }
    let (paid, plan) = plan_for(&s.db, &order, Some(order.cancellation_charge_minor), Decimal::ZERO).await?;
    for (d, (tender, amount)) in paid.iter().zip(plan.refunds.iter()) {
        if *tender != Tender::Card {
            continue;
        }
        let mut left = amount - d.refunded.minor();
        let auth_ids: Vec<i32> = au::Entity::find().filter(au::Column::PaymentLineId.eq(d.payment_line_id)).all(&s.db).await?.iter().map(|a| a.id).collect();
        let caps = cap::Entity::find()
            .filter(cap::Column::AuthorizationId.is_in(auth_ids))
            .filter(cap::Column::InvoiceId.is_null())
            .order_by_desc(cap::Column::Id)
            .all(&s.db)
            .await?;
        for c in caps {
            if left <= 0 {
                break;
            }
            let take = left.min(c.amount_minor - c.refunded_minor);
            if take <= 0 {
                continue;
            }
            let auth = au::Entity::find_by_id(c.authorization_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
            let amount = Money::from_minor(take, cur);
            let reference = s.connector.payment_reference(Command::Refund, amount).await.map_err(|e| ServiceError::Conflict(format!("The deposit refund could not be started: {e}")))?;
            // The claim (issue #39 item 2): under the order's lock, no refund of this order in
            // flight and the capture's refunded total as read, and the intent recorded in the
            // same transaction; a second runner finds the intent and leaves it to this one.
            let txn = s.db.begin().await?;
            for_update(so::Entity::find_by_id(order.id), &txn).one(&txn).await?;
            let in_flight = requests::in_flight(&txn, order.id, Command::Refund).await?;
            let refunded_now = cap::Entity::find_by_id(c.id).one(&txn).await?.map(|x| x.refunded_minor);
            if in_flight.is_some() || refunded_now != Some(c.refunded_minor) {
                txn.rollback().await?;
                problems.push("Another runner is refunding this deposit; it finishes the cancellation.".to_string());
                break;
            }
            let purpose = Purpose { order_id: order.id, authorization_id: Some(auth.id), process: None, capture_id: Some(c.id) };
            let req = requests::record_intent(&txn, auth.connector_id, Command::Refund, amount, purpose, reference).await?;
            txn.commit().await?;
            let resolution = send_deposit_refund(s, &req).await?;
            match record_deposit_refund(s, &req, resolution).await? {
                Some(p) => {
                    problems.push(p);
                    break;
                }
                None => left -= take,
            }
        }
    }
    if problems.is_empty() {
        for a in au::Entity::find().filter(au::Column::OrderId.eq(order.id)).filter(au::Column::Status.eq(AuthorizationStatus::Open.code())).all(&s.db).await? {
            // The order is cancelled: whatever was captured has been given back, the rest is voided.
            if let Err(e) = super::authorizations::release(s, &a, PaymentStatus::Voided, None).await {
                problems.push(format!("The card authorization was not released: {e}"));
            }
        }
    }
    Ok((!problems.is_empty()).then(|| problems.join(" ")))
}

async fn send_deposit_refund(s: &Services, req: &pr::Model) -> ServiceResult<Resolution> {
    let c = cap::Entity::find_by_id(req.capture_id.unwrap_or_default()).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("capture of the refund".into()))?;
    let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
    crate::crashpoint::hit("cancel:refund:intent");
    let result = s.connector.refund(&req.tracking_id, &c.processor_reference, amount).await;
    crate::crashpoint::hit("cancel:refund:sent");
    Ok(requests::resolve(s, &req.tracking_id, result, Outcome::Refunded).await)
}

/// Records a deposit refund with its refund payment journal in one transaction.
async fn record_deposit_refund(s: &Services, req: &pr::Model, resolution: Resolution) -> ServiceResult<Option<String>> {
    let now = s.now();
    let txn = s.db.begin().await?;
    let failure = match resolution {
        Resolution::Done(Outcome::Refunded(r)) => {
            requests::finish(&txn, req, RequestStatus::Succeeded, Some(r.reference.clone()), None, now).await?;
            let c = crate::pipeline::record_refund_row(&txn, req, &r, now).await?;
            let order = so::Entity::find_by_id(c.order_id).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("order".into()))?;
            post_journal(
                &txn,
                now,
                Posting {
                    tender: Some(Tender::Card),
                    prepayment: true,
                    ..Posting::for_order(&order, format!("refund:{}", req.tracking_id), JournalKind::RefundPayment, format!("Card deposit of {} refunded", order.number))
                },
                vec![JournalLine::debit(accounts::CUSTOMER_PREPAYMENTS, r.amount), JournalLine::credit(accounts::CARD_CLEARING, r.amount)],
            )
            .await?;
            None
        }
        other => Some(requests::finish_unsuccessful(&txn, req, other, "card refund", "recovery", now).await?),
    };
    txn.commit().await?;
    Ok(failure)
}

// ---------------------------------------------------------------------------------------------
// Recovery

/// Finishes deposits and cancellations a crash or a processor fault interrupted: deposit captures
/// without an outcome are asked about, deposits never captured are captured, card refunds of
/// cancelled orders are completed. Returns how many orders it touched.
pub async fn recover(s: &Services, batch: u64) -> ServiceResult<u32> {
    let stale_before = s.now() - s.lease;
    let mut touched = 0;
    let open = so::Entity::find()
        .filter(so::Column::Prepayment.eq(true))
        .filter(so::Column::Status.eq(OrderStatus::Open.code()))
        .filter(so::Column::CreatedAt.lt(stale_before))
        .order_by_asc(so::Column::Id)
        .limit(batch)
        .all(&s.db)
        .await?;
    for o in open {
        let due = card_deposit_due(&s.db, &o).await?;
        let captured: i64 = deposit_captures(&s.db, o.id).await?.iter().map(|c| c.amount_minor).sum();
        // Only with an open authorization: a declined card waits for a new payment, not for recovery.
        let authorized = au::Entity::find()
            .filter(au::Column::OrderId.eq(o.id))
            .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
            .one(&s.db)
            .await?
            .is_some();
        if due > captured && authorized {
            // Another runner recording the same outcome first is not a failure of this pass.
            match capture_deposit(s, o.id).await {
                Err(ServiceError::AlreadyRecorded(_)) => {}
                other => {
                    other?;
                }
            }
            touched += 1;
        }
    }
    let cancelled = so::Entity::find()
        .filter(so::Column::Status.eq(OrderStatus::Cancelled.code()))
        .filter(so::Column::CancelledAt.lt(stale_before))
        .order_by_desc(so::Column::Id)
        .limit(batch)
        .all(&s.db)
        .await?;
    for o in cancelled {
        if cancellation_unfinished(&s.db, &o).await? {
            match finish_cancellation(s, o.id).await {
                Err(ServiceError::AlreadyRecorded(_)) => {}
                other => {
                    other?;
                }
            }
            touched += 1;
        }
    }
    Ok(touched)
}

async fn cancellation_unfinished(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<bool> {
    let (paid, plan) = plan_for(db, order, Some(order.cancellation_charge_minor), Decimal::ZERO).await?;
    let card_left = paid.iter().zip(plan.refunds.iter()).any(|(d, r)| r.0 == Tender::Card && r.1 > d.refunded.minor());
    let open = au::Entity::find().filter(au::Column::OrderId.eq(order.id)).filter(au::Column::Status.eq(AuthorizationStatus::Open.code())).one(db).await?.is_some();
    Ok(card_left || open)
}
