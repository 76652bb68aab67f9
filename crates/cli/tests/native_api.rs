//! The native HTTP API (docs/API.md) against the real binary and a real version-1 handler:
//! schedules with every option, pages, pause/resume/run now, runs with attempts, cancel, trigger
//! preview (the same fires as `schedulezero trigger next`), handler detail, the OpenAPI
//! document and the offline Swagger UI.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    http(addr, "POST", path, Some(&body.to_string()))
}

#[test]
fn schedules_are_created_with_every_option_listed_in_pages_changed_paused_and_run_now() {
    let root = tempfile::tempdir().unwrap();
    let (_server, addr, _handler) = serve_with_v1_handler(root.path());

    let (status, created) = post(
        &addr,
        "/api/schedules",
        json!({
            "name": "report",
            "trigger": {"type": "cron", "hour": "2", "minute": "30", "jitter": 5},
            "timezone": "America/New_York",
            "target": {"handler_id": "legacy", "method": "echo", "params": {"k": 1}},
            "policies": {"misfire": {"policy": "skip", "grace": 60}, "overlap": "queue_one",
                         "retry": {"max_attempts": 5, "initial_backoff": 2}, "timeout": 30},
            "paused": false
        }),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "report");
    assert_eq!(created["state"], "active");
    assert_eq!(created["timezone"], "America/New_York");
    assert_eq!(created["trigger_spec"]["jitter"], 5.0);
    assert_eq!(created["policies"]["overlap"], "queue_one");
    assert_eq!(created["policies"]["misfire"], json!({"policy": "skip", "grace": 60.0}));
    assert_eq!(created["policies"]["retry"]["max_attempts"], 5);
    assert_eq!(created["warnings"], json!([]));
    let next = created["next_fire_time"].as_str().unwrap();
    assert!(next.ends_with("T02:30:00-05:00"), "2:30 in New York: {next}");
    let id = created["schedule_id"].as_str().unwrap().to_string();

    // The same schedule by name and by id; unknown ones are 404.
    assert_eq!(http(&addr, "GET", "/api/schedules/report", None).1["schedule_id"], id.as_str());
    assert_eq!(http(&addr, "GET", &format!("/api/schedules/{id}"), None).1["name"], "report");
    assert_eq!(http(&addr, "GET", "/api/schedules/nope", None).0, 404);

    // A target nobody offers is kept, with a warning.
    let (status, body) = post(
        &addr,
        "/api/schedules",
        json!({"trigger": "0 0 1 1 *", "target": {"handler_id": "later", "method": "m"}, "paused": true}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "paused");
    assert_eq!(body["name"], body["schedule_id"], "the name defaults to the id");
    assert!(body["warnings"][0].as_str().unwrap().contains("no handler 'later'"), "{body}");

    // Pages of 2 over 5 schedules, with filters.
    for n in 0..3 {
        let (status, _) = post(
            &addr,
            "/api/schedules",
            json!({"name": format!("page-{n}"), "trigger": {"type": "interval", "hours": 1, "start_time": "2099-01-01T00:00:00Z"},
                   "target": {"handler_id": "legacy", "method": "echo"}}),
        );
        assert_eq!(status, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/schedules?limit=2&after={c}"),
            None => "/api/schedules?limit=2".to_string(),
        };
        let (status, page) = http(&addr, "GET", &path, None);
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["schedules"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "every schedule once: {seen:?}");
    assert_eq!(seen[0], "report", "oldest first");
    let paused = http(&addr, "GET", "/api/schedules?state=paused", None).1;
    assert_eq!(paused["count"], 1);
    let named = http(&addr, "GET", "/api/schedules?q=PAGE-&handler_id=legacy", None).1;
    assert_eq!(named["count"], 3);
    assert_eq!(http(&addr, "GET", "/api/schedules?state=sleeping", None).0, 400);
    assert_eq!(http(&addr, "GET", "/api/schedules?after=xyz", None).0, 400);

    // Update: policies merged, zone moved, name changed; a name in use is 409.
    let (status, updated) = http(
        &addr,
        "PATCH",
        "/api/schedules/report",
        Some(
            &json!({"policies": {"timeout": 10}, "timezone": "Europe/Paris", "name": "report-eu"})
                .to_string(),
        ),
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "report-eu");
    assert_eq!(updated["policies"]["timeout"], 10.0);
    assert_eq!(updated["policies"]["overlap"], "queue_one", "other policies kept");
    assert!(updated["next_fire_time"].as_str().unwrap().ends_with("T02:30:00+01:00"), "{updated}");
    let (status, body) =
        http(&addr, "PATCH", "/api/schedules/report-eu", Some(&json!({"name": "page-0"}).to_string()));
    assert_eq!(status, 409, "{body}");
    let (status, body) = http(
        &addr,
        "PATCH",
        "/api/schedules/report-eu",
        Some(&json!({"policies": {"overlap": "x"}}).to_string()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("overlap"), "{body}");

    // Pause, resume.
    let (status, body) = post(&addr, "/api/schedules/report-eu/pause", json!({}));
    assert_eq!((status, body["state"].as_str()), (200, Some("paused")));
    assert_eq!(body["next_fire_time"], Value::Null);
    let (status, body) = post(&addr, "/api/schedules/report-eu/resume", json!({}));
    assert_eq!((status, body["state"].as_str()), (200, Some("active")));

    // Run it now: a run of the schedule, with its policies, executed by the handler.
    let (status, run) = post(&addr, &format!("/api/schedules/{id}/run"), json!({}));
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["schedule_name"], "report-eu");
    assert_eq!(run["max_attempts"], 5);
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let done = wait_for(&addr, &format!("/api/runs/{run_id}"), Duration::from_secs(15), |r| {
        r["state"] == "succeeded"
    });
    assert_eq!(done["result"]["echo"], json!({"k": 1}));
    assert_eq!(done["attempts"][0]["outcome"], "succeeded");
    assert_eq!(done["attempts"].as_array().unwrap().len(), 1);

    // Delete by id; its history stays.
    assert_eq!(http(&addr, "DELETE", &format!("/api/schedules/{id}"), None).0, 200);
    assert_eq!(http(&addr, "GET", "/api/schedules/report-eu", None).0, 404);
    let kept = http(&addr, "GET", &format!("/api/runs/{run_id}"), None).1;
    assert_eq!(
        (kept["state"].as_str(), kept["schedule_name"].as_str()),
        (Some("succeeded"), Some("report-eu"))
    );
    let by_name = http(&addr, "GET", "/api/runs?schedule=report-eu", None).1;
    assert_eq!(by_name["count"], 1, "a deleted schedule's runs are found by its name: {by_name}");
    let compat = http(&addr, "GET", "/api/executions?job_id=report-eu", None).1;
    assert_eq!(compat["records"][0]["job_id"], "report-eu", "{compat}");
}

#[test]
fn runs_are_listed_by_schedule_handler_state_and_window_with_attempts_and_can_be_cancelled() {
    let root = tempfile::tempdir().unwrap();
    let (_server, addr, _handler) = serve_with_v1_handler(root.path());

    // A method that fails: three attempts (fast backoff), each recorded.
    let (status, _) = post(
        &addr,
        "/api/schedules",
        json!({"name": "flaky", "trigger": {"type": "date", "run_date": "2000-01-01T00:00:00Z"},
               "target": {"handler_id": "legacy", "method": "fail"},
               "policies": {"retry": {"max_attempts": 3, "initial_backoff": 0.05, "jitter": 0}}}),
    );
    assert_eq!(status, 201);
    let page = wait_for(&addr, "/api/runs?schedule=flaky", Duration::from_secs(20), |p| {
        p["runs"][0]["state"] == "failed"
    });
    let run = &page["runs"][0];
    assert_eq!(run["attempt"], 3);
    let detail = http(&addr, "GET", &format!("/api/runs/{}", run["run_id"].as_str().unwrap()), None).1;
    let outcomes: Vec<&str> =
        detail["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "failed", "failed"]);
    assert!(detail["attempts"][0]["instance"].is_string());
    assert!(run["lateness_ms"].as_i64().unwrap() > 0, "a date in 2000 runs late: {run}");

    // A slow call, cancelled while it runs: the run ends cancelled and is not retried.
    let (status, _) = post(
        &addr,
        "/api/schedules",
        json!({"name": "slow", "trigger": {"type": "date", "run_date": 0},
               "target": {"handler_id": "legacy", "method": "sleep", "params": {"seconds": 5}}}),
    );
    assert_eq!(status, 201);
    let page = wait_for(&addr, "/api/runs?schedule=slow&state=running", Duration::from_secs(15), |p| {
        p["count"] == 1
    });
    let slow = page["runs"][0]["run_id"].as_str().unwrap().to_string();
    let (status, body) = post(&addr, &format!("/api/runs/{slow}/cancel"), json!({}));
    assert_eq!(status, 200, "{body}");
    let done =
        wait_for(&addr, &format!("/api/runs/{slow}"), Duration::from_secs(15), |r| r["state"] == "cancelled");
    assert_eq!(done["attempts"][0]["outcome"], "cancelled");
    let (status, body) = post(&addr, &format!("/api/runs/{slow}/cancel"), json!({}));
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("cancelled"), "{body}");

    // Filters: by state (several), handler, and a window on the slot.
    let failed = http(&addr, "GET", "/api/runs?state=failed,cancelled&handler_id=legacy", None).1;
    assert_eq!(failed["count"], 2);
    let window = http(&addr, "GET", "/api/runs?from=1999-12-31T00:00:00Z&to=2000-01-02T00:00:00Z", None).1;
    assert_eq!(window["count"], 1, "only the slot of 2000-01-01: {window}");
    let unix = http(&addr, "GET", "/api/runs?from=0&to=1", None).1;
    assert_eq!(unix["count"], 1, "the slot at Unix 0: {unix}");
    let paged = http(&addr, "GET", "/api/runs?limit=1", None).1;
    assert_eq!(paged["count"], 1);
    let cursor = paged["next_cursor"].as_str().unwrap();
    let rest = http(&addr, "GET", &format!("/api/runs?limit=5&before={cursor}"), None).1;
    assert_eq!(rest["count"], 1);
    assert_ne!(rest["runs"][0]["run_id"], paged["runs"][0]["run_id"]);
    for bad in
        ["/api/runs?state=nope", "/api/runs?from=yesterday", "/api/runs?limit=x", "/api/runs?colour=red"]
    {
        let (status, body) = http(&addr, "GET", bad, None);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(http(&addr, "GET", "/api/runs?schedule=unknown", None).0, 404);
    assert_eq!(http(&addr, "GET", "/api/runs/not-an-id", None).0, 400);
    assert_eq!(http(&addr, "GET", "/api/runs/01a22189-fb26-77df-85dd-6111157a040b", None).0, 404);

    // Handler detail.
    let (status, h) = http(&addr, "GET", "/api/handlers/legacy", None);
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["status"], "Connected");
    let instance = &h["instances"][0];
    assert_eq!(instance["protocol"], "v1");
    assert_eq!(instance["capacity"], 1);
    assert!(instance["failures"].as_u64().unwrap() >= 3, "{instance}");
    assert!(h["methods"].as_array().unwrap().contains(&json!("sleep")));
    assert_eq!(http(&addr, "GET", "/api/handlers/ghost", None).0, 404);
}

#[test]
fn trigger_preview_matches_the_cli_and_bad_requests_name_the_field() {
    let root = tempfile::tempdir().unwrap();
    let (_server, addr) = serve_any_port(root.path());
    let trigger = json!({"type": "cron", "day": "last fri", "hour": "9", "timezone": "Europe/Paris"});
    let (status, body) = post(
        &addr,
        "/api/triggers/preview",
        json!({"trigger": trigger, "count": 4, "after": "2026-01-01T00:00:00Z"}),
    );
    assert_eq!(status, 200, "{body}");
    let cli = Command::new(env!("CARGO_BIN_EXE_schedulezero"))
        .args([
            "trigger",
            "next",
            &trigger.to_string(),
            "-n",
            "4",
            "--after",
            "2026-01-01T00:00:00Z",
            "--json",
        ])
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(body["fires"], cli["next"], "the API and the CLI agree");
    assert_eq!(body["fires"][0], "2026-01-30T09:00:00+01:00");
    assert_eq!(body["description"], cli["description"]);

    for (request, field) in [
        (json!({"trigger": {"type": "cron", "hour": "25"}}), "hour"),
        (json!({"trigger": "* * *"}), "expression"),
        (json!({"trigger": "* * * * *", "count": 0}), "count"),
        (json!({"trigger": "* * * * *", "timezone": "Mars/Olympus"}), "timezone"),
        (json!({"trigger": "* * * * *", "colour": 1}), "colour"),
        (json!({}), "trigger"),
    ] {
        let (status, body) = post(&addr, "/api/triggers/preview", request.clone());
        assert_eq!(status, 400, "{request}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{request}: '{message}' should name '{field}'");
    }
    for (request, field) in [
        (json!({"trigger": "* * * * *"}), "target"),
        (json!({"trigger": "* * * * *", "target": {"handler_id": "h"}}), "method"),
        (json!({"trigger": "* * * * *", "target": {"handler_id": "h", "method": 1}}), "target.method"),
        (
            json!({"trigger": "* * * * *", "target": {"handler_id": "h", "method": "m", "params": 1}}),
            "params",
        ),
        (json!({"trigger": "* * * * *", "target": {"handler_id": "", "method": "m"}}), "handler_id"),
        (
            json!({"trigger": "* * * * *", "target": {"handler_id": "h", "method": "m"}, "policies": {"timeout": -1}}),
            "timeout",
        ),
        (
            json!({"trigger": "* * * * *", "target": {"handler_id": "h", "method": "m"}, "paused": "yes"}),
            "paused",
        ),
        (json!({"trigger": {"type": "weekly"}, "target": {"handler_id": "h", "method": "m"}}), "type"),
        (
            json!({"trigger": {"type": "cron", "year": "1970"}, "target": {"handler_id": "h", "method": "m"}}),
            "never",
        ),
        (
            json!({"trigger": {"type": "cron", "month": "2", "day": "31"}, "target": {"handler_id": "h", "method": "m"}}),
            "no fire time",
        ),
        (
            json!({"trigger": "* * * * *", "target": {"handler_id": "h", "method": "m"}, "name": "n".repeat(201)}),
            "name",
        ),
        (
            json!({"trigger": "* * * * *", "target": {"handler_id": "h", "method": "m"}, "name": "a\nb"}),
            "name",
        ),
    ] {
        let (status, body) = post(&addr, "/api/schedules", request.clone());
        assert_eq!(status, 400, "{request}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{request}: '{message}' should name '{field}'");
    }
    let (status, _) = http(&addr, "POST", "/api/schedules", Some("[1]"));
    assert_eq!(status, 400);
}

#[test]
fn the_openapi_document_describes_the_native_routes_and_the_swagger_ui_is_served_offline() {
    let root = tempfile::tempdir().unwrap();
    let (_server, addr) = serve_any_port(root.path());
    let (status, doc) = http(&addr, "GET", "/api/openapi.json", None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/schedules", "post"),
        ("/api/schedules", "get"),
        ("/api/schedules/{schedule}", "patch"),
        ("/api/schedules/{schedule}/pause", "post"),
        ("/api/schedules/{schedule}/resume", "post"),
        ("/api/schedules/{schedule}/run", "post"),
        ("/api/runs", "get"),
        ("/api/runs/{run_id}", "get"),
        ("/api/runs/{run_id}/cancel", "post"),
        ("/api/triggers/preview", "post"),
        ("/api/handlers/{handler_id}", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is documented");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in ["ScheduleView", "RunView", "AttemptView", "ErrorBody", "CreateSchedule", "PoliciesDoc"] {
        assert!(schemas.contains_key(name), "schema {name}");
    }

    // The UI and its assets come from the binary: nothing points to another host.
    let (status, page) = http(&addr, "GET", "/api/docs/", None);
    assert_eq!(status, 200);
    let page = page.as_str().unwrap().to_string();
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(!page.contains("https://") && !page.contains("http://"), "no external asset: {page}");
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        let (status, body) = http(&addr, "GET", &format!("/api/docs/{asset}"), None);
        assert_eq!(status, 200, "{asset}");
        assert!(body.as_str().is_some_and(|b| b.len() > 100), "{asset} has content");
    }
    let init = http(&addr, "GET", "/api/docs/swagger-initializer.js", None).1;
    assert!(init.as_str().unwrap().contains("/api/openapi.json"));
}

#[test]
fn the_python_handler_of_the_handler_guide_runs_a_schedule_and_drains_on_sigterm() {
    // docs/examples/native_handler.py is quoted by docs/HANDLERS.md: this keeps it true.
    let root = tempfile::tempdir().unwrap();
    let (_server, addr) = serve_any_port(root.path());
    let zmq = runtime(root.path())["zmq"].as_str().unwrap().to_string();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/native_handler.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(script).arg(&zmq).arg("py-demo");
    let mut handler = Proc::spawn(cmd);
    handler.wait_line("registered ", Duration::from_secs(30));
    let (status, created) = post(
        &addr,
        "/api/schedules",
        json!({"name": "greet", "trigger": {"type": "date", "run_date": 0},
               "target": {"handler_id": "py-demo", "method": "greet", "params": {"name": "docs"}}}),
    );
    assert_eq!(status, 201, "{created}");
    let page = wait_for(&addr, "/api/runs?schedule=greet", Duration::from_secs(20), |p| {
        p["runs"][0]["state"] == "succeeded"
    });
    assert_eq!(page["runs"][0]["result"]["greeting"], "hello docs");
    let detail = http(&addr, "GET", "/api/handlers/py-demo", None).1;
    let address = detail["instances"][0]["address"].as_str().unwrap();
    assert!(address.starts_with("127.0.0.1 (connection "), "the connection's IP is shown: {address}");
    handler.term();
    let (code, lines) = handler.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines.iter().any(|l| l == "drained"), "{lines:?}");
}
