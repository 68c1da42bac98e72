//! R-AUT-3: the expiry job, one short transaction that moves the expiry watermark
//! (`ledger::expiry`); idempotent and safe to run on two servers at once.
use crate::domain::order::{AuthorizationStatus, PaymentStatus};
use crate::domain::views::ChannelKind;
use crate::error::ServiceResult;
use crate::service::{audit, Services};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};
use serde::Serialize;

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
        .ok_or_else(|| crate::error::ServiceError::internal("the expiry counts returned no row"))?;
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

