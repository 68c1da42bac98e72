//! The audit log: who did what and when, with before/after values. Written in the same transaction
//! as the change it describes, so a change without its audit entry cannot exist.
use crate::domain::views::{AuditEntry, AuditPage};
use crate::entity::audit_log;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::Value;

pub const SYSTEM: &str = "system";

pub async fn record(
    db: &impl ConnectionTrait,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    subject: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), DbErr> {
    audit_log::ActiveModel {
        at: Set(at),
        actor: Set(actor.to_string()),
        action: Set(action.to_string()),
        subject: Set(subject.to_string()),
        before: Set(before.map(|v| v.to_string())),
        after: Set(after.map(|v| v.to_string())),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
}

pub const PAGE_SIZE: u64 = 50;

/// Newest first, `PAGE_SIZE` a page (pages count from 1).
pub async fn list(db: &impl ConnectionTrait, filter: &AuditFilter, page: u64) -> Result<AuditPage, DbErr> {
    let mut q = audit_log::Entity::find().order_by_desc(audit_log::Column::Id);
    if let Some(a) = filter.action.as_deref().filter(|a| !a.is_empty()) {
        q = q.filter(audit_log::Column::Action.eq(a));
    }
    if let Some(a) = filter.actor.as_deref().filter(|a| !a.is_empty()) {
        q = q.filter(audit_log::Column::Actor.eq(a));
    }
    let paginator = q.paginate(db, PAGE_SIZE);
    let total = paginator.num_items().await?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let entries = paginator
        .fetch_page(page - 1)
        .await?
        .into_iter()
        .map(|m| AuditEntry {
            id: m.id,
            at: m.at,
            actor: m.actor,
            action: m.action,
            subject: m.subject,
            before: m.before,
            after: m.after,
        })
        .collect();
    Ok(AuditPage { entries, page, pages, total })
}
