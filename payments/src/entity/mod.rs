//! SeaORM entities, one per table of the `migrations` crate.
pub mod audit_log;
pub mod channel;
pub mod connector;
pub mod connector_merchant_property;
pub mod customer;
pub mod feature;
pub mod login_throttle;
pub mod parameter;
pub mod pre_authorization_duration;
pub mod session;
pub mod user;
pub mod user_role;
