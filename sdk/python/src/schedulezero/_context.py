"""What a method knows about the call it serves (:class:`CallContext`), how it learns that the
call was cancelled, and the errors a method raises on purpose."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import re
import threading
import time
from typing import Any, Dict, Optional

_current: contextvars.ContextVar["CallContext"] = contextvars.ContextVar("schedulezero_call")


class MethodError(Exception):
    """Raise to fail a call with exactly ``message`` as the run's error (no exception type in
    front) and, optionally, JSON ``detail`` recorded as the attempt's result."""

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class CallCancelled(Exception):
    """Raised by :meth:`CallContext.raise_if_cancelled` (and :meth:`CallContext.sleep`) once the
    call is cancelled; the SDK reports the call as ``cancelled`` or ``deadline exceeded``."""


class CallContext:
    """One call as its method sees it: which run and attempt, which fire slot, how long it may
    take, and whether it should stop.

    The call is cancelled when the server sends ``cancel`` for it (a user cancelled the run, or
    the server gave up on it) or when its deadline passes. A method should then return soon. For
    ``async def`` methods the SDK also cancels the task (``asyncio.CancelledError`` at the current
    ``await``); threads cannot be interrupted, so sync methods check :attr:`cancelled` or wait
    with :meth:`wait` / :meth:`sleep`. A method still running 2 s after cancellation is
    abandoned and reported as ``cancelled`` or ``deadline exceeded``.
    """

    __slots__ = (
        "run_id",
        "attempt",
        "scheduled_for",
        "method",
        "params",
        "handler_id",
        "instance_id",
        "deadline",
        "_cancelled",
        "_async_cancelled",
        "_reason",
    )

    def __init__(
        self,
        *,
        run_id: str,
        attempt: int,
        scheduled_for: datetime.datetime,
        method: str,
        params: Dict[str, Any],
        handler_id: str,
        instance_id: str,
        deadline: float,
    ) -> None:
        #: The run this call is an attempt of; the same for every retry: use it as an
        #: idempotency key.
        self.run_id = run_id
        #: Which attempt of the run this is, from 1.
        self.attempt = attempt
        #: The fire slot the run is for (timezone-aware UTC), not when it started: what a report
        #: "for 08:00" is about, even when it runs late or is retried.
        self.scheduled_for = scheduled_for
        #: The method called, and the params exactly as the server sent them.
        self.method = method
        self.params = params
        self.handler_id = handler_id
        self.instance_id = instance_id
        #: When the server stops waiting, on the ``time.monotonic()`` clock.
        self.deadline = deadline
        self._cancelled = threading.Event()
        self._async_cancelled: Optional[asyncio.Event] = None
        self._reason: Optional[str] = None

    def time_left(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(0.0, self.deadline - time.monotonic())

    @property
    def cancelled(self) -> bool:
        """Whether the call has been cancelled (by the server, or because its deadline passed)."""
        return self._cancelled.is_set()

    @property
    def cancel_reason(self) -> Optional[str]:
        """``"cancelled"`` (the server's cancel), ``"deadline exceeded"``, ``"closing"`` (the
        handler is closing without drain), or None while the call is not cancelled."""
        return self._reason

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the call is cancelled or ``timeout`` seconds pass; True if cancelled.
        For sync methods: ``while not ctx.wait(1.0): poll_something()``."""
        return self._cancelled.wait(timeout)

    def sleep(self, seconds: float) -> None:
        """Sleeps ``seconds``, or raises :class:`CallCancelled` as soon as the call is cancelled."""
        if self._cancelled.wait(seconds):
            raise CallCancelled(self._reason or "cancelled")

    def raise_if_cancelled(self) -> None:
        """Raises :class:`CallCancelled` if the call has been cancelled."""
        if self._cancelled.is_set():
            raise CallCancelled(self._reason or "cancelled")

    async def until_cancelled(self) -> None:
        """Completes when the call is cancelled (for ``async def`` methods that race their work
        against it, e.g. ``asyncio.wait({work, until_cancelled}, return_when=FIRST_COMPLETED)``)."""
        if self._async_cancelled is None:
            self._async_cancelled = asyncio.Event()
            if self._cancelled.is_set():
                self._async_cancelled.set()
        await self._async_cancelled.wait()

    def _cancel(self, reason: str) -> None:
        """Called on the event loop's thread by the SDK."""
        if self._cancelled.is_set():
            return
        self._reason = reason
        self._cancelled.set()
        if self._async_cancelled is not None:
            self._async_cancelled.set()

    def __repr__(self) -> str:
        return (
            f"CallContext(run_id={self.run_id!r}, attempt={self.attempt}, method={self.method!r}, "
            f"scheduled_for={self.scheduled_for.isoformat()!r}, time_left={self.time_left():.3f})"
        )


def context() -> CallContext:
    """The context of the call being served, from anywhere inside a method (its thread, or its
    task and the tasks it starts). Raises LookupError outside a call."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("schedulezero.context() is only available while a method serves a call") from None


_FRACTION = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$")


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time as the server sends it (``2027-01-15T08:00:00.123456789Z``), as an aware
    UTC datetime. Python before 3.11 reads neither ``Z`` nor 9-digit fractions."""
    m = _FRACTION.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    head, fraction, zone = m.groups()
    if zone in ("Z", "z"):
        zone = "+00:00"
    fraction = "." + (fraction + "000000")[:6] if fraction else ""
    parsed = datetime.datetime.fromisoformat(head + fraction + zone)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)
