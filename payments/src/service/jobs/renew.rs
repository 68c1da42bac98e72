//! R-AUT-6: renewing authorizations before they expire. A live hold paid with a recurring token,
//! expiring within the AR parameter "Renew authorizations days before expiry", is replaced by a
//! new merchant-initiated authorization for what its order still needs of it
//! ([`crate::domain::exposure::Assessment::kept`]); the old one is voided once the new one is in
//! place. Nonrecurring tokens are never renewed (R-AUT-3): the expiry forecast lists their
//! customers to contact.
//!
//! Crash safety, as the resubmit job: the renewal is claimed by writing its request's intent in
//! the transaction that re-checks the hold under the order's lock (no renewal in flight, none in
//! place); a crash after the intent leaves a pending request recovery resolves by asking the
//! processor (recording the new authorization as replacing the old); a crash after the new
//! authorization leaves an old hold replaced by a live one, which the first step of every run
//! voids. So a run never authorizes a hold twice and never leaves both holding.
use crate::domain::exposure::Release;
use crate::domain::forecast::renewal_due;
use crate::domain::money::{Currency, Money};
use crate::domain::order::{AuthorizationStatus, Command, PaymentStatus, RequestStatus};
use crate::domain::tokens::TokenKind;
use crate::entity::{authorization as au, payment_line as pl, processor_request as pr, sales_order as so};
use crate::error::ServiceResult;
use crate::ledger::requests::{self, Purpose};
use crate::service::authorizations::{self, Audit};
use crate::service::{audit, exposure, for_update, orders, parameters, Services};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RenewReport {
    /// Holds replaced by a new authorization this run.
    pub renewed: u64,
    /// Old holds voided because a new authorization replaced them (this run's, or one a crash
    /// left in place).
    pub released: u64,
    /// Renewals the processor declined: the old hold stays until it expires.
    pub declined: u64,
    /// Not processed, outcome unknown, or the old hold not voided yet: the next run or recovery
    /// takes them again.
    pub not_completed: u64,
    /// Due, but paid with a nonrecurring token (R-AUT-3): the customer is to be contacted.
    pub nonrecurring: u64,
}

/// Runs the renewal once over every due hold (R-AUT-6). Does nothing while the parameter is 0.
pub async fn renew_authorizations(s: &Services) -> ServiceResult<RenewReport> {
    let mut report = RenewReport::default();
    let days_before = parameters::load(&s.db).await?.renew_days_before_expiry();
    // Old holds a renewal replaced: voided first, whatever the parameter says now.
    let released = release_replaced(s, &mut report).await?;
    report.released = released;
    if days_before == 0 {
        return finish(s, report).await;
    }
    let now = s.now();
    let due: Vec<au::Model> = au::Entity::find()
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .filter(au::Column::ExpiresAt.gt(now))
        .filter(au::Column::ExpiresAt.lte(now + chrono::Duration::days(i64::from(days_before))))
        .order_by_asc(au::Column::ExpiresAt)
        .all(&s.db)
        .await?
        .into_iter()
        .filter(|a| a.amount_minor > a.captured_minor && renewal_due(a.expires_at, now, days_before))
        .collect();
    for old in due {
        let Some(line) = pl::Entity::find_by_id(old.payment_line_id).one(&s.db).await? else { continue };
        if TokenKind::from_code(&line.token_kind) != Some(TokenKind::Recurring) {
            report.nonrecurring += 1;
            continue;
        }
        // What the order still needs of this hold; none (held beyond need, or a payment under
        // way) is not renewed.
        let Some(a) = exposure::assess_order(s, old.order_id).await? else { continue };
        let keep = a.kept_by(old.id);
        if a.waiting.is_some() || keep == 0 {
            continue;
        }
        let amount = Money::from_minor(keep, Currency::stored(&old.currency)?);
        // Claim under the order's lock: nothing of the order in flight at the processor, no
        // renewal already in place, the hold still open.
        let txn = s.db.begin().await?;
        for_update(so::Entity::find_by_id(old.order_id), &txn).one(&txn).await?;
        let in_flight = pr::Entity::find()
            .filter(pr::Column::OrderId.eq(old.order_id))
            .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
            .count(&txn)
            .await?;
        let replaced = au::Entity::find().filter(au::Column::ReplacesId.eq(old.id)).count(&txn).await?;
        let current = au::Entity::find_by_id(old.id).one(&txn).await?;
        if in_flight > 0 || replaced > 0 || current.is_none_or(|c| c.status != AuthorizationStatus::Open.code() || c.captured_minor != old.captured_minor) {
            txn.rollback().await?;
            continue;
        }
        let purpose = Purpose { order_id: old.order_id, authorization_id: Some(old.id), process: None, capture_id: None };
        let Some(req) = requests::claim(txn, s, old.connector_id, Command::Authorize, amount, purpose).await? else {
            report.not_completed += 1;
            continue;
        };
        crate::crashpoint::hit("renew:intent");
        let result = s
            .processor(req.connector_id)
            .authorize(&req.tracking_id, line.card_token.as_deref().unwrap_or_default(), amount, crate::connector::AuthorizeAsk::for_line(&line, crate::connector::Initiator::Merchant))
            .await;
        crate::crashpoint::hit("renew:sent");
        let resolution = requests::resolve(s, &req, result, crate::connector::Outcome::Authorized).await;
        match orders::record_authorization(s, &req, &line, resolution, Some(old.id)).await?.0 {
            PaymentStatus::Authorized => {
                report.renewed += 1;
                crate::crashpoint::hit("renew:recorded");
                match void_replaced(s, &old).await {
                    Ok(true) => report.released += 1,
                    Ok(false) => report.not_completed += 1,
                    Err(e) => {
                        tracing::warn!(authorization = old.id, error = %e, "the renewed authorization's old hold was not voided; the next run tries again");
                        report.not_completed += 1;
                    }
                }
            }
            PaymentStatus::Declined => report.declined += 1,
            _ => report.not_completed += 1,
        }
    }
    finish(s, report).await
}

async fn finish(s: &Services, report: RenewReport) -> ServiceResult<RenewReport> {
    if report.renewed + report.released + report.declined + report.not_completed > 0 {
        audit::record(&s.db, s.now(), audit::SYSTEM, "job.renew", "authorizations", None, Some(serde_json::json!(report))).await?;
    }
    Ok(report)
}

/// Voids the open holds a live authorization replaces and the order no longer needs (step 1 of
/// every run). Returns how many.
async fn release_replaced(s: &Services, report: &mut RenewReport) -> ServiceResult<u64> {
    let now = s.now();
    let renewals = au::Entity::find()
        .filter(au::Column::ReplacesId.is_not_null())
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .filter(au::Column::ExpiresAt.gt(now))
        .all(&s.db)
        .await?;
    let mut released = 0;
    for new in renewals {
        let Some(old) = au::Entity::find_by_id(new.replaces_id.unwrap_or_default()).one(&s.db).await? else { continue };
        if old.status != AuthorizationStatus::Open.code() || old.order_id != new.order_id {
            continue;
        }
        match void_replaced(s, &old).await {
            Ok(true) => released += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(authorization = old.id, error = %e, "a replaced authorization was not voided; the next run tries again");
                report.not_completed += 1;
            }
        }
    }
    Ok(released)
}

/// Voids what is left of `old` when the order's exposure (`domain::exposure::assess`, the same
/// judgement as the Release action) says none of it is needed now that a newer authorization
/// holds the money; its payment line keeps its status (the renewal is on the same line). An
/// authorization the pipeline's fourth stage also names as replaced, but which still covers part
/// of the order, is left alone. Returns whether it was voided.
async fn void_replaced(s: &Services, old: &au::Model) -> ServiceResult<bool> {
    let excess = exposure::assess_order(s, old.order_id)
        .await?
        .is_some_and(|a| a.releases.iter().any(|r| matches!(r, Release::Void { authorization_id, .. } if *authorization_id == old.id)));
    if !excess {
        return Ok(false);
    }
    let line = pl::Entity::find_by_id(old.payment_line_id).one(&s.db).await?;
    let status = line.and_then(|l| PaymentStatus::from_code(&l.status)).unwrap_or(PaymentStatus::Authorized);
    let order = orders::find(&s.db, old.order_id).await?;
    let entry = Audit {
        actor: audit::SYSTEM.to_string(),
        action: "authorization.renewed",
        target: order.number,
        before: serde_json::json!({ "authorization": old.processor_reference, "expires_at": old.expires_at }),
    };
    authorizations::release(s, old, status, Some(entry)).await.map(|_| true)
}
