#!/usr/bin/env python3
"""End-to-end test of the compat HTTP API (../shared/COMPAT.md §1–§3) as an existing Python script
would use it: the real `schedulezero serve`, urllib only, and a version-1 pyzmq handler executing.

Covers: date triggers (ISO string with and without offset, float and int Unix seconds), an interval
that fires at once and again, cron with seconds (APScheduler fields and our crontab string),
run_now, execution records, stats, errors, client mistakes of every kind answered 4xx with a
message naming the problem, and schedules and history surviving a restart (SIGTERM, start again).

Usage: compat_e2e.py [--bin target/debug/schedulezero] [--handler path/to/v1_handler.py] [--keep]
Exits 0 when every check held; otherwise 1 at the first that did not, with the servers' logs.
"""
import datetime
import json
import os
import sys
import time

sys.dont_write_bytecode = True
from e2e_support import Failure, Server, V1Handler, check, main, parse_time, poll, section, short  # noqa: E402

UTC = datetime.timezone.utc
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))


# A regression these checks caught once (fixed on main in 09a2377): an interval without
# start_time lost its first fire whenever a millisecond passed between parsing the trigger
# (start_time = now) and storing the schedule (first fire = first slot after the store's now), so
# it first fired a whole period late.
FIRST_FIRE_BUG = "\n    (the first-fire regression again? see the comment at the top of compat_e2e.py)"


def run(binary, handler_script, workdir, procs):
    server = Server(procs, binary, workdir).start()
    legacy = V1Handler(procs, handler_script, server.zmq, "legacy", workdir, "legacy").wait_registered()

    section("the server and the handler are up")
    status, page = server.get("/")
    check(status == 200 and "<html" in page, "GET / → 200 HTML (what clients poll)", page)
    health = server.ok("GET", "/api/health")
    check((health["status"], health["service"]) == ("ok", "ScheduleZero"), "GET /api/health", health)
    config = server.ok("GET", "/api/config")
    check(all(k in config for k in ("instance_name", "description", "admin_contact", "version")), "GET /api/config",
          config)
    h = poll("GET /api/handlers lists 'legacy' Connected", lambda: listed(server, "legacy", "Connected"), 15)
    check(
        {"echo", "sleep", "fail", "value", "gate"} <= set(h["methods"]),
        "its methods are the ones it registered",
        h,
    )
    check(h["address"].startswith("tcp://127.0.0.1:"), f"its address is the one it bound ({h['address']})", h)

    scheduling(server, legacy)
    bad_requests(server, workdir, procs, handler_script)
    restart(server, legacy)
    check(server.term() == 0, "the server exits 0 on SIGTERM")


def listed(server, handler_id, status):
    body = server.ok("GET", "/api/handlers")
    entry = next((h for h in body["handlers"] if h["id"] == handler_id), None)
    return entry is not None and entry["status"] == status, entry if entry else body


def schedule(server, job_id, trigger, method="echo", params=None):
    body = {"handler_id": "legacy", "job_method": method, "job_params": params or {"job": job_id}, "trigger": trigger,
            "job_id": job_id}
    reply = server.ok("POST", "/api/schedule", body, status=201)
    check(reply == {"status": "success", "job_id": job_id},
          f"POST /api/schedule {job_id} {json.dumps(trigger)} → 201", reply)
    return time.time()


def successes(server, job_id, n, hint=""):
    """Waits until `job_id` has at least `n` successful records; returns them oldest first."""

    def probe():
        recs = server.records(f"&job_id={job_id}")
        done = [r for r in recs if r["status"] == "success"]
        return len(done) >= n, recs

    recs = poll(f"{job_id}: {n} successful run(s) recorded", probe, 20, hint)
    return sorted(recs, key=lambda r: r["scheduled_for"])


def once(server, job_id):
    """The one successful record of a date job (a second one would be a double execution)."""
    recs = successes(server, job_id, 1)
    check(len(recs) == 1, f"{job_id} has exactly one record", recs)
    return recs[0]


def handler_calls(handler, job_id):
    return [c for c in handler.calls() if c["params"].get("job") == job_id]


def scheduling(server, legacy):
    section("date triggers")
    now = time.time()
    with_offset = datetime.datetime.fromtimestamp(round(now + 1.5, 3), IST)
    zulu = datetime.datetime.fromtimestamp(round(now + 1.25, 3), UTC)
    dates = {
        # an ISO string with an offset (+05:30: the offset must be honoured, not dropped)
        "date-iso-offset": (with_offset.isoformat(timespec="milliseconds"), with_offset.timestamp()),
        # an ISO string in UTC with a Z suffix
        "date-iso-z": (zulu.isoformat(timespec="milliseconds").replace("+00:00", "Z"), zulu.timestamp()),
        # float and int Unix seconds (UTC)
        "date-float": (round(now + 1.75, 3), round(now + 1.75, 3)),
        "date-int": (int(now) + 2, float(int(now) + 2)),
    }
    for job_id, (run_date, _) in dates.items():
        schedule(server, job_id, {"type": "date", "run_date": run_date})
    # An ISO string without an offset is the server's local time; a past one fires at once.
    schedule(server, "date-naive-past", {"type": "date", "run_date": "2020-01-02T03:04:05"})
    # One far ahead stays listed, its wall-clock time kept in the server's zone (restart check).
    schedule(server, "date-naive-future", {"type": "DATE", "run_date": "2099-06-01T12:00:00"})
    listed_future = find_schedule(server, "date-naive-future")
    check(
        listed_future["next_fire_time"].startswith("2099-06-01T12:00:00"),
        f"a naive ISO date keeps its wall-clock time in the server's zone ({listed_future['next_fire_time']})",
        listed_future,
    )

    for job_id, (run_date, expected) in dates.items():
        r = once(server, job_id)
        slot = parse_time(r["scheduled_for"])
        check(abs(slot - expected) < 0.0015,
              f"{job_id} ({json.dumps(run_date)}) ran once, for {r['scheduled_for']}", r)
        check(len(handler_calls(legacy, job_id)) == 1, f"{job_id}: the handler received exactly one call",
              handler_calls(legacy, job_id))
    r = once(server, "date-naive-past")
    check(len(handler_calls(legacy, "date-naive-past")) == 1,
          f"a past naive date fired at once ({r['scheduled_for']})", r)
    names = [s["id"] for s in server.ok("GET", "/api/schedules")["schedules"]]
    check(not set(dates) & set(names) and "date-naive-past" not in names,
          "fired date schedules are gone from GET /api/schedules", names)

    section("interval: fires at once, then every period")
    posted = schedule(server, "every-second", {"type": "interval", "seconds": 1})
    recs = successes(server, "every-second", 2)
    first, second = parse_time(recs[0]["scheduled_for"]), parse_time(recs[1]["scheduled_for"])
    check(first <= posted + 0.01, f"the first fire is at creation, not a period later ({recs[0]['scheduled_for']})",
          {"posted": posted, "records": recs}, hint=FIRST_FIRE_BUG)
    # A whole number of periods (one, unless a stalled machine made the scheduler coalesce a slot).
    check(second - first > 0.5 and abs(round(second - first) - (second - first)) < 0.0015,
          "the next fire is on the period grid", recs)
    check(len(handler_calls(legacy, "every-second")) >= 2, "the handler received ≥ 2 calls",
          handler_calls(legacy, "every-second"))
    server.ok("DELETE", "/api/schedules/every-second")
    # Numeric strings are numbers too (COMPAT §2); an hourly one fires at once and then waits.
    schedule(server, "hourly", {"type": "interval", "hours": "1"})
    successes(server, "hourly", 1, hint=FIRST_FIRE_BUG)
    nxt = parse_time(find_schedule(server, "hourly")["next_fire_time"])
    check(abs(nxt - time.time() - 3600) < 60, "an interval of hours: \"1\" fired once and waits an hour", nxt)

    section("cron with seconds")
    schedule(server, "cron-fields", {"type": "cron", "second": "*/2"})
    schedule(server, "cron-expression", {"type": "cron", "expression": "*/2 * * * * *"})
    for job_id in ("cron-fields", "cron-expression"):
        recs = successes(server, job_id, 2)
        slots = [parse_time(r["scheduled_for"]) for r in recs[:2]]
        shown = [r["scheduled_for"] for r in recs[:2]]
        check(all(s % 2 == 0 for s in slots), f"{job_id} fires on even seconds ({shown})", recs)
        check(slots[1] > slots[0], f"{job_id} fires again", recs)
        check(len(handler_calls(legacy, job_id)) >= 2, f"{job_id}: the handler received ≥ 2 calls",
              handler_calls(legacy, job_id))
        described = find_schedule(server, job_id)["trigger"]
        check(isinstance(described, str) and described, f"{job_id} is described as '{described}'", described)
        reply = server.ok("DELETE", f"/api/schedules/{job_id}")
        check(reply == {"status": "success", "message": f"Schedule '{job_id}' removed", "schedule_id": job_id},
              f"DELETE /api/schedules/{job_id} → 200 in the original's shape", reply)
    # In a future year, so it cannot fire while the test runs (the restart compares next fires).
    schedule(server, "nightly", {"type": "cron", "year": "2098", "hour": "3", "minute": "0"})
    nightly = find_schedule(server, "nightly")["next_fire_time"]
    check(nightly.startswith("2098-01-01T03:00:00"),
          f"cron year=2098 hour=3 minute=0: less significant fields at their minimum ({nightly})", nightly)

    section("run_now")
    params = {"n": 1, "nested": {"list": [1, 2, "three"]}, "text": "héllo"}
    reply = server.ok("POST", "/api/run_now", {"handler_id": "legacy", "job_method": "echo", "job_params": params})
    check(reply["status"] == "success" and reply["result"] == {"echo": params, "success": True},
          "run_now echo → 200 with the handler's reply object", reply)
    check(reply["message"] == "Job executed on handler 'legacy'", "run_now says which handler ran it", reply)
    # urllib's default Content-Type (form-encoded), as a script that forgot to set it sends.
    status, reply = server.post("/api/run_now", {"handler_id": "legacy", "job_method": "value",
                                                 "job_params": {"value": 42}}, content_type=None)
    check(status == 200 and reply["result"] == {"success": True, "result": 42},
          "run_now of a method returning a non-object → its wrapped reply (without a JSON Content-Type)",
          [status, reply])
    status, reply = server.post("/api/run_now", {"handler_id": "legacy", "job_method": "fail",
                                                 "job_params": {"message": "boom on purpose"}})
    check(status == 502 and "boom on purpose" in reply["error"]["message"],
          "run_now of a failing method → 502 with the handler's error", [status, reply])

    section("execution records")
    settle(server, legacy)
    recs = server.records("&job_id=date-float")
    check(len(recs) == 1, "GET /api/executions?job_id=date-float → its one record", recs)
    r = recs[0]
    fields = ["job_id", "handler_id", "method_name", "started_at", "completed_at", "duration_ms", "status", "result",
              "error", "attempt_number", "max_attempts", "params_summary"]
    check(all(k in r for k in fields), "a record carries every COMPAT field", r)
    check((r["job_id"], r["handler_id"], r["method_name"], r["status"]) == ("date-float", "legacy", "echo", "success"),
          "job_id, handler_id, method_name, status", r)
    check(parse_time(r["started_at"]) <= parse_time(r["completed_at"]) and isinstance(r["duration_ms"], int)
          and r["duration_ms"] >= 0, "started_at ≤ completed_at, duration_ms a whole number", r)
    check(r["result"] == {"echo": {"job": "date-float"}, "success": True} and r["error"] is None,
          "result is the handler's reply, error null", r)
    check((r["attempt_number"], r["max_attempts"]) == (1, 3), "attempt_number 1 of max_attempts 3", r)
    check(json.loads(r["params_summary"]) == {"job": "date-float"}, "params_summary shows the params", r)
    all_recs = server.records()
    stamps = [x["scheduled_for"] for x in all_recs]
    check(stamps == sorted(stamps, reverse=True), f"GET /api/executions: {len(all_recs)} records, newest first", stamps)
    page = server.ok("GET", "/api/executions?limit=2")
    check((page["count"], page["limit"], len(page["records"])) == (2, 2, 2), "?limit=2 → 2 records", page)
    check(server.ok("GET", "/api/executions?limit=5000")["limit"] == 1000, "?limit=5000 is clamped to 1000")
    errs = server.records("&status=error")
    check(len(errs) == 1 and errs[0]["method_name"] == "fail", "?status=error → the failed run_now only", errs)
    check(all(x["handler_id"] == "legacy" for x in server.records("&handler_id=legacy")) and
          server.records("&handler_id=nobody") == [], "?handler_id filters by handler")

    section("errors and stats")
    errors = server.ok("GET", "/api/executions/errors")
    check(errors["count"] == 1 and errors["limit"] == 50 and errors["errors"][0]["error"] == "boom on purpose"
          and errors["errors"][0]["status"] == "error",
          "GET /api/executions/errors → the failed run, its error", errors)
    stats = server.ok("GET", "/api/executions/stats")
    all_recs = server.records()
    ok_n = sum(1 for x in all_recs if x["status"] == "success")
    err_n = sum(1 for x in all_recs if x["status"] == "error")
    check((stats["total_executions"], stats["success_count"], stats["error_count"]) == (len(all_recs), ok_n, err_n),
          f"stats count {len(all_recs)} executions: {ok_n} successes, {err_n} error, as the records do", stats)
    check(stats["success_rate"] == round(100 * ok_n / (ok_n + err_n), 2), f"success_rate {stats['success_rate']} %",
          stats)
    check(isinstance(stats["avg_duration_ms"], (int, float)) and stats["avg_duration_ms"] >= 0, "avg_duration_ms",
          stats)
    check(stats["by_handler"] == {"legacy": {"total": len(all_recs), "success": ok_n, "error": err_n}},
          "by_handler", stats)


def settle(server, handler):
    """Waits until every call the handler received has its finished record: a run of a schedule
    deleted a moment ago may still be in flight, and a run_now's record is committed a few
    milliseconds after its reply (docs/ENGINE.md). Each call is one run here (no retries)."""

    def probe():
        recs = server.records()
        calls = len(handler.calls())
        return len(recs) == calls and all(r["status"] in ("success", "error") for r in recs), {
            "handler calls": calls, "records": recs}

    poll("every call the handler received is recorded, none in flight", probe, 20)


def find_schedule(server, job_id):
    body = server.ok("GET", "/api/schedules")
    found = [s for s in body["schedules"] if s["id"] == job_id]
    if len(found) != 1:
        raise Failure(f"GET /api/schedules: expected one schedule '{job_id}'\n    seen: {short(body)}")
    s = found[0]
    check(body["count"] == len(body["schedules"]) and s["args"][0] == "legacy" and s["args"][3] == job_id,
          f"GET /api/schedules lists '{job_id}' with args [handler_id, method, params, id]", s)
    return s


_DROP = object()  # a key left out of a request body


def bad_requests(server, workdir, procs, handler_script):
    section("client mistakes: 4xx JSON naming the problem, never 5xx")
    good_trigger = {"type": "interval", "seconds": 5}

    def sched(**over):
        body = {"handler_id": "legacy", "job_method": "echo", "job_params": {}, "trigger": good_trigger}
        body.update(over)
        return {k: v for k, v in body.items() if v is not _DROP}

    cases = [
        # (what, method, path, request kwargs, status, words the message must contain)
        ("no body", "POST", "/api/schedule", {}, 400, ["body"]),
        ("an empty body on run_now", "POST", "/api/run_now", {"raw": b""}, 400, ["body"]),
        ("a body that is not JSON", "POST", "/api/schedule", {"raw": b"handler_id=legacy"}, 400, ["JSON"]),
        ("truncated JSON", "POST", "/api/schedule", {"raw": b'{"handler_id": "leg'}, 400, ["JSON"]),
        ("bytes that are not UTF-8", "POST", "/api/schedule", {"raw": b"\xff\xfe{}"}, 400, ["JSON"]),
        ("JSON nested 300 deep", "POST", "/api/schedule", {"raw": b"[" * 300 + b"]" * 300}, 400, ["JSON"]),
        ("a JSON array instead of an object", "POST", "/api/schedule", {"body": [sched()]}, 400, ["object"]),
        ("a JSON string instead of an object", "POST", "/api/run_now", {"body": "legacy"}, 400, ["object"]),
        ("missing handler_id", "POST", "/api/schedule", {"body": sched(handler_id=_DROP)}, 400, ["handler_id"]),
        ("missing job_method", "POST", "/api/schedule", {"body": sched(job_method=_DROP)}, 400, ["job_method"]),
        ("missing trigger", "POST", "/api/schedule", {"body": sched(trigger=_DROP)}, 400, ["trigger"]),
        ("run_now missing job_method", "POST", "/api/run_now", {"body": {"handler_id": "legacy"}}, 400,
         ["job_method"]),
        ("handler_id a number", "POST", "/api/schedule", {"body": sched(handler_id=5)}, 400, ["handler_id"]),
        ("handler_id empty", "POST", "/api/schedule", {"body": sched(handler_id="  ")}, 400, ["handler_id"]),
        ("job_method a list", "POST", "/api/schedule", {"body": sched(job_method=["echo"])}, 400, ["job_method"]),
        ("job_id a number", "POST", "/api/schedule", {"body": sched(job_id=7)}, 400, ["job_id"]),
        ("job_id empty", "POST", "/api/schedule", {"body": sched(job_id="")}, 400, ["job_id"]),
        ("trigger a number", "POST", "/api/schedule", {"body": sched(trigger=5)}, 400, ["trigger"]),
        ("job_params a list", "POST", "/api/schedule", {"body": sched(job_params=[1, 2])}, 400, ["job_params"]),
        ("job_params a string", "POST", "/api/run_now",
         {"body": {"handler_id": "legacy", "job_method": "echo", "job_params": "n=1"}}, 400, ["job_params"]),
        ("run_now timeout not a number", "POST", "/api/run_now",
         {"body": {"handler_id": "legacy", "job_method": "echo", "timeout": "soon"}}, 400, ["timeout"]),
        ("run_now timeout 0", "POST", "/api/run_now",
         {"body": {"handler_id": "legacy", "job_method": "echo", "timeout": 0}}, 400, ["timeout"]),
        ("trigger without a type", "POST", "/api/schedule", {"body": sched(trigger={"seconds": 5})}, 400, ["type"]),
        ("unknown trigger type", "POST", "/api/schedule", {"body": sched(trigger={"type": "weekly"})}, 400,
         ["weekly"]),
        ("unknown trigger key", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "interval", "seconds": 5, "secs": 2})}, 400, ["secs"]),
        ("interval value not numeric", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "interval", "minutes": "ten"})}, 400, ["minutes"]),
        ("interval total 0", "POST", "/api/schedule", {"body": sched(trigger={"type": "interval", "seconds": 0})},
         400, ["interval"]),
        ("interval negative", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "interval", "seconds": -5})}, 400, ["seconds", "negative"]),
        ("interval beyond any calendar", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "interval", "weeks": 1e15})}, 400, ["too long"]),
        ("interval end_time before its start", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "interval", "seconds": 1, "end_time": "2000-01-01T00:00:00"})}, 400,
         ["end_time"]),
        ("interval without any period", "POST", "/api/schedule", {"body": sched(trigger={"type": "interval"})}, 400,
         ["interval"]),
        ("cron field out of range", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "cron", "minute": "61"})}, 400, ["minute"]),
        ("cron weekday name unknown", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "cron", "day_of_week": "funday"})}, 400, ["day_of_week"]),
        ("cron step of zero", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "cron", "second": "*/0"})}, 400, ["second"]),
        ("cron expression with too few fields", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "cron", "expression": "* * *"})}, 400, ["expression"]),
        ("cron unknown timezone", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "cron", "hour": "1", "timezone": "Mars/Olympus"})}, 400, ["timezone"]),
        ("date garbage", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "date", "run_date": "next tuesday"})}, 400, ["run_date"]),
        ("date of the wrong type", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "date", "run_date": True})}, 400, ["run_date"]),
        ("date missing run_date", "POST", "/api/schedule", {"body": sched(trigger={"type": "date"})}, 400,
         ["run_date"]),
        ("date of Unix seconds beyond any calendar", "POST", "/api/schedule",
         {"body": sched(trigger={"type": "date", "run_date": 1e20})}, 400, ["run_date"]),
        ("unknown handler", "POST", "/api/schedule", {"body": sched(handler_id="ghost")}, 404, ["ghost"]),
        ("unknown handler on run_now", "POST", "/api/run_now",
         {"body": {"handler_id": "ghost", "job_method": "echo"}}, 404, ["ghost"]),
        ("method not offered", "POST", "/api/schedule", {"body": sched(job_method="nope")}, 400, ["nope", "echo"]),
        ("method not offered on run_now", "POST", "/api/run_now",
         {"body": {"handler_id": "legacy", "job_method": "nope"}}, 400, ["nope"]),
        ("delete an unknown schedule", "DELETE", "/api/schedules/no-such-job", {}, 404, ["no-such-job"]),
        ("non-numeric limit", "GET", "/api/executions?limit=ten", {}, 400, ["limit", "ten"]),
        ("negative limit", "GET", "/api/executions?limit=-1", {}, 400, ["limit"]),
        ("limit past 32 bits", "GET", "/api/executions?limit=99999999999999999999", {}, 400, ["limit"]),
        ("non-numeric limit on errors", "GET", "/api/executions/errors?limit=x", {}, 400, ["limit"]),
        ("unknown status filter", "GET", "/api/executions?status=maybe", {}, 400, ["status", "maybe"]),
        ("GET on a POST route", "GET", "/api/schedule", {}, 405, ["method"]),
        ("PUT on a POST route", "PUT", "/api/run_now", {"body": {}}, 405, ["method"]),
        ("POST on a GET route", "POST", "/api/health", {"body": {}}, 405, ["method"]),
        ("DELETE on the schedule list", "DELETE", "/api/schedules", {}, 405, ["method"]),
        ("unknown route", "GET", "/api/nope", {}, 404, ["route"]),
        ("unknown route, POST", "POST", "/api/schedules/x/y/z", {"body": {}}, 404, ["route"]),
        ("a body over 1 MiB", "POST", "/api/schedule",
         {"body": sched(job_params={"blob": "x" * (1024 * 1024 + 1)})}, 413, ["body"]),
        ("a cross-origin POST (browser page elsewhere)", "POST", "/api/run_now",
         {"body": {"handler_id": "legacy", "job_method": "echo"}, "headers": {"Origin": "http://evil.example"}}, 403,
         ["evil.example"]),
        ("a cross-origin DELETE", "DELETE", "/api/schedules/hourly", {"headers": {"Origin": "https://evil.example"}},
         403, ["origin"]),
        ("a Host header of another name (DNS rebinding)", "GET", "/api/schedules",
         {"headers": {"Host": "evil.example:8888"}}, 403, ["Host"]),
    ]
    failures = []
    for what, method, path, kw, status, words in cases:
        got, reply = server.request(method, path, **kw)
        err = reply.get("error") if isinstance(reply, dict) else None
        message = err.get("message", "") if isinstance(err, dict) else ""
        fine = (got == status and isinstance(err, dict) and err.get("code") == status
                and all(w.lower() in message.lower() for w in words))
        if fine:
            print(f"  ok  {what}: {method} {path} → {got} \"{message[:110]}\"", flush=True)
        else:
            failures.append(f"{what}: {method} {path} expected {status} naming {words}, got {got} {short(reply, 300)}")
            print(f"  FAILED  {failures[-1]}", flush=True)
        if got >= 500:
            break  # a 5xx is a server bug: stop here, the rest would be noise
    if failures:
        raise Failure(f"{len(failures)} client mistake(s) not answered as they should be:\n    "
                      + "\n    ".join(failures))

    hourly = find_schedule(server, "hourly")
    status, dup = server.post("/api/schedule", sched(job_id="hourly"))
    check(status == 409 and dup["error"]["code"] == 409 and "hourly" in dup["error"]["message"],
          f"a duplicate job_id → 409 \"{dup['error']['message'] if status == 409 else dup}\"", [status, dup])
    check(find_schedule(server, "hourly") == hourly, "the existing 'hourly' is left as it was (the cross-origin DELETE "
          "did not remove it either)")

    # A handler the server knows but with no live instance: 503, not a hang and not a 500.
    gone = V1Handler(procs, handler_script, server.zmq, "gone", workdir, "gone").wait_registered()
    check(gone.term() == 0, "handler 'gone' stops (reports itself offline)")
    poll("handler 'gone' shows Disconnected", lambda: listed(server, "gone", "Disconnected"), 15)
    status, reply = server.post("/api/run_now", {"handler_id": "gone", "job_method": "echo"})
    message = reply["error"]["message"] if status == 503 else ""
    check(status == 503 and "gone" in message, f"run_now to a handler with no live instance → 503 \"{message}\"",
          [status, reply])

    check(server.get("/api/health")[0] == 200, "the server still answers after all of them")
    reply = server.ok("POST", "/api/run_now", {"handler_id": "legacy", "job_method": "echo", "job_params": {"x": 1}})
    check(reply["result"]["echo"] == {"x": 1}, "and still runs jobs", reply)
    status, _ = server.post("/api/run_now", {"handler_id": "legacy", "job_method": "echo"},
                            headers={"Origin": server.base})
    check(status == 200, "a same-origin POST (the server's own page) is accepted", status)


def restart(server, legacy):
    section("restart: schedules and history survive")

    settle(server, legacy)
    before_schedules = server.ok("GET", "/api/schedules")
    before_history = server.records()
    check(server.term() == 0, "SIGTERM → the server exits 0")
    check(not os.path.exists(server.runtime_file), "its runtime file is removed")
    server.start()
    after_schedules = server.ok("GET", "/api/schedules")
    check(after_schedules == before_schedules,
          f"GET /api/schedules: the same {after_schedules['count']} schedules, same next fire times",
          {"before": before_schedules, "after": after_schedules})
    after_history = server.records()
    check(after_history == before_history, f"GET /api/executions: the same {len(after_history)} records",
          {"before": before_history, "after": after_history})

    # The server remembers the handler's address and reconnects to it: no new registration needed.
    poll("'legacy' is Connected again", lambda: listed(server, "legacy", "Connected"), 20)
    check(len(legacy.registrations()) == 1, "without registering again (the server called it back)",
          legacy.registrations())
    reply = server.ok("POST", "/api/run_now",
                      {"handler_id": "legacy", "job_method": "echo", "job_params": {"after": 1}})
    check(reply["result"]["echo"] == {"after": 1}, "run_now works after the restart", reply)
    schedule(server, "after-restart", {"type": "date", "run_date": time.time()})
    r = once(server, "after-restart")
    check(r["status"] == "success", "a date job scheduled after the restart ran", r)

    section("clear")
    settle(server, legacy)
    reply = server.ok("POST", "/api/executions/clear")
    check(reply["status"] == "success" and reply["message"] == "Execution history cleared",
          "POST /api/executions/clear → 200", reply)
    check(server.records() == [] and server.ok("GET", "/api/executions/stats")["total_executions"] == 0,
          "no records and zero executions in the stats afterwards")
    check(server.ok("GET", "/api/executions/errors")["count"] == 0, "no errors either")


if __name__ == "__main__":
    sys.exit(main(__doc__.splitlines()[0], run))
