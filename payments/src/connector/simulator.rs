//! The processor simulator: the default connector in demo and tests, and a real component. It keeps
//! its own durable ledger (`sim_` tables, its own transactions, never Paystage's), is idempotent per
//! tracking id (a repeated id returns the original result and moves no money twice), refuses a
//! capture above the authorized amount and a refund above the captured amount, honours the merchant
//! account's multiple-partial-capture flag, knows payment method variants (interac never supports
//! multiple captures), declines deterministic test cards, and injects the faults of [`super::faults`].
use super::faults;
use super::{Authorized, CardEntry, CardToken, Captured, Connector, ConnectorError, ConnectorResult, Outcome, PaymentReference, Refunded};
use crate::domain::money::{Currency, Money};
use crate::domain::order::Command;
use crate::entity::{connector, sim_authorization as sa, sim_capture as sc, sim_refund as sr, sim_token as st, sim_transaction as stx};
use crate::service::clock::SharedClock;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Set, TransactionTrait,
};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;

fn luhn_ok(number: &str) -> bool {
    let mut sum = 0;
    for (i, c) in number.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else { return false };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn variant_of(number: &str) -> Option<(&'static str, &'static str)> {
    if let Some((_, v, b)) = crate::domain::views::TEST_CARDS.iter().find(|(n, _, _)| *n == number) {
        let behaviour = b.split(' ').next().unwrap_or("approve");
        return Some((v, behaviour));
    }
    let v = if number.starts_with("636368") {
        "interac"
    } else if number.starts_with('4') {
        "visa"
    } else if number.starts_with('5') || number.starts_with('2') {
        "mc"
    } else if number.starts_with("34") || number.starts_with("37") {
        "amex"
    } else if number.starts_with('6') {
        "discover"
    } else {
        return None;
    };
    Some((v, "approve"))
}

fn card_type(variant: &str) -> &'static str {
    match variant {
        "visa" => "Visa",
        "mc" => "Mastercard",
        "amex" => "American Express",
        "discover" => "Discover",
        "interac" => "Interac",
        "maestro" => "Maestro",
        _ => "Card",
    }
}

fn new_reference(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn db_error(e: DbErr) -> ConnectorError {
    ConnectorError::Unavailable(format!("processor storage error: {e}"))
}

fn locked<E: EntityTrait>(q: Select<E>, db: &impl ConnectionTrait) -> Select<E> {
    if db.get_database_backend() == DbBackend::Postgres {
        q.lock_exclusive()
    } else {
        q
    }
}

#[derive(Clone, Debug)]
pub struct ProcessorSimulator {
    db: DatabaseConnection,
    clock: SharedClock,
    desk: Arc<Desk>,
}

/// What a request does to the ledger, given the transaction it runs in. It refuses
/// (`ConnectorError::Invalid`) before it writes anything: the [`Desk`] runs several in
/// one transaction, without a savepoint each.
type Effect = Box<dyn for<'a> FnOnce(&'a DatabaseTransaction) -> Pin<Box<dyn Future<Output = ConnectorResult<Outcome>> + Send + 'a>> + Send>;

/// A request waiting at the [`Desk`] for its turn to be written, with its caller's reply: the
/// faults that fired for it and its outcome.
struct Work {
    id: u64,
    point: String,
    tracking_id: String,
    command: Command,
    amount: i64,
    task: Task,
    reply: oneshot::Sender<(faults::Fired, ConnectorResult<Outcome>)>,
}

/// What a request asks of the ledger: a capture, which the [`Desk`] applies to its turn's copy of
/// the authorizations and writes with the turn's other captures ([`Captures`]), or any other
/// effect, run in the transaction as it comes.
enum Task {
    Capture(CaptureAsk),
    Effect(Effect),
}

/// A capture against an authorization (R-CAP-1): refused at zero or below, declined when the
/// authorization is unknown, not open, in another currency or has less left than asked.
struct CaptureAsk {
    authorization: String,
    amount: Money,
    final_capture: bool,
    now: chrono::DateTime<chrono::Utc>,
}

/// What a capture does to an authorization as it stands.
enum Decided {
    /// Declined, with nothing written.
    Answer(Outcome),
    /// Taken: the authorization's captured total after it, and whether the merchant account's
    /// multiple-partial-capture flag decides if the authorization stays open (only a capture
    /// that leaves part of it open, is not the final one, on an authorization that supports
    /// multiple captures, asks).
    Take { captured: i64, asks_merchant: bool },
}

impl CaptureAsk {
    fn refusal(&self) -> Option<ConnectorError> {
        (self.amount.minor() <= 0).then(|| ConnectorError::Invalid("the amount to capture must be above zero".into()))
    }

    fn decide(&self, a: Option<&sa::Model>) -> Decided {
        let Some(a) = a else {
            return Decided::Answer(Outcome::Declined { code: "unknown_authorization".into(), message: "The authorization is not known to the processor.".into() });
        };
        if a.status != "open" {
            return Decided::Answer(Outcome::Declined { code: "authorization_closed".into(), message: format!("The authorization is {}.", a.status) });
        }
        let amount = self.amount;
        if a.currency != amount.currency().code() {
            return Decided::Answer(Outcome::Declined { code: "currency_mismatch".into(), message: "The capture currency differs from the authorization's.".into() });
        }
        let remaining = a.amount_minor - a.captured_minor;
        if amount.minor() > remaining {
            return Decided::Answer(Outcome::Declined {
                code: "amount_exceeds_authorization".into(),
                message: format!("Capture of {} exceeds the {} left on the authorization.", amount, Money::from_minor(remaining, amount.currency())),
            });
        }
        let captured = a.captured_minor + amount.minor();
        Decided::Take { captured, asks_merchant: captured != a.amount_minor && !self.final_capture && a.supports_multiple_captures }
    }

    /// Takes the capture on `a` (whose captured total and status change in place): the capture's
    /// ledger row to write and the answer.
    fn take(&self, a: &mut sa::Model, captured: i64, closed: bool) -> (sc::ActiveModel, Outcome) {
        let reference = new_reference("cap");
        let row = sc::ActiveModel {
            reference: Set(reference.clone()),
            authorization_reference: Set(a.reference.clone()),
            amount_minor: Set(self.amount.minor()),
            refunded_minor: Set(0),
            created_at: Set(self.now),
        };
        a.captured_minor = captured;
        a.status = if closed { "closed".into() } else { "open".into() };
        (row, Outcome::Captured(Captured { reference, amount: self.amount, authorization_closed: closed }))
    }
}

/// A [`Desk`] turn's captures: the authorizations they touch, read once for the turn and changed
/// in memory as each capture is taken (so that two captures on one authorization in one turn see
/// each other, in the order they came), and written at the end in two statements (the captures'
/// rows, the authorizations' totals and statuses), sent together. Before any other effect runs,
/// what is pending is written and the copies dropped, so that the effect reads the ledger as it is.
#[derive(Default)]
struct Captures {
    authorizations: std::collections::HashMap<String, sa::Model>,
    changed: std::collections::BTreeSet<String>,
    rows: Vec<sc::ActiveModel>,
    merchant_allows: Option<bool>,
}

impl Captures {
    /// Reads the authorizations among `references` not read yet. On PostgreSQL they are locked
    /// until the turn commits, in the order of their references, so that the desks of several
    /// servers never take captures on one authorization at once, nor lock two in opposite orders.
    async fn load(&mut self, txn: &DatabaseTransaction, references: Vec<String>) -> Result<(), DbErr> {
        let missing: std::collections::BTreeSet<String> = references.into_iter().filter(|r| !self.authorizations.contains_key(r)).collect();
        if !missing.is_empty() {
            let q = sa::Entity::find().filter(sa::Column::Reference.is_in(missing)).order_by_asc(sa::Column::Reference);
            for a in locked(q, txn).all(txn).await? {
                self.authorizations.insert(a.reference.clone(), a);
            }
        }
        Ok(())
    }

    async fn take(&mut self, txn: &DatabaseTransaction, ask: CaptureAsk) -> ConnectorResult<Outcome> {
        if let Some(refused) = ask.refusal() {
            return Err(refused);
        }
        self.load(txn, vec![ask.authorization.clone()]).await.map_err(db_error)?;
        let (captured, asks_merchant) = match ask.decide(self.authorizations.get(&ask.authorization)) {
            Decided::Answer(declined) => return Ok(declined),
            Decided::Take { captured, asks_merchant } => (captured, asks_merchant),
        };
        let closed = !asks_merchant
            || !match self.merchant_allows {
                Some(allows) => allows,
                None => *self.merchant_allows.insert(ProcessorSimulator::merchant_allows_multiple_partial_captures(txn).await?),
            };
        let a = self.authorizations.get_mut(&ask.authorization).ok_or_else(|| ConnectorError::Unavailable("authorization missing".into()))?;
        let (row, outcome) = ask.take(a, captured, closed);
        self.rows.push(row);
        self.changed.insert(ask.authorization);
        Ok(outcome)
    }

    /// What is pending, added to `w`; the copies are dropped.
    fn write_into(&mut self, w: &mut crate::writes::Writes) {
        use sea_orm::sea_query::{CaseStatement, Expr};
        if !self.rows.is_empty() {
            w.push_rows(std::mem::take(&mut self.rows));
        }
        if !self.changed.is_empty() {
            let (mut total, mut status) = (CaseStatement::new(), CaseStatement::new());
            for (r, a) in self.changed.iter().filter_map(|r| Some((r, self.authorizations.get(r)?))) {
                total = total.case(sa::Column::Reference.eq(r.clone()), Expr::value(a.captured_minor));
                status = status.case(sa::Column::Reference.eq(r.clone()), Expr::value(a.status.clone()));
            }
            w.push(
                sa::Entity::update_many()
                    .col_expr(sa::Column::CapturedMinor, total.finally(Expr::col(sa::Column::CapturedMinor)).into())
                    .col_expr(sa::Column::Status, status.finally(Expr::col(sa::Column::Status)).into())
                    .filter(sa::Column::Reference.is_in(std::mem::take(&mut self.changed)))
                    .into_query(),
            );
        }
        self.authorizations.clear();
    }
}

/// Requests that reach the simulator while it is writing others wait, and the next turn writes
/// all of them (up to [`DESK_MAX`]) in one transaction, answering each caller once it commits. The
/// turn reads the faults, the tracking ids already recorded and the authorizations its captures
/// touch once for all its requests, draws each request's faults in memory ([`faults::Drawing`]),
/// takes each capture on its copy of the authorizations ([`Captures`]) and runs any other effect
/// as it comes, and writes the captures, the authorizations' totals, the tracking ids' records and
/// the faults' counts once at the end: a handful of statements a turn where it took four a request,
/// and eight before that (issue #3: the simulator's statements were most of those an invoice cost
/// on SQLite's single connection, and on PostgreSQL, where each request had its own transaction,
/// 32 captures at once cost some 200 round trips). A retry, or a tracking id sent twice in one
/// turn, is answered from the record without running its effect again. A refused request wrote
/// nothing (every effect refuses before it writes); a storage error part way through an effect
/// undoes the whole turn, and every caller is told the processor is unavailable (asking about the
/// tracking id then says nothing was done).
///
/// Each server has its own desk. On SQLite the turn's transaction takes the write lock from its
/// start; on PostgreSQL it locks what it reads to change: the faults (in the order of their ids),
/// then the authorizations its captures touch (in the order of their references), and any other
/// effect locks the rows it changes as it comes. Two servers' turns on one authorization therefore
/// take their captures one after the other, and a use of a fault is consumed once. Should two
/// turns still lock in a cycle (one's effect wanting a row the other's captures hold, and the
/// reverse), PostgreSQL undoes one of them after its deadlock timeout, as a storage error above.
/// A tracking id that two servers record at once fails the second turn on the record's key: that
/// turn is undone as above, and the retry is answered from the first's record.
#[derive(Default)]
struct Desk {
    waiting: std::sync::Mutex<Vec<Work>>,
    turn: Arc<tokio::sync::Mutex<()>>,
    next: std::sync::atomic::AtomicU64,
    /// Transactions written and requests they held, for tests.
    written: std::sync::atomic::AtomicU64,
    requests: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk").finish_non_exhaustive()
    }
}

/// The most requests one transaction of the [`Desk`] writes.
const DESK_MAX: usize = 64;

impl Desk {
    /// Queues a request and waits for its answer (the faults that fired for it, and its outcome);
    /// whoever gets the turn while its request still waits writes every request waiting (in a
    /// spawned task, so a caller going away abandons no one).
    async fn submit(&self, db: &DatabaseConnection, clock: &SharedClock, point: &str, tracking_id: &str, command: Command, amount: i64, task: Task) -> (faults::Fired, ConnectorResult<Outcome>) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        let w = Work { id, point: point.to_string(), tracking_id: tracking_id.to_string(), command, amount, task, reply };
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).push(w);
        let done = match crate::turns::turn_or_answer(&self.turn, &mut answer).await {
            crate::turns::Waited::Answered(done) => done,
            crate::turns::Waited::Turn(turn) => {
                // Let requests on their way (sent together with this one) join this turn.
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
                let works = crate::turns::take_group(&mut self.waiting.lock().unwrap_or_else(|e| e.into_inner()), |w| w.id == id, DESK_MAX);
                if !works.is_empty() {
                    self.written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.requests.fetch_add(works.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let (db, clock) = (db.clone(), clock.clone());
                    tokio::spawn(async move {
                        let started = std::time::Instant::now();
                        write_together(&db, &clock, works).await;
                        crate::observe::phase(|| "simulator desk".into(), started.elapsed());
                        drop(turn);
                    });
                }
                answer.await
            }
        };
        done.unwrap_or_else(|_| (faults::Fired::default(), Err(ConnectorError::Unavailable("the processor could not record the request; ask about its tracking id".into()))))
    }
}

/// Writes `works` in one transaction (see [`Desk`]) and answers each once it has committed. If
/// the transaction fails, every request is told the processor is unavailable (nothing of it was
/// written: asking about the tracking id says so).
async fn write_together(db: &DatabaseConnection, clock: &SharedClock, works: Vec<Work>) {
    type Reply = oneshot::Sender<(faults::Fired, ConnectorResult<Outcome>)>;
    let mut replies: Vec<(Reply, faults::Fired, ConnectorResult<Outcome>)> = Vec::with_capacity(works.len());
    let written: Result<(), String> = async {
        // The write lock from the start: the faults' uses are read and consumed in this transaction.
        let immediate = sea_orm::TransactionOptions { sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate), ..Default::default() };
        let txn = crate::observe::timed("desk begin", db.begin_with_options(immediate)).await.map_err(|e| e.to_string())?;
        let mut drawing = faults::Drawing::load(&txn).await.map_err(|e| e.to_string())?;
        let ids: Vec<String> = works.iter().map(|w| w.tracking_id.clone()).collect();
        // Tracking ids recorded before (retries), and then those this turn records.
        let mut recorded: std::collections::HashMap<String, stx::Model> =
            stx::Entity::find().filter(stx::Column::TrackingId.is_in(ids)).all(&txn).await.map_err(|e| e.to_string())?.into_iter().map(|t| (t.tracking_id.clone(), t)).collect();
        let mut records = Vec::new();
        let now = clock.now();
        // The authorizations this turn's captures touch, read at once.
        let mut captures = Captures::default();
        let references = works.iter().filter_map(|w| match &w.task {
            Task::Capture(ask) => Some(ask.authorization.clone()),
            Task::Effect(_) => None,
        });
        captures.load(&txn, references.collect()).await.map_err(|e| e.to_string())?;
        for w in works {
            let Work { point, tracking_id, command, amount, task, reply, .. } = w;
            let fired = drawing.draw(&point);
            if fired.error_before {
                replies.push((reply, fired, Err(ConnectorError::Unavailable("injected fault: error before the effect".into()))));
                continue;
            }
            if let Some(t) = recorded.get(&tracking_id) {
                replies.push((reply, fired, ProcessorSimulator::replay(t, command)));
                continue;
            }
            let result = match task {
                Task::Capture(ask) => captures.take(&txn, ask).await,
                Task::Effect(effect) => {
                    // The captures taken so far written first: the effect reads the ledger.
                    let mut w = crate::writes::Writes::on(&txn);
                    captures.write_into(&mut w);
                    w.run(&txn).await.map_err(|e| e.to_string())?;
                    effect(&txn).await
                }
            };
            match result {
                Ok(outcome) => {
                    let t = ProcessorSimulator::record_of(&tracking_id, command, amount, &outcome, now).map_err(|e| e.to_string())?;
                    records.push(stx::ActiveModel::from(t.clone()));
                    recorded.insert(tracking_id, t);
                    replies.push((reply, fired, Ok(outcome)));
                }
                // Refused: every effect refuses before it writes anything.
                Err(refused @ ConnectorError::Invalid(_)) => replies.push((reply, fired, Err(refused))),
                // A storage error part way through an effect: the whole turn is undone.
                Err(e) => return Err(e.to_string()),
            }
        }
        let mut w = crate::writes::Writes::on(&txn);
        captures.write_into(&mut w);
        if !records.is_empty() {
            w.push_rows(records);
        }
        w.run(&txn).await.map_err(|e| e.to_string())?;
        drawing.store(&txn).await.map_err(|e| e.to_string())?;
        crate::observe::timed("desk commit", txn.commit()).await.map_err(|e| e.to_string())
    }
    .await;
    match written {
        Ok(()) => {
            for (reply, fired, answer) in replies {
                let _ = reply.send((fired, answer));
            }
        }
        Err(e) => {
            let text = format!("processor storage error: {e}");
            for (reply, _, _) in replies {
                let _ = reply.send((faults::Fired::default(), Err(ConnectorError::Unavailable(text.clone()))));
            }
        }
    }
}

impl ProcessorSimulator {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        ProcessorSimulator { db, clock, desk: Default::default() }
    }

    /// (transactions, requests) the simulator's [`Desk`] has written since it started.
    pub fn written_together(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.desk.written.load(Relaxed), self.desk.requests.load(Relaxed))
    }

    fn after<T>(fired: faults::Fired, result: ConnectorResult<T>) -> ConnectorResult<T> {
        if fired.timeout_after {
            Err(ConnectorError::Timeout)
        } else {
            result
        }
    }

    /// The answer given again for a tracking id recorded as `t`, asked again for `command`.
    fn replay(t: &stx::Model, command: Command) -> ConnectorResult<Outcome> {
        if t.command != command.code() {
            return Err(ConnectorError::Invalid(format!("tracking id {} was used for {} already", t.tracking_id, t.command)));
        }
        serde_json::from_str(&t.response).map_err(|e| ConnectorError::Unavailable(e.to_string()))
    }

    /// The record of a tracking id's outcome, written in the same transaction as its effect.
    fn record_of(tracking_id: &str, command: Command, amount: i64, outcome: &Outcome, now: chrono::DateTime<chrono::Utc>) -> Result<stx::Model, DbErr> {
        let (label, reference) = match outcome {
            Outcome::Authorized(a) | Outcome::Adjusted(a) => ("approved", Some(a.reference.clone())),
            Outcome::Captured(c) => ("approved", Some(c.reference.clone())),
            Outcome::Refunded(r) => ("approved", Some(r.reference.clone())),
            Outcome::Voided { reference } => ("approved", Some(reference.clone())),
            Outcome::Declined { .. } => ("declined", None),
        };
        Ok(stx::Model {
            tracking_id: tracking_id.to_string(),
            command: command.code().to_string(),
            amount_minor: amount,
            outcome: label.to_string(),
            reference,
            response: serde_json::to_string(outcome).map_err(|e| DbErr::Custom(e.to_string()))?,
            created_at: now,
        })
    }

    /// Runs one request: faults drawn, then the effect and its record in one transaction (or the
    /// replay of a tracking id seen before), then a timeout after the effect.
    async fn execute<T, F>(&self, point: &str, tracking_id: &str, command: Command, amount: i64, effect: F) -> ConnectorResult<T>
    where
        T: DeserializeOwned + Serialize,
        F: for<'a> FnOnce(&'a DatabaseTransaction) -> Pin<Box<dyn Future<Output = ConnectorResult<Outcome>> + Send + 'a>> + Send + 'static,
    {
        self.execute_task(point, tracking_id, command, amount, Task::Effect(Box::new(effect))).await
    }

    /// [`Self::execute`] for any [`Task`].
    async fn execute_task<T>(&self, point: &str, tracking_id: &str, command: Command, amount: i64, task: Task) -> ConnectorResult<T>
    where
        T: DeserializeOwned + Serialize,
    {
        if tracking_id.trim().is_empty() {
            return Err(ConnectorError::Invalid("a tracking id is required (Enable Request Protection)".into()));
        }
        // A latency fault is the processor's response time, its own work included (as a remote
        // processor's is): the answer, whatever it is, comes `latency_ms` after the request.
        let asked = tokio::time::Instant::now();
        // Faults drawn, retries found and effects written together with the requests that
        // arrived with this one ([`Desk`]).
        let (fired, result) = self.desk.submit(&self.db, &self.clock, point, tracking_id, command, amount, task).await;
        sleep_precisely(asked + std::time::Duration::from_millis(fired.latency_ms)).await;
        // A refusal (an injected error before the effect among them) is answered as it is; an
        // outcome may still be lost to an injected timeout.
        result.and_then(|outcome| Self::after(fired, answer(outcome)))
    }

    async fn merchant_allows_multiple_partial_captures(txn: &DatabaseTransaction) -> ConnectorResult<bool> {
        Ok(connector::Entity::find()
            .filter(connector::Column::Kind.eq("simulator"))
            .one(txn)
            .await
            .map_err(db_error)?
            .is_none_or(|c| c.allow_multiple_partial_capture))
    }
}

/// Waits until `at`, and no longer than the operating system's timer makes it: tokio's timer
/// rounds a deadline up to its next millisecond tick, so a processor given 50 ms of latency
/// answered after 51.1 ms on average (issue #3, README). The last stretch is slept on a blocking
/// thread, whose sleep wakes within tens of microseconds. Never returns before `at`.
async fn sleep_precisely(at: tokio::time::Instant) {
    // Tokio's sleep wakes up to a tick and a half late: stop it that much before `at`.
    const COARSE_MARGIN: std::time::Duration = std::time::Duration::from_micros(1_500);
    // No latency (or none left): no timer at all. Even a deadline already past waits for the
    // timer's next tick if it falls after the last tick the timer processed.
    let now = tokio::time::Instant::now();
    if now >= at {
        return;
    }
    if let Some(coarse) = at.checked_sub(COARSE_MARGIN).filter(|coarse| *coarse > now) {
        tokio::time::sleep_until(coarse).await;
    }
    let left = at.saturating_duration_since(tokio::time::Instant::now());
    if !left.is_zero() && tokio::task::spawn_blocking(move || std::thread::sleep(left)).await.is_err() {
        // The blocking pool is shutting down: the coarse timer, late but never early.
        tokio::time::sleep_until(at).await;
    }
}

/// The caller's answer for an outcome (a decline is an error).
fn answer<T: DeserializeOwned>(outcome: Outcome) -> ConnectorResult<T> {
    match outcome {
        Outcome::Declined { code, message } => Err(ConnectorError::Declined { code, message }),
        Outcome::Voided { .. } => serde_json::from_value(serde_json::Value::Null).map_err(|e| ConnectorError::Unavailable(e.to_string())),
        Outcome::Authorized(a) | Outcome::Adjusted(a) => to_t(&a),
        Outcome::Captured(c) => to_t(&c),
        Outcome::Refunded(r) => to_t(&r),
    }
}

fn to_t<S: Serialize, T: DeserializeOwned>(s: &S) -> ConnectorResult<T> {
    serde_json::to_value(s)
        .and_then(serde_json::from_value)
        .map_err(|e| ConnectorError::Unavailable(e.to_string()))
}


#[async_trait::async_trait]
impl Connector for ProcessorSimulator {
    async fn payment_reference(&self, command: Command, amount: Money) -> ConnectorResult<PaymentReference> {
        Ok(PaymentReference { tracking_id: uuid::Uuid::new_v4().to_string(), command, amount, initiated_at: self.clock.now() })
    }

    async fn tokenize(&self, card: CardEntry) -> ConnectorResult<CardToken> {
        let number: String = card.number.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if !(12..=19).contains(&number.len()) || !number.chars().all(|c| c.is_ascii_digit()) || !luhn_ok(&number) {
            return Err(ConnectorError::Invalid("The card number is not valid.".into()));
        }
        let Some((variant, behaviour)) = variant_of(&number) else {
            return Err(ConnectorError::Invalid("This card brand is not accepted.".into()));
        };
        let expiry = card.expiry.trim();
        let valid_expiry = expiry.len() == 5
            && expiry.as_bytes()[2] == b'/'
            && expiry[..2].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
            && expiry[3..].parse::<u32>().is_ok();
        if !valid_expiry {
            return Err(ConnectorError::Invalid("The expiry date must be MM/YY.".into()));
        }
        let holder = card.holder.trim();
        if holder.is_empty() || holder.chars().count() > 60 {
            return Err(ConnectorError::Invalid("Enter the name on the card (at most 60 characters).".into()));
        }
        let token = CardToken {
            token: new_reference("tok"),
            payment_method_variant: variant.to_string(),
            card_type: card_type(variant).to_string(),
            last_four: number[number.len() - 4..].to_string(),
            holder: holder.to_string(),
            expiry: expiry.to_string(),
        };
        st::ActiveModel {
            token: Set(token.token.clone()),
            variant: Set(token.payment_method_variant.clone()),
            card_type: Set(token.card_type.clone()),
            last_four: Set(token.last_four.clone()),
            holder: Set(token.holder.clone()),
            expiry: Set(token.expiry.clone()),
            behaviour: Set(behaviour.to_string()),
            created_at: Set(self.clock.now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_error)?;
        Ok(token)
    }

    async fn describe_token(&self, token: &str) -> ConnectorResult<Option<CardToken>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let found = st::Entity::find_by_id(token.to_string()).one(&self.db).await.map_err(db_error)?;
        Ok(found.map(|t| CardToken {
            token: t.token,
            payment_method_variant: t.variant,
            card_type: t.card_type,
            last_four: t.last_four,
            holder: t.holder,
            expiry: t.expiry,
        }))
    }

    async fn authorize(&self, tracking_id: &str, token: &str, amount: Money) -> ConnectorResult<Authorized> {
        let now = self.clock.now();
        let token = token.to_string();
        self.execute("authorize", tracking_id, Command::Authorize, amount.minor(), move |txn| {
            Box::pin(async move {
                if amount.minor() <= 0 {
                    return Err(ConnectorError::Invalid("the amount to authorize must be above zero".into()));
                }
                let Some(t) = st::Entity::find_by_id(token.clone()).one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_token".into(), message: "The card token is not known to the processor.".into() });
                };
                let decline = match t.behaviour.as_str() {
                    "declined" => Some(("declined", "The issuer declined the card.")),
                    "insufficient_funds" => Some(("insufficient_funds", "Insufficient funds.")),
                    "expired_card" => Some(("expired_card", "The card has expired.")),
                    _ => None,
                };
                if let Some((code, message)) = decline {
                    return Ok(Outcome::Declined { code: code.into(), message: message.into() });
                }
                let supports = t.variant != "interac";
                let reference = new_reference("auth");
                sa::ActiveModel {
                    reference: Set(reference.clone()),
                    token: Set(token),
                    currency: Set(amount.currency().code().to_string()),
                    amount_minor: Set(amount.minor()),
                    captured_minor: Set(0),
                    supports_multiple_captures: Set(supports),
                    status: Set("open".into()),
                    created_at: Set(now),
                }
                .insert(txn)
                .await
                .map_err(db_error)?;
                Ok(Outcome::Authorized(Authorized {
                    reference,
                    amount,
                    supports_multiple_captures: supports,
                    payment_method_variant: t.variant,
                    card_type: t.card_type,
                    last_four: t.last_four,
                }))
            })
        })
        .await
    }

    async fn capture(&self, tracking_id: &str, authorization: &str, amount: Money, final_capture: bool) -> ConnectorResult<Captured> {
        let ask = CaptureAsk { authorization: authorization.to_string(), amount, final_capture, now: self.clock.now() };
        self.execute_task("capture", tracking_id, Command::Capture, amount.minor(), Task::Capture(ask)).await
    }

    async fn refund(&self, tracking_id: &str, capture: &str, amount: Money) -> ConnectorResult<Refunded> {
        let now = self.clock.now();
        let capture = capture.to_string();
        self.execute("refund", tracking_id, Command::Refund, amount.minor(), move |txn| {
            Box::pin(async move {
                if amount.minor() <= 0 {
                    return Err(ConnectorError::Invalid("the amount to refund must be above zero".into()));
                }
                let q = locked(sc::Entity::find_by_id(capture.clone()), txn);
                let Some(c) = q.one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_capture".into(), message: "The capture is not known to the processor.".into() });
                };
                if amount.minor() > c.amount_minor - c.refunded_minor {
                    return Ok(Outcome::Declined {
                        code: "amount_exceeds_capture".into(),
                        message: "The refund amount exceeds the amount captured.".into(),
                    });
                }
                let reference = new_reference("ref");
                sr::ActiveModel {
                    reference: Set(reference.clone()),
                    capture_reference: Set(c.reference.clone()),
                    amount_minor: Set(amount.minor()),
                    created_at: Set(now),
                }
                .insert(txn)
                .await
                .map_err(db_error)?;
                let refunded = c.refunded_minor + amount.minor();
                let mut am: sc::ActiveModel = c.into();
                am.refunded_minor = Set(refunded);
                am.update(txn).await.map_err(db_error)?;
                Ok(Outcome::Refunded(Refunded { reference, amount }))
            })
        })
        .await
    }

    async fn void(&self, tracking_id: &str, authorization: &str) -> ConnectorResult<()> {
        let authorization = authorization.to_string();
        self.execute("void", tracking_id, Command::Void, 0, move |txn| {
            Box::pin(async move {
                let q = locked(sa::Entity::find_by_id(authorization.clone()), txn);
                let Some(a) = q.one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_authorization".into(), message: "The authorization is not known to the processor.".into() });
                };
                if a.status != "open" {
                    return Ok(Outcome::Declined { code: "authorization_closed".into(), message: format!("The authorization is {}.", a.status) });
                }
                let reference = a.reference.clone();
                let mut am: sa::ActiveModel = a.into();
                am.status = Set("voided".into());
                am.update(txn).await.map_err(db_error)?;
                Ok(Outcome::Voided { reference })
            })
        })
        .await
    }

    async fn adjust_authorization(&self, tracking_id: &str, authorization: &str, new_amount: Money) -> ConnectorResult<Authorized> {
        let authorization = authorization.to_string();
        self.execute("adjust", tracking_id, Command::Adjust, new_amount.minor(), move |txn| {
            Box::pin(async move {
                let q = locked(sa::Entity::find_by_id(authorization.clone()), txn);
                let Some(a) = q.one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_authorization".into(), message: "The authorization is not known to the processor.".into() });
                };
                if a.status != "open" || new_amount.minor() < a.captured_minor {
                    return Ok(Outcome::Declined { code: "adjustment_refused".into(), message: "The authorization cannot be adjusted to that amount.".into() });
                }
                let t = st::Entity::find_by_id(a.token.clone()).one(txn).await.map_err(db_error)?;
                if t.as_ref().is_some_and(|t| t.behaviour != "approve") {
                    return Ok(Outcome::Declined { code: "declined".into(), message: "The issuer declined the adjustment.".into() });
                }
                let t = t.ok_or_else(|| ConnectorError::Unavailable("token missing".into()))?;
                let (reference, supports) = (a.reference.clone(), a.supports_multiple_captures);
                let mut am: sa::ActiveModel = a.into();
                am.amount_minor = Set(new_amount.minor());
                am.update(txn).await.map_err(db_error)?;
                Ok(Outcome::Adjusted(Authorized {
                    reference,
                    amount: new_amount,
                    supports_multiple_captures: supports,
                    payment_method_variant: t.variant,
                    card_type: t.card_type,
                    last_four: t.last_four,
                }))
            })
        })
        .await
    }

    async fn query(&self, tracking_id: &str) -> ConnectorResult<Option<Outcome>> {
        let fired = faults::fire_alone(&self.db, "query").await.map_err(db_error)?;
        if fired.error_before {
            return Err(ConnectorError::Unavailable("injected fault".into()));
        }
        let t = stx::Entity::find_by_id(tracking_id.to_string()).one(&self.db).await.map_err(db_error)?;
        t.map(|t| serde_json::from_str::<Outcome>(&t.response).map_err(|e| ConnectorError::Unavailable(e.to_string())))
            .transpose()
    }
}

/// The simulator's ledger totals, for invariant checks against Paystage's own records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub captures: u64,
}

pub async fn ledger_totals(db: &impl ConnectionTrait) -> Result<LedgerTotals, DbErr> {
    let auths = sa::Entity::find().all(db).await?;
    let caps = sc::Entity::find().all(db).await?;
    let refs = sr::Entity::find().all(db).await?;
    Ok(LedgerTotals {
        authorized: auths.iter().map(|a| a.amount_minor).sum(),
        captured: caps.iter().map(|c| c.amount_minor).sum(),
        refunded: refs.iter().map(|r| r.amount_minor).sum(),
        captures: caps.len() as u64,
    })
}

/// Captured total per authorization reference, from the simulator's ledger.
pub async fn captured_by_authorization(db: &impl ConnectionTrait) -> Result<std::collections::BTreeMap<String, (i64, Currency)>, DbErr> {
    let mut out = std::collections::BTreeMap::new();
    for a in sa::Entity::find().all(db).await? {
        let currency = Currency::stored(&a.currency).map_err(|e| DbErr::Custom(format!("simulator authorization {}: {e}", a.reference)))?;
        out.insert(a.reference, (a.captured_minor, currency));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::sleep_precisely;
    use std::time::Duration;

    // A latency fault is a floor (issue #3's processor simulator: the answer comes `latency_ms`
    // after the request): the precise sleep never wakes before its deadline, for deadlines shorter and
    // longer than the coarse timer's margin, and one already past returns at once.
    #[tokio::test]
    async fn a_precise_sleep_never_ends_before_its_deadline() {
        for micros in [0u64, 300, 1_200, 1_600, 5_000, 20_000, 50_000] {
            let start = tokio::time::Instant::now();
            let at = start + Duration::from_micros(micros);
            sleep_precisely(at).await;
            let woke = tokio::time::Instant::now();
            assert!(woke >= at, "woke {:?} before a deadline {micros} µs away", at - woke);
        }
        let past = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(2)).await;
        let before = tokio::time::Instant::now();
        sleep_precisely(past).await;
        assert!(before.elapsed() < Duration::from_secs(1), "a deadline already past does not wait for a timer");
    }
}
