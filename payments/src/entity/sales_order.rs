use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sales_orders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub number: String,
    pub customer_id: i32,
    pub channel_id: i32,
    pub currency: String,
    pub tax_percent: String,
    pub charges_minor: i64,
    pub status: String,
    pub do_not_process: bool,
    pub created_at: DateTimeUtc,
    pub created_by: String,
    /// `cash_and_carry` or `customer_order` (R-TOK-2/3).
    pub order_kind: String,
    /// Paid in advance (R-PRE-2/3): deposit lines are captured or posted when the order is taken.
    pub prepayment: bool,
    /// The deposit asked for (R-PRE-2).
    pub deposit_minor: i64,
    /// Kept when the order was cancelled (R-PRE-4).
    pub cancellation_charge_minor: i64,
    pub cancelled_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
