//! SQLite backend (being written): one file, WAL, `synchronous=NORMAL`, migrations at start-up.

use std::path::PathBuf;

/// How hard SQLite works to make commits survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// A commit survives a killed process, not necessarily a power cut (the default).
    #[default]
    Normal,
    /// A commit survives a power cut too (an fsync per commit).
    Full,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
}

/// The SQLite store.
pub struct SqliteStore {
    _options: SqliteOptions,
}
