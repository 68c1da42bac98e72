//! Cancelling a prepayment order (R-PRE-4): the charge kept, the rest given back by each deposit
//! line's tender, card refunds with their intent first; and recovery of what a crash interrupted.
use super::{audit, for_update, parameters, Services};
use super::prepayments::{capture_deposit, card_deposit_due, currency};
use crate::connector::Outcome;
use crate::domain::money::Money;
use crate::domain::order::{accounts, AuthorizationStatus, Command, JournalKind, JournalLine, OrderStatus, PaymentStatus, RequestStatus, Tender};
use crate::domain::payment_views::{CancellationPreview, DepositPaid, JournalLineView};
use crate::domain::prepayment::{self, CancellationPlan};
use crate::entity::{
    authorization as au, capture as cap, customer, invoice as inv, payment_line as pl,
    processor_request as pr, sales_order as so,
};
use crate::error::{CancellationError, ProcessorAction, ProcessorError, ServiceError, ServiceResult};
use crate::ledger::requests::{self, Purpose, Resolution};
use crate::ledger::journals::{post_journal, Posting};
pub use crate::ledger::deposits::{deposits_paid, unapplied_deposit};
use crate::ledger::deposits::deposit_captures;
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use std::str::FromStr;

// ---------------------------------------------------------------------------------------------
// Cancel (R-PRE-4)

pub(crate) async fn plan_for(db: &impl ConnectionTrait, order: &so::Model, charge: Option<i64>, percent: Decimal) -> ServiceResult<(Vec<DepositPaid>, CancellationPlan)> {
    let paid = deposits_paid(db, order).await?;
    let lines: Vec<(Tender, Money)> = paid.iter().map(|d| (d.tender, d.paid)).collect();
    let base = if order.status == OrderStatus::Cancelled.code() { Money::zero(currency(&order.currency)?) } else { crate::ledger::orders::balance(db, order).await? };
    let mut plan = prepayment::cancellation_plan(&lines, base, percent).map_err(|source| ServiceError::Amount { what: "The cancellation", source })?;
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
    let order = crate::ledger::orders::find(&s.db, order_id).await?;
    if let Some(why) = cancel_refusal(&s.db, &order).await? {
        return Err(CancellationError::NotAllowed(why).into());
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

pub(crate) fn refund_account(tender: Tender) -> &'static str {
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
        return Err(CancellationError::NotAllowed(why).into());
    }
    let percent = if order.prepayment { percent } else { Decimal::ZERO };
    let (paid, plan) = plan_for(&txn, &order, None, percent).await?;
    let cur = currency(&order.currency)?;
    if let Some(expected) = expected_charge.map(str::trim).filter(|e| !e.is_empty()) {
        // The user confirmed what the preview showed; if the parameters changed since, say so.
        if Decimal::from_str(expected).ok() != Some(Money::from_minor(plan.charge, cur).to_decimal()) {
            return Err(CancellationError::ChargeChanged { charge: Money::from_minor(plan.charge, cur).to_string() }.into());
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
            Posting::for_order(
                    &order,
                    format!("cancel:refund:line:{}", d.payment_line_id),
                    JournalKind::RefundPayment,
                    format!("Deposit of {} refunded by {}", order.number, tender.label().to_lowercase()),
                ).voucher(Some(*tender)),
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
pub(crate) async fn finish_cancellation(s: &Services, order_id: i32) -> ServiceResult<Option<String>> {
    let order = crate::ledger::orders::find(&s.db, order_id).await?;
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
        let resolution = match requests::ask(s, &req).await {
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
            let take = left.min(c.refundable_minor());
            if take <= 0 {
                continue;
            }
            let auth = au::Entity::find_by_id(c.authorization_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
            let amount = Money::from_minor(take, cur);
            let reference = s.processor(auth.connector_id).payment_reference(Command::Refund, amount).await.map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::DepositRefund, reason: e.to_string() })?;
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

pub(crate) async fn send_deposit_refund(s: &Services, req: &pr::Model) -> ServiceResult<Resolution> {
    let c = cap::Entity::find_by_id(req.capture_id.unwrap_or_default()).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("capture of the refund".into()))?;
    let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
    crate::crashpoint::hit("cancel:refund:intent");
    let result = s.processor(req.connector_id).refund(&req.tracking_id, &c.processor_reference, amount).await;
    crate::crashpoint::hit("cancel:refund:sent");
    Ok(requests::resolve(s, &req, result, Outcome::Refunded).await)
}

/// Records a deposit refund with its refund payment journal in one transaction.
pub(crate) async fn record_deposit_refund(s: &Services, req: &pr::Model, resolution: Resolution) -> ServiceResult<Option<String>> {
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
                Posting::for_order(&order, format!("refund:{}", req.tracking_id), JournalKind::RefundPayment, format!("Card deposit of {} refunded", order.number)).voucher(Some(Tender::Card)),
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
        let captured: i64 = deposit_captures(&s.db, o.id).await?.iter().map(cap::Model::moved_minor).sum();
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

pub(crate) async fn cancellation_unfinished(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<bool> {
    let (paid, plan) = plan_for(db, order, Some(order.cancellation_charge_minor), Decimal::ZERO).await?;
    let card_left = paid.iter().zip(plan.refunds.iter()).any(|(d, r)| r.0 == Tender::Card && r.1 > d.refunded.minor());
    let open = au::Entity::find().filter(au::Column::OrderId.eq(order.id)).filter(au::Column::Status.eq(AuthorizationStatus::Open.code())).one(db).await?.is_some();
    Ok(card_left || open)
}
