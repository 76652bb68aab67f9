//! The supervisor's files in `run/`, read by `status`, `down` and the next `up` from any shell:
//! the supervisor's phase and one state file per process (PID, process group, start time,
//! command), each written atomically.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layout::Layout;

/// Where the supervisor is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub pid: u32,
    /// `starting`, `up`, `stopping`, `failed`.
    pub phase: String,
    /// Why it failed, or what it is waiting for.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub auto_ports: bool,
}

/// One supervised process as its supervisor last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcState {
    pub name: String,
    /// `starting`, `running`, `backoff`, `exited`, `failed`, `stopping`.
    pub state: String,
    pub pid: Option<u32>,
    pub pgid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub cmdline: Vec<String>,
    /// Unix seconds.
    pub started_at: Option<u64>,
    pub restarts: u32,
    /// Exits in a row without a stable run in between.
    pub failures: u32,
    pub crash_loop: bool,
    pub last_exit: Option<String>,
    /// Unix milliseconds of the next start, while backing off.
    pub next_start_at: Option<u64>,
    pub ports: BTreeMap<String, u16>,
    /// How it is stopped, so `down` can do it without the supervisor.
    pub stop_signal: String,
    pub stop_timeout_s: u64,
}

pub fn write_phase(layout: &Layout, phase: &Phase) -> std::io::Result<()> {
    schedulezero_host::write_atomically(
        &layout.phase_file(),
        &serde_json::to_vec_pretty(phase).unwrap_or_default(),
    )
}

pub fn read_phase(layout: &Layout) -> Option<Phase> {
    serde_json::from_slice(&std::fs::read(layout.phase_file()).ok()?).ok()
}

pub fn write_proc(layout: &Layout, state: &ProcState) -> std::io::Result<()> {
    schedulezero_host::write_atomically(
        &layout.proc_state_file(&state.name),
        &serde_json::to_vec_pretty(state).unwrap_or_default(),
    )
}

pub fn remove_proc(layout: &Layout, name: &str) {
    let _ = std::fs::remove_file(layout.proc_state_file(name));
}

/// Every process state file of the deployment, by name (unreadable ones skipped).
pub fn read_procs(layout: &Layout) -> Vec<ProcState> {
    let Ok(entries) = std::fs::read_dir(layout.procs_dir()) else { return Vec::new() };
    let mut all: Vec<ProcState> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Now, in Unix milliseconds.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
