//! The SDK's errors: [`MethodError`] (a method failed; goes back to the server as the call's
//! error), [`BuildError`] (the handler's declaration is not valid) and [`RunError`] (the handler
//! could not run at all).

use serde_json::Value;
use thiserror::Error;

/// Why a method failed. Its message becomes the result's `error`; the optional detail becomes the
/// result's `result`, so the server can record structured context alongside the message.
///
/// Build one from a message (`"disk full".into()`, `MethodError::new(format!(..))`), from any error
/// with [`MethodError::from_error`] (keeps the chain of causes), or let `?` convert
/// `std::io::Error`, `serde_json::Error` and `Box<dyn Error + Send + Sync>`.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{message}")]
pub struct MethodError {
    /// What went wrong, for people: sent as the result's `error`.
    message: String,
    /// Structured context, sent as the result's `result` beside the error.
    detail: Option<Value>,
}

impl MethodError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        MethodError { message: message.into(), detail: None }
    }

    /// A failure describing `err` and its causes (`outer: inner: innermost`).
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        MethodError::new(message)
    }

    /// Attaches structured detail (sent as the result's `result`).
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The failure message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The structured detail, if any.
    pub fn detail(&self) -> Option<&Value> {
        self.detail.as_ref()
    }

    pub(crate) fn into_parts(self) -> (String, Option<Value>) {
        (self.message, self.detail)
    }
}

impl From<String> for MethodError {
    fn from(message: String) -> Self {
        MethodError::new(message)
    }
}

impl From<&str> for MethodError {
    fn from(message: &str) -> Self {
        MethodError::new(message)
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for MethodError {
    fn from(err: Box<dyn std::error::Error + Send + Sync>) -> Self {
        MethodError::from_error(err.as_ref())
    }
}

impl From<std::io::Error> for MethodError {
    fn from(err: std::io::Error) -> Self {
        MethodError::from_error(&err)
    }
}

impl From<serde_json::Error> for MethodError {
    fn from(err: serde_json::Error) -> Self {
        MethodError::from_error(&err)
    }
}

/// Why [`HandlerBuilder::build`](crate::HandlerBuilder::build) refused the declaration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// An id, a method name or the capacity breaks the protocol's rules; the text names the field.
    #[error("invalid handler declaration: {0}")]
    Invalid(String),
    /// Two methods were registered under one name.
    #[error("method '{0}' is registered twice")]
    DuplicateMethod(String),
}

/// Why [`Handler::run`](crate::Handler::run) could not run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The ZeroMQ socket could not be created or pointed at the endpoint (a malformed endpoint,
    /// most often). An unreachable server is not an error: the handler keeps reconnecting.
    #[error("cannot open a socket to '{endpoint}': {source}")]
    Socket { endpoint: String, source: zmq::Error },
    /// The thread that owns the socket could not be started.
    #[error("cannot start the socket thread: {0}")]
    Thread(std::io::Error),
    /// SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot listen for shutdown signals: {0}")]
    Signals(std::io::Error),
    /// The socket thread stopped on its own (a libzmq failure it could not recover from).
    #[error("the socket thread stopped unexpectedly")]
    SocketStopped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_error_keeps_the_chain_of_causes() {
        #[derive(Debug, Error)]
        #[error("cannot build report")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("disk full"));
        assert_eq!(MethodError::from_error(&err).message(), "cannot build report: disk full");
    }

    #[test]
    fn messages_and_detail_convert() {
        let e: MethodError = "nope".into();
        assert_eq!((e.message(), e.detail()), ("nope", None));
        let e = MethodError::from(String::from("bad")).with_detail(json!({"row": 3}));
        assert_eq!(e.into_parts(), ("bad".to_string(), Some(json!({"row": 3}))));
        let boxed: Box<dyn std::error::Error + Send + Sync> = "boxed".into();
        assert_eq!(MethodError::from(boxed).message(), "boxed");
    }
}
