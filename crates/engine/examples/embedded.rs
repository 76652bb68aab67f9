//! Embedded mode in one file: the engine in-process on a SQLite file, with local async functions
//! as the handler — no server, no ports, no ZeroMQ. Schedules and history survive restarts.
//!
//! ```sh
//! cargo run --release -p schedulezero-engine --example embedded                   # until Ctrl-C
//! cargo run --release -p schedulezero-engine --example embedded -- --seconds 5 --db /tmp/demo.db
//! ```

use std::time::Duration;

use schedulezero_core::schedule::Target;
use schedulezero_core::trigger::Trigger;
use schedulezero_engine::events::Event;
use schedulezero_engine::{LocalHandler, ScheduleSpec, embedded};
use schedulezero_store::ScheduleFilter;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut db) = (None, "deployments/default/embedded.db".to_string());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse::<u64>().ok()),
            "--db" => db = args.next().ok_or("--db needs a path")?,
            other => return Err(format!("unknown argument '{other}' (use --seconds N, --db PATH)").into()),
        }
    }
    if let Some(dir) = std::path::Path::new(&db).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }

    // A handler is a set of named async functions.
    let handler = LocalHandler::new("local")
        .method("greet", |ctx, params| async move {
            Ok(json!({"greeting": format!("hello, {}", params["name"].as_str().unwrap_or("world")),
                      "attempt": ctx.attempt}))
        })
        .method("report", |ctx, _| async move { Ok(json!({"slot": ctx.scheduled_for.to_rfc3339()})) });
    let engine = embedded::open(&db).handler(handler).start().await?;
    println!("embedded engine on {db}");

    // Schedules are durable: add them only the first time.
    let existing = engine.list_schedules(&ScheduleFilter::default()).await?;
    if existing.is_empty() {
        let ctx = engine.parse_context();
        let every_2s = Trigger::parse(&json!({"type": "interval", "seconds": 2}), &ctx)?;
        let each_3s = Trigger::parse(&json!({"type": "cron", "expression": "*/3 * * * * *"}), &ctx)?;
        let greet = Target {
            handler_id: "local".into(),
            method: "greet".into(),
            params: json!({"name": "embedded"}),
        };
        let report = Target { handler_id: "local".into(), method: "report".into(), params: json!({}) };
        engine.add_schedule(ScheduleSpec::new(every_2s, greet).name("greeter")).await?;
        engine.add_schedule(ScheduleSpec::new(each_3s, report).name("reporter")).await?;
    }
    for s in engine.list_schedules(&ScheduleFilter::default()).await? {
        println!(
            "schedule {:<10} {}  next {:?}",
            s.name,
            s.trigger.describe(),
            s.next_fire_at.map(|t| t.to_rfc3339())
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
    let mut finished = 0u64;
    loop {
        tokio::select! {
            _ = &mut until => break,
            event = events.recv() => match event {
                Ok(Event::RunFinished { state, scheduled_for, run_id, .. }) => {
                    finished += 1;
                    println!("run {run_id} for {} → {}", scheduled_for.to_rfc3339(), state.as_str());
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("({n} events skipped)"),
                Err(_) => break,
            },
        }
    }
    engine.shutdown().await;
    println!("stopped after {finished} runs");
    if seconds.is_some() && finished == 0 {
        return Err("no run finished".into());
    }
    Ok(())
}
