//! `GET /schedules`: search and filter; `GET /schedules/{schedule}`: one schedule with its trigger,
//! next fires, policies and recent runs, and the buttons to pause, resume, run now and delete
//! (after a confirmation page). `{schedule}` is a name or a `schedule_id`, as in the API.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use schedulezero_core::schedule::{Schedule, ScheduleState};
use schedulezero_core::time::format_in_zone;
use schedulezero_core::trigger::preview;
use schedulezero_store::{RunFilter, ScheduleFilter};
use serde_json::Value;

use super::html::{self, Nav, esc, td, url};
use super::{PageResult, check_form_origin, query_map, runs, see_other};
use crate::http::AppState;
use crate::http::native::schedules::resolve;
use crate::http::views::handler_entries;

type St = State<Arc<AppState>>;

/// Schedules shown per page.
const PAGE: u32 = 100;

pub(super) async fn list(State(s): St, RawQuery(raw): RawQuery) -> PageResult {
    let q = query_map(raw.as_deref());
    let now = s.engine.clock().now();
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let state = ScheduleState::parse(get("state"));
    let after = q.get("after").and_then(|a| uuid::Uuid::parse_str(a).ok());
    let filter = ScheduleFilter {
        state,
        handler_id: q.get("handler_id").cloned(),
        name_contains: q.get("q").cloned(),
        include_finished: state == Some(ScheduleState::Finished),
        after,
        // One more than shown: whether there is a next page.
        limit: PAGE + 1,
    };
    let mut schedules = s.engine.list_schedules(&filter).await?;
    let more = if schedules.len() > PAGE as usize {
        schedules.truncate(PAGE as usize);
        schedules.last().map(|sc| sc.id)
    } else {
        None
    };

    let mut state_opts = String::from("<option value=\"\">Active and paused</option>");
    for st in ["active", "paused", "finished"] {
        let sel = if st == get("state") { " selected" } else { "" };
        let _ = write!(state_opts, "<option{sel}>{st}</option>");
    }
    let mut handler_opts = String::from("<option value=\"\">Any handler</option>");
    let mut handler_ids: Vec<String> =
        handler_entries(&s).await?.iter().filter_map(|h| h["id"].as_str().map(str::to_string)).collect();
    if let Some(h) = q.get("handler_id").filter(|h| !handler_ids.contains(h)) {
        handler_ids.push(h.clone());
    }
    for id in &handler_ids {
        let sel = if id == get("handler_id") { " selected" } else { "" };
        let _ = write!(handler_opts, "<option{sel}>{}</option>", esc(id));
    }
    let mut body = format!(
        "<div class=\"title-row\"><h1>Schedules</h1><a class=\"button primary\" href=\"/schedules/new\">New schedule</a></div>\
         {}\
         <form class=\"filters\" method=\"get\" action=\"/schedules\" role=\"search\" aria-label=\"Filter schedules\">\
         <div class=\"field grow\"><label for=\"f-q\">Name contains</label>\
         <input id=\"f-q\" name=\"q\" type=\"search\" value=\"{}\" autocomplete=\"off\"></div>\
         <div class=\"field\"><label for=\"f-state\">State</label><select id=\"f-state\" name=\"state\">{state_opts}</select></div>\
         <div class=\"field\"><label for=\"f-handler\">Handler</label><select id=\"f-handler\" name=\"handler_id\">{handler_opts}</select></div>\
         <div class=\"actions\"><button type=\"submit\">Filter</button> <a href=\"/schedules\">Clear</a></div></form>",
        html::notice(q.get("notice")),
        esc(get("q")),
    );
    let mut rows = String::new();
    for sc in &schedules {
        let next = match sc.next_fire_at.filter(|_| sc.state == ScheduleState::Active) {
            Some(t) => format!(
                "<span title=\"{}\">{}</span>",
                esc(&format_in_zone(t, sc.trigger.zone())),
                esc(&html::relative(t, now))
            ),
            None => "<span class=\"dim\">—</span>".into(),
        };
        let _ = write!(
            rows,
            "<tr data-id=\"{id}\">{}{}{}{}{}</tr>",
            td("Name", &format!("<a href=\"/schedules/{}\">{}</a>", sc.id, esc(&sc.name))),
            td("State", &html::badge(sc.state.as_str())),
            td("Trigger", &format!("<code>{}</code>", esc(&sc.trigger.describe()))),
            td("Target", &format!("<code>{}.{}</code>", esc(&sc.target.handler_id), esc(&sc.target.method))),
            td("Next fire", &next),
            id = sc.id,
        );
    }
    let mut pager = String::new();
    if let Some(cursor) = more {
        let mut params: Vec<String> = q
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "after" | "notice"))
            .map(|(k, v)| format!("{}={}", url(k), url(v)))
            .collect();
        params.sort();
        params.push(format!("after={cursor}"));
        let _ = write!(
            pager,
            "<p class=\"pager\"><a href=\"/schedules?{}\">More schedules →</a></p>",
            esc(&params.join("&"))
        );
    }
    if after.is_some() {
        pager.push_str("<p class=\"pager\"><a href=\"/schedules\">First page</a></p>");
    }
    let table = if rows.is_empty() {
        if q.keys().any(|k| k != "notice") {
            "<p class=\"dim\">No schedule matches these filters.</p>".to_string()
        } else {
            "<p class=\"dim\">No schedules yet. <a href=\"/schedules/new\">Create the first one</a>.</p>"
                .to_string()
        }
    } else {
        format!(
            "<p class=\"dim\">{} schedule(s){}</p><table class=\"rows\"><thead><tr><th scope=\"col\">Name</th>\
             <th scope=\"col\">State</th><th scope=\"col\">Trigger</th><th scope=\"col\">Target</th>\
             <th scope=\"col\">Next fire</th></tr></thead><tbody>{rows}</tbody></table>{pager}",
            schedules.len(),
            if more.is_some() || after.is_some() { " on this page, oldest first" } else { "" }
        )
    };
    let _ =
        write!(body, "<section aria-label=\"Schedules\" data-live id=\"schedules-table\">{table}</section>");
    Ok(html::page("Schedules", Nav::Schedules, &s.instance_name, true, &body))
}

fn policies_html(p: &Value) -> String {
    let secs = |v: &Value| v.as_f64().map(|s| format!("{s} s")).unwrap_or_else(|| "—".into());
    let misfire = &p["misfire"];
    let misfire = match misfire["policy"].as_str() {
        Some("skip") => format!("skip slots older than {}", secs(&misfire["grace"])),
        Some("run_all") => format!("run every missed slot (at most {})", misfire["max"]),
        Some("coalesce") => "run once for all missed slots (coalesce)".to_string(),
        _ => misfire.to_string(),
    };
    let overlap = match p["overlap"].as_str() {
        Some("allow") => "allow: runs may overlap",
        Some("skip") => "skip a slot while a run is active",
        Some("queue_one") => "queue one run behind the active one",
        Some("replace") => "replace: cancel the active run",
        _ => "",
    };
    let r = &p["retry"];
    let retry = if r["max_attempts"].as_u64() == Some(1) {
        "never (1 attempt)".to_string()
    } else {
        format!(
            "{} attempts in all; backoff {} growing ×{} up to {}, jitter {}",
            r["max_attempts"],
            secs(&r["initial_backoff"]),
            r["multiplier"],
            secs(&r["max_backoff"]),
            r["jitter"]
        )
    };
    format!(
        "<dl class=\"facts\"><dt>Misfire</dt><dd>{}</dd><dt>Overlap</dt><dd>{}</dd><dt>Retry</dt><dd>{}</dd>\
         <dt>Timeout</dt><dd>{} per attempt</dd></dl>",
        esc(&misfire),
        esc(overlap),
        esc(&retry),
        esc(&secs(&p["timeout"]))
    )
}

pub(super) async fn detail(
    State(s): St,
    Path(reference): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = query_map(raw.as_deref());
    let sc = resolve(&s, &reference).await?;
    let now = s.engine.clock().now();
    let id = sc.id;
    let zone = sc.trigger.zone();
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/schedules\">Schedules</a> /</p>{}<div data-live id=\"schedule-detail\">\
         <div class=\"title-row\"><h1>{} {}</h1></div>",
        html::notice(q.get("notice")),
        esc(&sc.name),
        html::badge(sc.state.as_str())
    );
    if sc.state != ScheduleState::Finished
        && !s.engine.registry().offers(&sc.target.handler_id, &sc.target.method)
    {
        let _ = write!(
            body,
            "<p class=\"warning\" role=\"note\">No connected handler offers <code>{}.{}</code>: its runs wait \
             until one does. <a href=\"/handlers\">See the handlers</a>.</p>",
            esc(&sc.target.handler_id),
            esc(&sc.target.method)
        );
    }
    // Actions: each a one-button form, so they work without JavaScript.
    body.push_str("<div class=\"toolbar\" role=\"group\" aria-label=\"Schedule actions\">");
    if sc.state != ScheduleState::Finished {
        let _ = write!(body, "<a class=\"button\" id=\"act-edit\" href=\"/schedules/{id}/edit\">Edit</a>");
        let (verb, label) =
            if sc.state == ScheduleState::Paused { ("resume", "Resume") } else { ("pause", "Pause") };
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/schedules/{id}/{verb}\"><button id=\"act-{verb}\" type=\"submit\">{label}</button></form>"
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/schedules/{id}/run\"><button id=\"act-run\" type=\"submit\">Run now</button></form>\
         <a class=\"button danger\" id=\"act-delete\" href=\"/schedules/{id}/delete\">Delete…</a></div>"
    );

    let next = match sc.next_fire_at.filter(|_| sc.state == ScheduleState::Active) {
        Some(t) => format!(
            "{} <span class=\"dim\">{}</span>",
            esc(&format_in_zone(t, zone)),
            esc(&html::relative(t, now))
        ),
        None => "<span class=\"dim\">— (not active)</span>".into(),
    };
    let _ = write!(
        body,
        "<div class=\"grid\"><section class=\"card\" aria-labelledby=\"sc-d\"><h2 id=\"sc-d\">Definition</h2><dl class=\"facts\">\
         <dt>Trigger</dt><dd><code>{}</code></dd><dt>Time zone</dt><dd>{}</dd>\
         <dt>Target</dt><dd><code>{}.{}</code></dd><dt>Next fire</dt><dd>{next}</dd>\
         <dt>Id</dt><dd><code class=\"id\">{id}</code></dd>\
         <dt>Created</dt><dd>{}</dd><dt>Changed</dt><dd>{}</dd></dl>\
         <h3>Params</h3>{}</section>",
        esc(&sc.trigger.describe()),
        esc(zone.name()),
        esc(&sc.target.handler_id),
        esc(&sc.target.method),
        html::time(sc.created_at),
        html::time(sc.updated_at),
        html::json_block(&sc.target.params),
    );
    let _ = write!(
        body,
        "<section class=\"card\" aria-labelledby=\"sc-p\"><h2 id=\"sc-p\">Policies</h2>{}</section>",
        policies_html(&sc.policies.to_json())
    );
    let _ = write!(
        body,
        "<section class=\"card\" aria-labelledby=\"sc-n\"><h2 id=\"sc-n\">Next 5 fire times</h2>{}</section></div>",
        fires_list(&sc, now)
    );
    let recent = s
        .engine
        .store()
        .list_runs(&RunFilter { schedule_id: Some(id), limit: 20, ..RunFilter::default() })
        .await?;
    let table = runs::table(&s, &recent, now, "No runs yet.").await?;
    let _ = write!(
        body,
        "<section class=\"card\" aria-labelledby=\"sc-r\"><h2 id=\"sc-r\">Recent runs</h2>{table}\
         <p><a href=\"/runs?schedule={id}\">All runs of this schedule</a></p></section></div>"
    );
    Ok(html::page(&sc.name, Nav::Schedules, &s.instance_name, true, &body))
}

fn fires_list(sc: &Schedule, now: schedulezero_core::Timestamp) -> String {
    if sc.state != ScheduleState::Active {
        return "<p class=\"dim\">None while the schedule is not active.</p>".into();
    }
    match preview(&sc.trigger, None, 5, now) {
        Ok(fires) if !fires.is_empty() => {
            let items: String = fires
                .iter()
                .map(|t| format!("<li>{}</li>", esc(&format_in_zone(*t, sc.trigger.zone()))))
                .collect();
            format!("<ol class=\"fires\">{items}</ol>")
        }
        Ok(_) => "<p class=\"dim\">The trigger has no more fires.</p>".into(),
        Err(e) => format!("<p class=\"error-text\">{}</p>", esc(&e.to_string())),
    }
}

pub(super) async fn pause(State(s): St, Path(reference): Path<String>, headers: HeaderMap) -> PageResult {
    check_form_origin(&headers)?;
    let sc = resolve(&s, &reference).await?;
    s.engine.pause(sc.id).await?;
    Ok(see_other(&format!("/schedules/{}?notice=paused", sc.id)))
}

pub(super) async fn resume(State(s): St, Path(reference): Path<String>, headers: HeaderMap) -> PageResult {
    check_form_origin(&headers)?;
    let sc = resolve(&s, &reference).await?;
    s.engine.resume(sc.id).await?;
    Ok(see_other(&format!("/schedules/{}?notice=resumed", sc.id)))
}

pub(super) async fn run_now(State(s): St, Path(reference): Path<String>, headers: HeaderMap) -> PageResult {
    check_form_origin(&headers)?;
    let sc = resolve(&s, &reference).await?;
    s.engine.run_schedule_now(sc.id).await?;
    Ok(see_other(&format!("/schedules/{}?notice=run", sc.id)))
}

/// The confirmation step of a delete: a page of its own, so it works without JavaScript and
/// with the keyboard (focus lands on the cancel link, the safe choice).
pub(super) async fn confirm_delete(State(s): St, Path(reference): Path<String>) -> PageResult {
    let sc = resolve(&s, &reference).await?;
    let id = sc.id;
    let body = format!(
        "<p class=\"crumbs\"><a href=\"/schedules\">Schedules</a> / <a href=\"/schedules/{id}\">{name}</a> /</p>\
         <section class=\"card confirm\" aria-labelledby=\"del-h\"><h1 id=\"del-h\">Delete “{name}”?</h1>\
         <p>The schedule stops firing and its waiting runs are cancelled. Its run history is kept. \
         This cannot be undone.</p>\
         <form method=\"post\" action=\"/schedules/{id}/delete\" class=\"toolbar\">\
         <button id=\"confirm-delete\" class=\"danger\" type=\"submit\">Delete schedule</button>\
         <a class=\"button\" href=\"/schedules/{id}\" autofocus>Cancel</a></form></section>",
        name = esc(&sc.name)
    );
    Ok(html::page("Delete schedule", Nav::Schedules, &s.instance_name, false, &body))
}

pub(super) async fn delete(State(s): St, Path(reference): Path<String>, headers: HeaderMap) -> PageResult {
    check_form_origin(&headers)?;
    let sc = resolve(&s, &reference).await?;
    s.engine.delete_schedule(sc.id).await?;
    Ok(see_other("/schedules?notice=deleted"))
}
