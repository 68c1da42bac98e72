use sea_orm::entity::prelude::*;

/// A customer account deposit taken at POS (R-PRE-1).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_deposits")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub number: String,
    pub customer_id: i32,
    pub channel_id: i32,
    pub tender: String,
    pub currency: String,
    pub amount_minor: i64,
    pub journal_id: Option<i32>,
    pub created_at: DateTimeUtc,
    pub created_by: String,
}

impl ActiveModelBehavior for ActiveModel {}
