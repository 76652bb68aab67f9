//! `schedulezero init [NAME]`: a new deployment's `schedulezero.toml`, commented, that parses
//! and runs as written (the server; example handlers left commented out until their files
//! exist).

use crate::layout::Layout;

/// The file `init` writes.
pub fn template(name: &str) -> String {
    TEMPLATE.replace("{name}", name)
}

const TEMPLATE: &str = r#"# ScheduleZero deployment '{name}'.
# Read by `schedulezero serve` ([server]) and by `schedulezero up` (the rest); docs/GOVERNOR.md
# and docs/DEPLOYMENT.md describe every key. Start it all with:
#   schedulezero up -d {name}               # foreground; Ctrl-C stops everything
#   schedulezero up -d {name} --detach      # background; then status, logs, restart, reload, down
# Add --auto-ports to give this deployment its own free block of ports instead of those below.

[server]
http = "127.0.0.1:8888"                 # HTTP API and dashboard (port 0: any free port)
zmq = "tcp://127.0.0.1:4242"            # where handlers connect (port 0: any free port)
database = "schedulezero.db"            # relative to this directory
log_level = "info"

[governor]
log_max_size = "10MB"                   # a process's log (logs/NAME.log) rotates past this size
log_keep = 5                            # rotated files kept (NAME.log.1 … NAME.log.5)
auto_ports = "20000-29999"              # where `up --auto-ports` finds a free block

# The server. `schedulezero` as a command means this very binary.
[process.server]
command = "schedulezero"
args = ["serve"]
server = true                           # gets the ports above; ready once it has bound them
stop_signal = "TERM"                    # it finishes calls in flight, then exits
stop_timeout_s = 20                     # then SIGKILL to its whole process group

# Every process gets SCHEDULEZERO_URL, SCHEDULEZERO_SERVER_ENDPOINT, SCHEDULEZERO_HOME,
# SCHEDULEZERO_DEPLOYMENT and SCHEDULEZERO_INSTANCE_ID, so handlers find the server unconfigured.

# The built-in exec handler: runs programs as job methods. Write exec.toml first
# (docs/BUILTIN_HANDLERS.md; docs/examples/exec.toml declares handler_id = "shell").
# [process.exec]
# command = "schedulezero"
# args = ["handler", "exec", "--config", "exec.toml"]
# depends_on = ["server"]
# readiness = { handler = "shell" }     # ready once registered with the server as that handler id

# A handler written with the Python SDK: `pip install ./sdk/python` from the repository, and copy
# sdk/python/examples/reports_handler.py into this directory first.
# [process.reports]
# command = "python3"
# args = ["-u", "reports_handler.py"]
# cwd = "."                             # relative to this directory
# env = { PYTHONUNBUFFERED = "1" }
# depends_on = ["server"]
# readiness = { log = "registered with" }   # a regular expression matched against its output
# restart = { policy = "always", initial_delay_ms = 1000, max_delay_ms = 60000, stable_after_s = 30 }

# Any other program: a web backend with its port handed over in $PORT.
# [process.web]
# command = "python3"
# args = ["-m", "http.server", "${PORT}", "--bind", "127.0.0.1"]
# ports = { PORT = 8000 }               # 0: any free port; --auto-ports: one of the block
# readiness = { http = "http://127.0.0.1:${PORT}/" }
"#;

/// Writes the deployment's file; refuses to overwrite one.
pub fn init(layout: &Layout) -> Result<std::path::PathBuf, String> {
    let path = layout.config_file();
    if path.exists() {
        return Err(format!("{} exists already; edit it, or pick another name", path.display()));
    }
    std::fs::create_dir_all(layout.dir()).map_err(|e| format!("{}: {e}", layout.dir().display()))?;
    std::fs::write(&path, template(layout.name())).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_and_runs_the_server() {
        let c = crate::config::Config::parse(
            &template("x"),
            std::path::Path::new("schedulezero.toml"),
            std::path::Path::new("/d"),
        )
        .expect("the generated file parses");
        assert_eq!(c.processes.len(), 1);
        assert!(c.server().is_some());
        // Uncommented, the examples parse too.
        let all: String = template("x")
            .lines()
            .map(|l| {
                if l.starts_with("# [process")
                    || l.starts_with("# command")
                    || l.starts_with("# args")
                    || l.starts_with("# depends_on")
                    || l.starts_with("# readiness")
                    || l.starts_with("# cwd")
                    || l.starts_with("# env")
                    || l.starts_with("# restart")
                    || l.starts_with("# ports")
                {
                    l.trim_start_matches("# ").to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = crate::config::Config::parse(&all, std::path::Path::new("t"), std::path::Path::new("/d"))
            .expect("the uncommented examples parse");
        assert_eq!(c.processes.len(), 4);
    }
}
