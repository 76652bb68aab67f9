//! Runs the Python end-to-end scripts of `tests/e2e/` under `cargo test`, against this build's
//! `schedulezero` binary: a script that exits non-zero fails its test, and its output (every check
//! it verified, then the failure and the servers' logs) is printed.
//!
//! The scripts use only Python's standard library for HTTP, plus pyzmq for the version-1 handler
//! processes (`scripts/test` installs it).

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Far above what a script needs (tens of seconds on a loaded machine): only a hang gets here.
const HANG: Duration = Duration::from_secs(300);

fn run_script(name: &str) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = here.join("tests/e2e").join(name);
    let handler = here.join("../transport/tests/support/v1_handler.py");
    let mut child = Command::new("python3")
        .arg("-u")
        .arg(&script)
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_schedulezero"))
        .arg("--handler")
        .arg(&handler)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python3 for {}: {e}; install Python 3", script.display()));

    let (tx, lines) = mpsc::channel::<String>();
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout is piped")),
        Box::new(child.stderr.take().expect("stderr is piped")),
    ];
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|pipe| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            })
        })
        .collect();
    drop(tx);

    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits on the script") {
            break Some(status);
        }
        if Instant::now() > deadline {
            // SIGTERM first: the script then kills the server and handlers it started.
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for reader in readers {
        let _ = reader.join();
    }
    let output: Vec<String> = lines.try_iter().collect();
    println!("{}", output.join("\n"));
    match status {
        None => panic!("{name} did not finish within {HANG:?}: stopped (output above)"),
        Some(s) => assert!(s.success(), "{name} failed ({s}): see its output above"),
    }
}

#[test]
fn compat_api_from_a_python_script_schedules_runs_refuses_mistakes_and_survives_a_restart() {
    run_script("compat_e2e.py");
}

#[test]
fn sigkill_during_a_burst_interrupts_and_retries_every_running_run() {
    run_script("crash_recovery.py");
}
