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
    /// The payment connector (the processor simulator unless another is configured), every call
    /// of it ending by its deadline (`crate::connector::timed`).
    pub connector: Arc<dyn Connector>,
    /// The same connector without the deadline, which `with_connector_timeout` wraps anew.
    pub untimed: Arc<dyn Connector>,
    /// The processor simulator, when it is the connector: its administration page, the CLI and
    /// the tests reach its faults and ledger through it.
    pub simulator: Option<Arc<crate::connector::simulator::ProcessorSimulator>>,
    /// The processor's fault administration, when Paystage reaches it over HTTP ([`Self::faults`]).
    pub processor_admin: Option<Arc<crate::sandbox::client::SandboxAdmin>>,
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

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The faults injected into Paystage's own journal posting: the connector's hook, or, with a
    /// processor over HTTP whose store this process can read (the sandbox in tests and the
    /// demo), the hook of that store.
    /// Where `paystage faults` and the Processor simulator page set faults.
    pub fn faults(&self) -> crate::connector::faults::FaultControl<'_> {
        crate::connector::faults::FaultControl { admin: self.processor_admin.as_deref(), store: self.simulator.as_deref().map(|s| s.store()) }
    }

    pub fn journal_faults(&self) -> Option<&dyn crate::connector::JournalFaults> {
        self.connector.journal_faults().or_else(|| self.simulator.as_deref().map(|s| s as &dyn crate::connector::JournalFaults))
    }

    /// What the processor reports holding: the connector's ledger, or that of the processor's
    /// store when this process can read it.
    pub async fn processor_ledger(&self) -> crate::connector::ConnectorResult<Option<crate::connector::ProcessorLedger>> {
        match self.connector.ledger().await? {
            Some(l) => Ok(Some(l)),
            None => match &self.simulator {
                Some(engine) => engine.ledger().await,
                None => Ok(None),
            },
        }
    }

    /// The back end of the processor's card page: turns card details into a token. That of the
    /// processor's store when this process holds it (the in-process simulator, or the sandbox in
    /// tests), else the connector's; a real processor over HTTP has none, its hosted page does it
    /// (R-TOK-1).
    pub async fn tokenize(&self, card: crate::connector::CardEntry) -> crate::connector::ConnectorResult<crate::connector::CardToken> {
        match &self.simulator {
            Some(engine) => engine.tokenize(card).await,
            None => self.connector.tokenize(card).await,
        }
    }

    /// What the processor holds for `token`.
    /// The connector answers first (a card stored through a processor's hosted page); a token it
    /// cannot describe is asked of the processor's store when this process holds it.
    pub async fn describe_token(&self, token: &str) -> crate::connector::ConnectorResult<Option<crate::connector::CardToken>> {
        match (self.connector.describe_token(token).await, &self.simulator) {
            (Err(crate::connector::ConnectorError::Invalid(_)), Some(engine)) => engine.describe_token(token).await,
            (answer, _) => answer,
        }
    }

    /// The processor simulator's store (its faults and ledger), or why there is none.
    pub fn simulator_store(&self) -> Result<&DatabaseConnection, crate::error::SetupError> {
        self.simulator.as_deref().map(|s| s.store()).ok_or(crate::error::SetupError::NoSimulator)
    }
}
