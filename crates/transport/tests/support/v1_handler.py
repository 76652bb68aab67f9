#!/usr/bin/env python3
"""A version-1 ScheduleZero handler, written to ../shared/COMPAT.md section 3 by the letter.

It uses only pyzmq (not ScheduleZero's SDK), like handlers written for the original:
  - binds a REP socket (port chosen by the OS) and serves one request at a time;
  - registers over REQ/REP at the server (`register` with handler_id, address, methods),
    retrying every 15 s up to 5 times when refused or unanswered;
  - once registered, pings the server every 30 s on the same socket; a failed ping registers again;
  - on SIGTERM reports itself `offline` (report_status) and exits.

Usage: v1_handler.py SERVER_ENDPOINT HANDLER_ID CALL_LOG
Prints `registered <address>` on stdout each time the server accepts its registration.
Every call it receives is appended to CALL_LOG as one JSON line before it runs.

Methods: `echo` (returns {"echo": params}), `sleep` ({"seconds": S}), `fail` (raises
params.message), `value` (returns params.value, not a dict) and `gate` ({"path": P, "timeout": S}:
returns once the file P exists, fails after S seconds, default 60), which lets a test hold calls
in flight for exactly as long as it needs, whatever the machine's speed.
"""
import json
import os
import signal
import sys
import threading
import time

import zmq

SERVER, HANDLER_ID, CALL_LOG = sys.argv[1], sys.argv[2], sys.argv[3]
REGISTER_RETRY_S = 15
REGISTER_ATTEMPTS = 5
PING_EVERY_S = 30
REPLY_TIMEOUT_MS = 5000

ctx = zmq.Context()
stopping = threading.Event()


def method_echo(params):
    return {"echo": params}


def method_sleep(params):
    time.sleep(float(params.get("seconds", 1)))
    return {"slept": params.get("seconds", 1)}


def method_fail(params):
    raise RuntimeError(params.get("message", "failed on purpose"))


def method_value(params):
    return params.get("value")  # not a dict: wrapped as {"success": true, "result": value}


def method_gate(params):
    path = params["path"]
    started = time.time()
    deadline = started + float(params.get("timeout", 60))
    while not os.path.exists(path):
        if time.time() > deadline:
            raise RuntimeError(f"gate {path} still closed after {params.get('timeout', 60)} s")
        time.sleep(0.02)
    return {"gate": path, "waited_s": round(time.time() - started, 3)}


METHODS = {
    "echo": method_echo,
    "sleep": method_sleep,
    "fail": method_fail,
    "value": method_value,
    "gate": method_gate,
}


def server_request(sock, method, params):
    """One REQ/REP exchange with the server; None when unanswered (the socket is then unusable)."""
    sock.send_string(json.dumps({"method": method, "params": params}))
    if sock.poll(REPLY_TIMEOUT_MS) == 0:
        return None
    return json.loads(sock.recv_string())


def new_server_socket():
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(SERVER)
    return s


def register(address):
    """Registers, retrying every 15 s up to 5 times. Returns the socket to keep pinging on."""
    for _ in range(REGISTER_ATTEMPTS):
        sock = new_server_socket()
        reply = server_request(
            sock, "register", {"handler_id": HANDLER_ID, "address": address, "methods": sorted(METHODS)}
        )
        if reply is not None and reply.get("success"):
            print(f"registered {address}", flush=True)
            return sock
        sock.close(0)
        if stopping.wait(REGISTER_RETRY_S):
            return None
    return None


def keep_registered(address):
    sock = register(address)
    while not stopping.wait(PING_EVERY_S):
        reply = server_request(sock, "ping", {}) if sock is not None else None
        if reply is None or not reply.get("success"):
            if sock is not None:
                sock.close(0)
            sock = register(address)
    if sock is not None:
        sock.close(0)


def handle(request):
    method = request.get("method")
    params = request.get("params") or {}
    if method == "ping":
        return {"success": True, "message": "pong", "handler_id": HANDLER_ID}
    with open(CALL_LOG, "a") as log:
        log.write(json.dumps({"method": method, "params": params, "at": time.time()}) + "\n")
    fn = METHODS.get(method)
    if fn is None:
        return {"success": False, "error": f"Unknown method: {method}"}
    try:
        result = fn(params)
    except Exception as e:  # the original answers a raising method with success: false
        return {"success": False, "error": str(e)}
    if isinstance(result, dict):
        result.setdefault("success", True)
        return result
    return {"success": True, "result": result}


def main():
    rep = ctx.socket(zmq.REP)
    rep.bind("tcp://127.0.0.1:*")
    address = rep.getsockopt_string(zmq.LAST_ENDPOINT)

    def on_term(*_):
        stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=keep_registered, args=(address,), daemon=True).start()

    while not stopping.is_set():
        if rep.poll(200) == 0:
            continue
        raw = rep.recv()
        try:
            request = json.loads(raw)
        except ValueError:
            rep.send_string(json.dumps({"success": False, "error": "Invalid JSON"}))
            continue
        rep.send_string(json.dumps(handle(request)))

    sock = new_server_socket()
    server_request(sock, "report_status", {"handler_id": HANDLER_ID, "status": "offline"})
    sock.close(0)
    rep.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
