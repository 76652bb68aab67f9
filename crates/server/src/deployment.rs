//! A deployment's files: `<root>/deployments/<name>/` holds `schedulezero.toml`, the SQLite
//! store by default, and `run/` with the PID file and the runtime file (the addresses the server
//! actually bound, so clients and handlers find it even when it asked for port 0).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    name: String,
    dir: PathBuf,
}

/// What a running server publishes in `run/server.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub pid: u32,
    /// `http://host:port`
    pub http: String,
    /// `tcp://host:port`
    pub zmq: String,
    pub database: String,
    pub started_at: String,
}

/// The ports a deployment's server last bound (`run/ports.json`, kept across stops): a server
/// asked for port 0 takes them again when they are free, so handlers started against the
/// previous server reconnect to the new one without being told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPorts {
    pub http: u16,
    pub zmq: u16,
}

impl Deployment {
    /// A deployment by name under a root; the name must be a plain directory name.
    pub fn new(root: PathBuf, name: &str) -> Result<Deployment, String> {
        schedulezero_host::check_deployment_name(name)?;
        Ok(Deployment { name: name.to_string(), dir: root.join("deployments").join(name) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.join("schedulezero.toml")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn server_pid_file(&self) -> PathBuf {
        self.run_dir().join("server.pid")
    }

    pub fn runtime_file(&self) -> PathBuf {
        self.run_dir().join("server.json")
    }

    pub fn last_ports_file(&self) -> PathBuf {
        self.run_dir().join("ports.json")
    }

    pub fn read_last_ports(&self) -> Option<LastPorts> {
        serde_json::from_slice(&std::fs::read(self.last_ports_file()).ok()?).ok()
    }

    pub fn write_last_ports(&self, ports: LastPorts) -> std::io::Result<()> {
        schedulezero_host::write_atomically(
            &self.last_ports_file(),
            &serde_json::to_vec(&ports).unwrap_or_default(),
        )
    }

    /// The runtime file of a running server, if there is one.
    pub fn read_runtime(&self) -> Option<Runtime> {
        serde_json::from_slice(&std::fs::read(self.runtime_file()).ok()?).ok()
    }

    /// Publishes the bound addresses (atomically: readers see the old file or the new one).
    pub fn write_runtime(&self, runtime: &Runtime) -> std::io::Result<()> {
        schedulezero_host::write_atomically(
            &self.runtime_file(),
            &serde_json::to_vec_pretty(runtime).unwrap_or_default(),
        )
    }
}
