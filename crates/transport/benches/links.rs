//! Handler-link benchmarks: figures printed, not asserted (these machines are shared and noisy).
//!
//! ```sh
//! # Round trip of one call to a native handler process: first over a bare ROUTER socket speaking
//! # the protocol by hand (the raw socket round trip), then through engine, dispatcher, store and
//! # transport (`Engine::run_now`), sequentially, in the same run. Prints both and the difference.
//! cargo bench -p schedulezero-transport --bench links -- roundtrip --calls 20000
//! # Calls per second to a pool of native handler processes: M concurrent callers of
//! # `Engine::run_now` for D seconds; each run and its outcome committed in the recorder's batches.
//! cargo bench -p schedulezero-transport --bench links -- calls --handlers 2 --concurrency 64 --seconds 20
//! # Scheduled fires to that pool: N interval schedules every P seconds for D seconds; every fire
//! # claimed (run row + schedule row written), dispatched, answered and committed.
//! cargo bench -p schedulezero-transport --bench links -- throughput --handlers 2 --schedules 12000 --period 1 --seconds 30
//! ```
//! The handler processes are this binary re-run as SDK handlers (`SZ_BENCH_HANDLER`).
//! Results and how they were obtained: BENCHMARKS.md.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::policy::Policies;
use schedulezero_core::schedule::{Schedule, Target};
use schedulezero_core::trigger::{ParseContext, Trigger};
use schedulezero_engine::Engine;
use schedulezero_engine::clock::{Clock, SystemClock};
use schedulezero_engine::config::EngineConfig;
use schedulezero_handler::{Handler, MethodError};
use schedulezero_protocol::native::{self, FromHandler, FromServer};
use schedulezero_store::SqliteStore;
use schedulezero_transport::{Transport, TransportConfig};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    mode: String,
    calls: usize,
    handlers: usize,
    capacity: u32,
    schedules: usize,
    period: u64,
    seconds: u64,
    concurrency: usize,
}

fn args() -> Res<Args> {
    let mut a = Args {
        mode: String::new(),
        calls: 20_000,
        handlers: 2,
        capacity: 512,
        schedules: 25_000,
        period: 1,
        seconds: 30,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--calls" => a.calls = value()?.parse()?,
            "--handlers" => a.handlers = value()?.parse()?,
            "--capacity" => a.capacity = value()?.parse()?,
            "--schedules" => a.schedules = value()?.parse()?,
            "--period" => a.period = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--concurrency" => a.concurrency = value()?.parse()?,
            m if a.mode.is_empty() && !m.starts_with('-') => a.mode = m.to_string(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn main() -> Res<()> {
    if let Ok(endpoint) = std::env::var("SZ_BENCH_HANDLER") {
        return handler_process(&endpoint);
    }
    let a = args()?;
    let rt = tokio::runtime::Runtime::new()?;
    match a.mode.as_str() {
        "roundtrip" => rt.block_on(roundtrip(a.calls)),
        "throughput" => rt.block_on(throughput(&a)),
        "calls" => rt.block_on(calls(&a)),
        _ => {
            eprintln!(
                "usage: links roundtrip [--calls N] | throughput [--handlers K] [--capacity C] [--schedules N] [--period S] [--seconds D]"
            );
            Ok(())
        }
    }
}

/// A handler process: `echo` on the Rust SDK, one thread of async work.
fn handler_process(endpoint: &str) -> Res<()> {
    let instance = std::env::var("SZ_BENCH_INSTANCE").unwrap_or_else(|_| "bench".into());
    let capacity: u32 = std::env::var("SZ_BENCH_CAPACITY").ok().and_then(|c| c.parse().ok()).unwrap_or(1);
    let handler = Handler::builder("bench")
        .instance_id(instance)
        .capacity(capacity)
        .method("echo", |_ctx, params: Value| async move { Ok::<_, MethodError>(params) })
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(handler.run(endpoint))?;
    Ok(())
}

/// Handler processes, killed when dropped.
struct Handlers(Vec<Child>);

impl Handlers {
    fn spawn(endpoint: &str, n: usize, capacity: u32) -> Res<Handlers> {
        let exe = std::env::current_exe()?;
        let mut children = Vec::new();
        for k in 0..n {
            children.push(
                Command::new(&exe)
                    .env("SZ_BENCH_HANDLER", endpoint)
                    .env("SZ_BENCH_INSTANCE", format!("h{k}"))
                    .env("SZ_BENCH_CAPACITY", capacity.to_string())
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        Ok(Handlers(children))
    }
}

impl Drop for Handlers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn summary(name: &str, mut us: Vec<f64>) -> f64 {
    us.sort_by(f64::total_cmp);
    let p50 = percentile(&us, 0.5);
    println!(
        "{name:<34} p50 {p50:>7.1} µs   p90 {:>7.1} µs   p99 {:>7.1} µs   ({} calls)",
        percentile(&us, 0.9),
        percentile(&us, 0.99),
        us.len()
    );
    p50
}

async fn server(path: &Path) -> Res<(Arc<Engine>, Transport)> {
    let store = Arc::new(SqliteStore::open_path(path).await?);
    let config = EngineConfig { history_retention: None, ..EngineConfig::default() };
    let engine = Arc::new(Engine::start(store, Arc::new(SystemClock), config).await?);
    let transport = Transport::start(
        engine.clone(),
        TransportConfig { endpoint: "tcp://127.0.0.1:0".into(), ..TransportConfig::default() },
    )
    .await?;
    Ok((engine, transport))
}

async fn wait_connected(engine: &Engine, n: usize) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.registry().instances().iter().filter(|i| i.is_connected()).count() < n {
        if Instant::now() > deadline {
            return Err("handlers did not connect within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn roundtrip(calls: usize) -> Res<()> {
    let warmup = (calls / 10).max(100);
    println!(
        "round trip of an echo call to one native handler process, {calls} calls after {warmup} warm-up"
    );

    // 1. The raw socket round trip: a bare ROUTER, the protocol spoken by hand, same handler.
    let raw = tokio::task::spawn_blocking(move || -> Result<Vec<f64>, String> {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).map_err(|e| e.to_string())?;
        router.set_linger(0).map_err(|e| e.to_string())?;
        router.bind("tcp://127.0.0.1:0").map_err(|e| e.to_string())?;
        let endpoint = router.get_last_endpoint().map_err(|e| e.to_string())?.map_err(|_| "endpoint")?;
        let _handlers = Handlers::spawn(&endpoint, 1, 1).map_err(|e| e.to_string())?;
        let peer = loop {
            let frames = router.recv_multipart(0).map_err(|e| e.to_string())?;
            if let Ok(FromHandler::Hello(_)) = native::decode_from_handler(&frames[2]) {
                break frames[0].clone();
            }
        };
        let welcome = native::encode(&FromServer::Welcome {
            heartbeat_ms: 1000,
            max_frame_bytes: 4 << 20,
            server: "bench".into(),
        });
        router.send_multipart([peer.as_slice(), &welcome[0], &welcome[1]], 0).map_err(|e| e.to_string())?;
        let mut times = Vec::with_capacity(calls);
        for i in 0..warmup + calls {
            let call = FromServer::Call(native::Call {
                run_id: uuid::Uuid::now_v7(),
                attempt: 1,
                scheduled_for: chrono::Utc::now(),
                method: "echo".into(),
                params: json!({"i": i}),
                deadline_ms: 30_000,
            });
            let t0 = Instant::now();
            let [sig, body] = native::encode(&call);
            router.send_multipart([peer.as_slice(), &sig, &body], 0).map_err(|e| e.to_string())?;
            loop {
                let frames = router.recv_multipart(0).map_err(|e| e.to_string())?;
                if let Ok(FromHandler::Result(_)) = native::decode_from_handler(&frames[2]) {
                    break;
                }
            }
            if i >= warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(times)
    })
    .await??;

    // 2. Through the dispatcher: run_now stores the run, routes, sends, waits, reports.
    let dir = tempfile::tempdir()?;
    let (engine, transport) = server(&dir.path().join("bench.db")).await?;
    let handlers = Handlers::spawn(transport.endpoint(), 1, 1)?;
    wait_connected(&engine, 1).await?;
    let mut times = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let target = Target { handler_id: "bench".into(), method: "echo".into(), params: json!({"i": i}) };
        let t0 = Instant::now();
        let report = engine.run_now(target, Duration::from_secs(30)).await?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        if report.outcome != schedulezero_core::run::AttemptOutcome::Succeeded {
            return Err(format!("call {i} did not succeed: {report:?}").into());
        }
    }
    drop(handlers);
    // 3. The same engine path to an in-process handler: what the engine and store cost alone.
    let local = schedulezero_engine::LocalHandler::new("local")
        .method("echo", |_ctx, params| async move { Ok(params) });
    engine.add_local_handler(local).await?;
    let mut local_times = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let target = Target { handler_id: "local".into(), method: "echo".into(), params: json!({"i": i}) };
        let t0 = Instant::now();
        engine.run_now(target, Duration::from_secs(30)).await?;
        if i >= warmup {
            local_times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    engine.shutdown().await;
    transport.shutdown().await;

    summary("engine alone (in-process handler)", local_times);
    let raw_p50 = summary("raw socket (bare ROUTER)", raw);
    let disp_p50 = summary("through the dispatcher (run_now)", times);
    println!("added by engine + store + transport  p50 {:.1} µs", disp_p50 - raw_p50);
    Ok(())
}

async fn calls(a: &Args) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let (engine, transport) = server(&path).await?;
    let handlers = Handlers::spawn(transport.endpoint(), a.handlers, a.capacity)?;
    wait_connected(&engine, a.handlers).await?;
    println!(
        "{} native handler processes (capacity {} each), {} concurrent callers of run_now, {} s",
        a.handlers, a.capacity, a.concurrency, a.seconds
    );
    let warm_until = Instant::now() + Duration::from_secs(2);
    let until = warm_until + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for c in 0..a.concurrency {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut times) = (0u64, 0u64, Vec::new());
            let mut i = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let target = Target {
                    handler_id: "bench".into(),
                    method: "echo".into(),
                    params: json!({"c": c, "i": i}),
                };
                i += 1;
                let r = engine.run_now(target, Duration::from_secs(30)).await;
                if t0 < warm_until {
                    continue;
                }
                match r {
                    Ok(r) if r.outcome == schedulezero_core::run::AttemptOutcome::Succeeded => {
                        ok += 1;
                        times.push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed, times)
        }));
    }
    let (mut ok, mut failed, mut times) = (0, 0, Vec::new());
    for t in tasks {
        let (o, f, ts) = t.await?;
        ok += o;
        failed += f;
        times.extend(ts);
    }
    engine.shutdown().await;
    transport.shutdown().await;
    drop(handlers);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE state = 'succeeded'").fetch_one(&pool).await?;
    println!(
        "answered                    {ok} succeeded, {failed} not   ({stored} runs succeeded in the store, warm-up included)"
    );
    println!("sustained                   {:.0} calls/s", ok as f64 / a.seconds.max(1) as f64);
    summary("call latency (run_now)", times);
    Ok(())
}

/// `n` interval schedules of `period`, first fires spread evenly over one period from `first`.
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
            let target = Target { handler_id: "bench".into(), method: "echo".into(), params: json!({"k": k}) };
            Schedule::new(format!("bench-{k}"), trigger, target, Policies::default(), now)
        })
        .collect()
}

async fn throughput(a: &Args) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let period = Duration::from_secs(a.period);
    let now = SystemClock.now();
    let first = now + TimeDelta::seconds(8);
    {
        let store = SqliteStore::open_path(&path).await?;
        for chunk in make_schedules(a.schedules, period, first, now).chunks(50_000) {
            store.insert_schedules_bulk(chunk).await?;
        }
        store.close().await;
    }
    let (engine, transport) = server(&path).await?;
    let handlers = Handlers::spawn(transport.endpoint(), a.handlers, a.capacity)?;
    wait_connected(&engine, a.handlers).await?;
    println!(
        "{} native handler processes (capacity {} each); offered {:.0} calls/s for {} s",
        a.handlers,
        a.capacity,
        a.schedules as f64 / a.period as f64,
        a.seconds
    );
    tokio::time::sleep((first - SystemClock.now()).to_std().unwrap_or_default()).await;
    let end = first + TimeDelta::seconds(a.seconds as i64);
    tokio::time::sleep(Duration::from_secs(a.seconds + 3)).await;
    engine.shutdown().await;
    transport.shutdown().await;
    drop(handlers);
    let per_instance: Vec<String> = engine
        .registry()
        .instances()
        .iter()
        .map(|i| format!("{}={}", i.instance_id, i.successes()))
        .collect();

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
    let (first_ms, end_ms) = (first.timestamp_millis(), end.timestamp_millis());
    let period_ms = period.as_millis() as i64;
    let offered: i64 = (0..a.schedules as i64)
        .map(|k| {
            let start = first_ms + period_ms * k / a.schedules as i64;
            if start >= end_ms { 0 } else { (end_ms - 1 - start) / period_ms + 1 }
        })
        .sum();
    let succeeded: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(slot_count), 0) FROM runs WHERE state = 'succeeded' AND scheduled_for < ?",
    )
    .bind(end_ms)
    .fetch_one(&pool)
    .await?;
    let mut done: Vec<f64> = sqlx::query_scalar::<_, i64>(
        "SELECT finished_at - scheduled_for FROM runs WHERE state = 'succeeded' AND scheduled_for < ?",
    )
    .bind(end_ms)
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|v| v as f64)
    .collect();
    done.sort_by(f64::total_cmp);
    println!("offered calls in window     {offered}");
    println!(
        "answered and committed      {succeeded}  ({:.2}%)   per instance: {}",
        100.0 * succeeded as f64 / offered.max(1) as f64,
        per_instance.join(", ")
    );
    println!("sustained                   {:.0} calls/s", succeeded as f64 / a.seconds.max(1) as f64);
    println!(
        "fire to committed outcome   p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms",
        percentile(&done, 0.5),
        percentile(&done, 0.99),
        done.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
