//! Outcome recording: ended attempts are group-committed to the store in batches off the call
//! path, then announced as events. An outcome is never dropped: a failed commit is retried.

use std::sync::Arc;
use std::time::Duration;

use schedulezero_core::Timestamp;
use schedulezero_core::run::{NextStep, Run, RunId};
use schedulezero_core::schedule::ScheduleId;
use schedulezero_store::AttemptEnd;
use tokio::sync::{mpsc, oneshot};

use crate::events::Event;
use crate::shared::Shared;

/// Largest batch committed at once.
const MAX_BATCH: usize = 4096;

/// An ended attempt with what the event needs.
pub(crate) struct Ended {
    pub end: AttemptEnd,
    pub schedule_id: Option<ScheduleId>,
    pub scheduled_for: Timestamp,
    /// Its schedule may have a run queued behind this one (overlap `queue_one`), which this
    /// run's end makes due.
    pub may_release_queued: bool,
    /// A run not yet in the store ("run now"), inserted in the same batch before its outcome.
    pub new_run: Option<Run>,
    /// Released when this is committed and dropped (see `dispatcher::Item::admission`).
    #[allow(dead_code)] // held for its drop
    pub admission: Option<tokio::sync::OwnedSemaphorePermit>,
}

pub(crate) enum Msg {
    Ended(Box<Ended>),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct RecorderHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl RecorderHandle {
    pub fn record(&self, ended: Ended) {
        // The receiver lives as long as the engine's runtime; if it is gone, so is the engine.
        let _ = self.tx.send(Msg::Ended(Box::new(ended)));
    }

    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

pub(crate) fn spawn(shared: Arc<Shared>) -> RecorderHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(shared, rx));
    RecorderHandle { tx }
}

async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch: Vec<Ended> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Ended(e) => batch.push(*e),
                Msg::Flush(tx) => flushes.push(tx),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit(&shared, &batch).await;
            announce(&shared, &batch);
            shared.activity.runs_done(batch.len());
            batch.clear();
            // After a burst, give back the batch's room (up to MAX_BATCH outcomes of ~0.5 KB).
            batch.shrink_to(64);
        }
        for tx in flushes.drain(..) {
            let _ = tx.send(());
        }
    }
}

async fn commit(shared: &Shared, batch: &[Ended]) {
    let ends: Vec<AttemptEnd> = batch.iter().map(|e| e.end.clone()).collect();
    // "Run now" runs go in with their outcomes, in one commit (retried as a whole: the run
    // insert skips ids already stored, the attempt insert numbers already recorded).
    let new_runs: Vec<Run> = batch.iter().filter_map(|e| e.new_run.clone()).collect();
    let mut delay = Duration::from_millis(50);
    loop {
        match shared.store.record_outcomes(&new_runs, &ends, shared.clock.now()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, runs = ends.len(), "recording attempt outcomes failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn announce(shared: &Shared, batch: &[Ended]) {
    // The scheduler must look again when a retry or a released queued run may be due before its
    // planned wake-up; otherwise it is left alone (a wake-up costs a claim transaction).
    let mut wake = false;
    for e in batch {
        let run_id: RunId = e.end.attempt.run_id;
        shared.metrics.attempt_ended(e.end.attempt.outcome);
        match e.end.next {
            NextStep::Retry { at } => {
                wake = true;
                shared.events.publish(Event::RunRetrying {
                    run_id,
                    schedule_id: e.schedule_id,
                    attempt: e.end.attempt.number,
                    retry_at: at,
                });
            }
            NextStep::Finish(state) => {
                shared.metrics.run_finished(state);
                wake |= e.may_release_queued;
                shared.events.publish(Event::RunFinished {
                    run_id,
                    schedule_id: e.schedule_id,
                    state,
                    attempt: e.end.attempt.number,
                    scheduled_for: e.scheduled_for,
                    finished_at: e.end.attempt.finished_at,
                });
            }
        }
    }
    if wake {
        shared.wake_scheduler();
    }
}
