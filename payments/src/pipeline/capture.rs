//! Stage 2 of an invoice: the capture (R-CAP-1..6), decided by `domain::capture::decide_capture`,
//! its intent written before the processor is called, its outcome recorded or asked about again.
use crate::ledger::requests::{self, Purpose, Resolution};
use crate::connector::{ConnectorError, Outcome};
use crate::domain::capture::{decide_capture, CaptureConditions, CaptureDecision, CaptureKind, CapturePath, OpenAuthorization};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{AuthorizationStatus, Command, RequestStatus, Tender};
use crate::domain::pipeline::Stage;
use crate::entity::{
    authorization as au, capture as cap, connector, connector_merchant_property as cmp, invoice as inv, payment_line as pl,
    payment_process as pp, processor_request as pr,
};
use crate::error::{ServiceError, ServiceResult};
use crate::db::for_update;
use crate::ledger::settings as features;
use crate::runtime::Services;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait};
use super::context::{Ctx, StageEnd, currency, flushed};
use super::log::{LogLine, log_relaxed};
use super::refund::{refund};

pub(super) async fn conditions(s: &Services, ctx: &Ctx, auth: &au::Model) -> ServiceResult<CaptureConditions> {
    let order = &ctx.order;
    let (feats, params) = match &ctx.fresh {
        Some((f, p)) => (f.clone(), p.clone()),
        None => features::load_with_parameters(&s.db).await?,
    };
    let (conns, props) = connectors_with_properties(&s.db, [auth.connector_id]).await?;
    let props = props.iter().find(|p| p.channel_id == order.channel_id);
    Ok(conditions_of(auth, &feats, &params, props, conns.first(), s.now()))
}

/// The connectors `ids` and their merchant properties on every channel, read in one statement
/// (issue #3: on PostgreSQL each statement on the invoicing's path is a round trip).
pub(super) async fn connectors_with_properties(db: &impl sea_orm::ConnectionTrait, ids: impl IntoIterator<Item = i32>) -> Result<(Vec<connector::Model>, Vec<cmp::Model>), sea_orm::DbErr> {
    let properties = cmp::Entity::belongs_to(connector::Entity).from(cmp::Column::ConnectorId).to(connector::Column::Id).into();
    let rows = connector::Entity::find()
        .filter(connector::Column::Id.is_in(ids))
        .join_rev(sea_orm::JoinType::LeftJoin, properties)
        .select_also(cmp::Entity)
        .all(db)
        .await?;
    let (mut conns, mut props) = (Vec::<connector::Model>::new(), Vec::new());
    for (c, p) in rows {
        if !conns.iter().any(|k| k.id == c.id) {
            conns.push(c);
        }
        props.extend(p);
    }
    Ok((conns, props))
}

/// The conditions of R-CAP-2 for capturing against `auth` at `now`, from the settings, the
/// merchant properties of the authorization's connector on the order's channel, and the connector.
pub(super) fn conditions_of(
    auth: &au::Model,
    feats: &crate::domain::features::FeatureSet,
    params: &crate::domain::parameters::Parameters,
    props: Option<&cmp::Model>,
    conn: Option<&connector::Model>,
    now: chrono::DateTime<chrono::Utc>,
) -> CaptureConditions {
    CaptureConditions {
        supports_multiple_captures: auth.supports_multiple_captures,
        incremental_capture_feature: feats.is_enabled(crate::Feature::IncrementalCapture),
        credit_card_authorization: params.credit_card_authorization(),
        expired: auth.expires_at <= now,
        request_protection: props.is_some_and(|p| p.enable_request_protection),
        payment_method_variant: auth.payment_method_variant.clone(),
        non_incremental_capture_methods: props.map(|p| p.non_incremental_capture_methods.clone()).unwrap_or_default(),
        merchant_allows_multiple_partial_captures: conn.is_some_and(|c| c.allow_multiple_partial_capture),
    }
}

/// Stage 2: capture the invoiced amount against the order's authorization (R-CAP-1..5).
pub(super) async fn capture(s: &Services, ctx: &mut Ctx, attempt: i32) -> ServiceResult<StageEnd> {
    let stage = Stage::CaptureOrRefund;
    if ctx.is_credit() {
        flushed!(ctx, s);
        return refund(s, ctx, attempt).await;
    }
    let earlier = if ctx.fresh.is_some() { None } else { requests::latest_for_stage(&s.db, ctx.p.id, stage).await? };
    if let Some(req) = earlier {
        match RequestStatus::from_code(&req.status) {
            Some(RequestStatus::Succeeded) => {
                return Ok(StageEnd::Succeeded(format!("Already captured by tracking id {}.", req.tracking_id)));
            }
            Some(RequestStatus::Pending | RequestStatus::Unknown | RequestStatus::Failed) => {
                flushed!(ctx, s);
                let p = &ctx.p;
                let auth = au::Entity::find_by_id(req.authorization_id.unwrap_or_default())
                    .one(&s.db)
                    .await?
                    .ok_or_else(|| ServiceError::NotFound("authorization of the capture request".into()))?;
                log_relaxed(s, p.id, stage, attempt, format!("Asking the processor what became of tracking id {}.", req.tracking_id)).await?;
                return match requests::ask(s, &req).await {
                    Resolution::NotProcessed(why) => {
                        log_relaxed(s, p.id, stage, attempt, format!("{why}; sending the capture again with the same tracking id.")).await?;
                        let final_capture = p.took_path(CaptureKind::Legacy);
                        send_capture(s, ctx, &req, &auth, attempt, final_capture).await
                    }
                    other => record_capture(s, ctx, &req, &auth, other).await,
                };
            }
            _ => {}
        }
    }
    let (p, order, invoice) = (&ctx.p, &ctx.order, &ctx.invoice);
    let cur = currency(&invoice.currency)?;
    let due = invoice.amount_minor - invoice.prepaid_minor;
    // The order's newest open authorization, with R-CAP-2's conditions for it.
    let auth = if due > 0 {
        au::Entity::find()
            .filter(au::Column::OrderId.eq(order.id))
            .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
            .order_by_desc(au::Column::Id)
            .one(&s.db)
            .await?
    } else {
        None
    };
    let conditions = match &auth {
        Some(a) => Some(conditions(s, ctx, a).await?),
        None => None,
    };
    let decision = decide_capture(due, auth.as_ref().zip(conditions.as_ref()).map(|(a, c)| (open_authorization(a), c)), s.now());
    let (path, amount) = match decision {
        CaptureDecision::Capture { path, amount_minor, .. } => (path, amount_minor),
        CaptureDecision::NothingDue => {
            return Ok(StageEnd::Skipped(format!(
                "{} is settled by the deposit and cash taken ({}); nothing to capture.",
                invoice.number,
                Money::from_minor(invoice.prepaid_minor, cur)
            )))
        }
        // An open authorization belongs to a card payment line; only without one does it matter
        // whether the order was paid by card at all.
        CaptureDecision::NoOpenAuthorization => {
            let cards = pl::Entity::find().filter(pl::Column::OrderId.eq(order.id)).filter(pl::Column::Tender.eq(Tender::Card.code())).count(&s.db).await?;
            if cards == 0 {
                return Ok(StageEnd::Skipped("The order has no card payment; nothing to capture.".into()));
            }
            return Ok(StageEnd::Failed(format!("{} has no open card authorization; take a new payment on the order, then resume.", order.number)));
        }
        CaptureDecision::Expired(at) => {
            return Ok(StageEnd::Failed(format!(
                "The authorization expired on {} and cannot be captured (R-AUT-3); take a new payment on the order, then resume.",
                at.format("%Y-%m-%d")
            )))
        }
        CaptureDecision::NothingLeft => return Ok(StageEnd::Failed("Nothing is left on the authorization to capture; take a new payment, then resume.".into())),
    };
    let auth = auth.expect("a capture is decided against an authorization");
    let msg = capture_message(&path, invoice, due, amount)?;
    // The tracking id is obtained from the connector first (R-CAP-5); then the chosen path, its
    // log lines and the request's intent commit together, durably, before the processor is called.
    let reference = match s.processor(auth.connector_id).payment_reference(Command::Capture, Money::from_minor(amount, cur)).await {
        Ok(r) => r,
        Err(e) => return Ok(StageEnd::Failed(format!("No tracking id could be obtained from the connector: {e}"))),
    };
    let (process_id, order_id) = (p.id, order.id);
    let txn = s.db.begin().await?;
    let purpose = Purpose { order_id, authorization_id: Some(auth.id), process: Some((process_id, stage)), capture_id: None };
    let req = requests::record_intent(&txn, auth.connector_id, Command::Capture, Money::from_minor(amount, cur), purpose, reference).await?;
    let now = s.now();
    let requested = capture_requested(&req, &auth)?;
    ctx.marks.line(LogLine { at: now, stage, attempt, message: msg });
    ctx.marks.line(LogLine { at: now, stage, attempt, message: requested });
    ctx.marks.capture_path(&path);
    // The lease, the chosen path, this stage's start mark (and the previous stage's end) and the
    // log lines commit with the intent: without the lease, nothing is written and nothing is sent.
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok(StageEnd::LeaseLost);
    }
    txn.commit().await?;
    ctx.marks.committed();
    ctx.p.capture_path = Some(path.explanation());
    ctx.p.capture_kind = Some(path.kind().code().to_string());
    send_capture(s, ctx, &req, &auth, attempt, matches!(path, CapturePath::Legacy(_))).await
}

/// What the capture decision reads of an authorization row.
pub(super) fn open_authorization(a: &au::Model) -> OpenAuthorization {
    OpenAuthorization { amount_minor: a.amount_minor, captured_minor: a.captured_minor, expires_at: a.expires_at }
}

/// The capture stage's first log line: the path, and what the card pays of the invoice.
pub(super) fn capture_message(path: &CapturePath, invoice: &inv::Model, due: i64, amount: i64) -> ServiceResult<String> {
    let cur = currency(&invoice.currency)?;
    let mut msg = format!("{}.", path.explanation());
    if invoice.prepaid_minor > 0 {
        msg.push_str(&format!(" {} of the invoice is settled by the deposit and cash; the card pays {}.", Money::from_minor(invoice.prepaid_minor, cur), Money::from_minor(due, cur)));
    }
    if amount < due {
        msg.push_str(&format!(
            " The amount due ({}) exceeds what is left on the authorization; {} is captured and the rest stays due (R-CAP-4).",
            Money::from_minor(due, cur),
            Money::from_minor(amount, cur)
        ));
    }
    Ok(msg)
}

pub(super) fn capture_requested(req: &pr::Model, auth: &au::Model) -> ServiceResult<String> {
    Ok(format!(
        "Capture of {} requested with tracking id {} (authorization {}).",
        Money::from_minor(req.amount_minor, currency(&req.currency)?),
        req.tracking_id,
        auth.processor_reference
    ))
}

/// The row recording capture `c` of request `req` against authorization `a` (for an invoice, or
/// a deposit with none).
pub(crate) fn capture_row(a: &au::Model, invoice_id: Option<i32>, c: &crate::connector::Captured, req: &pr::Model, now: chrono::DateTime<chrono::Utc>) -> cap::ActiveModel {
    cap::ActiveModel {
        authorization_id: Set(a.id),
        order_id: Set(a.order_id),
        invoice_id: Set(invoice_id),
        amount_minor: Set(c.amount.minor()),
        refunded_minor: Set(0),
        processor_reference: Set(c.reference.clone()),
        tracking_id: Set(req.tracking_id.clone()),
        captured_at: Set(now),
        ..Default::default()
    }
}

/// The authorization's status after a capture brought its captured total to `captured`.
/// Applies a capture the processor took on authorization `a` (read under lock): its row, the
/// authorization's captured total and status, and the payment line Paid once it is fully
/// captured. Returns the captured total and the status.
pub(crate) async fn apply_capture(
    txn: &impl ConnectionTrait,
    a: &au::Model,
    invoice_id: Option<i32>,
    c: &crate::connector::Captured,
    req: &pr::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(i64, AuthorizationStatus), DbErr> {
    let captured = a.captured_minor + c.amount.minor();
    let status = status_after_capture(a, captured, c.authorization_closed);
    capture_row(a, invoice_id, c, req, now).insert(txn).await?;
    au::Entity::update_many()
        .col_expr(au::Column::CapturedMinor, Expr::value(captured))
        .col_expr(au::Column::Status, Expr::value(status.code()))
        .filter(au::Column::Id.eq(a.id))
        .exec(txn)
        .await?;
    if status == AuthorizationStatus::FullyCaptured {
        pl::Entity::update_many()
            .col_expr(pl::Column::Status, Expr::value(crate::domain::order::PaymentStatus::Paid.code()))
            .filter(pl::Column::Id.eq(a.payment_line_id))
            .exec(txn)
            .await?;
    }
    Ok((captured, status))
}

pub(crate) fn status_after_capture(a: &au::Model, captured: i64, closed: bool) -> AuthorizationStatus {
    if captured >= a.amount_minor {
        AuthorizationStatus::FullyCaptured
    } else if closed {
        AuthorizationStatus::Closed
    } else {
        AuthorizationStatus::Open
    }
}

/// How the capture stage ends when the capture `c` was recorded.
pub(super) fn captured_message(c: &crate::connector::Captured, req: &pr::Model, a: &au::Model, captured: i64, status: AuthorizationStatus) -> ServiceResult<String> {
    let cur = currency(&req.currency)?;
    Ok(format!(
        "Captured {} (capture {}, tracking id {}); {} of {} authorized is now captured; authorization {}.",
        c.amount,
        c.reference,
        req.tracking_id,
        Money::from_minor(captured, cur),
        Money::from_minor(a.amount_minor, cur),
        status.label().to_lowercase()
    ))
}

pub(super) async fn send_capture(s: &Services, ctx: &mut Ctx, req: &pr::Model, auth: &au::Model, attempt: i32, final_capture: bool) -> ServiceResult<StageEnd> {
    crate::crashpoint::hit("capture:intent");
    let result = call_capture(s, req, auth, final_capture).await;
    crate::crashpoint::hit("capture:sent");
    let resolution = resolve_capture(s, ctx.p.id, req, attempt, result).await?;
    record_capture(s, ctx, req, auth, resolution).await
}

/// Sends the capture of an intent already recorded.
pub(super) async fn call_capture(s: &Services, req: &pr::Model, auth: &au::Model, final_capture: bool) -> Result<crate::connector::Captured, ConnectorError> {
    let amount = Money::from_minor(req.amount_minor, Currency::stored(&req.currency).map_err(|e| ConnectorError::Invalid(e.to_string()))?);
    s.processor(req.connector_id).capture(&req.tracking_id, &auth.processor_reference, amount, final_capture).await
}

/// What became of a capture: its answer, or after a timeout what the processor says about it.
pub(super) async fn resolve_capture(
    s: &Services,
    process_id: i32,
    req: &pr::Model,
    attempt: i32,
    result: Result<crate::connector::Captured, ConnectorError>,
) -> ServiceResult<Resolution> {
    if matches!(result, Err(ConnectorError::Timeout)) {
        log_relaxed(s, process_id, Stage::CaptureOrRefund, attempt, format!("No answer in time; asking the processor about tracking id {}.", req.tracking_id)).await?;
    }
    Ok(requests::resolve(s, &req, result, Outcome::Captured).await)
}

/// Records a capture's outcome with its effects in one transaction; a capture also adds to what
/// this run's process has captured.
pub(super) async fn record_capture(s: &Services, ctx: &mut Ctx, req: &pr::Model, auth: &au::Model, resolution: Resolution) -> ServiceResult<StageEnd> {
    let p = &ctx.p;
    let now = s.now();
    let txn = crate::db::begin_bookkeeping(&s.db).await?;
    let mut captured_now = 0;
    let end = match resolution {
        Resolution::Done(Outcome::Captured(c)) => {
            // The outcome first: only if this runner's write changed the request are its effects applied.
            requests::finish(&txn, req, RequestStatus::Succeeded, Some(c.reference.clone()), None, now).await?;
            captured_now = c.amount.minor();
            let a = for_update(au::Entity::find_by_id(auth.id), &txn).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
            let (captured, status) = apply_capture(&txn, &a, Some(p.invoice_id), &c, req, now).await?;
            pp::Entity::update_many()
                .col_expr(pp::Column::CapturedMinor, Expr::col(pp::Column::CapturedMinor).add(c.amount.minor()))
                .filter(pp::Column::Id.eq(p.id))
                .exec(&txn)
                .await?;
            StageEnd::Succeeded(captured_message(&c, req, &a, captured, status)?)
        }
        Resolution::Done(Outcome::Declined { code, message }) => {
            requests::finish(&txn, req, RequestStatus::Declined, None, Some(format!("{code}: {message}")), now).await?;
            StageEnd::Failed(format!("The processor declined the capture ({code}): {message}"))
        }
        Resolution::Done(other) => {
            requests::finish(&txn, req, RequestStatus::Failed, None, Some(format!("unexpected answer {other:?}")), now).await?;
            StageEnd::Failed("The processor gave an unexpected answer to the capture.".into())
        }
        Resolution::NotProcessed(m) => {
            requests::finish(&txn, req, RequestStatus::Failed, None, Some(m.clone()), now).await?;
            StageEnd::Failed(format!("The capture was not processed ({m}). Resume sends it again with the same tracking id."))
        }
        Resolution::Unknown(m) => {
            requests::finish(&txn, req, RequestStatus::Unknown, None, Some(m.clone()), now).await?;
            StageEnd::Failed(format!("The outcome of the capture is unknown ({m}). Resume asks the processor first and never captures twice."))
        }
    };
    txn.commit().await?;
    ctx.p.captured_minor += captured_now;
    Ok(end)
}
