//! The engine: starts the services (recovery, scheduler loop, dispatcher, recorder, history
//! purge) over a store and a clock, and is the API the server and embedded mode drive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use schedulezero_core::error::{PolicyError, TriggerError};
use schedulezero_core::policy::{Policies, RetryPolicy};
use schedulezero_core::run::{Run, RunId, RunState};
use schedulezero_core::schedule::{Schedule, ScheduleId, ScheduleState, Target};
use schedulezero_core::trigger::{ParseContext, Trigger};
use schedulezero_store::{Dispatch, HandlerInstance, ScheduleFilter, Store, StoreError};
use thiserror::Error;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::dispatcher::{self, AttemptReport, DispatcherHandle, Item};
use crate::events::{Event, EventBus, ScheduleChange};
use crate::local::LocalHandler;
use crate::metrics::EngineMetrics;
use crate::recorder::{self, RecorderHandle};
use crate::registry::{Instance, InstanceSpec, Registry};
use crate::scheduler;
use crate::shared::{Activity, Shared};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("no schedule with id {0}")]
    NoSuchSchedule(ScheduleId),
    #[error("no connected instance of handler '{handler_id}' offers method '{method}'")]
    NoInstance { handler_id: String, method: String },
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// What a schedule is made of, as a caller gives it.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// Unique among live schedules; defaults to the schedule's id.
    pub name: Option<String>,
    pub trigger: Trigger,
    pub target: Target,
    pub policies: Policies,
    /// Create it paused.
    pub paused: bool,
}

impl ScheduleSpec {
    pub fn new(trigger: Trigger, target: Target) -> Self {
        Self { name: None, trigger, target, policies: Policies::default(), paused: false }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }
}

/// A running engine. Cheap to share behind an `Arc`; stop it with [`Engine::shutdown`].
pub struct Engine {
    shared: Arc<Shared>,
    dispatcher: DispatcherHandle,
    recorder: RecorderHandle,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// "Run now" outcomes not yet committed (`EngineConfig::run_now_backlog`).
    run_now_backlog: Arc<tokio::sync::Semaphore>,
}

impl Engine {
    /// Recovers what a previous process left running, then starts the services.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let recovery = store.recover(clock.now()).await?;
        if recovery.interrupted > 0 {
            tracing::warn!(
                interrupted = recovery.interrupted,
                retried = recovery.retried,
                "runs were in flight when the previous process stopped"
            );
        }
        let shared = Arc::new(Shared {
            store,
            clock,
            registry: Arc::new(Registry::default()),
            // The ring is allocated whole at the first subscription (about 136 bytes a slot):
            // 4,096 events of burst for a slow subscriber (which is told how many it missed)
            // cost 0.6 MB of resident memory; 16,384 cost 2.2 MB, a seventh of an idle server.
            events: EventBus::new(4_096),
            config,
            wake: tokio::sync::Notify::new(),
            activity: Activity::new(),
            metrics: EngineMetrics::register(),
        });
        let recorder = recorder::spawn(shared.clone());
        let dispatcher = dispatcher::spawn(shared.clone(), recorder.clone());
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(scheduler::run(shared.clone(), dispatcher.clone(), stop.clone())),
            tokio::spawn(purge_history(shared.clone(), stop.clone())),
        ];
        let backlog = shared.config.run_now_backlog.max(1);
        Ok(Engine {
            shared,
            dispatcher,
            recorder,
            stop,
            tasks: Mutex::new(tasks),
            run_now_backlog: Arc::new(tokio::sync::Semaphore::new(backlog)),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.shared.registry
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Listens to the engine's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// How to parse triggers now: the current time and the server's zone.
    pub fn parse_context(&self) -> ParseContext {
        ParseContext { now: self.shared.clock.now(), local_zone: self.shared.config.local_zone }
    }

    // --- handlers ---

    /// Adds a handler instance reached through a link (a reconnect replaces the old one).
    /// An instance the store remembers (it ran before this process, or before a disconnect)
    /// keeps its registration time and success and failure counts.
    pub async fn register_instance(&self, spec: InstanceSpec) -> Result<Arc<Instance>, EngineError> {
        let now = self.shared.clock.now();
        let mut instance = Instance::new(spec, now);
        let known = match self.shared.registry.get(&instance.handler_id, &instance.instance_id) {
            Some(old) => Some((old.registered_at, old.successes(), old.failures())),
            None => self
                .shared
                .store
                .list_handler_instances()
                .await?
                .into_iter()
                .find(|r| r.handler_id == instance.handler_id && r.instance_id == instance.instance_id)
                .map(|r| (r.registered_at, r.successes, r.failures)),
        };
        if let Some((registered_at, successes, failures)) = known {
            tracing::info!(handler = %instance.handler_id, instance = %instance.instance_id, "handler instance is back");
            instance.restore(registered_at, successes, failures);
        }
        // Stored first: an instance the store refused is not routable either.
        self.persist_instance(&instance).await?;
        let instance = Arc::new(instance);
        self.shared.registry.insert(instance.clone());
        self.shared.events.publish(Event::HandlerUp {
            handler_id: instance.handler_id.clone(),
            instance_id: instance.instance_id.clone(),
        });
        self.dispatcher.pump();
        Ok(instance)
    }

    /// Marks an instance gone; calls in flight on it end through its link.
    pub async fn instance_disconnected(
        &self,
        handler_id: &str,
        instance_id: &str,
    ) -> Result<(), EngineError> {
        if let Some(instance) = self.shared.registry.disconnect(handler_id, instance_id) {
            self.persist_instance(&instance).await?;
            self.shared.events.publish(Event::HandlerDown {
                handler_id: handler_id.to_string(),
                instance_id: instance_id.to_string(),
            });
        }
        Ok(())
    }

    /// Stops routing new calls to an instance (it said goodbye); calls in flight go on.
    pub async fn instance_draining(&self, handler_id: &str, instance_id: &str) -> Result<(), EngineError> {
        if let Some(instance) = self.shared.registry.drain(handler_id, instance_id) {
            self.persist_instance(&instance).await?;
        }
        Ok(())
    }

    /// The handler instances the store remembers (from this process or earlier ones).
    pub async fn known_instances(&self) -> Result<Vec<HandlerInstance>, EngineError> {
        Ok(self.shared.store.list_handler_instances().await?)
    }

    /// Tells the dispatcher an instance may take calls again (capacity freed, reconnected).
    pub fn handlers_changed(&self) {
        self.dispatcher.pump();
    }

    /// Registers local async functions as a handler instance (embedded mode).
    pub async fn add_local_handler(&self, handler: LocalHandler) -> Result<Arc<Instance>, EngineError> {
        let spec = InstanceSpec {
            handler_id: handler.handler_id.clone(),
            instance_id: format!("local:{}", self.shared.config.node_id),
            protocol: "local".to_string(),
            address: "local".to_string(),
            methods: handler.method_names(),
            capacity: handler.capacity,
            link: Arc::new(handler.into_link()),
        };
        self.register_instance(spec).await
    }

    async fn persist_instance(&self, i: &Instance) -> Result<(), EngineError> {
        self.shared.store.upsert_handler_instance(&i.record()).await?;
        Ok(())
    }

    // --- schedules ---

    /// Validates and stores a new schedule (committed before this returns) and wakes the loop if
    /// the schedule fires before the loop's planned wake-up.
    pub async fn add_schedule(&self, spec: ScheduleSpec) -> Result<Schedule, EngineError> {
        validate_target(&spec.target)?;
        spec.policies.validate()?;
        let now = self.shared.clock.now();
        let mut schedule = Schedule::new("", spec.trigger, spec.target, spec.policies, now);
        schedule.name = spec.name.unwrap_or_else(|| schedule.id.to_string());
        validate_name(&schedule.name)?;
        if schedule.next_fire_at.is_none() {
            return Err(never_fires(&schedule.trigger));
        }
        if spec.paused && schedule.state == ScheduleState::Active {
            schedule.state = ScheduleState::Paused;
        }
        self.shared.store.insert_schedule(&schedule).await?;
        self.shared
            .events
            .publish(Event::ScheduleChanged { schedule_id: schedule.id, change: ScheduleChange::Created });
        // Paused or finished: nothing for the loop to claim.
        if schedule.state == ScheduleState::Active
            && let Some(at) = schedule.next_fire_at
        {
            self.shared.wake_scheduler_before(at);
        }
        Ok(schedule)
    }

    /// Replaces a schedule's definition; a new trigger starts from now.
    pub async fn update_schedule(&self, id: ScheduleId, spec: ScheduleSpec) -> Result<Schedule, EngineError> {
        validate_target(&spec.target)?;
        spec.policies.validate()?;
        let mut s = self.existing(id).await?;
        let now = self.shared.clock.now();
        if s.trigger != spec.trigger {
            s.next_fire_at = spec.trigger.first_fire(now);
            if s.next_fire_at.is_none() {
                return Err(never_fires(&spec.trigger));
            }
            s.trigger = spec.trigger;
        }
        if let Some(name) = spec.name {
            validate_name(&name)?;
            s.name = name;
        }
        s.target = spec.target;
        s.policies = spec.policies;
        s.state = match (s.next_fire_at, spec.paused) {
            (None, _) => ScheduleState::Finished,
            (Some(_), true) => ScheduleState::Paused,
            (Some(_), false) => ScheduleState::Active,
        };
        s.updated_at = now;
        self.shared.store.update_schedule(&s).await?;
        self.changed(id, ScheduleChange::Updated);
        Ok(s)
    }

    /// Stops a schedule firing; its runs in progress continue.
    pub async fn pause(&self, id: ScheduleId) -> Result<Schedule, EngineError> {
        let mut s = self.existing(id).await?;
        if s.state == ScheduleState::Active {
            s.state = ScheduleState::Paused;
            s.updated_at = self.shared.clock.now();
            self.shared.store.update_schedule(&s).await?;
            self.changed(id, ScheduleChange::Paused);
        }
        Ok(s)
    }

    /// Fires again from now on: slots that passed while paused are not run nor recorded.
    pub async fn resume(&self, id: ScheduleId) -> Result<Schedule, EngineError> {
        let mut s = self.existing(id).await?;
        if s.state == ScheduleState::Paused {
            let now = self.shared.clock.now();
            s.next_fire_at = s.trigger.first_fire(now);
            s.state = if s.next_fire_at.is_some() { ScheduleState::Active } else { ScheduleState::Finished };
            s.updated_at = now;
            self.shared.store.update_schedule(&s).await?;
            self.changed(id, ScheduleChange::Resumed);
        }
        Ok(s)
    }

    /// Deletes a schedule; its runs not yet started are cancelled, its history kept.
    pub async fn delete_schedule(&self, id: ScheduleId) -> Result<bool, EngineError> {
        let deleted = self.shared.store.delete_schedule(id, self.shared.clock.now()).await?;
        if deleted {
            self.changed(id, ScheduleChange::Deleted);
        }
        Ok(deleted)
    }

    pub async fn get_schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, EngineError> {
        Ok(self.shared.store.get_schedule(id).await?)
    }

    pub async fn find_schedule(&self, name: &str) -> Result<Option<Schedule>, EngineError> {
        Ok(self.shared.store.find_schedule(name).await?)
    }

    pub async fn list_schedules(&self, filter: &ScheduleFilter) -> Result<Vec<Schedule>, EngineError> {
        Ok(self.shared.store.list_schedules(filter).await?)
    }

    /// The active schedules that fire next, earliest first, at most `limit`.
    pub async fn next_fires(&self, limit: u32) -> Result<Vec<Schedule>, EngineError> {
        Ok(self.shared.store.next_fires(limit).await?)
    }

    /// Names of live schedules in name order, at most `limit` (suggestions for a filter box).
    pub async fn live_schedule_names(&self, limit: u32) -> Result<Vec<String>, EngineError> {
        Ok(self.shared.store.live_schedule_names(limit).await?)
    }

    /// Runs counted by state among those whose slot is in `[from, to)`.
    pub async fn count_runs_by_state(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(RunState, u64)>, EngineError> {
        Ok(self.shared.store.count_runs_by_state(from, to).await?)
    }

    async fn existing(&self, id: ScheduleId) -> Result<Schedule, EngineError> {
        self.shared.store.get_schedule(id).await?.ok_or(EngineError::NoSuchSchedule(id))
    }

    fn changed(&self, id: ScheduleId, change: ScheduleChange) {
        self.shared.events.publish(Event::ScheduleChanged { schedule_id: id, change });
        self.shared.wake_scheduler();
    }

    // --- runs ---

    /// Calls a method once, now, outside any schedule, and waits for the reply (at most
    /// `timeout`, queueing included). One attempt, never retried; recorded in the run history.
    pub async fn run_now(&self, target: Target, timeout: Duration) -> Result<AttemptReport, EngineError> {
        validate_target(&target)?;
        if self.stop.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        if !self.shared.registry.offers(&target.handler_id, &target.method) {
            return Err(EngineError::NoInstance { handler_id: target.handler_id, method: target.method });
        }
        let now = self.shared.clock.now();
        let timeout_delta = TimeDelta::from_std(timeout).unwrap_or(TimeDelta::seconds(30));
        let run = Run {
            id: uuid::Uuid::now_v7(),
            schedule_id: None,
            scheduled_for: now,
            // Its one attempt starts now; no dispatch time: no lease sweep would pick it up,
            // it is this caller's.
            dispatch_at: None,
            state: RunState::Running,
            attempt: 1,
            max_attempts: 1,
            target,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            result: None,
            error: None,
            slot_count: 1,
        };
        // Not stored now: the recorder inserts it with its outcome in its next batch, off the
        // call path (the caller may have the reply a few milliseconds before the record is
        // committed). Until then the dispatcher holds it, so cancel works; a crash before the
        // commit leaves no record of it.
        let run_id = run.id;
        let policies = Policies {
            retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
            timeout: timeout_delta,
            ..Policies::default()
        };
        let admission = tokio::select! {
            permit = self.run_now_backlog.clone().acquire_owned() => permit.map_err(|_| EngineError::ShuttingDown)?,
            _ = self.shared.clock.sleep_until(now + timeout_delta) => return Err(EngineError::Timeout(timeout)),
        };
        let (tx, rx) = oneshot::channel();
        self.shared.activity.runs_taken(1);
        self.dispatcher.submit(vec![Item {
            dispatch: Dispatch { run, policies },
            report: Some(tx),
            unsaved: true,
            admission: Some(admission),
        }]);
        tokio::select! {
            report = rx => report.map_err(|_| EngineError::ShuttingDown),
            _ = self.shared.clock.sleep_until(now + timeout_delta) => {
                // Still waiting for a free instance, or the call's own deadline raced this one.
                self.dispatcher.cancel(run_id).await;
                Err(EngineError::Timeout(timeout))
            }
        }
    }

    /// Starts a run of a schedule now, outside its trigger ("run it now" in the API and the
    /// dashboard): the schedule's target and policies, retries included; the overlap policy does
    /// not apply to a run someone asked for. Stored pending and due now (committed before this
    /// returns), then dispatched like any slot, so it survives a restart.
    pub async fn run_schedule_now(&self, id: ScheduleId) -> Result<Run, EngineError> {
        if self.stop.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let s = self.existing(id).await?;
        let now = self.shared.clock.now();
        let mut run = Run {
            id: uuid::Uuid::now_v7(),
            schedule_id: Some(id),
            scheduled_for: now,
            dispatch_at: Some(now),
            state: RunState::Pending,
            attempt: 0,
            max_attempts: s.policies.retry.max_attempts,
            target: s.target,
            created_at: now,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            slot_count: 1,
        };
        // A slot is unique per schedule: a second request in the same millisecond (or a trigger
        // slot at that very instant) takes the next free millisecond.
        for _ in 0..100 {
            match self.shared.store.insert_run(&run).await {
                Ok(()) => {
                    self.shared.wake_scheduler();
                    return Ok(run);
                }
                Err(StoreError::DuplicateSlot { .. }) => {
                    run.id = uuid::Uuid::now_v7();
                    run.scheduled_for += TimeDelta::milliseconds(1);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Invalid {
            field: "schedule".into(),
            message: "too many runs requested in the same instant; try again".into(),
        })
    }

    /// Cancels a run: one waiting or in flight here is stopped (its attempt recorded
    /// `cancelled`); one pending in the store is cancelled there. Returns its state afterwards
    /// (`running` while the handler is being told).
    pub async fn cancel_run(&self, run: RunId) -> Result<RunState, EngineError> {
        if self.dispatcher.cancel(run).await {
            return Ok(RunState::Running);
        }
        Ok(self.shared.store.cancel_run(run, self.shared.clock.now()).await?)
    }

    /// Resolves once the engine has claimed everything due at the clock's current time and
    /// committed every outcome: for tests that move a virtual clock.
    pub async fn idle(&self) {
        loop {
            let st = *self.shared.activity.scheduler.borrow();
            let now = self.shared.clock.now();
            let wakes = self.shared.activity.wakes.load(std::sync::atomic::Ordering::Acquire);
            if st.parked
                && st.wakes_seen == wakes
                && st.quiet_until.is_some_and(|q| q > now)
                && self.shared.activity.due_outstanding() == 0
                && !self.shared.activity.held_due(now)
            {
                self.recorder.flush().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops firing, lets calls in flight finish within the configured grace (the rest are
    /// recorded `interrupted` and retried at the next start per policy), and commits everything.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.dispatcher.shutdown(self.shared.config.shutdown_grace).await;
        self.recorder.flush().await;
        // Keep each instance's counts and last sighting for the next start (they are in memory
        // between connects and disconnects); none is connected to a stopped server.
        for instance in self.shared.registry.instances() {
            instance.set_connected(false);
            if let Err(e) = self.persist_instance(&instance).await {
                tracing::warn!(error = %e, instance = %instance.instance_id, "could not save a handler instance");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The longest schedule name accepted (it is shown in tables and URLs).
pub const MAX_NAME_CHARS: usize = 200;

fn validate_name(name: &str) -> Result<(), EngineError> {
    let invalid = |message: String| Err(EngineError::Invalid { field: "name".into(), message });
    if name.trim().is_empty() {
        return invalid("must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return invalid(format!("is {} characters long; at most {MAX_NAME_CHARS}", name.chars().count()));
    }
    if name.chars().any(char::is_control) {
        return invalid("must not contain control characters".into());
    }
    Ok(())
}

/// A trigger with no fire time from now on would make a schedule that is finished at birth.
fn never_fires(trigger: &Trigger) -> EngineError {
    EngineError::Invalid {
        field: "trigger".into(),
        message: format!(
            "{} has no fire time from now on (its dates or end are in the past, or its fields never match)",
            trigger.describe()
        ),
    }
}

fn validate_target(t: &Target) -> Result<(), EngineError> {
    if t.handler_id.trim().is_empty() {
        return Err(EngineError::Invalid { field: "handler_id".into(), message: "must not be empty".into() });
    }
    if t.method.trim().is_empty() {
        return Err(EngineError::Invalid { field: "job_method".into(), message: "must not be empty".into() });
    }
    if !t.params.is_object() {
        return Err(EngineError::Invalid {
            field: "job_params".into(),
            message: "must be a JSON object".into(),
        });
    }
    Ok(())
}

/// Deletes finished runs older than the retention, periodically.
async fn purge_history(shared: Arc<Shared>, stop: CancellationToken) {
    let Some(retention) = shared.config.history_retention else { return };
    loop {
        let next = shared.clock.now() + shared.config.purge_every;
        tokio::select! {
            _ = shared.clock.sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        match shared.store.purge_history(shared.clock.now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "purged run history past retention"),
            Err(e) => tracing::warn!(error = %e, "purging run history failed"),
        }
    }
}
