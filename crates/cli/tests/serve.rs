//! `schedulezero serve` as users run it: the real binary in a temp deployments root, ports
//! chosen by the OS (or held on purpose by the test), stopped with SIGTERM; the compat HTTP API
//! spoken over plain TCP, and a version-1 pyzmq handler executing the jobs.

mod support;

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

#[test]
fn serve_publishes_its_addresses_answers_and_stops_cleanly_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let (mut p, addr) = serve_any_port(root.path());
    let runtime: Value = serde_json::from_slice(&std::fs::read(runtime_file(root.path())).unwrap()).unwrap();
    assert_eq!(runtime["http"], format!("http://{addr}"));
    assert!(runtime["zmq"].as_str().unwrap().starts_with("tcp://127.0.0.1:"));
    assert!(root.path().join("deployments/default/schedulezero.db").exists());

    let (status, health) = http(&addr, "GET", "/api/health", None);
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, page) = http(&addr, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("<html"));
    let banner = p.wait_line("  dashboard ", Duration::from_secs(10));
    assert_eq!(banner.trim_end(), format!("  dashboard http://{addr}/"), "the banner names the dashboard");

    // Hygiene: a page elsewhere cannot drive it (DNS rebinding, cross-origin POST); scripts can.
    let (status, err) = http_with(&addr, "GET", "/api/health", None, "Host: evil.example:8888");
    assert_eq!(status, 403, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("Host"), "{err}");
    let cross = format!("Host: {addr}\r\nOrigin: http://evil.example");
    let (status, err) = http_with(&addr, "POST", "/api/executions/clear", None, &cross);
    assert_eq!(status, 403, "{err}");
    let same = format!("Host: {addr}\r\nOrigin: http://{addr}");
    assert_eq!(http_with(&addr, "POST", "/api/executions/clear", None, &same).0, 200);
    assert_eq!(http_with(&addr, "GET", "/api/health", None, &cross).0, 200, "reads are not refused");
    assert_eq!(http_with(&addr, "GET", "/api/health", None, "Host: localhost").0, 200);

    p.term();
    let (code, lines) = p.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "{lines:?}");
    assert!(!runtime_file(root.path()).exists(), "runtime file removed");
    assert!(!root.path().join("deployments/default/run/server.pid").exists(), "PID file removed");
}

#[test]
fn a_port_in_use_is_refused_naming_the_port_pid_and_command() {
    let root = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut p = serve(root.path(), &["--http", &format!("127.0.0.1:{port}"), "--zmq", "tcp://127.0.0.1:0"]);
    let (code, lines) = p.wait_exit(Duration::from_secs(30));
    assert_ne!(code, 0);
    let all = lines.join("\n");
    assert!(all.contains(&format!("port {port}")), "{all}");
    assert!(all.contains(&format!("PID {}", std::process::id())), "{all}");
    let me = std::fs::read_to_string("/proc/self/cmdline").unwrap();
    let program = me.split('\0').next().unwrap();
    assert!(all.contains(program), "the holder's command line is named: {all}");
}

#[test]
fn a_live_server_of_the_deployment_refuses_a_second_and_a_stale_pid_file_is_cleaned() {
    let root = tempfile::tempdir().unwrap();
    let (mut first, _) = serve_any_port(root.path());
    let mut second = serve(root.path(), &["--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0"]);
    let (code, lines) = second.wait_exit(Duration::from_secs(30));
    assert_ne!(code, 0);
    let all = lines.join("\n");
    assert!(all.contains("already running") && all.contains(&format!("PID {}", first.child.id())), "{all}");

    // Killed without a chance to clean up: its PID file stays, naming a dead process.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(root.path().join("deployments/default/run/server.pid").exists());
    let (mut third, addr) = serve_any_port(root.path());
    third.wait_line("stale PID file", Duration::from_secs(10));
    assert_eq!(http(&addr, "GET", "/api/health", None).0, 200);

    // A PID file naming a live process that is not ours (a recycled PID) is stale too.
    third.term();
    assert_eq!(third.wait_exit(Duration::from_secs(30)).0, 0);
    let me = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = me[me.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap();
    let fake =
        json!({"pid": std::process::id(), "start_ticks": start + 1, "cmdline": ["schedulezero", "serve"]});
    std::fs::write(root.path().join("deployments/default/run/server.pid"), fake.to_string()).unwrap();
    let (mut fourth, _) = serve_any_port(root.path());
    fourth.wait_line("belongs to another program", Duration::from_secs(10));
}

#[test]
fn bad_configuration_is_refused_with_file_line_and_key() {
    let root = tempfile::tempdir().unwrap();
    configure(root.path(), "[server]\nhttp = \"127.0.0.1:0\"\nzmq_port = 5\n");
    let mut p = serve(root.path(), &[]);
    let (code, lines) = p.wait_exit(Duration::from_secs(30));
    assert_ne!(code, 0);
    let all = lines.join("\n");
    assert!(all.contains("schedulezero.toml") && all.contains("line 3") && all.contains("zmq_port"), "{all}");
}

#[test]
fn the_compat_api_schedules_and_runs_jobs_on_a_version_1_handler() {
    let root = tempfile::tempdir().unwrap();
    let (mut server, addr, mut handler) = serve_with_v1_handler(root.path());
    let log = root.path().join("calls.log");

    let (status, handlers) = http(&addr, "GET", "/api/handlers", None);
    assert_eq!(status, 200);
    assert_eq!(handlers["handlers"][0]["id"], "legacy");
    assert_eq!(handlers["handlers"][0]["status"], "Connected");

    let (status, reply) = http(
        &addr,
        "POST",
        "/api/run_now",
        Some(r#"{"handler_id":"legacy","job_method":"echo","job_params":{"n":1}}"#),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "success");
    assert_eq!(reply["result"]["echo"], json!({"n": 1}));
    assert_eq!(reply["message"], "Job executed on handler 'legacy'");
    let (status, reply) = http(
        &addr,
        "POST",
        "/api/run_now",
        Some(r#"{"handler_id":"legacy","job_method":"fail","job_params":{}}"#),
    );
    assert_eq!(status, 502, "{reply}");

    let job = r#"{"handler_id":"legacy","job_method":"echo","job_params":{"every":"second"},"trigger":{"type":"interval","seconds":1},"job_id":"tick"}"#;
    let (status, reply) = http(&addr, "POST", "/api/schedule", Some(job));
    assert_eq!((status, reply), (201, json!({"status": "success", "job_id": "tick"})));
    assert_eq!(http(&addr, "POST", "/api/schedule", Some(job)).0, 409, "a duplicate job_id");
    let calls = |log: &Path| std::fs::read_to_string(log).unwrap_or_default().matches("second").count();
    let deadline = Instant::now() + Duration::from_secs(15);
    while calls(&log) < 2 {
        assert!(Instant::now() < deadline, "the interval fires at once and again");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, list) = http(&addr, "GET", "/api/schedules", None);
    assert_eq!(status, 200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["schedules"][0]["id"], "tick");
    assert_eq!(list["schedules"][0]["args"], json!(["legacy", "echo", {"every": "second"}, "tick"]));

    // Client mistakes are 4xx, each naming what was wrong.
    for (body, code, needle) in [
        (r#"{"handler_id":"legacy","job_method":"echo","trigger":{"type":"interval"}}"#, 400, "trigger"),
        (
            r#"{"handler_id":"legacy","job_method":"nope","trigger":{"type":"interval","seconds":1}}"#,
            400,
            "nope",
        ),
        (
            r#"{"handler_id":"ghost","job_method":"echo","trigger":{"type":"interval","seconds":1}}"#,
            404,
            "ghost",
        ),
        (
            r#"{"handler_id":"legacy","job_method":"echo","job_params":[1],"trigger":{"type":"interval","seconds":1}}"#,
            400,
            "job_params",
        ),
        (r#"{"job_method":"echo"}"#, 400, "handler_id"),
        ("not json", 400, "JSON"),
        ("", 400, "body"),
    ] {
        let (status, err) = http(&addr, "POST", "/api/schedule", Some(body));
        assert_eq!(status, code, "{body} → {err}");
        assert_eq!(err["error"]["code"], code);
        assert!(err["error"]["message"].as_str().unwrap().contains(needle), "{body} → {err}");
    }

    // Execution history: persisted records in the original's shape, newest first.
    let deadline = Instant::now() + Duration::from_secs(15);
    let records = loop {
        let (status, list) = http(&addr, "GET", "/api/executions?job_id=tick", None);
        assert_eq!(status, 200);
        let done = list["records"].as_array().unwrap().iter().filter(|r| r["status"] == "success").count();
        if done >= 2 {
            break list;
        }
        assert!(Instant::now() < deadline, "the schedule's runs are recorded: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let r = &records["records"][0];
    assert_eq!(
        (r["job_id"].as_str(), r["handler_id"].as_str(), r["method_name"].as_str()),
        (Some("tick"), Some("legacy"), Some("echo"))
    );
    assert_eq!((r["attempt_number"].as_u64(), r["max_attempts"].as_u64()), (Some(1), Some(3)));
    assert!(r["duration_ms"].as_i64().is_some() && r["completed_at"].is_string(), "{r}");
    let (status, errors) = http(&addr, "GET", "/api/executions/errors", None);
    assert_eq!(status, 200);
    assert_eq!(
        errors["errors"][0]["error"], "failed on purpose",
        "the failed run_now is an error record: {errors}"
    );
    let (status, stats) = http(&addr, "GET", "/api/executions/stats", None);
    assert_eq!(status, 200);
    assert!(stats["success_count"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(stats["error_count"], 1, "{stats}");
    assert_eq!(stats["by_handler"]["legacy"]["error"], 1, "{stats}");
    assert_eq!(http(&addr, "GET", "/api/executions?limit=ten", None).0, 400);
    assert_eq!(http(&addr, "GET", "/api/executions?status=maybe", None).0, 400);
    assert_eq!(http(&addr, "GET", "/api/executions?limit=5000", None).1["limit"], 1000, "clamped");
    assert_eq!(http(&addr, "DELETE", "/api/schedules/tick", None).0, 200);
    assert_eq!(http(&addr, "DELETE", "/api/schedules/tick", None).0, 404);
    let (status, cleared) = http(&addr, "POST", "/api/executions/clear", None);
    assert_eq!((status, cleared["status"].as_str()), (200, Some("success")));
    assert_eq!(http(&addr, "GET", "/api/executions/errors", None).1["count"], 0);

    // No live instance: 503, after the handler reports itself offline.
    handler.term();
    handler.wait_exit(Duration::from_secs(20));
    let (status, _) =
        http(&addr, "POST", "/api/run_now", Some(r#"{"handler_id":"legacy","job_method":"echo"}"#));
    assert_eq!(status, 503);

    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);
}

#[test]
fn schedules_and_history_survive_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let (mut server, addr, _handler) = serve_with_v1_handler(root.path());
    let later = r#"{"handler_id":"legacy","job_method":"echo","trigger":{"type":"date","run_date":"2099-01-01T00:00:00Z"},"job_id":"later"}"#;
    assert_eq!(http(&addr, "POST", "/api/schedule", Some(later)).0, 201);
    let cron = r#"{"handler_id":"legacy","job_method":"echo","trigger":{"type":"cron","hour":"3","minute":"0"},"job_id":"nightly"}"#;
    assert_eq!(http(&addr, "POST", "/api/schedule", Some(cron)).0, 201);
    assert_eq!(
        http(&addr, "POST", "/api/run_now", Some(r#"{"handler_id":"legacy","job_method":"echo"}"#)).0,
        200
    );
    let before = http(&addr, "GET", "/api/schedules", None).1;
    // The run-now record is committed in the recorder's next batch: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(&addr, "GET", "/api/executions", None).1["count"] != 1 {
        assert!(Instant::now() < deadline, "run recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);

    let (mut again, addr) = serve_any_port(root.path());
    let after = http(&addr, "GET", "/api/schedules", None).1;
    assert_eq!(after["count"], 2);
    assert_eq!(before["schedules"], after["schedules"], "same schedules, same next fire times");
    let history = http(&addr, "GET", "/api/executions", None).1;
    assert_eq!(history["count"], 1);
    assert_eq!(history["records"][0]["status"], "success");
    let handlers = http(&addr, "GET", "/api/handlers", None).1;
    assert_eq!(handlers["handlers"][0]["id"], "legacy", "the registration is remembered: {handlers}");
    again.term();
    assert_eq!(again.wait_exit(Duration::from_secs(30)).0, 0);
}

#[test]
fn events_stream_live_and_end_when_the_server_stops() {
    let root = tempfile::tempdir().unwrap();
    let (mut server, addr) = serve_any_port(root.path());
    assert_eq!(http(&addr, "GET", "/api/ready", None), (200, json!({"ready": true})));
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let runtime: Value = serde_json::from_slice(&std::fs::read(runtime_file(root.path())).unwrap()).unwrap();
    let mut handler = v1_handler(runtime["zmq"].as_str().unwrap(), "legacy", &root.path().join("calls.log"));
    handler.wait_line("registered ", Duration::from_secs(30));
    let wait_for = |marker: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return line,
                Ok(_) => {}
                Err(_) => panic!("no '{marker}' on the event stream"),
            }
        }
    };
    assert_eq!(wait_for("event: "), "event: handler_up");
    assert!(wait_for("data: ").contains("\"handler_id\":\"legacy\""));
    assert_eq!(
        http(&addr, "POST", "/api/run_now", Some(r#"{"handler_id":"legacy","job_method":"echo"}"#)).0,
        200
    );
    wait_for("event: run_started");
    wait_for("event: run_finished");

    // A client still listening does not hold the server up: the stream ends, the server exits 0.
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);
}

#[test]
fn a_restarted_server_takes_its_previous_ports_again_and_running_handlers_come_back_to_it() {
    let root = tempfile::tempdir().unwrap();
    let (mut server, addr, _handler) = serve_with_v1_handler(root.path());
    let first: Value = serde_json::from_slice(&std::fs::read(runtime_file(root.path())).unwrap()).unwrap();
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);

    // Asked for any port again: the same ones, so the handler (not restarted) is reachable.
    let (_again, addr_again) = serve_any_port(root.path());
    let second: Value = serde_json::from_slice(&std::fs::read(runtime_file(root.path())).unwrap()).unwrap();
    assert_eq!(addr_again, addr);
    assert_eq!(second["zmq"], first["zmq"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, reply) = http(
            &addr,
            "POST",
            "/api/run_now",
            Some(r#"{"handler_id":"legacy","job_method":"echo","job_params":{"back":true}}"#),
        );
        if status == 200 {
            assert_eq!(reply["result"]["echo"], json!({"back": true}));
            break;
        }
        assert!(Instant::now() < deadline, "the handler never came back: {status} {reply}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_previous_port_taken_meanwhile_is_not_fought_for() {
    let root = tempfile::tempdir().unwrap();
    let (mut server, addr) = serve_any_port(root.path());
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);
    // Someone else took the HTTP port in between: the server binds another one, no error.
    let _squatter = std::net::TcpListener::bind(&addr).unwrap();
    let (_again, addr_again) = serve_any_port(root.path());
    assert_ne!(addr_again, addr);
    assert_eq!(http(&addr_again, "GET", "/api/health", None).0, 200);
}

#[test]
fn cors_headers_go_only_to_configured_origins() {
    let root = tempfile::tempdir().unwrap();
    configure(root.path(), "[server]\nallowed_origins = [\"https://ops.example\"]\n");
    let (_server, addr) = serve_any_port(root.path());

    let raw = |request: &str| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        text.to_ascii_lowercase()
    };
    let preflight = raw(&format!(
        "OPTIONS /api/schedules HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://ops.example\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
    ));
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    assert!(preflight.contains("access-control-allow-origin: https://ops.example"), "{preflight}");
    assert!(preflight.contains("access-control-allow-methods: get, post, patch, delete"), "{preflight}");

    let get = raw(&format!(
        "GET /api/health HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://ops.example\r\nConnection: close\r\n\r\n"
    ));
    assert!(
        get.starts_with("http/1.1 200") && get.contains("access-control-allow-origin: https://ops.example")
    );
    assert!(get.contains("vary: origin"), "{get}");

    let (status, body) = http_with(
        &addr,
        "POST",
        "/api/triggers/preview",
        Some(r#"{"trigger":"* * * * *"}"#),
        &format!("Host: {addr}\r\nOrigin: https://ops.example"),
    );
    assert_eq!(status, 200, "a configured origin may mutate: {body}");

    let other = raw(&format!(
        "GET /api/health HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n"
    ));
    assert!(other.starts_with("http/1.1 200") && !other.contains("access-control-allow-origin"), "{other}");
    let (status, body) = http_with(
        &addr,
        "POST",
        "/api/triggers/preview",
        Some(r#"{"trigger":"* * * * *"}"#),
        &format!("Host: {addr}\r\nOrigin: https://evil.example"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("allowed_origins"));
}

#[test]
fn sigterm_lets_calls_in_flight_finish_within_the_grace_and_records_the_rest_interrupted() {
    let root = tempfile::tempdir().unwrap();
    configure(root.path(), "[server]\nshutdown_grace_s = 3\n");
    let (mut server, addr, _handler) = serve_with_v1_handler(root.path());
    let schedule = |name: &str, seconds: f64| {
        let body = json!({"name": name, "trigger": {"type": "date", "run_date": 0},
                          "target": {"handler_id": "legacy", "method": "sleep", "params": {"seconds": seconds}}});
        let (status, reply) = http(&addr, "POST", "/api/schedules", Some(&body.to_string()));
        assert_eq!(status, 201, "{reply}");
    };

    // Within the grace: the call finishes and its success is recorded before the exit.
    schedule("short", 1.0);
    wait_for(&addr, "/api/runs?schedule=short&state=running", Duration::from_secs(15), |p| p["count"] == 1);
    server.term();
    let (code, lines) = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "{lines:?}");
    let (mut server, addr) = serve_any_port(root.path());
    let short = http(&addr, "GET", "/api/runs?schedule=short", None).1;
    assert_eq!(short["runs"][0]["state"], "succeeded", "{short}");
    assert_eq!(short["runs"][0]["attempt"], 1);

    // Past the grace: recorded interrupted, then retried at the next start.
    let schedule = |name: &str, seconds: f64| {
        let body = json!({"name": name, "trigger": {"type": "date", "run_date": 0},
                          "target": {"handler_id": "legacy", "method": "sleep", "params": {"seconds": seconds}},
                          "policies": {"retry": {"initial_backoff": 0.1, "jitter": 0}}});
        let (status, reply) = http(&addr, "POST", "/api/schedules", Some(&body.to_string()));
        assert_eq!(status, 201, "{reply}");
    };
    schedule("long", 6.0);
    wait_for(&addr, "/api/runs?schedule=long&state=running", Duration::from_secs(15), |p| p["count"] == 1);
    let stopping = Instant::now();
    server.term();
    let (code, lines) = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "{lines:?}");
    assert!(stopping.elapsed() < Duration::from_secs(6), "the grace (3 s) bounds the stop, not the call");
    let (_server, addr) = serve_any_port(root.path());
    let long = http(&addr, "GET", "/api/runs?schedule=long", None).1;
    let run_id = long["runs"][0]["run_id"].as_str().unwrap().to_string();
    let done = wait_for(&addr, &format!("/api/runs/{run_id}"), Duration::from_secs(40), |r| {
        r["state"] == "succeeded"
    });
    let outcomes: Vec<&str> =
        done["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["interrupted", "succeeded"], "{done}");
}

#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    // `schedulezero serve | head -1`: the reader goes away before the banner is written.
    let root = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_schedulezero"))
        .args(["serve", "--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0", "--root"])
        .arg(root.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runtime_file(root.path()).exists() {
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "no runtime file");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let addr = runtime(root.path())["http"].as_str().unwrap().trim_start_matches("http://").to_string();
    assert_eq!(http(&addr, "GET", "/api/health", None).0, 200, "still serving");
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop");
    assert!(!runtime_file(root.path()).exists());
}

#[test]
fn a_second_sigterm_stops_at_once_and_the_next_start_records_the_call_interrupted() {
    let root = tempfile::tempdir().unwrap();
    configure(root.path(), "[server]\nshutdown_grace_s = 60\n");
    let (mut server, addr, _handler) = serve_with_v1_handler(root.path());
    let body = json!({"name": "long", "trigger": {"type": "date", "run_date": 0},
                      "target": {"handler_id": "legacy", "method": "sleep", "params": {"seconds": 30}}});
    assert_eq!(http(&addr, "POST", "/api/schedules", Some(&body.to_string())).0, 201);
    wait_for(&addr, "/api/runs?schedule=long&state=running", Duration::from_secs(15), |p| p["count"] == 1);
    let stopping = Instant::now();
    server.term();
    server.wait_line("second SIGTERM", Duration::from_secs(10));
    server.term();
    let (code, lines) = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "{lines:?}");
    assert!(stopping.elapsed() < Duration::from_secs(20), "not the 60 s grace, nor the 30 s call");
    assert!(!runtime_file(root.path()).exists());
    let (_server, addr) = serve_any_port(root.path());
    let run = http(&addr, "GET", "/api/runs?schedule=long", None).1;
    let run_id = run["runs"][0]["run_id"].as_str().unwrap().to_string();
    let detail = http(&addr, "GET", &format!("/api/runs/{run_id}"), None).1;
    assert_eq!(detail["attempts"][0]["outcome"], "interrupted", "{detail}");
}
