//! Human output of the client commands: aligned tables, `key  value` blocks, times in this
//! machine's zone in a compact form, durations, and long values cut with `…`. Scripts use `--json`.

use chrono::{DateTime, Datelike, Local};
use serde_json::Value;

/// The widest a cell may be before it is cut (ids are never cut: people copy them).
pub const MAX_CELL: usize = 48;

/// A table built row by row, printed with columns aligned to their widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text: a header line, then one line per row; no trailing spaces.
    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, cell) in cells.enumerate().take(cols) {
                if i > 0 {
                    out.push_str("  ");
                }
                out.push_str(cell);
                if i + 1 < cols {
                    out.extend(std::iter::repeat_n(' ', widths[i].saturating_sub(cell.chars().count())));
                }
            }
            out.trim_end().to_string()
        };
        let mut lines = vec![line(&mut self.headers.iter().copied())];
        for row in &self.rows {
            lines.push(line(&mut row.iter().map(String::as_str)));
        }
        lines.join("\n")
    }
}

/// `key  value` lines, keys aligned (what `show` prints).
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}").trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Cuts text longer than `max` characters, ending it with `…`; newlines become spaces.
pub fn truncate(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A JSON value as a cell: strings bare, null as `-`, anything else as compact JSON; cut.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => truncate(s, MAX_CELL),
        other => truncate(&other.to_string(), MAX_CELL),
    }
}

/// A string field of an object, or `-`.
pub fn text(v: &Value, key: &str) -> String {
    cell(v.get(key).unwrap_or(&Value::Null))
}

/// An RFC 3339 time in this machine's zone, compact: `11-29 02:00:00` within the current year,
/// `2027-01-05 02:00:00` otherwise; `-` for none. Text that is not a time is shown as is.
pub fn when(v: &Value) -> String {
    let Some(s) = v.as_str() else { return "-".into() };
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => {
            let local = t.with_timezone(&Local);
            if local.year() == Local::now().year() {
                local.format("%m-%d %H:%M:%S").to_string()
            } else {
                local.format("%Y-%m-%d %H:%M:%S").to_string()
            }
        }
        Err(_) => truncate(s, MAX_CELL),
    }
}

/// An RFC 3339 time in this machine's zone, in full with its offset (what `show` prints).
pub fn when_full(v: &Value) -> String {
    let Some(s) = v.as_str() else { return "-".into() };
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        Err(_) => s.to_string(),
    }
}

/// Milliseconds, short: `840ms`, `12.3s`, `4m05s`, `2h10m`; `-` for none.
pub fn millis(v: &Value) -> String {
    let Some(ms) = v.as_f64() else { return "-".into() };
    if ms < 1000.0 {
        return format!("{ms:.0}ms");
    }
    seconds_short(ms / 1000.0)
}

/// Seconds, short: `30s`, `1.5s`, `4m05s`, `2h10m`, `3d4h`.
pub fn seconds_short(s: f64) -> String {
    if s < 60.0 {
        let text = format!("{s:.1}");
        return format!("{}s", text.trim_end_matches('0').trim_end_matches('.'));
    }
    let whole = s.round() as u64;
    match whole {
        0..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..86_400 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_to_the_widest_cell_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "STATE", "NEXT"]);
        t.row(vec!["nightly-report".into(), "active".into(), "-".into()]);
        t.row(vec!["a".into(), "paused".into(), "".into()]);
        assert_eq!(
            t.render(),
            "NAME            STATE   NEXT\nnightly-report  active  -\na               paused"
        );
    }

    #[test]
    fn long_values_are_cut_and_flattened() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate("été", 3), "été");
        assert_eq!(cell(&json!({"k": "v"})), r#"{"k":"v"}"#);
        assert_eq!(cell(&Value::Null), "-");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(millis(&json!(840)), "840ms");
        assert_eq!(millis(&json!(12_345)), "12.3s");
        assert_eq!(millis(&json!(245_000)), "4m05s");
        assert_eq!(seconds_short(300.0), "5m00s");
        assert_eq!(seconds_short(1.0), "1s");
        assert_eq!(seconds_short(7800.0), "2h10m");
        assert_eq!(millis(&Value::Null), "-");
    }

    #[test]
    fn times_are_shown_in_the_local_zone() {
        let t = json!("2020-01-02T03:04:05+00:00");
        let expected = chrono::DateTime::parse_from_rfc3339("2020-01-02T03:04:05+00:00")
            .unwrap()
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(when(&t), expected);
        assert_eq!(when(&Value::Null), "-");
        assert_eq!(when(&json!("soon")), "soon");
    }
}
