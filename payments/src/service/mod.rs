//! The services every entry point uses: server functions, background jobs and the CLI call the
//! same functions, each taking the [`Services`] handle (database + clock).
pub mod access;
pub use crate::clock;
pub use crate::ledger::{audit, expiry};
pub use crate::runtime::Services;
pub mod authorizations;
pub mod bootstrap;
pub mod card_payments;
pub mod cancellation;
pub mod cards;
pub mod customers;
pub mod demo;
pub mod features;
pub mod jobs;
pub mod notifications;
pub mod journals;
pub mod order_views;
pub mod orders;
pub mod parameters;
pub mod prepayments;
pub mod setup;
pub mod standing;
pub mod storefront;

use crate::connector::simulator::{store, ProcessorSimulator};
use crate::connector::adyen::{AdyenConnector, AdyenSettings};
use crate::connector::timed::TimedConnector;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
pub(crate) use crate::db::for_update;
use crate::clock::SharedClock;

/// The services with the processor simulator, the pipeline's shared invoicing state and the
/// defaults; [`Services`] itself is defined below the pipeline (`crate::runtime`).
impl Services {

    /// Services on `db` with the processor simulator over its store `simulator_store`
    /// ([`crate::connector::simulator::store::open`]) as connector, every call of it ending by
    /// [`crate::connector::timed::DEFAULT_TIMEOUT`], and a 30-second lease.
    pub fn new(db: DatabaseConnection, simulator_store: DatabaseConnection, clock: SharedClock) -> Self {
        let simulator = Arc::new(ProcessorSimulator::new(simulator_store, clock.clone()));
        let connector = Arc::new(TimedConnector::new(simulator.clone(), crate::connector::timed::DEFAULT_TIMEOUT));
        Services {
            db,
            clock,
            connector,
            untimed: simulator.clone(),
            simulator: Some(simulator),
            processor_admin: None,
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
        self.connector = Arc::new(TimedConnector::new(self.untimed.clone(), timeout));
        self
    }

    /// Opens Paystage's database at `url` (migrated; the simulator tables an earlier version kept
    /// there dropped, their rows moved to `engine`'s store when there is one) with a connector
    /// over HTTP ([`Services::over_http`]).
    pub async fn connect_over_http(url: &str, settings: AdyenSettings, engine: Option<Arc<ProcessorSimulator>>, clock: SharedClock) -> Result<Services, sea_orm::DbErr> {
        let db = crate::db::connect_and_migrate(url).await?;
        if let Some(engine) = &engine {
            store::import_earlier(&db, engine.store()).await?;
        }
        Services::over_http(db, settings, engine, clock).map_err(sea_orm::DbErr::Custom)
    }

    /// Services on `db` whose connector speaks Adyen's Checkout API over HTTP (Adyen, or
    /// `paystage sandbox`), every call ending by [`crate::connector::timed::DEFAULT_TIMEOUT`].
    /// `engine` is the processor's store when this process can read it (the sandbox's, in tests
    /// and the demo): its faults, its ledger for the invariant checks, and the journal fault hook.
    pub fn over_http(db: DatabaseConnection, settings: AdyenSettings, engine: Option<Arc<ProcessorSimulator>>, clock: SharedClock) -> Result<Self, String> {
        let admin = crate::sandbox::client::SandboxAdmin::for_endpoint(&settings.endpoint, &settings.api_key)?;
        let adyen: Arc<dyn crate::connector::Connector> = Arc::new(AdyenConnector::new(settings, db.clone(), clock.clone())?);
        Ok(Services {
            db,
            clock,
            connector: Arc::new(TimedConnector::new(adyen.clone(), crate::connector::timed::DEFAULT_TIMEOUT)),
            untimed: adyen,
            simulator: engine,
            processor_admin: Some(Arc::new(admin)),
            instance: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease: chrono::Duration::seconds(30),
            invoicing: Arc::new(crate::pipeline::InvoiceBatches::new(true)),
        })
    }

    /// Opens Paystage's database at `url` (migrated) and the simulator's store (at `simulator_url`,
    /// or beside it, [`store::url_for`]), moving the simulator's rows out of Paystage's database
    /// if an earlier version kept them there ([`store::import_earlier`]).
    pub async fn connect(url: &str, simulator_url: Option<&str>, clock: SharedClock) -> Result<Services, sea_orm::DbErr> {
        let db = crate::db::connect_and_migrate(url).await?;
        let store_url = simulator_url.map(str::to_string).unwrap_or_else(|| store::url_for(url));
        let simulator_store = store::open(&store_url).await?;
        store::import_earlier(&db, &simulator_store).await?;
        Ok(Services::new(db, simulator_store, clock))
    }
}
