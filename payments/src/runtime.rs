//! What every layer needs from the outside world ([`Services`]): the database, the clock, the
//! payment connector, this server's name and lease, and its shared invoicing state. Defined below
//! the pipeline and the services so both take the same handle; the services construct it
//! (`Services::new` in `crate::service`).
use crate::clock::SharedClock;
use crate::connector::Connector;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// What a service needs from the outside world.
#[derive(Clone, Debug)]
pub struct Services {
    pub db: DatabaseConnection,
    pub clock: SharedClock,
    /// The payment connector (Adyen's Checkout API over HTTP: Adyen, or `paystage sandbox`; or
    /// none configured, [`crate::connector::unconfigured`]), every call of it ending by its
    /// deadline (`crate::connector::timed`).
    pub connector: Arc<dyn Connector>,
    /// The same connector without the deadline, which `with_connector_timeout` wraps anew.
    pub untimed: Arc<dyn Connector>,
    /// The deadline of every connector call ([`crate::connector::timed`]).
    pub connector_timeout: std::time::Duration,
    /// The books of a processor sandbox that the caller started itself and may read (the tests
    /// and `paystage chaos`, which check Paystage's records against the processor's); never set
    /// by `paystage serve` or the other commands, which reach their processor only over HTTP.
    pub processor_store: Option<Arc<crate::connector::simulator::ProcessorSimulator>>,
    /// The processor's fault administration, when Paystage reaches it over HTTP ([`Self::faults`]).
    pub processor_admin: Option<Arc<crate::sandbox::client::SandboxAdmin>>,
    /// The default connector of the database when no processor is set in the environment
    /// (issue #43: set up on the Payment connectors page), which [`Self::connector`] wraps.
    pub configured: Option<Arc<crate::connector::configured::Configured>>,
    /// The server's secret key, which seals connectors' keys in the database (`crate::secrets`).
    pub secrets: Option<crate::secrets::SecretKey>,
    /// This server process, as named in the leases it takes on payment processes.
    pub instance: String,
    /// How long a lease on a payment process lasts before recovery may take it over.
    pub lease: chrono::Duration,
    /// Invoicings waiting to be posted together (shared by clones of these services, which must
    /// keep the same database): the pipeline's `InvoiceBatches`, which
    /// `crate::pipeline::batches` reads back.
    pub invoicing: Arc<dyn Invoicing>,
}

/// The pipeline's shared invoicing state, held here without this module naming it (the state's
/// queues hold services in turn).
pub trait Invoicing: std::any::Any + Send + Sync + std::fmt::Debug {}

impl Services {
    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Rebuilds the configured connector if the default connector changed (on this server or
    /// another sharing the database); nothing when the processor is set in the environment.
    pub async fn reload_connector(&self) -> Result<(), sea_orm::DbErr> {
        match &self.configured {
            Some(c) => c.reload().await,
            None => Ok(()),
        }
    }

    /// What reaches the processor of connector `connector_id` (the connector a payment line,
    /// authorization or processor request records), every call ending by its deadline: that
    /// connector as set up on the Payment connectors page, or, with the processor set in the
    /// environment, that processor for every connector.
    pub fn processor(&self, connector_id: i32) -> Arc<dyn Connector> {
        match &self.configured {
            Some(c) => Arc::new(crate::connector::timed::TimedConnector::new(c.connector_for(connector_id), self.connector_timeout)),
            None => self.connector.clone(),
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Where `paystage faults` and the Processor faults page set faults: the processor's through
    /// its administration API, Paystage's own journal faults in its database.
    pub fn faults(&self) -> crate::connector::faults::FaultControl<'_> {
        let admin = self.configured.as_ref().and_then(|c| c.admin()).or_else(|| self.processor_admin.clone());
        crate::connector::faults::FaultControl { admin, db: &self.db }
    }

    /// The faults injected into Paystage's own journal posting (kept in its database).
    pub fn journal_faults(&self) -> crate::connector::faults::JournalHook<'_> {
        crate::connector::faults::JournalHook { db: &self.db }
    }

    /// What the processor reports holding: the connector's ledger, or that of the processor's
    /// store when this process reads it ([`Self::processor_store`]).
    pub async fn processor_ledger(&self) -> crate::connector::ConnectorResult<Option<crate::connector::ProcessorLedger>> {
        match self.connector.ledger().await? {
            Some(l) => Ok(Some(l)),
            None => match &self.processor_store {
                Some(engine) => engine.ledger().await,
                None => Ok(None),
            },
        }
    }

    /// A card entered as a shopper enters it, on the processor's hosted card page over HTTP (the
    /// demo's and the benchmark's customers, who have no browser), and what the processor then
    /// holds for it (R-TOK-1: Paystage never holds the number). With the processor's store at hand
    /// ([`Self::processor_store`], the tests) that page's back end is called directly.
    pub async fn enter_card_as_shopper(&self, card: crate::connector::CardEntry) -> crate::connector::ConnectorResult<crate::connector::CardToken> {
        self.enter_card_as_shopper_on(None, card).await
    }

    /// The connector cards are taken on and described by: connector `connector_id` (a channel's
    /// own), or the default connector.
    fn card_processor(&self, connector_id: Option<i32>) -> Arc<dyn Connector> {
        match connector_id {
            Some(id) => self.processor(id),
            None => self.connector.clone(),
        }
    }

    /// [`Self::enter_card_as_shopper`] on the hosted page of connector `connector_id` (None: the
    /// default connector's).
    pub async fn enter_card_as_shopper_on(&self, connector_id: Option<i32>, card: crate::connector::CardEntry) -> crate::connector::ConnectorResult<crate::connector::CardToken> {
        use crate::connector::ConnectorError;
        if let Some(engine) = &self.processor_store {
            return engine.tokenize(card).await;
        }
        // A browser that stops at the page's redirect back to the merchant (where the stored
        // card's id is), as `enter_card_as_shopper` reads it.
        static BROWSER: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
        let shopper = format!("shopper-{}", uuid::Uuid::new_v4().simple());
        let Some(page) = self.card_processor(connector_id).card_page(&shopper, "http://127.0.0.1:9/card-stored") else {
            return Err(ConnectorError::Invalid("this processor has no hosted card page (PAYSTAGE_PROCESSOR_CARD_PAGE): cards are entered only there".into()));
        };
        let browser = BROWSER
            .get_or_init(|| {
                let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(std::time::Duration::from_secs(30));
                builder.build().map_err(|e| format!("HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| ConnectorError::Unavailable(e.clone()))?;
        let token = crate::sandbox::client::enter_card_as_shopper(browser, &page, &card).await.map_err(ConnectorError::Unavailable)?;
        self.describe_token_on(connector_id, &token).await?.ok_or_else(|| ConnectorError::Unavailable(format!("the processor does not know the card it stored as {token}")))
    }

    /// What the processor holds for `token`.
    /// The connector answers first (a card stored through a processor's hosted page); a token it
    /// cannot describe is asked of the processor's store when this process reads it.
    pub async fn describe_token(&self, token: &str) -> crate::connector::ConnectorResult<Option<crate::connector::CardToken>> {
        self.describe_token_on(None, token).await
    }

    /// [`Self::describe_token`] asked of connector `connector_id` (None: the default connector).
    pub async fn describe_token_on(&self, connector_id: Option<i32>, token: &str) -> crate::connector::ConnectorResult<Option<crate::connector::CardToken>> {
        match (self.card_processor(connector_id).describe_token(token).await, &self.processor_store) {
            (Err(crate::connector::ConnectorError::Invalid(_)), Some(engine)) => engine.describe_token(token).await,
            (answer, _) => answer,
        }
    }

    /// The processor sandbox's store, for a caller that started it ([`Self::processor_store`]).
    pub fn simulator_store(&self) -> Result<&DatabaseConnection, crate::error::SetupError> {
        self.processor_store.as_deref().map(|s| s.store()).ok_or(crate::error::SetupError::NoSimulator)
    }
}
