//! Fire planning: misfire and overlap policies applied to the slots that are due.

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::plan::{DueSchedule, FirePlan, MAX_RECORDED_SLOTS, SlotFate, plan_fires};
use schedulezero_core::policy::{MisfirePolicy, OverlapPolicy, Policies};
use schedulezero_core::trigger::{ParseContext, Trigger};
use serde_json::json;

fn t(s: &str) -> Timestamp {
    s.parse().expect("a valid UTC time")
}

const START: &str = "2026-01-01T00:00:00Z";

fn every(seconds: u32) -> Trigger {
    let ctx = ParseContext { now: t(START), local_zone: chrono_tz::UTC };
    Trigger::parse(&json!({"type": "interval", "seconds": seconds}), &ctx).expect("valid")
}

fn plan(trigger: &Trigger, policies: Policies, now: Timestamp, active: u32, queued: u32) -> FirePlan {
    let due = DueSchedule {
        id: uuid::Uuid::nil(),
        trigger,
        policies: &policies,
        next_fire_at: t(START),
        active_runs: active,
        queued_runs: queued,
    };
    plan_fires(&due, now)
}

fn fates(p: &FirePlan) -> Vec<SlotFate> {
    p.slots.iter().map(|s| s.fate).collect()
}

fn run_at(s: &str) -> SlotFate {
    SlotFate::Run { dispatch_at: t(s) }
}

const MISSED: SlotFate = SlotFate::Missed { slots: 1 };

#[test]
fn on_time_slot_runs_and_next_fire_advances() {
    let p = plan(&every(10), Policies::default(), t(START), 0, 0);
    assert_eq!(fates(&p), vec![run_at(START)]);
    assert_eq!(p.next_fire_at, Some(t("2026-01-01T00:00:10Z")));
    assert!(!p.cancel_active);
}

#[test]
fn coalesce_runs_the_latest_slot_and_records_the_rest_missed() {
    let p = plan(&every(10), Policies::default(), t("2026-01-01T00:00:35Z"), 0, 0);
    assert_eq!(fates(&p), vec![MISSED, MISSED, MISSED, run_at("2026-01-01T00:00:30Z")]);
    assert_eq!(p.next_fire_at, Some(t("2026-01-01T00:00:40Z")));
}

#[test]
fn run_all_runs_every_slot_up_to_its_bound() {
    let policies = Policies { misfire: MisfirePolicy::RunAll { max: 2 }, ..Policies::default() };
    let p = plan(&every(10), policies, t("2026-01-01T00:00:35Z"), 0, 0);
    assert_eq!(
        fates(&p),
        vec![MISSED, MISSED, run_at("2026-01-01T00:00:20Z"), run_at("2026-01-01T00:00:30Z")]
    );
}

#[test]
fn skip_runs_only_slots_within_grace() {
    let policies =
        Policies { misfire: MisfirePolicy::Skip { grace: TimeDelta::seconds(16) }, ..Policies::default() };
    let p = plan(&every(10), policies, t("2026-01-01T00:00:35Z"), 0, 0);
    assert_eq!(
        fates(&p),
        vec![MISSED, MISSED, run_at("2026-01-01T00:00:20Z"), run_at("2026-01-01T00:00:30Z")]
    );
    // With no grace, a slot claimed late by even a millisecond is missed.
    let policies =
        Policies { misfire: MisfirePolicy::Skip { grace: TimeDelta::zero() }, ..Policies::default() };
    let p = plan(&every(10), policies, t("2026-01-01T00:00:00.001Z"), 0, 0);
    assert_eq!(fates(&p), vec![MISSED]);
}

#[test]
fn long_outage_is_folded_into_one_missed_row_with_its_count() {
    // A day of one-second slots: 86,401 slots due.
    let p = plan(&every(1), Policies::default(), t("2026-01-02T00:00:00Z"), 0, 0);
    let folded = p.slots[0];
    assert_eq!(folded.scheduled_for, t(START));
    assert_eq!(folded.fate, SlotFate::Missed { slots: 86_401 - MAX_RECORDED_SLOTS as u32 });
    assert_eq!(p.slots.len(), MAX_RECORDED_SLOTS + 1);
    let total: u32 = p
        .slots
        .iter()
        .map(|s| match s.fate {
            SlotFate::Missed { slots } => slots,
            _ => 1,
        })
        .sum();
    assert_eq!(total, 86_401, "every slot is accounted for");
    assert_eq!(p.slots.last().map(|s| s.fate), Some(run_at("2026-01-02T00:00:00Z")));
}

#[test]
fn long_cron_outage_is_folded_too() {
    let ctx = ParseContext { now: t(START), local_zone: chrono_tz::UTC };
    let trigger = Trigger::parse(&json!({"type": "cron", "expression": "* * * * * *"}), &ctx).expect("valid");
    let p = plan(&trigger, Policies::default(), t("2026-01-01T01:00:00Z"), 0, 0);
    assert_eq!(p.slots.len(), MAX_RECORDED_SLOTS + 1);
    assert_eq!(p.slots[0].fate, SlotFate::Missed { slots: 3_601 - MAX_RECORDED_SLOTS as u32 });
    assert_eq!(p.next_fire_at, Some(t("2026-01-01T01:00:01Z")));
}

#[test]
fn overlap_skip_skips_while_a_run_is_active() {
    let policies = Policies { overlap: OverlapPolicy::Skip, ..Policies::default() };
    assert_eq!(fates(&plan(&every(10), policies, t(START), 1, 0)), vec![SlotFate::Skipped]);
    assert_eq!(fates(&plan(&every(10), policies, t(START), 0, 0)), vec![run_at(START)]);
    let policies =
        Policies { overlap: OverlapPolicy::Skip, misfire: MisfirePolicy::RunAll { max: 10 }, ..policies };
    let p = plan(&every(10), policies, t("2026-01-01T00:00:20Z"), 0, 0);
    assert_eq!(fates(&p), vec![run_at(START), SlotFate::Skipped, SlotFate::Skipped]);
}

#[test]
fn overlap_queue_one_queues_one_and_skips_the_rest() {
    let policies = Policies { overlap: OverlapPolicy::QueueOne, ..Policies::default() };
    assert_eq!(fates(&plan(&every(10), policies, t(START), 1, 0)), vec![SlotFate::Queue]);
    assert_eq!(fates(&plan(&every(10), policies, t(START), 1, 1)), vec![SlotFate::Skipped]);
    let policies = Policies { misfire: MisfirePolicy::RunAll { max: 10 }, ..policies };
    let p = plan(&every(10), policies, t("2026-01-01T00:00:20Z"), 0, 0);
    assert_eq!(fates(&p), vec![run_at(START), SlotFate::Queue, SlotFate::Skipped]);
}

#[test]
fn overlap_replace_cancels_the_active_run_and_starts_the_latest() {
    let policies = Policies { overlap: OverlapPolicy::Replace, ..Policies::default() };
    let p = plan(&every(10), policies, t(START), 1, 0);
    assert_eq!(fates(&p), vec![run_at(START)]);
    assert!(p.cancel_active);
    let p = plan(&every(10), policies, t(START), 0, 0);
    assert!(!p.cancel_active);
}

#[test]
fn exhausted_date_trigger_has_no_next_fire() {
    let ctx = ParseContext { now: t(START), local_zone: chrono_tz::UTC };
    let trigger = Trigger::parse(&json!({"type": "date", "run_date": START}), &ctx).expect("valid");
    let p = plan(&trigger, Policies::default(), t("2026-01-01T00:00:05Z"), 0, 0);
    assert_eq!(fates(&p), vec![run_at(START)]);
    assert_eq!(p.next_fire_at, None);
}

#[test]
fn jitter_delays_dispatch_but_not_the_slot() {
    let ctx = ParseContext { now: t(START), local_zone: chrono_tz::UTC };
    let trigger =
        Trigger::parse(&json!({"type": "interval", "seconds": 10, "jitter": 5}), &ctx).expect("valid");
    let p = plan(&trigger, Policies::default(), t(START), 0, 0);
    let slot = p.slots[0];
    assert_eq!(slot.scheduled_for, t(START));
    let SlotFate::Run { dispatch_at } = slot.fate else { panic!("runs") };
    assert!(dispatch_at >= t(START) && dispatch_at <= t(START) + TimeDelta::seconds(5));
}
