//! The transport's settings and their defaults.

use std::time::Duration;

use schedulezero_protocol::limits;

/// How the handler port is bound and how handlers are watched.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Where the ROUTER binds (default `tcp://127.0.0.1:4242`; port 0 picks a free port).
    pub endpoint: String,
    /// The heartbeat interval native handlers are told to use (default 1 s). An instance silent
    /// for [`limits::MISSED_HEARTBEATS`] intervals is disconnected.
    pub heartbeat: Duration,
    /// Frames larger than this are dropped by libzmq before allocation, with their sender's
    /// connection (default [`limits::MAX_FRAME_BYTES`]).
    pub max_frame_bytes: usize,
    /// When set, native hellos must carry this credential.
    pub credential: Option<String>,
    /// How often an idle version-1 instance is pinged (default 2 s).
    pub v1_ping_every: Duration,
    /// How long a version-1 ping may take (default 1.5 s). Two failed pings in a row disconnect
    /// the instance: a killed one shows disconnected in well under 10 s.
    pub v1_ping_timeout: Duration,
    /// A version-1 instance down this long is forgotten: its thread stops pinging, and it is not
    /// pinged again at the next start (default 10 min). Its history stays in the store; if it
    /// comes back it registers as the original handlers always did.
    pub v1_forget_after: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            endpoint: "tcp://127.0.0.1:4242".into(),
            heartbeat: limits::DEFAULT_HEARTBEAT,
            max_frame_bytes: limits::MAX_FRAME_BYTES,
            credential: None,
            v1_ping_every: Duration::from_secs(2),
            v1_ping_timeout: Duration::from_millis(1500),
            v1_forget_after: Duration::from_secs(600),
        }
    }
}
