pub mod access;
pub mod capture;
pub mod features;
pub mod money;
pub mod parameters;
pub mod pipeline;
pub mod views;
