//! The scheduler loop: sleep until just before the earliest fire (or a wake-up), claim what is
//! due by then in batched transactions, hand the runs to the dispatcher (which holds each until its
//! time), repeat. Only the next wake-up time is held in memory; the store holds every schedule's
//! next fire.

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
    let ahead = TimeDelta::from_std(shared.config.claim_ahead).unwrap_or_default();
    // The fire time this loop woke early for, `claim_ahead` before it.
    let mut early_for: Option<Timestamp> = None;
    while !stop.is_cancelled() {
        shared.activity.scheduler.send_modify(|s| s.parked = false);
        let wakes_seen = shared.activity.wakes.load(std::sync::atomic::Ordering::Acquire);
        let now = shared.clock.now();
        // Claim as of the fire time when it is still ahead: its slots are claimed (and their
        // attempts recorded as started) at their time, not at this early moment.
        let at = early_for.take().filter(|t| *t > now).unwrap_or(now);
        match tick(&shared, &dispatcher, at).await {
            Ok((next, handed)) => {
                backoff = Duration::from_millis(100);
                let wake_at = next.map_or(now + MAX_SLEEP, |n| n.min(now + MAX_SLEEP));
                // Wake `claim_ahead` before a fire (not before a mere re-check after MAX_SLEEP).
                let is_fire = next == Some(wake_at);
                let sleep_until = if is_fire { (wake_at - ahead).max(at) } else { wake_at };
                // Register for wake-ups before publishing that we are parked.
                let notified = shared.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                // Quiet until the early wake-up: a schedule created for a time after it is
                // claimed by that wake-up's claim (which reaches `wake_at`) or a later one.
                shared.activity.scheduler.send_replace(LoopState {
                    quiet_until: Some(sleep_until),
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
                    _ = shared.clock.sleep_until(sleep_until) => {
                        if is_fire {
                            early_for = Some(wake_at);
                        }
                    }
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
/// time something is due. `now` may be a moment ahead of the clock (`claim_ahead`): the
/// dispatcher holds what is not due yet.
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
