//! `GET /api/events`: the engine's events as server-sent events (schedule changes, runs started
//! and finished, handlers up and down), each `event: <kind>` with a JSON `data:` line. A client
//! too slow to keep up gets a `lagged` event saying how many it missed; the stream ends when the
//! server stops. `GET /api/ready`: 200 once the server is serving (503 while stopping).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/events", get(events)).route("/api/ready", get(ready))
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    if s.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false, "reason": "stopping"})))
            .into_response();
    }
    axum::Json(json!({"ready": true})).into_response()
}

async fn events(State(s): State<Arc<AppState>>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.engine.subscribe();
    let stopping = s.stopping.clone();
    let stream = futures::stream::unfold((rx, stopping), |(mut rx, stopping)| async move {
        let event = tokio::select! {
            _ = stopping.cancelled() => return None,
            e = rx.recv() => e,
        };
        let sse = match event {
            Ok(e) => {
                let data = serde_json::to_value(&e).unwrap_or_default();
                let kind = data.get("event").and_then(|k| k.as_str()).unwrap_or("event").to_string();
                SseEvent::default().event(kind).data(data.to_string())
            }
            Err(RecvError::Lagged(n)) => {
                SseEvent::default().event("lagged").data(json!({"missed": n}).to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(sse), (rx, stopping)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
