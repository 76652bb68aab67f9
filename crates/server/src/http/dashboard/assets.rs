//! The dashboard's CSS and JavaScript, embedded in the binary. Pages link them as
//! `/assets/<name>?v=<content hash>`, so a URL names one exact content and may be cached for a
//! year; a request without the current hash gets `no-cache` and the ETag, so a stale tab
//! revalidates instead of running old code.

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::ApiError;

/// One embedded file.
pub(crate) struct Asset {
    pub name: &'static str,
    pub mime: &'static str,
    pub body: &'static str,
    /// FNV-1a of the body, computed at compile time: the cache key in URLs and the ETag.
    pub hash: u64,
}

impl Asset {
    const fn new(name: &'static str, mime: &'static str, body: &'static str) -> Asset {
        Asset { name, mime, body, hash: fnv1a(body.as_bytes()) }
    }

    /// The URL pages link.
    pub fn href(&self) -> String {
        format!("/assets/{}?v={:016x}", self.name, self.hash)
    }
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

pub(crate) const CSS: Asset =
    Asset::new("app.css", "text/css; charset=utf-8", include_str!("assets/app.css"));
pub(crate) const JS: Asset =
    Asset::new("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js"));

pub(super) async fn serve(
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = [CSS, JS].into_iter().find(|a| a.name == name) else {
        return ApiError::not_found(format!("no asset '{name}'")).into_response();
    };
    let etag = format!("\"{:016x}\"", asset.hash);
    let versioned = query.as_deref() == Some(&format!("v={:016x}", asset.hash));
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "no-cache" };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
