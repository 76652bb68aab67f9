//! The engine: the scheduler loop, the handler registry, the dispatcher, outcome recording,
//! events, and embedded mode. It reaches handlers only through the [`link::Link`] trait, so local
//! Rust functions (embedded mode) and remote handlers (ZeroMQ, in `transport`) look the same.

pub mod link;
