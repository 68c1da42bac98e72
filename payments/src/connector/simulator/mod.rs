//! The processor simulator: the default connector in demo and tests, and a real component. It keeps
//! its own durable ledger in a store of its own ([`store`]: a SQLite file beside Paystage's, or a
//! schema of its own on PostgreSQL), never in Paystage's tables; is idempotent per tracking id (a repeated id returns the original result and moves no money twice), refuses a
//! capture above the authorized amount and a refund above the captured amount, honours the merchant
//! account's multiple-partial-capture flag, knows payment method variants (interac never supports
//! multiple captures), declines deterministic test cards, and injects the faults of [`super::faults`].
use super::faults;
use super::{Authorized, CardEntry, CardToken, Captured, Connector, ConnectorError, ConnectorResult, Outcome, PaymentReference, Refunded};
use crate::domain::money::{Currency, Money};
use crate::domain::order::Command;
use entity::{sim_authorization as sa, sim_capture as sc, sim_merchant as sm, sim_refund as sr, sim_token as st, sim_transaction as stx};
use crate::clock::SharedClock;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QuerySelect, Select, Set, TransactionTrait};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::pin::Pin;

mod cards;
pub mod entity;
mod request;
pub mod store;
use cards::*;
use request::*;

fn new_reference(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn db_error(e: DbErr) -> ConnectorError {
    ConnectorError::Unavailable(format!("processor storage error: {e}"))
}

fn locked<E: EntityTrait>(q: Select<E>, db: &impl ConnectionTrait) -> Select<E> {
    if db.get_database_backend() == DbBackend::Postgres {
        q.lock_exclusive()
    } else {
        q
    }
}

#[derive(Clone, Debug)]
pub struct ProcessorSimulator {
    /// The simulator's own store ([`store::open`]).
    db: DatabaseConnection,
    clock: SharedClock,
}

impl ProcessorSimulator {
    /// The simulator over its store `db` (opened by [`store::open`]).
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        ProcessorSimulator { db, clock }
    }

    /// The simulator's store: its ledger and faults, for its administration page, the CLI and tests.
    pub fn store(&self) -> &DatabaseConnection {
        &self.db
    }

    fn after<T>(fired: faults::Fired, result: ConnectorResult<T>) -> ConnectorResult<T> {
        if fired.timeout_after {
            Err(ConnectorError::Timeout)
        } else {
            result
        }
    }

    /// The answer given again for a tracking id recorded as `t`, asked again for `command`.
    fn replay(t: &stx::Model, command: Command) -> ConnectorResult<Outcome> {
        if t.command != command.code() {
            return Err(ConnectorError::Invalid(format!("tracking id {} was used for {} already", t.tracking_id, t.command)));
        }
        serde_json::from_str(&t.response).map_err(|e| ConnectorError::Unavailable(e.to_string()))
    }

    /// The record of a tracking id's outcome, written in the same transaction as its effect.
    fn record_of(tracking_id: &str, command: Command, amount: i64, outcome: &Outcome, now: chrono::DateTime<chrono::Utc>) -> Result<stx::Model, DbErr> {
        let (label, reference) = match outcome {
            Outcome::Authorized(a) | Outcome::Adjusted(a) => ("approved", Some(a.reference.clone())),
            Outcome::Captured(c) => ("approved", Some(c.reference.clone())),
            Outcome::Refunded(r) => ("approved", Some(r.reference.clone())),
            Outcome::Voided { reference } => ("approved", Some(reference.clone())),
            Outcome::Declined { .. } => ("declined", None),
        };
        Ok(stx::Model {
            tracking_id: tracking_id.to_string(),
            command: command.code().to_string(),
            amount_minor: amount,
            outcome: label.to_string(),
            reference,
            response: serde_json::to_string(outcome).map_err(|e| DbErr::Custom(e.to_string()))?,
            created_at: now,
        })
    }

    /// Runs one request: faults drawn, then the effect and its record in one transaction (or the
    /// replay of a tracking id seen before, [`request::run`]), then a timeout after the effect.
    async fn execute<T, F>(&self, point: &str, tracking_id: &str, command: Command, amount: i64, effect: F) -> ConnectorResult<T>
    where
        T: DeserializeOwned + Serialize,
        F: for<'a> FnOnce(&'a DatabaseTransaction) -> Pin<Box<dyn Future<Output = ConnectorResult<Outcome>> + Send + 'a>> + Send + 'static,
    {
        if tracking_id.trim().is_empty() {
            return Err(ConnectorError::Invalid("a tracking id is required (Enable Request Protection)".into()));
        }
        // A latency fault is the processor's response time, its own work included (as a remote
        // processor's is): the answer, whatever it is, comes `latency_ms` after the request.
        let asked = tokio::time::Instant::now();
        let (fired, result) = request::run(&self.db, &self.clock, point, tracking_id, command, amount, Box::new(effect)).await;
        sleep_precisely(asked + std::time::Duration::from_millis(fired.latency_ms)).await;
        // A refusal (an injected error before the effect among them) is answered as it is; an
        // outcome may still be lost to an injected timeout.
        result.and_then(|outcome| Self::after(fired, answer(outcome)))
    }

    /// Undoes capture `reference` as a processor does when it reports CAPTURE_FAILED after
    /// answering `received` (the sandbox's `fails_later` fault): the capture goes and its
    /// authorization's captured total comes back down, in one transaction. A capture already
    /// partly refunded, or not found, is left alone (false).
    pub async fn fail_capture(&self, reference: &str) -> Result<bool, DbErr> {
        let immediate = sea_orm::TransactionOptions { sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate), ..Default::default() };
        let txn = self.db.begin_with_options(immediate).await?;
        let Some(c) = locked(sc::Entity::find_by_id(reference.to_string()), &txn).one(&txn).await? else {
            return Ok(false);
        };
        if c.refunded_minor > 0 {
            return Ok(false);
        }
        let Some(a) = locked(sa::Entity::find_by_id(c.authorization_reference.clone()), &txn).one(&txn).await? else {
            return Ok(false);
        };
        sc::Entity::delete_by_id(c.reference.clone()).exec(&txn).await?;
        let captured = a.captured_minor - c.amount_minor;
        let mut am: sa::ActiveModel = a.into();
        am.captured_minor = Set(captured);
        am.update(&txn).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Undoes refund `reference` as a processor does when it reports REFUND_FAILED after
    /// answering `received`: the refund goes and its capture's refunded total comes back down.
    pub async fn fail_refund(&self, reference: &str) -> Result<bool, DbErr> {
        let immediate = sea_orm::TransactionOptions { sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate), ..Default::default() };
        let txn = self.db.begin_with_options(immediate).await?;
        let Some(r) = locked(sr::Entity::find_by_id(reference.to_string()), &txn).one(&txn).await? else {
            return Ok(false);
        };
        let Some(c) = locked(sc::Entity::find_by_id(r.capture_reference.clone()), &txn).one(&txn).await? else {
            return Ok(false);
        };
        sr::Entity::delete_by_id(r.reference.clone()).exec(&txn).await?;
        let refunded = c.refunded_minor - r.amount_minor;
        let mut am: sc::ActiveModel = c.into();
        am.refunded_minor = Set(refunded);
        am.update(&txn).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// The store's merchant account setting (allowed unless set otherwise).
    async fn merchant_allows_multiple_partial_captures(txn: &DatabaseTransaction) -> ConnectorResult<bool> {
        Ok(sm::Entity::find().one(txn).await.map_err(db_error)?.is_none_or(|m| m.allow_multiple_partial_capture))
    }
}

/// Waits until `at`, and no longer than the operating system's timer makes it: tokio's timer
/// rounds a deadline up to its next millisecond tick, so a processor given 50 ms of latency
/// answered after 51.1 ms on average (issue #3, README). The last stretch is slept on a blocking
/// thread, whose sleep wakes within tens of microseconds. Never returns before `at`.
async fn sleep_precisely(at: tokio::time::Instant) {
    // Tokio's sleep wakes up to a tick and a half late: stop it that much before `at`.
    const COARSE_MARGIN: std::time::Duration = std::time::Duration::from_micros(1_500);
    // No latency (or none left): no timer at all. Even a deadline already past waits for the
    // timer's next tick if it falls after the last tick the timer processed.
    let now = tokio::time::Instant::now();
    if now >= at {
        return;
    }
    if let Some(coarse) = at.checked_sub(COARSE_MARGIN).filter(|coarse| *coarse > now) {
        tokio::time::sleep_until(coarse).await;
    }
    let left = at.saturating_duration_since(tokio::time::Instant::now());
    if !left.is_zero() && tokio::task::spawn_blocking(move || std::thread::sleep(left)).await.is_err() {
        // The blocking pool is shutting down: the coarse timer, late but never early.
        tokio::time::sleep_until(at).await;
    }
}

/// The caller's answer for an outcome (a decline is an error).
fn answer<T: DeserializeOwned>(outcome: Outcome) -> ConnectorResult<T> {
    match outcome {
        Outcome::Declined { code, message } => Err(ConnectorError::Declined { code, message }),
        Outcome::Voided { .. } => serde_json::from_value(serde_json::Value::Null).map_err(|e| ConnectorError::Unavailable(e.to_string())),
        Outcome::Authorized(a) | Outcome::Adjusted(a) => to_t(&a),
        Outcome::Captured(c) => to_t(&c),
        Outcome::Refunded(r) => to_t(&r),
    }
}

fn to_t<S: Serialize, T: DeserializeOwned>(s: &S) -> ConnectorResult<T> {
    serde_json::to_value(s)
        .and_then(serde_json::from_value)
        .map_err(|e| ConnectorError::Unavailable(e.to_string()))
}

#[async_trait::async_trait]
impl Connector for ProcessorSimulator {
    async fn payment_reference(&self, command: Command, amount: Money) -> ConnectorResult<PaymentReference> {
        Ok(PaymentReference { tracking_id: uuid::Uuid::new_v4().to_string(), command, amount, initiated_at: self.clock.now() })
    }

    async fn tokenize(&self, card: CardEntry) -> ConnectorResult<CardToken> {
        let number: String = card.number.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if !(12..=19).contains(&number.len()) || !number.chars().all(|c| c.is_ascii_digit()) || !luhn_ok(&number) {
            return Err(ConnectorError::Invalid("The card number is not valid.".into()));
        }
        let Some((variant, behaviour)) = variant_of(&number) else {
            return Err(ConnectorError::Invalid("This card brand is not accepted.".into()));
        };
        let expiry = card.expiry.trim();
        let valid_expiry = expiry.len() == 5
            && expiry.as_bytes()[2] == b'/'
            && expiry[..2].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
            && expiry[3..].parse::<u32>().is_ok();
        if !valid_expiry {
            return Err(ConnectorError::Invalid("The expiry date must be MM/YY.".into()));
        }
        let holder = card.holder.trim();
        if holder.is_empty() || holder.chars().count() > 60 {
            return Err(ConnectorError::Invalid("Enter the name on the card (at most 60 characters).".into()));
        }
        let token = CardToken {
            token: new_reference("tok"),
            payment_method_variant: variant.to_string(),
            card_type: card_type(variant).to_string(),
            last_four: number[number.len() - 4..].to_string(),
            holder: holder.to_string(),
            expiry: expiry.to_string(),
        };
        st::ActiveModel {
            token: Set(token.token.clone()),
            variant: Set(token.payment_method_variant.clone()),
            card_type: Set(token.card_type.clone()),
            last_four: Set(token.last_four.clone()),
            holder: Set(token.holder.clone()),
            expiry: Set(token.expiry.clone()),
            behaviour: Set(behaviour.to_string()),
            created_at: Set(self.clock.now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_error)?;
        Ok(token)
    }

    async fn describe_token(&self, token: &str) -> ConnectorResult<Option<CardToken>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let found = st::Entity::find_by_id(token.to_string()).one(&self.db).await.map_err(db_error)?;
        Ok(found.map(|t| CardToken {
            token: t.token,
            payment_method_variant: t.variant,
            card_type: t.card_type,
            last_four: t.last_four,
            holder: t.holder,
            expiry: t.expiry,
        }))
    }

    /// The simulator keeps no card-on-file rules of its own: `paystage sandbox` checks Adyen's
    /// flags at its API, the connector refuses what they forbid.
    async fn authorize(&self, tracking_id: &str, token: &str, amount: Money, _ask: super::AuthorizeAsk) -> ConnectorResult<Authorized> {
        let now = self.clock.now();
        let token = token.to_string();
        self.execute("authorize", tracking_id, Command::Authorize, amount.minor(), move |txn| {
            Box::pin(async move {
                if amount.minor() <= 0 {
                    return Err(ConnectorError::Invalid("the amount to authorize must be above zero".into()));
                }
                let Some(t) = st::Entity::find_by_id(token.clone()).one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_token".into(), message: "The card token is not known to the processor.".into() });
                };
                let decline = match t.behaviour.as_str() {
                    "declined" => Some(("declined", "The issuer declined the card.")),
                    "insufficient_funds" => Some(("insufficient_funds", "Insufficient funds.")),
                    "expired_card" => Some(("expired_card", "The card has expired.")),
                    _ => None,
                };
                if let Some((code, message)) = decline {
                    return Ok(Outcome::Declined { code: code.into(), message: message.into() });
                }
                let supports = t.variant != "interac";
                let reference = new_reference("auth");
                sa::ActiveModel {
                    reference: Set(reference.clone()),
                    token: Set(token),
                    currency: Set(amount.currency().code().to_string()),
                    amount_minor: Set(amount.minor()),
                    captured_minor: Set(0),
                    supports_multiple_captures: Set(supports),
                    status: Set("open".into()),
                    created_at: Set(now),
                }
                .insert(txn)
                .await
                .map_err(db_error)?;
                Ok(Outcome::Authorized(Authorized {
                    reference,
                    amount,
                    supports_multiple_captures: supports,
                    payment_method_variant: t.variant,
                    card_type: t.card_type,
                    last_four: t.last_four,
                }))
            })
        })
        .await
    }

    async fn capture(&self, tracking_id: &str, authorization: &str, amount: Money, final_capture: bool) -> ConnectorResult<Captured> {
        let ask = CaptureAsk { authorization: authorization.to_string(), amount, final_capture, now: self.clock.now() };
        self.execute("capture", tracking_id, Command::Capture, amount.minor(), move |txn| Box::pin(ask.take(txn))).await
    }

    async fn refund(&self, tracking_id: &str, capture: &str, amount: Money) -> ConnectorResult<Refunded> {
        let now = self.clock.now();
        let capture = capture.to_string();
        self.execute("refund", tracking_id, Command::Refund, amount.minor(), move |txn| {
            Box::pin(async move {
                if amount.minor() <= 0 {
                    return Err(ConnectorError::Invalid("the amount to refund must be above zero".into()));
                }
                let q = locked(sc::Entity::find_by_id(capture.clone()), txn);
                let Some(c) = q.one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_capture".into(), message: "The capture is not known to the processor.".into() });
                };
                if amount.minor() > c.amount_minor - c.refunded_minor {
                    return Ok(Outcome::Declined {
                        code: "amount_exceeds_capture".into(),
                        message: "The refund amount exceeds the amount captured.".into(),
                    });
                }
                let reference = new_reference("ref");
                sr::ActiveModel {
                    reference: Set(reference.clone()),
                    capture_reference: Set(c.reference.clone()),
                    amount_minor: Set(amount.minor()),
                    created_at: Set(now),
                }
                .insert(txn)
                .await
                .map_err(db_error)?;
                let refunded = c.refunded_minor + amount.minor();
                let mut am: sc::ActiveModel = c.into();
                am.refunded_minor = Set(refunded);
                am.update(txn).await.map_err(db_error)?;
                Ok(Outcome::Refunded(Refunded { reference, amount }))
            })
        })
        .await
    }

    async fn void(&self, tracking_id: &str, authorization: &str) -> ConnectorResult<()> {
        let authorization = authorization.to_string();
        self.execute("void", tracking_id, Command::Void, 0, move |txn| {
            Box::pin(async move {
                let q = locked(sa::Entity::find_by_id(authorization.clone()), txn);
                let Some(a) = q.one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_authorization".into(), message: "The authorization is not known to the processor.".into() });
                };
                if a.status != "open" {
                    return Ok(Outcome::Declined { code: "authorization_closed".into(), message: format!("The authorization is {}.", a.status) });
                }
                let reference = a.reference.clone();
                let mut am: sa::ActiveModel = a.into();
                am.status = Set("voided".into());
                am.update(txn).await.map_err(db_error)?;
                Ok(Outcome::Voided { reference })
            })
        })
        .await
    }

    async fn adjust_authorization(&self, tracking_id: &str, authorization: &str, new_amount: Money) -> ConnectorResult<Authorized> {
        let authorization = authorization.to_string();
        self.execute("adjust", tracking_id, Command::Adjust, new_amount.minor(), move |txn| {
            Box::pin(async move {
                let q = locked(sa::Entity::find_by_id(authorization.clone()), txn);
                let Some(a) = q.one(txn).await.map_err(db_error)? else {
                    return Ok(Outcome::Declined { code: "unknown_authorization".into(), message: "The authorization is not known to the processor.".into() });
                };
                if a.status != "open" || new_amount.minor() < a.captured_minor {
                    return Ok(Outcome::Declined { code: "adjustment_refused".into(), message: "The authorization cannot be adjusted to that amount.".into() });
                }
                let t = st::Entity::find_by_id(a.token.clone()).one(txn).await.map_err(db_error)?;
                if t.as_ref().is_some_and(|t| t.behaviour != "approve") {
                    return Ok(Outcome::Declined { code: "declined".into(), message: "The issuer declined the adjustment.".into() });
                }
                let t = t.ok_or_else(|| ConnectorError::Unavailable("token missing".into()))?;
                let (reference, supports) = (a.reference.clone(), a.supports_multiple_captures);
                let mut am: sa::ActiveModel = a.into();
                am.amount_minor = Set(new_amount.minor());
                am.update(txn).await.map_err(db_error)?;
                Ok(Outcome::Adjusted(Authorized {
                    reference,
                    amount: new_amount,
                    supports_multiple_captures: supports,
                    payment_method_variant: t.variant,
                    card_type: t.card_type,
                    last_four: t.last_four,
                }))
            })
        })
        .await
    }

    async fn query(&self, tracking_id: &str) -> ConnectorResult<Option<Outcome>> {
        let fired = faults::fire_alone(&self.db, "query").await.map_err(db_error)?;
        if fired.error_before {
            return Err(ConnectorError::Unavailable("injected fault".into()));
        }
        let t = stx::Entity::find_by_id(tracking_id.to_string()).one(&self.db).await.map_err(db_error)?;
        t.map(|t| serde_json::from_str::<Outcome>(&t.response).map_err(|e| ConnectorError::Unavailable(e.to_string())))
            .transpose()
    }
    async fn ledger(&self) -> ConnectorResult<Option<super::ProcessorLedger>> {
        let db = &self.db;
        Ok(Some(super::ProcessorLedger {
            authorizations: sa::Entity::find().all(db).await.map_err(db_error)?.into_iter().map(|a| (a.reference, a.captured_minor)).collect(),
            captures: sc::Entity::find().all(db).await.map_err(db_error)?.into_iter().map(|c| (c.reference, (c.amount_minor, c.refunded_minor))).collect(),
            refunds: sr::Entity::find().all(db).await.map_err(db_error)?.into_iter().map(|r| (r.reference, r.amount_minor)).collect(),
        }))
    }
}

/// The simulator's ledger totals, for invariant checks against Paystage's own records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub captures: u64,
}

pub async fn ledger_totals(db: &impl ConnectionTrait) -> Result<LedgerTotals, DbErr> {
    let auths = sa::Entity::find().all(db).await?;
    let caps = sc::Entity::find().all(db).await?;
    let refs = sr::Entity::find().all(db).await?;
    Ok(LedgerTotals {
        authorized: auths.iter().map(|a| a.amount_minor).sum(),
        captured: caps.iter().map(|c| c.amount_minor).sum(),
        refunded: refs.iter().map(|r| r.amount_minor).sum(),
        captures: caps.len() as u64,
    })
}

/// Captured total per authorization reference, from the simulator's ledger.
pub async fn captured_by_authorization(db: &impl ConnectionTrait) -> Result<std::collections::BTreeMap<String, (i64, Currency)>, DbErr> {
    let mut out = std::collections::BTreeMap::new();
    for a in sa::Entity::find().all(db).await? {
        let currency = Currency::stored(&a.currency).map_err(|e| DbErr::Custom(format!("simulator authorization {}: {e}", a.reference)))?;
        out.insert(a.reference, (a.captured_minor, currency));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::sleep_precisely;
    use std::time::Duration;

    // A latency fault is a floor (issue #3's processor simulator: the answer comes `latency_ms`
    // after the request): the precise sleep never wakes before its deadline, for deadlines shorter and
    // longer than the coarse timer's margin, and one already past returns at once.
    #[tokio::test]
    async fn a_precise_sleep_never_ends_before_its_deadline() {
        for micros in [0u64, 300, 1_200, 1_600, 5_000, 20_000, 50_000] {
            let start = tokio::time::Instant::now();
            let at = start + Duration::from_micros(micros);
            sleep_precisely(at).await;
            let woke = tokio::time::Instant::now();
            assert!(woke >= at, "woke {:?} before a deadline {micros} µs away", at - woke);
        }
        let past = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(2)).await;
        let before = tokio::time::Instant::now();
        sleep_precisely(past).await;
        assert!(before.elapsed() < Duration::from_secs(1), "a deadline already past does not wait for a timer");
    }
}


