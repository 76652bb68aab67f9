//! HTTP hygiene (ARCHITECTURE.md): a web page a user happens to open must not be able to drive a
//! local server, while `curl` and existing scripts keep working.
//!
//! - DNS rebinding: on a loopback bind, the `Host` header must name the loopback (`localhost`,
//!   `127.0.0.1`, `[::1]`, with any port) or a configured name.
//! - Simple-request CSRF: a mutating request (anything but GET, HEAD, OPTIONS) whose `Origin`
//!   names another origin than the server itself is refused unless that origin is configured.
//!   Scripts send no `Origin`; browsers always do on cross-origin POSTs.
//! - CORS: off unless configured. A configured origin gets `Access-Control-Allow-Origin` on its
//!   responses and an answer to its preflight `OPTIONS`; any other origin gets no CORS header, so
//!   browsers keep its scripts from reading responses.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
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
                "Host '{host}' does not name this server; use localhost or 127.0.0.1, or add the name to \
                 allowed_hosts in the deployment's schedulezero.toml"
            ),
        )
        .into_response();
    }
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let allowed = origin.as_deref().filter(|o| guard.origins.iter().any(|c| c.eq_ignore_ascii_case(o)));
    let allowed = allowed.and_then(|o| HeaderValue::from_str(o).ok());
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if mutating && let Some(origin) = origin.as_deref() {
        let same = origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
        if !same && allowed.is_none() {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request from '{origin}' refused; add it to allowed_origins in the \
                     deployment's schedulezero.toml to allow it"
                ),
            )
            .into_response();
        }
    }
    let Some(allowed) = allowed else {
        return next.run(request).await;
    };
    let preflight = request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PATCH, DELETE"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    h.append(header::VARY, HeaderValue::from_static("origin"));
    response
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
