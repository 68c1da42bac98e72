//! Many invoicings at once (issue #3). Invoicings that arrive while this server is invoicing
//! others wait their turn; the next turn posts everything waiting in one transaction with one
//! statement per kind of row (orders locked, lines moved, invoices, lines, journals, processes,
//! stage rows and log lines, and stage 2 up to the processor: each capture's path and intent),
//! instead of some twenty statements per invoice, and the group then takes the step after the
//! processor calls together ([`gather`]): one transaction for all of them, each processor call on
//! its own. Each invoice is checked and computed exactly as on its
//! own ([`super::Plan`]); an invoicing with anything unusual (an order on hold, cancelled, with a
//! deposit, with an authorization expiry has not stored yet, an unfinished process, a quantity
//! that is refused, the same order twice) is left to the one-at-a-time path, which reports it or
//! posts it as before, and a run that leaves the plain path later continues one at a time from
//! the stage it stands at. A database error before stage 1's commit undoes the whole turn and
//! leaves every invoicing of it to that path: nothing of the turn was written. See "Invoicings
//! that arrive together run together" in docs/ARCHITECTURE.md.
use super::{log_lines_into, marks, monitored, stages, Ended, new_process, new_stage_rows, post_new_journals_with, unfinished, wanted, LogLine, Plan, Posted};
use crate::writes::Writes;
use crate::domain::order::{AuthorizationStatus, Command, OrderStatus, PaymentStatus, RequestStatus};
use crate::domain::payment_views::InvoiceOutcome;
use super::requests::{Purpose, Resolution};
use crate::connector::Outcome;
use crate::domain::capture::{capture_path, CapturePath};
use crate::domain::money::{Currency, Money};
use crate::domain::pipeline::{ProcessStatus, Stage, StageStatus};
use crate::entity::{
    authorization as au, connector, connector_merchant_property as cmp, invoice as inv, journal, payment_line as pl,
    payment_process as pp, process_stage as ps, processor_request as pr, sales_order as so, sales_order_line as sol, sim_fault,
};
use crate::error::{ServiceError, ServiceResult};
use crate::service::{features, for_update, Services};
use crate::turns::{take_group, Waited};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, IntoCondition};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityName, EntityTrait, FromQueryResult, IdenStatic, Iterable, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait, TryIntoModel};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

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
    if !s.invoicing.enabled || wanted.is_empty() {
        return Ok(None);
    }
    let _in_flight = InFlight::count(&s.invoicing.in_flight);
    let (reply, mut answer) = oneshot::channel();
    let id = s.invoicing.next_job.fetch_add(1, Ordering::Relaxed);
    let job = Job { id, s: s.clone(), actor: actor.to_string(), order_id, wanted, reply };
    s.invoicing.waiting.lock().unwrap_or_else(|e| e.into_inner()).push(job);
    // Wait for the turn, or for a turn that took this invoicing to answer (that turn lasts until
    // its invoicings, this one among them, are done).
    let queued = std::time::Instant::now();
    let done = match crate::turns::turn_or_answer(&s.invoicing.turn, &mut answer).await {
        Waited::Answered(done) => done,
        Waited::Turn(turn) => {
            crate::observe::phase(|| "turn wait".into(), queued.elapsed());
            take_turn(s, id, turn).await;
            answer.await
        }
    };
    crate::observe::phase(|| "until posted".into(), queued.elapsed());
    let stopped = || ServiceError::Conflict("Invoicing stopped unexpectedly; look for the invoice on the order before invoicing again.".into());
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
    let max = s.invoicing.group_max(backend);
    let (mut seen, mut quiet) = (0, 0);
    for _ in 0..TURN_YIELDS {
        tokio::task::yield_now().await;
        let now_waiting = s.invoicing.waiting();
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
    let jobs = take_group(&mut s.invoicing.waiting.lock().unwrap_or_else(|e| e.into_inner()), |j| j.id == id, s.invoicing.group_max(backend));
    if jobs.is_empty() {
        return;
    }
    // The turn runs to its end even if this caller goes away (every invoicing it took gets its
    // answer). It lasts until every invoicing it posted has finished its run (on PostgreSQL, or
    // with a slow processor, until each has started its processor call or left the group), so
    // that they go through the later steps together and those arriving meanwhile form the next
    // turn.
    let batches = s.invoicing.clone();
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
struct Held(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>, std::time::Instant);

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
    let batches = g.s.invoicing.clone();
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
        let call = stages::call_capture(&s, &req, &auth, final_capture);
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
    match stages::resolve_capture(&g.s, g.ctx.p.id, &req, 1, result).await? {
        Resolution::Done(Outcome::Captured(c)) => g.captured = Some(c),
        other => {
            let s = g.s.clone();
            let end = stages::record_capture(&s, &mut g.ctx, &req, &auth, other).await?;
            return finish(g, Some(Ended { stage, attempt: 1, end })).await;
        }
    }
    match gather(&batches.steps[StepKind::Settle as usize], g, StepKind::Settle).await? {
        Flow::Next(g) => Err(ServiceError::Conflict(format!("payment process {} did not complete", g.ctx.p.id))),
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
    let (status, error) = super::run_loaded_from(&s, ctx, rows, ended).await?;
    super::outcome_of(invoice, process_id, status, error)
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

/// The invoicings one turn posted: for each step, how many of them may still arrive at it (those
/// that have neither reached it nor left the batched path).
#[derive(Debug)]
struct Group {
    on_the_way: [std::sync::atomic::AtomicUsize; STEPS],
}

impl Group {
    fn of(n: usize) -> Group {
        Group { on_the_way: std::array::from_fn(|_| std::sync::atomic::AtomicUsize::new(n)) }
    }

    fn on_the_way(&self, kind: StepKind) -> usize {
        self.on_the_way[kind as usize].load(Ordering::Acquire)
    }
}

/// One invoicing's place in its [`Group`]: arriving at a step counts it off that step; leaving
/// the batched path (handed over, done, failed, dropped) counts it off every step still ahead,
/// so that no step waits for it.
#[derive(Debug)]
struct Member {
    group: Arc<Group>,
    batches: Arc<InvoiceBatches>,
    /// The first step it has not reached.
    next: usize,
}

impl Member {
    fn arrive(&mut self, kind: StepKind) {
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
enum StepKind {
    Settle = 0,
}

/// How many [`StepKind`]s there are.
const STEPS: usize = 1;

impl StepKind {
    /// The step's name followed by `what`, built only when the bench profile is on.
    fn name(self, what: &'static str) -> impl FnOnce() -> String {
        move || format!("{self:?}{what}")
    }
}

/// Invoicings waiting for one step, and whose turn it is to run it.
#[derive(Default)]
struct Gather {
    waiting: std::sync::Mutex<Vec<(u64, Going, oneshot::Sender<Step>)>>,
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Told when an invoicing arrives at this step or leaves its group before it.
    moved: tokio::sync::Notify,
}

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gather").finish_non_exhaustive()
    }
}

/// How a step left one invoicing.
enum Step {
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

enum Flow {
    Next(Going),
    Out(ServiceResult<InvoiceOutcome>),
}

/// Runs step `kind` for `g` together with every invoicing waiting for the same step: whoever gets
/// the turn while still waiting runs it for all of them (in a spawned task, so that a caller going
/// away abandons no one), and each gets back how the step left it.
async fn gather(q: &Gather, g: Going, kind: StepKind) -> ServiceResult<Flow> {
    let ticket = g.ticket;
    let group = g.member.group.clone();
    let (gap, all) = g.s.invoicing.linger;
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
    let step = step.map_err(|_| ServiceError::Conflict("Invoicing stopped unexpectedly; the payment process is finished by recovery.".into()))?;
    Ok(match step {
        Step::Next(g) => Flow::Next(g),
        Step::HandOver(g, ended) => Flow::Out(finish(g, ended).await),
        Step::Done(g, status) => Flow::Out(g.outcome(status)),
        Step::Failed(_, text) => Flow::Out(Err(ServiceError::Database(sea_orm::DbErr::Custom(text)))),
    })
}

/// With step `kind`'s turn: runs the step for every invoicing waiting for it that runs alike with
/// `ticket`'s, unless an earlier turn took that one.
async fn take_step(q: &Gather, ticket: u64, group: &Group, kind: StepKind, (gap, all): (std::time::Duration, std::time::Duration), turn: tokio::sync::OwnedMutexGuard<()>) {
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
            let batches = gs[0].s.invoicing.clone();
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
    fn ticket(&self) -> Option<u64> {
        match self {
            Step::Next(g) | Step::HandOver(g, _) | Step::Done(g, _) => Some(g.ticket),
            Step::Failed(t, _) => Some(*t),
        }
    }
}

/// One step for all of `gs`; a database error fails the step for all those still in it (as on
/// the one-at-a-time path, their processes stay running under the lease until recovery).
async fn step(kind: StepKind, mut gs: Vec<Going>) -> Vec<Step> {
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
                let _ = job.reply.send(Err(ServiceError::Conflict(format!("Posting the invoice failed ({text}); look for it on the order before invoicing again."))));
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

enum Failure {
    BeforeCommit(ServiceError),
    Commit(sea_orm::DbErr),
}

impl From<sea_orm::DbErr> for Failure {
    fn from(e: sea_orm::DbErr) -> Self {
        Failure::BeforeCommit(e.into())
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Failure::BeforeCommit(e)
    }
}

/// Whether two invoicings' services may run a step together: same server instance, lease, clock
/// and connector (clones of one `Services` are; tests make others).
fn alike(a: &Services, b: &Services) -> bool {
    a.instance == b.instance && a.lease == b.lease && Arc::ptr_eq(&a.clock, &b.clock) && Arc::ptr_eq(&a.connector, &b.connector)
}

/// One transaction for all of `jobs`; for each, what was posted with the capture requested for it
/// (stage 2 up to the processor) and, on PostgreSQL, the id its payment journal will take, or
/// `None` for one left out.
async fn post_many(jobs: &[Job]) -> Result<Vec<Option<(Posted, Option<Requested>, Option<i32>)>>, Failure> {
    let db = &jobs[0].s.db;
    let ids: Vec<i32> = jobs.iter().map(|j| j.order_id).collect::<HashSet<_>>().into_iter().collect();
    let txn = crate::observe::timed("post begin", db.begin()).await?;
    // Locked in id order, so that two turns on two servers never wait for each other in a cycle.
    let orders: HashMap<i32, so::Model> = for_update(so::Entity::find().filter(so::Column::Id.is_in(ids.clone())).order_by_asc(so::Column::Id), &txn)
        .all(&txn)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    // The orders' lines, each with whether its order has an authorization the expiry job has
    // passed and not yet stored, or an unfinished payment process: one statement, read after the
    // orders are locked (on PostgreSQL each statement sees what committed before it began, and
    // the lock may have waited for another invoicing of the same order). An order with no lines
    // has nothing to invoice here.
    let order_id = || Expr::col((sol::Entity, sol::Column::OrderId));
    let busy = pp::Entity::find().select_only().expr(Expr::val(1)).filter(Expr::col((pp::Entity, pp::Column::OrderId)).eq(order_id())).filter(pp::Column::Status.is_in(unfinished()));
    let flag = |e: Expr| Expr::case(e, 1).finally(0);
    let read = sol::Entity::find()
        .filter(sol::Column::OrderId.is_in(ids))
        .order_by_asc(sol::Column::Id)
        .expr_as(flag(crate::service::expiry::due_for(order_id())), "expiry_due")
        .expr_as(flag(Expr::exists(busy.into_query())), "busy");
    let (mut expiry_due, mut busy, mut lines) = (HashSet::new(), HashSet::new(), HashMap::<i32, Vec<sol::Model>>::new());
    for row in txn.query_all(&read.into_query()).await? {
        let l = sol::Model::from_query_result(&row, "")?;
        if row.try_get::<i32>("", "expiry_due")? == 1 {
            expiry_due.insert(l.order_id);
        }
        if row.try_get::<i32>("", "busy")? == 1 {
            busy.insert(l.order_id);
        }
        lines.entry(l.order_id).or_default().push(l);
    }
    // Which jobs this turn posts, each with its plan.
    let mut seen = HashSet::new();
    let mut plans: Vec<Option<(&so::Model, Plan<'_>)>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let plan = orders.get(&job.order_id).filter(|o| {
            !o.do_not_process
                && !o.prepayment
                && o.status != OrderStatus::Cancelled.code()
                && !expiry_due.contains(&o.id)
                && !busy.contains(&o.id)
                && seen.insert(o.id)
                && job.wanted.iter().map(|(l, _)| l).collect::<HashSet<_>>().len() == job.wanted.len()
        });
        let plan = plan.and_then(|o| Plan::new(o, lines.get(&o.id).map(Vec::as_slice).unwrap_or_default(), &job.wanted, false).ok().map(|p| (o, p)));
        plans.push(plan);
    }
    if plans.iter().all(Option::is_none) {
        txn.rollback().await?;
        return Ok(jobs.iter().map(|_| None).collect());
    }
    let chosen: Vec<(&Job, &so::Model, &Plan<'_>)> = jobs.iter().zip(&plans).filter_map(|(j, p)| p.as_ref().map(|(o, p)| (j, *o, p))).collect();
    // The writes nothing later reads, sent together before the commit.
    let mut w = Writes::on(&txn);

    // The ids of every row the rows after it refer to, in one statement (`crate::ids`): each
    // invoice's, its invoice journal's, its process's and its capture intent's (unused where no
    // capture is requested). On PostgreSQL, whose ids come from sequences and are never given
    // twice, also the id of the customer payment journal the settle step posts (a round trip
    // fewer there); on SQLite ids follow what is stored, so the settle step takes its own.
    let n = chosen.len();
    let later = if db.get_database_backend() == sea_orm::DbBackend::Postgres { n } else { 0 };
    let tables = [(inv::Entity.table_name(), n), (journal::Entity.table_name(), n + later), (pp::Entity.table_name(), n), (pr::Entity.table_name(), n)];
    let [invoice_ids, mut journal_ids, process_ids, request_ids]: [Vec<i32>; 4] =
        crate::ids::take(&txn, &tables).await?.try_into().map_err(|_| sea_orm::DbErr::Custom("ids were taken for other tables".into()))?;
    let payment_journal_ids: Vec<Option<i32>> = if later > 0 { journal_ids.split_off(n).into_iter().map(Some).collect() } else { vec![None; n] };

    // The invoices, numbered from their ids.
    let mut invoices = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for ((j, o, plan), id) in chosen.iter().zip(invoice_ids) {
        let mut row = plan.document(o.id, crate::ids::as_stored(j.s.now()), &j.actor);
        row.id = sea_orm::Set(id);
        row.number = sea_orm::Set(plan.number(id));
        row.prepaid_minor = sea_orm::Set(0);
        invoices.push(row.clone().try_into_model()?);
        rows.push(row);
    }
    w.push_rows(rows);
    w.push_rows(chosen.iter().zip(&invoices).flat_map(|((_, _, p), i)| p.invoice_lines(i.id)));

    // Every line moved in one statement, each conditional on the quantity read above, sent with
    // the other writes and counted with them: if any was changed meanwhile (its order is locked,
    // so none should be), fewer rows are written than counted, and the whole turn is undone and
    // each invoicing goes its own way.
    let moves: Vec<(i32, i32, i32)> = chosen.iter().flat_map(|(_, _, p)| p.line_moves().1).collect();
    let case = moves.iter().fold(CaseStatement::new(), |c, (id, _, after)| c.case(sol::Column::Id.eq(*id), Expr::value(*after)));
    let guard = moves.iter().fold(Condition::any(), |c, (id, before, _)| c.add(sol::Column::Id.eq(*id).and(sol::Column::InvoicedQuantity.eq(*before))));
    w.push_counted(
        sol::Entity::update_many().col_expr(sol::Column::InvoicedQuantity, case.finally(Expr::col(sol::Column::InvoicedQuantity)).into()).filter(guard).into_query(),
        moves.len() as u64,
    );
    let mut orders_after: Vec<so::Model> = Vec::with_capacity(chosen.len());
    let mut status_case = CaseStatement::new();
    for (_, o, plan) in &chosen {
        let status = plan.order_status().unwrap_or(OrderStatus::PartiallyInvoiced);
        status_case = status_case.case(so::Column::Id.eq(o.id), Expr::value(status.code()));
        orders_after.push(so::Model { status: status.code().to_string(), ..(*o).clone() });
    }
    w.push_counted(
        so::Entity::update_many()
            .col_expr(so::Column::Status, status_case.finally(Expr::col(so::Column::Status)).into())
            .filter(so::Column::Id.is_in(orders_after.iter().map(|o| o.id)))
            .into_query(),
        orders_after.len() as u64,
    );
    let journals = chosen
        .iter()
        .zip(&orders_after)
        .zip(&invoices)
        .map(|(((j, _, plan), order), invoice)| {
            let (posting, lines) = plan.journal(order, invoice);
            (j.s.now(), posting, lines)
        })
        .collect();
    post_new_journals_with(&txn, &mut w, journals, Some(journal_ids)).await?;

    // Stage 2 up to the processor for the invoicings that run on together: each order's open
    // authorization, the capture path (R-CAP-2) and the intent with its tracking id (R-CAP-5),
    // committed with the invoice, so that the processor is called as soon as it is posted.
    let (feats, params) = features::load_with_parameters(&txn).await?;
    let lead = &chosen[0].0.s;
    let mut captures = plan_captures(&txn, lead, &chosen, &invoices, &feats, &params).await?;

    // The payment processes, leased to their servers, with their stage rows and log lines.
    let monitored = monitored(&feats, &params);
    let mut rows = Vec::with_capacity(n);
    let mut posted_processes = Vec::with_capacity(n);
    for (((j, _, _), i), (c, id)) in chosen.iter().zip(&invoices).zip(captures.iter().zip(process_ids)) {
        let mut p = new_process(&j.s, i.posted_at, i, monitored);
        p.id = sea_orm::Set(id);
        p.capture_path = sea_orm::Set(c.as_ref().map(|c| stages::path_text(&c.path)));
        posted_processes.push(p.clone().try_into_model()?);
        rows.push(p);
    }
    w.push_rows(rows);
    let stage = Stage::CaptureOrRefund;
    let now = lead.now();
    let mut intents = Vec::new();
    let mut requested = Vec::with_capacity(n);
    for ((c, i), (p, id)) in captures.iter_mut().zip(&invoices).zip(posted_processes.iter().zip(request_ids)) {
        let Some(c) = c.as_mut() else {
            requested.push(None);
            continue;
        };
        let mut reference = c.reference.take().ok_or(sea_orm::DbErr::RecordNotInserted)?;
        reference.initiated_at = crate::ids::as_stored(reference.initiated_at);
        let purpose = Purpose { order_id: i.order_id, authorization_id: Some(c.auth.id), process: Some((p.id, stage)), capture_id: None };
        let mut intent = super::requests::intent(c.auth.connector_id, Command::Capture, c.money, purpose, reference);
        intent.id = sea_orm::Set(id);
        requested.push(Some((c.auth.clone(), intent.clone().try_into_model()?, matches!(c.path, CapturePath::Legacy(_)))));
        intents.push(intent);
    }
    w.push_rows(intents);
    let mut stages: Vec<Vec<ps::Model>> = posted_processes.iter().map(|p| new_stage_rows(p.id, p.created_at)).collect();
    for (rows, r) in stages.iter_mut().zip(&requested) {
        if r.is_some() {
            let row = rows.iter_mut().find(|r| r.stage == stage.code()).ok_or(sea_orm::DbErr::RecordNotInserted)?;
            row.status = StageStatus::Running.code().to_string();
            row.attempts = 1;
            row.started_at = Some(now);
        }
    }
    w.push_rows(stages.iter().flatten().cloned().map(ps::ActiveModel::from));
    let mut logs = Vec::new();
    for (((((_, _, plan), order), invoice), p), (c, r)) in chosen.iter().zip(&orders_after).zip(&invoices).zip(&posted_processes).zip(captures.iter_mut().zip(&requested)) {
        logs.push((p.id, LogLine { at: p.created_at, stage: Stage::PostInvoice, attempt: 1, message: plan.posted_message(order, invoice) }));
        if let (Some(c), Some((auth, req, _))) = (c, r) {
            logs.push((p.id, LogLine { at: now, stage, attempt: 1, message: super::start_message(1, false) }));
            logs.push((p.id, LogLine { at: now, stage, attempt: 1, message: std::mem::take(&mut c.message) }));
            logs.push((p.id, LogLine { at: now, stage, attempt: 1, message: stages::capture_requested(req, auth)? }));
        }
    }
    log_lines_into(&mut w, logs);
    let counted = w.counted();
    let written = crate::observe::timed("post writes", w.run(&txn)).await?;
    if counted != Some(written) {
        txn.rollback().await?;
        return Err(Failure::BeforeCommit(super::concurrent_invoicing()));
    }
    crate::observe::timed("post commit", txn.commit()).await.map_err(Failure::Commit)?;

    let mut posted = invoices.into_iter().zip(posted_processes).zip(orders_after).zip(stages).zip(requested).zip(payment_journal_ids).map(
        |(((((invoice, process), order), stages), requested), journal_id)| {
            (Posted { invoice, process, order, stages, settings: (feats.clone(), params.clone()) }, requested, journal_id)
        },
    );
    Ok(plans.iter().map(|p| p.as_ref().and_then(|_| posted.next())).collect())
}

/// The capture stage 1 requested for a batched invoicing: the authorization, the intent
/// (R-CAP-5) and whether it is the final capture (the legacy path, R-CAP-3).
type Requested = (au::Model, pr::Model, bool);

/// A capture chosen for a batched invoicing in stage 1's transaction: the order's open
/// authorization, the path, the amount, the tracking id obtained from the connector and the
/// stage's first log line.
struct PlannedCapture {
    auth: au::Model,
    path: CapturePath,
    money: Money,
    reference: Option<crate::connector::PaymentReference>,
    message: String,
}

/// For each invoicing of `chosen` that runs on with `lead` (the same services), the capture to
/// request, as the one-at-a-time stage 2 chooses it; `None` where stage 2 is left to that path
/// (no open authorization, one that has expired, nothing left on it, no tracking id).
async fn plan_captures(
    txn: &sea_orm::DatabaseTransaction,
    lead: &Services,
    chosen: &[(&Job, &so::Model, &Plan<'_>)],
    invoices: &[inv::Model],
    feats: &crate::domain::features::FeatureSet,
    params: &crate::domain::parameters::Parameters,
) -> Result<Vec<Option<PlannedCapture>>, sea_orm::DbErr> {
    let now = lead.now();
    let orders: Vec<i32> = chosen.iter().filter(|(j, ..)| alike(&j.s, lead)).map(|(_, o, _)| o.id).collect();
    let open = open_authorizations(txn, &orders).await?;
    let mut out = Vec::with_capacity(chosen.len());
    for ((_, order, _), invoice) in chosen.iter().zip(invoices) {
        let due = invoice.amount_minor - invoice.prepaid_minor;
        let found = orders.contains(&order.id).then(|| open.iter().find(|(a, ..)| a.order_id == order.id)).flatten().filter(|(a, ..)| due > 0 && a.expires_at > now);
        let Some((auth, conn, props)) = found else {
            out.push(None);
            continue;
        };
        let path = capture_path(&stages::conditions_of(auth, feats, params, props.as_ref(), conn.as_ref(), now));
        let amount = std::cmp::min(due, auth.amount_minor - auth.captured_minor);
        if amount <= 0 {
            out.push(None);
            continue;
        }
        // An unreadable currency leaves this invoicing to the one-at-a-time path, which reports it.
        let Ok(currency) = Currency::stored(&invoice.currency) else {
            out.push(None);
            continue;
        };
        let money = Money::from_minor(amount, currency);
        // The connector's payment reference data (a tracking id made up where the SDK runs, no
        // call to the processor).
        let Ok(reference) = lead.connector.payment_reference(Command::Capture, money).await else {
            out.push(None);
            continue;
        };
        let Ok(message) = stages::capture_message(&path, invoice, due, amount) else {
            out.push(None);
            continue;
        };
        out.push(Some(PlannedCapture { auth: auth.clone(), path, money, reference: Some(reference), message }));
    }
    Ok(out)
}

/// The open authorizations of `orders`, newest first, each with its connector and that
/// connector's merchant properties on its order's channel (R-CAP-2's conditions), in one
/// statement (issue #3: it was two, each a round trip on stage 1's path on PostgreSQL and a
/// hand-off to sqlx's worker thread on SQLite). Read after the orders are locked, as the
/// one-at-a-time stage 2 reads them.
async fn open_authorizations(txn: &impl sea_orm::ConnectionTrait, orders: &[i32]) -> Result<Vec<(au::Model, Option<connector::Model>, Option<cmp::Model>)>, sea_orm::DbErr> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let mut read = au::Entity::find()
        .filter(au::Column::OrderId.is_in(orders.iter().copied()))
        .filter(au::Column::Status.eq(AuthorizationStatus::Open.code()))
        .order_by_desc(au::Column::Id)
        .join(JoinType::LeftJoin, au::Entity::belongs_to(connector::Entity).from(au::Column::ConnectorId).to(connector::Column::Id).into())
        .join(JoinType::InnerJoin, au::Entity::belongs_to(so::Entity).from(au::Column::OrderId).to(so::Column::Id).into())
        .join(
            JoinType::LeftJoin,
            au::Entity::belongs_to(cmp::Entity)
                .from(au::Column::ConnectorId)
                .to(cmp::Column::ConnectorId)
                .on_condition(|_, _| Expr::col((cmp::Entity, cmp::Column::ChannelId)).equals((so::Entity, so::Column::ChannelId)).into_condition())
                .into(),
        );
    for c in <connector::Column as Iterable>::iter() {
        read = read.column_as(c.select_as(Expr::col((connector::Entity, c))), format!("c_{}", c.as_str()));
    }
    for c in <cmp::Column as Iterable>::iter() {
        read = read.column_as(c.select_as(Expr::col((cmp::Entity, c))), format!("p_{}", c.as_str()));
    }
    let mut open = Vec::new();
    for row in txn.query_all(&read.into_query()).await? {
        open.push((au::Model::from_query_result(&row, "")?, connector::Model::from_query_result_optional(&row, "c_")?, cmp::Model::from_query_result_optional(&row, "p_")?));
    }
    Ok(open)
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
    ctx: stages::Ctx,
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
        let ctx = stages::Ctx { p: process, invoice, order, marks: Default::default(), fresh: Some(settings) };
        let member = Member { group, batches: s.invoicing.clone(), next: 0 };
        Going { s, ticket, alone, ctx, rows: stages, capture, captured: None, journal_id, turn: Some(turn), member }
    }

    fn outcome(self, status: ProcessStatus) -> ServiceResult<InvoiceOutcome> {
        super::outcome_of(self.ctx.invoice, self.ctx.p.id, status, None)
    }
}

/// Stage 2 after the processor, stage 3 and, for orders now fully invoiced, stage 4, in one
/// transaction: the captures taken (each invoicing made its own call) recorded with their
/// effects, the customer payment journals, stage 4 skipped (nothing to authorize) and the
/// process completed, with the marks of the three stages. An order with a balance goes its own
/// way after the commit, to authorize it (R-CAP-3). With a fault injected at the journal (drawn
/// where each goes its own way), or this server's lease lost, the captures are recorded in a
/// transaction of their own first.
async fn settle(s: &Services, gs: &mut Vec<Going>, out: &mut Vec<Step>) -> ServiceResult<()> {
    if gs.is_empty() {
        return Ok(());
    }
    // Bookkeeping (`service::begin_bookkeeping`), said in the writes sent together.
    let txn = crate::observe::timed("settle begin", s.db.begin()).await?;
    let ids: Vec<i32> = gs.iter().map(|g| g.ctx.p.id).collect();
    // The writes nothing later reads, sent together before the commit.
    let mut w = Writes::bookkeeping(&txn);
    let (messages, journal_fault, renewed) = record_captures(s, &txn, &mut w, gs, Some(&ids)).await?;
    let elsewhere = messages.iter().any(Option::is_none);
    if journal_fault || !renewed || elsewhere {
        txn.rollback().await?;
        let txn = crate::service::begin_bookkeeping(&s.db).await?;
        let mut w = Writes::on(&txn);
        let (messages, ..) = record_captures(s, &txn, &mut w, gs, None).await?;
        w.run(&txn).await?;
        txn.commit().await?;
        // Captures whose outcome another runner recorded meanwhile (it took the process over):
        // this run wrote nothing for them and leaves them to it.
        let mut mine = Vec::with_capacity(gs.len());
        let mut recorded = Vec::with_capacity(gs.len());
        let mut theirs = Vec::new();
        for (g, m) in std::mem::take(gs).into_iter().zip(messages) {
            match m {
                Some(m) => {
                    mine.push(g);
                    recorded.push(m);
                }
                None => theirs.push(g),
            }
        }
        lease_lost(&mut theirs, out);
        *gs = mine;
        captures_recorded(s, gs, recorded)?;
        if journal_fault || renewed {
            out.extend(std::mem::take(gs).into_iter().map(|g| Step::HandOver(g, None)));
        } else {
            lease_lost(gs, out);
        }
        return Ok(());
    }
    captures_recorded(s, gs, messages.into_iter().flatten().collect())?;

    // Stage 3.
    let stage = Stage::PostPaymentJournal;
    let now = s.now();
    let journals = gs
        .iter_mut()
        .map(|g| {
            g.ctx.marks.start(stage, 1, now, super::start_message(1, false));
            let (posting, lines) = stages::payment_posting(&g.ctx)?;
            Ok((now, posting, lines))
        })
        .collect::<ServiceResult<Vec<_>>>()?;
    // Their ids, where stage 1 took them (PostgreSQL): one round trip fewer.
    let ids: Option<Vec<i32>> = gs.iter().map(|g| g.journal_id).collect();
    let journals = post_new_journals_with(&txn, &mut w, journals, ids).await?;
    for (g, j) in gs.iter_mut().zip(journals) {
        let amount = Money::from_minor(g.ctx.p.captured_minor, Currency::stored(&g.ctx.invoice.currency)?);
        super::ended_in(&mut g.rows, g.ctx.p.id, stage, StageStatus::Succeeded, 1)?;
        g.ctx.marks.end(stage, StageStatus::Succeeded, 1, now, None, stages::journal_posted(&j, amount));
    }

    // Stage 4 for orders now fully invoiced; the others authorize their balance on their own.
    let stage = Stage::AuthorizeRemaining;
    let mut completed = Vec::new();
    for g in gs.iter_mut() {
        if g.ctx.order.status == OrderStatus::Invoiced.code() {
            g.ctx.marks.start(stage, 1, now, super::start_message(1, false));
            super::ended_in(&mut g.rows, g.ctx.p.id, stage, StageStatus::Skipped, 1)?;
            g.ctx.marks.end(stage, StageStatus::Skipped, 1, now, None, stages::FULLY_INVOICED.to_string());
            completed.push(g.ctx.p.id);
        }
    }
    let mut runs: Vec<(i32, &mut marks::Marks)> = gs.iter_mut().map(|g| (g.ctx.p.id, &mut g.ctx.marks)).collect();
    marks::flush_leased(&mut w, &mut runs);
    if !completed.is_empty() {
        super::finish_processes_into(s, &mut w, &completed, ProcessStatus::Completed, None);
    }
    crate::observe::timed("settle writes", w.run(&txn)).await?;
    crate::observe::timed("settle commit", txn.commit()).await?;
    for mut g in std::mem::take(gs) {
        g.ctx.marks.committed();
        if completed.contains(&g.ctx.p.id) {
            out.push(Step::Done(g, ProcessStatus::Completed));
        } else {
            out.push(Step::HandOver(g, None));
        }
    }
    Ok(())
}

/// The captures taken recorded with their effects (captures, authorizations' totals and
/// statuses, processes' captured amounts, requests' outcomes, payment lines paid): the
/// authorizations are locked in `txn` at once, the writes added to `w` for the caller to run in
/// it. With `renew`, the leases of those processes are renewed too: on PostgreSQL by the statement
/// that locks the authorizations, on SQLite by a statement sent first ([`marks::renew_leases`]).
/// Returns each invoicing's stage-2 result message, for [`captures_recorded`], whether a fault is
/// injected at the journal (read with the authorizations, to save the settle step a round trip;
/// see [`settle`]) and whether every lease asked for was renewed (true when none was). A capture
/// whose request another runner recorded meanwhile (issue #39) is not written: its message is `None`.
async fn record_captures(s: &Services, txn: &impl sea_orm::ConnectionTrait, w: &mut Writes, gs: &[Going], renew: Option<&[i32]>) -> ServiceResult<(Vec<Option<String>>, bool, bool)> {
    let now = s.now();
    let mut captured = Vec::new();
    for g in gs {
        let c = g.captured.clone().ok_or_else(|| ServiceError::Conflict("no capture was taken".into()))?;
        captured.push((g, c));
    }
    let auth_ids: Vec<i32> = captured.iter().filter_map(|(g, _)| Some(g.capture.as_ref()?.0.id)).collect();
    let journal_fault = Expr::exists(sim_fault::Entity::find().select_only().expr(Expr::val(1)).filter(sim_fault::Column::Point.eq("journal")).into_query());
    let read = for_update(au::Entity::find().filter(au::Column::Id.is_in(auth_ids)).order_by_asc(au::Column::Id), txn).expr_as(Expr::case(journal_fault, 1).finally(0), "journal_fault");
    let (rows, renewed) = match renew {
        None => (txn.query_all(&read.into_query()).await?, true),
        // On PostgreSQL the renewal goes in the same statement, a round trip fewer on every
        // batched invoicing's path (issue #3): a data-modifying CTE, which runs whether or not
        // the select reads it, counted by the select. The two touch other tables; the
        // authorizations are still locked in id order.
        Some(ids) if txn.get_database_backend() == sea_orm::DbBackend::Postgres => {
            use sea_orm::sea_query::{Alias, CommonTableExpression, WithClause};
            let mut renewal = marks::lease_renewal(s, ids, &[]);
            renewal.returning_col(pp::Column::Id);
            let renewals = Alias::new("renewed_leases");
            let cte = CommonTableExpression::new().query(renewal).table_name(renewals).to_owned();
            let read = read.expr_as(Expr::cust("(SELECT count(*) FROM renewed_leases)"), "renewed").into_query();
            let rows = txn.query_all(&WithClause::new().cte(cte).to_owned().query(read)).await?;
            // No authorization read: the capture's below is reported missing.
            let renewed = match rows.first() {
                Some(row) => row.try_get::<i64>("", "renewed")? == ids.len() as i64,
                None => true,
            };
            (rows, renewed)
        }
        Some(ids) => {
            let renewed = marks::renew_leases(s, txn, ids, &[]).await?;
            (txn.query_all(&read.into_query()).await?, renewed)
        }
    };
    let (mut locked, mut journal_fault) = (Vec::new(), false);
    for row in rows {
        journal_fault |= row.try_get::<i32>("", "journal_fault")? == 1;
        locked.push(au::Model::from_query_result(&row, "")?);
    }
    // The requests still open, locked (on PostgreSQL) against a runner recording them meanwhile.
    let asked: Vec<i32> = captured.iter().filter_map(|(g, _)| Some(g.capture.as_ref()?.1.id)).collect();
    let open_requests: Vec<i32> = for_update(pr::Entity::find().filter(pr::Column::Id.is_in(asked)).filter(pr::Column::Status.is_in(super::requests::OPEN_STATUSES.map(|st| st.code()))), txn)
        .all(txn)
        .await?
        .iter()
        .map(|r| r.id)
        .collect();
    let (mut auth_total, mut auth_status, mut process_total, mut reference) = (CaseStatement::new(), CaseStatement::new(), CaseStatement::new(), CaseStatement::new());
    let (mut rows, mut paid, mut messages, mut requests) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (g, c) in &captured {
        let (auth, req, _) = g.capture.as_ref().expect("requested above");
        if !open_requests.contains(&req.id) {
            messages.push(None);
            continue;
        }
        let a = locked.iter().find(|a| a.id == auth.id).ok_or_else(|| ServiceError::NotFound("authorization".into()))?;
        let total = a.captured_minor + c.amount.minor();
        let status = stages::status_after_capture(a, total, c.authorization_closed);
        rows.push(stages::capture_row(a, Some(g.ctx.p.invoice_id), c, req, now));
        auth_total = auth_total.case(au::Column::Id.eq(a.id), Expr::value(total));
        auth_status = auth_status.case(au::Column::Id.eq(a.id), Expr::value(status.code()));
        process_total = process_total.case(pp::Column::Id.eq(g.ctx.p.id), Expr::value(c.amount.minor()));
        reference = reference.case(pr::Column::Id.eq(req.id), Expr::value(c.reference.clone()));
        requests.push(req.id);
        if status == AuthorizationStatus::FullyCaptured {
            paid.push(a.payment_line_id);
        }
        messages.push(Some(stages::captured_message(c, req, a, total, status)?));
    }
    if rows.is_empty() {
        return Ok((messages, journal_fault, renewed));
    }
    w.push_rows(rows);
    w.push(
        au::Entity::update_many()
            .col_expr(au::Column::CapturedMinor, auth_total.finally(Expr::col(au::Column::CapturedMinor)).into())
            .col_expr(au::Column::Status, auth_status.finally(Expr::col(au::Column::Status)).into())
            .filter(au::Column::Id.is_in(locked.iter().map(|a| a.id)))
            .into_query(),
    );
    w.push(
        pp::Entity::update_many()
            .col_expr(pp::Column::CapturedMinor, Expr::col(pp::Column::CapturedMinor).add(Into::<Expr>::into(process_total.finally(Expr::value(0i64)))))
            .filter(pp::Column::Id.is_in(captured.iter().map(|(g, _)| g.ctx.p.id)))
            .into_query(),
    );
    w.push(
        pr::Entity::update_many()
            .col_expr(pr::Column::Status, Expr::value(RequestStatus::Succeeded.code()))
            .col_expr(pr::Column::ProcessorReference, reference.finally(Expr::col(pr::Column::ProcessorReference)).into())
            .col_expr(pr::Column::Message, Expr::value(Option::<String>::None))
            .col_expr(pr::Column::CompletedAt, Expr::value(Some(now)))
            .filter(pr::Column::Id.is_in(requests))
            .filter(pr::Column::Status.is_in(super::requests::OPEN_STATUSES.map(|st| st.code())))
            .into_query(),
    );
    if !paid.is_empty() {
        w.push(pl::Entity::update_many().col_expr(pl::Column::Status, Expr::value(PaymentStatus::Paid.code())).filter(pl::Column::Id.is_in(paid)).into_query());
    }
    Ok((messages, journal_fault, renewed))
}

/// After [`record_captures`]: each invoicing's run holds its capture and stage 2's end.
fn captures_recorded(s: &Services, gs: &mut [Going], messages: Vec<String>) -> ServiceResult<()> {
    let stage = Stage::CaptureOrRefund;
    let now = s.now();
    for (g, message) in gs.iter_mut().zip(messages) {
        let amount = g.captured.as_ref().map(|c| c.amount.minor()).unwrap_or_default();
        g.ctx.p.captured_minor += amount;
        super::ended_in(&mut g.rows, g.ctx.p.id, stage, StageStatus::Succeeded, 1)?;
        g.ctx.marks.end(stage, StageStatus::Succeeded, 1, now, None, message);
    }
    Ok(())
}

/// Another server took one of these processes over (this one stalled past its lease): as on the
/// one-at-a-time path, this run writes nothing more and reports them running. The others stay
/// under this server's lease until it runs out; then recovery finishes them.
fn lease_lost(gs: &mut Vec<Going>, out: &mut Vec<Step>) {
    out.extend(std::mem::take(gs).into_iter().map(|g| Step::Done(g, ProcessStatus::Running)));
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
