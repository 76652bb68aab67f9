//! Restart delays: exponential from the initial delay, capped, and reset once a process has
//! run for the stable period. A crash loop (five failures in a row) is reported, and retried at
//! the capped delay for as long as it lasts: never parked for good.

use std::time::Duration;

use crate::config::Restart;

/// Failures in a row from which a process is reported as crash-looping.
pub const CRASH_LOOP_AFTER: u32 = 5;

#[derive(Debug, Clone)]
pub struct Backoff {
    restart: Restart,
    failures: u32,
}

impl Backoff {
    pub fn new(restart: Restart) -> Backoff {
        Backoff { restart, failures: 0 }
    }

    /// Records an exit after running for `ran`; returns the delay before the next start.
    pub fn exited(&mut self, ran: Duration) -> Duration {
        if ran >= Duration::from_secs(self.restart.stable_after_s) {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.delay()
    }

    /// The delay for the current number of failures in a row.
    pub fn delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(32);
        let ms =
            self.restart.initial_delay_ms.saturating_mul(1u64 << doublings).min(self.restart.max_delay_ms);
        Duration::from_millis(ms)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn crash_loop(&self) -> bool {
        self.failures >= CRASH_LOOP_AFTER
    }

    /// Forgets past failures (a manual restart).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RestartPolicy;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_a_stable_run() {
        let mut b = Backoff::new(Restart {
            policy: RestartPolicy::Always,
            initial_delay_ms: 100,
            max_delay_ms: 1000,
            stable_after_s: 30,
        });
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..6).map(|_| b.exited(quick).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert!(b.crash_loop());
        assert_eq!(b.exited(Duration::from_secs(31)), Duration::from_millis(100));
        assert!(!b.crash_loop());
        assert_eq!(b.failures(), 1);
    }
}
