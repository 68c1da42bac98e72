//! The simulator's desk: requests that arrive together are written in one transaction of the
//! simulator's own ledger, and each caller answered with its outcome.
use super::*;
use tokio::sync::oneshot;

/// What a request does to the ledger, given the transaction it runs in. It refuses
/// (`ConnectorError::Invalid`) before it writes anything: the [`Desk`] runs several in
/// one transaction, without a savepoint each.
pub(super) type Effect = Box<dyn for<'a> FnOnce(&'a DatabaseTransaction) -> Pin<Box<dyn Future<Output = ConnectorResult<Outcome>> + Send + 'a>> + Send>;

/// A request waiting at the [`Desk`] for its turn to be written, with its caller's reply: the
/// faults that fired for it and its outcome.
pub(super) struct Work {
    pub(super) id: u64,
    pub(super) point: String,
    pub(super) tracking_id: String,
    pub(super) command: Command,
    pub(super) amount: i64,
    pub(super) task: Task,
    pub(super) reply: oneshot::Sender<(faults::Fired, ConnectorResult<Outcome>)>,
}

/// What a request asks of the ledger: a capture, which the [`Desk`] applies to its turn's copy of
/// the authorizations and writes with the turn's other captures ([`Captures`]), or any other
/// effect, run in the transaction as it comes.
pub(super) enum Task {
    Capture(CaptureAsk),
    Effect(Effect),
}

/// A capture against an authorization (R-CAP-1): refused at zero or below, declined when the
/// authorization is unknown, not open, in another currency or has less left than asked.
pub(super) struct CaptureAsk {
    pub(super) authorization: String,
    pub(super) amount: Money,
    pub(super) final_capture: bool,
    pub(super) now: chrono::DateTime<chrono::Utc>,
}

/// What a capture does to an authorization as it stands.
pub(super) enum Decided {
    /// Declined, with nothing written.
    Answer(Outcome),
    /// Taken: the authorization's captured total after it, and whether the merchant account's
    /// multiple-partial-capture flag decides if the authorization stays open (only a capture
    /// that leaves part of it open, is not the final one, on an authorization that supports
    /// multiple captures, asks).
    Take { captured: i64, asks_merchant: bool },
}

impl CaptureAsk {
    pub(super) fn refusal(&self) -> Option<ConnectorError> {
        (self.amount.minor() <= 0).then(|| ConnectorError::Invalid("the amount to capture must be above zero".into()))
    }

    pub(super) fn decide(&self, a: Option<&sa::Model>) -> Decided {
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
    pub(super) fn take(&self, a: &mut sa::Model, captured: i64, closed: bool) -> (sc::ActiveModel, Outcome) {
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
pub(super) struct Captures {
    pub(super) authorizations: std::collections::HashMap<String, sa::Model>,
    pub(super) changed: std::collections::BTreeSet<String>,
    pub(super) rows: Vec<sc::ActiveModel>,
    pub(super) merchant_allows: Option<bool>,
}

impl Captures {
    /// Reads the authorizations among `references` not read yet. On PostgreSQL they are locked
    /// until the turn commits, in the order of their references, so that the desks of several
    /// servers never take captures on one authorization at once, nor lock two in opposite orders.
    pub(super) async fn load(&mut self, txn: &DatabaseTransaction, references: Vec<String>) -> Result<(), DbErr> {
        let missing: std::collections::BTreeSet<String> = references.into_iter().filter(|r| !self.authorizations.contains_key(r)).collect();
        if !missing.is_empty() {
            let q = sa::Entity::find().filter(sa::Column::Reference.is_in(missing)).order_by_asc(sa::Column::Reference);
            for a in locked(q, txn).all(txn).await? {
                self.authorizations.insert(a.reference.clone(), a);
            }
        }
        Ok(())
    }

    pub(super) async fn take(&mut self, txn: &DatabaseTransaction, ask: CaptureAsk) -> ConnectorResult<Outcome> {
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
    pub(super) fn write_into(&mut self, w: &mut crate::writes::Writes) {
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
pub(super) struct Desk {
    pub(super) waiting: std::sync::Mutex<Vec<Work>>,
    pub(super) turn: Arc<tokio::sync::Mutex<()>>,
    pub(super) next: std::sync::atomic::AtomicU64,
    /// Transactions written and requests they held, for tests.
    pub(super) written: std::sync::atomic::AtomicU64,
    pub(super) requests: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk").finish_non_exhaustive()
    }
}

/// The most requests one transaction of the [`Desk`] writes.
pub(super) const DESK_MAX: usize = 64;

impl Desk {
    /// Queues a request and waits for its answer (the faults that fired for it, and its outcome);
    /// whoever gets the turn while its request still waits writes every request waiting (in a
    /// spawned task, so a caller going away abandons no one).
    pub(super) async fn submit(&self, db: &DatabaseConnection, clock: &SharedClock, point: &str, tracking_id: &str, command: Command, amount: i64, task: Task) -> (faults::Fired, ConnectorResult<Outcome>) {
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
pub(super) async fn write_together(db: &DatabaseConnection, clock: &SharedClock, works: Vec<Work>) {
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
