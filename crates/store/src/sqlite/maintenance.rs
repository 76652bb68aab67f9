//! Maintenance of a store file: a consistent backup of a store in use, the full check (SQLite's
//! integrity and foreign-key checks, then our own invariants), and restoring a backup in place.
//!
//! - [`backup`] runs `VACUUM INTO` on a read-only connection of its own: SQLite copies one
//!   read transaction's snapshot, so a server writing meanwhile (WAL) neither waits nor shows
//!   through half-way. The copy is written beside the destination under a temporary name, synced,
//!   checked to be a store, and only then given its name: no half file ever has it.
//! - [`check`] reads everything (`PRAGMA integrity_check`), inside one read transaction that a
//!   writer does not wait for.
//! - [`prepare_restore`] copies the backup beside the store and checks that copy in full (what is
//!   put in place is what was checked); [`PreparedRestore::commit`] keeps the replaced store
//!   (with its `-wal`) under a `.before-restore-<time>` name and renames the copy into place.
//!   Whether a server still uses the store is for the caller to establish first.
//!
//! Nothing here creates, migrates or writes to a store; files that are not stores are refused
//! before SQLite opens them (the header check of [`open`](super::open)).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use super::SCHEMA_VERSION;
use super::open::{FileState, inspect};
use crate::{StoreError, StoreResult};

/// How long a read waits for a lock (a checkpoint or recovery by another connection).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Problems of one kind listed at most this many times (the rest counted).
const MAX_LISTED: usize = 20;

/// The schema's tables, each with the schema version that created it.
const TABLES: &[(&str, i64)] =
    &[("schedules", 1), ("runs", 1), ("attempts", 1), ("handler_instances", 1), ("deleted_schedules", 4)];

/// How a file is opened for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A store a server may be using: ordinary locks, read-only (a WAL reader never holds the
    /// writer up, and sees the log's committed transactions).
    Shared,
    /// A file nobody writes (a backup): opened immutable, so nothing at all is written, not
    /// even a `-shm` beside it. A `-wal` beside such a file is not read.
    Snapshot,
}

/// What a store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// Every schedule row, finished ones included.
    pub schedules: u64,
    /// Active or paused schedules.
    pub live_schedules: u64,
    pub runs: u64,
    pub attempts: u64,
    pub handler_instances: u64,
}

/// A backup written.
#[derive(Debug, Clone)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    pub summary: Summary,
    pub took: Duration,
}

/// What [`check`] found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// `PRAGMA user_version` as SQLite reads it (the log included).
    pub schema_version: i64,
    /// Counts, when the tables could be read.
    pub summary: Option<Summary>,
    /// Each problem found, one line each; empty when the store is sound.
    pub problems: Vec<String>,
    /// Worth knowing, not wrong (an older schema version, migrated at the next start).
    pub notes: Vec<String>,
    pub took: Duration,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A backup copied beside the store and checked, ready to be put in place.
#[derive(Debug)]
pub struct PreparedRestore {
    target: PathBuf,
    staged: PathBuf,
    /// The check of the copy (its `path` is the backup's).
    pub report: CheckReport,
}

/// A restore done.
#[derive(Debug, Clone)]
pub struct Restored {
    pub path: PathBuf,
    /// Where the replaced store was kept (none when there was no store).
    pub kept: Option<PathBuf>,
    /// Its write-ahead log or rollback journal, kept beside it under the matching name so that
    /// SQLite still pairs them.
    pub kept_companions: Vec<PathBuf>,
    /// A stale shared-memory index removed (it only indexes the log, and is rebuilt from it).
    pub removed: Vec<PathBuf>,
}

/// Writes a consistent copy of the store at `source` to `dest`. An existing `dest` is refused
/// unless `replace`.
pub async fn backup(source: &Path, dest: &Path, replace: bool) -> StoreResult<Backup> {
    let started = Instant::now();
    require_store(source, Access::Shared)?;
    let dest_name = dest.file_name().ok_or_else(|| refused(dest, "names no file"))?;
    if is_same_file(source, dest) {
        return Err(refused(dest, "is the store itself; write the backup to another file"));
    }
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => return Err(refused(dest, "is a directory; give a file name")),
        Ok(_) if !replace => return Err(exists(dest)),
        _ => {}
    }
    let dir = parent_dir(dest);
    if !dir.is_dir() {
        return Err(refused(
            dest,
            format!("the directory {} does not exist; create it first", dir.display()),
        ));
    }
    let mut partial_name = dest_name.to_os_string();
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = Staged(dir.join(partial_name));
    remove_if_exists(&partial.0)?;
    let partial_str = partial.0.to_str().ok_or_else(|| {
        refused(dest, "is not valid UTF-8, which SQLite needs for a file name; choose another name")
    })?;

    let context = format!("cannot back up {} to {}", source.display(), dest.display());
    let mut conn = connect(source, Access::Shared).await?;
    if let Err(e) = verify_identity(&mut conn, source).await {
        let _ = conn.close().await;
        return Err(e);
    }
    // `query_only` refuses VACUUM INTO too, though it writes only the new file: lifted for it.
    let copied = match sqlx::raw_sql("PRAGMA query_only = OFF").execute(&mut conn).await {
        Ok(_) => sqlx::query("VACUUM INTO ?1").bind(partial_str).execute(&mut conn).await,
        Err(e) => Err(e),
    };
    let _ = conn.close().await;
    copied.map_err(|e| backend(&context, e))?;
    sync_file(&partial.0).map_err(|e| io_err(&context, e))?;

    // The copy is read back before it gets its name: a store, its counts.
    let summary = {
        let mut conn = connect(&partial.0, Access::Snapshot).await?;
        let summary = summarize(&mut conn).await;
        let _ = conn.close().await;
        summary.map_err(|e| backend(&format!("{context}: the copy cannot be read back"), e))?
    };
    let bytes = std::fs::metadata(&partial.0).map_err(|e| io_err(&context, e))?.len();
    if replace {
        std::fs::rename(&partial.0, dest).map_err(|e| io_err(&context, e))?;
    } else {
        // A link fails when the name exists, so a file created there meanwhile is not replaced.
        std::fs::hard_link(&partial.0, dest).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists { exists(dest) } else { io_err(&context, e) }
        })?;
    }
    drop(partial);
    sync_dir(dir).map_err(|e| io_err(&context, e))?;
    Ok(Backup { path: dest.to_path_buf(), bytes, summary, took: started.elapsed() })
}

/// Checks the store at `path` in full: every page and index (`PRAGMA integrity_check`), foreign
/// keys, the tables of the schema, and invariants the store keeps. A file that is not a store
/// (or of a newer schema) is an error, as at start-up.
pub async fn check(path: &Path, access: Access) -> StoreResult<CheckReport> {
    let started = Instant::now();
    require_store(path, access)?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut conn = connect(path, access).await?;
    let report = check_connection(&mut conn, path, bytes).await;
    let _ = conn.close().await;
    let mut report = report?;
    report.took = started.elapsed();
    Ok(report)
}

/// Copies `backup` beside `target` and checks the copy in full. Nothing at `target` changes
/// until [`PreparedRestore::commit`]; dropping the prepared restore removes the copy.
pub async fn prepare_restore(backup: &Path, target: &Path) -> StoreResult<PreparedRestore> {
    let wal = companion(backup, "-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(refused(
            backup,
            format!(
                "has a write-ahead log beside it ({}): it is a store in use, or a copy taken while \
                 one was, and the file alone may miss committed changes; make a backup of it with \
                 `schedulezero backup --database {} FILE` and restore that",
                wal.display(),
                backup.display()
            ),
        ));
    }
    require_store(backup, Access::Snapshot)?;
    if is_same_file(backup, target) {
        return Err(refused(backup, "is the store itself; there is nothing to restore"));
    }
    let target_name = target.file_name().ok_or_else(|| refused(target, "names no file"))?;
    let dir = parent_dir(target);
    let context = format!("cannot restore {} to {}", backup.display(), target.display());
    std::fs::create_dir_all(dir).map_err(|e| io_err(&context, e))?;
    let mut staged_name = target_name.to_os_string();
    staged_name.push(format!(".restore-{}", std::process::id()));
    let staged = Staged(dir.join(staged_name));
    remove_if_exists(&staged.0)?;
    std::fs::copy(backup, &staged.0).map_err(|e| io_err(&context, e))?;
    sync_file(&staged.0).map_err(|e| io_err(&context, e))?;
    let mut report = check(&staged.0, Access::Snapshot).await?;
    report.path = backup.to_path_buf();
    let staged = staged.keep();
    Ok(PreparedRestore { target: target.to_path_buf(), staged, report })
}

impl PreparedRestore {
    /// The store file that will be replaced.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Puts the checked copy in place. The replaced store is kept as
    /// `<store>.before-restore-<UTC time>`, its `-wal` and `-journal` moved beside it under the
    /// matching names (so nothing it had committed is lost), its `-shm` removed; then the copy is
    /// renamed over the store. The store's name never goes missing: the old file is linked to its
    /// kept name first, and the rename replaces it in one step.
    pub fn commit(mut self) -> StoreResult<Restored> {
        if !self.report.is_ok() {
            return Err(refused(&self.report.path, "did not pass the check; it was not restored"));
        }
        let target = self.target.clone();
        let context = format!("cannot put the restored store in place at {}", target.display());
        let exists = std::fs::symlink_metadata(&target).is_ok();
        let companions: Vec<PathBuf> =
            ["-wal", "-journal"].iter().map(|s| companion(&target, s)).filter(|p| p.exists()).collect();
        let shm = companion(&target, "-shm");
        let mut restored =
            Restored { path: target.clone(), kept: None, kept_companions: Vec::new(), removed: Vec::new() };
        if exists || !companions.is_empty() {
            let kept = kept_name(&target);
            if exists && std::fs::hard_link(&target, &kept).is_err() {
                // A file system without hard links: the name is missing for a moment instead.
                std::fs::rename(&target, &kept).map_err(|e| io_err(&context, e))?;
            }
            for c in companions {
                let suffix = if c.to_string_lossy().ends_with("-wal") { "-wal" } else { "-journal" };
                let to = companion(&kept, suffix);
                std::fs::rename(&c, &to).map_err(|e| io_err(&context, e))?;
                restored.kept_companions.push(to);
            }
            if exists {
                restored.kept = Some(kept);
            }
        }
        if shm.exists() {
            std::fs::remove_file(&shm).map_err(|e| io_err(&context, e))?;
            restored.removed.push(shm);
        }
        std::fs::rename(&self.staged, &target).map_err(|e| io_err(&context, e))?;
        self.staged = PathBuf::new();
        sync_dir(parent_dir(&target)).map_err(|e| io_err(&context, e))?;
        Ok(restored)
    }
}

impl Drop for PreparedRestore {
    fn drop(&mut self) {
        if !self.staged.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

/// A temporary file removed on drop unless kept.
struct Staged(PathBuf);

impl Staged {
    fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

async fn check_connection(conn: &mut SqliteConnection, path: &Path, bytes: u64) -> StoreResult<CheckReport> {
    let context = format!("cannot check {}", path.display());
    let schema_version = verify_identity(conn, path).await?;
    let mut report = CheckReport {
        path: path.to_path_buf(),
        bytes,
        schema_version,
        summary: None,
        problems: Vec::new(),
        notes: Vec::new(),
        took: Duration::ZERO,
    };
    if schema_version < SCHEMA_VERSION {
        report.notes.push(format!(
            "schema version {schema_version}, older than this build's {SCHEMA_VERSION}: the server \
             migrates it when it next starts"
        ));
    }
    if schema_version < 1 {
        report.problems.push("schema version 0: the store was never initialised".into());
        return Ok(report);
    }

    // Every page, every index entry against its table.
    let mut tx = conn.begin().await.map_err(|e| backend(&context, e))?;
    match sqlx::query_scalar::<_, String>("PRAGMA integrity_check").fetch_all(&mut *tx).await {
        Ok(lines) if lines == ["ok"] => {}
        Ok(lines) => list(&mut report.problems, "integrity_check", lines),
        Err(e) => report.problems.push(format!("integrity_check could not read the file through: {e}")),
    }
    match sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut *tx).await {
        Ok(rows) => {
            let lines = rows
                .iter()
                .map(|r| {
                    let table: String = r.try_get(0).unwrap_or_default();
                    let rowid: Option<i64> = r.try_get(1).unwrap_or_default();
                    let parent: String = r.try_get(2).unwrap_or_default();
                    format!("{table} row {} refers to a missing row of {parent}", rowid.unwrap_or(0))
                })
                .collect();
            list(&mut report.problems, "foreign_key_check", lines);
        }
        Err(e) => report.problems.push(format!("foreign_key_check failed: {e}")),
    }
    let tables: Vec<String> = match sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .fetch_all(&mut *tx)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            report.problems.push(format!("the schema cannot be read: {e}"));
            Vec::new()
        }
    };
    let missing: Vec<&str> = TABLES
        .iter()
        .filter(|(t, since)| *since <= schema_version && !tables.iter().any(|n| n == t))
        .map(|(t, _)| *t)
        .collect();
    if !missing.is_empty() {
        report.problems.push(format!("tables missing from the schema: {}", missing.join(", ")));
    } else {
        for &(query, what, since) in INVARIANTS {
            if since > schema_version {
                continue;
            }
            match sqlx::query_scalar::<_, i64>(query).fetch_one(&mut *tx).await {
                Ok(0) => {}
                Ok(n) => report.problems.push(format!("{n} {what}")),
                Err(e) => report.problems.push(format!("cannot verify that no {what}: {e}")),
            }
        }
        match summarize(&mut tx).await {
            Ok(s) => report.summary = Some(s),
            Err(e) => report.problems.push(format!("cannot count the rows: {e}")),
        }
    }
    let _ = tx.rollback().await;
    Ok(report)
}

/// Invariants the store keeps, each a count of the rows breaking it, with the schema version
/// from which it holds. (A run whose schedule is in neither `schedules` nor `deleted_schedules`
/// is not among them: schedules deleted before version 4 left no name behind.)
const INVARIANTS: &[(&str, &str, i64)] = &[
    (
        "SELECT count(*) FROM attempts WHERE run_id NOT IN (SELECT id FROM runs)",
        "attempts belong to no run (history is purged a run and its attempts together)",
        1,
    ),
    (
        "SELECT count(*) FROM attempts a JOIN runs r ON r.id = a.run_id WHERE a.number > r.attempt",
        "attempts are numbered above their run's latest attempt",
        1,
    ),
    (
        "SELECT count(*) FROM runs WHERE (lease_owner IS NULL) <> (lease_expires_at IS NULL)",
        "runs have a lease owner without an expiry, or an expiry without an owner",
        1,
    ),
    (
        "SELECT count(*) FROM (SELECT name FROM schedules WHERE state <> 'finished' \
                               GROUP BY name HAVING count(*) > 1)",
        "live schedules share one name",
        1,
    ),
    (
        "SELECT count(*) FROM deleted_schedules WHERE id IN (SELECT id FROM schedules)",
        "schedules are both stored and recorded as deleted",
        4,
    ),
];

fn list(problems: &mut Vec<String>, what: &str, lines: Vec<String>) {
    let more = lines.len().saturating_sub(MAX_LISTED);
    problems.extend(lines.into_iter().take(MAX_LISTED).map(|l| format!("{what}: {l}")));
    if more > 0 {
        problems.push(format!("{what}: … and {more} more"));
    }
}

async fn summarize(conn: &mut SqliteConnection) -> Result<Summary, sqlx::Error> {
    let schema_version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *conn).await?;
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM schedules), \
                (SELECT count(*) FROM schedules WHERE state <> 'finished'), \
                (SELECT count(*) FROM runs), \
                (SELECT count(*) FROM attempts), \
                (SELECT count(*) FROM handler_instances)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let n =
        |i: usize| -> Result<u64, sqlx::Error> { Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or(0)) };
    Ok(Summary {
        schema_version,
        schedules: n(0)?,
        live_schedules: n(1)?,
        runs: n(2)?,
        attempts: n(3)?,
        handler_instances: n(4)?,
    })
}

/// The header check of start-up, for a file that must already be a store. A store in use may
/// not have its header in the main file yet (a new store whose first commits are all in its
/// `-wal`): with `Shared` access such a file passes here, and [`verify_identity`] decides once
/// SQLite has read the log.
fn require_store(path: &Path, access: Access) -> StoreResult<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(StoreError::NotOurs { path: path.display().to_string(), message: "no such file".into() });
    }
    match inspect(path)? {
        FileState::Ours { .. } => Ok(()),
        FileState::Blank
            if access == Access::Shared
                && std::fs::metadata(companion(path, "-wal")).is_ok_and(|m| m.len() > 0) =>
        {
            Ok(())
        }
        FileState::Missing => {
            Err(StoreError::NotOurs { path: path.display().to_string(), message: "no such file".into() })
        }
        FileState::Blank => Err(StoreError::NotOurs {
            path: path.display().to_string(),
            message: "not a ScheduleZero store: the file is empty (or an empty SQLite database); \
                      nothing has been stored there"
                .into(),
        }),
    }
}

/// The identity as SQLite reads it (the log included): ours, of a known schema version.
async fn verify_identity(conn: &mut SqliteConnection, path: &Path) -> StoreResult<i64> {
    let context = format!("cannot read {}", path.display());
    let application_id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| backend(&context, e))?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| backend(&context, e))?;
    if application_id != i64::from(super::APPLICATION_ID) {
        let message = if application_id == 0 {
            "not a ScheduleZero store: an empty SQLite database, or another application's".to_string()
        } else {
            format!(
                "not a ScheduleZero store: the SQLite database of another application (application id {application_id:#010x})"
            )
        };
        return Err(StoreError::NotOurs { path: path.display().to_string(), message });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.display().to_string(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// A reading connection. `Shared` opens read-write with `query_only` set rather than read-only:
/// a read-only connection to a WAL store that nothing else has open creates `-wal` and `-shm`
/// files it cannot remove afterwards (owned by whoever ran the command), while a read-write one
/// that closes last removes them, as any SQLite connection does. `query_only` makes SQLite
/// refuse any write through it.
async fn connect(path: &Path, access: Access) -> StoreResult<SqliteConnection> {
    let options = SqliteConnectOptions::new().filename(path).foreign_keys(false).busy_timeout(BUSY_TIMEOUT);
    let options = match access {
        Access::Shared => options.pragma("query_only", "ON"),
        Access::Snapshot => options.read_only(true).immutable(true),
    };
    options.connect().await.map_err(|e| backend(&format!("cannot open {}", path.display()), e))
}

/// `<path><suffix>`, the way SQLite names a database's companion files.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// `<store>.before-restore-<UTC time>`, with `-2`, `-3`… if taken.
fn kept_name(target: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let base = companion(target, &format!(".before-restore-{stamp}"));
    let taken = |p: &Path| ["", "-wal", "-journal"].iter().any(|s| companion(p, s).exists());
    if !taken(&base) {
        return base;
    }
    (2..).map(|i| companion(&base, &format!("-{i}"))).find(|p| !taken(p)).unwrap_or(base)
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn is_same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn remove_if_exists(path: &Path) -> StoreResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&format!("cannot remove the leftover {}", path.display()), e)),
    }
}

fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new().read(true).open(path)?.sync_all()
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn refused(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Refused { path: path.display().to_string(), message: message.into() }
}

fn exists(path: &Path) -> StoreError {
    refused(path, "already exists; choose another name, or replace it on purpose")
}

fn backend(context: &str, e: sqlx::Error) -> StoreError {
    StoreError::Backend { context: context.to_string(), source: Box::new(e) }
}

fn io_err(context: &str, e: io::Error) -> StoreError {
    StoreError::Backend { context: context.to_string(), source: Box::new(e) }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::conformance::{at, interval, schedule};
    use crate::{SqliteStore, Store};

    /// A store with `n` interval schedules (every second from `at(0)`) and the runs of their
    /// first `claims` seconds.
    async fn store_with(path: &Path, n: usize, claims: i64) -> SqliteStore {
        let store = SqliteStore::open_path(path).await.expect("open");
        let schedules: Vec<_> =
            (0..n).map(|i| schedule(&format!("s{i}"), interval(1, at(0), 0), Default::default())).collect();
        store.insert_schedules_bulk(&schedules).await.expect("insert");
        for k in 0..claims {
            store.claim_due("n", at(k), 10_000, false).await.expect("claim");
        }
        store
    }

    async fn raw(path: &Path) -> SqliteConnection {
        SqliteConnectOptions::new().filename(path).connect().await.expect("connect")
    }

    fn sidecars(path: &Path) -> Vec<PathBuf> {
        ["-wal", "-shm", "-journal"].iter().map(|s| companion(path, s)).filter(|p| p.exists()).collect()
    }

    /// A backup taken while another connection keeps committing is one consistent snapshot: it
    /// passes the full check, and its runs are exactly the slots of a whole number of claims.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backup_of_a_store_being_written_is_a_consistent_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("live.db");
        let store = Arc::new(store_with(&path, 50, 1).await);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut k = 1;
                while !stop.load(Ordering::Relaxed) {
                    store.claim_due("n", at(k), 10_000, false).await.expect("claim");
                    k += 1;
                }
                k
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dest = dir.path().join("backup.db");
        let backup = backup(&path, &dest, false).await.expect("backup");
        stop.store(true, Ordering::Relaxed);
        let claims = writer.await.expect("writer");
        assert!(claims > 2, "the writer committed while the backup ran");

        assert_eq!(backup.summary.schedules, 50);
        assert!(backup.summary.runs > 0 && backup.summary.runs % 50 == 0, "{:?}", backup.summary);
        assert_eq!(backup.bytes, std::fs::metadata(&dest).expect("dest").len());
        let report = check(&dest, Access::Snapshot).await.expect("check");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.summary.as_ref(), Some(&backup.summary));
        assert_eq!(report.schema_version, SCHEMA_VERSION);
        assert!(sidecars(&dest).is_empty(), "the backup is one file: {:?}", sidecars(&dest));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // The backup is a store the server opens as it is.
        let copy = SqliteStore::open_path(&dest).await.expect("opens");
        assert_eq!(copy.find_schedule("s7").await.expect("find").map(|s| s.name), Some("s7".into()));
        copy.close().await;
        store.close().await;
    }

    #[tokio::test]
    async fn backup_refuses_an_existing_file_unless_replacing_and_foreign_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        store_with(&path, 3, 2).await.close().await;
        let dest = dir.path().join("b.db");
        std::fs::write(&dest, b"keep me").expect("write");
        let e = backup(&path, &dest, false).await.expect_err("exists");
        assert!(matches!(e, StoreError::Refused { .. }) && e.to_string().contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&dest).expect("read"), b"keep me");
        let b = backup(&path, &dest, true).await.expect("replace");
        assert_eq!((b.summary.schedules, b.summary.runs), (3, 6));
        assert!(sidecars(&path).is_empty(), "nothing left beside the source: {:?}", sidecars(&path));

        let e = backup(&path, &path, true).await.expect_err("itself");
        assert!(e.to_string().contains("the store itself"), "{e}");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello\n".repeat(100)).expect("write");
        let e = backup(&text, &dir.path().join("x.db"), false).await.expect_err("foreign");
        assert!(matches!(e, StoreError::NotOurs { .. }), "{e}");
        let e =
            backup(&dir.path().join("none.db"), &dir.path().join("y.db"), false).await.expect_err("missing");
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(!dir.path().join("x.db").exists() && !dir.path().join("y.db").exists());
    }

    /// A store cleanly closed (WAL mode, no `-wal` or `-shm` left) and one still open are both
    /// checked without writing a byte of the store.
    #[tokio::test]
    async fn check_reads_a_closed_and_an_open_store_without_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        store_with(&path, 4, 3).await.close().await;
        assert!(sidecars(&path).is_empty());
        let before = std::fs::read(&path).expect("read");
        let report = check(&path, Access::Shared).await.expect("check");
        assert!(report.is_ok() && report.notes.is_empty(), "{report:?}");
        let s = report.summary.expect("summary");
        assert_eq!((s.schedules, s.live_schedules, s.runs, s.attempts), (4, 4, 12, 0));
        assert_eq!(std::fs::read(&path).expect("read"), before, "not a byte changed");
        assert!(sidecars(&path).is_empty(), "nothing written beside it: {:?}", sidecars(&path));

        let open = store_with(&path, 0, 0).await;
        open.claim_due("n", at(3), 100, false).await.expect("claim");
        let report = check(&path, Access::Shared).await.expect("check live");
        assert_eq!(report.summary.map(|s| s.runs), Some(16), "the log's commits are seen");
        open.close().await;
    }

    /// Overwriting bytes in the middle of a table's page is found by the full check.
    #[tokio::test]
    async fn check_finds_a_damaged_page_and_broken_invariants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        store_with(&path, 200, 20).await.close().await;
        let (root, page_size): (i64, i64) = {
            let mut c = raw(&path).await;
            let root = sqlx::query_scalar("SELECT rootpage FROM sqlite_schema WHERE name = 'runs_by_slot'")
                .fetch_one(&mut c)
                .await
                .expect("root");
            let size = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut c).await.expect("size");
            c.close().await.expect("close");
            (root, size)
        };
        let damaged = dir.path().join("damaged.db");
        std::fs::copy(&path, &damaged).expect("copy");
        let mut bytes = std::fs::read(&damaged).expect("read");
        let at = usize::try_from((root - 1) * page_size + 12).expect("offset");
        bytes[at..at + 64].fill(0xA5);
        std::fs::write(&damaged, bytes).expect("write");
        let report = check(&damaged, Access::Snapshot).await.expect("check");
        assert!(!report.is_ok(), "the damage is found");
        assert!(report.problems.iter().any(|p| p.starts_with("integrity_check")), "{:?}", report.problems);

        // Sound pages, broken invariants.
        let broken = dir.path().join("broken.db");
        std::fs::copy(&path, &broken).expect("copy");
        let mut c = raw(&broken).await;
        sqlx::raw_sql(
            "INSERT INTO attempts (run_id, number, started_at, finished_at, outcome) \
                 VALUES (x'00112233445566778899aabbccddeeff', 1, 0, 1, 'succeeded'); \
             UPDATE runs SET lease_owner = 'n', lease_expires_at = NULL WHERE rowid = 1; \
             INSERT INTO deleted_schedules (id, name, deleted_at) \
                 SELECT id, name, 0 FROM schedules LIMIT 1;",
        )
        .execute(&mut c)
        .await
        .expect("break");
        c.close().await.expect("close");
        let report = check(&broken, Access::Shared).await.expect("check");
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert!(report.problems[0].contains("1 attempts belong to no run"), "{:?}", report.problems);
        assert!(report.problems[1].contains("lease owner"), "{:?}", report.problems);
        assert!(report.problems[2].contains("1 schedules are both stored and recorded as deleted"));
    }

    #[tokio::test]
    async fn check_refuses_files_that_are_not_stores_and_notes_an_older_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = dir.path().join("x.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\n0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000")
            .expect("write");
        assert!(matches!(check(&png, Access::Shared).await, Err(StoreError::NotOurs { .. })));
        let other = dir.path().join("other.db");
        let mut c =
            SqliteConnectOptions::new().filename(&other).create_if_missing(true).connect().await.expect("c");
        sqlx::raw_sql("CREATE TABLE notes (t TEXT)").execute(&mut c).await.expect("table");
        c.close().await.expect("close");
        assert!(matches!(check(&other, Access::Shared).await, Err(StoreError::NotOurs { .. })));

        let path = dir.path().join("s.db");
        store_with(&path, 1, 0).await.close().await;
        let mut c = raw(&path).await;
        sqlx::raw_sql("PRAGMA user_version = 2").execute(&mut c).await.expect("downgrade");
        c.close().await.expect("close");
        let report = check(&path, Access::Shared).await.expect("check");
        assert!(report.is_ok() && report.notes[0].contains("migrates it"), "{report:?}");
        let mut c = raw(&path).await;
        sqlx::raw_sql("PRAGMA user_version = 99").execute(&mut c).await.expect("bump");
        c.close().await.expect("close");
        assert!(matches!(check(&path, Access::Shared).await, Err(StoreError::NewerSchema { found: 99, .. })));
    }

    /// The replaced store is kept with its log (its last commits are not lost), the stale
    /// `-shm` goes, and the restored store is the backup's.
    #[tokio::test]
    async fn restore_keeps_the_replaced_store_with_its_log_and_puts_the_copy_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("source.db");
        store_with(&source, 5, 1).await.close().await;
        let saved = dir.path().join("saved.db");
        backup(&source, &saved, false).await.expect("backup");

        // The target: a store whose process died with commits still in its log.
        let target = dir.path().join("target.db");
        let old = store_with(&target, 2, 1).await;
        old.insert_schedule(&schedule("only-in-the-log", interval(5, at(0), 0), Default::default()))
            .await
            .expect("insert");
        assert!(companion(&target, "-wal").exists());
        let staged = dir.path().join("copy-of-target-while-open");
        std::fs::copy(&target, &staged).expect("copy");
        for s in ["-wal", "-shm"] {
            std::fs::copy(companion(&target, s), companion(&staged, s)).expect("copy");
        }
        old.close().await;
        std::fs::rename(&staged, &target).expect("put back");
        for s in ["-wal", "-shm"] {
            std::fs::rename(companion(&staged, s), companion(&target, s)).expect("put back");
        }

        let prepared = prepare_restore(&saved, &target).await.expect("prepare");
        assert!(prepared.report.is_ok());
        assert_eq!(prepared.report.path, saved);
        let restored = prepared.commit().expect("commit");
        let kept = restored.kept.expect("kept");
        assert!(kept.to_string_lossy().contains("target.db.before-restore-"), "{}", kept.display());
        assert_eq!(restored.kept_companions, vec![companion(&kept, "-wal")]);
        assert_eq!(restored.removed, vec![companion(&target, "-shm")]);
        assert!(sidecars(&target).is_empty());

        let now = SqliteStore::open_path(&target).await.expect("open restored");
        assert_eq!(now.list_schedules(&Default::default()).await.expect("list").len(), 5);
        now.close().await;
        let before = SqliteStore::open_path(&kept).await.expect("open kept");
        assert!(before.find_schedule("only-in-the-log").await.expect("find").is_some(), "log kept");
        before.close().await;
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".restore-")), "no staged copy left: {names:?}");
    }

    #[tokio::test]
    async fn restore_refuses_foreign_damaged_and_live_copies_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target.db");
        store_with(&target, 2, 0).await.close().await;
        let before = std::fs::read(&target).expect("read");

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a store").expect("write");
        assert!(matches!(prepare_restore(&text, &target).await, Err(StoreError::NotOurs { .. })));

        let live = dir.path().join("live.db");
        let open = store_with(&live, 1, 1).await;
        let e = prepare_restore(&live, &target).await.expect_err("has a log");
        assert!(e.to_string().contains("write-ahead log"), "{e}");
        open.close().await;

        let damaged = dir.path().join("damaged.db");
        store_with(&damaged, 300, 10).await.close().await;
        let mut bytes = std::fs::read(&damaged).expect("read");
        let page = 4096;
        let mid = bytes.len() / page / 2 * page;
        bytes[mid + 8..mid + 200].fill(0xFF);
        std::fs::write(&damaged, bytes).expect("write");
        let prepared = prepare_restore(&damaged, &target).await.expect("prepared, with problems");
        assert!(!prepared.report.is_ok());
        assert!(matches!(prepared.commit(), Err(StoreError::Refused { .. })));

        assert_eq!(std::fs::read(&target).expect("read"), before, "the store is untouched");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".restore-") || n.contains("before-restore")), "{names:?}");
    }
}
