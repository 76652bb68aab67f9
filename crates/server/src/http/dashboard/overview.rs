//! `GET /`: the overview — handlers connected and disconnected, the last hour's runs by outcome,
//! the next fires and the recent failures. Every section is a live region.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use chrono::TimeDelta;
use schedulezero_core::run::RunState;
use schedulezero_core::schedule::ScheduleState;
use schedulezero_core::time::format_in_zone;
use schedulezero_store::{RunFilter, ScheduleFilter};

use super::html::{self, Nav, esc, url};
use super::{PageResult, runs};
use crate::http::AppState;
use crate::http::views::handler_entries;

/// Runs counted for the last hour at most; beyond it the count says "at least".
const HOUR_SAMPLE: u32 = 10_000;
const FAILURES: [RunState; 3] = [RunState::Failed, RunState::TimedOut, RunState::Interrupted];

pub(super) async fn page(State(s): State<Arc<AppState>>) -> PageResult {
    let now = s.engine.clock().now();
    let mut body = String::from("<h1>Overview</h1><div class=\"grid\">");

    // Handlers.
    let handlers = handler_entries(&s).await?;
    let (mut up, mut down) = (0, 0);
    let mut list = String::new();
    for h in &handlers {
        for i in h["instances"].as_array().into_iter().flatten() {
            if i["connected"].as_bool() == Some(true) { up += 1 } else { down += 1 }
        }
        let id = h["id"].as_str().unwrap_or("");
        let _ = write!(
            list,
            "<li><a href=\"/handlers#h-{}\">{}</a> {} <span class=\"dim\">{} connected</span></li>",
            esc(&url(id)),
            esc(id),
            html::badge(h["status"].as_str().unwrap_or("")),
            h["connected"]
        );
    }
    if list.is_empty() {
        list = "<li class=\"dim\">No handler has registered yet. Start one pointed at this server's \
                ZeroMQ endpoint.</li>"
            .into();
    }
    let _ = write!(
        body,
        "<section class=\"card\" aria-labelledby=\"ov-h\" data-live id=\"ov-handlers\">\
         <h2 id=\"ov-h\">Handlers</h2><p class=\"big\"><span class=\"num ok-text\">{up}</span> connected \
         · <span class=\"num{}\">{down}</span> disconnected</p><ul class=\"plain\">{list}</ul></section>",
        if down > 0 { " bad-text" } else { "" }
    );

    // The last hour by outcome.
    let hour =
        RunFilter { from: Some(now - TimeDelta::hours(1)), limit: HOUR_SAMPLE, ..RunFilter::default() };
    let recent = s.engine.store().list_runs(&hour).await?;
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for r in recent.iter().filter(|r| r.scheduled_for <= now) {
        *by_state.entry(r.state.as_str()).or_default() += 1;
    }
    let total: usize = by_state.values().sum();
    let mut bars = String::new();
    for state in RunState::ALL {
        let n = by_state.get(state.as_str()).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let pct = (n * 100).div_ceil(total.max(1));
        let _ = write!(
            bars,
            "<li><a href=\"/runs?state={st}&amp;from={from}\">{badge}</a>\
             <span class=\"meter\" aria-hidden=\"true\"><span class=\"fill {st}\" style=\"width:{pct}%\"></span></span>\
             <span class=\"num\">{n}</span></li>",
            st = state.as_str(),
            from = esc(&url(&(now - TimeDelta::hours(1)).to_rfc3339())),
            badge = html::badge(state.as_str()),
        );
    }
    if bars.is_empty() {
        bars = "<li class=\"dim\">No runs in the last hour.</li>".into();
    }
    let at_least = if recent.len() as u32 >= HOUR_SAMPLE { "at least " } else { "" };
    let _ = write!(
        body,
        "<section class=\"card\" aria-labelledby=\"ov-r\" data-live id=\"ov-hour\">\
         <h2 id=\"ov-r\">Runs in the last hour</h2><p class=\"big\"><span class=\"num\">{at_least}{total}</span> runs</p>\
         <ul class=\"bars plain\">{bars}</ul></section>"
    );
    body.push_str("</div>");

    // Next fires.
    let active = ScheduleFilter { state: Some(ScheduleState::Active), ..ScheduleFilter::default() };
    let mut schedules = s.engine.list_schedules(&active).await?;
    schedules.retain(|sc| sc.next_fire_at.is_some());
    schedules.sort_by_key(|sc| sc.next_fire_at);
    let mut rows = String::new();
    for sc in schedules.iter().take(10) {
        let Some(next) = sc.next_fire_at else { continue };
        let _ = write!(
            rows,
            "<tr>{}{}{}{}</tr>",
            html::td(
                "Schedule",
                &format!("<a href=\"/schedules/{}\">{}</a>", url(&sc.id.to_string()), esc(&sc.name))
            ),
            html::td(
                "Fires",
                &format!(
                    "<span title=\"{}\">{}</span>",
                    esc(&format_in_zone(next, sc.trigger.zone())),
                    esc(&html::relative(next, now))
                )
            ),
            html::td("At", &html::time(next)),
            html::td(
                "Target",
                &format!("<code>{}.{}</code>", esc(&sc.target.handler_id), esc(&sc.target.method))
            ),
        );
    }
    let next_table = if rows.is_empty() {
        "<p class=\"dim\">Nothing is scheduled. <a href=\"/schedules/new\">Create a schedule</a>.</p>"
            .to_string()
    } else {
        format!(
            "<table class=\"rows\"><thead><tr><th scope=\"col\">Schedule</th><th scope=\"col\">Fires</th>\
             <th scope=\"col\">At</th><th scope=\"col\">Target</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let _ = write!(
        body,
        "<section class=\"card wide\" aria-labelledby=\"ov-n\" data-live id=\"ov-next\"><h2 id=\"ov-n\">Next fires</h2>\
         {next_table}<p><a href=\"/schedules\">All schedules</a></p></section>"
    );

    // Recent failures.
    let failures = RunFilter { states: FAILURES.to_vec(), limit: 10, ..RunFilter::default() };
    let failed = s.engine.store().list_runs(&failures).await?;
    let table = runs::table(&s, &failed, now, "No failures. ").await?;
    let _ = write!(
        body,
        "<section class=\"card wide\" aria-labelledby=\"ov-f\" data-live id=\"ov-failures\">\
         <h2 id=\"ov-f\">Recent failures</h2>{table}\
         <p><a href=\"/runs?state=failed,timed_out,interrupted\">All failures</a></p></section>"
    );
    Ok(html::page("Overview", Nav::Overview, &s.instance_name, true, &body))
}
