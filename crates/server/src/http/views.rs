//! What the API returns: schedules, runs, attempts and handlers as JSON, one shape for each
//! wherever it appears (compat list, native routes, the OpenAPI document).

use std::collections::{BTreeMap, HashMap};

use chrono::SecondsFormat;
use schedulezero_core::Timestamp;
use schedulezero_core::run::{Attempt, Run};
use schedulezero_core::schedule::{Schedule, ScheduleId};
use schedulezero_core::time::format_in_zone;
use schedulezero_store::HandlerInstance;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{ApiError, AppState};

/// A time as the native API shows it: RFC 3339, UTC, milliseconds.
pub(crate) fn utc(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// The HTTP status.
    #[schema(example = 400)]
    pub code: u16,
    /// What was wrong (the field is named) and what to do.
    #[schema(example = "'target.method': must be a non-empty string")]
    pub message: String,
}

/// What a run calls.
#[derive(Serialize, ToSchema)]
pub(crate) struct TargetView {
    /// The handler id (a pool of instances).
    pub handler_id: String,
    pub method: String,
    /// Always a JSON object.
    #[schema(value_type = Object)]
    pub params: Value,
}

/// A schedule. `id`, `next_fire_time`, `trigger` and `args` are the original's keys
/// (COMPAT.md §1), so this is both the compat and the native shape.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    /// The name (the compat `job_id`): unique among schedules that are not finished.
    #[schema(example = "nightly-report")]
    pub id: String,
    /// Same as `id`.
    pub name: String,
    /// The permanent id (UUID v7: ids sort by creation); runs reference it.
    pub schedule_id: uuid::Uuid,
    /// `active`, `paused`, or `finished` (the trigger has no more fires).
    #[schema(example = "active")]
    pub state: String,
    /// A readable description of the trigger.
    #[schema(example = "cron[hour='2', minute='0']")]
    pub trigger: String,
    /// The trigger in its canonical JSON form (absolute times, zone named).
    #[schema(value_type = Object)]
    pub trigger_spec: Value,
    /// The IANA zone of the trigger.
    #[schema(example = "Europe/Paris")]
    pub timezone: String,
    pub target: TargetView,
    #[schema(value_type = PoliciesDoc)]
    pub policies: schedulezero_core::policy::Policies,
    /// The next fire slot in the trigger's zone; null when paused or finished.
    pub next_fire_time: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The original's `[handler_id, method, params, name]`.
    #[schema(value_type = Vec<Object>)]
    pub args: Vec<Value>,
    /// The original's flat target keys.
    pub handler_id: String,
    pub job_method: String,
}

impl ScheduleView {
    pub fn of(s: &Schedule) -> ScheduleView {
        let zone = s.trigger.zone();
        let active = s.state == schedulezero_core::schedule::ScheduleState::Active;
        ScheduleView {
            id: s.name.clone(),
            name: s.name.clone(),
            schedule_id: s.id,
            state: s.state.as_str().to_string(),
            trigger: s.trigger.describe(),
            trigger_spec: s.trigger.to_json(),
            timezone: zone.name().to_string(),
            target: TargetView {
                handler_id: s.target.handler_id.clone(),
                method: s.target.method.clone(),
                params: s.target.params.clone(),
            },
            policies: s.policies,
            next_fire_time: s.next_fire_at.filter(|_| active).map(|t| format_in_zone(t, zone)),
            created_at: utc(s.created_at),
            updated_at: utc(s.updated_at),
            args: vec![
                json!(s.target.handler_id),
                json!(s.target.method),
                s.target.params.clone(),
                json!(s.name),
            ],
            handler_id: s.target.handler_id.clone(),
            job_method: s.target.method.clone(),
        }
    }
}

/// Policies (documentation of their JSON form; every key optional, durations in seconds).
#[allow(dead_code)] // only its schema is used
#[derive(ToSchema)]
pub(crate) struct PoliciesDoc {
    /// `{"policy": "coalesce"}` (default), `{"policy": "run_all", "max": 100}` or
    /// `{"policy": "skip", "grace": <seconds>}`: what to do with slots missed while nothing could fire.
    #[schema(value_type = Object, example = json!({"policy": "coalesce"}))]
    misfire: Value,
    /// `allow` (default), `skip`, `queue_one` or `replace`: a slot firing while a run is active.
    #[schema(example = "allow")]
    overlap: String,
    retry: RetryDoc,
    /// Seconds one attempt may run (default 300).
    #[schema(example = 300)]
    timeout: f64,
}

/// Retries of failed, timed-out, lost and interrupted attempts (never of cancelled ones).
#[allow(dead_code)]
#[derive(ToSchema)]
pub(crate) struct RetryDoc {
    /// Attempts in all, the first included (default 3; 1 = never retry).
    #[schema(example = 3)]
    max_attempts: u32,
    /// Seconds before the second attempt (default 1).
    initial_backoff: f64,
    /// The longest delay, seconds (default 60).
    max_backoff: f64,
    /// Each delay is the previous one times this (default 2).
    multiplier: f64,
    /// Each delay is shortened by a random fraction up to this (default 0.2).
    jitter: f64,
}

/// A run: one fire slot of a schedule (or one call made by `run_now`) and its outcome.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunView {
    pub run_id: uuid::Uuid,
    /// Null for runs made by `POST /api/run_now`.
    pub schedule_id: Option<uuid::Uuid>,
    /// The schedule's name, while the schedule exists.
    pub schedule_name: Option<String>,
    /// `pending`, `running`, `retrying`, `succeeded`, `failed`, `timed_out`, `cancelled`,
    /// `skipped`, `missed` or `interrupted`.
    #[schema(example = "succeeded")]
    pub state: String,
    /// The slot (un-jittered fire time).
    pub scheduled_for: String,
    /// When it is due to be sent (slot + jitter, or a retry's time); null once started or queued.
    pub dispatch_at: Option<String>,
    /// The latest attempt started (0: none yet).
    pub attempt: u32,
    pub max_attempts: u32,
    pub target: TargetView,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// `finished_at - started_at`.
    pub duration_ms: Option<i64>,
    /// `started_at - scheduled_for`: how late the first attempt started.
    pub lateness_ms: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Slots this row stands for (more than 1: one `missed` row for a long outage).
    pub slot_count: u32,
}

impl RunView {
    pub fn of(r: &Run, schedule_name: Option<String>) -> RunView {
        RunView {
            run_id: r.id,
            schedule_id: r.schedule_id,
            schedule_name,
            state: r.state.as_str().to_string(),
            scheduled_for: utc(r.scheduled_for),
            dispatch_at: r.dispatch_at.filter(|_| !r.state.is_terminal()).map(utc),
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            target: TargetView {
                handler_id: r.target.handler_id.clone(),
                method: r.target.method.clone(),
                params: r.target.params.clone(),
            },
            created_at: utc(r.created_at),
            started_at: r.started_at.map(utc),
            finished_at: r.finished_at.map(utc),
            duration_ms: match (r.started_at, r.finished_at) {
                (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
                _ => None,
            },
            lateness_ms: r.started_at.map(|t| (t - r.scheduled_for).num_milliseconds()),
            result: r.result.clone(),
            error: r.error.clone(),
            slot_count: r.slot_count,
        }
    }
}

/// One ended attempt of a run.
#[derive(Serialize, ToSchema)]
pub(crate) struct AttemptView {
    pub number: u32,
    /// The handler instance that served it, when one was reached.
    pub instance: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    /// `succeeded`, `failed`, `timed_out`, `lost`, `cancelled`, `interrupted`, …
    #[schema(example = "succeeded")]
    pub outcome: String,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<String>,
}

impl AttemptView {
    pub fn of(a: &Attempt) -> AttemptView {
        AttemptView {
            number: a.number,
            instance: a.instance.clone(),
            started_at: utc(a.started_at),
            finished_at: utc(a.finished_at),
            duration_ms: (a.finished_at - a.started_at).num_milliseconds(),
            outcome: a.outcome.as_str().to_string(),
            result: a.result.clone(),
            error: a.error.clone(),
        }
    }
}

/// The names of the schedules these runs belong to (deleted ones included).
pub(crate) async fn schedule_names(
    s: &AppState,
    runs: &[Run],
) -> Result<HashMap<ScheduleId, String>, ApiError> {
    let mut ids: Vec<ScheduleId> = runs.iter().filter_map(|r| r.schedule_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(s.engine.store().schedule_names(&ids).await?)
}

/// One entry per handler id (COMPAT.md §1 shape): `Connected` when any instance is, with every
/// instance the server knows (live ones from the registry, earlier ones from the store).
pub(crate) async fn handler_entries(s: &AppState) -> Result<Vec<Value>, ApiError> {
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let live = s.engine.registry().instances();
    for i in &live {
        let status = match (i.is_connected(), i.is_draining()) {
            (true, false) => "Connected",
            (true, true) => "Draining",
            (false, _) => "Disconnected",
        };
        by_id.entry(i.handler_id.clone()).or_default().push(instance_json(
            &i.record(),
            status,
            i.in_flight(),
        ));
    }
    for r in s.engine.known_instances().await? {
        if !live.iter().any(|i| i.handler_id == r.handler_id && i.instance_id == r.instance_id) {
            by_id.entry(r.handler_id.clone()).or_default().push(instance_json(&r, "Disconnected", 0));
        }
    }
    Ok(by_id
        .into_iter()
        .map(|(id, instances)| {
            let connected = instances.iter().filter(|i| i["status"] == "Connected").count();
            let address = instances
                .iter()
                .find(|i| i["status"] == "Connected")
                .or(instances.first())
                .map(|i| i["address"].clone())
                .unwrap_or(Value::Null);
            let mut methods: Vec<String> = instances
                .iter()
                .flat_map(|i| i["methods"].as_array().cloned().unwrap_or_default())
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect();
            methods.sort();
            methods.dedup();
            json!({
                "id": id,
                "address": address,
                "methods": methods,
                "status": if connected > 0 { "Connected" } else { "Disconnected" },
                "connected": connected,
                "instances": instances,
            })
        })
        .collect())
}

fn instance_json(r: &HandlerInstance, status: &str, in_flight: u32) -> Value {
    json!({
        "instance_id": r.instance_id,
        "protocol": r.protocol,
        "address": r.address,
        "status": status,
        "connected": status != "Disconnected",
        "draining": status == "Draining",
        "methods": r.methods,
        "capacity": r.capacity,
        "in_flight": in_flight,
        "last_seen": r.last_seen.to_rfc3339(),
        "registered_at": r.registered_at.to_rfc3339(),
        "success_count": r.successes,
        "failure_count": r.failures,
        "successes": r.successes,
        "failures": r.failures,
    })
}

/// A handler id and its instances (documentation of the shape built by [`handler_entries`]).
#[allow(dead_code)]
#[derive(ToSchema)]
pub(crate) struct HandlerDoc {
    #[schema(example = "reports")]
    id: String,
    /// `Connected` when any instance is connected and not draining.
    #[schema(example = "Connected")]
    status: String,
    /// The address of a connected instance (or of the last one known).
    address: Option<String>,
    /// Every method any instance offers.
    methods: Vec<String>,
    /// How many instances are connected.
    connected: u32,
    instances: Vec<InstanceDoc>,
}

/// One handler process (an instance of a handler id).
#[allow(dead_code)]
#[derive(ToSchema)]
pub(crate) struct InstanceDoc {
    instance_id: String,
    /// `native`, `v1` or `local`.
    protocol: String,
    /// The handler's address (version 1) or its connection (native).
    address: String,
    /// `Connected`, `Draining` or `Disconnected`.
    status: String,
    connected: bool,
    draining: bool,
    methods: Vec<String>,
    /// Calls it takes at once.
    capacity: u32,
    /// Calls it is running now.
    in_flight: u32,
    last_seen: String,
    registered_at: String,
    successes: u64,
    failures: u64,
}
