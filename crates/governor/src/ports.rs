//! Ports: every configured port checked before anything starts (a holder from this deployment
//! is stopped, anything else refuses the start naming its PID and command line), and the blocks
//! of `up --auto-ports` — one free, non-overlapping block per deployment, recorded in
//! `run/auto-ports.json` and taken again at the next start when still free.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use schedulezero_host::{ProcessInfo, port_holders};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::state::ProcState;

/// A port a deployment uses, and what for (`server http`, `process web PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortUse {
    pub port: u16,
    pub what: String,
}

/// A deployment's block of `--auto-ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoPorts {
    pub first: u16,
    pub size: u16,
    /// What each port of the block went to (`server.http`, `web.PORT`).
    pub assigned: BTreeMap<String, u16>,
}

impl AutoPorts {
    pub fn read(layout: &Layout) -> Option<AutoPorts> {
        serde_json::from_slice(&std::fs::read(layout.auto_ports_file()).ok()?).ok()
    }

    pub fn overlaps(&self, first: u16, size: u16) -> bool {
        let (a0, a1) = (u32::from(self.first), u32::from(self.first) + u32::from(self.size));
        let (b0, b1) = (u32::from(first), u32::from(first) + u32::from(size));
        a0 < b1 && b0 < a1
    }
}

/// Whether nothing holds `port` on this machine (a holder seen in `/proc`, or a bind refused).
pub fn is_free(port: u16) -> bool {
    port_holders(port).is_empty() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port the OS considers free now.
pub fn any_free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Allocates (or takes again) this deployment's block of at least `keys.len()` ports within
/// `range`, avoiding the blocks recorded by the other deployments under the same root, and
/// assigns the ports to `keys` in order. The choice is made under a lock file, so two `up
/// --auto-ports` under one root never pick the same block.
pub fn allocate(layout: &Layout, keys: &[String], range: (u16, u16)) -> Result<AutoPorts, String> {
    let lock_path = layout.root().join("deployments").join(".auto-ports.lock");
    let _ = std::fs::create_dir_all(layout.root().join("deployments"));
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;

    let needed = u16::try_from(keys.len().max(1)).map_err(|_| "too many ports".to_string())?;
    let size = needed.div_ceil(16) * 16;
    let assign = |first: u16| AutoPorts {
        first,
        size,
        assigned: keys.iter().enumerate().map(|(i, k)| (k.clone(), first + i as u16)).collect(),
    };
    if let Some(previous) = AutoPorts::read(layout)
        && previous.size >= needed
        && (previous.first..previous.first + needed).all(is_free)
    {
        let again = AutoPorts { size: previous.size, ..assign(previous.first) };
        record(layout, &again)?;
        return Ok(again);
    }
    let others: Vec<AutoPorts> = Layout::all(layout.root())
        .iter()
        .filter(|l| l.name() != layout.name())
        .filter_map(AutoPorts::read)
        .collect();
    let blocks = (u32::from(range.1) - u32::from(range.0) + 1) / u32::from(size);
    if blocks == 0 {
        return Err(format!("the auto_ports range {}-{} is smaller than {size} ports", range.0, range.1));
    }
    // A starting block that differs between runs and roots, so test suites running side by side
    // under different roots rarely even try the same block (and a taken port is seen anyway).
    let seed = u32::from(std::process::id() as u16)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    for i in 0..blocks {
        let block = (seed.wrapping_add(i)) % blocks;
        let first = u16::try_from(u32::from(range.0) + block * u32::from(size)).unwrap_or(range.0);
        if others.iter().any(|o| o.overlaps(first, size)) {
            continue;
        }
        if (first..first + size).all(is_free) {
            let chosen = assign(first);
            record(layout, &chosen)?;
            return Ok(chosen);
        }
    }
    Err(format!(
        "no free block of {size} ports in {}-{}; set [governor] auto_ports to another range",
        range.0, range.1
    ))
}

/// Adds the `keys` not assigned yet to free ports of the block in use (a reload), keeping every
/// port already assigned.
pub fn extend(layout: &Layout, current: &AutoPorts, keys: &[String]) -> Result<AutoPorts, String> {
    let mut next = current.clone();
    for key in keys.iter().filter(|k| !current.assigned.contains_key(*k)) {
        let taken: Vec<u16> = next.assigned.values().copied().collect();
        let port = (next.first..next.first.saturating_add(next.size))
            .find(|p| !taken.contains(p) && is_free(*p))
            .ok_or_else(|| {
                format!(
                    "no free port left for {key} in this deployment's block {}-{}; `down` then `up --auto-ports` allocates a larger one",
                    next.first,
                    next.first + next.size - 1
                )
            })?;
        next.assigned.insert(key.clone(), port);
    }
    record(layout, &next)?;
    Ok(next)
}

fn record(layout: &Layout, ports: &AutoPorts) -> Result<(), String> {
    schedulezero_host::write_atomically(
        &layout.auto_ports_file(),
        &serde_json::to_vec_pretty(ports).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", layout.auto_ports_file().display()))
}

/// Whether a process belongs to this deployment: one of its recorded processes (same PID and
/// start time, or in the group of one), its server (verified PID file), or a process started
/// for it (its environment names this root and deployment).
pub fn is_ours(layout: &Layout, p: &ProcessInfo, known: &[ProcState]) -> bool {
    if known.iter().any(|k| k.pid == Some(p.pid) && k.start_ticks == Some(p.start_ticks)) {
        return true;
    }
    if let Some(pgid) = p.pgid()
        && known.iter().any(|k| k.pgid == Some(pgid) && k.start_ticks.is_some_and(|t| t <= p.start_ticks))
    {
        return true;
    }
    if let schedulezero_host::PidStatus::Live(r) =
        schedulezero_host::PidFile::new(layout.server_pid_file()).status()
        && r.pid == p.pid
    {
        return true;
    }
    let env = p.environ();
    let var = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let root = layout.root().to_string_lossy();
    var("SCHEDULEZERO_HOME") == Some(root.as_ref()) && var("SCHEDULEZERO_DEPLOYMENT") == Some(layout.name())
}

/// Checks every port before a start. A holder from this deployment (left over by a killed
/// supervisor, or a server started by hand) is stopped, gracefully first; returns what was
/// stopped. Any other holder refuses the start.
pub fn clear(layout: &Layout, uses: &[PortUse], known: &[ProcState]) -> Result<Vec<String>, String> {
    let mut stopped = Vec::new();
    for use_ in uses.iter().filter(|u| u.port != 0) {
        for holder in port_holders(use_.port) {
            let Some(p) = holder.process.clone() else {
                return Err(format!(
                    "port {} ({}) is held by a process this user cannot inspect ({}); stop it, change the port, or use --auto-ports",
                    use_.port, use_.what, holder.local
                ));
            };
            if p.pid == std::process::id() {
                continue;
            }
            if !is_ours(layout, &p, known) {
                return Err(format!(
                    "port {} ({}) is in use by PID {} ({}), which is not part of deployment '{}'; stop it, change the port, or use --auto-ports",
                    use_.port,
                    use_.what,
                    p.pid,
                    p.command(),
                    layout.name()
                ));
            }
            let gone = match p.pgid().filter(|g| *g == p.pid) {
                // A group leader (a process the governor started): the whole group goes.
                Some(pgid) => {
                    let mut nothing = || {};
                    schedulezero_host::stop_group(
                        pgid,
                        schedulezero_host::Signal::SIGTERM,
                        Duration::from_secs(10),
                        &mut nothing,
                    )
                    .survivors
                    .is_empty()
                }
                None => schedulezero_host::stop_process(
                    &p,
                    schedulezero_host::Signal::SIGTERM,
                    Duration::from_secs(10),
                ),
            };
            if !gone {
                return Err(format!(
                    "port {} ({}): PID {} of this deployment would not stop",
                    use_.port, use_.what, p.pid
                ));
            }
            stopped.push(format!(
                "stopped PID {} ({}), a stale process of this deployment holding port {} ({})",
                p.pid,
                p.command(),
                use_.port,
                use_.what
            ));
        }
    }
    Ok(stopped)
}

/// One port of one deployment in the `ports` listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub deployment: String,
    pub port: u16,
    /// What it is for: `server http`, `process web PORT`, `auto block`…
    pub what: String,
    /// Who holds it now ("PID 123 (cmd)"), if anyone.
    pub holder: Option<String>,
    /// Whether the holder belongs to this deployment.
    pub ours: bool,
}

/// The ports of the deployments (all under the root, or `only`), and the conflicts: one port
/// claimed by two deployments.
pub fn list(root: &std::path::Path, only: Option<&Layout>) -> (Vec<Listed>, Vec<String>) {
    let layouts = match only {
        Some(l) => vec![l.clone()],
        None => Layout::all(root),
    };
    let mut all = Vec::new();
    for layout in &layouts {
        let known = crate::state::read_procs(layout);
        let mut uses: Vec<PortUse> = Vec::new();
        let auto = AutoPorts::read(layout);
        let auto_on = crate::state::read_phase(layout).is_some_and(|p| p.auto_ports);
        match (&auto, auto_on) {
            (Some(a), true) => {
                uses.extend(a.assigned.iter().map(|(k, p)| PortUse { port: *p, what: format!("auto {k}") }))
            }
            _ => {
                if let Ok(c) = crate::config::Config::load(&layout.config_file(), layout.dir()) {
                    if c.server().is_some() || c.server_http.is_some() {
                        let http = c.server_http.clone().unwrap_or_else(|| "127.0.0.1:8888".into());
                        let zmq = c.server_zmq.clone().unwrap_or_else(|| "tcp://127.0.0.1:4242".into());
                        uses.push(PortUse { port: port_number(&http), what: "server http".into() });
                        uses.push(PortUse { port: port_number(&zmq), what: "server zmq".into() });
                    }
                    for p in &c.processes {
                        uses.extend(
                            p.ports
                                .iter()
                                .map(|(v, n)| PortUse { port: *n, what: format!("process {} {v}", p.name) }),
                        );
                    }
                }
            }
        }
        if let Ok(raw) = std::fs::read(layout.runtime_file())
            && let Ok(rt) = serde_json::from_slice::<serde_json::Value>(&raw)
        {
            for key in ["http", "zmq"] {
                if let Some(port) = rt[key].as_str().map(port_number) {
                    uses.push(PortUse { port, what: format!("server {key} (bound)") });
                }
            }
        }
        for k in &known {
            uses.extend(
                k.ports.iter().map(|(v, n)| PortUse { port: *n, what: format!("process {} {v}", k.name) }),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for u in uses.into_iter().filter(|u| u.port != 0) {
            if !seen.insert(u.port) {
                continue;
            }
            let holder = port_holders(u.port).into_iter().next();
            let ours =
                holder.as_ref().and_then(|h| h.process.as_ref()).is_some_and(|p| is_ours(layout, p, &known));
            all.push(Listed {
                deployment: layout.name().to_string(),
                port: u.port,
                what: u.what,
                holder: holder.map(|h| h.describe()),
                ours,
            });
        }
    }
    let mut conflicts = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if a.port == b.port && a.deployment != b.deployment {
                conflicts.push(format!(
                    "port {}: deployment '{}' ({}) and deployment '{}' ({})",
                    a.port, a.deployment, a.what, b.deployment, b.what
                ));
            }
        }
    }
    (all, conflicts)
}

fn port_number(address: &str) -> u16 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_deployments_get_blocks_that_do_not_overlap_and_keep_them() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = Layout::new(root.path(), "a").expect("a");
        let b = Layout::new(root.path(), "b").expect("b");
        std::fs::create_dir_all(a.dir()).expect("a dir");
        std::fs::create_dir_all(b.dir()).expect("b dir");
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let range = (20000, 29999);
        let pa = allocate(&a, &keys, range).expect("a allocated");
        let pb = allocate(&b, &keys[..2], range).expect("b allocated");
        assert_eq!(pa.size, 32);
        assert_eq!(pb.size, 16);
        assert!(!pa.overlaps(pb.first, pb.size), "{pa:?} {pb:?}");
        assert_eq!(pa.assigned["k0"], pa.first);
        assert_eq!(pa.assigned["k19"], pa.first + 19);
        let again = allocate(&a, &keys, range).expect("a again");
        assert_eq!(again.first, pa.first, "the recorded block is taken again");
    }
}
