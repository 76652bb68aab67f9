//! `schedulezero`: the one binary. This crate is glue: each command lives in its own module and
//! calls into the library crates.
//!
//! Module map:
//! - [`serve_cmd`]: `schedulezero serve` — the server.
//! - [`ops_cmd`]: `schedulezero backup`, `restore`, `check` — the store's operations.
//! - [`trigger_cmd`]: `schedulezero trigger next` — preview a trigger's fire times.

mod ops_cmd;
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
    /// Write a consistent copy of the store to FILE (also while the server runs).
    Backup(ops_cmd::BackupArgs),
    /// Put a backup in place of the store, after checking it (the server must be stopped).
    Restore(ops_cmd::RestoreArgs),
    /// Check the store in full: every page, index and invariant (also while the server runs).
    Check(ops_cmd::CheckArgs),
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
        Command::Backup(args) => ops_cmd::backup(args),
        Command::Restore(args) => ops_cmd::restore(args),
        Command::Check(args) => ops_cmd::check(args),
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
