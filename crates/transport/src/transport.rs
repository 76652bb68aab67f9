//! Starting and stopping the transport, and the session task.
//!
//! The session task takes every message except call results (those are matched on the socket
//! thread): hellos, heartbeats, goodbyes, version-1 registrations, and what the version-1
//! threads report. It checks native liveness every tenth of a heartbeat interval.

use std::sync::Arc;
use std::thread::JoinHandle;

use schedulezero_engine::Engine;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TransportConfig;
use crate::native::NativeSessions;
use crate::outbox::Outbox;
use crate::pending::Pending;
use crate::router::{self, Inbound};
use crate::v1::{V1Endpoint, V1Event};

#[derive(Debug, Error)]
pub enum TransportError {
    #[error(
        "the handler endpoint {0} is already in use; stop what holds it or choose another port (0 picks a free one)"
    )]
    AddressInUse(String),
    #[error("cannot bind the handler endpoint {0}: {1}")]
    Bind(String, String),
    #[error("invalid transport configuration: {0}")]
    Config(String),
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
    #[error(transparent)]
    Engine(#[from] schedulezero_engine::EngineError),
}

/// The running transport: the handler port and the links it serves.
pub struct Transport {
    endpoint: String,
    outbox: Arc<Outbox>,
    stop: CancellationToken,
    session: Option<tokio::task::JoinHandle<()>>,
    router: Option<JoinHandle<()>>,
}

impl Transport {
    /// Binds the handler port and starts serving. Version-1 instances the store remembers are
    /// pinged at once and connected again when they answer.
    pub async fn start(engine: Arc<Engine>, config: TransportConfig) -> Result<Transport, TransportError> {
        if config.heartbeat < std::time::Duration::from_millis(10) {
            return Err(TransportError::Config(format!(
                "the heartbeat interval must be at least 10 ms, got {:?}",
                config.heartbeat
            )));
        }
        // Before binding, so a failure leaves no socket behind.
        let known = engine.known_instances().await?;
        let ctx = zmq::Context::new();
        let pending = Arc::new(Pending::default());
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let (endpoint, outbox, router) = router::start(&ctx, &config, pending.clone(), inbound_tx)?;
        let outbox = Arc::new(outbox);
        let (v1_tx, v1_rx) = mpsc::unbounded_channel();
        let mut v1 = V1Endpoint::new(engine.clone(), outbox.clone(), ctx.clone(), config.clone(), v1_tx);
        let now = engine.clock().now();
        let forget = chrono::TimeDelta::from_std(config.v1_forget_after).unwrap_or(chrono::TimeDelta::MAX);
        for known in known {
            if known.protocol == "v1" && now - known.last_seen <= forget {
                v1.recall(known.handler_id, known.address, known.methods);
            }
        }
        let native = NativeSessions::new(engine, outbox.clone(), pending, config.clone());
        let stop = CancellationToken::new();
        let session = tokio::spawn(sessions(native, v1, inbound_rx, v1_rx, config, stop.clone()));
        tracing::info!(%endpoint, "handler endpoint bound");
        Ok(Transport { endpoint, outbox, stop, session: Some(session), router: Some(router) })
    }

    /// The bound endpoint, with the real port when 0 was asked for.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Closes the handler port. Stop the engine first so calls in flight can finish.
    pub async fn shutdown(mut self) {
        self.close().await;
    }

    async fn close(&mut self) {
        self.stop.cancel();
        if let Some(session) = self.session.take() {
            let _ = session.await;
        }
        self.outbox.stop();
        if let Some(router) = self.router.take() {
            let _ = tokio::task::spawn_blocking(move || router.join()).await;
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop.cancel();
        self.outbox.stop();
    }
}

async fn sessions(
    mut native: NativeSessions,
    mut v1: V1Endpoint,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    mut v1_events: mpsc::UnboundedReceiver<V1Event>,
    config: TransportConfig,
    stop: CancellationToken,
) {
    // Checked often so a silent instance is disconnected soon after its third missed heartbeat.
    let mut liveness = tokio::time::interval(crate::native::liveness_check(config.heartbeat));
    liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Messages first: liveness must not be judged while heartbeats wait in the queue.
            biased;
            m = inbound.recv() => match m {
                Some(Inbound::Native { peer, msg, at, origin }) => native.handle(peer, msg, at, origin).await,
                Some(Inbound::LateResult { peer, result }) => native.late_result(peer, result),
                Some(Inbound::V1 { peer, body }) => v1.request(peer, body).await,
                None => break,
            },
            Some(e) = v1_events.recv() => v1.event(e).await,
            _ = liveness.tick() => native.check_liveness().await,
            _ = stop.cancelled() => break,
        }
    }
    native.close_all().await;
    v1.close_all().await;
}
