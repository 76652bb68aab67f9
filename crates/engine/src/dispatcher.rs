//! The dispatcher: routes leased runs to handler instances and sends their calls.
//!
//! One actor task owns the waiting queues (per handler and method), and holds runs handed to it
//! before their time (the scheduler claims `claim_ahead` early) until then. For each run it
//! reserves a live instance with spare capacity (round robin, [`Registry::route`]), commits the attempt's
//! start in a batch *before* sending (so a crash after the send is seen as `interrupted`), then
//! runs the call in a task of its own under the run's deadline. A slow or dead handler holds only
//! its own calls: nothing here waits on a handler.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use schedulezero_core::Timestamp;
use schedulezero_core::policy::OverlapPolicy;
use schedulezero_core::run::{Attempt, AttemptOutcome, RunId, RunState, after_attempt};
use schedulezero_store::{AttemptEnd, AttemptStart, Dispatch};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::events::Event;
use crate::link::{Call, LinkError, Reply};
use crate::recorder::{Ended, RecorderHandle};
use crate::registry::{Instance, Route};
use crate::shared::Shared;

/// How an attempt ended, for a caller waiting on it ("run now").
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    pub run_id: RunId,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub instance_id: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
}

pub(crate) struct Item {
    pub dispatch: Dispatch,
    /// Told how the attempt ended.
    pub report: Option<oneshot::Sender<AttemptReport>>,
    /// The run is not in the store yet ("run now"): the recorder inserts it with its outcome.
    pub unsaved: bool,
    /// Held until the outcome is committed (moved into the recorder's [`Ended`]), so callers of
    /// "run now" wait when the store falls behind instead of piling up outcomes in memory.
    pub admission: Option<tokio::sync::OwnedSemaphorePermit>,
}

enum Msg {
    Submit(Vec<Item>),
    /// An instance has capacity again, or the registry changed.
    Pump,
    Cancel(RunId, oneshot::Sender<bool>),
    CallEnded(RunId),
    Shutdown(Duration, oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct DispatcherHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl DispatcherHandle {
    pub fn submit(&self, items: Vec<Item>) {
        if !items.is_empty() {
            let _ = self.tx.send(Msg::Submit(items));
        }
    }

    pub fn pump(&self) {
        let _ = self.tx.send(Msg::Pump);
    }

    /// Cancels a run this node holds (waiting or in flight). False: not held here.
    pub async fn cancel(&self, run: RunId) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Cancel(run, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    pub async fn shutdown(&self, grace: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(grace, tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

pub(crate) fn spawn(shared: Arc<Shared>, recorder: RecorderHandle) -> DispatcherHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = DispatcherHandle { tx };
    let actor = Actor {
        shared,
        recorder,
        me: handle.clone(),
        waiting: HashMap::new(),
        held: BTreeMap::new(),
        in_flight: HashMap::new(),
        closed: false,
    };
    tokio::spawn(actor.run(rx));
    handle
}

struct InFlight {
    cancel: CancellationToken,
    interrupt: CancellationToken,
}

struct Actor {
    shared: Arc<Shared>,
    recorder: RecorderHandle,
    me: DispatcherHandle,
    /// Runs waiting for an instance, by (handler id, method), in arrival order.
    waiting: HashMap<(String, String), VecDeque<Item>>,
    /// Runs not due yet, by the time they may be sent.
    held: BTreeMap<Timestamp, Vec<Item>>,
    in_flight: HashMap<RunId, InFlight>,
    closed: bool,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut shutdown: Option<(tokio::time::Instant, oneshot::Sender<()>)> = None;
        loop {
            let msg = match &shutdown {
                Some((deadline, _)) if !self.in_flight.is_empty() => {
                    tokio::select! {
                        m = rx.recv() => m,
                        _ = tokio::time::sleep_until(*deadline) => {
                            // Grace is over: what still runs is recorded as interrupted.
                            for f in self.in_flight.values() {
                                f.interrupt.cancel();
                            }
                            shutdown = shutdown.map(|(_, tx)| (tokio::time::Instant::now() + Duration::from_secs(3600), tx));
                            continue;
                        }
                    }
                }
                Some(_) => {
                    if let Some((_, tx)) = shutdown.take() {
                        self.recorder.flush().await;
                        let _ = tx.send(());
                    }
                    // Keep answering (refusing) until the engine is dropped.
                    rx.recv().await
                }
                None => match self.held.keys().next().copied() {
                    Some(due) => {
                        tokio::select! {
                            m = rx.recv() => m,
                            _ = self.shared.clock.sleep_until(due) => {
                                self.release_due();
                                self.assign().await;
                                continue;
                            }
                        }
                    }
                    None => rx.recv().await,
                },
            };
            let Some(first) = msg else { return };
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Submit(items) => self.accept(items).await,
                    Msg::Pump => {}
                    Msg::CallEnded(run) => {
                        self.in_flight.remove(&run);
                        // A burst's table is given back once it is over (maps never shrink).
                        if self.in_flight.is_empty() && self.in_flight.capacity() > 64 {
                            self.in_flight.shrink_to(64);
                        }
                    }
                    Msg::Cancel(run, tx) => {
                        let held = self.cancel(run).await;
                        let _ = tx.send(held);
                    }
                    Msg::Shutdown(grace, tx) => {
                        self.closed = true;
                        self.release_waiting().await;
                        shutdown = Some((tokio::time::Instant::now() + grace, tx));
                    }
                }
                next = rx.try_recv().ok();
            }
            if !self.closed {
                self.assign().await;
            }
        }
    }

    async fn accept(&mut self, items: Vec<Item>) {
        if self.closed {
            self.give_back(items).await;
            return;
        }
        let now = self.shared.clock.now();
        let mut due_now = Vec::with_capacity(items.len());
        for item in items {
            let due = due_at(&item);
            if due > now {
                self.held.entry(due).or_default().push(item);
            } else {
                due_now.push(item);
            }
        }
        self.publish_held();
        self.enqueue(due_now);
    }

    /// Moves held runs whose time has come to the waiting queues.
    fn release_due(&mut self) {
        let now = self.shared.clock.now();
        let mut due = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > now {
                break;
            }
            due.extend(entry.remove());
        }
        self.publish_held();
        self.enqueue(due);
    }

    /// Tells `Engine::idle` what is held (after every change to `held`).
    fn publish_held(&self) {
        let count = self.held.values().map(Vec::len).sum();
        self.shared.activity.set_held(count, self.held.keys().next().copied());
    }

    /// Queues runs that are due for an instance of their handler.
    fn enqueue(&mut self, items: Vec<Item>) {
        let cap = self.shared.config.max_waiting.max(1);
        for item in items {
            let key = (item.dispatch.run.target.handler_id.clone(), item.dispatch.run.target.method.clone());
            let queue = self.waiting.entry(key).or_default();
            if queue.len() >= cap && is_started(&item) {
                // Runs not yet started (retries, jittered slots) always queue: they are few,
                // and releasing them would only bring them straight back.
                let why = format!(
                    "{} runs already wait for handler '{}' method '{}' and no instance takes them",
                    queue.len(),
                    item.dispatch.run.target.handler_id,
                    item.dispatch.run.target.method
                );
                self.end_unsent(item, AttemptOutcome::Lost, &why);
                continue;
            }
            queue.push_back(item);
        }
    }

    /// Gives waiting runs back (shutdown): leases of runs not started are released; runs the
    /// claim started end their unsent attempt as interrupted, retried per policy at the next start.
    async fn release_waiting(&mut self) {
        let mut items: Vec<Item> = self.waiting.drain().flat_map(|(_, q)| q).collect();
        items.extend(std::mem::take(&mut self.held).into_values().flatten());
        self.publish_held();
        self.give_back(items).await;
    }

    /// Runs this node will not send: see `release_waiting`.
    async fn give_back(&self, items: Vec<Item>) {
        let mut ids = Vec::new();
        for item in items {
            if is_started(&item) {
                self.end_unsent(item, AttemptOutcome::Interrupted, "the server stopped before it was sent");
            } else {
                ids.push(item.dispatch.run.id);
            }
        }
        self.release(ids).await;
    }

    /// Ends a started attempt that was never sent.
    fn end_unsent(&self, item: Item, outcome: AttemptOutcome, why: &str) {
        let run = &item.dispatch.run;
        let now = self.shared.clock.now();
        // Cancelled ends the run; interrupted retries it per policy ("run now" has one attempt).
        let next = after_attempt(
            outcome,
            run.attempt,
            run.max_attempts,
            &item.dispatch.policies.retry,
            now,
            fastrand::u64(..),
        );
        let attempt = Attempt {
            run_id: run.id,
            number: run.attempt,
            instance: None,
            started_at: run.started_at.unwrap_or(now),
            finished_at: now,
            outcome,
            result: None,
            error: Some(why.to_string()),
        };
        self.recorder.record(Ended {
            end: AttemptEnd { attempt, next },
            schedule_id: run.schedule_id,
            scheduled_for: run.scheduled_for,
            may_release_queued: item.dispatch.policies.overlap == OverlapPolicy::QueueOne,
            new_run: item.unsaved.then(|| item.dispatch.run.clone()),
            admission: item.admission,
        });
        if let Some(tx) = item.report {
            let _ = tx.send(AttemptReport {
                run_id: run.id,
                attempt: run.attempt,
                outcome,
                instance_id: None,
                result: None,
                error: Some(why.to_string()),
            });
        }
    }

    async fn release(&self, ids: Vec<RunId>) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.shared.store.release_runs(&ids).await {
            tracing::warn!(error = %e, "could not release run leases; the next start-up will");
        }
        self.shared.activity.runs_done(ids.len());
    }

    async fn cancel(&mut self, run: RunId) -> bool {
        if let Some(f) = self.in_flight.get(&run) {
            f.cancel.cancel();
            return true;
        }
        let held = self.held.values_mut().find_map(|items| {
            let pos = items.iter().position(|i| i.dispatch.run.id == run)?;
            Some(items.remove(pos))
        });
        self.held.retain(|_, items| !items.is_empty());
        if held.is_some() {
            self.publish_held();
        }
        let queued = || {
            self.waiting.values_mut().find_map(|queue| {
                let pos = queue.iter().position(|i| i.dispatch.run.id == run)?;
                queue.remove(pos)
            })
        };
        let Some(item) = held.or_else(queued) else { return false };
        if is_started(&item) {
            // Its attempt was committed as started: end it as cancelled.
            self.end_unsent(item, AttemptOutcome::Cancelled, "cancelled before it was sent");
        } else {
            if let Err(e) = self.shared.store.cancel_run(run, self.shared.clock.now()).await {
                tracing::warn!(error = %e, %run, "could not cancel a waiting run");
            }
            self.shared.activity.runs_done(1);
        }
        true
    }

    /// Reserves instances for waiting runs, commits their starts, and sends them.
    async fn assign(&mut self) {
        let mut picked: Vec<(Item, Arc<Instance>)> = Vec::new();
        for ((handler, method), queue) in self.waiting.iter_mut() {
            while !queue.is_empty() {
                match self.shared.registry.route(handler, method) {
                    Route::Reserved(inst) => {
                        if let Some(item) = queue.pop_front() {
                            picked.push((item, inst));
                        }
                    }
                    Route::Busy | Route::Unavailable => break,
                }
            }
        }
        self.waiting.retain(|_, q| !q.is_empty());
        if picked.is_empty() {
            return;
        }
        let now = self.shared.clock.now();
        // Runs already started (by the claim, or stored so by "run now") need no commit; the
        // others (retries, jittered slots) get their start committed here, before the send.
        let starts: Vec<AttemptStart> = picked
            .iter()
            .filter(|(item, _)| !is_started(item))
            .map(|(item, _)| AttemptStart {
                run_id: item.dispatch.run.id,
                attempt: item.dispatch.run.attempt + 1,
                started_at: now,
            })
            .collect();
        let committed =
            if starts.is_empty() { Ok(()) } else { self.shared.store.start_attempts(&starts).await };
        if let Err(e) = committed {
            tracing::error!(error = %e, runs = starts.len(), "could not record attempt starts; will retry");
            for (item, inst) in picked.into_iter().rev() {
                inst.release(None);
                let key =
                    (item.dispatch.run.target.handler_id.clone(), item.dispatch.run.target.method.clone());
                self.waiting.entry(key).or_default().push_front(item);
            }
            let me = self.me.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                me.pump();
            });
            return;
        }
        for (item, inst) in picked {
            let run = &item.dispatch.run;
            let (attempt, started_at) = if is_started(&item) {
                (run.attempt, run.started_at.unwrap_or(now))
            } else {
                (run.attempt + 1, now)
            };
            self.shared.events.publish(Event::RunStarted {
                run_id: run.id,
                schedule_id: run.schedule_id,
                attempt,
                scheduled_for: run.scheduled_for,
                started_at,
                handler_id: inst.handler_id.clone(),
                instance_id: inst.instance_id.clone(),
            });
            let flight = InFlight { cancel: CancellationToken::new(), interrupt: CancellationToken::new() };
            let call = CallTask {
                shared: self.shared.clone(),
                recorder: self.recorder.clone(),
                dispatcher: self.me.clone(),
                instance: inst,
                item,
                attempt,
                started_at,
                cancel: flight.cancel.clone(),
                interrupt: flight.interrupt.clone(),
            };
            self.in_flight.insert(call.item.dispatch.run.id, flight);
            tokio::spawn(call.run());
        }
    }
}

/// When a run may be sent: its dispatch time (a jittered slot, a retry), else its slot.
fn due_at(item: &Item) -> Timestamp {
    let run = &item.dispatch.run;
    run.dispatch_at.unwrap_or(run.scheduled_for)
}

/// Whether the claim already started this run's attempt (committed, not yet sent).
fn is_started(item: &Item) -> bool {
    item.dispatch.run.state == RunState::Running && item.dispatch.run.attempt > 0
}

/// One attempt in flight.
struct CallTask {
    shared: Arc<Shared>,
    recorder: RecorderHandle,
    dispatcher: DispatcherHandle,
    instance: Arc<Instance>,
    item: Item,
    attempt: u32,
    started_at: Timestamp,
    cancel: CancellationToken,
    interrupt: CancellationToken,
}

impl CallTask {
    async fn run(self) {
        let run = &self.item.dispatch.run;
        let policies = &self.item.dispatch.policies;
        let timeout = policies.timeout;
        let now = self.shared.clock.now();
        let call = Call {
            run_id: run.id,
            attempt: self.attempt,
            scheduled_for: run.scheduled_for,
            method: run.target.method.clone(),
            params: run.target.params.clone(),
            // What is left of the timeout, which counts from the attempt's start (the claim may
            // have started it a moment before this send): handler and server agree on the end.
            deadline: (self.started_at + timeout - now).to_std().unwrap_or_default(),
        };
        let link = self.instance.link.clone();
        let no_time_left = call.deadline.is_zero();
        let reply = if no_time_left {
            // Its time ran out while it waited: not sent, so it cannot run after being recorded.
            Err((AttemptOutcome::TimedOut, "its timeout passed before it could be sent".to_string()))
        } else {
            // A run-now call has no dispatch time: it was due when it was made.
            self.shared.metrics.dispatched(now - run.dispatch_at.unwrap_or(run.created_at));
            if self.attempt == 1 && run.schedule_id.is_some() {
                self.shared.metrics.first_attempt_started(self.started_at - run.scheduled_for);
            }
            tokio::select! {
                r = link.call(call) => r.map_err(|e| match e {
                    LinkError::Cancelled => (AttemptOutcome::Cancelled, e.to_string()),
                    LinkError::Disconnected(_) | LinkError::Refused(_) => (AttemptOutcome::Lost, e.to_string()),
                }),
                _ = self.shared.clock.sleep_until(self.started_at + timeout) => {
                    link.cancel(run.id, self.attempt).await;
                    Err((AttemptOutcome::TimedOut, format!("no reply within {} s", timeout.num_milliseconds() as f64 / 1000.0)))
                }
                _ = self.cancel.cancelled() => {
                    link.cancel(run.id, self.attempt).await;
                    Err((AttemptOutcome::Cancelled, "cancelled".to_string()))
                }
                _ = self.interrupt.cancelled() => {
                    link.cancel(run.id, self.attempt).await;
                    Err((AttemptOutcome::Interrupted, "the server stopped during the call".to_string()))
                }
            }
        };
        let (outcome, result, error) = match reply {
            Ok(Reply::Success(v)) => (AttemptOutcome::Succeeded, Some(v), None),
            Ok(Reply::Failure { error, result }) => (AttemptOutcome::Failed, result, Some(error)),
            Err((outcome, error)) => (outcome, None, Some(error)),
        };
        let finished_at = self.shared.clock.now();
        self.instance.seen(finished_at);
        self.instance.release(Some(outcome == AttemptOutcome::Succeeded));
        // A "run now" run has one attempt (max_attempts 1), so this finishes it.
        let next = after_attempt(
            outcome,
            self.attempt,
            run.max_attempts,
            &policies.retry,
            finished_at,
            fastrand::u64(..),
        );
        if let Some(tx) = self.item.report {
            let _ = tx.send(AttemptReport {
                run_id: run.id,
                attempt: self.attempt,
                outcome,
                instance_id: Some(self.instance.instance_id.clone()),
                result: result.clone(),
                error: error.clone(),
            });
        }
        let attempt = Attempt {
            run_id: run.id,
            number: self.attempt,
            instance: Some(self.instance.instance_id.clone()),
            started_at: self.started_at,
            finished_at,
            outcome,
            result,
            error,
        };
        self.recorder.record(Ended {
            end: AttemptEnd { attempt, next },
            schedule_id: run.schedule_id,
            scheduled_for: run.scheduled_for,
            may_release_queued: policies.overlap == OverlapPolicy::QueueOne,
            new_run: self.item.unsaved.then(|| run.clone()),
            admission: self.item.admission,
        });
        let _ = self.dispatcher.tx.send(Msg::CallEnded(run.id));
    }
}
