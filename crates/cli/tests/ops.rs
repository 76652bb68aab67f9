//! `schedulezero backup`, `restore`, `check`, and `serve`'s refusal of store files that are not
//! its own, as operators run them: the real binary on real SQLite files, next to a real server
//! that a version-1 pyzmq handler keeps busy (started with the shared tests/support).

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use schedulezero_store::conformance::{at, interval, schedule};
use schedulezero_store::sqlite::SCHEMA_VERSION;
use schedulezero_store::{SqliteStore, Store};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use support::{http, serve_any_port, serve_with_v1_handler};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_schedulezero"));
    cmd.env_remove("SCHEDULEZERO_DEPLOYMENT")
        .env_remove("SCHEDULEZERO_HOME")
        .env_remove("SCHEDULEZERO_DATABASE_URL");
    cmd
}

/// `schedulezero ARGS --root ROOT`, to completion.
fn run(root: &Path, args: &[&str]) -> Output {
    bin().args(args).arg("--root").arg(root).output().expect("binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn store_path(root: &Path) -> PathBuf {
    root.join("deployments/default/schedulezero.db")
}

fn schedule_job(addr: &str, id: &str, trigger: Value) {
    let body = json!({"handler_id": "legacy", "job_method": "echo", "job_id": id, "trigger": trigger});
    let (status, reply) = http(addr, "POST", "/api/schedule", Some(&body.to_string()));
    assert_eq!(status, 201, "{reply}");
}

fn schedule_ids(addr: &str) -> Vec<String> {
    let (status, list) = http(addr, "GET", "/api/schedules", None);
    assert_eq!(status, 200, "{list}");
    let mut ids: Vec<String> = list["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

async fn connect(path: &Path, create: bool) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .connect()
        .await
        .expect("sqlite opens")
}

/// The rows of one text column, read straight from a SQLite file.
fn column(path: &Path, sql: &str) -> Vec<String> {
    block_on(async {
        let mut c = connect(path, false).await;
        let rows: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&mut c).await.expect("query");
        c.close().await.expect("close");
        rows
    })
}

fn count(path: &Path, sql: &str) -> i64 {
    block_on(async {
        let mut c = connect(path, false).await;
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut c).await.expect("query");
        c.close().await.expect("close");
        n
    })
}

fn sidecars(path: &Path) -> Vec<String> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| format!("{}{s}", path.display()))
        .filter(|p| Path::new(p).exists())
        .collect()
}

/// A store with `n` interval schedules and the runs of their first `claims` seconds, made by the
/// store itself (no server).
fn make_store(path: &Path, n: usize, claims: i64) {
    block_on(async {
        let store = SqliteStore::open_path(path).await.expect("open");
        let schedules: Vec<_> =
            (0..n).map(|i| schedule(&format!("s{i}"), interval(1, at(0), 0), Default::default())).collect();
        store.insert_schedules_bulk(&schedules).await.expect("insert");
        for k in 0..claims {
            store.claim_due("n", at(k), 10_000, false).await.expect("claim");
        }
        store.close().await;
    });
}

#[test]
fn backup_of_a_busy_server_restore_refused_while_it_runs_and_done_after_it_stops() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let db = store_path(root);
    let (mut server, addr, mut handler) = serve_with_v1_handler(root);
    schedule_job(&addr, "tick", json!({"type": "interval", "seconds": 1}));
    schedule_job(&addr, "later", json!({"type": "date", "run_date": "2099-01-01T00:00:00Z"}));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(&addr, "GET", "/api/executions?job_id=tick", None).1["count"].as_u64().unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "the interval schedule writes runs");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Backup while the server claims and records a run every second.
    let backup = root.join("backup-1.db");
    let o = run(root, &["backup", backup.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&format!("backup written: {}", backup.display())), "{out}");
    assert!(out.contains("schedules  2 (2 active or paused)"), "{out}");
    assert!(out.contains("size ") && out.contains("runs "), "{out}");
    assert_eq!(
        column(&backup, "SELECT name FROM schedules ORDER BY name"),
        ["later", "tick"],
        "the backup holds the schedules"
    );
    assert!(count(&backup, "SELECT count(*) FROM runs") >= 2, "and the runs");
    assert_eq!(count(&backup, "PRAGMA user_version"), SCHEMA_VERSION);
    assert!(sidecars(&backup).is_empty(), "{:?}", sidecars(&backup));

    let o = run(root, &["backup", backup.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists") && text(&o).contains("--force"), "{}", text(&o));

    // The full check of the live store, while the server writes.
    let o = run(root, &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ok: ") && text(&o).contains("integrity ok"), "{}", text(&o));

    // The store moves on after the backup.
    assert_eq!(http(&addr, "DELETE", "/api/schedules/later", None).0, 200);
    schedule_job(&addr, "after-backup", json!({"type": "date", "run_date": "2099-01-01T00:00:00Z"}));

    let o = run(root, &["restore", backup.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&format!("the server of deployment 'default' is running as PID {}", server.child.id()))
            && out.contains("stop it first"),
        "the server's PID file is what refuses: {out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");

    handler.term();
    handler.wait_exit(Duration::from_secs(30));
    server.term();
    assert_eq!(server.wait_exit(Duration::from_secs(30)).0, 0);

    // Defence in depth: no PID file, but another process has the store open.
    let holder = std::fs::File::open(&db).expect("open the store");
    let o = run(root, &["restore", backup.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("is open in PID {}", std::process::id())), "{}", text(&o));
    drop(holder);

    // Backup works on a stopped server too.
    let o = run(root, &["backup", root.join("backup-2.db").to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("schedules  2 "), "{}", text(&o));

    let o = run(root, &["restore", backup.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let kept_line = out.lines().find(|l| l.starts_with("kept the replaced store as ")).expect("kept");
    let kept = PathBuf::from(
        kept_line.trim_start_matches("kept the replaced store as ").split(' ').next().expect("path"),
    );
    assert!(kept.to_string_lossy().contains("schedulezero.db.before-restore-"), "{out}");
    assert_eq!(
        column(&kept, "SELECT name FROM schedules ORDER BY name"),
        ["after-backup", "tick"],
        "the replaced store is kept as it was"
    );
    assert!(out.contains(&format!("restored {} from {}", db.display(), backup.display())), "{out}");
    assert!(sidecars(&db).is_empty(), "no stale -wal/-shm beside the restored store: {:?}", sidecars(&db));
    assert!(!root.join("deployments/default/run/server.pid").exists(), "restore let go of the PID file");

    let (mut again, addr) = serve_any_port(root);
    assert_eq!(schedule_ids(&addr), ["later", "tick"], "the backup's schedules are back");
    again.term();
    assert_eq!(again.wait_exit(Duration::from_secs(30)).0, 0);
}

#[test]
fn restore_refuses_foreign_files_and_damaged_backups_and_changes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let db = store_path(root);
    std::fs::create_dir_all(db.parent().expect("dir")).expect("mkdir");
    make_store(&db, 3, 2);
    let before = std::fs::read(&db).expect("read");

    let notes = root.join("notes.txt");
    std::fs::write(&notes, "these are not the schedules you are looking for\n").expect("write");
    let other = root.join("other-app.db");
    block_on(async {
        let mut c = connect(&other, true).await;
        sqlx::raw_sql("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x')")
            .execute(&mut c)
            .await
            .expect("another app's database");
        c.close().await.expect("close");
    });
    let damaged = root.join("damaged.db");
    make_store(&damaged, 300, 10);
    corrupt_index_page(&damaged);

    for (file, needle) in [
        (&notes, "not a SQLite database"),
        (&other, "another application"),
        (&damaged, "integrity_check"),
        (&root.join("missing.db"), "no such file"),
    ] {
        let o = run(root, &["restore", file.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = text(&o);
        assert!(out.contains(needle), "{} → {out}", file.display());
        assert!(out.contains(&file.display().to_string()), "names the file: {out}");
        assert_eq!(std::fs::read(&db).expect("read"), before, "the store is untouched");
    }
    let names: Vec<String> = std::fs::read_dir(db.parent().expect("dir"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("restore")), "nothing staged or kept: {names:?}");
}

/// Overwrites the end of the `runs_by_slot` index's root page, where its cells are (a page's
/// middle may be free space, and damage there is harmless): the index no longer matches its
/// table, or points at pages that do not exist.
fn corrupt_index_page(path: &Path) {
    let (root_page, page_size) = block_on(async {
        let mut c = connect(path, false).await;
        let root: i64 = sqlx::query_scalar("SELECT rootpage FROM sqlite_schema WHERE name = 'runs_by_slot'")
            .fetch_one(&mut c)
            .await
            .expect("root page");
        let size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut c).await.expect("page size");
        c.close().await.expect("close");
        (root, size)
    });
    let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    use std::io::{Seek, SeekFrom};
    let offset = u64::try_from(root_page * page_size - 200).expect("offset");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&[0xA5; 200]).expect("overwrite");
    f.sync_all().expect("sync");
}

#[test]
fn check_passes_a_sound_store_and_fails_a_damaged_copy_with_the_way_out() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let good = root.join("good.db");
    make_store(&good, 200, 20);
    let o = run(root, &["check", "--database", good.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("ok: ") && out.contains("schedules  200 (200 active or paused)"), "{out}");
    assert!(out.contains("runs       4000"), "{out}");

    let damaged = root.join("damaged.db");
    std::fs::copy(&good, &damaged).expect("copy");
    corrupt_index_page(&damaged);
    let o = run(root, &["check", "--database", damaged.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("problem") && out.contains("integrity_check"), "{out}");
    assert!(out.contains("schedulezero restore BACKUP_FILE"), "says how to restore: {out}");

    let o = run(root, &["check", "--database", "postgresql+asyncpg://user:secret@db/sz"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("PostgreSQL") && !text(&o).contains("secret"), "{}", text(&o));
    let o = run(root, &["check", "-d", "nowhere"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no store at") && text(&o).contains("'nowhere'"), "{}", text(&o));
}

/// `serve --database FILE` on a file it must not touch: refused before any write, naming the
/// file, what it is, and the way out.
fn assert_serve_refuses(root: &Path, file: &Path, needle: &str) -> Duration {
    let len = std::fs::metadata(file).expect("file").len();
    let head = head_bytes(file);
    let started = Instant::now();
    let mut p = support::serve(
        root,
        &["--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0", "--database", file.to_str().expect("utf-8")],
    );
    let (code, lines) = p.wait_exit(Duration::from_secs(60));
    let out = lines.join("\n");
    let took = started.elapsed();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&file.display().to_string()) && out.contains(needle), "{} → {out}", file.display());
    assert!(out.contains("schedulezero restore"), "says how to proceed: {out}");
    assert_eq!((std::fs::metadata(file).expect("file").len(), head_bytes(file)), (len, head), "untouched");
    assert!(sidecars(file).is_empty(), "nothing created beside it: {:?}", sidecars(file));
    took
}

fn head_bytes(file: &Path) -> Vec<u8> {
    let mut buf = vec![0; 4096];
    let mut f = std::fs::File::open(file).expect("open");
    let n = f.read(&mut buf).expect("read");
    buf.truncate(n);
    buf
}

#[test]
fn serve_refuses_foreign_files_and_a_newer_schema_before_writing_at_any_size() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();

    let notes = root.join("notes.txt");
    std::fs::write(&notes, "remember the milk\n").expect("write");
    assert_serve_refuses(root, &notes, "not a SQLite database");

    let png = root.join("picture.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.resize(4096, 7);
    std::fs::write(&png, bytes).expect("write");
    assert_serve_refuses(root, &png, "not a SQLite database");

    let other = root.join("other-app.db");
    block_on(async {
        let mut c = connect(&other, true).await;
        sqlx::raw_sql("CREATE TABLE contacts (name TEXT)").execute(&mut c).await.expect("table");
        c.close().await.expect("close");
    });
    assert_serve_refuses(root, &other, "another application's tables");

    // 200 MB (sparse) that are not a store: only the header is read.
    let big = root.join("big.bin");
    let f = std::fs::File::create(&big).expect("create");
    (&f).write_all(b"BIGFILE: not a database at all").expect("write");
    f.set_len(200 * 1024 * 1024).expect("grow");
    drop(f);
    let took = assert_serve_refuses(root, &big, "not a SQLite database");
    println!("serve refused a 200 MB foreign file in {:.3} s (process start included)", took.as_secs_f64());

    // Ours, but a newer schema version than this build knows.
    let newer = root.join("newer.db");
    make_store(&newer, 2, 1);
    block_on(async {
        let mut c = connect(&newer, false).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1)))
            .execute(&mut c)
            .await
            .expect("bump");
        c.close().await.expect("close");
    });
    assert_serve_refuses(root, &newer, &format!("schema version {}", SCHEMA_VERSION + 1));
    assert_eq!(count(&newer, "SELECT count(*) FROM schedules"), 2);
}
