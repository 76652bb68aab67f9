//! Native handlers against the real transport: handler processes built on the Rust SDK (this
//! test binary re-run as a child, see `native_child`), a raw DEALER that never answers, SIGKILL
//! with calls in flight, SIGTERM drain, credentials, and a server restart.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use schedulezero_core::policy::{Policies, RetryPolicy};
use schedulezero_core::run::{AttemptOutcome, RunState};
use schedulezero_core::schedule::Target;
use schedulezero_core::trigger::Trigger;
use schedulezero_engine::{EngineError, ScheduleSpec};
use schedulezero_handler::{Handler, LinkState, MethodError};
use schedulezero_store::RunFilter;
use schedulezero_transport::TransportConfig;
use serde_json::{Value, json};
use support::{Proc, Server, eventually, poll_until, read_lines};

/// The child: an SDK handler configured from the environment, until SIGTERM (drain) or SIGKILL.
/// Every call start, end and cancellation goes to `SZ_CALL_LOG`, one line each.
#[test]
fn native_child() {
    let Ok(server) = std::env::var("SZ_NATIVE_CHILD") else { return };
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let (handler_id, instance_id, log_path) =
        (env("SZ_HANDLER_ID"), env("SZ_INSTANCE_ID"), env("SZ_CALL_LOG"));
    let capacity: u32 = env("SZ_CAPACITY").parse().unwrap_or(4);
    let log = move |line: String| {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log opens");
        let _ = f.write_all(format!("{line}\n").as_bytes());
    };
    let (l1, l2) = (log.clone(), log.clone());
    let mut builder = Handler::builder(handler_id).instance_id(instance_id.clone()).capacity(capacity);
    if let Ok(c) = std::env::var("SZ_CREDENTIAL") {
        builder = builder.credential(c);
    }
    let handler = builder
        .method("echo", |_ctx, params: Value| async move { Ok::<_, MethodError>(params) })
        .method("context", |ctx, _| async move {
            Ok::<_, MethodError>(json!({
                "run_id": ctx.run_id(), "attempt": ctx.attempt(), "scheduled_for": ctx.scheduled_for(),
                "ms_left": ctx.time_left().as_millis() as u64,
            }))
        })
        .method("slow", move |ctx, params: Value| {
            let log = l1.clone();
            let inst = instance_id.clone();
            async move {
                let ms = params.get("ms").and_then(Value::as_u64).unwrap_or(1000);
                log(format!("start {} {} {inst}", ctx.run_id(), ctx.attempt()));
                tokio::select! {
                    _ = ctx.cancelled() => {
                        log(format!("cancelled {} {} {inst}", ctx.run_id(), ctx.attempt()));
                        Err(MethodError::new("cancelled"))
                    }
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {
                        log(format!("end {} {} {inst}", ctx.run_id(), ctx.attempt()));
                        Ok(json!({"slept_ms": ms}))
                    }
                }
            }
        })
        .build()
        .expect("handler builds");
    let _ = l2;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let mut status = handler.status();
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let state = *status.borrow_and_update();
                if state == LinkState::Registered {
                    println!("registered");
                }
            }
        });
        handler.run(&server).await.expect("handler runs");
        println!("drained");
    });
    std::process::exit(0);
}

fn spawn_native(server: &str, handler_id: &str, instance_id: &str, capacity: u32, log: &Path) -> Proc {
    spawn_native_with(server, handler_id, instance_id, capacity, log, None)
}

fn spawn_native_with(
    server: &str,
    handler_id: &str,
    instance_id: &str,
    capacity: u32,
    log: &Path,
    credential: Option<&str>,
) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["native_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("SZ_NATIVE_CHILD", server)
        .env("SZ_HANDLER_ID", handler_id)
        .env("SZ_INSTANCE_ID", instance_id)
        .env("SZ_CAPACITY", capacity.to_string())
        .env("SZ_CALL_LOG", log);
    if let Some(c) = credential {
        cmd.env("SZ_CREDENTIAL", c);
    }
    Proc::spawn(cmd)
}

/// Two instances, `a` and `b`, of handler `pool` (capacity 4 each), registered.
async fn pool_of_two(server: &Server, log: &Path) -> (Proc, Proc) {
    let mut a = spawn_native(&server.endpoint, "pool", "a", 4, log);
    let mut b = spawn_native(&server.endpoint, "pool", "b", 4, log);
    a.wait_line("registered", Duration::from_secs(30)).await;
    b.wait_line("registered", Duration::from_secs(30)).await;
    server.wait_connected("pool", 2, Duration::from_secs(10)).await;
    (a, b)
}

/// A date schedule due now calling `handler.slow` for `ms`, with this retry and timeout.
async fn slow_run_due_now(
    server: &Server,
    name: &str,
    handler: &str,
    ms: u64,
    attempts: u32,
    timeout_s: i64,
) {
    let retry = RetryPolicy { max_attempts: attempts, ..RetryPolicy::default() };
    let policies = Policies { retry, timeout: TimeDelta::seconds(timeout_s), ..Policies::default() };
    let now = server.engine.clock().now();
    let trigger = Trigger::parse(
        &json!({"type": "date", "run_date": now.to_rfc3339()}),
        &server.engine.parse_context(),
    )
    .unwrap();
    let spec =
        ScheduleSpec::new(trigger, target(handler, "slow", json!({"ms": ms}))).name(name).policies(policies);
    server.engine.add_schedule(spec).await.unwrap();
}

fn target(handler: &str, method: &str, params: Value) -> Target {
    Target { handler_id: handler.into(), method: method.into(), params }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_handler_registers_and_answers_calls_with_their_context() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let mut child = spawn_native(&server.endpoint, "workers", "w-1", 4, &dir.path().join("calls.log"));
    child.wait_line("registered", Duration::from_secs(30)).await;
    let inst = server.wait_connected("workers", 1, Duration::from_secs(10)).await;
    assert_eq!(
        (inst[0].protocol.as_str(), inst[0].instance_id.as_str(), inst[0].capacity),
        ("native", "w-1", 4)
    );
    assert!(inst[0].methods.contains("slow") && inst[0].methods.contains("echo"));

    let r =
        server.engine.run_now(target("workers", "echo", json!({"a": [1, 2]})), Duration::from_secs(20)).await;
    let r = r.unwrap();
    assert_eq!((r.outcome, r.result), (AttemptOutcome::Succeeded, Some(json!({"a": [1, 2]}))));

    let r = server
        .engine
        .run_now(target("workers", "context", json!({})), Duration::from_secs(20))
        .await
        .unwrap();
    let ctx = r.result.expect("context result");
    assert_eq!(ctx["run_id"], json!(r.run_id));
    assert_eq!(ctx["attempt"], 1);
    let left = ctx["ms_left"].as_u64().unwrap();
    assert!(left > 10_000 && left <= 20_000, "the relative deadline reached the method: {left} ms left");
    assert!(ctx["scheduled_for"].as_str().is_some());

    let stored = server.engine.known_instances().await.unwrap();
    assert!(stored.iter().any(|i| i.instance_id == "w-1" && i.protocol == "native" && i.connected));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_native_handler_is_disconnected_within_3_heartbeats_and_its_calls_retried_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let (mut a, _b) = pool_of_two(&server, &log).await;

    // Four runs of a 3 s call, round robin: two on each instance.
    for k in 0..4 {
        slow_run_due_now(&server, &format!("s{k}"), "pool", 3000, 3, 60).await;
    }
    let started_on_a =
        || read_lines(&log).iter().filter(|l| l.starts_with("start ") && l.ends_with(" a")).count();
    assert!(poll_until(Duration::from_secs(20), || started_on_a() == 2).await, "{:?}", read_lines(&log));

    a.kill9();
    let killed = Instant::now();
    assert!(poll_until(Duration::from_secs(30), || server.connected("pool").len() == 1).await);
    let took = killed.elapsed();
    eprintln!("measured: {took:?}");
    assert!(
        took <= Duration::from_millis(3_300),
        "within 3 heartbeat intervals of 1 s (with slack for this test's own scheduling); took {took:?}"
    );

    // The two calls A held end `lost` and run again on B; every run succeeds.
    let store = server.engine.store().clone();
    let done = eventually(Duration::from_secs(60), || async {
        let runs = store.list_runs(&RunFilter::default()).await.unwrap();
        runs.len() == 4 && runs.iter().all(|r| r.state == RunState::Succeeded)
    })
    .await;
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    assert!(done, "{runs:?}");
    let mut retried = 0;
    for run in &runs {
        let attempts = store.list_attempts(run.id).await.unwrap();
        if attempts.len() == 2 {
            retried += 1;
            assert_eq!(attempts[0].outcome, AttemptOutcome::Lost);
            assert_eq!(attempts[0].instance.as_deref(), Some("a"));
            assert_eq!(attempts[1].outcome, AttemptOutcome::Succeeded);
            assert_eq!(attempts[1].instance.as_deref(), Some("b"));
        }
    }
    assert_eq!(retried, 2, "the two calls in flight on the killed instance were retried on the other");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_answers_holds_only_its_own_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let mut good = spawn_native(&server.endpoint, "good", "g", 4, &dir.path().join("calls.log"));
    good.wait_line("registered", Duration::from_secs(30)).await;

    // A native peer that says hello and heartbeats, but never answers a call.
    let endpoint = server.endpoint.clone();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<Value>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let mute = std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let d = ctx.socket(zmq::DEALER).unwrap();
        d.set_linger(0).unwrap();
        d.connect(&endpoint).unwrap();
        let hello = json!({"type": "hello", "handler_id": "mute", "instance_id": "m", "methods": ["work"], "capacity": 1});
        d.send_multipart([b"SZ1".to_vec(), hello.to_string().into_bytes()], 0).unwrap();
        let mut last = Instant::now();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if d.poll(zmq::POLLIN, 100).unwrap() > 0 {
                let frames = d.recv_multipart(0).unwrap();
                let _ = seen_tx.send(serde_json::from_slice(&frames[1]).unwrap());
            }
            if last.elapsed() > Duration::from_millis(500) {
                d.send_multipart([b"SZ1".as_slice(), br#"{"type":"heartbeat"}"#.as_slice()], 0).unwrap();
                last = Instant::now();
            }
        }
    });
    server.wait_connected("mute", 1, Duration::from_secs(10)).await;

    let engine = server.engine.clone();
    let stuck = tokio::spawn(async move {
        engine.run_now(target("mute", "work", json!({})), Duration::from_secs(4)).await
    });
    let t0 = Instant::now();
    for k in 0..50 {
        let r = server
            .engine
            .run_now(target("good", "echo", json!({"k": k})), Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    }
    let others_took = t0.elapsed();
    assert!(
        !stuck.is_finished() || others_took < Duration::from_secs(4),
        "other calls waited on the mute handler"
    );
    match stuck.await.unwrap() {
        Ok(report) => assert_eq!(report.outcome, AttemptOutcome::TimedOut, "{report:?}"),
        Err(EngineError::Timeout(_)) => {}
        Err(e) => panic!("unexpected: {e}"),
    }
    // The mute handler was sent the call, then told to cancel it at the deadline.
    let mut types = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !types.contains(&"cancel".to_string()) {
        if let Ok(m) = seen_rx.recv_timeout(Duration::from_millis(100)) {
            types.push(m["type"].as_str().unwrap_or("").to_string());
        }
    }
    assert_eq!(types, vec!["welcome", "call", "cancel"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    mute.join().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_native_handler_its_call_completes_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let mut child = spawn_native(&server.endpoint, "drainer", "d", 2, &log);
    child.wait_line("registered", Duration::from_secs(30)).await;
    let inst = server.wait_connected("drainer", 1, Duration::from_secs(10)).await;

    let engine = server.engine.clone();
    let call = tokio::spawn(async move {
        engine.run_now(target("drainer", "slow", json!({"ms": 2000})), Duration::from_secs(30)).await
    });
    assert!(
        poll_until(Duration::from_secs(20), || read_lines(&log).iter().any(|l| l.starts_with("start ")))
            .await
    );
    child.signal("TERM");
    // Draining: still connected, but takes no new calls.
    assert!(poll_until(Duration::from_secs(10), || inst[0].is_draining()).await, "goodbye seen");
    let refused = server.engine.run_now(target("drainer", "echo", json!({})), Duration::from_secs(5)).await;
    assert!(matches!(refused, Err(EngineError::NoInstance { .. })), "{refused:?}");

    let report = call.await.unwrap().unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Succeeded, "{report:?}");
    child.wait_line("drained", Duration::from_secs(20)).await;
    assert!(child.wait_exit(Duration::from_secs(20)).await.success());
    assert!(poll_until(Duration::from_secs(10), || server.connected("drainer").is_empty()).await, "bye seen");
    // The reply can come a few milliseconds before the outcome is committed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let run = loop {
        match server.engine.store().get_run(report.run_id).await.unwrap() {
            Some(run) if run.state.is_terminal() => break run,
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("the run was not recorded: {other:?}"),
        }
    };
    assert_eq!(run.state, RunState::Succeeded);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_handlers_are_back_within_5_s_of_a_server_restart_and_keep_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let (_a, _b) = pool_of_two(&server, &log).await;
    for _ in 0..4 {
        server.engine.run_now(target("pool", "echo", json!({})), Duration::from_secs(20)).await.unwrap();
    }
    let before: Vec<_> = server
        .instances("pool")
        .iter()
        .map(|i| (i.instance_id.clone(), i.registered_at, i.successes()))
        .collect();
    assert_eq!(before.iter().map(|b| b.2).sum::<u64>(), 4);

    server.restart().await;
    let restarted = Instant::now();
    server.wait_connected("pool", 2, Duration::from_secs(15)).await;
    let took = restarted.elapsed();
    eprintln!("measured: {took:?}");
    assert!(took <= Duration::from_secs(5), "back after {took:?}");
    // Recognised: same registration time and counts as before the restart.
    let after: Vec<_> = server
        .instances("pool")
        .iter()
        .map(|i| (i.instance_id.clone(), i.registered_at, i.successes()))
        .collect();
    assert_eq!(before, after);
    let r = server
        .engine
        .run_now(target("pool", "echo", json!({"after": 1})), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_restarted_under_its_instance_id_has_its_lost_calls_retried_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let mut first = spawn_native(&server.endpoint, "phoenix", "p", 2, &log);
    first.wait_line("registered", Duration::from_secs(30)).await;
    server.wait_connected("phoenix", 1, Duration::from_secs(10)).await;
    slow_run_due_now(&server, "phoenix-run", "phoenix", 1000, 2, 120).await;
    assert!(
        poll_until(Duration::from_secs(20), || read_lines(&log).iter().any(|l| l.starts_with("start ")))
            .await
    );

    // Killed and back at once, well within 3 heartbeat intervals: a new process, same id.
    first.kill9();
    let mut second = spawn_native(&server.endpoint, "phoenix", "p", 2, &log);
    second.wait_line("registered", Duration::from_secs(30)).await;
    let store = server.engine.store().clone();
    let done = eventually(Duration::from_secs(30), || async {
        let runs = store.list_runs(&RunFilter::default()).await.unwrap();
        runs.len() == 1 && runs[0].state == RunState::Succeeded
    })
    .await;
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    assert!(done, "retried long before its 120 s deadline: {runs:?}");
    let attempts = store.list_attempts(runs[0].id).await.unwrap();
    assert_eq!(attempts[0].outcome, AttemptOutcome::Lost);
    assert!(attempts[0].error.as_deref().unwrap_or("").contains("restarted"), "{attempts:?}");
    assert_eq!(attempts[1].outcome, AttemptOutcome::Succeeded);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_credential_refuses_hellos_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = TransportConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        credential: Some("s3cret".into()),
        ..Default::default()
    };
    let mut server = Server::start_with(dir.path(), config).await;
    let log = dir.path().join("calls.log");
    let _without = spawn_native_with(&server.endpoint, "locked", "x", 1, &log, None);
    let _wrong = spawn_native_with(&server.endpoint, "locked", "y", 1, &log, Some("guess"));
    let mut with = spawn_native_with(&server.endpoint, "locked", "z", 1, &log, Some("s3cret"));
    with.wait_line("registered", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<String> = server.connected("locked").iter().map(|i| i.instance_id.clone()).collect();
    assert_eq!(ids, vec!["z"]);
    server.stop().await;
}
