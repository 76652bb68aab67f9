//! `schedulezero`: the one binary. This crate is glue: each command lives in its own module and
//! calls into the library crates.
//!
//! Module map:
//! - [`serve_cmd`]: `schedulezero serve` — the server.
//! - [`trigger_cmd`]: `schedulezero trigger next` — preview a trigger's fire times.

mod serve_cmd;
mod trigger_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "schedulezero", version, about = "A lightweight distributed job scheduler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: HTTP API, handler port, scheduler (until SIGTERM or Ctrl-C).
    Serve(serve_cmd::ServeArgs),
    /// Work with triggers without a server.
    Trigger {
        #[command(subcommand)]
        command: trigger_cmd::TriggerCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve_cmd::run(args),
        Command::Trigger { command } => trigger_cmd::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
