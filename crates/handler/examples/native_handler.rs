//! A runnable native handler, used by other tests and benchmarks.
//!
//! ```text
//! cargo run -p schedulezero-handler --example native_handler -- \
//!     [--server ENDPOINT] [--handler-id ID] [--instance-id ID] [--capacity N]
//! ```
//!
//! `--server` defaults to `$SCHEDULEZERO_SERVER_ENDPOINT`, else `tcp://127.0.0.1:4242`; `--handler-id` to
//! `demo`; `--instance-id` to the SDK's default (`$SCHEDULEZERO_INSTANCE_ID`, else
//! `<hostname>-<pid>`); `--capacity` to 4.
//!
//! Methods: `echo` (returns its params), `sleep` (`{"ms": N}`: sleeps, or fails with `cancelled`
//! when cancelled), `fail` (fails with `params.message`, or `failed on purpose`) and `count`
//! (returns what the call's context says: run id, attempt, fire slot, milliseconds left).
//!
//! Stdout carries exactly `registered <instance_id>` each time the link becomes registered, and
//! `drained` once it has drained at exit (SIGTERM/SIGINT). Logs go to stderr (`RUST_LOG`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use schedulezero_handler::{CallContext, Handler, LinkState, MethodError};
use serde_json::{Value, json};

const USAGE: &str =
    "usage: native_handler [--server ENDPOINT] [--handler-id ID] [--instance-id ID] [--capacity N]";

/// What the command line asks for.
struct Options {
    server: String,
    handler_id: String,
    instance_id: Option<String>,
    capacity: u32,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        server: schedulezero_handler::default_server_endpoint(),
        handler_id: "demo".into(),
        instance_id: None,
        capacity: 4,
    };
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--server" => options.server = value,
            "--handler-id" => options.handler_id = value,
            "--instance-id" => options.instance_id = Some(value),
            "--capacity" => {
                options.capacity =
                    value.parse().map_err(|_| format!("--capacity must be a whole number, got '{value}'"))?
            }
            _ => return Err(format!("unknown flag '{flag}'\n{USAGE}")),
        }
    }
    Ok(options)
}

async fn echo(_: CallContext, params: Value) -> Result<Value, MethodError> {
    Ok(params)
}

async fn sleep(ctx: CallContext, params: Value) -> Result<Value, MethodError> {
    let ms = params.get("ms").and_then(Value::as_u64).ok_or("params must be {\"ms\": N}")?;
    tokio::select! {
        _ = ctx.cancelled() => Err("cancelled".into()),
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(json!({"slept_ms": ms})),
    }
}

async fn fail(_: CallContext, params: Value) -> Result<Value, MethodError> {
    let message = params.get("message").and_then(Value::as_str).unwrap_or("failed on purpose");
    Err(message.into())
}

async fn count(ctx: CallContext, _: Value) -> Result<Value, MethodError> {
    Ok(json!({
        "run_id": ctx.run_id(),
        "attempt": ctx.attempt(),
        "scheduled_for": ctx.scheduled_for(),
        "deadline_ms_left": ctx.time_left().as_millis() as u64,
    }))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Handler::builder(options.handler_id).capacity(options.capacity);
    if let Some(id) = options.instance_id {
        builder = builder.instance_id(id);
    }
    let handler = match builder
        .method("echo", echo)
        .method("sleep", sleep)
        .method("fail", fail)
        .method("count", count)
        .build()
    {
        Ok(handler) => handler,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let instance_id = handler.instance_id().to_string();
    let mut status = handler.status();
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            if *status.borrow_and_update() == LinkState::Registered {
                say(&format!("registered {instance_id}"));
            }
        }
    });
    match handler.run(&options.server).await {
        Ok(()) => {
            say("drained");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
