use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "processor_requests")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub tracking_id: String,
    pub connector_id: i32,
    pub command: String,
    pub currency: String,
    pub amount_minor: i64,
    pub order_id: i32,
    pub authorization_id: Option<i32>,
    pub process_id: Option<i32>,
    pub stage: Option<String>,
    pub status: String,
    pub processor_reference: Option<String>,
    pub message: Option<String>,
    pub initiated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// For a refund: the capture it is made against.
    pub capture_id: Option<i32>,
}

impl ActiveModelBehavior for ActiveModel {}
