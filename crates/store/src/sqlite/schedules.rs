//! Schedules: insert (one or a million, set-based), get, find, update, delete, list.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use schedulezero_core::Timestamp;
use schedulezero_core::policy::Policies;
use schedulezero_core::schedule::{Schedule, ScheduleId, ScheduleState};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::codec::{SCHEDULE_COLUMNS, db_err, is_unique_violation, ms, opt_ms, schedule_from_row};
use super::{SqliteStore, batch};
use crate::{ScheduleFilter, StoreError, StoreResult};

/// One schedule as bound into the INSERT.
struct ScheduleRow<'a> {
    s: &'a Schedule,
    trigger: String,
    params: String,
    policies: String,
    revision: i64,
}

/// The row of `s`; `last` remembers the previous policies' text (bulk inserts mostly repeat one).
fn row_of<'a>(s: &'a Schedule, last: &mut Option<(Policies, String)>) -> ScheduleRow<'a> {
    let policies = match last {
        Some((p, text)) if *p == s.policies => text.clone(),
        _ => {
            let text = s.policies.to_json().to_string();
            *last = Some((s.policies, text.clone()));
            text
        }
    };
    ScheduleRow {
        s,
        trigger: s.trigger.to_json().to_string(),
        params: s.target.params.to_string(),
        policies,
        revision: first_revision(),
    }
}

/// A new schedule's revision: random, so a node's cache never mistakes a schedule deleted and
/// inserted again under the same id for the one it parsed before. (A random start per process,
/// then a counter: cheaper than asking the system for randomness a million times.)
fn first_revision() -> i64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| Uuid::now_v7().as_u64_pair().1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 2) as i64
}

fn encode_err(e: serde_json::Error) -> StoreError {
    StoreError::Backend { context: "cannot encode schedules".to_string(), source: Box::new(e) }
}

/// Where a write goes: one statement on its own (atomic as it is), or a transaction.
enum Writing {
    Single(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Tx(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Writing {
    fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        match self {
            Writing::Single(c) => c,
            Writing::Tx(t) => t,
        }
    }
}

pub(super) async fn insert_bulk(store: &SqliteStore, schedules: &[Schedule]) -> StoreResult<()> {
    if schedules.is_empty() {
        return Ok(());
    }
    let ctx = "cannot insert schedules";
    let mut seen = HashSet::new();
    for s in schedules.iter().filter(|s| s.state != ScheduleState::Finished) {
        if !seen.insert(s.name.as_str()) {
            return Err(StoreError::DuplicateName(s.name.clone()));
        }
    }
    let chunks = batch::chunks(schedules);
    // One statement is atomic by itself: a single chunk (an API create) skips BEGIN and COMMIT,
    // two of its three round trips to SQLite's thread.
    let mut tx = if chunks.len() == 1 {
        Writing::Single(store.writer.acquire().await.map_err(db_err(ctx))?)
    } else {
        Writing::Tx(store.write(ctx).await?)
    };
    let mut last_policies = None;
    for chunk in chunks {
        let rows: Vec<ScheduleRow<'_>> = chunk.iter().map(|s| row_of(s, &mut last_policies)).collect();
        let sql = format!(
            "INSERT INTO schedules (id, name, trigger, handler_id, method, params, policies, state, \
                                    next_fire_at, created_at, updated_at, revision) \
             VALUES {}",
            batch::values(rows.len(), 12)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(batch::keep_prepared(chunk.len()));
        for r in &rows {
            q = q
                .bind(r.s.id)
                .bind(&r.s.name)
                .bind(&r.trigger)
                .bind(&r.s.target.handler_id)
                .bind(&r.s.target.method)
                .bind(&r.params)
                .bind(&r.policies)
                .bind(r.s.state.as_str())
                .bind(opt_ms(r.s.next_fire_at))
                .bind(ms(r.s.created_at))
                .bind(ms(r.s.updated_at))
                .bind(r.revision);
        }
        match q.execute(tx.conn()).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e, "schedules.name") => {
                let names: Vec<&str> = chunk.iter().map(|s| s.name.as_str()).collect();
                let names = serde_json::to_string(&names).map_err(encode_err)?;
                let taken: Option<String> = sqlx::query_scalar(
                    "SELECT name FROM schedules WHERE state <> 'finished' \
                     AND name IN (SELECT value FROM json_each(?1)) LIMIT 1",
                )
                .bind(names)
                .fetch_optional(tx.conn())
                .await
                .map_err(db_err(ctx))?;
                let name = taken.or_else(|| chunk.first().map(|s| s.name.clone())).unwrap_or_default();
                return Err(StoreError::DuplicateName(name));
            }
            Err(e) => return Err(db_err(ctx)(e)),
        }
    }
    if let Writing::Tx(tx) = tx {
        tx.commit().await.map_err(db_err(ctx))?;
    }
    // New schedules are parsed at their first claim (`ScheduleCache::refresh`).
    Ok(())
}

pub(super) async fn get(store: &SqliteStore, id: ScheduleId) -> StoreResult<Option<Schedule>> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1")))
        .bind(id)
        .fetch_optional(&store.reader)
        .await
        .map_err(db_err("cannot read a schedule"))?;
    row.as_ref().map(schedule_from_row).transpose()
}

pub(super) async fn find(store: &SqliteStore, name: &str) -> StoreResult<Option<Schedule>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?1 AND state <> 'finished'"
    )))
    .bind(name)
    .fetch_optional(&store.reader)
    .await
    .map_err(db_err("cannot find a schedule"))?;
    row.as_ref().map(schedule_from_row).transpose()
}

pub(super) async fn update(store: &SqliteStore, s: &Schedule) -> StoreResult<()> {
    let ctx = "cannot update a schedule";
    let mut tx = store.write(ctx).await?;
    let params_text = s.target.params.to_string();
    let done: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
        "UPDATE schedules SET name = ?2, trigger = ?3, handler_id = ?4, method = ?5, params = ?6, \
             policies = ?7, state = ?8, next_fire_at = ?9, updated_at = ?10, revision = revision + 1 \
         WHERE id = ?1 RETURNING revision",
    )
    .bind(s.id)
    .bind(&s.name)
    .bind(s.trigger.to_json().to_string())
    .bind(&s.target.handler_id)
    .bind(&s.target.method)
    .bind(&params_text)
    .bind(s.policies.to_json().to_string())
    .bind(s.state.as_str())
    .bind(opt_ms(s.next_fire_at))
    .bind(ms(s.updated_at))
    .fetch_optional(&mut *tx)
    .await;
    match done {
        Ok(None) => Err(StoreError::NotFound { kind: "schedule", id: s.id.to_string() }),
        Ok(Some(revision)) => {
            tx.commit().await.map_err(db_err(ctx))?;
            store.cache.refresh(s, revision, params_text);
            Ok(())
        }
        Err(e) if is_unique_violation(&e, "schedules.name") => Err(StoreError::DuplicateName(s.name.clone())),
        Err(e) => Err(db_err(ctx)(e)),
    }
}

pub(super) async fn delete(store: &SqliteStore, id: ScheduleId, now: Timestamp) -> StoreResult<bool> {
    let ctx = "cannot delete a schedule";
    let mut tx = store.write(ctx).await?;
    let name: Option<String> = sqlx::query_scalar("DELETE FROM schedules WHERE id = ?1 RETURNING name")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err(ctx))?;
    let Some(name) = name else {
        return Ok(false);
    };
    sqlx::query("INSERT OR REPLACE INTO deleted_schedules (id, name, deleted_at) VALUES (?1, ?2, ?3)")
        .bind(id)
        .bind(name)
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(db_err(ctx))?;
    store.cache.forget(&id);
    // Its runs that have not started are cancelled; running ones are the dispatcher's to end.
    sqlx::query(
        "UPDATE runs SET state = 'cancelled', finished_at = ?2, error = 'the schedule was deleted', \
             lease_owner = NULL, lease_expires_at = NULL \
         WHERE schedule_id = ?1 AND state IN ('pending', 'running', 'retrying') AND state <> 'running'",
    )
    .bind(id)
    .bind(ms(now))
    .execute(&mut *tx)
    .await
    .map_err(db_err(ctx))?;
    tx.commit().await.map_err(db_err(ctx))?;
    Ok(true)
}

pub(super) async fn list(store: &SqliteStore, filter: &ScheduleFilter) -> StoreResult<Vec<Schedule>> {
    let mut sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if filter.state.is_some() {
        sql.push_str(&format!(" AND state = ?{}", next()));
    } else if !filter.include_finished {
        sql.push_str(" AND state <> 'finished'");
    }
    if filter.handler_id.is_some() {
        sql.push_str(&format!(" AND handler_id = ?{}", next()));
    }
    if filter.name_contains.is_some() {
        sql.push_str(&format!(" AND instr(lower(name), ?{}) > 0", next()));
    }
    if filter.after.is_some() {
        sql.push_str(&format!(" AND id > ?{}", next()));
    }
    sql.push_str(" ORDER BY id");
    if filter.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", filter.limit));
    }
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(state) = filter.state {
        q = q.bind(state.as_str());
    }
    if let Some(h) = &filter.handler_id {
        q = q.bind(h.clone());
    }
    if let Some(name) = &filter.name_contains {
        // SQLite's lower() folds ASCII only; so does this, to match.
        q = q.bind(name.to_ascii_lowercase());
    }
    if let Some(after) = filter.after {
        q = q.bind(after);
    }
    let rows = q.fetch_all(&store.reader).await.map_err(db_err("cannot list schedules"))?;
    rows.iter().map(schedule_from_row).collect()
}

/// The names of these schedules, deleted ones included.
pub(super) async fn names(
    store: &SqliteStore,
    ids: &[ScheduleId],
) -> StoreResult<HashMap<ScheduleId, String>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT id, name FROM schedules WHERE id IN ({marks}) \
             UNION ALL SELECT id, name FROM deleted_schedules WHERE id IN ({marks})"
        );
        let mut query = sqlx::query_as::<_, (ScheduleId, String)>(AssertSqlSafe(sql));
        for _ in 0..2 {
            for id in chunk {
                query = query.bind(*id);
            }
        }
        for (id, name) in
            query.fetch_all(&store.reader).await.map_err(db_err("cannot read schedule names"))?
        {
            out.insert(id, name);
        }
    }
    Ok(out)
}

/// Every schedule that has had this name, deleted ones included, oldest first.
pub(super) async fn named(store: &SqliteStore, name: &str) -> StoreResult<Vec<ScheduleId>> {
    sqlx::query_scalar(
        "SELECT id FROM schedules WHERE name = ?1 UNION SELECT id FROM deleted_schedules WHERE name = ?1 ORDER BY id",
    )
    .bind(name)
    .fetch_all(&store.reader)
    .await
    .map_err(db_err("cannot find schedules by name"))
}

fn next_fires_sql() -> String {
    format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules INDEXED BY schedules_due \
         WHERE state = 'active' AND next_fire_at IS NOT NULL ORDER BY next_fire_at LIMIT ?1"
    )
}

const LIVE_NAMES: &str = "SELECT name FROM schedules INDEXED BY schedules_live_name \
     WHERE state <> 'finished' ORDER BY name LIMIT ?1";

/// The active schedules firing next, from the `schedules_due` index: it is in fire order, so
/// nothing is sorted and the read stops at the limit.
pub(super) async fn next_fires(store: &SqliteStore, limit: u32) -> StoreResult<Vec<Schedule>> {
    let rows = sqlx::query(AssertSqlSafe(next_fires_sql()))
        .bind(i64::from(limit))
        .fetch_all(&store.reader)
        .await
        .map_err(db_err("cannot read the next fires"))?;
    rows.iter().map(schedule_from_row).collect()
}

/// Live names in name order, from the `schedules_live_name` index alone.
pub(super) async fn live_names(store: &SqliteStore, limit: u32) -> StoreResult<Vec<String>> {
    sqlx::query_scalar(LIVE_NAMES)
        .bind(i64::from(limit))
        .fetch_all(&store.reader)
        .await
        .map_err(db_err("cannot list schedule names"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next fires and the name suggestions read their index in order and stop at the limit:
    /// no plain scan of the table and no sort of every schedule.
    #[tokio::test]
    async fn next_fires_and_live_names_read_their_index_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open_path(dir.path().join("s.db")).await.expect("open");
        for sql in [next_fires_sql(), LIVE_NAMES.to_string()] {
            let plan = super::super::query_plan(&store, &sql).await;
            assert!(!plan.is_empty() && plan.iter().all(|l| l.contains(" USING ")), "{plan:?}");
            assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:?}");
        }
    }
}
