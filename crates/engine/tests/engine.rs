//! The engine against a real SQLite file, driven by a virtual clock: no test sleeps to wait for
//! a schedule; `engine.idle()` waits until the engine has processed the current virtual time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::policy::{MisfirePolicy, OverlapPolicy, Policies, RetryPolicy};
use schedulezero_core::run::{AttemptOutcome, RunState};
use schedulezero_core::schedule::{Schedule, ScheduleState, Target};
use schedulezero_core::trigger::{ParseContext, Trigger};
use schedulezero_engine::clock::VirtualClock;
use schedulezero_engine::config::EngineConfig;
use schedulezero_engine::link::{Call, Link, LinkError, Reply};
use schedulezero_engine::registry::InstanceSpec;
use schedulezero_engine::{Engine, EngineError, LocalHandler, ScheduleSpec};
use schedulezero_store::{RunFilter, SqliteStore};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

const T0: &str = "2026-06-01T12:00:00Z";

fn t(s: &str) -> Timestamp {
    s.parse().expect("valid time")
}

struct Harness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<VirtualClock>,
    engine: Engine,
}

fn config() -> EngineConfig {
    EngineConfig { node_id: "test-node".into(), local_zone: chrono_tz::UTC, ..EngineConfig::default() }
}

impl Harness {
    async fn start(handlers: Vec<LocalHandler>) -> Harness {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engine.db");
        let clock = Arc::new(VirtualClock::new(t(T0)));
        let engine = start_engine(&path, clock.clone(), handlers).await;
        Harness { _dir: dir, path, clock, engine }
    }

    /// Stops the engine as a crash would (no shutdown), and starts a new one on the same file.
    async fn restart(&mut self, handlers: Vec<LocalHandler>) {
        let fresh = start_engine(&self.path, self.clock.clone(), handlers).await;
        let old = std::mem::replace(&mut self.engine, fresh);
        drop(old);
    }

    fn trigger(&self, v: Value) -> Trigger {
        let ctx = ParseContext { now: self.clock.now_ts(), local_zone: chrono_tz::UTC };
        Trigger::parse(&v, &ctx).expect("valid trigger")
    }

    async fn add(&self, name: &str, trigger: Value, method: &str, policies: Policies) -> Schedule {
        let spec = ScheduleSpec::new(self.trigger(trigger), target(method)).name(name).policies(policies);
        self.engine.add_schedule(spec).await.expect("schedule added")
    }

    async fn advance(&self, secs: f64) {
        self.clock.advance(TimeDelta::milliseconds((secs * 1000.0) as i64));
        self.idle().await;
    }

    async fn idle(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.engine.idle()).await.expect("engine goes idle");
    }

    async fn runs(&self, schedule: &Schedule) -> Vec<schedulezero_core::run::Run> {
        let mut runs = self
            .engine
            .store()
            .list_runs(&RunFilter { schedule_id: Some(schedule.id), ..RunFilter::default() })
            .await
            .expect("runs listed");
        runs.reverse(); // oldest first
        runs
    }

    /// Waits (real time, for the engine to act on the current virtual time) until the
    /// schedule's runs are in these states.
    async fn wait_states(&self, schedule: &Schedule, want: &[RunState]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.states(schedule).await;
            if got == want {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "runs are {got:?}, expected {want:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn states(&self, schedule: &Schedule) -> Vec<RunState> {
        self.runs(schedule).await.into_iter().map(|r| r.state).collect()
    }
}

trait NowTs {
    fn now_ts(&self) -> Timestamp;
}

impl NowTs for VirtualClock {
    fn now_ts(&self) -> Timestamp {
        schedulezero_engine::clock::Clock::now(self)
    }
}

async fn start_engine(
    path: &std::path::Path,
    clock: Arc<VirtualClock>,
    handlers: Vec<LocalHandler>,
) -> Engine {
    let store = SqliteStore::open_path(path).await.expect("store opens");
    let engine = Engine::start(Arc::new(store), clock, config()).await.expect("engine starts");
    for h in handlers {
        engine.add_local_handler(h).await.expect("handler registered");
    }
    engine
}

fn target(method: &str) -> Target {
    Target { handler_id: "local".into(), method: method.into(), params: json!({"k": 1}) }
}

/// A handler that counts calls and answers at once.
fn counting(counter: Arc<AtomicU32>) -> LocalHandler {
    LocalHandler::new("local").method("tick", move |_ctx, params| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(json!({"echo": params}))
        }
    })
}

/// A handler whose method `flaky` fails its first attempt and succeeds afterwards, counting calls.
fn flaky(counter: Arc<AtomicU32>) -> LocalHandler {
    LocalHandler::new("local").method("flaky", move |ctx, _| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt == 1 { Err("first attempt fails".to_string()) } else { Ok(json!("ok")) }
        }
    })
}

fn no_retry() -> Policies {
    Policies { retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }, ..Policies::default() }
}

#[tokio::test]
async fn interval_fires_at_creation_then_every_period_and_records_outcomes() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![counting(calls.clone())]).await;
    let s = h.add("every5", json!({"type": "interval", "seconds": 5}), "tick", Policies::default()).await;
    h.idle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "fires at once");
    h.advance(4.999).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "nothing before the period");
    h.advance(0.001).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    for _ in 0..3 {
        h.advance(5.0).await;
    }
    let runs = h.runs(&s).await;
    assert_eq!(runs.len(), 5);
    for (k, run) in runs.iter().enumerate() {
        assert_eq!(run.state, RunState::Succeeded);
        assert_eq!(run.attempt, 1);
        assert_eq!(run.scheduled_for, t(T0) + TimeDelta::seconds(5 * k as i64));
        assert_eq!(run.result, Some(json!({"echo": {"k": 1}})));
    }
}

#[tokio::test]
async fn failed_attempt_is_retried_after_backoff_and_history_shows_both() {
    let calls = Arc::new(AtomicU32::new(0));
    let handler = flaky(calls.clone());
    let h = Harness::start(vec![handler]).await;
    let s = h.add("flaky", json!({"type": "date", "run_date": T0}), "flaky", Policies::default()).await;
    h.idle().await;
    assert_eq!(h.states(&s).await, vec![RunState::Retrying]);
    h.advance(1.0).await; // default backoff: 1 s, shortened by up to 20% jitter
    let runs = h.runs(&s).await;
    assert_eq!(runs[0].state, RunState::Succeeded);
    assert_eq!(runs[0].attempt, 2);
    let attempts = h.engine.store().list_attempts(runs[0].id).await.expect("attempts");
    let outcomes: Vec<_> = attempts.iter().map(|a| (a.number, a.outcome)).collect();
    assert_eq!(outcomes, vec![(1, AttemptOutcome::Failed), (2, AttemptOutcome::Succeeded)]);
    assert_eq!(attempts[0].error.as_deref(), Some("first attempt fails"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let sched = h.engine.get_schedule(s.id).await.expect("get").expect("exists");
    assert_eq!(sched.state, ScheduleState::Finished, "a date schedule is done after it fires");
}

#[tokio::test]
async fn attempts_stop_at_max_attempts() {
    let handler =
        LocalHandler::new("local").method("broken", |_, _| async { Err::<Value, _>("always".to_string()) });
    let h = Harness::start(vec![handler]).await;
    let policies = Policies {
        retry: RetryPolicy { max_attempts: 3, jitter: 0.0, ..RetryPolicy::default() },
        ..Policies::default()
    };
    let s = h.add("broken", json!({"type": "date", "run_date": T0}), "broken", policies).await;
    h.idle().await;
    h.advance(1.0).await; // attempt 2
    h.advance(2.0).await; // attempt 3
    h.advance(60.0).await;
    let runs = h.runs(&s).await;
    assert_eq!(runs[0].state, RunState::Failed);
    assert_eq!(runs[0].attempt, 3);
    assert_eq!(runs[0].error.as_deref(), Some("always"));
}

#[tokio::test]
async fn a_call_past_its_timeout_is_timed_out_and_the_method_is_cancelled() {
    let cancelled = Arc::new(AtomicU32::new(0));
    let cc = cancelled.clone();
    let handler = LocalHandler::new("local").method("hang", move |ctx, _| {
        let cc = cc.clone();
        async move {
            ctx.cancelled.cancelled().await;
            cc.fetch_add(1, Ordering::SeqCst);
            Ok(json!(null))
        }
    });
    let h = Harness::start(vec![handler]).await;
    let policies = Policies { timeout: TimeDelta::seconds(30), ..no_retry() };
    let s = h.add("hang", json!({"type": "date", "run_date": T0}), "hang", policies).await;
    h.wait_states(&s, &[RunState::Running]).await;
    h.clock.advance(TimeDelta::seconds(29));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.states(&s).await, vec![RunState::Running], "still running before its timeout");
    h.advance(1.0).await;
    assert_eq!(h.states(&s).await, vec![RunState::TimedOut]);
    let runs = h.runs(&s).await;
    let attempts = h.engine.store().list_attempts(runs[0].id).await.expect("attempts");
    assert_eq!(attempts[0].outcome, AttemptOutcome::TimedOut);
    tokio::time::timeout(Duration::from_secs(5), async {
        while cancelled.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the method saw its cancellation");
}

#[tokio::test]
async fn downtime_is_caught_up_by_misfire_policy_after_restart() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut h = Harness::start(vec![counting(calls.clone())]).await;
    let coalesce =
        h.add("coalesce", json!({"type": "interval", "seconds": 10}), "tick", Policies::default()).await;
    let run_all = h
        .add(
            "run_all",
            json!({"type": "interval", "seconds": 10}),
            "tick",
            Policies { misfire: MisfirePolicy::RunAll { max: 3 }, ..Policies::default() },
        )
        .await;
    h.idle().await;
    h.engine.shutdown().await;
    // Down for 60 s: slots at +10 … +60 passed unclaimed.
    h.clock.advance(TimeDelta::seconds(65));
    h.restart(vec![counting(calls.clone())]).await;
    h.idle().await;
    use RunState::{Missed, Succeeded};
    assert_eq!(h.states(&coalesce).await, vec![Succeeded, Missed, Missed, Missed, Missed, Missed, Succeeded]);
    assert_eq!(
        h.states(&run_all).await,
        vec![Succeeded, Missed, Missed, Missed, Succeeded, Succeeded, Succeeded]
    );
    let next = h.engine.get_schedule(coalesce.id).await.expect("get").expect("exists").next_fire_at;
    assert_eq!(next, Some(t(T0) + TimeDelta::seconds(70)));
}

#[tokio::test]
async fn a_run_in_flight_at_a_crash_is_interrupted_then_retried_as_attempt_two() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let blocking = LocalHandler::new("local").method("work", move |_, _| {
        let r = r.clone();
        async move {
            r.notified().await;
            Ok(json!("first process"))
        }
    });
    let mut h = Harness::start(vec![blocking]).await;
    let s = h.add("work", json!({"type": "date", "run_date": T0}), "work", Policies::default()).await;
    h.wait_states(&s, &[RunState::Running]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let recorder = LocalHandler::new("local").method("work", move |ctx, _| {
        let seen = seen2.clone();
        async move {
            seen.lock().expect("lock").push(ctx.attempt);
            Ok(json!("second process"))
        }
    });
    h.restart(vec![recorder]).await; // the first engine never finishes its call
    h.advance(1.0).await;
    let runs = h.runs(&s).await;
    assert_eq!(runs[0].state, RunState::Succeeded);
    assert_eq!(runs[0].result, Some(json!("second process")));
    let attempts = h.engine.store().list_attempts(runs[0].id).await.expect("attempts");
    let outcomes: Vec<_> = attempts.iter().map(|a| (a.number, a.outcome)).collect();
    assert_eq!(outcomes, vec![(1, AttemptOutcome::Interrupted), (2, AttemptOutcome::Succeeded)]);
    assert_eq!(*seen.lock().expect("lock"), vec![2], "the retry says it is attempt 2");
    release.notify_waiters();
}

#[tokio::test]
async fn overlap_skip_and_queue_one_with_a_slow_handler() {
    // Permits, not notifications: a call that starts after a release still sees it.
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let slow = LocalHandler::new("local").capacity(10).method("slow", move |_, _| {
        let g = g.clone();
        async move {
            g.acquire().await.map(|p| p.forget()).map_err(|e| e.to_string())?;
            Ok(json!(null))
        }
    });
    let h = Harness::start(vec![slow]).await;
    let skip = h
        .add(
            "skip",
            json!({"type": "interval", "seconds": 1}),
            "slow",
            Policies { overlap: OverlapPolicy::Skip, ..no_retry() },
        )
        .await;
    let queue = h
        .add(
            "queue",
            json!({"type": "interval", "seconds": 1}),
            "slow",
            Policies { overlap: OverlapPolicy::QueueOne, ..no_retry() },
        )
        .await;
    use RunState::{Pending, Running, Skipped, Succeeded};
    h.wait_states(&skip, &[Running]).await;
    h.wait_states(&queue, &[Running]).await;
    h.clock.advance(TimeDelta::seconds(1));
    h.wait_states(&skip, &[Running, Skipped]).await;
    h.wait_states(&queue, &[Running, Pending]).await;
    for _ in 0..2 {
        h.clock.advance(TimeDelta::seconds(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.wait_states(&skip, &[Running, Skipped, Skipped, Skipped]).await;
    h.wait_states(&queue, &[Running, Pending, Skipped, Skipped]).await;
    gate.add_permits(2); // both first runs finish; the queued one starts
    h.wait_states(&queue, &[Succeeded, Running, Skipped, Skipped]).await;
    gate.add_permits(1);
    h.idle().await;
    assert_eq!(h.states(&queue).await[..2], [RunState::Succeeded, RunState::Succeeded]);
}

#[tokio::test]
async fn paused_schedule_does_not_fire_and_resumes_from_now() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![counting(calls.clone())]).await;
    let s = h.add("p", json!({"type": "interval", "seconds": 10}), "tick", Policies::default()).await;
    h.idle().await;
    h.engine.pause(s.id).await.expect("paused");
    h.advance(60.0).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let resumed = h.engine.resume(s.id).await.expect("resumed");
    assert_eq!(resumed.next_fire_at, Some(t(T0) + TimeDelta::seconds(60)));
    h.idle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(h.states(&s).await.len(), 2, "slots passed while paused are neither run nor recorded");
}

#[tokio::test]
async fn run_now_answers_with_the_reply_and_is_recorded() {
    let calls = Arc::new(AtomicU32::new(0));
    let failing =
        LocalHandler::new("other").method("fail", |_, _| async { Err::<Value, _>("nope".to_string()) });
    let h = Harness::start(vec![counting(calls.clone()), failing]).await;
    let report = h.engine.run_now(target("tick"), Duration::from_secs(5)).await.expect("ran");
    assert_eq!(report.outcome, AttemptOutcome::Succeeded);
    assert_eq!(report.result, Some(json!({"echo": {"k": 1}})));
    let failed = h
        .engine
        .run_now(
            Target { handler_id: "other".into(), method: "fail".into(), params: json!({}) },
            Duration::from_secs(5),
        )
        .await
        .expect("ran");
    assert_eq!(failed.outcome, AttemptOutcome::Failed);
    assert_eq!(failed.error.as_deref(), Some("nope"));
    let missing = h.engine.run_now(target("nosuch"), Duration::from_secs(5)).await;
    assert!(matches!(missing, Err(EngineError::NoInstance { .. })), "{missing:?}");
    h.idle().await;
    let run = h.engine.store().get_run(report.run_id).await.expect("get").expect("stored");
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.max_attempts, 1);
}

#[tokio::test]
async fn run_now_times_out_on_a_hung_handler() {
    let hang =
        LocalHandler::new("local").method("hang", |_, _| std::future::pending::<Result<Value, String>>());
    let h = Harness::start(vec![hang]).await;
    let engine = &h.engine;
    let call = engine.run_now(target("hang"), Duration::from_secs(30));
    let clock = h.clock.clone();
    let advance = async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.advance(TimeDelta::seconds(31));
    };
    let (result, ()) = tokio::join!(call, advance);
    match result {
        Err(EngineError::Timeout(_)) => {}
        Ok(report) => assert_eq!(report.outcome, AttemptOutcome::TimedOut),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn cancelling_a_running_run_stops_it_and_records_cancelled() {
    let hang = LocalHandler::new("local").method("hang", |ctx, _| async move {
        ctx.cancelled.cancelled().await;
        Ok(json!(null))
    });
    let h = Harness::start(vec![hang]).await;
    let s = h.add("c", json!({"type": "date", "run_date": T0}), "hang", Policies::default()).await;
    h.wait_states(&s, &[RunState::Running]).await;
    let run = h.runs(&s).await[0].clone();
    h.engine.cancel_run(run.id).await.expect("cancelled");
    h.idle().await;
    assert_eq!(h.states(&s).await, vec![RunState::Cancelled], "cancelled runs are not retried");
}

#[tokio::test]
async fn schedules_added_while_the_loop_sleeps_fire_on_time_before_or_after_its_planned_wake_up() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![counting(calls.clone())]).await;
    // The loop sleeps toward this one's first fire, 4 s ahead.
    let planned = json!({"type": "interval", "seconds": 60, "start_time": "2026-06-01T12:00:04Z"});
    let planned = h.add("planned", planned, "tick", no_retry()).await;
    h.idle().await;
    // Due before that wake-up: the loop must be woken for it. Due after: the loop finds it when
    // it wakes as planned (it is not woken for it, which saves a claim per far-off schedule).
    let sooner = h
        .add("sooner", json!({"type": "date", "run_date": "2026-06-01T12:00:01Z"}), "tick", no_retry())
        .await;
    let later =
        h.add("later", json!({"type": "date", "run_date": "2026-06-01T12:00:06Z"}), "tick", no_retry()).await;
    h.idle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    h.advance(1.0).await;
    assert_eq!(h.states(&sooner).await, [RunState::Succeeded], "fired at 12:00:01");
    h.advance(3.0).await;
    assert_eq!(h.states(&planned).await, [RunState::Succeeded], "fired at 12:00:04");
    h.advance(1.999).await;
    // Within `claim_ahead` of its slot the run may be claimed already, but it is not sent, and
    // its attempt counts from the slot.
    assert_eq!(calls.load(Ordering::SeqCst), 2, "not called before 12:00:06");
    for run in h.runs(&later).await {
        assert_eq!(run.started_at, Some(t("2026-06-01T12:00:06Z")), "claimed ahead, started at its slot");
    }
    h.advance(0.001).await;
    assert_eq!(h.states(&later).await, [RunState::Succeeded], "fired at 12:00:06");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn fires_are_claimed_ahead_of_their_slot_and_sent_at_it_never_before() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![counting(calls.clone())]).await;
    let ahead = h.engine.config().claim_ahead;
    assert!(ahead > Duration::ZERO, "the default claims ahead");
    let slot = t(T0) + TimeDelta::seconds(10);
    let mut burst = Vec::new();
    for k in 0..20 {
        let date = json!({"type": "date", "run_date": "2026-06-01T12:00:10Z"});
        burst.push(h.add(&format!("burst{k}"), date, "tick", no_retry()).await);
    }
    h.idle().await;
    // Just inside the window: every slot is claimed, started at the slot, and nothing is sent.
    h.advance(10.0 - ahead.as_secs_f64() / 2.0).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing is sent before its slot");
    for s in &burst {
        let runs = h.runs(s).await;
        assert_eq!(runs.len(), 1, "claimed ahead");
        assert_eq!((runs[0].state, runs[0].started_at), (RunState::Running, Some(slot)));
    }
    // Cancelling a held run ends it without a call.
    assert_eq!(h.engine.cancel_run(h.runs(&burst[0]).await[0].id).await.expect("cancel"), RunState::Running);
    h.clock.set(slot);
    h.idle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 19, "the rest are sent at the slot");
    assert_eq!(h.states(&burst[0]).await, [RunState::Cancelled]);
    for s in &burst[1..] {
        assert_eq!(h.states(s).await, [RunState::Succeeded]);
    }
}

#[tokio::test]
async fn a_fired_date_schedule_frees_its_name() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![counting(calls.clone())]).await;
    h.add("once", json!({"type": "date", "run_date": T0}), "tick", Policies::default()).await;
    let dup = h
        .engine
        .add_schedule(
            ScheduleSpec::new(h.trigger(json!({"type": "interval", "seconds": 1})), target("tick"))
                .name("once"),
        )
        .await;
    assert!(dup.is_err(), "a live name is unique");
    h.idle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    h.add("once", json!({"type": "interval", "seconds": 1}), "tick", Policies::default()).await;
}

#[tokio::test]
async fn jitter_delays_dispatch_within_its_maximum() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![counting(calls.clone())]).await;
    let s =
        h.add("j", json!({"type": "date", "run_date": T0, "jitter": 10}), "tick", Policies::default()).await;
    h.idle().await;
    let run = h.runs(&s).await[0].clone();
    let delay = run.dispatch_at.expect("dispatch time") - run.scheduled_for;
    assert!(delay >= TimeDelta::zero() && delay <= TimeDelta::seconds(10));
    if delay > TimeDelta::zero() {
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not before its jittered time");
    }
    h.advance(10.0).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(h.states(&s).await, vec![RunState::Succeeded]);
}

/// A link that records which instance served each call.
struct Tagged {
    name: &'static str,
    log: Arc<Mutex<Vec<&'static str>>>,
}

#[async_trait::async_trait]
impl Link for Tagged {
    async fn call(&self, _call: Call) -> Result<Reply, LinkError> {
        self.log.lock().expect("lock").push(self.name);
        Ok(Reply::Success(json!(self.name)))
    }

    async fn cancel(&self, _run: uuid::Uuid, _attempt: u32) {}
}

#[tokio::test]
async fn calls_go_round_robin_across_a_pool_and_skip_disconnected_instances() {
    let h = Harness::start(vec![]).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    for name in ["a", "b"] {
        h.engine
            .register_instance(InstanceSpec {
                handler_id: "local".into(),
                instance_id: name.into(),
                protocol: "test".into(),
                address: name.into(),
                methods: vec!["tick".into()],
                capacity: 1,
                link: Arc::new(Tagged { name, log: log.clone() }),
            })
            .await
            .expect("registered");
    }
    for _ in 0..4 {
        h.engine.run_now(target("tick"), Duration::from_secs(5)).await.expect("ran");
    }
    assert_eq!(*log.lock().expect("lock"), vec!["a", "b", "a", "b"]);
    h.engine.instance_disconnected("local", "a").await.expect("disconnected");
    log.lock().expect("lock").clear();
    for _ in 0..2 {
        h.engine.run_now(target("tick"), Duration::from_secs(5)).await.expect("ran");
    }
    assert_eq!(*log.lock().expect("lock"), vec!["b", "b"]);
    let stored = h.engine.store().list_handler_instances().await.expect("listed");
    let a = stored.iter().find(|i| i.instance_id == "a").expect("a persisted");
    assert!(!a.connected);
}

#[tokio::test]
async fn runs_wait_for_their_handler_and_start_when_it_registers() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![]).await;
    let s = h.add("later", json!({"type": "date", "run_date": T0}), "tick", Policies::default()).await;
    // Claimed and started (attempt 1), held by the dispatcher until an instance can take it.
    h.wait_states(&s, &[RunState::Running]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.states(&s).await, vec![RunState::Running], "it waits, it does not fail");
    h.engine.add_local_handler(counting(calls.clone())).await.expect("registered");
    h.idle().await;
    assert_eq!(h.states(&s).await, vec![RunState::Succeeded]);
}

#[tokio::test]
async fn runs_past_the_waiting_cap_end_lost_and_are_retried_later() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(VirtualClock::new(t(T0)));
    let store = SqliteStore::open_path(dir.path().join("engine.db")).await.expect("store opens");
    let engine = Engine::start(Arc::new(store), clock.clone(), EngineConfig { max_waiting: 3, ..config() })
        .await
        .expect("engine starts");
    let ctx = ParseContext { now: clock.now_ts(), local_zone: chrono_tz::UTC };
    let mut ids = Vec::new();
    for k in 0..5 {
        let trigger = Trigger::parse(&json!({"type": "date", "run_date": T0}), &ctx).expect("trigger");
        let s = engine.add_schedule(ScheduleSpec::new(trigger, target("tick")).name(format!("s{k}"))).await;
        ids.push(s.expect("added").id);
    }
    // Not idle: runs wait for a handler. Poll until the claim and the cap have done their work.
    let mut runs = Vec::new();
    for _ in 0..1000 {
        runs = engine.store().list_runs(&RunFilter::default()).await.expect("runs");
        if runs.iter().filter(|r| r.state == RunState::Retrying).count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = runs.iter().filter(|r| r.state == RunState::Running).count();
    let retrying = runs.iter().filter(|r| r.state == RunState::Retrying).count();
    assert_eq!((waiting, retrying), (3, 2), "3 wait in memory, 2 end lost and retry later: {runs:?}");
    let lost = runs.iter().find(|r| r.state == RunState::Retrying).expect("a retrying run");
    let attempts = engine.store().list_attempts(lost.id).await.expect("attempts");
    assert_eq!(attempts[0].outcome, AttemptOutcome::Lost);
    assert!(attempts[0].error.as_deref().unwrap_or("").contains("3 runs already wait"), "{attempts:?}");

    // The handler comes: the waiting runs go at once, the others at their retry time.
    let calls = Arc::new(AtomicU32::new(0));
    engine.add_local_handler(counting(calls.clone())).await.expect("registered");
    tokio::time::timeout(Duration::from_secs(20), engine.idle()).await.expect("idle");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    clock.advance(TimeDelta::seconds(120));
    tokio::time::timeout(Duration::from_secs(20), engine.idle()).await.expect("idle");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let runs = engine.store().list_runs(&RunFilter::default()).await.expect("runs");
    assert!(runs.iter().all(|r| r.state == RunState::Succeeded), "{runs:?}");
}

#[tokio::test]
async fn finished_runs_are_purged_after_the_retention_period() {
    let calls = Arc::new(AtomicU32::new(0));
    let h = Harness::start(vec![counting(calls.clone())]).await;
    let s = h.add("old", json!({"type": "date", "run_date": T0}), "tick", Policies::default()).await;
    h.idle().await;
    assert_eq!(h.states(&s).await, vec![RunState::Succeeded]);
    // The default retention is 30 days, purged hourly.
    h.advance(29.0 * 86_400.0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.states(&s).await.len(), 1, "kept within the retention");
    h.clock.advance(TimeDelta::days(1) + TimeDelta::hours(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !h.states(&s).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the run was not purged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn run_schedule_now_runs_the_target_with_the_schedules_retries_outside_the_trigger() {
    let calls = Arc::new(AtomicU32::new(0));
    let handler = flaky(calls.clone());
    let h = Harness::start(vec![handler]).await;
    // Paused, and its trigger a day away: only the manual runs fire.
    let spec = ScheduleSpec::new(h.trigger(json!({"type": "cron", "hour": "3"})), target("flaky"));
    let s = h.engine.add_schedule(ScheduleSpec { paused: true, ..spec.name("manual") }).await.expect("added");
    let first = h.engine.run_schedule_now(s.id).await.expect("run requested");
    let second = h.engine.run_schedule_now(s.id).await.expect("a second one in the same instant");
    assert_eq!(first.schedule_id, Some(s.id));
    assert_eq!(first.state, RunState::Pending);
    assert_eq!(first.max_attempts, 3, "the schedule's retry policy");
    assert_eq!(second.scheduled_for, first.scheduled_for + TimeDelta::milliseconds(1), "the next free slot");
    h.idle().await;
    h.advance(1.0).await;
    let runs = h.runs(&s).await;
    let got: Vec<_> = runs.iter().map(|r| (r.state, r.attempt)).collect();
    assert_eq!(got, vec![(RunState::Succeeded, 2), (RunState::Succeeded, 2)], "retried per the policy");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(h.engine.get_schedule(s.id).await.expect("get").map(|s| s.state), Some(ScheduleState::Paused));

    let gone = uuid::Uuid::now_v7();
    assert!(matches!(h.engine.run_schedule_now(gone).await, Err(EngineError::NoSuchSchedule(_))));
}

#[tokio::test]
async fn a_trigger_that_never_fires_again_and_a_bad_name_are_refused_naming_the_field() {
    let h = Harness::start(vec![]).await;
    let past = ScheduleSpec::new(
        h.trigger(json!({"type": "interval", "hours": 1, "start_time": "2020-01-01T00:00:00Z", "end_time": "2020-01-02T00:00:00Z"})),
        target("tick"),
    );
    match h.engine.add_schedule(past).await {
        Err(EngineError::Invalid { field, message }) => {
            assert_eq!(field, "trigger");
            assert!(message.contains("no fire time"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let every_minute =
        || ScheduleSpec::new(h.trigger(json!({"type": "cron", "second": "0"})), target("tick"));
    for bad in ["x".repeat(201), "tab\there".to_string(), "  ".to_string()] {
        match h.engine.add_schedule(every_minute().name(bad.clone())).await {
            Err(EngineError::Invalid { field, .. }) => assert_eq!(field, "name", "{bad:?}"),
            other => panic!("{bad:?}: expected a refusal, got {other:?}"),
        }
    }
    let ok = h.engine.add_schedule(every_minute().name("x".repeat(200))).await.expect("200 characters");
    assert!(h.engine.list_schedules(&Default::default()).await.expect("list").iter().any(|s| s.id == ok.id));
}

#[tokio::test]
async fn run_now_waits_for_the_store_past_its_backlog_and_every_call_completes() {
    let calls = Arc::new(AtomicU32::new(0));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_path(&dir.path().join("e.db")).await.expect("store opens");
    let clock = Arc::new(VirtualClock::new(t(T0)));
    // Two outcomes may wait for their commit: the 48 other callers wait their turn.
    let engine = Engine::start(Arc::new(store), clock, EngineConfig { run_now_backlog: 2, ..config() })
        .await
        .expect("engine starts");
    engine.add_local_handler(counting(calls.clone())).await.expect("handler");
    let all =
        futures::future::join_all((0..50).map(|_| engine.run_now(target("tick"), Duration::from_secs(30))));
    // A permit never given back would leave callers waiting on a clock that does not move.
    let results =
        tokio::time::timeout(Duration::from_secs(20), all).await.expect("every caller gets through");
    for r in &results {
        assert_eq!(
            r.as_ref().map(|r| r.outcome).ok(),
            Some(AttemptOutcome::Succeeded),
            "{:?}",
            r.as_ref().err()
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    tokio::time::timeout(Duration::from_secs(20), engine.idle()).await.expect("idle");
    let runs = engine.store().list_runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(runs.len(), 50, "every call recorded");
}
