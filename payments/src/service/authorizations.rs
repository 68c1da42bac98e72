//! Authorization management (R-AUT-5) and the authorization changes users make: taking a new
//! payment on an order whose authorization expired or was declined (the order leaves Do not
//! process), the manual void of expired lines (R-AUT-5, feature-gated, audited), and the
//! adjustment of an authorization when its payment line is edited (R-AUT-2). Every processor call
//! is preceded by its durable intent and followed by its outcome (R-CAP-5).
use super::card_payments::{self, CardForm};
use crate::ledger::orders;
use super::expiry::{overlay_at, payment_status_is, settle, watermark, Overlay, Watermark};
use super::{audit, parameters, Services};
use crate::connector::Outcome;
use crate::domain::money::{Currency, Money};
use crate::domain::order::{AuthorizationStatus, Command, OrderStatus, PaymentStatus, RequestStatus, Tender};
use crate::domain::payment_views::*;
use crate::domain::tokens::{self, OrderKind, TokenContext, TokenKind};
use crate::domain::views::ChannelKind;
use crate::entity::{
    authorization as au, channel, customer, payment_line as pl, pre_authorization_duration as pad, processor_request as pr, sales_order as so,
    token_consent,
};
use crate::error::{AuthorizationError, ProcessorAction, ProcessorError, ServiceError, ServiceResult};
use crate::ledger::requests::{self, Purpose, Resolution};
use crate::Feature;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait};

pub const PAGE_SIZE: u64 = 25;

/// The status filter's choices: a payment status code, or `expired` for lines whose latest
/// authorization has expired.
pub const EXPIRED_FILTER: &str = "expired";

fn currency(code: &str) -> ServiceResult<Currency> {
    Ok(Currency::stored(code)?)
}

fn response_view(a: &au::Model, now: chrono::DateTime<chrono::Utc>, expiry: &Overlay) -> ServiceResult<AuthorizationResponseView> {
    let cur = currency(&a.currency)?;
    let status = expiry.authorization_status(a);
    Ok(AuthorizationResponseView {
        id: a.id,
        status,
        amount: Money::from_minor(a.amount_minor, cur),
        captured: Money::from_minor(a.captured_minor, cur),
        processor_reference: a.processor_reference.clone(),
        tracking_id: a.tracking_id.clone(),
        supports_multiple_captures: a.supports_multiple_captures,
        payment_method_variant: a.payment_method_variant.clone(),
        authorized_at: a.authorized_at,
        expires_at: a.expires_at,
        expired: status == AuthorizationStatus::Expired || (status == AuthorizationStatus::Open && a.expires_at <= now),
    })
}

/// The line's row, and the expiry overlay of its order it was read with.
async fn row(db: &impl ConnectionTrait, line: &pl::Model, now: chrono::DateTime<chrono::Utc>, wm: Watermark) -> ServiceResult<(AuthorizationRow, Overlay)> {
    let order = orders::find(db, line.order_id).await?;
    let expiry = overlay_at(db, &order, wm).await?;
    let cust = customer::Entity::find_by_id(order.customer_id).one(db).await?;
    let chan = channel::Entity::find_by_id(order.channel_id).one(db).await?;
    let latest = au::Entity::find().filter(au::Column::PaymentLineId.eq(line.id)).order_by_desc(au::Column::Id).one(db).await?;
    let row = AuthorizationRow {
        payment_line_id: line.id,
        order_id: order.id,
        order_number: order.number.clone(),
        order_status: OrderStatus::from_code(&order.status).unwrap_or(OrderStatus::Open),
        do_not_process: expiry.do_not_process(&order),
        customer_account: cust.as_ref().map(|c| c.account.clone()).unwrap_or_default(),
        customer_name: cust.map(|c| c.name).unwrap_or_default(),
        channel_id: order.channel_id,
        channel_name: chan.map(|c| c.name).unwrap_or_default(),
        amount: Money::from_minor(line.amount_minor, currency(&order.currency)?),
        payment_status: expiry.payment_status(line),
        token_kind: TokenKind::from_code(&line.token_kind).unwrap_or(TokenKind::Recurring),
        card: format!("{} •••• {}", line.card_type.clone().unwrap_or_default(), line.last_four.clone().unwrap_or_default()),
        authorization: latest.as_ref().map(|a| response_view(a, now, &expiry)).transpose()?,
    };
    Ok((row, expiry))
}

/// Card payment lines, newest first, filtered by payment status (or `expired`), with paging.
/// Statuses are those with expiry applied (`service::expiry`).
pub async fn list(s: &Services, status: &str, page: u64) -> ServiceResult<AuthorizationPage> {
    let now = s.now();
    let wm = watermark(&s.db).await?;
    let mut q = pl::Entity::find().filter(pl::Column::Tender.eq(Tender::Card.code())).order_by_desc(pl::Column::Id);
    match status.trim() {
        "" => {}
        EXPIRED_FILTER => {
            // Lines with an authorization past its expiry: expired by the job, or open and past
            // `expires_at` by the clock (the job has not run since).
            q = q.filter(Expr::cust_with_values(
                format!(
                    "EXISTS (SELECT 1 FROM authorizations x WHERE x.payment_line_id = payment_lines.id \
                     AND (x.status = '{expired}' OR (x.status = '{open}' AND x.expires_at <= {param})))",
                    param = if s.db.get_database_backend() == sea_orm::DbBackend::Postgres { "$1" } else { "?" },
                    expired = AuthorizationStatus::Expired.code(),
                    open = AuthorizationStatus::Open.code()
                ),
                [now],
            ));
        }
        code => {
            let st = PaymentStatus::from_code(code).ok_or_else(|| ServiceError::field("status", format!("There is no payment status \"{code}\".")))?;
            q = q.filter(payment_status_is(s.db.get_database_backend(), st, wm));
        }
    }
    let paginator = q.paginate(&s.db, PAGE_SIZE);
    let total = paginator.num_items().await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let mut rows = Vec::new();
    for line in paginator.fetch_page(page - 1).await? {
        rows.push(row(&s.db, &line, now, wm).await?.0);
    }
    Ok(AuthorizationPage { rows, page, pages, total })
}

async fn card_line(db: &impl ConnectionTrait, id: i32) -> ServiceResult<pl::Model> {
    pl::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|l| l.tender == Tender::Card.code())
        .ok_or_else(|| ServiceError::NotFound(format!("There is no card payment line with id {id}.")))
}

fn void_refusal(features: &crate::domain::features::FeatureSet, row: &AuthorizationRow) -> Option<String> {
    if !features.is_enabled(Feature::ManualVoidOfExpiredLines) {
        return Some("Manual void needs the feature \"Enable manual void of expired credit card payment lines when authorizations are expired\".".into());
    }
    match &row.authorization {
        Some(a) if a.expired && a.status != AuthorizationStatus::Voided => None,
        Some(a) if a.status == AuthorizationStatus::Voided => Some("The authorization is already voided.".into()),
        _ => Some("Only a line whose authorization has expired can be voided by hand.".into()),
    }
}

pub async fn detail(s: &Services, payment_line_id: i32) -> ServiceResult<AuthorizationDetail> {
    let now = s.now();
    let line = card_line(&s.db, payment_line_id).await?;
    let wm = watermark(&s.db).await?;
    let (row, expiry) = row(&s.db, &line, now, wm).await?;
    let order = orders::find(&s.db, line.order_id).await?;
    let responses: Vec<AuthorizationResponseView> = au::Entity::find()
        .filter(au::Column::PaymentLineId.eq(line.id))
        .order_by_desc(au::Column::Id)
        .all(&s.db)
        .await?
        .iter()
        .map(|a| response_view(a, now, &expiry))
        .collect::<ServiceResult<_>>()?;
    let variant = responses.first().map(|r| r.payment_method_variant.clone()).unwrap_or_default();
    let pre = pad::Entity::find_by_id((order.channel_id, variant)).one(&s.db).await?.map(|d| d.days.max(1) as u32);
    let consents = token_consent::Entity::find()
        .filter(token_consent::Column::OrderId.eq(order.id))
        .order_by_asc(token_consent::Column::Id)
        .all(&s.db)
        .await?
        .into_iter()
        .map(|c| ConsentView { kind: c.kind, text_shown: c.text_shown, given_by: c.given_by, given_at: c.given_at })
        .collect();
    let features = super::features::load(&s.db).await?;
    Ok(AuthorizationDetail {
        void_refusal: void_refusal(&features, &row),
        row,
        holder: line.holder.unwrap_or_default(),
        expiry: line.expiry.unwrap_or_default(),
        responses,
        pre_authorization_days: pre,
        ar_days_before_expired: parameters::load(&s.db).await?.days_before_expired(),
        consents,
        balance: orders::balance(&s.db, &order).await?,
    })
}

/// What a new payment on an order must cover: the balance left to invoice less what open,
/// unexpired authorizations still hold.
async fn uncovered(s: &Services, order: &so::Model) -> ServiceResult<Money> {
    let balance = orders::balance(&s.db, order).await?;
    let now = s.now();
    let covered: i64 = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .all(&s.db)
        .await?
        .iter()
        .filter(|a| a.expires_at > now)
        .map(|a| a.amount_minor - a.captured_minor)
        .sum();
    Ok(Money::from_minor((balance.minor() - covered).max(0), balance.currency()))
}

/// Takes a new card payment for what an order still needs authorized (R-AUT-4/5): the card lines
/// left Pending Authorization, Declined or Voided are marked Replaced, the new line is authorized,
/// and on approval the order leaves Do not process. The token rules of the order's channel apply.
pub async fn new_payment(
    s: &Services,
    actor: &str,
    order_id: i32,
    card: &CardForm,
    saved_card_id: &str,
    confirmed: &str,
) -> ServiceResult<PlacedOrder> {
    let order = orders::find(&s.db, order_id).await?;
    let amount = uncovered(s, &order).await?;
    if amount.minor() == 0 {
        return Err(AuthorizationError::NothingToCover { order: order.number }.into());
    }
    let chan = channel::Entity::find_by_id(order.channel_id)
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::StoredData(format!("order {} names channel {}, which does not exist", order.number, order.channel_id)))?;
    let conn = card_payments::connector_for_channel(&s.db, &chan).await?;
    let card = if saved_card_id.trim().is_empty() { crate::service::cards::verified(s, Some(conn.id), card).await? } else { CardForm::default() };
    let chosen = card_payments::chosen_card(&s.db, saved_card_id, &card, order.customer_id, &conn).await?;
    if chosen.saved.is_none() {
        crate::service::cards::check_card(&card)?;
    }
    let channel_kind = ChannelKind::from_code(&chan.kind).unwrap_or(ChannelKind::PosStore);
    let today = s.now().date_naive();
    let latest_ship = orders::open_ship_dates(&s.db, order.id).await?.into_iter().max().unwrap_or(today);
    let (features, params) = super::features::load_with_parameters(&s.db).await?;
    let decision = tokens::decide(&TokenContext {
        channel: channel_kind,
        order_kind: OrderKind::from_code(&order.order_kind).unwrap_or(OrderKind::CustomerOrder),
        nonrecurring_in_effect: features.nonrecurring_tokens_in_effect(),
        latest_ship_date: latest_ship,
        today,
        min_days_for_storing_token: params.min_order_processing_days_for_storing_card_token(),
        always_store_token: params.always_store_card_token_on_order_balance_authorization(),
        future_order: false,
        saved_card: chosen.saved.is_some(),
        save_requested: false,
    });
    if let Some(c) = decision.confirmation {
        if confirmed.trim() != c.code() {
            return Err(ServiceError::ConfirmationRequired(c));
        }
    }
    let now = s.now();
    let txn = s.db.begin().await?;
    // Expiry is stored on the order's rows first, so the lines it moved are replaced below and the
    // audit shows the hold the new payment releases.
    let order = super::for_update(so::Entity::find_by_id(order.id), &txn).one(&txn).await?.unwrap_or(order);
    let order = settle(&txn, order).await?;
    let replaced = pl::Entity::update_many()
        .col_expr(pl::Column::Status, Expr::value(PaymentStatus::Replaced.code()))
        .filter(pl::Column::OrderId.eq(order.id))
        .filter(pl::Column::Tender.eq(Tender::Card.code()))
        .filter(pl::Column::Status.is_in([PaymentStatus::PendingAuthorization.code(), PaymentStatus::Declined.code(), PaymentStatus::Voided.code()]))
        .exec(&txn)
        .await?
        .rows_affected;
    let kind = if decision.kind == TokenKind::None { TokenKind::Nonrecurring } else { decision.kind };
    let line = card_payments::insert_card_line(&txn, order.id, amount, conn.id, &chosen.card, kind, chosen.saved.as_ref().map(|c| c.id), now).await?;
    if let Some(c) = decision.confirmation {
        card_payments::record_confirmation(&txn, now, actor, order.id, Some(line.id), c).await?;
    }
    audit::record(
        &txn,
        now,
        actor,
        "order.new_payment",
        &order.number,
        Some(serde_json::json!({ "do_not_process": order.do_not_process, "replaced_lines": replaced })),
        Some(serde_json::json!({ "amount": amount.to_string(), "payment_line": line.id })),
    )
    .await?;
    txn.commit().await?;
    let (payment_status, message) = card_payments::authorize_payment_line(s, &line, amount, None).await?;
    if payment_status == PaymentStatus::Authorized {
        release_hold(s, order.id).await?;
    }
    Ok(PlacedOrder { order_id: order.id, number: order.number, payment_status, message })
}

/// The order leaves Do not process once an authorization covers it again.
pub(crate) async fn release_hold(s: &Services, order_id: i32) -> ServiceResult<()> {
    so::Entity::update_many()
        .col_expr(so::Column::DoNotProcess, Expr::value(false))
        .filter(so::Column::Id.eq(order_id))
        .exec(&s.db)
        .await?;
    Ok(())
}

/// R-AUT-5: voids the expired authorization of a payment line at the processor, by hand, when the
/// manual-void feature is on. The line and its authorization become Voided; audited.
pub async fn void_expired(s: &Services, actor: &str, payment_line_id: i32) -> ServiceResult<String> {
    let d = detail(s, payment_line_id).await?;
    if let Some(why) = d.void_refusal {
        return Err(AuthorizationError::VoidNotAllowed(why).into());
    }
    // Expiry is stored first: the order stays held after the void, until a new payment is taken.
    let txn = s.db.begin().await?;
    if let Some(order) = super::for_update(so::Entity::find_by_id(d.row.order_id), &txn).one(&txn).await? {
        settle(&txn, order).await?;
    }
    txn.commit().await?;
    let auth = au::Entity::find_by_id(d.row.authorization.as_ref().map(|a| a.id).unwrap_or_default())
        .one(&s.db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
    let audit_entry = Audit {
        actor: actor.to_string(),
        action: "authorization.void",
        target: d.row.order_number.clone(),
        before: serde_json::json!({ "payment_line": payment_line_id, "authorization": auth.processor_reference, "status": auth.status }),
    };
    let left = release(s, &auth, PaymentStatus::Voided, Some(audit_entry)).await?;
    Ok(format!("The expired authorization {} of {} was voided; {left} released.", auth.processor_reference, d.row.order_number))
}

/// An audit entry written with the outcome of a release.
pub(crate) struct Audit {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub before: serde_json::Value,
}

/// Voids what is left on an authorization through the processor (intent, call, outcome) and marks
/// it voided and its payment line `line_status`, in one transaction with the audit entry if any.
/// Returns the amount released.
pub(crate) async fn release(s: &Services, auth: &au::Model, line_status: PaymentStatus, audit_entry: Option<Audit>) -> ServiceResult<Money> {
    let cur = currency(&auth.currency)?;
    let left = Money::from_minor(auth.amount_minor - auth.captured_minor, cur);
    let purpose = Purpose { order_id: auth.order_id, authorization_id: Some(auth.id), process: None, capture_id: None };
    let req = requests::begin(s, auth.connector_id, Command::Void, left, purpose)
        .await
        .map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::Void, reason: e.to_string() })?;
    send_void(s, &req, auth, line_status, audit_entry).await
}

/// Sends the void whose intent `req` is already written (by [`release`], or by a caller that
/// claimed it under a lock) and applies the answer. Returns the amount released.
pub(crate) async fn send_void(s: &Services, req: &pr::Model, auth: &au::Model, line_status: PaymentStatus, audit_entry: Option<Audit>) -> ServiceResult<Money> {
    let req = req.clone();
    let result = s.processor(req.connector_id).void(&req.tracking_id, &auth.processor_reference).await;
    let resolution = requests::resolve(s, &req, result, |_| Outcome::Voided { reference: auth.processor_reference.clone() }).await;
    apply_void(s, &req, auth, resolution, line_status, audit_entry).await
}

/// Applies the answer to a void request: the authorization Voided and its payment line
/// `line_status` (with the audit entry, if any) in one transaction, or the refusal recorded.
/// Shared by [`release`] and recovery ([`resolve_lost_answers`]). Returns the amount released.
async fn apply_void(s: &Services, req: &pr::Model, auth: &au::Model, resolution: Resolution, line_status: PaymentStatus, audit_entry: Option<Audit>) -> ServiceResult<Money> {
    let req = req.clone();
    let left = Money::from_minor(auth.amount_minor - auth.captured_minor, currency(&auth.currency)?);
    let now = s.now();
    let txn = s.db.begin().await?;
    let (status, message) = match resolution {
        // A processor that already let the authorization lapse has nothing left to release.
        Resolution::Done(Outcome::Voided { .. }) => (RequestStatus::Succeeded, None),
        Resolution::Done(Outcome::Declined { code, message }) if code == "authorization_closed" => (RequestStatus::Succeeded, Some(message)),
        Resolution::Done(Outcome::Declined { code, message }) => {
            requests::finish(&txn, &req, RequestStatus::Declined, None, Some(format!("{code}: {message}")), now).await?;
            txn.commit().await?;
            return Err(ProcessorError::Refused { action: ProcessorAction::Void, message }.into());
        }
        Resolution::Done(other) => {
            requests::finish(&txn, &req, RequestStatus::Failed, None, Some(format!("unexpected answer {other:?}")), now).await?;
            txn.commit().await?;
            return Err(ProcessorError::UnexpectedAnswer { action: ProcessorAction::Void }.into());
        }
        Resolution::NotProcessed(m) => {
            requests::finish(&txn, &req, RequestStatus::Failed, None, Some(m.clone()), now).await?;
            txn.commit().await?;
            return Err(ProcessorError::NotProcessed { action: ProcessorAction::Void, message: m }.into());
        }
        Resolution::Unknown(m) => {
            requests::finish(&txn, &req, RequestStatus::Unknown, None, Some(m.clone()), now).await?;
            txn.commit().await?;
            return Err(ProcessorError::OutcomeUnknown { action: ProcessorAction::Void, message: m }.into());
        }
    };
    requests::finish(&txn, &req, status, Some(auth.processor_reference.clone()), message, now).await?;
    set_statuses(&txn, auth.id, AuthorizationStatus::Voided, auth.payment_line_id, line_status).await?;
    if let Some(a) = audit_entry {
        audit::record(
            &txn,
            now,
            &a.actor,
            a.action,
            &a.target,
            Some(a.before),
            Some(serde_json::json!({ "status": AuthorizationStatus::Voided.code(), "released": left.to_string(), "tracking_id": req.tracking_id })),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(left)
}

async fn set_statuses(
    db: &impl ConnectionTrait,
    authorization_id: i32,
    authorization: AuthorizationStatus,
    payment_line_id: i32,
    payment: PaymentStatus,
) -> Result<(), sea_orm::DbErr> {
    au::Entity::update_many()
        .col_expr(au::Column::Status, Expr::value(authorization.code()))
        .filter(au::Column::Id.eq(authorization_id))
        .exec(db)
        .await?;
    pl::Entity::update_many()
        .col_expr(pl::Column::Status, Expr::value(payment.code()))
        .filter(pl::Column::Id.eq(payment_line_id))
        .exec(db)
        .await?;
    Ok(())
}

/// R-AUT-2: editing an authorized payment line's amount asks the processor to adjust the original
/// authorization. Approved → the authorization and the line carry the new amount. Declined → the
/// original is considered declined, the order is held and a new payment is required.
pub async fn adjust(s: &Services, actor: &str, payment_line_id: i32, raw_amount: &str) -> ServiceResult<String> {
    let line = card_line(&s.db, payment_line_id).await?;
    let order = orders::find(&s.db, line.order_id).await?;
    let cur = currency(&order.currency)?;
    let amount = Money::parse(raw_amount, cur)
        .ok()
        .filter(|m| m.minor() > 0)
        .ok_or_else(|| ServiceError::field("amount", format!("Enter an amount above 0 with at most {} decimals, at most {}.", cur.minor_digits(), cur.ceiling())))?;
    let now = s.now();
    let auth = au::Entity::find()
        .filter(au::Column::PaymentLineId.eq(line.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .order_by_desc(au::Column::Id)
        .one(&s.db)
        .await?
        .filter(|a| a.expires_at > now && line.status == PaymentStatus::Authorized.code())
        .ok_or(AuthorizationError::NotAdjustable)?;
    adjust_open(s, actor, &auth, &line, &order, amount).await
}

/// Asks the processor to adjust open authorization `auth` to `amount` (R-AUT-2), as [`adjust`]
/// does for the authorization of a payment line; Authorization exposure uses it to give up what
/// an order does not need.
/// The adjustment's intent is written by the caller, which claimed it under a lock (`req`).
pub(crate) async fn adjust_authorization(s: &Services, actor: &str, req: &pr::Model, auth: &au::Model) -> ServiceResult<String> {
    let line = card_line(&s.db, auth.payment_line_id).await?;
    let order = orders::find(&s.db, auth.order_id).await?;
    let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
    send_adjust(s, actor, req, auth, &line, &order, amount).await
}

async fn adjust_open(s: &Services, actor: &str, auth: &au::Model, line: &pl::Model, order: &so::Model, amount: Money) -> ServiceResult<String> {
    let cur = amount.currency();
    if amount.minor() == auth.amount_minor {
        return Err(ServiceError::field("amount", "The amount is unchanged; nothing to adjust."));
    }
    if amount.minor() < auth.captured_minor {
        return Err(ServiceError::field(
            "amount",
            format!("{} is already captured on this authorization; the amount cannot go below it (R-CAP-4).", Money::from_minor(auth.captured_minor, cur)),
        ));
    }
    let purpose = Purpose { order_id: order.id, authorization_id: Some(auth.id), process: None, capture_id: None };
    let req = requests::begin(s, auth.connector_id, Command::Adjust, amount, purpose)
        .await
        .map_err(|e| ProcessorError::NotStarted { action: ProcessorAction::Adjustment, reason: e.to_string() })?;
    send_adjust(s, actor, &req, auth, line, order, amount).await
}

async fn send_adjust(s: &Services, actor: &str, req: &pr::Model, auth: &au::Model, line: &pl::Model, order: &so::Model, amount: Money) -> ServiceResult<String> {
    let result = s.processor(req.connector_id).adjust_authorization(&req.tracking_id, &auth.processor_reference, amount).await;
    let resolution = requests::resolve(s, req, result, Outcome::Adjusted).await;
    apply_adjust(s, actor, req, auth, line, order, amount, resolution).await
}

/// Applies the answer to an adjustment request (R-AUT-2): approved, the authorization and the line
/// carry `amount`; declined, both are declined and the order held; otherwise the refusal is
/// recorded. Shared by [`adjust`] and recovery ([`resolve_lost_answers`]).
#[expect(clippy::too_many_arguments, reason = "an adjustment's answer applied with the rows it was asked for")]
async fn apply_adjust(
    s: &Services,
    actor: &str,
    req: &pr::Model,
    auth: &au::Model,
    line: &pl::Model,
    order: &so::Model,
    amount: Money,
    resolution: Resolution,
) -> ServiceResult<String> {
    let (req, auth) = (req.clone(), auth.clone());
    let cur = amount.currency();
    let now = s.now();
    let before = serde_json::json!({ "amount": Money::from_minor(auth.amount_minor, cur).to_string(), "authorization": auth.processor_reference });
    let txn = s.db.begin().await?;
    let out = match resolution {
        Resolution::Done(Outcome::Adjusted(a)) | Resolution::Done(Outcome::Authorized(a)) => {
            requests::finish(&txn, &req, RequestStatus::Succeeded, Some(a.reference.clone()), None, now).await?;
            au::Entity::update_many()
                .col_expr(au::Column::AmountMinor, Expr::value(amount.minor()))
                .filter(au::Column::Id.eq(auth.id))
                .exec(&txn)
                .await?;
            pl::Entity::update_many()
                .col_expr(pl::Column::AmountMinor, Expr::value(amount.minor()))
                .filter(pl::Column::Id.eq(line.id))
                .exec(&txn)
                .await?;
            audit::record(&txn, now, actor, "authorization.adjust", &order.number, Some(before), Some(serde_json::json!({ "amount": amount.to_string(), "approved": true }))).await?;
            Ok(format!("The authorization was adjusted to {amount}."))
        }
        Resolution::Done(Outcome::Declined { code, message }) => {
            requests::finish(&txn, &req, RequestStatus::Declined, None, Some(format!("{code}: {message}")), now).await?;
            set_statuses(&txn, auth.id, AuthorizationStatus::Declined, line.id, PaymentStatus::Declined).await?;
            so::Entity::update_many()
                .col_expr(so::Column::DoNotProcess, Expr::value(true))
                .filter(so::Column::Id.eq(order.id))
                .exec(&txn)
                .await?;
            audit::record(&txn, now, actor, "authorization.adjust", &order.number, Some(before), Some(serde_json::json!({ "amount": amount.to_string(), "approved": false, "message": message }))).await?;
            Ok(format!(
                "The processor declined the adjustment ({message}); the original authorization is considered declined and the order is on hold until a new payment is taken."
            ))
        }
        Resolution::Done(other) => {
            requests::finish(&txn, &req, RequestStatus::Failed, None, Some(format!("unexpected answer {other:?}")), now).await?;
            Err(ProcessorError::UnexpectedAnswer { action: ProcessorAction::Adjustment }.into())
        }
        Resolution::NotProcessed(m) => {
            requests::finish(&txn, &req, RequestStatus::Failed, None, Some(m.clone()), now).await?;
            Err(ProcessorError::NotProcessed { action: ProcessorAction::Adjustment, message: m }.into())
        }
        Resolution::Unknown(m) => {
            requests::finish(&txn, &req, RequestStatus::Unknown, None, Some(m.clone()), now).await?;
            Err(ProcessorError::OutcomeUnknown { action: ProcessorAction::Adjustment, message: m }.into())
        }
    };
    txn.commit().await?;
    out
}

/// Asks the processor about voids and authorization adjustments whose answer was lost (a timeout,
/// a crash after the call) and applies it as the user's request would have been applied (R-CAP-5,
/// issue #39 item 3): a lost void no longer blocks the order's cancellation for ever. Only requests
/// older than the lease are taken, so a request still in flight is left to its runner; the
/// outcome is written only over an open request, so two runners never both apply it. A void's
/// payment line becomes Paid when something was captured on the authorization, else Voided.
/// Returns how many requests it resolved.
pub async fn resolve_lost_answers(s: &Services, batch: u64) -> ServiceResult<u32> {
    let open = requests::unanswered(&s.db, &[Command::Void, Command::Adjust], s.now() - s.lease, batch).await?;
    let mut resolved = 0;
    for req in open {
        let resolution = requests::ask(s, &req).await;
        if matches!(resolution, Resolution::Unknown(_)) {
            continue;
        }
        let auth = au::Entity::find_by_id(req.authorization_id.unwrap_or_default())
            .one(&s.db)
            .await?
            .ok_or_else(|| ServiceError::StoredData(format!("processor request {} names no authorization", req.tracking_id)))?;
        let applied = if req.command == Command::Void.code() {
            let line_status = if auth.captured_minor > 0 { PaymentStatus::Paid } else { PaymentStatus::Voided };
            let order = orders::find(&s.db, auth.order_id).await?;
            let audit_entry = Audit {
                actor: "recovery".into(),
                action: "authorization.void",
                target: order.number,
                before: serde_json::json!({ "authorization": auth.processor_reference, "status": auth.status, "tracking_id": req.tracking_id }),
            };
            apply_void(s, &req, &auth, resolution, line_status, Some(audit_entry)).await.map(|_| ())
        } else {
            let line = card_line(&s.db, auth.payment_line_id).await?;
            let order = orders::find(&s.db, auth.order_id).await?;
            let amount = Money::from_minor(req.amount_minor, currency(&req.currency)?);
            apply_adjust(s, "recovery", &req, &auth, &line, &order, amount, resolution).await.map(|_| ())
        };
        match applied {
            // Recorded either way: approved, or refused with the processor's reason.
            Ok(()) => resolved += 1,
            Err(ServiceError::Processor(e)) if e.is_final_answer() => resolved += 1,
            Err(ServiceError::AlreadyRecorded(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}
