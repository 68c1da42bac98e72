use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_lines")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub order_id: i32,
    pub tender: String,
    pub amount_minor: i64,
    pub status: String,
    pub connector_id: Option<i32>,
    pub card_token: Option<String>,
    pub card_type: Option<String>,
    pub last_four: Option<String>,
    pub holder: Option<String>,
    pub expiry: Option<String>,
    pub created_at: DateTimeUtc,
    /// `none`, `nonrecurring` or `recurring` (R-TOK-1).
    pub token_kind: String,
    /// The card on file this line was paid with, if any.
    pub customer_card_id: Option<i32>,
    /// A deposit line (R-PRE-2).
    pub prepayment: bool,
    /// Given back of a cash or customer-account line (card refunds are in `refunds`).
    pub refunded_minor: i64,
}

impl ActiveModelBehavior for ActiveModel {}
