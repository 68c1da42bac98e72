use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connectors")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub code: String,
    pub name: String,
    /// `sandbox` (Paystage's processor sandbox) or `adyen`; both speak Adyen's Checkout API.
    pub kind: String,
    pub is_default: bool,
    pub allow_multiple_partial_capture: bool,
    /// The Checkout API's base URL up to its version; none: not set up yet.
    pub endpoint: Option<String>,
    pub merchant_account: Option<String>,
    /// The API key, sealed with the server's secret key (`crate::secrets`).
    pub api_key_sealed: Option<String>,
    /// The HMAC key notifications are signed with (hex), sealed likewise.
    pub hmac_key_sealed: Option<String>,
    /// The processor's hosted card page (the sandbox's `/hpp/cards`).
    pub card_page: Option<String>,
    pub key_window_days: i32,
    pub timeout_ms: i32,
    /// Raised by every change, so each server sharing the database reloads its connector.
    pub revision: i32,
}

impl ActiveModelBehavior for ActiveModel {}
