//! ScheduleZero's domain, free of I/O and of async: everything here is plain data and pure
//! functions, so it is tested exhaustively against a virtual clock.
//!
//! Module map:
//! - [`clock`]: the `Clock` that tells the time, and millisecond truncation (the engine's
//!   `VirtualClock` is the one tests move by hand).
//! - [`time`]: the one daylight-saving resolver (local wall time → instants) and timestamp parsing.
//! - [`trigger`]: `date`, `interval` and `cron` triggers (APScheduler fields or crontab strings),
//!   parsed from their JSON form with errors that name the field.
//! - [`policy`]: misfire, overlap, retry and timeout policies with their documented defaults.
//! - [`plan`]: what to do with the fire slots that are due: which run, which are missed or skipped.
//! - [`schedule`]: schedules and their targets.
//! - [`run`]: runs, attempts and the run-state machine.
//! - [`error`]: the error types of this crate.

pub mod clock;
pub mod error;
pub mod plan;
pub mod policy;
pub mod run;
pub mod schedule;
pub mod time;
pub mod trigger;

pub use chrono;
pub use chrono_tz;

/// Every instant in ScheduleZero is a UTC timestamp with millisecond precision.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
