#!/usr/bin/env python3
"""A complete native ScheduleZero handler in Python with pyzmq (docs/PROTOCOL.md, docs/HANDLERS.md).
Usage: python3 native_handler.py [ENDPOINT [HANDLER_ID]]; SIGTERM or Ctrl-C drains, then exits."""
import json, os, queue, signal, socket, sys, threading, time, uuid
import zmq

def greet(params, call):  # call: run_id, attempt, scheduled_for, deadline_ms, method, params
    return {"greeting": "hello " + params.get("name", "world"), "run_id": call["run_id"]}

METHODS, CAPACITY = {"greet": greet}, 4
ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:4242"
HELLO = {"type": "hello", "handler_id": sys.argv[2] if len(sys.argv) > 2 else "py-demo",
         "instance_id": os.environ.get("SCHEDULEZERO_INSTANCE_ID") or f"{socket.gethostname()}-{os.getpid()}",
         "methods": list(METHODS), "capacity": CAPACITY, "agent": "docs-example/1",
         "session": str(uuid.uuid4())}  # new at every start: the server sees a restart, not a reconnect
sock = zmq.Context().socket(zmq.DEALER)
for option, value in [(zmq.RECONNECT_IVL, 100), (zmq.RECONNECT_IVL_MAX, 1000), (zmq.HEARTBEAT_IVL, 1000),
                      (zmq.HEARTBEAT_TIMEOUT, 3000), (zmq.HEARTBEAT_TTL, 3000), (zmq.LINGER, 0),
                      (zmq.MAXMSGSIZE, 4 << 20)]:
    sock.setsockopt(option, value)
sock.connect(ENDPOINT)
send = lambda msg: sock.send_multipart([b"SZ1", json.dumps(msg).encode()], zmq.NOBLOCK)
finished, running, stop = queue.Queue(), set(), []  # results from worker threads; (run_id, attempt) in flight
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.append(True))

def work(call):  # runs in its own thread; the main loop owns the socket
    key = {"type": "result", "run_id": call["run_id"], "attempt": call["attempt"]}
    try:
        finished.put({**key, "success": True, "result": METHODS[call["method"]](call["params"], call)})
    except Exception as e:  # a failure, recorded with this text and retried per the schedule's policy
        finished.put({**key, "success": False, "error": f"{type(e).__name__}: {e}"})

welcomed, said_goodbye, heartbeat, next_tick = False, False, 1.0, 0.0
while not (stop and not running):
    if stop and welcomed and not said_goodbye:  # drain: no new calls, finish those in flight
        send({"type": "goodbye", "reason": "shutting down"}); said_goodbye = True
    if time.monotonic() >= next_tick:  # hello every second until welcomed, then heartbeats
        send({"type": "heartbeat", "in_flight": len(running)} if welcomed else HELLO)
        next_tick = time.monotonic() + (heartbeat if welcomed else 1.0)
    while sock.poll(100 if finished.empty() else 0):
        frames = sock.recv_multipart()
        msg = json.loads(frames[1]) if len(frames) == 2 and frames[0] == b"SZ1" else {"type": "?"}
        if msg["type"] == "welcome":
            welcomed, said_goodbye, heartbeat = True, False, max(msg["heartbeat_ms"], 10) / 1000
            next_tick = time.monotonic() + heartbeat; print("registered", HELLO["instance_id"], flush=True)
        elif msg["type"] == "hello_again" and welcomed:  # server restarted: one hello per burst
            welcomed, next_tick = False, 0.0
        elif msg["type"] == "refused":  # the hello broke a rule (named here); it is retried every second
            welcomed = False; print("refused:", msg["error"], file=sys.stderr, flush=True)
        elif msg["type"] == "error":
            print("server error:", msg["error"], file=sys.stderr, flush=True)
        elif msg["type"] == "call" and (msg["run_id"], msg["attempt"]) not in running:
            if stop or len(running) >= CAPACITY:
                send({"type": "result", "run_id": msg["run_id"], "attempt": msg["attempt"], "success": False,
                      "refused": True, "error": "draining" if stop else "over capacity"})
            else:
                running.add((msg["run_id"], msg["attempt"]))
                threading.Thread(target=work, args=(msg,), daemon=True).start()
        # "cancel": a Python thread cannot be stopped; the server has already recorded the outcome.
    while not finished.empty():
        result = finished.get(); running.discard((result["run_id"], result["attempt"])); send(result)
send({"type": "bye"}); sock.setsockopt(zmq.LINGER, 1000); sock.close()
print("drained", flush=True)
