//! What server functions and SSR need from the server, provided as context by leptos_axum.
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use payments::service::Services;

#[derive(Clone, Debug, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub services: Services,
}
