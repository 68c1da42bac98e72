//! The error every server function returns. It survives the trip to the browser (JSON), and for
//! forms submitted before hydration it travels in the redirect URL, so pages show the same message
//! either way.
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use payments::domain::parameters::FieldError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please sign in to continue.")]
    Unauthorized,
    #[error("You do not have access to this. Ask an administrator for the role it needs.")]
    Forbidden,
    /// Invalid input; nothing changed. `scope` tells which of several forms on a page it belongs to.
    #[error("{message}")]
    Invalid { message: String, fields: Vec<FieldError>, scope: Option<String> },
    /// A business rule refused the request; nothing changed. `code` is the stable `PS_…` code of
    /// the refusal (`payments::error`), for clients that act on it.
    #[error("{message}")]
    Refused { code: String, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The user must confirm `text` (consent, acknowledgement) and submit again with
    /// `confirmed=code`; nothing changed.
    #[error("{title}: {text}")]
    ConfirmationRequired { code: String, title: String, text: String },
    #[error("Something went wrong on the server: {0}")]
    Server(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(m) | ServerFnErrorErr::Deserialization(m) => AppError::Invalid {
                message: format!("The form could not be read: {m}"),
                fields: Vec::new(),
                scope: None,
            },
            other => AppError::Server(other.to_string()),
        }
    }
}

impl AppError {
    /// A refusal this app decides itself, with its stable code.
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        AppError::Refused { code: code.into(), message: message.into() }
    }

    /// The HTTP status a call refused with this error answers with: 500 only for what failed on
    /// the server.
    #[cfg(feature = "ssr")]
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            AppError::Unauthorized => S::UNAUTHORIZED,
            AppError::Forbidden => S::FORBIDDEN,
            AppError::Invalid { .. } => S::BAD_REQUEST,
            AppError::Refused { .. } | AppError::ConfirmationRequired { .. } => S::CONFLICT,
            AppError::NotFound(_) => S::NOT_FOUND,
            AppError::Server(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message for `field`, if this error is about it (and about the form `scope`).
    pub fn field_message(&self, field: &str, scope: Option<&str>) -> Option<String> {
        match self {
            AppError::Invalid { fields, scope: s, .. } if s.as_deref() == scope => {
                fields.iter().find(|f| f.field == field).map(|f| f.message.clone())
            }
            _ => None,
        }
    }

    pub fn is_for_scope(&self, scope: Option<&str>) -> bool {
        match self {
            AppError::Invalid { scope: s, .. } => s.as_deref() == scope,
            _ => true,
        }
    }

    pub fn with_scope(self, scope: impl Into<String>) -> Self {
        match self {
            AppError::Invalid { message, fields, .. } => AppError::Invalid { message, fields, scope: Some(scope.into()) },
            other => other,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<payments::error::ServiceError> for AppError {
    fn from(e: payments::error::ServiceError) -> Self {
        use payments::error::ServiceError as S;
        match e {
            S::Validation(fields) => {
                let message = match fields.as_slice() {
                    [one] => one.message.clone(),
                    _ => "Some fields are not valid; nothing was saved.".to_string(),
                };
                AppError::Invalid { message, fields, scope: None }
            }
            e if e.is_refusal() => AppError::Refused { code: e.code().into(), message: e.to_string() },
            S::NotFound(m) => AppError::NotFound(m),
            S::ConfirmationRequired(c) => AppError::ConfirmationRequired { code: c.code().into(), title: c.title().into(), text: c.text().into() },
            S::Database(db) => {
                tracing::error!(error = %db, "database error");
                AppError::Server("the database could not complete the request; nothing was changed".into())
            }
            S::StoredData(m) => {
                tracing::error!(error = %m, "stored data cannot be read");
                AppError::Server(format!("stored data cannot be read ({m}); nothing was changed, and an administrator must look at it"))
            }
            S::Internal(m) => {
                tracing::error!(error = %m, "internal step failed");
                AppError::Server(format!("an internal step failed ({m}); what was committed stays, and recovery finishes what was started"))
            }
            e => AppError::Server(e.to_string()),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<payments::db_err::DbErr> for AppError {
    fn from(e: payments::db_err::DbErr) -> Self {
        payments::error::ServiceError::Database(e).into()
    }
}
