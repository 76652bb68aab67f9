//! The running supervisor's control socket, `run/governor.sock`: one JSON request per
//! connection (`restart`, `reload`), one JSON answer. A unix socket rather than a signal plus a
//! file because the caller gets an answer (which process, what changed, or why not — a config
//! error on reload), concurrent callers cannot overwrite each other's request, and the file's
//! permissions say who may use it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layout::Layout;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Stop and start one process (`None`: all of them, in dependency order).
    Restart { process: Option<String> },
    /// Read the configuration again; start added processes, stop removed ones, restart changed
    /// ones, leave the others alone.
    Reload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub message: String,
}

/// Sends a request to the deployment's supervisor and waits up to `within` for its answer.
pub fn request(layout: &Layout, req: &Request, within: Duration) -> Result<Response, String> {
    let path = layout.control_socket();
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "cannot reach the supervisor of deployment '{}' at {}: {e}; is it up? (schedulezero status -d {})",
            layout.name(),
            path.display(),
            layout.name()
        )
    })?;
    let _ = stream.set_read_timeout(Some(within));
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(|e| format!("sending to the supervisor: {e}"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| format!("no answer from the supervisor within {within:?}: {e}"))?;
    serde_json::from_str(&answer)
        .map_err(|e| format!("the supervisor's answer is not understood ({e}): {answer}"))
}

/// The supervisor's end: bound at `run/governor.sock` (a leftover file of a dead supervisor is
/// replaced), polled without blocking.
pub struct Control {
    listener: UnixListener,
}

impl Control {
    pub fn bind(layout: &Layout) -> Result<Control, String> {
        let path = layout.control_socket();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| {
            format!(
                "cannot create the control socket {} ({e}); a unix socket path must be under 108 bytes: use a shorter root",
                path.display()
            )
        })?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Control { listener })
    }

    /// The next request waiting, if any, with the connection to answer on.
    pub fn poll(&self) -> Option<(Result<Request, String>, UnixStream)> {
        let (stream, _) = self.listener.accept().ok()?;
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let read = stream.try_clone().map(BufReader::new).and_then(|mut r| r.read_line(&mut line));
        let req = match read {
            Ok(_) => serde_json::from_str(&line).map_err(|e| format!("not a request ({e}): {}", line.trim())),
            Err(e) => Err(e.to_string()),
        };
        Some((req, stream))
    }
}

/// Answers a request (a caller that went away is no concern).
pub fn answer(mut stream: UnixStream, response: &Response) {
    let mut line = serde_json::to_string(response).unwrap_or_default();
    line.push('\n');
    let _ = stream.write_all(line.as_bytes());
}
