//! HTTP hygiene (ARCHITECTURE.md): a web page a user happens to open must not be able to drive a
//! local server, while `curl` and existing scripts keep working.
//!
//! - DNS rebinding: on a loopback bind, the `Host` header must name the loopback (`localhost`,
//!   `127.0.0.1`, `[::1]`, with any port) or a configured name.
//! - Simple-request CSRF: a mutating request (anything but GET, HEAD, OPTIONS) whose `Origin`
//!   names another origin than the server itself is refused unless that origin is configured.
//!   Scripts send no `Origin`; browsers always do on cross-origin POSTs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// What the checks accept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    /// The server listens on a loopback address only: check `Host`.
    pub loopback: bool,
    /// Extra host names accepted in `Host` (without port).
    pub hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) allowed to send mutating requests.
    pub origins: Vec<String>,
}

pub(crate) async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if guard.loopback && !host_allowed(&guard, host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Host '{host}' does not name this server; use localhost or 127.0.0.1, or configure the name"
            ),
        )
        .into_response();
    }
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if mutating && let Some(origin) = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let same = origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
        if !same && !guard.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cross-origin request from '{origin}' refused; configure the origin to allow it"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn host_allowed(guard: &Guard, host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || guard.hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_pass_and_others_do_not() {
        let g = Guard { loopback: true, hosts: vec!["sched.internal".into()], origins: vec![] };
        for ok in [
            "localhost:8888",
            "127.0.0.1:8888",
            "[::1]:8888",
            "LOCALHOST",
            "sched.internal:80",
            "a.localhost",
        ] {
            assert!(host_allowed(&g, ok), "{ok}");
        }
        for bad in ["evil.example:8888", "", "10.0.0.1:8888", "localhost.evil.example"] {
            assert!(!host_allowed(&g, bad), "{bad}");
        }
    }
}
