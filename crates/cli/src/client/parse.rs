//! The command line's durations (`90s`, `5m`, `1h30m`, `2d`) and times (RFC 3339, a naive local
//! time, or a duration ago), checked before any request so a typo is a usage error (exit 2).

use chrono_tz::Tz;
use schedulezero_core::Timestamp;
use schedulezero_core::time::{format_in_zone, parse_timestamp};
use serde_json::{Map, Value, json};

use super::Failure;

/// The units `--every` and `--since` accept, largest first, with the interval trigger's key.
const UNITS: [(char, &str, f64); 5] = [
    ('w', "weeks", 604_800.0),
    ('d', "days", 86_400.0),
    ('h', "hours", 3_600.0),
    ('m', "minutes", 60.0),
    ('s', "seconds", 1.0),
];

/// A duration as parts: `1h30m` → `[("hours", 1), ("minutes", 30)]`.
pub fn duration_parts(flag: &str, text: &str) -> Result<Vec<(&'static str, f64)>, Failure> {
    let bad = |why: &str| {
        Failure::usage(format!(
            "{flag}: '{text}' {why}; write a duration like 90s, 5m, 1h30m or 2d (units w, d, h, m, s)"
        ))
    };
    let mut parts: Vec<(&'static str, f64)> = Vec::new();
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let Some((_, key, _)) = UNITS.iter().find(|(u, _, _)| *u == c.to_ascii_lowercase()) else {
            return Err(bad(&format!("has '{c}', which is not a unit")));
        };
        let value: f64 = number.parse().map_err(|_| bad(&format!("needs a number before '{c}'")))?;
        if parts.iter().any(|(k, _)| k == key) {
            return Err(bad(&format!("gives '{c}' twice")));
        }
        parts.push((key, value));
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad(&format!("ends with '{number}' without a unit")));
    }
    if parts.is_empty() {
        return Err(bad("is empty"));
    }
    if seconds_of(&parts) <= 0.0 {
        return Err(bad("is not longer than zero"));
    }
    Ok(parts)
}

fn seconds_of(parts: &[(&str, f64)]) -> f64 {
    parts.iter().map(|(key, v)| UNITS.iter().find(|(_, k, _)| k == key).map_or(0.0, |(_, _, s)| s * v)).sum()
}

/// `--every`: an interval trigger object (`{"type":"interval","hours":1,"minutes":30}`).
pub fn interval_trigger(text: &str) -> Result<Map<String, Value>, Failure> {
    let mut trigger = Map::new();
    trigger.insert("type".into(), json!("interval"));
    for (key, value) in duration_parts("--every", text)? {
        let number = if value.fract() == 0.0 && value < 1e15 { json!(value as u64) } else { json!(value) };
        trigger.insert(key.into(), number);
    }
    Ok(trigger)
}

/// A time for the server: RFC 3339 kept as given; a time without an offset (`2026-12-01 09:00`,
/// `2026-12-01`) is read in `zone` and sent with that zone's offset.
pub fn time(flag: &str, text: &str, zone: Tz) -> Result<String, Failure> {
    let t = parse_timestamp(flag, text, zone).map_err(|_| {
        Failure::usage(format!(
            "{flag}: '{text}' is not a time; write RFC 3339 (2026-12-24T18:00:00+01:00) or a time without \
             offset, read in {} (2026-12-24 18:00, or 2026-12-24 for midnight)",
            zone.name()
        ))
    })?;
    Ok(format_in_zone(t, zone))
}

/// `--since`/`--until`: a time as [`time`], or a duration meaning that long before `now`
/// (`1h` = an hour ago).
pub fn time_or_ago(flag: &str, text: &str, zone: Tz, now: Timestamp) -> Result<String, Failure> {
    let looks_like_duration = text.trim().chars().last().is_some_and(|c| c.is_ascii_alphabetic())
        && !text.contains('-')
        && !text.contains(':');
    let neither = || {
        Failure::usage(format!(
            "{flag}: '{text}' is neither a time (2026-12-01T09:00:00+01:00, or 2026-12-01 09:00 in {}) \
             nor a duration ago (30m, 1h, 2d)",
            zone.name()
        ))
    };
    if looks_like_duration {
        let seconds = seconds_of(&duration_parts(flag, text).map_err(|_| neither())?);
        let ago = now - chrono::TimeDelta::milliseconds((seconds * 1000.0).round() as i64);
        return Ok(format_in_zone(ago, zone));
    }
    time(flag, text, zone).map_err(|_| neither())
}

/// A JSON value given on the command line, which must be an object.
pub fn json_object(flag: &str, text: &str) -> Result<Value, Failure> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(Failure::usage(format!(
            "{flag}: expected a JSON object like '{{\"key\": 1}}', got {}",
            kind_of(&other)
        ))),
        Err(e) => Err(Failure::usage(format!(
            "{flag}: not valid JSON ({e}); write an object like '{{\"key\": 1}}' in single quotes"
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_turns_units_into_interval_fields() {
        let t = |s| Value::Object(interval_trigger(s).unwrap());
        assert_eq!(t("90s"), json!({"type": "interval", "seconds": 90}));
        assert_eq!(t("5m"), json!({"type": "interval", "minutes": 5}));
        assert_eq!(t("1h30m"), json!({"type": "interval", "hours": 1, "minutes": 30}));
        assert_eq!(t("2d"), json!({"type": "interval", "days": 2}));
        assert_eq!(t("1.5h"), json!({"type": "interval", "hours": 1.5}));
        assert_eq!(t("1w"), json!({"type": "interval", "weeks": 1}));
    }

    #[test]
    fn bad_durations_are_usage_errors_naming_the_flag() {
        for bad in ["90", "", "5x", "m", "1h1h", "0s", "1h 30m"] {
            let err = interval_trigger(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().starts_with("--every: "), "{err}");
        }
    }

    #[test]
    fn naive_times_take_the_zone_and_rfc3339_keeps_its_instant() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(time("--at", "2026-12-01 09:00", paris).unwrap(), "2026-12-01T09:00:00+01:00");
        assert_eq!(time("--at", "2026-07-01T09:00:00", paris).unwrap(), "2026-07-01T09:00:00+02:00");
        assert_eq!(time("--at", "2026-12-01T08:00:00Z", paris).unwrap(), "2026-12-01T09:00:00+01:00");
        assert_eq!(time("--at", "tomorrow", paris).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn since_accepts_a_duration_ago() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let utc = chrono_tz::UTC;
        assert_eq!(time_or_ago("--since", "1h", utc, now).unwrap(), "2026-12-01T11:00:00+00:00");
        assert_eq!(time_or_ago("--since", "1d2h", utc, now).unwrap(), "2026-11-30T10:00:00+00:00");
        assert_eq!(time_or_ago("--since", "2026-12-01", utc, now).unwrap(), "2026-12-01T00:00:00+00:00");
        let err = time_or_ago("--since", "yesterday", utc, now).unwrap_err();
        assert!(err.to_string().starts_with("--since: "), "{err}");
    }

    #[test]
    fn params_must_be_a_json_object() {
        assert_eq!(json_object("--params", r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        let err = json_object("--params", "{a:1}").unwrap_err();
        assert!(err.to_string().contains("--params: not valid JSON"), "{err}");
        assert!(json_object("--params", "[1]").unwrap_err().to_string().contains("an array"));
    }
}
