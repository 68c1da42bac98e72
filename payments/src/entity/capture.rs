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
}

impl ActiveModelBehavior for ActiveModel {}
