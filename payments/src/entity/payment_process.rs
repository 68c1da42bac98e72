use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_processes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub invoice_id: i32,
    pub order_id: i32,
    pub monitored: bool,
    pub status: String,
    /// Why the capture took its path, as the history shows it.
    pub capture_path: Option<String>,
    /// `CaptureKind`: which path stage 2 took, once it chose.
    pub capture_kind: Option<String>,
    pub captured_minor: i64,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub terminated_reason: Option<String>,
    /// A termination waiting for a second finance user's approval (issue #44): who asked, when,
    /// and the reason they gave.
    pub termination_requested_by: Option<String>,
    pub termination_requested_at: Option<DateTimeUtc>,
    pub termination_request_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    pub fn took_path(&self, kind: crate::domain::capture::CaptureKind) -> bool {
        self.capture_kind.as_deref() == Some(kind.code())
    }
}
