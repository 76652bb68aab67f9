//! Version-1 handlers (../shared/COMPAT.md §3): the registration endpoint (`ping`, `register`,
//! `report_status` over REQ/REP on the shared ROUTER port) and the link that calls an instance.
//!
//! Each instance gets one thread owning one REQ socket connected to the address it registered.
//! A version-1 handler serves one request at a time, so the instance's capacity is 1 and the
//! thread sends one call, waits for its reply, and only then takes the next. A REQ socket whose
//! reply never came cannot be used again: it is closed and a new one opened. Liveness is the
//! same thread's business: an idle instance is pinged in the background, one with a call in
//! flight is alive until that call's deadline. Nothing here blocks a request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use schedulezero_core::run::RunId;
use schedulezero_engine::Engine;
use schedulezero_engine::link::{Call, Link, LinkError, Reply};
use schedulezero_engine::registry::InstanceSpec;
use schedulezero_protocol::v1::{self, CallReply, Registration, Request, reply};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::config::TransportConfig;
use crate::outbox::Outbox;

/// `(handler_id, address)`: a version-1 instance is known by the endpoint it bound.
type V1Key = (String, String);

/// What an instance's thread reports to the session task.
pub(crate) enum V1Event {
    Up(V1Key),
    /// Answered a ping (its thread had it up already): shown as its last sighting.
    Seen(V1Key),
    Down(V1Key, String),
    /// Down for longer than `v1_forget_after`: its thread has stopped.
    Forget(V1Key),
}

/// The registration endpoint and every version-1 instance, owned by the session task.
pub(crate) struct V1Endpoint {
    engine: Arc<Engine>,
    outbox: Arc<Outbox>,
    ctx: zmq::Context,
    config: TransportConfig,
    events: mpsc::UnboundedSender<V1Event>,
    instances: HashMap<V1Key, V1Instance>,
}

struct V1Instance {
    link: Arc<V1Link>,
    methods: Vec<String>,
    /// Whether the engine has it as connected.
    up: bool,
}

impl V1Endpoint {
    pub fn new(
        engine: Arc<Engine>,
        outbox: Arc<Outbox>,
        ctx: zmq::Context,
        config: TransportConfig,
        events: mpsc::UnboundedSender<V1Event>,
    ) -> Self {
        Self { engine, outbox, ctx, config, events, instances: HashMap::new() }
    }

    /// Starts watching an instance the store remembers: it is connected again as soon as it
    /// answers a ping, without registering anew.
    pub fn recall(&mut self, handler_id: String, address: String, methods: Vec<String>) {
        let key = (handler_id, address);
        if self.instances.contains_key(&key) {
            return;
        }
        let link =
            V1Link::spawn(key.clone(), self.ctx.clone(), self.config.clone(), self.events.clone(), true);
        self.instances.insert(key, V1Instance { link, methods, up: false });
    }

    /// Answers one request on the registration endpoint.
    pub async fn request(&mut self, peer: Vec<u8>, body: Vec<u8>) {
        let answer = match Request::parse(&body) {
            Err(e) => reply::error(&e.0),
            Ok(req) => match req.method.as_str() {
                "ping" => reply::pong(),
                "register" => match Registration::from_params(&req.params) {
                    Ok(r) => self.register(r).await,
                    Err(why) => reply::error(&why),
                },
                "report_status" => self.report_status(&req).await,
                other => reply::unknown_method(other),
            },
        };
        let frame = serde_json::to_vec(&answer).unwrap_or_default();
        self.outbox.send(&[&peer, b"", &frame]);
    }

    async fn register(&mut self, r: Registration) -> Value {
        let known = self.engine.registry().knows_handler(&r.handler_id)
            || self.instances.keys().any(|(h, _)| *h == r.handler_id);
        let status = if known { "re-registered" } else { "registered" };
        let key = (r.handler_id.clone(), r.address.clone());
        let link = match self.instances.get(&key) {
            Some(i) => i.link.clone(),
            None => {
                V1Link::spawn(key.clone(), self.ctx.clone(), self.config.clone(), self.events.clone(), false)
            }
        };
        link.reset();
        match self.connect(&key, link.clone(), r.methods.clone()).await {
            Ok(()) => {
                tracing::info!(handler = %r.handler_id, address = %r.address, methods = ?r.methods, %status, "version-1 handler registered");
                reply::registered(&r, status)
            }
            Err(e) => {
                tracing::error!(error = %e, handler = %r.handler_id, "could not register a version-1 handler");
                reply::error(&format!("Registration failed: {e}"))
            }
        }
    }

    async fn connect(&mut self, key: &V1Key, link: Arc<V1Link>, methods: Vec<String>) -> Result<(), String> {
        let spec = InstanceSpec {
            handler_id: key.0.clone(),
            instance_id: key.1.clone(),
            protocol: "v1".into(),
            address: key.1.clone(),
            methods: methods.clone(),
            capacity: 1,
            link: link.clone(),
        };
        self.engine.register_instance(spec).await.map_err(|e| e.to_string())?;
        self.instances.insert(key.clone(), V1Instance { link, methods, up: true });
        Ok(())
    }

    async fn report_status(&mut self, req: &Request) -> Value {
        let Some(handler_id) = req.str_param("handler_id") else {
            return reply::error("Missing 'handler_id'");
        };
        let status = req.str_param("status").unwrap_or("online").to_string();
        let keys: Vec<V1Key> = self.instances.keys().filter(|(h, _)| h == handler_id).cloned().collect();
        if keys.is_empty() {
            return reply::not_registered();
        }
        if status == "offline" {
            for key in keys {
                self.down(&key, "the handler reported itself offline").await;
            }
        }
        reply::status(handler_id, &status)
    }

    /// What an instance's thread found out.
    pub async fn event(&mut self, event: V1Event) {
        match event {
            V1Event::Up(key) => {
                let Some(inst) = self.instances.get(&key) else { return };
                if inst.up {
                    return;
                }
                let (link, methods) = (inst.link.clone(), inst.methods.clone());
                tracing::info!(handler = %key.0, address = %key.1, "version-1 handler answers again");
                if let Err(e) = self.connect(&key, link, methods).await {
                    tracing::warn!(error = %e, "could not record a version-1 instance");
                }
            }
            V1Event::Seen(key) => {
                if self.instances.get(&key).is_some_and(|i| !i.up) {
                    // Marked down here (an offline report, or a stale down) but it answers.
                    return Box::pin(self.event(V1Event::Up(key))).await;
                }
                if let Some(instance) = self.engine.registry().get(&key.0, &key.1) {
                    instance.seen(self.engine.clock().now());
                }
            }
            V1Event::Down(key, why) => self.down(&key, &why).await,
            V1Event::Forget(key) => {
                if self.instances.get(&key).is_some_and(|i| !i.up) {
                    tracing::info!(handler = %key.0, address = %key.1, "version-1 instance forgotten after a long absence");
                    self.instances.remove(&key);
                }
            }
        }
    }

    async fn down(&mut self, key: &V1Key, why: &str) {
        let Some(inst) = self.instances.get_mut(key) else { return };
        if !inst.up {
            return;
        }
        inst.up = false;
        tracing::warn!(handler = %key.0, address = %key.1, %why, "version-1 handler disconnected");
        if let Err(e) = self.engine.instance_disconnected(&key.0, &key.1).await {
            tracing::warn!(error = %e, "could not record a disconnected instance");
        }
    }

    /// The transport is stopping: every instance thread stops (a call in flight ends `lost`)
    /// and every instance is disconnected, so the engine routes nothing more to them.
    pub async fn close_all(&mut self) {
        let keys: Vec<V1Key> = self.instances.keys().cloned().collect();
        for key in &keys {
            self.down(key, "the server's handler port closed").await;
        }
        for (_, inst) in self.instances.drain() {
            let _ = inst.link.commands.send(Command::Stop);
        }
    }
}

enum Command {
    Call {
        frame: Vec<u8>,
        key: (RunId, u32),
        deadline: Instant,
        reply: oneshot::Sender<Result<Reply, LinkError>>,
    },
    Cancel((RunId, u32)),
    /// The handler registered again: it may be a new process, so start from a fresh socket.
    Reset,
    Stop,
}

static V1_THREADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Calls one version-1 instance through its thread.
pub(crate) struct V1Link {
    commands: std_mpsc::Sender<Command>,
}

impl V1Link {
    fn spawn(
        key: V1Key,
        ctx: zmq::Context,
        config: TransportConfig,
        events: mpsc::UnboundedSender<V1Event>,
        recalled: bool,
    ) -> Arc<V1Link> {
        let (tx, rx) = std_mpsc::channel();
        // A counter, not the handler id: thread names must not carry what a peer sent.
        let name = format!("sz-v1-{}", V1_THREADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let worker = Worker {
            key,
            ctx,
            config,
            events,
            commands: rx,
            socket: None,
            up: !recalled,
            failures: 0,
            down_since: recalled.then(Instant::now),
            deferred: None,
        };
        if let Err(e) = std::thread::Builder::new().name(name).spawn(move || worker.run(recalled)) {
            tracing::error!(error = %e, "could not start a version-1 link thread");
        }
        Arc::new(V1Link { commands: tx })
    }

    fn reset(&self) {
        let _ = self.commands.send(Command::Reset);
    }
}

impl Drop for V1Link {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

#[async_trait]
impl Link for V1Link {
    async fn call(&self, call: Call) -> Result<Reply, LinkError> {
        let (tx, rx) = oneshot::channel();
        let frame = Request::encode(&call.method, &call.params);
        let command = Command::Call {
            frame,
            key: (call.run_id, call.attempt),
            deadline: Instant::now() + call.deadline,
            reply: tx,
        };
        if self.commands.send(command).is_err() {
            return Err(LinkError::Disconnected("the version-1 link is closed".into()));
        }
        rx.await.unwrap_or_else(|_| Err(LinkError::Disconnected("the version-1 link is closed".into())))
    }

    async fn cancel(&self, run_id: RunId, attempt: u32) {
        let _ = self.commands.send(Command::Cancel((run_id, attempt)));
    }
}

/// How a wait for a reply ended.
enum Wait {
    Reply(Vec<u8>),
    TimedOut,
    Cancelled,
    /// The handler registered again meanwhile: a new process, which will never answer.
    Reset,
    Stop,
}

/// The thread that owns an instance's REQ socket.
struct Worker {
    key: V1Key,
    ctx: zmq::Context,
    config: TransportConfig,
    events: mpsc::UnboundedSender<V1Event>,
    commands: std_mpsc::Receiver<Command>,
    socket: Option<zmq::Socket>,
    /// Whether the session task was last told the instance is up.
    up: bool,
    /// Pings failed in a row.
    failures: u32,
    /// Since when it has been down (None: up).
    down_since: Option<Instant>,
    /// A command that arrived while a ping was in flight, taken next.
    deferred: Option<Command>,
}

impl Worker {
    fn run(mut self, ping_first: bool) {
        let mut next_ping =
            if ping_first { Instant::now() } else { Instant::now() + self.config.v1_ping_every };
        loop {
            if self.down_since.is_some_and(|d| d.elapsed() > self.config.v1_forget_after) {
                let _ = self.events.send(V1Event::Forget(self.key.clone()));
                return;
            }
            let wait = next_ping.saturating_duration_since(Instant::now());
            let command = match self.deferred.take() {
                Some(c) => Ok(c),
                None => self.commands.recv_timeout(wait),
            };
            match command {
                Ok(Command::Call { frame, key, deadline, reply }) => {
                    let stop = self.call(frame, key, deadline, reply);
                    if stop {
                        return;
                    }
                    next_ping = Instant::now() + self.config.v1_ping_every;
                }
                Ok(Command::Cancel(_)) => {}
                Ok(Command::Reset) => {
                    self.socket = None;
                    self.failures = 0;
                    self.up = true;
                    self.down_since = None;
                    next_ping = Instant::now() + self.config.v1_ping_every;
                }
                Ok(Command::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    if self.ping() {
                        return;
                    }
                    // After a failure, check again sooner so a dead instance is seen quickly.
                    let every = self.config.v1_ping_every;
                    next_ping = Instant::now() + if self.failures > 0 { every / 2 } else { every };
                }
            }
        }
    }

    /// Sends one call and waits for its reply, its deadline, or a cancel. True: stop the thread.
    fn call(
        &mut self,
        frame: Vec<u8>,
        key: (RunId, u32),
        deadline: Instant,
        reply: oneshot::Sender<Result<Reply, LinkError>>,
    ) -> bool {
        // A little past the deadline: the dispatcher's timer ends the call first, as timed out,
        // and its cancel ends this wait.
        let result = match self.exchange(&frame, deadline + Duration::from_millis(200), Some(key)) {
            Ok(Wait::Reply(bytes)) => {
                self.alive();
                Ok(match v1::interpret_reply(&bytes) {
                    CallReply::Success(v) => Reply::Success(v),
                    CallReply::Failure { error, reply } => Reply::Failure { error, result: reply },
                })
            }
            Ok(Wait::TimedOut) => Err(LinkError::Disconnected("no reply before the call's deadline".into())),
            Ok(Wait::Cancelled) => Err(LinkError::Cancelled),
            Ok(Wait::Reset) => {
                self.failures = 0;
                Err(LinkError::Disconnected(
                    "the handler registered again during the call (restarted?)".into(),
                ))
            }
            Ok(Wait::Stop) => {
                let _ = reply.send(Err(LinkError::Disconnected("the server is stopping".into())));
                return true;
            }
            Err(e) => Err(LinkError::Disconnected(format!("socket error: {e}"))),
        };
        let _ = reply.send(result);
        false
    }

    /// Pings an idle instance. True: stop the thread.
    fn ping(&mut self) -> bool {
        let frame = Request::encode("ping", &Value::Object(Default::default()));
        let deadline = Instant::now() + self.config.v1_ping_timeout;
        match self.exchange(&frame, deadline, None) {
            Ok(Wait::Reply(bytes)) if v1::interpret_reply(&bytes).is_success() => self.alive(),
            Ok(Wait::Stop) => return true,
            Ok(Wait::Reset) => {
                // Registered again: up, from a fresh socket (this one was dropped).
                self.failures = 0;
                self.up = true;
                self.down_since = None;
            }
            _ => {
                self.failures += 1;
                if self.failures >= 2 && self.up {
                    self.up = false;
                    self.down_since = Some(Instant::now());
                    let why = format!("{} pings unanswered", self.failures);
                    let _ = self.events.send(V1Event::Down(self.key.clone(), why));
                }
            }
        }
        false
    }

    fn alive(&mut self) {
        self.failures = 0;
        let event = if self.up { V1Event::Seen(self.key.clone()) } else { V1Event::Up(self.key.clone()) };
        self.up = true;
        self.down_since = None;
        let _ = self.events.send(event);
    }

    /// One request and its reply on the REQ socket. Anything but a reply closes the socket
    /// (a REQ socket that missed its reply is stuck for good); the next exchange opens a new one.
    fn exchange(&mut self, frame: &[u8], deadline: Instant, call: Option<(RunId, u32)>) -> zmq::Result<Wait> {
        let socket = match self.socket.take() {
            Some(s) => s,
            None => self.open()?,
        };
        socket.send(frame, 0)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Wait::TimedOut);
            }
            let slice = left.min(Duration::from_millis(50));
            if socket.poll(zmq::POLLIN, slice.as_millis() as i64)? > 0 {
                let bytes = socket.recv_bytes(0)?;
                self.socket = Some(socket);
                return Ok(Wait::Reply(bytes));
            }
            // Between polls: a cancel of this call, or a stop, ends the wait.
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Cancel(k)) if Some(k) == call => return Ok(Wait::Cancelled),
                    Ok(Command::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => return Ok(Wait::Stop),
                    Ok(command @ Command::Call { .. }) if call.is_none() && self.deferred.is_none() => {
                        // A call while a ping is in flight (the instance was idle): it goes next.
                        self.deferred = Some(command);
                    }
                    Ok(Command::Call { reply, .. }) => {
                        // Capacity is 1: the dispatcher sends one call at a time.
                        let _ = reply.send(Err(LinkError::Refused(
                            "a version-1 handler takes one call at a time".into(),
                        )));
                    }
                    Ok(Command::Reset) => return Ok(Wait::Reset),
                    Ok(Command::Cancel(_)) => {}
                    Err(std_mpsc::TryRecvError::Empty) => break,
                }
            }
        }
    }

    fn open(&self) -> zmq::Result<zmq::Socket> {
        let s = self.ctx.socket(zmq::REQ)?;
        s.set_linger(0)?;
        s.set_maxmsgsize(self.config.max_frame_bytes as i64)?;
        s.set_reconnect_ivl(100)?;
        s.set_reconnect_ivl_max(1000)?;
        s.connect(&self.key.1)?;
        Ok(s)
    }
}
