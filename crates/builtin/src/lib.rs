//! Built-in ScheduleZero handlers that need no code, only a TOML file: `exec` runs commands,
//! `http` calls URLs. Both are Rust SDK handlers (`schedulezero-handler`): same reconnects,
//! heartbeats, capacity, cancellation and drain on SIGTERM. docs/BUILTIN_HANDLERS.md is the
//! user's guide; `schedulezero handler exec|http --config FILE` runs them.
//!
//! Modules:
//! - [`config`]: the file's shared shape (`handler_id`, `capacity`, `[methods.NAME]`) and how it is
//!   read, errors naming file, line and key.
//! - [`params`]: the params a method declares, and the check every call's params pass first.
//! - [`template`]: `{{name}}` templates, filled as is, percent-encoded or JSON-escaped.
//! - [`exec`]: methods that run a program in its own process group.
//! - [`http`]: methods that send an HTTP request.

pub mod config;
pub mod exec;
pub mod http;
pub mod params;
pub mod template;

use std::path::Path;

pub use config::ConfigError;
use schedulezero_handler::Handler;

/// Which built-in handler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Http,
}

/// Why a built-in handler could not start: its config file was refused, or the declaration
/// breaks the protocol's rules (an id too long, capacity 0, ...).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("config file {path}: {message}")]
    Declaration { path: String, message: String },
}

/// Loads `config` and builds the handler it declares; nothing connects yet, so a bad file is
/// refused before the server ever hears of the handler.
pub fn build(kind: Kind, config: &Path, instance_id: Option<String>) -> Result<Handler, SetupError> {
    let declaration =
        |message: String| SetupError::Declaration { path: config.display().to_string(), message };
    match kind {
        Kind::Exec => {
            let loaded = exec::load_config(config)?;
            exec::handler(loaded, instance_id).map_err(|e| declaration(e.to_string()))
        }
        Kind::Http => {
            let loaded = http::load_config(config)?;
            http::handler(loaded, instance_id).map_err(|e| declaration(e.to_string()))
        }
    }
}
