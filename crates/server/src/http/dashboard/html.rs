//! The dashboard's HTML toolkit: escaping (every value that is not a literal of ours goes through
//! [`esc`]), the page shell with its navigation, and the small pieces pages share (state badges,
//! times, durations, JSON blocks).

use std::fmt::Write as _;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{SecondsFormat, TimeDelta};
use schedulezero_core::Timestamp;
use serde_json::Value;

use super::assets;

/// Text made safe for element content and double-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string component (for links that carry a name or an id).
pub(crate) fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Which entry of the navigation is the current page.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Nav {
    Overview,
    Schedules,
    Runs,
    Handlers,
}

/// A whole page: title, navigation, the body. `live` pages refresh their `data-live` regions
/// when the event stream says something changed.
pub(crate) fn page(title: &str, nav: Nav, instance: &str, live: bool, body: &str) -> Response {
    let mut links = String::new();
    for (n, href, label) in [
        (Nav::Overview, "/", "Overview"),
        (Nav::Schedules, "/schedules", "Schedules"),
        (Nav::Runs, "/runs", "Runs"),
        (Nav::Handlers, "/handlers", "Handlers"),
    ] {
        let current = if n == nav { " aria-current=\"page\"" } else { "" };
        let _ = write!(links, "<li><a href=\"{href}\"{current}>{label}</a></li>");
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {instance}</title>\
         <link rel=\"stylesheet\" href=\"{css}\"><script src=\"{js}\" defer></script></head>\
         <body{live}><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><div class=\"bar\"><a class=\"brand\" href=\"/\">\
         <span class=\"logo\" aria-hidden=\"true\">◷</span> ScheduleZero</a>\
         <nav aria-label=\"Main\"><ul>{links}</ul></nav>\
         <span id=\"live-status\" class=\"live-status\" role=\"status\" aria-live=\"polite\"></span></div></header>\
         <main id=\"main\" tabindex=\"-1\">{body}</main>\
         <footer class=\"foot\"><p>{instance} · ScheduleZero {version} · \
         <a href=\"/api/docs\">API reference</a> · <a href=\"/metrics\">metrics</a></p></footer>\
         </body></html>",
        title = esc(title),
        instance = esc(instance),
        css = assets::CSS.href(),
        js = assets::JS.href(),
        live = if live { " data-live-page" } else { "" },
        version = env!("CARGO_PKG_VERSION"),
    );
    html_response(html)
}

/// A page without navigation data (errors).
pub(crate) fn bare_page(title: &str, body: &str) -> Response {
    page(title, Nav::Overview, "ScheduleZero", false, body)
}

fn html_response(html: String) -> Response {
    let mut r = Html(html).into_response();
    // Pages show live data: never served from a cache without asking.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A run or schedule state as a coloured badge (the word is always there: colour is never the
/// only signal).
pub(crate) fn badge(state: &str) -> String {
    let class = match state {
        "succeeded" | "active" | "Connected" => "ok",
        "failed" | "timed_out" | "interrupted" | "Disconnected" => "bad",
        "running" | "retrying" | "pending" | "Draining" => "busy",
        "paused" | "cancelled" | "skipped" | "missed" | "finished" => "muted",
        _ => "muted",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(&state.replace('_', " ")))
}

/// A UTC time, readable, with the exact instant in `datetime` (the script shows it in the
/// browser's zone).
pub(crate) fn time(t: Timestamp) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339_opts(SecondsFormat::Millis, true),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

pub(crate) fn time_opt(t: Option<Timestamp>) -> String {
    t.map(time).unwrap_or_else(|| "<span class=\"dim\">—</span>".into())
}

/// How far `t` is from `now`, in words ("in 5 s", "3 min ago").
pub(crate) fn relative(t: Timestamp, now: Timestamp) -> String {
    let d = t - now;
    let words = span(d.abs());
    if d >= TimeDelta::zero() { format!("in {words}") } else { format!("{words} ago") }
}

fn span(d: TimeDelta) -> String {
    let s = d.num_seconds();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// Milliseconds as a person reads them.
pub(crate) fn millis(ms: Option<i64>) -> String {
    match ms {
        None => "<span class=\"dim\">—</span>".into(),
        Some(ms) if ms.abs() < 1000 => format!("{ms} ms"),
        Some(ms) if ms.abs() < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) if ms.abs() < 3_600_000 => format!("{} min {} s", ms / 60_000, (ms.abs() % 60_000) / 1000),
        Some(ms) => format!("{}{}", if ms < 0 { "-" } else { "" }, span(TimeDelta::milliseconds(ms.abs()))),
    }
}

/// A JSON value, pretty, in a scrollable block.
pub(crate) fn json_block(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("<pre class=\"json\" tabindex=\"0\">{}</pre>", esc(&text))
}

/// A table cell labelled for the narrow layout (where rows become cards).
pub(crate) fn td(label: &str, content: &str) -> String {
    format!("<td data-label=\"{}\"><span class=\"cell\">{content}</span></td>", esc(label))
}

/// A notice after a redirect; only keys we know are shown (nothing from the URL is echoed).
pub(crate) fn notice(key: Option<&String>) -> String {
    let text = match key.map(String::as_str) {
        Some("created") => "Schedule created.",
        Some("updated") => "Schedule saved.",
        Some("paused") => "Schedule paused: it will not fire until resumed.",
        Some("resumed") => "Schedule resumed.",
        Some("run") => "A run was queued; it appears below as soon as it starts.",
        Some("deleted") => "Schedule deleted. Its run history is kept.",
        Some("cancelled") => "Cancel sent: a waiting run ends at once, a running one when its handler stops.",
        _ => return String::new(),
    };
    format!("<p class=\"notice\" role=\"status\">{text}</p>")
}
