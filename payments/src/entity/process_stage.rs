use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "process_stages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub process_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub stage: String,
    pub status: String,
    pub attempts: i32,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub error: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
