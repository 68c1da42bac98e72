//! The steps of a batched group after stage 1: each waits for the rest of its group (or gives up
//! waiting), and one member takes the step for all.
use crate::domain::payment_views::InvoiceOutcome;
use crate::domain::pipeline::ProcessStatus;
use crate::error::{InvoicingError, ServiceError, ServiceResult};
use crate::turns::Waited;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;
use super::super::runner::{Ended};
use super::*;

/// The invoicings one turn posted: for each step, how many of them may still arrive at it (those
/// that have neither reached it nor left the batched path).
#[derive(Debug)]
pub(super) struct Group {
    pub(super) on_the_way: [std::sync::atomic::AtomicUsize; STEPS],
}

impl Group {
    pub(super) fn of(n: usize) -> Group {
        Group { on_the_way: std::array::from_fn(|_| std::sync::atomic::AtomicUsize::new(n)) }
    }

    pub(super) fn on_the_way(&self, kind: StepKind) -> usize {
        self.on_the_way[kind as usize].load(Ordering::Acquire)
    }
}

/// One invoicing's place in its [`Group`]: arriving at a step counts it off that step; leaving
/// the batched path (handed over, done, failed, dropped) counts it off every step still ahead,
/// so that no step waits for it.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) group: Arc<Group>,
    pub(super) batches: Arc<InvoiceBatches>,
    /// The first step it has not reached.
    pub(super) next: usize,
}

impl Member {
    pub(super) fn arrive(&mut self, kind: StepKind) {
        let k = kind as usize;
        for step in self.next..=k {
            self.group.on_the_way[step].fetch_sub(1, Ordering::AcqRel);
        }
        self.next = self.next.max(k + 1);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        for step in self.next..self.group.on_the_way.len() {
            self.group.on_the_way[step].fetch_sub(1, Ordering::AcqRel);
            self.batches.steps[step].moved.notify_one();
        }
    }
}

/// The steps of stages 2–4 that invoicings take together after stage 1 (which requests their
/// captures), in order: after the processor calls, the captures recorded with the payment
/// journals and the completions.
#[derive(Clone, Copy, Debug)]
pub(super) enum StepKind {
    Settle = 0,
}

/// How many [`StepKind`]s there are.
pub(super) const STEPS: usize = 1;

impl StepKind {
    /// The step's name followed by `what`, built only when the bench profile is on.
    pub(super) fn name(self, what: &'static str) -> impl FnOnce() -> String {
        move || format!("{self:?}{what}")
    }
}

/// Invoicings waiting for one step, and whose turn it is to run it.
#[derive(Default)]
pub(super) struct Gather {
    pub(super) waiting: std::sync::Mutex<Vec<(u64, Going, oneshot::Sender<Step>)>>,
    pub(super) turn: Arc<tokio::sync::Mutex<()>>,
    /// Told when an invoicing arrives at this step or leaves its group before it.
    pub(super) moved: tokio::sync::Notify,
}

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gather").finish_non_exhaustive()
    }
}

/// How a step left one invoicing.
pub(super) enum Step {
    /// On to the next step.
    Next(Going),
    /// To be run on one at a time from here, `ended` being the stage this step ran.
    HandOver(Going, Option<Ended>),
    /// The step ended the run with this status.
    Done(Going, ProcessStatus),
    /// The step failed (ticket, error); its process stays running under this server's lease, for
    /// recovery to finish.
    Failed(u64, String),
}

pub(super) enum Flow {
    Next(Going),
    Out(ServiceResult<InvoiceOutcome>),
}

/// Runs step `kind` for `g` together with every invoicing waiting for the same step: whoever gets
/// the turn while still waiting runs it for all of them (in a spawned task, so that a caller going
/// away abandons no one), and each gets back how the step left it.
pub(super) async fn gather(q: &Gather, g: Going, kind: StepKind) -> ServiceResult<Flow> {
    let ticket = g.ticket;
    let group = g.member.group.clone();
    let (gap, all) = batches(&g.s).linger;
    let (tx, mut rx) = oneshot::channel();
    {
        let mut waiting = q.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let mut g = g;
        g.member.arrive(kind);
        waiting.push((ticket, g, tx));
    }
    q.moved.notify_one();
    // Wait for the step's turn, or for a turn that took this invoicing to answer.
    let step = match crate::turns::turn_or_answer(&q.turn, &mut rx).await {
        Waited::Answered(done) => done,
        Waited::Turn(turn) => {
            take_step(q, ticket, &group, kind, (gap, all), turn).await;
            rx.await
        }
    };
    let step = step.map_err(|_| ServiceError::from(InvoicingError::StoppedAfterPosting))?;
    Ok(match step {
        Step::Next(g) => Flow::Next(g),
        Step::HandOver(g, ended) => Flow::Out(finish(g, ended).await),
        Step::Done(g, status) => Flow::Out(g.outcome(status)),
        Step::Failed(_, text) => Flow::Out(Err(ServiceError::Database(sea_orm::DbErr::Custom(text)))),
    })
}

/// With step `kind`'s turn: runs the step for every invoicing waiting for it that runs alike with
/// `ticket`'s, unless an earlier turn took that one.
pub(super) async fn take_step(q: &Gather, ticket: u64, group: &Group, kind: StepKind, (gap, all): (std::time::Duration, std::time::Duration), turn: tokio::sync::OwnedMutexGuard<()>) {
    // The turn's holder waits for the rest of its group: invoicings posted together reach each
    // step a little apart (their processor calls end at different times, and on SQLite the
    // processor's own writes take turns), and a step taken by whoever has arrived would split the
    // group into several transactions run one after another. It waits until every member still
    // on its way has arrived, as long as they keep arriving (`LINGER` at most between two) and
    // for `LINGER_MAX` in all (by default): a member stuck on a slow call is left to a later turn.
    let started = tokio::time::Instant::now();
    let mut deadline = started + gap;
    loop {
        let mine_waiting = q.waiting.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(t, ..)| *t == ticket);
        if !mine_waiting || group.on_the_way(kind) == 0 {
            break;
        }
        tokio::select! {
            _ = q.moved.notified() => deadline = (tokio::time::Instant::now() + gap).min(started + all),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    crate::observe::phase(kind.name(" linger"), started.elapsed());
    // Everything waiting that runs alike with this invoicing (two groups of one server may be at
    // the same step; a group of other services waits for the next turn).
    let taken: Vec<_> = {
        let mut waiting = q.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match waiting.iter().find(|(t, ..)| *t == ticket).map(|(_, g, _)| g.s.clone()) {
            Some(mine) => {
                let (taken, rest) = std::mem::take(&mut *waiting).into_iter().partition(|(_, g, _)| alike(&g.s, &mine));
                *waiting = rest;
                taken
            }
            None => Vec::new(),
        }
    };
    if taken.is_empty() {
        drop(turn);
    } else {
        tokio::spawn(async move {
            let mut senders = Vec::with_capacity(taken.len());
            let mut gs = Vec::with_capacity(taken.len());
            for (t, g, tx) in taken {
                senders.push((t, tx));
                gs.push(g);
            }
            let started = std::time::Instant::now();
            let batches = shared(&gs[0].s);
            batches.step_runs[kind as usize].fetch_add(1, Ordering::Relaxed);
            let mut out = step(kind, gs).await;
            crate::observe::phase(kind.name(" step"), started.elapsed());
            drop(turn);
            for (t, tx) in senders {
                let mine = out.iter().position(|o| o.ticket() == Some(t)).map(|i| out.swap_remove(i));
                let _ = tx.send(mine.unwrap_or(Step::Failed(t, "the step lost this invoicing".into())));
            }
        });
    }
}

impl Step {
    pub(super) fn ticket(&self) -> Option<u64> {
        match self {
            Step::Next(g) | Step::HandOver(g, _) | Step::Done(g, _) => Some(g.ticket),
            Step::Failed(t, _) => Some(*t),
        }
    }
}

/// One step for all of `gs`; a database error fails the step for all those still in it (as on
/// the one-at-a-time path, their processes stay running under the lease until recovery).
pub(super) async fn step(kind: StepKind, mut gs: Vec<Going>) -> Vec<Step> {
    let s = gs[0].s.clone();
    let mut out = Vec::new();
    let result = match kind {
        StepKind::Settle => settle(&s, &mut gs, &mut out).await,
    };
    match result {
        Ok(()) => out.extend(gs.into_iter().map(Step::Next)),
        Err(e) => {
            let text = e.to_string();
            out.extend(gs.into_iter().map(|g| Step::Failed(g.ticket, text.clone())));
        }
    }
    out
}
