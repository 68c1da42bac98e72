use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connector_merchant_properties")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub connector_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel_id: i32,
    pub enable_request_protection: bool,
    pub non_incremental_capture_methods: String,
}

impl ActiveModelBehavior for ActiveModel {}
