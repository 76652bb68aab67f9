//! [`CallContext`]: what a method knows about the call it is serving, and how it learns that the
//! call was cancelled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

/// One call as its method sees it: which run and attempt, which fire slot, how long it may take,
/// and whether it should stop.
///
/// The call is cancelled when the server sends `cancel` for it or when its deadline passes. A
/// method should then return soon (any result it returns is still reported); one that has not
/// returned 2 s later is dropped and reported as `cancelled` or `deadline exceeded`.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The run this call is an attempt of; stable across retries.
    run_id: Uuid,
    /// 1 for the first attempt.
    attempt: u32,
    /// The fire slot the run is for (not when it started).
    scheduled_for: DateTime<Utc>,
    /// When the server stops waiting: the call's relative `deadline_ms` added to when it arrived.
    deadline: Instant,
    /// Cancelled by the server's `cancel`, or at the deadline.
    cancellation: CancellationToken,
}

impl CallContext {
    pub(crate) fn new(
        run_id: Uuid,
        attempt: u32,
        scheduled_for: DateTime<Utc>,
        deadline: Instant,
        cancellation: CancellationToken,
    ) -> Self {
        CallContext { run_id, attempt, scheduled_for, deadline, cancellation }
    }

    /// The run this call is an attempt of; stable across retries (use it as an idempotency key).
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// Which attempt of the run this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The fire slot the run is for: what a report "for 08:00" should be about, even when it runs
    /// late or is retried.
    pub fn scheduled_for(&self) -> DateTime<Utc> {
        self.scheduled_for
    }

    /// When the call's time is up (the call is cancelled then).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether the call has been cancelled (by the server, or because its deadline passed).
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// Completes when the call is cancelled; race it against the work with `tokio::select!`.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancellation.cancelled()
    }

    /// The call's cancellation token, to hand to work the method spawns (`child_token()` gives
    /// one that is cancelled with the call).
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancellation
    }
}
