//! PID files verified, not trusted.
//!
//! The file holds the PID, the process's start time and its command line (JSON). It is only
//! believed when a process with that PID exists *and* started at that time: a PID recycled by
//! another program, or a process that died without cleaning up, makes the file stale, and
//! [`PidFile::acquire`] then removes it and says so.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::process::ProcessInfo;

/// What a PID file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: u32,
    pub start_ticks: u64,
    pub cmdline: Vec<String>,
}

/// What a PID file is worth, checked against the process table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidStatus {
    /// No file.
    Absent,
    /// The process it names is alive, started when the file says.
    Live(PidRecord),
    /// Nothing runs under that PID any more.
    Dead(PidRecord),
    /// That PID now belongs to another process (started at another time).
    Reused { record: PidRecord, now: ProcessInfo },
    /// The file cannot be read as a PID file.
    Unreadable(String),
}

#[derive(Debug, Error)]
pub enum PidFileError {
    #[error("{} is already running as PID {} ({}); stop it first, or use that instance", .path.display(), .record.pid, .record.cmdline.join(" "))]
    AlreadyRunning { path: PathBuf, record: PidRecord },
    #[error("cannot write the PID file {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot read this process's own entry in /proc")]
    NoSelf,
}

/// A PID file at a path.
#[derive(Debug, Clone)]
pub struct PidFile {
    path: PathBuf,
}

/// A PID file this process wrote; removed when dropped (if it still names this process).
#[derive(Debug)]
pub struct PidGuard {
    path: PathBuf,
    record: PidRecord,
}

impl PidFile {
    pub fn new(path: impl Into<PathBuf>) -> PidFile {
        PidFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file and checks it against the process table.
    pub fn status(&self) -> PidStatus {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PidStatus::Absent,
            Err(e) => return PidStatus::Unreadable(e.to_string()),
        };
        let record: PidRecord = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => return PidStatus::Unreadable(format!("not a ScheduleZero PID file: {e}")),
        };
        match ProcessInfo::of(record.pid) {
            None => PidStatus::Dead(record),
            Some(now) if now.start_ticks == record.start_ticks => PidStatus::Live(record),
            Some(now) => PidStatus::Reused { record, now },
        }
    }

    /// Writes this process's record, unless a live process holds the file. A stale file (dead
    /// PID, recycled PID, unreadable) is replaced; its status is returned so the caller can
    /// report what it cleaned.
    pub fn acquire(&self) -> Result<(PidGuard, PidStatus), PidFileError> {
        let me = ProcessInfo::current().ok_or(PidFileError::NoSelf)?;
        let status = self.status();
        match &status {
            PidStatus::Live(record) if record.pid != me.pid => {
                return Err(PidFileError::AlreadyRunning { path: self.path.clone(), record: record.clone() });
            }
            _ => {}
        }
        let record = PidRecord { pid: me.pid, start_ticks: me.start_ticks, cmdline: me.cmdline };
        self.write(&record)?;
        Ok((PidGuard { path: self.path.clone(), record }, status))
    }

    /// Writes a record (for a child started by a supervisor), atomically: a reader sees the old
    /// file or the new one, never half of one.
    pub fn write(&self, record: &PidRecord) -> Result<(), PidFileError> {
        let body = serde_json::to_vec(record).unwrap_or_default();
        write_atomically(&self.path, &body)
            .map_err(|source| PidFileError::Io { path: self.path.clone(), source })
    }

    /// Removes the file if it is stale; returns what it was.
    pub fn clean_if_stale(&self) -> PidStatus {
        let status = self.status();
        if matches!(status, PidStatus::Dead(_) | PidStatus::Reused { .. } | PidStatus::Unreadable(_)) {
            let _ = std::fs::remove_file(&self.path);
        }
        status
    }
}

/// Writes a file so readers see the old content or the new, never half of it: a temporary file
/// beside it, synced, then renamed over it. Creates the parent directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes).and_then(|_| f.sync_all())?;
    std::fs::rename(&tmp, path)
}

impl PidGuard {
    pub fn record(&self) -> &PidRecord {
        &self.record
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        // Only our own record: another process may have taken the file over meanwhile.
        if PidFile::new(&self.path).status() == PidStatus::Live(self.record.clone()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
