"""The protocol's fixed values, the hello's validation rules and the registration state machine
(a port of crates/handler/src/link.rs): say hello, again with backoff until welcomed, then
heartbeat at the server's interval. No I/O here: the session sends what the link says is due."""

from __future__ import annotations

import enum
import unicodedata
from typing import List, Optional

SIGNATURE = b"SZ1"
#: The server's default handler endpoint, used when neither an endpoint nor
#: ``$SCHEDULEZERO_SERVER_ENDPOINT`` is given.
DEFAULT_ENDPOINT = "tcp://127.0.0.1:4242"
ENDPOINT_ENV = "SCHEDULEZERO_SERVER_ENDPOINT"
INSTANCE_ID_ENV = "SCHEDULEZERO_INSTANCE_ID"

#: The largest JSON frame the server accepts until its welcome says otherwise (and the largest
#: frame this handler accepts from it).
MAX_FRAME_BYTES = 4 << 20
MAX_NAME_BYTES = 256
MAX_METHODS = 1024
MAX_CAPACITY = 10_000

FIRST_HELLO_RETRY = 0.25
MAX_HELLO_RETRY = 1.0
MIN_HEARTBEAT = 0.01

#: libzmq socket options recommended by docs/PROTOCOL.md §2.2 (milliseconds).
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1000
ZMTP_HEARTBEAT_IVL_MS = 1000
ZMTP_HEARTBEAT_TIMEOUT_MS = 3000
ZMTP_HEARTBEAT_TTL_MS = 3000
CLOSING_LINGER_MS = 1000


class LinkState(str, enum.Enum):
    """Where the handler stands with the server (:attr:`Handler.state`)."""

    #: Not serving yet (before :meth:`Handler.serve`).
    IDLE = "idle"
    #: Saying hello; not (or no longer) known to the server. Calls may still arrive and run.
    CONNECTING = "connecting"
    #: Welcomed: the server may send calls.
    REGISTERED = "registered"
    #: Shutting down: new calls are refused; calls in flight finish and their results are sent.
    DRAINING = "draining"
    #: Done: ``bye`` was sent and serving returned.
    CLOSED = "closed"


def check_name(field: str, value: object) -> str:
    """``value`` if it is a valid id or method name (docs/PROTOCOL.md §4.1), else ValueError
    naming the field and the rule it breaks."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{field} must not be empty or blank")
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"{field} must be at most {MAX_NAME_BYTES} bytes of UTF-8, got {size}: {value[:40]!r}...")
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise ValueError(f"{field} must not contain control characters, got {value!r}")
    return value


def check_capacity(capacity: object) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise ValueError(f"capacity must be an integer, got {capacity!r}")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise ValueError(f"capacity must be between 1 and {MAX_CAPACITY}, got {capacity}")
    return capacity


def check_methods(names: List[str]) -> None:
    if not names:
        raise ValueError("a handler needs at least one method: decorate a function with @handler.method")
    if len(names) > MAX_METHODS:
        raise ValueError(f"a handler offers at most {MAX_METHODS} methods, got {len(names)}")


class Link:
    """The hello/heartbeat timer. Times are ``time.monotonic()`` seconds."""

    def __init__(self, now: float) -> None:
        self.heartbeat: Optional[float] = None  # set by a welcome, cleared by hello_again/refused
        self.max_frame_bytes = MAX_FRAME_BYTES
        self.draining = False
        self.next = now  # the first hello is due now
        self.hello_retry = FIRST_HELLO_RETRY

    @property
    def welcomed(self) -> bool:
        return self.heartbeat is not None

    def state(self) -> LinkState:
        if self.draining:
            return LinkState.DRAINING
        return LinkState.REGISTERED if self.welcomed else LinkState.CONNECTING

    def due(self, now: float) -> Optional[str]:
        """``"hello"``, ``"heartbeat"`` or None; reschedules the timer as if it was sent."""
        if now < self.next:
            return None
        if self.heartbeat is not None:
            self.next = now + self.heartbeat
            return "heartbeat"
        self.hello_sent(now)
        return "hello"

    def hello_sent(self, now: float) -> None:
        self.next = now + self.hello_retry
        self.hello_retry = min(self.hello_retry * 2, MAX_HELLO_RETRY)

    def welcome(self, heartbeat_ms: int, max_frame_bytes: int, now: float) -> None:
        self.heartbeat = max(heartbeat_ms / 1000.0, MIN_HEARTBEAT)
        # 0 means "not stated"
        self.max_frame_bytes = max_frame_bytes if max_frame_bytes > 0 else MAX_FRAME_BYTES
        self.hello_retry = FIRST_HELLO_RETRY
        self.next = now + self.heartbeat

    def refused(self) -> None:
        # The timer already holds the backed-off retry.
        self.heartbeat = None

    def forgotten(self, now: float) -> bool:
        """The server does not know this connection. True when a hello should go out now; False
        when one is already on its way, so a burst of ``hello_again`` (one per heartbeat queued
        while the server was down) costs one hello."""
        if self.heartbeat is None:
            return False
        self.heartbeat = None
        self.max_frame_bytes = MAX_FRAME_BYTES
        self.hello_retry = FIRST_HELLO_RETRY
        self.hello_sent(now)
        return True
