//! Request guards that apply to every route: refuse state-changing requests from a foreign origin,
//! send pages only to users whose roles allow them, and set protective response headers.
use app::nav::{access, Access};
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

#[derive(Clone, Debug)]
pub struct SecurityConfig {
    pub public_origin: Option<String>,
    pub secure: bool,
}

/// The origin a request's `Origin` must equal: the configured public origin, else the Host header.
fn expected_origin(cfg: &SecurityConfig, req: &Request) -> Option<String> {
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
    let user_id: Option<i32> = session.get(app::auth::ssr::USER_KEY).await.ok().flatten();
    let user = match user_id {
        Some(id) => payments::service::access::load_user(&services.db, id).await.ok().flatten(),
        None => None,
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

/// Headers for every response: no framing, no MIME sniffing, referrers only to this site; behind
/// TLS (`PAYSTAGE_SECURE_COOKIES`), HTTPS only from then on (issue #40).
pub async fn headers(State(cfg): State<Arc<SecurityConfig>>, req: Request<Body>, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if cfg.secure {
        h.insert("strict-transport-security", HeaderValue::from_static(HSTS));
    }
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    res
}
