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
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, start_ticks) = parse_stat(&stat)?;
        if state == 'Z' || state == 'X' {
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
        Some(ProcessInfo { pid, start_ticks, cmdline })
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
/// running after the command itself exited.
pub fn process_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_state_and_group(&stat))
                .is_some_and(|(state, group)| group == pgid && state != 'Z' && state != 'X')
        })
        .collect()
}

/// State letter and process group (field 5) from `/proc/PID/stat`.
fn parse_state_and_group(stat: &str) -> Option<(char, u32)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((state, group))
}

/// State letter and start time from `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted after the
/// last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the name: state is field 3, start time field 22, so 18 more fields to skip.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat = "4242 (we ird) name)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_stat(stat), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_process_group_is_field_5() {
        let stat = "4242 (a) b) S 1 777 4242 0 -1 4194560";
        assert_eq!(parse_state_and_group(stat), Some(('S', 777)));
        assert_eq!(parse_state_and_group("nothing"), None);
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
    }
}
