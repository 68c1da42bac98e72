//! What server functions and SSR need from the server, provided as context by leptos_axum.
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use payments::service::Services;

#[derive(Clone, Debug, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub services: Services,
    /// How long a session lasts at most after sign-in, however active (`PAYSTAGE_SESSION_MAX_HOURS`).
    pub session_max: chrono::Duration,
}

/// The client's address (the connection's peer, or the trusted proxy's `X-Forwarded-For`), set on
/// every request by the server: sign-in locks and per-address limits count by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub String);
