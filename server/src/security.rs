//! Request guards that apply to every route: note the client's address, refuse state-changing
//! requests from a foreign origin, limit sign-in and the anonymous shop per address, send pages
//! only to users whose roles allow them, give refused server-function calls their 4xx status, and
//! set protective response headers.
use crate::limits::PerAddress;
use app::nav::{access, Access};
use app::state::ClientAddr;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use payments::service::Services;
use std::sync::Arc;
use tower_sessions::Session;

/// The largest request body any route reads: forms and server-function calls are a few KiB at
/// most (a 40-line order is about 6 KiB), so 64 KiB leaves room and bounds what a client can make
/// the server hold.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub struct SecurityConfig {
    pub public_origin: Option<String>,
    pub secure: bool,
    /// Take the client's address from the last `X-Forwarded-For` entry (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub sign_in_limit: PerAddress,
    pub shop_limit: PerAddress,
}

impl SecurityConfig {
    pub fn new(public_origin: Option<String>, secure: bool, trust_forwarded_for: bool) -> Self {
        SecurityConfig {
            public_origin,
            secure,
            trust_forwarded_for,
            sign_in_limit: PerAddress::new(crate::limits::SIGN_IN),
            shop_limit: PerAddress::new(crate::limits::SHOP),
        }
    }
}

/// The client's address: the last `X-Forwarded-For` entry when a trusted proxy sets it, else the
/// connection's peer; "unknown" when neither is there (requests made in-process).
fn client_of(cfg: &SecurityConfig, req: &Request) -> String {
    if cfg.trust_forwarded_for {
        let forwarded = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).last();
        if let Some(last) = forwarded.and_then(|v| v.rsplit(',').next()).map(str::trim).filter(|a| !a.is_empty()) {
            if let Ok(ip) = last.parse::<std::net::IpAddr>() {
                return ip.to_string();
            }
        }
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())
}

/// Notes the client's address on the request (`ClientAddr`), then applies the per-address limits:
/// sign-in ([`crate::limits::SIGN_IN`]) and, for callers who are not signed in, web-shop checkouts
/// ([`crate::limits::SHOP`]). Over the limit: 429 with
/// `Retry-After`, and nothing is done.
pub async fn client_limits(State(cfg): State<Arc<SecurityConfig>>, session: Session, mut req: Request, next: Next) -> Response {
    let client = client_of(&cfg, &req);
    req.extensions_mut().insert(ClientAddr(client.clone()));
    if req.method() == Method::POST {
        let limit = match req.uri().path() {
            "/api/login" => Some(&cfg.sign_in_limit),
            "/shop" => {
                let signed_in = session.get::<payments::service::access::SignedIn>(app::auth::ssr::USER_KEY).await.ok().flatten().is_some();
                (!signed_in).then_some(&cfg.shop_limit)
            }
            _ => None,
        };
        if let Some(Err(wait)) = limit.map(|l| l.take(&client, std::time::Instant::now())) {
            let secs = wait.as_secs().max(1);
            tracing::warn!(client = %client, path = %req.uri().path(), "per-address limit reached; refused");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string()), (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string())],
                format!("Too many attempts from your address. Try again in {secs} seconds."),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// True when `bytes` (a query string or a form, JSON or text body) carries a NUL character, raw
/// or escaped.
fn carries_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0)
        || bytes.windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
        || bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

/// Refuses a request whose query or body carries a NUL character (400): no field of Paystage takes
/// one, PostgreSQL cannot store one in text, and a NUL in a name or filter is never meant.
pub async fn refuse_nul(req: Request, next: Next) -> Response {
    let refuse = || (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Refused: the request contains a NUL character, which no field accepts.").into_response();
    if req.uri().query().is_some_and(|q| carries_nul(q.as_bytes())) {
        return refuse();
    }
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REQUEST_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "Refused: the request body is larger than 64 KiB.").into_response(),
    };
    if carries_nul(&bytes) {
        return refuse();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The largest error answer of a server function that is read to find its status.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Server functions answer a refused call with its error as JSON; leptos sends those as 500. This
/// gives each its status (`AppError::status`: 400 invalid input, 401, 403, 404, 409 refused or
/// to be confirmed), so 500 is left for what really failed on the server.
pub async fn api_error_status(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    if !is_api || res.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on the server.").into_response();
    };
    if let Ok(err) = serde_json::from_slice::<app::error::AppError>(&bytes) {
        parts.status = err.status();
    }
    Response::from_parts(parts, Body::from(bytes))
}
/// The origin a request's `Origin` must equal: the configured public origin, else the Host header.
/// The origin browsers reach this server at: the configured public origin, else from `Host`.
pub fn expected_origin(cfg: &SecurityConfig, req: &Request) -> Option<String> {
    if let Some(o) = &cfg.public_origin {
        return Some(o.clone());
    }
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    let scheme = if cfg.secure { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

/// Refuses POST/PUT/PATCH/DELETE whose `Origin` (or, without one, `Sec-Fetch-Site`) shows another site.
pub async fn same_origin(State(cfg): State<Arc<SecurityConfig>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let refused = match origin {
        Some(o) => Some(o.trim_end_matches('/').to_string()) != expected_origin(&cfg, &req),
        None => req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| s == "cross-site" || s == "same-site"),
    };
    if refused {
        tracing::warn!(origin = ?origin, path = %req.uri().path(), "refused a cross-origin request");
        return (StatusCode::FORBIDDEN, "Refused: this request came from another site.").into_response();
    }
    next.run(req).await
}

/// Deny by default (issue #40): public paths and server functions (which check their roles
/// themselves) pass; a page is sent only to a signed-in user with one of its roles, whatever the
/// method (GET, HEAD, POST, ...); any other path is refused as not found. Anonymous page requests
/// are sent to sign in (GET, HEAD) or refused with 401.
pub async fn page_guard(State(services): State<Services>, session: Session, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let page = match access(&path) {
        Access::Public | Access::ServerFunction => return next.run(req).await,
        Access::Unknown => return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Not found.").into_response(),
        Access::Page(page) => page,
    };
    let user = match app::auth::ssr::session_user(&session, &services).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "the session's user could not be loaded");
            return (StatusCode::SERVICE_UNAVAILABLE, "The server cannot check your session right now; try again.").into_response();
        }
    };
    match user {
        None if matches!(*req.method(), Method::GET | Method::HEAD) => {
            let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let next = target.replace('%', "%25").replace('&', "%26").replace('?', "%3F").replace('#', "%23");
            Redirect::to(&format!("/login?next={next}")).into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "Sign in first.").into_response(),
        Some(u) if !u.has_any(page.roles) => forbidden_page(page.title),
        Some(_) => next.run(req).await,
    }
}

fn forbidden_page(title: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No access · Paystage</title>\
         <link rel=\"stylesheet\" href=\"/pkg/paystage.css\"></head><body><div class=\"login-wrap\"><div class=\"login-card\">\
         <div class=\"brand\"><span class=\"brand-mark\">P</span>Paystage</div><h1>No access</h1>\
         <p>Your roles do not include access to <strong>{title}</strong>. Ask an administrator if you need it.</p>\
         <p><a href=\"/\">Back to the overview</a></p></div></div></body></html>"
    );
    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// How long browsers keep to HTTPS after seeing `Strict-Transport-Security` (one year).
const HSTS: &str = "max-age=31536000";

/// Headers for every response: no framing, no MIME sniffing, referrers only to this site, a
/// Content-Security-Policy (pages set their own with the nonce of their hydration script; every
/// other response gets [`app::csp`] without one); behind TLS (`PAYSTAGE_SECURE_COOKIES`), HTTPS
/// only from then on (issue #40).
pub async fn headers(State(cfg): State<Arc<SecurityConfig>>, req: Request<Body>, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if cfg.secure {
        h.insert("strict-transport-security", HeaderValue::from_static(HSTS));
    }
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(v) = HeaderValue::from_str(&app::csp(None)) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    res
}
