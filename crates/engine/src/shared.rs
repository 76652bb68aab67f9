//! What the engine's services share, and how tests see that the engine is idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

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
    /// Of those, runs the dispatcher holds until their time (claimed ahead of it).
    held: AtomicUsize,
    /// The earliest time a held run is due (µs since the epoch; `i64::MAX`: none held).
    held_until: AtomicI64,
    /// Wake-ups requested so far.
    pub wakes: AtomicU64,
    pub scheduler: watch::Sender<LoopState>,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            outstanding: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            held_until: AtomicI64::new(i64::MAX),
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

    /// What the dispatcher holds for later: how many runs, and when the earliest is due (`None`:
    /// nothing held). The count is stored first: a run released is counted as due before the time
    /// it was held for is withdrawn, so `Engine::idle` never sees it in neither.
    pub fn set_held(&self, count: usize, until: Option<Timestamp>) {
        self.held.store(count, Ordering::Release);
        self.held_until.store(until.map_or(i64::MAX, |t| t.timestamp_micros()), Ordering::Release);
    }

    /// Whether a held run is due at `now` (the dispatcher is about to release it).
    pub fn held_due(&self, now: Timestamp) -> bool {
        self.held_until.load(Ordering::Acquire) <= now.timestamp_micros()
    }

    /// Runs in memory that are due: taken and not finished, less those held for later.
    pub fn due_outstanding(&self) -> usize {
        // `outstanding` first: a run whose time comes between the two reads leaves `held` while
        // still counted in `outstanding`, so it is seen as due, never lost from both.
        let taken = self.outstanding();
        taken.saturating_sub(self.held.load(Ordering::Acquire))
    }
}
