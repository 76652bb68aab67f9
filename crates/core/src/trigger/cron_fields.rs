//! APScheduler-style cron fields (COMPAT.md §2): `year`, `month`, `day`, `week`, `day_of_week`,
//! `hour`, `minute`, `second`, each an expression such as `*/5`, `mon-fri`, `1-10/3` or `last fri`.
//!
//! The semantics are APScheduler's `CronTrigger`:
//! - a time matches only when **every** field matches (no POSIX-cron OR of day and weekday);
//! - `day_of_week` counts from 0 = Monday, `week` is the ISO week (1–53);
//! - fields left out are `*` down to the least significant field given, and their minimum below
//!   it (`week`, `day_of_week` and `year` stay `*`), so `{"hour":"*/2","minute":"0"}` fires at
//!   hh:00:00 of every even hour;
//! - `*/n` counts from the field's minimum, `a/n` from `a` to the field's maximum, and a step may
//!   not be larger than the range it steps through (APScheduler rejects `*/60` for minutes).
//!
//! [`CronFields::next_match`] works on naive local wall-clock times only: time zones and
//! daylight saving are applied by [`crate::time`].

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};
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
    /// The expressions as given, for serializing and describing the trigger.
    exprs: FieldExprs,
    /// The effective fields (defaults applied); boxed to keep triggers small.
    fields: Box<Fields>,
}

/// The effective fields, in [`FIELD_NAMES`] order, and the search over them.
#[derive(Debug, Clone, PartialEq)]
struct Fields {
    year: Field,
    month: Field,
    day: Field,
    week: Field,
    day_of_week: Field,
    hour: Field,
    minute: Field,
    second: Field,
}

impl CronFields {
    /// Parses the given field expressions, applying APScheduler's defaults to the others.
    ///
    /// Errors name the field: `cron field 'hour': 25 is out of range 0-23`.
    pub fn parse(exprs: &FieldExprs) -> Result<Self, TriggerError> {
        let given = [
            &exprs.year,
            &exprs.month,
            &exprs.day,
            &exprs.week,
            &exprs.day_of_week,
            &exprs.hour,
            &exprs.minute,
            &exprs.second,
        ];
        let least_significant_given = given.iter().rposition(|g| g.is_some());
        let field = |i: usize| -> Result<Field, TriggerError> {
            let spec = &SPECS[i];
            let expr = match (given[i], least_significant_given) {
                (Some(expr), _) => expr.as_str(),
                (None, Some(last)) if i > last => spec.default,
                _ => "*",
            };
            Field::parse(spec, expr).map_err(|message| TriggerError::cron_field(spec.name, message))
        };
        let fields = Fields {
            year: field(0)?,
            month: field(1)?,
            day: field(2)?,
            week: field(3)?,
            day_of_week: field(4)?,
            hour: field(5)?,
            minute: field(6)?,
            second: field(7)?,
        };
        Ok(Self { exprs: exprs.clone(), fields: Box::new(fields) })
    }

    /// The expressions as given (used to serialize the trigger and to describe it).
    pub fn exprs(&self) -> &FieldExprs {
        &self.exprs
    }

    /// True when the effective hour field is a fixed set of hours: numbers, lists and plain
    /// ranges, but neither `*` nor a step (`*/n`, `a-b/n`, `a/n`). Fixed hours fire only on the
    /// first pass of an hour repeated by daylight saving.
    pub fn hour_is_fixed(&self) -> bool {
        self.fields.hour.items.iter().all(|item| matches!(item, Item::Range { step: None, .. }))
    }

    /// The first local wall-clock time at or after `from` (rounded up to a whole second) at
    /// which every field matches, or `None` if there is none up to the end of year 9999.
    ///
    /// Jumps field by field (year, then month, then the matching days of that month, then
    /// hour, minute, second), so the cost does not depend on how far away the match is.
    pub fn next_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let from = ceil_to_second(from)?;
        let mut year = from.year();
        let mut start =
            Start { month: from.month(), day: from.day(), time: (from.hour(), from.minute(), from.second()) };
        // The calendar repeats every 400 years (146 097 days, a whole number of weeks), so
        // whether a year has a matching date depends only on the year modulo 400. Remember the
        // residues of years searched in full without a match: that bounds the search for
        // dates that never occur, like 30 February.
        let mut barren = [0u64; 7];
        let mut barren_count = 0;
        loop {
            let next = self.fields.next_year(year)?;
            if next != year {
                year = next;
                start = Start::NEW_YEAR;
            }
            let residue = year.rem_euclid(400) as usize;
            let is_barren = barren[residue / 64] >> (residue % 64) & 1 == 1;
            if !(start == Start::NEW_YEAR && is_barren) {
                if let Some(found) = self.fields.next_in_year(year, start) {
                    return Some(found);
                }
                if start == Start::NEW_YEAR {
                    barren[residue / 64] |= 1 << (residue % 64);
                    barren_count += 1;
                    if barren_count == 400 {
                        return None;
                    }
                }
            }
            year = year.checked_add(1)?;
            start = Start::NEW_YEAR;
        }
    }
}

impl Fields {
    /// The first allowed year at or after `from`, or `None` when there is none up to 9999.
    fn next_year(&self, from: i32) -> Option<i32> {
        let from = i64::from(from.max(YEAR_MIN as i32));
        self.year
            .items
            .iter()
            .filter_map(|item| {
                let (first, last, step) = item.span(&SPECS[0])?;
                let (first, last, step) = (i64::from(first), i64::from(last), i64::from(step.max(1)));
                let next =
                    if from <= first { first } else { first + (from - first + step - 1) / step * step };
                (next <= last).then_some(next)
            })
            .min()
            .and_then(|year| i32::try_from(year).ok())
    }

    /// The first match in `year` at or after `start`.
    fn next_in_year(&self, year: i32, start: Start) -> Option<NaiveDateTime> {
        let mut month = next_bit(self.month.bits, start.month)?;
        loop {
            let first_day = if month == start.month { start.day } else { 1 };
            let mut days = self.day_mask(year, month) & (u64::MAX << first_day);
            while days != 0 {
                let day = days.trailing_zeros();
                days &= days - 1;
                let (h, m, s) = if month == start.month && day == start.day { start.time } else { (0, 0, 0) };
                if let Some((h, m, s)) = self.next_time(h, m, s) {
                    return NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(h, m, s);
                }
            }
            month = next_bit(self.month.bits, month + 1)?;
        }
    }

    /// The days of `month` (bit d for day d) allowed by the `day`, `day_of_week` and `week`
    /// fields together.
    fn day_mask(&self, year: i32, month: u32) -> u64 {
        let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
            return 0;
        };
        let len = days_in_month(year, month);
        // Weekday (0 = Monday) of the 1st, and of day d: (first_weekday + d - 1) % 7.
        let first_weekday = first.weekday().num_days_from_monday();
        let weekday_of = |day: u32| (first_weekday + day - 1) % 7;
        let mut mask = self.day.bits & bit_range(1, len);
        for item in &self.day.items {
            let day = match *item {
                Item::LastDay => Some(len),
                Item::LastWeekday(weekday) => Some(len - (weekday_of(len) + 7 - weekday) % 7),
                Item::NthWeekday { nth, weekday } => {
                    let day = 1 + (weekday + 7 - first_weekday) % 7 + 7 * nth.saturating_sub(1);
                    (day <= len).then_some(day)
                }
                Item::All { .. } | Item::Range { .. } => None,
            };
            if let Some(day) = day {
                mask |= 1 << day;
            }
        }
        if mask != 0 && self.day_of_week.bits != SPECS[4].all_bits() {
            let mut allowed = 0;
            for day in 1..=len {
                if self.day_of_week.bits >> weekday_of(day) & 1 == 1 {
                    allowed |= 1 << day;
                }
            }
            mask &= allowed;
        }
        if mask != 0 && self.week.bits != SPECS[3].all_bits() {
            // Walk the month a week at a time: each run of days up to a Sunday shares one ISO week.
            let mut day = 1;
            while day <= len {
                let end = (day + 6 - weekday_of(day)).min(len);
                let week = NaiveDate::from_ymd_opt(year, month, day).map_or(0, |d| d.iso_week().week());
                if self.week.bits >> week & 1 == 0 {
                    mask &= !bit_range(day, end);
                }
                day = end + 1;
            }
        }
        mask
    }

    /// The first allowed time of day at or after `h:m:s`, or `None` when the day has none left.
    fn next_time(&self, h: u32, m: u32, s: u32) -> Option<(u32, u32, u32)> {
        let mut hour = next_bit(self.hour.bits, h)?;
        loop {
            let first_minute = if hour == h { m } else { 0 };
            let mut minute = next_bit(self.minute.bits, first_minute);
            while let Some(min) = minute {
                let first_second = if hour == h && min == m { s } else { 0 };
                if let Some(sec) = next_bit(self.second.bits, first_second) {
                    return Some((hour, min, sec));
                }
                minute = next_bit(self.minute.bits, min + 1);
            }
            hour = next_bit(self.hour.bits, hour + 1)?;
        }
    }
}

/// The field names, most significant first.
pub const FIELD_NAMES: [&str; 8] =
    ["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"];

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

const YEAR_MIN: u32 = 1970;
const YEAR_MAX: u32 = 9999;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const ORDINALS: [&str; 5] = ["1st", "2nd", "3rd", "4th", "5th"];

/// What one field accepts.
struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names of the values from `min` on (`jan` = 1, `mon` = 0); empty when the field has none.
    names: &'static [&'static str],
    /// The value of the field when left out below the least significant field given.
    default: &'static str,
    /// What the field takes, for error messages.
    takes: &'static str,
}

impl Spec {
    /// The bit set of every value of the field (fields other than `year`).
    fn all_bits(&self) -> u64 {
        bit_range(self.min, self.max)
    }
}

/// The fields, in [`FIELD_NAMES`] order.
const SPECS: [Spec; 8] = [
    Spec { name: "year", min: YEAR_MIN, max: YEAR_MAX, names: &[], default: "*", takes: "a year 1970-9999" },
    Spec { name: "month", min: 1, max: 12, names: &MONTHS, default: "1", takes: "a month 1-12 or jan-dec" },
    Spec {
        name: "day",
        min: 1,
        max: 31,
        names: &[],
        default: "1",
        takes: "a day 1-31, 'last', 'last fri', '1st mon' to '5th sun'",
    },
    Spec { name: "week", min: 1, max: 53, names: &[], default: "*", takes: "an ISO week 1-53" },
    Spec {
        name: "day_of_week",
        min: 0,
        max: 6,
        names: &WEEKDAYS,
        default: "*",
        takes: "a weekday 0-6 (0 = Monday) or mon-sun",
    },
    Spec { name: "hour", min: 0, max: 23, names: &[], default: "0", takes: "an hour 0-23" },
    Spec { name: "minute", min: 0, max: 59, names: &[], default: "0", takes: "a minute 0-59" },
    Spec { name: "second", min: 0, max: 59, names: &[], default: "0", takes: "a second 0-59" },
];

/// One comma-separated item of a field expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// `*` or `*/step`: every `step`-th value from the field's minimum.
    All { step: Option<u32> },
    /// `a`, `a-b`, `a-b/step`, or `a/step` (up to the field's maximum).
    Range { first: u32, last: u32, step: Option<u32> },
    /// `last` (day only): the last day of the month.
    LastDay,
    /// `last fri` (day only): the last such weekday (0 = Monday) of the month.
    LastWeekday(u32),
    /// `2nd tue` (day only): the `nth` (1–5) such weekday of the month, if the month has one.
    NthWeekday { nth: u32, weekday: u32 },
}

impl Item {
    /// The values a plain item steps through, as (first, last, step); `None` for day positions.
    fn span(&self, spec: &Spec) -> Option<(u32, u32, u32)> {
        match *self {
            Item::All { step } => Some((spec.min, spec.max, step.unwrap_or(1))),
            Item::Range { first, last, step } => Some((first, last, step.unwrap_or(1))),
            Item::LastDay | Item::LastWeekday(_) | Item::NthWeekday { .. } => None,
        }
    }
}

/// One parsed field.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    items: Vec<Item>,
    /// Bit v is set when a plain item allows value v. Unused (0) for `year`, whose values do
    /// not fit; day positions (`last`, `1st mon`) are resolved per month from `items`.
    bits: u64,
}

impl Field {
    fn parse(spec: &Spec, expr: &str) -> Result<Field, String> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(format!("the expression is empty; give {}, or '*' for every value", spec.takes));
        }
        let mut items = Vec::new();
        for item in expr.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(format!(
                    "'{expr}' has an empty item; separate values with single commas, as in '1,15'"
                ));
            }
            items.push(parse_item(spec, item)?);
        }
        let mut bits = 0u64;
        if spec.max < 64 {
            for (first, last, step) in items.iter().filter_map(|item| item.span(spec)) {
                let mut value = first;
                while value <= last {
                    bits |= 1u64.checked_shl(value).unwrap_or(0);
                    value += step.max(1);
                }
            }
        }
        Ok(Field { items, bits })
    }
}

/// Parses one trimmed item of a list.
fn parse_item(spec: &Spec, item: &str) -> Result<Item, String> {
    let words: Vec<&str> = item.split_whitespace().collect();
    if let Some(&keyword) = words.first() {
        let nth = ORDINALS.iter().position(|o| o.eq_ignore_ascii_case(keyword));
        if keyword.eq_ignore_ascii_case("last") || nth.is_some() {
            if spec.name != "day" {
                return Err(format!(
                    "'{item}' can only be used in the day field; {} takes {}, '*', '*/n', 'a-b' or 'a-b/n'",
                    spec.name, spec.takes
                ));
            }
            return match (nth, words.as_slice()) {
                (None, [_]) => Ok(Item::LastDay),
                (_, [_, weekday]) => {
                    let weekday = WEEKDAYS.iter().position(|w| w.eq_ignore_ascii_case(weekday)).ok_or_else(|| {
                        format!("'{weekday}' in '{item}' is not a weekday name; use mon, tue, wed, thu, fri, sat or sun")
                    })? as u32;
                    Ok(match nth {
                        None => Item::LastWeekday(weekday),
                        Some(i) => Item::NthWeekday { nth: i as u32 + 1, weekday },
                    })
                }
                (Some(_), [_]) => {
                    Err(format!("'{item}' needs a weekday name after it, as in '{keyword} mon'"))
                }
                _ => Err(format!(
                    "'{item}' is not a valid day position; write 'last', or a position and a weekday name \
                     such as 'last fri' or '1st mon'"
                )),
            };
        }
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base.trim(), Some(parse_step(spec, item, step.trim())?)),
        None => (item, None),
    };
    if base == "*" {
        if let Some(step) = step
            && step > spec.max - spec.min
        {
            return Err(format!(
                "step {step} in '{item}' is larger than the range {}-{} it steps through; use a step of at most {}",
                spec.min,
                spec.max,
                spec.max - spec.min
            ));
        }
        return Ok(Item::All { step });
    }
    let (first, last) = match base.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.trim(), b.trim());
            let first = parse_value(spec, item, a)?;
            let last = parse_value(spec, item, b)?;
            if first > last {
                return Err(reversed_range(spec, (a, first), (b, last)));
            }
            (first, last)
        }
        None => {
            let value = parse_value(spec, item, base)?;
            (value, if step.is_some() { spec.max } else { value })
        }
    };
    if let Some(step) = step
        && step > last - first
    {
        return Err(if first == last {
            format!("'{item}' steps through the single value {first}; write it without the step")
        } else {
            format!(
                "step {step} in '{item}' is larger than the range {first}-{last} it steps through; \
                 use a step of at most {}",
                last - first
            )
        });
    }
    Ok(Item::Range { first, last, step })
}

/// Parses the step after `/` in `item`.
fn parse_step(spec: &Spec, item: &str, step: &str) -> Result<u32, String> {
    if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{item}' needs a whole number after '/', as in '*/5'"));
    }
    match step.parse::<u32>() {
        Ok(0) => Err(format!("step 0 in '{item}' must be at least 1")),
        Ok(step) => Ok(step),
        Err(_) => Err(format!(
            "step {step} in '{item}' is larger than the range {}-{} it steps through",
            spec.min, spec.max
        )),
    }
}

/// Parses one value (a number, or a month or weekday name) of `item`.
fn parse_value(spec: &Spec, item: &str, token: &str) -> Result<u32, String> {
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        return match token.parse::<u32>() {
            Ok(value) if (spec.min..=spec.max).contains(&value) => Ok(value),
            _ => Err(format!("{token} is out of range {}-{}", spec.min, spec.max)),
        };
    }
    if !spec.names.is_empty() && !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphabetic()) {
        return match spec.names.iter().position(|n| n.eq_ignore_ascii_case(token)) {
            Some(i) => Ok(spec.min + i as u32),
            None if spec.name == "month" => Err(format!(
                "'{token}' is not a month name; use jan, feb, mar, apr, may, jun, jul, aug, sep, oct, nov or dec \
                 (or 1-12)"
            )),
            None => Err(format!(
                "'{token}' is not a weekday name; use mon, tue, wed, thu, fri, sat or sun (or 0-6, 0 = Monday)"
            )),
        };
    }
    Err(format!(
        "'{item}' is not a valid expression; {} takes {}, '*', '*/n', 'a-b', 'a-b/n', or a comma-separated list \
         of these",
        spec.name, spec.takes
    ))
}

/// The error for `b-a` written as `a-b`: APScheduler ranges do not wrap around.
fn reversed_range(spec: &Spec, (a, first): (&str, u32), (b, last): (&str, u32)) -> String {
    if spec.name == "year" {
        return format!("range {a}-{b} starts after it ends; write it as {b}-{a}");
    }
    let named = |token: &str| !spec.names.is_empty() && token.bytes().all(|c| c.is_ascii_alphabetic());
    let show = |value: u32, like: &str| match spec.names.get((value - spec.min) as usize) {
        Some(name) if named(like) => (*name).to_string(),
        _ => value.to_string(),
    };
    let head = if first == spec.max { a.to_string() } else { format!("{a}-{}", show(spec.max, a)) };
    let tail = if last == spec.min { b.to_string() } else { format!("{}-{b}", show(spec.min, b)) };
    format!("range {a}-{b} starts after it ends; ranges do not wrap around, so write it as {head},{tail}")
}

/// Where the search starts within a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    month: u32,
    day: u32,
    time: (u32, u32, u32),
}

impl Start {
    const NEW_YEAR: Start = Start { month: 1, day: 1, time: (0, 0, 0) };
}

/// `t`, rounded up to a whole second.
fn ceil_to_second(t: NaiveDateTime) -> Option<NaiveDateTime> {
    if t.nanosecond() == 0 {
        return Some(t);
    }
    t.with_nanosecond(0)?.checked_add_signed(TimeDelta::seconds(1))
}

/// The smallest set bit of `bits` at or above `from`.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    let rest = bits & u64::MAX.checked_shl(from).unwrap_or(0);
    (rest != 0).then(|| rest.trailing_zeros())
}

/// Bits `from..=to` (both below 64).
fn bit_range(from: u32, to: u32) -> u64 {
    if from > to || to >= 64 {
        return 0;
    }
    (u64::MAX >> (63 - to)) & (u64::MAX << from)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::{NaiveTime, TimeDelta};
    use proptest::prelude::*;

    use super::*;

    fn exprs(fields: &[(&str, &str)]) -> FieldExprs {
        let mut exprs = FieldExprs::default();
        for (name, expr) in fields {
            let slot = match *name {
                "year" => &mut exprs.year,
                "month" => &mut exprs.month,
                "day" => &mut exprs.day,
                "week" => &mut exprs.week,
                "day_of_week" => &mut exprs.day_of_week,
                "hour" => &mut exprs.hour,
                "minute" => &mut exprs.minute,
                "second" => &mut exprs.second,
                other => panic!("no field {other}"),
            };
            *slot = Some((*expr).to_string());
        }
        exprs
    }

    fn cron(fields: &[(&str, &str)]) -> CronFields {
        CronFields::parse(&exprs(fields)).expect("valid fields")
    }

    fn error(fields: &[(&str, &str)]) -> String {
        CronFields::parse(&exprs(fields)).expect_err("invalid fields").to_string()
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("test time")
    }

    fn show(t: Option<NaiveDateTime>) -> Option<String> {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    }

    /// The first `n` matches at or after `from`.
    fn upcoming(cron: &CronFields, from: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = at(from);
        while out.len() < n {
            let Some(found) = cron.next_match(t) else {
                break;
            };
            out.push(found.format("%Y-%m-%d %H:%M:%S").to_string());
            t = found + TimeDelta::seconds(1);
        }
        out
    }

    // An independent checker: evaluates the parsed items directly against a calendar date,
    // without the bit sets, month masks or search of `next_match`.
    impl CronFields {
        fn matches(&self, t: NaiveDateTime) -> bool {
            t.nanosecond() == 0
                && self.date_matches(t.date())
                && self.time_matches(t.hour(), t.minute(), t.second())
        }

        fn date_matches(&self, d: NaiveDate) -> bool {
            let weekday = d.weekday().num_days_from_monday();
            u32::try_from(d.year()).is_ok_and(|y| allows(&self.fields.year, &SPECS[0], y))
                && allows(&self.fields.month, &SPECS[1], d.month())
                && day_allows(&self.fields.day, d)
                && allows(&self.fields.week, &SPECS[3], d.iso_week().week())
                && allows(&self.fields.day_of_week, &SPECS[4], weekday)
        }

        fn time_matches(&self, h: u32, m: u32, s: u32) -> bool {
            allows(&self.fields.hour, &SPECS[5], h)
                && allows(&self.fields.minute, &SPECS[6], m)
                && allows(&self.fields.second, &SPECS[7], s)
        }
    }

    fn item_allows(item: &Item, spec: &Spec, value: u32) -> bool {
        match *item {
            Item::All { step } => {
                (spec.min..=spec.max).contains(&value) && (value - spec.min).is_multiple_of(step.unwrap_or(1))
            }
            Item::Range { first, last, step } => {
                (first..=last).contains(&value) && (value - first).is_multiple_of(step.unwrap_or(1))
            }
            Item::LastDay | Item::LastWeekday(_) | Item::NthWeekday { .. } => false,
        }
    }

    fn allows(field: &Field, spec: &Spec, value: u32) -> bool {
        field.items.iter().any(|item| item_allows(item, spec, value))
    }

    fn day_allows(field: &Field, d: NaiveDate) -> bool {
        let weekday = d.weekday().num_days_from_monday();
        let month_ends_within = |days: i64| (d + TimeDelta::days(days)).month() != d.month();
        field.items.iter().any(|item| match *item {
            Item::LastDay => month_ends_within(1),
            Item::LastWeekday(w) => weekday == w && month_ends_within(7),
            Item::NthWeekday { nth, weekday: w } => weekday == w && (d.day() - 1) / 7 + 1 == nth,
            _ => item_allows(item, &SPECS[2], d.day()),
        })
    }

    /// Brute force: the first matching second in `[from, until)`, scanning every second of
    /// every date whose date fields match.
    fn scan_first_match(
        cron: &CronFields,
        from: NaiveDateTime,
        until: NaiveDateTime,
    ) -> Option<NaiveDateTime> {
        let from =
            if from.nanosecond() == 0 { from } else { from.with_nanosecond(0)? + TimeDelta::seconds(1) };
        let mut date = from.date();
        let mut first = from.num_seconds_from_midnight();
        while date < until.date() || (date == until.date() && first < until.num_seconds_from_midnight()) {
            if cron.date_matches(date) {
                let end = if date == until.date() { until.num_seconds_from_midnight() } else { 86_400 };
                for sec in first..end {
                    if cron.time_matches(sec / 3600, sec / 60 % 60, sec % 60) {
                        return date.and_hms_opt(sec / 3600, sec / 60 % 60, sec % 60);
                    }
                }
            }
            date = date.succ_opt()?;
            first = 0;
        }
        None
    }

    #[test]
    fn specs_follow_field_names() {
        let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        assert_eq!(names, FIELD_NAMES);
    }

    #[test]
    fn fields_below_least_significant_given_default_to_their_minimum() {
        let every_even_hour = cron(&[("hour", "*/2"), ("minute", "0")]);
        assert_eq!(
            upcoming(&every_even_hour, "2026-03-05 09:17:42", 3),
            ["2026-03-05 10:00:00", "2026-03-05 12:00:00", "2026-03-05 14:00:00"]
        );
        // Month, day, week, weekday and year above the given fields are `*`: it runs every day.
        assert_eq!(upcoming(&every_even_hour, "2026-12-31 23:00:00", 1), ["2027-01-01 00:00:00"]);

        let mondays = cron(&[("day_of_week", "mon")]);
        assert_eq!(
            upcoming(&mondays, "2026-11-20 12:00:00", 2),
            ["2026-11-23 00:00:00", "2026-11-30 00:00:00"]
        );

        let june = cron(&[("month", "6")]);
        assert_eq!(upcoming(&june, "2026-03-01 00:00:00", 2), ["2026-06-01 00:00:00", "2027-06-01 00:00:00"]);
    }

    #[test]
    fn fields_above_least_significant_given_default_to_star() {
        // `second` is the least significant given: day, hour and minute are `*`.
        let january = cron(&[("month", "jan"), ("second", "30")]);
        assert_eq!(
            upcoming(&january, "2026-12-31 23:59:59", 3),
            ["2027-01-01 00:00:30", "2027-01-01 00:01:30", "2027-01-01 00:02:30"]
        );
        assert_eq!(show(january.next_match(at("2027-01-31 23:59:31"))), Some("2028-01-01 00:00:30".into()));
    }

    #[test]
    fn week_day_of_week_and_year_stay_star_below_given_fields() {
        // Year 2027 alone: month and day default to 1, the time to 00:00:00, the rest to `*`.
        let year = cron(&[("year", "2027")]);
        assert_eq!(upcoming(&year, "2026-05-05 00:00:00", 2), ["2027-01-01 00:00:00"]);
        // Week alone: day_of_week stays `*`, so every day of ISO week 10 at midnight.
        let week = cron(&[("week", "10")]);
        assert_eq!(
            upcoming(&week, "2026-01-01 00:00:00", 3),
            ["2026-03-02 00:00:00", "2026-03-03 00:00:00", "2026-03-04 00:00:00"]
        );
        assert_eq!(upcoming(&week, "2026-03-08 00:00:01", 1), ["2027-03-08 00:00:00"]);
    }

    #[test]
    fn no_fields_fires_every_second() {
        let every_second = cron(&[]);
        assert_eq!(
            upcoming(&every_second, "2026-02-28 23:59:58.5", 3),
            ["2026-02-28 23:59:59", "2026-03-01 00:00:00", "2026-03-01 00:00:01"]
        );
        assert!(!every_second.hour_is_fixed());
    }

    #[test]
    fn day_of_week_zero_is_monday() {
        let zero = cron(&[("day_of_week", "0")]);
        // 2026-11-20 is a Friday; 2026-11-23 a Monday.
        assert_eq!(upcoming(&zero, "2026-11-20 08:00:00", 1), ["2026-11-23 00:00:00"]);
        let six = cron(&[("day_of_week", "6")]);
        assert_eq!(upcoming(&six, "2026-11-20 08:00:00", 1), ["2026-11-22 00:00:00"]);
        assert_eq!(
            cron(&[("day_of_week", "sun")]),
            CronFields { exprs: exprs(&[("day_of_week", "sun")]), ..six }
        );
    }

    #[test]
    fn names_and_named_ranges_are_case_insensitive() {
        let weekdays = cron(&[("day_of_week", "MON-Fri"), ("hour", "9")]);
        // Friday 2026-11-20 at 10:00: the next is Monday.
        assert_eq!(
            upcoming(&weekdays, "2026-11-20 10:00:00", 2),
            ["2026-11-23 09:00:00", "2026-11-24 09:00:00"]
        );
        let first_quarter = cron(&[("month", "Jan-MAR")]);
        assert_eq!(
            upcoming(&first_quarter, "2026-03-01 00:00:01", 2),
            ["2027-01-01 00:00:00", "2027-02-01 00:00:00"]
        );
        let wrapped = cron(&[("month", " nov , feb ")]);
        assert_eq!(
            upcoming(&wrapped, "2026-01-01 00:00:00", 2),
            ["2026-02-01 00:00:00", "2026-11-01 00:00:00"]
        );
    }

    #[test]
    fn lists_and_steps_union_their_values() {
        let minutes = cron(&[("hour", "5"), ("minute", "5,20,*/30")]);
        assert_eq!(
            upcoming(&minutes, "2026-01-01 00:00:00", 5),
            [
                "2026-01-01 05:00:00",
                "2026-01-01 05:05:00",
                "2026-01-01 05:20:00",
                "2026-01-01 05:30:00",
                "2026-01-02 05:00:00"
            ]
        );
        let days = cron(&[("day", "*/10")]);
        assert_eq!(
            upcoming(&days, "2026-01-02 00:00:00", 4),
            ["2026-01-11 00:00:00", "2026-01-21 00:00:00", "2026-01-31 00:00:00", "2026-02-01 00:00:00"]
        );
    }

    #[test]
    fn range_with_step_starts_at_its_first_value() {
        let hours = cron(&[("hour", "1-10/3")]);
        assert_eq!(
            upcoming(&hours, "2026-01-01 00:00:00", 5),
            [
                "2026-01-01 01:00:00",
                "2026-01-01 04:00:00",
                "2026-01-01 07:00:00",
                "2026-01-01 10:00:00",
                "2026-01-02 01:00:00"
            ]
        );
        // `a/n` runs from a to the field's maximum.
        let minutes = cron(&[("minute", "10/20")]);
        assert_eq!(
            upcoming(&minutes, "2026-01-01 00:00:00", 4),
            ["2026-01-01 00:10:00", "2026-01-01 00:30:00", "2026-01-01 00:50:00", "2026-01-01 01:10:00"]
        );
        // `*/n` on the year counts from 1970.
        let years = cron(&[("year", "*/5")]);
        assert_eq!(
            upcoming(&years, "2026-06-01 00:00:00", 2),
            ["2030-01-01 00:00:00", "2035-01-01 00:00:00"]
        );
    }

    #[test]
    fn last_is_the_last_day_of_each_month() {
        let last = cron(&[("day", "last")]);
        assert_eq!(
            upcoming(&last, "2024-02-10 00:00:00", 3),
            ["2024-02-29 00:00:00", "2024-03-31 00:00:00", "2024-04-30 00:00:00"]
        );
        assert_eq!(upcoming(&last, "2023-02-01 00:00:00", 1), ["2023-02-28 00:00:00"]);
    }

    #[test]
    fn last_weekday_is_the_last_such_weekday_of_each_month() {
        let last_friday = cron(&[("day", "last fri")]);
        assert_eq!(
            upcoming(&last_friday, "2026-11-01 00:00:00", 2),
            ["2026-11-27 00:00:00", "2026-12-25 00:00:00"]
        );
        let spaced = cron(&[("day", "LAST   Fri"), ("month", "NOV")]);
        assert_eq!(
            upcoming(&spaced, "2026-11-01 00:00:00", 2),
            ["2026-11-27 00:00:00", "2027-11-26 00:00:00"]
        );
    }

    #[test]
    fn nth_weekday_is_that_weekday_of_each_month() {
        let first_monday = cron(&[("day", "1st mon")]);
        assert_eq!(
            upcoming(&first_monday, "2026-11-01 00:00:00", 2),
            ["2026-11-02 00:00:00", "2026-12-07 00:00:00"]
        );
        let mixed = cron(&[("day", "1,3rd wed,last")]);
        assert_eq!(
            upcoming(&mixed, "2026-11-01 00:00:00", 4),
            ["2026-11-01 00:00:00", "2026-11-18 00:00:00", "2026-11-30 00:00:00", "2026-12-01 00:00:00"]
        );
    }

    #[test]
    fn fifth_weekday_skips_months_without_one() {
        // November and December 2026 have four Fridays; January 2027 has five.
        let fifth_friday = cron(&[("day", "5th fri")]);
        assert_eq!(
            upcoming(&fifth_friday, "2026-11-01 00:00:00", 2),
            ["2027-01-29 00:00:00", "2027-04-30 00:00:00"]
        );
    }

    #[test]
    fn leap_day_fires_only_in_leap_years() {
        let leap_day = cron(&[("month", "2"), ("day", "29")]);
        assert_eq!(
            upcoming(&leap_day, "2025-03-01 00:00:00", 2),
            ["2028-02-29 00:00:00", "2032-02-29 00:00:00"]
        );
        assert_eq!(upcoming(&leap_day, "2024-02-29 00:00:01", 1), ["2028-02-29 00:00:00"]);
        // 2100 is not a leap year.
        assert_eq!(upcoming(&leap_day, "2096-03-01 00:00:00", 1), ["2104-02-29 00:00:00"]);
    }

    #[test]
    fn iso_week_53_exists_only_in_some_years() {
        let week_53 = cron(&[("week", "53")]);
        // 2020-W53 runs from Monday 2020-12-28 to Sunday 2021-01-03; the next is 2026-W53.
        assert_eq!(
            upcoming(&week_53, "2021-01-02 12:00:00", 2),
            ["2021-01-03 00:00:00", "2026-12-28 00:00:00"]
        );
        // 2026-W53 spans the new year: 2027-01-01 to 2027-01-03 belong to it.
        assert_eq!(
            upcoming(&week_53, "2026-12-31 12:00:00", 4),
            ["2027-01-01 00:00:00", "2027-01-02 00:00:00", "2027-01-03 00:00:00", "2032-12-27 00:00:00"]
        );
    }

    #[test]
    fn iso_week_1_can_start_in_december() {
        // 2026-W01 starts on Monday 2025-12-29: its Wednesday is 2025-12-31.
        let wednesday_of_week_1 = cron(&[("week", "1"), ("day_of_week", "wed")]);
        assert_eq!(
            upcoming(&wednesday_of_week_1, "2025-12-01 00:00:00", 2),
            ["2025-12-31 00:00:00", "2027-01-06 00:00:00"]
        );
    }

    #[test]
    fn every_field_must_match_not_day_or_weekday() {
        // Friday the 13th, not "every 13th and every Friday".
        let friday_13th = cron(&[("day", "13"), ("day_of_week", "fri")]);
        assert_eq!(
            upcoming(&friday_13th, "2026-01-01 00:00:00", 2),
            ["2026-02-13 00:00:00", "2026-03-13 00:00:00"]
        );
    }

    #[test]
    fn impossible_dates_return_none_quickly() {
        for fields in [
            &[("month", "feb"), ("day", "30")][..],
            &[("month", "4,6,9,11"), ("day", "31")],
            &[("month", "6"), ("week", "1")],
            &[("day", "31"), ("week", "10")],
            &[("day", "5th mon"), ("month", "feb"), ("day_of_week", "tue")],
            &[("year", "2026"), ("month", "feb"), ("day", "5th mon")],
        ] {
            let never = cron(fields);
            let started = Instant::now();
            assert_eq!(never.next_match(at("2026-01-01 00:00:00")), None, "{fields:?}");
            assert!(
                started.elapsed() < Duration::from_millis(200),
                "{fields:?} took {:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn rare_dates_are_found_across_century_rules() {
        // 29 February on a Monday: 2044, 2072, then 2112 (2100 is no leap year).
        let leap_monday = cron(&[("month", "feb"), ("day", "29"), ("day_of_week", "mon")]);
        assert_eq!(
            upcoming(&leap_monday, "2026-01-01 00:00:00", 3),
            ["2044-02-29 00:00:00", "2072-02-29 00:00:00", "2112-02-29 00:00:00"]
        );
        let no_leap_day_left = cron(&[("year", "2100-2103"), ("month", "2"), ("day", "29")]);
        assert_eq!(no_leap_day_left.next_match(at("2026-01-01 00:00:00")), None);
    }

    #[test]
    fn a_partly_searched_year_does_not_rule_out_its_400_year_cycle() {
        // 2026 is searched from June on and has no match left; 2426 (same place in the 400-year
        // calendar cycle) must still be searched in full.
        let januaries = cron(&[("year", "2026,2426"), ("month", "1")]);
        assert_eq!(upcoming(&januaries, "2026-06-01 00:00:00", 1), ["2426-01-01 00:00:00"]);
    }

    #[test]
    fn far_yearly_match_is_found_without_scanning() {
        let far = cron(&[("year", "9998"), ("month", "12"), ("day", "31"), ("hour", "23"), ("minute", "59")]);
        let started = Instant::now();
        for _ in 0..100 {
            assert_eq!(show(far.next_match(at("2026-01-01 00:00:00"))), Some("9998-12-31 23:59:00".into()));
        }
        // Well under a millisecond each, even in a debug build on a busy machine.
        assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
    }

    #[test]
    fn every_second_pattern_is_cheap() {
        let every_second = cron(&[("second", "*")]);
        let started = Instant::now();
        let mut t = at("2026-12-31 23:00:00");
        for _ in 0..10_000 {
            t = every_second.next_match(t + TimeDelta::seconds(1)).expect("next second");
        }
        assert_eq!(t, at("2027-01-01 01:46:40"));
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    }

    #[test]
    fn no_match_after_year_9999() {
        let every_second = cron(&[]);
        assert_eq!(
            show(every_second.next_match(at("9999-12-31 23:59:59"))),
            Some("9999-12-31 23:59:59".into())
        );
        assert_eq!(every_second.next_match(at("9999-12-31 23:59:59.5")), None);
        assert_eq!(cron(&[("year", "2020")]).next_match(at("2026-01-01 00:00:00")), None);
    }

    #[test]
    fn years_before_1970_are_never_matched() {
        assert_eq!(show(cron(&[]).next_match(at("1960-05-05 10:00:00"))), Some("1970-01-01 00:00:00".into()));
    }

    #[test]
    fn next_match_is_inclusive_and_rounds_sub_seconds_up() {
        let on_the_minute = cron(&[("second", "0")]);
        assert_eq!(
            show(on_the_minute.next_match(at("2026-01-01 10:00:00"))),
            Some("2026-01-01 10:00:00".into())
        );
        assert_eq!(
            show(on_the_minute.next_match(at("2026-01-01 10:00:00.001"))),
            Some("2026-01-01 10:01:00".into())
        );
        let every_second = cron(&[]);
        assert_eq!(
            show(every_second.next_match(at("2026-01-01 10:00:00.999999999"))),
            Some("2026-01-01 10:00:01".into())
        );
        assert_eq!(
            show(every_second.next_match(at("2026-12-31 23:59:59.5"))),
            Some("2027-01-01 00:00:00".into())
        );
    }

    #[test]
    fn hour_is_fixed_only_without_star_or_step() {
        let fixed = |fields: &[(&str, &str)]| cron(fields).hour_is_fixed();
        assert!(!fixed(&[("hour", "*")]));
        assert!(!fixed(&[("hour", "*/2")]));
        assert!(!fixed(&[("hour", "1-10/3")]));
        assert!(!fixed(&[("hour", "3/2")]));
        assert!(!fixed(&[("hour", "1,*/6")]));
        assert!(fixed(&[("hour", "3")]));
        assert!(fixed(&[("hour", "1,2")]));
        assert!(fixed(&[("hour", "1-3")]));
        // Defaults: below a given day the hour is 0 (fixed); above a given minute it is `*`.
        assert!(fixed(&[("day", "1")]));
        assert!(fixed(&[("day_of_week", "mon")]));
        assert!(!fixed(&[("minute", "0")]));
        assert!(!fixed(&[]));
    }

    #[test]
    fn exprs_are_kept_as_given() {
        let given = exprs(&[("hour", "*/2"), ("day_of_week", "Mon-Fri")]);
        let parsed = CronFields::parse(&given).expect("valid");
        assert_eq!(parsed.exprs(), &given);
        assert_eq!(parsed.exprs().given(), [("day_of_week", "Mon-Fri"), ("hour", "*/2")]);
    }

    #[test]
    fn out_of_range_values_name_the_field_and_range() {
        assert_eq!(error(&[("hour", "25")]), "cron field 'hour': 25 is out of range 0-23");
        let err = CronFields::parse(&exprs(&[("hour", "25")])).expect_err("invalid");
        assert_eq!(err.field, "hour");
        assert_eq!(error(&[("minute", "60")]), "cron field 'minute': 60 is out of range 0-59");
        assert_eq!(
            error(&[("second", "0,99999999999")]),
            "cron field 'second': 99999999999 is out of range 0-59"
        );
        assert_eq!(error(&[("day", "0")]), "cron field 'day': 0 is out of range 1-31");
        assert_eq!(error(&[("month", "13")]), "cron field 'month': 13 is out of range 1-12");
        assert_eq!(error(&[("week", "54")]), "cron field 'week': 54 is out of range 1-53");
        assert_eq!(error(&[("day_of_week", "7")]), "cron field 'day_of_week': 7 is out of range 0-6");
        assert_eq!(error(&[("year", "1969")]), "cron field 'year': 1969 is out of range 1970-9999");
        assert_eq!(error(&[("hour", "20-24")]), "cron field 'hour': 24 is out of range 0-23");
    }

    #[test]
    fn empty_expressions_are_rejected() {
        assert_eq!(
            error(&[("hour", "")]),
            "cron field 'hour': the expression is empty; give an hour 0-23, or '*' for every value"
        );
        assert_eq!(
            error(&[("minute", "1,,2")]),
            "cron field 'minute': '1,,2' has an empty item; separate values with single commas, as in '1,15'"
        );
    }

    #[test]
    fn unknown_names_are_rejected() {
        assert_eq!(
            error(&[("month", "foo")]),
            "cron field 'month': 'foo' is not a month name; use jan, feb, mar, apr, may, jun, jul, aug, sep, oct, \
             nov or dec (or 1-12)"
        );
        assert_eq!(
            error(&[("day_of_week", "mon-fry")]),
            "cron field 'day_of_week': 'fry' is not a weekday name; use mon, tue, wed, thu, fri, sat or sun \
             (or 0-6, 0 = Monday)"
        );
        assert_eq!(
            error(&[("day", "last friday")]),
            "cron field 'day': 'friday' in 'last friday' is not a weekday name; use mon, tue, wed, thu, fri, sat \
             or sun"
        );
    }

    #[test]
    fn malformed_expressions_are_rejected() {
        let hour_help =
            "hour takes an hour 0-23, '*', '*/n', 'a-b', 'a-b/n', or a comma-separated list of these";
        assert_eq!(
            error(&[("hour", "1-")]),
            format!("cron field 'hour': '1-' is not a valid expression; {hour_help}")
        );
        assert_eq!(
            error(&[("hour", "-1")]),
            format!("cron field 'hour': '-1' is not a valid expression; {hour_help}")
        );
        assert_eq!(
            error(&[("hour", "1-2-3")]),
            format!("cron field 'hour': '1-2-3' is not a valid expression; {hour_help}")
        );
        assert_eq!(
            error(&[("hour", "mon")]),
            format!("cron field 'hour': 'mon' is not a valid expression; {hour_help}")
        );
        assert_eq!(
            error(&[("hour", "**")]),
            format!("cron field 'hour': '**' is not a valid expression; {hour_help}")
        );
        assert_eq!(
            error(&[("hour", "*/x")]),
            "cron field 'hour': '*/x' needs a whole number after '/', as in '*/5'"
        );
        assert_eq!(
            error(&[("hour", "*/2/3")]),
            "cron field 'hour': '*/2/3' needs a whole number after '/', as in '*/5'"
        );
        assert_eq!(
            error(&[("day", "1st")]),
            "cron field 'day': '1st' needs a weekday name after it, as in '1st mon'"
        );
        assert_eq!(
            error(&[("day", "last fri sat")]),
            "cron field 'day': 'last fri sat' is not a valid day position; write 'last', or a position and a \
             weekday name such as 'last fri' or '1st mon'"
        );
    }

    #[test]
    fn reversed_ranges_are_rejected_with_the_wrapped_form() {
        assert_eq!(
            error(&[("hour", "5-3")]),
            "cron field 'hour': range 5-3 starts after it ends; ranges do not wrap around, so write it as 5-23,0-3"
        );
        assert_eq!(
            error(&[("day_of_week", "fri-mon")]),
            "cron field 'day_of_week': range fri-mon starts after it ends; ranges do not wrap around, so write it \
             as fri-sun,mon"
        );
        assert_eq!(
            error(&[("month", "nov-feb")]),
            "cron field 'month': range nov-feb starts after it ends; ranges do not wrap around, so write it as \
             nov-dec,jan-feb"
        );
        assert_eq!(
            error(&[("year", "2030-2020")]),
            "cron field 'year': range 2030-2020 starts after it ends; write it as 2020-2030"
        );
    }

    #[test]
    fn zero_and_oversized_steps_are_rejected() {
        assert_eq!(error(&[("minute", "*/0")]), "cron field 'minute': step 0 in '*/0' must be at least 1");
        assert_eq!(
            error(&[("minute", "1-5/0")]),
            "cron field 'minute': step 0 in '1-5/0' must be at least 1"
        );
        assert_eq!(
            error(&[("minute", "*/60")]),
            "cron field 'minute': step 60 in '*/60' is larger than the range 0-59 it steps through; use a step of \
             at most 59"
        );
        assert_eq!(
            error(&[("hour", "1-3/5")]),
            "cron field 'hour': step 5 in '1-3/5' is larger than the range 1-3 it steps through; use a step of at \
             most 2"
        );
        assert_eq!(
            error(&[("hour", "23/2")]),
            "cron field 'hour': '23/2' steps through the single value 23; write it without the step"
        );
    }

    #[test]
    fn day_positions_are_rejected_outside_the_day_field() {
        assert_eq!(
            error(&[("hour", "last")]),
            "cron field 'hour': 'last' can only be used in the day field; hour takes an hour 0-23, '*', '*/n', \
             'a-b' or 'a-b/n'"
        );
        assert_eq!(
            error(&[("day_of_week", "1st mon")]),
            "cron field 'day_of_week': '1st mon' can only be used in the day field; day_of_week takes a weekday \
             0-6 (0 = Monday) or mon-sun, '*', '*/n', 'a-b' or 'a-b/n'"
        );
    }

    #[test]
    fn scan_checker_agrees_with_known_matches() {
        let weekdays = cron(&[("day_of_week", "mon-fri"), ("hour", "9")]);
        assert!(weekdays.matches(at("2026-11-23 09:00:00")));
        assert!(!weekdays.matches(at("2026-11-22 09:00:00")));
        assert!(!weekdays.matches(at("2026-11-23 09:00:01")));
        assert_eq!(
            scan_first_match(&weekdays, at("2026-11-21 00:00:00"), at("2026-12-01 00:00:00")),
            Some(at("2026-11-23 09:00:00"))
        );
    }

    fn field_item(
        min: u32,
        max: u32,
        names: &'static [&'static str],
        max_step: u32,
    ) -> BoxedStrategy<String> {
        let span = max - min;
        let max_step = max_step.min(span);
        let value = move |v: u32, named: bool| match names.get((v - min) as usize) {
            Some(name) if named => (*name).to_string(),
            _ => v.to_string(),
        };
        prop_oneof![
            Just("*".to_string()),
            (1..=max_step).prop_map(|n| format!("*/{n}")),
            (min..=max, any::<bool>()).prop_map(move |(v, named)| value(v, named)),
            (min..=max, min..=max, any::<bool>()).prop_map(move |(a, b, named)| format!(
                "{}-{}",
                value(a.min(b), named),
                value(a.max(b), named)
            )),
            (min..max, 1..=span, 1..=max_step).prop_map(move |(a, len, s)| {
                let b = (a + len).min(max);
                format!("{a}-{b}/{}", 1 + (s - 1) % (b - a))
            }),
        ]
        .boxed()
    }

    fn field_expr(item: BoxedStrategy<String>) -> BoxedStrategy<String> {
        prop::collection::vec(item, 1..=3).prop_map(|items| items.join(",")).boxed()
    }

    fn day_item() -> BoxedStrategy<String> {
        prop_oneof![
            6 => field_item(1, 31, &[], 10),
            1 => Just("last".to_string()),
            1 => (0..7usize).prop_map(|w| format!("last {}", WEEKDAYS[w])),
            1 => (0..5usize, 0..7usize).prop_map(|(n, w)| format!("{} {}", ORDINALS[n], WEEKDAYS[w])),
        ]
        .boxed()
    }

    fn any_fields() -> impl Strategy<Value = FieldExprs> {
        (
            prop::option::weighted(0.1, field_expr(field_item(2020, 2045, &[], 10))),
            prop::option::weighted(0.3, field_expr(field_item(1, 12, &MONTHS, 11))),
            prop::option::weighted(0.3, field_expr(day_item())),
            prop::option::weighted(0.1, field_expr(field_item(1, 53, &[], 20))),
            prop::option::weighted(0.3, field_expr(field_item(0, 6, &WEEKDAYS, 6))),
            prop::option::weighted(0.5, field_expr(field_item(0, 23, &[], 23))),
            prop::option::weighted(0.5, field_expr(field_item(0, 59, &[], 59))),
            prop::option::weighted(0.5, field_expr(field_item(0, 59, &[], 59))),
        )
            .prop_map(|(year, month, day, week, day_of_week, hour, minute, second)| FieldExprs {
                year,
                month,
                day,
                week,
                day_of_week,
                hour,
                minute,
                second,
            })
    }

    fn any_start() -> impl Strategy<Value = NaiveDateTime> {
        (0i64..20 * 366 * 86_400, prop_oneof![Just(0i64), 1i64..1_000_000_000]).prop_map(|(secs, nanos)| {
            at("2020-01-01 00:00:00") + TimeDelta::seconds(secs) + TimeDelta::nanoseconds(nanos)
        })
    }

    /// How far the brute-force scan looks (about eleven years).
    const SCAN_DAYS: i64 = 4000;

    proptest! {
        #[test]
        fn next_match_is_the_first_matching_second(fields in any_fields(), from in any_start()) {
            let cron = CronFields::parse(&fields).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let horizon = from + TimeDelta::days(SCAN_DAYS);
            match cron.next_match(from) {
                Some(found) => {
                    prop_assert!(found >= from, "{found} is before {from}");
                    prop_assert!(cron.matches(found), "{found} does not match");
                    prop_assert_eq!(cron.next_match(found), Some(found));
                    // Nothing matches between `from` and `found` (checked up to the horizon).
                    let earlier = scan_first_match(&cron, from, found.min(horizon));
                    prop_assert_eq!(earlier, None, "an earlier match than {}", found);
                }
                None => {
                    let missed = scan_first_match(&cron, from, horizon);
                    prop_assert_eq!(missed, None, "next_match found nothing");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_input_is_rejected_or_searched_without_panicking(
            field in 0..8usize,
            expr in prop_oneof!["[ 0-9a-zA-Z*/,-]{0,14}", ".{0,10}"],
            from in any_start(),
        ) {
            let fields = exprs(&[(FIELD_NAMES[field], expr.as_str())]);
            match CronFields::parse(&fields) {
                Ok(cron) => {
                    if let Some(found) = cron.next_match(from) {
                        prop_assert!(found >= from && cron.matches(found));
                    }
                }
                Err(e) => prop_assert_eq!(e.field, FIELD_NAMES[field]),
            }
        }
    }

    #[test]
    fn scan_checker_continues_past_midnight() {
        // Guards the checker itself: a start just before midnight goes on to the next day.
        let midnight = cron(&[("hour", "0")]);
        assert_eq!(
            scan_first_match(&midnight, at("2026-01-01 23:59:59.5"), at("2026-01-03 00:00:00")),
            Some(NaiveDate::from_ymd_opt(2026, 1, 2).expect("date").and_time(NaiveTime::MIN))
        );
    }
}
