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
pub mod exposure;
pub mod forecast;
pub mod features;
pub mod jobs;
pub mod notifications;
pub mod open_invoices;
pub mod journals;
pub mod order_views;
pub mod orders;
pub mod parameters;
pub mod prepayments;
pub mod reconciliation;
pub mod settlement;
pub mod setup;
pub mod standing;
pub mod storefront;

use crate::connector::simulator::ProcessorSimulator;
use crate::connector::adyen::{AdyenConnector, AdyenSettings};
use crate::connector::timed::TimedConnector;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
pub(crate) use crate::db::for_update;
use crate::clock::SharedClock;

/// The services with their connector, the pipeline's shared invoicing state and the defaults;
/// [`Services`] itself is defined below the pipeline (`crate::runtime`). The processor is always
/// reached over HTTP (Adyen, or `paystage sandbox` in its own process), or there is none.
impl Services {
    /// Services on `db` with `connector`, every call of it ending by
    /// [`crate::connector::timed::DEFAULT_TIMEOUT`], and a 30-second lease.
    fn with_connector(db: DatabaseConnection, connector: Arc<dyn crate::connector::Connector>, admin: Option<Arc<crate::sandbox::client::SandboxAdmin>>, clock: SharedClock) -> Self {
        Services {
            db,
            clock,
            connector: Arc::new(TimedConnector::new(connector.clone(), crate::connector::timed::DEFAULT_TIMEOUT)),
            untimed: connector,
            connector_timeout: crate::connector::timed::DEFAULT_TIMEOUT,
            processor_store: None,
            processor_admin: admin,
            configured: None,
            secrets: None,
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
        self.connector_timeout = timeout;
        self
    }

    /// Opens Paystage's database at `url` (migrated) with a connector over HTTP
    /// ([`Services::over_http`]).
    pub async fn connect_over_http(url: &str, settings: AdyenSettings, clock: SharedClock) -> Result<Services, sea_orm::DbErr> {
        let db = crate::db::connect_and_migrate(url).await?;
        Services::over_http(db, settings, None, clock).map_err(sea_orm::DbErr::Custom)
    }

    /// Opens Paystage's database at `url` (migrated) with no processor configured: every
    /// processor request is refused as unavailable ([`crate::connector::unconfigured`]).
    pub async fn connect_without_processor(url: &str, clock: SharedClock) -> Result<Services, sea_orm::DbErr> {
        let db = crate::db::connect_and_migrate(url).await?;
        Ok(Services::with_connector(db, Arc::new(crate::connector::unconfigured::NoProcessor::default()), None, clock))
    }

    /// Opens Paystage's database at `url` (migrated) with the default connector set up on the
    /// Payment connectors page ([`crate::connector::configured`]), whose API key `secrets` opens;
    /// none usable: every processor request is refused as unavailable until one is.
    pub async fn connect_configured(url: &str, secrets: Option<crate::secrets::SecretKey>, clock: SharedClock) -> Result<Services, sea_orm::DbErr> {
        let db = crate::db::connect_and_migrate(url).await?;
        Services::configured(db, secrets, clock).await
    }

    /// [`Services::connect_configured`] on an open database.
    pub async fn configured(db: DatabaseConnection, secrets: Option<crate::secrets::SecretKey>, clock: SharedClock) -> Result<Services, sea_orm::DbErr> {
        let configured = Arc::new(crate::connector::configured::Configured::load(db.clone(), clock.clone(), secrets.clone()).await?);
        let mut services = Services::with_connector(db, configured.clone(), None, clock);
        services.configured = Some(configured);
        services.secrets = secrets;
        Ok(services)
    }

    /// Services on `db` whose connector speaks Adyen's Checkout API over HTTP (Adyen, or
    /// `paystage sandbox`), every call ending by [`crate::connector::timed::DEFAULT_TIMEOUT`].
    /// `processor_store` is the sandbox's store when the caller started that sandbox itself (the
    /// tests, `paystage chaos`: [`Services::processor_store`]).
    pub fn over_http(db: DatabaseConnection, settings: AdyenSettings, processor_store: Option<Arc<ProcessorSimulator>>, clock: SharedClock) -> Result<Self, String> {
        let admin = crate::sandbox::client::SandboxAdmin::for_endpoint(&settings.endpoint, &settings.api_key)?;
        let adyen: Arc<dyn crate::connector::Connector> = Arc::new(AdyenConnector::new(settings, db.clone(), clock.clone())?);
        let mut services = Services::with_connector(db, adyen, Some(Arc::new(admin)), clock);
        services.processor_store = processor_store;
        Ok(services)
    }
}
