//! Paystage's schema. One file per change; every migration must behave the same on SQLite and
//! PostgreSQL (money as integer minor units, timestamps with time zone, no backend-specific SQL;
//! the exceptions are a PostgreSQL storage parameter that SQLite has no counterpart for, see
//! migration 7, and the triggers of migration 9, written once per database).
pub use sea_orm_migration::prelude::*;

mod m20261122_000001_foundation;
mod m20261122_000002_payments;
mod m20261122_000003_credits;
mod m20261123_000004_tokens;
mod m20261123_000005_prepayments;
mod m20261130_000006_open_authorizations_index;
mod m20261130_000007_hot_update_room;
mod m20261201_000008_expiry_watermark;
mod m20261206_000009_posted_records;
mod m20261206_000010_account_security;
mod m20261207_000011_typed_facts;
mod m20261207_000012_processor_sends;
mod m20261207_000013_processor_failures;
mod m20261208_000014_journal_faults;
mod m20261208_000015_channel_setup;
mod m20261209_000016_connector_setup;
mod m20261209_000017_customers_and_sign_ins;
mod m20261210_000018_channel_connector;
mod m20261211_000019_termination_approval;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_foundation::Migration), Box::new(m20261122_000002_payments::Migration), Box::new(m20261122_000003_credits::Migration),
            Box::new(m20261123_000004_tokens::Migration),
            Box::new(m20261123_000005_prepayments::Migration),
            Box::new(m20261130_000006_open_authorizations_index::Migration),
            Box::new(m20261130_000007_hot_update_room::Migration),
            Box::new(m20261201_000008_expiry_watermark::Migration),
            Box::new(m20261206_000009_posted_records::Migration),
            Box::new(m20261206_000010_account_security::Migration),
            Box::new(m20261207_000011_typed_facts::Migration),
            Box::new(m20261207_000012_processor_sends::Migration),
            Box::new(m20261207_000013_processor_failures::Migration),
            Box::new(m20261208_000014_journal_faults::Migration),
            Box::new(m20261208_000015_channel_setup::Migration),
            Box::new(m20261209_000016_connector_setup::Migration),
            Box::new(m20261209_000017_customers_and_sign_ins::Migration),
            Box::new(m20261210_000018_channel_connector::Migration),
            Box::new(m20261211_000019_termination_approval::Migration),
        ]
    }
}
