//! What the transport's end-to-end tests share: a server (engine + transport on a real SQLite
//! file, real ZeroMQ port chosen by the OS), handler processes killed by PID whatever happens,
//! and polling helpers with generous deadlines (these machines are shared and noisy).
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use schedulezero_engine::Engine;
use schedulezero_engine::clock::SystemClock;
use schedulezero_engine::config::EngineConfig;
use schedulezero_engine::registry::Instance;
use schedulezero_store::SqliteStore;
use schedulezero_transport::{Transport, TransportConfig, TransportError};

pub struct Server {
    pub engine: Arc<Engine>,
    pub transport: Option<Transport>,
    pub store: Arc<SqliteStore>,
    pub dir: PathBuf,
    pub endpoint: String,
    pub config: TransportConfig,
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

impl Server {
    /// Starts on `dir/store.db`, handler port chosen by the OS.
    pub async fn start(dir: &Path) -> Server {
        Self::start_with(dir, TransportConfig { endpoint: "tcp://127.0.0.1:0".into(), ..Default::default() })
            .await
    }

    pub async fn start_with(dir: &Path, config: TransportConfig) -> Server {
        init_logs();
        let store = Arc::new(SqliteStore::open_path(dir.join("store.db")).await.expect("store opens"));
        let engine_config = EngineConfig { shutdown_grace: Duration::from_secs(3), ..Default::default() };
        let engine = Arc::new(
            Engine::start(store.clone(), Arc::new(SystemClock), engine_config).await.expect("engine starts"),
        );
        // A restarted server binds the port it had; the old socket may take a moment to let go.
        let deadline = Instant::now() + Duration::from_secs(10);
        let transport = loop {
            match Transport::start(engine.clone(), config.clone()).await {
                Ok(t) => break t,
                Err(TransportError::AddressInUse(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("transport starts: {e}"),
            }
        };
        let endpoint = transport.endpoint().to_string();
        Server { engine, transport: Some(transport), store, dir: dir.to_path_buf(), endpoint, config }
    }

    /// Stops like a server would: engine first (calls in flight may finish), then the port.
    pub async fn stop(&mut self) {
        self.engine.shutdown().await;
        if let Some(t) = self.transport.take() {
            t.shutdown().await;
        }
        self.store.close().await;
    }

    /// Stops, then starts a new engine and transport on the same file and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let config = TransportConfig { endpoint: self.endpoint.clone(), ..self.config.clone() };
        *self = Server::start_with(&self.dir.clone(), config).await;
    }

    pub fn instances(&self, handler_id: &str) -> Vec<Arc<Instance>> {
        self.engine.registry().instances().into_iter().filter(|i| i.handler_id == handler_id).collect()
    }

    pub fn connected(&self, handler_id: &str) -> Vec<Arc<Instance>> {
        self.instances(handler_id).into_iter().filter(|i| i.is_connected()).collect()
    }

    /// Waits until `n` instances of the handler are connected.
    pub async fn wait_connected(&self, handler_id: &str, n: usize, within: Duration) -> Vec<Arc<Instance>> {
        let ok = poll_until(within, || self.connected(handler_id).len() >= n).await;
        assert!(
            ok,
            "{n} instance(s) of '{handler_id}' not connected within {within:?}: {:?}",
            self.instances(handler_id)
        );
        self.connected(handler_id)
    }
}

/// Polls a condition every 20 ms; true if it held before the deadline.
pub async fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls an async condition every 20 ms; true if it held before the deadline.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process, killed (SIGKILL, by PID) when dropped, its stdout lines readable.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines: rx, seen: Vec::new() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line holding `marker` (lines before it are kept in `seen`). A child
    /// that is a re-run test binary prints after the test harness's `test name ... ` on one line.
    pub async fn wait_line(&mut self, marker: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line.clone());
                if let Some(at) = line.find(marker) {
                    return line[at..].to_string();
                }
            }
            if Instant::now() > deadline {
                panic!("no line with '{marker}' within {within:?}; saw {:?}", self.seen);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("process exited ({status}) before printing '{marker}'; saw {:?}", self.seen);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {} failed", self.pid());
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "process {} did not exit within {within:?}", self.pid());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The version-1 handler of `tests/support/v1_handler.py` (pyzmq, COMPAT.md §3 by the letter).
pub fn v1_handler(server: &str, handler_id: &str, call_log: &Path) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/v1_handler.py");
    let check = Command::new("python3").args(["-c", "import zmq"]).output();
    assert!(
        check.is_ok_and(|o| o.status.success()),
        "these tests need python3 with pyzmq: run `pip install pyzmq` (scripts/test does it)"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(script).arg(server).arg(handler_id).arg(call_log);
    Proc::spawn(cmd)
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(str::to_string).collect()).unwrap_or_default()
}
