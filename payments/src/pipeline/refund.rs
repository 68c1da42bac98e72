//! Stage 2 of a credit note: the refund against the invoice's captures, intent first.
use crate::ledger::requests::{self, Purpose, Resolution};
use crate::connector::Outcome;
use crate::domain::capture::{plan_refund, RefundPlan};
use crate::domain::money::Money;
use crate::domain::order::{Command, RequestStatus};
use crate::domain::pipeline::Stage;
use crate::entity::{
    authorization as au, capture as cap, processor_request as pr,
};
use crate::error::{ServiceError, ServiceResult};
use crate::db::for_update;
use crate::ledger::settings as features;
use crate::runtime::Services;
use sea_orm::sea_query::{Expr};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use super::context::{Ctx, StageEnd, currency};
use super::log::{log, log_relaxed};

/// What the process's refund requests have refunded (their recorded, approved outcomes).
pub(crate) async fn refunded_by(db: &impl sea_orm::ConnectionTrait, process_id: i32) -> Result<i64, sea_orm::DbErr> {
    Ok(pr::Entity::find()
        .filter(pr::Column::ProcessId.eq(process_id))
        .filter(pr::Column::Command.eq(Command::Refund.code()))
        .filter(pr::Column::Status.eq(RequestStatus::Succeeded.code()))
        .all(db)
        .await?
        .iter()
        .map(|r| r.amount_minor)
        .sum())
}

/// Stage 2 of a credit note: refund its amount against the order's captures, newest first, over
/// several captures only with Refunds over multiple captures on; never more than was captured
/// (R-CAP-4). Earlier requests whose outcome was not recorded are settled first (R-CAP-5).
pub(super) async fn refund(s: &Services, ctx: &Ctx, attempt: i32) -> ServiceResult<StageEnd> {
    let stage = Stage::CaptureOrRefund;
    let p = &ctx.p;
    let earlier = pr::Entity::find()
        .filter(pr::Column::ProcessId.eq(p.id))
        .filter(pr::Column::Stage.eq(stage.code()))
        .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
        .order_by_asc(pr::Column::Id)
        .all(&s.db)
        .await?;
    for req in earlier {
        log_relaxed(s, p.id, stage, attempt, format!("Asking the processor what became of refund tracking id {}.", req.tracking_id)).await?;
        let resolution = match requests::ask(s, &req).await {
            Resolution::NotProcessed(why) => {
                log_relaxed(s, p.id, stage, attempt, format!("{why}; sending the refund again with the same tracking id.")).await?;
                send_refund(s, &req).await?
            }
            other => other,
        };
        if let Some(failure) = record_refund(s, &req, resolution).await? {
            return Ok(StageEnd::Failed(failure));
        }
    }
    let invoice = &ctx.invoice;
    let cur = currency(&invoice.currency)?;
    // The part of a return refunded in cash was settled with the credit note (R-PRE-5).
    let target = -(invoice.amount_minor - invoice.prepaid_minor);
    let done = refunded_by(&s.db, p.id).await?;
    let remaining = target - done;
    if remaining <= 0 {
        return Ok(StageEnd::Succeeded(format!("Refunded {} for {}.", Money::from_minor(done, cur), invoice.number)));
    }
    let caps: Vec<cap::Model> = cap::Entity::find()
        .filter(cap::Column::OrderId.eq(p.order_id))
        .order_by_desc(cap::Column::Id)
        .all(&s.db)
        .await?
        .into_iter()
        .filter(|c| c.refundable_minor() > 0)
        .collect();
    let refundable: i64 = caps.iter().map(cap::Model::refundable_minor).sum();
    if refundable == 0 {
        return Ok(if done > 0 {
            StageEnd::Succeeded(format!("Refunded {}; nothing more was captured on the order.", Money::from_minor(done, cur)))
        } else {
            StageEnd::Skipped("Nothing captured on the order is left to refund; the credit stays on the customer's account.".into())
        });
    }
    let over_multiple = features::load(&s.db).await?.is_enabled(crate::Feature::RefundsOverMultipleCaptures);
    let amount = Ord::min(remaining, refundable);
    let left: Vec<i64> = caps.iter().map(cap::Model::refundable_minor).collect();
    let plan: Vec<(&cap::Model, i64)> = match plan_refund(&left, amount, over_multiple) {
        RefundPlan::Take(takes) => takes.into_iter().map(|(i, take)| (&caps[i], take)).collect(),
        RefundPlan::NoSingleCapture => {
            return Ok(StageEnd::Failed(format!(
                "No single capture can take back {}; turn on Refunds over multiple captures, or credit less, then resume (R-CAP-4).",
                Money::from_minor(amount, cur)
            )))
        }
    };
    // The stage's log lines, written as they happen (the process's lease is held).
    let note = |message: String| log(&s.db, s.now(), p.id, stage, attempt, message);
    if amount < remaining {
        note(format!(
            "Only {} captured is left to refund; the other {} stays as credit on the customer's account.",
            Money::from_minor(amount, cur),
            Money::from_minor(remaining - amount, cur)
        ))
        .await?;
    }
    for (c, take) in plan {
        let auth = au::Entity::find_by_id(c.authorization_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
        let req = match requests::begin(
            s,
            auth.connector_id,
            Command::Refund,
            Money::from_minor(take, cur),
            Purpose { order_id: p.order_id, authorization_id: Some(auth.id), process: Some((p.id, stage)), capture_id: Some(c.id) },
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return Ok(StageEnd::Failed(format!("No tracking id could be obtained from the connector: {e}"))),
        };
        note(format!("Refund of {} against capture {} requested with tracking id {}.", Money::from_minor(take, cur), c.processor_reference, req.tracking_id)).await?;
        let resolution = send_refund(s, &req).await?;
        if let Some(failure) = record_refund(s, &req, resolution).await? {
            return Ok(StageEnd::Failed(failure));
        }
    }
    let total = refunded_by(&s.db, p.id).await?;
    Ok(StageEnd::Succeeded(format!("Refunded {} for {}.", Money::from_minor(total, cur), invoice.number)))
}

pub(super) async fn send_refund(s: &Services, req: &pr::Model) -> ServiceResult<Resolution> {
    let c = cap::Entity::find_by_id(req.capture_id.unwrap_or_default()).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("capture of the refund".into()))?;
    let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
    crate::crashpoint::hit("refund:intent");
    let result = s.processor(req.connector_id).refund(&req.tracking_id, &c.processor_reference, amount).await;
    crate::crashpoint::hit("refund:sent");
    Ok(requests::resolve(s, &req, result, Outcome::Refunded).await)
}

/// The refund row of a processor refund and the capture's refunded total, under the capture's lock
/// (shared by credit notes and cancelled deposits). Returns the capture as it was.
pub(crate) async fn record_refund_row(
    txn: &impl sea_orm::ConnectionTrait,
    req: &pr::Model,
    r: &crate::connector::Refunded,
    now: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<cap::Model> {
    let c = for_update(cap::Entity::find_by_id(req.capture_id.unwrap_or_default()), txn)
        .one(txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound("capture of the refund".into()))?;
    crate::entity::refund::ActiveModel {
        capture_id: Set(c.id),
        order_id: Set(c.order_id),
        amount_minor: Set(r.amount.minor()),
        processor_reference: Set(r.reference.clone()),
        tracking_id: Set(req.tracking_id.clone()),
        refunded_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    cap::Entity::update_many()
        .col_expr(cap::Column::RefundedMinor, Expr::value(c.refunded_minor + r.amount.minor()))
        .filter(cap::Column::Id.eq(c.id))
        .exec(txn)
        .await?;
    Ok(c)
}

/// Records a refund's outcome with its effects in one transaction; `Some(reason)` if it failed.
pub(super) async fn record_refund(s: &Services, req: &pr::Model, resolution: Resolution) -> ServiceResult<Option<String>> {
    let now = s.now();
    let txn = crate::db::begin_bookkeeping(&s.db).await?;
    let failure = match resolution {
        Resolution::Done(Outcome::Refunded(r)) => {
            requests::finish(&txn, req, RequestStatus::Succeeded, Some(r.reference.clone()), None, now).await?;
            record_refund_row(&txn, req, &r, now).await?;
            None
        }
        Resolution::Done(Outcome::Declined { code, message }) => {
            requests::finish(&txn, req, RequestStatus::Declined, None, Some(format!("{code}: {message}")), now).await?;
            Some(format!("The processor declined the refund ({code}): {message}"))
        }
        Resolution::Done(other) => {
            requests::finish(&txn, req, RequestStatus::Failed, None, Some(format!("unexpected answer {other:?}")), now).await?;
            Some("The processor gave an unexpected answer to the refund.".into())
        }
        Resolution::NotProcessed(m) => {
            requests::finish(&txn, req, RequestStatus::Failed, None, Some(m.clone()), now).await?;
            Some(format!("The refund was not processed ({m}). Resume sends it again."))
        }
        Resolution::Unknown(m) => {
            requests::finish(&txn, req, RequestStatus::Unknown, None, Some(m.clone()), now).await?;
            Some(format!("The outcome of the refund is unknown ({m}). Resume asks the processor first and never refunds twice."))
        }
    };
    txn.commit().await?;
    Ok(failure)
}
