//! Process groups and signals: who is in a group (from `/proc`), signalling a group, and stopping
//! one for good — the configured signal, a wait, then SIGKILL, until no member is left.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::process::{ProcessInfo, read_stat};

/// A signal by name: `TERM`, `SIGTERM`, `term`, or a number (`15`).
pub fn parse_signal(name: &str) -> Result<Signal, String> {
    let trimmed = name.trim();
    if let Ok(n) = trimmed.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("'{name}' is not a signal number"));
    }
    let upper = trimmed.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse::<Signal>()
        .map_err(|_| format!("'{name}' is not a signal name; use e.g. TERM, INT, HUP, QUIT, USR1"))
}

/// The live (non-zombie) processes of group `pgid`, in PID order.
pub fn group_members(pgid: u32) -> Vec<ProcessInfo> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut members: Vec<ProcessInfo> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| read_stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z' && s.state != 'X'))
        .filter_map(ProcessInfo::of)
        .collect();
    members.sort_by_key(|p| p.pid);
    members
}

/// Sends `signal` to every process of group `pgid`. A group with no process left is not an
/// error.
pub fn signal_group(pgid: u32, signal: Signal) -> std::io::Result<()> {
    let pgid = i32::try_from(pgid).map_err(|_| std::io::Error::other("process group out of range"))?;
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Sends `signal` to one process, if it is still the one seen (PID and start time).
pub fn signal_process(process: &ProcessInfo, signal: Signal) -> std::io::Result<()> {
    if !process.is_alive() {
        return Ok(());
    }
    let pid = i32::try_from(process.pid).map_err(|_| std::io::Error::other("PID out of range"))?;
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Every process left within the grace time, after the stop signal alone.
    pub graceful: bool,
    /// Processes still there after the grace time, killed with SIGKILL.
    pub killed: Vec<ProcessInfo>,
    /// Processes still there after SIGKILL (another user's, or stuck in the kernel).
    pub survivors: Vec<ProcessInfo>,
}

/// Stops group `pgid`: `signal` to the group, up to `grace` for every member to leave, then
/// SIGKILL to the group and up to five seconds for the kernel to finish them.
///
/// `reap` is called while waiting, so a caller that is the parent of the leader can collect its
/// exit status (a zombie is not a member, but an unreaped leader keeps its PID taken).
pub fn stop_group(pgid: u32, signal: Signal, grace: Duration, reap: &mut dyn FnMut()) -> Stopped {
    let _ = signal_group(pgid, signal);
    // SIGCONT too: a stopped process (SIGSTOP, Ctrl-Z) would hold its signal pending forever.
    if signal != Signal::SIGKILL {
        let _ = signal_group(pgid, Signal::SIGCONT);
    }
    if wait_empty(pgid, grace, reap) {
        return Stopped { graceful: true, killed: Vec::new(), survivors: Vec::new() };
    }
    let killed = group_members(pgid);
    let _ = signal_group(pgid, Signal::SIGKILL);
    wait_empty(pgid, Duration::from_secs(5), reap);
    Stopped { graceful: false, killed, survivors: group_members(pgid) }
}

fn wait_empty(pgid: u32, within: Duration, reap: &mut dyn FnMut()) -> bool {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        reap();
        if group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Stops one process that is not a group leader of its own (`ports free`): `signal`, up to
/// `grace`, then SIGKILL. Returns whether it is gone.
pub fn stop_process(process: &ProcessInfo, signal: Signal, grace: Duration) -> bool {
    let _ = signal_process(process, signal);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !process.is_alive() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = signal_process(process, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !process.is_alive() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn signal_names_are_read_with_or_without_sig_and_as_numbers() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("TERMINATE").unwrap_err().contains("not a signal name"));
    }

    #[test]
    fn a_group_that_ignores_the_signal_is_killed_and_nothing_survives() {
        // A shell that ignores TERM and has a grandchild (which ignores it too) in its group.
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .expect("sh starts");
        let pgid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_members(pgid).len() < 2 {
            assert!(Instant::now() < deadline, "the group never had two members");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut reap = || {
            let _ = child.try_wait();
        };
        let stopped = stop_group(pgid, Signal::SIGTERM, Duration::from_millis(300), &mut reap);
        assert!(!stopped.graceful);
        assert_eq!(stopped.killed.len(), 2, "{stopped:?}");
        assert!(stopped.survivors.is_empty());
        assert!(group_members(pgid).is_empty());
    }

    #[test]
    fn a_group_that_obeys_stops_gracefully() {
        let mut child = Command::new("sleep").arg("30").process_group(0).spawn().expect("sleep starts");
        let pgid = child.id();
        let mut reap = || {
            let _ = child.try_wait();
        };
        let stopped = stop_group(pgid, Signal::SIGTERM, Duration::from_secs(10), &mut reap);
        assert!(stopped.graceful, "{stopped:?}");
    }
}
