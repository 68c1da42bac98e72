//! The services every entry point uses: server functions, background jobs and the CLI call the
//! same functions, each taking the [`Services`] handle (database + clock).
pub mod access;
pub mod audit;
pub mod bootstrap;
pub mod clock;
pub mod customers;
pub mod features;
pub mod parameters;
pub mod setup;

use clock::SharedClock;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QuerySelect, Select};

/// What a service needs from the outside world.
#[derive(Clone, Debug)]
pub struct Services {
    pub db: DatabaseConnection,
    pub clock: SharedClock,
}

impl Services {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        Services { db, clock }
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
