//! The services every entry point uses: server functions, background jobs and the CLI call the
//! same functions, each taking the [`Services`] handle (database + clock).
pub mod access;
pub mod audit;
pub mod authorizations;
pub mod bootstrap;
pub mod cards;
pub mod clock;
pub mod customers;
pub mod demo;
pub mod expiry;
pub mod features;
pub mod jobs;
pub mod journals;
pub mod orders;
pub mod parameters;
pub mod prepayments;
pub mod setup;
pub mod standing;
pub mod storefront;

use crate::connector::simulator::ProcessorSimulator;
use crate::connector::timed::TimedConnector;
use crate::connector::Connector;
use clock::SharedClock;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QuerySelect, Select};
use std::sync::Arc;

/// What a service needs from the outside world.
#[derive(Clone, Debug)]
pub struct Services {
    pub db: DatabaseConnection,
    pub clock: SharedClock,
    /// The payment connector (the processor simulator unless another is configured).
    pub connector: Arc<dyn Connector>,
    /// This server process, as named in the leases it takes on payment processes.
    pub instance: String,
    /// How long a lease on a payment process lasts before recovery may take it over.
    pub lease: chrono::Duration,
    /// Invoicings waiting to be posted together (shared by clones of these services, which must
    /// keep the same database).
    pub invoicing: Arc<crate::pipeline::InvoiceBatches>,
}

impl Services {
    /// Services on `db` with the processor simulator as connector, every call of it ending by
    /// [`crate::connector::timed::DEFAULT_TIMEOUT`], and a 30-second lease.
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        let simulator = Arc::new(ProcessorSimulator::new(db.clone(), clock.clone()));
        let connector = Arc::new(TimedConnector::new(simulator, crate::connector::timed::DEFAULT_TIMEOUT));
        Services {
            db,
            clock,
            connector,
            instance: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease: chrono::Duration::seconds(30),
            invoicing: Arc::new(crate::pipeline::InvoiceBatches::new(true)),
        }
    }

    /// These services with every invoicing posted on its own, never batched with others (the
    /// path a batch leaves unusual invoicings to; tests compare the two).
    pub fn one_at_a_time(mut self) -> Self {
        self.invoicing = Arc::new(crate::pipeline::InvoiceBatches::new(false));
        self
    }

    /// These services with connector calls ending by `timeout` (see [`crate::connector::timed`]).
    pub fn with_connector_timeout(mut self, timeout: std::time::Duration) -> Self {
        let simulator = Arc::new(ProcessorSimulator::new(self.db.clone(), self.clock.clone()));
        self.connector = Arc::new(TimedConnector::new(simulator, timeout));
        self
    }

    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

/// `SELECT … FOR UPDATE` on PostgreSQL. SQLite has a single writer (and one pooled connection),
/// so a write transaction there is already exclusive.
pub(crate) fn for_update<E: EntityTrait>(select: Select<E>, db: &impl ConnectionTrait) -> Select<E> {
    match db.get_database_backend() {
        DbBackend::Postgres => select.lock_exclusive(),
        _ => select,
    }
}

/// Begins a transaction for pipeline bookkeeping whose loss in a database crash recovery redoes:
/// stage marks and logs, a processor request's recorded outcome (the request stays pending and
/// is asked about again), a payment journal (posted once per source). On PostgreSQL its commit
/// does not wait for the WAL flush (`synchronous_commit = off` for this transaction only). The
/// WAL is written in order, so such a commit can only be lost together with everything after
/// it; every commit that must be on disk before money moves, the intent before a processor call
/// above all, stays synchronous and flushes these with it. SQLite's durability is set per
/// connection (`PAYSTAGE_SQLITE_SYNC`). A transaction that sends its writes together can begin
/// plainly and say so in them instead ([`crate::writes::Writes::bookkeeping`]).
/// What makes a PostgreSQL transaction's commit not wait for the log flush ([`begin_bookkeeping`]).
pub(crate) const ASYNCHRONOUS_COMMIT: &str = "SET LOCAL synchronous_commit TO off";

pub(crate) async fn begin_bookkeeping(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(ASYNCHRONOUS_COMMIT).await?;
    }
    Ok(txn)
}
