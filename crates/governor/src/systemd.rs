//! `schedulezero systemd-unit`: a `Type=notify` unit for a deployment. With processes configured
//! the unit runs the governor in the foreground (`up`), which says READY=1 once every process is
//! ready and STOPPING=1 when it stops; without, it runs `serve`, which says READY=1 once bound.

use std::path::Path;

use crate::config::Config;
use crate::layout::Layout;

pub fn unit(layout: &Layout, exe: &Path) -> String {
    let config = Config::load(&layout.config_file(), layout.dir()).ok();
    let governed = config.as_ref().is_some_and(|c| !c.processes.is_empty());
    let command = if governed { "up" } else { "serve" };
    // The governor stops each process within its own timeout, in reverse order.
    let stop_s: u64 =
        config.as_ref().map_or(0, |c| c.processes.iter().map(|p| p.stop_timeout_s + 5).sum()) + 30;
    let root = layout.root().display();
    let name = layout.name();
    format!(
        "# ScheduleZero deployment '{name}': save as /etc/systemd/system/schedulezero-{name}.service, then
#   systemctl daemon-reload && systemctl enable --now schedulezero-{name}
[Unit]
Description=ScheduleZero ({name})
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={exe} {command} --root {root} -d {name}
WorkingDirectory={root}
Environment=SCHEDULEZERO_HOME={root}
Environment=SCHEDULEZERO_DEPLOYMENT={name}
# SIGTERM to the main process only: it stops its processes itself, dependents first.
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec={stop_s}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
",
        exe = exe.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_with_processes_runs_the_governor_and_one_without_runs_the_server() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(root.path(), "prod").expect("layout");
        let exe = Path::new("/usr/local/bin/schedulezero");
        let bare = unit(&layout, exe);
        assert!(bare.contains("Type=notify"), "{bare}");
        assert!(bare.contains("ExecStart=/usr/local/bin/schedulezero serve --root "), "{bare}");
        std::fs::create_dir_all(layout.dir()).expect("dir");
        std::fs::write(layout.config_file(), "[process.a]\ncommand = \"sleep\"\nstop_timeout_s = 40\n")
            .expect("config");
        let governed = unit(&layout, exe);
        assert!(governed.contains("ExecStart=/usr/local/bin/schedulezero up --root "), "{governed}");
        assert!(governed.contains("-d prod") && governed.contains("KillMode=mixed"), "{governed}");
        assert!(governed.contains("TimeoutStopSec=75"), "the stop timeouts are covered: {governed}");
    }
}
