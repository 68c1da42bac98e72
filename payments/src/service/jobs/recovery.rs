//! Recovery: what a stopped server left running, finished without moving money twice.
use crate::error::ServiceResult;
use crate::pipeline::RecoveryReport;
use crate::service::{authorizations, cancellation, Services};

/// Takes over up to `batch` payment processes whose lease ran out (their server stopped) and runs
/// them to completion or to Incomplete; resolves authorization requests left pending by placement
/// and by the resubmit job; finishes interrupted deposit captures and cancellations (R-PRE).
pub async fn recover(s: &Services, batch: u64) -> ServiceResult<RecoveryReport> {
    let mut report = crate::pipeline::recover_processes(s, batch).await?;
    report.requests_resolved += authorizations::resolve_lost_answers(s, batch).await?;
    report.prepayments = cancellation::recover(s, batch).await?;
    Ok(report)
}
