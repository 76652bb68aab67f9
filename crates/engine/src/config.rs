//! The engine's settings, with their defaults.

use std::time::Duration;

use chrono::TimeDelta;
use chrono_tz::Tz;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's name in leases (default: `host-pid`).
    pub node_id: String,
    /// The zone naive times are read in (default: the system's zone, else UTC).
    pub local_zone: Tz,
    /// Schedules claimed per transaction, at most (default 2,000; a tick starts with 64 and
    /// doubles, so the first calls of a burst go out early).
    pub claim_batch: usize,
    /// How long finished runs are kept (default 30 days; `None`: forever).
    pub history_retention: Option<TimeDelta>,
    /// How often old history is purged (default hourly).
    pub purge_every: TimeDelta,
    /// On shutdown, how long calls in flight may take to finish before they are recorded as
    /// interrupted (default 10 s).
    pub shutdown_grace: Duration,
    /// Runs that may wait in memory for one handler and method (default 10,000). Past it, a run
    /// already started ends its attempt `lost` and is retried per its policy, so a handler that
    /// is gone for long cannot fill the server's memory.
    pub max_waiting: usize,
    /// "Run now" outcomes that may wait for their commit (default 8,192, about a second of the
    /// store's rate). Past it, "run now" callers wait for the store: a burst faster than the disk
    /// costs neither unbounded memory nor, on a crash, more than this many unrecorded calls.
    pub run_now_backlog: usize,
    /// How long before a fire time the scheduler claims it (default 50 ms). The claim's store
    /// work (reading the due schedules, planning, inserting their runs) then happens before the
    /// slot, and the calls are held in memory until their time: a burst of fires due in the same
    /// second is sent at its second instead of after the claim's transactions. A claimed run is
    /// never sent before its time; its attempt is recorded as started at the slot.
    pub claim_ahead: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            node_id: default_node_id(),
            local_zone: system_zone(),
            claim_batch: 2_000,
            history_retention: Some(TimeDelta::days(30)),
            purge_every: TimeDelta::hours(1),
            shutdown_grace: Duration::from_secs(10),
            max_waiting: 10_000,
            run_now_backlog: 8_192,
            claim_ahead: Duration::from_millis(50),
        }
    }
}

/// The system's IANA zone, or UTC when it cannot be told.
pub fn system_zone() -> Tz {
    // `TZ` first, as the C library does (`Europe/Paris` or `:Europe/Paris`), then the system's.
    let from_env = std::env::var("TZ").ok().and_then(|v| v.trim_start_matches(':').parse::<Tz>().ok());
    from_env
        .or_else(|| iana_time_zone::get_timezone().ok().and_then(|name| name.parse().ok()))
        .unwrap_or(chrono_tz::UTC)
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".to_string());
    format!("{host}-{}", std::process::id())
}
