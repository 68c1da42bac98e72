//! One file per page; each page's server functions sit beside the component that calls them.
pub mod audit;
pub mod authorizations;
pub mod connectors;
pub mod customers;
pub mod features;
pub mod home;
pub mod incomplete;
pub mod login;
pub mod new_order;
pub mod orders;
pub mod parameters;
pub mod payment;
pub mod payment_setup;
pub mod prepayments;
pub mod simulator;
pub mod users;
