//! A process as `/proc` describes it.

use serde::{Deserialize, Serialize};

/// Who a PID is now. `start_ticks` (clock ticks after boot, field 22 of `/proc/PID/stat`) is
/// what makes it an identity: a PID can be reused, a (PID, start time) pair cannot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub start_ticks: u64,
    /// Its arguments, program first (empty for kernel threads and zombies).
    pub cmdline: Vec<String>,
}

impl ProcessInfo {
    /// The process with this PID, if there is one (a zombie counts as gone).
    pub fn of(pid: u32) -> Option<ProcessInfo> {
        let stat = read_stat(pid)?;
        if stat.state == 'Z' || stat.state == 'X' {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(ProcessInfo { pid, start_ticks: stat.start_ticks, cmdline })
    }

    /// Whether this process is still the one that was seen (same PID, same start time).
    pub fn is_alive(&self) -> bool {
        ProcessInfo::of(self.pid).is_some_and(|now| now.start_ticks == self.start_ticks)
    }

    /// Its process group, while it runs.
    pub fn pgid(&self) -> Option<u32> {
        read_stat(self.pid).filter(|s| s.start_ticks == self.start_ticks).map(|s| s.pgrp)
    }

    /// Its environment (empty when it cannot be read: another user's process, or gone).
    pub fn environ(&self) -> Vec<(String, String)> {
        let Ok(raw) = std::fs::read(format!("/proc/{}/environ", self.pid)) else { return Vec::new() };
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// Its working directory, when it can be read.
    pub fn cwd(&self) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/{}/cwd", self.pid)).ok()
    }

    /// CPU time used and memory held now, when it still runs.
    pub fn usage(&self) -> Option<Usage> {
        let stat = read_stat(self.pid).filter(|s| s.start_ticks == self.start_ticks)?;
        let ticks = clock_ticks_per_second();
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Some(Usage {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks as f64,
            rss_bytes: rss_kib * 1024,
            threads: stat.threads,
        })
    }

    /// Seconds since it started.
    pub fn uptime_seconds(&self) -> Option<f64> {
        let up: f64 =
            std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
        Some((up - self.start_ticks as f64 / clock_ticks_per_second() as f64).max(0.0))
    }

    /// This process.
    pub fn current() -> Option<ProcessInfo> {
        ProcessInfo::of(std::process::id())
    }

    /// The command line as one line, for messages.
    pub fn command(&self) -> String {
        if self.cmdline.is_empty() { "(no command line)".to_string() } else { self.cmdline.join(" ") }
    }
}

/// The live processes (zombies left out) whose process group is `pgid`, from `/proc`. A process
/// group outlives its leader: this is how to tell whether anything a command started is still
/// running after the command itself exited. (`group::group_members` gives the same with each
/// member's start time and command line.)
pub fn process_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| read_stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z' && s.state != 'X'))
        .collect()
}

/// CPU time and memory of a process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// User plus system CPU time since it started.
    pub cpu_seconds: f64,
    /// Resident memory.
    pub rss_bytes: u64,
    pub threads: u64,
}

/// The fields of `/proc/PID/stat` this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub state: char,
    pub pgrp: u32,
    pub utime: u64,
    pub stime: u64,
    pub threads: u64,
    pub start_ticks: u64,
}

pub(crate) fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Index 0 is field 3 (state): field N is at index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        state: f.first()?.chars().next()?,
        pgrp: u32::try_from(num(5)?).ok()?,
        utime: num(14)?,
        stime: num(15)?,
        threads: num(20)?,
        start_ticks: num(22)?,
    })
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `/proc/PID/stat` (100 on every Linux seen).
fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat = "4242 (we ird) name)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100";
        let s = parse_stat(stat).expect("parsed");
        assert_eq!(
            (s.state, s.pgrp, s.utime, s.stime, s.threads, s.start_ticks),
            ('S', 4242, 0, 0, 1, 987654)
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_process_group_lists_its_live_members() {
        use std::os::unix::process::CommandExt;
        let mut child =
            std::process::Command::new("sleep").arg("30").process_group(0).spawn().expect("sleep");
        let pgid = child.id();
        assert_eq!(process_group_members(pgid), vec![pgid]);
        child.kill().expect("kill");
        child.wait().expect("reaped");
        assert!(process_group_members(pgid).is_empty());
    }

    #[test]
    fn the_current_process_is_seen_with_its_command_line() {
        let me = ProcessInfo::current().expect("this process");
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_ticks > 0);
        assert!(!me.cmdline.is_empty());
        assert!(me.is_alive());
        assert!(me.environ().iter().any(|(k, _)| k == "PATH" || k == "HOME"), "{:?}", me.environ());
        assert_eq!(me.cwd(), std::env::current_dir().ok());
        let usage = me.usage().expect("usage");
        assert!(usage.rss_bytes > 0 && usage.threads >= 1, "{usage:?}");
        assert!(me.uptime_seconds().is_some());
    }
}
