//! The governor as users run it: the real `schedulezero` binary driving real processes (the
//! real server, `sleep`/`sh`/`python3` children) in a temp deployments root per test. Every
//! test's guard runs `down` and then kills, by PID and process group, whatever its deployments
//! recorded — also when an assertion fails.
//!
//! The helpers here are this file's own (a copy of the idea of support::Proc, not shared), so
//! the governor tests stay independent of the server tests' support module.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use schedulezero_host::{ProcessInfo, group_members, port_holders};
use serde_json::Value;

const SLACK: Duration = Duration::from_secs(60);

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_schedulezero"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SCHEDULEZERO_") || k == "NOTIFY_SOCKET") {
        cmd.env_remove(key);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A temp root with deployments; on drop, `down` for each, then SIGKILL to every recorded
/// process group and supervisor that still runs.
struct Root {
    dir: tempfile::TempDir,
    names: Vec<String>,
}

impl Root {
    fn new() -> Root {
        Root { dir: tempfile::tempdir().expect("tempdir"), names: Vec::new() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn dep(&self, name: &str) -> PathBuf {
        self.path().join("deployments").join(name)
    }

    /// Writes deployment `name`'s config.
    fn configure(&mut self, name: &str, toml: &str) {
        std::fs::create_dir_all(self.dep(name)).expect("deployment dir");
        std::fs::write(self.dep(name).join("schedulezero.toml"), toml).expect("config written");
        self.track(name);
    }

    fn track(&mut self, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
    }

    /// `schedulezero ARGS --root ROOT -d NAME`.
    fn run(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = bin();
        cmd.args(args).arg("--root").arg(self.path()).arg("-d").arg(name);
        cmd.output().expect("schedulezero runs")
    }

    fn up(&mut self, name: &str, extra: &[&str]) -> Output {
        self.track(name);
        let mut args = vec!["up", "--detach"];
        args.extend_from_slice(extra);
        self.run(name, &args)
    }

    fn up_ok(&mut self, name: &str, extra: &[&str]) -> String {
        let out = self.up(name, extra);
        assert!(out.status.success(), "up failed: {}", text(&out));
        text(&out)
    }

    fn status(&self, name: &str) -> Value {
        let out = self.run(name, &["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    fn process(&self, name: &str, process: &str) -> Value {
        let s = self.status(name);
        s["processes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == process).cloned())
            .unwrap_or_else(|| panic!("no process {process} in {s}"))
    }

    /// Polls `status` until `done` holds for the process.
    fn wait_process(&self, name: &str, process: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SLACK;
        loop {
            let p = self.process(name, process);
            if done(&p) {
                return p;
            }
            assert!(Instant::now() < deadline, "{process} never got {what}: {p}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every process of the deployment's recorded groups, plus its supervisor.
    fn live_processes(&self, name: &str) -> Vec<ProcessInfo> {
        let mut all = Vec::new();
        let run = self.dep(name).join("run");
        if let Some(r) = read_json(&run.join("governor.pid"))
            && let Some(p) = verified(&r)
        {
            all.push(p);
        }
        for entry in std::fs::read_dir(run.join("procs")).into_iter().flatten().flatten() {
            if let Some(s) = read_json(&entry.path())
                && let Some(pgid) = s["pgid"].as_u64()
            {
                all.extend(group_members(pgid as u32));
            }
        }
        all
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for name in self.names.clone() {
            let leftovers = self.live_processes(&name);
            let _ = self.run(&name, &["down"]);
            for p in leftovers.iter().filter(|p| p.is_alive()) {
                let _ = Command::new("kill").args(["-KILL", &format!("-{}", p.pid)]).status();
                let _ = Command::new("kill").args(["-KILL", &p.pid.to_string()]).status();
            }
        }
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn verified(record: &Value) -> Option<ProcessInfo> {
    let p = ProcessInfo {
        pid: record["pid"].as_u64()? as u32,
        start_ticks: record["start_ticks"].as_u64()?,
        cmdline: Vec::new(),
    };
    p.is_alive().then_some(p)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pid_of(p: &Value) -> u32 {
    p["pid"].as_u64().unwrap_or_else(|| panic!("no PID in {p}")) as u32
}

fn kill9(pid: u32) {
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill").success());
}

/// A process this test owns (killed on drop), its output lines collected.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("starts");
        let (tx, rx) = mpsc::channel();
        let pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc { child, lines: rx }
    }

    fn wait_line(&self, marker: &str) -> String {
        let deadline = Instant::now() + SLACK;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if line.contains(marker) {
                    return line;
                }
                seen.push(line);
            }
        }
        panic!("no line with '{marker}': {seen:?}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server plus a web backend (port handed over in $PORT) and a shell with a grandchild in
/// its group.
const FULL: &str = r#"
[server]
http = "127.0.0.1:0"
zmq = "tcp://127.0.0.1:0"

[process.server]
command = "schedulezero"
args = ["serve"]
server = true

[process.web]
command = "python3"
args = ["-m", "http.server", "${PORT}", "--bind", "127.0.0.1"]
ports = { PORT = 0 }
depends_on = ["server"]
readiness = { http = "http://127.0.0.1:${PORT}/" }
stop_timeout_s = 5

[process.family]
command = "sh"
args = ["-c", "sleep 1000 & echo family ready; wait"]
readiness = { log = "family ready" }
stop_timeout_s = 5
"#;

#[test]
fn up_status_down_leaves_no_process_and_no_port_behind() {
    let mut root = Root::new();
    root.configure("default", FULL);
    let out = root.up_ok("default", &[]);
    assert!(out.contains("is up in the background"), "{out}");

    let status = root.status("default");
    assert_eq!(status["supervisor"]["state"], "up", "{status}");
    let procs = status["processes"].as_array().expect("processes");
    let mut names: Vec<&str> = procs.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["family", "server", "web"]);
    for p in procs {
        assert_eq!(p["state"], "running", "{p}");
        assert!(p["memory_bytes"].as_u64().is_some_and(|m| m > 0), "memory is reported: {p}");
        assert!(p["cpu_percent"].as_f64().is_some(), "CPU is reported: {p}");
    }
    // The text table says the same.
    let table = String::from_utf8_lossy(&root.run("default", &["status"]).stdout).to_string();
    assert!(table.contains("PROCESS") && table.contains("MEMORY") && table.contains("web"), "{table}");

    // What runs: the supervisor, each process group (the shell's grandchild included), the
    // ports (the server's, read from its runtime file; the web backend's, from its state).
    let running = root.live_processes("default");
    assert!(running.len() >= 5, "supervisor, server, web, sh and its sleep: {running:?}");
    let family = root.process("default", "family");
    assert_eq!(group_members(pid_of(&family)).len(), 2, "sh and its sleep share a group");
    let runtime = read_json(&root.dep("default").join("run/server.json")).expect("runtime file");
    let port = |url: &str| url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("port");
    let mut ports =
        vec![port(runtime["http"].as_str().expect("http")), port(runtime["zmq"].as_str().expect("zmq"))];
    ports.push(root.process("default", "web")["ports"]["PORT"].as_u64().expect("web port") as u16);
    for p in &ports {
        assert!(!port_holders(*p).is_empty(), "port {p} is held while up");
    }
    let listing = String::from_utf8_lossy(&root.run("default", &["ports"]).stdout).to_string();
    assert!(listing.contains("(this deployment)"), "{listing}");

    let out = root.run("default", &["down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is down"), "{}", text(&out));
    for p in &running {
        assert!(!p.is_alive(), "PID {} ({:?}) survived down", p.pid, p.cmdline);
    }
    for p in &ports {
        assert!(port_holders(*p).is_empty(), "port {p} is still held after down");
    }
    let run = root.dep("default").join("run");
    assert!(!run.join("governor.pid").exists() && !run.join("governor.sock").exists());
    assert_eq!(std::fs::read_dir(run.join("procs")).map(|d| d.count()).unwrap_or(0), 0, "no state left");
    assert_eq!(root.status("default")["supervisor"]["state"], "down");
}

#[test]
fn a_killed_child_is_restarted_with_backoff_and_a_crash_loop_keeps_being_retried() {
    let mut root = Root::new();
    root.configure(
        "default",
        r#"
[process.steady]
command = "sleep"
args = ["1000"]
restart = { initial_delay_ms = 2000, max_delay_ms = 5000 }

[process.crashy]
command = "sh"
args = ["-c", "echo starting; exit 3"]
restart = { initial_delay_ms = 50, max_delay_ms = 200 }
"#,
    );
    root.up_ok("default", &[]);
    let before = root.process("default", "steady");
    let old = pid_of(&before);
    kill9(old);
    // Seen backing off first (for 2 s: long enough to catch on a busy machine), then running again.
    let backing = root.wait_process("default", "steady", "backoff", |p| p["state"] == "backoff");
    assert_eq!(backing["last_exit"], "signal 9 (SIGKILL)", "{backing}");
    assert!(backing["next_start_in_ms"].as_u64().is_some(), "{backing}");
    let again = root.wait_process("default", "steady", "a new PID", |p| {
        p["state"] == "running" && p["pid"].as_u64().is_some_and(|pid| pid as u32 != old)
    });
    assert_eq!(again["restarts"], 1, "{again}");

    // A process that always fails is reported as a crash loop and retried all the same.
    let looping = root.wait_process("default", "crashy", "a crash loop", |p| p["crash_loop"] == true);
    let seen = looping["restarts"].as_u64().expect("restarts");
    root.wait_process("default", "crashy", "more retries", |p| {
        p["restarts"].as_u64().is_some_and(|r| r > seen + 2)
    });
    assert_eq!(root.process("default", "crashy")["last_exit"], "exit 3");
    let table = String::from_utf8_lossy(&root.run("default", &["status"]).stdout).to_string();
    assert!(table.contains("crash loop"), "{table}");
}

#[test]
fn after_the_supervisor_is_killed_down_still_stops_the_children_and_up_cleans_the_stale_state() {
    let mut root = Root::new();
    root.configure(
        "default",
        r#"
[process.a]
command = "sh"
args = ["-c", "sleep 1000 & wait"]

[process.b]
command = "sleep"
args = ["1000"]
depends_on = ["a"]
"#,
    );
    root.up_ok("default", &[]);
    let supervisor = read_json(&root.dep("default").join("run/governor.pid")).expect("PID file");
    let children: Vec<ProcessInfo> = root
        .live_processes("default")
        .into_iter()
        .filter(|p| u64::from(p.pid) != supervisor["pid"])
        .collect();
    assert_eq!(children.len(), 3, "{children:?}");
    kill9(supervisor["pid"].as_u64().expect("pid") as u32);
    let deadline = Instant::now() + SLACK;
    while root.status("default")["supervisor"]["state"] != "gone" {
        assert!(Instant::now() < deadline, "status never reported the supervisor gone");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(children.iter().all(ProcessInfo::is_alive), "the children outlive their supervisor");
    let out = root.run("default", &["down"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("is gone") && said.contains("stopped a") && said.contains("stopped b"), "{said}");
    for c in &children {
        assert!(!c.is_alive(), "PID {} survived down", c.pid);
    }

    // Again, but this time `up` meets the stale state: it cleans it, then starts afresh.
    root.up_ok("default", &[]);
    let supervisor = read_json(&root.dep("default").join("run/governor.pid")).expect("PID file");
    let old: Vec<ProcessInfo> = root
        .live_processes("default")
        .into_iter()
        .filter(|p| u64::from(p.pid) != supervisor["pid"])
        .collect();
    kill9(supervisor["pid"].as_u64().expect("pid") as u32);
    std::thread::sleep(Duration::from_millis(200));
    let out = root.up("default", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let log = std::fs::read_to_string(root.dep("default").join("logs/governor.log")).expect("governor log");
    assert!(log.contains("is gone: cleaning what it left") && log.contains("stopped b"), "{log}");
    for c in &old {
        assert!(!c.is_alive(), "the stale PID {} was not stopped", c.pid);
    }
    assert_eq!(root.process("default", "b")["state"], "running");

    // A second `up` of a running deployment is refused, naming the live supervisor.
    let live = read_json(&root.dep("default").join("run/governor.pid")).expect("PID file");
    let out = root.up("default", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("already up") && err.contains(&format!("PID {}", live["pid"])), "{err}");
}

#[test]
fn a_foreign_process_holding_a_configured_port_makes_up_refuse_naming_its_pid() {
    let mut root = Root::new();
    let (holder, port) = listener(&[]);
    root.configure(
        "default",
        &format!(
            r#"
[process.first]
command = "sleep"
args = ["1000"]

[process.web]
command = "sleep"
args = ["1000"]
ports = {{ PORT = {port} }}
"#
        ),
    );
    let out = root.up("default", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains(&format!("port {port}")) && err.contains(&format!("PID {}", holder.child.id())),
        "{err}"
    );
    assert!(err.contains("python3"), "its command line is named: {err}");
    // Nothing was started half-way, and the holder was left alone.
    assert!(root.live_processes("default").is_empty());
    assert!(!root.dep("default").join("logs/first.log").exists(), "first was not started");
    assert!(ProcessInfo::of(holder.child.id()).is_some());
}

#[test]
fn two_deployments_from_init_run_side_by_side_with_auto_ports() {
    let mut root = Root::new();
    for name in ["alpha", "beta"] {
        let mut init = bin();
        let out = init.args(["init", name, "--root"]).arg(root.path()).output().expect("init");
        assert!(out.status.success(), "{}", text(&out));
        root.track(name);
    }
    let again = bin().args(["init", "alpha", "--root"]).arg(root.path()).output().expect("init");
    assert!(!again.status.success(), "init does not overwrite");

    root.up_ok("alpha", &["--auto-ports"]);
    root.up_ok("beta", &["--auto-ports"]);
    let mut seen = Vec::new();
    for name in ["alpha", "beta"] {
        let rt = read_json(&root.dep(name).join("run/server.json")).expect("runtime file");
        let http = rt["http"].as_str().expect("http").to_string();
        let zmq = rt["zmq"].as_str().expect("zmq").to_string();
        let auto = read_json(&root.dep(name).join("run/auto-ports.json")).expect("auto ports recorded");
        assert_eq!(http, format!("http://127.0.0.1:{}", auto["assigned"]["server.http"]), "{auto}");
        assert_eq!(zmq, format!("tcp://127.0.0.1:{}", auto["assigned"]["server.zmq"]), "{auto}");
        let (status, body) = get(&http, "/api/health");
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{name}: {body}");
        seen.push((auto["first"].as_u64().expect("first"), auto["size"].as_u64().expect("size")));
    }
    // A crashed server is restarted on the same ports, so handlers find it again.
    let before = read_json(&root.dep("alpha").join("run/server.json")).expect("runtime file");
    let server = pid_of(&root.process("alpha", "server"));
    kill9(server);
    root.wait_process("alpha", "server", "a restart", |p| {
        p["state"] == "running" && p["pid"].as_u64().is_some_and(|pid| pid as u32 != server)
    });
    let after = read_json(&root.dep("alpha").join("run/server.json")).expect("runtime file again");
    assert_eq!((&after["http"], &after["zmq"]), (&before["http"], &before["zmq"]));
    assert_ne!(after["pid"], before["pid"]);
    let ((a, an), (b, bn)) = (seen[0], seen[1]);
    assert!(a + an <= b || b + bn <= a, "blocks overlap: {seen:?}");
    let out = bin().args(["ports", "--root"]).arg(root.path()).output().expect("ports");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("alpha") && listing.contains("beta") && !listing.contains("conflict"),
        "{listing}"
    );
}

#[test]
fn config_errors_are_refused_with_file_line_and_key_and_nothing_starts() {
    let cases = [
        (
            "[process.a]\ncommand = \"sleep\"\nargs = [\"1000\"]\nrestrat = { policy = \"always\" }\n",
            "line 4",
            "restrat",
        ),
        ("[process.a]\ncommand = \"sleep\"\n\n[proces.b]\ncommand = \"x\"\n", "line 4", "proces"),
        ("[process.a]\ncommand = \"sleep\"\n\n[process.b]\nargs = [\"1\"]\n", "line 4", "command"),
        (
            "[process.a]\ncommand = \"sleep\"\ndepends_on = [\"b\"]\n\n[process.b]\ncommand = \"sleep\"\ndepends_on = [\"a\"]\n",
            "line 1",
            "dependency cycle: a → b → a",
        ),
        ("[process.a]\ncommand = \"sleep\"\ndepends_on = [\"nope\"]\n", "line 3", "process.a.depends_on"),
    ];
    for (toml, line, key) in cases {
        let mut root = Root::new();
        root.configure("default", toml);
        let out = root.up("default", &[]);
        assert!(!out.status.success(), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            err.contains("schedulezero.toml") && err.contains(line) && err.contains(key),
            "{toml}\n→ {err}"
        );
        assert!(!root.dep("default").join("run/governor.pid").exists(), "nothing started: {err}");
        assert!(!root.dep("default").join("logs/a.log").exists(), "nothing started: {err}");
    }
}

#[test]
fn reload_adds_and_removes_processes_without_touching_the_others_and_restart_replaces_one() {
    let mut root = Root::new();
    let base = "[process.keep]\ncommand = \"sleep\"\nargs = [\"1000\"]\n\n[process.other]\ncommand = \"sleep\"\nargs = [\"1001\"]\n";
    root.configure("default", &format!("{base}\n[process.gone]\ncommand = \"sleep\"\nargs = [\"1002\"]\n"));
    root.up_ok("default", &[]);
    let keep = pid_of(&root.process("default", "keep"));
    let other = pid_of(&root.process("default", "other"));
    let gone = pid_of(&root.process("default", "gone"));

    // A broken edit is refused and changes nothing.
    root.configure("default", &format!("{base}\n[process.new]\ncomand = \"x\"\n"));
    let out = root.run("default", &["reload"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing changed"), "{}", text(&out));
    assert_eq!(pid_of(&root.process("default", "gone")), gone);

    root.configure(
        "default",
        &format!("{base}\n[process.new]\ncommand = \"sh\"\nargs = [\"-c\", \"echo new up; exec sleep 1000\"]\nreadiness = {{ log = \"new up\" }}\n"),
    );
    let out = root.run("default", &["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("added new") && said.contains("removed gone"), "{said}");
    assert_eq!(pid_of(&root.process("default", "keep")), keep, "keep untouched");
    assert_eq!(pid_of(&root.process("default", "other")), other, "other untouched");
    assert_eq!(root.process("default", "new")["state"], "running");
    assert!(!ProcessInfo::of(gone).is_some_and(|p| p.cmdline.iter().any(|a| a == "1002")), "gone stopped");
    let names: Vec<String> = root.status("default")["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    assert!(!names.contains(&"gone".to_string()), "{names:?}");

    let out = root.run("default", &["restart", "other"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(pid_of(&root.process("default", "other")), other, "other has a new PID");
    assert_eq!(pid_of(&root.process("default", "keep")), keep, "keep still untouched");
    let out = root.run("default", &["restart", "nope"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no process 'nope'"));
}

#[test]
fn logs_are_written_per_process_and_rotated_by_size() {
    let mut root = Root::new();
    root.configure(
        "default",
        r#"
[governor]
log_max_size = "2KB"
log_keep = 2

[process.chatty]
command = "python3"
args = ["-u", "-c", "import time\nfor i in range(400): print(f'line {i:04d} ' + 'x' * 40)\nprint('done writing')\ntime.sleep(1000)"]
readiness = { log = "done writing" }

[process.ticker]
command = "python3"
args = ["-u", "-c", "import time\ni = 0\nwhile True:\n    print(f'tick {i:05d} ' + 'y' * 80)\n    i += 1\n    time.sleep(0.03)"]
"#,
    );
    root.up_ok("default", &[]);
    let logs = root.dep("default").join("logs");
    let deadline = Instant::now() + SLACK;
    while !std::fs::read_to_string(logs.join("chatty.log")).unwrap_or_default().contains("done writing") {
        assert!(Instant::now() < deadline, "the last line never reached the log");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut files: Vec<String> = std::fs::read_dir(&logs)
        .expect("logs dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chatty"))
        .collect();
    files.sort();
    assert_eq!(files, ["chatty.log", "chatty.log.1", "chatty.log.2"], "two rotated files kept");
    for f in &files {
        let len = std::fs::metadata(logs.join(f)).expect("meta").len();
        assert!(len <= 2048 + 100, "{f} is {len} bytes");
    }
    let out = root.run("default", &["logs", "chatty", "-n", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(printed.contains("line 0399") && printed.contains("done writing"), "{printed}");
    assert_eq!(printed.lines().count(), 2, "{printed}");

    // `logs -f` goes on across rotations: a ticker's lines come out once each, in order.
    let mut follow = bin();
    follow.args(["logs", "ticker", "-f", "-n", "1", "--root"]).arg(root.path());
    let follower = Proc::spawn(follow);
    let ticks: Vec<u32> = (0..60)
        .map(|_| {
            let line = follower.wait_line("tick ");
            line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("tick number")
        })
        .collect();
    let expected: Vec<u32> = (ticks[0]..ticks[0] + 60).collect();
    assert_eq!(ticks, expected, "no line lost or repeated while following");
    let rotated = std::fs::read_to_string(logs.join("ticker.log.1")).expect("the ticker's log rotated");
    assert!(rotated.contains("tick "), "{rotated}");
}

#[test]
fn ctrl_c_on_a_foreground_up_stops_everything_and_systemd_hears_ready_and_stopping() {
    let mut root = Root::new();
    root.configure(
        "default",
        r#"
[server]
http = "127.0.0.1:0"
zmq = "tcp://127.0.0.1:0"

[process.server]
command = "schedulezero"
args = ["serve"]
server = true

[process.legacy]
command = "python3"
args = ["-u", "HANDLER", "${SCHEDULEZERO_SERVER_ENDPOINT}", "legacy", "calls.log"]
depends_on = ["server"]
readiness = { handler = "legacy" }
"#
        .replace(
            "HANDLER",
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../transport/tests/support/v1_handler.py")
                .display()
                .to_string(),
        )
        .as_str(),
    );
    let socket_path = root.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).expect("notify socket");
    notify.set_read_timeout(Some(SLACK)).expect("timeout");
    let mut up = bin();
    up.args(["up", "--root"]).arg(root.path()).env("NOTIFY_SOCKET", &socket_path);
    let mut fg = Proc::spawn(up);
    fg.wait_line("is up");
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 from the governor");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means registered: the handler found the server through the environment alone.
    let runtime = read_json(&root.dep("default").join("run/server.json")).expect("runtime");
    let (_, handlers) = get(runtime["http"].as_str().expect("http"), "/api/handlers");
    assert_eq!(handlers["handlers"][0]["id"], "legacy", "{handlers}");
    let running = root.live_processes("default");

    nix_kill(fg.child.id(), "-INT");
    let n = notify.recv(&mut buf).expect("STOPPING=1 from the governor");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let deadline = Instant::now() + SLACK;
    let status = loop {
        if let Some(s) = fg.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "up did not exit on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    for p in &running {
        assert!(!p.is_alive(), "PID {} survived Ctrl-C", p.pid);
    }
}

#[test]
fn the_server_notifies_systemd_when_bound_and_when_stopping_and_the_unit_is_type_notify() {
    let root = Root::new();
    let socket_path = root.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).expect("notify socket");
    notify.set_read_timeout(Some(SLACK)).expect("timeout");
    let mut serve = bin();
    serve
        .args(["serve", "--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0", "--root"])
        .arg(root.path())
        .env("NOTIFY_SOCKET", &socket_path);
    let mut server = Proc::spawn(serve);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(root.dep("default").join("run/server.json").exists(), "ready means bound and published");
    nix_kill(server.child.id(), "-TERM");
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(server.child.wait().expect("exit").success());

    let out = bin().args(["systemd-unit", "-d", "prod", "--root"]).arg(root.path()).output().expect("unit");
    let unit = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        unit.contains("Type=notify") && unit.contains(" serve --root ") && unit.contains("-d prod"),
        "{unit}"
    );
}

fn nix_kill(pid: u32, signal: &str) {
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill").success());
}

/// One GET over plain TCP: (status, JSON body).
fn get(base: &str, path: &str) -> (u16, Value) {
    use std::io::Write;
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(SLACK)).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A python listener on a free port; `env` marks it (or not) as a process of a deployment.
fn listener(env: &[(&str, &Path)]) -> (Proc, u16) {
    let mut c = Command::new("python3");
    c.args([
        "-u",
        "-c",
        "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print('port', s.getsockname()[1]); time.sleep(300)",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    let p = Proc::spawn(c);
    let port = p.wait_line("port ").trim_start_matches("port ").trim().parse().expect("port number");
    (p, port)
}

#[test]
fn a_stale_process_of_the_deployment_holding_its_port_is_stopped_by_up() {
    let mut root = Root::new();
    // Left over from an earlier run of this deployment: its environment says whose it is.
    let dep = PathBuf::from("default");
    let (stale, port) = listener(&[("SCHEDULEZERO_HOME", root.path()), ("SCHEDULEZERO_DEPLOYMENT", &dep)]);
    root.configure(
        "default",
        &format!("[process.web]\ncommand = \"sleep\"\nargs = [\"1000\"]\nports = {{ PORT = {port} }}\n"),
    );
    root.up_ok("default", &[]);
    let log = std::fs::read_to_string(root.dep("default").join("logs/governor.log")).expect("governor log");
    assert!(
        log.contains(&format!("stopped PID {}", stale.child.id()))
            && log.contains("stale process of this deployment"),
        "{log}"
    );
    assert!(ProcessInfo::of(stale.child.id()).is_none(), "the stale holder is gone");
    assert_eq!(root.process("default", "web")["ports"]["PORT"], port);
}

#[test]
fn ports_free_stops_the_holder_with_yes_and_refuses_without_a_terminal() {
    let root = Root::new();
    let (holder, port) = listener(&[]);
    let out = bin().args(["ports", "free", &port.to_string()]).output().expect("ports free");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"), "{}", text(&out));
    assert!(ProcessInfo::of(holder.child.id()).is_some(), "left alone without confirmation");
    let out = bin()
        .args(["ports", "free", &port.to_string(), "--yes", "--root"])
        .arg(root.path())
        .output()
        .expect("ports free");
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains(&format!("PID {}", holder.child.id())) && said.contains("stopped"), "{said}");
    assert!(port_holders(port).is_empty(), "port {port} is free");
}

#[test]
fn ports_lists_each_deployments_ports_and_the_conflicts_between_them() {
    let mut root = Root::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    for name in ["one", "two"] {
        root.configure(
            name,
            &format!("[process.web]\ncommand = \"sleep\"\nargs = [\"1000\"]\nports = {{ PORT = {port} }}\n"),
        );
    }
    let out = bin().args(["ports", "--root"]).arg(root.path()).output().expect("ports");
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("one") && listing.contains("two") && listing.contains("process web PORT"),
        "{listing}"
    );
    assert!(listing.contains(&format!("conflict: port {port}: deployment 'one'")), "{listing}");
    let only = bin().args(["ports", "-d", "one", "--root"]).arg(root.path()).output().expect("ports -d");
    let listing = String::from_utf8_lossy(&only.stdout).to_string();
    assert!(listing.contains("one") && !listing.contains("two"), "{listing}");
}

#[test]
fn a_python_sdk_handler_finds_the_server_through_the_environment_alone() {
    let mut root = Root::new();
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python");
    root.configure(
        "default",
        &format!(
            r#"
[server]
http = "127.0.0.1:0"
zmq = "tcp://127.0.0.1:0"

[process.server]
command = "schedulezero"
args = ["serve"]
server = true

[process.reports]
command = "python3"
args = ["-u", "{example}"]
env = {{ PYTHONPATH = "{src}" }}
depends_on = ["server"]
readiness = {{ handler = "reports" }}
"#,
            example = sdk.join("examples/reports_handler.py").display(),
            src = sdk.join("src").display()
        ),
    );
    root.up_ok("default", &[]);
    let runtime = read_json(&root.dep("default").join("run/server.json")).expect("runtime");
    let (_, handlers) = get(runtime["http"].as_str().expect("http"), "/api/handlers");
    let reports = handlers["handlers"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["id"] == "reports"))
        .cloned()
        .unwrap_or_else(|| panic!("reports is not registered: {handlers}"));
    assert_eq!(reports["status"], "Connected", "{reports}");
    let log = std::fs::read_to_string(root.dep("default").join("logs/reports.log")).expect("its log");
    assert!(
        log.contains(runtime["zmq"].as_str().expect("zmq")),
        "it connected to the endpoint it was given: {log}"
    );
}

#[test]
fn the_built_in_exec_handler_runs_under_the_governor_and_registers() {
    let mut root = Root::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/exec.toml");
    root.configure(
        "default",
        &format!(
            r#"
[server]
http = "127.0.0.1:0"
zmq = "tcp://127.0.0.1:0"

[process.server]
command = "schedulezero"
args = ["serve"]
server = true

[process.exec]
command = "schedulezero"
args = ["handler", "exec", "--config", "{}"]
depends_on = ["server"]
readiness = {{ handler = "shell" }}
"#,
            example.display()
        ),
    );
    root.up_ok("default", &[]);
    let runtime = read_json(&root.dep("default").join("run/server.json")).expect("runtime");
    let (_, handlers) = get(runtime["http"].as_str().expect("http"), "/api/handlers");
    assert!(
        handlers["handlers"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["id"] == "shell" && h["status"] == "Connected")),
        "{handlers}"
    );
    // It drains on the governor's SIGTERM: down leaves it exited, not killed.
    let out = root.run("default", &["down"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("is down"), "{said}");
    let log = std::fs::read_to_string(root.dep("default").join("logs/exec.log")).expect("its log");
    assert!(log.contains("[governor] exec stopped: exit 0"), "{log}");
}
