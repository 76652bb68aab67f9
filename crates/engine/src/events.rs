//! What the engine tells the world (the dashboard's live view, server-sent events, metrics,
//! tests): a broadcast of [`Event`]s. Slow listeners lose old events rather than slow the engine.

use schedulezero_core::Timestamp;
use schedulezero_core::run::{RunId, RunState};
use schedulezero_core::schedule::ScheduleId;
use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ScheduleChanged {
        schedule_id: ScheduleId,
        change: ScheduleChange,
    },
    /// An attempt was sent to a handler instance.
    RunStarted {
        run_id: RunId,
        schedule_id: Option<ScheduleId>,
        attempt: u32,
        scheduled_for: Timestamp,
        started_at: Timestamp,
        handler_id: String,
        instance_id: String,
    },
    /// An attempt failed and the run will be tried again at `retry_at`.
    RunRetrying {
        run_id: RunId,
        schedule_id: Option<ScheduleId>,
        attempt: u32,
        retry_at: Timestamp,
    },
    /// A run ended (committed to the store before this is sent).
    RunFinished {
        run_id: RunId,
        schedule_id: Option<ScheduleId>,
        state: RunState,
        attempt: u32,
        scheduled_for: Timestamp,
        finished_at: Timestamp,
    },
    HandlerUp {
        handler_id: String,
        instance_id: String,
    },
    HandlerDown {
        handler_id: String,
        instance_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleChange {
    Created,
    Updated,
    Paused,
    Resumed,
    Deleted,
}

/// The engine's event broadcast.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::Sender::new(capacity) }
    }

    pub fn publish(&self, event: Event) {
        // No listener is fine.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
