//! The stage execution log of a payment process.
use crate::domain::pipeline::Stage;
use crate::entity::stage_log;
use crate::runtime::Services;
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbErr, Set,
};
use crate::writes::Writes;

/// One line of a stage's execution log.
#[derive(Debug)]
pub(crate) struct LogLine {
    pub at: DateTime<Utc>,
    pub stage: Stage,
    pub attempt: i32,
    pub message: String,
}

/// Appends lines to a process's execution log in one statement.
pub(crate) async fn log_lines(db: &impl ConnectionTrait, process_id: i32, lines: Vec<LogLine>) -> Result<(), DbErr> {
    log_lines_of(db, lines.into_iter().map(|l| (process_id, l))).await
}

/// Appends lines to the execution logs of several processes, (process, line), in one round trip.
pub(crate) async fn log_lines_of(db: &impl ConnectionTrait, lines: impl IntoIterator<Item = (i32, LogLine)>) -> Result<(), DbErr> {
    let mut w = Writes::on(db);
    log_lines_into(&mut w, lines);
    w.run(db).await.map(|_| ())
}

/// [`log_lines_of`] added to `w`.
pub(crate) fn log_lines_into(w: &mut Writes, lines: impl IntoIterator<Item = (i32, LogLine)>) {
    let rows: Vec<stage_log::ActiveModel> = lines
        .into_iter()
        .map(|(process_id, l)| stage_log::ActiveModel {
            process_id: Set(process_id),
            stage: Set(l.stage.code().to_string()),
            attempt: Set(l.attempt),
            at: Set(l.at),
            message: Set(l.message),
            ..Default::default()
        })
        .collect();
    // In parts small enough to be sent at once (see `Writes::push_rows`).
    w.push_rows(rows);
}

pub(crate) async fn log(db: &impl ConnectionTrait, at: DateTime<Utc>, process_id: i32, stage: Stage, attempt: i32, message: String) -> Result<(), DbErr> {
    log_lines(db, process_id, vec![LogLine { at, stage, attempt, message }]).await
}

/// Appends a line to a stage's execution log in a bookkeeping transaction (see
/// [`crate::db::begin_bookkeeping`]).
pub(crate) async fn log_relaxed(s: &Services, process_id: i32, stage: Stage, attempt: i32, message: String) -> Result<(), DbErr> {
    let txn = crate::db::begin_bookkeeping(&s.db).await?;
    log(&txn, s.now(), process_id, stage, attempt, message).await?;
    txn.commit().await
}
