//! Trigger preview: the next fire times of a trigger, by the same code as
//! `schedulezero trigger next` (`core::trigger::preview`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use schedulezero_core::time::format_in_zone;
use schedulezero_core::trigger::{parse_value, preview as next_fires};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::input::{self, Body};
use crate::http::views::ErrorBody;
use crate::http::{ApiError, AppState};

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(preview))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewRequest {
    /// A trigger object or a crontab string, as in `POST /api/schedules`.
    #[schema(value_type = Object, example = json!({"type": "cron", "expression": "0 9 * * mon-fri"}))]
    trigger: Value,
    /// The zone of a trigger that names none (default: the server's).
    timezone: Option<String>,
    /// How many fire times, 1–100 (default 5).
    count: Option<u32>,
    /// Start after this time (RFC 3339; naive = in the trigger's zone). Default: now.
    after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct PreviewResponse {
    /// A readable description of the trigger.
    description: String,
    timezone: String,
    /// The trigger in its canonical form (what a schedule would store).
    #[schema(value_type = Object)]
    trigger: Value,
    /// The next fire times in the trigger's zone; fewer than asked when the trigger ends.
    fires: Vec<String>,
}

/// Preview a trigger's next fire times.
#[utoipa::path(post, path = "/api/triggers/preview", tag = "triggers", request_body = PreviewRequest,
    responses((status = 200, body = PreviewResponse), (status = 400, body = ErrorBody)))]
async fn preview(State(s): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let req: PreviewRequest = input::json_body(body)?;
    let count = req.count.unwrap_or(5);
    if !(1..=100).contains(&count) {
        return Err(ApiError::bad_request(format!("'count' must be between 1 and 100, got {count}")));
    }
    let zone = req
        .timezone
        .as_deref()
        .map(|n| {
            n.trim().parse::<Tz>().map_err(|_| {
                ApiError::bad_request(format!(
                    "'timezone': '{n}' is not an IANA time zone name (e.g. 'Europe/Paris')"
                ))
            })
        })
        .transpose()?;
    let ctx = s.engine.parse_context();
    let trigger =
        parse_value(req.trigger, zone, &ctx).map_err(|e| ApiError::bad_request(format!("trigger: {e}")))?;
    let fires = next_fires(&trigger, req.after.as_deref(), count as usize, ctx.now)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(axum::Json(PreviewResponse {
        description: trigger.describe(),
        timezone: trigger.zone().name().to_string(),
        trigger: trigger.to_json(),
        fires: fires.iter().map(|t| format_in_zone(*t, trigger.zone())).collect(),
    })
    .into_response())
}
