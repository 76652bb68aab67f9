//! A handler server in one file, until `schedulezero serve` exists: the engine on a SQLite file
//! and the handler port, with one schedule that calls `demo.echo` every 2 seconds. Start native
//! handlers (`crates/handler/examples/native_handler.rs`) or version-1 handlers against it and
//! watch the calls go round robin; kill one and watch its calls move.
//!
//! ```sh
//! cargo run -p schedulezero-transport --example server -- --endpoint tcp://127.0.0.1:4242
//! cargo run -p schedulezero-handler --example native_handler -- --server tcp://127.0.0.1:4242 --instance-id a
//! cargo run -p schedulezero-handler --example native_handler -- --server tcp://127.0.0.1:4242 --instance-id b
//! ```
//! Flags: `--endpoint` (default `tcp://127.0.0.1:4242`; port 0 picks one), `--db PATH` (default
//! `deployments/default/handlers-demo.db`), `--seconds N` (default: until Ctrl-C).

use std::sync::Arc;
use std::time::Duration;

use schedulezero_core::schedule::Target;
use schedulezero_core::trigger::Trigger;
use schedulezero_engine::events::Event;
use schedulezero_engine::{Engine, ScheduleSpec};
use schedulezero_store::{ScheduleFilter, SqliteStore};
use schedulezero_transport::{Transport, TransportConfig};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let mut endpoint = "tcp://127.0.0.1:4242".to_string();
    let mut db = "deployments/default/handlers-demo.db".to_string();
    let mut seconds = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoint" => endpoint = args.next().ok_or("--endpoint needs a value")?,
            "--db" => db = args.next().ok_or("--db needs a path")?,
            "--seconds" => seconds = args.next().and_then(|s| s.parse::<u64>().ok()),
            other => {
                return Err(
                    format!("unknown argument '{other}' (use --endpoint E, --db PATH, --seconds N)").into()
                );
            }
        }
    }
    if let Some(dir) = std::path::Path::new(&db).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let store = Arc::new(SqliteStore::open_path(&db).await?);
    let engine = Arc::new(
        Engine::start(store, Arc::new(schedulezero_engine::clock::SystemClock), Default::default()).await?,
    );
    let transport =
        Transport::start(engine.clone(), TransportConfig { endpoint, ..Default::default() }).await?;
    println!("handler endpoint {}  (store {db})", transport.endpoint());

    if engine.find_schedule("echo-every-2s").await?.is_none() {
        let trigger = Trigger::parse(&json!({"type": "interval", "seconds": 2}), &engine.parse_context())?;
        let target =
            Target { handler_id: "demo".into(), method: "echo".into(), params: json!({"hello": "handlers"}) };
        engine.add_schedule(ScheduleSpec::new(trigger, target).name("echo-every-2s")).await?;
    }
    for s in engine.list_schedules(&ScheduleFilter::default()).await? {
        println!(
            "schedule {} {} → {}.{}",
            s.name,
            s.trigger.describe(),
            s.target.handler_id,
            s.target.method
        );
    }

    let mut events = engine.subscribe();
    let until = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => break,
            event = events.recv() => match event {
                Ok(Event::RunStarted { run_id, attempt, instance_id, .. }) => {
                    println!("run {run_id} attempt {attempt} → instance {instance_id}");
                }
                Ok(Event::RunFinished { run_id, state, .. }) => println!("run {run_id} {}", state.as_str()),
                Ok(Event::RunRetrying { run_id, retry_at, .. }) => println!("run {run_id} retries at {retry_at}"),
                Ok(Event::HandlerUp { handler_id, instance_id }) => println!("handler {handler_id}/{instance_id} up"),
                Ok(Event::HandlerDown { handler_id, instance_id }) => println!("handler {handler_id}/{instance_id} down"),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
        }
    }
    engine.shutdown().await;
    transport.shutdown().await;
    Ok(())
}
