//! [`HandlerBuilder`]: declares a handler (its ids, capacity, credential and methods) and checks
//! the declaration against the protocol's rules before anything connects.

use std::future::Future;

use schedulezero_protocol::native::Hello;
use serde::Serialize;
use serde_json::Value;

use crate::context::CallContext;
use crate::error::{BuildError, MethodError};
use crate::handler::Handler;
use crate::method::{Methods, erase};

/// The environment variable that names this instance when [`HandlerBuilder::instance_id`] is not
/// called.
pub const INSTANCE_ID_ENV: &str = "SCHEDULEZERO_INSTANCE_ID";

/// The environment variable that names the server's handler endpoint (e.g.
/// `tcp://127.0.0.1:4242`) when a handler is not given one: see [`default_server_endpoint`].
pub const SERVER_ENDPOINT_ENV: &str = "SCHEDULEZERO_SERVER_ENDPOINT";

/// The endpoint used when neither a flag nor [`SERVER_ENDPOINT_ENV`] names one: the server's
/// default handler port on this machine.
pub const DEFAULT_SERVER_ENDPOINT: &str = "tcp://127.0.0.1:4242";

/// Sent in the hello so operators can tell which SDK an instance runs.
const AGENT: &str = concat!("schedulezero-handler/", env!("CARGO_PKG_VERSION"), " (rust)");

/// Declares a handler; start with [`Handler::builder`].
#[must_use = "a builder does nothing until .build()"]
pub struct HandlerBuilder {
    /// The handler (pool) id jobs target.
    handler_id: String,
    /// Set by `.instance_id()`; otherwise [`default_instance_id`].
    instance_id: Option<String>,
    /// Most calls at once; 1 unless set.
    capacity: u32,
    /// Shown to the server's access control.
    credential: Option<String>,
    methods: Methods,
    /// The first method name registered twice, reported by `build`.
    duplicate: Option<String>,
}

impl HandlerBuilder {
    pub(crate) fn new(handler_id: String) -> Self {
        HandlerBuilder {
            handler_id,
            instance_id: None,
            capacity: 1,
            credential: None,
            methods: Methods::default(),
            duplicate: None,
        }
    }

    /// Names this instance; keep it stable across restarts so the server recognises the instance.
    /// Default: `$SCHEDULEZERO_INSTANCE_ID`, else `<hostname>-<pid>`.
    pub fn instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = Some(instance_id.into());
        self
    }

    /// How many calls this instance runs at once (default 1); calls beyond it are refused, and
    /// the server sends them elsewhere.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// A credential for the server's access control, sent in the hello.
    pub fn credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// Serves `method` with an async function of the call's context and params. It returns
    /// anything serializable on success, and anything that converts into a [`MethodError`] on
    /// failure. Each call runs in its own task.
    pub fn method<F, Fut, R, E>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(CallContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize,
        E: Into<MethodError>,
    {
        if let Err(name) = self.methods.insert(name.into(), erase(f)) {
            self.duplicate.get_or_insert(name);
        }
        self
    }

    /// Checks the declaration: ids and method names non-empty, at most 256 bytes, no control
    /// characters; at least one method; capacity between 1 and 10 000.
    pub fn build(self) -> Result<Handler, BuildError> {
        if let Some(name) = self.duplicate {
            return Err(BuildError::DuplicateMethod(name));
        }
        let hello = Hello {
            handler_id: self.handler_id,
            instance_id: self.instance_id.unwrap_or_else(default_instance_id),
            methods: self.methods.names(),
            capacity: self.capacity,
            credential: self.credential,
            agent: Some(AGENT.into()),
            session: Some(uuid::Uuid::now_v7().to_string()),
        };
        hello.validate().map_err(BuildError::Invalid)?;
        Ok(Handler::new(hello, self.methods))
    }
}

/// `$SCHEDULEZERO_INSTANCE_ID` if set and not blank, else `<hostname>-<pid>`: stable for the
/// process, so reconnects keep the identity, but new at each restart (two processes on one host
/// never share it). Set an id (or the variable, as a supervisor can) for one that survives
/// restarts, so the server carries the instance's history over.
pub fn default_instance_id() -> String {
    if let Ok(id) = std::env::var(INSTANCE_ID_ENV)
        && !id.trim().is_empty()
    {
        return id;
    }
    format!("{}-{}", hostname(), std::process::id())
}

/// The endpoint to connect to when none is given explicitly: `$SCHEDULEZERO_SERVER_ENDPOINT` if
/// set and not blank (a supervisor such as the governor sets it for every handler it starts),
/// else [`DEFAULT_SERVER_ENDPOINT`].
pub fn default_server_endpoint() -> String {
    server_endpoint_from(std::env::var(SERVER_ENDPOINT_ENV).ok())
}

/// `explicit` if given and not blank, else [`default_server_endpoint`]: what a `--server` flag
/// that may be absent resolves to.
pub fn server_endpoint(explicit: Option<&str>) -> String {
    match explicit.map(str::trim).filter(|e| !e.is_empty()) {
        Some(endpoint) => endpoint.to_string(),
        None => default_server_endpoint(),
    }
}

fn server_endpoint_from(var: Option<String>) -> String {
    var.map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER_ENDPOINT.into())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(b: HandlerBuilder, name: &str) -> HandlerBuilder {
        b.method(name, |_, p| async move { Ok::<_, MethodError>(p) })
    }

    #[test]
    fn build_declares_sorted_methods_capacity_and_the_agent() {
        let h = echo(echo(Handler::builder("reports").instance_id("host-1").capacity(8), "b"), "a")
            .credential("secret")
            .build()
            .unwrap();
        let hello = h.hello();
        assert_eq!((hello.handler_id.as_str(), hello.instance_id.as_str()), ("reports", "host-1"));
        assert_eq!((hello.methods.clone(), hello.capacity), (vec!["a".to_string(), "b".to_string()], 8));
        assert_eq!(hello.credential.as_deref(), Some("secret"));
        assert!(hello.agent.as_deref().unwrap().starts_with("schedulezero-handler/"));
    }

    #[test]
    fn build_refuses_what_the_server_would_refuse() {
        let no_methods = Handler::builder("reports").build().err().unwrap();
        assert!(no_methods.to_string().contains("methods"), "{no_methods}");
        let blank = echo(Handler::builder(" "), "a").build().err().unwrap();
        assert!(blank.to_string().contains("handler_id"), "{blank}");
        let zero = echo(Handler::builder("r").capacity(0), "a").build().err().unwrap();
        assert!(zero.to_string().contains("capacity"), "{zero}");
        let twice = echo(echo(Handler::builder("r"), "a"), "a").build().err().unwrap();
        assert_eq!(twice, BuildError::DuplicateMethod("a".into()));
    }

    #[test]
    fn the_endpoint_comes_from_the_flag_then_the_variable_then_the_default() {
        assert_eq!(server_endpoint(Some("tcp://10.0.0.1:1")), "tcp://10.0.0.1:1");
        assert_eq!(server_endpoint_from(Some(" tcp://h:2 ".into())), "tcp://h:2");
        assert_eq!(server_endpoint_from(Some("  ".into())), DEFAULT_SERVER_ENDPOINT);
        assert_eq!(server_endpoint_from(None), DEFAULT_SERVER_ENDPOINT);
    }

    #[test]
    fn the_default_instance_id_is_stable_and_names_the_process() {
        let id = default_instance_id();
        assert_eq!(id, default_instance_id());
        if std::env::var(INSTANCE_ID_ENV).is_err() {
            assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        }
    }
}
