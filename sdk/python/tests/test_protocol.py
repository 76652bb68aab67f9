"""The SDK's side of the protocol against a scripted server (a ZeroMQ ROUTER in the test), for
what the real server does not do on demand: calls beyond capacity, duplicates, unknown methods,
bursts of hello_again, refusals, the handler's own deadline, an abandoned method's capacity."""

import asyncio
import json
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
import zmq

from schedulezero import CallContext, Handler, LinkState
from support import poll

WELCOME = {"type": "welcome", "heartbeat_ms": 200, "max_frame_bytes": 4194304, "server": "fake/1"}


class FakeServer:
    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.peer: Optional[bytes] = None
        self.seen: List[Dict[str, Any]] = []

    def recv(self, timeout: float = 10) -> Optional[Dict[str, Any]]:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        peer, signature, body = self.sock.recv_multipart()
        assert signature == b"SZ1"
        self.peer = peer
        msg = json.loads(body)
        self.seen.append(msg)
        return msg

    def expect(self, kind: str, timeout: float = 10, skip: Tuple[str, ...] = ("heartbeat",)) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"no {kind} within {timeout} s; seen: {self.seen[-5:]}")
            if msg["type"] == kind:
                return msg
            if msg["type"] not in skip:
                raise AssertionError(f"expected {kind}, got {msg}")

    def send(self, msg: Dict[str, Any]) -> None:
        assert self.peer is not None
        self.sock.send_multipart([self.peer, b"SZ1", json.dumps(msg).encode()])

    def welcome(self) -> Dict[str, Any]:
        hello = self.expect("hello")
        self.send(WELCOME)
        return hello

    def call(
        self, run_id: str, method: str, params: Optional[dict] = None, deadline_ms: int = 30000, attempt: int = 1
    ) -> None:
        self.send(
            {
                "type": "call",
                "run_id": run_id,
                "attempt": attempt,
                "scheduled_for": "2027-01-15T08:00:00.123456789Z",
                "method": method,
                "params": params or {},
                "deadline_ms": deadline_ms,
            }
        )

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


class Served:
    """A Handler serving on a thread of its own; stopped (twice: drain, then close) at the end."""

    def __init__(self, handler: Handler, endpoint: str) -> None:
        self.handler = handler
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(endpoint,), daemon=True)
        self.thread.start()

    def _run(self, endpoint: str) -> None:
        try:
            asyncio.run(self.handler.serve(endpoint, handle_signals=False))
        except BaseException as e:  # reported by the test
            self.error = e

    def stop(self) -> None:
        self.handler.stop()
        self.thread.join(5)
        if self.thread.is_alive():
            self.handler.stop()
            self.thread.join(10)


@pytest.fixture
def fake():
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def serve(fake):
    started: List[Served] = []

    def start(handler: Handler) -> Served:
        s = Served(handler, fake.endpoint)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def gate_handler(capacity: int) -> Tuple[Handler, threading.Event]:
    h = Handler("fake", capacity=capacity, instance_id="fake-1")
    gate = threading.Event()

    @h.method
    def wait_gate() -> str:
        gate.wait(20)
        return "opened"

    @h.method
    def stubborn(seconds: float) -> str:
        time.sleep(seconds)  # ignores cancellation
        return "done"

    @h.method
    def info(ctx: CallContext) -> dict:
        return {"slot": ctx.scheduled_for.isoformat(), "time_left": ctx.time_left()}

    return h, gate


def test_hello_is_repeated_until_answered_and_welcome_starts_heartbeats(fake, serve):
    h, _ = gate_handler(2)
    serve(h)
    first = fake.expect("hello")
    assert (first["handler_id"], first["instance_id"], first["methods"], first["capacity"]) == (
        "fake",
        "fake-1",
        ["info", "stubborn", "wait_gate"],
        2,
    )
    again = fake.expect("hello", timeout=3)
    assert again == first, "every hello of a process is the same, session included"
    fake.send(WELCOME)
    beat = fake.expect("heartbeat", timeout=3, skip=("hello",))
    assert beat == {"type": "heartbeat", "in_flight": 0}
    poll("registered", lambda: (h.state is LinkState.REGISTERED, h.state), 5)


def test_calls_beyond_capacity_are_refused_and_duplicates_ignored(fake, serve):
    h, gate = gate_handler(2)
    serve(h)
    fake.welcome()
    fake.call("r1", "wait_gate")
    fake.call("r1", "wait_gate")  # a duplicate of a call in flight
    fake.call("r2", "wait_gate")
    fake.call("r3", "wait_gate")
    refused = fake.expect("result")
    assert (refused["run_id"], refused["success"], refused["refused"]) == ("r3", False, True)
    assert refused["error"] == "over capacity: this instance runs at most 2 calls at once"
    assert fake.expect("heartbeat", timeout=3)["in_flight"] == 2
    gate.set()
    results = sorted((fake.expect("result")["run_id"], fake.expect("result")["run_id"]))
    assert results == ["r1", "r2"]
    assert fake.recv(0.6) == {"type": "heartbeat", "in_flight": 0}, "one result per call"


def test_unknown_methods_fail_naming_what_is_offered(fake, serve):
    h, _ = gate_handler(1)
    serve(h)
    fake.welcome()
    fake.call("r1", "nope")
    result = fake.expect("result")
    assert result["error"] == "unknown method 'nope'; this instance offers: info, stubborn, wait_gate"
    assert result["success"] is False and "refused" not in result


def test_a_burst_of_hello_again_is_answered_with_one_hello(fake, serve):
    h, _ = gate_handler(1)
    serve(h)
    fake.welcome()
    for _ in range(3):
        fake.send({"type": "hello_again"})
    fake.expect("hello")
    fake.send(WELCOME)
    # Within the next 200 ms heartbeat intervals, no second hello.
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        msg = fake.recv(0.1)
        assert msg is None or msg["type"] == "heartbeat", msg


def test_a_refused_hello_is_retried(fake, serve):
    h, _ = gate_handler(1)
    serve(h)
    fake.expect("hello")
    fake.send({"type": "refused", "error": "invalid or missing credential"})
    fake.expect("hello", timeout=3)
    fake.send(WELCOME)
    fake.expect("heartbeat", timeout=3, skip=("hello",))


def test_the_handlers_own_deadline_stops_a_method_that_ignores_it_after_the_grace(fake, serve):
    h, _ = gate_handler(1)
    serve(h)
    fake.welcome()
    fake.call("r1", "info", deadline_ms=7000)
    info = fake.expect("result")["result"]
    assert info["slot"] == "2027-01-15T08:00:00.123456+00:00" and 5 < info["time_left"] <= 7
    started = time.monotonic()
    fake.call("r2", "stubborn", {"seconds": 6}, deadline_ms=300)
    result = fake.expect("result")
    took = time.monotonic() - started
    assert (result["run_id"], result["error"]) == ("r2", "deadline exceeded")
    assert 0.3 + 2 - 0.2 < took < 0.3 + 2 + 3, took
    # The abandoned thread still runs: it holds the only unit of capacity until it returns.
    fake.call("r3", "info")
    refused = fake.expect("result")
    assert (refused["run_id"], refused.get("refused")) == ("r3", True)


def test_a_cancel_from_the_server_cancels_an_async_methods_task(fake, serve):
    h = Handler("fake", capacity=1, instance_id="fake-1")
    seen: List[str] = []

    @h.method
    async def long(ctx: CallContext) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(f"{ctx.cancelled} {ctx.cancel_reason}")
            raise
        return "slept"

    serve(h)
    fake.welcome()
    fake.call("r1", "long")
    fake.expect("heartbeat", timeout=3)
    fake.send({"type": "cancel", "run_id": "r1", "attempt": 1})
    result = fake.expect("result", timeout=3)
    assert (result["success"], result["error"]) == (False, "cancelled")
    assert seen == ["True cancelled"]


def test_drain_says_goodbye_refuses_new_calls_finishes_the_rest_then_bye(fake, serve):
    h, gate = gate_handler(2)
    served = serve(h)
    fake.welcome()
    fake.call("r1", "wait_gate")
    fake.expect("heartbeat", timeout=3)
    h.stop()
    assert fake.expect("goodbye")["reason"] == "shutting down"
    fake.call("r2", "wait_gate")
    refused = fake.expect("result")
    assert (refused["run_id"], refused["refused"], refused["error"]) == (
        "r2",
        True,
        "draining: this instance takes no new calls",
    )
    assert fake.expect("heartbeat", timeout=3)["in_flight"] == 1, "heartbeats go on while draining"
    # A hello_again while draining: hello, then goodbye again after the welcome.
    fake.send({"type": "hello_again"})
    fake.welcome()
    fake.expect("goodbye")
    gate.set()
    assert fake.expect("result")["run_id"] == "r1"
    fake.expect("bye")
    served.thread.join(5)
    assert not served.thread.is_alive() and served.error is None
    assert h.state is LinkState.CLOSED
