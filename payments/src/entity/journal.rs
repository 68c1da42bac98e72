use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "journals")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub number: String,
    #[sea_orm(unique)]
    pub source: String,
    pub kind: String,
    pub order_id: Option<i32>,
    pub invoice_id: Option<i32>,
    pub currency: String,
    pub prepayment: bool,
    pub description: String,
    pub posted_at: DateTimeUtc,
    pub customer_id: Option<i32>,
    /// `card`, `cash` or `customer_account`: the method the payment or refund moved by.
    pub tender: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
