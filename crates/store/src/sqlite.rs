//! SQLite backend: one file, WAL, `synchronous=NORMAL` (or `FULL`), migrations at start-up.
//!
//! Module map:
//! - [`open`](self::open): the header check that refuses foreign files untouched, connection
//!   settings, and migrations.
//! - `schema`: the migration scripts (the schema is documented at the top of the first one).
//! - `codec`: rows to records and back (ids as 16-byte BLOBs, times as UTC milliseconds).
//! - `schedules`: schedule CRUD and the bulk insert.
//! - `claim`: `claim_due`, the one transaction that turns due slots into runs.
//! - `runs`: leases, attempts, recovery, history.
//! - `handlers`: handler instances.
//! - [`maintenance`]: backup of a store in use, the full check, restore of a backup.
//!
//! Writes go through one connection per store (a pool of one) and always start with
//! `BEGIN IMMEDIATE`, so two stores on one file (two nodes) queue on SQLite's write lock
//! instead of deadlocking on a lock upgrade; reads use a small pool of their own (WAL readers
//! never wait for the writer). Hot paths are set-based: one statement per batch, its rows passed
//! as one JSON array parameter read with `json_each`.

mod batch;
mod claim;
mod codec;
mod handlers;
pub mod maintenance;
mod open;
mod runs;
mod schedules;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use schedulezero_core::Timestamp;
use schedulezero_core::run::{Attempt, Run, RunId, RunState};
use schedulezero_core::schedule::{Schedule, ScheduleId};
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};

use crate::{
    AttemptEnd, AttemptStart, ClaimBatch, Dispatch, HandlerInstance, Recovery, RunCount, RunFilter,
    ScheduleFilter, Store, StoreResult,
};

pub use self::open::{APPLICATION_ID, SCHEMA_VERSION};

/// How long a run leased to a node stays its own without being started: after that, another
/// `lease_due_runs` may hand it out again (a node that died holding it).
pub const LEASE_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// How hard SQLite works to make commits survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// A commit survives a killed process, not necessarily a power cut (the default).
    #[default]
    Normal,
    /// A commit survives a power cut too (an fsync per commit).
    Full,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
}

impl SqliteOptions {
    /// Options for the store at `path`, with the default durability.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), synchronous: Synchronous::default() }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    options: SqliteOptions,
    /// One connection: every write transaction goes through it, `BEGIN IMMEDIATE`.
    writer: SqlitePool,
    /// Reads.
    reader: SqlitePool,
    /// Parsed definitions of recently claimed schedules.
    cache: claim::ScheduleCache,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.options.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating or migrating) the store. A file that is not a ScheduleZero store, or that
    /// a newer ScheduleZero wrote, is refused and left untouched.
    pub async fn open(options: SqliteOptions) -> StoreResult<SqliteStore> {
        let (writer, reader) = open::open_pools(&options).await?;
        Ok(SqliteStore { options, writer, reader, cache: claim::ScheduleCache::default() })
    }

    /// Opens the store at `path` with the default options.
    pub async fn open_path(path: impl Into<PathBuf>) -> StoreResult<SqliteStore> {
        Self::open(SqliteOptions::new(path)).await
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Closes the connections (checkpointing the WAL when this was the last one).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Inserts many schedules in one transaction, set-based (a million in seconds). All or
    /// nothing: `DuplicateName` when any name is taken by a live schedule or repeated.
    pub async fn insert_schedules_bulk(&self, schedules: &[Schedule]) -> StoreResult<()> {
        schedules::insert_bulk(self, schedules).await
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: the write lock is taken at once, so the
    /// transaction never fails half-way for another writer).
    pub(crate) async fn write(&self, context: &str) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(codec::db_err(context))
    }
}

/// The `detail` lines of `EXPLAIN QUERY PLAN` for a statement (its parameters unbound).
#[cfg(test)]
async fn query_plan(store: &SqliteStore, sql: &str) -> Vec<String> {
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&store.reader)
            .await
            .expect("explain");
    rows.into_iter().map(|(_, _, _, detail)| detail).collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        schedules::insert_bulk(self, std::slice::from_ref(schedule)).await
    }

    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        schedules::get(self, id).await
    }

    async fn find_schedule(&self, name: &str) -> StoreResult<Option<Schedule>> {
        schedules::find(self, name).await
    }

    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        schedules::update(self, schedule).await
    }

    async fn delete_schedule(&self, id: ScheduleId, now: Timestamp) -> StoreResult<bool> {
        schedules::delete(self, id, now).await
    }

    async fn list_schedules(&self, filter: &ScheduleFilter) -> StoreResult<Vec<Schedule>> {
        schedules::list(self, filter).await
    }

    async fn next_wake(&self) -> StoreResult<Option<Timestamp>> {
        runs::next_wake(self).await
    }

    async fn claim_due(
        &self,
        node: &str,
        now: Timestamp,
        limit: usize,
        start_ready: bool,
    ) -> StoreResult<ClaimBatch> {
        claim::claim_due(self, node, now, limit, start_ready).await
    }

    async fn lease_due_runs(&self, node: &str, now: Timestamp, limit: usize) -> StoreResult<Vec<Dispatch>> {
        runs::lease_due(self, node, now, limit).await
    }

    async fn release_runs(&self, runs: &[RunId]) -> StoreResult<()> {
        runs::release(self, runs).await
    }

    async fn start_attempts(&self, starts: &[AttemptStart]) -> StoreResult<()> {
        runs::start_attempts(self, starts).await
    }

    async fn record_attempts(&self, ends: &[AttemptEnd], now: Timestamp) -> StoreResult<()> {
        runs::record_attempts(self, ends, now).await
    }

    async fn record_outcomes(
        &self,
        new_runs: &[Run],
        ends: &[AttemptEnd],
        now: Timestamp,
    ) -> StoreResult<()> {
        runs::record_outcomes(self, new_runs, ends, now).await
    }

    async fn recover(&self, now: Timestamp) -> StoreResult<Recovery> {
        runs::recover(self, now).await
    }

    async fn insert_run(&self, run: &Run) -> StoreResult<()> {
        runs::insert(self, std::slice::from_ref(run), false).await
    }

    async fn insert_runs(&self, runs: &[Run]) -> StoreResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        runs::insert(self, runs, true).await
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<Run>> {
        runs::get_run(self, id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        runs::list(self, filter).await
    }

    async fn list_attempts(&self, run: RunId) -> StoreResult<Vec<Attempt>> {
        runs::list_attempts(self, run).await
    }

    async fn cancel_run(&self, run: RunId, now: Timestamp) -> StoreResult<RunState> {
        runs::cancel(self, run, now).await
    }

    async fn run_counts(&self) -> StoreResult<Vec<RunCount>> {
        runs::counts(self).await
    }

    async fn purge_history(&self, before: Timestamp) -> StoreResult<u64> {
        runs::purge_history(self, before).await
    }

    async fn upsert_handler_instance(&self, instance: &HandlerInstance) -> StoreResult<()> {
        handlers::upsert(self, instance).await
    }

    async fn schedule_names(&self, ids: &[ScheduleId]) -> StoreResult<HashMap<ScheduleId, String>> {
        schedules::names(self, ids).await
    }

    async fn schedules_named(&self, name: &str) -> StoreResult<Vec<ScheduleId>> {
        schedules::named(self, name).await
    }

    async fn next_fires(&self, limit: u32) -> StoreResult<Vec<Schedule>> {
        schedules::next_fires(self, limit).await
    }

    async fn live_schedule_names(&self, limit: u32) -> StoreResult<Vec<String>> {
        schedules::live_names(self, limit).await
    }

    async fn count_runs_by_state(&self, from: Timestamp, to: Timestamp) -> StoreResult<Vec<(RunState, u64)>> {
        runs::count_by_state(self, from, to).await
    }

    async fn list_handler_instances(&self) -> StoreResult<Vec<HandlerInstance>> {
        handlers::list(self).await
    }
}
