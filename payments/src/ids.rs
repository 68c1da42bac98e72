//! Ids taken before the rows that carry them are inserted (issue #3). Stage 1 of a group of
//! invoicings inserts invoices, payment journals, payment processes and capture intents, and
//! needs each one's id for the rows that refer to it (lines, numbers, stage rows, log lines).
//! Inserted with `RETURNING`, each kind was a statement of its own, and on PostgreSQL a round
//! trip on the path of every invoicing in the group; with their ids taken first, all four kinds
//! are taken in one statement and the inserts go with the other writes ([`crate::writes`]).
//!
//! On PostgreSQL the ids come from each table's own sequence (`nextval`), exactly as a plain
//! insert would take them: another transaction never gets the same one, and one taken by a
//! transaction that is rolled back is skipped, as after any failed insert. On SQLite, which has
//! one writer, they follow the table's largest id ever given (`sqlite_sequence`, kept by
//! `AUTOINCREMENT`, or the largest id present): a transaction that took ids and then found that
//! another connection had written first cannot commit (SQLite refuses its first write, as it
//! refuses any transaction that read before another's commit), so no id is ever given twice.
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// `n` new ids of each table of `wants` (its name, as an entity gives it, and how many), in one
/// statement, in the caller's transaction: the ids of each, ascending, in the order asked. On
/// SQLite they follow what is stored: insert the rows before taking more ids of the same table
/// in the same transaction.
pub async fn take(db: &impl ConnectionTrait, wants: &[(&'static str, usize)]) -> Result<Vec<Vec<i32>>, DbErr> {
    let backend = db.get_database_backend();
    let asked: Vec<(usize, &str, usize)> = wants.iter().enumerate().filter(|(_, (_, n))| *n > 0).map(|(k, (t, n))| (k, *t, *n)).collect();
    let mut out: Vec<Vec<i32>> = wants.iter().map(|(_, n)| Vec::with_capacity(*n)).collect();
    if asked.is_empty() {
        return Ok(out);
    }
    let sql = statement(backend, &asked);
    for row in db.query_all_raw(Statement::from_string(backend, sql)).await? {
        let k: i32 = row.try_get("", "k")?;
        let id: i64 = row.try_get("", "id")?;
        let k = usize::try_from(k).map_err(|_| DbErr::Custom("an id was taken for no table".into()))?;
        let id = i32::try_from(id).map_err(|_| DbErr::Custom(format!("the ids of {} have run past the largest a row can hold", asked.iter().find(|a| a.0 == k).map_or("a table", |a| a.1))))?;
        match (backend, out.get_mut(k)) {
            // One row per table: the largest id given so far.
            (DbBackend::Sqlite, Some(ids)) => {
                let n = wants[k].1 as i32;
                ids.extend((1..=n).map(|i| id + i));
            }
            (_, Some(ids)) => ids.push(id),
            (_, None) => return Err(DbErr::Custom("an id was taken for no table".into())),
        }
    }
    for (k, table, n) in &asked {
        out[*k].sort_unstable();
        if out[*k].len() != *n {
            return Err(DbErr::Custom(format!("{n} ids of {table} were asked for and {} taken", out[*k].len())));
        }
    }
    Ok(out)
}

/// `t` as the database stores it (PostgreSQL keeps microseconds), for a row built here and not
/// read back: what the caller holds is then what a reader gets, on both databases.
pub fn as_stored(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The statement taking the ids: `(k, id)` rows, `k` being the place in `wants` (table names
/// come from the entities, never from input).
fn statement(backend: DbBackend, asked: &[(usize, &str, usize)]) -> String {
    let parts: Vec<String> = asked
        .iter()
        .map(|(k, table, n)| match backend {
            DbBackend::Postgres => format!("SELECT {k}::int4 AS k, nextval(pg_get_serial_sequence('\"{table}\"', 'id')) AS id FROM generate_series(1, {n})"),
            _ => format!(
                "SELECT {k} AS k, max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), coalesce((SELECT max(id) FROM \"{table}\"), 0)) AS id"
            ),
        })
        .collect();
    parts.join(" UNION ALL ")
}
