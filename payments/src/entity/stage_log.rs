use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stage_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub process_id: i32,
    pub stage: String,
    pub attempt: i32,
    pub at: DateTimeUtc,
    #[sea_orm(column_type = "Text")]
    pub message: String,
}

impl ActiveModelBehavior for ActiveModel {}
