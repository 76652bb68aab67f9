//! Runs (one per fire slot, or per "run now"), their attempts, and the run-state machine.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Timestamp;
use crate::policy::RetryPolicy;
use crate::schedule::{ScheduleId, Target};

pub type RunId = Uuid;

/// The one run-state enum (ARCHITECTURE.md, Identity, states, durability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting to be dispatched (at `dispatch_at`, or after the active run when queued).
    Pending,
    /// An attempt was sent, or is being sent, to a handler.
    Running,
    /// An attempt failed; the next one waits for its backoff.
    Retrying,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Not run because another run of the schedule was active (overlap policy).
    Skipped,
    /// Not run because the slot passed while nobody could fire it (misfire policy).
    Missed,
    /// The server stopped while an attempt was running, and no attempt is left.
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 10] = [
        RunState::Pending,
        RunState::Running,
        RunState::Retrying,
        RunState::Succeeded,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Cancelled,
        RunState::Skipped,
        RunState::Missed,
        RunState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Retrying => "retrying",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Cancelled => "cancelled",
            RunState::Skipped => "skipped",
            RunState::Missed => "missed",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the run is over: nothing will change it any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunState::Pending | RunState::Running | RunState::Retrying)
    }

    /// The compat execution record's `status` (COMPAT.md §1).
    pub fn compat_status(self) -> &'static str {
        match self {
            RunState::Pending | RunState::Running => "running",
            RunState::Retrying => "retry",
            RunState::Succeeded => "success",
            _ => "error",
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    /// The handler answered `success: false`, or the method is unknown to it.
    Failed,
    TimedOut,
    Cancelled,
    /// The handler went away with the call in flight.
    Lost,
    /// The server stopped with the call in flight.
    Interrupted,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::TimedOut,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Lost,
        AttemptOutcome::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Lost => "lost",
            AttemptOutcome::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        AttemptOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The run state a run ends in when this was its last attempt.
    pub fn final_state(self) -> RunState {
        match self {
            AttemptOutcome::Succeeded => RunState::Succeeded,
            AttemptOutcome::Failed | AttemptOutcome::Lost => RunState::Failed,
            AttemptOutcome::TimedOut => RunState::TimedOut,
            AttemptOutcome::Cancelled => RunState::Cancelled,
            AttemptOutcome::Interrupted => RunState::Interrupted,
        }
    }
}

/// What happens to a run after an attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// The run is over, in this state.
    Finish(RunState),
    /// Another attempt, dispatched at this time.
    Retry { at: Timestamp },
}

/// Decides a run's next step after attempt number `attempt` ended with `outcome`.
pub fn after_attempt(
    outcome: AttemptOutcome,
    attempt: u32,
    max_attempts: u32,
    retry: &RetryPolicy,
    now: Timestamp,
    random: u64,
) -> NextStep {
    let retryable = !matches!(outcome, AttemptOutcome::Succeeded | AttemptOutcome::Cancelled);
    if retryable && attempt < max_attempts {
        NextStep::Retry { at: now + retry.backoff(attempt, random) }
    } else {
        NextStep::Finish(outcome.final_state())
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: RunId,
    /// `None` for runs started by "run now" without a schedule.
    pub schedule_id: Option<ScheduleId>,
    /// The un-jittered slot time; with `schedule_id`, unique in the store.
    pub scheduled_for: Timestamp,
    /// When to dispatch (slot + jitter, or after a retry backoff); `None` while queued behind the
    /// schedule's active run.
    pub dispatch_at: Option<Timestamp>,
    pub state: RunState,
    /// The number of the latest attempt started (0: none yet).
    pub attempt: u32,
    pub max_attempts: u32,
    pub target: Target,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// How many slots this row stands for: 1, or more for one `missed` row that folds a long
    /// outage's slots together.
    pub slot_count: u32,
}

/// One attempt of a run, as stored once it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub run_id: RunId,
    pub number: u32,
    /// The handler instance that served it, when one was reached.
    pub instance: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: AttemptOutcome,
    pub result: Option<Value>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_terminality() {
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
        assert!(!RunState::Pending.is_terminal());
        assert!(!RunState::Retrying.is_terminal());
        assert!(RunState::Missed.is_terminal());
        assert_eq!(RunState::Retrying.compat_status(), "retry");
        assert_eq!(RunState::TimedOut.compat_status(), "error");
    }

    #[test]
    fn failures_retry_until_attempts_run_out_and_cancel_never_retries() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let r = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!(
            after_attempt(AttemptOutcome::Failed, 1, 3, &r, now, 0),
            NextStep::Retry { at: now + chrono::TimeDelta::seconds(1) }
        );
        assert_eq!(
            after_attempt(AttemptOutcome::Failed, 3, 3, &r, now, 0),
            NextStep::Finish(RunState::Failed)
        );
        assert_eq!(
            after_attempt(AttemptOutcome::Interrupted, 3, 3, &r, now, 0),
            NextStep::Finish(RunState::Interrupted)
        );
        assert_eq!(
            after_attempt(AttemptOutcome::Cancelled, 1, 3, &r, now, 0),
            NextStep::Finish(RunState::Cancelled)
        );
        assert_eq!(
            after_attempt(AttemptOutcome::Succeeded, 1, 3, &r, now, 0),
            NextStep::Finish(RunState::Succeeded)
        );
    }
}
