//! Background jobs of the authorization lifecycle. Each runs in bounded batches, one transaction
//! per batch, and is idempotent: a crash mid-batch rolls that batch back and the next run takes it
//! again; a row already processed no longer matches, so nothing is processed twice, also when two
//! servers run the job at once.
use crate::domain::order::{AuthorizationStatus, PaymentStatus};
use crate::domain::views::ChannelKind;
use crate::error::ServiceResult;
use crate::service::{audit, Services};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};
use serde::Serialize;

/// Authorizations expired per transaction.
pub const EXPIRY_BATCH: u64 = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    /// Authorizations marked Expired.
    pub expired: u64,
    /// Payment lines returned to Pending Authorization.
    pub pending_authorization: u64,
    /// Online storefront payment lines set to Declined.
    pub declined: u64,
    /// Orders put on hold (Do not process).
    pub orders_held: u64,
    pub batches: u64,
}

fn id_list(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// R-AUT-3, R-AUT-4: every open authorization whose expiry has passed (by the injected clock) is
/// marked Expired; its payment line returns to Pending Authorization, or to Declined for an online
/// storefront order, and its order is held (Do not process), unless the line still has another
/// open authorization that has not expired. Fully captured, closed and voided authorizations have
/// nothing left to capture and are left alone.
pub async fn expire_authorizations(s: &Services, batch: u64) -> ServiceResult<ExpiryReport> {
    let mut report = ExpiryReport::default();
    let batch = batch.clamp(1, 100_000);
    loop {
        let now = s.now();
        let backend = s.db.get_database_backend();
        let txn = s.db.begin().await?;
        // The outer status test makes a concurrent run skip rows another run just expired
        // (PostgreSQL re-checks it after waiting for the row lock).
        let sql = format!(
            "UPDATE authorizations SET status = '{expired}' WHERE status = '{open}' AND id IN \
             (SELECT id FROM authorizations WHERE status = '{open}' AND expires_at <= {p1} ORDER BY id LIMIT {batch}) \
             RETURNING payment_line_id, order_id",
            expired = AuthorizationStatus::Expired.code(),
            open = AuthorizationStatus::Open.code(),
            p1 = if backend == DbBackend::Postgres { "$1" } else { "?" },
        );
        let rows = txn.query_all_raw(Statement::from_sql_and_values(backend, sql, [Value::from(now)])).await?;
        if rows.is_empty() {
            txn.rollback().await?;
            break;
        }
        let mut lines = Vec::with_capacity(rows.len());
        let mut orders = Vec::with_capacity(rows.len());
        for r in &rows {
            lines.push(r.try_get::<i32>("", "payment_line_id")?);
            orders.push(r.try_get::<i32>("", "order_id")?);
        }
        lines.sort_unstable();
        lines.dedup();
        orders.sort_unstable();
        orders.dedup();
        let p1 = if backend == DbBackend::Postgres { "$1" } else { "?" };
        // A line (or order) still covered by another open, unexpired authorization keeps its status.
        let still_covered = format!(
            "EXISTS (SELECT 1 FROM authorizations a WHERE a.payment_line_id = payment_lines.id AND a.status = '{open}' AND a.expires_at > {p1})",
            open = AuthorizationStatus::Open.code()
        );
        let online = format!(
            "SELECT o.id FROM sales_orders o JOIN channels c ON c.id = o.channel_id WHERE c.kind = '{}'",
            ChannelKind::OnlineStore.code()
        );
        // Online storefront payments become Declined, every other one Pending Authorization.
        let mut changed = [0u64; 2];
        for (i, (status, online_test)) in [(PaymentStatus::Declined, "IN"), (PaymentStatus::PendingAuthorization, "NOT IN")].into_iter().enumerate() {
            changed[i] = txn
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "UPDATE payment_lines SET status = '{status}' WHERE id IN ({ids}) AND status = '{authorized}' \
                         AND order_id {online_test} ({online}) AND NOT {still_covered}",
                        status = status.code(),
                        authorized = PaymentStatus::Authorized.code(),
                        ids = id_list(&lines),
                    ),
                    [Value::from(now)],
                ))
                .await?
                .rows_affected();
        }
        let [declined, pending] = changed;
        let held = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "UPDATE sales_orders SET do_not_process = {t} WHERE id IN ({ids}) AND do_not_process = {f} \
                     AND NOT EXISTS (SELECT 1 FROM authorizations a WHERE a.order_id = sales_orders.id AND a.status = '{open}' AND a.expires_at > {p1})",
                    t = if backend == DbBackend::Postgres { "TRUE" } else { "1" },
                    f = if backend == DbBackend::Postgres { "FALSE" } else { "0" },
                    ids = id_list(&orders),
                    open = AuthorizationStatus::Open.code(),
                ),
                [Value::from(now)],
            ))
            .await?
            .rows_affected();
        audit::record(
            &txn,
            now,
            audit::SYSTEM,
            "job.expiry",
            "authorizations",
            None,
            Some(serde_json::json!({
                "expired": rows.len(),
                "pending_authorization": pending,
                "declined": declined,
                "orders_held": held,
                "first_order_id": orders.first(),
                "last_order_id": orders.last(),
            })),
        )
        .await?;
        txn.commit().await?;
        report.expired += rows.len() as u64;
        report.pending_authorization += pending;
        report.declined += declined;
        report.orders_held += held;
        report.batches += 1;
        if (rows.len() as u64) < batch {
            break;
        }
    }
    Ok(report)
}
