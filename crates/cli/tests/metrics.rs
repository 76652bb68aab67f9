//! `GET /metrics` and history retention on the real `schedulezero serve`: a version-1 pyzmq
//! handler executes real calls while the Prometheus text is scraped and parsed; runs written
//! into the SQLite file before the start are purged (or kept) by the retention service.
//!
//! The process helpers are a trimmed copy of those in tests/serve.rs (that file is not ours to
//! share from).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use schedulezero_core::run::{Run, RunId, RunState};
use schedulezero_core::schedule::Target;
use schedulezero_store::{SqliteStore, Store};
use serde_json::{Value, json};
use support::{Proc, http_raw, runtime, serve_with_env, v1_handler};

/// Starts `serve` on ports chosen by the OS; returns it and its HTTP address (host:port), read
/// from the runtime file.
fn serve(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let all: Vec<&str> = ["--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let mut p = serve_with_env(root, &all, env);
    p.wait_line("  http ", Duration::from_secs(30));
    let addr = runtime(root)["http"]
        .as_str()
        .expect("http in the runtime file")
        .trim_start_matches("http://")
        .to_string();
    (p, addr)
}

/// `GET`-style request: (status, headers in lower case, body).
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, BTreeMap<String, String>, String) {
    http_raw(addr, method, path, body, &format!("Host: {addr}"))
}

/// One sample of the Prometheus text format: name and labels → value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the Prometheus text exposition format (version 0.0.4) strictly: every line is a
/// comment (`# HELP`/`# TYPE` with a valid type), blank, or `name{label="value",...} number`.
/// Panics naming the line that is not.
fn parse_prometheus(text: &str) -> Samples {
    let mut samples = Samples::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(_), Some(help)) => assert!(!help.is_empty(), "empty help: {line}"),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type: {line}"
                    );
                    types.insert(name.to_string(), kind.to_string());
                }
                _ => panic!("a comment that is neither HELP nor TYPE: {line}"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
            for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("unquoted label value: {line}"));
                labels.insert(k.to_string(), v.to_string());
            }
            rest = &inner[close + 1..];
        }
        let value = rest.trim();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        assert!(types.contains_key(family), "a sample before its TYPE line: {line}");
        assert!(samples.insert((name.to_string(), labels), value).is_none(), "a sample given twice: {line}");
    }
    samples
}

fn scrape(addr: &str) -> Samples {
    let (status, headers, body) = http(addr, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    let ct = headers.get("content-type").map(String::as_str).unwrap_or("");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content type: {ct}");
    parse_prometheus(&body)
}

fn value(s: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    s.get(&(name.to_string(), labels)).copied()
}

/// Scrapes until `pred` holds (or panics after `within`, showing the last scrape).
fn scrape_until(addr: &str, within: Duration, what: &str, pred: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + within;
    loop {
        let s = scrape(addr);
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}; last scrape: {s:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A histogram's buckets rise with `le`, end in `+Inf`, and `+Inf` equals `_count`.
fn assert_histogram(s: &Samples, name: &str) -> f64 {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter(|((n, _), _)| *n == bucket)
        .map(|((_, l), v)| {
            let le = l.get("le").unwrap_or_else(|| panic!("{bucket} without le"));
            (if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") }, *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 10, "{name} has sub-ms to minutes buckets: {buckets:?}");
    assert!(buckets[0].0 <= 0.001 && buckets[buckets.len() - 2].0 >= 60.0, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
    let count = value(s, &format!("{name}_count"), &[]).expect("count");
    assert_eq!(buckets.last().map(|b| (b.0, b.1)), Some((f64::INFINITY, count)));
    count
}

const CONNECTED: &str = "schedulezero_handlers_connected";
const FINISHED: &str = "schedulezero_runs_finished_total";

#[test]
fn metrics_count_real_runs_and_follow_a_handler_that_comes_and_is_killed() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut server, addr) = serve(root.path(), &[], &[]);

    let s = scrape(&addr);
    assert_eq!(value(&s, FINISHED, &[("state", "succeeded")]), Some(0.0), "registered at start");
    assert_eq!(value(&s, CONNECTED, &[("handler", "legacy")]), None, "no such handler yet");
    assert_eq!(value(&s, "schedulezero_runs_in_flight", &[]), Some(0.0));

    let zmq = runtime(root.path())["zmq"].as_str().expect("zmq in the runtime file").to_string();
    let mut handler = v1_handler(&zmq, "legacy", &root.path().join("calls.log"));
    handler.wait_line("registered ", Duration::from_secs(30));
    scrape_until(&addr, Duration::from_secs(10), "the handler counts as connected", |s| {
        value(s, CONNECTED, &[("handler", "legacy")]) == Some(1.0)
    });

    // A call now: an attempt and a run end, its dispatch is timed; it is not a scheduled fire.
    let (status, _, reply) =
        http(&addr, "POST", "/api/run_now", Some(r#"{"handler_id":"legacy","job_method":"echo"}"#));
    assert_eq!(status, 200, "{reply}");
    let s = scrape_until(&addr, Duration::from_secs(10), "the run-now run is counted", |s| {
        value(s, FINISHED, &[("state", "succeeded")]) == Some(1.0)
    });
    assert_eq!(value(&s, "schedulezero_attempts_total", &[("outcome", "succeeded")]), Some(1.0));
    assert!(assert_histogram(&s, "schedulezero_dispatch_latency_seconds") >= 1.0);
    assert_eq!(assert_histogram(&s, "schedulezero_fire_lateness_seconds"), 0.0, "run now is no fire");
    assert_eq!(value(&s, "schedulezero_fires_total", &[("outcome", "run")]), Some(0.0));

    // A failing call: counted as failed, not succeeded.
    let fail = r#"{"handler_id":"legacy","job_method":"fail"}"#;
    assert_eq!(http(&addr, "POST", "/api/run_now", Some(fail)).0, 502);
    scrape_until(&addr, Duration::from_secs(10), "the failed run is counted", |s| {
        value(s, FINISHED, &[("state", "failed")]) == Some(1.0)
            && value(s, "schedulezero_attempts_total", &[("outcome", "failed")]) == Some(1.0)
    });

    // Scheduled fires: claimed, late by some amount, finished.
    let job = r#"{"handler_id":"legacy","job_method":"echo","trigger":{"type":"interval","seconds":1},"job_id":"tick"}"#;
    assert_eq!(http(&addr, "POST", "/api/schedule", Some(job)).0, 201);
    let s = scrape_until(&addr, Duration::from_secs(20), "two scheduled runs finish", |s| {
        value(s, FINISHED, &[("state", "succeeded")]).is_some_and(|n| n >= 3.0)
    });
    assert!(value(&s, "schedulezero_fires_total", &[("outcome", "run")]).is_some_and(|n| n >= 2.0), "{s:#?}");
    assert!(assert_histogram(&s, "schedulezero_fire_lateness_seconds") >= 2.0);
    assert!(assert_histogram(&s, "schedulezero_dispatch_latency_seconds") >= 3.0);
    let lateness_sum = value(&s, "schedulezero_fire_lateness_seconds_sum", &[]).expect("sum");
    assert!((0.0..60.0).contains(&lateness_sum), "lateness is seconds, not ms: {lateness_sum}");

    // Killed (no goodbye): the server's pings find it gone.
    assert_eq!(http(&addr, "DELETE", "/api/schedules/tick", None).0, 200);
    std::thread::sleep(Duration::from_millis(1500)); // a fire in flight ends
    handler.child.kill().expect("handler killed");
    let _ = handler.child.wait();
    let s = scrape_until(&addr, Duration::from_secs(45), "the killed handler is no longer connected", |s| {
        value(s, CONNECTED, &[("handler", "legacy")]) == Some(0.0)
    });
    assert_eq!(value(&s, "schedulezero_runs_in_flight", &[]), Some(0.0));

    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);
}

fn finished_run(finished_ago: TimeDelta) -> Run {
    let now = Utc::now();
    let at = now - finished_ago;
    Run {
        id: RunId::now_v7(),
        schedule_id: None,
        scheduled_for: at,
        dispatch_at: None,
        state: RunState::Succeeded,
        attempt: 1,
        max_attempts: 1,
        target: Target { handler_id: "gone".into(), method: "echo".into(), params: json!({}) },
        created_at: at,
        started_at: Some(at),
        finished_at: Some(at),
        result: Some(json!(null)),
        error: None,
        slot_count: 1,
    }
}

/// The `runs` field of JSON log lines saying history was purged, in order.
fn purges(server: &mut Proc) -> Vec<u64> {
    server
        .drain()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "purged run history past retention")
        .map(|v| v["fields"]["runs"].as_u64().expect("runs is a count"))
        .collect()
}

/// A deployment whose store holds `runs`; returns the root and the database path.
fn deployment_with(rt: &tokio::runtime::Runtime, runs: &[&Run]) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    let db = root.path().join("deployments/default/schedulezero.db");
    std::fs::create_dir_all(db.parent().expect("parent")).expect("deployment dir");
    rt.block_on(async {
        let store = SqliteStore::open_path(&db).await.expect("store opens");
        for r in runs {
            store.insert_run(r).await.expect("run inserted");
        }
        store.close().await;
    });
    (root, db)
}

/// Which of `runs` the store still holds.
fn kept(rt: &tokio::runtime::Runtime, db: &Path, runs: &[&Run]) -> Vec<bool> {
    rt.block_on(async {
        let store = SqliteStore::open_path(db).await.expect("store opens");
        let mut kept = Vec::new();
        for r in runs {
            kept.push(store.get_run(r.id).await.expect("store reads").is_some());
        }
        store.close().await;
        kept
    })
}

/// Waits until `n` purges were logged; returns their counts.
fn wait_purges(server: &mut Proc, n: usize, within: Duration) -> Vec<u64> {
    let deadline = Instant::now() + within;
    loop {
        let seen = purges(server);
        if seen.len() >= n {
            return seen;
        }
        assert!(Instant::now() < deadline, "{n} purge(s) logged within {within:?}: {:?}", server.drain());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn history_past_retention_is_purged_at_start() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let old = finished_run(TimeDelta::days(2));
    let recent = finished_run(TimeDelta::minutes(5));
    // Never finished: kept whatever its age.
    let active =
        Run { state: RunState::Pending, finished_at: None, attempt: 0, ..finished_run(TimeDelta::days(3)) };
    let (root, db) = deployment_with(&rt, &[&old, &recent, &active]);

    // The next pass is an hour away: only the one at start can purge.
    let (mut server, _) = serve(root.path(), &["--history-retention", "1h", "--log-format", "json"], &[]);
    assert_eq!(wait_purges(&mut server, 1, Duration::from_secs(30)), [1]);
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);
    assert_eq!(kept(&rt, &db, &[&old, &recent, &active]), [false, true, true]);
}

#[test]
fn history_is_purged_again_at_each_interval() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Inside the retention at start, past it some seconds later.
    let edge = finished_run(TimeDelta::hours(1) - TimeDelta::seconds(10));
    let recent = finished_run(TimeDelta::minutes(5));
    let (root, db) = deployment_with(&rt, &[&edge, &recent]);

    let (mut server, _) = serve(
        root.path(),
        &["--log-format", "json"],
        &[("SCHEDULEZERO_HISTORY_RETENTION", "1h"), ("SCHEDULEZERO_HISTORY_PURGE_EVERY", "1s")],
    );
    assert_eq!(
        wait_purges(&mut server, 1, Duration::from_secs(60)),
        [1],
        "the edge run, once past retention"
    );
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);
    assert_eq!(kept(&rt, &db, &[&edge, &recent]), [false, true]);
}

#[test]
fn history_retention_off_keeps_everything() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ancient = finished_run(TimeDelta::days(400));
    let (root, db) = deployment_with(&rt, &[&ancient]);
    support::configure(root.path(), "[server]\nhistory_retention = \"off\"\n");
    let (mut server, _) = serve(root.path(), &["--log-format", "json"], &[]);
    server.wait_line("kept forever", Duration::from_secs(30));
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);
    assert!(purges(&mut server).is_empty());
    assert_eq!(kept(&rt, &db, &[&ancient]), [true]);
}
