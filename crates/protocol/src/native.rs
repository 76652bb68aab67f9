//! The native protocol's messages (docs/PROTOCOL.md). Every message is two frames: the
//! signature [`SIGNATURE`] and one UTF-8 JSON object whose `type` names the message. Unknown
//! fields are ignored so either end can add optional ones; an unknown `type` is an error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

/// The first frame of every native message: protocol name and version.
pub const SIGNATURE: &[u8] = b"SZ1";

/// Longest handler or instance id, and longest method name, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Most methods one hello may declare.
pub const MAX_METHODS: usize = 1024;
/// Most calls one instance may declare it takes at once.
pub const MAX_CAPACITY: u32 = 10_000;

/// A message a handler sends to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromHandler {
    /// First message on a connection, and the answer to `hello_again`.
    Hello(Hello),
    /// Sent every heartbeat interval (the server's `welcome` sets it); any message counts as one.
    Heartbeat {
        /// Calls the handler is running now.
        #[serde(default)]
        in_flight: u32,
    },
    /// The outcome of one call.
    Result(CallResult),
    /// The handler is draining: send no new calls; results of calls in flight will follow.
    Goodbye {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The handler is closing now; calls still in flight on it will get no result.
    Bye,
}

/// What a handler declares about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The handler (pool) this instance belongs to; jobs target it by this id.
    pub handler_id: String,
    /// Stable for one instance across reconnects and restarts (a configured name, or one the SDK
    /// generated and kept), so the server recognises it when it comes back.
    pub instance_id: String,
    /// The methods this instance serves.
    pub methods: Vec<String>,
    /// How many calls it takes at once (at least 1).
    pub capacity: u32,
    /// Shown to the server's access control, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Free text naming the SDK and its version, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// New for every process start (a random UUID), the same across that process's reconnects.
    /// A hello with a new session for a known instance means the handler restarted: its calls
    /// in flight are gone, and the server retries them at once instead of at their deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The outcome of one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    pub run_id: Uuid,
    pub attempt: u32,
    /// Whether the method succeeded.
    pub success: bool,
    /// The method's return value (success), or detail that goes with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed (required when `success` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the handler did not run the call at all (over capacity, draining): the server
    /// then retries it elsewhere as a lost attempt instead of recording a failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

/// A message the server sends to a handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromServer {
    /// The hello was accepted.
    Welcome {
        /// Send a heartbeat this often (milliseconds).
        heartbeat_ms: u64,
        /// The largest frame the server accepts (bytes).
        max_frame_bytes: u64,
        /// Free text naming the server and its version.
        server: String,
    },
    /// The hello was refused; `error` says why. The handler may retry after fixing it.
    Refused { error: String },
    /// Run a method.
    Call(Call),
    /// Stop a call in flight (cancelled by a user, or past its deadline).
    Cancel { run_id: Uuid, attempt: u32 },
    /// The server does not know this connection (it restarted): send `hello` again.
    HelloAgain,
    /// The server could not use a message this peer sent; `error` says why.
    Error { error: String },
}

/// One call: one attempt of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Stable across retries of one run.
    pub run_id: Uuid,
    /// 1 for the first attempt; `(run_id, attempt)` identifies the call.
    pub attempt: u32,
    /// The fire slot this run is for.
    pub scheduled_for: DateTime<Utc>,
    pub method: String,
    /// A JSON object.
    pub params: Value,
    /// Milliseconds the handler has from when it receives the call (relative, no clock sync).
    pub deadline_ms: u64,
}

/// Why a frame is not a usable native message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("message is not valid JSON: {0}")]
    Json(String),
    #[error("invalid hello: {0}")]
    Hello(String),
}

/// The two frames of a message: signature, then JSON.
pub fn encode<T: Serialize>(msg: &T) -> [Vec<u8>; 2] {
    // Serializing these types cannot fail: every field is a string, number, bool, map or Value.
    let body = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    [SIGNATURE.to_vec(), body]
}

/// Reads a handler's message (the JSON frame), checking a hello's declarations.
pub fn decode_from_handler(body: &[u8]) -> Result<FromHandler, DecodeError> {
    let msg: FromHandler = serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    if let FromHandler::Hello(h) = &msg {
        h.validate().map_err(DecodeError::Hello)?;
    }
    Ok(msg)
}

/// Reads a server's message (the JSON frame).
pub fn decode_from_server(body: &[u8]) -> Result<FromServer, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
}

impl Hello {
    /// Checks what the server relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        check_id("handler_id", &self.handler_id)?;
        check_id("instance_id", &self.instance_id)?;
        if self.methods.is_empty() {
            return Err("'methods' must name at least one method".into());
        }
        if self.methods.len() > MAX_METHODS {
            return Err(format!("'methods' declares {} methods; at most {MAX_METHODS}", self.methods.len()));
        }
        for m in &self.methods {
            check_id("methods", m)?;
        }
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(format!("'capacity' must be between 1 and {MAX_CAPACITY}, got {}", self.capacity));
        }
        Ok(())
    }
}

/// Checks an id or method name: not blank, at most [`MAX_ID_BYTES`], no control characters.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("'{field}' must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(format!("'{field}' is {} bytes long; at most {MAX_ID_BYTES}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("'{field}' must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hello() -> Hello {
        Hello {
            handler_id: "reports".into(),
            instance_id: "host-1".into(),
            methods: vec!["build".into()],
            capacity: 4,
            credential: None,
            agent: Some("test".into()),
            session: None,
        }
    }

    #[test]
    fn messages_round_trip_with_a_type_tag() {
        let call = FromServer::Call(Call {
            run_id: Uuid::nil(),
            attempt: 2,
            scheduled_for: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            method: "build".into(),
            params: json!({"n": 1}),
            deadline_ms: 30_000,
        });
        let [sig, body] = encode(&call);
        assert_eq!(sig, SIGNATURE);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "call");
        assert_eq!(v["scheduled_for"], "2027-01-15T08:00:00Z");
        assert_eq!(decode_from_server(&body).unwrap(), call);

        let h = FromHandler::Hello(hello());
        assert_eq!(decode_from_handler(&encode(&h)[1]).unwrap(), h);
    }

    #[test]
    fn unknown_fields_are_ignored_and_defaults_apply() {
        let m = decode_from_handler(br#"{"type":"heartbeat","future_field":1}"#).unwrap();
        assert_eq!(m, FromHandler::Heartbeat { in_flight: 0 });
        let r = decode_from_handler(
            br#"{"type":"result","run_id":"00000000-0000-0000-0000-000000000000","attempt":1,"success":true}"#,
        )
        .unwrap();
        assert!(matches!(r, FromHandler::Result(CallResult { success: true, refused: false, .. })));
    }

    #[test]
    fn bad_messages_are_errors_naming_the_problem() {
        let e = decode_from_handler(b"{\"type\":\"launch\"}").unwrap_err();
        assert!(e.to_string().contains("launch"), "{e}");
        assert!(matches!(decode_from_handler(b"\xff\xfe"), Err(DecodeError::Json(_))));
        let mut h = hello();
        h.capacity = 0;
        let e = decode_from_handler(&encode(&FromHandler::Hello(h))[1]).unwrap_err();
        assert!(e.to_string().contains("capacity"), "{e}");
        let mut h = hello();
        h.methods.clear();
        assert!(h.validate().unwrap_err().contains("methods"));
        let mut h = hello();
        h.handler_id = "x".repeat(MAX_ID_BYTES + 1);
        assert!(h.validate().unwrap_err().contains("handler_id"));
    }
}
