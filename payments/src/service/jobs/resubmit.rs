//! R-AUT-1: the authorization resubmit job, in bounded batches of payment lines, each claimed under
//! lock with its processor intent, so a crash loses nothing and processes nothing twice.
use crate::domain::order::PaymentStatus;
use crate::error::ServiceResult;
use crate::service::{audit, Services};
use sea_orm::{TransactionTrait};
use serde::Serialize;

/// Payment lines looked at per batch by the resubmit job.
pub const RESUBMIT_BATCH: u64 = 200;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResubmitReport {
    /// Payment lines authorized by this run.
    pub authorized: u64,
    /// Declined by the processor (the line shows Declined; a new payment is needed).
    pub declined: u64,
    /// Not processed or outcome unknown; the next run or recovery takes them again.
    pub not_completed: u64,
    /// Due, but paid with a nonrecurring token, which is never re-authorized (R-AUT-3).
    pub nonrecurring: u64,
}

/// R-AUT-1: the authorization resubmit job. With Future orders on (Call center parameters), every
/// card payment line in Pending Authorization whose order's earliest line still to invoice ships
/// within Future order days is authorized for what the order still needs, with its recurring
/// token; the order then leaves Do not process. Lines are taken `batch` at a time in id order.
/// A line is claimed by writing the request's intent in the transaction that re-checks it under
/// lock, so two servers never authorize it twice, and a crash after the intent leaves a pending
/// request that recovery resolves by asking the processor (and this job skips meanwhile).
pub async fn resubmit_authorizations(s: &Services, batch: u64) -> ServiceResult<ResubmitReport> {
    use crate::domain::money::{Currency, Money};
    use crate::domain::order::{Command, RequestStatus, Tender};
    use crate::domain::tokens::TokenKind;
    use crate::entity::{payment_line as pl, processor_request as pr};
    use crate::ledger::requests::{self, Purpose};
    use crate::service::{authorizations, for_update, orders, parameters};
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

    let mut report = ResubmitReport::default();
    let params = parameters::load(&s.db).await?;
    if !params.future_orders() {
        return Ok(report);
    }
    let batch = batch.clamp(1, 10_000);
    let window = chrono::Duration::days(i64::from(params.future_order_days()));
    let mut after = 0;
    let wm = crate::ledger::expiry::watermark(&s.db).await?;
    loop {
        let lines = pl::Entity::find()
            .filter(pl::Column::Id.gt(after))
            .filter(pl::Column::Tender.eq(Tender::Card.code()))
            .filter(crate::ledger::expiry::payment_status_is(s.db.get_database_backend(), PaymentStatus::PendingAuthorization, wm))
            .order_by_asc(pl::Column::Id)
            .limit(batch)
            .all(&s.db)
            .await?;
        let Some(last) = lines.last() else { break };
        after = last.id;
        let today = s.now().date_naive();
        for line in &lines {
            let earliest = orders::open_ship_dates(&s.db, line.order_id).await?.into_iter().min();
            let Some(earliest) = earliest else { continue };
            if today < earliest - window {
                continue; // not due yet
            }
            if TokenKind::from_code(&line.token_kind) != Some(TokenKind::Recurring) {
                report.nonrecurring += 1;
                continue;
            }
            let order = orders::find(&s.db, line.order_id).await?;
            let balance = orders::balance(&s.db, &order).await?;
            if balance.minor() == 0 {
                continue;
            }
            // Claim: re-check the line under lock and write the intent in the same transaction.
            // The order is settled first, so a line expiry moved is stored Pending Authorization.
            let txn = s.db.begin().await?;
            if let Some(o) = for_update(crate::entity::sales_order::Entity::find_by_id(line.order_id), &txn).one(&txn).await? {
                crate::ledger::expiry::settle(&txn, o).await?;
            }
            let current = for_update(pl::Entity::find_by_id(line.id), &txn).one(&txn).await?;
            let in_flight = pr::Entity::find()
                .filter(pr::Column::OrderId.eq(line.order_id))
                .filter(pr::Column::Command.eq(Command::Authorize.code()))
                .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
                .count(&txn)
                .await?;
            if current.is_none_or(|c| c.status != PaymentStatus::PendingAuthorization.code()) || in_flight > 0 {
                txn.rollback().await?;
                continue;
            }
            let amount = Money::from_minor(balance.minor(), Currency::stored(&order.currency)?);
            let purpose = Purpose { order_id: order.id, authorization_id: None, process: None, capture_id: None };
            let Some(req) = requests::claim(txn, s, line.connector_id.unwrap_or_default(), Command::Authorize, amount, purpose).await? else {
                report.not_completed += 1;
                continue;
            };
            let result = s.processor(req.connector_id).authorize(&req.tracking_id, line.card_token.as_deref().unwrap_or_default(), amount, crate::connector::AuthorizeAsk::for_line(line, crate::connector::Initiator::Merchant)).await;
            let resolution = requests::resolve(s, &req, result, crate::connector::Outcome::Authorized).await;
            match orders::record_authorization(s, &req, line, resolution, None).await?.0 {
                PaymentStatus::Authorized => {
                    authorizations::release_hold(s, order.id).await?;
                    report.authorized += 1;
                }
                PaymentStatus::Declined => report.declined += 1,
                _ => report.not_completed += 1,
            }
        }
        if (lines.len() as u64) < batch {
            break;
        }
    }
    // Lines left waiting for a new payment are reported, not audited again on every run.
    if report.authorized + report.declined + report.not_completed > 0 {
        audit::record(&s.db, s.now(), audit::SYSTEM, "job.resubmit", "authorizations", None, Some(serde_json::json!(report))).await?;
    }
    Ok(report)
}
