//! Schedules: create with every option, list with filters and cursor pages, get, update, pause,
//! resume, run now, delete. `{schedule}` in a path is a name or a `schedule_id`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use schedulezero_core::policy::Policies;
use schedulezero_core::schedule::{Schedule, ScheduleState, Target};
use schedulezero_core::trigger::{Trigger, parse_value};
use schedulezero_engine::ScheduleSpec;
use schedulezero_store::ScheduleFilter;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::input::{self, Body, QueryParams};
use crate::http::views::{ErrorBody, RunView, ScheduleView};
use crate::http::{ApiError, AppState};

type St = State<Arc<AppState>>;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, update, remove))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(run_now))
}

/// What a schedule calls.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetBody {
    #[schema(example = "reports")]
    handler_id: String,
    #[schema(example = "nightly")]
    method: String,
    /// A JSON object (default `{}`).
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    params: Option<Value>,
}

/// A new schedule.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateSchedule {
    /// Unique among schedules that are not finished (default: the new `schedule_id`).
    #[schema(example = "nightly-report")]
    name: Option<String>,
    /// A trigger object (COMPAT.md §2 plus `expression`, `jitter`, `timezone`), or a string holding a
    /// crontab expression (seconds optional).
    #[schema(value_type = Object, example = json!({"type": "cron", "hour": "2", "minute": "0"}))]
    trigger: Value,
    /// The IANA zone of a trigger that names none (default: the server's).
    #[schema(example = "Europe/Paris")]
    timezone: Option<String>,
    target: TargetBody,
    /// Every key optional; absent keys take their defaults.
    #[schema(value_type = Option<crate::http::views::PoliciesDoc>)]
    policies: Option<Value>,
    /// Create it paused.
    #[serde(default)]
    paused: bool,
}

/// Changes to a schedule: each key given replaces the current value (`policies` keys are merged
/// into the current policies; a new trigger starts from now).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateSchedule {
    name: Option<String>,
    #[schema(value_type = Option<Object>)]
    trigger: Option<Value>,
    timezone: Option<String>,
    target: Option<TargetPatch>,
    #[schema(value_type = Option<crate::http::views::PoliciesDoc>)]
    policies: Option<Value>,
}

/// Target changes: each key given replaces that part.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetPatch {
    handler_id: Option<String>,
    method: Option<String>,
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
}

/// A schedule, and what the server noticed about its target.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct Created {
    #[serde(flatten)]
    schedule: ScheduleView,
    /// E.g. that no handler with this id has registered yet (the schedule is kept: its runs
    /// wait for one).
    warnings: Vec<String>,
}

/// A page of schedules.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct SchedulePage {
    schedules: Vec<ScheduleView>,
    count: usize,
    /// Pass as `after` for the next page; null on the last one.
    next_cursor: Option<uuid::Uuid>,
}

#[allow(dead_code)] // documents the query; parsed by hand for errors that name the parameter
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// `active`, `paused` or `finished`.
    state: Option<String>,
    handler_id: Option<String>,
    /// A case-insensitive substring of the name.
    q: Option<String>,
    /// Include finished schedules (implied by `state=finished`).
    include_finished: Option<bool>,
    /// Page size, 1–1000; absent: every schedule (as the original listed them).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    after: Option<String>,
}

const LIST_KEYS: &[&str] = &["state", "handler_id", "q", "include_finished", "limit", "after"];

/// The schedule a path names: by `schedule_id` first, then by name (live schedules first, then
/// the latest finished one with that name).
pub(crate) async fn resolve(s: &AppState, reference: &str) -> Result<Schedule, ApiError> {
    if let Ok(id) = uuid::Uuid::parse_str(reference)
        && let Some(found) = s.engine.get_schedule(id).await?
    {
        return Ok(found);
    }
    if let Some(found) = s.engine.find_schedule(reference).await? {
        return Ok(found);
    }
    let named = ScheduleFilter {
        name_contains: Some(reference.to_string()),
        include_finished: true,
        ..ScheduleFilter::default()
    };
    let latest = s
        .engine
        .list_schedules(&named)
        .await?
        .into_iter()
        .filter(|sc| sc.name == reference)
        .max_by_key(|sc| sc.id);
    latest.ok_or_else(|| {
        ApiError::not_found(format!("no schedule '{reference}'; GET /api/schedules lists them"))
    })
}

fn zone_of(name: Option<&str>) -> Result<Option<Tz>, ApiError> {
    name.map(|n| {
        n.trim().parse::<Tz>().map_err(|_| {
            ApiError::bad_request(format!(
                "'timezone': '{n}' is not an IANA time zone name (e.g. 'Europe/Paris')"
            ))
        })
    })
    .transpose()
}

fn trigger_of(s: &AppState, value: Value, zone: Option<Tz>) -> Result<Trigger, ApiError> {
    parse_value(value, zone, &s.engine.parse_context())
        .map_err(|e| ApiError::bad_request(format!("trigger: {e}")))
}

fn policies_of(value: &Value) -> Result<Policies, ApiError> {
    Policies::parse(value).map_err(|e| ApiError::bad_request(format!("policies: {e}")))
}

fn params_of(params: Option<Value>) -> Result<Value, ApiError> {
    match params {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(p @ Value::Object(_)) => Ok(p),
        Some(_) => Err(ApiError::bad_request("'target.params' must be a JSON object")),
    }
}

fn non_empty(field: &str, v: String) -> Result<String, ApiError> {
    if v.trim().is_empty() {
        return Err(ApiError::bad_request(format!("'{field}' must not be empty")));
    }
    Ok(v)
}

/// What is worth telling the client about a target that cannot run yet.
async fn warnings_for(s: &AppState, target: &Target) -> Result<Vec<String>, ApiError> {
    let mut methods: Vec<String> = s
        .engine
        .registry()
        .instances()
        .into_iter()
        .filter(|i| i.handler_id == target.handler_id)
        .flat_map(|i| i.methods.clone())
        .collect();
    if methods.contains(&target.method) {
        // A live instance offers it: nothing to say, and no store read on each create.
        return Ok(vec![]);
    }
    methods.extend(
        s.engine
            .known_instances()
            .await?
            .into_iter()
            .filter(|r| r.handler_id == target.handler_id)
            .flat_map(|r| r.methods),
    );
    methods.sort();
    methods.dedup();
    Ok(if methods.is_empty() {
        vec![format!(
            "no handler '{}' has registered with this server yet; its runs wait until one does",
            target.handler_id
        )]
    } else if !methods.contains(&target.method) {
        vec![format!(
            "handler '{}' does not offer method '{}' (it offers: {}); its runs wait until an instance does",
            target.handler_id,
            target.method,
            methods.join(", ")
        )]
    } else {
        vec![]
    })
}

/// Create a schedule.
#[utoipa::path(post, path = "/api/schedules", tag = "schedules", request_body = CreateSchedule,
    responses(
        (status = 201, description = "Created (committed before the answer)", body = Created),
        (status = 400, description = "A field is wrong (named in the message)", body = ErrorBody),
        (status = 409, description = "The name is taken by a live schedule", body = ErrorBody),
    ))]
async fn create(State(s): St, body: Body) -> Result<Response, ApiError> {
    let req: CreateSchedule = input::json_body(body)?;
    let zone = zone_of(req.timezone.as_deref())?;
    let trigger = trigger_of(&s, req.trigger, zone)?;
    let target = Target {
        handler_id: non_empty("target.handler_id", req.target.handler_id)?,
        method: non_empty("target.method", req.target.method)?,
        params: params_of(req.target.params)?,
    };
    let policies = policies_of(req.policies.as_ref().unwrap_or(&Value::Null))?;
    let warnings = warnings_for(&s, &target).await?;
    let mut spec = ScheduleSpec::new(trigger, target).policies(policies);
    spec.paused = req.paused;
    if let Some(name) = req.name {
        spec = spec.name(non_empty("name", name)?);
    }
    let created = s.engine.add_schedule(spec).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { schedule: ScheduleView::of(&created), warnings }))
        .into_response())
}

/// List schedules (also the original's `GET /api/schedules`).
#[utoipa::path(get, path = "/api/schedules", tag = "schedules", params(ListQuery),
    responses((status = 200, body = SchedulePage), (status = 400, body = ErrorBody)))]
async fn list(State(s): St, q: QueryParams) -> Result<Response, ApiError> {
    let q = input::query_of(q, LIST_KEYS)?;
    let state = match q.get("state").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => Some(ScheduleState::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!("'state' must be active, paused or finished, got '{v}'"))
        })?),
    };
    let limit = if q.contains_key("limit") { input::limit_of(&q, 100, 1000)? } else { 0 };
    let filter = ScheduleFilter {
        state,
        handler_id: q.get("handler_id").filter(|v| !v.is_empty()).cloned(),
        name_contains: q.get("q").filter(|v| !v.is_empty()).cloned(),
        include_finished: input::flag_of(&q, "include_finished")? || state == Some(ScheduleState::Finished),
        after: q.get("after").filter(|v| !v.is_empty()).map(|v| input::uuid_of("after", v)).transpose()?,
        // One more than asked: whether there is a next page.
        limit: if limit == 0 { 0 } else { limit + 1 },
    };
    let mut found = s.engine.list_schedules(&filter).await?;
    let next_cursor = if limit > 0 && found.len() > limit as usize {
        found.truncate(limit as usize);
        found.last().map(|sc| sc.id)
    } else {
        None
    };
    let schedules: Vec<ScheduleView> = found.iter().map(ScheduleView::of).collect();
    Ok(axum::Json(SchedulePage { count: schedules.len(), schedules, next_cursor }).into_response())
}

/// Get a schedule by name or `schedule_id`.
#[utoipa::path(get, path = "/api/schedules/{schedule}", tag = "schedules",
    params(("schedule" = String, Path, description = "name or schedule_id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody)))]
async fn get_one(State(s): St, Path(reference): Path<String>) -> Result<Response, ApiError> {
    let sc = resolve(&s, &reference).await?;
    Ok(axum::Json(ScheduleView::of(&sc)).into_response())
}

/// Change a schedule.
#[utoipa::path(patch, path = "/api/schedules/{schedule}", tag = "schedules", request_body = UpdateSchedule,
    params(("schedule" = String, Path, description = "name or schedule_id")),
    responses(
        (status = 200, body = Created),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
    ))]
async fn update(State(s): St, Path(reference): Path<String>, body: Body) -> Result<Response, ApiError> {
    let req: UpdateSchedule = input::json_body(body)?;
    let current = resolve(&s, &reference).await?;
    if current.state == ScheduleState::Finished {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "schedule '{}' is finished (its trigger has no more fires); create a new one",
                current.name
            ),
        ));
    }
    let zone = zone_of(req.timezone.as_deref())?;
    let trigger = match (req.trigger, zone) {
        (Some(t), zone) => trigger_of(&s, t, zone)?,
        (None, Some(zone)) => {
            // Same trigger read in another zone: its calendar moves with the zone.
            let mut spec = current.trigger.to_json();
            if let Some(obj) = spec.as_object_mut() {
                obj.insert("timezone".into(), json!(zone.name()));
            }
            trigger_of(&s, spec, None)?
        }
        (None, None) => current.trigger.clone(),
    };
    let mut target = current.target.clone();
    if let Some(t) = req.target {
        if let Some(h) = t.handler_id {
            target.handler_id = non_empty("target.handler_id", h)?;
        }
        if let Some(m) = t.method {
            target.method = non_empty("target.method", m)?;
        }
        if t.params.is_some() {
            target.params = params_of(t.params)?;
        }
    }
    let policies = match req.policies {
        None => current.policies,
        Some(Value::Object(changes)) => {
            let mut merged = current.policies.to_json();
            if let Some(obj) = merged.as_object_mut() {
                obj.extend(changes);
            }
            policies_of(&merged)?
        }
        Some(_) => return Err(ApiError::bad_request("'policies' must be a JSON object")),
    };
    let warnings = warnings_for(&s, &target).await?;
    let mut spec = ScheduleSpec::new(trigger, target).policies(policies);
    spec.paused = current.state == ScheduleState::Paused;
    if let Some(name) = req.name {
        spec = spec.name(non_empty("name", name)?);
    }
    let updated = s.engine.update_schedule(current.id, spec).await?;
    Ok(axum::Json(Created { schedule: ScheduleView::of(&updated), warnings }).into_response())
}

/// Delete a schedule (its runs not yet started are cancelled, its history kept). The original's
/// answer shape.
#[utoipa::path(delete, path = "/api/schedules/{schedule}", tag = "schedules",
    params(("schedule" = String, Path, description = "name or schedule_id")),
    responses((status = 200, body = Object, example = json!({"status": "success", "message": "Schedule 'nightly' removed", "schedule_id": "nightly"})),
              (status = 404, body = ErrorBody)))]
async fn remove(State(s): St, Path(reference): Path<String>) -> Result<Response, ApiError> {
    let sc = resolve(&s, &reference).await?;
    s.engine.delete_schedule(sc.id).await?;
    Ok(axum::Json(json!({
        "status": "success",
        "message": format!("Schedule '{reference}' removed"),
        "schedule_id": reference,
    }))
    .into_response())
}

/// Pause a schedule: it stops firing; runs in progress continue.
#[utoipa::path(post, path = "/api/schedules/{schedule}/pause", tag = "schedules",
    params(("schedule" = String, Path, description = "name or schedule_id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn pause(State(s): St, Path(reference): Path<String>) -> Result<Response, ApiError> {
    let sc = resolve(&s, &reference).await?;
    refuse_finished(&sc, "pause")?;
    let sc = s.engine.pause(sc.id).await?;
    Ok(axum::Json(ScheduleView::of(&sc)).into_response())
}

/// Resume a paused schedule: it fires again from now on (slots that passed while paused are not
/// run).
#[utoipa::path(post, path = "/api/schedules/{schedule}/resume", tag = "schedules",
    params(("schedule" = String, Path, description = "name or schedule_id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume(State(s): St, Path(reference): Path<String>) -> Result<Response, ApiError> {
    let sc = resolve(&s, &reference).await?;
    refuse_finished(&sc, "resume")?;
    let sc = s.engine.resume(sc.id).await?;
    Ok(axum::Json(ScheduleView::of(&sc)).into_response())
}

fn refuse_finished(sc: &Schedule, what: &str) -> Result<(), ApiError> {
    if sc.state == ScheduleState::Finished {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("schedule '{}' is finished (its trigger has no more fires); nothing to {what}", sc.name),
        ));
    }
    Ok(())
}

/// Run a schedule now, outside its trigger: a new run with the schedule's target and policies
/// (retries included), stored before the answer and dispatched at once.
#[utoipa::path(post, path = "/api/schedules/{schedule}/run", tag = "schedules",
    params(("schedule" = String, Path, description = "name or schedule_id")),
    responses((status = 202, description = "The run, pending", body = RunView), (status = 404, body = ErrorBody)))]
async fn run_now(State(s): St, Path(reference): Path<String>) -> Result<Response, ApiError> {
    let sc = resolve(&s, &reference).await?;
    let run = s.engine.run_schedule_now(sc.id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(RunView::of(&run, Some(sc.name)))).into_response())
}
