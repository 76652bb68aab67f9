//! `schedulezero`: the one binary. This crate is glue: each command lives in its own module and
//! calls into the library crates.
//!
//! Module map:
//! - [`serve_cmd`]: `schedulezero serve` — the server.
//! - [`ops_cmd`]: `schedulezero backup`, `restore`, `check` — the store's operations.
//! - [`trigger_cmd`]: `schedulezero trigger next` — preview a trigger's fire times.
//! - [`schedule_cmd`], [`handler_cmd`], [`run_cmd`]: client commands over the HTTP API, through
//!   [`client`] (server discovery, errors and exit codes, tables).
//! - [`governor_cmd`]: `init`, `up`, `down`, `status`, `restart`, `logs`, `reload`, `ports`,
//!   `systemd-unit` — a deployment run as a whole.

mod client;
mod governor_cmd;
mod handler_cmd;
mod ops_cmd;
mod run_cmd;
mod schedule_cmd;
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
    /// Create a deployment: deployments/NAME/schedulezero.toml, commented.
    Init(governor_cmd::InitArgs),
    /// Start the deployment's processes in dependency order and supervise them.
    Up(governor_cmd::UpArgs),
    /// Stop the deployment (also when its supervisor was killed).
    Down(governor_cmd::Where),
    /// The deployment's processes: state, PID, uptime, restarts, last exit, CPU, memory.
    Status(governor_cmd::StatusArgs),
    /// Restart one process of the running deployment (or all of them).
    Restart(governor_cmd::RestartArgs),
    /// Print (or follow, -f) the processes' logs.
    Logs(governor_cmd::LogsArgs),
    /// Apply the edited config to the running deployment: start added processes, stop removed ones.
    Reload(governor_cmd::Where),
    /// The deployments' ports and who holds them; `ports free PORT` stops a holder.
    Ports(governor_cmd::PortsArgs),
    /// Print a systemd unit (Type=notify) for the deployment.
    SystemdUnit(governor_cmd::Where),
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
    /// Schedules on a running server: add, list, show, pause, resume, rm, run.
    #[command(after_long_help = client::EXIT_CODES)]
    Schedule {
        #[command(subcommand)]
        command: schedule_cmd::ScheduleCommand,
    },
    /// Handlers known to a running server (list, show); built-in handlers to run (exec, http).
    #[command(after_long_help = client::EXIT_CODES)]
    Handler {
        #[command(subcommand)]
        command: handler_cmd::HandlerCommand,
    },
    /// Runs on a running server: list, show, cancel.
    #[command(after_long_help = client::EXIT_CODES)]
    Run {
        #[command(subcommand)]
        command: run_cmd::RunCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve_cmd::run(args),
        Command::Init(args) => governor_cmd::init(args),
        Command::Up(args) => governor_cmd::up(args),
        Command::Down(args) => governor_cmd::down(args),
        Command::Status(args) => governor_cmd::status(args),
        Command::Restart(args) => governor_cmd::restart(args),
        Command::Logs(args) => governor_cmd::logs(args),
        Command::Reload(args) => governor_cmd::reload(args),
        Command::Ports(args) => governor_cmd::ports(args),
        Command::SystemdUnit(args) => governor_cmd::systemd_unit(args),
        Command::Backup(args) => ops_cmd::backup(args),
        Command::Restore(args) => ops_cmd::restore(args),
        Command::Check(args) => ops_cmd::check(args),
        Command::Trigger { command } => trigger_cmd::run(command),
        Command::Schedule { command } => schedule_cmd::run(command).map_err(Into::into),
        Command::Handler { command } => handler_cmd::run(command).map_err(Into::into),
        Command::Run { command } => run_cmd::run(command).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(client::exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Clap checks a command's definition only when that command is parsed; this checks them all.
    #[test]
    fn every_command_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
