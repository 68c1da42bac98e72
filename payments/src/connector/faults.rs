//! Fault injection, stored in the database so tests, the CLI (`paystage faults`), the administrator
//! page and every server process see the same faults. A fault applies to one point (a processor
//! command, or Paystage's own journal posting), fires with a probability, and optionally only a
//! number of times.
use crate::domain::parameters::FieldError;
use crate::entity::sim_fault;
use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Utc};

use rand_core::{OsRng, RngCore};
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

pub use crate::domain::views::{FaultView, FAULT_POINTS as POINTS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// The request fails before anything happens.
    ErrorBefore,
    /// The effect happens, then the caller gets a timeout (outcome unknown).
    TimeoutAfter,
    /// The request is delayed by `latency_ms`.
    Latency,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [FaultKind::ErrorBefore, FaultKind::TimeoutAfter, FaultKind::Latency];
    pub fn code(self) -> &'static str {
        match self {
            FaultKind::ErrorBefore => "error_before",
            FaultKind::TimeoutAfter => "timeout_after",
            FaultKind::Latency => "latency",
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
    if kind == Some(FaultKind::TimeoutAfter) && point == "journal" {
        errors.push(FieldError::new("kind", "Journal posting is Paystage's own step: it can fail before, not time out after."));
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
}

pub async fn fire(db: &impl ConnectionTrait, point: &str) -> Result<Fired, DbErr> {
    let mut fired = Fired::default();
    let faults = sim_fault::Entity::find().all(db).await?;
    for f in faults {
        let applies = f.point == point || (f.point == "any" && point != "journal");
        if !applies {
            continue;
        }
        let rate = Decimal::from_str(&f.rate).unwrap_or(Decimal::ONE);
        // A uniform draw in [0, 1) at 1e-6 resolution.
        let draw = Decimal::new(i64::from(OsRng.next_u32() % 1_000_000), 6);
        if draw >= rate {
            continue;
        }
        if let Some(n) = f.remaining {
            // Consume one use; a fault used up by a concurrent caller does not fire here.
            use sea_orm::{ColumnTrait, QueryFilter};
            let taken = sim_fault::Entity::update_many()
                .col_expr(sim_fault::Column::Remaining, sea_orm::sea_query::Expr::value(n - 1))
                .filter(sim_fault::Column::Id.eq(f.id))
                .filter(sim_fault::Column::Remaining.eq(n))
                .exec(db)
                .await?
                .rows_affected;
            if taken == 0 {
                continue;
            }
        }
        {
            use sea_orm::sea_query::{Expr, ExprTrait};
            use sea_orm::{ColumnTrait, QueryFilter};
            sim_fault::Entity::update_many()
                .col_expr(sim_fault::Column::Fired, Expr::col(sim_fault::Column::Fired).add(1))
                .filter(sim_fault::Column::Id.eq(f.id))
                .exec(db)
                .await?;
        }
        if f.remaining == Some(1) {
            sim_fault::Entity::delete_by_id(f.id).exec(db).await?;
        }
        match FaultKind::from_code(&f.kind) {
            Some(FaultKind::ErrorBefore) => fired.error_before = true,
            Some(FaultKind::TimeoutAfter) => fired.timeout_after = true,
            Some(FaultKind::Latency) => fired.latency_ms += f.latency_ms.max(0) as u64,
            None => {}
        }
    }
    Ok(fired)
}
