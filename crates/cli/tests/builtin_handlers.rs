//! The built-in handlers as users run them: the real `schedulezero serve` on OS-chosen ports, and
//! `schedulezero handler exec|http --config FILE` as real processes, driven through the HTTP API
//! (a paused schedule per call, `POST /api/schedules/{name}/run`, `GET /api/runs/{id}`). The http
//! handler calls a small axum server inside the test. Uses the shared helpers of tests/support
//! (unchanged).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const PATIENCE: Duration = Duration::from_secs(30);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
}

/// A server on free ports, with its HTTP address and handler endpoint.
struct Server {
    root: tempfile::TempDir,
    proc: Proc,
    addr: String,
    zmq: String,
}

fn server() -> Server {
    let root = tempfile::tempdir().expect("temp dir");
    let (proc, addr) = serve_any_port(root.path());
    let zmq = runtime(root.path())["zmq"].as_str().expect("zmq endpoint").to_string();
    Server { root, proc, addr, zmq }
}

/// `schedulezero handler KIND --config FILE`, finding the server through the environment only.
fn builtin(kind: &str, config: &Path, zmq: &str, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_schedulezero"));
    cmd.args(["handler", kind, "--config"]).arg(config);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SCHEDULEZERO_") || k == "RUST_LOG") {
        cmd.env_remove(key);
    }
    cmd.env("SCHEDULEZERO_SERVER_ENDPOINT", zmq).envs(env.iter().copied());
    let mut p = Proc::spawn(cmd);
    p.wait_line("registered with", PATIENCE);
    p
}

fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    http(addr, "POST", path, Some(&body.to_string()))
}

static SCHEDULES: AtomicU32 = AtomicU32::new(0);

/// Starts one run of `handler_id.method(params)` (one attempt, `timeout` seconds) and returns
/// its id.
fn start_run(addr: &str, handler_id: &str, method: &str, params: Value, timeout: f64) -> String {
    let name = format!("{method}-{}", SCHEDULES.fetch_add(1, Ordering::SeqCst));
    let (status, created) = post(
        addr,
        "/api/schedules",
        json!({
            "name": name,
            "trigger": {"type": "interval", "seconds": 86400},
            "paused": true,
            "target": {"handler_id": handler_id, "method": method, "params": params},
            "policies": {"retry": {"max_attempts": 1}, "timeout": timeout},
        }),
    );
    assert_eq!(status, 201, "{created}");
    let (status, run) = post(addr, &format!("/api/schedules/{name}/run"), json!({}));
    assert_eq!(status, 202, "{run}");
    run["run_id"].as_str().expect("run_id").to_string()
}

/// The run once it has ended.
fn finished(addr: &str, run_id: &str) -> Value {
    wait_for(addr, &format!("/api/runs/{run_id}"), PATIENCE, |r| {
        !matches!(r["state"].as_str(), Some("pending" | "running" | "retrying"))
    })
}

/// Runs a call to its end: the run and its (only) attempt.
fn call(addr: &str, handler_id: &str, method: &str, params: Value) -> (Value, Value) {
    let run = finished(addr, &start_run(addr, handler_id, method, params, 60.0));
    let attempt = run["attempts"][0].clone();
    (run, attempt)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_string)))
        .is_some_and(|state| state != "Z" && state != "X")
}

fn pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Kills leftover PIDs at the end of a test, also when it failed, so no `sleep 300` outlives it.
struct Reap(Vec<PathBuf>);

impl Drop for Reap {
    fn drop(&mut self) {
        for file in &self.0 {
            for pid in pids(file) {
                // SAFETY: sends a signal to a PID the test's own scripts recorded.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("script written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn the_exec_example_passes_params_as_argv_and_env_and_the_exit_code_decides() {
    let s = server();
    let _h = builtin("exec", &examples().join("exec.toml"), &s.zmq, &[]);

    // A param with shell syntax arrives as one literal argv entry.
    let evil = "x; rm -rf / $(touch pwned) `id` \"q\" 'q' | && >out";
    let (run, attempt) = call(&s.addr, "shell", "greet", json!({"name": evil, "times": 2}));
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(attempt["result"]["stdout"], format!("hello {evil} (x2)\n"), "{run}");
    assert_eq!(attempt["result"]["exit_code"], 0);
    assert!(!s.root.path().join("pwned").exists() && !Path::new("pwned").exists());

    // Env: the param, the run's identity, the method's own env.
    let (run, attempt) = call(&s.addr, "shell", "env", json!({"day": "2026-11-28"}));
    let run_id = run["run_id"].as_str().unwrap();
    assert_eq!(attempt["result"]["stdout"], format!("2026-11-28\n{run_id}\n1\nenv\nC.UTF-8\n"), "{run}");

    // Checked before anything starts: wrong type, undeclared, pattern, missing.
    for (params, says) in [
        (json!({"name": "a", "times": "2"}), "param 'times' must be an integer"),
        (json!({"name": "a", "extra": 1}), "param 'extra' is not declared"),
        (json!({}), "param 'name' is required"),
    ] {
        let (run, attempt) = call(&s.addr, "shell", "greet", params);
        assert_eq!(run["state"], "failed", "{run}");
        assert!(attempt["error"].as_str().unwrap().contains(says), "{run}");
        assert!(attempt["result"].is_null(), "the command never started: {run}");
    }
    let (_, attempt) = call(&s.addr, "shell", "env", json!({"day": "2026-11-28; reboot"}));
    assert!(
        attempt["error"].as_str().unwrap().contains("param 'day' does not match the pattern"),
        "{attempt}"
    );

    // The exit code decides, with the method's own success codes.
    let present = s.root.path().join("present");
    std::fs::write(&present, "ERROR one\nok\nERROR two\n").unwrap();
    let present = present.to_str().unwrap();
    let (run, _) = call(&s.addr, "shell", "file_exists", json!({"path": present}));
    assert_eq!(run["state"], "succeeded", "{run}");
    let (run, attempt) = call(&s.addr, "shell", "file_exists", json!({"path": "/no/such/file"}));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(attempt["error"], "exited with code 1 (success: 0)", "{run}");
    assert_eq!(attempt["result"]["exit_code"], 1, "the detail is kept: {run}");
    let (run, attempt) = call(&s.addr, "shell", "count_matches", json!({"word": "ERROR", "file": present}));
    assert_eq!(
        (run["state"].as_str(), attempt["result"]["stdout"].as_str()),
        (Some("succeeded"), Some("2\n"))
    );
    let (run, attempt) = call(&s.addr, "shell", "count_matches", json!({"word": "-v", "file": present}));
    assert_eq!(run["state"], "succeeded", "exit 1 is a success here: {run}");
    assert_eq!(
        (attempt["result"]["exit_code"].as_i64(), attempt["result"]["stdout"].as_str()),
        (Some(1), Some("0\n"))
    );
}

/// A config for the process tests: a script that starts a tree of `sleep`s, some ignoring
/// SIGTERM, and records every PID in the file its param names.
fn tree_config(dir: &Path, capacity: u32) -> PathBuf {
    let tree = write_script(
        dir,
        "tree.sh",
        r#"echo $$ >> "$SZ_PARAM_PIDS"
sleep 300 & echo $! >> "$SZ_PARAM_PIDS"
(trap '' TERM; exec sleep 300) & echo $! >> "$SZ_PARAM_PIDS"
sh -c 'trap "" TERM; sleep 300 & echo $! >> "$SZ_PARAM_PIDS"; wait' & echo $! >> "$SZ_PARAM_PIDS"
echo started
wait
"#,
    );
    let barrier = write_script(
        dir,
        "barrier.sh",
        r#"touch "$SZ_PARAM_DIR/$SCHEDULEZERO_RUN_ID"
i=0
while [ "$(ls "$SZ_PARAM_DIR" | wc -l)" -lt "$SZ_PARAM_N" ]; do
  i=$((i+1)); [ $i -gt 600 ] && { echo "never saw $SZ_PARAM_N calls at once" >&2; exit 3; }
  sleep 0.05
done
echo "saw $SZ_PARAM_N"
"#,
    );
    let chatty =
        write_script(dir, "chatty.sh", "yes oops | head -c 300000 >&2\nyes hello | head -c 300000\n");
    let leaves = write_script(dir, "leaves.sh", "sleep 300 & echo $! >> \"$SZ_PARAM_PIDS\"\necho bye\n");
    let config = format!(
        r#"handler_id = "procs"
capacity = {capacity}

[methods.tree]
program = "{tree}"
timeout_secs = 2.5
params.pids = {{ type = "string", required = true }}

[methods.tree_long]
program = "{tree}"
params.pids = {{ type = "string", required = true }}

[methods.barrier]
program = "{barrier}"
params.dir = {{ type = "string", required = true }}
params.n = {{ type = "integer", required = true }}

[methods.chatty]
program = "{chatty}"
max_output_bytes = 1000

[methods.leaves]
program = "{leaves}"
params.pids = {{ type = "string", required = true }}
"#,
        tree = tree.display(),
        barrier = barrier.display(),
        chatty = chatty.display(),
        leaves = leaves.display(),
    );
    let path = dir.join("procs.toml");
    std::fs::write(&path, config).expect("config written");
    path
}

fn wait_lines(file: &Path, n: usize) -> Vec<u32> {
    let until = Instant::now() + PATIENCE;
    loop {
        let found = pids(file);
        if found.len() >= n {
            return found;
        }
        assert!(Instant::now() < until, "only {found:?} in {}", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_all_gone(pids: &[u32], within: Duration) {
    let until = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "still running: {left:?} of {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_timeout_or_a_cancel_stops_the_whole_process_group_even_what_ignores_sigterm() {
    let s = server();
    let dir = s.root.path();
    let mut h = builtin("exec", &tree_config(dir, 2), &s.zmq, &[]);
    let (timed, cancelled, leaves, closed) = (
        dir.join("timed.pids"),
        dir.join("cancelled.pids"),
        dir.join("leaves.pids"),
        dir.join("closed.pids"),
    );
    let _reap = Reap(vec![timed.clone(), cancelled.clone(), leaves.clone(), closed.clone()]);

    // Timeout: the method's 2.5 s. Five processes: the script, two sleeps, a shell and its sleep;
    // three of them ignore SIGTERM, so only the SIGKILL after the grace ends them.
    let run_id = start_run(&s.addr, "procs", "tree", json!({"pids": timed.to_str().unwrap()}), 60.0);
    let tree = wait_lines(&timed, 5);
    let run = finished(&s.addr, &run_id);
    assert_eq!(run["state"], "failed", "{run}");
    let attempt = &run["attempts"][0];
    assert_eq!(attempt["error"], "timed out after 2.5 s: its process group was stopped", "{run}");
    assert_eq!(attempt["result"]["stdout"], "started\n", "{run}");
    assert_eq!(attempt["result"]["stopped_processes"], 5, "{run}");
    assert!(tree.iter().all(|p| !alive(*p)), "the result is sent once the group is gone: {tree:?}");

    // Cancel: the server's cancel reaches the handler, which stops the group the same way.
    let run_id = start_run(&s.addr, "procs", "tree_long", json!({"pids": cancelled.to_str().unwrap()}), 60.0);
    let tree = wait_lines(&cancelled, 5);
    assert!(tree.iter().all(|p| alive(*p)), "running before the cancel: {tree:?}");
    let (status, run) = post(&s.addr, &format!("/api/runs/{run_id}/cancel"), json!({}));
    assert_eq!(status, 200, "{run}");
    assert_all_gone(&tree, Duration::from_secs(10));
    assert_eq!(finished(&s.addr, &run_id)["state"], "cancelled");

    // A command that exits leaving a background process behind: that process is stopped too.
    let (run, attempt) = call(&s.addr, "procs", "leaves", json!({"pids": leaves.to_str().unwrap()}));
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(attempt["result"]["stopped_processes"], 1, "{run}");
    assert_all_gone(&pids(&leaves), Duration::from_secs(10));

    // A handler told twice to stop closes at once: its running commands' groups are killed.
    start_run(&s.addr, "procs", "tree_long", json!({"pids": closed.to_str().unwrap()}), 60.0);
    let tree = wait_lines(&closed, 5);
    h.term();
    h.wait_line("draining", PATIENCE);
    h.term();
    let (code, lines) = h.wait_exit(PATIENCE);
    assert_eq!(code, 0, "{lines:?}");
    assert_all_gone(&tree, Duration::from_secs(10));
}

#[test]
fn calls_run_concurrently_up_to_capacity_and_output_is_read_concurrently_and_truncated() {
    let s = server();
    let dir = s.root.path();
    let _h = builtin("exec", &tree_config(dir, 3), &s.zmq, &[]);

    // Three calls that each finish only once all three have started: they ran at once.
    let gate = dir.join("gate");
    std::fs::create_dir(&gate).unwrap();
    let params = json!({"dir": gate.to_str().unwrap(), "n": 3});
    let runs: Vec<String> =
        (0..3).map(|_| start_run(&s.addr, "procs", "barrier", params.clone(), 60.0)).collect();
    for run_id in &runs {
        let run = finished(&s.addr, run_id);
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["attempts"][0]["result"]["stdout"], "saw 3\n");
    }
    // Never more than the capacity: four waiting for four at once never get there (capacity 3),
    // until the fourth is let through by another file; none fails meanwhile.
    let gate4 = dir.join("gate4");
    std::fs::create_dir(&gate4).unwrap();
    let params = json!({"dir": gate4.to_str().unwrap(), "n": 4});
    let runs: Vec<String> =
        (0..4).map(|_| start_run(&s.addr, "procs", "barrier", params.clone(), 60.0)).collect();
    let until = Instant::now() + PATIENCE;
    while std::fs::read_dir(&gate4).unwrap().count() < 3 {
        assert!(Instant::now() < until, "three calls never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(std::fs::read_dir(&gate4).unwrap().count(), 3, "a fourth call ran beyond capacity 3");
    let (_, handler) = http(&s.addr, "GET", "/api/handlers/procs", None);
    assert_eq!(handler["instances"][0]["in_flight"], 3, "{handler}");
    std::fs::write(gate4.join("let-through"), "").unwrap();
    let run = finished(&s.addr, &runs[0]);
    assert_eq!(run["state"], "succeeded", "{run}");
    for run_id in &runs[1..] {
        assert_eq!(finished(&s.addr, run_id)["state"], "succeeded");
    }

    // 300 kB on stderr first, then on stdout: read at once, or the command would block.
    let (run, attempt) = call(&s.addr, "procs", "chatty", json!({}));
    assert_eq!(run["state"], "succeeded", "{run}");
    let r = &attempt["result"];
    assert_eq!((r["stdout_bytes"].as_u64(), r["stdout_truncated"].as_bool()), (Some(300_000), Some(true)));
    assert_eq!((r["stderr_bytes"].as_u64(), r["stderr_truncated"].as_bool()), (Some(300_000), Some(true)));
    assert_eq!(r["stdout"].as_str().unwrap(), "hello\n".repeat(200)[..1000].to_string());
    assert_eq!(r["stderr"].as_str().unwrap().len(), 1000);
}

#[test]
fn the_exec_handler_comes_back_after_a_server_restart_and_drains_on_sigterm() {
    let s = server();
    let mut handler = builtin("exec", &examples().join("exec.toml"), &s.zmq, &[]);
    let Server { root, proc: mut first, zmq, .. } = s;

    // Killed outright, then started again on the same handler port.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut again = serve(root.path(), &["--http", "127.0.0.1:0", "--zmq", &zmq]);
    let line = again.wait_line("  http ", PATIENCE);
    let up = Instant::now();
    let addr = line.split_whitespace().last().unwrap().trim_start_matches("http://").to_string();
    let until = up + Duration::from_secs(5);
    loop {
        if handler.drain().iter().filter(|l| l.contains("registered with")).count() >= 2 {
            break;
        }
        assert!(Instant::now() < until, "not registered again within 5 s: {:?}", handler.drain());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (run, _) = call(&addr, "shell", "greet", json!({"name": "again"}));
    assert_eq!(run["state"], "succeeded", "{run}");

    // SIGTERM during a 2 s command: it runs to its end, its result is recorded, then exit 0.
    let run_id = start_run(&addr, "shell", "sleep", json!({"seconds": 2}), 60.0);
    handler.wait_line("method=sleep", PATIENCE);
    handler.term();
    let (code, lines) = handler.wait_exit(PATIENCE);
    assert_eq!(code, 0, "{lines:?}");
    let run = finished(&addr, &run_id);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(run["attempts"][0]["result"]["duration_ms"].as_u64().unwrap() >= 2000, "{run}");
    drop(again);
}

#[test]
fn a_bad_config_is_refused_before_connecting_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, text: &str, kind: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        // Nothing listens there: a handler that got as far as connecting would hang, not exit.
        let mut p = builtin_unchecked(kind, &path, "tcp://127.0.0.1:9");
        let (code, lines) = p.wait_exit(PATIENCE);
        (code, lines.join("\n"))
    };
    let (code, out) = run("typo.toml", "handler_id = \"x\"\n[methods.a]\nprogam = \"true\"\n", "exec");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("typo.toml") && out.contains("line 3") && out.contains("progam"), "{out}");
    let (code, out) = run(
        "placeholder.toml",
        "handler_id = \"x\"\n\n[methods.a]\nprogram = \"echo\"\nargs = [\"{{nope}}\"]\n",
        "exec",
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("placeholder.toml") && out.contains("line 3") && out.contains("{{nope}}"), "{out}");
    let (code, out) = run(
        "secret.toml",
        "handler_id = \"x\"\n[methods.a]\nurl = \"http://h/\"\nheaders = { A = \"${SZ_TEST_UNSET_VAR}\" }\n",
        "http",
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("line 2") && out.contains("SZ_TEST_UNSET_VAR") && out.contains("not set"), "{out}");
}

fn builtin_unchecked(kind: &str, config: &Path, zmq: &str) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_schedulezero"));
    cmd.args(["handler", kind, "--config"]).arg(config).args(["--server", zmq]);
    Proc::spawn(cmd)
}

/// The web service the http handler calls: echoes requests, answers chosen statuses, is slow or
/// verbose on demand.
fn web_service(runtime: &tokio::runtime::Runtime) -> String {
    use axum::extract::{Path as UrlPath, RawQuery};
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::routing::{any, get};

    async fn echo(
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: String,
    ) -> ([(&'static str, &'static str); 1], axum::Json<Value>) {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let run =
            headers.get("x-schedulezero-run-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (
            [("x-request-id", "req-42")],
            axum::Json(json!({"method": method.as_str(), "path": uri.path(), "query": uri.query(),
                              "authorization": auth, "run_id": run, "body": body})),
        )
    }
    let app = axum::Router::new()
        .route("/hooks/{channel}", any(echo))
        .route("/search", get(|q: RawQuery| async move { q.0.unwrap_or_default() }))
        .route(
            "/cache/{key}",
            any(|UrlPath(key): UrlPath<String>| async move {
                if key == "gone" { StatusCode::NOT_FOUND } else { StatusCode::INTERNAL_SERVER_ERROR }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { "x".repeat(200_000) }));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("address");
    runtime.spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[test]
fn the_http_example_fills_templates_sends_secrets_judges_statuses_and_truncates() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = web_service(&runtime);
    let s = server();
    let example = std::fs::read_to_string(examples().join("http.toml")).unwrap();
    let config = example.replace("http://127.0.0.1:8080", &base)
        + &format!(
            r#"
[methods.slow]
url = "{base}/slow"
timeout_secs = 1

[methods.big]
url = "{base}/big"
max_body_bytes = 1000
"#
        );
    let path = s.root.path().join("http.toml");
    std::fs::write(&path, config).unwrap();
    let mut h = builtin("http", &path, &s.zmq, &[("HOOK_TOKEN", "t0ps3cret")]);

    // JSON body: escaped inside the string, a JSON value outside; the secret from the environment.
    let message = "done \"now\", \\ {\"admin\": true}";
    let (run, attempt) = call(&s.addr, "webhooks", "notify", json!({"channel": "ops", "message": message}));
    assert_eq!(run["state"], "succeeded", "{run}");
    let r = &attempt["result"];
    assert_eq!(r["status"], 200);
    assert_eq!(r["headers"], json!({"x-request-id": "req-42"}));
    let echoed = &r["json"];
    assert_eq!((echoed["method"].as_str(), echoed["path"].as_str()), (Some("POST"), Some("/hooks/ops")));
    assert_eq!(echoed["authorization"], "Bearer t0ps3cret");
    assert_eq!(echoed["run_id"], run["run_id"]);
    let sent: Value = serde_json::from_str(echoed["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"text": message, "urgent": false}));
    assert!(h.drain().iter().all(|l| !l.contains("t0ps3cret")), "the secret is never logged");

    // URL params are percent-encoded: they cannot add a query parameter.
    let (_, attempt) = call(&s.addr, "webhooks", "search", json!({"query": "a&limit=999 b/é"}));
    assert_eq!(attempt["result"]["body"], "q=a%26limit%3D999%20b%2F%C3%A9&limit=10", "{attempt}");

    // Status rule: 404 is a success for purge, 500 is not (and the response is kept).
    let (run, _) = call(&s.addr, "webhooks", "purge", json!({"key": "gone"}));
    assert_eq!(run["state"], "succeeded", "{run}");
    let (run, attempt) = call(&s.addr, "webhooks", "purge", json!({"key": "home"}));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(attempt["error"], "HTTP 500 Internal Server Error (success: 2xx, 404)", "{run}");
    assert_eq!(attempt["result"]["status"], 500);

    // A param that fails its pattern never reaches the URL.
    let (_, attempt) = call(&s.addr, "webhooks", "notify", json!({"channel": "../admin", "message": "x"}));
    assert!(attempt["error"].as_str().unwrap().contains("param 'channel' does not match"), "{attempt}");

    // Timeout and truncation.
    let (run, attempt) = call(&s.addr, "webhooks", "slow", json!({}));
    assert_eq!(run["state"], "failed", "{run}");
    assert!(attempt["error"].as_str().unwrap().starts_with("timed out after 1 s: GET"), "{run}");
    let (run, attempt) = call(&s.addr, "webhooks", "big", json!({}));
    assert_eq!(run["state"], "succeeded", "{run}");
    let r = &attempt["result"];
    assert_eq!((r["body"].as_str().map(str::len), r["body_truncated"].as_bool()), (Some(1000), Some(true)));
    assert_eq!(r["body_bytes"], 200_000);
}
