use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pre_authorization_durations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_type: String,
    pub days: i32,
}

impl ActiveModelBehavior for ActiveModel {}
