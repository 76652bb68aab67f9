//! The native API (docs/API.md): schedules with every option, runs with their attempts, handler
//! detail, trigger preview; described by a generated OpenAPI document (`GET /api/openapi.json`)
//! and browsable offline (`GET /api/docs`, Swagger UI served from the binary).

mod handlers;
mod runs;
pub(crate) mod schedules;
mod triggers;

use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ScheduleZero",
        description = "The native HTTP API of ScheduleZero. The original's routes (POST /api/schedule, \
                       POST /api/run_now, GET /api/executions, …) are served too; see COMPAT.md. Every \
                       error is {\"error\": {\"code\", \"message\"}} naming the field."
    ),
    tags(
        (name = "schedules", description = "When and what to run"),
        (name = "runs", description = "Fire slots and their outcomes, with every attempt"),
        (name = "handlers", description = "Worker processes and their instances"),
        (name = "triggers", description = "Trigger tools"),
    )
)]
struct ApiDoc;

/// The native routes, the OpenAPI document and the Swagger UI.
pub(super) fn routes() -> Router<Arc<AppState>> {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(schedules::routes())
        .merge(runs::routes())
        .merge(handlers::routes())
        .merge(triggers::routes())
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    router.merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", doc))
}
