//! One supervised child: started in its own process group with its environment, its stdout and
//! stderr copied line by line into its rotating log (watching for the readiness line), and
//! stopped for good (the configured signal to the group, the wait, SIGKILL).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schedulezero_host::{ProcessInfo, Stopped};

use crate::config::{ProcessSpec, Readiness};
use crate::logs::RotatingLog;

/// A started child.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    /// PID and start time (its identity) and the command line as started.
    pub info: ProcessInfo,
    pub pgid: u32,
    pub started: Instant,
    pub started_unix: u64,
    /// Set once a line of its output matched the readiness pattern.
    pub log_matched: Arc<AtomicBool>,
}

/// The program to run: `schedulezero` is this very binary (so a deployment works without the
/// binary on `PATH`, and with the same version as its governor).
pub fn program(command: &str) -> PathBuf {
    if command == "schedulezero"
        && let Ok(me) = std::env::current_exe()
    {
        return me;
    }
    PathBuf::from(command)
}

/// `${NAME}` replaced by the variable's value from `env` (unknown names are left as written).
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Starts `spec` with `env` added to the inherited environment (`NOTIFY_SOCKET` removed: the
/// governor, not its children, speaks to systemd). Output goes to `log`.
pub fn spawn(
    spec: &ProcessSpec,
    env: &BTreeMap<String, String>,
    log: Arc<Mutex<RotatingLog>>,
) -> std::io::Result<Running> {
    let program = program(&spec.command);
    let args: Vec<String> = spec.args.iter().map(|a| expand(a, env)).collect();
    if !spec.cwd.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("its working directory {} does not exist", spec.cwd.display()),
        ));
    }
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .current_dir(&spec.cwd)
        .env_remove("NOTIFY_SOCKET")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: stopping it reaches whatever it starts, and a Ctrl-C meant for the
        // governor does not reach it.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display())))?;
    let pid = child.id();
    let start_ticks = ProcessInfo::of(pid).map_or(0, |p| p.start_ticks);
    let mut cmdline = vec![program.display().to_string()];
    cmdline.extend(args);
    let info = ProcessInfo { pid, start_ticks, cmdline };

    let pattern = match &spec.readiness {
        Some(Readiness::Log(re)) => regex::Regex::new(re).ok(),
        _ => None,
    };
    let log_matched = Arc::new(AtomicBool::new(false));
    let pipes: Vec<Box<dyn Read + Send>> = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for pipe in pipes {
        let log = log.clone();
        let pattern = pattern.clone();
        let matched = log_matched.clone();
        std::thread::spawn(move || copy_lines(pipe, &log, pattern.as_ref(), &matched));
    }
    Ok(Running {
        child,
        info,
        pgid: pid,
        started: Instant::now(),
        started_unix: crate::state::unix_now(),
        log_matched,
    })
}

/// Copies a pipe into the log line by line until the child closes it.
fn copy_lines(
    pipe: Box<dyn Read + Send>,
    log: &Mutex<RotatingLog>,
    pattern: Option<&regex::Regex>,
    matched: &AtomicBool,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a child that never writes a newline cannot make this grow without end.
        match reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(re) = pattern
            && !matched.load(Ordering::Relaxed)
            && re.is_match(&String::from_utf8_lossy(&line))
        {
            matched.store(true, Ordering::Relaxed);
        }
        if let Ok(mut log) = log.lock() {
            log.line(&line);
        }
    }
}

impl Running {
    /// Its exit status, once it has exited (reaped here).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the whole group: `signal`, up to `grace`, SIGKILL; reaps the child.
    pub fn stop(
        &mut self,
        signal: schedulezero_host::Signal,
        grace: Duration,
    ) -> (Stopped, Option<ExitStatus>) {
        let child = &mut self.child;
        let mut reap = || {
            let _ = child.try_wait();
        };
        let stopped = schedulezero_host::stop_group(self.pgid, signal, grace, &mut reap);
        let status = self.child.wait().ok();
        (stopped, status)
    }
}

/// An exit status in words: `exit 0`, `exit 3`, `signal 9 (SIGKILL)`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => match schedulezero_host::Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({s})"),
            Err(_) => format!("signal {sig}"),
        },
        _ => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_expanded_and_unknown_ones_left_alone() {
        let env: BTreeMap<String, String> = [("PORT".to_string(), "8080".to_string())].into();
        assert_eq!(expand("127.0.0.1:${PORT}/x", &env), "127.0.0.1:8080/x");
        assert_eq!(expand("${NOPE}-${PORT}", &env), "${NOPE}-8080");
        assert_eq!(expand("${unterminated", &env), "${unterminated");
        assert_eq!(expand("$PORT", &env), "$PORT");
    }
}
