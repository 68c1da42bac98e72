use sea_orm::entity::prelude::*;

/// A recurring token saved on a customer with their agreement (card on file, R-TOK-6/8).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customer_cards")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub customer_id: i32,
    pub connector_id: i32,
    pub token: String,
    pub card_type: String,
    pub last_four: String,
    pub holder: String,
    pub expiry: String,
    pub created_at: DateTimeUtc,
    pub created_by: String,
    /// Set when the card is deleted; the row stays as the record of what was on file.
    pub deleted_at: Option<DateTimeUtc>,
    pub deleted_by: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
