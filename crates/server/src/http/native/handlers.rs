//! Handler detail: one handler id with every instance the server knows.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::views::{ErrorBody, HandlerDoc, handler_entries};
use crate::http::{ApiError, AppState};

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(get_one))
}

/// A handler id and its instances: live status, protocol, methods, capacity, calls in flight,
/// counts, last seen.
#[utoipa::path(get, path = "/api/handlers/{handler_id}", tag = "handlers",
    params(("handler_id" = String, Path)),
    responses((status = 200, body = HandlerDoc), (status = 404, body = ErrorBody)))]
async fn get_one(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    handler_entries(&s)
        .await?
        .into_iter()
        .find(|h| h["id"] == id.as_str())
        .map(|h| axum::Json(h).into_response())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no handler '{id}' has registered with this server; GET /api/handlers lists them"
            ))
        })
}
