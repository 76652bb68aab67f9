//! Native handler sessions: hello and welcome, heartbeats, goodbye (drain), bye, liveness — and
//! the [`Link`] the dispatcher calls a native instance through.
//!
//! An instance is `(handler_id, instance_id)`; a connection is a ROUTER peer. A handler that
//! reconnects (new peer, same instance) keeps its link and its calls in flight: their results are
//! matched by run id whatever connection brings them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use schedulezero_core::run::RunId;
use schedulezero_engine::Engine;
use schedulezero_engine::link::{Call, Link, LinkError, Reply};
use schedulezero_engine::registry::{Instance, InstanceSpec};
use schedulezero_protocol::limits::MISSED_HEARTBEATS;
use schedulezero_protocol::native::{self, CallResult, FromHandler, FromServer, Hello};
use tokio::sync::oneshot;

use crate::config::TransportConfig;
use crate::outbox::Outbox;
use crate::pending::{CallKey, Pending};
use crate::router::hex;

type InstanceKey = (String, String);

/// Calls one native instance over whichever connection it last said hello on.
pub(crate) struct NativeLink {
    key: InstanceKey,
    /// Set when the instance is disconnected, cleared by its next hello: a call that raced the
    /// disconnect (reserved before, sent after) fails at once instead of waiting its deadline.
    closed: AtomicBool,
    peer: Mutex<Vec<u8>>,
    outbox: Arc<Outbox>,
    pending: Arc<Pending>,
}

impl NativeLink {
    fn peer(&self) -> Vec<u8> {
        self.peer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_peer(&self, peer: Vec<u8>) {
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = peer;
    }
}

/// Forgets a pending call when its `call` future ends or is dropped (deadline, cancel).
struct Forget<'a>(&'a Pending, CallKey);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

#[async_trait]
impl Link for NativeLink {
    async fn call(&self, call: Call) -> Result<Reply, LinkError> {
        let (tx, rx) = oneshot::channel();
        let key = (call.run_id, call.attempt);
        self.pending.insert(key, self.key.clone(), tx);
        let _forget = Forget(&self.pending, key);
        if self.closed.load(Ordering::Acquire) {
            return Err(LinkError::Disconnected("the handler instance is disconnected".into()));
        }
        let msg = FromServer::Call(native::Call {
            run_id: call.run_id,
            attempt: call.attempt,
            scheduled_for: call.scheduled_for,
            method: call.method,
            params: call.params,
            deadline_ms: u64::try_from(call.deadline.as_millis()).unwrap_or(u64::MAX),
        });
        self.outbox.send_native(&self.peer(), &msg);
        rx.await.unwrap_or_else(|_| Err(LinkError::Disconnected("the transport stopped".into())))
    }

    async fn cancel(&self, run_id: RunId, attempt: u32) {
        self.outbox.send_native(&self.peer(), &FromServer::Cancel { run_id, attempt });
    }
}

struct Session {
    peer: Vec<u8>,
    /// The handler process's session nonce from its hello (see `Hello::session`).
    session: Option<String>,
    link: Arc<NativeLink>,
    instance: Arc<Instance>,
    last_heard: Instant,
    connected: bool,
}

/// Every native instance this server has talked to, owned by the session task.
pub(crate) struct NativeSessions {
    engine: Arc<Engine>,
    outbox: Arc<Outbox>,
    pending: Arc<Pending>,
    config: TransportConfig,
    by_peer: HashMap<Vec<u8>, InstanceKey>,
    sessions: HashMap<InstanceKey, Session>,
}

impl NativeSessions {
    pub fn new(
        engine: Arc<Engine>,
        outbox: Arc<Outbox>,
        pending: Arc<Pending>,
        config: TransportConfig,
    ) -> Self {
        Self { engine, outbox, pending, config, by_peer: HashMap::new(), sessions: HashMap::new() }
    }

    /// `at`: when the socket thread received it (the session task may be behind); `origin`: the
    /// IP address a hello came from.
    pub async fn handle(&mut self, peer: Vec<u8>, msg: FromHandler, at: Instant, origin: Option<String>) {
        if let FromHandler::Hello(hello) = msg {
            return self.hello(peer, hello, at, origin).await;
        }
        let Some(key) = self.by_peer.get(&peer).cloned() else {
            // A connection this server does not know: it restarted, or dropped the instance.
            return self.send(&peer, &FromServer::HelloAgain);
        };
        let Some(session) = self.sessions.get_mut(&key) else { return };
        session.last_heard = session.last_heard.max(at);
        session.instance.seen(self.engine.clock().now());
        match msg {
            FromHandler::Heartbeat { .. } | FromHandler::Hello(_) | FromHandler::Result(_) => {}
            FromHandler::Goodbye { reason } => {
                tracing::info!(handler = %key.0, instance = %key.1, reason = reason.as_deref().unwrap_or(""), "handler instance is draining");
                if let Err(e) = self.engine.instance_draining(&key.0, &key.1).await {
                    tracing::warn!(error = %e, "could not record a draining instance");
                }
            }
            FromHandler::Bye => self.disconnect(&key, "the handler closed its link").await,
        }
    }

    /// A result no call awaited: its call ended (deadline, cancel, lost) or predates a restart.
    pub fn late_result(&mut self, peer: Vec<u8>, result: CallResult) {
        tracing::info!(run = %result.run_id, attempt = result.attempt, success = result.success,
            "result for a call that already ended; ignored (the run's history has its outcome)");
        if !self.by_peer.contains_key(&peer) {
            self.send(&peer, &FromServer::HelloAgain);
        }
    }

    /// Disconnects instances silent for too many heartbeat intervals.
    pub async fn check_liveness(&mut self) {
        // Silent for 3 intervals, less the check period: a killed handler shows disconnected
        // at most 3 intervals after its last heartbeat, hence after its death. A live one sends a
        // heartbeat every interval, so only one stalled for about 2 intervals is mistaken.
        let limit = self.config.heartbeat * MISSED_HEARTBEATS - liveness_check(self.config.heartbeat);
        let silent: Vec<InstanceKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.connected && s.last_heard.elapsed() > limit)
            .map(|(k, _)| k.clone())
            .collect();
        for key in silent {
            let why = format!("no heartbeat for {} ms", limit.as_millis());
            self.disconnect(&key, &why).await;
        }
    }

    async fn hello(&mut self, peer: Vec<u8>, hello: Hello, at: Instant, origin: Option<String>) {
        if let Some(expected) = &self.config.credential
            && hello.credential.as_deref() != Some(expected.as_str())
        {
            tracing::warn!(handler = %hello.handler_id, instance = %hello.instance_id, "hello refused: bad credential");
            return self.send(&peer, &FromServer::Refused { error: "invalid or missing credential".into() });
        }
        let key = (hello.handler_id.clone(), hello.instance_id.clone());
        if let Some(s) = self.sessions.get(&key)
            && s.session.is_some()
            && hello.session.is_some()
            && s.session != hello.session
        {
            // A new process under the same instance id: what the old one ran is gone.
            let failed = self.pending.fail_instance(&key.0, &key.1, "the handler restarted");
            if failed > 0 {
                tracing::warn!(handler = %key.0, instance = %key.1, calls_in_flight = failed,
                    "handler instance restarted with calls in flight");
            }
        }
        let reconnect = self.sessions.get(&key).is_some_and(|s| {
            s.connected
                && s.session == hello.session
                && !s.instance.is_draining()
                && s.instance.capacity == hello.capacity.max(1)
                && s.instance.methods.iter().eq(sorted(&hello.methods))
        });
        if reconnect {
            // The same live instance over a new connection: keep its link and calls in flight.
            // Welcome first, so no call reaches the new connection before it.
            self.welcome(&peer);
            let Some(s) = self.sessions.get_mut(&key) else { return };
            if s.peer != peer {
                if self.by_peer.get(&s.peer) == Some(&key) {
                    self.by_peer.remove(&s.peer);
                }
                s.peer = peer.clone();
                s.link.set_peer(peer.clone());
            }
            s.last_heard = s.last_heard.max(at);
            self.by_peer.insert(peer, key);
            return;
        }
        // Welcome first: registering makes the instance routable, and its first call must not
        // overtake the welcome.
        self.welcome(&peer);
        let link = match self.sessions.get(&key) {
            Some(old) => {
                if self.by_peer.get(&old.peer) == Some(&key) {
                    self.by_peer.remove(&old.peer);
                }
                old.link.set_peer(peer.clone());
                old.link.closed.store(false, Ordering::Release);
                old.link.clone()
            }
            None => Arc::new(NativeLink {
                key: key.clone(),
                closed: AtomicBool::new(false),
                peer: Mutex::new(peer.clone()),
                outbox: self.outbox.clone(),
                pending: self.pending.clone(),
            }),
        };
        let spec = InstanceSpec {
            handler_id: hello.handler_id.clone(),
            instance_id: hello.instance_id.clone(),
            protocol: "native".into(),
            // The connection's IP (libzmq's `Peer-Address`) and its ROUTER identity: instances on
            // one host are told apart by the identity.
            address: match origin {
                Some(ip) => format!("{ip} (connection {})", hex(&peer)),
                None => format!("connection {}", hex(&peer)),
            },
            methods: hello.methods.clone(),
            capacity: hello.capacity,
            link: link.clone(),
        };
        let instance = match self.engine.register_instance(spec).await {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, handler = %key.0, "could not register a handler instance");
                return self.send(&peer, &FromServer::Refused { error: format!("server error: {e}") });
            }
        };
        tracing::info!(handler = %key.0, instance = %key.1, capacity = hello.capacity,
            methods = ?hello.methods, agent = hello.agent.as_deref().unwrap_or(""), "native handler connected");
        self.by_peer.insert(peer.clone(), key.clone());
        let session =
            Session { peer, session: hello.session, link, instance, last_heard: at, connected: true };
        self.sessions.insert(key, session);
    }

    async fn disconnect(&mut self, key: &InstanceKey, why: &str) {
        let Some(s) = self.sessions.get_mut(key) else { return };
        if !s.connected {
            return;
        }
        s.connected = false;
        let peer = s.peer.clone();
        let link = s.link.clone();
        if self.by_peer.get(&peer) == Some(key) {
            self.by_peer.remove(&peer);
        }
        // Routing closed first, then the link, then what is in flight: no call slips between.
        self.engine.registry().disconnect(&key.0, &key.1);
        link.closed.store(true, Ordering::Release);
        let failed = self.pending.fail_instance(&key.0, &key.1, why);
        tracing::warn!(handler = %key.0, instance = %key.1, calls_in_flight = failed, %why, "native handler disconnected");
        if let Err(e) = self.engine.instance_disconnected(&key.0, &key.1).await {
            tracing::warn!(error = %e, "could not record a disconnected instance");
        }
    }

    /// The transport is stopping: every connected instance is disconnected (its calls in
    /// flight end `lost`), so the engine routes nothing more to links that can no longer send.
    pub async fn close_all(&mut self) {
        let keys: Vec<InstanceKey> =
            self.sessions.iter().filter(|(_, s)| s.connected).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.disconnect(&key, "the server's handler port closed").await;
        }
        self.pending.fail_all("the server's handler port closed");
        self.by_peer.clear();
    }

    fn welcome(&self, peer: &[u8]) {
        self.send(
            peer,
            &FromServer::Welcome {
                heartbeat_ms: u64::try_from(self.config.heartbeat.as_millis()).unwrap_or(1000),
                max_frame_bytes: self.config.max_frame_bytes as u64,
                server: concat!("schedulezero/", env!("CARGO_PKG_VERSION")).into(),
            },
        );
    }

    fn send(&self, peer: &[u8], msg: &FromServer) {
        self.outbox.send_native(peer, msg);
    }
}

/// How often native liveness is checked: a tenth of the heartbeat interval.
pub(crate) fn liveness_check(heartbeat: std::time::Duration) -> std::time::Duration {
    heartbeat / 10
}

fn sorted(methods: &[String]) -> Vec<&String> {
    let mut m: Vec<&String> = methods.iter().collect();
    m.sort();
    m.dedup();
    m
}
