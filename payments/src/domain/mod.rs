pub mod access;
pub mod features;
pub mod money;
pub mod parameters;
pub mod views;
