//! The allocator's settings for a long-running server, and memory freed after a burst given back
//! to the operating system.
//!
//! glibc's allocator keeps what the program frees in its arenas (one per thread that allocated,
//! up to eight per core) for reuse, and returns the top of the main heap only. After a burst of
//! fires or "run now" calls the server's resident memory would stay at the burst's peak for good;
//! checking once a second and trimming when more than [`TRIM_ABOVE`] lies free brings it back to
//! what the server holds (caches, connections).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// At most this many allocator arenas. glibc makes up to eight per core, one for each thread that
/// meets a locked one; this server runs a dozen threads (runtime workers, SQLite connections,
/// ZeroMQ I/O), most of which allocate little, and each arena keeps its own free memory and
/// fragments on its own. The server's speed figures in BENCHMARKS.md were taken with two.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAX_ARENAS: libc::c_int = 2;

/// Sets the allocator up for a long-running server (few arenas). Call before the process starts
/// its threads.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: sets the allocator's parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Free memory held by the allocator past which it is given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_ABOVE: usize = 1024 * 1024;

/// Runs until `stop`, checking once a second.
pub(crate) async fn return_freed_memory(stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => trim_if_worth_it(),
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_worth_it() {
    // SAFETY: both calls only read or adjust the allocator's own bookkeeping, under its locks.
    let free = unsafe { libc::mallinfo2() }.fordblks;
    if free > TRIM_ABOVE {
        // SAFETY: as above; 0 keeps no extra padding at the top of the heap.
        unsafe { libc::malloc_trim(0) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_if_worth_it() {}
