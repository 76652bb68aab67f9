//! `GET /`: the overview — handlers connected and disconnected, the last hour's runs by outcome,
//! the next fires and the recent failures. Every section is a live region.
//!
//! Clients poll `/` to see that the server is up (COMPAT.md), so this page always answers 200:
//! a section whose read fails says so in its place (and the error is logged) instead of turning
//! the whole page into an error. Each section reads only what it shows (counts by state, the
//! next few schedules from the due index), since open tabs refetch it up to once a second.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::run::RunState;
use schedulezero_core::time::format_in_zone;
use schedulezero_store::RunFilter;

use super::html::{self, Nav, esc, url};
use super::{PageError, runs};
use crate::http::AppState;
use crate::http::views::handler_entries;

/// How many next fires and recent failures the overview lists.
const LISTED: u32 = 10;
const FAILURES: [RunState; 3] = [RunState::Failed, RunState::TimedOut, RunState::Interrupted];

pub(super) async fn page(State(s): State<Arc<AppState>>) -> Response {
    let now = s.engine.clock().now();
    let (handlers, hour, next, failed) =
        tokio::join!(handlers(&s), last_hour(&s, now), next_fires(&s, now), failures(&s, now));
    let mut body = String::from("<h1>Overview</h1><div class=\"grid\">");
    body.push_str(&section("ov-handlers", "card", "Handlers", "the handlers", handlers, ""));
    body.push_str(&section(
        "ov-hour",
        "card",
        "Runs in the last hour",
        "the runs of the last hour",
        hour,
        "",
    ));
    body.push_str("</div>");
    body.push_str(&section(
        "ov-next",
        "card wide",
        "Next fires",
        "the next fires",
        next,
        "<p><a href=\"/schedules\">All schedules</a></p>",
    ));
    body.push_str(&section(
        "ov-failures",
        "card wide",
        "Recent failures",
        "the recent failures",
        failed,
        "<p><a href=\"/runs?state=failed,timed_out,interrupted\">All failures</a></p>",
    ));
    html::page("Overview", Nav::Overview, &s.instance_name, true, &body)
}

/// One live region: its heading, then its content or, when reading it failed, what failed.
fn section(
    id: &str,
    class: &str,
    title: &str,
    what: &str,
    content: Result<String, PageError>,
    footer: &str,
) -> String {
    let content = content.unwrap_or_else(|PageError(e)| {
        tracing::error!(section = title, error = %e.message, "the overview is served without this section");
        format!(
            "<p class=\"error-text\" role=\"alert\">Cannot show {} now: {}. The server is up; this section \
             fills again once the read succeeds (the server log has the details).</p>",
            esc(what),
            esc(&e.message)
        )
    });
    format!(
        "<section class=\"{class}\" aria-labelledby=\"{id}-h\" data-live id=\"{id}\">\
         <h2 id=\"{id}-h\">{title}</h2>{content}{footer}</section>",
        title = esc(title)
    )
}

async fn handlers(s: &AppState) -> Result<String, PageError> {
    let handlers = handler_entries(s).await?;
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
    Ok(format!(
        "<p class=\"big\"><span class=\"num ok-text\">{up}</span> connected \
         · <span class=\"num{}\">{down}</span> disconnected</p><ul class=\"plain\">{list}</ul>",
        if down > 0 { " bad-text" } else { "" }
    ))
}

/// Runs whose slot is in the last hour, up to now included, counted by the store.
async fn last_hour(s: &AppState, now: Timestamp) -> Result<String, PageError> {
    let from = now - TimeDelta::hours(1);
    let counts = s.engine.count_runs_by_state(from, now + TimeDelta::milliseconds(1)).await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let mut bars = String::new();
    for state in RunState::ALL {
        let n = counts.iter().find(|(st, _)| *st == state).map_or(0, |(_, n)| *n);
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
            from = esc(&url(&from.to_rfc3339())),
            badge = html::badge(state.as_str()),
        );
    }
    if bars.is_empty() {
        bars = "<li class=\"dim\">No runs in the last hour.</li>".into();
    }
    Ok(format!(
        "<p class=\"big\"><span class=\"num\">{total}</span> runs</p><ul class=\"bars plain\">{bars}</ul>"
    ))
}

async fn next_fires(s: &AppState, now: Timestamp) -> Result<String, PageError> {
    let schedules = s.engine.next_fires(LISTED).await?;
    let mut rows = String::new();
    for sc in &schedules {
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
    Ok(if rows.is_empty() {
        "<p class=\"dim\">Nothing is scheduled. <a href=\"/schedules/new\">Create a schedule</a>.</p>"
            .to_string()
    } else {
        format!(
            "<table class=\"rows\"><thead><tr><th scope=\"col\">Schedule</th><th scope=\"col\">Fires</th>\
             <th scope=\"col\">At</th><th scope=\"col\">Target</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    })
}

async fn failures(s: &AppState, now: Timestamp) -> Result<String, PageError> {
    let filter = RunFilter { states: FAILURES.to_vec(), limit: LISTED, ..RunFilter::default() };
    let failed = s.engine.store().list_runs(&filter).await?;
    runs::table(s, &failed, now, "No failures. ").await
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use schedulezero_core::schedule::Target;
    use schedulezero_core::trigger::Trigger;
    use schedulezero_engine::clock::SystemClock;
    use schedulezero_engine::config::EngineConfig;
    use schedulezero_engine::{Engine, ScheduleSpec};
    use schedulezero_store::SqliteStore;

    use super::*;

    fn app(engine: Arc<Engine>) -> Arc<AppState> {
        Arc::new(AppState {
            engine,
            deployment: "test".into(),
            instance_name: "test".into(),
            description: String::new(),
            admin_contact: String::new(),
            stopping: tokio_util::sync::CancellationToken::new(),
        })
    }

    async fn get(s: &Arc<AppState>) -> (StatusCode, String) {
        let response = page(State(s.clone())).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
    }

    /// The text of the section with this id (up to the next section).
    fn section_of<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no section {id}: {page}"));
        let rest = &page[start..];
        &rest[..rest.find("</section>").unwrap_or(rest.len())]
    }

    /// A store that stops answering under a running server (its connections closed, so every
    /// read fails for real): `/` still answers 200 with the page, and each section says in its
    /// place that it cannot be shown and why.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overview_answers_200_naming_each_section_whose_read_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open_path(dir.path().join("store.db")).await.expect("open"));
        let engine = Arc::new(
            Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
                .await
                .expect("engine"),
        );
        let trigger =
            Trigger::parse(&serde_json::json!({"type": "interval", "hours": 1}), &engine.parse_context())
                .expect("trigger");
        let target =
            Target { handler_id: "reports".into(), method: "build".into(), params: serde_json::json!({}) };
        engine
            .add_schedule(ScheduleSpec::new(trigger, target).name("hourly-report"))
            .await
            .expect("schedule");
        let state = app(engine.clone());
        let sections = ["ov-handlers", "ov-hour", "ov-next", "ov-failures"];

        let (status, healthy) = get(&state).await;
        assert_eq!(status, StatusCode::OK);
        assert!(section_of(&healthy, "ov-next").contains("hourly-report"), "{healthy}");
        assert!(!healthy.contains("Cannot show"), "{healthy}");

        store.close().await;
        let (status, failing) = get(&state).await;
        assert_eq!(status, StatusCode::OK, "{failing}");
        assert!(failing.contains("<h1>Overview</h1>"), "the page itself is served: {failing}");
        for id in sections {
            let section = section_of(&failing, id);
            assert!(section.contains("role=\"alert\"") && section.contains("Cannot show"), "{id}: {section}");
            assert!(
                section.contains("the store failed") && section.contains("closed"),
                "{id} says why: {section}"
            );
        }
        assert!(!failing.contains("hourly-report"), "nothing stale is shown: {failing}");
    }

    /// The cost of the overview and of the runs page over 5,000 schedules and 20,000 runs in the
    /// last hour (a figure to read, not a check: `cargo test -p schedulezero-server --lib
    /// overview_cost -- --ignored --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement; run it by name"]
    async fn overview_cost_with_5000_schedules_and_20000_runs() {
        use schedulezero_core::policy::Policies;
        use schedulezero_core::run::Run;
        use schedulezero_core::schedule::Schedule;
        use schedulezero_store::Store;
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open_path(dir.path().join("store.db")).await.expect("open"));
        let engine = Arc::new(
            Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
                .await
                .expect("engine"),
        );
        let now = engine.clock().now();
        let ctx = engine.parse_context();
        let target = |h: usize| Target {
            handler_id: format!("handler-{}", h % 20),
            method: "work".into(),
            params: serde_json::json!({"n": h}),
        };
        // Active, and due no earlier than in an hour: the scheduler leaves them alone meanwhile.
        let schedules: Vec<Schedule> = (0..5_000)
            .map(|i| {
                let trigger = Trigger::parse(&serde_json::json!({"type": "interval", "hours": 2}), &ctx)
                    .expect("trigger");
                let mut s =
                    Schedule::new(format!("job-{i:05}"), trigger, target(i), Policies::default(), now);
                s.next_fire_at = Some(now + TimeDelta::hours(1) + TimeDelta::seconds(i as i64));
                s
            })
            .collect();
        store.insert_schedules_bulk(&schedules).await.expect("schedules");
        let step = 3_600_000 / 20_000;
        let runs: Vec<Run> = (0..20_000usize)
            .map(|i| {
                let slot = now - TimeDelta::hours(1) + TimeDelta::milliseconds(1 + step * i as i64);
                let state = match i % 10 {
                    0 => RunState::Failed,
                    1 => RunState::TimedOut,
                    _ => RunState::Succeeded,
                };
                Run {
                    id: uuid::Uuid::now_v7(),
                    schedule_id: Some(schedules[i % schedules.len()].id),
                    scheduled_for: slot,
                    dispatch_at: Some(slot),
                    state,
                    attempt: 1,
                    max_attempts: 1,
                    target: target(i),
                    created_at: slot,
                    started_at: Some(slot),
                    finished_at: Some(slot + TimeDelta::milliseconds(40)),
                    result: (state == RunState::Succeeded).then(|| serde_json::json!({"rows": i})),
                    error: (state != RunState::Succeeded).then(|| "it went wrong".to_string()),
                    slot_count: 1,
                }
            })
            .collect();
        store.insert_runs(&runs).await.expect("runs");
        let state = app(engine.clone());

        let mut overview = Vec::new();
        let mut runs_page = Vec::new();
        let mut counting = Vec::new();
        for round in 0..22 {
            let t = Instant::now();
            let (status, body) = get(&state).await;
            let took = t.elapsed();
            assert_eq!(status, StatusCode::OK);
            assert!(body.contains("job-00000"), "the next fire is listed");
            let t = Instant::now();
            let response =
                super::super::runs::list(State(state.clone()), axum::extract::RawQuery(None)).await;
            let took_runs = t.elapsed();
            assert_eq!(axum::response::IntoResponse::into_response(response).status(), StatusCode::OK);
            let t = Instant::now();
            engine.count_runs_by_state(now - TimeDelta::hours(1), now).await.expect("count");
            let took_count = t.elapsed();
            if round >= 2 {
                overview.push(took);
                runs_page.push(took_runs);
                counting.push(took_count);
            }
        }
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        println!(
            "5,000 schedules, 20,000 runs in the last hour: GET / median {:?} (of which counting the \
             hour's runs {:?}), GET /runs median {:?} (20 rounds)",
            median(overview),
            median(counting),
            median(runs_page)
        );
    }
}
