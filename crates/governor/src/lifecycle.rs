//! What works from any shell without the supervisor's help: `down` (through the supervisor when
//! it lives, from the state files when it was killed) and the cleaning of a dead supervisor's
//! leftovers (which `up` does too before starting).

use std::time::{Duration, Instant};

use schedulezero_host::{PidFile, PidStatus, ProcessInfo, Signal};

use crate::layout::Layout;
use crate::state::{self, ProcState};

/// Stops the processes a dead supervisor left behind, from their state files: each recorded
/// process whose PID still has the recorded start time gets its group stopped (its stop signal,
/// its timeout, SIGKILL); a group whose leader is gone but whose members remain is killed too.
/// Removes the state files, the phase file and the control socket. Returns what was done.
pub fn clean_stale(layout: &Layout) -> Vec<String> {
    let mut done = Vec::new();
    for p in state::read_procs(layout) {
        if let Some(line) = stop_recorded(&p) {
            done.push(line);
        }
        state::remove_proc(layout, &p.name);
    }
    let _ = std::fs::remove_file(layout.control_socket());
    let _ = std::fs::remove_file(layout.phase_file());
    done
}

fn stop_recorded(p: &ProcState) -> Option<String> {
    let (pid, pgid, start) = (p.pid?, p.pgid?, p.start_ticks?);
    let leader = ProcessInfo { pid, start_ticks: start, cmdline: p.cmdline.clone() };
    let members: Vec<ProcessInfo> =
        schedulezero_host::group_members(pgid).into_iter().filter(|m| m.start_ticks >= start).collect();
    if !leader.is_alive() && members.is_empty() {
        return None;
    }
    let signal = schedulezero_host::parse_signal(&p.stop_signal).unwrap_or(Signal::SIGTERM);
    let mut nothing = || {};
    let stopped =
        schedulezero_host::stop_group(pgid, signal, Duration::from_secs(p.stop_timeout_s), &mut nothing);
    let how = if stopped.graceful { format!("{signal}") } else { format!("{signal}, then SIGKILL") };
    let mut line = format!("stopped {} (PID {pid}, {how})", p.name);
    if !stopped.survivors.is_empty() {
        let pids: Vec<String> = stopped.survivors.iter().map(|s| s.pid.to_string()).collect();
        line.push_str(&format!("; still running: PID {}", pids.join(", ")));
    }
    Some(line)
}

/// The outcome of `down`.
#[derive(Debug, Default)]
pub struct Down {
    /// What was stopped or cleaned, one line each.
    pub lines: Vec<String>,
    /// Whether anything was running.
    pub was_running: bool,
}

/// Stops the deployment: asks a live supervisor to stop (SIGTERM; it stops its processes in
/// reverse dependency order) and waits for it; a supervisor that is gone, or does not stop in
/// time, is replaced by [`clean_stale`].
pub fn down(layout: &Layout, say: &mut dyn FnMut(&str)) -> Down {
    let mut out = Down::default();
    let pid_file = PidFile::new(layout.governor_pid_file());
    match pid_file.status() {
        PidStatus::Live(record) => {
            out.was_running = true;
            let me =
                ProcessInfo { pid: record.pid, start_ticks: record.start_ticks, cmdline: record.cmdline };
            say(&format!("stopping the supervisor of '{}' (PID {})", layout.name(), me.pid));
            let _ = schedulezero_host::group::signal_process(&me, Signal::SIGTERM);
            let budget: u64 =
                state::read_procs(layout).iter().map(|p| p.stop_timeout_s + 5).sum::<u64>() + 30;
            let deadline = Instant::now() + Duration::from_secs(budget);
            while me.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if me.is_alive() {
                let _ = schedulezero_host::group::signal_process(&me, Signal::SIGKILL);
                out.lines
                    .push(format!("the supervisor (PID {}) did not stop within {budget} s: killed", me.pid));
                while me.is_alive() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            } else {
                out.lines.push(format!("the supervisor (PID {}) stopped its processes and exited", me.pid));
            }
        }
        PidStatus::Dead(record) | PidStatus::Reused { record, .. } => {
            out.lines.push(format!(
                "the supervisor (PID {}) is gone (killed?); stopping its processes from their state files",
                record.pid
            ));
        }
        PidStatus::Unreadable(why) => {
            out.lines.push(format!("replaced an unreadable supervisor PID file: {why}"))
        }
        PidStatus::Absent => {}
    }
    let cleaned = clean_stale(layout);
    out.was_running |= !cleaned.is_empty();
    out.lines.extend(cleaned);
    let _ = pid_file.clean_if_stale();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A child killed on drop, so a failed assertion leaves nothing behind.
    struct Kid(std::process::Child);

    impl Drop for Kid {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn record(name: &str, p: &ProcessInfo, start_ticks: u64) -> ProcState {
        ProcState {
            name: name.into(),
            state: "running".into(),
            pid: Some(p.pid),
            pgid: Some(p.pid),
            start_ticks: Some(start_ticks),
            cmdline: p.cmdline.clone(),
            started_at: None,
            restarts: 0,
            failures: 0,
            crash_loop: false,
            last_exit: None,
            next_start_at: None,
            ports: Default::default(),
            stop_signal: "TERM".into(),
            stop_timeout_s: 5,
        }
    }

    #[test]
    fn a_recorded_process_is_stopped_but_a_recycled_pid_is_never_signalled() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(root.path(), "default").expect("layout");
        let ours =
            Kid(std::process::Command::new("sleep").arg("30").process_group(0).spawn().expect("sleep"));
        let stranger =
            Kid(std::process::Command::new("sleep").arg("30").process_group(0).spawn().expect("sleep"));
        let ours_info = ProcessInfo::of(ours.0.id()).expect("ours");
        let stranger_info = ProcessInfo::of(stranger.0.id()).expect("stranger");
        state::write_proc(&layout, &record("ours", &ours_info, ours_info.start_ticks)).expect("state");
        // The same PID, another start time: the file names a process that is gone, and the PID
        // now belongs to someone else.
        state::write_proc(&layout, &record("recycled", &stranger_info, stranger_info.start_ticks + 1))
            .expect("state");

        let done = clean_stale(&layout);
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].starts_with(&format!("stopped ours (PID {}", ours_info.pid)), "{done:?}");
        let mut ours = ours;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while ours.0.try_wait().expect("wait").is_none() {
            assert!(std::time::Instant::now() < deadline, "ours was not stopped");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(stranger_info.is_alive(), "a recycled PID must not be signalled");
        assert!(state::read_procs(&layout).is_empty(), "state files removed");
    }
}
