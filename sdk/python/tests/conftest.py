"""Fixtures for the SDK's tests: the server binary, servers and handler processes that are
killed when their test (or module) ends, pass or fail. The SDK imported is this tree's."""

import sys
from pathlib import Path
from typing import Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import HandlerProc, Server, find_binary  # noqa: E402


@pytest.fixture(scope="session")
def binary() -> Path:
    path = find_binary()
    if not path.is_file():
        pytest.fail(
            f"no schedulezero binary at {path}: build it with `cargo build -p schedulezero-cli` "
            "or point SCHEDULEZERO_BIN at one"
        )
    return path


class Spawner:
    """Starts servers and handlers; `close()` kills every one still running."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self.servers: List[Server] = []
        self.handlers: List[HandlerProc] = []

    def server(self) -> Server:
        root = self.workdir / f"root-{len(self.servers)}"
        root.mkdir()
        server = Server(self.binary, root)
        self.servers.append(server)
        return server.start()

    def handler(self, server: Server, handler_id: str, capacity: int = 1, instance_id: str = "") -> HandlerProc:
        proc = HandlerProc(server.zmq, handler_id, capacity, self.workdir, instance_id or f"{handler_id}-1")
        self.handlers.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.handlers:
            proc.kill()
        for server in self.servers:
            server.stop()


@pytest.fixture
def spawn(binary: Path, tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(binary, tmp_path)
    yield spawner
    spawner.close()


@pytest.fixture(scope="module")
def shared(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawner]:
    """One server for a module's tests that do not stop it."""
    spawner = Spawner(binary, tmp_path_factory.mktemp("shared"))
    yield spawner
    spawner.close()
