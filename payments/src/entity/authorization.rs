use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "authorizations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub order_id: i32,
    pub payment_line_id: i32,
    pub connector_id: i32,
    pub processor_reference: String,
    pub tracking_id: String,
    pub currency: String,
    pub amount_minor: i64,
    pub captured_minor: i64,
    pub supports_multiple_captures: bool,
    pub payment_method_variant: String,
    pub card_type: String,
    pub last_four: String,
    pub authorized_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub status: String,
    pub replaces_id: Option<i32>,
}

impl ActiveModelBehavior for ActiveModel {}
