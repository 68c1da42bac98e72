use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoice_lines")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub invoice_id: i32,
    pub order_line_id: i32,
    pub quantity: i32,
    pub amount_minor: i64,
}

impl ActiveModelBehavior for ActiveModel {}
