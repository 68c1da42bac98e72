//! Paystage's payment domain.
//!
//! The default build is pure domain code that also compiles to wasm: roles, features and their
//! prerequisites, parameters and their validation, money. The `server` feature adds persistence
//! (SeaORM entities), the services every entry point uses (server functions, jobs, CLI), and the
//! database connection helpers. Nothing here knows about Leptos or HTTP.

pub mod domain;

#[cfg(feature = "server")]
pub mod observe;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod connector;
#[cfg(feature = "server")]
pub mod html;
#[cfg(feature = "server")]
pub mod sandbox;
#[cfg(feature = "server")]
pub mod crashpoint;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod ledger;
#[cfg(feature = "server")]
pub mod pipeline;
#[cfg(feature = "server")]
pub mod runtime;
#[cfg(feature = "server")]
pub mod entity;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod ids;
#[cfg(feature = "server")]
pub mod secrets;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub(crate) mod turns;
#[cfg(feature = "server")]
pub mod writes;
/// The database error type, for crates that map it without depending on SeaORM.
#[cfg(feature = "server")]
pub mod db_err {
    pub use sea_orm::DbErr;
}
#[cfg(feature = "testing")]
pub mod testing;

pub use domain::access::Role;
pub use domain::features::Feature;

#[cfg(all(test, feature = "server"))]
mod layering;
#[cfg(all(test, feature = "server"))]
mod rule_index;
