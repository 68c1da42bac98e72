//! The Paystage server: start-up (configuration, database, migrations, first-start accounts), the
//! HTTP router with its security layers, and background loops. `main.rs` adds the CLI around it.
pub mod bench;
pub mod chaos;
pub mod config;
pub use payments::html;
pub mod journals_csv;
pub mod limits;
pub mod processor;
pub use payments::sandbox;
pub mod runtime;
pub mod security;
pub mod session_store;
pub mod storefront;
pub mod webhooks;

use app::state::AppState;
use app::{shell, App};
use axum::routing::get;
use axum::Router;
use config::Config;
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{generate_route_list, LeptosRoutes};
use payments::service::bootstrap::{bootstrap, BootstrapOptions, BootstrapReport};
use payments::service::clock::SystemClock;
use payments::service::Services;
use security::SecurityConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// Why the server could not start, as one line for the console.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("DATABASE_URL: cannot open or migrate the database: {0}")]
    Database(String),
    #[error("PAYSTAGE_PORT: {addr} is already in use; stop the other program or choose another port")]
    PortInUse { addr: SocketAddr },
    #[error("PAYSTAGE_HOST/PAYSTAGE_PORT: cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("first start: {0}")]
    Bootstrap(String),
}

/// Opens the database (migrated) and the processor: over HTTP when `PAYSTAGE_PROCESSOR_URL` is set
/// (Adyen, or `paystage sandbox` in its own process), else the default connector set up on the
/// Payment connectors page (`payments::connector::configured`; none usable: every payment request
/// refused as unavailable until one is).
pub async fn open_services(config: &Config) -> Result<Services, StartError> {
    let clock: payments::clock::SharedClock = Arc::new(SystemClock);
    let timeout = std::time::Duration::from_millis(config.connector_timeout_ms);
    let database = |e: sea_orm::DbErr| StartError::Database(e.to_string());
    let services = match &config.processor {
        None => Services::connect_configured(&config.database_url, config.secret_key.clone(), clock).await.map_err(database)?,
        Some(p) => {
            let mut s = Services::connect_over_http(&config.database_url, p.settings(timeout), clock).await.map_err(database)?;
            s.secrets = config.secret_key.clone();
            s
        }
    };
    if payments::connector::simulator::store::holds_earlier(&services.db).await.map_err(database)? {
        tracing::warn!(
            "DATABASE_URL holds an earlier in-process processor simulator's records (its sim_* tables); Paystage no longer reads them: move them to the sandbox's store with `paystage sandbox --data DIR --import-from DATABASE_URL` (scripts/run.sh does this on the sandbox's first start)"
        );
    }
    Ok(services.with_lease(chrono::Duration::seconds(i64::from(config.lease_seconds))).with_connector_timeout(timeout))
}

/// Opens the database, applies migrations and creates first-start accounts (and demo data).
pub async fn prepare(config: &Config) -> Result<(Services, BootstrapReport), StartError> {
    let services = open_services(config).await?;
    let report = bootstrap(
        &services,
        &BootstrapOptions {
            demo: config.demo,
            admin_password: config.admin_password.clone(),
            demo_password: config.demo_password.clone(),
            demo_orders: config.demo_orders,
        },
    )
    .await
    .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    Ok((services, report))
}

pub fn leptos_options(config: &Config, addr: SocketAddr) -> LeptosOptions {
    // build-site.sh names the content-hashed main module and glue in pkg/hash.txt; Leptos reads it
    // relative to the executable, so the path is made absolute. A site built without it (or none
    // at all, as in the server tests) is served under the plain names.
    let hash_file = std::path::absolute(config.site_root.join("pkg").join("hash.txt")).ok().filter(|p| p.is_file());
    LeptosOptions::builder()
        .output_name("paystage")
        .site_root(config.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .env(Env::PROD)
        .hash_files(hash_file.is_some())
        .hash_file(hash_file.map_or_else(|| "hash.txt".to_string(), |p| p.to_string_lossy().into_owned()).into())
        .build()
}

/// The whole HTTP application: pages, server functions, static files, health check, and the
/// session, origin, page-guard and header layers.
pub fn router(config: &Config, services: Services, addr: SocketAddr) -> Router {
    let leptos_options = leptos_options(config, addr);
    let services_for_webhooks = services.clone();
    let state = AppState {
        leptos_options,
        services: services.clone(),
        session_max: chrono::Duration::hours(i64::from(config.session_max_hours)),
    };
    let routes = generate_route_list(App);
    let store = session_store::DbSessionStore::new(services.db.clone());
    let sessions = SessionManagerLayer::new(store)
        .with_name("paystage_session")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(config.secure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(i64::from(config.session_hours))));
    let security = Arc::new(SecurityConfig::new(config.public_origin.clone(), config.secure_cookies, config.trust_forwarded_for));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/processor/acceptance",
            get(processor::form).layer(axum::Extension(security.clone())),
        )
        .route("/shop", get(storefront::page).post(storefront::submit))
        .route("/journals.csv", get(journals_csv::export))
        .route("/reconciliation.csv", get(journals_csv::reconciliation))
        // The bundle and stylesheet: a release build ships them pre-compressed (`.br`, `.gz`, made
        // by build-site.sh); conditional requests get 304.
        .nest_service(
            "/pkg",
            tower_http::services::ServeDir::new(config.site_root.join("pkg")).precompressed_br().precompressed_gzip(),
        )
        .leptos_routes(&state, routes, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(services, security::page_guard))
        .layer(axum::middleware::from_fn(security::api_error_status))
        .layer(axum::middleware::from_fn(security::refuse_nul))
        // Bodies are read only up to this size; a larger one is answered 413 before any handler
        // reads it (issue #40).
        .layer(tower_http::limit::RequestBodyLimitLayer::new(security::MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(security.clone(), security::client_limits))
        .layer(sessions)
        .layer(axum::middleware::from_fn_with_state(security.clone(), security::same_origin))
        .layer(axum::middleware::from_fn_with_state(security, security::headers))
        .layer(axum::middleware::from_fn(static_caching))
        // Outermost, so every layer inside sees plain bodies: brotli or gzip as the browser accepts
        // (the debug wasm bundle shrinks about fourfold; see docs/PERFORMANCE.md).
        .layer(tower_http::compression::CompressionLayer::new())
        // Processors' notifications: signed, so outside the session, same-origin and page layers
        // (added after them, they do not wrap these routes).
        .merge(webhooks::router(services_for_webhooks, webhooks::WebhookKeys::from_env().unwrap_or_default()))
}

/// Static files (`/pkg/…`). The main wasm module and its JS glue carry their content's hash in
/// their names (`paystage.<16 hex>.wasm`, build-site.sh), so a browser keeps them a year without
/// asking. The rest (chunks, the chunk loader, the stylesheet) keep their names across releases,
/// so browsers must ask before reusing them: `no-cache` with the file's Last-Modified makes an
/// unchanged file a 304 without its body, and a new release is never served stale.
async fn static_caching(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let path = req.uri().path().to_string();
    let mut res = next.run(req).await;
    if let Some(file) = path.strip_prefix("/pkg/").filter(|_| res.status().is_success()) {
        let policy = if is_content_hashed(file) { "public, max-age=31536000, immutable" } else { "no-cache" };
        res.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static(policy));
    }
    res
}

/// `paystage.<16 lowercase hex>.js` or `.wasm`: a name build-site.sh gave from the file's content.
fn is_content_hashed(file: &str) -> bool {
    let Some(rest) = file.strip_prefix("paystage.") else { return false };
    let Some(hash) = rest.strip_suffix(".js").or_else(|| rest.strip_suffix(".wasm")) else { return false };
    hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_names_made_from_the_content_are_cached_for_good() {
        for hashed in ["paystage.0123456789abcdef.js", "paystage.0123456789abcdef.wasm"] {
            assert!(super::is_content_hashed(hashed), "{hashed}");
        }
        for plain in [
            "paystage.js",
            "paystage_bg.wasm",
            "paystage.css",
            "chunk_7.wasm",
            "paystage.0123456789abcde.js",
            "paystage.0123456789ABCDEF.js",
            "paystage.0123456789abcdef.css",
            "paystage.0123456789abcdef.js.map",
            "../paystage.0123456789abcdef.js",
        ] {
            assert!(!super::is_content_hashed(plain), "{plain}");
        }
    }
}

/// Binds the configured address; a port in use is reported as such.
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener, StartError> {
    let addr = SocketAddr::new(config.host, config.port);
    tokio::net::TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            StartError::PortInUse { addr }
        } else {
            StartError::Listen { addr, source }
        }
    })
}

/// How often the webhook inbox is worked through.
pub const NOTIFICATION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Payment processes recovered per pass of the recovery job.
pub const RECOVERY_BATCH: u64 = 200;

/// Deletes expired sessions every hour, and runs payment recovery at start-up and every
/// `recovery_seconds`: processes whose server stopped are taken over and finished (R-PIP-3); and
/// the authorization jobs at start-up and every `expiry_seconds`: expiry (R-AUT-3/4) and the
/// sweep that stores it on the rows, then the authorization resubmit job (R-AUT-1) and the
/// renewal of recurring authorizations before they expire (R-AUT-6).
pub fn spawn_background_jobs(services: &Services, recovery_seconds: u32, expiry_seconds: u32) {
    let expiry = services.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(u64::from(expiry_seconds)));
        loop {
            every.tick().await;
            match payments::service::jobs::expire_authorizations(&expiry).await {
                Ok(r) if r.expired > 0 => {
                    tracing::info!(expired = r.expired, pending = r.pending_authorization, declined = r.declined, held = r.orders_held, "authorization expiry");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "authorization expiry failed; will retry"),
            }
            // Expiry is in effect once the job ran; the sweep stores it on the rows.
            match payments::service::expiry::store_expired(&expiry, payments::service::expiry::STORE_BATCH).await {
                Ok(r) if r.authorizations > 0 => {
                    tracing::info!(authorizations = r.authorizations, lines = r.lines, orders = r.orders, "expiry stored on the rows");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "storing expiry on the rows failed; the next pass continues"),
            }
            match payments::service::jobs::resubmit_authorizations(&expiry, payments::service::jobs::RESUBMIT_BATCH).await {
                Ok(r) if r.authorized + r.declined + r.not_completed > 0 => {
                    tracing::info!(authorized = r.authorized, declined = r.declined, not_completed = r.not_completed, nonrecurring = r.nonrecurring, "authorization resubmit");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "authorization resubmit failed; will retry"),
            }
            match payments::service::jobs::renew_authorizations(&expiry).await {
                Ok(r) if r.renewed + r.released + r.declined + r.not_completed > 0 => {
                    tracing::info!(renewed = r.renewed, released = r.released, declined = r.declined, not_completed = r.not_completed, "authorization renewal");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "authorization renewal failed; will retry"),
            }
        }
    });
    let recovery = services.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(u64::from(recovery_seconds)));
        loop {
            every.tick().await;
            loop {
                match payments::service::jobs::recover(&recovery, RECOVERY_BATCH).await {
                    Ok(r) if r.taken_over > 0 || r.requests_resolved > 0 => {
                        tracing::info!(taken_over = r.taken_over, completed = r.completed, incomplete = r.incomplete, requests = r.requests_resolved, "payment recovery");
                        if u64::from(r.taken_over) < RECOVERY_BATCH {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "payment recovery failed; will retry");
                        break;
                    }
                }
            }
        }
    });
    if services.configured.is_some() {
        // Another server sharing the database may change the default connector.
        let connectors = services.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(payments::connector::configured::RELOAD_EVERY);
            loop {
                every.tick().await;
                if let Err(e) = connectors.reload_connector().await {
                    tracing::warn!(error = %e, "checking the default connector failed; will retry");
                }
            }
        });
    }
    let inbox = services.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(NOTIFICATION_POLL);
        loop {
            every.tick().await;
            match payments::service::notifications::process_pending(&inbox, payments::service::notifications::PROCESS_BATCH).await {
                Ok(r) if r.confirmed + r.attention + r.unknown > 0 => {
                    tracing::info!(confirmed = r.confirmed, attention = r.attention, unknown = r.unknown, "processor notifications");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "processing processor notifications failed; will retry"),
            }
        }
    });
    use tower_sessions::session_store::ExpiredDeletion;
    let store = session_store::DbSessionStore::new(services.db.clone());
    let sessions_db = services.db.clone();
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "could not delete expired sessions; will retry");
            }
            if let Err(e) = payments::service::access::prune_sign_in_failures(&sessions_db, chrono::Utc::now()).await {
                tracing::warn!(error = %e, "could not forget old sign-in failures; will retry");
            }
        }
    });
}

/// Starts serving on an already bound listener; returns when the server stops.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
