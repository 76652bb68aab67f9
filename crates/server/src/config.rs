//! The server's settings. Each comes from, in increasing precedence: its default, the
//! deployment's `schedulezero.toml` (`[server]` table), a `SCHEDULEZERO_*` variable (the
//! original's names, ../shared/COMPAT.md §4), a command-line flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeDelta;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

use crate::deployment::Deployment;

/// How logs are written (to stdout; the governor writes the files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `serve` needs to know.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub deployment: Deployment,
    /// HTTP listen address (default `127.0.0.1:8888`; port 0 picks a free one).
    pub http: String,
    /// Handler endpoint (default `tcp://127.0.0.1:4242`; port 0 picks a free one).
    pub zmq: String,
    /// Database URL or path (default `schedulezero.db` in the deployment's directory).
    pub database: String,
    /// `info`, `debug`, or a filter per module (`info,schedulezero_transport=debug`).
    pub log_level: String,
    pub log_format: LogFormat,
    /// Handler heartbeat interval (default 1000 ms).
    pub heartbeat_ms: u64,
    /// On stop, how long calls in flight may finish (default 10 s).
    pub shutdown_grace_s: u64,
    /// Shown by `GET /api/config`.
    pub instance_name: String,
    pub description: String,
    pub admin_contact: String,
    /// Host names accepted in the `Host` header besides the loopback ones (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example`) allowed to send mutating requests from a browser.
    pub allowed_origins: Vec<String>,
    /// How long finished runs are kept (default 30 days; `None`: forever).
    pub history_retention: Option<TimeDelta>,
    /// How often the retention service purges (default hourly; only
    /// `SCHEDULEZERO_HISTORY_PURGE_EVERY` changes it, for tests).
    pub history_purge_every: Duration,
}

/// Settings given on the command line (each wins over the file and the environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub deployment: Option<String>,
    pub http: Option<String>,
    pub zmq: Option<String>,
    pub database: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub history_retention: Option<String>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file's own error text carries line, column and key.
    #[error("{}: {message}", .path.display())]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// The file's shape. Unknown keys are errors, so a typo never goes unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    /// The governor's sections (`[process.NAME]`, `[governor]`): read and checked by
    /// `schedulezero up` (schedulezero_governor::config), accepted here unread.
    #[allow(dead_code)]
    process: Option<toml::Value>,
    #[allow(dead_code)]
    governor: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    http: Option<String>,
    zmq: Option<String>,
    database: Option<String>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    heartbeat_ms: Option<u64>,
    shutdown_grace_s: Option<u64>,
    instance_name: Option<String>,
    description: Option<String>,
    admin_contact: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    history_retention: Option<RetentionValue>,
}

/// `history_retention` as written in the file: parsed while the file is read, so a bad value is
/// reported with the file's line and key.
#[derive(Debug)]
struct RetentionValue(Option<TimeDelta>);

impl<'de> Deserialize<'de> for RetentionValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_retention(&text).map(RetentionValue).map_err(serde::de::Error::custom)
    }
}

impl ServerConfig {
    /// Loads the settings; `env` reads a variable (the process environment, or a test's map).
    pub fn load(
        flags: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let root = match (&flags.root, env("SCHEDULEZERO_HOME")) {
            (Some(r), _) => r.clone(),
            (None, Some(h)) if !h.trim().is_empty() => PathBuf::from(h),
            _ => std::env::current_dir().map_err(|e| ConfigError::Invalid {
                field: "root".into(),
                message: format!("cannot read the current directory: {e}"),
            })?,
        };
        let name = flags
            .deployment
            .clone()
            .or_else(|| env("SCHEDULEZERO_DEPLOYMENT").filter(|d| !d.trim().is_empty()))
            .unwrap_or_else(|| "default".into());
        let deployment = Deployment::new(root, &name)
            .map_err(|message| ConfigError::Invalid { field: "deployment".into(), message })?;
        let file = read_file(&deployment.config_file())?.server;

        let mut c = ServerConfig {
            http: file.http.unwrap_or_else(|| "127.0.0.1:8888".into()),
            zmq: file.zmq.unwrap_or_else(|| "tcp://127.0.0.1:4242".into()),
            database: file.database.unwrap_or_else(|| "schedulezero.db".into()),
            log_level: file.log_level.unwrap_or_else(|| "info".into()),
            log_format: file.log_format.unwrap_or(LogFormat::Text),
            heartbeat_ms: file.heartbeat_ms.unwrap_or(1000),
            shutdown_grace_s: file.shutdown_grace_s.unwrap_or(10),
            instance_name: file.instance_name.unwrap_or_else(|| format!("ScheduleZero ({name})")),
            description: file.description.unwrap_or_default(),
            admin_contact: file.admin_contact.unwrap_or_default(),
            allowed_hosts: file.allowed_hosts.unwrap_or_default(),
            allowed_origins: file.allowed_origins.unwrap_or_default(),
            history_retention: file.history_retention.map_or(Some(TimeDelta::days(30)), |r| r.0),
            history_purge_every: Duration::from_secs(3600),
            deployment,
        };

        // The original's variables: host and port apart.
        if let Some(host) = env("SCHEDULEZERO_HOST") {
            c.http = format!("{}:{}", host, port_of(&c.http));
        }
        if let Some(port) = env("SCHEDULEZERO_PORT") {
            let port = parse_port("SCHEDULEZERO_PORT", &port)?;
            c.http = format!("{}:{port}", host_of(&c.http));
        }
        if let Some(host) = env("SCHEDULEZERO_ZMQ_HOST") {
            c.zmq = format!("tcp://{}:{}", host, port_of(&c.zmq));
        }
        if let Some(port) = env("SCHEDULEZERO_ZMQ_PORT") {
            let port = parse_port("SCHEDULEZERO_ZMQ_PORT", &port)?;
            c.zmq = format!("tcp://{}:{port}", host_of(c.zmq.trim_start_matches("tcp://")));
        }
        if let Some(url) = env("SCHEDULEZERO_DATABASE_URL") {
            c.database = url;
        }
        if let Some(level) = env("LOG_LEVEL").or_else(|| env("SCHEDULEZERO_LOG_LEVEL")) {
            c.log_level = level.to_lowercase();
        }
        if let Some(format) = env("SCHEDULEZERO_LOG_FORMAT") {
            c.log_format = parse_format("SCHEDULEZERO_LOG_FORMAT", &format)?;
        }
        if let Some(v) = env("SCHEDULEZERO_HISTORY_RETENTION") {
            c.history_retention = parse_retention(&v).map_err(|message| ConfigError::Env {
                var: "SCHEDULEZERO_HISTORY_RETENTION".into(),
                message,
            })?;
        }
        if let Some(v) = env("SCHEDULEZERO_HISTORY_PURGE_EVERY") {
            let var = "SCHEDULEZERO_HISTORY_PURGE_EVERY";
            let every = parse_retention(&v)
                .and_then(|d| d.ok_or_else(|| "must be more than 0".to_string()))
                .and_then(|d| d.to_std().map_err(|e| e.to_string()))
                .map_err(|message| ConfigError::Env { var: var.into(), message })?;
            c.history_purge_every = every;
        }

        if let Some(v) = &flags.http {
            c.http = v.clone();
        }
        if let Some(v) = &flags.zmq {
            c.zmq = v.clone();
        }
        if let Some(v) = &flags.database {
            c.database = v.clone();
        }
        if let Some(v) = &flags.log_level {
            c.log_level = v.clone();
        }
        if let Some(v) = &flags.log_format {
            c.log_format = parse_format("--log-format", v)?;
        }
        if let Some(v) = &flags.history_retention {
            c.history_retention = parse_retention(v)
                .map_err(|message| ConfigError::Invalid { field: "--history-retention".into(), message })?;
        }
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid { field: field.into(), message };
        if self.http.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid("http", format!("'{}' is not an address like 127.0.0.1:8888", self.http)));
        }
        let zmq_ok = self
            .zmq
            .strip_prefix("tcp://")
            .and_then(|a| a.rsplit_once(':'))
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !zmq_ok {
            return Err(invalid(
                "zmq",
                format!("'{}' is not an endpoint like tcp://127.0.0.1:4242", self.zmq),
            ));
        }
        if self.heartbeat_ms < 10 {
            return Err(invalid("heartbeat_ms", format!("must be at least 10, got {}", self.heartbeat_ms)));
        }
        Ok(())
    }

    /// The HTTP port asked for (0: any).
    pub fn http_port(&self) -> u16 {
        port_of(&self.http).parse().unwrap_or(0)
    }

    /// The handler port asked for (0: any).
    pub fn zmq_port(&self) -> u16 {
        port_of(&self.zmq).parse().unwrap_or(0)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(ConfigError::File { path: path.into(), message: e.to_string() }),
    };
    toml::from_str(&text).map_err(|e| ConfigError::File { path: path.into(), message: e.to_string() })
}

fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or("", |(_, p)| p)
}

fn parse_port(var: &str, value: &str) -> Result<u16, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Env {
        var: var.into(),
        message: format!("'{value}' is not a port number (0-65535; 0 picks a free port)"),
    })
}

/// A retention: a whole number and a unit (`s`, `m`, `h`, `d`), or `0`/`off` for "forever".
fn parse_retention(value: &str) -> Result<Option<TimeDelta>, String> {
    let v = value.trim().to_ascii_lowercase();
    let bad = || {
        format!(
            "'{value}' is not a retention: give a whole number and a unit (s, m, h or d), like \"30d\" or \"12h\", or \"off\" to keep history forever"
        )
    };
    if v == "off" || v == "0" {
        return Ok(None);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = v.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_s = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    // A century is past any sensible retention, and keeps the arithmetic far from overflow.
    let s = n
        .checked_mul(unit_s)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .ok_or_else(|| format!("'{value}' is longer than a century; use \"off\" to keep history forever"))?;
    Ok((s > 0).then(|| TimeDelta::seconds(s)))
}

fn parse_format(source: &str, value: &str) -> Result<LogFormat, ConfigError> {
    match value.to_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => {
            let message = format!("'{other}' is not text or json");
            // `source` names a flag (`--log-format`) or an environment variable.
            Err(if source.starts_with("--") {
                ConfigError::Invalid { field: source.into(), message }
            } else {
                ConfigError::Env { var: source.into(), message }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(dir: &Path, flags: Overrides, vars: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let flags = Overrides { root: Some(dir.to_path_buf()), ..flags };
        ServerConfig::load(&flags, &move |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_are_loopback_and_the_deployment_directory() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(dir.path(), Overrides::default(), &[]).unwrap();
        assert_eq!((c.http.as_str(), c.zmq.as_str()), ("127.0.0.1:8888", "tcp://127.0.0.1:4242"));
        assert_eq!(c.deployment.name(), "default");
        assert_eq!(c.deployment.dir(), dir.path().join("deployments/default"));
        assert_eq!(c.database, "schedulezero.db");
    }

    #[test]
    fn file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("deployments/prod");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("schedulezero.toml"),
            "[server]\nhttp = \"127.0.0.1:9000\"\nzmq = \"tcp://127.0.0.1:5000\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = load(dir.path(), Overrides::default(), &[("SCHEDULEZERO_DEPLOYMENT", "prod")]).unwrap();
        assert_eq!(
            (c.http.as_str(), c.zmq.as_str(), c.log_format),
            ("127.0.0.1:9000", "tcp://127.0.0.1:5000", LogFormat::Json)
        );
        let vars = [
            ("SCHEDULEZERO_DEPLOYMENT", "prod"),
            ("SCHEDULEZERO_PORT", "9100"),
            ("SCHEDULEZERO_ZMQ_PORT", "0"),
            ("SCHEDULEZERO_DATABASE_URL", "sqlite+aiosqlite:///x.db"),
        ];
        let c = load(dir.path(), Overrides::default(), &vars).unwrap();
        assert_eq!((c.http.as_str(), c.zmq.as_str()), ("127.0.0.1:9100", "tcp://127.0.0.1:0"));
        assert_eq!(c.database, "sqlite+aiosqlite:///x.db");
        let flags = Overrides { http: Some("127.0.0.1:0".into()), ..Default::default() };
        assert_eq!(load(dir.path(), flags, &vars).unwrap().http, "127.0.0.1:0");
    }

    #[test]
    fn a_typo_in_the_file_names_the_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("deployments/default");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("schedulezero.toml"), "[server]\nhttp = \"127.0.0.1:9000\"\nhtpp_port = 1\n")
            .unwrap();
        let e = load(dir.path(), Overrides::default(), &[]).unwrap_err().to_string();
        assert!(e.contains("schedulezero.toml") && e.contains("line 3") && e.contains("htpp_port"), "{e}");
    }

    #[test]
    fn history_retention_from_file_environment_and_flag() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(dir.path(), Overrides::default(), &[]).unwrap();
        assert_eq!(c.history_retention, Some(TimeDelta::days(30)), "default");
        assert_eq!(c.history_purge_every, Duration::from_secs(3600), "default");
        let d = dir.path().join("deployments/default");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("schedulezero.toml"), "[server]\nhistory_retention = \"12h\"\n").unwrap();
        assert_eq!(
            load(dir.path(), Overrides::default(), &[]).unwrap().history_retention,
            Some(TimeDelta::hours(12))
        );
        let vars = [("SCHEDULEZERO_HISTORY_RETENTION", "off"), ("SCHEDULEZERO_HISTORY_PURGE_EVERY", "2s")];
        let c = load(dir.path(), Overrides::default(), &vars).unwrap();
        assert_eq!((c.history_retention, c.history_purge_every), (None, Duration::from_secs(2)));
        let flags = Overrides { history_retention: Some("90m".into()), ..Default::default() };
        assert_eq!(load(dir.path(), flags, &vars).unwrap().history_retention, Some(TimeDelta::minutes(90)));
    }

    #[test]
    fn retention_spellings() {
        assert_eq!(parse_retention("30d"), Ok(Some(TimeDelta::days(30))));
        assert_eq!(parse_retention(" 45S "), Ok(Some(TimeDelta::seconds(45))));
        assert_eq!(parse_retention("0"), Ok(None));
        assert_eq!(parse_retention("OFF"), Ok(None));
        for bad in ["", "30", "d", "30x", "-1d", "1.5h", "30 days", "99999999999999999999d"] {
            assert!(parse_retention(bad).is_err(), "{bad:?} is refused");
        }
        assert!(parse_retention("36501d").unwrap_err().contains("century"));
    }

    #[test]
    fn a_bad_retention_names_the_file_line_and_key_or_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("deployments/default");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("schedulezero.toml"),
            "[server]\nhttp = \"127.0.0.1:0\"\nhistory_retention = \"30 days\"\n",
        )
        .unwrap();
        let e = load(dir.path(), Overrides::default(), &[]).unwrap_err().to_string();
        assert!(
            e.contains("schedulezero.toml") && e.contains("line 3") && e.contains("history_retention"),
            "{e}"
        );
        assert!(e.contains("'30 days' is not a retention"), "{e}");
        std::fs::remove_file(d.join("schedulezero.toml")).unwrap();
        let e = load(dir.path(), Overrides::default(), &[("SCHEDULEZERO_HISTORY_RETENTION", "soon")])
            .unwrap_err();
        assert!(
            e.to_string().starts_with("environment variable SCHEDULEZERO_HISTORY_RETENTION: 'soon'"),
            "{e}"
        );
        let e =
            load(dir.path(), Overrides::default(), &[("SCHEDULEZERO_HISTORY_PURGE_EVERY", "0")]).unwrap_err();
        assert!(e.to_string().contains("SCHEDULEZERO_HISTORY_PURGE_EVERY"), "{e}");
        let flags = Overrides { history_retention: Some("1w".into()), ..Default::default() };
        let e = load(dir.path(), flags, &[]).unwrap_err();
        assert!(e.to_string().starts_with("--history-retention: '1w'"), "{e}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), Overrides::default(), &[("SCHEDULEZERO_PORT", "eighty")]).unwrap_err();
        assert!(e.to_string().contains("SCHEDULEZERO_PORT"), "{e}");
        let e = load(dir.path(), Overrides { http: Some("localhost".into()), ..Default::default() }, &[])
            .unwrap_err();
        assert!(e.to_string().starts_with("http:"), "{e}");
        let e = load(dir.path(), Overrides { deployment: Some("../etc".into()), ..Default::default() }, &[])
            .unwrap_err();
        assert!(e.to_string().starts_with("deployment:"), "{e}");
    }
}
