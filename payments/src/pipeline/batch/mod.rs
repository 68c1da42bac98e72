//! Many invoicings at once (issue #3). Invoicings that arrive while this server is invoicing
//! others wait their turn; the next turn posts everything waiting in one transaction with one
//! statement per kind of row (orders locked, lines moved, invoices, lines, journals, processes,
//! stage rows and log lines, and stage 2 up to the processor: each capture's path and intent),
//! instead of some twenty statements per invoice, and the group then takes the step after the
//! processor calls together ([`gather`]): one transaction for all of them, each processor call on
//! its own. Each invoice is checked and computed exactly as on its
//! own ([`super::document::Plan`]); an invoicing with anything unusual (an order on hold, cancelled, with a
//! deposit, with an authorization expiry has not stored yet, an unfinished process, a quantity
//! that is refused, the same order twice) is left to the one-at-a-time path, which reports it or
//! posts it as before, and a run that leaves the plain path later continues one at a time from
//! the stage it stands at. A database error before stage 1's commit undoes the whole turn and
//! leaves every invoicing of it to that path: nothing of the turn was written. See "Invoicings
//! that arrive together run together" in docs/ARCHITECTURE.md.
use crate::domain::payment_views::InvoiceOutcome;
use crate::ledger::requests::Resolution;
use crate::connector::Outcome;
use crate::domain::pipeline::{ProcessStatus, Stage};
use crate::entity::process_stage as ps;
use crate::error::{InvoicingError, ServiceError, ServiceResult};
use crate::runtime::Services;
use crate::turns::{take_group, Waited};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

mod post;
mod settle;
mod steps;
use post::*;
use settle::*;
use steps::*;
use super::document::{Posted, wanted};
use super::runner::{Ended};

/// This server's invoicings waiting to be posted, and whose turn it is to post them.
#[derive(Debug)]
pub struct InvoiceBatches {
    enabled: bool,
    waiting: std::sync::Mutex<Vec<Job>>,
    turn: Arc<tokio::sync::Mutex<()>>,
    next_job: AtomicU64,
    /// The invoicings waiting for each later step of stages 2–4 ([`StepKind`]).
    steps: [Gather; STEPS],
    /// Turns that posted at least one invoice, and the invoices they posted.
    turns: AtomicU64,
    posted: AtomicU64,
    /// How many times each step ran (for a group, or part of one).
    step_runs: [AtomicU64; STEPS],
    /// How long a step's turn waits for the next member of its group, and for all of them.
    linger: (std::time::Duration, std::time::Duration),
    /// The processor's recent response time to this server's batched captures, in microseconds
    /// (a moving average), which sizes the groups ([`InvoiceBatches::group_max`]).
    call_micros: AtomicU64,
    /// Invoicings on the batched path on this server now, from queueing until their run ends
    /// (which sizes the groups on PostgreSQL, [`InvoiceBatches::group_max`]).
    in_flight: AtomicUsize,
}

impl crate::runtime::Invoicing for InvoiceBatches {}

/// The invoicing state of `s` (what [`crate::runtime::Services::invoicing`] holds).
pub fn batches(s: &Services) -> &InvoiceBatches {
    let any: &dyn std::any::Any = s.invoicing.as_ref();
    any.downcast_ref().expect("Services::invoicing holds the pipeline's InvoiceBatches")
}

/// [`batches`], shared.
fn shared(s: &Services) -> Arc<InvoiceBatches> {
    let any: Arc<dyn std::any::Any + Send + Sync> = s.invoicing.clone();
    any.downcast().expect("Services::invoicing holds the pipeline's InvoiceBatches")
}

impl InvoiceBatches {
    pub fn new(enabled: bool) -> Self {
        InvoiceBatches {
            enabled,
            waiting: Default::default(),
            turn: Default::default(),
            next_job: AtomicU64::new(0),
            steps: Default::default(),
            turns: AtomicU64::new(0),
            posted: AtomicU64::new(0),
            step_runs: Default::default(),
            linger: (LINGER, LINGER_MAX),
            call_micros: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// These batches with a step's turn waiting up to `gap` for the next member of its group and
    /// up to `all` in all (tests use long waits, to tell a group that waits for a member that has
    /// left from one that does not).
    pub fn with_linger(mut self, gap: std::time::Duration, all: std::time::Duration) -> Self {
        self.linger = (gap, all);
        self
    }

    /// Takes the turn and keeps it until the guard is dropped: invoicings wait, then the next turn
    /// posts all of them together (how tests gather a batch).
    pub async fn hold(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.turn.clone().lock_owned().await
    }

    /// The most invoicings the next turn posts. While the processor answers quickly, on SQLite all
    /// of those waiting: one transaction per group, and the group holds the turn to its end, so
    /// that those coming back meanwhile form the next group (SQLite has one writer: a second group
    /// in flight would only wait for it). On PostgreSQL, half of the invoicings in flight on this
    /// server (never fewer than [`SLOW_GROUP`]), each group giving up the turn once it is posted
    /// ([`InvoiceBatches::no_grace`]): two groups in flight, one posted on one connection while
    /// the other takes its later steps on another, so that the database's work of one overlaps
    /// the other's instead of the whole server waiting on one group's steps one after another
    /// (issue #3: at L=0 and C=32 one group of 32 held the turn through its whole run and the two
    /// CPUs were half idle). Once the processor answers slowly, [`SLOW_GROUP`] on both: a group
    /// gives up the turn while it waits on the processor ([`SLOW_CALL`]), and several smaller
    /// groups, posted one after another, each wait on the processor while the others' database
    /// work runs. One group of everything in flight would leave the database idle during the call
    /// and the processor idle during the database work (issue #3: at 50 ms, 32 invoicings in one
    /// group invoiced ~470 a second, in groups of 8 ~530).
    fn group_max(&self, backend: sea_orm::DbBackend) -> usize {
        if self.slow() {
            SLOW_GROUP
        } else if backend == sea_orm::DbBackend::Postgres {
            SLOW_GROUP.max(self.in_flight.load(Ordering::Relaxed).div_ceil(PG_GROUPS_IN_FLIGHT))
        } else {
            usize::MAX
        }
    }

    /// Whether the processor has been answering this server's batched captures slowly
    /// ([`SLOW_PROCESSOR`] or more on average).
    fn slow(&self) -> bool {
        self.call_micros.load(Ordering::Relaxed) >= SLOW_PROCESSOR.as_micros() as u64
    }

    /// Whether a batched capture call gives up its share of the turn as it starts, rather than
    /// after [`SLOW_CALL`]: always on PostgreSQL, where the next group is posted on another
    /// connection meanwhile (see [`run`] and [`InvoiceBatches::group_max`]); never on SQLite.
    fn no_grace(&self, backend: sea_orm::DbBackend) -> bool {
        backend == sea_orm::DbBackend::Postgres
    }

    /// Counts a processor call of `took` into the moving average (one eighth of the new figure).
    fn called(&self, took: std::time::Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self.call_micros.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| Some(avg - avg / 8 + took / 8));
    }

    /// How many invoicings are waiting for a turn.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// (turns that posted invoices, invoices they posted) since these services started.
    pub fn counts(&self) -> (u64, u64) {
        (self.turns.load(Ordering::Relaxed), self.posted.load(Ordering::Relaxed))
    }

    /// How many times each step of stages 2–4 has run since these services started ([`StepKind`]):
    /// the captures recorded with the payment journals and completions.
    pub fn step_runs(&self) -> [u64; STEPS] {
        std::array::from_fn(|i| self.step_runs[i].load(Ordering::Relaxed))
    }
}

/// An invoicing waiting for a turn. It carries its own services: a clone may name another server
/// instance or clock (the database is the same).
struct Job {
    id: u64,
    s: Services,
    actor: String,
    order_id: i32,
    wanted: Vec<(i32, i32)>,
    reply: oneshot::Sender<ServiceResult<Option<Going>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("order_id", &self.order_id).field("wanted", &self.wanted).finish()
    }
}

/// Invoices `quantities` of an order together with the others waiting: posts the invoice, then
/// runs its payment process, each step together with whatever other invoicings are at the same
/// step. `None`: this invoicing is left to the one-at-a-time path (nothing of it was written).
pub(super) async fn invoice(s: &Services, actor: &str, order_id: i32, quantities: &[(i32, i32)]) -> ServiceResult<Option<InvoiceOutcome>> {
    let wanted = wanted(quantities);
    if !batches(s).enabled || wanted.is_empty() {
        return Ok(None);
    }
    let _in_flight = InFlight::count(&batches(s).in_flight);
    let (reply, mut answer) = oneshot::channel();
    let id = batches(s).next_job.fetch_add(1, Ordering::Relaxed);
    let job = Job { id, s: s.clone(), actor: actor.to_string(), order_id, wanted, reply };
    batches(s).waiting.lock().unwrap_or_else(|e| e.into_inner()).push(job);
    // Wait for the turn, or for a turn that took this invoicing to answer (that turn lasts until
    // its invoicings, this one among them, are done).
    let queued = std::time::Instant::now();
    let done = match crate::turns::turn_or_answer(&batches(s).turn, &mut answer).await {
        Waited::Answered(done) => done,
        Waited::Turn(turn) => {
            crate::observe::phase(|| "turn wait".into(), queued.elapsed());
            take_turn(s, id, turn).await;
            answer.await
        }
    };
    crate::observe::phase(|| "until posted".into(), queued.elapsed());
    let stopped = || ServiceError::from(InvoicingError::Stopped);
    let Some(g) = done.map_err(|_| stopped())?? else {
        return Ok(None);
    };
    crate::crashpoint::hit("after:post_invoice");
    run(g).await.map(Some)
}

/// With the turn: posts every invoicing waiting, this one (`id`) among them, unless an earlier
/// turn took it.
async fn take_turn(s: &Services, id: u64, turn: tokio::sync::OwnedMutexGuard<()>) {
    // Let the invoicings that are on their way (the callers a finished turn has just answered)
    // join this turn rather than form the next one.
    // They come back over several passes of the scheduler (each caller's own work between two
    // invoicings takes its turns too), so this stops once two passes in a row bring no one, or
    // the group is full.
    let backend = s.db.get_database_backend();
    let max = batches(s).group_max(backend);
    let (mut seen, mut quiet) = (0, 0);
    for _ in 0..TURN_YIELDS {
        tokio::task::yield_now().await;
        let now_waiting = batches(s).waiting();
        if now_waiting >= max {
            break;
        }
        quiet = if now_waiting == seen { quiet + 1 } else { 0 };
        if quiet == 2 {
            break;
        }
        seen = now_waiting;
    }
    // Only an invoicing still waiting takes the turn's work: one an earlier turn took is answered
    // by that turn, and taking the others now would split them into turns of one.
    let jobs = take_group(&mut batches(s).waiting.lock().unwrap_or_else(|e| e.into_inner()), |j| j.id == id, batches(s).group_max(backend));
    if jobs.is_empty() {
        return;
    }
    // The turn runs to its end even if this caller goes away (every invoicing it took gets its
    // answer). It lasts until every invoicing it posted has finished its run (on PostgreSQL, or
    // with a slow processor, until each has started its processor call or left the group), so
    // that they go through the later steps together and those arriving meanwhile form the next
    // turn.
    let batches = shared(s);
    tokio::spawn(async move {
        let posted = post_all(jobs, Arc::new(Held(turn, std::time::Instant::now()))).await;
        if posted > 0 {
            batches.turns.fetch_add(1, Ordering::Relaxed);
            batches.posted.fetch_add(posted, Ordering::Relaxed);
        }
    });
}

/// One invoicing counted in [`InvoiceBatches`]'s `in_flight` while it lives (until its run ends,
/// or its caller goes away).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn count(n: &'a AtomicUsize) -> InFlight<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A turn's hold on the lock, and since when (for the bench profile).
struct Held(#[expect(dead_code, reason = "held for its Drop: the turn ends when it is released")] tokio::sync::OwnedMutexGuard<()>, std::time::Instant);

impl Drop for Held {
    fn drop(&mut self) {
        crate::observe::phase(|| "turn held".into(), self.1.elapsed());
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

/// Stages 2–4 of a batched invoicing: each step together with the other invoicings at that step
/// on this server (one transaction for all of them), the processor call on its own. An invoicing
/// whose stage goes any other way than the plain one is run on from there one at a time.
async fn run(g: Going) -> ServiceResult<InvoiceOutcome> {
    let batches = shared(&g.s);
    if g.alone {
        return finish(g, None).await;
    }
    // Stage 1 requested the capture with the invoice; without one, stage 2 goes the one-at-a-time
    // way (which reports why).
    let Some((auth, req, final_capture)) = g.capture.clone() else {
        return finish(g, None).await;
    };
    let mut g = g;
    let stage = Stage::CaptureOrRefund;
    crate::crashpoint::hit("capture:intent");
    // A call that is not answered at once (a processor's latency) gives up this invoicing's share
    // of the turn: once the whole group waits on the processor, the next group is posted
    // meanwhile instead of waiting for this one to end. Quick answers keep the group together.
    // On PostgreSQL there is no grace: the share goes as the call starts, and the next group is
    // posted on another connection while this one calls and settles (two groups in flight,
    // [`InvoiceBatches::group_max`]); with a slow processor the turn's next group would otherwise
    // wait [`SLOW_CALL`] for nothing (issue #3: at 50 ms the turn was held about 16 ms a group
    // against 9.7 ms of posting, and giving it up at once took 429–436 invoices/s to 477–481),
    // and with a quick one for the group's whole run. Not on SQLite, where the grace
    // leaves the one connection to this group's own processor calls (the simulator's turn)
    // before the next group's posting: giving it up at once there took 558–566 to 545–554.
    if batches.no_grace(g.s.db.get_database_backend()) {
        g.turn = None;
    }
    let started = std::time::Instant::now();
    let result = {
        let s = g.s.clone();
        let call = super::capture::call_capture(&s, &req, &auth, final_capture);
        tokio::pin!(call);
        tokio::select! {
            r = &mut call => r,
            _ = tokio::time::sleep(SLOW_CALL) => {
                g.turn = None;
                call.await
            }
        }
    };
    batches.called(started.elapsed());
    crate::observe::phase(|| "capture call".into(), started.elapsed());
    crate::crashpoint::hit("capture:sent");
    match super::capture::resolve_capture(&g.s, g.ctx.p.id, &req, 1, result).await? {
        Resolution::Done(Outcome::Captured(c)) => g.captured = Some(c),
        other => {
            let s = g.s.clone();
            let end = super::capture::record_capture(&s, &mut g.ctx, &req, &auth, other).await?;
            return finish(g, Some(Ended { stage, attempt: 1, end })).await;
        }
    }
    match gather(&batches.steps[StepKind::Settle as usize], g, StepKind::Settle).await? {
        Flow::Next(g) => Err(ServiceError::internal(format!("payment process {} did not complete", g.ctx.p.id))),
        Flow::Out(out) => out,
    }
}

/// Runs the rest of a batched invoicing one at a time, from where it stands (see [`Going::hand_over`]).
async fn finish(g: Going, ended: Option<Ended>) -> ServiceResult<InvoiceOutcome> {
    let Going { s, ctx, rows, turn, member, .. } = g;
    // Out of the group: the next turn need not wait for this run (an authorization of the
    // balance, a retry) to end, nor its group's later steps for this invoicing.
    drop(turn);
    drop(member);
    let (invoice, process_id) = (ctx.invoice.clone(), ctx.p.id);
    let (status, error) = super::runner::run_loaded_from(&s, ctx, rows, ended).await?;
    super::document::outcome_of(invoice, process_id, status, error)
}

/// How long a processor call may take before its invoicing gives up its share of the turn.
const SLOW_CALL: std::time::Duration = std::time::Duration::from_millis(5);

/// The most scheduler passes a turn lets go by for the invoicings on their way to join it.
const TURN_YIELDS: usize = 16;

/// A processor whose captures take this long on average is slow: groups are [`SLOW_GROUP`] at
/// most. (A quick processor's calls on SQLite include the simulator's shared transaction, a few
/// milliseconds for a group of 32.)
const SLOW_PROCESSOR: std::time::Duration = std::time::Duration::from_millis(20);
/// The most invoicings a turn posts while the processor is slow, and the fewest it may take on
/// PostgreSQL while it is quick (smaller groups spend more on each one's statements and commit).
const SLOW_GROUP: usize = 8;
/// How many groups the invoicings in flight are split into on PostgreSQL while the processor is
/// quick ([`InvoiceBatches::group_max`]): one posting while the other takes its later steps.
const PG_GROUPS_IN_FLIGHT: usize = 2;

/// How long a step's turn waits for the next member of its group to arrive, and for all of them.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);
const LINGER_MAX: std::time::Duration = std::time::Duration::from_millis(25);

/// Posts every job it can in one transaction and answers each: with what was posted for it, or
/// `None` to go the one-at-a-time way. Returns how many it posted.
async fn post_all(jobs: Vec<Job>, turn: Arc<Held>) -> u64 {
    let mut taken = Vec::new();
    let mut left = Vec::new();
    let started = std::time::Instant::now();
    let posted = post_many(&jobs).await;
    crate::observe::phase(|| "post".into(), started.elapsed());
    match posted {
        Ok(posted) => {
            for (job, p) in jobs.into_iter().zip(posted) {
                match p {
                    Some(p) => taken.push((job, p)),
                    None => left.push(job),
                }
            }
        }
        Err(Failure::BeforeCommit(e)) => {
            // Nothing of the turn was written; each invoicing goes its own way and meets the
            // cause there if it is still there.
            eprintln!("paystage: posting {} invoices together failed ({e}); posting each on its own", jobs.len());
            left = jobs;
        }
        Err(Failure::Commit(e)) => {
            // Whether the commit took effect is unknown: no invoicing of the turn is posted again
            // here; each caller is told, and the order shows what was posted.
            let text = e.to_string();
            for job in jobs {
                let _ = job.reply.send(Err(InvoicingError::PostingFailed { reason: text.clone() }.into()));
            }
            return 0;
        }
    }
    for job in left {
        let _ = job.reply.send(Ok(None));
    }
    // Stages 2–4 are run together by services alike (same server instance, clock, connector and
    // lease); another's invoicing is run on its own.
    let first = taken.first().map(|(job, _)| job.s.clone());
    let n = taken.len() as u64;
    let group = Arc::new(Group::of(taken.len()));
    for (job, (posted, capture, journal_id)) in taken {
        let alone = first.as_ref().is_some_and(|f| !alike(&job.s, f));
        let Job { id, s, reply, .. } = job;
        let _ = reply.send(Ok(Some(Going::new(id, s, alone, posted, (capture, journal_id), turn.clone(), group.clone()))));
    }
    n
}

// Stages 2–4 together.

/// A batched invoicing between stages: its services, its ticket in the steps' queues, its run as
/// the one-at-a-time path would hold it at the same point (process, invoice, order, pending marks,
/// stage rows), the capture requested for it (authorization, intent, whether it is the final
/// capture) and the capture taken.
struct Going {
    s: Services,
    ticket: u64,
    /// Its services differ from the turn's: run on its own after stage 1.
    alone: bool,
    ctx: super::context::Ctx,
    rows: Vec<ps::Model>,
    capture: Option<Requested>,
    captured: Option<crate::connector::Captured>,
    /// The id stage 1 took for its customer payment journal (PostgreSQL only; unused, and
    /// skipped as a rolled-back insert's would be, where the journal is posted one at a time).
    journal_id: Option<i32>,
    /// Its share of the turn that posted it: the turn ends when every invoicing of it is done or
    /// has given up its share (leaving the group, or waiting on a slow processor call).
    turn: Option<Arc<Held>>,
    /// Its place in the group posted with it, for the steps' waits ([`Group`]).
    member: Member,
}

impl Going {
    fn new(ticket: u64, s: Services, alone: bool, posted: Posted, (capture, journal_id): (Option<Requested>, Option<i32>), turn: Arc<Held>, group: Arc<Group>) -> Going {
        let Posted { invoice, process, order, stages, settings } = posted;
        let ctx = super::context::Ctx { p: process, invoice, order, marks: Default::default(), fresh: Some(settings) };
        let member = Member { group, batches: shared(&s), next: 0 };
        Going { s, ticket, alone, ctx, rows: stages, capture, captured: None, journal_id, turn: Some(turn), member }
    }

    fn outcome(self, status: ProcessStatus) -> ServiceResult<InvoiceOutcome> {
        super::document::outcome_of(self.ctx.invoice, self.ctx.p.id, status, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_processor_and_on_postgres_the_invoicings_in_flight() {
        // Issue 3, R-PIP-1: the group size follows the processor's recent response time and, on
        // PostgreSQL, how many invoicings are in flight; on PostgreSQL a call never keeps its
        // share of the turn, on SQLite it does for SLOW_CALL.
        use sea_orm::DatabaseBackend::{Postgres, Sqlite};
        let b = InvoiceBatches::new(true);
        assert_eq!(b.group_max(Sqlite), usize::MAX, "no call yet: one group of everything waiting");
        assert_eq!(b.group_max(Postgres), SLOW_GROUP, "nothing in flight: the smallest group");
        let flying: Vec<InFlight<'_>> = (0..32).map(|_| InFlight::count(&b.in_flight)).collect();
        assert_eq!(b.group_max(Postgres), 16, "32 in flight: two groups of 16");
        assert_eq!(b.group_max(Sqlite), usize::MAX);
        drop(flying);
        assert_eq!(b.in_flight.load(Ordering::Relaxed), 0, "each invoicing leaves the count when it ends");
        let flying: Vec<InFlight<'_>> = (0..17).map(|_| InFlight::count(&b.in_flight)).collect();
        assert_eq!(b.group_max(Postgres), 9);
        assert!(!b.slow(), "no call yet");
        assert!(b.no_grace(Postgres) && !b.no_grace(Sqlite));
        for _ in 0..40 {
            b.called(std::time::Duration::from_millis(50));
        }
        assert_eq!((b.group_max(Sqlite), b.group_max(Postgres)), (SLOW_GROUP, SLOW_GROUP), "a slow processor: groups of SLOW_GROUP whatever is in flight");
        assert!(b.slow());
        assert!(b.no_grace(Postgres), "on PostgreSQL, a call gives up its share of the turn as it starts");
        assert!(!b.no_grace(Sqlite), "on SQLite, a call keeps its share for SLOW_CALL");
        b.called(std::time::Duration::from_millis(1));
        assert_eq!(b.group_max(Sqlite), SLOW_GROUP, "one quick answer is not a quick processor");
        assert!(b.slow());
        for _ in 0..40 {
            b.called(std::time::Duration::from_millis(1));
        }
        assert_eq!((b.group_max(Sqlite), b.group_max(Postgres)), (usize::MAX, 9));
        assert!(!b.slow());
        drop(flying);
    }
}
