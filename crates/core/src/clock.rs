//! The source of "now". The engine never calls the system clock directly, so tests drive time.

use std::sync::Mutex;

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

/// A clock that only moves when told to: for tests of anything time-dependent.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self { now: Mutex::new(to_millis(start)) }
    }

    /// Moves time forward (or backward, for tests of clock jumps).
    pub fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to_millis(t);
    }

    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
