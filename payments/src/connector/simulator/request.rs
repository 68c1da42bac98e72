//! One request at the simulator: its faults drawn, then its effect and the record of its tracking id
//! written in one transaction of the simulator's store (or the answer recorded before given again).
use super::*;

/// What a request does to the ledger, given the transaction it runs in. It refuses
/// (`ConnectorError::Invalid`) before it writes anything.
pub(super) type Effect = Box<dyn for<'a> FnOnce(&'a DatabaseTransaction) -> Pin<Box<dyn Future<Output = ConnectorResult<Outcome>> + Send + 'a>> + Send>;

/// A capture against an authorization (R-CAP-1): refused at zero or below, declined when the
/// authorization is unknown, not open, in another currency or has less left than asked.
pub(super) struct CaptureAsk {
    pub(super) authorization: String,
    pub(super) amount: Money,
    pub(super) final_capture: bool,
    pub(super) now: chrono::DateTime<chrono::Utc>,
}

impl CaptureAsk {
    /// Takes the capture in `txn`: the authorization read under lock, checked, its captured total
    /// and status changed, and the capture's row written. The authorization stays open after a
    /// partial capture only if it supports multiple captures, this is not the final capture, and
    /// the merchant account allows multiple partial captures.
    pub(super) async fn take(self, txn: &DatabaseTransaction) -> ConnectorResult<Outcome> {
        let amount = self.amount;
        if amount.minor() <= 0 {
            return Err(ConnectorError::Invalid("the amount to capture must be above zero".into()));
        }
        let q = locked(sa::Entity::find_by_id(self.authorization.clone()), txn);
        let Some(a) = q.one(txn).await.map_err(db_error)? else {
            return Ok(Outcome::Declined { code: "unknown_authorization".into(), message: "The authorization is not known to the processor.".into() });
        };
        if a.status != "open" {
            return Ok(Outcome::Declined { code: "authorization_closed".into(), message: format!("The authorization is {}.", a.status) });
        }
        if a.currency != amount.currency().code() {
            return Ok(Outcome::Declined { code: "currency_mismatch".into(), message: "The capture currency differs from the authorization's.".into() });
        }
        let remaining = a.amount_minor - a.captured_minor;
        if amount.minor() > remaining {
            return Ok(Outcome::Declined {
                code: "amount_exceeds_authorization".into(),
                message: format!("Capture of {} exceeds the {} left on the authorization.", amount, Money::from_minor(remaining, amount.currency())),
            });
        }
        let captured = a.captured_minor + amount.minor();
        let stays_open = captured != a.amount_minor
            && !self.final_capture
            && a.supports_multiple_captures
            && ProcessorSimulator::merchant_allows_multiple_partial_captures(txn).await?;
        let reference = new_reference("cap");
        sc::ActiveModel {
            reference: Set(reference.clone()),
            authorization_reference: Set(a.reference.clone()),
            amount_minor: Set(amount.minor()),
            refunded_minor: Set(0),
            created_at: Set(self.now),
        }
        .insert(txn)
        .await
        .map_err(db_error)?;
        let mut am: sa::ActiveModel = a.into();
        am.captured_minor = Set(captured);
        am.status = Set(if stays_open { "open" } else { "closed" }.into());
        am.update(txn).await.map_err(db_error)?;
        Ok(Outcome::Captured(Captured { reference, amount, authorization_closed: !stays_open }))
    }
}

/// Runs one request: its faults drawn first (a use of a counted one consumed, [`faults::fire_alone`]),
/// then, unless an injected error comes first, in one transaction of the store: the answer recorded
/// for its tracking id before (a retry moves no money twice), or its effect and the record of it.
/// A refusal writes nothing; a storage error undoes the effect and the caller is told the processor
/// is unavailable (asking about the tracking id then says nothing was done).
///
/// On SQLite the transaction takes the store's write lock from its start; on PostgreSQL the effect
/// locks the rows it changes, so that requests from several servers on one authorization are
/// taken one after the other, and a tracking id two of them record at once fails the second on
/// the record's key (its caller is told the processor is unavailable; asking finds the first).
pub(super) async fn run(db: &DatabaseConnection, clock: &SharedClock, point: &str, tracking_id: &str, command: Command, amount: i64, effect: Effect) -> (faults::Fired, ConnectorResult<Outcome>) {
    let fired = match faults::fire_alone(db, point).await {
        Ok(fired) => fired,
        Err(e) => return (faults::Fired::default(), Err(db_error(e))),
    };
    if fired.error_before {
        return (fired, Err(ConnectorError::Unavailable("injected fault: error before the effect".into())));
    }
    let written: Result<ConnectorResult<Outcome>, DbErr> = async {
        let immediate = sea_orm::TransactionOptions { sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate), ..Default::default() };
        let txn = db.begin_with_options(immediate).await?;
        if let Some(t) = stx::Entity::find_by_id(tracking_id.to_string()).one(&txn).await? {
            return Ok(ProcessorSimulator::replay(&t, command));
        }
        let answer = match effect(&txn).await {
            Ok(outcome) => {
                let record = ProcessorSimulator::record_of(tracking_id, command, amount, &outcome, clock.now())?;
                stx::ActiveModel::from(record).insert(&txn).await?;
                Ok(outcome)
            }
            // Refused: every effect refuses before it writes anything.
            Err(refused @ ConnectorError::Invalid(_)) => Err(refused),
            Err(e) => return Err(DbErr::Custom(e.to_string())),
        };
        txn.commit().await?;
        Ok(answer)
    }
    .await;
    match written {
        Ok(answer) => (fired, answer),
        // The same tracking id recorded meanwhile by a request sent at the same time (PostgreSQL:
        // this one's record failed on its key and its effect was undone): that answer is given.
        Err(e) => match stx::Entity::find_by_id(tracking_id.to_string()).one(db).await {
            Ok(Some(t)) => (fired, ProcessorSimulator::replay(&t, command)),
            _ => (fired, Err(db_error(e))),
        },
    }
}
