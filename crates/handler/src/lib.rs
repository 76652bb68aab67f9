//! Rust SDK for ScheduleZero handlers: serve async methods to a ScheduleZero server over the
//! native protocol (a DEALER socket connected to the server's ROUTER; `SZ1` + JSON frames).
//!
//! Modules (all private; the types below are re-exported at the crate root):
//! - `builder`: [`HandlerBuilder`] declares ids, capacity, credential and methods, and checks
//!   them.
//! - `handler`: [`Handler`] with [`Handler::run`] / [`Handler::run_until`] and its
//!   [`LinkState`] watch.
//! - `session`: one run — reacts to the server's messages, finished calls, timers and shutdown.
//! - `link`: the registration state machine (hello with backoff until welcomed, then heartbeats).
//! - `socket`: the socket actor — a thread owning the ZeroMQ DEALER, bridged to tokio.
//! - `calls`: the calls in flight — one task each, capacity, de-duplication, cancellation and
//!   the deadline, with a grace period.
//! - `context`: [`CallContext`], what a method knows about its call.
//! - `method`: methods behind one type-erased signature.
//! - `shutdown`: SIGTERM/SIGINT (or the caller's future) as a stream of requests.
//! - `error`: [`MethodError`], [`BuildError`], [`RunError`].
//!
//! ```no_run
//! use schedulezero_handler::{CallContext, Handler, LinkState, MethodError};
//! use serde_json::{Value, json};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let handler = Handler::builder("reports")
//!     .instance_id("host-1")
//!     .capacity(8)
//!     .method("build", |ctx: CallContext, params: Value| async move {
//!         tokio::select! {
//!             _ = ctx.cancelled() => Err(MethodError::new("cancelled")),
//!             _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {
//!                 Ok(json!({"for": ctx.scheduled_for(), "params": params}))
//!             }
//!         }
//!     })
//!     .build()?;
//! let mut status = handler.status();
//! tokio::spawn(async move {
//!     while status.changed().await.is_ok() {
//!         if *status.borrow_and_update() == LinkState::Registered {
//!             println!("registered");
//!         }
//!     }
//! });
//! // Serves until SIGTERM or SIGINT, then drains and returns.
//! handler.run("tcp://127.0.0.1:4242").await?;
//! # Ok(())
//! # }
//! ```

mod builder;
mod calls;
mod context;
mod error;
mod handler;
mod link;
mod method;
mod session;
mod shutdown;
mod socket;

pub use builder::{
    DEFAULT_SERVER_ENDPOINT, HandlerBuilder, INSTANCE_ID_ENV, SERVER_ENDPOINT_ENV, default_instance_id,
    default_server_endpoint, server_endpoint,
};
pub use calls::CANCEL_GRACE;
pub use context::CallContext;
pub use error::{BuildError, MethodError, RunError};
pub use handler::Handler;
pub use link::LinkState;
