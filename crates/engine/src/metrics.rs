//! What the engine measures, through the `metrics` facade: fire slots claimed, attempts and runs
//! ended, dispatch latency and fire lateness.
//!
//! The engine installs no recorder. Without one (embedded mode, tests) every handle here is a
//! no-op; the server installs a Prometheus recorder before it starts the engine and serves it at
//! `/metrics`. Handles are registered once, when the engine starts, so the per-call paths do no
//! name lookup and no allocation: an increment is an atomic add, a histogram sample a push into
//! a lock-free buffer the exporter drains.

use metrics::{Counter, Histogram, Unit, counter, describe_counter, describe_histogram, histogram};
use schedulezero_core::run::{AttemptOutcome, RunState};

/// Fire slots claimed, by outcome.
pub const FIRES: &str = "schedulezero_fires_total";
/// Runs that reached a final state through an ended attempt, by state.
pub const RUNS_FINISHED: &str = "schedulezero_runs_finished_total";
/// Ended attempts, by outcome.
pub const ATTEMPTS: &str = "schedulezero_attempts_total";
/// From when a run became due to when its call was handed to the handler's link.
pub const DISPATCH_LATENCY: &str = "schedulezero_dispatch_latency_seconds";
/// A scheduled run's first attempt start minus its slot time.
pub const FIRE_LATENESS: &str = "schedulezero_fire_lateness_seconds";

/// Histogram bucket bounds (seconds) for a scheduler: sub-millisecond dispatch on a quiet
/// server up to an hour late after downtime.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// Gives the installed recorder each engine metric's help text and unit. Call it after
/// installing the recorder (descriptions go to the recorder installed at the time).
pub fn describe() {
    describe_counter!(
        FIRES,
        Unit::Count,
        "Fire slots claimed by this node's scheduler, by what became of them. outcome=run: a run \
         due at once, handed to the dispatcher; later: a run due later (jitter); queued: a run \
         waiting for the schedule's active run (overlap queue_one); skipped: recorded skipped \
         (overlap); missed: recorded missed (misfire policy), each slot of a folded row counted."
    );
    describe_counter!(
        RUNS_FINISHED,
        Unit::Count,
        "Runs that reached a final state when an attempt ended (succeeded, failed, timed_out, \
         cancelled, interrupted), counted once committed. Runs ended without an attempt (missed, \
         skipped, cancelled before they started) are not counted here."
    );
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Attempts ended, by outcome (succeeded, failed, timed_out, cancelled, lost, interrupted)."
    );
    describe_histogram!(
        DISPATCH_LATENCY,
        Unit::Seconds,
        "Seconds from when a run became due (its dispatch time: slot plus jitter, or retry time; \
         a run-now call's creation) to when its call was handed to the handler instance's link. \
         Includes any wait for a free instance. Every attempt sent."
    );
    describe_histogram!(
        FIRE_LATENESS,
        Unit::Seconds,
        "Seconds from a scheduled run's slot time to the start of its first attempt (jitter \
         included), for first attempts that were sent. Run-now calls are not counted."
    );
}

/// The engine's handles, registered once at start.
pub(crate) struct EngineMetrics {
    /// One per fate: run, later, queued, skipped, missed.
    fires: [Counter; 5],
    /// One per final state.
    runs_finished: Vec<(RunState, Counter)>,
    /// One per attempt outcome, in the order of `AttemptOutcome::ALL`.
    attempts: Vec<(AttemptOutcome, Counter)>,
    dispatch_latency: Histogram,
    fire_lateness: Histogram,
}

impl EngineMetrics {
    /// Registers with the recorder installed now (none: no-op handles).
    pub fn register() -> Self {
        Self {
            fires: ["run", "later", "queued", "skipped", "missed"].map(|o| counter!(FIRES, "outcome" => o)),
            runs_finished: RunState::ALL
                .into_iter()
                .filter(|s| s.is_terminal() && !matches!(s, RunState::Missed | RunState::Skipped))
                .map(|s| (s, counter!(RUNS_FINISHED, "state" => s.as_str())))
                .collect(),
            attempts: AttemptOutcome::ALL
                .into_iter()
                .map(|o| (o, counter!(ATTEMPTS, "outcome" => o.as_str())))
                .collect(),
            dispatch_latency: histogram!(DISPATCH_LATENCY),
            fire_lateness: histogram!(FIRE_LATENESS),
        }
    }

    /// What one claim did with the slots it took.
    pub fn claimed(&self, batch: &schedulezero_store::ClaimBatch) {
        let counts = [batch.ready.len(), batch.later, batch.queued, batch.skipped, batch.missed];
        for (counter, n) in self.fires.iter().zip(counts) {
            counter.increment(n as u64);
        }
    }

    pub fn attempt_ended(&self, outcome: AttemptOutcome) {
        if let Some((_, c)) = self.attempts.iter().find(|(o, _)| *o == outcome) {
            c.increment(1);
        }
    }

    pub fn run_finished(&self, state: RunState) {
        if let Some((_, c)) = self.runs_finished.iter().find(|(s, _)| *s == state) {
            c.increment(1);
        }
    }

    pub fn dispatched(&self, latency: chrono::TimeDelta) {
        self.dispatch_latency.record(seconds(latency));
    }

    pub fn first_attempt_started(&self, lateness: chrono::TimeDelta) {
        self.fire_lateness.record(seconds(lateness));
    }
}

/// Seconds, clamped at zero (a clock step back must not give a negative latency).
fn seconds(d: chrono::TimeDelta) -> f64 {
    let s = d.num_microseconds().map_or(d.num_seconds() as f64, |us| us as f64 / 1e6);
    s.max(0.0)
}
