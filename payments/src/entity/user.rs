use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: DateTimeUtc,
    /// Set while the user is disabled: no sign-in, and their sessions are over.
    pub disabled_at: Option<DateTimeUtc>,
    /// Sessions that began before this are over (set by a password reset or a disable).
    pub sessions_valid_from: Option<DateTimeUtc>,
    /// When the user last signed in.
    pub last_sign_in_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
