//! Bad bytes on the handler port cost only their sender: a frame header declaring gigabytes
//! (sent over a raw TCP socket, speaking ZMTP by hand), bytes of no protocol at all, an oversize
//! frame from a real ZeroMQ peer, frames of neither protocol and JSON that does not parse. After
//! each, the server still answers, and a handler connected all along still gets its calls.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use schedulezero_core::run::AttemptOutcome;
use schedulezero_core::schedule::Target;
use serde_json::{Value, json};
use support::{Server, v1_handler};

/// The port of a `tcp://host:port` endpoint.
fn port(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("endpoint has a port")
}

/// A ZMTP 3.0 greeting and NULL-mechanism READY for a DEALER, written by hand.
fn zmtp_handshake() -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    g.extend(mechanism);
    g.push(0); // as-server
    g.extend([0u8; 31]);
    let mut ready = vec![5];
    ready.extend(b"READY");
    ready.push(11);
    ready.extend(b"Socket-Type");
    ready.extend(6u32.to_be_bytes());
    ready.extend(b"DEALER");
    g.push(0x04); // short command frame
    g.push(ready.len() as u8);
    g.extend(ready);
    g
}

/// True when the server closed the connection (EOF or reset) within the time given.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // the server's greeting
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

fn ping(endpoint: &str) -> Value {
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.set_rcvtimeo(10_000).unwrap();
    req.connect(endpoint).unwrap();
    req.send(&br#"{"method":"ping"}"#[..], 0).unwrap();
    serde_json::from_slice(&req.recv_bytes(0).expect("server still answers")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_cost_only_their_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let endpoint = server.endpoint.clone();
    let log = dir.path().join("calls.log");
    let mut handler = v1_handler(&endpoint, "bystander", &log);
    handler.wait_line("registered ", Duration::from_secs(20)).await;
    server.wait_connected("bystander", 1, Duration::from_secs(10)).await;
    let bystander_works = || async {
        let t = Target { handler_id: "bystander".into(), method: "echo".into(), params: json!({}) };
        let r = server.engine.run_now(t, Duration::from_secs(20)).await.expect("bystander answers");
        assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    };

    let ep = endpoint.clone();
    tokio::task::spawn_blocking(move || {
        // 1. Frame headers declaring 2 GiB (an allocation that would succeed without the limit)
        //    and 32 GiB: dropped before allocation, connection closed.
        for declared in [1u64 << 31, 1u64 << 35] {
            let mut s = TcpStream::connect(("127.0.0.1", port(&ep))).unwrap();
            s.write_all(&zmtp_handshake()).unwrap();
            assert!(
                !closed_by_server(&mut s, Duration::from_millis(300)),
                "the handshake itself is accepted"
            );
            let mut huge = vec![0x02]; // long message frame, no more frames
            huge.extend(declared.to_be_bytes());
            huge.extend([b'x'; 64]);
            s.write_all(&huge).unwrap();
            // At once: well before the ZMTP heartbeat timeout (5 s) would close a silent peer.
            assert!(
                closed_by_server(&mut s, Duration::from_secs(3)),
                "a frame header declaring {declared} bytes must close the connection"
            );
        }

        // 2. Bytes of no protocol at all.
        let mut s = TcpStream::connect(("127.0.0.1", port(&ep))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.write_all(&[0xAB; 512]).unwrap();
        assert!(closed_by_server(&mut s, Duration::from_secs(10)), "garbage must close the connection");
        assert_eq!(ping(&ep)["message"], "pong");

        // 3. Real ZeroMQ peers: an oversize frame, frames of neither protocol, bad JSON.
        let ctx = zmq::Context::new();
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.connect(&ep).unwrap();
        let big = vec![b'a'; schedulezero_protocol::limits::MAX_FRAME_BYTES + 1];
        dealer.send_multipart([b"SZ1".as_slice(), big.as_slice()], 0).unwrap();
        dealer.send_multipart([b"hello".as_slice(), b"world".as_slice(), b"!".as_slice()], 0).unwrap();
        let other = ctx.socket(zmq::DEALER).unwrap();
        other.set_linger(0).unwrap();
        other.set_rcvtimeo(10_000).unwrap();
        other.connect(&ep).unwrap();
        other.send_multipart([b"SZ9".as_slice(), b"{}".as_slice()], 0).unwrap();
        other.send_multipart([b"SZ1".as_slice(), b"{\"type\":".as_slice()], 0).unwrap();
        let reply = other.recv_multipart(0).expect("bad JSON gets an error reply");
        assert_eq!(reply[0], b"SZ1");
        let body: Value = serde_json::from_slice(&reply[1]).unwrap();
        assert_eq!(body["type"], "error");
        assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
        let bad_hello =
            json!({"type": "hello", "handler_id": "h", "instance_id": "i", "methods": ["m"], "capacity": 0});
        other.send_multipart([b"SZ1".to_vec(), bad_hello.to_string().into_bytes()], 0).unwrap();
        let reply = other.recv_multipart(0).expect("an invalid hello is refused");
        let body: Value = serde_json::from_slice(&reply[1]).unwrap();
        assert_eq!(body["type"], "refused");
        assert!(body["error"].as_str().unwrap().contains("capacity"), "{body}");
        other.send_multipart([b"SZ1".as_slice(), br#"{"type":"heartbeat"}"#.as_slice()], 0).unwrap();
        let reply = other.recv_multipart(0).expect("an unknown peer is asked to say hello");
        let body: Value = serde_json::from_slice(&reply[1]).unwrap();
        assert_eq!(body["type"], "hello_again");
        assert_eq!(ping(&ep)["message"], "pong");
    })
    .await
    .unwrap();

    bystander_works().await;
    assert_eq!(server.connected("bystander").len(), 1, "the bystander's link survived");
    server.stop().await;
}
