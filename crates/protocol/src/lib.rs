//! ScheduleZero's handler wire format, apart from any socket (docs/PROTOCOL.md is the spec).
//!
//! - [`native`]: the native protocol's messages, both directions, and their two-frame encoding
//!   (`SZ1` signature frame + one JSON frame).
//! - [`v1`]: the original ScheduleZero's messages (../shared/COMPAT.md §3): one JSON frame.
//! - [`envelope`]: tells, from the frames a server's ROUTER received, which protocol a peer speaks
//!   and refuses anything else.
//! - [`limits`]: frame size limits and protocol timings shared by both ends.

pub mod envelope;
pub mod limits;
pub mod native;
pub mod v1;

pub use envelope::{Envelope, classify};
pub use native::{DecodeError, FromHandler, FromServer};
