//! Readiness probes: one quick, non-blocking-ish check each (short timeouts), repeated by the
//! supervisor until it passes or the process's `ready_timeout_s` runs out. HTTP 2xx, a TCP
//! connection, a log line, a handler registered with the server, or — for the server itself —
//! its runtime file naming its PID.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::child::expand;
use crate::config::{Readiness, TcpTarget};
use crate::layout::Layout;

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What a probe can look at.
pub struct Context<'a> {
    pub layout: &'a Layout,
    /// The process's environment as given to it (for `${VAR}` and `SCHEDULEZERO_URL`).
    pub env: &'a BTreeMap<String, String>,
    pub pid: u32,
    pub server: bool,
    pub log_matched: bool,
}

/// `Ok` when ready; `Err` says what is still missing.
pub fn probe(readiness: Option<&Readiness>, cx: &Context<'_>) -> Result<(), String> {
    if cx.server {
        server_runtime(cx.layout, cx.pid)?;
    }
    match readiness {
        None => Ok(()),
        Some(Readiness::Log(re)) => {
            if cx.log_matched {
                Ok(())
            } else {
                Err(format!("no line of its output matches /{re}/ yet"))
            }
        }
        Some(Readiness::Tcp(target)) => {
            let address = match target {
                TcpTarget::Port(p) => format!("127.0.0.1:{p}"),
                TcpTarget::Address(a) if !a.contains(':') => format!("127.0.0.1:{}", expand(a, cx.env)),
                TcpTarget::Address(a) => expand(a, cx.env),
            };
            connect(&address).map(drop)
        }
        Some(Readiness::Http(url)) => {
            let url = expand(url, cx.env);
            let (status, _) = http_get(&url)?;
            if (200..300).contains(&status) { Ok(()) } else { Err(format!("GET {url} answers {status}")) }
        }
        Some(Readiness::Handler(id)) => {
            let base = cx.env.get("SCHEDULEZERO_URL").ok_or(
                "the deployment's server address is not known (no server process, no [server] http)",
            )?;
            let url = format!("{base}/api/handlers");
            let (status, body) = http_get(&url)?;
            if status != 200 {
                return Err(format!("GET {url} answers {status}"));
            }
            let list: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}"))?;
            let connected = list["handlers"]
                .as_array()
                .is_some_and(|hs| hs.iter().any(|h| h["id"] == id.as_str() && h["status"] == "Connected"));
            if connected { Ok(()) } else { Err(format!("handler '{id}' has not registered with {base} yet")) }
        }
    }
}

/// The server's runtime file, when it names `pid` (written once everything is bound).
pub fn server_runtime(layout: &Layout, pid: u32) -> Result<serde_json::Value, String> {
    let raw = std::fs::read(layout.runtime_file())
        .map_err(|_| "the server has not published its addresses yet".to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|_| "the server's runtime file is being written".to_string())?;
    if v["pid"].as_u64() == Some(u64::from(pid)) {
        Ok(v)
    } else {
        Err("the runtime file is not this server's yet".to_string())
    }
}

fn connect(address: &str) -> Result<TcpStream, String> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| format!("'{address}' is not an address: {e}"))?
        .next()
        .ok_or_else(|| format!("'{address}' resolves to nothing"))?;
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| format!("connecting to {address}: {e}"))
}

/// One `GET` over HTTP/1.0 (no TLS): (status, body).
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("'{url}' is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let mut stream = connect(&address)?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("GET {url}: {e}"))?;
    let mut raw = Vec::new();
    stream.take(4 * 1024 * 1024).read_to_end(&mut raw).map_err(|e| format!("GET {url}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {url}: not an HTTP answer"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn cx<'a>(layout: &'a Layout, env: &'a BTreeMap<String, String>) -> Context<'a> {
        Context { layout, env, pid: 1, server: false, log_matched: false }
    }

    #[test]
    fn tcp_and_http_probes_pass_only_when_something_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), "default").expect("layout");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let env: BTreeMap<String, String> = [("PORT".to_string(), port.to_string())].into();
        assert!(probe(Some(&Readiness::Tcp(TcpTarget::Port(port))), &cx(&layout, &env)).is_ok());
        assert!(
            probe(Some(&Readiness::Tcp(TcpTarget::Address("${PORT}".into()))), &cx(&layout, &env)).is_ok()
        );

        // An HTTP server answering 204, then 503 (its own listener: the one above has the TCP
        // probes' connections waiting).
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let env: BTreeMap<String, String> =
            [("PORT".to_string(), listener.local_addr().expect("addr").port().to_string())].into();
        let server = std::thread::spawn(move || {
            for status in ["204 No Content", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(format!("HTTP/1.0 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            }
        });
        let http = Readiness::Http("http://127.0.0.1:${PORT}/health".into());
        assert_eq!(probe(Some(&http), &cx(&layout, &env)), Ok(()));
        let err = probe(Some(&http), &cx(&layout, &env)).expect_err("503 is not ready");
        assert!(err.contains("503"), "{err}");
        server.join().expect("server");

        let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let err =
            probe(Some(&Readiness::Tcp(TcpTarget::Port(closed))), &cx(&layout, &env)).expect_err("closed");
        assert!(err.contains("connecting to 127.0.0.1"), "{err}");
        let err = probe(Some(&Readiness::Log("ready".into())), &cx(&layout, &env)).expect_err("no line yet");
        assert!(err.contains("/ready/"), "{err}");
    }
}
