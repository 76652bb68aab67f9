//! Sizes and timings both ends of the native protocol agree on.

use std::time::Duration;

/// The largest frame either end accepts by default (libzmq drops a bigger one before allocating
/// it: `ZMQ_MAXMSGSIZE`). Calls carry params and results as JSON; 4 MiB is generous for those
/// and small enough that a hostile peer cannot make the server reserve much.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The heartbeat interval a server tells handlers to use unless configured otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// A native instance silent for this many heartbeat intervals is disconnected.
pub const MISSED_HEARTBEATS: u32 = 3;

/// The longest a handler waits between reconnection attempts.
pub const MAX_RECONNECT: Duration = Duration::from_secs(1);
