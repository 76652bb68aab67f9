//! What the operating system says, for the server and the governor alike (Linux, from `/proc`).
//!
//! Module map:
//! - [`process`]: a process by PID — its start time (which tells a recycled PID from the
//!   original) and its command line; the live members of a process group.
//! - [`pidfile`]: PID files that hold PID, start time and command line, and are verified against
//!   the live process table instead of trusted; stale ones are detected and cleaned.
//! - [`files`]: which processes have a file open, from each process's descriptors.
//! - [`ports`]: which processes hold a TCP port (listening or bound), from `/proc/net/tcp*` and
//!   each process's open sockets.
//! - [`group`]: process groups and signals; stopping a group for good (signal, wait, SIGKILL).
//! - [`notify`]: the systemd readiness notification (`READY=1`, `STOPPING=1`).
//! - [`deployment`]: the rule for deployment names.

pub mod deployment;
pub mod files;
pub mod group;
pub mod notify;
pub mod pidfile;
pub mod ports;
pub mod process;

pub use deployment::check_deployment_name;
pub use files::{FileHolder, file_holders};
pub use group::{Stopped, group_members, parse_signal, signal_group, stop_group, stop_process};
pub use nix::sys::signal::Signal;
pub use notify::notify;
pub use pidfile::{PidFile, PidFileError, PidRecord, PidStatus, write_atomically};
pub use ports::{PortHolder, port_holders};
pub use process::{ProcessInfo, Usage, process_group_members};
