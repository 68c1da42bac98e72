use sea_orm::entity::prelude::*;

/// Failed sign-ins of one account from one client address (issue #40).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sign_in_throttle")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub username: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub client: String,
    pub failures: i32,
    pub window_started_at: DateTimeUtc,
    pub locked_until: Option<DateTimeUtc>,
    /// How many times this account was locked for this address; each lock lasts twice the last.
    pub locks: i32,
}

impl ActiveModelBehavior for ActiveModel {}
