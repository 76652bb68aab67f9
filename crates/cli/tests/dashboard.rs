//! The web dashboard (docs/DASHBOARD.md) against the real binary and a real version-1 handler:
//! its forms without JavaScript (post → redirect, errors next to the field, origin required),
//! its embedded assets (ETag, content-hashed URLs), and — in headless Chromium driven over
//! WebDriver — a schedule created through the form, firing, its run appearing without a reload,
//! paused, run now and deleted, with screenshots of every page saved under
//! `<target>/dashboard-screenshots/`.
//!
//! Chromium and chromedriver come from Debian (`.ci/run` installs them). Without them the browser
//! test fails, saying how to install them; only `SCHEDULEZERO_SKIP_BROWSER=1` (never set in CI)
//! turns that into a skip on a developer's machine.

mod support;

use std::io::{Read, Write};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

// ---- without a browser ------------------------------------------------------------------------

/// A form post as a browser sends it (`Origin` set unless `origin` is None).
fn form_post(
    addr: &str,
    path: &str,
    body: &str,
    origin: Option<&str>,
) -> (u16, std::collections::BTreeMap<String, String>, String) {
    let mut headers = format!("Host: {addr}");
    if let Some(o) = origin {
        headers.push_str(&format!("\r\nOrigin: {o}"));
    }
    http_raw(addr, "POST", path, Some(body), &headers)
}

#[test]
fn dashboard_forms_work_without_javascript_and_refuse_posts_from_elsewhere() {
    let root = tempfile::tempdir().unwrap();
    let (_server, addr, _handler) = serve_with_v1_handler(root.path());
    let me = format!("http://{addr}");

    // The overview is HTML (what the original's clients poll) with the navigation.
    let (status, headers, page) = http_raw(&addr, "GET", "/", None, &format!("Host: {addr}"));
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/html"), "{headers:?}");
    assert!(
        page.contains("<html") && page.contains("Overview") && page.contains("href=\"/schedules\""),
        "{page}"
    );
    assert!(page.contains("legacy"), "the connected handler is listed: {page}");

    // A bad field comes back next to that field, what was typed kept, nothing created.
    let bad = "name=nightly&kind=cron&cron=not+a+cron&timezone=Europe%2FParis&handler_id=legacy&method=echo\
               &params=%7B%22a%22%3A1%7D&overlap=allow&misfire=coalesce&grace=60&max_attempts=3&timeout=30&action=save";
    let (status, _, page) = form_post(&addr, "/schedules/new", bad, Some(&me));
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains(
            "id=\"f-cron\" name=\"cron\" aria-describedby=\"hint-cron err-cron\" aria-invalid=\"true\""
        ),
        "{page}"
    );
    let err = page.split("id=\"err-cron\"").nth(1).unwrap_or("");
    assert!(err.split("</p>").next().unwrap_or("").len() > 20, "the cron error is written next to it: {err}");
    assert!(page.contains("value=\"not a cron\""), "what was typed is kept");
    assert_eq!(http(&addr, "GET", "/api/schedules", None).1["count"], 0);

    // Preview shows the next fires in the chosen zone, saving nothing.
    let ok = bad.replace("cron=not+a+cron", "cron=0+9+*+*+*");
    let (status, _, page) =
        form_post(&addr, "/schedules/new", &ok.replace("action=save", "action=preview"), Some(&me));
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page.matches("T09:00:00+01:00</li>").count() + page.matches("T09:00:00+02:00</li>").count(),
        5,
        "{page}"
    );
    assert_eq!(http(&addr, "GET", "/api/schedules", None).1["count"], 0);

    // Without an origin (or from another one) the form is refused: it is a simple request any
    // page could send.
    let (status, _, page) = form_post(&addr, "/schedules/new", &ok, None);
    assert_eq!(status, 403, "{page}");
    let (status, _, _) = form_post(&addr, "/schedules/new", &ok, Some("http://evil.example"));
    assert_eq!(status, 403);
    assert_eq!(http(&addr, "GET", "/api/schedules", None).1["count"], 0);

    // Saved: a redirect to the schedule, which has what the form said.
    let (status, headers, _) = form_post(&addr, "/schedules/new", &ok, Some(&me));
    assert_eq!(status, 303);
    let location = headers["location"].clone();
    assert!(location.starts_with("/schedules/") && location.ends_with("?notice=created"), "{location}");
    let sc = http(&addr, "GET", "/api/schedules/nightly", None).1;
    assert_eq!(sc["timezone"], "Europe/Paris");
    assert_eq!(sc["target"], json!({"handler_id": "legacy", "method": "echo", "params": {"a": 1}}));
    assert_eq!(sc["policies"]["timeout"], 30.0);
    let id = sc["schedule_id"].as_str().unwrap().to_string();
    let (status, _, page) = http_raw(&addr, "GET", &location, None, &format!("Host: {addr}"));
    assert_eq!(status, 200);
    assert!(page.contains("Schedule created.") && page.contains("0 9 * * *"), "{page}");

    // The same name again is an error on the name field.
    let (status, _, page) = form_post(&addr, "/schedules/new", &ok, Some(&me));
    assert_eq!(status, 422);
    assert!(
        page.contains(
            "id=\"f-name\" name=\"name\" aria-describedby=\"hint-name err-name\" aria-invalid=\"true\""
        ),
        "{page}"
    );

    // Edit keeps what is not changed; pause, resume and delete are forms too.
    let edit = ok.replace("timeout=30", "timeout=45");
    let (status, headers, _) = form_post(&addr, &format!("/schedules/{id}/edit"), &edit, Some(&me));
    assert_eq!(status, 303);
    assert!(headers["location"].ends_with("?notice=updated"));
    let after = http(&addr, "GET", "/api/schedules/nightly", None).1;
    assert_eq!(after["policies"]["timeout"], 45.0);
    assert_eq!(after["trigger_spec"], sc["trigger_spec"]);
    assert_eq!(form_post(&addr, &format!("/schedules/{id}/pause"), "", Some(&me)).0, 303);
    assert_eq!(http(&addr, "GET", "/api/schedules/nightly", None).1["state"], "paused");
    assert_eq!(form_post(&addr, &format!("/schedules/{id}/pause"), "", None).0, 403);
    assert_eq!(form_post(&addr, &format!("/schedules/{id}/resume"), "", Some(&me)).0, 303);
    assert_eq!(http(&addr, "GET", "/api/schedules/nightly", None).1["state"], "active");
    let (status, _, page) =
        http_raw(&addr, "GET", &format!("/schedules/{id}/delete"), None, &format!("Host: {addr}"));
    assert_eq!(status, 200);
    assert!(page.contains("Delete “nightly”?"), "a confirmation comes first: {page}");
    assert_eq!(form_post(&addr, &format!("/schedules/{id}/delete"), "", Some(&me)).0, 303);
    assert_eq!(http(&addr, "GET", "/api/schedules", None).1["count"], 0);

    // A run that waits (nobody offers its method) is cancelled from its page.
    let body =
        json!({"name": "waits", "trigger": "0 0 1 1 *", "target": {"handler_id": "nobody", "method": "m"}});
    assert_eq!(http(&addr, "POST", "/api/schedules", Some(&body.to_string())).0, 201);
    let (status, run) = http(&addr, "POST", "/api/schedules/waits/run", None);
    assert_eq!(status, 202, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (_, _, page) = http_raw(&addr, "GET", &format!("/runs/{run_id}"), None, &format!("Host: {addr}"));
    assert!(page.contains(&format!("action=\"/runs/{run_id}/cancel\"")), "{page}");
    assert_eq!(form_post(&addr, &format!("/runs/{run_id}/cancel"), "", None).0, 403);
    let (status, headers, _) = form_post(&addr, &format!("/runs/{run_id}/cancel"), "", Some(&me));
    assert_eq!(status, 303);
    assert!(headers["location"].ends_with("?notice=cancelled"));
    assert_eq!(http(&addr, "GET", &format!("/api/runs/{run_id}"), None).1["state"], "cancelled");
    let (_, _, page) = http_raw(&addr, "GET", &format!("/runs/{run_id}"), None, &format!("Host: {addr}"));
    assert!(!page.contains("/cancel\""), "no cancel button once it ended");
    assert_eq!(form_post(&addr, "/schedules/waits/delete", "", Some(&me)).0, 303);

    // Every page renders; unknown ones are HTML 404s.
    for path in
        ["/schedules", "/runs", "/runs?state=failed&from=2026-01-01T00:00", "/handlers", "/schedules/new"]
    {
        let (status, _, page) = http_raw(&addr, "GET", path, None, &format!("Host: {addr}"));
        assert_eq!(status, 200, "{path}: {page}");
    }
    let (status, _, page) = http_raw(&addr, "GET", "/schedules/nope", None, &format!("Host: {addr}"));
    assert_eq!(status, 404);
    assert!(page.contains("<html") && page.contains("no schedule"), "{page}");
}

#[test]
fn assets_are_embedded_with_content_hashed_urls_and_revalidate_by_etag() {
    let root = tempfile::tempdir().unwrap();
    let (_server, addr) = serve_any_port(root.path());
    let (_, _, page) = http_raw(&addr, "GET", "/", None, &format!("Host: {addr}"));
    for name in ["app.css", "app.js"] {
        let marker = format!("/assets/{name}?v=");
        let href =
            page.split(&marker).nth(1).and_then(|r| r.split('"').next()).expect("linked with its hash");
        let path = format!("{marker}{href}");
        let (status, headers, body) = http_raw(&addr, "GET", &path, None, &format!("Host: {addr}"));
        assert_eq!(status, 200);
        assert!(body.len() > 1000, "{name} is the real file");
        assert_eq!(headers["cache-control"], "public, max-age=31536000, immutable");
        let etag = headers["etag"].clone();
        assert_eq!(etag, format!("\"{href}\""), "the ETag is the content hash");
        let again = format!("Host: {addr}\r\nIf-None-Match: {etag}");
        assert_eq!(http_raw(&addr, "GET", &path, None, &again).0, 304);
        // Without the current hash (an old tab), the file is served but must be revalidated.
        let (status, headers, _) =
            http_raw(&addr, "GET", &format!("/assets/{name}"), None, &format!("Host: {addr}"));
        assert_eq!((status, headers["cache-control"].as_str()), (200, "no-cache"));
    }
    assert_eq!(http_raw(&addr, "GET", "/assets/nope.js", None, &format!("Host: {addr}")).0, 404);
}

// ---- in a real browser ------------------------------------------------------------------------

/// A WebDriver session on chromedriver (plain HTTP/1.1 with JSON; nothing else needed).
struct Browser {
    driver: Proc,
    port: u16,
    session: String,
    shots: PathBuf,
    taken: Vec<PathBuf>,
    /// This browser's profile directory: it names our Chromium processes, should chromedriver
    /// leave any behind.
    profile: PathBuf,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(shots: PathBuf, profile: &Path) -> Browser {
        let (driver, line) = start_driver();
        let port = line
            .trim_end_matches('.')
            .rsplit(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("chromedriver port");
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            shots,
            taken: Vec::new(),
            profile: profile.to_path_buf(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_binary(), "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ]}
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session =
            v["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_string();
        b
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with its message.
    fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One WebDriver command: its `value`, or the WebDriver error (`error: message`).
    fn try_call(&mut self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = if path.starts_with("/session/") || path == "/session" {
            path.to_string()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("chromedriver answers");
        s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout set");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).expect("command sent");
        // chromedriver keeps the connection open whatever we ask: read by Content-Length.
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        let (head, body_start, length) = loop {
            let n = s.read(&mut buf).expect("answer read");
            assert!(n > 0, "chromedriver closed the connection on {method} {path}");
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("no Content-Length from chromedriver: {head}"));
                break (head, end + 4, length);
            }
        };
        while raw.len() < body_start + length {
            let n = s.read(&mut buf).expect("answer read");
            assert!(n > 0, "chromedriver closed the connection mid-answer on {method} {path}");
            raw.extend_from_slice(&buf[..n]);
        }
        let json_text = String::from_utf8_lossy(&raw[body_start..body_start + length]).into_owned();
        let text = &json_text;
        let v: Value = serde_json::from_str(&json_text)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {head}\n{text}"));
        if let Some(err) = v["value"]["error"].as_str() {
            return Err(format!("WebDriver {method} {path}: {err}: {}", v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    fn go(&mut self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn find(&mut self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    fn count(&mut self, css: &str) -> usize {
        self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css})))
            .as_array()
            .map_or(0, Vec::len)
    }

    /// Clicks the element; found again when a live update replaced it in between.
    fn click(&mut self, css: &str) {
        for _ in 0..10 {
            let e = self.find(css);
            match self.try_call("POST", &format!("/element/{e}/click"), Some(json!({}))) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{css} kept being replaced; could not click it");
    }

    fn type_into(&mut self, css: &str, text: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.call("POST", &format!("/element/{e}/value"), Some(json!({"text": text})));
    }

    fn text(&mut self, css: &str) -> String {
        for _ in 0..10 {
            let e = self.find(css);
            match self.try_call("GET", &format!("/element/{e}/text"), None) {
                Ok(v) => return v.as_str().unwrap_or("").to_string(),
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{css} kept being replaced; could not read it");
    }

    fn run(&mut self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    fn url(&mut self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or("").to_string()
    }

    /// Polls the page (the test polls; the page itself only listens) until `done` holds.
    fn wait(&mut self, what: &str, within: Duration, mut done: impl FnMut(&mut Browser) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            if Instant::now() > deadline {
                self.shot("failure");
                panic!("the page never showed {what} within {within:?} (screenshot: failure.png)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn size(&mut self, width: u32, height: u32) {
        self.call("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    fn shot(&mut self, name: &str) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap_or(""));
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        self.taken.push(path);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.try_call("DELETE", &path, None);
        }
        let _ = &self.driver; // killed by PID when dropped
        // A session that never started, or a chromedriver that died, can leave Chromium running:
        // end the processes started with this test's own profile directory, by PID.
        let marker = format!("--user-data-dir={}", self.profile.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn chromium_binary() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "chromium".into())
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

#[test]
fn in_chromium_a_schedule_is_created_fires_live_is_paused_run_now_and_deleted() {
    if !have("chromedriver") || !Path::new(&chromium_binary()).exists() {
        let msg = "the dashboard's browser test needs Debian's chromium and chromium-driver: run .ci/run, or \
                   `apt-get install -y chromium chromium-driver`";
        if std::env::var("SCHEDULEZERO_SKIP_BROWSER").is_ok_and(|v| v == "1") && std::env::var("CI").is_err()
        {
            eprintln!("SKIPPED (SCHEDULEZERO_SKIP_BROWSER=1): {msg}");
            return;
        }
        panic!("{msg}");
    }
    let root = tempfile::tempdir().unwrap();
    let (_server, addr, handler) = serve_with_v1_handler(root.path());
    let base = format!("http://{addr}");
    let shots = screenshots_dir();
    let _ = std::fs::remove_file(shots.join("failure.png")); // from an earlier failed run
    // Company for the schedule the browser creates, so every page has something to show: a
    // daily cron, APScheduler-style fields, a one-off that fails twice, one nobody can run yet.
    for body in [
        json!({"name": "hourly-report", "trigger": "0 * * * *", "timezone": "Europe/Paris",
               "target": {"handler_id": "legacy", "method": "echo", "params": {"format": "pdf"}}}),
        json!({"name": "nightly-cleanup", "trigger": {"type": "cron", "hour": "2", "minute": "30"},
               "timezone": "America/New_York", "target": {"handler_id": "legacy", "method": "value"},
               "policies": {"overlap": "skip", "retry": {"max_attempts": 5}}}),
        json!({"name": "flaky-import", "trigger": {"type": "date", "run_date": "2020-01-01T00:00:00Z"},
               "target": {"handler_id": "legacy", "method": "fail"},
               "policies": {"retry": {"max_attempts": 2, "initial_backoff": 0.2}}}),
        json!({"name": "reports-later", "trigger": "15 6 * * mon-fri",
               "target": {"handler_id": "reports", "method": "weekly"}}),
    ] {
        let (status, v) = http(&addr, "POST", "/api/schedules", Some(&body.to_string()));
        assert_eq!(status, 201, "{v}");
    }
    wait_for(&addr, "/api/runs?state=failed", Duration::from_secs(30), |v| v["count"] == 1);

    let mut b = Browser::start(shots.clone(), &root.path().join("chromium-profile"));

    // Create through the form, which checks the trigger as it is typed.
    b.go(&format!("{base}/schedules/new"));
    b.type_into("#f-name", "browser-demo");
    b.type_into("#f-handler_id", "legacy");
    b.type_into("#f-method", "echo");
    b.type_into("#f-params", r#"{"from": "the browser"}"#);
    b.type_into("#f-timezone", "Asia/Tokyo");
    b.type_into("#f-cron", "every minute please");
    b.wait("an error next to the cron field", Duration::from_secs(15), |b| !b.text("#err-cron").is_empty());
    b.type_into("#f-cron", "*/3 * * * * *");
    b.wait("the next 5 fire times", Duration::from_secs(15), |b| {
        b.count("#preview ol.fires li") == 5 && b.text("#err-cron").is_empty()
    });
    assert!(b.text("#preview").contains("+09:00"), "fires shown in the chosen zone: {}", b.text("#preview"));
    b.run("document.getElementById('preview').scrollIntoView({block: 'center'});");
    b.shot("schedule-form");
    b.click("#save");
    b.wait("the new schedule's page", Duration::from_secs(15), |b| b.url().contains("notice=created"));
    let sc = http(&addr, "GET", "/api/schedules/browser-demo", None).1;
    assert_eq!(sc["timezone"], "Asia/Tokyo", "{sc}");
    assert_eq!(sc["target"]["params"], json!({"from": "the browser"}));
    let id = sc["schedule_id"].as_str().unwrap().to_string();

    // It fires; the run shows up on the open page without a reload (a reload would lose the mark).
    b.run("window.__noReload = 'still here';");
    b.wait("the live connection", Duration::from_secs(15), |b| b.text("#live-status") == "Live");
    b.wait("a succeeded run on the open page", Duration::from_secs(30), |b| {
        b.count("#schedule-detail tr[data-id] .badge.ok") >= 1
    });
    assert_eq!(b.run("return window.__noReload;"), "still here", "the page was not reloaded");
    b.shot("schedule-detail");

    // Pause: it stops firing.
    b.click("#act-pause");
    b.wait("the paused schedule", Duration::from_secs(15), |b| b.url().contains("notice=paused"));
    assert_eq!(http(&addr, "GET", "/api/schedules/browser-demo", None).1["state"], "paused");
    assert!(b.text("h1").contains("paused"), "{}", b.text("h1"));
    // A run already started before the pause may still finish: wait for quiet, then count.
    std::thread::sleep(Duration::from_secs(1));
    let runs_of = |addr: &str| {
        http(addr, "GET", &format!("/api/runs?schedule={id}"), None).1["count"].as_u64().unwrap_or(0)
    };
    let paused_count = runs_of(&addr);

    // Run now, while paused: one new run, which succeeds and is on the page.
    b.click("#act-run");
    b.wait("the queued notice", Duration::from_secs(15), |b| b.url().contains("notice=run"));
    let latest = wait_for(&addr, &format!("/api/runs?schedule={id}&limit=1"), Duration::from_secs(30), |v| {
        v["runs"][0]["state"] == "succeeded" && runs_of(&addr) == paused_count + 1
    });
    let run_id = latest["runs"][0]["run_id"].as_str().unwrap_or("-").to_string();
    b.wait("the run-now run on the page", Duration::from_secs(30), |b| {
        b.count(&format!("#schedule-detail tr[data-id=\"{run_id}\"] .badge.ok")) == 1
    });
    assert_eq!(runs_of(&addr), paused_count + 1, "paused: only the run-now run was added");

    // The other pages.
    b.go(&format!("{base}/"));
    b.wait("the overview", Duration::from_secs(10), |b| b.count("#ov-hour .bars li") >= 1);
    assert!(b.text("#ov-failures").contains("flaky-import"), "recent failures listed");
    assert!(b.text("#ov-next").contains("hourly-report"), "next fires listed");
    b.shot("overview");
    b.go(&format!("{base}/schedules"));
    b.shot("schedules");
    // Search as you type: the list narrows without a reload, the address follows.
    b.run("window.__noReload = 'search';");
    b.type_into("#f-q", "hourly");
    b.wait("the list narrowed to the match", Duration::from_secs(15), |b| {
        b.count("#schedules-table tr[data-id]") == 1 && b.text("#schedules-table").contains("hourly-report")
    });
    assert!(b.url().ends_with("/schedules?q=hourly"), "{}", b.url());
    assert_eq!(b.run("return window.__noReload;"), "search", "the page was not reloaded");
    b.go(&format!("{base}/schedules/{id}/edit"));
    b.wait("the edit form's preview", Duration::from_secs(15), |b| b.count("#preview ol.fires li") == 5);
    b.shot("schedule-edit");
    b.go(&format!("{base}/runs"));
    b.wait("runs listed", Duration::from_secs(10), |b| b.count("#runs-table tr[data-id]") >= 2);
    b.shot("runs");
    // The runs page too shows new runs as they come, without a reload.
    b.run("window.__noReload = 'runs page';");
    let rows = b.count("#runs-table tr[data-id]");
    assert_eq!(http(&addr, "POST", "/api/schedules/hourly-report/run", None).0, 202);
    b.wait("the new run on the runs page", Duration::from_secs(30), |b| {
        b.count("#runs-table tr[data-id]") == rows + 1 && b.count("#runs-table tr.new .badge.ok") == 1
    });
    assert_eq!(b.run("return window.__noReload;"), "runs page", "the page was not reloaded");
    b.go(&format!("{base}/runs?schedule=browser-demo"));
    b.click("#runs-table tr[data-id] a[href^='/runs/']");
    b.wait("a run's detail", Duration::from_secs(10), |b| b.url().contains("/runs/"));
    assert!(b.text("#run-detail").contains("Attempts"), "attempts shown");
    assert!(b.text("#run-detail").contains("the browser"), "params shown");
    b.shot("run-detail");
    b.go(&format!("{base}/runs?state=failed"));
    b.click("#runs-table tr[data-id] a[href^='/runs/']");
    b.wait("a failed run's detail", Duration::from_secs(10), |b| b.url().contains("/runs/"));
    assert_eq!(b.count("#run-detail tbody tr"), 2, "both attempts listed");
    assert!(b.text("#run-detail").contains("Error"), "the error shown");
    b.shot("run-detail-failed");
    b.go(&format!("{base}/handlers"));
    assert!(b.text("#handlers").contains("legacy"));
    assert!(b.text("#handlers").contains("Connected"));
    b.shot("handlers");

    // Delete, after the confirmation.
    b.go(&format!("{base}/schedules/{id}"));
    b.click("#act-delete");
    b.wait("the confirmation", Duration::from_secs(10), |b| b.count("#confirm-delete") == 1);
    b.shot("schedule-delete");
    b.click("#confirm-delete");
    b.wait("the list after the delete", Duration::from_secs(15), |b| b.url().contains("notice=deleted"));
    assert_eq!(http(&addr, "GET", "/api/schedules/browser-demo", None).0, 404);
    assert!(b.text("main").contains("Schedule deleted."));

    // A handler that goes away shows as disconnected on the open page.
    b.go(&format!("{base}/handlers"));
    b.run("window.__noReload = 'handlers';");
    drop(handler);
    b.wait("the handler disconnected", Duration::from_secs(60), |b| {
        b.text("#handlers").contains("Disconnected")
    });
    assert_eq!(b.run("return window.__noReload;"), "handlers", "the page was not reloaded");
    b.shot("handlers-disconnected");

    // Phone width.
    b.size(375, 812);
    b.go(&format!("{base}/"));
    b.shot("overview-375px");
    let overflow = b.run("return document.documentElement.scrollWidth - window.innerWidth;");
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "nothing wider than a 375 px screen: {overflow}");
    b.go(&format!("{base}/runs"));
    b.shot("runs-375px");
    b.go(&format!("{base}/schedules/new"));
    b.shot("schedule-form-375px");
    let overflow = b.run("return document.documentElement.scrollWidth - window.innerWidth;");
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "the form fits 375 px: {overflow}");

    let taken = std::mem::take(&mut b.taken);
    drop(b);
    // Straight to stderr, past the test harness's capture: the list shows in every run's log.
    let mut list = format!("dashboard screenshots ({}) in {}\n", taken.len(), shots.display());
    for t in taken {
        list.push_str(&format!("  {}\n", t.display()));
    }
    let _ = std::io::stderr().write_all(list.as_bytes());
}

/// Starts chromedriver on a port of the system's choosing: the driver and its "started" line.
/// Asked for port 0, chromedriver binds IPv6 first and then IPv4 on the same number, which another
/// process (a test running beside this one) may hold: it then exits saying so, and is started
/// again.
fn start_driver() -> (Proc, String) {
    for _ in 0..5 {
        let mut cmd = Command::new("chromedriver");
        cmd.arg("--port=0");
        let mut driver = Proc::spawn(cmd);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = driver.drain();
            if let Some(line) = seen.iter().find(|l| l.contains("started successfully on port")) {
                let line = line.clone();
                return (driver, line);
            }
            if seen.iter().any(|l| l.contains("port not available")) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "chromedriver did not start within 30 s: {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("chromedriver found no free port in 5 attempts");
}
