//! The sandbox's administration of the faults it injects into its own answers (issue #42): error
//! before the effect, timeout after it, latency, and a capture or refund received then reported
//! failed. A JSON API under `/admin/faults`, authenticated like the Checkout API (`X-API-Key`);
//! Paystage's `paystage faults` and its Processor simulator page use it
//! ([`super::client::SandboxAdmin`]). Paystage's own journal posting is not the processor's to
//! fail: the sandbox neither lists, adds nor clears faults at that point.
//!
//! - `GET /admin/faults`: the faults, oldest first (`FaultView`s);
//! - `POST /admin/faults` with `{"point", "kind", "rate", "times", "latency_ms"}` (strings, as a
//!   form gives them): 201 `{"id"}`, or 422 `{"errorCode": "validation", "fields": [{"field",
//!   "message"}]}` with nothing added;
//! - `DELETE /admin/faults/{id}`: 204, or 404 when there is no such fault;
//! - `DELETE /admin/faults`: 200 `{"removed"}`.
use super::{error, Sandbox};
use crate::connector::faults::{self, JOURNAL};
use crate::connector::simulator::entity::sim_fault;
use crate::error::ServiceError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A fault to add, as the administration API takes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FaultRequest {
    pub point: String,
    pub kind: String,
    pub rate: String,
    #[serde(default)]
    pub times: String,
    #[serde(default)]
    pub latency_ms: String,
}

/// One refused field of a [`FaultRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

pub(super) fn routes() -> Router<Sandbox> {
    Router::new().route("/admin/faults", get(list).post(add).delete(clear)).route("/admin/faults/{id}", delete(remove))
}

fn authorized(s: &Sandbox, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers.get(crate::connector::adyen::wire::API_KEY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if super::keys::same_secret(given, &s.inner.options.api_key) {
        Ok(())
    } else {
        let (status, body) = error(StatusCode::UNAUTHORIZED, "000", "HTTP Status Response - Unauthorized", "security");
        Err((status, Json(body)).into_response())
    }
}

fn storage(e: impl std::fmt::Display) -> Response {
    let (status, body) = error(StatusCode::SERVICE_UNAVAILABLE, "storage", format!("sandbox storage: {e}"), "internal");
    (status, Json(body)).into_response()
}

async fn list(State(s): State<Sandbox>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    match faults::list(&s.inner.store).await {
        Ok(all) => Json(all.into_iter().filter(|f| f.point != JOURNAL).collect::<Vec<_>>()).into_response(),
        Err(e) => storage(e),
    }
}

async fn add(State(s): State<Sandbox>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    let refused = |fields: Vec<FieldProblem>| {
        let mut body = json!({"status": 422, "errorCode": "validation", "errorType": "validation", "message": "The fault was not added."});
        body["fields"] = serde_json::to_value(fields).unwrap_or(Value::Null);
        (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
    };
    let Ok(ask) = serde_json::from_str::<FaultRequest>(&body) else {
        return refused(vec![FieldProblem { field: "point".into(), message: "Send a JSON object with point, kind, rate, times and latency_ms.".into() }]);
    };
    if ask.point == JOURNAL {
        return refused(vec![FieldProblem { field: "point".into(), message: "Journal posting is Paystage's own step, not the processor's: set that fault in Paystage.".into() }]);
    }
    match faults::add(&s.inner.store, s.inner.clock.now(), &ask.point, &ask.kind, &ask.rate, &ask.times, &ask.latency_ms).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(ServiceError::Validation(errors)) => refused(errors.into_iter().map(|e| FieldProblem { field: e.field, message: e.message }).collect()),
        Err(e) => storage(e),
    }
}

async fn remove(State(s): State<Sandbox>, headers: HeaderMap, Path(id): Path<i32>) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    let found = sim_fault::Entity::delete_many().filter(sim_fault::Column::Id.eq(id)).filter(sim_fault::Column::Point.ne(JOURNAL)).exec(&s.inner.store).await;
    match found {
        Ok(r) if r.rows_affected > 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => {
            let (status, body) = error(StatusCode::NOT_FOUND, "not_found", format!("There is no fault {id}."), "validation");
            (status, Json(body)).into_response()
        }
        Err(e) => storage(e),
    }
}

async fn clear(State(s): State<Sandbox>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    match sim_fault::Entity::delete_many().filter(sim_fault::Column::Point.ne(JOURNAL)).exec(&s.inner.store).await {
        Ok(r) => Json(json!({"removed": r.rows_affected})).into_response(),
        Err(e) => storage(e),
    }
}
