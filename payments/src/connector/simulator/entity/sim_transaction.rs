use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sim_transactions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tracking_id: String,
    pub command: String,
    pub amount_minor: i64,
    pub outcome: String,
    pub reference: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub response: String,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
