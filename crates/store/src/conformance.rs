//! The conformance suite: the [`Store`] contract as executable cases, run unchanged against every
//! backend.
//!
//! Each case is a `pub async fn case(store: Arc<dyn Store>)` on a fresh, empty store (the
//! multi-node case takes two handles on one database). A backend's test file runs them all,
//! one `#[tokio::test]` per case, with one line:
//!
//! ```ignore
//! schedulezero_store::conformance_tests!(MyHarness::new().await);
//! ```
//!
//! where the expression evaluates to a [`Harness`]: a fresh database that can be opened several
//! times (each handle a "node"). The calling crate needs `tokio` with the `macros` and
//! `rt-multi-thread` features.
//!
//! Times are virtual: cases pass `now` explicitly, starting at [`t0`].
//!
//! Points the trait's doc comments leave open, settled (and tested) here:
//! - `ClaimBatch::slots` counts slots, not rows: a folded `missed` row adds its `slot_count`.
//! - Overlap `replace`: `ClaimBatch::cancel` lists every active run of the schedule. Those not
//!   started yet are already `cancelled` by the claim; running ones are the dispatcher's to stop
//!   (it records their attempt). `cancel_run` on a run that is not waiting returns its state
//!   unchanged.
//! - A leased run is never handed to its own node again (it holds it until it starts or
//!   releases it); another node may take it once the lease has run out (a dead node's).
//!   `next_wake` ignores leased runs.
//! - `start_attempts` leaves runs that are no longer waiting (cancelled meanwhile) alone; a
//!   run's `started_at` is its first attempt's start.
//! - `record_attempts` takes the run's `finished_at`, `result` and `error` from the attempt; a
//!   queued run is released (made due now) when its schedule has no active run left, also when
//!   the active run is cancelled.
//! - Missed and skipped rows are finished at claim time and carry an explanatory `error`.
//! - `list_runs` with a `before` cursor naming an unknown run is `NotFound`.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::chrono_tz;
use schedulezero_core::policy::{MisfirePolicy, OverlapPolicy, Policies};
use schedulezero_core::run::{Attempt, AttemptOutcome, NextStep, Run, RunState, after_attempt};
use schedulezero_core::schedule::{Schedule, ScheduleState, Target};
use schedulezero_core::trigger::{ParseContext, Trigger};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AttemptEnd, AttemptStart, ClaimBatch, HandlerInstance, RunFilter, ScheduleFilter, Store, StoreError,
};

/// A fresh database of one backend, which can be opened several times (each handle is a node).
#[async_trait]
pub trait Harness: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

/// Instantiates every conformance case as a `#[tokio::test]`; `$harness` is an expression
/// (it may `.await`) giving a fresh [`Harness`](crate::conformance::Harness) per test.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@single $harness;
            schedule_round_trip_keeps_every_field,
            live_name_is_unique_and_finished_schedule_frees_it,
            update_and_delete_of_unknown_schedule,
            list_schedules_filters_and_pages,
            claim_inserts_one_run_per_slot_and_advances,
            claim_can_start_ready_runs_in_its_own_commit,
            claim_finishes_exhausted_schedule_and_frees_its_name,
            slot_claimed_once_is_not_claimed_after_moving_back,
            coalesce_after_gap_runs_latest_slot_and_records_missed,
            long_outage_folds_missed_slots_into_one_row,
            run_all_is_bounded,
            skip_policy_runs_only_slots_within_grace,
            overlap_skip_records_skipped_while_a_run_is_active,
            overlap_queue_one_releases_queued_run_when_active_finishes,
            overlap_replace_returns_active_runs_to_cancel,
            jittered_slot_is_leased_only_when_due,
            lease_is_not_handed_out_twice_and_expires_only_for_other_nodes,
            next_wake_reflects_schedules_and_retrying_runs,
            started_attempt_then_success_is_recorded,
            failed_attempt_retries_and_second_attempt_is_leased_later,
            recover_interrupts_running_runs_and_retries_per_policy,
            cancel_run_cancels_only_waiting_runs,
            purge_history_deletes_only_finished_runs_before_the_cutoff,
            delete_schedule_cancels_waiting_runs_and_keeps_history,
            schedule_names_include_finished_and_deleted_schedules,
            run_now_round_trip_and_list_runs_filters_and_pages,
            insert_runs_stores_a_batch_and_is_idempotent,
            record_outcomes_stores_new_runs_with_their_attempts,
            a_second_run_on_a_taken_slot_is_a_duplicate_slot,
            run_counts_sum_runs_and_durations_by_handler_and_state,
            count_runs_by_state_counts_slots_in_the_range_by_state,
            next_fires_are_active_schedules_earliest_first,
            live_schedule_names_are_in_name_order_without_finished_ones,
            list_runs_of_several_states_is_newest_first_and_pages,
            handler_instances_upsert_and_list,
        );
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_nodes_claim_every_slot_exactly_once() {
            let harness = $harness;
            let a = $crate::conformance::Harness::open(&harness).await;
            let b = $crate::conformance::Harness::open(&harness).await;
            $crate::conformance::two_nodes_claim_every_slot_exactly_once(a, b).await;
        }
    };
    (@single $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                let harness = $harness;
                let store = $crate::conformance::Harness::open(&harness).await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

// --- helpers ---

/// The virtual time every case starts at.
pub fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("t0")
}

/// `t0` plus `secs` seconds.
pub fn at(secs: i64) -> Timestamp {
    t0() + TimeDelta::seconds(secs)
}

/// `t0` plus `ms` milliseconds.
pub fn at_ms(ms: i64) -> Timestamp {
    t0() + TimeDelta::milliseconds(ms)
}

fn ctx() -> ParseContext {
    ParseContext { now: t0(), local_zone: chrono_tz::UTC }
}

/// An interval trigger from `start`, every `secs` seconds, with optional jitter (seconds).
pub fn interval(secs: i64, start: Timestamp, jitter: i64) -> Trigger {
    Trigger::parse(
        &json!({"type": "interval", "seconds": secs, "start_time": start.to_rfc3339(), "jitter": jitter}),
        &ctx(),
    )
    .expect("interval trigger")
}

pub fn target(handler: &str) -> Target {
    Target { handler_id: handler.to_string(), method: "work".to_string(), params: json!({"n": 1, "s": "x"}) }
}

/// An active schedule created at `t0`.
pub fn schedule(name: &str, trigger: Trigger, policies: Policies) -> Schedule {
    Schedule::new(name, trigger, target("h"), policies, t0())
}

/// Policies with one change.
pub fn policies(change: impl FnOnce(&mut Policies)) -> Policies {
    let mut p = Policies::default();
    change(&mut p);
    p
}

async fn runs_of(store: &Arc<dyn Store>, s: &Schedule) -> Vec<Run> {
    let mut runs = store
        .list_runs(&RunFilter { schedule_id: Some(s.id), ..RunFilter::default() })
        .await
        .expect("list runs");
    runs.sort_by_key(|r| r.scheduled_for);
    runs
}

async fn claim(store: &Arc<dyn Store>, now: Timestamp) -> ClaimBatch {
    store.claim_due("node-a", now, 1000, false).await.expect("claim")
}

async fn start(store: &Arc<dyn Store>, run: &Run, attempt: u32, now: Timestamp) {
    store.start_attempts(&[AttemptStart { run_id: run.id, attempt, started_at: now }]).await.expect("start");
}

fn ended(
    run: &Run,
    number: u32,
    outcome: AttemptOutcome,
    started: Timestamp,
    finished: Timestamp,
) -> Attempt {
    Attempt {
        run_id: run.id,
        number,
        instance: Some("h-1".to_string()),
        started_at: started,
        finished_at: finished,
        outcome,
        result: (outcome == AttemptOutcome::Succeeded).then(|| json!({"ok": number})),
        error: (outcome != AttemptOutcome::Succeeded)
            .then(|| format!("attempt {number} {}", outcome.as_str())),
    }
}

async fn finish(store: &Arc<dyn Store>, run: &Run, number: u32, outcome: AttemptOutcome, now: Timestamp) {
    let attempt = ended(run, number, outcome, now, now);
    let end = AttemptEnd { attempt, next: NextStep::Finish(outcome.final_state()) };
    store.record_attempts(&[end], now).await.expect("record");
}

async fn get_run(store: &Arc<dyn Store>, run: &Run) -> Run {
    store.get_run(run.id).await.expect("get run").expect("run exists")
}

fn states(runs: &[Run]) -> Vec<RunState> {
    runs.iter().map(|r| r.state).collect()
}

// --- schedules ---

pub async fn schedule_round_trip_keeps_every_field(store: Arc<dyn Store>) {
    let trigger = Trigger::parse(
        &json!({"type": "cron", "expression": "30 9 * * 1-5", "timezone": "Europe/Paris", "jitter": 2.5}),
        &ctx(),
    )
    .expect("cron trigger");
    let p = Policies::parse(&json!({
        "misfire": {"policy": "run_all", "max": 5},
        "overlap": "queue_one",
        "retry": {"max_attempts": 5, "initial_backoff": 0.5, "max_backoff": 30, "multiplier": 3, "jitter": 0.1},
        "timeout": 12.5
    }))
    .expect("policies");
    let mut s = Schedule::new("report", trigger, target("reports"), p, at_ms(1234));
    s.target.params = json!({"nested": {"list": [1, 2.5, "three", null]}, "unicode": "é✓"});
    assert_eq!(s.state, ScheduleState::Active, "the trigger fires");
    store.insert_schedule(&s).await.expect("insert");
    assert_eq!(store.get_schedule(s.id).await.expect("get").as_ref(), Some(&s));
    assert_eq!(store.find_schedule("report").await.expect("find").as_ref(), Some(&s));
    assert_eq!(store.find_schedule("nope").await.expect("find"), None);
    assert_eq!(store.get_schedule(Uuid::now_v7()).await.expect("get"), None);

    let mut changed = s.clone();
    changed.name = "report-2".to_string();
    changed.trigger = interval(90, at(5), 0);
    changed.target = target("other");
    changed.policies = Policies::default();
    changed.state = ScheduleState::Paused;
    changed.next_fire_at = Some(at_ms(5_001));
    changed.updated_at = at_ms(99_999);
    store.update_schedule(&changed).await.expect("update");
    assert_eq!(store.get_schedule(s.id).await.expect("get").as_ref(), Some(&changed));
    assert_eq!(store.find_schedule("report").await.expect("find"), None);
    assert_eq!(store.find_schedule("report-2").await.expect("find").as_ref(), Some(&changed));
    changed.next_fire_at = None;
    changed.state = ScheduleState::Finished;
    store.update_schedule(&changed).await.expect("update");
    assert_eq!(store.get_schedule(s.id).await.expect("get").as_ref(), Some(&changed));
}

pub async fn live_name_is_unique_and_finished_schedule_frees_it(store: Arc<dyn Store>) {
    let a = schedule("job", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&a).await.expect("insert");
    let dup = schedule("job", interval(10, t0(), 0), Policies::default());
    match store.insert_schedule(&dup).await {
        Err(StoreError::DuplicateName(name)) => assert_eq!(name, "job"),
        other => panic!("expected DuplicateName, got {other:?}"),
    }
    // Renaming onto a live name is refused too, and changes nothing.
    let mut b = schedule("other", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&b).await.expect("insert");
    b.name = "job".to_string();
    assert!(matches!(store.update_schedule(&b).await, Err(StoreError::DuplicateName(_))));
    assert_eq!(store.get_schedule(b.id).await.expect("get").map(|s| s.name), Some("other".to_string()));
    // A paused schedule is live.
    let mut a2 = a.clone();
    a2.state = ScheduleState::Paused;
    store.update_schedule(&a2).await.expect("pause");
    assert!(matches!(store.insert_schedule(&dup).await, Err(StoreError::DuplicateName(_))));
    // A finished one frees its name; both rows stay.
    a2.state = ScheduleState::Finished;
    a2.next_fire_at = None;
    store.update_schedule(&a2).await.expect("finish");
    store.insert_schedule(&dup).await.expect("name is free again");
    assert_eq!(store.find_schedule("job").await.expect("find").map(|s| s.id), Some(dup.id));
    assert!(store.get_schedule(a.id).await.expect("get").is_some());
    // Reviving the finished one onto the taken name is refused.
    a2.state = ScheduleState::Active;
    assert!(matches!(store.update_schedule(&a2).await, Err(StoreError::DuplicateName(_))));
}

pub async fn update_and_delete_of_unknown_schedule(store: Arc<dyn Store>) {
    let s = schedule("ghost", interval(10, t0(), 0), Policies::default());
    match store.update_schedule(&s).await {
        Err(StoreError::NotFound { kind, id }) => {
            assert_eq!(kind, "schedule");
            assert_eq!(id, s.id.to_string());
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!store.delete_schedule(s.id, t0()).await.expect("delete"));
    store.insert_schedule(&s).await.expect("insert");
    assert!(store.delete_schedule(s.id, t0()).await.expect("delete"));
    assert_eq!(store.get_schedule(s.id).await.expect("get"), None);
    assert!(!store.delete_schedule(s.id, t0()).await.expect("delete again"));
    assert!(matches!(store.update_schedule(&s).await, Err(StoreError::NotFound { .. })));
}

pub async fn list_schedules_filters_and_pages(store: Arc<dyn Store>) {
    let mut all = Vec::new();
    for (i, (name, handler, state)) in [
        ("Alpha-report", "reports", ScheduleState::Active),
        ("beta", "reports", ScheduleState::Paused),
        ("gamma-REPORT", "mail", ScheduleState::Active),
        ("delta", "mail", ScheduleState::Finished),
        ("epsilon", "mail", ScheduleState::Active),
        ("zeta", "reports", ScheduleState::Active),
        ("eta", "other", ScheduleState::Active),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s =
            Schedule::new(name, interval(10 + i as i64, t0(), 0), target(handler), Policies::default(), t0());
        s.state = state;
        if state == ScheduleState::Finished {
            s.next_fire_at = None;
        }
        store.insert_schedule(&s).await.expect("insert");
        all.push(s);
    }
    all.sort_by_key(|s| s.id);
    let names = |v: Vec<Schedule>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
    let expect = |f: &dyn Fn(&Schedule) -> bool| {
        all.iter().filter(|s| f(s)).map(|s| s.name.clone()).collect::<Vec<_>>()
    };

    let live = store.list_schedules(&ScheduleFilter::default()).await.expect("list");
    assert_eq!(names(live), expect(&|s| s.state != ScheduleState::Finished));
    let every = store
        .list_schedules(&ScheduleFilter { include_finished: true, ..ScheduleFilter::default() })
        .await
        .expect("list");
    assert_eq!(every, all);
    let paused = store
        .list_schedules(&ScheduleFilter { state: Some(ScheduleState::Paused), ..ScheduleFilter::default() })
        .await
        .expect("list");
    assert_eq!(names(paused), vec!["beta".to_string()]);
    let finished = store
        .list_schedules(&ScheduleFilter { state: Some(ScheduleState::Finished), ..ScheduleFilter::default() })
        .await
        .expect("list");
    assert_eq!(names(finished), vec!["delta".to_string()]);
    let mail = store
        .list_schedules(&ScheduleFilter { handler_id: Some("mail".to_string()), ..ScheduleFilter::default() })
        .await
        .expect("list");
    assert_eq!(names(mail), expect(&|s| s.target.handler_id == "mail" && s.state != ScheduleState::Finished));
    let report = store
        .list_schedules(&ScheduleFilter {
            name_contains: Some("rEpOrT".to_string()),
            ..ScheduleFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(names(report), expect(&|s| s.name.to_lowercase().contains("report")));
    assert_eq!(names(report_reports(&store).await), vec!["Alpha-report".to_string()]);

    // Pages of two, by id, cover everything once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_schedules(&ScheduleFilter {
                include_finished: true,
                after,
                limit: 2,
                ..ScheduleFilter::default()
            })
            .await
            .expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page);
    }
    assert_eq!(seen, all);
}

/// Filters combine: reports-handled schedules whose name contains "report".
async fn report_reports(store: &Arc<dyn Store>) -> Vec<Schedule> {
    store
        .list_schedules(&ScheduleFilter {
            handler_id: Some("reports".to_string()),
            name_contains: Some("REPORT".to_string()),
            ..ScheduleFilter::default()
        })
        .await
        .expect("list")
}

// --- claiming ---

/// With `start_ready`, the runs due now come back started (attempt 1, `running`, started at the
/// claim), exactly as stored; a later `start_attempts` for them changes nothing; their outcome is
/// recorded as usual; a crash before it turns them into interrupted attempts. Jittered runs are
/// not started.
pub async fn claim_can_start_ready_runs_in_its_own_commit(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    let jittered = schedule("jittered", interval(10, t0(), 3600), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    store.insert_schedule(&jittered).await.expect("insert");
    let batch = store.claim_due("node-a", t0(), 100, true).await.expect("claim");
    assert_eq!((batch.slots, batch.ready.len()), (2, 1), "the jittered slot waits");
    assert_eq!((batch.later, batch.queued, batch.skipped, batch.missed), (1, 0, 0, 0));
    let run = batch.ready[0].run.clone();
    assert_eq!((run.state, run.attempt, run.started_at), (RunState::Running, 1, Some(t0())));
    assert_eq!(get_run(&store, &run).await, run, "the dispatched run is the stored run");
    start(&store, &run, 1, at(1)).await;
    assert_eq!(get_run(&store, &run).await.started_at, Some(t0()), "already started");
    let waiting = runs_of(&store, &jittered).await;
    assert_eq!((waiting[0].state, waiting[0].attempt), (RunState::Pending, 0));
    finish(&store, &run, 1, AttemptOutcome::Succeeded, at(2)).await;
    assert_eq!(get_run(&store, &run).await.state, RunState::Succeeded);
    let next = store.claim_due("node-a", at(10), 100, true).await.expect("claim").ready.remove(0).run;
    let recovery = store.recover(at(11)).await.expect("recover");
    assert_eq!((recovery.interrupted, recovery.retried), (1, 1));
    let attempts = store.list_attempts(next.id).await.expect("attempts");
    assert_eq!(
        (attempts[0].number, attempts[0].outcome, attempts[0].started_at),
        (1, AttemptOutcome::Interrupted, at(10))
    );
}

pub async fn claim_inserts_one_run_per_slot_and_advances(store: Arc<dyn Store>) {
    let p = policies(|p| p.retry.max_attempts = 4);
    let s = schedule("tick", interval(10, t0(), 0), p);
    store.insert_schedule(&s).await.expect("insert");
    assert_eq!(claim(&store, at_ms(-1)).await, ClaimBatch::default(), "nothing is due before the first slot");

    let batch = claim(&store, t0()).await;
    assert_eq!((batch.schedules, batch.slots, batch.ready.len()), (1, 1, 1));
    assert!(batch.cancel.is_empty());
    let d = &batch.ready[0];
    assert_eq!(d.policies, p);
    assert_eq!(d.run.schedule_id, Some(s.id));
    assert_eq!(d.run.scheduled_for, t0());
    assert_eq!(d.run.dispatch_at, Some(t0()));
    assert_eq!(d.run.state, RunState::Pending);
    assert_eq!(d.run.attempt, 0);
    assert_eq!(d.run.max_attempts, 4);
    assert_eq!(d.run.target, s.target);
    assert_eq!(d.run.slot_count, 1);
    assert_eq!(get_run(&store, &d.run).await, d.run, "the dispatched run is the stored run");
    let stored = store.get_schedule(s.id).await.expect("get").expect("exists");
    assert_eq!(stored.next_fire_at, Some(at(10)));
    assert_eq!(stored.state, ScheduleState::Active);

    // Claiming again at the same time finds nothing; the next slot comes at its time.
    assert_eq!(claim(&store, at(9)).await.slots, 0);
    let batch = claim(&store, at(10)).await;
    assert_eq!(batch.slots, 1);
    assert_eq!(batch.ready[0].run.scheduled_for, at(10));
    let runs = runs_of(&store, &s).await;
    assert_eq!(runs.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(), vec![t0(), at(10)]);
    // A ready run is leased: lease_due_runs does not hand it out again.
    assert!(store.lease_due_runs("node-b", at(10), 100).await.expect("lease").is_empty());
    // A paused schedule is not claimed.
    let mut paused = store.get_schedule(s.id).await.expect("get").expect("exists");
    paused.state = ScheduleState::Paused;
    store.update_schedule(&paused).await.expect("pause");
    assert_eq!(claim(&store, at(100)).await.slots, 0);
}

pub async fn claim_finishes_exhausted_schedule_and_frees_its_name(store: Arc<dyn Store>) {
    let trigger =
        Trigger::parse(&json!({"type": "date", "run_date": at(5).to_rfc3339()}), &ctx()).expect("date");
    let s = schedule("once", trigger, Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    assert_eq!(store.next_wake().await.expect("wake"), Some(at(5)));
    let batch = claim(&store, at(6)).await;
    assert_eq!(batch.ready.len(), 1);
    assert_eq!(batch.ready[0].run.scheduled_for, at(5));
    let stored = store.get_schedule(s.id).await.expect("get").expect("kept");
    assert_eq!(stored.state, ScheduleState::Finished);
    assert_eq!(stored.next_fire_at, None);
    assert_eq!(store.find_schedule("once").await.expect("find"), None);
    store
        .insert_schedule(&schedule("once", interval(10, t0(), 0), Policies::default()))
        .await
        .expect("name free");
    assert_eq!(
        claim(&store, at(1000)).await.ready.iter().filter(|d| d.run.schedule_id == Some(s.id)).count(),
        0
    );
}

pub async fn slot_claimed_once_is_not_claimed_after_moving_back(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    assert_eq!(claim(&store, t0()).await.slots, 1);
    let mut back = store.get_schedule(s.id).await.expect("get").expect("exists");
    back.next_fire_at = Some(t0());
    store.update_schedule(&back).await.expect("move back");
    let batch = claim(&store, at(1)).await;
    assert_eq!(batch.schedules, 1);
    assert_eq!(batch.slots, 0, "the slot was claimed already");
    assert!(batch.ready.is_empty());
    assert_eq!(runs_of(&store, &s).await.len(), 1);
    let after = store.get_schedule(s.id).await.expect("get").expect("exists");
    assert_eq!(after.next_fire_at, Some(at(10)), "the schedule still moves on");
}

pub async fn coalesce_after_gap_runs_latest_slot_and_records_missed(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    let batch = claim(&store, at(55)).await;
    assert_eq!(batch.slots, 6);
    assert_eq!(batch.ready.len(), 1);
    assert_eq!((batch.missed, batch.later), (5, 0));
    assert_eq!(batch.ready[0].run.scheduled_for, at(50));
    let runs = runs_of(&store, &s).await;
    assert_eq!(
        states(&runs),
        vec![
            RunState::Missed,
            RunState::Missed,
            RunState::Missed,
            RunState::Missed,
            RunState::Missed,
            RunState::Pending
        ]
    );
    assert!(
        runs[..5].iter().all(|r| r.slot_count == 1 && r.finished_at.is_some() && r.dispatch_at.is_none())
    );
    assert_eq!(store.get_schedule(s.id).await.expect("get").expect("exists").next_fire_at, Some(at(60)));
}

pub async fn long_outage_folds_missed_slots_into_one_row(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(1, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    let batch = claim(&store, at(1500)).await;
    assert_eq!(batch.slots, 1501, "every slot is accounted for");
    assert_eq!(batch.missed, 1500, "the folded row counts every slot it stands for");
    assert_eq!(batch.ready.len(), 1);
    assert_eq!(batch.ready[0].run.scheduled_for, at(1500));
    let runs = runs_of(&store, &s).await;
    assert_eq!(runs.len(), 1001);
    assert_eq!(runs[0].scheduled_for, t0());
    assert_eq!(runs[0].state, RunState::Missed);
    assert_eq!(runs[0].slot_count, 501);
    assert!(runs[1..1000].iter().all(|r| r.state == RunState::Missed && r.slot_count == 1));
    assert_eq!(runs[1].scheduled_for, at(501));
    assert_eq!(runs.iter().map(|r| u64::from(r.slot_count)).sum::<u64>(), 1501);
}

pub async fn run_all_is_bounded(store: Arc<dyn Store>) {
    let s =
        schedule("tick", interval(10, t0(), 0), policies(|p| p.misfire = MisfirePolicy::RunAll { max: 3 }));
    store.insert_schedule(&s).await.expect("insert");
    let batch = claim(&store, at(55)).await;
    let mut ready: Vec<Timestamp> = batch.ready.iter().map(|d| d.run.scheduled_for).collect();
    ready.sort();
    assert_eq!(ready, vec![at(30), at(40), at(50)]);
    let runs = runs_of(&store, &s).await;
    assert_eq!(
        states(&runs),
        vec![
            RunState::Missed,
            RunState::Missed,
            RunState::Missed,
            RunState::Pending,
            RunState::Pending,
            RunState::Pending
        ]
    );
}

pub async fn skip_policy_runs_only_slots_within_grace(store: Arc<dyn Store>) {
    let grace = TimeDelta::seconds(15);
    let s = schedule("tick", interval(10, t0(), 0), policies(|p| p.misfire = MisfirePolicy::Skip { grace }));
    store.insert_schedule(&s).await.expect("insert");
    let batch = claim(&store, at(55)).await;
    let mut ready: Vec<Timestamp> = batch.ready.iter().map(|d| d.run.scheduled_for).collect();
    ready.sort();
    assert_eq!(ready, vec![at(40), at(50)], "slots at most 15 s old run");
    let runs = runs_of(&store, &s).await;
    assert_eq!(runs.iter().filter(|r| r.state == RunState::Missed).count(), 4);
}

pub async fn overlap_skip_records_skipped_while_a_run_is_active(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), policies(|p| p.overlap = OverlapPolicy::Skip));
    store.insert_schedule(&s).await.expect("insert");
    let first = claim(&store, t0()).await.ready.remove(0).run;
    let batch = claim(&store, at(10)).await;
    assert!(batch.ready.is_empty(), "a pending run is active");
    assert_eq!(batch.skipped, 1);
    start(&store, &first, 1, at(11)).await;
    assert!(claim(&store, at(20)).await.ready.is_empty(), "a running run is active");
    finish(&store, &first, 1, AttemptOutcome::Succeeded, at(21)).await;
    let batch = claim(&store, at(30)).await;
    assert_eq!(batch.ready.len(), 1);
    assert_eq!(batch.ready[0].run.scheduled_for, at(30));
    let runs = runs_of(&store, &s).await;
    assert_eq!(
        states(&runs),
        vec![RunState::Succeeded, RunState::Skipped, RunState::Skipped, RunState::Pending]
    );
}

pub async fn overlap_queue_one_releases_queued_run_when_active_finishes(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), policies(|p| p.overlap = OverlapPolicy::QueueOne));
    store.insert_schedule(&s).await.expect("insert");
    let first = claim(&store, t0()).await.ready.remove(0).run;
    start(&store, &first, 1, at(1)).await;
    let batch = claim(&store, at(10)).await;
    assert!(batch.ready.is_empty());
    assert_eq!((batch.slots, batch.queued), (1, 1));
    assert_eq!(claim(&store, at(20)).await.skipped, 1, "the queue holds one");
    let runs = runs_of(&store, &s).await;
    assert_eq!(states(&runs), vec![RunState::Running, RunState::Pending, RunState::Skipped]);
    let queued = runs[1].clone();
    assert_eq!(queued.dispatch_at, None, "queued behind the running one");
    assert!(store.lease_due_runs("node-a", at(25), 10).await.expect("lease").is_empty());

    finish(&store, &first, 1, AttemptOutcome::Failed, at(25)).await;
    assert_eq!(
        get_run(&store, &queued).await.dispatch_at,
        Some(at(25)),
        "released when the active run ended"
    );
    let leased = store.lease_due_runs("node-a", at(25), 10).await.expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].run.id, queued.id);
    assert_eq!(leased[0].policies.overlap, OverlapPolicy::QueueOne);
}

pub async fn overlap_replace_returns_active_runs_to_cancel(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), policies(|p| p.overlap = OverlapPolicy::Replace));
    store.insert_schedule(&s).await.expect("insert");
    let first = claim(&store, t0()).await.ready.remove(0).run;
    start(&store, &first, 1, at(1)).await;
    let batch = claim(&store, at(10)).await;
    assert_eq!(batch.cancel, vec![first.id], "the running run is to be cancelled by the dispatcher");
    assert_eq!(batch.ready.len(), 1);
    let second = batch.ready[0].run.clone();
    assert_eq!(get_run(&store, &first).await.state, RunState::Running);
    // The dispatcher cancels it.
    let cancelled = ended(&first, 1, AttemptOutcome::Cancelled, at(1), at(11));
    store
        .record_attempts(
            &[AttemptEnd { attempt: cancelled, next: NextStep::Finish(RunState::Cancelled) }],
            at(11),
        )
        .await
        .expect("record");
    // A run that has not started is cancelled by the claim itself, and returned too.
    let batch = claim(&store, at(20)).await;
    assert_eq!(batch.cancel, vec![second.id]);
    assert_eq!(get_run(&store, &second).await.state, RunState::Cancelled);
    // Several missed slots at once: only the latest runs, the others are skipped.
    let batch = claim(&store, at(55)).await;
    assert_eq!(batch.ready.len(), 1);
    assert_eq!(batch.ready[0].run.scheduled_for, at(50));
    let runs = runs_of(&store, &s).await;
    assert_eq!(
        states(&runs),
        vec![
            RunState::Cancelled,
            RunState::Cancelled,
            RunState::Cancelled,
            RunState::Missed,
            RunState::Missed,
            RunState::Pending
        ]
    );
}

pub async fn jittered_slot_is_leased_only_when_due(store: Arc<dyn Store>) {
    // A schedule whose first slot gets at least a second of jitter.
    let s = (0..1000)
        .map(|_| schedule("jittery", interval(3600, t0(), 60), Policies::default()))
        .find(|s| s.trigger.jitter_for(s.id, t0()) >= TimeDelta::seconds(1))
        .expect("a schedule with jitter");
    let due = t0() + s.trigger.jitter_for(s.id, t0());
    store.insert_schedule(&s).await.expect("insert");
    let batch = claim(&store, t0()).await;
    assert_eq!(batch.slots, 1);
    assert!(batch.ready.is_empty(), "not due yet");
    let runs = runs_of(&store, &s).await;
    assert_eq!(runs[0].scheduled_for, t0(), "the slot is un-jittered");
    assert_eq!(runs[0].dispatch_at, Some(due));
    assert_eq!(store.next_wake().await.expect("wake"), Some(due));
    assert!(
        store.lease_due_runs("node-a", due - TimeDelta::milliseconds(1), 10).await.expect("lease").is_empty()
    );
    let leased = store.lease_due_runs("node-a", due, 10).await.expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].run.id, runs[0].id);
    assert_eq!(leased[0].policies, s.policies);
    assert!(store.lease_due_runs("node-b", due, 10).await.expect("lease").is_empty(), "leased once");
    store.release_runs(&[runs[0].id]).await.expect("release");
    let again = store.lease_due_runs("node-b", due, 10).await.expect("lease");
    assert_eq!(again.len(), 1, "a released run is leased again");
}

/// A leased run is never handed to its node again (the node holds it until it starts or releases
/// it); another node may take it once the lease has run out (a dead node's). Assumes leases last
/// less than a day.
pub async fn lease_is_not_handed_out_twice_and_expires_only_for_other_nodes(store: Arc<dyn Store>) {
    let s = schedule("hourly", interval(3600, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    let run = claim(&store, t0()).await.ready.remove(0).run;
    let day = TimeDelta::days(1);
    assert!(store.lease_due_runs("node-a", t0() + day, 10).await.expect("lease").is_empty(), "own lease");
    assert!(store.lease_due_runs("node-b", at(1), 10).await.expect("lease").is_empty(), "live lease");
    let taken = store.lease_due_runs("node-b", t0() + day, 10).await.expect("lease");
    assert_eq!(taken.iter().map(|d| d.run.id).collect::<Vec<_>>(), vec![run.id], "expired lease");
    assert!(store.lease_due_runs("node-b", t0() + day, 10).await.expect("lease").is_empty());
    store.release_runs(&[run.id]).await.expect("release");
    assert_eq!(store.next_wake().await.expect("wake"), Some(t0()), "a released run is due again");
    assert_eq!(store.lease_due_runs("node-a", t0() + day, 10).await.expect("lease").len(), 1);
}

pub async fn next_wake_reflects_schedules_and_retrying_runs(store: Arc<dyn Store>) {
    assert_eq!(store.next_wake().await.expect("wake"), None);
    let mut paused = schedule("paused", interval(10, at(1), 0), Policies::default());
    paused.state = ScheduleState::Paused;
    store.insert_schedule(&paused).await.expect("insert");
    assert_eq!(store.next_wake().await.expect("wake"), None, "paused schedules do not wake anyone");
    let s = schedule("hourly", interval(3600, at(5), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    assert_eq!(store.next_wake().await.expect("wake"), Some(at(5)));
    let run = claim(&store, at(5)).await.ready.remove(0).run;
    assert_eq!(store.next_wake().await.expect("wake"), Some(at(3605)), "a leased run is its node's");
    start(&store, &run, 1, at(5)).await;
    assert_eq!(store.next_wake().await.expect("wake"), Some(at(3605)));
    let attempt = ended(&run, 1, AttemptOutcome::Failed, at(5), at(6));
    store
        .record_attempts(&[AttemptEnd { attempt, next: NextStep::Retry { at: at(36) } }], at(6))
        .await
        .expect("record");
    assert_eq!(store.next_wake().await.expect("wake"), Some(at(36)));
}

// --- attempts ---

pub async fn started_attempt_then_success_is_recorded(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    let run = claim(&store, t0()).await.ready.remove(0).run;
    start(&store, &run, 1, at_ms(5)).await;
    let running = get_run(&store, &run).await;
    assert_eq!((running.state, running.attempt, running.started_at), (RunState::Running, 1, Some(at_ms(5))));
    let attempt = ended(&run, 1, AttemptOutcome::Succeeded, at_ms(5), at_ms(750));
    store
        .record_attempts(
            &[AttemptEnd { attempt: attempt.clone(), next: NextStep::Finish(RunState::Succeeded) }],
            at(1),
        )
        .await
        .expect("record");
    let done = get_run(&store, &run).await;
    assert_eq!(done.state, RunState::Succeeded);
    assert_eq!(done.finished_at, Some(at_ms(750)));
    assert_eq!(done.result, Some(json!({"ok": 1})));
    assert_eq!(done.error, None);
    assert_eq!(done.started_at, Some(at_ms(5)));
    assert_eq!(store.list_attempts(run.id).await.expect("attempts"), vec![attempt]);
}

pub async fn failed_attempt_retries_and_second_attempt_is_leased_later(store: Arc<dyn Store>) {
    let p = policies(|p| {
        p.retry.max_attempts = 2;
        p.retry.jitter = 0.0;
    });
    let s = schedule("tick", interval(3600, t0(), 0), p);
    store.insert_schedule(&s).await.expect("insert");
    let run = claim(&store, t0()).await.ready.remove(0).run;
    start(&store, &run, 1, at(1)).await;
    let first = ended(&run, 1, AttemptOutcome::Failed, at(1), at(2));
    let next = after_attempt(AttemptOutcome::Failed, 1, run.max_attempts, &p.retry, at(2), 0);
    let NextStep::Retry { at: retry_at } = next else { panic!("expected a retry, got {next:?}") };
    assert_eq!(retry_at, at(3));
    store.record_attempts(&[AttemptEnd { attempt: first.clone(), next }], at(2)).await.expect("record");
    let retrying = get_run(&store, &run).await;
    assert_eq!(
        (retrying.state, retrying.dispatch_at, retrying.attempt),
        (RunState::Retrying, Some(at(3)), 1)
    );
    assert_eq!(retrying.error.as_deref(), Some("attempt 1 failed"));
    assert_eq!(retrying.finished_at, None);
    assert!(store.lease_due_runs("node-a", at_ms(2_999), 10).await.expect("lease").is_empty());
    let leased = store.lease_due_runs("node-a", at(3), 10).await.expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(
        (leased[0].run.id, leased[0].run.state, leased[0].run.attempt),
        (run.id, RunState::Retrying, 1)
    );
    start(&store, &run, 2, at(3)).await;
    assert_eq!(get_run(&store, &run).await.attempt, 2);
    let second = ended(&run, 2, AttemptOutcome::Failed, at(3), at(4));
    let next = after_attempt(AttemptOutcome::Failed, 2, run.max_attempts, &p.retry, at(4), 0);
    assert_eq!(next, NextStep::Finish(RunState::Failed));
    store.record_attempts(&[AttemptEnd { attempt: second.clone(), next }], at(4)).await.expect("record");
    let failed = get_run(&store, &run).await;
    assert_eq!((failed.state, failed.attempt, failed.finished_at), (RunState::Failed, 2, Some(at(4))));
    assert_eq!(failed.started_at, Some(at(1)), "started_at is the first attempt's");
    assert_eq!(store.list_attempts(run.id).await.expect("attempts"), vec![first, second]);
}

pub async fn recover_interrupts_running_runs_and_retries_per_policy(store: Arc<dyn Store>) {
    let retried = schedule("retried", interval(3600, t0(), 0), policies(|p| p.retry.max_attempts = 3));
    let last = schedule("last", interval(3600, t0(), 0), policies(|p| p.retry.max_attempts = 1));
    let waiting = schedule("waiting", interval(3600, t0(), 0), Policies::default());
    for s in [&retried, &last, &waiting] {
        store.insert_schedule(s).await.expect("insert");
    }
    let batch = claim(&store, t0()).await;
    let run_of = |s: &Schedule| {
        batch.ready.iter().find(|d| d.run.schedule_id == Some(s.id)).map(|d| d.run.clone()).expect("claimed")
    };
    let (r1, r2, r3) = (run_of(&retried), run_of(&last), run_of(&waiting));
    let lone = Run {
        id: Uuid::now_v7(),
        schedule_id: None,
        scheduled_for: t0(),
        dispatch_at: Some(t0()),
        state: RunState::Pending,
        attempt: 0,
        max_attempts: 3,
        target: target("h"),
        created_at: t0(),
        started_at: None,
        finished_at: None,
        result: None,
        error: None,
        slot_count: 1,
    };
    store.insert_run(&lone).await.expect("run now");
    assert_eq!(store.lease_due_runs("node-a", t0(), 10).await.expect("lease").len(), 1);
    start(&store, &r1, 1, at(1)).await;
    start(&store, &r2, 1, at(1)).await;
    start(&store, &lone, 1, at(1)).await;

    let recovery = store.recover(at(100)).await.expect("recover");
    assert_eq!((recovery.interrupted, recovery.retried, recovery.released), (3, 1, 1));
    let r1 = get_run(&store, &r1).await;
    assert_eq!(r1.state, RunState::Retrying);
    assert!(r1.dispatch_at.is_some_and(|t| t >= at(100) && t <= at(101)), "{:?}", r1.dispatch_at);
    assert_eq!(get_run(&store, &r2).await.state, RunState::Interrupted);
    let lone = get_run(&store, &lone).await;
    assert_eq!(lone.state, RunState::Interrupted, "a run without a schedule is not retried");
    assert_eq!(lone.finished_at, Some(at(100)));
    for run in [&r1, &r2, &lone] {
        let attempts = store.list_attempts(run.id).await.expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].number, 1);
        assert_eq!(attempts[0].outcome, AttemptOutcome::Interrupted);
        assert_eq!(attempts[0].started_at, at(1));
        assert_eq!(attempts[0].finished_at, at(100));
    }
    // The released pending run can be leased again, and so can the retry when due.
    let leased = store.lease_due_runs("node-b", at(101), 10).await.expect("lease");
    let mut ids: Vec<Uuid> = leased.iter().map(|d| d.run.id).collect();
    ids.sort();
    let mut want = vec![r1.id, r3.id];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(
        store.recover(at(200)).await.expect("recover"),
        crate::Recovery { released: 2, ..Default::default() }
    );
}

pub async fn cancel_run_cancels_only_waiting_runs(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    let a = claim(&store, t0()).await.ready.remove(0).run;
    let b = claim(&store, at(10)).await.ready.remove(0).run;
    let c = claim(&store, at(20)).await.ready.remove(0).run;
    assert_eq!(store.cancel_run(a.id, at(21)).await.expect("cancel"), RunState::Cancelled);
    let a = get_run(&store, &a).await;
    assert_eq!((a.state, a.finished_at), (RunState::Cancelled, Some(at(21))));
    assert!(
        store.lease_due_runs("node-a", at(30), 10).await.expect("lease").iter().all(|d| d.run.id != a.id)
    );
    start(&store, &b, 1, at(22)).await;
    assert_eq!(
        store.cancel_run(b.id, at(23)).await.expect("cancel"),
        RunState::Running,
        "running: the dispatcher's"
    );
    assert_eq!(get_run(&store, &b).await.state, RunState::Running);
    start(&store, &c, 1, at(22)).await;
    finish(&store, &c, 1, AttemptOutcome::Succeeded, at(23)).await;
    assert_eq!(store.cancel_run(c.id, at(24)).await.expect("cancel"), RunState::Succeeded);
    // A cancelled run is not started by a late start.
    start(&store, &a, 1, at(25)).await;
    assert_eq!(get_run(&store, &a).await.state, RunState::Cancelled);
    match store.cancel_run(Uuid::now_v7(), at(24)).await {
        Err(StoreError::NotFound { kind: "run", .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Retrying runs can be cancelled.
    let attempt = ended(&b, 1, AttemptOutcome::Failed, at(22), at(24));
    store
        .record_attempts(&[AttemptEnd { attempt, next: NextStep::Retry { at: at(60) } }], at(24))
        .await
        .expect("record");
    assert_eq!(store.cancel_run(b.id, at(25)).await.expect("cancel"), RunState::Cancelled);
    assert_eq!(
        store.next_wake().await.expect("wake"),
        Some(at(30)),
        "the cancelled retry no longer wakes anyone"
    );
}

pub async fn purge_history_deletes_only_finished_runs_before_the_cutoff(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    let mut finished_early = Vec::new();
    for k in 0..5 {
        let run = claim(&store, at(10 * k)).await.ready.remove(0).run;
        start(&store, &run, 1, at(10 * k)).await;
        finish(&store, &run, 1, AttemptOutcome::Succeeded, at(10 * k + 1)).await;
        finished_early.push(run);
    }
    let late = claim(&store, at(50)).await.ready.remove(0).run;
    start(&store, &late, 1, at(50)).await;
    finish(&store, &late, 1, AttemptOutcome::Failed, at(51)).await;
    let running = claim(&store, at(60)).await.ready.remove(0).run;
    start(&store, &running, 1, at(60)).await;
    let pending = claim(&store, at(70)).await.ready.remove(0).run;

    assert_eq!(store.purge_history(at(50)).await.expect("purge"), 5);
    for run in &finished_early {
        assert_eq!(store.get_run(run.id).await.expect("get"), None);
        assert!(store.list_attempts(run.id).await.expect("attempts").is_empty());
    }
    assert_eq!(get_run(&store, &late).await.state, RunState::Failed);
    assert_eq!(store.list_attempts(late.id).await.expect("attempts").len(), 1);
    assert_eq!(store.purge_history(at(10_000)).await.expect("purge"), 1);
    assert_eq!(get_run(&store, &running).await.state, RunState::Running);
    assert_eq!(get_run(&store, &pending).await.state, RunState::Pending);
    assert_eq!(store.purge_history(at(10_000)).await.expect("purge"), 0);
}

pub async fn delete_schedule_cancels_waiting_runs_and_keeps_history(store: Arc<dyn Store>) {
    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    let done = claim(&store, t0()).await.ready.remove(0).run;
    start(&store, &done, 1, t0()).await;
    finish(&store, &done, 1, AttemptOutcome::Succeeded, at(1)).await;
    let running = claim(&store, at(10)).await.ready.remove(0).run;
    start(&store, &running, 1, at(10)).await;
    let pending = claim(&store, at(20)).await.ready.remove(0).run;
    assert!(store.delete_schedule(s.id, at(25)).await.expect("delete"));
    assert_eq!(store.get_schedule(s.id).await.expect("get"), None);
    assert_eq!(store.find_schedule("tick").await.expect("find"), None);
    let pending = get_run(&store, &pending).await;
    assert_eq!((pending.state, pending.finished_at), (RunState::Cancelled, Some(at(25))));
    assert_eq!(get_run(&store, &done).await.state, RunState::Succeeded);
    assert_eq!(get_run(&store, &running).await.state, RunState::Running, "a running run is the dispatcher's");
    assert_eq!(runs_of(&store, &s).await.len(), 3, "history stays");
    assert_eq!(claim(&store, at(100)).await.slots, 0);
    store
        .insert_schedule(&schedule("tick", interval(10, t0(), 0), Policies::default()))
        .await
        .expect("name free");
}

// --- history ---

/// A "run now" run of `handler` in `state`, attempt 1 started at 1 s.
fn lone_run(handler: &str, state: RunState) -> Run {
    Run {
        id: Uuid::now_v7(),
        schedule_id: None,
        scheduled_for: at(1),
        dispatch_at: None,
        state,
        attempt: 1,
        max_attempts: 1,
        target: target(handler),
        created_at: at(1),
        started_at: Some(at(1)),
        finished_at: None,
        result: None,
        error: None,
        slot_count: 1,
    }
}

pub async fn run_counts_sum_runs_and_durations_by_handler_and_state(store: Arc<dyn Store>) {
    let run = |handler: &str, state, started: Option<i64>, finished: Option<i64>| Run {
        started_at: started.map(at_ms),
        finished_at: finished.map(at_ms),
        ..lone_run(handler, state)
    };
    assert!(store.run_counts().await.expect("counts").is_empty());
    store
        .insert_runs(&[
            run("a", RunState::Succeeded, Some(1_000), Some(1_250)),
            run("a", RunState::Succeeded, Some(2_000), Some(2_050)),
            run("a", RunState::Failed, Some(3_000), Some(3_100)),
            run("b", RunState::Running, Some(4_000), None),
        ])
        .await
        .expect("insert");
    let counts = store.run_counts().await.expect("counts");
    let find = |h: &str, st| counts.iter().find(|c| c.handler_id == h && c.state == st).cloned();
    assert_eq!(find("a", RunState::Succeeded).map(|c| (c.runs, c.total_duration_ms)), Some((2, 300)));
    assert_eq!(find("a", RunState::Failed).map(|c| (c.runs, c.total_duration_ms)), Some((1, 100)));
    assert_eq!(find("b", RunState::Running).map(|c| (c.runs, c.total_duration_ms)), Some((1, 0)));
    assert_eq!(counts.len(), 3);
}

pub async fn count_runs_by_state_counts_slots_in_the_range_by_state(store: Arc<dyn Store>) {
    use RunState::{Failed, Running, Succeeded, TimedOut};
    let run = |slot_ms: i64, state| Run { scheduled_for: at_ms(slot_ms), ..lone_run("h", state) };
    let (from, to) = (at(100), at(200));
    assert!(store.count_runs_by_state(from, to).await.expect("count").is_empty());
    store
        .insert_runs(&[
            run(0, Failed),
            run(99_999, Succeeded),
            run(100_000, Succeeded),
            run(150_000, Succeeded),
            run(150_000, Failed),
            run(160_000, Failed),
            run(170_000, Running),
            run(199_999, TimedOut),
            run(200_000, Failed),
            run(250_000, Running),
            run(500_000, Succeeded),
        ])
        .await
        .expect("insert");
    // A slot at `from` is in, one at `to` is out, for finished and unfinished runs alike;
    // states with no run are left out.
    let sorted = |mut v: Vec<(RunState, u64)>| {
        v.sort_by_key(|(st, _)| st.as_str());
        v
    };
    assert_eq!(
        sorted(store.count_runs_by_state(from, to).await.expect("count")),
        vec![(Failed, 2), (Running, 1), (Succeeded, 2), (TimedOut, 1)]
    );
    assert_eq!(
        sorted(store.count_runs_by_state(at(0), at(1_000)).await.expect("count")),
        vec![(Failed, 4), (Running, 2), (Succeeded, 4), (TimedOut, 1)]
    );
    assert!(store.count_runs_by_state(at(300), at(400)).await.expect("count").is_empty());
}

pub async fn list_runs_of_several_states_is_newest_first_and_pages(store: Arc<dyn Store>) {
    use RunState::{Failed, Interrupted, Succeeded, TimedOut};
    // Equal slots among them: the id breaks the tie, across states too.
    let runs: Vec<Run> = (0..16)
        .map(|i| Run {
            scheduled_for: at(i / 3),
            ..lone_run("h", [Failed, Succeeded, TimedOut, Interrupted, Failed][i as usize % 5])
        })
        .collect();
    store.insert_runs(&runs).await.expect("insert");
    let states = vec![Failed, TimedOut, Interrupted];
    let mut expected: Vec<Run> = runs.iter().filter(|r| states.contains(&r.state)).cloned().collect();
    expected.sort_by_key(|r| std::cmp::Reverse((r.scheduled_for, r.id)));
    let filter = RunFilter { states: states.clone(), ..RunFilter::default() };
    assert_eq!(store.list_runs(&filter).await.expect("all"), expected);
    let first = store.list_runs(&RunFilter { limit: 5, ..filter.clone() }).await.expect("first five");
    assert_eq!(first, expected[..5]);
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_runs(&RunFilter { before, limit: 2, ..filter.clone() }).await.expect("a page");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen.extend(page);
    }
    assert_eq!(seen, expected, "pages of two cover every match once, in order");
    let repeated = RunFilter { states: vec![Failed, Failed], limit: 50, ..RunFilter::default() };
    let failed: Vec<Run> = expected.iter().filter(|r| r.state == Failed).cloned().collect();
    assert_eq!(store.list_runs(&repeated).await.expect("repeated state"), failed);
}

pub async fn next_fires_are_active_schedules_earliest_first(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for (name, state, next) in [
        ("a", ScheduleState::Active, Some(30)),
        ("b", ScheduleState::Active, Some(10)),
        ("paused", ScheduleState::Paused, Some(5)),
        ("finished", ScheduleState::Finished, None),
        ("e", ScheduleState::Active, Some(20)),
        ("f", ScheduleState::Active, Some(40)),
    ] {
        let mut s = schedule(name, interval(10, t0(), 0), Policies::default());
        s.state = state;
        s.next_fire_at = next.map(at);
        store.insert_schedule(&s).await.expect("insert");
        made.push(s);
    }
    let names = |v: Vec<Schedule>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
    let first = store.next_fires(3).await.expect("next fires");
    assert_eq!(names(first.clone()), ["b", "e", "a"]);
    assert_eq!(first[0], made[1], "whole schedules come back");
    assert_eq!(names(store.next_fires(10).await.expect("next fires")), ["b", "e", "a", "f"]);
    let mut b = made[1].clone();
    b.state = ScheduleState::Paused;
    store.update_schedule(&b).await.expect("pause");
    assert_eq!(names(store.next_fires(1).await.expect("next fires")), ["e"]);
}

pub async fn live_schedule_names_are_in_name_order_without_finished_ones(store: Arc<dyn Store>) {
    assert!(store.live_schedule_names(10).await.expect("names").is_empty());
    let mut made = Vec::new();
    for (name, state) in [
        ("gamma", ScheduleState::Active),
        ("beta", ScheduleState::Active),
        ("done", ScheduleState::Finished),
        ("Alpha", ScheduleState::Paused),
        ("alpha2", ScheduleState::Active),
    ] {
        let mut s = schedule(name, interval(10, t0(), 0), Policies::default());
        s.state = state;
        store.insert_schedule(&s).await.expect("insert");
        made.push(s);
    }
    assert_eq!(store.live_schedule_names(10).await.expect("names"), ["Alpha", "alpha2", "beta", "gamma"]);
    assert_eq!(store.live_schedule_names(2).await.expect("names"), ["Alpha", "alpha2"]);
    store.delete_schedule(made[1].id, at(1)).await.expect("delete");
    assert_eq!(store.live_schedule_names(10).await.expect("names"), ["Alpha", "alpha2", "gamma"]);
}

pub async fn record_outcomes_stores_new_runs_with_their_attempts(store: Arc<dyn Store>) {
    let run =
        Run { started_at: Some(at(1)), attempt: 1, max_attempts: 1, ..lone_run("h", RunState::Running) };
    let end = AttemptEnd {
        attempt: Attempt {
            run_id: run.id,
            number: 1,
            instance: Some("i".into()),
            started_at: at(1),
            finished_at: at(2),
            outcome: AttemptOutcome::Succeeded,
            result: Some(json!({"ok": true})),
            error: None,
        },
        next: NextStep::Finish(RunState::Succeeded),
    };
    // Twice, as after an unclear failure: the same outcome, nothing doubled.
    for _ in 0..2 {
        store
            .record_outcomes(std::slice::from_ref(&run), std::slice::from_ref(&end), at(2))
            .await
            .expect("recorded");
    }
    let stored = store.get_run(run.id).await.expect("get").expect("stored");
    assert_eq!((stored.state, stored.result), (RunState::Succeeded, Some(json!({"ok": true}))));
    assert_eq!(store.list_attempts(run.id).await.expect("attempts").len(), 1);
}

pub async fn insert_runs_stores_a_batch_and_is_idempotent(store: Arc<dyn Store>) {
    let run = |state| lone_run("h", state);
    let batch: Vec<Run> = (0..3).map(|_| run(RunState::Running)).collect();
    store.insert_runs(&batch).await.expect("insert batch");
    for r in &batch {
        assert_eq!(store.get_run(r.id).await.expect("get").as_ref(), Some(r));
    }
    // Retried after an unclear failure: what is stored stays, the rest is added.
    let fresh = run(RunState::Running);
    let changed = Run { error: Some("changed".into()), ..batch[0].clone() };
    store.insert_runs(&[fresh.clone(), changed]).await.expect("a retried batch");
    assert_eq!(store.get_run(fresh.id).await.expect("get").as_ref(), Some(&fresh));
    assert_eq!(store.get_run(batch[0].id).await.expect("get").as_ref(), Some(&batch[0]), "left as it was");
    store.insert_runs(&[]).await.expect("an empty batch is fine");
}

pub async fn schedule_names_include_finished_and_deleted_schedules(store: Arc<dyn Store>) {
    let live = schedule("live", interval(10, t0(), 0), Policies::default());
    let gone = schedule("gone", interval(10, t0(), 0), Policies::default());
    let finished = Schedule {
        state: ScheduleState::Finished,
        next_fire_at: None,
        ..schedule("done", interval(10, t0(), 0), Policies::default())
    };
    for s in [&live, &gone, &finished] {
        store.insert_schedule(s).await.expect("insert");
    }
    assert!(store.delete_schedule(gone.id, at(5)).await.expect("delete"));
    // The name of a deleted schedule is free again; its old runs still name the old one.
    let again = schedule("gone", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&again).await.expect("the name is free");
    let unknown = Uuid::now_v7();
    let names =
        store.schedule_names(&[live.id, gone.id, finished.id, again.id, unknown]).await.expect("names");
    assert_eq!(names.get(&live.id).map(String::as_str), Some("live"));
    assert_eq!(names.get(&gone.id).map(String::as_str), Some("gone"));
    assert_eq!(names.get(&finished.id).map(String::as_str), Some("done"));
    assert_eq!(names.get(&again.id).map(String::as_str), Some("gone"));
    assert_eq!(names.get(&unknown), None);
    assert_eq!(names.len(), 4);
    assert!(store.schedule_names(&[]).await.expect("none").is_empty());
    assert_eq!(store.schedules_named("gone").await.expect("named"), vec![gone.id, again.id]);
    assert_eq!(store.schedules_named("done").await.expect("named"), vec![finished.id]);
    assert!(store.schedules_named("never").await.expect("named").is_empty());
}

pub async fn a_second_run_on_a_taken_slot_is_a_duplicate_slot(store: Arc<dyn Store>) {
    let s = schedule("manual", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert schedule");
    let run = Run {
        schedule_id: Some(s.id),
        scheduled_for: at_ms(1_500),
        dispatch_at: Some(at_ms(1_500)),
        state: RunState::Pending,
        attempt: 0,
        ..lone_run("h", RunState::Pending)
    };
    store.insert_run(&run).await.expect("the first run of the slot");
    let again = Run { id: Uuid::now_v7(), ..run.clone() };
    match store.insert_run(&again).await {
        Err(StoreError::DuplicateSlot { schedule_id, scheduled_for }) => {
            assert_eq!((schedule_id, scheduled_for), (s.id, at_ms(1_500)));
        }
        other => panic!("expected DuplicateSlot, got {other:?}"),
    }
    let next = Run { id: Uuid::now_v7(), scheduled_for: at_ms(1_501), ..run };
    store.insert_run(&next).await.expect("the next millisecond is another slot");
}

pub async fn run_now_round_trip_and_list_runs_filters_and_pages(store: Arc<dyn Store>) {
    let full = Run {
        id: Uuid::now_v7(),
        schedule_id: None,
        scheduled_for: at_ms(1_500),
        dispatch_at: None,
        state: RunState::Failed,
        attempt: 2,
        max_attempts: 2,
        target: Target {
            handler_id: "mail".to_string(),
            method: "send".to_string(),
            params: json!({"to": ["a"]}),
        },
        created_at: at(1),
        started_at: Some(at(2)),
        finished_at: Some(at(3)),
        result: Some(json!({"partial": true})),
        error: Some("boom".to_string()),
        slot_count: 1,
    };
    store.insert_run(&full).await.expect("insert");
    assert_eq!(store.get_run(full.id).await.expect("get").as_ref(), Some(&full));
    assert_eq!(store.get_run(Uuid::now_v7()).await.expect("get"), None);

    let s = schedule("tick", interval(10, t0(), 0), Policies::default());
    store.insert_schedule(&s).await.expect("insert");
    claim(&store, at(95)).await; // slots 0..90: nine missed, one pending
    let all = store.list_runs(&RunFilter::default()).await.expect("list");
    assert_eq!(all.len(), 11);
    assert!(
        all.windows(2).all(|w| (w[0].scheduled_for, w[0].id) > (w[1].scheduled_for, w[1].id)),
        "newest first"
    );
    assert_eq!(all[0].scheduled_for, at(90));

    let by_state = |states: Vec<RunState>| RunFilter { states, ..RunFilter::default() };
    assert_eq!(store.list_runs(&by_state(vec![RunState::Pending])).await.expect("list").len(), 1);
    assert_eq!(
        store.list_runs(&by_state(vec![RunState::Missed, RunState::Failed])).await.expect("list").len(),
        10
    );
    let mail = store
        .list_runs(&RunFilter { handler_id: Some("mail".to_string()), ..RunFilter::default() })
        .await
        .expect("list");
    assert_eq!(mail, vec![full.clone()]);
    let window = store
        .list_runs(&RunFilter { from: Some(at(20)), to: Some(at(50)), ..RunFilter::default() })
        .await
        .expect("list");
    assert_eq!(window.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(), vec![at(40), at(30), at(20)]);
    let of_schedule = store
        .list_runs(&RunFilter { schedule_id: Some(s.id), limit: 3, ..RunFilter::default() })
        .await
        .expect("list");
    assert_eq!(of_schedule.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(), vec![at(90), at(80), at(70)]);

    // Pages of four, newest first, cover everything once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page =
            store.list_runs(&RunFilter { before, limit: 4, ..RunFilter::default() }).await.expect("page");
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    // Filters and the cursor combine.
    let page = store
        .list_runs(&RunFilter {
            states: vec![RunState::Missed],
            before: Some(all[2].id),
            limit: 2,
            ..RunFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(page.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(), vec![at(60), at(50)]);
}

// --- handlers ---

pub async fn handler_instances_upsert_and_list(store: Arc<dyn Store>) {
    assert!(store.list_handler_instances().await.expect("list").is_empty());
    let mut a = HandlerInstance {
        handler_id: "mail".to_string(),
        instance_id: "mail-1".to_string(),
        protocol: "native".to_string(),
        address: "peer-7".to_string(),
        methods: vec!["send".to_string(), "bounce".to_string()],
        capacity: 4,
        connected: true,
        registered_at: at(1),
        last_seen: at(2),
        successes: 10,
        failures: 1,
        meta: json!({"version": "1.2", "pid": 42}),
    };
    store.upsert_handler_instance(&a).await.expect("upsert");
    assert_eq!(store.list_handler_instances().await.expect("list"), vec![a.clone()]);
    a.connected = false;
    a.last_seen = at(9);
    a.successes = u64::from(u32::MAX) + 5;
    a.methods = vec![];
    a.meta = Value::Object(Default::default());
    store.upsert_handler_instance(&a).await.expect("upsert");
    let b = HandlerInstance {
        handler_id: "billing".to_string(),
        instance_id: "b-1".to_string(),
        protocol: "v1".to_string(),
        address: "tcp://127.0.0.1:4243".to_string(),
        ..a.clone()
    };
    store.upsert_handler_instance(&b).await.expect("upsert");
    assert_eq!(store.list_handler_instances().await.expect("list"), vec![b, a]);
}

// --- several nodes ---

/// Two handles on one database (two nodes) claim the same due schedules at the same time, round
/// after round: every slot is claimed by exactly one of them.
pub async fn two_nodes_claim_every_slot_exactly_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const SCHEDULES: usize = 40;
    const ROUNDS: i64 = 30;
    let mut schedules = Vec::new();
    for i in 0..SCHEDULES {
        let s = schedule(&format!("s{i}"), interval(1, t0(), 0), Policies::default());
        schedules.push(s);
    }
    for s in &schedules {
        a.insert_schedule(s).await.expect("insert");
    }
    async fn drain(
        store: Arc<dyn Store>,
        node: &'static str,
        now: Timestamp,
    ) -> Vec<(Uuid, Timestamp, Uuid)> {
        let mut out = Vec::new();
        loop {
            let batch = store.claim_due(node, now, 7, false).await.expect("claim");
            out.extend(
                batch
                    .ready
                    .iter()
                    .map(|d| (d.run.schedule_id.expect("scheduled"), d.run.scheduled_for, d.run.id)),
            );
            tokio::task::yield_now().await;
            if batch.schedules < 7 {
                return out;
            }
        }
    }
    let mut claimed: Vec<(Uuid, Timestamp, Uuid)> = Vec::new();
    let (mut by_a, mut by_b) = (0, 0);
    for round in 0..ROUNDS {
        let now = at(round);
        // Node b's clock runs a little ahead now and then.
        let now_b = if round % 3 == 1 { now + TimeDelta::milliseconds(500) } else { now };
        let (ra, rb) = tokio::join!(
            tokio::spawn(drain(a.clone(), "node-a", now)),
            tokio::spawn(drain(b.clone(), "node-b", now_b))
        );
        let (ra, rb) = (ra.expect("node a"), rb.expect("node b"));
        by_a += ra.len();
        by_b += rb.len();
        claimed.extend(ra);
        claimed.extend(rb);
    }
    let total = SCHEDULES * ROUNDS as usize;
    let slots: HashSet<(Uuid, Timestamp)> = claimed.iter().map(|(s, t, _)| (*s, *t)).collect();
    assert_eq!(slots.len(), claimed.len(), "a slot was handed out twice");
    assert_eq!(claimed.len(), total, "every slot is claimed (a: {by_a}, b: {by_b})");
    let runs = a.list_runs(&RunFilter::default()).await.expect("list");
    assert_eq!(runs.len(), total);
    assert!(runs.iter().all(|r| r.state == RunState::Pending));
    let ids: HashSet<Uuid> = claimed.iter().map(|(_, _, id)| *id).collect();
    assert!(runs.iter().all(|r| ids.contains(&r.id)));
}
