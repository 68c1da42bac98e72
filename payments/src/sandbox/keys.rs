//! The sandbox's own tables beside the engine's ledger: idempotency keys with their stored
//! answers, the shopper each stored card belongs to, and the capture a refund applies to.
use super::Sandbox;
use axum::http::StatusCode;
use crate::connector::adyen::wire::StoredPaymentMethod;
use crate::connector::simulator::entity::sim_capture as sc;
use crate::connector::Connector;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, Statement};
use serde_json::Value;

pub(super) async fn prepare(store: &DatabaseConnection) -> Result<(), DbErr> {
    for sql in [
        "CREATE TABLE IF NOT EXISTS sandbox_keys (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, tracking_id TEXT NOT NULL, created_at TEXT NOT NULL, status INTEGER, response TEXT)",
        "CREATE TABLE IF NOT EXISTS sandbox_owners (token TEXT PRIMARY KEY, shopper TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS idx_sandbox_owners_shopper ON sandbox_owners (shopper)",
        "CREATE TABLE IF NOT EXISTS sandbox_notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, psp_reference TEXT NOT NULL, event_code TEXT NOT NULL, item TEXT NOT NULL, \
         created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT NOT NULL, delivered_at TEXT, last_error TEXT, UNIQUE (psp_reference, event_code))",
    ] {
        store.execute_unprepared(sql).await?;
    }
    Ok(())
}

pub(super) fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Whether `given` is the secret, compared in constant time.
pub(super) fn same_secret(given: &str, secret: &str) -> bool {
    use subtle::ConstantTimeEq;
    !secret.is_empty() && given.len() == secret.len() && bool::from(given.as_bytes().ct_eq(secret.as_bytes()))
}

pub(super) enum Claim {
    /// The answer given to this key before.
    Replay { status: StatusCode, body: Value },
    /// The key came with another request.
    Conflict,
    /// Run the request under this tracking id: a first use, or (`repeat`) a request seen before
    /// whose answer was never stored, which is answered from the engine's record of the
    /// tracking id when it has one (the engine gives its effect once per tracking id).
    Run { tracking_id: String, repeat: bool },
}

/// Claims an idempotency key for a request with `fingerprint`. A key older than the key window
/// is forgotten: the request runs as a new one (as at Adyen, where it could move money again).
pub(super) async fn claim(s: &Sandbox, key: &str, fingerprint: &str) -> Result<Claim, DbErr> {
    let db = &s.inner.store;
    let now = s.inner.clock.now();
    for _ in 0..2 {
        let row = db.query_one_raw(stmt("SELECT fingerprint, tracking_id, created_at, status, response FROM sandbox_keys WHERE key = ?", vec![key.into()])).await?;
        let Some(row) = row else {
            let tracking_id = uuid::Uuid::new_v4().to_string();
            let inserted = db
                .execute_raw(stmt(
                    "INSERT INTO sandbox_keys (key, fingerprint, tracking_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                    vec![key.into(), fingerprint.into(), tracking_id.clone().into(), now.to_rfc3339().into()],
                ))
                .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Claim::Run { tracking_id, repeat: false });
            }
            continue; // claimed at the same moment by another request: read it
        };
        let created: String = row.try_get("", "created_at")?;
        let created = chrono::DateTime::parse_from_rfc3339(&created).map_err(|e| DbErr::Custom(e.to_string()))?.with_timezone(&chrono::Utc);
        if now - created > s.inner.options.key_window {
            let tracking_id = uuid::Uuid::new_v4().to_string();
            db.execute_raw(stmt(
                "UPDATE sandbox_keys SET fingerprint = ?, tracking_id = ?, created_at = ?, status = NULL, response = NULL WHERE key = ?",
                vec![fingerprint.into(), tracking_id.clone().into(), now.to_rfc3339().into(), key.into()],
            ))
            .await?;
            return Ok(Claim::Run { tracking_id, repeat: false });
        }
        let stored_fingerprint: String = row.try_get("", "fingerprint")?;
        if stored_fingerprint != fingerprint {
            return Ok(Claim::Conflict);
        }
        let status: Option<i32> = row.try_get("", "status")?;
        let response: Option<String> = row.try_get("", "response")?;
        return Ok(match (status, response) {
            (Some(status), Some(body)) => Claim::Replay {
                status: StatusCode::from_u16(u16::try_from(status).unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body: serde_json::from_str(&body).unwrap_or(Value::Null),
            },
            _ => Claim::Run { tracking_id: row.try_get("", "tracking_id")?, repeat: true },
        });
    }
    Err(DbErr::Custom(format!("idempotency key {key} could not be claimed")))
}

pub(super) async fn store_answer(s: &Sandbox, key: &str, status: StatusCode, body: &Value) -> Result<(), DbErr> {
    s.inner
        .store
        .execute_raw(stmt(
            "UPDATE sandbox_keys SET status = ?, response = ? WHERE key = ?",
            vec![i32::from(status.as_u16()).into(), body.to_string().into(), key.into()],
        ))
        .await?;
    Ok(())
}

pub(super) async fn owner_of(s: &Sandbox, token: &str) -> Result<Option<String>, DbErr> {
    let row = s.inner.store.query_one_raw(stmt("SELECT shopper FROM sandbox_owners WHERE token = ?", vec![token.into()])).await?;
    row.map(|r| r.try_get("", "shopper")).transpose()
}

pub(super) async fn set_owner(s: &Sandbox, token: &str, shopper: &str) -> Result<(), DbErr> {
    s.inner
        .store
        .execute_raw(stmt("INSERT INTO sandbox_owners (token, shopper) VALUES (?, ?) ON CONFLICT (token) DO NOTHING", vec![token.into(), shopper.into()]))
        .await?;
    Ok(())
}

/// The stored cards of `shopper`, as `/storedPaymentMethods` lists them.
pub(super) async fn stored_for(s: &Sandbox, shopper: &str) -> Result<Vec<StoredPaymentMethod>, DbErr> {
    let rows = s.inner.store.query_all_raw(stmt("SELECT token FROM sandbox_owners WHERE shopper = ? ORDER BY token", vec![shopper.into()])).await?;
    let mut out = Vec::new();
    for r in rows {
        let token: String = r.try_get("", "token")?;
        if let Ok(Some(t)) = s.inner.engine.describe_token(&token).await {
            let (month, year) = t.expiry.split_once('/').unwrap_or(("", ""));
            out.push(StoredPaymentMethod {
                id: t.token,
                brand: t.payment_method_variant,
                last_four: t.last_four,
                expiry_month: month.to_string(),
                expiry_year: format!("20{year}"),
                holder_name: t.holder,
                kind: "scheme".into(),
            });
        }
    }
    Ok(out)
}

/// The capture of payment `psp` a refund of `amount` applies to: the one named (if it belongs to
/// the payment), else the earliest with that much left to refund.
pub(super) async fn capture_of(s: &Sandbox, psp: &str, named: Option<&str>, amount: i64) -> Result<Option<String>, DbErr> {
    let captures = sc::Entity::find()
        .filter(sc::Column::AuthorizationReference.eq(psp))
        .order_by_asc(sc::Column::CreatedAt)
        .all(&s.inner.store)
        .await?;
    Ok(match named {
        Some(c) => captures.into_iter().find(|x| x.reference == c).map(|x| x.reference),
        None => captures.into_iter().find(|x| x.amount_minor - x.refunded_minor >= amount).map(|x| x.reference),
    })
}
