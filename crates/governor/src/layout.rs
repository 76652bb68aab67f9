//! Where a deployment's files are: `<root>/deployments/<name>/` with its `schedulezero.toml`,
//! `run/` (PID and state files, the control socket, recorded ports) and `logs/`.

use std::path::{Path, PathBuf};

/// One deployment's directory and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
    name: String,
    dir: PathBuf,
}

impl Layout {
    /// A deployment by name under a root; the name must be a plain directory name
    /// (`host::check_deployment_name`, the server's rule too).
    pub fn new(root: &Path, name: &str) -> Result<Layout, String> {
        schedulezero_host::check_deployment_name(name)?;
        // Absolute, so children started elsewhere and `/proc` comparisons see the same paths.
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let dir = root.join("deployments").join(name);
        Ok(Layout { root, name: name.to_string(), dir })
    }

    /// Every deployment under `root` (directories of `<root>/deployments/`), by name.
    pub fn all(root: &Path) -> Vec<Layout> {
        let Ok(entries) = std::fs::read_dir(root.join("deployments")) else { return Vec::new() };
        let mut all: Vec<Layout> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().and_then(|n| Layout::new(root, n).ok()))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn root(&self) -> &Path {
        &self.root
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

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The supervisor's verified PID file.
    pub fn governor_pid_file(&self) -> PathBuf {
        self.run_dir().join("governor.pid")
    }

    /// The supervisor's phase (starting, up, stopping, failed), for `up --detach` and `status`.
    pub fn phase_file(&self) -> PathBuf {
        self.run_dir().join("governor.json")
    }

    /// The supervisor's control socket (`restart`, `reload`).
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("governor.sock")
    }

    /// One state file per supervised process.
    pub fn procs_dir(&self) -> PathBuf {
        self.run_dir().join("procs")
    }

    pub fn proc_state_file(&self, process: &str) -> PathBuf {
        self.procs_dir().join(format!("{process}.json"))
    }

    /// The port block of `up --auto-ports`, kept across stops so a restart takes it again.
    pub fn auto_ports_file(&self) -> PathBuf {
        self.run_dir().join("auto-ports.json")
    }

    /// The server's runtime file (written by `serve`).
    pub fn runtime_file(&self) -> PathBuf {
        self.run_dir().join("server.json")
    }

    /// The server's PID file (written by `serve`).
    pub fn server_pid_file(&self) -> PathBuf {
        self.run_dir().join("server.pid")
    }

    pub fn log_file(&self, process: &str) -> PathBuf {
        self.logs_dir().join(format!("{process}.log"))
    }

    /// The detached supervisor's own output.
    pub fn governor_log(&self) -> PathBuf {
        self.logs_dir().join("governor.log")
    }
}
