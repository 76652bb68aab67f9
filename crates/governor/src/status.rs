//! `schedulezero status`: the supervisor and each process — state, PID, uptime, restarts, last
//! exit, CPU and memory — from the state files checked against `/proc` (a PID whose start time
//! differs is not ours), so it works from any shell and tells a killed supervisor apart.

use serde::Serialize;

use schedulezero_host::{PidFile, PidStatus, ProcessInfo};

use crate::config::Config;
use crate::layout::Layout;
use crate::state;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub deployment: String,
    pub supervisor: Supervisor,
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Supervisor {
    /// `up`, `starting`, `stopping`, `failed`, `down`, or `gone` (its PID file names a dead
    /// process: it was killed; `down` or `up` cleans up).
    pub state: String,
    pub pid: Option<u32>,
    pub uptime_s: Option<u64>,
    pub auto_ports: bool,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub name: String,
    /// `starting`, `running`, `backoff`, `exited`, `failed`, `stopped`, or `gone` (recorded as
    /// running, but its PID is dead or belongs to another process now).
    pub state: String,
    pub pid: Option<u32>,
    pub uptime_s: Option<u64>,
    pub restarts: u32,
    pub crash_loop: bool,
    pub last_exit: Option<String>,
    /// Milliseconds until the next start, while backing off.
    pub next_start_in_ms: Option<u64>,
    /// Average CPU use since it started, in percent of one core (its process group's, not
    /// counting children that have exited).
    pub cpu_percent: Option<f64>,
    pub cpu_seconds: Option<f64>,
    /// Resident memory of its process group.
    pub memory_bytes: Option<u64>,
    pub ports: std::collections::BTreeMap<String, u16>,
}

/// Reads the deployment's state.
pub fn status(layout: &Layout) -> Status {
    let phase = state::read_phase(layout);
    let supervisor = match PidFile::new(layout.governor_pid_file()).status() {
        PidStatus::Live(r) => {
            let info = ProcessInfo { pid: r.pid, start_ticks: r.start_ticks, cmdline: r.cmdline };
            Supervisor {
                state: phase.as_ref().map_or("up".into(), |p| p.phase.clone()),
                pid: Some(info.pid),
                uptime_s: info.uptime_seconds().map(|s| s as u64),
                auto_ports: phase.as_ref().is_some_and(|p| p.auto_ports),
                message: phase.and_then(|p| p.message),
            }
        }
        PidStatus::Dead(r) | PidStatus::Reused { record: r, .. } => Supervisor {
            state: "gone".into(),
            pid: Some(r.pid),
            uptime_s: None,
            auto_ports: false,
            message: Some(
                "the supervisor was killed; `schedulezero down` stops what it left, `up` cleans and starts"
                    .into(),
            ),
        },
        _ => Supervisor {
            state: if phase.as_ref().is_some_and(|p| p.phase == "failed") {
                "failed".into()
            } else {
                "down".into()
            },
            pid: None,
            uptime_s: None,
            auto_ports: false,
            message: phase.and_then(|p| p.message),
        },
    };
    let mut processes: Vec<Process> = state::read_procs(layout).into_iter().map(process).collect();
    // Configured processes that have no state: not started.
    if let Ok(config) = Config::load(&layout.config_file(), layout.dir()) {
        for spec in &config.processes {
            if !processes.iter().any(|p| p.name == spec.name) {
                processes.push(Process {
                    name: spec.name.clone(),
                    state: "stopped".into(),
                    pid: None,
                    uptime_s: None,
                    restarts: 0,
                    crash_loop: false,
                    last_exit: None,
                    next_start_in_ms: None,
                    cpu_percent: None,
                    cpu_seconds: None,
                    memory_bytes: None,
                    ports: Default::default(),
                });
            }
        }
        let order = |name: &str| config.processes.iter().position(|p| p.name == name).unwrap_or(usize::MAX);
        processes.sort_by_key(|p| order(&p.name));
    }
    Status { deployment: layout.name().to_string(), supervisor, processes }
}

fn process(s: state::ProcState) -> Process {
    let live = match (s.pid, s.start_ticks) {
        (Some(pid), Some(start_ticks)) => {
            let p = ProcessInfo { pid, start_ticks, cmdline: s.cmdline.clone() };
            p.is_alive().then_some(p)
        }
        _ => None,
    };
    // The whole group counts: a `sh -c` wrapper is tiny, the program it runs is not.
    let usage = live.as_ref().and_then(|leader| {
        let mut total = leader.usage()?;
        let pgid = s.pgid.unwrap_or(leader.pid);
        for member in schedulezero_host::group_members(pgid) {
            if member.pid != leader.pid
                && member.start_ticks >= leader.start_ticks
                && let Some(u) = member.usage()
            {
                total.cpu_seconds += u.cpu_seconds;
                total.rss_bytes += u.rss_bytes;
                total.threads += u.threads;
            }
        }
        Some(total)
    });
    let uptime = live.as_ref().and_then(|p| p.uptime_seconds());
    let recorded_alive = matches!(s.state.as_str(), "running" | "starting");
    Process {
        name: s.name,
        state: if recorded_alive && live.is_none() { "gone".into() } else { s.state },
        pid: live.as_ref().map(|p| p.pid),
        uptime_s: uptime.map(|u| u as u64),
        restarts: s.restarts,
        crash_loop: s.crash_loop,
        last_exit: s.last_exit,
        next_start_in_ms: s.next_start_at.map(|t| t.saturating_sub(state::unix_now_ms())),
        cpu_percent: match (usage, uptime) {
            (Some(u), Some(up)) if up > 0.0 => Some((u.cpu_seconds / up * 1000.0).round() / 10.0),
            _ => None,
        },
        cpu_seconds: usage.map(|u| u.cpu_seconds),
        memory_bytes: usage.map(|u| u.rss_bytes),
        ports: s.ports,
    }
}

/// The status as a text table.
pub fn table(s: &Status) -> String {
    let mut out = String::new();
    let sup = &s.supervisor;
    let pid = sup.pid.map_or(String::new(), |p| format!(" (PID {p}"));
    let up = sup.uptime_s.map_or(String::new(), |u| format!(", up {}", duration(u)));
    let close = if pid.is_empty() { "" } else { ")" };
    out.push_str(&format!("deployment '{}': supervisor {}{pid}{up}{close}", s.deployment, sup.state));
    if sup.auto_ports {
        out.push_str(", auto ports");
    }
    out.push('\n');
    if let Some(m) = &sup.message {
        out.push_str(&format!("  {m}\n"));
    }
    let rows: Vec<[String; 8]> = s
        .processes
        .iter()
        .map(|p| {
            let retry = match p.next_start_in_ms {
                Some(ms) if p.state == "backoff" => format!("retry in {:.1}s", ms as f64 / 1000.0),
                _ => String::new(),
            };
            let state = match (p.crash_loop, retry.is_empty()) {
                (true, true) => format!("{} (crash loop)", p.state),
                (true, false) => format!("{} (crash loop, {retry})", p.state),
                (false, false) => format!("{} ({retry})", p.state),
                (false, true) => p.state.clone(),
            };
            [
                p.name.clone(),
                state,
                p.pid.map_or("-".into(), |v| v.to_string()),
                p.uptime_s.map_or("-".into(), duration),
                p.restarts.to_string(),
                p.last_exit.clone().unwrap_or_else(|| "-".into()),
                p.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
                p.memory_bytes.map_or("-".into(), bytes),
            ]
        })
        .collect();
    let header = ["PROCESS", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "CPU", "MEMORY"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l: String =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect::<Vec<_>>().join("  ");
        l.truncate(l.trim_end().len());
        l + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.0} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}
