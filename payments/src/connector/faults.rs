//! Fault injection, stored in the database so tests, the CLI (`paystage faults`), the administrator
//! page and every server process see the same faults. A fault applies to one point (a processor
//! command, or Paystage's own journal posting), fires with a probability, and optionally only a
//! number of times.
use crate::domain::parameters::FieldError;
use super::simulator::entity::sim_fault;
use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Utc};

use rand_core::{OsRng, RngCore};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityName, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set};
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

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<FaultView>, DbErr> {
    Ok(sim_fault::Entity::find()
        .order_by_asc(sim_fault::Column::Id)
        .all(db)
        .await?
        .into_iter()
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
            })
        })
        .collect())
}

/// Validates and adds a fault. `rate` is a probability (0 < rate ≤ 1); `times` empty = until removed.
pub async fn add(
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
    let m = sim_fault::ActiveModel {
        point: Set(point.to_string()),
        kind: Set(kind.code().to_string()),
        rate: Set(rate_value.normalize().to_string()),
        remaining: Set(remaining),
        latency_ms: Set(latency),
        created_at: Set(now),
        fired: Set(0),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(m.id)
}

pub async fn remove(db: &impl ConnectionTrait, id: i32) -> Result<bool, DbErr> {
    Ok(sim_fault::Entity::delete_by_id(id).exec(db).await?.rows_affected > 0)
}

pub async fn clear(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    Ok(sim_fault::Entity::delete_many().exec(db).await?.rows_affected)
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

/// The point of Paystage's own journal posting (offered through [`crate::connector::JournalFaults`]).
pub const JOURNAL: &str = "journal";

/// The points where a [`FaultKind::FailsLater`] fault may be set: Adyen reports CAPTURE_FAILED and
/// REFUND_FAILED after answering `received`.
pub const LATER_POINTS: [&str; 2] = ["capture", "refund"];

/// Whether a capture or refund just made at `point` is to be reported failed later (a
/// [`FaultKind::FailsLater`] fault fired; one use of it consumed).
pub async fn fire_later(db: &DatabaseConnection, point: &str) -> Result<bool, DbErr> {
    let (fired, unlimited) = draw(db, point, true).await?;
    count(db, &unlimited).await?;
    Ok(fired.fails_later)
}

/// Whether a fault is set at `point` now (none drawn).
pub async fn armed(db: &impl ConnectionTrait, point: &str) -> Result<bool, DbErr> {
    Ok(sim_fault::Entity::find().filter(sim_fault::Column::Point.eq(point)).count(db).await? > 0)
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
    let (fired, unlimited) = draw(db, point, false).await?;
    if !unlimited.is_empty() && db.get_database_backend() == DbBackend::Postgres {
        let ids: Vec<String> = unlimited.iter().map(i32::to_string).collect();
        db.execute_unprepared(&format!(
            "SET LOCAL synchronous_commit = off; UPDATE \"{}\" SET fired = fired + 1 WHERE id IN ({})",
            sim_fault::Entity.table_name(),
            ids.join(", ")
        ))
        .await?;
        return Ok(fired);
    }
    count(db, &unlimited).await?;
    Ok(fired)
}

/// Counts one more firing of each fault in `ids`.
async fn count(db: &impl ConnectionTrait, ids: &[i32]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    sim_fault::Entity::update_many()
        .col_expr(sim_fault::Column::Fired, Expr::col(sim_fault::Column::Fired).add(1))
        .filter(sim_fault::Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// The faults that fire now at `point`, and the ids of those that fire until removed (still to
/// count). A use of a fault given a number of times is consumed and counted here, in one statement
/// that takes it only if no concurrent caller took that same use first; a caller who lost the
/// race reads the fault again and takes the next use, so that a fault given n uses fires n times
/// however many requests draw it at once. Its last use deletes it.
async fn draw(db: &impl ConnectionTrait, point: &str, later: bool) -> Result<(Fired, Vec<i32>), DbErr> {
    let mut fired = Fired::default();
    let mut unlimited = Vec::new();
    let faults = sim_fault::Entity::find().all(db).await?;
    for f in faults {
        if (f.kind == FaultKind::FailsLater.code()) != later || !fires(&f, point) {
            continue;
        }
        match f.remaining {
            None => unlimited.push(f.id),
            Some(first) => {
                let mut left = Some(first);
                let mut taken = false;
                while let Some(n) = left.filter(|n| *n > 0) {
                    let mine = sim_fault::Column::Id.eq(f.id).and(sim_fault::Column::Remaining.eq(n));
                    let rows = if n <= 1 {
                        sim_fault::Entity::delete_many().filter(mine).exec(db).await?.rows_affected
                    } else {
                        sim_fault::Entity::update_many()
                            .col_expr(sim_fault::Column::Remaining, Expr::value(n - 1))
                            .col_expr(sim_fault::Column::Fired, Expr::col(sim_fault::Column::Fired).add(1))
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
                    left = sim_fault::Entity::find_by_id(f.id).one(db).await?.and_then(|g| g.remaining);
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
/// administration API when Paystage reaches it over HTTP (`paystage sandbox`,
/// [`crate::sandbox::client::SandboxAdmin`]), and Paystage's own journal posting in the store its
/// hook draws from; without that API (the in-process simulator), all of them in the simulator's
/// store.
pub struct FaultControl<'a> {
    pub(crate) admin: Option<&'a crate::sandbox::client::SandboxAdmin>,
    pub(crate) store: Option<&'a DatabaseConnection>,
}

impl FaultControl<'_> {
    fn store(&self) -> ServiceResult<&DatabaseConnection> {
        self.store.ok_or_else(|| ServiceError::internal("this Paystage has no store for its own journal faults (PAYSTAGE_SIMULATOR_DATABASE_URL)"))
    }

    /// Every fault, the processor's and Paystage's journal ones, oldest first.
    pub async fn list(&self) -> ServiceResult<Vec<FaultView>> {
        let Some(admin) = self.admin else {
            return Ok(list(self.store()?).await?);
        };
        let mut all = admin.list().await?;
        if let Some(store) = self.store {
            all.extend(list(store).await?.into_iter().filter(|f| f.point == JOURNAL));
        }
        all.sort_by_key(|f| f.id);
        Ok(all)
    }

    /// Validates and adds a fault ([`add`]), at the processor unless it is Paystage's own.
    pub async fn add(&self, now: DateTime<Utc>, point: &str, kind: &str, rate: &str, times: &str, latency_ms: &str) -> ServiceResult<i32> {
        match self.admin {
            Some(admin) if point != JOURNAL => admin.add(point, kind, rate, times, latency_ms).await,
            _ => add(self.store()?, now, point, kind, rate, times, latency_ms).await,
        }
    }

    /// Removes fault `id`; false when there is none.
    pub async fn remove(&self, id: i32) -> ServiceResult<bool> {
        let Some(admin) = self.admin else {
            return Ok(remove(self.store()?, id).await?);
        };
        if admin.remove(id).await? {
            return Ok(true);
        }
        match self.store {
            Some(store) => Ok(sim_fault::Entity::delete_many().filter(sim_fault::Column::Id.eq(id)).filter(sim_fault::Column::Point.eq(JOURNAL)).exec(store).await?.rows_affected > 0),
            None => Ok(false),
        }
    }

    /// Removes every fault; how many there were.
    pub async fn clear(&self) -> ServiceResult<u64> {
        let Some(admin) = self.admin else {
            return Ok(clear(self.store()?).await?);
        };
        let mut removed = admin.clear().await?;
        if let Some(store) = self.store {
            removed += sim_fault::Entity::delete_many().filter(sim_fault::Column::Point.eq(JOURNAL)).exec(store).await?.rows_affected;
        }
        Ok(removed)
    }
}
