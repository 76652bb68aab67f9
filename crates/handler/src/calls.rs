//! The calls in flight: each runs in its own task, at most `capacity` at once, and is stopped by
//! its cancellation token (server's `cancel`, or its deadline) with a grace period before it is
//! dropped. Deciding what to answer a call that cannot run lives here too.

use std::collections::HashMap;
use std::time::Duration;

use schedulezero_protocol::native::{Call, CallResult};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::CallContext;
use crate::method::{Method, Methods, Outcome};

/// How long a method may keep running after its call was cancelled before it is dropped.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// A call's identity: `(run_id, attempt)`.
type CallKey = (Uuid, u32);

/// The calls this instance is running.
pub(crate) struct Calls {
    /// The methods calls are served by.
    methods: Methods,
    /// Most calls at once (the capacity declared in the hello).
    capacity: usize,
    /// Running calls by identity: to find duplicates and to cancel.
    running: HashMap<CallKey, CancellationToken>,
    /// Which call each task serves: a task that ends without a result (it panicked, or was
    /// aborted) is known only by its task id.
    by_task: HashMap<Id, CallKey>,
    /// The call tasks; each yields its call's result.
    tasks: JoinSet<CallResult>,
}

impl Calls {
    pub(crate) fn new(methods: Methods, capacity: u32) -> Self {
        Calls {
            methods,
            capacity: capacity as usize,
            running: HashMap::new(),
            by_task: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.running.len()
    }

    /// Starts a call received at `received`, or says what to answer at once instead: refused
    /// (draining, or over capacity) or failed (unknown method). A duplicate of a call already
    /// running is ignored (`None`, nothing started).
    pub(crate) fn start(&mut self, call: Call, received: Instant, draining: bool) -> Option<CallResult> {
        let key = (call.run_id, call.attempt);
        if self.running.contains_key(&key) {
            tracing::debug!(run_id = %call.run_id, attempt = call.attempt, "duplicate call ignored");
            return None;
        }
        if draining {
            return Some(refused(key, "draining: this instance takes no new calls".into()));
        }
        let Some(method) = self.methods.get(&call.method) else {
            return Some(failed(key, self.methods.unknown(&call.method)));
        };
        if self.running.len() >= self.capacity {
            let error = format!("over capacity: this instance runs at most {} calls at once", self.capacity);
            return Some(refused(key, error));
        }
        let deadline = deadline_after(received, call.deadline_ms);
        let token = CancellationToken::new();
        let ctx = CallContext::new(call.run_id, call.attempt, call.scheduled_for, deadline, token.clone());
        let task = self.tasks.spawn(serve(method.clone(), ctx, call.params, key));
        self.running.insert(key, token);
        self.by_task.insert(task.id(), key);
        None
    }

    /// Cancels a running call's token; false if no such call is running.
    pub(crate) fn cancel(&mut self, run_id: Uuid, attempt: u32) -> bool {
        match self.running.get(&(run_id, attempt)) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The next call to finish, with its result; `None` at once when none is running.
    pub(crate) async fn next_done(&mut self) -> Option<CallResult> {
        let (id, result) = match self.tasks.join_next_with_id().await? {
            Ok(done) => done,
            Err(err) => {
                let id = err.id();
                let key = self.by_task.get(&id).copied()?;
                (id, failed(key, lost_task_error(err)))
            }
        };
        if let Some(key) = self.by_task.remove(&id) {
            self.running.remove(&key);
        }
        Some(result)
    }

    /// Drops every running call at once; they get no result.
    pub(crate) fn abort_all(&mut self) {
        self.tasks.abort_all();
        self.running.clear();
        self.by_task.clear();
    }
}

/// Runs one call: the method races its cancellation. Once the token is cancelled (or the deadline
/// cancels it) the method has [`CANCEL_GRACE`] to return before it is dropped.
async fn serve(method: Method, ctx: CallContext, params: serde_json::Value, key: CallKey) -> CallResult {
    let token = ctx.cancellation_token().clone();
    let deadline = ctx.deadline();
    let work = method(ctx, params);
    let stop = async {
        let why = tokio::select! {
            _ = token.cancelled() => "cancelled",
            _ = sleep_until(deadline) => {
                token.cancel();
                "deadline exceeded"
            }
        };
        sleep(CANCEL_GRACE).await;
        why
    };
    let outcome: Outcome = tokio::select! {
        biased;
        outcome = work => outcome,
        why = stop => Err(why.into()),
    };
    match outcome {
        Ok(value) => CallResult {
            run_id: key.0,
            attempt: key.1,
            success: true,
            result: Some(value),
            error: None,
            refused: false,
        },
        Err(e) => {
            let (message, detail) = e.into_parts();
            CallResult { result: detail, ..failed(key, message) }
        }
    }
}

/// `deadline_ms` after `received`; a deadline too far to represent is taken as "a century".
fn deadline_after(received: Instant, deadline_ms: u64) -> Instant {
    received
        .checked_add(Duration::from_millis(deadline_ms))
        .unwrap_or_else(|| received + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// What to report for a call task that ended without a result.
fn lost_task_error(err: JoinError) -> String {
    if !err.is_panic() {
        return "cancelled".into();
    }
    let payload = err.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("method panicked: {text}")
}

fn failed(key: CallKey, error: String) -> CallResult {
    CallResult {
        run_id: key.0,
        attempt: key.1,
        success: false,
        result: None,
        error: Some(error),
        refused: false,
    }
}

fn refused(key: CallKey, error: String) -> CallResult {
    CallResult { refused: true, ..failed(key, error) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodError;
    use crate::method::erase;
    use chrono::Utc;
    use serde_json::json;

    fn call(method: &str, deadline_ms: u64) -> Call {
        Call {
            run_id: Uuid::now_v7(),
            attempt: 1,
            scheduled_for: Utc::now(),
            method: method.into(),
            params: json!({}),
            deadline_ms,
        }
    }

    fn boom() -> Result<(), String> {
        panic!("boom")
    }

    fn calls(capacity: u32) -> Calls {
        let mut methods = Methods::default();
        methods.insert("ok".into(), erase(|_, p| async move { Ok::<_, MethodError>(p) })).unwrap();
        methods
            .insert(
                "wait".into(),
                erase(|ctx: CallContext, _| async move {
                    ctx.cancelled().await;
                    Err::<(), _>("stopped")
                }),
            )
            .unwrap();
        methods
            .insert("hang".into(), erase(|_, _| futures::future::pending::<Result<(), String>>()))
            .unwrap();
        methods.insert("panic".into(), erase(|_, _| async move { boom() })).unwrap();
        Calls::new(methods, capacity)
    }

    #[tokio::test]
    async fn duplicates_are_ignored_and_capacity_refuses() {
        let mut calls = calls(2);
        let first = call("wait", 60_000);
        assert_eq!(calls.start(first.clone(), Instant::now(), false), None);
        assert_eq!(calls.start(first, Instant::now(), false), None);
        assert_eq!(calls.in_flight(), 1);
        assert_eq!(calls.start(call("wait", 60_000), Instant::now(), false), None);
        let third = calls.start(call("wait", 60_000), Instant::now(), false).unwrap();
        assert!(third.refused && !third.success, "{third:?}");
        let draining = calls.start(call("ok", 60_000), Instant::now(), true).unwrap();
        assert!(draining.refused && draining.error.unwrap().contains("draining"));
        calls.abort_all();
        assert_eq!(calls.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panicking_method_is_reported_as_such() {
        let mut calls = calls(1);
        let c = call("panic", 60_000);
        assert_eq!(calls.start(c.clone(), Instant::now(), false), None);
        let result = calls.next_done().await.unwrap();
        assert_eq!((result.run_id, result.success, result.refused), (c.run_id, false, false));
        assert_eq!(result.error.as_deref(), Some("method panicked: boom"));
        assert_eq!(calls.in_flight(), 0);
        assert!(calls.next_done().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_and_a_method_that_ignores_it_is_dropped_after_the_grace() {
        let mut calls = calls(2);
        let obeys = call("wait", 100);
        let ignores = call("hang", 100);
        calls.start(obeys.clone(), Instant::now(), false);
        calls.start(ignores.clone(), Instant::now(), false);
        let start = Instant::now();
        let first = calls.next_done().await.unwrap();
        assert_eq!((first.run_id, first.error.as_deref()), (obeys.run_id, Some("stopped")));
        let second = calls.next_done().await.unwrap();
        assert_eq!((second.run_id, second.error.as_deref()), (ignores.run_id, Some("deadline exceeded")));
        assert_eq!(start.elapsed(), Duration::from_millis(100) + CANCEL_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_reaches_the_token_and_a_hung_method_reports_cancelled() {
        let mut calls = calls(1);
        let c = call("hang", 60_000);
        calls.start(c.clone(), Instant::now(), false);
        assert!(calls.cancel(c.run_id, 1));
        assert!(!calls.cancel(c.run_id, 2));
        let result = calls.next_done().await.unwrap();
        assert_eq!(result.error.as_deref(), Some("cancelled"));
    }

    #[test]
    fn an_absurd_deadline_does_not_overflow() {
        let now = Instant::now();
        assert!(deadline_after(now, u64::MAX) > now + Duration::from_secs(3600));
    }
}
