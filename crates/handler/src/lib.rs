//! Rust SDK for ScheduleZero handlers.
