//! Triggers: when a schedule fires.
//!
//! - `date`: once, at an instant.
//! - `interval`: every period of real (UTC) time from a start instant; the first fire *is* the start,
//!   which defaults to now, so a new interval schedule fires at once (COMPAT.md §2).
//! - `cron`: a calendar of local wall times in an IANA zone, written either as APScheduler fields
//!   ([`cron_fields`]) or as a crontab string ([`crontab`]); both go through the one resolver in
//!   [`crate::time`].
//!
//! Every trigger may carry a `jitter`: a maximum random delay added to dispatch, never to the slot.

pub mod cron_fields;
pub mod crontab;
mod parse;

use chrono::TimeDelta;
use chrono_tz::Tz;
use serde_json::Value;

pub use self::cron_fields::{CronFields, FieldExprs};
pub use self::crontab::Crontab;
pub use self::parse::ParseContext;
use crate::Timestamp;
use crate::error::TriggerError;
use crate::time::{self, FoldRule};

/// How old an interval's start may be and still be its first fire when a schedule is created.
pub const FRESH_START: TimeDelta = TimeDelta::seconds(1);

/// A parsed, valid trigger. Build one with [`Trigger::parse`]; store it as [`Trigger::to_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// The largest random delay added to each fire's dispatch (zero: none).
    pub jitter: TimeDelta,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    /// Fires once. `zone` is only for display.
    Date { at: Timestamp, zone: Tz },
    /// Fires at `start + k × period` for k = 0, 1, … up to `end`, in real time.
    Interval { period: TimeDelta, start: Timestamp, end: Option<Timestamp>, zone: Tz },
    /// Fires at each local time of `calendar` in `zone`, within `[start, end]`.
    Cron { calendar: Calendar, zone: Tz, start: Option<Timestamp>, end: Option<Timestamp> },
}

/// The two cron front-ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Calendar {
    /// APScheduler fields (`day_of_week` 0 = Monday; every field must match).
    Fields(CronFields),
    /// A crontab string through `croner` (Sunday = 0; day-of-month OR day-of-week).
    Crontab(Crontab),
}

impl Calendar {
    fn fold_rule(&self) -> FoldRule {
        let fixed = match self {
            Calendar::Fields(f) => f.hour_is_fixed(),
            Calendar::Crontab(c) => c.hour_is_fixed(),
        };
        if fixed { FoldRule::FirstPass } else { FoldRule::BothPasses }
    }

    fn next_local(&self, from: chrono::NaiveDateTime) -> Option<chrono::NaiveDateTime> {
        match self {
            Calendar::Fields(f) => f.next_match(from),
            Calendar::Crontab(c) => c.next_match(from),
        }
    }
}

impl Trigger {
    /// Parses a trigger object (COMPAT.md §2, plus `expression`, `jitter` and `timezone` on every
    /// type). Naive times are read in the `timezone` key's zone, else the server's.
    pub fn parse(value: &Value, ctx: &ParseContext) -> Result<Trigger, TriggerError> {
        parse::parse(value, ctx)
    }

    /// The canonical JSON form: absolute times with offsets and the zone name, so that parsing
    /// it again gives the same trigger whatever the server's zone or clock.
    pub fn to_json(&self) -> Value {
        parse::to_json(self)
    }

    /// The zone this trigger's times are shown in.
    pub fn zone(&self) -> Tz {
        match &self.kind {
            TriggerKind::Date { zone, .. }
            | TriggerKind::Interval { zone, .. }
            | TriggerKind::Cron { zone, .. } => *zone,
        }
    }

    /// The first fire slot of a schedule created at `now` (at or after `now`, except a date in
    /// the past, which fires at once, and an interval that started less than
    /// [`FRESH_START`] ago, which fires at its start).
    pub fn first_fire(&self, now: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            TriggerKind::Date { at, .. } => Some(*at),
            // A start left to default is "now" when the trigger is parsed, a few milliseconds
            // before the schedule is stored: its first fire is that start, not one period later.
            TriggerKind::Interval { start, end, .. } if *start <= now && now - *start <= FRESH_START => {
                within(*start, *end)
            }
            _ => self.next_after(now - TimeDelta::milliseconds(1)),
        }
    }

    /// The first fire slot strictly after `after`, or `None` when the trigger is exhausted.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            TriggerKind::Date { at, .. } => (*at > after).then_some(*at),
            TriggerKind::Interval { period, start, end, .. } => {
                let next = if after < *start {
                    *start
                } else {
                    let elapsed = (after - *start).num_milliseconds();
                    let period_ms = period.num_milliseconds().max(1);
                    let k = elapsed / period_ms + 1;
                    *start + TimeDelta::milliseconds(k.checked_mul(period_ms)?)
                };
                within(next, *end)
            }
            TriggerKind::Cron { calendar, zone, start, end } => {
                let after = match start {
                    Some(s) if *s > after => *s - TimeDelta::milliseconds(1),
                    _ => after,
                };
                let next = time::next_instant_after(*zone, calendar.fold_rule(), after, |from| {
                    calendar.next_local(from)
                })?;
                within(next, *end)
            }
        }
    }

    /// The next `n` fire slots strictly after `after`.
    pub fn upcoming(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The delay added to the dispatch of `slot` of schedule `id`: random within `jitter`, but
    /// the same every time it is computed, so two nodes or a restart agree on it.
    pub fn jitter_for(&self, id: uuid::Uuid, slot: Timestamp) -> TimeDelta {
        let max = self.jitter.num_milliseconds();
        if max <= 0 {
            return TimeDelta::zero();
        }
        let (hi, lo) = id.as_u64_pair();
        let h = splitmix64(hi ^ splitmix64(lo ^ slot.timestamp_millis() as u64));
        TimeDelta::milliseconds((h % (max as u64 + 1)) as i64)
    }

    /// A readable description, in the spirit of APScheduler's (`interval[0:00:05]`,
    /// `cron[hour='*/2', minute='0']`, `date[2026-01-01 09:00:00 CET]`).
    pub fn describe(&self) -> String {
        parse::describe(self)
    }
}

/// The next `count` fire slots of `trigger` after `after` (RFC 3339, or a naive time in the
/// trigger's zone), or from `now` on: what `schedulezero trigger next` and
/// `POST /api/triggers/preview` show, so the two always agree.
pub fn preview(
    trigger: &Trigger,
    after: Option<&str>,
    count: usize,
    now: Timestamp,
) -> Result<Vec<Timestamp>, TriggerError> {
    let after = match after {
        Some(text) => time::parse_timestamp("after", text, trigger.zone())?,
        None => now - TimeDelta::milliseconds(1),
    };
    Ok(trigger.upcoming(after, count))
}

fn within(t: Timestamp, end: Option<Timestamp>) -> Option<Timestamp> {
    match end {
        Some(end) if t > end => None,
        _ => Some(t),
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Reads a trigger the way a person types one (CLI, dashboard preview): a JSON trigger object,
/// or a bare crontab string. `zone`, when given, is the zone of a trigger that names none.
pub fn parse_input(text: &str, zone: Option<Tz>, ctx: &ParseContext) -> Result<Trigger, TriggerError> {
    let trimmed = text.trim();
    let value = if trimmed.starts_with('{') {
        serde_json::from_str::<Value>(trimmed)
            .map_err(|e| TriggerError::key("trigger", format!("is not valid JSON: {e}")))?
    } else {
        Value::String(trimmed.to_string())
    };
    parse_value(value, zone, ctx)
}

/// Reads a trigger given as JSON by an API client: a trigger object, or a string holding a
/// crontab expression. `zone`, when given, is the zone of a trigger that names none.
pub fn parse_value(value: Value, zone: Option<Tz>, ctx: &ParseContext) -> Result<Trigger, TriggerError> {
    let mut value = match value {
        Value::String(expr) => serde_json::json!({"type": "cron", "expression": expr.trim()}),
        other => other,
    };
    if let (Some(zone), Some(obj)) = (zone, value.as_object_mut())
        && !obj.contains_key("timezone")
    {
        obj.insert("timezone".into(), Value::String(zone.name().to_string()));
    }
    let ctx = ParseContext { local_zone: zone.unwrap_or(ctx.local_zone), ..*ctx };
    Trigger::parse(&value, &ctx)
}
