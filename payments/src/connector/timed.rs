//! Every connector call has a deadline (issue #39, R-CAP-5, R-PIP-4). A call still unanswered at
//! its deadline is abandoned and reported as [`ConnectorError::Timeout`]: its outcome is unknown,
//! and the caller asks the processor about its tracking id rather than sending it again.
//!
//! The deadline keeps an in-flight call inside its lease. A runner renews its lease on a payment
//! process when it commits the intent of a call (or resumes one), and from then makes at most
//! [`CALLS_PER_LEASE`] calls before its next commit: asking about an earlier request, sending it,
//! and asking again after a timeout. Start-up refuses a timeout longer than
//! `lease / CALLS_PER_LEASE`, so no call outlives the lease it was made under and recovery never
//! takes over a process whose call is still running. Should it happen anyway (a machine stalled
//! past its lease), the outcome is written only over an open request and its effects follow only
//! that write ([`crate::ledger::requests::finish`]).
use super::{Authorized, CardEntry, CardToken, Captured, Connector, ConnectorError, ConnectorResult, Outcome, PaymentReference, Refunded};
use crate::domain::money::Money;
use crate::domain::order::Command;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How many connector calls a runner may make under one renewal of its lease.
pub const CALLS_PER_LEASE: u32 = 3;

/// The default deadline of one connector call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);

/// Whether `timeout` fits `lease`: [`CALLS_PER_LEASE`] calls end before the lease does.
pub fn fits_lease(timeout: Duration, lease: Duration) -> bool {
    !timeout.is_zero() && timeout.saturating_mul(CALLS_PER_LEASE) < lease
}

/// A connector whose every call ends by its deadline.
#[derive(Debug)]
pub struct TimedConnector {
    inner: Arc<dyn Connector>,
    timeout: Duration,
}

impl TimedConnector {
    pub fn new(inner: Arc<dyn Connector>, timeout: Duration) -> Self {
        TimedConnector { inner, timeout }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn within<T>(&self, call: impl Future<Output = ConnectorResult<T>>) -> ConnectorResult<T> {
        tokio::time::timeout(self.timeout, call).await.unwrap_or(Err(ConnectorError::Timeout))
    }
}

#[async_trait::async_trait]
impl Connector for TimedConnector {
    async fn payment_reference(&self, command: Command, amount: Money) -> ConnectorResult<PaymentReference> {
        self.within(self.inner.payment_reference(command, amount)).await
    }
    async fn tokenize(&self, card: CardEntry) -> ConnectorResult<CardToken> {
        self.within(self.inner.tokenize(card)).await
    }
    async fn describe_token(&self, token: &str) -> ConnectorResult<Option<CardToken>> {
        self.within(self.inner.describe_token(token)).await
    }
    async fn authorize(&self, tracking_id: &str, token: &str, amount: Money, ask: super::AuthorizeAsk) -> ConnectorResult<Authorized> {
        self.within(self.inner.authorize(tracking_id, token, amount, ask)).await
    }
    async fn capture(&self, tracking_id: &str, authorization: &str, amount: Money, final_capture: bool) -> ConnectorResult<Captured> {
        self.within(self.inner.capture(tracking_id, authorization, amount, final_capture)).await
    }
    async fn refund(&self, tracking_id: &str, capture: &str, amount: Money) -> ConnectorResult<Refunded> {
        self.within(self.inner.refund(tracking_id, capture, amount)).await
    }
    async fn void(&self, tracking_id: &str, authorization: &str) -> ConnectorResult<()> {
        self.within(self.inner.void(tracking_id, authorization)).await
    }
    async fn adjust_authorization(&self, tracking_id: &str, authorization: &str, new_amount: Money) -> ConnectorResult<Authorized> {
        self.within(self.inner.adjust_authorization(tracking_id, authorization, new_amount)).await
    }
    async fn query(&self, tracking_id: &str) -> ConnectorResult<Option<Outcome>> {
        self.within(self.inner.query(tracking_id)).await
    }
    async fn ledger(&self) -> ConnectorResult<Option<super::ProcessorLedger>> {
        self.inner.ledger().await
    }

    fn card_page(&self, shopper_reference: &str, return_url: &str) -> Option<String> {
        self.inner.card_page(shopper_reference, return_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_must_leave_room_for_every_call_under_one_lease() {
        let s = Duration::from_secs;
        assert!(fits_lease(DEFAULT_TIMEOUT, s(30)), "the defaults fit");
        assert!(fits_lease(s(9), s(30)));
        assert!(!fits_lease(s(10), s(30)), "three calls of 10 s reach the end of a 30 s lease");
        assert!(!fits_lease(s(60), s(30)));
        assert!(!fits_lease(Duration::ZERO, s(30)), "no deadline at all is refused");
    }
}
