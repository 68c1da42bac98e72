//! What Paystage records and reads back, below the payment pipeline and the use cases that both
//! write it: the audit log, the settings, processor requests, journals, deposits' settlement and
//! the stored state of orders (authorizations recorded, expiry settled).
pub mod audit;
pub mod deposits;
pub mod expiry;
pub mod journals;
pub mod orders;
pub mod requests;
pub mod reversals;
pub mod settings;
