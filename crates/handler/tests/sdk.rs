//! The SDK against a real ZeroMQ ROUTER playing the server, over TCP on a port the OS picks. The
//! handler runs in this process through `run_until`; the test thread speaks the native protocol
//! by hand (`SZ1` + JSON frames) so it checks the wire as a server sees it.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use schedulezero_handler::{CallContext, Handler, LinkState, MethodError, RunError};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// How long to wait for anything expected well within a second (the machine is shared).
const PATIENCE: Duration = Duration::from_secs(10);

/// A ROUTER socket standing in for the server.
struct Server {
    router: zmq::Socket,
    endpoint: String,
}

impl Server {
    fn bind(endpoint: &str) -> zmq::Result<Server> {
        let router = zmq::Context::new().socket(zmq::ROUTER)?;
        router.set_linger(0)?;
        router.bind(endpoint)?;
        let endpoint = router.get_last_endpoint()?.expect("endpoint is UTF-8");
        Ok(Server { router, endpoint })
    }

    fn on_any_port() -> Server {
        Server::bind("tcp://127.0.0.1:0").expect("bind a ROUTER")
    }

    /// The next message and who sent it, or `None` after `timeout`.
    fn try_recv(&self, timeout: Duration) -> Option<(Vec<u8>, Value)> {
        if self.router.poll(zmq::POLLIN, timeout.as_millis() as i64).expect("poll") == 0 {
            return None;
        }
        let frames = self.router.recv_multipart(0).expect("recv");
        assert_eq!(frames.len(), 3, "routing id, signature, JSON: {frames:?}");
        assert_eq!(frames[1], b"SZ1");
        let body = serde_json::from_slice(&frames[2]).expect("a JSON body");
        Some((frames[0].clone(), body))
    }

    /// The next message of type `kind`, skipping heartbeats only (anything else fails the test).
    fn expect(&self, kind: &str) -> (Vec<u8>, Value) {
        let until = Instant::now() + PATIENCE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some((peer, msg)) = self.try_recv(left) else {
                panic!("no '{kind}' within {PATIENCE:?}");
            };
            match msg["type"].as_str() {
                Some(t) if t == kind => return (peer, msg),
                Some("heartbeat") => continue,
                _ => panic!("expected '{kind}', got {msg}"),
            }
        }
    }

    fn send(&self, peer: &[u8], msg: Value) {
        self.router.send_multipart([peer, b"SZ1", msg.to_string().as_bytes()], 0).expect("send");
    }

    /// Waits for the hello and welcomes it; returns the handler's routing id and the hello.
    fn register(&self, heartbeat_ms: u64) -> (Vec<u8>, Value) {
        let (peer, hello) = self.expect("hello");
        self.send(
            &peer,
            json!({"type": "welcome", "heartbeat_ms": heartbeat_ms, "max_frame_bytes": 4194304, "server": "test"}),
        );
        (peer, hello)
    }

    fn call(&self, peer: &[u8], method: &str, params: Value) -> Uuid {
        let run_id = Uuid::now_v7();
        self.send(peer, call(run_id, 1, method, params, 30_000));
        run_id
    }
}

fn call(run_id: Uuid, attempt: u32, method: &str, params: Value, deadline_ms: u64) -> Value {
    json!({
        "type": "call", "run_id": run_id, "attempt": attempt, "scheduled_for": "2030-01-01T08:00:00Z",
        "method": method, "params": params, "deadline_ms": deadline_ms,
    })
}

/// The handler under test, running on its own runtime.
struct Running {
    runtime: tokio::runtime::Runtime,
    shutdown: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), RunError>>,
    status: watch::Receiver<LinkState>,
}

impl Running {
    fn start(handler: Handler, endpoint: &str) -> Running {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let status = handler.status();
        let (shutdown, stop) = oneshot::channel::<()>();
        let endpoint = endpoint.to_string();
        let done = runtime.spawn(async move {
            handler
                .run_until(&endpoint, async move {
                    let _ = stop.await;
                })
                .await
        });
        Running { runtime, shutdown: Some(shutdown), done, status }
    }

    fn wait_for_state(&mut self, want: LinkState) {
        let mut status = self.status.clone();
        let reached = self.runtime.block_on(async {
            tokio::time::timeout(PATIENCE, status.wait_for(|s| *s == want)).await.map(|r| r.is_ok())
        });
        assert_eq!(reached, Ok(true), "state {want:?} not reached; now {:?}", *self.status.borrow());
    }

    fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Asks for the drain and waits until `run_until` has returned.
    fn stop(mut self) {
        self.begin_shutdown();
        let joined = self.runtime.block_on(async { tokio::time::timeout(PATIENCE, &mut self.done).await });
        joined.expect("run_until returns after the drain").expect("no panic").expect("run_until is Ok");
        assert_eq!(*self.status.borrow(), LinkState::Closed);
    }
}

/// The handler the tests serve: `echo`; `inspect` (what the context says); `wait` (until
/// cancelled, reporting that it saw the cancellation); `slow` (300 ms, announcing its start).
fn handler(capacity: u32, started: std_mpsc::Sender<Uuid>) -> Handler {
    Handler::builder("tests")
        .instance_id("test-instance")
        .capacity(capacity)
        .method("echo", |_, params| async move { Ok::<_, MethodError>(params) })
        .method("inspect", |ctx: CallContext, _| async move {
            Ok::<_, MethodError>(json!({
                "run_id": ctx.run_id(), "attempt": ctx.attempt(), "scheduled_for": ctx.scheduled_for(),
                "deadline_ms_left": ctx.time_left().as_millis() as u64,
            }))
        })
        .method("wait", |ctx: CallContext, _| async move {
            ctx.cancelled().await;
            Err::<(), _>(MethodError::new("wait saw the cancellation"))
        })
        .method("slow", move |ctx: CallContext, _| {
            let started = started.clone();
            async move {
                let _ = started.send(ctx.run_id());
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, MethodError>(json!("slept"))
            }
        })
        .build()
        .expect("a valid handler")
}

fn start(capacity: u32) -> (Server, Running, std_mpsc::Receiver<Uuid>) {
    let server = Server::on_any_port();
    let (started, starts) = std_mpsc::channel();
    let running = Running::start(handler(capacity, started), &server.endpoint);
    (server, running, starts)
}

#[test]
fn hello_declares_methods_capacity_and_instance_id() {
    let (server, running, _) = start(3);
    let (_, hello) = server.expect("hello");
    assert_eq!(hello["handler_id"], "tests");
    assert_eq!(hello["instance_id"], "test-instance");
    assert_eq!(hello["methods"], json!(["echo", "inspect", "slow", "wait"]));
    assert_eq!(hello["capacity"], 3);
    assert!(hello["agent"].as_str().unwrap().starts_with("schedulezero-handler/"), "{hello}");
    assert!(hello.get("credential").is_none(), "{hello}");
    running.stop();
}

#[test]
fn welcome_then_heartbeats_arrive_at_the_server_chosen_interval() {
    let (server, mut running, _) = start(1);
    server.register(100);
    running.wait_for_state(LinkState::Registered);
    let (_, first) = server.expect("heartbeat");
    assert_eq!(first["in_flight"], 0);
    let since_first = Instant::now();
    for _ in 0..4 {
        server.expect("heartbeat");
    }
    let four_intervals = since_first.elapsed();
    // Nominally 400 ms; the bounds leave room for a busy machine yet tell 100 ms from the
    // 1 s default and from a flood.
    assert!(
        four_intervals >= Duration::from_millis(300),
        "4 heartbeats 100 ms apart took {four_intervals:?}"
    );
    assert!(four_intervals < Duration::from_secs(3), "heartbeats too slow: {four_intervals:?}");
    running.stop();
}

#[test]
fn a_call_is_answered_and_its_context_reaches_the_method() {
    let (server, running, _) = start(1);
    let (peer, _) = server.register(1000);
    let run_id = Uuid::now_v7();
    server.send(&peer, call(run_id, 3, "inspect", json!({}), 30_000));
    let (_, result) = server.expect("result");
    assert_eq!(result["run_id"], json!(run_id));
    assert_eq!(result["attempt"], 3);
    assert_eq!(result["success"], true, "{result}");
    let seen = &result["result"];
    assert_eq!(seen["run_id"], json!(run_id));
    assert_eq!(seen["attempt"], 3);
    let scheduled_for: DateTime<Utc> = serde_json::from_value(seen["scheduled_for"].clone()).unwrap();
    assert_eq!(scheduled_for, "2030-01-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap());
    let left = seen["deadline_ms_left"].as_u64().unwrap();
    assert!((20_000..=30_000).contains(&left), "deadline_ms_left {left}");

    let echo = server.call(&peer, "echo", json!({"n": 1}));
    let (_, result) = server.expect("result");
    assert_eq!((&result["run_id"], &result["result"]), (&json!(echo), &json!({"n": 1})));
    assert!(result.get("refused").is_none(), "{result}");
    running.stop();
}

#[test]
fn beyond_capacity_a_call_is_refused() {
    let (server, running, _) = start(2);
    let (peer, _) = server.register(1000);
    let first = server.call(&peer, "wait", json!({}));
    let second = server.call(&peer, "wait", json!({}));
    let third = server.call(&peer, "wait", json!({}));
    let (_, refused) = server.expect("result");
    assert_eq!(refused["run_id"], json!(third));
    assert_eq!((&refused["success"], &refused["refused"]), (&json!(false), &json!(true)), "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("capacity"), "{refused}");
    for run_id in [first, second] {
        server.send(&peer, json!({"type": "cancel", "run_id": run_id, "attempt": 1}));
    }
    let mut cancelled: Vec<Value> = (0..2).map(|_| server.expect("result").1["run_id"].clone()).collect();
    cancelled.sort_by_key(|v| v.to_string());
    let mut expected = vec![json!(first), json!(second)];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(cancelled, expected);
    running.stop();
}

#[test]
fn an_unknown_method_fails_naming_it() {
    let (server, running, _) = start(1);
    let (peer, _) = server.register(1000);
    let run_id = server.call(&peer, "nope", json!({}));
    let (_, result) = server.expect("result");
    assert_eq!(result["run_id"], json!(run_id));
    assert_eq!(result["success"], false);
    assert!(result.get("refused").is_none(), "a real failure, not a refusal: {result}");
    assert_eq!(result["error"], "unknown method 'nope'; this instance offers: echo, inspect, slow, wait");
    running.stop();
}

#[test]
fn cancel_reaches_the_method_and_the_result_reports_it() {
    let (server, running, _) = start(1);
    let (peer, _) = server.register(1000);
    let run_id = server.call(&peer, "wait", json!({}));
    let sent = Instant::now();
    server.send(&peer, json!({"type": "cancel", "run_id": run_id, "attempt": 1}));
    let (_, result) = server.expect("result");
    assert_eq!(result["run_id"], json!(run_id));
    assert_eq!(result["success"], false);
    assert_eq!(result["error"], "wait saw the cancellation");
    assert!(sent.elapsed() < Duration::from_secs(2), "answered before the grace period ran out");
    running.stop();
}

#[test]
fn the_deadline_cancels_the_call() {
    let (server, running, _) = start(1);
    let (peer, _) = server.register(1000);
    let run_id = Uuid::now_v7();
    server.send(&peer, call(run_id, 1, "wait", json!({}), 50));
    let (_, result) = server.expect("result");
    assert_eq!((&result["run_id"], &result["error"]), (&json!(run_id), &json!("wait saw the cancellation")));
    running.stop();
}

#[test]
fn hello_again_brings_a_new_hello() {
    let (server, mut running, _) = start(1);
    let (peer, first) = server.register(1000);
    running.wait_for_state(LinkState::Registered);
    server.send(&peer, json!({"type": "hello_again"}));
    let (_, again) = server.expect("hello");
    assert_eq!(again, first);
    running.wait_for_state(LinkState::Connecting);
    server.register(1000);
    running.wait_for_state(LinkState::Registered);
    running.stop();
}

#[test]
fn a_refused_hello_is_retried() {
    let (server, mut running, _) = start(1);
    let (peer, _) = server.expect("hello");
    server.send(&peer, json!({"type": "refused", "error": "unknown credential"}));
    server.register(1000);
    running.wait_for_state(LinkState::Registered);
    running.stop();
}

#[test]
fn after_a_server_restart_on_the_same_port_the_handler_says_hello_again_within_5s() {
    let (server, mut running, _) = start(1);
    server.register(100);
    running.wait_for_state(LinkState::Registered);
    let endpoint = server.endpoint.clone();
    drop(server);

    // libzmq closes the listener in its I/O thread: the port may take a moment to come free.
    let until = Instant::now() + PATIENCE;
    let server = loop {
        match Server::bind(&endpoint) {
            Ok(server) => break server,
            Err(e) if Instant::now() < until => {
                eprintln!("rebinding {endpoint}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot rebind {endpoint}: {e}"),
        }
    };
    let restarted = Instant::now();
    // A restarted server knows nobody: it answers anything but a hello with hello_again.
    let hello = loop {
        let left = Duration::from_secs(5).saturating_sub(restarted.elapsed());
        let Some((peer, msg)) = server.try_recv(left) else {
            panic!("no hello within 5 s of the restart");
        };
        if msg["type"] == "hello" {
            break (peer, msg);
        }
        server.send(&peer, json!({"type": "hello_again"}));
    };
    assert_eq!(hello.1["instance_id"], "test-instance");
    server.send(
        &hello.0,
        json!({"type": "welcome", "heartbeat_ms": 100, "max_frame_bytes": 4194304, "server": "test"}),
    );
    running.wait_for_state(LinkState::Registered);
    running.stop();
}

#[test]
fn drain_sends_goodbye_then_the_result_of_the_call_in_flight_then_bye() {
    let (server, mut running, starts) = start(2);
    let (peer, _) = server.register(1000);
    let run_id = server.call(&peer, "slow", json!({}));
    assert_eq!(starts.recv_timeout(PATIENCE), Ok(run_id), "the call started");

    running.begin_shutdown();
    server.expect("goodbye");
    running.wait_for_state(LinkState::Draining);
    let (_, result) = server.expect("result");
    assert_eq!((&result["run_id"], &result["success"]), (&json!(run_id), &json!(true)), "{result}");
    server.expect("bye");
    running.stop();
}

#[test]
fn a_malformed_server_message_is_ignored() {
    let (server, running, _) = start(1);
    let (peer, _) = server.register(1000);
    server.router.send_multipart([peer.as_slice(), b"SZ1", b"{not json"], 0).unwrap();
    server.router.send_multipart([peer.as_slice(), b"SZ9", b"{}"], 0).unwrap();
    server.send(&peer, json!({"type": "launch_missiles"}));
    let run_id = server.call(&peer, "echo", json!(1));
    let (_, result) = server.expect("result");
    assert_eq!((&result["run_id"], &result["result"]), (&json!(run_id), &json!(1)));
    running.stop();
}

/// The example binary (`cargo test` builds examples beside the tests).
fn example_binary() -> std::path::PathBuf {
    let test_binary = std::env::current_exe().unwrap();
    let profile_dir = test_binary.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join("native_handler");
    assert!(path.exists(), "{} is missing: cargo build -p schedulezero-handler --examples", path.display());
    path
}

#[test]
fn the_example_registers_serves_and_drains_on_sigterm() {
    use std::io::BufRead;
    let server = Server::on_any_port();
    let mut child = KillOnDrop(
        std::process::Command::new(example_binary())
            .args(["--server", &server.endpoint, "--instance-id", "example-1", "--capacity", "2"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the example"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (line_tx, lines) = std_mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });

    let (peer, hello) = server.register(1000);
    assert_eq!((&hello["handler_id"], &hello["capacity"]), (&json!("demo"), &json!(2)));
    assert_eq!(hello["methods"], json!(["count", "echo", "fail", "sleep"]));
    assert_eq!(lines.recv_timeout(PATIENCE).as_deref(), Ok("registered example-1"));

    let run_id = server.call(&peer, "count", json!({}));
    let (_, counted) = server.expect("result");
    assert_eq!((&counted["result"]["run_id"], &counted["result"]["attempt"]), (&json!(run_id), &json!(1)));
    server.call(&peer, "fail", json!({}));
    assert_eq!(server.expect("result").1["error"], "failed on purpose");

    let slow = server.call(&peer, "sleep", json!({"ms": 300}));
    // Let the call reach the handler before the signal does.
    server.call(&peer, "echo", json!("ping"));
    assert_eq!(server.expect("result").1["result"], "ping");
    let killed = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
    assert!(killed.unwrap().success());
    server.expect("goodbye");
    let (_, result) = server.expect("result");
    assert_eq!((&result["run_id"], &result["result"]), (&json!(slow), &json!({"slept_ms": 300})));
    server.expect("bye");
    assert_eq!(lines.recv_timeout(PATIENCE).as_deref(), Ok("drained"));
    assert!(child.0.wait().unwrap().success());
}

/// Kills the child if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Collects what the handler logs.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_server_that_never_answers_is_reported_naming_the_endpoint() {
    // A ROUTER that takes hellos and never answers: a wrong endpoint looks just like this.
    let server = Server::on_any_port();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let handler = Handler::builder("quiet")
        .method("echo", |_: CallContext, p: Value| async move { Ok::<_, MethodError>(p) })
        .build()
        .expect("valid handler");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            handler.run_until(&server.endpoint, tokio::time::sleep(Duration::from_secs(7))).await
        })
    })
    .expect("runs until told to stop");
    let text = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).into_owned();
    let expected = format!("no answer from {} for 5 s", server.endpoint);
    assert!(text.contains(&expected), "expected '{expected}' in:\n{text}");
    assert!(text.contains("is a ScheduleZero server listening there?"), "{text}");
}
