//! APScheduler-style cron fields (COMPAT.md §2). Being rewritten: see the interface below.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::error::TriggerError;

/// The field expressions as the user gave them (numbers already turned into strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldExprs {
    pub year: Option<String>,
    pub month: Option<String>,
    pub day: Option<String>,
    pub week: Option<String>,
    pub day_of_week: Option<String>,
    pub hour: Option<String>,
    pub minute: Option<String>,
    pub second: Option<String>,
}

/// A parsed set of APScheduler cron fields.
#[derive(Debug, Clone, PartialEq)]
pub struct CronFields {
    exprs: FieldExprs,
}

impl CronFields {
    pub fn parse(exprs: &FieldExprs) -> Result<Self, TriggerError> {
        Ok(Self { exprs: exprs.clone() })
    }

    pub fn exprs(&self) -> &FieldExprs {
        &self.exprs
    }

    pub fn hour_is_fixed(&self) -> bool {
        false
    }

    pub fn next_match(&self, _from: NaiveDateTime) -> Option<NaiveDateTime> {
        None
    }
}

/// The field names, most significant first.
pub const FIELD_NAMES: [&str; 8] = ["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"];

impl FieldExprs {
    /// The fields the user gave, most significant first, with their expressions.
    pub fn given(&self) -> Vec<(&'static str, &str)> {
        [
            ("year", &self.year),
            ("month", &self.month),
            ("day", &self.day),
            ("week", &self.week),
            ("day_of_week", &self.day_of_week),
            ("hour", &self.hour),
            ("minute", &self.minute),
            ("second", &self.second),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().map(|e| (name, e)))
        .collect()
    }
}
