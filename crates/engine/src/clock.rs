//! Clocks the engine can sleep on: the system's, or a virtual one that tests move by hand.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::clock::{self as core_clock, Clock as _};
use tokio::sync::watch;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Tells the time and sleeps until a given instant.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Resolves once `now() >= t`.
    fn sleep_until(&self, t: Timestamp) -> Sleep;
}

/// Real time. Sleeps are taken in slices of at most a second, so a wall-clock jump (NTP, a
/// suspended laptop) delays nothing by more than a second.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        core_clock::SystemClock.now()
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        Box::pin(async move {
            loop {
                let left = t - core_clock::SystemClock.now();
                if left <= TimeDelta::zero() {
                    return;
                }
                let slice = left.to_std().unwrap_or_default().min(Duration::from_secs(1));
                tokio::time::sleep(slice).await;
            }
        })
    }
}

/// Virtual time for tests: it only moves when [`VirtualClock::advance`] or [`VirtualClock::set`]
/// is called, and every sleeper whose instant has come wakes at once.
#[derive(Debug)]
pub struct VirtualClock {
    now: watch::Sender<Timestamp>,
}

impl VirtualClock {
    pub fn new(start: Timestamp) -> Self {
        Self { now: watch::Sender::new(core_clock::to_millis(start)) }
    }

    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(core_clock::to_millis(t));
    }

    pub fn advance(&self, by: TimeDelta) {
        self.now.send_modify(|now| *now += by);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is dropped, sleep forever.
            if rx.wait_for(|now| *now >= t).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn sleep_until(&self, t: Timestamp) -> Sleep {
        (**self).sleep_until(t)
    }
}
