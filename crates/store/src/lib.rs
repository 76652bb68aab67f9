//! Where ScheduleZero keeps its state: the [`Store`] trait, one implementation per backend, and
//! the conformance suite every backend must pass.
//!
//! Module map:
//! - this file: the trait and the records it speaks in.
//! - [`sqlite`]: the embedded default (one file, WAL, `synchronous=NORMAL`, migrations at start).
//! - [`conformance`]: the shared suite, instantiated in each backend's tests by
//!   `conformance_tests!` (one test per case).
//!
//! The trait is shaped for several nodes from the start: claiming due slots and leasing runs are
//! single operations that a multi-node backend implements with row locks; SQLite implements them
//! with one writer.

pub mod conformance;
pub mod sqlite;

use std::collections::HashMap;

use async_trait::async_trait;
use schedulezero_core::Timestamp;
use schedulezero_core::policy::Policies;
use schedulezero_core::run::{Attempt, AttemptOutcome, NextStep, Run, RunId, RunState};
use schedulezero_core::schedule::{Schedule, ScheduleId, ScheduleState};
use serde_json::Value;
use thiserror::Error;

pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("a schedule named '{0}' already exists; choose another name or delete that schedule first")]
    DuplicateName(String),
    /// A run already holds this slot of the schedule (slots are unique per schedule).
    #[error("schedule {schedule_id} already has a run for the slot {scheduled_for}")]
    DuplicateSlot { schedule_id: ScheduleId, scheduled_for: Timestamp },
    #[error("no {kind} with id {id}")]
    NotFound { kind: &'static str, id: String },
    /// The file is not a ScheduleZero store; it was left untouched.
    #[error("{path}: {message}")]
    NotOurs { path: String, message: String },
    /// The file was written by a newer ScheduleZero; it was left untouched.
    #[error(
        "{path}: this store has schema version {found}, newer than the {known} this build knows; \
         run a newer schedulezero, or restore a backup made by this version"
    )]
    NewerSchema { path: String, found: i64, known: i64 },
    /// A maintenance operation on a store file was refused before it changed anything.
    #[error("{path}: {message}")]
    Refused { path: String, message: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A run handed to a node for dispatch, with the policies of its schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub run: Run,
    pub policies: Policies,
}

/// What one claim of due slots produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimBatch {
    /// Runs to dispatch now (their `dispatch_at` ≤ now), leased to the claiming node: pending, or
    /// with `start_ready` already `running` as attempt 1. Runs with a later `dispatch_at`
    /// (jitter) were stored pending and come back from `lease_due_runs`.
    pub ready: Vec<Dispatch>,
    /// Active runs to cancel (overlap `replace`).
    pub cancel: Vec<RunId>,
    /// How many schedules were due (when it equals the limit, more may be due).
    pub schedules: usize,
    /// Slots claimed in all (run, queued, missed and skipped alike).
    pub slots: usize,
    /// Of those: runs due later (jitter), stored pending for `lease_due_runs`.
    pub later: usize,
    /// Runs queued behind an active run of their schedule (overlap `queue_one`).
    pub queued: usize,
    /// Slots recorded `skipped` (overlap `skip`, or a queue already full).
    pub skipped: usize,
    /// Slots recorded `missed` (misfire policy), counting every slot a folded row stands for.
    pub missed: usize,
}

/// An attempt about to be sent: committed before the send, so a crash after it is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptStart {
    pub run_id: RunId,
    /// The attempt number being started (the run's previous attempt + 1).
    pub attempt: u32,
    pub started_at: Timestamp,
}

/// How an attempt ended and what the run does next.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    pub attempt: Attempt,
    /// Retry at a time, or finish in a state (decided by `core::run::after_attempt`).
    pub next: NextStep,
}

/// What start-up recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Runs that were `running` when the previous process stopped: now `interrupted` attempts.
    pub interrupted: usize,
    /// Of those, how many will be retried.
    pub retried: usize,
    /// Leases of pending runs given back.
    pub released: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleFilter {
    pub state: Option<ScheduleState>,
    pub handler_id: Option<String>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    /// Include finished schedules (default: only active and paused).
    pub include_finished: bool,
    /// Cursor: only schedules whose id sorts after this one (ids sort by creation).
    pub after: Option<ScheduleId>,
    /// At most this many (0 = no limit).
    pub limit: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub schedule_id: Option<ScheduleId>,
    pub handler_id: Option<String>,
    /// Any of these states (empty: all).
    pub states: Vec<RunState>,
    /// Only slots at or after this time.
    pub from: Option<Timestamp>,
    /// Only slots before this time.
    pub to: Option<Timestamp>,
    /// Cursor: only runs that sort before this one (newest first: by slot, then id).
    pub before: Option<RunId>,
    /// At most this many (0 = no limit).
    pub limit: u32,
}

/// How many runs of one handler ended (or stand) in one state, and how long their attempts took
/// in all: the run-history statistics, summed by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCount {
    pub handler_id: String,
    pub state: RunState,
    pub runs: u64,
    /// Sum over finished runs of `finished_at - started_at` (runs that never started count 0).
    pub total_duration_ms: i64,
}

/// A handler instance as the registry last knew it; persisted so one that comes back is
/// recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerInstance {
    pub handler_id: String,
    /// Stable across reconnects of the same process (or configured by the handler).
    pub instance_id: String,
    /// `native`, `v1` or `local`.
    pub protocol: String,
    /// The handler's address (version 1), peer (native) or `local`.
    pub address: String,
    pub methods: Vec<String>,
    pub capacity: u32,
    pub connected: bool,
    pub registered_at: Timestamp,
    pub last_seen: Timestamp,
    pub successes: u64,
    pub failures: u64,
    /// Anything else the transport wants to remember (free-form JSON object).
    pub meta: Value,
}

/// A backend of ScheduleZero's state. Every implementation passes the [`conformance`] suite.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- schedules ---

    /// Stores a new schedule; `DuplicateName` when a live schedule (active or paused) has its name.
    async fn insert_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>>;
    /// The live (not finished) schedule with this name.
    async fn find_schedule(&self, name: &str) -> StoreResult<Option<Schedule>>;
    /// Replaces a schedule's definition, state and next fire time; `NotFound` if it is gone,
    /// `DuplicateName` when renamed onto a live name.
    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    /// Deletes a schedule; its runs that have not started are cancelled, its history is kept.
    /// Returns false when there was no such schedule.
    async fn delete_schedule(&self, id: ScheduleId, now: Timestamp) -> StoreResult<bool>;
    async fn list_schedules(&self, filter: &ScheduleFilter) -> StoreResult<Vec<Schedule>>;
    /// The names of these schedules, deleted ones included (their runs keep naming them).
    async fn schedule_names(&self, ids: &[ScheduleId]) -> StoreResult<HashMap<ScheduleId, String>>;
    /// Every schedule that has had this name: live, finished and deleted ones, oldest first.
    async fn schedules_named(&self, name: &str) -> StoreResult<Vec<ScheduleId>>;
    /// The active schedules that fire next, earliest next fire first,
    /// at most `limit`: the dashboard's "next fires", read from the due index rather than by
    /// loading every schedule.
    async fn next_fires(&self, limit: u32) -> StoreResult<Vec<Schedule>>;
    /// The names of live (active and paused) schedules in name order, at most `limit`: the
    /// suggestions of a schedule filter box, without reading whole schedules.
    async fn live_schedule_names(&self, limit: u32) -> StoreResult<Vec<String>>;

    // --- the scheduler's work ---

    /// The earliest time something needs the scheduler: an active schedule's next fire, or a
    /// pending or retrying run's dispatch time. `None`: nothing is scheduled.
    async fn next_wake(&self) -> StoreResult<Option<Timestamp>>;
    /// In one transaction: takes up to `limit` active schedules whose next fire is at or before
    /// `now`, plans their slots with `core::plan::plan_fires`, inserts one run per slot (unique on
    /// `(schedule_id, scheduled_for)`: a slot is never claimed twice, by any node), advances each
    /// schedule's next fire time (finishing exhausted ones) and leases the runs due now to `node`.
    /// With `start_ready`, those runs are also started in the same commit (attempt 1, `running`),
    /// so the dispatcher can send them without another write: the engine's hot path.
    async fn claim_due(
        &self,
        node: &str,
        now: Timestamp,
        limit: usize,
        start_ready: bool,
    ) -> StoreResult<ClaimBatch>;
    /// Leases up to `limit` pending or retrying runs whose dispatch time has come and that no live
    /// lease holds (jittered slots, retries after backoff, released runs).
    async fn lease_due_runs(&self, node: &str, now: Timestamp, limit: usize) -> StoreResult<Vec<Dispatch>>;
    /// Gives leased runs back without starting them (no handler could take them).
    async fn release_runs(&self, runs: &[RunId]) -> StoreResult<()>;
    /// Marks attempts as started (`running`), in one commit, before they are sent.
    async fn start_attempts(&self, starts: &[AttemptStart]) -> StoreResult<()>;
    /// Records ended attempts and moves their runs on (retry or finish), in one commit; when a
    /// run of a schedule finishes, that schedule's queued run becomes due.
    async fn record_attempts(&self, ends: &[AttemptEnd], now: Timestamp) -> StoreResult<()>;
    /// Inserts runs made outside the claim path (as [`Store::insert_runs`]) and records ended
    /// attempts (as [`Store::record_attempts`]); a backend that can does both in one commit, so
    /// no reader sees such a run without its outcome.
    async fn record_outcomes(
        &self,
        new_runs: &[Run],
        ends: &[AttemptEnd],
        now: Timestamp,
    ) -> StoreResult<()> {
        self.insert_runs(new_runs).await?;
        self.record_attempts(ends, now).await
    }
    /// At start-up: every `running` run of a stopped process gets an `interrupted` attempt and
    /// is retried per its schedule's policy or ends `interrupted`; leases are released.
    async fn recover(&self, now: Timestamp) -> StoreResult<Recovery>;

    // --- runs and history ---

    /// Stores a run made outside the claim path ("run now").
    async fn insert_run(&self, run: &Run) -> StoreResult<()>;
    /// Stores several such runs in one transaction (the recorder's batches of ended "run now"
    /// calls, inserted together with their outcomes off the call path). Idempotent: a run whose
    /// id is already stored is left as it is, so a batch can be retried after an unclear failure.
    async fn insert_runs(&self, runs: &[Run]) -> StoreResult<()> {
        for run in runs {
            if self.get_run(run.id).await?.is_none() {
                self.insert_run(run).await?;
            }
        }
        Ok(())
    }
    async fn get_run(&self, id: RunId) -> StoreResult<Option<Run>>;
    /// Runs, newest slot first.
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<Run>>;
    /// A run's ended attempts, in order.
    async fn list_attempts(&self, run: RunId) -> StoreResult<Vec<Attempt>>;
    /// Cancels a run that has not started or is waiting to retry; returns its state afterwards.
    /// A `running` run is cancelled by the dispatcher, which records the attempt.
    async fn cancel_run(&self, run: RunId, now: Timestamp) -> StoreResult<RunState>;
    /// How many runs there are in each state among those whose slot is at or after `from` and
    /// before `to` (states with no run are left out): the dashboard's "runs in the last hour",
    /// counted by the store without reading the runs.
    async fn count_runs_by_state(&self, from: Timestamp, to: Timestamp) -> StoreResult<Vec<(RunState, u64)>>;
    /// Runs by handler and state, with their summed durations (for statistics).
    async fn run_counts(&self) -> StoreResult<Vec<RunCount>>;
    /// Deletes finished runs (and their attempts) whose end is before `before`; returns how many.
    async fn purge_history(&self, before: Timestamp) -> StoreResult<u64>;

    // --- handlers ---

    async fn upsert_handler_instance(&self, instance: &HandlerInstance) -> StoreResult<()>;
    async fn list_handler_instances(&self) -> StoreResult<Vec<HandlerInstance>>;
}

/// Re-exported for backends and callers that decide attempt outcomes.
pub use schedulezero_core::run::after_attempt;

/// Helper for outcome strings stored by backends.
pub fn outcome_from_str(s: &str) -> StoreResult<AttemptOutcome> {
    AttemptOutcome::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown attempt outcome '{s}'")))
}
