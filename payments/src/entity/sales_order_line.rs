use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sales_order_lines")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub order_id: i32,
    pub line_no: i32,
    pub item: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub requested_ship_date: Date,
    pub invoiced_quantity: i32,
    /// Of the invoiced quantity, how much a credit note has since credited (returned).
    pub credited_quantity: i32,
}

impl ActiveModelBehavior for ActiveModel {}
