//! `claim_due`: in one write transaction, due schedules become runs (one per slot, planned by
//! `core::plan::plan_fires`), each schedule's next fire time moves on, and the runs due now are
//! leased to the claiming node. Set-based: a handful of statements whatever the batch size.

use std::collections::{HashMap, HashSet};

use schedulezero_core::Timestamp;
use schedulezero_core::plan::{DueSchedule, SlotFate, plan_fires};
use schedulezero_core::policy::{OverlapPolicy, Policies};
use schedulezero_core::run::{Run, RunId, RunState};
use schedulezero_core::schedule::{ScheduleId, Target};
use schedulezero_core::trigger::Trigger;
use serde::Serialize;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::codec::{db_err, from_ms, get, hex, hex_array, ms, parse_json, parse_policies, parse_trigger, u32_col};
use super::{LEASE_TTL, SqliteStore};
use crate::{ClaimBatch, Dispatch, StoreError, StoreResult};

/// A due schedule as read inside the claim.
struct Due {
    id: ScheduleId,
    trigger: Trigger,
    policies: Policies,
    next_fire_at: Timestamp,
    handler_id: String,
    method: String,
    params_text: String,
    params: Value,
}

fn decode_due(row: &SqliteRow) -> StoreResult<Due> {
    let created_at = from_ms(get(row, "created_at")?)?;
    let trigger: String = get(row, "trigger")?;
    let policies: String = get(row, "policies")?;
    let params_text: String = get(row, "params")?;
    Ok(Due {
        id: get(row, "id")?,
        trigger: parse_trigger(&trigger, created_at)?,
        policies: parse_policies(&policies)?,
        next_fire_at: from_ms(get(row, "next_fire_at")?)?,
        handler_id: get(row, "handler_id")?,
        method: get(row, "method")?,
        params: parse_json(&params_text, "stored params")?,
        params_text,
    })
}

/// One new run as a JSON array for `json_each` (see the INSERT below for the positions).
#[derive(Serialize)]
struct NewRun<'a>(
    String,
    String,
    i64,
    Option<i64>,
    &'static str,
    u32,
    &'a str,
    &'a str,
    &'a str,
    u32,
    Option<i64>,
    Option<&'a str>,
    Option<i64>,
    Option<String>,
);

/// What the claim remembers of a run it tries to insert.
struct Planned {
    id: RunId,
    due: usize,
    scheduled_for: Timestamp,
    dispatch_at: Option<Timestamp>,
    state: RunState,
    slot_count: u32,
    leased: bool,
}

fn encode_err(e: serde_json::Error) -> StoreError {
    StoreError::Backend { context: "cannot encode a claim".to_string(), source: Box::new(e) }
}

pub(super) async fn claim_due(store: &SqliteStore, node: &str, now: Timestamp, limit: usize) -> StoreResult<ClaimBatch> {
    let ctx = "cannot claim due schedules";
    let mut batch = ClaimBatch::default();
    if limit == 0 {
        return Ok(batch);
    }
    let mut tx = store.write(ctx).await?;
    let rows = sqlx::query(
        "SELECT id, trigger, policies, next_fire_at, handler_id, method, params, created_at \
         FROM schedules WHERE state = 'active' AND next_fire_at <= ?1 ORDER BY next_fire_at LIMIT ?2",
    )
    .bind(ms(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err(ctx))?;
    batch.schedules = rows.len();
    if rows.is_empty() {
        return Ok(batch);
    }
    let mut due = Vec::with_capacity(rows.len());
    let mut broken = Vec::new();
    for row in &rows {
        match decode_due(row) {
            Ok(d) => due.push(d),
            Err(e) => {
                let id: ScheduleId = get(row, "id")?;
                tracing::error!(schedule = %id, error = %e, "a stored schedule cannot be read; pausing it");
                broken.push(id);
            }
        }
    }
    drop(rows);
    if !broken.is_empty() {
        sqlx::query(
            "UPDATE schedules SET state = 'paused', updated_at = ?2 \
             WHERE id IN (SELECT unhex(value) FROM json_each(?1))",
        )
        .bind(hex_array(&broken))
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(db_err(ctx))?;
    }

    let counts = active_counts(&mut tx, &due).await?;

    // Plan every schedule.
    let lease_until = ms(now + LEASE_TTL);
    let mut planned: Vec<Planned> = Vec::new();
    let mut rows: Vec<NewRun<'_>> = Vec::new();
    let mut next_fires: Vec<(String, Option<i64>)> = Vec::with_capacity(due.len());
    let mut replace: Vec<ScheduleId> = Vec::new();
    for (i, d) in due.iter().enumerate() {
        let (active_runs, queued_runs) = counts.get(&d.id).copied().unwrap_or((0, 0));
        let plan = plan_fires(
            &DueSchedule {
                id: d.id,
                trigger: &d.trigger,
                policies: &d.policies,
                next_fire_at: d.next_fire_at,
                active_runs,
                queued_runs,
            },
            now,
        );
        next_fires.push((hex(d.id), plan.next_fire_at.map(ms)));
        if plan.cancel_active {
            replace.push(d.id);
        }
        let max_attempts = d.policies.retry.max_attempts;
        for slot in plan.slots {
            let (state, dispatch_at, slot_count, error) = match slot.fate {
                SlotFate::Run { dispatch_at } => (RunState::Pending, Some(dispatch_at), 1, None),
                SlotFate::Queue => (RunState::Pending, None, 1, None),
                SlotFate::Missed { slots } => (
                    RunState::Missed,
                    None,
                    slots,
                    Some(if slots > 1 {
                        format!("missed: {slots} slots passed while no scheduler could fire them")
                    } else {
                        "missed: the slot passed while no scheduler could fire it".to_string()
                    }),
                ),
                SlotFate::Skipped => (
                    RunState::Skipped,
                    None,
                    1,
                    Some("skipped: another run of this schedule was active".to_string()),
                ),
            };
            let leased = state == RunState::Pending && dispatch_at.is_some_and(|t| t <= now);
            let id = Uuid::now_v7();
            rows.push(NewRun(
                hex(id),
                hex(d.id),
                ms(slot.scheduled_for),
                dispatch_at.map(ms),
                state.as_str(),
                max_attempts,
                &d.handler_id,
                &d.method,
                &d.params_text,
                slot_count,
                state.is_terminal().then(|| ms(now)),
                leased.then_some(node),
                leased.then_some(lease_until),
                error,
            ));
            planned.push(Planned {
                id,
                due: i,
                scheduled_for: slot.scheduled_for,
                dispatch_at,
                state,
                slot_count,
                leased,
            });
        }
    }

    // Insert the runs; a slot already claimed (by any node, ever) is left alone.
    let inserted: HashSet<RunId> = if rows.is_empty() {
        HashSet::new()
    } else {
        let json = serde_json::to_string(&rows).map_err(encode_err)?;
        let ids: Vec<RunId> = sqlx::query_scalar(
            "INSERT INTO runs (id, schedule_id, scheduled_for, dispatch_at, state, attempt, max_attempts, \
                               handler_id, method, params, created_at, finished_at, error, slot_count, \
                               lease_owner, lease_expires_at) \
             SELECT unhex(value->>0), unhex(value->>1), value->>2, value->>3, value->>4, 0, value->>5, \
                    value->>6, value->>7, value->>8, ?2, value->>10, value->>13, value->>9, \
                    value->>11, value->>12 \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (schedule_id, scheduled_for) DO NOTHING \
             RETURNING id",
        )
        .bind(json)
        .bind(ms(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err(ctx))?;
        ids.into_iter().collect()
    };
    drop(rows);

    // Move each schedule on; an exhausted one is finished (and frees its name).
    let json = serde_json::to_string(&next_fires).map_err(encode_err)?;
    sqlx::query(
        "UPDATE schedules SET next_fire_at = j.value->>1, \
             state = CASE WHEN j.value->>1 IS NULL THEN 'finished' ELSE state END, \
             updated_at = CASE WHEN j.value->>1 IS NULL THEN ?2 ELSE updated_at END \
         FROM json_each(?1) AS j WHERE schedules.id = unhex(j.value->>0)",
    )
    .bind(json)
    .bind(ms(now))
    .execute(&mut *tx)
    .await
    .map_err(db_err(ctx))?;

    if !replace.is_empty() {
        batch.cancel = replace_active(&mut tx, &replace, &inserted, now).await?;
    }

    tx.commit().await.map_err(db_err(ctx))?;

    for p in planned {
        if !inserted.contains(&p.id) {
            continue;
        }
        batch.slots += p.slot_count as usize;
        if !p.leased {
            continue;
        }
        let d = &due[p.due];
        batch.ready.push(Dispatch {
            run: Run {
                id: p.id,
                schedule_id: Some(d.id),
                scheduled_for: p.scheduled_for,
                dispatch_at: p.dispatch_at,
                state: p.state,
                attempt: 0,
                max_attempts: d.policies.retry.max_attempts,
                target: Target {
                    handler_id: d.handler_id.clone(),
                    method: d.method.clone(),
                    params: d.params.clone(),
                },
                created_at: now,
                started_at: None,
                finished_at: None,
                result: None,
                error: None,
                slot_count: p.slot_count,
            },
            policies: d.policies,
        });
    }
    Ok(batch)
}

/// Active (pending with a dispatch time, running, retrying) and queued runs of the due schedules
/// whose overlap policy looks at them.
async fn active_counts(
    tx: &mut Transaction<'static, Sqlite>,
    due: &[Due],
) -> StoreResult<HashMap<ScheduleId, (u32, u32)>> {
    let ids: Vec<&ScheduleId> = due.iter().filter(|d| d.policies.overlap != OverlapPolicy::Allow).map(|d| &d.id).collect();
    let mut counts = HashMap::new();
    if ids.is_empty() {
        return Ok(counts);
    }
    let rows: Vec<(ScheduleId, i64, i64)> = sqlx::query_as(
        "SELECT schedule_id, \
                sum(NOT (state = 'pending' AND dispatch_at IS NULL)), \
                sum(state = 'pending' AND dispatch_at IS NULL) \
         FROM runs INDEXED BY runs_active \
         WHERE schedule_id IN (SELECT unhex(value) FROM json_each(?1)) \
           AND state IN ('pending', 'running', 'retrying') \
         GROUP BY schedule_id",
    )
    .bind(hex_array(ids))
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err("cannot count active runs"))?;
    for (id, active, queued) in rows {
        counts.insert(id, (u32_col(active, "active runs")?, u32_col(queued, "queued runs")?));
    }
    Ok(counts)
}

/// Overlap `replace`: the schedules' active runs (not the ones just inserted) are to be cancelled.
/// Those not started yet are cancelled here; all are returned, so the dispatcher stops the
/// running ones.
async fn replace_active(
    tx: &mut Transaction<'static, Sqlite>,
    schedules: &[ScheduleId],
    inserted: &HashSet<RunId>,
    now: Timestamp,
) -> StoreResult<Vec<RunId>> {
    let ctx = "cannot cancel replaced runs";
    let active: Vec<RunId> = sqlx::query_scalar(
        "SELECT id FROM runs INDEXED BY runs_active \
         WHERE schedule_id IN (SELECT unhex(value) FROM json_each(?1)) \
           AND state IN ('pending', 'running', 'retrying') \
           AND NOT (state = 'pending' AND dispatch_at IS NULL)",
    )
    .bind(hex_array(schedules))
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err(ctx))?;
    let cancel: Vec<RunId> = active.into_iter().filter(|id| !inserted.contains(id)).collect();
    if !cancel.is_empty() {
        sqlx::query(
            "UPDATE runs SET state = 'cancelled', finished_at = ?2, \
                 error = 'cancelled: replaced by a newer run of its schedule', \
                 lease_owner = NULL, lease_expires_at = NULL \
             WHERE id IN (SELECT unhex(value) FROM json_each(?1)) AND +state IN ('pending', 'retrying')",
        )
        .bind(hex_array(&cancel))
        .bind(ms(now))
        .execute(&mut **tx)
        .await
        .map_err(db_err(ctx))?;
    }
    Ok(cancel)
}
