//! The original ScheduleZero's protocol (../shared/COMPAT.md §3): every message is one frame of
//! UTF-8 JSON; requests are `{"method", "params"}`, replies objects with a boolean `success`.

use serde_json::{Map, Value, json};

/// A version-1 request: to the server's registration endpoint, or from the server to a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// Missing `params` reads as `{}`.
    pub params: Map<String, Value>,
}

/// Why a frame is not a version-1 request; the text is the `error` the original replied with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError(pub String);

impl Request {
    pub fn parse(frame: &[u8]) -> Result<Request, RequestError> {
        let invalid = || RequestError("Invalid JSON".into());
        let value: Value = serde_json::from_slice(frame).map_err(|_| invalid())?;
        let Value::Object(mut obj) = value else { return Err(invalid()) };
        let method = match obj.remove("method") {
            Some(Value::String(m)) => m,
            _ => return Err(RequestError("Missing or invalid 'method'".into())),
        };
        let params = match obj.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(RequestError("'params' must be an object".into())),
        };
        Ok(Request { method, params })
    }

    /// The frame a server sends to call a handler's method.
    pub fn encode(method: &str, params: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"method": method, "params": params})).unwrap_or_default()
    }

    /// A string parameter, if present and a string.
    pub fn str_param(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }
}

/// `register`'s parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub handler_id: String,
    /// The endpoint the handler bound its REP socket to.
    pub address: String,
    pub methods: Vec<String>,
}

impl Registration {
    /// Reads `register`'s params; the error names the missing or bad field.
    pub fn from_params(params: &Map<String, Value>) -> Result<Registration, String> {
        let text = |k: &str| match params.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(format!("'{k}' must be a non-empty string")),
            None => Err(format!("Missing '{k}'")),
        };
        let handler_id = text("handler_id")?;
        crate::native::check_id("handler_id", &handler_id)?;
        let address = text("address")?;
        if address.len() > 1024 || address.chars().any(char::is_control) {
            return Err("'address' must be an endpoint of at most 1024 characters".into());
        }
        if !address.starts_with("tcp://") && !address.starts_with("ipc://") {
            return Err(format!("'address' must be a tcp:// or ipc:// endpoint, got '{address}'"));
        }
        let methods = match params.get("methods") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|m| {
                    m.as_str().map(str::to_string).ok_or("'methods' must be a list of strings".to_string())
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err("'methods' must be a list of strings".into()),
            None => Vec::new(),
        };
        if methods.len() > crate::native::MAX_METHODS {
            return Err(format!("'methods' lists {}; at most {}", methods.len(), crate::native::MAX_METHODS));
        }
        for m in &methods {
            crate::native::check_id("methods", m)?;
        }
        Ok(Registration { handler_id, address, methods })
    }
}

/// Replies of the registration endpoint, in the original's shapes.
pub mod reply {
    use super::*;

    pub fn pong() -> Value {
        json!({"success": true, "message": "pong"})
    }

    /// `status` is `registered` or `re-registered`.
    pub fn registered(r: &Registration, status: &str) -> Value {
        json!({
            "success": true,
            "handler_id": r.handler_id,
            "address": r.address,
            "status": status,
            "methods": r.methods,
            "message": format!("Handler '{}' {status} successfully", r.handler_id),
        })
    }

    pub fn status(handler_id: &str, status: &str) -> Value {
        json!({"success": true, "handler_id": handler_id, "status": status})
    }

    pub fn error(message: &str) -> Value {
        json!({"success": false, "error": message})
    }

    pub fn not_registered() -> Value {
        error("Handler not registered")
    }

    pub fn unknown_method(method: &str) -> Value {
        error(&format!("Unknown method: {method}"))
    }
}

/// A handler's reply to a call, interpreted.
#[derive(Debug, Clone, PartialEq)]
pub enum CallReply {
    /// `success: true`; the whole reply object is the result.
    Success(Value),
    /// `success: false` (or an unusable reply); the error text and the reply when it was JSON.
    Failure { error: String, reply: Option<Value> },
}

impl CallReply {
    pub fn is_success(&self) -> bool {
        matches!(self, CallReply::Success(_))
    }
}

/// Reads a handler's reply to a call.
pub fn interpret_reply(frame: &[u8]) -> CallReply {
    let Ok(value) = serde_json::from_slice::<Value>(frame) else {
        return CallReply::Failure {
            error: format!("handler replied with invalid JSON ({} bytes)", frame.len()),
            reply: None,
        };
    };
    match value.get("success").and_then(Value::as_bool) {
        Some(true) => CallReply::Success(value),
        Some(false) => {
            let error = match value.get("error") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "the handler reported a failure without an error message".into(),
            };
            CallReply::Failure { error, reply: Some(value) }
        }
        None => {
            CallReply::Failure { error: "handler reply has no boolean 'success'".into(), reply: Some(value) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_like_the_original() {
        let r = Request::parse(br#"{"method":"ping"}"#).unwrap();
        assert_eq!(r.method, "ping");
        assert!(r.params.is_empty());
        assert_eq!(Request::parse(b"not json").unwrap_err().0, "Invalid JSON");
        assert_eq!(Request::parse(b"[1]").unwrap_err().0, "Invalid JSON");
        assert!(Request::parse(br#"{"params":{}}"#).unwrap_err().0.contains("method"));
    }

    #[test]
    fn registration_names_the_bad_field() {
        let p = |v: Value| v.as_object().unwrap().clone();
        let ok = Registration::from_params(&p(
            json!({"handler_id":"h","address":"tcp://127.0.0.1:5000","methods":["a"]}),
        ))
        .unwrap();
        assert_eq!(ok.methods, vec!["a"]);
        let reply = reply::registered(&ok, "registered");
        assert_eq!(reply["message"], "Handler 'h' registered successfully");
        assert!(
            Registration::from_params(&p(json!({"address":"tcp://x:1"}))).unwrap_err().contains("handler_id")
        );
        assert!(
            Registration::from_params(&p(json!({"handler_id":"h","address":"x"})))
                .unwrap_err()
                .contains("address")
        );
        assert!(
            Registration::from_params(&p(json!({"handler_id":"a\u{0}b","address":"tcp://x:1"})))
                .unwrap_err()
                .contains("control")
        );
        assert!(
            Registration::from_params(&p(json!({"handler_id":"h","address":"tcp://x:1","methods":[1]})))
                .unwrap_err()
                .contains("methods")
        );
    }

    #[test]
    fn replies_are_interpreted_by_success() {
        assert_eq!(
            interpret_reply(br#"{"success":true,"n":1}"#),
            CallReply::Success(json!({"success":true,"n":1}))
        );
        assert!(
            matches!(interpret_reply(br#"{"success":false,"error":"boom"}"#), CallReply::Failure { error, .. } if error == "boom")
        );
        assert!(
            matches!(interpret_reply(b"{}"), CallReply::Failure { error, .. } if error.contains("success"))
        );
        assert!(matches!(interpret_reply(b"nope"), CallReply::Failure { reply: None, .. }));
    }
}
