//! Version-1 handlers (../shared/COMPAT.md §3) against the real transport: a pyzmq handler
//! written to the contract registers on the shared ROUTER port, receives calls on its own REP
//! socket one at a time, is watched in the background, and comes back after a server restart.

mod support;

use std::time::{Duration, Instant};

use schedulezero_core::run::AttemptOutcome;
use schedulezero_core::schedule::Target;
use serde_json::{Value, json};
use support::{Server, poll_until, read_lines, v1_handler};

fn target(method: &str, params: Value) -> Target {
    Target { handler_id: "legacy".into(), method: method.into(), params }
}

/// One REQ/REP exchange with the registration endpoint, as an original handler would do it.
fn request(endpoint: &str, body: &[u8]) -> Value {
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.set_rcvtimeo(10_000).unwrap();
    req.connect(endpoint).unwrap();
    req.send(body, 0).unwrap();
    let reply = req.recv_bytes(0).expect("the registration endpoint answers");
    serde_json::from_slice(&reply).expect("a JSON reply")
}

/// The pyzmq version-1 handler `legacy`, registered and connected.
async fn registered_v1(server: &Server, log: &std::path::Path) -> support::Proc {
    let mut handler = v1_handler(&server.endpoint, "legacy", log);
    handler.wait_line("registered ", Duration::from_secs(20)).await;
    server.wait_connected("legacy", 1, Duration::from_secs(10)).await;
    handler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_endpoint_answers_in_the_original_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let ep = server.endpoint.clone();
    let ask = move |body: Value| {
        let ep = ep.clone();
        async move {
            tokio::task::spawn_blocking(move || request(&ep, body.to_string().as_bytes())).await.unwrap()
        }
    };

    assert_eq!(ask(json!({"method": "ping"})).await, json!({"success": true, "message": "pong"}));
    let raw = {
        let ep = server.endpoint.clone();
        tokio::task::spawn_blocking(move || request(&ep, b"{not json")).await.unwrap()
    };
    assert_eq!(raw, json!({"success": false, "error": "Invalid JSON"}));
    assert_eq!(
        ask(json!({"method": "launch"})).await,
        json!({"success": false, "error": "Unknown method: launch"})
    );
    assert_eq!(
        ask(json!({"method": "report_status", "params": {"handler_id": "nobody", "status": "offline"}}))
            .await,
        json!({"success": false, "error": "Handler not registered"})
    );
    let missing = ask(json!({"method": "register", "params": {"address": "tcp://127.0.0.1:9"}})).await;
    assert_eq!(missing["success"], false);
    assert!(missing["error"].as_str().unwrap().contains("handler_id"), "{missing}");

    let nul = ask(
        json!({"method": "register", "params": {"handler_id": "a\u{0}b", "address": "tcp://127.0.0.1:9"}}),
    )
    .await;
    assert_eq!(nul["success"], false, "a control character in an id is refused, the endpoint lives on");
    assert_eq!(ask(json!({"method": "ping"})).await["message"], "pong");

    let params = json!({"handler_id": "legacy", "address": "tcp://127.0.0.1:9", "methods": ["a", "b"]});
    let first = ask(json!({"method": "register", "params": params})).await;
    assert_eq!(
        first,
        json!({"success": true, "handler_id": "legacy", "address": "tcp://127.0.0.1:9", "status": "registered",
               "methods": ["a", "b"], "message": "Handler 'legacy' registered successfully"})
    );
    let again = ask(json!({"method": "register", "params": params})).await;
    assert_eq!(again["status"], "re-registered");
    assert_eq!(again["message"], "Handler 'legacy' re-registered successfully");
    assert_eq!(
        ask(json!({"method": "report_status", "params": {"handler_id": "legacy", "status": "offline"}}))
            .await,
        json!({"success": true, "handler_id": "legacy", "status": "offline"})
    );
    assert!(server.connected("legacy").is_empty(), "offline means disconnected");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_handler_registers_and_executes_calls_with_the_original_reply_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let mut handler = v1_handler(&server.endpoint, "legacy", &log);
    let line = handler.wait_line("registered ", Duration::from_secs(20)).await;
    let address = line.trim_start_matches("registered ").to_string();
    let inst = server.wait_connected("legacy", 1, Duration::from_secs(10)).await;
    assert_eq!(inst[0].protocol, "v1");
    assert_eq!(inst[0].address, address);
    assert_eq!(inst[0].capacity, 1);
    assert!(inst[0].methods.contains("echo"));

    let ok = server.engine.run_now(target("echo", json!({"n": 1})), Duration::from_secs(20)).await.unwrap();
    assert_eq!(ok.outcome, AttemptOutcome::Succeeded);
    assert_eq!(ok.result, Some(json!({"echo": {"n": 1}, "success": true})));

    let wrapped =
        server.engine.run_now(target("value", json!({"value": 7})), Duration::from_secs(20)).await.unwrap();
    assert_eq!(wrapped.result, Some(json!({"success": true, "result": 7})));

    let failed = server
        .engine
        .run_now(target("fail", json!({"message": "disk full"})), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(failed.outcome, AttemptOutcome::Failed);
    assert_eq!(failed.error.as_deref(), Some("disk full"));

    // Calls to one instance queue; they never overlap (the handler serves one at a time).
    let mut calls = Vec::new();
    for k in 0..5 {
        let engine = server.engine.clone();
        calls.push(tokio::spawn(async move {
            engine.run_now(target("echo", json!({"k": k})), Duration::from_secs(30)).await
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().outcome, AttemptOutcome::Succeeded);
    }
    assert_eq!(read_lines(&log).len(), 8, "every call reached the handler once");

    // SIGTERM: the handler reports itself offline and is disconnected at once.
    handler.signal("TERM");
    handler.wait_exit(Duration::from_secs(20)).await;
    assert!(server.connected("legacy").is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_v1_handler_is_disconnected_within_10_s_and_recognised_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let mut handler = v1_handler(&server.endpoint, "legacy", &log);
    handler.wait_line("registered ", Duration::from_secs(20)).await;
    let inst = server.wait_connected("legacy", 1, Duration::from_secs(10)).await;
    let ok = server.engine.run_now(target("echo", json!({})), Duration::from_secs(20)).await.unwrap();
    assert_eq!(ok.outcome, AttemptOutcome::Succeeded);
    assert_eq!(inst[0].successes(), 1);

    // Idle, it is pinged in the background: its last sighting moves on without any call.
    let seen = inst[0].last_seen();
    assert!(
        poll_until(Duration::from_secs(15), || inst[0].last_seen() > seen).await,
        "pings refresh last seen"
    );

    handler.kill9();
    let killed = Instant::now();
    assert!(poll_until(Duration::from_secs(30), || server.connected("legacy").is_empty()).await);
    let took = killed.elapsed();
    eprintln!("measured: {took:?}");
    assert!(took <= Duration::from_secs(10), "a killed version-1 handler took {took:?} to show disconnected");

    // A new process of the same handler registers again: the server says so.
    let mut back = v1_handler(&server.endpoint, "legacy", &log);
    back.wait_line("registered ", Duration::from_secs(20)).await;
    let now = server.wait_connected("legacy", 1, Duration::from_secs(10)).await;
    assert_eq!(now.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_handler_busy_in_a_30_s_call_stays_connected_and_gets_the_call_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let _handler = registered_v1(&server, &log).await;

    let engine = server.engine.clone();
    let call = tokio::spawn(async move {
        engine.run_now(target("sleep", json!({"seconds": 30})), Duration::from_secs(120)).await
    });
    let started = Instant::now();
    let mut checks = 0;
    while !call.is_finished() {
        assert_eq!(
            server.connected("legacy").len(),
            1,
            "disconnected {:?} into a 30 s call",
            started.elapsed()
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let report = call.await.unwrap().unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Succeeded, "{report:?}");
    assert!(started.elapsed() >= Duration::from_secs(29));
    assert!(checks > 100);
    let calls = read_lines(&log);
    assert_eq!(calls.len(), 1, "the call was sent exactly once: {calls:?}");
    assert_eq!(server.connected("legacy").len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_call_past_its_deadline_times_out_and_the_next_call_gets_a_fresh_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let _handler = registered_v1(&server, &log).await;

    let slow = server.engine.run_now(target("sleep", json!({"seconds": 3})), Duration::from_secs(1)).await;
    match slow {
        Ok(r) => assert_eq!(r.outcome, AttemptOutcome::TimedOut, "{r:?}"),
        Err(e) => assert!(matches!(e, schedulezero_engine::EngineError::Timeout(_)), "{e}"),
    }
    // The abandoned REQ socket is closed; a new one carries the next call once the handler
    // (serving one request at a time) has finished the sleep. Its late reply goes nowhere.
    let next = server.engine.run_now(target("echo", json!({"n": 2})), Duration::from_secs(20)).await.unwrap();
    assert_eq!(next.outcome, AttemptOutcome::Succeeded, "{next:?}");
    assert_eq!(next.result, Some(json!({"echo": {"n": 2}, "success": true})), "not the sleep's late reply");
    assert_eq!(server.connected("legacy").len(), 1);
    assert_eq!(read_lines(&log).len(), 2, "each call sent once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_handler_is_back_within_5_s_of_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let log = dir.path().join("calls.log");
    let _handler = registered_v1(&server, &log).await;

    server.restart().await;
    let restarted = Instant::now();
    // The server remembers the instance and pings it; the handler does nothing.
    server.wait_connected("legacy", 1, Duration::from_secs(15)).await;
    let took = restarted.elapsed();
    eprintln!("measured: {took:?}");
    assert!(took <= Duration::from_secs(5), "back after {took:?}");
    let ok = server
        .engine
        .run_now(target("echo", json!({"after": "restart"})), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(ok.outcome, AttemptOutcome::Succeeded);
    server.stop().await;
}
