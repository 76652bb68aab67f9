//! `GET /handlers`: every handler instance the server knows, live ones from the registry and
//! earlier ones from the store: status, protocol, methods, capacity, calls in flight, success
//! rate, last seen. A live region: instances coming and going show without a reload.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use chrono::DateTime;

use super::PageResult;
use super::html::{self, Nav, esc, td, url};
use crate::http::AppState;
use crate::http::views::handler_entries;

pub(super) async fn page(State(s): State<Arc<AppState>>) -> PageResult {
    let now = s.engine.clock().now();
    let handlers = handler_entries(&s).await?;
    let mut body = String::from("<h1>Handlers</h1><div data-live id=\"handlers\">");
    if handlers.is_empty() {
        body.push_str(
            "<p class=\"card dim\">No handler has registered with this server yet. A handler connects to \
             the server's ZeroMQ endpoint (see <code>schedulezero status</code>) and appears here at once.</p>",
        );
    }
    for h in &handlers {
        let id = h["id"].as_str().unwrap_or("");
        let mut rows = String::new();
        for i in h["instances"].as_array().into_iter().flatten() {
            let (ok, bad) = (i["successes"].as_u64().unwrap_or(0), i["failures"].as_u64().unwrap_or(0));
            let rate = if ok + bad == 0 {
                "<span class=\"dim\">no calls yet</span>".to_string()
            } else {
                format!(
                    "{:.1} % <span class=\"dim\">({ok} of {})</span>",
                    ok as f64 * 100.0 / (ok + bad) as f64,
                    ok + bad
                )
            };
            let methods: Vec<String> = i["methods"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str())
                .map(|m| format!("<code>{}</code>", esc(m)))
                .collect();
            let last_seen = i["last_seen"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| {
                    let t = t.to_utc();
                    format!("{} <span class=\"dim\">{}</span>", html::time(t), esc(&html::relative(t, now)))
                })
                .unwrap_or_default();
            let _ = write!(
                rows,
                "<tr>{}{}{}{}{}{}{}{}</tr>",
                td("Instance", &format!("<code>{}</code>", esc(i["instance_id"].as_str().unwrap_or("")))),
                td("Status", &html::badge(i["status"].as_str().unwrap_or(""))),
                td("Protocol", &esc(i["protocol"].as_str().unwrap_or(""))),
                td("Methods", &methods.join(" ")),
                td("Capacity", &i["capacity"].to_string()),
                td("In flight", &i["in_flight"].to_string()),
                td("Success", &rate),
                td("Last seen", &last_seen),
            );
        }
        let _ = write!(
            body,
            "<section class=\"card\" id=\"h-{anchor}\" aria-labelledby=\"hh-{anchor}\">\
             <h2 id=\"hh-{anchor}\">{name} {badge}</h2>\
             <p class=\"dim\">{connected} of {total} instance(s) connected · \
             <a href=\"/runs?handler_id={q}\">runs</a> · <a href=\"/schedules?handler_id={q}\">schedules</a></p>\
             <table class=\"rows\"><thead><tr><th scope=\"col\">Instance</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">Protocol</th><th scope=\"col\">Methods</th><th scope=\"col\">Capacity</th>\
             <th scope=\"col\">In flight</th><th scope=\"col\">Success</th><th scope=\"col\">Last seen</th></tr></thead>\
             <tbody>{rows}</tbody></table></section>",
            anchor = esc(&url(id)),
            name = esc(id),
            badge = html::badge(h["status"].as_str().unwrap_or("")),
            connected = h["connected"],
            total = h["instances"].as_array().map_or(0, Vec::len),
            q = esc(&url(id)),
        );
    }
    body.push_str("</div>");
    Ok(html::page("Handlers", Nav::Handlers, &s.instance_name, true, &body))
}
