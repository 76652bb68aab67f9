//! Fire planning: given a schedule whose next slot is due, decide what happens to every slot up
//! to now — which run, which are `missed` (misfire policy), which are `skipped` or queued
//! (overlap policy) — and where the schedule's next slot is. Pure: the store applies the plan in
//! the same transaction that claims the slots.

use chrono::TimeDelta;

use crate::Timestamp;
use crate::policy::{MisfirePolicy, OverlapPolicy, Policies};
use crate::schedule::ScheduleId;
use crate::trigger::{Trigger, TriggerKind};

/// At most this many missed slots of one schedule get a row each per claim; earlier ones are
/// folded into one `missed` row whose `slot_count` says how many it stands for.
pub const MAX_RECORDED_SLOTS: usize = 1000;

/// Enumerating cron slots after a long outage stops after this many; the folded row's count is
/// then a lower bound.
const MAX_ENUMERATED_SLOTS: u64 = 200_000;

/// A due schedule, as the store sees it inside the claiming transaction.
#[derive(Debug, Clone)]
pub struct DueSchedule<'a> {
    pub id: ScheduleId,
    pub trigger: &'a Trigger,
    pub policies: &'a Policies,
    /// The first unclaimed slot (≤ now).
    pub next_fire_at: Timestamp,
    /// Runs of this schedule that are pending, running or retrying (queued ones excluded).
    pub active_runs: u32,
    /// Runs of this schedule queued behind an active one (overlap `queue_one`).
    pub queued_runs: u32,
}

/// What becomes of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotFate {
    /// A run dispatched at this time (the slot plus its jitter).
    Run { dispatch_at: Timestamp },
    /// A run that waits for the schedule's active run to finish.
    Queue,
    /// Recorded `missed`; `slots` > 1 when this row stands for that many folded slots.
    Missed { slots: u32 },
    /// Recorded `skipped` (overlap).
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedSlot {
    pub scheduled_for: Timestamp,
    pub fate: SlotFate,
}

/// The plan for one due schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// In slot order.
    pub slots: Vec<PlannedSlot>,
    /// The schedule's next slot after `now`; `None` when the trigger is exhausted.
    pub next_fire_at: Option<Timestamp>,
    /// Cancel the schedule's active runs (overlap `replace`).
    pub cancel_active: bool,
}

/// Plans the slots of `due` that are at or before `now`.
pub fn plan_fires(due: &DueSchedule<'_>, now: Timestamp) -> FirePlan {
    let (folded, slots) = due_slots(due.trigger, due.next_fire_at, now);
    let n = slots.len();
    // Which of the explicit slots the misfire policy runs.
    let runs_from = match due.policies.misfire {
        MisfirePolicy::Coalesce => n.saturating_sub(1),
        MisfirePolicy::RunAll { max } => n.saturating_sub(max as usize),
        MisfirePolicy::Skip { grace } => slots.iter().position(|s| now - *s <= grace).unwrap_or(n),
    };
    let mut plan = Vec::with_capacity(n + 1);
    if let Some((first, count)) = folded {
        plan.push(PlannedSlot { scheduled_for: first, fate: SlotFate::Missed { slots: count } });
    }
    for s in &slots[..runs_from] {
        plan.push(PlannedSlot { scheduled_for: *s, fate: SlotFate::Missed { slots: 1 } });
    }
    let mut cancel_active = false;
    let to_run = &slots[runs_from..];
    let last = to_run.len().saturating_sub(1);
    let mut active = due.active_runs;
    let mut queued = due.queued_runs;
    for (i, s) in to_run.iter().enumerate() {
        let run = SlotFate::Run { dispatch_at: *s + due.trigger.jitter_for(due.id, *s) };
        let fate = match due.policies.overlap {
            OverlapPolicy::Allow => run,
            OverlapPolicy::Skip => {
                if active > 0 {
                    SlotFate::Skipped
                } else {
                    active += 1;
                    run
                }
            }
            OverlapPolicy::QueueOne => {
                if active == 0 {
                    active += 1;
                    run
                } else if queued == 0 {
                    queued += 1;
                    SlotFate::Queue
                } else {
                    SlotFate::Skipped
                }
            }
            OverlapPolicy::Replace => {
                if i == last {
                    cancel_active = active > 0;
                    run
                } else {
                    SlotFate::Skipped
                }
            }
        };
        plan.push(PlannedSlot { scheduled_for: *s, fate });
    }
    let next_fire_at = due.trigger.next_after(now.max(slots.last().copied().unwrap_or(now)));
    FirePlan { slots: plan, next_fire_at, cancel_active }
}

/// The due slots from `first` to `now`: the latest [`MAX_RECORDED_SLOTS`] explicitly, and the
/// earlier ones folded as (first folded slot, how many).
fn due_slots(
    trigger: &Trigger,
    first: Timestamp,
    now: Timestamp,
) -> (Option<(Timestamp, u32)>, Vec<Timestamp>) {
    if first > now {
        return (None, Vec::new());
    }
    if let TriggerKind::Interval { period, end, .. } = &trigger.kind {
        // Closed form: an outage of any length costs nothing to plan.
        let period_ms = period.num_milliseconds().max(1);
        let horizon = match end {
            Some(end) if *end < now => *end,
            _ => now,
        };
        let total = ((horizon - first).num_milliseconds().max(0) / period_ms + 1) as u64;
        let explicit = total.min(MAX_RECORDED_SLOTS as u64);
        let folded_count = total - explicit;
        let step = TimeDelta::milliseconds(period_ms);
        let explicit_start = first + step * (folded_count as i32);
        let slots = (0..explicit).map(|k| explicit_start + step * (k as i32)).collect();
        let folded = (folded_count > 0).then(|| (first, folded_count.min(u32::MAX as u64) as u32));
        return (folded, slots);
    }
    let mut ring = std::collections::VecDeque::with_capacity(64);
    let mut first_folded: Option<Timestamp> = None;
    let mut folded: u64 = 0;
    let mut t = Some(first);
    let mut seen: u64 = 0;
    while let Some(slot) = t {
        if slot > now {
            break;
        }
        if ring.len() == MAX_RECORDED_SLOTS {
            let dropped = ring.pop_front();
            first_folded = first_folded.or(dropped);
            folded += 1;
        }
        ring.push_back(slot);
        seen += 1;
        t = if seen >= MAX_ENUMERATED_SLOTS {
            // Jump ahead: the folded count becomes a lower bound.
            let resume = trigger.next_after(now - TimeDelta::hours(1)).filter(|r| *r > slot);
            seen = 0;
            if let Some(r) = resume {
                if let Some(front) = ring.front().copied() {
                    first_folded = first_folded.or(Some(front));
                }
                folded += ring.len() as u64;
                ring.clear();
                Some(r)
            } else {
                trigger.next_after(slot)
            }
        } else {
            trigger.next_after(slot)
        };
    }
    let folded = first_folded.map(|f| (f, folded.min(u32::MAX as u64) as u32));
    (folded, ring.into_iter().collect())
}
