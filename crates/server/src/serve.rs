//! `schedulezero serve`: checks, start, run until SIGTERM/SIGINT, graceful stop.
//!
//! Before anything binds: the deployment's PID file is verified (a live server of the same
//! deployment refuses the start, naming its PID; a stale file is cleaned and reported) and every
//! configured port is checked (one in use is reported with the PID and command line holding it).
//! Then store, engine, handler port and HTTP start; the bound addresses go to stdout and to the
//! runtime file. A listener asked for port 0 first tries the port this deployment bound last
//! time, so handlers of the previous server find the new one. On SIGTERM or SIGINT: HTTP stops
//! accepting, calls in flight get the configured grace to finish (the rest are recorded
//! interrupted; a second signal stops at once), the handler port closes, files are removed,
//! exit 0.

use std::sync::Arc;
use std::time::Duration;

use schedulezero_engine::Engine;
use schedulezero_engine::clock::SystemClock;
use schedulezero_engine::config::EngineConfig;
use schedulezero_host::{PidFile, PidFileError, PidStatus, port_holders};
use schedulezero_store::SqliteStore;
use schedulezero_transport::{Transport, TransportConfig, TransportError};
use thiserror::Error;

use crate::config::ServerConfig;
use crate::database::{self, Database};
use crate::deployment::{LastPorts, Runtime};
use crate::http::{self, AppState};
use crate::retention::{Retention, RetentionPolicy};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "the server of deployment '{deployment}' is already running as PID {pid} ({command}); stop it first (kill -TERM {pid}) or use it"
    )]
    AlreadyRunning { deployment: String, pid: u32, command: String },
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error(
        "port {port} ({what}) is in use by {holder}; stop it, or choose another port (0 picks a free one)"
    )]
    PortInUse { port: u16, what: &'static str, holder: String },
    #[error("cannot bind {what} on {address}: {message}")]
    Bind { what: &'static str, address: String, message: String },
    #[error("database: {0}")]
    Database(String),
    #[error(transparent)]
    Store(#[from] schedulezero_store::StoreError),
    #[error(transparent)]
    Engine(#[from] schedulezero_engine::EngineError),
    #[error("cannot write {0}")]
    Files(String),
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    // Before anything is published: a SIGTERM that arrives as soon as the addresses are printed
    // must stop the server gracefully, not kill it with the default action.
    let stop = stop_signal();
    let deployment = config.deployment.clone();
    std::fs::create_dir_all(deployment.run_dir())
        .map_err(|e| ServeError::Files(format!("{}: {e}", deployment.run_dir().display())))?;

    let (_pid_guard, previous) = match PidFile::new(deployment.server_pid_file()).acquire() {
        Ok(acquired) => acquired,
        Err(PidFileError::AlreadyRunning { record, .. }) => {
            return Err(ServeError::AlreadyRunning {
                deployment: deployment.name().to_string(),
                pid: record.pid,
                command: record.cmdline.join(" "),
            });
        }
        Err(e) => return Err(e.into()),
    };
    match previous {
        PidStatus::Dead(r) => tracing::warn!(pid = r.pid, "cleaned a stale PID file: that server is gone"),
        PidStatus::Reused { record, now } => tracing::warn!(
            pid = record.pid,
            now = %now.command(),
            "cleaned a stale PID file: its PID now belongs to another program"
        ),
        PidStatus::Unreadable(why) => tracing::warn!(%why, "replaced an unreadable PID file"),
        PidStatus::Absent | PidStatus::Live(_) => {}
    }

    for (port, what) in [(config.http_port(), "HTTP"), (config.zmq_port(), "handlers")] {
        if port == 0 {
            continue;
        }
        if let Some(h) = port_holders(port).first() {
            return Err(ServeError::PortInUse { port, what, holder: h.describe() });
        }
    }

    let path = match database::parse(&config.database, deployment.dir()).map_err(ServeError::Database)? {
        Database::Sqlite(path) => path,
        Database::Postgres(url) => {
            return Err(ServeError::Database(format!(
                "PostgreSQL ({}) is not supported by this build yet; use a SQLite file (the default)",
                database::redacted(&url)
            )));
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ServeError::Files(format!("{}: {e}", dir.display())))?;
    }
    let store = Arc::new(SqliteStore::open_path(&path).await?);
    // Before the engine starts: its metric handles bind to the recorder installed then.
    http::metrics::install();
    let engine_config = EngineConfig {
        shutdown_grace: Duration::from_secs(config.shutdown_grace_s),
        // The retention service below purges instead of the engine's own loop.
        history_retention: None,
        ..EngineConfig::default()
    };
    let clock = Arc::new(SystemClock);
    let engine = Arc::new(Engine::start(store.clone(), clock.clone(), engine_config).await?);
    let maintenance = tokio_util::sync::CancellationToken::new();
    // Whatever way `serve` returns, the maintenance tasks stop with it.
    let _maintenance_stops = maintenance.clone().drop_guard();
    let policy = RetentionPolicy { keep: config.history_retention, every: config.history_purge_every };
    tokio::spawn(Retention::new(store.clone(), clock, policy).run(maintenance.clone()));
    tokio::spawn(http::metrics::upkeep(maintenance.clone()));
    tokio::spawn(crate::memory::return_freed_memory(maintenance.clone()));

    let last = deployment.read_last_ports();
    let transport_config = TransportConfig {
        endpoint: config.zmq.clone(),
        heartbeat: Duration::from_millis(config.heartbeat_ms),
        ..TransportConfig::default()
    };
    let started = match recorded(&config.zmq, last.map(|l| l.zmq)) {
        Some(endpoint) => {
            match Transport::start(engine.clone(), TransportConfig { endpoint, ..transport_config.clone() })
                .await
            {
                Err(TransportError::AddressInUse(_)) => {
                    tracing::info!("the handler port of the previous start is taken; binding a free one");
                    Transport::start(engine.clone(), transport_config).await
                }
                other => other,
            }
        }
        None => Transport::start(engine.clone(), transport_config).await,
    };
    let transport = match started {
        Ok(t) => t,
        Err(TransportError::AddressInUse(_)) => {
            let holder = port_holders(config.zmq_port()).first().map(|h| h.describe());
            return Err(ServeError::PortInUse {
                port: config.zmq_port(),
                what: "handlers",
                holder: holder.unwrap_or_else(|| "another process".into()),
            });
        }
        Err(e) => {
            let message = match e {
                // Its own text repeats the endpoint.
                TransportError::Bind(_, why) => why,
                other => other.to_string(),
            };
            return Err(ServeError::Bind { what: "the handler port", address: config.zmq.clone(), message });
        }
    };

    let preferred = match recorded(&config.http, last.map(|l| l.http)) {
        Some(address) => tokio::net::TcpListener::bind(&address).await.ok(),
        None => None,
    };
    let bound = match preferred {
        Some(listener) => Ok(listener),
        None => tokio::net::TcpListener::bind(&config.http).await,
    };
    let listener = bound.map_err(|e| match port_holders(config.http_port()).first() {
        Some(h) if e.kind() == std::io::ErrorKind::AddrInUse => {
            ServeError::PortInUse { port: config.http_port(), what: "HTTP", holder: h.describe() }
        }
        _ => ServeError::Bind { what: "HTTP", address: config.http.clone(), message: e.to_string() },
    })?;
    let http_addr = listener.local_addr().map_err(|e| ServeError::Bind {
        what: "HTTP",
        address: config.http.clone(),
        message: e.to_string(),
    })?;

    let runtime = Runtime {
        pid: std::process::id(),
        http: format!("http://{http_addr}"),
        zmq: transport.endpoint().to_string(),
        database: path.display().to_string(),
        started_at: chrono::Utc::now().to_rfc3339(),
    };
    let ports = LastPorts { http: http_addr.port(), zmq: port_of(&runtime.zmq) };
    if let Err(e) = deployment.write_last_ports(ports) {
        tracing::warn!(error = %e, "cannot record the bound ports; the next start may pick others");
    }
    deployment
        .write_runtime(&runtime)
        .map_err(|e| ServeError::Files(format!("{}: {e}", deployment.runtime_file().display())))?;
    // A closed stdout (`serve | head`) must not stop the server: the runtime file has it all.
    say(format_args!(
        "ScheduleZero serving deployment '{}'\n  http      {}\n  dashboard {}/\n  handlers  {}\n  store     {}",
        deployment.name(),
        runtime.http,
        runtime.http,
        runtime.zmq,
        runtime.database
    ));
    // Under a systemd `Type=notify` unit: started once everything is bound and published.
    let _ = schedulezero_host::notify("READY=1");

    let stopping = tokio_util::sync::CancellationToken::new();
    let state = Arc::new(AppState {
        engine: engine.clone(),
        deployment: deployment.name().to_string(),
        instance_name: config.instance_name.clone(),
        description: config.description.clone(),
        admin_contact: config.admin_contact.clone(),
        stopping: stopping.clone(),
    });
    let guard = http::Guard {
        loopback: http_addr.ip().is_loopback(),
        hosts: config.allowed_hosts.clone(),
        origins: config.allowed_origins.clone(),
    };
    let app = http::router(state, guard);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop.await;
        let _ = schedulezero_host::notify("STOPPING=1");
        // Event streams end now; other requests in progress finish.
        stopping.cancel();
    });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "the HTTP server failed");
    }

    tracing::info!(
        "stopping: calls in flight get {} s to finish (a second SIGTERM or Ctrl-C stops at once)",
        config.shutdown_grace_s
    );
    maintenance.cancel();
    tokio::select! {
        _ = engine.shutdown() => {}
        _ = stop_signal() => tracing::warn!(
            "second stop signal: not waiting for calls in flight; the next start records them interrupted \
             and retries them per policy"
        ),
    }
    transport.shutdown().await;
    store.close().await;
    let _ = std::fs::remove_file(deployment.runtime_file());
    say(format_args!("ScheduleZero stopped"));
    Ok(())
}

/// Prints a line to stdout, ignoring a closed or broken stdout.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The address to try first: the port this deployment bound last time, when the configuration
/// asks for any port (0). `None`: bind as configured.
fn recorded(address: &str, last: Option<u16>) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    match (port, last) {
        ("0", Some(last)) if last != 0 => Some(format!("{host}:{last}")),
        _ => None,
    }
}

fn port_of(address: &str) -> u16 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0)
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on either.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            // Without signal handlers the server still runs; it stops when killed.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
