//! The governor: a deployment run as a whole. `schedulezero up` starts the deployment's
//! processes (the server, handlers, any other command) in dependency order, each in its own
//! process group, waits for each one's readiness, restarts crashed ones with backoff, writes
//! their rotated logs, and keeps verified state in `run/` so `down` and `status` work from any
//! shell — also after the supervisor itself was killed.
//!
//! Module map:
//! - [`config`]: the `[process.NAME]` and `[governor]` tables of `schedulezero.toml`, checked.
//! - [`layout`]: where a deployment's files are.
//! - [`supervisor`]: the running supervisor (start order, readiness, restarts, reload).
//! - [`child`]: one child process: spawn, output to its log, stop the group.
//! - [`readiness`]: HTTP, TCP, log line, handler registered, server runtime file.
//! - [`backoff`]: restart delays and crash loops.
//! - [`logs`]: rotating log files; last lines; following across rotations.
//! - [`ports`]: port checks before a start, `--auto-ports` blocks, the `ports` listing.
//! - [`state`]: the phase and per-process state files in `run/`.
//! - [`control`]: the supervisor's control socket (`restart`, `reload`).
//! - [`lifecycle`]: `down`, and cleaning what a killed supervisor left.
//! - [`status`]: `status` as data, a table or JSON.
//! - [`init`], [`systemd`]: the generated config file and unit file.

pub mod backoff;
pub mod child;
pub mod config;
pub mod control;
pub mod init;
pub mod layout;
pub mod lifecycle;
pub mod logs;
pub mod ports;
pub mod readiness;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod systemd;

pub use config::{Config, ConfigError};
pub use layout::Layout;

/// A refusal or failure of a governor command, said for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
