//! `schedulezero serve`: the server, configured from flags, `SCHEDULEZERO_*` variables and the
//! deployment's `schedulezero.toml` (schedulezero_server::config).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use schedulezero_server::config::LogFormat;
use schedulezero_server::{Overrides, ServerConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// The deployments root (default: $SCHEDULEZERO_HOME, else the current directory).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The deployment (default: $SCHEDULEZERO_DEPLOYMENT, else `default`).
    #[arg(short = 'd', long)]
    deployment: Option<String>,
    /// HTTP listen address, e.g. 127.0.0.1:8888 (port 0 picks a free port).
    #[arg(long)]
    http: Option<String>,
    /// Handler endpoint, e.g. tcp://127.0.0.1:4242 (port 0 picks a free port).
    #[arg(long)]
    zmq: Option<String>,
    /// Database URL or path (default: schedulezero.db in the deployment's directory).
    #[arg(long)]
    database: Option<String>,
    /// Log level or filter, e.g. `info` or `info,schedulezero_transport=debug`.
    #[arg(long)]
    log_level: Option<String>,
    /// `text` or `json`.
    #[arg(long)]
    log_format: Option<String>,
    /// How long finished runs are kept, e.g. 30d, 12h, 90m; `off` (or 0) keeps them forever.
    #[arg(long)]
    history_retention: Option<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        root: args.root,
        deployment: args.deployment,
        http: args.http,
        zmq: args.zmq,
        database: args.database,
        log_level: args.log_level,
        log_format: args.log_format,
        history_retention: args.history_retention,
    };
    let config = ServerConfig::load(&overrides, &|k| std::env::var(k).ok())?;
    init_logging(&config.log_level, config.log_format)?;
    schedulezero_server::memory::configure_allocator();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(schedulezero_server::serve(config)).map_err(crate::ops_cmd::serve_error)?;
    Ok(())
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `Targets` (level, or target=level pairs) rather than `EnvFilter`: the same per-module
    // syntax without span and field filters, whose parser compiles regular expressions at start
    // (a few hundred KB of an idle server's memory).
    let filter: tracing_subscriber::filter::Targets = level.parse().with_context(|| {
        format!("log level '{level}': use e.g. info, debug, or info,schedulezero_engine=debug")
    })?;
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.finish().with(filter).try_init(),
        LogFormat::Json => builder.json().finish().with(filter).try_init(),
    }
    .context("cannot set up logging")
}
