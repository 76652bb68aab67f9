"""The SDK against the real `schedulezero serve`: handler processes built on it, schedules made
and runs checked through the HTTP API. Concurrency up to capacity, the call context, errors,
cancellation and deadlines, size limits, drain on SIGTERM, coming back after the server is killed
and restarted, and the warning when nothing answers."""

import signal
import socket
import time

import pytest

from schedulezero._context import parse_time
from support import HandlerProc, log_tail, poll

# Shared-server tests use one handler process with capacity 3.
CAPACITY = 3


@pytest.fixture(scope="module")
def served(shared):
    server = shared.server()
    handler = shared.handler(server, "py-sdk", capacity=CAPACITY, instance_id="py-sdk-1")
    server.wait_connected("py-sdk", "py-sdk-1")
    return server, handler


def one_run(server, name, method, params=None, timeout=60):
    server.schedule(name, "py-sdk", method, params, timeout=timeout)
    return server.run(name)


def attempts(server, run_id):
    return server.get_run(run_id)["attempts"]


def test_sync_calls_run_concurrently_up_to_capacity_and_never_beyond(served):
    server, handler = served
    server.schedule("hold-sync", "py-sdk", "hold", {"n": CAPACITY})
    runs = [server.run("hold-sync") for _ in range(2 * CAPACITY)]
    finished = [server.finished(r, timeout=60) for r in runs]
    assert all(r["state"] == "succeeded" for r in finished), (finished, handler.log())
    # Each batch of CAPACITY calls only completes when all of it runs at once; a refusal over
    # capacity would have shown as a lost attempt, failing these one-attempt runs.
    assert max(r["result"]["peak"] for r in finished) == CAPACITY
    assert all(r["attempt"] == 1 and len(attempts(server, r["run_id"])) == 1 for r in finished)


def test_async_calls_run_concurrently_up_to_capacity(served):
    server, handler = served
    server.schedule("hold-async", "py-sdk", "hold_async", {"n": CAPACITY})
    runs = [server.run("hold-async") for _ in range(2 * CAPACITY)]
    finished = [server.finished(r, timeout=60) for r in runs]
    assert all(r["state"] == "succeeded" for r in finished), (finished, handler.log())
    assert max(r["result"]["peak"] for r in finished) == CAPACITY


def test_the_method_knows_run_id_attempt_slot_and_deadline(served):
    server, _ = served
    run_id = one_run(server, "info", "info", timeout=40)
    run = server.finished(run_id)
    assert run["state"] == "succeeded", run
    got = run["result"]
    assert (got["run_id"], got["attempt"], got["method"], got["instance_id"]) == (run_id, 1, "info", "py-sdk-1")
    assert parse_time(got["scheduled_for"]) == parse_time(run["scheduled_for"])
    assert 0 < got["time_left"] <= 40 and got["time_left"] > 40 - 15, got
    assert abs(got["deadline_in"] - got["time_left"]) < 1


def test_async_methods_get_the_context_too_and_run_now_answers(served):
    server, _ = served
    reply = server.ok("POST", "/api/run_now", {"handler_id": "py-sdk", "job_method": "info_async", "timeout": 9})
    assert reply["status"] == "success" and reply["result"]["run_id"] == reply["run_id"]
    assert 0 < reply["result"]["time_left"] <= 9


def test_params_arrive_as_keywords_or_as_a_whole_dict(served):
    server, _ = served
    echo = server.ok(
        "POST", "/api/run_now", {"handler_id": "py-sdk", "job_method": "echo", "job_params": {"a": 1, "b": [2]}}
    )
    assert echo["result"] == {"a": 1, "b": [2]}
    whole = server.ok(
        "POST", "/api/run_now", {"handler_id": "py-sdk", "job_method": "whole", "job_params": {"ctx": "mine"}}
    )
    assert whole["result"] == {"params": {"ctx": "mine"}, "attempt": 1}


@pytest.mark.parametrize(
    "name, method, params, error, detail",
    [
        ("exception", "boom", {"message": "bad day"}, "ValueError: bad day", "ValueError"),
        ("method-error", "fail_detail", {}, "disk full", {"free_bytes": 0}),
        (
            "not-json",
            "not_json",
            {},
            "the method's result is not JSON-serialisable (Object of type set is not JSON serializable)",
            None,
        ),
        (
            "bad-params",
            "boom",
            {"mesage": "typo"},
            "do not fit boom(message: str) -> None: missing a required argument: 'message'",
            None,
        ),
    ],
)
def test_failures_are_recorded_with_their_error(served, name, method, params, error, detail):
    server, _ = served
    run_id = one_run(server, f"fail-{name}", method, params)
    run = server.finished(run_id)
    assert run["state"] == "failed", run
    assert error in run["error"], run
    if detail == "ValueError":
        assert run["result"]["exception"] == "ValueError" and "bad day" in run["result"]["traceback"]
    elif detail is not None:
        assert run["result"] == detail
    assert attempts(server, run_id)[0]["outcome"] == "failed"


def test_a_result_over_the_frame_limit_becomes_an_error_saying_so(served):
    server, _ = served
    run_id = one_run(server, "huge", "huge", {"size": 5 << 20})
    run = server.finished(run_id)
    assert run["state"] == "failed" and "bytes; the server accepts at most 4194304" in run["error"], run
    # The handler is still registered and serving afterwards.
    assert server.ok("POST", "/api/run_now", {"handler_id": "py-sdk", "job_method": "echo"})["status"] == "success"


@pytest.mark.parametrize("method", ["wait_cancel", "wait_cancel_async"])
def test_cancelling_a_run_reaches_the_method(served, method):
    server, handler = served
    run_id = one_run(server, f"cancel-{method}", method)
    handler.marker("started", run_id)
    server.ok("POST", f"/api/runs/{run_id}/cancel")
    seen = handler.marker("cancelled", run_id, timeout=15)
    assert "cancelled" in seen, seen
    assert server.finished(run_id)["state"] == "cancelled"


def test_the_deadline_cancels_the_method_and_the_run_times_out(served):
    server, handler = served
    run_id = one_run(server, "deadline", "wait_cancel", timeout=2)
    handler.marker("started", run_id)
    started = time.monotonic()
    seen = handler.marker("cancelled", run_id, timeout=15)
    # The server's cancel at its deadline, or the handler's own deadline a moment later.
    assert seen in ("cancelled", "deadline exceeded"), seen
    assert time.monotonic() - started < 2 + 5
    assert server.finished(run_id)["state"] == "timed_out"


def test_sigterm_during_a_two_second_call_lets_it_finish_and_records_its_result(spawn):
    server = spawn.server()
    handler = spawn.handler(server, "drain", capacity=2)
    server.wait_connected("drain", "drain-1")
    server.schedule("slow", "drain", "slow", {"seconds": 2})
    run_id = server.run("slow")
    handler.marker("started", run_id)
    handler.proc.send_signal(signal.SIGTERM)
    # Draining: the server routes nothing new here, and a call that still arrives is refused.
    late = server.run("slow")
    code = handler.proc.wait(timeout=2 + 15)
    assert code == 0, handler.log()
    run = server.finished(run_id)
    assert run["state"] == "succeeded" and run["result"] == {"slept": 2}, run
    assert [a["outcome"] for a in attempts(server, run_id)] == ["succeeded"]
    assert not handler.has_marker("started", late), "a call that came during the drain ran"
    assert server.get_run(late)["state"] != "succeeded"
    log = handler.log()
    assert "SIGTERM received" in log and "draining: 1 call(s) in flight" in log and "drained" in log, log
    instance = server.instances("drain")[0]
    assert instance["status"] == "Disconnected", instance  # the bye


def test_a_killed_and_restarted_server_gets_the_handler_back_within_5_s(spawn):
    server = spawn.server()
    handler = spawn.handler(server, "comeback", capacity=1)
    server.wait_connected("comeback", "comeback-1")
    before = server.ok("POST", "/api/run_now", {"handler_id": "comeback", "job_method": "echo", "job_params": {"n": 1}})
    assert before["result"] == {"n": 1}
    zmq_before = server.zmq

    assert server.kill(signal.SIGKILL) == -signal.SIGKILL
    spawned = time.monotonic()
    server.start()
    ready = time.monotonic()
    assert server.zmq == zmq_before, "the restarted server must reuse its recorded handler port"

    def registered_again():
        found = [i for i in server.instances("comeback") if i["instance_id"] == "comeback-1"]
        return bool(found) and found[0]["status"] == "Connected", found

    poll("the handler registered with the restarted server", registered_again, 15)
    back = time.monotonic()
    after = server.ok("POST", "/api/run_now", {"handler_id": "comeback", "job_method": "echo", "job_params": {"n": 2}})
    assert after["result"] == {"n": 2}
    assert handler.proc.poll() is None, "the handler process must not have restarted"
    print(f"handler back {back - ready:.2f} s after the server was ready ({back - spawned:.2f} s after its start)")
    assert back - ready < 5, f"back after {back - ready:.2f} s\n{handler.log()}\n{log_tail(server.log_path)}"
    assert "saying hello again" in handler.log()


def test_a_handler_with_nothing_answering_warns_naming_the_endpoint_and_still_stops_cleanly(spawn, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = HandlerProc(f"tcp://127.0.0.1:{port}", "nobody", 1, tmp_path, "nobody-1")
    spawn.handlers.append(handler)
    expected = f"no answer from tcp://127.0.0.1:{port} for 5 s; is a ScheduleZero server listening there?"
    poll("the silence warning", lambda: (expected in handler.log(), handler.log()), 5 + 15)
    handler.proc.send_signal(signal.SIGTERM)
    assert handler.proc.wait(timeout=15) == 0, handler.log()
