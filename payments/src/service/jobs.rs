//! Background jobs of the authorization lifecycle. Both are idempotent and safe to run on two
//! servers at once. Expiry is one short transaction that moves the expiry watermark
//! (`service::expiry`); resubmit works in bounded batches of payment lines and claims each line
//! under lock with its processor intent, so a crash loses nothing and processes nothing twice.
use crate::domain::order::{AuthorizationStatus, PaymentStatus};
use crate::domain::views::ChannelKind;
use crate::error::ServiceResult;
use crate::service::{audit, Services};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};
use serde::Serialize;

/// Payment lines looked at per batch by the resubmit job.
pub const RESUBMIT_BATCH: u64 = 200;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    /// Authorizations that expired with this run.
    pub expired: u64,
    /// Payment lines that returned to Pending Authorization.
    pub pending_authorization: u64,
    /// Online storefront payment lines that became Declined.
    pub declined: u64,
    /// Orders put on hold (Do not process).
    pub orders_held: u64,
    /// Runs that expired something (0 or 1).
    pub batches: u64,
}

/// R-AUT-3, R-AUT-4: expires every open authorization whose expiry has passed (by the injected
/// clock). Its payment line returns to Pending Authorization, or to Declined for an online
/// storefront order, and its order is held (Do not process), unless the line (or the order) still
/// has another open authorization that expires later. Fully captured, closed and voided
/// authorizations have nothing left to capture and are left alone.
///
/// The run moves the expiry watermark (`service::expiry`, migration 8) from where the last run
/// left it to now, in one short transaction: those states then hold for every reader, and each
/// order's rows take them when the order next changes. The report counts what this run expired,
/// found through the index of open authorizations by `expires_at`. Concurrent runs (two servers)
/// queue on the watermark's row, so each authorization is counted by exactly one run; a crash
/// before the commit leaves the watermark where it was and the next run does the same again.
pub async fn expire_authorizations(s: &Services) -> ServiceResult<ExpiryReport> {
    use crate::entity::expiry_watermark as ew;
    use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
    use sea_orm::{ActiveValue::Set, EntityTrait, QueryFilter, ColumnTrait};

    let now = s.now();
    let backend = s.db.get_database_backend();
    let txn = s.db.begin().await?;
    if backend == DbBackend::Postgres {
        // JIT compiles these simple statements at a cost above what it saves.
        txn.execute_unprepared("SET LOCAL jit = off").await?;
    }
    // First a write, so concurrent runs queue here (the row lock on PostgreSQL, the write lock on
    // SQLite) and each then reads the watermark the previous run left.
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    ew::Entity::insert(ew::ActiveModel { id: Set(1), expired_through: Set(epoch), runs: Set(0), updated_at: Set(now) })
        .on_conflict(OnConflict::column(ew::Column::Id).do_nothing().to_owned())
        .exec_without_returning(&txn)
        .await?;
    ew::Entity::update_many()
        .col_expr(ew::Column::Runs, Expr::col(ew::Column::Runs).add(1))
        .col_expr(ew::Column::UpdatedAt, Expr::value(now))
        .filter(ew::Column::Id.eq(1))
        .exec(&txn)
        .await?;
    let from = ew::Entity::find_by_id(1).one(&txn).await?.map(|w| w.expired_through).unwrap_or(epoch);
    if now <= from {
        txn.commit().await?;
        return Ok(ExpiryReport::default());
    }
    let open = AuthorizationStatus::Open.code();
    let online = ChannelKind::OnlineStore.code();
    // The authorizations of (from, now], the lines and orders they leave uncovered. "Uncovered":
    // no open authorization of the line (of the order) expires after now.
    let due = format!("SELECT {{col}} FROM authorizations WHERE status = '{open}' AND expires_at > ? AND expires_at <= ?");
    let uncovered = |owner_col: &str, owner: &str| {
        format!("NOT EXISTS (SELECT 1 FROM authorizations x WHERE x.{owner_col} = {owner} AND x.status = '{open}' AND x.expires_at > ?)")
    };
    let sql = format!(
        "SELECT
           (SELECT count(*) FROM authorizations WHERE status = '{open}' AND expires_at > ? AND expires_at <= ?) AS expired,
           (SELECT count(*) FROM payment_lines p JOIN sales_orders o ON o.id = p.order_id JOIN channels c ON c.id = o.channel_id
             WHERE p.status = '{authorized}' AND c.kind <> '{online}' AND p.id IN ({due_lines}) AND {line_uncovered}) AS pending,
           (SELECT count(*) FROM payment_lines p JOIN sales_orders o ON o.id = p.order_id JOIN channels c ON c.id = o.channel_id
             WHERE p.status = '{authorized}' AND c.kind = '{online}' AND p.id IN ({due_lines}) AND {line_uncovered}) AS declined,
           (SELECT count(*) FROM sales_orders o
             WHERE o.do_not_process = ? AND o.id IN ({due_orders}) AND {order_uncovered}) AS held",
        authorized = PaymentStatus::Authorized.code(),
        due_lines = due.replace("{col}", "payment_line_id"),
        due_orders = due.replace("{col}", "order_id"),
        line_uncovered = uncovered("payment_line_id", "p.id"),
        order_uncovered = uncovered("order_id", "o.id"),
    );
    // The statement is written with `?`; PostgreSQL numbers its parameters.
    let sql = if backend == DbBackend::Postgres {
        let mut n = 0;
        sql.split('?').enumerate().fold(String::new(), |mut out, (i, part)| {
            if i > 0 {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            out.push_str(part);
            out
        })
    } else {
        sql
    };
    let (f, t) = (Value::from(from), Value::from(now));
    let values = vec![
        f.clone(), t.clone(),
        f.clone(), t.clone(), t.clone(),
        f.clone(), t.clone(), t.clone(),
        Value::from(false), f, t.clone(), t,
    ];
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| crate::error::ServiceError::Conflict("the expiry counts returned no row".into()))?;
    let count = |c: &str| row.try_get::<i64>("", c).map(|v| u64::try_from(v).unwrap_or(0));
    let report = ExpiryReport {
        expired: count("expired")?,
        pending_authorization: count("pending")?,
        declined: count("declined")?,
        orders_held: count("held")?,
        batches: 0,
    };
    ew::Entity::update_many()
        .col_expr(ew::Column::ExpiredThrough, Expr::value(now))
        .filter(ew::Column::Id.eq(1))
        .exec(&txn)
        .await?;
    if report.expired == 0 {
        txn.commit().await?;
        return Ok(ExpiryReport::default());
    }
    audit::record(
        &txn,
        now,
        audit::SYSTEM,
        "job.expiry",
        "authorizations",
        Some(serde_json::json!({ "expired_through": from })),
        Some(serde_json::json!({
            "expired_through": now,
            "expired": report.expired,
            "pending_authorization": report.pending_authorization,
            "declined": report.declined,
            "orders_held": report.orders_held,
        })),
    )
    .await?;
    txn.commit().await?;
    Ok(ExpiryReport { batches: 1, ..report })
}

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
    use crate::pipeline::requests::{self, Purpose};
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
    let wm = crate::service::expiry::watermark(&s.db).await?;
    loop {
        let lines = pl::Entity::find()
            .filter(pl::Column::Id.gt(after))
            .filter(pl::Column::Tender.eq(Tender::Card.code()))
            .filter(crate::service::expiry::payment_status_is(s.db.get_database_backend(), PaymentStatus::PendingAuthorization, wm))
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
                crate::service::expiry::settle(&txn, o).await?;
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
            let req = match requests::begin_in(&txn, s, line.connector_id.unwrap_or_default(), Command::Authorize, amount, purpose).await {
                Ok(r) => r,
                Err(_) => {
                    txn.rollback().await?;
                    report.not_completed += 1;
                    continue;
                }
            };
            txn.commit().await?;
            let result = s.connector.authorize(&req.tracking_id, line.card_token.as_deref().unwrap_or_default(), amount).await;
            let resolution = requests::resolve(s, &req.tracking_id, result, crate::connector::Outcome::Authorized).await;
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
