//! The connectors a Paystage without `PAYSTAGE_PROCESSOR_URL` uses, set up on the Payment
//! connectors page (issue #43): each built from its row (endpoint, merchant account, API key
//! opened with the server's secret key) and rebuilt whenever that row's revision changes. The
//! default connector takes the cards of channels without a connector of their own (and the
//! customers' cards on file, R-TOK-8); a channel with its own connector takes its orders' cards
//! there. Every later request about a payment (authorize, capture, refund, void, adjust, and
//! asking what became of a request) goes to the connector recorded with it, whatever the default
//! is by then. The page's save reloads them at once on the server that saved; every other server
//! sharing the database notices on its next check ([`RELOAD_EVERY`]). A request already sent
//! finishes on the connector that sent it; one asked about later is asked of that connector as
//! it is configured then (its tracking id and idempotency key are the same), so changing a
//! connector's endpoint to another processor while requests are unresolved leaves them for a
//! person to review, as any processor outage does.
//!
//! A connector that cannot be used (no endpoint or API key, or a key that does not open) refuses
//! every request as unavailable ([`super::unconfigured`]), saying why; [`Configured::status`]
//! says it of the default one.
use super::adyen::{AdyenConnector, AdyenSettings};
use super::unconfigured::NoProcessor;
use super::{Authorized, CardEntry, CardToken, Captured, Connector, ConnectorResult, Outcome, PaymentReference, ProcessorLedger, Refunded};
use crate::clock::SharedClock;
use crate::domain::money::Money;
use crate::domain::order::Command;
use crate::entity::connector;
use crate::sandbox::client::SandboxAdmin;
use crate::secrets::SecretKey;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, QueryOrder};
use std::collections::HashMap;
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

/// One connector row as built: what reaches its processor (or refuses, saying why).
#[derive(Clone, Debug)]
struct Built {
    revision: i32,
    connector: Arc<dyn Connector>,
    admin: Option<Arc<SandboxAdmin>>,
    /// Why it cannot be used; None: usable.
    unusable: Option<String>,
}

#[derive(Clone, Debug)]
struct Current {
    /// Every connector row by id, built from the revision it names.
    built: HashMap<i32, Built>,
    /// The default connector's id.
    default: Option<i32>,
    /// The (id, revision, default) of every row it was built from; None: not loaded yet.
    built_from: Option<Vec<(i32, i32, bool)>>,
}

/// Which processor this server reaches, as the Payment connectors page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorStatus {
    /// Reaching the default connector `code`.
    Using { code: String, endpoint: String },
    /// No processor: why, in words for an administrator.
    Unusable(String),
}

/// The connectors of the database, each rebuilt as its row changes: the default one, and those
/// that channels pay through (issue #43: a channel's own connector).
#[derive(Debug)]
pub struct Configured {
    db: DatabaseConnection,
    clock: SharedClock,
    secrets: Option<SecretKey>,
    current: RwLock<Current>,
    /// The default connector's status, as of the last reload.
    status: RwLock<ConnectorStatus>,
    /// One reload at a time, so that a reload that read an older row never replaces what a later
    /// one built (the periodic check and a save on this server may run at once).
    reloading: tokio::sync::Mutex<()>,
}

impl Configured {
    /// Reads the connectors now.
    pub async fn load(db: DatabaseConnection, clock: SharedClock, secrets: Option<SecretKey>) -> Result<Self, DbErr> {
        let c = Configured {
            db,
            clock,
            secrets,
            current: RwLock::new(Current { built: HashMap::new(), default: None, built_from: None }),
            status: RwLock::new(ConnectorStatus::Unusable("not loaded yet".into())),
            reloading: tokio::sync::Mutex::new(()),
        };
        c.reload().await?;
        Ok(c)
    }

    fn current(&self) -> Current {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Connector `id` as built, read under the lock (every processor call asks: nothing else
    /// is copied).
    fn built(&self, id: i32) -> Option<Built> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).built.get(&id).cloned()
    }

    fn default_built(&self) -> Option<Built> {
        let default = self.current.read().unwrap_or_else(|p| p.into_inner()).default?;
        self.built(default)
    }

    fn inner(&self) -> Arc<dyn Connector> {
        self.default_built().map(|b| b.connector).unwrap_or_else(|| Arc::new(NoProcessor::because("no default connector is set up: add one on the Payment connectors page")))
    }

    /// What reaches the processor of connector `id` (refusing every request, saying why, when
    /// that connector cannot be used or does not exist).
    pub fn connector_for(&self, id: i32) -> Arc<dyn Connector> {
        match self.built(id) {
            Some(b) => b.connector,
            None => Arc::new(NoProcessor::because(format!("connector {id} is not set up on this server yet"))),
        }
    }

    /// Why connector `id` cannot be used; None when it can.
    pub fn unusable(&self, id: i32) -> Option<String> {
        match self.built(id) {
            Some(b) => b.unusable,
            None => Some("it is not set up on this server yet".into()),
        }
    }

    /// The sandbox's fault administration, when the default connector is a sandbox.
    pub fn admin(&self) -> Option<Arc<SandboxAdmin>> {
        self.default_built().and_then(|b| b.admin)
    }

    pub fn status(&self) -> ConnectorStatus {
        self.status.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rebuilds the connectors whose rows changed since they were built (a raised revision, a
    /// new row, another default).
    pub async fn reload(&self) -> Result<(), DbErr> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows = connector::Entity::find().order_by_asc(connector::Column::Id).all(&self.db).await?;
        let key: Vec<(i32, i32, bool)> = rows.iter().map(|r| (r.id, r.revision, r.is_default)).collect();
        let before = self.current();
        if before.built_from.as_ref() == Some(&key) {
            return Ok(());
        }
        let mut built = HashMap::new();
        for r in &rows {
            let b = match before.built.get(&r.id) {
                Some(b) if b.revision == r.revision => b.clone(),
                _ => match self.build(r) {
                    Ok((connector, admin)) => Built { revision: r.revision, connector, admin, unusable: None },
                    Err(why) => {
                        tracing::warn!(connector = %r.code, %why, "this connector cannot be used; its processor requests are refused");
                        Built { revision: r.revision, connector: Arc::new(NoProcessor::because(format!("connector {} cannot be used: {why}", r.code))), admin: None, unusable: Some(why) }
                    }
                },
            };
            built.insert(r.id, b);
        }
        let default = rows.iter().find(|r| r.is_default);
        let status = match default {
            None => ConnectorStatus::Unusable("no connector is set up yet: add one on this page".into()),
            Some(r) => match &built[&r.id].unusable {
                None => ConnectorStatus::Using { code: r.code.clone(), endpoint: r.endpoint.clone().unwrap_or_default() },
                Some(why) => ConnectorStatus::Unusable(format!("the default connector {} cannot be used: {why}", r.code)),
            },
        };
        if let ConnectorStatus::Using { code, endpoint } = &status {
            let was = before.default.and_then(|id| before.built.get(&id).map(|b| (id, b.revision)));
            if was != default.map(|r| (r.id, r.revision)) {
                tracing::info!(connector = %code, %endpoint, "reaching the processor through the default connector");
            }
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Current { built, default: default.map(|r| r.id), built_from: Some(key) };
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = status;
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
