//! The HTTP handler: each method sends one HTTP request built from templates (URL, headers,
//! body) filled with the call's checked params, and reports the response.
//!
//! Secrets belong in the environment, not the file: `${NAME}` in a header is replaced by the
//! variable's value when the config is loaded. Header values are never logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schedulezero_handler::{CallContext, Handler, MethodError};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::{ConfigError, HandlerConfig, byte_limit, load, seconds};
use crate::params::{Checked, Schema};
use crate::template::Template;

const DEFAULT_MAX_BODY: u64 = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a body template is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// JSON-escaped inside strings, JSON values outside; the result must be JSON.
    Json,
    /// Values as they are.
    Text,
}

/// A `[methods.NAME]` table of an http config, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpMethod {
    /// GET, POST, PUT, PATCH, DELETE, HEAD or any other token (default GET).
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_format: Option<BodyFormat>,
    timeout_secs: Option<f64>,
    /// Statuses that mean success: codes (`204`), classes (`"2xx"`), ranges (`"200-299"`).
    success_status: Option<Vec<StatusRule>>,
    /// Response headers copied into the result (names, any case).
    #[serde(default)]
    response_headers: Vec<String>,
    /// Bytes of the response body kept (default 64 KiB).
    max_body_bytes: Option<u64>,
    #[serde(default)]
    params: Schema,
}

/// One status rule as written: a number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum StatusRule {
    Code(u16),
    Text(String),
}

/// One HTTP method, checked. No `Debug`: its headers may hold secrets.
pub struct HttpMethod {
    pub method: reqwest::Method,
    url: Template,
    headers: Vec<(HeaderName, Template)>,
    body: Option<(Template, BodyFormat)>,
    pub timeout: Option<Duration>,
    /// Inclusive ranges of success statuses.
    success: Vec<(u16, u16)>,
    /// The rules as written, for messages.
    success_text: String,
    response_headers: Vec<HeaderName>,
    max_body: usize,
    params: Schema,
}

impl<'de> Deserialize<'de> for HttpMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HttpMethod::new(RawHttpMethod::deserialize(d)?, &|name| std::env::var(name).ok())
            .map_err(serde::de::Error::custom)
    }
}

impl HttpMethod {
    fn new(raw: RawHttpMethod, env: &dyn Fn(&str) -> Option<String>) -> Result<HttpMethod, String> {
        let method_text = raw.method.unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method_text.as_bytes())
            .map_err(|_| format!("`method` '{method_text}' is not an HTTP method"))?;
        let url = Template::parse(&raw.url, &raw.params).map_err(|e| format!("`url`: {e}"))?;
        let samples = samples(&raw.params);
        let example = reqwest::Url::parse(&url.render_url(&samples))
            .map_err(|e| format!("`url` '{}' is not a URL: {e}", raw.url))?;
        if !matches!(example.scheme(), "http" | "https") {
            return Err(format!("`url` must start with http:// or https://, got '{}'", raw.url));
        }
        let mut headers = Vec::new();
        for (name, value) in &raw.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`headers`: '{name}' is not a header name"))?;
            let template = Template::parse(value, &raw.params)
                .and_then(|t| t.map_text(|text| expand_env(text, env)))
                .map_err(|e| format!("`headers.{name}`: {e}"))?;
            // Checked with sample values; the message does not quote the value (it may hold a secret).
            HeaderValue::from_str(&template.render(&samples)).map_err(|_| {
                format!("`headers.{name}`: the value holds a character not allowed in a header")
            })?;
            headers.push((header, template));
        }
        let body = match raw.body {
            Some(text) => {
                let format = raw.body_format.unwrap_or(BodyFormat::Json);
                let template = Template::parse(&text, &raw.params).map_err(|e| format!("`body`: {e}"))?;
                if format == BodyFormat::Json {
                    serde_json::from_str::<Value>(&template.render_json(&samples)).map_err(|e| {
                        format!("`body` is not JSON once filled ({e}); use body_format = \"text\" for other bodies")
                    })?;
                    if !raw.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                        let json = Template::parse("application/json", &Schema::default())?;
                        headers.push((reqwest::header::CONTENT_TYPE, json));
                    }
                }
                Some((template, format))
            }
            None if raw.body_format.is_some() => return Err("`body_format` without a `body`".into()),
            None => None,
        };
        let rules = raw.success_status.unwrap_or_else(|| vec![StatusRule::Text("2xx".into())]);
        if rules.is_empty() {
            return Err("`success_status` is empty: no call could succeed".into());
        }
        let success = rules.iter().map(status_range).collect::<Result<Vec<_>, _>>()?;
        let success_text = rules
            .iter()
            .map(|r| match r {
                StatusRule::Code(c) => c.to_string(),
                StatusRule::Text(t) => t.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let response_headers = raw
            .response_headers
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("`response_headers`: '{n}' is not a header name"))
            })
            .collect::<Result<_, _>>()?;
        Ok(HttpMethod {
            method,
            url,
            headers,
            body,
            timeout: raw.timeout_secs.map(|s| seconds("timeout_secs", s)).transpose()?,
            success,
            success_text,
            response_headers,
            max_body: byte_limit("max_body_bytes", raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY))?,
            params: raw.params,
        })
    }

    fn succeeded(&self, status: u16) -> bool {
        self.success.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

/// A value of each declared param's type, to try templates with at load time.
fn samples(schema: &Schema) -> Checked {
    schema.specs().map(|(name, spec)| (name.to_string(), spec.kind.sample())).collect()
}

/// `${NAME}` replaced by the environment variable's value; `$${` writes a literal `${`.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if at > 0 && rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let close = after.find('}').ok_or("`${` without `}`")?;
        let name = &after[..close];
        let value = env(name).ok_or_else(|| {
            format!(
                "needs the environment variable {name}, which is not set (set it before starting the handler)"
            )
        })?;
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `204`, `"2xx"`, `"200-299"` or `"404"` as an inclusive range.
fn status_range(rule: &StatusRule) -> Result<(u16, u16), String> {
    let valid = |c: u16| (100..=599).contains(&c);
    let bad = |t: &str| {
        format!("`success_status`: '{t}' is not a status, a class like \"2xx\" or a range like \"200-299\"")
    };
    let range = match rule {
        StatusRule::Code(c) => (*c, *c),
        StatusRule::Text(t) => {
            let t = t.trim();
            if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                let digit: u16 = class.parse().map_err(|_| bad(t))?;
                (digit * 100, digit * 100 + 99)
            } else if let Some((lo, hi)) = t.split_once('-') {
                (lo.trim().parse().map_err(|_| bad(t))?, hi.trim().parse().map_err(|_| bad(t))?)
            } else {
                let c = t.parse().map_err(|_| bad(t))?;
                (c, c)
            }
        }
    };
    if valid(range.0) && valid(range.1) && range.0 <= range.1 {
        Ok(range)
    } else {
        Err(format!("`success_status`: {}-{} is not within 100-599", range.0, range.1))
    }
}

/// An http config file.
pub type HttpConfig = HandlerConfig<HttpMethod>;

/// Reads and checks an http config file (`${NAME}` in headers is read from the environment now).
pub fn load_config(path: &Path) -> Result<HttpConfig, ConfigError> {
    load(path, |_: &mut HttpMethod, _| {})
}

/// The handler serving `config`'s methods.
pub fn handler(config: HttpConfig, instance_id: Option<String>) -> Result<Handler, HandlerSetupError> {
    // reqwest is built without a default crypto provider; ring is installed once per process (an
    // error means one is already set).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("schedulezero-http-handler/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HandlerSetupError::Client(e.to_string()))?;
    let mut builder = Handler::builder(config.handler_id).capacity(config.capacity);
    if let Some(id) = instance_id {
        builder = builder.instance_id(id);
    }
    for (name, method) in config.methods {
        let method = Arc::new(method);
        let label: Arc<str> = name.as_str().into();
        let client = client.clone();
        builder = builder.method(name, move |ctx, params| {
            call(client.clone(), method.clone(), label.clone(), ctx, params)
        });
    }
    builder.build().map_err(HandlerSetupError::Build)
}

/// Why the http handler could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HandlerSetupError {
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Build(#[from] schedulezero_handler::BuildError),
}

/// Serves one call: check params, send the request, read the response up to the limit, judge
/// the status.
async fn call(
    client: reqwest::Client,
    method: Arc<HttpMethod>,
    name: Arc<str>,
    ctx: CallContext,
    params: Value,
) -> Result<Value, MethodError> {
    let values = method.params.check(&params)?;
    let url = method.url.render_url(&values);
    let mut headers = HeaderMap::new();
    for (header, template) in &method.headers {
        let mut value = HeaderValue::from_str(&template.render(&values)).map_err(|_| {
            MethodError::new(format!("header '{header}': a param put a character not allowed in a header"))
        })?;
        value.set_sensitive(true);
        headers.insert(header.clone(), value);
    }
    headers.insert(
        "x-schedulezero-run-id",
        HeaderValue::from_str(&ctx.run_id().to_string()).map_err(|e| e.to_string())?,
    );
    headers.insert("x-schedulezero-attempt", HeaderValue::from(ctx.attempt()));
    let limit = method.timeout.map_or(ctx.time_left(), |t| t.min(ctx.time_left()));
    let mut request = client.request(method.method.clone(), &url).headers(headers).timeout(limit);
    if let Some((template, format)) = &method.body {
        request = request.body(match format {
            BodyFormat::Json => template.render_json(&values),
            BodyFormat::Text => template.render(&values),
        });
    }
    let started = Instant::now();
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status();
        // Before any chunk is read: later it shrinks with what has been read.
        let length = response.content_length();
        let mut kept = Vec::new();
        let mut read = 0u64;
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            read += chunk.len() as u64;
            let room = method.max_body.saturating_sub(kept.len()).min(chunk.len());
            kept.extend_from_slice(&chunk[..room]);
            if room < chunk.len() {
                // The rest is not read: a huge or endless body must not hold the call.
                truncated = true;
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, response.headers().clone(), length, kept, read, truncated))
    };
    let outcome = tokio::select! {
        outcome = exchange => outcome,
        () = ctx.cancelled() => {
            let why = if ctx.time_left().is_zero() { "deadline exceeded" } else { "cancelled" };
            return Err(MethodError::new(format!("{why}: the request to {} was abandoned", method.method)));
        }
    };
    let duration = started.elapsed();
    let (status, response_headers, length, kept, read, truncated) = match outcome {
        Ok(parts) => parts,
        Err(e) if e.is_timeout() => {
            tracing::info!(run_id = %ctx.run_id(), method = %name, "request timed out");
            return Err(MethodError::new(format!(
                "timed out after {} s: {} {}",
                (limit.as_secs_f64() * 1000.0).round() / 1000.0,
                method.method,
                without_query(&url)
            )));
        }
        Err(e) => return Err(MethodError::from_error(&e)),
    };
    let mut picked = serde_json::Map::new();
    for header in &method.response_headers {
        let values: Vec<&str> =
            response_headers.get_all(header).iter().filter_map(|v| v.to_str().ok()).collect();
        if !values.is_empty() {
            picked.insert(header.to_string(), Value::String(values.join(", ")));
        }
    }
    let body = String::from_utf8_lossy(&kept).into_owned();
    let is_json = response_headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let mut report = json!({
        "status": status.as_u16(),
        "headers": picked,
        "body": body,
        "body_bytes": length.unwrap_or(read),
        "body_truncated": truncated,
        "duration_ms": duration.as_millis() as u64,
    });
    if is_json
        && !truncated
        && let Ok(parsed) = serde_json::from_slice::<Value>(&kept)
    {
        report["json"] = parsed;
    }
    tracing::info!(run_id = %ctx.run_id(), method = %name, status = status.as_u16(), ms = duration.as_millis() as u64, "response");
    if method.succeeded(status.as_u16()) {
        Ok(report)
    } else {
        let message = format!("HTTP {status} (success: {})", method.success_text);
        Err(MethodError::new(message).with_detail(report))
    }
}

/// A URL for messages: its query may carry values a log should not keep.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_with(toml_text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<HttpMethod, String> {
        let raw: RawHttpMethod = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        HttpMethod::new(raw, env)
    }

    fn method(toml_text: &str) -> Result<HttpMethod, String> {
        method_with(toml_text, &|_| None)
    }

    #[test]
    fn statuses_codes_classes_and_ranges() {
        let m = method("url = \"http://h/\"\nsuccess_status = [204, \"3xx\", \"400-404\"]").unwrap();
        let ok: Vec<u16> =
            [200, 204, 301, 399, 400, 404, 405, 500].into_iter().filter(|s| m.succeeded(*s)).collect();
        assert_eq!(ok, [204, 301, 399, 400, 404]);
        let default = method("url = \"http://h/\"").unwrap();
        assert!(default.succeeded(200) && default.succeeded(299) && !default.succeeded(300));
        assert!(method("url = \"http://h/\"\nsuccess_status = [\"9xx\"]").err().unwrap().contains("100-599"));
        assert!(method("url = \"http://h/\"\nsuccess_status = [\"ok\"]").err().unwrap().contains("'ok'"));
    }

    #[test]
    fn secrets_come_from_the_environment_and_are_never_quoted() {
        let env = |name: &str| (name == "TOKEN").then(|| "s3cret".to_string());
        let m = method_with("url = \"http://h/\"\nheaders = { Authorization = \"Bearer ${TOKEN}\" }", &env)
            .unwrap();
        assert_eq!(m.headers[0].1.render(&Checked::new()), "Bearer s3cret");
        let e = method_with("url = \"http://h/\"\nheaders = { A = \"${MISSING}\" }", &env).err().unwrap();
        assert!(e.contains("headers.A") && e.contains("MISSING") && e.contains("not set"), "{e}");
        let bad = |n: &str| (n == "BAD").then(|| "a\nb".to_string());
        let e = method_with("url = \"http://h/\"\nheaders = { A = \"${BAD}\" }", &bad).err().unwrap();
        assert!(e.contains("not allowed in a header") && !e.contains("a\nb"), "{e}");
        assert_eq!(expand_env("cost $${X}", &env).unwrap(), "cost ${X}");
    }

    #[test]
    fn templates_are_checked_when_loaded() {
        assert!(method("url = \"http://h/{{x}}\"").err().unwrap().contains("{{x}} names no declared param"));
        assert!(method("url = \"ftp://h/\"").err().unwrap().contains("http://"));
        let e = method("url = \"http://h/\"\nbody = '{\"a\": {{n}'\nparams.n = { type = \"integer\" }")
            .err()
            .unwrap();
        assert!(e.contains("`body`"), "{e}");
        let e = method("url = \"http://h/\"\nbody = '{\"a\": {{n}}'\nparams.n = { type = \"integer\" }")
            .err()
            .unwrap();
        assert!(e.contains("not JSON once filled"), "{e}");
        assert!(
            method("url = \"http://h/\"\nmethod = \"GE T\"").err().unwrap().contains("not an HTTP method")
        );
        let m = method("url = \"http://h/\"\nmethod = \"post\"\nbody = '{\"a\": {{n}}}'\nparams.n = { type = \"integer\" }")
            .unwrap();
        assert_eq!(m.method, reqwest::Method::POST);
        assert!(
            m.headers.iter().any(|(h, t)| h == reqwest::header::CONTENT_TYPE
                && t.render(&Checked::new()) == "application/json")
        );
    }
}
