"""Helpers for the SDK's tests: the real `schedulezero serve` in a temp root (ports read from its
run/server.json), handler processes running tests/apps/handler_app.py, the HTTP API through
urllib, and polling with a deadline. Every process started here is killed by its fixture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

SDK_DIR = Path(__file__).resolve().parents[1]
REPO = SDK_DIR.parents[1]
APP = SDK_DIR / "tests" / "apps" / "handler_app.py"


def find_binary() -> Path:
    """`$SCHEDULEZERO_BIN`, else `$CARGO_TARGET_DIR/debug/schedulezero`, else the repository's
    target/debug/schedulezero."""
    if os.environ.get("SCHEDULEZERO_BIN"):
        return Path(os.environ["SCHEDULEZERO_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "schedulezero"


def poll(what: str, probe: Callable[[], Tuple[bool, Any]], timeout: float, interval: float = 0.05) -> Any:
    """Calls `probe` until it says done; returns its value, or fails naming `what` and the last
    value seen after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, value = probe()
        if done:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}; last seen: {value!r}")
        time.sleep(interval)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


class Server:
    """`schedulezero serve` on port 0 in `root`; `restart()` runs a new process on the same root
    (the server then takes the ports it recorded last time)."""

    def __init__(self, binary: Path, root: Path) -> None:
        self.binary, self.root = binary, root
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.http = self.zmq = ""
        self.log_path = root / "server-0.log"

    def start(self) -> "Server":
        self.starts += 1
        self.log_path = self.root / f"server-{self.starts}.log"
        runtime = self.root / "deployments" / "default" / "run" / "server.json"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    "serve",
                    "--root",
                    str(self.root),
                    "--http",
                    "127.0.0.1:0",
                    "--zmq",
                    "tcp://127.0.0.1:0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def published() -> Tuple[bool, Any]:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}:\n{log_tail(self.log_path)}")
            try:
                info = json.loads(runtime.read_text())
            except (OSError, ValueError) as e:
                return False, str(e)
            return info.get("pid") == proc.pid, info

        info = poll("the server to publish run/server.json", published, 30)
        self.http, self.zmq = info["http"], info["zmq"]
        poll("GET /api/ready → 200", lambda: (self.request("GET", "/api/ready")[0] == 200, None), 30)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.http + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            return 0, str(e)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, reply = self.request(method, path, body)
        assert got == status, f"{method} {path} → {got}, expected {status}: {reply}\n{log_tail(self.log_path)}"
        return reply

    # ---- the native API, as the tests use it --------------------------------------------------

    def schedule(
        self, name: str, handler_id: str, method: str, params: Optional[dict] = None, timeout: float = 60
    ) -> dict:
        """A schedule that never fires by itself (2099), one attempt per run; runs are made with
        `run()`."""
        return self.ok(
            "POST",
            "/api/schedules",
            {
                "name": name,
                "trigger": {"type": "date", "run_date": "2099-01-01T00:00:00Z"},
                "target": {"handler_id": handler_id, "method": method, "params": params or {}},
                "policies": {"retry": {"max_attempts": 1}, "timeout": timeout},
            },
            status=201,
        )

    def run(self, schedule: str) -> str:
        """A new run of `schedule`, due now; its run_id."""
        return self.ok("POST", f"/api/schedules/{schedule}/run", status=202)["run_id"]

    def get_run(self, run_id: str) -> dict:
        return self.ok("GET", f"/api/runs/{run_id}")

    def finished(self, run_id: str, timeout: float = 30) -> dict:
        """The run once it is no longer pending, running or retrying."""

        def probe() -> Tuple[bool, Any]:
            run = self.get_run(run_id)
            return run["state"] not in ("pending", "running", "retrying"), run

        return poll(f"run {run_id} to finish", probe, timeout)

    def instances(self, handler_id: str) -> List[Dict[str, Any]]:
        status, body = self.request("GET", f"/api/handlers/{handler_id}")
        return body["instances"] if status == 200 else []

    def wait_connected(self, handler_id: str, instance_id: str, timeout: float = 30) -> dict:
        def probe() -> Tuple[bool, Any]:
            found = [i for i in self.instances(handler_id) if i["instance_id"] == instance_id]
            return bool(found) and found[0]["status"] == "Connected", found

        return poll(f"{handler_id}/{instance_id} Connected", probe, timeout)[0]


class HandlerProc:
    """tests/apps/handler_app.py as a process of its own, pointed at `endpoint`."""

    def __init__(self, endpoint: str, handler_id: str, capacity: int, workdir: Path, instance_id: str) -> None:
        self.handler_id, self.instance_id = handler_id, instance_id
        self.markers = workdir / f"markers-{instance_id}"
        self.markers.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"handler-{instance_id}.log"
        env = dict(os.environ)
        env["SCHEDULEZERO_SERVER_ENDPOINT"] = endpoint
        # The SDK under test is this tree's, whatever is installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SDK_DIR / "src"), env.get("PYTHONPATH")]))
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", str(APP), handler_id, str(capacity), str(self.markers), instance_id],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return log_tail(self.log_path, 200)

    def marker(self, event: str, run_id: str, timeout: float = 30) -> str:
        path = self.markers / f"{event}-{run_id}"

        def probe() -> Tuple[bool, Any]:
            if self.proc.poll() is not None and not path.exists():
                raise AssertionError(f"the handler exited ({self.proc.returncode}):\n{self.log()}")
            return path.exists(), None

        poll(f"marker {path.name}", probe, timeout)
        return path.read_text()

    def has_marker(self, event: str, run_id: str) -> bool:
        return (self.markers / f"{event}-{run_id}").exists()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
