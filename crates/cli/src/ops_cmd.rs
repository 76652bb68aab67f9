//! `schedulezero backup FILE`, `restore FILE` and `check`: the store's operations commands
//! (schedulezero_store::sqlite::maintenance does the work), and the advice every refusal of a
//! store file ends with, `serve`'s included.
//!
//! The store is the deployment's, found as `serve` finds it (`--root`, `-d`, `--database`,
//! `SCHEDULEZERO_*`, `schedulezero.toml`). Backup and check work while the server runs; restore
//! refuses while anything has the store open, and holds the deployment's PID file while it works
//! so that no server starts on a store half put back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use schedulezero_host::{PidFile, PidFileError, PidStatus, file_holders};
use schedulezero_server::database::{self, Database};
use schedulezero_server::deployment::Deployment;
use schedulezero_server::{Overrides, ServeError, ServerConfig};
use schedulezero_store::StoreError;
use schedulezero_store::sqlite::maintenance::{self, Access, CheckReport, Summary};

/// Which store: the deployment's, or the one `--database` names.
#[derive(Args)]
pub struct StoreArgs {
    /// The deployments root (default: $SCHEDULEZERO_HOME, else the current directory).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The deployment (default: $SCHEDULEZERO_DEPLOYMENT, else `default`).
    #[arg(short = 'd', long)]
    deployment: Option<String>,
    /// Database URL or path (default: the deployment's, as `serve` uses it).
    #[arg(long)]
    database: Option<String>,
}

#[derive(Args)]
pub struct BackupArgs {
    /// Where to write the backup (a new file; see --force).
    file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup to put in place of the store (checked in full first).
    file: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// The store a command works on.
struct Target {
    deployment: Deployment,
    path: PathBuf,
}

fn resolve(args: StoreArgs) -> Result<Target> {
    let overrides = Overrides {
        root: args.root,
        deployment: args.deployment,
        database: args.database,
        ..Default::default()
    };
    let config = ServerConfig::load(&overrides, &|k| std::env::var(k).ok())?;
    let path = match database::parse(&config.database, config.deployment.dir()).map_err(|e| anyhow!(e))? {
        Database::Sqlite(path) => path,
        // The URL is not repeated: it may hold a password.
        Database::Postgres(_) => bail!(
            "the database is a PostgreSQL URL, which this build does not support yet: backup, \
             restore and check work on SQLite stores (the default); use PostgreSQL's own tools \
             (pg_dump, pg_restore) for a PostgreSQL database"
        ),
    };
    Ok(Target { deployment: config.deployment, path: absolute(&path) })
}

impl Target {
    /// Refuses a store that does not exist, saying which one was looked for.
    fn require_existing(&self) -> Result<()> {
        if !self.path.exists() {
            bail!(
                "no store at {}: deployment '{}' has none yet (the server creates it when it first \
                 starts); is this the store you meant? (--root, -d, --database choose another)",
                self.path.display(),
                self.deployment.name()
            );
        }
        Ok(())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn backup(args: BackupArgs) -> Result<()> {
    let target = resolve(args.store)?;
    target.require_existing()?;
    let dest = absolute(&args.file);
    if dest.exists() && !args.force {
        bail!("{} already exists; choose another name, or pass --force to replace it", dest.display());
    }
    let done = runtime()?
        .block_on(maintenance::backup(&target.path, &dest, args.force))
        .map_err(|e| store_error(e, &target.path))?;
    println!("backup written: {}", done.path.display());
    println!("  from       {} (deployment '{}')", target.path.display(), target.deployment.name());
    println!("  size       {} bytes ({})", done.bytes, human(done.bytes));
    print_summary(&done.summary);
    println!("  took       {:.2} s", done.took.as_secs_f64());
    Ok(())
}

pub fn check(args: CheckArgs) -> Result<()> {
    let target = resolve(args.store)?;
    target.require_existing()?;
    println!("checking {} (reads every page; safe while the server runs)", target.path.display());
    let report = runtime()?
        .block_on(maintenance::check(&target.path, Access::Shared))
        .map_err(|e| store_error(e, &target.path))?;
    for note in &report.notes {
        println!("  note: {note}");
    }
    if !report.is_ok() {
        bail!("{}\n{}", problems(&report, "the store"), REPAIR_ADVICE);
    }
    // A store in use keeps its latest commits in its log until a checkpoint.
    let wal = std::fs::metadata(companion(&target.path, "-wal")).map(|m| m.len()).unwrap_or(0);
    let log = if wal > 0 { format!(", and {} in its write-ahead log", human(wal)) } else { String::new() };
    println!(
        "ok: {} ({}{log}): schema version {}, integrity ok, foreign keys ok, invariants ok",
        target.path.display(),
        human(report.bytes),
        report.schema_version
    );
    if let Some(s) = &report.summary {
        print_summary(s);
    }
    println!("  took       {:.2} s", report.took.as_secs_f64());
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<()> {
    let serve_again = serve_command(&args.store);
    let target = resolve(args.store)?;
    let backup = absolute(&args.file);
    if !backup.exists() {
        bail!(
            "{}: no such file; give the path of a backup (made by `schedulezero backup FILE`)",
            backup.display()
        );
    }
    refuse_if_in_use(&target)?;
    // Held until the end: a server of this deployment starting meanwhile is refused.
    let _claim = match PidFile::new(target.deployment.server_pid_file()).acquire() {
        Ok((guard, _)) => guard,
        Err(PidFileError::AlreadyRunning { record, .. }) => bail!(
            "the server of deployment '{}' started meanwhile, as PID {} ({}); stop it first \
             (kill -TERM {}), then run the restore again; nothing was changed",
            target.deployment.name(),
            record.pid,
            record.cmdline.join(" "),
            record.pid
        ),
        Err(e) => return Err(e.into()),
    };
    let rt = runtime()?;
    println!("checking {} (reads every page)", backup.display());
    let prepared = rt
        .block_on(maintenance::prepare_restore(&backup, &target.path))
        .map_err(|e| refused_backup(e, &backup))?;
    let report = &prepared.report;
    if !report.is_ok() {
        bail!(
            "{}\nnothing was changed; restore another backup (check one first: \
             schedulezero check --database BACKUP_FILE)",
            problems(report, "the backup")
        );
    }
    let summary = report.summary.clone();
    println!(
        "  ok: ScheduleZero store, schema version {}, integrity ok ({:.2} s)",
        report.schema_version,
        report.took.as_secs_f64()
    );
    for note in &report.notes {
        println!("  note: {note}");
    }
    // Checking a large backup takes a while: look again right before the switch.
    refuse_if_in_use(&target)?;
    let restored = prepared.commit().map_err(|e| store_error(e, &target.path))?;
    if let Some(kept) = &restored.kept {
        let with = if restored.kept_companions.is_empty() { "" } else { " (with its write-ahead log)" };
        println!("kept the replaced store as {}{with}", kept.display());
    }
    for removed in &restored.removed {
        println!("removed the replaced store's stale {}", removed.display());
    }
    println!("restored {} from {}", restored.path.display(), backup.display());
    if let Some(s) = &summary {
        print_summary(s);
    }
    println!("start the server again: {serve_again}");
    Ok(())
}

/// Refuses while the deployment's server runs (its PID file, verified) or any process has the
/// store or its log open (a server of another deployment on the same file, a script).
fn refuse_if_in_use(target: &Target) -> Result<()> {
    if let PidStatus::Live(record) = PidFile::new(target.deployment.server_pid_file()).status()
        && record.pid != std::process::id()
    {
        bail!(
            "the server of deployment '{}' is running as PID {} ({}) and uses {}; stop it first \
             (kill -TERM {}), then run the restore again; nothing was changed",
            target.deployment.name(),
            record.pid,
            record.cmdline.join(" "),
            target.path.display(),
            record.pid
        );
    }
    let me = std::process::id();
    for file in [target.path.clone(), companion(&target.path, "-wal"), companion(&target.path, "-shm")] {
        if let Some(holder) = file_holders(&file).into_iter().find(|h| h.pid != me) {
            bail!(
                "{} is open in {}: a server (perhaps of another deployment) or another program \
                 uses the store; stop it first, then run the restore again; nothing was changed",
                file.display(),
                holder.describe()
            );
        }
    }
    Ok(())
}

/// The `serve` command line for the same store, for the closing hint.
fn serve_command(args: &StoreArgs) -> String {
    let mut cmd = String::from("schedulezero serve");
    if let Some(root) = &args.root {
        cmd.push_str(&format!(" --root {}", root.display()));
    }
    if let Some(d) = &args.deployment {
        cmd.push_str(&format!(" -d {d}"));
    }
    if let Some(db) = &args.database {
        cmd.push_str(&format!(" --database {db}"));
    }
    cmd
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// What to do when the store is damaged.
const REPAIR_ADVICE: &str = "to repair: stop the server, then put a good backup in place with \
     `schedulezero restore BACKUP_FILE` (the damaged store is kept beside it); \
     `schedulezero check --database BACKUP_FILE` checks a backup first";

/// How to proceed when a store file is refused (not ours, too new), for every command that
/// opens one.
pub fn advice(e: &StoreError) -> Option<&'static str> {
    match e {
        StoreError::NotOurs { .. } => Some(
            "to proceed: point the server at its store (--database, SCHEDULEZERO_DATABASE_URL, or \
             `database` in schedulezero.toml), or put a backup in its place with \
             `schedulezero restore BACKUP_FILE` (the file there now is kept beside it)",
        ),
        StoreError::NewerSchema { .. } => Some(
            "to proceed: run the newer schedulezero that wrote it, or put a backup made by this \
             version in its place with `schedulezero restore BACKUP_FILE`",
        ),
        _ => None,
    }
}

/// `serve`'s error, with the advice when the store file was refused.
pub fn serve_error(e: ServeError) -> anyhow::Error {
    match &e {
        ServeError::Store(s) => match advice(s) {
            Some(a) => anyhow!("{e}\n{a}"),
            None => e.into(),
        },
        _ => e.into(),
    }
}

fn store_error(e: StoreError, path: &Path) -> anyhow::Error {
    match advice(&e) {
        Some(a) => anyhow!("{e}\n{a}"),
        // SQLITE_CORRUPT's own words.
        None if e.to_string().contains("malformed") => anyhow!(
            "{e}\n{} is damaged: `schedulezero check` lists what is wrong; {REPAIR_ADVICE}",
            path.display()
        ),
        None => e.into(),
    }
}

/// A backup refused: what is wrong with it; the store was not touched.
fn refused_backup(e: StoreError, backup: &Path) -> anyhow::Error {
    let hint = match &e {
        StoreError::NewerSchema { .. } => {
            "a newer schedulezero wrote this backup: restore it with that version, or choose a \
             backup made by this one"
        }
        _ => "choose a backup made by `schedulezero backup FILE`",
    };
    anyhow!("cannot restore {}: {e}\n{hint}; nothing was changed", backup.display())
}

fn problems(report: &CheckReport, what: &str) -> String {
    let mut text = format!(
        "{} ({what}) has {} problem{}:",
        report.path.display(),
        report.problems.len(),
        if report.problems.len() == 1 { "" } else { "s" }
    );
    for p in &report.problems {
        text.push_str("\n  - ");
        text.push_str(p);
    }
    text
}

fn print_summary(s: &Summary) {
    println!("  schema     version {}", s.schema_version);
    println!("  schedules  {} ({} active or paused)", s.schedules, s.live_schedules);
    println!("  runs       {} ({} attempts recorded)", s.runs, s.attempts);
    println!("  handlers   {} instances remembered", s.handler_instances);
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "bytes" { format!("{bytes} bytes") } else { format!("{v:.1} {unit}") }
}
