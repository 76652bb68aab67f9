//! Crontab strings through `croner`: 5 fields (minute first), 6 (seconds first) or 7 (seconds
//! first, year last); `L`, `W`, `#`, names and `@daily`-style nicknames; Sunday = 0; POSIX
//! day-of-month OR day-of-week. `croner` only finds local wall times here: the daylight-saving
//! rule is applied by [`crate::time`], as for every trigger.

use std::fmt;

use chrono::{NaiveDateTime, Timelike};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::TriggerError;

#[derive(Clone)]
pub struct Crontab {
    expr: String,
    cron: Box<Cron>,
    hour_fixed: bool,
}

impl fmt::Debug for Crontab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Crontab").field(&self.expr).finish()
    }
}

impl PartialEq for Crontab {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl Crontab {
    pub fn parse(expr: &str) -> Result<Self, TriggerError> {
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        if expr.is_empty() {
            return Err(TriggerError::expression("is empty; write e.g. '*/5 * * * *'"));
        }
        let fields: Vec<&str> = expr.split(' ').collect();
        let hour_fixed = if let Some(nick) = expr.strip_prefix('@') {
            match nick.to_ascii_lowercase().as_str() {
                "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" => true,
                "hourly" => false,
                other => {
                    return Err(TriggerError::expression(format!(
                        "'@{other}' is not a known nickname (@yearly, @annually, @monthly, \
                         @weekly, @daily, @midnight, @hourly)"
                    )));
                }
            }
        } else {
            let hour = match fields.len() {
                5 => fields[1],
                6 | 7 => fields[2],
                n => {
                    return Err(TriggerError::expression(format!(
                        "has {n} fields; a crontab string has 5 (minute hour day month weekday), \
                         6 (seconds first) or 7 (seconds first, year last)"
                    )));
                }
            };
            !(hour.contains('*') || hour.contains('?') || hour.contains('/'))
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Optional)
            .build()
            .parse(&expr)
            .map_err(|e| TriggerError::expression(format!("'{expr}': {e}")))?;
        Ok(Self { expr, cron: Box::new(cron), hour_fixed })
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }

    pub fn hour_is_fixed(&self) -> bool {
        self.hour_fixed
    }

    /// The first matching local time at or after `from` (rounded up to a whole second).
    pub fn next_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let from = if from.nanosecond() > 0 {
            from.with_nanosecond(0)? + chrono::TimeDelta::seconds(1)
        } else {
            from
        };
        self.cron.find_next_occurrence(&from, true).ok()
    }
}
