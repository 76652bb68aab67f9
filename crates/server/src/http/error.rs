//! Every HTTP error is `{"error": {"code": <status>, "message": "<what was wrong, what to do>"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schedulezero_engine::EngineError;
use schedulezero_store::StoreError;
use serde_json::json;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.status.as_u16(), "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        EngineError::from(e).into()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match &e {
            EngineError::Trigger(_) | EngineError::Policy(_) | EngineError::Invalid { .. } => {
                ApiError::bad_request(e.to_string())
            }
            EngineError::Store(StoreError::DuplicateName(_)) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            EngineError::Store(StoreError::NotFound { .. }) | EngineError::NoSuchSchedule(_) => {
                ApiError::not_found(e.to_string())
            }
            EngineError::NoInstance { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            EngineError::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
            EngineError::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            EngineError::Store(_) => {
                tracing::error!(error = %e, "store error while serving a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the store failed: {e}"))
            }
        }
    }
}
