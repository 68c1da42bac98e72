//! An order's stored state as the pipeline and the use cases read and record it: the order and its
//! lines as the invoice arithmetic sees them, and the outcome of an authorization request recorded
//! (R-AUT-1, R-AUT-3).
use crate::connector::{Authorized, Outcome};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{AuthorizationStatus, LineState, OrderBasis, PaymentStatus, RequestStatus};
use crate::entity::{authorization as au, payment_line as pl, pre_authorization_duration as pad, processor_request as pr, sales_order as so, sales_order_line as sol};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::requests::{self, Resolution};
use crate::runtime::Services;
use rust_decimal::Decimal;
use chrono::NaiveDate;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, TransactionTrait};
use std::str::FromStr;

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

/// [`record_authorization`] by this runner alone: `AlreadyRecorded` if another one was first.
async fn record_authorization_once(s: &Services, req: &pr::Model, line: &pl::Model, resolution: Resolution, replaces: Option<i32>) -> ServiceResult<(PaymentStatus, Option<String>)> {
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
            // A renewal (R-AUT-6: no payment process, replacing a hold still live) declined
            // leaves the line on the authorization it was to replace, which holds the money
            // until it expires (R-AUT-4 then). The pipeline's authorization of the rest, and a
            // new payment (replacing lines already expired or declined), decline the line.
            let still_held = match replaces.filter(|_| req.process_id.is_none()) {
                Some(id) => au::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .is_some_and(|a| a.status == AuthorizationStatus::Open.code() && a.expires_at > now && a.amount_minor > a.captured_minor),
                None => false,
            };
            if !still_held {
                set_payment_status(&txn, line.id, PaymentStatus::Declined).await?;
            }
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

pub(crate) async fn set_payment_status(db: &impl ConnectionTrait, line_id: i32, status: PaymentStatus) -> Result<(), DbErr> {
    pl::Entity::update_many()
        .col_expr(pl::Column::Status, sea_orm::sea_query::Expr::value(status.code()))
        .filter(pl::Column::Id.eq(line_id))
        .exec(db)
        .await
        .map(|_| ())
}

pub(crate) async fn insert_authorization(
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
    let store = pad::Entity::find_by_id((channel_id, variant.to_string())).one(db).await?.map(|d| d.days);
    // The AR days are read only when the store has no duration of its own (they would not count).
    let ar_days = match store {
        Some(_) => 0,
        None => crate::ledger::settings::load_parameters(db).await?.days_before_expired(),
    };
    Ok(crate::domain::expiry::expiry_days(store, ar_days))
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
        .map_err(|_| ServiceError::StoredData(format!("order {} has a tax rate that is not a number: {:?}", order.number, order.tax_percent)))?;
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
        .map_err(|source| ServiceError::Amount { what: "The order balance", source })
}

pub async fn find(db: &impl ConnectionTrait, id: i32) -> ServiceResult<so::Model> {
    so::Entity::find_by_id(id).one(db).await?.ok_or_else(|| ServiceError::NotFound(format!("There is no sales order with id {id}.")))
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
