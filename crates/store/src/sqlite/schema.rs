//! The migrations: an ordered list of scripts; script `i` takes the schema from version `i` to
//! `i + 1` (`PRAGMA user_version`). Never edit a released script: append a new one.

pub(super) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// Version 1.
const V1: &str = r#"
-- ScheduleZero store, schema version 1.
--
-- Conventions: ids are UUIDs stored as 16-byte BLOBs (v7 for schedules and runs, so they sort
-- by creation); times are INTEGER milliseconds since the Unix epoch, UTC; JSON is TEXT.
-- No foreign keys: runs keep their schedule_id after the schedule is deleted (history), and
-- purge_history deletes a run's attempts with it.
--
-- schedules: one row per schedule, kept when it finishes (its name is then free again).
--   trigger       canonical trigger JSON (core Trigger::to_json: zone and absolute times)
--   handler_id, method, params   the target (params: a JSON object)
--   policies      core Policies::to_json
--   state         active | paused | finished
--   next_fire_at  the first slot not yet claimed; NULL once the trigger is exhausted
--   (revision: added by version 2)
CREATE TABLE schedules (
    id           BLOB PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    handler_id   TEXT NOT NULL,
    method       TEXT NOT NULL,
    params       TEXT NOT NULL,
    policies     TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('active', 'paused', 'finished')),
    next_fire_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- A name is unique among live schedules only.
CREATE UNIQUE INDEX schedules_live_name ON schedules (name) WHERE state <> 'finished';
-- Due schedules, earliest first.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE state = 'active';

-- runs: one row per claimed slot, or per "run now" (schedule_id NULL without a schedule).
--   scheduled_for   the un-jittered slot; UNIQUE with schedule_id: a slot is claimed once
--   dispatch_at     when to dispatch (slot + jitter, retry time); NULL = queued behind the
--                   schedule's active run (overlap queue_one)
--   state           core RunState (pending running retrying succeeded failed timed_out
--                   cancelled skipped missed interrupted)
--   attempt         the latest attempt started (0: none yet)
--   started_at      the first attempt's start; attempt_started_at the latest attempt's
--   result, error   of the latest ended attempt (result: JSON)
--   slot_count      > 1 for one missed row folding a long outage's slots
--   lease_owner, lease_expires_at   the node a pending run is handed to, until when (both NULL
--                   or both set; cleared when the run retries or ends)
CREATE TABLE runs (
    id                 BLOB PRIMARY KEY NOT NULL,
    schedule_id        BLOB,
    scheduled_for      INTEGER NOT NULL,
    dispatch_at        INTEGER,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'running', 'retrying', 'succeeded',
                           'failed', 'timed_out', 'cancelled', 'skipped', 'missed', 'interrupted')),
    attempt            INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    handler_id         TEXT NOT NULL,
    method             TEXT NOT NULL,
    params             TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    started_at         INTEGER,
    attempt_started_at INTEGER,
    finished_at        INTEGER,
    result             TEXT,
    error              TEXT,
    slot_count         INTEGER NOT NULL DEFAULT 1,
    lease_owner        TEXT,
    lease_expires_at   INTEGER
);
-- The guarantee: one run per (schedule, slot). Also a schedule's history, newest first.
CREATE UNIQUE INDEX runs_slot ON runs (schedule_id, scheduled_for);
-- Runs waiting for their dispatch time (jitter, retry backoff, released), earliest first.
CREATE INDEX runs_due ON runs (dispatch_at, lease_expires_at)
    WHERE state IN ('pending', 'retrying') AND dispatch_at IS NOT NULL;
-- A schedule's unfinished runs (overlap policies, delete_schedule).
CREATE INDEX runs_active ON runs (schedule_id)
    WHERE state IN ('pending', 'running', 'retrying');
-- Runs queued behind an active one (nearly always empty).
CREATE INDEX runs_queued ON runs (schedule_id) WHERE state = 'pending' AND dispatch_at IS NULL;
-- History, newest slot first: all, by state, by handler.
CREATE INDEX runs_by_slot ON runs (scheduled_for, id);
CREATE INDEX runs_by_state ON runs (state, scheduled_for);
CREATE INDEX runs_by_handler ON runs (handler_id, scheduled_for);
-- Retention.
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- attempts: one row per ended attempt of a run.
CREATE TABLE attempts (
    run_id      BLOB NOT NULL,
    number      INTEGER NOT NULL,
    instance    TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    result      TEXT,
    error       TEXT,
    PRIMARY KEY (run_id, number)
);

-- handler_instances: the registry's memory of instances, so one that comes back is recognised.
--   methods JSON array of strings; meta free-form JSON object; connected 0/1.
CREATE TABLE handler_instances (
    handler_id    TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    protocol      TEXT NOT NULL,
    address       TEXT NOT NULL,
    methods       TEXT NOT NULL,
    capacity      INTEGER NOT NULL,
    connected     INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    successes     INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    meta          TEXT NOT NULL,
    PRIMARY KEY (handler_id, instance_id)
) WITHOUT ROWID;
"#;

/// Version 2.
const V2: &str = r#"
-- schedules.revision: bumped by every update of a schedule's definition (a new schedule starts
-- at a random value), so a node may keep the parsed trigger and policies of the schedules it
-- claims and parse them again only when the revision moved (claims change only next_fire_at
-- and state). Anything that writes a schedule's definition must bump it.
ALTER TABLE schedules ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 3.
const V3: &str = r#"
-- Fewer index writes per run (the write path is the engine's bottleneck): a run changes state
-- two or three times, and each change moved its entry in runs_by_state. Now that index holds
-- only the states worth finding among many (failures, misses, skips, cancellations); pending,
-- running and retrying runs are found through runs_active, succeeded ones through runs_by_slot.
-- Retention purges by slot time (runs_by_slot), so runs_finished goes.
DROP INDEX runs_by_state;
CREATE INDEX runs_by_state ON runs (state, scheduled_for)
    WHERE state NOT IN ('pending', 'running', 'retrying', 'succeeded');
DROP INDEX runs_finished;
"#;

/// Version 4.
const V4: &str = r#"
-- A deleted schedule's runs stay (history) and keep naming it: its id and name move here.
CREATE TABLE deleted_schedules (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    deleted_at  INTEGER NOT NULL
) WITHOUT ROWID;
"#;
