//! Calls sent to native instances and awaiting their result, by `(run id, attempt)`.
//!
//! Keyed by run rather than by connection, so a result arriving over a new connection (the handler
//! reconnected) still finds its call.

use std::collections::HashMap;

/// Slots the table keeps when no call is pending.
const IDLE_CAPACITY: usize = 64;
use std::sync::Mutex;

use schedulezero_engine::link::{LinkError, Reply};
use schedulezero_protocol::native::CallResult;
use tokio::sync::oneshot;
use uuid::Uuid;

pub(crate) type CallKey = (Uuid, u32);
type Waiter = oneshot::Sender<Result<Reply, LinkError>>;

struct Entry {
    /// `handler_id` + `instance_id` of the instance the call went to.
    instance: (String, String),
    waiter: Waiter,
}

#[derive(Default)]
pub(crate) struct Pending {
    calls: Mutex<HashMap<CallKey, Entry>>,
}

impl Pending {
    pub fn insert(&self, key: CallKey, instance: (String, String), waiter: Waiter) {
        self.lock().insert(key, Entry { instance, waiter });
    }

    pub fn remove(&self, key: &CallKey) {
        self.take(key);
    }

    /// Removes a call; once none is left, the table a burst grew is given back (a `HashMap`
    /// keeps its capacity otherwise: 5,000 calls at once would hold their slots for good).
    fn take(&self, key: &CallKey) -> Option<Entry> {
        let mut calls = self.lock();
        let entry = calls.remove(key);
        if calls.is_empty() && calls.capacity() > IDLE_CAPACITY {
            calls.shrink_to(IDLE_CAPACITY);
        }
        entry
    }

    /// Delivers a result; false when no call awaits it (late, or already ended).
    pub fn complete(&self, r: CallResult) -> bool {
        let Some(entry) = self.take(&(r.run_id, r.attempt)) else { return false };
        let reply = if r.refused {
            Err(LinkError::Refused(r.error.unwrap_or_else(|| "refused".into())))
        } else if r.success {
            Ok(Reply::Success(r.result.unwrap_or(serde_json::Value::Null)))
        } else {
            Ok(Reply::Failure {
                error: r.error.unwrap_or_else(|| "the handler reported a failure without an error".into()),
                result: r.result,
            })
        };
        let _ = entry.waiter.send(reply);
        true
    }

    /// Ends every call with `Disconnected` (the transport stopped).
    pub fn fail_all(&self, why: &str) {
        for (_, e) in self.lock().drain() {
            let _ = e.waiter.send(Err(LinkError::Disconnected(why.to_string())));
        }
    }

    /// Ends one call with `Disconnected` (it could not be sent).
    pub fn fail_call(&self, key: CallKey, why: &str) {
        if let Some(e) = self.take(&key) {
            let _ = e.waiter.send(Err(LinkError::Disconnected(why.to_string())));
        }
    }

    /// Ends every call awaiting this instance with `Disconnected`.
    pub fn fail_instance(&self, handler_id: &str, instance_id: &str, why: &str) -> usize {
        let mut calls = self.lock();
        let keys: Vec<CallKey> = calls
            .iter()
            .filter(|(_, e)| e.instance.0 == handler_id && e.instance.1 == instance_id)
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            if let Some(e) = calls.remove(k) {
                let _ = e.waiter.send(Err(LinkError::Disconnected(why.to_string())));
            }
        }
        keys.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallKey, Entry>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}
