//! Embedded mode: the whole engine inside one process on a SQLite file, with local async
//! functions as handlers — no ports, no ZeroMQ.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use schedulezero_engine::{LocalHandler, ScheduleSpec, embedded};
//! use schedulezero_core::schedule::Target;
//! use schedulezero_core::trigger::Trigger;
//! use serde_json::json;
//!
//! let engine = embedded::open("jobs.db")
//!     .handler(LocalHandler::new("local").method("hello", |_ctx, params| async move {
//!         Ok(json!({"greeted": params["name"]}))
//!     }))
//!     .start()
//!     .await?;
//! let trigger = Trigger::parse(&json!({"type": "interval", "seconds": 5}), &engine.parse_context())?;
//! let target = Target { handler_id: "local".into(), method: "hello".into(), params: json!({"name": "world"}) };
//! engine.add_schedule(ScheduleSpec::new(trigger, target).name("greeter")).await?;
//! # engine.shutdown().await;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use schedulezero_store::{SqliteOptions, SqliteStore, Synchronous};

use crate::clock::{Clock, SystemClock};
use crate::config::EngineConfig;
use crate::engine::{Engine, EngineError};
use crate::local::LocalHandler;

/// Starts building an embedded engine on the SQLite file at `path` (created if missing).
pub fn open(path: impl Into<PathBuf>) -> EmbeddedBuilder {
    EmbeddedBuilder {
        path: path.into(),
        synchronous: Synchronous::Normal,
        config: EngineConfig::default(),
        clock: Arc::new(SystemClock),
        handlers: Vec::new(),
    }
}

pub struct EmbeddedBuilder {
    path: PathBuf,
    synchronous: Synchronous,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    handlers: Vec<LocalHandler>,
}

impl EmbeddedBuilder {
    /// Adds a handler made of local functions.
    pub fn handler(mut self, handler: LocalHandler) -> Self {
        self.handlers.push(handler);
        self
    }

    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Commits survive a power cut too (an fsync each), not only a killed process.
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Another clock (tests use a virtual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Opens the store (refusing a file that is not ours), recovers interrupted runs, registers
    /// the handlers and starts firing.
    pub async fn start(self) -> Result<Engine, EngineError> {
        let store =
            SqliteStore::open(SqliteOptions { path: self.path, synchronous: self.synchronous }).await?;
        let engine = Engine::start(Arc::new(store), self.clock, self.config).await?;
        for h in self.handlers {
            engine.add_local_handler(h).await?;
        }
        Ok(engine)
    }
}
