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

    def all_busy():
        running = sorted(r["job_id"] for r in server.records("&status=running"))
        received = sorted(calls())
        # The claim starts every due run at once (docs/ENGINE.md): runs waiting for a free
        # instance are `running` too, their attempt committed before it is sent.
        return len(received) == INSTANCES and running == jobs, {"running": running, "received": received}

    seen = poll(f"all {BURST} runs are running and each of the {INSTANCES} instances received one", all_busy, 20)
    sent = seen["received"]
    unsent = sorted(set(jobs) - set(sent))
    print(f"  --  sent to a handler: {sent}; waiting for a free instance: {unsent}", flush=True)
    run_ids = {r["job_id"]: r["run_id"] for r in server.records("&status=running")}

    section("SIGKILL the server during the burst, start it again on the same root")
    check(server.kill() == -9, "the server is killed (SIGKILL)")
    server.start()
    check("stale PID file" in tail(server.log_path, 200), "the new server notices the stale PID file and starts")

    def interrupted():
        recs = {r["job_id"]: r for r in server.records() if r["job_id"] in jobs}
        marked = [j for j in jobs if j in recs and recs[j]["status"] == "retry"
                  and "interrupted" in (recs[j]["error"] or "")]
        return marked == jobs, recs

    poll("every run that was running is now 'retry' with an 'interrupted' error", interrupted, 20)
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
    for job in jobs:
        r = recs[job]
        check((r["attempt_number"], r["max_attempts"], r["run_id"]) == (2, 3, run_ids[job]),
              f"{job} ({'sent' if job in sent else 'waiting'} at the kill): the same run, succeeded at attempt 2 of 3",
              r)
    received = calls()
    check(all(received.count(j) == 2 for j in sent) and all(received.count(j) == 1 for j in unsent),
          "the handlers received each run sent before the kill twice and each waiting run once, nothing more",
          sorted(received))
    stats = server.ok("GET", "/api/executions/stats")
    check((stats["success_count"], stats["error_count"]) == (BURST, 0),
          f"stats: {BURST} successes, no errors (an interrupted attempt that was retried is not a failed run)",
          stats)
    check(server.term() == 0, "the server exits 0 on SIGTERM")


if __name__ == "__main__":
    sys.exit(main(__doc__.splitlines()[0], run))
