//! The create and edit form of a schedule. The same form works three ways: without JavaScript
//! (post → redirect, or the form again with each error next to its field, and a Preview button
//! that shows the next fires without saving); with the script, which validates as you type and
//! previews through `POST /api/triggers/preview`; and both read the fields the same way, so what
//! the preview accepts is what the save accepts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono_tz::Tz;
use schedulezero_core::policy::Policies;
use schedulezero_core::schedule::{Schedule, ScheduleState, Target};
use schedulezero_core::time::format_in_zone;
use schedulezero_core::trigger::{Trigger, parse_value, preview};
use schedulezero_engine::{EngineError, ScheduleSpec};
use schedulezero_store::StoreError;
use serde_json::{Map, Value, json};

use super::html::{self, Nav, esc};
use super::{PageError, PageResult, check_form_origin, form_pairs, see_other};
use crate::http::native::schedules::resolve;
use crate::http::views::handler_entries;
use crate::http::{ApiError, AppState};

type St = State<Arc<AppState>>;

/// What the form's fields hold, as text (what the person typed is shown back as typed).
#[derive(Clone, Default, PartialEq)]
struct Fields {
    name: String,
    kind: String,
    cron: String,
    every: String,
    unit: String,
    run_date: String,
    trigger_json: String,
    timezone: String,
    handler_id: String,
    method: String,
    params: String,
    overlap: String,
    misfire: String,
    grace: String,
    max_attempts: String,
    timeout: String,
    paused: bool,
}

impl Fields {
    fn defaults(zone: Tz) -> Fields {
        Fields {
            kind: "cron".into(),
            cron: "*/30 * * * * *".into(),
            every: "60".into(),
            unit: "seconds".into(),
            timezone: zone.name().into(),
            params: "{}".into(),
            overlap: "allow".into(),
            misfire: "coalesce".into(),
            grace: "60".into(),
            max_attempts: "3".into(),
            timeout: "300".into(),
            ..Fields::default()
        }
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Fields {
        let mut f = Fields::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "name" => &mut f.name,
                "kind" => &mut f.kind,
                "cron" => &mut f.cron,
                "every" => &mut f.every,
                "unit" => &mut f.unit,
                "run_date" => &mut f.run_date,
                "trigger_json" => &mut f.trigger_json,
                "timezone" => &mut f.timezone,
                "handler_id" => &mut f.handler_id,
                "method" => &mut f.method,
                "params" => &mut f.params,
                "overlap" => &mut f.overlap,
                "misfire" => &mut f.misfire,
                "grace" => &mut f.grace,
                "max_attempts" => &mut f.max_attempts,
                "timeout" => &mut f.timeout,
                "paused" => {
                    f.paused = true;
                    continue;
                }
                _ => continue,
            };
            // Browsers send a textarea's line ends as CRLF: compare and show them as typed.
            *slot = v.replace("\r\n", "\n");
        }
        f
    }

    /// The form as a schedule fills it (the edit form).
    fn of_schedule(sc: &Schedule) -> Fields {
        let zone = sc.trigger.zone();
        let mut f = Fields::defaults(zone);
        f.name = sc.name.clone();
        let spec = sc.trigger.to_json();
        let plain = spec.get("jitter").is_none() && spec.get("end_time").is_none();
        match spec["type"].as_str() {
            Some("cron") if plain && spec.get("expression").is_some() && spec.get("start_time").is_none() => {
                f.kind = "cron".into();
                f.cron = spec["expression"].as_str().unwrap_or("").into();
            }
            Some("interval") if plain => {
                f.kind = "interval".into();
                let secs = spec["seconds"].as_f64().unwrap_or(60.0);
                let (every, unit) = [(86_400.0, "days"), (3600.0, "hours"), (60.0, "minutes")]
                    .into_iter()
                    .find(|(n, _)| secs >= *n && (secs / n).fract() == 0.0)
                    .map_or((secs, "seconds"), |(n, u)| (secs / n, u));
                f.every = format!("{every}");
                f.unit = unit.into();
            }
            Some("date") if plain => {
                f.kind = "date".into();
                // The local wall time, as a datetime-local input shows it.
                f.run_date =
                    spec["run_date"].as_str().map(|d| d.chars().take(19).collect()).unwrap_or_default();
            }
            _ => {
                f.kind = "json".into();
                let mut spec = spec.clone();
                if let Some(o) = spec.as_object_mut() {
                    o.remove("timezone");
                }
                f.trigger_json = serde_json::to_string_pretty(&spec).unwrap_or_default();
            }
        }
        f.handler_id = sc.target.handler_id.clone();
        f.method = sc.target.method.clone();
        f.params = serde_json::to_string_pretty(&sc.target.params).unwrap_or_else(|_| "{}".into());
        let p = sc.policies.to_json();
        f.overlap = p["overlap"].as_str().unwrap_or("allow").into();
        f.misfire = p["misfire"]["policy"].as_str().unwrap_or("coalesce").into();
        if let Some(g) = p["misfire"]["grace"].as_f64() {
            f.grace = format!("{g}");
        }
        f.max_attempts = p["retry"]["max_attempts"].to_string();
        f.timeout = p["timeout"].as_f64().map(|t| format!("{t}")).unwrap_or_default();
        f
    }

    /// The trigger fields only: an edit that leaves them as they were keeps the trigger (and its
    /// start) instead of restarting it from now.
    fn trigger_part(&self) -> (&str, &str, &str, &str, &str, &str, &str) {
        (&self.kind, &self.cron, &self.every, &self.unit, &self.run_date, &self.trigger_json, &self.timezone)
    }
}

/// Errors by field name.
type Errors = BTreeMap<&'static str, String>;

/// What a valid form makes.
struct Valid {
    name: Option<String>,
    trigger: Trigger,
    target: Target,
    policies: Policies,
}

fn number(errors: &mut Errors, field: &'static str, text: &str, what: &str) -> Option<f64> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Some(n),
        _ => {
            errors.insert(field, format!("{what} must be a number above zero, got '{}'", text.trim()));
            None
        }
    }
}

/// The trigger JSON the fields describe (the script builds the same).
fn trigger_value(f: &Fields, errors: &mut Errors) -> Option<Value> {
    match f.kind.as_str() {
        "cron" => {
            if f.cron.trim().is_empty() {
                errors.insert(
                    "cron",
                    "give a crontab expression, e.g. '0 9 * * mon-fri' or '*/10 * * * * *'".into(),
                );
                return None;
            }
            Some(Value::String(f.cron.trim().to_string()))
        }
        "interval" => {
            let n = number(errors, "every", &f.every, "The interval")?;
            let unit = match f.unit.as_str() {
                u @ ("seconds" | "minutes" | "hours" | "days" | "weeks") => u,
                other => {
                    errors.insert("every", format!("unknown unit '{other}'"));
                    return None;
                }
            };
            Some(json!({"type": "interval", unit: n}))
        }
        "date" => {
            let d = f.run_date.trim();
            if d.is_empty() {
                errors.insert("run_date", "give the date and time to run at".into());
                return None;
            }
            // datetime-local may omit the seconds.
            let d = if d.len() == 16 { format!("{d}:00") } else { d.to_string() };
            Some(json!({"type": "date", "run_date": d}))
        }
        "json" => match serde_json::from_str::<Value>(&f.trigger_json) {
            Ok(v @ (Value::Object(_) | Value::String(_))) => Some(v),
            Ok(_) => {
                errors.insert("trigger_json", "must be a JSON object (or a crontab string)".into());
                None
            }
            Err(e) => {
                errors.insert("trigger_json", format!("not valid JSON: {e}"));
                None
            }
        },
        other => {
            errors.insert("kind", format!("choose a kind of trigger (got '{other}')"));
            None
        }
    }
}

/// The field a trigger error belongs to.
fn trigger_field(kind: &str) -> &'static str {
    match kind {
        "interval" => "every",
        "date" => "run_date",
        "json" => "trigger_json",
        _ => "cron",
    }
}

fn validate(s: &AppState, f: &Fields, keep: Option<&Trigger>) -> Result<Valid, Errors> {
    let mut errors = Errors::new();
    let zone = match f.timezone.trim() {
        "" => None,
        z => match z.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.insert(
                    "timezone",
                    format!("'{z}' is not an IANA time zone name (e.g. Europe/Paris, UTC)"),
                );
                None
            }
        },
    };
    let trigger = match keep {
        Some(t) => Some(t.clone()),
        None => trigger_value(f, &mut errors).and_then(|v| {
            if errors.contains_key("timezone") {
                return None;
            }
            parse_value(v, zone, &s.engine.parse_context())
                .map_err(|e| errors.insert(trigger_field(&f.kind), e.to_string()))
                .ok()
        }),
    };
    for (field, v, what) in
        [("handler_id", &f.handler_id, "the handler id"), ("method", &f.method, "the method")]
    {
        if v.trim().is_empty() {
            errors.insert(field, format!("give {what} to call"));
        }
    }
    let params = match f.params.trim() {
        "" => Some(Value::Object(Map::new())),
        text => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Some(v),
            Ok(_) => {
                errors.insert("params", "must be a JSON object, e.g. {\"report\": \"daily\"}".into());
                None
            }
            Err(e) => {
                errors.insert("params", format!("not valid JSON: {e}"));
                None
            }
        },
    };
    let mut policies = json!({"overlap": f.overlap.trim()});
    policies["misfire"] = match f.misfire.as_str() {
        "skip" => match number(&mut errors, "grace", &f.grace, "The grace time") {
            Some(g) => json!({"policy": "skip", "grace": g}),
            None => json!({"policy": "coalesce"}),
        },
        other => json!({"policy": other}),
    };
    match f.max_attempts.trim().parse::<u32>() {
        Ok(n) if n >= 1 => policies["retry"] = json!({"max_attempts": n}),
        _ => {
            errors.insert("max_attempts", "must be a whole number, 1 or more (1 = never retry)".into());
        }
    }
    if let Some(t) = number(&mut errors, "timeout", &f.timeout, "The timeout") {
        policies["timeout"] = json!(t);
    }
    let policies = match Policies::parse(&policies) {
        Ok(p) => Some(p),
        Err(e) => {
            let field = match e.to_string() {
                m if m.contains("overlap") => "overlap",
                m if m.contains("misfire") => "misfire",
                m if m.contains("retry") => "max_attempts",
                _ => "timeout",
            };
            errors.entry(field).or_insert(e.to_string());
            None
        }
    };
    match (trigger, params, policies) {
        (Some(trigger), Some(params), Some(policies)) if errors.is_empty() => Ok(Valid {
            name: Some(f.name.trim().to_string()).filter(|n| !n.is_empty()),
            trigger,
            target: Target { handler_id: f.handler_id.trim().into(), method: f.method.trim().into(), params },
            policies,
        }),
        _ => Err(errors),
    }
}

/// Where the form stands.
enum Mode<'a> {
    New,
    Edit(&'a Schedule),
}

/// The form page. `preview` lists the next fires when the trigger is valid.
async fn render(
    s: &AppState,
    mode: Mode<'_>,
    f: &Fields,
    errors: &Errors,
    general: Option<&str>,
    fires: Option<(String, Vec<String>)>,
) -> Result<String, PageError> {
    let (title, action, submit) = match &mode {
        Mode::New => ("New schedule".to_string(), "/schedules/new".to_string(), "Create schedule"),
        Mode::Edit(sc) => (format!("Edit {}", sc.name), format!("/schedules/{}/edit", sc.id), "Save changes"),
    };
    let mut out = String::new();
    match &mode {
        Mode::New => out.push_str("<p class=\"crumbs\"><a href=\"/schedules\">Schedules</a> /</p>"),
        Mode::Edit(sc) => {
            let _ = write!(
                out,
                "<p class=\"crumbs\"><a href=\"/schedules\">Schedules</a> / <a href=\"/schedules/{}\">{}</a> /</p>",
                sc.id,
                esc(&sc.name)
            );
        }
    }
    let _ = write!(out, "<h1>{}</h1>", esc(&title));
    if !errors.is_empty() || general.is_some() {
        out.push_str("<div class=\"error-summary\" role=\"alert\" tabindex=\"-1\" id=\"error-summary\"><h2>Please fix:</h2><ul>");
        if let Some(g) = general {
            let _ = write!(out, "<li>{}</li>", esc(g));
        }
        for (field, msg) in errors {
            let _ = write!(
                out,
                "<li><a href=\"#f-{field}\">{}</a></li>",
                esc(&format!("{}: {msg}", label_of(field)))
            );
        }
        out.push_str("</ul></div>");
    }
    // Known handlers and methods, offered as suggestions.
    let mut handlers = String::new();
    let mut methods = String::new();
    let mut seen_methods = std::collections::BTreeSet::new();
    for h in handler_entries(s).await? {
        let _ = write!(handlers, "<option value=\"{}\">", esc(h["id"].as_str().unwrap_or("")));
        for m in h["methods"].as_array().into_iter().flatten().filter_map(|m| m.as_str()) {
            if seen_methods.insert(m.to_string()) {
                let _ = write!(methods, "<option value=\"{}\">", esc(m));
            }
        }
    }
    let mut zones = String::new();
    for tz in chrono_tz::TZ_VARIANTS {
        let _ = write!(zones, "<option value=\"{}\">", tz.name());
    }
    let field = |name: &'static str, label: &str, input: String, hint: &str| -> String {
        let err = errors.get(name);
        format!(
            "<div class=\"field{cls}\" data-field=\"{name}\"><label for=\"f-{name}\">{label}</label>{input}\
             {hint}<p class=\"field-error\" id=\"err-{name}\" aria-live=\"polite\">{msg}</p></div>",
            cls = if err.is_some() { " invalid" } else { "" },
            hint = if hint.is_empty() {
                String::new()
            } else {
                format!("<p class=\"hint\" id=\"hint-{name}\">{hint}</p>")
            },
            msg = err.map(|m| esc(m)).unwrap_or_default(),
        )
    };
    let attrs = |name: &'static str, hint: bool| -> String {
        let mut described = format!("err-{name}");
        if hint {
            described = format!("hint-{name} {described}");
        }
        format!(
            "id=\"f-{name}\" name=\"{name}\" aria-describedby=\"{described}\"{}",
            if errors.contains_key(name) { " aria-invalid=\"true\"" } else { "" }
        )
    };
    let select = |name: &'static str, current: &str, options: &[(&str, &str)]| -> String {
        let mut o = format!("<select {}>", attrs(name, false));
        for (value, label) in options {
            let sel = if *value == current { " selected" } else { "" };
            let _ = write!(o, "<option value=\"{value}\"{sel}>{label}</option>");
        }
        o.push_str("</select>");
        o
    };
    let _ = write!(
        out,
        "<form class=\"schedule-form\" method=\"post\" action=\"{action}\" novalidate data-schedule-form>\
         <section class=\"card\" aria-labelledby=\"fs-what\"><h2 id=\"fs-what\">What to run</h2><div class=\"fields\">"
    );
    out.push_str(&field(
        "name",
        "Name",
        format!(
            "<input {} value=\"{}\" autocomplete=\"off\" spellcheck=\"false\">",
            attrs("name", true),
            esc(&f.name)
        ),
        "Unique among live schedules. Left empty, the schedule's id is its name.",
    ));
    out.push_str(&field(
        "handler_id",
        "Handler",
        format!(
            "<input {} value=\"{}\" list=\"dl-handlers\" required autocomplete=\"off\" spellcheck=\"false\"><datalist id=\"dl-handlers\">{handlers}</datalist>",
            attrs("handler_id", false),
            esc(&f.handler_id)
        ),
        "",
    ));
    out.push_str(&field(
        "method",
        "Method",
        format!(
            "<input {} value=\"{}\" list=\"dl-methods\" required autocomplete=\"off\" spellcheck=\"false\"><datalist id=\"dl-methods\">{methods}</datalist>",
            attrs("method", false),
            esc(&f.method)
        ),
        "",
    ));
    out.push_str(&field(
        "params",
        "Params (JSON object)",
        format!(
            "<textarea {} rows=\"4\" spellcheck=\"false\">{}</textarea>",
            attrs("params", false),
            esc(&f.params)
        ),
        "",
    ));
    out.push_str("</div></section>");

    let _ = write!(
        out,
        "<section class=\"card\" aria-labelledby=\"fs-when\"><h2 id=\"fs-when\">When</h2><div class=\"fields\">"
    );
    out.push_str(&field(
        "kind",
        "Kind of trigger",
        select(
            "kind",
            &f.kind,
            &[
                ("cron", "Cron expression"),
                ("interval", "Every …"),
                ("date", "Once, at a date"),
                ("json", "Trigger JSON (advanced)"),
            ],
        ),
        "",
    ));
    let kind_attr = |k: &str| if f.kind == k { "" } else { " data-inactive" };
    let _ = write!(out, "<div class=\"kind\" data-kind=\"cron\"{}>", kind_attr("cron"));
    out.push_str(&field(
        "cron",
        "Cron expression",
        format!("<input {} value=\"{}\" autocomplete=\"off\" spellcheck=\"false\" class=\"mono\">", attrs("cron", true), esc(&f.cron)),
        "minute hour day month weekday, with an optional leading seconds field: <code>0 9 * * mon-fri</code>, <code>*/10 * * * * *</code>",
    ));
    let _ = write!(
        out,
        "</div><div class=\"kind\" data-kind=\"interval\"{}><div class=\"inline\">",
        kind_attr("interval")
    );
    out.push_str(&field(
        "every",
        "Every",
        format!("<input {} value=\"{}\" inputmode=\"decimal\">", attrs("every", false), esc(&f.every)),
        "",
    ));
    out.push_str(&field(
        "unit",
        "Unit",
        select(
            "unit",
            &f.unit,
            &[
                ("seconds", "seconds"),
                ("minutes", "minutes"),
                ("hours", "hours"),
                ("days", "days"),
                ("weeks", "weeks"),
            ],
        ),
        "",
    ));
    let _ = write!(out, "</div></div><div class=\"kind\" data-kind=\"date\"{}>", kind_attr("date"));
    out.push_str(&field(
        "run_date",
        "Date and time (in the time zone below)",
        format!(
            "<input type=\"datetime-local\" step=\"1\" {} value=\"{}\">",
            attrs("run_date", false),
            esc(&f.run_date)
        ),
        "",
    ));
    let _ = write!(out, "</div><div class=\"kind\" data-kind=\"json\"{}>", kind_attr("json"));
    out.push_str(&field(
        "trigger_json",
        "Trigger JSON",
        format!(
            "<textarea {} rows=\"5\" spellcheck=\"false\" class=\"mono\">{}</textarea>",
            attrs("trigger_json", true),
            esc(&f.trigger_json)
        ),
        "As in the API: <code>{\"type\": \"cron\", \"hour\": \"2\", \"minute\": \"30\"}</code> (APScheduler fields), \
         <code>\"jitter\"</code>, <code>\"start_time\"</code>, <code>\"end_time\"</code>…",
    ));
    out.push_str("</div>");
    out.push_str(&field(
        "timezone",
        "Time zone",
        format!(
            "<input {} value=\"{}\" list=\"dl-zones\" autocomplete=\"off\" spellcheck=\"false\"><datalist id=\"dl-zones\">{zones}</datalist>",
            attrs("timezone", true),
            esc(&f.timezone)
        ),
        "An IANA name such as Europe/Paris or UTC; the trigger's times are read in it.",
    ));
    // The preview: filled by the server on "Preview", kept current by the script as you type.
    let preview_html = match &fires {
        Some((desc, list)) if !list.is_empty() => format!(
            "<p class=\"dim\">{}</p><ol class=\"fires\">{}</ol>",
            esc(desc),
            list.iter().map(|t| format!("<li>{}</li>", esc(t))).collect::<String>()
        ),
        Some((desc, _)) => format!("<p class=\"dim\">{}: no fire time ahead.</p>", esc(desc)),
        None => "<p class=\"dim\">Press Preview (or just type) to see the next fire times.</p>".into(),
    };
    let _ = write!(
        out,
        "<section class=\"preview\" aria-labelledby=\"pv-h\"><h3 id=\"pv-h\">Next 5 fire times</h3>\
         <div id=\"preview\" aria-live=\"polite\">{preview_html}</div></section></div></section>"
    );

    let _ = write!(
        out,
        "<section class=\"card\" aria-labelledby=\"fs-pol\"><h2 id=\"fs-pol\">Policies</h2><div class=\"fields\">"
    );
    out.push_str(&field(
        "overlap",
        "When a slot fires while a run is still active",
        select(
            "overlap",
            &f.overlap,
            &[
                ("allow", "Run anyway (allow)"),
                ("skip", "Skip the slot"),
                ("queue_one", "Queue one run"),
                ("replace", "Cancel the active run (replace)"),
            ],
        ),
        "",
    ));
    out.push_str(&field(
        "misfire",
        "Slots missed while the server was down",
        select(
            "misfire",
            &f.misfire,
            &[
                ("coalesce", "Run once (coalesce)"),
                ("run_all", "Run every one"),
                ("skip", "Skip those older than the grace time"),
            ],
        ),
        "",
    ));
    out.push_str(&field(
        "grace",
        "Grace time, seconds (for skip)",
        format!("<input {} value=\"{}\" inputmode=\"decimal\">", attrs("grace", false), esc(&f.grace)),
        "",
    ));
    out.push_str(&field(
        "max_attempts",
        "Attempts in all",
        format!(
            "<input {} value=\"{}\" inputmode=\"numeric\">",
            attrs("max_attempts", true),
            esc(&f.max_attempts)
        ),
        "1 means never retry; retries back off exponentially.",
    ));
    out.push_str(&field(
        "timeout",
        "Timeout per attempt, seconds",
        format!("<input {} value=\"{}\" inputmode=\"decimal\">", attrs("timeout", false), esc(&f.timeout)),
        "",
    ));
    if matches!(mode, Mode::New) {
        let _ = write!(
            out,
            "<div class=\"field check\"><input type=\"checkbox\" id=\"f-paused\" name=\"paused\" value=\"1\"{}>\
             <label for=\"f-paused\">Create it paused</label></div>",
            if f.paused { " checked" } else { "" }
        );
    }
    let cancel = match &mode {
        Mode::New => "/schedules".to_string(),
        Mode::Edit(sc) => format!("/schedules/{}", sc.id),
    };
    let _ = write!(
        out,
        "</div></section><div class=\"toolbar sticky\"><button class=\"primary\" type=\"submit\" name=\"action\" value=\"save\" id=\"save\">{submit}</button>\
         <button type=\"submit\" name=\"action\" value=\"preview\" id=\"preview-button\">Preview</button>\
         <a class=\"button\" href=\"{cancel}\">Cancel</a></div></form>"
    );
    Ok(out)
}

fn label_of(field: &str) -> &'static str {
    match field {
        "name" => "Name",
        "kind" => "Kind of trigger",
        "cron" => "Cron expression",
        "every" => "Every",
        "unit" => "Unit",
        "run_date" => "Date and time",
        "trigger_json" => "Trigger JSON",
        "timezone" => "Time zone",
        "handler_id" => "Handler",
        "method" => "Method",
        "params" => "Params",
        "overlap" => "Overlap",
        "misfire" => "Misfire",
        "grace" => "Grace time",
        "max_attempts" => "Attempts",
        "timeout" => "Timeout",
        _ => "Field",
    }
}

fn fires_of(s: &AppState, t: &Trigger) -> (String, Vec<String>) {
    let fires = preview(t, None, 5, s.engine.clock().now()).unwrap_or_default();
    (t.describe(), fires.iter().map(|x| format_in_zone(*x, t.zone())).collect())
}

fn form_page(s: &AppState, title: &str, body: String, status: StatusCode) -> axum::response::Response {
    let mut r = html::page(title, Nav::Schedules, &s.instance_name, false, &body);
    *r.status_mut() = status;
    r
}

pub(super) async fn new_page(State(s): St) -> PageResult {
    let f = Fields::defaults(s.engine.config().local_zone);
    let body = render(&s, Mode::New, &f, &Errors::new(), None, None).await?;
    Ok(form_page(&s, "New schedule", body, StatusCode::OK))
}

pub(super) async fn edit_page(State(s): St, Path(reference): Path<String>) -> PageResult {
    let sc = editable(&s, &reference).await?;
    let f = Fields::of_schedule(&sc);
    let fires = Some(fires_of(&s, &sc.trigger));
    let body = render(&s, Mode::Edit(&sc), &f, &Errors::new(), None, fires).await?;
    Ok(form_page(&s, &format!("Edit {}", sc.name), body, StatusCode::OK))
}

async fn editable(s: &AppState, reference: &str) -> Result<Schedule, PageError> {
    let sc = resolve(s, reference).await?;
    if sc.state == ScheduleState::Finished {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Schedule '{}' is finished (its trigger has no more fires); create a new one instead.",
                sc.name
            ),
        )
        .into());
    }
    Ok(sc)
}

fn wants_preview(body: &[u8]) -> bool {
    form_pairs(body).iter().any(|(k, v)| k == "action" && v == "preview")
}

/// A store or engine refusal, placed on the field it concerns when there is one.
fn refusal(e: EngineError, errors: &mut Errors) -> Result<Option<String>, PageError> {
    match &e {
        EngineError::Store(StoreError::DuplicateName(_)) => {
            errors.insert("name", format!("{e}; choose another name"));
            Ok(None)
        }
        EngineError::Trigger(_) | EngineError::Policy(_) | EngineError::Invalid { .. } => {
            Ok(Some(e.to_string()))
        }
        _ => Err(e.into()),
    }
}

pub(super) async fn create(State(s): St, headers: HeaderMap, body: Bytes) -> PageResult {
    check_form_origin(&headers)?;
    let f = Fields::from_pairs(form_pairs(&body));
    let preview_only = wants_preview(&body);
    let valid = validate(&s, &f, None);
    let (mut errors, mut general, mut fires) = (Errors::new(), None, None);
    match valid {
        Ok(v) if preview_only => fires = Some(fires_of(&s, &v.trigger)),
        Ok(v) => {
            let mut spec = ScheduleSpec::new(v.trigger, v.target).policies(v.policies);
            spec.paused = f.paused;
            if let Some(name) = v.name {
                spec = spec.name(name);
            }
            match s.engine.add_schedule(spec).await {
                Ok(sc) => return Ok(see_other(&format!("/schedules/{}?notice=created", sc.id))),
                Err(e) => general = refusal(e, &mut errors)?,
            }
        }
        Err(e) => errors = e,
    }
    let status = status_of(&errors, general.as_deref());
    let page = render(&s, Mode::New, &f, &errors, general.as_deref(), fires).await?;
    Ok(form_page(&s, "New schedule", page, status).into_response())
}

/// 200 for a form shown again (a preview), 422 for one refused.
fn status_of(errors: &Errors, general: Option<&str>) -> StatusCode {
    if errors.is_empty() && general.is_none() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY }
}

pub(super) async fn update(
    State(s): St,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    check_form_origin(&headers)?;
    let sc = editable(&s, &reference).await?;
    let f = Fields::from_pairs(form_pairs(&body));
    let before = Fields::of_schedule(&sc);
    let keep = (f.trigger_part() == before.trigger_part()).then_some(&sc.trigger);
    let preview_only = wants_preview(&body);
    let (mut errors, mut general, mut fires) = (Errors::new(), None, None);
    match validate(&s, &f, keep) {
        Ok(v) if preview_only => fires = Some(fires_of(&s, &v.trigger)),
        Ok(v) => {
            let mut spec = ScheduleSpec::new(v.trigger, v.target).policies(v.policies);
            spec.paused = sc.state == ScheduleState::Paused;
            if let Some(name) = v.name {
                spec = spec.name(name);
            }
            match s.engine.update_schedule(sc.id, spec).await {
                Ok(updated) => return Ok(see_other(&format!("/schedules/{}?notice=updated", updated.id))),
                Err(e) => general = refusal(e, &mut errors)?,
            }
        }
        Err(e) => errors = e,
    }
    let status = status_of(&errors, general.as_deref());
    let page = render(&s, Mode::Edit(&sc), &f, &errors, general.as_deref(), fires).await?;
    Ok(form_page(&s, &format!("Edit {}", sc.name), page, status))
}
