//! The engine: the scheduler loop, the handler registry, the dispatcher, outcome recording,
//! events, and embedded mode. It reaches handlers only through the [`link::Link`] trait, so local
//! Rust functions (embedded mode) and remote handlers (ZeroMQ, in `transport`) look the same.
//!
//! Module map (data flows down the list):
//! - [`engine`]: the API (schedules, run now, cancel, handlers) and service start-up/shutdown.
//! - `scheduler`: the loop that claims due slots from the store and hands runs on.
//! - `dispatcher`: routes runs to instances, commits attempt starts, enforces deadlines.
//! - [`link`]: the trait every handler connection implements; [`local`]: async Rust functions.
//! - [`registry`]: handler id → instances, round robin with capacity.
//! - `recorder`: group-commits attempt outcomes, then announces them.
//! - [`events`]: the broadcast the dashboard, SSE and metrics listen to.
//! - [`metrics`]: counters and histograms through the `metrics` facade (no-ops without a recorder).
//! - [`clock`]: system or virtual time; [`config`]: settings and defaults.
//! - [`embedded`]: the whole engine in-process on a SQLite file, with local handlers.

pub mod clock;
pub mod config;
mod dispatcher;
pub mod embedded;
pub mod engine;
pub mod events;
pub mod link;
pub mod local;
pub mod metrics;
mod recorder;
pub mod registry;
mod scheduler;
mod shared;

pub use dispatcher::AttemptReport;
pub use engine::{Engine, EngineError, ScheduleSpec};
pub use local::{CallContext, LocalHandler};
