//! Rows to records and back: ids are 16-byte BLOBs (passed in JSON batches as 32 hex digits and
//! read with `unhex`), times are UTC milliseconds, JSON is TEXT.

use chrono::DateTime;
use schedulezero_core::Timestamp;
use schedulezero_core::chrono_tz;
use schedulezero_core::policy::Policies;
use schedulezero_core::run::{Attempt, Run, RunState};
use schedulezero_core::schedule::{Schedule, ScheduleState, Target};
use schedulezero_core::trigger::{ParseContext, Trigger};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::{StoreError, StoreResult, outcome_from_str};

/// Maps a sqlx error to `Backend`, saying which operation failed.
pub(super) fn db_err(context: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Backend { context: context.to_string(), source: Box::new(e) }
}

/// Whether `e` is a unique-constraint violation naming `column` (e.g. `schedules.name`).
pub(super) fn is_unique_violation(e: &sqlx::Error, column: &str) -> bool {
    match e {
        sqlx::Error::Database(d) => d.is_unique_violation() && d.message().contains(column),
        _ => false,
    }
}

pub(super) fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

pub(super) fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(ms)
}

pub(super) fn from_ms(v: i64) -> StoreResult<Timestamp> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("time {v} ms is out of range")))
}

pub(super) fn opt_from_ms(v: Option<i64>) -> StoreResult<Option<Timestamp>> {
    v.map(from_ms).transpose()
}

/// An id as the 32 hex digits `unhex` reads back.
pub(super) fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

/// A JSON array of ids, for `json_each`.
pub(super) fn hex_array<'a>(ids: impl IntoIterator<Item = &'a Uuid>) -> String {
    let mut out = String::from("[");
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&hex(*id));
        out.push('"');
    }
    out.push(']');
    out
}

pub(super) fn parse_json(text: &str, what: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is not valid JSON: {e}")))
}

pub(super) fn parse_policies(text: &str) -> StoreResult<Policies> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored policies: {e}")))
}

/// Loads a stored trigger (its canonical JSON carries its zone and absolute times, so `now` and
/// the local zone only matter for forms it never has).
pub(super) fn parse_trigger(text: &str, now: Timestamp) -> StoreResult<Trigger> {
    let value = parse_json(text, "stored trigger")?;
    Trigger::parse(&value, &ParseContext { now, local_zone: chrono_tz::UTC })
        .map_err(|e| StoreError::Corrupt(format!("stored trigger: {e}")))
}

pub(super) fn schedule_state(s: &str) -> StoreResult<ScheduleState> {
    ScheduleState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown schedule state '{s}'")))
}

pub(super) fn run_state(s: &str) -> StoreResult<RunState> {
    RunState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown run state '{s}'")))
}

pub(super) fn u32_col(v: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is out of range")))
}

pub(super) fn get<'r, T>(row: &'r SqliteRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub(super) const SCHEDULE_COLUMNS: &str =
    "id, name, trigger, handler_id, method, params, policies, state, next_fire_at, created_at, updated_at";

pub(super) fn schedule_from_row(row: &SqliteRow) -> StoreResult<Schedule> {
    let created_at = from_ms(get(row, "created_at")?)?;
    let trigger: String = get(row, "trigger")?;
    let params: String = get(row, "params")?;
    let policies: String = get(row, "policies")?;
    let state: String = get(row, "state")?;
    Ok(Schedule {
        id: get(row, "id")?,
        name: get(row, "name")?,
        trigger: parse_trigger(&trigger, created_at)?,
        target: Target {
            handler_id: get(row, "handler_id")?,
            method: get(row, "method")?,
            params: parse_json(&params, "stored params")?,
        },
        policies: parse_policies(&policies)?,
        state: schedule_state(&state)?,
        next_fire_at: opt_from_ms(get(row, "next_fire_at")?)?,
        created_at,
        updated_at: from_ms(get(row, "updated_at")?)?,
    })
}

pub(super) const RUN_COLUMNS: &str = "id, schedule_id, scheduled_for, dispatch_at, state, attempt, max_attempts, \
     handler_id, method, params, created_at, started_at, finished_at, result, error, slot_count";

pub(super) fn run_from_row(row: &SqliteRow) -> StoreResult<Run> {
    let state: String = get(row, "state")?;
    let params: String = get(row, "params")?;
    let result: Option<String> = get(row, "result")?;
    Ok(Run {
        id: get(row, "id")?,
        schedule_id: get(row, "schedule_id")?,
        scheduled_for: from_ms(get(row, "scheduled_for")?)?,
        dispatch_at: opt_from_ms(get(row, "dispatch_at")?)?,
        state: run_state(&state)?,
        attempt: u32_col(get(row, "attempt")?, "attempt")?,
        max_attempts: u32_col(get(row, "max_attempts")?, "max_attempts")?,
        target: Target {
            handler_id: get(row, "handler_id")?,
            method: get(row, "method")?,
            params: parse_json(&params, "stored params")?,
        },
        created_at: from_ms(get(row, "created_at")?)?,
        started_at: opt_from_ms(get(row, "started_at")?)?,
        finished_at: opt_from_ms(get(row, "finished_at")?)?,
        result: result.map(|r| parse_json(&r, "stored result")).transpose()?,
        error: get(row, "error")?,
        slot_count: u32_col(get(row, "slot_count")?, "slot_count")?,
    })
}

pub(super) fn attempt_from_row(row: &SqliteRow) -> StoreResult<Attempt> {
    let outcome: String = get(row, "outcome")?;
    let result: Option<String> = get(row, "result")?;
    Ok(Attempt {
        run_id: get(row, "run_id")?,
        number: u32_col(get(row, "number")?, "attempt number")?,
        instance: get(row, "instance")?,
        started_at: from_ms(get(row, "started_at")?)?,
        finished_at: from_ms(get(row, "finished_at")?)?,
        outcome: outcome_from_str(&outcome)?,
        result: result.map(|r| parse_json(&r, "stored result")).transpose()?,
        error: get(row, "error")?,
    })
}
