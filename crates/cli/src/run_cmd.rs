//! `schedulezero run list|show|cancel`: the run history and runs in flight on a running server,
//! through its HTTP API (docs/API.md, "Runs").

use clap::{Args, Subcommand};
use schedulezero_core::clock::{Clock, SystemClock};
use serde_json::Value;

use crate::client::table::{self, Table};
use crate::client::{self, Client, Failure, ServerArgs, parse};

/// The run states the server knows (docs/SCHEDULING.md), to refuse a typo before asking.
const STATES: [&str; 10] = [
    "pending",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "skipped",
    "missed",
    "interrupted",
];

#[derive(Subcommand)]
pub enum RunCommand {
    /// List runs, newest slot first.
    ///
    /// Examples:
    ///   schedulezero run list --schedule nightly --limit 5
    ///   schedulezero run list --state failed,timed_out --since 1d
    #[command(verbatim_doc_comment)]
    #[command(after_long_help = crate::client::EXIT_CODES)]
    List(ListArgs),
    /// A run with its attempts.
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Show(RunRef),
    /// Cancel a run that has not finished (a running attempt is cancelled at its handler).
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Cancel(RunRef),
}

#[derive(Args)]
pub struct ListArgs {
    /// Only runs of this schedule (name or schedule_id).
    #[arg(long, value_name = "NAME_OR_ID")]
    schedule: Option<String>,
    /// Only runs for this handler.
    #[arg(long, value_name = "HANDLER_ID")]
    handler: Option<String>,
    /// Only runs in these states, comma-separated: pending, running, retrying, succeeded, failed,
    /// timed_out, cancelled, skipped, missed, interrupted.
    #[arg(long, value_name = "STATE[,STATE]")]
    state: Option<String>,
    /// Only runs whose slot is at or after this time: RFC 3339, a local time ('2026-12-01 09:00'),
    /// or a duration ago (30m, 1h, 2d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only runs whose slot is before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
pub struct RunRef {
    /// The run's id (run_id, a UUID).
    run_id: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(cmd: RunCommand) -> Result<(), Failure> {
    match cmd {
        RunCommand::List(args) => list(args),
        RunCommand::Show(args) => show(args),
        RunCommand::Cancel(args) => cancel(args),
    }
}

fn list(args: ListArgs) -> Result<(), Failure> {
    let query = list_query(&args)?;
    let client = Client::new(&args.server)?;
    let page = client::paged(&client, &["api", "runs"], "runs", "before", &query, args.limit as usize)?;
    if client.json {
        return client::print_json(&page);
    }
    let runs = page["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        return client::print("no runs");
    }
    client::print(&runs_table(&runs, true).render())?;
    if page["next_cursor"].is_string() {
        client::print(&format!("(newest {}; pass --limit to see more)", args.limit))?;
    }
    Ok(())
}

/// The query `--schedule`, `--state`, `--since` … describe; bad values are usage errors.
fn list_query(args: &ListArgs) -> Result<Vec<(&'static str, String)>, Failure> {
    let mut query = Vec::new();
    if let Some(s) = &args.schedule {
        query.push(("schedule", s.clone()));
    }
    if let Some(h) = &args.handler {
        query.push(("handler_id", h.clone()));
    }
    if let Some(states) = &args.state {
        let list: Vec<&str> = states.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if let Some(bad) = list.iter().find(|s| !STATES.contains(s)) {
            return Err(Failure::usage(format!(
                "--state: '{bad}' is not a run state; use {}",
                STATES.join(", ")
            )));
        }
        if list.is_empty() {
            return Err(Failure::usage(format!("--state: give one or more of {}", STATES.join(", "))));
        }
        query.push(("state", list.join(",")));
    }
    let zone = schedulezero_engine::config::system_zone();
    let now = SystemClock.now();
    if let Some(since) = &args.since {
        query.push(("from", parse::time_or_ago("--since", since, zone, now)?));
    }
    if let Some(until) = &args.until {
        query.push(("to", parse::time_or_ago("--until", until, zone, now)?));
    }
    Ok(query)
}

/// Runs as a table; `with_schedule` adds the schedule's name (`schedule show` leaves it out).
pub fn runs_table(runs: &[Value], with_schedule: bool) -> Table {
    let mut headers = vec!["RUN_ID"];
    if with_schedule {
        headers.push("SCHEDULE");
    }
    headers.extend(["TARGET", "STATE", "SCHEDULED", "ATTEMPT", "DURATION", "ERROR"]);
    let mut t = Table::new(&headers);
    for r in runs {
        let mut row = vec![r["run_id"].as_str().unwrap_or("-").to_string()];
        if with_schedule {
            row.push(table::text(r, "schedule_name"));
        }
        row.extend([
            crate::schedule_cmd::target_of(r),
            state_text(r),
            table::when(&r["scheduled_for"]),
            attempts_text(r),
            table::millis(&r["duration_ms"]),
            table::text(r, "error"),
        ]);
        t.row(row);
    }
    t
}

/// The state, with the number of slots a folded `missed` row stands for.
fn state_text(r: &Value) -> String {
    let state = r["state"].as_str().unwrap_or("-");
    match r["slot_count"].as_u64() {
        Some(n) if n > 1 => format!("{state} (x{n})"),
        _ => state.to_string(),
    }
}

fn attempts_text(r: &Value) -> String {
    match (r["attempt"].as_u64(), r["max_attempts"].as_u64()) {
        (Some(a), Some(m)) => format!("{a}/{m}"),
        (Some(a), None) => a.to_string(),
        _ => "-".into(),
    }
}

fn show(args: RunRef) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let r = client.get(&["api", "runs", &args.run_id], &[])?;
    if client.json {
        return client::print_json(&r);
    }
    let text = |k: &str| r[k].as_str().map_or_else(|| table::cell(&r[k]), str::to_string);
    let mut pairs = vec![
        ("run_id", text("run_id")),
        ("schedule", format!("{} ({})", text("schedule_name"), text("schedule_id"))),
        ("target", target_full(&r)),
        ("state", state_text(&r)),
        ("attempt", attempts_text(&r)),
        ("scheduled for", table::when_full(&r["scheduled_for"])),
    ];
    if !r["dispatch_at"].is_null() {
        pairs.push(("dispatch at", table::when_full(&r["dispatch_at"])));
    }
    pairs.extend([
        ("created", table::when_full(&r["created_at"])),
        ("started", table::when_full(&r["started_at"])),
        ("finished", table::when_full(&r["finished_at"])),
        ("duration", table::millis(&r["duration_ms"])),
        ("lateness", table::millis(&r["lateness_ms"])),
    ]);
    if !r["result"].is_null() {
        pairs.push(("result", table::truncate(&r["result"].to_string(), 400)));
    }
    if !r["error"].is_null() {
        pairs.push(("error", table::truncate(&text("error"), 400)));
    }
    client::print(&table::fields(&pairs))?;
    let attempts = r["attempts"].as_array().cloned().unwrap_or_default();
    if attempts.is_empty() {
        return client::print("\nno attempts yet");
    }
    let mut t = Table::new(&["#", "INSTANCE", "STARTED", "DURATION", "OUTCOME", "RESULT OR ERROR"]);
    for a in &attempts {
        let detail = if a["error"].is_null() { table::cell(&a["result"]) } else { table::text(a, "error") };
        t.row(vec![
            table::cell(&a["number"]),
            table::text(a, "instance"),
            table::when(&a["started_at"]),
            table::millis(&a["duration_ms"]),
            table::text(a, "outcome"),
            detail,
        ]);
    }
    client::print("\nattempts:")?;
    client::print(&t.render())
}

fn target_full(r: &Value) -> String {
    let target = crate::schedule_cmd::target_of(r);
    match r.pointer("/target/params").filter(|p| p.as_object().is_some_and(|m| !m.is_empty())) {
        Some(p) => format!("{target}  {}", table::truncate(&p.to_string(), 200)),
        None => target,
    }
}

fn cancel(args: RunRef) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let r = client.post(&["api", "runs", &args.run_id, "cancel"], None)?;
    if client.json {
        return client::print_json(&r);
    }
    client::print(&format!("cancelled run {}: now {}", args.run_id, state_text(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: RunCommand,
    }

    fn query(args: &[&str]) -> Result<Vec<(&'static str, String)>, Failure> {
        let cli = Cli::try_parse_from(["run", "list"].iter().chain(args))
            .map_err(|e| Failure::usage(e.to_string()))?;
        match cli.cmd {
            RunCommand::List(a) => list_query(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn filters_become_the_query() {
        let q = query(&[
            "--schedule",
            "nightly",
            "--handler",
            "h",
            "--state",
            "failed, timed_out",
            "--until",
            "2026-12-01T00:00:00Z",
        ])
        .unwrap();
        assert_eq!(q[0], ("schedule", "nightly".to_string()));
        assert_eq!(q[1], ("handler_id", "h".to_string()));
        assert_eq!(q[2], ("state", "failed,timed_out".to_string()));
        assert_eq!(q[3].0, "to");
        let to = chrono::DateTime::parse_from_rfc3339(&q[3].1).unwrap();
        assert_eq!(to.timestamp(), 1_796_083_200);
    }

    #[test]
    fn a_bad_state_or_time_is_a_usage_error() {
        let err = query(&["--state", "done"]).unwrap_err();
        assert!(err.to_string().contains("'done' is not a run state"), "{err}");
        assert_eq!(err.exit_code(), 2);
        assert_eq!(query(&["--since", "last week"]).unwrap_err().exit_code(), 2);
    }
}
