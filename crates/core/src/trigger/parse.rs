//! The JSON form of triggers: parsing (COMPAT.md §2 plus our additive keys), the canonical form
//! we store, and the readable description the compat API shows.

use chrono::TimeDelta;
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::{Calendar, CronFields, Crontab, FieldExprs, Trigger, TriggerKind};
use crate::Timestamp;
use crate::error::TriggerError;
use crate::time::{self, format_in_zone};

/// What parsing needs from the outside world: the time (intervals start now by default) and the
/// server's zone (naive times and cron triggers without `timezone`).
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    pub now: Timestamp,
    pub local_zone: Tz,
}

const COMMON_KEYS: &[&str] = &["type", "timezone", "jitter"];
const DATE_KEYS: &[&str] = &["run_date"];
const INTERVAL_KEYS: &[&str] = &["weeks", "days", "hours", "minutes", "seconds", "start_time", "end_time"];
const CRON_KEYS: &[&str] = &[
    "year",
    "month",
    "day",
    "week",
    "day_of_week",
    "hour",
    "minute",
    "second",
    "start_time",
    "end_time",
    "expression",
];

pub(super) fn parse(value: &Value, ctx: &ParseContext) -> Result<Trigger, TriggerError> {
    let obj = value.as_object().ok_or_else(|| {
        TriggerError::key("trigger", "must be a JSON object such as {\"type\":\"interval\",\"seconds\":5}")
    })?;
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(_) => return Err(TriggerError::key("type", "must be a string: 'date', 'interval' or 'cron'")),
        None => return Err(TriggerError::key("type", "is missing: give 'date', 'interval' or 'cron'")),
    };
    let allowed = match kind.as_str() {
        "date" => DATE_KEYS,
        "interval" => INTERVAL_KEYS,
        "cron" => CRON_KEYS,
        other => {
            return Err(TriggerError::key(
                "type",
                format!("'{other}' is not a trigger type; use 'date', 'interval' or 'cron'"),
            ));
        }
    };
    for key in obj.keys() {
        if !COMMON_KEYS.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
            let mut keys: Vec<&str> = allowed.to_vec();
            keys.extend_from_slice(&COMMON_KEYS[1..]);
            return Err(TriggerError::key(
                key,
                format!(
                    "is not a key of {} {kind} trigger (allowed: {})",
                    if kind == "interval" { "an" } else { "a" },
                    keys.join(", ")
                ),
            ));
        }
    }
    let zone = match obj.get("timezone") {
        None | Some(Value::Null) => ctx.local_zone,
        Some(Value::String(name)) => time::parse_zone("timezone", name)?,
        Some(_) => return Err(TriggerError::key("timezone", "must be an IANA zone name string")),
    };
    let jitter = match obj.get("jitter") {
        None | Some(Value::Null) => TimeDelta::zero(),
        Some(v) => {
            let secs = number("jitter", v)?;
            if secs < 0.0 {
                return Err(TriggerError::key("jitter", "must not be negative"));
            }
            seconds_delta("jitter", secs)?
        }
    };
    let opt_time = |key: &str| -> Result<Option<Timestamp>, TriggerError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => instant(key, v, zone).map(Some),
        }
    };
    let kind = match kind.as_str() {
        "date" => {
            let at = match obj.get("run_date") {
                None | Some(Value::Null) => {
                    return Err(TriggerError::key(
                        "run_date",
                        "is missing: give an ISO-8601 time or Unix seconds",
                    ));
                }
                Some(v) => instant("run_date", v, zone)?,
            };
            TriggerKind::Date { at, zone }
        }
        "interval" => {
            let mut total_ms = 0.0;
            for (key, unit_secs) in [
                ("weeks", 604_800.0),
                ("days", 86_400.0),
                ("hours", 3_600.0),
                ("minutes", 60.0),
                ("seconds", 1.0),
            ] {
                if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                    let n = number(key, v)?;
                    if n < 0.0 {
                        return Err(TriggerError::key(
                            key,
                            format!("{n} is negative; intervals run forward"),
                        ));
                    }
                    total_ms += n * unit_secs * 1000.0;
                }
            }
            if !total_ms.is_finite() || total_ms > 1e15 {
                return Err(TriggerError::key("seconds", "the interval is too long"));
            }
            let period = TimeDelta::milliseconds(total_ms.round() as i64);
            if period <= TimeDelta::zero() {
                return Err(TriggerError::key(
                    "seconds",
                    "the interval must be longer than zero: give weeks, days, hours, minutes or seconds",
                ));
            }
            let start = opt_time("start_time")?.unwrap_or(ctx.now);
            let end = opt_time("end_time")?;
            check_bounds(Some(start), end)?;
            TriggerKind::Interval { period, start, end, zone }
        }
        _ => {
            let start = opt_time("start_time")?;
            let end = opt_time("end_time")?;
            check_bounds(start, end)?;
            let calendar = if let Some(expr) = obj.get("expression").filter(|v| !v.is_null()) {
                if let Some(field) = super::cron_fields::FIELD_NAMES.iter().find(|f| obj.contains_key(**f)) {
                    return Err(TriggerError::key(
                        field,
                        "cannot be combined with 'expression': give either a crontab string or fields",
                    ));
                }
                let expr = expr
                    .as_str()
                    .ok_or_else(|| TriggerError::expression("must be a string such as '*/5 * * * *'"))?;
                Calendar::Crontab(Crontab::parse(expr)?)
            } else {
                Calendar::Fields(CronFields::parse(&field_exprs(obj)?)?)
            };
            TriggerKind::Cron { calendar, zone, start, end }
        }
    };
    Ok(Trigger { kind, jitter })
}

fn check_bounds(start: Option<Timestamp>, end: Option<Timestamp>) -> Result<(), TriggerError> {
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return Err(TriggerError::key("end_time", "is before start_time"));
    }
    Ok(())
}

fn field_exprs(obj: &Map<String, Value>) -> Result<FieldExprs, TriggerError> {
    let get = |key: &str| -> Result<Option<String>, TriggerError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
            Some(_) => Err(TriggerError::cron_field(key, "must be a whole number or an expression string")),
        }
    };
    Ok(FieldExprs {
        year: get("year")?,
        month: get("month")?,
        day: get("day")?,
        week: get("week")?,
        day_of_week: get("day_of_week")?,
        hour: get("hour")?,
        minute: get("minute")?,
        second: get("second")?,
    })
}

/// A JSON number, or a string holding one.
fn number(key: &str, v: &Value) -> Result<f64, TriggerError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(TriggerError::key(key, format!("{v} is not a number"))),
    }
}

fn seconds_delta(key: &str, secs: f64) -> Result<TimeDelta, TriggerError> {
    let ms = secs * 1000.0;
    if !ms.is_finite() || ms.abs() > 1e15 {
        return Err(TriggerError::key(key, format!("{secs} seconds is out of range")));
    }
    Ok(TimeDelta::milliseconds(ms.round() as i64))
}

/// An ISO-8601 string or Unix seconds.
fn instant(key: &str, v: &Value, zone: Tz) -> Result<Timestamp, TriggerError> {
    match v {
        Value::String(s) => time::parse_timestamp(key, s, zone),
        Value::Number(n) => time::from_unix_seconds(key, n.as_f64().unwrap_or(f64::NAN)),
        other => Err(TriggerError::key(key, format!("{other} is not an ISO-8601 string or Unix seconds"))),
    }
}

pub(super) fn to_json(t: &Trigger) -> Value {
    let mut obj = Map::new();
    match &t.kind {
        TriggerKind::Date { at, zone } => {
            obj.insert("type".into(), json!("date"));
            obj.insert("run_date".into(), json!(format_in_zone(*at, *zone)));
            obj.insert("timezone".into(), json!(zone.name()));
        }
        TriggerKind::Interval { period, start, end, zone } => {
            obj.insert("type".into(), json!("interval"));
            obj.insert("seconds".into(), json!(period.num_milliseconds() as f64 / 1000.0));
            obj.insert("start_time".into(), json!(format_in_zone(*start, *zone)));
            if let Some(end) = end {
                obj.insert("end_time".into(), json!(format_in_zone(*end, *zone)));
            }
            obj.insert("timezone".into(), json!(zone.name()));
        }
        TriggerKind::Cron { calendar, zone, start, end } => {
            obj.insert("type".into(), json!("cron"));
            match calendar {
                Calendar::Crontab(c) => {
                    obj.insert("expression".into(), json!(c.as_str()));
                }
                Calendar::Fields(f) => {
                    for (name, expr) in f.exprs().given() {
                        obj.insert(name.into(), json!(expr));
                    }
                }
            }
            if let Some(start) = start {
                obj.insert("start_time".into(), json!(format_in_zone(*start, *zone)));
            }
            if let Some(end) = end {
                obj.insert("end_time".into(), json!(format_in_zone(*end, *zone)));
            }
            obj.insert("timezone".into(), json!(zone.name()));
        }
    }
    if t.jitter > TimeDelta::zero() {
        obj.insert("jitter".into(), json!(t.jitter.num_milliseconds() as f64 / 1000.0));
    }
    Value::Object(obj)
}

pub(super) fn describe(t: &Trigger) -> String {
    match &t.kind {
        TriggerKind::Date { at, zone } => {
            format!("date[{}]", at.with_timezone(zone).format("%Y-%m-%d %H:%M:%S %Z"))
        }
        TriggerKind::Interval { period, .. } => {
            let ms = period.num_milliseconds();
            let (days, rem) = (ms / 86_400_000, ms % 86_400_000);
            let (h, m, s, frac) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
            let mut out = String::from("interval[");
            if days > 0 {
                out.push_str(&format!("{days} day{}, ", if days == 1 { "" } else { "s" }));
            }
            out.push_str(&format!("{h}:{m:02}:{s:02}"));
            if frac > 0 {
                out.push_str(&format!(".{frac:03}"));
            }
            out.push(']');
            out
        }
        TriggerKind::Cron { calendar: Calendar::Crontab(c), zone, .. } => {
            format!("cron['{}', timezone='{}']", c.as_str(), zone.name())
        }
        TriggerKind::Cron { calendar: Calendar::Fields(f), zone, .. } => {
            let fields: Vec<String> =
                f.exprs().given().into_iter().map(|(name, expr)| format!("{name}='{expr}'")).collect();
            format!("cron[{}, timezone='{}']", fields.join(", "), zone.name())
        }
    }
}
