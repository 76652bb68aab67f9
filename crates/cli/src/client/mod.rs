//! The HTTP client behind the client commands (`schedule`, `handler`, `run`): which server to talk
//! to and why, one request at a time, and every failure turned into a message that says what to do
//! and an exit code scripts can branch on.
//!
//! Module map:
//! - this file: [`ServerArgs`] (the flags every client command shares), [`Client`], [`Failure`].
//! - [`parse`]: the command line's durations and times (`90s`, `1h30m`, `2026-12-01 09:00`).
//! - [`table`]: human output (aligned columns, local compact times, truncated values).
//!
//! The client is async reqwest on a current-thread tokio runtime: the commands make one request
//! after another, so a second thread (which reqwest's blocking API starts) buys nothing, and the
//! crate already depends on tokio.

pub mod parse;
pub mod table;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode, Url};
use schedulezero_server::deployment::Deployment;
use serde_json::Value;

/// The exit codes, shown in the `--help` text of every client command (and in the README).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the server refused the request (a 4xx other than 404 and 409) or failed (5xx)
  2  bad usage (a flag or value this command does not accept)
  3  the server could not be reached
  4  not found (404: no such schedule, run or handler)
  5  conflict (409: the name is taken, the run has already finished, ...)

The server: --server URL, else $SCHEDULEZERO_URL, else the runtime file the running server wrote,
<root>/deployments/<name>/run/server.json (root: --root, $SCHEDULEZERO_HOME or the current
directory; name: -d, $SCHEDULEZERO_DEPLOYMENT or `default`), else http://127.0.0.1:8888.";

/// How long one request may take, connection included. Every route answers at once (a run is
/// queued, not awaited), so this only bounds a server that hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_URL: &str = "http://127.0.0.1:8888";

/// The flags every client command takes: where the server is, and the output format.
#[derive(Args, Clone, Debug, Default)]
pub struct ServerArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8888 (default: $SCHEDULEZERO_URL, else the
    /// deployment's runtime file, else http://127.0.0.1:8888).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The deployments root, to find the running server's runtime file (default:
    /// $SCHEDULEZERO_HOME, else the current directory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The deployment whose server to talk to (default: $SCHEDULEZERO_DEPLOYMENT, else `default`).
    #[arg(short = 'd', long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// Print the server's JSON response (pretty) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why a command failed; each kind has its exit code.
#[derive(Debug)]
pub enum Failure {
    /// A flag or value the command does not accept (exit 2, like clap's own usage errors).
    Usage(String),
    /// Nothing answered at the server's address (exit 3).
    Unreachable(String),
    /// The server answered with an error status (exit 4 for 404, 5 for 409, else 1).
    Api { status: u16, message: String },
    /// Anything else: an answer that cannot be read, stdout closed on us (exit 1).
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Api { status: 404, .. } => 4,
            Failure::Api { status: 409, .. } => 5,
            Failure::Api { .. } | Failure::Other(_) => 1,
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Unreachable(m) | Failure::Other(m) => f.write_str(m),
            Failure::Api { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error a command returned: its [`Failure`]'s, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Failure>().map_or(1, Failure::exit_code)
}

/// Where the server's URL came from, to say so when nothing answers there.
#[derive(Debug, Clone)]
enum Source {
    Flag,
    Env,
    RuntimeFile { path: PathBuf, pid: u32 },
    Default { runtime_file: Option<PathBuf> },
}

/// A connection to one server: its base URL, where that came from, and the runtime to send on.
pub struct Client {
    base: Url,
    source: Source,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    /// The server's JSON printed as is (`--json`) instead of tables.
    pub json: bool,
}

impl Client {
    /// Finds the server (flag, environment, runtime file, default) and prepares the client; no
    /// request is sent yet.
    pub fn new(args: &ServerArgs) -> Result<Client, Failure> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (text, source) = match (&args.server, env("SCHEDULEZERO_URL")) {
            (Some(url), _) => (url.clone(), Source::Flag),
            (None, Some(url)) => (url, Source::Env),
            (None, None) => discover(args, &env)?,
        };
        let base = base_url(&text, &source)?;
        // reqwest is built without a default crypto provider (its default, aws-lc, costs minutes
        // of build); ring is installed once per process. An error means one is already set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("schedulezero-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Other(format!("cannot set up the HTTP client: {}", chain(&e))))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
        Ok(Client { base, source, http, runtime, json: args.json })
    }

    pub fn get(&self, path: &[&str], query: &[(&str, String)]) -> Result<Value, Failure> {
        self.send(Method::GET, path, query, None)
    }

    pub fn post(&self, path: &[&str], body: Option<&Value>) -> Result<Value, Failure> {
        self.send(Method::POST, path, &[], body)
    }

    pub fn delete(&self, path: &[&str]) -> Result<Value, Failure> {
        self.send(Method::DELETE, path, &[], None)
    }

    /// One request; `path` is segments (each percent-encoded, so a name may hold `/` or spaces).
    /// A 2xx answer's JSON is returned; anything else becomes a [`Failure`].
    pub fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let shown = format!("{method} {}", url.path());
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, bytes) = self
            .runtime
            .block_on(async {
                let response = request.send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.bytes().await?))
            })
            .map_err(|e| self.transport_failure(&e))?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return parsed.ok_or_else(|| {
                Failure::Other(format!(
                    "the server at {} answered {shown} with {status} but not with JSON; is it a ScheduleZero server?",
                    self.base.as_str().trim_end_matches('/')
                ))
            });
        }
        let message = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| no_error_body(status, &shown, &bytes));
        Err(Failure::Api { status: status.as_u16(), message })
    }

    /// A request that got no HTTP answer: where the URL came from and what to do.
    fn transport_failure(&self, e: &reqwest::Error) -> Failure {
        let url = self.base.as_str().trim_end_matches('/');
        if !(e.is_connect() || e.is_timeout() || e.is_request()) {
            return Failure::Other(format!("reading the answer of the server at {url}: {}", chain(e)));
        }
        let what = if e.is_timeout() { "did not answer in time" } else { "cannot be reached" };
        let mut cause = innermost(e);
        if self.base.scheme() == "https" && !e.is_timeout() && !cause.contains("os error") {
            // A TLS failure's text ("corrupt message") rarely says the usual reason.
            cause.push_str(" (if the server speaks plain HTTP, use an http:// URL)");
        }
        let (from, todo) = match &self.source {
            Source::Flag => (
                "from --server".to_string(),
                "Check the URL, or start the server with `schedulezero serve`.".to_string(),
            ),
            Source::Env => (
                "from SCHEDULEZERO_URL".to_string(),
                "Check SCHEDULEZERO_URL (or unset it), or start the server with `schedulezero serve`.".to_string(),
            ),
            Source::RuntimeFile { path, pid } => (
                format!("from {}, written by the server with PID {pid}", path.display()),
                "That server may have stopped without cleaning up: start it again with `schedulezero serve`, \
                 or pass --server URL."
                    .to_string(),
            ),
            Source::Default { runtime_file } => (
                match runtime_file {
                    Some(p) => format!(
                        "the default: no --server, no SCHEDULEZERO_URL, no runtime file {}",
                        p.display()
                    ),
                    None => "the default: no --server, no SCHEDULEZERO_URL".to_string(),
                },
                "Start the server with `schedulezero serve`, pass --root/-d to find a running one, \
                 or pass --server URL."
                    .to_string(),
            ),
        };
        Failure::Unreachable(format!("the server at {url} ({from}) {what}: {cause}.\n{todo}"))
    }
}

/// The deployment's runtime file, else the default address.
fn discover(args: &ServerArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Source), Failure> {
    // The same resolution as `serve` (schedulezero_server::config): flag, variable, default.
    let root = match (&args.root, env("SCHEDULEZERO_HOME")) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(h)) => Some(PathBuf::from(h)),
        (None, None) => std::env::current_dir().ok(),
    };
    let name = args
        .deployment
        .clone()
        .or_else(|| env("SCHEDULEZERO_DEPLOYMENT"))
        .unwrap_or_else(|| "default".into());
    let Some(root) = root else {
        return Ok((DEFAULT_URL.into(), Source::Default { runtime_file: None }));
    };
    let deployment =
        Deployment::new(root, &name).map_err(|m| Failure::usage(format!("-d/--deployment: {m}")))?;
    match deployment.read_runtime() {
        Some(runtime) => {
            Ok((runtime.http, Source::RuntimeFile { path: deployment.runtime_file(), pid: runtime.pid }))
        }
        None => Ok((DEFAULT_URL.into(), Source::Default { runtime_file: Some(deployment.runtime_file()) })),
    }
}

/// Parses the base URL: `host:port` alone means http; a wildcard address a server listens on
/// (0.0.0.0, [::]) is reached over the loopback.
fn base_url(text: &str, source: &Source) -> Result<Url, Failure> {
    let from = match source {
        Source::Flag => "--server".to_string(),
        Source::Env => "SCHEDULEZERO_URL".to_string(),
        Source::RuntimeFile { path, .. } => format!("the runtime file {}", path.display()),
        Source::Default { .. } => "the default".to_string(),
    };
    let full = if text.contains("://") { text.trim().to_string() } else { format!("http://{}", text.trim()) };
    let mut url = Url::parse(&full).map_err(|e| {
        Failure::usage(format!("{from}: '{text}' is not a URL like http://127.0.0.1:8888 ({e})"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Failure::usage(format!(
            "{from}: '{text}' is not an http:// or https:// URL like http://127.0.0.1:8888"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Failure::usage(format!("{from}: '{text}': give the server's base URL, without ? or #")));
    }
    let loopback = match url.host_str() {
        Some("0.0.0.0") => Some("127.0.0.1"),
        Some("[::]") => Some("[::1]"),
        _ => None,
    };
    if let Some(host) = loopback {
        let _ = url.set_host(Some(host));
    }
    Ok(url)
}

/// The message for an error status whose body is not ours: most likely a server without the
/// route (older than this client), or something else listening on the port.
fn no_error_body(status: StatusCode, shown: &str, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let excerpt = if text.is_empty() { String::new() } else { format!(": {}", table::truncate(text, 200)) };
    match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => format!(
            "the server has no route for {shown} ({status}){excerpt}; it may be older than this client: upgrade it"
        ),
        _ => format!("the server answered {shown} with {status}{excerpt}"),
    }
}

/// The deepest cause of an error (`Connection refused (os error 111)`), what a person acts on.
fn innermost(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// An error with its causes, innermost last (reqwest's own text alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Other(format!("cannot write to stdout: {e}"))),
    }
}

/// Prints a JSON value as `--json` does.
pub fn print_json(value: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print(&text)
}

/// Fetches list pages, following `next_cursor` (passed back as `cursor_param`) until `limit`
/// items or the last page; returns one document shaped like a page: `{key: [...], "count",
/// "next_cursor"}`.
pub fn paged(
    client: &Client,
    path: &[&str],
    key: &str,
    cursor_param: &str,
    query: &[(&str, String)],
    limit: usize,
) -> Result<Value, Failure> {
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_size = (limit - items.len()).min(1000);
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", page_size.to_string()));
        if let Some(c) = &cursor {
            q.push((cursor_param, c.clone()));
        }
        let page = client.get(path, &q)?;
        let batch = page.get(key).and_then(Value::as_array).ok_or_else(|| {
            Failure::Other(format!("the server's answer to GET /{} has no '{key}' list", path.join("/")))
        })?;
        let before = items.len();
        items.extend(batch.iter().take(limit - items.len()).cloned());
        cursor = page.get("next_cursor").and_then(Value::as_str).map(str::to_string);
        // A server that ignores `limit` or returns an empty page with a cursor must not loop us.
        if items.len() >= limit || cursor.is_none() || items.len() == before {
            break;
        }
    }
    let count = items.len();
    Ok(serde_json::json!({ key: items, "count": count, "next_cursor": cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_status() {
        let api = |status| Failure::Api { status, message: String::new() }.exit_code();
        assert_eq!((api(404), api(409), api(400), api(500), api(503)), (4, 5, 1, 1, 1));
        assert_eq!(Failure::usage("x").exit_code(), 2);
        assert_eq!(Failure::Unreachable("x".into()).exit_code(), 3);
    }

    #[test]
    fn base_urls_accept_host_port_and_reach_wildcards_over_the_loopback() {
        let url = |t| base_url(t, &Source::Flag).map(|u| u.to_string());
        assert_eq!(url("127.0.0.1:9000").unwrap(), "http://127.0.0.1:9000/");
        assert_eq!(url("http://0.0.0.0:8888").unwrap(), "http://127.0.0.1:8888/");
        assert_eq!(url("http://[::]:8888").unwrap(), "http://[::1]:8888/");
        assert_eq!(url("https://sched.example/sz/").unwrap(), "https://sched.example/sz/");
        let err = url("ftp://x").unwrap_err().to_string();
        assert!(err.contains("--server") && err.contains("http://"), "{err}");
        assert!(url("http://x/?a=1").is_err());
    }

    #[test]
    fn a_base_path_is_kept_and_segments_are_encoded() {
        let mut url = base_url("https://sched.example/sz/", &Source::Flag).unwrap();
        url.path_segments_mut().unwrap().pop_if_empty().extend(["api", "schedules", "a b/c"]);
        assert_eq!(url.as_str(), "https://sched.example/sz/api/schedules/a%20b%2Fc");
    }
}
