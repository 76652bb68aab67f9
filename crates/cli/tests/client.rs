//! The client commands (`schedule`, `handler`, `run`) as users run them: the real binary against
//! a real `schedulezero serve` on ports chosen by the OS, found through its runtime file (`--root`)
//! or named with `--server`/`SCHEDULEZERO_URL`, with a real native handler (the Rust SDK, in this
//! test process) executing the runs. Checks output, `--json` documents and exit codes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schedulezero_handler::{CallContext, Handler, LinkState, MethodError};
use serde_json::{Value, json};

/// How long anything waited on may take before the test gives up (real time, with slack).
const PATIENCE: Duration = Duration::from_secs(30);

/// The binary under test.
fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_schedulezero"))
}

/// A server in its own deployments root, with the addresses from its runtime file.
struct Server {
    root: tempfile::TempDir,
    http: String,
    zmq: String,
    _proc: support::Proc,
}

impl Server {
    fn start() -> Server {
        let root = tempfile::tempdir().expect("temp dir");
        let mut proc = support::serve(root.path(), &["--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0"]);
        // The server prints its addresses after writing the runtime file.
        proc.wait_line("  http ", PATIENCE);
        let runtime: Value = serde_json::from_slice(
            &std::fs::read(support::runtime_file(root.path())).expect("the runtime file exists"),
        )
        .expect("the runtime file is JSON");
        let http = runtime["http"].as_str().expect("runtime file has http").to_string();
        let zmq = runtime["zmq"].as_str().expect("runtime file has zmq").to_string();
        Server { root, http, zmq, _proc: proc }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    /// The client, finding this server through its runtime file.
    fn cli(&self, args: &[&str]) -> Out {
        let mut all = args.to_vec();
        let root = self.root().to_str().expect("utf-8 temp path").to_string();
        all.extend(["--root", &root]);
        cli(&all, &[])
    }
}

/// What one client command did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts success and parses stdout as JSON.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        &self.stdout
    }
}

/// Runs the client with a clean environment (plus `env`), in an empty directory so the current
/// directory finds no deployment by accident.
fn cli(args: &[&str], env: &[(&str, &str)]) -> Out {
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(cwd.path())
        .env_remove("SCHEDULEZERO_URL")
        .env_remove("SCHEDULEZERO_HOME")
        .env_remove("SCHEDULEZERO_DEPLOYMENT")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = cmd.output().expect("the client runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A native handler `demo` (methods `echo` and `fail`) served from a thread of this process until
/// dropped.
struct DemoHandler {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DemoHandler {
    fn start(zmq: &str) -> DemoHandler {
        let handler = Handler::builder("demo")
            .instance_id("demo-1")
            .method("echo", |_: CallContext, params: Value| async move { Ok::<_, MethodError>(params) })
            .method("fail", |_: CallContext, _: Value| async move {
                Err::<Value, _>(MethodError::new("failed on purpose"))
            })
            .build()
            .expect("handler declaration is valid");
        let mut status = handler.status();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let endpoint = zmq.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let _ = handler
                    .run_until(&endpoint, async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let deadline = Instant::now() + PATIENCE;
        while *status.borrow_and_update() != LinkState::Registered {
            assert!(Instant::now() < deadline, "the handler did not register within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        DemoHandler { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for DemoHandler {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `f` until it returns Some, within [`PATIENCE`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A port nothing listens on: bound by the OS, then closed.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn write_runtime_file(root: &Path, http: &str) -> PathBuf {
    let dir = root.join("deployments/default/run");
    std::fs::create_dir_all(&dir).expect("run dir");
    let file = dir.join("server.json");
    let doc =
        json!({"pid": 999_999, "http": http, "zmq": "tcp://127.0.0.1:1", "database": "x", "started_at": "x"});
    std::fs::write(&file, doc.to_string()).expect("runtime file");
    file
}

#[test]
fn the_server_is_found_from_the_flag_the_environment_and_the_runtime_file() {
    let server = Server::start();
    for out in [
        server.cli(&["handler", "list", "--json"]),
        cli(&["handler", "list", "--json", "--server", &server.http], &[]),
        cli(&["handler", "list", "--json"], &[("SCHEDULEZERO_URL", server.http.as_str())]),
        cli(&["handler", "list", "--json"], &[("SCHEDULEZERO_HOME", server.root().to_str().unwrap())]),
        // host:port alone means http.
        cli(&["handler", "list", "--json", "--server", server.http.trim_start_matches("http://")], &[]),
    ] {
        assert_eq!(out.json()["handlers"], json!([]), "{out:?}");
    }
    // The flag wins over the environment, which wins over the runtime file.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let out = cli(&["handler", "list", "--server", &server.http], &[("SCHEDULEZERO_URL", dead.as_str())]);
    assert_eq!(out.code, 0, "{out:?}");
    let root = server.root().to_str().unwrap();
    let out = cli(&["handler", "list", "--root", root], &[("SCHEDULEZERO_URL", dead.as_str())]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("SCHEDULEZERO_URL"), "{out:?}");
    assert_eq!(cli(&["handler", "list", "--root", root, "-d", "../x"], &[]).code, 2);
    assert_eq!(
        server.cli(&["handler", "list"]).ok().trim(),
        "no handlers have registered with this server yet"
    );
}

#[test]
fn an_unreachable_server_is_exit_3_naming_the_url_its_source_and_what_to_do() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = cli(&["schedule", "list", "--server", &url], &[]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: the server at ") && first.contains(&url), "{out:?}");
    assert!(first.contains("(from --server)") && first.contains("refused"), "{out:?}");
    assert!(out.stderr.contains("schedulezero serve"), "{out:?}");

    // A runtime file left behind by a server that died: the file is named.
    let root = tempfile::tempdir().unwrap();
    let file = write_runtime_file(root.path(), &url);
    let out = cli(&["run", "list", "--root", root.path().to_str().unwrap()], &[]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains(&file.display().to_string()) && out.stderr.contains("PID 999999"), "{out:?}");

    // Nothing at all: the default address, and the runtime file that was looked for.
    let empty = tempfile::tempdir().unwrap();
    let out = cli(&["run", "list", "--root", empty.path().to_str().unwrap()], &[]);
    if out.code == 3 {
        assert!(out.stderr.contains("http://127.0.0.1:8888 (the default"), "{out:?}");
        assert!(out.stderr.contains("no runtime file"), "{out:?}");
    }
}

#[test]
fn usage_errors_are_exit_2_before_any_request() {
    // The server named is unreachable: exit 2, not 3, proves nothing was sent.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let add = |extra: &[&str]| {
        let mut args =
            vec!["schedule", "add", "job", "--handler", "demo", "--method", "echo", "--server", &dead];
        args.extend(extra);
        cli(&args, &[])
    };
    for (extra, flag) in [
        (vec!["--every", "5m", "--params", "{not json"], "--params"),
        (vec!["--every", "5"], "--every"),
        (vec!["--at", "next tuesday"], "--at"),
        (vec!["--cron", "* *"], "--cron"),
        (vec!["--every", "5m", "--misfire", "later"], "--misfire"),
    ] {
        let out = add(&extra);
        assert_eq!(out.code, 2, "{extra:?}: {out:?}");
        assert!(out.stderr.starts_with(&format!("error: {flag}")), "{extra:?}: {out:?}");
    }
    // clap's own: no trigger, two triggers, an unknown flag.
    for extra in [vec![], vec!["--every", "5m", "--cron", "* * * * *"], vec!["--every", "5m", "--bogus"]] {
        assert_eq!(add(&extra).code, 2, "{extra:?}");
    }
    let out = cli(&["run", "list", "--state", "done", "--server", &dead], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("'done' is not a run state"), "{out:?}");
    assert_eq!(cli(&["schedule", "list", "--server", "ftp://x"], &[]).code, 2);
}

#[test]
fn schedules_are_added_listed_shown_paused_resumed_run_and_removed() {
    let server = Server::start();
    let _handler = DemoHandler::start(&server.zmq);

    // Three kinds of trigger; the confirmation names the schedule.
    let out = server.cli(&[
        "schedule",
        "add",
        "nightly",
        "--handler",
        "demo",
        "--method",
        "echo",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Europe/Paris",
        "--params",
        r#"{"format":"pdf"}"#,
        "--max-attempts",
        "5",
        "--misfire",
        "skip:30",
        "--overlap",
        "skip",
        "--timeout",
        "20",
    ]);
    assert!(out.ok().starts_with("added 'nightly' ("), "{out:?}");
    let every = server
        .cli(&[
            "schedule",
            "add",
            "poll",
            "--handler",
            "demo",
            "--method",
            "echo",
            "--every",
            "1h30m",
            "--json",
        ])
        .json();
    assert_eq!(every["name"], "poll");
    assert_eq!(every["state"], "active");
    assert_eq!(every["target"]["handler_id"], "demo");
    assert_eq!(every["trigger_spec"]["seconds"].as_f64(), Some(5400.0), "{every}");
    let at = server
        .cli(&[
            "schedule",
            "add",
            "once",
            "--handler",
            "demo",
            "--method",
            "echo",
            "--at",
            "2099-12-24 18:00",
            "--tz",
            "America/New_York",
            "--paused",
            "--json",
        ])
        .json();
    assert_eq!(at["state"], "paused");
    // A naive --at is read in --tz.
    assert_eq!(at["trigger_spec"]["run_date"], "2099-12-24T18:00:00-05:00", "{at}");

    // Policies and trigger reached the server as given.
    let nightly = server.cli(&["schedule", "show", "nightly", "--json"]).json();
    assert_eq!(nightly["timezone"], "Europe/Paris");
    assert_eq!(nightly["target"]["params"], json!({"format": "pdf"}));
    assert_eq!(nightly["policies"]["retry"]["max_attempts"], 5);
    assert_eq!(nightly["policies"]["misfire"], json!({"policy": "skip", "grace": 30.0}));
    assert_eq!(nightly["policies"]["overlap"], "skip");
    assert_eq!(nightly["policies"]["timeout"].as_f64(), Some(20.0));
    assert_eq!(nightly["recent_runs"], json!([]));
    let id = nightly["schedule_id"].as_str().expect("schedule_id").to_string();

    // The list: a table with a line per schedule, and JSON in the server's shape.
    let table = server.cli(&["schedule", "list"]);
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATE"), "{table:?}");
    for name in ["nightly", "poll", "once"] {
        assert!(lines.iter().any(|l| l.starts_with(&format!("{name} "))), "{name}: {table:?}");
    }
    let list = server.cli(&["schedule", "list", "--json"]).json();
    assert_eq!(list["count"], 3);
    assert_eq!(list["next_cursor"], Value::Null);
    let paused = server.cli(&["schedule", "list", "--state", "paused", "--json"]).json();
    let names: Vec<&str> =
        paused["schedules"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["once"]);
    // --limit follows pages and stops there.
    let limited = server.cli(&["schedule", "list", "--limit", "2", "--json"]).json();
    assert_eq!(limited["count"], 2);

    // Pause and resume, by name and by id.
    let out = server.cli(&["schedule", "pause", "nightly"]);
    assert!(out.ok().starts_with("paused 'nightly'"), "{out:?}");
    assert_eq!(server.cli(&["schedule", "show", &id, "--json"]).json()["state"], "paused");
    assert_eq!(server.cli(&["schedule", "resume", &id, "--json"]).json()["state"], "active");
    let human = server.cli(&["schedule", "show", "nightly"]);
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with("  ")).map(str::trim))
            .map(str::to_string)
    };
    assert_eq!(field(human.ok(), "state").as_deref(), Some("active"), "{human:?}");
    assert!(human.stdout.contains("skip (grace 30s)") && human.stdout.contains("demo.echo"), "{human:?}");

    // Run now: a run of the schedule appears and the handler completes it.
    let run = server.cli(&["schedule", "run", "nightly", "--json"]).json();
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(run["schedule_id"], id.as_str());
    let listed = server.cli(&["run", "list", "--schedule", "nightly", "--json"]).json();
    assert!(listed["runs"].as_array().unwrap().iter().any(|r| r["run_id"] == run_id.as_str()), "{listed}");
    let done = eventually("the run succeeds", || {
        let r = server.cli(&["run", "show", &run_id, "--json"]).json();
        (r["state"] == "succeeded").then_some(r)
    });
    assert_eq!(done["result"], json!({"format": "pdf"}));
    assert_eq!(done["attempts"][0]["outcome"], "succeeded");
    let shown = server.cli(&["run", "show", &run_id]);
    assert!(shown.ok().contains("attempts:") && shown.stdout.contains("demo-1"), "{shown:?}");
    let runs = server.cli(&["run", "list", "--state", "succeeded", "--since", "1h"]);
    assert!(runs.ok().lines().any(|l| l.starts_with(&run_id) && l.contains("succeeded")), "{runs:?}");
    let recent = server.cli(&["schedule", "show", "nightly"]);
    assert!(recent.ok().contains("recent runs:") && recent.stdout.contains(&run_id), "{recent:?}");

    // An --every schedule fired when it was added (an interval starts now).
    eventually("the interval's first run succeeds", || {
        let runs =
            server.cli(&["run", "list", "--schedule", "poll", "--state", "succeeded", "--json"]).json();
        (runs["count"] == 1).then_some(())
    });

    // Remove: gone afterwards (404 → exit 4).
    let out = server.cli(&["schedule", "rm", "poll"]);
    assert_eq!(out.ok().trim(), "removed 'poll'");
    let out = server.cli(&["schedule", "show", "poll"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert_eq!(server.cli(&["schedule", "list", "--json"]).json()["count"], 2);
}

#[test]
fn server_refusals_have_their_exit_codes_and_messages() {
    let server = Server::start();
    let _handler = DemoHandler::start(&server.zmq);

    // 404 → 4, the server's message on stderr, nothing on stdout.
    for args in [
        vec!["schedule", "show", "no-such"],
        vec!["schedule", "pause", "no-such"],
        vec!["schedule", "rm", "no-such"],
        vec!["schedule", "run", "no-such"],
        vec!["run", "show", "0193c4a2-7d1e-7b7a-9a57-3f2c9d1e8a10"],
        vec!["handler", "show", "no-such"],
    ] {
        let out = server.cli(&args);
        assert_eq!(out.code, 4, "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{args:?}: {out:?}");
        let named = args.last().copied().unwrap_or_default();
        assert!(out.stderr.contains(named), "the message names '{named}': {out:?}");
    }

    // 409 → 5: a name taken by a live schedule; cancelling a finished run.
    let add = ["schedule", "add", "dup", "--handler", "demo", "--method", "echo", "--every", "1h"];
    assert_eq!(server.cli(&add).code, 0);
    let out = server.cli(&add);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("dup"), "{out:?}");
    let run = server.cli(&["schedule", "run", "dup", "--json"]).json();
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    eventually("the run succeeds", || {
        let r = server.cli(&["run", "show", &run_id, "--json"]).json();
        (r["state"] == "succeeded").then_some(())
    });
    let out = server.cli(&["run", "cancel", &run_id]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("succeeded"), "{out:?}");

    // 400 → 1: the server's reason, naming the field.
    let out = server.cli(&[
        "schedule",
        "add",
        "x",
        "--handler",
        "demo",
        "--method",
        "echo",
        "--trigger",
        r#"{"type":"cron","hour":"25"}"#,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("hour"), "{out:?}");

    // A method no instance offers is accepted with a warning on stderr (handlers may come later).
    let out = server.cli(&["schedule", "add", "y", "--handler", "demo", "--method", "nope", "--every", "1h"]);
    assert!(out.ok().starts_with("added 'y'"), "{out:?}");
    assert!(out.stderr.starts_with("warning: ") && out.stderr.contains("'nope'"), "{out:?}");
}

#[test]
fn handlers_are_listed_and_shown_with_their_instances() {
    let server = Server::start();
    let _handler = DemoHandler::start(&server.zmq);
    let list = server.cli(&["handler", "list"]);
    let lines: Vec<&str> = list.ok().lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("METHODS"), "{list:?}");
    assert!(lines[1].starts_with("demo ") && lines[1].contains("1/1 connected"), "{list:?}");
    assert!(lines[1].contains("echo, fail"), "{list:?}");
    let json = server.cli(&["handler", "list", "--json"]).json();
    assert_eq!(json["handlers"][0]["id"], "demo");

    let show = server.cli(&["handler", "show", "demo", "--json"]).json();
    assert_eq!(show["instances"][0]["instance_id"], "demo-1");
    let human = server.cli(&["handler", "show", "demo"]);
    assert!(human.ok().contains("instances:"), "{human:?}");
    assert!(human.stdout.lines().any(|l| l.starts_with("demo-1") && l.contains("connected")), "{human:?}");
}

#[test]
fn a_run_can_be_cancelled_while_it_waits_for_a_handler() {
    let server = Server::start();
    // No handler 'ghost' has ever registered: the schedule is accepted, its runs wait.
    let added = server.cli(&[
        "schedule",
        "add",
        "later",
        "--handler",
        "ghost",
        "--method",
        "echo",
        "--cron",
        "0 0 1 1 *",
        "--json",
    ]);
    assert!(added.json()["warnings"][0].as_str().unwrap_or_default().contains("ghost"), "{added:?}");
    let run = server.cli(&["schedule", "run", "later", "--json"]).json();
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    let out = server.cli(&["run", "cancel", &run_id]);
    assert!(out.ok().starts_with(&format!("cancelled run {run_id}: now cancelled")), "{out:?}");
    assert_eq!(server.cli(&["run", "show", &run_id, "--json"]).json()["state"], "cancelled");
}
