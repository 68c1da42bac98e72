//! Stage 4: a new authorization for what is left to invoice on the order (R-CAP-3), and the
//! authorization requests placement left pending, resolved.
use crate::ledger::requests::{self, Purpose, Resolution};
use crate::connector::Outcome;
use crate::domain::capture::CaptureKind;
use crate::domain::money::Money;
use crate::domain::order::{AuthorizationStatus, Command, RequestStatus, Tender};
use crate::domain::pipeline::Stage;
use crate::entity::{
    authorization as au, payment_line as pl, processor_request as pr,
};
use crate::error::{ServiceError, ServiceResult};
use crate::ledger::orders;
use crate::runtime::Services;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use super::context::{Ctx, StageEnd, currency, flushed};
use super::journal::{FULLY_INVOICED};
use super::log::{log_relaxed};

/// Stage 4: authorize what is left to invoice when no open authorization covers it (R-CAP-3).
pub(super) async fn authorize_remaining(s: &Services, ctx: &mut Ctx, attempt: i32) -> ServiceResult<StageEnd> {
    let stage = Stage::AuthorizeRemaining;
    if ctx.is_credit() {
        return Ok(StageEnd::Skipped("A credit note leaves nothing to authorize.".into()));
    }
    let line_of = |order_id: i32| async move {
        pl::Entity::find()
            .filter(pl::Column::OrderId.eq(order_id))
            .filter(pl::Column::Tender.eq(Tender::Card.code()))
            .order_by_desc(pl::Column::Id)
            .one(&s.db)
            .await
    };
    let earlier = if ctx.fresh.is_some() { None } else { requests::latest_for_stage(&s.db, ctx.p.id, stage).await? };
    if let Some(req) = earlier {
        match RequestStatus::from_code(&req.status) {
            Some(RequestStatus::Succeeded) => return Ok(StageEnd::Succeeded(format!("Already authorized by tracking id {}.", req.tracking_id))),
            Some(RequestStatus::Pending | RequestStatus::Unknown | RequestStatus::Failed) => {
                flushed!(ctx, s);
                let p = &ctx.p;
                let line = line_of(p.order_id).await?.ok_or_else(|| ServiceError::NotFound("card payment line".into()))?;
                log_relaxed(s, p.id, stage, attempt, format!("Asking the processor what became of tracking id {}.", req.tracking_id)).await?;
                let resolution = match requests::ask(s, &req).await {
                    Resolution::NotProcessed(why) => {
                        log_relaxed(s, p.id, stage, attempt, format!("{why}; sending the authorization again with the same tracking id.")).await?;
                        let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
                        crate::crashpoint::hit("authorize:intent");
                        let result = s.processor(req.connector_id).authorize(&req.tracking_id, line.card_token.as_deref().unwrap_or_default(), amount, crate::connector::AuthorizeAsk::for_line(&line, crate::connector::Initiator::Merchant)).await;
                        crate::crashpoint::hit("authorize:sent");
                        requests::resolve(s, &req, result, Outcome::Authorized).await
                    }
                    other => other,
                };
                return finish_authorization(s, &req, &line, resolution).await;
            }
            _ => {}
        }
    }
    let (p, order) = (&ctx.p, &ctx.order);
    // A run that follows its own invoicing knows whether that invoice took the rest of every line:
    // stage 1 set the order's status from the lines it had just read and updated. Line
    // quantities never change after placement, and no other invoice of the order can be posted
    // while this process runs, so the balance is still nothing.
    let balance = if ctx.fresh.is_some() && order.status == crate::domain::order::OrderStatus::Invoiced.code() {
        Money::zero(currency(&order.currency)?)
    } else {
        orders::balance(&s.db, order).await?
    };
    if balance.minor() == 0 {
        return Ok(StageEnd::Skipped(FULLY_INVOICED.into()));
    }
    // What the deposit already paid is not authorized again (R-PRE-2).
    let unapplied = crate::ledger::deposits::unapplied_deposit(&s.db, order).await?;
    if unapplied >= balance.minor() {
        return Ok(StageEnd::Skipped(format!("The deposit ({}) covers what remains to invoice; nothing to authorize.", Money::from_minor(unapplied, balance.currency()))));
    }
    let balance = Money::from_minor(balance.minor() - unapplied, balance.currency());
    let Some(line) = line_of(order.id).await? else {
        return Ok(StageEnd::Skipped("The order has no card payment; the balance is paid otherwise.".into()));
    };
    let now = s.now();
    let open = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .all(&s.db)
        .await?;
    let covered: i64 = open.iter().filter(|a| a.expires_at > now).map(|a| a.amount_minor - a.captured_minor).sum();
    let incremental = p.took_path(CaptureKind::Incremental);
    if incremental && covered > 0 && covered < balance.minor() {
        // R-CAP-1 and R-AUT-2: the original authorization is retained, no overlapping one is
        // taken; a total that grew without an edit of the payment line is captured only up to it.
        return Ok(StageEnd::Skipped(format!(
            "The original authorization is retained with {} for the {} still to invoice; only the authorized amount will be captured.",
            Money::from_minor(covered, balance.currency()),
            balance
        )));
    }
    if covered >= balance.minor() {
        return Ok(StageEnd::Skipped(format!(
            "The open authorization keeps {} for the {} still to invoice; no new authorization is needed.",
            Money::from_minor(covered, balance.currency()),
            balance
        )));
    }
    let amount = Money::from_minor(balance.minor() - covered, balance.currency());
    if !crate::domain::tokens::TokenKind::from_code(&line.token_kind).is_some_and(|k| k.can_reauthorize()) {
        // R-AUT-3: a nonrecurring token is never re-authorized; a new payment must be taken.
        return Ok(StageEnd::Failed(format!(
            "The card was paid with a nonrecurring token, which is never re-authorized (R-AUT-3): take a new payment for the remaining {amount} on {}, then resume.",
            order.number
        )));
    }
    let previous = au::Entity::find().filter(au::Column::OrderId.eq(order.id)).order_by_desc(au::Column::Id).one(&s.db).await?;
    flushed!(ctx, s);
    let p = &ctx.p;
    let order = &ctx.order;
    let req = match requests::begin(
        s,
        line.connector_id.unwrap_or_default(),
        Command::Authorize,
        amount,
        Purpose { order_id: order.id, authorization_id: previous.map(|a| a.id), process: Some((p.id, stage)), capture_id: None },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Ok(StageEnd::Failed(format!("No tracking id could be obtained from the connector: {e}"))),
    };
    log_relaxed(s, p.id, stage, attempt, format!("Authorization of the remaining {amount} requested with tracking id {}.", req.tracking_id)).await?;
    crate::crashpoint::hit("authorize:intent");
    let result = s.processor(req.connector_id).authorize(&req.tracking_id, line.card_token.as_deref().unwrap_or_default(), amount, crate::connector::AuthorizeAsk::for_line(&line, crate::connector::Initiator::Merchant)).await;
    crate::crashpoint::hit("authorize:sent");
    let resolution = requests::resolve(s, &req, result, Outcome::Authorized).await;
    finish_authorization(s, &req, &line, resolution).await
}

pub(super) async fn finish_authorization(s: &Services, req: &pr::Model, line: &pl::Model, resolution: Resolution) -> ServiceResult<StageEnd> {
    let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
    let (status, message) = orders::record_authorization(s, req, line, resolution, req.authorization_id).await?;
    Ok(match (status, message) {
        (crate::domain::order::PaymentStatus::Authorized, _) => {
            StageEnd::Succeeded(format!("Authorized the remaining {amount} (tracking id {}).", req.tracking_id))
        }
        (_, Some(m)) => StageEnd::Failed(m),
        (_, None) => StageEnd::Failed("The remaining amount was not authorized.".into()),
    })
}

/// Resolves authorization requests of order placement whose outcome was never recorded (the
/// server stopped between the call and the outcome): asks the processor, then records.
pub(super) async fn resolve_placement_requests(s: &Services, batch: u64) -> ServiceResult<u32> {
    let pending = requests::unanswered(&s.db, &[Command::Authorize], s.now() - s.lease, batch).await?;
    let mut n = 0;
    for req in pending {
        let Some(line) = pl::Entity::find()
            .filter(pl::Column::OrderId.eq(req.order_id))
            .filter(pl::Column::Tender.eq(Tender::Card.code()))
            .order_by_desc(pl::Column::Id)
            .one(&s.db)
            .await?
        else {
            continue;
        };
        let resolution = requests::ask(s, &req).await;
        if matches!(resolution, Resolution::Unknown(_)) {
            continue;
        }
        orders::record_authorization(s, &req, &line, resolution, req.authorization_id).await?;
        n += 1;
    }
    Ok(n)
}
