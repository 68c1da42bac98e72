//! Timings for whoever listens (issue #41: no benchmark code in the production path). The
//! pipeline's phases and the statements `writes` sends unprepared are reported as `tracing`
//! events at TRACE level under the targets below; when nobody listens, an event costs one check of
//! its call site's cached interest. `paystage bench` collects them (`server::bench`); a server
//! shows them with `PAYSTAGE_LOG=paystage::phase=trace`.
use std::time::{Duration, Instant};

/// Target of a phase's time: fields `phase` (its name) and `micros`.
pub const PHASE: &str = "paystage::phase";
/// Target of a statement SeaORM's metric callback does not see: fields `sql` and `micros`.
pub const STATEMENT: &str = "paystage::statement";

/// Reports `elapsed` as time spent in phase `name` (built only when someone listens).
pub fn phase(name: impl FnOnce() -> String, elapsed: Duration) {
    tracing::trace!(target: PHASE, phase = %name(), micros = elapsed.as_micros() as u64);
}

/// Awaits `step` and reports its time as phase `name`: where a transaction's time goes (its begin
/// waits for the connection, its writes, its commit).
pub async fn timed<T>(name: &'static str, step: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = step.await;
    phase(|| name.into(), started.elapsed());
    out
}

/// Reports a statement sent outside SeaORM's metric callback (several sent together count as one).
pub fn statement(sql: &str, elapsed: Duration) {
    tracing::trace!(target: STATEMENT, sql = sql, micros = elapsed.as_micros() as u64);
}
