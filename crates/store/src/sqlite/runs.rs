//! Runs after the claim: leases, attempts (start, record), start-up recovery, "run now", history
//! and retention.

use std::collections::HashMap;

use schedulezero_core::Timestamp;
use schedulezero_core::policy::{Policies, RetryPolicy};
use schedulezero_core::run::{Attempt, AttemptOutcome, NextStep, Run, RunId, RunState, after_attempt};
use schedulezero_core::schedule::ScheduleId;
use sqlx::{AssertSqlSafe, Sqlite, Transaction};

use super::codec::{
    RUN_COLUMNS, attempt_from_row, db_err, from_ms, get, hex_array, is_unique_violation, ms, opt_ms,
    parse_policies, run_from_row, run_state, u32_col,
};
use super::{LEASE_TTL, SqliteStore, batch};
use crate::{AttemptEnd, AttemptStart, Dispatch, Recovery, RunCount, RunFilter, StoreError, StoreResult};

/// Runs deleted per transaction by `purge_history`, so other writers get the lock in between.
const PURGE_BATCH: i64 = 2_000;

pub(super) async fn next_wake(store: &SqliteStore) -> StoreResult<Option<Timestamp>> {
    let ctx = "cannot compute the next wake-up";
    let mut conn = store.reader.acquire().await.map_err(db_err(ctx))?;
    let schedule: Option<i64> = sqlx::query_scalar(
        "SELECT next_fire_at FROM schedules WHERE state = 'active' AND next_fire_at IS NOT NULL \
         ORDER BY next_fire_at LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err(ctx))?;
    // The first run waiting with no lease on it. Leased runs are their node's to start or
    // release; a dead node's expired leases are found by the polling of the others.
    let unleased: Option<i64> = sqlx::query_scalar(
        "SELECT dispatch_at FROM runs INDEXED BY runs_due \
         WHERE state IN ('pending', 'retrying') AND dispatch_at IS NOT NULL AND lease_expires_at IS NULL \
         ORDER BY dispatch_at LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err(ctx))?;
    [schedule, unleased].into_iter().flatten().min().map(from_ms).transpose()
}

/// The policies of the runs' schedules (defaults, with the run's attempts, for runs without one).
async fn attach_policies<'c, E>(executor: E, runs: Vec<Run>) -> StoreResult<Vec<Dispatch>>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    let ids: Vec<ScheduleId> = runs.iter().filter_map(|r| r.schedule_id).collect();
    let mut policies: HashMap<ScheduleId, Policies> = HashMap::new();
    if !ids.is_empty() {
        let rows: Vec<(ScheduleId, String)> = sqlx::query_as(
            "SELECT id, policies FROM schedules WHERE id IN (SELECT unhex(value) FROM json_each(?1))",
        )
        .bind(hex_array(&ids))
        .fetch_all(executor)
        .await
        .map_err(db_err("cannot read the policies of leased runs"))?;
        for (id, text) in rows {
            policies.insert(id, parse_policies(&text)?);
        }
    }
    Ok(runs
        .into_iter()
        .map(|run| {
            let policies =
                run.schedule_id.and_then(|id| policies.get(&id).copied()).unwrap_or_else(|| Policies {
                    retry: RetryPolicy { max_attempts: run.max_attempts, ..RetryPolicy::default() },
                    ..Policies::default()
                });
            Dispatch { run, policies }
        })
        .collect())
}

pub(super) async fn lease_due(
    store: &SqliteStore,
    node: &str,
    now: Timestamp,
    limit: usize,
) -> StoreResult<Vec<Dispatch>> {
    let ctx = "cannot lease due runs";
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Usually nothing is due: find out on a reader, without taking the write lock.
    let any: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM runs INDEXED BY runs_due \
             WHERE state IN ('pending', 'retrying') AND dispatch_at IS NOT NULL AND dispatch_at <= ?2 \
               AND (lease_expires_at IS NULL OR (lease_expires_at <= ?2 AND lease_owner <> ?1)))",
    )
    .bind(node)
    .bind(ms(now))
    .fetch_one(&store.reader)
    .await
    .map_err(db_err(ctx))?;
    if !any {
        return Ok(Vec::new());
    }
    let mut tx = store.write(ctx).await?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE runs SET lease_owner = ?1, lease_expires_at = ?2 \
         WHERE rowid IN (SELECT rowid FROM runs INDEXED BY runs_due \
             WHERE state IN ('pending', 'retrying') AND dispatch_at IS NOT NULL AND dispatch_at <= ?3 \
               AND (lease_expires_at IS NULL OR (lease_expires_at <= ?3 AND lease_owner <> ?1)) \
             ORDER BY dispatch_at LIMIT ?4) \
         RETURNING {RUN_COLUMNS}"
    )))
    .bind(node)
    .bind(ms(now + LEASE_TTL))
    .bind(ms(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err(ctx))?;
    let mut runs = rows.iter().map(run_from_row).collect::<StoreResult<Vec<Run>>>()?;
    runs.sort_by_key(|r| (r.dispatch_at, r.id));
    let dispatches = attach_policies(&mut *tx, runs).await?;
    tx.commit().await.map_err(db_err(ctx))?;
    Ok(dispatches)
}

pub(super) async fn release(store: &SqliteStore, runs: &[RunId]) -> StoreResult<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let ctx = "cannot release leased runs";
    let mut tx = store.write(ctx).await?;
    sqlx::query(
        "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL \
         WHERE id IN (SELECT unhex(value) FROM json_each(?1)) AND +state IN ('pending', 'retrying')",
    )
    .bind(hex_array(runs))
    .execute(&mut *tx)
    .await
    .map_err(db_err(ctx))?;
    tx.commit().await.map_err(db_err(ctx))
}

pub(super) async fn start_attempts(store: &SqliteStore, starts: &[AttemptStart]) -> StoreResult<()> {
    if starts.is_empty() {
        return Ok(());
    }
    let ctx = "cannot start attempts";
    let mut tx = store.write(ctx).await?;
    for chunk in batch::chunks(starts) {
        // Only runs still waiting: one cancelled meanwhile stays cancelled.
        let sql = format!(
            "UPDATE runs SET state = 'running', attempt = j.column2, attempt_started_at = j.column3, \
                 started_at = coalesce(started_at, j.column3) \
             FROM (VALUES {}) AS j \
             WHERE runs.id = j.column1 AND +runs.state IN ('pending', 'retrying')",
            batch::values(chunk.len(), 3)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(batch::keep_prepared(chunk.len()));
        for st in chunk {
            q = q.bind(st.run_id).bind(st.attempt).bind(ms(st.started_at));
        }
        q.execute(&mut *tx).await.map_err(db_err(ctx))?;
    }
    tx.commit().await.map_err(db_err(ctx))
}

/// An ended attempt and its run's next move, as bound into the statements of `record_in`.
struct Ended<'a> {
    run_id: RunId,
    number: u32,
    instance: Option<&'a str>,
    started_at: i64,
    finished_at: i64,
    outcome: &'static str,
    result: Option<String>,
    error: Option<&'a str>,
    state: &'static str,
    dispatch_at: Option<i64>,
    run_finished_at: Option<i64>,
}

pub(super) async fn record_attempts(
    store: &SqliteStore,
    ends: &[AttemptEnd],
    now: Timestamp,
) -> StoreResult<()> {
    if ends.is_empty() {
        return Ok(());
    }
    let ctx = "cannot record attempts";
    let mut tx = store.write(ctx).await?;
    record_in(&mut tx, ends, now).await?;
    tx.commit().await.map_err(db_err(ctx))
}

/// New runs and ended attempts in one commit (the recorder's batches).
pub(super) async fn record_outcomes(
    store: &SqliteStore,
    new_runs: &[Run],
    ends: &[AttemptEnd],
    now: Timestamp,
) -> StoreResult<()> {
    let ctx = "cannot record outcomes";
    let mut tx = store.write(ctx).await?;
    insert_in(&mut tx, new_runs, true).await?;
    if !ends.is_empty() {
        record_in(&mut tx, ends, now).await?;
    }
    tx.commit().await.map_err(db_err(ctx))
}

/// Records ended attempts and moves their runs on, inside a write transaction.
async fn record_in(
    tx: &mut Transaction<'static, Sqlite>,
    ends: &[AttemptEnd],
    now: Timestamp,
) -> StoreResult<()> {
    let ctx = "cannot record attempts";
    let mut rows = Vec::with_capacity(ends.len());
    let mut finished = Vec::new();
    for end in ends {
        let a = &end.attempt;
        let (state, dispatch_at, run_finished_at) = match end.next {
            NextStep::Retry { at } => (RunState::Retrying, Some(ms(at)), None),
            NextStep::Finish(state) => {
                finished.push(a.run_id);
                (state, None, Some(ms(a.finished_at)))
            }
        };
        rows.push(Ended {
            run_id: a.run_id,
            number: a.number,
            instance: a.instance.as_deref(),
            started_at: ms(a.started_at),
            finished_at: ms(a.finished_at),
            outcome: a.outcome.as_str(),
            result: a.result.as_ref().map(|v| v.to_string()),
            error: a.error.as_deref(),
            state: state.as_str(),
            dispatch_at,
            run_finished_at,
        });
    }
    for chunk in batch::chunks(&rows) {
        let sql = format!(
            "INSERT INTO attempts (run_id, number, instance, started_at, finished_at, outcome, result, error) \
             VALUES {} ON CONFLICT (run_id, number) DO NOTHING",
            batch::values(chunk.len(), 8)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(batch::keep_prepared(chunk.len()));
        for r in chunk {
            q = q
                .bind(r.run_id)
                .bind(r.number)
                .bind(r.instance)
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.outcome)
                .bind(r.result.as_deref())
                .bind(r.error);
        }
        q.execute(&mut **tx).await.map_err(db_err(ctx))?;
        let sql = format!(
            "UPDATE runs SET state = j.column2, dispatch_at = coalesce(j.column3, dispatch_at), \
                 attempt = max(attempt, j.column4), finished_at = j.column5, \
                 result = j.column6, error = j.column7, lease_owner = NULL, lease_expires_at = NULL \
             FROM (VALUES {}) AS j \
             WHERE runs.id = j.column1 AND +runs.state IN ('pending', 'running', 'retrying') \
               AND runs.attempt <= j.column4",
            batch::values(chunk.len(), 7)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(batch::keep_prepared(chunk.len()));
        for r in chunk {
            q = q
                .bind(r.run_id)
                .bind(r.state)
                .bind(r.dispatch_at)
                .bind(r.number)
                .bind(r.run_finished_at)
                .bind(r.result.as_deref())
                .bind(r.error);
        }
        q.execute(&mut **tx).await.map_err(db_err(ctx))?;
    }
    release_queued(tx, &finished, now).await
}

/// The runs queued behind runs that just ended become due, where no other run of their
/// schedule is active any more.
async fn release_queued(
    tx: &mut Transaction<'static, Sqlite>,
    ended: &[RunId],
    now: Timestamp,
) -> StoreResult<()> {
    if ended.is_empty() {
        return Ok(());
    }
    let ctx = "cannot release queued runs";
    let any: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM runs INDEXED BY runs_queued \
         WHERE state = 'pending' AND dispatch_at IS NULL)",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err(ctx))?;
    if !any {
        return Ok(());
    }
    sqlx::query(
        "UPDATE runs INDEXED BY runs_queued SET dispatch_at = ?2 \
         WHERE state = 'pending' AND dispatch_at IS NULL \
           AND schedule_id IN (SELECT r.schedule_id FROM runs r \
                               WHERE r.id IN (SELECT unhex(value) FROM json_each(?1))) \
           AND NOT EXISTS (SELECT 1 FROM runs a \
                           INDEXED BY runs_active \
                           WHERE a.schedule_id = runs.schedule_id \
                             AND a.state IN ('pending', 'running', 'retrying') \
                             AND NOT (a.state = 'pending' AND a.dispatch_at IS NULL))",
    )
    .bind(hex_array(ended))
    .bind(ms(now))
    .execute(&mut **tx)
    .await
    .map_err(db_err(ctx))?;
    Ok(())
}

/// A well-mixed number from a run id and the time, for retry jitter.
fn random_for(id: RunId, now: Timestamp) -> u64 {
    let (hi, lo) = id.as_u64_pair();
    let mut x = hi ^ lo.rotate_left(17) ^ (now.timestamp_millis() as u64);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub(super) async fn recover(store: &SqliteStore, now: Timestamp) -> StoreResult<Recovery> {
    let ctx = "cannot recover interrupted runs";
    let mut recovery = Recovery::default();
    let mut tx = store.write(ctx).await?;
    let rows = sqlx::query(
        "SELECT r.id, r.attempt, r.max_attempts, \
                coalesce(r.attempt_started_at, r.started_at, r.created_at) AS attempt_started_at, \
                s.policies \
         FROM runs r INDEXED BY runs_active LEFT JOIN schedules s ON s.id = r.schedule_id \
         WHERE r.state IN ('pending', 'running', 'retrying') AND r.state = 'running'",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err(ctx))?;
    let mut ends = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: RunId = get(row, "id")?;
        let number = u32_col(get(row, "attempt")?, "attempt")?.max(1);
        let max_attempts = u32_col(get(row, "max_attempts")?, "max_attempts")?;
        let started_at = from_ms(get(row, "attempt_started_at")?)?;
        let policies: Option<String> = get(row, "policies")?;
        let retry = match policies.as_deref().map(parse_policies) {
            Some(Ok(p)) => Some(p.retry),
            Some(Err(e)) => {
                tracing::warn!(run = %id, error = %e, "the run's schedule has unreadable policies; not retrying it");
                None
            }
            None => None,
        };
        let next = match retry {
            Some(retry) => after_attempt(
                AttemptOutcome::Interrupted,
                number,
                max_attempts,
                &retry,
                now,
                random_for(id, now),
            ),
            None => NextStep::Finish(RunState::Interrupted),
        };
        if matches!(next, NextStep::Retry { .. }) {
            recovery.retried += 1;
        }
        ends.push(AttemptEnd {
            attempt: Attempt {
                run_id: id,
                number,
                instance: None,
                started_at,
                finished_at: now,
                outcome: AttemptOutcome::Interrupted,
                result: None,
                error: Some("interrupted: the server stopped while this attempt was running".to_string()),
            },
            next,
        });
    }
    recovery.interrupted = ends.len();
    record_in(&mut tx, &ends, now).await?;
    let released = sqlx::query(
        "UPDATE runs INDEXED BY runs_due SET lease_owner = NULL, lease_expires_at = NULL \
         WHERE state IN ('pending', 'retrying') AND dispatch_at IS NOT NULL AND lease_expires_at IS NOT NULL",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err(ctx))?
    .rows_affected();
    recovery.released = usize::try_from(released).unwrap_or(usize::MAX);
    // "Run now" runs that never started: their callers are gone with the process.
    let orphaned = sqlx::query(
        "UPDATE runs INDEXED BY runs_active SET state = 'interrupted', finished_at = ?1, \
             error = 'interrupted: the server stopped before this run started' \
         WHERE schedule_id IS NULL AND state IN ('pending', 'running', 'retrying') \
           AND state = 'pending' AND dispatch_at IS NULL",
    )
    .bind(ms(now))
    .execute(&mut *tx)
    .await
    .map_err(db_err(ctx))?
    .rows_affected();
    recovery.interrupted += usize::try_from(orphaned).unwrap_or(usize::MAX);
    tx.commit().await.map_err(db_err(ctx))?;
    Ok(recovery)
}

/// `skip_existing`: a run whose id is already stored is left as it is (the recorder's retries).
pub(super) async fn insert(store: &SqliteStore, runs: &[Run], skip_existing: bool) -> StoreResult<()> {
    let ctx = "cannot insert a run";
    let mut tx = store.write(ctx).await?;
    insert_in(&mut tx, runs, skip_existing).await?;
    tx.commit().await.map_err(db_err(ctx))
}

/// Inserts runs set-based (see `batch`): the recorder's batches of "run now" runs are thousands
/// a second. With `skip_existing`, runs whose id is stored already are left as they are;
/// without it, a run on a slot its schedule already has is `DuplicateSlot`.
async fn insert_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    runs: &[Run],
    skip_existing: bool,
) -> StoreResult<()> {
    let ctx = "cannot insert runs";
    let verb = if skip_existing { "INSERT OR IGNORE" } else { "INSERT" };
    let params: Vec<String> = runs.iter().map(|r| r.target.params.to_string()).collect();
    let results: Vec<Option<String>> =
        runs.iter().map(|r| r.result.as_ref().map(|v| v.to_string())).collect();
    let indexed: Vec<usize> = (0..runs.len()).collect();
    for chunk in batch::chunks(&indexed) {
        let sql = format!(
            "{verb} INTO runs (id, schedule_id, scheduled_for, dispatch_at, state, attempt, \
                 max_attempts, handler_id, method, params, created_at, started_at, attempt_started_at, \
                 finished_at, result, error, slot_count) VALUES {}",
            batch::values(chunk.len(), 17)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(batch::keep_prepared(chunk.len()));
        for &i in chunk {
            let run = &runs[i];
            q = q
                .bind(run.id)
                .bind(run.schedule_id)
                .bind(ms(run.scheduled_for))
                .bind(opt_ms(run.dispatch_at))
                .bind(run.state.as_str())
                .bind(run.attempt)
                .bind(run.max_attempts)
                .bind(&run.target.handler_id)
                .bind(&run.target.method)
                .bind(&params[i])
                .bind(ms(run.created_at))
                .bind(opt_ms(run.started_at))
                .bind(opt_ms(run.started_at))
                .bind(opt_ms(run.finished_at))
                .bind(results[i].as_deref())
                .bind(run.error.as_deref())
                .bind(run.slot_count);
        }
        q.execute(&mut **tx).await.map_err(|e| {
            // A single run on a taken slot (`run_schedule_now`) is told so; it tries the next.
            let slot = match chunk {
                &[i] if is_unique_violation(&e, "runs.scheduled_for") => {
                    runs[i].schedule_id.map(|schedule_id| (schedule_id, runs[i].scheduled_for))
                }
                _ => None,
            };
            match slot {
                Some((schedule_id, scheduled_for)) => {
                    StoreError::DuplicateSlot { schedule_id, scheduled_for }
                }
                None => db_err(ctx)(e),
            }
        })?;
    }
    Ok(())
}

pub(super) async fn get_run(store: &SqliteStore, id: RunId) -> StoreResult<Option<Run>> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1")))
        .bind(id)
        .fetch_optional(&store.reader)
        .await
        .map_err(db_err("cannot read a run"))?;
    row.as_ref().map(run_from_row).transpose()
}

pub(super) async fn list(store: &SqliteStore, filter: &RunFilter) -> StoreResult<Vec<Run>> {
    let ctx = "cannot list runs";
    let mut conn = store.reader.acquire().await.map_err(db_err(ctx))?;
    let cursor = match filter.before {
        None => None,
        Some(before) => {
            let slot: Option<i64> = sqlx::query_scalar("SELECT scheduled_for FROM runs WHERE id = ?1")
                .bind(before)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err(ctx))?;
            match slot {
                Some(slot) => Some((slot, before)),
                None => return Err(StoreError::NotFound { kind: "run", id: before.to_string() }),
            }
        }
    };
    // Several states of the runs_by_state index (the failures): one read per state, each in
    // slot order and stopping at the limit, merged here. As one `state IN (…)` query, SQLite
    // (without statistics) reads every run ever recorded in those states to sort them.
    if filter.limit > 0 && filter.states.len() > 1 && filter.states.iter().all(|s| by_state_indexed(*s)) {
        let mut runs = Vec::new();
        for state in &filter.states {
            runs.extend(list_states(&mut conn, filter, std::slice::from_ref(state), cursor).await?);
        }
        runs.sort_by_key(|r| std::cmp::Reverse((r.scheduled_for, r.id)));
        runs.dedup_by_key(|r| r.id);
        runs.truncate(filter.limit as usize);
        return Ok(runs);
    }
    list_states(&mut conn, filter, &filter.states, cursor).await
}

/// Whether runs in this state are in the partial `runs_by_state` index.
fn by_state_indexed(state: RunState) -> bool {
    !matches!(state, RunState::Pending | RunState::Running | RunState::Retrying | RunState::Succeeded)
}

/// `list` with these states in place of the filter's.
async fn list_states(
    conn: &mut sqlx::SqliteConnection,
    filter: &RunFilter,
    states: &[RunState],
    cursor: Option<(i64, RunId)>,
) -> StoreResult<Vec<Run>> {
    let ctx = "cannot list runs";
    let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if filter.schedule_id.is_some() {
        sql.push_str(&format!(" AND schedule_id = ?{}", next()));
    }
    if filter.handler_id.is_some() {
        sql.push_str(&format!(" AND handler_id = ?{}", next()));
    }
    if !states.is_empty() {
        let marks: Vec<String> = states.iter().map(|_| format!("?{}", next())).collect();
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
        if states.iter().all(|s| by_state_indexed(*s)) {
            // Lets the planner use the partial runs_by_state index.
            sql.push_str(" AND state NOT IN ('pending', 'running', 'retrying', 'succeeded')");
        }
    }
    if filter.from.is_some() {
        sql.push_str(&format!(" AND scheduled_for >= ?{}", next()));
    }
    if filter.to.is_some() {
        sql.push_str(&format!(" AND scheduled_for < ?{}", next()));
    }
    if cursor.is_some() {
        let (a, b) = (next(), next());
        sql.push_str(&format!(" AND (scheduled_for, id) < (?{a}, ?{b})"));
    }
    sql.push_str(" ORDER BY scheduled_for DESC, id DESC");
    if filter.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", filter.limit));
    }
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(id) = filter.schedule_id {
        q = q.bind(id);
    }
    if let Some(h) = &filter.handler_id {
        q = q.bind(h.clone());
    }
    for s in states {
        q = q.bind(s.as_str());
    }
    if let Some(from) = filter.from {
        q = q.bind(ms(from));
    }
    if let Some(to) = filter.to {
        q = q.bind(ms(to));
    }
    if let Some((slot, id)) = cursor {
        q = q.bind(slot).bind(id);
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(db_err(ctx))?;
    rows.iter().map(run_from_row).collect()
}

pub(super) async fn list_attempts(store: &SqliteStore, run: RunId) -> StoreResult<Vec<Attempt>> {
    let rows = sqlx::query(
        "SELECT run_id, number, instance, started_at, finished_at, outcome, result, error \
         FROM attempts WHERE run_id = ?1 ORDER BY number",
    )
    .bind(run)
    .fetch_all(&store.reader)
    .await
    .map_err(db_err("cannot list attempts"))?;
    rows.iter().map(attempt_from_row).collect()
}

pub(super) async fn cancel(store: &SqliteStore, run: RunId, now: Timestamp) -> StoreResult<RunState> {
    let ctx = "cannot cancel a run";
    let mut tx = store.write(ctx).await?;
    let row: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT state, dispatch_at FROM runs WHERE id = ?1")
            .bind(run)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err(ctx))?;
    let Some((state, dispatch_at)) = row else {
        return Err(StoreError::NotFound { kind: "run", id: run.to_string() });
    };
    let state = run_state(&state)?;
    if !matches!(state, RunState::Pending | RunState::Retrying) {
        return Ok(state);
    }
    sqlx::query(
        "UPDATE runs SET state = 'cancelled', finished_at = ?2, error = 'cancelled', \
             lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ?1",
    )
    .bind(run)
    .bind(ms(now))
    .execute(&mut *tx)
    .await
    .map_err(db_err(ctx))?;
    let was_queued = state == RunState::Pending && dispatch_at.is_none();
    if !was_queued {
        release_queued(&mut tx, &[run], now).await?;
    }
    tx.commit().await.map_err(db_err(ctx))?;
    Ok(RunState::Cancelled)
}

pub(super) async fn counts(store: &SqliteStore) -> StoreResult<Vec<RunCount>> {
    let rows = sqlx::query(
        "SELECT handler_id, state, count(*) AS runs, \
                coalesce(sum(CASE WHEN finished_at IS NOT NULL AND started_at IS NOT NULL \
                                  THEN finished_at - started_at ELSE 0 END), 0) AS total_ms \
         FROM runs GROUP BY handler_id, state ORDER BY handler_id, state",
    )
    .fetch_all(&store.reader)
    .await
    .map_err(db_err("cannot count runs"))?;
    rows.iter()
        .map(|row| {
            let state: String = get(row, "state")?;
            let runs: i64 = get(row, "runs")?;
            Ok(RunCount {
                handler_id: get(row, "handler_id")?,
                state: RunState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown run state '{state}'")))?,
                runs: u64::try_from(runs).unwrap_or(0),
                total_duration_ms: get(row, "total_ms")?,
            })
        })
        .collect()
}

/// Runs in a range of slots, counted by state without reading a run: every count comes from an
/// index alone. `runs_by_slot` counts them all; the partial `runs_by_state` (finished states
/// other than succeeded, one range per state) and `runs_active` (pending, running, retrying:
/// few at any time) count the others; succeeded is the rest. Grouping the slot range by state
/// would read every run in it for its state, and an index covering the state for all runs would
/// move on every state change (the write path is the bottleneck; see schema version 3).
fn count_by_state_sql() -> String {
    let indexed: Vec<String> =
        RunState::ALL.iter().filter(|s| by_state_indexed(**s)).map(|s| format!("'{}'", s.as_str())).collect();
    format!(
        "SELECT NULL, count(*) FROM runs INDEXED BY runs_by_slot \
             WHERE scheduled_for >= ?1 AND scheduled_for < ?2 \
         UNION ALL \
         SELECT state, count(*) FROM runs INDEXED BY runs_by_state \
             WHERE state IN ({}) AND state NOT IN ('pending', 'running', 'retrying', 'succeeded') \
               AND scheduled_for >= ?1 AND scheduled_for < ?2 GROUP BY state \
         UNION ALL \
         SELECT state, count(*) FROM runs INDEXED BY runs_active \
             WHERE state IN ('pending', 'running', 'retrying') \
               AND scheduled_for >= ?1 AND scheduled_for < ?2 GROUP BY state",
        indexed.join(", ")
    )
}

pub(super) async fn count_by_state(
    store: &SqliteStore,
    from: Timestamp,
    to: Timestamp,
) -> StoreResult<Vec<(RunState, u64)>> {
    let ctx = "cannot count runs by state";
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(AssertSqlSafe(count_by_state_sql()))
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&store.reader)
        .await
        .map_err(db_err(ctx))?;
    let mut all = 0;
    let mut counts = Vec::with_capacity(rows.len() + 1);
    for (state, n) in rows {
        let n = u64::try_from(n).unwrap_or(0);
        match state {
            None => all = n,
            Some(state) => counts.push((run_state(&state)?, n)),
        }
    }
    let others: u64 = counts.iter().map(|(_, n)| n).sum();
    let succeeded = all.checked_sub(others).ok_or_else(|| {
        StoreError::Corrupt(format!("the run indexes disagree: {all} runs in the range, {others} by state"))
    })?;
    if succeeded > 0 {
        counts.push((RunState::Succeeded, succeeded));
    }
    Ok(counts)
}

pub(super) async fn purge_history(store: &SqliteStore, before: Timestamp) -> StoreResult<u64> {
    let ctx = "cannot purge run history";
    let mut total = 0;
    loop {
        let mut tx = store.write(ctx).await?;
        let ids: Vec<RunId> = sqlx::query_scalar(
            // A run ends after its slot: scanning slots older than the cutoff (runs_by_slot)
            // finds every candidate.
            "DELETE FROM runs WHERE rowid IN ( \
                 SELECT rowid FROM runs INDEXED BY runs_by_slot WHERE scheduled_for < ?1 \
                   AND finished_at < ?1 AND state NOT IN ('pending', 'running', 'retrying') \
                 ORDER BY scheduled_for LIMIT ?2) \
             RETURNING id",
        )
        .bind(ms(before))
        .bind(PURGE_BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err(ctx))?;
        if !ids.is_empty() {
            sqlx::query("DELETE FROM attempts WHERE run_id IN (SELECT unhex(value) FROM json_each(?1))")
                .bind(hex_array(&ids))
                .execute(&mut *tx)
                .await
                .map_err(db_err(ctx))?;
        }
        tx.commit().await.map_err(db_err(ctx))?;
        total += ids.len() as u64;
        if (ids.len() as i64) < PURGE_BATCH {
            return Ok(total);
        }
        // Let other writers in between batches.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overview's count reads no finished run: the slot range and the per-state ranges are
    /// searches of covering indexes, and the only scan is of `runs_active`, which holds the
    /// unfinished runs alone.
    #[tokio::test]
    async fn count_by_state_reads_index_ranges_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open_path(dir.path().join("s.db")).await.expect("open");
        let plan = super::super::query_plan(&store, &count_by_state_sql()).await;
        let reads: Vec<&str> = plan.iter().map(String::as_str).filter(|l| l.contains(" runs ")).collect();
        assert_eq!(
            reads,
            [
                "SEARCH runs USING COVERING INDEX runs_by_slot (scheduled_for>? AND scheduled_for<?)",
                "SEARCH runs USING COVERING INDEX runs_by_state (state=? AND scheduled_for>? AND scheduled_for<?)",
                "SCAN runs USING INDEX runs_active",
            ],
            "{plan:?}"
        );
    }
}
