"""Unit tests without a server: declaring handlers and methods, binding params to a method's
signature, encoding outcomes, parsing the server's times, and the hello/heartbeat timer."""

import asyncio
import datetime
import json
import re
from pathlib import Path

import pytest

import schedulezero
from schedulezero import CallContext, Handler, MethodError
from schedulezero._link import FIRST_HELLO_RETRY, MAX_FRAME_BYTES, Link, LinkState
from schedulezero._methods import MethodSpec, ParamsError, exception_frame, result_frame
from schedulezero._context import parse_time


def ctx(**over):
    base = dict(
        run_id="r1",
        attempt=1,
        scheduled_for=datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.timezone.utc),
        method="m",
        params={},
        handler_id="h",
        instance_id="i",
        deadline=0.0,
    )
    base.update(over)
    return CallContext(**base)


def test_declaration_refuses_what_the_server_would_refuse_naming_the_field():
    for bad, field in [("", "handler_id"), ("  ", "handler_id"), ("a\x07b", "handler_id"), ("é" * 129, "handler_id")]:
        with pytest.raises(ValueError, match=field):
            Handler(bad)
    with pytest.raises(ValueError, match="instance_id"):
        Handler("h", instance_id="x\u0085")
    for cap in (0, 10001, 1.5, True):
        with pytest.raises(ValueError, match="capacity"):
            Handler("h", capacity=cap)
    Handler("h", capacity=10000, instance_id="é" * 128)  # 256 bytes: accepted


def test_methods_are_registered_by_decorator_once_each_and_returned_unchanged():
    h = Handler("h")

    @h.method
    def a():
        return 1

    @h.method("b-name")
    async def b():
        return 2

    @h.method(name="c", raw_params=True)
    def c(params):
        return params

    assert a() == 1 and h.methods == ["a", "b-name", "c"]
    assert h._methods["b-name"].is_async and not h._methods["a"].is_async
    with pytest.raises(ValueError, match="declared twice"):
        h.method("a")(lambda: None)
    with pytest.raises(ValueError, match="control"):
        h.method("x\n")(lambda: None)
    with pytest.raises(ValueError, match="at least one method"):
        asyncio.run(Handler("empty").serve("tcp://127.0.0.1:1"))


def test_hello_declares_ids_methods_capacity_agent_and_a_session_new_per_handler(monkeypatch):
    monkeypatch.setenv("SCHEDULEZERO_INSTANCE_ID", "from-env")
    h = Handler("reports", capacity=3, credential="s3cret")
    h.method("build")(lambda: None)
    hello = h._hello()
    assert hello["instance_id"] == "from-env"
    assert (hello["handler_id"], hello["methods"], hello["capacity"], hello["credential"]) == (
        "reports",
        ["build"],
        3,
        "s3cret",
    )
    assert hello["agent"] == f"schedulezero-python/{schedulezero.__version__}"
    assert re.fullmatch(r"[0-9a-f-]{36}", hello["session"]) and hello["session"] != Handler("reports").session_id
    monkeypatch.delenv("SCHEDULEZERO_INSTANCE_ID")
    assert Handler("reports").instance_id.endswith(f"-{__import__('os').getpid()}")


def test_endpoint_defaults_to_the_environment_then_the_servers_default(monkeypatch):
    monkeypatch.delenv("SCHEDULEZERO_SERVER_ENDPOINT", raising=False)
    assert schedulezero.default_endpoint() == "tcp://127.0.0.1:4242"
    monkeypatch.setenv("SCHEDULEZERO_SERVER_ENDPOINT", "tcp://10.0.0.5:5000")
    assert schedulezero.default_endpoint() == "tcp://10.0.0.5:5000"


def test_params_arrive_as_keywords_and_mismatches_name_the_parameter():
    def build(day: str, ctx: CallContext, fmt: str = "pdf"):
        return {"day": day, "ctx": ctx, "fmt": fmt}

    spec = MethodSpec("build", build, raw_params=False)
    c = ctx()
    args, kwargs = spec.bind({"day": "2027-01-14"}, c)
    assert build(*args, **kwargs) == {"day": "2027-01-14", "ctx": c, "fmt": "pdf"}
    with pytest.raises(ParamsError, match="missing a required argument: 'day'"):
        spec.bind({}, c)
    with pytest.raises(ParamsError, match="unexpected keyword argument 'colour'"):
        spec.bind({"day": "d", "colour": "red"}, c)
    with pytest.raises(ParamsError, match="must not contain 'ctx'"):
        spec.bind({"day": "d", "ctx": 1}, c)


def test_context_goes_to_an_annotated_parameter_whatever_its_name_and_raw_params_get_the_dict():
    def annotated(call: "CallContext", **rest):
        return call, rest

    spec = MethodSpec("a", annotated, raw_params=False)
    c = ctx()
    assert spec.context_param == "call"
    args, kwargs = spec.bind({"x": 1, "y-z": 2}, c)
    assert annotated(*args, **kwargs) == (c, {"x": 1, "y-z": 2})

    def raw(payload, context):
        return payload, context

    spec = MethodSpec("r", raw, raw_params=True)
    args, kwargs = spec.bind({"ctx": 1, "any-key": 2}, c)
    assert raw(*args, **kwargs) == ({"ctx": 1, "any-key": 2}, c)
    with pytest.raises(TypeError, match="no parameter for the params dict"):
        MethodSpec("bad", lambda ctx: None, raw_params=True)


def test_outcomes_encode_to_result_frames_and_unserialisable_values_fail_clearly():
    ok = json.loads(result_frame("r", 2, {"rows": 3}))
    assert ok == {"type": "result", "run_id": "r", "attempt": 2, "success": True, "result": {"rows": 3}}
    for bad in ({1, 2}, float("nan"), object()):
        failed = json.loads(result_frame("r", 1, bad))
        assert failed["success"] is False and "not JSON-serialisable" in failed["error"]
    err = json.loads(exception_frame("r", 1, ValueError("bad day"), None))
    assert err["error"] == "ValueError: bad day" and err["result"]["exception"] == "ValueError"
    assert "Traceback" in err["result"]["traceback"] or err["result"]["traceback"].startswith("ValueError")
    detail = json.loads(exception_frame("r", 1, MethodError("disk full", {"free": 0}), None))
    assert (detail["error"], detail["result"]) == ("disk full", {"free": 0})
    cancelled = json.loads(exception_frame("r", 1, asyncio.CancelledError(), "deadline exceeded"))
    assert cancelled["error"] == "deadline exceeded"


def test_server_times_parse_with_z_and_nanoseconds():
    assert parse_time("2027-01-15T08:00:00Z") == datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.timezone.utc)
    t = parse_time("2027-01-15T08:00:01.123456789Z")
    assert t.microsecond == 123456 and t.tzinfo == datetime.timezone.utc
    assert parse_time("2027-01-15T09:00:00.5+01:00") == datetime.datetime(
        2027, 1, 15, 8, 0, 0, 500000, tzinfo=datetime.timezone.utc
    )
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_context_cancellation_is_visible_to_threads_and_tasks():
    c = ctx()
    assert not c.cancelled and c.wait(0) is False and c.cancel_reason is None
    c.raise_if_cancelled()

    async def main():
        waiter = asyncio.ensure_future(c.until_cancelled())
        await asyncio.sleep(0)
        assert not waiter.done()
        c._cancel("cancelled")
        await asyncio.wait_for(waiter, 5)

    asyncio.run(main())
    assert c.cancelled and c.wait(0) and c.cancel_reason == "cancelled"
    with pytest.raises(schedulezero.CallCancelled):
        c.sleep(10)
    with pytest.raises(LookupError, match="only available"):
        schedulezero.context()


def test_hello_is_repeated_with_backoff_capped_at_one_second_until_welcomed():
    link = Link(0.0)
    assert link.state() is LinkState.CONNECTING and link.due(0.0) == "hello"
    assert link.due(0.249) is None
    waits, at = [], 0.0
    for _ in range(5):
        waits.append(round(link.next - at, 3))
        at = link.next
        assert link.due(at) == "hello"
    assert waits == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_welcome_switches_to_heartbeats_and_one_hello_answers_a_burst_of_hello_again():
    link = Link(0.0)
    link.due(0.0)
    link.welcome(100, 1024, 0.005)
    assert link.state() is LinkState.REGISTERED and link.max_frame_bytes == 1024
    assert link.due(0.104) is None
    assert link.due(0.106) == "heartbeat" and link.next == pytest.approx(0.206)
    assert link.forgotten(0.3) is True and link.state() is LinkState.CONNECTING
    assert link.forgotten(0.301) is False, "a hello is already on its way"
    assert link.next == pytest.approx(0.3 + FIRST_HELLO_RETRY) and link.max_frame_bytes == MAX_FRAME_BYTES
    link.welcome(0, 0, 1.0)
    assert link.heartbeat == 0.01 and link.max_frame_bytes == MAX_FRAME_BYTES
    link.draining = True
    link.refused()
    assert link.state() is LinkState.DRAINING


def test_the_package_declares_its_version_and_ships_type_information():
    root = Path(__file__).resolve().parents[1]
    assert f'version = "{schedulezero.__version__}"' in (root / "pyproject.toml").read_text()
    assert (root / "src" / "schedulezero" / "py.typed").is_file()


def test_a_malformed_endpoint_is_an_error_naming_it():
    h = Handler("h")
    h.method("m")(lambda: None)
    with pytest.raises(ValueError, match="cannot connect to the server endpoint 'not-an-endpoint'"):
        asyncio.run(h.serve("not-an-endpoint", handle_signals=False))
    with pytest.raises(ValueError, match="endpoint must be a ZeroMQ endpoint"):
        asyncio.run(h.serve("  ", handle_signals=False))
    assert h.state is LinkState.IDLE, "nothing was served"
