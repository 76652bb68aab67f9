//! The source of "now". The engine never calls the system clock directly, so tests drive time.

use chrono::{DurationRound, TimeDelta, Utc};

use crate::Timestamp;

/// Tells the current time.
pub trait Clock: Send + Sync {
    /// The current instant, truncated to milliseconds (the precision of the store).
    fn now(&self) -> Timestamp;
}

/// Truncates an instant to the millisecond precision used everywhere.
pub fn to_millis(t: Timestamp) -> Timestamp {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        to_millis(Utc::now())
    }
}
