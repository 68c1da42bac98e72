//! The cost of one statement's round trip through SeaORM and the driver, without the pipeline:
//! the floor under any design that runs statements one at a time (issue 3's throughput targets).
//! `cargo run --release -p payments --features server --example roundtrip -- URL [N]` (N from 100,
//! default 5000; it creates and
//! drops a scratch table, `roundtrip_probe`, in that database)
//! prints one JSON line: microseconds per `SELECT 1` (on the pool, and inside a transaction), per
//! four `SELECT 1` in one transaction, per single-row INSERT inside one transaction,
//! per BEGIN+INSERT+COMMIT, and per row of 64-row multi-row INSERTs, each measured over N.
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: roundtrip URL [N]")?;
    let n: u32 = match args.next() {
        None => 5_000,
        Some(v) => v.parse().ok().filter(|n| (100..=10_000_000).contains(n)).ok_or_else(|| format!("N must be a whole number from 100 to 10000000, not {v:?}"))?,
    };
    let db = payments::db::connect(&url).await?;
    let backend = db.get_database_backend();
    let ph = |i: usize| if backend == DbBackend::Postgres { format!("${i}") } else { "?".into() };
    db.execute_unprepared("DROP TABLE IF EXISTS roundtrip_probe").await?;
    db.execute_unprepared("CREATE TABLE roundtrip_probe (id INTEGER, note TEXT)").await?;
    let per = |t: Instant, count: u32| (t.elapsed().as_secs_f64() * 1e6 / f64::from(count) * 10.0).round() / 10.0;

    let t = Instant::now();
    for _ in 0..n {
        db.query_one_raw(Statement::from_string(backend, "SELECT 1")).await?;
    }
    let select_us = per(t, n);

    let txn = db.begin().await?;
    let t = Instant::now();
    for _ in 0..n {
        txn.query_one_raw(Statement::from_string(backend, "SELECT 1")).await?;
    }
    let select_in_txn_us = per(t, n);
    txn.commit().await?;

    // Four reads together: one at a time on the pool, or in one read-only transaction.
    let groups = n / 4;
    let t = Instant::now();
    for _ in 0..groups {
        let txn = db.begin().await?;
        for _ in 0..4 {
            txn.query_one_raw(Statement::from_string(backend, "SELECT 1")).await?;
        }
        txn.commit().await?;
    }
    let four_selects_in_txn_us = per(t, groups);

    let insert = format!("INSERT INTO roundtrip_probe (id, note) VALUES ({}, {})", ph(1), ph(2));
    let txn = db.begin().await?;
    let t = Instant::now();
    for i in 0..n {
        txn.execute_raw(Statement::from_sql_and_values(backend, &insert, [i64::from(i).into(), "x".into()])).await?;
    }
    let insert_in_txn_us = per(t, n);
    txn.commit().await?;

    let commits = n / 10;
    let t = Instant::now();
    for i in 0..commits {
        let txn = db.begin().await?;
        txn.execute_raw(Statement::from_sql_and_values(backend, &insert, [i64::from(i).into(), "y".into()])).await?;
        txn.commit().await?;
    }
    let txn_us = per(t, commits);

    let rows = 64usize;
    let multi = format!(
        "INSERT INTO roundtrip_probe (id, note) VALUES {}",
        (0..rows).map(|r| format!("({}, {})", ph(2 * r + 1), ph(2 * r + 2))).collect::<Vec<_>>().join(", ")
    );
    let batches = (n / rows as u32).max(1);
    let txn = db.begin().await?;
    let t = Instant::now();
    for b in 0..batches {
        let values: Vec<sea_orm::Value> = (0..rows).flat_map(|r| [i64::from(b * 64 + r as u32).into(), "z".into()]).collect();
        txn.execute_raw(Statement::from_sql_and_values(backend, &multi, values)).await?;
    }
    let multi_row_us = per(t, batches * rows as u32);
    txn.commit().await?;
    db.execute_unprepared("DROP TABLE roundtrip_probe").await?;
    println!(
        "{{\"backend\":\"{backend:?}\",\"n\":{n},\"select_1_us\":{select_us},\"select_1_in_txn_us\":{select_in_txn_us},\"four_selects_in_one_txn_us\":{four_selects_in_txn_us},\"insert_in_txn_us\":{insert_in_txn_us},\"begin_insert_commit_us\":{txn_us},\"per_row_of_64_row_insert_us\":{multi_row_us}}}"
    );
    Ok(())
}
