//! Errors of the services, with stable codes and messages a finance user understands.
use crate::domain::features::FeatureToggleError;
use crate::domain::parameters::FieldError;
use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// One or more fields of a submission are invalid; nothing was changed.
    #[error("{}", summary(.0))]
    Validation(Vec<FieldError>),
    #[error(transparent)]
    Feature(#[from] FeatureToggleError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The user must confirm this (consent, acknowledgement) before the request can go ahead;
    /// nothing was written.
    #[error("{}: {}", .0.title(), .0.text())]
    ConfirmationRequired(crate::domain::tokens::Confirmation),
    #[error("The database could not complete the request: {0}")]
    Database(#[from] DbErr),
    /// Another runner (recovery, another server) recorded this processor request's outcome while
    /// this one waited for the processor: this answer was not applied, and nothing was changed by it.
    #[error("The outcome of processor request {0} was already recorded by another runner; nothing was changed twice. Reload to see where it stands.")]
    AlreadyRecorded(String),
    /// A stored value Paystage cannot read (an unknown currency code, a tax rate that is not a
    /// number): nothing was done with it, and it needs an administrator.
    #[error("Stored data cannot be read: {0}")]
    StoredData(String),
}

impl From<crate::domain::money::UnknownCurrency> for ServiceError {
    fn from(e: crate::domain::money::UnknownCurrency) -> Self {
        ServiceError::StoredData(e.to_string())
    }
}

fn summary(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.message.clone(),
        many => format!("{} fields are not valid; nothing was saved.", many.len()),
    }
}

impl ServiceError {
    /// Stable code, safe to match on in clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Validation(_) => "PS_VALIDATION",
            ServiceError::Feature(FeatureToggleError::MissingPrerequisites { .. }) => "PS_FEATURE_PREREQUISITES",
            ServiceError::Feature(FeatureToggleError::RequiredBy { .. }) => "PS_FEATURE_REQUIRED_BY",
            ServiceError::NotFound(_) => "PS_NOT_FOUND",
            ServiceError::Conflict(_) => "PS_CONFLICT",
            ServiceError::ConfirmationRequired(_) => "PS_CONFIRMATION_REQUIRED",
            ServiceError::Database(_) => "PS_DATABASE",
            ServiceError::StoredData(_) => "PS_STORED_DATA",
            ServiceError::AlreadyRecorded(_) => "PS_ALREADY_RECORDED",
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Validation(vec![FieldError::new(field, message)])
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
