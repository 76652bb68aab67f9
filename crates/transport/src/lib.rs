//! The server side of the handler links: one ZeroMQ ROUTER port that native handlers (DEALER)
//! and version-1 handlers (REQ, ../shared/COMPAT.md §3) both connect to, and the [`Link`]s the
//! engine's dispatcher calls them through.
//!
//! Module map:
//! - [`transport`]: start (bind, recognise known instances) and shutdown; the session task that
//!   takes every message other than call results.
//! - `router`: the socket actor — the thread that owns the ROUTER socket.
//! - `outbox`: how async code hands frames to that thread.
//! - `pending`: calls awaiting a result, by run id and attempt (results are matched there,
//!   on the socket thread, without a hop through the async runtime).
//! - `native`: native sessions — hello, heartbeats, goodbye, liveness — and their [`Link`].
//! - `v1`: the version-1 registration endpoint and the per-instance REQ socket [`Link`] with its
//!   background pinger.
//! - [`config`]: endpoints, heartbeat interval, limits.
//!
//! [`Link`]: schedulezero_engine::link::Link

pub mod config;
mod native;
mod outbox;
mod pending;
mod router;
pub mod transport;
mod v1;

pub use config::TransportConfig;
pub use transport::{Transport, TransportError};
