#!/usr/bin/env python3
"""An example ScheduleZero handler built on the Python SDK: handler `reports` with a sync method
that stops when cancelled, an async one, and one that fails with detail.

    pip install ./sdk/python
    SCHEDULEZERO_SERVER_ENDPOINT=tcp://127.0.0.1:4242 python3 sdk/python/examples/reports_handler.py

SIGTERM or Ctrl-C drains (calls in flight finish, their results are sent), then it exits 0.
"""

import asyncio
import datetime
import os

from schedulezero import CallContext, Handler, MethodError

reports = Handler(
    "reports",
    capacity=4,  # at most 4 calls at once; the server sends no more
    # Stable across restarts, so the server keeps this instance's history. Two processes running
    # at once need different ids.
    instance_id=os.environ.get("SCHEDULEZERO_INSTANCE_ID", "reports-1"),
)


@reports.method
def build(day: str, ctx: CallContext, rows: int = 100) -> dict:
    """`build {"day": "2027-01-14"}`: a sync method, run in its own thread. The params are its
    keyword arguments; `ctx` is the call."""
    done = 0
    for _ in range(rows):
        if ctx.wait(0.01):  # a cancellable pause: True once the call is cancelled
            raise MethodError("cancelled", detail={"rows_done": done})
        done += 1
    # ctx.run_id is the same for every attempt of this run: an idempotency key downstream.
    return {
        "day": day,
        "rows": done,
        "run_id": ctx.run_id,
        "attempt": ctx.attempt,
        "slot": ctx.scheduled_for.isoformat(),
    }


@reports.method("fetch")
async def fetch_status(ctx: CallContext, url: str = "https://example.invalid") -> dict:
    """`fetch {"url": ...}`: an async method, run on the event loop. Cancelling the run (or its
    deadline) cancels this task: asyncio.CancelledError at the `await`."""
    await asyncio.sleep(0.5)  # stands for real I/O
    return {
        "url": url,
        "checked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "time_left_s": ctx.time_left(),
    }


@reports.method
def purge(older_than_days: int) -> dict:
    """Fails unless the argument makes sense: the run's error is the exception's text."""
    if older_than_days < 1:
        raise ValueError(f"older_than_days must be at least 1, got {older_than_days}")
    return {"purged": 0}


if __name__ == "__main__":
    reports.run()  # $SCHEDULEZERO_SERVER_ENDPOINT, else tcp://127.0.0.1:4242
