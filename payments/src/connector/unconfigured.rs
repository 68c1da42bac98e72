//! The connector of a Paystage with no payment processor configured (no `PAYSTAGE_PROCESSOR_URL`):
//! its pages, users and records work; every processor request is refused as unavailable before
//! anything is sent, so that nothing moves and a request in flight from an earlier run stays
//! unresolved (recovery asks again once a processor is configured), never guessed.
use super::{Authorized, AuthorizeAsk, CardEntry, CardToken, Captured, Connector, ConnectorError, ConnectorResult, Outcome, PaymentReference, Refunded};
use crate::domain::money::Money;
use crate::domain::order::Command;

/// What every request answers.
pub const NO_PROCESSOR: &str = "no payment processor is configured: set PAYSTAGE_PROCESSOR_URL and its companions (scripts/run.sh starts the processor sandbox and sets them)";

/// Refuses every request, with [`NO_PROCESSOR`] or the reason it was made with.
#[derive(Debug, Default)]
pub struct NoProcessor {
    why: Option<String>,
}

impl NoProcessor {
    /// A connector that cannot be used, for `why` (in words for an administrator).
    pub fn because(why: impl Into<String>) -> Self {
        NoProcessor { why: Some(why.into()) }
    }

    fn refused<T>(&self) -> ConnectorResult<T> {
        Err(ConnectorError::Unavailable(self.why.clone().unwrap_or_else(|| NO_PROCESSOR.into())))
    }
}

#[async_trait::async_trait]
impl Connector for NoProcessor {
    async fn payment_reference(&self, _command: Command, _amount: Money) -> ConnectorResult<PaymentReference> {
        self.refused()
    }
    async fn tokenize(&self, _card: CardEntry) -> ConnectorResult<CardToken> {
        self.refused()
    }
    async fn describe_token(&self, _token: &str) -> ConnectorResult<Option<CardToken>> {
        self.refused()
    }
    async fn authorize(&self, _tracking_id: &str, _token: &str, _amount: Money, _ask: AuthorizeAsk) -> ConnectorResult<Authorized> {
        self.refused()
    }
    async fn capture(&self, _tracking_id: &str, _authorization: &str, _amount: Money, _final_capture: bool) -> ConnectorResult<Captured> {
        self.refused()
    }
    async fn refund(&self, _tracking_id: &str, _capture: &str, _amount: Money) -> ConnectorResult<Refunded> {
        self.refused()
    }
    async fn void(&self, _tracking_id: &str, _authorization: &str) -> ConnectorResult<()> {
        self.refused()
    }
    async fn adjust_authorization(&self, _tracking_id: &str, _authorization: &str, _new_amount: Money) -> ConnectorResult<Authorized> {
        self.refused()
    }
    async fn query(&self, _tracking_id: &str) -> ConnectorResult<Option<Outcome>> {
        self.refused()
    }
}
