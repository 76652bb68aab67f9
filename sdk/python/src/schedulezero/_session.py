"""One serving of a handler, from the first hello to the ``bye`` (docs/PROTOCOL.md §13): a single
asyncio loop reacting to the server's messages, finished calls, the link's timer and shutdown
requests, in the manner of crates/handler/src/session.rs and calls.rs."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Set, Tuple

import zmq
import zmq.asyncio

from . import _link
from ._context import CallContext, _current, parse_time
from ._link import SIGNATURE, Link, LinkState
from ._methods import MethodSpec, ParamsError, encode, exception_frame, failure_frame, result_frame

if TYPE_CHECKING:
    from ._handler import Handler

logger = logging.getLogger("schedulezero")

#: How long a method may keep running after its call was cancelled before it is abandoned.
CANCEL_GRACE = 2.0
#: How long hellos may go unanswered before the handler says so, then how often it repeats it:
#: a wrong endpoint or a server that is down would otherwise look like a silent hang.
SILENCE_WARNING = 5.0
SILENCE_REPEAT = 30.0

CallKey = Tuple[str, int]


class _Call:
    """A call in flight: its context, method, the task serving it and the method's own work."""

    __slots__ = ("key", "ctx", "spec", "task", "work", "stop")

    def __init__(self, key: CallKey, ctx: CallContext, spec: MethodSpec) -> None:
        self.key = key
        self.ctx = ctx
        self.spec = spec
        self.task: Optional[asyncio.Task[None]] = None
        self.work: Optional[asyncio.Future[bytes]] = None
        self.stop = asyncio.Event()  # set by the server's cancel


class Session:
    def __init__(self, handler: "Handler", endpoint: str) -> None:
        self.handler = handler
        self.endpoint = endpoint
        self.who = f"{handler.handler_id}/{handler.instance_id}"
        self.hello = encode(handler._hello())
        self.capacity = handler.capacity
        self.calls: Dict[CallKey, _Call] = {}
        # Method functions actually running, abandoned ones included: a thread cannot be stopped,
        # so one left running after its grace still takes a unit of capacity until it returns.
        self.busy = 0
        self.events: Deque[Tuple[str, Any]] = collections.deque()
        self.wake = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.link = Link(time.monotonic())
        self.unanswered: Optional[Tuple[float, float]] = None
        self.sock: Optional[zmq.asyncio.Socket] = None

    # ---- from outside the loop's task -------------------------------------------------------

    def post(self, kind: str, payload: Any = None) -> None:
        """Queues an event for the loop (call on the loop's thread)."""
        self.events.append((kind, payload))
        self.wake.set()

    def request_stop(self) -> None:
        """The first request drains, a second closes at once."""
        self.post("stop")

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        zctx = zmq.asyncio.Context()
        sock = zctx.socket(zmq.DEALER)
        try:
            for option, value in (
                (zmq.LINGER, 0),
                (zmq.RECONNECT_IVL, _link.RECONNECT_IVL_MS),
                (zmq.RECONNECT_IVL_MAX, _link.RECONNECT_IVL_MAX_MS),
                (zmq.HEARTBEAT_IVL, _link.ZMTP_HEARTBEAT_IVL_MS),
                (zmq.HEARTBEAT_TIMEOUT, _link.ZMTP_HEARTBEAT_TIMEOUT_MS),
                (zmq.HEARTBEAT_TTL, _link.ZMTP_HEARTBEAT_TTL_MS),
                (zmq.MAXMSGSIZE, _link.MAX_FRAME_BYTES),
            ):
                sock.setsockopt(option, value)
            sock.connect(self.endpoint)
        except zmq.ZMQError as e:
            sock.close(0)
            zctx.term()
            raise ValueError(
                f"cannot connect to the server endpoint {self.endpoint!r}: {e} (expected e.g. tcp://127.0.0.1:4242)"
            ) from None
        self.sock = sock
        receiver = asyncio.ensure_future(self._receive(sock))
        logger.info("%s connecting to %s", self.who, self.endpoint)
        self._publish()
        try:
            await self._serve()
        finally:
            self._abort_all()
            self._send(encode({"type": "bye"}))
            receiver.cancel()
            try:
                await receiver
            except (asyncio.CancelledError, Exception):
                pass
            # The linger lets the bye get out; terminating the context waits for it, off the loop.
            sock.close(linger=_link.CLOSING_LINGER_MS)
            await self.loop.run_in_executor(None, zctx.term)
            self.handler._state = LinkState.CLOSED

    async def _serve(self) -> None:
        while True:
            while self.events:
                kind, payload = self.events.popleft()
                if kind == "frames":
                    self._on_frames(*payload)
                elif kind == "done":
                    self._finished(*payload)
                elif kind == "stop":
                    if self.link.draining:
                        logger.warning("%s closing now: %d call(s) in flight get no result", self.who, len(self.calls))
                        return
                    self._start_draining()
                elif kind == "receive_failed":
                    raise RuntimeError(f"{self.who}: cannot receive from {self.endpoint}: {payload}")
            now = time.monotonic()
            if now >= self.link.next:
                self._on_timer(now)
            self._publish()
            if self.link.draining and not self.calls:
                logger.info("%s drained", self.who)
                return
            self.wake.clear()
            if self.events:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, self.link.next - time.monotonic()))
            except asyncio.TimeoutError:
                pass

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames = await sock.recv_multipart()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as e:
                self.post("receive_failed", e)
                return
            self.post("frames", (frames, time.monotonic()))

    # ---- messages from the server -----------------------------------------------------------

    def _on_frames(self, frames: List[bytes], received: float) -> None:
        if len(frames) != 2 or frames[0] != SIGNATURE:
            logger.warning(
                "%s: ignoring a message from the server without the SZ1 signature (%d frames)", self.who, len(frames)
            )
            return
        try:
            msg = json.loads(frames[1])
            kind = msg["type"]
            if not isinstance(kind, str):
                raise TypeError("'type' is not a string")
        except (ValueError, KeyError, TypeError) as e:
            logger.warning("%s: ignoring a malformed message from the server: %s", self.who, e)
            return
        if kind == "call":
            self._on_call(msg, received)
        elif kind == "cancel":
            call = self.calls.get((msg.get("run_id"), msg.get("attempt")))
            if call is not None:
                call.stop.set()
            else:
                logger.debug("%s: cancel for a call not running: %s", self.who, msg)
        elif kind == "welcome":
            heartbeat_ms = _int(msg.get("heartbeat_ms"), 1000)
            logger.info(
                "%s registered with %s (heartbeat every %d ms)", self.who, msg.get("server", "a server"), heartbeat_ms
            )
            self.unanswered = None
            self.link.welcome(heartbeat_ms, _int(msg.get("max_frame_bytes"), 0), time.monotonic())
            if self.link.draining:
                self._send_goodbye()
        elif kind == "hello_again":
            if self.link.forgotten(time.monotonic()):
                logger.info("%s: the server does not know this instance; saying hello again", self.who)
                self._send(self.hello)
        elif kind == "refused":
            logger.warning("%s: the server refused the hello: %s; retrying", self.who, msg.get("error"))
            self.link.refused()
        elif kind == "error":
            logger.warning("%s: the server reports: %s", self.who, msg.get("error"))
        else:
            logger.warning("%s: ignoring a message of unknown type %r from the server", self.who, kind)

    def _on_call(self, msg: Dict[str, Any], received: float) -> None:
        run_id, attempt = msg.get("run_id"), msg.get("attempt")
        if not isinstance(run_id, str) or isinstance(attempt, bool) or not isinstance(attempt, int):
            logger.warning("%s: ignoring a call without run_id and attempt: %s", self.who, msg)
            return
        key = (run_id, attempt)
        if key in self.calls:
            logger.debug("%s: duplicate call ignored: run %s attempt %d", self.who, run_id, attempt)
            return
        if self.link.draining:
            self._send(failure_frame(run_id, attempt, "draining: this instance takes no new calls", refused=True))
            return
        method = msg.get("method")
        spec = self.handler._methods.get(method) if isinstance(method, str) else None
        if spec is None:
            offered = ", ".join(sorted(self.handler._methods))
            self._send(failure_frame(run_id, attempt, f"unknown method {method!r}; this instance offers: {offered}"))
            return
        if self.busy >= self.capacity:
            error = f"over capacity: this instance runs at most {self.capacity} calls at once"
            self._send(failure_frame(run_id, attempt, error, refused=True))
            return
        params = msg.get("params")
        if params is None:
            params = {}
        deadline_ms = msg.get("deadline_ms")
        try:
            if not isinstance(params, dict):
                raise ValueError(f"'params' must be a JSON object, got {type(params).__name__}")
            if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, int) or deadline_ms < 0:
                raise ValueError(f"'deadline_ms' must be a non-negative integer, got {deadline_ms!r}")
            scheduled_for = parse_time(str(msg.get("scheduled_for")))
        except ValueError as e:
            self._send(failure_frame(run_id, attempt, f"malformed call: {e}"))
            return
        ctx = CallContext(
            run_id=run_id,
            attempt=attempt,
            scheduled_for=scheduled_for,
            method=method,  # type: ignore[arg-type]
            params=params,
            handler_id=self.handler.handler_id,
            instance_id=self.handler.instance_id,
            deadline=received + deadline_ms / 1000.0,
        )
        call = _Call(key, ctx, spec)
        self.calls[key] = call
        self.busy += 1  # now: calls arriving in one batch must see each other
        call.task = self.loop.create_task(self._serve_call(call, params))

    # ---- calls ------------------------------------------------------------------------------

    async def _serve_call(self, call: _Call, params: Dict[str, Any]) -> None:
        try:
            frame = await self._execute(call, params)
        except asyncio.CancelledError:
            raise  # closing without drain: no result
        except Exception as e:  # a bug here must still answer the call
            logger.exception("%s: serving run %s failed", self.who, call.key[0])
            frame = failure_frame(call.key[0], call.key[1], f"the Python SDK failed to run the method: {e!r}")
        finally:
            if call.work is None:  # the method never started: its unit of capacity is free
                self.busy -= 1
        self.post("done", (call.key, frame))

    async def _execute(self, call: _Call, params: Dict[str, Any]) -> bytes:
        ctx, spec = call.ctx, call.spec
        try:
            args, kwargs = spec.bind(params, ctx)
        except ParamsError as e:
            return failure_frame(ctx.run_id, ctx.attempt, str(e))
        work: asyncio.Future[bytes]
        if spec.is_async:
            work = self.loop.create_task(_run_async(spec, args, kwargs, ctx))
        else:
            work = self.loop.create_future()
            run = contextvars.copy_context().run
            threading.Thread(
                target=run,
                args=(_run_sync, spec, args, kwargs, ctx, self.loop, work),
                name=f"schedulezero-{spec.name}",
                daemon=True,  # an abandoned method must not keep the process from exiting
            ).start()
        # The unit of capacity taken when the call arrived is held until the method returns.
        work.add_done_callback(self._released)
        call.work = work
        stop: "asyncio.Future[Any]" = self.loop.create_task(call.stop.wait())
        first: "Set[asyncio.Future[Any]]" = {work, stop}
        try:
            done, _ = await asyncio.wait(
                first, timeout=max(0.0, ctx.deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if work in done:
            return _outcome(ctx, work)
        reason = "cancelled" if call.stop.is_set() else "deadline exceeded"
        ctx._cancel(reason)
        if spec.is_async:
            work.cancel()
        finished, _ = await asyncio.wait({work}, timeout=CANCEL_GRACE)
        if work in finished:
            return _outcome(ctx, work)
        logger.warning(
            "%s: method %r (run %s, attempt %d) still runs %.0f s after %s; reported as such and left running",
            self.who,
            spec.name,
            ctx.run_id,
            ctx.attempt,
            CANCEL_GRACE,
            "its cancel" if reason == "cancelled" else "its deadline",
        )
        return failure_frame(ctx.run_id, ctx.attempt, reason)

    def _released(self, _work: asyncio.Future[bytes]) -> None:
        self.busy -= 1

    def _finished(self, key: CallKey, frame: bytes) -> None:
        if self.calls.pop(key, None) is None:
            return
        limit = self.link.max_frame_bytes
        if len(frame) > limit:
            error = f"the result is {len(frame)} bytes; the server accepts at most {limit}"
            logger.warning("%s: run %s attempt %d: %s", self.who, key[0], key[1], error)
            frame = failure_frame(key[0], key[1], error)
        self._send(frame)

    def _abort_all(self) -> None:
        for call in self.calls.values():
            call.ctx._cancel("closing")
            if call.task is not None:
                call.task.cancel()
            if call.work is not None and call.spec.is_async:
                call.work.cancel()
        self.calls.clear()

    # ---- sending ----------------------------------------------------------------------------

    def _on_timer(self, now: float) -> None:
        due = self.link.due(now)
        if due == "hello":
            self._send(self.hello)
            since, warn_at = self.unanswered or (now, now + SILENCE_WARNING)
            if now >= warn_at:
                logger.warning(
                    "%s: no answer from %s for %d s; is a ScheduleZero server listening there? (still trying)",
                    self.who,
                    self.endpoint,
                    now - since,
                )
                warn_at = now + SILENCE_REPEAT
            self.unanswered = (since, warn_at)
        elif due == "heartbeat":
            self._send(encode({"type": "heartbeat", "in_flight": len(self.calls)}))

    def _start_draining(self) -> None:
        logger.info("%s draining: %d call(s) in flight", self.who, len(self.calls))
        self.link.draining = True
        self._send_goodbye()

    def _send_goodbye(self) -> None:
        self._send(encode({"type": "goodbye", "reason": "shutting down"}))

    def _send(self, body: bytes) -> None:
        """Queues one message without blocking; libzmq holds it while the connection is down, up to
        its high-water mark, past which dropping beats blocking."""
        if self.sock is None:
            return
        try:
            sent = self.sock.send_multipart([SIGNATURE, body], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:
            logger.warning("%s: dropping a message to the server: %s", self.who, e)
            return
        if isinstance(sent, asyncio.Future):
            sent.add_done_callback(self._check_sent)

    def _check_sent(self, sent: "asyncio.Future[Any]") -> None:
        if not sent.cancelled() and sent.exception() is not None:
            logger.warning("%s: dropping a message to the server: %s", self.who, sent.exception())

    def _publish(self) -> None:
        self.handler._state = self.link.state()


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _run_sync(
    spec: MethodSpec,
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    ctx: CallContext,
    loop: asyncio.AbstractEventLoop,
    work: asyncio.Future[bytes],
) -> None:
    """A sync method's thread: runs it, encodes its result here (off the loop), hands it back."""
    _current.set(ctx)
    try:
        outcome: Tuple[Optional[bytes], Optional[BaseException]] = (
            result_frame(ctx.run_id, ctx.attempt, spec.func(*args, **kwargs)),
            None,
        )
    except BaseException as e:  # reported as the call's failure, whatever it is
        outcome = (None, e if not isinstance(e, StopIteration) else RuntimeError(repr(e)))
    try:
        loop.call_soon_threadsafe(_settle, work, outcome)
    except RuntimeError:
        pass  # the loop is closed: serving ended while this method ran


def _settle(work: asyncio.Future[bytes], outcome: Tuple[Optional[bytes], Optional[BaseException]]) -> None:
    if work.done():
        return
    value, error = outcome
    if error is not None:
        work.set_exception(error)
    elif value is not None:
        work.set_result(value)


async def _run_async(spec: MethodSpec, args: Tuple[Any, ...], kwargs: Dict[str, Any], ctx: CallContext) -> bytes:
    _current.set(ctx)  # the task runs in its own copy of the context
    value = await spec.func(*args, **kwargs)
    return result_frame(ctx.run_id, ctx.attempt, value)


def _outcome(ctx: CallContext, work: asyncio.Future[bytes]) -> bytes:
    if work.cancelled():
        return failure_frame(ctx.run_id, ctx.attempt, ctx.cancel_reason or "cancelled")
    error = work.exception()
    if error is not None:
        return exception_frame(ctx.run_id, ctx.attempt, error, ctx.cancel_reason)
    frame: bytes = work.result()
    return frame
