//! Stage marks not yet written (R-PIP-2). A stage's start mark, its end mark and their log lines
//! are written by the stage's first own transaction (the capture's intent, the payment journal),
//! or, for a stage that writes nothing of its own, together with the next stage's first write or
//! the process's completion. So the happy path of an invoice commits once per effect, not once
//! per effect and once per stage boundary. Every flush renews this server's lease first in the
//! same transaction: nothing is written, and no processor request is recorded, without the lease.
use crate::domain::capture::CapturePath;
use crate::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use crate::entity::{payment_process as pp, process_stage as ps};
use crate::runtime::Services;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr};
use crate::writes::Writes;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryTrait};
use super::log::{LogLine};

/// One stage row's pending change: its latest status, with the start and end times to set.
#[derive(Clone, Debug)]
struct Mark {
    stage: Stage,
    status: StageStatus,
    attempt: i32,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

/// The marks and log lines of one run of a process that are not written yet.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    marks: Vec<Mark>,
    lines: Vec<LogLine>,
    /// The stages whose result (succeeded or nothing to do) is among the marks, in order: their
    /// `after:` crash points follow the commit.
    ended: Vec<Stage>,
    /// The stages whose results the last flush wrote, for [`Marks::committed`].
    flushed_ends: Vec<Stage>,
    /// The capture path chosen by this run, written on the process with the next lease renewal.
    capture_path: Option<CapturePath>,
}

impl Mark {
    /// Whether two marks write the same values (on the same stage).
    fn same_values(&self, other: &Mark) -> bool {
        self.stage == other.stage
            && self.status == other.status
            && self.attempt == other.attempt
            && self.started_at == other.started_at
            && self.finished_at == other.finished_at
            && self.error == other.error
    }
}

impl Marks {
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty() && self.lines.is_empty() && self.capture_path.is_none()
    }

    fn mark(&mut self, stage: Stage) -> &mut Mark {
        if let Some(i) = self.marks.iter().position(|m| m.stage == stage) {
            return &mut self.marks[i];
        }
        self.marks.push(Mark { stage, status: StageStatus::Pending, attempt: 0, started_at: None, finished_at: None, error: None });
        self.marks.last_mut().expect("just pushed")
    }

    /// A stage's attempt started at `at`.
    pub fn start(&mut self, stage: Stage, attempt: i32, at: DateTime<Utc>, message: String) {
        let m = self.mark(stage);
        m.status = StageStatus::Running;
        m.attempt = attempt;
        m.started_at = Some(at);
        m.finished_at = None;
        m.error = None;
        self.lines.push(LogLine { at, stage, attempt, message });
    }

    /// A stage's attempt ended at `at` with `status` (a failure carries its error).
    pub fn end(&mut self, stage: Stage, status: StageStatus, attempt: i32, at: DateTime<Utc>, error: Option<String>, message: String) {
        let m = self.mark(stage);
        m.status = status;
        m.attempt = attempt;
        m.finished_at = Some(at);
        m.error = error;
        self.lines.push(LogLine { at, stage, attempt, message });
        if status != StageStatus::Failed {
            self.ended.push(stage);
        }
    }

    /// The capture path the running stage chose, written on the process with the marks.
    pub fn capture_path(&mut self, path: &CapturePath) {
        self.capture_path = Some(path.clone());
    }

    /// A log line of the running stage, written with the marks.
    pub fn line(&mut self, line: LogLine) {
        self.lines.push(line);
    }

    /// Renews this server's lease and writes the pending marks and lines in `txn`; false (nothing
    /// written) if another server holds the lease. With nothing pending, writes nothing.
    pub async fn flush(&mut self, s: &Services, txn: &impl ConnectionTrait, process_id: i32) -> Result<bool, DbErr> {
        flush_many(s, txn, &mut [(process_id, self)]).await
    }

    /// After the commit of a transaction that flushed: the crash points of the stages whose
    /// results it recorded, in stage order.
    pub fn committed(&mut self) {
        for stage in std::mem::take(&mut self.flushed_ends) {
            crate::crashpoint::hit(&format!("after:{}", stage.code()));
        }
    }

    /// Flushes in a transaction of its own (before a stage writes outside its own transaction).
    pub async fn flush_now(&mut self, s: &Services, process_id: i32) -> Result<bool, DbErr> {
        if self.is_empty() {
            return Ok(true);
        }
        let txn = crate::db::begin_bookkeeping(&s.db).await?;
        if !self.flush(s, &txn, process_id).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        txn.commit().await?;
        self.committed();
        Ok(true)
    }
}

/// [`Marks::flush`] for the runs of several processes, (process, marks), in two round trips
/// whatever their number: one lease renewal (with the capture paths chosen), then one UPDATE per
/// set of alike stage marks and the log lines (in parts on PostgreSQL: `Writes::push_rows`), sent together ([`Writes`]). False,
/// with nothing written and every mark kept, if this server does not hold the lease of all of
/// them.
pub(super) async fn flush_many(s: &Services, txn: &impl ConnectionTrait, runs: &mut [(i32, &mut Marks)]) -> Result<bool, DbErr> {
    for (_, m) in runs.iter_mut() {
        m.flushed_ends.clear();
    }
    let ids: Vec<i32> = runs.iter().filter(|(_, m)| !m.is_empty()).map(|(id, _)| *id).collect();
    if ids.is_empty() {
        return Ok(true);
    }
    let paths: Vec<(i32, CapturePath)> = runs.iter().filter_map(|(id, m)| Some((*id, m.capture_path.clone()?))).collect();
    if !renew_leases(s, txn, &ids, &paths).await? {
        return Ok(false);
    }
    for (_, m) in runs.iter_mut() {
        m.capture_path = None;
    }
    let mut w = Writes::on(txn);
    flush_leased(&mut w, runs);
    w.run(txn).await?;
    Ok(true)
}

/// [`flush_many`]'s writes added to `w`, for a transaction that has already renewed the lease of
/// every one of them ([`renew_leases`]), which it does not renew again. No capture path may be
/// pending (it is written with a renewal).
pub(super) fn flush_leased(w: &mut Writes, runs: &mut [(i32, &mut Marks)]) {
    for (_, m) in runs.iter_mut() {
        m.flushed_ends.clear();
    }
    let pending: Vec<&mut (i32, &mut Marks)> = runs.iter_mut().filter(|(_, m)| !m.is_empty()).collect();
    if pending.is_empty() {
        return;
    }
    let mut marks: Vec<(i32, Mark)> = Vec::new();
    let mut lines = Vec::new();
    for (id, m) in pending {
        debug_assert!(m.capture_path.is_none(), "a capture path is written with a lease renewal");
        marks.extend(std::mem::take(&mut m.marks).into_iter().map(|mark| (*id, mark)));
        lines.extend(std::mem::take(&mut m.lines).into_iter().map(|line| (*id, line)));
        m.flushed_ends = std::mem::take(&mut m.ended);
    }
    // Marks that set the same values (in a step of a group: every member's start of stage 3, or
    // end of stage 2) are written by one UPDATE of the stage row of each of their processes; a
    // run of one process writes one UPDATE per stage it marks.
    let mut alike: Vec<(&Mark, Vec<i32>)> = Vec::new();
    for (id, mark) in &marks {
        match alike.iter_mut().find(|(m, _)| m.same_values(mark)) {
            Some((_, ids)) => ids.push(*id),
            None => alike.push((mark, vec![*id])),
        }
    }
    for (m, ids) in alike {
        let mut q = ps::Entity::update_many()
            .col_expr(ps::Column::Status, Expr::value(m.status.code()))
            .col_expr(ps::Column::Attempts, Expr::value(m.attempt))
            .col_expr(ps::Column::Error, Expr::value(m.error.clone()));
        if let Some(at) = m.started_at {
            q = q.col_expr(ps::Column::StartedAt, Expr::value(at));
        }
        // A mark that starts or ends an attempt sets its finish (a start clears it).
        if m.started_at.is_some() || m.finished_at.is_some() {
            q = q.col_expr(ps::Column::FinishedAt, Expr::value(m.finished_at));
        }
        w.push(q.filter(ps::Column::Stage.eq(m.stage.code())).filter(ps::Column::ProcessId.is_in(ids)).into_query());
    }
    super::log::log_lines_into(w, lines);
}

/// Extends this server's lease on a running process; false if another server holds it.
pub(super) async fn renew_lease(s: &Services, db: &impl ConnectionTrait, process_id: i32) -> Result<bool, DbErr> {
    renew_leases(s, db, &[process_id], &[]).await
}

/// [`renew_lease`] for several processes in one statement, setting the capture paths given
/// (process, path) in it; false if another server holds any of them (then the caller's
/// transaction must not commit what it wrote).
pub(super) async fn renew_leases(s: &Services, db: &impl ConnectionTrait, ids: &[i32], capture_paths: &[(i32, CapturePath)]) -> Result<bool, DbErr> {
    let res = db.execute(&lease_renewal(s, ids, capture_paths)).await?;
    Ok(res.rows_affected() == ids.len() as u64)
}

/// The statement of [`renew_leases`]: it renews the lease of as many of `ids` as are running
/// under this server's lease or none.
pub(super) fn lease_renewal(s: &Services, ids: &[i32], capture_paths: &[(i32, CapturePath)]) -> sea_orm::sea_query::UpdateStatement {
    let now = s.now();
    let mut q = pp::Entity::update_many();
    if !capture_paths.is_empty() {
        let set = |column: pp::Column, value: &dyn Fn(&CapturePath) -> String| {
            let case = capture_paths.iter().fold(CaseStatement::new(), |c, (id, path)| c.case(pp::Column::Id.eq(*id), Expr::value(value(path))));
            (column, case.finally(Expr::col(column)))
        };
        for (column, case) in [set(pp::Column::CapturePath, &|p| p.explanation()), set(pp::Column::CaptureKind, &|p| p.kind().code().to_string())] {
            q = q.col_expr(column, case.into());
        }
    }
    q.col_expr(pp::Column::LeaseOwner, Expr::value(s.instance.clone()))
        .col_expr(pp::Column::LeaseUntil, Expr::value(now + s.lease))
        .col_expr(pp::Column::UpdatedAt, Expr::value(now))
        .filter(pp::Column::Id.is_in(ids.iter().copied()))
        .filter(pp::Column::Status.eq(ProcessStatus::Running.code()))
        .filter(
            Condition::any()
                .add(pp::Column::LeaseOwner.eq(s.instance.clone()))
                .add(pp::Column::LeaseUntil.is_null())
                .add(pp::Column::LeaseUntil.lt(now)),
        )
        .into_query()
}
