//! The web dashboard (docs/DASHBOARD.md): server-rendered HTML pages over the same engine the API
//! uses, readable without JavaScript; a small hand-written script (assets/app.js) adds live
//! updates over `GET /api/events`, validation as you type and trigger previews.
//!
//! Module map:
//! - `overview`: `GET /` — handlers, the last hour's runs by outcome, next fires, recent failures.
//! - `schedules`: list with search and filters, detail, pause/resume/run now/delete.
//! - `form`: the create and edit form, its parsing and its per-field errors.
//! - `handlers`: every handler instance.
//! - `runs`: run history with filters, and a run's detail with every attempt (and a cancel button).
//! - `assets`: the embedded CSS and JavaScript, served with an ETag and a content hash.
//! - `html`: escaping and the page shell shared by every page.
//!
//! Forms post `application/x-www-form-urlencoded` to the dashboard's own routes, which answer with
//! a redirect (303) or the form again with errors next to the fields. Those routes demand that the
//! request name this server as its origin (`Origin`, else `Referer`): a form post is a "simple"
//! request a foreign page could send, so a missing origin is refused here, not assumed harmless.

mod assets;
mod form;
mod handlers;
mod html;
mod overview;
mod runs;
mod schedules;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::{ApiError, AppState};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/assets/{name}", get(assets::serve))
        .route("/schedules", get(schedules::list))
        .route("/schedules/new", get(form::new_page).post(form::create))
        .route("/schedules/{schedule}", get(schedules::detail))
        .route("/schedules/{schedule}/edit", get(form::edit_page).post(form::update))
        .route("/schedules/{schedule}/pause", post(schedules::pause))
        .route("/schedules/{schedule}/resume", post(schedules::resume))
        .route("/schedules/{schedule}/run", post(schedules::run_now))
        .route("/schedules/{schedule}/delete", get(schedules::confirm_delete).post(schedules::delete))
        .route("/handlers", get(handlers::page))
        .route("/runs", get(runs::list))
        .route("/runs/{run}", get(runs::detail))
        .route("/runs/{run}/cancel", post(runs::cancel))
}

/// A dashboard failure shown as a page (the API's errors are JSON; a person gets HTML).
pub(crate) struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl From<schedulezero_engine::EngineError> for PageError {
    fn from(e: schedulezero_engine::EngineError) -> PageError {
        PageError(e.into())
    }
}

impl From<schedulezero_store::StoreError> for PageError {
    fn from(e: schedulezero_store::StoreError) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let title = status.canonical_reason().unwrap_or("Error");
        let body = format!(
            "<h1>{}</h1><p class=\"error-text\">{}</p><p><a href=\"/\">Back to the overview</a></p>",
            html::esc(title),
            html::esc(&self.0.message)
        );
        (status, html::bare_page(title, &body)).into_response()
    }
}

type PageResult = Result<Response, PageError>;

/// Query parameters, empty values dropped (a GET form sends every field, filled or not).
fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    form_pairs(raw.unwrap_or("").as_bytes()).into_iter().filter(|(_, v)| !v.trim().is_empty()).collect()
}

/// `a=1&b=2` with `+` and percent escapes decoded; malformed escapes are kept as they are.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k = decode(it.next().unwrap_or_default());
            let v = decode(it.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                let hex =
                    std::str::from_utf8(&raw[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a dashboard form post that does not name this server as its origin. The API's
/// hygiene check already refuses a foreign `Origin`; a form route also refuses a missing one
/// (falling back to `Referer`, which browsers send when they withhold `Origin`).
fn check_form_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|o| o.to_str().ok())
        .unwrap_or("");
    let authority =
        from.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or("")).unwrap_or("");
    if !host.is_empty() && authority.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    Err(PageError(ApiError::new(
        StatusCode::FORBIDDEN,
        "this form must be sent from the dashboard itself (the request named no origin, or another one); \
         scripts should use the JSON API under /api instead",
    )))
}

/// The answer to a successful form post: back to a page, with a notice key it knows.
fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_plus_and_percent_escapes_and_keep_bad_ones() {
        let pairs = form_pairs(b"name=a+b&cron=*%2F5+*+*+*+*&tz=Europe%2fParis&odd=100%25%zz&flag&empty=");
        assert_eq!(
            pairs,
            vec![
                ("name".into(), "a b".into()),
                ("cron".into(), "*/5 * * * *".into()),
                ("tz".into(), "Europe/Paris".into()),
                ("odd".into(), "100%%zz".into()),
                ("flag".into(), String::new()),
                ("empty".into(), String::new()),
            ]
        );
        assert_eq!(form_pairs("q=%C3%A9t%C3%A9".as_bytes()), vec![("q".into(), "été".into())]);
    }

    #[test]
    fn form_posts_must_name_this_server_as_their_origin() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let host = ("host", "127.0.0.1:8888");
        assert!(check_form_origin(&headers(&[host, ("origin", "http://127.0.0.1:8888")])).is_ok());
        assert!(
            check_form_origin(&headers(&[host, ("referer", "http://127.0.0.1:8888/schedules/x")])).is_ok()
        );
        for bad in [
            vec![host],
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("referer", "http://127.0.0.1:8888.evil.example/")],
            vec![("origin", "http://127.0.0.1:8888")],
        ] {
            assert!(check_form_origin(&headers(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn html_escapes_every_special_character() {
        assert_eq!(
            html::esc("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
