//! `schedulezero trigger next`: the next fire times of a trigger, computed by the same code the
//! server uses (and the dashboard's preview).

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono_tz::Tz;
use clap::Subcommand;
use schedulezero_core::clock::{Clock, SystemClock};
use schedulezero_core::time::format_in_zone;
use schedulezero_core::trigger::{ParseContext, parse_input, preview};
use serde_json::json;

#[derive(Subcommand)]
pub enum TriggerCommand {
    /// Print a trigger's next fire times as RFC 3339 timestamps with their offset.
    ///
    /// Examples:
    ///   schedulezero trigger next '*/5 * * * *'
    ///   schedulezero trigger next '{"type":"cron","hour":"2","minute":"30"}' --tz America/New_York
    ///   schedulezero trigger next '{"type":"interval","seconds":90}' -n 3 --json
    #[command(verbatim_doc_comment)]
    Next {
        /// A trigger JSON object (as in the HTTP API) or a crontab string.
        trigger: String,
        /// The zone of a trigger that names none, and of naive times (default: this machine's).
        #[arg(long)]
        tz: Option<String>,
        /// Start after this time (ISO-8601; naive = in the trigger's zone). Default: now.
        #[arg(long)]
        after: Option<String>,
        /// How many fire times.
        #[arg(short = 'n', default_value_t = 5)]
        count: usize,
        /// Print JSON instead of one time per line.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: TriggerCommand) -> Result<()> {
    match cmd {
        TriggerCommand::Next { trigger, tz, after, count, json } => next(&trigger, tz, after, count, json),
    }
}

fn next(input: &str, tz: Option<String>, after: Option<String>, count: usize, as_json: bool) -> Result<()> {
    if count == 0 || count > 10_000 {
        bail!("-n must be between 1 and 10000 (got {count})");
    }
    let zone: Option<Tz> = tz
        .as_deref()
        .map(|name| {
            name.parse::<Tz>().map_err(|_| {
                anyhow::anyhow!("--tz: '{name}' is not an IANA time zone name (for example 'Europe/Paris')")
            })
        })
        .transpose()?;
    let local_zone = zone.unwrap_or_else(schedulezero_engine::config::system_zone);
    let now = SystemClock.now();
    let ctx = ParseContext { now, local_zone };
    let trigger = parse_input(input, zone, &ctx)?;
    let fires = preview(&trigger, after.as_deref(), count, now).context("--after")?;
    let shown: Vec<String> = fires.iter().map(|t| format_in_zone(*t, trigger.zone())).collect();
    let mut out = std::io::stdout().lock();
    if as_json {
        let doc = json!({
            "trigger": trigger.to_json(),
            "description": trigger.describe(),
            "timezone": trigger.zone().name(),
            "next": shown,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        if shown.is_empty() {
            writeln!(out, "(no more fire times: the trigger is exhausted)")?;
        }
        for line in shown {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
