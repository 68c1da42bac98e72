use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub account: String,
    pub name: String,
    pub email: Option<String>,
    /// The channel a web-shop customer was opened on (one per e-mail per channel); none for
    /// customers made by staff.
    pub channel_id: Option<i32>,
    pub phone: Option<String>,
    pub billing_street: Option<String>,
    pub billing_city: Option<String>,
    pub billing_postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub billing_country: Option<String>,
    /// Set when deactivated: no new orders or cards; the customer's orders and history stay.
    pub deactivated_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
