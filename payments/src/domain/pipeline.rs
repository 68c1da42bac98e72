//! The invoice payment process (R-PIP-1..4): four stages, each recorded, a process that becomes
//! Incomplete when a stage after posting the invoice fails, and Resume/Terminate as the only ways
//! out of Incomplete. Illegal moves are refused with a typed error.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    PostInvoice,
    CaptureOrRefund,
    PostPaymentJournal,
    AuthorizeRemaining,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::PostInvoice, Stage::CaptureOrRefund, Stage::PostPaymentJournal, Stage::AuthorizeRemaining];

    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::PostInvoice => "Create and post the customer invoice",
            Stage::CaptureOrRefund => "Capture or refund the card",
            Stage::PostPaymentJournal => "Post the payment journal",
            Stage::AuthorizeRemaining => "Authorize the remaining payment amount",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Stage::PostInvoice => "post_invoice",
            Stage::CaptureOrRefund => "capture_or_refund",
            Stage::PostPaymentJournal => "post_payment_journal",
            Stage::AuthorizeRemaining => "authorize_remaining",
        }
    }

    pub fn from_code(code: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.code() == code)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageStatus {
    Pending,
    Running,
    Succeeded,
    /// Nothing to do (e.g. no balance left to authorize).
    Skipped,
    Failed,
}

impl StageStatus {
    pub const ALL: [StageStatus; 5] =
        [StageStatus::Pending, StageStatus::Running, StageStatus::Succeeded, StageStatus::Skipped, StageStatus::Failed];
    pub fn code(self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Running => "running",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Skipped => "skipped",
            StageStatus::Failed => "failed",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
    pub fn label(self) -> &'static str {
        match self {
            StageStatus::Pending => "Not started",
            StageStatus::Running => "Running",
            StageStatus::Succeeded => "Succeeded",
            StageStatus::Skipped => "Nothing to do",
            StageStatus::Failed => "Failed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessStatus {
    Running,
    /// A stage after the invoice was posted failed; shown on Incomplete cards payment (R-PIP-3).
    Incomplete,
    Completed,
    Terminated,
    /// Posting the invoice itself failed: nothing happened, nothing to resume.
    NotPosted,
    /// With status monitoring off, the card was not charged: the invoice was reversed by a new
    /// entry and its quantities are open again; invoicing was refused (issue #39, R-PIP-6).
    Reversed,
}

impl ProcessStatus {
    pub const ALL: [ProcessStatus; 6] = [
        ProcessStatus::Running,
        ProcessStatus::Incomplete,
        ProcessStatus::Completed,
        ProcessStatus::Terminated,
        ProcessStatus::NotPosted,
        ProcessStatus::Reversed,
    ];
    pub fn code(self) -> &'static str {
        match self {
            ProcessStatus::Running => "running",
            ProcessStatus::Incomplete => "incomplete",
            ProcessStatus::Completed => "completed",
            ProcessStatus::Terminated => "terminated",
            ProcessStatus::NotPosted => "not_posted",
            ProcessStatus::Reversed => "reversed",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
    pub fn label(self) -> &'static str {
        match self {
            ProcessStatus::Running => "Running",
            ProcessStatus::Incomplete => "Incomplete",
            ProcessStatus::Completed => "Completed",
            ProcessStatus::Terminated => "Terminated",
            ProcessStatus::NotPosted => "Invoice not posted",
            ProcessStatus::Reversed => "Card not charged, invoice reversed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TransitionError {
    #[error("{} cannot start now: the next stage to run is {}", .0.label(), .1.map(|s| s.label()).unwrap_or("none"))]
    OutOfOrder(Stage, Option<Stage>),
    #[error("the process is {0:?}; only a running process moves its stages")]
    NotRunning(ProcessStatus),
    #[error("{} is not running", .0.label())]
    StageNotRunning(Stage),
    #[error("only an incomplete process can be resumed or terminated; this one is {0:?}")]
    NotIncomplete(ProcessStatus),
}

/// The state of one invoice's payment process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub status: ProcessStatus,
    pub stages: [StageStatus; 4],
    pub attempts: [u32; 4],
}

impl Default for Process {
    fn default() -> Self {
        Process { status: ProcessStatus::Running, stages: [StageStatus::Pending; 4], attempts: [0; 4] }
    }
}

impl Process {
    fn idx(stage: Stage) -> usize {
        stage as usize
    }

    pub fn stage(&self, stage: Stage) -> StageStatus {
        self.stages[Self::idx(stage)]
    }

    /// The first stage that has neither succeeded nor been skipped.
    pub fn next_stage(&self) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| !matches!(self.stage(*s), StageStatus::Succeeded | StageStatus::Skipped))
    }

    pub fn failed_stage(&self) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| self.stage(*s) == StageStatus::Failed)
    }

    pub fn start(&mut self, stage: Stage) -> Result<(), TransitionError> {
        if self.status != ProcessStatus::Running {
            return Err(TransitionError::NotRunning(self.status));
        }
        let next = self.next_stage();
        if next != Some(stage) || !matches!(self.stage(stage), StageStatus::Pending | StageStatus::Failed) {
            return Err(TransitionError::OutOfOrder(stage, next));
        }
        self.stages[Self::idx(stage)] = StageStatus::Running;
        self.attempts[Self::idx(stage)] += 1;
        Ok(())
    }

    fn finish(&mut self, stage: Stage, to: StageStatus) -> Result<(), TransitionError> {
        if self.stage(stage) != StageStatus::Running {
            return Err(TransitionError::StageNotRunning(stage));
        }
        self.stages[Self::idx(stage)] = to;
        if self.next_stage().is_none() {
            self.status = ProcessStatus::Completed;
        }
        Ok(())
    }

    pub fn succeed(&mut self, stage: Stage) -> Result<(), TransitionError> {
        self.finish(stage, StageStatus::Succeeded)
    }

    pub fn skip(&mut self, stage: Stage) -> Result<(), TransitionError> {
        self.finish(stage, StageStatus::Skipped)
    }

    /// A failed stage makes the process Incomplete, or NotPosted if the invoice was never posted.
    pub fn fail(&mut self, stage: Stage) -> Result<(), TransitionError> {
        if self.stage(stage) != StageStatus::Running {
            return Err(TransitionError::StageNotRunning(stage));
        }
        self.stages[Self::idx(stage)] = StageStatus::Failed;
        self.status = if stage == Stage::PostInvoice { ProcessStatus::NotPosted } else { ProcessStatus::Incomplete };
        Ok(())
    }

    /// Resume restarts from the failed stage (R-PIP-4); returns it.
    pub fn resume(&mut self) -> Result<Stage, TransitionError> {
        if self.status != ProcessStatus::Incomplete {
            return Err(TransitionError::NotIncomplete(self.status));
        }
        self.status = ProcessStatus::Running;
        Ok(self.next_stage().expect("an incomplete process has a stage left"))
    }

    pub fn terminate(&mut self) -> Result<(), TransitionError> {
        if self.status != ProcessStatus::Incomplete {
            return Err(TransitionError::NotIncomplete(self.status));
        }
        self.status = ProcessStatus::Terminated;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_run_in_order_to_completion() {
        // R-PIP-1
        let mut p = Process::default();
        assert_eq!(p.start(Stage::CaptureOrRefund), Err(TransitionError::OutOfOrder(Stage::CaptureOrRefund, Some(Stage::PostInvoice))));
        for s in [Stage::PostInvoice, Stage::CaptureOrRefund, Stage::PostPaymentJournal] {
            p.start(s).unwrap();
            p.succeed(s).unwrap();
        }
        p.start(Stage::AuthorizeRemaining).unwrap();
        p.skip(Stage::AuthorizeRemaining).unwrap();
        assert_eq!(p.status, ProcessStatus::Completed);
        assert_eq!(p.attempts, [1, 1, 1, 1]);
        assert_eq!(p.start(Stage::PostInvoice), Err(TransitionError::NotRunning(ProcessStatus::Completed)));
    }

    #[test]
    fn a_failure_after_posting_is_incomplete_and_resumes_from_the_failed_stage() {
        // R-PIP-3, R-PIP-4
        let mut p = Process::default();
        for s in [Stage::PostInvoice, Stage::CaptureOrRefund] {
            p.start(s).unwrap();
            p.succeed(s).unwrap();
        }
        p.start(Stage::PostPaymentJournal).unwrap();
        p.fail(Stage::PostPaymentJournal).unwrap();
        assert_eq!(p.status, ProcessStatus::Incomplete);
        assert_eq!(p.failed_stage(), Some(Stage::PostPaymentJournal));
        assert!(p.start(Stage::PostPaymentJournal).is_err(), "an incomplete process does not move until resumed");
        assert_eq!(p.resume(), Ok(Stage::PostPaymentJournal));
        assert_eq!(p.start(Stage::CaptureOrRefund), Err(TransitionError::OutOfOrder(Stage::CaptureOrRefund, Some(Stage::PostPaymentJournal))),
            "resume never repeats a stage that succeeded (no second capture)");
        p.start(Stage::PostPaymentJournal).unwrap();
        assert_eq!(p.attempts[Stage::PostPaymentJournal as usize], 2);
    }

    #[test]
    fn a_failed_invoice_posting_leaves_nothing_to_resume() {
        let mut p = Process::default();
        p.start(Stage::PostInvoice).unwrap();
        p.fail(Stage::PostInvoice).unwrap();
        assert_eq!(p.status, ProcessStatus::NotPosted);
        assert_eq!(p.resume(), Err(TransitionError::NotIncomplete(ProcessStatus::NotPosted)));
    }

    #[test]
    fn terminate_only_from_incomplete() {
        let mut p = Process::default();
        assert!(p.terminate().is_err());
        p.start(Stage::PostInvoice).unwrap();
        p.succeed(Stage::PostInvoice).unwrap();
        p.start(Stage::CaptureOrRefund).unwrap();
        p.fail(Stage::CaptureOrRefund).unwrap();
        p.terminate().unwrap();
        assert_eq!(p.status, ProcessStatus::Terminated);
        assert!(p.resume().is_err());
    }

    #[test]
    fn stage_codes_round_trip() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_code(s.code()), Some(s));
        }
        assert_eq!(Stage::AuthorizeRemaining.number(), 4);
    }
}
