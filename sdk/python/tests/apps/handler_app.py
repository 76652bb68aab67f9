"""The handler process the SDK's tests run against the real server: methods that report what
they saw (context, concurrency), wait to be cancelled, fail in each way, or take their time.
Usage: handler_app.py HANDLER_ID CAPACITY MARKER_DIR [INSTANCE_ID]; the endpoint comes from
$SCHEDULEZERO_SERVER_ENDPOINT. Markers are files the tests poll: ``<dir>/<event>-<run_id>``."""

import asyncio
import os
import sys
import threading
import time

from schedulezero import CallContext, Handler, MethodError, context

handler_id, capacity, markers = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = Handler(handler_id, capacity=capacity, instance_id=sys.argv[4] if len(sys.argv) > 4 else None)


def mark(event: str, run_id: str, text: str = "") -> None:
    path = os.path.join(markers, f"{event}-{run_id}")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)  # a poller never sees a half-written marker


@h.method
def echo(**params):
    return params


@h.method
def info(ctx: CallContext) -> dict:
    assert context() is ctx, "schedulezero.context() is the method's context"
    return {
        "run_id": ctx.run_id,
        "attempt": ctx.attempt,
        "scheduled_for": ctx.scheduled_for.isoformat(),
        "time_left": ctx.time_left(),
        "deadline_in": ctx.deadline - time.monotonic(),
        "method": ctx.method,
        "instance_id": ctx.instance_id,
    }


@h.method("info_async")
async def info_async(ctx):
    await asyncio.sleep(0)
    return {"run_id": context().run_id, "time_left": ctx.time_left()}


# Concurrency: each call waits until its whole batch (`n` calls: the first n to arrive, then
# the next n, ...) is running at once, so a batch only completes if the SDK runs n calls together.
lock = threading.Condition()
state = {"active": 0, "peak": 0, "arrived": 0}


@h.method
def hold(n: int, ctx: CallContext) -> dict:
    with lock:
        state["arrived"] += 1
        batch_end = ((state["arrived"] - 1) // n + 1) * n
        state["active"] += 1
        state["peak"] = max(state["peak"], state["active"])
        lock.notify_all()
        try:
            if not lock.wait_for(lambda: state["arrived"] >= batch_end, timeout=30):
                raise RuntimeError(f"only {state['arrived']} of {batch_end} calls arrived together")
        finally:
            state["active"] -= 1
    return {"peak": state["peak"]}


async_state = {"active": 0, "peak": 0, "arrived": 0}
async_arrivals = None


@h.method
async def hold_async(n: int) -> dict:
    global async_arrivals
    if async_arrivals is None:
        async_arrivals = asyncio.Condition()
    async with async_arrivals:
        async_state["arrived"] += 1
        batch_end = ((async_state["arrived"] - 1) // n + 1) * n
        async_state["active"] += 1
        async_state["peak"] = max(async_state["peak"], async_state["active"])
        async_arrivals.notify_all()
        try:
            await asyncio.wait_for(async_arrivals.wait_for(lambda: async_state["arrived"] >= batch_end), 30)
        finally:
            async_state["active"] -= 1
    return {"peak": async_state["peak"]}


@h.method
def slow(seconds: float, ctx: CallContext) -> dict:
    """Ignores cancellation on purpose: a drain must wait for it."""
    mark("started", ctx.run_id)
    time.sleep(seconds)
    return {"slept": seconds}


@h.method
def wait_cancel(ctx: CallContext) -> dict:
    mark("started", ctx.run_id)
    cancelled = ctx.wait(60)
    mark("cancelled" if cancelled else "timeout", ctx.run_id, str(ctx.cancel_reason))
    return {"cancelled": cancelled}


@h.method
async def wait_cancel_async(ctx: CallContext) -> dict:
    mark("started", ctx.run_id)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        mark("cancelled", ctx.run_id, f"{ctx.cancelled} {ctx.cancel_reason}")
        raise
    return {"cancelled": False}


@h.method
def boom(message: str) -> None:
    raise ValueError(message)


@h.method
def fail_detail() -> None:
    raise MethodError("disk full", detail={"free_bytes": 0})


@h.method
def not_json() -> object:
    return {"ids": {1, 2}}


@h.method
def huge(size: int) -> str:
    return "x" * size


@h.method(name="whole", raw_params=True)
def whole(params: dict, ctx: CallContext) -> dict:
    return {"params": params, "attempt": ctx.attempt}


if __name__ == "__main__":
    h.run()
    print("handler exited", flush=True)
