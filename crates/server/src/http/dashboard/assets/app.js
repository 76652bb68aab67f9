// ScheduleZero dashboard script: enhancements only, every page works without it.
// - Live pages: one EventSource on /api/events; an event that may change what the page shows
//   re-fetches the page and swaps its [data-live] regions (no polling loop).
// - The schedule form: validates as you type and previews the next fire times through
//   POST /api/triggers/preview, the same code the save uses.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function localTitles(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) t.title = d.toLocaleString() + " (your time)";
    });
  }
  localTitles(document);

  // ---- live regions ----------------------------------------------------------------------
  var status = document.getElementById("live-status");
  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  // A busy server sends many events a second: coalesce them, one refresh per second at most.
  var refreshTimer = null, refreshing = false, again = false, lastRefresh = 0;
  function scheduleRefresh() {
    if (refreshTimer) return;
    var wait = Math.max(250, 1000 - (Date.now() - lastRefresh));
    refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, wait);
  }
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    lastRefresh = Date.now();
    var seen = {};
    document.querySelectorAll("[data-live] tr[data-id]").forEach(function (tr) { seen[tr.dataset.id] = true; });
    fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        // Keep the keyboard where it was: the focused control is found again in the new region
        // by its id, else (a link in a table) by where it points.
        var active = document.activeElement, focusSel = null;
        if (active && active !== document.body) {
          if (active.id) focusSel = "#" + CSS.escape(active.id);
          else if (active.getAttribute("href")) focusSel = 'a[href="' + CSS.escape(active.getAttribute("href")) + '"]';
        }
        document.querySelectorAll("[data-live][id]").forEach(function (old) {
          var fresh = doc.getElementById(old.id);
          if (!fresh || fresh.innerHTML === old.innerHTML) return;
          old.replaceWith(fresh);
          localTitles(fresh);
          fresh.querySelectorAll("tr[data-id]").forEach(function (tr) {
            if (!seen[tr.dataset.id]) tr.classList.add("new");
          });
        });
        if (focusSel && !document.contains(active)) {
          var f = document.querySelector(focusSel);
          if (f) f.focus();
        }
      })
      .catch(function () { /* the next event tries again */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; scheduleRefresh(); }
      });
  }

  if (document.body.hasAttribute("data-live-page") && window.EventSource) {
    var kinds = ["schedule_changed", "run_started", "run_retrying", "run_finished", "handler_up", "handler_down", "lagged"];
    var source = null;
    var connect = function () {
      if (source) return;
      source = new EventSource("/api/events");
      setStatus("connecting", "Connecting…");
      source.onopen = function () {
        setStatus("live", "Live");
        // What happened between rendering this page and subscribing (or while the stream was
        // down or the tab hidden) sent no event we could hear: catch up once.
        scheduleRefresh();
      };
      source.onerror = function () { setStatus("down", "Reconnecting…"); };
      kinds.forEach(function (k) { source.addEventListener(k, scheduleRefresh); });
    };
    var disconnect = function () {
      if (source) { source.close(); source = null; }
      setStatus("paused", "Paused");
    };
    // A browser opens at most 6 HTTP/1.1 connections to one server: hidden tabs give theirs
    // back, so many open tabs never starve the visible one.
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) disconnect(); else connect();
    });
    window.addEventListener("pagehide", disconnect);
    window.addEventListener("pageshow", function (e) { if (e.persisted && !document.hidden) connect(); });
    if (!document.hidden) connect();
  }

  // Filter forms: a changed choice applies at once (the Filter button stays for typed text).
  document.querySelectorAll("form.filters select").forEach(function (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  });

  // The name search filters as you type: the address follows (so it can be shared or reloaded)
  // and the list region is fetched again, the focus staying in the box.
  var search = document.querySelector("form.filters input[type=search]");
  if (search) {
    var searchTimer = null;
    search.addEventListener("input", function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        var params = new URLSearchParams();
        new FormData(search.form).forEach(function (v, k) { if (String(v).trim()) params.append(k, v); });
        var query = params.toString();
        history.replaceState(null, "", search.form.getAttribute("action") + (query ? "?" + query : ""));
        refresh();
      }, 300);
    });
  }

  // ---- the schedule form -----------------------------------------------------------------
  var form = document.querySelector("form[data-schedule-form]");
  if (!form) return;
  var field = function (name) { return form.elements[name]; };
  var kindSelect = field("kind");
  var previewBox = document.getElementById("preview");
  var touched = {};

  function showKind() {
    form.querySelectorAll(".kind").forEach(function (k) {
      if (k.dataset.kind === kindSelect.value) k.removeAttribute("data-inactive");
      else k.setAttribute("data-inactive", "");
    });
  }
  function setError(name, message) {
    var input = field(name), slot = document.getElementById("err-" + name);
    if (!input || !slot) return;
    var wrap = input.closest(".field");
    if (slot.textContent !== (message || "")) slot.textContent = message || "";
    if (message) { input.setAttribute("aria-invalid", "true"); wrap.classList.add("invalid"); }
    else { input.removeAttribute("aria-invalid"); wrap.classList.remove("invalid"); }
  }
  function positive(name, what) {
    var v = field(name).value.trim(), n = Number(v);
    return v !== "" && isFinite(n) && n > 0 ? null : what + " must be a number above zero";
  }
  function triggerField() {
    return { interval: "every", date: "run_date", json: "trigger_json" }[kindSelect.value] || "cron";
  }
  // The same JSON the server builds from these fields (form.rs, trigger_value).
  function triggerValue() {
    var k = kindSelect.value;
    if (k === "cron") {
      var e = field("cron").value.trim();
      if (!e) throw "give a crontab expression, e.g. '0 9 * * mon-fri' or '*/10 * * * * *'";
      return e;
    }
    if (k === "interval") {
      var err = positive("every", "The interval");
      if (err) throw err;
      var t = { type: "interval" };
      t[field("unit").value] = Number(field("every").value);
      return t;
    }
    if (k === "date") {
      var d = field("run_date").value.trim();
      if (!d) throw "give the date and time to run at";
      return { type: "date", run_date: d.length === 16 ? d + ":00" : d };
    }
    var v;
    try { v = JSON.parse(field("trigger_json").value); } catch (x) { throw "not valid JSON: " + x.message; }
    if (v === null || (typeof v !== "object" && typeof v !== "string") || Array.isArray(v)) throw "must be a JSON object (or a crontab string)";
    return v;
  }

  var previewSeq = 0;
  function validateTrigger() {
    var tf = triggerField(), trigger;
    ["cron", "every", "run_date", "trigger_json"].forEach(function (n) { if (n !== tf) setError(n, ""); });
    try { trigger = triggerValue(); } catch (msg) {
      setError(tf, String(msg));
      previewBox.innerHTML = '<p class="dim">Fix the trigger to see its next fire times.</p>';
      return;
    }
    var body = { trigger: trigger, count: 5 };
    var tz = field("timezone").value.trim();
    if (tz) body.timezone = tz;
    var seq = ++previewSeq;
    fetch("/api/triggers/preview", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, body: j }; });
    }).then(function (res) {
      if (seq !== previewSeq) return; // a newer keystroke already asked
      if (!res.ok) {
        var msg = (res.body && res.body.error && res.body.error.message) || "the server refused this trigger";
        var onZone = /timezone/.test(msg) && !/^trigger:/.test(msg);
        setError(onZone ? "timezone" : tf, msg.replace(/^trigger: /, ""));
        if (!onZone) setError("timezone", "");
        previewBox.innerHTML = '<p class="dim">Fix the trigger to see its next fire times.</p>';
        return;
      }
      setError(tf, ""); setError("timezone", "");
      var p = document.createElement("p"); p.className = "dim";
      p.textContent = res.body.description + " · " + res.body.timezone;
      var list;
      if (res.body.fires.length) {
        list = document.createElement("ol"); list.className = "fires";
        res.body.fires.forEach(function (f) { var li = document.createElement("li"); li.textContent = f; list.appendChild(li); });
      } else {
        list = document.createElement("p"); list.className = "dim"; list.textContent = "No fire time ahead.";
      }
      previewBox.replaceChildren(p, list);
    }).catch(function () { /* offline: the server still validates on save */ });
  }

  function validateOthers() {
    ["handler_id", "method"].forEach(function (n) {
      if (touched[n]) setError(n, field(n).value.trim() ? "" : "give the " + (n === "method" ? "method" : "handler id") + " to call");
    });
    var params = field("params").value.trim(), perr = "";
    if (params) {
      try { var v = JSON.parse(params); if (v === null || typeof v !== "object" || Array.isArray(v)) perr = "must be a JSON object, e.g. {\"report\": \"daily\"}"; }
      catch (x) { perr = "not valid JSON: " + x.message; }
    }
    setError("params", perr);
    var n = field("max_attempts").value.trim();
    setError("max_attempts", /^[0-9]+$/.test(n) && Number(n) >= 1 ? "" : "must be a whole number, 1 or more (1 = never retry)");
    setError("timeout", positive("timeout", "The timeout") || "");
    setError("grace", field("misfire").value === "skip" ? (positive("grace", "The grace time") || "") : "");
  }

  var timer = null;
  function onEdit(e) {
    if (e && e.target && e.target.name) touched[e.target.name] = true;
    if (e && e.target === kindSelect) showKind();
    clearTimeout(timer);
    timer = setTimeout(function () { validateOthers(); validateTrigger(); }, 300);
  }
  form.addEventListener("input", onEdit);
  form.addEventListener("change", onEdit);
  showKind();
  validateTrigger();
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();
})();
