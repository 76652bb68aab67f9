//! Runs: list by schedule, handler, state and time window (cursor pages, newest slot first), get
//! one with its attempts, cancel one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schedulezero_core::run::{RunId, RunState};
use schedulezero_store::RunFilter;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::schedules::resolve;
use crate::http::input::{self, QueryParams};
use crate::http::views::{AttemptView, ErrorBody, RunView, schedule_names};
use crate::http::{ApiError, AppState};

type St = State<Arc<AppState>>;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(get_one)).routes(routes!(cancel))
}

/// A page of runs.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct RunPage {
    runs: Vec<RunView>,
    count: usize,
    /// Pass as `before` for the next (older) page; null on the last one.
    next_cursor: Option<uuid::Uuid>,
}

/// A run with every ended attempt.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct RunDetail {
    #[serde(flatten)]
    run: RunView,
    attempts: Vec<AttemptView>,
}

#[allow(dead_code)] // documents the query; parsed by hand for errors that name the parameter
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// A schedule's name or `schedule_id`.
    schedule: Option<String>,
    handler_id: Option<String>,
    /// One state or several, comma-separated.
    state: Option<String>,
    /// Slots at or after this time (RFC 3339 or Unix seconds).
    from: Option<String>,
    /// Slots before this time (RFC 3339 or Unix seconds).
    to: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    before: Option<String>,
}

const LIST_KEYS: &[&str] = &["schedule", "handler_id", "state", "from", "to", "limit", "before"];

/// List runs, newest slot first.
#[utoipa::path(get, path = "/api/runs", tag = "runs", params(ListQuery),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(State(s): St, q: QueryParams) -> Result<Response, ApiError> {
    let q = input::query_of(q, LIST_KEYS)?;
    let limit = input::limit_of(&q, 100, 1000)?;
    let schedule_id = match q.get("schedule").filter(|v| !v.is_empty()) {
        Some(reference) => Some(match resolve(&s, reference).await {
            Ok(sc) => sc.id,
            // A deleted schedule's history is still there, by its id or its name.
            Err(not_found) => match uuid::Uuid::parse_str(reference) {
                Ok(id) => id,
                Err(_) => *s.engine.store().schedules_named(reference).await?.last().ok_or(not_found)?,
            },
        }),
        None => None,
    };
    let mut states = Vec::new();
    for name in q.get("state").map(|v| v.split(',')).into_iter().flatten() {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        states.push(RunState::parse(name).ok_or_else(|| {
            let all: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!("'state': unknown run state '{name}'; one of {}", all.join(", ")))
        })?);
    }
    let time = |key: &str| q.get(key).filter(|v| !v.is_empty()).map(|v| input::time_of(key, v)).transpose();
    let filter = RunFilter {
        schedule_id,
        handler_id: q.get("handler_id").filter(|v| !v.is_empty()).cloned(),
        states,
        from: time("from")?,
        to: time("to")?,
        before: q.get("before").filter(|v| !v.is_empty()).map(|v| input::uuid_of("before", v)).transpose()?,
        limit: limit + 1,
    };
    let mut runs = s.engine.store().list_runs(&filter).await?;
    let next_cursor = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id)
    } else {
        None
    };
    let names = schedule_names(&s, &runs).await?;
    let views: Vec<RunView> =
        runs.iter().map(|r| RunView::of(r, r.schedule_id.and_then(|id| names.get(&id).cloned()))).collect();
    Ok(axum::Json(RunPage { count: views.len(), runs: views, next_cursor }).into_response())
}

async fn detail(s: &AppState, id: RunId) -> Result<RunDetail, ApiError> {
    let run = s
        .engine
        .store()
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id}; GET /api/runs lists them")))?;
    let attempts = s.engine.store().list_attempts(id).await?;
    let names = schedule_names(s, std::slice::from_ref(&run)).await?;
    let name = run.schedule_id.and_then(|sid| names.get(&sid).cloned());
    Ok(RunDetail { run: RunView::of(&run, name), attempts: attempts.iter().map(AttemptView::of).collect() })
}

/// Get a run with its attempts.
#[utoipa::path(get, path = "/api/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path)),
    responses((status = 200, body = RunDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = input::uuid_of("run_id", &id)?;
    Ok(axum::Json(detail(&s, id).await?).into_response())
}

/// Cancel a run that has not ended: one waiting is cancelled at once; one running is told to stop
/// (its handler gets a cancel) and ends `cancelled`. A cancelled run is never retried.
#[utoipa::path(post, path = "/api/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path)),
    responses(
        (status = 200, description = "The run after the cancel (`running` while its handler is being told)", body = RunDetail),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The run has already ended", body = ErrorBody),
    ))]
async fn cancel(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = input::uuid_of("run_id", &id)?;
    let before = detail(&s, id).await?;
    let state = RunState::parse(&before.run.state).unwrap_or(RunState::Pending);
    if state.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run {id} already ended {}; there is nothing to cancel", state.as_str()),
        ));
    }
    s.engine.cancel_run(id).await?;
    Ok(axum::Json(detail(&s, id).await?).into_response())
}
