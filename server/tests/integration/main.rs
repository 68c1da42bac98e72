//! Paystage's integration tests, in one binary (each test binary links the whole application, so
//! ten of them cost minutes of linking). Every database test runs on SQLite and on PostgreSQL
//! (`payments::db_test!`); run one module with `cargo test -p server --test integration http::`.
mod support;

mod authorizations;
mod campaign;
mod http;
mod money_safety;
mod pipeline;
mod prepayments;
mod processes;
mod processor_http;
mod properties;
mod services;
mod simulator;
mod tokens;
