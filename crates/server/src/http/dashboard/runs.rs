//! `GET /runs`: run history filtered by schedule, handler, outcome and time, newest slot first,
//! in pages; new runs appear live. `GET /runs/{run}`: one run with its params, result or error,
//! and every attempt with its timing and lateness.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use schedulezero_core::Timestamp;
use schedulezero_core::run::{Run, RunState};
use schedulezero_store::RunFilter;

use super::html::{self, Nav, esc, td, url};
use super::{PageError, PageResult, check_form_origin, query_map, see_other};
use crate::http::native::schedules::resolve;
use crate::http::views::{handler_entries, schedule_names};
use crate::http::{ApiError, AppState, input};

const PAGE: u32 = 50;
/// Schedule names offered in the filter box.
const NAME_SUGGESTIONS: u32 = 500;

/// A table of runs (shared by the overview, a schedule's page and the runs page).
pub(super) async fn table(
    s: &AppState,
    runs: &[Run],
    now: Timestamp,
    empty: &str,
) -> Result<String, PageError> {
    if runs.is_empty() {
        return Ok(format!("<p class=\"dim\">{}</p>", esc(empty)));
    }
    let names = schedule_names(s, runs).await?;
    let mut rows = String::new();
    for r in runs {
        let schedule = match r.schedule_id.and_then(|id| names.get(&id).map(|n| (id, n))) {
            Some((id, name)) => format!("<a href=\"/schedules/{}\">{}</a>", url(&id.to_string()), esc(name)),
            None => "<span class=\"dim\">run now</span>".into(),
        };
        let lateness = r.started_at.map(|t| (t - r.scheduled_for).num_milliseconds());
        let duration = match (r.started_at, r.finished_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
            _ => None,
        };
        let _ = write!(
            rows,
            "<tr data-id=\"{id}\">{}{}{}{}{}{}{}</tr>",
            td(
                "Slot",
                &format!(
                    "<a href=\"/runs/{}\">{}</a> <span class=\"dim\">{}</span>",
                    r.id,
                    html::time(r.scheduled_for),
                    esc(&html::relative(r.scheduled_for, now))
                )
            ),
            td("Schedule", &schedule),
            td("State", &html::badge(r.state.as_str())),
            td("Attempt", &format!("{}/{}", r.attempt, r.max_attempts)),
            td("Target", &format!("<code>{}.{}</code>", esc(&r.target.handler_id), esc(&r.target.method))),
            td("Late", &html::millis(lateness)),
            td("Took", &html::millis(duration)),
            id = r.id,
        );
    }
    Ok(format!(
        "<table class=\"rows runs\"><thead><tr><th scope=\"col\">Slot</th><th scope=\"col\">Schedule</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Attempt</th><th scope=\"col\">Target</th>\
         <th scope=\"col\">Late</th><th scope=\"col\">Took</th></tr></thead><tbody>{rows}</tbody></table>"
    ))
}

/// A time filter from a form: `datetime-local` gives minutes only, read as UTC.
fn time_param(key: &str, v: &str) -> Result<Timestamp, ApiError> {
    let v = v.trim();
    let full =
        if v.len() == 16 && v.as_bytes().get(10) == Some(&b'T') { format!("{v}:00") } else { v.to_string() };
    input::time_of(key, &full)
}

pub(super) async fn list(State(s): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> PageResult {
    let q = query_map(raw.as_deref());
    let now = s.engine.clock().now();
    let mut problems: Vec<String> = Vec::new();
    let mut filter = RunFilter { limit: PAGE + 1, ..RunFilter::default() };
    if let Some(reference) = q.get("schedule") {
        match resolve(&s, reference).await {
            Ok(sc) => filter.schedule_id = Some(sc.id),
            Err(_) => match s.engine.store().schedules_named(reference).await?.last() {
                Some(id) => filter.schedule_id = Some(*id),
                None => match uuid::Uuid::parse_str(reference) {
                    Ok(id) => filter.schedule_id = Some(id),
                    Err(_) => problems.push(format!("No schedule is named '{reference}'.")),
                },
            },
        }
    }
    filter.handler_id = q.get("handler_id").cloned();
    for name in q.get("state").map(|v| v.split(',')).into_iter().flatten() {
        match RunState::parse(name.trim()) {
            Some(st) => filter.states.push(st),
            None => problems.push(format!("'{name}' is not a run state.")),
        }
    }
    for key in ["from", "to"] {
        if let Some(v) = q.get(key) {
            match time_param(key, v) {
                Ok(t) if key == "from" => filter.from = Some(t),
                Ok(t) => filter.to = Some(t),
                Err(e) => problems.push(e.message),
            }
        }
    }
    if let Some(b) = q.get("before") {
        match input::uuid_of("before", b) {
            Ok(id) => filter.before = Some(id),
            Err(e) => problems.push(e.message),
        }
    }
    let mut runs = if problems.is_empty() { s.engine.store().list_runs(&filter).await? } else { vec![] };
    let older = if runs.len() > PAGE as usize {
        runs.truncate(PAGE as usize);
        runs.last().map(|r| r.id)
    } else {
        None
    };

    let mut body = String::from("<h1>Runs</h1>");
    body.push_str(&filters(&s, &q).await?);
    for p in &problems {
        let _ = write!(body, "<p class=\"error-text\" role=\"alert\">{}</p>", esc(p));
    }
    let table = table(&s, &runs, now, "No runs match these filters.").await?;
    let mut pager = String::new();
    if let Some(cursor) = older {
        let mut params: Vec<String> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "before")
            .map(|(k, v)| format!("{}={}", url(k), url(v)))
            .collect();
        params.sort();
        params.push(format!("before={cursor}"));
        let _ = write!(
            pager,
            "<p class=\"pager\"><a href=\"/runs?{}\">Older runs →</a></p>",
            esc(&params.join("&"))
        );
    }
    if q.contains_key("before") {
        pager.push_str("<p class=\"pager\"><a href=\"/runs\">Newest runs</a></p>");
    }
    let _ = write!(body, "<section aria-label=\"Runs\" data-live id=\"runs-table\">{table}{pager}</section>");
    Ok(html::page("Runs", Nav::Runs, &s.instance_name, true, &body))
}

/// The filter form (GET, so a filtered view is a link to share).
async fn filters(s: &AppState, q: &HashMap<String, String>) -> Result<String, PageError> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    // Suggestions only (any name can be typed, finished and deleted ones too): the first live
    // names, read from the name index, not every schedule.
    let names = s.engine.live_schedule_names(NAME_SUGGESTIONS).await?;
    let mut datalist = String::new();
    for n in &names {
        let _ = write!(datalist, "<option value=\"{}\">", esc(n));
    }
    let mut handler_opts = String::from("<option value=\"\">Any handler</option>");
    for h in handler_entries(s).await? {
        let id = h["id"].as_str().unwrap_or("");
        let sel = if id == get("handler_id") { " selected" } else { "" };
        let _ = write!(handler_opts, "<option{sel}>{}</option>", esc(id));
    }
    let mut state_opts = String::from("<option value=\"\">Any outcome</option>");
    let current = get("state");
    let mut known = false;
    for (value, label) in [("failed,timed_out,interrupted", "Any failure")]
        .into_iter()
        .chain(RunState::ALL.iter().map(|st| (st.as_str(), st.as_str())))
    {
        let sel = if value == current { " selected" } else { "" };
        known |= value == current;
        let _ =
            write!(state_opts, "<option value=\"{value}\"{sel}>{}</option>", esc(&label.replace('_', " ")));
    }
    if !known && !current.is_empty() {
        let _ = write!(state_opts, "<option selected>{}</option>", esc(current));
    }
    Ok(format!(
        "<form class=\"filters\" method=\"get\" action=\"/runs\" role=\"search\" aria-label=\"Filter runs\">\
         <div class=\"field\"><label for=\"f-schedule\">Schedule</label>\
         <input id=\"f-schedule\" name=\"schedule\" list=\"schedule-names\" value=\"{sched}\" autocomplete=\"off\">\
         <datalist id=\"schedule-names\">{datalist}</datalist></div>\
         <div class=\"field\"><label for=\"f-handler\">Handler</label><select id=\"f-handler\" name=\"handler_id\">{handler_opts}</select></div>\
         <div class=\"field\"><label for=\"f-state\">Outcome</label><select id=\"f-state\" name=\"state\">{state_opts}</select></div>\
         <div class=\"field\"><label for=\"f-from\">From <span class=\"dim\">(UTC)</span></label>\
         <input id=\"f-from\" name=\"from\" type=\"datetime-local\" value=\"{from}\"></div>\
         <div class=\"field\"><label for=\"f-to\">To <span class=\"dim\">(UTC)</span></label>\
         <input id=\"f-to\" name=\"to\" type=\"datetime-local\" value=\"{to}\"></div>\
         <div class=\"actions\"><button type=\"submit\">Filter</button> <a href=\"/runs\">Clear</a></div></form>",
        sched = esc(get("schedule")),
        from = esc(&local_input(get("from"))),
        to = esc(&local_input(get("to"))),
    ))
}

/// A time filter as a `datetime-local` value (minutes, no zone), when it is one.
fn local_input(v: &str) -> String {
    time_param("t", v).map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default()
}

pub(super) async fn detail(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = query_map(raw.as_deref());
    let id = input::uuid_of("run", &id)?;
    let now = s.engine.clock().now();
    let run = s
        .engine
        .store()
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("There is no run {id}; the runs page lists them.")))?;
    let attempts = s.engine.store().list_attempts(id).await?;
    let names = schedule_names(&s, std::slice::from_ref(&run)).await?;
    let schedule = match run.schedule_id {
        Some(sid) => match names.get(&sid) {
            Some(n) => format!("<a href=\"/schedules/{sid}\">{}</a>", esc(n)),
            None => format!("<code>{sid}</code>"),
        },
        None => "<span class=\"dim\">none (a direct run now)</span>".into(),
    };
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/runs\">Runs</a> /</p>{}<h1>Run <code class=\"id\">{id}</code> {}</h1>",
        html::notice(q.get("notice")),
        html::badge(run.state.as_str())
    );
    if !run.state.is_terminal() {
        let _ = write!(
            body,
            "<form class=\"toolbar\" method=\"post\" action=\"/runs/{id}/cancel\">\
             <button id=\"act-cancel\" class=\"danger\" type=\"submit\">Cancel run</button>\
             <span class=\"dim\">A waiting run is cancelled at once; a running one is told to stop. It is not retried.</span></form>"
        );
    }
    let _ = write!(
        body,
        "<div data-live id=\"run-detail\"><section class=\"card\" aria-labelledby=\"run-s\"><h2 id=\"run-s\">Summary</h2><dl class=\"facts\">\
         <dt>Schedule</dt><dd>{schedule}</dd>\
         <dt>Target</dt><dd><code>{}.{}</code></dd>\
         <dt>Slot</dt><dd>{} <span class=\"dim\">{}</span></dd>\
         <dt>Attempts</dt><dd>{} of at most {}</dd>\
         <dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd>\
         <dt>Late by</dt><dd>{}</dd><dt>Took</dt><dd>{}</dd>{}{}</dl></section>",
        esc(&run.target.handler_id),
        esc(&run.target.method),
        html::time(run.scheduled_for),
        esc(&html::relative(run.scheduled_for, now)),
        run.attempt,
        run.max_attempts,
        html::time_opt(run.started_at),
        html::time_opt(run.finished_at),
        html::millis(run.started_at.map(|t| (t - run.scheduled_for).num_milliseconds())),
        html::millis(match (run.started_at, run.finished_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
            _ => None,
        }),
        run.dispatch_at
            .filter(|_| !run.state.is_terminal())
            .map(|t| format!("<dt>Next try</dt><dd>{}</dd>", html::time(t)))
            .unwrap_or_default(),
        if run.slot_count > 1 { format!("<dt>Slots</dt><dd>{}</dd>", run.slot_count) } else { String::new() },
    );
    body.push_str("<div class=\"grid\">");
    let _ = write!(
        body,
        "<section class=\"card\" aria-labelledby=\"run-p\"><h2 id=\"run-p\">Params</h2>{}</section>",
        html::json_block(&run.target.params)
    );
    match (&run.result, &run.error) {
        (_, Some(err)) => {
            let _ = write!(
                body,
                "<section class=\"card\" aria-labelledby=\"run-e\"><h2 id=\"run-e\">Error</h2>\
                 <pre class=\"json error-text\" tabindex=\"0\">{}</pre></section>",
                esc(err)
            );
        }
        (Some(result), None) => {
            let _ = write!(
                body,
                "<section class=\"card\" aria-labelledby=\"run-r\"><h2 id=\"run-r\">Result</h2>{}</section>",
                html::json_block(result)
            );
        }
        (None, None) => {}
    }
    body.push_str("</div>");
    let mut rows = String::new();
    for a in &attempts {
        let _ = write!(
            rows,
            "<tr>{}{}{}{}{}{}{}{}</tr>",
            td("#", &a.number.to_string()),
            td("Outcome", &html::badge(a.outcome.as_str())),
            td(
                "Instance",
                &a.instance
                    .as_deref()
                    .map(|i| format!("<code>{}</code>", esc(i)))
                    .unwrap_or_else(|| "<span class=\"dim\">none reached</span>".into())
            ),
            td("Started", &html::time(a.started_at)),
            td("Finished", &html::time(a.finished_at)),
            td("Late", &html::millis(Some((a.started_at - run.scheduled_for).num_milliseconds()))),
            td("Took", &html::millis(Some((a.finished_at - a.started_at).num_milliseconds()))),
            td("Error", &a.error.as_deref().map(esc).unwrap_or_default()),
        );
    }
    let attempts_html = if rows.is_empty() {
        "<p class=\"dim\">No attempt has ended yet.</p>".to_string()
    } else {
        format!(
            "<table class=\"rows\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Outcome</th>\
             <th scope=\"col\">Instance</th><th scope=\"col\">Started</th><th scope=\"col\">Finished</th>\
             <th scope=\"col\">Late</th><th scope=\"col\">Took</th><th scope=\"col\">Error</th></tr></thead>\
             <tbody>{rows}</tbody></table>"
        )
    };
    let _ = write!(
        body,
        "<section class=\"card\" aria-labelledby=\"run-a\"><h2 id=\"run-a\">Attempts</h2>{attempts_html}\
         <p class=\"dim\">Late: how long after the slot the attempt started (retries include their backoff).</p></section></div>"
    );
    Ok(html::page("Run", Nav::Runs, &s.instance_name, true, &body))
}

/// Cancels a run that has not ended (a form post; the API's `POST /api/runs/{id}/cancel` does the
/// same for scripts).
pub(super) async fn cancel(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> PageResult {
    check_form_origin(&headers)?;
    let id = input::uuid_of("run", &id)?;
    s.engine.cancel_run(id).await?;
    Ok(see_other(&format!("/runs/{id}?notice=cancelled")))
}
