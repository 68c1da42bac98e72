use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub capture_id: i32,
    pub order_id: i32,
    pub amount_minor: i64,
    pub processor_reference: String,
    #[sea_orm(unique)]
    pub tracking_id: String,
    pub refunded_at: DateTimeUtc,
    /// When the processor reported, after answering, that this refund failed (REFUND_FAILED): the
    /// money stayed with the merchant, and a reversing journal was posted.
    pub failed_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_reason: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// What this refund moved: its amount, or nothing once the processor reported it failed.
    pub fn moved_minor(&self) -> i64 {
        if self.failed_at.is_some() { 0 } else { self.amount_minor }
    }
}
