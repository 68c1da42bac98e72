//! Sign-in, sign-out and the current user, plus the role check every server function starts with.
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::access::CurrentUser;

#[cfg(feature = "ssr")]
pub mod ssr {
    use crate::error::AppError;
    use crate::state::AppState;
    use leptos::prelude::*;
    use payments::domain::access::{CurrentUser, Role};
    use payments::service::Services;
    use tower_sessions::Session;

    /// Session key holding the sign-in (`payments::service::access::SignedIn`): who, since when,
    /// until when at most.
    pub const USER_KEY: &str = "signed_in";

    pub fn services() -> Result<Services, AppError> {
        use_context::<AppState>()
            .map(|s| s.services)
            .ok_or_else(|| AppError::Server("application state is missing".into()))
    }

    pub async fn session() -> Result<Session, AppError> {
        leptos_axum::extract::<Session>().await.map_err(|e| AppError::Server(format!("no session: {e}")))
    }

    /// The user of `session`, if its sign-in still holds (`access::session_user`): the one check
    /// the page guard and every server function share. A session whose sign-in is over is
    /// emptied, so its cookie is dropped.
    pub async fn session_user(session: &Session, services: &Services) -> Result<Option<CurrentUser>, AppError> {
        let signed_in: Option<payments::service::access::SignedIn> = session.get(USER_KEY).await.ok().flatten();
        let Some(signed_in) = signed_in else { return Ok(None) };
        let user = payments::service::access::session_user(&services.db, signed_in, services.now()).await?;
        if user.is_none() {
            session.flush().await.map_err(|e| AppError::Server(e.to_string()))?;
        }
        Ok(user)
    }

    pub async fn current_user() -> Result<Option<CurrentUser>, AppError> {
        session_user(&session().await?, &services()?).await
    }

    /// The caller's address as the server determined it (`state::ClientAddr`).
    pub fn client_addr() -> String {
        use_context::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::state::ClientAddr>().cloned())
            .map_or_else(|| "unknown".to_string(), |c| c.0)
    }

    /// Sets the HTTP status of a refused server-function call. A plain form post (before
    /// hydration) keeps its redirect back to the page instead, which then shows the message.
    fn set_status(status: http::StatusCode) {
        let plain_form = use_context::<http::request::Parts>().is_some_and(|p| {
            p.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
        });
        if !plain_form {
            if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
                res.set_status(status);
            }
        }
    }

    /// The signed-in user, if they hold one of `roles` (empty: any signed-in user). Otherwise
    /// 401 (not signed in) or 403 (signed in without the role), and nothing else happens.
    pub async fn require(roles: &[Role]) -> Result<CurrentUser, AppError> {
        match current_user().await? {
            None => {
                set_status(http::StatusCode::UNAUTHORIZED);
                Err(AppError::Unauthorized)
            }
            Some(u) if !u.has_any(roles) => {
                set_status(http::StatusCode::FORBIDDEN);
                Err(AppError::Forbidden)
            }
            Some(u) => Ok(u),
        }
    }

    /// Only a local path is followed after sign-in, never another site (`nav::local_path`).
    pub fn safe_next(next: Option<&str>) -> String {
        match next.and_then(crate::nav::local_path) {
            Some(n) if n != "/login" => n.to_string(),
            _ => "/".to_string(),
        }
    }
}

#[server(endpoint = "current_user")]
pub async fn get_current_user() -> Result<Option<CurrentUser>, AppError> {
    ssr::current_user().await
}

#[server(endpoint = "login")]
pub async fn login(username: String, password: String, next: Option<String>) -> Result<(), AppError> {
    use payments::service::access::{sign_in, SignInError, SignedIn};
    let state = use_context::<crate::state::AppState>().ok_or_else(|| AppError::Server("application state is missing".into()))?;
    let services = state.services;
    match sign_in(&services, &username, &password, &ssr::client_addr()).await {
        Ok(user) => {
            let session = ssr::session().await?;
            session.cycle_id().await.map_err(|e| AppError::Server(e.to_string()))?;
            let signed_in = SignedIn::new(user.id, services.now(), state.session_max);
            session.insert(ssr::USER_KEY, signed_in).await.map_err(|e| AppError::Server(e.to_string()))?;
            leptos_axum::redirect(&ssr::safe_next(next.as_deref()));
            Ok(())
        }
        Err(e @ SignInError::InvalidCredentials) => {
            Err(AppError::Invalid { message: e.to_string(), fields: Vec::new(), scope: None })
        }
        Err(e @ (SignInError::Locked { .. } | SignInError::Disabled | SignInError::Busy)) => Err(AppError::refused(e.code(), e.to_string())),
        Err(SignInError::Database(e)) => Err(e.into()),
    }
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    let session = ssr::session().await?;
    if let Some(user) = ssr::current_user().await? {
        let s = ssr::services()?;
        payments::service::audit::record(&s.db, s.now(), &user.username, "sign_out", &user.username, None, None).await?;
    }
    session.flush().await.map_err(|e| AppError::Server(e.to_string()))?;
    leptos_axum::redirect("/login");
    Ok(())
}
