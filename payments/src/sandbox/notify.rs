//! The sandbox's notifications: each outcome is queued in its store (once per pspReference and
//! event code), signed, and POSTed as an Adyen-shaped batch to the notification URL until the URL
//! answers `[accepted]`, with growing pauses between attempts (as Adyen retries).
use super::keys::stmt;
use super::{Sandbox, DELIVERY_POLL};
use crate::connector::adyen::signature;
use crate::connector::adyen::wire::{NotificationItem, NotificationItemWrapper, NotificationRequest, ACCEPTED};
use sea_orm::{ConnectionTrait, DbErr};
use std::time::Duration;

/// Notifications sent in one batch at most.
const BATCH: i64 = 20;
/// The longest pause between two attempts at one notification.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(super) async fn enqueue(s: &Sandbox, mut item: NotificationItem) -> Result<(), DbErr> {
    signature::attach(&mut item, &s.inner.options.hmac_key);
    let now = s.inner.clock.now().to_rfc3339();
    let text = serde_json::to_string(&item).map_err(|e| DbErr::Custom(e.to_string()))?;
    s.inner
        .store
        .execute_raw(stmt(
            "INSERT INTO sandbox_notifications (psp_reference, event_code, item, created_at, next_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (psp_reference, event_code) DO NOTHING",
            vec![item.psp_reference.clone().into(), item.event_code.clone().into(), text.into(), now.clone().into(), now.into()],
        ))
        .await?;
    Ok(())
}

/// Pause after `attempts` failed attempts: 1 s, 2 s, 4 s, … up to [`MAX_BACKOFF`].
pub(super) fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF)
}

/// One delivery pass: the notifications due, in one batch; true when it sent something.
pub(super) async fn deliver_once(s: &Sandbox, http: &reqwest::Client, url: &str) -> Result<bool, DbErr> {
    let now = s.inner.clock.now();
    let rows = s
        .inner
        .store
        .query_all_raw(stmt(
            "SELECT id, item, attempts FROM sandbox_notifications WHERE delivered_at IS NULL AND next_at <= ? ORDER BY id LIMIT ?",
            vec![now.to_rfc3339().into(), BATCH.into()],
        ))
        .await?;
    if rows.is_empty() {
        return Ok(false);
    }
    let mut ids = Vec::new();
    let mut items = Vec::new();
    let mut attempts = 0i32;
    for r in rows {
        let id: i64 = r.try_get("", "id")?;
        let text: String = r.try_get("", "item")?;
        attempts = attempts.max(r.try_get("", "attempts")?);
        if let Ok(item) = serde_json::from_str::<NotificationItem>(&text) {
            ids.push(id);
            items.push(NotificationItemWrapper { item });
        }
    }
    let batch = NotificationRequest { live: "false".into(), notification_items: items };
    let result = http.post(url).json(&batch).send().await;
    let failure = match result {
        Ok(r) if r.status().is_success() => match r.text().await {
            Ok(body) if body.trim() == ACCEPTED => None,
            Ok(body) => Some(format!("answered {:?} instead of {ACCEPTED}", body.chars().take(80).collect::<String>())),
            Err(e) => Some(e.to_string()),
        },
        Ok(r) => Some(format!("HTTP {}", r.status())),
        Err(e) => Some(e.to_string()),
    };
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    match failure {
        None => {
            s.inner
                .store
                .execute_raw(stmt(&format!("UPDATE sandbox_notifications SET delivered_at = ?, attempts = attempts + 1 WHERE id IN ({list})"), vec![now.to_rfc3339().into()]))
                .await?;
        }
        Some(why) => {
            let next = now + chrono::Duration::from_std(backoff(u32::try_from(attempts).unwrap_or(0))).unwrap_or_default();
            tracing::info!(%why, "sandbox: notification delivery failed; trying again later");
            s.inner
                .store
                .execute_raw(stmt(
                    &format!("UPDATE sandbox_notifications SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id IN ({list})"),
                    vec![next.to_rfc3339().into(), why.into()],
                ))
                .await?;
        }
    }
    Ok(true)
}

impl Sandbox {
    /// The signed notifications not delivered yet, oldest first, marked delivered: handed over
    /// directly to a Paystage in the same process that has no URL for them (tests).
    pub async fn hand_over_notifications(&self) -> Result<Vec<NotificationItem>, DbErr> {
        let rows = self.inner.store.query_all_raw(stmt("SELECT id, item FROM sandbox_notifications WHERE delivered_at IS NULL ORDER BY id", vec![])).await?;
        let mut items = Vec::with_capacity(rows.len());
        let now = self.inner.clock.now().to_rfc3339();
        for r in rows {
            let id: i64 = r.try_get("", "id")?;
            let text: String = r.try_get("", "item")?;
            items.push(serde_json::from_str(&text).map_err(|e| DbErr::Custom(format!("queued notification {id}: {e}")))?);
            self.inner.store.execute_raw(stmt("UPDATE sandbox_notifications SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?", vec![now.clone().into(), id.into()])).await?;
        }
        Ok(items)
    }
}

pub(super) async fn deliver_forever(s: Sandbox) {
    let Some(url) = s.inner.options.notify_url.clone() else { return };
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(h) => h,
        Err(e) => return tracing::error!(error = %e, "sandbox: cannot build the notification client"),
    };
    loop {
        match deliver_once(&s, &http, &url).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "sandbox: notification queue"),
        }
        tokio::time::sleep(DELIVERY_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pauses_grow_and_stop_at_five_minutes() {
        assert_eq!(super::backoff(0).as_secs(), 1);
        assert_eq!(super::backoff(3).as_secs(), 8);
        assert_eq!(super::backoff(40).as_secs(), 300);
    }
}
