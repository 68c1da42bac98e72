use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "captures")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub authorization_id: i32,
    pub order_id: i32,
    pub invoice_id: Option<i32>,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub processor_reference: String,
    #[sea_orm(unique)]
    pub tracking_id: String,
    pub captured_at: DateTimeUtc,
    /// When the processor reported, after answering, that this capture failed (CAPTURE_FAILED):
    /// its money did not move, and a reversing journal was posted.
    pub failed_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_reason: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// What this capture moved: its amount, or nothing once the processor reported it failed.
    pub fn moved_minor(&self) -> i64 {
        if self.failed_at.is_some() { 0 } else { self.amount_minor }
    }

    /// What can still be refunded from it (nothing from a failed capture).
    pub fn refundable_minor(&self) -> i64 {
        if self.failed_at.is_some() { 0 } else { self.amount_minor - self.refunded_minor }
    }
}
