//! How many fires per second the SQLite store sustains: each fire is claimed (run insert +
//! schedule update), started (`start_attempts`) and finished (`record_attempts`: attempt insert +
//! run update), in batches as the engine does.
//!
//! ```text
//! cargo run --release -p schedulezero-store --example store_throughput -- [SCHEDULES] [VIRTUAL_SECONDS] [BATCH]
//! cargo run --release -p schedulezero-store --example store_throughput -- --bulk 1000000
//! ```
//!
//! Defaults: 100,000 interval schedules every 10 s, their slots spread evenly, driven through
//! 30 s of virtual time in steps of 100 ms (10,000 fires per virtual second; 300,000 fires),
//! batches of up to 1,000. Time is virtual, so the numbers are the store's alone.

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::chrono_tz;
use schedulezero_core::policy::Policies;
use schedulezero_core::run::{Attempt, AttemptOutcome, NextStep, RunState};
use schedulezero_core::schedule::{Schedule, Target};
use schedulezero_core::trigger::{ParseContext, Trigger};
use schedulezero_store::{AttemptEnd, AttemptStart, SqliteStore, Store};
use serde_json::json;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap_or_default()
}

fn schedules(n: usize, period_s: i64) -> Vec<Schedule> {
    let ctx = ParseContext { now: t0(), local_zone: chrono_tz::UTC };
    let spread_ms = period_s * 1000;
    (0..n)
        .map(|i| {
            let start = t0() + TimeDelta::milliseconds(i as i64 * spread_ms / n as i64);
            let trigger = Trigger::parse(
                &json!({"type": "interval", "seconds": period_s, "start_time": start.to_rfc3339()}),
                &ctx,
            )
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("trigger: {e}"));
            Schedule::new(
                format!("job-{i}"),
                trigger,
                Target { handler_id: "bench".into(), method: "work".into(), params: json!({"i": i}) },
                Policies::default(),
                t0(),
            )
        })
        .collect()
}

/// CPU time (user + system) this process has used so far, from /proc (Linux only).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resident memory of this process, from /proc (Linux only).
fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>9.0}/s", n as f64 / d.as_secs_f64().max(1e-9))
}

async fn bulk(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bulk.db");
    let store = SqliteStore::open_path(&path).await?;
    let t = Instant::now();
    let all = schedules(n, 60);
    let built = t.elapsed();
    let t = Instant::now();
    store.insert_schedules_bulk(&all).await?;
    let inserted = t.elapsed();
    println!(
        "bulk insert of {n} schedules: built in {built:.2?}, inserted in {inserted:.2?} ({})",
        rate(n, inserted)
    );
    store.close().await;
    drop(store);
    let t = Instant::now();
    let store = SqliteStore::open_path(&path).await?;
    let opened = t.elapsed();
    let t = Instant::now();
    let wake = store.next_wake().await?;
    println!("reopen: {opened:.2?}; next_wake {wake:?} in {:.2?}", t.elapsed());
    println!("file size: {} MiB", std::fs::metadata(&path)?.len() / (1 << 20));
    if let Some(rss) = rss_mib() {
        println!("resident memory: {rss} MiB");
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bulk") {
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
        return bulk(n).await;
    }
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seconds: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let period_s = 10;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("throughput.db");
    let store = SqliteStore::open_path(&path).await?;
    let t = Instant::now();
    store.insert_schedules_bulk(&schedules(n, period_s)).await?;
    println!("{n} schedules inserted in {:.2?}", t.elapsed());

    let (mut claim_t, mut start_t, mut record_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut fires = 0usize;
    let step = TimeDelta::milliseconds(100);
    let mut now = t0();
    let end = t0() + TimeDelta::seconds(seconds);
    let wall = Instant::now();
    let cpu_start = cpu_time();
    while now < end {
        loop {
            let t = Instant::now();
            let claimed = store.claim_due("bench", now, batch, true).await?;
            claim_t += t.elapsed();
            let ready = claimed.ready;
            if !ready.is_empty() {
                let starts: Vec<AttemptStart> = ready
                    .iter()
                    .map(|d| AttemptStart { run_id: d.run.id, attempt: 1, started_at: now })
                    .collect();
                let t = Instant::now();
                store.start_attempts(&starts).await?;
                start_t += t.elapsed();
                let done = now + TimeDelta::milliseconds(3);
                let ends: Vec<AttemptEnd> = ready
                    .iter()
                    .map(|d| AttemptEnd {
                        attempt: Attempt {
                            run_id: d.run.id,
                            number: 1,
                            instance: Some("bench-1".into()),
                            started_at: now,
                            finished_at: done,
                            outcome: AttemptOutcome::Succeeded,
                            result: Some(json!({"ok": true})),
                            error: None,
                        },
                        next: NextStep::Finish(RunState::Succeeded),
                    })
                    .collect();
                let t = Instant::now();
                store.record_attempts(&ends, done).await?;
                record_t += t.elapsed();
                fires += ready.len();
            }
            if claimed.schedules < batch {
                break;
            }
        }
        now += step;
    }
    let wall = wall.elapsed();
    let cpu = cpu_time().zip(cpu_start).map(|(b, a)| b.saturating_sub(a));
    println!("{fires} fires in batches of up to {batch} over {seconds} virtual seconds:");
    println!("  claim   {claim_t:>10.2?}  {}", rate(fires, claim_t));
    println!("  start   {start_t:>10.2?}  {}", rate(fires, start_t));
    println!("  record  {record_t:>10.2?}  {}", rate(fires, record_t));
    println!("  overall {wall:>10.2?}  {}  (claim + start + record per fire)", rate(fires, wall));
    if let Some(cpu) = cpu {
        println!(
            "  cpu     {cpu:>10.2?}  {}  (process CPU time, all threads; the machine may be shared)",
            rate(fires, cpu)
        );
    }
    println!("file size: {} MiB", std::fs::metadata(&path)?.len() / (1 << 20));
    if let Some(rss) = rss_mib() {
        println!("resident memory: {rss} MiB");
    }
    Ok(())
}
