//! The governor's part of a deployment's `schedulezero.toml`: `[process.NAME]` tables and the
//! `[governor]` table (the `[server]` table belongs to the server; only its addresses are read
//! here). Everything is checked before anything starts: unknown keys, missing commands, unknown
//! dependencies and dependency cycles are refused with the file, line and key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

/// A refused configuration: the file, the line when known, the key, what is wrong.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: {message}", .file.display())]
    Parse { file: PathBuf, message: String },
    #[error("{}: line {line}: {key}: {message}", .file.display())]
    Invalid { file: PathBuf, line: usize, key: String, message: String },
    #[error("{}: {message}", .file.display())]
    Io { file: PathBuf, message: String },
}

/// The whole file as the governor reads it.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: ServerKeys,
    #[serde(default)]
    governor: GovernorFile,
    #[serde(default)]
    process: BTreeMap<String, Spanned<ProcessFile>>,
}

/// The server's addresses (its other keys are the server's to check).
#[derive(Debug, Deserialize, Default, Clone)]
struct ServerKeys {
    http: Option<String>,
    zmq: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GovernorFile {
    log_max_size: Option<Spanned<String>>,
    log_keep: Option<usize>,
    auto_ports: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct ProcessFile {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    server: bool,
    #[serde(default = "yes")]
    enabled: bool,
    readiness: Option<Readiness>,
    ready_timeout_s: Option<u64>,
    #[serde(default)]
    ports: BTreeMap<String, u16>,
    restart: Option<RestartFile>,
    stop_signal: Option<Spanned<String>>,
    stop_timeout_s: Option<u64>,
}

fn yes() -> bool {
    true
}

/// When a process counts as started, so that what depends on it may start.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Readiness {
    /// An HTTP GET answering 2xx (`${VAR}` in the URL is taken from the process's environment).
    Http(String),
    /// A TCP connection accepted: a port, or `host:port` (`${VAR}` allowed).
    Tcp(TcpTarget),
    /// A line of its output matching this regular expression.
    Log(String),
    /// A handler with this id connected to the deployment's server.
    Handler(String),
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum TcpTarget {
    Port(u16),
    Address(String),
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct RestartFile {
    policy: Option<RestartPolicy>,
    initial_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
    stable_after_s: Option<u64>,
}

/// When an exited process is started again.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// Restart policy and backoff of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    pub policy: RestartPolicy,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Running this long resets the backoff to its initial delay.
    pub stable_after_s: u64,
}

impl Default for Restart {
    fn default() -> Restart {
        Restart {
            policy: RestartPolicy::Always,
            initial_delay_ms: 1000,
            max_delay_ms: 60_000,
            stable_after_s: 30,
        }
    }
}

/// One supervised process, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    pub name: String,
    /// As written; `schedulezero` means this very binary.
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute: relative paths are taken from the deployment's directory.
    pub cwd: PathBuf,
    pub depends_on: Vec<String>,
    /// The deployment's ScheduleZero server: given the deployment's ports, ready once its runtime
    /// file names it, and its addresses are handed to the other processes.
    pub server: bool,
    pub readiness: Option<Readiness>,
    pub ready_timeout_s: u64,
    /// Environment variable → port (0: any free port).
    pub ports: BTreeMap<String, u16>,
    pub restart: Restart,
    pub stop_signal: schedulezero_host::Signal,
    pub stop_timeout_s: u64,
}

/// A deployment's governor configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    /// `[server] http`, when set.
    pub server_http: Option<String>,
    /// `[server] zmq`, when set.
    pub server_zmq: Option<String>,
    pub log_max_bytes: u64,
    pub log_keep: usize,
    /// Where `--auto-ports` allocates (inclusive).
    pub auto_ports: (u16, u16),
    /// Enabled processes, in start order (every process after what it depends on).
    pub processes: Vec<ProcessSpec>,
}

pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_AUTO_PORTS: (u16, u16) = (20000, 29999);

impl Config {
    /// Reads and checks `file`; `deployment_dir` anchors relative working directories.
    pub fn load(file: &Path, deployment_dir: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ConfigError::Io { file: file.into(), message: e.to_string() }),
        };
        Config::parse(&text, file, deployment_dir)
    }

    /// Checks `text` as the content of `file`.
    pub fn parse(text: &str, file: &Path, deployment_dir: &Path) -> Result<Config, ConfigError> {
        let parsed: File = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { file: file.into(), message: e.to_string() })?;
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let invalid = |offset: usize, key: String, message: String| ConfigError::Invalid {
            file: file.into(),
            line: line(offset),
            key,
            message,
        };

        let log_max_bytes = match &parsed.governor.log_max_size {
            Some(v) => parse_size(v.get_ref())
                .map_err(|m| invalid(v.span().start, "governor.log_max_size".into(), m))?,
            None => DEFAULT_LOG_MAX_BYTES,
        };
        let auto_ports = match &parsed.governor.auto_ports {
            Some(v) => parse_range(v.get_ref())
                .map_err(|m| invalid(v.span().start, "governor.auto_ports".into(), m))?,
            None => DEFAULT_AUTO_PORTS,
        };

        let enabled: BTreeSet<&str> =
            parsed.process.iter().filter(|(_, p)| p.get_ref().enabled).map(|(n, _)| n.as_str()).collect();
        let mut specs = BTreeMap::new();
        let mut servers = Vec::new();
        for (name, spanned) in &parsed.process {
            let at = spanned.span().start;
            let p = spanned.get_ref();
            let key = |k: &str| format!("process.{name}.{k}");
            if !valid_name(name) {
                return Err(invalid(
                    at,
                    format!("process.{name}"),
                    "a process name is letters, digits, '-' and '_'".into(),
                ));
            }
            if p.command.trim().is_empty() {
                return Err(invalid(at, key("command"), "is empty: give the program to run".into()));
            }
            if !p.enabled {
                continue;
            }
            for dep in &p.depends_on {
                let d = dep.get_ref();
                if d == name {
                    return Err(invalid(
                        dep.span().start,
                        key("depends_on"),
                        format!("'{d}' depends on itself"),
                    ));
                }
                if !parsed.process.contains_key(d) {
                    let known: Vec<&str> = parsed.process.keys().map(String::as_str).collect();
                    return Err(invalid(
                        dep.span().start,
                        key("depends_on"),
                        format!(
                            "'{d}' is not a process of this deployment (processes: {})",
                            known.join(", ")
                        ),
                    ));
                }
                if !enabled.contains(d.as_str()) {
                    return Err(invalid(
                        dep.span().start,
                        key("depends_on"),
                        format!("'{d}' is disabled (enabled = false); enable it or drop the dependency"),
                    ));
                }
            }
            if let Some(Readiness::Log(re)) = &p.readiness {
                regex::Regex::new(re).map_err(|e| invalid(at, key("readiness.log"), e.to_string()))?;
            }
            if let Some(Readiness::Handler(_)) = &p.readiness
                && p.server
            {
                return Err(invalid(at, key("readiness"), "the server itself cannot be a handler".into()));
            }
            for var in p.ports.keys().chain(p.env.keys()) {
                if var.is_empty() || var.contains('=') || var.contains('\0') {
                    return Err(invalid(
                        at,
                        key("env"),
                        format!("'{var}' is not an environment variable name"),
                    ));
                }
            }
            let stop_signal = match &p.stop_signal {
                Some(s) => schedulezero_host::parse_signal(s.get_ref())
                    .map_err(|m| invalid(s.span().start, key("stop_signal"), m))?,
                None => schedulezero_host::Signal::SIGTERM,
            };
            let defaults = Restart::default();
            let restart = match &p.restart {
                Some(r) => Restart {
                    policy: r.policy.unwrap_or(defaults.policy),
                    initial_delay_ms: r.initial_delay_ms.unwrap_or(defaults.initial_delay_ms).max(10),
                    max_delay_ms: r.max_delay_ms.unwrap_or(defaults.max_delay_ms),
                    stable_after_s: r.stable_after_s.unwrap_or(defaults.stable_after_s),
                },
                None => defaults,
            };
            if restart.max_delay_ms < restart.initial_delay_ms {
                return Err(invalid(
                    at,
                    key("restart.max_delay_ms"),
                    format!(
                        "{} is below initial_delay_ms ({})",
                        restart.max_delay_ms, restart.initial_delay_ms
                    ),
                ));
            }
            if p.server {
                servers.push((name.clone(), at));
            }
            let cwd = match &p.cwd {
                Some(c) if Path::new(c).is_absolute() => PathBuf::from(c),
                Some(c) => deployment_dir.join(c),
                None => deployment_dir.to_path_buf(),
            };
            specs.insert(
                name.clone(),
                ProcessSpec {
                    name: name.clone(),
                    command: p.command.clone(),
                    args: p.args.clone(),
                    env: p.env.clone(),
                    cwd,
                    depends_on: p.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
                    server: p.server,
                    readiness: p.readiness.clone(),
                    ready_timeout_s: p.ready_timeout_s.unwrap_or(60),
                    ports: p.ports.clone(),
                    restart,
                    stop_signal,
                    stop_timeout_s: p.stop_timeout_s.unwrap_or(10),
                },
            );
        }
        if servers.len() > 1 {
            let names: Vec<&str> = servers.iter().map(|(n, _)| n.as_str()).collect();
            return Err(invalid(
                servers[1].1,
                format!("process.{}.server", servers[1].0),
                format!("only one process can be the server; these say server = true: {}", names.join(", ")),
            ));
        }

        let order = match start_order(&specs) {
            Ok(order) => order,
            Err(cycle) => {
                let first = &cycle[0];
                let at = parsed.process.get(first).map_or(0, |p| p.span().start);
                return Err(invalid(
                    at,
                    format!("process.{first}.depends_on"),
                    format!("dependency cycle: {}", cycle.join(" → ")),
                ));
            }
        };
        let processes = order.into_iter().filter_map(|n| specs.remove(&n)).collect();
        Ok(Config {
            file: file.into(),
            server_http: parsed.server.http,
            server_zmq: parsed.server.zmq,
            log_max_bytes,
            log_keep: parsed.governor.log_keep.unwrap_or(5),
            auto_ports,
            processes,
        })
    }

    pub fn process(&self, name: &str) -> Option<&ProcessSpec> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// The server process, when the deployment runs one.
    pub fn server(&self) -> Option<&ProcessSpec> {
        self.processes.iter().find(|p| p.server)
    }
}

/// Names in dependency order (each after what it depends on; otherwise alphabetical), or one
/// cycle as the list of names around it (first repeated at the end).
fn start_order(specs: &BTreeMap<String, ProcessSpec>) -> Result<Vec<String>, Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        specs: &BTreeMap<String, ProcessSpec>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let from = path.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].to_vec();
                cycle.push(name.to_string());
                return Err(cycle);
            }
            None => {}
        }
        marks.insert(name.to_string(), Mark::Visiting);
        path.push(name.to_string());
        if let Some(spec) = specs.get(name) {
            for dep in &spec.depends_on {
                visit(dep, specs, marks, path, out)?;
            }
        }
        path.pop();
        marks.insert(name.to_string(), Mark::Done);
        out.push(name.to_string());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for name in specs.keys() {
        visit(name, specs, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `10MB`, `512KB`, `1GB`, `1048576` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_uppercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("'{text}' is not a size like \"10MB\""))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        "G" | "GB" | "GIB" => 1024 * 1024 * 1024,
        _ => return Err(format!("'{text}' is not a size like \"10MB\" (units: B, KB, MB, GB)")),
    };
    let bytes = n.checked_mul(factor).ok_or_else(|| format!("'{text}' is too large"))?;
    if bytes < 1024 {
        return Err(format!("'{text}' is below the minimum of 1KB"));
    }
    Ok(bytes)
}

/// `20000-29999`.
fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("'{text}' is not a port range like \"20000-29999\"");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a == 0 || b < a || b - a < 63 {
        return Err(format!("'{text}': give at least 64 ports, from 1 up"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/d/schedulezero.toml"), Path::new("/d"))
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("refused").to_string()
    }

    #[test]
    fn processes_come_in_dependency_order_with_defaults() {
        let c = parse(
            r#"
[server]
http = "127.0.0.1:0"
log_level = "debug"          # the server's own key: not the governor's business

[governor]
log_max_size = "1MB"
log_keep = 3

[process.web]
command = "python3"
depends_on = ["api"]
cwd = "app"
ports = { PORT = 0 }
readiness = { tcp = "127.0.0.1:${PORT}" }

[process.api]
command = "schedulezero"
args = ["serve"]
server = true
stop_signal = "INT"
restart = { policy = "on-failure", initial_delay_ms = 100 }

[process.off]
command = "false"
enabled = false
"#,
        )
        .expect("valid");
        let names: Vec<&str> = c.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        assert_eq!((c.log_max_bytes, c.log_keep), (1024 * 1024, 3));
        assert_eq!(c.server_http.as_deref(), Some("127.0.0.1:0"));
        let api = c.server().expect("server");
        assert_eq!(api.stop_signal, schedulezero_host::Signal::SIGINT);
        assert_eq!(api.restart.policy, RestartPolicy::OnFailure);
        assert_eq!((api.restart.initial_delay_ms, api.restart.max_delay_ms), (100, 60_000));
        let web = c.process("web").expect("web");
        assert_eq!(web.cwd, Path::new("/d/app"));
        assert_eq!(web.readiness, Some(Readiness::Tcp(TcpTarget::Address("127.0.0.1:${PORT}".into()))));
    }

    #[test]
    fn an_unknown_key_is_refused_with_file_line_and_key() {
        let e = error("[process.a]\ncommand = \"x\"\ncomand = \"y\"\n");
        assert!(e.contains("/d/schedulezero.toml") && e.contains("line 3") && e.contains("comand"), "{e}");
        let e = error("[governer]\nlog_keep = 1\n");
        assert!(e.contains("line 1") && e.contains("governer"), "{e}");
    }

    #[test]
    fn a_missing_command_is_refused_naming_the_process() {
        let e = error("[process.a]\ncommand = \"x\"\n\n[process.b]\nargs = []\n");
        assert!(e.contains("line 4") && e.contains("command") && e.contains("process.b"), "{e}");
    }

    #[test]
    fn an_unknown_dependency_is_refused_at_its_line() {
        let e = error("[process.a]\ncommand = \"x\"\ndepends_on = [\n  \"b\",\n]\n");
        assert!(e.contains("line 4") && e.contains("process.a.depends_on") && e.contains("'b'"), "{e}");
    }

    #[test]
    fn a_dependency_cycle_is_refused_naming_the_cycle() {
        let e = error(
            "[process.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n[process.b]\ncommand = \"x\"\ndepends_on = [\"c\"]\n[process.c]\ncommand = \"x\"\ndepends_on = [\"a\"]\n",
        );
        assert!(e.contains("dependency cycle: a → b → c → a") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let e = error("[process.a]\ncommand = \"x\"\nstop_signal = \"TERMINATE\"\n");
        assert!(e.contains("line 3") && e.contains("stop_signal"), "{e}");
        let e = error("[process.a]\ncommand = \"x\"\nreadiness = { log = \"(\" }\n");
        assert!(e.contains("readiness.log"), "{e}");
        let e = error("[process.a]\ncommand = \"x\"\nreadiness = { udp = 5 }\n");
        assert!(e.contains("line 3") && e.contains("udp"), "{e}");
        let e = error("[governor]\nlog_max_size = \"ten\"\n");
        assert!(e.contains("line 2") && e.contains("governor.log_max_size"), "{e}");
        let e = error(
            "[process.a]\ncommand = \"x\"\nserver = true\n[process.b]\ncommand = \"y\"\nserver = true\n",
        );
        assert!(e.contains("only one process"), "{e}");
    }

    #[test]
    fn sizes_and_ranges() {
        assert_eq!(parse_size("10MB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12").is_err());
        assert_eq!(parse_range("20000-29999"), Ok((20000, 29999)));
        assert!(parse_range("5-6").is_err());
    }
}
