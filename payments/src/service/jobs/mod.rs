//! Background jobs, one file per job, each a step function the server's loops and the tests call:
//! expiry (R-AUT-3), resubmit (R-AUT-1) and recovery (what a stopped server left running). All are
//! idempotent and safe to run on two servers at once.
mod expiry;
mod recovery;
mod renew;
mod resubmit;
pub use expiry::{expire_authorizations, ExpiryReport};
pub use recovery::recover;
pub use renew::{renew_authorizations, RenewReport};
pub use resubmit::{resubmit_authorizations, ResubmitReport, RESUBMIT_BATCH};
