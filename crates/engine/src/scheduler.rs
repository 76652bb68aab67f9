//! The scheduler loop: sleep until the earliest fire (or a wake-up), claim what is due in
//! batched transactions, hand the runs to the dispatcher, repeat. Only the next wake-up time is
//! held in memory; the store holds every schedule's next fire.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use schedulezero_core::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::{DispatcherHandle, Item};
use crate::shared::{LoopState, Shared};

/// Sleep at most this long, so other nodes' changes to a shared store are seen within it.
const MAX_SLEEP: TimeDelta = TimeDelta::seconds(5);

pub(crate) async fn run(shared: Arc<Shared>, dispatcher: DispatcherHandle, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        shared.activity.scheduler.send_modify(|s| s.parked = false);
        let wakes_seen = shared.activity.wakes.load(std::sync::atomic::Ordering::Acquire);
        let now = shared.clock.now();
        match tick(&shared, &dispatcher, now).await {
            Ok((next, handed)) => {
                backoff = Duration::from_millis(100);
                let wake_at = next.map_or(now + MAX_SLEEP, |n| n.min(now + MAX_SLEEP));
                // Register for wake-ups before publishing that we are parked.
                let notified = shared.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                shared.activity.scheduler.send_replace(LoopState {
                    quiet_until: Some(wake_at),
                    parked: true,
                    wakes_seen,
                });
                if next.is_some_and(|n| n <= shared.clock.now()) {
                    if handed == 0 {
                        // Due but nothing claimable (another node holds it): don't spin.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                }
                tokio::select! {
                    _ = shared.clock.sleep_until(wake_at) => {}
                    _ = notified => {}
                    _ = stop.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduler tick failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    shared.activity.scheduler.send_modify(|s| s.parked = true);
}

/// Schedules taken by the first claim of a tick (then twice as many each time, up to
/// `EngineConfig::claim_batch`).
const FIRST_CLAIM: usize = 64;

/// Claims everything due at `now` and leases runs whose dispatch time has come; returns the next
/// time something is due.
async fn tick(
    shared: &Shared,
    dispatcher: &DispatcherHandle,
    now: Timestamp,
) -> Result<(Option<Timestamp>, usize), schedulezero_store::StoreError> {
    let node = shared.config.node_id.as_str();
    let batch = shared.config.claim_batch.max(1);
    let mut handed = 0;
    // Claims start small and double: the first calls of a burst go out while later slots are
    // still being claimed, instead of after one long transaction for all of them.
    let mut claim = FIRST_CLAIM.min(batch);
    loop {
        let claimed = shared.store.claim_due(node, now, claim, true).await?;
        for run in &claimed.cancel {
            let d = dispatcher.clone();
            let run = *run;
            tokio::spawn(async move { d.cancel(run).await });
        }
        handed += claimed.slots;
        shared.metrics.claimed(&claimed);
        hand_on(shared, dispatcher, claimed.ready);
        if claimed.schedules < claim {
            break;
        }
        claim = (claim * 2).min(batch);
    }
    loop {
        let leased = shared.store.lease_due_runs(node, now, batch).await?;
        let n = leased.len();
        handed += n;
        hand_on(shared, dispatcher, leased);
        if n < batch {
            break;
        }
    }
    Ok((shared.store.next_wake().await?, handed))
}

fn hand_on(shared: &Shared, dispatcher: &DispatcherHandle, runs: Vec<schedulezero_store::Dispatch>) {
    if runs.is_empty() {
        return;
    }
    shared.activity.runs_taken(runs.len());
    dispatcher.submit(
        runs.into_iter()
            .map(|dispatch| Item { dispatch, report: None, unsaved: false, admission: None })
            .collect(),
    );
}
