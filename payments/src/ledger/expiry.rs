//! Expiry as a watermark (R-AUT-3, R-AUT-4; migration 8).
//!
//! The expiry job records how far it has expired: `expired_through`, one row for the database.
//! From then on, every open authorization whose `expires_at` is at or before the watermark *is*
//! expired, and what R-AUT-4 says follows from it:
//! - the authorization reads Expired;
//! - its card payment line, if it was Authorized and no open authorization expiring after the
//!   watermark still covers it, reads Pending Authorization, or Declined for an online storefront
//!   order;
//! - its order, if no open authorization of the order expires after the watermark, reads Do not
//!   process.
//!
//! Readers apply that rule: one order's pages through [`overlay`], lists and counts through the
//! SQL conditions below. Writers first [`settle`] the order, which stores the same states in its
//! rows under the order's lock, so a change (a new payment, a manual void, an invoice, the
//! resubmit job) starts from exactly what the job would have stored; a settled order reads the
//! same as before. A run of the job therefore writes one row however many authorizations expire,
//! which is what brings a million expiries within seconds (README, "Expiry").
use crate::domain::expiry;
use crate::domain::order::{AuthorizationStatus, PaymentStatus, Tender};
use crate::domain::views::ChannelKind;
use crate::entity::{authorization as au, channel, expiry_watermark as ew, payment_line as pl, sales_order as so};
use crate::error::{ServiceError, ServiceResult};
use crate::runtime::Services;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Statement, TransactionTrait, Value};
use serde::Serialize;

/// How far the job has expired; `None` before its first run.
pub type Watermark = Option<DateTime<Utc>>;

pub async fn watermark(db: &impl ConnectionTrait) -> ServiceResult<Watermark> {
    Ok(ew::Entity::find_by_id(1).one(db).await?.map(|w| w.expired_through))
}

pub use crate::domain::expiry::Overlay;

/// The overlay read against stored rows (the struct and its rule are `domain::expiry`).
impl Overlay {
    pub fn authorization_status(&self, a: &au::Model) -> AuthorizationStatus {
        if self.expired.contains(&a.id) {
            AuthorizationStatus::Expired
        } else {
            AuthorizationStatus::from_code(&a.status).unwrap_or(AuthorizationStatus::Open)
        }
    }

    pub fn payment_status(&self, line: &pl::Model) -> PaymentStatus {
        self.lines.get(&line.id).copied().unwrap_or_else(|| PaymentStatus::from_code(&line.status).unwrap_or(PaymentStatus::PendingAuthorization))
    }

    pub fn do_not_process(&self, order: &so::Model) -> bool {
        order.do_not_process || self.hold
    }
}

/// The rule (`domain::expiry::derive`) over one order's stored rows: its authorizations, its card
/// payment lines, and whether it is an online storefront order.
pub fn derive(expired_through: DateTime<Utc>, authorizations: &[au::Model], lines: &[pl::Model], online: bool) -> Overlay {
    // A status this build does not know takes part as neither open nor Authorized.
    let authorizations: Vec<expiry::AuthorizationFacts> = authorizations
        .iter()
        .filter_map(|a| {
            let status = AuthorizationStatus::from_code(&a.status)?;
            Some(expiry::AuthorizationFacts { id: a.id, payment_line_id: a.payment_line_id, expires_at: a.expires_at, status })
        })
        .collect();
    let lines: Vec<expiry::LineFacts> = lines.iter().filter_map(|l| Some(expiry::LineFacts { id: l.id, status: PaymentStatus::from_code(&l.status)? })).collect();
    expiry::derive(expired_through, &authorizations, &lines, online)
}

/// The overlay of one order under the current watermark.
pub async fn overlay(db: &impl ConnectionTrait, order: &so::Model) -> ServiceResult<Overlay> {
    let wm = watermark(db).await?;
    overlay_at(db, order, wm).await
}

pub async fn overlay_at(db: &impl ConnectionTrait, order: &so::Model, wm: Watermark) -> ServiceResult<Overlay> {
    let Some(wm) = wm else { return Ok(Overlay::default()) };
    let open = au::Entity::find()
        .filter(au::Column::OrderId.eq(order.id))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .all(db)
        .await?;
    if !open.iter().any(|a| a.expires_at <= wm) {
        return Ok(Overlay::default());
    }
    let lines = pl::Entity::find()
        .filter(pl::Column::OrderId.eq(order.id))
        .filter(pl::Column::Tender.eq(Tender::Card.code()))
        .filter(pl::Column::Status.eq(PaymentStatus::Authorized.code()))
        .all(db)
        .await?;
    let online = channel::Entity::find_by_id(order.channel_id).one(db).await?.is_some_and(|c| c.kind == ChannelKind::OnlineStore.code());
    Ok(derive(wm, &open, &lines, online))
}

/// Which of `orders` have an open authorization the expiry job has passed, i.e. something for
/// [`settle`] to store (no watermark row yet compares as NULL, so nothing is due): one statement.
pub(crate) async fn due_orders(db: &impl ConnectionTrait, orders: impl IntoIterator<Item = i32>) -> Result<Vec<i32>, sea_orm::DbErr> {
    due().select_only().column(au::Column::OrderId).distinct().filter(au::Column::OrderId.is_in(orders)).into_tuple().all(db).await
}

/// Whether the order whose id is `order_id` (a column of the query this goes in) has an open
/// authorization the expiry job has passed: [`due_orders`] as a condition of another query.
pub(crate) fn due_for(order_id: Expr) -> Expr {
    Expr::exists(due().select_only().expr(Expr::val(1)).filter(Expr::col((au::Entity, au::Column::OrderId)).eq(order_id)).into_query())
}

/// The open authorizations the expiry job has passed.
fn due() -> sea_orm::Select<au::Entity> {
    au::Entity::find()
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .filter(Expr::cust("authorizations.expires_at <= (SELECT w.expired_through FROM expiry_watermark w WHERE w.id = 1)"))
}

/// Stores what expiry changed on `order` in its rows: the authorizations become Expired, the
/// lines Pending Authorization or Declined, the order Do not process. Call it in the transaction
/// of the change, after locking the order (PostgreSQL) so no other change interleaves; each update
/// is guarded by the status it expects, so settling twice changes nothing. Returns the order as
/// stored after settling.
pub async fn settle(db: &impl ConnectionTrait, order: so::Model) -> ServiceResult<so::Model> {
    // Every invoice passes here, and almost every order has nothing to store: one statement tells
    // (no watermark row yet compares as NULL, so nothing is due).
    if due_orders(db, [order.id]).await?.is_empty() {
        return Ok(order);
    }
    let o = overlay(db, &order).await?;
    if o.is_empty() {
        return Ok(order);
    }
    au::Entity::update_many()
        .col_expr(au::Column::Status, Expr::value(AuthorizationStatus::Expired.code()))
        .filter(au::Column::Id.is_in(o.expired.iter().copied()))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .exec(db)
        .await?;
    for status in [PaymentStatus::PendingAuthorization, PaymentStatus::Declined] {
        let ids: Vec<i32> = o.lines.iter().filter(|(_, s)| **s == status).map(|(id, _)| *id).collect();
        if !ids.is_empty() {
            pl::Entity::update_many()
                .col_expr(pl::Column::Status, Expr::value(status.code()))
                .filter(pl::Column::Id.is_in(ids))
                .filter(pl::Column::Status.eq(PaymentStatus::Authorized.code()))
                .exec(db)
                .await?;
        }
    }
    if o.hold && !order.do_not_process {
        so::Entity::update_many()
            .col_expr(so::Column::DoNotProcess, Expr::value(true))
            .filter(so::Column::Id.eq(order.id))
            .exec(db)
            .await?;
        return Ok(so::Model { do_not_process: true, ..order });
    }
    Ok(order)
}

/// `authorizations` rows of the line or order `owner` (`payment_lines.id` or `sales_orders.id`)
/// that are open and expire at or before (`<=`) or after (`>`) the watermark, bound as `param`.
fn open_authorization(owner_column: &str, owner: &str, cmp: &str, param: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM authorizations x WHERE x.{owner_column} = {owner} AND x.status = '{open}' AND x.expires_at {cmp} {param})",
        open = AuthorizationStatus::Open.code()
    )
}

/// "Some open authorization of `owner` expired, none expires later", the watermark bound once
/// (PostgreSQL numbers a custom expression's parameters, `$1`) or twice (SQLite, `?`).
fn lapsed(backend: DbBackend, owner_column: &str, owner: &str, wm: DateTime<Utc>) -> SimpleExpr {
    let (param, values) = if backend == DbBackend::Postgres { ("$1", vec![wm]) } else { ("?", vec![wm, wm]) };
    Expr::cust_with_values(
        format!(
            "({} AND NOT {})",
            open_authorization(owner_column, owner, "<=", param),
            open_authorization(owner_column, owner, ">", param)
        ),
        values,
    )
}

/// An Authorized payment line (of the query's `payment_lines`) that expiry has moved.
fn line_lapsed(backend: DbBackend, wm: DateTime<Utc>) -> SimpleExpr {
    lapsed(backend, "payment_line_id", "payment_lines.id", wm)
}

fn line_online() -> SimpleExpr {
    Expr::cust(format!(
        "((SELECT c.kind FROM sales_orders o JOIN channels c ON c.id = o.channel_id WHERE o.id = payment_lines.order_id) = '{}')",
        ChannelKind::OnlineStore.code()
    ))
}

/// Payment lines (of a query on `payment_lines`) whose status, with expiry applied, is `status`.
pub fn payment_status_is(backend: DbBackend, status: PaymentStatus, wm: Watermark) -> Condition {
    let stored = Condition::all().add(pl::Column::Status.eq(status.code()));
    let Some(wm) = wm else { return stored };
    let lapsed_authorized = || Condition::all().add(pl::Column::Status.eq(PaymentStatus::Authorized.code())).add(line_lapsed(backend, wm));
    match status {
        PaymentStatus::Authorized => Condition::all().add(pl::Column::Status.eq(status.code())).add(line_lapsed(backend, wm).not()),
        PaymentStatus::PendingAuthorization => Condition::any().add(stored).add(lapsed_authorized().add(line_online().not())),
        PaymentStatus::Declined => Condition::any().add(stored).add(lapsed_authorized().add(line_online())),
        _ => stored,
    }
}

/// Orders (of a query on `sales_orders`) that are on hold, with expiry applied.
pub fn order_held(backend: DbBackend, wm: Watermark) -> Condition {
    let stored = Condition::any().add(so::Column::DoNotProcess.eq(true));
    let Some(wm) = wm else { return stored };
    stored.add(lapsed(backend, "order_id", "sales_orders.id", wm))
}

// ---------------------------------------------------------------------------------------------
// The sweep: storing expiry on the rows after the job's run.

/// What a sweep stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoredReport {
    /// Authorizations stored as Expired.
    pub authorizations: u64,
    /// Payment lines stored as Pending Authorization or Declined.
    pub lines: u64,
    /// Orders stored as Do not process.
    pub orders: u64,
    pub batches: u64,
}

/// Authorizations stored per transaction by the sweep.
pub const STORE_BATCH: u64 = 10_000;

fn id_list(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The background sweep that follows a run of the expiry job: stores what the watermark already
/// says on the rows of every order it expired, `batch` authorizations per transaction, so readers
/// go back to reading stored states and the set they derive stays small. Until it is done every
/// reader derives the same states and every writer settles its order first, so nothing waits for
/// it and a crash in it loses nothing: the next sweep takes what is left. Each batch expires the
/// authorizations, moves their payment lines (Pending Authorization, or Declined for an online
/// storefront order) and holds their orders, with the rule of [`derive`]; nothing is audited
/// again (the job's run was). Safe with several servers: each batch's updates are guarded by the
/// status they expect, and on PostgreSQL rows another sweep holds are skipped.
pub async fn store_expired(s: &Services, batch: u64) -> ServiceResult<StoredReport> {
    let batch = batch.clamp(1, 100_000);
    let Some(wm) = watermark(&s.db).await? else { return Ok(StoredReport::default()) };
    if s.db.get_database_backend() == DbBackend::Postgres {
        return store_expired_pg(s, batch, wm).await;
    }
    // SQLite: one writer at a time, so a batch is a few statements in one transaction.
    let mut report = StoredReport::default();
    let backend = DbBackend::Sqlite;
    loop {
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
        let rows = txn.query_all_raw(Statement::from_sql_and_values(backend, sql, [Value::from(wm)])).await?;
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
                    [Value::from(wm)],
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
                [Value::from(wm)],
            ))
            .await?
            .rows_affected();
        txn.commit().await?;
        report.authorizations += rows.len() as u64;
        report.lines += pending + declined;
        report.orders += held;
        report.batches += 1;
        if (rows.len() as u64) < batch {
            break;
        }
    }
    Ok(report)
}

/// Concurrent workers of the PostgreSQL sweep. Each takes the authorizations of its own
/// share of the orders, so two workers never touch the same order or payment line and never wait
/// on each other's locks; the database runs them on separate cores.
pub const STORE_WORKERS_PG: u32 = 2;

/// Orders are shared out between the workers in blocks of this many consecutive ids
/// (`order_id / block % workers`), not one by one: rows are stored roughly in id order, so with
/// blocks each worker changes pages of its own instead of both changing every page. (Not
/// measured on its own: it landed with migration 7 and the TID update, which together took the
/// 1,000,000-authorization sweep, then the whole expiry job, from 43.8 s to 33.7–35.3 s.)
pub const STORE_SHARE_BLOCK: u32 = 1024;

/// The PostgreSQL form of [`store_expired`]: [`STORE_WORKERS_PG`] workers, each running
/// batches of one statement whose data-modifying CTEs expire the authorizations, move their payment
/// lines and hold their orders, so a batch costs one round trip and each table is visited once (the
/// rules are the same as the portable form's; the tests run both). All parts of the statement read
/// one snapshot, taken before the authorizations are marked, which is what the "still covered"
/// tests need: they look for other open authorizations that have not expired, which this statement
/// does not touch. Rows locked by a concurrent run (another server) are skipped (`SKIP LOCKED`);
/// that run expires them.
async fn store_expired_pg(s: &Services, batch: u64, wm: DateTime<Utc>) -> ServiceResult<StoredReport> {
    let mut workers = tokio::task::JoinSet::new();
    for share in 0..STORE_WORKERS_PG {
        let s = s.clone();
        workers.spawn(async move { store_share_pg(&s, batch, share, wm).await });
    }
    let mut report = StoredReport::default();
    let mut failure = None;
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(Ok(r)) => {
                report.authorizations += r.authorizations;
                report.lines += r.lines;
                report.orders += r.orders;
                report.batches += r.batches;
            }
            // Every committed batch is complete on its own; a failed worker's open batch rolled back
            // and the next run takes it again.
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(ServiceError::internal(format!("a sweep worker stopped: {e}")))),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// One worker of [`store_expired_pg`]: the orders whose id is `share` modulo the workers.
async fn store_share_pg(s: &Services, batch: u64, share: u32, wm: DateTime<Utc>) -> ServiceResult<StoredReport> {
    let open = AuthorizationStatus::Open.code();
    let expired = AuthorizationStatus::Expired.code();
    let authorized = PaymentStatus::Authorized.code();
    let declined = PaymentStatus::Declined.code();
    let pending = PaymentStatus::PendingAuthorization.code();
    let online = ChannelKind::OnlineStore.code();
    let workers = STORE_WORKERS_PG;
    let block = STORE_SHARE_BLOCK;
    // `due` locks each due authorization together with its order, skipping what is locked: a
    // change that settles an order locks the order first and then its authorizations, so taking
    // them in the other order could deadlock with it; skipped rows are left to that change.
    // The due rows are updated where `due` found them: `ctid = ANY(ARRAY(…))` is a TID scan, no
    // index descent per row (a join with `due` was planned as a hash join over every open
    // authorization, once per batch). The row lock taken in `due` keeps each row where it is
    // until this transaction ends, so the physical address read there is still the row's here.
    let sql = format!(
        "WITH due AS (
            SELECT a.ctid AS tid FROM authorizations a JOIN sales_orders o ON o.id = a.order_id
             WHERE a.status = '{open}' AND a.expires_at <= $1 AND a.order_id / {block} % {workers} = {share}
             LIMIT {batch} FOR UPDATE OF a, o SKIP LOCKED
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
    let mut report = StoredReport::default();
    loop {
        let txn = s.db.begin().await?;
        // JIT compiles these simple statements at a cost above what it saves (measured: 155 ms of
        // a 650 ms batch); a commit lost in a database crash is redone by the next run, so the job
        // does not wait for the WAL flush either.
        txn.execute_unprepared("SET LOCAL jit = off; SET LOCAL synchronous_commit = off").await?;
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql.clone(), [Value::from(wm)]))
            .await?
            .ok_or_else(|| ServiceError::internal("the expiry statement returned no row"))?;
        let count = |c: &str| row.try_get::<i64>("", c).map(|v| u64::try_from(v).unwrap_or(0));
        let (expired, pending, declined, held) = (count("expired")?, count("pending")?, count("declined")?, count("held")?);
        if expired == 0 {
            txn.rollback().await?;
            break;
        }
        txn.commit().await?;
        report.authorizations += expired;
        report.lines += pending + declined;
        report.orders += held;
        report.batches += 1;
        if expired < batch {
            break;
        }
    }
    Ok(report)
}
