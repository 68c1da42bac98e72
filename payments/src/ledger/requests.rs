//! Processor requests: the durable intent written (with its tracking id) before every processor
//! call, and the outcome written after. A crash between the two leaves a `pending` row that
//! recovery resolves by asking the processor about that tracking id, never by charging again.
use crate::connector::{ConnectorError, Outcome};
use crate::domain::money::Money;
use crate::domain::order::{Command, RequestStatus};
use crate::domain::pipeline::Stage;
use crate::entity::processor_request as pr;
use crate::runtime::Services;
use crate::error::ServiceError;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

/// What a request is for.
#[derive(Clone, Copy, Debug)]
pub struct Purpose {
    pub order_id: i32,
    pub authorization_id: Option<i32>,
    pub process: Option<(i32, Stage)>,
    /// For a refund: the capture it is made against.
    pub capture_id: Option<i32>,
}

/// Obtains a tracking id from the connector and writes the intent (status pending) before the call.
pub async fn begin(s: &Services, connector_id: i32, command: Command, amount: Money, purpose: Purpose) -> Result<pr::Model, BeginError> {
    begin_in(&s.db, s, connector_id, command, amount, purpose).await
}

/// [`begin`] inside the caller's transaction: the intent is written together with whatever
/// claims the work (a job commits it with the row it re-checked under lock).
pub async fn begin_in(
    db: &impl ConnectionTrait,
    s: &Services,
    connector_id: i32,
    command: Command,
    amount: Money,
    purpose: Purpose,
) -> Result<pr::Model, BeginError> {
    let reference = s.processor(connector_id).payment_reference(command, amount).await.map_err(BeginError::Connector)?;
    record_intent(db, connector_id, command, amount, purpose, reference).await.map_err(BeginError::Database)
}

/// A job's claim: writes the intent in `txn`, which re-checked the work under lock, and commits
/// both; rolls back and returns None when the connector gave no tracking id (the next run tries
/// again).
pub async fn claim(
    txn: sea_orm::DatabaseTransaction,
    s: &Services,
    connector_id: i32,
    command: Command,
    amount: Money,
    purpose: Purpose,
) -> Result<Option<pr::Model>, DbErr> {
    match begin_in(&txn, s, connector_id, command, amount, purpose).await {
        Ok(r) => {
            txn.commit().await?;
            Ok(Some(r))
        }
        Err(_) => {
            txn.rollback().await?;
            Ok(None)
        }
    }
}

/// Writes the intent (status pending) for a tracking id already obtained from the connector, in
/// the caller's transaction. Obtaining the id first keeps a connector call out of the transaction.
pub async fn record_intent(
    db: &impl ConnectionTrait,
    connector_id: i32,
    command: Command,
    amount: Money,
    purpose: Purpose,
    reference: crate::connector::PaymentReference,
) -> Result<pr::Model, DbErr> {
    intent(connector_id, command, amount, purpose, reference).insert(db).await
}

/// The row of an intent (status pending), for [`record_intent`] or for writing many together.
pub(crate) fn intent(connector_id: i32, command: Command, amount: Money, purpose: Purpose, reference: crate::connector::PaymentReference) -> pr::ActiveModel {
    pr::ActiveModel {
        tracking_id: Set(reference.tracking_id),
        connector_id: Set(connector_id),
        command: Set(command.code().to_string()),
        currency: Set(amount.currency().code().to_string()),
        amount_minor: Set(amount.minor()),
        order_id: Set(purpose.order_id),
        authorization_id: Set(purpose.authorization_id),
        process_id: Set(purpose.process.map(|p| p.0)),
        stage: Set(purpose.process.map(|p| p.1.code().to_string())),
        status: Set(RequestStatus::Pending.code().to_string()),
        processor_reference: Set(None),
        message: Set(None),
        initiated_at: Set(reference.initiated_at),
        completed_at: Set(None),
        capture_id: Set(purpose.capture_id),
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error("{0}")]
    Connector(ConnectorError),
    #[error("{0}")]
    Database(DbErr),
}

/// The statuses a request's outcome may be written over: still open (pending, unknown), or not
/// processed (failed), which is sent again with the same tracking id. Approved and declined are
/// final: a late answer never overwrites them.
pub const OPEN_STATUSES: [RequestStatus; 3] = [RequestStatus::Pending, RequestStatus::Unknown, RequestStatus::Failed];

/// Writes the outcome of a request, inside the caller's transaction and *before* its effects
/// (R-CAP-5, issue #39): only over an open status ([`OPEN_STATUSES`]). When another runner
/// (recovery, another server) recorded an outcome meanwhile, nothing is written and the answer is
/// [`ServiceError::AlreadyRecorded`]: the caller drops its transaction, so its effects are never
/// applied twice.
pub async fn finish(
    db: &impl ConnectionTrait,
    request: &pr::Model,
    status: RequestStatus,
    processor_reference: Option<String>,
    message: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), ServiceError> {
    let completed = if matches!(status, RequestStatus::Pending | RequestStatus::Unknown) { None } else { Some(at) };
    let res = pr::Entity::update_many()
        .col_expr(pr::Column::Status, Expr::value(status.code()))
        .col_expr(pr::Column::ProcessorReference, Expr::value(processor_reference))
        .col_expr(pr::Column::Message, Expr::value(message))
        .col_expr(pr::Column::CompletedAt, Expr::value(completed))
        .filter(pr::Column::Id.eq(request.id))
        .filter(pr::Column::Status.is_in(OPEN_STATUSES.map(|s| s.code())))
        .exec(db)
        .await?;
    if res.rows_affected == 1 {
        Ok(())
    } else {
        Err(ServiceError::AlreadyRecorded(request.tracking_id.clone()))
    }
}

/// Requests outside any payment process, of one of `commands`, sent before `before` and still
/// without an answer (pending or unknown): what recovery asks the processor about.
pub async fn unanswered(db: &impl ConnectionTrait, commands: &[Command], before: chrono::DateTime<chrono::Utc>, batch: u64) -> Result<Vec<pr::Model>, DbErr> {
    use sea_orm::QuerySelect;
    pr::Entity::find()
        .filter(pr::Column::ProcessId.is_null())
        .filter(pr::Column::Command.is_in(commands.iter().map(|c| c.code())))
        .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
        .filter(pr::Column::InitiatedAt.lt(before))
        .order_by_asc(pr::Column::Id)
        .limit(batch)
        .all(db)
        .await
}

/// An order's request for `command` outside any payment process that is still without an answer
/// (pending or unknown), if any: one in flight, or one to ask about.
pub async fn in_flight(db: &impl ConnectionTrait, order_id: i32, command: Command) -> Result<Option<pr::Model>, DbErr> {
    pr::Entity::find()
        .filter(pr::Column::OrderId.eq(order_id))
        .filter(pr::Column::ProcessId.is_null())
        .filter(pr::Column::Command.eq(command.code()))
        .filter(pr::Column::Status.is_in([RequestStatus::Pending.code(), RequestStatus::Unknown.code()]))
        .order_by_asc(pr::Column::Id)
        .one(db)
        .await
}

/// The latest request of a process stage, if any.
pub async fn latest_for_stage(db: &impl ConnectionTrait, process_id: i32, stage: Stage) -> Result<Option<pr::Model>, DbErr> {
    pr::Entity::find()
        .filter(pr::Column::ProcessId.eq(process_id))
        .filter(pr::Column::Stage.eq(stage.code()))
        .order_by_desc(pr::Column::Id)
        .one(db)
        .await
}

/// How a call (or a query about an earlier call) came out.
#[derive(Clone, Debug)]
pub enum Resolution {
    Done(Outcome),
    /// Nothing happened at the processor; safe to send the same tracking id again.
    NotProcessed(String),
    /// Still unknown (timeout, and the processor could not be asked).
    Unknown(String),
}

/// Turns a call's result into a resolution; on a timeout, asks the processor about the tracking id.
pub async fn resolve<T>(s: &Services, request: &pr::Model, result: Result<T, ConnectorError>, wrap: impl FnOnce(T) -> Outcome) -> Resolution {
    match result {
        Ok(v) => Resolution::Done(wrap(v)),
        Err(ConnectorError::Declined { code, message }) => Resolution::Done(Outcome::Declined { code, message }),
        Err(e @ (ConnectorError::Unavailable(_) | ConnectorError::Invalid(_))) => Resolution::NotProcessed(e.to_string()),
        Err(ConnectorError::Timeout) => ask(s, request).await,
    }
}

/// Asks the processor of the request's connector what became of its tracking id (R-CAP-5).
pub async fn ask(s: &Services, request: &pr::Model) -> Resolution {
    let tracking_id = &request.tracking_id;
    match s.processor(request.connector_id).query(tracking_id).await {
        Ok(Some(outcome)) => Resolution::Done(outcome),
        Ok(None) => Resolution::NotProcessed(format!("the processor has no record of tracking id {tracking_id}")),
        Err(e) => Resolution::Unknown(format!("the processor did not answer and could not be asked about tracking id {tracking_id}: {e}")),
    }
}

/// Records a resolution that moved no money (declined, not processed, unknown, an unexpected
/// answer) with the request, and returns what to tell the user. `what` names the operation
/// ("deposit capture"); `retry` says who sends it again ("recovery", "Resume").
pub async fn finish_unsuccessful(
    db: &impl ConnectionTrait,
    request: &pr::Model,
    resolution: Resolution,
    what: &str,
    retry: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<String, ServiceError> {
    let (status, message, text) = match resolution {
        Resolution::Done(Outcome::Declined { code, message }) => {
            let text = format!("The processor declined the {what} ({code}): {message}");
            (RequestStatus::Declined, format!("{code}: {message}"), text)
        }
        Resolution::Done(other) => (RequestStatus::Failed, format!("unexpected answer {other:?}"), format!("The processor gave an unexpected answer to the {what}.")),
        Resolution::NotProcessed(m) => {
            let text = format!("The {what} was not processed ({m}); {retry} sends it again with the same tracking id.");
            (RequestStatus::Failed, m, text)
        }
        Resolution::Unknown(m) => {
            let text = format!("The outcome of the {what} is unknown ({m}); {retry} asks the processor first and never moves money twice.");
            (RequestStatus::Unknown, m, text)
        }
    };
    finish(db, request, status, None, Some(message), at).await?;
    Ok(text)
}
