//! The history retention service: deletes finished runs (and their attempts) older than the
//! configured retention, once at start and then at a fixed interval, logging what it deleted.
//!
//! A maintenance duty of the server (`[server] history_retention`); the engine's own purge loop
//! is for embedded mode and is turned off when the server runs this one. Runs still pending,
//! running or retrying are never touched, whatever their age (`Store::purge_history`).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use schedulezero_engine::clock::Clock;
use schedulezero_store::Store;
use tokio_util::sync::CancellationToken;

/// What the service keeps and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Finished runs are kept this long after they finished; `None`: forever.
    pub keep: Option<TimeDelta>,
    /// Time between passes (the first runs at start).
    pub every: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { keep: Some(TimeDelta::days(30)), every: Duration::from_secs(3600) }
    }
}

pub struct Retention {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: RetentionPolicy,
}

impl Retention {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: RetentionPolicy) -> Self {
        Self { store, clock, policy }
    }

    /// One pass: deletes what is past retention; returns how many runs went.
    pub async fn purge_once(&self) -> Result<u64, schedulezero_store::StoreError> {
        let Some(keep) = self.policy.keep else { return Ok(0) };
        let cutoff = self.clock.now() - keep;
        let n = self.store.purge_history(cutoff).await?;
        if n > 0 {
            tracing::info!(runs = n, finished_before = %cutoff.to_rfc3339(), "purged run history past retention");
        } else {
            tracing::debug!(finished_before = %cutoff.to_rfc3339(), "no run history past retention");
        }
        Ok(n)
    }

    /// Passes at start and every `every` until `stop`. A failed pass is logged and the next one
    /// tries again: history grows meanwhile, nothing else is affected.
    pub async fn run(self, stop: CancellationToken) {
        if self.policy.keep.is_none() {
            tracing::info!("run history is kept forever (history_retention = \"off\")");
            return;
        }
        loop {
            if let Err(e) = self.purge_once().await {
                tracing::warn!(error = %e, "purging run history failed; trying again at the next pass");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.policy.every) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
