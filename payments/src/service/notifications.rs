//! The processors' notifications (issue #42): the webhook endpoint stores every item here before it
//! acknowledges the batch ([`receive`]), once per connector, event code and pspReference; the
//! background job then works through them ([`process_pending`]). Nothing is dropped: an outcome
//! Paystage recorded already is confirmed, a failure the processor reports later (CAPTURE_FAILED,
//! REFUND_FAILED, a modification with `success: false`) is put where finance works it, with the
//! processor's reason, and an event code Paystage does not know is kept and shown as such.
use crate::connector::adyen::wire::NotificationItem;
use crate::entity::processor_notification as pn;
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

/// Works through up to `batch` received notifications, oldest first.
pub async fn process_pending(s: &Services, batch: u64) -> Result<ProcessReport, DbErr> {
    let pending = pn::Entity::find().filter(pn::Column::State.eq("received")).order_by_asc(pn::Column::Id).limit(batch).all(&s.db).await?;
    let mut report = ProcessReport::default();
    for n in pending {
        let (state, note) = match handling(&n.event_code, n.success) {
            Handling::Confirms => {
                report.confirmed += 1;
                ("processed", format!("{} {} confirms what Paystage recorded.", n.event_code, if n.success { "success" } else { "refusal" }))
            }
            Handling::Attention => {
                report.attention += 1;
                let reason = n.reason.clone().unwrap_or_else(|| "no reason given".into());
                tracing::error!(connector = %n.connector, event = %n.event_code, psp = %n.psp_reference, payment = ?n.original_reference, %reason, "the processor reports a failure after the fact; finance must work this payment");
                ("attention", format!("The processor reports {} for {} (payment {}, tracking id {}): {reason}. Finance must work this payment.", n.event_code, n.psp_reference, n.original_reference.as_deref().unwrap_or("-"), n.merchant_reference))
            }
            Handling::Unknown => {
                report.unknown += 1;
                ("unknown_event", format!("Paystage does not know the event code {}; the notification is kept as it came.", n.event_code))
            }
        };
        let attempts = n.attempts + 1;
        let mut am: pn::ActiveModel = n.into();
        am.state = Set(state.into());
        am.attempts = Set(attempts);
        am.processed_at = Set(Some(s.now()));
        am.note = Set(Some(note));
        am.update(&s.db).await?;
    }
    Ok(report)
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
}
