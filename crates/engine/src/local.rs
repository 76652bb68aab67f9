//! Local handlers: async Rust functions registered as handler methods, called in-process through
//! a [`Link`] like any remote handler (embedded mode, the original's "autonomous handler").

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use schedulezero_core::Timestamp;
use schedulezero_core::run::RunId;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::link::{Call, Link, LinkError, Reply};

/// What a method knows about the call it serves.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub run_id: RunId,
    /// 1 for the first attempt. `(run_id, attempt)` is unique: deduplicate on it.
    pub attempt: u32,
    pub scheduled_for: Timestamp,
    /// How long the method has before the engine gives up on this attempt.
    pub deadline: Duration,
    /// Cancelled when the run is cancelled or times out: long methods should watch it.
    pub cancelled: CancellationToken,
}

type Method = Arc<dyn Fn(CallContext, Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// A handler made of local async functions.
#[derive(Clone)]
pub struct LocalHandler {
    pub(crate) handler_id: String,
    pub(crate) capacity: u32,
    methods: HashMap<String, Method>,
}

impl LocalHandler {
    /// A handler with this id and a capacity of 64 concurrent calls.
    pub fn new(handler_id: impl Into<String>) -> Self {
        Self { handler_id: handler_id.into(), capacity: 64, methods: HashMap::new() }
    }

    /// How many calls may run at once.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Registers `f` as the method `name`. An `Err(text)` is a failed run with that error.
    pub fn method<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(CallContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.methods.insert(name.into(), Arc::new(move |ctx, params| Box::pin(f(ctx, params))));
        self
    }

    pub fn handler_id(&self) -> &str {
        &self.handler_id
    }

    pub fn method_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.methods.keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn into_link(self) -> LocalLink {
        LocalLink { methods: self.methods, running: Mutex::new(HashMap::new()) }
    }
}

/// The [`Link`] to a local handler: calls run as tasks on the engine's runtime.
pub struct LocalLink {
    methods: HashMap<String, Method>,
    running: Mutex<HashMap<(RunId, u32), CancellationToken>>,
}

#[async_trait]
impl Link for LocalLink {
    async fn call(&self, call: Call) -> Result<Reply, LinkError> {
        let Some(method) = self.methods.get(&call.method).cloned() else {
            return Ok(Reply::Failure { error: format!("unknown method '{}'", call.method), result: None });
        };
        let token = CancellationToken::new();
        let key = (call.run_id, call.attempt);
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(key, token.clone());
        let ctx = CallContext {
            run_id: call.run_id,
            attempt: call.attempt,
            scheduled_for: call.scheduled_for,
            deadline: call.deadline,
            cancelled: token.clone(),
        };
        // A task of its own, so a panicking method fails its run instead of the engine. If this
        // future is dropped (the deadline passed) the guard cancels and aborts the method.
        let mut guard = CallGuard {
            link: self,
            key,
            token: token.clone(),
            task: Some(tokio::spawn(method(ctx, call.params))),
        };
        let Some(task) = guard.task.as_mut() else { return Err(LinkError::Cancelled) };
        tokio::select! {
            joined = task => match joined {
                Ok(Ok(v)) => Ok(Reply::Success(v)),
                Ok(Err(error)) => Ok(Reply::Failure { error, result: None }),
                Err(e) => Ok(Reply::Failure { error: format!("method panicked: {e}"), result: None }),
            },
            _ = token.cancelled() => Err(LinkError::Cancelled),
        }
    }

    async fn cancel(&self, run_id: RunId, attempt: u32) {
        if let Some(token) = self.running.lock().unwrap_or_else(|e| e.into_inner()).get(&(run_id, attempt)) {
            token.cancel();
        }
    }
}

/// How long a method told to stop (deadline passed, run cancelled) may take to return before its
/// task is aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Ends a local call's bookkeeping however the call ends, and stops the method if it still runs:
/// cancellation first, so it can clean up, then abort after a grace.
struct CallGuard<'a> {
    link: &'a LocalLink,
    key: (RunId, u32),
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<Value, String>>>,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.link.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
        if let Some(task) = self.task.take()
            && !task.is_finished()
        {
            self.token.cancel();
            let abort = task.abort_handle();
            tokio::spawn(async move {
                if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                    abort.abort();
                }
            });
        }
    }
}
