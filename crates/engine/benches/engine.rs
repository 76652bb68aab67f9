//! Engine benchmarks: figures printed, not asserted (these machines are shared and noisy).
//!
//! ```sh
//! # Throughput: N interval schedules every P seconds for D seconds, no-op local handler, every
//! # fire and outcome committed. Offered rate = N / P fires per second.
//! cargo bench -p schedulezero-engine --bench engine -- throughput --schedules 100000 --period 5 --seconds 60
//! # Start-up with a million schedules in the store: time to first fire and resident memory.
//! cargo bench -p schedulezero-engine --bench engine -- startup --schedules 1000000
//! ```
//! Results and how they were obtained: BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod timed;
use std::time::{Duration, Instant};
use timed::Timed;

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::clock::{Clock as _, SystemClock};
use schedulezero_core::policy::Policies;
use schedulezero_core::schedule::{Schedule, Target};
use schedulezero_core::trigger::{ParseContext, Trigger};
use schedulezero_engine::clock::SystemClock as EngineClock;
use schedulezero_engine::config::EngineConfig;
use schedulezero_engine::events::Event;
use schedulezero_engine::{Engine, LocalHandler, embedded};
use schedulezero_store::SqliteStore;
use serde_json::json;
use sqlx::Row;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    mode: String,
    schedules: usize,
    period: u64,
    seconds: u64,
    db: Option<PathBuf>,
}

fn args() -> Res<Args> {
    let mut a = Args { mode: String::new(), schedules: 0, period: 5, seconds: 60, db: None };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--schedules" => a.schedules = value()?.parse()?,
            "--period" => a.period = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--db" => a.db = Some(value()?.into()),
            m if a.mode.is_empty() && !m.starts_with('-') => a.mode = m.to_string(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn main() -> Res<()> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match a.mode.as_str() {
        "throughput" => {
            rt.block_on(throughput(a.schedules.clamp(1, 10_000_000), a.period.max(1), a.seconds, a.db))
        }
        "startup" => rt.block_on(startup(a.schedules.max(1), a.db)),
        "startup-child" => rt.block_on(startup_child(a.db.ok_or("--db")?)),
        "" => {
            println!(
                "usage: engine (throughput --schedules N --period S --seconds D | startup --schedules N)"
            );
            Ok(())
        }
        other => Err(format!("unknown mode {other}").into()),
    }
}

fn noop_handler() -> LocalHandler {
    LocalHandler::new("bench").capacity(1_000_000).method("noop", |_, _| async { Ok(json!(null)) })
}

/// `n` interval schedules of `period`, whose first fires are spread evenly over one period from
/// `first`.
fn make_schedules(n: usize, period: Duration, first: Timestamp, now: Timestamp) -> Vec<Schedule> {
    let ctx = ParseContext { now, local_zone: chrono_tz::UTC };
    let period_ms = period.as_millis() as i64;
    (0..n)
        .map(|k| {
            let start = first + TimeDelta::milliseconds(period_ms * k as i64 / n as i64);
            let trigger = Trigger::parse(
                &json!({"type": "interval", "seconds": period.as_secs_f64(), "start_time": start.to_rfc3339()}),
                &ctx,
            )
            .expect("valid trigger");
            let target = Target { handler_id: "bench".into(), method: "noop".into(), params: json!({}) };
            Schedule::new(format!("bench-{k}"), trigger, target, Policies::default(), now)
        })
        .collect()
}

async fn bulk_insert(path: &Path, schedules: &[Schedule]) -> Res<()> {
    let store = SqliteStore::open_path(path).await?;
    for chunk in schedules.chunks(50_000) {
        store.insert_schedules_bulk(chunk).await?;
    }
    store.close().await;
    Ok(())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn throughput(n: usize, period_s: u64, seconds: u64, db: Option<PathBuf>) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let path = db.unwrap_or_else(|| dir.path().join("bench.db"));
    if path.exists() {
        return Err(format!("{} exists: the throughput bench needs a new file", path.display()).into());
    }
    let period = Duration::from_secs(period_s);
    let now = SystemClock.now();
    let first = now + TimeDelta::seconds(10);
    let t = Instant::now();
    bulk_insert(&path, &make_schedules(n, period, first, now)).await?;
    println!("created {n} interval schedules (every {period_s} s) in {:.1} s", t.elapsed().as_secs_f64());

    let config = EngineConfig { history_retention: None, ..EngineConfig::default() };
    let timed =
        Arc::new(Timed { inner: Arc::new(SqliteStore::open_path(&path).await?), stats: Default::default() });
    let engine = Engine::start(timed.clone(), Arc::new(EngineClock), config).await?;
    engine.add_local_handler(noop_handler()).await?;
    let wait = (first - SystemClock.now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let end = first + TimeDelta::seconds(seconds as i64);
    println!("firing for {seconds} s: offered {:.0} fires/s", n as f64 / period_s as f64);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    // Let the last slots of the window finish, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    engine.shutdown().await;
    let (rss, hwm) = memory();
    drop(engine);
    timed.report(seconds + 2);

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
    let end_ms = end.timestamp_millis();
    let first_ms = first.timestamp_millis();
    let period_ms = period.as_millis() as i64;
    let offered: i64 = (0..n as i64)
        .map(|k| {
            let start = first_ms + period_ms * k / n as i64;
            if start > end_ms { 0 } else { (end_ms - start) / period_ms + 1 }
        })
        .sum();
    let rows = sqlx::query(
        "SELECT state, count(*) AS n, sum(slot_count) AS slots FROM runs WHERE scheduled_for <= ? GROUP BY state",
    )
    .bind(end_ms)
    .fetch_all(&pool)
    .await?;
    let mut by_state = Vec::new();
    let mut claimed = 0i64;
    let mut succeeded = 0i64;
    for r in rows {
        let state: String = r.try_get("state")?;
        let slots: i64 = r.try_get("slots")?;
        claimed += slots;
        if state == "succeeded" {
            succeeded = slots;
        }
        by_state.push(format!("{state}={slots}"));
    }
    let mut lateness: Vec<i64> = sqlx::query_scalar(
        "SELECT started_at - scheduled_for FROM runs WHERE started_at IS NOT NULL AND scheduled_for <= ?",
    )
    .bind(end_ms)
    .fetch_all(&pool)
    .await?;
    lateness.sort_unstable();
    let mut done: Vec<i64> = sqlx::query_scalar(
        "SELECT finished_at - scheduled_for FROM runs WHERE finished_at IS NOT NULL AND state = 'succeeded' AND scheduled_for <= ?",
    )
    .bind(end_ms)
    .fetch_all(&pool)
    .await?;
    done.sort_unstable();
    println!("offered slots in window   {offered}");
    println!("claimed slots             {claimed}  ({})", by_state.join(", "));
    println!(
        "delivered and committed   {succeeded}  ({:.2}% of offered)",
        100.0 * succeeded as f64 / offered.max(1) as f64
    );
    println!("sustained                 {:.0} fires/s", succeeded as f64 / seconds.max(1) as f64);
    println!(
        "fire lateness (dispatch)  p50 {} ms   p99 {} ms   max {} ms",
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or(0)
    );
    println!(
        "outcome committed after   p50 {} ms   p99 {} ms   max {} ms",
        percentile(&done, 0.5),
        percentile(&done, 0.99),
        done.last().copied().unwrap_or(0)
    );
    println!("engine process memory     rss {rss} MB   peak {hwm} MB");
    Ok(())
}

async fn startup(n: usize, db: Option<PathBuf>) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let path = db.unwrap_or_else(|| dir.path().join("startup.db"));
    if !path.exists() {
        let now = SystemClock.now();
        let t = Instant::now();
        // Hourly schedules whose next fires are spread over the coming hour, the first due now.
        bulk_insert(&path, &make_schedules(n, Duration::from_secs(3600), now, now)).await?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) / (1024 * 1024);
        println!("created {n} schedules in {:.1} s ({size} MB file)", t.elapsed().as_secs_f64());
    }
    // A fresh process, so start-up time and memory are the engine's alone.
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["startup-child", "--db"])
        .arg(&path)
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err("the start-up child failed".into());
    }
    Ok(())
}

async fn startup_child(path: PathBuf) -> Res<()> {
    let t0 = Instant::now();
    let engine = embedded::open(&path).handler(noop_handler()).start().await?;
    let mut events = engine.subscribe();
    let started = t0.elapsed();
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(Event::RunStarted { .. }) => return Ok(t0.elapsed()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await??;
    println!("engine started (store opened, recovery done) in {} ms", started.as_millis());
    println!("first fire dispatched {} ms after process start", first.as_millis());
    // Keep firing a while (about 280 fires/s) and report the memory it settles at.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss, hwm) = memory();
    println!("resident memory after 10 s of firing: {rss} MB (peak {hwm} MB)");
    engine.shutdown().await;
    Ok(())
}
