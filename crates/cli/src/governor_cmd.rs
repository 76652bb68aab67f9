//! The governor's commands: `init`, `up`, `down`, `status`, `restart`, `logs`, `reload`,
//! `ports`, `systemd-unit` (schedulezero_governor does the work; this is argument handling and
//! printing).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use schedulezero_governor::control::{self, Request};
use schedulezero_governor::{Config, Layout, lifecycle, logs, ports, state, status, supervisor};

/// Which deployment: `--root` and `-d`, as for `serve`.
#[derive(Args, Clone)]
pub struct Where {
    /// The deployments root (default: $SCHEDULEZERO_HOME, else the current directory).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The deployment (default: $SCHEDULEZERO_DEPLOYMENT, else `default`).
    #[arg(short = 'd', long)]
    deployment: Option<String>,
}

impl Where {
    fn root(&self) -> anyhow::Result<PathBuf> {
        match (&self.root, std::env::var("SCHEDULEZERO_HOME")) {
            (Some(r), _) => Ok(r.clone()),
            (None, Ok(h)) if !h.trim().is_empty() => Ok(PathBuf::from(h)),
            _ => std::env::current_dir().context("cannot read the current directory"),
        }
    }

    fn name(&self) -> String {
        self.deployment
            .clone()
            .or_else(|| std::env::var("SCHEDULEZERO_DEPLOYMENT").ok().filter(|d| !d.trim().is_empty()))
            .unwrap_or_else(|| "default".into())
    }

    fn layout(&self) -> anyhow::Result<Layout> {
        Layout::new(&self.root()?, &self.name()).map_err(anyhow::Error::msg)
    }
}

#[derive(Args)]
pub struct InitArgs {
    /// The new deployment's name (default: $SCHEDULEZERO_DEPLOYMENT, else `default`).
    name: Option<String>,
    /// The deployments root (default: $SCHEDULEZERO_HOME, else the current directory).
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    at: Where,
    /// Run in the background; returns once every process is ready.
    #[arg(long)]
    detach: bool,
    /// Use a free block of ports for this deployment (recorded in run/auto-ports.json) instead
    /// of the configured ports.
    #[arg(long)]
    auto_ports: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    at: Where,
    /// As JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RestartArgs {
    #[command(flatten)]
    at: Where,
    /// The process (default: all of them, in dependency order).
    process: Option<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    at: Where,
    /// The process (default: every process).
    process: Option<String>,
    /// Keep printing what is written, across rotations, until Ctrl-C.
    #[arg(short = 'f', long)]
    follow: bool,
    /// How many of the last lines to print first.
    #[arg(short = 'n', long, default_value_t = 50)]
    lines: usize,
}

#[derive(Args)]
pub struct PortsArgs {
    /// The deployments root (default: $SCHEDULEZERO_HOME, else the current directory).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Only this deployment (default: every deployment under the root).
    #[arg(short = 'd', long, global = true)]
    deployment: Option<String>,
    #[command(subcommand)]
    command: Option<PortsCommand>,
}

#[derive(Subcommand)]
pub enum PortsCommand {
    /// Stop whatever holds PORT: SIGTERM, up to 10 s, then SIGKILL (asks first, unless --yes).
    Free {
        port: u16,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let at = Where { root: args.root, deployment: args.name };
    let layout = at.layout()?;
    let path = schedulezero_governor::init::init(&layout).map_err(anyhow::Error::msg)?;
    say(&format!("wrote {}", path.display()));
    say(&format!("start it with: schedulezero up -d {} (add --detach for the background)", layout.name()));
    Ok(())
}

pub fn up(args: UpArgs) -> anyhow::Result<()> {
    let layout = args.at.layout()?;
    // Refused here, before anything starts (the detached supervisor would refuse it too, but
    // only in its log).
    let config = Config::load(&layout.config_file(), layout.dir())?;
    if config.server().is_some() {
        let overrides = schedulezero_server::Overrides {
            root: Some(layout.root().to_path_buf()),
            deployment: Some(layout.name().to_string()),
            ..Default::default()
        };
        schedulezero_server::ServerConfig::load(&overrides, &|k| std::env::var(k).ok())?;
    }
    let options = supervisor::Options { auto_ports: args.auto_ports };
    if !args.detach {
        let mut out = |line: &str| say(line);
        return supervisor::run(&layout, options, &mut out).map_err(Into::into);
    }
    detach(&layout, &config, args.auto_ports)
}

/// Starts the supervisor as a background process of its own session (this binary again, `up`
/// in the foreground, its output to logs/governor.log) and waits until it says the deployment
/// is up, or failed.
fn detach(layout: &Layout, config: &Config, auto_ports: bool) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if let schedulezero_host::PidStatus::Live(r) =
        schedulezero_host::PidFile::new(layout.governor_pid_file()).status()
    {
        bail!(
            "deployment '{}' is already up: its supervisor runs as PID {} ({}); see `schedulezero status -d {0}`",
            layout.name(),
            r.pid,
            r.cmdline.join(" ")
        );
    }
    std::fs::create_dir_all(layout.logs_dir()).with_context(|| layout.logs_dir().display().to_string())?;
    let log_path = layout.governor_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up").arg("--root").arg(layout.root()).arg("-d").arg(layout.name());
    if auto_ports {
        cmd.arg("--auto-ports");
    }
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("cannot start the background supervisor")?;
    let pid = child.id();
    let budget: u64 = config.processes.iter().map(|p| p.ready_timeout_s).sum::<u64>() + 60;
    let deadline = Instant::now() + Duration::from_secs(budget);
    loop {
        if let Some(phase) = state::read_phase(layout).filter(|p| p.pid == pid) {
            match phase.phase.as_str() {
                "up" => break,
                "failed" => {
                    let _ = child.wait();
                    bail!("{}", phase.message.unwrap_or_else(|| "the supervisor failed".into()));
                }
                _ => {}
            }
        }
        if let Ok(Some(code)) = child.try_wait() {
            let tail = logs::last_lines(&log_path, 15).unwrap_or_default();
            bail!(
                "the background supervisor exited ({code}); the end of {}:\n{}",
                log_path.display(),
                tail.join("\n")
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the deployment was not up within {budget} s; it goes on starting in the background (PID {pid}): see `schedulezero status` and {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    say(&format!(
        "deployment '{}' is up in the background (supervisor PID {pid}; its log: {})",
        layout.name(),
        log_path.display()
    ));
    print!("{}", status::table(&status::status(layout)));
    Ok(())
}

pub fn down(at: Where) -> anyhow::Result<()> {
    let layout = at.layout()?;
    let mut out = |line: &str| say(line);
    let report = lifecycle::down(&layout, &mut out);
    for line in &report.lines {
        say(line);
    }
    if report.was_running {
        say(&format!("deployment '{}' is down", layout.name()));
    } else {
        say(&format!("deployment '{}' was not running", layout.name()));
    }
    Ok(())
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let layout = args.at.layout()?;
    let s = status::status(&layout);
    if args.json {
        say(&serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status::table(&s));
    }
    Ok(())
}

pub fn restart(args: RestartArgs) -> anyhow::Result<()> {
    let layout = args.at.layout()?;
    let req = Request::Restart { process: args.process };
    let answer = control::request(&layout, &req, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
    if !answer.ok {
        bail!("{}", answer.message);
    }
    say(&answer.message);
    Ok(())
}

pub fn reload(at: Where) -> anyhow::Result<()> {
    let layout = at.layout()?;
    let answer =
        control::request(&layout, &Request::Reload, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
    if !answer.ok {
        bail!("{}", answer.message);
    }
    say(&answer.message);
    Ok(())
}

pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let layout = args.at.layout()?;
    let names: Vec<String> = match &args.process {
        Some(p) => {
            if !layout.log_file(p).exists() {
                bail!(
                    "no log for '{p}' in {} (logs there: {})",
                    layout.logs_dir().display(),
                    log_names(&layout).join(", ")
                );
            }
            vec![p.clone()]
        }
        None => log_names(&layout),
    };
    if names.is_empty() {
        bail!("no logs in {} yet; start the deployment with `schedulezero up`", layout.logs_dir().display());
    }
    let several = names.len() > 1;
    if !args.follow {
        for name in &names {
            if several {
                say(&format!("==> {name} <=="));
            }
            for line in logs::last_lines(&layout.log_file(name), args.lines)? {
                say(&line);
            }
        }
        return Ok(());
    }
    // One thread per log; several logs are told apart by a prefix on each line.
    let threads: Vec<_> = names
        .into_iter()
        .map(|name| {
            let path = layout.log_file(&name);
            let prefix = if several { format!("{name} | ") } else { String::new() };
            let last = args.lines;
            std::thread::spawn(move || {
                let mut out = Prefixed { prefix, pending: Vec::new() };
                logs::follow(&path, last, &mut out, &|| false)
            })
        })
        .collect();
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            bail!("following the log: {e}");
        }
    }
    Ok(())
}

fn log_names(layout: &Layout) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(layout.logs_dir()) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".log")).map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Whole lines to stdout, each with a prefix (several logs followed at once).
struct Prefixed {
    prefix: String,
    pending: Vec<u8>,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let mut out = std::io::stdout().lock();
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

pub fn ports(args: PortsArgs) -> anyhow::Result<()> {
    let root = Where { root: args.root.clone(), deployment: None }.root()?;
    match args.command {
        Some(PortsCommand::Free { port, yes }) => free(port, yes),
        None => {
            let only = match &args.deployment {
                Some(d) => Some(Layout::new(&root, d).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let (listed, conflicts) = ports::list(&root, only.as_ref());
            if listed.is_empty() {
                say(&format!("no deployment ports under {}", root.display()));
            } else {
                let rows: Vec<[String; 4]> = listed
                    .iter()
                    .map(|l| {
                        let holder = match (&l.holder, l.ours) {
                            (None, _) => "free".to_string(),
                            (Some(h), true) => format!("{h} (this deployment)"),
                            (Some(h), false) => format!("{h} (NOT this deployment)"),
                        };
                        [l.deployment.clone(), l.port.to_string(), l.what.clone(), holder]
                    })
                    .collect();
                let header = ["DEPLOYMENT", "PORT", "FOR", "HELD BY"];
                let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
                for r in &rows {
                    for (w, c) in widths.iter_mut().zip(r) {
                        *w = (*w).max(c.len());
                    }
                }
                let fmt = |cells: Vec<&str>| {
                    let l: Vec<String> =
                        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
                    l.join("  ").trim_end().to_string()
                };
                say(&fmt(header.to_vec()));
                for r in &rows {
                    say(&fmt(r.iter().map(String::as_str).collect()));
                }
            }
            for c in &conflicts {
                say(&format!("conflict: {c}"));
            }
            Ok(())
        }
    }
}

fn free(port: u16, yes: bool) -> anyhow::Result<()> {
    let holders = schedulezero_host::port_holders(port);
    if holders.is_empty() {
        say(&format!("port {port} is free"));
        return Ok(());
    }
    for h in &holders {
        let Some(p) = &h.process else {
            bail!(
                "port {port} ({}) is held by a process this user cannot inspect; ask its owner or use sudo",
                h.local
            );
        };
        say(&format!("port {port} ({} {}) is held by PID {} ({})", h.local, h.state, p.pid, p.command()));
        if p.pid == std::process::id() {
            continue;
        }
        if !yes {
            if !std::io::stdin().is_terminal() {
                bail!("not stopping PID {} without confirmation: run it in a terminal, or add --yes", p.pid);
            }
            print!("stop PID {} (SIGTERM, then SIGKILL after 10 s)? [y/N] ", p.pid);
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                say("left alone");
                continue;
            }
        }
        if schedulezero_host::stop_process(p, schedulezero_host::Signal::SIGTERM, Duration::from_secs(10)) {
            say(&format!("stopped PID {}", p.pid));
        } else {
            bail!("PID {} is still there after SIGKILL", p.pid);
        }
    }
    Ok(())
}

pub fn systemd_unit(at: Where) -> anyhow::Result<()> {
    let layout = at.layout()?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    print!("{}", schedulezero_governor::systemd::unit(&layout, &exe));
    Ok(())
}
