//! The processors' notifications (issue #42): the webhook endpoint stores every item here before it
//! acknowledges the batch ([`receive`]), once per connector, event code and pspReference; the
//! background job then works through them ([`process_pending`]). Nothing is dropped: an outcome
//! Paystage recorded already is confirmed, a failure the processor reports later (CAPTURE_FAILED,
//! REFUND_FAILED, a modification with `success: false`) is put where finance works it, with the
//! processor's reason, and an event code Paystage does not know is kept and shown as such.
use crate::connector::adyen::wire::NotificationItem;
use crate::entity::processor_notification as pn;
use crate::ledger::reversals::Reversal;
use crate::runtime::Services;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait};

/// Items processed per pass of the background job.
pub const PROCESS_BATCH: u64 = 200;

/// What a notification asks of Paystage, by its event code and outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// The outcome was recorded when the request was answered; the notification confirms it.
    Confirms,
    /// The processor reports a failure after the fact: finance must work the payment.
    Attention,
    /// An event code Paystage does not know: kept and shown, never dropped.
    Unknown,
}

/// How an event is handled (Adyen's event codes).
pub fn handling(event_code: &str, success: bool) -> Handling {
    match (event_code, success) {
        ("CAPTURE_FAILED" | "REFUND_FAILED" | "REFUNDED_REVERSED" | "CHARGEBACK" | "NOTIFICATION_OF_CHARGEBACK", _) => Handling::Attention,
        ("CAPTURE" | "REFUND" | "CANCELLATION" | "AUTHORISATION_ADJUSTMENT" | "CANCEL_OR_REFUND" | "TECHNICAL_CANCEL", false) => Handling::Attention,
        ("AUTHORISATION" | "CAPTURE" | "REFUND" | "CANCELLATION" | "AUTHORISATION_ADJUSTMENT" | "CANCEL_OR_REFUND" | "TECHNICAL_CANCEL" | "RECURRING_CONTRACT", _) => Handling::Confirms,
        _ => Handling::Unknown,
    }
}

/// Stores `items` from connector `connector` in one transaction, each once; returns how many
/// were new. Called before the processor is told `[accepted]`.
pub async fn receive(s: &Services, connector: &str, items: &[NotificationItem]) -> Result<u64, DbErr> {
    let now = s.now();
    let txn = s.db.begin().await?;
    let mut new = 0;
    for item in items {
        let row = pn::ActiveModel {
            connector: Set(connector.to_string()),
            event_code: Set(item.event_code.chars().take(64).collect()),
            psp_reference: Set(item.psp_reference.chars().take(128).collect()),
            original_reference: Set(item.original_reference.as_ref().map(|r| r.chars().take(128).collect())),
            merchant_reference: Set(item.merchant_reference.chars().take(256).collect()),
            success: Set(item.success == "true"),
            amount_minor: Set(item.amount.value),
            currency: Set(item.amount.currency.chars().take(3).collect()),
            reason: Set(item.reason.clone()),
            item: Set(serde_json::to_string(item).map_err(|e| DbErr::Custom(e.to_string()))?),
            received_at: Set(now),
            state: Set("received".into()),
            attempts: Set(0),
            processed_at: Set(None),
            note: Set(None),
            ..Default::default()
        };
        let inserted = pn::Entity::insert(row)
            .on_conflict(OnConflict::columns([pn::Column::Connector, pn::Column::EventCode, pn::Column::PspReference]).do_nothing().to_owned())
            .exec_without_returning(&txn)
            .await?;
        new += inserted;
    }
    txn.commit().await?;
    Ok(new)
}

/// The latest notifications (at most [`LIST_LIMIT`]), newest first; `state` empty for all, else one
/// of [`crate::domain::views::NOTIFICATION_STATES`] (anything else is refused).
pub async fn list(s: &Services, state: &str) -> crate::error::ServiceResult<Vec<crate::domain::views::NotificationView>> {
    use crate::domain::views::{NotificationView, NOTIFICATION_STATES};
    let state = state.trim();
    let mut q = pn::Entity::find().order_by_desc(pn::Column::Id).limit(LIST_LIMIT);
    if !state.is_empty() {
        if !NOTIFICATION_STATES.iter().any(|(code, _)| *code == state) {
            return Err(crate::error::ServiceError::field("state", "Choose a state from the list."));
        }
        q = q.filter(pn::Column::State.eq(state));
    }
    let label = |code: &str| NOTIFICATION_STATES.iter().find(|(c, _)| *c == code).map_or(code.to_string(), |(_, l)| l.to_string());
    Ok(q.all(&s.db)
        .await?
        .into_iter()
        .map(|n| NotificationView {
            amount: match crate::domain::money::Currency::from_code(&n.currency) {
                Some(c) => crate::domain::money::Money::from_minor(n.amount_minor, c).to_string(),
                None => format!("{} (minor units) {}", n.amount_minor, n.currency),
            },
            state_label: label(&n.state),
            id: n.id,
            connector: n.connector,
            event_code: n.event_code,
            success: n.success,
            psp_reference: n.psp_reference,
            original_reference: n.original_reference,
            merchant_reference: n.merchant_reference,
            reason: n.reason,
            state: n.state,
            received_at: n.received_at,
            note: n.note,
            worked_by: n.worked_by,
        })
        .collect())
}

/// The most notifications the list shows.
pub const LIST_LIMIT: u64 = 200;

/// What one pass of [`process_pending`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessReport {
    pub confirmed: u32,
    pub attention: u32,
    pub unknown: u32,
}

/// How many passes of the background job (one every two seconds) a failure report waits for the
/// capture or refund it names to be recorded (its outcome may still be unresolved), or retries a
/// reversal that failed, before finance is told nothing was reversed.
pub const NOT_FOUND_PASSES: i32 = 30;

/// Works through up to `batch` received notifications, oldest first. A capture or refund
/// reported failed is reversed ([`crate::ledger::reversals`]) in its own transaction before the
/// notification is marked; a crash in between leaves it `received`, and the next pass finds the
/// reversal done and marks it.
pub async fn process_pending(s: &Services, batch: u64) -> Result<ProcessReport, DbErr> {
    let pending = pn::Entity::find().filter(pn::Column::State.eq("received")).order_by_asc(pn::Column::Id).limit(batch).all(&s.db).await?;
    let mut report = ProcessReport::default();
    for n in pending {
        let attempts = n.attempts + 1;
        let (state, note) = match handling(&n.event_code, n.success) {
            Handling::Confirms => {
                report.confirmed += 1;
                ("processed", format!("{} {} confirms what Paystage recorded.", n.event_code, if n.success { "success" } else { "refusal" }))
            }
            Handling::Attention => {
                let reason = n.reason.clone().unwrap_or_else(|| "no reason given".into());
                let reversed = match undoes(&n.event_code, n.success) {
                    Some(Undo::Capture) => Some(crate::ledger::reversals::reverse_capture(&s.db, s.now(), &n.psp_reference, &n.merchant_reference, &reason).await),
                    Some(Undo::Refund) => Some(crate::ledger::reversals::reverse_refund(&s.db, s.now(), &n.psp_reference, &n.merchant_reference, &reason).await),
                    None => None,
                };
                let what = match reversed {
                    Some(Err(e)) if attempts < NOT_FOUND_PASSES => {
                        // Tried again on the next pass; the error is kept on the notification.
                        tracing::error!(connector = %n.connector, event = %n.event_code, psp = %n.psp_reference, error = %e, "a failure the processor reported could not be reversed yet");
                        let mut am: pn::ActiveModel = n.into();
                        am.attempts = Set(attempts);
                        am.note = Set(Some(format!("Reversing it failed, tried again shortly: {e}")));
                        am.update(&s.db).await?;
                        continue;
                    }
                    Some(Ok(Reversal::NotFound)) if attempts < NOT_FOUND_PASSES => {
                        let mut am: pn::ActiveModel = n.into();
                        am.attempts = Set(attempts);
                        am.note = Set(Some("Paystage has no record of this yet (its outcome may be unresolved); tried again shortly.".into()));
                        am.update(&s.db).await?;
                        continue;
                    }
                    Some(Ok(Reversal::Reversed { journal, amount, order, invoice })) => format!(
                        " Paystage reversed it with journal {journal} ({amount}); {} is open again by that amount.",
                        invoice.map_or_else(|| format!("the deposit of order {order}"), |i| format!("invoice {i} of order {order}"))
                    ),
                    Some(Ok(Reversal::AlreadyReversed)) => " Paystage had reversed it already.".to_string(),
                    Some(Ok(Reversal::NotFound)) => " Paystage has no record of it, so nothing was reversed.".to_string(),
                    Some(Ok(Reversal::Refused(why))) => format!(" Nothing was reversed: {why}."),
                    Some(Err(e)) => format!(" Reversing it failed {attempts} times, so nothing was reversed: {e}."),
                    None => String::new(),
                };
                report.attention += 1;
                tracing::error!(connector = %n.connector, event = %n.event_code, psp = %n.psp_reference, payment = ?n.original_reference, %reason, "the processor reports a failure after the fact; finance must work this payment");
                ("attention", format!("The processor reports {} for {} (payment {}, tracking id {}): {reason}.{what} Finance must work this payment.", n.event_code, n.psp_reference, n.original_reference.as_deref().unwrap_or("-"), n.merchant_reference))
            }
            Handling::Unknown => {
                report.unknown += 1;
                ("unknown_event", format!("Paystage does not know the event code {}; the notification is kept as it came.", n.event_code))
            }
        };
        let mut am: pn::ActiveModel = n.into();
        am.state = Set(state.into());
        am.attempts = Set(attempts);
        am.processed_at = Set(Some(s.now()));
        am.note = Set(Some(note));
        am.update(&s.db).await?;
    }
    Ok(report)
}

/// What a failure reported after the fact undoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    Capture,
    Refund,
}

/// Whether an event reports that a capture or refund Paystage recorded did not happen: Adyen's
/// CAPTURE_FAILED and REFUND_FAILED, and a CAPTURE or REFUND notification with `success: false`.
pub fn undoes(event_code: &str, success: bool) -> Option<Undo> {
    match (event_code, success) {
        ("CAPTURE_FAILED", _) | ("CAPTURE", false) => Some(Undo::Capture),
        ("REFUND_FAILED", _) | ("REFUND", false) => Some(Undo::Refund),
        _ => None,
    }
}

/// Marks notification `id`, which needed finance, as worked by `actor`, with what they did
/// (`note`, required). Only a notification in state `attention` can be.
pub async fn mark_worked(s: &Services, actor: &str, id: i32, note: &str) -> crate::error::ServiceResult<()> {
    use crate::error::ServiceError;
    let note = note.trim();
    if note.is_empty() || note.chars().count() > 2000 {
        return Err(ServiceError::field("note", "Say what was done, in at most 2000 characters."));
    }
    let txn = s.db.begin().await?;
    let Some(n) = crate::db::for_update(pn::Entity::find_by_id(id), &txn).one(&txn).await? else {
        return Err(ServiceError::NotFound(format!("notification {id}")));
    };
    if n.state != "attention" {
        return Err(ServiceError::field("note", "Only a notification that needs finance can be marked worked."));
    }
    let before = n.note.clone().unwrap_or_default();
    let subject = format!("notification {id} ({} {})", n.event_code, n.psp_reference);
    let mut am: pn::ActiveModel = n.into();
    am.state = Set("worked".into());
    am.worked_by = Set(Some(actor.to_string()));
    am.worked_at = Set(Some(s.now()));
    am.note = Set(Some(format!("{before} Worked by {actor}: {note}")));
    am.update(&txn).await?;
    crate::ledger::audit::record(&txn, s.now(), actor, "notification.worked", &subject, Some(serde_json::json!({"state": "attention"})), Some(serde_json::json!({"state": "worked", "note": note}))).await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{handling, Handling};

    #[test]
    fn failures_after_the_fact_are_never_confirmations() {
        assert_eq!(handling("CAPTURE", true), Handling::Confirms);
        assert_eq!(handling("CAPTURE", false), Handling::Attention);
        assert_eq!(handling("CAPTURE_FAILED", true), Handling::Attention);
        assert_eq!(handling("REFUND_FAILED", true), Handling::Attention);
        assert_eq!(handling("AUTHORISATION", false), Handling::Confirms, "a refused authorization was answered at once");
        assert_eq!(handling("SOMETHING_NEW", true), Handling::Unknown);
    }

    #[test]
    fn only_a_failed_capture_or_refund_is_undone() {
        use super::{undoes, Undo};
        assert_eq!(undoes("CAPTURE_FAILED", true), Some(Undo::Capture));
        assert_eq!(undoes("CAPTURE", false), Some(Undo::Capture));
        assert_eq!(undoes("CAPTURE", true), None);
        assert_eq!(undoes("REFUND_FAILED", true), Some(Undo::Refund));
        assert_eq!(undoes("REFUND", false), Some(Undo::Refund));
        assert_eq!(undoes("CANCELLATION", false), None, "a failed cancel leaves the authorization open: finance works it, nothing is reversed");
        assert_eq!(undoes("CHARGEBACK", true), None);
    }
}
