//! What the SDK adds to a call's round trip, measured against a bare DEALER thread answering the
//! same calls. Ignored by default (timing, not correctness); run it in release:
//!
//! ```text
//! cargo test --release -p schedulezero-handler --test latency -- --ignored --nocapture --test-threads=1
//! ```

use std::time::{Duration, Instant};

use schedulezero_handler::{Handler, MethodError};
use serde_json::{Value, json};

const CALLS: usize = 3000;

fn router() -> (zmq::Socket, String) {
    let router = zmq::Context::new().socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    (router, endpoint)
}

/// Sends `CALLS` echo calls one at a time to `peer`; prints round-trip percentiles.
fn measure(label: &str, router: &zmq::Socket, peer: &[u8]) {
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let call = json!({
            "type": "call", "run_id": uuid::Uuid::now_v7(), "attempt": 1,
            "scheduled_for": "2030-01-01T00:00:00Z", "method": "echo", "params": {"i": i}, "deadline_ms": 10_000,
        });
        let start = Instant::now();
        router.send_multipart([peer, b"SZ1", call.to_string().as_bytes()], 0).unwrap();
        loop {
            let frames = router.recv_multipart(0).unwrap();
            let msg: Value = serde_json::from_slice(&frames[2]).unwrap();
            if msg["type"] == "result" {
                break;
            }
        }
        times.push(start.elapsed());
    }
    times.sort();
    let at = |q: f64| times[(times.len() as f64 * q) as usize];
    eprintln!("{label}: p50 {:?}  p90 {:?}  p99 {:?}", at(0.5), at(0.9), at(0.99));
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn echo_round_trip_through_the_sdk() {
    let (router, endpoint) = router();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let handler = Handler::builder("bench")
        .instance_id("bench")
        .method("echo", |_, params| async move { Ok::<_, MethodError>(params) })
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = runtime.spawn(async move {
        handler
            .run_until(&endpoint, async {
                let _ = stopped.await;
            })
            .await
    });
    let peer = router.recv_multipart(0).unwrap().remove(0);
    let welcome =
        json!({"type": "welcome", "heartbeat_ms": 1000, "max_frame_bytes": 4194304, "server": "bench"});
    router.send_multipart([peer.as_slice(), b"SZ1", welcome.to_string().as_bytes()], 0).unwrap();
    measure("SDK", &router, &peer);
    let _ = stop.send(());
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), done).await })
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn echo_round_trip_through_a_bare_dealer() {
    let (router, endpoint) = router();
    std::thread::spawn(move || {
        let dealer = zmq::Context::new().socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        // Ends the thread once the measurement is over.
        dealer.set_rcvtimeo(1000).unwrap();
        dealer.connect(&endpoint).unwrap();
        dealer.send_multipart([b"SZ1".as_slice(), b"{}"], 0).unwrap();
        while let Ok(frames) = dealer.recv_multipart(0) {
            let call: Value = serde_json::from_slice(&frames[1]).unwrap();
            let result = json!({"type": "result", "run_id": call["run_id"], "attempt": 1, "success": true,
                "result": call["params"]});
            dealer.send_multipart([b"SZ1".as_slice(), result.to_string().as_bytes()], 0).unwrap();
        }
    });
    let peer = router.recv_multipart(0).unwrap().remove(0);
    measure("bare DEALER", &router, &peer);
}
