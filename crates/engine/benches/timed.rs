//! A `Store` that forwards to another and times every call: where the benchmark's time goes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use schedulezero_core::Timestamp;
use schedulezero_core::run::{Attempt, Run, RunId, RunState};
use schedulezero_core::schedule::{Schedule, ScheduleId};
use schedulezero_store::{
    AttemptEnd, AttemptStart, ClaimBatch, Dispatch, HandlerInstance, Recovery, RunFilter, ScheduleFilter,
    Store, StoreResult,
};

#[derive(Default)]
pub struct Stat {
    calls: u64,
    items: u64,
    micros: u128,
}

pub struct Timed {
    pub inner: Arc<dyn Store>,
    pub stats: Mutex<BTreeMap<&'static str, Stat>>,
}

impl Timed {
    fn note(&self, op: &'static str, items: usize, since: Instant) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let s = stats.entry(op).or_default();
        s.calls += 1;
        s.items += items as u64;
        s.micros += since.elapsed().as_micros();
    }

    pub fn report(&self, seconds: u64) {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        println!("store calls (wall time inside each call, over {seconds} s):");
        for (op, s) in stats.iter() {
            println!(
                "  {op:<16} {:>8} calls  {:>9} items ({:>6.1}/call)  {:>7.2} s busy  {:>7.0} µs/call",
                s.calls,
                s.items,
                s.items as f64 / s.calls.max(1) as f64,
                s.micros as f64 / 1e6,
                s.micros as f64 / s.calls.max(1) as f64
            );
        }
    }
}

macro_rules! timed {
    ($self:ident, $op:literal, $items:expr, $call:expr) => {{
        let t = Instant::now();
        let r = $call.await;
        let n = match &r {
            Ok(v) => $items(v),
            Err(_) => 0,
        };
        $self.note($op, n, t);
        r
    }};
}

#[async_trait]
impl Store for Timed {
    async fn insert_schedule(&self, s: &Schedule) -> StoreResult<()> {
        self.inner.insert_schedule(s).await
    }
    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        self.inner.get_schedule(id).await
    }
    async fn find_schedule(&self, name: &str) -> StoreResult<Option<Schedule>> {
        self.inner.find_schedule(name).await
    }
    async fn update_schedule(&self, s: &Schedule) -> StoreResult<()> {
        self.inner.update_schedule(s).await
    }
    async fn delete_schedule(&self, id: ScheduleId, now: Timestamp) -> StoreResult<bool> {
        self.inner.delete_schedule(id, now).await
    }
    async fn list_schedules(&self, f: &ScheduleFilter) -> StoreResult<Vec<Schedule>> {
        self.inner.list_schedules(f).await
    }
    async fn schedule_names(
        &self,
        ids: &[uuid::Uuid],
    ) -> StoreResult<std::collections::HashMap<uuid::Uuid, String>> {
        self.inner.schedule_names(ids).await
    }
    async fn schedules_named(&self, name: &str) -> StoreResult<Vec<uuid::Uuid>> {
        self.inner.schedules_named(name).await
    }
    async fn next_wake(&self) -> StoreResult<Option<Timestamp>> {
        timed!(self, "next_wake", |_: &Option<Timestamp>| 0, self.inner.next_wake())
    }
    async fn claim_due(
        &self,
        node: &str,
        now: Timestamp,
        limit: usize,
        start: bool,
    ) -> StoreResult<ClaimBatch> {
        timed!(self, "claim_due", |b: &ClaimBatch| b.slots, self.inner.claim_due(node, now, limit, start))
    }
    async fn lease_due_runs(&self, node: &str, now: Timestamp, limit: usize) -> StoreResult<Vec<Dispatch>> {
        timed!(
            self,
            "lease_due_runs",
            |v: &Vec<Dispatch>| v.len(),
            self.inner.lease_due_runs(node, now, limit)
        )
    }
    async fn release_runs(&self, runs: &[RunId]) -> StoreResult<()> {
        self.inner.release_runs(runs).await
    }
    async fn start_attempts(&self, starts: &[AttemptStart]) -> StoreResult<()> {
        let n = starts.len();
        timed!(self, "start_attempts", |_: &()| n, self.inner.start_attempts(starts))
    }
    async fn record_attempts(&self, ends: &[AttemptEnd], now: Timestamp) -> StoreResult<()> {
        let n = ends.len();
        timed!(self, "record_attempts", |_: &()| n, self.inner.record_attempts(ends, now))
    }
    async fn recover(&self, now: Timestamp) -> StoreResult<Recovery> {
        self.inner.recover(now).await
    }
    async fn insert_run(&self, run: &Run) -> StoreResult<()> {
        self.inner.insert_run(run).await
    }
    async fn insert_runs(&self, runs: &[Run]) -> StoreResult<()> {
        self.inner.insert_runs(runs).await
    }
    async fn get_run(&self, id: RunId) -> StoreResult<Option<Run>> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, f: &RunFilter) -> StoreResult<Vec<Run>> {
        self.inner.list_runs(f).await
    }
    async fn list_attempts(&self, run: RunId) -> StoreResult<Vec<Attempt>> {
        self.inner.list_attempts(run).await
    }
    async fn cancel_run(&self, run: RunId, now: Timestamp) -> StoreResult<RunState> {
        self.inner.cancel_run(run, now).await
    }
    async fn purge_history(&self, before: Timestamp) -> StoreResult<u64> {
        self.inner.purge_history(before).await
    }
    async fn run_counts(&self) -> StoreResult<Vec<schedulezero_store::RunCount>> {
        self.inner.run_counts().await
    }
    async fn count_runs_by_state(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<(schedulezero_core::run::RunState, u64)>> {
        self.inner.count_runs_by_state(from, to).await
    }
    async fn next_fires(&self, limit: u32) -> StoreResult<Vec<Schedule>> {
        self.inner.next_fires(limit).await
    }
    async fn live_schedule_names(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.inner.live_schedule_names(limit).await
    }
    async fn upsert_handler_instance(&self, i: &HandlerInstance) -> StoreResult<()> {
        self.inner.upsert_handler_instance(i).await
    }
    async fn list_handler_instances(&self) -> StoreResult<Vec<HandlerInstance>> {
        self.inner.list_handler_instances().await
    }
}
