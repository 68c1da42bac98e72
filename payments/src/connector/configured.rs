//! The connector a Paystage without `PAYSTAGE_PROCESSOR_URL` uses: the default connector set up on
//! the Payment connectors page (issue #43), built from its row (endpoint, merchant account, API
//! key opened with the server's secret key) and rebuilt whenever that row's revision changes or
//! another connector becomes the default. The page's save reloads it at once on the server that
//! saved; every other server sharing the database notices on its next check
//! ([`RELOAD_EVERY`]). A request already sent finishes on the connector that sent it; one asked
//! about later is asked of the connector then configured (its tracking id and idempotency key are
//! the same), so changing a default connector's endpoint to another processor while requests are
//! unresolved leaves them for a person to review, as any processor outage does.
//!
//! Without a usable default connector (none set up, no endpoint or API key, or a key that does not
//! open) every processor request is refused as unavailable ([`super::unconfigured`]), and
//! [`Configured::status`] says why.
use super::adyen::{AdyenConnector, AdyenSettings};
use super::unconfigured::NoProcessor;
use super::{Authorized, CardEntry, CardToken, Captured, Connector, ConnectorResult, Outcome, PaymentReference, ProcessorLedger, Refunded};
use crate::clock::SharedClock;
use crate::domain::money::Money;
use crate::domain::order::Command;
use crate::entity::connector;
use crate::sandbox::client::SandboxAdmin;
use crate::secrets::SecretKey;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often a server checks whether the default connector changed on another server.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// The place a connector's API key is sealed for ([`SecretKey::seal`]).
pub fn api_key_place(code: &str) -> String {
    format!("connector:{code}:api_key")
}

/// The place a connector's HMAC key is sealed for.
pub fn hmac_key_place(code: &str) -> String {
    format!("connector:{code}:hmac_key")
}

#[derive(Clone, Debug)]
struct Current {
    connector: Arc<dyn Connector>,
    admin: Option<Arc<SandboxAdmin>>,
    /// The default connector's id and revision it was built from; None: none usable.
    built_from: Option<(i32, i32)>,
    status: ConnectorStatus,
}

/// Which processor this server reaches, as the Payment connectors page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorStatus {
    /// Reaching the default connector `code`.
    Using { code: String, endpoint: String },
    /// No processor: why, in words for an administrator.
    Unusable(String),
}

/// The default connector of the database, rebuilt as it changes.
#[derive(Debug)]
pub struct Configured {
    db: DatabaseConnection,
    clock: SharedClock,
    secrets: Option<SecretKey>,
    current: RwLock<Current>,
    /// One reload at a time, so that a reload that read an older row never replaces what a later
    /// one built (the periodic check and a save on this server may run at once).
    reloading: tokio::sync::Mutex<()>,
}

impl Configured {
    /// Reads the default connector now.
    pub async fn load(db: DatabaseConnection, clock: SharedClock, secrets: Option<SecretKey>) -> Result<Self, DbErr> {
        let c = Configured {
            db,
            clock,
            secrets,
            current: RwLock::new(Current { connector: Arc::new(NoProcessor), admin: None, built_from: None, status: ConnectorStatus::Unusable("not loaded yet".into()) }),
            reloading: tokio::sync::Mutex::new(()),
        };
        c.reload().await?;
        Ok(c)
    }

    fn current(&self) -> Current {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn inner(&self) -> Arc<dyn Connector> {
        self.current().connector
    }

    /// The sandbox's fault administration, when the default connector is a sandbox.
    pub fn admin(&self) -> Option<Arc<SandboxAdmin>> {
        self.current().admin
    }

    pub fn status(&self) -> ConnectorStatus {
        self.current().status
    }

    /// Rebuilds the connector when the default connector's row changed since it was built.
    pub async fn reload(&self) -> Result<(), DbErr> {
        let _one_at_a_time = self.reloading.lock().await;
        let row = connector::Entity::find().filter(connector::Column::IsDefault.eq(true)).one(&self.db).await?;
        let key = row.as_ref().map(|r| (r.id, r.revision));
        if key.is_some() && key == self.current().built_from {
            return Ok(());
        }
        let next = match row {
            None => Current { connector: Arc::new(NoProcessor), admin: None, built_from: None, status: ConnectorStatus::Unusable("no connector is set up yet: add one on this page".into()) },
            Some(r) => match self.build(&r) {
                Ok((connector, admin)) => Current {
                    connector,
                    admin,
                    built_from: key,
                    status: ConnectorStatus::Using { code: r.code.clone(), endpoint: r.endpoint.clone().unwrap_or_default() },
                },
                Err(why) => {
                    tracing::warn!(connector = %r.code, %why, "the default connector cannot be used; processor requests are refused");
                    Current { connector: Arc::new(NoProcessor), admin: None, built_from: key, status: ConnectorStatus::Unusable(format!("the default connector {} cannot be used: {why}", r.code)) }
                }
            },
        };
        if let ConnectorStatus::Using { code, endpoint } = &next.status {
            tracing::info!(connector = %code, %endpoint, "reaching the processor through the default connector");
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    fn build(&self, r: &connector::Model) -> Result<(Arc<dyn Connector>, Option<Arc<SandboxAdmin>>), String> {
        let (adyen, admin) = build(r, self.secrets.as_ref(), &self.db, &self.clock)?;
        Ok((Arc::new(adyen), admin))
    }
}

/// The `adyen` connector a connector's row describes, with the sandbox's fault administration
/// when it is a sandbox; why not, in words for an administrator.
pub fn build(r: &connector::Model, secrets: Option<&SecretKey>, db: &DatabaseConnection, clock: &SharedClock) -> Result<(AdyenConnector, Option<Arc<SandboxAdmin>>), String> {
    let endpoint = r.endpoint.clone().filter(|e| !e.is_empty()).ok_or("it has no endpoint")?;
    let merchant_account = r.merchant_account.clone().filter(|m| !m.is_empty()).ok_or("it has no merchant account")?;
    let sealed = r.api_key_sealed.as_deref().ok_or("it has no API key")?;
    let secrets = secrets.ok_or_else(|| format!("{} is not set on this server, so its API key cannot be opened", crate::secrets::SECRET_KEY_VAR))?;
    let api_key = secrets.open(&api_key_place(&r.code), sealed).map_err(|e| e.to_string())?;
    let settings = AdyenSettings {
        code: r.code.clone(),
        endpoint,
        api_key,
        merchant_account,
        allow_multiple_partial_capture: r.allow_multiple_partial_capture,
        non_incremental_variants: vec!["interac".into()],
        key_window: chrono::Duration::days(r.key_window_days.into()),
        timeout: Duration::from_millis(r.timeout_ms.max(1) as u64),
        card_page: r.card_page.clone().filter(|p| !p.is_empty()),
    };
    let admin = if r.kind == "sandbox" { Some(Arc::new(SandboxAdmin::for_endpoint(&settings.endpoint, &settings.api_key)?)) } else { None };
    Ok((AdyenConnector::new(settings, db.clone(), clock.clone())?, admin))
}

#[async_trait::async_trait]
impl Connector for Configured {
    async fn payment_reference(&self, command: Command, amount: Money) -> ConnectorResult<PaymentReference> {
        self.inner().payment_reference(command, amount).await
    }
    async fn tokenize(&self, card: CardEntry) -> ConnectorResult<CardToken> {
        self.inner().tokenize(card).await
    }
    async fn describe_token(&self, token: &str) -> ConnectorResult<Option<CardToken>> {
        self.inner().describe_token(token).await
    }
    async fn authorize(&self, tracking_id: &str, token: &str, amount: Money, ask: super::AuthorizeAsk) -> ConnectorResult<Authorized> {
        self.inner().authorize(tracking_id, token, amount, ask).await
    }
    async fn capture(&self, tracking_id: &str, authorization: &str, amount: Money, final_capture: bool) -> ConnectorResult<Captured> {
        self.inner().capture(tracking_id, authorization, amount, final_capture).await
    }
    async fn refund(&self, tracking_id: &str, capture: &str, amount: Money) -> ConnectorResult<Refunded> {
        self.inner().refund(tracking_id, capture, amount).await
    }
    async fn void(&self, tracking_id: &str, authorization: &str) -> ConnectorResult<()> {
        self.inner().void(tracking_id, authorization).await
    }
    async fn adjust_authorization(&self, tracking_id: &str, authorization: &str, new_amount: Money) -> ConnectorResult<Authorized> {
        self.inner().adjust_authorization(tracking_id, authorization, new_amount).await
    }
    async fn query(&self, tracking_id: &str) -> ConnectorResult<Option<Outcome>> {
        self.inner().query(tracking_id).await
    }
    async fn ledger(&self) -> ConnectorResult<Option<ProcessorLedger>> {
        self.inner().ledger().await
    }
    fn card_page(&self, shopper_reference: &str, return_url: &str) -> Option<String> {
        self.inner().card_page(shopper_reference, return_url)
    }
}
