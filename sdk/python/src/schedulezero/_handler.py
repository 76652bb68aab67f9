"""`Handler`: declare a handler, decorate its methods, serve them (blocking or as a coroutine)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, TypeVar, Union, overload

from . import __version__
from ._link import DEFAULT_ENDPOINT, ENDPOINT_ENV, INSTANCE_ID_ENV, LinkState, check_capacity, check_methods, check_name
from ._methods import MethodSpec
from ._session import Session

logger = logging.getLogger("schedulezero")

F = TypeVar("F", bound=Callable[..., Any])


def default_instance_id() -> str:
    """``$SCHEDULEZERO_INSTANCE_ID`` if set and not blank, else ``<hostname>-<pid>``: stable for
    the process (reconnects keep it) but new at each restart."""
    configured = os.environ.get(INSTANCE_ID_ENV, "")
    if configured.strip():
        return configured
    return f"{socket.gethostname() or 'localhost'}-{os.getpid()}"


def default_endpoint() -> str:
    """``$SCHEDULEZERO_SERVER_ENDPOINT`` if set and not blank, else ``tcp://127.0.0.1:4242``."""
    configured = os.environ.get(ENDPOINT_ENV, "")
    return configured.strip() or DEFAULT_ENDPOINT


class Handler:
    """One handler instance: its ids, capacity and methods.

    >>> h = Handler("reports", capacity=4)
    >>> @h.method
    ... def build(day: str, ctx: CallContext) -> dict:
    ...     return {"day": day, "run": ctx.run_id}
    >>> h.run()   # until SIGTERM or Ctrl-C, then drains

    ``handler_id`` names the pool jobs target; ``instance_id`` this process within it (default
    ``$SCHEDULEZERO_INSTANCE_ID``, else ``<hostname>-<pid>``; give a stable one so the server
    keeps the instance's history across restarts); ``capacity`` how many calls run at once
    (1 to 10000); ``credential`` is sent in the hello for the server's access control.
    """

    def __init__(
        self,
        handler_id: str,
        *,
        capacity: int = 1,
        instance_id: Optional[str] = None,
        credential: Optional[str] = None,
    ) -> None:
        self.handler_id = check_name("handler_id", handler_id)
        self.instance_id = check_name("instance_id", instance_id if instance_id is not None else default_instance_id())
        self.capacity = check_capacity(capacity)
        if credential is not None and not isinstance(credential, str):
            raise ValueError(f"credential must be a string, got {type(credential).__name__}")
        self.credential = credential
        #: New for every Handler object (so every process start): the server tells a restart
        #: from a reconnect by it.
        self.session_id = str(uuid.uuid4())
        self._methods: Dict[str, MethodSpec] = {}
        self._state = LinkState.IDLE
        self._session: Optional[Session] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop_early = 0  # stop() calls before serving started
        self._lock = threading.Lock()

    # ---- declaring methods ------------------------------------------------------------------

    @overload
    def method(self, func: F) -> F: ...

    @overload
    def method(
        self, func: Optional[str] = None, *, name: Optional[str] = None, raw_params: bool = False
    ) -> Callable[[F], F]: ...

    def method(
        self, func: Union[Callable[..., Any], str, None] = None, *, name: Optional[str] = None, raw_params: bool = False
    ) -> Any:
        """Serves a function as a method: ``@h.method``, ``@h.method("name")`` or
        ``@h.method(name="name", raw_params=True)``. The function is returned unchanged.

        - A plain ``def`` runs in its own thread; an ``async def`` runs as a task on the loop.
        - The job's params arrive as keyword arguments (``def build(day, fmt="pdf")``; params the
          signature cannot take fail the call with an error naming them); with
          ``raw_params=True`` the whole params dict arrives as the first parameter instead.
        - A parameter annotated :class:`CallContext`, or else named ``ctx`` or ``context``,
          receives the call's context (:func:`schedulezero.context` works too).
        - The return value (anything ``json.dumps`` takes) is the run's result; an exception
          fails the call with its text (raise :class:`MethodError` to set the exact text and a
          JSON detail).
        """
        if callable(func):
            self._add(func.__name__, func, raw_params)
            return func
        if func is not None and name is not None:
            raise TypeError("give the method's name once: @h.method('x') or @h.method(name='x')")
        chosen = func if func is not None else name

        def decorate(f: F) -> F:
            self._add(chosen if chosen is not None else f.__name__, f, raw_params)
            return f

        return decorate

    def _add(self, name: str, func: Callable[..., Any], raw_params: bool) -> None:
        check_name("method name", name)
        if name in self._methods:
            raise ValueError(f"method {name!r} is declared twice on handler {self.handler_id!r}")
        if self._session is not None:
            raise RuntimeError("methods must be declared before serving starts")
        self._methods[name] = MethodSpec(name, func, raw_params)

    @property
    def methods(self) -> List[str]:
        """The declared method names, sorted."""
        return sorted(self._methods)

    @property
    def state(self) -> LinkState:
        """Where the handler stands with the server right now."""
        return self._state

    def _hello(self) -> Dict[str, Any]:
        hello: Dict[str, Any] = {
            "type": "hello",
            "handler_id": self.handler_id,
            "instance_id": self.instance_id,
            "methods": self.methods,
            "capacity": self.capacity,
            "agent": f"schedulezero-python/{__version__}",
            "session": self.session_id,
        }
        if self.credential is not None:
            hello["credential"] = self.credential
        return hello

    # ---- serving ----------------------------------------------------------------------------

    def run(self, endpoint: Optional[str] = None, *, log_level: Optional[int] = logging.INFO) -> None:
        """Serves until SIGTERM or SIGINT (Ctrl-C), then drains and returns: says goodbye, lets
        the calls in flight finish (each bounded by its deadline plus 2 s), sends their results,
        says bye. A second signal closes at once (those calls get no result; the server retries
        them elsewhere). Blocks; for use as a script's main.

        ``endpoint``: the server's handler port, default ``$SCHEDULEZERO_SERVER_ENDPOINT``, else
        ``tcp://127.0.0.1:4242``. ``log_level``: when the program has not configured logging,
        the SDK's messages are printed at this level (None: leave logging alone).
        """
        if log_level is not None and not logging.getLogger().handlers:
            logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(self.serve(endpoint))

    async def serve(self, endpoint: Optional[str] = None, *, handle_signals: bool = True) -> None:
        """Serves on the running event loop until a signal (when ``handle_signals`` and on the
        main thread) or :meth:`stop`, then drains as :meth:`run` does. A server that is down or
        restarts is not an error: the handler reconnects and says hello again for as long as it
        runs, and warns when nothing answers."""
        check_methods(self.methods)
        endpoint = endpoint if endpoint is not None else default_endpoint()
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise ValueError(f"endpoint must be a ZeroMQ endpoint such as tcp://127.0.0.1:4242, got {endpoint!r}")
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._session is not None:
                raise RuntimeError(f"handler {self.handler_id!r} is already serving")
            session = Session(self, endpoint)
            self._session, self._loop = session, loop
            for _ in range(self._stop_early):
                session.request_stop()
            self._stop_early = 0
        installed = self._install_signals(loop, session) if handle_signals else []
        try:
            await session.run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            with self._lock:
                self._session, self._loop = None, None

    def stop(self) -> None:
        """Asks the handler to drain and return, from any thread (a second call closes at once)."""
        with self._lock:
            session, loop = self._session, self._loop
            if session is None or loop is None:
                self._stop_early += 1
                return
        try:
            loop.call_soon_threadsafe(session.request_stop)
        except RuntimeError:
            pass  # the loop has closed: serving is over

    def _install_signals(self, loop: asyncio.AbstractEventLoop, session: Session) -> List[int]:
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not on the main thread: SIGTERM/SIGINT are not handled; call stop() to drain")
            return []
        installed: List[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig, session)
            except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: int, session: Session) -> None:
        logger.info("%s received", signal.Signals(sig).name)
        session.request_stop()

    def __repr__(self) -> str:
        return (
            f"Handler({self.handler_id!r}, instance_id={self.instance_id!r}, capacity={self.capacity}, "
            f"methods={self.methods}, state={self._state.value!r})"
        )
