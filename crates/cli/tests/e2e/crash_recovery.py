#!/usr/bin/env python3
"""End-to-end test of a crash: the real `schedulezero serve` is SIGKILLed while a burst of runs is in
flight on version-1 pyzmq handlers; started again on the same root, it records every run that was
running as an `interrupted` attempt and retries it (attempt 2, then success). A handler receives a
run twice only if it had received it before the kill.

The calls are held in flight by a gate file the handlers wait on (method `gate`), so the kill
lands during the calls however slow the machine is, and no fixed sleep is needed.

Usage: crash_recovery.py [--bin target/debug/schedulezero] [--handler path/to/v1_handler.py] [--keep]
Exits 0 when every check held; otherwise 1 at the first that did not, with the servers' logs.
"""
import os
import sys
import time

sys.dont_write_bytecode = True
from e2e_support import Server, V1Handler, check, main, poll, section, tail  # noqa: E402

INSTANCES = 4  # version-1 instances serve one call at a time: 4 instances, 4 runs in flight
BURST = 6  # two more than fit: those wait for a free instance, never sent before the kill


def run(binary, handler_script, workdir, procs):
    server = Server(procs, binary, workdir).start()
    gate = os.path.join(workdir, "gate")
    handlers = [
        V1Handler(procs, handler_script, server.zmq, "burst", workdir, f"burst-{i}").wait_registered()
        for i in range(INSTANCES)
    ]

    def connected():
        body = server.ok("GET", "/api/handlers")
        entry = next((h for h in body["handlers"] if h["id"] == "burst"), None)
        live = [i for i in (entry or {}).get("instances", []) if i["status"] == "Connected"]
        return len(live) == INSTANCES, body

    poll(f"'burst' has {INSTANCES} connected instances", connected, 20)

    section(f"a burst of {BURST} date jobs, each call held in flight by the gate")
    jobs = [f"burst-{i}" for i in range(BURST)]
    for job in jobs:
        body = {"handler_id": "burst", "job_method": "gate", "job_params": {"path": gate, "job": job},
                "trigger": {"type": "date", "run_date": time.time()}, "job_id": job}
        server.ok("POST", "/api/schedule", body, status=201)

    def calls():
        return [c["params"]["job"] for h in handlers for c in h.calls()]

    def runs():
        """The burst's runs by job name, from the native run API."""
        page = server.ok("GET", f"/api/runs?handler_id=burst&limit={4 * BURST}")
        return {r["schedule_name"]: r for r in page["runs"]}

    def all_busy():
        states = {job: r["state"] for job, r in runs().items()}
        received = sorted(calls())
        # Every instance busy, every run of the burst made, none ended: nothing can change until
        # the gate opens, so this is exactly what the kill will interrupt.
        ready = (sorted(states) == jobs and len(received) == INSTANCES
                 and all(states[j] == "running" for j in received)
                 and all(st in ("running", "pending") for st in states.values()))
        return ready, {"states": states, "received": received}

    seen = poll(f"each of the {INSTANCES} instances received a call, and all {BURST} runs exist", all_busy, 20)
    sent = seen["received"]
    running = sorted(j for j, st in seen["states"].items() if st == "running")
    pending = sorted(set(jobs) - set(running))
    # The claim starts every due run at once (docs/ENGINE.md), so the runs waiting for a free
    # instance are `running` too: their attempt is committed, not yet sent.
    print(f"  --  running at the kill: {running} (sent to a handler: {sent}); pending: {pending}", flush=True)
    compat_running = sorted(r["job_id"] for r in server.records("&status=running"))
    check(compat_running == running, "GET /api/executions?status=running shows the same runs running",
          compat_running)
    run_ids = {job: r["run_id"] for job, r in runs().items()}

    section("SIGKILL the server during the burst, start it again on the same root")
    check(server.kill() == -9, "the server is killed (SIGKILL)")
    server.start()
    check("stale PID file" in tail(server.log_path, 200), "the new server notices the stale PID file and starts")

    def interrupted():
        recs = {r["job_id"]: r for r in server.records() if r["job_id"] in jobs}
        marked = [j for j in running if j in recs and recs[j]["status"] == "retry"
                  and "interrupted" in (recs[j]["error"] or "")]
        return marked == running, recs

    poll("every run that was running is 'retry' in GET /api/executions, its error 'interrupted'", interrupted, 20)
    for job in jobs:
        detail = server.ok("GET", f"/api/runs/{run_ids[job]}")
        outcomes = [(a["number"], a["outcome"]) for a in detail["attempts"]]
        if job in running:
            check(detail["state"] == "retrying" and outcomes == [(1, "interrupted")]
                  and "interrupted" in detail["attempts"][0]["error"],
                  f"{job}: GET /api/runs/{{id}} → retrying, attempt 1 interrupted", detail)
        else:
            check(detail["state"] == "pending" and outcomes == [], f"{job}: still pending, no attempt", detail)
    check(sorted(calls()) == sent, "no handler received anything new yet (every instance is still busy)",
          sorted(calls()))

    section("open the gate: the old calls end (their replies have nowhere to go), the retries run")
    with open(gate, "w"):
        pass

    def finished():
        recs = {r["job_id"]: r for r in server.records() if r["job_id"] in jobs}
        done = [j for j in jobs if j in recs and recs[j]["status"] == "success"]
        return done == jobs, recs

    recs = poll(f"all {BURST} runs succeed", finished, 30)
    addresses = {line.split()[1] for h in handlers for line in h.registrations()}
    for job in jobs:
        r = recs[job]
        detail = server.ok("GET", f"/api/runs/{run_ids[job]}")
        outcomes = [(a["number"], a["outcome"]) for a in detail["attempts"]]
        if job in running:
            how = "sent" if job in sent else "claimed, not yet sent"
            check((r["attempt_number"], r["max_attempts"], r["run_id"]) == (2, 3, run_ids[job]),
                  f"{job} (running at the kill, {how}): the same run, succeeded at attempt 2 of 3", r)
            check(outcomes == [(1, "interrupted"), (2, "succeeded")],
                  f"{job}: its attempts are 1 interrupted, 2 succeeded", detail)
        else:
            check((r["attempt_number"], r["run_id"]) == (1, run_ids[job]) and outcomes == [(1, "succeeded")],
                  f"{job} (pending at the kill): succeeded at attempt 1", detail)
        check(detail["state"] == "succeeded" and detail["attempts"][-1]["instance"] in addresses,
              f"{job}: succeeded on one of the burst instances ({detail['attempts'][-1]['instance']})", detail)
    received = calls()
    check(all(received.count(j) == (2 if j in sent else 1) for j in jobs),
          "the handlers received each run sent before the kill twice and every other run once, nothing more",
          sorted(received))
    stats = server.ok("GET", "/api/executions/stats")
    check((stats["success_count"], stats["error_count"]) == (BURST, 0),
          f"stats: {BURST} successes, no errors (an interrupted attempt that was retried is not a failed run)",
          stats)
    check(server.term() == 0, "the server exits 0 on SIGTERM")


if __name__ == "__main__":
    sys.exit(main(__doc__.splitlines()[0], run))
