"""Shared helpers of the end-to-end scripts: the real `schedulezero` server and version-1 pyzmq
handlers as child processes, HTTP through urllib only, checks that print what they verified.

Every process started here is killed by PID when the script ends, however it ends (a failure, an
exception, SIGTERM from the test runner); on Linux the children also die with the script if it is
killed outright (PR_SET_PDEATHSIG).
"""
import argparse
import ctypes
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_HANDLER = os.path.normpath(os.path.join(HERE, "../../../transport/tests/support/v1_handler.py"))
DEFAULT_BIN = os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or os.path.normpath(os.path.join(HERE, "../../../../target")),
    "debug",
    "schedulezero",
)


class Failure(Exception):
    """A check that did not hold: the message says what was expected and what was seen."""


def check(cond, what, seen=None, hint=""):
    """Prints `ok  <what>` when `cond` holds; otherwise fails naming what was seen (and `hint`)."""
    if not cond:
        raise Failure(f"{what}\n    seen: {short(seen)}{hint}")
    print(f"  ok  {what}", flush=True)


def short(value, limit=1500):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def poll(what, probe, within, hint=""):
    """Calls `probe` until it returns (True, value), then returns value. `within` has ≥3× slack
    over what the behaviour needs on an idle machine: the machine may be shared and slow."""
    deadline = time.monotonic() + within
    seen = None
    while True:
        done, seen = probe()
        if done:
            print(f"  ok  {what}", flush=True)
            return seen
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {within} s\n    last seen: {short(seen)}{hint}")
        time.sleep(0.05)


def section(title):
    print(f"\n== {title}", flush=True)


def parse_time(text):
    """An RFC 3339 time from the server as Unix seconds (Python before 3.11 reads neither `Z` nor
    fractions other than 3 or 6 digits: normalised first)."""
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if m is None:
        raise Failure(f"not an RFC 3339 time: {text!r}")
    head, fraction, offset = m.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    return datetime.datetime.fromisoformat(f"{head}.{micros}{'+00:00' if offset == 'Z' else offset}").timestamp()


# --- HTTP, urllib only (proxies from the environment ignored: this is a loopback server) -------

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(base, method, path, body=None, raw=None, headers=None, content_type="application/json"):
    """One request: (status, parsed JSON body, or the text when it is not JSON).

    `body` is sent as JSON; `raw` as bytes as they are; `content_type=None` leaves urllib's
    default (form-encoded), as a careless script would.
    """
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None and content_type:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with _opener.open(req, timeout=60) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode(errors="replace")


# --- processes ------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the finally clause still kills everything by PID


class Procs:
    """Every child this script started, to be killed by PID at the end."""

    def __init__(self):
        self.children = []

    def spawn(self, args, log_path, env=None):
        log = open(log_path, "ab")
        p = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.children.append(p)
        return p

    def kill_all(self):
        for p in self.children:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def wait_exit(p, within, what):
    try:
        return p.wait(timeout=within)
    except subprocess.TimeoutExpired:
        raise Failure(f"{what} did not exit within {within} s") from None


class Server:
    """`schedulezero serve` on the deployments root `<workdir>/root`, asked for port 0 (the OS
    chooses; a restart may take the previous ports again), its addresses read from the runtime
    file; each start's output in `<workdir>/server-<n>.log`."""

    def __init__(self, procs, binary, workdir):
        self.procs, self.binary, self.workdir = procs, binary, workdir
        self.root = os.path.join(workdir, "root")
        self.run_dir = os.path.join(self.root, "deployments", "default", "run")
        self.runtime_file = os.path.join(self.run_dir, "server.json")
        self.starts = 0
        self.proc = None
        self.base = self.zmq = None

    @property
    def log_path(self):
        return os.path.join(self.workdir, f"server-{self.starts}.log")

    def start(self):
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULEZERO_")}
        self.proc = self.procs.spawn(
            [self.binary, "serve", "--root", self.root, "--http", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0"],
            self.log_path,
            env=env,
        )

        # A server killed outright leaves its runtime file behind: wait for the new one, ours.
        def runtime():
            if self.proc.poll() is not None:
                raise Failure(f"the server exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            try:
                with open(self.runtime_file) as f:
                    info = json.load(f)
            except (OSError, ValueError) as e:
                return False, str(e)
            return info.get("pid") == self.proc.pid, info

        info = poll("the server writes its runtime file", runtime, 30)
        self.base, self.zmq = info["http"], info["zmq"]
        poll("the server is ready (GET /api/ready)", lambda: self._ready(), 30)
        print(f"  --  server #{self.starts} (PID {self.proc.pid}) at {self.base}, handlers {self.zmq}", flush=True)
        return self

    def _ready(self):
        try:
            status, body = self.get("/api/ready")
        except OSError as e:
            return False, str(e)
        return status == 200, body

    def term(self):
        """SIGTERM, then the exit code (the server stops gracefully)."""
        os.kill(self.proc.pid, signal.SIGTERM)
        return wait_exit(self.proc, 30, "the server, after SIGTERM,")

    def kill(self):
        """SIGKILL: no chance to clean up or record anything."""
        os.kill(self.proc.pid, signal.SIGKILL)
        return wait_exit(self.proc, 10, "the server, after SIGKILL,")

    def request(self, method, path, **kw):
        return http(self.base, method, path, **kw)

    def get(self, path, **kw):
        return http(self.base, "GET", path, **kw)

    def post(self, path, body=None, **kw):
        return http(self.base, "POST", path, body=body, **kw)

    def ok(self, method, path, body=None, status=200):
        """A request expected to succeed with `status`; its JSON body."""
        got, reply = http(self.base, method, path, body=body)
        if got != status:
            raise Failure(f"{method} {path} {short(body)}: expected {status}, got {got}\n    {short(reply)}")
        return reply

    def records(self, query=""):
        return self.ok("GET", "/api/executions?limit=1000" + query)["records"]


class V1Handler:
    """The pyzmq version-1 handler of the transport tests (COMPAT §3 by the letter)."""

    def __init__(self, procs, script, endpoint, handler_id, workdir, name):
        self.handler_id = handler_id
        self.call_log = os.path.join(workdir, f"{name}.calls")
        self.out = os.path.join(workdir, f"{name}.out")
        self.proc = procs.spawn(
            [sys.executable, "-u", script, endpoint, handler_id, self.call_log], self.out, env=dict(os.environ)
        )

    def registrations(self):
        try:
            with open(self.out) as f:
                return [line for line in f if line.startswith("registered ")]
        except OSError:
            return []

    def wait_registered(self):
        def probe():
            if self.proc.poll() is not None:
                raise Failure(f"the v1 handler exited with {self.proc.returncode}:\n{tail(self.out)}")
            return bool(self.registrations()), tail(self.out)

        poll(f"v1 handler '{self.handler_id}' registers", probe, 30)
        return self

    def calls(self):
        try:
            with open(self.call_log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []

    def term(self):
        os.kill(self.proc.pid, signal.SIGTERM)
        return wait_exit(self.proc, 20, f"v1 handler '{self.handler_id}', after SIGTERM,")


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})"


def main(description, body):
    """Parses the common arguments, runs `body(binary, handler_script, workdir, procs)`, and
    returns the exit code: 0 when every check held, 1 (with the logs' tails) on the first that
    did not. Everything spawned is killed in any case."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bin", default=os.environ.get("SCHEDULEZERO_BIN", DEFAULT_BIN), help="the schedulezero binary")
    ap.add_argument("--handler", default=DEFAULT_HANDLER, help="the version-1 handler script")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = ap.parse_args()
    try:
        import zmq  # noqa: F401  (the handler processes need it)
    except ImportError:
        print("FAIL: pyzmq is missing; run scripts/test (it installs it) or `python3 -m pip install pyzmq`")
        return 1
    if not os.access(args.bin, os.X_OK):
        print(f"FAIL: no schedulezero binary at {args.bin}; build it (cargo build -p schedulezero-cli) or pass --bin")
        return 1

    # The test runner stops a script that hangs with SIGTERM: unwind so `finally` kills children.
    def stopped(*_):
        raise Failure("stopped by SIGTERM (the test runner's time limit?)")

    signal.signal(signal.SIGTERM, stopped)
    workdir = tempfile.mkdtemp(prefix="schedulezero-e2e-")
    procs = Procs()
    started = time.monotonic()
    failed = True
    try:
        body(args.bin, args.handler, workdir, procs)
        failed = False
        print(f"\nPASS ({time.monotonic() - started:.1f} s)", flush=True)
        return 0
    except Failure as e:
        print(f"\nFAIL: {e}", flush=True)
    except Exception:
        print("\nFAIL: unexpected error\n" + traceback.format_exc(), flush=True)
    finally:
        procs.kill_all()
        if failed:
            for name in sorted(os.listdir(workdir)):
                if name.endswith((".log", ".out")):
                    print(f"\n--- tail of {name}\n{tail(os.path.join(workdir, name))}", flush=True)
        if args.keep or (failed and os.environ.get("SCHEDULEZERO_E2E_KEEP")):
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1
