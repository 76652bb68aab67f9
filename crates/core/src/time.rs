//! Time zones and the one daylight-saving resolver every trigger uses.
//!
//! The rule (ARCHITECTURE.md, Time): a local time inside a spring-forward gap fires at the first
//! instant after the gap (02:30 → 03:00); in a repeated fall-back hour a schedule with a fixed hour
//! fires on the first pass only, while wildcard or step hours fire on every real hour.

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::Timestamp;
use crate::clock::to_millis;
use crate::error::TriggerError;

/// How a wall-clock time that occurs twice (fall-back) is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldRule {
    /// Only the first occurrence: for schedules that name their hours.
    FirstPass,
    /// Both occurrences: for schedules whose hour is a wildcard or a step.
    BothPasses,
}

/// The instants a local wall-clock time stands for, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    One(Timestamp),
    Two(Timestamp, Timestamp),
}

impl Resolved {
    pub fn first(self) -> Timestamp {
        match self {
            Resolved::One(t) | Resolved::Two(t, _) => t,
        }
    }

    /// The earliest instant strictly after `after`, if any.
    pub fn first_after(self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Resolved::One(t) => (t > after).then_some(t),
            Resolved::Two(a, b) => {
                if a > after {
                    Some(a)
                } else {
                    (b > after).then_some(b)
                }
            }
        }
    }
}

/// Resolves a local wall-clock time in `tz` to instants, by the daylight-saving rule above.
pub fn resolve(tz: Tz, local: NaiveDateTime, fold: FoldRule) -> Resolved {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Resolved::One(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            match fold {
                FoldRule::FirstPass => Resolved::One(early),
                FoldRule::BothPasses => Resolved::Two(early, late),
            }
        }
        LocalResult::None => Resolved::One(gap_end(tz, local)),
    }
}

/// The UTC offset in force at an instant.
pub fn offset_at(tz: Tz, t: Timestamp) -> FixedOffset {
    tz.offset_from_utc_datetime(&t.naive_utc()).fix()
}

/// The instant a spring-forward gap containing `local` ends: the first instant after the gap.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Timestamp {
    // Transitions are months apart, so a day either side of the wall time sees the offsets in
    // force before and after the gap.
    let as_utc = local.and_utc();
    let before = offset_at(tz, as_utc - TimeDelta::hours(26));
    let after = offset_at(tz, as_utc + TimeDelta::hours(26));
    // The transition T satisfies T + before <= local < T + after.
    let mut lo = as_utc - TimeDelta::seconds(i64::from(after.local_minus_utc()));
    let mut hi = as_utc - TimeDelta::seconds(i64::from(before.local_minus_utc()));
    if hi <= lo {
        // Not a gap we understand (should not happen): fall back to reading it in the old offset.
        return to_millis(hi);
    }
    // Find the first whole second whose offset is no longer the one before the gap.
    let (mut lo_s, mut hi_s) = (lo.timestamp(), hi.timestamp());
    while hi_s - lo_s > 1 {
        let mid = lo_s + (hi_s - lo_s) / 2;
        let at = DateTime::from_timestamp(mid, 0).unwrap_or(lo);
        if offset_at(tz, at) == before {
            lo_s = mid;
        } else {
            hi_s = mid;
        }
    }
    lo = DateTime::from_timestamp(lo_s, 0).unwrap_or(lo);
    hi = DateTime::from_timestamp(hi_s, 0).unwrap_or(hi);
    if offset_at(tz, lo) != before { lo } else { hi }
}

/// Finds the first instant strictly after `after` produced by a calendar of local wall times.
///
/// `next_local(from)` returns the first matching local time at or after `from` (inclusive).
/// Both cron front-ends go through here, so they share the resolver and its fold handling.
pub fn next_instant_after(
    tz: Tz,
    fold: FoldRule,
    after: Timestamp,
    mut next_local: impl FnMut(NaiveDateTime) -> Option<NaiveDateTime>,
) -> Option<Timestamp> {
    let local_after = after.with_timezone(&tz).naive_local();
    // With both passes, a wall time at or before `after`'s can still come again (its second
    // pass) when a fold is near. Look back only then: the lookback enumerates every match in
    // the window.
    let lookback = TimeDelta::hours(3);
    let recent_transition =
        fold == FoldRule::BothPasses && offset_at(tz, after - lookback) != offset_at(tz, after + lookback);
    let mut from =
        if recent_transition { local_after - lookback } else { local_after + TimeDelta::milliseconds(1) };
    let mut best: Option<Timestamp> = None;
    // The earliest instant of each successive local match never decreases, so once a match's
    // earliest instant passes the best candidate, nothing later can beat it.
    for _ in 0..2_000_000 {
        let local = next_local(from)?;
        let resolved = resolve(tz, local, fold);
        if let Some(b) = best
            && resolved.first() > b
        {
            return best;
        }
        if let Some(t) = resolved.first_after(after) {
            best = Some(best.map_or(t, |b| b.min(t)));
            if !recent_transition {
                return best;
            }
        }
        from = local + TimeDelta::milliseconds(1);
    }
    best
}

/// Parses an IANA zone name (`Europe/Paris`, `UTC`).
pub fn parse_zone(field: &str, name: &str) -> Result<Tz, TriggerError> {
    name.parse::<Tz>().map_err(|_| {
        TriggerError::key(
            field,
            format!("'{name}' is not an IANA time zone name (for example 'Europe/Paris' or 'UTC')"),
        )
    })
}

/// Parses a timestamp: ISO-8601 with an offset, or naive (read as wall time in `zone`), or a date
/// alone (midnight in `zone`). Naive times inside a gap or a fold are resolved by the one rule.
pub fn parse_timestamp(field: &str, text: &str, zone: Tz) -> Result<Timestamp, TriggerError> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(to_millis(t.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, fmt) {
            return Ok(to_millis(t.with_timezone(&Utc)));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(to_millis(resolve(zone, local, FoldRule::FirstPass).first()));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let local = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        return Ok(to_millis(resolve(zone, local, FoldRule::FirstPass).first()));
    }
    Err(TriggerError::key(
        field,
        format!(
            "'{text}' is not an ISO-8601 time (for example '2026-03-08T02:30:00-05:00', or without \
             an offset for the schedule's zone)"
        ),
    ))
}

/// Converts Unix seconds (possibly fractional) to a timestamp.
pub fn from_unix_seconds(field: &str, secs: f64) -> Result<Timestamp, TriggerError> {
    let ms = secs * 1000.0;
    if !ms.is_finite() || ms.abs() > 253_402_300_799_000.0 {
        return Err(TriggerError::key(field, format!("{secs} is not a Unix time in seconds")));
    }
    DateTime::from_timestamp_millis(ms.round() as i64)
        .ok_or_else(|| TriggerError::key(field, format!("{secs} is not a Unix time in seconds")))
}

/// Formats an instant as RFC 3339 with the offset in force in `tz` (what users read).
pub fn format_in_zone(t: Timestamp, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn ny() -> Tz {
        chrono_tz::America::New_York
    }

    fn local(y: i32, m: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(h, mi, 0)).expect("valid")
    }

    fn utc(s: &str) -> Timestamp {
        s.parse().expect("valid utc")
    }

    #[test]
    fn gap_time_resolves_to_first_instant_after_the_gap() {
        // 2026-03-08 02:30 does not exist in New York; the gap ends at 03:00 EDT = 07:00Z.
        let r = resolve(ny(), local(2026, 3, 8, 2, 30), FoldRule::FirstPass);
        assert_eq!(r, Resolved::One(utc("2026-03-08T07:00:00Z")));
    }

    #[test]
    fn gap_end_is_exact_for_half_hour_zone_shifts() {
        // Lord Howe moves 30 minutes: 02:00 → 02:30 on 2026-10-04.
        let tz: Tz = "Australia/Lord_Howe".parse().expect("zone");
        let r = resolve(tz, local(2026, 10, 4, 2, 10), FoldRule::FirstPass).first();
        assert_eq!(r.with_timezone(&tz).naive_local(), local(2026, 10, 4, 2, 30));
    }

    #[test]
    fn fold_time_first_pass_only_or_both_passes() {
        let t = local(2026, 11, 1, 1, 30);
        assert_eq!(resolve(ny(), t, FoldRule::FirstPass), Resolved::One(utc("2026-11-01T05:30:00Z")));
        assert_eq!(
            resolve(ny(), t, FoldRule::BothPasses),
            Resolved::Two(utc("2026-11-01T05:30:00Z"), utc("2026-11-01T06:30:00Z"))
        );
    }

    #[test]
    fn naive_timestamps_are_read_in_the_given_zone() {
        let t = parse_timestamp("run_date", "2026-07-01T12:00:00", ny()).expect("parses");
        assert_eq!(t, utc("2026-07-01T16:00:00Z"));
        let t = parse_timestamp("run_date", "2026-07-01 12:00", ny()).expect("parses");
        assert_eq!(t, utc("2026-07-01T16:00:00Z"));
        let t = parse_timestamp("run_date", "2026-07-01", ny()).expect("parses");
        assert_eq!(t, utc("2026-07-01T04:00:00Z"));
    }

    #[test]
    fn offset_timestamps_ignore_the_zone() {
        let t = parse_timestamp("run_date", "2026-07-01T12:00:00+02:00", ny()).expect("parses");
        assert_eq!(t, utc("2026-07-01T10:00:00Z"));
        let t = parse_timestamp("run_date", "2026-07-01T12:00:00.250Z", ny()).expect("parses");
        assert_eq!(t, utc("2026-07-01T12:00:00.250Z"));
    }

    #[test]
    fn bad_timestamp_names_the_field() {
        let e = parse_timestamp("start_time", "next tuesday", ny()).expect_err("refused");
        assert_eq!(e.field, "start_time");
        assert!(e.to_string().starts_with("trigger key 'start_time': 'next tuesday' is not"), "{e}");
    }

    #[test]
    fn bad_zone_names_the_field() {
        let e = parse_zone("timezone", "Mars/Olympus").expect_err("refused");
        assert_eq!(e.field, "timezone");
        assert!(e.message.contains("Mars/Olympus"));
    }

    #[test]
    fn unix_seconds_are_utc() {
        assert_eq!(from_unix_seconds("run_date", 1.5).expect("ok"), utc("1970-01-01T00:00:01.500Z"));
        assert!(from_unix_seconds("run_date", f64::NAN).is_err());
        assert!(from_unix_seconds("run_date", 1e30).is_err());
    }
}
