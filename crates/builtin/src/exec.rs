//! The exec handler: each method runs one program with an argument list (never through a
//! shell), in a process group of its own that is stopped whole on timeout or cancel.
//!
//! Params reach the command as environment variables (`SZ_PARAM_<NAME>`, `SZ_PARAMS`) or as
//! argument entries filled from `{{name}}` templates, only after the schema check; an argument
//! stays one argv entry whatever its value holds, and no shell ever sees it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schedulezero_handler::{CallContext, Handler, MethodError};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::time::{Instant, sleep};

use crate::config::{ConfigError, HandlerConfig, byte_limit, load, seconds};
use crate::params::{Schema, text};
use crate::template::Template;

/// How long a stopped command's group has between SIGTERM and SIGKILL. Below the SDK's 2 s
/// cancel grace, so a cancelled call still reports its own result.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// How long to keep reading output once every process of the group is gone: only a process that
/// left the group (`setsid`) can still hold the pipes open, and it is not waited for.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

const DEFAULT_MAX_OUTPUT: u64 = 64 << 10;

/// A `[methods.NAME]` table of an exec config, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecMethod {
    /// The program: a name looked up in `PATH`, or a path (relative to the config file's
    /// directory when it holds a `/` but does not start with one).
    program: String,
    #[serde(default)]
    args: Vec<String>,
    /// The working directory (relative to the config file's directory); default: the handler's.
    cwd: Option<PathBuf>,
    /// Extra environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Start from an empty environment instead of the handler's (then only `env`, the params
    /// and the run's variables are set).
    #[serde(default)]
    clear_env: bool,
    timeout_secs: Option<f64>,
    /// Exit codes that mean success (default `[0]`).
    success_codes: Option<Vec<i32>>,
    /// Bytes kept of stdout, and of stderr (default 64 KiB each).
    max_output_bytes: Option<u64>,
    #[serde(default)]
    params: Schema,
}

/// One exec method, checked.
#[derive(Debug)]
pub struct ExecMethod {
    pub program: PathBuf,
    pub args: Vec<Template>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub clear_env: bool,
    pub timeout: Option<Duration>,
    pub success_codes: Vec<i32>,
    pub max_output: usize,
    pub params: Schema,
}

impl<'de> Deserialize<'de> for ExecMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ExecMethod::new(RawExecMethod::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl ExecMethod {
    fn new(raw: RawExecMethod) -> Result<ExecMethod, String> {
        if raw.program.trim().is_empty() {
            return Err("`program` is empty".into());
        }
        let args = raw
            .args
            .iter()
            .map(|a| Template::parse(a, &raw.params).map_err(|e| format!("`args`: {e}")))
            .collect::<Result<_, _>>()?;
        for name in raw.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("`env`: '{name}' is not a valid variable name"));
            }
        }
        let success_codes = raw.success_codes.unwrap_or_else(|| vec![0]);
        if success_codes.is_empty() {
            return Err("`success_codes` is empty: no run could succeed".into());
        }
        Ok(ExecMethod {
            program: PathBuf::from(raw.program),
            args,
            cwd: raw.cwd,
            env: raw.env,
            clear_env: raw.clear_env,
            timeout: raw.timeout_secs.map(|s| seconds("timeout_secs", s)).transpose()?,
            success_codes,
            max_output: byte_limit("max_output_bytes", raw.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT))?,
            params: raw.params,
        })
    }

    /// Resolves relative paths against the config file's directory.
    fn resolve(&mut self, dir: &Path) {
        if self.program.is_relative() && self.program.components().count() > 1 {
            self.program = dir.join(&self.program);
        }
        if let Some(cwd) = &self.cwd
            && cwd.is_relative()
        {
            self.cwd = Some(dir.join(cwd));
        }
    }
}

/// An exec config file.
pub type ExecConfig = HandlerConfig<ExecMethod>;

/// Reads and checks an exec config file.
pub fn load_config(path: &Path) -> Result<ExecConfig, ConfigError> {
    load(path, ExecMethod::resolve)
}

/// The handler serving `config`'s methods.
pub fn handler(
    config: ExecConfig,
    instance_id: Option<String>,
) -> Result<Handler, schedulezero_handler::BuildError> {
    let mut builder = Handler::builder(config.handler_id).capacity(config.capacity);
    if let Some(id) = instance_id {
        builder = builder.instance_id(id);
    }
    for (name, method) in config.methods {
        if !findable(&method.program, method.clear_env, &method.env) {
            // Not refused: it may be installed or mounted later; each call says so until then.
            tracing::warn!("method {name}: program '{}' is not found now", method.program.display());
        }
        let method = Arc::new(method);
        let label: Arc<str> = name.as_str().into();
        builder = builder.method(name, move |ctx, params| run(method.clone(), label.clone(), ctx, params));
    }
    builder.build()
}

/// Whether `program` exists now: a path as it is, a bare name in the `PATH` the command will get.
fn findable(program: &Path, clear_env: bool, env: &BTreeMap<String, String>) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    let path = env.get("PATH").cloned().or_else(|| if clear_env { None } else { std::env::var("PATH").ok() });
    // With no PATH at all, the C library searches a default one.
    let path = path.unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// How the command's main process ended, or why it was stopped.
enum Ending {
    Exited(std::process::ExitStatus),
    TimedOut(Duration),
    Cancelled,
    DeadlineExceeded,
}

/// Runs one call: check params, start the command, wait for it (or stop its group), report.
async fn run(
    method: Arc<ExecMethod>,
    name: Arc<str>,
    ctx: CallContext,
    params: Value,
) -> Result<Value, MethodError> {
    let values = method.params.check(&params)?;
    let mut cmd = tokio::process::Command::new(&method.program);
    cmd.args(method.args.iter().map(|a| a.render(&values)));
    if method.clear_env {
        cmd.env_clear();
    }
    cmd.envs(&method.env);
    for (param, value) in &values {
        cmd.env(format!("SZ_PARAM_{}", param.to_ascii_uppercase()), text(value));
    }
    let deadline = chrono::Utc::now() + ctx.time_left();
    cmd.env("SZ_PARAMS", serde_json::to_string(&values)?)
        .env("SCHEDULEZERO_RUN_ID", ctx.run_id().to_string())
        .env("SCHEDULEZERO_ATTEMPT", ctx.attempt().to_string())
        .env("SCHEDULEZERO_SCHEDULED_FOR", ctx.scheduled_for().to_rfc3339())
        .env("SCHEDULEZERO_DEADLINE", deadline.to_rfc3339())
        .env("SCHEDULEZERO_METHOD", &*name);
    if let Some(cwd) = &method.cwd {
        cmd.current_dir(cwd);
    }
    // Its own process group: stopping the group reaches every process the command started, and a
    // signal meant for the handler (Ctrl-C in a terminal) does not reach the command.
    cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| match &method.cwd {
        Some(cwd) if !cwd.is_dir() => MethodError::new(format!(
            "cannot start '{}': its working directory {} does not exist",
            method.program.display(),
            cwd.display()
        )),
        _ => MethodError::new(format!("cannot start '{}': {e}", method.program.display())),
    })?;
    let Some(pid) = child.id() else {
        return Err("the command exited before it could be watched".into());
    };
    let mut group = Group { pgid: pid, gone: false };
    tracing::info!(run_id = %ctx.run_id(), attempt = ctx.attempt(), method = %name, pid, "command started");
    let stdout = Capture::start(child.stdout.take(), method.max_output);
    let stderr = Capture::start(child.stderr.take(), method.max_output);

    let limit = method.timeout.map_or(ctx.time_left(), |t| t.min(ctx.time_left()));
    let ending = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ending::Exited(status),
            Err(e) => return Err(MethodError::new(format!("cannot wait for the command: {e}"))),
        },
        () = sleep(limit) => if method.timeout.is_some_and(|t| t <= limit) {
            Ending::TimedOut(limit)
        } else {
            Ending::DeadlineExceeded
        },
        () = ctx.cancelled() => if ctx.time_left().is_zero() { Ending::DeadlineExceeded } else { Ending::Cancelled },
    };
    // Whatever ended the call, nothing the command started outlives it.
    let left_behind = group.stop(&mut child).await;
    let status = match &ending {
        Ending::Exited(status) => Some(*status),
        _ => child.wait().await.ok(),
    };
    let duration = started.elapsed();
    let (out, err) = tokio::join!(stdout.finish(), stderr.finish());

    use std::os::unix::process::ExitStatusExt;
    let exit_code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| s.signal());
    let report = json!({
        "exit_code": exit_code,
        "signal": signal,
        "duration_ms": duration.as_millis() as u64,
        "stdout": out.text(),
        "stdout_bytes": out.total,
        "stdout_truncated": out.truncated(),
        "stderr": err.text(),
        "stderr_bytes": err.total,
        "stderr_truncated": err.truncated(),
        "stopped_processes": left_behind,
    });
    let failure = match ending {
        Ending::Exited(_) => match (exit_code, signal) {
            (Some(code), _) if method.success_codes.contains(&code) => None,
            (Some(code), _) => {
                Some(format!("exited with code {code} (success: {})", codes(&method.success_codes)))
            }
            (None, Some(sig)) => Some(format!("killed by signal {sig}")),
            (None, None) => Some("ended without an exit code".to_string()),
        },
        Ending::TimedOut(after) => {
            Some(format!("timed out after {}: its process group was stopped", secs(after)))
        }
        Ending::Cancelled => Some("cancelled: its process group was stopped".into()),
        Ending::DeadlineExceeded => Some("deadline exceeded: its process group was stopped".into()),
    };
    tracing::info!(
        run_id = %ctx.run_id(), method = %name, pid, exit_code, signal, ms = duration.as_millis() as u64,
        "command {}", failure.as_deref().unwrap_or("succeeded")
    );
    match failure {
        None => Ok(report),
        Some(message) => Err(MethodError::new(message).with_detail(report)),
    }
}

fn codes(list: &[i32]) -> String {
    list.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}

fn secs(d: Duration) -> String {
    format!("{} s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// A command's process group. Dropped with processes still in it (the call's task was aborted:
/// the SDK's cancel grace ran out, or the handler was told to close at once), it kills them all.
struct Group {
    pgid: u32,
    /// Set once the group is known to be empty, so dropping it looks no further.
    gone: bool,
}

impl Group {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH, which is fine.
        unsafe {
            libc::killpg(self.pgid as libc::pid_t, signal);
        }
    }

    fn alive(&self) -> bool {
        !schedulezero_host::process_group_members(self.pgid).is_empty()
    }

    /// Stops whatever of the group still runs: SIGTERM, then SIGKILL to what is left after
    /// [`KILL_GRACE`]. Returns how many processes were still running when it started (0 after a
    /// command that exited and left nothing behind).
    async fn stop(&mut self, child: &mut Child) -> usize {
        let running = schedulezero_host::process_group_members(self.pgid).len();
        self.gone = running == 0;
        if self.gone {
            return 0;
        }
        self.signal(libc::SIGTERM);
        let until = Instant::now() + KILL_GRACE;
        while Instant::now() < until {
            // Zombies do not count: a leader that exited but is not reaped yet is gone.
            if !self.alive() {
                self.gone = true;
                return running;
            }
            sleep(Duration::from_millis(20)).await;
        }
        self.signal(libc::SIGKILL);
        let _ = child.wait().await;
        let until = Instant::now() + KILL_GRACE;
        loop {
            self.gone = !self.alive();
            if self.gone || Instant::now() >= until {
                return running;
            }
            sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.gone && self.alive() {
            self.signal(libc::SIGKILL);
        }
    }
}

/// One output stream, read as it comes (so a chatty command never blocks on a full pipe) and
/// kept up to a limit; the rest is counted, not kept.
struct Capture {
    state: Arc<Mutex<Captured>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default, Clone)]
struct Captured {
    kept: Vec<u8>,
    total: u64,
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }

    fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }
}

impl Capture {
    fn start<R: AsyncRead + Unpin + Send + 'static>(pipe: Option<R>, limit: usize) -> Capture {
        let state = Arc::new(Mutex::new(Captured::default()));
        let task = pipe.map(|mut pipe| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    let room = limit.saturating_sub(s.kept.len()).min(n);
                    s.kept.extend_from_slice(&buf[..room]);
                    s.total += n as u64;
                }
            })
        });
        Capture { state, task }
    }

    /// What was read, once the pipe is closed or [`OUTPUT_GRACE`] has passed.
    async fn finish(mut self) -> Captured {
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(OUTPUT_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(toml_text: &str) -> Result<ExecMethod, String> {
        toml::from_str::<ExecMethod>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_method_is_checked_when_loaded() {
        let m = method(
            "program = \"echo\"\nargs = [\"{{day}}\"]\nparams.day = { type = \"string\", required = true }",
        )
        .unwrap();
        assert_eq!((m.success_codes.clone(), m.max_output, m.timeout), (vec![0], 64 << 10, None));
        assert!(
            method("program = \"echo\"\nargs = [\"{{day}}\"]")
                .unwrap_err()
                .contains("{{day}} names no declared param")
        );
        assert!(method("program = \"echo\"\nprogam = 1").unwrap_err().contains("progam"));
        assert!(method("program = \"echo\"\ntimeout_secs = 0").unwrap_err().contains("timeout_secs"));
        assert!(method("program = \"echo\"\nsuccess_codes = []").unwrap_err().contains("success_codes"));
        assert!(
            method("program = \"echo\"\nmax_output_bytes = 100000000")
                .unwrap_err()
                .contains("max_output_bytes")
        );
        assert!(method("program = \"\"").unwrap_err().contains("`program` is empty"));
    }

    #[test]
    fn programs_are_looked_up_as_the_command_will_be() {
        let none = BTreeMap::new();
        assert!(findable(Path::new("sh"), false, &none));
        assert!(findable(Path::new("/bin/sh"), true, &none));
        assert!(!findable(Path::new("no-such-program-here"), false, &none));
        let own = BTreeMap::from([("PATH".to_string(), "/nonexistent".to_string())]);
        assert!(!findable(Path::new("sh"), false, &own));
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let mut m = method("program = \"bin/job.sh\"\ncwd = \"work\"").unwrap();
        m.resolve(Path::new("/etc/sz"));
        assert_eq!(
            (m.program.as_path(), m.cwd.as_deref()),
            (Path::new("/etc/sz/bin/job.sh"), Some(Path::new("/etc/sz/work")))
        );
        let mut m = method("program = \"sleep\"\ncwd = \"/tmp\"").unwrap();
        m.resolve(Path::new("/etc/sz"));
        assert_eq!((m.program.as_path(), m.cwd.as_deref()), (Path::new("sleep"), Some(Path::new("/tmp"))));
    }
}
