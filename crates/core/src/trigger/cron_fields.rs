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
    /// The effective fields (defaults applied), in [`FIELD_NAMES`] order.
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
        Ok(Self {
            exprs: exprs.clone(),
            year: field(0)?,
            month: field(1)?,
            day: field(2)?,
            week: field(3)?,
            day_of_week: field(4)?,
            hour: field(5)?,
            minute: field(6)?,
            second: field(7)?,
        })
    }

    /// The expressions as given (used to serialize the trigger and to describe it).
    pub fn exprs(&self) -> &FieldExprs {
        &self.exprs
    }

    /// True when the effective hour field is a fixed set of hours: numbers, lists and plain
    /// ranges, but neither `*` nor a step (`*/n`, `a-b/n`, `a/n`). Fixed hours fire only on the
    /// first pass of an hour repeated by daylight saving.
    pub fn hour_is_fixed(&self) -> bool {
        self.hour.items.iter().all(|item| matches!(item, Item::Range { step: None, .. }))
    }

    /// The first local wall-clock time at or after `from` (rounded up to a whole second) at
    /// which every field matches, or `None` if there is none up to the end of year 9999.
    ///
    /// Jumps field by field (year, then month, then the matching days of that month, then
    /// hour, minute, second), so the cost does not depend on how far away the match is.
    pub fn next_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let from = ceil_to_second(from)?;
        let mut year = from.year();
        let mut start = Start {
            month: from.month(),
            day: from.day(),
            time: (from.hour(), from.minute(), from.second()),
        };
        // The calendar repeats every 400 years (146 097 days, a whole number of weeks), so
        // whether a year has a matching date depends only on the year modulo 400. Remember the
        // residues of years searched in full without a match: that bounds the search for
        // dates that never occur, like 30 February.
        let mut barren = [0u64; 7];
        let mut barren_count = 0;
        loop {
            let next = self.next_year(year)?;
            if next != year {
                year = next;
                start = Start::NEW_YEAR;
            }
            let residue = year.rem_euclid(400) as usize;
            let is_barren = barren[residue / 64] >> (residue % 64) & 1 == 1;
            if !(start == Start::NEW_YEAR && is_barren) {
                if let Some(found) = self.next_in_year(year, start) {
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

    /// The first allowed year at or after `from`, or `None` when there is none up to 9999.
    fn next_year(&self, from: i32) -> Option<i32> {
        let from = i64::from(from.max(YEAR_MIN as i32));
        self.year
            .items
            .iter()
            .filter_map(|item| {
                let (first, last, step) = item.span(&SPECS[0])?;
                let (first, last, step) = (i64::from(first), i64::from(last), i64::from(step.max(1)));
                let next = if from <= first { first } else { first + (from - first + step - 1) / step * step };
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

const YEAR_MIN: u32 = 1970;
const YEAR_MAX: u32 = 9999;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
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
                return Err(format!("'{expr}' has an empty item; separate values with single commas, as in '1,15'"));
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
    let lower = item.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    if let Some(&keyword) = words.first() {
        let nth = ORDINALS.iter().position(|o| *o == keyword);
        if keyword == "last" || nth.is_some() {
            if spec.name != "day" {
                return Err(format!(
                    "'{item}' can only be used in the day field; {} takes {}, '*', '*/n', 'a-b' or 'a-b/n'",
                    spec.name, spec.takes
                ));
            }
            return match (nth, words.as_slice()) {
                (None, [_]) => Ok(Item::LastDay),
                (_, [_, weekday]) => {
                    let weekday = WEEKDAYS.iter().position(|w| w == weekday).ok_or_else(|| {
                        format!("'{weekday}' in '{item}' is not a weekday name; use mon, tue, wed, thu, fri, sat or sun")
                    })? as u32;
                    Ok(match nth {
                        None => Item::LastWeekday(weekday),
                        Some(i) => Item::NthWeekday { nth: i as u32 + 1, weekday },
                    })
                }
                (Some(_), [_]) => Err(format!("'{item}' needs a weekday name after it, as in '{keyword} mon'")),
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
