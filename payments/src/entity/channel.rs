use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub code: String,
    pub name: String,
    pub kind: String,
    /// ISO 4217: the currency of the channel's orders.
    pub currency: String,
    /// When the channel was closed: it takes no new orders; its orders stay.
    pub closed_at: Option<DateTimeUtc>,
    /// IANA time zone (`America/Chicago`), in which its orders' times are shown.
    pub time_zone: String,
    /// The connector its orders take their cards on and are paid through; None: the default
    /// connector (R-PAR-5).
    pub connector_id: Option<i32>,
}

impl ActiveModelBehavior for ActiveModel {}
