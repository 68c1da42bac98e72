use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub number: String,
    pub order_id: i32,
    pub currency: String,
    pub amount_minor: i64,
    pub posted_at: DateTimeUtc,
    pub posted_by: String,
}

impl ActiveModelBehavior for ActiveModel {}
