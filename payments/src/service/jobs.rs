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

/// Payment lines looked at per batch by the resubmit job.
pub const RESUBMIT_BATCH: u64 = 200;

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
    let batch = batch.clamp(1, 100_000);
    if s.db.get_database_backend() == DbBackend::Postgres {
        return expire_authorizations_pg(s, batch).await;
    }
    // SQLite: one writer at a time, so a batch is a few statements in one transaction.
    let mut report = ExpiryReport::default();
    let backend = DbBackend::Sqlite;
    loop {
        let now = s.now();
        let txn = s.db.begin().await?;
        // The outer status test makes a run skip rows another run just expired. No ORDER BY: any `batch`
        // qualifying rows will do, so the (status, expires_at) index scan stops after `batch`
        // rows instead of sorting every expired authorization left on each pass.
        let sql = format!(
            "UPDATE authorizations SET status = '{expired}' WHERE status = '{open}' AND id IN \
             (SELECT id FROM authorizations WHERE status = '{open}' AND expires_at <= ? LIMIT {batch}) \
             RETURNING payment_line_id, order_id",
            expired = AuthorizationStatus::Expired.code(),
            open = AuthorizationStatus::Open.code(),
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
        // A line (or order) still covered by another open, unexpired authorization keeps its status.
        let still_covered = format!(
            "EXISTS (SELECT 1 FROM authorizations a WHERE a.payment_line_id = payment_lines.id AND a.status = '{open}' AND a.expires_at > ?)",
            open = AuthorizationStatus::Open.code()
        );
        // The line's order's channel, looked up per line (a list of every online order would be
        // built again for each batch).
        let online = format!(
            "((SELECT c.kind FROM sales_orders o JOIN channels c ON c.id = o.channel_id WHERE o.id = payment_lines.order_id) = '{}')",
            ChannelKind::OnlineStore.code()
        );
        // Online storefront payments become Declined, every other one Pending Authorization.
        let mut changed = [0u64; 2];
        for (i, (status, online_test)) in [(PaymentStatus::Declined, ""), (PaymentStatus::PendingAuthorization, "NOT ")].into_iter().enumerate() {
            changed[i] = txn
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "UPDATE payment_lines SET status = '{status}' WHERE id IN ({ids}) AND status = '{authorized}' \
                         AND {online_test}{online} AND NOT {still_covered}",
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
                    "UPDATE sales_orders SET do_not_process = 1 WHERE id IN ({ids}) AND do_not_process = 0 \
                     AND NOT EXISTS (SELECT 1 FROM authorizations a WHERE a.order_id = sales_orders.id AND a.status = '{open}' AND a.expires_at > ?)",
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

/// Concurrent workers of the PostgreSQL expiry job. Each takes the authorizations of its own
/// share of the orders, so two workers never touch the same order or payment line and never wait
/// on each other's locks; the database runs them on separate cores.
pub const EXPIRY_WORKERS_PG: u32 = 2;

/// Orders are shared out between the workers in blocks of this many consecutive ids
/// (`order_id / block % workers`), not one by one: rows are stored roughly in id order, so with
/// blocks each worker changes pages of its own instead of both changing every page. (Not
/// measured on its own: it landed with migration 7 and the TID update, which together took the
/// 1,000,000-authorization bench from 43.8 s to 33.7–35.3 s; see the README.)
pub const EXPIRY_SHARE_BLOCK: u32 = 1024;

/// The PostgreSQL form of [`expire_authorizations`]: [`EXPIRY_WORKERS_PG`] workers, each running
/// batches of one statement whose data-modifying CTEs expire the authorizations, move their payment
/// lines and hold their orders, so a batch costs one round trip and each table is visited once (the
/// rules are the same as the portable form's; the tests run both). All parts of the statement read
/// one snapshot, taken before the authorizations are marked, which is what the "still covered"
/// tests need: they look for other open authorizations that have not expired, which this statement
/// does not touch. Rows locked by a concurrent run (another server) are skipped (`SKIP LOCKED`);
/// that run expires them.
async fn expire_authorizations_pg(s: &Services, batch: u64) -> ServiceResult<ExpiryReport> {
    let mut workers = tokio::task::JoinSet::new();
    for share in 0..EXPIRY_WORKERS_PG {
        let s = s.clone();
        workers.spawn(async move { expire_share_pg(&s, batch, share).await });
    }
    let mut report = ExpiryReport::default();
    let mut failure = None;
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(Ok(r)) => {
                report.expired += r.expired;
                report.pending_authorization += r.pending_authorization;
                report.declined += r.declined;
                report.orders_held += r.orders_held;
                report.batches += r.batches;
            }
            // Every committed batch is complete on its own; a failed worker's open batch rolled back
            // and the next run takes it again.
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(crate::error::ServiceError::Conflict(format!("an expiry worker stopped: {e}")))),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// One worker of [`expire_authorizations_pg`]: the orders whose id is `share` modulo the workers.
async fn expire_share_pg(s: &Services, batch: u64, share: u32) -> ServiceResult<ExpiryReport> {
    let open = AuthorizationStatus::Open.code();
    let expired = AuthorizationStatus::Expired.code();
    let authorized = PaymentStatus::Authorized.code();
    let declined = PaymentStatus::Declined.code();
    let pending = PaymentStatus::PendingAuthorization.code();
    let online = ChannelKind::OnlineStore.code();
    let workers = EXPIRY_WORKERS_PG;
    let block = EXPIRY_SHARE_BLOCK;
    // The due rows are updated where `due` found them: `ctid = ANY(ARRAY(…))` is a TID scan, no
    // index descent per row (a join with `due` was planned as a hash join over every open
    // authorization, once per batch). The row lock taken in `due` keeps each row where it is
    // until this transaction ends, so the physical address read there is still the row's here.
    let sql = format!(
        "WITH due AS (
            SELECT ctid AS tid FROM authorizations
             WHERE status = '{open}' AND expires_at <= $1 AND order_id / {block} % {workers} = {share}
             LIMIT {batch} FOR UPDATE SKIP LOCKED
         ), exp AS (
            UPDATE authorizations a SET status = '{expired}' WHERE a.ctid = ANY(ARRAY(SELECT tid FROM due)) AND a.status = '{open}'
            RETURNING a.payment_line_id, a.order_id
         ), lines AS (
            UPDATE payment_lines p
               SET status = CASE WHEN c.kind = '{online}' THEN '{declined}' ELSE '{pending}' END
              FROM sales_orders o, channels c
             WHERE p.id IN (SELECT payment_line_id FROM exp) AND p.status = '{authorized}'
               AND o.id = p.order_id AND c.id = o.channel_id
               AND NOT EXISTS (SELECT 1 FROM authorizations a2
                                WHERE a2.payment_line_id = p.id AND a2.status = '{open}' AND a2.expires_at > $1)
            RETURNING p.status
         ), held AS (
            UPDATE sales_orders o SET do_not_process = TRUE
             WHERE o.id IN (SELECT order_id FROM exp) AND o.do_not_process = FALSE
               AND NOT EXISTS (SELECT 1 FROM authorizations a2
                                WHERE a2.order_id = o.id AND a2.status = '{open}' AND a2.expires_at > $1)
            RETURNING o.id
         )
         SELECT (SELECT count(*) FROM exp) AS expired,
                (SELECT count(*) FROM lines WHERE status = '{pending}') AS pending,
                (SELECT count(*) FROM lines WHERE status = '{declined}') AS declined,
                (SELECT count(*) FROM held) AS held,
                (SELECT min(order_id) FROM exp) AS first_order,
                (SELECT max(order_id) FROM exp) AS last_order"
    );
    let mut report = ExpiryReport::default();
    loop {
        let now = s.now();
        let txn = s.db.begin().await?;
        // JIT compiles these simple statements at a cost above what it saves (measured: 155 ms of
        // a 650 ms batch); a commit lost in a database crash is redone by the next run, so the job
        // does not wait for the WAL flush either.
        txn.execute_unprepared("SET LOCAL jit = off; SET LOCAL synchronous_commit = off").await?;
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql.clone(), [Value::from(now)]))
            .await?
            .ok_or_else(|| crate::error::ServiceError::Conflict("the expiry statement returned no row".into()))?;
        let count = |c: &str| row.try_get::<i64>("", c).map(|v| v.max(0) as u64);
        let (expired, pending, declined, held) = (count("expired")?, count("pending")?, count("declined")?, count("held")?);
        if expired == 0 {
            txn.rollback().await?;
            break;
        }
        audit::record(
            &txn,
            now,
            audit::SYSTEM,
            "job.expiry",
            "authorizations",
            None,
            Some(serde_json::json!({
                "expired": expired,
                "pending_authorization": pending,
                "declined": declined,
                "orders_held": held,
                "first_order_id": row.try_get::<Option<i32>>("", "first_order")?,
                "last_order_id": row.try_get::<Option<i32>>("", "last_order")?,
            })),
        )
        .await?;
        txn.commit().await?;
        report.expired += expired;
        report.pending_authorization += pending;
        report.declined += declined;
        report.orders_held += held;
        report.batches += 1;
        if expired < batch {
            break;
        }
    }
    Ok(report)
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
    loop {
        let lines = pl::Entity::find()
            .filter(pl::Column::Id.gt(after))
            .filter(pl::Column::Tender.eq(Tender::Card.code()))
            .filter(pl::Column::Status.eq(PaymentStatus::PendingAuthorization.code()))
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
            let txn = s.db.begin().await?;
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
            let amount = Money::from_minor(balance.minor(), Currency::from_code(&order.currency).unwrap_or(Currency::Usd));
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
