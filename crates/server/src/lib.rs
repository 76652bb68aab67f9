//! The server people run (`schedulezero serve`): configuration, the deployment's files, the HTTP
//! API, and the wiring of store, engine and handler links.
//!
//! Module map:
//! - [`config`]: settings from defaults, the deployment's `schedulezero.toml`, `SCHEDULEZERO_*`
//!   variables and flags, in that order of precedence (last wins).
//! - [`database`]: database URLs in our spellings and the original's.
//! - [`deployment`]: where a deployment's files live, and the runtime file with bound addresses.
//! - [`serve`]: start-up checks (PID file, ports), running, graceful stop.
//! - [`retention`]: the maintenance service that purges run history past its retention.
//! - [`memory`]: the allocator's arenas limited, and memory freed after a burst given back to
//!   the operating system (glibc).
//! - `http`: the HTTP API (docs/API.md): `compat`, the original's routes (../shared/COMPAT.md
//!   §1); `native`, ours with the OpenAPI document and Swagger UI; `metrics`, `GET /metrics` in
//!   the Prometheus format; see `http/mod.rs` for the rest.

pub mod config;
pub mod database;
pub mod deployment;
mod http;
pub mod memory;
pub mod retention;
pub mod serve;

pub use config::{ConfigError, Overrides, ServerConfig};
pub use serve::{ServeError, serve};
