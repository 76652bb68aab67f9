//! `schedulezero`: the one binary. This crate is glue: each command lives in its own module and
//! calls into the library crates.
//!
//! Module map:
//! - [`trigger_cmd`]: `schedulezero trigger next` — preview a trigger's fire times.

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
    /// Work with triggers without a server.
    Trigger {
        #[command(subcommand)]
        command: trigger_cmd::TriggerCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
