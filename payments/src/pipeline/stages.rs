//! Stages 2–4 of the invoice payment process. Each is idempotent: it first looks at what an earlier
//! attempt recorded, asks the processor about any request whose outcome was not recorded, and only
//! then sends a request, reusing the earlier tracking id when the processor never received it.
use super::requests::{self, Purpose, Resolution};
use super::{log, log_relaxed, post_journal, LogLine, Posting, StageEnd};
use crate::connector::{ConnectorError, Outcome};
use crate::domain::capture::{capture_path, CaptureConditions, CapturePath};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{accounts, AuthorizationStatus, Command, JournalKind, JournalLine, RequestStatus, Tender};
use crate::domain::pipeline::Stage;
use crate::entity::{
    authorization as au, capture as cap, connector, connector_merchant_property as cmp, invoice as inv, payment_line as pl,
    payment_process as pp, processor_request as pr, sales_order as so,
};
use crate::error::{ServiceError, ServiceResult};
use crate::service::{features, for_update, orders, Services};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait};

/// What the stages of one run of a process read: the process as this run knows it (updated as its
/// stages capture and choose a path), its invoice and its order, each read once per run.
pub(super) struct Ctx {
    pub p: pp::Model,
    pub invoice: inv::Model,
    pub order: so::Model,
    /// Stage marks and log lines this run has not written yet.
    pub marks: super::marks::Marks,
    /// Set when this run follows the invoicing that created the process, in the same call: the
    /// features and parameters it read. Nothing else can have acted on the process yet (this
    /// server holds its lease), so no earlier request or payment journal of it exists.
    pub fresh: Option<(crate::domain::features::FeatureSet, crate::domain::parameters::Parameters)>,
}

impl Ctx {
    pub(super) async fn load(s: &Services, p: pp::Model) -> ServiceResult<Ctx> {
        let invoice = inv::Entity::find_by_id(p.invoice_id).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("invoice".into()))?;
        let order = orders::find(&s.db, p.order_id).await?;
        Ok(Ctx { p, invoice, order, marks: Default::default(), fresh: None })
    }

    /// A credit note (negative amount): stage 2 refunds instead of capturing.
    pub(super) fn is_credit(&self) -> bool {
        self.invoice.amount_minor < 0
    }

    /// Writes the pending stage marks in a transaction of their own, before a stage writes
    /// outside a transaction that flushes them; false if another server holds the lease.
    async fn flush_now(&mut self, s: &Services) -> Result<bool, sea_orm::DbErr> {
        let id = self.p.id;
        self.marks.flush_now(s, id).await
    }
}

/// Stops the stage when another server took the process over.
macro_rules! flushed {
    ($ctx:expr, $s:expr) => {
        if !$ctx.flush_now($s).await? {
            return Ok(StageEnd::LeaseLost);
        }
    };
}

fn currency(code: &str) -> ServiceResult<Currency> {
    Ok(Currency::stored(code)?)
}

async fn conditions(s: &Services, ctx: &Ctx, auth: &au::Model) -> ServiceResult<CaptureConditions> {
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

pub(super) fn path_text(path: &CapturePath) -> String {
    match path {
        CapturePath::Incremental => "Incremental capture against the original authorization".into(),
        CapturePath::Legacy(reasons) => format!(
            "Legacy capture, then a new authorization for the balance, because {}",
            reasons.iter().map(|r| r.message()).collect::<Vec<_>>().join("; ")
        ),
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
                return match requests::ask(s, &req.tracking_id).await {
                    Resolution::NotProcessed(why) => {
                        log_relaxed(s, p.id, stage, attempt, format!("{why}; sending the capture again with the same tracking id.")).await?;
                        let final_capture = p.capture_path.as_deref().is_some_and(|t| t.starts_with("Legacy"));
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
    if due <= 0 {
        return Ok(StageEnd::Skipped(format!(
            "{} is settled by the deposit and cash taken ({}); nothing to capture.",
            invoice.number,
            Money::from_minor(invoice.prepaid_minor, cur)
        )));
    }
    // An open authorization belongs to a card payment line; only without one does it matter
    // whether the order was paid by card at all.
    let Some(auth) = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .order_by_desc(au::Column::Id)
        .one(&s.db)
        .await?
    else {
        let cards = pl::Entity::find().filter(pl::Column::OrderId.eq(order.id)).filter(pl::Column::Tender.eq(Tender::Card.code())).count(&s.db).await?;
        if cards == 0 {
            return Ok(StageEnd::Skipped("The order has no card payment; nothing to capture.".into()));
        }
        return Ok(StageEnd::Failed(format!("{} has no open card authorization; take a new payment on the order, then resume.", order.number)));
    };
    if auth.expires_at <= s.now() {
        return Ok(StageEnd::Failed(format!(
            "The authorization expired on {} and cannot be captured (R-AUT-3); take a new payment on the order, then resume.",
            auth.expires_at.format("%Y-%m-%d")
        )));
    }
    let path = capture_path(&conditions(s, ctx, &auth).await?);
    let remaining = auth.amount_minor - auth.captured_minor;
    let amount = std::cmp::min(due, remaining);
    if amount <= 0 {
        return Ok(StageEnd::Failed("Nothing is left on the authorization to capture; take a new payment, then resume.".into()));
    }
    let msg = capture_message(&path, invoice, due, amount)?;
    // The tracking id is obtained from the connector first (R-CAP-5); then the chosen path, its
    // log lines and the request's intent commit together, durably, before the processor is called.
    let reference = match s.connector.payment_reference(Command::Capture, Money::from_minor(amount, cur)).await {
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
    ctx.marks.capture_path(path_text(&path));
    // The lease, the chosen path, this stage's start mark (and the previous stage's end) and the
    // log lines commit with the intent: without the lease, nothing is written and nothing is sent.
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok(StageEnd::LeaseLost);
    }
    txn.commit().await?;
    ctx.marks.committed();
    ctx.p.capture_path = Some(path_text(&path));
    send_capture(s, ctx, &req, &auth, attempt, matches!(path, CapturePath::Legacy(_))).await
}

/// The capture stage's first log line: the path, and what the card pays of the invoice.
pub(super) fn capture_message(path: &CapturePath, invoice: &inv::Model, due: i64, amount: i64) -> ServiceResult<String> {
    let cur = currency(&invoice.currency)?;
    let mut msg = format!("{}.", path_text(path));
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

async fn send_capture(s: &Services, ctx: &mut Ctx, req: &pr::Model, auth: &au::Model, attempt: i32, final_capture: bool) -> ServiceResult<StageEnd> {
    crate::crashpoint::hit("capture:intent");
    let result = call_capture(s, req, auth, final_capture).await;
    crate::crashpoint::hit("capture:sent");
    let resolution = resolve_capture(s, ctx.p.id, req, attempt, result).await?;
    record_capture(s, ctx, req, auth, resolution).await
}

/// Sends the capture of an intent already recorded.
pub(super) async fn call_capture(s: &Services, req: &pr::Model, auth: &au::Model, final_capture: bool) -> Result<crate::connector::Captured, ConnectorError> {
    let amount = Money::from_minor(req.amount_minor, Currency::stored(&req.currency).map_err(|e| ConnectorError::Invalid(e.to_string()))?);
    s.connector.capture(&req.tracking_id, &auth.processor_reference, amount, final_capture).await
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
    Ok(requests::resolve(s, &req.tracking_id, result, Outcome::Captured).await)
}

/// Records a capture's outcome with its effects in one transaction; a capture also adds to what
/// this run's process has captured.
pub(super) async fn record_capture(s: &Services, ctx: &mut Ctx, req: &pr::Model, auth: &au::Model, resolution: Resolution) -> ServiceResult<StageEnd> {
    let p = &ctx.p;
    let now = s.now();
    let txn = crate::service::begin_bookkeeping(&s.db).await?;
    let mut captured_now = 0;
    let end = match resolution {
        Resolution::Done(Outcome::Captured(c)) => {
            // The outcome first: only if this runner's write changed the request are its effects applied.
            requests::finish(&txn, req, RequestStatus::Succeeded, Some(c.reference.clone()), None, now).await?;
            captured_now = c.amount.minor();
            let a = for_update(au::Entity::find_by_id(auth.id), &txn).one(&txn).await?.ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
            let captured = a.captured_minor + c.amount.minor();
            let status = status_after_capture(&a, captured, c.authorization_closed);
            capture_row(&a, Some(p.invoice_id), &c, req, now).insert(&txn)
            .await?;
            au::Entity::update_many()
                .col_expr(au::Column::CapturedMinor, Expr::value(captured))
                .col_expr(au::Column::Status, Expr::value(status.code()))
                .filter(au::Column::Id.eq(a.id))
                .exec(&txn)
                .await?;
            pp::Entity::update_many()
                .col_expr(pp::Column::CapturedMinor, Expr::col(pp::Column::CapturedMinor).add(c.amount.minor()))
                .filter(pp::Column::Id.eq(p.id))
                .exec(&txn)
                .await?;
            if status == AuthorizationStatus::FullyCaptured {
                pl::Entity::update_many()
                    .col_expr(pl::Column::Status, Expr::value(crate::domain::order::PaymentStatus::Paid.code()))
                    .filter(pl::Column::Id.eq(a.payment_line_id))
                    .exec(&txn)
                    .await?;
            }
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
async fn refund(s: &Services, ctx: &Ctx, attempt: i32) -> ServiceResult<StageEnd> {
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
        let resolution = match requests::ask(s, &req.tracking_id).await {
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
        .filter(|c| c.amount_minor > c.refunded_minor)
        .collect();
    let refundable: i64 = caps.iter().map(|c| c.amount_minor - c.refunded_minor).sum();
    if refundable == 0 {
        return Ok(if done > 0 {
            StageEnd::Succeeded(format!("Refunded {}; nothing more was captured on the order.", Money::from_minor(done, cur)))
        } else {
            StageEnd::Skipped("Nothing captured on the order is left to refund; the credit stays on the customer's account.".into())
        });
    }
    let over_multiple = features::load(&s.db).await?.is_enabled(crate::Feature::RefundsOverMultipleCaptures);
    let amount = Ord::min(remaining, refundable);
    let mut plan: Vec<(cap::Model, i64)> = Vec::new();
    if over_multiple {
        let mut left = amount;
        for c in caps {
            if left == 0 {
                break;
            }
            let take = Ord::min(left, c.amount_minor - c.refunded_minor);
            left -= take;
            plan.push((c, take));
        }
    } else {
        match caps.into_iter().find(|c| c.amount_minor - c.refunded_minor >= amount) {
            Some(c) => plan.push((c, amount)),
            None => {
                return Ok(StageEnd::Failed(format!(
                    "No single capture can take back {}; turn on Refunds over multiple captures, or credit less, then resume (R-CAP-4).",
                    Money::from_minor(amount, cur)
                )))
            }
        }
    }
    if amount < remaining {
        log(
            &s.db,
            s.now(),
            p.id,
            stage,
            attempt,
            format!(
                "Only {} captured is left to refund; the other {} stays as credit on the customer's account.",
                Money::from_minor(amount, cur),
                Money::from_minor(remaining - amount, cur)
            ),
        )
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
        log(
            &s.db,
            s.now(),
            p.id,
            stage,
            attempt,
            format!("Refund of {} against capture {} requested with tracking id {}.", Money::from_minor(take, cur), c.processor_reference, req.tracking_id),
        )
        .await?;
        let resolution = send_refund(s, &req).await?;
        if let Some(failure) = record_refund(s, &req, resolution).await? {
            return Ok(StageEnd::Failed(failure));
        }
    }
    let total = refunded_by(&s.db, p.id).await?;
    Ok(StageEnd::Succeeded(format!("Refunded {} for {}.", Money::from_minor(total, cur), invoice.number)))
}

async fn send_refund(s: &Services, req: &pr::Model) -> ServiceResult<Resolution> {
    let c = cap::Entity::find_by_id(req.capture_id.unwrap_or_default()).one(&s.db).await?.ok_or_else(|| ServiceError::NotFound("capture of the refund".into()))?;
    let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
    crate::crashpoint::hit("refund:intent");
    let result = s.connector.refund(&req.tracking_id, &c.processor_reference, amount).await;
    crate::crashpoint::hit("refund:sent");
    Ok(requests::resolve(s, &req.tracking_id, result, Outcome::Refunded).await)
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
async fn record_refund(s: &Services, req: &pr::Model, resolution: Resolution) -> ServiceResult<Option<String>> {
    let now = s.now();
    let txn = crate::service::begin_bookkeeping(&s.db).await?;
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

/// Stage 3: post the customer payment journal for what stage 2 captured or refunded (once per process).
pub(super) async fn payment_journal(s: &Services, ctx: &mut Ctx) -> ServiceResult<StageEnd> {
    if ctx.is_credit() {
        return refund_journal(s, ctx).await;
    }
    let p = &ctx.p;
    if p.captured_minor == 0 {
        return Ok(StageEnd::Skipped("Nothing was captured, so there is no payment to post.".into()));
    }
    let invoice = &ctx.invoice;
    let amount = Money::from_minor(p.captured_minor, currency(&invoice.currency)?);
    let process_id = p.id;
    let txn = crate::service::begin_bookkeeping(&s.db).await?;
    // The injected fault is drawn (and a use of it consumed) in the journal's transaction.
    if crate::connector::faults::fire(&txn, "journal").await?.error_before {
        txn.commit().await?;
        return Ok(StageEnd::Failed("The payment journal could not be posted (injected fault). Resume posts it; the card is not captured again.".into()));
    }
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok(StageEnd::LeaseLost);
    }
    let (posting, lines) = payment_posting(ctx)?;
    let posted = if ctx.fresh.is_some() {
        super::post_new_journal(&txn, s.now(), posting, lines).await.map(Some)?
    } else {
        post_journal(&txn, s.now(), posting, lines).await?
    };
    txn.commit().await?;
    ctx.marks.committed();
    Ok(match posted {
        Some(j) => StageEnd::Succeeded(journal_posted(&j, amount)),
        None => StageEnd::Succeeded("The payment journal had already been posted.".into()),
    })
}

/// The customer payment journal of what the process captured (debit card clearing, credit
/// receivable), posted once per process.
pub(super) fn payment_posting(ctx: &Ctx) -> ServiceResult<(Posting, Vec<JournalLine>)> {
    let (p, invoice, order) = (&ctx.p, &ctx.invoice, &ctx.order);
    let amount = Money::from_minor(p.captured_minor, currency(&invoice.currency)?);
    let posting = Posting {
        invoice_id: Some(p.invoice_id),
        tender: Some(Tender::Card),
        ..Posting::for_order(order, format!("payment:process:{}", p.id), JournalKind::CustomerPayment, format!("Card payment for {} ({})", invoice.number, order.number))
    };
    Ok((posting, vec![JournalLine::debit(accounts::CARD_CLEARING, amount), JournalLine::credit(accounts::ACCOUNTS_RECEIVABLE, amount)]))
}

pub(super) fn journal_posted(j: &crate::entity::journal::Model, amount: Money) -> String {
    format!("Posted payment journal {} for {amount}: debit {}, credit {}.", j.number, accounts::CARD_CLEARING, accounts::ACCOUNTS_RECEIVABLE)
}

/// How stage 4 ends for an order with nothing left to invoice.
pub(super) const FULLY_INVOICED: &str = "The order is fully invoiced; nothing remains to authorize.";

/// Stage 3 of a credit note: the refund payment journal (debit receivable, credit card clearing).
async fn refund_journal(s: &Services, ctx: &mut Ctx) -> ServiceResult<StageEnd> {
    let p = &ctx.p;
    let refunded = refunded_by(&s.db, p.id).await?;
    if refunded == 0 {
        return Ok(StageEnd::Skipped("Nothing was refunded, so there is no refund to post.".into()));
    }
    let fired = crate::connector::faults::fire_alone(&s.db, "journal").await?;
    if fired.error_before {
        return Ok(StageEnd::Failed("The refund journal could not be posted (injected fault). Resume posts it; the card is not refunded again.".into()));
    }
    let (invoice, order) = (&ctx.invoice, &ctx.order);
    let amount = Money::from_minor(refunded, currency(&invoice.currency)?);
    let process_id = p.id;
    let txn = crate::service::begin_bookkeeping(&s.db).await?;
    if !ctx.marks.flush(s, &txn, process_id).await? {
        txn.rollback().await?;
        return Ok(StageEnd::LeaseLost);
    }
    let posted = post_journal(
        &txn,
        s.now(),
        Posting {
            invoice_id: Some(p.invoice_id),
            tender: Some(Tender::Card),
            ..Posting::for_order(order, format!("payment:process:{}", p.id), JournalKind::RefundPayment, format!("Card refund for {} ({})", invoice.number, order.number))
        },
        vec![JournalLine::debit(accounts::ACCOUNTS_RECEIVABLE, amount), JournalLine::credit(accounts::CARD_CLEARING, amount)],
    )
    .await?;
    txn.commit().await?;
    ctx.marks.committed();
    Ok(match posted {
        Some(j) => StageEnd::Succeeded(format!("Posted refund journal {} for {amount}: debit {}, credit {}.", j.number, accounts::ACCOUNTS_RECEIVABLE, accounts::CARD_CLEARING)),
        None => StageEnd::Succeeded("The refund journal had already been posted.".into()),
    })
}

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
                let resolution = match requests::ask(s, &req.tracking_id).await {
                    Resolution::NotProcessed(why) => {
                        log_relaxed(s, p.id, stage, attempt, format!("{why}; sending the authorization again with the same tracking id.")).await?;
                        let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
                        crate::crashpoint::hit("authorize:intent");
                        let result = s.connector.authorize(&req.tracking_id, line.card_token.as_deref().unwrap_or_default(), amount).await;
                        crate::crashpoint::hit("authorize:sent");
                        requests::resolve(s, &req.tracking_id, result, Outcome::Authorized).await
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
    let unapplied = crate::service::prepayments::unapplied_deposit(&s.db, order).await?;
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
    let incremental = p.capture_path.as_deref().is_some_and(|t| t.starts_with("Incremental"));
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
    let result = s.connector.authorize(&req.tracking_id, line.card_token.as_deref().unwrap_or_default(), amount).await;
    crate::crashpoint::hit("authorize:sent");
    let resolution = requests::resolve(s, &req.tracking_id, result, Outcome::Authorized).await;
    finish_authorization(s, &req, &line, resolution).await
}

async fn finish_authorization(s: &Services, req: &pr::Model, line: &pl::Model, resolution: Resolution) -> ServiceResult<StageEnd> {
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
        let resolution = requests::ask(s, &req.tracking_id).await;
        if matches!(resolution, Resolution::Unknown(_)) {
            continue;
        }
        orders::record_authorization(s, &req, &line, resolution, req.authorization_id).await?;
        n += 1;
    }
    Ok(n)
}
