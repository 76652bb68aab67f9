//! Shared by the end-to-end tests of the `schedulezero` binary: child processes killed by PID
//! when dropped (also when a test fails), the server on OS-chosen ports, HTTP over a plain TCP
//! socket, and the version-1 pyzmq handler of the transport tests.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed by PID when dropped, its stdout and stderr lines collected.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("process starts");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc { child, lines: rx, seen: Vec::new() }
    }

    /// Lines printed so far.
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// The first line, printed so far or within the time given, that holds `marker`.
    pub fn wait_line(&mut self, marker: &str, within: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(marker)) {
            return line.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line.clone());
                if line.contains(marker) {
                    return line;
                }
            }
            assert!(Instant::now() < deadline, "no line with '{marker}' within {within:?}: {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn term(&self) {
        let ok = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()));
    }

    pub fn wait_exit(&mut self, within: Duration) -> (i32, Vec<String>) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(line) = self.lines.try_recv() {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), self.seen.clone());
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}: {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(root: &Path, args: &[&str]) -> Proc {
    serve_with_env(root, args, &[])
}

/// `serve` with environment variables set (none of the caller's `SCHEDULEZERO_*` leak in).
pub fn serve_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_schedulezero"));
    cmd.arg("serve").arg("--root").arg(root).args(args);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SCHEDULEZERO_")) {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied());
    Proc::spawn(cmd)
}

/// The deployment's runtime file (the addresses the server bound).
pub fn runtime(root: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(runtime_file(root)).expect("runtime file"))
        .expect("runtime file is JSON")
}

/// Starts on ports chosen by the OS; returns the process and its HTTP base address.
pub fn serve_any_port(root: &Path) -> (Proc, String) {
    let mut p = serve(root, &["--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0"]);
    let line = p.wait_line("  http ", Duration::from_secs(30));
    let base = line.split_whitespace().last().unwrap().trim_start_matches("http://").to_string();
    (p, base)
}

/// One HTTP/1.1 request over a plain TCP socket: (status, JSON body or the raw text as a string).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    http_with(addr, method, path, body, &format!("Host: {addr}"))
}

/// The same, with the given header lines (the `Host` one included).
pub fn http_with(addr: &str, method: &str, path: &str, body: Option<&str>, headers: &str) -> (u16, Value) {
    let (status, _, text) = http_raw(addr, method, path, body, headers);
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// One request: (status, response headers in lower case, body text).
pub fn http_raw(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &str,
) -> (u16, BTreeMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout set");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\n{headers}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("request sent");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response read");
    let (head, text) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, text.to_string())
}

pub fn runtime_file(root: &Path) -> PathBuf {
    root.join("deployments/default/run/server.json")
}

/// The version-1 pyzmq handler of the transport tests (../shared/COMPAT.md §3 by the letter).
pub fn v1_handler(endpoint: &str, handler_id: &str, log: &Path) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../transport/tests/support/v1_handler.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(script).arg(endpoint).arg(handler_id).arg(log);
    Proc::spawn(cmd)
}

/// A server on free ports and the version-1 handler `legacy` registered with it (its calls are
/// logged to `root/calls.log`).
pub fn serve_with_v1_handler(root: &Path) -> (Proc, String, Proc) {
    let (server, addr) = serve_any_port(root);
    let runtime: Value = serde_json::from_slice(&std::fs::read(runtime_file(root)).unwrap()).unwrap();
    let mut handler = v1_handler(runtime["zmq"].as_str().unwrap(), "legacy", &root.join("calls.log"));
    handler.wait_line("registered ", Duration::from_secs(30));
    (server, addr, handler)
}

/// Polls `GET path` until `done` holds (the caller gives the slack).
pub fn wait_for(addr: &str, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = http(addr, "GET", path, None);
        if status == 200 && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "GET {path} never satisfied the condition: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes the default deployment's `schedulezero.toml` under `root`.
pub fn configure(root: &Path, toml: &str) {
    let dir = root.join("deployments/default");
    std::fs::create_dir_all(&dir).expect("deployment directory");
    std::fs::write(dir.join("schedulezero.toml"), toml).expect("config written");
}
