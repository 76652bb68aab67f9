//! Frames from async code to the socket thread.
//!
//! libzmq sockets are not thread-safe, so only the router thread touches the ROUTER socket.
//! Async code sends through one end of an `inproc` PAIR (behind a mutex, a few microseconds
//! per message); the thread polls the other end beside the ROUTER and forwards.

use std::sync::Mutex;

/// The sending end. Messages are the ROUTER's frames: routing id first.
pub(crate) struct Outbox {
    socket: Mutex<zmq::Socket>,
}

/// The single frame that asks the router thread to stop.
pub(crate) const STOP: &[u8] = b"stop";

impl Outbox {
    pub fn new(socket: zmq::Socket) -> Self {
        Self { socket: Mutex::new(socket) }
    }

    /// Queues one message for the ROUTER. Never blocks: a full queue drops the message (logged),
    /// as a peer that stopped reading would.
    pub fn send(&self, frames: &[&[u8]]) {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = socket.send_multipart(frames.iter().copied(), zmq::DONTWAIT) {
            tracing::warn!(error = %e, "handler message dropped: the socket thread's queue is full");
        }
    }

    /// Queues a native message for a peer.
    pub fn send_native(&self, peer: &[u8], msg: &schedulezero_protocol::native::FromServer) {
        let [sig, body] = schedulezero_protocol::native::encode(msg);
        self.send(&[peer, &sig, &body]);
    }

    pub fn stop(&self) {
        self.send(&[STOP]);
    }
}
