//! The socket actor: one thread owns the ROUTER socket that every handler connects to.
//!
//! It forwards what async code queued in the [`Outbox`], completes call results directly from
//! [`Pending`], and hands every other message to the session task. Bad input — a frame over the
//! size limit (libzmq drops it before allocating and closes that peer's connection), frames
//! of neither protocol, JSON that does not parse — is logged and costs only its sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use schedulezero_protocol::native::{self, CallResult, DecodeError, FromHandler, FromServer, SIGNATURE};
use schedulezero_protocol::{Envelope, classify};
use tokio::sync::mpsc;

use crate::config::TransportConfig;
use crate::outbox::{Outbox, STOP};
use crate::pending::Pending;
use crate::transport::TransportError;

/// A message for the session task.
pub(crate) enum Inbound {
    Native {
        peer: Vec<u8>,
        msg: FromHandler,
        /// When it was received, for liveness (the session task may lag behind).
        at: Instant,
        /// For a hello: the IP address of the connection it came on (libzmq's `Peer-Address`),
        /// shown as the instance's address.
        origin: Option<String>,
    },
    /// A result no call awaits (late, or from before a server restart).
    LateResult {
        peer: Vec<u8>,
        result: CallResult,
    },
    V1 {
        peer: Vec<u8>,
        body: Vec<u8>,
    },
}

static OUTBOX_SEQ: AtomicU64 = AtomicU64::new(0);

/// Binds the ROUTER and starts its thread. Returns the bound endpoint (port 0 resolved).
pub(crate) fn start(
    ctx: &zmq::Context,
    config: &TransportConfig,
    pending: Arc<Pending>,
    inbound: mpsc::UnboundedSender<Inbound>,
) -> Result<(String, Outbox, JoinHandle<()>), TransportError> {
    let router = ctx.socket(zmq::ROUTER)?;
    router.set_maxmsgsize(config.max_frame_bytes as i64)?;
    // Sends to a peer that is gone fail at once (logged) instead of vanishing silently.
    router.set_router_mandatory(true)?;
    router.set_linger(0)?;
    router.set_sndhwm(100_000)?;
    router.set_rcvhwm(100_000)?;
    // ZMTP heartbeats drop half-open TCP connections (a peer whose host vanished).
    router.set_heartbeat_ivl(1_000)?;
    router.set_heartbeat_timeout(5_000)?;
    router.set_handshake_ivl(5_000)?;
    router.bind(&config.endpoint).map_err(|e| match e {
        zmq::Error::EADDRINUSE => TransportError::AddressInUse(config.endpoint.clone()),
        other => TransportError::Bind(config.endpoint.clone(), other.to_string()),
    })?;
    let endpoint = match router.get_last_endpoint()? {
        Ok(e) => e,
        Err(_) => config.endpoint.clone(),
    };

    let inproc =
        format!("inproc://sz-outbox-{}-{}", std::process::id(), OUTBOX_SEQ.fetch_add(1, Ordering::Relaxed));
    let from_async = ctx.socket(zmq::PAIR)?;
    from_async.set_rcvhwm(0)?;
    from_async.bind(&inproc)?;
    let to_thread = ctx.socket(zmq::PAIR)?;
    to_thread.set_sndhwm(0)?;
    to_thread.connect(&inproc)?;

    let actor = Actor { router, from_async, pending, inbound, malformed: RateLimit::default() };
    let thread = std::thread::Builder::new()
        .name("sz-router".into())
        .spawn(move || actor.run())
        .map_err(|e| TransportError::Bind(endpoint.clone(), e.to_string()))?;
    Ok((endpoint, Outbox::new(to_thread), thread))
}

struct Actor {
    router: zmq::Socket,
    from_async: zmq::Socket,
    pending: Arc<Pending>,
    inbound: mpsc::UnboundedSender<Inbound>,
    malformed: RateLimit,
}

impl Actor {
    fn run(mut self) {
        loop {
            let (router_ready, outbox_ready) = {
                let mut items =
                    [self.router.as_poll_item(zmq::POLLIN), self.from_async.as_poll_item(zmq::POLLIN)];
                if let Err(e) = zmq::poll(&mut items, -1) {
                    if e == zmq::Error::ETERM {
                        return;
                    }
                    continue;
                }
                (items[0].is_readable(), items[1].is_readable())
            };
            if outbox_ready && !self.forward_outbox() {
                return;
            }
            if router_ready {
                self.take_inbound();
            }
        }
    }

    /// Sends what async code queued. False when asked to stop.
    fn forward_outbox(&mut self) -> bool {
        for _ in 0..1024 {
            let frames = match self.from_async.recv_multipart(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) => return true,
                Err(_) => return false,
            };
            if frames.len() == 1 && frames[0] == STOP {
                return false;
            }
            if let Err(e) = self.router.send_multipart(&frames, zmq::DONTWAIT) {
                // EHOSTUNREACH: that connection is gone. A call sent there ends now as lost (and
                // is retried per policy), not at its deadline.
                tracing::debug!(error = %e, "message to a handler not sent");
                if let [_, sig, body] = frames.as_slice()
                    && sig.as_slice() == SIGNATURE
                    && let Ok(FromServer::Call(call)) = native::decode_from_server(body)
                {
                    self.pending.fail_call(
                        (call.run_id, call.attempt),
                        &format!("the handler's connection is gone ({e})"),
                    );
                }
            }
        }
        true
    }

    /// The parts of one message waiting on the ROUTER (they arrive together), or `None`.
    fn recv_parts(&self) -> Option<Vec<zmq::Message>> {
        let mut parts = Vec::with_capacity(3);
        loop {
            match self.router.recv_msg(zmq::DONTWAIT) {
                Ok(m) => {
                    let more = m.get_more();
                    parts.push(m);
                    if !more {
                        return Some(parts);
                    }
                }
                Err(_) => return (!parts.is_empty()).then_some(parts),
            }
        }
    }

    fn take_inbound(&mut self) {
        for _ in 0..1024 {
            let Some(mut parts) = self.recv_parts() else { return };
            let mut frames: Vec<Vec<u8>> = parts.iter().map(|m| m.to_vec()).collect();
            if frames.is_empty() {
                continue;
            }
            let peer = frames.remove(0);
            match classify(&frames) {
                Envelope::Native(body) => match native::decode_from_handler(body) {
                    Ok(FromHandler::Result(result)) => {
                        if !self.pending.complete(result.clone()) {
                            let _ = self.inbound.send(Inbound::LateResult { peer, result });
                        }
                    }
                    Ok(msg) => {
                        let origin = match msg {
                            FromHandler::Hello(_) => {
                                parts.last_mut().and_then(|m| m.gets("Peer-Address")).map(str::to_string)
                            }
                            _ => None,
                        };
                        let _ = self.inbound.send(Inbound::Native { peer, msg, at: Instant::now(), origin });
                    }
                    Err(e) => {
                        if self.malformed.allow() {
                            tracing::warn!(peer = %hex(&peer), error = %e, "unusable message from a handler");
                        }
                        let answer = match &e {
                            DecodeError::Hello(_) => FromServer::Refused { error: e.to_string() },
                            DecodeError::Json(_) => FromServer::Error { error: e.to_string() },
                        };
                        let reply = native::encode(&answer);
                        let _ = self
                            .router
                            .send_multipart([peer.as_slice(), &reply[0], &reply[1]], zmq::DONTWAIT);
                    }
                },
                Envelope::V1(body) => {
                    let body = body.to_vec();
                    let _ = self.inbound.send(Inbound::V1 { peer, body });
                }
                Envelope::Malformed(why) => {
                    if self.malformed.allow() {
                        tracing::warn!(peer = %hex(&peer), %why, "refused a message of neither protocol");
                    }
                }
            }
        }
    }
}

/// At most a few warnings a second about bad input, so a flood cannot flood the logs.
#[derive(Default)]
struct RateLimit {
    window: Option<Instant>,
    count: u32,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        match self.window {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {
                self.count += 1;
                self.count <= 5
            }
            _ => {
                self.window = Some(now);
                self.count = 1;
                true
            }
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
