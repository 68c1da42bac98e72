use sea_orm::entity::prelude::*;

/// Evidence of a customer's consent to tokenize (R-TOK-3), to save a card on file (R-TOK-6), or of
/// the acknowledgement that a recurring token is required (R-TOK-4).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_consents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub order_id: i32,
    pub payment_line_id: Option<i32>,
    pub kind: String,
    pub text_shown: String,
    pub given_by: String,
    pub given_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
