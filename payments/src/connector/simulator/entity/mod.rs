//! The simulator's tables, in its own store (`super::store`), never in Paystage's database.
pub mod sim_authorization;
pub mod sim_capture;
pub mod sim_fault;
pub mod sim_merchant;
pub mod sim_refund;
pub mod sim_token;
pub mod sim_transaction;
