//! What both built-in handlers' config files share: the handler's id and capacity, a table of
//! methods, and how a file is read (errors name the file, the line and the key).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A config file: the handler it declares and its methods (`[methods.NAME]` tables).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig<M> {
    /// The handler (pool) id schedules target.
    pub handler_id: String,
    /// Most calls at once (default 1).
    #[serde(default = "one")]
    pub capacity: u32,
    /// The methods, by name.
    pub methods: BTreeMap<String, M>,
}

fn one() -> u32 {
    1
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The TOML parser's text: the line and column, the line itself, and what is wrong there.
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and checks a config file; `adjust` then gets the file's directory, against which
/// relative paths in it are resolved.
pub fn load<M: DeserializeOwned>(
    path: &Path,
    adjust: impl Fn(&mut M, &Path),
) -> Result<HandlerConfig<M>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let mut config: HandlerConfig<M> = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.into(),
        message: e.to_string().trim_end().to_string(),
    })?;
    if config.methods.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.into(),
            message: "no methods: declare at least one `[methods.NAME]` table".into(),
        });
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for method in config.methods.values_mut() {
        adjust(method, &dir);
    }
    Ok(config)
}

/// A positive, finite number of seconds (fractions allowed), for `timeout_secs`.
pub fn seconds(field: &str, value: f64) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 && value <= 366.0 * 24.0 * 3600.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("`{field}` must be a number of seconds above 0 and at most a year, got {value}"))
    }
}

/// How many bytes of output to keep, for `max_output_bytes` and `max_body_bytes`.
pub fn byte_limit(field: &str, value: u64) -> Result<usize, String> {
    // Results are stored per run and a protocol frame is at most 4 MiB; two outputs of 256 KiB
    // stay below it even when JSON escaping inflates them.
    const MAX: u64 = 256 << 10;
    if value <= MAX {
        Ok(value as usize)
    } else {
        Err(format!("`{field}` is at most {MAX} (256 KiB), got {value}"))
    }
}
