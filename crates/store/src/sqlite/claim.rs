//! `claim_due`: in one write transaction, due schedules become runs (one per slot, planned by
//! `core::plan::plan_fires`), each schedule's next fire time moves on, and the runs due now are
//! leased to the claiming node. Set-based: a handful of statements whatever the batch size.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use schedulezero_core::Timestamp;
use schedulezero_core::plan::{DueSchedule, SlotFate, plan_fires};
use schedulezero_core::policy::{OverlapPolicy, Policies};
use schedulezero_core::run::{Run, RunId, RunState};
use schedulezero_core::schedule::{Schedule, ScheduleId, ScheduleState, Target};
use schedulezero_core::trigger::Trigger;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Sqlite, Transaction};
use uuid::Uuid;

use super::codec::{db_err, from_ms, get, hex_array, ms, parse_json, parse_policies, parse_trigger, u32_col};
use super::{LEASE_TTL, SqliteStore, batch};
use crate::{ClaimBatch, Dispatch, StoreError, StoreResult};

/// A schedule's definition as the claim needs it, parsed once per revision.
pub(super) struct Parsed {
    revision: i64,
    trigger: Trigger,
    policies: Policies,
    handler_id: String,
    method: String,
    /// The params as stored (validated JSON): parsed for each run sent, not kept parsed, since
    /// a parsed object costs several times its text in memory for every cached schedule.
    params_text: String,
}

/// Parsed definitions of the schedules this node claimed lately, by id. Claims read only each
/// due schedule's id, next fire time and revision; the trigger, policies and target are parsed
/// again only when the revision changed (an update, on any node).
#[derive(Default)]
pub(super) struct ScheduleCache {
    map: Mutex<HashMap<ScheduleId, Arc<Parsed>>>,
}

/// Past this many entries the cache starts over (a million schedules cost a re-parse each).
pub(super) const CACHE_CAP: usize = 200_000;

impl ScheduleCache {
    fn get(&self, id: &ScheduleId, revision: i64) -> Option<Arc<Parsed>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|p| p.revision == revision).cloned()
    }

    fn put(&self, id: ScheduleId, parsed: Arc<Parsed>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_CAP {
            map.clear();
        }
        map.insert(id, parsed);
    }

    /// Refreshes the entry of a schedule this node just updated, if it holds one. A new schedule
    /// is parsed at its first claim instead: caching it at creation cost ~460 bytes for every
    /// schedule created and not yet due (2.3 MB for 5,000), to save a parse the claim, done
    /// `claim_ahead` before the slot, can afford.
    pub(super) fn refresh(&self, s: &Schedule, revision: i64, params_text: String) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if s.state != ScheduleState::Active {
            map.remove(&s.id);
            return;
        }
        if !map.contains_key(&s.id) {
            return;
        }
        map.insert(
            s.id,
            Arc::new(Parsed {
                revision,
                trigger: s.trigger.clone(),
                policies: s.policies,
                handler_id: s.target.handler_id.clone(),
                method: s.target.method.clone(),
                params_text,
            }),
        );
    }

    pub(super) fn forget(&self, id: &ScheduleId) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

fn decode_parsed(row: &SqliteRow) -> StoreResult<Parsed> {
    let created_at = from_ms(get(row, "created_at")?)?;
    let trigger: String = get(row, "trigger")?;
    let policies: String = get(row, "policies")?;
    let params_text: String = get(row, "params")?;
    Ok(Parsed {
        revision: get(row, "revision")?,
        trigger: parse_trigger(&trigger, created_at)?,
        policies: parse_policies(&policies)?,
        handler_id: get(row, "handler_id")?,
        method: get(row, "method")?,
        params_text: {
            parse_json(&params_text, "stored params")?;
            params_text
        },
    })
}

/// A due schedule inside the claim.
struct Due {
    id: ScheduleId,
    next_fire_at: Timestamp,
    def: Arc<Parsed>,
}

/// Reads the due schedules: their ids, next fire times and revisions in one row, then the
/// definitions this node has not parsed at their revision. Unreadable ones are returned apart.
async fn read_due(
    store: &SqliteStore,
    tx: &mut Transaction<'static, Sqlite>,
    now: Timestamp,
    limit: usize,
) -> StoreResult<(Vec<Due>, Vec<ScheduleId>)> {
    let ctx = "cannot read due schedules";
    let list: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(hex(id), next_fire_at, revision)) FROM ( \
             SELECT id, next_fire_at, revision FROM schedules \
             WHERE state = 'active' AND next_fire_at <= ?1 ORDER BY next_fire_at LIMIT ?2)",
    )
    .bind(ms(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err(ctx))?;
    let list: Vec<(String, i64, i64)> =
        serde_json::from_str(&list).map_err(|e| StoreError::Corrupt(format!("due schedules: {e}")))?;
    let mut due = Vec::with_capacity(list.len());
    let mut missing = Vec::new();
    for (id, next_fire_at, revision) in list {
        let id = Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("schedule id {id}: {e}")))?;
        let next_fire_at = from_ms(next_fire_at)?;
        match store.cache.get(&id, revision) {
            Some(def) => due.push(Due { id, next_fire_at, def }),
            None => missing.push((id, next_fire_at)),
        }
    }
    let mut broken = Vec::new();
    if !missing.is_empty() {
        let rows = sqlx::query(
            "SELECT id, revision, trigger, policies, handler_id, method, params, created_at \
             FROM schedules WHERE id IN (SELECT unhex(value) FROM json_each(?1))",
        )
        .bind(hex_array(missing.iter().map(|(id, _)| id)))
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err(ctx))?;
        let mut parsed = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: ScheduleId = get(row, "id")?;
            match decode_parsed(row) {
                Ok(def) => {
                    let def = Arc::new(def);
                    store.cache.put(id, def.clone());
                    parsed.insert(id, def);
                }
                Err(e) => {
                    tracing::error!(schedule = %id, error = %e, "a stored schedule cannot be read; pausing it");
                    broken.push(id);
                }
            }
        }
        for (id, next_fire_at) in missing {
            if let Some(def) = parsed.remove(&id) {
                due.push(Due { id, next_fire_at, def });
            }
        }
    }
    Ok((due, broken))
}

/// One new run, as bound into the INSERT below.
struct NewRun<'a> {
    id: RunId,
    schedule_id: ScheduleId,
    scheduled_for: i64,
    dispatch_at: Option<i64>,
    state: &'static str,
    max_attempts: u32,
    handler_id: &'a str,
    method: &'a str,
    params: &'a str,
    slot_count: u32,
    finished_at: Option<i64>,
    lease_owner: Option<&'a str>,
    lease_expires_at: Option<i64>,
    error: Option<String>,
    /// 1 for a run started by the claim itself, else 0.
    attempt: u32,
    /// When the started attempt started (the claim's time).
    started_at: Option<i64>,
}

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

pub(super) async fn claim_due(
    store: &SqliteStore,
    node: &str,
    now: Timestamp,
    limit: usize,
    start_ready: bool,
) -> StoreResult<ClaimBatch> {
    let ctx = "cannot claim due schedules";
    let mut batch = ClaimBatch::default();
    if limit == 0 {
        return Ok(batch);
    }
    let mut tx = store.write(ctx).await?;
    let (due, broken) = read_due(store, &mut tx, now, limit).await?;
    batch.schedules = due.len() + broken.len();
    if batch.schedules == 0 {
        return Ok(batch);
    }
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
    let mut next_fires: Vec<(ScheduleId, Option<i64>)> = Vec::with_capacity(due.len());
    let mut replace: Vec<ScheduleId> = Vec::new();
    for (i, d) in due.iter().enumerate() {
        let (active_runs, queued_runs) = counts.get(&d.id).copied().unwrap_or((0, 0));
        let plan = plan_fires(
            &DueSchedule {
                id: d.id,
                trigger: &d.def.trigger,
                policies: &d.def.policies,
                next_fire_at: d.next_fire_at,
                active_runs,
                queued_runs,
            },
            now,
        );
        next_fires.push((d.id, plan.next_fire_at.map(ms)));
        if plan.cancel_active {
            replace.push(d.id);
        }
        let max_attempts = d.def.policies.retry.max_attempts;
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
            // Asked to, a run due now is started here, as attempt 1, in the claim's own commit:
            // the dispatcher sends it without another write (the start is committed before the send).
            let started = leased && start_ready;
            let state = if started { RunState::Running } else { state };
            let id = Uuid::now_v7();
            rows.push(NewRun {
                id,
                schedule_id: d.id,
                scheduled_for: ms(slot.scheduled_for),
                dispatch_at: dispatch_at.map(ms),
                state: state.as_str(),
                max_attempts,
                handler_id: &d.def.handler_id,
                method: &d.def.method,
                params: &d.def.params_text,
                slot_count,
                finished_at: state.is_terminal().then(|| ms(now)),
                lease_owner: leased.then_some(node),
                lease_expires_at: leased.then_some(lease_until),
                error,
                attempt: u32::from(started),
                started_at: started.then(|| ms(now)),
            });
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
    let planned_rows = rows.len();
    let mut inserted_rows = 0;
    for chunk in batch::chunks(&rows) {
        let sql = format!(
            "INSERT INTO runs (id, schedule_id, scheduled_for, dispatch_at, state, max_attempts, \
                               handler_id, method, params, slot_count, finished_at, lease_owner, \
                               lease_expires_at, error, created_at, attempt, started_at, \
                               attempt_started_at) \
             VALUES {} ON CONFLICT (schedule_id, scheduled_for) DO NOTHING",
            batch::values(chunk.len(), 18)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(batch::keep_prepared(chunk.len()));
        for r in chunk {
            q = q
                .bind(r.id)
                .bind(r.schedule_id)
                .bind(r.scheduled_for)
                .bind(r.dispatch_at)
                .bind(r.state)
                .bind(r.max_attempts)
                .bind(r.handler_id)
                .bind(r.method)
                .bind(r.params)
                .bind(r.slot_count)
                .bind(r.finished_at)
                .bind(r.lease_owner)
                .bind(r.lease_expires_at)
                .bind(r.error.as_deref())
                .bind(ms(now))
                .bind(r.attempt)
                .bind(r.started_at)
                .bind(r.started_at);
        }
        inserted_rows += q.execute(&mut *tx).await.map_err(db_err(ctx))?.rows_affected() as usize;
    }
    // Usually every slot was new; otherwise, which ones were (ours exist, the others do not).
    let inserted: Option<HashSet<RunId>> = if inserted_rows == planned_rows {
        None
    } else if inserted_rows == 0 {
        Some(HashSet::new())
    } else {
        let ids: Vec<RunId> =
            sqlx::query_scalar("SELECT id FROM runs WHERE id IN (SELECT unhex(value) FROM json_each(?1))")
                .bind(hex_array(planned.iter().map(|p| &p.id)))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err(ctx))?;
        Some(ids.into_iter().collect())
    };
    let was_inserted = |id: &RunId| inserted.as_ref().is_none_or(|set| set.contains(id));
    drop(rows);

    // Move each schedule on; an exhausted one is finished (and frees its name).
    for chunk in batch::chunks(&next_fires) {
        let sql = format!(
            "UPDATE schedules SET next_fire_at = j.column2, \
                 state = CASE WHEN j.column2 IS NULL THEN 'finished' ELSE state END, \
                 updated_at = CASE WHEN j.column2 IS NULL THEN ? ELSE updated_at END \
             FROM (VALUES {}) AS j WHERE schedules.id = j.column1",
            batch::values(chunk.len(), 2)
        );
        let mut q =
            sqlx::query(AssertSqlSafe(sql)).persistent(batch::keep_prepared(chunk.len())).bind(ms(now));
        for (id, next) in chunk {
            q = q.bind(*id).bind(*next);
        }
        q.execute(&mut *tx).await.map_err(db_err(ctx))?;
    }

    if !replace.is_empty() {
        let new: HashSet<RunId> = planned.iter().map(|p| p.id).collect();
        batch.cancel = replace_active(&mut tx, &replace, &new, now).await?;
    }

    tx.commit().await.map_err(db_err(ctx))?;
    // A finished schedule never fires again: its parsed definition would only hold memory (a
    // server creating one-off date schedules would otherwise keep every one it ever fired).
    for (id, next) in &next_fires {
        if next.is_none() {
            store.cache.forget(id);
        }
    }

    for p in planned {
        if !was_inserted(&p.id) {
            continue;
        }
        batch.slots += p.slot_count as usize;
        match p.state {
            RunState::Missed => batch.missed += p.slot_count as usize,
            RunState::Skipped => batch.skipped += 1,
            _ if p.dispatch_at.is_none() => batch.queued += 1,
            _ if !p.leased => batch.later += 1,
            _ => {}
        }
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
                attempt: u32::from(p.state == RunState::Running),
                max_attempts: d.def.policies.retry.max_attempts,
                target: Target {
                    handler_id: d.def.handler_id.clone(),
                    method: d.def.method.clone(),
                    // Checked when decoded or written: it parses.
                    params: serde_json::from_str(&d.def.params_text).unwrap_or_default(),
                },
                created_at: now,
                started_at: (p.state == RunState::Running).then_some(now),
                finished_at: None,
                result: None,
                error: None,
                slot_count: p.slot_count,
            },
            policies: d.def.policies,
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
    let ids: Vec<&ScheduleId> =
        due.iter().filter(|d| d.def.policies.overlap != OverlapPolicy::Allow).map(|d| &d.id).collect();
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

/// Overlap `replace`: the schedules' active runs (not the ones this claim made) are to be cancelled.
/// Those not started yet are cancelled here; all are returned, so the dispatcher stops the
/// running ones.
async fn replace_active(
    tx: &mut Transaction<'static, Sqlite>,
    schedules: &[ScheduleId],
    new: &HashSet<RunId>,
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
    let cancel: Vec<RunId> = active.into_iter().filter(|id| !new.contains(id)).collect();
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

#[cfg(test)]
mod tests {
    use schedulezero_core::trigger::{ParseContext, Trigger};
    use serde_json::json;

    use crate::Store;
    use crate::conformance::{at, interval, schedule, t0};

    impl super::ScheduleCache {
        fn len(&self) -> usize {
            self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
        }
    }

    /// Date schedules fire once: a server creating them all day must not keep each one it fired.
    #[tokio::test]
    async fn a_schedule_the_claim_finishes_leaves_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::super::SqliteStore::open_path(dir.path().join("s.db")).await.expect("open");
        let ctx = ParseContext { now: t0(), local_zone: schedulezero_core::chrono_tz::UTC };
        let date =
            Trigger::parse(&json!({"type": "date", "run_date": at(10).to_rfc3339()}), &ctx).expect("date");
        let once = schedule("once", date, Default::default());
        let every = schedule("every", interval(60, at(10), 0), Default::default());
        store.insert_schedule(&once).await.expect("insert");
        store.insert_schedule(&every).await.expect("insert");
        assert_eq!(store.cache.len(), 0, "new schedules are parsed at their first claim");
        let batch = store.claim_due("n", at(10), 10, false).await.expect("claim");
        assert_eq!(batch.slots, 2);
        assert_eq!(store.cache.len(), 1, "the finished date schedule is forgotten, the interval kept");
    }
}
