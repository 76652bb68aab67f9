//! Opening a store: the header check (before SQLite touches the file), connection settings, and
//! migrations.
//!
//! The check reads the 100-byte database header directly, so that a file that is not ours is
//! refused byte-for-byte untouched, with no `-wal`/`-shm` files created beside it. It is all
//! start-up looks at (fast at any size); full integrity checks belong to `schedulezero check`.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::codec::db_err;
use super::schema::MIGRATIONS;
use super::{SqliteOptions, Synchronous};
use crate::{StoreError, StoreResult};

/// `PRAGMA application_id` of a ScheduleZero store: "SchZ".
pub const APPLICATION_ID: i32 = 0x5363_685A;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a write waits for another connection's (another node's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reading connections per store.
const READERS: u32 = 3;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// What the header says about the file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FileState {
    /// No file yet: SQLite creates it.
    Missing,
    /// An empty file, or a SQLite database with no application id and no tables: initialised.
    Blank,
    /// One of ours, at this schema version.
    Ours { version: i64 },
}

fn not_ours(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::NotOurs { path: path.display().to_string(), message: message.into() }
}

fn io_err(context: String, e: std::io::Error) -> StoreError {
    StoreError::Backend { context, source: Box::new(e) }
}

/// Reads the header and decides, without writing anything.
pub(super) fn inspect(path: &Path) -> StoreResult<FileState> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(io_err(
                    format!("cannot create the store {}", path.display()),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("the directory {} does not exist; create it first", dir.display()),
                    ),
                ));
            }
            return Ok(FileState::Missing);
        }
        Err(e) => return Err(io_err(format!("cannot read {}", path.display()), e)),
    };
    if meta.is_dir() {
        return Err(not_ours(
            path,
            "is a directory; give the path of a store file (for example schedulezero.db)",
        ));
    }
    if meta.len() == 0 {
        return Ok(FileState::Blank);
    }
    let mut header = [0u8; 100];
    let mut file =
        std::fs::File::open(path).map_err(|e| io_err(format!("cannot read {}", path.display()), e))?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(format!("cannot read {}", path.display()), e)),
        }
    }
    drop(file);
    if read < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(not_ours(
            path,
            "not a SQLite database: the file does not start with the SQLite header; it was left untouched",
        ));
    }
    let be = |at: usize| i32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let schema_cookie = be(40);
    let user_version = be(60);
    let application_id = be(68);
    match application_id {
        APPLICATION_ID => {
            let version = i64::from(user_version);
            if version > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path: path.display().to_string(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            Ok(FileState::Ours { version })
        }
        0 if schema_cookie == 0 => Ok(FileState::Blank),
        0 => Err(not_ours(
            path,
            "not a ScheduleZero store: it is a SQLite database that already holds another \
             application's tables; it was left untouched",
        )),
        other => Err(not_ours(
            path,
            format!(
                "not a ScheduleZero store: it is the SQLite database of another application \
                 (application id {other:#010x}); it was left untouched"
            ),
        )),
    }
}

fn connect_options(options: &SqliteOptions) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(&options.path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match options.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(false)
        .pragma("temp_store", "memory")
        .pragma("journal_size_limit", "67108864")
        .pragma("wal_autocheckpoint", "16384")
        .statement_cache_capacity(200)
}

/// Checks the file, opens the writer and reader pools, and migrates.
pub(super) async fn open_pools(options: &SqliteOptions) -> StoreResult<(SqlitePool, SqlitePool)> {
    let path = options.path.as_path();
    let state = inspect(path)?;
    tracing::debug!(path = %path.display(), ?state, "opening the SQLite store");
    let context = format!("cannot open the store {}", path.display());
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(300))
        // The writer works on the tails of the runs indexes and the due schedules: 4 MB holds them
        // (64 MB bought no measurable speed and grew the resident set by as much; a page it drops
        // is read again from the operating system's cache of the file).
        .connect_with(connect_options(options).create_if_missing(true).pragma("cache_size", "-4096"))
        .await
        .map_err(db_err(context.as_str()))?;
    if let Err(e) = migrate(&writer, path).await {
        writer.close().await;
        return Err(e);
    }
    let reader = SqlitePoolOptions::new()
        .max_connections(READERS)
        .acquire_timeout(Duration::from_secs(300))
        // Readers serve API listings; the OS page cache holds the file anyway, so each keeps a
        // small cache of its own instead of a copy of the database per connection.
        .connect_with(connect_options(options).pragma("cache_size", "-2048"))
        .await
        .map_err(db_err(context.as_str()))?;
    Ok((writer, reader))
}

/// Applies the missing migrations in one transaction, re-checking the identity under the write
/// lock (another node may have initialised the file meanwhile).
async fn migrate(writer: &SqlitePool, path: &Path) -> StoreResult<()> {
    let context = format!("cannot migrate the store {}", path.display());
    let ctx = context.as_str();
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err(ctx))?;
    let application_id: i64 =
        sqlx::query_scalar("PRAGMA application_id").fetch_one(&mut *tx).await.map_err(db_err(ctx))?;
    let version: i64 =
        sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await.map_err(db_err(ctx))?;
    let objects: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err(ctx))?;
    if application_id != i64::from(APPLICATION_ID) {
        if application_id != 0 {
            return Err(not_ours(
                path,
                format!("not a ScheduleZero store: application id {application_id:#010x}"),
            ));
        }
        if objects > 0 {
            return Err(not_ours(
                path,
                "not a ScheduleZero store: it already holds another application's tables",
            ));
        }
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.display().to_string(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    let from =
        usize::try_from(version).map_err(|_| StoreError::Corrupt(format!("schema version {version}")))?;
    for (i, script) in MIGRATIONS.iter().enumerate().skip(from) {
        tracing::info!(path = %path.display(), version = i + 1, "migrating the store");
        sqlx::raw_sql(*script).execute(&mut *tx).await.map_err(db_err(ctx))?;
    }
    if version < SCHEMA_VERSION {
        sqlx::query(AssertSqlSafe(format!("PRAGMA user_version = {SCHEMA_VERSION}")))
            .execute(&mut *tx)
            .await
            .map_err(db_err(ctx))?;
    }
    if application_id == 0 {
        sqlx::query(AssertSqlSafe(format!("PRAGMA application_id = {APPLICATION_ID}")))
            .execute(&mut *tx)
            .await
            .map_err(db_err(ctx))?;
    }
    tx.commit().await.map_err(db_err(ctx))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_foreign_files_are_not_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x");
        std::fs::write(&p, b"hello").expect("write");
        assert!(matches!(inspect(&p), Err(StoreError::NotOurs { .. })));
        std::fs::write(&p, vec![b'a'; 4096]).expect("write");
        assert!(matches!(inspect(&p), Err(StoreError::NotOurs { .. })));
        std::fs::write(&p, b"").expect("write");
        assert_eq!(inspect(&p).expect("blank"), FileState::Blank);
        assert_eq!(inspect(&dir.path().join("new.db")).expect("missing"), FileState::Missing);
        assert!(matches!(inspect(dir.path()), Err(StoreError::NotOurs { .. })));
    }

    /// A store written at schema version 1 opens, migrates to the current version and keeps its
    /// schedules.
    #[tokio::test]
    async fn version_1_store_is_migrated() {
        use crate::Store;
        use sqlx::ConnectOptions;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v1.db");
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .expect("connect");
        sqlx::raw_sql(MIGRATIONS[0]).execute(&mut conn).await.expect("v1");
        let id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO schedules (id, name, trigger, handler_id, method, params, policies, state, \
                                    next_fire_at, created_at, updated_at) \
             VALUES (?1, 'old', ?2, 'h', 'm', '{}', '{}', 'active', 1000, 0, 0)",
        )
        .bind(id)
        .bind(r#"{"type":"interval","seconds":5,"start_time":"1970-01-01T00:00:01Z","timezone":"UTC"}"#)
        .execute(&mut conn)
        .await
        .expect("row");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "PRAGMA user_version = 1; PRAGMA application_id = {APPLICATION_ID}"
        )))
        .execute(&mut conn)
        .await
        .expect("pragmas");
        sqlx::Connection::close(conn).await.expect("close");

        let store = super::super::SqliteStore::open_path(&path).await.expect("open and migrate");
        let s = store.get_schedule(id).await.expect("get").expect("kept");
        assert_eq!(s.name, "old");
        let version: i64 =
            sqlx::query_scalar("PRAGMA user_version").fetch_one(&store.reader).await.expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let batch = store.claim_due("n", s.next_fire_at.expect("next"), 10, false).await.expect("claim");
        assert_eq!(batch.ready.len(), 1);
    }
}
