//! Deposits of prepayment orders as the ledger holds them (R-PRE-2..5): what was paid in advance,
//! what invoices applied, and the settlement an invoice or a return posts in its own transaction.
use crate::domain::money::{Currency, Money};
use crate::domain::order::{accounts, JournalKind, JournalLine, PaymentStatus, Tender};
use crate::domain::payment_views::DepositPaid;
use crate::domain::prepayment;
use crate::entity::{authorization as au, capture as cap, invoice as inv, journal, journal_line as jl, payment_line as pl, processor_request as pr, refund, sales_order as so};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::journals::{post_journal, Posting};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

fn currency(code: &str) -> ServiceResult<Currency> {
    Ok(Currency::stored(code)?)
}

/// Deposit captures of an order: captures made before any invoice.
pub(crate) async fn deposit_captures(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<Vec<cap::Model>> {
    Ok(cap::Entity::find()
        .filter(cap::Column::OrderId.eq(order_id))
        .filter(cap::Column::InvoiceId.is_null())
        .order_by_asc(cap::Column::Id)
        .all(db)
        .await?)
}

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
        refunds.into_iter().filter(|r| outside.contains(&r.tracking_id)).map(|r| (r.capture_id, r.moved_minor())).collect()
    };
    let mut out = Vec::new();
    for l in lines {
        let tender = Tender::from_code(&l.tender).unwrap_or(Tender::Card);
        let (paid, refunded) = if tender == Tender::Card {
            let mine: Vec<&cap::Model> =
                caps.iter().filter(|c| auths.iter().any(|a| a.id == c.authorization_id && a.payment_line_id == l.id)).collect();
            let back: i64 = given_back.iter().filter(|(cid, _)| mine.iter().any(|c| c.id == *cid)).map(|(_, a)| a).sum();
            (mine.iter().map(|c| c.moved_minor()).sum(), back)
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
pub(crate) async fn applied(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<i64> {
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
    let card_refundable: i64 = caps.iter().map(cap::Model::refundable_minor).sum();
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
pub(crate) async fn deposit_refunds(db: &impl ConnectionTrait, order_id: i32) -> ServiceResult<i64> {
    let ids: Vec<i32> = deposit_captures(db, order_id).await?.iter().map(|c| c.id).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(refund::Entity::find().filter(refund::Column::CaptureId.is_in(ids)).all(db).await?.iter().map(|r| r.amount_minor).sum())
}
