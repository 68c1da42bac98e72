//! `GET /journals.csv`: the Journals page's filter as CSV, one row per journal line (R-LED-1); and
//! `GET /reconciliation.csv`, the reconciliation's breaks (R-LED-2).
//! Guarded like a page (Finance; see `app::nav::DETAIL_PAGES`); a bad filter is a 400 with the
//! message the page would show.
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use payments::domain::payment_views::JournalFilter;
use payments::service::Services;

pub async fn export(State(services): State<Services>, Query(filter): Query<JournalFilter>) -> Response {
    match payments::service::journals::csv(&services.db, &filter).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"journals.csv\""),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(payments::error::ServiceError::Validation(errors)) => {
            let text = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join(" ");
            (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Err(e) => {
            tracing::error!("journal export failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "The journals could not be exported.").into_response()
        }
    }
}

/// `GET /reconciliation.csv`: the Reconciliation page's breaks as CSV (Finance, like the page).
pub async fn reconciliation(State(services): State<Services>) -> Response {
    match payments::service::reconciliation::report(&services).await {
        Ok(report) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"reconciliation-breaks.csv\""),
                (header::CACHE_CONTROL, "no-store"),
            ],
            payments::service::reconciliation::csv(&report),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("reconciliation export failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "The reconciliation could not be exported.").into_response()
        }
    }
}
