//! Crash durability, for real: a child process runs the embedded engine on a SQLite file with
//! hundreds of schedules firing every second, its handler appending every call it receives to a
//! log; the test SIGKILLs it mid-stream, restarts it, stops it, and checks the whole window:
//! every slot claimed exactly once; every slot executed at least once or recorded `missed`; a
//! slot executed twice only if it was in flight at the kill, its second attempt saying so.
//!
//! The child is this same test binary, re-run with `SZ_CRASH_CHILD` set (see `child_process`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::run::{AttemptOutcome, RunState};
use schedulezero_core::schedule::Target;
use schedulezero_core::trigger::Trigger;
use schedulezero_engine::{LocalHandler, ScheduleSpec, embedded};
use schedulezero_store::{RunFilter, ScheduleFilter, SqliteStore, Store};
use serde_json::json;

const SCHEDULES: usize = 300;

/// The child: runs the engine until SIGTERM (graceful) or SIGKILL.
#[test]
fn child_process() {
    let Ok(dir) = std::env::var("SZ_CRASH_CHILD") else { return };
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let log = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("calls.log"))
                .expect("log opens"),
        );
        let handler = LocalHandler::new("recorder").capacity(1000).method("tick", move |ctx, _| {
            let log = log.clone();
            async move {
                // One write per call: O_APPEND keeps lines whole, and a write survives SIGKILL.
                let line =
                    format!("{} {} {}\n", ctx.run_id, ctx.attempt, ctx.scheduled_for.timestamp_millis());
                (&*log).write_all(line.as_bytes()).map_err(|e| e.to_string())?;
                // Work takes a while, so the kill catches calls in flight.
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(json!(null))
            }
        });
        let engine =
            embedded::open(dir.join("store.db")).handler(handler).start().await.expect("engine starts");
        if std::env::var("SZ_CREATE").is_ok() {
            for k in 0..SCHEDULES {
                let trigger =
                    Trigger::parse(&json!({"type": "interval", "seconds": 1}), &engine.parse_context())
                        .expect("trigger");
                let target =
                    Target { handler_id: "recorder".into(), method: "tick".into(), params: json!({}) };
                engine
                    .add_schedule(ScheduleSpec::new(trigger, target).name(format!("s{k}")))
                    .await
                    .expect("added");
            }
        }
        std::fs::write(dir.join("ready"), b"").expect("ready marker");
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        term.recv().await;
        engine.shutdown().await;
    });
    std::process::exit(0);
}

/// Kills the child, by PID, however the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path, create: bool) -> ChildGuard {
    let _ = std::fs::remove_file(dir.join("ready"));
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", "child_process", "--nocapture", "--test-threads=1"]).env("SZ_CRASH_CHILD", dir);
    if create {
        cmd.env("SZ_CREATE", "1");
    }
    ChildGuard(cmd.spawn().expect("child starts"))
}

fn log_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("calls.log")).map(|s| s.lines().count()).unwrap_or(0)
}

/// Polls (real time, generous slack) until the log has grown by `more` lines.
fn wait_for_calls(dir: &Path, child: &mut ChildGuard, more: usize) {
    let target = log_lines(dir) + more;
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_lines(dir) < target {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("child exited early: {status}");
        }
        assert!(Instant::now() < deadline, "child made too few calls: {} of {target}", log_lines(dir));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &ChildGuard, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.0.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn sigkill_mid_stream_loses_no_slot_and_duplicates_only_interrupted_calls() {
    if std::env::var("SZ_CRASH_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = spawn_child(dir.path(), true);
    wait_for_calls(dir.path(), &mut child, SCHEDULES * 3);
    signal(&child, 9);
    let _ = child.0.wait();
    // Stay down long enough for slots to pass unclaimed: at least two of every schedule, so
    // coalescing records some as missed (the next slot may have been claimed ahead of the kill).
    std::thread::sleep(Duration::from_millis(3500));
    let mut child = spawn_child(dir.path(), false);
    wait_for_calls(dir.path(), &mut child, SCHEDULES * 3);
    let stopped_at: Timestamp = chrono::Utc::now();
    signal(&child, 15);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "child did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }

    // What the handler saw: (run id, attempt) → count, and run id → attempts.
    let log = std::fs::read_to_string(dir.path().join("calls.log")).expect("log");
    let mut calls: HashMap<(String, u32), u32> = HashMap::new();
    let mut by_run: HashMap<String, Vec<u32>> = HashMap::new();
    for line in log.lines() {
        let mut parts = line.split(' ');
        let (Some(run), Some(attempt)) = (parts.next(), parts.next()) else { panic!("torn line {line:?}") };
        let attempt: u32 = attempt.parse().expect("attempt");
        *calls.entry((run.to_string(), attempt)).or_default() += 1;
        by_run.entry(run.to_string()).or_default().push(attempt);
    }
    let dup: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "an attempt was delivered twice: {dup:?}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open_path(dir.path().join("store.db")).await.expect("store");
        let schedules = store
            .list_schedules(&ScheduleFilter { include_finished: true, ..ScheduleFilter::default() })
            .await
            .expect("schedules");
        assert_eq!(schedules.len(), SCHEDULES);
        let window_end = stopped_at - TimeDelta::seconds(3);
        let mut missed = 0u64;
        let mut executed_twice = 0;
        for s in &schedules {
            let runs = store
                .list_runs(&RunFilter { schedule_id: Some(s.id), ..RunFilter::default() })
                .await
                .expect("runs");
            // Claimed exactly once: consecutive one-second slots, each in exactly one row.
            let mut slots: BTreeMap<Timestamp, u32> = BTreeMap::new();
            for r in &runs {
                assert!(slots.insert(r.scheduled_for, r.slot_count).is_none(), "slot claimed twice");
            }
            let first = *slots.keys().next().expect("runs exist");
            let mut expect = first;
            for (slot, count) in &slots {
                assert_eq!(*slot, expect, "schedule {}: a slot is missing before {slot}", s.name);
                expect = *slot + TimeDelta::seconds(i64::from(*count));
            }
            for r in &runs {
                let executed = by_run.get(&r.id.to_string());
                if r.scheduled_for > window_end {
                    continue;
                }
                match r.state {
                    RunState::Missed => {
                        assert!(executed.is_none(), "a missed slot must not run");
                        missed += u64::from(r.slot_count);
                    }
                    RunState::Succeeded => {
                        let attempts =
                            executed.unwrap_or_else(|| panic!("run {} succeeded but never ran", r.id));
                        assert!(attempts.contains(&r.attempt), "the recorded attempt ran");
                        if attempts.len() > 1 {
                            executed_twice += 1;
                            let history = store.list_attempts(r.id).await.expect("attempts");
                            assert!(
                                history.iter().any(|a| a.outcome == AttemptOutcome::Interrupted),
                                "run {} ran twice without an interrupted attempt: {history:?}",
                                r.id
                            );
                            assert!(
                                attempts.iter().skip(1).all(|a| *a >= 2),
                                "later deliveries say they are retries"
                            );
                        }
                    }
                    other => panic!("run {} in the window ended {other:?}", r.id),
                }
            }
        }
        assert!(missed > 0, "the downtime should have produced missed slots");
        assert!(executed_twice > 0, "the kill should have caught calls in flight");
        eprintln!(
            "checked {SCHEDULES} schedules: {missed} missed slots, {executed_twice} runs executed twice"
        );
    });
}
