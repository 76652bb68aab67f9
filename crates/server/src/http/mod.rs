//! The HTTP API (docs/API.md). Every error is JSON; request bodies are JSON of bounded size.
//!
//! Module map:
//! - `dashboard`: the web dashboard (`GET /` and the pages it links), HTML over the engine.
//! - `compat`: the original's routes and shapes (../shared/COMPAT.md §1), so existing scripts work
//!   unchanged.
//! - `native`: schedules, runs, handlers, trigger preview; OpenAPI document and Swagger UI.
//! - `events`: server-sent events and readiness.
//! - `metrics`: `GET /metrics` in the Prometheus text format, and the process's recorder.
//! - `views`: the JSON shapes of schedules, runs and handlers, shared by both APIs.
//! - `input`: bodies and query strings, with errors that name the field.
//! - `hygiene`: Host check, cross-origin refusal; `error`: the error body.

mod compat;
mod dashboard;
mod error;
mod events;
mod hygiene;
mod input;
pub(crate) mod metrics;
mod native;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use schedulezero_engine::Engine;

pub(crate) use error::ApiError;
pub(crate) use hygiene::Guard;

/// Largest request body accepted.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What request handlers share.
pub(crate) struct AppState {
    pub engine: Arc<Engine>,
    pub deployment: String,
    pub instance_name: String,
    pub description: String,
    pub admin_contact: String,
    /// Cancelled when the server stops: long-lived responses (event streams) end with it.
    pub stopping: tokio_util::sync::CancellationToken,
}

pub(crate) fn router(state: Arc<AppState>, guard: hygiene::Guard) -> Router {
    compat::routes()
        .merge(native::routes())
        .merge(dashboard::routes())
        .merge(events::routes())
        .merge(metrics::routes())
        .fallback(|| async { ApiError::not_found("no such route; see GET / for what this server offers") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(Arc::new(guard), hygiene::check))
        .with_state(state)
}
