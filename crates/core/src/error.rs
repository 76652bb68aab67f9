//! Errors of the domain. Each names the field it is about, so the API can say what to fix.

use thiserror::Error;

/// A trigger, time zone or timestamp that cannot be used.
///
/// `location` says where (`cron field 'hour'`, `trigger key 'run_date'`), `message` what is wrong:
/// displayed together as `cron field 'hour': 25 is out of range 0-23`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{location}: {message}")]
pub struct TriggerError {
    /// Where the problem is, in the user's terms.
    pub location: String,
    /// The key of the JSON object it concerns (`hour`, `run_date`, `type`), for API error bodies.
    pub field: String,
    /// What is wrong, and when it helps, what would be right.
    pub message: String,
}

impl TriggerError {
    /// An error about a key of the trigger object.
    pub fn key(field: &str, message: impl Into<String>) -> Self {
        Self { location: format!("trigger key '{field}'"), field: field.to_string(), message: message.into() }
    }

    /// An error about one field of an APScheduler-style cron trigger.
    pub fn cron_field(field: &str, message: impl Into<String>) -> Self {
        Self { location: format!("cron field '{field}'"), field: field.to_string(), message: message.into() }
    }

    /// An error about a crontab expression.
    pub fn expression(message: impl Into<String>) -> Self {
        Self {
            location: "cron expression".to_string(),
            field: "expression".to_string(),
            message: message.into(),
        }
    }
}

/// A policy object that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("policy '{field}': {message}")]
pub struct PolicyError {
    /// The policy key (`misfire`, `retry.max_attempts`, …).
    pub field: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}
