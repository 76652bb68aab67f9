//! Reading what clients send: JSON bodies and query strings, with a 4xx that names the field
//! for every mistake (never a 500, never a bare serde message without a path).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;
use schedulezero_core::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ApiError;

pub(crate) type QueryParams = Result<Query<HashMap<String, String>>, QueryRejection>;
pub(crate) type Body = Result<Bytes, BytesRejection>;

/// The raw body, or a 4xx: over the size limit (413), unreadable or empty (400).
fn bytes_of(body: Body) -> Result<Bytes, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {} bytes", super::MAX_BODY_BYTES),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON object body"));
    }
    Ok(bytes)
}

/// The body as a JSON object.
pub(crate) fn json_object(body: Body) -> Result<Map<String, Value>, ApiError> {
    let bytes = bytes_of(body)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
    }
}

/// The body as a typed request; a wrong field is named by its path (`target.params`).
pub(crate) fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = bytes_of(body)?;
    // Straight from the bytes (no intermediate `Value`: a create is parsed once, not twice).
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // Syntax first (as a reader of the body would see it), then shape, then the field.
        if !inner.is_data() {
            return ApiError::bad_request(format!("the request body is not valid JSON: {inner}"));
        }
        if path == "." {
            if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                    Ok(_) => ApiError::bad_request("the request body must be a JSON object"),
                    Err(e) => ApiError::bad_request(format!("the request body is not valid JSON: {e}")),
                };
            }
            ApiError::bad_request(format!("the request body: {inner}"))
        } else {
            ApiError::bad_request(format!("'{path}': {inner}"))
        }
    })?;
    de.end().map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The query string as a map, refusing parameters this route does not know (a typo would
/// otherwise silently widen a listing).
pub(crate) fn query_of(q: QueryParams, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let q = q.map(|Query(m)| m).map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    if !known.is_empty()
        && let Some(unknown) = q.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter '{unknown}'; this route takes: {}",
            known.join(", ")
        )));
    }
    Ok(q)
}

/// `limit` clamped to `1..=max`, `default` when absent.
pub(crate) fn limit_of(q: &HashMap<String, String>, default: u32, max: u32) -> Result<u32, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map(|n| n.clamp(1, max))
            .map_err(|_| ApiError::bad_request(format!("'limit' must be a whole number, got '{v}'"))),
    }
}

/// A boolean query parameter (`true`/`false`/`1`/`0`).
pub(crate) fn flag_of(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" || v == "1" || v.is_empty() => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!("'{key}' must be true or false, got '{v}'"))),
    }
}

/// A UUID parameter (a cursor or an id), naming the parameter when it is not one.
pub(crate) fn uuid_of(key: &str, text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text.trim()).map_err(|_| {
        ApiError::bad_request(format!("'{key}' must be an id as returned by this API, got '{text}'"))
    })
}

/// A time parameter: RFC 3339 (or a naive time, read as UTC) or Unix seconds.
pub(crate) fn time_of(key: &str, text: &str) -> Result<Timestamp, ApiError> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return chrono::DateTime::from_timestamp_millis((secs * 1000.0) as i64)
            .filter(|_| secs.is_finite())
            .ok_or_else(|| ApiError::bad_request(format!("'{key}': {text} is out of range")));
    }
    schedulezero_core::time::parse_timestamp(key, text, chrono_tz::UTC)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}
