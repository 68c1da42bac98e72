//! Fault injection, stored so that tests, the CLI (`paystage faults`), the administrator page and
//! every server process see the same faults: the processor's in the sandbox's store (set through
//! its administration API), Paystage's own journal posting's in Paystage's database. A fault
//! applies to one point (a processor command, or the journal), fires with a probability, and
//! optionally only a number of times.
use crate::domain::parameters::FieldError;
use super::simulator::entity::sim_fault;
use crate::entity::journal_fault;
use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Utc};

use rand_core::{OsRng, RngCore};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

pub use crate::domain::views::{FaultView, FAULT_POINTS as POINTS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// The request fails before anything happens.
    ErrorBefore,
    /// The effect happens, then the caller gets a timeout (outcome unknown).
    TimeoutAfter,
    /// The processor answers `latency_ms` after the request (its own work included).
    Latency,
    /// The capture or refund is answered `received` and reported failed later (CAPTURE_FAILED,
    /// REFUND_FAILED): the sandbox undoes it and its notification says so. Drawn by the sandbox
    /// after a first effect ([`fire_later`]), never by the processor's request itself.
    FailsLater,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [FaultKind::ErrorBefore, FaultKind::TimeoutAfter, FaultKind::Latency, FaultKind::FailsLater];
    pub fn code(self) -> &'static str {
        match self {
            FaultKind::ErrorBefore => "error_before",
            FaultKind::TimeoutAfter => "timeout_after",
            FaultKind::Latency => "latency",
            FaultKind::FailsLater => "fails_later",
        }
    }
    pub fn from_code(c: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == c)
    }
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::ErrorBefore => "Error before the effect",
            FaultKind::TimeoutAfter => "Timeout after the effect",
            FaultKind::Latency => "Latency",
            FaultKind::FailsLater => "Received, then reported failed",
        }
    }
}

/// A table of faults, both of one shape: the processor's (`sim_faults`, in the sandbox's store,
/// every point but the journal) and Paystage's own journal faults (`journal_faults`, in Paystage's
/// database). The functions below work on either.
pub trait FaultTable: EntityTrait {
    const ID: Self::Column;
    const POINT: Self::Column;
    const REMAINING: Self::Column;
    const FIRED: Self::Column;
    /// The points a fault of this table may be set at.
    fn allows(point: &str) -> bool;
    fn row(m: Self::Model) -> sim_fault::Model;
    fn new_row(point: String, kind: String, rate: String, remaining: Option<i32>, latency_ms: i32, created_at: DateTime<Utc>) -> Self::ActiveModel;
    fn inserted_id(id: <Self::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType) -> i32;
}

/// The processor's faults, in its store.
pub type ProcessorFaults = sim_fault::Entity;
/// Paystage's own journal faults, in its database.
pub type JournalFaultTable = journal_fault::Entity;

impl FaultTable for sim_fault::Entity {
    const ID: sim_fault::Column = sim_fault::Column::Id;
    const POINT: sim_fault::Column = sim_fault::Column::Point;
    const REMAINING: sim_fault::Column = sim_fault::Column::Remaining;
    const FIRED: sim_fault::Column = sim_fault::Column::Fired;
    fn allows(point: &str) -> bool {
        point != JOURNAL && POINTS.iter().any(|(p, _)| *p == point)
    }
    fn row(m: sim_fault::Model) -> sim_fault::Model {
        m
    }
    fn inserted_id(id: i32) -> i32 {
        id
    }
    fn new_row(point: String, kind: String, rate: String, remaining: Option<i32>, latency_ms: i32, created_at: DateTime<Utc>) -> sim_fault::ActiveModel {
        sim_fault::ActiveModel { point: Set(point), kind: Set(kind), rate: Set(rate), remaining: Set(remaining), latency_ms: Set(latency_ms), created_at: Set(created_at), fired: Set(0), ..Default::default() }
    }
}

impl FaultTable for journal_fault::Entity {
    const ID: journal_fault::Column = journal_fault::Column::Id;
    const POINT: journal_fault::Column = journal_fault::Column::Point;
    const REMAINING: journal_fault::Column = journal_fault::Column::Remaining;
    const FIRED: journal_fault::Column = journal_fault::Column::Fired;
    fn allows(point: &str) -> bool {
        point == JOURNAL
    }
    fn inserted_id(id: i32) -> i32 {
        id
    }
    fn row(m: journal_fault::Model) -> sim_fault::Model {
        sim_fault::Model { id: m.id, point: m.point, kind: m.kind, rate: m.rate, remaining: m.remaining, latency_ms: m.latency_ms, created_at: m.created_at, fired: m.fired }
    }
    fn new_row(point: String, kind: String, rate: String, remaining: Option<i32>, latency_ms: i32, created_at: DateTime<Utc>) -> journal_fault::ActiveModel {
        journal_fault::ActiveModel { point: Set(point), kind: Set(kind), rate: Set(rate), remaining: Set(remaining), latency_ms: Set(latency_ms), created_at: Set(created_at), fired: Set(0), ..Default::default() }
    }
}

/// The processor's faults (its store), oldest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<FaultView>, DbErr> {
    list_in::<ProcessorFaults>(db).await
}

/// The faults of table `T`, oldest first.
pub async fn list_in<T: FaultTable>(db: &impl ConnectionTrait) -> Result<Vec<FaultView>, DbErr> {
    Ok(T::find()
        .order_by_asc(T::ID)
        .all(db)
        .await?
        .into_iter()
        .map(T::row)
        .filter_map(|f| {
            Some(FaultView {
                id: f.id,
                kind_label: FaultKind::from_code(&f.kind)?.label().to_string(),
                kind: f.kind,
                point: f.point,
                rate: f.rate,
                remaining: f.remaining,
                latency_ms: f.latency_ms,
                created_at: f.created_at,
                fired: f.fired,
                paystage_own: T::allows(JOURNAL),
            })
        })
        .collect())
}

/// Validates and adds a processor fault (its store). `rate` is a probability (0 < rate ≤ 1);
/// `times` empty = until removed.
pub async fn add(db: &impl ConnectionTrait, now: DateTime<Utc>, point: &str, kind: &str, rate: &str, times: &str, latency_ms: &str) -> ServiceResult<i32> {
    add_in::<ProcessorFaults>(db, now, point, kind, rate, times, latency_ms).await
}

/// Validates and adds a fault to table `T` ([`add`]).
pub async fn add_in<T: FaultTable>(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    point: &str,
    kind: &str,
    rate: &str,
    times: &str,
    latency_ms: &str,
) -> ServiceResult<i32> {
    let mut errors = Vec::new();
    if !POINTS.iter().any(|(p, _)| *p == point) {
        errors.push(FieldError::new("point", "Choose where the fault strikes."));
    } else if !T::allows(point) {
        let why = if point == JOURNAL { "Journal posting is Paystage's own step, not the processor's: set that fault on Paystage." } else { "Paystage's own faults are at its journal posting; the processor's are set at the processor." };
        errors.push(FieldError::new("point", why));
    }
    let kind = FaultKind::from_code(kind);
    if kind.is_none() {
        errors.push(FieldError::new("kind", "Choose a kind of fault."));
    }
    let rate_value = Decimal::from_str(rate.trim()).ok().filter(|r| *r > Decimal::ZERO && *r <= Decimal::ONE);
    if rate_value.is_none() {
        errors.push(FieldError::new("rate", format!("Rate must be a probability above 0 and at most 1; {:?} is not.", rate.trim())));
    }
    let remaining = match times.trim() {
        "" => Some(None),
        t => t.parse::<i32>().ok().filter(|n| (1..=100_000).contains(n)).map(Some),
    };
    if remaining.is_none() {
        errors.push(FieldError::new("times", "Times must be a whole number from 1 to 100000, or empty for until removed."));
    }
    let latency = match latency_ms.trim() {
        "" => Some(0),
        l => l.parse::<i32>().ok().filter(|n| (0..=60_000).contains(n)),
    };
    if latency.is_none() {
        errors.push(FieldError::new("latency_ms", "Latency must be from 0 to 60000 milliseconds."));
    }
    if kind == Some(FaultKind::Latency) && latency == Some(0) {
        errors.push(FieldError::new("latency_ms", "A latency fault needs a latency above 0 milliseconds."));
    }
    if kind == Some(FaultKind::TimeoutAfter) && point == JOURNAL {
        errors.push(FieldError::new("kind", "Journal posting is Paystage's own step: it can fail before, not time out after."));
    }
    if kind == Some(FaultKind::FailsLater) && !LATER_POINTS.contains(&point) {
        errors.push(FieldError::new("kind", "Only a capture or a refund is reported failed after it was received; choose one of those points."));
    }
    let (Some(kind), Some(rate_value), Some(remaining), Some(latency), true) =
        (kind, rate_value, remaining, latency, errors.is_empty())
    else {
        return Err(ServiceError::Validation(errors));
    };
    let m = T::new_row(point.to_string(), kind.code().to_string(), rate_value.normalize().to_string(), remaining, latency, now);
    Ok(T::inserted_id(T::insert(m).exec(db).await?.last_insert_id))
}

/// Removes the processor's fault `id` (its store).
pub async fn remove(db: &impl ConnectionTrait, id: i32) -> Result<bool, DbErr> {
    remove_in::<ProcessorFaults>(db, id).await
}

pub async fn remove_in<T: FaultTable>(db: &impl ConnectionTrait, id: i32) -> Result<bool, DbErr> {
    Ok(T::delete_many().filter(T::ID.eq(id)).exec(db).await?.rows_affected > 0)
}

/// Removes every processor fault (its store).
pub async fn clear(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    clear_in::<ProcessorFaults>(db).await
}

pub async fn clear_in<T: FaultTable>(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    Ok(T::delete_many().exec(db).await?.rows_affected)
}

/// The faults that fire now at `point` (and "any" for processor points), consuming one use of
/// each that fires. Latency comes back as a total to wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fired {
    pub error_before: bool,
    pub timeout_after: bool,
    pub latency_ms: u64,
    pub fails_later: bool,
}

/// The point of Paystage's own journal posting (drawn through [`JournalHook`]).
pub const JOURNAL: &str = "journal";

/// The points where a [`FaultKind::FailsLater`] fault may be set: Adyen reports CAPTURE_FAILED and
/// REFUND_FAILED after answering `received`.
pub const LATER_POINTS: [&str; 2] = ["capture", "refund"];

/// Whether a capture or refund just made at `point` is to be reported failed later (a
/// [`FaultKind::FailsLater`] fault fired; one use of it consumed).
pub async fn fire_later(db: &DatabaseConnection, point: &str) -> Result<bool, DbErr> {
    let (fired, unlimited) = draw::<ProcessorFaults>(db, point, true).await?;
    count::<ProcessorFaults>(db, &unlimited).await?;
    Ok(fired.fails_later)
}

/// Whether a fault of table `T` is set at `point` now (none drawn).
pub async fn armed<T: FaultTable>(db: &impl ConnectionTrait, point: &str) -> Result<bool, DbErr> {
    Ok(T::find().filter(T::POINT.eq(point)).one(db).await?.is_some())
}

/// Draws the faults at `point` for one request, outside any transaction (each request of the
/// simulator, and Paystage's journal posting through the simulator's hook). On
/// PostgreSQL a fault that fires until removed is counted in one round trip, in a transaction
/// that does not wait for the log flush: every concurrent request that fires one fault updates
/// the same row, and waiting for a flush while holding that row's lock queued concurrent requests
/// one flush after another (issue #3: 32 requests with a latency fault). The two statements go as
/// one simple query, which PostgreSQL runs as one implicit transaction (rolled back whole on an
/// error). The count is a figure for the administrator page; a crash may lose its last few
/// increments, never a use of a fault given a number of times, which [`draw`] consumes before the
/// fault fires.
pub async fn fire_alone(db: &DatabaseConnection, point: &str) -> Result<Fired, DbErr> {
    fire_alone_in::<ProcessorFaults>(db, point).await
}

/// [`fire_alone`] on table `T`.
pub async fn fire_alone_in<T: FaultTable>(db: &DatabaseConnection, point: &str) -> Result<Fired, DbErr> {
    let (fired, unlimited) = draw::<T>(db, point, false).await?;
    if !unlimited.is_empty() && db.get_database_backend() == DbBackend::Postgres {
        let ids: Vec<String> = unlimited.iter().map(i32::to_string).collect();
        db.execute_unprepared(&format!(
            "SET LOCAL synchronous_commit = off; UPDATE \"{}\" SET fired = fired + 1 WHERE id IN ({})",
            T::default().table_name(),
            ids.join(", ")
        ))
        .await?;
        return Ok(fired);
    }
    count::<T>(db, &unlimited).await?;
    Ok(fired)
}

/// Counts one more firing of each fault in `ids`.
async fn count<T: FaultTable>(db: &impl ConnectionTrait, ids: &[i32]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    T::update_many()
        .col_expr(T::FIRED, Expr::col(T::FIRED).add(1))
        .filter(T::ID.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// The faults that fire now at `point`, and the ids of those that fire until removed (still to
/// count). A use of a fault given a number of times is consumed and counted here, in one statement
/// that takes it only if no concurrent caller took that same use first; a caller who lost the
/// race reads the fault again and takes the next use, so that a fault given n uses fires n times
/// however many requests draw it at once. Its last use deletes it.
async fn draw<T: FaultTable>(db: &impl ConnectionTrait, point: &str, later: bool) -> Result<(Fired, Vec<i32>), DbErr> {
    let mut fired = Fired::default();
    let mut unlimited = Vec::new();
    let faults = T::find().all(db).await?;
    for f in faults.into_iter().map(T::row) {
        if (f.kind == FaultKind::FailsLater.code()) != later || !fires(&f, point) {
            continue;
        }
        match f.remaining {
            None => unlimited.push(f.id),
            Some(first) => {
                let mut left = Some(first);
                let mut taken = false;
                while let Some(n) = left.filter(|n| *n > 0) {
                    let mine = T::ID.eq(f.id).and(T::REMAINING.eq(n));
                    let rows = if n <= 1 {
                        T::delete_many().filter(mine).exec(db).await?.rows_affected
                    } else {
                        T::update_many()
                            .col_expr(T::REMAINING, Expr::value(n - 1))
                            .col_expr(T::FIRED, Expr::col(T::FIRED).add(1))
                            .filter(mine)
                            .exec(db)
                            .await?
                            .rows_affected
                    };
                    if rows > 0 {
                        taken = true;
                        break;
                    }
                    // Another caller took this use: the next one, if any is left.
                    left = T::find().filter(T::ID.eq(f.id)).one(db).await?.map(T::row).and_then(|g| g.remaining);
                }
                if !taken {
                    continue;
                }
            }
        }
        fired.add(&f);
    }
    Ok((fired, unlimited))
}

/// Whether fault `f` applies at `point` and fires on this draw (uniform, against its rate).
fn fires(f: &sim_fault::Model, point: &str) -> bool {
    let applies = f.point == point || (f.point == "any" && point != JOURNAL);
    if !applies {
        return false;
    }
    let rate = Decimal::from_str(&f.rate).unwrap_or(Decimal::ONE);
    // A uniform draw in [0, 1) at 1e-6 resolution.
    let draw = Decimal::new(i64::from(OsRng.next_u32() % 1_000_000), 6);
    draw < rate
}

impl Fired {
    /// Adds what fault `f`, which fired, does to the request.
    fn add(&mut self, f: &sim_fault::Model) {
        match FaultKind::from_code(&f.kind) {
            Some(FaultKind::ErrorBefore) => self.error_before = true,
            Some(FaultKind::TimeoutAfter) => self.timeout_after = true,
            Some(FaultKind::Latency) => self.latency_ms += std::cmp::max(f.latency_ms, 0) as u64,
            Some(FaultKind::FailsLater) => self.fails_later = true,
            None => {}
        }
    }
}


/// Where faults are set ([`crate::runtime::Services::faults`]): the processor's through its
/// administration API (`paystage sandbox`, [`crate::sandbox::client::SandboxAdmin`]), and those of
/// Paystage's own journal posting in Paystage's database ([`JournalFaultTable`]).
pub struct FaultControl<'a> {
    pub(crate) admin: Option<std::sync::Arc<crate::sandbox::client::SandboxAdmin>>,
    pub(crate) db: &'a DatabaseConnection,
}

impl FaultControl<'_> {
    fn admin(&self) -> ServiceResult<&crate::sandbox::client::SandboxAdmin> {
        self.admin.as_deref().ok_or_else(|| ServiceError::Validation(vec![FieldError::new("point", "This processor takes no injected faults (only the Paystage sandbox does); Paystage's own journal posting does.")]))
    }

    /// Every fault, the processor's and Paystage's journal ones: the processor's first, each
    /// oldest first.
    pub async fn list(&self) -> ServiceResult<Vec<FaultView>> {
        let mut all = match self.admin.as_deref() {
            Some(admin) => admin.list().await?,
            None => Vec::new(),
        };
        all.extend(list_in::<JournalFaultTable>(self.db).await?);
        Ok(all)
    }

    /// Validates and adds a fault ([`add`]): at the processor, or Paystage's own at the journal.
    pub async fn add(&self, now: DateTime<Utc>, point: &str, kind: &str, rate: &str, times: &str, latency_ms: &str) -> ServiceResult<i32> {
        if point == JOURNAL {
            return add_in::<JournalFaultTable>(self.db, now, point, kind, rate, times, latency_ms).await;
        }
        self.admin()?.add(point, kind, rate, times, latency_ms).await
    }

    /// Removes fault `id`, Paystage's own journal fault when `own` (their ids are apart from the
    /// processor's); false when there is none.
    pub async fn remove(&self, id: i32, own: bool) -> ServiceResult<bool> {
        if own {
            return Ok(remove_in::<JournalFaultTable>(self.db, id).await?);
        }
        self.admin()?.remove(id).await
    }

    /// Removes every fault; how many there were.
    pub async fn clear(&self) -> ServiceResult<u64> {
        let at_processor = match self.admin.as_deref() {
            Some(admin) => admin.clear().await?,
            None => 0,
        };
        Ok(at_processor + clear_in::<JournalFaultTable>(self.db).await?)
    }
}

/// The faults of Paystage's own journal posting, as the pipeline draws them
/// ([`crate::runtime::Services::journal_faults`]).
pub struct JournalHook<'a> {
    pub(crate) db: &'a DatabaseConnection,
}

impl JournalHook<'_> {
    /// Whether any fault is set at the journal now, without drawing it: a batched invoicing then
    /// posts its journal on its own, where the fault is drawn. Read through `conn`: in the
    /// caller's transaction, which on SQLite holds the one connection.
    pub async fn armed(&self, conn: &impl ConnectionTrait) -> Result<bool, DbErr> {
        armed::<JournalFaultTable>(conn, JOURNAL).await
    }
    /// Draws the journal faults (a use of a counted fault is consumed); true when the posting
    /// must fail.
    pub async fn fire(&self) -> Result<bool, DbErr> {
        Ok(fire_alone_in::<JournalFaultTable>(self.db, JOURNAL).await?.error_before)
    }
}
