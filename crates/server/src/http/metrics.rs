//! `GET /metrics`: the process's metrics in the Prometheus text format (docs/METRICS.md).
//!
//! The recorder is process-global (the `metrics` facade has one slot), so it is installed once,
//! by the first server of the process, before its engine registers its handles. The engine's
//! counters and histograms are recorded as things happen; the gauges below are read from the
//! handler registry at each scrape, so they can never drift from it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{Unit, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use super::{ApiError, AppState};

/// Handler instances connected and taking calls (not draining), by handler id.
const HANDLERS_CONNECTED: &str = "schedulezero_handlers_connected";
/// Calls reserved on or in flight to handler instances.
const RUNS_IN_FLIGHT: &str = "schedulezero_runs_in_flight";

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their buckets when nobody scrapes, so memory
/// stays bounded (a scrape folds them too).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The installed recorder's handle; `None` when another recorder held the slot first (a program
/// embedding the server with its own).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder if this process has none yet. Call it before starting the
/// engine: its handles bind to the recorder installed when it starts.
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(schedulezero_engine::metrics::SECONDS_BUCKETS)
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "metrics are off: the histogram buckets were refused");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    schedulezero_engine::metrics::describe();
                    describe_gauge!(
                        HANDLERS_CONNECTED,
                        Unit::Count,
                        "Handler instances connected and taking calls (not draining), by handler id. \
                         A handler whose instances are all gone shows 0."
                    );
                    describe_gauge!(
                        RUNS_IN_FLIGHT,
                        Unit::Count,
                        "Calls reserved on or in flight to handler instances (sent, no reply yet)."
                    );
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "GET /metrics is off: this process already has a metrics recorder");
                    None
                }
            }
        })
        .as_ref()
}

/// Folds histogram samples into buckets every few seconds until `stop`.
pub(crate) async fn upkeep(stop: CancellationToken) {
    let Some(handle) = HANDLE.get().and_then(Option::as_ref) else { return };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
            _ = stop.cancelled() => return,
        }
    }
}

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let Some(handle) = HANDLE.get().and_then(Option::as_ref) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are off in this process: another metrics recorder was installed first",
        )
        .into_response();
    };
    let mut connected: BTreeMap<String, u32> = BTreeMap::new();
    let mut in_flight = 0u64;
    for i in s.engine.registry().instances() {
        *connected.entry(i.handler_id.clone()).or_default() += u32::from(i.takes_calls());
        in_flight += u64::from(i.in_flight());
    }
    for (handler, n) in connected {
        gauge!(HANDLERS_CONNECTED, "handler" => handler).set(n);
    }
    gauge!(RUNS_IN_FLIGHT).set(in_flight as f64);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response()
}
