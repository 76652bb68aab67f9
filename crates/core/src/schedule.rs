//! Schedules: a trigger, a target handler method, and policies.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Timestamp;
use crate::policy::Policies;
use crate::trigger::Trigger;

/// A schedule's internal, permanent id (UUID v7, so ids sort by creation time).
pub type ScheduleId = Uuid;

/// What a run calls: a method of a handler, with parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The handler id (a pool of instances) that serves the method.
    pub handler_id: String,
    pub method: String,
    /// Always a JSON object.
    pub params: Value,
}

/// Whether a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    Active,
    Paused,
    /// The trigger has no more fires (a date that fired, an end time passed). Its name is free
    /// again; the row stays so its runs keep their schedule.
    Finished,
}

impl ScheduleState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Active => "active",
            ScheduleState::Paused => "paused",
            ScheduleState::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(ScheduleState::Active),
            "paused" => Some(ScheduleState::Paused),
            "finished" => Some(ScheduleState::Finished),
            _ => None,
        }
    }
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: ScheduleId,
    /// Unique among schedules that are not finished (the compat `job_id`).
    pub name: String,
    pub trigger: Trigger,
    pub target: Target,
    pub policies: Policies,
    pub state: ScheduleState,
    /// The next slot to claim; `None` once the trigger is exhausted.
    pub next_fire_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Schedule {
    /// A new active schedule whose first slot is computed from `now`.
    pub fn new(
        name: impl Into<String>,
        trigger: Trigger,
        target: Target,
        policies: Policies,
        now: Timestamp,
    ) -> Schedule {
        let next_fire_at = trigger.first_fire(now);
        Schedule {
            id: Uuid::now_v7(),
            name: name.into(),
            state: if next_fire_at.is_some() { ScheduleState::Active } else { ScheduleState::Finished },
            trigger,
            target,
            policies,
            next_fire_at,
            created_at: now,
            updated_at: now,
        }
    }
}
