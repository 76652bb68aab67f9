//! Server benchmarks (issue 4): the real `schedulezero serve` binary driven over HTTP by a Rust
//! load generator, with native handler processes on the Rust SDK. Figures are printed next to
//! their targets (PASS/MISS), never asserted: these machines are shared and noisy.
//!
//! ```sh
//! # POST /api/run_now to a native handler: sequential latency, then 16 keep-alive clients.
//! cargo bench -p schedulezero-cli --bench server -- run-now [--calls 10000] [--clients 16] [--seconds 10] [--handlers 1] [--capacity 64]
//! # 500 date schedules due in the same second ~3 s ahead: delivered, and how late.
//! cargo bench -p schedulezero-cli --bench server -- same-second [--due 500] [--ahead 3] [--handlers 2] [--capacity 256]
//! # Schedules created through POST /api/schedule (and the native POST /api/schedules) by one client.
//! cargo bench -p schedulezero-cli --bench server -- create [--creates 20000]
//! # Spawn → first 200 on /api/health (median of N starts); resident memory idle and with 5,000 schedules.
//! cargo bench -p schedulezero-cli --bench server -- startup [--starts 10] [--rss-schedules 5000]
//! # Everything above, then a summary.
//! cargo bench -p schedulezero-cli --bench server -- all
//! ```
//!
//! The server is spawned as `serve --root <tmpdir> --http 127.0.0.1:0 --zmq tcp://127.0.0.1:0` and
//! found through its runtime file; `SZ_BENCH_SERVER=<path>` runs another build of the binary
//! instead (to compare a change with a copy of the binary from before it). That path must be the
//! server itself (or a script that `exec`s it): the bench kills the PID it spawned. The handler processes are this binary re-run as SDK handlers
//! (`SZ_BENCH_HANDLER`). Every process is killed by PID when dropped. Results: BENCHMARKS.md.

use std::fs::File;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeDelta, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use schedulezero_handler::{Handler, MethodError};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    scenario: String,
    calls: usize,
    clients: usize,
    seconds: u64,
    handlers: Option<usize>,
    capacity: Option<u32>,
    due: usize,
    ahead: u64,
    creates: usize,
    starts: usize,
    rss_schedules: usize,
}

const USAGE: &str = "usage: server run-now|same-second|create|startup|all [--calls N] [--clients C] [--seconds S] \
[--handlers K] [--capacity C] [--due N] [--ahead S] [--creates N] [--starts N] [--rss-schedules N]";

fn args() -> Res<Args> {
    let mut a = Args {
        scenario: String::new(),
        calls: 10_000,
        clients: 16,
        seconds: 10,
        handlers: None,
        capacity: None,
        due: 500,
        ahead: 3,
        creates: 20_000,
        starts: 10,
        rss_schedules: 5_000,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--calls" => a.calls = value()?.parse()?,
            "--clients" => a.clients = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--handlers" => a.handlers = Some(value()?.parse()?),
            "--capacity" => a.capacity = Some(value()?.parse()?),
            "--due" => a.due = value()?.parse()?,
            "--ahead" => a.ahead = value()?.parse()?,
            "--creates" => a.creates = value()?.parse()?,
            "--starts" => a.starts = value()?.parse()?,
            "--rss-schedules" => a.rss_schedules = value()?.parse()?,
            s if a.scenario.is_empty() && !s.starts_with('-') => a.scenario = s.to_string(),
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    Ok(a)
}

fn main() -> Res<()> {
    if let Ok(endpoint) = std::env::var("SZ_BENCH_HANDLER") {
        return handler_process(&endpoint);
    }
    let a = args()?;
    // One thread: the load generator must leave the server and handlers the other core.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut verdicts = Verdicts::default();
    rt.block_on(async {
        match a.scenario.as_str() {
            "run-now" => run_now(&a, &mut verdicts).await,
            "same-second" => same_second(&a, &mut verdicts).await,
            "create" => create(&a, &mut verdicts).await,
            "startup" => startup(&a, &mut verdicts).await,
            "all" => {
                run_now(&a, &mut verdicts).await?;
                same_second(&a, &mut verdicts).await?;
                create(&a, &mut verdicts).await?;
                startup(&a, &mut verdicts).await
            }
            _ => Err(USAGE.into()),
        }
    })?;
    verdicts.summary();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Handler processes

/// A handler process on the Rust SDK: `echo` returns its params; `late` also appends
/// `<run_id> <lateness µs>` to `$SZ_BENCH_LATENESS`, lateness being the time the call arrived
/// here less the fire slot it is for.
fn handler_process(endpoint: &str) -> Res<()> {
    let instance = std::env::var("SZ_BENCH_INSTANCE").unwrap_or_else(|_| "bench".into());
    let capacity: u32 = std::env::var("SZ_BENCH_CAPACITY").ok().and_then(|c| c.parse().ok()).unwrap_or(1);
    let log = match std::env::var("SZ_BENCH_LATENESS") {
        Ok(path) => Some(Arc::new(Mutex::new(File::options().create(true).append(true).open(path)?))),
        Err(_) => None,
    };
    let handler = Handler::builder("bench")
        .instance_id(instance)
        .capacity(capacity)
        .method("echo", |_ctx, params: Value| async move { Ok::<_, MethodError>(params) })
        .method("late", move |ctx, _params: Value| {
            let late = Utc::now() - ctx.scheduled_for();
            let log = log.clone();
            async move {
                let us = late.num_microseconds().unwrap_or(i64::MAX);
                if let Some(log) = log {
                    let line = format!("{} {us}\n", ctx.run_id());
                    // One write per line on an O_APPEND file: lines stay whole.
                    let mut f = log.lock().map_err(|_| "lateness log poisoned")?;
                    f.write_all(line.as_bytes()).map_err(|e| MethodError::from_error(&e))?;
                }
                Ok::<_, MethodError>(json!({"late_us": us}))
            }
        })
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(handler.run(endpoint))?;
    Ok(())
}

/// Handler processes, killed by PID when dropped.
struct Handlers {
    children: Vec<Child>,
    /// One lateness file per process.
    logs: Vec<PathBuf>,
}

impl Handlers {
    fn spawn(endpoint: &str, n: usize, capacity: u32, log_dir: &Path) -> Res<Handlers> {
        let exe = std::env::current_exe()?;
        let mut h = Handlers { children: Vec::new(), logs: Vec::new() };
        for k in 0..n {
            let log = log_dir.join(format!("lateness-h{k}.txt"));
            h.children.push(
                Command::new(&exe)
                    .env("SZ_BENCH_HANDLER", endpoint)
                    .env("SZ_BENCH_INSTANCE", format!("h{k}"))
                    .env("SZ_BENCH_CAPACITY", capacity.to_string())
                    .env("SZ_BENCH_LATENESS", &log)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()?,
            );
            h.logs.push(log);
        }
        Ok(h)
    }

    /// Every `(run id, lateness in µs)` the processes have logged so far.
    fn lateness(&self) -> Vec<(String, i64)> {
        let mut all = Vec::new();
        for path in &self.logs {
            let Ok(text) = std::fs::read_to_string(path) else { continue };
            for line in text.lines() {
                if let Some((run, us)) = line.split_once(' ')
                    && let Ok(us) = us.parse()
                {
                    all.push((run.to_string(), us));
                }
            }
        }
        all
    }
}

impl Drop for Handlers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server process

/// `schedulezero serve` in its own temp root, killed by PID when dropped.
struct Server {
    child: Child,
    /// Output lines with the instant each was read.
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
    spawned: Instant,
    root: PathBuf,
    http: SocketAddr,
    zmq: String,
}

impl Server {
    /// Spawns the server and returns once its runtime file names its addresses.
    fn start(root: &Path) -> Res<Server> {
        // `SZ_BENCH_SERVER` names another build to measure (a before/after comparison).
        let exe = std::env::var_os("SZ_BENCH_SERVER")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_schedulezero")), PathBuf::from);
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .arg("--root")
            .arg(root)
            .args(["--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0"])
            .env_remove("SCHEDULEZERO_DEPLOYMENT")
            .env_remove("SCHEDULEZERO_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = cmd.spawn()?;
        let (tx, rx) = mpsc::channel();
        let pipes: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().ok_or("no stdout pipe")?),
            Box::new(child.stderr.take().ok_or("no stderr pipe")?),
        ];
        for pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send((Instant::now(), line));
                }
            });
        }
        let mut s = Server {
            child,
            lines: rx,
            seen: Vec::new(),
            spawned,
            root: root.to_path_buf(),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            zmq: String::new(),
        };
        let runtime = root.join("deployments/default/run/server.json");
        let deadline = spawned + Duration::from_secs(30);
        loop {
            // Written atomically: once it parses, it is whole.
            if let Ok(bytes) = std::fs::read(&runtime)
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            {
                let http = v["http"].as_str().ok_or("runtime file without 'http'")?;
                s.http = http.trim_start_matches("http://").parse()?;
                s.zmq = v["zmq"].as_str().ok_or("runtime file without 'zmq'")?.to_string();
                return Ok(s);
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                s.drain();
                return Err(format!("the server exited ({status}) before serving: {:?}", s.output()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("no runtime file within 30 s: {:?}", s.output()).into());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn output(&self) -> Vec<&str> {
        self.seen.iter().map(|(_, l)| l.as_str()).collect()
    }

    /// When the line holding `marker` was read, waiting up to `within` for it.
    fn line_at(&mut self, marker: &str, within: Duration) -> Res<Instant> {
        let deadline = Instant::now() + within;
        loop {
            self.drain();
            if let Some((at, _)) = self.seen.iter().find(|(_, l)| l.contains(marker)) {
                return Ok(*at);
            }
            if Instant::now() > deadline {
                return Err(format!("no line with '{marker}' within {within:?}: {:?}", self.output()).into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resident memory from `/proc/<pid>/status`, in MB.
    fn memory(&self) -> Res<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb = |key: &str| -> Res<f64> {
            let line = status.lines().find(|l| l.starts_with(key)).ok_or(format!("no {key} in status"))?;
            let n: f64 = line.split_whitespace().nth(1).ok_or("empty line")?.parse()?;
            Ok(n / 1024.0)
        };
        Ok(Memory { rss: kb("VmRSS:")?, peak: kb("VmHWM:")?, anon: kb("RssAnon:")?, file: kb("RssFile:")? })
    }

    /// Until `n` handler instances are connected (from `/api/health`).
    async fn wait_handlers(&self, n: u64) -> Res<()> {
        let mut c = Client::connect(self.http).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, health) = c.json(Method::GET, "/api/health", None).await?;
            if health["handlers_connected"].as_u64().unwrap_or(0) >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{n} handlers did not connect within 30 s: {health}").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then wait for exit.
    fn stop(mut self) -> Res<()> {
        Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                return Err("the server did not stop within 30 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident set (MB): total, its peak, and its anonymous (heap, stacks) and
/// file-backed (the binary's and libraries' pages) parts.
struct Memory {
    rss: f64,
    peak: f64,
    anon: f64,
    file: f64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {:.1} MB (anonymous {:.1} MB, file-backed {:.1} MB; peak {:.1} MB)",
            self.rss, self.anon, self.file, self.peak
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator: one keep-alive HTTP/1.1 connection per simulated client.

struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Res<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client { sender, host: addr.to_string() })
    }

    /// One request; the status and the whole body.
    async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Res<(u16, Bytes)> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.unwrap_or_default()))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn json(&mut self, method: Method, path: &str, body: Option<&Value>) -> Res<(u16, Value)> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, bytes) = self.send(method, path, body).await?;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Percentiles of a sample, in the sample's unit.
struct Stats {
    n: usize,
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(mut v: Vec<f64>) -> Stats {
        v.sort_by(f64::total_cmp);
        let at =
            |p: f64| if v.is_empty() { f64::NAN } else { v[(((v.len() - 1) as f64) * p).round() as usize] };
        Stats { n: v.len(), min: at(0.0), p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1.0) }
    }

    fn line(&self, unit: &str) -> String {
        format!(
            "p50 {:.3} {unit}   p90 {:.3} {unit}   p99 {:.3} {unit}   max {:.3} {unit}   (n = {})",
            self.p50, self.p90, self.p99, self.max, self.n
        )
    }
}

/// Each figure with its target, printed as measured and again in the closing summary.
#[derive(Default)]
struct Verdicts(Vec<String>);

impl Verdicts {
    /// `at_most`: the target is an upper bound (latency, memory); else a lower bound (rates).
    fn check(&mut self, what: &str, value: f64, unit: &str, target: f64, at_most: bool) {
        let pass = if at_most { value <= target } else { value >= target };
        let line = format!(
            "{what:<46} {value:>10.3} {unit:<8} target {} {target} {unit:<8} {}",
            if at_most { "≤" } else { "≥" },
            if pass { "PASS" } else { "MISS" }
        );
        println!("  => {line}");
        self.0.push(line);
    }

    fn summary(&self) {
        if self.0.len() > 1 {
            println!("\nsummary");
            for l in &self.0 {
                println!("  {l}");
            }
        }
    }
}

/// The scenario's title, with the machine's load: these figures move with it on a shared machine.
fn heading(title: &str) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("\n== {title} ==\n({cores} cores, load average {})", load.join(" "));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// `POST /api/run_now` to the `echo` method: sequential, then `clients` concurrent clients.
async fn run_now(a: &Args, v: &mut Verdicts) -> Res<()> {
    let (handlers, capacity) = (a.handlers.unwrap_or(1), a.capacity.unwrap_or(64));
    heading(&format!(
        "run-now: POST /api/run_now → native handler 'echo' ({handlers} handler process(es), capacity {capacity} each)"
    ));
    let root = tempfile::tempdir()?;
    let server = Server::start(root.path())?;
    let _h = Handlers::spawn(&server.zmq, handlers, capacity, root.path())?;
    server.wait_handlers(handlers as u64).await?;
    let body =
        Bytes::from(json!({"handler_id": "bench", "job_method": "echo", "job_params": {}}).to_string());

    let mut c = Client::connect(server.http).await?;
    let (status, first) = c.send(Method::POST, "/api/run_now", Some(body.clone())).await?;
    if status != 200 {
        return Err(format!("run_now answered {status}: {}", String::from_utf8_lossy(&first)).into());
    }
    println!("a reply: {}", String::from_utf8_lossy(&first));
    let warmup = (a.calls / 10).max(200);
    let mut times = Vec::with_capacity(a.calls);
    for i in 0..warmup + a.calls {
        let t0 = Instant::now();
        let (status, reply) = c.send(Method::POST, "/api/run_now", Some(body.clone())).await?;
        let took = t0.elapsed();
        if status != 200 {
            return Err(format!("call {i} answered {status}: {}", String::from_utf8_lossy(&reply)).into());
        }
        if i >= warmup {
            times.push(ms(took));
        }
    }
    let seq = Stats::of(times);
    // For scale: the HTTP stack alone (same connection, a route that touches no store).
    let mut health = Vec::with_capacity(a.calls);
    for _ in 0..a.calls {
        let t0 = Instant::now();
        c.send(Method::GET, "/api/health", None).await?;
        health.push(ms(t0.elapsed()));
    }
    println!("sequential, 1 client, {} calls after {warmup} warm-up:", a.calls);
    println!("  latency {}", seq.line("ms"));
    println!("  for scale, GET /api/health on the same connection: {}", Stats::of(health).line("ms"));
    v.check("run-now sequential p50", seq.p50, "ms", 0.3, true);

    let warm = Duration::from_secs(2);
    println!(
        "concurrent, {} clients (one keep-alive connection each), {} s after {warm:?} warm-up:",
        a.clients, a.seconds
    );
    let start = Instant::now() + Duration::from_millis(100);
    let (warm_until, until) = (start + warm, start + warm + Duration::from_secs(a.seconds));
    let mut tasks = Vec::new();
    for _ in 0..a.clients {
        let mut c = Client::connect(server.http).await?;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let (mut ok, mut failed, mut times, mut sent) = (0u64, 0u64, Vec::new(), 0u64);
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let r = c.send(Method::POST, "/api/run_now", Some(body.clone())).await;
                sent += 1;
                if t0 < warm_until {
                    continue;
                }
                match r {
                    Ok((200, _)) => {
                        ok += 1;
                        times.push(ms(t0.elapsed()));
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed, times, sent)
        }));
    }
    let (mut ok, mut failed, mut times) = (0, 0, Vec::new());
    // Every call of this run: the first, the sequential ones and the concurrent ones.
    let mut sent = (1 + warmup + a.calls) as u64;
    for t in tasks {
        let (o, f, ts, n) = t.await?;
        ok += o;
        failed += f;
        times.extend(ts);
        sent += n;
    }
    let rate = ok as f64 / a.seconds as f64;
    let conc = Stats::of(times);
    println!("  answered {ok} with 200, {failed} not");
    println!("  latency {}", conc.line("ms"));
    // The runs and outcomes are committed in the recorder's batches, behind the replies.
    let at_last_reply = server.memory()?;
    let t0 = Instant::now();
    let stats = loop {
        let (_, stats) = c.json(Method::GET, "/api/executions/stats", None).await?;
        // Finished runs: a run is stored `running` first, then its outcome, in the next commit.
        let finished =
            stats["success_count"].as_u64().unwrap_or(0) + stats["error_count"].as_u64().unwrap_or(0);
        if finished >= sent || t0.elapsed() > Duration::from_secs(30) {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "  runs in the store: {} succeeded, {} errors, of {sent} calls sent (warm-up included); the last committed {:.0} ms after the last reply",
        stats["success_count"],
        stats["error_count"],
        ms(t0.elapsed())
    );
    println!("  server memory at the last reply: {at_last_reply}");
    v.check(&format!("run-now {} clients throughput", a.clients), rate, "calls/s", 10_000.0, false);
    Ok(())
}

/// `due` date schedules, all due in the same whole second `ahead` seconds from now, to the
/// `late` method; lateness as the handler saw it and as the server recorded it.
async fn same_second(a: &Args, v: &mut Verdicts) -> Res<()> {
    let (handlers, capacity) = (a.handlers.unwrap_or(2), a.capacity.unwrap_or(256));
    heading(&format!(
        "same-second: {} date schedules due in one second → native handler 'late' ({handlers} process(es), capacity {capacity} each)",
        a.due
    ));
    let root = tempfile::tempdir()?;
    let server = Server::start(root.path())?;
    let h = Handlers::spawn(&server.zmq, handlers, capacity, root.path())?;
    server.wait_handlers(handlers as u64).await?;
    let mut c = Client::connect(server.http).await?;

    // A whole second at least `ahead` s away.
    let due = {
        let t = Utc::now() + TimeDelta::seconds(a.ahead as i64);
        t + TimeDelta::milliseconds(1000 - i64::from(t.timestamp_subsec_millis()))
    };
    let run_date = due.to_rfc3339_opts(SecondsFormat::Secs, false);
    let t0 = Instant::now();
    for k in 0..a.due {
        let body = json!({
            "job_id": format!("due-{k}"),
            "handler_id": "bench",
            "job_method": "late",
            "job_params": {"k": k},
            "trigger": {"type": "date", "run_date": run_date},
        });
        let (status, reply) = c.json(Method::POST, "/api/schedule", Some(&body)).await?;
        if status != 201 {
            return Err(format!("schedule {k} answered {status}: {reply}").into());
        }
    }
    let created = t0.elapsed();
    let left = (due - Utc::now()).num_milliseconds();
    println!("created {} schedules for {run_date} in {:.0} ms; {left} ms to spare", a.due, ms(created));
    if left <= 0 {
        return Err("the schedules were created after their due time; raise --ahead".into());
    }

    let deadline = Instant::now() + Duration::from_millis(left as u64) + Duration::from_secs(30);
    let mut seen = h.lateness();
    while seen.len() < a.due && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = h.lateness();
    }
    let mut runs: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    println!("delivered to the handlers: {} calls, {} distinct runs, of {}", seen.len(), runs.len(), a.due);
    let lat = Stats::of(seen.iter().map(|(_, us)| *us as f64 / 1e3).collect());
    println!("  lateness at the handler (received − scheduled_for): {}", lat.line("ms"));
    println!(
        "  the first call arrived {:.3} ms after the slot, the last {:.3} ms after the first",
        lat.min,
        lat.max - lat.min
    );

    // The server's own record: started_at − scheduled_for, in whole milliseconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let (_, r) = c.json(Method::GET, &format!("/api/executions?limit={}", a.due.min(1000)), None).await?;
        let done =
            r["records"].as_array().map_or(0, |l| l.iter().filter(|x| x["status"] == "success").count());
        if done >= a.due.min(1000) || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recs = records["records"].as_array().cloned().unwrap_or_default();
    let succeeded = recs.iter().filter(|x| x["status"] == "success").count();
    let server_lat = Stats::of(recs.iter().filter_map(|x| x["lateness_ms"].as_f64()).collect());
    println!("  recorded by the server: {succeeded} succeeded of {} records", recs.len());
    println!("  lateness recorded (started_at − scheduled_for):     {}", server_lat.line("ms"));

    v.check(&format!("same-second delivered (of {})", a.due), runs.len() as f64, "runs", a.due as f64, false);
    v.check("same-second lateness p99 (at the handler)", lat.p99, "ms", 20.0, true);
    Ok(())
}

/// The trigger of the k-th created schedule: hourly intervals and daily crons that start in 2099.
fn far_trigger(k: usize) -> Value {
    if k.is_multiple_of(2) {
        json!({"type": "interval", "hours": 1 + k % 24, "start_time": "2099-01-01T00:00:00+00:00"})
    } else {
        json!({"type": "cron", "hour": k % 24, "minute": k % 60, "start_time": "2099-01-01T00:00:00+00:00"})
    }
}

/// Creates `n` schedules sequentially over one connection, `body(k)` each; returns the latencies.
async fn create_many(c: &mut Client, path: &str, n: usize, body: impl Fn(usize) -> Value) -> Res<Vec<f64>> {
    let mut times = Vec::with_capacity(n);
    for k in 0..n {
        let body = Bytes::from(body(k).to_string());
        let t0 = Instant::now();
        let (status, reply) = c.send(Method::POST, path, Some(body)).await?;
        times.push(ms(t0.elapsed()));
        if status != 201 {
            return Err(format!("{path} #{k} answered {status}: {}", String::from_utf8_lossy(&reply)).into());
        }
    }
    Ok(times)
}

/// Schedule creation through HTTP from one client.
async fn create(a: &Args, v: &mut Verdicts) -> Res<()> {
    heading(&format!("create: {} schedules through POST /api/schedule, one keep-alive client", a.creates));
    let root = tempfile::tempdir()?;
    let server = Server::start(root.path())?;
    let _h = Handlers::spawn(&server.zmq, 1, 1, root.path())?;
    server.wait_handlers(1).await?;
    let mut c = Client::connect(server.http).await?;

    let t0 = Instant::now();
    let times = create_many(&mut c, "/api/schedule", a.creates, |k| {
        json!({
            "job_id": format!("compat-{k}"),
            "handler_id": "bench",
            "job_method": "echo",
            "job_params": {"k": k},
            "trigger": far_trigger(k),
        })
    })
    .await?;
    let rate = a.creates as f64 / t0.elapsed().as_secs_f64();
    let lat = Stats::of(times);
    println!("compat POST /api/schedule: {rate:.0} schedules/s; latency {}", lat.line("ms"));
    let t1 = Instant::now();
    let (_, list) = c.json(Method::GET, "/api/schedules", None).await?;
    println!("  GET /api/schedules lists {} schedules in {:.0} ms", list["count"], ms(t1.elapsed()));
    v.check("create: compat POST /api/schedule", rate, "/s", 5_000.0, false);

    // The native route, when this build has it (docs/API.md).
    let native = |k: usize| {
        json!({
            "name": format!("native-{k}"),
            "trigger": far_trigger(k),
            "target": {"handler_id": "bench", "method": "echo", "params": {"k": k}},
        })
    };
    let (status, probe) = c.json(Method::POST, "/api/schedules", Some(&native(usize::MAX - 1))).await?;
    if status != 201 {
        println!("native POST /api/schedules: not on this build (answered {status}: {probe})");
        return Ok(());
    }
    let t0 = Instant::now();
    let times = create_many(&mut c, "/api/schedules", a.creates, native).await?;
    let rate = a.creates as f64 / t0.elapsed().as_secs_f64();
    println!("native POST /api/schedules: {rate:.0} schedules/s; latency {}", Stats::of(times).line("ms"));
    v.check("create: native POST /api/schedules", rate, "/s", 5_000.0, false);
    Ok(())
}

/// Start-up time over `starts` fresh deployments, then resident memory idle and with schedules.
async fn startup(a: &Args, v: &mut Verdicts) -> Res<()> {
    heading(&format!("startup: spawn → first 200 on /api/health, {} starts, each in a fresh root", a.starts));
    let (mut to_file, mut to_line, mut to_health) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.starts {
        let root = tempfile::tempdir()?;
        let mut s = Server::start(root.path())?;
        to_file.push(ms(s.spawned.elapsed()));
        to_health.push(ms(first_health(&s).await? - s.spawned));
        to_line.push(ms(s.line_at("  http ", Duration::from_secs(10))? - s.spawned));
        s.stop()?;
    }
    let (file, line, health) = (Stats::of(to_file), Stats::of(to_line), Stats::of(to_health));
    println!("  runtime file readable      {}", file.line("ms"));
    println!("  '  http' line read         {}", line.line("ms"));
    println!("  first 200 on /api/health   {}", health.line("ms"));
    v.check("startup: spawn → healthy, median", health.p50, "ms", 50.0, true);

    heading(&format!("memory: resident set of the server, idle and with {} schedules", a.rss_schedules));
    let root = tempfile::tempdir()?;
    let server = Server::start(root.path())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.memory()?;
    println!("  idle, 2 s after start, no handler:       {idle}");
    let h = Handlers::spawn(&server.zmq, 1, 256, root.path())?;
    server.wait_handlers(1).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("  one handler connected:                   {}", server.memory()?);

    // Interval schedules every 60 s whose first fires spread over 10 s starting 5 s from now,
    // so each fires once in this measurement and the runs are recorded.
    let first = Utc::now() + TimeDelta::seconds(5);
    let n = a.rss_schedules;
    let mut c = Client::connect(server.http).await?;
    let t0 = Instant::now();
    create_many(&mut c, "/api/schedule", n, |k| {
        let start = first + TimeDelta::milliseconds((10_000 * k / n.max(1)) as i64);
        json!({
            "job_id": format!("every-minute-{k}"),
            "handler_id": "bench",
            "job_method": "late",
            "job_params": {"k": k},
            "trigger": {"type": "interval", "seconds": 60, "start_time": start.to_rfc3339()},
        })
    })
    .await?;
    let created = server.memory()?;
    println!("  {n} schedules created ({:.0} ms), none fired yet: {created}", ms(t0.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, stats) = c.json(Method::GET, "/api/executions/stats", None).await?;
        let done = stats["success_count"].as_u64().unwrap_or(0) + stats["error_count"].as_u64().unwrap_or(0);
        if done >= n as u64 || Instant::now() > deadline {
            println!(
                "  runs finished: {} succeeded, {} errors",
                stats["success_count"], stats["error_count"]
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = server.memory()?;
    let lat = Stats::of(h.lateness().iter().map(|(_, us)| *us as f64 / 1e3).collect());
    println!("  each fired once, runs settled (+2 s):    {settled}");
    println!("  lateness of those fires at the handler: {}", lat.line("ms"));
    v.check("memory: idle", idle.rss, "MB", 15.0, true);
    v.check(&format!("memory: {n} schedules created"), created.rss, "MB", 25.0, true);
    v.check(&format!("memory: {n} schedules, runs settled"), settled.rss, "MB", 25.0, true);

    // A restart of that deployment: the store now holds the schedules and their history.
    drop(c);
    let root_path = server.root.clone();
    server.stop()?;
    let mut restarts = Vec::new();
    for i in 0..3 {
        let s = Server::start(&root_path)?;
        restarts.push(ms(first_health(&s).await? - s.spawned));
        if i == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!("  restarted with them, idle (+2 s):        {}", s.memory()?);
        }
        s.stop()?;
    }
    println!("  restart with {n} schedules → healthy: {}", Stats::of(restarts).line("ms"));
    drop(h);
    Ok(())
}

/// The instant of the first 200 on `/api/health`, polled tightly (a new connection per try until
/// one is accepted).
async fn first_health(s: &Server) -> Res<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Client::connect(s.http).await
            && let Ok((200, _)) = c.send(Method::GET, "/api/health", None).await
        {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err("no 200 on /api/health within 30 s".into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}
