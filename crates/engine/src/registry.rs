//! The handler registry: handler id → its pool of instances, each reached through a [`Link`].
//!
//! Routing picks, round robin, a connected instance that offers the method and has spare
//! capacity. The registry is in memory; the engine persists instances in the store so one that
//! comes back is recognised.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use schedulezero_core::Timestamp;
use schedulezero_store::HandlerInstance;

use crate::link::Link;

/// One handler instance.
pub struct Instance {
    pub handler_id: String,
    pub instance_id: String,
    /// `local`, `native` or `v1`.
    pub protocol: String,
    /// Where it is (an endpoint, a peer id, or `local`).
    pub address: String,
    pub methods: BTreeSet<String>,
    /// How many calls it takes at once.
    pub capacity: u32,
    pub registered_at: Timestamp,
    pub link: Arc<dyn Link>,
    in_flight: AtomicU32,
    connected: AtomicBool,
    /// Said goodbye: takes no new calls, finishes those in flight.
    draining: AtomicBool,
    last_seen: Mutex<Timestamp>,
    successes: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("handler_id", &self.handler_id)
            .field("instance_id", &self.instance_id)
            .field("protocol", &self.protocol)
            .field("in_flight", &self.in_flight())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// What a new instance declares.
pub struct InstanceSpec {
    pub handler_id: String,
    pub instance_id: String,
    pub protocol: String,
    pub address: String,
    pub methods: Vec<String>,
    pub capacity: u32,
    pub link: Arc<dyn Link>,
}

impl Instance {
    pub fn new(spec: InstanceSpec, now: Timestamp) -> Self {
        Self {
            handler_id: spec.handler_id,
            instance_id: spec.instance_id,
            protocol: spec.protocol,
            address: spec.address,
            methods: spec.methods.into_iter().collect(),
            capacity: spec.capacity.max(1),
            registered_at: now,
            link: spec.link,
            in_flight: AtomicU32::new(0),
            connected: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            last_seen: Mutex::new(now),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether new calls may be routed to it.
    pub fn takes_calls(&self) -> bool {
        self.is_connected() && !self.is_draining()
    }

    pub fn last_seen(&self) -> Timestamp {
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn successes(&self) -> u64 {
        self.successes.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The instance as the store keeps it (and as the API shows a remembered one).
    pub fn record(&self) -> HandlerInstance {
        HandlerInstance {
            handler_id: self.handler_id.clone(),
            instance_id: self.instance_id.clone(),
            protocol: self.protocol.clone(),
            address: self.address.clone(),
            methods: self.methods.iter().cloned().collect(),
            capacity: self.capacity,
            connected: self.is_connected(),
            registered_at: self.registered_at,
            last_seen: self.last_seen(),
            successes: self.successes(),
            failures: self.failures(),
            meta: serde_json::Value::Object(Default::default()),
        }
    }

    /// Records that the instance showed signs of life.
    pub fn seen(&self, now: Timestamp) {
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Carries over what the store remembers of an instance that comes back.
    pub(crate) fn restore(&mut self, registered_at: Timestamp, successes: u64, failures: u64) {
        self.registered_at = registered_at;
        self.successes = AtomicU64::new(successes);
        self.failures = AtomicU64::new(failures);
    }

    /// Takes one unit of capacity if there is one.
    fn try_reserve(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1))
            .is_ok()
    }

    /// Gives back a unit of capacity taken by a call, counting its outcome.
    pub(crate) fn release(&self, succeeded: Option<bool>) {
        let _ = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        match succeeded {
            Some(true) => self.successes.fetch_add(1, Ordering::Relaxed),
            Some(false) => self.failures.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
    }
}

#[derive(Default)]
struct Pool {
    instances: Vec<Arc<Instance>>,
    /// Where the next round-robin search starts.
    next: usize,
}

/// Every known handler instance, by handler id.
#[derive(Default)]
pub struct Registry {
    pools: RwLock<HashMap<String, Pool>>,
}

/// Whether a method can be served now, later, or not at all.
#[derive(Debug, Clone)]
pub enum Route {
    /// An instance was reserved for the call.
    Reserved(Arc<Instance>),
    /// Instances offer the method but all are busy.
    Busy,
    /// No connected instance offers the method.
    Unavailable,
}

impl Registry {
    /// Adds an instance, replacing a previous one with the same handler and instance id (a
    /// reconnect). Returns the replaced instance.
    pub fn insert(&self, instance: Arc<Instance>) -> Option<Arc<Instance>> {
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        let pool = pools.entry(instance.handler_id.clone()).or_default();
        let old = pool
            .instances
            .iter()
            .position(|i| i.instance_id == instance.instance_id)
            .map(|pos| pool.instances.remove(pos));
        if let Some(old) = &old {
            old.set_connected(false);
        }
        pool.instances.push(instance);
        old
    }

    /// Marks an instance disconnected (kept, so it can be shown and recognised when it returns).
    pub fn disconnect(&self, handler_id: &str, instance_id: &str) -> Option<Arc<Instance>> {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        let inst = pools.get(handler_id)?.instances.iter().find(|i| i.instance_id == instance_id)?.clone();
        inst.set_connected(false);
        Some(inst)
    }

    /// Marks an instance draining: no new calls are routed to it.
    pub fn drain(&self, handler_id: &str, instance_id: &str) -> Option<Arc<Instance>> {
        let inst = self.get(handler_id, instance_id)?;
        inst.set_draining();
        Some(inst)
    }

    /// Whether any instance, connected or not, was ever known under this handler id.
    pub fn knows_handler(&self, handler_id: &str) -> bool {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        pools.get(handler_id).is_some_and(|p| !p.instances.is_empty())
    }

    pub fn get(&self, handler_id: &str, instance_id: &str) -> Option<Arc<Instance>> {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        pools.get(handler_id)?.instances.iter().find(|i| i.instance_id == instance_id).cloned()
    }

    /// Reserves capacity on a connected instance of `handler_id` offering `method`, round robin.
    pub fn route(&self, handler_id: &str, method: &str) -> Route {
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        let Some(pool) = pools.get_mut(handler_id) else {
            return Route::Unavailable;
        };
        let n = pool.instances.len();
        let mut offered = false;
        for k in 0..n {
            let idx = (pool.next + k) % n;
            let inst = &pool.instances[idx];
            if !inst.takes_calls() || !inst.methods.contains(method) {
                continue;
            }
            offered = true;
            if inst.try_reserve() {
                pool.next = (idx + 1) % n;
                return Route::Reserved(inst.clone());
            }
        }
        if offered { Route::Busy } else { Route::Unavailable }
    }

    /// Whether a connected instance of `handler_id` offers `method` (busy or not).
    pub fn offers(&self, handler_id: &str, method: &str) -> bool {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        pools
            .get(handler_id)
            .is_some_and(|p| p.instances.iter().any(|i| i.takes_calls() && i.methods.contains(method)))
    }

    /// All instances, connected or not, sorted by handler and instance id.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = pools.values().flat_map(|p| p.instances.iter().cloned()).collect();
        all.sort_by(|a, b| (&a.handler_id, &a.instance_id).cmp(&(&b.handler_id, &b.instance_id)));
        all
    }
}
