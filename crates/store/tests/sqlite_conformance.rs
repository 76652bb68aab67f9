//! The conformance suite against SQLite (a fresh temp file per test), and SQLite's own cases:
//! the header check that refuses foreign files untouched, schema versions, reopening.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use schedulezero_core::policy::Policies;
use schedulezero_store::conformance::{self, Harness, at, interval, schedule};
use schedulezero_store::{SqliteOptions, SqliteStore, Store, StoreError, Synchronous};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

struct SqliteHarness {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

#[async_trait]
impl Harness for SqliteHarness {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_path(&self.path).await.expect("open the store"))
    }
}

fn harness() -> SqliteHarness {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    SqliteHarness { _dir: dir, path }
}

schedulezero_store::conformance_tests!(harness());

fn sidecars(path: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", path.display())))
        .filter(|p| p.exists())
        .collect()
}

/// Writes a SQLite file of another kind with plain SQL (rollback journal, so nothing is left
/// beside it once closed).
async fn foreign_sqlite(path: &Path, sql: &str) {
    let mut conn =
        SqliteConnectOptions::new().filename(path).create_if_missing(true).connect().await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.expect("write");
    sqlx::Connection::close(conn).await.expect("close");
    assert!(sidecars(path).is_empty());
}

async fn refused_untouched(path: &Path) -> StoreError {
    let before = std::fs::read(path).expect("read");
    let err = SqliteStore::open_path(path).await.expect_err("refused");
    assert_eq!(std::fs::read(path).expect("read"), before, "the file was changed");
    assert!(sidecars(path).is_empty(), "files were created beside it: {:?}", sidecars(path));
    err
}

#[tokio::test]
async fn foreign_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(20)).expect("write");
    let err = refused_untouched(&path).await;
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    std::fs::write(&path, "tiny").expect("write");
    assert!(refused_untouched(&path).await.to_string().contains("not a SQLite database"));
}

#[tokio::test]
async fn sqlite_file_of_another_application_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    foreign_sqlite(&path, "PRAGMA application_id = 1234; CREATE TABLE t (x)").await;
    let err = refused_untouched(&path).await;
    assert!(err.to_string().contains("not a ScheduleZero store"), "{err}");

    let path = dir.path().join("plain.db");
    foreign_sqlite(&path, "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada')").await;
    let err = refused_untouched(&path).await;
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
    assert!(err.to_string().contains("not a ScheduleZero store"), "{err}");
}

#[tokio::test]
async fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let store = SqliteStore::open_path(&path).await.expect("create");
    store.close().await;
    drop(store);
    foreign_sqlite(&path, "PRAGMA journal_mode = DELETE; PRAGMA user_version = 99").await;
    match refused_untouched(&path).await {
        StoreError::NewerSchema { found, known, .. } => {
            assert_eq!(found, 99);
            assert_eq!(known, schedulezero_store::sqlite::SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn reopening_keeps_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let s = schedule("keep", interval(10, conformance::t0(), 0), Policies::default());
    let run = {
        let store = SqliteStore::open(SqliteOptions { path: path.clone(), synchronous: Synchronous::Full })
            .await
            .expect("create");
        store.insert_schedule(&s).await.expect("insert");
        let batch = store.claim_due("n", at(0), 10, false).await.expect("claim");
        store.close().await;
        batch.ready[0].run.clone()
    };
    let store = SqliteStore::open_path(&path).await.expect("reopen");
    let mut after = s.clone();
    after.next_fire_at = Some(at(10));
    assert_eq!(store.get_schedule(s.id).await.expect("get"), Some(after));
    assert_eq!(store.get_run(run.id).await.expect("get"), Some(run));
}

#[tokio::test]
async fn empty_file_is_initialised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    std::fs::write(&path, b"").expect("write");
    let store = SqliteStore::open_path(&path).await.expect("open");
    assert_eq!(store.next_wake().await.expect("wake"), None);
}

#[tokio::test]
async fn missing_directory_and_directory_paths_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir");
    let err = SqliteStore::open_path(missing.join("store.db")).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()) && msg.contains("does not exist"), "{msg}");
    assert!(!missing.exists());
    let err = SqliteStore::open_path(dir.path()).await.expect_err("refused");
    assert!(err.to_string().contains("is a directory"), "{err}");
}
