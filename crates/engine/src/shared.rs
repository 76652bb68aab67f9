//! What the engine's services share, and how tests see that the engine is idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use schedulezero_core::Timestamp;
use schedulezero_store::Store;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::events::EventBus;
use crate::metrics::EngineMetrics;
use crate::registry::Registry;

pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub registry: Arc<Registry>,
    pub events: EventBus,
    pub config: EngineConfig,
    /// Wakes the scheduler loop before its planned time (a new schedule, a retry).
    pub wake: Notify,
    pub activity: Activity,
    pub metrics: EngineMetrics,
}

impl Shared {
    pub fn wake_scheduler(&self) {
        self.activity.wakes.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Wakes the scheduler loop unless it is parked until `at` or earlier. A wake-up costs a claim
    /// transaction, and a client creating schedules far ahead would otherwise pay one per schedule.
    /// Call after the change is committed: a loop that is not parked may have read the store
    /// before it, and is woken; one parked read it after its last tick, which saw the store.
    pub fn wake_scheduler_before(&self, at: Timestamp) {
        let st = *self.activity.scheduler.borrow();
        if st.parked && st.quiet_until.is_some_and(|planned| planned <= at) {
            return;
        }
        self.wake_scheduler();
    }
}

/// Where the scheduler loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoopState {
    /// Nothing needs the scheduler before this instant (unless it is woken).
    pub quiet_until: Option<Timestamp>,
    /// Sleeping (as opposed to working).
    pub parked: bool,
    /// The wake-up count seen before the last tick: a later wake-up means work may be pending.
    pub wakes_seen: u64,
}

/// Counts the work the engine holds in memory, so tests can wait until it has none.
pub(crate) struct Activity {
    /// Runs handed to the dispatcher whose outcome is not yet committed.
    outstanding: AtomicUsize,
    /// Wake-ups requested so far.
    pub wakes: AtomicU64,
    pub scheduler: watch::Sender<LoopState>,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            outstanding: AtomicUsize::new(0),
            wakes: AtomicU64::new(0),
            scheduler: watch::Sender::new(LoopState { quiet_until: None, parked: false, wakes_seen: 0 }),
        }
    }

    pub fn runs_taken(&self, n: usize) {
        self.outstanding.fetch_add(n, Ordering::AcqRel);
    }

    pub fn runs_done(&self, n: usize) {
        let _ =
            self.outstanding.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(n)));
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }
}
