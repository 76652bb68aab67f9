//! The original ScheduleZero's HTTP routes, same paths and field names, with its bugs fixed
//! (../shared/COMPAT.md §1): 409 on a duplicate `job_id`, 404 on an unknown id, `run_now` with one
//! attempt and 502/503/504, 4xx for every client mistake.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use schedulezero_core::run::{AttemptOutcome, RunState};
use schedulezero_core::schedule::Target;
use schedulezero_core::trigger::Trigger;
use schedulezero_engine::ScheduleSpec;
use schedulezero_store::RunFilter;
use serde_json::{Map, Value, json};

use super::input::{Body, QueryParams, json_object, limit_of, query_of};
use super::views::{handler_entries, schedule_names};
use super::{ApiError, AppState};

type St = State<Arc<AppState>>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/config", get(config))
        .route("/api/handlers", get(handlers))
        .route("/api/schedule", post(schedule))
        .route("/api/run_now", post(run_now))
        .route("/api/executions", get(executions))
        .route("/api/executions/errors", get(execution_errors))
        .route("/api/executions/stats", get(execution_stats))
        .route("/api/executions/clear", post(clear_executions))
}

/// Run states that are executions in the original's sense (missed, skipped and not yet started
/// runs are in the native run history, not here).
const EXECUTED: [RunState; 7] = [
    RunState::Running,
    RunState::Retrying,
    RunState::Succeeded,
    RunState::Failed,
    RunState::TimedOut,
    RunState::Cancelled,
    RunState::Interrupted,
];
const ERRORS: [RunState; 4] =
    [RunState::Failed, RunState::TimedOut, RunState::Cancelled, RunState::Interrupted];

/// `GET /api/executions?limit&handler_id&job_id&status`, newest first.
async fn executions(State(s): St, q: QueryParams) -> Result<Response, ApiError> {
    let q = query_of(q, &["limit", "handler_id", "job_id", "status"])?;
    let limit = limit_of(&q, 100, 1000)?;
    let states: Vec<RunState> = match q.get("status").map(String::as_str) {
        None | Some("") => EXECUTED.to_vec(),
        Some("success") => vec![RunState::Succeeded],
        Some("error") => ERRORS.to_vec(),
        Some("running") => vec![RunState::Running],
        Some("retry") => vec![RunState::Retrying],
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "'status' must be success, error, running or retry, got '{other}'"
            )));
        }
    };
    let filter =
        RunFilter { states, limit, handler_id: q.get("handler_id").cloned(), ..RunFilter::default() };
    let records = match q.get("job_id") {
        None => records(&s, &filter).await?,
        Some(job) => {
            // Every schedule that has had this name: deleted and fired ones keep their history.
            let mut all = Vec::new();
            for id in s.engine.store().schedules_named(job).await? {
                all.extend(records(&s, &RunFilter { schedule_id: Some(id), ..filter.clone() }).await?);
            }
            all.sort_by(|a, b| b["scheduled_for"].as_str().cmp(&a["scheduled_for"].as_str()));
            all.truncate(limit as usize);
            all
        }
    };
    Ok(axum::Json(json!({"count": records.len(), "limit": limit, "records": records})).into_response())
}

/// `GET /api/executions/errors?limit`.
async fn execution_errors(State(s): St, q: QueryParams) -> Result<Response, ApiError> {
    let q = query_of(q, &["limit"])?;
    let limit = limit_of(&q, 50, 500)?;
    let filter = RunFilter { states: ERRORS.to_vec(), limit, ..RunFilter::default() };
    let errors = records(&s, &filter).await?;
    Ok(axum::Json(json!({"count": errors.len(), "limit": limit, "errors": errors})).into_response())
}

/// `GET /api/executions/stats`, summed by the store.
async fn execution_stats(State(s): St) -> Result<Response, ApiError> {
    let counts = s.engine.store().run_counts().await?;
    let (mut total, mut success, mut error, mut running, mut finished, mut duration) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0i64);
    let mut by_handler: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for c in counts.iter().filter(|c| EXECUTED.contains(&c.state)) {
        total += c.runs;
        let h = by_handler.entry(c.handler_id.clone()).or_default();
        h.0 += c.runs;
        match c.state.compat_status() {
            "success" => {
                success += c.runs;
                h.1 += c.runs;
            }
            "error" => {
                error += c.runs;
                h.2 += c.runs;
            }
            _ => running += c.runs,
        }
        if c.state.is_terminal() {
            finished += c.runs;
            duration += c.total_duration_ms;
        }
    }
    let rate = if success + error > 0 { 100.0 * success as f64 / (success + error) as f64 } else { 0.0 };
    let avg = if finished > 0 { duration as f64 / finished as f64 } else { 0.0 };
    let by_handler: Map<String, Value> = by_handler
        .into_iter()
        .map(|(h, (t, ok, err))| (h, json!({"total": t, "success": ok, "error": err})))
        .collect();
    Ok(axum::Json(json!({
        "total_executions": total,
        "success_count": success,
        "error_count": error,
        "running_count": running,
        "success_rate": (rate * 100.0).round() / 100.0,
        "avg_duration_ms": (avg * 10.0).round() / 10.0,
        "by_handler": by_handler,
    }))
    .into_response())
}

/// `POST /api/executions/clear`: every finished run's record (runs still active stay).
async fn clear_executions(State(s): St) -> Result<Response, ApiError> {
    let forever = s.engine.clock().now() + chrono::TimeDelta::days(36_500);
    let removed = s.engine.store().purge_history(forever).await?;
    Ok(axum::Json(json!({"status": "success", "message": "Execution history cleared", "removed": removed}))
        .into_response())
}

/// Execution records in the original's shape, plus our run id, slot time and lateness.
async fn records(s: &AppState, filter: &RunFilter) -> Result<Vec<Value>, ApiError> {
    let runs = s.engine.store().list_runs(filter).await?;
    let names = schedule_names(s, &runs).await?;
    Ok(runs
        .iter()
        .map(|r| {
            let duration = match (r.started_at, r.finished_at) {
                (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
                _ => None,
            };
            let mut summary = r.target.params.to_string();
            if summary.len() > 200 {
                let cut = (0..=200).rev().find(|i| summary.is_char_boundary(*i)).unwrap_or(0);
                summary.truncate(cut);
                summary.push('…');
            }
            json!({
                "job_id": r.schedule_id.and_then(|id| names.get(&id).cloned()).unwrap_or_else(|| r.id.to_string()),
                "run_id": r.id,
                "schedule_id": r.schedule_id,
                "handler_id": r.target.handler_id,
                "method_name": r.target.method,
                "scheduled_for": r.scheduled_for.to_rfc3339(),
                "started_at": r.started_at.map(|t| t.to_rfc3339()),
                "completed_at": r.finished_at.map(|t| t.to_rfc3339()),
                "duration_ms": duration,
                "lateness_ms": r.started_at.map(|t| (t - r.scheduled_for).num_milliseconds()),
                "status": r.state.compat_status(),
                "state": r.state.as_str(),
                "result": r.result,
                "error": r.error,
                "attempt_number": r.attempt,
                "max_attempts": r.max_attempts,
                "params_summary": summary,
            })
        })
        .collect())
}

async fn health(State(s): St) -> Response {
    let connected = connected_instances(&s);
    axum::Json(json!({
        "status": "ok",
        "service": "ScheduleZero",
        "version": env!("CARGO_PKG_VERSION"),
        "deployment": s.deployment,
        "handlers_connected": connected,
    }))
    .into_response()
}

async fn config(State(s): St) -> Response {
    axum::Json(json!({
        "instance_name": s.instance_name,
        "description": s.description,
        "admin_contact": s.admin_contact,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// One entry per handler id, with its instances.
async fn handlers(State(s): St) -> Result<Response, ApiError> {
    let handlers = handler_entries(&s).await?;
    Ok(axum::Json(json!({"handlers": handlers, "count": handlers.len()})).into_response())
}

fn connected_instances(s: &AppState) -> usize {
    s.engine.registry().instances().iter().filter(|i| i.is_connected()).count()
}

/// `POST /api/schedule`.
async fn schedule(State(s): St, body: Body) -> Result<Response, ApiError> {
    let body = json_object(body)?;
    let target = target_of(&body)?;
    check_handler(&s, &target).await?;
    let trigger_json = body.get("trigger").ok_or_else(|| ApiError::bad_request("missing field 'trigger'"))?;
    let trigger = Trigger::parse(trigger_json, &s.engine.parse_context())
        .map_err(|e| ApiError::bad_request(format!("trigger: {e}")))?;
    let mut spec = ScheduleSpec::new(trigger, target);
    match body.get("job_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if !id.trim().is_empty() => spec = spec.name(id.clone()),
        Some(_) => return Err(ApiError::bad_request("'job_id' must be a non-empty string")),
    }
    let created = s.engine.add_schedule(spec).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"status": "success", "job_id": created.name})))
        .into_response())
}

/// `POST /api/run_now`: one attempt, answered only after the handler replied.
async fn run_now(State(s): St, body: Body) -> Result<Response, ApiError> {
    let body = json_object(body)?;
    let target = target_of(&body)?;
    check_handler(&s, &target).await?;
    let timeout = match body.get("timeout") {
        None | Some(Value::Null) => 30.0,
        Some(v) => v.as_f64().filter(|t| *t > 0.0 && *t <= 3600.0).ok_or_else(|| {
            ApiError::bad_request("'timeout' must be a number of seconds between 0 and 3600")
        })?,
    };
    let handler_id = target.handler_id.clone();
    let report = match s.engine.run_now(target, Duration::from_secs_f64(timeout)).await {
        Ok(report) => report,
        Err(schedulezero_engine::EngineError::Timeout(_)) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("handler '{handler_id}' did not reply within {timeout} s"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    match report.outcome {
        AttemptOutcome::Succeeded => Ok(axum::Json(json!({
            "status": "success",
            "result": report.result.unwrap_or(Value::Null),
            "message": format!("Job executed on handler '{handler_id}'"),
            "run_id": report.run_id,
        }))
        .into_response()),
        AttemptOutcome::Failed => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("handler '{handler_id}' reported a failure: {}", report.error.unwrap_or_default()),
        )),
        AttemptOutcome::TimedOut => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("handler '{handler_id}' did not reply within {timeout} s"),
        )),
        other => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "the call to handler '{handler_id}' ended {}: {}",
                other.as_str(),
                report.error.unwrap_or_default()
            ),
        )),
    }
}

fn target_of(body: &Map<String, Value>) -> Result<Target, ApiError> {
    let text = |k: &str| match body.get(k) {
        Some(Value::String(v)) if !v.trim().is_empty() => Ok(v.clone()),
        Some(_) => Err(ApiError::bad_request(format!("'{k}' must be a non-empty string"))),
        None => Err(ApiError::bad_request(format!("missing field '{k}'"))),
    };
    let params = match body.get("job_params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(ApiError::bad_request("'job_params' must be a JSON object")),
    };
    Ok(Target { handler_id: text("handler_id")?, method: text("job_method")?, params })
}

/// 404 for a handler this server has never seen; 400 for a method none of its instances offers.
async fn check_handler(s: &AppState, target: &Target) -> Result<(), ApiError> {
    let live: Vec<_> =
        s.engine.registry().instances().into_iter().filter(|i| i.handler_id == target.handler_id).collect();
    let mut methods: Vec<String> = live.iter().flat_map(|i| i.methods.iter().cloned()).collect();
    if live.is_empty() {
        let known = s.engine.known_instances().await?;
        methods
            .extend(known.into_iter().filter(|r| r.handler_id == target.handler_id).flat_map(|r| r.methods));
        if methods.is_empty() {
            return Err(ApiError::not_found(format!(
                "no handler '{}' has ever registered with this server; GET /api/handlers lists them",
                target.handler_id
            )));
        }
    }
    if !methods.contains(&target.method) {
        methods.sort();
        methods.dedup();
        return Err(ApiError::bad_request(format!(
            "handler '{}' does not offer method '{}'; it offers: {}",
            target.handler_id,
            target.method,
            methods.join(", ")
        )));
    }
    Ok(())
}
