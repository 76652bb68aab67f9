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

/// The engine's event broadcast. Its ring is allocated when the first listener subscribes:
/// events published before that have no one to reach, and an idle server nobody watches does not
/// hold the ring's memory (about 136 bytes a slot: 0.55 MB for 4,096).
#[derive(Debug)]
pub struct EventBus {
    capacity: usize,
    tx: std::sync::OnceLock<broadcast::Sender<Event>>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), tx: std::sync::OnceLock::new() }
    }

    pub fn publish(&self, event: Event) {
        // No listener (yet, or any more) is fine.
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(event);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.get_or_init(|| broadcast::Sender::new(self.capacity)).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_listeners_subscribed_before_them_and_none_is_needed() {
        let bus = EventBus::new(8);
        bus.publish(Event::HandlerUp { handler_id: "h".into(), instance_id: "before".into() });
        let mut rx = bus.subscribe();
        bus.publish(Event::HandlerUp { handler_id: "h".into(), instance_id: "after".into() });
        assert_eq!(
            rx.try_recv().ok(),
            Some(Event::HandlerUp { handler_id: "h".into(), instance_id: "after".into() })
        );
        assert!(rx.try_recv().is_err(), "nothing published before the first listener is kept");
    }
}
