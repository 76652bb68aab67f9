//! `schedulezero schedule add|list|show|pause|resume|rm|run`: schedules on a running server,
//! through its HTTP API (docs/API.md, "Schedules").

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::table::{self, Table};
use crate::client::{self, Client, Failure, ServerArgs, parse};

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule: a trigger (exactly one of --cron, --every, --at, --trigger) and a target.
    ///
    /// Examples:
    ///   schedulezero schedule add nightly --handler reports --method build --cron '0 2 * * *' --tz Europe/Paris
    ///   schedulezero schedule add poll --handler feeds --method poll --every 5m --overlap skip
    ///   schedulezero schedule add once --handler mail --method send --at '2026-12-24 18:00' --params '{"to":"all"}'
    #[command(verbatim_doc_comment)]
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Add(Box<AddArgs>),
    /// List schedules (active and paused; --all adds finished ones), following pages up to --limit.
    #[command(after_long_help = crate::client::EXIT_CODES)]
    List(ListArgs),
    /// A schedule with its policies and its 10 most recent runs (--json: the schedule, plus
    /// `recent_runs`).
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Show(RefArgs),
    /// Stop firing a schedule until it is resumed.
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Pause(RefArgs),
    /// Fire a paused schedule again (from its next slot; missed slots follow its misfire policy).
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Resume(RefArgs),
    /// Delete a schedule (its run history stays). No prompt: scripts use it.
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Rm(RefArgs),
    /// Start a run of the schedule now, with its policies (retries included); prints the run.
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Run(RefArgs),
}

#[derive(Args)]
pub struct AddArgs {
    /// The schedule's name (unique among schedules that are not finished).
    name: String,
    /// The handler that runs it.
    #[arg(long, value_name = "HANDLER_ID")]
    handler: String,
    /// The handler's method to call.
    #[arg(long)]
    method: String,
    /// The method's parameters, a JSON object.
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    #[command(flatten)]
    trigger: TriggerArgs,
    /// The IANA zone of the trigger and of a naive --at (default: the server's zone; for --at
    /// without an offset, this machine's).
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// Attempts in all, retries included (1 = never retry; default 3).
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// How long one attempt may run, in seconds (default 300).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Slots missed while nothing could fire them: coalesce, run_all[:MAX] or skip[:GRACE_SECONDS].
    #[arg(long, value_name = "POLICY")]
    misfire: Option<String>,
    /// A slot fires while a run is still active: allow, skip, queue_one or replace.
    #[arg(long, value_parser = ["allow", "skip", "queue_one", "replace"])]
    overlap: Option<String>,
    /// Delay each fire by a random amount up to this many seconds (the slot stays the same).
    #[arg(long, value_name = "SECONDS")]
    jitter: Option<f64>,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct TriggerArgs {
    /// A crontab expression: 5 fields (minute first) or 6 (seconds first), e.g. '*/15 * * * *'.
    #[arg(long, value_name = "EXPR")]
    cron: Option<String>,
    /// A period of real time: 90s, 5m, 1h30m, 2d (fires now, then every period).
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,
    /// Once, at this time: RFC 3339, or '2026-12-24 18:00' in --tz or this machine's zone.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// A trigger JSON object as in the HTTP API, e.g. '{"type":"cron","hour":"2","minute":"0"}'.
    #[arg(long, value_name = "JSON")]
    trigger: Option<String>,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only schedules in this state: active, paused or finished.
    #[arg(long, value_parser = ["active", "paused", "finished"])]
    state: Option<String>,
    /// Only schedules of this handler.
    #[arg(long, value_name = "HANDLER_ID")]
    handler: Option<String>,
    /// Only schedules whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// Include finished schedules (a date trigger that fired, an exhausted cron).
    #[arg(long)]
    all: bool,
    /// At most this many schedules.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
pub struct RefArgs {
    /// The schedule's name or schedule_id.
    #[arg(value_name = "NAME_OR_ID")]
    reference: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(cmd: ScheduleCommand) -> Result<(), Failure> {
    match cmd {
        ScheduleCommand::Add(args) => add(*args),
        ScheduleCommand::List(args) => list(args),
        ScheduleCommand::Show(args) => show(args),
        ScheduleCommand::Pause(args) => change(args, "pause", "paused"),
        ScheduleCommand::Resume(args) => change(args, "resume", "resumed"),
        ScheduleCommand::Rm(args) => remove(args),
        ScheduleCommand::Run(args) => run_now(args),
    }
}

fn add(args: AddArgs) -> Result<(), Failure> {
    // Everything the command line can get wrong is checked before the server is looked for.
    let body = add_body(&args)?;
    let client = Client::new(&args.server)?;
    let created = client.post(&["api", "schedules"], Some(&body))?;
    if client.json {
        return client::print_json(&created);
    }
    // A target no handler offers yet is accepted (handlers may come later), with a warning.
    for w in created["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        eprintln!("warning: {w}");
    }
    client::print(&format!(
        "added '{}' ({}), {}; next fire {}",
        str_of(&created, "name"),
        str_of(&created, "schedule_id"),
        str_of(&created, "state"),
        table::when_full(&created["next_fire_time"]),
    ))
}

/// The `POST /api/schedules` body the flags describe.
fn add_body(args: &AddArgs) -> Result<Value, Failure> {
    let zone = match &args.tz {
        Some(name) => Some(name.parse::<chrono_tz::Tz>().map_err(|_| {
            Failure::usage(format!(
                "--tz: '{name}' is not an IANA time zone name (for example 'Europe/Paris')"
            ))
        })?),
        None => None,
    };
    let t = &args.trigger;
    let mut trigger: Map<String, Value> = if let Some(expr) = &t.cron {
        let fields = expr.split_whitespace().count();
        if !(expr.trim().starts_with('@') || (5..=7).contains(&fields)) {
            return Err(Failure::usage(format!(
                "--cron: '{expr}' has {fields} fields; give 5 (minute hour day month weekday) or 6 (seconds first)"
            )));
        }
        json!({"type": "cron", "expression": expr.trim()}).as_object().cloned().unwrap_or_default()
    } else if let Some(every) = &t.every {
        parse::interval_trigger(every)?
    } else if let Some(at) = &t.at {
        let zone = zone.unwrap_or_else(schedulezero_engine::config::system_zone);
        let run_date = parse::time("--at", at, zone)?;
        json!({"type": "date", "run_date": run_date}).as_object().cloned().unwrap_or_default()
    } else if let Some(text) = &t.trigger {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) => {
                return Err(Failure::usage(format!(
                    "--trigger: '{text}' is not a JSON object; write e.g. '{{\"type\":\"interval\",\"minutes\":5}}' \
                     (or use --cron, --every, --at)"
                )));
            }
        }
    } else {
        return Err(Failure::usage("give one of --cron, --every, --at or --trigger"));
    };
    if let Some(jitter) = args.jitter {
        if !(jitter >= 0.0 && jitter.is_finite()) {
            return Err(Failure::usage(format!("--jitter: {jitter} is not a number of seconds >= 0")));
        }
        trigger.insert("jitter".into(), json!(jitter));
    }

    let mut target = json!({"handler_id": args.handler, "method": args.method});
    if let Some(params) = &args.params {
        target["params"] = parse::json_object("--params", params)?;
    }
    let mut body = json!({"name": args.name, "trigger": trigger, "target": target});
    if let Some(tz) = &args.tz {
        body["timezone"] = json!(tz);
    }
    let policies = policies(args)?;
    if !policies.is_empty() {
        body["policies"] = Value::Object(policies);
    }
    if args.paused {
        body["paused"] = json!(true);
    }
    Ok(body)
}

fn policies(args: &AddArgs) -> Result<Map<String, Value>, Failure> {
    let mut p = Map::new();
    if let Some(n) = args.max_attempts {
        if n == 0 {
            return Err(Failure::usage("--max-attempts: must be at least 1 (1 = never retry)"));
        }
        p.insert("retry".into(), json!({"max_attempts": n}));
    }
    if let Some(timeout) = args.timeout {
        if !(timeout > 0.0 && timeout.is_finite()) {
            return Err(Failure::usage(format!("--timeout: {timeout} is not a number of seconds > 0")));
        }
        p.insert("timeout".into(), json!(timeout));
    }
    if let Some(text) = &args.misfire {
        p.insert("misfire".into(), misfire(text)?);
    }
    if let Some(overlap) = &args.overlap {
        p.insert("overlap".into(), json!(overlap));
    }
    Ok(p)
}

/// `coalesce`, `run_all[:MAX]`, `skip[:GRACE]` → the misfire policy object.
fn misfire(text: &str) -> Result<Value, Failure> {
    let bad = || {
        Failure::usage(format!(
            "--misfire: '{text}' is not coalesce, run_all[:MAX] or skip[:GRACE_SECONDS] (e.g. skip:30)"
        ))
    };
    let (policy, arg) = match text.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (text, None),
    };
    match (policy, arg) {
        ("coalesce", None) => Ok(json!({"policy": "coalesce"})),
        ("run_all", None) => Ok(json!({"policy": "run_all"})),
        ("run_all", Some(n)) => Ok(json!({"policy": "run_all", "max": n.parse::<u32>().map_err(|_| bad())?})),
        ("skip", None) => Ok(json!({"policy": "skip"})),
        ("skip", Some(g)) => {
            let grace: f64 = g.parse().ok().filter(|g: &f64| *g >= 0.0 && g.is_finite()).ok_or_else(bad)?;
            Ok(json!({"policy": "skip", "grace": grace}))
        }
        _ => Err(bad()),
    }
}

fn list(args: ListArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(s) = args.state {
        query.push(("state", s));
    }
    if let Some(h) = args.handler {
        query.push(("handler_id", h));
    }
    if let Some(q) = args.search {
        query.push(("q", q));
    }
    if args.all {
        query.push(("include_finished", "true".into()));
    }
    let page =
        client::paged(&client, &["api", "schedules"], "schedules", "after", &query, args.limit as usize)?;
    if client.json {
        return client::print_json(&page);
    }
    let mut t = Table::new(&["NAME", "STATE", "NEXT FIRE", "TRIGGER", "TARGET", "SCHEDULE_ID"]);
    for s in page["schedules"].as_array().into_iter().flatten() {
        t.row(vec![
            table::text(s, "name"),
            table::text(s, "state"),
            table::when(&s["next_fire_time"]),
            table::text(s, "trigger"),
            target_of(s),
            str_of(s, "schedule_id"),
        ]);
    }
    if t.is_empty() {
        return client::print("no schedules (add one with `schedulezero schedule add`)");
    }
    client::print(&t.render())?;
    if page["next_cursor"].is_string() {
        client::print(&format!("(first {}; pass --limit to see more)", args.limit))?;
    }
    Ok(())
}

fn show(args: RefArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let mut schedule = client.get(&["api", "schedules", &args.reference], &[])?;
    let id = schedule["schedule_id"].as_str().unwrap_or(&args.reference).to_string();
    let runs = client.get(&["api", "runs"], &[("schedule", id), ("limit", "10".into())])?;
    let runs = runs.get("runs").cloned().unwrap_or_else(|| json!([]));
    if client.json {
        schedule["recent_runs"] = runs;
        return client::print_json(&schedule);
    }
    let s = &schedule;
    let p = &s["policies"];
    let pairs = vec![
        ("name", str_of(s, "name")),
        ("schedule_id", str_of(s, "schedule_id")),
        ("state", str_of(s, "state")),
        ("trigger", str_of(s, "trigger")),
        ("trigger spec", s.get("trigger_spec").map_or("-".into(), |t| table::truncate(&t.to_string(), 200))),
        ("timezone", str_of(s, "timezone")),
        ("target", target_full(s)),
        ("next fire", table::when_full(&s["next_fire_time"])),
        ("misfire", misfire_text(&p["misfire"])),
        ("overlap", table::cell(&p["overlap"])),
        ("retry", retry_text(&p["retry"])),
        ("timeout", p["timeout"].as_f64().map_or("-".into(), table::seconds_short)),
        ("created", table::when_full(&s["created_at"])),
        ("updated", table::when_full(&s["updated_at"])),
    ];
    client::print(&table::fields(&pairs))?;
    client::print("")?;
    let runs = runs.as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        return client::print("no runs yet");
    }
    client::print("recent runs:")?;
    client::print(&crate::run_cmd::runs_table(&runs, false).render())
}

fn change(args: RefArgs, action: &str, done: &str) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let s = client.post(&["api", "schedules", &args.reference, action], None)?;
    if client.json {
        return client::print_json(&s);
    }
    client::print(&format!(
        "{done} '{}' ({}): now {}; next fire {}",
        str_of(&s, "name"),
        str_of(&s, "schedule_id"),
        str_of(&s, "state"),
        table::when_full(&s["next_fire_time"])
    ))
}

fn remove(args: RefArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let answer = client.delete(&["api", "schedules", &args.reference])?;
    if client.json {
        return client::print_json(&answer);
    }
    client::print(&format!("removed '{}'", args.reference))
}

fn run_now(args: RefArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let r = client.post(&["api", "schedules", &args.reference, "run"], None)?;
    if client.json {
        return client::print_json(&r);
    }
    client::print(&format!(
        "started run {} of '{}' ({}); follow it with `schedulezero run show {}`",
        str_of(&r, "run_id"),
        args.reference,
        str_of(&r, "state"),
        str_of(&r, "run_id"),
    ))
}

/// A string field, uncut (ids, names), or `-`.
fn str_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// `handler.method`, from the native `target` or the compat keys.
pub fn target_of(s: &Value) -> String {
    let handler = s.pointer("/target/handler_id").or_else(|| s.get("handler_id"));
    let method = s.pointer("/target/method").or_else(|| s.get("job_method"));
    match (handler.and_then(Value::as_str), method.and_then(Value::as_str)) {
        (Some(h), Some(m)) => table::truncate(&format!("{h}.{m}"), table::MAX_CELL),
        _ => "-".into(),
    }
}

fn target_full(s: &Value) -> String {
    let params = s.pointer("/target/params").filter(|p| p.as_object().is_some_and(|m| !m.is_empty()));
    match params {
        Some(p) => format!("{}  {}", target_of(s), table::truncate(&p.to_string(), 200)),
        None => target_of(s),
    }
}

fn misfire_text(m: &Value) -> String {
    let policy = m["policy"].as_str().unwrap_or("-");
    match (policy, m.get("grace").and_then(Value::as_f64), m.get("max").and_then(Value::as_u64)) {
        ("skip", Some(g), _) => format!("skip (grace {})", table::seconds_short(g)),
        ("run_all", _, Some(n)) => format!("run_all (at most {n})"),
        _ => policy.to_string(),
    }
}

fn retry_text(r: &Value) -> String {
    let Some(n) = r["max_attempts"].as_u64() else { return "-".into() };
    if n <= 1 {
        return "1 attempt (no retry)".into();
    }
    let num = |k: &str| r[k].as_f64();
    match (num("initial_backoff"), num("max_backoff"), num("multiplier")) {
        (Some(a), Some(b), Some(m)) => format!(
            "{n} attempts, backoff {} to {} x{m}{}",
            table::seconds_short(a),
            table::seconds_short(b),
            num("jitter").map_or(String::new(), |j| format!(", jitter {j}"))
        ),
        _ => format!("{n} attempts"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ScheduleCommand,
    }

    fn body(args: &[&str]) -> Result<Value, Failure> {
        let cli = Cli::try_parse_from(
            ["schedule", "add", "job", "--handler", "h", "--method", "m"].iter().chain(args),
        )
        .map_err(|e| Failure::usage(e.to_string()))?;
        match cli.cmd {
            ScheduleCommand::Add(a) => add_body(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_become_the_native_body() {
        let b = body(&[
            "--cron",
            "0 2 * * *",
            "--tz",
            "Europe/Paris",
            "--params",
            r#"{"f":"pdf"}"#,
            "--max-attempts",
            "5",
            "--timeout",
            "30",
            "--misfire",
            "skip:45",
            "--overlap",
            "queue_one",
            "--jitter",
            "10",
            "--paused",
        ])
        .unwrap();
        assert_eq!(
            b,
            json!({
                "name": "job",
                "trigger": {"type": "cron", "expression": "0 2 * * *", "jitter": 10.0},
                "timezone": "Europe/Paris",
                "target": {"handler_id": "h", "method": "m", "params": {"f": "pdf"}},
                "policies": {"retry": {"max_attempts": 5}, "timeout": 30.0,
                             "misfire": {"policy": "skip", "grace": 45.0}, "overlap": "queue_one"},
                "paused": true,
            })
        );
    }

    #[test]
    fn at_without_offset_is_read_in_the_given_zone() {
        let b = body(&["--at", "2026-12-24 18:00", "--tz", "America/New_York"]).unwrap();
        assert_eq!(b["trigger"], json!({"type": "date", "run_date": "2026-12-24T18:00:00-05:00"}));
    }

    #[test]
    fn exactly_one_trigger_is_required() {
        assert!(body(&[]).is_err());
        assert!(body(&["--cron", "* * * * *", "--every", "5m"]).is_err());
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_flag() {
        for (args, flag) in [
            (vec!["--every", "5m", "--params", "{nope"], "--params"),
            (vec!["--every", "5m", "--misfire", "later"], "--misfire"),
            (vec!["--cron", "* * *"], "--cron"),
            (vec!["--trigger", "[1]"], "--trigger"),
            (vec!["--every", "5m", "--tz", "Mars/Olympus"], "--tz"),
            (vec!["--every", "5m", "--max-attempts", "0"], "--max-attempts"),
        ] {
            let err = body(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().starts_with(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn misfire_spellings() {
        assert_eq!(misfire("coalesce").unwrap(), json!({"policy": "coalesce"}));
        assert_eq!(misfire("run_all:10").unwrap(), json!({"policy": "run_all", "max": 10}));
        assert_eq!(misfire("skip").unwrap(), json!({"policy": "skip"}));
        assert!(misfire("skip:-1").is_err());
    }
}
