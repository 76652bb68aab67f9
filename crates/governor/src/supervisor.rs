//! The supervisor: `schedulezero up` in the foreground, or the detached process `up --detach`
//! starts. It owns the deployment while it runs (verified PID file `run/governor.pid`), starts
//! the processes in dependency order waiting for each one's readiness, restarts those that exit
//! (exponential backoff), answers `restart` and `reload` on its control socket, and on SIGTERM,
//! SIGINT or SIGHUP stops everything in reverse order. One thread polls; each child's output is
//! copied by two threads of its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schedulezero_host::{PidFile, PidFileError, PidStatus};

use crate::backoff::Backoff;
use crate::child::{self, Running};
use crate::config::{Config, ProcessSpec, RestartPolicy};
use crate::control::{self, Control, Request, Response};
use crate::layout::Layout;
use crate::logs::RotatingLog;
use crate::ports::{self, AutoPorts, PortUse};
use crate::readiness;
use crate::state::{self, Phase, ProcState};
use crate::{Error, lifecycle};

/// How `up` was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Every port from this deployment's block (`run/auto-ports.json`) instead of the configured
    /// ones.
    pub auto_ports: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Starting,
    Running,
    Backoff,
    Exited,
    Failed,
    Stopped,
}

impl SlotState {
    fn name(self) -> &'static str {
        match self {
            SlotState::Starting => "starting",
            SlotState::Running => "running",
            SlotState::Backoff => "backoff",
            SlotState::Exited => "exited",
            SlotState::Failed => "failed",
            SlotState::Stopped => "stopped",
        }
    }
}

struct Slot {
    spec: ProcessSpec,
    ports: BTreeMap<String, u16>,
    log: Arc<Mutex<RotatingLog>>,
    running: Option<Running>,
    env: BTreeMap<String, String>,
    state: SlotState,
    backoff: Backoff,
    restarts: u32,
    last_exit: Option<String>,
    ready_deadline: Option<Instant>,
    next_start: Option<Instant>,
}

struct Supervisor<'a> {
    layout: Layout,
    config: Config,
    options: Options,
    auto: Option<AutoPorts>,
    slots: Vec<Slot>,
    say: &'a mut dyn FnMut(&str),
}

/// Runs the deployment until a stop signal. Returns an error, having started nothing or
/// stopped all it started, when the configuration is refused, the deployment is already up, a
/// port is held by another program, or a process does not become ready.
pub fn run(layout: &Layout, options: Options, say: &mut dyn FnMut(&str)) -> Result<(), Error> {
    let config = Config::load(&layout.config_file(), layout.dir()).map_err(|e| Error(e.to_string()))?;
    if config.processes.is_empty() {
        return Err(Error(format!(
            "{}: no process to run; add a [process.NAME] table (schedulezero init writes an example)",
            layout.config_file().display()
        )));
    }
    for dir in [layout.run_dir(), layout.logs_dir(), layout.procs_dir()] {
        std::fs::create_dir_all(&dir).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    }
    let (_guard, previous) = match PidFile::new(layout.governor_pid_file()).acquire() {
        Ok(acquired) => acquired,
        Err(PidFileError::AlreadyRunning { record, .. }) => {
            return Err(Error(format!(
                "deployment '{}' is already up: its supervisor runs as PID {} ({}); see `schedulezero status -d {0}`, or stop it with `schedulezero down -d {0}`",
                layout.name(),
                record.pid,
                record.cmdline.join(" ")
            )));
        }
        Err(e) => return Err(Error(e.to_string())),
    };
    match previous {
        PidStatus::Dead(r) | PidStatus::Reused { record: r, .. } => {
            say(&format!("the previous supervisor (PID {}) is gone: cleaning what it left", r.pid));
        }
        PidStatus::Unreadable(why) => say(&format!("replaced an unreadable supervisor PID file: {why}")),
        PidStatus::Absent | PidStatus::Live(_) => {}
    }
    let known = state::read_procs(layout);
    for line in lifecycle::clean_stale(layout) {
        say(&line);
    }
    STOP.store(false, Ordering::SeqCst);
    install_signal_handlers();

    let mut sup = Supervisor { layout: layout.clone(), config, options, auto: None, slots: Vec::new(), say };
    sup.phase("starting", None);
    let result = sup.start_all(&known);
    if let Err(e) = result {
        sup.stop_all();
        if STOP.load(Ordering::SeqCst) {
            // Stopped on purpose (`down`, Ctrl-C) while starting: not a failure to report later.
            let _ = std::fs::remove_file(layout.phase_file());
        } else {
            sup.phase("failed", Some(e.0.clone()));
        }
        return Err(e);
    }
    let control = match Control::bind(layout) {
        Ok(c) => c,
        Err(e) => {
            sup.stop_all();
            sup.phase("failed", Some(e.clone()));
            return Err(Error(e));
        }
    };
    sup.phase("up", None);
    let _ = schedulezero_host::notify("READY=1");
    let names: Vec<String> =
        sup.slots.iter().map(|s| format!("{} (PID {})", s.spec.name, s.pid_text())).collect();
    (sup.say)(&format!("deployment '{}' is up: {}", layout.name(), names.join(", ")));

    while !STOP.load(Ordering::SeqCst) {
        while let Some((req, stream)) = control.poll() {
            let response = match req {
                Ok(Request::Restart { process }) => sup.restart(process.as_deref()),
                Ok(Request::Reload) => sup.reload(),
                Err(e) => Response { ok: false, message: e },
            };
            control::answer(stream, &response);
        }
        sup.tick();
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = schedulezero_host::notify("STOPPING=1");
    sup.phase("stopping", None);
    (sup.say)(&format!("stopping deployment '{}'", layout.name()));
    sup.stop_all();
    drop(control);
    let _ = std::fs::remove_file(layout.control_socket());
    let _ = std::fs::remove_file(layout.phase_file());
    (sup.say)(&format!("deployment '{}' is down", layout.name()));
    Ok(())
}

impl Slot {
    fn pid_text(&self) -> String {
        self.running.as_ref().map_or("-".into(), |r| r.info.pid.to_string())
    }
}

impl Supervisor<'_> {
    fn phase(&self, phase: &str, message: Option<String>) {
        let p = Phase {
            pid: std::process::id(),
            phase: phase.into(),
            message,
            auto_ports: self.options.auto_ports,
        };
        let _ = state::write_phase(&self.layout, &p);
    }

    fn new_slot(&self, spec: ProcessSpec, ports: BTreeMap<String, u16>) -> Result<Slot, Error> {
        let path = self.layout.log_file(&spec.name);
        let log = RotatingLog::open(&path, self.config.log_max_bytes, self.config.log_keep)
            .map_err(|e| Error(format!("{}: {e}", path.display())))?;
        Ok(Slot {
            backoff: Backoff::new(spec.restart),
            spec,
            ports,
            log: Arc::new(Mutex::new(log)),
            running: None,
            env: BTreeMap::new(),
            state: SlotState::Stopped,
            restarts: 0,
            last_exit: None,
            ready_deadline: None,
            next_start: None,
        })
    }

    /// Resolves every port, clears them, then starts each process in order, each waiting for
    /// the readiness of the previous ones.
    fn start_all(&mut self, known: &[ProcState]) -> Result<(), Error> {
        let (uses, per_process) = self.resolve_ports(&self.config.processes.clone())?;
        for line in ports::clear(&self.layout, &uses, known).map_err(Error)? {
            (self.say)(&line);
        }
        // A server of this deployment started by hand (or left by a killed governor whose
        // state files are gone) would refuse ours; it is this deployment's, so it is stopped.
        if self.config.server().is_some()
            && let PidStatus::Live(r) = PidFile::new(self.layout.server_pid_file()).status()
        {
            let p =
                schedulezero_host::ProcessInfo { pid: r.pid, start_ticks: r.start_ticks, cmdline: r.cmdline };
            schedulezero_host::stop_process(&p, schedulezero_host::Signal::SIGTERM, Duration::from_secs(30));
            (self.say)(&format!(
                "stopped PID {} ({}), a server of this deployment not run by this governor",
                p.pid,
                p.command()
            ));
        }
        for spec in self.config.processes.clone() {
            let ports = per_process.get(&spec.name).cloned().unwrap_or_default();
            let slot = self.new_slot(spec, ports)?;
            self.slots.push(slot);
            let i = self.slots.len() - 1;
            self.start_and_wait(i)?;
        }
        Ok(())
    }

    /// The ports of `specs`: the configured ones, or with `--auto-ports` ports of this
    /// deployment's block. Returns what to check and each process's port variables.
    #[allow(clippy::type_complexity)]
    fn resolve_ports(
        &mut self,
        specs: &[ProcessSpec],
    ) -> Result<(Vec<PortUse>, BTreeMap<String, BTreeMap<String, u16>>), Error> {
        let mut uses = Vec::new();
        let mut per_process: BTreeMap<String, BTreeMap<String, u16>> = BTreeMap::new();
        if self.options.auto_ports {
            let mut keys = Vec::new();
            if self.config.server().is_some() {
                keys.push("server.http".to_string());
                keys.push("server.zmq".to_string());
            }
            for s in &self.config.processes {
                keys.extend(s.ports.keys().map(|k| format!("{}.{k}", s.name)));
            }
            let auto = match &self.auto {
                Some(a) if keys.iter().all(|k| a.assigned.contains_key(k)) => a.clone(),
                // Running (a reload): the ports in use stay; new ones come from the same block.
                Some(a) => ports::extend(&self.layout, a, &keys).map_err(Error)?,
                None => ports::allocate(&self.layout, &keys, self.config.auto_ports).map_err(Error)?,
            };
            for s in specs {
                let mut mine = BTreeMap::new();
                for var in s.ports.keys() {
                    let port = auto.assigned.get(&format!("{}.{var}", s.name)).copied().unwrap_or(0);
                    mine.insert(var.clone(), port);
                    uses.push(PortUse { port, what: format!("process {} {var}", s.name) });
                }
                if s.server {
                    for k in ["server.http", "server.zmq"] {
                        let port = auto.assigned.get(k).copied().unwrap_or(0);
                        uses.push(PortUse { port, what: k.replace('.', " ") });
                    }
                }
                per_process.insert(s.name.clone(), mine);
            }
            self.auto = Some(auto);
        } else {
            for s in specs {
                let mut mine = BTreeMap::new();
                for (var, port) in &s.ports {
                    let port = if *port == 0 {
                        ports::any_free_port()
                            .map_err(|e| Error(format!("no free port for {} {var}: {e}", s.name)))?
                    } else {
                        *port
                    };
                    mine.insert(var.clone(), port);
                    uses.push(PortUse { port, what: format!("process {} {var}", s.name) });
                }
                if s.server {
                    let http = self.config.server_http.clone().unwrap_or_else(|| "127.0.0.1:8888".into());
                    let zmq = self.config.server_zmq.clone().unwrap_or_else(|| "tcp://127.0.0.1:4242".into());
                    uses.push(PortUse { port: port_of(&http), what: "server http".into() });
                    uses.push(PortUse { port: port_of(&zmq), what: "server zmq".into() });
                }
                per_process.insert(s.name.clone(), mine);
            }
        }
        Ok((uses, per_process))
    }

    /// The server's HTTP URL and handler endpoint as the other processes should use them.
    fn server_addresses(&self) -> (Option<String>, Option<String>) {
        let server_slot = self.slots.iter().find(|s| s.spec.server);
        if let Some(pid) = server_slot.and_then(|s| s.running.as_ref()).map(|r| r.info.pid)
            && let Ok(rt) = readiness::server_runtime(&self.layout, pid)
        {
            return (rt["http"].as_str().map(connectable), rt["zmq"].as_str().map(connectable));
        }
        if server_slot.is_none()
            && let Ok(raw) = std::fs::read(self.layout.runtime_file())
            && let Ok(rt) = serde_json::from_slice::<serde_json::Value>(&raw)
        {
            return (rt["http"].as_str().map(connectable), rt["zmq"].as_str().map(connectable));
        }
        let http = self.config.server_http.clone().unwrap_or_else(|| "127.0.0.1:8888".into());
        let zmq = self.config.server_zmq.clone().unwrap_or_else(|| "tcp://127.0.0.1:4242".into());
        let zmq = zmq.trim_start_matches("tcp://").to_string();
        let auto = |key: &str| self.auto.as_ref().and_then(|a| a.assigned.get(key).copied());
        let with_port = |addr: &str, port: Option<u16>| match port {
            Some(p) => Some(format!("{}:{p}", host_of(addr))),
            None if port_of(addr) != 0 => Some(addr.to_string()),
            None => None,
        };
        (
            with_port(&http, auto("server.http")).map(|a| connectable(&format!("http://{a}"))),
            with_port(&zmq, auto("server.zmq")).map(|a| connectable(&format!("tcp://{a}"))),
        )
    }

    fn env_for(&self, i: usize) -> BTreeMap<String, String> {
        let slot = &self.slots[i];
        let mut env = BTreeMap::new();
        env.insert("SCHEDULEZERO_HOME".into(), self.layout.root().display().to_string());
        env.insert("SCHEDULEZERO_DEPLOYMENT".into(), self.layout.name().to_string());
        env.insert("SCHEDULEZERO_INSTANCE_ID".into(), format!("{}-{}", self.layout.name(), slot.spec.name));
        let (url, endpoint) = self.server_addresses();
        if let Some(u) = url {
            env.insert("SCHEDULEZERO_URL".into(), u);
        }
        if let Some(e) = endpoint {
            env.insert("SCHEDULEZERO_SERVER_ENDPOINT".into(), e);
        }
        if slot.spec.server
            && let Some(auto) = &self.auto
        {
            if let Some(p) = auto.assigned.get("server.http") {
                env.insert("SCHEDULEZERO_PORT".into(), p.to_string());
            }
            if let Some(p) = auto.assigned.get("server.zmq") {
                env.insert("SCHEDULEZERO_ZMQ_PORT".into(), p.to_string());
            }
        }
        for (var, port) in &slot.ports {
            env.insert(var.clone(), port.to_string());
        }
        for (k, v) in &slot.spec.env {
            let value = child::expand(v, &env);
            env.insert(k.clone(), value);
        }
        env
    }

    /// Starts slot `i` (no waiting); on failure to start, it goes to backoff.
    fn start(&mut self, i: usize) -> Result<(), String> {
        let env = self.env_for(i);
        let slot = &mut self.slots[i];
        slot.next_start = None;
        match child::spawn(&slot.spec, &env, slot.log.clone()) {
            Ok(running) => {
                if let Ok(mut log) = slot.log.lock() {
                    log.line(
                        format!("[governor] started {} (PID {})", slot.spec.name, running.info.pid)
                            .as_bytes(),
                    );
                }
                slot.running = Some(running);
                slot.env = env;
                slot.state = SlotState::Starting;
                slot.ready_deadline = Some(Instant::now() + Duration::from_secs(slot.spec.ready_timeout_s));
                self.write_state(i);
                Ok(())
            }
            Err(e) => {
                let message = format!("process '{}': {e}", slot.spec.name);
                slot.last_exit = Some(format!("could not start: {e}"));
                let delay = slot.backoff.exited(Duration::ZERO);
                slot.state = SlotState::Backoff;
                slot.next_start = Some(Instant::now() + delay);
                self.write_state(i);
                Err(message)
            }
        }
    }

    /// Starts slot `i` and waits for it to be ready (or to fail, or a stop signal).
    fn start_and_wait(&mut self, i: usize) -> Result<(), Error> {
        self.start(i).map_err(Error)?;
        // Without a readiness check, started is ready: what exits later is restarted by policy.
        let immediate = self.slots[i].spec.readiness.is_none() && !self.slots[i].spec.server;
        loop {
            if immediate {
                self.slots[i].state = SlotState::Running;
                self.slots[i].ready_deadline = None;
                self.write_state(i);
                let s = &self.slots[i];
                (self.say)(&format!("{} started (PID {}; no readiness check)", s.spec.name, s.pid_text()));
                return Ok(());
            }
            if STOP.load(Ordering::SeqCst) {
                return Err(Error("stopped by a signal while starting".into()));
            }
            if let Some(status) = self.slots[i].running.as_mut().and_then(|r| r.exited()) {
                let name = self.slots[i].spec.name.clone();
                let exit = child::describe_exit(status);
                // Backing off: a later try is due (after `up`, which gives up, this is moot;
                // after a restart or reload, the supervisor tries again by itself).
                let slot = &mut self.slots[i];
                let ran = slot.running.take().map_or(Duration::ZERO, |r| r.started.elapsed());
                slot.last_exit = Some(exit.clone());
                slot.next_start = Some(Instant::now() + slot.backoff.exited(ran));
                slot.state = SlotState::Backoff;
                self.write_state(i);
                let tail = crate::logs::last_lines(&self.layout.log_file(&name), 10).unwrap_or_default();
                return Err(Error(format!(
                    "process '{name}' exited ({exit}) before it was ready; the end of {}:\n{}",
                    self.layout.log_file(&name).display(),
                    tail.join("\n")
                )));
            }
            match self.probe(i) {
                Ok(()) => {
                    self.slots[i].state = SlotState::Running;
                    self.slots[i].ready_deadline = None;
                    self.write_state(i);
                    let s = &self.slots[i];
                    (self.say)(&format!("{} is ready (PID {})", s.spec.name, s.pid_text()));
                    return Ok(());
                }
                Err(why) => {
                    if self.slots[i].ready_deadline.is_some_and(|d| Instant::now() >= d) {
                        let s = &self.slots[i];
                        return Err(Error(format!(
                            "process '{}' was not ready within {} s: {why}; see {}",
                            s.spec.name,
                            s.spec.ready_timeout_s,
                            self.layout.log_file(&s.spec.name).display()
                        )));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn probe(&self, i: usize) -> Result<(), String> {
        let slot = &self.slots[i];
        let Some(running) = &slot.running else { return Err("not running".into()) };
        let cx = readiness::Context {
            layout: &self.layout,
            env: &slot.env,
            pid: running.info.pid,
            server: slot.spec.server,
            log_matched: running.log_matched.load(Ordering::Relaxed),
        };
        readiness::probe(slot.spec.readiness.as_ref(), &cx)
    }

    /// One round: exits, readiness of restarted processes, stable runs, due restarts.
    fn tick(&mut self) {
        for i in 0..self.slots.len() {
            if let Some(status) = self.slots[i].running.as_mut().and_then(|r| r.exited()) {
                self.exited(i, child::describe_exit(status), status.success());
                continue;
            }
            match self.slots[i].state {
                SlotState::Starting => match self.probe(i) {
                    Ok(()) => {
                        self.slots[i].state = SlotState::Running;
                        self.write_state(i);
                        let s = &self.slots[i];
                        (self.say)(&format!("{} is ready again (PID {})", s.spec.name, s.pid_text()));
                    }
                    Err(why) => {
                        if self.slots[i].ready_deadline.is_some_and(|d| Instant::now() >= d) {
                            let grace = Duration::from_secs(self.slots[i].spec.stop_timeout_s);
                            let signal = self.slots[i].spec.stop_signal;
                            if let Some(r) = self.slots[i].running.as_mut() {
                                r.stop(signal, grace);
                            }
                            self.exited(
                                i,
                                format!("not ready within {} s: {why}", self.slots[i].spec.ready_timeout_s),
                                false,
                            );
                        }
                    }
                },
                SlotState::Running => {
                    let stable = Duration::from_secs(self.slots[i].spec.restart.stable_after_s);
                    let slot = &mut self.slots[i];
                    if slot.backoff.failures() > 0
                        && slot.running.as_ref().is_some_and(|r| r.started.elapsed() >= stable)
                    {
                        slot.backoff.reset();
                        self.write_state(i);
                    }
                }
                SlotState::Backoff => {
                    if self.slots[i].next_start.is_some_and(|t| Instant::now() >= t) {
                        self.slots[i].restarts += 1;
                        if let Err(e) = self.start(i) {
                            (self.say)(&format!("restart failed: {e}"));
                        }
                    }
                }
                SlotState::Exited | SlotState::Failed | SlotState::Stopped => {}
            }
        }
    }

    /// Slot `i`'s process exited on its own: what is left of its group goes, then the restart
    /// policy decides.
    fn exited(&mut self, i: usize, exit: String, success: bool) {
        let slot = &mut self.slots[i];
        let Some(mut running) = slot.running.take() else { return };
        let ran = running.started.elapsed();
        // Whatever it started in its group must not outlive it.
        running.stop(slot.spec.stop_signal, Duration::from_secs(slot.spec.stop_timeout_s));
        if let Ok(mut log) = slot.log.lock() {
            log.line(format!("[governor] {} exited: {exit}", slot.spec.name).as_bytes());
        }
        slot.last_exit = Some(exit.clone());
        let restart = match slot.spec.restart.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        };
        let name = slot.spec.name.clone();
        if restart {
            let delay = slot.backoff.exited(ran);
            slot.state = SlotState::Backoff;
            slot.next_start = Some(Instant::now() + delay);
            let failures = slot.backoff.failures();
            let looping =
                if slot.backoff.crash_loop() { " — crash loop, retrying at the capped delay" } else { "" };
            (self.say)(&format!(
                "{name} exited ({exit}) after {:.1} s; restarting in {:.1} s (failure {failures} in a row){looping}",
                ran.as_secs_f64(),
                delay.as_secs_f64()
            ));
        } else {
            slot.state = if success { SlotState::Exited } else { SlotState::Failed };
            (self.say)(&format!("{name} exited ({exit}); its restart policy does not restart it"));
        }
        self.write_state(i);
    }

    fn stop_slot(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.next_start = None;
        if let Some(mut running) = slot.running.take() {
            slot.state = SlotState::Stopped;
            let grace = Duration::from_secs(slot.spec.stop_timeout_s);
            let (stopped, status) = running.stop(slot.spec.stop_signal, grace);
            let how = if stopped.graceful { "" } else { " (killed after its stop timeout)" };
            let exit = status.map(child::describe_exit).unwrap_or_default();
            slot.last_exit = Some(exit.clone());
            if let Ok(mut log) = slot.log.lock() {
                log.line(format!("[governor] {} stopped: {exit}{how}", slot.spec.name).as_bytes());
            }
            let name = slot.spec.name.clone();
            let pid = running.info.pid;
            (self.say)(&format!("stopped {name} (PID {pid}, {exit}){how}"));
            if !stopped.survivors.is_empty() {
                (self.say)(&format!(
                    "{name}: {} process(es) of its group survived SIGKILL",
                    stopped.survivors.len()
                ));
            }
        }
        self.slots[i].state = SlotState::Stopped;
    }

    /// Stops every process, dependents first; removes their state files.
    fn stop_all(&mut self) {
        for i in (0..self.slots.len()).rev() {
            self.stop_slot(i);
            state::remove_proc(&self.layout, &self.slots[i].spec.name);
        }
    }

    fn restart(&mut self, process: Option<&str>) -> Response {
        let targets: Vec<usize> = match process {
            Some(name) => match self.slots.iter().position(|s| s.spec.name == name) {
                Some(i) => vec![i],
                None => {
                    let names: Vec<&str> = self.slots.iter().map(|s| s.spec.name.as_str()).collect();
                    return Response {
                        ok: false,
                        message: format!(
                            "no process '{name}' in this deployment (processes: {})",
                            names.join(", ")
                        ),
                    };
                }
            },
            None => (0..self.slots.len()).collect(),
        };
        for &i in targets.iter().rev() {
            self.stop_slot(i);
        }
        let mut lines = Vec::new();
        for &i in &targets {
            self.slots[i].backoff.reset();
            self.slots[i].restarts += 1;
            if let Err(e) = self.start_and_wait(i) {
                // What was stopped for this restart is not left stopped: it starts with the
                // next rounds, as after a crash.
                let stopped: Vec<usize> =
                    targets.iter().copied().filter(|&j| self.slots[j].running.is_none() && j != i).collect();
                for j in stopped {
                    self.slots[j].state = SlotState::Backoff;
                    self.slots[j].next_start = Some(Instant::now());
                    self.write_state(j);
                }
                return Response { ok: false, message: e.0 };
            }
            lines.push(format!("restarted {} (PID {})", self.slots[i].spec.name, self.slots[i].pid_text()));
        }
        Response { ok: true, message: lines.join("\n") }
    }

    /// Applies an edited configuration: removed processes stop, added ones start, changed ones
    /// restart; the others are not touched.
    fn reload(&mut self) -> Response {
        let new = match Config::load(&self.layout.config_file(), self.layout.dir()) {
            Ok(c) => c,
            Err(e) => return Response { ok: false, message: format!("not reloaded, nothing changed: {e}") },
        };
        let (mut added, mut removed, mut changed, mut kept) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in (0..self.slots.len()).rev() {
            let name = self.slots[i].spec.name.clone();
            match new.process(&name) {
                None => {
                    self.stop_slot(i);
                    state::remove_proc(&self.layout, &name);
                    self.slots.remove(i);
                    removed.push(name);
                }
                Some(spec) if *spec != self.slots[i].spec => {
                    self.stop_slot(i);
                    changed.push(name);
                }
                Some(_) => kept.push(name),
            }
        }
        let old_config = std::mem::replace(&mut self.config, new.clone());
        let fresh: Vec<ProcessSpec> =
            new.processes.iter().filter(|p| !kept.contains(&p.name)).cloned().collect();
        let (uses, per_process) = match self.resolve_ports(&fresh) {
            Ok(r) => r,
            Err(e) => {
                self.config = old_config;
                return Response { ok: false, message: e.0 };
            }
        };
        // A port of a process left running is a conflict in the new file, not a stale holder.
        for u in &uses {
            if let Some(slot) =
                self.slots.iter().find(|s| s.ports.values().any(|p| *p == u.port) && s.running.is_some())
            {
                self.config = old_config;
                return Response {
                    ok: false,
                    message: format!(
                        "not reloaded: port {} ({}) is used by process '{}', which keeps running",
                        u.port, u.what, slot.spec.name
                    ),
                };
            }
        }
        let known = state::read_procs(&self.layout);
        if let Err(e) = ports::clear(&self.layout, &uses, &known) {
            return Response { ok: false, message: e };
        }
        // The slots in the new start order; changed ones get their new definition.
        let mut old: BTreeMap<String, Slot> =
            self.slots.drain(..).map(|s| (s.spec.name.clone(), s)).collect();
        for spec in &new.processes {
            let slot = match old.remove(&spec.name) {
                Some(mut s) if changed.contains(&spec.name) => {
                    s.spec = spec.clone();
                    s.backoff = Backoff::new(spec.restart);
                    s.ports = per_process.get(&spec.name).cloned().unwrap_or_default();
                    s
                }
                Some(s) => s,
                None => {
                    added.push(spec.name.clone());
                    match self
                        .new_slot(spec.clone(), per_process.get(&spec.name).cloned().unwrap_or_default())
                    {
                        Ok(s) => s,
                        Err(e) => return Response { ok: false, message: e.0 },
                    }
                }
            };
            self.slots.push(slot);
        }
        for i in 0..self.slots.len() {
            let name = self.slots[i].spec.name.clone();
            if (added.contains(&name) || changed.contains(&name))
                && let Err(e) = self.start_and_wait(i)
            {
                // The others still to start are started by the next rounds, as after a crash.
                for j in i + 1..self.slots.len() {
                    let later = self.slots[j].spec.name.clone();
                    if (added.contains(&later) || changed.contains(&later)) && self.slots[j].running.is_none()
                    {
                        self.slots[j].state = SlotState::Backoff;
                        self.slots[j].next_start = Some(Instant::now());
                        self.write_state(j);
                    }
                }
                return Response { ok: false, message: format!("reloaded in part: {}", e.0) };
            }
        }
        removed.sort();
        changed.sort();
        kept.sort();
        let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
        let message = format!(
            "reloaded: added {}; removed {}; restarted (changed) {}; unchanged {}",
            list(&added),
            list(&removed),
            list(&changed),
            list(&kept)
        );
        (self.say)(&message);
        Response { ok: true, message }
    }

    fn write_state(&self, i: usize) {
        let slot = &self.slots[i];
        let r = slot.running.as_ref();
        let now = Instant::now();
        let next_start_at = slot.next_start.map(|t| {
            state::unix_now_ms() + u64::try_from(t.saturating_duration_since(now).as_millis()).unwrap_or(0)
        });
        let st = ProcState {
            name: slot.spec.name.clone(),
            state: slot.state.name().into(),
            pid: r.map(|r| r.info.pid),
            pgid: r.map(|r| r.pgid),
            start_ticks: r.map(|r| r.info.start_ticks),
            cmdline: r.map(|r| r.info.cmdline.clone()).unwrap_or_default(),
            started_at: r.map(|r| r.started_unix),
            restarts: slot.restarts,
            failures: slot.backoff.failures(),
            crash_loop: slot.backoff.crash_loop(),
            last_exit: slot.last_exit.clone(),
            next_start_at,
            ports: slot.ports.clone(),
            stop_signal: slot.spec.stop_signal.to_string(),
            stop_timeout_s: slot.spec.stop_timeout_s,
        };
        if let Err(e) = state::write_proc(&self.layout, &st) {
            eprintln!("cannot write {}: {e}", self.layout.proc_state_file(&st.name).display());
        }
    }
}

fn port_of(address: &str) -> u16 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0)
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// An address to connect to: a wildcard bind is reached on loopback.
fn connectable(url: &str) -> String {
    url.replace("://0.0.0.0:", "://127.0.0.1:")
        .replace("://[::]:", "://[::1]:")
        .replace("://*:", "://127.0.0.1:")
}
