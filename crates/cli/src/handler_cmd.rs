//! `schedulezero handler list|show`: the handlers a running server knows, through its HTTP API
//! (docs/API.md, "Handlers"); `schedulezero handler exec|http`: run a built-in handler
//! (schedulezero_builtin, docs/BUILTIN_HANDLERS.md).

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::table::{self, Table};
use crate::client::{self, Client, Failure, ServerArgs};

#[derive(Subcommand)]
pub enum HandlerCommand {
    /// List handlers: one line per handler id, with its connected and known instances.
    #[command(after_long_help = crate::client::EXIT_CODES)]
    List(ListArgs),
    /// A handler with each of its instances.
    #[command(after_long_help = crate::client::EXIT_CODES)]
    Show(ShowArgs),
    /// Run the built-in exec handler: methods that run commands, from a TOML file (until SIGTERM).
    Exec(BuiltinArgs),
    /// Run the built-in HTTP handler: methods that call URLs, from a TOML file (until SIGTERM).
    Http(BuiltinArgs),
}

#[derive(Args)]
pub struct BuiltinArgs {
    /// The handler's config file (TOML; docs/BUILTIN_HANDLERS.md, docs/examples/).
    #[arg(long, value_name = "FILE")]
    config: std::path::PathBuf,
    /// The server's handler endpoint (default: $SCHEDULEZERO_SERVER_ENDPOINT, else
    /// tcp://127.0.0.1:4242).
    #[arg(long, value_name = "ENDPOINT")]
    server: Option<String>,
    /// This instance's id, stable across restarts (default: $SCHEDULEZERO_INSTANCE_ID, else
    /// <hostname>-<pid>).
    #[arg(long, value_name = "ID")]
    instance_id: Option<String>,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The handler's id.
    handler_id: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(cmd: HandlerCommand) -> Result<(), Failure> {
    match cmd {
        HandlerCommand::List(args) => list(args),
        HandlerCommand::Show(args) => show(args),
        HandlerCommand::Exec(args) => run_builtin(schedulezero_builtin::Kind::Exec, args),
        HandlerCommand::Http(args) => run_builtin(schedulezero_builtin::Kind::Http, args),
    }
}

/// Serves until SIGTERM or Ctrl-C, then drains (calls in flight finish) and returns. A config
/// file that is refused stops it before it connects (exit 2).
fn run_builtin(kind: schedulezero_builtin::Kind, args: BuiltinArgs) -> Result<(), Failure> {
    init_logging()?;
    let handler = schedulezero_builtin::build(kind, &args.config, args.instance_id)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let endpoint = schedulezero_handler::server_endpoint(args.server.as_deref());
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return Err(Failure::usage(format!(
            "'{endpoint}' is an HTTP URL; a handler connects to the server's handler endpoint, \
             e.g. tcp://127.0.0.1:4242 (key `zmq` of <root>/deployments/<name>/run/server.json)"
        )));
    }
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(handler.run(&endpoint)).map_err(|e| Failure::Other(e.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}

fn list(args: ListArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let answer = client.get(&["api", "handlers"], &[])?;
    if client.json {
        return client::print_json(&answer);
    }
    let handlers = answer["handlers"].as_array().cloned().unwrap_or_default();
    if handlers.is_empty() {
        return client::print("no handlers have registered with this server yet");
    }
    let mut t = Table::new(&["ID", "STATUS", "INSTANCES", "METHODS", "ADDRESS"]);
    for h in &handlers {
        let instances = h["instances"].as_array().cloned().unwrap_or_default();
        let connected = instances.iter().filter(|i| is_connected(i)).count();
        t.row(vec![
            table::text(h, "id"),
            table::text(h, "status"),
            format!("{connected}/{} connected", instances.len()),
            methods(&h["methods"]),
            table::text(h, "address"),
        ]);
    }
    client::print(&t.render())
}

fn show(args: ShowArgs) -> Result<(), Failure> {
    let client = Client::new(&args.server)?;
    let h = client.get(&["api", "handlers", &args.handler_id], &[])?;
    if client.json {
        return client::print_json(&h);
    }
    let pairs = vec![
        ("id", h["id"].as_str().unwrap_or(&args.handler_id).to_string()),
        ("status", table::text(&h, "status")),
        ("connected", table::cell(&h["connected"])),
        ("methods", h["methods"].as_array().map_or("-".into(), |m| join(m))),
    ];
    client::print(&table::fields(&pairs))?;
    let instances = h["instances"].as_array().cloned().unwrap_or_default();
    if instances.is_empty() {
        return client::print("\nno instances");
    }
    let mut t = Table::new(&[
        "INSTANCE",
        "PROTOCOL",
        "STATE",
        "ADDRESS",
        "CAPACITY",
        "IN FLIGHT",
        "OK",
        "FAILED",
        "LAST SEEN",
        "REGISTERED",
    ]);
    for i in &instances {
        let state = match (is_connected(i), i["draining"].as_bool().unwrap_or(false)) {
            (true, true) => "draining",
            (true, false) => "connected",
            (false, _) => "disconnected",
        };
        t.row(vec![
            table::text(i, "instance_id"),
            table::cell(&i["protocol"]),
            state.into(),
            table::text(i, "address"),
            table::cell(&i["capacity"]),
            table::cell(&i["in_flight"]),
            table::cell(i.get("successes").or(i.get("success_count")).unwrap_or(&Value::Null)),
            table::cell(i.get("failures").or(i.get("failure_count")).unwrap_or(&Value::Null)),
            table::when(&i["last_seen"]),
            table::when(&i["registered_at"]),
        ]);
    }
    client::print("\ninstances:")?;
    client::print(&t.render())
}

/// Logs to stdout at `$RUST_LOG` (default `info`), with the same `Targets` syntax as `serve`.
fn init_logging() -> Result<(), Failure> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level =
        std::env::var("RUST_LOG").ok().filter(|l| !l.trim().is_empty()).unwrap_or_else(|| "info".into());
    let filter: tracing_subscriber::filter::Targets = level.parse().map_err(|_| {
        Failure::usage(format!(
            "RUST_LOG '{level}': use e.g. info, debug, or info,schedulezero_builtin=debug"
        ))
    })?;
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout)
        .finish()
        .with(filter)
        .try_init();
    Ok(())
}

/// An instance is connected by the native key, or by the compat list's `status`.
fn is_connected(i: &Value) -> bool {
    i["connected"].as_bool().unwrap_or_else(|| matches!(i["status"].as_str(), Some("Connected" | "Draining")))
}

fn methods(v: &Value) -> String {
    v.as_array().map_or("-".into(), |m| table::truncate(&join(m), table::MAX_CELL))
}

fn join(list: &[Value]) -> String {
    let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    if names.is_empty() { "-".into() } else { names.join(", ") }
}
