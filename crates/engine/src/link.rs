//! The engine's only way to reach a handler instance.
//!
//! A `Link` carries calls to one handler instance and brings back replies. Local async functions
//! ([`crate::local`]) are a `Link`; so are the native and version-1 ZeroMQ transports.

use std::time::Duration;

use async_trait::async_trait;
use schedulezero_core::Timestamp;
use schedulezero_core::run::RunId;
use serde_json::Value;
use thiserror::Error;

/// One call of a handler method: one attempt of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub run_id: RunId,
    /// 1 for the first attempt; `run_id + attempt` is unique, `run_id` is stable across retries,
    /// so a handler can deduplicate at-least-once delivery.
    pub attempt: u32,
    /// The un-jittered slot this run is for.
    pub scheduled_for: Timestamp,
    pub method: String,
    /// A JSON object.
    pub params: Value,
    /// How long the handler has, relative to when it receives the call (no clock sync needed).
    pub deadline: Duration,
}

/// A handler's answer to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The method succeeded; its result (a JSON value, `null` when it returned nothing).
    Success(Value),
    /// The method failed or is unknown to the handler.
    Failure { error: String, result: Option<Value> },
}

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// The instance is gone (disconnected, killed); the call may or may not have run.
    #[error("handler instance disconnected: {0}")]
    Disconnected(String),
    /// The instance refused the call without running it (over capacity, draining).
    #[error("handler instance refused the call: {0}")]
    Refused(String),
    /// The call was cancelled.
    #[error("call cancelled")]
    Cancelled,
}

/// A connection to one handler instance.
#[async_trait]
pub trait Link: Send + Sync + 'static {
    /// Sends a call and waits for its reply. The dispatcher enforces deadlines by dropping this
    /// future; a link should then tell the handler to stop if its protocol can.
    async fn call(&self, call: Call) -> Result<Reply, LinkError>;

    /// Asks the handler to cancel a call in flight; its `call` future should then resolve with
    /// `LinkError::Cancelled` (or the reply, if it won the race).
    async fn cancel(&self, run_id: RunId, attempt: u32);
}
